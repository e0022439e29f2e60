"""Run the atheris harnesses with a time budget each and collect what they found.

    python -m fuzz.run                          # every target, 600 s each, 2 at a time
    python -m fuzz.run pe cab --seconds 60      # some targets
    python -m fuzz.run --list

Seeds (fixtures/, tests/data/, fuzz/seeds/ and, when present, ../shared/data/real read in place)
are copied into a scratch work folder with the growing corpus (``--workdir``, default
``$TMPDIR/dumpkit-fuzz``); nothing large enters the repository.  Crashes, hangs (an input
taking over ``--input-timeout`` seconds) and out-of-memory inputs are written to
``fuzz/crashers/<target>/``: commit them, fix the bug, and the default test suite replays
them (tests/test_fuzz_regressions.py).  A summary (executions, corpus size, findings per
target) is printed and written to ``<workdir>/summary.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List

from .targets import ROOT, TARGETS, seed_files

CRASHERS = ROOT / "fuzz" / "crashers"
_STAT = re.compile(r"^stat::(\w+):\s*(\d+)", re.M)
_EXECS = re.compile(r"#(\d+)\s+(?:DONE|pulse|NEW|REDUCE|INITED)\b.*?exec/s: (\d+)")


def run_one(name: str, seconds: int, workdir: Path, input_timeout: int, rss_mb: int, nice: int) -> Dict:
    work = workdir / name
    corpus, seeds = work / "corpus", work / "seeds"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds.mkdir(parents=True, exist_ok=True)
    for p in seed_files(name):
        dest = seeds / f"{p.parent.name}_{p.name}"
        if not dest.exists():
            shutil.copyfile(p, dest)
    out_dir = CRASHERS / name
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.iterdir())
    cmd = [sys.executable, "-m", "fuzz.harness", name, f"-max_total_time={seconds}",
           f"-timeout={input_timeout}", f"-rss_limit_mb={rss_mb}", f"-artifact_prefix={out_dir}/",
           "-print_final_stats=1", "-max_len=1048576", "-report_slow_units=100000", "-close_fd_mask=1", str(corpus), str(seeds)]
    if nice:
        cmd = ["nice", "-n", str(nice)] + cmd
    t0 = time.monotonic()
    log_path = work / "fuzz.log"
    with open(log_path, "w") as log:
        # libFuzzer stops at the first crash; go on (-fork would be the alternative) until the time is used
        while True:
            left = seconds - (time.monotonic() - t0)
            if left < 5:
                break
            cmd[cmd.index(next(c for c in cmd if c.startswith("-max_total_time=")))] = f"-max_total_time={int(left)}"
            n_before = len(list(out_dir.iterdir()))
            proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=_env(), check=False)
            if proc.returncode == 0 or len(list(out_dir.iterdir())) == n_before:
                break                     # done, or failed without a finding (see the log)
    text = log_path.read_text(errors="replace")
    stats: Dict[str, int] = {}
    for k, v in _STAT.findall(text):
        stats[k] = stats.get(k, 0) + int(v)
    found, not_reproduced = [], []
    for p in sorted(set(out_dir.iterdir()) - before):
        if p.name.startswith("slow-unit-"):     # slow under instrumentation, not a bug: kept aside, not committed
            shutil.move(str(p), str(work / p.name))
            continue
        verdict = check_artifact(name, p, rss_mb, input_timeout)
        if verdict is None:
            found.append(str(p.relative_to(ROOT)))
        else:                                   # the input alone is cheap: the long-lived fuzzer process grew
            shutil.move(str(p), str(work / f"unreproduced-{p.name}"))
            not_reproduced.append({"artifact": p.name, "replay": verdict})
    return {"target": name, "seconds": round(time.monotonic() - t0, 1),
            "executions": stats.get("number_of_executed_units", 0), "corpus": len(list(corpus.iterdir())),
            "seeds": len(list(seeds.iterdir())), "peak_rss_mb": stats.get("peak_rss_mb", 0), "found": found,
            "not_reproduced": not_reproduced, "log": str(log_path)}


#: a replayed artifact is a finding when it fails, or takes more CPU seconds than this, or peaks above
#: a quarter of the fuzzer's memory limit (the same bars as tests/test_fuzz_regressions.py, generously)
REPLAY_CPU_SECONDS = 1.0

_REPLAY = """
import resource, sys, time
from fuzz.targets import replay
data = open(sys.argv[2], "rb").read()
t = time.process_time()
replay(sys.argv[1], data)
print("cpu=%.3f rss_mb=%d" % (time.process_time() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss >> 10))
"""


def check_artifact(name: str, path: Path, rss_mb: int, input_timeout: int) -> "str | None":
    """Replay one artifact in a fresh, uninstrumented process.  None: it reproduces (a finding);
    else what the replay measured (``cpu=0.210 rss_mb=36``), for an out-of-memory or timeout
    artifact that the input alone does not cause: libFuzzer's process had grown over thousands of
    runs (its corpus, heap fragmentation), and the input is not committed."""
    if not path.name.startswith(("oom-", "timeout-")):
        return None                             # a crash (an exception escaped): always a finding
    try:
        proc = subprocess.run([sys.executable, "-c", _REPLAY, name, str(path)], cwd=ROOT, env=_env(),
                              capture_output=True, text=True, timeout=max(5, input_timeout) * 3, check=False)
    except subprocess.TimeoutExpired:
        return None
    m = re.search(r"cpu=([\d.]+) rss_mb=(\d+)", proc.stdout)
    if proc.returncode != 0 or not m:
        return None
    if float(m.group(1)) > REPLAY_CPU_SECONDS or int(m.group(2)) > rss_mb // 4:
        return None
    return m.group(0)


def _env() -> Dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("DUMPKIT_OFFLINE", "1")
    # a fixed mmap threshold: glibc otherwise raises it after large frees, and the fuzzer's long-lived
    # corpus copies interleaved with each run's large transient buffers fragment the heap
    env.setdefault("MALLOC_MMAP_THRESHOLD_", str(256 << 10))
    return env


def main(argv: List[str] = None) -> int:  # type: ignore[assignment]
    ap = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("targets", nargs="*", help="targets to run (default: all)")
    ap.add_argument("--seconds", type=int, default=600, help="time budget per target (default 600)")
    ap.add_argument("--jobs", type=int, default=2, help="targets run at the same time (default 2)")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "dumpkit-fuzz"))
    ap.add_argument("--input-timeout", type=int, default=10, help="seconds one input may take (a hang)")
    ap.add_argument("--rss-mb", type=int, default=2048, help="memory limit per harness (MiB)")
    ap.add_argument("--nice", type=int, default=19, help="niceness of the harness processes (0: none)")
    ap.add_argument("--list", action="store_true", help="list the targets and their seeds")
    a = ap.parse_args(argv)
    if a.list:
        for n, fn in TARGETS.items():
            print(f"{n:15} {len(seed_files(n)):3} seeds  {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    names = a.targets or list(TARGETS)
    bad = [n for n in names if n not in TARGETS]
    if bad:
        ap.error(f"unknown target(s) {', '.join(bad)}; --list shows them")
    try:
        import atheris  # noqa: F401
    except ImportError:
        ap.error("atheris is not installed: pip install -e '.[fuzz]'")
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
        results = list(pool.map(lambda n: run_one(n, a.seconds, workdir, a.input_timeout, a.rss_mb, a.nice), names))
    (workdir / "summary.json").write_text(json.dumps(results, indent=1))
    print(f"{'target':15} {'seconds':>8} {'executions':>11} {'corpus':>7}  found")
    for r in results:
        print(f"{r['target']:15} {r['seconds']:8.0f} {r['executions']:11,} {r['corpus']:7}  "
              f"{', '.join(r['found']) or '-'}"
              + "".join(f"  (not reproduced alone: {x['artifact']}, {x['replay']})" for x in r["not_reproduced"]))
    return 1 if any(r["found"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
