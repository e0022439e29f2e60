"""Command-line front door: ``dumpkit COMMAND ...`` (also ``python -m dumpkit``).

Every sub-command prints one readable line on error (with a hint) and exits with
0 ok, 1 analysis incomplete (the reasons on stderr), 2 usage, 3 bad input file;
``--debug`` shows tracebacks and warnings.  Output to a closed pipe (``| head``) ends
quietly; Ctrl-C exits with 130.
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Callable, Dict, List, NoReturn, Optional

from ..errors import (CorruptDumpError, DumpError, DumpWarning, MemoryReadError, NotADumpError, SymbolError,
                      TextParseError, TruncatedDumpError, UnsupportedDumpError)
from . import commands as C
from ._util import (EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CliError, Incomplete,
                    positive_int, seconds, symbol_limits_from_environment)

__all__ = ["main", "build_parser", "COMMANDS", "EXIT_OK", "EXIT_INCOMPLETE", "EXIT_USAGE", "EXIT_BAD_INPUT"]

COMMANDS: Dict[str, Callable] = {
    "analyze": C.cmd_analyze, "info": C.cmd_info, "modules": C.cmd_modules, "stack": C.cmd_stack,
    "read": C.cmd_read, "scan": C.cmd_scan, "symbols": C.cmd_symbols, "text": C.cmd_text,
}

_EPILOG = """\
examples:
  dumpkit analyze MEMORY.DMP                     the !analyze-style report
  dumpkit analyze --summary 022124-1234-01.dmp   what crashed, who is to blame, what to do
  dumpkit stack MEMORY.DMP --context exception --symbol-path srv*C:\\symbols*https://msdl.microsoft.com/download/symbols
  dumpkit read MEMORY.DMP nt+0x1000 L40          like WinDbg's db
  dumpkit text analyze.txt --json                analyze pasted WinDbg output ("-" = stdin)
  dumpkit batch C:\\Windows\\Minidump cases\\ --out triage   a whole corpus on a Dask cluster
  dumpkit buckets triage --html triage.html       its buckets, culprits, builds and versions

exit codes: 0 ok, 1 analysis incomplete (or the dump is cut short), 2 usage, 3 bad input file,
            130 interrupted (docs/cli.md has the table)
"""


class _Parser(argparse.ArgumentParser):
    """argparse with dumpkit's one-line usage errors (exit 2) and a hint."""

    def error(self, message: str) -> NoReturn:
        raise CliError(message, code=EXIT_USAGE, hint=f"see '{self.prog} --help'")


def _common(p: argparse.ArgumentParser, *, json: bool = True, symbols: bool = False) -> None:
    if json:
        p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    if symbols:
        p.add_argument("--symbol-path", "-y", metavar="PATH", default=None,
                       help="symbol/image path in _NT_SYMBOL_PATH syntax (default: $_NT_SYMBOL_PATH)")
        p.add_argument("--offline", action="store_true", help="never contact a symbol server")
        p.add_argument("--symbol-timeout", type=seconds, metavar="SECONDS", default=None,
                       help="give up one download after SECONDS of wall clock, connect, headers and body "
                            "included (default 120; also $DUMPKIT_SYMBOL_TIMEOUT); a server that times out "
                            "is not asked again in this run")
        p.add_argument("--symbol-budget", type=seconds, metavar="SECONDS", default=None,
                       help="network time for the whole run, all servers together (default 300; also "
                            "$DUMPKIT_SYMBOL_BUDGET); once spent, no server is asked again")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks and warnings")


def _kb_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kb", metavar="DIR", action="append", default=[],
                   help="your own modules.toml / triage.toml / analyzers.toml, merged over the shipped knowledge base "
                        "(also $DUMPKIT_KB_PATH; repeatable)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    p = _Parser(prog="dumpkit", description="Windows kernel crash-dump triage: read, walk, symbolize, classify.",
                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", default=False, help="show tracebacks and warnings")
    p.add_argument("--version", action="version", version=f"dumpkit {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    s = sub.add_parser("analyze", help="the !analyze-style report: bugcheck, fault, culprit, what to do",
                       description="Analyze a dump like !analyze -v: the bugcheck, the faulting instruction, the "
                                   "followup frame, FAILURE_BUCKET_ID, the culprit and the remediation.")
    s.add_argument("file", help="the dump (.dmp), or - for standard input")
    s.add_argument("--summary", action="store_true", help="a few lines: what crashed, who is to blame, what to do")
    s.add_argument("--extended", action="store_true", help="with --json: add frames, followup, notes, warnings")
    s.add_argument("--logs", metavar="PATH", help="setup logs collected with the dump (folder, zip or one log): "
                                                  "correlate them with the crash")
    _kb_option(s)
    _common(s, symbols=True)

    s = sub.add_parser("info", help="header, bugcheck and times of a dump")
    s.add_argument("file", help="the dump (.dmp), or - for standard input")
    _common(s)

    s = sub.add_parser("modules", help="loaded and unloaded modules (like lm)")
    s.add_argument("file", help="the dump (.dmp), or - for standard input")
    _common(s)

    s = sub.add_parser("stack", help="the call stack (like k) from any context",
                       description="Walk the stack like WinDbg's k. Without --context: the thread that called "
                                   "KeBugCheckEx (the header context).")
    s.add_argument("file", help="the dump (.dmp), or - for standard input")
    s.add_argument("--context", "-c", metavar="WHICH", default=None,
                   help="header, exception, prcb, trap_frame, ... or the address of a CONTEXT/KTRAP_FRAME")
    s.add_argument("--max-frames", type=positive_int, default=256, metavar="N", help="stop after N frames (256)")
    _common(s, symbols=True)

    s = sub.add_parser("read", help="hexdump of virtual or physical memory (like db)",
                       description="Hexdump memory like WinDbg's db. Numbers are hex as in WinDbg (0n for "
                                   "decimal); ADDRESS may be a module name plus an offset (nt+0x1000) or @reg.")
    s.add_argument("file", help="the dump (.dmp), or - for standard input")
    s.add_argument("address", help="fffff804`0c800000, 0x1000, lwffilter+0x1000, @rsp")
    s.add_argument("length", nargs="?", help="bytes to show: 80 (hex), L80, 0n128 (default 0x80)")
    s.add_argument("--physical", "-p", action="store_true", help="ADDRESS is physical (like !db)")
    s.add_argument("--zero-fill", action="store_true", help="missing pages read as zeros (.ignore_missing_pages)")
    s.add_argument("--raw", action="store_true", help="write the bytes themselves to stdout")
    s.add_argument("--context", "-c", metavar="WHICH", default=None, help="context for @reg (default: header)")
    _common(s)

    s = sub.add_parser("scan", help="stream over all physical pages: counts, zero pages, runs, speed",
                       description="Read every present physical page once (memory use stays flat on any size). "
                                   "A progress bar is drawn on a terminal (stderr), never in a pipe.")
    s.add_argument("file", help="the dump (.dmp), or - for standard input")
    s.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    s.add_argument("--ranges", action="store_true", help="triage dumps: list every captured range (default: a "
                                                         "summary per kind)")
    _common(s)

    s = sub.add_parser("symbols", help="per module: which image and PDB were found where, and why not",
                       description="Resolve every loaded module on the symbol path and report what was found "
                                   "where: pdb, exports only, or nothing, with each attempt.")
    s.add_argument("file", help="the dump (.dmp), or - for standard input")
    _common(s, symbols=True)

    s = sub.add_parser("text", help="analyze pasted WinDbg text (!analyze -v, k, lm, r) from a file or stdin")
    s.add_argument("file", metavar="FILE|-", help="a text file, or - to read standard input")
    s.add_argument("--summary", action="store_true", help="a few lines: what crashed, who is to blame, what to do")
    s.add_argument("--extended", action="store_true", help="with --json: add frames, followup, notes, warnings")
    s.add_argument("--logs", metavar="PATH", help="setup logs collected with the crash (folder, zip or one log): "
                                                  "correlate them with the pasted text")
    _kb_option(s)
    _common(s)

    if C.logs_available():
        COMMANDS["logs"] = C.cmd_logs
        s = sub.add_parser("logs", help="summarize Windows setup logs (Panther, setupapi, SetupDiag)",
                           description="Read a folder or zip of Windows setup logs (or one log) and list the "
                                       "errors, rollback evidence and failed driver installs it finds.")
        s.add_argument("path", help="a log file, a folder of logs (read by content, recursively) or a zip")
        _common(s)
    from .batch_cmds import register as _register_batch
    _register_batch(sub, COMMANDS, _common)
    return p


_HINTS = [
    (NotADumpError, "is this a 64-bit kernel dump (MEMORY.DMP or a file from C:\\Windows\\Minidump)? "
                    "For pasted WinDbg output use 'dumpkit text'"),
    (UnsupportedDumpError, "see the supported dump types in docs/dump-formats.md"),
    (TruncatedDumpError, "the file was cut short: copy or download it again and compare sizes"),
    (CorruptDumpError, "the file is damaged; run with --debug for details"),
    (TextParseError, "paste the output of !analyze -v, k, lm or r as WinDbg printed it"),
    (SymbolError, "check --symbol-path; 'dumpkit symbols FILE' shows what was tried"),
    (MemoryReadError, "the memory is not in this dump"),
]


def _looks_like_text(path: Optional[str]) -> bool:
    if not path or not os.path.isfile(path):
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return False
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return True
    return bool(head) and sum(32 <= b < 127 or b in (9, 10, 13) for b in head) > 0.95 * len(head)


def _hint_for(exc: DumpError) -> Optional[str]:
    if isinstance(exc, NotADumpError) and _looks_like_text(exc.path):
        return f"this is a text file: for pasted WinDbg output use 'dumpkit text {exc.path}'"
    if getattr(exc, "hint", None):
        return exc.hint
    for cls, hint in _HINTS:
        if isinstance(exc, cls):
            return hint
    return None


def _err(message: str, hint: Optional[str] = None) -> None:
    line = f"dumpkit: error: {message}"
    if hint:
        line += f" (hint: {hint})"
    try:
        print(line.replace("\n", " "), file=sys.stderr)
    except (OSError, ValueError):
        pass


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _report_warnings(caught: List[warnings.WarningMessage], limit: int = 8) -> None:
    seen: List[str] = []
    for w in caught:
        if issubclass(w.category, DumpWarning):
            text = str(w.message)
            if text not in seen:
                seen.append(text)
    for text in seen[:limit]:
        print(f"dumpkit: warning: {text}", file=sys.stderr)
    if len(seen) > limit:
        print(f"dumpkit: warning: ... and {len(seen) - limit} more (--debug shows all)", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        try:
            args, extra = parser.parse_known_args(argv)
            if extra and args.command == "read" and args.length is None and len(extra) == 1 \
                    and not extra[0].startswith("--"):
                args.length, extra = extra[0], []          # read FILE ADDR --physical L20
            if extra:
                parser.error("unrecognized arguments: " + " ".join(extra))
        except SystemExit as exc:          # --help / --version
            return EXIT_OK if not exc.code else EXIT_USAGE
        debug = bool(getattr(args, "debug", False))
        if not args.command:
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        symbol_limits_from_environment(args)      # a bad $DUMPKIT_SYMBOL_* is a usage error before any work
        if getattr(args, "kb", None) is not None:
            for kb_dir in args.kb:
                if not os.path.isdir(kb_dir):
                    raise CliError(f"--kb {kb_dir}: no such folder", hint="give a folder holding modules.toml, "
                                   "triage.toml and/or analyzers.toml (docs/knowledge-base.md)")
            from ..analysis.kb_overlay import SESSION_DIRS
            SESSION_DIRS[:] = args.kb            # this run's --kb folders (main() may be called again in-process)
        if hasattr(args, "kb") and (args.kb or os.environ.get("DUMPKIT_KB_PATH", "").strip()):
            from ..analysis.kb import KnowledgeBase
            KnowledgeBase.load()          # the user's files are checked first: a mistake is one clear error (exit 3)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always" if debug else "default", DumpWarning)
            try:
                return COMMANDS[args.command](args)
            finally:
                if debug:
                    _report_warnings(caught, limit=10 ** 6)
                elif args.command in ("analyze", "text", "stack"):
                    _report_warnings(caught)
    except CliError as exc:
        if debug and exc.code not in (EXIT_USAGE,):
            raise
        _err(exc.message, exc.hint)
        return exc.code
    except Incomplete as exc:
        for r in exc.reasons:
            print(f"dumpkit: incomplete: {r}", file=sys.stderr)
        return EXIT_INCOMPLETE
    except DumpError as exc:
        if debug:
            raise
        _err(str(exc), _hint_for(exc))
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK
    except KeyboardInterrupt:
        try:
            sys.stderr.write("\ndumpkit: interrupted\n")
        except (OSError, ValueError):
            pass
        return EXIT_INTERRUPTED
    except MemoryError:
        if debug:
            raise
        _err("out of memory", "this is a bug in dumpkit: please report it with --debug output")
        return EXIT_INCOMPLETE
    except Exception as exc:  # noqa: BLE001 - a bug: still one line unless --debug
        if debug:
            raise
        _err(f"internal error: {type(exc).__name__}: {exc}",
             "this is a bug in dumpkit: rerun with --debug and report the traceback")
        return EXIT_INCOMPLETE
