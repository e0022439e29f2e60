"""x86 frame data from PDBs: FPO_DATA (the old "FPO" debug stream) and FRAMEDATA ("new FPO").

* ``FPO_DATA`` (16 bytes): RVA, code size, locals (dwords), params (dwords), then a u16 of
  bit fields: prolog bytes (8), saved registers (3), has SEH (1), uses EBP (1), reserved (1),
  frame type (2: 0 FPO, 1 trap, 2 TSS, 3 non-FPO).  Real x86 kernels mark their trap
  handlers (``KiTrap0E``...) with frame type 1.
* ``FRAMEDATA`` (32 bytes): RVA, code size, locals, params, max stack, program string (an
  offset in the PDB's ``/names`` string table), prolog bytes (u16), saved-register bytes
  (u16), flags (SEH 1, C++ EH 2, function start 4).  The program is a postfix expression
  that recovers the caller's registers, e.g. ``$T0 .raSearch = $eip $T0 ^ = $esp $T0 4 + =``.

:class:`FrameDataTable` finds the record for an RVA (the one with the greatest start that
still covers it: compilers emit one record per prolog step) and :func:`evaluate_program`
runs a program with bounded tokens and stack.  Layouts and sources: ``docs/dump-formats.md``.
"""
from __future__ import annotations

import bisect
import struct
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple, Union

from ...errors import PdbError, UnwindError

DBG_FPO = 0
DBG_NEW_FPO = 9
FRAME_FPO, FRAME_TRAP, FRAME_TSS, FRAME_NONFPO = 0, 1, 2, 3
_FPO = struct.Struct("<IIIHH")
_FRAMEDATA = struct.Struct("<IIIIIIHHI")
assert _FPO.size == 16 and _FRAMEDATA.size == 32
MAX_RECORDS = 1 << 20
MAX_TOKENS = 256
MAX_STACK = 64


class FpoData(NamedTuple):
    rva: int
    size: int
    locals: int          # bytes
    params: int          # bytes
    prolog: int
    saved_regs: int      # number of registers pushed
    has_seh: bool
    uses_bp: bool
    frame_type: int


class FrameData(NamedTuple):
    rva: int
    size: int
    locals: int
    params: int
    max_stack: int
    program: Optional[str]
    prolog: int
    saved_regs: int      # bytes
    flags: int

    @property
    def function_start(self) -> bool:
        return bool(self.flags & 4)


Record = Union[FpoData, FrameData]


def parse_fpo_stream(data: bytes) -> List[FpoData]:
    n = min(len(data) // _FPO.size, MAX_RECORDS)
    out = []
    for i in range(n):
        rva, size, locs, params, bits = _FPO.unpack_from(data, i * _FPO.size)
        out.append(FpoData(rva, size, locs * 4, params * 4, bits & 0xFF, (bits >> 8) & 7, bool(bits >> 11 & 1),
                           bool(bits >> 12 & 1), (bits >> 14) & 3))
    return out


def parse_names(data: bytes) -> Callable[[int], Optional[str]]:
    """The PDB ``/names`` stream: u32 signature 0xEFFEEFFE, u32 version, u32 size, strings."""
    if len(data) < 12 or struct.unpack_from("<I", data, 0)[0] != 0xEFFEEFFE:
        return lambda off: None
    size = struct.unpack_from("<I", data, 8)[0]
    buf = data[12:12 + size]

    def get(off: int) -> Optional[str]:
        if not 0 <= off < len(buf):
            return None
        end = buf.find(b"\0", off, off + 4096)
        if end < 0:
            return None
        return buf[off:end].decode("latin-1")
    return get


def parse_framedata_stream(data: bytes, names: Callable[[int], Optional[str]]) -> List[FrameData]:
    n = min(len(data) // _FRAMEDATA.size, MAX_RECORDS)
    out = []
    for i in range(n):
        rva, size, locs, params, mx, prog, prolog, saved, flags = _FRAMEDATA.unpack_from(data, i * _FRAMEDATA.size)
        out.append(FrameData(rva, size, locs, params, mx, names(prog), prolog, saved, flags))
    return out


class FrameDataTable:
    """FPO_DATA and FRAMEDATA records of one image, looked up by RVA (FRAMEDATA preferred)."""

    def __init__(self, fpo: List[FpoData] = (), frame_data: List[FrameData] = ()) -> None:  # type: ignore[assignment]
        self._tables = []
        for recs in (sorted(frame_data, key=lambda r: r.rva), sorted(fpo, key=lambda r: r.rva)):
            self._tables.append((recs, [r.rva for r in recs]))

    def __len__(self) -> int:
        return sum(len(t[0]) for t in self._tables)

    def lookup(self, rva: int) -> Optional[Record]:
        for recs, starts in self._tables:
            i = bisect.bisect_right(starts, rva) - 1
            # records overlap (one per prolog step): the greatest start covering rva wins
            for j in range(i, max(-1, i - 64), -1):
                r = recs[j]
                if r.rva <= rva < r.rva + r.size:
                    return r
        return None

    @classmethod
    def from_pdb(cls, pdb) -> "FrameDataTable":
        """Read both streams from a :class:`dumpkit.symbolize.pdb.Pdb` (either may be absent)."""
        fpo: List[FpoData] = []
        fd: List[FrameData] = []
        try:
            raw = pdb.debug_stream_data(DBG_FPO)
            if raw:
                fpo = parse_fpo_stream(raw)
            raw = pdb.debug_stream_data(DBG_NEW_FPO)
            if raw:
                ns = pdb.named_streams.get("/names")
                names = parse_names(pdb.msf.stream(ns, "/names")) if ns is not None and pdb.msf.has_stream(ns) \
                    else (lambda off: None)
                fd = parse_framedata_stream(raw, names)
        except PdbError:
            pass
        return cls(fpo, fd)


_BINOPS = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: a // b if b else None, "%": lambda a, b: a % b if b else None,
           "@": lambda a, b: a & ~(b - 1) if b > 0 else None}


def evaluate_program(program: str, variables: Dict[str, int], read_u32: Callable[[int], Optional[int]]) -> \
        Tuple[Dict[str, int], Set[str]]:
    """Run a FRAMEDATA program over ``variables`` (``$esp``, ``$ebp``, ``.raSearch`` ...).

    Returns the variables after the assignments and the names assigned (``$eip``,
    ``$esp``, ``$ebp``, saved registers).  Malformed programs and unreadable memory raise :class:`UnwindError`.
    """
    toks = program.split()
    if len(toks) > MAX_TOKENS:
        raise UnwindError(f"frame-data program of {len(toks)} tokens is implausible")
    env = dict(variables)
    assigned: Set[str] = set()
    stack: List[Union[int, str]] = []

    def value(t: Union[int, str]) -> int:
        if isinstance(t, int):
            return t
        if t in env:
            return env[t]
        raise UnwindError(f"frame-data program reads {t!r}, which is not set")

    for t in toks:
        if t in _BINOPS:
            if len(stack) < 2:
                raise UnwindError(f"frame-data program {program!r}: {t!r} needs two operands")
            b, a = value(stack.pop()), value(stack.pop())
            r = _BINOPS[t](a, b)
            if r is None:
                raise UnwindError(f"frame-data program {program!r}: bad operand for {t!r}")
            stack.append(r & 0xFFFFFFFF)
        elif t == "^":
            if not stack:
                raise UnwindError(f"frame-data program {program!r}: '^' needs an operand")
            addr = value(stack.pop())
            v = read_u32(addr)
            if v is None:
                raise UnwindError(f"frame-data program: memory at {addr:#010x} is not readable")
            stack.append(v)
        elif t == "=":
            if len(stack) < 2:
                raise UnwindError(f"frame-data program {program!r}: '=' needs two operands")
            v = value(stack.pop())
            name = stack.pop()
            if not isinstance(name, str) or not name.startswith("$"):
                raise UnwindError(f"frame-data program {program!r}: cannot assign to {name!r}")
            env[name] = v
            assigned.add(name)
        else:
            if len(stack) >= MAX_STACK:
                raise UnwindError("frame-data program stack overflow")
            if t[0] in "$.":
                stack.append(t)
            else:
                try:
                    stack.append(int(t, 0) & 0xFFFFFFFF)
                except ValueError:
                    raise UnwindError(f"frame-data program {program!r}: unknown token {t!r}") from None
    return env, assigned
