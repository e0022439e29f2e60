"""Symbol paths (``_NT_SYMBOL_PATH`` syntax) and local symbol stores.

A :class:`SymbolPath` is parsed from the text WinDbg users already have::

    srv*C:\\symbols*https://msdl.microsoft.com/download/symbols
    cache*/var/cache/sym;srv*https://symbols.example.com;/home/me/build
    symsrv*symsrv.dll*/mnt/store*https://server

Entries are separated by ``;`` and searched left to right:

* ``srv*A*B*...*U`` / ``symsrv*symsrv.dll*A*...*U``: a chain of stores from
  downstream (``A``, a cache) to upstream (``U``, a local store or an HTTP(S)
  server).  A file found upstream is stored uncompressed into every local store
  to its left.  ``srv*U`` has no cache; ``srv**U`` uses the default cache.
* ``cache*DIR``: every entry to its right is cached in ``DIR`` (empty: default).
* anything else: a plain folder, searched flat (``DIR/name``, ``DIR/ext/name``,
  ``DIR/symbols/ext/name``) and, when it has the layout, as a store.

Stores use ``name/KEY/name`` or, when ``index2.txt`` exists at the root, the two-tier
``na/name/KEY/name``; ``file.ptr`` redirects and ``.pd_``/``.sy_`` cabinets are
followed.  Keys are written upper case and matched case-insensitively (Linux
file systems are case-sensitive, Windows-made stores are not).

Every file found is checked against the identity asked for (PDB GUID and age,
image TimeDateStamp and SizeOfImage) before it is returned: never by name alone.
Every step is recorded as an :class:`Attempt` for the ``symbols`` report.
"""
from __future__ import annotations

import os
import struct
import uuid
import weakref
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import DumpError, SymbolError
from .cab import CAB_MAGIC, extract_single
from .names import (UnsafeNameError, as_guid, check_key, check_name, compressed_name, image_key,
                    pdb_key)
from .pdb import Pdb
from .server import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT, NegativeCache, RunBudget, SymbolServer, network_disabled

PDB, IMAGE = "pdb", "image"


#: callables told about each symbol-server request: ``fn(event, url, name, status)`` with event
#: 'start' (status "") or 'end' (status as in :class:`FetchResult`); the CLI draws its progress line with it
FETCH_LISTENERS: List[Callable[[str, str, str, str], None]] = []


def _notify(event: str, url: str, name: str, status: str) -> None:
    for fn in list(FETCH_LISTENERS):
        try:
            fn(event, url, name, status)
        except Exception:  # noqa: BLE001 - a progress display must never break a symbol search
            pass


@dataclass
class Attempt:
    """One step of a symbol search: what was tried where, and how it ended."""

    kind: str                 # 'pdb' or 'image'
    name: str
    key: str
    where: str                # folder, store root or server URL
    result: str               # found, missing, mismatch, refused, error, offline, cached-miss, message, cached
    detail: str = ""
    path: Optional[str] = None

    def to_json(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    def __str__(self) -> str:
        s = f"{self.kind} {self.name} [{self.key}] @ {self.where}: {self.result}"
        return s + (f" ({self.detail})" if self.detail else "")


def default_cache_dir() -> str:
    """``$DUMPKIT_SYMBOL_CACHE``, else ``$XDG_CACHE_HOME/dumpkit/symbols`` (``~/.cache/...``)."""
    env = os.environ.get("DUMPKIT_SYMBOL_CACHE")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dumpkit", "symbols")


# ---------------------------------------------------------------------- identity checks
_PE_SIG = struct.Struct("<I")


def image_identity(path: str) -> Tuple[int, int]:
    """``(TimeDateStamp, SizeOfImage)`` from a PE file's headers (raises SymbolError)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise SymbolError(f"cannot read image: {exc.strerror or exc}", path=path) from None
    if len(head) < 0x40 or head[:2] != b"MZ":
        raise SymbolError("not a PE image", path=path, offset=0, expected="'MZ'")
    lfa = _PE_SIG.unpack_from(head, 0x3C)[0]
    if lfa + 24 + 60 > len(head) or head[lfa:lfa + 4] != b"PE\x00\x00":
        raise SymbolError("no PE header", path=path, offset=lfa, expected="'PE\\0\\0'")
    ts = _PE_SIG.unpack_from(head, lfa + 8)[0]
    size = _PE_SIG.unpack_from(head, lfa + 24 + 56)[0]      # SizeOfImage, same offset in PE32/PE32+
    return ts, size


def check_pdb_file(path: str, guid: uuid.UUID, age: int) -> Optional[str]:
    """None if the PDB at ``path`` has this GUID and age, else why not."""
    try:
        with Pdb.open(path) as pdb:
            if pdb.guid != guid:
                return f"GUID {pdb.guid} != {guid}"
            if pdb.age != age:
                return f"age {pdb.age} != {age}"
    except DumpError as exc:
        return f"unreadable PDB: {exc.message}"
    return None


def check_image_file(path: str, timestamp: int, size: int) -> Optional[str]:
    try:
        ts, sz = image_identity(path)
    except DumpError as exc:
        return exc.message
    if (ts, sz) != (timestamp, size):
        return f"TimeDateStamp/SizeOfImage {ts:08X}/{sz:x} != {timestamp:08X}/{size:x}"
    return None


# ---------------------------------------------------------------------- local store
def _ci_child(parent: str, name: str) -> Optional[str]:
    """``parent/name`` matching ``name`` exactly, else case-insensitively, else None."""
    exact = os.path.join(parent, name)
    if os.path.lexists(exact):
        return exact
    try:
        low = name.lower()
        for entry in os.listdir(parent):
            if entry.lower() == low:
                return os.path.join(parent, entry)
    except OSError:
        pass
    return None


class LocalStore:
    """A symbol store (or cache) in a folder: one-tier or two-tier (``index2.txt``)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.expanduser(root))

    @property
    def two_tier(self) -> bool:
        return os.path.isfile(os.path.join(self.root, "index2.txt"))

    def _key_dirs(self, name: str, key: str) -> List[str]:
        """Existing ``<name>/<key>`` folders, in the store's own tier first."""
        out = []
        tiers = [True, False] if self.two_tier else [False, True]
        for two in tiers:
            base = self.root
            if two:
                b = _ci_child(base, name[:2])
                if not b:
                    continue
                base = b
            nd = _ci_child(base, name)
            if not nd:
                continue
            kd = _ci_child(nd, key)
            if kd and os.path.isdir(kd) and kd not in out:
                out.append(kd)
        return out

    def key_dir_for_write(self, name: str, key: str) -> str:
        base = os.path.join(self.root, name[:2]) if self.two_tier else self.root
        return os.path.join(base, name, key.upper())

    def candidates(self, name: str, key: str) -> Iterable[Tuple[str, str]]:
        """``(form, path)`` for each existing form: 'file', 'compressed', 'file.ptr'."""
        for kd in self._key_dirs(name, key):
            for form, fname in (("file", name), ("compressed", compressed_name(name)), ("file.ptr", "file.ptr")):
                p = _ci_child(kd, fname)
                if p and os.path.isfile(p):
                    yield form, p

    def put(self, name: str, key: str, data: bytes) -> str:
        """Store ``data`` as ``name`` under ``key`` atomically; returns the path."""
        kd = self.key_dir_for_write(name, key)
        os.makedirs(kd, exist_ok=True)
        target = os.path.join(kd, name)
        import tempfile                      # here: tempfile and shutil cost ~10 ms at start-up
        fd, tmp = tempfile.mkstemp(dir=kd, prefix=".dl-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return target

    def __repr__(self) -> str:
        return f"<LocalStore {self.root}{' two-tier' if self.two_tier else ''}>"


# ---------------------------------------------------------------------- path entries
Verify = Callable[[str], Optional[str]]


@dataclass
class _Request:
    kind: str
    name: str
    key: str
    verify: Verify
    attempts: List[Attempt]

    def log(self, where: str, result: str, detail: str = "", path: Optional[str] = None) -> None:
        self.attempts.append(Attempt(self.kind, self.name, self.key, where, result, detail, path))


class _Scratch:
    """A private temporary folder for files that have no cache to go to (removed with the path)."""

    def __init__(self) -> None:
        self._dir: Optional[str] = None
        self._fin: Optional[weakref.finalize] = None

    def store(self) -> LocalStore:
        if self._dir is None:
            import shutil
            import tempfile
            self._dir = tempfile.mkdtemp(prefix="dumpkit-sym-")
            self._fin = weakref.finalize(self, shutil.rmtree, self._dir, True)
        return LocalStore(self._dir)


class FolderEntry:
    """A plain folder of symbol files (flat, ``ext/`` and ``symbols/ext/`` subfolders, or store layout)."""

    def __init__(self, path: str, cache: Optional[LocalStore] = None) -> None:
        self.path = os.path.abspath(os.path.expanduser(path))
        self.cache = cache

    def describe(self) -> str:
        return self.path

    def find(self, req: _Request, scratch: _Scratch) -> Optional[str]:
        if not os.path.isdir(self.path):
            req.log(self.path, "missing", "folder does not exist")
            return None
        ext = req.name.rsplit(".", 1)[-1] if "." in req.name else ""
        flat = [self.path, os.path.join(self.path, ext), os.path.join(self.path, "symbols", ext)]
        mismatched = False
        for folder in flat:
            p = _ci_child(folder, req.name) if os.path.isdir(folder) else None
            if p and os.path.isfile(p):
                why = req.verify(p)
                if why is None:
                    req.log(folder, "found", "flat folder", p)
                    return _cache_copy(p, req, self.cache)
                req.log(folder, "mismatch", why, p)
                mismatched = True
        # a plain folder that happens to be a store (pingme.txt, or just the layout)
        found = _search_local_store(LocalStore(self.path), req, self.cache or None, scratch, quiet=True)
        if found:
            return found
        if not mismatched:
            req.log(self.path, "missing", "not in the folder (flat or store layout)")
        return None


class ChainEntry:
    """``srv*cache*...*upstream``: local stores and at most one HTTP server, downstream first."""

    def __init__(self, stores: Sequence[Union[LocalStore, SymbolServer]]) -> None:
        self.stores = list(stores)

    def describe(self) -> str:
        return "srv*" + "*".join(s.root if isinstance(s, LocalStore) else s.url for s in self.stores)

    def find(self, req: _Request, scratch: _Scratch) -> Optional[str]:
        for i, st in enumerate(self.stores):
            downstream = [s for s in self.stores[:i] if isinstance(s, LocalStore)]
            if isinstance(st, LocalStore):
                dest = downstream[0] if downstream else None
                found = _search_local_store(st, req, dest, scratch)
                if found:
                    return _propagate(found, req, downstream[1:] if dest else [])
                continue
            # a server
            _notify("start", st.url, req.name, "")
            try:
                res = st.fetch(req.name, req.key, req.kind)
            except SymbolError as exc:
                req.log(st.url, "error", exc.message)
                _notify("end", st.url, req.name, "error")
                continue
            _notify("end", st.url, req.name, res.status)
            for line in res.requests:
                req.attempts.append(Attempt(req.kind, req.name, req.key, st.url, "request", line))
            if res.data is None:
                req.log(st.url, res.status, res.detail)
                continue
            target = downstream[0] if downstream else scratch.store()
            try:
                path = target.put(req.name, req.key, res.data)
            except OSError as exc:
                req.log(st.url, "error", f"cannot write to {target.root}: {exc}")
                continue
            why = req.verify(path)
            if why is not None:
                req.log(st.url, "mismatch", f"downloaded file does not match: {why}", path)
                try:
                    os.unlink(path)
                except OSError:
                    pass
                continue
            req.log(st.url, "found", res.detail + f", stored in {target.root}", path)
            return _propagate(path, req, downstream[1:])
        return None


def _propagate(path: str, req: _Request, stores: Sequence[LocalStore]) -> str:
    for st in stores:
        try:
            with open(path, "rb") as f:
                st.put(req.name, req.key, f.read())
        except OSError as exc:
            req.log(st.root, "error", f"cannot copy into cache: {exc}")
    return path


def _cache_copy(path: str, req: _Request, cache: Optional[LocalStore]) -> str:
    if cache is None:
        return path
    try:
        with open(path, "rb") as f:
            out = cache.put(req.name, req.key, f.read())
        req.log(cache.root, "cached", "copied into cache", out)
        return out
    except OSError as exc:
        req.log(cache.root, "error", f"cannot copy into cache: {exc}")
        return path


def _search_local_store(store: LocalStore, req: _Request, dest: Optional[LocalStore], scratch: _Scratch,
                        quiet: bool = False) -> Optional[str]:
    """Look in one local store; compressed finds are extracted into ``dest`` (or scratch)."""
    any_form = False
    for form, p in store.candidates(req.name, req.key):
        any_form = True
        if form == "file":
            why = req.verify(p)
            if why is None:
                req.log(store.root, "found", "store", p)
                return _cache_copy(p, req, dest) if dest is not None and dest.root != store.root else p
            req.log(store.root, "mismatch", why, p)
        elif form == "compressed":
            try:
                data = extract_single(p, DEFAULT_MAX_BYTES)
            except SymbolError as exc:
                req.log(store.root, "error", f"cannot extract {os.path.basename(p)}: {exc.message}", p)
                continue
            target = dest or scratch.store()
            try:
                out = target.put(req.name, req.key, data)
            except OSError as exc:
                req.log(store.root, "error", f"cannot write extracted file: {exc}")
                continue
            why = req.verify(out)
            if why is None:
                req.log(store.root, "found", f"extracted {os.path.basename(p)} into {target.root}", out)
                return out
            req.log(store.root, "mismatch", why, p)
        else:   # file.ptr
            try:
                with open(p, "rb") as f:
                    text = f.read(4096).decode("utf-8", "replace").strip()
            except OSError as exc:
                req.log(store.root, "error", f"cannot read file.ptr: {exc}")
                continue
            if text.upper().startswith("MSG:"):
                req.log(store.root, "message", text[4:].strip(), p)
                continue
            if not text.upper().startswith("PATH:"):
                req.log(store.root, "error", f"file.ptr has unknown content {text[:60]!r}", p)
                continue
            target_path = text[5:].strip()
            if not os.path.isabs(target_path):
                target_path = os.path.join(os.path.dirname(p), target_path)
            if not os.path.isfile(target_path):
                req.log(store.root, "missing", f"file.ptr points to {target_path!r}, which is not there", p)
                continue
            try:
                with open(target_path, "rb") as fh:
                    is_cab = fh.read(4) == CAB_MAGIC
            except OSError as exc:
                req.log(store.root, "error", f"file.ptr target unreadable: {exc}")
                continue
            if is_cab:
                try:
                    data = extract_single(target_path, DEFAULT_MAX_BYTES)
                    target_path = (dest or scratch.store()).put(req.name, req.key, data)
                except (SymbolError, OSError) as exc:
                    req.log(store.root, "error", f"file.ptr target: {exc}")
                    continue
            why = req.verify(target_path)
            if why is None:
                req.log(store.root, "found", "via file.ptr", target_path)
                return target_path
            req.log(store.root, "mismatch", f"file.ptr target: {why}", target_path)
    if not any_form and not quiet:
        req.log(store.root, "missing", "no such file/key in the store")
    return None


# ---------------------------------------------------------------------- the symbol path
DEFAULT_BUDGET = 300.0     #: seconds of network time one SymbolPath may spend (all servers together)


class SymbolPath:
    """A parsed ``_NT_SYMBOL_PATH`` with identity-checked lookups.

    ``offline`` (default: the ``DUMPKIT_OFFLINE`` environment variable) stops every
    server request; ``server_options`` go to each :class:`SymbolServer`
    (``timeout``, ``retries``, ``backoff``, ``max_bytes``, ``order``...).
    ``negative_cache_file`` keeps misses between runs (expiry ``negative_ttl`` seconds).
    ``budget`` (seconds, default 300; None for no limit) bounds the network time of the
    whole run, shared by all servers; a server that fails to connect or times out once
    is not asked again by this symbol path.
    """

    def __init__(self, text: str = "", *, offline: Optional[bool] = None,
                 negative_cache_file: Optional[str] = None, negative_ttl: float = 24 * 3600.0,
                 **server_options) -> None:
        if not isinstance(text, str):
            text = os.pathsep.join(os.fspath(t) for t in text) if isinstance(text, (list, tuple)) else os.fspath(text)
        self.text = text
        self._offline = offline
        self.negative = NegativeCache(negative_cache_file, negative_ttl)
        budget = server_options.pop("budget", DEFAULT_BUDGET)
        self.budget = budget if isinstance(budget, RunBudget) else RunBudget(budget)
        self.server_options = server_options
        self.servers: List[SymbolServer] = []
        self.entries: List[Union[FolderEntry, ChainEntry]] = []
        self.attempts: List[Attempt] = []
        self.last_attempts: List[Attempt] = []
        self._scratch = _Scratch()
        self._parse(text)

    @classmethod
    def with_limits(cls, text: str = "", *, max_time: Optional[float] = None, budget: Optional[float] = None,
                    offline: Optional[bool] = None) -> "SymbolPath":
        """A symbol path whose servers give up one download after ``max_time`` seconds (the socket idle
        timeout lowered to it when smaller than the default 10 s) and whose lookups together spend at
        most ``budget`` seconds on the network; None keeps the default.  The command line's
        ``--symbol-timeout`` / ``--symbol-budget``."""
        opts: dict = {}
        if max_time is not None:
            opts.update(max_time=max_time, timeout=min(DEFAULT_TIMEOUT, max_time))
        if budget is not None:
            opts["budget"] = budget
        return cls(text, offline=offline, **opts)

    @classmethod
    def from_environment(cls, **kw) -> "SymbolPath":
        """``_NT_ALT_SYMBOL_PATH`` then ``_NT_SYMBOL_PATH`` (searched in that order)."""
        parts = [os.environ.get("_NT_ALT_SYMBOL_PATH", ""), os.environ.get("_NT_SYMBOL_PATH", "")]
        return cls(";".join(p for p in parts if p), **kw)

    @property
    def offline(self) -> bool:
        return network_disabled() if self._offline is None else bool(self._offline)

    @offline.setter
    def offline(self, value: Optional[bool]) -> None:
        self._offline = value
        for s in self.servers:
            s._offline = value if value is not None else None

    # ------------------------------------------------------------------ parsing
    def _server(self, url: str) -> SymbolServer:
        s = SymbolServer(url, offline=self._offline, negative_cache=self.negative, budget=self.budget,
                         **self.server_options)
        self.servers.append(s)
        return s

    def _store_or_server(self, item: str) -> Union[LocalStore, SymbolServer]:
        if item.lower().startswith(("http://", "https://")):
            return self._server(item)
        return LocalStore(item)

    def _parse(self, text: str) -> None:
        cache: Optional[LocalStore] = None
        for raw in text.split(";"):
            entry = raw.strip()
            if not entry:
                continue
            low = entry.lower()
            parts = entry.split("*")
            if low.startswith("cache*"):
                d = entry[6:].strip()
                cache = LocalStore(d or default_cache_dir())
                continue
            if low.startswith("symsrv*"):
                if len(parts) < 3:
                    raise SymbolError(f"symbol path entry {entry!r}: expected symsrv*symsrv.dll*[cache*]store")
                items = parts[2:]
            elif low.startswith("srv*"):
                items = parts[1:]
            else:
                if "*" in entry:
                    raise SymbolError(f"symbol path entry {entry!r}: unknown form",
                                      expected="srv*..., symsrv*..., cache*... or a folder")
                self.entries.append(FolderEntry(entry, cache))
                continue
            stores: List[Union[LocalStore, SymbolServer]] = []
            for j, it in enumerate(items):
                it = it.strip()
                if not it:
                    if j < len(items) - 1:      # srv**url: the default downstream store
                        stores.append(LocalStore(default_cache_dir()))
                    continue
                stores.append(self._store_or_server(it))
            if not stores:
                raise SymbolError(f"symbol path entry {entry!r} names no store")
            if cache is not None:
                stores.insert(0, cache)
            self.entries.append(ChainEntry(stores))

    # ------------------------------------------------------------------ lookups
    def _run(self, kind: str, name: str, key: str, verify: Verify) -> Optional[str]:
        req = _Request(kind, name, key, verify, [])
        try:
            for entry in self.entries:
                found = entry.find(req, self._scratch)
                if found:
                    return found
            if not self.entries:
                req.log("(empty symbol path)", "missing", "no symbol path given")
            return None
        finally:
            self.attempts.extend(req.attempts)
            self.last_attempts = req.attempts

    def find_pdb(self, name: str, guid: Union[uuid.UUID, str, bytes], age: int) -> Optional[str]:
        """Local path of the PDB ``name`` with this GUID and age, or None (see :attr:`attempts`)."""
        g = as_guid(guid)
        try:
            check_name(name)
            key = check_key(pdb_key(g, age))
        except UnsafeNameError as exc:
            self._refuse(PDB, name, f"{g.hex.upper()}{age:X}" if isinstance(age, int) else "?", exc)
            return None
        return self._run(PDB, name, key, lambda p: check_pdb_file(p, g, age))

    def find_image(self, name: str, timestamp: int, size: int) -> Optional[str]:
        """Local path of the image ``name`` with this TimeDateStamp and SizeOfImage, or None."""
        key = image_key(timestamp, size)
        try:
            check_name(name)
        except UnsafeNameError as exc:
            self._refuse(IMAGE, name, key, exc)
            return None
        return self._run(IMAGE, name, key, lambda p: check_image_file(p, timestamp, size))

    def _refuse(self, kind: str, name: object, key: str, exc: UnsafeNameError) -> None:
        a = Attempt(kind, str(name)[:80], key, "(input check)", "refused", exc.message)
        self.attempts.append(a)
        self.last_attempts = [a]

    def __repr__(self) -> str:
        mode = " offline" if self.offline else ""
        return f"<SymbolPath {self.text!r} {len(self.entries)} entries{mode}>"
