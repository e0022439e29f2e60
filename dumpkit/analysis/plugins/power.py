"""0x9F DRIVER_POWER_STATE_FAILURE: the device stack of the blocked power IRP.

Subtype 3 (a device object has blocked an IRP too long): P2 is the physical device object
(PDO) of the stack, P4 the blocked IRP.  WinDbg's modern engine buckets it as
``0x9F_3_<driver the IRP is pending in>_IMAGE_<image of the PDO's driver>`` with MODULE_NAME
and IMAGE_NAME that PDO driver (``0x9F_3_RtsPer_IMAGE_pci.sys``: a card reader's driver holds
the IRP, ``pci.sys`` owns the PDO).  The plugin follows the pointers the way ``!irp`` and
``!devobj`` do: PDO -> DriverObject -> DriverStart (-> the module list) and DriverName; IRP ->
Tail.Overlay.CurrentStackLocation -> DeviceObject -> DriverObject -> DriverName.

Other subtypes are left to the table (subtype 4 names a thread, P3, whose own stack holds the
followup; dumpkit does not walk another thread's stack yet).
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple

from ...kernel.iostructs import (DriverObject, IoStructureError, current_stack_location, device_stack,
                                 read_device_object, read_driver_object, read_irp)
from . import PluginFacts

__all__ = ["power_irp"]


def _image_of(k: Any, drv: DriverObject) -> Tuple[Optional[str], Optional[str], str]:
    """(IMAGE_NAME, MODULE_NAME, how) of a driver object: the module DriverStart lies in, else DriverName."""
    mods = None
    try:
        mods = k.modules
    except Exception:  # noqa: BLE001 - a broken module list only costs the image name
        mods = None
    m = mods.find(drv.start) if (mods is not None and drv.start) else None
    if m is not None:
        fname = m.name.replace("/", "\\").rsplit("\\", 1)[-1]
        return fname, fname.rsplit(".", 1)[0], "module list"
    if drv.short_name:
        return drv.short_name + ".sys", drv.short_name, "DriverName (DriverStart is in no loaded module)"
    return None, None, "neither DriverStart nor DriverName could be read"


def _driver_name(k: Any, va: int) -> str:
    try:
        drv = read_driver_object(k, va)
    except IoStructureError:
        return f"<driver object {va:#x} unreadable>"
    return drv.name or f"<driver object {va:#x}>"


def power_irp(k: Any, code: int, params: Sequence[int]) -> PluginFacts:
    out = PluginFacts()
    p = list(params) + [0] * (4 - len(params))
    if p[0] != 3:
        if p[0] == 4:
            out.notes.append(f"0x9F/4: P3 {p[2]:#x} is the thread that holds the PnP lock; its stack (not the "
                             f"bug-check thread's) shows what it waits for")
        return out
    pdo_va, irp_va = p[1], p[3]
    try:
        pdo = read_device_object(k, pdo_va)
        drv = read_driver_object(k, pdo.driver_object)
        image, module, how = _image_of(k, drv)
        out.device_image, out.device_module = image, module
        if image:
            out.notes.append(f"0x9F/3: the physical device object {pdo_va:#x} (P2) belongs to "
                             f"{drv.name or 'driver object %#x' % drv.address} ({image}, from the {how})")
    except IoStructureError as exc:
        out.warnings.append(f"0x9F/3: the physical device object (P2) could not be followed: {exc}")
    try:
        irp = read_irp(k, irp_va)
        loc = current_stack_location(k, irp)
        dev = read_device_object(k, loc.device_object)
        holder = read_driver_object(k, dev.driver_object)
        name = holder.short_name or (_image_of(k, holder)[1] or "")
        if name:
            out.device_driver = name
        out.notes.append(f"the blocked IRP {irp_va:#x} (P4) is pending in {holder.name or name or '?'} (device "
                         f"{dev.address:#x}, stack location {loc.index} of {irp.stack_count}, IRP_MJ {loc.major_function:#x} "
                         f"minor {loc.minor_function:#x})")
    except IoStructureError as exc:
        out.warnings.append(f"0x9F/3: the blocked IRP (P4) could not be followed: {exc}")
    devs, why = device_stack(k, pdo_va)
    if len(devs) > 1:
        names: List[str] = [_driver_name(k, d.driver_object) for d in reversed(devs)]
        out.notes.append("device stack of the PDO (top first): " + ", ".join(names))
    if why and devs:
        out.warnings.append(f"0x9F/3: the device stack walk stopped: {why}")
    return out
