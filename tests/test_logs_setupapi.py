"""setupapi.dev.log / setupapi.setup.log parsing on the real plaso logs, the doc failure excerpts and case 2."""
from __future__ import annotations

from datetime import datetime

from dumpkit.logs import TextLines, iter_setupapi_sections, parse_setupapi

from ._logs_util import DATA, strip_annotations
from .conftest import shared_path

CASE2 = DATA / "case2_setupapi.dev.log"


def test_real_dev_log_counts():
    # truth from grep on the file: 194 '>>>  [' headers, 194 starts, 194 ends,
    # 191 'Exit status: SUCCESS', 3 'SUCCESS (REBOOT_REQUIRED)' (all 'Install Driver Updates'),
    # 180 '!    ' warning lines, no '!!!' lines, 12 boot sessions, CRLF ANSI text
    log = parse_setupapi(shared_path("logs", "full", "plaso_test_data_setupapi.dev.log"))
    assert log.kind == "dev"
    assert len(log.sections) == 194 and all(s.complete for s in log.sections)
    assert log.status_counts == {"SUCCESS": 191, "SUCCESS (REBOOT_REQUIRED)": 3}
    assert log.failures == []
    assert sum(len(s.warnings) for s in log) == 180
    assert sum(len(s.errors) for s in log) == 0
    assert len(log.boot_sessions) == 12 and log.log_headers == 1
    assert log.header["OS Version"] == "10.0.10240" and log.header["Architecture"] == "amd64"
    assert log.unparsed_lines == 0
    reboot = [s for s in log if s.qualifier == "REBOOT_REQUIRED"]
    assert {s.title for s in reboot} == {"Install Driver Updates"}
    first = log.sections[0]
    assert first.title == "Device Install (Hardware initiated)"
    assert first.instance == "SWD\\IP_TUNNEL_VBUS\\ISATAP_0"
    assert first.start == datetime(2015, 11, 22, 17, 59, 28, 110000)
    assert first.boot_session == datetime(2015, 11, 22, 17, 58, 3, 498000)
    assert "tunnel" in first.service_names and "nettun.inf" in first.infs and "tunnel.sys" in first.drivers
    # DelService / AddService lines (grep 'DelService=\|AddService=': 5 lines)
    refs = [r for s in log for r in s.services if r.action in ("delete", "add") and r.inf]
    assert len(refs) == 5
    vbox = [r for r in refs if r.name == "VBoxTray"][0]
    assert (vbox.action, vbox.inf, vbox.inf_line, vbox.line) == ("delete", "vboxguest.inf", 60, 362)
    assert [s.first_line for s in log.sections_mentioning("VBoxTray.exe")] == [172, 257]
    # the signature check that failed inside a successful section is kept as a failing scope
    sig = [sc for s in log for sc in s.scope_failures if sc.code == 0x800B0109]
    assert sig and sig[0].name == "_VERIFY_FILE_SIGNATURE"


def test_real_setup_log_counts():
    log = parse_setupapi(shared_path("logs", "full", "plaso_test_data_setupapi.setup.log"))
    assert log.kind == "setup"
    assert len(log) == 16 and log.status_counts == {"SUCCESS": 16}      # grep: 16 headers, 16 SUCCESS
    assert log.sections[0].title == "Sysprep Specialize"


def test_real_failure_excerpts():
    p = shared_path("logs", "setupapi.dev.log__failure_excerpts.txt")
    log = parse_setupapi(TextLines(strip_annotations(p.read_text(encoding="utf-8")), p.name))
    assert [s.exit_code for s in log.failures] == [0xC1900101, 0x207, 0xE0000248, 0xE0000244]
    a, b, c, d = log.failures
    assert a.title == "Device Install (UpdateDriverForPlugAndPlayDevices)" and a.start.year == 2023
    assert [w.text for w in a.warnings][0].startswith("No better matching drivers")
    assert a.explain_exit().name == "MOSETUP_E_SETUP_PLATFORM"
    assert b.errors[0].text.endswith("HRESULT = 0x800f0207") and b.explain_exit().name == "SPAPI_E_DEVINST_ALREADY_EXISTS"
    assert c.headless and [sc.code for sc in c.scope_failures] == [0xE0000248] * 3
    assert len(c.errors) == 4 and c.explain_exit().name == "SPAPI_E_DEVICE_INSTALL_BLOCKED"
    assert d.title == "SetupVerifyInfFile" and d.end is None and len(d.warnings) == 2


def test_case2_excerpt():
    log = parse_setupapi(CASE2)
    assert len(log.failures) == 2
    lw, vw = log.failures
    assert lw.headless and not lw.truncated
    assert lw.exit_code == 0x80071A2D and lw.explain_exit().name == "ERROR_TRANSACTION_NOT_ACTIVE"
    assert lw.end == datetime(2022, 5, 5, 16, 18, 32, 182000)
    assert lw.service_names == ["lwfmgr"] and [r.action for r in lw.services] == ["delete", "deleted"]
    assert (lw.services[0].inf, lw.services[0].inf_line) == ("lwfmgr.inf", 82)
    assert lw.mentions("lwfmgr.sys") and lw.mentions("LWFMGR") and not lw.mentions("vwifimf")
    assert vw.service_names == ["vwifimf"] and vw.end == datetime(2022, 5, 5, 16, 18, 39, 212000)
    assert "FAILURE(0x80071a2d)" in repr(lw) and "lwfmgr" in repr(lw)


def test_truncated_section_is_kept():
    text = CASE2.read_text()
    head = ">>>  [Device Install (DiInstallDriver) - C:\\x\\lwfmgr.inf]\n>>>  Section start 2022/05/05 16:18:30.000\n"
    log = parse_setupapi(TextLines(head + text.split("<<<")[0]))        # cut before the section end
    (s,) = log.sections
    assert s.truncated and not s.headless and s.status is None
    assert s.title == "Device Install (DiInstallDriver)" and "lwfmgr.inf" in s.infs
    assert s.service_names == ["lwfmgr"] and s.body                       # body of a cut section is kept
    # streaming gives the same sections
    assert [x.first_line for x in iter_setupapi_sections(TextLines(head + text))] == [1, 10]


def test_old_style_markers_and_wrapped_log():
    text = ("[Device Install Log]\n     OS Version = 6.1.7601\n[BeginLog]\n"
            ">>>  [Old Style]\n>>>  2005/02/13 22:06:28.109: Section start\n     dvi: hello\n"
            "<<<  [2005/02/13 22:06:29.000: Section end]\n<<<  [Exit Status(0x00000000)]\n"
            ">>>  [Cut by wrap]\n     inf: x\n"
            "[Device Install Log]\n     OS Version = 6.1.7601\n[BeginLog]\n")
    log = parse_setupapi(TextLines(text))
    old, cut = log.sections
    assert old.start == datetime(2005, 2, 13, 22, 6, 28, 109000) and old.end.second == 29
    assert old.status == "SUCCESS" and old.exit_code == 0
    assert cut.truncated and log.log_headers == 2
