"""The stack walker on hand-built stacks: cfi, trap frames, scanning, naming, bounds; hypothesis robustness."""
from __future__ import annotations

import struct
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dumpkit.model import Context, Module, ModuleList
from dumpkit.pe import PEImage
from dumpkit.unwind import ends_with_call, walk_stack
from tests._pe_synth import (FakeMemory, SynthPE, alloc_large, alloc_small, machframe, push, save_nonvol,
                             set_fpreg, unwind_info)

BASE = 0xFFFFF80600000000
STK = 0xFFFFB00000000000
S = STK + 0x1000


class Images:
    def __init__(self, img):
        self.img = img

    def image_for(self, module):
        return self.img if module.name == "synth.sys" else None


def call_rel32(at: int, target: int) -> bytes:
    return b"\xe8" + struct.pack("<i", target - (at + 5))


def build():
    """A (leaf-ish, alloc 0x28) <- B (push rbx; sub rsp,0x20; call A at 0x1120) <- C (call [rip] at 0x1220)."""
    pe = SynthPE()
    pe.func(0x1000, 0x1080, unwind_info(alloc_small(4, 0x28), 4))
    pe.func(0x1100, 0x1180, unwind_info(alloc_small(5, 0x20) + push(1, "rbx"), 5))
    pe.func(0x1200, 0x1280, unwind_info(alloc_small(4, 0x18), 4))
    pe.put(0x1120, call_rel32(0x1120, 0x1000))
    pe.put(0x1220, b"\xff\x15" + struct.pack("<i", 0x100))
    pe.exports = [(0x1000, "FuncA"), (0x1100, "FuncB"), (0x1200, "FuncC")]
    return pe.build()


DATA = build()
IMG = PEImage.from_bytes(DATA, name="synth.sys")
MODS = ModuleList([Module("synth.sys", BASE, len(DATA), timestamp=0x5F000000),
                   Module("other.sys", BASE + 0x100000, 0x10000)])


def stack_memory(with_image=True):
    mem = FakeMemory([(STK, bytes(0x4000))])
    if with_image:
        mem.add(BASE, DATA)
    mem.q(S + 0x08, BASE + 0x1010)            # decoy: in the module, but not after a call
    mem.q(S + 0x28, BASE + 0x1125)            # A's return address into B
    mem.q(S + 0x50, 0xB0B0)                   # B's saved rbx
    mem.q(S + 0x58, BASE + 0x1226)            # B's return address into C
    mem.q(S + 0x78, 0)                        # C returns to 0: end of the stack
    return mem


def ctx():
    return Context({"rip": BASE + 0x1040, "rsp": S, "rbx": 0x1234, "rbp": 0}, "header")


def test_cfi_walk():
    stack = walk_stack(stack_memory(), ctx(), MODS, Images(IMG))
    assert [(f.instruction - BASE, f.child_sp - S, f.trust) for f in stack] == [
        (0x1040, 0, "context"), (0x1125, 0x30, "cfi"), (0x1226, 0x60, "cfi")]
    assert [f.return_address for f in stack] == [BASE + 0x1125, BASE + 0x1226, 0]
    assert [f.call_site for f in stack] == ["synth!FuncA+0x40", "synth!FuncB+0x25", "synth!FuncC+0x26"]
    assert stack[2].context["rbx"] == 0xB0B0 and "rbx" in stack[2].context.valid
    assert "rax" not in stack[1].context.valid
    assert stack[0].symbol_source == "exports" and stack[0].image_name == "synth.sys"


def test_scan_without_images_validates_calls_from_dump_code():
    stack = walk_stack(stack_memory(), ctx(), MODS, None)
    assert [(f.instruction - BASE, f.child_sp - S, f.trust) for f in stack] == [
        (0x1040, 0, "context"), (0x1125, 0x30, "scan"), (0x1226, 0x60, "scan")]
    assert stack[1].call_site == "synth+0x1125"


def test_scan_without_any_code_accepts_module_addresses():
    stack = walk_stack(stack_memory(with_image=False), ctx(), MODS, None)
    # the decoy cannot be told apart without code bytes
    assert stack[1].instruction == BASE + 0x1010 and stack[1].trust == "scan"


def test_frame_pointer_label():
    mem = stack_memory()
    mem.q(S + 0x20, S + 0x100)                # [rbp] = caller's rbp; [rbp+8] = the return address
    c = ctx()
    c.regs["rbp"] = S + 0x20
    stack = walk_stack(mem, c, MODS, None)
    assert stack[1].trust == "frame_pointer" and stack[1].context["rbp"] == S + 0x100


class FakeResolver:
    def __init__(self):
        self.calls = []

    def resolve(self, module, address):
        self.calls.append(address)
        return SimpleNamespace(symbol="Named", offset=address - (module.base + 0x1100) if address > module.base + 0x1100
                               else address - module.base - 0x1000, source="pdb")


def test_resolver_gets_return_address_minus_one():
    r = FakeResolver()
    stack = walk_stack(stack_memory(), ctx(), MODS, Images(IMG), resolver=r)
    assert r.calls[:2] == [BASE + 0x1040, BASE + 0x1124]
    assert stack[1].call_site == "synth!Named+0x25" and stack[1].symbol_source == "pdb"


def test_unloaded_module_and_unknown_address():
    mods = ModuleList([Module("gone.sys", BASE, len(DATA), unloaded=True)])
    stack = walk_stack(stack_memory(), ctx(), mods, Images(IMG), max_frames=1)
    assert stack[0].call_site == "<Unloaded_gone.sys>+0x1040"
    stack = walk_stack(stack_memory(), Context({"rip": 0x12345678, "rsp": S}), ModuleList([]), None, max_frames=1)
    assert stack[0].call_site == "0x12345678"


def test_trap_frame_through_walker():
    """Handler with PUSH_MACHFRAME(err): the interrupted frame gets TrapFrame and the trap frame's volatiles."""
    pe = SynthPE()
    slots = save_nonvol(0x1D, "rbx", 0x150) + set_fpreg(0x10) + alloc_large(8, 0x158) + push(1, "rbp") \
        + machframe(0, True)
    pe.func(0x1000, 0x1080, unwind_info(slots, 0x1D, frame_reg="rbp", frame_off=0x80))
    data = pe.build()
    img = PEImage.from_bytes(data, name="synth.sys")
    mods = ModuleList([Module("synth.sys", BASE, len(data))])
    mem = FakeMemory([(STK, bytes(0x4000)), (BASE, data)])
    E = S
    mem.q(E + 0x30, 0xAAAA)                   # KTRAP_FRAME.Rax
    mem.q(E + 0x38, 0xCCCC)                   # Rcx
    mem.q(E + 0x150, 0xB8B8)
    mem.q(E + 0x158, 0xB9B9)
    mem.q(E + 0x168, BASE + 0x1050)           # interrupted: somewhere without unwind data (leaf)
    mem.q(E + 0x170, 0x10)
    mem.q(E + 0x178, 0x10282)
    mem.q(E + 0x180, S + 0x800)
    mem.q(E + 0x188, 0x18)
    mem.q(S + 0x800, 0)                       # the leaf returns to 0
    c = Context({"rip": BASE + 0x1040, "rsp": E - 0x40, "rbp": E + 0x80}, "header")
    stack = walk_stack(mem, c, mods, Images(img))
    assert len(stack) == 2
    f = stack[1]
    assert f.instruction == BASE + 0x1050 and f.child_sp == S + 0x800 and f.trap_frame == E
    assert f.context["rax"] == 0xAAAA and f.context["rcx"] == 0xCCCC and f.context["rbx"] == 0xB8B8
    assert {"rax", "rcx", "rbx", "rbp"} <= f.context.valid
    assert stack[0].return_address == BASE + 0x1050


def test_walks_end():
    mem = stack_memory()
    # max_frames
    assert len(walk_stack(mem, ctx(), MODS, Images(IMG), max_frames=2)) == 2
    # a return address equal to itself at the same SP (self loop) stops on non-increasing SP
    loop = FakeMemory([(STK, bytes(0x4000)), (BASE, DATA)])
    for k in range(0, 0x800, 8):
        loop.q(S + k, BASE + 0x1125)
    stack = walk_stack(loop, Context({"rip": BASE + 0x1125, "rsp": S}), MODS, Images(IMG), max_frames=500)
    assert len(stack) < 500 and all(b.child_sp > a.child_sp for a, b in zip(stack, stack[1:]))
    # stack range
    stack = walk_stack(mem, ctx(), MODS, Images(IMG), stack_range=(S, S + 0x40))
    assert len(stack) == 2
    # read budget: stops quietly
    stack = walk_stack(mem, ctx(), MODS, None, read_budget=0x10)
    assert len(stack) >= 1


@pytest.mark.parametrize("hexcode,ok", [
    ("e800000000", True),                      # call rel32
    ("ff1500100000", True),                    # call [rip+0x1000]
    ("ffd0", True),                            # call rax
    ("41ffd3", True),                          # call r11
    ("ff5008", True),                          # call [rax+8]
    ("ff142400", False),                       # not ending at ra
    ("ff1424", True),                          # call [rsp]
    ("4883c428c3", False),
    ("90909090c3", False),
])
def test_ends_with_call(hexcode, ok):
    code = bytes.fromhex(hexcode)
    code = b"\x90" * (7 - len(code)) + code if len(code) < 7 else code
    assert ends_with_call(code, 0x401000) is ok


# ---------------------------------------------------------------- hypothesis: garbage never hangs or raises
@settings(max_examples=120, deadline=3000, suppress_health_check=[HealthCheck.too_slow])
@given(stack_bytes=st.binary(min_size=0x200, max_size=0x200),
       words=st.lists(st.integers(0, 0x2FF), max_size=16),
       xdata=st.binary(min_size=8, max_size=40),
       rip_off=st.integers(0, 0x1100),
       rbp_off=st.integers(-0x100, 0x400))
def test_garbage_stacks_and_unwind_data(stack_bytes, words, xdata, rip_off, rbp_off):
    pe = SynthPE()
    pe.func(0x1000, 0x1080, xdata[:4] + xdata[4:] if len(xdata) >= 4 else xdata)
    pe.func(0x1100, 0x1180, unwind_info(alloc_small(5, 0x20) + push(1, "rbx"), 5))
    pe.put(0x1120, call_rel32(0x1120, 0x1000))
    try:
        data = pe.build()
    except AssertionError:
        return
    img = PEImage.from_bytes(data, name="synth.sys")
    buf = bytearray(stack_bytes)
    for w in words:                            # sprinkle plausible return addresses and self pointers
        pos = (w * 8) % (len(buf) - 8)
        val = (BASE + 0x1125) if w & 1 else (S + (w & 0xFF) * 8)
        buf[pos:pos + 8] = struct.pack("<Q", val)
    mem = FakeMemory([(S, bytes(buf)), (BASE, data)])
    c = Context({"rip": BASE + rip_off, "rsp": S, "rbp": S + rbp_off, "rbx": 1}, "header")
    stack = walk_stack(mem, c, MODS, Images(img), max_frames=64, read_budget=0x8000)
    assert 1 <= len(stack) <= 64
    assert mem.bytes <= 0x8000 + 0x1000
    for a, b in zip(stack, stack[1:]):
        assert b.child_sp != a.child_sp
