"""What every page-table translator does around its own walk: a per-page cache and reads that cross pages.

An architecture's translator subclasses :class:`PageTranslator` and gives :meth:`walk`
(``va`` -> physical address, page size, how; TranslationError with the reason).  The base
class caches each 4 KiB page's translation in a bounded dict (cleared when full), splits
reads at page boundaries and zero-fills pages that do not translate when asked to.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from ..errors import MemoryReadError
from .physical import PAGE_SIZE, PhysicalLayer

TLB_MAX = 1 << 16


class PageTranslator:
    """Translate and read virtual memory of one address space over ``physical``."""

    def __init__(self, physical: PhysicalLayer, dtb: int) -> None:
        self.physical = physical
        self.dtb = dtb
        self._tlb: Dict[int, int] = {}          # va page -> pa page

    def walk(self, va: int) -> Tuple[int, int, str]:
        raise NotImplementedError

    def translate(self, va: int) -> int:
        page = va & ~0xFFF
        hit = self._tlb.get(page)
        if hit is not None:
            return hit | (va & 0xFFF)
        pa = self.walk(va)[0]
        if len(self._tlb) >= TLB_MAX:
            self._tlb.clear()
        self._tlb[page] = pa & ~0xFFF
        return pa

    def read(self, va: int, size: int, zero_fill: bool = False) -> bytes:
        """``size`` bytes at ``va`` across pages; errors say why a page cannot be read."""
        if size <= 0:
            return b""
        if (va & 0xFFF) + size <= PAGE_SIZE:        # the common case, without a further call
            try:
                pa = self.translate(va)
            except MemoryReadError:
                if zero_fill:
                    return bytes(size)
                raise
            return self.physical.read(pa, size, zero_fill)
        out = bytearray()
        cur, end = va, va + size
        while cur < end:
            n = min(end - cur, PAGE_SIZE - (cur & 0xFFF))
            out += self._read_in_page(cur, n, zero_fill)
            cur += n
        return bytes(out)

    def _read_in_page(self, va: int, size: int, zero_fill: bool) -> bytes:
        try:
            pa = self.translate(va)
        except MemoryReadError:
            if zero_fill:
                return bytes(size)
            raise
        return self.physical.read(pa, size, zero_fill)

    def try_read(self, va: int, size: int) -> Optional[bytes]:
        try:
            return self.read(va, size)
        except MemoryReadError:
            return None
