"""Shared pieces of the command line: exit codes, the CLI's own error, opening inputs,
number and address parsing, JSON output."""
from __future__ import annotations

import argparse
import json
import os
import stat
import sys
from typing import IO, Any, List, Optional, Tuple

from ..errors import DumpError

EXIT_OK, EXIT_INCOMPLETE, EXIT_USAGE, EXIT_BAD_INPUT = 0, 1, 2, 3
EXIT_INTERRUPTED = 130

#: the most a single ``dumpkit read`` prints (WinDbg stops at 256 KiB without ``L?``)
MAX_READ = 16 << 20
#: the most read from a pipe or stdin for a dump (dumps from pipes are held in memory)
MAX_PIPE_DUMP = 1 << 30


class CliError(Exception):
    """An error the CLI reports as one line: ``dumpkit: error: <message> (hint: <hint>)``."""

    def __init__(self, message: str, *, code: int = EXIT_USAGE, hint: Optional[str] = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.hint = hint


class Incomplete(Exception):
    """The command produced its output but could not finish the job (exit code 1)."""

    def __init__(self, reasons: List[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = list(reasons)


# ------------------------------------------------------------------ output
def print_json(obj: Any, out: Optional[IO[str]] = None) -> None:
    """One JSON document on stdout (indented, UTF-8 safe, non-JSON values as strings)."""
    out = out or sys.stdout
    json.dump(obj, out, indent=2, default=str, ensure_ascii=False)
    out.write("\n")


def plural(n: int, word: str, plural_form: Optional[str] = None) -> str:
    """``1 processor``, ``2 processors``, ``1,500 modules`` (thousands separated)."""
    return f"{n:,} {word if n == 1 else (plural_form or word + 's')}"


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


# ------------------------------------------------------------------ option values
def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (``--max-frames 0`` or ``-1`` is a usage error, exit 2)."""
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return n


#: the longest --symbol-timeout / --symbol-budget accepted (a day: anything longer is a typo)
MAX_SYMBOL_SECONDS = 86400.0
SYMBOL_ENV = {"symbol_timeout": "DUMPKIT_SYMBOL_TIMEOUT", "symbol_budget": "DUMPKIT_SYMBOL_BUDGET"}


def seconds(text: str) -> float:
    """argparse type: a number of seconds, more than 0 and at most a day (``0``, ``-1``, ``nan``,
    ``1e999``, ``ten`` are usage errors, exit 2)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < v <= MAX_SYMBOL_SECONDS:             # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} must be more than 0 and at most {MAX_SYMBOL_SECONDS:.0f} seconds")
    return v


def symbol_limits_from_environment(args: Any) -> None:
    """Fill ``--symbol-timeout`` / ``--symbol-budget`` left unset from ``$DUMPKIT_SYMBOL_TIMEOUT`` /
    ``$DUMPKIT_SYMBOL_BUDGET`` (the options win); a bad value is a usage error (exit 2)."""
    for attr, var in SYMBOL_ENV.items():
        if not hasattr(args, attr) or getattr(args, attr) is not None:
            continue
        raw = os.environ.get(var, "").strip()
        if raw:
            try:
                setattr(args, attr, seconds(raw))
            except argparse.ArgumentTypeError as exc:
                raise CliError(f"${var}: {exc}", code=EXIT_USAGE,
                               hint=f"set it to a number of seconds or unset it; --{attr.replace('_', '-')} "
                                    "overrides it") from None


def symbol_path_for(args: Any) -> Tuple[str, Any]:
    """(the symbol path's text, what to hand to ``Dump.stack``/``resolver``/``analyze``) for a
    command with ``--symbol-path`` (default ``$_NT_SYMBOL_PATH``).  With ``--symbol-timeout`` or
    ``--symbol-budget`` (or their environment variables) the second is a
    :class:`~dumpkit.symbolize.SymbolPath` carrying those limits; without, the text as given."""
    text = args.symbol_path if args.symbol_path is not None else os.environ.get("_NT_SYMBOL_PATH", "")
    timeout, budget = getattr(args, "symbol_timeout", None), getattr(args, "symbol_budget", None)
    if timeout is None and budget is None:
        return text, args.symbol_path
    from ..symbolize import SymbolPath
    return text, SymbolPath.with_limits(text, max_time=timeout, budget=budget,
                                        offline=True if getattr(args, "offline", False) else None)


def check_exclusive(args: Any) -> None:
    """Options that make no sense together are usage errors (exit 2)."""
    if getattr(args, "summary", False) and getattr(args, "json", False):
        raise CliError("--summary and --json do not go together", hint="--summary is for people, --json for scripts: "
                       "pick one")
    if getattr(args, "extended", False) and not getattr(args, "json", False):
        raise CliError("--extended only applies to --json output", hint="add --json, or drop --extended")


# ------------------------------------------------------------------ dumps cut short
def dump_incomplete_reasons(d: Any) -> List[str]:
    """Why a dump cannot be read completely (see :func:`dumpkit.analysis.facts.truncation_reasons`);
    every dump command turns these into exit code 1, whatever the dump type."""
    from ..analysis.facts import truncation_reasons
    return truncation_reasons(d)


# ------------------------------------------------------------------ inputs
def _dmp_files_in(directory: str, limit: int = 5) -> List[str]:
    try:
        names = sorted(n for n in os.listdir(directory) if n.lower().endswith((".dmp", ".mdmp")))
    except OSError:
        return []
    return names[:limit]


def check_input_path(path: str, what: str = "dump") -> None:
    """Raise a :class:`CliError` (exit 3) with a useful hint when ``path`` cannot be an input file."""
    if path == "-":
        return
    if not os.path.lexists(path):
        parent = os.path.dirname(os.path.abspath(path))
        hint = "check the path" if os.path.isdir(parent) else f"the folder {parent} does not exist either"
        raise CliError(f"{path}: no such file", code=EXIT_BAD_INPUT, hint=hint)
    if os.path.isdir(path):
        found = _dmp_files_in(path)
        if what == "dump":
            hint = ("give one of the dumps in it: " + ", ".join(found)) if found else \
                "give the .dmp file itself (C:\\Windows\\MEMORY.DMP or a file from C:\\Windows\\Minidump)"
        else:
            hint = "give a text file, or - to read standard input"
        raise CliError(f"{path}: is a directory, not a {what} file", code=EXIT_BAD_INPUT, hint=hint)
    if not os.access(path, os.R_OK):
        raise CliError(f"{path}: permission denied", code=EXIT_BAD_INPUT,
                       hint="copy the file somewhere readable, or run with the rights to read it")


def _is_stream(path: str) -> bool:
    """True for things without a useful size (pipes, FIFOs, character devices, process substitution)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def read_stream(f: IO[bytes], limit: int, name: str) -> bytes:
    data = f.read(limit + 1)
    if len(data) > limit:
        raise CliError(f"{name}: more than {human_bytes(limit)} on a pipe", code=EXIT_BAD_INPUT,
                       hint="save the dump to a file and give its path (files are mapped, not read whole)")
    return data


def open_dump(path: str):
    """Open a dump for a command: a file path, ``-`` (standard input) or a pipe/FIFO."""
    import dumpkit
    check_input_path(path, "dump")
    if path == "-" or _is_stream(path):
        name = "<stdin>" if path == "-" else path
        if path == "-":
            if sys.stdin is None or sys.stdin.isatty():
                raise CliError("- means 'read the dump from standard input', but stdin is a terminal",
                               hint="pipe a dump in (cat x.dmp | dumpkit info -) or give its path")
            data = read_stream(sys.stdin.buffer, MAX_PIPE_DUMP, name)
        else:
            with open(path, "rb") as f:
                data = read_stream(f, MAX_PIPE_DUMP, name)
        from ..dump import Dump
        from ..errors import CorruptDumpError
        from ..io import Source
        src = Source.from_bytes(data, name)
        try:
            return Dump(src)
        except DumpError:
            src.close()
            raise
        except (ValueError, OverflowError, IndexError, KeyError) as exc:
            src.close()
            raise CorruptDumpError(f"could not parse the dump: {type(exc).__name__}: {exc}", path=name) from exc
    return dumpkit.open(path)


def read_text_input(path: str) -> Tuple[str, str]:
    """(text, display name) from a file or ``-``; decodes UTF-8, UTF-16 (BOM) and falls back to latin-1."""
    check_input_path(path, "text")
    if path == "-":
        if sys.stdin is None:
            raise CliError("no standard input", hint="give a file name")
        if sys.stdin.isatty():
            print("dumpkit: reading WinDbg text from the terminal; end with Ctrl-D (Ctrl-Z Enter on Windows)",
                  file=sys.stderr)
        raw = read_stream(sys.stdin.buffer, 64 << 20, "<stdin>")
        name = "<stdin>"
    else:
        with open(path, "rb") as f:
            raw = read_stream(f, 64 << 20, path)
        name = path
    text = decode_text(raw)
    if not text.strip():
        raise CliError(f"{name}: empty input", code=EXIT_BAD_INPUT,
                       hint="paste the output of !analyze -v, k, lm or r from WinDbg")
    return text, name


def decode_text(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16", errors="replace")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace")
    # UTF-16LE without a BOM (WinDbg .logopen /u): every other byte is NUL
    if len(raw) >= 4 and raw[1:200:2].count(0) > 0.9 * len(raw[1:200:2]):
        return raw.decode("utf-16-le", errors="replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# ------------------------------------------------------------------ numbers and addresses
def parse_number(text: str, *, default_hex: bool = True) -> int:
    """A number the WinDbg way: hex by default (``80`` = 0x80), ``0x`` hex, ``0n`` decimal,
    backticks ignored (``fffff804`0c800000``)."""
    t = text.strip().replace("`", "").replace("_", "").lower()
    if not t:
        raise ValueError("empty number")
    neg = t.startswith("-")
    if neg:
        t = t[1:]
    if t.startswith("0n"):
        v = int(t[2:], 10)
    elif t.startswith("0x"):
        v = int(t[2:], 16)
    elif t.startswith("0t"):
        v = int(t[2:], 8)
    elif t.startswith("0y"):
        v = int(t[2:], 2)
    else:
        v = int(t, 16 if default_hex else 10)
    return -v if neg else v


def parse_length(text: str) -> int:
    """``L80``, ``0x80``, ``80`` (hex, as in WinDbg) or ``0n128``."""
    t = text.strip()
    if t[:1] in ("L", "l") and len(t) > 1:
        t = t[1:]
    try:
        n = parse_number(t)
    except ValueError:
        raise CliError(f"bad length {text!r}", hint="hex as in WinDbg (80 = 0x80 bytes), 0n128 for decimal, "
                       "or L80") from None
    if n <= 0:
        raise CliError(f"length {text!r} must be positive")
    if n > MAX_READ:
        raise CliError(f"length {n:#x} is more than {human_bytes(MAX_READ)}",
                       hint="read a smaller range, or use --raw with several reads")
    return n


def parse_address(text: str, dump: Any = None, context: Any = None) -> int:
    """An address expression: a number (hex by default), a module name (``nt``, ``lwffilter``),
    ``@reg`` from ``context``, and ``+``/``-`` between terms (``lwffilter+0x1000``)."""
    expr = text.strip().replace(" ", "")
    if not expr:
        raise CliError("empty address")
    terms: List[Tuple[int, str]] = []
    sign, cur = 1, ""
    for ch in expr:
        if ch in "+-" and cur:
            terms.append((sign, cur))
            sign, cur = (1 if ch == "+" else -1), ""
        else:
            cur += ch
    terms.append((sign, cur))
    total = 0
    for s, term in terms:
        total += s * _term_value(term, text, dump, context)
    return total & 0xFFFFFFFFFFFFFFFF


_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-$")


def _term_value(term: str, whole: str, dump: Any, context: Any) -> int:
    if term.startswith("@"):
        if context is None:
            raise CliError(f"{whole!r}: registers need a context", hint="add --context header|exception|...")
        reg = term[1:].lower()
        if reg not in context.regs:
            raise CliError(f"{whole!r}: no register {reg!r} in the {context.source or 'chosen'} context")
        return context.regs[reg]
    if "!" in term:
        raise CliError(f"{whole!r}: symbol names are not accepted as addresses yet",
                       hint="use module+offset (lwffilter+0x1000) or a number")
    try:
        return parse_number(term)
    except ValueError:
        pass
    if dump is not None:
        m = dump.modules.by_name(term) or dump.unloaded_modules.by_name(term)
        if m is not None:
            return m.base
        if len(dump.modules) == 0 and _NAME_CHARS.issuperset(term.lower()):
            # a property of the file, not of the command line: exit 3, not 2
            from ..errors import CorruptDumpError
            raise CorruptDumpError(f"cannot resolve {whole!r}: the dump's loaded-module list is empty or "
                                   "unreadable", path=getattr(dump, "path", None),
                                   hint="give a hex address instead of a module name")
    raise CliError(f"{whole!r} is not an address", hint="hex as in WinDbg (fffff804`0c800000, 0x1000), "
                   "a module name (nt, lwffilter) or module+offset")
