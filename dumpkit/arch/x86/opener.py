"""Open a 32-bit kernel dump ("PAGEDUMP") down the layers: header -> body -> memory.

:func:`open_pagedump` reads the DUMP_HEADER32, then the body its DumpType names:

* 1 (full): the header's PHYSICAL_MEMORY_DESCRIPTOR32 runs, pages packed from 0x1000;
* 2 (old kernel summary): SUMMARY_DUMP32 at 0x1000 (u32 fields, bitmap at 0x1020);
* 5/6 (bitmap): the 'FDMP'/'SDMP' header at 0x1000 (u64 fields, bitmap at 0x1038);
* 4 (triage): TRIAGE_DUMP32 at 0x1000 and a sparse virtual memory of its captured ranges.

and gives an :class:`X86DumpParts` with the memory layer translating through
:class:`~dumpkit.arch.x86.paging.X86Translator` in the mode ``PaeEnabled`` names.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

from ...errors import CorruptDumpError, DumpWarning, TranslationError
from ...formats.header32 import DATA_OFFSET32, DumpHeader32, parse_header32
from ...formats.triage import TriageDump
from ...formats.triage32 import parse_triage32
from ...io import Source
from ...memory.physical import PhysicalLayer, RunsLayer, check_data_fits
from ...memory.sparse import SparseMemory, triage_memory
from ...target.bitmap import BitmapLayout, open_bitmap_body
from .paging import X86Translator

MAX_PFN32 = 1 << 24              # PAE: 36-bit physical addresses (64 GiB) = 2^24 page frames


@dataclass
class X86DumpParts:
    """What a 32-bit dump holds, layer by layer."""

    source: Source
    header: DumpHeader32
    physical: Optional[PhysicalLayer] = None
    triage: Optional[TriageDump] = None
    sparse: Optional[SparseMemory] = None
    bitmap_signature: Optional[str] = None
    warnings: List[str] = field(default_factory=list)
    _spaces: Dict[int, X86Translator] = field(default_factory=dict)

    @property
    def pae(self) -> bool:
        return self.header.pae_enabled

    def address_space(self, dtb: Optional[int] = None) -> X86Translator:
        if self.physical is None:
            raise TranslationError("a triage dump has no page tables; its captured ranges are addressed by VA",
                                   path=self.source.path)
        if dtb is None:
            dtb = self.header.directory_table_base
            if dtb is None:
                raise CorruptDumpError("DirectoryTableBase is not set in the header", path=self.source.path,
                                       offset=0x10)
        sp = self._spaces.get(dtb)
        if sp is None:
            sp = self._spaces[dtb] = X86Translator(self.physical, dtb, self.pae)
        return sp

    def read_virtual(self, va: int, size: int, zero_fill: bool = False) -> bytes:
        if self.sparse is not None:
            return self.sparse.read(va, size, zero_fill)
        return self.address_space().read(va, size, zero_fill)


def _warner(src: Source, sink: List[str]) -> Callable[[str], None]:
    def warn(text: str) -> None:
        sink.append(text)
        warnings.warn(DumpWarning(f"{src.path}: {text}"), stacklevel=5)
    return warn


def full_body32(src: Source, hdr: DumpHeader32, warn: Callable[[str], None]) -> PhysicalLayer:
    """DumpType 1: the PHYSICAL_MEMORY_DESCRIPTOR32 runs, pages packed from 0x1000."""
    if hdr.number_of_runs is None:
        raise CorruptDumpError("full dump without a PHYSICAL_MEMORY_DESCRIPTOR32 (NumberOfRuns is unset)",
                               path=src.path, offset=0x64, expected="NumberOfRuns")
    if hdr.number_of_runs and not hdr.runs:
        raise CorruptDumpError(f"NumberOfRuns {hdr.number_of_runs} does not fit the header: no usable run table",
                               path=src.path, offset=0x64, expected="at most 86 runs")
    runs = [(r.base_page, r.page_count) for r in hdr.runs]
    total = sum(c for _, c in runs)
    if hdr.number_of_pages is not None and total != hdr.number_of_pages:
        warn(f"the runs hold {total:#x} pages but NumberOfPages says {hdr.number_of_pages:#x}")
    physical = RunsLayer(src, runs, DATA_OFFSET32)
    check_data_fits(src, DATA_OFFSET32, total, "the run data")
    return physical


def triage_body32(src: Source, hdr: DumpHeader32, warn: Callable[[str], None]) -> Tuple[SparseMemory, TriageDump]:
    """DumpType 4: TRIAGE_DUMP32 and a sparse virtual memory of its captured ranges."""
    t = parse_triage32(src)
    sp = triage_memory(src, t, hdr.kd_debugger_data_block)
    return sp, t


def truncation_warning32(src: Source, hdr: DumpHeader32) -> Optional[str]:
    req = hdr.required_dump_space
    if req and req > src.size and hdr.dump_type != 4:
        return (f"truncated at offset {src.size:#x}: the writer expected {req:#x} bytes "
                f"({req - src.size:,} missing); pages past the end read as missing")
    return None


def open_pagedump(src: Source) -> X86DumpParts:
    """Read a 32-bit kernel dump's header and body; clear DumpErrors, warnings for what is degraded."""
    hdr = parse_header32(src)
    parts = X86DumpParts(src, hdr)
    warn = _warner(src, parts.warnings)
    for w in hdr.warnings:
        warn(w)
    tw = truncation_warning32(src, hdr)
    if tw:
        warn(tw)
    if hdr.dump_type == 1:
        parts.physical = full_body32(src, hdr, warn)
    elif hdr.dump_type in (2, 5, 6):
        parts.physical, parts.bitmap_signature = bitmap_body32(src, hdr, warn)
    elif hdr.dump_type == 4:
        parts.sparse, parts.triage = triage_body32(src, hdr, warn)
        parts.warnings.extend(parts.triage.warnings)
    return parts


#: SUMMARY_DUMP32's bits follow its 32-bit RTL_BITMAP (at +0x20); the FDMP/SDMP header's at +0x38
BITMAP32 = BitmapLayout(DATA_OFFSET32, "SUMMARY_DUMP32", 0x20, MAX_PFN32, "36-bit x86",
                        f"at most {MAX_PFN32:#x} page frames")


def bitmap_body32(src: Source, hdr: DumpHeader32, warn: Callable[[str], None]) -> Tuple[PhysicalLayer, str]:
    """DumpTypes 2 (SUMMARY_DUMP32) and 5/6 (the FDMP/SDMP header): the page bitmap at 0x1000."""
    return open_bitmap_body(src, BITMAP32, hdr.dump_type, warn)
