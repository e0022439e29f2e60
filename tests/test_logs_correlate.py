"""Findings and dump<->log correlation on the two seed cases; SetupDiag, WER, error codes."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from dumpkit.logs import (TextLines, correlate, decode_extend, explain_result, lookup_code, module_stem,
                          parse_debug_session_time, parse_panther, parse_setup_ini, parse_setupapi,
                          parse_setupdiag, parse_uptime, parse_wer_setup_events, summarize_logs)
from dumpkit.logs.codes import _table

from ._logs_util import DATA, strip_annotations
from .conftest import shared_path

CASE1 = DATA / "case1_unattendgc_setupact.log"
CASE2 = DATA / "case2_setupapi.dev.log"
# the dump side of case 1 as WinDbg printed it (cases.md)
SESSION = "Debug session time: Mon Jun 26 08:07:55.743 2023 (UTC + 8:00)"
UPTIME = "System Uptime: 0 days 0:00:40.641"


def test_windbg_time_lines():
    t = parse_debug_session_time(SESSION)
    assert t == datetime(2023, 6, 26, 8, 7, 55, 743000, tzinfo=timezone(timedelta(hours=8)))
    assert parse_uptime(UPTIME) == timedelta(seconds=40, milliseconds=641)
    assert parse_debug_session_time("Mon Jun 26 08:07:55 2023 (UTC - 5:00)").utcoffset() == timedelta(hours=-5)
    assert parse_debug_session_time("nothing here") is None and parse_uptime("") is None


def test_module_stem():
    assert [module_stem(x) for x in ["lwfmgr.sys", "lwfmgr+0x5167", "ndis!NdisFDeregisterFilterDriver+0x47",
                                     r"\SystemRoot\system32\drivers\LWFMGR.SYS", "vwifimf.inf"]] == \
        ["lwfmgr", "lwfmgr", "ndis", "lwfmgr", "vwifimf"]


def test_case1_story():
    f = summarize_logs(parse_panther(CASE1))
    assert [m.path for m in f.missing_paths] == ["C:\\DRIVERS\\STORE1", "C:\\DRIVERS\\STORE"]
    assert all(m.is_driver_path and m.who == "PNPUNATTEND.EXE" and m.code == 3 for m in f.missing_paths)
    assert f.last_error.entry.codes == (0x8030000C,)
    assert f.time_range == (datetime(2023, 6, 26, 8, 2, 32), datetime(2023, 6, 26, 8, 8, 34))
    cs = correlate(f, crash_time=parse_debug_session_time(SESSION), modules=["nt", "ks"], culprit="ks.sys",
                   uptime=parse_uptime(UPTIME))
    kinds = [c.kind for c in cs]
    assert kinds[:2] == ["missing-driver-path", "time-window"]
    drv = cs[0]
    assert drv.confidence == "high"
    assert "C:\\DRIVERS\\STORE1" in drv.summary and "C:\\DRIVERS\\STORE" in drv.summary
    assert any("driver-store path in the unattend/preload script" in r for r in drv.remediation)
    tw = cs[1]
    assert tw.confidence == "high"
    # 08:07:55 falls between the PnpUnattend failure at 08:07:23 and the audit pass failure at 08:08:34
    assert "08:07:23" in tw.summary and "08:08:34" in tw.summary and "PNPUNATTEND.EXE" in tw.summary
    assert tw.time_delta == datetime(2023, 6, 26, 8, 7, 23) - datetime(2023, 6, 26, 8, 7, 55, 743000)
    assert any("08:07:15" in e for e in tw.evidence)          # boot = crash - uptime
    # ks.sys is nowhere in the logs: no module correlation is invented
    assert "module-in-failing-setupapi" not in kinds


def test_case1_time_rules():
    f = summarize_logs(parse_panther(CASE1))
    utc = datetime(2023, 6, 26, 0, 7, 55, tzinfo=timezone.utc)
    # a UTC crash time needs the logs' offset; without it the wall clock is far from the logs
    far = correlate(f, crash_time=utc)
    assert [c.kind for c in far if c.kind.startswith("time")] == ["time-outside-logs"]
    near = correlate(f, crash_time=utc, log_utc_offset=timedelta(hours=8))
    assert [c for c in near if c.kind == "time-window"][0].confidence == "high"
    naive = correlate(f, crash_time=datetime(2023, 6, 26, 8, 7, 55))
    assert any("taken as the logs' local time" in e for c in naive for e in c.evidence)


def test_case2_story():
    f = summarize_logs(parse_setupapi(CASE2))
    assert [x.services for x in f.setupapi_failures] == [["lwfmgr"], ["vwifimf"]]
    assert {x.explanation.name for x in f.setupapi_failures} == {"ERROR_TRANSACTION_NOT_ACTIVE"}
    # modules from the case-2 stack (nt, ndis, lwfmgr), culprit lwfmgr as the analysis names it
    cs = correlate(f, modules=["nt", "ndis", "lwfmgr+0x5167"], culprit="lwfmgr.sys")
    top = cs[0]
    assert (top.kind, top.module, top.confidence) == ("module-in-failing-setupapi", "lwfmgr", "high")
    assert "FAILURE(0x80071A2D)" in top.summary and "ERROR_TRANSACTION_NOT_ACTIVE" in top.summary
    assert any("lwfmgr.inf line 82" in e for e in top.evidence)
    assert any(r"CurrentControlSet\Services\lwfmgr" in r and "Start=4" in r for r in top.remediation)
    rel = [c for c in cs if c.kind == "related-setupapi-failure"]
    assert len(rel) == 1 and rel[0].module == "vwifimf"
    assert "if setup still rolls back" in rel[0].summary
    assert any(r"Services\vwifimf" in r for r in rel[0].remediation)
    # ndis/nt are not in the failing sections: nothing is said about them
    assert not any(c.module in ("nt", "ndis") for c in cs)


def test_rollback_bugcheck_cross_check():
    text = TextLines("2022-05-05 16:30:00, Info                  SP     Crash 0x0000007E detected\n"
                     "2022-05-05 16:30:00, Info                  SP       Bugcheck parameter 1  : 0xFFFFFFFFC0000005\n")
    f = summarize_logs(parse_panther(text))
    assert correlate(f, bugcheck_code=0x1000007E)[0].confidence == "high"
    assert correlate(f, bugcheck_code=0x7E)[0].kind == "rollback-bugcheck"
    assert correlate(f, bugcheck_code=0xD1)[0].confidence == "low"


def test_error_code_table():
    assert lookup_code(0x8007045B).name == "ERROR_SHUTDOWN_IN_PROGRESS"
    assert lookup_code(0x45B).name == "ERROR_SHUTDOWN_IN_PROGRESS"
    assert lookup_code(0x80071A2D).name == "ERROR_TRANSACTION_NOT_ACTIVE"
    assert lookup_code(0x80070003).name == lookup_code(0x3).name == "ERROR_PATH_NOT_FOUND"
    assert lookup_code(0x207).name == "SPAPI_E_DEVINST_ALREADY_EXISTS"
    assert lookup_code(0x12345678) is None and lookup_code(-1) is None
    r = explain_result(0xC1900101, 0x4000D)
    assert (r.extend.phase_name, r.extend.operation_name) == ("OOBE_BOOT", "MIGRATE_DATA")
    assert "setupmem.dmp" in r.advice
    assert str(decode_extend(0x2000C)) == "0x2000C = phase SAFE_OS, operation APPLY_IMAGE"
    assert decode_extend(0x30018).operation_name == "SYSPREP"
    assert decode_extend(0x50016).phase_name == "UNINSTALL"


def test_error_table_is_written_in_our_words():
    # no 9-word run of a table text may appear in the reference notes (facts yes, sentences no)
    ref = shared_path("..", "..", "reference", "setuplogs.md").read_text(encoding="utf-8").lower()
    ref_words = re.findall(r"[a-z0-9']+", ref)
    grams = {" ".join(ref_words[i:i + 9]) for i in range(len(ref_words) - 8)}
    t = _table()
    texts = [c.meaning for c in t.codes.values()] + [c.advice for c in t.codes.values()]
    texts += [m for pair in t.extended.values() for m in pair]
    for text in texts:
        words = re.findall(r"[a-z0-9']+", text.lower())
        for i in range(len(words) - 8):
            assert " ".join(words[i:i + 9]) not in grams, text


def _setupdiag_chunks():
    p = shared_path("logs", "setupdiag_output_samples.txt")
    chunks = re.split(r"^# SOURCE \d+:.*$", p.read_text(encoding="utf-8"), flags=re.M)[1:]
    return [strip_annotations(c) for c in chunks]


def test_real_setupdiag_outputs():
    one, two, three, four = (parse_setupdiag(TextLines(c)) for c in _setupdiag_chunks())
    assert (one.profile, one.profile_guid, one.version) == (
        "OptionalComponentOpenPackageFailed", "22952520-EC89-4FBD-94E0-B67DF88347F6", "1.6.1.0")
    assert one.last_phase == "Safe OS" and one.last_operation == "Gather Optional Component status"
    assert one.error.result == 0x8007001F and one.system_info["HostOSVersion"] == "10.0.19041"
    assert two.profile == "FindRollbackFailure" and two.last_phase == "Pre OOBE"
    assert (two.error.result, two.error.extend.value) == (0xC1900101, 0x4001E)
    assert two.last_operation == "Gather end install, scope: EVERYTHING"
    assert three.format == "xml" and three.profile == "FindRollbackFailure"       # cut XML is salvaged
    assert (three.error.result, three.error.extend.value) == (0xC1900101, 0x40017)
    assert three.last_phase == "Post First Boot"
    assert three.details["LastOperation"] == "Ensure suspended services are stopped"
    assert four.matched is False and four.profile == ""


def test_setupdiag_utf16_xml_and_json():
    xml = ('<?xml version="1.0" encoding="utf-16"?>\n<SetupDiag xmlns="https://learn.microsoft.com/windows/'
           'deployment/upgrade/setupdiag"><Version>1.7.0.0</Version><ProfileName>FindSPFatalError</ProfileName>'
           '<FailureDetails>Err = 0x00000057, LastOperation = Gather data, LastPhase = Downlevel</FailureDetails>'
           '</SetupDiag>')
    r = parse_setupdiag(b"\xff\xfe" + xml.encode("utf-16-le"))
    assert (r.format, r.profile, r.version, r.last_phase, r.error.result) == (
        "xml", "FindSPFatalError", "1.7.0.0", "Downlevel", 0x57)
    j = parse_setupdiag(b'{"ProfileName": "FindRollbackFailure", "FailureDetails": '
                        b'"RollbackErrorCode = 0xC1900101, ExtendedCode = 0x40017, LastPhase = Post First Boot"}')
    assert j.format == "json" and j.error.extend.operation_name == "BOOT"
    with pytest.raises(Exception) as ei:
        parse_setupdiag(b"{not json")
    assert type(ei.value).__name__ == "TextParseError"


def test_real_rollback_samples():
    p = shared_path("logs", "rollback_folder_and_wer_samples.txt")
    text = p.read_text(encoding="utf-8")
    ini = parse_setup_ini(TextLines(text))
    assert ini.current_phase == "FirstBoot,Start" and ini.values["SourceOSVersion"] == "10.0.17763"
    events = parse_wer_setup_events(TextLines(text))
    assert len(events) == 2
    a, b = events
    assert a.event_name == "WinSetupDiag02" and a.outcome == "Failure" and a.architecture == "AMD64"
    assert (a.result.result, a.result.extend.value) == (0x80070005, 0x50015)
    assert a.source_build == "17134 rs4_release" and a.target_build == "18362 19h1_release"
    assert len(a.attached_files) == 5 and a.attached_files[0].endswith("SetupAct.log")
    assert b.outcome == "Success" and len(b.attached_files) == 6
