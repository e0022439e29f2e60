"""x64 unwinding: kept as an import path; the code lives in :mod:`dumpkit.arch.x64.unwind`."""
from __future__ import annotations

from ..arch.x64.unwind import (MASK64, VOLATILE, UnwindStep, unwind_leaf, virtual_unwind)  # noqa: F401

__all__ = ["UnwindStep", "unwind_leaf", "virtual_unwind", "MASK64", "VOLATILE"]
