"""Fleet triage: bucket a whole corpus of dumps, on one machine or on a Dask cluster.

>>> from dumpkit import batch                                       # doctest: +SKIP
>>> r = batch.run(["C:/Windows/Minidump", "cases/"], out="triage")  # doctest: +SKIP
>>> r.by_status, batch.summarize("triage")["buckets"][:3]          # doctest: +SKIP

:func:`run` finds the inputs by content (dumps, WinDbg text, zip bundles, WER report
folders), analyses each one in isolation on a Dask cluster (a ``LocalCluster`` sized to
the machine by default, or ``scheduler="tcp://host:8786"``) under a time and a memory
budget, and writes one row per input to ``<out>/results.parquet`` as rows complete.
A second run over the same inputs skips what has a row (by SHA-256).
:func:`summarize` / :func:`render_html` give the bucket summary.

Needs the optional extra: ``pip install 'dumpkit[batch]'`` (dask[distributed] and pyarrow).
"""
from __future__ import annotations

from ..errors import DumpError

INSTALL_HINT = "pip install 'dumpkit[batch]'   (installs dask[distributed] and pyarrow)"


class BatchError(DumpError):
    """A batch run cannot start or go on: the extra is missing, no inputs, no scheduler, a locked folder."""


def require() -> None:
    """Raise :class:`BatchError` with the install command when dask.distributed or pyarrow is missing."""
    missing = []
    for mod in ("dask", "distributed", "pyarrow"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise BatchError(f"dumpkit batch needs {', '.join(missing)}, which "
                         f"{'is' if len(missing) == 1 else 'are'} not installed",
                         hint=f"install the batch extra: {INSTALL_HINT}")


from .engine import BatchResult, run  # noqa: E402
from .rows import COLUMN_NAMES, COLUMNS, STATUSES  # noqa: E402
from .store import load  # noqa: E402
from .summary import render_html, render_text, summarize  # noqa: E402

__all__ = ["run", "load", "summarize", "render_text", "render_html", "BatchResult", "BatchError", "require",
           "COLUMNS", "COLUMN_NAMES", "STATUSES", "INSTALL_HINT"]
