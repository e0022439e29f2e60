"""A user's analyzers.toml in a knowledge-base overlay folder (--kb DIR / DUMPKIT_KB_PATH) adds or
replaces per-bug-check analyzers; a malformed one is a KnowledgeBaseError naming the file and entry."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import dumpkit
from dumpkit.analysis import kb_overlay
from dumpkit.analysis.analyzers import AnalyzerTable, Facts, evaluate
from dumpkit.analysis.bucket import failure_bucket_id
from dumpkit.analysis.kb import KnowledgeBase, KnowledgeBaseError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "fixtures" / "samples" / "case2_lwfmgr.dmp"

MINE = '''schema = 1

[[override]]
name = "memory_corruption_one_bit"          # replaces the shipped override of that name
when = { field = "MEMORY_CORRUPTOR", field_value = "ONE_BIT" }
bucket = "CONTOSO_BAD_DIMM"
culprit = "hardware"
module = "hardware"
image = "memory_corruption"

[[analyzer]]
codes = ["0xE2"]                             # a code the shipped table has no analyzer for
  [[analyzer.case]]
  bucket = "MANUAL_CRASH_{followup}"

[[analyzer]]
codes = ["0x7E"]                             # replaces the shipped 0x7E/0x8E analyzer for 0x7E only
context = "cxr_param"
fault_instruction = true
  [[analyzer.case]]
  bucket = "CONTOSO_0x{code}_{followup}"
'''


@pytest.fixture
def overlay(tmp_path, monkeypatch):
    d = tmp_path / "kb"
    d.mkdir()
    (d / "analyzers.toml").write_text(MINE, encoding="utf-8")
    monkeypatch.setattr(kb_overlay, "SESSION_DIRS", [])
    monkeypatch.delenv(kb_overlay.ENV_VAR, raising=False)
    return d


def test_overlay_adds_and_replaces(overlay, monkeypatch):
    shipped = AnalyzerTable.load()
    mine = AnalyzerTable.load(overlays=[overlay])
    assert mine.sources[-1] == str(overlay / "analyzers.toml") and shipped.sources == [mine.sources[0]]
    assert evaluate(Facts(code=0xE2, followup="nt!KeBugCheckEx"), mine).bucket == "MANUAL_CRASH_nt!KeBugCheckEx"
    assert evaluate(Facts(code=0x1000007E, parameters=[0xC0000005, 0, 0, 0], exception_code=0xC0000005,
                          followup="lwfmgr!f"), mine).bucket == "CONTOSO_0x7E_lwfmgr!f"
    # 0x8E keeps the shipped analyzer (the user's entry lists 0x7E only), the rest of the table is intact
    assert mine.for_code(0x8E) == shipped.for_code(0x8E) and mine.for_code(0x9F) == shipped.for_code(0x9F)
    one_bit = Facts(code=0x1A, parameters=[0x41792, 0, 0, 0], fields={"MEMORY_CORRUPTOR": "ONE_BIT"})
    assert evaluate(one_bit, mine).bucket == "CONTOSO_BAD_DIMM"
    assert evaluate(one_bit, shipped).bucket == "MEMORY_CORRUPTION_ONE_BIT"
    assert [c.name for c in mine.overrides].count("memory_corruption_one_bit") == 1


def test_environment_and_session_folders_apply_by_default(overlay, monkeypatch):
    assert failure_bucket_id(0xE2, [0, 0, 0, 0], "nt", "KeBugCheckEx") == "0xE2_nt!KeBugCheckEx"
    monkeypatch.setenv(kb_overlay.ENV_VAR, str(overlay))
    assert failure_bucket_id(0xE2, [0, 0, 0, 0], "nt", "KeBugCheckEx") == "MANUAL_CRASH_nt!KeBugCheckEx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = dumpkit.analyze(SAMPLE)          # 0x1000007E in lwfmgr: the user's 0x7E analyzer
    assert a.failure_bucket_id.startswith("CONTOSO_0x7E_")
    # a folder holding only analyzers.toml is a valid overlay for the knowledge base too
    assert str(overlay / "analyzers.toml") in KnowledgeBase.load().overlays


def test_malformed_overlay_names_file_and_entry(overlay, monkeypatch):
    (overlay / "analyzers.toml").write_text(MINE.replace('culprit = "hardware"', 'culprit = "gremlins"'),
                                            encoding="utf-8")
    with pytest.raises(KnowledgeBaseError) as ei:
        AnalyzerTable.load(overlays=[overlay])
    msg = str(ei.value)
    assert "analyzers.toml" in msg and "override 0" in msg and "'gremlins'" in msg
    assert ei.value.path == str(overlay / "analyzers.toml")
    with pytest.raises(KnowledgeBaseError, match="analyzers.toml: analyzer 1"):
        (overlay / "analyzers.toml").write_text(MINE.replace('codes = ["0x7E"]', 'codes = []'), encoding="utf-8")
        KnowledgeBase.load(overlays=[overlay])           # the knowledge base validates the folder's file too
    from dumpkit.cli.main import main
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["analyze", str(SAMPLE), "--summary", "--kb", str(overlay)]) == 3
