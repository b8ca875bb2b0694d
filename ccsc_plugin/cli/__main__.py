"""``python -m ccsc_plugin.cli`` is ``ccsc-reid``, as ``python -m ccsc_plugin`` is."""

from ccsc_plugin.cli.commands import main

raise SystemExit(main())
