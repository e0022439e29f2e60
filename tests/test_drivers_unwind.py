"""dumpkit's stack walk against the emulated fixture crashes (issue 4, first "How it is checked" bullet).

Every fixture crash must unwind to exactly the call chain its source implies
(fixtures.emulate.EXPECTED_CHAINS, checked against the run in
test_drivers_emulate.py), and at each frame the restored non-volatile
registers must equal the emulator's values at that call.

Which tests need what:
* ``test_walk_emulated_memory`` / ``test_walk_from_exception_context``:
  dumpkit.unwind.walker.walk_stack + dumpkit.pe.provider.DumpMemoryImages.
* ``test_full_dump_*``: dumpkit.open (reader, module list, contexts) + the walker.
* ``test_dump_stack_*``: ``Dump.stack(context=..., symbol_path=...)`` (skipped until it exists).
* ``test_triage_*``: the triage reader + ``StoreImages`` (images from a local symbol store).
"""
from __future__ import annotations

import shutil

import pytest

pytest.importorskip("unicorn")

from fixtures import emulate as E  # noqa: E402

GPRS = E.NONVOLATILE_GPRS
VOLATILE = ("rax", "rcx", "rdx", "r8", "r9", "r10", "r11")


def _walker():
    walker = pytest.importorskip("dumpkit.unwind.walker")
    if not hasattr(walker, "walk_stack"):
        pytest.skip("dumpkit.unwind.walker.walk_stack not available yet")
    provider = pytest.importorskip("dumpkit.pe.provider")
    return walker.walk_stack, provider


def _modules(em):
    from dumpkit.model import Module, ModuleList
    return ModuleList(Module(m["name"], m["base"], m["size"], path=m["path"], timestamp=m["timestamp"],
                             checksum=m["checksum"]) for m in em.module_dicts())


def _context(regs, source):
    from dumpkit.model import Context
    return Context(dict(regs), source=source)


def assert_walk_matches(stack, expected, *, first_trust="context"):
    """Frame by frame: IP, Child-SP, RetAddr, trust, trap frame and the restored registers."""
    got = [(f.instruction, f.child_sp) for f in stack]
    want = [(f.instruction, f.child_sp) for f in expected]
    assert got == want, "\n" + stack.render() + "\nexpected: " + ", ".join(f.function for f in expected)
    for f, e in zip(stack, expected):
        where = f"frame {f.index:02x} ({e.function})"
        assert f.return_address == e.return_address, where
        assert f.trust == (first_trust if f.index == 0 else "cfi"), where
        assert (f.trap_frame or None) == e.trap_frame, where
        regs, valid = f.context.regs, f.context.valid
        for k in GPRS + ("rsp",):
            assert k in valid, f"{where}: {k} not restored"
            assert regs[k] == e.regs[k], f"{where}: {k} = {regs[k]:#x}, emulator {e.regs[k]:#x}"
        for k in E.XMM_NONVOLATILE:
            if k in valid and k in regs:
                assert regs[k] == e.regs[k], f"{where}: {k} = {regs[k]:#x}, emulator {e.regs[k]:#x}"
        if e.kind in ("trap", "context"):
            for k in VOLATILE:
                if k in valid:
                    assert regs[k] == e.regs[k], f"{where}: {k} (from the trap frame/context)"


@pytest.fixture(scope="module", params=[0, 1], ids=["mode0", "mode1"])
def em(request):
    return E.run_case2(request.param)


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    pytest.importorskip("fixtures.factory")
    out = {}
    for mode in (0, 1):
        out[mode] = E.build_case2_dumps(tmp_path_factory.mktemp(f"case2_{mode}"), mode)
    return out


@pytest.fixture(scope="module")
def symstore(tmp_path_factory):
    """The fixture images in symbol-store layout: name/<TIMESTAMP><size>/name."""
    import pefile
    root = tmp_path_factory.mktemp("symstore")
    for name, _, _ in E.IMAGES:
        p = E.image_paths(name)
        pe = pefile.PE(str(p["sys"]), fast_load=True)
        key = f"{pe.FILE_HEADER.TimeDateStamp:08X}{pe.OPTIONAL_HEADER.SizeOfImage:x}"
        d = root / name / key
        d.mkdir(parents=True)
        shutil.copy(p["sys"], d / name)
    return root


# -- walks over the emulator's own memory ------------------------------------------------

def test_walk_emulated_memory(em):
    walk_stack, provider = _walker()
    stack = walk_stack(em, _context(em.bugcheck_context, "header"), _modules(em),
                       provider.DumpMemoryImages(em))
    assert_walk_matches(stack, em.frames)


def test_walk_from_exception_context(em):
    """From the CONTEXT of bugcheck parameter 4: the walk starts at the faulting frame."""
    walk_stack, provider = _walker()
    trap = E.TRAP_FRAME_INDEX
    stack = walk_stack(em, _context({k: v for k, v in em.fault.items() if k not in ("address", "error_code")},
                                    "exception"), _modules(em), provider.DumpMemoryImages(em))
    expected = em.frames[trap:]
    expected = [E.ExpectedFrame(i, f.function, f.instruction, f.child_sp, f.return_address, f.kind, f.regs, None)
                for i, f in enumerate(expected)]
    assert_walk_matches(stack, expected)


# -- full dump ------------------------------------------------------------------------------

def _open(path):
    dumpkit = pytest.importorskip("dumpkit")
    if not hasattr(dumpkit, "open"):
        pytest.skip("dumpkit.open not available yet")
    return dumpkit.open(path)


@pytest.mark.parametrize("mode", [0, 1])
def test_full_dump_reader_agrees_with_emulation(dumps, mode):
    out = dumps[mode]
    em = out["emulation"]
    d = _open(out["paths"]["full"])
    assert d.bugcheck.code == 0x7E
    assert tuple(d.bugcheck.parameters) == em.bugcheck[1:]
    assert [(m.name, m.base, m.size, m.timestamp, m.checksum) for m in d.modules] == \
        [(m["name"], m["base"], m["size"], m["timestamp"], m["checksum"]) for m in em.module_dicts()]
    ctx = d.contexts
    assert ctx["header"].rip == em.bugcheck_context["rip"] and ctx["header"].rsp == em.bugcheck_context["rsp"]
    if "exception" in ctx:
        for k in E.ALL_GPRS + ("rip",):
            assert ctx["exception"][k] == em.fault[k], k


@pytest.mark.parametrize("mode", [0, 1])
def test_full_dump_walk(dumps, mode):
    walk_stack, provider = _walker()
    out = dumps[mode]
    d = _open(out["paths"]["full"])
    stack = walk_stack(d, d.contexts["header"], d.modules, provider.DumpMemoryImages(d))
    assert_walk_matches(stack, out["frames"])


def test_dump_stack_api(dumps):
    """The contract of issue 4: Dump.stack(context=None|'header'|'exception'|ADDRESS, symbol_path=None)."""
    out = dumps[0]
    d = _open(out["paths"]["full"])
    if not hasattr(d, "stack"):
        pytest.skip("Dump.stack not available yet")
    assert_walk_matches(d.stack(), out["frames"])
    exc = d.stack(context="exception")
    assert [(f.instruction, f.child_sp) for f in exc] == \
        [(f.instruction, f.child_sp) for f in out["frames"][E.TRAP_FRAME_INDEX:]]
    text = d.stack().render()
    assert text.splitlines()[0] == " # Child-SP          RetAddr               Call Site"
    assert "ndislike!NdisFDeregisterFilterDriver+0x" in text      # export name for an export frame


# -- triage dump: no images inside, they come from a symbol store ---------------------------

def test_triage_reader_agrees_with_emulation(dumps):
    out = dumps[0]
    em = out["emulation"]
    d = _open(out["paths"]["triage"])
    assert [(m.name, m.base, m.size, m.timestamp) for m in d.modules] == \
        [(m["name"], m["base"], m["size"], m["timestamp"]) for m in em.module_dicts()]
    assert d.contexts["header"].rsp == em.bugcheck_context["rsp"]
    rsp = em.bugcheck_context["rsp"]
    assert d.read_virtual(rsp, em.stack_base - rsp) == em.read(rsp, em.stack_base - rsp)


def test_triage_walk_with_store_images(dumps, symstore):
    walk_stack, provider = _walker()
    out = dumps[0]
    d = _open(out["paths"]["triage"])
    stack = walk_stack(d, d.contexts["header"], d.modules, provider.StoreImages(str(symstore)))
    assert_walk_matches(stack, out["frames"])


def test_triage_dump_stack_with_symbol_path(dumps, symstore):
    out = dumps[0]
    d = _open(out["paths"]["triage"])
    if not hasattr(d, "stack"):
        pytest.skip("Dump.stack not available yet")
    assert_walk_matches(d.stack(symbol_path=str(symstore)), out["frames"])


def test_committed_dumps_walk():
    """The committed files in fixtures/dumps (what docs and CLI examples use)."""
    walk_stack, provider = _walker()
    em = E.run_case2(0)
    d = _open(E.HERE / "dumps" / "case2_mode0_full.dmp")
    stack = walk_stack(d, d.contexts["header"], d.modules, provider.DumpMemoryImages(d))
    assert_walk_matches(stack, em.frames)
