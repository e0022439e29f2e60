"""Sequential scan benchmark (issue 12): dumpkit's page batches against ``readinto`` of the same bytes.

Writes a bitmap dump (default: 16 GiB of physical address space, every 2nd page present: 2 Mi
one-page runs, 8 GiB of page data) with **real bytes in every present page**
(``fixtures.factory.write_sparse_bitmap_dump(page_data=True)``: a hole would read as zero pages
without touching the disk).  Then, interleaved in the same run and each in its own process, warm
(page cache filled) and cold (that one file's cache dropped with ``posix_fadvise(DONTNEED)``):

* ``readinto``: the page area read with ``readinto`` into a reused 4 MiB buffer, each buffer
  checked for zero pages with numpy (the same consumer dumpkit's runs use): the limit;
* ``batches``: ``Dump.iter_page_batches()`` (zero-copy views), the same numpy consumer;
* ``batches-copy``: ``iter_page_batches(copy=True)`` (preadv into a reused buffer);
* ``scan-cli``: the ``dumpkit scan --json`` command, whole process; its peak anonymous memory
  (RssAnon, sampled) and peak RSS (VmHWM).

Each measure is repeated (``--repeat``) and the best kept; ratios are to the best ``readinto``
of the same temperature.  The dump needs ``present pages * 4 KiB`` of free disk (it is removed
afterwards unless ``--keep``).

Usage:  python benchmarks/bench_scan.py [--gib 16] [--every 2] [--repeat 3] [--dump PATH] [--keep]
                                        [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BUF = 4 << 20


def make_dump(path: Path, gib: int, every: int) -> dict:
    import numpy as np
    from fixtures.factory import write_sparse_bitmap_dump
    total = gib * (1 << 30) // 4096
    need = total // every * 4096 + (64 << 20)
    free = shutil.disk_usage(path.parent).free
    if free < need * 1.1:
        raise SystemExit(f"need {need / 2**30:.1f} GiB free in {path.parent}, have {free / 2**30:.1f} GiB")
    t0 = time.perf_counter()
    info = write_sparse_bitmap_dump(path, total, np.arange(0, total, every, dtype=np.int64), page_data=True)
    return {"total_pages": total, "present_pages": info.present_pages, "file_size": info.file_size,
            "zero_pages": info.present_pages - len(info.stamped_pfns), "make_s": time.perf_counter() - t0}


def drop_cache(path: str) -> None:
    """Evict this file's pages from the page cache (only this file)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm_cache(path: str) -> None:
    with open(path, "rb") as f:
        buf = bytearray(16 << 20)
        while f.readinto(buf):
            pass


def _status(pid: str = "self") -> dict:
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmHWM", "RssAnon", "VmRSS"):
                out[k] = int(v.split()[0]) / 1024.0
    except OSError:
        pass
    return out


def worker(tool: str, path: str) -> dict:
    import numpy as np
    t0 = time.perf_counter()
    pages = zero = 0
    if tool == "readinto":
        with open(path, "rb", buffering=0) as f:
            f.seek(0x2020)
            first = int.from_bytes(f.read(8), "little")
            count = int.from_bytes(f.read(8), "little")
            buf = bytearray(BUF)
            mv = memoryview(buf)
            f.seek(first)
            left = count * 4096
            while left > 0:
                n = f.readinto(mv[:min(BUF, left)])
                if not n:
                    break
                rows = np.frombuffer(mv[:n], dtype=np.uint64).reshape(-1, 512)
                zero += rows.shape[0] - int(np.count_nonzero(rows.any(axis=1)))
                pages += rows.shape[0]
                left -= n
    else:
        import dumpkit
        with dumpkit.open(path) as d:
            for pfns, data in d.iter_page_batches(BUF, copy=(tool == "batches-copy")):
                rows = np.frombuffer(data, dtype=np.uint64).reshape(len(pfns), 512)
                zero += len(pfns) - int(np.count_nonzero(rows.any(axis=1)))
                pages += len(pfns)
                del rows, data
    secs = time.perf_counter() - t0
    st = _status()
    return {"tool": tool, "seconds": secs, "pages": pages, "zero_pages": zero,
            "peak_rss_mb": st.get("VmHWM"), "rss_anon_mb": st.get("RssAnon")}


def run_cli(path: str) -> dict:
    """`dumpkit scan --json` as a user runs it; anonymous RSS sampled every 20 ms."""
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-m", "dumpkit", "scan", "--json", "--no-progress", path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    peak = {"RssAnon": 0.0, "VmHWM": 0.0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            st = _status(str(p.pid))
            for k in peak:
                peak[k] = max(peak[k], st.get(k, 0.0))
            time.sleep(0.02)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = p.communicate()
    secs = time.perf_counter() - t0
    stop.set()
    th.join()
    if p.returncode not in (0,):
        return {"tool": "scan-cli", "error": err.strip().splitlines()[-1:] or ["failed"]}
    r = json.loads(out)
    return {"tool": "scan-cli", "seconds": secs, "pages": r["pages"], "zero_pages": r["zero_pages"],
            "runs": r["runs"], "peak_rss_mb": peak["VmHWM"], "rss_anon_mb": peak["RssAnon"]}


def one(tool: str, path: str) -> dict:
    if tool == "scan-cli":
        return run_cli(path)
    cp = subprocess.run([sys.executable, __file__, "--worker", tool, "--dump", path], capture_output=True,
                        text=True, cwd=str(ROOT))
    if cp.returncode != 0:
        return {"tool": tool, "error": cp.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(cp.stdout.strip().splitlines()[-1])


TOOLS = ("readinto", "batches", "batches-copy", "scan-cli")


def run_all(path: str, repeat: int, temps=("warm", "cold")) -> dict:
    best: dict = {}
    runs: list = []
    for rep in range(repeat):
        for temp in temps:
            for tool in TOOLS:                        # interleaved: the peer next to each dumpkit run
                if temp == "cold":
                    drop_cache(path)
                else:
                    warm_cache(path)
                r = one(tool, path)
                r.update(temp=temp, rep=rep)
                runs.append(r)
                key = (temp, tool)
                if "seconds" in r and (key not in best or r["seconds"] < best[key]["seconds"]):
                    best[key] = r
    return {"best": {f"{t}/{n}": v for (t, n), v in best.items()}, "runs": runs}


def report(meta: dict, res: dict) -> str:
    b = res["best"]
    size = meta["present_pages"] * 4096
    lines = [f"dump: {meta['total_pages'] * 4096 / 2**30:.0f} GiB physical, {meta['present_pages']:,} present pages "
             f"({size / 2**30:.1f} GiB of real page data, {meta['zero_pages']:,} zero pages), "
             f"written in {meta.get('make_s', 0):.0f} s", "",
             f"{'measure':<26}{'seconds':>9}{'GB/s':>8}{'of readinto':>13}{'peak RSS':>10}{'anon':>8}"]
    for temp in ("warm", "cold"):
        ref = b.get(f"{temp}/readinto")
        for tool in TOOLS:
            r = b.get(f"{temp}/{tool}")
            if r is None:
                continue
            pct = f"{ref['seconds'] / r['seconds'] * 100:.0f}%" if ref else "-"
            lines.append(f"{temp + ' ' + tool:<26}{r['seconds']:>9.2f}{size / r['seconds'] / 1e9:>8.2f}{pct:>13}"
                         f"{(r.get('peak_rss_mb') or 0):>9.0f}M{(r.get('rss_anon_mb') or 0):>7.0f}M")
    for r in res["runs"]:
        if "error" in r:
            lines.append(f"{r['temp']} {r['tool']}: {r['error']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=int, default=16)
    ap.add_argument("--every", type=int, default=2, help="every N-th page present")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dump", help="dump path (made if missing)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--worker")
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(worker(a.worker, a.dump)))
        return
    path = Path(a.dump or f"/tmp/dumpkit-bench-scan-{a.gib}g.dmp")
    made = not path.exists()
    meta = make_dump(path, a.gib, a.every) if made else None
    try:
        if meta is None:
            import dumpkit
            with dumpkit.open(path) as d:
                meta = {"total_pages": d.physical._bits, "present_pages": d.physical.page_count,
                        "file_size": d.source.size, "zero_pages": -1}
        res = run_all(str(path), a.repeat)
        for r in res["runs"]:
            if "pages" in r and r["pages"] != meta["present_pages"]:
                raise SystemExit(f"{r['tool']} saw {r['pages']} pages, expected {meta['present_pages']}")
        print(report(meta, res))
        if a.json:
            Path(a.json).write_text(json.dumps({"dump": meta, **res}, indent=2))
    finally:
        if made and not a.keep:
            path.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
