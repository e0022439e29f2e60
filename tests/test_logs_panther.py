"""Panther / UnattendGC / CBS / sysprep parsing on the case-1 lines and the real excerpts."""
from __future__ import annotations

from datetime import datetime

import pytest

from dumpkit.logs import TextLines, iter_panther, lookup_code, parse_panther

from ._logs_util import DATA, strip_annotations
from .conftest import shared_path

CASE1 = DATA / "case1_unattendgc_setupact.log"


def _real(name: str) -> TextLines:
    p = shared_path("logs", name)
    return TextLines(strip_annotations(p.read_text(encoding="utf-8")), name)


def test_case1_unattendgc():
    log = parse_panther(CASE1)
    assert log.decode.bom and log.decode.encoding == "utf-8"
    assert log.counts == {"Error": 6, "Info": 1}
    e = log.entries
    # wrapped Chinese message: the ')' line joins the first entry
    assert e[0].source == "PNPUNATTEND.EXE" and e[0].component == ""
    assert e[0].time == datetime(2023, 6, 26, 8, 2, 32)
    assert e[0].continued == 1 and e[0].message.endswith(")")
    assert "C:\\DRIVERS\\STORE1" in e[0].message
    assert e[0].codes == (0x3,)
    assert lookup_code(0x3).name == "ERROR_PATH_NOT_FOUND"
    assert e[1].source == "audit.exe" and e[1].codes == (0x8007045B,)
    assert e[1].explain()[0].name == "ERROR_SHUTDOWN_IN_PROGRESS"
    assert [x.codes for x in e[4:6]] == [(0x8030000C,), (0x8030000C,)]
    assert e[6].level == "Info" and e[6].message.startswith("[Action Queue]")
    assert (log.first_time, log.last_time) == (datetime(2023, 6, 26, 8, 2, 32), datetime(2023, 6, 26, 8, 8, 34))
    assert log.writers == {"PNPUNATTEND.EXE": 2, "audit.exe": 5}
    assert "PNPUNATTEND.EXE" in repr(e[0]) and "6 errors" in repr(log)


def test_keep_problems_and_streaming():
    log = parse_panther(CASE1, keep="problems")
    assert len(log.entries) == 6 and log.dropped == 1 and log.total == 7
    assert [x.line for x in iter_panther(CASE1)] == [1, 3, 4, 6, 7, 8, 9]


def test_fixed_columns_and_collapsed_forms():
    text = TextLines(
        "2024-03-07 22:26:20, Error      [0x0f0070] SYSPRP RunDlls:An error occurred; dwRet = 0x5\n"
        "2019-02-11 12:51:51, Error                 CBS    Failed. [HRESULT = 0x800f0950 - CBS_E_INVALID_WINDOWS_UPDATE_COUNT]\n"
        "2019-06-23 20:11:33, Error MOUPG CSetupHost::Execute(412): Result = 0x800705BB\n"
        "2021-12-08 04:23:00, Error                 MOUPG  CDlpActionFinalize::X(1192): Result = 0xC1900101[gle=0x8007000d]\n"
        "2023-09-08 09:23:50, Fatal Error           SP     boom\n")
    e = parse_panther(text).entries
    assert (e[0].message_id, e[0].component, e[0].codes) == (0x0F0070, "SYSPRP", (0x5,))
    assert e[1].hresult_name == "CBS_E_INVALID_WINDOWS_UPDATE_COUNT" and e[1].codes == (0x800F0950,)
    assert e[2].component == "MOUPG" and e[2].message.startswith("CSetupHost")
    assert e[3].gle == 0x8007000D and e[3].codes == (0xC1900101,)
    assert e[4].level == "Fatal Error" and e[4].is_error


def test_real_panther_excerpts():
    # counts taken with grep on the file (annotation lines removed):
    # 41 timestamped + 23 "mm:ss," + 8 timestamp-less "Info SP" lines = 72; 32 errors; 1 warning
    log = parse_panther(_real("panther_setupact_setuperr_excerpts.txt"))
    assert log.total == 72
    assert log.counts["Error"] == 32 and log.counts["Warning"] == 1
    crash = log.crashes[0]
    assert crash.code == 0x7E and crash.module == ""
    assert crash.parameters == [0xFFFFFFFFC0000005, 0xFFFFF8015BC0036A, 0xFFFFD000E5D23728, 0xFFFFD000E5D22F40]
    pairs = [(r.result, r.extend.value) for _, r in log.results]
    assert (0xC1900101, 0x50016) in pairs
    remap = [x for x in log.entries if "Remapping disk full" in x.message][0]
    assert remap.codes == (0x80070070, 0xC19001DF) and remap.component == "MOUPG"
    sp = [x for x in log.entries if x.component == "SP" and x.message.startswith("Operation failed")]
    assert sp and sp[0].codes[0] == 0x8007042B and sp[0].gle == 0xB7


def test_real_unattendgc_excerpts():
    log = parse_panther(_real("unattendgc_setupact_setuperr_excerpts.txt"))
    # 7 timestamped lines (1 Error) from the 2014 block, 5 "Error [x.exe]" lines, 13 "[x.exe]" lines
    assert sum(1 for e in log.entries if e.time) == 7
    assert log.counts["Error"] == 1 + 5
    smi = [e for e in log.entries if "RunSMIPass" in e.message]
    assert smi[0].source == "oobeldr.exe" and smi[0].codes == (0x8030000C,)
    assert lookup_code(0x8030000C).kind == "unattend"
    audit = [e for e in log.entries if e.source == "audit.exe"]
    assert len(audit) == 3 and audit[1].codes == (0x800708C5,)
    assert lookup_code(0x800708C5).name == "NERR_PasswordTooShort"
    # the SMI dump wraps over indented lines that join the entry
    first = [e for e in log.entries if e.message.startswith("SMI data results dump: Source")][0]
    assert first.continued == 2 and "/settings/AdministratorPassword" in first.message


def test_real_cbs_and_sysprep():
    cbs = parse_panther(_real("cbs_log_excerpts.txt"), kind="cbs")
    assert cbs.total == 14 and cbs.counts["Error"] == 3
    names = [e.hresult_name for e in cbs.entries if e.hresult_name]
    assert names.count("CBS_E_INVALID_WINDOWS_UPDATE_COUNT") == 3 and "ERROR_FILE_NOT_FOUND" in names
    assert sum(e.csi_failure for e in cbs.entries) == 2
    sp = parse_panther(_real("sysprep_setupact_excerpts.txt"))
    assert sp.total == 18 and sp.counts["Error"] == 7
    assert all(e.component == "SYSPRP" for e in sp.entries)
    assert [e.message_id for e in sp.entries if e.message_id][:2] == [0x0F0070, 0x0F00A8]


@pytest.mark.parametrize("keep", ["bad"])
def test_bad_keep_argument(keep):
    with pytest.raises(ValueError):
        parse_panther(CASE1, keep=keep)
