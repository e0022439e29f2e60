"""Panther-style logs: setupact.log / setuperr.log, UnattendGC, sysprep, DISM and CBS.

All of these come from the same writer and share one line shape::

    2023-06-26 08:03:30, Error                        [audit.exe] Failed to orchestrate reboot; hr = 0x8007045b
    2019-02-11 12:51:51, Error                 CBS    Failed to process single phase execution. [HRESULT = 0x800f0950 - CBS_E_INVALID_WINDOWS_UPDATE_COUNT]
    2024-03-07 22:26:20, Error      [0x0f0070] SYSPRP RunDlls:An error occurred ...

i.e. timestamp (local time, no zone), level padded to a column, an optional
6-digit message id, a component padded to 7 columns (blank in UnattendGC,
where the writing program follows in brackets), then the message.  When the
padding is intact the columns are used; web copies and mail collapse the
spaces, so a tolerant reading follows.  Lines without a timestamp continue
the previous entry (a message that wraps, like the Chinese PnpUnattend line
of support case 1 whose ``)`` sits on the next line).

The parser streams: :func:`iter_panther` yields entries one by one;
:func:`parse_panther` keeps a bounded list plus counts, time range, the
rollback crash blocks (``SP  Crash 0x0000007E detected`` ...) and any
``result - extend`` code pairs.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, Iterator, List, Optional, Tuple

from ..errors import TextParseError
from ._text import DecodeStats, LogSource, open_text
from .codes import ErrorCodeInfo, UpgradeResult, find_result_pairs, format_code, lookup_code

LEVELS = ("Fatal Error", "Error", "Warning", "Info", "Perf", "Verbose", "Trace")
ERROR_LEVELS = frozenset({"Error", "Fatal Error"})
_LEVEL_RE = "Fatal Error|Error|Warning|Info|Perf|Verbose|Trace"

_FULL_RE = re.compile(rf"^(\d{{4}})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d), ?({_LEVEL_RE})\b(.*)$")
_SHORT_RE = re.compile(rf"^(\d{{1,2}}):(\d\d), ({_LEVEL_RE})\b(.*)$")                  # "27:08, Error" (doc copies)
_BARE_RE = re.compile(rf"^({_LEVEL_RE})\s+(?=\[|[A-Z][A-Z0-9]{{1,6}}\s)(.*)$")         # "Error [audit.exe] ..."
_TAG_ONLY_RE = re.compile(r"^\[([^\[\]]{1,64}?\.(?:exe|EXE|dll|DLL)|Shell Unattend)\]\s(.*)$")
_ID_RE = re.compile(r"^\s*\[(0x[0-9A-Fa-f]{6})\]\s*")
_COMP_RE = re.compile(r"^([A-Z][A-Z0-9]{1,6})(\s+)(?=\S)")
_COL_COMP_RE = re.compile(r"(?:[A-Z][A-Z0-9]{0,5})? *")
_COL_ID_RE = re.compile(r"\[0x[0-9A-Fa-f]{6}\] ")
_TAG_RE = re.compile(r"^\[([^\[\]]{1,64})\]\s?")
_GLE_RE = re.compile(r"\[gle=(0x[0-9A-Fa-f]{1,8})\]")
_HEX_RE = re.compile(r"(?<![\w.])0x([0-9A-Fa-f]{1,8})(?![0-9A-Za-z_])")
_NOT_ERROR_CTX = re.compile(r"(?:flags|parameter \d|mode|options|suite|rank|pid|tid|score)(?:\s*[:=])?\s*\[?$", re.I)
_HRNAME_RE = re.compile(r"\[HRESULT = (0x[0-9A-Fa-f]{8}) - ([A-Z][A-Z0-9_]+)\]")
_CSI_RE = re.compile(r"^([0-9a-f]{8})(?:@(\d{4}/\d{1,2}/\d{1,2}:\d\d:\d\d:\d\d\.\d{3}))?\s+(\(F\)\s+)?")
_CRASH_RE = re.compile(r"^Crash (0x[0-9A-Fa-f]{1,8}) detected")
_MODNAME_RE = re.compile(r"^Module name\s*:\s*(.*?)\s*$")
_PARAM_RE = re.compile(r"^Bugcheck parameter (\d)\s*:\s*(0x[0-9A-Fa-f]{1,16})")

#: component column values seen in real logs (a collapsed line is trusted only for these)
KNOWN_COMPONENTS = frozenset({
    "MOUPG", "SP", "MIG", "CONX", "PANTHR", "IBSLIB", "IBS", "DISM", "CSI", "CBS", "SYSPRP", "DPX", "SQM",
    "UI", "DU", "SETUP", "WINPE", "OOBE", "TOOL", "MOSETUP", "SETUPAPI",
})
MAX_MESSAGE = 16 * 1024     #: a message (with continuations) is cut beyond this
MAX_CONTINUATION = 200      #: continuation lines kept per entry


@dataclass(slots=True)
class PantherEntry:
    """One log entry (one line, plus the lines it wraps onto)."""

    line: int
    time: Optional[datetime]
    level: str
    component: str = ""          # SP, MIG, CONX, MOUPG, CBS, CSI... ("" in UnattendGC)
    source: str = ""             # the bracketed writer in UnattendGC: "PNPUNATTEND.EXE", "audit.exe"
    message: str = ""
    message_id: Optional[int] = None
    gle: Optional[int] = None    # GetLastError at log time ("[gle=0x...]")
    codes: Tuple[int, ...] = ()  # error codes mentioned in the message (non-zero)
    hresult_name: str = ""       # CBS "[HRESULT = 0x... - NAME]"
    csi_failure: bool = False    # CSI "(F)" failure record
    continued: int = 0           # number of wrapped lines joined into the message

    @property
    def who(self) -> str:
        """The writer: bracketed program if any, else the component."""
        return self.source or self.component

    @property
    def is_error(self) -> bool:
        return self.level in ERROR_LEVELS or self.csi_failure

    @property
    def code(self) -> Optional[int]:
        """The main error code of the entry (first one mentioned)."""
        return self.codes[0] if self.codes else None

    def explain(self) -> List[ErrorCodeInfo]:
        """Known explanations for the codes in this entry."""
        out = []
        for c in self.codes:
            info = lookup_code(c)
            if info is not None:
                out.append(info)
        return out

    def render(self) -> str:
        """The entry as one readable line."""
        ts = self.time.strftime("%Y-%m-%d %H:%M:%S") if self.time else "--"
        who = f"[{self.source}]" if self.source else self.component
        msg = self.message.replace("\n", " ")
        return f"{ts}, {self.level:<7} {who} {msg}".replace("  ", " ")

    def __repr__(self) -> str:
        msg = self.message.replace("\n", " ")
        if len(msg) > 70:
            msg = msg[:67] + "..."
        ts = self.time.strftime("%Y-%m-%d %H:%M:%S") if self.time else "--"
        codes = ",".join(format_code(c) for c in self.codes[:3])
        return f"<PantherEntry L{self.line} {ts} {self.level} {self.who or '-'}{' ' + codes if codes else ''}: {msg!r}>"


@dataclass
class RollbackCrash:
    """A bugcheck summary written by setup into the rollback setupact.log."""

    line: int
    time: Optional[datetime]
    code: int
    module: str = ""
    parameters: List[int] = field(default_factory=list)

    def __repr__(self) -> str:
        params = ", ".join(f"{p:#x}" for p in self.parameters)
        mod = f" module {self.module}" if self.module else ""
        return f"<RollbackCrash L{self.line} bugcheck {self.code:#x}{mod} ({params})>"


@dataclass
class PantherLog:
    """A parsed Panther-style log (bounded: entries beyond ``max_entries`` are only counted)."""

    name: Optional[str]
    kind: str = "panther"
    entries: List[PantherEntry] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=dict)
    writers: Dict[str, int] = field(default_factory=dict)
    first_time: Optional[datetime] = None
    last_time: Optional[datetime] = None
    crashes: List[RollbackCrash] = field(default_factory=list)
    results: List[Tuple[int, UpgradeResult]] = field(default_factory=list)   # (line, pair)
    unparsed_lines: int = 0       # text before the first entry that is not an entry
    dropped: int = 0              # entries not kept (keep="problems" or over max_entries)
    decode: DecodeStats = field(default_factory=DecodeStats)

    @property
    def errors(self) -> List[PantherEntry]:
        return [e for e in self.entries if e.is_error]

    @property
    def warnings(self) -> List[PantherEntry]:
        return [e for e in self.entries if e.level == "Warning"]

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def partial(self) -> bool:
        """True when reading stopped early (damaged archive member)."""
        return self.decode.read_error is not None

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[PantherEntry]:
        return iter(self.entries)

    def __repr__(self) -> str:
        span = ""
        if self.first_time and self.last_time:
            span = f" {self.first_time:%Y-%m-%d %H:%M:%S}..{self.last_time:%H:%M:%S}"
        err = self.counts.get("Error", 0) + self.counts.get("Fatal Error", 0)
        return (f"<PantherLog {self.name or '<text>'} [{self.kind}] {self.total} entries, {err} errors,"
                f" {self.counts.get('Warning', 0)} warnings{span}{' PARTIAL' if self.partial else ''}>")


def _time(y: str, mo: str, d: str, h: str, mi: str, s: str) -> Optional[datetime]:
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s))
    except ValueError:
        return None


def _split_rest(line: str, level: str, rest: str, full: bool) -> Tuple[Optional[int], str, str]:
    """(message id, component, message) from what follows the level."""
    # fixed columns when the padding is intact
    if full and len(line) > 50 and line[19:21] == ", " and line[21:32].rstrip() == level:
        idf, comp, msg = line[32:43], line[43:50], line[50:]
        mid = None
        ok_id = not idf.strip() or _COL_ID_RE.fullmatch(idf) is not None
        ok_comp = comp.endswith(" ") and _COL_COMP_RE.fullmatch(comp) is not None
        if ok_id and ok_comp and msg[:1] != " ":
            if idf.strip():
                mid = int(idf.strip()[1:-1], 16)
            return mid, comp.strip(), msg
    # tolerant reading
    mid = None
    m = _ID_RE.match(rest)
    if m:
        mid = int(m.group(1), 16)
        rest = rest[m.end():]
    rest = rest.lstrip()
    comp = ""
    m = _COMP_RE.match(rest)
    if m and (m.group(1) in KNOWN_COMPONENTS or len(m.group(2)) >= 2):
        comp = m.group(1)
        rest = rest[m.end():]
    return mid, comp, rest


def _extract_codes(message: str) -> Tuple[Tuple[int, ...], Optional[int], str]:
    """(codes, gle, hresult name) from a message."""
    gle = None
    m = _GLE_RE.search(message)
    if m:
        gle = int(m.group(1), 16)
    body = _GLE_RE.sub(" ", message)
    codes: List[int] = []
    for m in _HEX_RE.finditer(body):
        v = int(m.group(1), 16)
        if v == 0 or v in codes:
            continue
        if _NOT_ERROR_CTX.search(body[max(0, m.start() - 24):m.start()]):
            continue
        codes.append(v)
        if len(codes) >= 8:
            break
    hm = _HRNAME_RE.search(message)
    return tuple(codes), gle, hm.group(2) if hm else ""


def _finish(e: PantherEntry) -> PantherEntry:
    """Fill the derived fields (codes, gle, HRESULT name) of an entry."""
    if "0x" in e.message:
        e.codes, e.gle, e.hresult_name = _extract_codes(e.message)
    return e


def _mark(e: PantherEntry) -> PantherEntry:
    """Cheap classification needed before deciding to keep an entry."""
    if e.component == "CSI" and "(F)" in e.message[:40]:
        m = _CSI_RE.match(e.message)
        if m and m.group(3):
            e.csi_failure = True
    return e


def _parse_line(n: int, line: str) -> Optional[PantherEntry]:
    """An entry started by this line, or None (continuation / noise)."""
    if not line:
        return None
    c0 = line[0]
    if c0.isdigit():
        m = _FULL_RE.match(line)
        if m:
            level = m.group(7)
            mid, comp, msg = _split_rest(line, level, m.group(8), True)
            e = PantherEntry(n, _time(*m.group(1, 2, 3, 4, 5, 6)), level, comp, message=msg, message_id=mid)
        else:
            m = _SHORT_RE.match(line)
            if not m:
                return None
            level = m.group(3)
            mid, comp, msg = _split_rest(line, level, m.group(4), False)
            e = PantherEntry(n, None, level, comp, message=msg, message_id=mid)
    elif c0 in "EIWFPVT":
        m = _BARE_RE.match(line)
        if not m:
            return None
        level = m.group(1)
        mid, comp, msg = _split_rest(line, level, " " + m.group(2), False)
        e = PantherEntry(n, None, level, comp, message=msg, message_id=mid)
    elif c0 == "[":
        m = _TAG_ONLY_RE.match(line)
        if not m:
            return None
        return PantherEntry(n, None, "", "", m.group(1), m.group(2))
    else:
        return None
    if not e.component:
        t = _TAG_RE.match(e.message)
        if t and not t.group(1).startswith("0x"):
            e.source = t.group(1)
            e.message = e.message[t.end():]
    return e


def _iter_entries(opened) -> Iterator[Tuple[Optional[PantherEntry], int]]:
    """Yield (finished entry, 0) and (None, count) for unparsed leading lines."""
    cur: Optional[PantherEntry] = None
    for n, line in opened.lines():
        e = _parse_line(n, line)
        if e is not None:
            if cur is not None:
                yield _mark(cur), 0
            cur = e
            continue
        if cur is None:
            if line.strip():
                yield None, 1
            continue
        if not line.strip() or cur.continued >= MAX_CONTINUATION or len(cur.message) >= MAX_MESSAGE:
            continue
        cur.message = (cur.message + "\n" + line.strip())[:MAX_MESSAGE]
        cur.continued += 1
    if cur is not None:
        yield _mark(cur), 0


def iter_panther(source: LogSource, *, name: Optional[str] = None) -> Iterator[PantherEntry]:
    """Stream the entries of a Panther-style log (constant memory)."""
    opened = open_text(source, name=name)
    for e, _ in _iter_entries(opened):
        if e is not None:
            yield _finish(e)


def classify_panther_name(path: str) -> str:
    """'setupact', 'setuperr', 'cbs', 'dism' or 'panther' from a file name."""
    base = re.split(r"[\\/]", path or "")[-1].lower()
    if base.startswith("setupact"):
        return "setupact"
    if base.startswith("setuperr"):
        return "setuperr"
    if base.startswith("cbs"):
        return "cbs"
    if base.startswith("dism"):
        return "dism"
    return "panther"


def parse_panther(source: LogSource, *, name: Optional[str] = None, kind: Optional[str] = None,
                  keep: str = "all", max_entries: int = 200_000) -> PantherLog:
    """Parse a Panther/UnattendGC/CBS/DISM/sysprep log.

    ``keep='all'`` keeps every entry (up to ``max_entries``); ``keep='problems'``
    keeps only errors, warnings and the lines around rollback crashes, and only
    counts the rest (the mode used for bundles, where CBS.log can be huge).
    Raises :class:`TextParseError` only for unusable input (unreadable, binary).
    """
    if keep not in ("all", "problems"):
        raise ValueError("keep must be 'all' or 'problems'")
    opened = open_text(source, name=name)
    log = PantherLog(opened.name, kind or classify_panther_name(opened.name or ""), decode=opened.stats)
    counts: Counter = Counter()
    writers: Counter = Counter()
    crash: Optional[RollbackCrash] = None
    for e, unparsed in _iter_entries(opened):
        if e is None:
            log.unparsed_lines += unparsed
            continue
        counts[e.level or "?"] += 1
        w = e.who
        if w and (w in writers or len(writers) < 500):
            writers[w] += 1
        if e.time is not None:
            if log.first_time is None or e.time < log.first_time:
                log.first_time = e.time
            if log.last_time is None or e.time > log.last_time:
                log.last_time = e.time
        msg = e.message
        special = False
        m = _CRASH_RE.match(msg)
        if m:
            crash = RollbackCrash(e.line, e.time, int(m.group(1), 16))
            if len(log.crashes) < 100:
                log.crashes.append(crash)
            special = True
        elif crash is not None:
            mm = _MODNAME_RE.match(msg)
            pm = _PARAM_RE.match(msg)
            if mm:
                crash.module = mm.group(1)
                special = True
            elif pm and len(crash.parameters) < 4:
                crash.parameters.append(int(pm.group(2), 16))
                special = True
            else:
                crash = None
        if "0x" in msg and " -" in msg or "-0x" in msg:
            for pair in find_result_pairs(msg):
                if len(log.results) < 1000:
                    log.results.append((e.line, pair))
        wanted = keep == "all" or e.is_error or e.level == "Warning" or special
        if wanted and len(log.entries) < max_entries:
            log.entries.append(_finish(e))
        else:
            log.dropped += 1
    log.counts = dict(counts)
    log.writers = dict(writers)
    return log


__all__ = ["PantherEntry", "PantherLog", "RollbackCrash", "iter_panther", "parse_panther",
           "classify_panther_name", "LEVELS", "KNOWN_COMPONENTS", "TextParseError"]
