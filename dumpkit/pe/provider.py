"""Where PE images come from: dump memory, image folders (symbol-store layout), or a chain.

An *image provider* answers ``image_for(module) -> PEImage | None`` for a
:class:`dumpkit.model.Module`.  Providers load lazily and cache, so a stack
walk over 30 frames opens each module's image once.
"""
from __future__ import annotations

import os
import warnings
from typing import Dict, Iterable, List, Optional, Protocol, Sequence, Tuple, Union, runtime_checkable

from ..errors import DumpError, DumpWarning
from ..model import Module, VirtualReader
from .image import PEImage


@runtime_checkable
class ImageProvider(Protocol):
    """Anything that can hand out the PE image of a module."""

    def image_for(self, module: Module) -> Optional[PEImage]: ...


def _basename(name: str) -> str:
    return name.replace("/", "\\").rsplit("\\", 1)[-1]


def _matches(img: PEImage, module: Module) -> bool:
    """Does the image belong to the module (TimeDateStamp and SizeOfImage, where known)?"""
    if module.timestamp is not None and module.timestamp != 0 and img.timestamp != module.timestamp:
        return False
    if module.size and img.size_of_image != module.size:
        return False
    return True


class DumpMemoryImages:
    """Images mapped in the dump's own memory (full, kernel and bitmap dumps).

    ``reader`` needs ``read_virtual(va, size)``.  An image whose header page is
    missing, or whose header does not match the module, gives None.
    """

    def __init__(self, reader: VirtualReader, warn=None) -> None:
        self.reader = reader
        self.warn = warn                   # the dump's warnings sink (Dump.warnings), when given
        self._cache: Dict[Tuple[int, int, Optional[int]], Optional[PEImage]] = {}

    def image_for(self, module: Module) -> Optional[PEImage]:
        if module.unloaded:
            return None
        key = (module.base, module.size, module.timestamp)
        if key not in self._cache:
            img: Optional[PEImage]
            try:
                img = PEImage.from_memory(self.reader.read_virtual, module.base, module.size or None,
                                          name=_basename(module.name))
                if not _matches(img, module):
                    text = (f"image at {module.base:#x} does not match {module.name} "
                            f"(timestamp {img.timestamp:#x}, size {img.size_of_image:#x})")
                    if self.warn is not None:
                        self.warn(text)
                    else:
                        warnings.warn(text, DumpWarning, stacklevel=2)
                    img = None
            except DumpError:
                img = None
            self._cache[key] = img
        return self._cache[key]

    def __repr__(self) -> str:
        return f"<DumpMemoryImages {len(self._cache)} cached>"


class StoreImages:
    """Images from local folders.

    Each folder is searched as a symbol store (``name/<%08X TimeDateStamp><%x
    SizeOfImage>/name``, directory names compared case-insensitively) and as a
    flat folder (``name`` directly inside), where the file's TimeDateStamp and
    SizeOfImage must match the module.
    """

    def __init__(self, paths: Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]]) -> None:
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths: List[str] = [os.fspath(p) for p in paths]
        self._cache: Dict[Tuple[str, Optional[int], int], Optional[PEImage]] = {}
        self._listing: Dict[str, Dict[str, str]] = {}

    def _entries(self, folder: str) -> Dict[str, str]:
        """lower-case name -> real name of the entries of ``folder`` (cached)."""
        got = self._listing.get(folder)
        if got is None:
            try:
                got = {n.lower(): n for n in os.listdir(folder)}
            except OSError:
                got = {}
            self._listing[folder] = got
        return got

    def _find(self, folder: str, *parts: str) -> Optional[str]:
        cur = folder
        for part in parts:
            real = self._entries(cur).get(part.lower())
            if real is None:
                return None
            cur = os.path.join(cur, real)
        return cur

    def candidates(self, module: Module) -> List[str]:
        """Paths that may hold the module's image, best first."""
        name = _basename(module.name)
        out = []
        for folder in self.paths:
            if module.timestamp is not None and module.size:
                key = f"{module.timestamp:08X}{module.size:x}"
                p = self._find(folder, name, key, name)
                if p and os.path.isfile(p):
                    out.append(p)
            p = self._find(folder, name)
            if p and os.path.isfile(p):
                out.append(p)
        return out

    def image_for(self, module: Module) -> Optional[PEImage]:
        if module.unloaded:
            return None
        key = (_basename(module.name).lower(), module.timestamp, module.size)
        if key in self._cache:
            return self._cache[key]
        img = None
        for path in self.candidates(module):
            try:
                cand = PEImage.from_file(path, name=_basename(module.name))
            except DumpError as exc:
                warnings.warn(f"{path}: not a usable image: {exc}", DumpWarning, stacklevel=2)
                continue
            if _matches(cand, module):
                img = cand
                break
        if img is not None:
            img.base = module.base
        self._cache[key] = img
        return img

    def __repr__(self) -> str:
        return f"<StoreImages {self.paths!r}>"


class ChainImages:
    """Ask several providers in order; the first image wins."""

    def __init__(self, providers: Sequence[ImageProvider]) -> None:
        self.providers = list(providers)

    def image_for(self, module: Module) -> Optional[PEImage]:
        for p in self.providers:
            img = p.image_for(module)
            if img is not None:
                return img
        return None

    def __repr__(self) -> str:
        return f"<ChainImages {self.providers!r}>"
