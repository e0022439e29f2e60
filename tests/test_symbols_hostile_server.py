"""The symbol-server client against hostile servers on loopback (issue 11, items 3 and 4).

Each server below is a raw socket server started here that misbehaves in one way: garbage
instead of HTTP, a 70 KiB header line, Content-Length values that are not numbers, a body cut
short, a broken chunked body, a body or headers dripped a byte at a time, a server that accepts
and never answers, a refused port, TLS spoken to a plain server, a redirect loop.  Every one must
end as an 'error' result (a SymbolServerError inside) naming the URL, quickly, without echoing
what the server sent; connect failures and timeouts trip the circuit breaker.  The server
threads are daemons that stop when the test ends (a stop event and socket timeouts bound them).
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable, List

import pytest

from dumpkit.errors import SymbolServerError
from dumpkit.symbolize import RunBudget, SymbolPath, SymbolServer
from dumpkit.symbolize.server import _content_length

KEY = "3A461B0E74F0C5294C4C44205044422E1"
EVIL = b"\x1b[31mEVIL\x07"          # an escape sequence and a bell: must never reach the terminal


class HostileServer:
    """Loopback TCP server; ``behave(conn, stop)`` answers each connection."""

    def __init__(self, behave: Callable[[socket.socket, threading.Event], None]) -> None:
        self.behave = behave
        self.stop = threading.Event()
        self.connections = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/sym"
        self.threads: List[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            t.start()
            self.threads.append(t)

    def _one(self, conn: socket.socket) -> None:
        conn.settimeout(0.3)
        try:
            try:
                _read_request(conn)
            except socket.timeout:       # a TLS client waits for the server to speak first
                pass
            conn.settimeout(2.0)
            self.behave(conn, self.stop)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()
        for t in self.threads:
            t.join(3)
        assert not any(t.is_alive() for t in self.threads), "a server thread did not stop"


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


@pytest.fixture
def hostile():
    made: List[HostileServer] = []

    def make(behave):
        s = HostileServer(behave)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _send(*parts: bytes):
    def behave(conn, stop):
        for p in parts:
            conn.sendall(p)
    return behave


def _drip(head: bytes, body_byte: bytes = b"M", interval: float = 0.02):
    def behave(conn, stop):
        conn.sendall(head)
        while not stop.is_set():
            conn.sendall(body_byte)
            time.sleep(interval)
    return behave


def _drip_headers(interval: float = 0.02):
    def behave(conn, stop):
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        while not stop.is_set():
            conn.sendall(b"X")
            time.sleep(interval)
    return behave


def _silent(conn, stop):
    stop.wait(5)


def _client(url: str, **kw) -> SymbolServer:
    kw.setdefault("timeout", 1.0)
    kw.setdefault("retries", 0)
    kw.setdefault("backoff", 0.0)
    kw.setdefault("max_time", 1.0)
    kw.setdefault("order", ("file",))
    return SymbolServer(url, offline=False, **kw)


def _assert_clean(text: str) -> None:
    assert "EVIL" not in text and "\x1b" not in text and "\x07" not in text
    assert all(" " <= c <= "~" for c in text), repr(text)


HOSTILE_REPLIES = {
    "garbage status line": _send(EVIL + b" garbage\r\n\r\n"),
    "70 KiB header line": _send(b"HTTP/1.1 200 OK\r\nX-Evil: " + EVIL + b"a" * 70000 + b"\r\n\r\n"),
    "superscript Content-Length": _send("HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\nMZ".encode("utf-8")),
    "5000-digit Content-Length": _send(b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\nMZ"),
    "negative Content-Length": _send(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\nMZ"),
    "huge Content-Length": _send(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999\r\n\r\nMZ"),
    "short body": _send(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nMZ" + EVIL),
    "broken chunked body": _send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz" + EVIL + b"\r\n"),
    "chunk size too large": _send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"f" * 40 + b"\r\nMZ"),
    "too many headers": _send(b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n"),
    "bad gzip": _send(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 6\r\n\r\n" + EVIL),
    "redirect loop": _send(b"HTTP/1.1 302 Found\r\nLocation: /sym/again\r\nContent-Length: 0\r\n\r\n"),
    "redirect with control characters": _send(b"HTTP/1.1 302 Found\r\nLocation: /sym/" + EVIL + b"\r\n"
                                              b"Content-Length: 0\r\n\r\n"),
    "file.ptr with control characters": _send(b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\nPATH:http://x/" + EVIL
                                              + b"aaaaaa"),
    "redirect to file:": _send(b"HTTP/1.1 302 Found\r\nLocation: file:///etc/passwd\r\nContent-Length: 0\r\n\r\n"),
    "HTTP/0.9 status": _send(b"HTTP/1.1 999 " + EVIL + b"\r\nContent-Length: 0\r\n\r\n"),
    "empty reply": _send(b""),
}


@pytest.mark.parametrize("what", list(HOSTILE_REPLIES))
def test_hostile_reply_is_an_error_naming_the_url(hostile, what):
    srv = hostile(HOSTILE_REPLIES[what])
    c = _client(srv.url, quiet=True, order=("file.ptr", "file"))
    t0 = time.monotonic()
    res = c.fetch("ndislike.pdb", KEY, "pdb")
    assert time.monotonic() - t0 < 3.0
    assert res.data is None and res.status == "error", (res.status, res.detail)
    _assert_clean(res.detail)
    assert all(srv.url in r for r in res.requests)           # the URL is named
    for r in res.requests:
        _assert_clean(r)


def test_a_body_shorter_than_announced_is_an_error(hostile):
    srv = hostile(HOSTILE_REPLIES["short body"])
    res = _client(srv.url, quiet=True).fetch("a.pdb", KEY)
    assert res.status == "error" and "of the 100000 bytes announced" in res.detail


def test_bad_content_length_values_are_refused_cleanly():
    url = "http://x/sym/a.pdb"
    for bad in ("\u00b2", "9" * 5000, "-1", "1e3", "0x10", " ", "\u0661\u0662"):  # ² ; 5000 digits; Arabic digits
        with pytest.raises(SymbolServerError) as ei:
            _content_length(bad, url, 1 << 30)
        assert url in str(ei.value)
    with pytest.raises(SymbolServerError, match="over the limit"):
        _content_length("99999999999", url, 1000)
    assert _content_length(" 42 ", url, 1000) == 42 and _content_length(None, url, 10) is None


def test_dripped_body_is_cut_at_the_deadline(hostile, capsys):
    srv = hostile(_drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nMSF"))
    c = _client(srv.url, timeout=2.0, max_time=0.5)          # each byte comes well within the socket timeout
    t0 = time.monotonic()
    res = c.fetch("ndislike.pdb", KEY, "pdb")
    took = time.monotonic() - t0
    assert 0.4 < took < 1.5, took
    assert res.status == "error" and ("limit" in res.detail or "within" in res.detail)
    assert c.down is not None and capsys.readouterr().err.count("is down") == 1


def test_dripped_headers_are_cut_at_the_deadline(hostile):
    srv = hostile(_drip_headers())
    c = _client(srv.url, timeout=2.0, max_time=0.5, quiet=True)
    t0 = time.monotonic()
    res = c.fetch("ndislike.pdb", KEY, "pdb")
    assert time.monotonic() - t0 < 1.5
    assert res.status == "error" and c.down is not None


def test_silent_server_trips_the_breaker_once(hostile, capsys, tmp_path):
    srv = hostile(_silent)
    sp = SymbolPath(f"srv*{tmp_path / 'cache'}*{srv.url}", offline=False, timeout=0.3, retries=2, backoff=0.01)
    t0 = time.monotonic()
    for n in range(5):                              # five different files: only the first one waits
        assert sp.find_pdb(f"drv{n}.pdb", "3A461B0E-74F0-C529-4C4C-44205044422E", 1) is None
    assert time.monotonic() - t0 < 1.5
    assert srv.connections == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is down" in err and srv.url in err


def test_refused_port_trips_the_breaker(capsys):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()                                       # nothing listens there now
    c = _client(f"http://127.0.0.1:{port}/sym", retries=3, backoff=0.01)
    res = c.fetch("a.pdb", KEY)
    assert res.status == "error" and "connect" in res.detail and c.requests_made == 1
    assert c.fetch("b.pdb", KEY).detail.startswith("server marked down")
    assert c.requests_made == 1 and capsys.readouterr().err.count("is down") == 1


def test_tls_to_a_plain_server_is_an_error(hostile):
    srv = hostile(_send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nMZ"))
    c = _client(srv.url.replace("http://", "https://"), quiet=True)
    res = c.fetch("a.pdb", KEY)
    assert res.status == "error" and "TLS" in res.detail and c.down is not None


def test_run_budget_is_shared_and_stops_requests(hostile):
    srv = hostile(_drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"))
    budget = RunBudget(0.4)
    a = _client(srv.url, timeout=2.0, max_time=30.0, budget=budget, quiet=True)
    t0 = time.monotonic()
    assert a.fetch("a.pdb", KEY).status == "error"
    assert time.monotonic() - t0 < 1.5
    b = _client(srv.url, budget=budget, quiet=True)          # another server of the same run
    res = b.fetch("b.pdb", KEY)
    assert res.status == "error" and "budget" in res.detail and b.requests_made == 0


def test_failures_are_negatively_cached(hostile):
    srv = hostile(HOSTILE_REPLIES["garbage status line"])
    c = _client(srv.url, quiet=True, order=("file.ptr", "file", "compressed"))
    assert c.fetch("a.pdb", KEY).status == "error"
    made = c.requests_made
    assert made == 3 and c.down is None                     # garbage is not "down": the other forms were asked
    res = c.fetch("a.pdb", KEY)
    assert res.status == "error" and "not asked again" in res.detail and c.requests_made == made
    _assert_clean(res.detail)


def test_message_in_file_ptr_is_sanitised(hostile):
    srv = hostile(_send(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\nMSG: " + EVIL + b" hi"))
    c = _client(srv.url, quiet=True, order=("file.ptr",))
    res = c.fetch("a.pdb", KEY)
    assert res.status == "message"                        # the message is shown, as printable ASCII only
    assert "\x1b" not in res.detail and "\x07" not in res.detail and all(" " <= c <= "~" for c in res.detail)


def test_a_server_answering_5xx_to_everything_is_marked_down(hostile, capsys):
    srv = hostile(_send(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"))
    c = _client(srv.url, retries=1, backoff=0.01)
    for n in range(6):
        assert c.fetch(f"f{n}.pdb", KEY).status == "error"
    assert c.down is not None and "503" in c.down
    assert c.requests_made == 6                      # 3 files x 2 tries, then no more
    assert capsys.readouterr().err.count("is down") == 1
