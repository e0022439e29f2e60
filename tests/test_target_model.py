"""The target model (issue 14): one pass down the layers, per-arch seams, one warnings sink.

Truth: the factory's dumps (fixtures/factory.py, own structure definitions) and the real
triage dump; the assertions are about behaviour the issue asks for (pickling, clear errors,
warnings reaching Dump.warnings and the analysis JSON, kernel code never seeing a Dump).
"""
from __future__ import annotations

import ast
import copy
import pickle
import struct
from pathlib import Path

import pytest

import dumpkit
from dumpkit.arch import by_name, for_machine
from dumpkit.errors import DumpWarning, UnsupportedDumpError
from dumpkit.model import Context
from fixtures import factory

ROOT = Path(__file__).resolve().parent.parent


def test_context_survives_copy_deepcopy_and_pickle():
    c = Context({"rip": 0xFFFFF8041234, "rsp": 0xFFFF8000AAAA0000, "rax": 7}, "unwind", 0x1000, valid={"rip", "rsp"})
    for other in (copy.copy(c), copy.deepcopy(c), pickle.loads(pickle.dumps(c)), c.copy()):
        assert type(other) is Context
        assert (other.regs, other.source, other.address, other.valid) == (c.regs, c.source, c.address, c.valid)
        assert other.rip == c.rip and other.ip == c.ip
    with pytest.raises(AttributeError):
        c.no_such_register                      # noqa: B018


def test_typed_x64_context_from_a_dump_pickles(tmp_path):
    factory.make_basic_dump(tmp_path / "f.dmp", "full")
    with pytest.warns(DumpWarning):
        d = dumpkit.open(tmp_path / "f.dmp")
        ctx = d.contexts["header"]
    assert ctx.arch == "x64" and type(ctx).__name__ == "X64Context"
    back = pickle.loads(pickle.dumps(ctx))
    assert type(back) is type(ctx) and back.regs == ctx.regs and back.valid == ctx.valid


@pytest.mark.parametrize("kind", ["full", "bitmap_kernel", "triage"])
def test_analysis_round_trips_through_pickle(kind, tmp_path):
    factory.make_basic_dump(tmp_path / "d.dmp", kind)
    with pytest.warns(DumpWarning):
        d = dumpkit.open(tmp_path / "d.dmp")
        from dumpkit.analysis.dumpsource import analyze_dump
        a = analyze_dump(d, "", offline=True)
    b = pickle.loads(pickle.dumps(a))
    assert b.to_json() == a.to_json()
    assert [f.to_json() for f in b.frames] == [f.to_json() for f in a.frames] and len(a.frames) > 0
    assert type(b.frames[0].context) is type(a.frames[0].context)


def test_one_pass_open_names_format_opener_and_arch(tmp_path):
    for kind, opener in (("full", "full"), ("kernel", "bitmap"), ("bitmap_full", "bitmap"), ("triage", "triage")):
        factory.make_basic_dump(tmp_path / f"{kind}.dmp", kind)
        d = dumpkit.open(tmp_path / f"{kind}.dmp")
        t = d.target
        assert (t.header_format, t.opener, t.arch.name) == ("PAGEDU64", opener, "x64")
        assert d.arch is for_machine(0x8664) is by_name("x64")
        assert (d.physical is None) == (kind == "triage")


def test_unsupported_machine_type_is_a_clear_error(tmp_path):
    made = factory.make_basic_dump(None, "full")
    data = bytearray(made.data)
    struct.pack_into("<I", data, 0x30, 0x1C4)            # IMAGE_FILE_MACHINE_ARMNT (32-bit ARM)
    with pytest.raises(UnsupportedDumpError, match="MachineImageType 0x1c4") as ei:
        dumpkit.open(bytes(data))
    assert ei.value.offset == 0x30


def test_bitmap_page_count_mismatch_reaches_warnings_and_analysis_json(tmp_path):
    made = factory.make_basic_dump(None, "bitmap_kernel")
    data = bytearray(made.data)
    pages = struct.unpack_from("<Q", data, 0x2028)[0]
    struct.pack_into("<Q", data, 0x2028, pages + 5)      # TotalPresentPages disagrees with the bitmap
    (tmp_path / "b.dmp").write_bytes(bytes(data))
    with pytest.warns(DumpWarning, match="pages set but the header says"):
        d = dumpkit.open(tmp_path / "b.dmp")
    hits = [w for w in d.warnings if "pages set but the header says" in w]
    assert len(hits) == 1 and f"{pages + 5:,}" in hits[0]
    from dumpkit.analysis.dumpsource import analyze_dump
    with pytest.warns(DumpWarning):
        js = analyze_dump(d, "", offline=True).to_json(extended=True)
    assert any("pages set but the header says" in w for w in js["extended"]["warnings"])


def test_kernel_functions_never_see_a_dump():
    """The kernel layer takes a Kernel (memory + header facts + layout), never a Dump."""
    for p in sorted((ROOT / "dumpkit" / "kernel").glob("*.py")):
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.module not in ("dump", "..dump") and not (node.module or "").endswith(".dump"), p
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                assert not (node.value.id in ("dump", "k") and node.attr in ("_warn", "_sparse", "_spaces")), p


def test_trap_frame_layout_is_defined_once():
    """KTRAP_FRAME offsets (Rip 0x168, SegCs 0x170, Rsp 0x180, SegSs 0x188) live in arch/x64/frames.py."""
    offenders = []
    for p in sorted((ROOT / "dumpkit").rglob("*.py")):
        if p.name == "frames.py" or "fixtures" in p.parts:
            continue
        text = p.read_text()
        for lit in ("0x168", "0x170", "0x188"):
            if lit in text:
                offenders.append(f"{p.relative_to(ROOT)}: {lit}")
    assert offenders == []


def test_warnings_raised_while_analysing_reach_the_analysis(tmp_path):
    """Contexts are found lazily: their warning (no trap frame for 0xD1's IP) must still reach the JSON."""
    factory.make_basic_dump(tmp_path / "f.dmp", "full")
    with pytest.warns(DumpWarning):
        d = dumpkit.open(tmp_path / "f.dmp")
        from dumpkit.analysis.dumpsource import analyze_dump
        js = analyze_dump(d, "", offline=True).to_json(extended=True)
    hit = [w for w in d.warnings if "no trap frame with Rip" in w]
    assert hit and hit[0] in js["extended"]["warnings"]
