"""One result row per input: the columns of ``results.parquet`` and how an analysis fills them.

Rows are plain dicts of JSON types (they come back from a worker process, possibly on another
machine): numbers, strings, ``None``; ``crash_time`` and ``analysed_at`` as ISO-8601 strings
until :mod:`dumpkit.batch.store` turns them into timestamps.
"""
from __future__ import annotations

import re
from typing import Any, Dict, List, Optional

#: (column, pyarrow type name, meaning): the documented contract of results.parquet (docs/batch.md)
COLUMNS = [
    ("path", "string", "the input: a file, or 'bundle.zip!folder/member' for a zip member"),
    ("sha256", "string", "SHA-256 of the input's bytes: the row's identity (resume, duplicates)"),
    ("status", "string", "ok | incomplete | error | timeout | skipped"),
    ("kind", "string", "dump | text | log | unknown | archive: what the content was recognised as"),
    ("size", "int64", "bytes"),
    ("container", "string", "the zip a member came from"),
    ("bugcheck_code", "int64", "the bug check code (0x1000007E style codes kept as they are)"),
    ("bugcheck_name", "string", "its symbolic name"),
    ("parameters", "string", "the four parameters, hex, space-separated"),
    ("failure_bucket_id", "string", "FAILURE_BUCKET_ID as !analyze forms it"),
    ("failure_id_hash", "string", "FAILURE_ID_HASH"),
    ("module_name", "string", "MODULE_NAME"),
    ("image_name", "string", "IMAGE_NAME"),
    ("symbol_name", "string", "SYMBOL_NAME"),
    ("culprit", "string", "the module dumpkit blames (file name)"),
    ("vendor", "string", "the culprit's vendor from the knowledge base"),
    ("category", "string", "the culprit's category"),
    ("culprit_timestamp", "int64", "the culprit's PE TimeDateStamp when the module list has it"),
    ("culprit_version", "string", "the culprit's file version when the input has it (lmv text)"),
    ("confidence", "string", "high | medium | low"),
    ("os_build", "int64", "Windows build number (19041)"),
    ("os_version", "string", "the full version when the input has it (10.0.22621.1928)"),
    ("crash_time", "timestamp", "when the system crashed (UTC)"),
    ("source", "string", "dump | text: what the analysis read"),
    ("incomplete_reasons", "string", "why an 'incomplete' analysis is not complete"),
    ("warnings", "int64", "how many warnings the analysis raised"),
    ("error", "string", "what went wrong, for error / timeout rows (and input damage)"),
    ("error_type", "string", "the dumpkit error class (NotADumpError, TruncatedDumpError...)"),
    ("input_problem", "string", "damage seen while reading the input (zip member CRC, truncation)"),
    ("wer_event_type", "string", "from a Report.wer beside the dump: EventType"),
    ("wer_bucket", "string", "Report.wer Response.BucketId (or LegacyBucketId)"),
    ("wer_app", "string", "Report.wer AppName / NsAppName / AppPath"),
    ("wer_report_id", "string", "Report.wer ReportIdentifier"),
    ("wer_signature", "string", "Report.wer problem signature (Sig[n].Name=Value; ...)"),
    ("seconds", "float64", "wall time of the analysis"),
    ("cpu_seconds", "float64", "CPU time (user + system) the analysis process spent on it"),
    ("peak_rss_mb", "float64", "peak resident memory of the analysing process so far (MiB)"),
    ("worker", "string", "the worker that analysed it"),
    ("analysed_at", "timestamp", "when the row was made (UTC)"),
    ("dumpkit_version", "string", "the dumpkit version that made the row"),
]
COLUMN_NAMES = [c[0] for c in COLUMNS]
STATUSES = ("ok", "incomplete", "error", "timeout", "skipped")


def empty_row(job: Dict[str, Any]) -> Dict[str, Any]:
    from .. import __version__
    row: Dict[str, Any] = {c: None for c in COLUMN_NAMES}
    row.update(path=job.get("path"), sha256=job.get("sha256"), kind=job.get("kind"), size=job.get("size"),
               container=job.get("container"), input_problem=job.get("problem") or None,
               dumpkit_version=__version__)
    for k, v in (job.get("wer") or {}).items():
        if k in row:
            row[k] = v
    return row


def _build_from_version(text: Optional[str]) -> Optional[int]:
    m = re.match(r"\s*\d+\.\d+\.(\d{3,6})\b", text or "")
    return int(m.group(1)) if m else None


def fill_from_analysis(row: Dict[str, Any], a: Any, *, os_build: Optional[int] = None,
                       module_versions: Optional[Dict[str, Dict[str, str]]] = None) -> Dict[str, Any]:
    """Copy the verdict of a :class:`~dumpkit.analysis.engine.Analysis` into ``row``."""
    row["bugcheck_code"] = a.bugcheck_code
    row["bugcheck_name"] = a.bugcheck_name
    row["parameters"] = " ".join(f"0x{p:x}" for p in (a.parameters or [])) or None
    for k in ("failure_bucket_id", "failure_id_hash", "module_name", "image_name", "symbol_name", "confidence"):
        row[k] = getattr(a, k, None)
    c = a.culprit
    row["culprit"], row["vendor"], row["category"] = c.module, c.vendor, c.category
    if c.module:
        m = None
        try:
            m = a.modules.by_name(c.module)
        except Exception:  # noqa: BLE001 - a damaged module list must not lose the row
            m = None
        if m is not None and m.timestamp:
            row["culprit_timestamp"] = int(m.timestamp)
        row["culprit_version"] = _version_of(c.module, module_versions or {})
    fields = getattr(a, "fields", {}) or {}
    row["os_version"] = fields.get("OS_VERSION") or fields.get("BUILD_VERSION_STRING") or None
    row["os_build"] = os_build if os_build else _build_from_version(row["os_version"])
    ct = getattr(a, "crash_time", None)
    if ct is None and getattr(a, "debug_session_time", None):
        from ..logs.correlate import parse_debug_session_time
        ct = parse_debug_session_time(a.debug_session_time)
    row["crash_time"] = ct.isoformat() if ct is not None else None
    row["source"] = getattr(a, "source", None)
    reasons: List[str] = list(a.incomplete_reasons)
    row["incomplete_reasons"] = "; ".join(reasons) or None
    row["warnings"] = len(getattr(a, "warnings", []) or [])
    row["status"] = "incomplete" if reasons else "ok"
    return row


def _version_of(module: str, versions: Dict[str, Dict[str, str]]) -> Optional[str]:
    stem = module.rsplit(".", 1)[0].lower()
    for name, fields in versions.items():
        n = name.lower()
        if n == module.lower() or n == stem or n.rsplit(".", 1)[0] == stem:
            v = fields.get("File version") or fields.get("FileVersion") or fields.get("Product version")
            if v:
                return v.strip()[:100]
    return None
