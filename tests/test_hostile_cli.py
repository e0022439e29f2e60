"""The CLI never says "internal error", whatever the input or the symbol server does (issue 11).

Runs ``dumpkit.cli.main`` in process (fast) on the hostile inputs of the issue and against the
hostile loopback servers of test_symbols_hostile_server.py; each run must end with a documented
exit code (0 ok, 1 incomplete, 2 usage, 3 bad input), never "internal error", never a traceback,
and never echo the server's bytes to the terminal.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from dumpkit.cli import main

from .test_hostile_zip import _bomb, _cut_directory
from .test_symbols_hostile_server import HOSTILE_REPLIES, HostileServer

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "fixtures" / "samples" / "case2_lwfmgr.dmp"


def run(capsys, *argv) -> tuple:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code in (0, 1, 2, 3), (code, err)
    assert "internal error" not in err and "Traceback" not in err, err
    return code, out, err


def _no_echo(*texts: str) -> None:
    for t in texts:
        assert "EVIL" not in t and "\x1b" not in t and "\x07" not in t


TEXTS = {
    "hex run and bang": "f" * 112 + "!\n",
    "40 lines of tabs": "\n".join(["\t" * 4000 + "x"] * 40) + "\n",
    "huge uptime": "BugCheck 7E, {ffffffffc0000005, 0, 0, 0}\nSystem Uptime: 9999999999 days 0:00:40.641\n",
    "5000-digit uptime": "System Uptime: " + "9" * 5000 + " days 1:00:00\n",
    "binary": "\x00\x01\x02PK\x03\x04\ufffd" * 100,
}


@pytest.mark.parametrize("what", list(TEXTS))
def test_text_and_analyze_on_hostile_text(tmp_path, capsys, what):
    p = tmp_path / "paste.txt"
    p.write_text(TEXTS[what], encoding="utf-8")
    for cmd in ("text", "analyze"):
        run(capsys, cmd, p)
        run(capsys, cmd, p, "--json")


def test_logs_and_analyze_logs_on_hostile_bundles(tmp_path, capsys):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("Windows/INF/setupapi.dev.log", "\t" * 60000 + "x\n")
    bundles = {"bomb.zip": _bomb(300, True), "garbage.zip": b"PK\x03\x04" + b"\xff" * 500,
               "cut.zip": _cut_directory(buf.getvalue()), "tabs.zip": buf.getvalue()}
    paste = tmp_path / "paste.txt"
    paste.write_text(TEXTS["huge uptime"])
    for name, data in bundles.items():
        b = tmp_path / name
        b.write_bytes(data)
        run(capsys, "logs", b)
        run(capsys, "logs", b, "--json")
        run(capsys, "analyze", paste, "--logs", b)


@pytest.fixture
def servers():
    made = []
    yield made
    for s in made:
        s.close()


@pytest.mark.parametrize("what", ["garbage status line", "70 KiB header line", "superscript Content-Length",
                                  "5000-digit Content-Length", "short body", "broken chunked body",
                                  "redirect loop", "HTTP/0.9 status"])
def test_symbols_and_stack_against_a_hostile_server(tmp_path, capsys, servers, monkeypatch, what):
    monkeypatch.delenv("DUMPKIT_OFFLINE", raising=False)
    srv = HostileServer(HOSTILE_REPLIES[what])
    servers.append(srv)
    path = f"srv*{tmp_path / 'cache'}*{srv.url}"
    runs = [("symbols", SAMPLE, "-y", path)]
    if what == "garbage status line":             # the other front doors reach the same client
        runs += [("stack", SAMPLE, "-y", path), ("analyze", SAMPLE, "-y", path, "--json")]
    for argv in runs:
        _code, out, err = run(capsys, *argv)
        _no_echo(out, err)
    assert srv.connections >= 1                       # the server was really asked


def test_refused_server_is_reported_once(tmp_path, capsys, monkeypatch):
    import socket

    monkeypatch.delenv("DUMPKIT_OFFLINE", raising=False)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    _code, out, err = run(capsys, "symbols", SAMPLE, "-y", f"srv*{tmp_path / 'cache'}*http://127.0.0.1:{port}/sym")
    assert err.count("is down") == 1
    _no_echo(out, err)



# ---------------------------------------------------------------- --symbol-timeout / --symbol-budget
def _silent_forever(conn, stop):
    stop.wait(10)                 # accepts, reads the request, never answers (until the test ends)


def _drip_body(conn, stop):
    import time
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nMSF")
    while not stop.is_set():
        conn.sendall(b"M")
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["option", "environment"])
def test_symbol_timeout_bounds_a_server_that_never_answers(tmp_path, capsys, servers, monkeypatch, how):
    """Without the option the first module waits out the 10 s socket timeout; with 0.4 s the whole
    command is over in well under that, the server is asked once and said to be down once."""
    import time
    monkeypatch.delenv("DUMPKIT_OFFLINE", raising=False)
    srv = HostileServer(_silent_forever)
    servers.append(srv)
    argv = ["symbols", SAMPLE, "-y", f"srv*{tmp_path / 'cache'}*{srv.url}", "--json"]
    if how == "option":
        argv += ["--symbol-timeout", "0.4"]
    else:
        monkeypatch.setenv("DUMPKIT_SYMBOL_TIMEOUT", "0.4")
    t0 = time.monotonic()               # wall clock on purpose: the deadline is a wall-clock one
    _code, out, err = run(capsys, *argv)
    assert time.monotonic() - t0 < 5.0
    assert srv.connections == 1 and err.count("is down") == 1 and "0.4 s" in err, err
    assert '"unreachable"' in out


def test_symbol_budget_bounds_the_whole_run(tmp_path, capsys, servers, monkeypatch):
    """A server dripping a PDB a byte at a time: the per-download limit (60 s) would let it run on,
    the run's budget of 0.4 s stops it and every later module is answered at once."""
    import time
    monkeypatch.delenv("DUMPKIT_OFFLINE", raising=False)
    srv = HostileServer(_drip_body)
    servers.append(srv)
    t0 = time.monotonic()
    _code, out, err = run(capsys, "stack", SAMPLE, "-y", f"srv*{tmp_path / 'cache'}*{srv.url}",
                          "--symbol-timeout", "60", "--symbol-budget", "0.4")
    assert time.monotonic() - t0 < 5.0
    # file.ptr is refused at once (1,000,000 bytes announced for a pointer), the PDB itself drips
    assert srv.connections == 2 and "Call Site" in out, err
    assert "network budget of 0.4 s for this run ran out" in err and "is down" not in err, err
    _no_echo(out, err)


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "1e999", "ten", "", "90000"])
@pytest.mark.parametrize("option", ["--symbol-timeout", "--symbol-budget"])
def test_bad_symbol_limits_are_usage_errors(capsys, option, value):
    code, _out, err = run(capsys, "symbols", SAMPLE, option, value)
    assert code == 2 and option in err and "seconds" in err, err


@pytest.mark.parametrize("var", ["DUMPKIT_SYMBOL_TIMEOUT", "DUMPKIT_SYMBOL_BUDGET"])
def test_bad_symbol_limit_in_the_environment_is_a_usage_error(capsys, monkeypatch, var):
    monkeypatch.setenv(var, "soon")
    for cmd in ("symbols", "stack", "analyze"):
        code, _out, err = run(capsys, cmd, SAMPLE, "--offline")
        assert code == 2 and f"${var}" in err, err
    assert run(capsys, "info", SAMPLE)[0] == 0             # commands without symbols do not read it
    monkeypatch.setenv(var, "30")
    assert run(capsys, "symbols", SAMPLE, "--offline")[0] in (0, 1)
