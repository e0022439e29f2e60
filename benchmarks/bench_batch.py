"""Batch benchmark: dumps per second through ``dumpkit.batch.run`` at 1 and 2 workers.

The corpus is 200 distinct triage-sized dumps: copies of the real triage dump
(../shared/data/real/dumps/triage_x64.dmp, 1.4 MB) and of the fixture triage dump
(fixtures/dumps/case2_mode0_triage.dmp, 68 KB), each made unique by a counter written into
the 'PAGE' padding of its header (offset 0x1FF0), so that the analysis is the same and only
the SHA-256 differs.  Measured:

* the analysis floor: the same files through ``dumpkit.analyze`` in one warm process;
* per worker count: wall time of ``batch.run`` on an already started LocalCluster, the
  steady rate (rows per second between the first and the last row), scaling efficiency
  (rate at N workers / (N x rate at 1)), the peak RSS of each worker process and of each
  analysis process (VmHWM), the cluster start time;
* the scheduler's own overhead per task: ``client.map`` of no-op tasks on 2 workers.

Usage: python benchmarks/bench_batch.py [--dumps 200] [--workers 1,2] [--tasks 2000] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
REAL = Path(os.environ.get("DUMPKIT_SHARED", ROOT.parent / "shared")) / "data" / "real"


def _noop(i):
    return i


def _cpu_s() -> float:
    import resource
    ru = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime + ch.ru_utime + ch.ru_stime


def _vmhwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def make_corpus(folder: Path, n: int) -> list:
    sources = [ROOT / "fixtures" / "dumps" / "case2_mode0_triage.dmp"]
    real = REAL / "dumps" / "triage_x64.dmp"
    if real.exists():
        sources.insert(0, real)
    datas = [s.read_bytes() for s in sources]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        b = bytearray(datas[i % len(datas)])
        struct.pack_into("<I", b, 0x1FF0, i)          # inside DUMP_HEADER64's unused 'PAGE' fill
        p = folder / f"dump{i:04d}.dmp"
        p.write_bytes(b)
        paths.append(p)
    return paths


def floor(paths) -> dict:
    import warnings
    import dumpkit
    warnings.simplefilter("ignore")
    dumpkit.analyze(str(paths[0]))                     # warm imports and caches
    c0 = _cpu_s()
    t0 = time.perf_counter()
    for p in paths:
        dumpkit.analyze(str(p))
    el = time.perf_counter() - t0
    cpu = _cpu_s() - c0
    return {"seconds_per_dump": el / len(paths), "dumps_per_s": len(paths) / el, "cpu_s_per_dump": cpu / len(paths)}


def measure(paths, workers: int, out: Path) -> dict:
    from distributed import Client
    from dumpkit import batch
    from dumpkit.batch.engine import local_cluster
    t0 = time.perf_counter()
    cluster = local_cluster(workers)
    client = Client(cluster)
    start = time.perf_counter() - t0
    try:
        w0 = client.run(_cpu_s)
        d0 = _cpu_s()
        t0 = time.perf_counter()
        r = batch.run([str(p) for p in paths], out=out, scheduler=client, progress=False)
        wall = time.perf_counter() - t0
        driver_cpu = _cpu_s() - d0
        w1 = client.run(_cpu_s)
        rows = batch.load(str(out)).to_pylist()
        worker_mb = client.run(_vmhwm_mb)
    finally:
        client.close()
        cluster.close()
    times = sorted(x["analysed_at"] for x in rows)
    span = (times[-1] - times[0]).total_seconds() if len(times) > 1 else 0.0
    by_worker = {}
    for x in rows:
        by_worker[x["worker"]] = max(by_worker.get(x["worker"], 0.0), x["peak_rss_mb"] or 0.0)
    analysis = sorted(x["seconds"] for x in rows)
    cpu = [x["cpu_seconds"] for x in rows if x.get("cpu_seconds") is not None]
    # worker processes: their own CPU plus their reaped children (analysis processes that ended)
    worker_cpu = sum(w1[k] - w0.get(k, 0.0) for k in w1)
    return {"workers": workers, "dumps": len(rows), "by_status": r.by_status, "cluster_start_s": start,
            "wall_s": wall, "dumps_per_s_wall": len(rows) / wall,
            "dumps_per_s_steady": (len(rows) - 1) / span if span > 0 else None,
            "analysis_s_median": analysis[len(analysis) // 2],
            "analysis_s_mean": sum(analysis) / len(analysis),
            "analysis_cpu_s_mean": sum(cpu) / len(cpu) if cpu else None,
            "worker_process_cpu_s_per_dump": worker_cpu / len(rows),
            "driver_and_scheduler_cpu_s_per_dump": driver_cpu / len(rows),
            "worker_process_peak_mb": sorted(worker_mb.values()),
            "analysis_process_peak_mb": sorted(by_worker.values())}


def scheduler_overhead(tasks: int) -> dict:
    from distributed import Client
    from dumpkit.batch.engine import local_cluster
    cluster = local_cluster(2)
    client = Client(cluster)
    try:
        client.gather(client.map(_noop, range(50), pure=False))           # warm
        w0, d0 = client.run(_cpu_s), _cpu_s()
        t0 = time.perf_counter()
        client.gather(client.map(_noop, range(tasks), pure=False))
        el = time.perf_counter() - t0
        w1, d1 = client.run(_cpu_s), _cpu_s()
    finally:
        client.close()
        cluster.close()
    wcpu = sum(w1[k] - w0.get(k, 0.0) for k in w1)
    return {"tasks": tasks, "seconds": el, "ms_per_task": 1000 * el / tasks,
            "scheduler_client_cpu_ms_per_task": 1000 * (d1 - d0) / tasks,
            "worker_cpu_ms_per_task": 1000 * wcpu / tasks}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dumps", type=int, default=200)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--tasks", type=int, default=2000)
    ap.add_argument("--json")
    a = ap.parse_args()
    try:
        from dumpkit import batch
        batch.require()
    except Exception as e:  # noqa: BLE001
        print(f"skipped: {e}")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    try:
        paths = make_corpus(tmp / "in", a.dumps)
        size = sum(p.stat().st_size for p in paths)
        res = {"dumps": len(paths), "corpus_mb": size / 1e6, "cpus": os.cpu_count(),
               "load_before": os.getloadavg()[0], "floor": floor(paths), "runs": []}
        print(f"corpus: {len(paths)} dumps, {size / 1e6:.1f} MB; load average {res['load_before']:.1f}")
        print(f"in-process floor: {res['floor']['seconds_per_dump'] * 1000:.1f} ms/dump wall, "
              f"{res['floor']['cpu_s_per_dump'] * 1000:.1f} ms CPU ({res['floor']['dumps_per_s']:.1f} dumps/s)")
        for n in [int(x) for x in a.workers.split(",")]:
            m = measure(paths, n, tmp / f"out{n}")
            res["runs"].append(m)
            print(f"{n} worker(s): cluster start {m['cluster_start_s']:.1f} s, run {m['wall_s']:.1f} s = "
                  f"{m['dumps_per_s_wall']:.1f} dumps/s (steady {m['dumps_per_s_steady'] or 0:.1f}/s), "
                  f"analysis median {m['analysis_s_median'] * 1000:.0f} ms, worker peak "
                  f"{max(m['worker_process_peak_mb']):.0f} MB, analysis process peak "
                  f"{max(m['analysis_process_peak_mb']):.0f} MB, {m['by_status']}")
            print(f"   CPU per dump: analysis {1000 * (m['analysis_cpu_s_mean'] or 0):.1f} ms, worker processes "
                  f"{1000 * m['worker_process_cpu_s_per_dump']:.1f} ms, driver+scheduler "
                  f"{1000 * m['driver_and_scheduler_cpu_s_per_dump']:.1f} ms")
        base = next((m for m in res["runs"] if m["workers"] == 1), None)
        for m in res["runs"]:
            if base and m is not base and base["dumps_per_s_steady"] and m["dumps_per_s_steady"]:
                m["scaling_efficiency"] = m["dumps_per_s_steady"] / (m["workers"] * base["dumps_per_s_steady"])
                print(f"scaling efficiency at {m['workers']} workers: {m['scaling_efficiency'] * 100:.0f}%")
        res["scheduler"] = scheduler_overhead(a.tasks)
        sc = res["scheduler"]
        print(f"scheduler overhead: {sc['ms_per_task']:.2f} ms wall per no-op task ({a.tasks} tasks, 2 workers); "
              f"CPU {sc['scheduler_client_cpu_ms_per_task']:.2f} ms scheduler+client, "
              f"{sc['worker_cpu_ms_per_task']:.2f} ms workers")
        res["load_after"] = os.getloadavg()[0]
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=2, default=str))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
