"""``<out>/results.parquet`` and the part files that make it crash-safe.

Rows are written as they complete, in small part files ``<out>/parts/part-<run>-<n>.parquet``
(each written to a temporary name and renamed, so a part is whole or absent).  At the end of
a run, and every few minutes during it, the parts are compacted into ``results.parquet``
(again through a temporary file and a rename) and removed.  A run that is killed keeps every
part it finished; :func:`load` and the next run read ``results.parquet`` plus the parts, one
row per SHA-256 (the newest wins).
"""
from __future__ import annotations

import datetime as _dt
import glob
import os
import time
import uuid
from typing import Any, Dict, Iterable, List, Optional, Set

from .rows import COLUMNS, COLUMN_NAMES

RESULTS = "results.parquet"
PARTS = "parts"


def _pa():
    from . import require
    require()
    import pyarrow as pa
    import pyarrow.parquet as pq
    return pa, pq


def schema():
    pa, _pq = _pa()
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(),
             "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([pa.field(name, types[t]) for name, t, _doc in COLUMNS])


def _coerce(row: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for name, t, _doc in COLUMNS:
        v = row.get(name)
        if v is not None:
            if t == "timestamp" and isinstance(v, str):
                try:
                    v = _dt.datetime.fromisoformat(v)
                    if v.tzinfo is None:
                        v = v.replace(tzinfo=_dt.timezone.utc)
                except ValueError:
                    v = None
            elif t == "int64":
                try:
                    v = int(v)
                    if not -(1 << 63) <= v < (1 << 63):
                        v = None
                except (TypeError, ValueError):
                    v = None
            elif t == "float64":
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    v = None
            elif t == "string" and not isinstance(v, str):
                v = str(v)
        out[name] = v
    return out


def rows_to_table(rows: Iterable[Dict[str, Any]]):
    pa, _pq = _pa()
    return pa.Table.from_pylist([_coerce(r) for r in rows], schema=schema())


def _write_atomic(table, path: str) -> None:
    _pa_, pq = _pa()
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)


class PartWriter:
    """Buffers rows and writes a part file every ``every`` rows or ``interval`` seconds."""

    def __init__(self, out_dir: str, *, every: int = 200, interval: float = 2.0,
                 compact_interval: float = 300.0) -> None:
        self.out_dir = out_dir
        self.parts_dir = os.path.join(out_dir, PARTS)
        os.makedirs(self.parts_dir, exist_ok=True)
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        self.every = every
        self.interval = interval
        self.compact_interval = compact_interval
        self.buf: List[Dict[str, Any]] = []
        self.seq = 0
        self.written = 0
        self._last = time.monotonic()
        self._last_compact = time.monotonic()

    def add(self, row: Dict[str, Any]) -> None:
        self.buf.append(row)
        self.tick()

    def tick(self) -> None:
        now = time.monotonic()
        if self.buf and (len(self.buf) >= self.every or now - self._last >= self.interval):
            self.flush()
        if now - self._last_compact >= self.compact_interval:
            compact(self.out_dir)
            self._last_compact = time.monotonic()

    def flush(self) -> None:
        if not self.buf:
            return
        self.seq += 1
        path = os.path.join(self.parts_dir, f"part-{self.run_id}-{self.seq:06d}.parquet")
        _write_atomic(rows_to_table(self.buf), path)
        self.written += len(self.buf)
        self.buf = []
        self._last = time.monotonic()

    def close(self) -> None:
        self.flush()
        compact(self.out_dir)


def _part_files(out_dir: str) -> List[str]:
    return sorted(glob.glob(os.path.join(out_dir, PARTS, "part-*.parquet")))


def _read(path: str, columns: Optional[List[str]] = None):
    pa, pq = _pa()
    try:
        t = pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowInvalid) as e:          # a damaged or foreign file: say so, skip it
        import warnings
        from ..errors import DumpWarning
        warnings.warn(f"{path}: unreadable results file skipped: {e}", DumpWarning, stacklevel=3)
        return None
    if columns is None:
        # files from an older dumpkit may lack new columns: add them as nulls, in schema order
        sch = schema()
        for f in sch:
            if f.name not in t.column_names:
                t = t.append_column(f, pa.nulls(t.num_rows, type=f.type))
        t = t.select(COLUMN_NAMES).cast(sch)
    return t


def load(out_dir: str, columns: Optional[List[str]] = None):
    """All rows of a batch folder (results.parquet plus a killed run's parts) as a pyarrow Table,
    one row per sha256 (the newest wins)."""
    files = ([os.path.join(out_dir, RESULTS)] if os.path.exists(os.path.join(out_dir, RESULTS)) else []) \
        + _part_files(out_dir)
    return _load_files(files, columns)


def _load_files(files: List[str], columns: Optional[List[str]] = None):
    pa, _pq = _pa()
    want = None if columns is None else list(dict.fromkeys(["sha256"] + list(columns)))
    tables = [t for t in (_read(f, want) for f in files) if t is not None]
    if not tables:
        sch = schema()
        return sch.empty_table() if want is None else sch.empty_table().select(want)
    t = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        shas = t.column("sha256").to_pylist()
        last: Dict[str, int] = {}
        for i, s in enumerate(shas):
            last[s] = i
        if len(last) != len(shas):
            t = t.take(sorted(last.values()))
    return t


def done_shas(out_dir: str, *, redo_statuses: Iterable[str] = ()) -> Set[str]:
    """SHA-256 of every input that has a row (except rows whose status is in ``redo_statuses``)."""
    t = load(out_dir, ["status"])
    shas = t.column("sha256").to_pylist()
    redo = set(redo_statuses)
    if not redo:
        return set(shas)
    return {s for s, st in zip(shas, t.column("status").to_pylist()) if st not in redo}


def compact(out_dir: str) -> int:
    """Fold the part files into results.parquet; returns the number of rows in it."""
    parts = _part_files(out_dir)
    if not parts and os.path.exists(os.path.join(out_dir, RESULTS)):
        _pa_, pq = _pa()
        return pq.ParquetFile(os.path.join(out_dir, RESULTS)).metadata.num_rows
    results = os.path.join(out_dir, RESULTS)
    t = _load_files(([results] if os.path.exists(results) else []) + parts)
    _write_atomic(t, os.path.join(out_dir, RESULTS))
    for p in parts:
        try:
            os.unlink(p)
        except OSError:
            pass
    return t.num_rows
