"""Where the knowledge base (the repository's ``symbols/`` folder) lives at run time.

In a wheel the folder is shipped as ``dumpkit/_kb``; in a source checkout or an
editable install it is ``<repo>/symbols``.
"""
from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent


def kb_dir() -> Path:
    packaged = _HERE / "_kb"
    if packaged.is_dir():
        return packaged
    return _HERE.parent / "symbols"


def kb_file(name: str) -> Path:
    """Path of a knowledge-base file, e.g. ``kb_file('modules.toml')``."""
    return kb_dir() / name
