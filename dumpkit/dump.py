"""The :class:`Dump` facade: one object per opened kernel dump.

It wires the layers together (io -> formats -> memory -> kernel) and is what
``dumpkit.open(path)`` returns.  Higher layers (stack walking, symbols, analysis)
are reached through methods that import them lazily, so opening a dump costs only
the header and the physical index.
"""
from __future__ import annotations

import datetime as _dt
import os
import warnings
from typing import Dict, Iterator, List, Optional, Tuple, Union

from .errors import (CorruptDumpError, DumpError, DumpWarning, MemoryReadError,
                     TranslationError, TruncatedDumpError)
from .formats.header import DumpHeader, parse_header
from .formats.triage import TriageDump, parse_triage
from .io import Source
from .memory.physical import BitmapLayer, PhysicalLayer, RunsLayer, check_data_fits
from .memory.sparse import SparseMemory
from .memory.x64 import X64Translator
from .model import Context, Module, ModuleList

SIG_SDMP = b"SDMP"
SIG_FDMP = b"FDMP"
SIG_DUMP = b"DUMP"


def _bugcheck_name(code: int) -> Optional[str]:
    try:
        from .analysis.kb import KnowledgeBase   # knowledge base data (symbols/); optional here
        info = KnowledgeBase.load().bugcheck(code)
        return info.name if info else None
    except Exception:  # noqa: BLE001 - a name is a nicety; never fail opening a dump for it
        return None


class Bugcheck:
    """The bug check: code (as stored, with the 0x10000000 '_M' bit), name, four parameters.

    The name comes from the knowledge base, looked up on first use (opening stays cheap).
    """

    _UNSET = object()

    def __init__(self, code: int, parameters: Tuple[int, int, int, int], name=_UNSET) -> None:
        self.code = code
        self.parameters = tuple(parameters)
        self._name = name

    @property
    def name(self) -> Optional[str]:
        if self._name is Bugcheck._UNSET:
            self._name = _bugcheck_name(self.code)
        return self._name  # type: ignore[return-value]

    @property
    def base_code(self) -> int:
        """The code with the 0x10000000 '_M' bit cleared (0x1000007E -> 0x7E)."""
        return self.code & ~0x10000000 if self.code & 0x10000000 and self.code < 0x20000000 else self.code

    def to_json(self) -> dict:
        return {"code": hex(self.code), "name": self.name, "parameters": [hex(p) for p in self.parameters]}

    def __str__(self) -> str:
        ps = ", ".join(f"{p:#x}" for p in self.parameters)
        return f"{self.name or 'BUGCHECK'} ({self.code:#x}) [{ps}]"

    def __repr__(self) -> str:
        return f"<Bugcheck {self}>"


class Dump:
    """A 64-bit Windows kernel crash dump (full, kernel, bitmap or triage).

    Use ``dumpkit.open(path)``; the object is a context manager.
    """

    def __init__(self, source: Source) -> None:
        self.source = source
        self.path = source.path
        self.warnings: List[str] = []
        self.header: DumpHeader = parse_header(source)
        for w in self.header.warnings:
            self._warn(w)
        self.dump_type_code: int = self.header.dump_type
        self.dump_type: str = self.header.dump_type_name
        self.physical: Optional[PhysicalLayer] = None
        self.triage: Optional[TriageDump] = None
        self._sparse: Optional[SparseMemory] = None
        self._kernel_space: Optional[X64Translator] = None
        self._spaces: Dict[int, X64Translator] = {}
        self.bitmap_signature: Optional[str] = None
        req = self.header.required_dump_space
        if req and req > source.size and self.dump_type_code != 4:
            self._warn(f"truncated at offset {source.size:#x}: the writer expected {req:#x} bytes "
                       f"({req - source.size:,} missing); pages past the end read as missing")
        if self.dump_type_code == 1:
            self._open_full()
        elif self.dump_type_code in (2, 5, 6):
            self._open_bitmap()
        elif self.dump_type_code == 4:
            self._open_triage()
        self.bugcheck = Bugcheck(self.header.bugcheck_code, self.header.bugcheck_parameters)
        self._modules: Optional[ModuleList] = None
        self._unloaded: Optional[ModuleList] = None
        self._contexts: Optional[Dict[str, Context]] = None

    # -- opening ---------------------------------------------------------------
    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        warnings.warn(DumpWarning(f"{self.path}: {text}"), stacklevel=4)

    def _open_full(self) -> None:
        h = self.header
        if h.number_of_runs is None:
            raise CorruptDumpError("full dump without a PHYSICAL_MEMORY_DESCRIPTOR (NumberOfRuns is unset)",
                                   path=self.path, offset=0x88, expected="NumberOfRuns")
        runs = [(r.base_page, r.page_count) for r in h.runs]
        total = sum(c for _, c in runs)
        if h.number_of_pages is not None and total != h.number_of_pages:
            self._warn(f"the runs hold {total:#x} pages but NumberOfPages says {h.number_of_pages:#x}")
        if any(b + c > 1 << 40 for b, c in runs):
            raise CorruptDumpError("a physical run lies beyond the 52-bit physical address space", path=self.path,
                                   offset=0x98, expected="BasePage + PageCount < 2^40")
        self.physical = RunsLayer(self.source, runs, 0x2000)
        check_data_fits(self.source, 0x2000, total, "the run data")

    def _open_bitmap(self) -> None:
        src = self.source
        sig = src.read_partial(0x2000, 8)
        if len(sig) < 8:
            raise TruncatedDumpError(f"truncated at offset {src.size:#x}: the bitmap header at 0x2000 is missing",
                                     path=self.path, offset=0x2000, expected="'SDMP'/'FDMP' + 'DUMP'")
        if sig[:4] not in (SIG_SDMP, SIG_FDMP) or sig[4:8] != SIG_DUMP:
            raise CorruptDumpError(f"bitmap header signature is {sig!r}", path=self.path, offset=0x2000,
                                   expected="'SDMPDUMP' or 'FDMPDUMP'")
        self.bitmap_signature = sig[:4].decode()
        if self.dump_type_code == 2:                     # old SUMMARY_DUMP64: 32-bit fields
            first = src.u32(0x200C, "SUMMARY_DUMP64.HeaderSize")
            bits = src.u32(0x2010, "SUMMARY_DUMP64.BitmapSize")
            pages = src.u32(0x2014, "SUMMARY_DUMP64.Pages")
            bm_off = 0x2028
        else:
            first = src.u64(0x2020, "bitmap FirstPage")
            pages = src.u64(0x2028, "bitmap TotalPresentPages")
            bits = src.u64(0x2030, "bitmap size in bits")
            bm_off = 0x2038
        if bits > 1 << 40:
            raise CorruptDumpError(f"bitmap of {bits:#x} bits is beyond the 52-bit physical address space",
                                   path=self.path, offset=0x2030 if self.dump_type_code != 2 else 0x2010,
                                   expected="at most 2^40 page frames")
        need = bm_off + (bits + 7) // 8
        if need > src.size:
            have_bits = max(0, (src.size - bm_off) * 8)
            self._warn(f"truncated at offset {src.size:#x}: the page bitmap needs {need:#x} bytes; "
                       f"only the first {have_bits:,} page frames can be mapped")
            bits = have_bits
        if first < need and bits:
            raise CorruptDumpError(f"first page offset {first:#x} overlaps the bitmap (ends at {need:#x})",
                                   path=self.path, offset=0x2020 if self.dump_type_code != 2 else 0x200C,
                                   expected=f"an offset >= {need:#x}")
        self.physical = BitmapLayer(src, bm_off, bits, first, expected_pages=pages)
        check_data_fits(src, first, self.physical.page_count, "the bitmap's pages")

    def _open_triage(self) -> None:
        self.triage = parse_triage(self.source)
        for w in self.triage.warnings:
            self.warnings.append(w)
        t = self.triage
        sp = SparseMemory(self.source)
        f = t.fields
        if f["call_stack_offset"] and f["size_of_call_stack"]:
            sp.add(t.top_of_stack, f["size_of_call_stack"], f["call_stack_offset"], "stack")
        kd = self.header.kd_debugger_data_block
        if kd and f["debugger_data_offset"] and f["debugger_data_size"]:
            sp.add(kd, f["debugger_data_size"], f["debugger_data_offset"], "kdbg")
        if f["data_page_address"] and f["data_page_offset"] and f["data_page_size"]:
            sp.add(f["data_page_address"], f["data_page_size"], f["data_page_offset"], "data_page")
        for b in t.data_blocks:
            sp.add(b.address, b.size, b.offset, "data_block")
        self._sparse = sp

    # -- memory ------------------------------------------------------------------
    def _need_physical(self) -> PhysicalLayer:
        if self.__dict__.get("_closed"):
            raise DumpError("the dump is closed", path=self.path, hint="open it again with dumpkit.open()")
        if self.physical is None:
            raise DumpError(f"a {self.dump_type} dump holds no physical memory",
                            path=self.path, hint="triage dumps capture only a few virtual ranges: use read_virtual")
        return self.physical

    def read_physical(self, pa: int, size: int, *, zero_fill: bool = False) -> bytes:
        """Bytes at a physical address; a page not in the dump raises MissingPageError
        (or reads as zeros with ``zero_fill=True``, like WinDbg's ``.ignore_missing_pages``)."""
        return self._need_physical().read(pa, size, zero_fill)

    def is_present(self, pa: int) -> bool:
        """Whether the physical page holding ``pa`` is stored in the dump."""
        return self.physical is not None and self.physical.is_present(pa)

    def iter_physical_runs(self) -> Iterator[Tuple[int, memoryview]]:
        """(physical address, memoryview) for each maximal run of present pages, in file order, zero-copy."""
        return self._need_physical().iter_physical_runs()

    def address_space(self, dtb: Optional[int] = None, la57: bool = False) -> X64Translator:
        """The x64 address space for ``dtb`` (the header's DirectoryTableBase by default)."""
        phys = self._need_physical()
        if dtb is None:
            dtb = self.header.directory_table_base
            if dtb is None:
                raise CorruptDumpError("DirectoryTableBase is not set in the header", path=self.path, offset=0x10)
        key = (dtb & ~0xFFF) | int(la57)
        sp = self._spaces.get(key)
        if sp is None:
            sp = self._spaces[key] = X64Translator(phys, dtb, la57)
        return sp

    def translate(self, va: int, dtb: Optional[int] = None) -> int:
        """Physical address of ``va``; TranslationError says why not (not present, paged out, missing)."""
        if self._sparse is not None:
            raise TranslationError("a triage dump has no page tables; its captured ranges are addressed by VA",
                                   address=va, path=self.path)
        return self.address_space(dtb).translate(va)

    def read_virtual(self, va: int, size: int, *, dtb: Optional[int] = None, zero_fill: bool = False) -> bytes:
        """Bytes at a virtual address (kernel space by default), across pages."""
        if size < 0:
            raise ValueError("size must be >= 0")
        if self._sparse is not None:
            return self._sparse.read(va, size, zero_fill)
        return self.address_space(dtb).read(va, size, zero_fill)

    def try_read_virtual(self, va: int, size: int) -> Optional[bytes]:
        try:
            return self.read_virtual(va, size)
        except MemoryReadError:
            return None

    def read_u64(self, va: int) -> int:
        return int.from_bytes(self.read_virtual(va, 8), "little")

    # -- kernel state ------------------------------------------------------------
    @property
    def modules(self) -> ModuleList:
        """Loaded modules: the triage driver list, or PsLoadedModuleList in full/bitmap dumps."""
        if self._modules is None:
            from .kernel import modules as km
            self._modules, self._unloaded = km.load_modules(self)
        return self._modules

    @property
    def unloaded_modules(self) -> ModuleList:
        if self._unloaded is None:
            _ = self.modules
        return self._unloaded  # type: ignore[return-value]

    @property
    def contexts(self) -> Dict[str, Context]:
        """Named register contexts: 'header', 'exception', 'prcb', 'trap_frame', ... where the dump has them."""
        if self._contexts is None:
            from .kernel import contexts as kc
            self._contexts = kc.find_contexts(self)
        return self._contexts

    # -- stacks and symbols ----------------------------------------------------------
    def resolver(self, symbol_path=None, *, offline: Optional[bool] = None):
        """The symbol resolver for ``symbol_path`` (text in ``_NT_SYMBOL_PATH`` syntax or a
        :class:`dumpkit.symbolize.SymbolPath`; default: the ``_NT_SYMBOL_PATH`` environment
        variable).  Images mapped in the dump are used first.  Cached per symbol path."""
        from .pe.provider import DumpMemoryImages
        from .symbolize import Resolver, SymbolPath
        if symbol_path is None:
            symbol_path = os.environ.get("_NT_SYMBOL_PATH", "")
        key = symbol_path if isinstance(symbol_path, str) else id(symbol_path)
        cache = self.__dict__.setdefault("_resolvers", {})
        res = cache.get(key)
        if res is None:
            sp = symbol_path if isinstance(symbol_path, SymbolPath) else SymbolPath(symbol_path, offline=offline)
            images = DumpMemoryImages(self) if self.physical is not None else None
            res = cache[key] = Resolver(sp, offline=offline, images=images)
        return res

    def context(self, which: Union[str, int, Context, None] = None) -> Context:
        """A register context by name ('header', 'exception', 'prcb', 'trap_frame', ...), by
        the address of a CONTEXT record or KTRAP_FRAME, or as given."""
        if isinstance(which, Context):
            return which
        ctxs = self.contexts
        if which is None:
            for name in ("header", "prcb", "exception"):
                if name in ctxs:
                    return ctxs[name]
            raise DumpError("this dump has no usable register context", path=self.path)
        if isinstance(which, str):
            if which in ctxs:
                return ctxs[which]
            try:
                which = int(which.replace("`", ""), 16)
            except ValueError:
                raise DumpError(f"no {which!r} context in this dump", path=self.path,
                                hint="available: " + (", ".join(ctxs) or "none")) from None
        from .kernel.context import (CONTEXT_SIZE, KTRAP_FRAME_SIZE, context_from_bytes,
                                     context_from_trap_frame, looks_like_context)
        data = self.try_read_virtual(which, CONTEXT_SIZE)
        if data is not None and looks_like_context(data):
            return context_from_bytes(data, "cxr", which, self.path)
        data = self.try_read_virtual(which, KTRAP_FRAME_SIZE)
        if data is not None:
            ctx = context_from_trap_frame(data, which, self.path)
            if self.modules.find(ctx.rip) is not None:
                return ctx
        raise DumpError(f"no CONTEXT or KTRAP_FRAME could be read at {which:#x}", path=self.path,
                        hint="give an address of a CONTEXT record (.cxr) or a trap frame (.trap)")

    def stack(self, context: Union[str, int, Context, None] = None, symbol_path=None, *,
              max_frames: int = 256, offline: Optional[bool] = None):
        """Walk the stack from ``context`` (default: the header context) and symbolize it.

        Returns a :class:`dumpkit.model.Stack`; ``str(stack)`` is WinDbg's ``k`` layout.
        Unwind data comes from images in the dump (full/bitmap dumps) or on the symbol path;
        frames without it are found by a validated stack scan, and each records its trust.
        """
        from .unwind.walker import walk_stack
        ctx = self.context(context)
        res = self.resolver(symbol_path, offline=offline)
        stack_range = None
        if self.triage is not None:
            f = self.triage.fields
            if f.get("size_of_call_stack"):
                stack_range = (self.triage.top_of_stack, self.triage.top_of_stack + f["size_of_call_stack"])
        stack = walk_stack(self, ctx, self.modules, images=res, resolver=res, max_frames=max_frames,
                           stack_range=stack_range)
        unloaded = self.unloaded_modules
        if len(unloaded):
            for frame in stack:
                if frame.module is None:
                    m = unloaded.find(frame.instruction)
                    if m is not None:          # WinDbg: Unloaded_name.sys+0x...
                        frame.module, frame.offset, frame.symbol = (f"Unloaded_{m.name}",
                                                                    frame.instruction - m.base, None)
        return stack

    # -- kernel state (issue 3: dumpkit/kernel/{kdbg,layouts,process,contexts,summary}.py) -----
    def _kstate(self) -> dict:
        c = self.__dict__.get("_kstate_cache")
        if c is None:
            c = self.__dict__["_kstate_cache"] = {}
        return c

    @property
    def kdbg_result(self):
        """How reading the KDDEBUGGER_DATA64 went (``.status``, ``.reason``, ``.data``)."""
        c = self._kstate()
        if "kdbg" not in c:
            from .kernel.kdbg import read_kdbg_block
            res = c["kdbg"] = read_kdbg_block(self)
            if res.status in ("encoded", "bad_size") or (res.status == "unreadable" and self.triage is None):
                self._warn(res.reason)
        return c["kdbg"]

    @property
    def kdbg(self):
        """The plaintext KDDEBUGGER_DATA64 (:class:`~dumpkit.kernel.kdbg.KdDebuggerData`), or None
        when it is absent, unreadable or encoded; ``kdbg_result.reason`` says which."""
        return self.kdbg_result.data

    @property
    def layout(self):
        """The structure layout chosen for this build (:class:`~dumpkit.kernel.layouts.LayoutChoice`)."""
        c = self._kstate()
        if "layout" not in c:
            from .kernel.layouts import layout_for_build
            c["layout"] = layout_for_build(self.build)
        return c["layout"]

    @property
    def thread(self):
        """The crashing thread and its process (:class:`~dumpkit.kernel.process.CrashThread`), or None
        when the build's layout is unknown."""
        c = self._kstate()
        if "thread" not in c:
            from .kernel.process import find_crash_thread
            c["thread"] = find_crash_thread(self)
        return c["thread"]

    @property
    def process_name(self) -> Optional[str]:
        """EPROCESS.ImageFileName of the crashing process ('System', 'notmyfault64.e'), or None."""
        return self.thread.process_name if self.thread else None

    @property
    def process_id(self) -> Optional[int]:
        return self.thread.process_id if self.thread else None

    @property
    def thread_id(self) -> Optional[int]:
        return self.thread.thread_id if self.thread else None

    @property
    def exception_record(self):
        """The bug check's exception (:class:`ExceptionRecord`): read where a parameter points at one,
        else built from the parameters (0x1E, 0x3B, 0x7E, 0x8E); None for other bug checks."""
        c = self._kstate()
        if "exr" not in c:
            from .kernel.contexts import bugcheck_exception_record
            c["exr"] = bugcheck_exception_record(self)
        return c["exr"]

    def find_module(self, address: int) -> Optional[Module]:
        """The loaded module holding ``address``, else the unloaded driver whose old range holds it
        (``Module.unloaded`` is True; WinDbg prints it as ``Unloaded_<name>``), else None."""
        return self.modules.find(address) or self.unloaded_modules.find(address)

    def trap_frame(self, address: int) -> Context:
        """Decode the KTRAP_FRAME at ``address`` (``.trap``); MemoryReadError when it is not in the dump."""
        from .kernel.contexts import trap_frame_at
        return trap_frame_at(self, address)

    def summary(self):
        """The headline facts (:class:`~dumpkit.kernel.summary.Summary`)."""
        from .kernel.summary import build_summary
        return build_summary(self)
    # -- end of kernel state -------------------------------------------------------------------

    # -- summary -------------------------------------------------------------------
    @property
    def build(self) -> int:
        return self.header.build

    @property
    def crash_time(self) -> Optional[_dt.datetime]:
        return self.header.system_time

    @property
    def uptime(self) -> Optional[_dt.timedelta]:
        return self.header.uptime

    def info(self) -> dict:
        """The `dumpkit info --json` object."""
        h = self.header
        up = h.uptime
        return {
            "path": self.path,
            "file_size": self.source.size,
            "dump_type": self.dump_type,
            "dump_type_code": self.dump_type_code,
            "bitmap_signature": self.bitmap_signature,
            "machine": h.machine,
            "os_build": h.build,
            "major_version": hex(h.major_version),
            "product_type": h.product_type,
            "suite_mask": None if h.suite_mask is None else hex(h.suite_mask),
            "processors": h.number_processors,
            "crash_time": h.system_time.isoformat() if h.system_time else None,
            "uptime_seconds": None if up is None else round(up.total_seconds(), 3),
            "writer": h.writer,
            "attributes": h.attribute_names,
            "bugcheck": self.bugcheck.to_json(),
            "directory_table_base": None if h.directory_table_base is None else hex(h.directory_table_base),
            "kd_debugger_data_block": None if h.kd_debugger_data_block is None else hex(h.kd_debugger_data_block),
            "physical_pages": None if self.physical is None else self.physical.page_count,
            "warnings": list(self.warnings),
        }

    # -- lifetime --------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self.physical = None
        self._sparse = None
        self._spaces.clear()
        self.source.close()

    def __enter__(self) -> "Dump":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        bc = self.bugcheck
        name = f" {bc.name}" if bc.name else ""
        return (f"<Dump {os.path.basename(self.path)!r} {self.dump_type} (type {self.dump_type_code}) "
                f"build {self.build} bugcheck {bc.code:#x}{name}>")

    # -- REPL (IPython/Jupyter pretty printing) ------------------------------------------
    def _repr_pretty_(self, p, cycle: bool) -> None:
        """``d`` at an IPython prompt: the repr, then the bugcheck, time and what the dump holds."""
        if cycle or self.physical is None and self._sparse is None:     # closed (or cycle)
            p.text(repr(self))
            return
        h = self.header
        lines = [repr(self), f"  bugcheck   {self.bugcheck}",
                 f"  machine    {h.machine}, build {h.build}, {h.number_processors} processors",
                 f"  crashed    {h.system_time.isoformat() if h.system_time else 'not recorded'}"
                 f" (up {self.uptime})"]
        try:
            lines.append(f"  modules    {len(self.modules)} loaded, {len(self.unloaded_modules)} unloaded;"
                         f" contexts: {', '.join(self.contexts) or 'none'}")
        except DumpError as exc:
            lines.append(f"  modules    unavailable: {exc}")
        if self.warnings:
            lines.append(f"  warnings   {len(self.warnings)} (see .warnings)")
        p.text("\n".join(lines))


def open(path: Union[str, "os.PathLike[str]", bytes]) -> Dump:  # noqa: A001 - the public name is dumpkit.open
    """Open a 64-bit Windows kernel crash dump.  Raises a :class:`DumpError` subclass on bad input."""
    if isinstance(path, (bytes, bytearray)):
        src = Source.from_bytes(path)
    else:
        src = Source.open(path)
    try:
        return Dump(src)
    except DumpError:
        src.close()
        raise
    except (ValueError, OverflowError, IndexError, KeyError) as exc:   # a bug, but never a raw error to users
        src.close()
        raise CorruptDumpError(f"could not parse the dump: {type(exc).__name__}: {exc}", path=src.path) from exc
