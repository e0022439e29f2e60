"""The analysis engine: bug check + stack + modules + context -> a verdict.

:func:`analyze_parts` is the common core: a dump reader hands it the bug check, the
unwound :class:`~dumpkit.model.Stack`, the module list, the faulting context and the
instruction bytes at the faulting IP; :func:`analyze_text` parses pasted WinDbg text and
feeds the same core.  The result, :class:`Analysis`, carries WinDbg's fields
(FAILURE_BUCKET_ID, FAILURE_ID_HASH, MODULE_NAME, IMAGE_NAME, SYMBOL_NAME, ...) formed
the way ``!analyze`` forms them, plus dumpkit's own verdict: the decoded fault, the
culprit and the victims with reasons, the remediation steps and a confidence.

The conclusion lines of a pasted ``!analyze`` report (MODULE_NAME, FAILURE_BUCKET_ID...)
are never used to compute anything: they are kept in :attr:`Analysis.reported` and
compared with dumpkit's own result.
"""
from __future__ import annotations

import functools
import json
import re
import warnings as _warnings
from datetime import datetime, timedelta
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from dumpkit.errors import DumpWarning
from dumpkit.model import Context, Frame, Module, ModuleList, Stack

from .bucket import (STATUS_ACCESS_VIOLATION, base_code, bucket_safe, failure_bucket_id,
                     failure_id_hash, is_access_violation_code, is_exception_bugcheck, memory_operand)
from .fault import FaultInfo, explain_fault

__all__ = ["SCHEMA_VERSION", "Analysis", "Culprit", "Victim", "analyze_parts", "analyze_text", "infer_bugcheck"]

#: version of the JSON document :meth:`Analysis.to_json` produces (see docs/json-schema.md)
from dumpkit.schemas import SCHEMA_VERSION  # noqa: E402 - one version for every JSON document

# trap/exception plumbing: the frame *below* the last of these is where the fault happened
_TRAP_HANDLERS = ("KiPageFault", "KiGeneralProtectionFault", "KiRaiseSecurityCheckFailure", "KiBreakpointTrap",
                  "KiDivideErrorFault", "KiInvalidOpcodeFault", "KiDebugTrapOrFault", "KiDoubleFaultAbort",
                  "KiStackFault", "KiSegmentNotPresentFault", "KiAlignmentFault", "KiXmmException",
                  "KiFloatingErrorFault", "KiRaiseAssertion",
                  "KiTrap", "CommonDispatchException")       # x86: KiTrap00..KiTrap13 and their dispatcher
_BUGCHECK_FRAMES = ("KeBugCheck", "KiBugCheckDispatch", "KiBugCheckDebugBreak", "DbgBreakPointWithStatus")
_LOAD_FRAMES = {
    "IopInitializeBootDrivers": "boot-start driver loading (IopInitializeBootDrivers, early boot)",
    "IopInitializeSystemDrivers": "system-start driver loading at boot (IopInitializeSystemDrivers)",
    "PnpCallDriverEntry": "the driver's DriverEntry routine (PnpCallDriverEntry)",
    "IopLoadDriver": "driver loading (IopLoadDriver)",
    "IopLoadUnloadDriver": "a service-control driver load/unload (IopLoadUnloadDriver)",
    "PnpStartDevice": "a PnP device start (PnpStartDevice)",
    "IopUnloadDriver": "driver unload (IopUnloadDriver)",
}
_USER_DLLS = {"ntdll", "kernel32", "kernelbase", "user32", "win32u", "gdi32", "gdi32full", "combase", "rpcrt4",
              "ucrtbase", "msvcrt", "advapi32", "sechost", "ws2_32", "ole32", "shell32", "wow64", "wow64cpu",
              "wow64win", "csrsrv", "basesrv", "winsrv", "sxssrv"}
#: load-context frames that mean "while Windows loads drivers at boot" (Start=4 can get past the crash)
_BOOT_LOAD_FRAMES = ("IopInitializeBootDrivers", "IopInitializeSystemDrivers", "boot-start", "system-start")
#: driver categories whose boot-start drivers may be needed to reach the disk
_BOOT_CRITICAL = ("storage", "storage filter", "file-system filter", "file system", "security")
#: the name the debugger gives a module whose file it does not know: 'image' and its base address
_PLACEHOLDER_MODULE = re.compile(r"image[0-9a-fA-F]{8}(?:[0-9a-fA-F]{8})?")
_PSEUDO_MODULES = {"heap_corruption", "memory_corruption", "hardware", "unknown_module"}
_USER_EXES = {"csrss", "smss", "wininit", "winlogon", "lsass", "services", "svchost", "explorer", "dwm", "fontdrvhost"}
_HEAP_FRAMES = ("RtlpHp", "ExFreePool", "ExFreeHeapPool", "ExAllocatePool", "RtlpHeap", "ExpFreePool")


@dataclass
class Culprit:
    """Who dumpkit blames, and why."""

    module: Optional[str]                 # file name ('lwfmgr.sys'), None when it is not on the stack
    vendor: Optional[str] = None
    category: Optional[str] = None
    reason: str = ""
    in_box: Optional[bool] = None
    service: Optional[str] = None
    frame: Optional[int] = None           # index of its first frame on the stack

    def to_json(self) -> dict:
        return {"module": self.module, "vendor": self.vendor, "category": self.category, "reason": self.reason}

    def __repr__(self) -> str:
        return f"<Culprit {self.module} ({self.vendor}, {self.category})>"


@dataclass
class Victim:
    """A module where the crash surfaced but which is not the cause."""

    module: str
    reason: str

    def to_json(self) -> dict:
        return {"module": self.module, "reason": self.reason}

    def __repr__(self) -> str:
        return f"<Victim {self.module}>"


@dataclass
class Analysis:
    """The result of an analysis.  :meth:`to_json` is the documented contract (docs/json-schema.md)."""

    bugcheck_code: Optional[int]
    bugcheck_name: Optional[str]
    parameters: List[int]
    failure_bucket_id: Optional[str]
    failure_id_hash: Optional[str]
    module_name: Optional[str]
    image_name: Optional[str]
    symbol_name: Optional[str]
    process_name: Optional[str]
    fault: Optional[FaultInfo]
    culprit: Culprit
    victims: List[Victim] = field(default_factory=list)
    callers: List[str] = field(default_factory=list)          # modules below the culprit: they called it
    remediation: List[str] = field(default_factory=list)
    confidence: str = "low"                       # 'high' | 'medium' | 'low'
    followup: Any = None                          # followup.FollowupResult
    followup_frame: Optional[Frame] = None
    faulting_frame: Optional[Frame] = None
    bugcheck_inferred: bool = False               # True when the code was inferred from the stack
    bugcheck_description: str = ""
    parameter_text: List[Tuple[str, int, str]] = field(default_factory=list)
    frames: Stack = field(default_factory=Stack)
    modules: ModuleList = field(default_factory=ModuleList)
    context: Optional[Context] = None
    exception: Dict[str, Any] = field(default_factory=dict)
    load_context: Optional[str] = None            # 'system-start driver loading at boot ...'
    stack_command: Optional[str] = None
    followup_owner: str = "MachineOwner"
    bucket_id_func_offset: Optional[int] = None
    notes: List[str] = field(default_factory=list)
    warnings: List[str] = field(default_factory=list)
    reported: Dict[str, str] = field(default_factory=dict)   # WinDbg's own conclusions, when the input had them
    debug_session_time: Optional[str] = None
    system_uptime: Optional[str] = None
    fields: Dict[str, str] = field(default_factory=dict)      # other !analyze fields passed through (text input)
    fault_disasm: Any = None                                   # DisasmLine from text input
    source: str = "dump"                                       # 'dump' | 'text'
    correlations: List[Any] = field(default_factory=list)      # dumpkit.logs.Correlation, when logs were given
    log_findings: Any = None                                   # dumpkit.logs.LogFindings, when logs were given
    crash_time: Optional[datetime] = None                      # from a dump header (aware, UTC)
    module_versions: Dict[str, Dict[str, str]] = field(default_factory=dict)  # lmv fields by module (text input)
    uptime: Optional[timedelta] = None                         # from a dump header
    os_build: Optional[int] = None                             # from a dump header or pasted text
    culprit_image: Any = None                                  # facts.CulpritImage (lmvm of the culprit)
    schema_version: str = SCHEMA_VERSION

    # --- output ---------------------------------------------------------------------------------
    @property
    def bugcheck(self) -> dict:
        return {
            "code": None if self.bugcheck_code is None else f"0x{self.bugcheck_code:x}",
            "name": self.bugcheck_name,
            "parameters": [f"0x{p:x}" for p in self.parameters],
        }

    @property
    def incomplete_reasons(self) -> List[str]:
        """Why this analysis cannot be trusted to be complete (empty when it can): no bug
        check, no stack, nobody to blame; the warnings gathered on the way follow."""
        reasons = []
        if self.bugcheck_code is None:
            reasons.append("no bug check code (none in the input and none could be inferred)")
        if not len(self.frames):
            reasons.append("no stack frames")
        if self.culprit.module is None and self.culprit.category != "hardware":
            reasons.append("no module could be blamed")
        if reasons:
            reasons += [f"warning: {w}" for w in self.warnings][:5]
        return reasons

    def to_json(self, extended: bool = False) -> dict:
        """The contract document (exactly its keys); ``extended=True`` adds dumpkit's working data."""
        doc: Dict[str, Any] = {
            "bugcheck": self.bugcheck,
            "failure_bucket_id": self.failure_bucket_id,
            "failure_id_hash": self.failure_id_hash,
            "module_name": self.module_name,
            "image_name": self.image_name,
            "symbol_name": self.symbol_name,
            "process_name": self.process_name,
            "fault": None if self.fault is None else self.fault.to_json(),
            "culprit": self.culprit.to_json(),
            "victims": [v.to_json() for v in self.victims],
            "remediation": list(self.remediation),
            "crash_time": None if self.crash_time is None else self.crash_time.isoformat(),
            "uptime_seconds": None if self.uptime is None else round(self.uptime.total_seconds(), 3),
            "os_build": self.os_build,
            "schema_version": self.schema_version,
        }
        doc["culprit"].update(self.culprit_image.to_json() if self.culprit_image is not None else
                              {"path": None, "base": None, "size": None, "timestamp": None, "version": None})
        if extended:
            doc["extended"] = {
                "confidence": self.confidence,
                "bugcheck_inferred": self.bugcheck_inferred,
                "followup": None if self.followup is None or not hasattr(self.followup, "to_json")
                else self.followup.to_json(),
                "followup_owner": self.followup_owner,
                "faulting_frame": None if self.faulting_frame is None else self.faulting_frame.index,
                "load_context": self.load_context,
                "callers": list(self.callers),
                "frames": [f.to_json(self.modules) for f in self.frames],
                "notes": list(self.notes),
                "warnings": list(self.warnings),
                "reported": dict(self.reported),
                "debug_session_time": self.debug_session_time,
                "system_uptime": self.system_uptime,
                "source": self.source,
                "correlations": [{"kind": c.kind, "confidence": c.confidence, "module": c.module,
                                  "summary": c.summary, "evidence": list(c.evidence),
                                  "remediation": list(c.remediation)} for c in self.correlations],
            }
        return doc

    def dumps(self, extended: bool = False, indent: Optional[int] = 2) -> str:
        """:meth:`to_json` as a JSON string."""
        return json.dumps(self.to_json(extended), indent=indent, ensure_ascii=False)

    def render_text(self) -> str:
        """``!analyze -v`` layout (see :func:`dumpkit.report.render_text`)."""
        from dumpkit.report.text import render_text
        return render_text(self)

    def summary(self) -> str:
        """A few lines: what crashed, who is to blame, what to do."""
        from dumpkit.report.summary import render_summary
        return render_summary(self)

    def mismatches(self) -> Dict[str, Tuple[str, Optional[str]]]:
        """WinDbg's reported value vs dumpkit's for the fields both have, where they differ."""
        mine = {"MODULE_NAME": self.module_name, "IMAGE_NAME": self.image_name, "SYMBOL_NAME": self.symbol_name,
                "FAILURE_BUCKET_ID": self.failure_bucket_id, "FAILURE_ID_HASH": self.failure_id_hash}
        out = {}
        for k, v in mine.items():
            if k in self.reported and self.reported[k] != v:
                out[k] = (self.reported[k], v)
        return out

    def __str__(self) -> str:
        """``print(analysis)`` shows the summary."""
        return self.summary()

    def __repr__(self) -> str:
        bc = f"0x{self.bugcheck_code:X}" if self.bugcheck_code is not None else "?"
        return (f"<Analysis {bc} {self.failure_bucket_id} culprit={self.culprit.module} "
                f"confidence={self.confidence}>")


# ---------------------------------------------------------------------------------------------------
def _sym(f: Frame) -> str:
    return f.symbol or ""


def infer_bugcheck(frames: Sequence[Frame]) -> Tuple[Optional[int], Optional[int], str]:
    """Guess (bug check code, exception code, why) from a stack pasted without its bug check.

    A system thread's exception filter (``nt!PspSystemThreadStartup$filt$0``,
    ``PspUnhandledExceptionInSystemThread``) calling KeBugCheckEx is
    SYSTEM_THREAD_EXCEPTION_NOT_HANDLED (0x7E); a page fault (``KiPageFault``) dispatched as
    an exception (``KiExceptionDispatch``) is an access violation (c0000005).
    """
    syms = [(f.module or "").lower() + "!" + _sym(f) for f in frames]
    code: Optional[int] = None
    why = []
    if any("pspsystemthreadstartup$filt$" in s.lower() or "pspunhandledexceptioninsystemthread" in s.lower()
           for s in syms) and any("KeBugCheck" in s for s in syms):
        code = 0x7E
        why.append("a system thread's exception filter called KeBugCheckEx (SYSTEM_THREAD_EXCEPTION_NOT_HANDLED)")
    elif any(s.endswith("!KiSystemServiceHandler") for s in syms) and any("KeBugCheck" in s for s in syms):
        code = 0x3B
        why.append("the system-service exception handler called KeBugCheckEx (SYSTEM_SERVICE_EXCEPTION)")
    elif any(s.startswith("nt!") and "KiBugCheckDispatch" in s for s in syms) and \
            any("KiPageFault" in s for s in syms):
        code = 0xD1
        why.append("KiPageFault went straight to KiBugCheckDispatch (an IRQL page fault: 0xA or 0xD1)")
    exc: Optional[int] = None
    if any("KiPageFault" in s for s in syms) and any("KiExceptionDispatch" in s or "KiDispatchException" in s
                                                     for s in syms):
        exc = STATUS_ACCESS_VIOLATION
        why.append("a page fault (KiPageFault) was dispatched as an exception: STATUS_ACCESS_VIOLATION")
    elif any("KiGeneralProtectionFault" in s for s in syms):
        exc = STATUS_ACCESS_VIOLATION
        why.append("a general-protection fault is reported as STATUS_ACCESS_VIOLATION")
    return code, exc, "; ".join(why)


def _faulting_frame_index(frames: Sequence[Frame]) -> Optional[int]:
    last_trap = None
    for i, f in enumerate(frames):
        if (f.module or "").lower() == "nt" and any(_sym(f).startswith(t) for t in _TRAP_HANDLERS):
            last_trap = i
    if last_trap is not None and last_trap + 1 < len(frames):
        return last_trap + 1
    for i, f in enumerate(frames):
        s = _sym(f)
        if (f.module or "").lower() == "nt" and (any(s.startswith(t) for t in _BUGCHECK_FRAMES)
                                                  or "$filt$" in s or s in ("_C_specific_handler",
                                                                            "RtlDispatchException",
                                                                            "RtlpExecuteHandlerForException",
                                                                            "KiDispatchException",
                                                                            "KiExceptionDispatch",
                                                                            "KiFastFailDispatch")):
            continue
        return i
    return 0 if frames else None


def _with_faulting_frame(stack: Sequence[Frame], fault_disasm: Any, analyzer: Any, warn_list: List[str]) -> Any:
    """The stack with the faulting instruction's frame put back where the listing lost it.

    An x86 walk through a driver without frame data can step from the trap handling straight to the
    driver's caller (KiExceptionExit returning into nt!IofCallDriver, no srvkp frame): WinDbg still follows
    up on the faulting instruction (FAULTING_IP srvkp+32fa, SYMBOL_STACK_INDEX 0).  For a bug check with a
    faulting instruction, whose labelled module no frame shows, a frame for it goes where the fault
    happened (after the last trap-handling frame)."""
    label = getattr(fault_disasm, "label", None) if fault_disasm is not None else None
    if not stack or not label or not getattr(analyzer, "fault_instruction", False):
        return stack
    from dumpkit.text._common import split_call_site
    mod, sym, off, _ = split_call_site(label)
    if not mod or any((f.module or "").lower() == mod.lower() for f in stack):
        return stack
    at = _faulting_frame_index(stack) or 0
    fr = Frame(index=at, instruction=getattr(fault_disasm, "address", 0) or 0, child_sp=0, module=mod, symbol=sym,
               offset=off, trust="context", symbol_source="text")
    out = Stack(list(stack[:at]) + [fr] + list(stack[at:]))
    warn_list.append(f"the stack shows no frame of {mod}, where the faulting instruction is ({label}): "
                     f"a frame for it is placed at {at:02x}, where the fault happened")
    return out


_USER_TOP = 0x0000800000000000


def _is_user_frame(f: Optional[Frame], user_top: int = _USER_TOP) -> bool:
    """A frame of user-mode code (below the kernel half of the address space)."""
    if f is None:
        return False
    if user_top >= 1 << 64:
        return True                         # a user-mode report: every frame is user code
    addr = f.instruction or f.child_sp
    return bool(addr) and addr < user_top and (f.child_sp or 0) < user_top


def _user_top(frames: Sequence[Frame]) -> int:
    """Where kernel space starts: 0x80000000 for a 32-bit (x86) stack, else the x64 split."""
    sps = [f.child_sp for f in frames if f.child_sp]
    if sps and all(sp < 1 << 32 for sp in sps) and any(sp >= 0x80000000 for sp in sps):
        return 0x80000000
    return _USER_TOP


def _image_for_module(module: Optional[str], modules: ModuleList, kb: Any, frame: Optional[Frame] = None,
               user_top: int = _USER_TOP, process: Optional[str] = None, *,
               files: Optional[Mapping[str, str]] = None) -> Optional[str]:
    if not module:
        return None
    m = modules.by_name(module) if len(modules) else None
    low = module.lower()
    if m is not None:
        fname = m.name.replace("/", "\\").rsplit("\\", 1)[-1]
        # the loader lists the kernel as ntoskrnl.exe; WinDbg's IMAGE_NAME is the image's own name
        # (ntkrnlmp.exe on every multiprocessor x64 system)
        if low == "nt" and fname.lower() == "ntoskrnl.exe":
            return "ntkrnlmp.exe"
        return fname
    if files and low in files:
        return files[low]                   # the file the input names (WATSON_BKT_MODULE, a symbols warning)
    if low == "nt":
        return "ntkrnlmp.exe"
    if low == "hal":
        return "hal.dll"
    if kb is not None:
        try:
            rec = kb.module(module)
        except Exception:
            rec = None
        if rec is not None:
            stem = rec.file.rsplit(".", 1)[0]
            if stem.lower() == low:
                return module + "." + rec.file.rsplit(".", 1)[-1] if "." in rec.file else rec.file
    if "." in module:
        return module
    if process and process.rsplit(".", 1)[0].lower() == module.lower() and "." in process and \
            (frame is None or _is_user_frame(frame, user_top)):
        return process                      # the process's own executable (AccessV.exe)
    if module.lower() in _PSEUDO_MODULES or _PLACEHOLDER_MODULE.fullmatch(module):
        # heap_corruption!Mem.exe: the report's pseudo frame; image009e0000: the debugger's placeholder for an
        # image whose name it never learnt (BREAKPOINT_AVRF_80000003_image009e0000!Unknown): no file name
        return module
    if _is_user_frame(frame, user_top):
        # a user-mode image on a kernel stack keeps its own extension (ntdll.dll, csrss.exe)
        return f"{module}.exe" if module.lower() in _USER_EXES else f"{module}.dll"
    return f"{module}.sys"


_image_for = _image_for_module


def _classify(name: str, modules: ModuleList, versions: Mapping[str, Mapping[str, str]], kb: Any) -> Any:
    try:
        from .modules import classify_module
    except ImportError:  # pragma: no cover - the module database ships with dumpkit
        return None
    m = modules.by_name(name) if len(modules) else None
    vi = versions.get(name.lower()) or versions.get(name.rsplit(".", 1)[0].lower()) if versions else None
    try:
        return classify_module(m.name if m is not None else name, path=m.path if m is not None else None,
                               version_info=vi, kb=kb)
    except Exception as e:  # a broken KB entry must not sink the whole analysis
        _warnings.warn(f"module classification failed for {name}: {e}", DumpWarning, stacklevel=3)
        return None


def _select_followup(frames: Sequence[Frame], kb: Any, rules: Any, skip: Sequence[str] = (), top: bool = False) -> Any:
    from .followup import select_followup
    return select_followup(frames, rules=rules, kb=kb, skip_modules=skip, top_frame=top)


def _describe(info: Any) -> str:
    """'an NDIS lightweight filter from Acme (third party)' from a ModuleInfo."""
    cat = (info.category or "").strip()
    noun = "a driver of unknown category" if cat in ("", "other") else \
        ("an " if cat[:1].lower() in "aeio" or cat.startswith(("NDIS", "USB", "OS")) else "a ") + cat + " module"
    vendor = (info.vendor or "").strip()
    if vendor and not vendor.lower().startswith("unknown"):
        noun += f" from {vendor}"
    if info.in_box is False or (info.in_box is None and getattr(info, "role", "") == "culprit"):
        noun += " (third party" + ("" if vendor and not vendor.lower().startswith("unknown") else
                                  ", vendor not identified") + ")"
    elif info.in_box:
        noun += " (ships with Windows)"
    return noun


def _add(lst: List[str], item: str) -> None:
    if item and item not in lst:
        lst.append(item)


def _is_bugcheck_frame(f: Frame) -> bool:
    """A frame of the bug-check plumbing (KeBugCheckEx, KeBugCheck2, its debugger break)."""
    return (f.module or "").lower() == "nt" and any(_sym(f).startswith(t) for t in _BUGCHECK_FRAMES + ("KeBugCheck2",))


def _starts_in_bugcheck(frames: Sequence[Frame]) -> bool:
    """The listing begins in the bug-check plumbing (KeBugCheckEx, its debugger break), not in a trap context."""
    return any(_is_bugcheck_frame(f) for f in frames[:4])


def _stack_command(analyzer: Any, info: Any, params: Sequence[int], context: Optional[Context],
                   fields: Mapping[str, str], have_stack: bool) -> Optional[str]:
    """STACK_COMMAND as WinDbg writes it: the command that re-creates the analysed stack, naming the
    context address (``.cxr 0xffff8504298917 ; kb``, ``.trap 0x... ; kb``, ``.thread 0x... ; kb``)."""
    kind = getattr(analyzer, "context", "none")
    if kind == "cxr_param" and info is not None:
        i = info.param("context")
        if i and i <= len(params) and params[i - 1]:
            return f".cxr 0x{params[i - 1]:x} ; kb"
    if context is not None and context.address:
        src = context.source.lower()
        if "trap" in src:
            return f".trap 0x{context.address:x} ; kb"
        if "exception" in src or "cxr" in src or "context" in src:
            return f".cxr 0x{context.address:x} ; kb"
    if kind == "trap" and _field_address(fields.get("TRAP_FRAME")):
        return f".trap 0x{_field_address(fields.get('TRAP_FRAME')):x} ; kb"
    if kind == "thread" and _field_address(fields.get("FAULTING_THREAD")):
        return f".thread 0x{_field_address(fields.get('FAULTING_THREAD')):x} ; kb"
    if kind == "exception":
        return ".cxr; .ecxr ; kb"
    return "kb" if have_stack else None


def _field_address(v: Optional[str]) -> Optional[int]:
    w = str(v or "").split()
    if not w:
        return None
    try:
        return int(w[0].replace("`", ""), 16) or None
    except ValueError:
        return None


# --- helpers for the per-bug-check analyzers --------------------------------------------------------
_HARDWARE_CULPRITS = ("hardware", "cpu_vendor", "unknown")
_CULPRIT_SOURCE = {
    "hardware": "the memory-corruption check (the damage is a hardware pattern)",
    "cpu_vendor": "the processor that reported the machine check (its vendor)",
    "unknown": "nowhere: no frame on the reporting processor's stack is to blame",
    "tdr": "the display driver the TDR parameter points into",
    "param_module": "the module a bug-check parameter points into",
    "device_stack": "the device stack of the blocked IRP",
}
_HARDWARE_REMEDIATION = {
    "hardware": ("Test the memory: Windows Memory Diagnostic (mdsched.exe) or MemTest86 for several passes; remove "
                 "any overclock or XMP profile and reseat or swap the modules.",),
    "cpu_vendor": ("A hardware error was reported through WHEA: read the error record (!errrec <P2> in WinDbg, or the "
                   "WHEA-Logger events), update the BIOS/firmware and CPU microcode, check cooling and power, and "
                   "remove any overclock.",),
}
_HEX_WORD = re.compile(r"0x([0-9a-fA-F]{1,16})\b")


def _field_word(fields: Mapping[str, str], key: str) -> Optional[str]:
    v = str(fields.get(key, "")).split()
    return v[0] if v else None


def _status_fact(code: Optional[int], fields: Mapping[str, str]) -> Optional[str]:
    """0xEF's exit status as the bucket spells it (lower-case hex, no 0x) from ERROR_CODE / EXCEPTION_CODE."""
    if code is None or base_code(code) != 0xEF:
        return None
    for key in ("ERROR_CODE", "EXCEPTION_CODE", "EXCEPTION_CODE_STR"):
        m = _HEX_WORD.search(str(fields.get(key, "")))
        if m:
            return f"{int(m.group(1), 16):x}"
        w = _field_word(fields, key)
        if w and re.fullmatch(r"[0-9a-fA-F]{8}", w):
            return w.lower()
    return None


def _culprit_param(table: Any, facts: Any) -> Optional[int]:
    """The parameter the analyzer names the culprit by (0x116 P2), if its case wants one."""
    an = table.for_code(facts.code, facts.livedump)
    for c in an.cases:
        if c.culprit_param:
            return c.culprit_param
    return None


#: ``module+offset`` as WinDbg names an address without symbols (``nvlddmkm+1958210``)
_MODULE_OFFSET = re.compile(r"([A-Za-z0-9_.$-]{1,64})\+(?:0x)?([0-9a-fA-F]{1,16})")


def _paged_ip_label(addr: int, fields: Mapping[str, str]) -> Optional[str]:
    """IP_IN_PAGED_CODE names the analysed IP as ``module+offset`` without printing its address (0x116:
    P2, ``nvlddmkm+1958210``): taken as ``addr``'s label when the offset agrees with it within the page."""
    m = _MODULE_OFFSET.fullmatch(_field_word(fields, "IP_IN_PAGED_CODE") or "")
    if m is None or (int(m.group(2), 16) ^ addr) & 0xFFF:
        return None
    return f"{m.group(1)}+0x{int(m.group(2), 16):x}"


def _module_at(addr: int, modules: ModuleList, labels: Mapping[int, str], fields: Mapping[str, str],
               warn_list: List[str], kb: Any) -> Optional[Tuple[str, str]]:
    """(module, image) of the module ``addr`` points into: the module list, else a label the input
    printed for that address (FAULTING_IP ``igdkmd64+120f0``), else FAULTING_MODULE."""
    if len(modules):
        m = modules.find(addr)
        if m is not None:
            fname = m.name.replace("/", "\\").rsplit("\\", 1)[-1]
            return fname.rsplit(".", 1)[0], fname
    lab = labels.get(addr)
    if lab:
        mod = re.split(r"[!+]", lab, maxsplit=1)[0].strip()
        if mod:
            return mod, _image_for(mod, modules, kb) or f"{mod}.sys"
    fm = str(fields.get("FAULTING_MODULE", "")).split()
    if fm:
        mod = fm[-1]
        return mod, _image_for(mod, modules, kb) or f"{mod}.sys"
    return None


def _culprit_symbol(v: Any, params: Sequence[int], labels: Mapping[int, str]) -> Optional[str]:
    if v.culprit in ("tdr", "param_module") and v.culprit_param and v.culprit_param <= len(params):
        lab = labels.get(params[v.culprit_param - 1])
        if lab:
            return lab.replace("+0x", "+")
        return v.module
    if v.culprit == "unknown":
        return "ANALYSIS_INCONCLUSIVE"
    return None


def _named_culprit(v: Any, info: Any, params: Sequence[int], fields: Mapping[str, str]) -> Culprit:
    """dumpkit's verdict when the bug check, not a stack frame, names the culprit."""
    if v.culprit == "hardware":
        kind = _field_word(fields, "MEMORY_CORRUPTOR") or "memory"
        return Culprit(module=None, category="hardware",
                       reason=v.case.why or (f"WinDbg's memory-corruption check classified the damage as {kind}: a "
                                             f"pattern that points at failing RAM (or an unstable overclock) rather "
                                             f"than at a driver."))
    if v.culprit == "cpu_vendor":
        return Culprit(module=None, vendor=v.module, category="hardware",
                       reason=(f"WHEA_UNCORRECTABLE_ERROR: the processor ({v.module}) or the platform reported a "
                               f"fatal hardware error; no driver frame is to blame."))
    if v.culprit == "unknown":
        return Culprit(module=None, reason=v.case.why or "The stack in the input shows what reported the bug check, "
                                                         "not its cause.")
    why = f"{v.bucket}: {_CULPRIT_SOURCE.get(v.culprit, 'the bug check')} is {v.image}"
    if info is not None:
        why += f"; {v.image} is {_describe(info)}"
    return Culprit(module=v.image, vendor=getattr(info, "vendor", None), category=getattr(info, "category", None),
                   reason=why + ".", in_box=getattr(info, "in_box", None), service=getattr(info, "service", None))



def analyze_parts(bugcheck_code: Optional[int], parameters: Sequence[int], frames: Sequence[Frame],
                  modules: Optional[Iterable[Module]] = None, context: Optional[Context] = None,
                  fault_bytes: Optional[bytes] = None, process_name: Optional[str] = None, *,
                  fault_ip: Optional[int] = None, fault_disasm: Any = None,
                  exception: Optional[Mapping[str, Any]] = None, bugcheck_name: Optional[str] = None,
                  parameter_text: Sequence[str] = (), module_versions: Optional[Mapping[str, Mapping[str, str]]] = None,
                  irql: Optional[int] = None, ip_in_paged_code: Optional[bool] = None,
                  av_region: Optional[str] = None, device_image: Optional[str] = None,
                  stack_command: Optional[str] = None, setup_failures: Sequence[str] = (),
                  debug_session_time: Optional[str] = None, system_uptime: Optional[str] = None,
                  kb: Any = None, rules: Any = None, source: str = "dump",
                  warnings: Sequence[str] = (), fields: Optional[Mapping[str, str]] = None,
                  cpu_vendor: Optional[str] = None, labels: Optional[Mapping[int, str]] = None,
                  processors: Optional[int] = None, livedump: Optional[bool] = None,
                  user_mode: bool = False, device_driver: Optional[str] = None,
                  device_module: Optional[str] = None, extra_notes: Sequence[str] = (),
                  image_files: Optional[Mapping[str, str]] = None) -> Analysis:
    """Analyse a crash from its parts (the common core of dump and text analysis).

    ``frames`` is the stack of the analysis context, top first (for a dump: the stack
    unwound from the exception/trap context or the bug-check thread); ``context`` the
    register context of the faulting instruction; ``fault_bytes`` the bytes at its IP
    (``fault_ip``, defaults to ``context.rip``).  ``exception`` may carry 'code',
    'parameter1', 'parameter2' (the EXCEPTION_RECORD's) and 'memory_region'.
    ``fields`` are other ``!analyze`` input fields (text input: MEMORY_CORRUPTOR, CPU_VENDOR,
    FAULTING_THREAD, ERROR_CODE...); ``labels`` maps addresses to ``module+offset`` labels
    shown in the input (FAULTING_IP); the per-bug-check rules come from
    ``symbols/analyzers.toml`` (:mod:`dumpkit.analysis.analyzers`).  ``device_image``,
    ``device_module`` and ``device_driver`` are what a dump plugin read behind 0x9F's parameters
    (the PDO's driver image and module, the driver the blocked IRP is pending in).
    """
    from .analyzers import AnalyzerTable
    from .bucket import _facts
    fields = dict(fields or {})
    # image file names the text input named ({'fastrtps_2_6': 'fastrtps-2.6.dll'}): IMAGE_NAME keeps the file's name
    _image_for = functools.partial(_image_for_module, files={k.lower(): v for k, v in (image_files or {}).items()})
    notes: List[str] = list(extra_notes)
    warn_list: List[str] = list(warnings)
    if kb is None:
        try:
            from .kb import KnowledgeBase
            kb = KnowledgeBase.load()
        except Exception as e:
            warn_list.append(f"knowledge base unavailable: {e}")
            kb = None
    mods = modules if isinstance(modules, ModuleList) else ModuleList(modules or [])
    versions = {k.lower(): v for k, v in (module_versions or {}).items()}
    stack = Stack(frames)
    params = [int(p) & 0xFFFFFFFFFFFFFFFF for p in list(parameters)[:4]]
    exc: Dict[str, Any] = dict(exception or {})

    # --- bug check -----------------------------------------------------------------------------
    inferred = False
    code = bugcheck_code
    inf_code, inf_exc, inf_why = infer_bugcheck(stack) if stack else (None, None, "")
    if code is None and inf_code is not None:
        code, inferred = inf_code, True
        notes.append(f"bug check inferred from the stack: {inf_why}")
    elif inf_why and code is None:
        notes.append(f"from the stack: {inf_why}")
    b = base_code(code) if code is not None else None
    if "code" not in exc:
        if is_exception_bugcheck(b) and params:
            exc["code"] = params[0] & 0xFFFFFFFF
        elif inf_exc is not None:
            exc["code"] = inf_exc
    info = None
    if kb is not None and code is not None:
        try:
            info = kb.bugcheck(code)
        except Exception:
            info = None
    name = bugcheck_name or (info.name if info is not None else None)
    try:
        table = AnalyzerTable.load()
    except Exception as e:  # a broken table must not sink the analysis: the plain default applies
        warn_list.append(f"analyzer table unavailable: {e}")
        table = None
    lkd = bool(livedump) if livedump is not None else getattr(info, "kind", "") == "livedump"
    analyzer = table.for_code(code, lkd) if table is not None else None
    ptext: List[Tuple[str, int, str]] = []
    if info is not None and params:
        try:
            ptext = info.describe_parameters(params)
        except Exception:
            ptext = []
    if not ptext:
        ptext = [(f"Arg{i + 1}", v, parameter_text[i] if i < len(parameter_text) else "") for i, v in enumerate(params)]

    stack = _with_faulting_frame(stack, fault_disasm, analyzer, warn_list)

    # --- image names on frames ------------------------------------------------------------------
    utop = (1 << 64) if user_mode else _user_top(stack)     # a user-mode report: every frame is user code
    for f in stack:
        if f.module and not f.image_name:
            f.image_name = _image_for(f.module, mods, kb, f, utop, process_name)

    # --- followup (WinDbg's attribution) -----------------------------------------------------------
    fu = None
    candidates: Sequence[Frame] = stack
    scanned = [f for f in stack if f.trust == "scan"]
    if scanned and source == "dump":
        trusted = [f for f in stack if f.trust != "scan"]
        if any(f.module for f in trusted):
            candidates = trusted
            warn_list.append(f"{len(scanned)} frame(s) were found by scanning the stack (frame {scanned[0].index:02x} "
                             f"on); the followup is chosen among the unwound frames only")
    source_of_followup = getattr(analyzer, "followup_from", "triage")
    if source_of_followup == "user" and not user_mode:
        utop0 = _user_top(stack)
        users = [f for f in candidates if f.module and _is_user_frame(f, utop0)]
        if users:
            candidates = users
    elif source_of_followup == "caller":
        below = [f for f in candidates if not _is_bugcheck_frame(f)]
        if below and below[0] is not candidates[0]:
            candidates = candidates[candidates.index(below[0]):]
    if stack:
        try:
            fu = _select_followup(candidates, kb, rules, skip=getattr(analyzer, "followup_skip", ()),
                                  top=source_of_followup == "top" or (
                                      source_of_followup in ("user", "caller") and candidates is not stack) or (
                                      source_of_followup == "context" and not _starts_in_bugcheck(stack)))
        except Exception as e:
            warn_list.append(f"followup selection failed: {e}")
    fmod = fu.module if fu is not None else None
    fsym = fu.symbol if fu is not None else None
    fframe = fu.frame if fu is not None else None
    image = _image_for(fmod, mods, kb, fframe, utop, process_name) if fmod else None
    if fu is not None and getattr(fu, "image_name", None) and not len(mods):
        image = fu.image_name if fmod and fmod.lower() not in ("nt", "hal") else image
    symbol_name = fu.symbol_name if fu is not None and fmod else None
    if fmod and len(fmod) > 3 and fmod.lower().endswith("_ni") and _is_user_frame(fframe, utop):
        # a .NET native image (System_Windows_Forms_ni, from System.Windows.Forms.ni.dll): WinDbg names the
        # assembly it was compiled from, MODULE_NAME System_Windows_Forms, IMAGE_NAME System.Windows.Forms.dll
        fmod = fmod[:-3]
        image = fmod.replace("_", ".") + ".dll"

    # --- the fault ---------------------------------------------------------------------------------
    fi_idx = None
    rip = context.get("rip") if context is not None else None
    if rip:
        fi_idx = next((i for i, g in enumerate(stack) if g.instruction == rip), None)
    if fi_idx is None:
        fi_idx = _faulting_frame_index(stack)
    ffault = stack[fi_idx] if fi_idx is not None and stack else None
    fault_symbol = None
    if fault_disasm is not None and getattr(fault_disasm, "label", None):
        fault_symbol = fault_disasm.label
    elif ffault is not None and ffault.module:
        fault_symbol = ffault.call_site
    has_fault_ins = code is None or inferred or bool(getattr(analyzer, "fault_instruction", False))
    if fault_disasm is not None and str(getattr(fault_disasm, "label", "") or "").startswith("nt!KeBugCheck"):
        has_fault_ins = False           # the debugger's banner shows KeBugCheckEx's own first instruction
    if not has_fault_ins and (fault_bytes is not None or fault_disasm is not None):
        notes.append("the faulting instruction was not decoded: this bug check is raised by a call to KeBugCheckEx, "
                     "not by a faulting instruction")
        fault_bytes, fault_disasm = None, None
        if fault_symbol and fault_symbol.startswith("nt!KeBugCheck"):
            fault_symbol = None
    fault = explain_fault(bugcheck_code=code if not inferred else None, parameters=params if not inferred else (),
                          parameter_text=parameter_text, context=context if has_fault_ins else None,
                          instruction_bytes=fault_bytes,
                          ip=fault_ip if has_fault_ins else None, disasm=fault_disasm, symbol=fault_symbol,
                          irql=irql, exception=exc,
                          ip_in_paged_code=ip_in_paged_code, region=exc.get("memory_region"))
    if not has_fault_ins and fault.kind == "unknown" and code is not None:
        # no instruction faulted: say what the bug check reports instead of "not enough information"
        what = getattr(info, "description", "") if info is not None else ""
        fault.explanation = (f"No instruction faulted: the kernel raised {name or f'bug check {code:#x}'} by calling "
                             f"KeBugCheckEx." + (f" {what}" if what else ""))
    if inferred and fault.kind == "unknown" and exc.get("code") == STATUS_ACCESS_VIOLATION:
        fault.kind = "access_violation"
        fault.explanation = (f"A page fault{(' in ' + fault_symbol) if fault_symbol else ''} was raised as an "
                             f"access-violation exception that no handler caught"
                             f"{' in a system thread' if b == 0x7E else ''}; the address is not in the pasted text.")
    is_av = is_access_violation_code(code, params, exc.get("code")) or (
        code is None and fault.kind not in ("unknown", "security_check"))

    # --- bucket: the bug check's analyzer (symbols/analyzers.toml) ---------------------------------
    bucket = None
    verdict_an = None
    if code is not None or is_av or (user_mode and exc.get("code") is not None):
        kw = dict(exception_code=exc.get("code"), access=fault.access,
                  fault_kind=fault.kind if fault.kind in ("paged_ip", "null_ip", "bad_ip") else (
                      "av" if code is None and is_av else None),
                  av_region=None if av_region is None else av_region, frames=stack, process_name=process_name,
                  device_image=device_image, fdo_module=device_driver, kb=kb)
        um = table.for_exception(exc.get("code")) if (user_mode and table is not None and code is None) else None
        if um is not None:
            from .analyzers import Facts as _F, evaluate as _ev
            if not fmod and process_name and not any(g.module for g in stack):
                # nothing unwound (execution at a bad address): WinDbg blames the process image
                fmod, image, fsym = process_name.rsplit(".", 1)[0], process_name, "unknown_error_in_process"
                symbol_name = f"{process_name}!unknown_error_in_process"
                notes.append("no frame could be attributed: the process image is the followup, as WinDbg does")
            fimg = bucket_safe(f"{image or fmod}!{fsym or 'Unknown'}") if fmod else ""
            addr = exc.get("parameter2", exc.get("memory_address"))
            # ExceptionInformation[0] says what the access was (8: execute, DEP), even where the engine printed
            # a WRITE_ADDRESS line for it (SOFTWARE_NX_FAULT_c0000005_chrome_child.dll!...GetSources)
            access = {0: "read", 1: "write", 8: "execute"}.get(exc.get("parameter1", -1)) or exc.get("memory_access")
            verdict_um = _ev(_F(code=None, exception_code=exc.get("code"), access=access, usermode=True,
                                wrong_symbols=any("symbols are WRONG" in str(w) for w in warnings),
                                exception_parameters=list(exc.get("parameters") or [
                                    v for v in (exc.get("parameter1"), exc.get("parameter2")) if v is not None]),
                address=addr, followup_image=fimg, followup=fimg, fields=fields, kb=kb,
                operand=memory_operand(getattr(fault_disasm, "text", None), context)), table)
            bucket = verdict_um.bucket
        elif code is None or table is None:
            bucket = failure_bucket_id(code, params, fmod, fsym, **kw)
        else:
            from .analyzers import evaluate
            from .bucket import followup_text
            facts = _facts(code, params, followup=followup_text(fmod, fsym),
                           followup_strength=getattr(fu, "strength", None), fields=fields,
                           cpu_vendor=cpu_vendor or _field_word(fields, "CPU_VENDOR"),
                           param_module=None, procs=processors, livedump=lkd, **kw)
            facts.status = _status_fact(code, fields)
            facts.device_module = device_module
            cp = _culprit_param(table, facts)
            plabels: Dict[int, str] = dict(labels or {})
            if cp is not None and cp <= len(params):
                lab = None if params[cp - 1] in plabels else _paged_ip_label(params[cp - 1], fields)
                if lab:
                    plabels[params[cp - 1]] = lab
                facts.param_module = _module_at(params[cp - 1], mods, plabels, fields, warn_list, kb)
                pm = mods.find(params[cp - 1]) if len(mods) else None
                if pm is not None and params[cp - 1] not in plabels:
                    # a dump: name the address as WinDbg's FAULTING_IP does (igdkmd64+120f0)
                    stem = pm.name.replace("/", "\\").rsplit("\\", 1)[-1].rsplit(".", 1)[0]
                    plabels[params[cp - 1]] = f"{stem}+0x{params[cp - 1] - pm.base:x}"
            verdict_an = evaluate(facts, table)
            bucket = verdict_an.bucket
            if verdict_an.culprit != "followup" and verdict_an.module:
                fmod_shown = verdict_an.module
                notes.append(f"{verdict_an.bucket.split('_')[0]}: MODULE_NAME comes from "
                             f"{_CULPRIT_SOURCE.get(verdict_an.culprit, verdict_an.culprit)}, not from a stack frame")
                symbol_name = _culprit_symbol(verdict_an, params, plabels)
                image = verdict_an.image
                fmod = fmod_shown
                fframe = None
    bucket_hash = failure_id_hash(bucket, user_mode=user_mode) if bucket else None

    # --- culprit and victims (dumpkit's verdict) ------------------------------------------------------
    verdicts: Dict[str, Any] = {}

    def verdict(mod: str) -> Any:
        if mod not in verdicts:
            verdicts[mod] = _classify(_image_for(mod, mods, kb) or mod, mods, versions, kb)
        return verdicts[mod]

    load_ctx = None
    if fframe is not None:
        below = stack[stack.index(fframe) + 1:] if fframe in stack else []
        found = [desc for key, desc in _LOAD_FRAMES.items()
                 if any((g.module or "").lower() == "nt" and _sym(g) == key for g in below)]
        if found:
            load_ctx = "; ".join(found[:3])

    culprit_frame: Optional[Frame] = None
    culprit_info = None
    named = verdict_an is not None and verdict_an.culprit != "followup" and bool(verdict_an.module)
    hardware = verdict_an is not None and named and verdict_an.culprit in _HARDWARE_CULPRITS
    # the analyzer names a hardware culprit the input does not identify (0x124 with no CPU vendor in the text):
    # the stack is the error's reporting path, so no frame on it is blamed
    hw_unnamed = next((c.culprit for c in verdict_an.analyzer.cases if c.culprit in _HARDWARE_CULPRITS), None) \
        if verdict_an is not None and not named else None
    fu_info = verdict(fmod) if fmod and not hardware else None
    if named or hw_unnamed:
        pass
    elif fmod and (fu_info is None or getattr(fu_info, "role", "culprit") == "culprit"):
        culprit_frame, culprit_info = fframe, fu_info
    elif fmod:
        # the followup is framework/OS code: blame the first third-party caller below it, if any
        start = stack.index(fframe) + 1 if fframe is not None and fframe in stack else 0
        for g in stack[start:]:
            if g.module and g.module != fmod:
                v = verdict(g.module)
                if v is not None and v.role == "culprit":
                    culprit_frame, culprit_info = g, v
                    break
    culprit: Culprit
    if named:
        assert verdict_an is not None
        culprit = _named_culprit(verdict_an, fu_info, params, fields)
        culprit_info = fu_info if verdict_an.culprit not in _HARDWARE_CULPRITS else None
        if verdict_an.culprit == "device_stack" and device_driver and \
                device_driver.lower() != (verdict_an.module or "").lower():
            # WinDbg's MODULE_NAME is the PDO's (bus) driver; the IRP is pending in another driver: that one
            # holds it up (the bus driver is named because the PDO identifies the device)
            himg = _image_for(device_driver, mods, kb) or f"{device_driver}.sys"
            hinfo = verdict(device_driver)
            hwhy = (f"{verdict_an.bucket}: the blocked power IRP is pending in {himg} (the driver of its current stack "
                   f"location); WinDbg's MODULE_NAME {verdict_an.module} is the driver of the physical device object")
            if hinfo is not None:
                hwhy += f"; {himg} is {_describe(hinfo)}"
            culprit = Culprit(module=himg, vendor=getattr(hinfo, "vendor", None),
                              category=getattr(hinfo, "category", None), reason=hwhy + ".",
                              in_box=getattr(hinfo, "in_box", None), service=getattr(hinfo, "service", None))
            culprit_info = hinfo
    elif hw_unnamed:
        culprit = Culprit(module=None, category="hardware",
                          reason=(f"{name or 'The bug check'} reports a hardware error: "
                                  f"{_CULPRIT_SOURCE[hw_unnamed]} is to blame, not a driver, but the input does not "
                                  f"name it; the stack{f' ({symbol_name})' if symbol_name else ''} is the path that "
                                  f"reported the error."))
    elif culprit_frame is not None:
        cimg = _image_for(culprit_frame.module, mods, kb, culprit_frame, utop) or culprit_frame.module
        why: List[str] = []
        if fframe is not None and culprit_frame is fframe:
            why.append(f"{culprit_frame.call_site} is the followup frame: the first frame WinDbg's triage rules "
                       f"attribute to a non-OS owner")
        else:
            why.append(f"the followup {fmod} is {getattr(fu_info, 'category', 'OS')} code that is usually a victim; "
                       f"{culprit_frame.call_site} is the first third-party caller below it")
        if culprit_info is not None:
            why.append(f"{cimg} is {_describe(culprit_info)}")
        if ffault is not None and ffault is not culprit_frame and ffault.module:
            why.append(f"the fault surfaced in {ffault.call_site}, called from {cimg}")
        if load_ctx:
            why.append(f"it crashed during {load_ctx}")
        culprit = Culprit(module=cimg, vendor=getattr(culprit_info, "vendor", None),
                          category=getattr(culprit_info, "category", None), reason="; ".join(why) + ".",
                          in_box=getattr(culprit_info, "in_box", None), service=getattr(culprit_info, "service", None),
                          frame=culprit_frame.index)
    elif fmod and fu_info is not None:
        hint = fu_info.blame_instead or getattr(fu, "suspect_hint", "") or "the driver that called it"
        culprit = Culprit(module=None, vendor=None, category=fu_info.category,
                          reason=(f"The followup {symbol_name} is in {_image_for(fmod, mods, kb)}, "
                                  f"{fu_info.category} code that is usually a victim, and no third-party caller is on "
                                  f"the stack: look at {hint}."))
    else:
        culprit = Culprit(module=None, reason="no frame on the stack could be attributed to a module")

    victims: List[Victim] = []
    cidx = stack.index(culprit_frame) if culprit_frame is not None and culprit_frame in stack else len(stack)
    start = fi_idx if fi_idx is not None else 0
    for g in stack[start:cidx]:
        if not g.module or (culprit_frame is not None and g.module == culprit_frame.module):
            continue
        img = _image_for(g.module, mods, kb) or g.module
        if any(v.module == img for v in victims):
            continue
        v = verdict(g.module)
        vwhy = f"the crash surfaced in {g.call_site}"
        if culprit.module:
            vwhy += f", which {culprit.module} called (directly or through the frames between)"
        if v is not None:
            role = f"{v.category} code" if v.category else "OS code"
            vwhy += f"; {img} is {role}{', shipped with Windows' if v.in_box else ''}"
            if v.blame_instead and not culprit.module:
                vwhy += f"; look at {v.blame_instead}"
        victims.append(Victim(img, vwhy))

    callers: List[str] = []
    if culprit_frame is not None:
        for g in stack[cidx + 1:]:
            if g.module and g.module != culprit_frame.module:
                img = _image_for(g.module, mods, kb) or g.module
                if img not in callers:
                    callers.append(img)

    # --- remediation ------------------------------------------------------------------------------------
    rem: List[str] = []
    if (named or hw_unnamed) and verdict_an is not None:
        for r in verdict_an.case.remediation or _HARDWARE_REMEDIATION.get(verdict_an.culprit if named else
                                                                          hw_unnamed or "", ()):
            _add(rem, r)
    if culprit_info is not None:
        for r in culprit_info.remediation:
            _add(rem, r)
        svc = culprit_info.service or (culprit.module.rsplit(".", 1)[0] if culprit.module else None)
        boot_load = bool(load_ctx) and any(k in (load_ctx or "") for k in _BOOT_LOAD_FRAMES)
        upgrade = bool(setup_failures)
        if (boot_load or upgrade) and culprit_info.in_box is not True and svc and \
                not any("Start=4" in r for r in rem):
            when = ("it crashes while Windows loads it at boot" if boot_load else
                    "setup logs in the input show driver sections failing during an upgrade")
            _add(rem, f"To get past the crash ({when}): set Start=4 (disabled) under "
                      f"HKLM\\SYSTEM\\CurrentControlSet\\Services\\{svc} (from Safe Mode, WinRE or the offline "
                      f"registry if Windows no longer boots), reboot or run the upgrade, then restore the original "
                      f"Start value.")
            if "IopInitializeBootDrivers" in (load_ctx or "") or culprit_info.category in _BOOT_CRITICAL:
                _add(rem, f"Warning: {culprit.module} may be a boot-start driver (Start=0); if it is needed to reach "
                          f"the system disk (storage, encryption, volume or file-system filter), disabling it can "
                          f"leave Windows unbootable: check its Start value and ImagePath first and keep a way back "
                          f"(WinRE, offline registry).")
        if not rem and culprit.module:
            who = culprit.vendor if culprit.vendor and not culprit.vendor.lower().startswith("unknown") else \
                "its vendor"
            _add(rem, f"Update {culprit.module} from {who} to the latest version, or uninstall the product it "
                      f"belongs to.")
    elif fmod and fu_info is not None:
        for r in fu_info.remediation:
            _add(rem, r)
    for svc in setup_failures:
        base = (culprit.module or "").rsplit(".", 1)[0].lower()
        if svc.lower() != base and not any(svc.lower() in r.lower() for r in rem):
            _add(rem, f"If setup still rolls back, disable {svc} the same way (Start=4 under "
                      f"HKLM\\SYSTEM\\CurrentControlSet\\Services\\{svc}): its setupapi.dev.log section failed too.")
    if any(any(h in _sym(g) for h in _HEAP_FRAMES) for g in stack[:cidx]) or fault.kind == "security_check":
        target = f" /driver {culprit.module}" if culprit.module else ""
        _add(rem, f"Pool corruption is caught late; to catch it where it happens, enable Driver Verifier with special "
                  f"pool (verifier /standard{target}) and reproduce.")

    # --- confidence ---------------------------------------------------------------------------------------
    if culprit_frame is not None and culprit_frame is fframe and not inferred and code is not None:
        confidence = "high"
    elif culprit_frame is not None:
        confidence = "medium"
    elif named and verdict_an is not None and verdict_an.culprit == "device_stack" and device_driver:
        confidence = "medium"           # read from the IRP in the dump, not guessed from a stack
    else:
        confidence = "low"
    if culprit_info is not None and culprit_info.in_box is True and confidence == "high":
        confidence = "medium"

    if fault.kind == "null_lock":
        notes.append("The crash is a page fault at raised IRQL inside a lock acquire: normally a blue screen. If the "
                     "user only saw an error dialog, check that this dump belongs to the failure (compare its time "
                     "with the setup logs).")
    if debug_session_time:
        notes.append(f"Debug session time: {debug_session_time}" +
                     (f"; system uptime {system_uptime}" if system_uptime else ""))

    off = fu.offset if fu is not None else None
    if stack_command is None:
        stack_command = _stack_command(analyzer, info, params, context, fields, bool(stack))

    return Analysis(
        bugcheck_code=code, bugcheck_name=name, parameters=params, failure_bucket_id=bucket,
        failure_id_hash=bucket_hash, module_name=fmod, image_name=image, symbol_name=symbol_name,
        process_name=process_name, fault=fault, culprit=culprit, victims=victims, callers=callers, remediation=rem,
        confidence=confidence, followup=fu, followup_frame=fframe, faulting_frame=ffault,
        bugcheck_inferred=inferred, bugcheck_description=getattr(info, "description", "") if info else "",
        parameter_text=ptext, frames=stack, modules=mods, context=context, exception=exc, load_context=load_ctx,
        stack_command=stack_command, followup_owner=getattr(fu, "owner", None) or "MachineOwner",
        bucket_id_func_offset=off, notes=notes, warnings=warn_list, debug_session_time=debug_session_time,
        system_uptime=system_uptime, fault_disasm=fault_disasm, source=source)


_CONCLUSIONS = ("MODULE_NAME", "IMAGE_NAME", "SYMBOL_NAME", "FAILURE_BUCKET_ID", "FAILURE_ID_HASH", "FOLLOWUP_NAME",
                "FOLLOWUP_IP", "BUCKET_ID", "PRIMARY_PROBLEM_CLASS", "DEFAULT_BUCKET_ID", "BUCKET_ID_FUNC_OFFSET",
                "FAILURE_ID_HASH_STRING", "FAULTING_MODULE", "IMAGE_VERSION")


_LABEL_LINE = re.compile(r"^[A-Za-z_][\w.\-]{0,63}(?:![^\s]{1,200})?(?:\+(?:0x)?[0-9a-fA-F]{1,16})?:$")
_ADDR_LINE = re.compile(r"^([0-9a-fA-F]{8}`?[0-9a-fA-F]{8}|[0-9a-fA-F]{8})\s")


def _labels(pt: Any) -> Dict[int, str]:
    """address -> ``module+offset`` label for the instructions the input showed (FAULTING_IP, .trap)."""
    out: Dict[int, str] = {}
    for d in getattr(pt, "disassembly", []):
        if d.label and d.address not in out:
            out[d.address] = d.label
    # FAULTING_IP with unreadable bytes ('fffff800`a4c620f0 ??  ???') is not a disassembly line
    for key in ("FAULTING_IP",):
        lines = [str(pt.fields.get(key, ""))] + list(getattr(pt, "blocks", {}).get(key, []))
        label = None
        for ln in lines[:8]:
            t = ln.strip()
            if _LABEL_LINE.match(t):
                label = t[:-1]
                continue
            m = _ADDR_LINE.match(t)
            if m and label:
                addr = int(m.group(1).replace("`", ""), 16)
                out.setdefault(addr, label)
                label = None
        if label:       # the label line stayed in the block, its instruction became a disassembly line
            for d in getattr(pt, "disassembly", []):
                if d.where == key and not d.label:
                    out.setdefault(d.address, label)
                    break
    return out


def _processors(f: Mapping[str, str]) -> Optional[int]:
    m = re.search(r"\((\d{1,4}) procs\)", str(f.get("KERNEL_VERSION", "")))
    return int(m.group(1)) if m else None


def analyze_text(text: Union[str, bytes], *, kb: Any = None, rules: Any = None,
                 source: Optional[str] = None) -> Analysis:
    """Analyse pasted WinDbg text (``!analyze -v``, a ``k`` stack, ``lm``, ``r``, the faulting line).

    Raises :class:`~dumpkit.errors.TextParseError` when nothing usable is found.
    """
    from dumpkit.text import parse_text
    pt = parse_text(text, source=source)
    f = pt.fields
    ip_paged = None
    if "IP_IN_PAGED_CODE" in f:
        ip_paged = True
    irql = None
    if "CURRENT_IRQL" in f and f["CURRENT_IRQL"].split():
        try:
            irql = int(f["CURRENT_IRQL"].split()[0], 16)
        except ValueError:
            irql = None
    stack = pt.frames
    fi = pt.faulting_instruction
    if not stack and fi is not None and fi.where == "FAULTING_IP" and fi.label and "!" in fi.label:
        # no stack in the input (STACK_TEXT elided when pasted): the faulting instruction is the one frame
        # known, the frame WinDbg's followup is when it heads the stack (0xC2/0xB: nt!ExDeleteResourceLite+199)
        from dumpkit.text.stack import FrameLine, build_stack
        stack = build_stack([FrameLine(index=0, child_sp=0, return_address=0, call_site=fi.label)])
        stack[0].instruction = fi.address
        pt.warnings.append("no stack in the input: the followup is the FAULTING_IP frame")
    labels = _labels(pt)
    # a raw-address frame at an instruction the input named takes that name: executing the fill pattern
    # 41414141 is FAULTING_IP 'unknown!noop+0', WinDbg's followup (SOFTWARE_NX_FAULT_c0000005_unknown.dll!noop)
    from dumpkit.text._common import split_call_site
    for fr in stack[:2]:
        if not fr.module and "!" in labels.get(fr.instruction, ""):
            fr.module, fr.symbol, fr.offset, _ = split_call_site(labels[fr.instruction])
            fr.symbol_source = "text"
    if pt.faulting_instruction is not None and stack and not stack[0].instruction and stack[0].module and \
            pt.faulting_instruction.label and pt.faulting_instruction.label.split("+")[0] == \
            (f"{stack[0].module}!{stack[0].symbol}" if stack[0].symbol else stack[0].module):
        stack[0].instruction = pt.faulting_instruction.address
    av_region: Optional[str] = None
    if pt.bugcheck_code is not None and base_code(pt.bugcheck_code) == 0x50 and \
            ("READ_ADDRESS" in f or "WRITE_ADDRESS" in f) and pt.exception.get("memory_address") is not None and \
            not pt.exception.get("memory_region"):
        # READ/WRITE_ADDRESS printed with no region and P4 (MM_INTERNAL_CODE) 0: the address is in no known
        # region (AV_R_INVALID_WwanUsbMp); with a region, or P4 = 2 (a known range, page not present), '(null)'
        if len(pt.parameters) < 4 or pt.parameters[3] == 0:
            av_region = "INVALID"
    a = analyze_parts(
        pt.bugcheck_code, pt.parameters, stack, modules=pt.modules, context=pt.registers, fault_bytes=None,
        process_name=pt.process_name, fault_disasm=pt.faulting_instruction, exception=pt.exception,
        bugcheck_name=pt.bugcheck_name, parameter_text=pt.parameter_text, module_versions=pt.module_versions,
        irql=irql, ip_in_paged_code=ip_paged, setup_failures=pt.setup_failures,
        debug_session_time=pt.debug_session_time, system_uptime=pt.system_uptime, kb=kb, rules=rules,
        source="text", warnings=pt.warnings, fields={k: v for k, v in f.items() if k not in _CONCLUSIONS},
        labels=labels, processors=_processors(f), av_region=av_region, user_mode=pt.user_mode,
        image_files=pt.image_files)
    a.reported = {k: f[k] for k in _CONCLUSIONS if k in f and f[k]}
    a.module_versions = pt.module_versions
    if "Failure.Bucket" in pt.key_values:
        a.reported.setdefault("FAILURE_BUCKET_ID", pt.key_values["Failure.Bucket"])
    if "Failure.Hash" in pt.key_values:
        a.reported.setdefault("FAILURE_ID_HASH", pt.key_values["Failure.Hash"])
    if pt.followup_owner:
        a.reported["Followup"] = pt.followup_owner
    a.fields = {k: v for k, v in f.items() if k not in _CONCLUSIONS}
    for k, (theirs, mine) in a.mismatches().items():
        a.notes.append(f"WinDbg reported {k} {theirs}; dumpkit computed {mine}")
    from .facts import fill_from_text
    return fill_from_text(a, pt)
