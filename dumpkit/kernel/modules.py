"""Loaded and unloaded kernel modules.

* triage dumps: the DUMP_DRIVER_ENTRY64 list and its string pool, and the unloaded list;
* full/kernel/bitmap dumps: a walk of ``PsLoadedModuleList`` (KLDR_DATA_TABLE_ENTRY) with a
  cycle guard and a count bound, and ``MmUnloadedDrivers`` through the KDBG when readable.

A broken or looping list gives the modules read so far plus a DumpWarning, never a hang.
"""
from __future__ import annotations

import struct
import warnings
from typing import TYPE_CHECKING, List, Optional, Tuple

from ..errors import DumpWarning, MemoryReadError
from ..formats.header import filetime_to_datetime
from ..model import Module, ModuleList

if TYPE_CHECKING:  # pragma: no cover
    from ..dump import Dump

MAX_MODULES = 4096
MAX_NAME_BYTES = 1024
_LIST = struct.Struct("<QQ")
_US = struct.Struct("<HH4xQ")


def _warn(dump: "Dump", text: str) -> None:
    dump.warnings.append(text)
    warnings.warn(DumpWarning(f"{dump.path}: {text}"), stacklevel=4)


def _base_name(name: str) -> str:
    return name.replace("/", "\\").rsplit("\\", 1)[-1]


def load_modules(dump: "Dump") -> Tuple[ModuleList, ModuleList]:
    if dump.triage is not None:
        return _triage_modules(dump)
    return _walk_loaded_modules(dump), _unloaded_from_kdbg(dump)


def _triage_modules(dump: "Dump") -> Tuple[ModuleList, ModuleList]:
    t = dump.triage
    assert t is not None
    mods = []
    for d in t.drivers:
        full = d.name if "\\" in d.name or "/" in d.name else None
        mods.append(Module(name=d.base_name, base=d.base, size=d.size, path=full, timestamp=d.timestamp,
                           checksum=d.checksum))
    unl = [Module(name=u.name, base=u.start, size=max(0, u.end - u.start), unloaded=True) for u in t.unloaded]
    return ModuleList(mods), ModuleList(unl)


def read_unicode_string(dump: "Dump", va: int) -> Optional[str]:
    """A UNICODE_STRING at ``va``; None when its buffer is not readable (paged pool, missing page)."""
    try:
        length, _mx, buf = _US.unpack(dump.read_virtual(va, 16))
    except MemoryReadError:
        return None
    if length == 0 or length > MAX_NAME_BYTES or length & 1 or not buf:
        return None
    try:
        return dump.read_virtual(buf, length).decode("utf-16-le", errors="replace")
    except MemoryReadError:
        return None


def _kldr_timestamp_offset(build: int) -> int:
    # Win10+ _KLDR_DATA_TABLE_ENTRY has TimeDateStamp at 0x9C; Win7/8.1 at 0x80
    return 0x9C if build >= 10240 else 0x80


def _walk_loaded_modules(dump: "Dump") -> ModuleList:
    head = dump.header.ps_loaded_module_list
    if not head:
        _warn(dump, "PsLoadedModuleList is not set in the header: no module list")
        return ModuleList()
    ts_off = _kldr_timestamp_offset(dump.build)
    mods: List[Module] = []
    seen = {head}
    try:
        flink = _LIST.unpack(dump.read_virtual(head, 16))[0]
    except MemoryReadError as exc:
        _warn(dump, f"cannot read PsLoadedModuleList at {head:#x}: {exc.message}")
        return ModuleList()
    while flink != head:
        if flink in seen:
            _warn(dump, f"the loaded-module list loops at {flink:#x} after {len(mods)} entries; stopped there")
            break
        if len(mods) >= MAX_MODULES:
            _warn(dump, f"the loaded-module list has more than {MAX_MODULES} entries; stopped there")
            break
        seen.add(flink)
        try:
            entry = dump.read_virtual(flink, 0xA0)
        except MemoryReadError as exc:
            _warn(dump, f"loaded-module list broken at entry {len(mods)} ({flink:#x}): {exc.message}")
            break
        nxt = int.from_bytes(entry[0:8], "little")
        base = int.from_bytes(entry[0x30:0x38], "little")
        size = int.from_bytes(entry[0x40:0x44], "little")
        checksum = int.from_bytes(entry[0x78:0x7C], "little")
        ts = int.from_bytes(entry[ts_off:ts_off + 4], "little")
        full = read_unicode_string(dump, flink + 0x48)
        base_name = read_unicode_string(dump, flink + 0x58)
        name = base_name or (_base_name(full) if full else f"unknown_{base:x}")
        mods.append(Module(name=name, base=base, size=size, path=full, timestamp=ts, checksum=checksum))
        flink = nxt
    return ModuleList(mods)


# KDDEBUGGER_DATA64 offsets (plaintext copy)
KDBG_MM_UNLOADED_DRIVERS = 0x220
KDBG_MM_LAST_UNLOADED = 0x228
_UNLOADED = struct.Struct("<HH4xQ QQ Q")       # UNICODE_STRING Name, StartAddress, EndAddress, CurrentTime
MAX_UNLOADED = 50


def read_kdbg(dump: "Dump") -> Optional[bytes]:
    """The KDDEBUGGER_DATA64 block if it is readable and not encoded ('KDBG' owner tag)."""
    va = dump.header.kd_debugger_data_block
    if not va:
        return None
    try:
        head = dump.read_virtual(va, 0x18)
    except MemoryReadError:
        return None
    if head[0x10:0x14] != b"KDBG":
        return None
    size = int.from_bytes(head[0x14:0x18], "little")
    size = min(max(size, 0x18), 0x1000)
    try:
        return dump.read_virtual(va, size)
    except MemoryReadError:
        return None


def _unloaded_from_kdbg(dump: "Dump") -> ModuleList:
    kd = read_kdbg(dump)
    if kd is None or len(kd) < KDBG_MM_LAST_UNLOADED + 8:
        return ModuleList()
    try:
        arr_ptr = int.from_bytes(kd[KDBG_MM_UNLOADED_DRIVERS:KDBG_MM_UNLOADED_DRIVERS + 8], "little")
        last_ptr = int.from_bytes(kd[KDBG_MM_LAST_UNLOADED:KDBG_MM_LAST_UNLOADED + 8], "little")
        if not arr_ptr:
            return ModuleList()
        arr = dump.read_u64(arr_ptr)
        if not arr:
            return ModuleList()
        count = dump.read_virtual(last_ptr, 4) if last_ptr else b"\0\0\0\0"
        n = min(int.from_bytes(count, "little"), MAX_UNLOADED)
        out = []
        for i in range(n):
            ln, _mx, buf, start, end, t = _UNLOADED.unpack(dump.read_virtual(arr + i * 0x28, 0x28))
            name = None
            if buf and 0 < ln <= MAX_NAME_BYTES:
                try:
                    name = dump.read_virtual(buf, ln).decode("utf-16-le", errors="replace")
                except MemoryReadError:
                    name = None
            out.append(Module(name=name or f"unloaded_{start:x}", base=start, size=max(0, end - start),
                              unloaded=True, unload_time=filetime_to_datetime(t)))
        return ModuleList(out)
    except MemoryReadError as exc:
        _warn(dump, f"MmUnloadedDrivers unreadable: {exc.message}")
        return ModuleList()
