"""The stack walker: one loop for every architecture, running the arch's ordered strategies.

Frame 0 comes from the context (trust ``context``).  Each caller frame is then found by
the first of the architecture's strategies (``dumpkit.arch.<arch>.walk.STRATEGIES``) that
gives one, and the frame is stamped with the trust that strategy reports:

* ``cfi``: unwind data (.pdata/UNWIND_INFO on x64, .pdata/.xdata on ARM64), including
  trap/machine frames: the walk then continues in the interrupted code, and that frame
  records ``Frame.trap_frame`` (``TrapFrame @ ...``);
* ``frame_pointer``: a frame-pointer chain (x64: RBP chain seen while scanning; ARM64:
  the x29/x30 frame record);
* ``scan``: a bounded scan of the stack for a value that lies in a loaded module, in an
  executable section with a function entry when the image is known, and right after a
  call instruction when the code bytes are available (from the image, or from the dump).

Walks always end: at ``max_frames``, when SP stops growing (trap frames may switch
stacks, at most 8 times), when SP leaves ``stack_range``, when the return address is
below 0x1000, or when the memory budget is spent.
"""
from __future__ import annotations

import struct
from typing import Any, Dict, NamedTuple, Optional, Protocol, Set, Tuple

from ..errors import DumpError, ImageError, MemoryReadError, UnwindError
from ..model import Context, Frame, Module, ModuleList, Stack, VirtualReader
from ..pe.image import PEImage
from ..pe.provider import ImageProvider

PAGE = 0x1000
DEFAULT_SCAN_BYTES = 0x800
DEFAULT_READ_BUDGET = 4 << 20
MAX_STACK_SWITCHES = 8

MASK64 = 0xFFFFFFFFFFFFFFFF
_Q = struct.Struct("<Q")


class SymbolResult(Protocol):
    symbol: Optional[str]
    offset: int
    source: str


class Resolver(Protocol):
    """Symbol resolver: ``resolve(module, address)`` -> object with .symbol, .offset, .source (or None).

    ``address`` is the lookup address (the return address minus one for caller
    frames); ``offset`` is relative to it, and the walker adds the one back.
    """

    def resolve(self, module: Module, address: int) -> Optional[SymbolResult]: ...


def is_canonical(va: int) -> bool:
    """x64 canonical address (kept for callers; the walker asks its architecture's rules)."""
    return va < 0x0000800000000000 or 0xFFFF800000000000 <= va <= MASK64


class WalkRules:
    """What the walk loop needs to know of an architecture (each arch's ``walk.RULES``)."""

    ip = "rip"
    sp = "rsp"
    fp = "rbp"
    pointer_size = 8
    sp_align = 8
    context_class = Context
    #: bytes before a return address to fetch for the call check
    call_window = 7

    def canonical(self, va: int) -> bool:
        return is_canonical(va)

    def ends_with_call(self, code: bytes, ra: int) -> bool:
        raise NotImplementedError

    def lookup_address(self, pc: int, exact: bool) -> int:
        """The address to look a frame up at: the PC itself, or inside the call before a return address."""
        return pc if exact else pc - 1


# ---------------------------------------------------------------------- memory
class StackMemory:
    """Cached, budgeted reads through a :class:`VirtualReader`.

    Whole pages are cached; where a page cannot be read as a whole (a triage
    dump's stack starts mid-page) exact reads are cached instead.  Every byte
    requested from the reader counts against ``budget``; past it, reads raise
    :class:`UnwindError`, which ends the walk.
    """

    def __init__(self, reader: VirtualReader, budget: int = DEFAULT_READ_BUDGET) -> None:
        self.reader = reader
        self.budget = budget
        self.bytes_read = 0
        self._pages: Dict[int, bytes] = {}
        self._bad_pages: Set[int] = set()
        self._small: Dict[Tuple[int, int], Any] = {}

    def _charge(self, n: int) -> None:
        self.bytes_read += n
        if self.bytes_read > self.budget:
            raise UnwindError(f"read budget of {self.budget:#x} bytes exhausted")

    def read(self, va: int, size: int) -> bytes:
        off = va & (PAGE - 1)
        if off + size <= PAGE:
            pva = va - off
            pg = self._pages.get(pva)
            if pg is not None:
                return pg[off:off + size]
            if pva not in self._bad_pages:
                self._charge(PAGE)
                try:
                    data = self.reader.read_virtual(pva, PAGE)
                except DumpError:
                    data = None
                if data is not None and len(data) == PAGE:
                    pg = bytes(data)
                    self._pages[pva] = pg
                    return pg[off:off + size]
                self._bad_pages.add(pva)
        key = (va, size)
        got = self._small.get(key)
        if got is None:
            self._charge(size)
            try:
                data = self.reader.read_virtual(va, size)
                got = bytes(data) if data is not None and len(data) == size else \
                    MemoryReadError(f"short read at {va:#x}", address=va)
            except DumpError as exc:
                got = exc
            self._small[key] = got
        if isinstance(got, DumpError):
            raise got
        return got

    def u64(self, va: int) -> Optional[int]:
        try:
            return _Q.unpack(self.read(va, 8))[0]
        except UnwindError:
            raise
        except DumpError:
            return None


# ---------------------------------------------------------------------- call check
_CS = None


def _capstone():
    global _CS
    if _CS is None:
        from capstone import CS_ARCH_X86, CS_MODE_64, Cs
        _CS = Cs(CS_ARCH_X86, CS_MODE_64)
    return _CS


def _ff2_size(code: bytes, i: int) -> Optional[int]:
    """Length of ``[REX] FF /2`` (``call r/m64``) or ``FF /3`` (far ``call m16:64``) starting at
    ``code[i]``, or None when the bytes there are not one of them.  ModRM/SIB/displacement sizes per the Intel SDM
    (64-bit mode: mod 00 r/m 101 is RIP+disp32; SIB base 101 with mod 00 has a disp32)."""
    n = len(code)
    if i < n and 0x40 <= code[i] <= 0x4F:
        i += 1
        size = 1
    else:
        size = 0
    if i + 1 >= n or code[i] != 0xFF:
        return None
    modrm = code[i + 1]
    reg, mod, rm = (modrm >> 3) & 7, modrm >> 6, modrm & 7
    if reg not in (2, 3) or (reg == 3 and mod == 3):      # /3 is the far call, memory only
        return None
    size += 2
    if mod == 3:
        return size
    if rm == 4:
        if i + 2 >= n:
            return None
        size += 1
        if mod == 0 and code[i + 2] & 7 == 5:
            return size + 4
    elif mod == 0 and rm == 5:
        return size + 4
    return size + (0, 1, 4)[mod]


def ends_with_call(code: bytes, ra: int) -> bool:
    """Do the bytes just before ``ra`` (``code`` ends at ``ra``) end with a call instruction?

    ``E8 rel32`` and ``[REX] FF /2`` (``call r/m64``, 2 to 7 bytes) are decoded here; only
    candidates that start with a legacy prefix (segment, ``F2``) go to capstone, so the
    common walk never imports it.
    """
    n = len(code)
    if n >= 5 and code[n - 5] == 0xE8:
        return True
    for length in (2, 3, 6, 7, 4, 5):
        if length > n:
            continue
        start = n - length
        b0 = code[start]
        if b0 == 0xFF or (0x40 <= b0 <= 0x4F and code[start + 1] == 0xFF):
            if _ff2_size(code, start) == length:
                return True
            continue
        # FF /2 after a legacy prefix (or a REX run): rare; capstone decides
        if not (0x40 <= b0 <= 0x4F or b0 in (0x2E, 0x3E, 0x26, 0x64, 0x65, 0x36, 0xF2)):
            continue
        if 0xFF not in code[start:]:
            continue
        for insn in _capstone().disasm(code[start:], ra - length, 1):
            if insn.size == length and insn.mnemonic == "call":
                return True
    return False


# ---------------------------------------------------------------------- walker
class Next(NamedTuple):
    """A strategy's answer: the caller's registers and how far to trust them."""

    regs: Dict[str, int]
    valid: Set[str]
    trust: str
    exact: bool
    trap_frame: Optional[int]
    switched_stack: bool


_Next = Next


class StackWalker:
    """Walk state shared by the frames of one walk (caches, budget), for one architecture.

    ``arch`` is an :class:`dumpkit.arch.Architecture` (default: the context's); its
    ``walk`` module gives the rules and the ordered strategies.  A strategy is a
    callable ``(walker, regs, valid, exact) -> Next | None``.
    """

    def __init__(self, reader: VirtualReader, modules: ModuleList, images: Optional[ImageProvider],
                 resolver: Optional[Resolver] = None, *, scan_bytes: int = DEFAULT_SCAN_BYTES,
                 stack_range: Optional[Tuple[int, int]] = None, read_budget: int = DEFAULT_READ_BUDGET,
                 arch: Any = None) -> None:
        if arch is None:
            from ..arch import by_name
            arch = by_name("x64")
        self.arch = arch
        self.rules: WalkRules = arch.walk_rules()
        self.strategies = tuple(arch.walk_strategies())
        self.trust = "context"
        self.mem = StackMemory(reader, read_budget)
        self.modules = modules
        self.images = images
        self.resolver = resolver
        self.scan_bytes = max(8, scan_bytes)
        self.stack_range = stack_range
        self._image_cache: Dict[int, Optional[PEImage]] = {}
        self._ra_cache: Dict[int, int] = {}

    # -- modules and images
    def image(self, module: Module) -> Optional[PEImage]:
        if module.unloaded or self.images is None:
            return None
        key = id(module)
        if key not in self._image_cache:
            try:
                img = self.images.image_for(module)
            except DumpError:
                img = None
            self._image_cache[key] = img
        return self._image_cache[key]

    # -- the walk
    def walk(self, context: Context, max_frames: int = 256) -> Stack:
        R = self.rules
        IP, SP = R.ip, R.sp
        frames = Stack()
        regs = {k: v for k, v in context.regs.items()}
        valid = set(context.valid)
        if IP not in regs or SP not in regs:
            return frames
        ctx_class = type(context) if isinstance(context, R.context_class) else R.context_class
        trust = "context"
        exact = True
        switches = 0
        source = context.source or "context"
        trap_in: Optional[int] = None
        for idx in range(max(0, max_frames)):
            pc, sp = regs[IP], regs[SP]
            frame = Frame(index=idx, instruction=pc, child_sp=sp, trust=trust,
                          context=ctx_class(regs, source if idx == 0 else ("trap_frame" if trap_in else "unwind"),
                                            context.address if idx == 0 else trap_in, valid),
                          trap_frame=trap_in)
            self._symbolize(frame, exact)
            frames.append(frame)
            self.trust = trust           # how the current frame was found (strategies may ask)
            try:
                nxt = self._caller(regs, valid, exact)
            except UnwindError:          # budget spent
                nxt = None
            if nxt is None:
                break
            frame.return_address = nxt.regs[IP]
            trap_in = nxt.trap_frame
            nrip, nsp = nxt.regs[IP], nxt.regs[SP]
            if nrip < 0x1000 or not R.canonical(nrip):
                break                    # end of the stack (thread start returns to 0)
            if nxt.switched_stack:
                switches += 1
                if switches > MAX_STACK_SWITCHES or nsp == sp:
                    break
            elif nsp < sp or (nsp == sp and not (exact and nrip != pc)):
                break                    # SP must grow; only a leaf seen from an exact PC keeps it
            if self.stack_range is not None and not nxt.switched_stack and \
                    not self.stack_range[0] <= nsp <= self.stack_range[1]:
                break
            regs, valid, trust, exact = nxt.regs, nxt.valid, nxt.trust, nxt.exact
        return frames

    def _caller(self, regs: Dict[str, int], valid: Set[str], exact: bool) -> Optional[Next]:
        """The first strategy's answer (they raise UnwindError only when the budget is spent)."""
        for strategy in self.strategies:
            nxt = strategy(self, regs, valid, exact)
            if nxt is not None:
                return nxt
        return None

    def module_and_image(self, pc: int, exact: bool) -> Tuple[Optional[Module], Optional[PEImage]]:
        module = self.modules.find(self.rules.lookup_address(pc, exact))
        image = self.image(module) if module is not None else None
        return module, image

    def return_address_ok(self, ra: int) -> bool:
        """Is ``ra`` a plausible return address (in a module's code, after a call where checkable)?"""
        return self._return_address_ok(ra)

    def _return_address_ok(self, ra: int) -> bool:
        got = self._ra_cache.get(ra)
        if got is None:
            got = self._check_return_address(ra)
            self._ra_cache[ra] = got
        return got > 0

    def _check_return_address(self, ra: int) -> int:
        """0 = rejected, 1 = in a module but unverifiable, 2 = follows a call."""
        m = self.modules.find(ra - 1)
        if m is None or m.unloaded:
            return 0
        image = self.image(m)
        code: Optional[bytes] = None
        win = self.rules.call_window
        if image is not None:
            rva = ra - m.base
            try:
                if not image.is_executable(rva - 1):
                    return 0
                if image.runtime_functions and image.function_for(rva - 1) is None:
                    return 0
                if rva >= win:
                    code = image.read_rva(rva - win, win)
            except ImageError:
                code = None
        if code is None:
            try:
                code = self.mem.read(ra - win, win)
            except UnwindError:
                raise
            except DumpError:
                code = None
        if code is None:
            return 1                     # in a module, but no code bytes to check the call
        return 2 if self.rules.ends_with_call(code, ra) else 0

    # -- symbols
    def _symbolize(self, frame: Frame, exact: bool) -> None:
        pc = frame.instruction
        look = self.rules.lookup_address(pc, exact)
        m = self.modules.find(look)
        if m is None:
            return
        frame.image_name = m.name
        if m.unloaded:
            frame.module = f"<Unloaded_{m.name}>"
            frame.offset = pc - m.base
            frame.symbol_source = "module"
            return
        frame.module = m.windbg_name
        if self.resolver is not None:
            try:
                res = self.resolver.resolve(m, look)
            except DumpError:
                res = None
            if res is not None and getattr(res, "symbol", None):
                frame.symbol = res.symbol
                frame.offset = res.offset + (pc - look)
                frame.symbol_source = getattr(res, "source", "resolver")
                return
        image = self.image(m)
        if image is not None:
            try:
                hit = image.export_lookup(look - m.base)
            except DumpError:
                hit = None
            if hit is not None:
                frame.symbol, disp = hit
                frame.offset = disp + (pc - look)
                frame.symbol_source = "exports"
                return
        frame.offset = pc - m.base
        frame.symbol_source = "module"


def walk_stack(reader: VirtualReader, context: Context, modules: ModuleList,
               images: Optional[ImageProvider] = None, resolver: Optional[Resolver] = None,
               max_frames: int = 256, scan_bytes: int = DEFAULT_SCAN_BYTES, *,
               stack_range: Optional[Tuple[int, int]] = None,
               read_budget: int = DEFAULT_READ_BUDGET, arch: Any = None) -> Stack:
    """Walk the stack that starts at ``context``; returns a WinDbg-style :class:`Stack`.

    ``reader`` gives virtual memory (``read_virtual(va, size)``), ``modules`` the
    loaded modules, ``images`` the PE images (unwind data, code bytes, exports),
    ``resolver`` symbol names.  ``scan_bytes`` bounds each stack scan,
    ``stack_range`` = (low, high) bounds SP, ``read_budget`` the bytes read.  ``arch``
    (an :class:`dumpkit.arch.Architecture`) defaults to the context's architecture.
    """
    if arch is None:
        from ..arch import of_context
        arch = of_context(context)
    own = getattr(arch.part("walk"), "walk_stack", None)
    if own is not None:                       # an architecture with its own walk loop (x86)
        return own(reader, context, modules, images, resolver, max_frames, scan_bytes, stack_range=stack_range,
                   read_budget=read_budget)
    walker = StackWalker(reader, modules, images, resolver, scan_bytes=scan_bytes,
                         stack_range=stack_range, read_budget=read_budget, arch=arch)
    return walker.walk(context, max_frames)
