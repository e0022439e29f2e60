"""The bitmap body of a kernel dump (DumpTypes 2, 5 and 6), for 32- and 64-bit headers alike.

After the DUMP_HEADER (0x1000 bytes for 'PAGEDUMP', 0x2000 for 'PAGEDU64') comes an
'SDMP'/'FDMP' + 'DUMP' signature, then either the old SUMMARY_DUMP header (DumpType 2:
u32 HeaderSize +0xC, BitmapSize +0x10, Pages +0x14, the bits after an RTL_BITMAP whose
size depends on the pointer size) or the newer bitmap header (DumpTypes 5/6: u64
FirstPage +0x20, TotalPresentPages +0x28, bits +0x30, the bitmap at +0x38).  One reader
serves both headers; :class:`BitmapLayout` says where they differ.
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Tuple

from ..errors import CorruptDumpError, TruncatedDumpError
from ..io import Source
from ..memory.physical import BitmapLayer, check_data_fits


class BitmapLayout(NamedTuple):
    """Where one header width puts the bitmap body, and how large its physical space is."""

    base: int                   # file offset of the 'SDMP'/'FDMP' header (the header's size)
    summary_name: str           # 'SUMMARY_DUMP32' / 'SUMMARY_DUMP64' (field names in errors)
    summary_bitmap: int         # DumpType 2: offset of the bits from ``base``
    max_pfn: int                # page frames of the physical address space
    space: str                  # '52-bit', '36-bit x86'
    max_text: str               # the limit as errors state it


def open_bitmap_body(src: Source, layout: BitmapLayout, dump_type: int,
                     warn: Callable[[str], None]) -> Tuple[BitmapLayer, str]:
    """The physical layer of a bitmap body and its signature ('SDMP' or 'FDMP')."""
    base = layout.base
    sig = src.read_partial(base, 8)
    if len(sig) < 8:
        raise TruncatedDumpError(f"truncated at offset {src.size:#x}: the bitmap header at {base:#x} is missing",
                                 path=src.path, offset=base, expected="'SDMP'/'FDMP' + 'DUMP'")
    if sig[:4] not in (b"SDMP", b"FDMP") or sig[4:8] != b"DUMP":
        raise CorruptDumpError(f"bitmap header signature is {sig!r}", path=src.path, offset=base,
                               expected="'SDMPDUMP' or 'FDMPDUMP'")
    old = dump_type == 2                            # SUMMARY_DUMP: u32 fields
    if old:
        name = layout.summary_name
        first = src.u32(base + 0xC, f"{name}.HeaderSize")
        bits = src.u32(base + 0x10, f"{name}.BitmapSize")
        pages = src.u32(base + 0x14, f"{name}.Pages")
        bm_off, bits_at, first_at = base + layout.summary_bitmap, base + 0x10, base + 0xC
    else:
        first = src.u64(base + 0x20, "bitmap FirstPage")
        pages = src.u64(base + 0x28, "bitmap TotalPresentPages")
        bits = src.u64(base + 0x30, "bitmap size in bits")
        bm_off, bits_at, first_at = base + 0x38, base + 0x30, base + 0x20
    if bits > layout.max_pfn:
        raise CorruptDumpError(f"bitmap of {bits:#x} bits is beyond the {layout.space} physical address space",
                               path=src.path, offset=bits_at, expected=layout.max_text)
    need = bm_off + (bits + 7) // 8
    if need > src.size:
        have = max(0, (src.size - bm_off) * 8)
        warn(f"truncated at offset {src.size:#x}: the page bitmap needs {need:#x} bytes; "
             f"only the first {have:,} page frames can be mapped")
        bits = have
    if first < need and bits:
        raise CorruptDumpError(f"first page offset {first:#x} overlaps the bitmap (ends at {need:#x})",
                               path=src.path, offset=first_at, expected=f"an offset >= {need:#x}")
    physical = BitmapLayer(src, bm_off, bits, first, expected_pages=pages, warn=warn)
    check_data_fits(src, first, physical.page_count, "the bitmap's pages", warn=warn)
    return physical, sig[:4].decode()
