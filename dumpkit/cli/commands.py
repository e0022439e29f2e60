"""The sub-commands of ``dumpkit``.  Each takes the parsed arguments and returns an exit code;
problems are raised (:class:`CliError`, :class:`Incomplete`, :class:`dumpkit.DumpError`) and
turned into one line on stderr by :func:`dumpkit.cli.main.main`."""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Dict, List, Optional

from ..errors import DumpError, MemoryReadError
from ..model import windbg_hex
from ._util import (EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, CliError, Incomplete, human_bytes, open_dump,
                    parse_address, parse_length, print_json, read_text_input)

DEFAULT_READ_LENGTH = 0x80          # WinDbg's db shows 0x80 bytes by default


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
            print_json(info)
            return EXIT_OK
        bc = d.bugcheck
        out = []
        out.append(f"File          {d.path} ({human_bytes(info['file_size'])})")
        sig = f", {d.bitmap_signature}" if d.bitmap_signature else ""
        out.append(f"Dump type     {d.dump_type} (DumpType {d.dump_type_code}{sig}), written by {d.header.writer}")
        out.append(f"Machine       {info['machine']}, build {info['os_build']}, {info['processors']} processors")
        out.append(f"Crash time    {info['crash_time'] or 'not recorded'}")
        out.append(f"Uptime        {d.uptime if d.uptime is not None else 'not recorded'}")
        out.append(f"Bugcheck      {bc.code:#x} {bc.name or ''}".rstrip())
        for i, p in enumerate(bc.parameters, 1):
            out.append(f"  Arg{i}        {p:016x}")
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
    return EXIT_OK


# ====================================================================== modules
def _module_json(m) -> dict:
    return m.to_json()


def cmd_modules(args) -> int:
    with open_dump(args.file) as d:
        mods, unl = d.modules, d.unloaded_modules
        if args.json:
            print_json({"modules": [_module_json(m) for m in mods],
                        "unloaded": [dict(_module_json(m), unload_time=m.unload_time.isoformat()
                                          if m.unload_time else None) for m in unl]})
            return EXIT_OK
        lines = ["start             end                 module name"]
        width = max([len(m.windbg_name) for m in mods] + [8])
        for m in sorted(mods, key=lambda m: m.base):
            ts = f"{m.timestamp:08x}" if m.timestamp is not None else "--------"
            lines.append(f"{windbg_hex(m.base)} {windbg_hex(m.end)}   {m.windbg_name:<{width}}  {ts}  "
                         f"{m.path or m.name}")
        if len(unl):
            lines.append("")
            lines.append("Unloaded modules:")
            for m in unl:
                when = f"  unloaded {m.unload_time.isoformat()}" if m.unload_time else ""
                lines.append(f"{windbg_hex(m.base)} {windbg_hex(m.end)}   {m.name}{when}")
        print("\n".join(lines))
    return EXIT_OK


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
        # a context dumps usually have but this one lacks (cut short, not captured) -> incomplete (1);
        # a name dumpkit does not know -> usage (2)
        code = EXIT_INCOMPLETE if which in KNOWN_CONTEXTS else EXIT_USAGE
        raise CliError(f"this dump has no {which!r} context", code=code,
                       hint="available: " + (", ".join(names) or "none") + ", or the address of a CONTEXT/KTRAP_FRAME")
    try:
        addr = parse_address(which, d)
    except CliError:
        raise
    try:
        return d.context(addr)
    except MemoryReadError as exc:
        raise CliError(f"{which}: {exc.message}", hint="give the address of a CONTEXT (.cxr) or KTRAP_FRAME (.trap)") \
            from None
    except DumpError as exc:
        raise CliError(exc.message, hint=exc.hint) from None


def _looks_hex(s: str) -> bool:
    t = s.replace("`", "").lower()
    t = t[2:] if t.startswith("0x") else t
    return bool(t) and all(c in "0123456789abcdef" for c in t)


def cmd_stack(args) -> int:
    with open_dump(args.file) as d:
        ctx = _pick_context(d, args.context)
        stack = d.stack(ctx, symbol_path=args.symbol_path, max_frames=args.max_frames,
                        offline=True if args.offline else None)
        if args.json:
            print_json({"context": {"source": ctx.source, "rip": hex(ctx.ip), "rsp": hex(ctx.sp)},
                        "frames": [f.to_json() for f in stack]})
        else:
            print(stack.render())
        if not len(stack):
            raise Incomplete([f"no frames could be walked from the {ctx.source or 'given'} context"])
    return EXIT_OK


# ====================================================================== read
def cmd_read(args) -> int:
    from .hexdump import hexdump, read_chunks
    with open_dump(args.file) as d:
        ctx = None
        if "@" in args.address:
            ctx = _pick_context(d, args.context)
        address = parse_address(args.address, d, ctx)
        length = parse_length(args.length) if args.length else DEFAULT_READ_LENGTH
        if args.physical:
            if d.physical is None:
                raise CliError(f"a {d.dump_type} dump holds no physical memory",
                               hint="read virtual addresses (drop --physical)")

            def read(pa: int, n: int) -> bytes:
                return d.read_physical(pa, n, zero_fill=args.zero_fill)
        else:
            def read(va: int, n: int) -> bytes:
                return d.read_virtual(va, n, zero_fill=args.zero_fill)
        if address + length > 1 << 64:
            raise CliError(f"{address:#x} + {length:#x} runs past the end of the address space")
        problems: List[str] = []
        readable = 0
        kind = "physical" if args.physical else "virtual"
        if args.raw:
            out = sys.stdout.buffer
            for pos, data, why in read_chunks(read, address, length):
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
                else:
                    lines.append(line)
            readable = _pieces(address, length) - len(problems)
            if readable:
                print("\n".join(lines))
        if problems and not readable:
            raise CliError(f"{kind} {address:#x}: {problems[0]}", code=EXIT_INCOMPLETE,
                           hint=None if args.zero_fill else
                           "the address is not mapped or its page is not in this dump; --zero-fill reads missing pages as zeros")
        if problems:
            raise Incomplete([f"{len(problems)} unreadable page(s), shown as ??: {problems[0]}"])
    return EXIT_OK


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
        chunk = 16 << 20
        t0 = time.perf_counter()
        progress = Progress(total_pages * 4096, enabled=None if args.progress else False,
                            label=os.path.basename(d.path))
        try:
            for pa, mv in d.iter_physical_runs():
                n_pages = len(mv) // 4096
                runs += 1
                if n_pages > largest[1]:
                    largest = (pa, n_pages)
                lowest = pa if lowest is None else min(lowest, pa)
                highest = max(highest, pa + n_pages * 4096)
                for o in range(0, n_pages * 4096, chunk):
                    part = np.frombuffer(mv[o:o + chunk], dtype=np.uint64)
                    rows = part.reshape(-1, 512)
                    zero_pages += int(rows.shape[0] - np.count_nonzero(rows.any(axis=1)))
                    pages += rows.shape[0]
                    progress.update(pages * 4096)
                del mv
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
        if args.json:
            print_json(result)
        else:
            zp = f" ({zero_pages / pages * 100:.1f}%)" if pages else ""
            print("\n".join([
                f"File            {d.path} ({d.dump_type}, DumpType {d.dump_type_code})",
                f"Present pages   {pages:,} ({human_bytes(nbytes)}) in {runs:,} run{'s' if runs != 1 else ''}",
                f"Largest run     {largest[1]:,} pages at {largest[0]:#x}",
                f"Zero pages      {zero_pages:,}{zp}",
                f"Physical range  {(lowest or 0):#x} - {highest:#x}",
                f"Scanned         {human_bytes(nbytes)} in {secs:.3f} s"
                + (f" ({nbytes / secs / 1e9:.2f} GB/s)" if secs > 0 else ""),
            ]))
        if interrupted:
            raise KeyboardInterrupt
        if pages != total_pages:
            raise Incomplete([f"scanned {pages:,} of the {total_pages:,} pages the dump's index lists "
                              "(the file is cut short)"])
    return EXIT_OK


def _scan_sparse(d, args) -> int:
    items = list(d.memory.captured_ranges())      # a triage dump's captured virtual ranges
    total = sum(s for _, s, _ in items)
    if args.json:
        print_json({"path": d.path, "dump_type": d.dump_type, "pages": 0, "bytes": total, "runs": len(items),
                    "ranges": [{"address": hex(a), "size": hex(s), "what": w} for a, s, w in items],
                    "complete": True})
        return EXIT_OK
    print(f"File            {d.path} ({d.dump_type}, DumpType {d.dump_type_code})")
    print(f"A {d.dump_type} dump holds no physical memory; it captured {len(items)} virtual ranges "
          f"({human_bytes(total)}):")
    for a, s, w in items:
        print(f"  {windbg_hex(a)} {windbg_hex(a + s)}  {s:#8x}  {w}")
    return EXIT_OK


# ====================================================================== symbols
def cmd_symbols(args) -> int:
    with open_dump(args.file) as d:
        sp = args.symbol_path if args.symbol_path is not None else os.environ.get("_NT_SYMBOL_PATH", "")
        res = d.resolver(sp, offline=True if args.offline else None)
        for m in d.modules:
            try:
                res.module_symbols(m)
            except DumpError as exc:        # one bad module must not hide the others
                print(f"dumpkit: warning: {m.name}: {exc}", file=sys.stderr)
        report = res.report_json()
        counts: Dict[str, int] = {}
        for r in report:
            counts[r["symbols"]] = counts.get(r["symbols"], 0) + 1
        if args.json:
            print_json({"symbol_path": sp, "counts": counts, "modules": report})
        else:
            print(f"Symbol path: {sp or '(empty: images in the dump only)'}")
            print(f"{'module':<16} {'base':<18} symbols")
            text = res.report_text()
            if text:
                print(text)
            print(f"{len(report)} modules: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    return EXIT_OK


# ====================================================================== analyze / text
def incomplete_reasons(analysis: Any) -> List[str]:
    """Why an analysis is incomplete (exit code 1): see ``Analysis.incomplete_reasons``."""
    return list(analysis.incomplete_reasons)


def _emit_analysis(analysis: Any, args) -> int:
    if args.json:
        print_json(analysis.to_json(extended=args.extended))
    else:
        print(analysis.summary() if args.summary else analysis.render_text())
    reasons = incomplete_reasons(analysis)
    if reasons:
        raise Incomplete(reasons)
    return EXIT_OK


def cmd_analyze(args) -> int:
    from ..api import analyze
    with open_dump(args.file) as d:
        kw: Dict[str, Any] = {"offline": True} if args.offline else {}
        if getattr(args, "logs", None):
            if not os.path.exists(args.logs):
                raise CliError(f"{args.logs}: no such file or folder", code=EXIT_BAD_INPUT,
                               hint="--logs takes a folder or zip of setup logs, or one log file")
            kw["logs"] = args.logs
        analysis = analyze(d, args.symbol_path, **kw)
        return _emit_analysis(analysis, args)


def cmd_text(args) -> int:
    from ..analysis.engine import analyze_text
    from ..errors import TextParseError
    text, name = read_text_input(args.file)
    try:
        analysis = analyze_text(text, source=name)
    except TextParseError as exc:
        # text without WinDbg structure (prose quoting 'foo!bar+0x10', garbage): nothing to blame, and
        # the analysis is incomplete rather than the file being a bad dump
        raise Incomplete([f"{exc}; no culprit can be named from it"]) from None
    return _emit_analysis(analysis, args)


# ====================================================================== logs (optional)
def logs_available() -> bool:
    """Whether this build has the setup-log reader (checked without importing it: startup stays fast)."""
    import importlib.util
    try:
        return importlib.util.find_spec("dumpkit.logs") is not None
    except (ImportError, ValueError):
        return False


def cmd_logs(args) -> int:
    """Summarize Windows setup logs (a folder, a zip or one log) with :mod:`dumpkit.logs`."""
    from .. import logs
    if args.path != "-" and not os.path.exists(args.path):
        raise CliError(f"{args.path}: no such file or folder", code=EXIT_BAD_INPUT,
                       hint="give a log folder ($WINDOWS.~BT\\Sources\\Panther, C:\\Windows\\Panther), "
                            "a zip of logs, or one log file")
    bundle = logs.open_bundle(args.path)
    findings = logs.summarize_logs(bundle)
    print(findings.render())
    return EXIT_OK
