"""DUMP_HEADER64: the 0x2000-byte header of every 64-bit kernel dump.

Parsed once with :mod:`struct` through a field-by-field layout (``_layout.py``).  Writers
fill the header with the ASCII pattern ``PAGE`` before writing the fields they
know, so a field that still holds the pattern is reported as ``None``.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


from ..errors import CorruptDumpError, NotADumpError, TruncatedDumpError, UnsupportedDumpError
from ..io import Source
from ._layout import Layout

HEADER_SIZE = 0x2000
PAGE32 = 0x45474150                 # 'PAGE'
PAGE64 = 0x4547415045474150
SIG_DU64 = 0x34365544               # 'DU64'
SIG_DUMP = 0x504D5544               # 'DUMP'

DUMP_TYPES = {
    1: "full", 2: "kernel", 3: "header", 4: "triage", 5: "bitmap", 6: "bitmap", 7: "automatic",
    8: "kernel_range", 9: "kernel_user_range", 0xA: "complete_range",
}

MACHINES = {0x8664: "x64", 0xAA64: "arm64", 0x14C: "x86"}
PRODUCT_TYPES = {1: "workstation", 2: "domain_controller", 3: "server"}

ATTRIBUTE_BITS = {
    0: "HiberCrash", 1: "DumpDevicePowerOff", 2: "InsufficientDumpfileSize",
    3: "KernelGeneratedTriageDump", 4: "LiveDumpGeneratedDump", 5: "DumpIsGeneratedOffline",
    6: "FilterDumpFile", 7: "EarlyBootCrash", 8: "EncryptedDumpData", 9: "DecryptedDump",
}

_ExceptionRecord64 = Layout([
    ("code", "I"),
    ("flags", "I"),
    ("record", "Q"),
    ("address", "Q"),
    ("number_parameters", "I"),
    ("", "4x"),
    ("information", "15Q"),
])

_Header64 = Layout([
    ("signature", "I"),                       # 0x000
    ("valid_dump", "I"),                      # 0x004
    ("major_version", "I"),                   # 0x008
    ("minor_version", "I"),                   # 0x00C
    ("directory_table_base", "Q"),            # 0x010
    ("pfn_database", "Q"),                    # 0x018
    ("ps_loaded_module_list", "Q"),           # 0x020
    ("ps_active_process_head", "Q"),          # 0x028
    ("machine_image_type", "I"),              # 0x030
    ("number_processors", "I"),               # 0x034
    ("bugcheck_code", "I"),                   # 0x038
    ("", "4x"),
    ("bugcheck_parameters", "4Q"),            # 0x040
    ("version_user", "32s"),                  # 0x060
    ("kd_debugger_data_block", "Q"),          # 0x080
    # PHYSICAL_MEMORY_DESCRIPTOR64 inside a 700-byte buffer at 0x088
    ("number_of_runs", "I"),                  # 0x088
    ("", "4x"),
    ("number_of_pages", "Q"),                 # 0x090
    ("runs_raw", "684s"),                     # 0x098 .. 0x344
    ("", "4x"),                               # 0x344
    ("context_record", "3000s"),              # 0x348
    ("exception", _ExceptionRecord64),        # 0xF00
    ("dump_type", "I"),                       # 0xF98
    ("", "4x"),
    ("required_dump_space", "Q"),             # 0xFA0
    ("system_time", "Q"),                     # 0xFA8
    ("comment", "128s"),                      # 0xFB0
    ("system_uptime", "Q"),                   # 0x1030
    ("minidump_fields", "I"),                 # 0x1038
    ("secondary_data_state", "I"),            # 0x103C
    ("product_type", "I"),                    # 0x1040
    ("suite_mask", "I"),                      # 0x1044
    ("writer_status", "I"),                   # 0x1048
    ("unused1", "B"),                         # 0x104C
    ("kd_secondary_version", "B"),            # 0x104D
    ("unused2", "2s"),                        # 0x104E
    ("attributes", "I"),                      # 0x1050
    ("boot_id", "I"),                         # 0x1054
])
assert _Header64.sizeof() == 0x1058


def _opt32(v: int) -> Optional[int]:
    return None if v == PAGE32 else v


def _opt64(v: int) -> Optional[int]:
    return None if v == PAGE64 else v


def filetime_to_datetime(ft: Optional[int]) -> Optional[_dt.datetime]:
    """FILETIME (100 ns since 1601-01-01 UTC) to an aware datetime; None if unset or absurd."""
    if not ft or ft == PAGE64:
        return None
    try:
        return _dt.datetime(1601, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(microseconds=ft // 10)
    except OverflowError:
        return None


def _text(raw: bytes) -> Optional[str]:
    if raw[:4] == b"PAGE" and raw.count(b"PAGE") * 4 >= len(raw.rstrip(b"\0")) - 3:
        return None
    s = raw.split(b"\0", 1)[0]
    return s.decode("latin-1") if s else None


@dataclass(frozen=True)
class PhysicalRun:
    base_page: int
    page_count: int


@dataclass
class ExceptionRecord:
    """EXCEPTION_RECORD64 (header copy, or one read from memory)."""

    code: int
    flags: int
    record: int
    address: int
    parameters: Tuple[int, ...]

    def to_json(self) -> dict:
        return {"code": hex(self.code), "flags": hex(self.flags), "address": hex(self.address),
                "parameters": [hex(p) for p in self.parameters]}

    @classmethod
    def from_bytes(cls, data: bytes) -> "ExceptionRecord":
        r = _ExceptionRecord64.parse(data)
        n = min(int(r.number_parameters), 15)
        return cls(r.code, r.flags, r.record, r.address, tuple(r.information[:n]))


@dataclass
class DumpHeader:
    """Every documented DUMP_HEADER64 field; ``None`` means 'never written' (PAGE fill)."""

    signature: bytes
    major_version: int
    minor_version: int                      # the NT build number
    directory_table_base: Optional[int]
    pfn_database: Optional[int]
    ps_loaded_module_list: Optional[int]
    ps_active_process_head: Optional[int]
    machine_image_type: int
    number_processors: Optional[int]
    bugcheck_code: int
    bugcheck_parameters: Tuple[int, int, int, int]
    version_user: Optional[str]
    kd_debugger_data_block: Optional[int]
    number_of_runs: Optional[int]
    number_of_pages: Optional[int]
    runs: List[PhysicalRun]
    context_record: bytes                   # raw CONTEXT (0x4D0 used on x64)
    exception: Optional[ExceptionRecord]
    dump_type: int
    required_dump_space: Optional[int]
    system_time: Optional[_dt.datetime]
    system_time_raw: Optional[int]
    comment: Optional[str]
    system_uptime: Optional[int]            # 100 ns units
    minidump_fields: Optional[int]
    secondary_data_state: Optional[int]
    product_type: Optional[int]
    suite_mask: Optional[int]
    writer_status: Optional[int]
    kd_secondary_version: int
    attributes: Optional[int]
    boot_id: Optional[int]
    warnings: List[str] = field(default_factory=list)

    # -- derived ---------------------------------------------------------
    @property
    def build(self) -> int:
        return self.minor_version

    @property
    def machine(self) -> str:
        return MACHINES.get(self.machine_image_type, f"{self.machine_image_type:#x}")

    @property
    def dump_type_name(self) -> str:
        return DUMP_TYPES.get(self.dump_type, f"unknown({self.dump_type})")

    @property
    def uptime(self) -> Optional[_dt.timedelta]:
        if self.system_uptime is None:
            return None
        return _dt.timedelta(microseconds=self.system_uptime // 10)

    @property
    def attribute_names(self) -> List[str]:
        if not self.attributes:
            return []
        return [n for b, n in ATTRIBUTE_BITS.items() if self.attributes >> b & 1]

    @property
    def writer(self) -> str:
        """'kernel' (written at bugcheck), 'dbgeng' (.dump from a debugger) or 'unknown'."""
        if self.attributes is not None and self.attributes & 0x8:
            return "kernel"
        if self.writer_status is None:
            return "kernel"
        if self.writer_status == 0:
            return "dbgeng"
        return "unknown"

    def to_json(self) -> Dict[str, object]:
        def h(v):
            return None if v is None else hex(v)
        return {
            "signature": self.signature.decode("latin-1"),
            "major_version": h(self.major_version), "minor_version": self.minor_version,
            "directory_table_base": h(self.directory_table_base), "pfn_database": h(self.pfn_database),
            "ps_loaded_module_list": h(self.ps_loaded_module_list),
            "ps_active_process_head": h(self.ps_active_process_head),
            "machine_image_type": h(self.machine_image_type), "number_processors": self.number_processors,
            "bugcheck_code": h(self.bugcheck_code), "bugcheck_parameters": [hex(p) for p in self.bugcheck_parameters],
            "kd_debugger_data_block": h(self.kd_debugger_data_block),
            "number_of_runs": self.number_of_runs, "number_of_pages": self.number_of_pages,
            "runs": [{"base_page": hex(r.base_page), "page_count": hex(r.page_count)} for r in self.runs],
            "exception": self.exception.to_json() if self.exception else None,
            "dump_type": self.dump_type, "required_dump_space": h(self.required_dump_space),
            "system_time": self.system_time.isoformat() if self.system_time else None,
            "comment": self.comment, "system_uptime": self.system_uptime,
            "minidump_fields": h(self.minidump_fields), "secondary_data_state": h(self.secondary_data_state),
            "product_type": self.product_type, "suite_mask": h(self.suite_mask),
            "writer_status": h(self.writer_status), "kd_secondary_version": h(self.kd_secondary_version),
            "attributes": h(self.attributes), "boot_id": self.boot_id,
        }

    def __repr__(self) -> str:
        return (f"<DumpHeader {self.signature.decode('latin-1')} type={self.dump_type}({self.dump_type_name}) "
                f"build={self.build} bugcheck={self.bugcheck_code:#x}>")


# --------------------------------------------------------------------------
def identify(head: bytes) -> str:
    """Name what a file is from its first bytes (for error messages and detection)."""
    if head[:8] == b"PAGEDU64":
        return "kernel64"
    if head[:8] == b"PAGEDUMP":
        return "kernel32"
    if head[:4] == b"MDMP":
        return "user_minidump"
    if head[:4] == b"MSCF":
        return "cab"
    if head[:2] == b"PK":
        return "zip"
    if head[:4] == b"HIBR" or head[:4] == b"hibr":
        return "hiberfil"
    if head[:4] == b"\x7fELF":
        return "elf"
    return "unknown"


_KIND_TEXT = {
    "kernel32": ("a 32-bit kernel dump (PAGEDUMP)", "32-bit dumps are not supported yet"),
    "user_minidump": ("a user-mode minidump (MDMP)", "open it with a user-mode minidump reader; dumpkit reads kernel dumps"),
    "cab": ("a CAB archive (MSCF)", "extract the .dmp from it first (e.g. `expand` or `cabextract`)"),
    "zip": ("a ZIP archive", "extract the .dmp from it first"),
    "hiberfil": ("a hibernation file", "hiberfil.sys is not a crash dump"),
    "elf": ("an ELF file (perhaps a QEMU/Linux core)", "dumpkit reads Windows kernel dumps"),
}


def reject_unknown(src: Source, head: bytes) -> None:
    """Raise the clear error for a file that is not a dump a registered format reads."""
    if len(head) < 8:
        raise NotADumpError(f"file is {src.size} bytes: too small to be a crash dump", path=src.path, offset=0,
                            expected="'PAGEDU64' signature")
    kind = identify(head)
    if kind == "kernel32":
        raise UnsupportedDumpError("this is a 32-bit kernel dump (PAGEDUMP): not supported yet", path=src.path,
                                   offset=0, hint="64-bit dumps (PAGEDU64) are supported")
    if kind != "kernel64":
        what, hint = _KIND_TEXT.get(kind, ("not a Windows crash dump", "a kernel dump starts with 'PAGEDU64'"))
        raise NotADumpError(f"this is {what}", path=src.path, offset=0, expected="'PAGEDU64' signature", hint=hint)


def parse_header(src: Source) -> DumpHeader:
    """Parse and validate the DUMP_HEADER64 of ``src``; raise a clear error for everything else.

    The machine type is not checked here: :func:`dumpkit.arch.for_machine` decides which
    architectures are supported.
    """
    head = src.read_partial(0, 8)
    if len(head) < 8 or identify(head) != "kernel64":
        reject_unknown(src, head)
    if src.size < 0x1058:
        raise TruncatedDumpError(f"truncated at offset {src.size:#x}: the 0x2000-byte dump header is incomplete",
                                 path=src.path, offset=src.size, expected="a complete DUMP_HEADER64")
    r = _Header64.parse(src.read(0, 0x1058, "DUMP_HEADER64"))
    warnings: List[str] = []

    nruns = _opt32(r.number_of_runs)
    runs: List[PhysicalRun] = []
    if nruns is not None:
        if nruns > len(r.runs_raw) // 16:
            warnings.append(f"NumberOfRuns {nruns} does not fit the header (max {len(r.runs_raw) // 16})")
        else:
            raw = r.runs_raw
            for i in range(nruns):
                base = int.from_bytes(raw[i * 16:i * 16 + 8], "little")
                cnt = int.from_bytes(raw[i * 16 + 8:i * 16 + 16], "little")
                runs.append(PhysicalRun(base, cnt))

    exc = None
    if r.exception.code != PAGE32:
        n = min(r.exception.number_parameters, 15)
        exc = ExceptionRecord(r.exception.code, r.exception.flags, r.exception.record, r.exception.address,
                              tuple(r.exception.information[:n]))

    hdr = DumpHeader(
        signature=head,
        major_version=r.major_version,
        minor_version=r.minor_version,
        directory_table_base=_opt64(r.directory_table_base),
        pfn_database=_opt64(r.pfn_database),
        ps_loaded_module_list=_opt64(r.ps_loaded_module_list),
        ps_active_process_head=_opt64(r.ps_active_process_head),
        machine_image_type=r.machine_image_type,
        number_processors=_opt32(r.number_processors),
        bugcheck_code=r.bugcheck_code,
        bugcheck_parameters=tuple(int(p) for p in r.bugcheck_parameters),  # type: ignore[arg-type]
        version_user=_text(r.version_user),
        kd_debugger_data_block=_opt64(r.kd_debugger_data_block),
        number_of_runs=nruns,
        number_of_pages=_opt64(r.number_of_pages),
        runs=runs,
        context_record=r.context_record,
        exception=exc,
        dump_type=r.dump_type,
        required_dump_space=_opt64(r.required_dump_space),
        system_time=filetime_to_datetime(r.system_time),
        system_time_raw=_opt64(r.system_time),
        comment=_text(r.comment),
        system_uptime=_opt64(r.system_uptime),
        minidump_fields=_opt32(r.minidump_fields),
        secondary_data_state=_opt32(r.secondary_data_state),
        product_type=_opt32(r.product_type),
        suite_mask=_opt32(r.suite_mask),
        writer_status=_opt32(r.writer_status),
        kd_secondary_version=r.kd_secondary_version,
        attributes=_opt32(r.attributes),
        boot_id=_opt32(r.boot_id),
        warnings=warnings,
    )
    if hdr.attributes is not None and hdr.attributes & 0x100 and not hdr.attributes & 0x200:
        raise UnsupportedDumpError("the dump data is encrypted (Attributes bit EncryptedDumpData)",
                                   path=src.path, offset=0x1050, hint="decrypt it with the key holder's tool first")
    if hdr.dump_type in (8, 9, 0xA):
        raise UnsupportedDumpError(f"DumpType {hdr.dump_type:#x} ({hdr.dump_type_name}, a WinDbgX 'RDMP' range dump)"
                                   " is not supported yet", path=src.path, offset=0xF98,
                                   expected="DumpType 1, 2, 4, 5 or 6")
    if hdr.dump_type not in (1, 2, 4, 5, 6):
        raise CorruptDumpError(f"DumpType {hdr.dump_type:#x} is not a known dump type", path=src.path, offset=0xF98,
                               expected="DumpType 1, 2, 4, 5 or 6")
    return hdr
