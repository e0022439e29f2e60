"""x64 virtual-to-physical translation over a physical layer.

4-level paging (5-level optional), 1 GiB and 2 MiB pages, transition PTEs (valid bit
clear, transition set, prototype clear: the page is still in RAM).

Memory stays flat on every path: page-table pages are read whole with ``pread`` into a bounded
cache shared by every address space of the dump (:meth:`PhysicalLayer.table_page`: tables are
physical pages, and the kernel half is shared by all processes); each address space keeps, per
2 MiB region, where its leaf table (or large page) is, in a bounded dict: translating an address
in a known region is two dict lookups and one entry decode, with no read.  :meth:`X64Translator.translate_many`
translates a numpy array of addresses, one Python step per 2 MiB region, not per address.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, Tuple

from ...errors import MemoryReadError, MissingPageError, PagedOutError, PageNotPresentError, TranslationError
from ...memory.paging import PageTranslator
from ...memory.physical import PAGE_SIZE, PhysicalLayer

PFN_MASK = 0x000FFFFFFFFFF000
_P = 1
_PS = 1 << 7
_PROTO = 1 << 10
_TRANS = 1 << 11
_LEVELS4 = (("PML4E", 39), ("PDPTE", 30), ("PDE", 21), ("PTE", 12))
_LEVELS5 = (("PML5E", 48),) + _LEVELS4
_LEAF_MAX = 1 << 14             # 2 MiB regions whose leaf table (or large page) is known
_Q = struct.Struct("<Q")
_LARGE = -1                     # a leaf entry < 0 encodes a large page: ~(physical base of the region)


def canonical(va: int) -> bool:
    top = va >> 47
    return top == 0 or top == 0x1FFFF


class X64Translator(PageTranslator):
    """Translate and read virtual memory for one address space (one DTB).

    Reads (across pages, zero-filled on request) are :class:`~dumpkit.memory.paging.PageTranslator`'s,
    as for the x86 and ARM64 translators; instead of its per-page cache, :meth:`translate` uses the
    per-2 MiB-region cache of leaf tables (which :meth:`translate_many` shares).
    """

    def __init__(self, physical: PhysicalLayer, dtb: int, la57: bool = False) -> None:
        super().__init__(physical, dtb & PFN_MASK)
        self.la57 = la57
        self._levels = _LEVELS5 if la57 else _LEVELS4
        self._leaf: Dict[int, int] = {}         # va >> 21 -> leaf table pa, or ~pa base of a large page
        self._tables = physical.table_cache     # shared with every address space of the dump

    # ------------------------------------------------------------------
    def _table(self, table: int, level: str, va: int) -> bytes:
        try:
            return self.physical.table_page(table)
        except MissingPageError:
            raise MissingPageError(f"cannot translate {va:#x}: the page table holding its {level} "
                                   f"(physical {table:#x}) is not in the dump", address=va,
                                   path=self.physical.source.path) from None

    def _entry(self, table: int, index: int, level: str, va: int) -> int:
        return _Q.unpack_from(self._table(table, level, va), index * 8)[0]

    def _upper(self, va: int) -> int:
        """Walk to the 2 MiB region of ``va``: the leaf table's physical address (>= 0) or, for a
        2 MiB or 1 GiB page, ``~base`` of the region (< 0); TranslationError says why not.
        The answer is cached per region."""
        region = va >> 21
        got = self._leaf.get(region)
        if got is not None:
            return got
        table = self.dtb
        for level, shift in self._levels[:-1]:
            e = self._entry(table, (va >> shift) & 0x1FF, level, va)
            if not e & _P:
                if e and e & _TRANS and not e & _PROTO and level == "PDE" and not e & _PS:
                    table = e & PFN_MASK        # a page table that is itself in transition: keep walking
                    continue
                raise PageNotPresentError(f"{va:#x} is not mapped: {level} {e:#018x} is not present", address=va)
            if e & _PS and level in ("PDPTE", "PDE"):
                size = 1 << shift
                base = (e & PFN_MASK & ~(size - 1)) | (va & (size - 1) & ~0x1FFFFF)
                got = ~base
                break
            table = e & PFN_MASK
        else:
            got = table
        if len(self._leaf) >= _LEAF_MAX:
            self._leaf.clear()
        self._leaf[region] = got
        return got

    def walk(self, va: int) -> Tuple[int, int, str]:
        """(physical address, page size, how) for ``va``; raise TranslationError with the reason."""
        va &= 0xFFFFFFFFFFFFFFFF
        if not self.la57 and not canonical(va):
            raise TranslationError(f"{va:#x} is not a canonical x64 address", address=va)
        leaf = self._upper(va)
        if leaf < 0:
            base = ~leaf
            # a 1 GiB page caches each 2 MiB region on its own: report the real page size
            size = 1 << 30 if self._is_huge(va) else 1 << 21
            return base | (va & 0x1FFFFF), size, "large"
        e = _Q.unpack_from(self._table(leaf, "PTE", va), ((va >> 12) & 0x1FF) * 8)[0]
        if not e & _P:
            if e & _TRANS and not e & _PROTO:
                return (e & PFN_MASK) | (va & 0xFFF), PAGE_SIZE, "transition"
            if e & _PROTO:
                raise PagedOutError(f"{va:#x}: the PTE {e:#018x} is a prototype PTE (section-backed page);"
                                    " prototype PTEs are not resolved", address=va)
            if e:
                raise PagedOutError(f"{va:#x} was paged out (software PTE {e:#018x})", address=va)
            raise PageNotPresentError(f"{va:#x} is not mapped: PTE {e:#018x} is not present", address=va)
        return (e & PFN_MASK) | (va & 0xFFF), PAGE_SIZE, "valid"

    def _is_huge(self, va: int) -> bool:
        table = self.dtb
        for level, shift in self._levels[:-2]:
            e = self._entry(table, (va >> shift) & 0x1FF, level, va)
            if level == "PDPTE":
                return bool(e & _P and e & _PS)
            table = e & PFN_MASK
        return False

    def translate(self, va: int) -> int:
        """The physical address of ``va``."""
        # the common case, without a call: the 2 MiB region's leaf table is known and cached
        leaf = self._leaf.get(va >> 21)
        if leaf is not None:
            if leaf < 0:
                return ~leaf | (va & 0x1FFFFF)           # a large page
            tbl = self._tables.get(leaf)
            if tbl is not None:
                e = _Q.unpack_from(tbl, ((va >> 12) & 0x1FF) << 3)[0]
                if e & _P:
                    return (e & PFN_MASK) | (va & 0xFFF)
        return self.walk(va)[0]

    def translate_many(self, vas: Any) -> Any:
        """Physical addresses of a numpy array (or sequence) of virtual addresses, as an int64
        array with -1 where an address does not translate (not mapped, paged out, prototype
        PTE, page table missing from the dump, not canonical).  One Python step per 2 MiB
        region, numpy for the addresses in it."""
        import numpy as np
        v = np.asarray(vas, dtype=np.uint64).ravel()
        out = np.full(len(v), -1, dtype=np.int64)
        if not len(v):
            return out
        if self.la57:
            ok = np.ones(len(v), dtype=bool)
        else:
            top = v >> np.uint64(47)
            ok = (top == 0) | (top == 0x1FFFF)
        region = (v >> np.uint64(21)).astype(np.int64)
        order = np.argsort(region, kind="stable")
        rs = region[order]
        first = np.empty(len(rs), dtype=bool)
        first[0] = True
        first[1:] = rs[1:] != rs[:-1]
        uniq = rs[first].tolist()
        inv = np.empty(len(v), dtype=np.int64)
        inv[order] = np.cumsum(first) - 1
        # one Python step per 2 MiB region: its leaf table (a row of `pages`) or large-page base
        reg_row = np.full(len(uniq), -1, dtype=np.int64)
        reg_base = np.full(len(uniq), -1, dtype=np.int64)
        rows_l, bases_l = reg_row.tolist(), reg_base.tolist()
        pages = []
        page_of: Dict[int, int] = {}
        for i, r in enumerate(uniq):
            va0 = r << 21
            if not self.la57 and not canonical(va0):
                continue
            try:
                leaf = self._upper(va0)
                if leaf < 0:
                    bases_l[i] = ~leaf
                    continue
                k = page_of.get(leaf)
                if k is None:
                    pages.append(self._table(leaf, "PTE", va0))
                    k = page_of[leaf] = len(pages) - 1
                rows_l[i] = k
            except MemoryReadError:
                continue
        reg_row = np.array(rows_l, dtype=np.int64)
        reg_base = np.array(bases_l, dtype=np.int64)
        base = reg_base[inv]
        large = base >= 0
        out[large] = base[large] + (v[large] & np.uint64(0x1FFFFF)).astype(np.int64)
        row = reg_row[inv]
        m = row >= 0
        if pages and m.any():
            tables = np.frombuffer(b"".join(pages), dtype="<u8").reshape(len(pages), 512)
            vm = v[m]
            pte = tables[row[m], ((vm >> np.uint64(12)) & np.uint64(0x1FF)).astype(np.int64)]
            good = ((pte & np.uint64(_P)) != 0) | (((pte & np.uint64(_TRANS)) != 0) & ((pte & np.uint64(_PROTO)) == 0))
            pa = (pte & np.uint64(PFN_MASK)).astype(np.int64) + (vm & np.uint64(0xFFF)).astype(np.int64)
            out[m] = np.where(good, pa, -1)
        out[~ok] = -1
        return out

    def __repr__(self) -> str:
        return f"<X64Translator dtb={self.dtb:#x}{' la57' if self.la57 else ''}>"


def translator(physical: PhysicalLayer, dtb: int, la57: bool = False, **_options) -> X64Translator:
    """The architecture hook: an x64 address space (4-level, or 5-level with ``la57``)."""
    return X64Translator(physical, dtb, la57)
