"""A target's memory: the physical layer (full/bitmap dumps) or the captured virtual ranges
(triage dumps), and the architecture's virtual translation over the physical layer."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, Iterator, Optional, Tuple

from ..errors import CorruptDumpError, DumpError, MemoryReadError, TranslationError
from ..memory.physical import PhysicalLayer
from ..memory.sparse import SparseMemory


class Memory:
    """Physical and virtual memory of one dump, for one architecture.

    ``physical`` is set for full, kernel and bitmap dumps; ``sparse`` for triage dumps (whose
    captured ranges are addressed by VA).  Virtual reads go through the architecture's
    translator for ``dtb`` (the header's DirectoryTableBase by default), one per page-table
    root, cached.
    """

    #: address spaces (translators) kept, least recently used dropped first
    MAX_SPACES = 32

    def __init__(self, arch: Any, physical: Optional[PhysicalLayer] = None, sparse: Optional[SparseMemory] = None,
                 dtb: Optional[int] = None, path: Optional[str] = None, dump_type: str = "",
                 paging_options: Optional[Dict[str, Any]] = None) -> None:
        self.arch = arch
        self.paging_options = dict(paging_options or {})     # e.g. {'pae': True} for an x86 dump
        self.physical = physical
        self.sparse = sparse
        self.dtb = dtb
        self.path = path
        self.dump_type = dump_type
        self.closed = False
        # one translator per page-table root, most recently used last; bounded (a dump with
        # hundreds of processes must not keep hundreds of translation caches)
        self._spaces: "OrderedDict[Tuple[int, Tuple], Any]" = OrderedDict()

    # -- physical --------------------------------------------------------------------------
    def need_physical(self) -> PhysicalLayer:
        if self.closed:
            raise DumpError("the dump is closed", path=self.path, hint="open it again with dumpkit.open()")
        if self.physical is None:
            raise DumpError(f"a {self.dump_type} dump holds no physical memory", path=self.path,
                            hint="triage dumps capture only a few virtual ranges: use read_virtual")
        return self.physical

    def read_physical(self, pa: int, size: int, zero_fill: bool = False) -> bytes:
        return self.need_physical().read(pa, size, zero_fill)

    def is_present(self, pa: int) -> bool:
        return self.physical is not None and self.physical.is_present(pa)

    def iter_physical_runs(self) -> Iterator[Tuple[int, memoryview]]:
        return self.need_physical().iter_physical_runs()

    # -- virtual ---------------------------------------------------------------------------
    def address_space(self, dtb: Optional[int] = None, **options: Any) -> Any:
        """The architecture's address space for ``dtb`` (default: the header's)."""
        if dtb is None and not options:
            sp = self.__dict__.get("_default_space")
            if sp is not None and not self.closed:
                return sp                     # the kernel's space: no key to build per read
        phys = self.need_physical()
        if dtb is None:
            dtb = self.dtb
            if dtb is None:
                raise CorruptDumpError("DirectoryTableBase is not set in the header", path=self.path, offset=0x10)
        key = (dtb & ~0xFFF, tuple(sorted((k, v) for k, v in options.items() if v)))
        sp = self._spaces.get(key)
        if sp is None:
            sp = self._spaces[key] = self.arch.translator(phys, dtb, **{**self.paging_options, **options})
            while len(self._spaces) > self.MAX_SPACES:
                self._spaces.popitem(last=False)
        else:
            self._spaces.move_to_end(key)
        if dtb == self.dtb and not options:
            self._default_space = sp
        return sp

    def translate(self, va: int, dtb: Optional[int] = None) -> int:
        if self.sparse is not None:
            raise TranslationError("a triage dump has no page tables; its captured ranges are addressed by VA",
                                   address=va, path=self.path)
        return self.address_space(dtb).translate(va)

    def read_virtual(self, va: int, size: int, zero_fill: bool = False, dtb: Optional[int] = None) -> bytes:
        if size < 0:
            raise ValueError("size must be >= 0")
        if self.sparse is not None:
            if self.closed:
                raise DumpError("the dump is closed", path=self.path, hint="open it again with dumpkit.open()")
            return self.sparse.read(va, size, zero_fill)
        return self.address_space(dtb).read(va, size, zero_fill)

    def try_read_virtual(self, va: int, size: int) -> Optional[bytes]:
        try:
            return self.read_virtual(va, size)
        except MemoryReadError:
            return None

    def read_pointer(self, va: int) -> int:
        n = self.arch.pointer_size
        return int.from_bytes(self.read_virtual(va, n), "little")

    def read_u64(self, va: int) -> int:
        return int.from_bytes(self.read_virtual(va, 8), "little")

    def captured_ranges(self, label: Optional[str] = None) -> Iterator[Tuple[int, int, str]]:
        """(start, size, label) of a triage dump's captured ranges ('stack', 'kdbg', ...)."""
        if self.sparse is None:
            return iter(())
        return (t for t in self.sparse.intervals() if label is None or t[2] == label)

    def close(self) -> None:
        self.closed = True
        self.physical = None
        self._spaces.clear()
        self._default_space = None

    def __repr__(self) -> str:
        what = self.physical if self.physical is not None else self.sparse
        return f"<Memory {self.arch.name} {what!r}>"
