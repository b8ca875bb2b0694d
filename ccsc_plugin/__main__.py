"""``python -m ccsc_plugin`` is ``ccsc-reid`` (what torchrun launches with ``-m``)."""

from ccsc_plugin.cli.commands import main

raise SystemExit(main())
