"""The kernel layer's view of a target: memory + header facts + layout, and the kernel caches.

Every kernel function (:mod:`~dumpkit.kernel.modules`, :mod:`~dumpkit.kernel.contexts`,
:mod:`~dumpkit.kernel.process`, :mod:`~dumpkit.kernel.kdbg`, :mod:`~dumpkit.kernel.summary`)
takes a :class:`Kernel`, never a :class:`dumpkit.Dump`: it reads memory through
``k.read_virtual`` / ``k.memory``, header facts through ``k.header`` / ``k.facts``, the
structure layout through ``k.layout``, and reports through ``k.warn`` (the target's one
warnings sink).  ``Dump`` holds one Kernel and delegates its kernel-state properties to it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from ..errors import MemoryReadError
from ..model import Context, ModuleList

if TYPE_CHECKING:  # pragma: no cover
    from ..target import Target


class Bugcheck:
    """The bug check: code (as stored, with the 0x10000000 '_M' bit), name, four parameters.

    The name is looked up on first use (opening stays cheap) by ``namer``, which the layer
    above passes in (``dumpkit.Dump`` gives the knowledge base's); without one it is None.
    """

    _UNSET = object()

    def __init__(self, code: int, parameters: Tuple[int, ...], name=_UNSET,
                 namer: Optional[Callable[[int], Optional[str]]] = None) -> None:
        self.code = code
        self.parameters = tuple(parameters)
        self._name = name
        self._namer = namer

    @property
    def name(self) -> Optional[str]:
        if self._name is Bugcheck._UNSET:
            try:
                self._name = self._namer(self.code) if self._namer is not None else None
            except Exception:  # noqa: BLE001 - a name is a nicety; never fail opening a dump for it
                self._name = None
        return self._name  # type: ignore[return-value]

    @property
    def base_code(self) -> int:
        """The code with the 0x10000000 '_M' bit cleared (0x1000007E -> 0x7E)."""
        return self.code & ~0x10000000 if self.code & 0x10000000 and self.code < 0x20000000 else self.code

    def to_json(self) -> dict:
        return {"code": hex(self.code), "name": self.name, "parameters": [hex(p) for p in self.parameters]}

    def __reduce__(self):
        return (Bugcheck, (self.code, self.parameters, self.name))

    def __str__(self) -> str:
        ps = ", ".join(f"{p:#x}" for p in self.parameters)
        return f"{self.name or 'BUGCHECK'} ({self.code:#x}) [{ps}]"

    def __repr__(self) -> str:
        return f"<Bugcheck {self}>"


class Kernel:
    """Kernel state of one target, computed lazily and cached."""

    def __init__(self, target: "Target", bugcheck_namer: Optional[Callable[[int], Optional[str]]] = None) -> None:
        self.target = target
        self.memory = target.memory
        self.arch = target.arch
        self.header = target.header         # the format's header (DumpHeader for PAGEDU64)
        self.facts = target.facts           # format-neutral header facts
        self.triage = target.triage
        self.source = target.source
        self.path = target.path
        self.bugcheck = Bugcheck(target.facts.bugcheck_code, target.facts.bugcheck_parameters,
                                 namer=bugcheck_namer)
        self._cache: Dict[str, Any] = {}

    # -- memory and warnings ---------------------------------------------------------------
    def read_virtual(self, va: int, size: int, zero_fill: bool = False) -> bytes:
        return self.memory.read_virtual(va, size, zero_fill)

    def try_read_virtual(self, va: int, size: int) -> Optional[bytes]:
        return self.memory.try_read_virtual(va, size)

    def read_u64(self, va: int) -> int:
        return self.memory.read_u64(va)

    def read_pointer(self, va: int) -> int:
        return self.memory.read_pointer(va)

    def warn(self, text: str, *, stacklevel: int = 3) -> None:
        self.target.sink(text, stacklevel=stacklevel + 1)

    @property
    def warnings(self):
        return self.target.sink.items

    @property
    def build(self) -> int:
        return self.facts.build

    # -- cached kernel state -------------------------------------------------------------
    @property
    def kdbg_result(self):
        c = self._cache
        if "kdbg" not in c:
            from .kdbg import read_kdbg_block
            res = c["kdbg"] = read_kdbg_block(self)
            if res.status in ("encoded", "bad_size") or (res.status == "unreadable" and self.triage is None):
                self.warn(res.reason)
        return c["kdbg"]

    @property
    def kdbg(self):
        return self.kdbg_result.data

    @property
    def layout(self):
        c = self._cache
        if "layout" not in c:
            from .layouts import layout_for_build
            c["layout"] = layout_for_build(self.build, self.arch.name)
        return c["layout"]

    @property
    def thread(self):
        c = self._cache
        if "thread" not in c:
            from .process import find_crash_thread
            c["thread"] = find_crash_thread(self)
        return c["thread"]

    def _load_modules(self) -> None:
        from .modules import load_modules
        self._cache["modules"], self._cache["unloaded"] = load_modules(self)

    @property
    def modules(self) -> ModuleList:
        if "modules" not in self._cache:
            self._load_modules()
        return self._cache["modules"]

    @property
    def unloaded_modules(self) -> ModuleList:
        if "unloaded" not in self._cache:
            self._load_modules()
        return self._cache["unloaded"]

    @property
    def contexts(self) -> Dict[str, Context]:
        if "contexts" not in self._cache:
            from .contexts import find_contexts
            self._cache["contexts"] = find_contexts(self)
        return self._cache["contexts"]

    @property
    def exception_record(self):
        if "exr" not in self._cache:
            from .contexts import bugcheck_exception_record
            self._cache["exr"] = bugcheck_exception_record(self)
        return self._cache["exr"]

    def stack_range(self) -> Optional[Tuple[int, int]]:
        """(low, high) of the captured kernel stack of a triage dump, else None."""
        t = self.triage
        if t is not None and t.fields.get("size_of_call_stack"):
            return (t.top_of_stack, t.top_of_stack + t.fields["size_of_call_stack"])
        return None

    def __repr__(self) -> str:
        return f"<Kernel {self.arch.name} build {self.build}>"


__all__ = ["Kernel", "Bugcheck", "MemoryReadError"]
