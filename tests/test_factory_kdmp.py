"""Truth tests for the fixture factory: kdmp-parser (an independent C++ reader)
reads the factory's full (DumpType 1) and bitmap (5 'FDMP', 6 'SDMP') dumps.

What kdmp-parser cannot check, and why:
- transition PTEs: kdmp-parser translates with the Present bit only, so a VA
  behind a transition PTE translates to None there (asserted below); the
  factory's own walk resolves it (dumpkit must, per dumpformat.md 3.2).
- DumpType 2 (old summary) and 4 (triage): kdmp-parser refuses both types
  ("Unknown Type 0x2", "Unsupported type MiniDump"); test_factory_layout.py
  checks those byte by byte against dumpformat.md and the real triage dump.
"""
from __future__ import annotations

import datetime as dt
import os
import random
import time

import pytest

kdmp_parser = pytest.importorskip("kdmp_parser")

from fixtures.factory import (  # noqa: E402
    AddressSpace, HeaderFields, PhysicalMemory, X64Context, filetime, make_basic_dump,
    stamp_value, write_bitmap_dump, write_full_dump, write_sparse_bitmap_dump,
)

KINDS = [("full", 1), ("bitmap", 5), ("bitmap_kernel", 6)]


def _open(path):
    return kdmp_parser.KernelDumpParser(str(path))


@pytest.fixture(scope="module", params=KINDS, ids=[k for k, _ in KINDS])
def basic(request, tmp_path_factory):
    kind, dump_type = request.param
    path = tmp_path_factory.mktemp("fx") / f"{kind}.dmp"
    d = make_basic_dump(path, kind)
    return d, _open(path), dump_type


def test_every_present_page_matches(basic):
    d, p, _ = basic
    expected = [pfn << 12 for pfn in d.memory.present_pfns()]
    assert sorted(p.pages.keys()) == expected
    for pa in expected:
        assert bytes(p.read_physical_page(pa)) == d.memory.page_bytes(pa >> 12), hex(pa)


def test_omitted_page_absent(basic):
    d, p, _ = basic
    va = d.missing_vas[0]
    pa = d.aspace.translate(va)
    assert pa is not None and (pa >> 12) in d.memory.omitted
    assert p.read_physical_page(pa) is None
    assert p.translate_virtual(va, d.aspace.dtb) == pa      # the mapping exists...
    assert p.read_virtual_page(va, d.aspace.dtb) is None    # ...but the page is not in the dump


def test_translations_4k_2m_1g(basic):
    d, p, _ = basic
    for va, pa in d.expected_translations.items():
        if va in d.transition_vas:
            continue
        assert p.translate_virtual(va, d.aspace.dtb) == pa, hex(va)
    # sampled VAs on each page size agree with the factory's own walk
    rng = random.Random(7)
    samples = [0xFFFFF8047C400000 + rng.randrange(0x1200000) for _ in range(50)]      # 2 MiB pages
    samples += [0xFFFFB00000000000 + rng.randrange(0x40000000) for _ in range(50)]    # 1 GiB page
    samples += [0xFFFFF8048B570000 + rng.randrange(0x3000) for _ in range(20)]        # 4 KiB pages
    for va in samples:
        assert p.translate_virtual(va, d.aspace.dtb) == d.aspace.translate(va), hex(va)


def test_virtual_reads(basic):
    d, p, _ = basic
    for va, want in d.expected_bytes.items():
        if va in d.transition_vas:
            continue
        page = p.read_virtual_page(va, d.aspace.dtb)
        off = va & 0xFFF
        assert bytes(page[off:off + len(want)]) == want, hex(va)


def test_transition_and_paged_out(basic):
    d, p, _ = basic
    tva = d.transition_vas[0]
    # kdmp-parser ignores transition PTEs (Present bit only); the factory's walk resolves them.
    assert p.translate_virtual(tva, d.aspace.dtb) is None
    assert d.aspace.translate(tva) == d.expected_translations[tva]
    assert p.read_physical_page(d.expected_translations[tva]) is not None   # the page is in the dump
    for va in d.paged_out_vas + d.unmapped_vas:
        assert p.translate_virtual(va, d.aspace.dtb) is None
        assert d.aspace.translate(va) is None


def test_header_fields(basic):
    d, p, dump_type = basic
    h = p.header
    assert int(p.type) == dump_type and h.DumpType.value == dump_type
    assert p.directory_table_base == d.aspace.dtb == 0x1AA000
    assert h.BugCheckCode == 0xD1
    assert list(h.BugCheckCodeParameter) == list(d.header.bugcheck_parameters)
    assert h.MajorVersion == 0xF and h.MinorVersion == 19041
    assert h.MachineImageType == 0x8664 and h.NumberProcessors == 2
    assert h.KdDebuggerDataBlock == d.header.kd_debugger_data_block
    assert h.PsLoadedModuleList == d.header.ps_loaded_module_list
    assert h.PsActiveProcessHead == d.header.ps_active_process_head
    assert h.SystemTime == filetime(d.header.system_time)
    assert h.RequiredDumpSpace == len(d.data)
    c = p.context
    for name, value in d.context.regs().items():
        attr = "EFlags" if name == "eflags" else name.capitalize()
        assert getattr(c, attr) == value, name
    assert c.ContextFlags == 0x10001F and c.MxCsr == 0x1F80 and c.MxCsr2 == 0x1F80


def test_header_context_registers_custom(tmp_path):
    mem = PhysicalMemory()
    aspace = AddressSpace(mem)
    aspace.map_new(0xFFFFF80000000000, b"x")
    regs = {n: (0x1111111111111111 * (i + 1)) & 0xFFFFFFFFFFFFFFFF for i, n in enumerate(
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13",
         "r14", "r15", "rip"])}
    ctx = X64Context(**regs, seg_cs=0x10, seg_ss=0x18, eflags=0x40246, dr7=0x400)
    h = HeaderFields(context=ctx, bugcheck_code=0x1000007E,
                     bugcheck_parameters=(0xFFFFFFFFC0000005, 0xFFFFF8048B58334C, 1, 2),
                     system_time=dt.datetime(2021, 2, 21, 12, 0, tzinfo=dt.timezone.utc))
    path = tmp_path / "regs.dmp"
    write_full_dump(path, mem, h)
    p = _open(path)
    for n, v in regs.items():
        assert getattr(p.context, n.capitalize()) == v, n
    assert p.context.SegCs == 0x10 and p.context.SegSs == 0x18 and p.context.EFlags == 0x40246
    assert p.context.Dr7 == 0x400
    assert p.header.BugCheckCode == 0x1000007E
    assert p.header.BugCheckCodeParameter[1] == 0xFFFFF8048B58334C


def _random_layout(seed: int):
    """Many mappings of every size, some pages omitted, scattered physical memory."""
    rng = random.Random(seed)
    mem = PhysicalMemory(alloc_base_pfn=0x10)
    aspace = AddressSpace(mem)
    vas = []
    # 1 GiB pages
    for i in range(2):
        va = 0xFFFF900000000000 + i * 0x40000000 * 3
        pa = 0x40000000 * (i + 1)
        aspace.map(va, pa, 0x40000000, page_size=0x40000000)
        for _ in range(4):
            off = rng.randrange(0x40000000) & ~7
            aspace.write(va + off, rng.randbytes(8))
            vas.append(va + off)
    # 2 MiB pages
    for i in range(3):
        va = 0xFFFFF80000000000 + i * 0x800000
        pa = 0x1000000 + i * 0x400000
        aspace.map(va, pa, 0x400000, page_size=0x200000)
        for _ in range(4):
            off = rng.randrange(0x400000) & ~7
            aspace.write(va + off, rng.randbytes(8))
            vas.append(va + off)
    # 4 KiB pages, user and kernel halves
    for base in (0x7FF600000000, 0xFFFFA00000000000):
        for _ in range(20):
            va = base + rng.randrange(0x10000) * 0x1000
            if aspace.translate(va) is None:
                aspace.map_new(va, rng.randbytes(rng.randrange(1, 0x1000)))
                vas.append(va + rng.randrange(0x1000))
    omitted = [aspace.omit(v) for v in rng.sample(vas, 3)]
    return mem, aspace, vas, omitted


@pytest.mark.parametrize("writer", ["full", "fdmp5", "sdmp6"])
def test_random_layouts_against_kdmp(tmp_path, writer):
    mem, aspace, vas, omitted = _random_layout(11)
    path = tmp_path / f"{writer}.dmp"
    if writer == "full":
        write_full_dump(path, mem, HeaderFields())
    else:
        write_bitmap_dump(path, mem, HeaderFields(), signature="FDMP" if writer == "fdmp5" else "SDMP",
                          dump_type=5 if writer == "fdmp5" else 6)
    p = _open(path)
    assert sorted(p.pages.keys()) == [pfn << 12 for pfn in mem.present_pfns()]
    for pfn in mem.present_pfns():
        assert bytes(p.read_physical_page(pfn << 12)) == mem.page_bytes(pfn)
    for va in vas:
        pa = aspace.translate(va)
        assert p.translate_virtual(va, aspace.dtb) == pa
        page = p.read_virtual_page(va, aspace.dtb)
        if (pa >> 12) in mem.omitted:
            assert page is None
        else:
            assert bytes(page) == mem.page_bytes(pa >> 12)


def test_full_dump_explicit_runs_with_zero_pages(tmp_path):
    mem = PhysicalMemory()
    aspace = AddressSpace(mem)
    aspace.map_new(0xFFFFF80000000000, b"A" * 0x1000)
    runs = [(0x1, 0x9F), (0x100, 0x40)]
    path = tmp_path / "runs.dmp"
    data = write_full_dump(path, mem, runs=runs)
    assert len(data) == 0x2000 + (0x9F + 0x40) * 0x1000
    p = _open(path)
    assert len(list(p.pages.keys())) == 0x9F + 0x40
    assert bytes(p.read_physical_page(0x5000)) == bytes(0x1000)
    assert p.translate_virtual(0xFFFFF80000000000, aspace.dtb) == aspace.translate(0xFFFFF80000000000)


def test_sparse_bitmap_dump_small_read_by_kdmp(tmp_path):
    path = tmp_path / "sparse.dmp"
    pfns = [range(0x10, 0x9F), range(0x100, 0x2000), range(0x4000, 0x8000, 3)]
    info = write_sparse_bitmap_dump(path, 0x10000, pfns, stamp_every=97)
    p = _open(path)
    keys = list(p.pages.keys())
    assert len(keys) == info.present_pages == (0x9F - 0x10) + (0x2000 - 0x100) + len(range(0x4000, 0x8000, 3))
    for pfn in info.stamped_pfns[:50]:
        assert bytes(p.read_physical_page(int(pfn) << 12)[:16]) == stamp_value(int(pfn))
    assert bytes(p.read_physical_page(0x11 << 12)) == bytes(0x1000)
    assert p.read_physical_page(0x9F << 12) is None


def test_sparse_bitmap_dump_16gib_is_fast_and_sparse(tmp_path):
    import numpy as np
    total = (16 << 30) >> 12                     # 4 Mi pages = 16 GiB physical
    rng = np.random.default_rng(1)
    present = np.sort(rng.choice(total, size=2 << 20, replace=False))   # 2 Mi present pages
    path = tmp_path / "big.dmp"
    t0 = time.perf_counter()
    info = write_sparse_bitmap_dump(path, total, present, stamp_every=4096)
    elapsed = time.perf_counter() - t0
    st = os.stat(path)
    assert st.st_size == info.file_size == info.first_page + (2 << 20) * 0x1000    # ~8 GiB apparent
    assert st.st_blocks * 512 < 64 << 20         # but only megabytes on disk
    assert elapsed < 5.0, elapsed
    with open(path, "rb") as f:
        assert f.read(8) == b"PAGEDU64"
        f.seek(0x2000)
        assert f.read(8) == b"FDMPDUMP"
        k = 4096 * 7
        f.seek(info.first_page + k * 0x1000)
        assert f.read(16) == stamp_value(int(present[k]))


# --- property: any mix of 4K/2M/1G mappings reads back identically through kdmp-parser ---------
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_SIZES = {0: 0x1000, 1: 0x200000, 2: 0x40000000}


@settings(max_examples=25, deadline=3000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 63), st.integers(0, 0xFFF_FFFF), st.booleans()),
                min_size=1, max_size=12),
       st.sampled_from([1, 5, 6]))
def test_property_mappings_match_kdmp(tmp_path, maps, dump_type):
    mem = PhysicalMemory(alloc_base_pfn=0x20)
    aspace = AddressSpace(mem)
    probes = []
    for i, (kind, slot, off, omit) in enumerate(maps):
        size = _SIZES[kind]
        va = 0xFFFF800000000000 + kind * 0x10000000000 + slot * 0x40000000 + i * size
        va -= va % size
        # disjoint physical ranges per mapping, far above the page tables
        pa = 0x1000000000 + i * 0x40000000 if kind == 2 else 0x100000000 + i * 0x200000
        if aspace.translate(va) is not None:
            continue
        try:
            aspace.map(va, pa, size, page_size=size)
        except ValueError:          # the slot is already covered by a differently sized page
            continue
        probe = va + (off % size & ~7)
        aspace.write(probe, (probe ^ 0x5A5A).to_bytes(8, "little"))
        if omit:
            aspace.omit(probe)
        probes.append(probe)
    assert probes                   # the first mapping can never conflict
    path = tmp_path / f"p{dump_type}.dmp"
    if dump_type == 1:
        write_full_dump(path, mem)
    else:
        write_bitmap_dump(path, mem, dump_type=dump_type, signature="FDMP" if dump_type == 5 else "SDMP")
    p = _open(path)
    for probe in probes:
        pa = aspace.translate(probe)
        assert p.translate_virtual(probe, aspace.dtb) == pa
        page = p.read_virtual_page(probe, aspace.dtb)
        if (pa >> 12) in mem.omitted:
            assert page is None
        else:
            o = probe & 0xFFF
            assert bytes(page[o:o + 8]) == (probe ^ 0x5A5A).to_bytes(8, "little")
