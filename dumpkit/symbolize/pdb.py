"""A PDB reader for symbolization: identity, sections, publics and procedures.

Only what "which function holds this RVA" needs is read, and only when asked:

* :meth:`Pdb.open` reads the MSF directory, the PDB info stream (GUID, age,
  named streams) and the DBI header (stream numbers, module list, optional
  debug header with the section headers and OMAP streams);
* :meth:`Pdb.publics` walks the symbol record stream for ``S_PUB32`` records;
* :meth:`Pdb.functions` walks the module streams for procedure records
  (``S_GPROC32``/``S_LPROC32`` and their ``_ID``/DPC variants, thunks), which carry
  code sizes, so an address past a function's end is not blamed on it;
* :meth:`Pdb.lookup` builds a sorted index once and answers with ``bisect``.

Structure damage in the container or the headers raises :class:`PdbError`;
damage inside a symbol stream keeps what was read before it and warns with a
:class:`~dumpkit.errors.DumpWarning`.
"""
from __future__ import annotations

import bisect
import os
import struct
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Tuple, Union

from ..errors import DumpWarning, PdbError
from .msf import MsfFile
from .undname import undecorate

# fixed stream numbers
STREAM_PDB_INFO = 1
STREAM_TPI = 2
STREAM_DBI = 3
STREAM_IPI = 4

# symbol record kinds
S_PUB32 = 0x110E
S_LPROC32 = 0x110F
S_GPROC32 = 0x1110
S_THUNK32 = 0x1102
S_LPROC32_ID = 0x1146
S_GPROC32_ID = 0x1147
S_LPROC32_DPC = 0x1155
S_LPROC32_DPC_ID = 0x1156
PROC_KINDS = frozenset((S_LPROC32, S_GPROC32, S_LPROC32_ID, S_GPROC32_ID, S_LPROC32_DPC, S_LPROC32_DPC_ID))

# optional debug header slots
DBG_FPO, DBG_EXCEPTION, DBG_FIXUP, DBG_OMAP_TO_SRC, DBG_OMAP_FROM_SRC = 0, 1, 2, 3, 4
DBG_SECTION_HDR, DBG_TOKEN_RID, DBG_XDATA, DBG_PDATA, DBG_NEW_FPO, DBG_SECTION_HDR_ORIG = 5, 6, 7, 8, 9, 10

PUB_FLAG_CODE, PUB_FLAG_FUNCTION, PUB_FLAG_MANAGED, PUB_FLAG_MSIL = 1, 2, 4, 8

_INFO_HDR = struct.Struct("<III16s")
_DBI_HDR = struct.Struct("<iIIHHHHHHiiiiiIiiHHI")     # 64 bytes
_MODI_HDR = struct.Struct("<I H2x iiI H2x II HHIII H2x III")  # 64 bytes
_SECTION = struct.Struct("<8sIIIIIIHHI")               # IMAGE_SECTION_HEADER, 40 bytes
_REC_HDR = struct.Struct("<HH")
_PUB32 = struct.Struct("<IIH")
_PROC32 = struct.Struct("<IIIIIIIIHB")                 # parent..flags, 35 bytes
_THUNK32 = struct.Struct("<IIIIHHB")                   # parent,end,next,off,seg,len,ord
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")

MAX_NAME = 4096          # longest symbol name kept (longer ones are cut)
MAX_WARNINGS = 8         # per stream kind, so a hostile file cannot flood the log


class PublicSymbol(NamedTuple):
    """An ``S_PUB32`` record: decorated ``name``, ``segment:offset``, mapped ``rva`` (None if unmappable)."""

    name: str
    segment: int
    offset: int
    rva: Optional[int]
    flags: int

    @property
    def is_function(self) -> bool:
        return bool(self.flags & (PUB_FLAG_CODE | PUB_FLAG_FUNCTION))


class Procedure(NamedTuple):
    """A procedure (or thunk) record from a module stream."""

    name: str
    rva: int
    size: int
    module: int          # index into :attr:`Pdb.modules`
    kind: int


@dataclass(frozen=True)
class SectionHeader:
    """One ``IMAGE_SECTION_HEADER`` as stored in the PDB's section header stream."""

    name: str
    virtual_size: int
    virtual_address: int
    characteristics: int


@dataclass(frozen=True)
class ModuleInfo:
    """A DBI module (one object file or import library member)."""

    index: int
    name: str
    object_name: str
    symbol_stream: Optional[int]   # None = no stream (0xFFFF)
    symbol_bytes: int
    c11_bytes: int
    c13_bytes: int


@dataclass(frozen=True)
class SymbolHit:
    """What :meth:`Pdb.symbol_at` found: the symbol, where it starts, its size when known."""

    name: str                     # undecorated as a debugger shows it
    raw_name: str                 # as stored (decorated for C++ publics)
    rva: int
    size: Optional[int]
    offset: int
    kind: str                     # 'function' (procedure record) or 'public'


@dataclass
class DbiHeader:
    version_signature: int
    version: int
    age: int
    global_stream: int
    build_number: int
    public_stream: int
    pdb_dll_version: int
    symbol_record_stream: int
    pdb_dll_rbld: int
    modi_size: int
    section_contrib_size: int
    section_map_size: int
    source_info_size: int
    type_server_map_size: int
    mfc_type_server_index: int
    optional_dbg_header_size: int
    ec_size: int
    flags: int
    machine: int
    debug_streams: List[int] = field(default_factory=list)


def _cstr(data: bytes, start: int, end: int) -> Tuple[str, int]:
    """NUL-terminated string in data[start:end]; returns (text, position after the NUL)."""
    nul = data.find(b"\x00", start, end)
    stop = end if nul < 0 else nul
    raw = data[start:min(stop, start + MAX_NAME)]
    return raw.decode("utf-8", "replace"), (end if nul < 0 else nul + 1)


class Pdb:
    """A PDB 7.0 file opened for symbol lookup.

    >>> pdb = Pdb.open("amdppm.pdb")            # doctest: +SKIP
    >>> pdb.identity, pdb.lookup(0x234c)        # doctest: +SKIP
    ('1C19FDDB27BB3399D9B45973EFEAFCF31', ('WriteIoMemRawEx', 112))
    """

    def __init__(self, msf: MsfFile) -> None:
        self.msf = msf
        self.path = msf.path
        self._publics: Optional[List[PublicSymbol]] = None
        self._procs: Optional[List[Procedure]] = None
        self._modules: Optional[List[ModuleInfo]] = None
        self._index = None
        self._read_info()
        self._read_dbi()
        self._sections: Optional[List[SectionHeader]] = None
        self._orig_sections: Optional[List[SectionHeader]] = None
        self._omap: Optional[Tuple[List[int], List[int]]] = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Union[str, os.PathLike]) -> "Pdb":
        """Open a PDB file (memory-mapped; reads only the headers now)."""
        msf = MsfFile.open(path)
        try:
            return cls(msf)
        except BaseException:
            msf.close()
            raise

    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray], path: str = "<memory>") -> "Pdb":
        return cls(MsfFile.from_bytes(data, path))

    def close(self) -> None:
        self.msf.close()

    def __enter__(self) -> "Pdb":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _err(self, message: str, offset: Optional[int] = None, expected: Optional[str] = None) -> PdbError:
        return PdbError(message, path=self.path, offset=offset, expected=expected)

    def _warn(self, message: str) -> None:
        warnings.warn(f"{self.path}: {message}", DumpWarning, stacklevel=3)

    # ------------------------------------------------------------------ info stream
    def _read_info(self) -> None:
        d = self.msf.stream(STREAM_PDB_INFO, "PDB info")
        if len(d) < _INFO_HDR.size:
            raise self._err(f"PDB info stream is {len(d)} bytes", None, "at least 28 bytes")
        self.version, self.signature, self.info_age, g = _INFO_HDR.unpack_from(d, 0)
        self.guid = uuid.UUID(bytes_le=g)
        self.named_streams: Dict[str, int] = {}
        try:
            self._read_named_streams(d, _INFO_HDR.size)
        except (struct.error, IndexError, ValueError):
            self._warn("named stream map of the PDB info stream is damaged; ignored")

    def _read_named_streams(self, d: bytes, pos: int) -> None:
        if pos + 4 > len(d):
            return
        strsize = _U32.unpack_from(d, pos)[0]
        pos += 4
        if pos + strsize > len(d):
            raise ValueError("string buffer")
        strbase, pos = pos, pos + strsize
        size, capacity = struct.unpack_from("<II", d, pos)
        pos += 8
        if size > capacity or capacity > 1 << 20:
            raise ValueError("hash table size")
        nwords = _U32.unpack_from(d, pos)[0]
        pos += 4
        if nwords > (len(d) - pos) // 4:
            raise ValueError("present bit vector")
        present = struct.unpack_from(f"<{nwords}I", d, pos)
        pos += 4 * nwords
        ndel = _U32.unpack_from(d, pos)[0]
        pos += 4
        if ndel > (len(d) - pos) // 4:
            raise ValueError("deleted bit vector")
        pos += 4 * ndel
        for bucket in range(min(capacity, nwords * 32)):
            if not present[bucket >> 5] >> (bucket & 31) & 1:
                continue
            key, value = struct.unpack_from("<II", d, pos)
            pos += 8
            if key < strsize:
                name, _ = _cstr(d, strbase + key, strbase + strsize)
                self.named_streams[name] = value

    # ------------------------------------------------------------------ DBI stream
    def _read_dbi(self) -> None:
        self.dbi: Optional[DbiHeader] = None
        self._dbi_data = b""
        if not self.msf.has_stream(STREAM_DBI) or self.msf.stream_size(STREAM_DBI) == 0:
            return
        d = self.msf.stream(STREAM_DBI, "DBI")
        if len(d) < _DBI_HDR.size:
            raise self._err(f"DBI stream is {len(d)} bytes", None, "a 64-byte DBI header")
        h = DbiHeader(*_DBI_HDR.unpack_from(d, 0)[:19])
        if h.version_signature != -1:
            raise self._err(f"old-format DBI header (signature {h.version_signature})", None,
                            "DBI version signature -1 (VC 7.0 and later)")
        sizes = (h.modi_size, h.section_contrib_size, h.section_map_size, h.source_info_size,
                 h.type_server_map_size, h.ec_size, h.optional_dbg_header_size)
        if any(s < 0 for s in sizes) or 64 + sum(sizes) > len(d):
            raise self._err(f"DBI substream sizes {sizes} do not fit the {len(d)}-byte stream", None,
                            "non-negative sizes summing to the stream size")
        opt = 64 + sum(sizes[:-1])
        n = h.optional_dbg_header_size // 2
        h.debug_streams = list(struct.unpack_from(f"<{n}H", d, opt))
        self.dbi = h
        self._dbi_data = d

    @property
    def age(self) -> int:
        """The age debuggers compare with the image's CodeView age (the DBI age)."""
        return self.dbi.age if self.dbi is not None else self.info_age

    @property
    def identity(self) -> str:
        """The symbol-store key: GUID as 32 upper-case hex digits, then the age in hex."""
        return f"{self.guid.hex.upper()}{self.age:X}"

    @property
    def machine(self) -> Optional[int]:
        return self.dbi.machine if self.dbi is not None else None

    def _debug_stream(self, slot: int) -> Optional[int]:
        if self.dbi is None or slot >= len(self.dbi.debug_streams):
            return None
        s = self.dbi.debug_streams[slot]
        if s == 0xFFFF or not self.msf.has_stream(s):
            return None
        return s

    def debug_stream_data(self, slot: int) -> Optional[bytes]:
        """The bytes of DBI optional debug stream ``slot`` (``DBG_FPO``, ``DBG_NEW_FPO`` ...), or None."""
        s = self._debug_stream(slot)
        return None if s is None else self.msf.stream(s, "optional debug stream")

    # ------------------------------------------------------------------ sections / OMAP
    def _read_sections(self, slot: int) -> List[SectionHeader]:
        s = self._debug_stream(slot)
        if s is None:
            return []
        d = self.msf.stream(s, "section headers")
        out = []
        for i in range(len(d) // _SECTION.size):
            name, vsize, va, _rs, _rp, _rel, _ln, _nr, _nl, ch = _SECTION.unpack_from(d, i * _SECTION.size)
            out.append(SectionHeader(name.rstrip(b"\x00").decode("latin-1"), vsize, va, ch))
        return out

    @property
    def sections(self) -> List[SectionHeader]:
        """The image's section headers (segment N of a symbol is ``sections[N-1]``)."""
        if self._sections is None:
            self._sections = self._read_sections(DBG_SECTION_HDR)
        return self._sections

    def _load_omap(self) -> None:
        if self._omap is not None:
            return
        s = self._debug_stream(DBG_OMAP_FROM_SRC)
        src: List[int] = []
        dst: List[int] = []
        if s is not None:
            d = self.msf.stream(s, "OMAP from source")
            n = len(d) // 8
            flat = struct.unpack_from(f"<{2 * n}I", d, 0) if n else ()
            pairs = sorted(zip(flat[0::2], flat[1::2]))
            src = [p[0] for p in pairs]
            dst = [p[1] for p in pairs]
            self._orig_sections = self._read_sections(DBG_SECTION_HDR_ORIG) or None
        self._omap = (src, dst)

    def _omap_translate(self, rva: int) -> Optional[int]:
        src, dst = self._omap  # type: ignore[misc]
        i = bisect.bisect_right(src, rva) - 1
        if i < 0 or dst[i] == 0:
            return None
        return dst[i] + (rva - src[i])

    def to_rva(self, segment: int, offset: int) -> Optional[int]:
        """RVA of ``segment:offset`` (1-based segment), OMAP-translated when the PDB has OMAP."""
        self._load_omap()
        has_omap = bool(self._omap and self._omap[0])
        secs = (self._orig_sections if has_omap and self._orig_sections else self.sections)
        if not 1 <= segment <= len(secs):
            return None
        rva = secs[segment - 1].virtual_address + offset
        if has_omap:
            return self._omap_translate(rva)
        return rva

    # ------------------------------------------------------------------ publics
    def public_symbols(self) -> List[PublicSymbol]:
        """Every ``S_PUB32`` record of the symbol record stream, in stream order."""
        if self._publics is not None:
            return self._publics
        out: List[PublicSymbol] = []
        if self.dbi is not None and self.msf.has_stream(self.dbi.symbol_record_stream):
            d = self.msf.stream(self.dbi.symbol_record_stream, "symbol records")
            self._load_omap()
            to_rva = self.to_rva
            n = len(d)
            pos = 0
            unpack_hdr = _REC_HDR.unpack_from
            unpack_pub = _PUB32.unpack_from
            warned = 0
            while pos + 4 <= n:
                reclen, kind = unpack_hdr(d, pos)
                end = pos + 2 + reclen
                if reclen < 2 or end > n:
                    self._warn(f"symbol record stream damaged at offset {pos:#x} (record length {reclen}); "
                               f"kept {len(out)} publics read before it")
                    break
                if kind == S_PUB32:
                    if reclen < 2 + _PUB32.size:
                        if warned < MAX_WARNINGS:
                            self._warn(f"short S_PUB32 record at offset {pos:#x} skipped")
                            warned += 1
                    else:
                        flags, off, seg = unpack_pub(d, pos + 4)
                        name, _ = _cstr(d, pos + 14, end)
                        out.append(PublicSymbol(name, seg, off, to_rva(seg, off), flags))
                pos = end
        self._publics = out
        return out

    def publics(self) -> List[Tuple[int, str]]:
        """``[(rva, decorated name)]`` sorted by RVA (publics whose segment does not map are left out)."""
        return sorted((p.rva, p.name) for p in self.public_symbols() if p.rva is not None)

    # ------------------------------------------------------------------ modules / procedures
    @property
    def modules(self) -> List[ModuleInfo]:
        """The DBI module list (object files) with their symbol stream numbers."""
        if self._modules is not None:
            return self._modules
        out: List[ModuleInfo] = []
        if self.dbi is not None:
            d = self._dbi_data
            pos, end = 64, 64 + self.dbi.modi_size
            while pos + _MODI_HDR.size <= end:
                f = _MODI_HDR.unpack_from(d, pos)
                stream, symbytes, c11, c13 = f[9], f[10], f[11], f[12]
                name, p2 = _cstr(d, pos + _MODI_HDR.size, end)
                obj, p3 = _cstr(d, p2, end)
                out.append(ModuleInfo(len(out), name, obj, None if stream == 0xFFFF else stream,
                                      symbytes, c11, c13))
                pos = (p3 + 3) & ~3
                if len(out) > 1_000_000:  # pragma: no cover - impossible within a sane stream size
                    break
        self._modules = out
        return out

    def procedures(self) -> List[Procedure]:
        """Every procedure and thunk record of every module stream (unsorted)."""
        if self._procs is not None:
            return self._procs
        out: List[Procedure] = []
        self._load_omap()
        to_rva = self.to_rva
        unpack_hdr = _REC_HDR.unpack_from
        unpack_proc = _PROC32.unpack_from
        warned = 0
        for mod in self.modules:
            s = mod.symbol_stream
            if s is None or mod.symbol_bytes <= 4 or not self.msf.has_stream(s):
                continue
            try:
                d = self.msf.stream(s, f"module {mod.name}")
            except PdbError as exc:
                if warned < MAX_WARNINGS:
                    self._warn(f"module stream of {mod.name} unreadable: {exc.message}")
                    warned += 1
                continue
            n = min(len(d), mod.symbol_bytes)
            pos = 4                      # CV_SIGNATURE_C13
            while pos + 4 <= n:
                reclen, kind = unpack_hdr(d, pos)
                end = pos + 2 + reclen
                if reclen < 2 or end > n:
                    if warned < MAX_WARNINGS:
                        self._warn(f"module stream of {mod.name} damaged at offset {pos:#x}")
                        warned += 1
                    break
                if kind in PROC_KINDS and reclen >= 2 + _PROC32.size:
                    (_p, _e, _n, size, _ds, _de, _t, off, seg, _fl) = unpack_proc(d, pos + 4)
                    rva = to_rva(seg, off)
                    if rva is not None:
                        name, _ = _cstr(d, pos + 4 + _PROC32.size, end)
                        out.append(Procedure(name, rva, size, mod.index, kind))
                elif kind == S_THUNK32 and reclen >= 2 + _THUNK32.size:
                    (_p, _e, _n, off, seg, length, _ord) = _THUNK32.unpack_from(d, pos + 4)
                    rva = to_rva(seg, off)
                    if rva is not None:
                        name, _ = _cstr(d, pos + 4 + _THUNK32.size, end)
                        out.append(Procedure(name, rva, length, mod.index, kind))
                pos = end
        self._procs = out
        return out

    def functions(self) -> List[Tuple[int, int, str]]:
        """``[(rva, size, name)]`` of procedures, sorted by RVA, one per start address."""
        seen = {}
        for p in self.procedures():
            if p.rva not in seen or (seen[p.rva][1] == 0 and p.size):
                seen[p.rva] = (p.rva, p.size, p.name)
        return [seen[k] for k in sorted(seen)]

    # ------------------------------------------------------------------ lookup
    def _build_index(self) -> None:
        funcs = self.functions()
        self._f_starts = [f[0] for f in funcs]
        self._f_ends = [f[0] + f[1] for f in funcs]
        self._f_names = [f[2] for f in funcs]
        best: Dict[int, PublicSymbol] = {}
        for p in self.public_symbols():
            if p.rva is None:
                continue
            cur = best.get(p.rva)
            if cur is None or (p.is_function and not cur.is_function):
                best[p.rva] = p
        order = sorted(best)
        self._p_starts = order
        self._p_syms = [best[r] for r in order]
        secs = sorted((s.virtual_address, s.virtual_address + max(s.virtual_size, 1)) for s in self.sections)
        self._s_starts = [s[0] for s in secs]
        self._s_ends = [s[1] for s in secs]
        self._index = True

    def _section_of(self, rva: int) -> Optional[int]:
        i = bisect.bisect_right(self._s_starts, rva) - 1
        if i >= 0 and rva < self._s_ends[i]:
            return i
        return None

    def symbol_at(self, rva: int) -> Optional[SymbolHit]:
        """The procedure whose range holds ``rva``, else the nearest public at or below it
        in the same section, else None."""
        if self._index is None:
            self._build_index()
        i = bisect.bisect_right(self._f_starts, rva) - 1
        if i >= 0 and rva < self._f_ends[i]:
            start = self._f_starts[i]
            name = self._f_names[i]
            return SymbolHit(name, name, start, self._f_ends[i] - start, rva - start, "function")
        j = bisect.bisect_right(self._p_starts, rva) - 1
        if j < 0:
            return None
        p = self._p_syms[j]
        if self._s_starts:
            sec = self._section_of(rva)
            if sec is None or self._section_of(p.rva) != sec:   # type: ignore[arg-type]
                return None
        return SymbolHit(undecorate(p.name), p.name, p.rva, None, rva - p.rva, "public")  # type: ignore[operator]

    def lookup(self, rva: int) -> Optional[Tuple[str, int]]:
        """``(name, offset)`` of the symbol holding ``rva`` (see :meth:`symbol_at`), or None."""
        hit = self.symbol_at(rva)
        return None if hit is None else (hit.name, hit.offset)

    def __repr__(self) -> str:
        return f"<Pdb {os.path.basename(self.path)!r} {self.identity} streams={self.msf.num_streams}>"
