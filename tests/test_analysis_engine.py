"""The analysis engine end to end from pasted text, and the report renderers.

Truth: the seed cases (shared/seeds/cases.md, pasted texts in tests/data/text) and the four real
!analyze -v outputs in ../shared/data/real/analyze, fed with their conclusion lines removed:
dumpkit must reach WinDbg's MODULE_NAME, IMAGE_NAME, FAILURE_BUCKET_ID and FAILURE_ID_HASH.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import shared_path
from dumpkit.analysis.engine import SCHEMA_VERSION, Analysis, analyze_parts, analyze_text, infer_bugcheck
from dumpkit.errors import TextParseError
from dumpkit.model import Context, Frame, Module
from dumpkit.report import render_json, render_summary, render_text
from dumpkit.text import parse_stack

DATA = Path(__file__).parent / "data" / "text"
CONTRACT_KEYS = {"bugcheck", "failure_bucket_id", "failure_id_hash", "module_name", "image_name", "symbol_name",
                 "process_name", "fault", "culprit", "victims", "remediation", "crash_time", "uptime_seconds",
                 "os_build", "schema_version"}
HEX_RE = re.compile(r"^0x[0-9a-f]+$")


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# --- seed case 2 ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def case2() -> Analysis:
    return analyze_text(read("case2_stack.txt") + "\n" + read("case2_setupapi.txt"))


def test_case2_bucket_and_hash(case2):
    assert case2.failure_bucket_id == "AV_lwfmgr!unknown_function"
    assert case2.failure_id_hash == "{98a1e719-bb08-86f7-3821-f56b482ab48e}"
    assert (case2.module_name, case2.image_name, case2.symbol_name) == ("lwfmgr", "lwfmgr.sys", "lwfmgr+5167")
    assert case2.bugcheck_code == 0x7E and case2.bugcheck_inferred


def test_case2_culprit_victim_and_context(case2):
    assert case2.culprit.module == "lwfmgr.sys"
    assert case2.culprit.category == "NDIS lightweight filter"
    assert [v.module for v in case2.victims] == ["ndis.sys"]
    assert "NdisFDeregisterFilterDriver" in case2.victims[0].reason
    assert "IopInitializeSystemDrivers" in (case2.load_context or "")
    assert "IopLoadDriver" in case2.culprit.reason
    assert case2.fault.kind == "access_violation"
    assert case2.fault.symbol == "ndis!NdisFDeregisterFilterDriver+0x47"


def test_case2_remediation_order(case2):
    rem = case2.remediation
    i_lwf = next(i for i, r in enumerate(rem) if "Services\\lwfmgr" in r or ("lwfmgr" in r and "Start" in r))
    i_start = next(i for i, r in enumerate(rem) if "Start" in r and "4" in r)
    i_vwifi = next(i for i, r in enumerate(rem) if "vwifimf" in r)
    assert i_lwf <= i_start < i_vwifi
    assert "roll" in rem[i_vwifi]


def test_case2_stack_alone_still_blames_lwfmgr():
    a = analyze_text(read("case2_stack.txt"))
    assert a.failure_bucket_id == "AV_lwfmgr!unknown_function"
    assert a.culprit.module == "lwfmgr.sys"
    assert any("Start" in r and "lwfmgr" in r for r in a.remediation)


# --- seed case 1 ---------------------------------------------------------------------------------------
def test_case1_null_lock_points_past_ks():
    a = analyze_text(read("case1_mail.txt"))
    f = a.fault
    assert f.kind == "null_lock" and f.register == "rbx" and f.address == 0
    assert "KeAcquireSpinLockRaiseToDpc" in f.explanation and "NULL" in f.explanation
    assert a.culprit.module is None or a.culprit.module != "ks.sys"
    assert "camera" in (a.culprit.reason + " ".join(a.remediation)).lower()
    assert any(v.module == "ks.sys" for v in a.victims)
    assert any("camera" in r.lower() for r in a.remediation)
    assert a.debug_session_time.startswith("Mon Jun 26 08:07:55.743 2023")
    assert a.system_uptime == "0 days 0:00:40.641"


def test_case1_instruction_only():
    a = analyze_text(read("case1_fault.txt"))
    assert a.fault.kind == "null_lock" and a.fault.register == "rbx"
    assert a.bugcheck_code is None and a.frames == []


# --- the four real reports with their conclusions removed -------------------------------------------------
_CONCLUSION = re.compile(r"^\s*(MODULE_NAME|IMAGE_NAME|SYMBOL_NAME|FAILURE_BUCKET_ID|FAILURE_ID_HASH\w*|FOLLOWUP_\w+|"
                         r"BUCKET_ID\w*|PRIMARY_PROBLEM_CLASS|DEFAULT_BUCKET_ID|FAULTING_MODULE|IMAGE_VERSION|"
                         r"Followup)\s*:")


def strip_conclusions(text: str) -> str:
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        ln = lines[i]
        if re.match(r"^\s*Key\s*:\s*Failure\.", ln):        # Failure.Bucket / Failure.Hash key-value pairs
            i += 2 if i + 1 < len(lines) and re.match(r"^\s*Value\s*:", lines[i + 1]) else 1
            continue
        if not _CONCLUSION.match(ln):
            out.append(ln)
        i += 1
    return "\n".join(out)


REAL = ["01_0x7E_AV_EvilDriver_unknown_function.txt", "02_0xD1_AV_myfault_notmyfault.txt",
        "03_0x50_AV_W_null_Driver.txt", "04_0x139_INVALID_BALANCED_TREE.txt"]


def _windbg(text: str, key: str) -> str:
    return re.search(rf"^{key}:\s+(\S+)", text, re.M).group(1)


@pytest.mark.parametrize("name", REAL)
def test_real_reports_without_conclusions(name):
    text = shared_path("analyze", name).read_text(encoding="utf-8")
    stripped = strip_conclusions(text)
    assert "FAILURE_BUCKET_ID" not in stripped and "Failure.Bucket" not in stripped and "MODULE_NAME" not in stripped
    a = analyze_text(stripped)
    assert a.module_name == _windbg(text, "MODULE_NAME")
    assert a.image_name == _windbg(text, "IMAGE_NAME")
    assert a.symbol_name == _windbg(text, "SYMBOL_NAME")
    assert a.failure_bucket_id == _windbg(text, "FAILURE_BUCKET_ID")
    assert a.failure_id_hash == _windbg(text, "FAILURE_ID_HASH")
    assert a.culprit.module == _windbg(text, "IMAGE_NAME")
    assert a.reported == {}
    # fed whole, the reported conclusions are kept and agree
    full = analyze_text(text)
    assert full.reported["FAILURE_BUCKET_ID"] == a.failure_bucket_id and full.mismatches() == {}


# --- the common core from parts (the path a dump reader takes) ----------------------------------------------
def test_analyze_parts_from_dump_like_parts():
    frames = parse_stack(read("case2_stack.txt"))
    mods = [Module("ntkrnlmp.exe", 0xfffff8040c800000, 0x1046000), Module("ndis.sys", 0xfffff8041c000000, 0x100000),
            Module("lwfmgr.sys", 0xfffff8041c7d0000, 0x12000, path="\\SystemRoot\\system32\\DRIVERS\\lwfmgr.sys")]
    # the trap context of the page fault: ndis read through a NULL rcx (bytes: mov rax,[rcx+10h])
    ctx = Context({"rcx": 0, "rip": 0xfffff8041c02a2b7}, source="trap_frame")
    a = analyze_parts(0x7E, [0xffffffffc0000005, 0xfffff8041c02a2b7, 0xffffec01df207c38, 0xffffec01df207470],
                      frames, modules=mods, context=ctx, fault_bytes=bytes.fromhex("488b4110"), process_name="System",
                      exception={"code": 0xc0000005, "parameter1": 0, "parameter2": 0x10})
    assert a.failure_bucket_id == "AV_lwfmgr!unknown_function" and not a.bugcheck_inferred
    assert a.image_name == "lwfmgr.sys" and a.confidence == "high"
    assert a.fault.kind == "near_null_deref" and a.fault.register == "rcx" and a.fault.address == 0x10
    assert a.stack_command == ".cxr 0xffffec01df207470 ; kb"
    assert a.frames[0].image_name == "ntkrnlmp.exe"


def test_infer_bugcheck():
    code, exc, why = infer_bugcheck(parse_stack(read("case2_stack.txt")))
    assert code == 0x7E and exc == 0xC0000005 and "KiPageFault" in why


# --- output ------------------------------------------------------------------------------------------------
def test_json_contract(case2):
    doc = json.loads(render_json(case2))
    assert set(doc) == CONTRACT_KEYS
    assert set(doc["bugcheck"]) == {"code", "name", "parameters"}
    assert set(doc["culprit"]) == {"module", "vendor", "category", "reason", "path", "base", "size", "timestamp",
                                   "version"}
    assert all(set(v) == {"module", "reason"} for v in doc["victims"])
    assert {"kind", "access", "address", "register", "instruction", "explanation"} <= set(doc["fault"])
    assert doc["schema_version"] == SCHEMA_VERSION
    assert HEX_RE.match(doc["bugcheck"]["code"])
    ext = case2.to_json(extended=True)
    assert set(ext) == CONTRACT_KEYS | {"extended"} and ext["extended"]["bugcheck_inferred"] is True


def test_json_hex_is_lowercase_strings():
    a = analyze_text(shared_path("analyze", REAL[0]).read_text())
    doc = a.to_json()
    assert doc["bugcheck"]["parameters"] == ["0xffffffffc0000005", "0xfffff8076624f3d4", "0xffffa1088a4aebf8",
                                             "0xffffa1088a4ae410"]
    assert doc["fault"]["address"] == "0x4141414141414139"


def test_text_report_keeps_windbg_order():
    text = shared_path("analyze", REAL[1]).read_text()
    out = render_text(analyze_text(strip_conclusions(text)))
    order = ["BUGCHECK_CODE:", "BUGCHECK_P1:", "PROCESS_NAME:", "TRAP_FRAME:", "STACK_TEXT:", "SYMBOL_NAME:",
             "MODULE_NAME:", "IMAGE_NAME:", "STACK_COMMAND:", "BUCKET_ID_FUNC_OFFSET:", "FAILURE_BUCKET_ID:",
             "FAILURE_ID_HASH:", "Followup:"]
    pos = [out.index(k) for k in order]
    assert pos == sorted(pos)
    for key in ("SYMBOL_NAME", "MODULE_NAME", "IMAGE_NAME", "FAILURE_BUCKET_ID", "FAILURE_ID_HASH"):
        assert _windbg(out, key) == _windbg(text, key)
    assert "DRIVER_IRQL_NOT_LESS_OR_EQUAL (d1)" in out


def test_summary(case2):
    s = render_summary(case2)
    assert "lwfmgr.sys" in s and "ndis.sys" in s and "Start" in s and "vwifimf" in s
    assert len(s.splitlines()) < 40


def test_garbage_raises_text_parse_error_only():
    with pytest.raises(TextParseError):
        analyze_text("Hi, the PC shows a blue screen every morning. Thanks!")


def test_triage_x64_expected_stack_through_the_core():
    """The real triage dump's stack as written in its .expected.md, fed to analyze_parts."""
    text = shared_path("dumps", "triage_x64.expected.md").read_text(encoding="utf-8")
    block = text.split("## Full stack", 1)[1].split("```")[1]
    frames = []
    for ln in block.strip().splitlines():
        m = re.match(r"([0-9a-f]{2}) ([0-9a-f]+) ([0-9a-f]+) (\S+)", ln)
        site = m.group(4)
        mod = site.split("!")[0].split("+")[0]
        sym = site.split("!")[1].split("+")[0] if "!" in site else None
        off = int(site.rsplit("+", 1)[1], 16) if "+" in site else 0
        frames.append(Frame(int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16), module=mod, symbol=sym,
                            offset=off, trust="cfi"))
    for i in range(len(frames) - 1):
        frames[i].return_address = frames[i + 1].instruction
    mods = [Module("ntoskrnl.exe", 0xfffff8047ba00000, 0x1046000), Module("Wdf01000.sys", 0xfffff80479950000, 0xd1000),
            Module("amdppm.sys", 0xfffff8048b580000, 0x3b000)]
    a = analyze_parts(0x1000007E, [0xffffffffc0000005, 0xfffff8048b58334c, 0, 0], frames, modules=mods,
                      context=Context({"rip": 0xfffff8048b58334c}), process_name="System")
    assert a.bugcheck.get("code") == "0x1000007e"
    assert a.symbol_name == "amdppm!WriteIoMemRawEx+70"
    assert a.failure_bucket_id == "AV_amdppm!WriteIoMemRawEx"
    assert a.culprit.module == "amdppm.sys"
    assert a.faulting_frame.symbol == "WriteIoMemRawEx"
    assert a.callers[:2] == ["Wdf01000.sys", "ntkrnlmp.exe"]
    assert a.victims == []
