"""dumpkit against real WinDbg ``!analyze -v`` outputs (tests/data/agreement/).

Truth from outside: each case's expected fields were transcribed from a public WinDbg output
(source in the case file).  The case's inputs are rendered back to WinDbg text without any
conclusion line and analysed by dumpkit; the conclusions must match WinDbg's, field by field
(legacy-engine cases: MODULE_NAME and IMAGE_NAME only).

Cases dumpkit does not agree on yet are listed in KNOWN_DISAGREEMENTS.txt with a reason and run
as strict xfails: fixing one makes its xfail pass, which fails the suite until the line is
removed from the list.
"""
from __future__ import annotations

import re

import pytest

from . import _agreement as A

CASES = A.load_cases()
KNOWN = A.known_disagreements()
IDS = [c["id"] for c in CASES]

REQUIRED = ("id", "source", "engine", "arch", "stack", "expected")


def _params():
    for c in CASES:
        marks = []
        if c["id"] in KNOWN:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN[c["id"]] or "known disagreement"))
        yield pytest.param(c, id=c["id"], marks=marks)


def test_corpus_size_and_coverage():
    assert len(CASES) >= 60            # issue 10: at least 60 real outputs, each with its source
    assert len(set(IDS)) == len(IDS)
    engines = {c["engine"] for c in CASES}
    assert engines == {"modern", "legacy"}
    assert {"x64", "x86"} <= {c["arch"] for c in CASES}


def test_known_disagreements_name_real_cases():
    assert set(KNOWN) <= set(IDS), sorted(set(KNOWN) - set(IDS))


@pytest.mark.parametrize("case", list(CASES), ids=IDS)
def test_case_is_well_formed(case):
    for k in REQUIRED:
        # the stack may be missing only where the pasted output elided it (and the case says so)
        assert k in case or k == "stack" and any("stack" in n.lower() for n in case.get("notes", [])), k
    assert case["engine"] in ("modern", "legacy")
    assert case["arch"] in ("x64", "x86")
    src = case["source"]
    assert src.get("url") or src.get("repo") or src.get("index_id"), "a case must say where it comes from"
    if case.get("mode") != "user":       # a user-mode !analyze has an exception, no bug check
        bc = case["bugcheck"]
        assert re.fullmatch(r"0x[0-9A-F]+", bc["code"])
        # the four arguments, unless the pasted output left them out (and the case says so)
        assert len(bc.get("args") or []) == 4 or (
            not bc.get("args") and any("argument" in n.lower() for n in case.get("notes", []))), "bug-check arguments"
    exp = case["expected"]
    assert exp.get("MODULE_NAME") and exp.get("IMAGE_NAME")
    if case["engine"] == "modern":
        assert exp.get("FAILURE_BUCKET_ID")
    # the transcription check: WinDbg's own hash of the bucket, as recorded in the case
    if exp.get("FAILURE_BUCKET_ID") and exp.get("FAILURE_ID_HASH"):
        from dumpkit.analysis.bucket import failure_id_hash

        ok = failure_id_hash(exp["FAILURE_BUCKET_ID"], user_mode=case.get("mode") == "user") == exp["FAILURE_ID_HASH"].lower()
        assert ok == case["transcription_check"]["failure_id_hash_matches_bucket"]
        assert ok or any("hash" in n.lower() for n in case.get("notes", [])), "a hash mismatch must carry a note"


@pytest.mark.parametrize("case", list(CASES), ids=IDS)
def test_rendered_text_has_no_conclusions(case):
    text = A.render(case)
    for key in A.CONCLUSION_KEYS:
        assert not re.search(rf"^\s*{re.escape(key)}\s*:", text, re.M), key
    # nor the values WinDbg concluded (the bucket string itself must not leak through a given field)
    bucket = case["expected"].get("FAILURE_BUCKET_ID")
    if bucket:
        assert bucket not in text


@pytest.mark.parametrize("case", list(_params()))
def test_agrees_with_windbg(case):
    r = A.compare(case)
    assert r.all_agree, "; ".join(r.mismatches())


def test_memory_operand_and_pointer_class_from_real_outputs():
    """The operand facts behind the user-mode pointer classes of the corpus cases (see their notes)."""
    from dumpkit.analysis.analyzers import _pointer_class
    from dumpkit.analysis.bucket import memory_operand

    cases = [  # instruction, registers, address, access -> WinDbg's class
        ("mov     byte ptr [eax+edx],61h", {"eax": 0x533140, "edx": 0}, 0x533140, "write", "NULL_POINTER_WRITE"),
        ("mov     rdi,qword ptr [rcx+50h]", {"rcx": 0}, 0x50, "read", "NULL_CLASS_PTR_READ"),
        ("mov     rcx,qword ptr [rcx+8]", {"rcx": 0x30}, 0x38, "read", "INVALID_POINTER_READ"),
        ("mov     dword ptr [ecx],0", {"ecx": 0xF9C}, 0xF9C, "write", "NULL_CLASS_PTR_WRITE"),
        ("movzx   eax,word ptr [rdx+rax*2]", {"rdx": 0x5DB157C7B535, "rax": 0}, 0x5DB157C7B535, "read",
         "INVALID_POINTER_READ"),
    ]
    for text, regs, addr, access, want in cases:
        op = memory_operand(text, regs)
        assert op is not None, text
        assert _pointer_class(addr, access, op) == want, text
    assert memory_operand("mov eax,dword ptr fs:[00000030h]", {}) is None
    assert memory_operand("ret", {"eax": 0}) is None
