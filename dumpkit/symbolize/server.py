"""HTTP(S) symbol-server client (urllib only).

One :class:`SymbolServer` talks to one upstream URL the way SymSrv does:
for a file ``name`` with store key ``key`` it asks for ``<url>/<name>/<key>/file.ptr``,
then ``<url>/<name>/<key>/<name>``, then the compressed ``<url>/<name>/<key>/<nam_>``
(the order is configurable).  A 404 answers that form; only when every form is
missing is the key a miss, and misses are remembered in a :class:`NegativeCache`
(in memory, optionally in a JSON file with an expiry) so a support session does
not ask again.  Downloads are bounded in size and in time, retried with a
bounded exponential backoff on transient failures (timeouts, 5xx, connection
errors), validated (MSF magic for PDBs, MZ for images, MSCF for cabinets; an
HTML "not found" page is not a PDB), and written atomically into the
downstream store by the caller-supplied destination.

Offline is the normal case: ``offline=True`` or the ``DUMPKIT_OFFLINE``
environment variable make every fetch return at once without any socket.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import urllib.parse
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import SymbolError, SymbolServerError

if TYPE_CHECKING:                   # http.client is imported only when a request is made (start-up cost)
    import http.client
from .cab import CAB_MAGIC, extract_single
from .msf import MSF7_MAGIC
from .names import check_key, check_name, compressed_name

USER_AGENT = "Microsoft-Symbol-Server/10.0.0.0 (dumpkit)"
DEFAULT_ORDER = ("file.ptr", "file", "compressed")
DEFAULT_MAX_BYTES = 1 << 30           # 1 GiB: larger than any real PDB of a driver or kernel
DEFAULT_TIMEOUT = 10.0     #: seconds a socket operation may wait (connect, each read)
MAX_PTR_BYTES = 4096


def network_disabled() -> bool:
    """True when the environment says not to use the network (``DUMPKIT_OFFLINE=1``)."""
    return os.environ.get("DUMPKIT_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


class NegativeCache:
    """Remembered misses: ``(server, name, key)`` -> expiry time.

    ``path`` (optional) is a JSON file shared between runs; entries older than
    ``ttl`` seconds are ignored and dropped on the next save.
    """

    def __init__(self, path: Optional[str] = None, ttl: float = 24 * 3600.0) -> None:
        self.path = path
        self.ttl = ttl
        self._lock = threading.Lock()
        self._entries: Dict[str, float] = {}
        self._failures: Dict[str, Tuple[float, str]] = {}     # failed fetches: expiry, why (memory only)
        if path and os.path.isfile(path):
            try:
                with open(path, "r", encoding="utf-8") as f:
                    raw = json.load(f)
                now = time.time()
                if isinstance(raw, dict):
                    self._entries = {str(k): float(v) for k, v in raw.items()
                                     if isinstance(v, (int, float)) and v > now}
            except (OSError, ValueError):
                self._entries = {}

    @staticmethod
    def _k(server: str, name: str, key: str) -> str:
        return f"{server.rstrip('/').lower()}|{name.lower()}|{key.upper()}"

    def __contains__(self, item: Tuple[str, str, str]) -> bool:
        k = self._k(*item)
        with self._lock:
            exp = self._entries.get(k)
            if exp is None:
                return False
            if exp < time.time():
                del self._entries[k]
                return False
            return True

    def add(self, server: str, name: str, key: str) -> None:
        with self._lock:
            self._entries[self._k(server, name, key)] = time.time() + self.ttl
        self.save()

    def add_failure(self, server: str, name: str, key: str, why: str, ttl: float) -> None:
        """Remember a failed fetch (not a miss) for ``ttl`` seconds, in memory only."""
        if ttl > 0:
            with self._lock:
                self._failures[self._k(server, name, key)] = (time.time() + ttl, why)

    def failure(self, item: Tuple[str, str, str]) -> Optional[str]:
        """Why ``(server, name, key)`` failed recently, or None."""
        k = self._k(*item)
        with self._lock:
            got = self._failures.get(k)
            if got is None:
                return None
            if got[0] < time.time():
                del self._failures[k]
                return None
            return got[1]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._failures.clear()
        self.save()

    def save(self) -> None:
        if not self.path:
            return
        now = time.time()
        with self._lock:
            data = {k: v for k, v in self._entries.items() if v > now}
        try:
            os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
            import tempfile
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(self.path)), suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, self.path)
        except OSError:
            pass

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"<NegativeCache {len(self)} misses{' ' + self.path if self.path else ''}>"


@dataclass
class FetchResult:
    """What :meth:`SymbolServer.fetch` did: the data (or None) and every request it made."""

    data: Optional[bytes]
    status: str                          # 'found', 'missing', 'cached-miss', 'offline', 'error', 'message'
    detail: str = ""
    requests: List[str] = field(default_factory=list)   # "GET url -> outcome"
    form: Optional[str] = None           # which form delivered: 'file', 'compressed', 'file.ptr'


class _Transient(Exception):
    """Retryable failure (5xx, 429, connection reset while reading)."""


class _Missing(Exception):
    """Authoritative absence (404/410) or another 4xx."""


class _Down(Exception):
    """The server cannot be reached (connect failure, TLS failure) or did not answer in time."""


class RunBudget:
    """Wall-clock seconds of network time one run may spend, shared by all of its servers.

    The clock starts at the first request; once ``seconds`` have passed no server is
    asked again (each fetch then answers 'error' at once).  ``None``: no limit.
    """

    def __init__(self, seconds: Optional[float] = 300.0) -> None:
        self.seconds = None if seconds is None else max(0.0, float(seconds))
        self._start: Optional[float] = None

    def start(self) -> None:
        if self._start is None:
            self._start = time.monotonic()

    def deadline(self) -> float:
        """The monotonic time the budget runs out (``inf`` without a limit)."""
        if self.seconds is None:
            return float("inf")
        self.start()
        return (self._start or 0.0) + self.seconds

    @property
    def spent(self) -> bool:
        return self.seconds is not None and self._start is not None and time.monotonic() >= self.deadline()

    def __repr__(self) -> str:
        return f"<RunBudget {self.seconds} s>"


def _clean(text: object, limit: int = 120) -> str:
    """Server-supplied text made safe for a terminal: printable ASCII only, cut to ``limit``."""
    s = str(text)
    out = "".join(c if " " <= c <= "~" else "?" for c in s[:limit])
    return out + ("..." if len(s) > limit else "")


def _printable_ascii(s: str) -> bool:
    return all(" " < c <= "~" for c in s)


def _content_length(raw: Optional[str], url: str, limit: int) -> Optional[int]:
    """The Content-Length header checked: ASCII digits only, at most 18 of them, within ``limit``."""
    if raw is None:
        return None
    v = raw.strip()
    if not v or len(v) > 18 or not v.isascii() or not v.isdigit():
        raise SymbolServerError("the server sent an invalid Content-Length header", path=url)
    n = int(v)
    if n > limit:
        raise SymbolServerError(f"the server announces {n} bytes, over the limit of {limit}", path=url)
    return n


class _Watchdog:
    """Enforces a wall-clock deadline on one HTTP exchange (connect, headers and body).

    A timer thread shuts the socket down when the deadline passes, which wakes any
    blocked ``recv``; the timer is cancelled when the exchange ends (no thread outlives it).
    """

    def __init__(self, conn: http.client.HTTPConnection, seconds: float) -> None:
        self.conn = conn
        self.fired = False
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def __enter__(self) -> "_Watchdog":
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._timer.join(1.0)


_REDIRECTS = (301, 302, 303, 307, 308)
MAX_TRANSIENT_IN_A_ROW = 3     #: requests failing with 5xx/resets even after retries, then the server is down
MAX_REDIRECTS = 5


def _validator(kind: str) -> Callable[[bytes], Optional[str]]:
    def check(data: bytes) -> Optional[str]:
        if kind == "pdb" and not data.startswith(MSF7_MAGIC):
            head = data[:64].lstrip().lower()
            if head.startswith((b"<!doctype", b"<html")):
                return "server returned an HTML page, not a PDB"
            return "payload is not an MSF 7.00 PDB"
        if kind == "image" and not data.startswith(b"MZ"):
            return "payload is not a PE image (no MZ)"
        return None
    return check


class SymbolServer:
    """A SymSrv-compatible HTTP/HTTPS symbol server.

    ``fetch(name, key, kind)`` returns a :class:`FetchResult`; ``kind`` is
    ``'pdb'`` or ``'image'`` and selects the payload check.  Nothing is written
    to disk here: the symbol path stores the bytes in its downstream store.

    Bounds: ``timeout`` per socket operation, ``max_time`` seconds of wall clock per
    download (enforced while headers and body arrive, so a server that drips a byte a
    second is cut off), ``budget`` (a :class:`RunBudget`, shared by a symbol path's
    servers) for the whole run, ``max_bytes`` per file.  The first connect failure
    or timeout marks the server down for the rest of the run (one line on stderr
    unless ``quiet``); failures are remembered for ``failure_ttl`` seconds so the
    same file is not asked for again.  Every failure is a :class:`SymbolServerError`
    (or an 'error' result) naming the URL; nothing the server sent is echoed except
    as printable ASCII.
    """

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT, retries: int = 2, backoff: float = 0.5,
                 max_backoff: float = 8.0, max_bytes: int = DEFAULT_MAX_BYTES, max_time: float = 120.0,
                 offline: Optional[bool] = None, negative_cache: Optional[NegativeCache] = None,
                 order: Sequence[str] = DEFAULT_ORDER, user_agent: str = USER_AGENT,
                 budget: Optional[RunBudget] = None, failure_ttl: float = 300.0, quiet: bool = False) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme.lower() not in ("http", "https") or not parsed.netloc:
            raise SymbolServerError(f"not an http(s) symbol server URL: {_clean(url)!r}")
        if any(o not in DEFAULT_ORDER for o in order):
            raise SymbolServerError(f"unknown request form in {order!r}", expected=str(DEFAULT_ORDER))
        self.url = url.rstrip("/")
        self.timeout = max(0.001, float(timeout))
        self.retries = max(0, min(int(retries), 10))
        self.backoff = max(0.0, float(backoff))
        self.max_backoff = max_backoff
        self.max_bytes = int(max_bytes)
        self.max_time = max(0.001, float(max_time))
        self._offline = offline
        self.negative = negative_cache if negative_cache is not None else NegativeCache()
        self.order = tuple(order)
        self.user_agent = user_agent
        self.budget = budget if budget is not None else RunBudget(None)
        self.failure_ttl = float(failure_ttl)
        self.quiet = quiet
        self.requests_made = 0
        self.down: Optional[str] = None          #: why the server was marked down in this run
        self._failed_in_a_row = 0                #: requests that still failed (5xx, resets) after retries
        self._raw_got = 0                        #: bytes of the last body as sent (before gzip)

    @property
    def offline(self) -> bool:
        return network_disabled() if self._offline is None else bool(self._offline)

    def mark_down(self, reason: str) -> None:
        """Stop asking this server in this run (the circuit breaker); says so once on stderr."""
        if self.down is None:
            self.down = reason
            if not self.quiet:
                try:
                    sys.stderr.write(f"dumpkit: symbol server {_clean(self.url, 200)} is down ({reason}); "
                                     "not asking it again in this run\n")
                except (OSError, ValueError):
                    pass

    # ------------------------------------------------------------------ HTTP
    def _get(self, url: str, limit: int) -> bytes:
        """One GET with retries; returns the body or raises _Missing / SymbolServerError."""
        attempt = 0
        while True:
            if self.down is not None:
                raise SymbolServerError(f"server marked down earlier in this run ({self.down})", path=url)
            if self.budget.spent:
                raise SymbolServerError(f"the network budget of {self.budget.seconds:g} s for this run is spent",
                                        path=url)
            try:
                body = self._get_once(url, limit)
                self._failed_in_a_row = 0
                return body
            except _Down as exc:
                if self.budget.spent:         # the run's budget ran out, not the server: nothing is asked again anyway
                    raise SymbolServerError(f"the network budget of {self.budget.seconds:g} s for this run ran out "
                                            f"({exc})", path=url) from None
                self.mark_down(str(exc))
                raise SymbolServerError(str(exc), path=url) from None
            except _Transient as exc:
                if attempt >= self.retries:
                    self._failed_in_a_row += 1
                    if self._failed_in_a_row >= MAX_TRANSIENT_IN_A_ROW:
                        self.mark_down(f"{exc} for {self._failed_in_a_row} requests in a row")
                    raise SymbolServerError(f"{exc} (after {attempt + 1} tries)", path=url) from None
                delay = min(self.max_backoff, self.backoff * (2 ** attempt))
                attempt += 1
                remaining = self.budget.deadline() - time.monotonic()
                if delay and remaining > delay:
                    time.sleep(delay)

    def _get_once(self, url: str, limit: int) -> bytes:
        deadline = min(time.monotonic() + self.max_time, self.budget.deadline())
        for _hop in range(MAX_REDIRECTS + 1):
            status, location, body = self._exchange(url, limit, deadline)
            if status in _REDIRECTS:
                if not location:
                    raise SymbolServerError(f"HTTP {status} without a Location header", path=url)
                if not _printable_ascii(location) or len(location) > 4096:
                    raise SymbolServerError("redirected to an invalid URL", path=url)
                nxt = urllib.parse.urljoin(url, location)
                if urllib.parse.urlsplit(nxt).scheme.lower() not in ("http", "https"):
                    raise SymbolServerError("redirected to a non-HTTP location", path=url)
                url = nxt
                continue
            return body
        raise SymbolServerError(f"more than {MAX_REDIRECTS} redirects", path=url)

    def _exchange(self, url: str, limit: int, deadline: float) -> Tuple[int, Optional[str], bytes]:
        """One request/response; (status, redirect location, body).  Maps every failure."""
        import http.client                   # here, not at import: it pulls in ssl and email (~35 ms)
        import ssl
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise SymbolServerError("malformed URL (bad port)", path=_clean(url)) from None
        if not host or scheme not in ("http", "https"):
            raise SymbolServerError("malformed URL", path=_clean(url))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _Down(f"no time left (download limit {self.max_time:.0f} s or run budget)")
        self.requests_made += 1
        self.budget.start()
        sock_timeout = min(self.timeout, remaining)
        conn: http.client.HTTPConnection
        if scheme == "https":
            conn = http.client.HTTPSConnection(host, port, timeout=sock_timeout, context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(host, port, timeout=sock_timeout)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        with _Watchdog(conn, remaining) as dog:
            try:
                try:
                    conn.connect()
                except (socket.timeout, TimeoutError):
                    raise _Down(f"connect timed out after {sock_timeout:.1f} s") from None
                except ssl.SSLError as exc:
                    raise _Down(f"TLS failure: {type(exc).__name__}") from None
                except OSError as exc:
                    if dog.fired:
                        raise _Down(f"no connection within {remaining:.1f} s") from None
                    raise _Down(f"cannot connect: {type(exc).__name__}"
                                f"{': ' + _clean(exc.strerror, 80) if exc.strerror else ''}") from None
                conn.putrequest("GET", target, skip_accept_encoding=True)
                conn.putheader("User-Agent", self.user_agent)
                conn.putheader("Accept-Encoding", "gzip")
                conn.endheaders()
                resp = conn.getresponse()
                status = resp.status
                if status in _REDIRECTS:
                    location = resp.getheader("Location")
                    resp.close()
                    return status, location, b""
                if not 100 <= status <= 599:
                    raise SymbolServerError(f"not a valid HTTP status ({status})", path=url)
                if status in (404, 410):
                    raise _Missing(f"HTTP {status}")
                if status >= 500 or status == 429:
                    raise _Transient(f"HTTP {status}")
                if status >= 400:
                    raise _Missing(f"HTTP {status}")
                if not 200 <= status < 300:
                    raise SymbolServerError(f"unexpected HTTP status {status}", path=url)
                declared = _content_length(resp.getheader("Content-Length"), url, limit)
                body = self._read_body(resp, conn, url, limit, deadline, dog)
                if dog.fired:
                    raise _Down(f"download did not finish within {remaining:.1f} s")
                if declared is not None and not resp.chunked and self._raw_got < declared:
                    raise SymbolServerError(f"the body ends after {self._raw_got} of the {declared} bytes announced",
                                            path=url)
            except (_Missing, _Transient, _Down, SymbolServerError):
                raise
            except (socket.timeout, TimeoutError):
                if dog.fired or time.monotonic() >= deadline - 0.05:
                    raise _Down(f"download did not finish within {remaining:.1f} s (timed out)") from None
                raise _Down(f"no answer within {sock_timeout:.1f} s (timed out)") from None
            except http.client.HTTPException as exc:
                if dog.fired:
                    raise _Down(f"download did not finish within {remaining:.1f} s") from None
                raise SymbolServerError(f"the server's reply is not valid HTTP ({type(exc).__name__})",
                                        path=url) from None
            except ssl.SSLError as exc:
                raise _Down(f"TLS failure: {type(exc).__name__}") from None
            except OSError as exc:
                if dog.fired:
                    raise _Down(f"download did not finish within {remaining:.1f} s") from None
                raise _Transient(f"connection failed: {type(exc).__name__}") from None
            except (ValueError, LookupError, UnicodeError) as exc:     # a header the client cannot digest
                raise SymbolServerError(f"the server's reply cannot be read ({type(exc).__name__})",
                                        path=url) from None
            finally:
                conn.close()
        return status, None, body

    def _read_body(self, resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, url: str, limit: int,
                   deadline: float, dog: _Watchdog) -> bytes:
        chunks = []
        got = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or dog.fired:
                raise _Down(f"download slower than the {self.max_time:.0f} s limit")
            if conn.sock is not None:
                conn.sock.settimeout(min(self.timeout, left))
            chunk = resp.read1(1 << 16)
            if not chunk:
                break
            got += len(chunk)
            if got > limit:
                raise SymbolServerError(f"body exceeds the limit of {limit} bytes", path=url)
            chunks.append(chunk)
        self._raw_got = got
        body = b"".join(chunks)
        if (resp.getheader("Content-Encoding") or "").strip().lower() == "gzip":
            try:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                body = d.decompress(body, limit + 1)
            except zlib.error:
                raise SymbolServerError("bad gzip body", path=url) from None
            if len(body) > limit:
                raise SymbolServerError(f"body exceeds the limit of {limit} bytes", path=url)
        return body

    # ------------------------------------------------------------------ SymSrv protocol
    def url_for(self, name: str, key: str, filename: str) -> str:
        q = urllib.parse.quote
        return f"{self.url}/{q(name)}/{q(key)}/{q(filename)}"

    def fetch(self, name: str, key: str, kind: str = "pdb") -> FetchResult:
        """Ask the server for ``name`` under ``key`` in SymSrv order; never raises for a miss."""
        name = check_name(name)
        key = check_key(key)
        if self.offline:
            return FetchResult(None, "offline", "network disabled (offline mode)")
        if (self.url, name, key) in self.negative:
            return FetchResult(None, "cached-miss", "recently not found on this server (negative cache)")
        if self.down is not None:
            return FetchResult(None, "error", f"server marked down earlier in this run ({self.down})")
        failed = self.negative.failure((self.url, name, key))
        if failed is not None:
            return FetchResult(None, "error", f"failed recently, not asked again: {failed}")
        if self.budget.spent:
            return FetchResult(None, "error", f"the network budget of {self.budget.seconds:g} s for this run is spent")
        result = FetchResult(None, "missing")
        validate = _validator(kind)
        errors = []
        for form in self.order:
            fname = {"file": name, "compressed": compressed_name(name), "file.ptr": "file.ptr"}[form]
            url = self.url_for(name, key, fname)
            limit = MAX_PTR_BYTES if form == "file.ptr" else self.max_bytes
            try:
                body = self._get(url, limit)
            except _Missing as exc:
                result.requests.append(f"GET {url} -> {exc}")
                continue
            except SymbolServerError as exc:
                result.requests.append(f"GET {url} -> error: {exc.message}")
                errors.append(exc.message)
                if self.down is not None or self.budget.spent:
                    break                     # the other forms would fail the same way
                continue
            result.requests.append(f"GET {url} -> {len(body)} bytes")
            if form == "file.ptr":
                data, detail = self._follow_ptr(body, result)
                if data is None:
                    if detail.startswith("MSG:"):
                        result.status, result.detail = "message", detail
                        return result
                    errors.append(detail)
                    continue
            elif form == "compressed":
                if not body.startswith(CAB_MAGIC):
                    errors.append(f"{fname}: payload is not a cabinet")
                    continue
                try:
                    data = extract_single(body, self.max_bytes, path=url)
                except SymbolError as exc:    # the CAB reader's own errors
                    errors.append(f"{fname}: {exc.message}")
                    continue
            else:
                data = body
            problem = validate(data)
            if problem:
                errors.append(f"{fname}: {problem}")
                continue
            result.data, result.status, result.form = data, "found", form
            result.detail = f"downloaded {len(data)} bytes ({form})"
            return result
        if errors:
            result.status, result.detail = "error", "; ".join(errors)
            self.negative.add_failure(self.url, name, key, result.detail[:300], self.failure_ttl)
        else:
            result.detail = "HTTP 404 for every form"
            self.negative.add(self.url, name, key)
        return result

    def _follow_ptr(self, body: bytes, result: FetchResult) -> Tuple[Optional[bytes], str]:
        text = body.decode("utf-8", "replace").strip()
        if text.upper().startswith("MSG:"):
            return None, "MSG:" + _clean(text[4:].strip(), 200)
        if not text.upper().startswith("PATH:"):
            return None, f"file.ptr has unknown content {_clean(text, 60)!r}"
        target = text[5:].strip()
        shown = _clean(target, 120)
        if not _printable_ascii(target) or len(target) > 4096:
            return None, "file.ptr points to an invalid location (control characters, or too long)"
        parts = urllib.parse.urlsplit(target)
        if parts.scheme.lower() not in ("http", "https"):
            return None, f"file.ptr points to {shown!r}, which is not reachable over HTTP from here"
        try:
            data = self._get(target, self.max_bytes)
        except _Missing as exc:
            result.requests.append(f"GET {shown} (file.ptr) -> {exc}")
            return None, f"file.ptr target {shown!r}: {exc}"
        except SymbolServerError as exc:
            result.requests.append(f"GET {shown} (file.ptr) -> error: {exc.message}")
            return None, f"file.ptr target {shown!r}: {exc.message}"
        result.requests.append(f"GET {shown} (file.ptr) -> {len(data)} bytes")
        if data.startswith(CAB_MAGIC):
            try:
                data = extract_single(data, self.max_bytes, path=shown)
            except SymbolError as exc:
                return None, f"file.ptr target {shown!r}: {exc.message}"
        return data, "file.ptr"

    def __repr__(self) -> str:
        mode = "offline" if self.offline else f"timeout={self.timeout}s retries={self.retries}"
        return f"<SymbolServer {self.url} {mode}>"
