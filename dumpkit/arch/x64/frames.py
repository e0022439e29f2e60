"""x64 CONTEXT, KTRAP_FRAME and KEXCEPTION_FRAME: the layouts, defined once, and their decoders.

Every other module (kernel contexts, the unwinder's machine frames, the stack scan's
trap-frame recognition) takes its offsets from here.  Offsets are those of Windows 8 and
later (ntddk/ntosp CONTEXT and KTRAP_FRAME for AMD64; see docs/dump-formats.md).
"""
from __future__ import annotations

import struct
from typing import Dict, Optional

from ...errors import CorruptDumpError
from ...model import GPR_NAMES, Context

CONTEXT_SIZE = 0x4D0
CONTEXT_MIN = 0x100                     # enough for the integer registers and rip
CONTEXT_AMD64 = 0x100000
CONTEXT_FLAGS = 0x30
CONTEXT_SEG_CS = 0x38
CONTEXT_RSP = 0x98
CONTEXT_RIP = 0xF8

KTRAP_FRAME_SIZE = 0x190
KEXCEPTION_FRAME_SIZE = 0x140


class X64Context(Context):
    """An x64 register context (rip, rsp, rbp; the return address is on the stack)."""

    __slots__ = ()
    arch = "x64"


class TrapFrameLayout:
    """KTRAP_FRAME (x64, Windows 8+): where each saved register sits."""

    PREVIOUS_MODE = 0x28
    PREVIOUS_IRQL = 0x29
    MXCSR = 0x2C
    VOLATILES = (("rax", 0x30), ("rcx", 0x38), ("rdx", 0x40), ("r8", 0x48), ("r9", 0x50), ("r10", 0x58),
                 ("r11", 0x60))
    FAULT_ADDRESS = 0xD0
    NONVOLATILES = (("rbx", 0x140), ("rdi", 0x148), ("rsi", 0x150), ("rbp", 0x158))
    ERROR_CODE = 0x160
    # the hardware machine frame (what PUSH_MACHFRAME describes) starts at Rip
    RIP = 0x168
    TRAP_IP = RIP                        # arch-neutral name of the saved PC
    SEG_CS = 0x170
    EFLAGS = 0x178
    RSP = 0x180
    SEG_SS = 0x188
    SIZE = KTRAP_FRAME_SIZE
    #: registers a trap frame saves (r12-r15 are not in it)
    SAVED = frozenset({"rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "rbx", "rdi", "rsi", "rbp", "rip",
                       "rsp", "eflags"})


class MachineFrame:
    """The interrupt frame the CPU pushes, relative to its Rip slot (= KTRAP_FRAME + RIP)."""

    RIP = 0x0
    SEG_CS = TrapFrameLayout.SEG_CS - TrapFrameLayout.RIP        # 0x08
    EFLAGS = TrapFrameLayout.EFLAGS - TrapFrameLayout.RIP        # 0x10
    RSP = TrapFrameLayout.RSP - TrapFrameLayout.RIP              # 0x18
    SEG_SS = TrapFrameLayout.SEG_SS - TrapFrameLayout.RIP        # 0x20
    TRAP_FRAME_DELTA = TrapFrameLayout.RIP                       # trap frame = Rip slot - 0x168


KTRAP_FRAME = TrapFrameLayout
KERNEL_CS = 0x10
CS_VALUES = (0x10, 0x33, 0x23)
SS_VALUES = (0x00, 0x18, 0x2B)
KERNEL_MIN = 0xFFFF800000000000
USER_MAX = 0x00007FFFFFFFFFFF

_CTX_HEAD = struct.Struct("<6Q II 6H I 6Q")          # P1..P6Home, flags, mxcsr, segs, eflags, dr0-3,6,7
_CTX_GPR = struct.Struct("<17Q")                     # rax..r15, rip at 0x78
_XMM = struct.Struct("<32Q")                         # xmm0..15 at 0x1a0 (lo, hi pairs)
_Q = struct.Struct("<Q")
_H = struct.Struct("<H")


def context_from_bytes(data: bytes, source: str = "context", address: Optional[int] = None,
                       path: Optional[str] = None) -> X64Context:
    """Decode an x64 CONTEXT record (0x4D0 bytes; at least 0x100 needed)."""
    if len(data) < CONTEXT_MIN:
        raise CorruptDumpError(f"CONTEXT needs {CONTEXT_MIN:#x} bytes, got {len(data):#x}", path=path,
                               offset=address, expected="an x64 CONTEXT")
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
    return X64Context(regs, source, address)


def looks_like_context(data: bytes) -> bool:
    """Plausibility check: CONTEXT_AMD64 flag set, kernel or user CS, sane RSP."""
    if len(data) < CONTEXT_MIN:
        return False
    flags = int.from_bytes(data[CONTEXT_FLAGS:CONTEXT_FLAGS + 4], "little")
    cs = int.from_bytes(data[CONTEXT_SEG_CS:CONTEXT_SEG_CS + 2], "little")
    return bool(flags & CONTEXT_AMD64) and flags < 0x200000 and cs in (0x10, 0x33, 0x23, 0x18)


def context_sp(raw: bytes) -> int:
    return _Q.unpack_from(raw, CONTEXT_RSP)[0] if len(raw) >= CONTEXT_RSP + 8 else 0


def context_from_trap_frame(data: bytes, address: Optional[int] = None, path: Optional[str] = None) -> X64Context:
    """Registers saved in a KTRAP_FRAME.  r12-r15 are not in a trap frame (not 'valid')."""
    T = TrapFrameLayout
    if len(data) < T.SIZE:
        raise CorruptDumpError(f"KTRAP_FRAME needs {T.SIZE:#x} bytes, got {len(data):#x}", path=path,
                               offset=address, expected="an x64 KTRAP_FRAME")
    regs = {k: _Q.unpack_from(data, o)[0] for k, o in T.VOLATILES + T.NONVOLATILES}
    regs["error_code"] = _Q.unpack_from(data, T.ERROR_CODE)[0]
    regs["rip"] = _Q.unpack_from(data, T.RIP)[0]
    regs["eflags"] = _Q.unpack_from(data, T.EFLAGS)[0] & 0xFFFFFFFF
    regs["rsp"] = _Q.unpack_from(data, T.RSP)[0]
    regs["cs"] = _H.unpack_from(data, T.SEG_CS)[0]
    regs["ss"] = _H.unpack_from(data, T.SEG_SS)[0]
    regs["previous_mode"] = data[T.PREVIOUS_MODE]
    regs["previous_irql"] = data[T.PREVIOUS_IRQL]
    regs["fault_address"] = _Q.unpack_from(data, T.FAULT_ADDRESS)[0]
    regs["mxcsr"] = int.from_bytes(data[T.MXCSR:T.MXCSR + 4], "little")
    return X64Context(regs, "trap_frame", address, valid=T.SAVED)


def trap_frame_volatiles(data: bytes) -> Dict[str, int]:
    """The volatile registers (rax, rcx, rdx, r8-r11) saved in a KTRAP_FRAME."""
    end = TrapFrameLayout.VOLATILES[-1][1] + 8
    if len(data) < end:
        raise CorruptDumpError("KTRAP_FRAME too short for the volatile registers", expected=f"{end:#x} bytes")
    return {name: _Q.unpack_from(data, off)[0] for name, off in TrapFrameLayout.VOLATILES}


def plausible_trap_frame(data: bytes, off: int = 0) -> bool:
    """CS/SS are real selectors, EFLAGS has its fixed bit, RSP fits the privilege level."""
    T = TrapFrameLayout
    if off < 0 or off + T.SIZE > len(data):
        return False
    cs = _H.unpack_from(data, off + T.SEG_CS)[0]
    ss = _H.unpack_from(data, off + T.SEG_SS)[0]
    efl = _Q.unpack_from(data, off + T.EFLAGS)[0]
    rsp = _Q.unpack_from(data, off + T.RSP)[0]
    if cs not in CS_VALUES or ss not in SS_VALUES or not efl & 2 or efl >= 1 << 22:
        return False
    if cs == KERNEL_CS:
        return rsp >= KERNEL_MIN
    return 0 < rsp <= USER_MAX


# KEXCEPTION_FRAME: the nonvolatile registers saved by the kernel's exception dispatch
_EXC_OFFSETS = {"rbp": 0xF8, "rbx": 0x100, "rdi": 0x108, "rsi": 0x110, "r12": 0x118, "r13": 0x120,
                "r14": 0x128, "r15": 0x130, "return": 0x138}


def nonvolatiles_from_exception_frame(data: bytes) -> dict:
    """rbp, rbx, rdi, rsi, r12-r15 and the return address from a KEXCEPTION_FRAME."""
    if len(data) < KEXCEPTION_FRAME_SIZE:
        raise CorruptDumpError(f"KEXCEPTION_FRAME needs {KEXCEPTION_FRAME_SIZE:#x} bytes, got {len(data):#x}")
    return {k: _Q.unpack_from(data, o)[0] for k, o in _EXC_OFFSETS.items()}


# where the instruction pointer sits, for stack searches by IP (kernel.contexts)
CONTEXT_IP = CONTEXT_RIP
