"""Module verdicts: database hits and reasoned heuristics for unknown modules."""
from __future__ import annotations

import csv

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import SHARED
from dumpkit.analysis.kb import KnowledgeBase
from dumpkit.analysis.modules import ModuleInfo, classify_module, remediation_for


def test_database_verdicts():
    lwf = classify_module("lwfmgr.sys")
    assert lwf.source == "database" and lwf.role == "culprit" and lwf.in_box is False
    assert lwf.category == "NDIS lightweight filter" and lwf.service == "lwfmgr"
    assert any("Start" in s and "lwfmgr" in s for s in lwf.remediation)
    ks = classify_module(r"\SystemRoot\system32\DRIVERS\ks.sys")
    assert ks.name == "ks.sys" and ks.role == "victim" and ks.in_box and "camera" in ks.blame_instead
    nt = classify_module("ntkrnlmp.exe")
    assert nt.vendor == "Microsoft" and nt.category == "OS core" and nt.role == "victim"
    amd = classify_module("amdppm.sys")
    assert amd.vendor == "Microsoft" and amd.in_box and amd.category == "power management"
    vw = classify_module("vwifimf.sys")
    assert vw.vendor == "Microsoft" and vw.category == "NDIS lightweight filter"


def test_database_warns_on_foreign_company():
    i = classify_module("ndis.sys", version_info={"CompanyName": "Evil Corp"})
    assert i.source == "database" and "Evil Corp" in i.notes


def test_heuristic_version_info_microsoft():
    i = classify_module("newthing.sys", version_info={"CompanyName": "Microsoft Corporation"})
    assert i.source == "heuristic" and i.in_box is True and i.vendor == "Microsoft" and i.role == "victim"
    assert "CompanyName" in i.reason


def test_heuristic_third_party_company_and_paths():
    i = classify_module("acme.sys", r"\SystemRoot\System32\drivers\acme.sys", {"CompanyName": "ACME Ltd."})
    assert i.in_box is False and i.vendor == "ACME Ltd." and i.role == "culprit"
    i = classify_module("acme.sys", r"\SystemRoot\System32\DriverStore\FileRepository\acme.inf_amd64_0123abcd\acme.sys")
    assert i.in_box is False and "acme.inf_amd64_0123abcd" in i.reason
    i = classify_module("acme.sys", r"\??\C:\Program Files\ACME\acme.sys")
    assert i.in_box is False and "outside the Windows folder" in i.reason
    i = classify_module("acme.sys", r"\SystemRoot\System32\drivers\acme.sys")
    assert i.in_box is None and i.role == "culprit" and "proves nothing" in i.reason
    # disabling the service is not generic advice: the engine adds it only for boot-time loads / upgrades
    assert not any("Start=4" in s for s in i.remediation) and any("acme.sys" in s for s in i.remediation)


def test_heuristic_names():
    i = classify_module("usbxhci.sys")
    assert i.in_box and i.vendor == "Microsoft"
    i = classify_module("nvvhci.sys")
    assert i.vendor == "NVIDIA" and i.role == "culprit"
    i = classify_module("completelyunknown.sys")
    assert i.vendor.startswith("unknown") and i.in_box is None and "treated as third-party" in i.reason


def test_remediation_for_filter_categories():
    info = ModuleInfo("f.sys", "X", "", "NDIS lightweight filter", "culprit", "fsvc", False, "", [], "heuristic", "")
    steps = remediation_for(info)
    assert any("Unbind" in s for s in steps) and any("f.sys" in s and "X" in s for s in steps)
    # disabling the service (Start=4) is added by the engine only for boot-time loads and upgrades
    assert not any("Start=4" in s for s in steps)


# rows the reference itself marks unverified are deliberately left out of modules.toml
UNVERIFIED = {"rtf64x64.sys"}


def test_drivers_tsv_rows_kept():
    """Every single-file driver of the reference table that we keep resolves, with its vendor."""
    p = SHARED / "reference" / "drivers.tsv"
    if not p.exists():
        pytest.skip("drivers.tsv not present")
    kb = KnowledgeBase.load()
    rows = list(csv.DictReader(open(p, encoding="utf-8"), delimiter="\t"))
    missing = []
    for r in rows:
        for name in r["driver"].split(" / "):
            name = name.strip()
            if "*" in name or "/" in name or not name.lower().endswith((".sys", ".exe", ".dll")):
                continue
            if kb.module(name) is None and name not in UNVERIFIED:
                missing.append(name)
    assert not missing, missing


@settings(max_examples=100, deadline=1000)
@given(name=st.text(max_size=40), path=st.none() | st.text(max_size=80),
       vi=st.none() | st.dictionaries(st.sampled_from(["CompanyName", "ProductName", "x"]), st.text(max_size=20)))
def test_never_crashes(name, path, vi):
    i = classify_module(name or "x", path, vi)
    assert i.role in ("victim", "culprit") and i.source in ("database", "heuristic") and i.reason
