"""Start-up benchmark (issue 12): `dumpkit analyze` on the real triage dump, whole process.

Interleaved in one run, best of ``--repeat``: ``python -c pass`` (the interpreter alone),
``python -c "import dumpkit"``, ``dumpkit analyze <triage dump>`` and, with ``--baseline DIR``
(a checkout of another revision, e.g. ``git worktree add /tmp/base main``), the same command run
from that tree.  Wall time and CPU time (user+sys) of each process: on a shared machine the CPU
time is the steadier figure.  Byte-code caches are allowed (``PYTHONDONTWRITEBYTECODE`` is
dropped) as in an installed wheel; each tree is compiled first.  Then ``-X importtime`` of one
analyze run: the modules that cost most, and whether numpy, construct, the HTTP client or
tomllib were imported at all.

Usage:  python benchmarks/bench_startup.py [--dump PATH] [--repeat 15] [--baseline DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("DUMPKIT_SHARED", ROOT.parent / "shared"))
HEAVY = ("numpy", "construct", "capstone", "urllib.request", "http.client", "ssl", "tomllib")


def _env() -> dict:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(cmd, cwd) -> tuple:
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    cp = subprocess.run(cmd, cwd=cwd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return wall, cpu, cp.returncode


def importtime(dump: str, cwd) -> dict:
    cp = subprocess.run([sys.executable, "-X", "importtime", "-m", "dumpkit", "analyze", dump], cwd=cwd,
                        env=_env(), capture_output=True, text=True)
    top = []
    names = set()
    for line in cp.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        names.add(m.group(4))
        if len(m.group(3)) == 1:
            top.append((int(m.group(2)) / 1e3, m.group(4)))
    top.sort(reverse=True)
    return {"top_level_ms": top[:12], "heavy_imported": [h for h in HEAVY if h in names]}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", default=str(SHARED / "data" / "real" / "dumps" / "triage_x64.dmp"))
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--baseline", help="another checkout to time the same command from")
    ap.add_argument("--json")
    a = ap.parse_args()
    if not os.path.exists(a.dump):
        print(f"{a.dump} not found (set DUMPKIT_SHARED)", file=sys.stderr)
        return 1
    py = sys.executable
    trees = {"this tree": str(ROOT)}
    if a.baseline:
        trees["baseline"] = a.baseline
    for t in trees.values():
        subprocess.run([py, "-m", "compileall", "-q", "dumpkit"], cwd=t, env=_env(), stdout=subprocess.DEVNULL)
    cases = [("python -c pass", [py, "-c", "pass"], str(ROOT)),
             ("import dumpkit", [py, "-c", "import dumpkit"], str(ROOT))]
    for name, t in trees.items():
        cases.append((f"dumpkit analyze ({name})", [py, "-m", "dumpkit", "analyze", a.dump], t))
    best = {n: [9e9, 9e9] for n, _, _ in cases}
    for _ in range(a.repeat):
        for name, cmd, cwd in cases:                     # interleaved
            w, c, rc = timed(cmd, cwd)
            if rc not in (0, 1):                          # analyze exits 1 for an incomplete analysis
                raise SystemExit(f"{name}: exit {rc}")
            best[name][0] = min(best[name][0], w)
            best[name][1] = min(best[name][1], c)
    it = importtime(a.dump, str(ROOT))
    print(f"best of {a.repeat}, interleaved; load average {os.getloadavg()[0]:.1f}")
    for name, (w, c) in best.items():
        print(f"  {name:<36} wall {w * 1e3:7.1f} ms   cpu {c * 1e3:7.1f} ms")
    w = best["dumpkit analyze (this tree)"][0]
    print(f"  goal: analyze <= 0.3 s whole process: {'met' if w <= 0.3 else 'NOT met'} ({w:.3f} s)")
    print("  imported on the analyze path:", ", ".join(it["heavy_imported"]) or "none of " + ", ".join(HEAVY))
    print("  costliest top-level imports (ms, one -X importtime run):")
    for ms, mod in it["top_level_ms"]:
        print(f"    {ms:7.1f}  {mod}")
    if a.json:
        Path(a.json).write_text(json.dumps({"best": best, "importtime": it}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
