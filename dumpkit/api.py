"""Top-level conveniences: ``dumpkit.analyze`` for a dump, a path or pasted WinDbg text."""
from __future__ import annotations

import os
import re
from typing import Any, Optional, Union

from .dump import Dump, open as open_dump
from .errors import DumpError


def _looks_like_dump(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"PAGE", b"MDMP", b"MSCF")
    except OSError:
        return False


def _looks_like_a_path(text: str) -> bool:
    """One line, no spaces inside, with a folder separator or a file extension: a path, not pasted text."""
    t = text.strip()
    if not t or "\n" in t or len(t) > 4096 or " " in t or "\t" in t:
        return False
    if "!" in t or "`" in t:                 # nt!KeBugCheckEx, fffff804`0c9d08c2
        return False
    return "/" in t or "\\" in t or bool(re.search(r"\.[A-Za-z][A-Za-z0-9]{0,4}$", t))


def analyze(target: Union[Dump, str, bytes, "os.PathLike[str]"], symbol_path: Any = None, *,
            offline: Optional[bool] = None, logs: Any = None):
    """Analyse a crash: an open :class:`Dump`, the path of a dump or of a text file with pasted
    WinDbg output, or the pasted text itself.  Returns an :class:`~dumpkit.analysis.engine.Analysis`.

    ``logs``: setup logs collected beside the dump (a folder, a .zip bundle, one log file, or
    what :func:`dumpkit.logs.open_bundle` returned): the analysis then carries
    ``correlations`` between the dump and the logs (same module in failing setupapi
    sections, the crash time against the log errors, missing driver paths...).
    """
    a = _analyze(target, symbol_path, offline)
    if logs is not None:
        attach_logs(a, logs)
    return a


def attach_logs(analysis: Any, logs: Any) -> Any:
    """Correlate ``analysis`` with setup logs; fills ``analysis.correlations``."""
    from .logs import correlate, summarize_logs
    from .logs.correlate import parse_debug_session_time, parse_uptime

    findings = summarize_logs(logs)
    crash_time = getattr(analysis, "crash_time", None)
    if crash_time is None and analysis.debug_session_time:
        crash_time = parse_debug_session_time(analysis.debug_session_time)
    uptime = getattr(analysis, "uptime", None)
    if uptime is None and analysis.system_uptime:
        uptime = parse_uptime(analysis.system_uptime)
    modules = [f.module for f in analysis.frames if f.module]
    analysis.correlations = correlate(findings, crash_time=crash_time, modules=modules,
                                      culprit=analysis.culprit.module, uptime=uptime,
                                      bugcheck_code=analysis.bugcheck_code)
    analysis.log_findings = findings
    return analysis


def _analyze(target: Any, symbol_path: Any, offline: Optional[bool]):
    from .analysis.dumpsource import analyze_dump
    from .analysis.engine import analyze_text

    if isinstance(target, Dump):
        from .analysis.facts import fill_from_dump
        a = analyze_dump(target, symbol_path, offline=offline)
        try:
            res = target.resolver(symbol_path, offline=offline)
        except DumpError:
            res = None
        return fill_from_dump(a, target, res)
    if isinstance(target, bytes):
        return analyze_text(target)
    text_or_path = os.fspath(target)
    is_path = "\n" not in text_or_path and len(text_or_path) < 4096 and os.path.exists(text_or_path)
    if not is_path and _looks_like_a_path(text_or_path):
        parent = os.path.dirname(os.path.abspath(text_or_path))
        raise DumpError("no such file" + ("" if os.path.isdir(parent) else f" (the folder {parent} does not exist)"),
                        path=text_or_path, hint="give the path of a dump or of a text file with WinDbg output, "
                                                "or the pasted text itself")
    if is_path and os.path.isdir(text_or_path):
        raise DumpError("is a directory, not a dump or text file", path=text_or_path)
    if is_path and _looks_like_dump(text_or_path):
        with open_dump(text_or_path) as d:
            return _analyze(d, symbol_path, offline)
    if is_path:
        with open(text_or_path, "rb") as f:
            return analyze_text(f.read(), source=text_or_path)
    return analyze_text(text_or_path)
