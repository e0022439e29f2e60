"""Hand-assembled UNWIND_INFO for every opcode, with hand-computed expected registers.

Each test lays out a stack by hand the way the described prolog would have left
it, then checks what virtual_unwind recovers.  The expected values come from
the layout written here, not from the unwinder.
"""
from __future__ import annotations

import struct

import pytest

from tests._pe_synth import (FakeMemory, SynthPE, alloc_large, alloc_small, epilog, machframe, push, save_nonvol,
                       save_xmm, set_fpreg, unwind_info)
from dumpkit.errors import UnwindError
from dumpkit.pe import PEImage, decode_unwind_info
from dumpkit.pe.unwindinfo import epilogs_v2
from dumpkit.unwind import unwind_leaf, virtual_unwind

BASE = 0xFFFFF80100000000
STK = 0xFFFFA00000000000
STACK_SIZE = 0x90000
S = STK + 0x1000          # RSP at the PC under test
RA = BASE + 0x5005        # some return address


def make(pe: SynthPE) -> PEImage:
    return PEImage.from_bytes(pe.build(), name="synth.sys")


def stack() -> FakeMemory:
    return FakeMemory([(STK, bytes(STACK_SIZE))])


def regs(**kw):
    r = {n: 0x1111 * (i + 1) for i, n in enumerate(("rax", "rcx", "rdx", "rbx", "rbp", "rsi", "rdi", "r8", "r9",
                                                    "r10", "r11", "r12", "r13", "r14", "r15"))}
    r.update(kw)
    return r


# ---------------------------------------------------------------- PUSH_NONVOL + ALLOC_SMALL
def _push_alloc_image():
    # push rbx (ends at 1); sub rsp, 0x20 (ends at 5)
    pe = SynthPE().func(0x1000, 0x1100, unwind_info(alloc_small(5, 0x20) + push(1, "rbx"), 5))
    return make(pe)


def test_push_and_alloc_small_after_prolog():
    img, mem = _push_alloc_image(), stack()
    mem.q(S + 0x20, 0xB0B0)          # saved rbx
    mem.q(S + 0x28, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1050, rsp=S), mem.read_virtual)
    assert st.regs["rip"] == RA and st.regs["rsp"] == S + 0x30 and st.regs["rbx"] == 0xB0B0
    assert not st.machine_frame and not st.epilog and st.restored == ("rbx",)


def test_prolog_offset_skips_unexecuted_codes():
    img, mem = _push_alloc_image(), stack()
    mem.q(S, 0xB0B0)                  # only 'push rbx' has run
    mem.q(S + 8, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1001, rsp=S), mem.read_virtual)
    assert (st.regs["rip"], st.regs["rsp"], st.regs["rbx"]) == (RA, S + 0x10, 0xB0B0)
    mem.q(S, RA)                      # at the first byte nothing has run
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1000, rsp=S), mem.read_virtual)
    assert (st.regs["rip"], st.regs["rsp"], st.regs["rbx"]) == (RA, S + 8, regs()["rbx"])


def test_return_address_lookup_uses_rip_minus_one():
    # a call as the very last instruction: the return address is the next function's first byte
    pe = SynthPE().func(0x1000, 0x1010, unwind_info(alloc_small(4, 0x28), 4))
    pe.func(0x1010, 0x1020, unwind_info([], 0))
    img, mem = make(pe), stack()
    mem.q(S + 0x28, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1010, rsp=S), mem.read_virtual, exact=False)
    assert st.function.begin == 0x1000 and st.regs["rsp"] == S + 0x30 and st.regs["rip"] == RA


# ---------------------------------------------------------------- ALLOC_LARGE (both forms)
@pytest.mark.parametrize("size,far", [(0x1000, False), (0x7FFF8, False), (0x12340, True)])
def test_alloc_large(size, far):
    pe = SynthPE().func(0x1000, 0x1100, unwind_info(alloc_large(7, size, far), 7))
    img, mem = make(pe), stack()
    mem.q(S + size, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1020, rsp=S), mem.read_virtual)
    assert st.regs["rip"] == RA and st.regs["rsp"] == S + size + 8


# ---------------------------------------------------------------- SET_FPREG
def test_set_fpreg_with_alloca():
    # push rbp (1); sub rsp,0x40 (5); lea rbp,[rsp+0x20] (10); later alloca moves rsp down
    info = unwind_info(set_fpreg(10) + alloc_small(5, 0x40) + push(1, "rbp"), 10, frame_reg="rbp", frame_off=0x20)
    img, mem = make(SynthPE().func(0x1000, 0x1100, info)), stack()
    rbp = S + 0x200
    est = rbp - 0x20                  # rsp right after the prolog
    mem.q(est + 0x40, 0xBEEF)         # saved rbp
    mem.q(est + 0x48, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1080, rsp=S, rbp=rbp), mem.read_virtual)
    assert (st.regs["rip"], st.regs["rsp"], st.regs["rbp"]) == (RA, est + 0x50, 0xBEEF)


def test_set_fpreg_inside_prolog_uses_rsp():
    # PC after 'sub rsp' but before 'lea rbp': the frame register is not set up yet
    info = unwind_info(save_nonvol(14, "rsi", 0x30) + set_fpreg(10) + alloc_small(5, 0x40) + push(1, "rbp"),
                       14, frame_reg="rbp", frame_off=0x20)
    img, mem = make(SynthPE().func(0x1000, 0x1100, info)), stack()
    mem.q(S + 0x40, 0xBEEF)
    mem.q(S + 0x48, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1005, rsp=S, rbp=0xDEAD), mem.read_virtual)
    assert (st.regs["rip"], st.regs["rsp"], st.regs["rbp"]) == (RA, S + 0x50, 0xBEEF)


# ---------------------------------------------------------------- SAVE_NONVOL / _FAR, SAVE_XMM128 / _FAR
def test_save_nonvol_and_xmm_relative_to_establisher():
    # sub rsp,0x58 (4); mov [rsp+0x60],rsi (9); movaps [rsp+0x20],xmm6 (14)
    info = unwind_info(save_xmm(14, 6, 0x20) + save_nonvol(9, "rsi", 0x60) + alloc_small(4, 0x58), 14)
    img, mem = make(SynthPE().func(0x1000, 0x1100, info)), stack()
    mem.q(S + 0x60, 0x5151)
    mem.write(S + 0x20, (0x0123456789ABCDEF_FEDCBA9876543210).to_bytes(16, "little"))
    mem.q(S + 0x58, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1040, rsp=S), mem.read_virtual)
    assert st.regs["rsi"] == 0x5151 and st.regs["xmm6"] == 0x0123456789ABCDEF_FEDCBA9876543210
    assert st.regs["rsp"] == S + 0x60 and st.regs["rip"] == RA


def test_far_forms():
    size = 0x10010
    info = unwind_info(save_xmm(20, 7, 0x10020, far=True) + save_nonvol(14, "rdi", 0x10018, far=True)
                       + alloc_large(7, size, far=True), 20)
    img, mem = make(SynthPE().func(0x1000, 0x1100, info)), stack()
    mem.q(S + 0x10018, 0xD1D1)
    mem.write(S + 0x10020, (7).to_bytes(16, "little"))
    mem.q(S + size, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1040, rsp=S), mem.read_virtual)
    assert (st.regs["rdi"], st.regs["xmm7"], st.regs["rsp"], st.regs["rip"]) == (0xD1D1, 7, S + size + 8, RA)


# ---------------------------------------------------------------- PUSH_MACHFRAME
@pytest.mark.parametrize("errcode", [False, True])
def test_machine_frame_plain(errcode):
    info = unwind_info(alloc_small(2, 0x10) + machframe(0, errcode), 2)
    img, mem = make(SynthPE().func(0x1000, 0x1100, info)), stack()
    slot = S + 0x10 + (8 if errcode else 0)
    interrupted_pc, interrupted_sp = BASE + 0x2345, S + 0x800
    mem.q(slot, interrupted_pc)
    mem.q(slot + 8, 0x10)
    mem.q(slot + 0x10, 0x10246)
    mem.q(slot + 0x18, interrupted_sp)
    mem.q(slot + 0x20, 0x18)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1010, rsp=S), mem.read_virtual)
    assert st.machine_frame and st.regs["rip"] == interrupted_pc and st.regs["rsp"] == interrupted_sp
    assert st.regs["eflags"] == 0x10246
    assert st.trap_frame == slot - 0x168


def test_trap_handler_shape():
    """PUSH_MACHFRAME(err) -> push rbp -> sub rsp,0x158 -> lea rbp,[rsp+0x80] -> movaps xmm6 -> mov rbx."""
    slots = (save_nonvol(0x1D, "rbx", 0x150) + save_xmm(0x15, 6, 0x40) + set_fpreg(0x10)
             + alloc_large(8, 0x158) + push(1, "rbp") + machframe(0, True))
    info = unwind_info(slots, 0x1D, frame_reg="rbp", frame_off=0x80)
    img, mem = make(SynthPE().func(0x1000, 0x1100, info)), stack()
    E = S                                   # the trap handler's RSP = its KTRAP_FRAME
    mem.q(E + 0x150, 0xB8B8)
    mem.write(E + 0x40, (0x66).to_bytes(16, "little"))
    mem.q(E + 0x158, 0xB9B9)                # pushed rbp
    mem.q(E + 0x160, 0xE)                   # error code
    mem.q(E + 0x168, BASE + 0x3000)         # interrupted RIP
    mem.q(E + 0x170, 0x10)
    mem.q(E + 0x178, 0x10282)
    mem.q(E + 0x180, S + 0x900)
    mem.q(E + 0x188, 0x18)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1050, rsp=E - 0x100, rbp=E + 0x80), mem.read_virtual)
    assert st.machine_frame and st.trap_frame == E
    assert (st.regs["rip"], st.regs["rsp"], st.regs["rbp"], st.regs["rbx"], st.regs["xmm6"]) == \
        (BASE + 0x3000, S + 0x900, 0xB9B9, 0xB8B8, 0x66)


# ---------------------------------------------------------------- chained info
def test_chained_fragment():
    parent = (0x1100, 0x1200, None)
    pinfo = unwind_info(alloc_small(5, 0x20) + push(1, "rbx"), 5)
    pe = SynthPE().func(0x1100, 0x1200, pinfo)
    built = pe.build()
    parent_xdata = struct.unpack_from("<III", built, 0xC000)[2]
    frag = unwind_info(push(2, "rsi"), 2, flags=4, chained=(0x1100, 0x1200, parent_xdata))
    pe.func(0x1400, 0x1420, frag)
    img, mem = make(pe), stack()
    mem.q(S, 0x5151)                  # fragment's push rsi
    mem.q(S + 0x28, 0xB0B0)           # parent's push rbx (after the 0x20 allocation)
    mem.q(S + 0x30, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1408, rsp=S - 8 + 8), mem.read_virtual)
    assert (st.regs["rsi"], st.regs["rbx"], st.regs["rsp"], st.regs["rip"]) == (0x5151, 0xB0B0, S + 0x38, RA)
    assert img.primary_function(img.function_for(0x1408)).begin == 0x1100
    del parent


def test_chain_loop_is_bounded():
    # a record chained to itself
    pe = SynthPE()
    pe.func(0x1000, 0x1100, unwind_info(alloc_small(4, 0x20), 4))
    xdata = struct.unpack_from("<III", pe.build(), 0xC000)[2]
    pe.functions[0] = (0x1000, 0x1100, unwind_info(alloc_small(4, 0x20), 4, flags=4, chained=(0x1000, 0x1100, xdata)))
    img, mem = make(pe), stack()
    with pytest.raises(UnwindError, match="chained"):
        virtual_unwind(img, BASE, regs(rip=BASE + 0x1050, rsp=S), mem.read_virtual)


def test_indirect_runtime_function():
    pe = SynthPE().func(0x1000, 0x1100, unwind_info(alloc_small(4, 0x20), 4))
    # the second entry points (|1) at the first RUNTIME_FUNCTION in .pdata
    pe.func(0x1200, 0x1300, 0xC000 | 1)
    img, mem = make(pe), stack()
    mem.q(S + 0x20, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1250, rsp=S), mem.read_virtual)
    assert st.regs["rsp"] == S + 0x28 and st.regs["rip"] == RA


# ---------------------------------------------------------------- v1 epilogs (pattern detection)
def _epilog_image(tail: bytes, frame_reg: str = "", frame_off: int = 0, extra=()):
    # push r14 (2); push rbx (3); sub rsp,0x28 (7); body; epilog at 0x1040
    info = unwind_info(alloc_small(7, 0x28) + push(3, "rbx") + push(2, "r14"), 7)
    pe = SynthPE().func(0x1000, 0x1060, info).put(0x1040, tail)
    for e in extra:
        pe.func(*e)
    return make(pe)


def test_v1_epilog_at_add_rsp():
    img, mem = _epilog_image(bytes.fromhex("4883c428") + b"\x5b\x41\x5e\xc3"), stack()
    mem.q(S + 0x28, 0xB0B0)
    mem.q(S + 0x30, 0xE0E0)
    mem.q(S + 0x38, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1040, rsp=S), mem.read_virtual)
    assert st.epilog and (st.regs["rbx"], st.regs["r14"], st.regs["rsp"], st.regs["rip"]) == \
        (0xB0B0, 0xE0E0, S + 0x40, RA)


def test_v1_epilog_mid_pops():
    # PC at 'pop r14': rbx already popped, the prolog replay would be wrong here
    img, mem = _epilog_image(bytes.fromhex("4883c428") + b"\x5b\x41\x5e\xc3"), stack()
    mem.q(S, 0xE0E0)
    mem.q(S + 8, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1045, rsp=S, rbx=0x3333), mem.read_virtual)
    assert st.epilog and (st.regs["r14"], st.regs["rbx"], st.regs["rsp"], st.regs["rip"]) == \
        (0xE0E0, 0x3333, S + 0x10, RA)


def test_v1_epilog_tail_jump_outside():
    jmp = b"\xe9" + struct.pack("<i", 0x3000 - (0x1044 + 3 + 5))      # jmp to 0x3000, outside
    img, mem = _epilog_image(bytes.fromhex("4883c428") + b"\x5b\x41\x5e" + jmp), stack()
    mem.q(S + 0x28, 1)
    mem.q(S + 0x30, 2)
    mem.q(S + 0x38, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1040, rsp=S), mem.read_virtual)
    assert st.epilog and st.regs["rip"] == RA and st.regs["rsp"] == S + 0x40


def test_v1_jump_inside_is_not_epilog():
    jmp = b"\xeb\xf0"                                                 # short jmp back into the function
    img, mem = _epilog_image(bytes.fromhex("4883c428") + b"\x5b" + jmp), stack()
    mem.q(S + 0x28, 0xB0B0)
    mem.q(S + 0x30, 0xE0E0)
    mem.q(S + 0x38, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1040, rsp=S), mem.read_virtual)
    assert not st.epilog and st.regs["rip"] == RA and st.regs["rbx"] == 0xB0B0


def test_v1_epilog_lea_rsp_frame_register():
    # push rbp (1); sub rsp,0x30 (5); lea rbp,[rsp+0x20] (10) ... lea rsp,[rbp+0x10]; pop rbp; ret
    info = unwind_info(set_fpreg(10) + alloc_small(5, 0x30) + push(1, "rbp"), 10, frame_reg="rbp", frame_off=0x20)
    pe = SynthPE().func(0x1000, 0x1060, info).put(0x1040, bytes.fromhex("488d6510") + b"\x5d\xc3")
    img, mem = make(pe), stack()
    rbp = S + 0x100
    mem.q(rbp + 0x10, 0xBEEF)
    mem.q(rbp + 0x18, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1040, rsp=S, rbp=rbp), mem.read_virtual)
    assert st.epilog and (st.regs["rbp"], st.regs["rsp"], st.regs["rip"]) == (0xBEEF, rbp + 0x20, RA)


# ---------------------------------------------------------------- v2 epilogs (UWOP_EPILOG)
def _v2_image():
    # push rsi (1); push rdi (2); sub rsp,0x28 (6). End 0x1830; epilogs of 3 bytes (pop rdi; pop rsi; ret)
    # at End-3 (flag in the first code) and at End-0x10.  The bytes are int3: v2 must not look at code.
    slots = epilog(3, 1) + epilog(0x10, 0) + alloc_small(6, 0x28) + push(2, "rdi") + push(1, "rsi")
    info = unwind_info(slots, 6, version=2)
    return make(SynthPE().func(0x1800, 0x1830, info)), info


def test_v2_epilog_descriptors_decode():
    img, raw = _v2_image()
    info = decode_unwind_info(raw, 0)
    assert epilogs_v2(info, 0x1830) == [(0x182D, 3), (0x1820, 3)]


@pytest.mark.parametrize("pc,expect_rdi,rsi_at,ra_at", [
    (0x182D, True, 8, 16),       # at 'pop rdi'
    (0x182E, False, 0, 8),       # at 'pop rsi'
    (0x182F, False, None, 0),    # at 'ret'
    (0x1821, False, 0, 8),       # second epilog, at 'pop rsi'
])
def test_v2_epilog_positions(pc, expect_rdi, rsi_at, ra_at):
    img, _ = _v2_image()
    mem = stack()
    if expect_rdi:
        mem.q(S, 0xD1D1)
    if rsi_at is not None:
        mem.q(S + rsi_at, 0x5151)
    mem.q(S + ra_at, RA)
    r = regs(rip=BASE + pc, rsp=S)
    st = virtual_unwind(img, BASE, r, mem.read_virtual)
    assert st.epilog and st.regs["rip"] == RA and st.regs["rsp"] == S + ra_at + 8
    assert st.regs["rdi"] == (0xD1D1 if expect_rdi else r["rdi"])
    assert st.regs["rsi"] == (0x5151 if rsi_at is not None else r["rsi"])


def test_v2_outside_epilog_uses_prolog_codes():
    img, _ = _v2_image()
    mem = stack()
    mem.q(S + 0x28, 0xD1D1)
    mem.q(S + 0x30, 0x5151)
    mem.q(S + 0x38, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x1810, rsp=S), mem.read_virtual)
    assert not st.epilog and (st.regs["rdi"], st.regs["rsi"], st.regs["rsp"], st.regs["rip"]) == \
        (0xD1D1, 0x5151, S + 0x40, RA)


# ---------------------------------------------------------------- leaf functions
def test_leaf_function():
    img, mem = _push_alloc_image(), stack()
    mem.q(S, RA)
    st = virtual_unwind(img, BASE, regs(rip=BASE + 0x2000, rsp=S), mem.read_virtual)
    assert st.leaf and st.regs["rip"] == RA and st.regs["rsp"] == S + 8
    assert unwind_leaf(regs(rip=0, rsp=S), mem.read_virtual).regs["rip"] == RA
    with pytest.raises(UnwindError):       # a return address must have a function entry
        virtual_unwind(img, BASE, regs(rip=BASE + 0x2000, rsp=S), mem.read_virtual, exact=False)


def test_unreadable_stack_is_unwind_error():
    img = _push_alloc_image()
    with pytest.raises(UnwindError):
        virtual_unwind(img, BASE, regs(rip=BASE + 0x1050, rsp=0x1000), FakeMemory().read_virtual)


# ---------------------------------------------------------------- decoding errors
@pytest.mark.parametrize("raw,msg", [
    (bytes([3, 0, 0, 0]), "version"),
    (bytes([1, 0, 1, 0]) + struct.pack("<HH", 0x0B00, 0), "unknown unwind op"),
    (bytes([1, 0, 1, 0]) + struct.pack("<H", 0x0100) + b"\0\0", "needs 2 slots"),
    (bytes([1, 0, 2, 0]) + struct.pack("<HH", 0x2100, 0), "OpInfo"),
    (bytes([1, 0, 4, 0]) + b"\0\0", "cut short"),
    (bytes([1 | (4 << 3), 0, 0, 0]), "chained"),
])
def test_decode_errors(raw, msg):
    with pytest.raises(UnwindError, match=msg):
        decode_unwind_info(raw, 0x100)


# ---------------------------------------------------------------- hypothesis: malformed unwind data
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=2000)
@given(st.binary(min_size=0, max_size=80), st.binary(min_size=0, max_size=16))
def test_decode_random_records(raw, tail):
    try:
        info = decode_unwind_info(raw, 0, tail=tail)
    except UnwindError:
        return
    assert info.version in (1, 2) and len(info.codes) <= info.count <= 255


@settings(max_examples=200, deadline=2000)
@given(st.binary(min_size=4, max_size=60), st.integers(0, 0x120), st.binary(min_size=0x100, max_size=0x100),
       st.booleans())
def test_virtual_unwind_random_records(raw, pc_off, stack_bytes, exact):
    raw = bytes([(raw[0] & 0xF8) | (1 + (raw[0] & 1))]) + raw[1:]      # version 1 or 2
    img = make(SynthPE().func(0x1000, 0x1100, raw).put(0x1000, stack_bytes))
    mem = FakeMemory([(S, stack_bytes)])
    try:
        st_ = virtual_unwind(img, BASE, regs(rip=BASE + 0x1000 + pc_off, rsp=S, rbp=S + 0x40), mem.read_virtual,
                             exact=exact)
    except UnwindError:
        return
    assert 0 <= st_.regs["rsp"] <= 0xFFFFFFFFFFFFFFFF
