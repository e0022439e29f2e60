"""Packaging and quality gates (issue 15): the licence the metadata names is the file shipped,
the metadata a package index shows is there, and dumpkit/ is clean under the ruff and mypy
configuration in pyproject.toml, which .ci/run runs after the tests."""
from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from .conftest import ROOT

CFG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_license_file_matches_the_metadata():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
    proj = CFG["project"]
    assert proj["license"] == {"text": "MIT"}
    assert "License :: OSI Approved :: MIT License" in proj["classifiers"]


def test_index_metadata():
    proj = CFG["project"]
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(proj["urls"])
    assert all(u.startswith("https://") for u in proj["urls"].values())
    assert any(c.startswith("Programming Language :: Python :: 3.10") for c in proj["classifiers"])
    assert (ROOT / "dumpkit" / "py.typed").exists()          # 'Typing :: Typed' is honest
    for tool in ("pytest-cov", "ruff", "mypy", "jsonschema"):
        assert any(req.startswith(tool) for req in proj["optional-dependencies"]["test"]), tool


def test_ci_runs_the_gates_after_the_tests():
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    i_tests = run.index("python -m pytest -q --cov=dumpkit")
    i_ruff, i_mypy = run.index("python -m ruff check dumpkit"), run.index("python -m mypy")
    assert i_tests < i_ruff < i_mypy
    assert CFG["tool"]["ruff"]["line-length"] == 120 and CFG["tool"]["mypy"]["files"] == ["dumpkit"]
    assert CFG["tool"]["coverage"]["run"]["source"] == ["dumpkit"]


def _tool(name: str) -> list:
    try:
        __import__(name)
    except ImportError:
        pytest.skip(f"{name} is not installed (it comes with the test extra)")
    return [sys.executable, "-m", name]


def test_ruff_is_clean_on_dumpkit():
    cmd = _tool("ruff") + ["check", "--no-cache", "dumpkit"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.slow
def test_mypy_is_clean_on_dumpkit(tmp_path, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in (about 40 s): pytest -m slow; .ci/run runs mypy itself")
    cmd = _tool("mypy") + ["--cache-dir", str(tmp_path)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout + p.stderr
