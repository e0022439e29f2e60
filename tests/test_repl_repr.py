"""What a REPL user sees: one-line reprs, IPython pretty printing, tab completion."""
from __future__ import annotations

import re

import pytest

import dumpkit
from dumpkit.model import Context, Frame, Module, ModuleList, Stack

from .conftest import ROOT

FULL = ROOT / "fixtures" / "dumps" / "case2_mode0_full.dmp"
DRIVERS = ROOT / "fixtures" / "drivers" / "bin"


@pytest.fixture(scope="module")
def dump():
    d = dumpkit.open(FULL)
    yield d
    d.close()


def _pretty(obj) -> str:
    pretty = pytest.importorskip("IPython.lib.pretty", reason="IPython not installed")
    return pretty.pretty(obj)


def test_one_line_reprs(dump):
    assert repr(dump) == ("<Dump 'case2_mode0_full.dmp' full (type 1) build 19041 bugcheck 0x7e "
                          "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED>")
    m = dump.modules.by_name("lwffilter")
    assert repr(m) == "<Module lwffilter.sys 0xfffff8041c7d0000-0xfffff8041c7d6000>"
    assert repr(dump.modules) == "<ModuleList 3 modules>"
    assert repr(dump.contexts["exception"]) == "<Context exception rip=0xfffff8041c001199 rsp=0xffffec01df2065b0>"
    stack = dump.stack("exception", symbol_path=str(DRIVERS))
    assert repr(stack[3]) == "<Frame 03 lwffilter!LwfDetach+0xa8 sp=0xffffec01df206710 cfi>"
    assert repr(stack).splitlines()[0] == f"<Stack {len(stack)} frames>"
    for obj in (dump, m, stack[0], dump.contexts["exception"], dump.bugcheck):
        assert "\n" not in repr(obj) and len(repr(obj)) < 200


def test_ipython_pretty_printing(dump):
    text = _pretty(dump)
    lines = text.splitlines()
    assert lines[0] == repr(dump)
    assert any(ln.strip().startswith("bugcheck") and "0xc0000005" in ln for ln in lines)
    assert any("3 loaded" in ln for ln in lines)
    mods = _pretty(dump.modules).splitlines()
    assert mods[1] == "start             end                 module name"
    assert mods[2].startswith("fffff804`0c800000 fffff804`0c806000   ntlike")
    ctx = _pretty(dump.contexts["exception"]).splitlines()
    assert ctx[1] == "rax=0000000000000008 rbx=fffff8041c7d3020 rcx=ffffc70deadbe0a0"   # WinDbg's r layout
    stack = dump.stack("exception", symbol_path=str(DRIVERS))
    st = _pretty(stack).splitlines()
    assert st[1] == " # Child-SP          RetAddr               Call Site"
    assert st[2].endswith("ndislike!ndisValidateFilterBlock+0x49")


def test_pretty_printing_of_a_closed_dump_and_unknown_registers():
    d = dumpkit.open(FULL)
    d.close()
    assert _pretty(d) == repr(d)
    c = Context({"rip": 0x1000, "rsp": 0x2000, "rax": 5}, "unwind", valid={"rip", "rsp"})
    assert "rax=????????????????" in c.render()


def test_tab_completion(dump):
    ctx = dump.contexts["exception"]
    names = dir(ctx)
    for reg in ("rax", "rcx", "rip", "rsp", "r15"):
        assert reg in names
    assert "render" in names and "copy" in names
    public = [n for n in dir(dump) if not n.startswith("_")]
    for attr in ("modules", "unloaded_modules", "contexts", "stack", "read_virtual", "read_physical", "translate",
                 "iter_physical_runs", "bugcheck", "header", "resolver", "info"):
        assert attr in public
    # nothing surprising leaks into completion: no private helpers among the public names
    assert all(re.match(r"^[a-z][a-z0-9_]*$", n) for n in public), public


def test_analysis_repr(dump):
    if not hasattr(dumpkit, "analyze"):
        pytest.skip("dumpkit.analyze is not available yet")
    a = dumpkit.analyze(dump, str(DRIVERS))
    r = repr(a)
    assert r.startswith("<Analysis 0x7E AV_") and "culprit=" in r and "\n" not in r


def test_plain_models_without_a_dump():
    m = Module("amdppm.sys", 0xfffff8048b580000, 0x3b000)
    assert repr(ModuleList([m])) == "<ModuleList 1 modules>"
    f = Frame(0, 0xfffff8048b58334c, 0xffff850429892120, module="amdppm", symbol="WriteIoMemRawEx", offset=0x70,
              trust="context")
    s = Stack([f])
    assert str(s).splitlines()[1] == "00 ffff8504`29892120 00000000`00000000     amdppm!WriteIoMemRawEx+0x70"
