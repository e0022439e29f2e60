"""0x124 WHEA_UNCORRECTABLE_ERROR: the error record P2 points at.

WinDbg names the processor vendor as MODULE_NAME (``GenuineIntel``); dumpkit reads it from the
crashing processor's KPRCB (:func:`dumpkit.analysis.dumpsource.cpu_vendor`).  The CPER record
says what failed: its sections (processor, memory, PCI Express ...) and, for a processor error,
the kind (cache, TLB, bus), the operation and the CPU's brand string, which also names the
vendor when the KPRCB is not in the dump.
"""
from __future__ import annotations

from typing import Any, Sequence

from ...kernel.whea import WheaRecordError, read_error_record, vendor_from_brand
from . import PluginFacts

__all__ = ["whea_record"]


def whea_record(k: Any, code: int, params: Sequence[int]) -> PluginFacts:
    out = PluginFacts()
    p = list(params) + [0] * (4 - len(params))
    try:
        rec = read_error_record(k, p[1])
    except WheaRecordError as exc:
        out.warnings.append(f"0x124: the WHEA error record (P2) could not be read: {exc}")
        return out
    parts = ", ".join(f"{s.name} ({s.severity})" for s in rec.sections)
    out.notes.append(f"WHEA error record {rec.address:#x} (P2, {rec.severity}): {len(rec.sections)} section(s): {parts}")
    cpu = rec.processor
    if cpu is not None:
        level = f", cache level {cpu.level}" if cpu.error_type == "cache" else ""
        out.notes.append(f"processor error: {cpu.error_type} error on {cpu.operation}{level} ({cpu.processor_type}"
                         f"{', ' + cpu.brand if cpu.brand else ''})")
        out.cpu_vendor = vendor_from_brand(cpu.brand)
    return out
