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
import threading
import time
import urllib.error
import urllib.parse
import zlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import SymbolServerError
from .cab import CAB_MAGIC, extract_single
from .msf import MSF7_MAGIC
from .names import check_key, check_name, compressed_name

USER_AGENT = "Microsoft-Symbol-Server/10.0.0.0 (dumpkit)"
DEFAULT_ORDER = ("file.ptr", "file", "compressed")
DEFAULT_MAX_BYTES = 1 << 30           # 1 GiB: larger than any real PDB of a driver or kernel
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

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
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
    """Retryable failure (timeout, 5xx, connection reset)."""


class _Missing(Exception):
    """Authoritative absence (404/410) or another 4xx."""


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
    """

    def __init__(self, url: str, *, timeout: float = 10.0, retries: int = 2, backoff: float = 0.5,
                 max_backoff: float = 8.0, max_bytes: int = DEFAULT_MAX_BYTES, max_time: float = 600.0,
                 offline: Optional[bool] = None, negative_cache: Optional[NegativeCache] = None,
                 order: Sequence[str] = DEFAULT_ORDER, user_agent: str = USER_AGENT) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme.lower() not in ("http", "https") or not parsed.netloc:
            raise SymbolServerError(f"not an http(s) symbol server URL: {url!r}")
        if any(o not in DEFAULT_ORDER for o in order):
            raise SymbolServerError(f"unknown request form in {order!r}", expected=str(DEFAULT_ORDER))
        self.url = url.rstrip("/")
        self.timeout = float(timeout)
        self.retries = max(0, min(int(retries), 10))
        self.backoff = max(0.0, float(backoff))
        self.max_backoff = max_backoff
        self.max_bytes = int(max_bytes)
        self.max_time = float(max_time)
        self._offline = offline
        self.negative = negative_cache if negative_cache is not None else NegativeCache()
        self.order = tuple(order)
        self.user_agent = user_agent
        self.requests_made = 0

    @property
    def offline(self) -> bool:
        return network_disabled() if self._offline is None else bool(self._offline)

    # ------------------------------------------------------------------ HTTP
    def _get(self, url: str, limit: int) -> bytes:
        """One GET with retries; returns the body or raises _Missing / SymbolServerError."""
        attempt = 0
        while True:
            try:
                return self._get_once(url, limit)
            except _Transient as exc:
                if attempt >= self.retries:
                    raise SymbolServerError(f"{url}: {exc} (after {attempt + 1} tries)") from None
                delay = min(self.max_backoff, self.backoff * (2 ** attempt))
                attempt += 1
                if delay:
                    time.sleep(delay)

    def _get_once(self, url: str, limit: int) -> bytes:
        import urllib.request                # here: it pulls in http.client, ssl and email (~35 ms)
        self.requests_made += 1
        req = urllib.request.Request(url, headers={"User-Agent": self.user_agent,
                                                   "Accept-Encoding": "gzip"})
        start = time.monotonic()
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            code = exc.code
            exc.close()
            if code in (404, 410):
                raise _Missing(f"HTTP {code}") from None
            if code >= 500 or code == 429:
                raise _Transient(f"HTTP {code}") from None
            raise _Missing(f"HTTP {code}") from None
        except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"{type(reason).__name__}: {reason}") from None
        try:
            length = resp.headers.get("Content-Length")
            if length and length.isdigit() and int(length) > limit:
                raise SymbolServerError(f"{url}: {int(length)} bytes exceeds the limit of {limit}")
            chunks = []
            got = 0
            while True:
                if time.monotonic() - start > self.max_time:
                    raise _Transient(f"download slower than the {self.max_time:.0f} s limit")
                try:
                    chunk = resp.read(1 << 16)
                except (socket.timeout, TimeoutError, ConnectionError, OSError) as exc:
                    raise _Transient(f"read failed: {exc}") from None
                if not chunk:
                    break
                got += len(chunk)
                if got > limit:
                    raise SymbolServerError(f"{url}: body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
            if (resp.headers.get("Content-Encoding") or "").lower() == "gzip":
                try:
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    body = d.decompress(body, limit + 1)
                except zlib.error as exc:
                    raise SymbolServerError(f"{url}: bad gzip body: {exc}") from None
                if len(body) > limit:
                    raise SymbolServerError(f"{url}: body exceeds the limit of {limit} bytes")
            return body
        finally:
            resp.close()

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
                except Exception as exc:      # SymbolError from the CAB reader
                    errors.append(f"{fname}: {exc}")
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
        else:
            result.detail = "HTTP 404 for every form"
            self.negative.add(self.url, name, key)
        return result

    def _follow_ptr(self, body: bytes, result: FetchResult) -> Tuple[Optional[bytes], str]:
        text = body.decode("utf-8", "replace").strip()
        if text.upper().startswith("MSG:"):
            return None, "MSG:" + text[4:].strip()
        if not text.upper().startswith("PATH:"):
            return None, f"file.ptr has unknown content {text[:60]!r}"
        target = text[5:].strip()
        parts = urllib.parse.urlsplit(target)
        if parts.scheme.lower() not in ("http", "https"):
            return None, f"file.ptr points to {target[:120]!r}, which is not reachable over HTTP from here"
        try:
            data = self._get(target, self.max_bytes)
        except (_Missing, SymbolServerError) as exc:
            result.requests.append(f"GET {target} (file.ptr) -> {exc}")
            return None, f"file.ptr target {target[:120]!r}: {exc}"
        result.requests.append(f"GET {target} (file.ptr) -> {len(data)} bytes")
        if data.startswith(CAB_MAGIC):
            try:
                data = extract_single(data, self.max_bytes, path=target)
            except Exception as exc:
                return None, f"file.ptr target {target[:120]!r}: {exc}"
        return data, "file.ptr"

    def __repr__(self) -> str:
        mode = "offline" if self.offline else f"timeout={self.timeout}s retries={self.retries}"
        return f"<SymbolServer {self.url} {mode}>"
