"""Benchmark the PDB reader: open time, index build time, lookups per second.

Usage: python benchmarks/bench_pdb.py [PDB ...] [--big PDB] [--big-repeat 5]
Without arguments it measures every PDB found in ../shared/data/real (symstore and msvc)
and fixtures/drivers/bin, largest first.  Figures are medians over repeated runs.

``--big`` (default: ../shared/data/synthetic/pdb100k/big100000.pdb, 100k publics and 100k
procedures) runs the kernel-scale comparison of issue 12, interleaved in one run, each in a fresh
process, best of ``--big-repeat``: ``llvm-pdbutil dump --publics`` (whole process) against
dumpkit's open + first lookup (in-process, after imports; and the whole process), the first
lookup with the on-disk index from a previous process, and listing every public (in-process and
as a whole process that prints one line per public like llvm-pdbutil).
"""
from __future__ import annotations

import argparse
import glob
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dumpkit.symbolize import Pdb  # noqa: E402


def default_pdbs() -> list:
    shared = os.environ.get("DUMPKIT_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
    pats = [os.path.join(shared, "data", "real", "symstore", "*", "*", "*.pdb"),
            os.path.join(shared, "data", "real", "msvc", "*.pdb"),
            os.path.join(ROOT, "fixtures", "drivers", "bin", "*.pdb")]
    found = sorted({p for pat in pats for p in glob.glob(pat)}, key=os.path.getsize, reverse=True)
    return found


def bench(path: str, repeat: int = 30, lookups: int = 200_000) -> dict:
    opens = []
    for _ in range(repeat):
        t = time.perf_counter()
        p = Pdb.open(path)
        opens.append(time.perf_counter() - t)
        p.close()
    builds = []
    for _ in range(max(3, repeat // 5)):
        p = Pdb.open(path)
        t = time.perf_counter()
        p.lookup(0x1000)                       # first lookup builds the index (publics + procedures)
        builds.append(time.perf_counter() - t)
        p.close()
    p = Pdb.open(path)
    p.lookup(0)
    hi = max((s.virtual_address + s.virtual_size for s in p.sections), default=0x100000)
    rng = random.Random(42)
    rvas = [rng.randrange(0x1000, hi) for _ in range(lookups)]
    t = time.perf_counter()
    hits = 0
    for r in rvas:
        if p.lookup(r) is not None:
            hits += 1
    dt = time.perf_counter() - t
    out = {
        "pdb": os.path.basename(path),
        "size": os.path.getsize(path),
        "publics": len(p.public_symbols()),
        "functions": len(p.functions()),
        "open_ms": statistics.median(opens) * 1e3,
        "index_ms": statistics.median(builds) * 1e3,
        "lookups_per_s": lookups / dt,
        "hit_rate": hits / lookups,
    }
    p.close()
    return out


def peer_publics(path: str, repeat: int = 5) -> dict:
    """The peer in the same run: `llvm-pdbutil dump --publics` (a separate process) against
    dumpkit opening the PDB and listing every public in-process (both best of ``repeat``)."""
    import shutil
    import subprocess
    tool = shutil.which("llvm-pdbutil")
    ours = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        with Pdb.open(path) as pdb:
            n = len(pdb.public_symbols())
        ours.append(time.perf_counter() - t0)
    out = {"publics": n, "dumpkit_ms": min(ours) * 1e3, "llvm_pdbutil_ms": None}
    if tool:
        theirs = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([tool, "dump", "--publics", path], stdout=subprocess.DEVNULL, check=False)
            theirs.append(time.perf_counter() - t0)
        out["llvm_pdbutil_ms"] = min(theirs) * 1e3
    return out


_CHILD = r"""
import sys, time
t0 = time.perf_counter()
import numpy  # noqa: F401  (the index uses it; imported before the clock starts in both modes)
from dumpkit.symbolize.pdb import Pdb
mode, path = sys.argv[1], sys.argv[2]
t1 = time.perf_counter()
if mode in ("first", "cached"):
    p = Pdb.open(path, index_cache=sys.argv[3] if mode == "cached" else None)
    hit = p.lookup(0x5000)
    t2 = time.perf_counter()
    print(repr(hit), file=sys.stderr)
else:
    p = Pdb.open(path)
    pubs = p.public_symbols()
    t2 = time.perf_counter()
    w = sys.stdout.write
    for x in pubs:
        w(f"{x.name} flags={x.flags} addr={x.segment:04}:{x.offset}\n")
    sys.stdout.flush()
print(f"{(t2 - t1) * 1e3:.3f} {(t1 - t0) * 1e3:.3f}", file=sys.stderr)
"""


def big_pdb(path: str, repeat: int = 5) -> dict:
    """Issue 12's kernel-scale measures, interleaved, best of ``repeat``."""
    import shutil
    import subprocess
    import tempfile
    tool = shutil.which("llvm-pdbutil")
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    best: dict = {}

    def keep(k, v):
        if v is not None and (k not in best or v < best[k]):
            best[k] = v

    def child(mode, *extra):
        t0 = time.perf_counter()
        cp = subprocess.run([sys.executable, "-c", _CHILD, mode, path, *extra], capture_output=True, text=True,
                            env=env, cwd=ROOT)
        whole = time.perf_counter() - t0
        inproc = float(cp.stderr.strip().splitlines()[-1].split()[0]) / 1e3
        return whole, inproc

    with tempfile.TemporaryDirectory() as cache:
        child("cached", cache)                          # fills the index cache once
        for _ in range(repeat):
            if tool:
                t0 = time.perf_counter()
                subprocess.run([tool, "dump", "--publics", path], stdout=subprocess.DEVNULL, check=False)
                keep("llvm_pdbutil_s", time.perf_counter() - t0)
            w, i = child("first")
            keep("first_lookup_whole_s", w)
            keep("first_lookup_s", i)
            w, i = child("cached", cache)
            keep("cached_first_lookup_whole_s", w)
            keep("cached_first_lookup_s", i)
            w, i = child("list")
            keep("list_whole_s", w)
            keep("list_s", i)
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pdbs", nargs="*")
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--lookups", type=int, default=200_000)
    shared = os.environ.get("DUMPKIT_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
    ap.add_argument("--big", default=os.path.join(shared, "data", "synthetic", "pdb100k", "big100000.pdb"))
    ap.add_argument("--big-repeat", type=int, default=5)
    ap.add_argument("--big-only", action="store_true")
    a = ap.parse_args(argv)
    if a.big and os.path.exists(a.big):
        r = big_pdb(a.big, a.big_repeat)
        llvm = r.get("llvm_pdbutil_s")
        print(f"kernel-scale PDB {os.path.basename(a.big)} ({os.path.getsize(a.big) / 1e6:.1f} MB), best of "
              f"{a.big_repeat}, interleaved")
        rows = [("llvm-pdbutil dump --publics (whole process)", "llvm_pdbutil_s", None),
                ("dumpkit open + first lookup (in-process)", "first_lookup_s", 0.25),
                ("  same, whole process", "first_lookup_whole_s", None),
                ("  with the on-disk index (in-process)", "cached_first_lookup_s", 0.25),
                ("dumpkit list all publics (in-process)", "list_s", 1.0),
                ("  same, whole process, one line printed per public", "list_whole_s", 1.0)]
        for label, key, goal in rows:
            v = r.get(key)
            if v is None:
                continue
            ratio = f"{v / llvm:6.2f} of llvm-pdbutil" if llvm and key != "llvm_pdbutil_s" else ""
            verdict = ""
            if goal is not None and llvm:
                verdict = f"  goal <= {goal:g}: {'met' if v <= goal * llvm else 'NOT met'}"
            print(f"  {label:<52}{v * 1e3:9.1f} ms  {ratio}{verdict}")
        print()
        if a.big_only:
            return 0
    paths = a.pdbs or default_pdbs()
    if not paths:
        print("no PDB found (pass paths, or provide ../shared)", file=sys.stderr)
        return 1
    print(f"{'pdb':<24} {'bytes':>9} {'publics':>8} {'funcs':>6} {'open ms':>8} {'index ms':>9} "
          f"{'lookups/s':>11} {'hits':>5}")
    for path in paths:
        r = bench(path, a.repeat, a.lookups)
        print(f"{r['pdb']:<24} {r['size']:>9,} {r['publics']:>8} {r['functions']:>6} {r['open_ms']:>8.2f} "
              f"{r['index_ms']:>9.2f} {r['lookups_per_s']:>11,.0f} {r['hit_rate']:>5.0%}")
    print(f"\n{'all publics listed':<24} {'dumpkit ms':>11} {'llvm-pdbutil ms':>16} {'ratio':>7}")
    for path in paths:
        r = peer_publics(path)
        theirs = r["llvm_pdbutil_ms"]
        ratio = f"{theirs / r['dumpkit_ms']:>6.1f}x" if theirs else "      -"
        print(f"{os.path.basename(path):<24} {r['dumpkit_ms']:>11.2f} "
              f"{(f'{theirs:.2f}' if theirs else 'not installed'):>16} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
