"""Each input analysed in isolation, with a time budget and a memory budget.

A worker (a Dask worker thread, or any process) keeps one long-lived *analysis process*
per thread: ``python -m dumpkit.batch.sandbox``, started once and fed jobs as JSON lines
on its standard input, answering one JSON row per job on its standard output.  So the
import cost and the symbol caches are paid once per worker, not once per dump, and yet:

* **time**: the worker waits for the answer at most ``time_limit`` seconds; then it kills
  the process (the row says ``timeout``) and starts a fresh one for the next input;
* **memory**: the process runs under ``RLIMIT_DATA`` = ``memory_limit`` (private writable
  memory: a dump mapped read-only does not count), so a runaway allocation raises
  MemoryError inside the analysis (an ``error`` row; the process is then replaced); as a
  backstop the worker polls the process' anonymous resident memory and kills it past
  1.25 x the budget (platforms without RLIMIT_DATA);
* **crashes**: a process that dies (a segfault in a native library, the OOM killer) gives
  an ``error`` row naming the signal; the next input gets a new process.

Nothing an input does can stop the batch or lose another input's row.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from typing import Any, Dict, List, Optional

DEFAULT_TIME_LIMIT = 300.0              #: seconds per input
DEFAULT_MEMORY_LIMIT = 4 << 30          #: bytes of private memory per analysis process
_STARTUP_TIMEOUT = 120.0
_RECYCLE_AFTER = 1000                   #: jobs before an analysis process is replaced (bounds slow leaks)

# test hooks, read only by the analysis process: an input whose path contains the value
# of DUMPKIT_BATCH_TEST_HANG sleeps forever, DUMPKIT_BATCH_TEST_HOG allocates without end
_HANG_ENV = "DUMPKIT_BATCH_TEST_HANG"
_HOG_ENV = "DUMPKIT_BATCH_TEST_HOG"


# =============================================================================== child side
def _limit_memory(limit: int) -> None:
    try:
        import resource
    except ImportError:          # Windows: only the worker's polling backstop applies
        return
    for name in ("RLIMIT_DATA",):
        which = getattr(resource, name, None)
        if which is None:
            continue
        soft, hard = resource.getrlimit(which)
        new = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        try:
            resource.setrlimit(which, (new, hard))
        except (ValueError, OSError):
            pass


def _peak_rss_mb() -> Optional[float]:
    try:
        import resource
    except ImportError:
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / 1024.0 if sys.platform != "darwin" else kb / (1 << 20), 1)


def _cpu() -> Optional[float]:
    try:
        import resource
    except ImportError:
        return None
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _symbol_path(job: Dict[str, Any]) -> Any:
    """What the job's analysis gets as its symbol path: the text, or with ``symbol_timeout`` /
    ``symbol_budget`` a :class:`~dumpkit.symbolize.SymbolPath` bounded by them (one per input: the
    budget is per input, and a server one input found silent is asked again by the next)."""
    text = job.get("symbol_path")
    timeout, budget = job.get("symbol_timeout"), job.get("symbol_budget")
    if timeout is None and budget is None:
        return text
    from ..symbolize import SymbolPath
    return SymbolPath.with_limits(os.environ.get("_NT_SYMBOL_PATH", "") if text is None else text,
                                  max_time=timeout, budget=budget)


def analyse_job(job: Dict[str, Any]) -> Dict[str, Any]:
    """Analyse one input in this process and return its row (never raises)."""
    import warnings
    from .. import analyze, open as open_dump
    from ..errors import DumpError
    from .rows import empty_row, fill_from_analysis

    row = empty_row(job)
    t0 = time.perf_counter()
    c0 = _cpu()
    path = job.get("path") or ""
    try:
        hang = os.environ.get(_HANG_ENV)
        if hang and hang in path:
            time.sleep(10 ** 6)
        hog = os.environ.get(_HOG_ENV)
        if hog and hog in path:
            import numpy as np
            hoard = []
            while True:                       # address space, like a runaway allocation (not touched: fast)
                hoard.append(np.empty(64 << 20, dtype=np.uint8))
        kind = job.get("kind")
        if kind == "log":
            row.update(status="skipped", error="a setup log, not a crash: give it to --logs to correlate it")
        elif kind == "archive":
            row.update(status="error", error_type="BadArchive",
                       error=f"no member of this zip could be read: {job.get('problem') or 'damaged archive'}")
        elif kind == "unknown":
            row.update(status="error", error_type="NotRecognised",
                       error=job.get("problem") or "not a crash dump, a zip bundle, a WER report or WinDbg text "
                                                   "(recognised by content)")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                src = job["source"]
                symbol_path, logs = _symbol_path(job), job.get("logs")
                if kind == "dump":
                    with open_dump(src) as d:
                        # what the reader said while opening the file (truncation, damaged tables): the
                        # analysis' own warnings (a context not found...) come later and are not counted
                        reader_warnings = [str(w) for w in (getattr(d, "warnings", None) or [])]
                        build = getattr(d, "build", None)
                        a = analyze(d, symbol_path, logs=logs)
                    fill_from_analysis(row, a, os_build=build)
                    if reader_warnings:
                        # a damaged dump's verdict is not to be trusted, even when every field is filled
                        row["status"] = "incomplete"
                        why = "; ".join(f"the dump reader warned: {w}" for w in reader_warnings[:5])
                        row["incomplete_reasons"] = "; ".join(x for x in (row.get("incomplete_reasons"), why) if x)
                else:
                    a = analyze(src, symbol_path, logs=logs)
                    # the lmv versions the text parse found travel with the analysis (no second parse)
                    fill_from_analysis(row, a, module_versions=getattr(a, "module_versions", None) or {})
    except DumpError as e:
        row.update(status="error", error=str(e)[:2000], error_type=type(e).__name__)
    except MemoryError:
        row.update(status="error", error_type="MemoryBudget",
                   error=f"memory budget exceeded ({job.get('memory_limit', 0) >> 20} MiB)")
        row["_restart"] = True
    except RecursionError as e:
        row.update(status="error", error_type="RecursionError", error=f"internal error: {e}")
    except Exception as e:  # noqa: BLE001 - a bug in dumpkit on this input: a row, not a dead batch
        tb = traceback.extract_tb(e.__traceback__)
        where = f" at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else ""
        row.update(status="error", error_type=type(e).__name__,
                   error=f"internal error: {type(e).__name__}: {e}{where}"[:2000])
    if job.get("problem") and row.get("status") == "ok":
        row["status"] = "incomplete"
        row["incomplete_reasons"] = f"input damaged: {job['problem']}"
    row["seconds"] = round(time.perf_counter() - t0, 4)
    c1 = _cpu()
    row["cpu_seconds"] = None if c0 is None or c1 is None else round(c1 - c0, 4)
    row["peak_rss_mb"] = _peak_rss_mb()
    row["analysed_at"] = _utcnow()
    return row


def _utcnow() -> str:
    import datetime as _dt
    return _dt.datetime.now(_dt.timezone.utc).isoformat()


def child_main() -> int:
    """The analysis process: one JSON job per line in, one JSON row per line out."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    # nothing else may write on the protocol stream: Python-level prints and native libraries
    # writing to file descriptor 1 both end up on stderr
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    limit = int(os.environ.get("DUMPKIT_BATCH_MEMORY_LIMIT", "0") or 0)
    if limit > 0:
        _limit_memory(limit)
    import dumpkit  # noqa: F401 - warm the imports before saying ready
    import dumpkit.analysis.engine  # noqa: F401
    out.write(json.dumps({"ready": os.getpid()}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            job = json.loads(line)
        except ValueError:
            continue
        row = analyse_job(job)
        restart = row.get("_restart", False)
        out.write(json.dumps(row, default=str) + "\n")
        out.flush()
        if restart:
            return 0
    return 0


# =============================================================================== worker side
def _anon_rss(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"RssAnon:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]
        return int(psutil.Process(pid).memory_info().rss)
    except Exception:  # noqa: BLE001 - no psutil, or the process is gone
        return None


class Sandbox:
    """One analysis process and the budgets it runs under (see the module notes)."""

    def __init__(self, memory_limit: int = DEFAULT_MEMORY_LIMIT) -> None:
        self.memory_limit = int(memory_limit)
        self.proc: Optional[subprocess.Popen] = None
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.jobs = 0
        self.restarts = 0
        self.ready = False

    def _start(self) -> None:
        env = dict(os.environ)
        env["DUMPKIT_BATCH_MEMORY_LIMIT"] = str(self.memory_limit)
        for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(k, "1")
        self.lines = queue.Queue()
        self.proc = subprocess.Popen([sys.executable, "-m", "dumpkit.batch.sandbox"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                     text=True, encoding="utf-8", bufsize=1, close_fds=True)
        t = threading.Thread(target=self._reader, args=(self.proc, self.lines), daemon=True)
        t.start()
        self.ready = False
        self.jobs = 0

    def _await_ready(self) -> None:
        try:
            first = self._get(_STARTUP_TIMEOUT)
        except (queue.Empty, MemoryError):
            first = None
        if first is None or '"ready"' not in first:
            self.kill()
            raise RuntimeError("the analysis process did not start (is dumpkit installed on this worker?)")
        self.ready = True

    @staticmethod
    def _reader(proc: subprocess.Popen, lines: "queue.Queue[Optional[str]]") -> None:
        try:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.put(line)
        except (OSError, ValueError):
            pass
        lines.put(None)

    def _get(self, timeout: float) -> Optional[str]:
        """The next line, None at EOF; raises queue.Empty after ``timeout``, or MemoryError past the budget."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise queue.Empty
            try:
                return self.lines.get(timeout=min(left, 0.1))
            except queue.Empty:
                pass
            if self.proc is not None:
                rss = _anon_rss(self.proc.pid)
                if rss is not None and rss > 1.25 * self.memory_limit:
                    raise MemoryError(rss)

    def kill(self) -> None:
        p, self.proc = self.proc, None
        if p is None:
            return
        try:
            p.kill()
        except OSError:
            pass
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        for s in (p.stdin, p.stdout):
            try:
                if s is not None:
                    s.close()
            except OSError:
                pass

    def run(self, job: Dict[str, Any], time_limit: float = DEFAULT_TIME_LIMIT) -> Dict[str, Any]:
        """The row for ``job``, whatever the input does."""
        from .rows import empty_row
        job = dict(job, memory_limit=self.memory_limit)
        if self.proc is None or self.proc.poll() is not None or self.jobs >= _RECYCLE_AFTER:
            self.kill()
            self._start()
        if not self.ready:
            self._await_ready()
        self.jobs += 1
        t0 = time.perf_counter()
        worker = f"{socket.gethostname()}:{os.getpid()}"
        try:
            self.proc.stdin.write(json.dumps(job) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            line = self._get(time_limit)
        except queue.Empty:
            self.kill()
            self.restarts += 1
            row = empty_row(job)
            row.update(status="timeout", error_type="TimeBudget",
                       error=f"no result after {time_limit:g} s (the time budget): the analysis was stopped")
            return _finish(row, t0, worker)
        except MemoryError as e:
            self.kill()
            self.restarts += 1
            row = empty_row(job)
            rss = e.args[0] if e.args and isinstance(e.args[0], int) else 0
            row.update(status="error", error_type="MemoryBudget",
                       error=f"memory budget exceeded ({self.memory_limit >> 20} MiB; the process had "
                             f"{rss >> 20} MiB): the analysis was stopped")
            return _finish(row, t0, worker)
        except (OSError, ValueError):
            line = None
        if line is None:                          # the process died
            code = self.proc.wait(timeout=10) if self.proc is not None else None
            self.kill()
            self.restarts += 1
            row = empty_row(job)
            how = f"signal {signal.Signals(-code).name}" if isinstance(code, int) and code < 0 \
                else f"exit code {code}"
            row.update(status="error", error_type="AnalysisProcessDied",
                       error=f"the analysis process died ({how}) on this input")
            return _finish(row, t0, worker)
        row = json.loads(line)
        if row.pop("_restart", False) or (self.proc is not None and self.proc.poll() is not None):
            self.kill()                           # it is replaced after a MemoryError (it exits by itself)
            self.restarts += 1
        row["worker"] = worker
        return row


def _finish(row: Dict[str, Any], t0: float, worker: str) -> Dict[str, Any]:
    row["seconds"] = round(time.perf_counter() - t0, 4)
    row["worker"] = worker
    row["analysed_at"] = _utcnow()
    return row


_pool: list = []                         # idle sandboxes of this worker process
_pool_lock = threading.Lock()


def _take(limit: int) -> Sandbox:
    with _pool_lock:
        for i, sb in enumerate(_pool):
            if sb.memory_limit == limit:
                return _pool.pop(i)
    sb = Sandbox(limit)
    _register_cleanup(sb)
    return sb


def _give(sb: Sandbox) -> None:
    with _pool_lock:
        _pool.append(sb)


def analyse_task(job: Dict[str, Any]) -> Dict[str, Any]:
    """What a Dask task runs on a worker: the row for one input (a plain dict)."""
    limit = int(job.get("memory_limit") or DEFAULT_MEMORY_LIMIT)
    sb = _take(limit)
    try:
        return sb.run(job, float(job.get("time_limit") or DEFAULT_TIME_LIMIT))
    finally:
        _give(sb)


def analyse_chunk(jobs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Several inputs in one Dask task (each still alone under its own budgets): small dumps are
    analysed in tens of milliseconds, so one task per dump would be mostly scheduling."""
    return [analyse_task(j) for j in jobs]


def warm(memory_limit: int = DEFAULT_MEMORY_LIMIT, count: int = 1) -> int:
    """Start ``count`` analysis processes on this worker ahead of the first task (``client.run``)."""
    started = []
    for _ in range(max(1, count)):
        sb = _take(int(memory_limit))
        try:
            if sb.proc is None or sb.proc.poll() is not None:
                sb._start()
        except RuntimeError:
            pass
        started.append(sb)
    for sb in started:
        _give(sb)
    return len(started)


def _register_cleanup(sb: Sandbox) -> None:
    import atexit
    atexit.register(sb.kill)


if __name__ == "__main__":
    sys.exit(child_main())
