"""The README's two commands, run as written in fresh virtual environments.

The main job runs exactly as written, in an empty venv (its dependencies are few).  The test
command's install part runs as written, in a venv that sees this interpreter's installed packages
(a ``.pth`` line), so pip resolves the ``test`` extra against them and builds only dumpkit: a
from-scratch install of that extra (dask, pyarrow, volatility3, mypy ...) cost about 50 s of the
suite, and ``.ci/run`` performs exactly that install on every CI run anyway.  The pytest part is
narrowed to two quick files, since running the whole suite from inside the suite would recurse.
Needs the package index (CI has it); skips with the reason otherwise.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.environ.get("DUMPKIT_README_CHECK") == "inner",
                                reason="already inside the README check")


def _commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```\n(python -m pip install[^\n]*)\n```", text)
    assert len(blocks) >= 2, "README must show the install-and-run and the test commands"
    main = next(b for b in blocks if "dumpkit analyze" in b)
    tests = next(b for b in blocks if "pytest" in b)
    return main, tests


def _fresh(tmp: Path, name: str, inherit: bool = False) -> dict:
    d = tmp / name
    venv.EnvBuilder(with_pip=True, clear=True).create(d)
    if inherit:        # this interpreter's packages become visible (after the venv's own ones)
        own = Path(sysconfig.get_paths(vars={"base": str(d), "platbase": str(d)})["purelib"])
        parent = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
        (own / "zz_parent_env.pth").write_text("".join(p + "\n" for p in sorted(parent)))
    env = dict(os.environ)
    env["PATH"] = f"{d / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(d)
    env.pop("PYTHONPATH", None)
    env["DUMPKIT_README_CHECK"] = "inner"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd: str, env: dict, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _copy_repo(tmp: Path) -> Path:
    """A clean copy of the working tree (no build or venv leftovers)."""
    dst = tmp / "repo"
    shutil.copytree(ROOT, dst, ignore=shutil.ignore_patterns(".git", "*.egg-info", "build", "dist", ".venv*",
                                                             "__pycache__", ".pytest_cache", ".hypothesis", "site"))
    return dst


def _need_index(proc: subprocess.CompletedProcess) -> None:
    blob = proc.stdout + proc.stderr
    if proc.returncode and re.search(r"(No matching distribution|Could not find a version|"
                                     r"Temporary failure in name resolution|Network is unreachable)", blob):
        pytest.skip("the package index is not reachable: " + blob.strip().splitlines()[-1][:200])


def test_main_job_command_in_a_fresh_venv(tmp_path):
    main, _ = _commands()
    repo = _copy_repo(tmp_path)
    env = _fresh(tmp_path, "venv-main")
    proc = _run(main, env, repo)
    _need_index(proc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AV_lwfmgr!unknown_function" in proc.stdout
    assert "{98a1e719-bb08-86f7-3821-f56b482ab48e}" in proc.stdout


def test_test_command_in_a_fresh_venv(tmp_path):
    _, tests = _commands()
    install, _, run = tests.partition("&&")
    assert "pytest" in run
    repo = _copy_repo(tmp_path)
    env = _fresh(tmp_path, "venv-tests", inherit=True)
    proc = _run(install.strip(), env, repo, timeout=900)
    _need_index(proc)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = _run(run.strip() + " tests/test_sample.py tests/test_reader_synthetic.py", env, repo)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert re.search(r"\d+ passed", proc.stdout)
