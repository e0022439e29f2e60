"""Issue 15, front doors: one exit-code table for every command, setup-log folders read by
content, honest symbol-server reporting, and the analysis facts (crash time, culprit image).

Truth comes from outside the code under test: the real triage_x64.dmp and its
triage_x64.expected.md (crash time 2021-02-21 01:38:22 UTC, build 19041), the compiler-built
case-2 sample (lwfmgr.sys's PE header: its timestamp), the real log excerpts in
shared/data/real/logs (one file at a time they yield 32 Panther errors and 4 failing setupapi
sections; the folder must yield at least that), and a real refused TCP connection.
"""
from __future__ import annotations

import json
import shutil
import socket

import pytest

import dumpkit

from .conftest import ROOT, shared_path
from .test_cli_commands import FULL, TRIAGE, assert_clean_error, dk

SAMPLE = ROOT / "fixtures" / "samples" / "case2_lwfmgr.dmp"


def _pe_timestamp(data: bytes) -> int:
    pe = int.from_bytes(data[0x3C:0x40], "little")
    return int.from_bytes(data[pe + 8:pe + 12], "little")


@pytest.fixture(scope="module")
def cut(tmp_path_factory):
    """The committed full and triage fixtures, each cut short."""
    d = tmp_path_factory.mktemp("cut")
    out = {}
    for name, src, n in (("full", SAMPLE, 150_000), ("triage", TRIAGE, 40_000)):
        p = d / f"{name}.dmp"
        p.write_bytes(src.read_bytes()[:n])
        out[name] = p
    return out


# ---------------------------------------------------------------------------- exit codes
@pytest.mark.parametrize("kind", ["full", "triage"])
def test_cut_dumps_exit_1_for_every_command(cut, kind):
    """A dump cut short prints what it can and exits 1, whatever the dump type and command."""
    for cmd in (["info"], ["modules"], ["stack"], ["scan"], ["analyze"], ["analyze", "--summary"], ["symbols"],
                ["info", "--json"], ["modules", "--json"]):
        p = dk(*cmd, cut[kind])
        assert p.returncode == 1, (kind, cmd, p.returncode, p.err)
        assert "Traceback" not in p.err
        assert "dumpkit: incomplete:" in p.err and ("cut short" in p.err or "end marker" in p.err), (cmd, p.err)
        assert p.out.strip(), (cmd, "the output still comes")


def test_modules_on_a_cut_full_dump_warns(tmp_path):
    cutf = tmp_path / "cut.dmp"
    cutf.write_bytes(FULL.read_bytes()[:0x9000])
    p = dk("modules", cutf)
    assert p.returncode == 1
    assert "dumpkit: warning: no loaded modules could be read" in p.err


def test_usage_errors_exit_2():
    for args in (("stack", SAMPLE, "--max-frames", "-1"), ("stack", SAMPLE, "--max-frames", "0"),
                 ("analyze", SAMPLE, "--summary", "--json"), ("analyze", SAMPLE, "--extended"),
                 ("text", ROOT / "tests" / "data" / "text" / "case2_stack.txt", "--extended"),
                 ("stack", SAMPLE, "-c", "bogus"), ("stack", SAMPLE, "-c", "trap_frame"),
                 ("read", SAMPLE, "nt", "--raw", "--json"), ("nosuchcommand",)):
        p = dk(*args)
        assert_clean_error(p, 2)


def test_bad_input_exit_3(tmp_path):
    png = tmp_path / "pic.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    for args in (("info", tmp_path / "missing.dmp"), ("analyze", png), ("logs", tmp_path / "nope"),
                 ("analyze", SAMPLE, "--logs", tmp_path / "nope")):
        p = dk(*args)
        assert_clean_error(p, 3)


def test_logs_given_a_picture_names_it(tmp_path):
    png = tmp_path / "pic.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    p = dk("analyze", SAMPLE, "--logs", png)
    assert p.returncode == 1, p.err                       # the analysis is there; the logs are not
    assert "pic.png" in p.out and "binary" in p.out        # 'Setup logs: ... pic.png: binary data ...'
    assert "pic.png" in p.err


def test_api_nonexistent_path_says_so():
    with pytest.raises(dumpkit.DumpError) as ei:
        dumpkit.analyze("/nonexistent.dmp")
    assert "no such file" in str(ei.value) and "/nonexistent.dmp" in str(ei.value)
    with pytest.raises(dumpkit.DumpError):
        dumpkit.analyze("C:\\Windows\\Minidump\\022124-1234-01.dmp")


def test_print_analysis_is_the_summary_and_the_package_doc_runs():
    import doctest
    a = dumpkit.analyze(SAMPLE, offline=True)
    assert str(a) == a.summary() and str(a).startswith("Crash:    0x7E")
    assert doctest.testmod(dumpkit, optionflags=doctest.ELLIPSIS).failed == 0
    assert (ROOT / "fixtures" / "samples" / "case2_lwfmgr.dmp").exists()


def test_plurals():
    p = dk("info", SAMPLE)
    assert "1 processor\n" in p.out or p.out.count("1 processor") == 1
    assert "1 processors" not in p.out


def test_cut_triage_summary_does_not_ask_for_pasted_text():
    src = shared_path("dumps", "triage_x64.dmp")
    data = src.read_bytes()[:300_000]
    d = dumpkit.open(data)
    text = dumpkit.analyze(d, offline=True).summary()
    assert ".trap" not in text and "paste" not in text
    assert "cut short" in text
    # triage_x64.expected.md: crash 2021-02-21 01:38:22 UTC on build 19041
    assert "Time:     2021-02-21 01:38:22 UTC" in text and "build 19041" in text


# ---------------------------------------------------------------------------- analysis facts
def test_analysis_json_carries_time_build_and_culprit_image():
    doc = dumpkit.analyze(SAMPLE, offline=True).to_json()
    lwf = dumpkit.open(SAMPLE)
    m = lwf.modules.by_name("lwfmgr.sys")
    image = lwf.read_virtual(m.base, 0x400)
    assert doc["culprit"]["module"] == "lwfmgr.sys"
    assert int(doc["culprit"]["timestamp"], 16) == _pe_timestamp(image)      # from the image's own PE header
    assert int(doc["culprit"]["base"], 16) == m.base and doc["culprit"]["path"].endswith("lwfmgr.sys")
    assert doc["os_build"] == 19041 and doc["crash_time"].startswith("2024-03-14T15:09:26")
    assert doc["uptime_seconds"] == 600.0


def test_frame_offset_is_the_function_offset():
    text = (ROOT / "tests" / "data" / "text" / "case2_stack.txt").read_text()
    doc = dumpkit.analyze(text).to_json(extended=True)
    frames: dict = {}
    for f in doc["extended"]["frames"]:
        frames.setdefault(f["module"], f)                   # the first frame of each module
    assert frames["ndis"]["symbol"] == "NdisFDeregisterFilterDriver" and frames["ndis"]["offset"] == "0x47"
    assert frames["lwfmgr"]["symbol"] is None and frames["lwfmgr"]["offset"] is None
    assert frames["lwfmgr"]["module_offset"] == "0x5167"      # the seed case's 'lwfmgr+0x5167'


# ---------------------------------------------------------------------------- setup logs by content
def test_logs_folder_read_by_content_whatever_the_names(tmp_path):
    logs = shared_path("logs")
    # collection tools rename and flatten: give every file a meaningless name in a nested folder
    flat = tmp_path / "collected" / "part1"
    flat.mkdir(parents=True)
    for i, f in enumerate(sorted(p for p in logs.rglob("*") if p.is_file())):
        shutil.copy(f, flat / f"item_{i:03d}.dat")
    for folder in (logs, tmp_path / "collected"):
        p = dk("logs", folder, "--json")
        assert p.returncode == 0, p.err
        doc = json.loads(p.out)
        assert len(doc["errors"]) >= 32 + 5, len(doc["errors"])   # Panther excerpts (32) + UnattendGC (5) + ...
        assert len(doc["setupapi_failures"]) == 4
        read = [f for f in doc["files"] if f["status"] == "read"]
        skipped = [f for f in doc["files"] if f["status"] == "skipped"]
        assert len(read) == 11 and len(skipped) == 1 and skipped[0]["note"].startswith("text, but no setup-log")
        assert all(f["how"] == "content" for f in read)
    text = dk("logs", tmp_path / "collected").out
    first = text.splitlines()[0]
    assert first.startswith("Read 11 of 12 files"), first
    assert "Skipped 1:" in text


def test_logs_empty_folder_and_text_with_logs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    p = dk("logs", empty)
    assert p.returncode == 1 and "empty" in p.out and "empty" in p.err
    logs = shared_path("logs")
    p = dk("text", ROOT / "tests" / "data" / "text" / "case2_stack.txt", "--logs", logs)
    assert p.returncode in (0, 1), p.err
    assert "Setup logs: Read 11 of 12 files" in p.out


# ---------------------------------------------------------------------------- symbol servers
def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_is_not_not_found():
    from dumpkit.report.symbols import module_reason, render_server_status, server_status
    from dumpkit.symbolize.server import SymbolServer
    from dumpkit.symbolize.store import Attempt
    url = f"http://127.0.0.1:{_closed_port()}/symbols"
    res = SymbolServer(url, retries=0, timeout=2, offline=False).fetch("ntkrnlmp.pdb", "0" * 33)
    assert res.status == "error"                        # a real refused connection
    entry = {"module": "ntoskrnl.exe", "pdb": {"found": False},
             "attempts": [Attempt("pdb", "ntkrnlmp.pdb", "0" * 33, url, res.status, res.detail).to_json()]}
    st = server_status([entry])
    assert st[0].state == "unreachable" and st[0].unreachable == 1
    assert module_reason(entry).startswith("symbol server unreachable")
    lines = render_server_status(st)
    assert "is unreachable" in lines[0] and "not 'not found'" in lines[0] and "--offline" in lines[-1]
    missing = {"module": "x.sys", "pdb": {"found": False},
               "attempts": [Attempt("pdb", "x.pdb", "1", url, "missing", "HTTP 404 for every form").to_json()]}
    assert server_status([missing])[0].state == "ok" and module_reason(missing) == "PDB not found on the symbol path"


def test_download_progress_line_on_a_terminal():
    import io

    from dumpkit.cli.progress import DownloadProgress
    from dumpkit.symbolize.store import FETCH_LISTENERS, _notify
    out = io.StringIO()
    with DownloadProgress(stream=out, enabled=True):
        assert len(FETCH_LISTENERS) == 1
        _notify("start", "https://msdl.microsoft.com/download/symbols", "ntkrnlmp.pdb", "")
        _notify("end", "https://msdl.microsoft.com/download/symbols", "ntkrnlmp.pdb", "error")
        _notify("start", "https://msdl.microsoft.com/download/symbols", "hal.pdb", "")
    assert not FETCH_LISTENERS
    text = out.getvalue()
    assert "0 done; downloading ntkrnlmp.pdb from msdl.microsoft.com" in text
    assert "1 done, 1 unreachable; downloading hal.pdb" in text
    assert text.endswith("\r")                          # erased at the end
    quiet = io.StringIO()                               # not a terminal: nothing
    with DownloadProgress(stream=quiet):
        _notify("start", "https://x/y", "a.pdb", "")
    assert quiet.getvalue() == ""


def test_symbols_counts_read_as_words():
    p = dk("symbols", shared_path("dumps", "triage_x64.dmp"))
    last = [ln for ln in p.out.splitlines() if ln.startswith("151 modules")][0]
    assert last == "151 modules: 151 no symbols (module+offset)"


# ---------------------------------------------------------------------------- the user's knowledge base
IN_HOUSE = '''schema = 1

[[module]]
file = "lwfmgr.sys"
vendor = "Contoso Bank IT (in-house)"
product = "branch terminal traffic filter"
category = "NDIS lightweight filter"
role = "culprit"
in_box = false
service = "lwfmgr"
notes = "Installed by the terminal image."
remediation = ["Install lwfmgr 3.2 from the terminal-software share."]
'''


def test_user_kb_overlay_cli_env_and_api(tmp_path, monkeypatch):
    from dumpkit.analysis.kb import KnowledgeBase, KnowledgeBaseError
    kb = tmp_path / "kb"
    kb.mkdir()
    (kb / "modules.toml").write_text(IN_HOUSE)
    # the shipped record says 'terminal-management software'; the user's replaces it
    shipped = KnowledgeBase.load(overlays=())
    assert "Contoso" not in (shipped.module("lwfmgr.sys").vendor or "")
    mine = KnowledgeBase.load(overlays=[kb])
    assert mine.module("lwfmgr.sys").vendor == "Contoso Bank IT (in-house)" and mine.overlays
    assert mine.module("ndis.sys") == shipped.module("ndis.sys")          # the rest is the shipped KB
    p = dk("analyze", SAMPLE, "--summary", "--kb", kb)
    assert p.returncode == 0, p.err
    assert "Contoso Bank IT (in-house)" in p.out and "Install lwfmgr 3.2" in p.out
    p = dk("analyze", SAMPLE, "--summary", env={"DUMPKIT_KB_PATH": str(kb)})
    assert "Contoso Bank IT (in-house)" in p.out
    # a triage rule of one's own: never blame lwfmgr -> the followup moves past it
    (kb / "triage.toml").write_text('schema = 1\nrules = [ { match = "lwfmgr!*", owner = "ignore", '
                                    'why = "test: in-house filter is never the followup" } ]\n')
    doc = json.loads(dk("analyze", SAMPLE, "--json", "--kb", kb).out)
    assert doc["module_name"] != "lwfmgr"
    # mistakes are the same errors as in the shipped files, naming the user's file
    (kb / "modules.toml").write_text(IN_HOUSE.replace('role = "culprit"', 'role = "villain"'))
    with pytest.raises(KnowledgeBaseError) as ei:
        KnowledgeBase.load(overlays=[kb])
    assert "modules.toml" in str(ei.value) and "role must be 'victim' or 'culprit'" in str(ei.value)
    p = dk("analyze", SAMPLE, "--kb", kb)
    assert_clean_error(p, 3)
    assert str(kb / "modules.toml") in p.err
    p = dk("analyze", SAMPLE, "--kb", tmp_path / "nope")
    assert_clean_error(p, 2)
    monkeypatch.setenv("DUMPKIT_KB_PATH", str(tmp_path / "nope"))
    with pytest.raises(KnowledgeBaseError):
        KnowledgeBase.load()


def test_damaged_zip_of_renamed_logs_is_read_by_content(tmp_path):
    """A collection tool's zip with meaningless member names, cut short (no central directory):
    the salvaged members are still recognised by what they hold."""
    import zipfile
    logs = shared_path("logs")
    z = tmp_path / "upload.zip"
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        for i, f in enumerate(sorted(logs.glob("*.txt"))):
            zf.write(f, f"collected/{i:04d}.dat")
    data = z.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: data.rindex(b"PK\x01\x02")])          # the central directory is gone
    doc = json.loads(dk("logs", cut, "--json").out)
    assert any(p["kind"] == "salvaged" for p in doc["problems"])
    read = [f for f in doc["files"] if f["status"] == "read"]
    assert len(read) == 9 and all(f["how"] == "content" for f in read)
    assert len(doc["setupapi_failures"]) == 4 and len(doc["errors"]) >= 32 + 5
