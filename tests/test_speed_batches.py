"""Dump.iter_page_batches (issue 12): every present page exactly once, in file order, with the
bytes kdmp-parser reads for the same page frame (an independent reader); batches are
file-contiguous, bounded by max_bytes, and carry numpy page numbers; copy=True gives the same
bytes; a truncated file stops at its last whole page; runs and `dumpkit scan` agree with the
PFN lists the fixture writer itself chose."""
from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

import dumpkit
from fixtures import factory

kdmp_parser = pytest.importorskip("kdmp_parser")


def _memory(seed: int) -> factory.PhysicalMemory:
    rng = random.Random(seed)
    mem = factory.PhysicalMemory(alloc_base_pfn=0x10)
    pfn = 0x10
    for _ in range(30):                                  # runs of 1..40 pages with gaps (<= 42: full dumps)
        pfn += rng.randrange(1, 30)
        for _ in range(rng.randrange(1, 40)):
            page = rng.randbytes(0x1000) if rng.random() < 0.8 else bytes(0x1000)
            mem.write(pfn << 12, page)
            pfn += 1
    return mem


WRITERS = {
    "full": factory.write_full_dump,
    "bitmap": lambda p, m: factory.write_bitmap_dump(p, m, signature="FDMP", dump_type=5),
    "kernel": lambda p, m: factory.write_bitmap_dump(p, m, signature="SDMP", dump_type=6),
}


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize("max_bytes", [0x1000, 0x5000, 4 << 20])
def test_batches_hold_the_pages_kdmp_parser_reads(kind, max_bytes, tmp_path):
    path = tmp_path / f"{kind}.dmp"
    mem = _memory(3)
    WRITERS[kind](path, mem)
    peer = kdmp_parser.KernelDumpParser(str(path))
    with dumpkit.open(path) as d:
        seen = []
        prev_end = None
        for pfns, data in d.iter_page_batches(max_bytes):
            assert isinstance(pfns, np.ndarray) and pfns.dtype == np.int64
            assert len(data) == len(pfns) * 0x1000 <= max(max_bytes, 0x1000)
            for i, pfn in enumerate(pfns.tolist()):
                assert bytes(data[i * 0x1000:(i + 1) * 0x1000]) == bytes(peer.read_physical_page(pfn << 12))
            seen.extend(pfns.tolist())
            prev_end = pfns[-1]
        assert prev_end is not None
        assert seen == [p for p in mem.present_pfns() if d.is_present(p << 12)]
        assert len(seen) == d.physical.page_count
        copied = [(p.copy(), bytes(b)) for p, b in d.iter_page_batches(max_bytes, copy=True)]
        again = [(p.copy(), bytes(b)) for p, b in d.iter_page_batches(max_bytes)]
        assert all((a[0] == b[0]).all() and a[1] == b[1] for a, b in zip(copied, again))
        assert len(copied) == len(again)


@pytest.mark.parametrize("kind", sorted(WRITERS))
def test_runs_are_the_maximal_runs_of_the_written_pfns(kind, tmp_path):
    path = tmp_path / f"{kind}.dmp"
    mem = _memory(5)
    WRITERS[kind](path, mem)
    pf = np.array(mem.present_pfns(), dtype=np.int64)
    br = np.flatnonzero(np.diff(pf) != 1) + 1
    want = [(int(pf[s]), int(e - s)) for s, e in zip(np.concatenate(([0], br)), np.concatenate((br, [len(pf)])))]
    with dumpkit.open(path) as d:
        assert [(p, c) for p, c, _ in d.physical._iter_runs_in_file(batch_pages=7)] == want
        got = [(pa >> 12, len(mv) >> 12) for pa, mv in d.iter_physical_runs()]
        assert got == want
        for pa, mv in d.iter_physical_runs():
            assert bytes(mv[:0x1000]) == d.read_physical(pa, 0x1000)


def test_truncated_dump_stops_at_the_last_whole_page(tmp_path):
    path = tmp_path / "cut.dmp"
    mem = _memory(7)
    factory.write_bitmap_dump(path, mem)
    data = path.read_bytes()
    keep = len(data) - 5 * 0x1000 - 0x800                # five and a half pages cut
    path.write_bytes(data[:keep])
    with pytest.warns(dumpkit.DumpWarning):
        d = dumpkit.open(path)
    with d:
        n = sum(len(p) for p, _ in d.iter_page_batches(0x3000))
        assert n == d.physical.page_count - 6
        assert sum(len(p) for p, _ in d.iter_page_batches(0x3000, copy=True)) == n


def test_large_sparse_bitmap_batches_are_bounded(tmp_path):
    """A 512 MiB-physical sparse dump: every 2nd page present (one-page runs), stamps where the writer put them."""
    path = tmp_path / "sparse.dmp"
    total = 1 << 17
    info = factory.write_sparse_bitmap_dump(path, total, range(0, total, 2), stamp_every=409)
    stamped = set(info.stamped_pfns.tolist())
    with dumpkit.open(path) as d:
        count = 0
        found = set()
        for pfns, data in d.iter_page_batches(1 << 20):
            assert len(pfns) <= 256
            assert (np.diff(pfns) == 2).all()
            rows = np.frombuffer(data, dtype=np.uint64).reshape(len(pfns), 512)
            for i in np.flatnonzero(rows[:, 0] == pfns).tolist():
                if bytes(data[i * 4096 + 8:i * 4096 + 16]) == b"DKSTAMP!":
                    found.add(int(pfns[i]))
            count += len(pfns)
        assert count == total // 2 == d.physical.page_count
        assert found == stamped
        assert sum(1 for _ in d.physical.iter_runs()) == total // 2


def test_scan_cli_counts_runs_zero_pages_and_the_largest_run(tmp_path):
    path = tmp_path / "scan.dmp"
    mem = _memory(9)
    factory.write_bitmap_dump(path, mem)
    pf = np.array(mem.present_pfns(), dtype=np.int64)
    br = np.flatnonzero(np.diff(pf) != 1) + 1
    lens = np.diff(np.concatenate(([0], br, [len(pf)])))
    k = int(np.argmax(lens))
    zero = sum(1 for p in pf.tolist() if mem.read(p << 12, 0x1000) == bytes(0x1000))
    out = subprocess.run([sys.executable, "-m", "dumpkit", "scan", "--json", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["pages"] == len(pf) and r["runs"] == len(lens) and r["zero_pages"] == zero
    starts = np.concatenate(([0], br))
    assert r["largest_run"] == {"address": hex(int(pf[starts[k]]) << 12), "pages": int(lens[k])}
    assert r["lowest_address"] == hex(int(pf[0]) << 12) and r["highest_address"] == hex((int(pf[-1]) + 1) << 12)
