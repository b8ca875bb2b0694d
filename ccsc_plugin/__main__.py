"""``python -m ccsc_plugin`` is ``ccsc-reid`` (what torchrun launches with ``-m``)."""

from .cli import main

raise SystemExit(main())
