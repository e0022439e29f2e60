"""Code plugins of the per-bug-check analyzers: the few rules that must dereference a parameter.

Most of what ``!analyze`` does per bug check is data (``symbols/analyzers.toml``).  An analyzer
entry names a plugin (``plugin = "power_irp"``) only where a parameter is a pointer to a kernel
object whose contents decide the bucket: 0x9F's blocked IRP and the device it is pending in,
0x124's WHEA error record.
A plugin reads the dump through the kernel layer and returns :class:`PluginFacts`; it never
raises on bad memory: what it could not read becomes a warning and the analyzer's other
cases apply.

>>> sorted(PLUGINS)
['power_irp', 'whea_record']
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

__all__ = ["PluginFacts", "PLUGINS", "run_plugin"]


@dataclass
class PluginFacts:
    """What a plugin found: facts for the analyzer table, notes and warnings for the report."""

    device_image: Optional[str] = None      # IMAGE_NAME of the device stack's culprit (0x9F: the PDO's driver)
    device_module: Optional[str] = None     # its MODULE_NAME
    device_driver: Optional[str] = None     # the driver holding the IRP (0x9F_3_<this>_IMAGE_...)
    cpu_vendor: Optional[str] = None        # 0x124: the vendor the WHEA record's processor section names
    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)


Plugin = Callable[[Any, int, Sequence[int]], PluginFacts]


def _power_irp(k: Any, code: int, params: Sequence[int]) -> PluginFacts:
    from .power import power_irp
    return power_irp(k, code, params)


def _whea_record(k: Any, code: int, params: Sequence[int]) -> PluginFacts:
    from .whea import whea_record
    return whea_record(k, code, params)


#: plugin name (as analyzers.toml spells it) -> function(kernel, bug check code, parameters)
PLUGINS: Dict[str, Plugin] = {"power_irp": _power_irp, "whea_record": _whea_record}


def run_plugin(name: str, k: Any, code: int, params: Sequence[int]) -> PluginFacts:
    """Run plugin ``name``; anything it could not do comes back as a warning, never an exception."""
    fn = PLUGINS.get(name)
    if fn is None:
        return PluginFacts(warnings=[f"analyzer plugin {name!r} is not known (known: {', '.join(sorted(PLUGINS))})"])
    try:
        return fn(k, code, list(params))
    except Exception as exc:  # noqa: BLE001 - a plugin on hostile memory must not sink the analysis
        return PluginFacts(warnings=[f"analyzer plugin {name!r} failed: {type(exc).__name__}: {exc}"])
