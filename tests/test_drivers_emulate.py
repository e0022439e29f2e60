"""The emulated case-2 crash (fixtures/emulate.py): the run itself must be the truth it claims to be.

Nothing here uses dumpkit: the checks compare the emulator's records with the
sources (EXPECTED_CHAINS, the structure layouts) and with each other.
"""
from __future__ import annotations

import struct
import time

import capstone
import pytest

pytest.importorskip("unicorn")

from fixtures import emulate as E  # noqa: E402

ALL_NONVOL = E.NONVOLATILE_GPRS + E.XMM_NONVOLATILE
_MD = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)


@pytest.fixture(scope="module", params=[0, 1], ids=["mode0", "mode1"])
def em(request):
    return E.run_case2(request.param)


@pytest.fixture(scope="module")
def em0():
    return E.run_case2(0)


def _insn(em, va):
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.detail = True
    return next(md.disasm(em.read(va, 16), va, 1))


def test_fault_in_ndislike_at_the_expected_function(em):
    f = em.fault
    assert em.symbolize(f["rip"]) == "ndislike!ndisValidateFilterBlock"
    assert f["address"] == E.FAULT_ADDRESS
    insn = _insn(em, f["rip"])
    assert insn.mnemonic == "mov" and "[rcx + 8]" in insn.op_str       # Block->Signature
    assert f["rcx"] == E.STALE_HANDLE


def test_chain_equals_the_source(em):
    assert em.chain == E.EXPECTED_CHAINS[em.mode]
    assert em.frames[E.TRAP_FRAME_INDEX].kind == "trap"
    assert em.frames[E.TRAP_FRAME_INDEX].trap_frame == em.trap_frame
    assert [f.index for f in em.frames if f.trap_frame] == [E.TRAP_FRAME_INDEX]
    assert em.frames[-1].return_address == 0


def test_frames_are_consistent(em):
    frames = em.frames
    assert frames[0].kind == "context" and frames[0].child_sp % 16 == 8       # at KeBugCheckEx's first instruction
    for a, b in zip(frames, frames[1:]):
        assert b.child_sp > a.child_sp
        assert a.return_address == b.instruction
        if b.kind == "call":
            ok = any(i.mnemonic == "call" and i.address + i.size == b.instruction
                     for n in (2, 3, 4, 5, 6, 7)
                     for i in _MD.disasm(em.read(b.instruction - n, n), b.instruction - n, 1))
            assert ok, f"no call before {b.instruction:#x}"
            # the callee was entered with the return address on top of the stack
            assert struct.unpack("<Q", em.read(b.child_sp - 8, 8))[0] == b.instruction
    # the thread's initial non-volatile registers survive to the outermost frame
    outer = frames[-1].regs
    for k in ALL_NONVOL:
        assert outer[k] == E.INITIAL_REGS[k], k


def test_bugcheck_parameters_and_records(em):
    code, p1, p2, p3, p4 = em.bugcheck
    f = em.fault
    assert (code, p1, p2) == (0x7E, 0xC0000005, f["rip"])
    assert em.stack_limit <= p3 < em.stack_base and em.stack_limit <= p4 < em.stack_base
    # EXCEPTION_RECORD (KiDispatchException)
    exc_code, flags, rec, addr, nparams = struct.unpack_from("<IIQQI", em.read(p3, 0x98))
    info = struct.unpack_from("<2Q", em.read(p3 + 0x20, 16))
    assert (exc_code, flags, rec, addr, nparams) == (0xC0000005, 0, 0, f["rip"], 2)
    assert info == (0, E.FAULT_ADDRESS)
    # CONTEXT: every register equals the emulator's at the fault
    ctx = em.read(p4, 0x4D0)
    names = ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
             "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip")
    regs = dict(zip(names, struct.unpack_from("<17Q", ctx, 0x78)))
    for k in names:
        assert regs[k] == f[k], k
    for i in range(16):
        assert int.from_bytes(ctx[0x1A0 + 16 * i:0x1B0 + 16 * i], "little") == f[f"xmm{i}"], f"xmm{i}"
    assert struct.unpack_from("<HH", ctx, 0x38)[0] == E.SEG_CS
    assert struct.unpack_from("<I", ctx, 0x44)[0] == f["rflags"]


def test_trap_frame_contents(em):
    tf = em.read(em.trap_frame, 0x190)
    f = em.fault
    q = lambda off: struct.unpack_from("<Q", tf, off)[0]  # noqa: E731
    assert q(0x160) == 0                                   # error code: read, not present
    assert (q(0x168), q(0x170), q(0x180), q(0x188)) == (f["rip"], E.SEG_CS, f["rsp"], E.SEG_SS)
    assert q(0x178) & 0xFFFFFFFF == f["rflags"]
    for name, off in (("rax", 0x30), ("rcx", 0x38), ("rdx", 0x40), ("r8", 0x48), ("r9", 0x50),
                      ("r10", 0x58), ("r11", 0x60), ("rbx", 0x140), ("rdi", 0x148), ("rsi", 0x150),
                      ("rbp", 0x158)):
        assert q(off) == f[name], name
    assert q(0xD0) == E.FAULT_ADDRESS
    assert (em.trap_frame + 0x190) % 16 == 0               # the CPU aligned the stack before pushing
    # the KiPageFault frame's Child-SP is the exception frame below the trap frame
    assert em.frames[E.TRAP_FRAME_INDEX - 1].child_sp == em.exception_frame


def test_far_frame_only_in_mode1(em):
    assert ("lwffilter!LwfFarFrame" in em.chain) == (em.mode == 1)
    if em.mode == 1:
        i = em.chain.index("lwffilter!LwfFarFrame")
        assert em.frames[i + 1].child_sp - em.frames[i].child_sp > 0x100000


def test_module_list_and_kernel_structures(em0):
    mods = em0.module_dicts()
    assert [m["name"] for m in mods] == ["ntlike.sys", "ndislike.sys", "lwffilter.sys"]
    import pefile
    for m in mods:
        pe = pefile.PE(str(E.image_paths(m["name"])["sys"]), fast_load=True)
        assert (m["size"], m["timestamp"], m["checksum"]) == (
            pe.OPTIONAL_HEADER.SizeOfImage, pe.FILE_HEADER.TimeDateStamp, pe.OPTIONAL_HEADER.CheckSum)
        assert em0.read(m["base"], 2) == b"MZ"
    # PsLoadedModuleList walks to the same three entries
    head = em0.addresses["ps_loaded_module_list"]
    seen, e = [], struct.unpack("<Q", em0.read(head, 8))[0]
    while e != head and len(seen) < 10:
        base, _, size = struct.unpack_from("<QQI", em0.read(e + 0x30, 20))
        seen.append((base, size, struct.unpack("<I", em0.read(e + 0x9C, 4))[0]))
        e = struct.unpack("<Q", em0.read(e, 8))[0]
    assert seen == [(m["base"], m["size"], m["timestamp"]) for m in mods]
    assert em0.read(em0.addresses["kdbg"] + 0x10, 4) == b"KDBG"


def test_emulation_is_fast_and_deterministic():
    t = time.perf_counter()
    a = E.run_case2(0)
    assert time.perf_counter() - t < 5
    b = E.run_case2(0)
    assert a.pages == b.pages and a.bugcheck_context == b.bugcheck_context
    assert [(f.instruction, f.child_sp, f.regs) for f in a.frames] == [(f.instruction, f.child_sp, f.regs) for f in b.frames]


def test_dumps_build_fast(tmp_path):
    pytest.importorskip("fixtures.factory")
    t = time.perf_counter()
    out = E.build_case2_dumps(tmp_path)
    assert time.perf_counter() - t < 5
    assert out["expected_chain"] == E.EXPECTED_CHAINS[0]
    assert [s["function"] for s in out["snapshots"]] == list(E.EXPECTED_CHAINS[0])
    full, triage = out["paths"]["full"].read_bytes(), out["paths"]["triage"].read_bytes()
    assert full[:8] == b"PAGEDU64" and struct.unpack_from("<I", full, 0xF98)[0] == 1
    assert triage[:8] == b"PAGEDU64" and struct.unpack_from("<I", triage, 0xF98)[0] == 4
    assert struct.unpack_from("<I", full, 0x38)[0] == 0x7E
    # header CONTEXT = the bugcheck context (rip at KeBugCheckEx, rsp as recorded)
    rsp, = struct.unpack_from("<Q", full, 0x348 + 0x98)
    rip, = struct.unpack_from("<Q", full, 0x348 + 0xF8)
    assert (rip, rsp) == (out["emulation"].bugcheck_context["rip"], out["emulation"].bugcheck_context["rsp"])


def test_committed_dumps_are_current(tmp_path):
    """fixtures/dumps/* must equal a fresh run (else: python -m fixtures.emulate fixtures/dumps)."""
    pytest.importorskip("fixtures.factory")
    out = E.build_case2_dumps(tmp_path)
    for _kind, p in out["paths"].items():
        committed = E.HERE / "dumps" / p.name
        assert committed.exists(), committed
        assert committed.read_bytes() == p.read_bytes(), \
            f"{committed} is stale: regenerate with `python -m fixtures.emulate fixtures/dumps`"
