"""WHEA_ERROR_RECORD: the Common Platform Error Record (CPER) a 0x124 bug check points at (P2).

The layout is the UEFI specification's (Appendix N) and the same on every architecture: a
128-byte header (``CPER``, Revision, SignatureEnd 0xFFFFFFFF, SectionCount at +0xA,
ErrorSeverity +0xC, ValidBits +0x10, RecordLength +0x14, Timestamp +0x18, PlatformId,
PartitionId, CreatorId, NotifyType GUIDs at +0x20/+0x30/+0x40/+0x50, RecordId +0x60, Flags
+0x68 ...), then SectionCount 72-byte descriptors (SectionOffset, SectionLength, Revision,
ValidBits, Reserved, Flags, SectionType GUID at +0x10, FRUId, SectionSeverity at +0x30, FRUText),
then the sections.  The processor generic error section (type 9876CCAD-...) holds ProcessorType
(+8), InstructionSet (+9), ProcessorErrorType (+0xA), Operation (+0xB), Flags, Level (+0xD),
CPUVersion (+0x10) and a 128-byte CPU brand string (+0x18).

:func:`read_error_record` checks the signatures and every length against the record's own
length and raises :class:`WheaRecordError` (a DumpError) for anything that is not a record.
"""
from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass, field
from typing import Any, List, Optional

from ..errors import DumpError

__all__ = ["WheaRecordError", "ErrorRecord", "Section", "ProcessorError", "read_error_record", "SECTION_TYPES",
           "vendor_from_brand"]

HEADER_SIZE = 0x80
DESCRIPTOR_SIZE = 0x48
MAX_SECTIONS = 64
MAX_RECORD = 0x100000
PROCESSOR_GENERIC = uuid.UUID("9876ccad-47b4-4bdb-b65e-16f193c4f3db")

#: section type GUID -> name (UEFI CPER section types; the last is Microsoft's machine-check bank section)
SECTION_TYPES = {
    PROCESSOR_GENERIC: "processor generic",
    uuid.UUID("dc3ea0b0-a144-4797-b95b-53fa242b6e1d"): "x86/x64 processor",
    uuid.UUID("e19e3d16-bc11-11e4-9caa-c2051d5d46b0"): "ARM processor",
    uuid.UUID("a5bc1114-6f64-4ede-b863-3e83ed7c83b1"): "platform memory",
    uuid.UUID("d995e954-bbc1-430f-ad91-b44dcb3c6f35"): "PCI Express",
    uuid.UUID("c5753963-3b84-4095-bf78-eddad3f9c9dd"): "PCI/PCI-X bus",
    uuid.UUID("eb5e4685-ca66-4769-b6a2-26068b001326"): "PCI/PCI-X component",
    uuid.UUID("81212a96-09ed-4996-9471-8d729c8e69ed"): "firmware error record reference",
    uuid.UUID("8a1e1d01-42f9-4557-9c33-565e5cc3f7e8"): "x86/x64 machine-check bank",
}
SEVERITIES = {0: "recoverable", 1: "fatal", 2: "corrected", 3: "informational"}
#: ProcessorErrorType of the generic processor section
PROCESSOR_ERROR_TYPES = {0: "unknown", 1: "cache", 2: "TLB", 4: "bus", 8: "micro-architectural"}
OPERATIONS = {0: "generic", 1: "data read", 2: "data write", 3: "instruction execution"}
PROCESSOR_TYPES = {0: "x86/x64", 1: "IA64", 2: "ARM"}


class WheaRecordError(DumpError):
    """The memory a 0x124 parameter points at is not a readable CPER error record."""


@dataclass(frozen=True)
class ProcessorError:
    processor_type: str
    error_type: str
    operation: str
    level: int
    brand: str


@dataclass(frozen=True)
class Section:
    type: uuid.UUID
    name: str
    severity: str
    offset: int
    length: int


@dataclass
class ErrorRecord:
    address: int
    revision: int
    severity: str
    length: int
    sections: List[Section] = field(default_factory=list)
    processor: Optional[ProcessorError] = None


def vendor_from_brand(brand: str) -> Optional[str]:
    """The CPUID vendor string a processor brand string belongs to ("Intel(R) Core(TM)" -> GenuineIntel)."""
    b = brand.lower()
    if "intel" in b:
        return "GenuineIntel"
    if "amd" in b or "ryzen" in b or "epyc" in b:
        return "AuthenticAMD"
    return None


def read_error_record(k: Any, va: int) -> ErrorRecord:
    """The CPER record at ``va`` (its sections named; the processor generic section decoded)."""
    if not va:
        raise WheaRecordError("WHEA_ERROR_RECORD: NULL pointer", expected="the address of a CPER record")
    try:
        head = k.read_virtual(va, HEADER_SIZE)
    except DumpError as exc:
        raise WheaRecordError(f"WHEA_ERROR_RECORD at {va:#x} is not in the dump ({exc})") from None
    if len(head) < HEADER_SIZE or head[:4] != b"CPER" or head[6:10] != b"\xff\xff\xff\xff":
        raise WheaRecordError(f"WHEA_ERROR_RECORD at {va:#x}: no CPER signature",
                              expected="'CPER' and SignatureEnd 0xFFFFFFFF")
    rev = struct.unpack_from("<H", head, 4)[0]
    count, sev, _valid, length = struct.unpack_from("<HIII", head, 0xA)
    table_end = HEADER_SIZE + count * DESCRIPTOR_SIZE
    if not 0 < count <= MAX_SECTIONS or not table_end <= length <= MAX_RECORD:
        raise WheaRecordError(f"WHEA_ERROR_RECORD at {va:#x}: {count} sections in a {length}-byte record",
                              expected=f"1..{MAX_SECTIONS} sections whose descriptors fit the record")
    try:
        table = k.read_virtual(va + HEADER_SIZE, count * DESCRIPTOR_SIZE)
    except DumpError as exc:
        raise WheaRecordError(f"WHEA_ERROR_RECORD at {va:#x}: section descriptors not in the dump ({exc})") from None
    rec = ErrorRecord(va, rev, SEVERITIES.get(sev, f"severity {sev}"), length)
    for i in range(count):
        d = table[i * DESCRIPTOR_SIZE:(i + 1) * DESCRIPTOR_SIZE]
        off, ln = struct.unpack_from("<II", d, 0)
        if off < table_end or ln > length or off + ln > length:
            raise WheaRecordError(f"WHEA_ERROR_RECORD at {va:#x}: section {i} ({off:#x}+{ln:#x}) lies outside the "
                                  f"{length}-byte record", expected="sections inside the record")
        t = uuid.UUID(bytes_le=bytes(d[0x10:0x20]))
        ssev = struct.unpack_from("<I", d, 0x30)[0]
        rec.sections.append(Section(t, SECTION_TYPES.get(t, str(t)), SEVERITIES.get(ssev, f"severity {ssev}"),
                                    off, ln))
    for s in rec.sections:
        if s.type == PROCESSOR_GENERIC and s.length >= 0x98 and rec.processor is None:
            try:
                body = k.read_virtual(va + s.offset, 0x98)
            except DumpError:
                continue
            brand = body[0x18:0x98].split(b"\0", 1)[0].decode("ascii", errors="replace").strip()
            rec.processor = ProcessorError(PROCESSOR_TYPES.get(body[8], f"type {body[8]}"),
                                           PROCESSOR_ERROR_TYPES.get(body[0xA], f"type {body[0xA]:#x}"),
                                           OPERATIONS.get(body[0xB], f"operation {body[0xB]}"), body[0xD], brand)
    return rec
