"""Case bundles: the folder or .zip of logs (and dumps) an engineer collects.

:func:`open_bundle` walks a folder or a zip, recognises the setup artefacts by
name and path (``Panther\\setupact.log``, ``$Windows.~BT\\Sources\\Panther\\...``,
``UnattendGC``, ``setupapi\\setupapi.dev.log``, ``Rollback``, ``CBS``,
``Minidump\\*.dmp``, ``MEMORY.DMP``, ``setupmem.dmp``, SetupDiag results) and
parses what it can, streaming each member (nothing is extracted to disk).

Damage is a finding, never a crash: an archive whose central directory is
missing or broken (a truncated upload) is salvaged from its local headers;
CRC mismatches, members that end early, encrypted or unsupported members,
members over the size limits (zip bombs) and path-traversal names are listed
in :attr:`LogBundle.problems`.
"""
from __future__ import annotations

import io
import mmap
import os
import re
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import IO, BinaryIO, Callable, Dict, Iterator, List, Optional, Tuple, Union, cast

from ..errors import TextParseError
from .panther import PantherLog, parse_panther
from .setupapi import SetupApiLog, parse_setupapi
from .setupdiag import SetupDiagResult, SetupIni, parse_setup_ini, parse_setupdiag
from .sniff import SNIFF_BYTES, sniff_content

MAX_MEMBERS = 20_000                 #: files looked at in one bundle
MAX_MEMBER_BYTES = 2 << 30           #: uncompressed bytes read from one log (2 GiB)
MAX_TOTAL_BYTES = 8 << 30            #: uncompressed bytes read from the whole bundle
MAX_RATIO = 200                      #: declared compression ratio above which a big member is refused
_RATIO_MIN_BYTES = 64 << 20          #: ... when it also declares more than this many bytes

_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_LOCAL_SIG = b"PK\x03\x04"


@dataclass(frozen=True)
class BundleProblem:
    """Something wrong with the bundle or one member (reported, not raised)."""

    member: str
    kind: str        # bad-archive | salvaged | crc | truncated | too-large | too-many | traversal |
    #                  corrupt | encrypted | unsupported | unreadable | parse | skipped
    detail: str

    def __str__(self) -> str:
        return f"{self.member or '<bundle>'}: {self.kind}: {self.detail}"

    def __repr__(self) -> str:
        return f"<BundleProblem {self}>"


@dataclass(frozen=True)
class DumpFile:
    """A crash dump found in the bundle (not opened here: hand ``path`` to the dump reader)."""

    path: str
    size: Optional[int]
    kind: str            # memory | minidump | setupmem | dump
    signature: str = ""  # PAGEDU64 | PAGEDUMP | MDMP | "" (unknown/unreadable)
    in_rollback: bool = False

    def __repr__(self) -> str:
        sz = f" {self.size:,} bytes" if self.size is not None else ""
        return f"<DumpFile {self.path} [{self.kind}]{' ' + self.signature if self.signature else ''}{sz}>"


Parsed = Union[PantherLog, SetupApiLog, SetupDiagResult, SetupIni]


@dataclass
class BundleFile:
    """One recognised member and what came of parsing it."""

    path: str            # path inside the bundle, '/'-separated
    kind: str            # panther | cbs | setupapi | setupdiag | ini | dump | evtx | archive | other
    phase: str           # downlevel | oobe | rollback | newos | sysprep | panther | inf | "" ...
    size: Optional[int] = None
    parsed: Optional[Parsed] = None
    problem: str = ""
    how: str = "name"    # how the kind was decided: 'content' (what the file holds) or 'name'
    note: str = ""       # what the content looked like, or why the file was skipped

    @property
    def status(self) -> str:
        """'read', 'failed' (a parser gave up on it), 'dump' or 'skipped'."""
        if self.parsed is not None:
            return "read"
        if self.kind == "dump":
            return "dump"
        return "failed" if self.problem else "skipped"

    def __repr__(self) -> str:
        what = repr(self.parsed) if self.parsed is not None else (self.problem or "not parsed")
        return f"<BundleFile {self.path} [{self.kind}/{self.phase or '-'}] {what}>"


@dataclass
class LogBundle:
    """Everything found in a case folder or zip."""

    source: str
    is_zip: bool = False
    salvaged: bool = False
    files: List[BundleFile] = field(default_factory=list)
    dumps: List[DumpFile] = field(default_factory=list)
    problems: List[BundleProblem] = field(default_factory=list)

    def _parsed(self, cls: type) -> List[Tuple[BundleFile, Parsed]]:
        return [(f, f.parsed) for f in self.files if f.parsed is not None and isinstance(f.parsed, cls)]

    @property
    def panther(self) -> List[Tuple[BundleFile, PantherLog]]:
        """Panther-style logs (setupact/setuperr/UnattendGC/CBS/DISM) with their file records."""
        return self._parsed(PantherLog)  # type: ignore[return-value]

    @property
    def setupapi(self) -> List[Tuple[BundleFile, SetupApiLog]]:
        return self._parsed(SetupApiLog)  # type: ignore[return-value]

    @property
    def setupdiag(self) -> List[Tuple[BundleFile, SetupDiagResult]]:
        return self._parsed(SetupDiagResult)  # type: ignore[return-value]

    @property
    def inis(self) -> List[Tuple[BundleFile, SetupIni]]:
        return self._parsed(SetupIni)  # type: ignore[return-value]

    @property
    def damaged(self) -> bool:
        return any(p.kind not in ("skipped",) for p in self.problems)

    def find(self, pattern: str) -> List[BundleFile]:
        """Files whose path contains ``pattern`` (case-insensitive, ``\\`` or ``/``)."""
        pat = pattern.replace("\\", "/").lower()
        return [f for f in self.files if pat in f.path.lower()]

    def __repr__(self) -> str:
        parsed = sum(1 for f in self.files if f.parsed is not None)
        flags = " SALVAGED" if self.salvaged else ""
        return (f"<LogBundle {self.source}{' (zip)' if self.is_zip else ''}{flags}: {len(self.files)} files,"
                f" {parsed} parsed, {len(self.dumps)} dumps, {len(self.problems)} problems>")


# --------------------------------------------------------------------------- classification
_SETUPAPI_NAME = re.compile(r"^setupapi\.(dev|setup|offline|app)(?:\.[\w.-]+)?\.log$")
_PANTHER_NAME = re.compile(r"^setup(act|err)(?:[_.-]?\w{0,20})?\.log$")
_CBS_NAME = re.compile(r"^(?:cbs(?:_unattend)?|cbspersist_\d+|dism)\.log$")
_SETUPDIAG_NAME = re.compile(r"^setupdiagresults?\.(?:log|xml|json)$")


def classify_path(path: str) -> Tuple[str, str]:
    """(kind, phase) for a path inside a case bundle (case-insensitive, either slash)."""
    p = "/" + path.replace("\\", "/").lower().lstrip("/")
    base = p.rsplit("/", 1)[-1]
    if _SETUPAPI_NAME.match(base):
        kind = "setupapi"
    elif _PANTHER_NAME.match(base):
        kind = "panther"
    elif _CBS_NAME.match(base):
        kind = "cbs"
    elif _SETUPDIAG_NAME.match(base):
        kind = "setupdiag"
    elif base in ("rollbackinfo.ini", "setupplatform.ini"):
        kind = "ini"
    elif base.endswith(".dmp"):
        kind = "dump"
    elif base.endswith(".evtx"):
        kind = "evtx"
    elif base.endswith((".zip", ".cab", ".7z", ".rar")):
        kind = "archive"
    else:
        kind = "other"
    if "/unattendgc/" in p:
        phase = "oobe"
    elif "/rollback/" in p:
        phase = "rollback"
    elif "/panther/newos/" in p:
        phase = "newos"
    elif "/$windows.~bt/" in p and "/panther/" in p:
        phase = "downlevel"
    elif "/sysprep/panther/" in p:
        phase = "sysprep"
    elif "/panther/" in p:
        phase = "panther"
    elif "/inf/" in p:
        phase = "inf"
    elif "/logs/cbs/" in p or kind == "cbs":
        phase = "cbs"
    elif "/logs/setupdiag/" in p:
        phase = "setupdiag"
    else:
        phase = ""
    return kind, phase


_SNIFF_SETUPAPI = re.compile(r"^(?:>>>|<<<)\s+(?:\[|Section)", re.M)
_SNIFF_PANTHER = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, +(?:Info|Error|Warning)\b", re.M)


def sniff_log_kind(sample: bytes) -> str:
    """'setupapi', 'panther' or 'other', from the first bytes of a log (any supported encoding).

    Used for a single file handed in by the user under a name of their own."""
    from ._text import sniff_encoding
    enc, skip = sniff_encoding(sample)
    try:
        text = sample[skip:].decode(enc, errors="replace")
    except LookupError:
        return "other"
    if _SNIFF_SETUPAPI.search(text):
        return "setupapi"
    if _SNIFF_PANTHER.search(text):
        return "panther"
    return "other"


def _by_content(bf: "BundleFile", head: bytes) -> None:
    """Decide ``bf.kind`` from what the file holds (collection tools rename files); the name
    decides only when the content says nothing either way."""
    sn = sniff_content(head)
    bf.note = sn.why
    if sn.is_log or sn.kind == "dump":
        bf.how = "content"
        bf.kind = sn.kind
        bf.phase = bf.phase or sn.phase
        return
    if bf.kind in _PARSERS and sn.why not in ("empty file", "binary data, not a text log", "only blank text"):
        bf.note = f"read by its name ({sn.why})"
        return
    bf.kind = sn.kind if sn.kind in ("archive", "evtx") else "other"


def _dump_kind(path: str) -> str:
    base = path.replace("\\", "/").lower().rsplit("/", 1)[-1]
    if base == "memory.dmp":
        return "memory"
    if base == "setupmem.dmp":
        return "setupmem"
    if "/minidump/" in "/" + path.replace("\\", "/").lower():
        return "minidump"
    return "dump"


def _signature(head: bytes) -> str:
    for sig in (b"PAGEDU64", b"PAGEDUMP", b"MDMP"):
        if head.startswith(sig):
            return sig.decode()
    return ""


def _unsafe(name: str) -> bool:
    n = name.replace("\\", "/")
    if not n or "\x00" in n or n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return True
    return any(part == ".." for part in n.split("/"))


# --------------------------------------------------------------------------- parsing members
class _Bounded(io.RawIOBase):
    """A read-only stream that stops after ``limit`` bytes (and remembers it did)."""

    def __init__(self, raw: Union[BinaryIO, IO[bytes], io.RawIOBase], limit: int) -> None:
        self.raw = raw
        self.left = limit
        self.hit_limit = False

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            if not self.hit_limit and self.raw.read(1):
                self.hit_limit = True
            return b""
        if n is None or n < 0 or n > self.left:
            n = self.left
        data = self.raw.read(n)
        self.left -= len(data)
        return data

    def close(self) -> None:
        try:
            self.raw.close()
        except Exception:  # noqa: BLE001 - closing a damaged member must not raise
            pass
        super().close()


_PARSERS: Dict[str, Callable[[BinaryIO, str, str], Parsed]] = {
    "panther": lambda s, n, ph: parse_panther(s, name=n, keep="problems"),
    "cbs": lambda s, n, ph: parse_panther(s, name=n, kind="cbs", keep="problems"),
    "setupapi": lambda s, n, ph: parse_setupapi(s, name=n, keep_body="failures"),
    "setupdiag": lambda s, n, ph: parse_setupdiag(s, name=n),
    "ini": lambda s, n, ph: parse_setup_ini(s, name=n),
}


class _ParserBug(Exception):
    """A log parser raised something other than its own errors: a bug, carried past the
    "damage is a finding" handlers of the zip code and re-raised by :func:`open_bundle`."""


#: what reading a damaged member raises (zipfile, zlib, the salvage reader, the file system);
#: the parsers' own complaint is TextParseError.  Anything else from a parser is a bug.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError)


def _parse_member(bundle: LogBundle, bf: BundleFile, stream: Union[BinaryIO, IO[bytes], io.RawIOBase],
                  limit: int) -> int:
    """Parse one member from ``stream``; returns the bytes consumed."""
    bounded = _Bounded(stream, limit)
    try:
        bf.parsed = _PARSERS[bf.kind](bounded, bf.path, bf.phase)  # type: ignore[arg-type]
    except TextParseError as e:
        bf.problem = e.message
        bundle.problems.append(BundleProblem(bf.path, "parse", e.message))
    except _READ_ERRORS as e:
        bf.problem = f"{type(e).__name__}: {e}"
        bundle.problems.append(BundleProblem(bf.path, "unreadable", bf.problem))
    except Exception as e:  # noqa: BLE001 - re-raised as itself by open_bundle
        raise _ParserBug(bf.path) from e
    finally:
        bounded.close()
    decode = getattr(bf.parsed, "decode", None)
    err = getattr(decode, "read_error", None)
    if err:
        kind = "crc" if "CRC" in err else ("truncated" if ("EOF" in err or "ends early" in err) else "corrupt")
        bf.problem = err
        bundle.problems.append(BundleProblem(bf.path, kind, f"{err} (kept what was read)"))
    if bounded.hit_limit:
        bundle.problems.append(BundleProblem(bf.path, "too-large", f"read stopped at the {limit:,}-byte limit"))
    return limit - bounded.left


# --------------------------------------------------------------------------- folders
def _open_folder(root: str, bundle: LogBundle, limits: Dict[str, int]) -> None:
    total = 0
    seen = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for fn in sorted(filenames):
            full = os.path.join(dirpath, fn)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            seen += 1
            if seen > limits["max_members"]:
                bundle.problems.append(BundleProblem("", "too-many", f"more than {limits['max_members']} files; rest ignored"))
                return
            if os.path.islink(full):
                bundle.problems.append(BundleProblem(rel, "skipped", "symbolic link not followed"))
                continue
            kind, phase = classify_path(rel)
            try:
                size = os.path.getsize(full)
            except OSError:
                size = None
            bf = BundleFile(rel, kind, phase, size)
            bundle.files.append(bf)
            try:
                with open(full, "rb") as f:
                    head = f.read(SNIFF_BYTES)
            except OSError as e:
                head = None
                bf.note = f"unreadable: {e.strerror or e}"
            if head is not None:
                _by_content(bf, head)
            kind = bf.kind
            if kind == "dump":
                head = b""
                try:
                    with open(full, "rb") as f:
                        head = f.read(8)
                except OSError as e:
                    bundle.problems.append(BundleProblem(rel, "unreadable", str(e)))
                bundle.dumps.append(DumpFile(full, size, _dump_kind(rel), _signature(head), phase == "rollback"))
                continue
            if kind not in _PARSERS:
                continue
            if total >= limits["max_total"]:
                bf.note = "bundle byte budget used up; not parsed"
                bundle.problems.append(BundleProblem(rel, "too-large", "bundle byte budget used up; not parsed"))
                continue
            try:
                stream = open(full, "rb")  # noqa: SIM115 - closed by _parse_member
            except OSError as e:
                bf.problem = str(e)
                bundle.problems.append(BundleProblem(rel, "unreadable", str(e)))
                continue
            total += _parse_member(bundle, bf, stream, min(limits["max_member"], limits["max_total"] - total))


# --------------------------------------------------------------------------- zips
def _zip_error_kind(e: BaseException) -> str:
    msg = str(e)
    if isinstance(e, RuntimeError) and "encrypt" in msg.lower():
        return "encrypted"
    if isinstance(e, NotImplementedError):
        return "unsupported"
    return "unreadable"


def _open_zip(zf: zipfile.ZipFile, bundle: LogBundle, limits: Dict[str, int]) -> None:
    total = 0
    infos = zf.infolist()
    if len(infos) > limits["max_members"]:
        bundle.problems.append(BundleProblem("", "too-many", f"{len(infos)} members; only the first "
                                                              f"{limits['max_members']} looked at"))
        infos = infos[: limits["max_members"]]
    for info in infos:
        try:
            total += _zip_member(zf, info, bundle, limits, total)
        except _ParserBug:
            raise
        except Exception as e:  # noqa: BLE001 - zipfile internals fail in many ways on damaged headers
            bundle.problems.append(BundleProblem(str(getattr(info, "filename", "")), "unreadable",
                                                 f"{type(e).__name__}: {e}"))


def _refuse_member(bundle: LogBundle, bf: BundleFile, usize: int, csize: int, total: int,
                   limits: Dict[str, int]) -> bool:
    """The size limits every member meets before it is read (normal and salvage paths alike)."""
    why = None
    if usize > limits["max_member"]:
        bf.problem = "declared size over the limit"
        why = f"declares {usize:,} bytes (limit {limits['max_member']:,}); not read"
    elif usize > _RATIO_MIN_BYTES and usize > MAX_RATIO * max(1, csize):
        bf.problem = "compression ratio too high"
        why = f"{usize:,} bytes from {csize:,} compressed (zip bomb?); not read"
    elif total + usize > limits["max_total"]:
        bf.problem = "bundle byte budget used up"
        why = "bundle byte budget used up; not read"
    if why:
        bundle.problems.append(BundleProblem(bf.path, "too-large", why))
    return why is not None


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, bundle: LogBundle, limits: Dict[str, int],
                total: int) -> int:
    """Handle one member of a readable zip; returns the bytes it consumed."""
    name = info.filename
    if not name:
        bundle.problems.append(BundleProblem("", "traversal", "member without a name; ignored"))
        return 0
    if name.endswith("/"):
        return 0
    if _unsafe(name):
        bundle.problems.append(BundleProblem(name, "traversal", "unsafe member name (absolute or '..'); ignored"))
        return 0
    norm = name.replace("\\", "/")
    kind, phase = classify_path(norm)
    bf = BundleFile(norm, kind, phase, info.file_size)
    bundle.files.append(bf)
    if kind != "dump" and not (info.flag_bits & 0x1):
        try:
            with zf.open(info) as f:
                _by_content(bf, f.read(SNIFF_BYTES))
        except Exception:  # noqa: BLE001 - damage is reported when the member is read for parsing
            pass
        kind = bf.kind
    if kind == "dump":
        head = b""
        try:
            with zf.open(info) as f:
                head = f.read(8)
        except Exception as e:  # noqa: BLE001 - any member damage is a finding
            bundle.problems.append(BundleProblem(norm, _zip_error_kind(e), f"{type(e).__name__}: {e}"))
        bundle.dumps.append(DumpFile(f"{bundle.source}!{norm}", info.file_size, _dump_kind(norm),
                                     _signature(head), phase == "rollback"))
        return 0
    if kind not in _PARSERS:
        return 0
    if _refuse_member(bundle, bf, info.file_size, info.compress_size, total, limits):
        return 0
    try:
        stream = zf.open(info)
    except Exception as e:  # noqa: BLE001 - BadZipFile, encrypted, unsupported method...
        bf.problem = f"{type(e).__name__}: {e}"
        bundle.problems.append(BundleProblem(norm, _zip_error_kind(e), bf.problem))
        return 0
    member: Union[IO[bytes], io.RawIOBase] = stream
    if getattr(stream, "_expected_crc", None) is not None:
        # zipfile raises on a CRC mismatch inside the read that returns the last data (losing it);
        # check the CRC ourselves so the text is parsed and the mismatch reported after it
        stream._expected_crc = None  # type: ignore[attr-defined]
        member = _CrcCheck(stream, info.CRC)
    # the real data may exceed the declared size: read at most the declared size + 1 MiB
    return _parse_member(bundle, bf, member, min(limits["max_member"], info.file_size + (1 << 20)))


class _CrcCheck(io.RawIOBase):
    """Pass-through reader that raises BadZipFile at EOF when the CRC-32 does not match."""

    def __init__(self, raw: IO[bytes], crc: int) -> None:
        self.raw = raw
        self.expected: Optional[int] = crc
        self.crc = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        if data:
            self.crc = zlib.crc32(data, self.crc)
        elif self.expected is not None:
            exp, self.expected = self.expected, None
            if exp != self.crc:
                raise zipfile.BadZipFile(f"Bad CRC-32 (got {self.crc:08x}, directory says {exp:08x})")
        return data

    def close(self) -> None:
        self.raw.close()
        super().close()


class _SalvageReader(io.RawIOBase):
    """Decompress one member straight from its local header (no central directory)."""

    def __init__(self, data, start: int, csize: Optional[int], method: int, crc: Optional[int]) -> None:
        self.data = data
        self.pos = start
        self.end = min(len(data), start + csize) if csize is not None else len(data)
        self.method = method
        self.d = zlib.decompressobj(-15) if method == 8 else None
        self.buf = b""
        self.done = False
        self.crc_expected = crc
        self.crc = 0
        self.data_end: Optional[int] = None
        self.pending: Optional[BaseException] = None

    def readable(self) -> bool:
        return True

    def _fill(self) -> None:
        if self.d is None:
            chunk = self.data[self.pos:min(self.end, self.pos + (1 << 16))]
            self.pos += len(chunk)
            if not chunk:
                self.done = True
                self.data_end = self.pos
            self.buf += chunk
            self.crc = zlib.crc32(chunk, self.crc)
            return
        if self.d.unconsumed_tail:
            inp = self.d.unconsumed_tail
        else:
            inp = self.data[self.pos:min(self.end, self.pos + (1 << 16))]
            self.pos += len(inp)
            if not inp:
                self.done = True
                raise EOFError("compressed data ends early (truncated archive)")
        out = self.d.decompress(inp, 1 << 20)
        self.crc = zlib.crc32(out, self.crc)
        self.buf += out
        if self.d.eof:
            self.done = True
            self.data_end = self.pos - len(self.d.unused_data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = 1 << 20
        if self.pending is not None and not self.buf:
            err, self.pending = self.pending, None
            raise err
        try:
            while len(self.buf) < n and not self.done:
                self._fill()
        except (EOFError, zlib.error) as e:
            self.done = True
            if not self.buf:
                raise
            self.pending = e          # hand out what was decompressed first
        out, self.buf = self.buf[:n], self.buf[n:]
        complete = self.data_end is not None
        if not out and complete and self.crc_expected is not None and self.crc != self.crc_expected:
            exp, self.crc_expected = self.crc_expected, None
            raise zipfile.BadZipFile(f"Bad CRC-32 (got {self.crc:08x}, header says {exp:08x})")
        return out


def _measure(data, start: int, method: int, limit: int) -> Tuple[int, int, Optional[int]]:
    """(uncompressed bytes, compressed bytes, end offset or None) of a deflated member of unknown size.

    Inflates without keeping the output; stops once the output passes ``limit`` or the
    ratio limit (then the sizes returned are enough for the member to be refused).
    """
    if method != 8:
        return 0, 0, None
    d = zlib.decompressobj(-15)
    pos, out, n = start, 0, len(data)
    try:
        while pos < n and not d.eof:
            inp = data[pos:pos + (1 << 16)]
            pos += len(inp)
            while inp and not d.eof:
                out += len(d.decompress(inp, 1 << 22))
                inp = d.unconsumed_tail
                used = pos - start - len(inp)
                if out > limit or (out > _RATIO_MIN_BYTES and out > MAX_RATIO * max(1, used)):
                    return out, used, None
    except zlib.error:
        return out, pos - start, None          # the parse reports the damage
    used = pos - start - len(d.unused_data)
    return out, used, (start + used) if d.eof else None


def _salvage(data, bundle: LogBundle, limits: Dict[str, int]) -> None:
    """Recover members of a zip whose central directory is unusable, from the local headers."""
    pos = 0
    total = 0
    count = 0
    n = len(data)
    while count < limits["max_members"]:
        off = data.find(_LOCAL_SIG, pos)
        if off < 0 or off + _LOCAL.size > n:
            break
        (_sig, _ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen) = _LOCAL.unpack_from(data, off)
        name_b = data[off + 30: off + 30 + nlen]
        start = off + 30 + nlen + xlen
        if start > n or len(name_b) != nlen:
            break
        count += 1
        name = name_b.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        known_size = not (flags & 0x08)
        next_pos = start + csize if known_size and csize else off + 4
        if name.endswith("/"):
            pos = max(next_pos, off + 4)
            continue
        if _unsafe(name):
            bundle.problems.append(BundleProblem(name, "traversal", "unsafe member name (absolute or '..'); ignored"))
            pos = max(next_pos, off + 4)
            continue
        norm = name.replace("\\", "/")
        kind, phase = classify_path(norm)
        bf = BundleFile(norm, kind, phase, usize if known_size else None)
        bundle.files.append(bf)
        if not flags & 0x01 and method in (0, 8) and (known_size or method == 8) and kind != "dump":
            try:                  # by content, as for readable zips (a fresh reader parses it below)
                _by_content(bf, _SalvageReader(data, start, csize if known_size else None, method, None)
                            .read(SNIFF_BYTES))
            except (EOFError, zlib.error, zipfile.BadZipFile):
                pass
            kind, phase = bf.kind, bf.phase
        if flags & 0x01:
            bundle.problems.append(BundleProblem(norm, "encrypted", "encrypted member; not read"))
        elif method not in (0, 8):
            bundle.problems.append(BundleProblem(norm, "unsupported", f"compression method {method}; not read"))
        elif method == 0 and not known_size:
            bundle.problems.append(BundleProblem(norm, "unsupported", "stored member without sizes; not read"))
        elif kind == "dump":
            rd = _SalvageReader(data, start, csize if known_size else None, method, None)
            try:
                head = rd.read(8)
            except (EOFError, zlib.error, zipfile.BadZipFile):
                head = b""
            bundle.dumps.append(DumpFile(f"{bundle.source}!{norm}", usize if known_size else None, _dump_kind(norm),
                                         _signature(head), phase == "rollback"))
        elif kind in _PARSERS:
            if not known_size:
                # sizes come after the data (a data descriptor): measure the member first, inflating
                # without parsing, so the same limits apply before a byte of it is parsed
                usize, csize, end = _measure(data, start, method, limits["max_member"])
                if end is not None:
                    next_pos = end
            if total >= limits["max_total"]:
                bundle.problems.append(BundleProblem(norm, "too-large", "bundle byte budget used up; not read"))
            elif not _refuse_member(bundle, bf, usize, csize, total, limits):
                rd = _SalvageReader(data, start, csize if known_size else None, method, crc if known_size else None)
                total += _parse_member(bundle, bf, rd, min(limits["max_member"], limits["max_total"] - total,
                                                           usize + (1 << 20)))
                if not known_size and rd.data_end is not None:
                    next_pos = rd.data_end
        pos = max(next_pos, off + 4)
    if count >= limits["max_members"]:
        bundle.problems.append(BundleProblem("", "too-many", f"more than {limits['max_members']} members"))
    if count:
        bundle.salvaged = True
        bundle.problems.append(BundleProblem("", "salvaged", f"{count} member(s) recovered from local headers"))


def open_bundle(path: Union[str, "os.PathLike[str]", bytes], *, max_members: int = MAX_MEMBERS,
                max_member_bytes: int = MAX_MEMBER_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES) -> LogBundle:
    """Open a case folder, a .zip file, or zip bytes, and parse the setup logs in it.

    Never raises for damaged content: problems are in ``bundle.problems``.
    Raises :class:`TextParseError` only when ``path`` does not exist or is
    neither a folder nor a readable file.  (An exception from a log parser that is
    not its own error is a bug in dumpkit and is not hidden as "unreadable".)
    """
    try:
        return _open_bundle(path, max_members, max_member_bytes, max_total_bytes)
    except _ParserBug as e:
        raise e.__cause__ from None   # type: ignore[misc]


def _open_bundle(path: Union[str, "os.PathLike[str]", bytes], max_members: int, max_member_bytes: int,
                 max_total_bytes: int) -> LogBundle:
    limits = {"max_members": max_members, "max_member": max_member_bytes, "max_total": max_total_bytes}
    if isinstance(path, (bytes, bytearray, memoryview)):
        bundle = LogBundle("<zip bytes>", is_zip=True)
        _open_zip_data(bytes(path), bundle, limits)
        return bundle
    p = os.fspath(path)
    if os.path.isdir(p):
        bundle = LogBundle(p)
        _open_folder(p, bundle, limits)
        return bundle
    if not os.path.isfile(p):
        raise TextParseError("no such folder or file", path=p, expected="a case folder or a .zip")
    bundle = LogBundle(p, is_zip=True)
    try:
        size = os.path.getsize(p)
        with open(p, "rb") as f:
            if size == 0:
                bundle.problems.append(BundleProblem("", "bad-archive", "empty file"))
                return bundle
            head = f.read(4)
            if head != _LOCAL_SIG and not zipfile.is_zipfile(f):
                # a single log handed in directly: treat it as a one-file bundle
                kind, phase = classify_path(os.path.basename(p))
                bundle.is_zip = False
                bf = BundleFile(os.path.basename(p), kind, phase, size)
                bundle.files.append(bf)
                f.seek(0)
                sample = f.read(SNIFF_BYTES)
                _by_content(bf, sample)
                if bf.kind in _PARSERS:
                    _parse_member(bundle, bf, open(p, "rb"), max_member_bytes)  # noqa: SIM115
                elif bf.kind == "dump":
                    bundle.dumps.append(DumpFile(p, size, _dump_kind(bf.path), _signature(sample[:8]), phase == "rollback"))
                else:
                    bundle.problems.append(BundleProblem(bf.path, "skipped", bf.note or "not a setup log"))
                return bundle
            f.seek(0)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                _open_zip_data(mm, bundle, limits, fileobj=f)
    except OSError as e:
        raise TextParseError(f"cannot read: {e.strerror or e}", path=p) from e
    return bundle


_EOCD = struct.Struct("<4sHHHHIIH")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")


def _declared_members(data) -> Optional[int]:
    """The member count the end-of-central-directory record declares (read before zipfile builds a
    ZipInfo per member, so an archive with too many members is turned away cheaply); None if absent."""
    n = len(data)
    tail_at = max(0, n - (_EOCD.size + 0xFFFF))
    at = data.rfind(b"PK\x05\x06", tail_at)
    if at < 0 or at + _EOCD.size > n:
        return None
    total = _EOCD.unpack_from(data, at)[4]
    if total == 0xFFFF and at >= 20 and data[at - 20:at - 16] == b"PK\x06\x07":
        (off64,) = struct.unpack_from("<Q", data, at - 12)
        if off64 + _EOCD64.size <= n and data[off64:off64 + 4] == b"PK\x06\x06":
            total = _EOCD64.unpack_from(data, off64)[7]
    return total


def _open_zip_data(data, bundle: LogBundle, limits: Dict[str, int], fileobj: Optional[BinaryIO] = None) -> None:
    declared = _declared_members(data)
    if declared is not None and declared > limits["max_members"]:
        bundle.problems.append(BundleProblem("", "too-many", f"the archive declares {declared:,} members, over the "
                                                              f"limit of {limits['max_members']:,}; not read"))
        return
    try:
        zf = zipfile.ZipFile(fileobj if fileobj is not None else io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - any failure to read the directory: salvage instead
        bundle.problems.append(BundleProblem("", "bad-archive", f"{type(e).__name__}: {e}; trying to salvage"))
        try:
            _salvage(data, bundle, limits)
        except _ParserBug:
            raise
        except Exception as e2:  # noqa: BLE001 - salvage is best effort on hostile bytes
            bundle.problems.append(BundleProblem("", "bad-archive", f"salvage stopped: {type(e2).__name__}: {e2}"))
        return
    try:
        _open_zip(zf, bundle, limits)
    except _ParserBug:
        raise
    except Exception as e:  # noqa: BLE001 - damaged input must become a finding
        bundle.problems.append(BundleProblem("", "bad-archive", f"{type(e).__name__}: {e}"))
    finally:
        zf.close()


def iter_bundle_logs(bundle: LogBundle) -> Iterator[Tuple[BundleFile, Parsed]]:
    """Every parsed member with its file record."""
    for f in bundle.files:
        if f.parsed is not None:
            yield f, f.parsed


__all__ = ["open_bundle", "LogBundle", "BundleFile", "BundleProblem", "DumpFile", "classify_path",
           "iter_bundle_logs", "MAX_MEMBERS", "MAX_MEMBER_BYTES", "MAX_TOTAL_BYTES"]


# --------------------------------------------------------------------------- member access (dumpkit.batch)
@dataclass(frozen=True)
class ZipMember:
    """One file in a zip, as :class:`ZipReader` lists it (directories are not listed)."""

    name: str                      # path inside the zip, '/'-separated
    size: Optional[int]            # declared uncompressed size (None: unknown, salvaged without sizes)
    problem: str = ""              # why it cannot be read at all (encrypted, unsupported, unsafe name)
    _ref: object = field(default=None, repr=False, compare=False)


class ZipReader:
    """The members of a zip file, each readable as a stream, also when the archive is damaged.

    A readable central directory is used as is; otherwise the members are recovered from
    their local headers (the salvage :func:`open_bundle` does).  :meth:`open` returns a
    stream that hands out what can be decompressed and then raises (``zipfile.BadZipFile``
    on a CRC mismatch, ``EOFError`` or ``zlib.error`` when the data ends early or is
    corrupt), so a caller keeps the readable part of a damaged member.
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, max_members: int = MAX_MEMBERS) -> None:
        self.path = os.fspath(path)
        self.members: List[ZipMember] = []
        self.problems: List[BundleProblem] = []
        self.salvaged = False
        self._file = open(self.path, "rb")  # noqa: SIM115 - closed by close()
        self._mm = None
        self._zf: Optional[zipfile.ZipFile] = None
        try:
            if os.fstat(self._file.fileno()).st_size == 0:
                self.problems.append(BundleProblem("", "bad-archive", "empty file"))
                return
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                self._zf = zipfile.ZipFile(self._file)
                infos = self._zf.infolist()
            except Exception as e:  # noqa: BLE001 - any failure to read the directory: salvage instead
                self._zf = None
                self.problems.append(BundleProblem("", "bad-archive", f"{type(e).__name__}: {e}; salvaged"))
                self._scan_local_headers(max_members)
                return
            if len(infos) > max_members:
                self.problems.append(BundleProblem("", "too-many", f"{len(infos)} members; only the first "
                                                                  f"{max_members} looked at"))
                infos = infos[:max_members]
            for info in infos:
                if info.filename.endswith("/"):
                    continue
                name = info.filename.replace("\\", "/")
                problem = "unsafe member name (absolute or '..')" if _unsafe(info.filename) else ""
                if info.flag_bits & 0x1:
                    problem = problem or "encrypted member"
                self.members.append(ZipMember(name, info.file_size, problem, info))
        except BaseException:
            self.close()
            raise

    def _scan_local_headers(self, max_members: int) -> None:
        data = self._mm
        assert data is not None                 # mapped by __init__ before the scan
        pos, n = 0, len(data)
        while len(self.members) < max_members:
            off = data.find(_LOCAL_SIG, pos)
            if off < 0 or off + _LOCAL.size > n:
                break
            (_sig, _ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen) = _LOCAL.unpack_from(data, off)
            start = off + 30 + nlen + xlen
            if start > n:
                break
            raw_name = data[off + 30: off + 30 + nlen]
            name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace").replace("\\", "/")
            known = not (flags & 0x08)
            pos = max(start + csize if known and csize else off + 4, off + 4)
            if not name or name.endswith("/"):
                continue
            problem = ""
            if _unsafe(name):
                problem = "unsafe member name (absolute or '..')"
            elif flags & 0x01:
                problem = "encrypted member"
            elif method not in (0, 8):
                problem = f"compression method {method} not supported"
            elif method == 0 and not known:
                problem = "stored member without sizes"
            ref = (start, csize if known else None, method, crc if known else None)
            self.members.append(ZipMember(name, usize if known else None, problem, ref))
        if self.members:
            self.salvaged = True
            self.problems.append(BundleProblem("", "salvaged", f"{len(self.members)} member(s) recovered from "
                                                               "local headers"))

    def open(self, member: ZipMember) -> BinaryIO:
        """A stream of the member's bytes (see the class notes for damaged members)."""
        if member.problem:
            raise zipfile.BadZipFile(f"{member.name}: {member.problem}")
        if self._zf is not None:
            info = cast(zipfile.ZipInfo, member._ref)      # a readable zip: the member's ZipInfo
            stream = self._zf.open(info)
            if getattr(stream, "_expected_crc", None) is not None:
                stream._expected_crc = None  # type: ignore[attr-defined]
                return _CrcCheck(stream, info.CRC)  # type: ignore[return-value]
            return stream  # type: ignore[return-value]
        start, csize, method, crc = cast(Tuple[int, Optional[int], int, Optional[int]], member._ref)  # salvaged
        return _SalvageReader(self._mm, start, csize, method, crc)  # type: ignore[return-value]

    def close(self) -> None:
        for obj in (self._zf, self._mm, self._file):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # noqa: BLE001 - closing never raises
                pass
        self._zf = self._mm = None

    def __enter__(self) -> "ZipReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def is_zip_head(head: bytes) -> bool:
    """True when these first bytes start a zip archive (a local header or an empty archive's end record)."""
    return head[:4] in (_LOCAL_SIG, b"PK\x05\x06")


__all__ += ["ZipReader", "ZipMember", "is_zip_head"]
