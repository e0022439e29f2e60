"""The target model: what one opened dump *is*, independent of the file format.

A :class:`Target` holds the architecture (:mod:`dumpkit.arch`), the memory
(:class:`~dumpkit.target.memory.Memory`: physical layer and/or captured virtual ranges,
with the architecture's translation), the header facts (:class:`HeaderFacts`, the
format-neutral fields every layer reads), the format's own parsed structures
(``header``: DUMP_HEADER64 or another format's; ``triage``), and one warnings sink
(:class:`WarningSink`) that every layer (formats, memory, kernel, PE) reports into.

:func:`open_target` produces it in one pass down the layers: a registered header
format recognises the file and parses its header, the architecture is looked up from
the machine type, and the first registered body opener that accepts the header builds the
memory.  :class:`dumpkit.Dump` is a thin facade over a Target; kernel functions take a
:class:`dumpkit.kernel.state.Kernel` (the target plus kernel caches), never a Dump.

See docs/architectures.md ("Adding an architecture") for adding an architecture or a
format opener.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Tuple

from ..errors import DumpWarning
from ..io import Source
from .memory import Memory


class WarningSink:
    """The one place a dump's warnings go: kept in order (``items``, which is
    ``Dump.warnings``) and raised as :class:`~dumpkit.errors.DumpWarning`."""

    def __init__(self, path: Optional[str] = None) -> None:
        self.path = path
        self.items: List[str] = []

    def __call__(self, text: str, *, stacklevel: int = 3, emit: bool = True) -> None:
        self.items.append(text)
        if emit:
            warnings.warn(DumpWarning(f"{self.path}: {text}"), stacklevel=stacklevel + 1)

    warn = __call__

    def note(self, text: str) -> None:
        """Record a warning that was already raised as a DumpWarning elsewhere."""
        self.items.append(text)

    @contextlib.contextmanager
    def capture(self) -> Iterator[None]:
        """Collect the DumpWarnings other layers (PE images, symbols) raise inside the block
        into ``items`` too (each text once), and let them through as warnings."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DumpWarning)
            try:
                yield
            finally:
                pass
        seen = set(self.items)
        for w in caught:
            if issubclass(w.category, DumpWarning):
                text = str(w.message)
                if self.path and text.startswith(f"{self.path}: "):
                    text = text[len(self.path) + 2:]
                if text not in seen:
                    seen.add(text)
                    self.items.append(text)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class HeaderFacts:
    """The format-neutral header facts the layers above read (from DUMP_HEADER64, DUMP_HEADER32, ...)."""

    machine: int
    dump_type: int                    # DumpType code (1 full, 2 kernel, 4 triage, 5/6 bitmap, ...)
    dump_type_name: str
    build: int
    major_version: int
    bugcheck_code: int
    bugcheck_parameters: Tuple[int, ...]
    directory_table_base: Optional[int]
    ps_loaded_module_list: Optional[int]
    ps_active_process_head: Optional[int]
    kd_debugger_data_block: Optional[int]
    number_processors: Optional[int]
    context_record: bytes             # the raw CONTEXT of the header
    pointer_size: int = 8

    @classmethod
    def of_dump_header(cls, h: Any, pointer_size: int) -> "HeaderFacts":
        """The facts of a DUMP_HEADER64 or DUMP_HEADER32 (parsed headers with the same attribute names)."""
        return cls(machine=h.machine_image_type, dump_type=h.dump_type, dump_type_name=h.dump_type_name,
                   build=h.build, major_version=h.major_version, bugcheck_code=h.bugcheck_code,
                   bugcheck_parameters=tuple(h.bugcheck_parameters),
                   directory_table_base=h.directory_table_base, ps_loaded_module_list=h.ps_loaded_module_list,
                   ps_active_process_head=h.ps_active_process_head,
                   kd_debugger_data_block=h.kd_debugger_data_block, number_processors=h.number_processors,
                   context_record=h.context_record, pointer_size=pointer_size)


@dataclass
class Body:
    """What a format opener builds: the memory layers and the format's own extra structures."""

    physical: Any = None
    sparse: Any = None
    triage: Any = None
    facts: Dict[str, Any] = field(default_factory=dict)     # e.g. {'bitmap_signature': 'SDMP'}


class Target:
    """One opened dump: architecture, memory, header facts, format structures, warnings."""

    def __init__(self, source: Source, arch: Any, header: Any, facts: HeaderFacts, memory: Memory, body: Body,
                 sink: WarningSink, header_format: str, opener: str) -> None:
        self.source = source
        self.path = source.path
        self.arch = arch
        self.header = header               # the format's parsed header (DumpHeader for PAGEDU64)
        self.facts = facts
        self.memory = memory
        self.triage = body.triage
        self.body = body
        self.sink = sink
        self.header_format = header_format  # e.g. 'PAGEDU64'
        self.opener = opener                # e.g. 'bitmap'

    @property
    def warnings(self) -> List[str]:
        return self.sink.items

    def warn(self, text: str, *, stacklevel: int = 3) -> None:
        self.sink(text, stacklevel=stacklevel + 1)

    def close(self) -> None:
        self.memory.close()
        self.source.close()

    def __repr__(self) -> str:
        return f"<Target {self.arch.name} {self.header_format}/{self.opener} {self.path!r}>"


from .registry import (BodyOpener, HeaderFormat, open_target, register_header_format,  # noqa: E402
                       register_opener)

__all__ = ["Target", "Memory", "WarningSink", "HeaderFacts", "Body", "open_target", "register_header_format",
           "register_opener", "HeaderFormat", "BodyOpener"]
