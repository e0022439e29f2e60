"""Extract the single file of a symbol-store ``.pd_``/``.sy_`` cabinet (CAB).

Symbol servers store compressed files as Microsoft cabinets holding one file.
This reader follows the published CAB format: the CFHEADER (with optional
reserved areas and previous/next cabinet names), CFFOLDER entries, CFFILE
entries and the CFDATA blocks of each folder.  MSZIP folders are decoded here
with zlib: every CFDATA block is ``"CK"`` plus a complete raw deflate stream
whose back-references may reach into the previous block's output, so each block
is inflated with the last 32 KB of output as its preset dictionary.  Stored
(uncompressed) folders are copied.  LZX and Quantum folders are handed to the
``cabextract`` program when it is installed, else refused with a clear error.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from typing import List, Optional, Union

from ..errors import SymbolError

CAB_MAGIC = b"MSCF"
COMP_NONE, COMP_MSZIP, COMP_QUANTUM, COMP_LZX = 0, 1, 2, 3
_COMP_NAMES = {0: "stored", 1: "MSZIP", 2: "Quantum", 3: "LZX"}
FLAG_PREV, FLAG_NEXT, FLAG_RESERVE = 1, 2, 4
MSZIP_BLOCK = 32768
DEFAULT_MAX_OUTPUT = 1 << 30

_HDR = struct.Struct("<4sIIIIIBBHHHHH")     # 36 bytes
_FOLDER = struct.Struct("<IHH")
_FILE = struct.Struct("<IIHHHH")
_DATA = struct.Struct("<IHH")


@dataclass(frozen=True)
class CabEntry:
    """A file inside a cabinet."""

    name: str
    size: int
    folder: int
    folder_offset: int


def _cab_error(msg: str, path: str, offset: Optional[int] = None, expected: Optional[str] = None) -> SymbolError:
    return SymbolError(f"cabinet: {msg}", path=path, offset=offset, expected=expected)


def is_cab(data: bytes) -> bool:
    return data[:4] == CAB_MAGIC


class Cabinet:
    """A parsed cabinet held in memory (symbol-store CABs are one file each)."""

    def __init__(self, data: bytes, path: str = "<memory>") -> None:
        self.data = data
        self.path = path
        n = len(data)
        if n < _HDR.size or data[:4] != CAB_MAGIC:
            raise _cab_error("not a cabinet", path, 0, "'MSCF' signature")
        (_sig, _r1, cb_cabinet, _r2, coff_files, _r3, vminor, vmajor, n_folders, n_files,
         flags, _set_id, _icab) = _HDR.unpack_from(data, 0)
        if vmajor != 1:
            raise _cab_error(f"unsupported version {vmajor}.{vminor}", path, 25, "1.3")
        pos = _HDR.size
        self.reserve_data = 0
        folder_reserve = 0
        if flags & FLAG_RESERVE:
            if pos + 4 > n:
                raise _cab_error("truncated reserve fields", path, pos)
            cb_hdr, folder_reserve, self.reserve_data = struct.unpack_from("<HBB", data, pos)
            pos += 4 + cb_hdr
        for flag in (FLAG_PREV, FLAG_NEXT):
            if flags & flag:
                for _ in range(2):          # cabinet name, disk name
                    nul = data.find(b"\x00", pos, min(n, pos + 256))
                    if nul < 0:
                        raise _cab_error("unterminated cabinet chain name", path, pos)
                    pos = nul + 1
        if flags & (FLAG_PREV | FLAG_NEXT):
            raise _cab_error("multi-cabinet sets are not supported", path, 34, "a single cabinet")
        self.folders = []
        for i in range(n_folders):
            if pos + _FOLDER.size > n:
                raise _cab_error(f"truncated CFFOLDER {i}", path, pos)
            self.folders.append(_FOLDER.unpack_from(data, pos))
            pos += _FOLDER.size + folder_reserve
        self.entries: List[CabEntry] = []
        pos = coff_files
        for i in range(n_files):
            if pos + _FILE.size > n:
                raise _cab_error(f"truncated CFFILE {i}", path, pos)
            size, foff, ifolder, _d, _t, _a = _FILE.unpack_from(data, pos)
            nul = data.find(b"\x00", pos + _FILE.size, min(n, pos + _FILE.size + 512))
            if nul < 0:
                raise _cab_error(f"unterminated name of CFFILE {i}", path, pos)
            name = data[pos + _FILE.size:nul].decode("utf-8", "replace")
            self.entries.append(CabEntry(name, size, ifolder, foff))
            pos = nul + 1
        if not self.entries:
            raise _cab_error("no files", path, 28, "at least one file")

    def compression(self, folder: int) -> str:
        return _COMP_NAMES.get(self.folders[folder][2] & 0xF, "unknown")

    def _folder_bytes(self, index: int, limit: int) -> bytes:
        data, path = self.data, self.path
        if index >= len(self.folders):
            raise _cab_error(f"file refers to folder {index} of {len(self.folders)}", path)
        start, n_blocks, comp = self.folders[index]
        ctype = comp & 0xF
        if ctype in (COMP_QUANTUM, COMP_LZX):
            raise _LzxNeeded(_COMP_NAMES[ctype])
        if ctype not in (COMP_NONE, COMP_MSZIP):
            raise _cab_error(f"unknown compression type {comp:#x}", path, None, "stored, MSZIP, LZX")
        out = bytearray()
        pos = start
        n = len(data)
        for b in range(n_blocks):
            if len(out) >= limit:
                break
            if pos + _DATA.size > n:
                raise _cab_error(f"truncated CFDATA header {b}", path, pos)
            _csum, cb_data, cb_uncomp = _DATA.unpack_from(data, pos)
            pos += _DATA.size + self.reserve_data
            if pos + cb_data > n:
                raise _cab_error(f"CFDATA block {b} runs past the end (truncated)", path, pos,
                                 f"{cb_data} bytes")
            block = data[pos:pos + cb_data]
            pos += cb_data
            if cb_uncomp > MSZIP_BLOCK:
                raise _cab_error(f"CFDATA block {b} claims {cb_uncomp} bytes", path, pos, "at most 32768")
            if len(out) + cb_uncomp > limit + MSZIP_BLOCK:
                raise _cab_error(f"content exceeds the size limit of {limit} bytes", path)
            if ctype == COMP_NONE:
                if cb_data != cb_uncomp:
                    raise _cab_error(f"stored block {b} has {cb_data} bytes, header says {cb_uncomp}", path)
                out += block
                continue
            if block[:2] != b"CK":
                raise _cab_error(f"MSZIP block {b} lacks the 'CK' signature", path, pos - cb_data, "'CK'")
            window = bytes(out[-MSZIP_BLOCK:])
            try:
                z = zlib.decompressobj(-15, zdict=window) if window else zlib.decompressobj(-15)
                plain = z.decompress(block[2:], cb_uncomp + 1)
            except zlib.error as exc:
                raise _cab_error(f"MSZIP block {b} does not inflate: {exc}", path, pos - cb_data) from None
            if len(plain) != cb_uncomp:
                raise _cab_error(f"MSZIP block {b} inflates to {len(plain)} bytes, header says {cb_uncomp}",
                                 path, pos - cb_data)
            out += plain
        return bytes(out)

    def extract(self, entry: Optional[CabEntry] = None, max_size: int = DEFAULT_MAX_OUTPUT) -> bytes:
        """The bytes of ``entry`` (default: the first file)."""
        e = entry or self.entries[0]
        if e.size > max_size:
            raise _cab_error(f"{e.name} is {e.size} bytes, over the limit of {max_size}", self.path)
        blob = self._folder_bytes(e.folder, e.folder_offset + e.size)
        if e.folder_offset + e.size > len(blob):
            raise _cab_error(f"{e.name} extends past its folder's data", self.path)
        return blob[e.folder_offset:e.folder_offset + e.size]


class _LzxNeeded(Exception):
    pass


def _cabextract(src: str, max_size: int) -> bytes:
    import shutil
    import subprocess
    import tempfile
    tool = shutil.which("cabextract")
    if not tool:
        raise SymbolError("LZX/Quantum-compressed cabinet: dumpkit decodes MSZIP only; "
                          "install cabextract to decode this one", path=src,
                          hint="apt-get install cabextract")
    with tempfile.TemporaryDirectory(prefix="dumpkit-cab-") as tmp:
        try:
            subprocess.run([tool, "-q", "-d", tmp, src], check=True, timeout=120,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except (subprocess.SubprocessError, OSError) as exc:
            raise SymbolError(f"cabextract failed: {exc}", path=src) from None
        files = [os.path.join(r, f) for r, _d, fs in os.walk(tmp) for f in fs]
        if len(files) != 1:
            raise SymbolError(f"cabinet holds {len(files)} files", path=src, expected="one file")
        if os.path.getsize(files[0]) > max_size:
            raise SymbolError("cabinet content exceeds the size limit", path=src)
        with open(files[0], "rb") as f:
            return f.read()


def extract_single(source: Union[str, os.PathLike, bytes], max_size: int = DEFAULT_MAX_OUTPUT,
                   path: Optional[str] = None) -> bytes:
    """Content of the single file in a cabinet given as a path or as bytes."""
    if isinstance(source, (bytes, bytearray)):
        data, label = bytes(source), path or "<memory>"
    else:
        label = os.fspath(source)
        try:
            if os.path.getsize(label) > max_size + (1 << 20) * 64:
                raise SymbolError("cabinet too large", path=label)
            with open(label, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise SymbolError(f"cannot read cabinet: {exc.strerror or exc}", path=label) from None
    cab = Cabinet(data, label)
    try:
        return cab.extract(max_size=max_size)
    except _LzxNeeded:
        if isinstance(source, (bytes, bytearray)):
            import tempfile
            with tempfile.NamedTemporaryFile(suffix=".cab", delete=False) as t:
                t.write(data)
            try:
                return _cabextract(t.name, max_size)
            finally:
                os.unlink(t.name)
        return _cabextract(label, max_size)
