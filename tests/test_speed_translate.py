"""Translation caches of issue 12: answers stay those of kdmp-parser (an independent reader) per
call and in batch (``translate_many``), the caches are bounded (translators per page-table root,
shared page-table pages), and random page-table reads keep RSS flat (pread, not the mapping)."""
from __future__ import annotations

import random

import numpy as np
import pytest

import dumpkit
from dumpkit.errors import MemoryReadError
from dumpkit.target.memory import Memory
from fixtures import factory

from .test_reader_kdmp import _random_layout

kdmp_parser = pytest.importorskip("kdmp_parser")


def _probe_vas(vas, seed):
    rng = random.Random(seed)
    out = list(vas)
    out += [va + 0x1000 * k for va in vas[:20] for k in (1, 7, 300)]           # neighbours, mapped or not
    out += [0xFFFFB00000000000 + rng.randrange(0, 1 << 30) for _ in range(200)]  # the 1 GiB page
    out += [0x0000800000000000, 0xFFFF7FFFFFFFF000, 0, 0x1000]                   # not canonical / low
    out += [rng.randrange(0, 1 << 64) for _ in range(100)]
    return out


@pytest.mark.parametrize("kind", ["full", "bitmap_full", "bitmap_kernel"])
def test_translate_and_translate_many_agree_with_kdmp_parser(kind, tmp_path):
    path = tmp_path / f"{kind}.dmp"
    _mem, vas = _random_layout(path, kind, 4)
    peer = kdmp_parser.KernelDumpParser(str(path))
    dtb = peer.directory_table_base
    probes = _probe_vas(vas, 4)
    want = []
    for va in probes:
        t = peer.translate_virtual(va & 0xFFFFFFFFFFFFFFFF, dtb)
        want.append(-1 if t is None else t)
    with dumpkit.open(path) as d:
        got = []
        for va in probes:
            try:
                got.append(d.translate(va))
            except MemoryReadError:
                got.append(-1)
        # canonical addresses kdmp-parser translates must match; dumpkit refuses non-canonical ones
        for va, g, w in zip(probes, got, want):
            top = va >> 47
            if top in (0, 0x1FFFF):
                assert g == w, hex(va)
            else:
                assert g == -1
        many = d.address_space().translate_many(np.array(probes, dtype=np.uint64))
        assert many.tolist() == got
        # a second pass (all caches warm) answers the same
        assert [d.translate(va) if g >= 0 else -1 for va, g in zip(probes, got)] == got


def test_translators_are_bounded_and_the_kernel_space_is_kept(tmp_path):
    path = tmp_path / "b.dmp"
    _random_layout(path, "bitmap_full", 1)
    with dumpkit.open(path) as d:
        kernel = d.address_space()
        for k in range(300):                      # 300 processes' page-table roots
            d.address_space(0x7000000 + (k << 12))
            d.address_space()                     # the kernel's space stays the most recently used
        assert len(d.memory._spaces) <= Memory.MAX_SPACES
        assert d.address_space() is kernel


def test_page_table_cache_is_bounded_and_still_right(tmp_path, monkeypatch):
    path = tmp_path / "b.dmp"
    _mem, vas = _random_layout(path, "bitmap_kernel", 2)
    with dumpkit.open(path) as d:
        want = [d.translate(va) for va in vas]
    monkeypatch.setattr(dumpkit.memory.physical.PhysicalLayer, "TABLE_CACHE_PAGES", 2)
    with dumpkit.open(path) as d:
        assert [d.translate(va) for va in vas] == want
        assert len(d.physical.table_cache) <= 2


def _rss_kb() -> int:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_random_read_u64_keeps_rss_flat(tmp_path):
    """50k random 8-byte reads over a 1 GiB page area (larger than the pread threshold):
    reading through the mapping would fault in up to 1 GiB of file pages; pread adds nothing."""
    path = tmp_path / "big.dmp"
    total = 1 << 18                                    # 1 GiB of physical memory, all present
    factory.write_sparse_bitmap_dump(path, total, range(0, total), stamp_every=None)
    rng = random.Random(1)
    picks = [(rng.randrange(total) << 12) | (rng.randrange(512) << 3) for _ in range(50_000)]
    with dumpkit.open(path) as d:
        ru = d.physical.read_u64
        ru(0)
        before = _rss_kb()
        assert sum(ru(pa) for pa in picks) == 0         # the page area is a hole: zeros
        grown_mb = (_rss_kb() - before) / 1024
    assert grown_mb < 32, f"RSS grew by {grown_mb:.0f} MB"
