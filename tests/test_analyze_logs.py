"""The two seed cases end to end: the crash (dump or pasted text) together with the setup logs."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import dumpkit

DATA = Path(__file__).resolve().parent / "data"
SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "samples" / "case2_lwfmgr.dmp"


@pytest.fixture
def case_folder(tmp_path):
    """The logs where the engineers found them."""
    (tmp_path / "Windows" / "INF").mkdir(parents=True)
    (tmp_path / "Windows" / "Panther" / "UnattendGC").mkdir(parents=True)
    shutil.copy(DATA / "logs" / "case2_setupapi.dev.log", tmp_path / "Windows" / "INF" / "setupapi.dev.log")
    shutil.copy(DATA / "logs" / "case1_unattendgc_setupact.log",
                tmp_path / "Windows" / "Panther" / "UnattendGC" / "setupact.log")
    return tmp_path


def test_case2_dump_and_setupapi_name_the_same_module(case_folder):
    a = dumpkit.analyze(SAMPLE, logs=case_folder)
    first = a.correlations[0]
    assert first.kind == "module-in-failing-setupapi" and first.module.lower().startswith("lwfmgr")
    assert "FAILURE(0x80071A2D)" in first.summary
    assert any(c.module.lower().startswith("vwifimf") for c in a.correlations)
    assert "DUMPKIT_SETUP_LOGS" in a.render_text()
    assert a.to_json(extended=True)["extended"]["correlations"][0]["kind"] == "module-in-failing-setupapi"


def test_case1_text_and_unattendgc_tell_one_story(case_folder):
    a = dumpkit.analyze(DATA / "text" / "case1_mail.txt", logs=case_folder)
    kinds = [c.kind for c in a.correlations]
    assert "missing-driver-path" in kinds and "time-window" in kinds
    window = next(c for c in a.correlations if c.kind == "time-window")
    # cases.md: the dump time 08:07:55 falls between the 08:07:23 PnpUnattend error and 08:08:34
    assert "08:07:23" in window.summary and "08:08:34" in window.summary
    missing = next(c for c in a.correlations if c.kind == "missing-driver-path")
    assert "C:\\DRIVERS\\STORE1" in missing.summary


def test_a_single_log_under_any_name_is_recognised():
    a = dumpkit.analyze(DATA / "text" / "case2_stack.txt", logs=DATA / "logs" / "case2_setupapi.dev.log")
    assert a.correlations and a.correlations[0].kind == "module-in-failing-setupapi"
