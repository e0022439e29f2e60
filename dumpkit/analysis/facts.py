"""Facts about the crashed system that the analysis JSON carries beside the verdict: when it
crashed, how long it had been up, the OS build, and the culprit's image as ``lmvm`` shows it
(path, base, size, timestamp, version).  Filled from a dump's header and module list, or from
pasted text (``Debug session time``, ``System Uptime``, ``Built by``, ``lm``/``lmv`` output)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Dict, List, Mapping, Optional

__all__ = ["CulpritImage", "fill_from_dump", "fill_from_text", "culprit_image"]

_BUILD_RE = re.compile(r"\b(\d{4,5})\.\d+\.(?:amd64|x86|arm64)", re.I)
_BUILD_LAB_RE = re.compile(r"^\s*(\d{4,5})\b")


@dataclass
class CulpritImage:
    """The culprit module as ``lmvm`` would describe it (each value None when unknown)."""

    path: Optional[str] = None
    base: Optional[int] = None
    size: Optional[int] = None
    timestamp: Optional[int] = None
    version: Optional[str] = None

    def to_json(self) -> Dict[str, Any]:
        return {"path": self.path, "base": None if self.base is None else hex(self.base),
                "size": None if self.size is None else hex(self.size),
                "timestamp": None if self.timestamp is None else f"0x{self.timestamp:08x}",
                "version": self.version}


def _version_of(info: Optional[Mapping[str, str]]) -> Optional[str]:
    if not info:
        return None
    for key in ("FileVersion", "File version", "ProductVersion", "Product version"):
        for k, v in info.items():
            if k.lower() == key.lower() and v:
                return str(v).strip()
    return None


def culprit_image(analysis: Any, modules: Any = None, versions: Optional[Mapping[str, Mapping[str, str]]] = None
                  ) -> CulpritImage:
    """What is known about the culprit's image from ``modules`` (a ModuleList) and ``versions``
    (version fields by module file name or stem, as ``lmv`` prints them)."""
    name = getattr(analysis.culprit, "module", None)
    ci = CulpritImage()
    if not name:
        return ci
    mods = modules if modules is not None else getattr(analysis, "modules", None)
    m = mods.by_name(name) if mods is not None and len(mods) else None
    if m is not None:
        ci.path, ci.base, ci.size, ci.timestamp = m.path or m.name, m.base, m.size or None, m.timestamp
    low = name.lower()
    stem = low.rsplit(".", 1)[0]
    for k, v in (versions or {}).items():
        if k.lower() in (low, stem) or k.lower().rsplit(".", 1)[0] == stem:
            ci.version = _version_of(v)
            if ci.path is None:
                ci.path = v.get("Image path") or v.get("ImagePath") or None
            if ci.timestamp is None:
                ts = (v.get("Timestamp") or "").split()
                if ts and re.fullmatch(r"[0-9a-fA-F]{8}", ts[-1].strip("()")):
                    ci.timestamp = int(ts[-1].strip("()"), 16)
            break
    return ci


def truncation_reasons(d: Any) -> List[str]:
    """Why a dump cannot be read completely: the file is shorter than its writer declared
    (full, kernel and bitmap dumps) or a triage dump lacks its end marker or its declared size.
    Empty when the file is whole."""
    reasons: List[str] = []
    try:
        size = int(d.source.size)
    except (AttributeError, TypeError, ValueError):
        return reasons
    tri = getattr(d, "triage", None)
    if tri is not None:
        declared = int(tri.fields.get("size_of_dump") or 0)
        if declared and declared > size:
            reasons.append(f"the file is cut short: {size:,} of the {declared:,} bytes the triage dump declares "
                           f"({declared - size:,} missing)")
        elif not tri.valid:
            reasons.append("the triage dump's end marker ('TRGD' at ValidOffset) is missing: the file may be cut short")
        return reasons
    req = getattr(d.header, "required_dump_space", None)
    if req and req > size:
        reasons.append(f"the file is cut short: {size:,} of the {int(req):,} bytes the dump's writer declared "
                       f"({int(req) - size:,} missing)")
    return reasons


def fill_from_dump(analysis: Any, dump: Any, resolver: Any = None) -> Any:
    """Crash time, uptime, OS build and the culprit image from an open dump."""
    analysis.crash_time, analysis.uptime = dump.crash_time, dump.uptime
    if analysis.crash_time is not None:         # in the machine's own zone, where the dump tells it
        from ..kernel.shareddata import local_crash_time, time_zone_offset
        reader = getattr(dump, "try_read_virtual", None)
        if reader is not None:
            arch = getattr(dump, "arch", None)
            offset = time_zone_offset(reader, getattr(arch, "pointer_size", 8) or 8)
            analysis.crash_time = local_crash_time(analysis.crash_time, offset)
    analysis.os_build = getattr(dump, "build", None)
    versions: Dict[str, Dict[str, str]] = {}
    name = getattr(analysis.culprit, "module", None)
    m = dump.modules.by_name(name) if name else None
    if m is not None and resolver is not None:
        try:
            img = resolver.image_for(m)
            vi = getattr(img, "version_info", None) if img is not None else None
            if vi:
                versions[m.name] = dict(vi)
        except Exception:  # noqa: BLE001 - the version is a nicety; a damaged image must not stop the report
            pass
    analysis.culprit_image = culprit_image(analysis, dump.modules, versions)
    for why in truncation_reasons(dump):
        if why not in analysis.notes:
            analysis.notes.append(f"{why[0].upper()}{why[1:]}: the verdict rests on what the file still holds.")
    _dump_wording(analysis, dump)
    return analysis


def _dump_wording(analysis: Any, dump: Any) -> None:
    """Advice written for pasted text ("paste the .trap/.cxr output") makes no sense for a dump:
    say what the dump lacks instead."""
    fi = analysis.fault
    if fi is None or "paste the" not in (fi.explanation or ""):
        return
    short = bool(truncation_reasons(dump))
    why = ("the file is cut short, so the CONTEXT and exception record the bug check points at are missing"
           if short else "the CONTEXT and exception record the bug check points at are not in this dump")
    head = fi.explanation.split(";", 1)[0]
    fi.explanation = f"{head}; the faulting address is not known: {why}."


def fill_from_text(analysis: Any, parsed: Any = None) -> Any:
    """The same facts from pasted WinDbg text (``Debug session time``, ``System Uptime``,
    ``Built by`` / BUILDLAB_STR / OS_VERSION, and ``lm``/``lmv`` lines)."""
    from ..logs.correlate import parse_debug_session_time, parse_uptime
    if getattr(analysis, "crash_time", None) is None and analysis.debug_session_time:
        analysis.crash_time = parse_debug_session_time(analysis.debug_session_time)
    if getattr(analysis, "uptime", None) is None and analysis.system_uptime:
        analysis.uptime = parse_uptime(analysis.system_uptime)
    if getattr(analysis, "os_build", None) is None:
        analysis.os_build = _build_from_fields(analysis.fields, parsed)
    versions = getattr(parsed, "module_versions", None) if parsed is not None else None
    analysis.culprit_image = culprit_image(analysis, analysis.modules, versions)
    return analysis


def _build_from_fields(fields: Mapping[str, str], parsed: Any) -> Optional[int]:
    for key in ("BUILT_BY", "BUILDLAB_STR", "OS_VERSION", "BUILDOSVER_STR"):
        v = fields.get(key)
        if v:
            m = _BUILD_RE.search(v) or _BUILD_LAB_RE.match(v)
            if m:
                return int(m.group(1))
            m = re.match(r"^10\.0\.(\d{4,5})", v)
            if m:
                return int(m.group(1))
    built = getattr(parsed, "built_by", None) if parsed is not None else None
    if built:
        m = _BUILD_RE.search(built) or _BUILD_LAB_RE.match(built)
        if m:
            return int(m.group(1))
    return None


def as_iso(t: Optional[datetime]) -> Optional[str]:
    return None if t is None else t.isoformat()


def as_seconds(u: Optional[timedelta]) -> Optional[float]:
    return None if u is None else round(u.total_seconds(), 3)
