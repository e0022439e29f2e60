"""``python -m dumpkit``: the same as the ``dumpkit`` command."""
from .cli import main

raise SystemExit(main())
