"""The PDB lookup index of issue 12 (publics from the address map, procedures from the globals'
procedure references, decoded with numpy) answers exactly what the record-by-record walk answers,
and at kernel scale it agrees with llvm-pdbutil.

Truth: the walk (``Pdb.procedures()``/``public_symbols()``, themselves checked against
llvm-pdbutil in test_symbols_pdb.py) and llvm-pdbutil's own listing of the 100k PDB.
"""
from __future__ import annotations

import bisect
import random
import re
import shutil
import subprocess

import pytest

from .conftest import SHARED
from .test_symbols_pdb import pdb_files
from dumpkit.symbolize import Pdb, undecorate

LLVM_PDBUTIL = shutil.which("llvm-pdbutil")
BIG = SHARED / "data" / "synthetic" / "pdb100k" / "big100000.pdb"
ALL = pytest.mark.parametrize("getter", [g for _, g in pdb_files()], ids=[i for i, _ in pdb_files()])


def _reference(pdb: Pdb):
    """symbol_at as it was before the index: built from the full walk."""
    funcs = {}
    for p in pdb.procedures():
        if p.rva not in funcs or (funcs[p.rva][1] == 0 and p.size):
            funcs[p.rva] = (p.rva, p.size, p.name)
    fl = [funcs[k] for k in sorted(funcs)]
    best = {}
    for p in pdb.public_symbols():
        if p.rva is None:
            continue
        cur = best.get(p.rva)
        if cur is None or (p.is_function and not cur.is_function):
            best[p.rva] = p
    ps = sorted(best)
    secs = sorted((s.virtual_address, s.virtual_address + max(s.virtual_size, 1)) for s in pdb.sections)

    def section(rva):
        i = bisect.bisect_right([s[0] for s in secs], rva) - 1
        return i if i >= 0 and rva < secs[i][1] else None

    def at(rva):
        i = bisect.bisect_right([f[0] for f in fl], rva) - 1
        if i >= 0 and rva < fl[i][0] + fl[i][1]:
            return (fl[i][2], rva - fl[i][0], fl[i][1], "function")
        j = bisect.bisect_right(ps, rva) - 1
        if j < 0:
            return None
        p = best[ps[j]]
        if secs and (section(rva) is None or section(rva) != section(p.rva)):
            return None
        return (undecorate(p.name), rva - p.rva, None, "public")
    return at, fl, ps


def _probe_rvas(fl, ps, hi, n=400, seed=3):
    rng = random.Random(seed)
    out = {0, 1, hi, hi + 0x1000}
    for r, size, _ in fl[:200]:
        out.update((r - 1, r, r + size - 1, r + size))
    for r in ps[:200]:
        out.update((r - 1, r, r + 1))
    out.update(rng.randrange(0, hi + 0x2000) for _ in range(n))
    return sorted(x for x in out if x >= 0)


@ALL
def test_index_answers_like_the_walk(getter):
    path = getter()
    with Pdb.open(path) as pdb:
        at, fl, ps = _reference(pdb)
        hi = max((s.virtual_address + s.virtual_size for s in pdb.sections), default=0x10000)
        for rva in _probe_rvas(fl, ps, hi):
            hit = pdb.symbol_at(rva)
            got = None if hit is None else (hit.name, hit.offset, hit.size, hit.kind)
            assert got == at(rva), hex(rva)


@ALL
def test_index_cache_round_trip(getter, tmp_path):
    path = getter()
    with Pdb.open(path, index_cache=str(tmp_path)) as pdb:
        want = [pdb.lookup(r) for r in range(0, 0x30000, 0x101)]
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1 and files[0].name.startswith(Pdb.open(path).identity)
    with Pdb.open(path, index_cache=str(tmp_path)) as pdb:
        assert [pdb.lookup(r) for r in range(0, 0x30000, 0x101)] == want
        assert pdb._tables is not None
    files[0].write_bytes(b"garbage")                       # a damaged index is rebuilt, not trusted
    with Pdb.open(path, index_cache=str(tmp_path)) as pdb:
        assert [pdb.lookup(r) for r in range(0, 0x30000, 0x101)] == want


_PUB_RE = re.compile(r"S_PUB32 \[size = \d+\] `(.*)`\n\s+flags = ([^,]*), addr = (\d+):(\d+)")


@pytest.mark.slow
@pytest.mark.skipif(LLVM_PDBUTIL is None, reason="llvm-pdbutil not installed (Debian package llvm)")
def test_kernel_sized_pdb_lookups_match_llvm_pdbutil(request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in (about 2 s): pytest -m slow")
    if not BIG.exists():
        pytest.skip(f"{BIG} not present (../shared is only on developer and CI machines)")
    text = subprocess.run([LLVM_PDBUTIL, "dump", "--publics", str(BIG)], check=True, capture_output=True,
                          text=True, timeout=300).stdout
    pubs = [(m.group(1), int(m.group(3)), int(m.group(4))) for m in _PUB_RE.finditer(text)]
    assert len(pubs) == 100_000
    with Pdb.open(BIG) as pdb:
        va = {i + 1: s.virtual_address for i, s in enumerate(pdb.sections)}
        rng = random.Random(5)
        for name, seg, off in rng.sample(pubs, 300):
            # every function of this PDB has a procedure record and a public of the same name
            assert pdb.lookup(va[seg] + off) == (name, 0)
            hit = pdb.symbol_at(va[seg] + off)
            assert hit.kind == "function" and hit.size
            assert pdb.lookup(va[seg] + off + hit.size - 1) == (name, hit.size - 1)
        got = sorted((p.name, p.segment, p.offset) for p in pdb.public_symbols())
        assert got == sorted(pubs)
