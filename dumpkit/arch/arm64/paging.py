"""ARM64 kernel address translation: 4 KB granule, 4 levels, 47/48-bit virtual addresses.

What the dump's DirectoryTableBase is (checked on the real ARM64 triage dump, whose KPRCB
copy holds KARM64_ARCH_STATE): TTBR0_EL1 = DirectoryTableBase (with an ASID in bits
63:48) and TTBR1_EL1 = DirectoryTableBase + 0x800, with TCR_EL1.T0SZ = T1SZ = 17.  So one
4 KB level-0 table serves both halves: entries 0-255 translate user addresses (TTBR0,
VA bits 46:39) and entries 256-511 kernel addresses (TTBR1, the upper half of the same
page).  Indexing the table at DirectoryTableBase with VA bits 47:39 is therefore exactly
the hardware walk for both halves, as on x64.

Descriptors (Arm ARM, VMSAv8-64 long descriptors): bit 0 valid; at levels 0-2 bit 1 set
means a table, clear means a block (1 GiB at level 1, 2 MiB at level 2; no level-0 blocks
with this granule); at level 3 bits 1:0 must be 0b11 (a page).  The output address is
bits 47:12.  An invalid entry that is not zero is a Windows software PTE (paged out,
prototype or transition): reported as such, not resolved.
"""
from __future__ import annotations

from typing import Tuple

from ...errors import MissingPageError, PagedOutError, PageNotPresentError, TranslationError
from ...memory.paging import PageTranslator
from ...memory.physical import PAGE_SIZE, PhysicalLayer

OA_MASK = 0x0000FFFFFFFFF000
_VALID = 1
_TABLE = 2
_LEVELS = (("L0", 39), ("L1", 30), ("L2", 21), ("L3", 12))
MASK64 = 0xFFFFFFFFFFFFFFFF


def canonical(va: int) -> bool:
    """A 47-bit user address (bits 63:47 clear) or a kernel one (bits 63:47 set)."""
    top = (va & MASK64) >> 47
    return top == 0 or top == 0x1FFFF


class Arm64Translator(PageTranslator):
    """Translate and read virtual memory for one ARM64 address space."""

    def __init__(self, physical: PhysicalLayer, dtb: int) -> None:
        super().__init__(physical, dtb & OA_MASK)   # drops an ASID in bits 63:48 and CnP in bit 0

    def _entry(self, table: int, index: int, level: str, va: int) -> int:
        try:
            return self.physical.read_u64(table + index * 8)
        except MissingPageError:
            raise MissingPageError(f"cannot translate {va:#x}: the page table holding its {level} descriptor "
                                   f"(physical {table:#x}) is not in the dump", address=va,
                                   path=self.physical.source.path) from None

    def walk(self, va: int) -> Tuple[int, int, str]:
        """(physical address, page size, how) for ``va``; TranslationError with the reason."""
        va &= MASK64
        if not canonical(va):
            raise TranslationError(f"{va:#x} is not a valid ARM64 address (bits 63:47 must all be equal)",
                                   address=va)
        table = self.dtb
        for level, shift in _LEVELS:
            e = self._entry(table, (va >> shift) & 0x1FF, level, va)
            if not e & _VALID:
                if e:
                    raise PagedOutError(f"{va:#x}: the {level} entry {e:#018x} is invalid but not empty "
                                        "(a software PTE: paged out, prototype or transition)", address=va)
                raise PageNotPresentError(f"{va:#x} is not mapped: {level} entry is zero", address=va)
            if level == "L3":
                if not e & _TABLE:
                    raise PageNotPresentError(f"{va:#x}: L3 entry {e:#018x} is a reserved encoding", address=va)
                return (e & OA_MASK) | (va & 0xFFF), PAGE_SIZE, "valid"
            if not e & _TABLE:                    # a block
                if level == "L0":
                    raise PageNotPresentError(f"{va:#x}: L0 entry {e:#018x} is a block (invalid with a 4 KB "
                                              "granule)", address=va)
                size = 1 << shift
                return (e & OA_MASK & ~(size - 1)) | (va & (size - 1)), size, "large"
            table = e & OA_MASK
        raise TranslationError(f"{va:#x}: translation did not end", address=va)   # pragma: no cover

    def __repr__(self) -> str:
        return f"<Arm64Translator dtb={self.dtb:#x}>"


def translator(physical: PhysicalLayer, dtb: int, **_options) -> Arm64Translator:
    return Arm64Translator(physical, dtb)
