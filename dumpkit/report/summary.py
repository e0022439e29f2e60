"""A short verdict: what crashed, who is to blame, what to do."""
from __future__ import annotations

import textwrap
from typing import Any, List

__all__ = ["render_summary"]


def _wrap(prefix: str, text: str, width: int = 100) -> List[str]:
    return textwrap.wrap(text, width=width, initial_indent=prefix, subsequent_indent=" " * len(prefix)) or [prefix]


def _when(a: Any) -> str:
    """``2024-03-14 15:09:26 UTC, up 0:10:00, build 19041`` from whatever is known."""
    parts = []
    t = getattr(a, "crash_time", None)
    if t is not None:
        off = t.utcoffset()
        zone = "UTC" if off is not None and not off else (t.strftime("UTC%z") if off is not None else "local time")
        parts.append(f"{t:%Y-%m-%d %H:%M:%S} {zone}")
    elif getattr(a, "debug_session_time", None):
        parts.append(str(a.debug_session_time))
    up = getattr(a, "uptime", None)
    if up is not None:
        secs = up.total_seconds()
        parts.append(f"up {int(secs // 86400)} days {int(secs % 86400 // 3600)}:{int(secs % 3600 // 60):02d}:"
                     f"{secs % 60:06.3f}" if secs >= 86400 else f"up {int(secs // 3600)}:{int(secs % 3600 // 60):02d}:"
                     f"{secs % 60:06.3f}")
    elif getattr(a, "system_uptime", None):
        parts.append(f"up {a.system_uptime}")
    if getattr(a, "os_build", None):
        parts.append(f"build {a.os_build}")
    return ", ".join(parts)


def render_summary(a: Any, width: int = 100) -> str:
    """Plain-text summary of an Analysis (a few paragraphs, no WinDbg jargon beyond the bucket)."""
    lines: List[str] = []
    if a.bugcheck_code is not None:
        bc = f"0x{a.bugcheck_code:X} {a.bugcheck_name or ''}".strip()
        if a.bugcheck_inferred:
            bc += " (inferred from the stack)"
    else:
        bc = "unknown bug check (not in the input)"
    lines += _wrap("Crash:    ", bc, width)
    when = _when(a)
    if when:
        lines += _wrap("Time:     ", when, width)
    if a.fault is not None and a.fault.explanation:
        lines += _wrap("What:     ", a.fault.explanation, width)
    if a.load_context:
        lines += _wrap("When:     ", f"during {a.load_context}", width)
    c = a.culprit
    if c.module:
        who = f"{c.module}"
        extra = ", ".join(x for x in (c.vendor, c.category) if x)
        if extra:
            who += f" ({extra})"
        lines += _wrap("Culprit:  ", f"{who} [confidence: {a.confidence}]", width)
    else:
        lines += _wrap("Culprit:  ", f"not on the stack [confidence: {a.confidence}]", width)
    if c.reason:
        lines += _wrap("          ", c.reason, width)
    for v in a.victims:
        lines += _wrap("Victim:   ", f"{v.module}: {v.reason}", width)
    if getattr(a, "callers", None):
        lines += _wrap("Callers:  ", ", ".join(a.callers) + " (called the culprit; not the cause)", width)
    if a.failure_bucket_id:
        lines += _wrap("Bucket:   ", f"{a.failure_bucket_id} {a.failure_id_hash or ''}".strip(), width)
    if a.remediation:
        lines.append("Do:")
        for n, r in enumerate(a.remediation, 1):
            lines += _wrap(f"  {n}. ", r, width)
    for c in getattr(a, "correlations", ()):
        lines += _wrap("Logs:     ", f"[{c.confidence}] {c.summary}", width)
        for r in c.remediation:
            lines += _wrap("          do: ", r, width)
    for n in a.notes:
        lines += _wrap("Note:     ", n, width)
    return "\n".join(lines)
