"""Which register contexts a dump offers, by name.

* ``header``: the CONTEXT in the dump header (the CPU that called KeBugCheckEx, or for
  debugger-written dumps the debugger's current context);
* ``prcb``: the context the crashing processor's KPRCB points at (triage data block);
* ``exception``: the context the bug check parameters point at, per family:
  0x7E/0x8E with a CONTEXT (P4), 0x3B (P3), 0x1E (exception record in the parameters),
  0xA/0xD1/0x50 and 0x8E via a trap frame.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Dict, Optional

from ..errors import DumpError, DumpWarning, MemoryReadError
from ..formats.header import ExceptionRecord
from ..model import Context
from .context import CONTEXT_SIZE, KTRAP_FRAME_SIZE, context_from_bytes, context_from_trap_frame, looks_like_context

if TYPE_CHECKING:  # pragma: no cover
    from ..dump import Dump

KDBG_OFFSET_PRCB_CONTEXT = 0x338


def _read_context(dump: "Dump", va: int, source: str) -> Optional[Context]:
    try:
        data = dump.read_virtual(va, CONTEXT_SIZE)
    except MemoryReadError:
        return None
    if not looks_like_context(data):
        return None
    return context_from_bytes(data, source, va, dump.path)


def read_trap_frame(dump: "Dump", va: int) -> Optional[Context]:
    try:
        return context_from_trap_frame(dump.read_virtual(va, KTRAP_FRAME_SIZE), va, dump.path)
    except (MemoryReadError, DumpError):
        return None


def exception_record_at(dump: "Dump", va: int) -> Optional[ExceptionRecord]:
    try:
        return ExceptionRecord.from_bytes(dump.read_virtual(va, 0x98))
    except MemoryReadError:
        return None


def _prcb_context(dump: "Dump") -> Optional[Context]:
    t = dump.triage
    if t is None or not t.fields.get("prcb_offset"):
        return None
    from .modules import read_kdbg
    kd = read_kdbg(dump)
    if kd is None or len(kd) < KDBG_OFFSET_PRCB_CONTEXT + 2:
        return None
    off = int.from_bytes(kd[KDBG_OFFSET_PRCB_CONTEXT:KDBG_OFFSET_PRCB_CONTEXT + 2], "little")
    try:
        ptr = dump.source.u64(t.fields["prcb_offset"] + off)
    except DumpError:
        return None
    return _read_context(dump, ptr, "prcb") if ptr else None


def find_contexts(dump: "Dump") -> Dict[str, Context]:
    out: Dict[str, Context] = {}
    raw = dump.header.context_record
    if looks_like_context(raw):
        out["header"] = context_from_bytes(raw, "header", None, dump.path)
    prcb = _prcb_context(dump)
    if prcb is not None:
        out["prcb"] = prcb
    code = dump.bugcheck.base_code
    p = dump.bugcheck.parameters
    exc: Optional[Context] = None
    if code in (0x7E, 0x8E) and p[3]:
        exc = _read_context(dump, p[3], "exception")
    if exc is None and code == 0x3B and p[2]:
        exc = _read_context(dump, p[2], "exception")
    if exc is None and code == 0x8E and p[2]:
        tf = read_trap_frame(dump, p[2])
        if tf is not None:
            out["trap_frame"] = tf
    if exc is None and code == 0x139 and p[1]:
        tf = read_trap_frame(dump, p[1])
        if tf is not None:
            out["trap_frame"] = tf
    if exc is not None:
        out["exception"] = exc
    elif code in (0x7E, 0x8E, 0x3B) and any(p):
        msg = f"bug check {code:#x}: the CONTEXT its parameters point at is not in the dump"
        dump.warnings.append(msg)
        warnings.warn(DumpWarning(f"{dump.path}: {msg}"), stacklevel=3)
    return out
