"""The 64-bit kernel dump format (DUMP_HEADER64, 'PAGEDU64') and its body openers.

* :class:`Header64`: recognises 'PAGEDU64', parses the header (:mod:`dumpkit.formats.header`);
* :class:`FullOpener`: DumpType 1, PHYSICAL_MEMORY_DESCRIPTOR runs from 0x2000;
* :class:`BitmapOpener`: DumpTypes 2 (SUMMARY_DUMP64, 32-bit fields), 5 and 6 (the
  'SDMP'/'FDMP' bitmap header at 0x2000);
* :class:`TriageOpener`: DumpType 4, TRIAGE_DUMP64 and its captured virtual ranges.

The same layouts serve x64 and ARM64 dumps (the header and body do not depend on the CPU).
"""
from __future__ import annotations

from typing import Any, Callable, List, Tuple

from ..errors import CorruptDumpError, TruncatedDumpError
from ..formats.header import DumpHeader, parse_header
from ..formats.triage import parse_triage
from ..io import Source
from ..memory.physical import BitmapLayer, RunsLayer, check_data_fits
from ..memory.sparse import triage_memory
from . import Body, HeaderFacts
from .registry import BodyOpener, HeaderFormat, register_header_format, register_opener

SIG_SDMP = b"SDMP"
SIG_FDMP = b"FDMP"
SIG_DUMP = b"DUMP"
DATA_OFFSET = 0x2000
MAX_PFN = 1 << 40                     # 52-bit physical address space


def facts_of(h: DumpHeader) -> HeaderFacts:
    return HeaderFacts.of_dump_header(h, pointer_size=8)


class Header64(HeaderFormat):
    name = "PAGEDU64"

    def matches(self, head: bytes) -> bool:
        return head[:8] == b"PAGEDU64"

    def parse(self, source: Source) -> Tuple[DumpHeader, HeaderFacts, List[str]]:
        h = parse_header(source)
        warns = list(h.warnings)
        req = h.required_dump_space
        if req and req > source.size and h.dump_type != 4:
            warns.append(f"truncated at offset {source.size:#x}: the writer expected {req:#x} bytes "
                         f"({req - source.size:,} missing); pages past the end read as missing")
        return h, facts_of(h), warns


class FullOpener(BodyOpener):
    name = "full"
    header_format = "PAGEDU64"

    def accepts(self, facts: HeaderFacts, header: Any) -> bool:
        return facts.dump_type == 1

    def open(self, source: Source, h: DumpHeader, facts: HeaderFacts, warn: Callable[..., None]) -> Body:
        if h.number_of_runs is None:
            raise CorruptDumpError("full dump without a PHYSICAL_MEMORY_DESCRIPTOR (NumberOfRuns is unset)",
                                   path=source.path, offset=0x88, expected="NumberOfRuns")
        runs = [(r.base_page, r.page_count) for r in h.runs]
        total = sum(c for _, c in runs)
        if h.number_of_pages is not None and total != h.number_of_pages:
            warn(f"the runs hold {total:#x} pages but NumberOfPages says {h.number_of_pages:#x}")
        if any(b + c > MAX_PFN for b, c in runs):
            raise CorruptDumpError("a physical run lies beyond the 52-bit physical address space", path=source.path,
                                   offset=0x98, expected="BasePage + PageCount < 2^40")
        physical = RunsLayer(source, runs, DATA_OFFSET)
        check_data_fits(source, DATA_OFFSET, total, "the run data", warn=warn)
        return Body(physical=physical)


class BitmapOpener(BodyOpener):
    name = "bitmap"
    header_format = "PAGEDU64"

    def accepts(self, facts: HeaderFacts, header: Any) -> bool:
        return facts.dump_type in (2, 5, 6)

    def open(self, source: Source, h: DumpHeader, facts: HeaderFacts, warn: Callable[..., None]) -> Body:
        src = source
        sig = src.read_partial(DATA_OFFSET, 8)
        if len(sig) < 8:
            raise TruncatedDumpError(f"truncated at offset {src.size:#x}: the bitmap header at 0x2000 is missing",
                                     path=src.path, offset=DATA_OFFSET, expected="'SDMP'/'FDMP' + 'DUMP'")
        if sig[:4] not in (SIG_SDMP, SIG_FDMP) or sig[4:8] != SIG_DUMP:
            raise CorruptDumpError(f"bitmap header signature is {sig!r}", path=src.path, offset=DATA_OFFSET,
                                   expected="'SDMPDUMP' or 'FDMPDUMP'")
        old = facts.dump_type == 2                      # old SUMMARY_DUMP64: 32-bit fields
        if old:
            first = src.u32(0x200C, "SUMMARY_DUMP64.HeaderSize")
            bits = src.u32(0x2010, "SUMMARY_DUMP64.BitmapSize")
            pages = src.u32(0x2014, "SUMMARY_DUMP64.Pages")
            bm_off = 0x2028
        else:
            first = src.u64(0x2020, "bitmap FirstPage")
            pages = src.u64(0x2028, "bitmap TotalPresentPages")
            bits = src.u64(0x2030, "bitmap size in bits")
            bm_off = 0x2038
        if bits > MAX_PFN:
            raise CorruptDumpError(f"bitmap of {bits:#x} bits is beyond the 52-bit physical address space",
                                   path=src.path, offset=0x2010 if old else 0x2030,
                                   expected="at most 2^40 page frames")
        need = bm_off + (bits + 7) // 8
        if need > src.size:
            have_bits = max(0, (src.size - bm_off) * 8)
            warn(f"truncated at offset {src.size:#x}: the page bitmap needs {need:#x} bytes; "
                 f"only the first {have_bits:,} page frames can be mapped")
            bits = have_bits
        if first < need and bits:
            raise CorruptDumpError(f"first page offset {first:#x} overlaps the bitmap (ends at {need:#x})",
                                   path=src.path, offset=0x200C if old else 0x2020,
                                   expected=f"an offset >= {need:#x}")
        physical = BitmapLayer(src, bm_off, bits, first, expected_pages=pages, warn=warn)
        check_data_fits(src, first, physical.page_count, "the bitmap's pages", warn=warn)
        return Body(physical=physical, facts={"bitmap_signature": sig[:4].decode()})


class TriageOpener(BodyOpener):
    name = "triage"
    header_format = "PAGEDU64"

    def accepts(self, facts: HeaderFacts, header: Any) -> bool:
        return facts.dump_type == 4

    def open(self, source: Source, h: DumpHeader, facts: HeaderFacts, warn: Callable[..., None]) -> Body:
        t = parse_triage(source)
        note = getattr(warn, "note", None)
        for w in t.warnings:                      # parse_triage has raised them as DumpWarnings already
            note(w) if note is not None else warn(w)
        sp = triage_memory(source, t, h.kd_debugger_data_block)
        return Body(sparse=sp, triage=t)


register_header_format(Header64())
register_opener(FullOpener())
register_opener(BitmapOpener())
register_opener(TriageOpener())
