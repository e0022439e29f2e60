"""Every code block in the hand-written docs runs, and prints what the page shows.

* ```` ```pycon ```` blocks are doctests (one namespace per page, ELLIPSIS allowed);
* ```` ```python ```` blocks are executed in that namespace;
* ```` ```console ```` blocks are ``$ dumpkit ...`` commands run through ``python -m dumpkit``;
  the lines under a command are its expected output (``...`` matches anything).

The working directory is the repository root, as the pages say.
"""
from __future__ import annotations

import doctest
import os
import re
import shlex
import subprocess
import sys

import pytest

from .conftest import ROOT

DOCS = ROOT / "docs"
PAGES = ["tutorial.md", "quickstart.md", "cli.md", "knowledge-base.md", "index.md"]
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)


def blocks(page: str):
    text = (DOCS / page).read_text(encoding="utf-8")
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        yield m.group(1), m.group(2), line


def _run_console(block: str, page: str, line: int) -> None:
    checker = doctest.OutputChecker()
    cmds = []
    for ln in block.splitlines():
        if ln.startswith("$ "):
            cmds.append([ln[2:], []])
        elif cmds:
            cmds[-1][1].append(ln)
    env = dict(os.environ, DUMPKIT_OFFLINE="1", COLUMNS="100")
    env.pop("_NT_SYMBOL_PATH", None)
    for cmd, expected in cmds:
        argv = shlex.split(cmd)
        assert argv[0] == "dumpkit", f"{page}:{line}: only dumpkit commands run here: {cmd}"
        stdin = None
        if "<" in argv:
            i = argv.index("<")
            stdin = (ROOT / argv[i + 1]).read_bytes()
            argv = argv[:i]
        p = subprocess.run([sys.executable, "-m", "dumpkit", *argv[1:]], cwd=ROOT, capture_output=True,
                           input=stdin, env=env, timeout=60)
        got = p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")
        want = "\n".join(expected).rstrip() + "\n"
        if not expected:
            assert p.returncode == 0, f"{page}:{line}: `{cmd}` exited {p.returncode}: {got}"
            continue
        ok = checker.check_output(want, got, doctest.ELLIPSIS)
        assert ok, f"{page}:{line}: `{cmd}` (exit {p.returncode}) printed:\n{got}\nthe page shows:\n{want}"


@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, monkeypatch):
    if not (DOCS / page).exists():
        pytest.skip(f"docs/{page} not written")
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("DUMPKIT_OFFLINE", "1")
    monkeypatch.delenv("_NT_SYMBOL_PATH", raising=False)
    ns: dict = {"__name__": f"docs_{page.replace('.', '_').replace('-', '_')}"}
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    ran = 0
    for lang, code, line in blocks(page):
        if lang == "pycon":
            test = parser.get_doctest(code, ns, f"{page}:{line}", str(DOCS / page), line)
            out: list = []
            result = runner.run(test, out=out.append, clear_globs=False)
            ns.update(test.globs)                       # DocTest works on a copy: carry names forward
            assert result.failed == 0, "".join(out)
            ran += 1
        elif lang == "python":
            exec(compile(code, f"{page}:{line}", "exec"), ns)
            ran += 1
        elif lang == "console":
            _run_console(code, page, line)
            ran += 1
    assert ran, f"no runnable blocks in {page}"
