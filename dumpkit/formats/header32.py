"""DUMP_HEADER32: the 0x1000-byte header of a 32-bit (x86) kernel dump ("PAGEDUMP").

The layout (offsets, with their sources, in ``docs/dump-formats.md``) differs from
DUMP_HEADER64 in more than the pointer width: the PAE flag sits in the old version
bytes, the exception record is EXCEPTION_RECORD32, DumpType and the triage fields
moved to the end of the page, and page data starts at 0x1000.  The result is the
same :class:`~dumpkit.formats.header.DumpHeader` the 64-bit reader gives (plus
``pae_enabled``), so the layers above see one header model.

Like the 64-bit header, a field still holding the writer's ``PAGE`` fill is ``None``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ..errors import CorruptDumpError, NotADumpError, TruncatedDumpError, UnsupportedDumpError
from ..io import Source
from .header import (PAGE32, PAGE64, DumpHeader, ExceptionRecord, PhysicalRun, _text,
                     filetime_to_datetime)

HEADER32_SIZE = 0x1000
DATA_OFFSET32 = 0x1000             # first page of a full dump / the triage or summary header
MACHINE_I386 = 0x14C
SIG_PAGEDUMP = b"PAGEDUMP"

# (field, offset, struct format): the one definition of the layout
LAYOUT32 = (
    ("signature", 0x000, "4s"),
    ("valid_dump", 0x004, "4s"),
    ("major_version", 0x008, "I"),
    ("minor_version", 0x00C, "I"),
    ("directory_table_base", 0x010, "I"),
    ("pfn_database", 0x014, "I"),
    ("ps_loaded_module_list", 0x018, "I"),
    ("ps_active_process_head", 0x01C, "I"),
    ("machine_image_type", 0x020, "I"),
    ("number_processors", 0x024, "I"),
    ("bugcheck_code", 0x028, "I"),
    ("bugcheck_parameters", 0x02C, "4I"),
    ("version_user", 0x03C, "32s"),
    ("pae_enabled", 0x05C, "B"),
    ("kd_secondary_version", 0x05D, "B"),
    ("kd_debugger_data_block", 0x060, "I"),
    ("number_of_runs", 0x064, "I"),       # PHYSICAL_MEMORY_DESCRIPTOR32 in a 700-byte buffer
    ("number_of_pages", 0x068, "I"),
    ("runs_raw", 0x06C, f"{700 - 8}s"),   # Run[] {u32 BasePage, u32 PageCount}
    ("context_record", 0x320, "1200s"),   # CONTEXT (x86: 0x2CC bytes used)
    ("exception", 0x7D0, "80s"),          # EXCEPTION_RECORD32
    ("comment", 0x820, "128s"),
    ("attributes", 0x8A0, "I"),
    ("boot_id", 0x8A4, "I"),
    ("dump_type", 0xF88, "I"),
    ("minidump_fields", 0xF8C, "I"),
    ("secondary_data_state", 0xF90, "I"),
    ("product_type", 0xF94, "I"),
    ("suite_mask", 0xF98, "I"),
    ("writer_status", 0xF9C, "I"),
    ("required_dump_space", 0xFA0, "Q"),
    ("system_uptime", 0xFB8, "Q"),
    ("system_time", 0xFC0, "Q"),
)
FIELD_OFFSETS32 = {name: off for name, off, _ in LAYOUT32}
_STRUCTS = tuple((name, off, struct.Struct("<" + fmt)) for name, off, fmt in LAYOUT32)
_EXR32 = struct.Struct("<5I15I")          # code, flags, record, address, n, information[15]
assert _EXR32.size == 0x50


@dataclass(repr=False)
class DumpHeader32(DumpHeader):
    """A DUMP_HEADER32 in the common header model; ``pae_enabled`` says which x86 paging the DTB uses."""

    pae_enabled: bool = False
    header_size: int = HEADER32_SIZE

    @property
    def pointer_size(self) -> int:
        return 4

    def to_json(self):  # type: ignore[override]
        out = super().to_json()
        out["pae_enabled"] = self.pae_enabled
        return out


def _opt(v: int) -> Optional[int]:
    return None if v == PAGE32 else v


def exception_record32(raw: bytes) -> Optional[ExceptionRecord]:
    """EXCEPTION_RECORD32 (0x50 bytes); None when it still holds the PAGE fill."""
    if len(raw) < _EXR32.size:
        return None
    v = _EXR32.unpack_from(raw, 0)
    if v[0] == PAGE32:
        return None
    n = min(v[4], 15)
    return ExceptionRecord(v[0], v[1], v[2], v[3], tuple(v[5:5 + n]))


def parse_header32(src: Source) -> DumpHeader32:
    """Parse and validate the DUMP_HEADER32 of ``src``; a clear DumpError for everything else."""
    head = src.read_partial(0, 8)
    if head != SIG_PAGEDUMP:
        raise NotADumpError(f"signature {head!r} is not a 32-bit kernel dump", path=src.path, offset=0,
                            expected="'PAGEDUMP'")
    if src.size < HEADER32_SIZE:
        raise TruncatedDumpError(f"truncated at offset {src.size:#x}: the 0x1000-byte DUMP_HEADER32 is incomplete",
                                 path=src.path, offset=src.size, expected="a complete DUMP_HEADER32")
    raw = src.read(0, HEADER32_SIZE, "DUMP_HEADER32")
    r: Dict[str, Any] = {}      # one value per field, a tuple for the multi-value ones
    for name, off, st in _STRUCTS:
        vals = st.unpack_from(raw, off)
        r[name] = vals if len(vals) > 1 else vals[0]
    warnings: List[str] = []

    nruns = _opt(r["number_of_runs"])
    runs: List[PhysicalRun] = []
    max_runs = len(r["runs_raw"]) // 8
    if nruns is not None:
        if nruns > max_runs:
            warnings.append(f"NumberOfRuns {nruns} does not fit the 32-bit header (max {max_runs})")
        else:
            for i in range(nruns):
                base, cnt = struct.unpack_from("<II", r["runs_raw"], i * 8)
                runs.append(PhysicalRun(base, cnt))

    pae = r["pae_enabled"]
    if pae not in (0, 1) and pae != 0x50:      # 'P' of the PAGE fill: not written
        warnings.append(f"PaeEnabled is {pae:#x} (expected 0 or 1); treated as PAE")
    hdr = DumpHeader32(
        signature=head,
        major_version=r["major_version"],
        minor_version=r["minor_version"],
        directory_table_base=_opt(r["directory_table_base"]),
        pfn_database=_opt(r["pfn_database"]),
        ps_loaded_module_list=_opt(r["ps_loaded_module_list"]),
        ps_active_process_head=_opt(r["ps_active_process_head"]),
        machine_image_type=r["machine_image_type"],
        number_processors=_opt(r["number_processors"]),
        bugcheck_code=r["bugcheck_code"],
        bugcheck_parameters=tuple(r["bugcheck_parameters"]),  # type: ignore[arg-type]
        version_user=_text(r["version_user"]),
        kd_debugger_data_block=_opt(r["kd_debugger_data_block"]),
        number_of_runs=nruns,
        number_of_pages=_opt(r["number_of_pages"]),
        runs=runs,
        context_record=r["context_record"],
        exception=exception_record32(r["exception"]),
        dump_type=r["dump_type"],
        required_dump_space=None if r["required_dump_space"] == PAGE64 else r["required_dump_space"],
        system_time=filetime_to_datetime(r["system_time"]),
        system_time_raw=None if r["system_time"] == PAGE64 else r["system_time"],
        comment=_text(r["comment"]),
        system_uptime=None if r["system_uptime"] == PAGE64 else r["system_uptime"],
        minidump_fields=_opt(r["minidump_fields"]),
        secondary_data_state=_opt(r["secondary_data_state"]),
        product_type=_opt(r["product_type"]),
        suite_mask=_opt(r["suite_mask"]),
        writer_status=_opt(r["writer_status"]),
        kd_secondary_version=r["kd_secondary_version"],
        attributes=_opt(r["attributes"]),
        boot_id=_opt(r["boot_id"]),
        warnings=warnings,
        pae_enabled=bool(pae) and pae != 0x50,
    )
    if r["valid_dump"] != b"DUMP":
        raise NotADumpError(f"ValidDump is {r['valid_dump']!r}", path=src.path, offset=4, expected="'DUMP'")
    if hdr.machine_image_type != MACHINE_I386:
        raise UnsupportedDumpError(f"a 32-bit dump header with MachineImageType {hdr.machine_image_type:#x}",
                                   path=src.path, offset=0x20, expected="0x14c (i386)")
    if hdr.attributes is not None and hdr.attributes & 0x100 and not hdr.attributes & 0x200:
        raise UnsupportedDumpError("the dump data is encrypted (Attributes bit EncryptedDumpData)",
                                   path=src.path, offset=0x8A0, hint="decrypt it with the key holder's tool first")
    if hdr.dump_type not in (1, 2, 4, 5, 6):
        raise CorruptDumpError(f"DumpType {hdr.dump_type:#x} is not a 32-bit dump type dumpkit reads",
                               path=src.path, offset=0xF88, expected="DumpType 1, 2, 4, 5 or 6")
    return hdr
