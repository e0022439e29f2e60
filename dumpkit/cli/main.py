"""Command-line front door.

Every sub-command prints one readable line on error (with a hint) and exits with
0 ok, 1 analysis incomplete, 2 usage, 3 bad input file; ``--debug`` shows tracebacks.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from typing import Callable, Dict, List, Optional

from ..errors import DumpError, DumpWarning

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_BAD_INPUT = 0, 1, 2, 3


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def cmd_info(args) -> int:
    import dumpkit
    with dumpkit.open(args.file) as d:
        info = d.info()
        try:
            info["process_name"] = d.process_name  # type: ignore[attr-defined]
        except (AttributeError, DumpError):
            info.setdefault("process_name", None)
        info["module_count"] = len(d.modules)
        if args.json:
            _print_json(info)
            return EXIT_OK
        bc = d.bugcheck
        print(f"File          {d.path}")
        print(f"Dump type     {d.dump_type} (DumpType {d.dump_type_code}), written by {d.header.writer}")
        print(f"Machine       {info['machine']}, build {info['os_build']}, {info['processors']} processors")
        print(f"Crash time    {info['crash_time']}")
        print(f"Uptime        {d.uptime}")
        print(f"Bugcheck      {bc.code:#x} {bc.name or ''}")
        for i, p in enumerate(bc.parameters, 1):
            print(f"  Arg{i}        {p:016x}")
        print(f"Modules       {info['module_count']}")
        for w in d.warnings:
            print(f"warning: {w}")
    return EXIT_OK


def cmd_modules(args) -> int:
    import dumpkit
    with dumpkit.open(args.file) as d:
        mods, unl = d.modules, d.unloaded_modules
        if args.json:
            _print_json({"modules": [m.to_json() for m in mods],
                         "unloaded": [dict(m.to_json(), unload_time=m.unload_time.isoformat()
                                           if m.unload_time else None) for m in unl]})
            return EXIT_OK
        from ..model import windbg_hex
        print("start             end                 module name")
        for m in sorted(mods, key=lambda m: m.base):
            ts = f"{m.timestamp:08x}" if m.timestamp is not None else "--------"
            print(f"{windbg_hex(m.base)} {windbg_hex(m.end)}   {m.windbg_name:<20} {ts}  {m.path or m.name}")
        if len(unl):
            print("\nUnloaded modules:")
            for m in unl:
                print(f"{windbg_hex(m.base)} {windbg_hex(m.end)}   {m.name}")
    return EXIT_OK


COMMANDS: Dict[str, Callable] = {"info": cmd_info, "modules": cmd_modules}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dumpkit", description="Windows kernel crash-dump triage")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("info", help="header, bugcheck and times of a dump")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    s = sub.add_parser("modules", help="loaded and unloaded modules (like lm)")
    s.add_argument("file")
    s.add_argument("--json", action="store_true")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    if not args.debug:
        warnings.simplefilter("ignore", DumpWarning)
    try:
        return COMMANDS[args.command](args)
    except DumpError as exc:
        if args.debug:
            raise
        hint = f" (hint: {exc.hint})" if getattr(exc, "hint", None) else ""
        print(f"dumpkit: error: {exc}{hint}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
