"""Every regular expression that can see untrusted text runs in linear time.

The sweep finds the patterns itself, so a pattern added later is covered without
touching this file:

* every ``re.Pattern`` among the globals of each module in ``dumpkit.text``,
  ``dumpkit.logs``, ``dumpkit.analysis``, ``dumpkit.symbolize`` and ``dumpkit.cli``
  (also inside top-level tuples, lists, dicts and class attributes);
* every literal pattern passed inline to ``re.match/search/sub/...`` in those
  modules' source (found with :mod:`ast`).

Each pattern is run with ``match`` and ``search`` on hostile lines: long runs of
digits, hex, blanks and tabs, punctuation, ``!``, backticked addresses and mixtures,
with and without a character at the end that makes the match fail, and also the
same runs spliced into a string the pattern nearly matches (built from the parsed
pattern, so literal prefixes such as ``System Uptime:`` are reached).  Lengths
climb in small steps first, so exponential backtracking is caught while it still
costs milliseconds, then a long line catches quadratic behaviour.  The whole sweep
runs in a forked child with a watchdog: a pattern that hangs fails the test (naming
the pattern) instead of hanging the suite.
"""
from __future__ import annotations

import ast
import importlib
import inspect
import multiprocessing
import pkgutil
import re
import sys
import time
import warnings
from typing import Dict, Iterator, List, Set, Tuple

import pytest

try:                                   # Python 3.11+
    import re._parser as _sre_parse    # type: ignore[import-not-found]
    import re._constants as _sre_c     # type: ignore[import-not-found]
except ImportError:                    # Python 3.10
    import sre_parse as _sre_parse     # type: ignore[no-redef]
    import sre_constants as _sre_c     # type: ignore[no-redef]

PACKAGES = ("text", "logs", "analysis", "symbolize", "cli")
LONG = 5_000           #: the long hostile line (chars); a quadratic pattern costs ~10M steps here
LIMIT = 0.05           #: CPU seconds one match/search may take (linear ones take well under 1 ms)
STEPS = list(range(4, 129, 4))   #: exponential blow-up shows here while it still costs milliseconds
WATCHDOG = 30.0        #: seconds without progress before the child is killed

#: the runs the hostile lines are made of
RUNS: Dict[str, str] = {
    "digits": "7", "hex": "f", "hexmix": "0123456789abcdef", "blanks": " ", "tabs": "\t", "blank-tab": " \t",
    "bang": "!", "colon": ":", "punct": ".,;:-_()[]{}<>=+*/'\"", "tick": "fffff804`0c9d08c2 ",
    "hexwords": "ffffffff ", "words": "Word ", "mixed": "ab 12\t:!.,-_#@", "backslash": "\\", "equals": "a=",
}
TAILS = ("", "\x00")


def _modules() -> Iterator[object]:
    for name in PACKAGES:
        pkg = importlib.import_module(f"dumpkit.{name}")
        yield pkg
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"dumpkit.{name}."):
            yield importlib.import_module(info.name)


def _patterns_in(value: object, depth: int = 0) -> Iterator[re.Pattern]:
    if isinstance(value, re.Pattern):
        yield value
    elif depth < 2 and isinstance(value, (tuple, list, set, frozenset)):
        for v in value:
            yield from _patterns_in(v, depth + 1)
    elif depth < 2 and isinstance(value, dict):
        for k, v in value.items():
            yield from _patterns_in(k, depth + 1)
            yield from _patterns_in(v, depth + 1)


_RE_FUNCS = {"match", "search", "fullmatch", "sub", "subn", "split", "findall", "finditer", "compile"}


def _inline_patterns(mod: object) -> Iterator[Tuple[str, re.Pattern]]:
    """Literal patterns written inline: ``re.match(r"...", s)``, ``re.compile(r"...", re.I)``..."""
    try:
        src = inspect.getsource(mod)   # type: ignore[arg-type]
    except (OSError, TypeError):
        return
    with warnings.catch_warnings():            # a module's own odd escapes are not this test's business
        warnings.simplefilter("ignore")
        tree = ast.parse(src)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                and node.func.attr in _RE_FUNCS and node.args):
            continue
        arg = node.args[0]
        if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
            continue
        flags = 0
        for f in list(node.args[1:]) + [k.value for k in node.keywords if k.arg == "flags"]:
            for n in ast.walk(f):
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "re":
                    flags |= int(getattr(re, n.attr, 0)) if isinstance(getattr(re, n.attr, None), re.RegexFlag) else 0
        try:
            yield f"line {node.lineno}", re.compile(arg.value, flags)
        except re.error:
            continue


def collect() -> List[Tuple[str, re.Pattern]]:
    seen: Set[Tuple[str, int]] = set()
    out: List[Tuple[str, re.Pattern]] = []

    def add(where: str, p: re.Pattern) -> None:
        key = (p.pattern if isinstance(p.pattern, str) else repr(p.pattern), p.flags)
        if key not in seen:
            seen.add(key)
            out.append((where, p))

    for mod in _modules():
        mname = mod.__name__       # type: ignore[attr-defined]
        for k, v in list(vars(mod).items()):
            for p in _patterns_in(v):
                add(f"{mname}.{k}", p)
            if inspect.isclass(v) and v.__module__ == mname:
                for ck, cv in vars(v).items():
                    for p in _patterns_in(cv):
                        add(f"{mname}.{k}.{ck}", p)
        for where, p in _inline_patterns(mod):
            add(f"{mname} ({where})", p)
    return out


# ---- a string the pattern nearly matches, and the characters it cares about -------------------------

_CAT_CHARS = {
    "CATEGORY_DIGIT": "7", "CATEGORY_NOT_DIGIT": "x", "CATEGORY_SPACE": " \t", "CATEGORY_NOT_SPACE": "x",
    "CATEGORY_WORD": "a", "CATEGORY_NOT_WORD": " ", "CATEGORY_LINEBREAK": "\n", "CATEGORY_NOT_LINEBREAK": "x",
}
_PROBES = "xa0 !\t:.-_Z9`\\"


_CAT_TEST = {"CATEGORY_DIGIT": str.isdigit, "CATEGORY_SPACE": str.isspace,
             "CATEGORY_WORD": lambda c: c.isalnum() or c == "_"}


def _in_class(c: str, items: list) -> bool:
    for op, av in items:
        if op == _sre_c.LITERAL and chr(av) == c:
            return True
        if op == _sre_c.RANGE and av[0] <= ord(c) <= av[1]:
            return True
        if op == _sre_c.CATEGORY:
            name = str(av)
            test = _CAT_TEST.get(name.replace("_NOT", ""))
            if test is not None and test(c) != ("_NOT_" in name):
                return True
    return False


def _class_char(items: list, chars: List[str]) -> str:
    """A representative character of a character class (IN node); also noted in ``chars``."""
    if any(op == _sre_c.NEGATE for op, _ in items):
        rest = [it for it in items if it[0] != _sre_c.NEGATE]
        c = next((c for c in _PROBES if not _in_class(c, rest)), "\x01")
        chars.append(c)
        return c
    for op, av in items:
        if op == _sre_c.LITERAL:
            chars.append(chr(av))
            return chr(av)
        if op == _sre_c.RANGE:
            chars.append(chr(av[0]))
            return chr(av[0])
        if op == _sre_c.CATEGORY:
            reps = _CAT_CHARS.get(str(av), "x")
            chars.extend(reps)
            return reps[0]
    return "x"


def _sample(sub, groups: Dict[int, str], chars: List[str], depth: int = 0) -> List[str]:
    """One piece of text per node of ``sub``: together a near-minimal match."""
    pieces: List[str] = []
    if depth > 30:
        return pieces
    for op, av in sub:
        name = str(op)
        if op == _sre_c.LITERAL:
            pieces.append(chr(av))
            chars.append(chr(av))
        elif op == _sre_c.NOT_LITERAL:
            pieces.append("x" if av != ord("x") else "y")
        elif op == _sre_c.ANY:
            pieces.append("x")
        elif op == _sre_c.IN:
            pieces.append(_class_char(av, chars))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            lo, hi, body = av
            one = "".join(_sample(body, groups, chars, depth + 1))
            # at least one repetition where allowed: a run spliced after it then sits inside the repeat
            # (``x(.*?)\s*$`` is quadratic only when the lazy part has started)
            pieces.append(one * min(max(lo, 1), hi, 20))
        elif name == "SUBPATTERN":
            gid, body = av[0], av[-1]
            text = "".join(_sample(body, groups, chars, depth + 1))
            if gid:
                groups[gid] = text
            pieces.append(text)
        elif name == "ATOMIC_GROUP":
            pieces.append("".join(_sample(av, groups, chars, depth + 1)))
        elif name == "BRANCH":
            alts = av[1]
            for alt in alts[1:]:
                _sample(alt, {}, chars, depth + 1)          # their characters count too
            pieces.append("".join(_sample(alts[0], groups, chars, depth + 1)))
        elif name == "GROUPREF":
            pieces.append(groups.get(av, ""))
        elif name == "CATEGORY":
            pieces.append(_CAT_CHARS.get(str(av), "x")[0])
        else:                       # AT, ASSERT, ASSERT_NOT, GROUPREF_EXISTS...: zero width here
            pieces.append("")
    return pieces


def hostile_inputs(p: re.Pattern) -> Iterator[Tuple[str, object]]:
    """(label, make(n) -> str) pairs: generic runs, then runs spliced into a near-match."""
    def generic(run: str, tail: str):
        return lambda n: (run * (n // len(run) + 1))[:n] + tail

    for rname, run in RUNS.items():
        for tail in TAILS:
            yield f"{rname}{'+' + repr(tail) if tail else ''}", generic(run, tail)
    if not isinstance(p.pattern, str):
        return
    chars: List[str] = []
    try:
        pieces = _sample(_sre_parse.parse(p.pattern, p.flags), {}, chars)
    except Exception:              # an exotic construct: the generic lines still apply
        return
    reps: List[str] = []
    for c in chars + [" ", "7"]:
        if c not in reps and c != "\n":
            reps.append(c)
    reps = reps[:5]
    cuts = sorted({0, len(pieces)} | {i for i in range(1, len(pieces)) if pieces[i - 1]})
    if len(cuts) > 6:
        step = len(cuts) / 6
        cuts = sorted({cuts[int(k * step)] for k in range(6)} | {cuts[-1]})
    for i in cuts:
        head, rest = "".join(pieces[:i]), "".join(pieces[i:])
        for c in reps:
            for tail in ("\x00", rest):
                yield (f"near-match cut {i} run {c!r} tail {tail[:12]!r}",
                       (lambda h, cc, t: (lambda n: h + cc * n + t))(head, c, tail))


def _time(fn, s: str) -> float:
    t = time.process_time()
    fn(s)
    return time.process_time() - t


def _check(p: re.Pattern, long: int = LONG) -> List[str]:
    problems: List[str] = []
    if not isinstance(p.pattern, str):
        return problems
    for label, make in hostile_inputs(p):
        for fname in ("match", "search"):
            fn = getattr(p, fname)
            for n in STEPS + [long]:
                s = make(n)                      # type: ignore[operator]
                dt = _time(fn, s)
                if dt > LIMIT:                   # the machine is shared: confirm before blaming
                    dt = min(dt, _time(fn, s), _time(fn, s))
                if dt > LIMIT:
                    return [f"{fname} on {label} x{n}: {dt * 1000:.0f} ms"]
    return problems


def _child(conn, patterns) -> None:
    bad: Dict[str, List[str]] = {}
    for where, p in patterns:
        conn.send(("start", where))
        probs = _check(p)
        if probs:
            bad[where] = probs
    conn.send(("done", bad))
    conn.close()


def test_sweep_finds_the_patterns():
    pats = collect()
    names = {w for w, _ in pats}
    # a few known patterns from each package prove the discovery works
    for must in ("dumpkit.text.stack._TRAP_LINE_RE", "dumpkit.text.stack._HEADER_RE", "dumpkit.logs.setupapi._BODY_RE",
                 "dumpkit.logs.correlate._UPTIME_RE"):
        assert must in names
    assert len(pats) > 100
    assert any("(line " in w for w in names), "inline re.* literals are found too"


def test_near_match_reaches_literal_prefixes():
    p = re.compile(r"^\s*System Uptime:\s*(?P<v>.+?)\s*$", re.I)
    labels = [make(3) for _, make in hostile_inputs(p)]      # type: ignore[operator]
    assert any(s.lstrip().startswith("System Uptime:") for s in labels)


def test_sweep_catches_bad_patterns():
    """The sweep itself must notice exponential and quadratic patterns (else it proves nothing)."""
    assert _check(re.compile(r"^(?:[0-9a-f]{2,8}\s*)+$"))            # exponential on hex + '!'
    # quadratic on blanks: ~80 ms at 5,000 blanks on a fast idle core, near the limit, so the
    # self-check uses a 4x longer line (16x the cost) to stay far from it on any machine
    assert _check(re.compile(r"^\s*#?\s*Child-SP"), long=4 * LONG)
    assert not _check(re.compile(r"^[0-9a-f]{1,16}$"))


@pytest.mark.skipif(sys.platform == "win32", reason="uses fork for the watchdog")
def test_every_pattern_is_linear_on_hostile_lines():
    patterns = collect()
    ctx = multiprocessing.get_context("fork")
    parent, child_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child_end, patterns), daemon=True)
    proc.start()
    child_end.close()
    current = "(start-up)"
    bad = None
    try:
        while True:
            if not parent.poll(WATCHDOG):
                pytest.fail(f"{current}: no answer within {WATCHDOG:.0f} s on a hostile line (catastrophic "
                            "backtracking)")
            kind, value = parent.recv()
            if kind == "start":
                current = value
            else:
                bad = value
                break
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    assert not bad, "super-linear patterns:\n" + "\n".join(f"  {w}: {'; '.join(v[:3])}" for w, v in bad.items())
