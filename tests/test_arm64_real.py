"""The real ARM64 triage dump (../shared/data/real/dumps/triage_arm64.dmp).

Truth: triage_arm64.expected.md (rizin's expected header, registers and frames 0-4 for this
file, computed by rizin with ntkrnlmp's PDB), not dumpkit's own output.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

import dumpkit
from dumpkit.arch.arm64.frames import arch_state, tcr_sizes

from .conftest import shared_path

ROOT = Path(__file__).resolve().parent.parent

# rizin, "Triage Dump Debug arm64": (pc, sp) of frames 0-4
FRAMES = [(0xFFFFF803F32DE014, 0xFFFFE00E0E4BC4A0), (0xFFFFF803F33442A0, 0xFFFFE00E0E4BC4B0),
          (0xFFFFF803F309FF1C, 0xFFFFE00E0E4BCB20), (0xFFFFF803F3173340, 0xFFFFE00E0E4BCCE0),
          (0xFFFFF803F3007DE4, 0xFFFFE00E0E4BCD40)]
# nt!KeBugCheck2+0x1c4, nt!PopPowerButtonWorkCallback+0x2f0, nt!ExpWorkerThread+0x1cc,
# nt!PspSystemThreadStartup+0x50, nt!KiStartSystemThread+0x24 (names from ntkrnlmp.pdb, not here)


@pytest.fixture(scope="module")
def arm():
    d = dumpkit.open(shared_path("dumps", "triage_arm64.dmp"))
    yield d
    d.close()


def test_header_and_architecture(arm):
    h = arm.header
    assert arm.arch.name == "arm64" and h.machine == "arm64" and h.machine_image_type == 0xAA64
    assert (h.major_version, h.build, h.number_processors) == (0xF, 22000, 8)
    assert h.directory_table_base == 0x946AA000 and h.kd_debugger_data_block == 0xFFFFF803F3A00D00
    assert h.ps_loaded_module_list == 0xFFFFF803F3A2AA20 and h.ps_active_process_head == 0xFFFFF803F3A1D1C0
    assert arm.bugcheck.code == 0x1C8 and arm.bugcheck.parameters == (0x1B58, 0xFFFFF803F3A20860, 0, 0)
    t = arm.triage.fields
    assert (t["context_offset"], t["prcb_offset"], t["call_stack_offset"], t["size_of_call_stack"]) == \
        (0x348, 0x2340, 0xCF50, 0xB60)
    assert arm.triage.top_of_stack == 0xFFFFE00E0E4BC4A0 and len(arm.modules) == 245


def test_header_context_registers(arm):
    c = arm.contexts["header"]
    assert type(c).__name__ == "Arm64Context" and c.arch == "arm64"
    assert (c.cpsr, c.fpcr, c.fpsr) == (0x80000144, 0, 0x10)
    want = {"x0": 0, "x1": 1, "x2": 0xFFFFFFFFFFFFFF80, "x3": 0xFFFFF803F3A36AA0, "x6": 0xFFFFF803F3A16000,
            "x7": 0x64D, "x9": 0xFFFFF803F3A2D000, "x10": 0x8000, "x11": 0xFFFFE00E0E4BD000,
            "x12": 0xFFFFE00E0E4B5000, "x13": 0x17, "x14": 0x124925, "x15": 0xFFF, "x16": 0x80000001,
            "x17": 0x6402A279369A, "x18": 0xFFFFF803EFD00000, "x19": 0xFFFFF803EFD00980, "x20": 1, "x21": 1,
            "x25": 0x1B58, "x26": 0xFFFFF803F3A20860, "x28": 0, "fp": 0xFFFFE00E0E4BC4A0, "lr": 0,
            "sp": 0xFFFFE00E0E4BC4A0, "pc": 0xFFFFF803F32DE014}
    assert {k: c[k] for k in want} == want
    assert c.ip == c.pc and c.sp == 0xFFFFE00E0E4BC4A0
    assert pickle.loads(pickle.dumps(c)).regs == c.regs
    # per-CPU contexts from the KPRCB copies (KDBG OffsetPrcbContext)
    assert {f"cpu{i}" for i in range(8)} <= set(arm.contexts)
    assert arm.contexts["cpu0"].pc == c.pc


def test_directory_table_base_is_ttbr0_and_ttbr1_its_upper_half(arm):
    """KARM64_ARCH_STATE in the KPRCB copy: TTBR1 = DTB + 0x800, T0SZ = T1SZ = 17 (47-bit halves)."""
    prcb = arm.source.read(arm.triage.fields["prcb_offset"], 0x200)
    st = arch_state(prcb)
    assert st["midr_el1"] >> 24 == 0x51                      # implementer 'Q' (Qualcomm)
    assert st["ttbr0_el1"] & 0x0000FFFFFFFFF000 == arm.header.directory_table_base
    assert st["ttbr1_el1"] & 0x0000FFFFFFFFFFFE == arm.header.directory_table_base + 0x800
    assert tcr_sizes(st["tcr_el1"]) == (17, 17)


def test_stack_frames_0_to_4_match_rizin(arm):
    st = arm.stack(offline=True)
    assert [(f.instruction, f.child_sp) for f in st[:5]] == FRAMES
    assert len(st) == 5                                     # KiStartSystemThread ends the frame chain
    assert [f.trust for f in st] == ["context"] + ["frame_pointer"] * 4
    nt = arm.modules.by_name("nt")
    assert [f.call_site for f in st] == [f"nt+{pc - nt.base:#x}" for pc, _ in FRAMES]
    assert [f.return_address for f in st[:4]] == [pc for pc, _ in FRAMES[1:]]


def test_analysis_is_architecture_neutral_and_pickles(arm):
    from dumpkit.analysis.dumpsource import analyze_dump
    a = analyze_dump(arm, "", offline=True)
    assert a.bugcheck_code == 0x1C8
    assert [f.instruction for f in a.frames[:5]] == [pc for pc, _ in FRAMES]
    b = pickle.loads(pickle.dumps(a))
    assert b.to_json(extended=True) == a.to_json(extended=True)


@pytest.mark.parametrize("cmd", ["info", "modules", "stack", "analyze"])
def test_cli_works_on_arm64(cmd, capsys, monkeypatch):
    from dumpkit.cli.main import main
    path = shared_path("dumps", "triage_arm64.dmp")
    monkeypatch.setenv("DUMPKIT_OFFLINE", "1")
    rc = main([cmd, str(path), "--json"])
    out = capsys.readouterr()
    if cmd == "analyze":       # a power-button hold blames no module: the CLI's 'incomplete' exit code
        assert rc in (0, 1) and "Traceback" not in out.err, out.err
    else:
        assert rc == 0, out.err
    doc = json.loads(out.out)
    text = json.dumps(doc).lower()
    if cmd == "stack":
        assert "fffff803f33442a0" in text and "fffff803f3007de4" in text
    if cmd == "info":
        assert "arm64" in text
    if cmd == "modules":
        assert "ntoskrnl.exe" in text
    if cmd == "analyze":
        assert "1c8" in json.dumps(doc["bugcheck"]).lower()


def test_process_and_thread_from_the_arm64_layout(arm):
    """The crashing thread is a System worker (frame 2 is nt!ExpWorkerThread+0x1cc, rizin's names): the
    ARM64 22000 layout reads System, pid 4 from the triage EPROCESS copy.  Checked against the raw copies
    with facts from expected.md, not with dumpkit's offsets: ProcessOffset 0xb9c0 holds an EPROCESS whose
    list entry after the pid points back at the header's PsActiveProcessHead, and the ETHREAD copy at
    ThreadOffset 0xc640 names ExpWorkerThread (frame 2 pc - 0x1cc) as its start address."""
    raw = Path(shared_path("dumps", "triage_arm64.dmp")).read_bytes()

    def u64(off: int) -> int:
        return int.from_bytes(raw[off:off + 8], "little")

    assert u64(0xB9C0 + 0x3F8) == 4 and u64(0xB9C0 + 0x408) == 0xFFFFF803F3A1D1C0
    assert raw[0xB9C0 + 0x560:0xB9C0 + 0x567] == b"System\0"
    assert u64(0xC640 + 0x4C0) == FRAMES[2][0] - 0x1CC
    assert (arm.process_name, arm.process_id, arm.thread_id) == ("System", 4, u64(0xC640 + 0x4F0))
    t = arm.thread
    assert t.stack_limit <= FRAMES[0][1] < t.stack_base           # the crash SP lies on this thread's stack
    assert not [w for w in arm.warnings if "process and thread" in str(w)]
