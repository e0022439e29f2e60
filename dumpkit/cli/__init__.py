"""The ``dumpkit`` command line.  Exit codes: 0 ok, 1 analysis incomplete, 2 usage, 3 bad input file."""
from __future__ import annotations

from .main import main

__all__ = ["main"]
