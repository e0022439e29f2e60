"""KDDEBUGGER_DATA64 ("KDBG"): the kernel's debugger data block.

* triage dumps carry a plaintext copy (DebuggerDataOffset);
* full/kernel/bitmap dumps point at it from the header (KdDebuggerDataBlock).  On Windows 8+
  the in-memory block may be *encoded* (``nt!KdpDataBlockEncoded``): decoding needs
  KiWaitNever, KiWaitAlways and the address of KdpDataBlockEncoded, which a dump does not
  give without symbols.  dumpkit checks the 'KDBG' owner tag at +0x10 and, when it is not
  there, reports the block as encoded (``status == 'encoded'``) instead of guessing.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Tuple

from ..errors import MemoryReadError

if TYPE_CHECKING:  # pragma: no cover
    from .state import Kernel

OWNER_TAG = b"KDBG"
MAX_SIZE = 0x1000

#: field name -> (offset, struct format); names follow wdbgexts.h KDDEBUGGER_DATA64
FIELDS: Dict[str, Tuple[int, str]] = {
    "KernBase": (0x18, "Q"), "BreakpointWithStatus": (0x20, "Q"), "SavedContext": (0x28, "Q"),
    "KiCallUserMode": (0x38, "Q"), "PsLoadedModuleList": (0x48, "Q"), "PsActiveProcessHead": (0x50, "Q"),
    "PspCidTable": (0x58, "Q"), "KiBugcheckData": (0x88, "Q"), "ObpRootDirectoryObject": (0x98, "Q"),
    "MmPfnDatabase": (0xC0, "Q"), "MmSystemRangeStart": (0x1D0, "Q"), "NtBuildLab": (0x208, "Q"),
    "KiProcessorBlock": (0x218, "Q"), "MmUnloadedDrivers": (0x220, "Q"), "MmLastUnloadedDriver": (0x228, "Q"),
    "MmPhysicalMemoryBlock": (0x270, "Q"),
    "OffsetKThreadNextProcessor": (0x298, "H"), "OffsetKThreadTeb": (0x29A, "H"),
    "OffsetKThreadKernelStack": (0x29C, "H"), "OffsetKThreadInitialStack": (0x29E, "H"),
    "OffsetKThreadApcProcess": (0x2A0, "H"), "OffsetKThreadState": (0x2A2, "H"),
    "SizeEProcess": (0x2A8, "H"), "OffsetEprocessPeb": (0x2AA, "H"), "OffsetEprocessParentCID": (0x2AC, "H"),
    "OffsetEprocessDirectoryTableBase": (0x2AE, "H"), "SizePrcb": (0x2B0, "H"),
    "OffsetPrcbCurrentThread": (0x2B4, "H"), "OffsetPrcbProcStateContext": (0x2BC, "H"),
    "OffsetPrcbNumber": (0x2BE, "H"), "SizeEThread": (0x2C0, "H"), "KeLoaderBlock": (0x2D8, "Q"),
    "SizePcr": (0x2E0, "H"), "OffsetPcrCurrentPrcb": (0x2E4, "H"), "OffsetPcrContainedPrcb": (0x2E6, "H"),
    "OffsetPrcbProcStateSpecialReg": (0x2F2, "H"), "OffsetPrcbContext": (0x338, "H"),
    "OffsetKThreadStackLimit": (0x340, "I"), "OffsetKThreadStackBase": (0x344, "I"),
    "OffsetPrcbIdleThread": (0x350, "H"), "PteBase": (0x360, "Q"),
}


@dataclass
class KdDebuggerData:
    """A readable (plaintext) KDDEBUGGER_DATA64.  Fields as attributes: ``kd.KiProcessorBlock``;
    a field beyond the block's Size reads as None."""

    address: int
    size: int
    raw: bytes
    source: str            # 'triage copy' or 'memory'

    def field(self, name: str) -> Optional[int]:
        off, fmt = FIELDS[name]
        n = struct.calcsize(fmt)
        if off + n > min(self.size, len(self.raw)):
            return None
        return struct.unpack_from("<" + fmt, self.raw, off)[0]

    def __getattr__(self, name: str):
        if name in FIELDS:
            return self.field(name)
        raise AttributeError(name)

    def to_json(self) -> dict:
        out: Dict[str, object] = {"address": hex(self.address), "size": hex(self.size), "source": self.source}
        for k in FIELDS:
            v = self.field(k)
            out[k] = None if v is None else hex(v)
        return out

    def __repr__(self) -> str:
        kb = self.field("KernBase")
        return f"<KdDebuggerData at {self.address:#x} size {self.size:#x} KernBase {kb or 0:#x} ({self.source})>"


@dataclass
class KdbgResult:
    """What reading the KDBG gave: ``data`` (None unless status == 'ok') and a reason."""

    status: str            # 'ok', 'absent', 'unreadable', 'encoded', 'bad_size'
    reason: str
    data: Optional[KdDebuggerData] = None


def read_kdbg_block(k: "Kernel") -> KdbgResult:
    """Locate and check the KDBG of ``dump`` (no decoding; see the module docstring)."""
    va = k.facts.kd_debugger_data_block
    if not va:
        return KdbgResult("absent", "the header has no KdDebuggerDataBlock address")
    src = "triage copy" if k.triage is not None else "memory"
    try:
        head = k.read_virtual(va, 0x18)
    except MemoryReadError as exc:
        return KdbgResult("unreadable", f"the KDBG at {va:#x} is not in the dump ({exc.message})")
    if head[0x10:0x14] != OWNER_TAG:
        tag = head[0x10:0x14]
        return KdbgResult(
            "encoded",
            f"the KDBG at {va:#x} has owner tag {tag!r}, not 'KDBG': it is encoded (Windows 8+ "
            "KdpDataBlockEncoded) and cannot be decoded without nt symbols (KiWaitNever, KiWaitAlways); "
            "falling back to the dump header fields")
    size = int.from_bytes(head[0x14:0x18], "little")
    if size < 0x18 or size > MAX_SIZE:
        return KdbgResult("bad_size", f"the KDBG at {va:#x} claims size {size:#x}; expected 0x18..{MAX_SIZE:#x}")
    try:
        raw = k.read_virtual(va, size)
    except MemoryReadError:
        # a partly missing block: keep what is readable page by page
        raw = k.read_virtual(va, size, zero_fill=True)
    return KdbgResult("ok", f"plaintext KDBG at {va:#x} ({src}, {size:#x} bytes)",
                      KdDebuggerData(va, size, raw, src))
