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

from ..errors import CorruptDumpError
from ..formats.header import DumpHeader, parse_header
from ..formats.triage import parse_triage
from ..io import Source
from ..memory.physical import RunsLayer, check_data_fits
from ..memory.sparse import triage_memory
from . import Body, HeaderFacts
from .bitmap import BitmapLayout, open_bitmap_body
from .registry import BodyOpener, HeaderFormat, register_header_format, register_opener

SIG_SDMP = b"SDMP"
SIG_FDMP = b"FDMP"
SIG_DUMP = b"DUMP"
DATA_OFFSET = 0x2000
MAX_PFN = 1 << 40                     # 52-bit physical address space
#: SUMMARY_DUMP64's bits follow its 64-bit RTL_BITMAP (at +0x28); the FDMP/SDMP header's at +0x38
BITMAP64 = BitmapLayout(DATA_OFFSET, "SUMMARY_DUMP64", 0x28, MAX_PFN, "52-bit", "at most 2^40 page frames")


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
        physical, sig = open_bitmap_body(source, BITMAP64, facts.dump_type, warn)
        return Body(physical=physical, facts={"bitmap_signature": sig})


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
