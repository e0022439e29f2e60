"""Kernel state of a 32-bit dump: modules and the register contexts the bug check points at.

Works on anything with ``read_virtual(va, size)``, ``header`` (a DUMP_HEADER32),
``triage`` (or None) and ``warn(text)``: the kernel layer's view of a target.

Contexts (names as for 64-bit dumps):

* ``header``: the header's CONTEXT_i386;
* ``trap_frame``: the KTRAP_FRAME a parameter points at (catalogue role ``trap_frame``: 0x8E P3;
  0x50 / 0xA / 0xD1 have none);
* ``exception``: the CONTEXT record a parameter points at (role ``context``: 0x7E / 0x1000007E P4,
  0x3B P3).
"""
from __future__ import annotations

import struct
from typing import Any, Dict, Optional, Tuple

from ...errors import DumpError
from ...formats.header import ExceptionRecord
from ...kernel.roles import roles_for
from ...model import Context, ModuleList
from .context import (CONTEXT_X86_SIZE, KTRAP_FRAME_X86_SIZE, context_from_bytes32, context_from_trap_frame32,
                      looks_like_context32, looks_like_trap_frame32)
from .modules import triage_modules32, walk_loaded_modules32



def load_modules32(k: Any) -> Tuple[ModuleList, ModuleList]:
    """(loaded, unloaded): the triage driver lists, or PsLoadedModuleList and MmUnloadedDrivers."""
    if k.triage is not None:
        return triage_modules32(k.triage)
    return walk_loaded_modules32(k.read_virtual, k.header.ps_loaded_module_list, k.header.build, k.warn), \
        unloaded_from_kdbg32(k)


MI_UNLOADED32 = 0x18             # MI_UNLOADED_DRIVERS (x86): UNICODE_STRING32, Start, End, CurrentTime
MAX_UNLOADED32 = 50              # the kernel keeps the last 50


def unloaded_from_kdbg32(k: Any) -> ModuleList:
    """MmUnloadedDrivers through a plaintext KDBG (its 64-bit fields hold sign-extended x86 pointers),
    most recent first; an empty list (and a warning when something is wrong) otherwise."""
    from ...formats.header import filetime_to_datetime
    from ...model import Module
    kd = getattr(k, "kdbg", None)
    if kd is None:
        return ModuleList()
    arr_var, last_var = kd.MmUnloadedDrivers, kd.MmLastUnloadedDriver
    if not arr_var:
        return ModuleList()
    try:
        arr = int.from_bytes(k.read_virtual(arr_var & 0xFFFFFFFF, 4), "little")
        if not arr:
            return ModuleList()
        raw = k.read_virtual(arr, MI_UNLOADED32 * MAX_UNLOADED32, zero_fill=True)
        last = int.from_bytes(k.read_virtual(last_var & 0xFFFFFFFF, 4), "little") if last_var else None
    except DumpError as exc:
        k.warn(f"MmUnloadedDrivers unreadable: {exc.message}")
        return ModuleList()
    if last is not None and last <= MAX_UNLOADED32:
        order = [(last - 1 - i) % MAX_UNLOADED32 for i in range(MAX_UNLOADED32)]
    else:
        order = list(range(MAX_UNLOADED32))
    out = []
    for i in order:
        ln, _mx, buf, start, end, when = struct.unpack_from("<HHIIIQ", raw, i * MI_UNLOADED32)
        if not ln or not start or end <= start or start < 0x80000000 or end - start > 0x20000000 or ln > 1024:
            continue
        try:
            name = k.read_virtual(buf, ln).decode("utf-16-le", errors="replace")
        except DumpError:
            name = f"unloaded_{start:x}"
        out.append(Module(name=name, base=start, size=end - start, unloaded=True,
                          unload_time=filetime_to_datetime(when)))
    return ModuleList(out)


def find_contexts32(k: Any) -> Dict[str, Context]:
    out: Dict[str, Context] = {}
    h = k.header
    raw = h.context_record
    if looks_like_context32(raw):
        out["header"] = context_from_bytes32(raw, "header", None, getattr(k, "path", None))
    elif raw[:4] != b"PAGE" and any(raw[:0xCC]):
        k.warn("the header CONTEXT is not an x86 CONTEXT (no CONTEXT_i386 flag or a bad code selector); ignored")
    # which parameter holds a KTRAP_FRAME or a CONTEXT: the catalogue's roles (dumpkit.kernel.roles)
    r = roles_for(h.bugcheck_code)
    for role, what, name in (("trap_frame", "trap", "trap_frame"), ("context", "context", "exception")):
        va = r.value(role, h.bugcheck_parameters)
        if va:
            ctx = _structure_at(k, va, what)
            if ctx is not None:
                out[name] = ctx
    return out


def _structure_at(k: Any, va: int, what: str) -> Optional[Context]:
    try:
        if what == "trap":
            data = k.read_virtual(va, KTRAP_FRAME_X86_SIZE)
            if looks_like_trap_frame32(data) or data[0x6C:0x6E] in (b"\x08\x00", b"\x1b\x00"):
                return context_from_trap_frame32(data, va, getattr(k, "path", None))
            return None
        data = k.read_virtual(va, CONTEXT_X86_SIZE)
    except DumpError:
        return None
    if looks_like_context32(data):
        return context_from_bytes32(data, "exception", va, getattr(k, "path", None))
    return None


def trap_frame_at32(k: Any, address: int) -> Context:
    """``.trap address``: the KTRAP_FRAME there (MemoryReadError when it is not in the dump)."""
    return context_from_trap_frame32(k.read_virtual(address, KTRAP_FRAME_X86_SIZE), address,
                                     getattr(k, "path", None))


def exception_record32(k: Any) -> Optional[ExceptionRecord]:
    """The header's EXCEPTION_RECORD32, or one built from the parameters whose catalogue roles are
    ``exception_code`` and ``ip`` (0x1E, 0x7E, 0x8E, 0x3B ...)."""
    h = k.header
    if h.exception is not None and h.exception.code:
        return h.exception
    r = roles_for(h.bugcheck_code)
    p = h.bugcheck_parameters
    code, ip = r.value("exception_code", p), r.value("ip", p)
    if code and ip is not None:
        return ExceptionRecord(code, 0, 0, ip, ())
    return None


# the ``kernel`` part of the x86 architecture (dumpkit.kernel dispatches to these)
load_modules = load_modules32
find_contexts = find_contexts32
bugcheck_exception_record = exception_record32
