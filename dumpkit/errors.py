"""One error hierarchy, rooted at :class:`DumpError`.

Every parser in dumpkit raises one of these (never a raw ``struct.error`` or
``IndexError``).  Each error can say which file, which offset and what was
expected there, so a support engineer can tell a truncated upload from a bug.
"""
from __future__ import annotations

from typing import Optional


class DumpError(Exception):
    """Base of every error dumpkit raises on bad input or unavailable data."""

    def __init__(
        self,
        message: str,
        *,
        path: Optional[str] = None,
        offset: Optional[int] = None,
        expected: Optional[str] = None,
        hint: Optional[str] = None,
    ) -> None:
        self.message = message
        self.path = path
        self.offset = offset
        self.expected = expected
        self.hint = hint
        super().__init__(self._format())

    def _format(self) -> str:
        parts = []
        if self.path:
            parts.append(str(self.path))
        if self.offset is not None:
            parts.append(f"offset {self.offset:#x}")
        where = ": ".join([", ".join(parts)]) if parts else ""
        text = f"{where}: {self.message}" if where else self.message
        if self.expected:
            text += f" (expected {self.expected})"
        return text


# --- the file as a whole -------------------------------------------------
class NotADumpError(DumpError):
    """The file is not a 64-bit Windows kernel dump (wrong signature)."""


class UnsupportedDumpError(DumpError):
    """A recognised dump kind that dumpkit does not read yet (32-bit, RDMP, encrypted...)."""


class TruncatedDumpError(DumpError):
    """A read went past the end of the file: the dump was cut short."""


class CorruptDumpError(DumpError):
    """A structure is internally inconsistent (bad count, offset out of range, loop...)."""


# --- memory ------------------------------------------------------------
class MemoryReadError(DumpError):
    """Memory that was asked for cannot be produced from the dump."""

    def __init__(self, message: str, *, address: Optional[int] = None, **kw) -> None:
        self.address = address
        super().__init__(message, **kw)


class MissingPageError(MemoryReadError):
    """The physical page is not stored in the dump."""


class TranslationError(MemoryReadError):
    """A virtual address does not translate (the reason is in the message)."""


class PageNotPresentError(TranslationError):
    """A paging-structure entry on the way is not present (not mapped)."""


class PagedOutError(TranslationError):
    """The page was in the page file (software PTE) at dump time."""


# --- higher layers -----------------------------------------------------
class ImageError(DumpError):
    """A PE image (from the dump or from disk) could not be parsed."""


class UnwindError(DumpError):
    """Unwind data is malformed or the stack cannot be walked further."""


class SymbolError(DumpError):
    """A PDB, symbol path or symbol server problem."""


class PdbError(SymbolError):
    """A PDB file is malformed or truncated."""


class SymbolServerError(SymbolError):
    """A symbol server request failed or was refused."""


class TextParseError(DumpError):
    """Pasted WinDbg text or a log could not be understood."""


class AnalysisError(DumpError):
    """The analysis could not be completed."""


class DumpWarning(UserWarning):
    """Degraded but usable input: partial lists, missing pages, unknown build..."""


__all__ = [name for name in dir() if name.endswith(("Error", "Warning"))]
