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
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Union

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
S_PROCREF = 0x1125
S_LPROCREF = 0x1127
GSI_HASH_SIGNATURE = 0xFFFFFFFF
_PSGSI_HDR = struct.Struct("<IIIIHHII")                # publics stream header, 28 bytes
_GSI_HASH_HDR = struct.Struct("<IIII")                 # signature, version, records size, buckets
INDEX_CACHE_VERSION = 1

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


def default_index_dir() -> str:
    base = os.environ.get("DUMPKIT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dumpkit")
    return os.path.join(base, "pdbindex")


def _u16(a: Any, o: Any) -> Any:
    """Little-endian u16 at each byte offset ``o`` of the uint8 array ``a`` (int64 result)."""
    import numpy as np
    if len(o) and not (o & 1).any():                 # aligned (the usual case): one gather
        return a[:len(a) & ~1].view("<u2")[o >> 1].astype(np.int64)
    return a[o].astype(np.int64) | (a[o + 1].astype(np.int64) << 8)


def _u32(a: Any, o: Any) -> Any:
    import numpy as np
    if len(o) and not (o & 3).any():
        return a[:len(a) & ~3].view("<u4")[o >> 2].astype(np.int64)
    return (a[o].astype(np.int64) | (a[o + 1].astype(np.int64) << 8) | (a[o + 2].astype(np.int64) << 16)
            | (a[o + 3].astype(np.int64) << 24))


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
        self._index: Optional[bool] = None
        self._read_info()
        self._read_dbi()
        self._sections: Optional[List[SectionHeader]] = None
        self._orig_sections: Optional[List[SectionHeader]] = None
        self._omap: Optional[Tuple[List[int], List[int]]] = None

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path: Union[str, os.PathLike], *, index_cache: Union[None, bool, str] = None) -> "Pdb":
        """Open a PDB file (memory-mapped; reads only the headers now).

        ``index_cache``: keep the lookup index on disk, keyed by the PDB's GUID, age and size,
        so the next process's first lookup skips building it: ``True`` for
        ``$DUMPKIT_CACHE/pdbindex`` (``~/.cache/dumpkit/pdbindex``), or a folder.
        """
        msf = MsfFile.open(path)
        try:
            pdb = cls(msf)
        except BaseException:
            msf.close()
            raise
        if index_cache:
            pdb.index_cache = index_cache if isinstance(index_cache, str) else default_index_dir()
        return pdb

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
    def _symbol_records(self) -> bytes:
        """The symbol record stream (publics and globals records), read once."""
        d = self.__dict__.get("_symrec")
        if d is None:
            d = b""
            if self.dbi is not None and self.msf.has_stream(self.dbi.symbol_record_stream):
                d = self.msf.stream(self.dbi.symbol_record_stream, "symbol records")
            self._symrec = d
        return d

    def _walk_publics(self) -> List[int]:
        """Offsets of every S_PUB32 record, by walking the symbol record stream (the fallback when
        the publics stream's address map is missing or damaged)."""
        d = self._symbol_records()
        out: List[int] = []
        n = len(d)
        pos = 0
        unpack_hdr = _REC_HDR.unpack_from
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
                    out.append(pos)
            pos = end
        return out

    def _gsi_records(self, stream: int, base: int, size: Optional[int], what: str) -> Any:
        """Symbol-record offsets listed by a GSI hash table (globals stream, or the hash part of
        the publics stream), as a numpy array; None when the table is absent or damaged."""
        import numpy as np
        if not self.msf.has_stream(stream):
            return None
        d = self.msf.stream(stream, what)
        if base + _GSI_HASH_HDR.size > len(d):
            return None
        sig, _ver, hr_size, _nb = _GSI_HASH_HDR.unpack_from(d, base)
        if sig != GSI_HASH_SIGNATURE or hr_size % 8 or base + 16 + hr_size > len(d) or \
                (size is not None and hr_size + 16 > size):
            return None
        recs = np.frombuffer(d, dtype="<u4", count=hr_size // 4, offset=base + 16)
        return recs[0::2].astype(np.int64) - 1            # stored as offset + 1

    def _address_map(self) -> Any:
        """Offsets of the S_PUB32 records in address order, from the publics stream's address map
        (the linker writes it sorted by segment:offset); None when it is absent or damaged."""
        import numpy as np
        if self.dbi is None or not self.msf.has_stream(self.dbi.public_stream):
            return None
        d = self.msf.stream(self.dbi.public_stream, "publics")
        if len(d) < _PSGSI_HDR.size:
            return None
        sym_hash, addr_map = _PSGSI_HDR.unpack_from(d, 0)[:2]
        start = _PSGSI_HDR.size + sym_hash
        if addr_map % 4 or start + addr_map > len(d):
            return None
        return np.frombuffer(d, dtype="<u4", count=addr_map // 4, offset=start).astype(np.int64)

    def _rva_np(self, seg: Any, off: Any) -> Any:
        """Vectorised :meth:`to_rva`: int64 RVAs, -1 where ``segment:offset`` does not map."""
        import numpy as np
        self._load_omap()
        has_omap = bool(self._omap and self._omap[0])
        secs = (self._orig_sections if has_omap and self._orig_sections else self.sections)
        seg = seg.astype(np.int64)
        ok = (seg >= 1) & (seg <= len(secs))
        va = np.array([0] + [x.virtual_address for x in secs], dtype=np.int64)
        rva = np.where(ok, va[np.where(ok, seg, 0)] + off.astype(np.int64), -1)
        if has_omap:
            src = np.array(self._omap[0], dtype=np.int64)        # type: ignore[index]
            dst = np.array(self._omap[1], dtype=np.int64)        # type: ignore[index]
            i = np.searchsorted(src, rva, side="right") - 1
            good = ok & (i >= 0)
            ic = np.where(good, i, 0)
            good &= dst[ic] != 0
            rva = np.where(good, dst[ic] + (rva - src[ic]), -1)
        return rva

    def _public_table(self) -> Tuple[Any, Any, Any, Any, bool]:
        """(record offsets, flags, segment, offset, in address order) of every well-formed S_PUB32
        record, numpy: in the address map's order when the publics stream has a sound one,
        else in record-stream order (found by walking the stream)."""
        t = self.__dict__.get("_pubtab")
        if t is not None:
            return t
        import numpy as np
        d = self._symbol_records()
        a = np.frombuffer(d, dtype=np.uint8)
        offs = self._address_map()
        by_address = offs is not None
        if offs is not None:
            ok = (offs >= 0) & (offs + 4 + _PUB32.size <= len(d))
            if not ok.all():
                offs = None
            else:
                reclen = _u16(a, offs)
                good = (_u16(a, offs + 2) == S_PUB32) & (reclen >= 2 + _PUB32.size) & (offs + 2 + reclen <= len(d))
                if not good.all():
                    offs = None                               # a damaged map: walk the stream instead
        if offs is None:
            by_address = False
            offs = np.array(self._walk_publics(), dtype=np.int64)
        t = self._pubtab = (offs, _u32(a, offs + 4), _u16(a, offs + 12), _u32(a, offs + 8), by_address)
        return t

    def public_symbols(self) -> List[PublicSymbol]:
        """Every ``S_PUB32`` record of the symbol record stream, in stream order."""
        if self._publics is not None:
            return self._publics
        import numpy as np
        offs, flags, seg, off, _ = self._public_table()
        order = np.argsort(offs, kind="stable")             # record-stream order
        offs, flags, seg, off = offs[order], flags[order], seg[order], off[order]
        rva = self._rva_np(seg, off)
        d = self._symbol_records()
        names = self._names(d, offs + 4 + _PUB32.size, offs + 2 + _u16(np.frombuffer(d, dtype=np.uint8), offs))
        rvas = [None if r < 0 else r for r in rva.tolist()]
        self._publics = list(map(PublicSymbol, names, seg.tolist(), off.tolist(), rvas, flags.tolist()))
        return self._publics

    @staticmethod
    def _names(d: bytes, starts: Any, limits: Any) -> List[str]:
        """NUL-terminated names at ``starts`` in ``d``, each ending by ``limits`` (its record's end)
        and cut at MAX_NAME; the NULs are found with numpy, one pass over the stream."""
        import numpy as np
        a = np.frombuffer(d, dtype=np.uint8)
        nul = np.flatnonzero(a == 0)
        if len(nul):
            i = np.searchsorted(nul, starts)
            ends = np.where(i < len(nul), nul[np.minimum(i, len(nul) - 1)], len(d))
        else:
            ends = np.full(len(starts), len(d), dtype=np.int64)
        ends = np.minimum(np.minimum(ends, limits), starts + MAX_NAME)
        return [d[s:e].decode("utf-8", "replace") for s, e in zip(starts.tolist(), ends.tolist())]

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
        seen: Dict[int, Tuple[int, int, str]] = {}
        for p in self.procedures():
            if p.rva not in seen or (seen[p.rva][1] == 0 and p.size):
                seen[p.rva] = (p.rva, p.size, p.name)
        return [seen[k] for k in sorted(seen)]

    # ------------------------------------------------------------------ lookup
    def _module_stream(self, index: int) -> bytes:
        """The symbol bytes of module ``index`` (kept: procedure names are decoded from them on demand)."""
        cache = self.__dict__.setdefault("_modstreams", {})
        d = cache.get(index)
        if d is None:
            mod = self.modules[index]
            d = b""
            if mod.symbol_stream is not None and self.msf.has_stream(mod.symbol_stream):
                d = self.msf.stream(mod.symbol_stream, f"module {mod.name}")[:mod.symbol_bytes]
            cache[index] = d
        return d

    def _walk_module(self, mod: ModuleInfo) -> List[Tuple[int, int, int]]:
        """(rva, size, record offset) of the procedures and thunks of one module, by walking it."""
        out: List[Tuple[int, int, int]] = []
        try:
            d = self._module_stream(mod.index)
        except PdbError as exc:
            self._warn(f"module stream of {mod.name} unreadable: {exc.message}")
            return out
        n = len(d)
        pos = 4
        while pos + 4 <= n:
            reclen, kind = _REC_HDR.unpack_from(d, pos)
            end = pos + 2 + reclen
            if reclen < 2 or end > n:
                self._warn(f"module stream of {mod.name} damaged at offset {pos:#x}")
                break
            if kind in PROC_KINDS and reclen >= 2 + _PROC32.size:
                f = _PROC32.unpack_from(d, pos + 4)
                rva = self.to_rva(f[8], f[7])
                if rva is not None:
                    out.append((rva, f[3], pos))
            elif kind == S_THUNK32 and reclen >= 2 + _THUNK32.size:
                f = _THUNK32.unpack_from(d, pos + 4)
                rva = self.to_rva(f[4], f[3])
                if rva is not None:
                    out.append((rva, f[5], pos))
            pos = end
        return out

    def _proc_refs(self) -> Dict[int, Any]:
        """Module index -> module-stream offsets of its procedures, from the globals stream's
        S_PROCREF/S_LPROCREF records (decoded with numpy, nothing per record)."""
        import numpy as np
        if self.dbi is None:
            return {}
        refs = self._gsi_records(self.dbi.global_stream, 0, None, "globals")
        sym = self._symbol_records()
        if refs is None or not len(refs):
            return {}
        a = np.frombuffer(sym, dtype=np.uint8)
        r = refs[(refs >= 0) & (refs + 14 <= len(sym))]
        kind = _u16(a, r + 2)
        r = r[(kind == S_PROCREF) | (kind == S_LPROCREF)]
        ib = _u32(a, r + 8)
        imod = _u16(a, r + 12) - 1
        out: Dict[int, Any] = {}
        if len(r):
            key = np.sort(imod << 32 | ib)
            new = np.ones(len(key), dtype=bool)
            new[1:] = key[1:] != key[:-1]
            key = key[new]
            imod, ib = key >> 32, key & 0xFFFFFFFF
            cuts = np.flatnonzero(imod[1:] != imod[:-1]) + 1
            bounds = [0] + cuts.tolist() + [len(imod)]
            for lo, hi in zip(bounds[:-1], bounds[1:]):
                out[int(imod[lo])] = ib[lo:hi]
        return out

    def _module_procs(self, mod: ModuleInfo, offs: Any) -> Optional[Tuple[Any, Any, Any]]:
        """(rva, size, record offset) of the procedure records at ``offs`` of a module stream,
        checked and decoded with numpy; None when none of them is a procedure record."""
        import numpy as np
        try:
            d = self._module_stream(mod.index)
        except PdbError:
            return None
        a = np.frombuffer(d, dtype=np.uint8)
        o = offs[(offs >= 4) & (offs + 4 + _PROC32.size <= len(d))]
        reclen = _u16(a, o)
        kind = _u16(a, o + 2)
        ok = np.zeros(len(o), dtype=bool)
        for k in PROC_KINDS:
            ok |= kind == k
        ok &= (reclen >= 2 + _PROC32.size) & (o + 2 + reclen <= len(d))
        o = o[ok]
        if not len(o):
            return None
        rva = self._rva_np(_u16(a, o + 36), _u32(a, o + 32))
        keep = rva >= 0
        return rva[keep], _u32(a, o + 16)[keep], o[keep]

    def _build_index(self) -> None:
        """Sorted numpy tables for :meth:`symbol_at`: procedures (from the globals' procedure
        references, module streams decoded with numpy; modules without references are walked),
        publics (from the publics stream's address map), sections.  Names are decoded per hit."""
        import numpy as np
        if self._load_index_cache():
            return
        refs = self._proc_refs()
        parts_r, parts_s, parts_m, parts_o = [], [], [], []
        for mod in self.modules:
            if mod.symbol_stream is None or mod.symbol_bytes <= 4 or not self.msf.has_stream(mod.symbol_stream):
                continue
            got = self._module_procs(mod, refs[mod.index]) if mod.index in refs else None
            if got is None:
                w = self._walk_module(mod)
                if not w:
                    continue
                arr = np.array(w, dtype=np.int64)
                got = (arr[:, 0], arr[:, 1], arr[:, 2])
            parts_r.append(got[0])
            parts_s.append(got[1])
            parts_o.append(got[2])
            parts_m.append(np.full(len(got[0]), mod.index, dtype=np.int64))
        cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0, dtype=np.int64))  # noqa: E731
        f_r, f_s, f_m, f_o = cat(parts_r), cat(parts_s), cat(parts_m), cat(parts_o)
        # one procedure per start: the first in module/record order, but one with a size over one
        # without (the records usually come in address order already: then there is nothing to do)
        if len(f_r) > 1 and not (f_r[1:] > f_r[:-1]).all():
            order = np.lexsort((f_o, f_m, f_s == 0, f_r))
            f_r, f_s, f_m, f_o = f_r[order], f_s[order], f_m[order], f_o[order]
            first = np.ones(len(f_r), dtype=bool)
            first[1:] = f_r[1:] != f_r[:-1]
            f_r, f_s, f_m, f_o = f_r[first], f_s[first], f_m[first], f_o[first]

        offs, flags, seg, off, _ = self._public_table()
        p_r = self._rva_np(seg, off)
        keep = p_r >= 0
        p_r, p_o = p_r[keep], offs[keep]
        if len(p_r) > 1 and not (p_r[1:] > p_r[:-1]).all():
            # one public per address: the first in stream order, but a function over a non-function
            is_fn = (flags[keep] & (PUB_FLAG_CODE | PUB_FLAG_FUNCTION)) != 0
            order = np.lexsort((p_o, ~is_fn, p_r))
            p_r, p_o = p_r[order], p_o[order]
            first = np.ones(len(p_r), dtype=bool)
            first[1:] = p_r[1:] != p_r[:-1]
            p_r, p_o = p_r[first], p_o[first]
        self._set_index(f_r, f_s, f_m, f_o, p_r, p_o)
        self._save_index_cache()

    def _set_index(self, f_r: Any, f_s: Any, f_m: Any, f_o: Any, p_r: Any, p_o: Any) -> None:
        self._tables = (f_r, f_s, f_m, f_o, p_r, p_o)
        self._f_starts = f_r
        self._f_ends = f_r + f_s
        self._f_where = (f_m, f_o)
        self._p_starts = p_r
        self._p_offs = p_o
        self._lookups = 0
        secs = sorted((s.virtual_address, s.virtual_address + max(s.virtual_size, 1)) for s in self.sections)
        self._s_starts = [s[0] for s in secs]
        self._s_ends = [s[1] for s in secs]
        self._index = True

    def _listify(self) -> None:
        # bisect over Python lists answers one lookup ~3x faster than numpy's searchsorted on a
        # scalar, but making the lists costs a few ms: done once a PDB has answered 256 lookups
        self._f_starts = self._f_starts.tolist()
        self._f_ends = self._f_ends.tolist()
        self._p_starts = self._p_starts.tolist()

    # -- optional on-disk index (issue 12): the tables above, keyed by GUID, age and file size
    index_cache: Optional[str] = None

    def _index_cache_file(self) -> Optional[str]:
        if not self.index_cache:
            return None
        return os.path.join(self.index_cache, f"{self.identity}-{self.msf.file_size}-v{INDEX_CACHE_VERSION}.npz")

    def _load_index_cache(self) -> bool:
        path = self._index_cache_file()
        if path is None or not os.path.exists(path):
            return False
        import numpy as np
        try:
            with np.load(path, allow_pickle=False) as z:
                t = [z[k].astype(np.int64) for k in ("f_r", "f_s", "f_m", "f_o", "p_r", "p_o")]
        except (OSError, ValueError, KeyError, EOFError):
            return False
        f_r, f_s, f_m, f_o, p_r, p_o = t
        if not (len(f_r) == len(f_s) == len(f_m) == len(f_o) and len(p_r) == len(p_o)):
            return False
        sym_n = len(self._symbol_records())
        nmods = len(self.modules)
        if (len(p_o) and (p_o.min() < 0 or p_o.max() + 4 + _PUB32.size > sym_n)) or \
                (len(f_m) and (f_m.min() < 0 or f_m.max() >= nmods or f_o.min() < 0)):
            return False                              # not this file's index: rebuild it
        self._set_index(f_r, f_s, f_m, f_o, p_r, p_o)
        return True

    def _save_index_cache(self) -> None:
        path = self._index_cache_file()
        if path is None:
            return
        import numpy as np
        f_r, f_s, f_m, f_o, p_r, p_o = self._tables
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = f"{path}.{os.getpid()}.tmp.npz"
            np.savez(tmp, f_r=f_r, f_s=f_s, f_m=f_m, f_o=f_o, p_r=p_r, p_o=p_o)
            os.replace(tmp, path)
        except OSError:
            pass

    def _proc_name(self, i: int) -> str:
        m, o = int(self._f_where[0][i]), int(self._f_where[1][i])
        d = self._module_stream(m)
        if o + 4 > len(d):
            return ""
        reclen, kind = _REC_HDR.unpack_from(d, o)
        fixed = _THUNK32.size if kind == S_THUNK32 else _PROC32.size
        return _cstr(d, o + 4 + fixed, min(len(d), o + 2 + reclen))[0]

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
        self._lookups += 1
        if self._lookups == 256:
            self._listify()
        i = bisect.bisect_right(self._f_starts, rva) - 1
        if i >= 0 and rva < self._f_ends[i]:
            start = int(self._f_starts[i])
            name = self._proc_name(i)
            return SymbolHit(name, name, start, int(self._f_ends[i]) - start, rva - start, "function")
        j = bisect.bisect_right(self._p_starts, rva) - 1
        if j < 0:
            return None
        prva = int(self._p_starts[j])
        if self._s_starts:
            sec = self._section_of(rva)
            if sec is None or self._section_of(prva) != sec:
                return None
        d = self._symbol_records()
        o = int(self._p_offs[j])
        reclen = _U16.unpack_from(d, o)[0]
        name = _cstr(d, o + 4 + _PUB32.size, min(len(d), o + 2 + reclen))[0]
        return SymbolHit(undecorate(name), name, prva, None, rva - prva, "public")

    def lookup(self, rva: int) -> Optional[Tuple[str, int]]:
        """``(name, offset)`` of the symbol holding ``rva`` (see :meth:`symbol_at`), or None."""
        hit = self.symbol_at(rva)
        return None if hit is None else (hit.name, hit.offset)

    def __repr__(self) -> str:
        return f"<Pdb {os.path.basename(self.path)!r} {self.identity} streams={self.msf.num_streams}>"
