"""The x86 stack walker: context, frame data (FPO), trap frames, EBP chain, validated scan.

Each caller frame is found, strongest first, by

* ``cfi``: the function's FRAMEDATA program or FPO_DATA record from its PDB
  (:mod:`.fpo`); the return address is looked for from ``.raSearchStart`` = ESP +
  the callee's parameter bytes + locals + saved registers, as dbghelp and Breakpad do;
  an FPO record of frame type "trap" and a KTRAP_FRAME found at EBP (its DbgEbp/DbgEip
  mirror Ebp/Eip, a code selector, a sane EFLAGS) continue the walk in the interrupted
  code with the trap frame's registers (``Frame.trap_frame``, the PC exact);
* ``frame_pointer``: the EBP chain (``[ebp+4]`` the return address, ``[ebp]`` the caller's EBP);
* ``scan``: the first stack slot holding an address inside a loaded module, in an
  executable section, right after a call instruction.

Every return address is validated the same way before it is used.  Walks end at
``max_frames``, at a return address below 0x1000, when ESP stops growing, when it leaves
``stack_range``, or when the read budget is spent.  ``Frame.frame_base`` is WinDbg's
ChildEBP: the address of the frame's return-address slot minus 4 (EBP for EBP frames).
"""
from __future__ import annotations

import struct
from typing import Callable, Dict, NamedTuple, Optional, Set, Tuple

from ...errors import DumpError, ImageError, UnwindError
from ...model import Frame, Module, ModuleList, Stack, VirtualReader
from ...pe.provider import ImageProvider
from ...unwind.walker import DEFAULT_READ_BUDGET, StackMemory
from .context import (KTRAP_FRAME_X86_SIZE, X86Context, context_from_trap_frame32,
                      looks_like_trap_frame32)
from .fpo import FRAME_TRAP, FpoData, FrameData, FrameDataTable, evaluate_program

MASK32 = 0xFFFFFFFF
DEFAULT_SCAN_BYTES = 0x400
RA_SEARCH_SLOTS = 16
MAX_EBP_FRAME = 0x10000

_CS32 = None


def _capstone32():
    global _CS32
    if _CS32 is None:
        from capstone import CS_ARCH_X86, CS_MODE_32, Cs
        _CS32 = Cs(CS_ARCH_X86, CS_MODE_32)
    return _CS32


def ends_with_call32(code: bytes, ra: int) -> bool:
    """Do the bytes before ``ra`` (``code`` ends at ``ra``) end with a 32-bit call instruction?"""
    n = len(code)
    if n >= 5 and code[n - 5] == 0xE8:
        return True
    cs = _capstone32()
    for length in (2, 3, 6, 7, 4):
        if length > n:
            continue
        start = n - length
        b0 = code[start]
        if b0 != 0xFF and b0 not in (0x2E, 0x3E, 0x26, 0x64, 0x65, 0x36):
            continue
        for insn in cs.disasm(code[start:], (ra - length) & MASK32, 1):
            if insn.size == length and insn.mnemonic == "call":
                return True
    return False


class _Step(NamedTuple):
    regs: Dict[str, int]
    valid: Set[str]
    trust: str
    exact: bool
    ra_slot: Optional[int]
    trap_frame: Optional[int]
    params: int                 # the frame's own parameter bytes (for its caller's .raSearchStart)


FrameDataSource = Callable[[Module], Optional[FrameDataTable]]


def frame_data_from_resolver(resolver) -> FrameDataSource:
    """A frame-data source over a :class:`dumpkit.symbolize.Resolver`: each module's PDB, read once."""
    cache: Dict[int, Optional[FrameDataTable]] = {}

    def get(module: Module) -> Optional[FrameDataTable]:
        key = id(module)
        if key not in cache:
            table = None
            try:
                ms = resolver.module_symbols(module)
                if getattr(ms, "pdb", None) is not None:
                    table = FrameDataTable.from_pdb(ms.pdb)
            except DumpError:
                table = None
            cache[key] = table if table is not None and len(table) else None
        return cache[key]
    return get


class X86StackWalker:
    def __init__(self, reader: VirtualReader, modules: ModuleList, images: Optional[ImageProvider] = None,
                 resolver=None, frame_data: Optional[FrameDataSource] = None, *,
                 scan_bytes: int = DEFAULT_SCAN_BYTES, stack_range: Optional[Tuple[int, int]] = None,
                 read_budget: int = DEFAULT_READ_BUDGET) -> None:
        self.mem = StackMemory(reader, read_budget)
        self.modules = modules
        self.images = images
        self.resolver = resolver
        self.frame_data = frame_data
        self.scan_bytes = max(4, scan_bytes)
        self.stack_range = stack_range
        self._image_cache: Dict[int, object] = {}
        self._ra_cache: Dict[int, int] = {}

    # -- memory and modules
    def u32(self, va: int) -> Optional[int]:
        if not 0 <= va <= MASK32 - 3:
            return None
        try:
            return struct.unpack("<I", self.mem.read(va, 4))[0]
        except UnwindError:
            raise
        except DumpError:
            return None

    def image(self, module: Module):
        if module.unloaded or self.images is None:
            return None
        key = id(module)
        if key not in self._image_cache:
            try:
                self._image_cache[key] = self.images.image_for(module)
            except DumpError:
                self._image_cache[key] = None
        return self._image_cache[key]

    def return_address_ok(self, ra: int) -> bool:
        return self.return_address_verdict(ra) > 0

    def return_address_verdict(self, ra: int) -> int:
        """0 = not a return address, 1 = inside a module but its code is unavailable, 2 = after a call."""
        if ra < 0x1000 or ra > MASK32:
            return 0
        got = self._ra_cache.get(ra)
        if got is None:
            got = self._check_ra(ra)
            self._ra_cache[ra] = got
        return got

    def _check_ra(self, ra: int) -> int:
        m = self.modules.find(ra - 1)
        if m is None or m.unloaded:
            return 0
        code: Optional[bytes] = None
        img = self.image(m)
        if img is not None:
            rva = ra - m.base
            try:
                if not img.is_executable(rva - 1):
                    return 0
                if rva >= 7:
                    code = img.read_rva(rva - 7, 7)
            except ImageError:
                code = None
        if code is None:
            try:
                code = self.mem.read(ra - 7, 7)
            except UnwindError:
                raise
            except DumpError:
                return 1
        return 2 if ends_with_call32(code, ra) else 0

    def _record(self, pc: int, exact: bool):
        if self.frame_data is None:
            return None
        look = pc if exact else pc - 1
        m = self.modules.find(look)
        if m is None or m.unloaded:
            return None
        table = self.frame_data(m)
        return None if table is None else table.lookup(look - m.base)

    # -- the walk
    def walk(self, context: X86Context, max_frames: int = 256) -> Stack:
        frames = X86Stack()
        regs = dict(context.regs)
        valid = set(context.valid)
        if "eip" not in regs or "esp" not in regs:
            return frames
        trust, exact, trap_in, callee_params = "context", True, None, 0
        source = context.source or "context"
        for idx in range(max(0, max_frames)):
            pc, sp = regs["eip"], regs["esp"]
            ctx = X86Context(regs, source if idx == 0 else ("trap_frame" if trap_in else "unwind"),
                             context.address if idx == 0 else trap_in, valid)
            frame = Frame(index=idx, instruction=pc, child_sp=sp, trust=trust, context=ctx, trap_frame=trap_in)
            frame.frame_base = regs.get("ebp", 0)          # replaced by the RA slot when it is found
            self._symbolize(frame, exact)
            frames.append(frame)
            try:
                nxt = self._caller(regs, valid, exact, callee_params)
            except UnwindError:
                nxt = None
            if nxt is None:
                break
            if nxt.ra_slot is not None:
                frame.frame_base = (nxt.ra_slot - 4) & MASK32
            frame.return_address = nxt.regs["eip"]
            nip, nsp = nxt.regs["eip"], nxt.regs["esp"]
            if nip < 0x1000:
                break
            if nsp <= sp and nxt.trap_frame is None:
                break
            if self.stack_range is not None and not self.stack_range[0] <= nsp <= self.stack_range[1]:
                break
            regs, valid, trust, exact, trap_in, callee_params = (nxt.regs, nxt.valid, nxt.trust, nxt.exact,
                                                                 nxt.trap_frame, nxt.params)
        return frames

    def _caller(self, regs: Dict[str, int], valid: Set[str], exact: bool, callee_params: int) -> Optional[_Step]:
        pc = regs["eip"]
        rec = self._record(pc, exact)
        if isinstance(rec, FpoData) and rec.frame_type == FRAME_TRAP and "ebp" in valid:
            step = self._trap_at(regs["ebp"], regs)
            if step is not None:
                return step
        if rec is not None:
            step = self._unwind_record(rec, regs, valid, callee_params)
            if step is not None:
                return step
        if "ebp" in valid:
            step = self._trap_at(regs["ebp"], regs)
            if step is not None:
                return step
            step = self._ebp_chain(regs, valid)
            if step is not None:
                return step
        return self._scan(regs)

    def _unwind_record(self, rec, regs: Dict[str, int], valid: Set[str], callee_params: int) -> Optional[_Step]:
        sp = regs["esp"]
        if isinstance(rec, FrameData):
            saved = rec.saved_regs
        else:
            saved = rec.saved_regs * 4
        starts = []
        for p in (callee_params, 0):
            s = (sp + p + rec.locals + saved) & MASK32
            if s not in starts:
                starts.append(s)
        slot = None
        for s in starts:
            v = self.u32(s)
            if v is not None and self.return_address_ok(v):
                slot = s
                break
        if slot is None:
            for k in range(1, RA_SEARCH_SLOTS + 1):
                s = (starts[0] + 4 * k) & MASK32
                v = self.u32(s)
                if v is None:
                    break
                if self.return_address_ok(v):
                    slot = s
                    break
        if isinstance(rec, FrameData) and rec.program:
            env = {f"${r}": regs[r] for r in ("eip", "esp", "ebp", "ebx", "esi", "edi", "eax", "ecx", "edx")
                   if r in regs}
            env[".raSearch"] = slot if slot is not None else starts[0]
            env[".raSearchStart"] = starts[0]
            env[".cbSavedRegs"], env[".cbLocals"], env[".cbParams"] = rec.saved_regs, rec.locals, rec.params
            try:
                out, assigned = evaluate_program(rec.program, env, self.u32)
            except UnwindError as exc:
                if "budget" in exc.message:
                    raise
                return None
            if "$eip" not in assigned or "$esp" not in assigned:
                return None
            new = dict(regs)
            restored = set()
            for name in assigned:
                r = name[1:]
                if r in ("eip", "esp", "ebp", "ebx", "esi", "edi"):
                    new[r] = out[name] & MASK32
                    restored.add(r)
            ra_slot = (new["esp"] - 4) & MASK32
            if not self.return_address_ok(new["eip"]) and new["eip"] >= 0x1000:
                return None
        else:
            if slot is None:
                return None
            new = dict(regs)
            new["eip"] = self.u32(slot) or 0
            new["esp"] = (slot + 4) & MASK32
            restored = {"eip", "esp"}
            if isinstance(rec, FpoData) and rec.uses_bp:
                bp = self.u32((slot - 4) & MASK32)
                if bp is not None:
                    new["ebp"] = bp
                    restored.add("ebp")
            ra_slot = slot
        new_valid = (valid - {"eax", "ecx", "edx", "eflags"}) | restored
        return _Step(new, new_valid, "cfi", False, ra_slot, None, rec.params)

    def _trap_at(self, ebp: int, regs: Dict[str, int]) -> Optional[_Step]:
        if ebp & 3 or ebp < 0x1000 or ebp > MASK32 - KTRAP_FRAME_X86_SIZE:
            return None
        if self.stack_range is not None and not self.stack_range[0] <= ebp < self.stack_range[1]:
            return None
        try:
            data = self.mem.read(ebp, KTRAP_FRAME_X86_SIZE - 0x10)
        except UnwindError:
            raise
        except DumpError:
            return None
        if not looks_like_trap_frame32(data):
            return None
        ctx = context_from_trap_frame32(data, ebp)
        m = self.modules.find(ctx.regs["eip"])
        if m is None or m.unloaded:
            return None
        return _Step(dict(ctx.regs), set(ctx.valid), "cfi", True, (ebp + 4) & MASK32, ebp, 0)

    def _ebp_chain(self, regs: Dict[str, int], valid: Set[str]) -> Optional[_Step]:
        ebp, sp = regs["ebp"], regs["esp"]
        if ebp & 3 or ebp < sp or ebp - sp > MAX_EBP_FRAME:
            return None
        if self.stack_range is not None and not self.stack_range[0] <= ebp < self.stack_range[1]:
            return None
        ra = self.u32(ebp + 4)
        caller_bp = self.u32(ebp)
        if ra is None or caller_bp is None:
            return None
        if ra >= 0x1000 and not self.return_address_ok(ra):
            return None
        new = dict(regs)
        new.update(eip=ra, esp=(ebp + 8) & MASK32, ebp=caller_bp)
        new_valid = {"eip", "esp", "ebp"}
        return _Step(new, new_valid, "frame_pointer", False, (ebp + 4) & MASK32, None, 0)

    def _scan(self, regs: Dict[str, int]) -> Optional[_Step]:
        """The first slot holding a verified return address (after a call instruction); failing
        that, the first one that lies in a module whose code is not available to check."""
        sp = regs["esp"]
        if sp & 3:
            return None
        end = sp + self.scan_bytes
        if self.stack_range is not None:
            end = min(end, self.stack_range[1])
        fallback = None
        slot = sp
        while slot < end:
            v = self.u32(slot)
            if v is None:
                break
            if v >= 0x1000:
                verdict = self.return_address_verdict(v)
                if verdict == 2:
                    fallback = slot
                    break
                if verdict == 1 and fallback is None:
                    fallback = slot
            slot += 4
        if fallback is None:
            return None
        new = dict(regs)
        new.update(eip=self.u32(fallback) or 0, esp=(fallback + 4) & MASK32)
        return _Step(new, {"eip", "esp"}, "scan", False, fallback, None, 0)

    # -- symbols
    def _symbolize(self, frame: Frame, exact: bool) -> None:
        pc = frame.instruction
        look = pc if exact else pc - 1
        m = self.modules.find(look)
        if m is None:
            return
        frame.image_name = m.name
        if m.unloaded:
            frame.module, frame.offset, frame.symbol_source = f"Unloaded_{m.name}", pc - m.base, "module"
            return
        frame.module = m.windbg_name
        if self.resolver is not None:
            try:
                res = self.resolver.resolve(m, look)
            except DumpError:
                res = None
            if res is not None and getattr(res, "symbol", None):
                frame.symbol = undecorate32(res.symbol)
                frame.offset = res.offset + (pc - look)
                frame.symbol_source = getattr(res, "source", "resolver")
                return
        img = self.image(m)
        if img is not None:
            try:
                hit = img.export_lookup(look - m.base)
            except DumpError:
                hit = None
            if hit is not None:
                frame.symbol = undecorate32(hit[0])
                frame.offset = hit[1] + (pc - look)
                frame.symbol_source = "exports"
                return
        frame.offset = pc - m.base
        frame.symbol_source = "module"


def undecorate32(name: str) -> str:
    """x86 C decorations as WinDbg drops them: ``_Name@8`` (stdcall), ``@Name@8`` (fastcall), ``_Name``."""
    if not name or name.startswith("?"):
        return name
    if name[0] in "_@" and len(name) > 1:
        body = name[1:]
        head, sep, tail = body.rpartition("@")
        if sep and tail.isdigit() and head:
            return head
        if name[0] == "_":
            return body
    return name


class X86Stack(Stack):
    """Frames that render like WinDbg's x86 ``kn``: ChildEBP, RetAddr, Call Site."""

    def render(self) -> str:
        lines = [" # ChildEBP RetAddr  "]
        for f in self:
            base = getattr(f, "frame_base", None)
            if base is None:
                base = f.context.regs.get("ebp", 0) if f.context is not None else 0
            lines.append(f"{f.index:02x} {base & MASK32:08x} {f.return_address & MASK32:08x} {f.call_site}")
        return "\n".join(lines)


def walk_stack32(reader: VirtualReader, context: X86Context, modules: ModuleList,
                 images: Optional[ImageProvider] = None, resolver=None, *,
                 frame_data: Optional[FrameDataSource] = None, max_frames: int = 256,
                 scan_bytes: int = DEFAULT_SCAN_BYTES, stack_range: Optional[Tuple[int, int]] = None,
                 read_budget: int = DEFAULT_READ_BUDGET) -> Stack:
    """Walk the x86 stack that starts at ``context``.  ``frame_data`` gives each module's FPO
    records (default: from the resolver's PDBs, when a resolver is given)."""
    if frame_data is None and resolver is not None and hasattr(resolver, "module_symbols"):
        frame_data = frame_data_from_resolver(resolver)
    w = X86StackWalker(reader, modules, images, resolver, frame_data, scan_bytes=scan_bytes,
                       stack_range=stack_range, read_budget=read_budget)
    return w.walk(context, max_frames)


__all__ = ["X86StackWalker", "X86Stack", "walk_stack32", "frame_data_from_resolver", "ends_with_call32",
           "undecorate32"]
