"""The registry of header formats and body openers, and :func:`open_target`.

Opening is one pass down the layers:

1. the first :class:`HeaderFormat` whose ``matches(first 8 bytes)`` is true parses the
   header (its own checks) into the format's header object plus :class:`HeaderFacts`;
   a file no format recognises gets the clear "this is a CAB / a minidump / ..." error;
2. the architecture comes from ``facts.machine`` (:func:`dumpkit.arch.for_machine`:
   an unknown machine type is an :class:`UnsupportedDumpError`);
3. the first :class:`BodyOpener` of that header format whose ``accepts(facts, header)``
   is true builds the memory (physical runs, a page bitmap, a triage dump's ranges).

Formats and openers register themselves (``register_header_format``,
``register_opener``); the 64-bit formats are in :mod:`dumpkit.target.dump64`.
"""
from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple

from ..errors import UnsupportedDumpError
from ..io import Source


class HeaderFormat:
    """A dump header format (one signature).  Subclass and register an instance."""

    name = ""                                 # e.g. 'PAGEDU64'

    def matches(self, head: bytes) -> bool:
        """Is this file in this format (``head`` = its first 8 bytes)?"""
        raise NotImplementedError

    def parse(self, source: Source) -> Tuple[Any, Any, List[str]]:
        """(format header, HeaderFacts, warnings); raise a DumpError on bad input."""
        raise NotImplementedError


class BodyOpener:
    """Builds a target's memory for one family of dump types of one header format."""

    name = ""                                 # e.g. 'full', 'bitmap', 'triage'
    header_format = ""                        # the HeaderFormat.name it reads

    def accepts(self, facts: Any, header: Any) -> bool:
        raise NotImplementedError

    def open(self, source: Source, header: Any, facts: Any, warn: Callable[..., None]) -> Any:
        """A :class:`~dumpkit.target.Body`; report problems through ``warn(text)``."""
        raise NotImplementedError


_FORMATS: List[HeaderFormat] = []
_OPENERS: List[BodyOpener] = []
_BUILTIN = False


def register_header_format(fmt: HeaderFormat, *, first: bool = False) -> HeaderFormat:
    _FORMATS.insert(0, fmt) if first else _FORMATS.append(fmt)
    return fmt


def register_opener(opener: BodyOpener, *, first: bool = False) -> BodyOpener:
    _OPENERS.insert(0, opener) if first else _OPENERS.append(opener)
    return opener


def header_formats() -> List[HeaderFormat]:
    _load_builtin()
    return list(_FORMATS)


def openers() -> List[BodyOpener]:
    _load_builtin()
    return list(_OPENERS)


def _load_builtin() -> None:
    global _BUILTIN
    if not _BUILTIN:
        _BUILTIN = True
        import importlib
        for mod in (".dump64", ".dump32"):
            try:
                importlib.import_module(mod, __package__)
            except ImportError:
                pass                          # a format module not (yet) in this tree


def open_target(source: Source) -> Any:
    """Recognise, parse and open ``source``: a :class:`~dumpkit.target.Target`."""
    from ..arch import for_machine
    from ..formats.header import reject_unknown
    from . import Memory, Target, WarningSink
    _load_builtin()
    head = source.read_partial(0, 8)
    fmt: Optional[HeaderFormat] = next((f for f in _FORMATS if f.matches(head)), None)
    if fmt is None:
        reject_unknown(source, head)          # raises the clear "this is ..." error
        raise UnsupportedDumpError("no registered format reads this file", path=source.path, offset=0)
    sink = WarningSink(source.path)
    header, facts, header_warnings = fmt.parse(source)
    for w in header_warnings:
        sink(w)
    arch = for_machine(facts.machine, source.path)
    opener = next((o for o in _OPENERS if o.header_format == fmt.name and o.accepts(facts, header)), None)
    if opener is None:
        raise UnsupportedDumpError(f"no opener for DumpType {facts.dump_type:#x} ({facts.dump_type_name}) "
                                   f"of a {fmt.name} dump", path=source.path)
    body = opener.open(source, header, facts, sink)
    memory = Memory(arch, body.physical, body.sparse, facts.directory_table_base, source.path,
                    facts.dump_type_name, body.facts.get("paging_options"))
    return Target(source, arch, header, facts, memory, body, sink, fmt.name, opener.name)
