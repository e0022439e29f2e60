"""Finding and recognising the inputs of a batch run, by content (never by file name).

:func:`iter_inputs` walks files, folders (recursively) and zip bundles (damaged ones too:
what can be read is read) and yields one :class:`Input` per crash input with its SHA-256:

* ``dump``: a crash dump (``PAGE``/``MDMP``/``MSCF`` signature); whether dumpkit can read
  it is the analysis' business (a user-mode minidump becomes an error row saying so);
* ``text``: a text file holding pasted WinDbg output (``!analyze -v``, ``k``, ``lm``, ``r``),
  recognised by dumpkit's own text parser finding something in it;
* ``log``: a Windows setup log (Panther, setupapi): not a crash, listed as skipped;
* ``unknown``: anything else (garbage, other text): an error row, so nothing is silently lost;
* ``archive``: a zip nothing could be read from (an error row).

A WER report folder (a ``Report.wer`` beside the dump, recognised by its ``Version=`` /
``EventType=`` lines) lends its event type, bucket, application and report id to the
crash inputs in the same folder; the report itself is not a row.  Zip members are copied
to a spool folder (``<out>/spool``) so that a worker can open them as plain files.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

HEAD_BYTES = 64 << 10           #: bytes read to recognise a file
TEXT_SNIFF_BYTES = 256 << 10    #: bytes of a text file the WinDbg parser looks at to recognise it
MAX_MEMBER_BYTES = 64 << 30     #: the most copied out of one zip member
_CHUNK = 1 << 20

_DUMP_MAGIC = (b"PAGE", b"MDMP", b"MSCF")
_WER_KEY = re.compile(r"^(?:Version|EventType|ReportIdentifier|Sig\[\d+\]\.(?:Name|Value))=", re.M)
_KV = re.compile(r"^([A-Za-z][\w.\[\]]{0,80})=(.{0,2000})$", re.M)


@dataclass
class Input:
    """One crash input, recognised and hashed."""

    path: str                       # what the row shows: a file, or 'bundle.zip!folder/member.dmp'
    kind: str                       # dump | text | log | unknown | archive
    sha256: str
    size: int
    source: str                     # the file a worker opens (a spool copy for a zip member)
    container: Optional[str] = None  # the zip a member came from
    problem: str = ""               # damage seen while reading the input (zip member CRC, truncation...)
    spooled: bool = False
    wer: Dict[str, str] = field(default_factory=dict)

    def job(self) -> dict:
        """The plain dict a worker receives (no objects: it crosses process and machine boundaries)."""
        return {"path": self.path, "kind": self.kind, "sha256": self.sha256, "size": self.size,
                "source": self.source, "container": self.container, "problem": self.problem,
                "wer": dict(self.wer)}


# --------------------------------------------------------------------------------- recognition
def _decode_text(head: bytes) -> Optional[str]:
    """The head as text when it looks like text (UTF-16 with BOM, or mostly printable UTF-8/ASCII)."""
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return head.decode("utf-16", errors="replace")
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if not head:
        return None
    sample = head[:4096]
    if b"\x00" in sample:
        # UTF-16 without a BOM: every other byte zero
        if sample[1::2].count(0) > 0.9 * len(sample[1::2]):
            return head.decode("utf-16-le", errors="replace")
        return None
    printable = sum(32 <= b < 127 or b in (9, 10, 12, 13) or b >= 0x80 for b in sample)
    if printable < 0.95 * len(sample):
        return None
    return head.decode("utf-8", errors="replace")


def is_wer_report(text: str) -> bool:
    keys = set(m.group(0).split("=", 1)[0].split("[", 1)[0] for m in _WER_KEY.finditer(text[:16384]))
    return "Version" in keys and "EventType" in keys and len(keys) >= 3


def parse_wer_report(text: str) -> Dict[str, str]:
    """The fields a batch keeps from a WER ``Report.wer``: event type, bucket, application, report id,
    the problem signature; empty strings are left out."""
    kv: Dict[str, str] = {}
    for m in _KV.finditer(text[:1 << 20]):
        kv.setdefault(m.group(1), m.group(2).strip())
    sig = []
    for i in range(16):
        name, value = kv.get(f"Sig[{i}].Name"), kv.get(f"Sig[{i}].Value")
        if value is not None:
            sig.append(f"{name or i}={value}")
    out = {
        "wer_event_type": kv.get("EventType") or kv.get("FriendlyEventName", ""),
        "wer_bucket": kv.get("Response.BucketId") or kv.get("Response.LegacyBucketId") or kv.get("Bucket", ""),
        "wer_app": kv.get("AppName") or kv.get("NsAppName") or kv.get("AppPath")
        or (kv.get("Sig[0].Value", "") if kv.get("EventType", "").upper() in ("APPCRASH", "BEX", "BEX64",
                                                                                  "APPHANG", "MOAPPCRASH") else ""),
        "wer_report_id": kv.get("ReportIdentifier", ""),
        "wer_signature": "; ".join(sig)[:2000],
    }
    return {k: v for k, v in out.items() if v}


def _is_windbg_text(text: str) -> bool:
    from ..errors import DumpError
    from ..text import parse_text
    try:
        parse_text(text[:TEXT_SNIFF_BYTES])      # raises when it finds no WinDbg output at all
    except DumpError:
        return False
    except Exception:  # noqa: BLE001 - a parser bug on odd text must not stop recognition
        return False
    return True


def recognise(head: bytes) -> Tuple[str, Optional[str]]:
    """(kind, text) for the first bytes of an input: dump, zip, wer, text, log or unknown."""
    if head[:4] in _DUMP_MAGIC:
        return "dump", None
    from ..logs.bundle import is_zip_head, sniff_log_kind
    if is_zip_head(head):
        return "zip", None
    text = _decode_text(head)
    if text is None:
        return "unknown", None
    if is_wer_report(text):
        return "wer", text
    if _is_windbg_text(text):
        return "text", None
    if sniff_log_kind(head) != "other":
        return "log", None
    return "unknown", None


# --------------------------------------------------------------------------------- hashing
def sha256_file(path: str) -> Tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(_CHUNK)
            if not chunk:
                break
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


class StatCache:
    """``<out>/seen.jsonl``: (real path, size, mtime) -> (sha256, kind), so a second run need not re-read
    unchanged files.  Append-only: a run killed mid-write loses at most its last line."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self.map: Dict[str, Tuple[str, str, int]] = {}
        self._f: Optional[IO[str]] = None
        if path and os.path.exists(path):
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                        self.map[rec["k"]] = (rec["s"], rec["t"], int(rec.get("n", 0)))
                    except (ValueError, KeyError, TypeError):
                        continue

    @staticmethod
    def key(path: str, st: os.stat_result, member: str = "") -> str:
        return f"{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}|{member}"

    def get(self, key: str) -> Optional[Tuple[str, str, int]]:
        return self.map.get(key)

    def put(self, key: str, sha: str, kind: str, size: int) -> None:
        if key in self.map or not self.path:
            return
        self.map[key] = (sha, kind, size)
        if self._f is None:
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._f.write(json.dumps({"k": key, "s": sha, "t": kind, "n": size}) + "\n")

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


# --------------------------------------------------------------------------------- walking
def count_candidates(paths: Sequence[str]) -> int:
    """How many files the inputs hold (zip members not counted): the progress display's first total."""
    n = 0
    for p in paths:
        if os.path.isdir(p):
            for _d, _dirs, files in os.walk(p):
                n += len(files)
        else:
            n += 1
    return n


def _read_head(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read(HEAD_BYTES)


class Walker:
    """Turns the user's inputs into :class:`Input` records (see the module notes).

    ``known(sha256)`` tells whether a result exists already: such inputs are counted in
    :attr:`skipped` and never spooled.  Inputs whose content was seen earlier in this walk
    are counted in :attr:`duplicates` and not yielded again.
    """

    def __init__(self, spool_dir: str, cache: StatCache, known=lambda sha: False) -> None:
        self.spool_dir = spool_dir
        self.cache = cache
        self.known = known
        self.seen: Dict[str, str] = {}        # sha256 -> first path
        self.skipped = 0
        self.duplicates = 0
        self.duplicate_paths: List[Tuple[str, str]] = []   # (path, first path), first 1000
        self.ignored = 0                      # WER reports (folded into their dumps)
        self.members = 0                      # zip members seen (for the progress total)
        self._spooled = 0
        self.zips = 0

    # -- the dedupe gate ------------------------------------------------------------------
    def _admit(self, sha: str, path: str) -> bool:
        if sha in self.seen:
            self.duplicates += 1
            if len(self.duplicate_paths) < 1000:
                self.duplicate_paths.append((path, self.seen[sha]))
            return False
        self.seen[sha] = path
        if self.known(sha):
            self.skipped += 1
            return False
        return True

    def walk(self, paths: Iterable[str]) -> Iterator[Input]:
        for p in paths:
            p = os.fspath(p)
            if os.path.isdir(p):
                yield from self._walk_dir(p)
            else:
                # a dump given alone still gets the WER report beside it (its content is checked)
                folder = os.path.dirname(p) or "."
                try:
                    beside = [os.path.join(folder, n) for n in os.listdir(folder)
                              if n.lower() == "report.wer" and os.path.join(folder, n) != p]
                except OSError:
                    beside = []
                wer: Dict[str, str] = {}
                for b in beside[:1]:
                    try:
                        kind, text = recognise(_read_head(b))
                    except OSError:
                        continue
                    if kind == "wer":
                        wer = parse_wer_report(text or "")
                yield from self._files(folder, [p], explicit=True, wer=wer)

    def _walk_dir(self, root: str) -> Iterator[Input]:
        visited = set()
        for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
            try:
                st = os.stat(dirpath)
                ident = (st.st_dev, st.st_ino)
            except OSError:
                continue
            if ident in visited:          # a symlink loop
                dirnames[:] = []
                continue
            visited.add(ident)
            dirnames.sort()
            yield from self._files(dirpath, [os.path.join(dirpath, f) for f in sorted(filenames)])

    def _files(self, folder: str, files: List[str], explicit: bool = False,
               wer: Optional[Dict[str, str]] = None) -> Iterator[Input]:
        """One folder's files: WER reports first (they annotate the folder's dumps), then the rest."""
        recognised: List[Tuple[str, Optional[os.stat_result], str, str, Optional[str]]] = []
        wer = dict(wer or {})
        for full in files:
            try:
                st = os.stat(full)
            except OSError as e:
                recognised.append((full, None, "unknown", f"cannot read: {e.strerror or e}", None))
                continue
            if not stat.S_ISREG(st.st_mode):
                if explicit:
                    recognised.append((full, st, "unknown", "not a regular file", None))
                continue
            key = StatCache.key(full, st)
            hit = self.cache.get(key)
            if hit is not None and hit[1] not in ("wer", "zip"):
                recognised.append((full, st, hit[1], "", hit[0]))
                continue
            try:
                kind, text = recognise(_read_head(full))
            except OSError as e:
                recognised.append((full, st, "unknown", f"cannot read: {e.strerror or e}", None))
                continue
            if kind == "wer":
                wer = wer or parse_wer_report(text or "")
                self.ignored += 1
                continue
            recognised.append((full, st, kind, "", None))
        for full, fst, kind, problem, sha in recognised:
            if kind == "zip" and fst is not None:
                yield from self._zip(full, fst)
                continue
            if fst is None or problem:
                sha = hashlib.sha256(f"unreadable:{os.path.abspath(full)}".encode()).hexdigest()
                if self._admit(sha, full):
                    yield Input(full, "unknown", sha, 0, full, problem=problem)
                continue
            if sha is None:
                try:
                    sha, _n = sha256_file(full)
                except OSError as e:
                    sha = hashlib.sha256(f"unreadable:{os.path.abspath(full)}".encode()).hexdigest()
                    if self._admit(sha, full):
                        yield Input(full, "unknown", sha, 0, full, problem=f"cannot read: {e.strerror or e}")
                    continue
                self.cache.put(StatCache.key(full, fst), sha, kind, fst.st_size)
            if self._admit(sha, full):
                yield Input(full, kind, sha, fst.st_size, os.path.abspath(full),
                            wer=dict(wer) if kind in ("dump", "text") else {})

    # -- zips -----------------------------------------------------------------------------
    def _zip(self, path: str, st: os.stat_result) -> Iterator[Input]:
        from ..logs.bundle import ZipReader
        self.zips += 1
        try:
            zr = ZipReader(path)
        except OSError as e:
            yield from self._bad_archive(path, st, f"cannot read: {e.strerror or e}")
            return
        with zr:
            archive_problems = "; ".join(str(p) for p in zr.problems if p.kind != "salvaged")
            if not zr.members:
                yield from self._bad_archive(path, st, archive_problems or "no readable member")
                return
            folders: Dict[str, List] = {}
            for m in zr.members:
                folders.setdefault(m.name.rsplit("/", 1)[0] if "/" in m.name else "", []).append(m)
            for folder in sorted(folders):
                yield from self._zip_folder(zr, path, st, folders[folder], archive_problems)

    def _bad_archive(self, path: str, st: os.stat_result, problem: str) -> Iterator[Input]:
        try:
            sha, _n = sha256_file(path)
        except OSError:
            sha = hashlib.sha256(f"unreadable:{os.path.abspath(path)}".encode()).hexdigest()
        if self._admit(sha, path):
            yield Input(path, "archive", sha, st.st_size, path, problem=problem)

    def _zip_folder(self, zr, path: str, st: os.stat_result, members, archive_problems: str) -> Iterator[Input]:
        staged: List[Tuple[str, str, str, int, Optional[str], str]] = []
        wer: Dict[str, str] = {}
        for m in members:
            self.members += 1
            shown = f"{path}!{m.name}"
            key = StatCache.key(path, st, m.name)
            hit = self.cache.get(key)
            if hit is not None and hit[1] != "wer":
                sha, kind, size = hit
                if sha in self.seen or self.known(sha):
                    self._admit(sha, shown)
                    continue
            if m.problem:
                sha = hashlib.sha256(f"member:{os.path.realpath(path)}!{m.name}".encode()).hexdigest()
                staged.append((shown, "unknown", sha, 0, None, m.problem))
                continue
            spooled, sha, size, head, problem = self._spool(zr, m)
            kind, text = recognise(head)
            if kind == "wer":
                wer = wer or parse_wer_report(text or "")
                self.ignored += 1
                _unlink(spooled)
                continue
            if kind == "zip":
                kind, problem = "unknown", (problem + "; " if problem else "") + \
                    "a zip inside a zip: extract the inner archive and add it as an input"
            if problem and archive_problems:
                problem = f"{problem} ({archive_problems})"
            if not problem:
                self.cache.put(key, sha, kind, size)
            staged.append((shown, kind, sha, size, spooled, problem))
        for shown, kind, sha, size, spooled, problem in staged:
            if not self._admit(sha, shown):
                _unlink(spooled)
                continue
            yield Input(shown, kind, sha, size, spooled or path, container=path, problem=problem,
                        spooled=spooled is not None, wer=dict(wer) if kind in ("dump", "text") else {})

    def _spool(self, zr, m) -> Tuple[Optional[str], str, int, bytes, str]:
        """Copy a member to the spool folder: (spool path, sha256, bytes, head, problem)."""
        os.makedirs(self.spool_dir, exist_ok=True)
        h = hashlib.sha256()
        n = 0
        head = b""
        problem = ""
        tmp = os.path.join(self.spool_dir, f"member-{os.getpid()}-{self._spooled}.part")
        with open(tmp, "wb") as out:
            try:
                with zr.open(m) as src:
                    while n < MAX_MEMBER_BYTES:
                        chunk = src.read(min(_CHUNK, MAX_MEMBER_BYTES - n))
                        if not chunk:
                            break
                        if len(head) < HEAD_BYTES:
                            head += chunk[:HEAD_BYTES - len(head)]
                        h.update(chunk)
                        out.write(chunk)
                        n += len(chunk)
                    else:
                        problem = f"member larger than {MAX_MEMBER_BYTES:,} bytes: only the start was read"
            except (zipfile.BadZipFile, EOFError, zlib.error, OSError, RuntimeError, NotImplementedError,
                    ValueError) as e:
                problem = f"damaged zip member: {type(e).__name__}: {e} (kept the {n:,} bytes read before it)"
        sha = h.hexdigest()
        self._spooled += 1
        final = os.path.join(self.spool_dir, f"{sha[:32]}-{os.getpid()}-{self._spooled}")
        try:
            os.replace(tmp, final)
        except OSError:
            shutil.move(tmp, final)
        return final, sha, n, head, problem


def _unlink(path: Optional[str]) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass
