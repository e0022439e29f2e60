"""x64 CONTEXT, KTRAP_FRAME and KEXCEPTION_FRAME decoding (hot-ish: plain struct)."""
from __future__ import annotations

import struct
from typing import Optional

from ..errors import CorruptDumpError
from ..model import GPR_NAMES, Context

CONTEXT_SIZE = 0x4D0
KTRAP_FRAME_SIZE = 0x190
KEXCEPTION_FRAME_SIZE = 0x140
CONTEXT_AMD64 = 0x100000

_CTX_HEAD = struct.Struct("<6Q II 6H I 6Q")          # P1..P6Home, flags, mxcsr, segs, eflags, dr0-3,6,7
_CTX_GPR = struct.Struct("<17Q")                     # rax..r15, rip at 0x78
_XMM = struct.Struct("<32Q")                         # xmm0..15 at 0x1a0 (lo, hi pairs)


def context_from_bytes(data: bytes, source: str = "context", address: Optional[int] = None,
                       path: Optional[str] = None) -> Context:
    """Decode an x64 CONTEXT record (0x4D0 bytes; at least 0x100 needed)."""
    if len(data) < 0x100:
        raise CorruptDumpError(f"CONTEXT needs 0x100 bytes, got {len(data):#x}", path=path, offset=address,
                               expected="an x64 CONTEXT")
    head = _CTX_HEAD.unpack_from(data, 0)
    flags, mxcsr = head[6], head[7]
    cs, ds, es, fs, gs, ss = head[8:14]
    eflags = head[14]
    gpr = _CTX_GPR.unpack_from(data, 0x78)
    regs = {name: gpr[i] for i, name in enumerate(GPR_NAMES)}
    regs["rip"] = gpr[16]
    regs.update(eflags=eflags, cs=cs, ss=ss, ds=ds, es=es, fs=fs, gs=gs, mxcsr=mxcsr, context_flags=flags)
    if len(data) >= 0x2A0:
        xmm = _XMM.unpack_from(data, 0x1A0)
        for i in range(16):
            regs[f"xmm{i}"] = xmm[2 * i] | (xmm[2 * i + 1] << 64)
    return Context(regs, source, address)


def looks_like_context(data: bytes) -> bool:
    """Plausibility check: CONTEXT_AMD64 flag set, kernel or user CS, sane RSP."""
    if len(data) < 0x100:
        return False
    flags = int.from_bytes(data[0x30:0x34], "little")
    cs = int.from_bytes(data[0x38:0x3A], "little")
    return bool(flags & CONTEXT_AMD64) and flags < 0x200000 and cs in (0x10, 0x33, 0x23, 0x18)


# KTRAP_FRAME x64 (Win8+): volatile registers + rbx/rdi/rsi/rbp + the machine frame
_TRAP_OFFSETS = {
    "rax": 0x30, "rcx": 0x38, "rdx": 0x40, "r8": 0x48, "r9": 0x50, "r10": 0x58, "r11": 0x60,
    "rbx": 0x140, "rdi": 0x148, "rsi": 0x150, "rbp": 0x158, "error_code": 0x160, "rip": 0x168,
    "eflags": 0x178, "rsp": 0x180,
}


def context_from_trap_frame(data: bytes, address: Optional[int] = None, path: Optional[str] = None) -> Context:
    """Registers saved in a KTRAP_FRAME.  r12-r15 are not in a trap frame (not 'valid')."""
    if len(data) < KTRAP_FRAME_SIZE:
        raise CorruptDumpError(f"KTRAP_FRAME needs {KTRAP_FRAME_SIZE:#x} bytes, got {len(data):#x}", path=path,
                               offset=address, expected="an x64 KTRAP_FRAME")
    regs = {k: int.from_bytes(data[o:o + 8], "little") for k, o in _TRAP_OFFSETS.items()}
    regs["cs"] = int.from_bytes(data[0x170:0x172], "little")
    regs["ss"] = int.from_bytes(data[0x188:0x18A], "little")
    regs["eflags"] &= 0xFFFFFFFF
    regs["previous_mode"] = data[0x28]
    regs["previous_irql"] = data[0x29]
    regs["fault_address"] = int.from_bytes(data[0xD0:0xD8], "little")
    regs["mxcsr"] = int.from_bytes(data[0x2C:0x30], "little")
    valid = {"rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "rbx", "rdi", "rsi", "rbp", "rip", "rsp", "eflags"}
    return Context(regs, "trap_frame", address, valid=valid)


_EXC_OFFSETS = {"rbp": 0xF8, "rbx": 0x100, "rdi": 0x108, "rsi": 0x110, "r12": 0x118, "r13": 0x120,
                "r14": 0x128, "r15": 0x130, "return": 0x138}


def nonvolatiles_from_exception_frame(data: bytes) -> dict:
    """rbp, rbx, rdi, rsi, r12-r15 and the return address from a KEXCEPTION_FRAME."""
    if len(data) < KEXCEPTION_FRAME_SIZE:
        raise CorruptDumpError(f"KEXCEPTION_FRAME needs {KEXCEPTION_FRAME_SIZE:#x} bytes, got {len(data):#x}")
    return {k: int.from_bytes(data[o:o + 8], "little") for k, o in _EXC_OFFSETS.items()}
