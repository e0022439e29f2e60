"""dumpkit.analyze end to end: from a dump (real and compiler-built) and from text."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import dumpkit
from fixtures import emulate

from .conftest import shared_path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "fixtures" / "samples" / "case2_lwfmgr.dmp"
DRIVERS = ROOT / "fixtures" / "drivers" / "bin"


@pytest.fixture(scope="module")
def case2():
    return dumpkit.analyze(SAMPLE)


def test_case2_sample_matches_the_seed_case(case2):
    # the values the engineers' WinDbg gave for the real case (cases.md, classify.md)
    assert case2.failure_bucket_id == "AV_lwfmgr!unknown_function"
    assert case2.failure_id_hash == "{98a1e719-bb08-86f7-3821-f56b482ab48e}"
    assert case2.module_name == "lwfmgr" and case2.image_name == "lwfmgr.sys"
    assert case2.culprit.module.lower() == "lwfmgr.sys"
    assert any(v.module.lower() == "ndis.sys" for v in case2.victims)
    text = " ".join(case2.remediation)
    assert "Services\\lwfmgr" in text and "Start" in text and "4" in text and "vwifimf" in text


def test_case2_fault_is_what_the_source_does(case2):
    # ndislike.c reads [stale handle + 8]; the emulator recorded the address
    em = emulate.run_case2(0)
    assert case2.fault.access == "read"
    assert case2.fault.address == em.fault["address"] == 0xFFFFC70DEADBE0A8
    assert case2.fault.register == "rcx"
    assert case2.bugcheck_code == 0x7E


def test_case2_with_pdbs_names_the_load_path():
    a = dumpkit.analyze(SAMPLE, symbol_path=str(DRIVERS))
    assert a.failure_bucket_id == "AV_lwfmgr!LwfDetach"     # with symbols, the function replaces unknown_function
    assert "IopLoadDriver" in (a.load_context or "")
    assert a.followup_frame is not None and a.followup_frame.call_site.startswith("lwfmgr!LwfDetach+0x")


def test_json_contract(case2):
    j = json.loads(json.dumps(case2.to_json()))
    for key in ("bugcheck", "failure_bucket_id", "failure_id_hash", "module_name", "image_name", "symbol_name",
                "process_name", "fault", "culprit", "victims", "remediation", "schema_version"):
        assert key in j, key
    assert j["bugcheck"]["code"] == "0x7e"
    assert set(j["culprit"]) >= {"module", "vendor", "category", "reason"}
    assert all(p.startswith("0x") and p == p.lower() for p in j["bugcheck"]["parameters"])


def test_real_triage_dump_end_to_end():
    dmp = shared_path("dumps", "triage_x64.dmp")
    store = shared_path("symstore")
    a = dumpkit.analyze(dmp, symbol_path=str(store))
    # triage_x64.expected.md: access violation in amdppm!WriteIoMemRawEx+0x70, culprit amdppm.sys,
    # Wdf01000 and nt as callers
    assert a.bugcheck_code == 0x1000007E
    assert a.failure_bucket_id == "AV_amdppm!WriteIoMemRawEx"
    assert a.symbol_name == "amdppm!WriteIoMemRawEx+70"
    assert a.culprit.module.lower() == "amdppm.sys"
    callers = " ".join(str(c) for c in a.callers).lower()
    assert "wdf01000" in callers and ("ntkrnlmp" in callers or "ntoskrnl" in callers)
    assert a.fault.ip == 0xFFFFF8048B58334C


def test_analyze_accepts_text_and_paths(tmp_path):
    p = ROOT / "tests" / "data" / "text" / "case2_stack.txt"
    a1 = dumpkit.analyze(p)
    a2 = dumpkit.analyze(p.read_text(encoding="utf-8"))
    assert a1.failure_bucket_id == a2.failure_bucket_id == "AV_lwfmgr!unknown_function"
    with pytest.raises(dumpkit.DumpError):
        dumpkit.analyze(tmp_path)
