"""``python -m dumpkit``: the same as the ``dumpkit`` command."""
from .cli import main

if __name__ == "__main__":   # guarded: worker processes started by 'spawn' (dumpkit batch) import this module
    raise SystemExit(main())
