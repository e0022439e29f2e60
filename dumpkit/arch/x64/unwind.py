"""One step of x64 Windows unwinding (the RtlVirtualUnwind algorithm).

Given a register set whose ``rip`` is in an image with .pdata, compute the
caller's registers:

* look up the RUNTIME_FUNCTION (``rip`` for an exact PC, ``rip-1`` for a
  return address);
* compute the establisher frame (frame register, or RSP, or RSP inside the
  prolog before SET_FPREG);
* if the PC sits in an epilog (v1: recognised from the instruction bytes;
  v2: from the UWOP_EPILOG descriptors) emulate the rest of the epilog;
* otherwise replay the unwind codes of the entry and of its chained parents,
  skipping prolog instructions that have not executed yet, and pop the return
  address unless a machine frame (PUSH_MACHFRAME) was popped.

Everything is bounded (32 chain links, 255 codes per record, 16 epilog
instructions) and every failure is an :class:`UnwindError`.
"""
from __future__ import annotations

import struct
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from .._common import UnwindMemory
from ...errors import ImageError, UnwindError
from ...model import GPR_NAMES
from .frames import MachineFrame
from ...pe.image import MAX_CHAIN, PEImage
from ...pe.unwindinfo import (RuntimeFunction, UnwindInfo, UWOP_ALLOC_LARGE, UWOP_ALLOC_SMALL, UWOP_EPILOG,
                             UWOP_PUSH_MACHFRAME, UWOP_PUSH_NONVOL, UWOP_SAVE_NONVOL, UWOP_SAVE_NONVOL_FAR,
                             UWOP_SAVE_XMM128, UWOP_SAVE_XMM128_FAR, UWOP_SET_FPREG, UWOP_SPARE_CODE, epilogs_v2)

MASK64 = 0xFFFFFFFFFFFFFFFF
KTRAP_FRAME_RIP = MachineFrame.TRAP_FRAME_DELTA   # trap frame = RIP slot - delta (layout in frames.py)
VOLATILE = ("rax", "rcx", "rdx", "r8", "r9", "r10", "r11")
_XMM_NAMES = tuple(f"xmm{i}" for i in range(16))

ReadFn = Callable[[int, int], bytes]


class UnwindStep(NamedTuple):
    """The result of unwinding one frame."""

    regs: Dict[str, int]                 # the caller's registers (rip = return address / interrupted PC)
    function: Optional[RuntimeFunction]  # the entry used (None for a leaf)
    machine_frame: bool                  # a PUSH_MACHFRAME was popped: rip is an exact PC
    trap_frame: Optional[int]            # KTRAP_FRAME VA (= RIP slot - MachineFrame.TRAP_FRAME_DELTA) when machine_frame
    epilog: bool                         # the PC was inside an epilog
    leaf: bool                           # no RUNTIME_FUNCTION: return address taken at [rsp]
    restored: Tuple[str, ...]            # registers restored from the stack (besides rip/rsp)


def unwind_leaf(regs: Dict[str, int], read: ReadFn) -> UnwindStep:
    """A function without unwind data: the return address is at [rsp]."""
    mem = UnwindMemory(read)
    new = dict(regs)
    rsp = regs["rsp"]
    new["rip"] = mem.u64(rsp)
    new["rsp"] = (rsp + 8) & MASK64
    return UnwindStep(new, None, False, None, False, True, ())


def virtual_unwind(image: PEImage, image_base: int, regs: Dict[str, int], read: ReadFn, *,
                   exact: bool = True) -> UnwindStep:
    """Unwind one frame of the function holding ``regs['rip']`` in ``image`` (loaded at ``image_base``).

    ``exact`` is True when rip is the exact PC (frame 0, or after a machine
    frame) and False when it is a return address (the function is then looked
    up at rip-1).  A PC without a RUNTIME_FUNCTION is a leaf when ``exact``,
    an UnwindError otherwise.
    """
    if "rip" not in regs or "rsp" not in regs:
        raise UnwindError("context without rip/rsp", expected="rip and rsp")
    pc = regs["rip"]
    rva = pc - image_base
    look = rva if exact else rva - 1
    if not 0 <= look < image.size_of_image:
        raise UnwindError(f"PC {pc:#x} outside the image", offset=pc)
    try:
        f = image.function_for(look)
    except ImageError as exc:
        raise UnwindError(f"exception directory unreadable: {exc.message}", offset=pc) from None
    if f is None:
        if exact:
            return unwind_leaf(regs, read)
        raise UnwindError(f"return address {pc:#x} has no RUNTIME_FUNCTION", offset=pc,
                          expected="a function entry for a non-leaf caller")
    f, info = image.unwind_info_for(f)
    mem = UnwindMemory(read)
    prolog_offset = (rva - f.begin) & 0xFFFFFFFF
    fr = info.frame_register
    past_prolog = prolog_offset >= info.prolog_size or info.is_chained
    if fr == 0:
        est = regs["rsp"]
    elif past_prolog:
        est = (_reg(regs, fr) - info.frame_offset) & MASK64
    elif info.fpreg_offset is not None and prolog_offset >= info.fpreg_offset:
        est = (_reg(regs, fr) - info.frame_offset) & MASK64
    else:
        est = regs["rsp"]

    if past_prolog and rva < f.end:
        if info.version >= 2 and info.codes and info.codes[0].op == UWOP_EPILOG:
            step = _epilog_v2(image, f, info, rva, regs, mem)
        else:
            step = _epilog_v1(image, image_base, f, info, rva, regs, mem)
        if step is not None:
            return step

    new = dict(regs)
    restored: List[str] = []
    machine = False
    trap = None
    entry, cur = f, info
    for _depth in range(MAX_CHAIN + 1):
        off = (rva - entry.begin) & 0xFFFFFFFF
        for c in cur.codes:
            op = c.op
            if op == UWOP_EPILOG or op == UWOP_SPARE_CODE or c.offset > off:
                continue        # epilog descriptors, obsolete XMM saves, prolog not yet executed
            if op == UWOP_PUSH_NONVOL:
                rsp = new["rsp"]
                name = GPR_NAMES[c.info]
                new[name] = mem.u64(rsp)
                new["rsp"] = (rsp + 8) & MASK64
                restored.append(name)
            elif op == UWOP_ALLOC_SMALL or op == UWOP_ALLOC_LARGE:
                new["rsp"] = (new["rsp"] + c.value) & MASK64
            elif op == UWOP_SET_FPREG:
                if not cur.frame_register:
                    raise UnwindError("SET_FPREG without a frame register", offset=cur.rva)
                new["rsp"] = (_reg(new, cur.frame_register) - cur.frame_offset) & MASK64
            elif op == UWOP_SAVE_NONVOL or op == UWOP_SAVE_NONVOL_FAR:
                name = GPR_NAMES[c.info]
                new[name] = mem.u64(est + c.value)
                restored.append(name)
            elif op == UWOP_SAVE_XMM128 or op == UWOP_SAVE_XMM128_FAR:
                name = _XMM_NAMES[c.info]
                new[name] = mem.u128(est + c.value)
                restored.append(name)
            elif op == UWOP_PUSH_MACHFRAME:
                slot = (new["rsp"] + 8 * c.value) & MASK64
                new["rip"] = mem.u64(slot)
                new["eflags"] = mem.u64(slot + MachineFrame.EFLAGS) & 0xFFFFFFFF
                new["rsp"] = mem.u64(slot + MachineFrame.RSP)
                machine = True
                trap = (slot - KTRAP_FRAME_RIP) & MASK64
            # obsolete v1 SAVE_XMM / SAVE_XMM_FAR and v2 EPILOG codes: nothing to restore
        if cur.chained is None:
            break
        entry = cur.chained
        try:
            entry, cur = image.unwind_info_for(entry)
        except UnwindError as exc:
            raise UnwindError(f"chained unwind info: {exc.message}", offset=entry.unwind_rva) from None
    else:
        raise UnwindError(f"more than {MAX_CHAIN} chained unwind records", offset=f.unwind_rva)

    if not machine:
        rsp = new["rsp"]
        new["rip"] = mem.u64(rsp)
        new["rsp"] = (rsp + 8) & MASK64
    return UnwindStep(new, f, machine, trap, False, False, tuple(restored))


def _reg(regs: Dict[str, int], n: int) -> int:
    try:
        return regs[GPR_NAMES[n]]
    except KeyError:
        raise UnwindError(f"register {GPR_NAMES[n]} unknown but needed as frame register") from None


# ---------------------------------------------------------------------- epilogs
def _epilog_v1(image: PEImage, base: int, f: RuntimeFunction, info: UnwindInfo, rva: int,
               regs: Dict[str, int], mem: UnwindMemory) -> Optional[UnwindStep]:
    """Recognise an epilog at ``rva`` from its bytes; emulate it if so."""
    try:
        code = image.read_rva(rva, min(64, image.size_of_image - rva))
    except ImageError:
        return None
    n = len(code)
    i = 0
    rsp_set: Optional[Tuple[str, Any]] = None     # ('add', imm) or ('lea', (reg, disp))
    # 1. optional 'add rsp, imm' / 'lea rsp, [fp + disp]'
    if n >= 4 and code[0] == 0x48 and code[1] == 0x83 and code[2] == 0xC4:
        rsp_set = ("add", code[3] if code[3] < 0x80 else code[3] - 0x100)
        i = 4
    elif n >= 7 and code[0] == 0x48 and code[1] == 0x81 and code[2] == 0xC4:
        rsp_set = ("add", struct.unpack_from("<i", code, 3)[0])
        i = 7
    elif n >= 4 and code[0] in (0x48, 0x49) and code[1] == 0x8D and (code[2] & 0x38) == 0x20:
        mod, rm = code[2] >> 6, code[2] & 7
        reg = rm + (8 if code[0] & 1 else 0)
        if rm == 4 or reg != info.frame_register or info.frame_register == 0:
            return None
        if mod == 1:
            rsp_set = ("lea", (reg, code[3] if code[3] < 0x80 else code[3] - 0x100))
            i = 4
        elif mod == 2 and n >= 7:
            rsp_set = ("lea", (reg, struct.unpack_from("<i", code, 3)[0]))
            i = 7
        else:
            return None
    # 2. pops
    pops: List[int] = []
    while i < n and len(pops) < 16:
        b = code[i]
        if 0x58 <= b <= 0x5F:
            pops.append(b - 0x58)
            i += 1
        elif 0x40 <= b <= 0x4F and i + 1 < n and 0x58 <= code[i + 1] <= 0x5F:
            pops.append(code[i + 1] - 0x58 + (8 if b & 1 else 0))
            i += 2
        else:
            break
    # 3. the terminating ret / jmp
    if i < n and code[i] == 0xF2:            # bnd prefix
        i += 1
    if i >= n:
        return None
    b = code[i]
    ok = False
    if b == 0xC3 or (b == 0xF3 and i + 1 < n and code[i + 1] == 0xC3):
        ok = True
    elif b in (0xEB, 0xE9):
        if b == 0xEB and i + 1 < n:
            target = rva + i + 2 + (code[i + 1] if code[i + 1] < 0x80 else code[i + 1] - 0x100)
        elif b == 0xE9 and i + 4 < n:
            target = rva + i + 5 + struct.unpack_from("<i", code, i + 1)[0]
        else:
            return None
        if target < f.begin or target >= f.end:
            ok = _outside_function(image, f, target)
        elif target == f.begin and not info.is_chained:
            ok = True
    elif b == 0xFF and i + 1 < n and code[i + 1] == 0x25:
        ok = True
    elif (b & 0xF8) == 0x48 and i + 2 < n and code[i + 1] == 0xFF and (code[i + 2] & 0x38) == 0x20:
        ok = True
    if not ok:
        return None
    # emulate
    new = dict(regs)
    if rsp_set is not None:
        kind, arg = rsp_set
        if kind == "add":
            new["rsp"] = (new["rsp"] + arg) & MASK64
        else:
            reg, disp = arg
            new["rsp"] = (_reg(new, reg) + disp) & MASK64
    restored: List[str] = []
    for r in pops:
        name = GPR_NAMES[r]
        new[name] = mem.u64(new["rsp"])
        new["rsp"] = (new["rsp"] + 8) & MASK64
        restored.append(name)
    new["rip"] = mem.u64(new["rsp"])
    new["rsp"] = (new["rsp"] + 8) & MASK64
    return UnwindStep(new, f, False, None, True, False, tuple(restored))


def _outside_function(image: PEImage, f: RuntimeFunction, target: int) -> bool:
    """A jmp to ``target`` leaves the function (tail call) unless it lands in another fragment of it."""
    try:
        g = image.function_for(target)
        if g is None:
            return True
        prim_f = image.primary_function(f)
        prim_g = image.primary_function(g)
    except (ImageError, UnwindError):
        return True
    if prim_f != prim_g:
        return True
    return target == prim_f.begin          # a jump to the start of itself: recursive tail call


def _epilog_v2(image: PEImage, f: RuntimeFunction, info: UnwindInfo, rva: int, regs: Dict[str, int],
               mem: UnwindMemory) -> Optional[UnwindStep]:
    """Version 2: is ``rva`` inside a described epilog?  If so emulate its pops and the ret."""
    where = None
    for start, size in epilogs_v2(info, f.end):
        if start <= rva < start + size:
            where = rva - start
            break
    if where is None:
        return None
    # the pop sequence mirrors the consecutive PUSH_NONVOL codes (reverse prolog order)
    seq: List[Tuple[str, int]] = []          # ('pop', reg) / ('popf', 0) / ('machframe', info)
    entry, cur = f, info
    started = False
    done = False
    for _depth in range(MAX_CHAIN + 1):
        for c in cur.codes:
            if c.op == UWOP_EPILOG:
                continue
            if c.op == UWOP_PUSH_NONVOL:
                seq.append(("pop", c.info))
                started = True
            elif c.op == UWOP_PUSH_MACHFRAME:
                seq.append(("machframe", c.value))
                done = True
                break
            elif started and c.op == UWOP_ALLOC_SMALL and c.value == 8:
                seq.append(("popf", 0))
            elif started:
                done = True
                break
        if done or cur.chained is None:
            break
        entry, cur = image.unwind_info_for(cur.chained)
    new = dict(regs)
    restored: List[str] = []
    pos = 0
    for kind, arg in seq:
        if kind == "machframe":
            if pos >= where:
                slot = (new["rsp"] + 8 * arg) & MASK64
                new["rip"] = mem.u64(slot)
                new["rsp"] = mem.u64(slot + MachineFrame.RSP)
                return UnwindStep(new, f, True, (slot - KTRAP_FRAME_RIP) & MASK64, True, False, tuple(restored))
            break
        size = 2 if kind == "pop" and arg >= 8 else 1
        if pos >= where:
            if kind == "pop":
                name = GPR_NAMES[arg]
                new[name] = mem.u64(new["rsp"])
                restored.append(name)
            new["rsp"] = (new["rsp"] + 8) & MASK64
        pos += size
    new["rip"] = mem.u64(new["rsp"])
    new["rsp"] = (new["rsp"] + 8) & MASK64
    return UnwindStep(new, f, False, None, True, False, tuple(restored))
