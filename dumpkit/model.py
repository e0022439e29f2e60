"""Data models shared by every layer: modules, register contexts, stack frames.

These are deliberately plain: the dump reader, the WinDbg-text parser, the
unwinder and the analysis all speak them, so an analysis can run from a dump
or from pasted text alike.
"""
from __future__ import annotations

import bisect
import datetime as _dt
from dataclasses import dataclass
from typing import Dict, Iterable, Iterator, List, Optional, Protocol, Sequence, Tuple

# x64 register names in UNWIND_CODE / CONTEXT order (0 = rax ... 15 = r15)
GPR_NAMES = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")
NONVOLATILE = ("rbx", "rbp", "rdi", "rsi", "r12", "r13", "r14", "r15")

_NT_NAMES = {"ntoskrnl", "ntkrnlmp", "ntkrnlpa", "ntkrpamp", "ntkrla57"}
_HAL_NAMES = {"hal", "halmacpi", "halacpi", "halaacpi"}


def windbg_module_name(file_name: str) -> str:
    """WinDbg's module name for an image file: 'nt', 'hal', else the stem."""
    base = file_name.replace("/", "\\").rsplit("\\", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    low = stem.lower()
    if low in _NT_NAMES:
        return "nt"
    if low in _HAL_NAMES:
        return "hal"
    return stem


@dataclass
class Module:
    """A loaded (or unloaded) kernel module."""

    name: str                      # base file name as stored, e.g. "amdppm.sys"
    base: int
    size: int
    path: Optional[str] = None     # full path when known
    timestamp: Optional[int] = None
    checksum: Optional[int] = None
    unloaded: bool = False
    unload_time: Optional[_dt.datetime] = None

    @property
    def end(self) -> int:
        return self.base + self.size

    @property
    def windbg_name(self) -> str:
        return windbg_module_name(self.name)

    def contains(self, address: int) -> bool:
        return self.base <= address < self.base + self.size

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "path": self.path,
            "base": hex(self.base),
            "size": hex(self.size),
            "timestamp": None if self.timestamp is None else hex(self.timestamp),
            "checksum": None if self.checksum is None else hex(self.checksum),
        }

    def __repr__(self) -> str:
        tag = " unloaded" if self.unloaded else ""
        return f"<Module {self.name} {self.base:#018x}-{self.end:#018x}{tag}>"


class ModuleList(Sequence[Module]):
    """Modules sorted by base with O(log n) address lookup and WinDbg-style name lookup."""

    def __init__(self, modules: Iterable[Module] = ()) -> None:
        self._order: List[Module] = list(modules)          # as stored (load order)
        self._sorted = sorted(self._order, key=lambda m: m.base)
        self._bases = [m.base for m in self._sorted]

    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, i):  # type: ignore[override]
        return self._order[i]

    def __iter__(self) -> Iterator[Module]:
        return iter(self._order)

    def find(self, address: int) -> Optional[Module]:
        """The module whose [base, base+size) holds ``address``, or None."""
        i = bisect.bisect_right(self._bases, address) - 1
        # overlapping entries are possible in corrupt lists: look back a little
        for j in range(i, max(-1, i - 4), -1):
            m = self._sorted[j]
            if m.contains(address):
                return m
        return None

    def by_name(self, name: str) -> Optional[Module]:
        """Case-insensitive: 'amdppm', 'amdppm.sys', 'nt', 'ntoskrnl.exe', a full path."""
        want = name.replace("/", "\\").rsplit("\\", 1)[-1].lower()
        for m in self._order:
            if m.name.lower() == want:
                return m
        stem = want.rsplit(".", 1)[0] if "." in want else want
        for m in self._order:
            if m.windbg_name.lower() == stem or m.name.lower().rsplit(".", 1)[0] == stem:
                return m
        return None

    def __repr__(self) -> str:
        return f"<ModuleList {len(self)} modules>"

    # -- REPL: an `lm`-like table in IPython/Jupyter ------------------------------------
    def render(self, limit: Optional[int] = None) -> str:
        """The modules by address, like WinDbg's ``lm`` (``limit`` rows at most)."""
        rows = self._sorted if limit is None else self._sorted[:limit]
        w = max([len(m.windbg_name) for m in rows] + [8])
        ps = pointer_size_of([m.end for m in self._sorted])
        lines = ["start             end                 module name" if ps == 8 else "start    end        module name"]
        for m in rows:
            ts = f"{m.timestamp:08x}" if m.timestamp is not None else "--------"
            tag = "  (unloaded)" if m.unloaded else ""
            lines.append(f"{windbg_hex(m.base, ps)} {windbg_hex(m.end, ps)}   {m.windbg_name:<{w}}  {ts}  {m.name}{tag}")
        if limit is not None and len(self._sorted) > limit:
            lines.append(f"... {len(self._sorted) - limit} more")
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle: bool) -> None:
        p.text(repr(self) if cycle or not len(self) else repr(self) + "\n" + self.render(limit=40))


class Context:
    """A register context.  Registers are attributes and ``ctx['rax']``.

    The base class speaks x64 register names (``rip``/``rsp``/``rbp``), which is also
    what pasted WinDbg text gives; each architecture package has its typed subclass
    (:class:`dumpkit.arch.x64.X64Context`, :class:`dumpkit.arch.arm64.Arm64Context`)
    that says which registers are the IP, SP, frame pointer and return address.

    ``source`` says where it came from ('header', 'exception', 'trap_frame',
    'cxr', 'unwind', 'text', ...); ``valid`` lists the registers known to be right
    (after unwinding, volatile registers are unknown).  Contexts copy, deep-copy
    and pickle (an :class:`~dumpkit.analysis.Analysis` crosses process boundaries).
    """

    __slots__ = ("regs", "source", "address", "valid")
    arch = "x64"
    IP = "rip"
    SP = "rsp"
    FP = "rbp"
    RA: Optional[str] = None               # link register (None: return address on the stack)
    POINTER_SIZE = 8
    RENDER_ORDER: Tuple[str, ...] = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rip", "rsp", "rbp",
                                     "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")

    def __init__(self, regs: Optional[Dict[str, int]] = None, source: str = "", address: Optional[int] = None,
                 valid: Optional[Iterable[str]] = None) -> None:
        self.regs: Dict[str, int] = dict(regs or {})
        self.source = source
        self.address = address          # VA of the structure it was read from, when any
        self.valid = set(valid) if valid is not None else set(self.regs)

    def __getattr__(self, name: str) -> int:
        # only called when normal lookup fails; never recurse on our own slots (an object
        # being copied or unpickled has no 'regs' yet)
        if name.startswith("__") or name in Context.__slots__:
            raise AttributeError(name)
        try:
            return object.__getattribute__(self, "regs")[name]
        except (KeyError, AttributeError):
            raise AttributeError(name) from None

    def __reduce__(self):
        return (self.__class__, (self.regs, self.source, self.address, sorted(self.valid)))

    def __getitem__(self, name: str) -> int:
        return self.regs[name]

    def get(self, name: str, default=None):
        return self.regs.get(name, default)

    def copy(self) -> "Context":
        return self.__class__(self.regs, self.source, self.address, self.valid)

    @property
    def ip(self) -> int:
        return self.regs.get(self.IP, 0)

    @property
    def sp(self) -> int:
        return self.regs.get(self.SP, 0)

    @property
    def fp(self) -> int:
        return self.regs.get(self.FP, 0)

    def to_json(self) -> dict:
        return {k: hex(v) for k, v in self.regs.items()}

    def __repr__(self) -> str:
        src = f" {self.source}" if self.source else ""
        w = 2 * self.POINTER_SIZE + 2
        return f"<Context{src} {self.IP}={self.ip:#0{w}x} {self.SP}={self.sp:#0{w}x}>"

    # -- REPL: registers tab-complete (ctx.r<TAB>) and print like WinDbg's `r` -----------
    def __dir__(self) -> List[str]:
        return sorted(set(object.__dir__(self)) | set(self.regs))

    def render(self) -> str:
        """The registers laid out like WinDbg's ``r`` (three per line); unknown ones as ``?``."""
        names = [n for n in self.RENDER_ORDER if n in self.regs]
        w = 2 * self.POINTER_SIZE
        nw = max([len(n) for n in names] + [3])
        cells = [f"{n:>{nw}}={self.regs[n]:0{w}x}" if n in self.valid else f"{n:>{nw}}={'?' * w}" for n in names]
        lines = [" ".join(cells[i:i + 3]) for i in range(0, len(cells), 3)]
        extra = [f"{n[-2:]}={self.regs[n]:04x}" for n in ("cs", "ss", "seg_cs", "seg_ss") if n in self.regs]
        if "eflags" in self.regs:
            extra.append(f"efl={self.regs['eflags']:08x}")
        if "cpsr" in self.regs:
            extra.append(f"cpsr={self.regs['cpsr']:08x}")
        if extra:
            lines.append("  ".join(extra))
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle: bool) -> None:
        p.text(repr(self) if cycle else repr(self) + "\n" + self.render())


# how a frame was found, strongest first (the names follow rust-minidump's trust levels)
TRUSTS = ("context", "cfi", "frame_pointer", "scan", "text")


@dataclass
class Frame:
    """One stack frame, WinDbg style: Child-SP, RetAddr, Call Site."""

    index: int
    instruction: int                 # the frame's IP (for frame 0 the faulting/current IP)
    child_sp: int                    # RSP in this frame
    return_address: int = 0
    module: Optional[str] = None     # WinDbg module name ('nt', 'amdppm')
    symbol: Optional[str] = None     # function name, None when unknown
    offset: Optional[int] = None     # from the symbol, or from the module base when symbol is None
    trust: str = "cfi"
    symbol_source: Optional[str] = None   # 'pdb', 'exports', 'module', 'text'
    context: Optional[Context] = None
    trap_frame: Optional[int] = None      # "TrapFrame @ ..." when this frame was entered through one
    image_name: Optional[str] = None      # 'amdppm.sys'
    frame_base: Optional[int] = None      # x86: WinDbg's ChildEBP (set by the x86 walker)

    @property
    def call_site(self) -> str:
        if self.module is None:
            return f"0x{self.instruction:x}"
        if self.symbol:
            off = f"+0x{self.offset:x}" if self.offset else ""
            return f"{self.module}!{self.symbol}{off}"
        if self.offset is not None:
            return f"{self.module}+0x{self.offset:x}"
        return self.module

    @property
    def function_offset(self) -> Optional[int]:
        """The offset into :attr:`symbol` (None without a symbol)."""
        return self.offset if self.symbol else None

    def to_json(self, modules: Optional["ModuleList"] = None) -> dict:
        """``offset`` is the offset into the function (null without a symbol); ``module_offset``
        the offset from the module's base (from ``modules``, or ``module+0x...`` frames)."""
        mod_off: Optional[int] = None
        m = modules.find(self.instruction) if modules is not None and self.instruction else None
        if m is not None:
            mod_off = self.instruction - m.base
        elif not self.symbol and self.module and self.offset is not None:
            mod_off = self.offset
        return {
            "index": self.index,
            "instruction": hex(self.instruction),
            "child_sp": hex(self.child_sp),
            "return_address": hex(self.return_address),
            "module": self.module,
            "symbol": self.symbol,
            "offset": None if self.function_offset is None else hex(self.function_offset),
            "module_offset": None if mod_off is None else hex(mod_off),
            "trust": self.trust,
        }

    def __repr__(self) -> str:
        return f"<Frame {self.index:02x} {self.call_site} sp={self.child_sp:#x} {self.trust}>"


def windbg_hex(value: int, pointer_size: int = 8) -> str:
    """A pointer the way WinDbg prints it: ``fffff804`0c9d08c2`` (64-bit), ``8f801002`` (``pointer_size=4``)."""
    if pointer_size == 4:
        return f"{value & 0xFFFFFFFF:08x}"
    v = value & 0xFFFFFFFFFFFFFFFF
    return f"{v >> 32:08x}`{v & 0xFFFFFFFF:08x}"


def pointer_size_of(addresses) -> int:
    """4 when every address fits 32 bits and one is a 32-bit kernel address (>= 0x80000000), else 8."""
    vals = [a for a in addresses if a]
    return 4 if vals and all(a < 1 << 32 for a in vals) and any(a >= 0x80000000 for a in vals) else 8


class Stack(List[Frame]):
    """A list of frames that renders like WinDbg's ``k``."""

    def render(self) -> str:
        lines = [" # Child-SP          RetAddr               Call Site"]
        for f in self:
            lines.append(f"{f.index:02x} {windbg_hex(f.child_sp)} {windbg_hex(f.return_address)}     {f.call_site}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"<Stack {len(self)} frames>\n" + self.render()

    def _repr_pretty_(self, p, cycle: bool) -> None:        # IPython: the `k` layout
        p.text(f"<Stack {len(self)} frames>" if cycle else repr(self))


class VirtualReader(Protocol):
    """What the unwinder and kernel layers need from a dump's virtual memory."""

    def read_virtual(self, va: int, size: int) -> bytes: ...
