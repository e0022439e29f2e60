"""The real triage dump: frames from the exception CONTEXT (P4) unwound with the store images.

Truth: ../shared/data/real/dumps/triage_x64.expected.md (frames 08..17 are
parsed from its stack listing, not typed in here).
"""
from __future__ import annotations

import re

import pytest

import dumpkit
from dumpkit.model import Context
from dumpkit.pe import ChainImages, DumpMemoryImages, StoreImages
from dumpkit.unwind import context_from_bytes, walk_stack
from tests.conftest import shared_path


def expected_frames():
    text = shared_path("dumps", "triage_x64.expected.md").read_text()
    rows = re.findall(r"^([0-9a-f]{2}) ([0-9a-f]{16}) ([0-9a-f]{16}) (\S+)", text, re.M)
    return {int(n, 16): (int(ip, 16), int(sp, 16), where) for n, ip, sp, where in rows}


@pytest.fixture(scope="module")
def triage():
    d = dumpkit.open(shared_path("dumps", "triage_x64.dmp"))
    yield d
    d.close()


@pytest.fixture(scope="module")
def images():
    return StoreImages(shared_path("symstore"))


def exception_context(d):
    p4 = d.bugcheck.parameters[3]
    assert p4 == 0xFFFF850429891720
    return context_from_bytes(d.read_virtual(p4, 0x4D0), "exception", p4)


def test_frames_08_to_17_from_exception_context(triage, images):
    exp = expected_frames()
    stack = walk_stack(triage, exception_context(triage), triage.modules, images)
    got = {8 + f.index: f for f in stack}
    for n in range(0x08, 0x18):
        ip, sp, where = exp[n]
        f = got[n]
        assert (f.instruction, f.child_sp) == (ip, sp), f"frame {n:02x}: {f!r} expected {ip:#x} {sp:#x}"
        assert f.trust == ("context" if n == 8 else "cfi")
        mod = where.split("!")[0].split("+")[0]
        assert f.module == mod
    # RetAddr of frame n is the instruction of frame n+1
    for n in range(0x08, 0x17):
        assert got[n].return_address == exp[n + 1][0]
    # and frame 0x18 (nt!IofCallDriver+0x55) comes from Wdf01000's unwind data
    assert (got[0x18].instruction, got[0x18].child_sp) == exp[0x18][:2]
    assert got[0x18].trust == "cfi"


def test_nt_frames_carry_scan_trust_and_include_the_real_ones(triage, images):
    exp = expected_frames()
    stack = walk_stack(triage, exception_context(triage), triage.modules, images)
    nt = [f for f in stack if f.module == "nt" and f.index > 0x10]
    assert nt and all(f.trust == "scan" for f in nt)
    found = {(f.instruction, f.child_sp) for f in nt}
    real = {exp[n][:2] for n in range(0x19, 0x24)}
    # the validated scan finds every real nt frame (no nt image: extra stale addresses may appear)
    assert real <= found
    assert stack[-1].child_sp <= 0xFFFF850429893000          # never beyond the captured stack


def test_render_layout(triage, images):
    stack = walk_stack(triage, exception_context(triage), triage.modules, images, max_frames=3)
    lines = stack.render().splitlines()
    assert lines[0] == " # Child-SP          RetAddr               Call Site"
    assert lines[1] == "00 ffff8504`29892120 fffff804`8b58313f     amdppm+0x334c"
    assert len(stack) == 3


def test_from_kebugcheckex_reaches_the_fault_through_the_trap_frame(triage, images):
    """Start at nt!KeBugCheckEx (no nt image): scan through nt, recognise the machine frame of
    KiSegmentNotPresentFault, continue in amdppm at the exact faulting PC (frame 08)."""
    exp = expected_frames()
    ctx = Context({"rip": 0xFFFFF8047BDF5A80, "rsp": 0xFFFF850429890EE8, "rbp": 0xFFFF850429892C10}, "prcb")
    stack = walk_stack(triage, ctx, triage.modules, images)
    assert (stack[1].instruction, stack[1].child_sp) == exp[1][:2]
    hit = [f for f in stack if f.instruction == exp[8][0]]
    assert hit, "the faulting frame was not reached"
    f8 = hit[0]
    assert f8.child_sp == exp[8][1] and f8.trap_frame is not None
    prev = stack[f8.index - 1]
    assert (prev.instruction, prev.child_sp) == exp[7][:2]      # nt!KiSegmentNotPresentFault+0x335
    # the KTRAP_FRAME starts at that handler's RSP, and holds the faulting RIP at +0x168
    assert f8.trap_frame == exp[7][1]
    assert triage.read_u64(f8.trap_frame + 0x168) == exp[8][0]
    # from there on, the amdppm/Wdf frames are by cfi again and match
    after = stack[f8.index:f8.index + 16]
    assert [(f.instruction, f.child_sp) for f in after] == [exp[n][:2] for n in range(8, 0x18)]


def test_dump_memory_images_give_none_for_triage(triage, images):
    """A triage dump holds no module images: the memory provider declines, the chain falls through."""
    amd = triage.modules.by_name("amdppm")
    assert DumpMemoryImages(triage).image_for(amd) is None
    img = ChainImages([DumpMemoryImages(triage), images]).image_for(amd)
    assert img is not None and img.timestamp == 0xC9C03000 and img.size_of_image == 0x3B000
