"""I/O manager objects in a dump: DEVICE_OBJECT, DRIVER_OBJECT, IRP, IO_STACK_LOCATION.

These structures are public (wdm.h) and their layout has not moved since Windows Vista, so
one table per pointer size serves every build.  The offsets are written once, here; they
were checked against PDB-derived headers of ntoskrnl (x64: ``_DEVICE_OBJECT`` 0x150 bytes,
``DriverObject`` +0x8, ``AttachedDevice`` +0x18; ``_DRIVER_OBJECT`` 0x150, ``DriverStart``
+0x18, ``DriverSize`` +0x20, ``DriverName`` +0x38; ``_IRP`` 0xd0, ``StackCount`` +0x42,
``CurrentLocation`` +0x43, ``Tail.Overlay.Thread`` +0x98, ``Tail.Overlay.CurrentStackLocation``
+0xb8; ``_IO_STACK_LOCATION`` 0x48, ``DeviceObject`` +0x28.  x86: 0xb8 / +0x8 / +0x10;
0xa8 / +0xc / +0x10 / +0x1c; 0x70 / +0x22 / +0x23 / +0x50 / +0x60; 0x24 / +0x14), the same
values Vergilius Project and volatility3's symbol tables give.

Every reader checks what it reads (the object's ``Type`` word, that the IRP's current stack
location lies inside the IRP's own stack array, string lengths) and raises
:class:`IoStructureError`, a :class:`~dumpkit.errors.DumpError` naming the address and what
was expected, for memory that is missing or is not the object it should be.

>>> X64.irp.size, X64.irp.current_stack_location, X86.io_stack_location.device_object
(208, 184, 20)
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from ..errors import DumpError

__all__ = ["IoStructureError", "IoLayout", "X64", "X86", "io_layout", "DeviceObject", "DriverObject", "Irp",
           "IoStackLocation", "read_device_object", "read_driver_object", "read_irp", "current_stack_location",
           "device_stack", "IO_TYPE_DEVICE", "IO_TYPE_DRIVER", "IO_TYPE_IRP"]

#: the ``Type`` word the I/O manager writes at offset 0 of its objects (wdm.h IO_TYPE_*)
IO_TYPE_DEVICE = 3
IO_TYPE_DRIVER = 4
IO_TYPE_IRP = 6
_MAX_NAME = 0x400               # bytes of a DriverName buffer read at most (a name is a few dozen)
_MAX_STACK = 32                 # device stacks / IRP stack counts beyond this are corrupt


class IoStructureError(DumpError):
    """An I/O manager object could not be read, or what was read is not that object."""


@dataclass(frozen=True)
class _DeviceObjectLayout:
    size: int
    type: int
    driver_object: int
    next_device: int
    attached_device: int
    current_irp: int
    stack_size: int


@dataclass(frozen=True)
class _DriverObjectLayout:
    size: int
    type: int
    driver_start: int
    driver_size: int
    driver_name: int            # UNICODE_STRING: Length (u16) at +0, Buffer at +pointer size


@dataclass(frozen=True)
class _IrpLayout:
    size: int                   # the IO_STACK_LOCATION array starts right after the IRP
    type: int
    stack_count: int
    current_location: int
    thread: int
    current_stack_location: int


@dataclass(frozen=True)
class _IoStackLocationLayout:
    size: int
    major_function: int
    minor_function: int
    device_object: int


@dataclass(frozen=True)
class IoLayout:
    """The offsets for one pointer size."""

    name: str
    pointer_size: int
    device_object: _DeviceObjectLayout
    driver_object: _DriverObjectLayout
    irp: _IrpLayout
    io_stack_location: _IoStackLocationLayout

    def pointer(self, data: bytes, off: int) -> int:
        fmt = "<Q" if self.pointer_size == 8 else "<I"
        return int(struct.unpack_from(fmt, data, off)[0])


X64 = IoLayout(
    "x64", 8,
    _DeviceObjectLayout(size=0x150, type=0, driver_object=0x08, next_device=0x10, attached_device=0x18,
                        current_irp=0x20, stack_size=0x4C),
    _DriverObjectLayout(size=0x150, type=0, driver_start=0x18, driver_size=0x20, driver_name=0x38),
    _IrpLayout(size=0xD0, type=0, stack_count=0x42, current_location=0x43, thread=0x98,
               current_stack_location=0xB8),
    _IoStackLocationLayout(size=0x48, major_function=0, minor_function=1, device_object=0x28),
)

X86 = IoLayout(
    "x86", 4,
    _DeviceObjectLayout(size=0xB8, type=0, driver_object=0x08, next_device=0x0C, attached_device=0x10,
                        current_irp=0x14, stack_size=0x30),
    _DriverObjectLayout(size=0xA8, type=0, driver_start=0x0C, driver_size=0x10, driver_name=0x1C),
    _IrpLayout(size=0x70, type=0, stack_count=0x22, current_location=0x23, thread=0x50,
               current_stack_location=0x60),
    _IoStackLocationLayout(size=0x24, major_function=0, minor_function=1, device_object=0x14),
)

_LAYOUTS = {"x64": X64, "x86": X86}


def io_layout(arch: Any) -> Optional[IoLayout]:
    """The layout for a dump's architecture (an :class:`~dumpkit.arch` object or its name), or None."""
    name = arch if isinstance(arch, str) else getattr(arch, "name", None)
    return _LAYOUTS.get(str(name))


@dataclass(frozen=True)
class DeviceObject:
    address: int
    driver_object: int
    next_device: int
    attached_device: int
    current_irp: int
    stack_size: int


@dataclass(frozen=True)
class DriverObject:
    address: int
    name: str                   # '\\Driver\\pci' as stored ('' when the buffer is not in the dump)
    start: int
    size: int

    @property
    def short_name(self) -> str:
        """The last path element of DriverName: ``\\Driver\\RtsPer`` -> ``RtsPer``."""
        return self.name.replace("/", "\\").rstrip("\\").rsplit("\\", 1)[-1]


@dataclass(frozen=True)
class IoStackLocation:
    address: int
    index: int                  # 1-based, as IRP.CurrentLocation counts
    major_function: int
    minor_function: int
    device_object: int


@dataclass(frozen=True)
class Irp:
    address: int
    stack_count: int
    current_location: int
    thread: int
    current_stack_location: int


def _read(k: Any, va: int, size: int, what: str) -> bytes:
    if not va:
        raise IoStructureError(f"{what}: NULL pointer", expected=what)
    try:
        data = k.read_virtual(va, size)
    except DumpError as exc:
        raise IoStructureError(f"{what} at {va:#x} is not in the dump ({exc})", expected=what) from None
    if len(data) < size:
        raise IoStructureError(f"{what} at {va:#x}: {len(data)} of {size} bytes", expected=what)
    return data


def _read_typed(k: Any, va: int, size: int, type_off: int, what: str, want: int, type_name: str) -> bytes:
    """``size`` bytes of the ``what`` object at ``va``, whose Type word (at ``type_off``) must be ``want``."""
    data = _read(k, va, size, what)
    t = int(struct.unpack_from("<h", data, type_off)[0])
    if t != want:
        raise IoStructureError(f"{what} at {va:#x}: Type is {t}, not {want}", expected=f"Type {want} ({type_name})")
    return data


def _layout(k: Any) -> IoLayout:
    lay = io_layout(getattr(k, "arch", None))
    if lay is None:
        name = getattr(getattr(k, "arch", None), "name", "?")
        raise IoStructureError(f"no I/O structure layout for the {name} architecture", expected="x64 or x86")
    return lay


def read_device_object(k: Any, va: int) -> DeviceObject:
    """The DEVICE_OBJECT at ``va`` (its Type must be IO_TYPE_DEVICE)."""
    lay = _layout(k)
    d = lay.device_object
    data = _read_typed(k, va, d.size, d.type, "DEVICE_OBJECT", IO_TYPE_DEVICE, "IO_TYPE_DEVICE")
    p = lay.pointer
    return DeviceObject(va, p(data, d.driver_object), p(data, d.next_device), p(data, d.attached_device),
                        p(data, d.current_irp), data[d.stack_size])


def read_driver_object(k: Any, va: int) -> DriverObject:
    """The DRIVER_OBJECT at ``va`` with its DriverName (Type must be IO_TYPE_DRIVER)."""
    lay = _layout(k)
    d = lay.driver_object
    data = _read_typed(k, va, d.size, d.type, "DRIVER_OBJECT", IO_TYPE_DRIVER, "IO_TYPE_DRIVER")
    start = lay.pointer(data, d.driver_start)
    size = int(struct.unpack_from("<I", data, d.driver_size)[0])
    length = int(struct.unpack_from("<H", data, d.driver_name)[0])
    buf = lay.pointer(data, d.driver_name + lay.pointer_size)
    name = ""
    if length and buf and length % 2 == 0 and length <= _MAX_NAME:
        try:
            raw = k.read_virtual(buf, length)
            name = raw.decode("utf-16-le", errors="replace").split("\0", 1)[0]
        except DumpError:
            name = ""
    return DriverObject(va, name, start, size)


def read_irp(k: Any, va: int) -> Irp:
    """The IRP at ``va`` (Type IO_TYPE_IRP, a sane StackCount)."""
    lay = _layout(k)
    r = lay.irp
    data = _read_typed(k, va, r.size, r.type, "IRP", IO_TYPE_IRP, "IO_TYPE_IRP")
    count = struct.unpack_from("<b", data, r.stack_count)[0]
    cur = struct.unpack_from("<b", data, r.current_location)[0]
    if not 0 < count <= _MAX_STACK:
        raise IoStructureError(f"IRP at {va:#x}: StackCount {count} is not 1..{_MAX_STACK}",
                               expected="a StackCount of 1..32")
    return Irp(va, count, cur, lay.pointer(data, r.thread), lay.pointer(data, r.current_stack_location))


def current_stack_location(k: Any, irp: Irp) -> IoStackLocation:
    """The IRP's current IO_STACK_LOCATION (the driver that holds the IRP).

    The location must be one of the IRP's own (the array right after the IRP, StackCount
    entries) and agree with CurrentLocation; a completed or not yet sent IRP has none.
    """
    lay = _layout(k)
    s = lay.io_stack_location
    if not 1 <= irp.current_location <= irp.stack_count:
        raise IoStructureError(f"IRP at {irp.address:#x}: CurrentLocation {irp.current_location} is outside its "
                               f"{irp.stack_count} stack locations (the IRP is completed or not sent)",
                               expected=f"CurrentLocation 1..{irp.stack_count}")
    first = irp.address + lay.irp.size
    want = first + (irp.current_location - 1) * s.size
    if irp.current_stack_location != want:
        raise IoStructureError(f"IRP at {irp.address:#x}: CurrentStackLocation {irp.current_stack_location:#x} "
                               f"is not stack location {irp.current_location} ({want:#x})",
                               expected=f"CurrentStackLocation {want:#x}")
    data = _read(k, want, s.size, "IO_STACK_LOCATION")
    return IoStackLocation(want, irp.current_location, data[s.major_function], data[s.minor_function],
                           lay.pointer(data, s.device_object))


def device_stack(k: Any, pdo: int, limit: int = _MAX_STACK) -> Tuple[List[DeviceObject], Optional[str]]:
    """The device objects from ``pdo`` up its AttachedDevice chain (bottom first), and why the walk
    stopped early (a loop, an unreadable object, the length limit), or None when it reached the top."""
    out: List[DeviceObject] = []
    seen = set()
    va = pdo
    while va:
        if va in seen:
            return out, f"the AttachedDevice chain loops back to {va:#x}"
        if len(out) >= limit:
            return out, f"the AttachedDevice chain is longer than {limit} devices"
        seen.add(va)
        try:
            dev = read_device_object(k, va)
        except IoStructureError as exc:
            return out, str(exc)
        out.append(dev)
        va = dev.attached_device
    return out, None
