"""x64 walk strategies, in order: unwind data (with machine frames), then a validated scan.

* :func:`cfi`: the callee's .pdata/UNWIND_INFO (:func:`dumpkit.arch.x64.unwind.virtual_unwind`),
  including PUSH_MACHFRAME frames (trap handlers): the walk continues in the interrupted code
  with the volatile registers of the KTRAP_FRAME (its PC exact);
* :func:`scan`: a bounded scan for a return address (see the walker); a hardware interrupt
  frame is recognised by its shape, and a slot that is also ``[rbp+8]`` of a sane RBP chain
  is labelled ``frame_pointer``.
"""
from __future__ import annotations

from typing import Dict, Optional, Set

from ...errors import DumpError, UnwindError
from ...unwind.walker import Next, StackWalker, WalkRules, ends_with_call, is_canonical
from .frames import KTRAP_FRAME_SIZE, MachineFrame, X64Context, trap_frame_volatiles
from .unwind import MASK64, VOLATILE, virtual_unwind

# registers a callee may clobber: unknown in the caller after an unwind step
VOLATILE_ALL = frozenset(VOLATILE) | frozenset(f"xmm{i}" for i in range(6)) | {"eflags"}
_KERNEL_CS, _USER_CS = 0x10, 0x33
_KERNEL_SS, _USER_SS = 0x18, 0x2B


class X64Rules(WalkRules):
    ip, sp, fp = "rip", "rsp", "rbp"
    pointer_size = 8
    sp_align = 8
    context_class = X64Context
    call_window = 7

    def canonical(self, va: int) -> bool:
        return is_canonical(va)

    def ends_with_call(self, code: bytes, ra: int) -> bool:
        return ends_with_call(code, ra)


RULES = X64Rules()


def _plausible_cfi(new: Dict[str, int], sp: int, machine: bool) -> bool:
    rip, rsp = new["rip"], new["rsp"]
    if not is_canonical(rsp) or rsp & 7:
        return False
    if rip < 0x1000:
        return True                  # end of stack: accepted, the walk stops there
    if not is_canonical(rip):
        return False
    if not machine and rsp <= sp:
        return False
    return True


def load_trap_volatiles(w: StackWalker, regs: Dict[str, int], valid: Set[str], trap: int) -> None:
    try:
        data = w.mem.read(trap, KTRAP_FRAME_SIZE)
    except UnwindError:
        raise
    except DumpError:
        return
    for k, v in trap_frame_volatiles(data).items():
        regs[k] = v
        valid.add(k)


def cfi(w: StackWalker, regs: Dict[str, int], valid: Set[str], exact: bool) -> Optional[Next]:
    """Unwind one frame from the image's unwind data; None when there is none or it is implausible."""
    module, image = w.module_and_image(regs["rip"], exact)
    if image is None or module is None:
        return None
    try:
        has_pdata = bool(image.runtime_functions)
    except DumpError:
        has_pdata = False
    if not has_pdata:
        return None
    try:
        step = virtual_unwind(image, module.base, regs, w.mem.read, exact=exact)
    except UnwindError as exc:
        if "budget" in exc.message:
            raise
        return None
    if not _plausible_cfi(step.regs, regs["rsp"], step.machine_frame):
        return None
    new_valid = (valid - VOLATILE_ALL).union(step.restored, ("rip", "rsp"))
    new_regs = step.regs
    if step.machine_frame:
        new_valid.add("eflags")
        if step.trap_frame is not None:
            load_trap_volatiles(w, new_regs, new_valid, step.trap_frame)
    return Next(new_regs, new_valid, "cfi", step.machine_frame, step.trap_frame, step.machine_frame)


def _machine_frame_at(w: StackWalker, regs: Dict[str, int], slot: int, rip: int) -> Optional[Next]:
    """Is ``slot`` the RIP of a hardware interrupt frame (KTRAP_FRAME + TrapFrameLayout.RIP)?

    Recognised by its shape: CS 0x10/0x33 next to it, an EFLAGS value with bit 1 set, a
    canonical RSP and SS 0x18/0x2b, and RIP inside a module's executable code.  The walk
    then continues at the interrupted PC (exact).
    """
    m = w.modules.find(rip)
    if m is None or m.unloaded:
        return None
    cs = w.mem.u64(slot + MachineFrame.SEG_CS)
    if cs is None or (cs & 0xFFFF) not in (_KERNEL_CS, _USER_CS):
        return None
    fl = w.mem.u64(slot + MachineFrame.EFLAGS)
    rsp = w.mem.u64(slot + MachineFrame.RSP)
    ss = w.mem.u64(slot + MachineFrame.SEG_SS)
    if fl is None or rsp is None or ss is None:
        return None
    fl &= 0xFFFFFFFF
    if not fl & 2 or fl >> 22 or (ss & 0xFFFF) not in (_KERNEL_SS, _USER_SS) or not is_canonical(rsp) \
            or rsp < 0x1000:
        return None
    if ((cs & 0xFFFF) == _KERNEL_CS) != (rip >= 0xFFFF800000000000):
        return None
    image = w.image(m)
    if image is not None and not image.is_executable(rip - m.base):
        return None
    new = dict(regs)
    new.update(rip=rip, rsp=rsp, eflags=fl)
    valid = {"rip", "rsp", "eflags"}
    trap = (slot - MachineFrame.TRAP_FRAME_DELTA) & MASK64
    load_trap_volatiles(w, new, valid, trap)
    return Next(new, valid, "scan", True, trap, True)


def scan(w: StackWalker, regs: Dict[str, int], valid: Set[str], exact: bool) -> Optional[Next]:
    """Scan up from RSP for the first validated return address (or interrupt frame)."""
    sp = regs["rsp"]
    if sp & 7 or not is_canonical(sp):
        return None
    rbp = regs.get("rbp")
    end = sp + w.scan_bytes
    if w.stack_range is not None:
        end = min(end, w.stack_range[1])
    slot = sp
    while slot < end:
        val = w.mem.u64(slot)
        if val is None:
            return None              # left the readable stack
        if val < 0x1000 or not is_canonical(val):
            slot += 8
            continue
        trap = _machine_frame_at(w, regs, slot, val)
        if trap is not None:
            return trap
        if w._return_address_ok(val):
            new = dict(regs)
            new["rip"] = val
            new["rsp"] = slot + 8
            trust = "scan"
            if rbp is not None and slot == rbp + 8 and rbp >= sp:
                caller_bp = w.mem.u64(rbp)
                if caller_bp is not None and (caller_bp == 0 or caller_bp > slot):
                    new["rbp"] = caller_bp
                    trust = "frame_pointer"
            return Next(new, {"rip", "rsp"} | ({"rbp"} if trust == "frame_pointer" else set()),
                        trust, False, None, False)
        slot += 8
    return None


STRATEGIES = (cfi, scan)
