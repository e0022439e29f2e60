"""x86 virtual-to-physical translation over a physical layer.

Two modes, picked by the dump header's ``PaeEnabled`` byte:

* non-PAE: CR3 -> page directory (1024 x u32) -> page table (1024 x u32); a PDE with
  PS set maps a 4 MiB page (PSE-36 bits 13..20 give physical bits 32..39);
* PAE: CR3 (32-byte aligned) -> PDPT (4 x u64) -> page directory (512 x u64) -> page
  table (512 x u64); a PDE with PS set maps a 2 MiB page; bit 63 is NX.

Entries that are not valid are decoded like Windows does on x64: a transition PTE
(bit 11 set, bit 10 clear) still names the page in RAM, a prototype PTE (bit 10) or
a non-zero software PTE is a page that is not resident (:class:`PagedOutError`), a
zero entry is not mapped (:class:`PageNotPresentError`).  Translations are cached per
4 KiB page in a bounded dict.
"""
from __future__ import annotations

from typing import Tuple

from ...errors import MissingPageError, PagedOutError, PageNotPresentError, TranslationError
from ...memory.paging import PageTranslator
from ...memory.physical import PAGE_SIZE, PhysicalLayer

_P = 1
_PS = 1 << 7
_PROTO = 1 << 10
_TRANS = 1 << 11
PAE_PFN_MASK = 0x000FFFFFFFFFF000
VA_LIMIT = 1 << 32


class X86Translator(PageTranslator):
    """Translate and read virtual memory of one 32-bit address space (one CR3)."""

    def __init__(self, physical: PhysicalLayer, dtb: int, pae: bool) -> None:
        self.pae = bool(pae)
        super().__init__(physical, dtb & (0xFFFFFFE0 if self.pae else 0xFFFFF000))

    @property
    def mode(self) -> str:
        return "pae" if self.pae else "non-pae"

    def _entry(self, table: int, index: int, width: int, level: str, va: int) -> int:
        pa = table + index * width
        try:
            raw = self.physical.read(pa, width)
        except MissingPageError:
            raise MissingPageError(f"cannot translate {va:#010x}: the page table holding its {level} "
                                   f"(physical {table:#x}) is not in the dump", address=va,
                                   path=self.physical.source.path) from None
        return int.from_bytes(raw, "little")

    @staticmethod
    def _not_valid(e: int, level: str, va: int, pfn_mask: int, last: bool) -> Tuple[int, int, str]:
        if last and e:
            if e & _TRANS and not e & _PROTO:
                return (e & pfn_mask) | (va & 0xFFF), PAGE_SIZE, "transition"
            if e & _PROTO:
                raise PagedOutError(f"{va:#010x}: the PTE {e:#x} is a prototype PTE (section-backed page); "
                                    "prototype PTEs are not resolved", address=va)
            raise PagedOutError(f"{va:#010x} was paged out (software PTE {e:#x})", address=va)
        raise PageNotPresentError(f"{va:#010x} is not mapped: {level} {e:#x} is not present", address=va)

    def walk(self, va: int) -> Tuple[int, int, str]:
        """(physical address, page size, how) for ``va``; raise TranslationError with the reason."""
        if not 0 <= va < VA_LIMIT:
            raise TranslationError(f"{va:#x} is not a 32-bit address", address=va)
        if self.pae:
            return self._walk_pae(va)
        pde = self._entry(self.dtb, va >> 22, 4, "PDE", va)
        if not pde & _P:
            if pde and pde & _TRANS and not pde & _PROTO and not pde & _PS:
                table = pde & 0xFFFFF000          # a page table in transition: keep walking
            else:
                raise PageNotPresentError(f"{va:#010x} is not mapped: PDE {pde:#010x} is not present", address=va)
        elif pde & _PS:
            high = ((pde >> 13) & 0xFF) << 32     # PSE-36
            return high | (pde & 0xFFC00000) | (va & 0x3FFFFF), 0x400000, "large"
        else:
            table = pde & 0xFFFFF000
        pte = self._entry(table, (va >> 12) & 0x3FF, 4, "PTE", va)
        if not pte & _P:
            return self._not_valid(pte, "PTE", va, 0xFFFFF000, True)
        return (pte & 0xFFFFF000) | (va & 0xFFF), PAGE_SIZE, "valid"

    def _walk_pae(self, va: int) -> Tuple[int, int, str]:
        pdpte = self._entry(self.dtb, va >> 30, 8, "PDPTE", va)
        if not pdpte & _P:
            raise PageNotPresentError(f"{va:#010x} is not mapped: PDPTE {pdpte:#x} is not present", address=va)
        pd = pdpte & PAE_PFN_MASK
        pde = self._entry(pd, (va >> 21) & 0x1FF, 8, "PDE", va)
        if not pde & _P:
            if pde and pde & _TRANS and not pde & _PROTO and not pde & _PS:
                table = pde & PAE_PFN_MASK
            else:
                raise PageNotPresentError(f"{va:#010x} is not mapped: PDE {pde:#x} is not present", address=va)
        elif pde & _PS:
            return (pde & PAE_PFN_MASK & ~0x1FFFFF) | (va & 0x1FFFFF), 0x200000, "large"
        else:
            table = pde & PAE_PFN_MASK
        pte = self._entry(table, (va >> 12) & 0x1FF, 8, "PTE", va)
        if not pte & _P:
            return self._not_valid(pte, "PTE", va, PAE_PFN_MASK, True)
        return (pte & PAE_PFN_MASK) | (va & 0xFFF), PAGE_SIZE, "valid"

    def read(self, va: int, size: int, zero_fill: bool = False) -> bytes:
        """``size`` bytes at ``va`` across pages; errors say why a page cannot be read."""
        if size > 0 and (va < 0 or va + size > VA_LIMIT):
            if zero_fill:
                return bytes(size)
            raise TranslationError(f"{va:#x}+{size:#x} leaves the 32-bit address space", address=va)
        return super().read(va, size, zero_fill)

    def __repr__(self) -> str:
        return f"<X86Translator {self.mode} dtb={self.dtb:#x}>"


def canonical(va: int) -> bool:
    return 0 <= va < VA_LIMIT


def translator(physical: PhysicalLayer, dtb: int, pae: bool = False, **_options) -> X86Translator:
    """The architecture hook: a 32-bit address space, PAE (3-level) or not (2-level)."""
    return X86Translator(physical, dtb, pae)
