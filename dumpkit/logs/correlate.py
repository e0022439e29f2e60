"""Put the dump and the setup logs side by side: :func:`correlate`.

The dump side stays abstract - a crash time, module names and the culprit -
so the same call works from a parsed dump or from WinDbg text pasted into a
mail (:func:`parse_debug_session_time` and :func:`parse_uptime` read WinDbg's
``Debug session time:`` and ``System Uptime:`` lines).

Time rule: setup logs are written in the machine's local time without a zone.
An aware ``crash_time`` is compared by its wall clock in its own offset (the
dump's, e.g. ``UTC + 8:00``: the same machine wrote the logs), unless
``log_utc_offset`` says what offset the logs use.  A naive ``crash_time`` is
taken as already being log-local.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Iterable, List, Optional, Tuple, Union

from ..errors import DumpWarning
from .codes import format_code
from .findings import LogError, LogFindings, SetupApiFailure

CONFIDENCE_ORDER = {"high": 0, "medium": 1, "low": 2}
_KIND_ORDER = {"module-in-failing-setupapi": 0, "missing-driver-path": 1, "rollback-bugcheck": 2, "time-window": 3,
               "related-setupapi-failure": 4}

#: kernel components that are victims far more often than causes: matched, but never the headline
_USUAL_VICTIMS = frozenset({"nt", "ntoskrnl", "ntkrnlmp", "hal", "ndis", "ks", "netio", "wdf01000", "fltmgr",
                            "tcpip", "storport", "classpnp", "volmgr", "acpi", "pci"})
_SERVICES_KEY = r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services"
_PNP_DRIVERPATHS = r"HKLM\Software\Microsoft\Windows NT\CurrentVersion\UnattendSettings\PnPUnattend\DriverPaths"


@dataclass(frozen=True)
class Correlation:
    """One link between the dump and the logs, in plain words."""

    kind: str                      # module-in-failing-setupapi | related-setupapi-failure | module-in-setupapi |
    #                                time-window | time-outside-logs | missing-driver-path | rollback-bugcheck
    summary: str
    confidence: str = "medium"     # high | medium | low
    module: str = ""
    evidence: Tuple[str, ...] = ()
    remediation: Tuple[str, ...] = ()
    time_delta: Optional[timedelta] = None   # log time minus crash time, where one log event is the anchor

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", tuple(self.evidence or ()))         # frozen dataclass
        object.__setattr__(self, "remediation", tuple(self.remediation or ()))

    def render(self) -> str:
        lines = [f"[{self.confidence}] {self.summary}"]
        lines += [f"    evidence: {e}" for e in self.evidence]
        lines += [f"    do: {r}" for r in self.remediation]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary

    def __repr__(self) -> str:
        return f"<Correlation {self.kind} [{self.confidence}] {self.summary[:90]!r}>"


# --------------------------------------------------------------------------- WinDbg time helpers
_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                        "nov", "dec"], 1)}
_SESSION_RE = re.compile(r"(?:Debug session time:\s*)?(?:\w{3}\s+)?(\w{3})\s+(\d{1,2})\s+(\d{1,2}):(\d\d):(\d\d)"
                         r"(?:\.(\d{1,3}))?\s+(\d{4})(?:\s*\(UTC\s*([+-])\s*(\d{1,2}):(\d\d)\))?")
MAX_UPTIME_DAYS = 36_525       #: a hundred years: a longer uptime is garbage, not a machine
_UPTIME_RE = re.compile(r"(?<!\d)(\d+)\s+days?\s+(\d+):(\d\d):(\d\d)(?:\.(\d{1,3}))?")


def parse_debug_session_time(text: str) -> Optional[datetime]:
    """``Mon Jun 26 08:07:55.743 2023 (UTC + 8:00)`` -> aware datetime (naive if no offset); None if absent."""
    m = _SESSION_RE.search(text or "")
    if not m:
        return None
    mon = _MONTHS.get(m.group(1).lower()[:3])
    if mon is None:
        return None
    try:
        dt = datetime(int(m.group(7)), mon, int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)),
                      int((m.group(6) or "0").ljust(3, "0")) * 1000)
    except ValueError:
        warnings.warn(DumpWarning(f"debug session time {m.group(0)[:60]!r} is not a real date; ignored"), stacklevel=2)
        return None
    if m.group(8):
        off = timedelta(hours=int(m.group(9)), minutes=int(m.group(10)))
        if off >= timedelta(hours=24):
            return dt
        dt = dt.replace(tzinfo=timezone(off if m.group(8) == "+" else -off))
    return dt


def parse_uptime(text: str) -> Optional[timedelta]:
    """``System Uptime: 0 days 0:00:40.641`` -> timedelta; None if absent.

    An uptime no machine can have (more than :data:`MAX_UPTIME_DAYS` days, or hours,
    minutes or seconds out of their clock range) is ignored with a :class:`DumpWarning`.
    """
    m = _UPTIME_RE.search(text or "")
    if not m:
        return None
    days_s, hours_s = m.group(1), m.group(2)
    if len(days_s) > 6 or len(hours_s) > 2 or int(days_s) > MAX_UPTIME_DAYS or int(hours_s) > 23 \
            or int(m.group(3)) > 59 or int(m.group(4)) > 59:
        warnings.warn(DumpWarning(f"system uptime {m.group(0)[:60]!r} is out of range "
                                  f"(at most {MAX_UPTIME_DAYS} days, clock fields 23:59:59); ignored"), stacklevel=2)
        return None
    return timedelta(days=int(days_s), hours=int(hours_s), minutes=int(m.group(3)), seconds=int(m.group(4)),
                     milliseconds=int((m.group(5) or "0").ljust(3, "0")))


# --------------------------------------------------------------------------- helpers
def module_stem(name: str) -> str:
    """``lwfmgr.sys`` / ``lwfmgr+0x5167`` / ``ndis!NdisFDeregisterFilterDriver`` / ``C:\\..\\x.sys`` -> ``lwfmgr``."""
    s = (name or "").strip().strip("`'\"")
    s = re.split(r"[!+]", s, maxsplit=1)[0]
    s = re.split(r"[\\/]", s)[-1].lower()
    for ext in (".sys", ".dll", ".exe", ".inf"):
        if s.endswith(ext):
            s = s[: -len(ext)]
    return s


def _to_log_local(crash_time: datetime, log_utc_offset: Optional[timedelta]) -> Tuple[datetime, str]:
    if crash_time.tzinfo is None:
        return crash_time, "crash time taken as the logs' local time"
    if log_utc_offset is not None:
        local = crash_time.astimezone(timezone(log_utc_offset)).replace(tzinfo=None)
        return local, f"crash time converted to the logs' offset {_fmt_offset(log_utc_offset)}"
    off = crash_time.utcoffset() or timedelta(0)
    return crash_time.replace(tzinfo=None), f"crash time in the dump's local time ({_fmt_offset(off)})"


def _fmt_offset(off: timedelta) -> str:
    total = int(off.total_seconds())
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"UTC{sign}{total // 3600}:{(total % 3600) // 60:02d}"


def _fmt_delta(d: timedelta) -> str:
    s = int(abs(d.total_seconds()))
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min {s % 60} s"
    if s < 2 * 86400:
        return f"{s // 3600} h {(s % 3600) // 60} min"
    return f"{s // 86400} days"


def _disable_service_steps(service: str) -> Tuple[str, ...]:
    return (
        f"Before the upgrade set Start=4 (disabled) under {_SERVICES_KEY}\\{service}, then run the upgrade",
        f"After the upgrade restore {service}'s Start value (its management software may do it), "
        f"or update/uninstall the software that owns {service} first",
    )


def _event_label(ev: object) -> str:
    if isinstance(ev, LogError):
        who = f"[{ev.entry.source}]" if ev.entry.source else (ev.entry.component or "")
        codes = ", ".join(format_code(c) for c in ev.entry.codes[:2])
        msg = ev.entry.message.replace("\n", " ")
        if len(msg) > 100:
            msg = msg[:97] + "..."
        return f"{who} error{' ' + codes if codes else ''}: {msg}"
    if isinstance(ev, SetupApiFailure):
        code = f"FAILURE({ev.exit_code:#010x})" if ev.exit_code is not None else "FAILURE"
        svc = f" (services {', '.join(ev.services)})" if ev.services else ""
        return f"setupapi section {ev.section.label} {code}{svc}"
    return str(ev)


def _timed_events(f: LogFindings) -> List[Tuple[datetime, Union[LogError, SetupApiFailure]]]:
    evs: List[Tuple[datetime, Union[LogError, SetupApiFailure]]] = [(e.time, e) for e in f.errors if e.time is not None]
    evs += [(x.time, x) for x in f.setupapi_failures if x.time is not None]
    evs.sort(key=lambda t: t[0])
    return evs


# --------------------------------------------------------------------------- correlate
def correlate(findings: LogFindings, crash_time: Optional[datetime] = None, modules: Optional[Iterable[str]] = None,
              culprit: Optional[str] = None, *, uptime: Optional[timedelta] = None,
              bugcheck_code: Optional[int] = None, log_utc_offset: Optional[timedelta] = None,
              window: timedelta = timedelta(minutes=15)) -> List[Correlation]:
    """Link the dump (time, modules, culprit) to the setup-log findings.

    * ``crash_time``: when the dump was written (aware, with the dump's UTC
      offset when known; see the module doc for the time rule);
    * ``modules``: module names from the dump's stack or module list
      (``lwfmgr``, ``lwfmgr.sys``, ``ndis!Ndis...`` all work);
    * ``culprit``: the module the dump analysis blames (gets the top rank);
    * ``uptime``: the dump's system uptime (gives the boot time);
    * ``bugcheck_code``: to check against a rollback ``Crash 0x... detected`` block.

    Returns correlations sorted by confidence (high first).
    """
    out: List[Correlation] = []
    names: List[str] = []
    culprit_stem = module_stem(culprit) if culprit else ""
    for n in ([culprit] if culprit else []) + list(modules or []):
        st = module_stem(n)
        if st and st not in names:
            names.append(st)

    # 1. the same module/service in the dump and in failing setupapi sections
    matched_failures: List[SetupApiFailure] = []
    for st in names:
        hits = [x for x in findings.setupapi_failures if x.section.mentions(st)]
        if not hits:
            continue
        matched_failures += [h for h in hits if h not in matched_failures]
        is_culprit = st == culprit_stem
        conf = "high" if is_culprit or st not in _USUAL_VICTIMS else "low"
        first = hits[0]
        codes = sorted({format_code(h.exit_code) for h in hits if h.exit_code is not None})
        expl = first.explanation.name if first.explanation and first.explanation.name else ""
        when = f" at {first.time:%Y-%m-%d %H:%M:%S}" if first.time else ""
        role = "the dump's culprit" if is_culprit else "on the dump's stack/module list"
        summary = (f"{st} ({role}) is in {len(hits)} failing setupapi section(s): {first.section.label} ended "
                   f"FAILURE({', '.join(codes) or '?'}){' ' + expl if expl else ''}{when}")
        evidence = []
        for h in hits[:5]:
            refs = [r for r in h.section.services if module_stem(r.name) == st]
            for r in refs[:3]:
                src = f" ({r.inf} line {r.inf_line})" if r.inf else ""
                evidence.append(f"{h.file} L{r.line}: service {r.name} {r.action}{src}")
            evidence.append(f"{h.file} L{h.section.last_line}: {_event_label(h)}")
        remediation: Tuple[str, ...] = ()
        if st not in _USUAL_VICTIMS:
            remediation = _disable_service_steps(st)
        out.append(Correlation("module-in-failing-setupapi", summary, conf, st, tuple(evidence), remediation,
                               (first.time - _to_log_local(crash_time, log_utc_offset)[0])
                               if crash_time and first.time else None))

    # 2. other failing sections: same failure, different service
    matched_codes = {m.exit_code for m in matched_failures}
    for x in findings.setupapi_failures:
        if x in matched_failures:
            continue
        same = bool(matched_failures) and x.exit_code in matched_codes
        svc = ", ".join(x.services) or "no named service"
        if same:
            summary = (f"{svc} failed the same way ({_event_label(x)}); if setup still rolls back after dealing "
                       f"with {', '.join(sorted({m for c in out for m in [c.module] if m}))}, handle {svc} too")
            rem: Tuple[str, ...] = ()
            if x.services:
                rem = tuple(s for svc_name in x.services[:2] for s in _disable_service_steps(svc_name)[:1])
            out.append(Correlation("related-setupapi-failure", summary, "medium", x.services[0] if x.services else "",
                                   (f"{x.file} L{x.section.first_line}-{x.section.last_line}: {_event_label(x)}",), rem))
        else:
            out.append(Correlation("setupapi-failure", f"Also failing: {_event_label(x)}", "low",
                                   x.services[0] if x.services else "",
                                   (f"{x.file} L{x.section.first_line}-{x.section.last_line}",)))

    # 3. culprit named only in successful sections
    if culprit_stem and not any(c.module == culprit_stem and c.kind == "module-in-failing-setupapi" for c in out):
        ok = [(fn, s) for fn, s in findings.setupapi_sections() if s.mentions(culprit_stem)]
        if ok:
            fn, s = ok[-1]
            out.append(Correlation("module-in-setupapi",
                                   f"{culprit_stem} appears in {len(ok)} setupapi section(s) that did not fail "
                                   f"(last: {s.label} {s.status or '?'})", "low", culprit_stem,
                                   (f"{fn} L{s.first_line}-{s.last_line}",)))

    # 4. time: where the dump falls among the log errors
    if crash_time is not None:
        local, how = _to_log_local(crash_time, log_utc_offset)
        out += _time_correlations(findings, local, how, uptime, window)

    # 5. driver paths that do not exist (PnpUnattend)
    drv = [m for m in findings.missing_paths if m.is_driver_path]
    if drv:
        paths = []
        for m in drv:
            if m.path not in paths:
                paths.append(m.path)
        who = sorted({m.who for m in drv if m.who})
        ev = tuple(f"{m.file} L{m.entry.line}: {m.time:%Y-%m-%d %H:%M:%S} " if m.time else f"{m.file} L{m.entry.line}: "
                   for m in drv[:6])
        ev = tuple(e + f"[{m.who}] {m.path}: {format_code(m.code)} (path not found)" for e, m in zip(ev, drv))
        out.append(Correlation(
            "missing-driver-path",
            f"{', '.join(who) or 'The driver installer'} was pointed at driver paths that do not exist: "
            f"{', '.join(paths)}; drivers from there were never installed",
            "high", "", ev,
            ("Fix the driver-store path in the unattend/preload script (the PnPUnattend DriverPaths entries under "
             f"{_PNP_DRIVERPATHS}, or the answer file's driver paths) so it names folders that exist on the image",
             "Re-run the audit/OOBE pass after fixing; a pass already marked failed keeps failing until the image "
             "is redeployed")))
    other_missing = [m for m in findings.missing_paths if not m.is_driver_path]
    for m in other_missing[:5]:
        out.append(Correlation("missing-path", f"[{m.who}] was given a path that does not exist: {m.path}", "low",
                               "", (f"{m.file} L{m.entry.line}",)))

    # 6. rollback bugcheck block vs the dump's bugcheck
    for fn, c in findings.rollback.crashes:
        if bugcheck_code is None:
            out.append(Correlation("rollback-bugcheck", f"Setup recorded bugcheck {c.code:#x} before rolling back "
                                   f"({fn} L{c.line})", "medium", c.module, ()))
        elif (c.code & 0xFFFFFFF) == (bugcheck_code & 0xFFFFFFF):
            out.append(Correlation("rollback-bugcheck", f"The rollback log records the same bugcheck "
                                   f"{c.code:#x} as the dump: setup rolled back because of this crash", "high",
                                   c.module, (f"{fn} L{c.line}",)))
        else:
            out.append(Correlation("rollback-bugcheck", f"The rollback log records bugcheck {c.code:#x}, the dump "
                                   f"has {bugcheck_code:#x}: they are different crashes", "low", c.module,
                                   (f"{fn} L{c.line}",)))

    out.sort(key=lambda c: (CONFIDENCE_ORDER.get(c.confidence, 3), _KIND_ORDER.get(c.kind, 9)))
    return out


def _time_correlations(f: LogFindings, local: datetime, how: str, uptime: Optional[timedelta],
                       window: timedelta) -> List[Correlation]:
    out: List[Correlation] = []
    evs = _timed_events(f)
    ts = f"{local:%Y-%m-%d %H:%M:%S}"
    boot = local - uptime if uptime is not None else None
    extra: List[str] = [how]
    if boot is not None:
        extra.append(f"machine booted at about {boot:%Y-%m-%d %H:%M:%S} (crash time minus uptime)")
    if not evs:
        if f.time_range:
            a, b = f.time_range
            if not (a - window <= local <= b + window):
                out.append(Correlation("time-outside-logs", f"The dump ({ts}) is outside the time the logs cover "
                                       f"({a:%Y-%m-%d %H:%M:%S} .. {b:%Y-%m-%d %H:%M:%S}): they may be about "
                                       f"another attempt", "low", "", tuple(extra)))
        return out
    before = [(t, e) for t, e in evs if t <= local]
    after = [(t, e) for t, e in evs if t > local]
    prev = before[-1] if before and local - before[-1][0] <= window else None
    nxt = after[0] if after and after[0][0] - local <= window else None
    if prev or nxt:
        parts = []
        if prev and nxt:
            parts.append(f"The dump ({ts}) falls between {_event_label(prev[1])} at {prev[0]:%H:%M:%S} "
                         f"({_fmt_delta(local - prev[0])} before) and {_event_label(nxt[1])} at "
                         f"{nxt[0]:%H:%M:%S} ({_fmt_delta(nxt[0] - local)} after): dump and logs tell one story")
        elif prev:
            parts.append(f"The dump ({ts}) comes {_fmt_delta(local - prev[0])} after {_event_label(prev[1])} "
                         f"at {prev[0]:%H:%M:%S}")
        else:
            assert nxt is not None                      # 'prev or nxt' holds
            parts.append(f"The dump ({ts}) comes {_fmt_delta(nxt[0] - local)} before {_event_label(nxt[1])} "
                         f"at {nxt[0]:%H:%M:%S}")
        evidence = list(extra)
        for t, e in ([prev] if prev else []) + ([nxt] if nxt else []):
            where = f"{e.file} L{e.entry.line}" if isinstance(e, LogError) else f"{e.file} L{e.section.last_line}"
            evidence.append(f"{where}: {t:%Y-%m-%d %H:%M:%S} {_event_label(e)}")
        if boot is not None:
            since = [(t, e) for t, e in evs if boot <= t <= local]
            if since:
                evidence.append(f"{len(since)} logged error(s) between that boot and the crash")
        anchor = prev or nxt
        out.append(Correlation("time-window", parts[0], "high" if prev and nxt else "medium", "",
                               tuple(evidence), (), anchor[0] - local if anchor else None))
    else:
        first, last = evs[0][0], evs[-1][0]
        if local < first - window or local > last + window:
            side = "before the first" if local < first else "after the last"
            ref = first if local < first else last
            out.append(Correlation("time-outside-logs", f"The dump ({ts}) is {_fmt_delta(local - ref)} {side} logged "
                                   f"error ({ref:%Y-%m-%d %H:%M:%S}): it may belong to another attempt or boot",
                                   "low", "", tuple(extra), (), ref - local))
        else:
            out.append(Correlation("time-window", f"No logged error within {_fmt_delta(window)} of the dump ({ts})",
                                   "low", "", tuple(extra)))
    return out


__all__ = ["Correlation", "correlate", "parse_debug_session_time", "parse_uptime", "module_stem"]
