"""TRIAGE_DUMP32: the body of a 32-bit "small memory dump" (DumpType 4 in a PAGEDUMP file).

It sits at 0x1000 (after the one-page DUMP_HEADER32).  26 consecutive u32 fields, the
same sections as the 64-bit layout with 32-bit pointers: DUMP_DRIVER_ENTRY32 (0x4C:
u32 name offset + the 0x48-byte KLDR_DATA_TABLE_ENTRY32 image), DUMP_UNLOADED_DRIVERS32
(0x28) after a u32 count, 12-byte TRIAGE_DATA_BLOCK32 records.  Offsets and sources are
in ``docs/dump-formats.md``.  The result is the same :class:`~dumpkit.formats.triage.TriageDump`
the 64-bit parser gives.

The sections are read by :func:`dumpkit.formats.triage.parse_sections` with this file's
entry layouts: every offset and count is checked against the file before use; a section that
does not fit is dropped with a warning, never read past the end.
"""
from __future__ import annotations

import struct

from ..errors import TruncatedDumpError
from ..io import Source
from .triage import BodyLayout, TriageDump, parse_sections

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
_LAYOUT32 = BodyLayout(TRIAGE32_OFFSET, _DRIVER32, 4, _UNLOADED32, _BLOCK32, _MM32)


def parse_triage32(src: Source) -> TriageDump:
    """Parse the TRIAGE_DUMP32 at 0x1000 and its sections."""
    if src.size < TRIAGE32_OFFSET + TRIAGE32_SIZE:
        raise TruncatedDumpError(f"truncated at offset {src.size:#x}: no room for TRIAGE_DUMP32",
                                 path=src.path, offset=TRIAGE32_OFFSET, expected="0x68-byte TRIAGE_DUMP32")
    vals = _TRIAGE32.unpack(src.read(TRIAGE32_OFFSET, TRIAGE32_SIZE, "TRIAGE_DUMP32"))
    return parse_sections(src, dict(zip(TRIAGE32_FIELDS, vals)), _LAYOUT32)
