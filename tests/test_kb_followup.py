"""Followup-frame selection (triage.ini semantics) on the seed cases and real !analyze outputs."""
from __future__ import annotations

import re
from pathlib import Path
from typing import List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared_path
from dumpkit.analysis.followup import FollowupResult, select_followup
from dumpkit.analysis.kb import KnowledgeBase, TriageRules, make_rule
from dumpkit.model import Frame

# --------------------------------------------------------------------------- helpers
_SITE = re.compile(r"^(?:(?P<mod>[A-Za-z0-9_.\-]+)(?:!(?P<sym>[^+\s]+))?(?:\+0x(?P<off>[0-9a-fA-F]+))?|0x(?P<addr>[0-9a-fA-F`]+))$")


def frame_from_site(index: int, site: str, sp: int = 0, ret: int = 0) -> Frame:
    """A Frame from a WinDbg call site ('nt!KiPageFault+0x42e', 'lwfmgr+0x5167', '0x00007ffc`aa52f454')."""
    m = _SITE.match(site.strip())
    assert m, site
    if m.group("addr"):
        return Frame(index, int(m.group("addr").replace("`", ""), 16), sp, ret, trust="text")
    off = int(m.group("off"), 16) if m.group("off") else None
    return Frame(index, 0, sp, ret, module=m.group("mod"), symbol=m.group("sym"), offset=off, trust="text")


def parse_k(text: str) -> List[Frame]:
    """Tiny parser for `k` output with frame numbers (the seed case 2 paste)."""
    frames = []
    for line in text.strip().splitlines():
        parts = line.split()
        if len(parts) < 4 or not re.fullmatch(r"[0-9a-f]{2}", parts[0]):
            continue
        sp = int(parts[1].replace("`", ""), 16)
        ret = int(parts[2].replace("`", ""), 16)
        frames.append(frame_from_site(int(parts[0], 16), parts[3], sp, ret))
    return frames


def parse_stack_text(report: str) -> List[Frame]:
    """STACK_TEXT block of an !analyze -v report -> frames (minimal, for tests)."""
    lines = report.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("STACK_TEXT:"))
    frames = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        cols = line.split(" : ")
        head = cols[0].split()
        frames.append(frame_from_site(len(frames), cols[-1].strip(),
                                      int(head[0].replace("`", ""), 16), int(head[1].replace("`", ""), 16)))
    return frames


def field(report: str, key: str) -> Optional[str]:
    m = re.search(rf"^{key}:\s+(\S+)", report, re.M)
    return m.group(1) if m else None


# the seed case's stack as the engineers pasted it (cases.md, case 2)
CASE2 = (Path(__file__).resolve().parent / "data" / "text" / "case2_stack.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return KnowledgeBase.load()


# --------------------------------------------------------------------------- seed cases
def test_case2_blames_lwfmgr_not_ndis(kb):
    frames = parse_k(CASE2)
    assert len(frames) == 17
    r = select_followup(frames, kb=kb)
    assert r.frame.index == 9 and r.index == 9
    assert r.module == "lwfmgr" and r.symbol is None and r.offset == 0x5167
    assert r.symbol_name == "lwfmgr+5167"
    assert r.bucket_suffix == "lwfmgr!unknown_function"
    assert r.owner == "MachineOwner" and r.strength == "definite"
    assert r.victims == ["ndis"]
    assert not r.likely_victim
    whys = {s.index: s.why for s in r.skipped}
    assert set(whys) == set(range(9))
    assert "ignore" in whys[1] and "nt!PspSystemThreadStartup*" in whys[1]
    assert "nt!KiPageFault*" in whys[7]
    assert "maybe_ndis" in whys[8] and "stronger owner lower" in whys[8]


def test_case2_from_the_analysis_context(kb):
    """From the .cxr/.trap context the stack starts at ndis: still lwfmgr."""
    frames = parse_k(CASE2)[8:]
    r = select_followup(frames, kb=kb)
    assert r.module == "lwfmgr" and r.frame.index == 9 and r.index == 1


CASE1_TAIL = ["nt!IofCallDriver+0x55", "nt!PnpAsynchronousCall+0xea", "nt!PnpSendIrp+0x9e",
              "nt!PnpStartDevice+0x88", "nt!PnpStartDeviceNode+0xdb", "nt!PipProcessStartPhase1+0x53",
              "nt!PipProcessDevNodeTree+0x3d1", "nt!PnpDeviceActionWorker+0x474", "nt!ExpWorkerThread+0x105",
              "nt!PspSystemThreadStartup+0x55", "nt!KiStartSystemThread+0x28"]


def _stack(sites):
    return [frame_from_site(i, s) for i, s in enumerate(sites)]


def test_case1_points_past_ks_to_the_camera_driver(kb):
    sites = ["nt!KeAcquireSpinLockRaiseToDpc+0x53", "ks!KsUpdateCameraStreamingConsent+0x7c",
             "ks!KspPropertyHandler+0x2a1", "OemCamera+0x1a2b", "ks!CKsDevice::DispatchPnp+0x1f"] + CASE1_TAIL
    r = select_followup(_stack(sites), kb=kb)
    assert r.module == "OemCamera" and r.symbol_name == "OemCamera+1a2b"
    assert r.victims == ["ks"]
    assert not r.likely_victim
    assert "ignore" in r.skipped[0].why and "lock" in r.skipped[0].why


def test_case1_ks_is_last_non_os_module(kb):
    sites = ["nt!KeAcquireSpinLockRaiseToDpc+0x53", "ks!KsUpdateCameraStreamingConsent+0x7c"] + CASE1_TAIL
    r = select_followup(_stack(sites), kb=kb)
    assert r.module == "ks" and r.symbol == "KsUpdateCameraStreamingConsent" and r.strength == "maybe"
    assert r.bucket_suffix == "ks!KsUpdateCameraStreamingConsent"
    assert r.likely_victim and "camera" in r.suspect_hint
    assert "camera" in r.reason


def test_only_kernel_frames_fall_back_to_last_owner(kb):
    sites = ["nt!KeBugCheckEx", "nt!KiBugCheckDispatch+0x69", "nt!KiPageFault+0x474",
             "nt!ExpCheckForWorker+0x20", "nt!ExpWorkerThread+0x105", "nt!PspSystemThreadStartup+0x55"]
    r = select_followup(_stack(sites), kb=kb)
    assert r.module == "nt" and r.symbol == "ExpCheckForWorker" and r.strength == "last"
    assert r.likely_victim


def test_netio_blamed_without_callout_driver(kb):
    """classify.md ex. 07: no third-party frame -> AV_NETIO!StreamInvokeCalloutAndNormalizeAction."""
    sites = ["nt!KeBugCheckEx", "nt!KiBugCheckDispatch+0x69", "nt!KiPageFault+0x474",
             "NETIO!StreamInvokeCalloutAndNormalizeAction+0x5a", "NETIO!StreamProcessCallout+0x2f2",
             "tcpip!TcpDeliverDataToClient+0x11a", "nt!KiStartSystemThread+0x28"]
    r = select_followup(_stack(sites), kb=kb)
    assert r.bucket_suffix == "NETIO!StreamInvokeCalloutAndNormalizeAction"
    assert r.strength == "maybe" and r.likely_victim


def test_everything_ignored_and_empty(kb):
    r = select_followup(_stack(["nt!KeBugCheckEx", "nt!KiPageFault+0x1"]), kb=kb)
    assert r.strength == "fallback" and r.module == "nt" and r.index == 0
    r = select_followup([], kb=kb)
    assert r.module is None and r.strength == "none" and r.symbol_name == "Unknown_Module"
    r = select_followup(_stack(["0x00007ffc`aa52f454"]), kb=kb)
    assert r.module is None and r.skipped[0].owner is None


# --------------------------------------------------------------------------- rule semantics
def _rules(*pairs, default="MachineOwner") -> TriageRules:
    return TriageRules([make_rule(p, o) for p, o in pairs], default)


def test_trailing_wildcard_and_longest_match():
    rules = _rules(("mod2!*", "maybe_a"), ("mod2!funct*", "ownerB"), ("mod2!functionB", "ownerC"),
                   ("mod*!functionC", "ownerD"), ("hal", "last_hal"))
    assert rules.lookup("mod2", "functionB").owner == "ownerC"        # exact beats prefix
    assert rules.lookup("mod2", "functionX").owner == "ownerB"        # longer prefix beats '*'
    assert rules.lookup("mod2", "other").owner == "maybe_a"
    assert rules.lookup("mod2", "functionC").owner == "ownerB"        # module match beats module wildcard
    assert rules.lookup("mod3", "functionC").owner == "ownerD"
    assert rules.lookup("hal", "HalpAnything").owner == "last_hal"    # module-only rule = module!*
    assert rules.lookup("MOD2", "FUNCTIONB").owner == "ownerC"        # case-insensitive
    assert rules.lookup("unknown", "f").owner == "MachineOwner"
    assert rules.lookup("mod2", "funct*").owner == "ownerB"           # '*' in a frame name is just a character


def test_triage_ini_text_and_default_keyword():
    rules = TriageRules.parse("""
; comment
[Modules]
nt!default = last_kernel
nt!KeBugCheck* = ignore   ; plumbing
lwfmgr = TMS Team
default = MachineOwner
""")
    assert rules.lookup("nt", "KeBugCheckEx").strength == "ignore"
    assert rules.lookup("nt", "IopLoadDriver").owner == "last_kernel"
    assert rules.lookup("lwfmgr", None).owner == "TMSTeam"            # spaces in owners are ignored
    assert rules.lookup("x", "y").owner == "MachineOwner"


def test_definite_lower_beats_weak_higher():
    rules = _rules(("os!*", "maybe_os"), ("kern!*", "last_kern"), ("plumb!*", "ignore"))
    frames = _stack(["plumb!a", "kern!b", "os!c", "kern!d", "third+0x10", "os!e"])
    r = select_followup(frames, rules=rules)
    assert r.module == "third" and r.index == 4 and r.victims == ["kern", "os"]
    # maybe_ lower beats last_ higher
    r = select_followup(_stack(["plumb!a", "kern!b", "os!c", "kern!d"]), rules=rules)
    assert r.module == "os" and r.symbol == "c"
    # among equals the topmost wins
    r = select_followup(_stack(["kern!b", "kern!d"]), rules=rules)
    assert r.symbol == "b"
    # a definite owner above a weaker one stops the walk
    r = select_followup(_stack(["third!f", "os!c"]), rules=rules)
    assert r.module == "third" and r.skipped == []


@settings(max_examples=150, deadline=1000)
@given(st.lists(st.tuples(st.sampled_from(["nt", "hal", "ndis", "ks", "lwfmgr", "foo", None]),
                          st.sampled_from(["KeBugCheckEx", "KiPageFault", "IopLoadDriver", "X", None])),
                max_size=30))
def test_followup_properties(stack):
    kb = KnowledgeBase.load()
    frames = [Frame(i, 0x1000 + i, 0x2000 + i, module=m, symbol=s if m else None, offset=0x10) for i, (m, s) in
              enumerate(stack)]
    r = select_followup(frames, kb=kb)
    assert isinstance(r, FollowupResult)
    if r.index is None:
        assert all(f.module is None for f in frames)
        return
    rank = {"ignore": 0, "last": 1, "maybe": 2, "definite": 3}
    chosen = kb.rules.lookup(frames[r.index].module, frames[r.index].symbol)
    # no frame has a strictly stronger owner than the followup
    for f in frames:
        if f.module:
            assert rank[kb.rules.lookup(f.module, f.symbol).strength] <= max(rank[chosen.strength], 0) or \
                r.strength == "fallback"
    # nothing above the followup has the same strength (topmost wins among equals)
    for f in frames[:r.index]:
        if f.module and r.strength != "fallback":
            assert rank[kb.rules.lookup(f.module, f.symbol).strength] < rank[chosen.strength]
    assert len(r.skipped) + 1 <= len(frames)


# --------------------------------------------------------------------------- real !analyze outputs
REAL = ["01_0x7E_AV_EvilDriver_unknown_function.txt", "02_0xD1_AV_myfault_notmyfault.txt",
        "03_0x50_AV_W_null_Driver.txt", "04_0x139_INVALID_BALANCED_TREE.txt"]


@pytest.mark.parametrize("name", REAL)
def test_real_analyze_followup_matches_windbg(kb, name):
    report = shared_path("analyze", name).read_text(encoding="utf-8", errors="replace")
    frames = parse_stack_text(report)
    assert frames
    r = select_followup(frames, kb=kb)
    assert r.module == field(report, "MODULE_NAME")
    assert r.symbol_name == field(report, "SYMBOL_NAME")
    assert r.owner == field(report, "Followup")            # MachineOwner
    bucket = field(report, "FAILURE_BUCKET_ID")
    assert bucket.endswith("_" + r.bucket_suffix)
    assert f"{r.offset:x}" == field(report, "BUCKET_ID_FUNC_OFFSET")
    info = kb.bugcheck(field(report, "BUGCHECK_CODE"))
    assert info is not None and info.hex_code == field(report, "BUGCHECK_CODE")
