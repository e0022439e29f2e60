"""Loaded and unloaded modules of a 32-bit dump.

* triage: the DUMP_DRIVER_ENTRY32 list with its string pool, and the unloaded-driver list;
* full/kernel/bitmap: a walk of ``PsLoadedModuleList`` through KLDR_DATA_TABLE_ENTRY32
  (Flink 0x0, DllBase 0x18, EntryPoint 0x1C, SizeOfImage 0x20, FullDllName 0x24,
  BaseDllName 0x2C, CheckSum 0x40, TimeDateStamp 0x44 before Windows 10 / 0x58 from build
  10240), with a visited set, a count bound and per-entry sanity checks.  The PE header in
  memory, when readable, is the authority for TimeDateStamp and SizeOfImage.

A broken or looping list gives the modules read so far plus a warning, never a hang.
"""
from __future__ import annotations

import struct
from typing import Callable, List, Optional, Tuple

from ...errors import MemoryReadError
from ...kernel.modules import modules_from_triage
from ...model import Module, ModuleList

MAX_MODULES = 4096
MAX_NAME_BYTES = 1024
MAX_IMAGE_SIZE = 0x20000000
KERNEL_MIN32 = 0x80000000
KLDR32_READ = 0x5C
_US32 = struct.Struct("<HHI")


def kldr32_timestamp_offset(build: int) -> int:
    return 0x58 if build >= 10240 else 0x44


def _base_name(name: str) -> str:
    return name.replace("/", "\\").rsplit("\\", 1)[-1]


def triage_modules32(triage) -> Tuple[ModuleList, ModuleList]:
    """(loaded, unloaded) from the TRIAGE_DUMP32 lists: the same reading as the 64-bit body's."""
    return modules_from_triage(triage)


def _unicode32(read: Callable[[int, int], bytes], raw8: bytes) -> Optional[str]:
    length, _mx, buf = _US32.unpack(raw8)
    if length == 0 or length > MAX_NAME_BYTES or length & 1 or not buf:
        return None
    try:
        return read(buf, length).decode("utf-16-le", errors="replace")
    except MemoryReadError:
        return None


def pe32_header_facts(read: Callable[[int, int], bytes], base: int) -> Optional[Tuple[int, int]]:
    """(TimeDateStamp, SizeOfImage) of the PE32 header mapped at ``base``, or None."""
    try:
        mz = read(base, 0x40)
        if mz[:2] != b"MZ":
            return None
        lfanew = int.from_bytes(mz[0x3C:0x40], "little")
        if not 0x40 <= lfanew <= 0x800:
            return None
        nt = read(base + lfanew, 0x18 + 0x40)
    except MemoryReadError:
        return None
    if nt[:4] != b"PE\0\0" or int.from_bytes(nt[0x18:0x1A], "little") != 0x10B:
        return None
    return int.from_bytes(nt[8:12], "little"), int.from_bytes(nt[0x18 + 56:0x18 + 60], "little")


def walk_loaded_modules32(read: Callable[[int, int], bytes], head: Optional[int], build: int,
                          warn: Callable[[str], None]) -> ModuleList:
    if not head:
        warn("PsLoadedModuleList is not set in the header: no module list")
        return ModuleList()
    ts_off = kldr32_timestamp_offset(build)
    mods: List[Module] = []
    seen = {head}
    try:
        flink = struct.unpack("<I", read(head, 4))[0]
    except MemoryReadError as exc:
        warn(f"cannot read PsLoadedModuleList at {head:#010x}: {exc.message}")
        return ModuleList()
    while flink != head:
        where = f"loaded-module list entry {len(mods)} at {flink:#010x}"
        if flink in seen:
            warn(f"the loaded-module list loops at {flink:#010x} after {len(mods)} entries; stopped there")
            break
        if len(mods) >= MAX_MODULES:
            warn(f"the loaded-module list has more than {MAX_MODULES} entries; stopped there")
            break
        seen.add(flink)
        try:
            e = read(flink, KLDR32_READ)
        except MemoryReadError as exc:
            warn(f"loaded-module list broken at {where}: {exc.message}; {len(mods)} modules read")
            break
        nxt = struct.unpack_from("<I", e, 0)[0]
        base, _ep, size = struct.unpack_from("<III", e, 0x18)
        if base & 0xFFF or base < KERNEL_MIN32:
            warn(f"{where}: DllBase {base:#010x} is not a page-aligned kernel address; the list looks corrupt "
                 f"there, stopped after {len(mods)} modules")
            break
        if not 0 < size <= MAX_IMAGE_SIZE:
            warn(f"{where}: SizeOfImage {size:#x} is implausible; stopped after {len(mods)} modules")
            break
        checksum = struct.unpack_from("<I", e, 0x40)[0]
        ts = struct.unpack_from("<I", e, ts_off)[0]
        full = _unicode32(read, e[0x24:0x2C])
        bname = _unicode32(read, e[0x2C:0x34])
        name = bname or (_base_name(full) if full else f"unknown_{base:x}")
        pe = pe32_header_facts(read, base)
        if pe is not None:
            ts = pe[0]
            if pe[1] and pe[1] != size:
                warn(f"{name}: entry SizeOfImage {size:#x}, PE header {pe[1]:#x}")
        mods.append(Module(name=name, base=base, size=size, path=full, timestamp=ts, checksum=checksum))
        flink = nxt
    return ModuleList(mods)
