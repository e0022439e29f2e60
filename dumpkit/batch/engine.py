"""The batch driver: find inputs, hand them to a Dask cluster, write rows as they come back.

No scheduler of dumpkit's own: tasks go to ``dask.distributed`` (a ``LocalCluster`` of
worker *processes*, one thread each, or an existing cluster by address).  The driver
keeps a bounded window of tasks in flight (a million inputs never become a million
futures at once), hashes and recognises inputs while the cluster works, and writes each
result row through :class:`~dumpkit.batch.store.PartWriter` as soon as it arrives.
Workers open inputs by path: on a remote cluster the inputs and ``out`` must be visible at
the same paths on the workers (shared storage).
"""
from __future__ import annotations

import itertools
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple, Union

from . import BatchError, require
from .inputs import Input, StatCache, Walker, count_candidates
from .rows import STATUSES, empty_row
from ..statusline import StatusLine
from .sandbox import DEFAULT_MEMORY_LIMIT, DEFAULT_TIME_LIMIT

PathLike = Union[str, "os.PathLike[str]"]
_CHUNK_INPUTS = 8                 #: inputs per task at most
_CHUNK_BYTES = 64 << 20           #: ... and at most this many bytes of them


@dataclass
class BatchResult:
    """What a run did; the rows themselves are in :attr:`results` (``results.parquet``)."""

    out: str
    results: str
    analysed: int = 0
    skipped: int = 0                 # already had a row (by sha256): not analysed again
    duplicates: int = 0              # same content as another input of this run: counted, not analysed
    ignored: int = 0                 # WER reports folded into their dumps' rows
    by_status: Dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    workers: int = 0
    scheduler: str = ""
    errors: List[Tuple[str, str, str]] = field(default_factory=list)     # (path, status, error), first 50
    duplicate_paths: List[Tuple[str, str]] = field(default_factory=list)  # (path, same content as)

    @property
    def rate(self) -> float:
        return self.analysed / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict:
        return {"out": self.out, "results": self.results, "analysed": self.analysed, "skipped": self.skipped,
                "duplicates": self.duplicates, "wer_reports": self.ignored,
                "by_status": {k: self.by_status.get(k, 0) for k in STATUSES},
                "seconds": round(self.seconds, 3), "rate": round(self.rate, 3), "workers": self.workers,
                "scheduler": self.scheduler,
                "errors": [{"path": p, "status": s, "error": e} for p, s, e in self.errors],
                "duplicate_paths": [{"path": p, "same_as": q} for p, q in self.duplicate_paths[:50]],
                "schema_version": _schema_version()}

    def render_text(self) -> str:
        st = ", ".join(f"{k} {self.by_status[k]}" for k in STATUSES if self.by_status.get(k))
        first = (f"analysed {self.analysed} input(s) in {self.seconds:.1f} s on {self.workers} worker(s)"
                 + (f" ({st})" if st else "")) if self.workers else \
            f"nothing new to analyse ({self.seconds:.1f} s; no cluster started)"
        lines = [first,
                 f"skipped {self.skipped} already in the results; {self.duplicates} duplicate(s) counted, "
                 f"not analysed again" + (f"; {self.ignored} WER report(s) read" if self.ignored else ""),
                 f"results: {self.results}"]
        for p, s, e in self.errors[:10]:
            lines.append(f"  {s}: {p}: {e}")
        if len(self.errors) > 10:
            lines.append(f"  ... {len(self.errors) - 10} more (see the results)")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"<BatchResult {self.out}: {self.analysed} analysed, {self.skipped} skipped, "
                f"{self.duplicates} duplicates, {dict(self.by_status)}>")


def _schema_version() -> str:
    from ..schemas import SCHEMA_VERSION
    return SCHEMA_VERSION


class _Progress(StatusLine):
    """``batch 120/200  35.2/s  2 errors  eta 2s`` on a terminal (stderr); nothing in a pipe."""

    def __init__(self, enabled: Optional[bool], stream: Optional[IO[str]] = None) -> None:
        super().__init__(stream, enabled)
        self.t0 = time.monotonic()
        self._last = 0.0

    def update(self, done: int, total: int, analysed: int, failed: int, timeouts: int, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        el = max(now - self.t0, 1e-6)
        rate = analysed / el
        left = max(total - done, 0)
        eta = f"eta {left / rate:.0f}s" if rate > 0 and left else ("eta -" if left else "")
        self.show(f"batch {done}/{total}  {rate:.1f}/s  {failed} error{'s' if failed != 1 else ''}"
                  + (f"  {timeouts} timeout{'s' if timeouts != 1 else ''}" if timeouts else "") + f"  {eta}",
                  pad=79)


class _Lock:
    """An exclusive lock on ``<out>/.lock`` so that two runs do not write one folder at once."""

    def __init__(self, out: str) -> None:
        self.path = os.path.join(out, ".lock")
        self.f: Optional[IO[str]] = None

    def __enter__(self) -> "_Lock":
        f = self.f = open(self.path, "a+")  # noqa: SIM115 - closed in __exit__
        try:
            import fcntl
        except ImportError:
            return self
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            raise BatchError("another dumpkit batch is writing to this folder", path=os.path.dirname(self.path),
                             hint="wait for it, or give another --out") from None
        return self

    def __exit__(self, *exc) -> None:
        if self.f is not None:
            self.f.close()


def local_cluster(workers: Optional[int] = None):
    """The default engine: a ``distributed.LocalCluster`` of ``workers`` processes (default: one per CPU),
    one thread each, no dashboard, quiet logs."""
    require()
    from distributed import LocalCluster
    import dask
    n = workers or os.cpu_count() or 1
    # the workers' statistical profiler samples every thread many times a second: measurable CPU
    # per dump when an analysis takes tens of milliseconds, and nobody looks at it here
    with dask.config.set({"distributed.worker.profile.enabled": False}):
        return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                            silence_logs=logging.ERROR)


def _connect(workers: Optional[int], scheduler: Any, memory_limit: Optional[int]):
    """(client, cluster-or-None, n_threads, description, memory budget per analysis)."""
    from distributed import Client
    if scheduler is not None and not isinstance(scheduler, str):
        client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
        own_client = client is not scheduler
        cluster = None
    elif scheduler:
        try:
            client = Client(scheduler, timeout="15s")
        except (OSError, TimeoutError) as e:
            raise BatchError(f"cannot reach the Dask scheduler at {scheduler}: {e}",
                             hint="start one with 'dask scheduler' and 'dask worker ADDRESS', or leave out "
                                  "--scheduler for a local cluster") from e
        own_client, cluster = True, None
    else:
        cluster = local_cluster(workers)
        client = Client(cluster)
        own_client = True
    info = client.scheduler_info()
    threads = sum(w.get("nthreads", 1) for w in info.get("workers", {}).values()) or 1
    if memory_limit is None:
        memory_limit = DEFAULT_MEMORY_LIMIT
        if cluster is not None:
            try:
                total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                memory_limit = max(512 << 20, min(memory_limit, total // max(threads, 1)))
            except (ValueError, OSError, AttributeError):
                pass
    where = info.get("address", "") if cluster is None else f"LocalCluster({threads} processes)"
    return client, cluster, own_client, threads, where, memory_limit


def run(inputs: Union[PathLike, Sequence[PathLike]], out: PathLike, *, workers: Optional[int] = None,
        scheduler: Any = None, symbol_path: Any = None, symbol_timeout: Optional[float] = None,
        symbol_budget: Optional[float] = None, logs: Optional[PathLike] = None,
        time_limit: float = DEFAULT_TIME_LIMIT, memory_limit: Optional[int] = None, retry_failed: bool = False,
        progress: Optional[bool] = None) -> BatchResult:
    """Analyse every crash input under ``inputs`` into ``<out>/results.parquet``.

    ``inputs``: files, folders (recursive) and zip bundles, recognised by content.
    ``workers``: processes of the local cluster (default: one per CPU); ``scheduler``: the
    address of an existing ``dask.distributed`` scheduler (``tcp://host:8786``), or a
    ``distributed.Client``, instead.  ``symbol_path`` and ``logs`` are handed to
    :func:`dumpkit.analyze` for every input (no ``symbol_path``: each worker's ``$_NT_SYMBOL_PATH``);
    ``symbol_timeout`` / ``symbol_budget`` (seconds) bound one download and the network time
    of one input (:meth:`dumpkit.symbolize.SymbolPath.with_limits`).  ``time_limit`` (seconds) and ``memory_limit``
    (bytes of private memory; default 4 GiB, at most the machine's memory per worker on a
    local cluster) bound each analysis.  Inputs that already have a row are skipped
    (``retry_failed=True`` analyses error and timeout rows again).  ``progress``: draw a
    progress line on stderr (default: when stderr is a terminal).
    """
    require()
    from distributed import as_completed

    paths = [os.fspath(inputs)] if isinstance(inputs, (str, os.PathLike)) else [os.fspath(p) for p in inputs]
    if not paths:
        raise BatchError("no inputs given", hint="give files, folders or zip bundles")
    missing = [p for p in paths if not os.path.lexists(p)]
    if missing:
        raise BatchError(f"no such file or folder: {', '.join(missing[:5])}", path=missing[0])
    out = os.path.abspath(os.fspath(out))
    if os.path.exists(out) and not os.path.isdir(out):
        raise BatchError("the output must be a folder", path=out)
    os.makedirs(out, exist_ok=True)
    sym = None if symbol_path is None else str(symbol_path)
    logs_path = None if logs is None else os.path.abspath(os.fspath(logs))

    from .store import PartWriter, done_shas
    t0 = time.monotonic()
    with _Lock(out):
        spool = os.path.join(out, "spool")
        shutil.rmtree(spool, ignore_errors=True)        # a killed run's leftovers: regenerated as needed
        done = done_shas(out, redo_statuses=("error", "timeout") if retry_failed else ())
        cache = StatCache(os.path.join(out, "seen.jsonl"))
        walker = Walker(spool, cache, known=done.__contains__)
        result = BatchResult(out=out, results=os.path.join(out, "results.parquet"))
        total0 = count_candidates(paths)
        prog = _Progress(progress)
        source = walker.walk(paths)
        first = next(source, None)            # nothing new to analyse: no cluster is started at all
        if first is None:
            cache.close()
            shutil.rmtree(spool, ignore_errors=True)
            result.skipped, result.duplicates, result.ignored = walker.skipped, walker.duplicates, walker.ignored
            result.duplicate_paths = list(walker.duplicate_paths)
            result.seconds = time.monotonic() - t0
            result.scheduler = "none (nothing to analyse)"
            return result
        source = itertools.chain([first], source)
        client, cluster, own_client, threads, where, mem = _connect(workers, scheduler, memory_limit)
        result.workers, result.scheduler = threads, where
        from .sandbox import analyse_chunk, warm
        try:                 # start the analysis processes while the inputs are being hashed
            per_worker = max((w.get("nthreads", 1) for w in client.scheduler_info().get("workers", {}).values()),
                             default=1)
            client.run(warm, int(mem), per_worker)
        except Exception:  # noqa: BLE001 - warming is an optimisation; the first task starts them anyway
            pass
        writer = PartWriter(out)
        window = max(8, 4 * threads)
        pending: Dict[Any, List[Input]] = {}
        ac = as_completed()
        exhausted = False
        token = uuid.uuid4().hex[:8]

        # small inputs go several to a task (a triage dump takes tens of milliseconds, a task round
        # trip about as much); never so many that a worker would sit idle on a small corpus
        chunk = max(1, min(_CHUNK_INPUTS, total0 // max(1, 4 * threads)))

        def refill() -> None:
            nonlocal exhausted
            while not exhausted and len(pending) < window:
                group: List[Input] = []
                nbytes = 0
                while len(group) < chunk and nbytes < _CHUNK_BYTES:
                    try:
                        inp = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    group.append(inp)
                    nbytes += inp.size or 0
                if not group:
                    return
                jobs = []
                for inp in group:
                    job = inp.job()
                    job.update(symbol_path=sym, symbol_timeout=symbol_timeout, symbol_budget=symbol_budget,
                               logs=logs_path, time_limit=float(time_limit),
                               memory_limit=int(mem))
                    jobs.append(job)
                fut = client.submit(analyse_chunk, jobs, key=f"dumpkit-analyse-{group[0].sha256[:16]}-{token}",
                                    pure=False)
                pending[fut] = group
                ac.add(fut)

        def record(row: Dict[str, Any], inp: Input) -> None:
            writer.add(row)
            result.analysed += 1
            st = row.get("status") or "error"
            result.by_status[st] = result.by_status.get(st, 0) + 1
            if st in ("error", "timeout") and len(result.errors) < 50:
                result.errors.append((inp.path, st, str(row.get("error") or "")))

        try:
            refill()
            while pending:
                fut = next(ac)
                group = pending.pop(fut)
                try:
                    rows = fut.result()
                except Exception as e:  # noqa: BLE001 - a lost worker, a cancelled task: the inputs get rows
                    rows = []
                    for inp in group:
                        row = empty_row(inp.job())
                        row.update(status="error", error_type=type(e).__name__,
                                   error=f"the task failed on the cluster: {type(e).__name__}: {e}"[:2000])
                        rows.append(row)
                for row, inp in zip(rows, group):
                    record(row, inp)
                    if inp.spooled:
                        try:
                            os.unlink(inp.source)
                        except OSError:
                            pass
                refill()
                done_n = result.analysed + walker.skipped + walker.duplicates + walker.ignored
                total = max(total0 + walker.members - walker.zips, done_n + sum(len(g) for g in pending.values()))
                prog.update(done_n, total, result.analysed,
                            result.by_status.get("error", 0), result.by_status.get("timeout", 0))
            prog.update(result.analysed + walker.skipped + walker.duplicates + walker.ignored,
                        result.analysed + walker.skipped + walker.duplicates + walker.ignored, result.analysed,
                        result.by_status.get("error", 0), result.by_status.get("timeout", 0), force=True)
        finally:
            prog.close()
            for fut in list(pending):
                fut.cancel()
            writer.close()
            cache.close()
            shutil.rmtree(spool, ignore_errors=True)
            if own_client:
                client.close()
            if cluster is not None:
                cluster.close()
        result.skipped, result.duplicates, result.ignored = walker.skipped, walker.duplicates, walker.ignored
        result.duplicate_paths = list(walker.duplicate_paths)
        result.seconds = time.monotonic() - t0
        return result
