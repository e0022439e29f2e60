"""A sparse virtual address space: the memory a triage dump captured.

Intervals (virtual start, length, file offset) from the call stack, the debugger-data
copy, the data page and every TRIAGE_DATA_BLOCK.  Lookup is a bisect over sorted
starts; overlapping intervals are allowed (the first stored wins).
"""
from __future__ import annotations

import bisect
from typing import TYPE_CHECKING, Iterator, List, Optional, Tuple

from ..errors import TranslationError
from ..io import Source

if TYPE_CHECKING:  # pragma: no cover
    from ..formats.triage import TriageDump


class SparseMemory:
    def __init__(self, source: Source) -> None:
        self.source = source
        self._items: List[Tuple[int, int, int, str]] = []     # start, size, file offset, label
        self._starts: List[int] = []
        self._sorted = True

    def add(self, va: int, size: int, file_offset: int, label: str = "") -> None:
        if size <= 0 or file_offset < 0 or file_offset + size > self.source.size:
            return
        self._items.append((va, size, file_offset, label))
        self._sorted = False

    def _ensure(self) -> None:
        if not self._sorted:
            # stable sort keeps the insertion priority for equal starts
            self._items.sort(key=lambda t: t[0])
            self._starts = [t[0] for t in self._items]
            self._max_size = max((t[1] for t in self._items), default=0)
            self._sorted = True

    def _find(self, va: int) -> Optional[Tuple[int, int, int, str]]:
        self._ensure()
        i = bisect.bisect_right(self._starts, va) - 1
        # intervals may overlap: scan back over the few that could still cover va
        while i >= 0:
            start, size, off, label = self._items[i]
            if start <= va < start + size:
                return self._items[i]
            if va - start >= self._max_size:
                break
            i -= 1
        return None

    def contains(self, va: int) -> bool:
        return self._find(va) is not None

    def read(self, va: int, size: int, zero_fill: bool = False) -> bytes:
        out = bytearray()
        cur, end = va, va + size
        mv = self.source.buffer
        while cur < end:
            hit = self._find(cur)
            if hit is None:
                if not zero_fill:
                    raise TranslationError(f"{cur:#x} was not captured in this triage dump", address=cur,
                                           path=self.source.path,
                                           hint="a triage dump holds only the stack and a few data blocks")
                # skip to the next captured interval (or the end)
                self._ensure()
                j = bisect.bisect_right(self._starts, cur)
                nxt = self._starts[j] if j < len(self._starts) else end
                n = min(end, max(nxt, cur + 1)) - cur
                out += bytes(n)
                cur += n
                continue
            start, isize, off, _ = hit
            n = min(end, start + isize) - cur
            o = off + (cur - start)
            out += mv[o:o + n]
            cur += n
        return bytes(out)

    def intervals(self) -> Iterator[Tuple[int, int, str]]:
        self._ensure()
        for start, size, _, label in self._items:
            yield start, size, label

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"<SparseMemory {len(self._items)} intervals>"


def triage_memory(source: Source, t: "TriageDump", kd_debugger_data_block: Optional[int]) -> SparseMemory:
    """The ranges a parsed triage body (64- or 32-bit) captured: the call stack ("stack"), the
    debugger-data copy at the header's KdDebuggerDataBlock ("kdbg"), the data page and every data block."""
    sp = SparseMemory(source)
    f = t.fields
    if f["call_stack_offset"] and f["size_of_call_stack"]:
        sp.add(t.top_of_stack, f["size_of_call_stack"], f["call_stack_offset"], "stack")
    kd = kd_debugger_data_block
    if kd and f["debugger_data_offset"] and f["debugger_data_size"]:
        sp.add(kd, f["debugger_data_size"], f["debugger_data_offset"], "kdbg")
    if f["data_page_address"] and f["data_page_offset"] and f["data_page_size"]:
        sp.add(f["data_page_address"], f["data_page_size"], f["data_page_offset"], "data_page")
    for b in t.data_blocks:
        sp.add(b.address, b.size, b.offset, "data_block")
    return sp
