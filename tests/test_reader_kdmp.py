"""dumpkit against a peer parser: kdmp-parser (PyPI) reads the same factory dumps.

For every present page and for sampled virtual addresses on 4 KiB, 2 MiB and 1 GiB pages,
both must return the same bytes and the same translation.
"""
from __future__ import annotations

import random

import pytest

import dumpkit
from dumpkit.errors import MemoryReadError
from fixtures import factory

kdmp_parser = pytest.importorskip("kdmp_parser")

KINDS = {"full": {}, "bitmap_full": {}, "bitmap_kernel": {}}


def _random_layout(path, kind: str, seed: int):
    """A random physical memory with mappings of every page size, written as ``kind``."""
    rng = random.Random(seed)
    mem = factory.PhysicalMemory(alloc_base_pfn=0x200)
    asp = factory.AddressSpace(mem)
    vas = []
    # 1 GiB page mapping PA 0 (reads of it touch whatever pages exist)
    asp.map(0xFFFFB00000000000, 0, 0x40000000, page_size=0x40000000)
    # two 2 MiB pages
    big = 0x4000000
    asp.map(0xFFFFF80400000000, big, 0x400000, page_size=0x200000)
    for i in range(0, 0x400000, 0x40000):
        mem.write(big + i, rng.randbytes(64))
        vas.append(0xFFFFF80400000000 + i)
    # scattered 4 KiB pages
    for _ in range(40):
        va = 0xFFFFA00000000000 + rng.randrange(0, 1 << 30) & ~0xFFF
        try:
            asp.map_new(va, rng.randbytes(0x1000))
        except factory.MappingError:
            continue
        vas.append(va + rng.randrange(0, 0x1000))
    writer = {"full": factory.write_full_dump,
              "bitmap_full": lambda p, m: factory.write_bitmap_dump(p, m, signature="FDMP", dump_type=5),
              "bitmap_kernel": lambda p, m: factory.write_bitmap_dump(p, m, signature="SDMP", dump_type=6)}[kind]
    writer(path, mem)
    vas += [0xFFFFB00000000000 + (p << 12) + 0x10 for p in mem.present_pfns()[:30]]
    return mem, vas


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("seed", [1, 2])
def test_same_pages_and_translations_as_kdmp_parser(kind, seed, tmp_path):
    path = tmp_path / f"{kind}.dmp"
    mem, vas = _random_layout(path, kind, seed)
    peer = kdmp_parser.KernelDumpParser(str(path))
    dtb = peer.directory_table_base
    with dumpkit.open(path) as d:
        assert d.header.directory_table_base == dtb
        # every page the peer holds, byte for byte
        peer_pages = 0
        for pfn in mem.present_pfns():
            pa = pfn << 12
            theirs = peer.read_physical_page(pa)
            if theirs is None:
                assert not d.is_present(pa)
                continue
            peer_pages += 1
            assert d.read_physical(pa, 0x1000) == bytes(theirs), hex(pa)
        assert peer_pages == d.physical.page_count if kind != "full" else peer_pages > 0
        # sampled virtual addresses of every page size
        for va in vas:
            theirs = peer.translate_virtual(va, dtb)
            try:
                ours = d.translate(va)
            except MemoryReadError:
                ours = None
            assert ours == theirs, hex(va)
            page = peer.read_virtual_page(va & ~0xFFF, dtb)
            if page is not None:
                assert d.read_virtual(va & ~0xFFF, 0x1000) == bytes(page), hex(va)


def test_basic_dump_header_matches_peer(tmp_path):
    made = factory.make_basic_dump(tmp_path / "b.dmp", "bitmap_kernel")
    peer = kdmp_parser.KernelDumpParser(str(tmp_path / "b.dmp"))
    with dumpkit.open(tmp_path / "b.dmp") as d:
        assert d.bugcheck.code == peer.header.BugCheckCode
        assert list(d.bugcheck.parameters) == list(peer.header.BugCheckCodeParameter)
        assert d.header.kd_debugger_data_block == peer.header.KdDebuggerDataBlock
        ctx = d.contexts["header"]
        for reg in ("rax", "rbx", "rcx", "rdx", "rsp", "rbp", "rip", "r8", "r15"):
            assert ctx.regs[reg] == getattr(peer.context, reg.capitalize()), reg
        assert made.header.bugcheck_code == d.bugcheck.code
