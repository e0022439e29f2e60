"""ARM64 CONTEXT (ARM64_NT_CONTEXT) and the per-processor architectural state: layouts and decoders.

CONTEXT, 0x390 bytes (offsets: the Windows SDK's ``ARM64_NT_CONTEXT``; sources in
docs/dump-formats.md):

====== =================================================
0x000  ContextFlags (u32; CONTEXT_ARM64 = 0x00400000)
0x004  Cpsr (u32)
0x008  X0 .. X28 (u64 each)
0x0F0  Fp (x29)      0x0F8  Lr (x30)
0x100  Sp            0x108  Pc
0x110  V0 .. V31 (128-bit NEON registers)
0x310  Fpcr (u32)    0x314  Fpsr (u32)
0x318  Bcr[8] (u32)  0x338  Bvr[8] (u64)
0x378  Wcr[2] (u32)  0x380  Wvr[2] (u64)
====== =================================================

KARM64_ARCH_STATE (KPRCB.ProcessorState.ArchState, at KPRCB+0xE0 on build 22000): Midr_El1,
Sctlr_El1, Actlr_El1, Cpacr_El1, Tcr_El1, Ttbr0_El1, Ttbr1_El1 (u64 each, in this order;
checked against the real triage dump's KPRCB copy, where TCR_EL1 gives T0SZ = T1SZ = 17 and
TTBR1 = DirectoryTableBase + 0x800).
"""
from __future__ import annotations

import struct
from typing import Dict, Optional, Tuple

from ...errors import CorruptDumpError, UnsupportedDumpError
from ...model import Context

CONTEXT_SIZE = 0x390
CONTEXT_MIN = 0x110                   # flags through pc: enough for the integer state
CONTEXT_ARM64 = 0x00400000
CONTEXT_FLAGS = 0x000
CONTEXT_CPSR = 0x004
CONTEXT_X0 = 0x008
CONTEXT_FP = 0x0F0
CONTEXT_LR = 0x0F8
CONTEXT_SP = 0x100
CONTEXT_PC = 0x108
CONTEXT_V0 = 0x110
CONTEXT_FPCR = 0x310
CONTEXT_FPSR = 0x314
CONTEXT_IP = CONTEXT_PC
# no ARM64 KTRAP_FRAME layout is known to dumpkit from a verifiable public source yet
KTRAP_FRAME_SIZE = 0

ARCH_STATE_IN_PRCB = 0xE0             # KPRCB.ProcessorState.ArchState (build 22000 ARM64)
ARCH_STATE_FIELDS = ("midr_el1", "sctlr_el1", "actlr_el1", "cpacr_el1", "tcr_el1", "ttbr0_el1", "ttbr1_el1")

GPR_NAMES = tuple(f"x{i}" for i in range(29)) + ("fp", "lr")
#: callee-saved (AAPCS64): x19-x28, fp, lr (lr is the return address), sp; d8-d15 low halves
NONVOLATILE = tuple(f"x{i}" for i in range(19, 29)) + ("fp", "lr", "sp")

_HEAD = struct.Struct("<II")
_GPRS = struct.Struct("<33Q")          # x0..x28, fp, lr, sp, pc
_V = struct.Struct("<64Q")
_FP = struct.Struct("<II")


class Arm64Context(Context):
    """An ARM64 register context: x0-x28, fp (x29), lr (x30), sp, pc, cpsr, fpcr, fpsr, v0-v31."""

    __slots__ = ()
    arch = "arm64"
    IP = "pc"
    SP = "sp"
    FP = "fp"
    RA = "lr"
    RENDER_ORDER = tuple(f"x{i}" for i in range(29)) + ("fp", "lr", "sp", "pc")

    def __repr__(self) -> str:
        src = f" {self.source}" if self.source else ""
        return f"<Arm64Context{src} pc={self.ip:#018x} sp={self.sp:#018x}>"


def context_from_bytes(data: bytes, source: str = "context", address: Optional[int] = None,
                       path: Optional[str] = None) -> Arm64Context:
    """Decode an ARM64 CONTEXT record (0x390 bytes; at least 0x110 for the integer registers)."""
    if len(data) < CONTEXT_MIN:
        raise CorruptDumpError(f"ARM64 CONTEXT needs {CONTEXT_MIN:#x} bytes, got {len(data):#x}", path=path,
                               offset=address, expected="an ARM64_NT_CONTEXT")
    flags, cpsr = _HEAD.unpack_from(data, 0)
    vals = _GPRS.unpack_from(data, CONTEXT_X0)
    regs: Dict[str, int] = {name: vals[i] for i, name in enumerate(GPR_NAMES)}
    regs["sp"] = vals[31]
    regs["pc"] = vals[32]
    regs["cpsr"] = cpsr
    regs["context_flags"] = flags
    if len(data) >= CONTEXT_FPSR + 4:
        v = _V.unpack_from(data, CONTEXT_V0)
        for i in range(32):
            regs[f"v{i}"] = v[2 * i] | (v[2 * i + 1] << 64)
        regs["fpcr"], regs["fpsr"] = _FP.unpack_from(data, CONTEXT_FPCR)
    return Arm64Context(regs, source, address)


def looks_like_context(data: bytes) -> bool:
    """CONTEXT_ARM64 set (and no other architecture's bit), SP 16-byte aligned, PC 4-byte aligned."""
    if len(data) < CONTEXT_MIN:
        return False
    flags = int.from_bytes(data[0:4], "little")
    if not flags & CONTEXT_ARM64 or flags & ~0x0040007F & 0xFFFFFFFF:
        return False
    sp = int.from_bytes(data[CONTEXT_SP:CONTEXT_SP + 8], "little")
    pc = int.from_bytes(data[CONTEXT_PC:CONTEXT_PC + 8], "little")
    return sp % 16 == 0 and pc % 4 == 0 and pc != 0


def context_sp(raw: bytes) -> int:
    return int.from_bytes(raw[CONTEXT_SP:CONTEXT_SP + 8], "little") if len(raw) >= CONTEXT_SP + 8 else 0


def context_from_trap_frame(data: bytes, address: Optional[int] = None, path: Optional[str] = None) -> Context:
    raise UnsupportedDumpError("ARM64 KTRAP_FRAME decoding is not supported yet (no verified layout)", path=path,
                               offset=address)


def plausible_trap_frame(data: bytes, off: int = 0) -> bool:
    return False


class KTRAP_FRAME:                              # noqa: N801 - the Windows structure name
    """Placeholder: no verified ARM64 KTRAP_FRAME layout (searches by trap frame find nothing)."""

    TRAP_IP = 0
    FAULT_ADDRESS = 0
    SIZE = 0


def arch_state(prcb: bytes, offset: int = ARCH_STATE_IN_PRCB) -> Optional[Dict[str, int]]:
    """KARM64_ARCH_STATE from a KPRCB copy (MIDR, SCTLR, ACTLR, CPACR, TCR, TTBR0, TTBR1)."""
    end = offset + 8 * len(ARCH_STATE_FIELDS)
    if len(prcb) < end:
        return None
    vals = struct.unpack_from(f"<{len(ARCH_STATE_FIELDS)}Q", prcb, offset)
    return dict(zip(ARCH_STATE_FIELDS, vals))


def tcr_sizes(tcr: int) -> Tuple[int, int]:
    """(T0SZ, T1SZ) of a TCR_EL1 value: the VA sizes are 64 - TnSZ bits."""
    return tcr & 0x3F, (tcr >> 16) & 0x3F
