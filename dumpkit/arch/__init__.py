"""Per-architecture knowledge, one package per CPU: ``dumpkit.arch.x64``, ``dumpkit.arch.arm64``.

An :class:`Architecture` says everything the layers above need to know about one CPU:
its typed register context, how to decode a CONTEXT record and a trap frame (layouts
defined once, in the package's ``frames`` module), the page-table walker for its kernel
address spaces (``paging``), the ordered stack-walk strategies (``walk``) and the fault
decoder (``fault``).  Packages register themselves here; :func:`for_machine` maps a dump
header's MachineImageType to one, and an unknown machine type is an
:class:`~dumpkit.errors.UnsupportedDumpError`.

Submodules are imported lazily, so opening a dump loads only what it needs (the
descriptor itself imports nothing above the memory layer).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Dict, List, Optional, Sequence, Type

from ..errors import UnsupportedDumpError
from ..model import Context


class Architecture:
    """Describe one CPU architecture.  Subclasses fill the class attributes and the hooks."""

    name: str = ""                     # 'x64', 'arm64', 'x86'
    machine: int = 0                   # IMAGE_FILE_MACHINE_* as in DUMP_HEADER.MachineImageType
    pointer_size: int = 8
    page_size: int = 0x1000
    kernel_min: int = 0                # lowest kernel-space VA
    context_class: Type[Context] = Context
    context_size: int = 0              # bytes of a CONTEXT record
    trap_frame_size: int = 0           # bytes of a KTRAP_FRAME
    #: 'role' -> module path (relative to dumpkit), imported on first use
    parts: Dict[str, str] = {}

    def part(self, role: str) -> Any:
        """The module playing ``role`` ('frames', 'paging', 'walk', 'fault', 'unwind')."""
        path = self.parts.get(role)
        if path is None:
            raise UnsupportedDumpError(f"{self.name}: no {role} support yet")
        return importlib.import_module(path, "dumpkit")

    # -- contexts and frames (frames module) ----------------------------------------------
    def looks_like_context(self, data: bytes) -> bool:
        return bool(self.part("frames").looks_like_context(data))

    def decode_context(self, data: bytes, source: str = "context", address: Optional[int] = None,
                       path: Optional[str] = None) -> Context:
        return self.part("frames").context_from_bytes(data, source, address, path)

    def decode_trap_frame(self, data: bytes, address: Optional[int] = None, path: Optional[str] = None) -> Context:
        return self.part("frames").context_from_trap_frame(data, address, path)

    def plausible_trap_frame(self, data: bytes, off: int = 0) -> bool:
        return bool(self.part("frames").plausible_trap_frame(data, off))

    def context_sp(self, raw: bytes) -> int:
        """The stack pointer of a raw CONTEXT record (0 when it is too short)."""
        return int(self.part("frames").context_sp(raw))

    # -- memory (paging module) ----------------------------------------------------------
    def translator(self, physical: Any, dtb: int, **options: Any) -> Any:
        """A virtual address space over ``physical`` for the page-table root ``dtb``."""
        return self.part("paging").translator(physical, dtb, **options)

    def canonical(self, va: int) -> bool:
        return bool(self.part("paging").canonical(va))

    # -- stacks (walk module) ------------------------------------------------------------
    def walk_strategies(self) -> Sequence[Callable[..., Any]]:
        """The ordered caller-finding strategies (unwind data, frame pointer, scan)."""
        return self.part("walk").STRATEGIES

    def walk_rules(self) -> Any:
        return self.part("walk").RULES

    # -- faults (fault module) -----------------------------------------------------------
    def decode_fault(self, code: bytes, ip: int, context: Optional[Context] = None) -> Any:
        """Decode the instruction at the faulting IP (the arch's ``fault.decode_instruction``)."""
        return self.part("fault").decode_instruction(code, ip)

    def __repr__(self) -> str:
        return f"<Architecture {self.name} machine {self.machine:#x}>"

    def __reduce__(self):                   # architectures are singletons: pickle by name
        return (by_name, (self.name,))


_BY_MACHINE: Dict[int, Architecture] = {}
_BY_NAME: Dict[str, Architecture] = {}
_LOADED = False


def register(arch: Architecture) -> Architecture:
    """Make ``arch`` known (its package calls this at import)."""
    _BY_MACHINE[arch.machine] = arch
    _BY_NAME[arch.name] = arch
    return arch


#: machine type -> the built-in package that registers it (imported only when asked for)
_BUILTIN_PACKAGES = {0x8664: "x64", 0xAA64: "arm64", 0x14C: "x86"}


def _import_package(pkg: str) -> None:
    try:
        importlib.import_module(f".{pkg}", __name__)
    except ImportError:
        pass                                # an architecture package not (yet) in this tree


def _load_builtin() -> None:
    global _LOADED
    if not _LOADED:
        _LOADED = True
        for pkg in _BUILTIN_PACKAGES.values():
            _import_package(pkg)


def for_machine(machine: int, path: Optional[str] = None) -> Architecture:
    """The architecture of MachineImageType ``machine``; UnsupportedDumpError if unknown."""
    arch = _BY_MACHINE.get(machine)
    if arch is None and machine in _BUILTIN_PACKAGES:
        _import_package(_BUILTIN_PACKAGES[machine])
        arch = _BY_MACHINE.get(machine)
    if arch is None:
        _load_builtin()
        arch = _BY_MACHINE.get(machine)
    if arch is None:
        known = ", ".join(f"{a.machine:#x} ({a.name})" for a in _BY_MACHINE.values())
        raise UnsupportedDumpError(f"MachineImageType {machine:#x} is not a supported architecture",
                                   path=path, offset=0x30, expected=known)
    return arch


def by_name(name: str) -> Architecture:
    """The architecture called ``name`` ('x64', 'arm64', ...)."""
    if name not in _BY_NAME:
        if name in _BUILTIN_PACKAGES.values():
            _import_package(name)
        if name not in _BY_NAME:
            _load_builtin()
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnsupportedDumpError(f"unknown architecture {name!r}",
                                   expected=", ".join(sorted(_BY_NAME))) from None


def of_context(ctx: Context) -> Architecture:
    """The architecture a context belongs to (its class's ``arch`` name)."""
    return by_name(getattr(ctx, "arch", "x64") or "x64")


def known() -> List[Architecture]:
    _load_builtin()
    return list(_BY_NAME.values())
