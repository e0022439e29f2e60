"""TRIAGE_DUMP64: the body of a kernel "small memory dump" (DumpType 4).

All ``*Offset`` fields are absolute file offsets.  Every offset and count is checked
against the file before use; a section that does not fit is dropped with a warning
(the rest of the dump stays usable), never read past the end.
"""
from __future__ import annotations

import struct
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..errors import CorruptDumpError, DumpWarning, TruncatedDumpError
from ..io import Source
from ._layout import Layout

TRIAGE_OFFSET = 0x2000
TRIAGE_VALID = b"TRGD"
DRIVER_ENTRY_SIZE = 0x90
UNLOADED_ENTRY_SIZE = 0x38
MAX_DRIVERS = 0x4000
MAX_UNLOADED = 0x1000
MAX_DATA_BLOCKS = 0x100000

MINIDUMP_FIELDS = {
    0x1: "CONTEXT", 0x2: "EXCEPTION", 0x4: "PRCB", 0x8: "PROCESS", 0x10: "THREAD", 0x20: "STACK",
    0x40: "DRIVER_LIST", 0x80: "BROKEN_DRIVER", 0x100: "MMINFO", 0x200: "DATAPAGE",
    0x400: "DEBUGGER_DATA", 0x800: "DATA_BLOCKS",
}

_Triage64 = Layout([
    ("service_pack_build", "I"),
    ("size_of_dump", "I"),
    ("valid_offset", "I"),
    ("context_offset", "I"),
    ("exception_offset", "I"),
    ("mm_offset", "I"),
    ("unloaded_drivers_offset", "I"),
    ("prcb_offset", "I"),
    ("process_offset", "I"),
    ("thread_offset", "I"),
    ("call_stack_offset", "I"),
    ("size_of_call_stack", "I"),
    ("driver_list_offset", "I"),
    ("driver_count", "I"),
    ("string_pool_offset", "I"),
    ("string_pool_size", "I"),
    ("broken_driver_offset", "I"),
    ("triage_options", "I"),
    ("top_of_stack", "Q"),
    ("architecture_specific", "16s"),
    ("data_page_address", "Q"),
    ("data_page_offset", "I"),
    ("data_page_size", "I"),
    ("debugger_data_offset", "I"),
    ("debugger_data_size", "I"),
    ("data_blocks_offset", "I"),
    ("data_blocks_count", "I"),
])
assert _Triage64.sizeof() == 0x80

_DRIVER = struct.Struct("<I4x" "16x" "32x" "QQI4x" "16x16x" "IHHQ" "I4x" "I4x")
# DriverNameOffset, (LdrEntry) InLoadOrderLinks, ExceptionTable..NonPagedDebugInfo(4 q),
# DllBase, EntryPoint, SizeOfImage, FullDllName, BaseDllName, Flags, LoadCount, (u16), SectionPointer,
# CheckSum, TimeDateStamp
assert _DRIVER.size == DRIVER_ENTRY_SIZE, hex(_DRIVER.size)
_UNLOADED = struct.Struct("<HHI Q 24s Q Q")
assert _UNLOADED.size == UNLOADED_ENTRY_SIZE
_BLOCK = struct.Struct("<QII")


@dataclass
class TriageDriver:
    """One DUMP_DRIVER_ENTRY64 with its name from the string pool."""

    name: str                 # as written in the pool (base name or full path)
    base: int
    size: int
    entry_point: int
    checksum: int
    timestamp: int
    flags: int
    name_offset: int

    @property
    def base_name(self) -> str:
        return self.name.replace("/", "\\").rsplit("\\", 1)[-1]


@dataclass
class TriageUnloaded:
    name: str
    start: int
    end: int


@dataclass
class TriageDataBlock:
    address: int
    offset: int
    size: int


@dataclass
class MmInfo:
    """DUMP_MM_STORAGE64: pool and commit figures at crash time (often all zero)."""

    version: int
    size: int
    special_pool_tag: int
    triage_action_taken: int
    verify_driver_level: int
    kernel_verifier: int
    maximum_nonpaged_pool: int
    allocated_nonpaged_pool: int
    paged_pool_maximum: int
    paged_pool_allocated: int
    committed_pages: int
    committed_pages_peak: int
    commit_limit_maximum: int


@dataclass
class TriageDump:
    """Parsed TRIAGE_DUMP64 and its sections."""

    fields: Dict[str, int]
    top_of_stack: int
    drivers: List[TriageDriver]
    unloaded: List[TriageUnloaded]
    data_blocks: List[TriageDataBlock]
    mm: Optional[MmInfo]
    valid: bool
    secondary_blobs: int
    warnings: List[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> int:
        f = self.__dict__.get("fields")
        if f is not None and name in f:
            return f[name]
        raise AttributeError(name)

    @property
    def overflowed(self) -> bool:
        return bool(self.fields.get("triage_options", 0) != 0xFFFFFFFF and self.fields.get("triage_options", 0) & 0x100)


def _warn(src: Source, msgs: List[str], text: str) -> None:
    msgs.append(text)
    warnings.warn(DumpWarning(f"{src.path}: {text}"), stacklevel=4)


def read_dump_string(src: Source, offset: int, limit: int = 0x800) -> str:
    """A DUMP_STRING: u32 length in UTF-16 code units, then the characters."""
    n = src.u32(offset, "DUMP_STRING length")
    if n > limit:
        raise CorruptDumpError(f"string length {n} is implausible", path=src.path, offset=offset,
                               expected=f"at most {limit} UTF-16 code units")
    raw = src.read(offset + 4, n * 2, "DUMP_STRING characters")
    return raw.decode("utf-16-le", errors="replace")


def _section_ok(src: Source, layout: "BodyLayout", off: int, size: int, what: str, msgs: List[str]) -> bool:
    if off == 0 or off == 0xFFFFFFFF:
        return False
    if off < layout.start or off + size > src.size:
        _warn(src, msgs, f"{what} at offset {off:#x} (+{size:#x}) lies outside the file "
                         f"({src.size:#x} bytes); section ignored")
        return False
    return True


def _usable_entries(src: Source, msgs: List[str], what: str, count: int, limit: int, table_offset: int,
                    entry_size: int) -> int:
    """How many of ``count`` entries of the table at ``table_offset`` can be read: none (with a
    warning) when the count is implausible, fewer (with a warning) when the file ends first."""
    if count > limit:
        _warn(src, msgs, f"{what}: count {count} is implausible; ignored")
        return 0
    avail = max(0, (src.size - table_offset) // entry_size)
    if avail < count:
        _warn(src, msgs, f"{what} truncated at offset {src.size:#x}: {avail} of {count} entries")
        return avail
    return count


@dataclass(frozen=True)
class BodyLayout:
    """What differs between the 64-bit and 32-bit triage bodies once the header is parsed: where
    the body starts and how its tables' entries are laid out (each parser defines its own)."""

    start: int                  # file offset of TRIAGE_DUMP64/32; no section may lie before it
    driver: struct.Struct       # DUMP_DRIVER_ENTRY: name offset, base, entry, size, flags, 3 skipped, checksum, stamp
    unloaded_count: int         # width of the unloaded-driver count (8 or 4 bytes)
    unloaded: struct.Struct     # DUMP_UNLOADED_DRIVERS: ... then name (WCHAR[12]), start, end last
    block: struct.Struct        # TRIAGE_DATA_BLOCK: address, offset, size
    mm: struct.Struct           # DUMP_MM_STORAGE: the 13 MmInfo fields


_LAYOUT64 = BodyLayout(TRIAGE_OFFSET, _DRIVER, 8, _UNLOADED, _BLOCK, struct.Struct("<6I7Q"))


def parse_triage(src: Source) -> TriageDump:
    if src.size < TRIAGE_OFFSET + 0x80:
        raise TruncatedDumpError(f"truncated at offset {src.size:#x}: no room for TRIAGE_DUMP64",
                                 path=src.path, offset=TRIAGE_OFFSET, expected="0x80-byte TRIAGE_DUMP64")
    t = _Triage64.parse(src.read(TRIAGE_OFFSET, 0x80))
    fields = {k: v for k, v in t.items() if not k.startswith("_") and isinstance(v, int)}
    return parse_sections(src, fields, _LAYOUT64)


def parse_sections(src: Source, fields: Dict[str, int], layout: BodyLayout) -> TriageDump:
    """The sections a parsed triage header points at (``fields`` by their TRIAGE_DUMP64 names)."""
    msgs: List[str] = []

    valid = False
    vo = fields["valid_offset"]
    if 0 < vo and vo + 4 <= src.size:
        valid = src.read(vo, 4) == TRIAGE_VALID
    if not valid:
        _warn(src, msgs, f"the triage 'TRGD' valid marker is missing at ValidOffset {vo:#x}: "
                         "the dump may be incomplete")

    # -- string pool + driver list ------------------------------------------
    drivers: List[TriageDriver] = []
    dl, entry_size = fields["driver_list_offset"], layout.driver.size
    if fields["driver_count"] and _section_ok(src, layout, dl, 0, "driver list", msgs):
        count = _usable_entries(src, msgs, "driver list", fields["driver_count"], MAX_DRIVERS, dl, entry_size)
        for i in range(count):
            off = dl + i * entry_size
            (name_off, base, entry, size, flags, _lc, _lc2, _sp, checksum, ts) = layout.driver.unpack_from(
                src.buffer, off)
            try:
                name = read_dump_string(src, name_off) if name_off else ""
            except (CorruptDumpError, TruncatedDumpError) as exc:
                _warn(src, msgs, f"driver entry {i} at {off:#x}: name unreadable ({exc.message})")
                name = f"unknown_{base:x}"
            drivers.append(TriageDriver(name, base, size, entry, checksum, ts, flags, name_off))

    # -- unloaded drivers --------------------------------------------------------
    unloaded: List[TriageUnloaded] = []
    uo, width, entry_size = fields["unloaded_drivers_offset"], layout.unloaded_count, layout.unloaded.size
    if _section_ok(src, layout, uo, width, "unloaded-driver list", msgs):
        stated = src.u64(uo) if width == 8 else src.u32(uo)
        n = _usable_entries(src, msgs, "unloaded-driver list", stated, MAX_UNLOADED, uo + width, entry_size)
        for i in range(n):
            wname, start, end = layout.unloaded.unpack_from(src.buffer, uo + width + i * entry_size)[-3:]
            name = wname.decode("utf-16-le", errors="replace").split("\0", 1)[0]
            unloaded.append(TriageUnloaded(name, start, end))

    # -- data blocks ------------------------------------------------------------
    blocks: List[TriageDataBlock] = []
    bo, entry_size = fields["data_blocks_offset"], layout.block.size
    if fields["data_blocks_count"] and _section_ok(src, layout, bo, 0, "data-block table", msgs):
        n = _usable_entries(src, msgs, "data-block table", fields["data_blocks_count"], MAX_DATA_BLOCKS, bo,
                            entry_size)
        bad = 0
        for i in range(n):
            va, off, size = layout.block.unpack_from(src.buffer, bo + i * entry_size)
            if off + size > src.size or off < layout.start:
                bad += 1
                continue
            blocks.append(TriageDataBlock(va, off, size))
        if bad:
            _warn(src, msgs, f"{bad} data blocks point outside the file and were ignored")

    mm = None
    if _section_ok(src, layout, fields["mm_offset"], layout.mm.size, "MM storage", msgs):
        mm = MmInfo(*layout.mm.unpack_from(src.buffer, fields["mm_offset"]))

    # -- secondary data after SizeOfDump (normal: skip, count) -----------------
    blobs = 0
    so = fields["size_of_dump"]
    if so and so + 16 <= src.size and src.read(so, 8) == b"DumpBlob":
        off = so + src.u32(so + 8)
        while off + 0x20 <= src.size and blobs < 4096:
            # DUMP_BLOB_HEADER: u32 HeaderSize, GUID Tag, u32 DataSize, u32 PrePad, u32 PostPad
            hs, _tag, size, pre, post = struct.unpack_from("<I16sIII", src.buffer, off)
            if hs != 0x20:
                break
            blobs += 1
            off += 0x20 + pre + size + post

    return TriageDump(fields=fields, top_of_stack=fields["top_of_stack"], drivers=drivers, unloaded=unloaded,
                      data_blocks=blocks, mm=mm, valid=valid, secondary_blobs=blobs, warnings=msgs)
