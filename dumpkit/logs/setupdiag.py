"""SetupDiag results (text ``SetupDiagResults.log``, XML, JSON) and rollback side files.

SetupDiag is Microsoft's rule-based setup-log analyser; when it ran (setup runs
it on failure) its verdict is worth reading next to dumpkit's own.  Its text
output is ``Key = Value`` lines under ``System Information:`` followed by the
matched rule (``Matching Profile found: <rule> - <GUID>``) and failure lines
(``Last Phase``, ``Last Operation``, ``Error: 0xC1900101 - 0x4001E``); the XML
and JSON forms carry the same fields (``ProfileName``, ``FailureData``,
``FailureDetails = "Key = Value, ..."``).

Also here: ``rollbackinfo.ini`` / ``SetupPlatform.ini`` (``Key=Value``) and the
Application-log WER event ``WinSetupDiag02`` as copied from Event Viewer
(P1..P10 = scenario, mode, architecture, result, result code, extend code,
source/target build and branch).
"""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

from ..errors import TextParseError
from ._text import LogSource, open_text
from .codes import UpgradeResult, explain_result, find_result_pairs

MAX_DOC_CHARS = 8 * 1024 * 1024   #: a SetupDiag result / ini / WER text is small; more is cut

_PROFILE_RE = re.compile(r"Matching Profile found:\s*(\S+)\s*-\s*([0-9A-Fa-f-]{36})")
_NOMATCH_RE = re.compile(r"unable to match to any known failure signatures", re.I)
_VERSION_RE = re.compile(r"^SetupDiag version:\s*(\S+)", re.I)
_KV_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]{1,40})\s*=\s*((?:\S(?:.*\S)?)?)\s*$")   # value: first to last non-blank
# "Last Phase: X Last Operation: Y Error: Z" on one line: the head is found by a regex, the value is cut at
# the next head in plain code (a lazy '(.+?)\s*(?=...|$)' is quadratic on a long run of blanks)
_PHASE_RE = re.compile(r"Last (?:Setup )?Phase\s*[:=]")
_OP_RE = re.compile(r"Last (?:Setup )?Operation\s*[:=]")
_ERROR_HEAD_RE = re.compile(r"\bError\s*[:=]")
_PHASE_NAME_RE = re.compile(r"^\s*Phase Name:\s*(\S(?:.*\S)?)\s*$")
_OP_NAME_RE = re.compile(r"^\s*Operation Name:\s*(\S(?:.*\S)?)\s*$")
_ERR_RE = re.compile(r"\bErr(?:or)?\s*[:=]\s*(0x[0-9A-Fa-f]{1,8})(?:\s*-\s*(0x[0-9A-Fa-f]{1,6}))?")
_LOGENTRY_RE = re.compile(r"^\s*LogEntry:\s*(.*)$")
_REPORTS_RE = re.compile(r"^\s*Error:\s*SetupDiag reports\s*(.*)$")
_REFER_RE = re.compile(r"^\s*(?:Refer to|Recommend)\b.*$")
_XML_DECL_RE = re.compile(r"^\s*<\?xml[^>]*\?>")
_XML_PAIR_RE = re.compile(r"<(\w+)>([^<]*)</\1>")


@dataclass
class SetupDiagResult:
    """What SetupDiag concluded."""

    name: Optional[str] = None
    format: str = "text"             # text | xml | json
    matched: Optional[bool] = None   # False: "unable to match to any known failure signatures"
    profile: str = ""                # the rule, e.g. FindRollbackFailure
    profile_guid: str = ""
    version: str = ""
    system_info: Dict[str, str] = field(default_factory=dict)
    failure: List[str] = field(default_factory=list)      # "SetupDiag reports ..." lines
    last_phase: str = ""
    last_operation: str = ""
    error: Optional[UpgradeResult] = None
    log_entries: List[str] = field(default_factory=list)
    details: Dict[str, str] = field(default_factory=dict)  # FailureDetails "Key = Value" pairs
    remediation: List[str] = field(default_factory=list)

    def __repr__(self) -> str:
        rule = self.profile or ("no rule matched" if self.matched is False else "?")
        err = f" {self.error.result:#X}" if self.error else ""
        if self.error and self.error.extend:
            err += f"-{self.error.extend.value:#X}"
        phase = f" phase={self.last_phase!r}" if self.last_phase else ""
        return f"<SetupDiagResult [{self.format}] {rule}{err}{phase}>"



def _labelled(line: str, head: "re.Pattern[str]", stops: Sequence["re.Pattern[str]"]) -> Optional[str]:
    """The text after ``head`` up to the first of ``stops`` (or the end), stripped; None if absent or empty."""
    m = head.search(line)
    if not m:
        return None
    rest = line[m.end():]
    end = len(rest)
    for rx in stops:
        s = rx.search(rest, 1)
        if s and s.start() < end:
            end = s.start()
    return rest[:end].strip() or None

def _read_doc(source: LogSource, name: Optional[str]) -> tuple:
    opened = open_text(source, name=name)
    parts: List[str] = []
    size = 0
    for _, line in opened.lines():
        parts.append(line)
        size += len(line) + 1
        if size > MAX_DOC_CHARS:
            break
    return opened.name, "\n".join(parts)


def _text_into(res: SetupDiagResult, text: str) -> None:
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        m = _PROFILE_RE.search(line)
        if m:
            res.profile, res.profile_guid, res.matched = m.group(1), m.group(2).upper(), True
            continue
        if _NOMATCH_RE.search(line):
            res.matched = False
            continue
        m = _VERSION_RE.match(line)
        if m:
            res.version = m.group(1)
            continue
        m = _REPORTS_RE.match(line)
        if m:
            res.failure.append(m.group(1))
            pairs = find_result_pairs(line)
            if pairs and res.error is None:
                res.error = pairs[0]
        m = _PHASE_NAME_RE.match(line)
        if m and not res.last_phase:
            res.last_phase = m.group(1)
        m = _OP_NAME_RE.match(line)
        if m and not res.last_operation:
            res.last_operation = m.group(1)
        phase = _labelled(line, _PHASE_RE, (_OP_RE, _ERROR_HEAD_RE))
        if phase and not res.last_phase:
            res.last_phase = phase
        op = _labelled(line, _OP_RE, (_ERROR_HEAD_RE, _PHASE_RE))
        if op and not res.last_operation:
            res.last_operation = op.rstrip(",").strip()
        m = _LOGENTRY_RE.match(line)
        if m:
            if m.group(1) and len(res.log_entries) < 100:
                res.log_entries.append(m.group(1))
            continue
        if res.error is None:
            m = _ERR_RE.search(line)
            if m:
                res.error = explain_result(int(m.group(1), 16), int(m.group(2), 16) if m.group(2) else None)
        if _REFER_RE.match(line) and len(res.remediation) < 20:
            res.remediation.append(line)
            continue
        m = _KV_RE.match(raw)
        if m and len(res.system_info) < 200 and not line.startswith(("Error", "Last")):
            res.system_info.setdefault(m.group(1), m.group(2))


def _details_into(res: SetupDiagResult, text: str) -> None:
    for part in text.split(","):
        k, sep, v = part.partition("=")
        if sep and k.strip():
            res.details[k.strip()] = v.strip()
    d = res.details
    if not res.last_phase and d.get("LastPhase"):
        res.last_phase = d["LastPhase"]
    if not res.last_operation and d.get("LastOperation"):
        res.last_operation = d["LastOperation"]
    code = d.get("RollbackErrorCode") or d.get("Err") or d.get("ErrorCode")
    ext = d.get("ExtendedCode")
    try:
        if code and res.error is None:
            res.error = explain_result(int(code, 16), int(ext, 16) if ext else None)
    except ValueError:
        pass


def _xml_into(res: SetupDiagResult, text: str) -> None:
    body = _XML_DECL_RE.sub("", text, count=1)
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        root = None
    pairs: List[tuple] = []
    if root is not None:
        for el in root.iter():
            tag = el.tag.rsplit("}", 1)[-1]
            if len(el) == 0:
                pairs.append((tag, (el.text or "").strip(), el))
    else:
        # damaged / cut XML: salvage the simple <Tag>value</Tag> pairs
        pairs = [(m.group(1), m.group(2).strip(), None) for m in _XML_PAIR_RE.finditer(body)]
        if not pairs:
            raise TextParseError("not a SetupDiag XML document", path=res.name, expected="<SetupDiag> XML")
    sysinfo_tags = set()
    if root is not None:
        for el in root.iter():
            if el.tag.rsplit("}", 1)[-1] == "SystemInfo":
                sysinfo_tags = {c.tag.rsplit("}", 1)[-1] for c in el}
    for tag, value, _ in pairs:
        if tag == "ProfileName":
            res.profile, res.matched = value, bool(value) or res.matched
        elif tag == "ProfileGuid":
            res.profile_guid = value.upper()
        elif tag == "Version":
            res.version = value
        elif tag == "FailureData":
            _text_into(res, value)
        elif tag == "FailureDetails":
            _details_into(res, value)
        elif tag == "LogErrorLine":
            res.log_entries.append(value)
        elif tag == "PhaseName" and not res.last_phase:
            res.last_phase = value
        elif tag == "OperationName" and not res.last_operation:
            res.last_operation = value
        elif tag in sysinfo_tags:
            res.system_info[tag] = value


def _json_into(res: SetupDiagResult, text: str) -> None:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise TextParseError(f"bad SetupDiag JSON: {e}", path=res.name, expected="JSON object") from None
    if not isinstance(data, dict):
        raise TextParseError("SetupDiag JSON is not an object", path=res.name, expected="JSON object")
    res.profile = str(data.get("ProfileName") or "")
    res.matched = bool(res.profile) if "ProfileName" in data else None
    res.profile_guid = str(data.get("ProfileGuid") or "").upper()
    res.version = str(data.get("Version") or "")
    si = data.get("SystemInfo")
    if isinstance(si, dict):
        res.system_info = {str(k): str(v) for k, v in list(si.items())[:200]}
    fd = data.get("FailureData")
    for item in (fd if isinstance(fd, list) else [fd] if fd else [])[:100]:
        _text_into(res, str(item))
    if data.get("FailureDetails"):
        _details_into(res, str(data["FailureDetails"]))
    rem = data.get("Remediation")
    if isinstance(rem, list):
        res.remediation += [str(r) for r in rem[:20]]
    for key, attr in (("SetupPhaseInfo", "last_phase"), ("SetupOperationInfo", "last_operation")):
        info = data.get(key)
        if isinstance(info, dict) and not getattr(res, attr):
            v = info.get("PhaseName") or info.get("OperationName")
            if v:
                setattr(res, attr, str(v))


def parse_setupdiag(source: LogSource, *, name: Optional[str] = None) -> SetupDiagResult:
    """Parse SetupDiag output (text, XML or JSON, any encoding)."""
    dname, text = _read_doc(source, name)
    res = SetupDiagResult(dname)
    head = text.lstrip()[:1]
    if head == "<":
        res.format = "xml"
        _xml_into(res, text)
    elif head == "{":
        res.format = "json"
        _json_into(res, text)
    else:
        _text_into(res, text)
        if res.matched is None and not res.failure and res.error is None and not res.system_info:
            raise TextParseError("no SetupDiag result found", path=dname,
                                 expected="'Matching Profile found' or 'SetupDiag reports' lines")
    return res


# --------------------------------------------------------------------------- ini files
@dataclass
class SetupIni:
    """``rollbackinfo.ini`` / ``SetupPlatform.ini``: Key=Value pairs."""

    name: Optional[str]
    values: Dict[str, str] = field(default_factory=dict)

    @property
    def current_phase(self) -> str:
        """``CurrentPhase`` (rollbackinfo.ini), e.g. ``FirstBoot,Start``."""
        return self.values.get("CurrentPhase", "")

    def __repr__(self) -> str:
        keys = ", ".join(list(self.values)[:5])
        return f"<SetupIni {self.name or '<text>'} {len(self.values)} keys: {keys}>"


def parse_setup_ini(source: LogSource, *, name: Optional[str] = None) -> SetupIni:
    """Read a setup .ini file (sections ignored, first value of a key wins)."""
    opened = open_text(source, name=name)
    ini = SetupIni(opened.name)
    for _, line in opened.lines():
        s = line.strip()
        if not s or s[0] in ";#[":
            continue
        k, sep, v = s.partition("=")
        if sep and k.strip() and len(ini.values) < 1000:
            ini.values.setdefault(k.strip(), v.strip())
    return ini


# --------------------------------------------------------------------------- WER event
_WER_SCENARIO = {1: "Media", 5: "WindowsUpdate", 7: "Media Creation Tool"}
_WER_MODE = {1: "Downlevel", 5: "Rollback"}
_WER_ARCH = {0: "X86", 9: "AMD64"}
_WER_RESULT = {0: "Success", 1: "Failure", 2: "Cancel", 3: "Blocked"}
_P_RE = re.compile(r"^\s*P(\d{1,2}):\s*((?:\S(?:.*\S)?)?)\s*$")


@dataclass
class WinSetupDiagEvent:
    """Application-log WER event ``WinSetupDiag02`` (or ``01``)."""

    event_name: str = ""
    params: Dict[int, str] = field(default_factory=dict)
    attached_files: List[str] = field(default_factory=list)

    def _int(self, i: int) -> Optional[int]:
        v = self.params.get(i, "")
        try:
            return int(v, 0)
        except ValueError:
            return None

    @property
    def scenario(self) -> str:
        v = self._int(1)
        return _WER_SCENARIO.get(v, str(v)) if v is not None else ""

    @property
    def mode(self) -> str:
        v = self._int(2)
        return _WER_MODE.get(v, str(v)) if v is not None else ""

    @property
    def architecture(self) -> str:
        v = self._int(3)
        return _WER_ARCH.get(v, str(v)) if v is not None else ""

    @property
    def outcome(self) -> str:
        v = self._int(4)
        return _WER_RESULT.get(v, str(v)) if v is not None else ""

    @property
    def result(self) -> Optional[UpgradeResult]:
        code, ext = self._int(5), self._int(6)
        if code is None:
            return None
        return explain_result(code, ext if ext else None)

    @property
    def source_build(self) -> str:
        return f"{self.params.get(7, '')} {self.params.get(8, '')}".strip()

    @property
    def target_build(self) -> str:
        return f"{self.params.get(9, '')} {self.params.get(10, '')}".strip()

    def __repr__(self) -> str:
        return (f"<WinSetupDiagEvent {self.event_name} {self.outcome} {self.params.get(5, '?')} - "
                f"{self.params.get(6, '?')} {self.source_build} -> {self.target_build}>")


def parse_wer_setup_events(source: LogSource, *, name: Optional[str] = None) -> List[WinSetupDiagEvent]:
    """Every ``WinSetupDiag0x`` event in a pasted Event Viewer / WER text."""
    opened = open_text(source, name=name)
    events: List[WinSetupDiagEvent] = []
    cur: Optional[WinSetupDiagEvent] = None
    in_files = False
    for _, line in opened.lines():
        s = line.strip()
        m = re.match(r"^Event Name:\s*(WinSetupDiag\d+)", s)
        if m:
            cur = WinSetupDiagEvent(m.group(1))
            if len(events) < 1000:
                events.append(cur)
            in_files = False
            continue
        if cur is None:
            continue
        m = _P_RE.match(s)
        if m:
            cur.params[int(m.group(1))] = m.group(2)
            continue
        if s.lower().startswith("attached files"):
            in_files = True
            continue
        if in_files:
            if s.startswith("\\\\?\\") or re.match(r"^[A-Za-z]:\\", s):
                if len(cur.attached_files) < 100:
                    cur.attached_files.append(s)
            elif s:
                in_files = False
    return events


__all__ = ["SetupDiagResult", "parse_setupdiag", "SetupIni", "parse_setup_ini", "WinSetupDiagEvent",
           "parse_wer_setup_events"]
