"""Per-build kernel structure offsets (EPROCESS, ETHREAD, KTHREAD, KPRCB, KLDR entries), per architecture.

The offsets are data, in ``symbols/layouts.json`` (shipped as ``dumpkit/_kb/layouts.json``),
each entry citing where its values come from; an entry's ``arch`` is ``x64`` unless it says
otherwise (``arm64``).  :func:`layout_for_build` picks the entry for a dump's architecture and
build: the exact build, or the nearest lower entry whose ``max_build`` still covers it (19044
uses the 19041 entry), and says which.  Outside every entry the answer is an honest
"unknown build": no offsets, and a reason the caller can pass on as a warning.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..errors import DumpError

_STRUCTS = ("eprocess", "ethread", "kthread", "kprcb", "kpcr", "kldr", "sizes")


@dataclass(frozen=True)
class Layout:
    """Offsets for one range of builds.  ``get('eprocess', 'ImageFileName')`` -> int or None."""

    build: int
    max_build: int
    name: str
    source: Tuple[str, ...]
    offsets: Dict[str, Dict[str, int]] = field(hash=False, compare=False)
    arch: str = "x64"

    def get(self, struct: str, name: str) -> Optional[int]:
        return self.offsets.get(struct, {}).get(name)

    def __repr__(self) -> str:
        return f"<Layout {self.arch} {self.build}-{self.max_build} {self.name!r}>"


@dataclass(frozen=True)
class LayoutChoice:
    """The result of a layout lookup: ``layout`` is None for an unknown build; ``reason`` says why."""

    build: int
    layout: Optional[Layout]
    exact: bool
    reason: str

    def __bool__(self) -> bool:
        return self.layout is not None

    def __repr__(self) -> str:
        return f"<LayoutChoice build {self.build}: {self.reason}>"


class LayoutTable:
    """All layouts from the knowledge-base file, sorted by build."""

    def __init__(self, layouts: List[Layout], path: str = "<memory>") -> None:
        self.layouts = sorted(layouts, key=lambda lay: lay.build)
        self.path = path

    @classmethod
    def from_json(cls, data: dict, path: str = "<memory>") -> "LayoutTable":
        if not isinstance(data, dict) or not isinstance(data.get("builds"), list):
            raise DumpError("layout table has no 'builds' list", path=path)
        out: List[Layout] = []
        for i, e in enumerate(data["builds"]):
            try:
                build = int(e["build"])
                max_build = int(e.get("max_build", build))
                offs: Dict[str, Dict[str, int]] = {}
                for s in _STRUCTS:
                    offs[s] = {k: int(v, 16) if isinstance(v, str) else int(v) for k, v in (e.get(s) or {}).items()}
                arch = str(e.get("arch", "x64"))
                out.append(Layout(build, max_build, str(e.get("name", "")), tuple(e.get("source", ())), offs, arch))
            except (KeyError, TypeError, ValueError) as exc:
                raise DumpError(f"layout entry {i} is malformed: {exc}", path=path) from None
            if max_build < build:
                raise DumpError(f"layout entry {i}: max_build {max_build} < build {build}", path=path)
        return cls(out, path)

    def choose(self, build: Optional[int], arch: str = "x64") -> LayoutChoice:
        """The ``arch`` layout for ``build``: exact, else the nearest lower entry that covers it, else None."""
        if not build:
            return LayoutChoice(0, None, False, "the dump does not give an OS build number")
        mine = [lay for lay in self.layouts if lay.arch == arch]
        if not mine:
            return LayoutChoice(build, None, False, f"no {arch} structure layout is known for build {build} "
                                                    f"(the layout table has none for {arch})")
        best = None
        for lay in mine:
            if lay.build <= build:
                best = lay
        if best is not None and best.build == build:
            return LayoutChoice(build, best, True, f"build {build}: exact layout ({best.name})")
        if best is not None and build <= best.max_build:
            return LayoutChoice(build, best, False,
                                f"build {build}: using the build {best.build} layout ({best.name}), "
                                f"which covers {best.build}-{best.max_build}")
        known = ", ".join(str(lay.build) if lay.build == lay.max_build else f"{lay.build}-{lay.max_build}"
                          for lay in mine)
        return LayoutChoice(build, None, False,
                            f"unknown build {build}: no {arch} structure layout is known for it (known: {known})")


_TABLE: Optional[LayoutTable] = None


def load_table() -> LayoutTable:
    """The shipped layout table (loaded once)."""
    global _TABLE
    if _TABLE is None:
        from ..kbpath import kb_file
        p = kb_file("layouts.json")
        try:
            with open(p, "r", encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise DumpError(f"cannot load the structure layout table: {exc}", path=str(p)) from None
        _TABLE = LayoutTable.from_json(data, str(p))
    return _TABLE


def layout_for_build(build: Optional[int], arch: str = "x64") -> LayoutChoice:
    """Shortcut: ``load_table().choose(build, arch)``."""
    return load_table().choose(build, arch)


def kldr_timestamp_offset(build: Optional[int]) -> int:
    """KLDR_DATA_TABLE_ENTRY.TimeDateStamp: 0x9C on Windows 10+, 0x80 on Windows 7/8.x."""
    try:
        ch = layout_for_build(build)
    except DumpError:
        ch = None
    if ch and ch.layout is not None:
        v = ch.layout.get("kldr", "TimeDateStamp")
        if v is not None:
            return v
    return 0x9C if (build or 0) >= 10240 else 0x80
