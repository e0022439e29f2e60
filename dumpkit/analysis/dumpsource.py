"""Feeding a dump to the analysis engine.

Everything the engine needs is gathered from the dump here: the context to analyse
(exception > trap frame > header), the stack unwound from it, the bytes at the faulting
IP, the exception record the bug check points at, version resources of the modules on the
stack, and whether the faulting IP lies in a pageable section.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional

from ..errors import DumpError
from ..model import Context, Stack
from .engine import Analysis, analyze_parts
from .plugins import PluginFacts, run_plugin

def _analysis_context(dump: Any) -> Optional[Context]:
    ctxs = dump.contexts
    for name in ("exception", "trap_frame", "header", "prcb"):
        if name in ctxs:
            return ctxs[name]
    return None


def _exception(dump: Any) -> Optional[Dict[str, Any]]:
    """The bug check's exception record as the engine takes it: the kernel layer finds it where the
    catalogue's parameter roles say (read from memory, found on the stack, or built from the parameters)."""
    k = getattr(dump, "kernel", None)
    try:
        rec = k.exception_record if k is not None else None
    except DumpError:
        rec = None
    if rec is None:
        return None
    out: Dict[str, Any] = {"code": rec.code, "address": rec.address}
    if rec.parameters:
        out["parameter1"] = rec.parameters[0]
    if len(rec.parameters) > 1:
        out["parameter2"] = rec.parameters[1]
    return out


#: CPUID vendor strings (leaf 0: EBX, EDX, ECX), as the kernel keeps them in each KPRCB
_CPU_VENDORS = (b"GenuineIntel", b"AuthenticAMD", b"HygonGenuine", b"CentaurHauls", b"  Shanghai  ")
_PRCB_SCAN = 0x10000


def cpu_vendor(dump: Any) -> Optional[str]:
    """The processor vendor (``GenuineIntel``, ``AuthenticAMD``...) from the crashing CPU's KPRCB.

    The KPRCB keeps the CPUID vendor string; rather than an offset that moves between builds,
    the PRCB bytes the dump holds are searched for the known vendor strings (a triage dump keeps
    the PRCB as a block of its own).  WHEA bug checks (0x124) name the vendor as MODULE_NAME.
    """
    data = b""
    t = getattr(dump, "triage", None)
    try:
        if t is not None and t.fields.get("prcb_offset"):
            start = t.fields["prcb_offset"]
            ends = [v for k, v in t.fields.items() if k.endswith("_offset") and isinstance(v, int) and v > start]
            end = min(ends + [start + _PRCB_SCAN])
            data = dump.source.read(start, min(end - start, _PRCB_SCAN), "KPRCB")
        else:
            prcb = dump.contexts.get("prcb")
            if prcb is not None and prcb.address:
                data = dump.try_read_virtual(prcb.address & ~0xFFF, _PRCB_SCAN) or b""
    except DumpError:
        return None
    hits = [(data.find(v), v) for v in _CPU_VENDORS if v in data]
    if not hits:
        return None
    return min(hits)[1].decode("ascii").strip()


_USER_CS = (0x33, 0x23)      # 64-bit and WOW64 user code selectors


def syscall_trap_frame(dump: Any) -> Optional[int]:
    """Address of the system-service trap frame (user-mode CS) on the crashing thread's stack.

    A bug check raised on the way back from a system call (0x4A: IRQL above zero at the
    service exit) has no faulting instruction; WinDbg's analysis follows the trap frame the
    service entry built for the thread, the one closest to the stack base with a user CS.
    """
    if getattr(getattr(dump, "arch", None), "pointer_size", 8) != 8:
        return None
    try:
        from ..arch.x64.frames import KTRAP_FRAME, plausible_trap_frame
        from ..kernel.contexts import stack_ranges
        size, cs_at = KTRAP_FRAME.SIZE, KTRAP_FRAME.SEG_CS      # the layout is defined once, in arch/x64
        k = dump.kernel
        best = None
        for start, end in stack_ranges(k):
            if end - start < size:
                continue
            buf = k.read_virtual(start, end - start, zero_fill=True)
            for off in range(0, len(buf) - size + 1, 16):
                cs = int.from_bytes(buf[off + cs_at:off + cs_at + 2], "little")
                if cs in _USER_CS and plausible_trap_frame(buf, off):
                    best = start + off           # keep the highest: nearest the stack base
        return best
    except (DumpError, AttributeError, ImportError):
        return None


def run_analyzer_plugin(dump: Any) -> PluginFacts:
    """Run the code plugin the bug check's analyzer names (symbols/analyzers.toml ``plugin``), if any."""
    bc = dump.bugcheck
    try:
        from .analyzers import AnalyzerTable
        name = AnalyzerTable.load().for_code(bc.code).plugin
    except Exception:  # noqa: BLE001 - a broken table is reported by the engine; no plugin then
        return PluginFacts()
    if not name:
        return PluginFacts()
    return run_plugin(name, getattr(dump, "kernel", dump), bc.code, bc.parameters)


def analyze_dump(dump: Any, symbol_path: Any = None, *, offline: Optional[bool] = None) -> Analysis:
    """Analyse an open :class:`dumpkit.Dump` (``symbol_path`` as for ``Dump.stack``)."""
    warnings: List[str] = list(dump.warnings)
    ctx = _analysis_context(dump)
    stack = Stack()
    if ctx is None:
        warnings.append("no register context in the dump: no stack")
    else:
        try:
            stack = dump.stack(ctx, symbol_path, offline=offline)
        except DumpError as exc:
            warnings.append(f"stack walk failed: {exc}")
    fault_ip = ctx.ip if ctx is not None else None
    fault_bytes = dump.try_read_virtual(fault_ip, 16) if fault_ip else None

    # version resources and section names of the images the stack runs through
    versions: Dict[str, Dict[str, str]] = {}
    ip_in_paged: Optional[bool] = None
    resolver = dump.resolver(symbol_path, offline=offline)
    seen = set()
    for f in stack:
        m = dump.modules.find(f.instruction)
        if m is None or m.name.lower() in seen:
            continue
        seen.add(m.name.lower())
        try:
            img = resolver.image_for(m)
        except DumpError:
            img = None
        if img is None:
            continue
        vi = getattr(img, "version_info", None)
        if vi:
            versions[m.name] = dict(vi)
        if fault_ip is not None and m.contains(fault_ip):
            sec = img.section_for(fault_ip - m.base) if hasattr(img, "section_for") else None
            name = getattr(sec, "name", None) if sec is not None else None
            if name:
                ip_in_paged = name.upper().startswith("PAGE")

    process_name = None
    try:
        process_name = getattr(dump, "process_name", None)
    except DumpError as exc:
        warnings.append(f"process name unreadable: {exc}")
    # what the layers reported while this analysis read the dump (contexts, modules, PE images)
    seen = set(warnings)
    for w in list(getattr(dump, "warnings", ())):
        if w not in seen:
            seen.add(w)
            warnings.append(w)
    bc = dump.bugcheck
    plugged = run_analyzer_plugin(dump)
    warnings.extend(w for w in plugged.warnings if w not in warnings)
    vendor = cpu_vendor(dump) if bc.base_code == 0x124 else None
    vendor = vendor or plugged.cpu_vendor
    stack_command = None
    if bc.base_code == 0x4A:
        tf = syscall_trap_frame(dump)
        if tf is not None:
            stack_command = f".trap 0x{tf:x} ; kb"
    return analyze_parts(bc.code, bc.parameters, list(stack), modules=dump.modules, context=ctx, cpu_vendor=vendor,
                         fault_bytes=fault_bytes, process_name=process_name, fault_ip=fault_ip,
                         exception=_exception(dump), bugcheck_name=bc.name, module_versions=versions or None,
                         ip_in_paged_code=ip_in_paged, stack_command=stack_command, source="dump",
                         warnings=warnings, device_image=plugged.device_image,
                         device_module=plugged.device_module, device_driver=plugged.device_driver,
                         extra_notes=plugged.notes)
