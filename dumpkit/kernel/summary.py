"""A one-object summary of a crash dump, for the REPL and for JSON.

``Dump.summary()`` gathers the facts a crash analyst reads first (the ``vertarget`` /
``.bugcheck`` / ``!analyze`` header lines): OS build and product type, processors, uptime,
crash time, the bug check, the crashing process and thread, module counts, the dump type and
the warnings met on the way.  Nothing here fails: a fact the dump does not give is None.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, List, Optional, Tuple

from ..errors import DumpError

if TYPE_CHECKING:  # pragma: no cover
    from .state import Kernel

PRODUCT_NAMES = {1: "WinNt", 2: "LanManNt", 3: "ServerNt"}     # what WinDbg's vertarget prints


def _fmt_uptime(seconds: Optional[float]) -> str:
    if seconds is None:
        return "unknown"
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    ms = int(round((seconds - int(seconds)) * 1000))
    return f"{d} days {h}:{m:02d}:{s:02d}.{ms:03d}"


@dataclass
class Summary:
    """The headline facts of a dump.  ``repr()`` reads like WinDbg's header; ``to_json()`` for tools."""

    path: str
    dump_type: str
    dump_type_code: int
    writer: str
    machine: str
    os_build: int
    product_type: Optional[int]
    processors: Optional[int]
    crash_time: Optional[_dt.datetime]
    uptime_seconds: Optional[float]
    bugcheck_code: int
    bugcheck_name: Optional[str]
    bugcheck_parameters: Tuple[int, int, int, int]
    process_name: Optional[str]
    process_id: Optional[int]
    thread_id: Optional[int]
    module_count: int
    unloaded_count: int
    layout: Optional[str] = None
    warnings: List[str] = field(default_factory=list)

    @property
    def product_name(self) -> Optional[str]:
        return None if self.product_type is None else PRODUCT_NAMES.get(self.product_type, str(self.product_type))

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "dump_type": self.dump_type,
            "dump_type_code": self.dump_type_code,
            "writer": self.writer,
            "machine": self.machine,
            "os_build": self.os_build,
            "product_type": self.product_type,
            "product_name": self.product_name,
            "processors": self.processors,
            "crash_time": self.crash_time.isoformat() if self.crash_time else None,
            "uptime_seconds": self.uptime_seconds,
            "bugcheck": {"code": hex(self.bugcheck_code), "name": self.bugcheck_name,
                         "parameters": [hex(p) for p in self.bugcheck_parameters]},
            "process": {"name": self.process_name, "pid": self.process_id, "tid": self.thread_id},
            "module_count": self.module_count,
            "unloaded_count": self.unloaded_count,
            "layout": self.layout,
            "warnings": list(self.warnings),
        }

    def __str__(self) -> str:
        bc = f"{self.bugcheck_code:X}"
        ps = ", ".join(f"{p:x}" for p in self.bugcheck_parameters)
        pid = "?" if self.process_id is None else f"{self.process_id:x}"
        tid = "?" if self.thread_id is None else f"{self.thread_id:x}"
        lines = [
            f"Dump          {self.path} ({self.dump_type}, DumpType {self.dump_type_code}, written by {self.writer})",
            f"Target        Windows {self.machine} build {self.os_build} {self.product_name or ''}".rstrip()
            + (f", {self.processors} processor{'' if self.processors == 1 else 's'}" if self.processors else ""),
            f"Crash time    {self.crash_time.isoformat() if self.crash_time else 'unknown'}",
            f"System uptime {_fmt_uptime(self.uptime_seconds)}",
            f"Bugcheck      {bc} ({ps})" + (f"  {self.bugcheck_name}" if self.bugcheck_name else ""),
            f"Process       {self.process_name or 'unknown'}  pid {pid}  tid {tid}",
            f"Modules       {self.module_count} loaded, {self.unloaded_count} unloaded",
        ]
        for w in self.warnings:
            lines.append(f"warning: {w}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return "<Summary\n" + str(self) + "\n>"


def build_summary(k: "Kernel") -> Summary:
    h = k.header
    up = h.uptime
    try:
        mods = len(k.modules)
    except DumpError:
        mods = 0
    try:
        unl = len(k.unloaded_modules)
    except DumpError:
        unl = 0
    th = k.thread
    return Summary(
        path=k.path, dump_type=k.facts.dump_type_name, dump_type_code=k.facts.dump_type, writer=h.writer,
        machine=h.machine, os_build=h.build, product_type=h.product_type, processors=h.number_processors,
        crash_time=h.system_time, uptime_seconds=None if up is None else round(up.total_seconds(), 3),
        bugcheck_code=k.bugcheck.code, bugcheck_name=k.bugcheck.name,
        bugcheck_parameters=tuple(k.bugcheck.parameters),  # type: ignore[arg-type]
        process_name=th.process_name if th else None, process_id=th.process_id if th else None,
        thread_id=th.thread_id if th else None, module_count=mods, unloaded_count=unl,
        layout=k.layout.reason, warnings=list(k.warnings))
