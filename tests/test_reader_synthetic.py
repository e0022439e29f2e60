"""The reader against factory-made dumps of every type (truth = what the factory wrote)."""
from __future__ import annotations

import pytest

import dumpkit
from dumpkit.errors import (CorruptDumpError, DumpError, MissingPageError, NotADumpError, PagedOutError,
                            PageNotPresentError, TranslationError, TruncatedDumpError, UnsupportedDumpError)
from fixtures import factory

MEMORY_KINDS = ["full", "kernel", "bitmap_full", "bitmap_kernel"]
TYPE_CODES = {"full": 1, "kernel": 2, "bitmap_full": 5, "bitmap_kernel": 6, "triage": 4}
TYPE_NAMES = {"full": "full", "kernel": "kernel", "bitmap_full": "bitmap", "bitmap_kernel": "bitmap",
              "triage": "triage"}


@pytest.fixture(scope="module", params=MEMORY_KINDS + ["triage"])
def basic(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("dumps") / f"{request.param}.dmp"
    made = factory.make_basic_dump(path, request.param)
    return request.param, path, made


def test_type_and_header(basic):
    kind, path, made = basic
    with dumpkit.open(path) as d:
        assert d.dump_type_code == TYPE_CODES[kind]
        assert d.dump_type == TYPE_NAMES[kind]
        assert d.bugcheck.code == made.header.bugcheck_code
        assert d.bugcheck.parameters == tuple(made.header.bugcheck_parameters)
        ctx = d.contexts["header"]
        for reg, value in made.context.regs().items():
            if reg in ctx.regs:
                assert ctx.regs[reg] == value, reg


def test_expected_bytes_and_translations(basic):
    kind, path, made = basic
    with dumpkit.open(path) as d:
        for va, data in made.expected_bytes.items():
            assert d.read_virtual(va, len(data)) == data, hex(va)
        for va, pa in made.expected_translations.items():
            assert d.translate(va) == pa, hex(va)


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_page_states(kind, tmp_path):
    made = factory.make_basic_dump(tmp_path / "d.dmp", kind)
    with dumpkit.open(tmp_path / "d.dmp") as d:
        for va in made.missing_vas:
            with pytest.raises(MissingPageError):
                d.read_virtual(va, 8)
            assert d.read_virtual(va, 8, zero_fill=True) == bytes(8)
        for va in made.paged_out_vas:
            with pytest.raises(PagedOutError, match="paged out"):
                d.translate(va)
        for va in made.unmapped_vas:
            with pytest.raises(PageNotPresentError, match="not present"):
                d.translate(va)
        for va in made.transition_vas:
            pa = d.translate(va)
            assert d.read_physical(pa & ~0xFFF, 0x1000) == made.memory.page_bytes(pa >> 12)
        with pytest.raises(TranslationError, match="canonical"):
            d.translate(0x0000800000000000)


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_physical_pages_and_runs(kind, tmp_path):
    made = factory.make_basic_dump(tmp_path / "d.dmp", kind)
    mem = made.memory
    present = set(mem.present_pfns())
    with dumpkit.open(tmp_path / "d.dmp") as d:
        for pfn in present:
            assert d.is_present(pfn << 12)
            assert d.read_physical(pfn << 12, 0x1000) == mem.page_bytes(pfn)
        # a read across two present, adjacent pages
        for pfn in present:
            if pfn + 1 in present:
                assert d.read_physical((pfn << 12) + 0xFF8, 16) == mem.page_bytes(pfn)[-8:] + mem.page_bytes(pfn + 1)[:8]
                break
        seen = set()
        last_pa = -1
        for pa, mv in d.iter_physical_runs():
            assert isinstance(mv, memoryview) and len(mv) % 0x1000 == 0
            for i in range(len(mv) // 0x1000):
                pfn = (pa >> 12) + i
                seen.add(pfn)
                assert bytes(mv[i * 0x1000:(i + 1) * 0x1000]) == mem.page_bytes(pfn)
            assert pa > last_pa
            last_pa = pa
        if kind == "full":
            # a full dump stores whole runs: the runs cover the present pages
            assert present <= seen
        else:
            assert seen == present


def test_missing_physical_page_error_and_zero_fill(tmp_path):
    made = factory.make_basic_dump(tmp_path / "d.dmp", "bitmap_full")
    present = set(made.memory.present_pfns())
    absent = next(p for p in range(1, 1 << 20) if p not in present)
    with dumpkit.open(tmp_path / "d.dmp") as d:
        with pytest.raises(MissingPageError, match="not in the dump"):
            d.read_physical(absent << 12, 16)
        assert d.read_physical(absent << 12, 16, zero_fill=True) == bytes(16)
        assert not d.is_present(absent << 12)


def test_triage_layout(tmp_path):
    made = factory.make_basic_dump(tmp_path / "t.dmp", "triage")
    with dumpkit.open(tmp_path / "t.dmp") as d:
        assert [m.name for m in d.modules] == ["ntoskrnl.exe", "hal.dll", "kdcom.dll", "myfault.sys"]
        fault_ip = made.header.bugcheck_parameters[3]
        assert d.modules.find(fault_ip).name == "myfault.sys"
        names = [m.name for m in d.unloaded_modules]
        assert names[0] == "dam.sys"
        assert names[1] == "averyveryver"          # the kernel keeps 12 characters
        assert d.triage.valid and d.triage.secondary_blobs == 1


# -- what the file is -----------------------------------------------------------------
@pytest.mark.parametrize("head,exc,msg", [
    (b"MDMP\x93\xa7\x00\x00" + bytes(64), NotADumpError, "user-mode minidump"),
    (b"PAGEDUMP" + bytes(0x1000), UnsupportedDumpError, "32-bit"),
    (b"MSCF\0\0\0\0" + bytes(64), NotADumpError, "CAB"),
    (b"PK\x03\x04" + bytes(64), NotADumpError, "ZIP"),
    (b"hello world, not a dump at all", NotADumpError, "not a Windows crash dump"),
    (b"", NotADumpError, "too small"),
    (b"PAGEDU64" + bytes(100), TruncatedDumpError, "header is incomplete"),
])
def test_not_a_kernel_dump(tmp_path, head, exc, msg):
    p = tmp_path / "x.dmp"
    p.write_bytes(head)
    with pytest.raises(exc, match=msg) as info:
        dumpkit.open(p)
    assert str(p) in str(info.value)


@pytest.mark.parametrize("dump_type,exc", [(8, UnsupportedDumpError), (9, UnsupportedDumpError),
                                            (0xA, UnsupportedDumpError), (0x33, CorruptDumpError)])
def test_range_and_unknown_types(tmp_path, dump_type, exc):
    data = bytearray(factory.make_basic_dump(None, "full").data)
    data[0xF98:0xF9C] = dump_type.to_bytes(4, "little")
    p = tmp_path / "r.dmp"
    p.write_bytes(data)
    with pytest.raises(exc):
        dumpkit.open(p)


def test_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DumpError, match="directory"):
        dumpkit.open(tmp_path)


@pytest.mark.parametrize("kind", MEMORY_KINDS)
def test_truncated_dump_still_opens(kind, tmp_path):
    made = factory.make_basic_dump(None, kind)
    data = made.data
    cut = data[: 0x2000 + (len(data) - 0x2000) // 2]
    p = tmp_path / "cut.dmp"
    p.write_bytes(cut)
    with pytest.warns(dumpkit.DumpWarning, match="truncated"):
        d = dumpkit.open(p)
    with d:
        # pages past the end are reported, not crashed on
        for _pa, _mv in d.iter_physical_runs():
            pass
        for va in made.expected_bytes:
            try:
                d.read_virtual(va, 8)
            except MissingPageError as exc:
                assert "truncated" in str(exc) or "not in the dump" in str(exc) or "page table" in str(exc)
            except TranslationError:
                pass


@pytest.mark.parametrize("kind", ["full", "triage"])
def test_a_closed_dump_says_so(kind, tmp_path):
    made = factory.make_basic_dump(tmp_path / "d.dmp", kind)
    d = dumpkit.open(tmp_path / "d.dmp")
    d.close()
    va = next(iter(made.expected_bytes))
    with pytest.raises(DumpError, match="closed"):
        d.read_virtual(va, 8)
