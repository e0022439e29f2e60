"""x86 stack walking against the truth of an emulated crash.

Truth from outside: ``fixtures/drivers/bin32`` are compiler-built (clang-cl
``--target=i686-pc-windows-msvc``, lld-link, PDBs with FrameData) images whose call
chain is written down from their sources (``fixtures.emulate32.EXPECTED_CHAIN``);
unicorn runs them (x86-32) to a page fault and a bugcheck and records, at every call,
the return address, ESP and EBX/ESI/EDI/EBP.  ``fixtures/factory32.py`` (its own
layouts) writes full and triage dumps of that state, PAE and non-PAE.  Every frame the
walker finds must have the emulator's EIP and ESP, and every register it claims to know
the emulator's value.
"""
from __future__ import annotations

import pickle

import pytest

pytest.importorskip("unicorn")
pytest.importorskip("pefile")

from dumpkit.arch.x86.context import X86Context, context_from_bytes32, context_from_trap_frame32  # noqa: E402
from dumpkit.arch.x86.modules import triage_modules32, walk_loaded_modules32  # noqa: E402
from dumpkit.arch.x86.opener import open_pagedump  # noqa: E402
from dumpkit.arch.x86.walker import undecorate32, walk_stack32  # noqa: E402
from dumpkit.io import Source  # noqa: E402
from dumpkit.pe.provider import DumpMemoryImages  # noqa: E402
from dumpkit.symbolize import Resolver, SymbolPath  # noqa: E402
from fixtures.emulate32 import BIN32, EXPECTED_CHAIN, build_dumps32, run32  # noqa: E402


@pytest.fixture(scope="module")
def em():
    return run32()


@pytest.fixture(scope="module", params=[False, True], ids=["nopae", "pae"])
def dumps(request, em, tmp_path_factory):
    return build_dumps32(tmp_path_factory.mktemp("x86walk"), pae=request.param, em=em)


def _walk(path, symbols: bool):
    parts = open_pagedump(Source.open(path))
    if parts.triage is not None:
        mods, _unl = triage_modules32(parts.triage)
        images = None
    else:
        mods = walk_loaded_modules32(parts.read_virtual, parts.header.ps_loaded_module_list, parts.header.build,
                                     lambda w: pytest.fail(w))
        images = DumpMemoryImages(parts)
    res = Resolver(SymbolPath(str(BIN32) if symbols else "", offline=True), offline=True, images=images)
    ctx = context_from_bytes32(parts.header.context_record, "header")
    return parts, walk_stack32(parts, ctx, mods, images=res, resolver=res)


def test_emulation_follows_the_source_chain(em):
    assert tuple(f.name for f in em.frames) == EXPECTED_CHAIN
    assert em.bugcheck == (0x8E, (0xC0000005, em.trap["eip"], em.trap_frame_va, 0))
    assert em.fault_address == 0xC0DE0000 + 8


@pytest.mark.parametrize("kind", ["full", "triage"])
def test_every_frame_matches_the_emulator(dumps, em, kind):
    _parts, stack = _walk(dumps[kind], symbols=True)
    assert len(stack) == len(em.frames)
    for f, e in zip(stack, em.frames):
        assert (f.instruction, f.child_sp) == (e.eip, e.esp), f"frame {f.index}: {f.call_site}"
        assert f"{f.module}!{f.symbol}" == e.name
        for reg, value in e.regs.items():
            if reg in f.context.valid:
                assert f.context.regs[reg] == value, f"frame {f.index} {reg}"
    # the FPO frames are unwound from the PDB's frame data, the trap frame from the KTRAP_FRAME
    assert [f.trust for f in stack] == ["context"] + ["cfi"] * (len(stack) - 1)
    trapped = stack[3]
    assert trapped.trap_frame == em.trap_frame_va and trapped.symbol == "DrvTouch"
    assert stack[-1].return_address == 0


@pytest.mark.parametrize("kind", ["full", "triage"])
def test_without_symbols_ebp_chain_trap_frame_and_scan_still_agree(dumps, em, kind):
    _parts, stack = _walk(dumps[kind], symbols=False)
    assert [(f.instruction, f.child_sp) for f in stack] == [(e.eip, e.esp) for e in em.frames]
    trusts = [f.trust for f in stack]
    assert trusts[:4] == ["context", "frame_pointer", "frame_pointer", "cfi"]   # EBP chain, then the trap frame
    assert set(trusts[4:]) <= {"scan", "frame_pointer"}                         # junk EBP in DrvProcess


def test_k_layout_is_windbgs_x86_one(dumps, em):
    _parts, stack = _walk(dumps["full"], symbols=True)
    lines = stack.render().splitlines()
    assert lines[0] == " # ChildEBP RetAddr  "
    # ChildEBP of an EBP frame is its EBP; RetAddr the next frame's EIP
    assert lines[1] == f"00 {em.context['ebp']:08x} {em.frames[1].eip:08x} ntlike32!KeBugCheckEx+0x31"
    assert lines[3].startswith(f"02 {em.trap_frame_va:08x} ")                  # KiTrap0E: ChildEBP = trap frame
    assert lines[-1].endswith("ntlike32!KiThreadStartup+0xb") and " 00000000 " in lines[-1]


def test_trap_frame_decoding_uses_the_kernel_mode_esp_rule(dumps, em):
    parts = open_pagedump(Source.open(dumps["full"]))
    ctx = context_from_trap_frame32(parts.read_virtual(em.trap_frame_va, 0x8C), em.trap_frame_va)
    for reg in ("eip", "esp", "ebp", "ebx", "esi", "edi", "eax", "ecx", "edx"):
        assert ctx.regs[reg] == em.trap[reg], reg


def test_modules_from_the_32bit_structures(dumps, em):
    parts = open_pagedump(Source.open(dumps["full"]))
    mods = walk_loaded_modules32(parts.read_virtual, parts.header.ps_loaded_module_list, parts.header.build,
                                 lambda w: pytest.fail(w))
    assert [(m.name, m.base, m.size, m.timestamp, m.path) for m in mods] == \
        [(i.name, i.base, i.size, i.timestamp, i.full_path) for i in em.images]
    tri = open_pagedump(Source.open(dumps["triage"]))
    loaded, unloaded = triage_modules32(tri.triage)
    assert [(m.name, m.base, m.size, m.timestamp, m.checksum) for m in loaded] == \
        [(i.name, i.base, i.size, i.timestamp, i.checksum) for i in em.images]
    assert [(m.name, m.base, m.end) for m in unloaded] == [("oldflt.sys", 0x8F700000, 0x8F710000)]
    assert tri.triage.valid and tri.triage.top_of_stack == em.context["esp"]


def test_context_is_typed_and_picklable(em):
    ctx = X86Context({"eip": 0x82401031, "esp": 0x8B7FFD70, "ebp": 1}, "header", None, {"eip", "esp"})
    back = pickle.loads(pickle.dumps(ctx))
    assert back == ctx and back.ip == 0x82401031 and back.sp == 0x8B7FFD70 and back.valid == {"eip", "esp"}
    import copy
    assert copy.deepcopy(ctx) == ctx and copy.copy(ctx).eip == 0x82401031
    assert "ebp=????????" in ctx.render() and "eip=82401031" in ctx.render()


def test_undecorate32():
    assert undecorate32("_KeBugCheckEx@20") == "KeBugCheckEx"
    assert undecorate32("@DrvTouch@8") == "DrvTouch"
    assert undecorate32("_DrvProcess") == "DrvProcess"
    assert undecorate32("?Foo@@YAXXZ") == "?Foo@@YAXXZ"
    assert undecorate32("DriverEntry") == "DriverEntry"


@pytest.mark.parametrize("kind", ["full", "triage"])
def test_bugcheck_contexts_from_the_32bit_structures(dumps, em, kind):
    from dumpkit.arch.x86.kstate import exception_record32, find_contexts32, load_modules32
    parts = open_pagedump(Source.open(dumps[kind]))

    class K:                                   # the kernel-layer view the functions take
        header, triage, read_virtual = parts.header, parts.triage, staticmethod(parts.read_virtual)
        warns: list = []

        def warn(self, text):
            self.warns.append(text)
    k = K()
    ctxs = find_contexts32(k)
    assert ctxs["header"].eip == em.context["eip"] and ctxs["header"].esp == em.context["esp"]
    tf = ctxs["trap_frame"]                     # 0x8E P3; on the captured stack in the triage dump too
    assert (tf.eip, tf.esp, tf.address) == (em.trap["eip"], em.trap["esp"], em.trap_frame_va)
    mods, _unl = load_modules32(k)
    assert [m.name for m in mods] == ["ntlike32.sys", "drv32.sys"]
    exr = exception_record32(k)
    assert exr is not None and exr.code == 0xC0000005 and exr.address == em.trap["eip"]
    assert not k.warns


def test_volatility3_reads_the_emulated_full_dump_like_dumpkit(dumps, em):
    """The peer reads the stack, the trap frame and the driver's code at the same physical pages."""
    vol = pytest.importorskip("volatility3.framework")   # noqa: F841
    from volatility3.framework import contexts
    from volatility3.framework.layers import crash, intel, physical
    parts = open_pagedump(Source.open(dumps["full"]))
    ctx = contexts.Context()
    ctx.config["file.location"] = "file://" + str(dumps["full"])
    ctx.add_layer(physical.FileLayer(ctx, "file", "file"))
    ctx.config["crash.base_layer"] = "file"
    cl = crash.WindowsCrashDump32Layer(ctx, "crash", "crash")
    ctx.add_layer(cl)
    ctx.config["virt.memory_layer"] = "crash"
    ctx.config["virt.page_map_offset"] = cl.dtb
    v = (intel.IntelPAE if parts.pae else intel.Intel)(ctx, "virt", "virt")
    ctx.add_layer(v)
    for va, size in ((em.context["esp"], 0x100), (em.trap_frame_va, 0x8C), (em.trap["eip"] & ~0xFFF, 0x1000)):
        assert v.translate(va)[0] == parts.address_space().translate(va)
        assert v.read(va, size) == parts.read_virtual(va, size) == em.read(va, size)
