"""Which register contexts a dump offers, by name.

* ``header``: the CONTEXT in the dump header (the CPU that called KeBugCheckEx, or for
  debugger-written dumps the debugger's current context);
* ``prcb``: the context the crashing processor's KPRCB points at (KPRCB + KDBG.OffsetPrcbContext);
* ``cpu0``, ``cpu1``, ...: each processor's saved state (KDBG.KiProcessorBlock[i] -> KPRCB ->
  Context pointer, else KPRCB.ProcessorState.ContextFrame) where the dump holds it;
* ``exception``: the CONTEXT of the fault: the parameter whose catalogue role is ``context``
  (0x7E P4, 0x3B P3, the file-system bug checks' P3 ...), or for an exception bug check with no
  CONTEXT parameter (0x1E) the CONTEXT found on the stack next to the exception (Rip == the ``ip``
  parameter);
* ``trap_frame``: the KTRAP_FRAME of the fault: the ``trap_frame`` parameter (0x8E P3, 0x139 P2),
  or for a page-fault bug check (an ``address`` and the ``ip`` that referenced it: 0xA/0xD1 P4,
  0x50 P3, 0xD5 ...) the frame KiPageFault built, found by scanning the stack for a KTRAP_FRAME
  whose Rip is the faulting IP with a plausible CS/SS/RSP.

Which parameter is what is data: the roles in ``symbols/bugchecks.json``, read by
:mod:`dumpkit.kernel.roles`.  The exception record of the bug check
(:func:`bugcheck_exception_record`) is read from memory where a parameter points at one
(0x7E P3, 0x139 P3) and otherwise built from the parameters (0x1E: P1 code, P2 address, P3/P4
ExceptionInformation; 0x3B/0x8E: P1, P2).
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Dict, Iterator, List, Optional, Tuple

from ..errors import DumpError, MemoryReadError
from ..formats.header import ExceptionRecord
from ..model import Context

if TYPE_CHECKING:  # pragma: no cover
    from .state import Kernel

KDBG_OFFSET_PRCB_CONTEXT = 0x338
KERNEL_MIN = 0xFFFF800000000000
MAX_SCAN = 0x80000                    # bytes of stack scanned for a trap frame / CONTEXT
DEFAULT_STACK_SCAN = 0x8000           # from the header RSP when the thread's stack bounds are unknown
_EXR_HEAD = struct.Struct("<IIQQI")


def _warn(k: "Kernel", text: str) -> None:
    k.warn(text, stacklevel=4)


def _frames(k: "Kernel"):
    """The architecture's frames module (CONTEXT / KTRAP_FRAME layouts and decoders)."""
    return k.arch.part("frames")


def _read_context(k: "Kernel", va: int, source: str) -> Optional[Context]:
    fr = _frames(k)
    try:
        data = k.read_virtual(va, fr.CONTEXT_SIZE)
    except MemoryReadError:
        return None
    if not fr.looks_like_context(data):
        return None
    return fr.context_from_bytes(data, source, va, k.path)


def trap_frame_at(k: "Kernel", va: int) -> Context:
    """Decode the KTRAP_FRAME at ``va`` (any, not only the bug check's).

    Raises MemoryReadError when it is not in the dump.  The Context's ``source`` is
    'trap_frame' and ``valid`` lists the registers a trap frame saves (not r12-r15).
    """
    fr = _frames(k)
    data = k.read_virtual(va, fr.KTRAP_FRAME_SIZE)
    return fr.context_from_trap_frame(data, va, k.path)


def read_trap_frame(k: "Kernel", va: int) -> Optional[Context]:
    try:
        return trap_frame_at(k, va)
    except (MemoryReadError, DumpError):
        return None


def exception_record_at(k: "Kernel", va: int) -> Optional[ExceptionRecord]:
    if getattr(getattr(k, "arch", None), "pointer_size", 8) == 4:     # EXCEPTION_RECORD32
        from ..formats.header32 import exception_record32
        try:
            return exception_record32(k.read_virtual(va, 0x50))
        except MemoryReadError:
            return None
    try:
        data = k.read_virtual(va, 0x98)
    except MemoryReadError:
        return None
    try:
        return ExceptionRecord.from_bytes(data)
    except Exception:  # noqa: BLE001 - construct errors on garbage: not a record
        return None


def plausible_trap_frame(data: bytes, off: int = 0) -> bool:
    """x64: CS/SS are real selectors, EFLAGS has its fixed bit, RSP fits the privilege level
    (kept for callers; the kernel code asks the dump's architecture)."""
    from ..arch.x64.frames import plausible_trap_frame as x64_plausible
    return x64_plausible(data, off)


# -- stack ranges ---------------------------------------------------------------------
def stack_ranges(k: "Kernel") -> List[Tuple[int, int]]:
    """[(start, end)] of the crashing thread's kernel stack that the dump can show."""
    if k.triage is not None:
        out = []
        for start, size, _label in k.memory.captured_ranges("stack"):
            out.append((start, start + min(size, MAX_SCAN)))
        return out
    th = k.thread
    if th is not None and th.stack_limit and th.stack_base and 0 < th.stack_base - th.stack_limit <= MAX_SCAN:
        return [(th.stack_limit, th.stack_base)]
    rsp = k.arch.context_sp(k.facts.context_record)
    if rsp >= k.arch.kernel_min:
        start = rsp & ~0xF
        return [(start, min(start + DEFAULT_STACK_SCAN, 1 << 64))]
    return []


def _stack_buffers(k: "Kernel") -> Iterator[Tuple[int, bytes]]:
    for start, end in stack_ranges(k):
        if end <= start:
            continue
        try:
            yield start, k.read_virtual(start, end - start, zero_fill=True)
        except MemoryReadError:
            continue


def find_trap_frame_for_ip(k: "Kernel", ip: int, fault_address: Optional[int] = None) -> Optional[Context]:
    """Scan the crashing thread's stack for the KTRAP_FRAME whose Rip is ``ip``.

    Candidates must pass :func:`plausible_trap_frame`; one whose FaultAddress equals
    ``fault_address`` (CR2 for page faults) wins; otherwise the lowest (most recent) one.
    """
    if not ip:
        return None
    fr = _frames(k)
    ip_off, fa_off = fr.KTRAP_FRAME.TRAP_IP, fr.KTRAP_FRAME.FAULT_ADDRESS
    want = struct.pack("<Q", ip)
    best: Optional[Tuple[int, bool]] = None
    for base, buf in _stack_buffers(k):
        pos = buf.find(want, ip_off)
        while pos != -1:
            off = pos - ip_off
            if off % 8 == 0 and fr.plausible_trap_frame(buf, off):
                fa = int.from_bytes(buf[off + fa_off:off + fa_off + 8], "little")
                strong = fault_address is not None and fa == fault_address
                va = base + off
                if best is None or (strong and not best[1]):
                    best = (va, strong)
                if strong:
                    break
            pos = buf.find(want, pos + 1)
        if best is not None and best[1]:
            break
    if best is None:
        return None
    return read_trap_frame(k, best[0])


def find_context_for_ip(k: "Kernel", ip: int) -> Optional[Context]:
    """Scan the stack for a CONTEXT record (16-byte aligned) whose Rip is ``ip``."""
    if not ip:
        return None
    fr = _frames(k)
    ip_off, head = fr.CONTEXT_IP, fr.CONTEXT_MIN
    want = struct.pack("<Q", ip)
    for base, buf in _stack_buffers(k):
        pos = buf.find(want, ip_off)
        while pos != -1:
            off = pos - ip_off
            va = base + off
            if va % 16 == 0 and off + head <= len(buf) and fr.looks_like_context(buf[off:off + head]):
                ctx = _read_context(k, va, "exception")
                if ctx is not None:
                    return ctx
            pos = buf.find(want, pos + 1)
    return None


def find_exception_record_for(k: "Kernel", code: int, address: int) -> Optional[Tuple[int, ExceptionRecord]]:
    """(VA, record) of an EXCEPTION_RECORD on the stack with this code and address."""
    want = struct.pack("<Q", address)
    for base, buf in _stack_buffers(k):
        pos = buf.find(want, 0x10)
        while pos != -1:
            off = pos - 0x10
            if (base + off) % 8 == 0 and off + 0x98 <= len(buf):
                c, flags, _rec, _addr, n = _EXR_HEAD.unpack_from(buf, off)
                if c == code & 0xFFFFFFFF and n <= 15 and flags < 0x100:
                    rec = exception_record_at(k, base + off)
                    if rec is not None:
                        return base + off, rec
            pos = buf.find(want, pos + 1)
    return None


# -- processors ---------------------------------------------------------------------------
def _prcb_context_offsets(k: "Kernel") -> Tuple[Optional[int], Optional[int]]:
    """(KPRCB.Context pointer offset, ProcessorState.ContextFrame offset)."""
    kd = k.kdbg
    ptr = frame = None
    if kd is not None:
        ptr = kd.field("OffsetPrcbContext") or None
        frame = kd.field("OffsetPrcbProcStateContext") or None
    if ptr is None or frame is None:
        ch = k.layout
        if ch.layout is not None:
            ptr = ptr or ch.layout.get("kprcb", "Context")
            frame = frame or ch.layout.get("kprcb", "ContextFrame")
    return ptr, frame


def _context_of_prcb(k: "Kernel", prcb_va: int, name: str, ptr_off: Optional[int],
                     frame_off: Optional[int]) -> Optional[Context]:
    if ptr_off:
        try:
            ptr = k.read_u64(prcb_va + ptr_off)
        except MemoryReadError:
            ptr = 0
        if ptr >= k.arch.kernel_min:
            ctx = _read_context(k, ptr, name)
            if ctx is not None:
                return ctx
    if frame_off:
        return _read_context(k, prcb_va + frame_off, name)
    return None


def _triage_prcb_context(k: "Kernel") -> Optional[Context]:
    t = k.triage
    if t is None or not t.fields.get("prcb_offset"):
        return None
    ptr_off, _frame = _prcb_context_offsets(k)
    if not ptr_off:
        return None
    try:
        ptr = k.source.u64(t.fields["prcb_offset"] + ptr_off)
    except DumpError:
        return None
    return _read_context(k, ptr, "prcb") if ptr else None


def processor_contexts(k: "Kernel") -> Dict[str, Context]:
    """'cpu0', 'cpu1', ... for every processor whose saved state is in the dump."""
    from .process import _processor_prcbs
    out: Dict[str, Context] = {}
    ptr_off, frame_off = _prcb_context_offsets(k)
    if not ptr_off and not frame_off:
        return out
    for cpu, prcb in _processor_prcbs(k):
        ctx = _context_of_prcb(k, prcb, f"cpu{cpu}", ptr_off, frame_off)
        if ctx is not None:
            out[f"cpu{cpu}"] = ctx
    return out


# -- the bug check's exception ---------------------------------------------------------------
def _roles(k: "Kernel"):
    from .roles import load_error, roles_for
    err = load_error()
    if err:
        _warn(k, err)
    return roles_for(k.bugcheck.code)


def bugcheck_exception_record(k: "Kernel") -> Optional[ExceptionRecord]:
    """The exception behind the bug check, from memory or from its parameters.

    Which parameter is what comes from the catalogue's roles (:mod:`dumpkit.kernel.roles`): an
    ``exception_record`` parameter is read (its code must match an ``exception_code`` parameter);
    a bug check with an exception code but no CONTEXT or trap frame parameter (0x1E) has its record
    searched for on the stack; otherwise the record is built from the code, the ``ip`` and any
    ExceptionInformation the parameters carry.
    """
    if "kernel" in k.arch.parts:
        return k.arch.part("kernel").bugcheck_exception_record(k)
    r = _roles(k)
    p = k.bugcheck.parameters
    code = r.value("exception_code", p)
    ip = r.value("ip", p)
    va = r.value("exception_record", p)
    if va:
        rec = exception_record_at(k, va)
        if rec is not None and (code is None or rec.code == code & 0xFFFFFFFF):
            return rec
    if code is None or ip is None:
        return None
    if r.scans_for_context:
        found = find_exception_record_for(k, code, ip) if ip else None
        if found is not None:
            return found[1]
        return ExceptionRecord(code & 0xFFFFFFFF, 0, 0, ip, r.exception_information(p))
    if code or ip:
        return ExceptionRecord(code & 0xFFFFFFFF, 0, 0, ip, ())
    return None


def find_contexts(k: "Kernel") -> Dict[str, Context]:
    """Every register context the dump offers (see the module docstring); the bug check's own
    (``exception``, ``trap_frame``) are found where its parameter roles say."""
    if "kernel" in k.arch.parts:              # an architecture with its own structures (x86)
        return k.arch.part("kernel").find_contexts(k)
    out: Dict[str, Context] = {}
    raw = k.facts.context_record
    fr = _frames(k)
    if fr.looks_like_context(raw):
        out["header"] = fr.context_from_bytes(raw, "header", None, k.path)
    prcb = _triage_prcb_context(k)
    if prcb is not None:
        out["prcb"] = prcb
    try:
        cpus = processor_contexts(k)
    except DumpError:
        cpus = {}
    out.update(cpus)
    if "prcb" not in out and "header" in out:
        for ctx in cpus.values():
            if ctx.sp == out["header"].sp and ctx.ip == out["header"].ip:
                out["prcb"] = type(ctx)(ctx.regs, "prcb", ctx.address)
                break

    code = k.bugcheck.base_code
    p = k.bugcheck.parameters
    r = _roles(k)
    ip = r.value("ip", p)
    exc: Optional[Context] = None
    tf: Optional[Context] = None
    cva = r.value("context", p)
    tva = r.value("trap_frame", p)
    if cva:
        exc = _read_context(k, cva, "exception")
    elif r.scans_for_context and ip:
        exc = find_context_for_ip(k, ip)
    if tva:
        tf = read_trap_frame(k, tva)
    elif r.scans_for_trap_frame and ip:
        tf = find_trap_frame_for_ip(k, ip, r.value("address", p))
    if exc is not None:
        out["exception"] = exc
    if tf is not None:
        out["trap_frame"] = tf
    if exc is None and cva and any(p):
        _warn(k, f"bug check {code:#x}: the CONTEXT its parameters point at is not in the dump")
    if tf is None and tva and any(p):
        _warn(k, f"bug check {code:#x}: the KTRAP_FRAME its parameters point at is not in the dump")
    if tf is None and r.scans_for_trap_frame and ip:
        _warn(k, f"bug check {code:#x}: no trap frame with Rip {ip:#x} found on the captured stack")
    if exc is None and r.scans_for_context and ip:
        _warn(k, f"bug check {code:#x}: no CONTEXT with Rip {ip:#x} found on the captured stack; "
                 "the exception record comes from the parameters only")
    return out
