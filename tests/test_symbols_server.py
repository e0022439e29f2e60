"""The SymSrv HTTP client against a real HTTP server on loopback (started here, no internet)."""
from __future__ import annotations

import gzip
import http.server
import threading
import time

import pytest

from dumpkit.symbolize import NegativeCache, SymbolPath, SymbolServer, UnsafeNameError
from dumpkit.symbolize.names import image_key

from .test_symbols_support import driver_identity, make_cab


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict = {}
    log: list = []

    def do_GET(self):  # noqa: N802 - http.server API
        self.log.append(self.path)
        route = self.routes.get(self.path)
        if route is None:
            for prefix, r in self.routes.items():
                if prefix.endswith("*") and self.path.startswith(prefix[:-1]):
                    route = r
                    break
        if route is None:
            self.send_error(404)
            return
        status, body, headers, delay = route
        if callable(body):
            status, body = body()
        if delay:
            time.sleep(delay)
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def server():
    _Handler.routes = {}
    _Handler.log = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"

    def add(path, body, status=200, headers=None, delay=0.0):
        _Handler.routes[path] = (status, body, headers or {}, delay)

    yield base, add, _Handler.log
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def ids():
    return {n: driver_identity(n) for n in ("ndislike", "ntlike", "lwffilter")}


def _path(tmp_path, url, **kw):
    kw.setdefault("timeout", 2.0)
    kw.setdefault("retries", 0)
    kw.setdefault("backoff", 0.0)
    return SymbolPath(f"srv*{tmp_path / 'cache'}*{url}", offline=False, **kw)


def test_hit_miss_compressed_fileptr_then_cache_only(tmp_path, server, ids):
    base, add, log = server
    nd, nt, lwf = ids["ndislike"], ids["ntlike"], ids["lwffilter"]
    add(f"/sym/ndislike.pdb/{nd[3]}/ndislike.pdb", nd[1].read_bytes())                          # plain hit
    add(f"/sym/ntlike.pdb/{nt[3]}/ntlike.pd_", make_cab("ntlike.pdb", nt[1].read_bytes()))      # compressed
    add(f"/sym/lwffilter.pdb/{lwf[3]}/file.ptr", f"PATH:{base}/blobs/lwf.pdb".encode())          # redirect
    add("/blobs/lwf.pdb", lwf[1].read_bytes())
    key_sys = image_key(nd[5], nd[6])
    add(f"/sym/ndislike.sys/{key_sys}/ndislike.sys", nd[0].read_bytes())

    sp = _path(tmp_path, f"{base}/sym")
    got = sp.find_pdb("ndislike.pdb", nd[2], nd[4])
    assert got == str(tmp_path / "cache" / "ndislike.pdb" / nd[3] / "ndislike.pdb")
    # SymSrv order: file.ptr, then the file (a hit stops there)
    assert log == [f"/sym/ndislike.pdb/{nd[3]}/file.ptr", f"/sym/ndislike.pdb/{nd[3]}/ndislike.pdb"]

    log.clear()
    got = sp.find_pdb("ntlike.pdb", nt[2], nt[4])
    assert got and open(got, "rb").read() == nt[1].read_bytes()          # extracted, stored uncompressed
    assert log == [f"/sym/ntlike.pdb/{nt[3]}/file.ptr", f"/sym/ntlike.pdb/{nt[3]}/ntlike.pdb",
                   f"/sym/ntlike.pdb/{nt[3]}/ntlike.pd_"]

    got = sp.find_pdb("lwffilter.pdb", lwf[2], lwf[4])
    assert got and open(got, "rb").read() == lwf[1].read_bytes()
    assert sp.find_image("ndislike.sys", nd[5], nd[6])

    log.clear()
    assert sp.find_pdb("missing.pdb", nd[2], nd[4]) is None                # 404 for every form
    assert len(log) == 3
    assert sp.last_attempts[-1].result == "missing"
    assert sp.find_pdb("missing.pdb", nd[2], nd[4]) is None                # negative cache: no request
    assert len(log) == 3 and sp.last_attempts[-1].result == "cached-miss"

    # second run: the server is gone (unroutable URL), the downstream store answers everything
    sp2 = SymbolPath(f"srv*{tmp_path / 'cache'}*http://127.0.0.1:9/sym", offline=False, timeout=0.5, retries=0)
    for n in ("ndislike", "ntlike", "lwffilter"):
        i = ids[n]
        assert sp2.find_pdb(f"{n}.pdb", i[2], i[4])
    assert sp2.find_image("ndislike.sys", nd[5], nd[6])
    assert all(s.requests_made == 0 for s in sp2.servers)


def test_slow_server_timeout_is_honoured(tmp_path, server, ids, capsys):
    base, add, log = server
    nd = ids["ndislike"]
    add("/slow/*", b"late", delay=1.0)
    sp = _path(tmp_path, f"{base}/slow", timeout=0.2, retries=1, backoff=0.05)
    t0 = time.monotonic()
    assert sp.find_pdb("ndislike.pdb", nd[2], nd[4]) is None
    elapsed = time.monotonic() - t0
    assert elapsed < 1.5, elapsed                                             # one request, 0.2 s
    assert sp.last_attempts[-1].result == "error"
    assert "timed out" in sp.last_attempts[-1].detail
    # a timeout trips the circuit breaker: no retry, no other form, one line on stderr
    assert len(log) == 1
    err = capsys.readouterr().err
    assert err.count("is down") == 1 and err.endswith("not asking it again in this run\n")
    # the server is not asked again in this run, for this file or any other
    assert sp.find_pdb("ndislike.pdb", nd[2], nd[4]) is None
    nt = ids["ntlike"]
    assert sp.find_pdb("ntlike.pdb", nt[2], nt[4]) is None
    assert len(log) == 1 and "marked down" in sp.last_attempts[-1].detail
    assert capsys.readouterr().err == ""


def test_retry_with_backoff_recovers_from_5xx(tmp_path, server, ids):
    base, add, log = server
    nd = ids["ndislike"]
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        return (503, b"busy") if calls["n"] < 3 else (200, nd[1].read_bytes())

    add(f"/sym/ndislike.pdb/{nd[3]}/ndislike.pdb", flaky)
    sp = _path(tmp_path, f"{base}/sym", retries=3, backoff=0.01, order=("file",))
    assert sp.find_pdb("ndislike.pdb", nd[2], nd[4])
    assert calls["n"] == 3


def test_hostile_name_refused_before_any_request(tmp_path, server, ids):
    base, add, log = server
    nd = ids["ndislike"]
    add("/sym/*", nd[1].read_bytes())
    sp = _path(tmp_path, f"{base}/sym")
    for bad in ("..\\..\\x.pdb", "../../x.pdb", "C:\\x.pdb", "/x.pdb", "x%2f..%2fy.pdb", "a?b.pdb"):
        assert sp.find_pdb(bad, nd[2], nd[4]) is None
        assert sp.last_attempts[-1].result == "refused"
    assert log == []
    with pytest.raises(UnsafeNameError):
        SymbolServer(f"{base}/sym").fetch("..\\..\\x.pdb", nd[3])
    with pytest.raises(UnsafeNameError):
        SymbolServer(f"{base}/sym").fetch("x.pdb", "../../etc")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("x.pdb"))


def test_html_error_page_and_wrong_identity_rejected(tmp_path, server, ids):
    base, add, log = server
    nd, nt = ids["ndislike"], ids["ntlike"]
    add(f"/sym/ndislike.pdb/{nd[3]}/ndislike.pdb", b"<!DOCTYPE html><html>Not found</html>")
    add(f"/sym/ntlike.pdb/{nt[3]}/ntlike.pdb", nd[1].read_bytes())          # wrong PDB under the key
    sp = _path(tmp_path, f"{base}/sym")
    assert sp.find_pdb("ndislike.pdb", nd[2], nd[4]) is None
    assert "HTML" in sp.last_attempts[-1].detail
    assert sp.find_pdb("ntlike.pdb", nt[2], nt[4]) is None
    assert sp.last_attempts[-1].result == "mismatch"
    assert not (tmp_path / "cache" / "ntlike.pdb" / nt[3] / "ntlike.pdb").exists()   # removed again


def test_size_limit_and_gzip(tmp_path, server, ids):
    base, add, log = server
    nd = ids["ndislike"]
    add(f"/sym/ndislike.pdb/{nd[3]}/ndislike.pdb", nd[1].read_bytes())
    sp = _path(tmp_path, f"{base}/sym", max_bytes=1000)
    assert sp.find_pdb("ndislike.pdb", nd[2], nd[4]) is None
    assert "limit" in sp.last_attempts[-1].detail
    add(f"/gz/ndislike.pdb/{nd[3]}/ndislike.pdb", gzip.compress(nd[1].read_bytes()),
        headers={"Content-Encoding": "gzip"})
    sp = _path(tmp_path, f"{base}/gz")
    assert sp.find_pdb("ndislike.pdb", nd[2], nd[4])


def test_offline_makes_no_request(tmp_path, server, ids, monkeypatch):
    base, add, log = server
    nd = ids["ndislike"]
    add("/sym/*", nd[1].read_bytes())
    sp = SymbolPath(f"srv*{tmp_path / 'cache'}*{base}/sym", offline=True)
    assert sp.find_pdb("ndislike.pdb", nd[2], nd[4]) is None
    assert sp.last_attempts[-1].result == "offline"
    monkeypatch.setenv("DUMPKIT_OFFLINE", "1")
    sp = SymbolPath(f"srv*{tmp_path / 'cache'}*{base}/sym")                 # offline from the environment
    assert sp.find_pdb("ndislike.pdb", nd[2], nd[4]) is None
    assert log == []


def test_negative_cache_on_disk_with_expiry(tmp_path, server, ids):
    base, add, log = server
    nd = ids["ndislike"]
    neg = tmp_path / "neg.json"
    sp = _path(tmp_path, f"{base}/sym", negative_cache_file=str(neg))
    assert sp.find_pdb("ndislike.pdb", nd[2], nd[4]) is None
    assert neg.exists() and len(log) == 3
    sp2 = _path(tmp_path, f"{base}/sym", negative_cache_file=str(neg))
    assert sp2.find_pdb("ndislike.pdb", nd[2], nd[4]) is None
    assert sp2.last_attempts[-1].result == "cached-miss" and len(log) == 3
    short = NegativeCache(str(tmp_path / "neg2.json"), ttl=0.05)
    short.add(f"{base}/sym", "x.pdb", "AB1")
    assert (f"{base}/sym", "x.pdb", "AB1") in short
    time.sleep(0.1)
    assert (f"{base}/sym", "x.pdb", "AB1") not in short
