"""ARM64 walk strategies, in order: unwind data (.pdata/.xdata), the frame-record chain, a scan.

* :func:`cfi`: the image's ARM64 unwind data (packed or full .xdata records;
  :mod:`dumpkit.arch.arm64.unwind`), trust ``cfi``;
* :func:`frame_pointer`: Windows ARM64 code keeps a chain of frame records: x29 points at
  the pair {caller's x29, x30 (return address)}.  The caller's PC is ``[fp+8]``, its
  frame pointer ``[fp]`` and its SP is taken as ``fp + 16`` (the lowest SP consistent with
  the record; the exact value needs unwind data); trust ``frame_pointer``;
* :func:`link_register`: for the context frame only, a leaf function that saved no frame
  record returns to ``lr``;
* :func:`scan`: a bounded scan for a value that passes the return-address check (in a
  module's code, right after a BL/BLR); trust ``scan``.

Return addresses may carry a pointer-authentication code in their top bits; it is stripped
(the address is re-extended from bit 47) before use.
"""
from __future__ import annotations

from typing import Dict, Optional, Set

from ...errors import DumpError, UnwindError
from ...unwind.walker import Next, StackWalker, WalkRules
from .frames import Arm64Context
from .paging import canonical

MASK64 = 0xFFFFFFFFFFFFFFFF
#: registers a callee may clobber (AAPCS64): x0-x18, lr, the flags; v0-v7 and v16-v31
VOLATILE = frozenset(f"x{i}" for i in range(19)) | {"lr", "cpsr"} | \
    frozenset(f"v{i}" for i in list(range(8)) + list(range(16, 32)))


def strip_pac(va: int) -> int:
    """Remove a pointer-authentication code: re-extend the address from bit 47."""
    va &= MASK64
    return va | 0xFFFF800000000000 if va >> 47 & 1 else va & 0x00007FFFFFFFFFFF


def is_call(insn: int) -> bool:
    """BL imm26, BLR Xn, or the pointer-authenticating BLRAA/BLRAAZ/BLRAB/BLRABZ."""
    if insn & 0xFC000000 == 0x94000000:            # BL
        return True
    if insn & 0xFFFFFC1F == 0xD63F0000:            # BLR
        return True
    if insn & 0xFEFFF800 == 0xD63F0800:            # BLRAA/BLRAB (0xD73F08..), BLRAAZ/BLRABZ (0xD63F08..)
        return True
    return False


class Arm64Rules(WalkRules):
    ip, sp, fp = "pc", "sp", "fp"
    pointer_size = 8
    sp_align = 8
    context_class = Arm64Context
    call_window = 4

    def canonical(self, va: int) -> bool:
        return canonical(va)

    def ends_with_call(self, code: bytes, ra: int) -> bool:
        return len(code) >= 4 and is_call(int.from_bytes(code[-4:], "little"))

    def lookup_address(self, pc: int, exact: bool) -> int:
        return pc if exact else pc - 4            # inside the BL that made the call


RULES = Arm64Rules()


def _caller_regs(regs: Dict[str, int], pc: int, sp: int, fp: Optional[int]) -> Dict[str, int]:
    new = dict(regs)
    new["pc"] = pc
    new["sp"] = sp
    if fp is not None:
        new["fp"] = fp
    return new


def cfi(w: StackWalker, regs: Dict[str, int], valid: Set[str], exact: bool) -> Optional[Next]:
    module, image = w.module_and_image(regs["pc"], exact)
    if image is None or module is None:
        return None
    from .unwind import virtual_unwind
    try:
        step = virtual_unwind(image, module.base, regs, w.mem.read, exact=exact)
    except UnwindError as exc:
        if "budget" in exc.message:
            raise
        return None
    except DumpError:
        return None
    if step is None:
        return None
    new = step.regs
    new["pc"] = strip_pac(new["pc"])
    if not canonical(new["sp"]) or new["sp"] & 7:
        return None
    if new["pc"] >= 0x1000 and (not canonical(new["pc"]) or new["sp"] < regs["sp"]):
        return None
    if new["pc"] >= 0x1000 and new["sp"] == regs["sp"] and new["pc"] == regs["pc"]:
        return None
    new_valid = (valid - VOLATILE).union(step.restored, ("pc", "sp"))
    return Next(new, new_valid, "cfi", False, None, False)


def frame_pointer(w: StackWalker, regs: Dict[str, int], valid: Set[str], exact: bool) -> Optional[Next]:
    fp, sp = regs.get("fp"), regs["sp"]
    if fp == 0 and w.trust == "frame_pointer":
        # the chain's last record held a zero frame pointer: the thread's first frame
        return Next(_caller_regs(regs, 0, sp + 16, 0), {"pc", "sp", "fp"}, "frame_pointer", False, None, False)
    if fp is None or "fp" not in valid or fp & 7 or fp < sp or not canonical(fp):
        return None
    if w.stack_range is not None and not w.stack_range[0] <= fp < w.stack_range[1]:
        return None
    caller_fp = w.mem.u64(fp)
    ra = w.mem.u64(fp + 8)
    if caller_fp is None or ra is None:
        return None
    ra = strip_pac(ra)
    if ra < 0x1000:
        return Next(_caller_regs(regs, ra, fp + 16, caller_fp), {"pc", "sp", "fp"}, "frame_pointer",
                    False, None, False)       # the end of the chain: the walk stops there
    if caller_fp != 0 and caller_fp <= fp:
        return None
    if not w.return_address_ok(ra):
        return None
    return Next(_caller_regs(regs, ra, fp + 16, caller_fp), {"pc", "sp", "fp"}, "frame_pointer", False, None,
                False)


def link_register(w: StackWalker, regs: Dict[str, int], valid: Set[str], exact: bool) -> Optional[Next]:
    """The context frame of a leaf: its caller is at lr (no frame record was pushed)."""
    if not exact or "lr" not in valid:
        return None
    lr = strip_pac(regs.get("lr", 0))
    if lr < 0x1000 or lr == regs["pc"] or not w.return_address_ok(lr):
        return None
    return Next(_caller_regs(regs, lr, regs["sp"] + 0, None), {"pc", "sp", "fp"} & valid | {"pc", "sp"},
                "scan", False, None, False)


def scan(w: StackWalker, regs: Dict[str, int], valid: Set[str], exact: bool) -> Optional[Next]:
    sp = regs["sp"]
    if sp & 7 or not canonical(sp):
        return None
    end = sp + w.scan_bytes
    if w.stack_range is not None:
        end = min(end, w.stack_range[1])
    slot = sp
    while slot < end:
        val = w.mem.u64(slot)
        if val is None:
            return None
        val = strip_pac(val)
        if val >= 0x1000 and w.return_address_ok(val):
            return Next(_caller_regs(regs, val, slot + 8, None), {"pc", "sp"}, "scan", False, None, False)
        slot += 8
    return None


STRATEGIES = (cfi, frame_pointer, link_register, scan)
