"""The bug check catalog and module database: complete, validated, in dumpkit's own words."""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SHARED
from dumpkit.analysis.kb import (BUCKET_RULES, PARAM_ROLES, KnowledgeBase, KnowledgeBaseError,
                                 normalize_module_name, parse_code)
from dumpkit.errors import DumpError
from dumpkit.kbpath import kb_file


def _reference(name: str) -> Path:
    p = SHARED / "reference" / name
    if not p.exists():
        pytest.skip(f"{p} not present (../shared is only on developer and CI machines)")
    return p


def _tsv(name: str):
    with open(_reference(name), encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load()


def test_every_reference_code_and_name_present(kb):
    rows = _tsv("bugcodes.tsv")
    assert len(rows) == 425
    for r in rows:
        info = kb.bugcheck(r["code"])
        assert info is not None, r["code"]
        assert info.name == r["name"], r["code"]
        assert info.code == int(r["code"], 16)
        assert info.description.strip()
        assert info.kind == r["kind"]


def test_m_twins_resolve_to_base(kb):
    info = kb.bugcheck(0x1000007E)
    assert info.name == "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED_M"
    assert info.base_code == 0x7E and info.hex_code == "7e" and info.bucket_prefix == "0x7E"
    base = kb.bugcheck("7e")
    assert info.parameters == base.parameters and info.description == base.description
    assert info.bucket == "av_if_exception"
    # dumpformat.md §3.9 / classify §1.4: P3 = exception record, P4 = context for 0x7E
    assert info.param("exception_record") == 3 and info.param("context") == 4
    assert info.param("exception_code") == 1 and info.param("ip") == 2
    # a 0x1000xxxx code with no entry of its own still maps to its base
    km = kb.bugcheck(0x1000001E)
    assert km.base_code == 0x1E and km.name == "KMODE_EXCEPTION_NOT_HANDLED_M"
    assert kb.bugcheck(0x1000008E).base_code == 0x8E
    assert kb.bugcheck(0x0BADC0DE) is None


def test_parameter_roles_for_common_codes(kb):
    assert kb.bugcheck(0xA).param("address") == 1 and kb.bugcheck(0xA).param("ip") == 4
    assert kb.bugcheck(0xD1).param("irql") == 2 and kb.bugcheck(0xD1).param("access") == 3
    assert kb.bugcheck(0x50).param("address") == 1 and kb.bugcheck(0x50).param("ip") == 3
    assert kb.bugcheck(0x3B).param("context") == 3
    assert kb.bugcheck(0x8E).param("trap_frame") == 3
    assert kb.bugcheck(0x139).param("trap_frame") == 2 and kb.bugcheck(0x139).param("exception_record") == 3
    assert kb.bugcheck(0x1E).param("address") == 4


def test_bucket_rules_follow_classify(kb):
    for code in (0xA, 0xD1, 0x50):
        assert kb.bugcheck(code).bucket == "av"
    for code in (0x1E, 0x7E, 0x8E, 0x3B, 0x1000007E, 0x1000008E):
        assert kb.bugcheck(code).bucket == "av_if_exception"
    assert kb.bugcheck(0x139).bucket == "p1_name"
    assert {kb.bugcheck(c).bucket for c in (0x13A, 0x19, 0x1A)} == {"p1"}
    assert kb.bugcheck(0x133).bucket == "dpc_isr"
    assert kb.bugcheck(0x9F).bucket == "pnp_irp"
    assert kb.bugcheck(0xEF).bucket == "critical_process"
    assert kb.bugcheck(0x4A).bucket == "raised_irql"
    assert kb.bugcheck(0x1C8).bucket == "code"
    assert all(i.bucket in BUCKET_RULES for i in kb.bugchecks.values())


def test_subtypes(kb):
    st_ = kb.subtype(0x139, 0x1D)
    assert st_.name == "INVALID_BALANCED_TREE"          # the bucket of real output 04 uses this name
    assert kb.subtype(0x1000007F, 8) is not None       # _M twin shares the base table
    assert kb.subtype(0x133, 0).name == "SINGLE_DPC_TIMEOUT_EXCEEDED"
    assert kb.subtype(0x133, 1).name == "DPC_QUEUE_EXECUTION_TIMEOUT_EXCEEDED"
    assert kb.subtype(0x9F, 3).parameters[2].role == "irp"
    assert kb.subtype(0xC4, 0x20005).name == "IrqlExApcLte1"
    assert kb.subtype(0xC2, 0x43).description == kb.subtype(0xC2, 0x42).description
    assert kb.subtype(0x139, 0x12345) is None and kb.subtype(0xD1, 0) is None
    text = kb.bugcheck(0x139).describe_parameters([0x1D, 1, 2, 0])
    assert text[0][2].startswith("INVALID_BALANCED_TREE")


def test_subtype_p1_values_match_reference(kb):
    """Every P1 listed for 0x19/0x1A/0x9F/0x133/0xC2/0x7F/0x124 in the reference has an entry."""
    want = {"0x19", "0x1A", "0x9F", "0x133", "0xC2", "0x7F", "0x124"}
    for r in _tsv("bugcodes_subtypes.tsv"):
        if r["code"] not in want:
            continue
        for tok in re.split(r",|\bor\b|</br>|\s", r["p1"]):
            tok = tok.strip()
            if not re.fullmatch(r"0[xX][0-9A-Fa-f]+|\d+", tok):
                continue
            assert kb.subtype(r["code"], int(tok, 0)) is not None, (r["code"], tok)


def _words(s: str):
    return re.findall(r"[a-z0-9']+", s.lower())


def _ngrams(s: str, n: int):
    w = _words(s)
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def test_descriptions_are_not_copied(kb):
    """No description repeats the reference text: no shared run of 9 words, no identical parameter line."""
    rows = {int(r["code"], 16): r for r in _tsv("bugcodes.tsv")}
    copied = []
    for code, info in kb.bugchecks.items():
        r = rows[code]
        ref = " ".join([r["summary"], r["p1"], r["p2"], r["p3"], r["p4"]])
        ref9 = _ngrams(ref, 9)
        mine = [info.description] + [p.description for p in info.parameters]
        for text in mine:
            if _ngrams(text, 9) & ref9:
                copied.append((hex(code), text))
        for i, p in enumerate(info.parameters):
            theirs = r[f"p{i + 1}"].strip().rstrip(".").lower()
            if len(theirs) > 25 and p.description.strip().rstrip(".").lower() == theirs:
                copied.append((hex(code), p.description))
    assert not copied, copied[:10]
    causes = " ".join(r["cause"] for r in _tsv("bugcodes_subtypes.tsv"))
    ref9 = _ngrams(causes, 9)
    for code, info in kb.bugchecks.items():
        if info.base_code != code:
            continue
        for sub in info.subtypes.values():
            assert not (_ngrams(sub.description, 9) & ref9), (hex(code), sub.description)


def test_roles_vocabulary(kb):
    for info in kb.bugchecks.values():
        for p in info.parameters:
            assert p.role is None or p.role in PARAM_ROLES


def test_parse_code_and_names():
    assert parse_code("0x1000007E") == 0x1000007E
    assert parse_code("7e") == 0x7E and parse_code(0xD1) == 0xD1
    with pytest.raises(ValueError):
        parse_code("zz")
    assert normalize_module_name(r"\SystemRoot\system32\ntoskrnl.exe") == "nt"
    assert normalize_module_name("ntkrnlmp.exe") == normalize_module_name("nt") == "nt"
    assert normalize_module_name("NDIS.SYS") == "ndis"
    assert normalize_module_name("lwfmgr+0x5167") == "lwfmgr+0x5167"   # not a module name; callers split first


def test_module_lookup(kb):
    for name in ("nt", "ntoskrnl.exe", "NTKRNLMP.EXE", r"\SystemRoot\system32\ntoskrnl.exe"):
        assert kb.module(name).file == "ntoskrnl.exe"
    for name in ("ks.sys", "ndis.sys", "lwfmgr.sys", "vwifimf.sys", "hal", "NETIO.SYS", "netio",
                 "Wdf01000.sys", "fltmgr.sys", "amdppm.sys"):
        assert kb.module(name) is not None, name
    assert kb.module("lwfmgr").service == "lwfmgr" and kb.module("lwfmgr").role == "culprit"
    assert kb.module("ndis").role == "victim" and kb.module("ks").role == "victim"
    assert kb.module("amdppm").vendor == "Microsoft" and kb.module("amdppm").in_box
    assert kb.module("Netwtw14.sys").vendor == "Intel"          # family pattern
    assert kb.module("nosuchdriver.sys") is None and kb.module("") is None


def test_module_remediation_is_concrete(kb):
    lwf = kb.module("lwfmgr.sys")
    text = " ".join(lwf.remediation)
    assert r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Services\lwfmgr" in text and "Start" in text and "4" in text
    assert "vwifimf" in text
    assert "camera" in " ".join(kb.module("ks.sys").remediation).lower()


def test_load_is_cached():
    assert KnowledgeBase.load() is KnowledgeBase.load()


# ---------------------------------------------------------------- malformed files
FILES = ("bugchecks.json", "bugcheck_subtypes.json", "modules.toml", "triage.toml")


def _copy_kb(tmp_path: Path) -> Path:
    for f in FILES:
        shutil.copy(kb_file(f), tmp_path / f)
    return tmp_path


def test_copy_loads(tmp_path):
    kb = KnowledgeBase.load(_copy_kb(tmp_path))
    assert len(kb.bugchecks) == len(KnowledgeBase.load().bugchecks)


@pytest.mark.parametrize("fname,mutate,fragment", [
    ("bugchecks.json", lambda s: s[:len(s) // 2], "invalid JSON"),
    ("bugchecks.json", lambda s: s.replace('"name": "IRQL_NOT_LESS_OR_EQUAL"', '"name": "irql bad"'), "symbolic name"),
    ("bugchecks.json", lambda s: s.replace('"role": "address"', '"role": "adress"', 1), "unknown role"),
    ("bugchecks.json", lambda s: s.replace('"code": "0x2",', '"code": "0x1",', 1), "duplicate code"),
    ("bugchecks.json", lambda s: s.replace('"same_as": "0x7E"', '"same_as": "0x7F7F"'), "same_as"),
    ("bugchecks.json", lambda s: s.replace('"bucket": "av"', '"bucket": "AV!"', 1), "bucket rule"),
    ("bugcheck_subtypes.json", lambda s: s.replace('"p1": "0x1D"', '"p1": "0xzz"'), "bad code"),
    ("bugcheck_subtypes.json", lambda s: s.replace('"0x9F": [', '"0x77777": [', 1), "unknown code"),
    ("modules.toml", lambda s: s.replace('category = "framework"', 'category = "frameworks"', 1), "unknown category"),
    ("modules.toml", lambda s: s.replace('\nrole = "victim"', '\nrole = "bystander"', 1), "role"),
    ("modules.toml", lambda s: s.replace('file = "hal.dll"', 'file = "ntoskrnl.exe"', 1), "already used"),
    ("modules.toml", lambda s: s + "\n[[module]\n", "invalid TOML"),
    ("triage.toml", lambda s: s.replace('owner = "ignore"', 'owner = ""', 1), "empty"),
    ("triage.toml", lambda s: s.replace("rules = [", "rulez = [", 1), "rules"),
])
def test_malformed_files_raise_clear_error(tmp_path, fname, mutate, fragment):
    d = _copy_kb(tmp_path)
    p = d / fname
    text = p.read_text(encoding="utf-8")
    new = mutate(text)
    assert new != text
    p.write_text(new, encoding="utf-8")
    with pytest.raises(KnowledgeBaseError) as ei:
        KnowledgeBase.load(d)
    assert fragment.lower() in str(ei.value).lower()
    assert ei.value.path and ei.value.path.endswith(fname)


def test_missing_file(tmp_path):
    d = _copy_kb(tmp_path)
    (d / "triage.toml").unlink()
    with pytest.raises(KnowledgeBaseError, match="missing"):
        KnowledgeBase.load(d)


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=400), which=st.sampled_from(FILES))
def test_random_bytes_never_raise_raw_errors(tmp_path_factory, data, which):
    d = _copy_kb(tmp_path_factory.mktemp("kb"))
    (d / which).write_bytes(data)
    try:
        KnowledgeBase.load(d, reload=True)
    except DumpError:
        pass


@settings(max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                        lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                        max_leaves=20))
def test_wrong_shapes_never_raise_raw_errors(tmp_path_factory, doc):
    d = _copy_kb(tmp_path_factory.mktemp("kb"))
    for f in ("bugchecks.json", "bugcheck_subtypes.json"):
        for wrapped in (doc, {"bugchecks": doc, "subtypes": doc}, {"bugchecks": [doc], "subtypes": {"0x9F": [doc]}}):
            (d / f).write_text(json.dumps(wrapped), encoding="utf-8")
            try:
                KnowledgeBase.load(d, reload=True)
            except DumpError:
                pass
        shutil.copy(kb_file(f), d / f)
