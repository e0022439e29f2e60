"""The sub-commands of ``dumpkit``.  Each takes the parsed arguments and returns an exit code;
problems are raised (:class:`CliError`, :class:`Incomplete`, :class:`dumpkit.DumpError`) and
turned into one line on stderr by :func:`dumpkit.cli.main.main`."""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

from ..errors import DumpError, MemoryReadError
from ..model import windbg_hex
from ..schemas import SCHEMA_VERSION
from ._util import (EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, CliError, Incomplete, check_exclusive, dump_incomplete_reasons,
                    human_bytes, open_dump, parse_address, parse_length, plural, print_json, read_text_input, symbol_path_for)

DEFAULT_READ_LENGTH = 0x80          # WinDbg's db shows 0x80 bytes by default


def _finish(d: Any, reasons: Sequence[str] = ()) -> int:
    """Exit 0, or 1 (:class:`Incomplete`) when the dump is cut short or the command could not
    finish: the same rule for every command and every dump type."""
    why = list(reasons)
    for r in dump_incomplete_reasons(d):
        if r not in why:
            why.insert(0, r)
    if why:
        raise Incomplete(why)
    return EXIT_OK


# ====================================================================== info
def cmd_info(args) -> int:
    with open_dump(args.file) as d:
        info = d.info()
        try:
            info["process_name"] = d.process_name  # type: ignore[attr-defined]
            info["process_id"] = d.process_id      # type: ignore[attr-defined]
            info["thread_id"] = d.thread_id        # type: ignore[attr-defined]
        except (AttributeError, DumpError):
            for k in ("process_name", "process_id", "thread_id"):
                info.setdefault(k, None)
        info["module_count"] = len(d.modules)
        # natural order: cpu2 before cpu10
        info["contexts"] = sorted(d.contexts, key=lambda n: (n.rstrip("0123456789"),
                                                             int(n[len(n.rstrip("0123456789")):] or -1)))
        if args.json:
            print_json(dict(info, schema_version=SCHEMA_VERSION))
            return _finish(d)
        bc = d.bugcheck
        out = []
        out.append(f"File          {d.path} ({human_bytes(info['file_size'])})")
        sig = f", {d.bitmap_signature}" if d.bitmap_signature else ""
        out.append(f"Dump type     {d.dump_type} (DumpType {d.dump_type_code}{sig}), written by {d.header.writer}")
        out.append(f"Machine       {info['machine']}, build {info['os_build']}, "
                   f"{plural(info['processors'], 'processor') if info['processors'] is not None else 'processors unknown'}")
        out.append(f"Crash time    {info['crash_time'] or 'not recorded'}")
        out.append(f"Uptime        {d.uptime if d.uptime is not None else 'not recorded'}")
        out.append(f"Bugcheck      {bc.code:#x} {bc.name or ''}".rstrip())
        for i, p in enumerate(bc.parameters, 1):
            out.append(f"  Arg{i}        {p:0{2 * getattr(getattr(d, 'arch', None), 'pointer_size', 8)}x}")
        if info.get("process_name") or info.get("process_id") is not None:
            ids = ", ".join(f"{k} {info[key]:#x}" for k, key in (("pid", "process_id"), ("tid", "thread_id"))
                            if info.get(key) is not None)
            out.append(f"Process       {info['process_name'] or 'unknown'}" + (f" ({ids})" if ids else ""))
        out.append(f"Modules       {info['module_count']} loaded, {len(d.unloaded_modules)} unloaded")
        out.append(f"Contexts      {', '.join(info['contexts']) or 'none'}")
        if info.get("physical_pages") is not None:
            out.append(f"Phys. pages   {info['physical_pages']:,} ({human_bytes(info['physical_pages'] * 4096)})")
        for w in d.warnings:
            out.append(f"warning: {w}")
        print("\n".join(out))
        return _finish(d)


# ====================================================================== modules
def _module_json(m) -> dict:
    return m.to_json()


def cmd_modules(args) -> int:
    with open_dump(args.file) as d:
        mods, unl = d.modules, d.unloaded_modules
        reasons: List[str] = []
        if not len(mods):
            why = [w for w in d.warnings if "module" in w.lower() or "driver list" in w.lower()
                   or "kdbg" in w.lower()]
            reasons.append("no loaded modules could be read" + (f": {why[0]}" if why else ""))
            print(f"dumpkit: warning: {reasons[-1]}", file=sys.stderr)
        if args.json:
            print_json({"modules": [_module_json(m) for m in mods],
                        "unloaded": [dict(_module_json(m), unload_time=m.unload_time.isoformat()
                                          if m.unload_time else None) for m in unl],
                        "schema_version": SCHEMA_VERSION})
            return _finish(d, reasons)
        ps = getattr(getattr(d, "arch", None), "pointer_size", 8)    # x86 `lm`: 8-digit addresses
        lines = ["start             end                 module name" if ps == 8 else "start    end        module name"]
        width = max([len(m.windbg_name) for m in mods] + [8])
        for m in sorted(mods, key=lambda m: m.base):
            ts = f"{m.timestamp:08x}" if m.timestamp is not None else "--------"
            lines.append(f"{windbg_hex(m.base, ps)} {windbg_hex(m.end, ps)}   {m.windbg_name:<{width}}  {ts}  "
                         f"{m.path or m.name}")
        if len(unl):
            lines.append("")
            lines.append("Unloaded modules:")
            for m in unl:
                when = f"  unloaded {m.unload_time.isoformat()}" if m.unload_time else ""
                lines.append(f"{windbg_hex(m.base, ps)} {windbg_hex(m.end, ps)}   {m.name}{when}")
        print("\n".join(lines))
        return _finish(d, reasons)


# ====================================================================== stack
#: the context names dumpkit.Dump.contexts can hold
KNOWN_CONTEXTS = ("header", "exception", "prcb", "trap_frame", "bugcheck", "cxr")


def _pick_context(d, which: Optional[str]):
    """The context for ``--context``; a name the dump lacks is a usage error listing the ones it has."""
    if which is None:
        return d.context(None)
    names = d.contexts
    if which in names:
        return names[which]
    if which.isidentifier() and not _looks_hex(which):
        # a name this dump lacks (cut short, not captured) or one dumpkit does not know: usage (2)
        raise CliError(f"this dump has no {which!r} context", code=EXIT_USAGE,
                       hint="available: " + (", ".join(names) or "none") + ", or the address of a CONTEXT/KTRAP_FRAME")
    try:
        addr = parse_address(which, d)
    except CliError:
        raise
    try:
        return d.context(addr)
    except MemoryReadError as exc:     # the address is well formed; the dump lacks it: bad input (3)
        raise CliError(f"{which}: {exc.message}", code=EXIT_BAD_INPUT,
                       hint="give the address of a CONTEXT (.cxr) or KTRAP_FRAME (.trap)") from None
    except DumpError as exc:
        raise CliError(exc.message, code=EXIT_BAD_INPUT, hint=exc.hint) from None


def _looks_hex(s: str) -> bool:
    t = s.replace("`", "").lower()
    t = t[2:] if t.startswith("0x") else t
    return bool(t) and all(c in "0123456789abcdef" for c in t)


def cmd_stack(args) -> int:
    from .progress import DownloadProgress
    with open_dump(args.file) as d:
        ctx = _pick_context(d, args.context)
        _, sp = symbol_path_for(args)
        with DownloadProgress():
            stack = d.stack(ctx, symbol_path=sp, max_frames=args.max_frames,
                            offline=True if args.offline else None)
        symbols_report(d)
        if args.json:
            print_json({"context": {"source": ctx.source, "rip": hex(ctx.ip), "rsp": hex(ctx.sp)},
                        "frames": [frame_json(f, d.modules) for f in stack], "schema_version": SCHEMA_VERSION})
        else:
            print(stack.render())
        reasons = [] if len(stack) else [f"no frames could be walked from the {ctx.source or 'given'} context"]
        return _finish(d, reasons)


def frame_json(f: Any, modules: Any = None) -> dict:
    """A frame in the JSON contract (see :meth:`dumpkit.model.Frame.to_json`)."""
    return f.to_json(modules)


# ====================================================================== read
def cmd_read(args) -> int:
    from .hexdump import hexdump, read_chunks
    if getattr(args, "json", False) and args.raw:
        raise CliError("--raw and --json do not go together", hint="--raw writes the bytes, --json describes them")
    with open_dump(args.file) as d:
        ctx = None
        if "@" in args.address:
            ctx = _pick_context(d, args.context)
        address = parse_address(args.address, d, ctx)
        length = parse_length(args.length) if args.length else DEFAULT_READ_LENGTH
        if args.physical:
            if d.physical is None:
                raise CliError(f"a {d.dump_type} dump holds no physical memory", code=EXIT_BAD_INPUT,
                               hint="read virtual addresses (drop --physical)")

            def read(addr: int, n: int) -> bytes:
                return d.read_physical(addr, n, zero_fill=args.zero_fill)
        else:
            def read(addr: int, n: int) -> bytes:
                return d.read_virtual(addr, n, zero_fill=args.zero_fill)
        if address + length > 1 << 64:
            raise CliError(f"{address:#x} + {length:#x} runs past the end of the address space")
        problems: List[str] = []
        readable = 0
        kind = "physical" if args.physical else "virtual"
        if getattr(args, "json", False):
            chunks = []
            for pos, data, why in read_chunks(read, address, length):
                if data is None:
                    problems.append(str(why))
                else:
                    readable += 1
                chunks.append({"address": hex(pos), "size": (len(data) if data is not None else
                                                             min(address + length - pos, 0x1000 - (pos & 0xFFF))),
                               "data": None if data is None else data.hex(), "error": why})
            print_json({"path": d.path, "space": kind, "address": hex(address), "length": length,
                        "readable": not problems, "chunks": chunks, "schema_version": SCHEMA_VERSION})
        elif args.raw:
            out = sys.stdout.buffer
            for _pos, data, why in read_chunks(read, address, length):
                if data is None:
                    problems.append(str(why))
                    continue
                readable += 1
                out.write(data)
            out.flush()
        else:
            lines = []
            for line, why in hexdump(read, address, length):
                if why is not None:
                    problems.append(why)
                elif line is not None:
                    lines.append(line)
            readable = _pieces(address, length) - len(problems)
            if readable:
                print("\n".join(lines))
        if problems and not readable and not getattr(args, "json", False):
            raise CliError(f"{kind} {address:#x}: {problems[0]}", code=EXIT_INCOMPLETE,
                           hint=None if args.zero_fill else
                           "the address is not mapped or its page is not in this dump; --zero-fill reads missing pages as zeros")
        reasons = [f"{plural(len(problems), 'unreadable page')}, shown as ??: {problems[0]}"] if problems else []
        return _finish(d, reasons)


def _pieces(address: int, length: int) -> int:
    """How many page-bounded pieces ``[address, address+length)`` spans."""
    return ((address + length - 1) >> 12) - (address >> 12) + 1


# ====================================================================== scan
def cmd_scan(args) -> int:
    import numpy as np

    from .progress import Progress
    with open_dump(args.file) as d:
        if d.physical is None:
            return _scan_sparse(d, args)
        total_pages = int(d.physical.page_count)
        pages = zero_pages = runs = 0
        largest = (0, 0)
        lowest: Optional[int] = None
        highest = 0
        interrupted = False
        t0 = time.perf_counter()
        progress = Progress(total_pages * 4096, enabled=None if args.progress else False,
                            label=os.path.basename(d.path))
        run_pfn = run_n = 0                      # the run the last batch ended in (it may go on)
        try:
            # batches of pages contiguous in the file: numpy per batch, nothing per page or run
            for pfns, data in d.iter_page_batches(4 << 20):
                n = len(pfns)
                rows = np.frombuffer(data, dtype=np.uint64).reshape(n, 512)
                zero_pages += n - int(np.count_nonzero(rows.any(axis=1)))
                pages += n
                starts = np.flatnonzero(np.diff(pfns) != 1) + 1
                lens = np.diff(np.concatenate(([0], starts, [n])))
                first = int(pfns[0])
                lo, hi = int(pfns.min()), int(pfns.max())
                lowest = lo << 12 if lowest is None else min(lowest, lo << 12)
                highest = max(highest, (hi + 1) << 12)
                if run_n and first == run_pfn + run_n:          # the previous run goes on
                    lens[0] += run_n
                    head_pfn = run_pfn
                else:
                    head_pfn = first
                    if run_n:
                        runs += 1
                        if run_n > largest[1]:
                            largest = (run_pfn << 12, run_n)
                if len(lens) > 1:                               # runs that end inside this batch
                    done_lens = lens[:-1]
                    runs += len(done_lens)
                    k = int(np.argmax(done_lens))
                    if int(done_lens[k]) > largest[1]:
                        largest = ((head_pfn if k == 0 else int(pfns[starts[k - 1]])) << 12, int(done_lens[k]))
                    run_pfn, run_n = int(pfns[starts[-1]]), int(lens[-1])
                else:
                    run_pfn, run_n = head_pfn, int(lens[0])
                progress.update(pages * 4096)
                del rows, data
            if run_n:
                runs += 1
                if run_n > largest[1]:
                    largest = (run_pfn << 12, run_n)
        except KeyboardInterrupt:
            interrupted = True
        finally:
            progress.close()
        secs = time.perf_counter() - t0
        nbytes = pages * 4096
        result: Dict[str, Any] = {
            "path": d.path, "dump_type": d.dump_type, "pages": pages, "expected_pages": total_pages,
            "zero_pages": zero_pages, "runs": runs, "bytes": nbytes,
            "largest_run": {"address": hex(largest[0]), "pages": largest[1]},
            "lowest_address": None if lowest is None else hex(lowest), "highest_address": hex(highest),
            "seconds": round(secs, 6), "gb_per_second": round(nbytes / secs / 1e9, 3) if secs > 0 else None,
            "complete": not interrupted and pages == total_pages,
        }
        result.update(memory="physical", dump_type_code=d.dump_type_code, ranges_by_kind=None,
                      schema_version=SCHEMA_VERSION)
        if args.json:
            print_json(result)
        else:
            zp = f" ({zero_pages / pages * 100:.1f}%)" if pages else ""
            print("\n".join([
                f"File            {d.path} ({d.dump_type}, DumpType {d.dump_type_code})",
                f"Present pages   {pages:,} ({human_bytes(nbytes)}) in {plural(runs, 'run')}",
                f"Largest run     {plural(largest[1], 'page')} at {largest[0]:#x}",
                f"Zero pages      {zero_pages:,}{zp}",
                f"Physical range  {(lowest or 0):#x} - {highest:#x}",
                f"Scanned         {human_bytes(nbytes)} in {secs:.3f} s"
                + (f" ({nbytes / secs / 1e9:.2f} GB/s)" if secs > 0 else ""),
            ]))
        if interrupted:
            raise KeyboardInterrupt
        reasons = []
        if pages != total_pages:
            reasons.append(f"scanned {pages:,} of the {total_pages:,} pages the dump's index lists "
                           "(the file is cut short)")
        return _finish(d, reasons)


def _scan_sparse(d, args) -> int:
    """A triage dump has no physical memory: the same document, over the virtual ranges it captured
    (a summary per kind; ``--ranges`` lists every range)."""
    t0 = time.perf_counter()
    items = sorted(d.memory.captured_ranges())      # a triage dump's captured virtual ranges
    total = sum(s for _, s, _ in items)
    by_kind: Dict[str, Dict[str, int]] = {}
    for _a, size, what in items:
        k = by_kind.setdefault(what, {"count": 0, "bytes": 0})
        k["count"] += 1
        k["bytes"] += size
    largest = max(items, key=lambda it: it[1]) if items else (0, 0, "")
    secs = time.perf_counter() - t0
    result: Dict[str, Any] = {
        "path": d.path, "dump_type": d.dump_type, "dump_type_code": d.dump_type_code, "memory": "virtual",
        "pages": None, "expected_pages": None, "zero_pages": None, "runs": len(items), "bytes": total,
        "largest_run": {"address": hex(largest[0]), "pages": (largest[1] + 0xFFF) // 0x1000},
        "lowest_address": hex(items[0][0]) if items else None,
        "highest_address": hex(max(a + s for a, s, _ in items)) if items else None,
        "seconds": round(secs, 6), "gb_per_second": None,
        "complete": not dump_incomplete_reasons(d), "ranges_by_kind": by_kind, "schema_version": SCHEMA_VERSION,
    }
    if getattr(args, "ranges", False):
        result["ranges"] = [{"address": hex(a), "size": hex(s), "what": w} for a, s, w in items]
    if args.json:
        print_json(result)
        return _finish(d)
    print(f"File            {d.path} ({d.dump_type}, DumpType {d.dump_type_code})")
    print(f"Captured        {plural(len(items), 'virtual range')} ({human_bytes(total)}); a {d.dump_type} dump "
          "holds no physical memory")
    for what, k in sorted(by_kind.items(), key=lambda kv: -kv[1]["bytes"]):
        print(f"  {what:<14}{plural(k['count'], 'range'):>14}  {human_bytes(k['bytes'])}")
    if items:
        print(f"Largest range   {human_bytes(largest[1])} at {windbg_hex(largest[0])} ({largest[2]})")
        print(f"Address range   {windbg_hex(items[0][0])} - {windbg_hex(max(a + s for a, s, _ in items))}")
    if getattr(args, "ranges", False):
        for a, s, w in items:
            print(f"  {windbg_hex(a)} {windbg_hex(a + s)}  {s:#8x}  {w}")
    elif len(items) > 0:
        print("(--ranges lists every range)")
    return _finish(d)


# ====================================================================== symbols
_SOURCE_LABELS = {"pdb": "with a PDB", "exports": "exports only", "module": "no symbols (module+offset)"}


def symbols_report(dump: Any, symbol_path: Optional[str] = None, offline: bool = False) -> None:
    """After a command that resolved symbols: say on stderr when a symbol server could not be
    reached (it is not the same as "not found"), and how to go offline."""
    if dump is None:
        return
    from ..report.symbols import render_server_status, server_status
    entries: List[dict] = []
    for res in list(getattr(dump, "__dict__", {}).get("_resolvers", {}).values()):
        try:
            entries += res.report_json()
        except Exception:  # noqa: BLE001 - a report about the report must never break the command
            continue
    for line in render_server_status(server_status(entries)):
        print(f"dumpkit: symbols: {line}", file=sys.stderr)


def cmd_symbols(args) -> int:
    from ..report.symbols import module_reason, render_server_status, server_status
    from .progress import DownloadProgress
    with open_dump(args.file) as d:
        sp, path = symbol_path_for(args)
        res = d.resolver(path if path is not None else sp, offline=True if args.offline else None)
        with DownloadProgress():
            for m in d.modules:
                try:
                    res.module_symbols(m)
                except DumpError as exc:        # one bad module must not hide the others
                    print(f"dumpkit: warning: {m.name}: {exc}", file=sys.stderr)
        report = res.report_json()
        counts: Dict[str, int] = {}
        for r in report:
            counts[r["symbols"]] = counts.get(r["symbols"], 0) + 1
            r["reason"] = module_reason(r)
        servers = server_status(report)
        if args.json:
            print_json({"symbol_path": sp, "counts": counts, "servers": [x.to_json() for x in servers],
                        "modules": report, "schema_version": SCHEMA_VERSION})
        else:
            print(f"Symbol path: {sp or '(empty: images in the dump only)'}")
            print(f"{'module':<16} {'base':<18} symbols")
            for r in report:
                what = f"pdb {r['pdb']['path']}" if r["symbols"] == "pdb" else _SOURCE_LABELS[r["symbols"]]
                why = r["reason"] if r["symbols"] != "pdb" else None
                print(f"{r['windbg_name']:<16} {int(r['base'], 16):#018x} {what}" + (f"  [{why}]" if why else ""))
            print(plural(len(report), "module") + ": " +
                  ", ".join(f"{v:,} {_SOURCE_LABELS.get(k, k)}" for k, v in sorted(counts.items())))
            for line in render_server_status(servers):
                print(line)
        return _finish(d)


# ====================================================================== analyze / text
def incomplete_reasons(analysis: Any) -> List[str]:
    """Why an analysis is incomplete (exit code 1): see ``Analysis.incomplete_reasons``."""
    return list(analysis.incomplete_reasons)


def _emit_analysis(analysis: Any, args, dump: Any = None, logs_path: Optional[str] = None) -> int:
    if args.json:
        doc = analysis.to_json(extended=args.extended)
        if analysis.log_findings is not None:
            doc.setdefault("extended", {}) if args.extended else None
            if args.extended:
                doc["extended"]["logs"] = dict(analysis.log_findings.to_json(), schema_version=SCHEMA_VERSION)
        print_json(doc)
    else:
        print(analysis.summary() if args.summary else analysis.render_text())
        if analysis.log_findings is not None:
            # what was read, always: an empty correlation means nothing only when one knows what was looked at
            print(("\n" if not args.summary else "") + "Setup logs: " +
                  analysis.log_findings.render_inventory(limit=50).replace("\n", "\n  "))
    symbols_report(dump)
    reasons = incomplete_reasons(analysis)
    if analysis.log_findings is not None and logs_path:
        reasons += _logs_reasons(analysis.log_findings, logs_path)
    if dump is not None:
        return _finish(dump, reasons)
    if reasons:
        raise Incomplete(reasons)
    return EXIT_OK


def _check_logs_arg(path: Optional[str]) -> Optional[str]:
    if not path:
        return None
    if not os.path.exists(path):
        raise CliError(f"{path}: no such file or folder", code=EXIT_BAD_INPUT,
                       hint="--logs takes a folder or zip of setup logs, or one log file")
    return path


def cmd_analyze(args) -> int:
    from ..api import analyze
    check_exclusive(args)
    logs_path = _check_logs_arg(getattr(args, "logs", None))
    with open_dump(args.file) as d:
        kw: Dict[str, Any] = {"offline": True} if args.offline else {}
        if logs_path:
            kw["logs"] = logs_path
        from .progress import DownloadProgress
        with DownloadProgress():
            analysis = analyze(d, symbol_path_for(args)[1], **kw)
        return _emit_analysis(analysis, args, d, logs_path)


def cmd_text(args) -> int:
    from ..analysis.engine import analyze_text
    from ..api import attach_logs
    from ..errors import TextParseError
    check_exclusive(args)
    logs_path = _check_logs_arg(getattr(args, "logs", None))
    text, name = read_text_input(args.file)
    try:
        analysis = analyze_text(text, source=name)
    except TextParseError as exc:
        # text without WinDbg structure (prose quoting 'foo!bar+0x10', garbage): nothing to blame, and
        # the analysis is incomplete rather than the file being a bad dump
        raise Incomplete([f"{exc}; no culprit can be named from it"]) from None
    if logs_path:
        attach_logs(analysis, logs_path)
    return _emit_analysis(analysis, args, None, logs_path)


# ====================================================================== logs (optional)
def logs_available() -> bool:
    """Whether this build has the setup-log reader (checked without importing it: startup stays fast)."""
    import importlib.util
    try:
        return importlib.util.find_spec("dumpkit.logs") is not None
    except (ImportError, ValueError):
        return False


def open_logs(path: str) -> Any:
    """Setup-log findings for ``path`` (folder, zip or one log); a clear exit-3 error when it is missing."""
    from .. import logs
    if not os.path.exists(path):
        raise CliError(f"{path}: no such file or folder", code=EXIT_BAD_INPUT,
                       hint="give a log folder ($WINDOWS.~BT\\Sources\\Panther, C:\\Windows\\Panther), "
                            "a zip of logs, or one log file")
    return logs.summarize_logs(logs.open_bundle(path))


def _logs_reasons(findings: Any, path: str) -> List[str]:
    if not findings.read_files:
        if not findings.inventory:
            return [f"{path}: no files to read (empty folder)"]
        return [f"{path}: none of the {plural(len(findings.inventory), 'file')} is a setup log dumpkit reads "
                "(Panther setupact/setuperr, UnattendGC, setupapi.*.log, CBS/DISM, SetupDiag, rollback ini)"]
    return []


def cmd_logs(args) -> int:
    """Summarize Windows setup logs (a folder, a zip or one log) with :mod:`dumpkit.logs`."""
    findings = open_logs(args.path)
    if getattr(args, "json", False):
        print_json(dict(findings.to_json(), schema_version=SCHEMA_VERSION))
    else:
        print(findings.render())
    reasons = _logs_reasons(findings, args.path)
    if reasons:
        raise Incomplete(reasons)
    return EXIT_OK
