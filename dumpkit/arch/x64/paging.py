"""x64 virtual-to-physical translation over a physical layer.

4-level paging (5-level optional), 1 GiB and 2 MiB pages, transition PTEs (valid bit
clear, transition set, prototype clear: the page is still in RAM).  Page-table entries
are read straight from the mmap; translations are cached per 4 KiB page in a bounded
dict, so repeated reads of the same pages cost one dict lookup.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

from ...errors import MemoryReadError, MissingPageError, PagedOutError, PageNotPresentError, TranslationError
from ...memory.physical import PAGE_SIZE, PhysicalLayer

PFN_MASK = 0x000FFFFFFFFFF000
_P = 1
_PS = 1 << 7
_PROTO = 1 << 10
_TRANS = 1 << 11
_LEVELS4 = (("PML4E", 39), ("PDPTE", 30), ("PDE", 21), ("PTE", 12))
_LEVELS5 = (("PML5E", 48),) + _LEVELS4
_TLB_MAX = 1 << 16


def canonical(va: int) -> bool:
    top = va >> 47
    return top == 0 or top == 0x1FFFF


class X64Translator:
    """Translate and read virtual memory for one address space (one DTB)."""

    def __init__(self, physical: PhysicalLayer, dtb: int, la57: bool = False) -> None:
        self.physical = physical
        self.dtb = dtb & PFN_MASK
        self.la57 = la57
        self._levels = _LEVELS5 if la57 else _LEVELS4
        self._tlb: Dict[int, int] = {}          # va page -> pa page (4 KiB granularity)

    # ------------------------------------------------------------------
    def _entry(self, table: int, index: int, level: str, va: int) -> int:
        pa = table + index * 8
        try:
            return self.physical.read_u64(pa)
        except MissingPageError:
            raise MissingPageError(f"cannot translate {va:#x}: the page table holding its {level} "
                                   f"(physical {table:#x}) is not in the dump", address=va,
                                   path=self.physical.source.path) from None

    def walk(self, va: int) -> Tuple[int, int, str]:
        """(physical address, page size, how) for ``va``; raise TranslationError with the reason."""
        va &= 0xFFFFFFFFFFFFFFFF
        if not self.la57 and not canonical(va):
            raise TranslationError(f"{va:#x} is not a canonical x64 address", address=va)
        table = self.dtb
        for level, shift in self._levels:
            e = self._entry(table, (va >> shift) & 0x1FF, level, va)
            if not e & _P:
                if level == "PTE":
                    if e & _TRANS and not e & _PROTO:
                        return (e & PFN_MASK) | (va & 0xFFF), PAGE_SIZE, "transition"
                    if e & _PROTO:
                        raise PagedOutError(f"{va:#x}: the PTE {e:#018x} is a prototype PTE (section-backed page);"
                                            " prototype PTEs are not resolved", address=va)
                    if e:
                        raise PagedOutError(f"{va:#x} was paged out (software PTE {e:#018x})", address=va)
                elif e and e & _TRANS and not e & _PROTO and level == "PDE" and not e & _PS:
                    # a page table that is itself in transition: keep walking
                    table = e & PFN_MASK
                    continue
                raise PageNotPresentError(f"{va:#x} is not mapped: {level} {e:#018x} is not present", address=va)
            if e & _PS and level in ("PDPTE", "PDE"):
                size = 1 << shift
                return (e & PFN_MASK & ~(size - 1)) | (va & (size - 1)), size, "large"
            table = e & PFN_MASK
        return table | (va & 0xFFF), PAGE_SIZE, "valid"

    def translate(self, va: int) -> int:
        """The physical address of ``va``."""
        page = va & ~0xFFF
        hit = self._tlb.get(page)
        if hit is not None:
            return hit | (va & 0xFFF)
        pa = self.walk(va)[0]
        if len(self._tlb) >= _TLB_MAX:
            self._tlb.clear()
        self._tlb[page] = pa & ~0xFFF
        return pa

    def read(self, va: int, size: int, zero_fill: bool = False) -> bytes:
        """``size`` bytes at ``va``; across pages; errors say why a page cannot be read."""
        if size <= 0:
            return b""
        if (va & 0xFFF) + size <= PAGE_SIZE:
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
            out += self.read(cur, n, zero_fill)
            cur += n
        return bytes(out)

    def try_read(self, va: int, size: int) -> Optional[bytes]:
        try:
            return self.read(va, size)
        except MemoryReadError:
            return None

    def __repr__(self) -> str:
        return f"<X64Translator dtb={self.dtb:#x}{' la57' if self.la57 else ''}>"


def translator(physical: PhysicalLayer, dtb: int, la57: bool = False, **_options) -> X64Translator:
    """The architecture hook: an x64 address space (4-level, or 5-level with ``la57``)."""
    return X64Translator(physical, dtb, la57)
