"""Windows setup logs beside a dump: parse them, summarise them, correlate them with the crash.

>>> from dumpkit.logs import open_bundle, summarize_logs, correlate
>>> bundle = open_bundle("case.zip")                       # folder or zip; damage becomes findings
>>> findings = summarize_logs(bundle)
>>> for c in correlate(findings, crash_time=t, modules=["ndis", "lwfmgr"], culprit="lwfmgr.sys"):
...     print(c.render())

Parsers (each accepts a path, bytes, a binary stream or :class:`TextLines`,
streams the file and raises only :class:`dumpkit.errors.TextParseError`):
:func:`parse_panther` (setupact/setuperr, UnattendGC, CBS, DISM, sysprep),
:func:`parse_setupapi` (setupapi.dev/setup/offline.log),
:func:`parse_setupdiag` (SetupDiagResults .log/.xml/.json),
:func:`parse_setup_ini` (rollbackinfo.ini, SetupPlatform.ini),
:func:`parse_wer_setup_events` (WinSetupDiag02 events).
"""
from __future__ import annotations

from ..errors import TextParseError
from ._text import DecodeStats, TextLines, open_text, sniff_encoding
from .bundle import BundleFile, BundleProblem, DumpFile, LogBundle, classify_path, open_bundle
from .codes import (ErrorCodeInfo, ExtendCode, UpgradeResult, decode_extend, explain_result, find_result_pairs,
                    lookup_code)
from .correlate import Correlation, correlate, module_stem, parse_debug_session_time, parse_uptime
from .findings import LogError, LogFindings, MissingPath, RollbackEvidence, SetupApiFailure, summarize_logs
from .panther import PantherEntry, PantherLog, RollbackCrash, iter_panther, parse_panther
from .setupapi import (ScopeExit, ServiceRef, SetupApiLine, SetupApiLog, SetupApiSection, iter_setupapi_sections,
                       parse_setupapi)
from .setupdiag import (SetupDiagResult, SetupIni, WinSetupDiagEvent, parse_setup_ini, parse_setupdiag,
                        parse_wer_setup_events)

__all__ = [
    "open_bundle", "summarize_logs", "correlate",
    "parse_panther", "iter_panther", "parse_setupapi", "iter_setupapi_sections", "parse_setupdiag",
    "parse_setup_ini", "parse_wer_setup_events", "open_text", "sniff_encoding", "TextLines", "DecodeStats",
    "lookup_code", "explain_result", "decode_extend", "find_result_pairs",
    "parse_debug_session_time", "parse_uptime", "module_stem", "classify_path",
    "LogBundle", "BundleFile", "BundleProblem", "DumpFile",
    "PantherEntry", "PantherLog", "RollbackCrash",
    "SetupApiLog", "SetupApiSection", "SetupApiLine", "ServiceRef", "ScopeExit",
    "SetupDiagResult", "SetupIni", "WinSetupDiagEvent",
    "ErrorCodeInfo", "ExtendCode", "UpgradeResult",
    "LogFindings", "LogError", "SetupApiFailure", "MissingPath", "RollbackEvidence", "Correlation",
    "TextParseError",
]
