"""Loaded and unloaded kernel modules.

* triage dumps: the DUMP_DRIVER_ENTRY64 list and its string pool, and the unloaded list;
* full/kernel/bitmap dumps: a walk of ``PsLoadedModuleList`` (KLDR_DATA_TABLE_ENTRY) with a
  cycle guard, a count bound and per-entry sanity checks, and ``MmUnloadedDrivers`` through
  the KDBG when it is readable (plaintext).

A broken or looping list gives the modules read so far plus a DumpWarning, never a hang.
"""
from __future__ import annotations

import struct
from typing import TYPE_CHECKING, List, Optional, Tuple

from ..errors import MemoryReadError
from ..formats.header import filetime_to_datetime
from ..model import Module, ModuleList
from .layouts import kldr_timestamp_offset

if TYPE_CHECKING:  # pragma: no cover
    from ..formats.triage import TriageDump
    from .state import Kernel

MAX_MODULES = 4096
MAX_NAME_BYTES = 1024
MAX_IMAGE_SIZE = 0x40000000          # 1 GiB: larger than any real driver image
KERNEL_MIN = 0xFFFF800000000000
KLDR_READ = 0xA0                     # through TimeDateStamp (0x9C) on Windows 10+
_LIST = struct.Struct("<QQ")
_US = struct.Struct("<HH4xQ")
_KLDR = struct.Struct("<QQ 32x QQI4x 16s16s 8x 8x I")   # links, DllBase, EntryPoint, SizeOfImage, names, CheckSum


def _warn(k: "Kernel", text: str) -> None:
    k.warn(text, stacklevel=4)


def _base_name(name: str) -> str:
    return name.replace("/", "\\").rsplit("\\", 1)[-1]


def load_modules(k: "Kernel") -> Tuple[ModuleList, ModuleList]:
    """(loaded, unloaded) for any dump type."""
    if "kernel" in k.arch.parts:              # an architecture with its own structures (x86: 32-bit lists)
        return k.arch.part("kernel").load_modules(k)
    if k.triage is not None:
        return _triage_modules(k)
    return _walk_loaded_modules(k), _unloaded_from_kdbg(k)


def _triage_modules(k: "Kernel") -> Tuple[ModuleList, ModuleList]:
    t = k.triage
    assert t is not None
    return modules_from_triage(t)


def modules_from_triage(t: "TriageDump") -> Tuple[ModuleList, ModuleList]:
    """(loaded, unloaded) from a triage body's driver and unloaded-driver lists (64- or 32-bit)."""
    mods = []
    for d in t.drivers:
        full = d.name if "\\" in d.name or "/" in d.name else None
        mods.append(Module(name=d.base_name, base=d.base, size=d.size, path=full, timestamp=d.timestamp,
                           checksum=d.checksum))
    unl = [Module(name=u.name, base=u.start, size=max(0, u.end - u.start), unloaded=True) for u in t.unloaded]
    return ModuleList(mods), ModuleList(unl)


def read_unicode_string(k: "Kernel", va: int) -> Optional[str]:
    """A UNICODE_STRING at ``va``; None when its buffer is not readable (paged pool, missing page)."""
    try:
        raw = k.read_virtual(va, 16)
    except MemoryReadError:
        return None
    return _unicode_from(k, raw)


def _unicode_from(k: "Kernel", raw16: bytes) -> Optional[str]:
    length, _mx, buf = _US.unpack(raw16)
    if length == 0 or length > MAX_NAME_BYTES or length & 1 or not buf:
        return None
    try:
        return k.read_virtual(buf, length).decode("utf-16-le", errors="replace")
    except MemoryReadError:
        return None


def pe_header_facts(k: "Kernel", base: int) -> Optional[Tuple[int, int]]:
    """(TimeDateStamp, SizeOfImage) from the MZ/PE header mapped at ``base``, or None when
    the header page is not in the dump or is not a PE32+ header."""
    try:
        mz = k.read_virtual(base, 0x40)
    except MemoryReadError:
        return None
    if mz[:2] != b"MZ":
        return None
    lfanew = int.from_bytes(mz[0x3C:0x40], "little")
    if not 0x40 <= lfanew <= 0x800:
        return None
    try:
        nt = k.read_virtual(base + lfanew, 0x18 + 0x40)
    except MemoryReadError:
        return None
    if nt[:4] != b"PE\0\0" or int.from_bytes(nt[0x18:0x1A], "little") != 0x20B:
        return None
    ts = int.from_bytes(nt[8:12], "little")
    size = int.from_bytes(nt[0x18 + 56:0x18 + 60], "little")
    return ts, size


def _walk_loaded_modules(k: "Kernel") -> ModuleList:
    head = k.facts.ps_loaded_module_list
    if not head:
        kd = k.kdbg
        head = kd.PsLoadedModuleList if kd is not None else None
        if head:
            _warn(k, "PsLoadedModuleList is not set in the header; using the KDBG's copy")
    if not head:
        _warn(k, "PsLoadedModuleList is not set in the header: no module list")
        return ModuleList()
    ts_off = kldr_timestamp_offset(k.build)
    mods: List[Module] = []
    seen = {head}
    pe_notes: List[str] = []
    try:
        flink = _LIST.unpack(k.read_virtual(head, 16))[0]
    except MemoryReadError as exc:
        _warn(k, f"cannot read PsLoadedModuleList at {head:#x}: {exc.message}")
        return ModuleList()
    while flink != head:
        where = f"loaded-module list entry {len(mods)} at {flink:#x}"
        if flink in seen:
            _warn(k, f"the loaded-module list loops at {flink:#x} after {len(mods)} entries; stopped there")
            break
        if len(mods) >= MAX_MODULES:
            _warn(k, f"the loaded-module list has more than {MAX_MODULES} entries; stopped there")
            break
        seen.add(flink)
        try:
            entry = k.read_virtual(flink, KLDR_READ)
        except MemoryReadError as exc:
            _warn(k, f"loaded-module list broken at {where}: {exc.message}; {len(mods)} modules read")
            break
        nxt, _blink, base, _entry_point, size, full_us, base_us, checksum = _KLDR.unpack_from(entry, 0)
        if base & 0xFFF or base < KERNEL_MIN:
            _warn(k, f"{where}: DllBase {base:#x} is not a page-aligned kernel address; the list looks "
                        f"corrupt there, stopped after {len(mods)} modules")
            break
        if not 0 < size <= MAX_IMAGE_SIZE:
            _warn(k, f"{where}: SizeOfImage {size:#x} is implausible; the list looks corrupt there, "
                        f"stopped after {len(mods)} modules")
            break
        ts = int.from_bytes(entry[ts_off:ts_off + 4], "little")
        full = _unicode_from(k, full_us)
        base_name = _unicode_from(k, base_us)
        name = base_name or (_base_name(full) if full else f"unknown_{base:x}")
        pe = pe_header_facts(k, base)
        if pe is not None:
            pe_ts, pe_size = pe
            if pe_ts != ts:
                pe_notes.append(f"{name}: entry TimeDateStamp {ts:#x}, PE header {pe_ts:#x}")
                ts = pe_ts                       # the image itself is the authority
            if pe_size and pe_size != size:
                pe_notes.append(f"{name}: entry SizeOfImage {size:#x}, PE header {pe_size:#x}")
        mods.append(Module(name=name, base=base, size=size, path=full, timestamp=ts, checksum=checksum))
        flink = nxt
    if pe_notes:
        more = f" (and {len(pe_notes) - 3} more)" if len(pe_notes) > 3 else ""
        _warn(k, "loaded-module entries disagree with the PE headers in memory (PE values kept for "
                    "TimeDateStamp): " + "; ".join(pe_notes[:3]) + more)
    return ModuleList(mods)


# MmUnloadedDrivers: a ring of MI_UNLOADED_DRIVERS {UNICODE_STRING Name; StartAddress; EndAddress; CurrentTime}
_UNLOADED = struct.Struct("<16sQQQ")
UNLOADED_ENTRY = 0x28
MAX_UNLOADED = 50                    # the kernel keeps the last 50 (MI_UNLOADED_DRIVERS)


def _unloaded_from_kdbg(k: "Kernel") -> ModuleList:
    kd = k.kdbg
    if kd is None:
        res = k.kdbg_result
        if res.status != "absent":
            _warn(k, f"unloaded drivers not available: {res.reason}")
        return ModuleList()
    arr_var = kd.MmUnloadedDrivers
    last_var = kd.MmLastUnloadedDriver
    if not arr_var:
        return ModuleList()
    try:
        arr = k.read_u64(arr_var)
    except MemoryReadError as exc:
        _warn(k, f"MmUnloadedDrivers unreadable: {exc.message}")
        return ModuleList()
    if not arr:
        return ModuleList()                # nothing unloaded since boot
    last = None
    if last_var:
        try:
            last = int.from_bytes(k.read_virtual(last_var, 4), "little")
        except MemoryReadError:
            last = None
    try:
        raw = k.read_virtual(arr, UNLOADED_ENTRY * MAX_UNLOADED)
    except MemoryReadError as exc:
        _warn(k, f"the MmUnloadedDrivers array at {arr:#x} is unreadable: {exc.message}")
        return ModuleList()
    if last is not None and last <= MAX_UNLOADED:
        order = [(last - 1 - i) % MAX_UNLOADED for i in range(MAX_UNLOADED)]    # most recent first
    else:
        if last is not None:
            _warn(k, f"MmLastUnloadedDriver is {last}, beyond the {MAX_UNLOADED}-entry ring; "
                        "unloaded drivers listed in array order")
        order = list(range(MAX_UNLOADED))
    out = []
    for i in order:
        name_us, start, end, t = _UNLOADED.unpack_from(raw, i * UNLOADED_ENTRY)
        length = int.from_bytes(name_us[:2], "little")
        if length == 0 or not start or end <= start or start < KERNEL_MIN or end - start > MAX_IMAGE_SIZE:
            continue
        name = _unicode_from(k, name_us)
        out.append(Module(name=name or f"unloaded_{start:x}", base=start, size=end - start,
                          unloaded=True, unload_time=filetime_to_datetime(t)))
    return ModuleList(out)


# kept for callers of the first version: the plaintext KDBG bytes or None
def read_kdbg(k: "Kernel") -> Optional[bytes]:
    """The KDDEBUGGER_DATA64 bytes if it is readable and not encoded ('KDBG' owner tag)."""
    kd = k.kdbg
    return None if kd is None else kd.raw
