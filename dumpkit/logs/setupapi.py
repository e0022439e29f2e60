"""SetupAPI text logs: ``setupapi.dev.log``, ``setupapi.setup.log``, ``setupapi.offline.log``.

A log is a header (``[Device Install Log]`` with ``OS Version = ...`` lines),
``[Boot Session: ...]`` markers and sections::

    >>>  [Device Install (Hardware initiated) - SWD\\IP_TUNNEL_VBUS\\ISATAP_0]
    >>>  Section start 2015/11/22 17:59:28.110
         dvi: {Build Driver List} 17:59:28.176
    !    inf: Found legacy DelService operation for 'VBoxTray'. Code = 1303
    !!!  pol: The device is explicitly restricted by the following policy settings:
    <<<  Section end 2015/11/22 17:59:37.142
    <<<  [Exit status: SUCCESS]

Body lines carry a 5-character prefix (``!!!`` error, ``!`` warning, blank
info) and a category (``inf:``, ``dvi:``, ``sto:``...).  Times are local,
without a zone.  For each section the parser keeps the services it adds or
deletes (``DelService=lwfmgr,0x200  (lwfmgr.inf line 82)``, ``Deleted service
'lwfmgr'``), the INF and .sys names it mentions, the ``!!!``/``!`` lines and
every nested ``{... exit(0x...)}`` scope that failed.  A section that is cut
(file truncated, log wrapped, an excerpt pasted from its middle) is kept and
flagged: ``headless`` when its start is missing, ``truncated`` when its end is.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Dict, Iterator, List, Optional, Tuple

from ..errors import TextParseError
from ._text import DecodeStats, LogSource, open_text
from .codes import ErrorCodeInfo, format_code, lookup_code

_TS = r"(\d{4})/(\d\d)/(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,3}))?"
_START_RE = re.compile(rf"^\s*>>>\s+\[?(?:Section start\s+{_TS}|{_TS}:?\s+Section start)\]?\s*$")
_START_LOOSE_RE = re.compile(r"^\s*>>>\s+\[?Section start\b")
_TITLE_RE = re.compile(r"^\s*>>>\s+\[(.*)\]\s*$")
_END_RE = re.compile(rf"^\s*<<<\s+\[?(?:Section end(?:\s+{_TS})?|{_TS}:?\s+Section end)")
# each optional part eats the blanks after it (never 'opt?\s*opt?\s*...': polynomial on a run of blanks)
_EXIT_RE = re.compile(r"^\s*<<<\s+\[Exit [Ss]tatus:?\s*(?:(SUCCESS|FAILURE)\s*)?(?:\((?:0x)?([0-9A-Fa-f]{1,8})\)\s*)?"
                      r"(?:\(([A-Z_]+)\)\s*)?\]")
_BODY_RE = re.compile(r"^\s*(?:(!!!|!)\s*)?([a-z]{3}|\.\.\.|ui ?):(\s*)(.*)$")
_BOOT_RE = re.compile(rf"^\[Boot Session: {_TS}\]")
_KV_RE = re.compile(r"^\s+([A-Za-z][A-Za-z ]{0,40}?)\s*=\s*((?:\S(?:.*\S)?)?)\s*$")   # value: first to last non-blank

_DELSVC_RE = re.compile(r"\bDelService\s*=\s*([^,\s]+)")
_ADDSVC_RE = re.compile(r"\bAddService\s*=\s*([^,\s]+)")
_INFREF_RE = re.compile(r"\(([^()\s]+\.inf) line (\d+)\)", re.I)
_SVC_DONE_RE = re.compile(r"\b(Deleted|Created new|Created|Updated|Started|Stopped|Deleting|Stopping) service '([^']+)'", re.I)
_SVC_MISSING_RE = re.compile(r"\bService '([^']+)' does not exist", re.I)
_SVC_LEGACY_RE = re.compile(r"legacy DelService operation for '([^']+)'", re.I)
_SVC_SCOPE_RE = re.compile(r"\{(Add|Delete) Service: ([^}]+)\}")
_SVC_NAME_RE = re.compile(r"\bService Name\s*=\s*(\S+)")
_SCOPE_EXIT_RE = re.compile(r"\{([^{}]*)exit\s?\((?:0x)?([0-9A-Fa-f]{1,8})\)\}")   # group 1 ends in ' - '/':'...

MAX_BODY = 400        #: body lines kept per section (errors/warnings are kept separately)
MAX_REFS = 200        #: services / INFs / drivers / failing scopes kept per section

_ACTIONS = {"deleted": "deleted", "created new": "created", "created": "created", "updated": "updated",
            "started": "started", "stopped": "stopped", "deleting": "delete", "stopping": "stop"}


def _ts(g: Tuple[Optional[str], ...]) -> Optional[datetime]:
    if not g or g[0] is None:
        return None
    y, mo, d, h, mi, s, ms = (x or "" for x in g)     # a missing part makes int() fail below
    try:
        return datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), int((ms or "0").ljust(3, "0")) * 1000)
    except (ValueError, TypeError):
        return None


@dataclass(slots=True)
class SetupApiLine:
    """One body line of a section."""

    line: int
    severity: str      # "error" (!!!), "warning" (!), "info"
    category: str      # inf, dvi, sto, flq, cpy, sig, ndv, pol, set, cmd, ...
    text: str          # the message without prefix and indentation
    depth: int = 0     # nesting depth (indentation / 5)

    def __repr__(self) -> str:
        mark = {"error": "!!!", "warning": "!"}.get(self.severity, "")
        return f"<L{self.line} {mark}{self.category}: {self.text[:80]!r}>"


@dataclass(frozen=True)
class ServiceRef:
    """A service a section installs, deletes or mentions."""

    name: str
    action: str                  # delete | add | deleted | created | updated | missing | mention | ...
    line: int
    inf: str = ""
    inf_line: Optional[int] = None

    def __repr__(self) -> str:
        src = f" ({self.inf} line {self.inf_line})" if self.inf else ""
        return f"<ServiceRef {self.action} {self.name}{src} L{self.line}>"


@dataclass(frozen=True)
class ScopeExit:
    """A nested ``{Name ... exit(0x...)}`` scope that ended with a non-zero code."""

    name: str
    code: int
    line: int

    def __repr__(self) -> str:
        return f"<ScopeExit {self.name} exit({self.code:#010x}) L{self.line}>"


@dataclass
class SetupApiSection:
    """One ``>>>`` ... ``<<<`` section."""

    title: str = ""
    instance: str = ""
    start: Optional[datetime] = None
    end: Optional[datetime] = None
    status: Optional[str] = None         # SUCCESS | FAILURE | None (not seen)
    exit_code: Optional[int] = None
    qualifier: str = ""                  # e.g. REBOOT_REQUIRED
    first_line: int = 0
    last_line: int = 0
    headless: bool = False               # begins without its ">>>" header
    truncated: bool = False              # ends without "<<<  [Exit status ...]"
    boot_session: Optional[datetime] = None
    services: List[ServiceRef] = field(default_factory=list)
    infs: List[str] = field(default_factory=list)
    drivers: List[str] = field(default_factory=list)
    errors: List[SetupApiLine] = field(default_factory=list)
    warnings: List[SetupApiLine] = field(default_factory=list)
    scope_failures: List[ScopeExit] = field(default_factory=list)
    body: List[SetupApiLine] = field(default_factory=list)
    body_lines: int = 0

    @property
    def failed(self) -> bool:
        return self.status == "FAILURE"

    @property
    def complete(self) -> bool:
        return not self.headless and not self.truncated

    @property
    def service_names(self) -> List[str]:
        """Service names in order of first mention (case preserved, deduplicated case-insensitively)."""
        seen: Dict[str, str] = {}
        for s in self.services:
            seen.setdefault(s.name.lower(), s.name)
        return list(seen.values())

    @property
    def time(self) -> Optional[datetime]:
        """The best single time for the section (end, else start)."""
        return self.end or self.start

    def explain_exit(self) -> Optional[ErrorCodeInfo]:
        return lookup_code(self.exit_code) if self.exit_code else None

    def mentions(self, name: str) -> bool:
        """True if the section names this service, INF or driver (``lwfmgr``, ``lwfmgr.sys``, ``lwfmgr.inf``)."""
        stem = _stem(name)
        if not stem:
            return False
        return (any(_stem(s.name) == stem for s in self.services) or any(_stem(i) == stem for i in self.infs)
                or any(_stem(d) == stem for d in self.drivers))

    @property
    def label(self) -> str:
        if self.title:
            return f"[{self.title}{' - ' + self.instance if self.instance else ''}]"
        return "[section whose start is not in the log]" if self.headless else "[untitled section]"

    def _add_ref(self, lst: list, value: str) -> None:
        v = value.lower()
        if v not in lst and len(lst) < MAX_REFS:
            lst.append(v)

    def __repr__(self) -> str:
        st = self.status or "?"
        if self.exit_code is not None and self.status != "SUCCESS":
            st += f"({self.exit_code:#010x})"
        if self.qualifier:
            st += f" ({self.qualifier})"
        flags = "".join([" HEADLESS" if self.headless else "", " TRUNCATED" if self.truncated else ""])
        svc = f" services={self.service_names}" if self.services else ""
        t = f" {self.time:%Y-%m-%d %H:%M:%S}" if self.time else ""
        return f"<SetupApiSection L{self.first_line}-{self.last_line} {self.label}{t} {st}{svc}{flags}>"


_TOKEN_SPLIT_RE = re.compile(r"[\s\\/'\"(),:;=\[\]<>|*?`]+")


def _names_with_ext(low: str, ext: str) -> List[str]:
    """File names ending in ``ext`` in a lower-cased text (``nettun.inf``; not ``nettun.inf_amd64_...``)."""
    out = []
    for tok in _TOKEN_SPLIT_RE.split(low):
        tok = tok.rstrip(".")
        if tok.endswith(ext) and len(tok) > len(ext):
            out.append(tok)
    return out


def _stem(name: str) -> str:
    base = re.split(r"[\\/]", (name or "").strip())[-1].lower()
    for ext in (".sys", ".inf", ".dll", ".exe"):
        if base.endswith(ext):
            return base[: -len(ext)]
    return base


@dataclass
class SetupApiLog:
    """A parsed SetupAPI text log."""

    name: Optional[str]
    kind: str = "dev"
    header: Dict[str, str] = field(default_factory=dict)
    sections: List[SetupApiSection] = field(default_factory=list)
    boot_sessions: List[datetime] = field(default_factory=list)
    log_headers: int = 0          # "[Device Install Log]" seen (more than one: the log wrapped)
    unparsed_lines: int = 0
    dropped_sections: int = 0     # sections over max_sections (counted, not kept)
    status_counts: Dict[str, int] = field(default_factory=dict)
    decode: DecodeStats = field(default_factory=DecodeStats)

    @property
    def failures(self) -> List[SetupApiSection]:
        return [s for s in self.sections if s.failed]

    @property
    def incomplete(self) -> List[SetupApiSection]:
        return [s for s in self.sections if not s.complete]

    @property
    def first_time(self) -> Optional[datetime]:
        ts = [t for s in self.sections for t in (s.start, s.end) if t]
        return min(ts) if ts else None

    @property
    def last_time(self) -> Optional[datetime]:
        ts = [t for s in self.sections for t in (s.start, s.end) if t]
        return max(ts) if ts else None

    @property
    def partial(self) -> bool:
        return self.decode.read_error is not None

    def sections_mentioning(self, name: str) -> List[SetupApiSection]:
        return [s for s in self.sections if s.mentions(name)]

    def __len__(self) -> int:
        return len(self.sections)

    def __iter__(self) -> Iterator[SetupApiSection]:
        return iter(self.sections)

    def __repr__(self) -> str:
        os_ver = self.header.get("OS Version")
        osv = f" OS {os_ver}" if os_ver else ""
        return (f"<SetupApiLog {self.name or '<text>'} [{self.kind}]{osv} {len(self.sections)} sections,"
                f" {len(self.failures)} failed, {len(self.incomplete)} incomplete{' PARTIAL' if self.partial else ''}>")


class _Builder:
    """Line-by-line state machine; ``feed`` returns finished sections."""

    def __init__(self, log: SetupApiLog, keep_body: bool) -> None:
        self.log = log
        self.keep_body = keep_body
        self.cur: Optional[SetupApiSection] = None
        self.in_header = False
        self.boot: Optional[datetime] = None

    def _new(self, n: int, headless: bool) -> SetupApiSection:
        s = SetupApiSection(first_line=n, last_line=n, headless=headless, boot_session=self.boot)
        self.cur = s
        return s

    def _close(self, truncated: bool) -> Optional[SetupApiSection]:
        s, self.cur = self.cur, None
        if s is not None:
            s.truncated = truncated
        return s

    def feed(self, n: int, line: str) -> Optional[SetupApiSection]:
        stripped = line.strip()
        if not stripped:
            return None
        c0 = stripped[0]
        if c0 == ">" and stripped.startswith(">>>"):
            self.in_header = False
            m = _START_RE.match(line)
            if m or _START_LOOSE_RE.match(line):
                s = self.cur or self._new(n, True)
                if s.start is None and m:
                    s.start = _ts(m.groups()[0:7]) or _ts(m.groups()[7:14])
                s.last_line = n
                return None
            m = _TITLE_RE.match(line)
            if m:
                done = self._close(True) if self.cur is not None else None
                s = self._new(n, False)
                content = m.group(1)
                title, sep, inst = content.partition(" - ")
                s.title, s.instance = title.strip(), inst.strip() if sep else ""
                for inf in _names_with_ext(s.instance.lower(), ".inf"):
                    s._add_ref(s.infs, inf)
                return done
        if c0 == "<" and stripped.startswith("<<<"):
            m = _EXIT_RE.match(line)
            if m:
                s = self.cur or self._new(n, True)
                status, code, qual = m.group(1), m.group(2), m.group(3)
                s.exit_code = int(code, 16) if code else None
                if status is None:
                    status = "SUCCESS" if s.exit_code == 0 else ("FAILURE" if s.exit_code else None)
                s.status = status
                s.qualifier = qual or ""
                s.last_line = n
                return self._close(False)
            m = _END_RE.match(line)
            if m:
                s = self.cur or self._new(n, True)
                s.end = _ts(m.groups()[0:7]) or _ts(m.groups()[7:14])
                s.last_line = n
                return None
        if c0 == "[":
            if stripped.startswith("[Device Install Log]"):
                self.log.log_headers += 1
                self.in_header = True
                return self._close(True) if self.cur is not None else None
            if stripped.startswith("[BeginLog]"):
                self.in_header = False
                return None
            m = _BOOT_RE.match(stripped)
            if m:
                self.in_header = False
                self.boot = _ts(m.groups())
                if self.boot and len(self.log.boot_sessions) < 10_000:
                    self.log.boot_sessions.append(self.boot)
                return self._close(True) if self.cur is not None else None
        if self.in_header:
            m = _KV_RE.match(line)
            if m and len(self.log.header) < 64:
                self.log.header.setdefault(m.group(1).strip(), m.group(2))
                return None
        m = _BODY_RE.match(line)
        if m is None:
            if self.cur is not None:
                self.cur.last_line = n
            self.log.unparsed_lines += 1
            return None
        s = self.cur or self._new(n, True)
        s.last_line = n
        s.body_lines += 1
        mark, cat, indent, text = m.group(1), m.group(2).strip(), m.group(3), m.group(4)
        sev = "error" if mark == "!!!" else ("warning" if mark == "!" else "info")
        bl = SetupApiLine(n, sev, cat, text.rstrip(), max(0, len(indent) - 1) // 5)
        if sev == "error" and len(s.errors) < MAX_REFS:
            s.errors.append(bl)
        elif sev == "warning" and len(s.warnings) < MAX_REFS:
            s.warnings.append(bl)
        if self.keep_body and len(s.body) < MAX_BODY:
            s.body.append(bl)
        self._scan(s, n, text)
        return None

    def _scan(self, s: SetupApiSection, n: int, text: str) -> None:
        if "ervice" in text:
            ref = _INFREF_RE.search(text)
            inf = ref.group(1).lower() if ref else ""
            inf_line = int(ref.group(2)) if ref else None
            for rx, action in ((_DELSVC_RE, "delete"), (_ADDSVC_RE, "add")):
                m = rx.search(text)
                if m:
                    self._svc(s, ServiceRef(m.group(1), action, n, inf, inf_line))
            m = _SVC_DONE_RE.search(text)
            if m:
                self._svc(s, ServiceRef(m.group(2), _ACTIONS.get(m.group(1).lower(), m.group(1).lower()), n))
            m = _SVC_MISSING_RE.search(text)
            if m:
                self._svc(s, ServiceRef(m.group(1), "missing", n))
            m = _SVC_LEGACY_RE.search(text)
            if m:
                self._svc(s, ServiceRef(m.group(1), "delete", n))
            m = _SVC_SCOPE_RE.search(text)
            if m and not m.group(2).lower().startswith("exit"):
                self._svc(s, ServiceRef(m.group(2).strip(), m.group(1).lower(), n))
            m = _SVC_NAME_RE.search(text)
            if m:
                self._svc(s, ServiceRef(m.group(1), "mention", n))
        low = text.lower()
        if ".inf" in low:
            for inf in _names_with_ext(low, ".inf"):
                s._add_ref(s.infs, inf)
        if ".sys" in low:
            for drv in _names_with_ext(low, ".sys"):
                s._add_ref(s.drivers, drv)
        if "exit" in text:
            for m in _SCOPE_EXIT_RE.finditer(text):
                code = int(m.group(2), 16)
                if code and len(s.scope_failures) < MAX_REFS:
                    s.scope_failures.append(ScopeExit(m.group(1).rstrip(" \t-:").strip(), code, n))

    @staticmethod
    def _svc(s: SetupApiSection, ref: ServiceRef) -> None:
        if len(s.services) < MAX_REFS:
            s.services.append(ref)

    def finish(self) -> Optional[SetupApiSection]:
        return self._close(True) if self.cur is not None else None


def classify_setupapi_name(path: str) -> str:
    """'dev', 'setup', 'offline', 'app' or 'setupapi' from the file name."""
    base = re.split(r"[\\/]", path or "")[-1].lower()
    m = re.search(r"setupapi\.([a-z]+)", base)
    if m and m.group(1) in ("dev", "setup", "offline", "app"):
        return m.group(1)
    return "setupapi"


def iter_setupapi_sections(source: LogSource, *, name: Optional[str] = None,
                           keep_body: bool = True) -> Iterator[SetupApiSection]:
    """Stream the sections of a SetupAPI log (a section is yielded when it closes)."""
    opened = open_text(source, name=name)
    log = SetupApiLog(opened.name, decode=opened.stats)
    b = _Builder(log, keep_body)
    for n, line in opened.lines():
        done = b.feed(n, line)
        if done is not None:
            yield done
    last = b.finish()
    if last is not None:
        yield last


def parse_setupapi(source: LogSource, *, name: Optional[str] = None, kind: Optional[str] = None,
                   keep_body: str = "failures", max_sections: int = 500_000) -> SetupApiLog:
    """Parse a SetupAPI text log.

    ``keep_body``: ``'all'`` keeps up to :data:`MAX_BODY` body lines of every
    section, ``'failures'`` (default) only of failed or cut sections, ``'none'``
    none (``!!!``/``!`` lines, services, INFs and failing scopes are always kept).
    Raises :class:`TextParseError` only for unusable input.
    """
    if keep_body not in ("all", "failures", "none"):
        raise ValueError("keep_body must be 'all', 'failures' or 'none'")
    opened = open_text(source, name=name)
    log = SetupApiLog(opened.name, kind or classify_setupapi_name(opened.name or ""), decode=opened.stats)
    b = _Builder(log, keep_body != "none")
    counts: Counter = Counter()

    def take(s: SetupApiSection) -> None:
        key = s.status or "NONE"
        if s.qualifier:
            key += f" ({s.qualifier})"
        counts[key] += 1
        if keep_body == "failures" and not s.failed and s.complete:
            s.body = []
        if len(log.sections) < max_sections:
            log.sections.append(s)
        else:
            log.dropped_sections += 1

    for n, line in opened.lines():
        done = b.feed(n, line)
        if done is not None:
            take(done)
    last = b.finish()
    if last is not None:
        take(last)
    log.status_counts = dict(counts)
    return log


__all__ = ["SetupApiLine", "ServiceRef", "ScopeExit", "SetupApiSection", "SetupApiLog", "parse_setupapi",
           "iter_setupapi_sections", "classify_setupapi_name", "format_code", "TextParseError"]
