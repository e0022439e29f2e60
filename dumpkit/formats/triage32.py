"""TRIAGE_DUMP32: the body of a 32-bit "small memory dump" (DumpType 4 in a PAGEDUMP file).

It sits at 0x1000 (after the one-page DUMP_HEADER32).  26 consecutive u32 fields, the
same sections as the 64-bit layout with 32-bit pointers: DUMP_DRIVER_ENTRY32 (0x4C:
u32 name offset + the 0x48-byte KLDR_DATA_TABLE_ENTRY32 image), DUMP_UNLOADED_DRIVERS32
(0x28) after a u32 count, 12-byte TRIAGE_DATA_BLOCK32 records.  Offsets and sources are
in ``docs/dump-formats.md``.  The result is the same :class:`~dumpkit.formats.triage.TriageDump`
the 64-bit parser gives.

Every offset and count is checked against the file before use; a section that does
not fit is dropped with a warning, never read past the end.
"""
from __future__ import annotations

import struct
import warnings
from typing import List

from ..errors import CorruptDumpError, DumpWarning, TruncatedDumpError
from ..io import Source
from .triage import (MAX_DATA_BLOCKS, MAX_DRIVERS, MAX_UNLOADED, TRIAGE_VALID, MmInfo, TriageDataBlock,
                     TriageDriver, TriageDump, TriageUnloaded, read_dump_string)

TRIAGE32_OFFSET = 0x1000
TRIAGE32_FIELDS = (
    "service_pack_build", "size_of_dump", "valid_offset", "context_offset", "exception_offset", "mm_offset",
    "unloaded_drivers_offset", "prcb_offset", "process_offset", "thread_offset", "call_stack_offset",
    "size_of_call_stack", "driver_list_offset", "driver_count", "string_pool_offset", "string_pool_size",
    "broken_driver_offset", "triage_options", "top_of_stack", "data_page_address", "data_page_offset",
    "data_page_size", "debugger_data_offset", "debugger_data_size", "data_blocks_offset", "data_blocks_count",
)
_TRIAGE32 = struct.Struct("<26I")
TRIAGE32_SIZE = _TRIAGE32.size                  # 0x68
DRIVER_ENTRY32_SIZE = 0x4C
# DriverNameOffset; LdrEntry: links(8), 4 x u32, DllBase, EntryPoint, SizeOfImage, FullDllName(8),
# BaseDllName(8), Flags, LoadCount u16, u16, u32, CheckSum, TimeDateStamp
_DRIVER32 = struct.Struct("<I 8x 16x III 8x 8x I HH I I I")
assert _DRIVER32.size == DRIVER_ENTRY32_SIZE
UNLOADED32_SIZE = 0x28
_UNLOADED32 = struct.Struct("<HHI 24s II")      # UNICODE_STRING32, WCHAR[12], Start, End
assert _UNLOADED32.size == UNLOADED32_SIZE
_BLOCK32 = struct.Struct("<III")                # Address, Offset, Size
_MM32 = struct.Struct("<13I")


def _warn(src: Source, msgs: List[str], text: str) -> None:
    msgs.append(text)
    warnings.warn(DumpWarning(f"{src.path}: {text}"), stacklevel=4)


def _section_ok(src: Source, off: int, size: int, what: str, msgs: List[str]) -> bool:
    if off == 0 or off == 0xFFFFFFFF:
        return False
    if off < TRIAGE32_OFFSET or off + size > src.size:
        _warn(src, msgs, f"{what} at offset {off:#x} (+{size:#x}) lies outside the file "
                         f"({src.size:#x} bytes); section ignored")
        return False
    return True


def _usable(src: Source, msgs: List[str], what: str, count: int, limit: int, table: int, entry: int) -> int:
    if count > limit:
        _warn(src, msgs, f"{what}: count {count} is implausible; ignored")
        return 0
    avail = max(0, (src.size - table) // entry)
    if avail < count:
        _warn(src, msgs, f"{what} truncated at offset {src.size:#x}: {avail} of {count} entries")
        return avail
    return count


def parse_triage32(src: Source) -> TriageDump:
    """Parse the TRIAGE_DUMP32 at 0x1000 and its sections."""
    if src.size < TRIAGE32_OFFSET + TRIAGE32_SIZE:
        raise TruncatedDumpError(f"truncated at offset {src.size:#x}: no room for TRIAGE_DUMP32",
                                 path=src.path, offset=TRIAGE32_OFFSET, expected="0x68-byte TRIAGE_DUMP32")
    vals = _TRIAGE32.unpack(src.read(TRIAGE32_OFFSET, TRIAGE32_SIZE, "TRIAGE_DUMP32"))
    f = dict(zip(TRIAGE32_FIELDS, vals))
    msgs: List[str] = []

    vo = f["valid_offset"]
    valid = 0 < vo and vo + 4 <= src.size and src.read(vo, 4) == TRIAGE_VALID
    if not valid:
        _warn(src, msgs, f"the triage 'TRGD' valid marker is missing at ValidOffset {vo:#x}: "
                         "the dump may be incomplete")

    drivers: List[TriageDriver] = []
    dl = f["driver_list_offset"]
    if f["driver_count"] and _section_ok(src, dl, 0, "driver list", msgs):
        n = _usable(src, msgs, "driver list", f["driver_count"], MAX_DRIVERS, dl, DRIVER_ENTRY32_SIZE)
        for i in range(n):
            off = dl + i * DRIVER_ENTRY32_SIZE
            name_off, base, entry, size, flags, _lc, _u5, _u6, checksum, ts = _DRIVER32.unpack_from(src.buffer, off)
            try:
                name = read_dump_string(src, name_off) if name_off else ""
            except (CorruptDumpError, TruncatedDumpError) as exc:
                _warn(src, msgs, f"driver entry {i} at {off:#x}: name unreadable ({exc.message})")
                name = f"unknown_{base:x}"
            drivers.append(TriageDriver(name, base, size, entry, checksum, ts, flags, name_off))

    unloaded: List[TriageUnloaded] = []
    uo = f["unloaded_drivers_offset"]
    if _section_ok(src, uo, 4, "unloaded-driver list", msgs):
        n = _usable(src, msgs, "unloaded-driver list", src.u32(uo), MAX_UNLOADED, uo + 4, UNLOADED32_SIZE)
        for i in range(n):
            _ln, _mx, _buf, wname, start, end = _UNLOADED32.unpack_from(src.buffer, uo + 4 + i * UNLOADED32_SIZE)
            name = wname.decode("utf-16-le", errors="replace").split("\0", 1)[0]
            unloaded.append(TriageUnloaded(name, start, end))

    blocks: List[TriageDataBlock] = []
    bo = f["data_blocks_offset"]
    if f["data_blocks_count"] and _section_ok(src, bo, 0, "data-block table", msgs):
        n = _usable(src, msgs, "data-block table", f["data_blocks_count"], MAX_DATA_BLOCKS, bo, _BLOCK32.size)
        bad = 0
        for i in range(n):
            va, off, size = _BLOCK32.unpack_from(src.buffer, bo + i * _BLOCK32.size)
            if off < TRIAGE32_OFFSET or off + size > src.size:
                bad += 1
                continue
            blocks.append(TriageDataBlock(va, off, size))
        if bad:
            _warn(src, msgs, f"{bad} data blocks point outside the file and were ignored")

    mm = None
    if _section_ok(src, f["mm_offset"], _MM32.size, "MM storage", msgs):
        mm = MmInfo(*_MM32.unpack_from(src.buffer, f["mm_offset"]))

    blobs = 0
    so = f["size_of_dump"]
    if so and so + 16 <= src.size and src.read(so, 8) == b"DumpBlob":
        off = so + src.u32(so + 8)
        while off + 0x20 <= src.size and blobs < 4096:
            hs, _tag, size, pre, post = struct.unpack_from("<I16sIII", src.buffer, off)
            if hs != 0x20:
                break
            blobs += 1
            off += 0x20 + pre + size + post

    return TriageDump(fields=f, top_of_stack=f["top_of_stack"], drivers=drivers, unloaded=unloaded,
                      data_blocks=blocks, mm=mm, valid=valid, secondary_blobs=blobs, warnings=msgs)
