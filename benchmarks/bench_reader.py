"""Reader benchmark: dumpkit against kdmp-parser (and volatility3's crash layer if installed).

Makes a sparse bitmap dump (default: 16 GiB of physical address space, 2 Mi present
pages in runs of varying length; the page area is a file hole, so nothing like 8 GB is
written), then measures, each tool in its own process so peak RSS is its own:

* open time (header + physical index);
* 100k random 4 KiB page reads;
* 1M random ``read_u64`` (the page-table walk's read) and the RSS they add;
* a sequential scan of every present page (GB/s) of the sparse file, against plain ``readinto()``
  (the hole reads as zeros without disk I/O: ``bench_scan.py`` measures the scan on real bytes);
* peak RSS.

Usage:  python benchmarks/bench_reader.py [--gib 16] [--present-mib 2] [--reads 100000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def make_dump(path: Path, gib: int, present_mi: float, seed: int = 7) -> dict:
    import numpy as np
    from fixtures.factory import write_sparse_bitmap_dump

    total = gib * (1 << 30) // 4096
    want = int(present_mi * (1 << 20))
    rng = np.random.default_rng(seed)
    # runs of 1..4096 pages separated by gaps, like a real kernel dump's scattered memory
    pfns = []
    have = 0
    pos = 0
    while have < want and pos < total:
        gap = int(rng.integers(0, 2048))
        run = int(min(rng.integers(1, 4096), want - have, total - pos - gap))
        if run <= 0:
            break
        pos += gap
        pfns.append(np.arange(pos, pos + run, dtype=np.int64))
        pos += run
        have += run
    arr = np.concatenate(pfns)
    info = write_sparse_bitmap_dump(path, total, arr, stamp_every=4096)
    return {"total_pages": total, "present_pages": int(len(arr)), "file_size": info.file_size,
            "runs": len(pfns)}


def _rss_mb() -> float:
    """This process's own peak RSS (VmHWM; ru_maxrss would include the parent's peak across exec)."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _vmrss_mb() -> float:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _random_pfns(path: str, n: int, seed: int = 11):
    import numpy as np
    # the present PFNs, recovered from the bitmap independently of either reader
    with open(path, "rb") as f:
        f.seek(0x2030)
        bits = int.from_bytes(f.read(8), "little")
        bm = np.frombuffer(f.read((bits + 7) // 8), dtype=np.uint8)
    present = np.flatnonzero(np.unpackbits(bm, bitorder="little"))
    rng = np.random.default_rng(seed)
    return present[rng.integers(0, len(present), n)].tolist()


def worker(tool: str, path: str, reads: int) -> dict:
    import numpy as np
    pfns = _random_pfns(path, reads)
    base_rss = _rss_mb()
    out: dict = {"tool": tool}
    if tool == "dumpkit":
        import dumpkit
        t0 = time.perf_counter()
        d = dumpkit.open(path)
        out["open_s"] = time.perf_counter() - t0
        rd = d.read_physical
        t0 = time.perf_counter()
        for pfn in pfns:
            rd(pfn << 12, 4096)
        out["random_reads_s"] = time.perf_counter() - t0
        out["rss_after_reads_mb"] = _rss_mb()
        # 1M random read_u64 (what every page-table walk does): RSS growth must stay small
        import random as _r
        rng = _r.Random(3)
        picks = [(pfns[rng.randrange(len(pfns))] << 12) | (rng.randrange(512) << 3) for _ in range(1_000_000)]
        rss0 = _vmrss_mb()
        ru = d.physical.read_u64
        t0 = time.perf_counter()
        for pa in picks:
            ru(pa)
        out["read_u64_1m_s"] = time.perf_counter() - t0
        out["read_u64_rss_growth_mb"] = _vmrss_mb() - rss0
        t0 = time.perf_counter()
        total = 0
        nz = 0
        for _pfns, mv in d.iter_page_batches():
            a = np.frombuffer(mv, dtype=np.uint64).reshape(-1, 512)
            nz += int(np.count_nonzero(a.any(axis=1)))
            total += len(mv)
        out["scan_s"] = time.perf_counter() - t0
        out["scan_bytes"] = total
    elif tool == "kdmp-parser":
        import kdmp_parser
        t0 = time.perf_counter()
        p = kdmp_parser.KernelDumpParser(path)
        out["open_s"] = time.perf_counter() - t0
        rd = p.read_physical_page
        t0 = time.perf_counter()
        for pfn in pfns:
            rd(pfn << 12)
        out["random_reads_s"] = time.perf_counter() - t0
        # sequential: every present page through the public API, in PFN order
        with open(path, "rb") as f:
            f.seek(0x2030)
            bits = int.from_bytes(f.read(8), "little")
            bm = np.frombuffer(f.read((bits + 7) // 8), dtype=np.uint8)
        present = np.flatnonzero(np.unpackbits(bm, bitorder="little")).tolist()
        t0 = time.perf_counter()
        total = 0
        for pfn in present:
            page = rd(pfn << 12)
            np.frombuffer(page, dtype=np.uint64).any()
            total += len(page)
        out["scan_s"] = time.perf_counter() - t0
        out["scan_bytes"] = total
    elif tool == "readinto":
        with open(path, "rb") as f:
            f.seek(0x2028)
            pages = int.from_bytes(f.read(8), "little")
            f.seek(0x2020)
            first = int.from_bytes(f.read(8), "little")
            buf = bytearray(1 << 20)
            mv = memoryview(buf)
            f.seek(first)
            left = pages * 4096
            t0 = time.perf_counter()
            while left > 0:
                n = f.readinto(mv[:min(len(buf), left)])
                if not n:
                    break
                left -= n
            out["scan_s"] = time.perf_counter() - t0
            out["scan_bytes"] = pages * 4096 - left
    elif tool == "volatility3":
        try:
            from volatility3.framework.layers import crash  # noqa: F401
        except ImportError:
            return {"tool": tool, "skipped": "volatility3 not installed"}
        return {"tool": tool, "skipped": "volatility3 crash layer needs a context setup not automated here"}
    out["peak_rss_mb"] = _rss_mb()
    out["base_rss_mb"] = base_rss
    return out


def run_all(gib: int, present_mi: float, reads: int, workdir: Path) -> dict:
    dump = workdir / f"bench_{gib}g_{present_mi}mi.dmp"
    t0 = time.perf_counter()
    meta = make_dump(dump, gib, present_mi)
    meta["make_s"] = time.perf_counter() - t0
    results = {}
    for tool in ("readinto", "dumpkit", "kdmp-parser", "volatility3"):
        cp = subprocess.run([sys.executable, __file__, "--worker", tool, "--dump", str(dump), "--reads", str(reads)],
                            capture_output=True, text=True)
        if cp.returncode != 0:
            results[tool] = {"tool": tool, "error": cp.stderr.strip().splitlines()[-1:] or ["failed"]}
        else:
            results[tool] = json.loads(cp.stdout.strip().splitlines()[-1])
    dump.unlink(missing_ok=True)
    return {"dump": meta, "results": results, "reads": reads}


def report(res: dict) -> str:
    r = res["results"]
    dk, kp, ri = r.get("dumpkit", {}), r.get("kdmp-parser", {}), r.get("readinto", {})
    lines = [f"dump: {res['dump']['total_pages'] * 4096 / 2**30:.0f} GiB physical, "
             f"{res['dump']['present_pages']:,} present pages in {res['dump']['runs']:,} runs "
             f"(made in {res['dump']['make_s']:.2f} s)", ""]
    lines.append(f"{'measure':<28}{'dumpkit':>14}{'kdmp-parser':>14}{'ratio':>10}")

    def row(name, a, b, fmt, better_low=True):
        if a is None or b is None:
            lines.append(f"{name:<28}{fmt(a) if a is not None else '-':>14}{fmt(b) if b is not None else '-':>14}")
            return
        ratio = (b / a) if better_low else (a / b)
        lines.append(f"{name:<28}{fmt(a):>14}{fmt(b):>14}{ratio:>9.1f}x")

    row("open (ms)", dk.get("open_s", 0) * 1e3, kp.get("open_s") and kp["open_s"] * 1e3, lambda v: f"{v:.2f}")
    n = res["reads"]
    row(f"{n:,} random page reads (s)", dk.get("random_reads_s"), kp.get("random_reads_s"), lambda v: f"{v:.3f}")
    gbs = lambda x: x and x["scan_bytes"] / x["scan_s"] / 1e9  # noqa: E731
    row("sequential scan (GB/s)", gbs(dk), gbs(kp), lambda v: f"{v:.2f}", better_low=False)
    row("peak RSS (MB)", dk.get("peak_rss_mb"), kp.get("peak_rss_mb"), lambda v: f"{v:.0f}")
    if dk.get("read_u64_1m_s") is not None:
        g = dk["read_u64_rss_growth_mb"]
        lines.append(f"{'1M random read_u64':<28}{dk['read_u64_1m_s']:>13.2f}s   RSS growth {g:.0f} MB "
                     f"(goal < 100 MB: {'met' if g < 100 else 'NOT met'})")
    if ri:
        lines.append(f"{'readinto() limit (GB/s)':<28}{gbs(ri):>14.2f}   dumpkit scan = {gbs(dk) / gbs(ri) * 100:.0f}% of it")
    for t, v in r.items():
        if "error" in v or "skipped" in v:
            lines.append(f"{t}: {v.get('error') or v.get('skipped')}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=int, default=16)
    ap.add_argument("--present-mib", type=float, default=2, help="present pages, in Mi pages")
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--json")
    ap.add_argument("--workdir")
    ap.add_argument("--worker")
    ap.add_argument("--dump")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.dump, a.reads)))
        return
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        res = run_all(a.gib, a.present_mib, a.reads, Path(tmp))
    print(report(res))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
