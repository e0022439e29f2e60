"""``dumpkit batch`` and ``dumpkit buckets``: corpus triage on a Dask cluster (the ``batch`` extra)."""
from __future__ import annotations

import argparse
import os
from typing import Callable, Dict

from ._util import EXIT_BAD_INPUT, EXIT_OK, EXIT_USAGE, CliError, print_json, seconds


def register(sub, commands: Dict[str, Callable], common: Callable) -> None:
    """Add the two sub-commands to the ``dumpkit`` parser."""
    s = sub.add_parser("batch", help="triage a whole corpus (files, folders, zips, WER folders) on a Dask cluster",
                       description="Analyse every crash input under INPUT (dumps, pasted WinDbg text, zip bundles, "
                                   "WER report folders; recognised by content) on a Dask cluster, one row per input "
                                   "in DIR/results.parquet. A second run skips what is already there. Needs "
                                   "'pip install dumpkit[batch]'.")
    s.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders (recursive) or zip bundles")
    s.add_argument("--out", "-o", required=True, metavar="DIR", help="the results folder (created if needed)")
    s.add_argument("--workers", "-w", type=int, default=None, metavar="N",
                   help="worker processes of the local cluster (default: one per CPU)")
    s.add_argument("--scheduler", metavar="ADDRESS", default=None,
                   help="an existing dask.distributed scheduler (tcp://host:8786) instead of a local cluster; "
                        "its workers must see the inputs and DIR at the same paths")
    s.add_argument("--symbol-path", "-y", metavar="PATH", default=None,
                   help="symbol/image path in _NT_SYMBOL_PATH syntax, for every input")
    s.add_argument("--symbol-timeout", type=seconds, metavar="SECONDS", default=None,
                   help="give up one download after SECONDS (default 120; also $DUMPKIT_SYMBOL_TIMEOUT); "
                        "a server that times out is not asked again for that input")
    s.add_argument("--symbol-budget", type=seconds, metavar="SECONDS", default=None,
                   help="network time per input, all servers together (default 300; also $DUMPKIT_SYMBOL_BUDGET)")
    s.add_argument("--logs", metavar="PATH", default=None, help="setup logs to correlate with every dump")
    s.add_argument("--time-limit", type=float, default=300.0, metavar="SECONDS",
                   help="time budget per input (300); past it the row says timeout")
    s.add_argument("--memory-limit", type=int, default=None, metavar="MIB",
                   help="memory budget per analysis in MiB (4096, at most RAM/workers locally)")
    s.add_argument("--retry-failed", action="store_true", help="analyse inputs with error/timeout rows again")
    s.add_argument("--no-progress", dest="progress", action="store_false", default=None,
                   help="no progress line (it is drawn only on a terminal anyway)")
    common(s)
    commands["batch"] = cmd_batch

    s = sub.add_parser("buckets", help="the bucket summary of a 'dumpkit batch' folder",
                       description="Buckets by count (with culprit, vendor and an example), culprit modules, OS "
                                   "builds and culprit versions of the rows in DIR/results.parquet.")
    s.add_argument("dir", metavar="DIR", help="the --out folder of 'dumpkit batch'")
    s.add_argument("--html", metavar="FILE", default=None, help="also write a self-contained HTML page with charts")
    s.add_argument("--top", type=int, default=None, metavar="N", help="show the N largest groups of each kind")
    common(s)
    commands["buckets"] = cmd_buckets


def _batch_module():
    from .. import batch
    try:
        batch.require()
    except batch.BatchError as e:        # the command exists but cannot run as installed: a usage error
        raise CliError(e.message, code=EXIT_USAGE, hint=e.hint) from e
    return batch


def cmd_batch(args: argparse.Namespace) -> int:
    batch = _batch_module()
    for p in args.inputs:
        if not os.path.lexists(p):
            raise CliError(f"{p}: no such file or folder", code=EXIT_BAD_INPUT)
    if args.workers is not None and args.workers < 1:
        raise CliError("--workers must be at least 1")
    mem = None if args.memory_limit is None else int(args.memory_limit) << 20
    r = batch.run(args.inputs, out=args.out, workers=args.workers, scheduler=args.scheduler,
                  symbol_path=args.symbol_path, symbol_timeout=args.symbol_timeout,
                  symbol_budget=args.symbol_budget, logs=args.logs, time_limit=args.time_limit, memory_limit=mem,
                  retry_failed=args.retry_failed, progress=args.progress)
    if args.json:
        print_json(r.to_json())
    else:
        print(r.render_text())
    return EXIT_OK


def cmd_buckets(args: argparse.Namespace) -> int:
    batch = _batch_module()
    results = os.path.join(args.dir, "results.parquet")
    if not os.path.isdir(args.dir):
        raise CliError(f"{args.dir}: no such folder", code=EXIT_BAD_INPUT, hint="give the --out folder of "
                                                                                "'dumpkit batch'")
    if not os.path.exists(results) and not os.path.isdir(os.path.join(args.dir, "parts")):
        raise CliError(f"{args.dir}: no results.parquet in this folder", code=EXIT_BAD_INPUT,
                       hint="run 'dumpkit batch INPUT... --out DIR' first")
    s = batch.summarize(args.dir, top=args.top)
    if args.html:
        with open(args.html, "w", encoding="utf-8") as f:
            f.write(batch.render_html(s, title=f"dumpkit buckets: {os.path.basename(os.path.abspath(args.dir))}"))
    if args.json:
        print_json(s)
    else:
        print(batch.render_text(s), end="")
        if args.html:
            print(f"\nHTML page: {args.html}")
    return EXIT_OK
