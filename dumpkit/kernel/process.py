"""The process and thread that were running when the system crashed.

* triage dumps: the raw EPROCESS and ETHREAD copies (ProcessOffset/ThreadOffset); the thread's
  VA is KPRCB.CurrentThread in the KPRCB copy, the process VA is KTHREAD.ApcState.Process;
* full/kernel/bitmap dumps: KiProcessorBlock[i] -> KPRCB.CurrentThread -> ETHREAD, choosing
  the processor whose current thread's kernel stack holds the header CONTEXT's RSP (the CPU
  that called KeBugCheckEx), then ApcState.Process (or Tcb.Process) -> EPROCESS.

Offsets come from the per-build table (:mod:`dumpkit.kernel.layouts`); where the KDBG is
readable its own offsets (OffsetKThreadApcProcess, OffsetPrcbCurrentThread, stack fields)
take precedence.  Every value is validated (printable name, pid a multiple of 4, kernel
pointers); a value that does not validate is dropped with a reason, never guessed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional, Tuple

from ..errors import DumpError, MemoryReadError
from .layouts import LayoutChoice

if TYPE_CHECKING:  # pragma: no cover
    from .state import Kernel

KERNEL_MIN = 0xFFFF800000000000
MAX_PROCESSORS = 2048
MAX_STRUCT = 0x4000
IMAGE_NAME_LEN = 15


@dataclass
class CrashThread:
    """The crashing thread and its process.  Any field may be None when the dump or the
    layout does not give it; ``notes`` say why."""

    process_name: Optional[str] = None
    process_id: Optional[int] = None
    thread_id: Optional[int] = None
    eprocess: Optional[int] = None            # VA
    ethread: Optional[int] = None             # VA
    processor: Optional[int] = None
    initial_stack: Optional[int] = None
    stack_base: Optional[int] = None
    stack_limit: Optional[int] = None
    kernel_stack: Optional[int] = None
    source: str = ""                          # 'triage copy' or 'KPRCB.CurrentThread'
    layout: str = ""                          # which layout was used (LayoutChoice.reason)
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        def h(v):
            return None if v is None else hex(v)
        return {"process_name": self.process_name, "process_id": self.process_id, "thread_id": self.thread_id,
                "eprocess": h(self.eprocess), "ethread": h(self.ethread), "processor": self.processor,
                "initial_stack": h(self.initial_stack), "stack_base": h(self.stack_base),
                "stack_limit": h(self.stack_limit), "kernel_stack": h(self.kernel_stack),
                "source": self.source, "layout": self.layout, "notes": list(self.notes)}

    def __repr__(self) -> str:
        pid = "?" if self.process_id is None else f"{self.process_id:#x}"
        tid = "?" if self.thread_id is None else f"{self.thread_id:#x}"
        return f"<CrashThread {self.process_name or '?'} pid {pid} tid {tid} ({self.source or 'unknown'})>"


def _u64(b: bytes, off: Optional[int]) -> Optional[int]:
    if off is None or off < 0 or off + 8 > len(b):
        return None
    return int.from_bytes(b[off:off + 8], "little")


def image_file_name(raw: bytes) -> Optional[str]:
    """EPROCESS.ImageFileName (15 bytes, NUL-padded ASCII); None unless it is printable text."""
    if len(raw) < 1:
        return None
    s = raw[:IMAGE_NAME_LEN].split(b"\0", 1)[0]
    if not s or any(c < 0x20 or c > 0x7E for c in s):
        return None
    return s.decode("ascii")


def _plausible_id(v: Optional[int]) -> bool:
    return v is not None and v % 4 == 0 and v < 1 << 32


def _offsets(k: "Kernel", ch: LayoutChoice) -> dict:
    """The offsets to use: the layout's, overridden by what the plaintext KDBG states."""
    lay = ch.layout
    o = {
        "pid": lay.get("eprocess", "UniqueProcessId") if lay else None,
        "name": lay.get("eprocess", "ImageFileName") if lay else None,
        "links": lay.get("eprocess", "ActiveProcessLinks") if lay else None,
        "cid": lay.get("ethread", "Cid") if lay else None,
        "apc_process": lay.get("kthread", "ApcStateProcess") if lay else None,
        "tcb_process": lay.get("kthread", "Process") if lay else None,
        "initial_stack": lay.get("kthread", "InitialStack") if lay else None,
        "stack_limit": lay.get("kthread", "StackLimit") if lay else None,
        "stack_base": lay.get("kthread", "StackBase") if lay else None,
        "kernel_stack": lay.get("kthread", "KernelStack") if lay else None,
        "current_thread": (lay.get("kprcb", "CurrentThread") if lay else None) or 0x8,
        "prcb_in_pcr": (lay.get("kpcr", "Prcb") if lay else None) or 0x180,
    }
    kd = k.kdbg
    if kd is not None:
        for key, name in (("apc_process", "OffsetKThreadApcProcess"), ("initial_stack", "OffsetKThreadInitialStack"),
                          ("kernel_stack", "OffsetKThreadKernelStack"), ("stack_limit", "OffsetKThreadStackLimit"),
                          ("stack_base", "OffsetKThreadStackBase"), ("current_thread", "OffsetPrcbCurrentThread")):
            v = kd.field(name)
            if v and v < MAX_STRUCT:
                o[key] = v
    return o


def _fill_thread(ct: CrashThread, thread: bytes, o: dict) -> None:
    for key in ("initial_stack", "stack_base", "stack_limit", "kernel_stack"):
        v = _u64(thread, o[key])
        if v is not None and v >= KERNEL_MIN:
            setattr(ct, key, v)
    cid = o["cid"]
    if cid is None:
        ct.notes.append("ETHREAD.Cid offset is not known for this build: thread id unknown")
    else:
        tid = _u64(thread, cid + 8)
        if _plausible_id(tid):
            ct.thread_id = tid
        else:
            ct.notes.append(f"ETHREAD.Cid.UniqueThread at +{cid + 8:#x} reads {tid!r}, not a thread id")
        owner = _u64(thread, cid)
        if ct.process_id is not None and owner is not None and owner != ct.process_id:
            ct.notes.append(f"ETHREAD.Cid.UniqueProcess {owner:#x} differs from the EPROCESS id "
                            f"{ct.process_id:#x}: the thread may be attached to another process")


def _fill_process(ct: CrashThread, proc: bytes, o: dict) -> None:
    if o["name"] is None:
        ct.notes.append("EPROCESS.ImageFileName offset is not known for this build: process name unknown")
    else:
        raw = proc[o["name"]:o["name"] + IMAGE_NAME_LEN]
        name = image_file_name(raw)
        if name is None:
            ct.notes.append(f"EPROCESS.ImageFileName at +{o['name']:#x} is not text ({raw[:15].hex()}): "
                            "the layout may not fit this dump")
        ct.process_name = name
    if o["pid"] is None:
        ct.notes.append("EPROCESS.UniqueProcessId offset is not known for this build: process id unknown")
    else:
        pid = _u64(proc, o["pid"])
        if _plausible_id(pid):
            ct.process_id = pid
        else:
            ct.notes.append(f"EPROCESS.UniqueProcessId at +{o['pid']:#x} reads {pid!r}, not a process id")


def _triage_raw(k: "Kernel", name: str, size_field: str) -> Optional[bytes]:
    t = k.triage
    off = t.fields.get(name) if t is not None else None
    if not off:
        return None
    size = None
    kd = k.kdbg
    if kd is not None:
        size = kd.field(size_field)
    if not size or size > MAX_STRUCT:
        # the gap to the next section bounds it
        others = sorted(v for k, v in t.fields.items() if k.endswith("_offset") and v and v > off)
        size = min(MAX_STRUCT, (others[0] - off) if others else MAX_STRUCT)
    size = max(0, min(size, k.source.size - off))
    return k.source.read(off, size) if size else None


def _from_triage(k: "Kernel", ch: LayoutChoice, o: dict) -> CrashThread:
    ct = CrashThread(source="triage copy", layout=ch.reason)
    proc = _triage_raw(k, "process_offset", "SizeEProcess")
    thread = _triage_raw(k, "thread_offset", "SizeEThread")
    prcb = _triage_raw(k, "prcb_offset", "SizePrcb")
    if prcb is not None:
        v = _u64(prcb, o["current_thread"])
        ct.ethread = v if v and v >= KERNEL_MIN else None
    if thread is not None:
        v = _u64(thread, o["apc_process"]) if o["apc_process"] is not None else None
        if not (v and v >= KERNEL_MIN) and o["tcb_process"] is not None:
            v = _u64(thread, o["tcb_process"])
        ct.eprocess = v if v and v >= KERNEL_MIN else None
    if proc is None:
        ct.notes.append("the triage dump has no EPROCESS copy")
    else:
        _fill_process(ct, proc, o)
    if thread is None:
        ct.notes.append("the triage dump has no ETHREAD copy")
    else:
        _fill_thread(ct, thread, o)
    return ct


def _processor_prcbs(k: "Kernel") -> List[Tuple[int, int]]:
    """(processor number, KPRCB VA) from KDBG.KiProcessorBlock; [] when not available."""
    kd = k.kdbg
    if kd is None or not kd.KiProcessorBlock:
        return []
    n = k.facts.number_processors or 0
    n = max(0, min(n, MAX_PROCESSORS))
    try:
        raw = k.read_virtual(kd.KiProcessorBlock, 8 * n) if n else b""
    except MemoryReadError:
        return []
    out = []
    for i in range(n):
        v = int.from_bytes(raw[8 * i:8 * i + 8], "little")
        if v >= KERNEL_MIN:
            out.append((i, v))
    return out


def _from_memory(k: "Kernel", ch: LayoutChoice, o: dict) -> CrashThread:
    ct = CrashThread(source="KPRCB.CurrentThread", layout=ch.reason)
    prcbs = _processor_prcbs(k)
    if not prcbs:
        res = k.kdbg_result
        ct.notes.append("no KiProcessorBlock: " + (res.reason if k.kdbg is None else
                                                   "the KDBG has no KiProcessorBlock address"))
        return ct
    rsp = k.arch.context_sp(k.facts.context_record) or None       # the header CONTEXT's stack pointer
    threads = []
    for cpu, prcb in prcbs:
        try:
            th_va = k.read_u64(prcb + o["current_thread"])
        except MemoryReadError:
            continue
        if th_va < KERNEL_MIN:
            continue
        try:
            thread = k.read_virtual(th_va, 0x400 if o["cid"] is None else max(0x400, o["cid"] + 0x10))
        except MemoryReadError:
            continue
        threads.append((cpu, th_va, thread))
    chosen = None
    if rsp is not None:
        for cpu, th_va, thread in threads:
            lim, base = _u64(thread, o["stack_limit"]), _u64(thread, o["stack_base"])
            if lim and base and lim <= rsp < base:
                chosen = (cpu, th_va, thread)
                break
    if chosen is None and len(threads) == 1:
        chosen = threads[0]
    if chosen is None:
        ct.notes.append("could not tell which processor crashed: no current thread's stack holds the header RSP")
        return ct
    cpu, th_va, thread = chosen
    ct.processor, ct.ethread = cpu, th_va
    p_va = _u64(thread, o["apc_process"]) if o["apc_process"] is not None else None
    if not (p_va and p_va >= KERNEL_MIN) and o["tcb_process"] is not None:
        p_va = _u64(thread, o["tcb_process"])
    if p_va and p_va >= KERNEL_MIN:
        ct.eprocess = p_va
        need = max([v for v in (o["pid"], o["name"]) if v is not None] or [0]) + 0x10
        try:
            proc = k.read_virtual(p_va, min(need, MAX_STRUCT))
            _fill_process(ct, proc, o)
        except MemoryReadError as exc:
            ct.notes.append(f"the EPROCESS at {p_va:#x} is not in the dump: {exc.message}")
    elif o["apc_process"] is None and o["tcb_process"] is None:
        ct.notes.append("KTHREAD.ApcState.Process: the offset is not known for this build and the KDBG "
                        "does not give it; process unknown")
    else:
        ct.notes.append("KTHREAD.ApcState.Process is not a kernel pointer")
    _fill_thread(ct, thread, o)
    return ct


def find_crash_thread(k: "Kernel") -> Optional[CrashThread]:
    """The crashing thread/process, or None for an unknown build (the reason goes to a warning)."""
    ch = k.layout
    if ch.layout is None:
        k.warn(f"process and thread not read: {ch.reason}")
        return None
    o = _offsets(k, ch)
    try:
        ct = _from_triage(k, ch, o) if k.triage is not None else _from_memory(k, ch, o)
    except DumpError as exc:                      # an unexpected shape: report, do not fail the dump
        k.warn(f"process and thread not read: {exc.message}")
        return None
    for n in ct.notes:
        if "not text" in n or "not a" in n or "could not tell" in n:
            k.warn(n)
    return ct
