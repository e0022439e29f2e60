"""x64 translation: kept as an import path; the code lives in :mod:`dumpkit.arch.x64.paging`."""
from __future__ import annotations

from ..arch.x64.paging import PFN_MASK, X64Translator, canonical  # noqa: F401

__all__ = ["X64Translator", "canonical", "PFN_MASK"]
