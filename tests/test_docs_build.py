"""The documentation site builds with ``mkdocs build --strict`` (no broken links, every nav
page present), its API reference is generated from the docstrings, and the CLI page documents
every command and option the parser has."""
from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

from .conftest import ROOT


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is in the test extras: pip install -e '.[test]'")
    site = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    for page in ("index.html", "tutorial/index.html", "cli/index.html", "knowledge-base/index.html",
                 "performance/index.html", "install/index.html", "quickstart/index.html",
                 "json-schema/index.html", "dump-formats/index.html", "symbols/index.html"):
        assert (site / page).exists(), page
    api = (site / "api" / "dump" / "index.html").read_text(encoding="utf-8")
    # generated from the docstrings: Dump.stack's signature and its docstring's words
    assert "Dump.stack" in api and "max_frames" in api and "Walk the stack" in api
    top = (site / "api" / "dumpkit" / "index.html").read_text(encoding="utf-8")
    assert "dumpkit.open" in top


def test_apidoc_converts_rest_to_markdown():
    sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
    try:
        import apidoc
    finally:
        sys.path.pop(0)
    md = apidoc.docstring_to_markdown("""Read ``x`` via :class:`~dumpkit.Dump` <here>.

    >>> 1 + 1
    2

    Layout::

        a  b
    """)
    assert "`x`" in md and "`dumpkit.Dump`" in md and "&lt;here&gt;" in md
    assert "```pycon\n>>> 1 + 1\n2\n```" in md
    assert "```\na  b\n```" in md
    pages = apidoc.generate()
    assert "api/index.md" in pages and "api/dump.md" in pages and "api/model.md" in pages


def _parser_commands():
    from dumpkit.cli.main import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_cli_page_documents_every_command_and_option():
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    for name, sp in _parser_commands().items():
        section = re.search(rf"^## dumpkit {name}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
        assert section, f"docs/cli.md has no '## dumpkit {name}' section"
        for action in sp._actions:
            longs = [o for o in action.option_strings if o.startswith("--") and o not in ("--help", "--debug")]
            if longs:
                assert any(o in section.group(1) for o in longs), f"dumpkit {name} {longs[0]} is not documented"
