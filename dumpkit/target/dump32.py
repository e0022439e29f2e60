"""The 32-bit x86 kernel dump format (DUMP_HEADER32, 'PAGEDUMP') and its body openers.

* :class:`Header32`: recognises 'PAGEDUMP', parses the one-page header
  (:mod:`dumpkit.formats.header32`);
* :class:`Full32Opener` (DumpType 1), :class:`Bitmap32Opener` (2, 5, 6),
  :class:`Triage32Opener` (4): the bodies at 0x1000 (:mod:`dumpkit.arch.x86.opener`).

The header's ``PaeEnabled`` reaches the x86 translator as the ``pae`` paging option.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, List, Tuple

from ..io import Source
from . import Body, HeaderFacts
from .registry import BodyOpener, HeaderFormat, register_header_format, register_opener

if TYPE_CHECKING:  # pragma: no cover
    from ..formats.header32 import DumpHeader32

NAME = "PAGEDUMP"


def facts_of32(h: DumpHeader32) -> HeaderFacts:
    return HeaderFacts.of_dump_header(h, pointer_size=4)


class Header32(HeaderFormat):
    name = NAME

    def matches(self, head: bytes) -> bool:
        return head[:8] == b"PAGEDUMP"

    def parse(self, source: Source) -> Tuple[DumpHeader32, HeaderFacts, List[str]]:
        from ..arch.x86.opener import truncation_warning32   # the x86 layouts load with the first 32-bit dump
        from ..formats.header32 import parse_header32
        h = parse_header32(source)
        warns = list(h.warnings)
        tw = truncation_warning32(source, h)
        if tw:
            warns.append(tw)
        return h, facts_of32(h), warns


def _paging(h: DumpHeader32) -> dict:
    return {"paging_options": {"pae": h.pae_enabled}}


class Full32Opener(BodyOpener):
    name = "full"
    header_format = NAME

    def accepts(self, facts: HeaderFacts, header: Any) -> bool:
        return facts.dump_type == 1

    def open(self, source: Source, h: DumpHeader32, facts: HeaderFacts, warn: Callable[..., None]) -> Body:
        from ..arch.x86.opener import full_body32
        return Body(physical=full_body32(source, h, warn), facts=_paging(h))


class Bitmap32Opener(BodyOpener):
    name = "bitmap"
    header_format = NAME

    def accepts(self, facts: HeaderFacts, header: Any) -> bool:
        return facts.dump_type in (2, 5, 6)

    def open(self, source: Source, h: DumpHeader32, facts: HeaderFacts, warn: Callable[..., None]) -> Body:
        from ..arch.x86.opener import bitmap_body32
        physical, sig = bitmap_body32(source, h, warn)
        return Body(physical=physical, facts={"bitmap_signature": sig, **_paging(h)})


class Triage32Opener(BodyOpener):
    name = "triage"
    header_format = NAME

    def accepts(self, facts: HeaderFacts, header: Any) -> bool:
        return facts.dump_type == 4

    def open(self, source: Source, h: DumpHeader32, facts: HeaderFacts, warn: Callable[..., None]) -> Body:
        from ..arch.x86.opener import triage_body32
        sparse, t = triage_body32(source, h, warn)
        note = getattr(warn, "note", None)
        for w in t.warnings:                      # parse_triage32 has raised them as DumpWarnings already
            note(w) if note is not None else warn(w)
        return Body(sparse=sparse, triage=t, facts=_paging(h))


register_header_format(Header32())
register_opener(Full32Opener())
register_opener(Bitmap32Opener())
register_opener(Triage32Opener())
