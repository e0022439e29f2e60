"""Every ``dumpkit COMMAND --json`` document follows its JSON Schema shipped in the package
(dumpkit/schemas/*.schema.json) and carries ``schema_version``.

The commands are discovered from the CLI parser, so a new command fails here until it has a
schema: add ``"name": "schema"`` to ``dumpkit.schemas.COMMAND_SCHEMAS``, ship
``dumpkit/schemas/<schema>.schema.json``, and, when the command needs more than
``COMMAND SAMPLE --json``, its arguments to ``INVOCATIONS`` below (docs/json-schema.md, "Adding a command").
"""
from __future__ import annotations

import contextlib
import io
import json
import os

import pytest

from dumpkit.cli.main import build_parser, main
from dumpkit.schemas import COMMAND_SCHEMAS, SCHEMA_VERSION, schema, schema_names, validate

from .conftest import REAL, ROOT

jsonschema = pytest.importorskip("jsonschema")

SAMPLE = str(ROOT / "fixtures" / "samples" / "case2_lwfmgr.dmp")
TRIAGE = str(ROOT / "fixtures" / "dumps" / "case2_mode0_triage.dmp")
STACK_TXT = str(ROOT / "tests" / "data" / "text" / "case2_stack.txt")
LOGS = str(ROOT / "tests" / "data" / "logs")

def _batch_folder() -> str:
    """A batch results folder that already has the sample's row: 'dumpkit batch SAMPLE' then has
    nothing new to analyse (no cluster is started), and 'dumpkit buckets' has a row to summarize."""
    import hashlib
    import tempfile
    import atexit
    import shutil
    d = tempfile.mkdtemp(prefix="dumpkit-batch-schema-")
    atexit.register(shutil.rmtree, d, True)
    try:
        from dumpkit.batch.store import PartWriter
    except ImportError:
        return d
    w = PartWriter(d)
    w.add({"path": SAMPLE, "sha256": hashlib.sha256(open(SAMPLE, "rb").read()).hexdigest(), "status": "ok",
           "bugcheck_code": 0x7E, "failure_bucket_id": "AV_lwfmgr!unknown_function", "culprit": "lwfmgr.sys",
           "os_build": 19041, "culprit_timestamp": 0x5E8F1234})
    w.add({"path": "garbage.bin", "sha256": "0" * 64, "status": "error", "error_type": "NotRecognised",
           "error": "not a crash dump"})
    w.close()
    return d


BATCH_DIR = _batch_folder()

#: command -> list of argument lists (each run with --json); missing: [[COMMAND, SAMPLE]]
INVOCATIONS = {
    "batch": [["batch", SAMPLE, "--out", BATCH_DIR]],
    "buckets": [["buckets", BATCH_DIR]],
    "analyze": [["analyze", SAMPLE], ["analyze", SAMPLE, "--extended", "--logs", LOGS], ["analyze", TRIAGE]],
    "text": [["text", STACK_TXT], ["text", STACK_TXT, "--extended", "--logs", LOGS]],
    "read": [["read", SAMPLE, "lwfmgr", "L40"], ["read", SAMPLE, "0", "10"]],
    "scan": [["scan", SAMPLE, "--no-progress"], ["scan", TRIAGE, "--ranges"]],
    "stack": [["stack", SAMPLE, "--context", "exception"]],
    "logs": [["logs", LOGS]],
    "symbols": [["symbols", SAMPLE, "--offline"]],
}


def _commands():
    p = build_parser()
    sub = next(a for a in p._actions if a.__class__.__name__ == "_SubParsersAction")
    return sorted(sub.choices)


def run_json(args):
    out, err = io.StringIO(), io.StringIO()
    old = os.environ.get("DUMPKIT_OFFLINE")
    os.environ["DUMPKIT_OFFLINE"] = "1"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*args, "--json"])
    finally:
        if old is None:
            del os.environ["DUMPKIT_OFFLINE"]
        else:
            os.environ["DUMPKIT_OFFLINE"] = old
    assert code in (0, 1), (args, code, err.getvalue())
    return json.loads(out.getvalue())


def test_every_schema_is_valid_json_schema():
    names = schema_names()
    assert set(COMMAND_SCHEMAS.values()) <= set(names), set(COMMAND_SCHEMAS.values()) - set(names)
    for n in names:
        s = schema(n)
        jsonschema.Draft202012Validator.check_schema(s)
        assert s["title"] and s["description"]


@pytest.mark.parametrize("command", _commands())
def test_command_json_follows_its_schema(command):
    assert command in COMMAND_SCHEMAS, (
        f"'dumpkit {command}' has no JSON Schema: add it to dumpkit.schemas.COMMAND_SCHEMAS and ship "
        f"dumpkit/schemas/<name>.schema.json (docs/json-schema.md, 'Adding a command')")
    for args in INVOCATIONS.get(command, [[command, SAMPLE]]):
        doc = run_json(args)
        assert doc["schema_version"] == SCHEMA_VERSION, args
        validate(doc, COMMAND_SCHEMAS[command])


def test_schema_rejects_what_the_contract_forbids():
    doc = run_json(["analyze", SAMPLE])
    bad = dict(doc, bugcheck=dict(doc["bugcheck"], code="0x7E"))          # upper-case hex
    with pytest.raises(jsonschema.ValidationError):
        validate(bad, "analysis")
    with pytest.raises(jsonschema.ValidationError):
        validate({k: v for k, v in doc.items() if k != "crash_time"}, "analysis")


def test_real_triage_scan_is_a_summary_not_1833_lines():
    dmp = REAL / "dumps" / "triage_x64.dmp"
    if not dmp.exists():
        pytest.skip(f"{dmp} not present")
    doc = run_json(["scan", str(dmp)])
    validate(doc, "scan")
    assert doc["memory"] == "virtual" and doc["runs"] > 1000 and "ranges" not in doc
    assert sum(k["count"] for k in doc["ranges_by_kind"].values()) == doc["runs"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["scan", str(dmp)])
    assert len(out.getvalue().splitlines()) < 15


def test_schemas_ship_in_the_wheel():
    import tomllib
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pkgs = cfg["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert "dumpkit" in pkgs            # dumpkit/schemas/*.json are package data under dumpkit/
    assert (ROOT / "dumpkit" / "schemas" / "analysis.schema.json").exists()


@pytest.mark.slow
def test_schemas_are_in_the_built_wheel(tmp_path, request):
    if "slow" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in (builds a wheel): pytest -m slow")
    import subprocess
    import sys
    import zipfile
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", str(ROOT), "--no-deps", "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=600)
    names = zipfile.ZipFile(next(tmp_path.glob("dumpkit-*.whl"))).namelist()
    for n in schema_names():
        assert f"dumpkit/schemas/{n}.schema.json" in names
    assert any(x.endswith("licenses/LICENSE") for x in names)
