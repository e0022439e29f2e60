"""Physical memory of full, kernel-summary and bitmap dumps.

Two layouts, one interface:

* :class:`RunsLayer`: DumpType 1, a handful of physical runs packed one after the other.
* :class:`BitmapLayer`: DumpTypes 2, 5, 6: one bit per page frame, present pages packed in
  PFN order.  The PFN -> file offset map is a *rank index*: a prefix sum of popcounts per
  512-page block (numpy, one vectorised pass at open), then ``int.bit_count`` inside the block.
  Nothing is stored per page, so a 64 GB dump opens in milliseconds with a few KB of index.

Both hand out zero-copy memoryviews over the mmap'd file.
"""
from __future__ import annotations

import bisect
import warnings
from collections import OrderedDict
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional, Tuple

from ..errors import CorruptDumpError, DumpWarning, MissingPageError
from ..io import Source

if TYPE_CHECKING:                        # numpy is imported where it is used, not at start-up
    import numpy as np

PAGE_SIZE = 0x1000
PAGE_SHIFT = 12
_BLOCK_BYTES = 64                   # 512 pages per rank block
_BLOCK_SHIFT = 9


class PhysicalLayer:
    """Interface shared by the physical layers."""

    source: Source
    page_count: int                 # pages stored in the file

    def page_offset(self, pfn: int) -> Optional[int]:
        """File offset of page frame ``pfn`` or None when the dump does not hold it."""
        raise NotImplementedError

    def is_present(self, pa: int) -> bool:
        return self.page_offset(pa >> PAGE_SHIFT) is not None

    def iter_runs(self) -> Iterator[Tuple[int, int, int]]:
        """(first pfn, page count, file offset) of maximal runs, in file order."""
        raise NotImplementedError

    # ------------------------------------------------------------------
    def read(self, pa: int, size: int, zero_fill: bool = False) -> bytes:
        """``size`` bytes at physical address ``pa``, across page boundaries."""
        if size <= 0:
            return b""
        page_in = pa & 0xFFF
        if page_in + size <= PAGE_SIZE:                    # fast path: one page
            off = self.page_offset(pa >> PAGE_SHIFT)
            if off is None:
                if zero_fill:
                    return bytes(size)
                raise MissingPageError(f"physical page {pa & ~0xFFF:#x} is not in the dump", address=pa,
                                       path=self.source.path)
            off += page_in
            if off + size > self.source.size:
                return self._truncated(pa, off, size, zero_fill)
            return self.source.read_page(off, size)
        out = bytearray()
        cur = pa
        end = pa + size
        while cur < end:
            n = min(end - cur, PAGE_SIZE - (cur & 0xFFF))
            out += self.read(cur, n, zero_fill)
            cur += n
        return bytes(out)

    def _truncated(self, pa: int, off: int, size: int, zero_fill: bool) -> bytes:
        if zero_fill:
            avail = self.source.read_partial(off, size)
            return avail + bytes(size - len(avail))
        raise MissingPageError(f"physical page {pa & ~0xFFF:#x} lies past the end of the file: "
                               f"truncated at offset {self.source.size:#x}", address=pa, path=self.source.path,
                               offset=off)

    def read_u64(self, pa: int) -> int:
        off = self.page_offset(pa >> PAGE_SHIFT)
        if off is None:
            raise MissingPageError(f"physical page {pa & ~0xFFF:#x} is not in the dump", address=pa,
                                   path=self.source.path)
        off += pa & 0xFFF
        if off + 8 > self.source.size:
            self._truncated(pa, off, 8, False)
        # pread for large files (Source.read_page): page-table walks touch pages all over the
        # file, and reading them through the mapping would grow RSS with every one
        return int.from_bytes(self.source.read_page(off, 8), "little")

    #: page-table pages kept by :meth:`table_page` (4 KiB each: 32 MiB), shared by every address space
    TABLE_CACHE_PAGES = 8192

    def table_page(self, pa: int) -> bytes:
        """The 4 KiB page holding ``pa`` (a page-table page), read with ``pread`` and kept in a
        bounded cache shared by every translator over this layer (oldest dropped first).
        MissingPageError when the dump does not hold it."""
        base = pa & ~0xFFF
        cache = self.table_cache
        page = cache.get(base)
        if page is None:
            page = self.read(base, PAGE_SIZE)
            if len(cache) >= self.TABLE_CACHE_PAGES:
                cache.popitem(last=False)
            cache[base] = page
        return page

    @property
    def table_cache(self) -> "OrderedDict[int, bytes]":
        """physical page address -> its 4 KiB, for :meth:`table_page` (oldest first)."""
        c: "Optional[OrderedDict[int, bytes]]" = self.__dict__.get("_tables")
        if c is None:
            c = OrderedDict()
            self._tables = c
        return c

    # ------------------------------------------------------------------ streaming
    def _rank_batches(self, pages: int) -> Iterator[Tuple["np.ndarray", int]]:
        """(pfns, file offset) for consecutive batches of at most ``pages`` present pages, in file
        order; each batch is contiguous in the file.  The pfns are an int64 numpy array (a
        batch never holds a Python object per page).  Pages past a truncated end are cut."""
        raise NotImplementedError

    def _batches_in_file(self, pages: int) -> Iterator[Tuple["np.ndarray", int]]:
        fsize = self.source.size
        for pfns, off in self._rank_batches(pages):
            avail = max(0, (fsize - off) // PAGE_SIZE)
            if avail < len(pfns):
                if avail:
                    yield pfns[:avail], off
                return
            yield pfns, off

    def iter_page_batches(self, max_bytes: int = 4 << 20, copy: bool = False
                          ) -> Iterator[Tuple["np.ndarray", memoryview]]:
        """``(pfns, data)`` over every present page, in file order, at most ``max_bytes`` per batch.

        ``pfns`` is an int64 numpy array of page frame numbers; ``data`` holds their pages
        back to back (``len(data) == len(pfns) * 4096``).  ``copy=False``: a zero-copy view
        over the mapped file, valid until the next batch is asked for (its pages are dropped
        from this process behind the scan, so RSS stays flat); ``copy=True``: the pages are
        read with ``preadv`` into one reused buffer (nothing stays mapped), valid until the
        next batch.  The kernel is asked to read the next batches ahead (``WILLNEED``).
        """
        pages = max(1, int(max_bytes) // PAGE_SIZE)
        src = self.source
        ahead = 2 * pages * PAGE_SIZE                     # read-ahead window past the batch
        if copy:
            buf = memoryview(bytearray(pages * PAGE_SIZE))
            for pfns, off in self._batches_in_file(pages):
                n = len(pfns) * PAGE_SIZE
                src.prefetch(off + n, ahead)
                out = buf[:n]
                src.read_into(off, out)
                yield pfns, out
            return
        mv = src.buffer
        advised = 0
        for pfns, off in self._batches_in_file(pages):
            n = len(pfns) * PAGE_SIZE
            if advised < off + n + ahead:
                start = max(advised, off)
                src.prefetch(start, off + n + ahead - start)
                advised = off + n + ahead
            src.populate(off, n)
            yield pfns, mv[off:off + n]
            src.release_pages(off, n)                     # the caller is done with it

    def iter_physical_runs(self) -> Iterator[Tuple[int, memoryview]]:
        """(physical address, memoryview) per maximal run of present pages, zero-copy, file order.

        Runs that extend past a truncated end are cut at the last whole page in the file.
        Each run's pages are dropped from this process once the caller asks for the next.
        """
        mv = self.source.buffer
        src = self.source
        for pfn, count, off in self._iter_runs_in_file():
            n = count * PAGE_SIZE
            src.prefetch(off, n)
            yield pfn << PAGE_SHIFT, mv[off:off + n]
            src.release_pages(off, n)

    def _iter_runs_in_file(self, batch_pages: int = 1 << 16) -> Iterator[Tuple[int, int, int]]:
        """(first pfn, page count, file offset) of maximal runs (cut at a truncated end), found
        from the page batches with numpy: the Python lists made per batch are bounded by it."""
        import numpy as np
        cur_pfn = cur_n = cur_off = 0
        for pfns, off in self._batches_in_file(batch_pages):
            breaks = np.flatnonzero(np.diff(pfns) != 1) + 1
            starts = [0] + breaks.tolist()
            ends = starts[1:] + [len(pfns)]
            firsts = pfns[starts].tolist()
            for k, s in enumerate(starts):
                p = firsts[k]
                if k == 0 and cur_n and p == cur_pfn + cur_n:   # batches are contiguous in the file
                    cur_n += ends[0]
                    continue
                if cur_n:
                    yield cur_pfn, cur_n, cur_off
                cur_pfn, cur_n, cur_off = p, ends[k] - s, off + s * PAGE_SIZE
        if cur_n:
            yield cur_pfn, cur_n, cur_off


class RunsLayer(PhysicalLayer):
    """DumpType 1: PHYSICAL_MEMORY_DESCRIPTOR runs packed from file offset 0x2000."""

    def __init__(self, source: Source, runs: List[Tuple[int, int]], data_offset: int = 0x2000) -> None:
        self.source = source
        # file order is the header order; sorted order is for lookup
        self._file_runs = []
        o = data_offset
        for base, count in runs:
            if count:
                self._file_runs.append((base, count, o))
                o += count * PAGE_SIZE
        self._bases = [r[0] for r in sorted(self._file_runs)]
        self._sorted = sorted(self._file_runs)
        self.page_count = sum(c for _, c, _ in self._file_runs)
        self.data_end = o

    def page_offset(self, pfn: int) -> Optional[int]:
        i = bisect.bisect_right(self._bases, pfn) - 1
        if i < 0:
            return None
        base, count, off = self._sorted[i]
        if pfn >= base + count:
            return None
        return off + ((pfn - base) << PAGE_SHIFT)

    def iter_runs(self) -> Iterator[Tuple[int, int, int]]:
        return iter(self._file_runs)

    def _rank_batches(self, pages: int) -> Iterator[Tuple["np.ndarray", int]]:
        import numpy as np
        parts: List["np.ndarray"] = []
        have = 0
        start_off = self._file_runs[0][2] if self._file_runs else 0
        for base, count, _off in self._file_runs:     # the runs are packed one after the other
            done = 0
            while done < count:
                take = min(count - done, pages - have)
                parts.append(np.arange(base + done, base + done + take, dtype=np.int64))
                have += take
                done += take
                if have == pages:
                    yield (parts[0] if len(parts) == 1 else np.concatenate(parts)), start_off
                    start_off += have * PAGE_SIZE
                    parts, have = [], 0
        if have:
            yield (parts[0] if len(parts) == 1 else np.concatenate(parts)), start_off

    def __repr__(self) -> str:
        return f"<RunsLayer {len(self._file_runs)} runs, {self.page_count:,} pages>"


class BitmapLayer(PhysicalLayer):
    """A page bitmap (LSB first) with present pages packed from ``first_page_offset``."""

    def __init__(self, source: Source, bitmap_offset: int, bitmap_bits: int, first_page_offset: int,
                 expected_pages: Optional[int] = None, warn: Optional[Callable[[str], None]] = None) -> None:
        import numpy as np                  # here, not at import: a triage dump never needs it
        self.source = source
        nbytes = (bitmap_bits + 7) // 8
        self._bits = bitmap_bits
        self._first = first_page_offset
        bm = np.frombuffer(source.buffer, dtype=np.uint8, count=nbytes, offset=bitmap_offset)
        if bitmap_bits % 8:
            bm = bm.copy()
            bm[-1] &= (1 << (bitmap_bits % 8)) - 1
        self._bm_np = bm
        self._bm = bm.tobytes() if bitmap_bits % 8 else source.buffer[bitmap_offset:bitmap_offset + nbytes]
        # rank index: pages set before each 512-page block
        nblocks = (nbytes + _BLOCK_BYTES - 1) // _BLOCK_BYTES
        counts = np.zeros(nblocks * _BLOCK_BYTES, dtype=np.uint16)
        counts[:nbytes] = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)[bm]
        per_block = counts.reshape(nblocks, _BLOCK_BYTES).sum(axis=1, dtype=np.int64)
        rank = np.zeros(nblocks + 1, dtype=np.int64)
        np.cumsum(per_block, out=rank[1:])
        self._rank = rank.tolist()          # Python ints: faster to index than numpy scalars
        self.page_count = int(rank[-1])
        if expected_pages is not None and expected_pages != self.page_count:
            text = (f"the bitmap has {self.page_count:,} pages set but the header says {expected_pages:,}; "
                    "trusting the bitmap")
            if warn is not None:
                warn(text)                  # the target's warnings sink (Dump.warnings, analysis JSON)
            else:
                warnings.warn(DumpWarning(f"{source.path}: {text}"), stacklevel=3)

    def page_offset(self, pfn: int) -> Optional[int]:
        if pfn < 0 or pfn >= self._bits:
            return None
        byte = pfn >> 3
        bm = self._bm
        b = bm[byte]
        if not (b >> (pfn & 7)) & 1:
            return None
        blk = pfn >> _BLOCK_SHIFT
        start = blk << 6
        r = self._rank[blk]
        if byte > start:
            r += int.from_bytes(bm[start:byte], "little").bit_count()
        r += (b & ((1 << (pfn & 7)) - 1)).bit_count()
        return self._first + (r << PAGE_SHIFT)

    def iter_runs(self) -> Iterator[Tuple[int, int, int]]:
        """Maximal runs of set bits (first pfn, count, file offset), found batch by batch with
        numpy (flat memory: no list of run starts bigger than one batch)."""
        return self._iter_runs_in_file()

    def _rank_batches(self, pages: int, chunk_bytes: int = 1 << 16) -> Iterator[Tuple["np.ndarray", int]]:
        import numpy as np
        bm = self._bm_np
        n = len(bm)
        rank = 0                                       # present pages before the pending ones
        pending = np.zeros(0, dtype=np.int64)
        for c0 in range(0, n, chunk_bytes):
            chunk = bm[c0:c0 + chunk_bytes]
            if not chunk.any():
                continue
            found = np.flatnonzero(np.unpackbits(chunk, bitorder="little"))
            found += c0 * 8
            pfns = np.concatenate((pending, found)) if len(pending) else found
            full = len(pfns) - len(pfns) % pages
            for i in range(0, full, pages):
                yield pfns[i:i + pages], self._first + (rank << PAGE_SHIFT)
                rank += pages
            pending = pfns[full:]
        if len(pending):
            yield pending, self._first + (rank << PAGE_SHIFT)

    def __repr__(self) -> str:
        return f"<BitmapLayer {self._bits:,} page frames, {self.page_count:,} present>"


def check_data_fits(source: Source, data_offset: int, pages: int, what: str,
                    warn: Optional[Callable[[str], None]] = None) -> None:
    """Warn (not fail) when the page data claimed by a header runs past the end of the file."""
    need = data_offset + pages * PAGE_SIZE
    if need > source.size:
        text = (f"truncated at offset {source.size:#x}: {what} needs {need:#x} bytes; "
                f"pages past the end read as missing")
        if warn is not None:
            warn(text)
        else:
            warnings.warn(DumpWarning(f"{source.path}: {text}"), stacklevel=3)


def validate_offset(source: Source, offset: int, what: str) -> None:
    if offset < 0 or offset > source.size:
        raise CorruptDumpError(f"{what} offset {offset:#x} is outside the file ({source.size:#x} bytes)",
                               path=source.path, offset=offset)
