"""What the setup logs say, in one object: :func:`summarize_logs` -> :class:`LogFindings`.

Collected from every parsed log of a bundle (or from logs handed in directly):

* failing setupapi sections with the services/drivers/INFs they touched and
  their exit code explained;
* Panther / UnattendGC / CBS errors with their codes explained;
* components pointed at paths that do not exist (PnpUnattend driver paths:
  error 0x3, ERROR_PATH_NOT_FOUND) - a configuration error with a clear fix;
* rollback evidence: the ``Crash 0x... detected`` block setup writes into the
  rollback log, ``rollbackinfo.ini``'s phase, result/extend code pairs, dumps
  found in the Rollback folder, SetupDiag's verdict;
* the time range the logs cover and the damage the bundle had.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import TextParseError
from .bundle import BundleFile, BundleProblem, DumpFile, LogBundle, classify_path, open_bundle
from .codes import ErrorCodeInfo, UpgradeResult, format_code
from .panther import PantherEntry, PantherLog, RollbackCrash
from .setupapi import SetupApiLog, SetupApiSection
from .setupdiag import SetupDiagResult, SetupIni

MAX_ERRORS = 1000

_PATH_QUOTED_RE = re.compile(r"[“\"'\[]([A-Za-z]:\\[^“”\"'\[\]\n]{0,259}?)[”\"'\]]")
_PATH_BARE_RE = re.compile(r"(?<![\w\\])([A-Za-z]:\\[^\s“”\"'\[\]();,]{1,259})")
_NOT_FOUND_CODES = frozenset({0x2, 0x3, 0x80070002, 0x80070003})


@dataclass(frozen=True)
class LogError:
    """An error entry from a Panther-style log, with its codes explained."""

    file: str
    phase: str
    entry: PantherEntry
    explanations: Tuple[ErrorCodeInfo, ...] = ()

    @property
    def time(self) -> Optional[datetime]:
        return self.entry.time

    @property
    def who(self) -> str:
        return self.entry.who

    def render(self) -> str:
        text = self.entry.render()
        for info in self.explanations:
            text += f"\n    -> {info}"
        return text

    def __repr__(self) -> str:
        ts = f"{self.time:%Y-%m-%d %H:%M:%S}" if self.time else "--"
        codes = ",".join(format_code(c) for c in self.entry.codes[:3])
        return f"<LogError {ts} {self.who or '-'} {codes} ({self.file} L{self.entry.line})>"


@dataclass(frozen=True)
class SetupApiFailure:
    """A setupapi section that ended in FAILURE."""

    file: str
    phase: str
    section: SetupApiSection
    explanation: Optional[ErrorCodeInfo] = None

    @property
    def time(self) -> Optional[datetime]:
        return self.section.time

    @property
    def services(self) -> List[str]:
        return self.section.service_names

    @property
    def exit_code(self) -> Optional[int]:
        return self.section.exit_code

    def render(self) -> str:
        s = self.section
        code = f"FAILURE({s.exit_code:#010x})" if s.exit_code is not None else "FAILURE"
        ts = f" at {s.time:%Y-%m-%d %H:%M:%S}" if s.time else ""
        lines = [f"{s.label} ended {code}{ts} ({self.file} lines {s.first_line}-{s.last_line})"]
        if self.explanation:
            lines.append(f"    -> {self.explanation}")
        for ref in s.services:
            src = f" ({ref.inf} line {ref.inf_line})" if ref.inf else ""
            lines.append(f"    service {ref.name}: {ref.action}{src}")
        for e in s.errors[:5]:
            lines.append(f"    !!! {e.category}: {e.text}")
        for sc in s.scope_failures[:5]:
            lines.append(f"    {{{sc.name}}} exit({sc.code:#010x})")
        if not s.complete:
            lines.append("    (section is incomplete: " + ", ".join(
                x for x, f in (("start missing", s.headless), ("end missing", s.truncated)) if f) + ")")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<SetupApiFailure {self.section!r} in {self.file}>"


@dataclass(frozen=True)
class MissingPath:
    """A component was given a path that does not exist (error 0x2/0x3 with a path)."""

    path: str
    who: str
    code: int
    file: str
    entry: PantherEntry

    @property
    def time(self) -> Optional[datetime]:
        return self.entry.time

    @property
    def is_driver_path(self) -> bool:
        """True for PnpUnattend driver-store paths (unattend DriverPaths / preload scripts)."""
        w = self.who.lower()
        m = self.entry.message.lower()
        return "pnpunattend" in w or "driver" in m or "驱动" in m

    def __repr__(self) -> str:
        return f"<MissingPath {self.path} ({self.who}, {format_code(self.code)})>"


@dataclass
class RollbackEvidence:
    """Signs that setup rolled back, and what it left."""

    crashes: List[Tuple[str, RollbackCrash]] = field(default_factory=list)
    current_phase: str = ""
    results: List[Tuple[str, UpgradeResult]] = field(default_factory=list)
    dumps: List[DumpFile] = field(default_factory=list)
    files: List[str] = field(default_factory=list)

    @property
    def present(self) -> bool:
        return bool(self.crashes or self.current_phase or self.dumps or self.files
                    or any(r.result == 0xC1900101 for _, r in self.results))

    def __repr__(self) -> str:
        if not self.present:
            return "<RollbackEvidence none>"
        parts = []
        if self.crashes:
            parts.append("crash " + ", ".join(f"{c.code:#x}" for _, c in self.crashes))
        if self.current_phase:
            parts.append(f"phase {self.current_phase}")
        if self.results:
            parts.append(f"{len(self.results)} result code(s)")
        if self.dumps:
            parts.append(f"{len(self.dumps)} dump(s)")
        if self.files:
            parts.append(f"{len(self.files)} rollback file(s)")
        return f"<RollbackEvidence {'; '.join(parts)}>"


@dataclass
class LogFindings:
    """The setup-log side of a case."""

    setupapi_failures: List[SetupApiFailure] = field(default_factory=list)
    errors: List[LogError] = field(default_factory=list)
    missing_paths: List[MissingPath] = field(default_factory=list)
    rollback: RollbackEvidence = field(default_factory=RollbackEvidence)
    setupdiag: List[SetupDiagResult] = field(default_factory=list)
    dumps: List[DumpFile] = field(default_factory=list)
    problems: List[BundleProblem] = field(default_factory=list)
    setupapi_logs: List[Tuple[str, SetupApiLog]] = field(default_factory=list)
    files: List[str] = field(default_factory=list)
    first_time: Optional[datetime] = None
    last_time: Optional[datetime] = None
    errors_dropped: int = 0
    inventory: List[BundleFile] = field(default_factory=list)   # every file looked at: read as what, or why not
    sources: List[str] = field(default_factory=list)            # the folders/zips/files handed in

    @property
    def read_files(self) -> List[BundleFile]:
        return [b for b in self.inventory if b.parsed is not None]

    @property
    def skipped_files(self) -> List[BundleFile]:
        return [b for b in self.inventory if b.parsed is None]

    def to_json(self) -> dict:
        """The ``dumpkit logs --json`` document (docs/json-schema.md; ``schema_version`` is added by
        the caller so the version lives in one place, :mod:`dumpkit.schemas`)."""
        def t(x: Optional[datetime]) -> Optional[str]:
            return None if x is None else x.isoformat()

        def info(i: Optional[ErrorCodeInfo]) -> Optional[dict]:
            return None if i is None else {"code": f"0x{i.code:x}", "name": i.name, "meaning": i.meaning,
                                           "advice": i.advice or None}
        rb = self.rollback
        return {
            "sources": list(self.sources),
            "files": [{"path": b.path, "kind": b.kind, "phase": b.phase or None, "size": b.size, "how": b.how,
                       "status": b.status, "note": b.note or None, "problem": b.problem or None}
                      for b in self.inventory],
            "time_range": None if not self.time_range else {"first": t(self.first_time), "last": t(self.last_time)},
            "setupapi_failures": [{
                "file": x.file, "phase": x.phase or None, "section": x.section.label, "time": t(x.time),
                "exit_code": None if x.exit_code is None else f"0x{x.exit_code:08x}",
                "first_line": x.section.first_line, "last_line": x.section.last_line,
                "services": list(x.services), "explanation": info(x.explanation)} for x in self.setupapi_failures],
            "errors": [{
                "file": e.file, "phase": e.phase or None, "line": e.entry.line, "time": t(e.time),
                "who": e.who or None, "message": e.entry.message,
                "codes": [f"0x{c:x}" for c in e.entry.codes], "explanations": [info(i) for i in e.explanations]}
                for e in self.errors],
            "errors_dropped": self.errors_dropped,
            "missing_paths": [{"path": m.path, "who": m.who or None, "code": f"0x{m.code:x}", "file": m.file,
                               "time": t(m.time), "driver_path": m.is_driver_path} for m in self.missing_paths],
            "rollback": {
                "present": rb.present,
                "crashes": [{"file": f, "time": t(c.time), "code": f"0x{c.code:x}", "module": c.module or None,
                             "parameters": [f"0x{p:x}" for p in c.parameters]} for f, c in rb.crashes],
                "current_phase": rb.current_phase or None,
                "results": [{"file": f, "result": f"0x{r.result:x}", "text": str(r)} for f, r in rb.results],
                "dumps": [d.path for d in rb.dumps], "files": list(rb.files)},
            "setupdiag": [{"profile": sd.profile or None, "matched": sd.matched, "version": sd.version or None,
                           "last_phase": sd.last_phase or None, "last_operation": sd.last_operation or None,
                           "error": None if sd.error is None else str(sd.error), "failure": list(sd.failure)}
                          for sd in self.setupdiag],
            "dumps": [{"path": d.path, "kind": d.kind, "signature": d.signature or None, "size": d.size,
                       "in_rollback": d.in_rollback} for d in self.dumps],
            "problems": [{"member": p.member or None, "kind": p.kind, "detail": p.detail} for p in self.problems],
        }

    def render_inventory(self, limit: int = 200) -> str:
        """Which files were read as what, which were skipped and why (the first lines of :meth:`render`)."""
        if not self.inventory:
            where = ", ".join(self.sources) or "the input"
            return f"No files in {where}: the folder is empty." if self.sources else "No log files were given."
        read, skipped = self.read_files, self.skipped_files
        src = f" in {', '.join(self.sources)}" if self.sources else ""
        out = [f"Read {len(read)} of {len(self.inventory)} file{'s' if len(self.inventory) != 1 else ''}{src}:"]
        for b in read[:limit]:
            how = "by content" if b.how == "content" else "by name"
            ph = f", {b.phase}" if b.phase else ""
            out.append(f"  {b.path}: {b.kind}{ph} ({how}: {b.note})" if b.note else f"  {b.path}: {b.kind}{ph} ({how})")
        if skipped:
            out.append(f"Skipped {len(skipped)}:")
            for b in skipped[:limit]:
                why = b.problem or b.note or ("a crash dump (give it to 'dumpkit analyze')" if b.kind == "dump"
                                              else "not a setup log")
                if b.kind == "dump":
                    why = f"a crash dump: analyse it with 'dumpkit analyze' ({b.note})" if b.note else why
                out.append(f"  {b.path}: {why}")
        if len(read) > limit or len(skipped) > limit:
            out.append(f"  ... (only the first {limit} of each are listed)")
        return "\n".join(out)

    @property
    def time_range(self) -> Optional[Tuple[datetime, datetime]]:
        if self.first_time and self.last_time:
            return self.first_time, self.last_time
        return None

    @property
    def last_error(self) -> Optional[LogError]:
        """The latest error by time: SetupDiag's rule of thumb says the last failure is usually the fatal one."""
        timed = [e for e in self.errors if e.time]
        if not timed:
            return self.errors[-1] if self.errors else None
        return max(timed, key=lambda e: (e.time, e.entry.line))

    def setupapi_sections(self) -> Iterable[Tuple[str, SetupApiSection]]:
        for name, log in self.setupapi_logs:
            for s in log.sections:
                yield name, s

    def render(self) -> str:
        """A plain-text report of the findings."""
        out: List[str] = [self.render_inventory(), ""] if (self.inventory or self.sources) else []
        if self.time_range:
            a, b = self.time_range
            out.append(f"Logs cover {a:%Y-%m-%d %H:%M:%S} .. {b:%Y-%m-%d %H:%M:%S} (local time of the machine)")
        if self.setupapi_failures:
            out.append(f"\nFailing setupapi sections ({len(self.setupapi_failures)}):")
            out += ["  " + f.render().replace("\n", "\n  ") for f in self.setupapi_failures]
        if self.missing_paths:
            out.append("\nPaths that do not exist:")
            out += [f"  {m.path} ({m.who}, {format_code(m.code)})" for m in self.missing_paths]
        if self.errors:
            out.append(f"\nErrors ({len(self.errors)}{' + ' + str(self.errors_dropped) + ' more' if self.errors_dropped else ''}):")
            out += ["  " + e.render().replace("\n", "\n  ") for e in self.errors[:50]]
        if self.rollback.present:
            out.append("\nRollback evidence:")
            for f, c in self.rollback.crashes:
                params = ", ".join(f"{p:#x}" for p in c.parameters)
                out.append(f"  bugcheck {c.code:#x} ({params}) recorded in {f}")
            if self.rollback.current_phase:
                out.append(f"  rollbackinfo.ini CurrentPhase={self.rollback.current_phase}")
            for f, r in self.rollback.results[:10]:
                out.append(f"  {r} ({f})")
            for d in self.rollback.dumps:
                out.append(f"  dump {d.path} [{d.kind}]")
        for sd in self.setupdiag:
            out.append(f"\nSetupDiag: {sd.profile or 'no rule matched'}"
                       + (f", {sd.error}" if sd.error else "")
                       + (f", last phase {sd.last_phase}" if sd.last_phase else ""))
        if self.dumps:
            out.append("\nDumps: " + ", ".join(f"{d.path} [{d.kind}]" for d in self.dumps))
        problems = [p for p in self.problems if p.kind != "skipped"]
        if problems:
            out.append("\nBundle problems:")
            out += [f"  {p}" for p in problems]
        text = "\n".join(out).strip()
        if self.read_files and not (self.setupapi_failures or self.errors or self.missing_paths
                                    or self.rollback.present or self.setupdiag or problems):
            text += "\n\nNo errors, failed driver installs or rollback evidence in the files read."
        return text or "No setup-log findings."

    def __repr__(self) -> str:
        rng = ""
        if self.time_range:
            rng = f" {self.first_time:%Y-%m-%d %H:%M:%S}..{self.last_time:%Y-%m-%d %H:%M:%S}"
        return (f"<LogFindings {len(self.setupapi_failures)} setupapi failures, {len(self.errors)} errors,"
                f" {len(self.missing_paths)} missing paths, {self.rollback!r}, {len(self.problems)} problems{rng}>")


Summarizable = Union[LogBundle, PantherLog, SetupApiLog, SetupDiagResult, SetupIni, str, "os.PathLike[str]",
                     Sequence[object]]


def _paths_in(message: str) -> List[str]:
    found = [m.group(1).rstrip("\\ .") for m in _PATH_QUOTED_RE.finditer(message)]
    if not found:
        found = [m.group(1).rstrip("\\ .:") for m in _PATH_BARE_RE.finditer(message)]
    out: List[str] = []
    for p in found:
        if p and p not in out:
            out.append(p)
    return out


class _Collector:
    def __init__(self, max_errors: int) -> None:
        self.f = LogFindings()
        self.max_errors = max_errors

    def _times(self, *ts: Optional[datetime]) -> None:
        for t in ts:
            if t is None:
                continue
            if self.f.first_time is None or t < self.f.first_time:
                self.f.first_time = t
            if self.f.last_time is None or t > self.f.last_time:
                self.f.last_time = t

    def add(self, obj: object, name: str = "", phase: str = "") -> None:
        f = self.f
        if isinstance(obj, LogBundle):
            f.problems += obj.problems
            f.inventory += obj.files
            if obj.source not in f.sources:
                f.sources.append(obj.source)
            for bf in obj.files:
                if bf.phase == "rollback" and len(f.rollback.files) < 1000:
                    f.rollback.files.append(bf.path)
                if bf.parsed is not None:
                    self.add(bf.parsed, bf.path, bf.phase)
            for d in obj.dumps:
                f.dumps.append(d)
                if d.in_rollback:
                    f.rollback.dumps.append(d)
            return
        if isinstance(obj, (list, tuple)):
            for item in obj:
                self.add(item)
            return
        if isinstance(obj, (str, os.PathLike)):
            self.add(open_bundle(obj))
            return
        label = name or getattr(obj, "name", None) or "<text>"
        if not phase:
            phase = classify_path(str(label))[1]
        if label not in f.files:
            f.files.append(label)
        if isinstance(obj, PantherLog):
            self._panther(obj, label, phase)
        elif isinstance(obj, SetupApiLog):
            self._setupapi(obj, label, phase)
        elif isinstance(obj, SetupDiagResult):
            f.setupdiag.append(obj)
            if obj.error is not None:
                f.rollback.results.append((label, obj.error))
        elif isinstance(obj, SetupIni):
            if obj.current_phase and not f.rollback.current_phase:
                f.rollback.current_phase = obj.current_phase
        else:
            raise TextParseError(f"cannot summarize a {type(obj).__name__}",
                                 expected="LogBundle, parsed log, path, or a list of them")

    def _panther(self, log: PantherLog, label: str, phase: str) -> None:
        f = self.f
        self._times(log.first_time, log.last_time)
        for c in log.crashes:
            f.rollback.crashes.append((label, c))
        for _, r in log.results:
            if len(f.rollback.results) < 200:
                f.rollback.results.append((label, r))
        for e in log.entries:
            if not e.is_error:
                continue
            if len(f.errors) >= self.max_errors:
                f.errors_dropped += 1
                continue
            f.errors.append(LogError(label, phase, e, tuple(e.explain())))
            nf = [c for c in e.codes if c in _NOT_FOUND_CODES]
            if nf:
                for p in _paths_in(e.message):
                    if len(f.missing_paths) < 200:
                        f.missing_paths.append(MissingPath(p, e.who, nf[0], label, e))

    def _setupapi(self, log: SetupApiLog, label: str, phase: str) -> None:
        f = self.f
        f.setupapi_logs.append((label, log))
        self._times(log.first_time, log.last_time)
        for s in log.sections:
            if s.failed:
                f.setupapi_failures.append(SetupApiFailure(label, phase, s, s.explain_exit()))


def summarize_logs(logs: Summarizable, *, max_errors: int = MAX_ERRORS) -> LogFindings:
    """Collect the findings from a bundle, a parsed log, a path (folder/zip/log), or a list of them."""
    c = _Collector(max_errors)
    c.add(logs)
    f = c.f
    f.errors.sort(key=lambda e: (e.time is None, e.time or datetime.min, e.file, e.entry.line))
    f.setupapi_failures.sort(key=lambda x: (x.time is None, x.time or datetime.min, x.file, x.section.first_line))
    return f


__all__ = ["LogFindings", "LogError", "SetupApiFailure", "MissingPath", "RollbackEvidence", "summarize_logs",
           "BundleFile"]
