"""The :class:`Dump` facade: one object per opened kernel dump.

Opening is one pass down the layers (:func:`dumpkit.target.open_target`): a registered
header format parses the header, the architecture comes from its machine type, a body
opener builds the memory, and the result is a :class:`~dumpkit.target.Target`.  ``Dump``
keeps the public API over it: memory reads go to ``target.memory``, kernel state to a
:class:`~dumpkit.kernel.state.Kernel`, stacks to the architecture's walker.  Higher layers
(stack walking, symbols, analysis) are imported lazily, so opening a dump costs only the
header and the physical index.
"""
from __future__ import annotations

import datetime as _dt
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple, Union

from .errors import CorruptDumpError, DumpError, MemoryReadError
from .formats.header import DumpHeader
from .formats.triage import TriageDump
from .io import Source
from .kernel.state import Bugcheck, Kernel
from .memory.physical import PhysicalLayer
from .model import Context, Module, ModuleList
from .target import Target, open_target
from .target import dump64 as _dump64  # noqa: F401  - the PAGEDU64 format, as the reader always had
from .arch import x64 as _x64  # noqa: F401  - the x64 architecture (its translator and CONTEXT)

__all__ = ["Dump", "Bugcheck", "open"]


def _bugcheck_name(code: int) -> Optional[str]:
    """The knowledge base's name of a bug check (the kernel layer is given this; it cannot import analysis)."""
    from .analysis.kb import KnowledgeBase        # knowledge base data (symbols/)
    info = KnowledgeBase.load().bugcheck(code)
    return info.name if info else None


class Dump:
    """A Windows kernel crash dump (full, kernel, bitmap or triage; x64 or ARM64).

    Use ``dumpkit.open(path)``; the object is a context manager.  ``target`` is the
    underlying :class:`~dumpkit.target.Target` (architecture, memory, header facts).
    """

    def __init__(self, source: Union[Source, Target]) -> None:
        target = source if isinstance(source, Target) else open_target(source)
        self.target = target
        self.source = target.source
        self.path = target.path
        self.arch = target.arch
        self.header: DumpHeader = target.header
        self.dump_type_code: int = target.facts.dump_type
        self.dump_type: str = target.facts.dump_type_name
        self.triage: Optional[TriageDump] = target.triage
        self.bitmap_signature: Optional[str] = target.body.facts.get("bitmap_signature")
        self._kernel = Kernel(target, bugcheck_namer=_bugcheck_name)
        self.bugcheck: Bugcheck = self._kernel.bugcheck
        mem = target.memory
        self._memory = mem

    @property
    def kernel(self) -> Kernel:
        """The kernel-state view (memory + header facts + layout) the kernel functions take."""
        return self._kernel

    @property
    def memory(self):
        """The target's :class:`~dumpkit.target.memory.Memory` (physical layer, translation)."""
        return self._memory

    @property
    def warnings(self) -> List[str]:
        """Everything the layers reported while reading this dump, in order."""
        return self.target.sink.items

    @property
    def physical(self) -> Optional[PhysicalLayer]:
        return self._memory.physical

    # -- memory ------------------------------------------------------------------
    def read_physical(self, pa: int, size: int, *, zero_fill: bool = False) -> bytes:
        """Bytes at a physical address; a page not in the dump raises MissingPageError
        (or reads as zeros with ``zero_fill=True``, like WinDbg's ``.ignore_missing_pages``)."""
        phys = self._memory.physical          # None for triage dumps and closed dumps
        if phys is None:
            return self._memory.read_physical(pa, size, zero_fill)     # raises the clear error
        return phys.read(pa, size, zero_fill)

    def is_present(self, pa: int) -> bool:
        """Whether the physical page holding ``pa`` is stored in the dump."""
        return self._memory.is_present(pa)

    def iter_physical_runs(self) -> Iterator[Tuple[int, memoryview]]:
        """(physical address, memoryview) for each maximal run of present pages, in file order, zero-copy."""
        return self._memory.iter_physical_runs()

    def iter_page_batches(self, max_bytes: int = 4 << 20, copy: bool = False) -> Iterator[Tuple[Any, memoryview]]:
        """``(pfns, data)`` batches over every present page in file order: ``pfns`` an int64 numpy
        array of page frame numbers, ``data`` their pages back to back (a zero-copy view, or with
        ``copy=True`` a reused buffer filled by ``preadv``), valid until the next batch.
        See :meth:`dumpkit.memory.physical.PhysicalLayer.iter_page_batches`."""
        return self._memory.need_physical().iter_page_batches(max_bytes, copy)

    def address_space(self, dtb: Optional[int] = None, la57: bool = False) -> Any:
        """The address space for ``dtb`` (the header's DirectoryTableBase by default), translated
        with the dump's architecture (x64: 4-level, or 5-level with ``la57``)."""
        return self._memory.address_space(dtb, la57=la57) if la57 else self._memory.address_space(dtb)

    def translate(self, va: int, dtb: Optional[int] = None) -> int:
        """Physical address of ``va``; TranslationError says why not (not present, paged out, missing)."""
        if dtb is None:
            sp = self._memory.__dict__.get("_default_space")
            if sp is not None:
                return sp.translate(va)            # the kernel's space, without the lookup by root
        return self._memory.translate(va, dtb)

    def read_virtual(self, va: int, size: int, *, dtb: Optional[int] = None, zero_fill: bool = False) -> bytes:
        """Bytes at a virtual address (kernel space by default), across pages."""
        return self._memory.read_virtual(va, size, zero_fill, dtb)

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
        return self._kernel.modules

    @property
    def unloaded_modules(self) -> ModuleList:
        return self._kernel.unloaded_modules

    @property
    def contexts(self) -> Dict[str, Context]:
        """Named register contexts: 'header', 'exception', 'prcb', 'trap_frame', 'cpu0', ... where the dump has them."""
        return self._kernel.contexts

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
            # full/bitmap dumps map the images; a triage dump may carry them as data blocks (an image
            # whose header is not captured gives None there)
            images = DumpMemoryImages(self._memory, warn=self.target.sink)
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
        fr = self.arch.part("frames")
        data = self.try_read_virtual(which, fr.CONTEXT_SIZE)
        if data is not None and fr.looks_like_context(data):
            return fr.context_from_bytes(data, "cxr", which, self.path)
        data = self.try_read_virtual(which, fr.KTRAP_FRAME_SIZE)
        if data is not None:
            ctx = fr.context_from_trap_frame(data, which, self.path)
            if self.modules.find(ctx.ip) is not None:
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
        with self.target.sink.capture():        # PE/symbol warnings reach Dump.warnings too
            stack = walk_stack(self._memory, ctx, self.modules, images=res, resolver=res, max_frames=max_frames,
                               stack_range=self._kernel.stack_range(), arch=self._arch_of(ctx))
        unloaded = self.unloaded_modules
        if len(unloaded):
            for frame in stack:
                if frame.module is None:
                    m = unloaded.find(frame.instruction)
                    if m is not None:          # WinDbg: Unloaded_name.sys+0x...
                        frame.module, frame.offset, frame.symbol = (f"Unloaded_{m.name}",
                                                                    frame.instruction - m.base, None)
        return stack

    def _arch_of(self, ctx: Context) -> Any:
        """The dump's architecture, or the context's when it was built for another one."""
        name = getattr(ctx, "arch", None)
        if name and name != self.arch.name:
            from .arch import by_name
            return by_name(name)
        return self.arch

    # -- kernel state (dumpkit/kernel/{state,kdbg,layouts,process,contexts,summary}.py) -----
    @property
    def kdbg_result(self):
        """How reading the KDDEBUGGER_DATA64 went (``.status``, ``.reason``, ``.data``)."""
        return self._kernel.kdbg_result

    @property
    def kdbg(self):
        """The plaintext KDDEBUGGER_DATA64 (:class:`~dumpkit.kernel.kdbg.KdDebuggerData`), or None
        when it is absent, unreadable or encoded; ``kdbg_result.reason`` says which."""
        return self._kernel.kdbg

    @property
    def layout(self):
        """The structure layout chosen for this build (:class:`~dumpkit.kernel.layouts.LayoutChoice`)."""
        return self._kernel.layout

    @property
    def thread(self):
        """The crashing thread and its process (:class:`~dumpkit.kernel.process.CrashThread`), or None
        when the build's layout is unknown."""
        return self._kernel.thread

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
        return self._kernel.exception_record

    def find_module(self, address: int) -> Optional[Module]:
        """The loaded module holding ``address``, else the unloaded driver whose old range holds it
        (``Module.unloaded`` is True; WinDbg prints it as ``Unloaded_<name>``), else None."""
        return self.modules.find(address) or self.unloaded_modules.find(address)

    def trap_frame(self, address: int) -> Context:
        """Decode the KTRAP_FRAME at ``address`` (``.trap``); MemoryReadError when it is not in the dump."""
        from .kernel.contexts import trap_frame_at
        return trap_frame_at(self._kernel, address)

    def summary(self):
        """The headline facts (:class:`~dumpkit.kernel.summary.Summary`)."""
        from .kernel.summary import build_summary
        return build_summary(self._kernel)
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
        self.target.close()

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
        if cycle or self._memory.closed:                                # closed (or cycle)
            p.text(repr(self))
            return
        h = self.header
        lines = [repr(self), f"  bugcheck   {self.bugcheck}",
                 f"  machine    {h.machine}, build {h.build}, {h.number_processors} processor"
                 f"{'' if h.number_processors == 1 else 's'}",
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
    """Open a Windows kernel crash dump.  Raises a :class:`DumpError` subclass on bad input."""
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
