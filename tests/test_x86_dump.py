"""32-bit dumps through the public API and the command line: ``dumpkit.open`` (the PAGEDUMP header
format and its openers in the target registry), ``Dump.stack``, ``dumpkit.analyze`` and
``dumpkit info/modules/stack/analyze``.

Truth from outside, as in test_x86_walker.py: the emulator's registers at every call of the
compiler-built x86 fixture drivers, the factory's own description of what it wrote
(``fixtures/factory32.py``), and the text path (the same crash pasted as WinDbg text must
give the same verdict).
"""
from __future__ import annotations

import json
import pickle
import warnings

import pytest

pytest.importorskip("unicorn")

import dumpkit  # noqa: E402
from dumpkit.arch.x86.context import X86Context  # noqa: E402
from dumpkit.errors import PagedOutError, UnsupportedDumpError  # noqa: E402
from fixtures.emulate32 import BIN32, build_dumps32, run32  # noqa: E402
from fixtures.factory32 import make_basic_dump32  # noqa: E402

from .conftest import ROOT  # noqa: E402


@pytest.fixture(scope="module")
def em():
    return run32()


@pytest.fixture(scope="module", params=[False, True], ids=["nopae", "pae"])
def dumps(request, em, tmp_path_factory):
    return build_dumps32(tmp_path_factory.mktemp("x86dump"), pae=request.param, em=em)


def _open(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dumpkit.open(str(path))


@pytest.mark.parametrize("kind", ["full", "bitmap", "kernel_bitmap", "summary"])
def test_open_reads_every_32bit_body(kind):
    for pae in (False, True):
        made = make_basic_dump32(kind, pae=pae)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = dumpkit.open(made.data)
        assert d.arch.name == "x86" and d.info()["machine"] == "x86"
        assert d.header.pae_enabled == pae and d.address_space().pae == pae
        for va, pa in made.expected_translations.items():
            assert d.translate(va) == pa
        for va, data in made.expected_bytes.items():
            assert d.read_virtual(va, len(data)) == data
        with pytest.raises(PagedOutError):
            d.read_virtual(made.paged_out_vas[0], 4)
        assert d.physical.page_count == len(made.memory.present_pfns())


def test_unsupported_machine_in_a_pagedump_header_is_a_clear_error():
    data = bytearray(make_basic_dump32("full").data)
    data[0x20:0x24] = (0x1C4).to_bytes(4, "little")          # ARMNT
    with pytest.raises(UnsupportedDumpError, match="MachineImageType"):
        dumpkit.open(bytes(data))


@pytest.mark.parametrize("kind", ["full", "triage"])
def test_dump_stack_matches_the_emulator(dumps, em, kind):
    d = _open(dumps[kind])
    assert [m.name for m in d.modules] == ["ntlike32.sys", "drv32.sys"]
    assert set(d.contexts) >= {"header", "trap_frame"}
    st = d.stack(symbol_path=str(BIN32), offline=True)
    assert [(f.instruction, f.child_sp) for f in st] == [(e.eip, e.esp) for e in em.frames]
    assert [f"{f.module}!{f.symbol}" for f in st] == [e.name for e in em.frames]
    assert str(st).splitlines()[0] == " # ChildEBP RetAddr  "
    # from the trap frame the bug check names (0x8E P3): the faulting frame first
    st2 = d.stack("trap_frame", symbol_path=str(BIN32), offline=True)
    assert [(f.instruction, f.child_sp) for f in st2] == [(e.eip, e.esp) for e in em.frames[3:]]


def test_unloaded_drivers_from_the_32bit_kdbg(dumps):
    """Full dumps: MmUnloadedDrivers through the KDBG (sign-extended pointers), most recent first;
    triage dumps: the DUMP_UNLOADED_DRIVERS32 list."""
    from fixtures.emulate32 import UNLOADED32
    d = _open(dumps["full"])
    assert d.kdbg is not None and d.kdbg.MmUnloadedDrivers >> 32 == 0xFFFFFFFF
    got = [(m.name, m.base, m.end) for m in d.unloaded_modules]
    assert got == [(n, s, e) for n, s, e, _t in reversed(UNLOADED32)]
    assert d.find_module(0x8F700010).unloaded
    t = _open(dumps["triage"])
    assert [(m.name, m.base, m.end) for m in t.unloaded_modules] == [("oldflt.sys", 0x8F700000, 0x8F710000)]


def test_analysis_from_the_dump_and_from_the_pasted_text_agree(dumps):
    d = _open(dumps["full"])
    a = dumpkit.analyze(d, str(BIN32), offline=True)
    assert a.failure_bucket_id == "AV_drv32!DrvTouch"
    assert a.culprit.module == "drv32.sys"
    assert (a.fault.register, a.fault.address, a.fault.kind) == ("ecx", 0xC0DE0008, "invalid_kernel_address")
    assert isinstance(a.context, X86Context) if hasattr(a, "context") else True
    back = pickle.loads(pickle.dumps(a))
    assert back.to_json() == a.to_json()
    # the paste names the kernel "nt", as WinDbg does (the dump knows ntlike32.sys is the kernel: module 0)
    text = (ROOT / "tests" / "data" / "x86" / "emulated_8e_paste.txt").read_text()
    t = dumpkit.analyze(text)
    assert (t.failure_bucket_id, t.culprit.module, t.fault.register, t.fault.address) == \
        (a.failure_bucket_id, a.culprit.module, a.fault.register, a.fault.address)


def test_cli_info_modules_stack_analyze(dumps, capsys):
    from dumpkit.cli.main import main
    path = str(dumps["triage"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["info", path, "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["machine"] == "x86" and info["dump_type"] == "triage"
        assert main(["info", path]) == 0
        out = capsys.readouterr().out
        assert "  Arg1        c0000005" in out and "Machine       x86" in out        # 8-digit, as WinDbg
        assert main(["modules", path]) == 0
        out = capsys.readouterr().out
        assert "start    end        module name" in out                                # WinDbg's x86 `lm`
        assert "82400000 82405000   ntlike32" in out and "8f800000 8f805000   drv32" in out
        assert main(["stack", path, "--symbol-path", str(BIN32)]) == 0
        out = capsys.readouterr().out
        assert "ChildEBP RetAddr" in out and "drv32!DrvTouch+0x2" in out
        main(["analyze", path, "--symbol-path", str(BIN32)])
        out = capsys.readouterr().out
        assert "KERNEL_MODE_EXCEPTION_NOT_HANDLED (8e)" in out and "AV_drv32!DrvTouch" in out
        assert "Arg1: c0000005, " in out and "READ_ADDRESS:  c0de0008" in out
        # the analysis walks from the trap frame (STACK_COMMAND .trap; kb): x86 `k` lines, ChildEBP first
        assert "STACK_COMMAND:  .trap 0x8b7ffda8 ; kb" in out and "OSPLATFORM_TYPE:  x86" in out
        assert "8b7ffe18 8f80110a drv32!DrvTouch+0x2" in out
        assert "8b7fffe4 00000000 ntlike32!KiThreadStartup+0xb" in out
        # and the report reads back through the text parser as the same stack
        from dumpkit.text import parse_text
        pt = parse_text(out)
        assert [f.call_site for f in pt.frames][:3] == ["drv32!DrvTouch+0x2", "drv32!DrvProcess+0xfa",
                                                        "drv32!DrvInitialize+0x68"]
        assert pt.registers.eip == 0x8F801002 and pt.registers.ecx == 0xC0DE0000


def test_json_outputs_of_32bit_dumps_follow_the_schemas(dumps, capsys):
    pytest.importorskip("jsonschema")
    if not dumps["aspace"].pae:
        pytest.skip("the JSON does not depend on the paging mode: checked on the PAE dumps")
    from dumpkit.cli.main import main
    from dumpkit.schemas import validate
    for kind in ("full", "triage"):
        path = str(dumps[kind])
        for cmd, schema, extra in (("info", "info", []), ("modules", "modules", []),
                                   ("stack", "stack", ["--symbol-path", str(BIN32)]),
                                   ("analyze", "analysis", ["--symbol-path", str(BIN32)])):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                main([cmd, path, "--json", *extra])
            validate(json.loads(capsys.readouterr().out), schema)
