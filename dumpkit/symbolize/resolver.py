"""One resolver for the stack walker and the analysis: address -> ``module!symbol+offset``.

For each module (cached on its identity) the resolver finds:

1. the image: from an optional image provider (e.g. the image mapped in the dump,
   :class:`dumpkit.pe.DumpMemoryImages`), else from the symbol path by
   ``(name, TimeDateStamp, SizeOfImage)``;
2. the PDB: from the symbol path by the image's CodeView ``(pdb name, GUID, age)``.

An address is then named from the PDB (procedure ranges, else the nearest public
in the same section), else from the image's exports, else as ``module+offset``.
Each :class:`Resolution` says which of the three it used and why, and
:meth:`Resolver.report` tells per module what was looked for, where, and what
happened: the basis of ``dumpkit symbols``.  Images and PDBs are always matched
by identity, never by file name alone.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple, Union

from ..errors import DumpError
from ..model import Module, windbg_module_name
from .names import UnsafeNameError, as_guid, base_name
from .pdb import Pdb
from .store import Attempt, SymbolPath

SOURCES = ("pdb", "exports", "module")


@dataclass(frozen=True)
class Resolution:
    """The name of one address.

    ``symbol`` is None for ``source == 'module'`` (then ``offset`` is from the module
    base).  ``text`` is the WinDbg call-site form: ``amdppm!WriteIoMemRawEx+0x70``.
    """

    module_name: str
    symbol: Optional[str]
    offset: int
    source: str
    detail: str = ""

    @property
    def text(self) -> str:
        if self.symbol:
            return f"{self.module_name}!{self.symbol}" + (f"+0x{self.offset:x}" if self.offset else "")
        return f"{self.module_name}+0x{self.offset:x}"

    def __str__(self) -> str:
        return self.text

    def to_json(self) -> dict:
        return {"module": self.module_name, "symbol": self.symbol, "offset": self.offset,
                "source": self.source, "detail": self.detail, "text": self.text}


# ---------------------------------------------------------------------- image access
def open_image(path: str) -> Any:
    """The image at ``path`` as a :class:`dumpkit.pe.image.PEImage`.  The one place the
    resolver touches PE parsing."""
    from ..pe.image import PEImage
    return PEImage.from_file(path)


def _codeview_of(img: Any) -> Optional[Tuple[str, str, int]]:
    cv = getattr(img, "codeview", None)
    if cv is None:
        return None
    if isinstance(cv, tuple) and not hasattr(cv, "pdb_name"):
        return cv[0], cv[1], cv[2]
    return cv.pdb_name, cv.guid, cv.age


# ---------------------------------------------------------------------- per-module state
@dataclass
class ModuleSymbols:
    """What the resolver found for one module (the unit of the ``symbols`` report)."""

    module: Module
    image: Any = None
    image_path: Optional[str] = None
    image_source: Optional[str] = None       # 'provider' or 'symbol path'
    pdb: Optional[Pdb] = None
    pdb_path: Optional[str] = None
    pdb_name: Optional[str] = None
    pdb_identity: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    attempts: List[Attempt] = field(default_factory=list)

    @property
    def best_source(self) -> str:
        if self.pdb is not None:
            return "pdb"
        if self.image is not None and getattr(self.image, "exports", None):
            return "exports"
        return "module"

    def to_json(self) -> dict:
        m = self.module
        return {
            "module": m.name,
            "windbg_name": windbg_module_name(m.name),
            "base": hex(m.base),
            "size": hex(m.size),
            "timestamp": None if m.timestamp is None else f"{m.timestamp:08x}",
            "symbols": self.best_source,
            "image": {"path": self.image_path, "source": self.image_source,
                      "found": self.image is not None},
            "pdb": {"name": self.pdb_name, "identity": self.pdb_identity, "path": self.pdb_path,
                    "found": self.pdb is not None},
            "exports": len(getattr(self.image, "exports", []) or []) if self.image is not None else 0,
            "notes": list(self.notes),
            "attempts": [a.to_json() for a in self.attempts],
        }

    def summary(self) -> str:
        m = self.module
        what = {"pdb": f"pdb {self.pdb_path}", "exports": "exports only",
                "module": "no symbols (module+offset)"}[self.best_source]
        why = "; ".join(self.notes)
        return f"{windbg_module_name(m.name):<16} {m.base:#018x} {what}" + (f"  [{why}]" if why else "")


class Resolver:
    """Names addresses inside modules: PDB, then exports, then ``module+offset``.

    ``symbol_path``: a :class:`SymbolPath`, its text (``_NT_SYMBOL_PATH`` syntax) or None.
    ``offline`` (default True) keeps symbol servers untouched; None defers to
    ``DUMPKIT_OFFLINE``.  ``images``: an optional image provider with
    ``image_for(module)`` (for example images mapped in the dump), asked first.
    """

    def __init__(self, symbol_path: Union[SymbolPath, str, None] = None, offline: Optional[bool] = True, *,
                 images: Any = None) -> None:
        if isinstance(symbol_path, SymbolPath):
            self.symbol_path = symbol_path
            if offline is not None:
                symbol_path.offline = offline
        else:
            self.symbol_path = SymbolPath(symbol_path or "", offline=offline)
        self.images = images
        self._modules: Dict[tuple, ModuleSymbols] = {}

    @staticmethod
    def _key(module: Module) -> tuple:
        return (module.name.lower(), module.base, module.size, module.timestamp)

    # ------------------------------------------------------------------ per module
    def module_symbols(self, module: Module) -> ModuleSymbols:
        """Find (once) the image and PDB of ``module``."""
        key = self._key(module)
        ms = self._modules.get(key)
        if ms is None:
            ms = ModuleSymbols(module)
            try:
                self._load(ms)
            except DumpError as exc:             # never let one module break a stack
                ms.notes.append(f"error: {exc}")
            self._modules[key] = ms
        return ms

    def _load(self, ms: ModuleSymbols) -> None:
        m = ms.module
        sp = self.symbol_path
        try:
            fname = base_name(m.name)
        except UnsafeNameError as exc:
            ms.notes.append(exc.message)
            return
        # 1. the image
        if self.images is not None:
            try:
                img = self.images.image_for(m)
            except DumpError as exc:
                img = None
                ms.notes.append(f"image provider: {exc.message}")
            if img is not None:
                ms.image, ms.image_source = img, "provider"
                ms.image_path = getattr(img, "path", None)
        if ms.image is None:
            if m.timestamp is None or not m.size:
                ms.notes.append("module has no TimeDateStamp/SizeOfImage: the image cannot be identified")
            else:
                n0 = len(sp.attempts)
                path = sp.find_image(fname, m.timestamp, m.size)
                ms.attempts.extend(sp.attempts[n0:])
                if path is None:
                    ms.notes.append(f"image {fname} {m.timestamp:08X}{m.size:x} not found")
                else:
                    try:
                        ms.image = open_image(path)
                        ms.image_path, ms.image_source = path, "symbol path"
                    except DumpError as exc:
                        ms.notes.append(f"image {path}: {exc.message}")
        if ms.image is None:
            return
        # 2. the PDB, by the image's CodeView identity
        cv = _codeview_of(ms.image)
        if cv is None:
            ms.notes.append("image has no CodeView (RSDS) record: the PDB cannot be identified")
            return
        pdb_path_in_image, guid_text, age = cv
        try:
            pdb_name = base_name(pdb_path_in_image)
        except UnsafeNameError as exc:
            ms.notes.append(f"CodeView PDB name: {exc.message}")
            return
        ms.pdb_name = pdb_name
        if len(guid_text) != 32:
            ms.notes.append(f"NB10 (PDB 2.0) CodeView record: {pdb_name} is not supported")
            return
        guid = as_guid(guid_text)
        ms.pdb_identity = f"{guid.hex.upper()}{age:X}"
        n0 = len(sp.attempts)
        path = sp.find_pdb(pdb_name, guid, age)
        ms.attempts.extend(sp.attempts[n0:])
        if path is None:
            ms.notes.append(f"pdb {pdb_name} {ms.pdb_identity} not found")
            return
        try:
            ms.pdb = Pdb.open(path)
            ms.pdb_path = path
        except DumpError as exc:
            ms.notes.append(f"pdb {path}: {exc.message}")

    # ------------------------------------------------------------------ addresses
    def resolve(self, module: Module, address: int, *, return_address: bool = False) -> Resolution:
        """Name ``address`` inside ``module``.

        ``return_address=True`` (a caller frame reached by a normal return) looks the
        symbol up at ``address - 1`` (the call instruction) while the offset stays
        relative to ``address``, as WinDbg does for functions ending in a call.
        """
        name = windbg_module_name(module.name)
        rva = address - module.base
        if not 0 <= rva < max(module.size, 1):
            return Resolution(name, None, rva, "module", "address outside the module's range")
        look = rva - 1 if return_address and rva > 0 else rva
        ms = self.module_symbols(module)
        if ms.pdb is not None:
            try:
                hit = ms.pdb.symbol_at(look)
            except DumpError as exc:
                hit = None
                ms.notes.append(f"pdb lookup failed: {exc.message}")
            if hit is not None:
                return Resolution(name, hit.name, rva - hit.rva, "pdb",
                                  f"{os.path.basename(ms.pdb_path or '')} {ms.pdb_identity} ({hit.kind})")
        if ms.image is not None and getattr(ms.image, "exports", None):
            try:
                got = ms.image.export_lookup(look)
            except DumpError:
                got = None
            if got is not None:
                sym, disp = got
                return Resolution(name, sym, disp + (rva - look), "exports",
                                  "nearest export" + ("" if ms.pdb is None else "; no PDB symbol here"))
        why = "; ".join(ms.notes) or ("no symbol covers this address" if ms.pdb is not None or ms.image is not None
                                      else "no symbols")
        return Resolution(name, None, rva, "module", why)

    def annotate(self, frame: Any, module: Module, *, return_address: Optional[bool] = None) -> Resolution:
        """Fill a :class:`dumpkit.model.Frame`'s module/symbol/offset/symbol_source fields."""
        if return_address is None:
            return_address = frame.index > 0 and getattr(frame, "trap_frame", None) is None
        r = self.resolve(module, frame.instruction, return_address=return_address)
        frame.module, frame.symbol, frame.offset, frame.symbol_source = r.module_name, r.symbol, r.offset, r.source
        if hasattr(frame, "image_name"):
            frame.image_name = os.path.basename(module.name.replace("\\", "/"))
        return r

    # ------------------------------------------------------------------ reporting
    def image_for(self, module: Module) -> Any:
        """The module's image (from the provider or the symbol path), so the resolver can serve
        as the stack walker's image provider and each image is loaded once."""
        return self.module_symbols(module).image

    def report(self) -> List[ModuleSymbols]:
        """Per module looked at so far: image, PDB, what was tried where and why it failed."""
        return list(self._modules.values())

    def report_json(self) -> List[dict]:
        return [m.to_json() for m in self.report()]

    def report_text(self) -> str:
        return "\n".join(m.summary() for m in self.report())

    def close(self) -> None:
        for ms in self._modules.values():
            if ms.pdb is not None:
                ms.pdb.close()

    def __repr__(self) -> str:
        return f"<Resolver {self.symbol_path!r} {len(self._modules)} modules>"
