"""The x86 CONTEXT (CONTEXT_i386, 0x2CC bytes) and KTRAP_FRAME (0x8C bytes): layouts defined once.

Both decode to :class:`X86Context`, a :class:`dumpkit.model.Context` whose registers
carry their x86 names (``eip``, ``esp``, ``ebp``, ``eax`` ...), whose ``ip``/``sp``
are EIP/ESP, and which pickles and copies (it rebuilds from its plain fields).
Offsets and their sources are in ``docs/dump-formats.md``.
"""
from __future__ import annotations

import struct
from typing import Dict, Iterable, List, Optional, Tuple

from ...errors import CorruptDumpError
from ...model import Context

CONTEXT_I386 = 0x00010000
CONTEXT_X86_SIZE = 0x2CC
KTRAP_FRAME_X86_SIZE = 0x8C

GPR32 = ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp")
NONVOLATILE32 = ("ebx", "esi", "edi", "ebp")
VOLATILE32 = ("eax", "ecx", "edx")

# CONTEXT_i386: (register, offset); all u32.  FloatSave (FLOATING_SAVE_AREA, 0x70) at 0x1C,
# ExtendedRegisters (512, the FXSAVE image) at 0xCC.
CONTEXT_X86_LAYOUT: Tuple[Tuple[str, int], ...] = (
    ("context_flags", 0x00), ("dr0", 0x04), ("dr1", 0x08), ("dr2", 0x0C), ("dr3", 0x10), ("dr6", 0x14),
    ("dr7", 0x18), ("gs", 0x8C), ("fs", 0x90), ("es", 0x94), ("ds", 0x98), ("edi", 0x9C), ("esi", 0xA0),
    ("ebx", 0xA4), ("edx", 0xA8), ("ecx", 0xAC), ("eax", 0xB0), ("ebp", 0xB4), ("eip", 0xB8), ("cs", 0xBC),
    ("eflags", 0xC0), ("esp", 0xC4), ("ss", 0xC8),
)
CONTEXT_X86_FLOATSAVE = 0x1C
CONTEXT_X86_EXTENDED = 0xCC

# KTRAP_FRAME (x86), all u32
KTRAP_FRAME_X86_LAYOUT: Tuple[Tuple[str, int], ...] = (
    ("dbg_ebp", 0x00), ("dbg_eip", 0x04), ("dbg_arg_mark", 0x08), ("dbg_arg_pointer", 0x0C),
    ("temp_seg_cs", 0x10), ("temp_esp", 0x14), ("dr0", 0x18), ("dr1", 0x1C), ("dr2", 0x20), ("dr3", 0x24),
    ("dr6", 0x28), ("dr7", 0x2C), ("gs", 0x30), ("es", 0x34), ("ds", 0x38), ("edx", 0x3C), ("ecx", 0x40),
    ("eax", 0x44), ("previous_previous_mode", 0x48), ("exception_list", 0x4C), ("fs", 0x50), ("edi", 0x54),
    ("esi", 0x58), ("ebx", 0x5C), ("ebp", 0x60), ("error_code", 0x64), ("eip", 0x68), ("cs", 0x6C),
    ("eflags", 0x70), ("hardware_esp", 0x74), ("hardware_ss", 0x78), ("v86_es", 0x7C), ("v86_ds", 0x80),
    ("v86_fs", 0x84), ("v86_gs", 0x88),
)
TRAP_X86_OFFSETS: Dict[str, int] = dict(KTRAP_FRAME_X86_LAYOUT)
TRAP_X86_HARDWARE_ESP = TRAP_X86_OFFSETS["hardware_esp"]
_EFLAGS_VM = 1 << 17


def _u32s(data: bytes, layout: Iterable[Tuple[str, int]]) -> Dict[str, int]:
    return {name: struct.unpack_from("<I", data, off)[0] for name, off in layout}


class X86Context(Context):
    """A 32-bit x86 register context (``ctx.eip``, ``ctx['esp']``); ``arch`` is 'x86'."""

    __slots__ = ()
    arch = "x86"
    IP, SP, FP, RA = "eip", "esp", "ebp", None
    POINTER_SIZE = 4
    RENDER_ORDER = ("eax", "ebx", "ecx", "edx", "esi", "edi", "eip", "esp", "ebp")

    def __getattr__(self, name: str) -> int:
        if name.startswith("__") or name in ("regs", "source", "address", "valid"):
            raise AttributeError(name)       # unset slots (copy/pickle) never recurse
        try:
            return self.regs[name]
        except KeyError:
            raise AttributeError(name) from None

    def __reduce__(self):
        return (_rebuild, (dict(self.regs), self.source, self.address, sorted(self.valid)))

    def __copy__(self) -> "X86Context":
        return self.copy()

    def __deepcopy__(self, memo) -> "X86Context":
        return self.copy()

    def copy(self) -> "X86Context":
        return X86Context(self.regs, self.source, self.address, set(self.valid))

    @property
    def ip(self) -> int:
        return self.regs.get("eip", 0)

    @property
    def sp(self) -> int:
        return self.regs.get("esp", 0)

    def to_json(self) -> dict:
        return {k: hex(v) for k, v in self.regs.items()}

    def __repr__(self) -> str:
        src = f" {self.source}" if self.source else ""
        return f"<X86Context{src} eip={self.ip:08x} esp={self.sp:08x}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, X86Context) and (self.regs, self.source, self.address, self.valid) == \
            (other.regs, other.source, other.address, other.valid)

    __hash__ = None  # type: ignore[assignment]

    def render(self) -> str:
        """WinDbg's x86 ``r`` layout; registers not known to be right print as ``????????``."""
        def cell(n: str) -> str:
            if n not in self.regs:
                return f"{n}=????????"
            return f"{n}={self.regs[n]:08x}" if n in self.valid else f"{n}=????????"
        lines: List[str] = [" ".join(cell(n) for n in ("eax", "ebx", "ecx", "edx", "esi", "edi")),
                            " ".join(cell(n) for n in ("eip", "esp", "ebp"))]
        segs = [f"{n}={self.regs[n] & 0xFFFF:04x}" for n in ("cs", "ss", "ds", "es", "fs", "gs") if n in self.regs]
        if "eflags" in self.regs:
            segs.append(f"efl={self.regs['eflags']:08x}")
        if segs:
            lines.append("  ".join(segs))
        return "\n".join(lines)


def _rebuild(regs: Dict[str, int], source: str, address: Optional[int], valid: List[str]) -> X86Context:
    return X86Context(regs, source, address, valid)


def context_from_bytes32(data: bytes, source: str = "context", address: Optional[int] = None,
                         path: Optional[str] = None) -> X86Context:
    """Decode a CONTEXT_i386 record (0x2CC bytes; the integer part, 0xCC bytes, is required)."""
    if len(data) < CONTEXT_X86_EXTENDED:
        raise CorruptDumpError(f"an x86 CONTEXT needs {CONTEXT_X86_EXTENDED:#x} bytes, got {len(data):#x}",
                               path=path, offset=address, expected="CONTEXT_i386")
    regs = _u32s(data, CONTEXT_X86_LAYOUT)
    for seg in ("cs", "ss", "ds", "es", "fs", "gs"):
        regs[seg] &= 0xFFFF
    return X86Context(regs, source, address)


def looks_like_context32(data: bytes) -> bool:
    """Plausibility: the CONTEXT_i386 flag, a kernel or user code selector, EFLAGS bit 1."""
    if len(data) < CONTEXT_X86_EXTENDED:
        return False
    flags = struct.unpack_from("<I", data, 0)[0]
    cs = struct.unpack_from("<I", data, 0xBC)[0] & 0xFFFF
    efl = struct.unpack_from("<I", data, 0xC0)[0]
    return bool(flags & CONTEXT_I386) and flags < 0x20000 and cs in (0x08, 0x1B) and bool(efl & 2)


def context_from_trap_frame32(data: bytes, address: Optional[int] = None,
                              path: Optional[str] = None) -> X86Context:
    """Registers of an x86 KTRAP_FRAME at ``address``.

    A trap taken in kernel mode (CS RPL 0, not v86) pushes no SS:ESP, so the interrupted
    ESP is the address of the ``HardwareEsp`` slot (``address + 0x74``), as WinDbg's
    ``.trap`` computes it; for a trap from user mode it is ``HardwareEsp``.  Without the
    frame's address a kernel-mode ESP is unknown (not in ``valid``).
    """
    if len(data) < KTRAP_FRAME_X86_SIZE - 0x10:      # the v86 tail may be absent
        raise CorruptDumpError(f"an x86 KTRAP_FRAME needs {KTRAP_FRAME_X86_SIZE - 0x10:#x} bytes, "
                               f"got {len(data):#x}", path=path, offset=address, expected="KTRAP_FRAME (x86)")
    data = bytes(data) + bytes(max(0, KTRAP_FRAME_X86_SIZE - len(data)))
    t = _u32s(data, KTRAP_FRAME_X86_LAYOUT)
    regs = {k: t[k] for k in ("eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "eip", "eflags")}
    regs.update(cs=t["cs"] & 0xFFFF, ds=t["ds"] & 0xFFFF, es=t["es"] & 0xFFFF, fs=t["fs"] & 0xFFFF,
                gs=t["gs"] & 0xFFFF, error_code=t["error_code"])
    valid = set(regs) - {"error_code"}
    user = bool(regs["cs"] & 1) or bool(regs["eflags"] & _EFLAGS_VM)
    if user:
        regs["esp"], regs["ss"] = t["hardware_esp"], t["hardware_ss"] & 0xFFFF
        valid |= {"esp", "ss"}
    elif address is not None:
        regs["esp"] = (address + TRAP_X86_HARDWARE_ESP) & 0xFFFFFFFF
        valid.add("esp")
    return X86Context(regs, "trap_frame", address, valid)


def looks_like_trap_frame32(data: bytes, address: Optional[int] = None) -> bool:
    """Shape check: DbgEbp/DbgEip mirror Ebp/Eip, a code selector, EFLAGS bit 1 and IF sane."""
    if len(data) < KTRAP_FRAME_X86_SIZE - 0x10:
        return False
    t = _u32s(data, KTRAP_FRAME_X86_LAYOUT[:31])
    cs = t["cs"] & 0xFFFF
    return (cs in (0x08, 0x1B) and bool(t["eflags"] & 2) and t["eflags"] >> 22 == 0
            and t["dbg_eip"] == t["eip"] and t["dbg_ebp"] == t["ebp"] and t["eip"] >= 0x1000)
