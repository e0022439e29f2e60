"""PE images (x64 kernel drivers, ntoskrnl, user DLLs) from files or from dump memory.

A :class:`PEImage` always works in *RVA space* (the mapped layout).  Pages are
produced lazily and cached: from the file's section table for an image on disk,
or through a ``read(va, size)`` callback for an image mapped in a dump, where a
missing page is tolerated and recorded in :attr:`PEImage.missing_pages`.

Headers, sections, the export table, the CodeView record, the version resource
and the exception directory are parsed here with ``struct`` (read once, bounds
checked); the RUNTIME_FUNCTION table is a sorted array searched with bisect.
Every problem surfaces as :class:`dumpkit.errors.ImageError` (or
:class:`UnwindError` for unwind records), never as a raw ``struct.error``.
"""
from __future__ import annotations

import bisect
import os
import struct
import uuid
import warnings
from typing import Callable, Dict, List, NamedTuple, Optional, Set, Tuple, Union

from ..errors import DumpError, DumpWarning, ImageError, UnwindError
from .unwindinfo import RuntimeFunction, UnwindInfo, decode_unwind_info, unwind_info_size

PAGE = 0x1000
MAX_IMAGE_SIZE = 0x40000000          # 1 GiB: anything larger is not a real image
MAX_SECTIONS = 96                    # the Windows loader's limit
MAX_EXPORTS = 0x20000
MAX_RUNTIME_FUNCTIONS = 0x400000
MAX_CHAIN = 32                       # UNWIND_CHAIN_LIMIT

IMAGE_SCN_CNT_CODE = 0x20
IMAGE_SCN_MEM_EXECUTE = 0x20000000

DIR_EXPORT, DIR_IMPORT, DIR_RESOURCE, DIR_EXCEPTION = 0, 1, 2, 3
DIR_DEBUG = 6

_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_RF = struct.Struct("<III")
_FILE_HDR = struct.Struct("<HHIIIHH")           # Machine .. Characteristics (20 bytes)
_SECTION = struct.Struct("<8sIIIIIIHHI")        # 40 bytes
_EXPORT_DIR = struct.Struct("<IIHHIIIIIII")     # 40 bytes
_DEBUG_DIR = struct.Struct("<IIHHIIII")         # 28 bytes
_RES_DIR = struct.Struct("<IIHHHH")             # 16 bytes
_RES_ENTRY = struct.Struct("<II")
_RES_DATA = struct.Struct("<IIII")

MACHINE_NAMES = {0x8664: "AMD64", 0x14C: "I386", 0xAA64: "ARM64", 0x1C4: "ARMNT"}


class Section(NamedTuple):
    """A section header."""

    name: str
    rva: int
    virtual_size: int
    raw_offset: int
    raw_size: int
    characteristics: int

    @property
    def executable(self) -> bool:
        return bool(self.characteristics & (IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_CNT_CODE))

    @property
    def end(self) -> int:
        return self.rva + (self.virtual_size or self.raw_size)

    def contains(self, rva: int) -> bool:
        return self.rva <= rva < self.rva + (self.virtual_size or self.raw_size)

    def __repr__(self) -> str:
        return f"<Section {self.name} {self.rva:#x}+{self.virtual_size:#x} chars={self.characteristics:#x}>"


class CodeView(NamedTuple):
    """The PDB identity from the debug directory, as the symbol store keys it.

    ``guid`` is the GUID in upper-case hex without dashes (for NB10 records the
    8-digit signature); ``age`` an int; ``key`` the store directory name
    (``guid`` + age in hex), e.g. ``1C19FDDB27BB3399D9B45973EFEAFCF31``.
    """

    pdb_name: str
    guid: str
    age: int

    @property
    def key(self) -> str:
        return f"{self.guid}{self.age:x}"

    @property
    def pdb_basename(self) -> str:
        return self.pdb_name.replace("/", "\\").rsplit("\\", 1)[-1]


PageReader = Callable[[int], Optional[bytes]]


class PEImage:
    """One PE image in mapped (RVA) layout.

    Build it with :meth:`from_file`, :meth:`from_bytes` (the bytes of a file) or
    :meth:`from_memory` (an image mapped in a dump, read through a callback).
    """

    def __init__(self, page_source: PageReader, *, name: Optional[str] = None,
                 base: Optional[int] = None, origin: str = "", path: Optional[str] = None,
                 mapped_size_hint: Optional[int] = None) -> None:
        self._page_source = page_source
        self._pages: Dict[int, bytes] = {}
        self.missing_pages: Set[int] = set()       # RVAs of pages not present
        self.name = name
        self.base = base                            # load address when mapped from a dump
        self.origin = origin                        # 'file', 'bytes', 'memory'
        self.path = path
        self._size_limit = mapped_size_hint if mapped_size_hint else MAX_IMAGE_SIZE
        # sorted, disjoint RVA ranges holding data (from_bytes: headers and sections); None: all of it
        self._backed: Optional[List[Tuple[int, int]]] = None
        self._exports: Optional[List[Tuple[int, str]]] = None
        self._export_rvas: List[int] = []
        self._codeview: Optional[CodeView] = None
        self._codeview_done = False
        self._version: Optional[Dict[str, str]] = None
        self._rf: Optional[List[RuntimeFunction]] = None
        self._rf_begin: List[int] = []
        self._unwind_cache: Dict[int, Union[UnwindInfo, UnwindError]] = {}
        self._parse_headers()

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_bytes(cls, data: Union[bytes, bytearray, memoryview], name: Optional[str] = None,
                   path: Optional[str] = None) -> "PEImage":
        """An image from the bytes of a PE *file* (file layout, sections at PointerToRawData)."""
        data = bytes(data)
        layout = _FileLayout(data, path or name or "<bytes>")
        img = cls(layout.page, name=name, origin="bytes" if path is None else "file", path=path)
        img._backed = layout.backed()
        return img

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike], name: Optional[str] = None) -> "PEImage":
        """An image from a PE file on disk."""
        p = os.fspath(path)
        try:
            with open(p, "rb") as f:
                data = f.read(MAX_IMAGE_SIZE + 1)
        except OSError as exc:
            raise ImageError(f"cannot read image: {exc.strerror or exc}", path=p) from None
        if len(data) > MAX_IMAGE_SIZE:
            raise ImageError("file too large to be a PE image", path=p)
        return cls.from_bytes(data, name=name or os.path.basename(p), path=p)

    @classmethod
    def from_memory(cls, read: Callable[[int, int], bytes], base: int, size: Optional[int] = None,
                    name: Optional[str] = None) -> "PEImage":
        """An image mapped at ``base`` in a dump, read through ``read(va, size) -> bytes``.

        A page whose read raises a :class:`DumpError` (or returns short data) is
        recorded in :attr:`missing_pages`; reads touching it raise ImageError.
        ``size`` (the module's SizeOfImage) bounds the reads when given.
        """
        def page(rva: int) -> Optional[bytes]:
            try:
                data = read(base + rva, PAGE)
            except DumpError:
                return None
            if data is None or len(data) != PAGE:
                return None
            return bytes(data)
        return cls(page, name=name, base=base, origin="memory", mapped_size_hint=size)

    @classmethod
    def from_pages(cls, read_page: PageReader, base: int, size: Optional[int] = None,
                   name: Optional[str] = None) -> "PEImage":
        """Like :meth:`from_memory` with ``read_page(va) -> bytes | None`` (4 KiB pages)."""
        def page(rva: int) -> Optional[bytes]:
            try:
                data = read_page(base + rva)
            except DumpError:
                return None
            return bytes(data) if data is not None and len(data) == PAGE else None
        return cls(page, name=name, base=base, origin="memory", mapped_size_hint=size)

    # ------------------------------------------------------------------ raw access
    def _page(self, idx: int) -> Optional[bytes]:
        pg = self._pages.get(idx)
        if pg is None:
            if idx * PAGE in self.missing_pages:
                return None
            pg = self._page_source(idx * PAGE)
            if pg is None:
                self.missing_pages.add(idx * PAGE)
                return None
            self._pages[idx] = pg
        return pg

    def read_rva(self, rva: int, size: int) -> bytes:
        """``size`` bytes at ``rva``; ImageError outside the image or on a missing page."""
        if size < 0 or rva < 0 or rva + size > self._size_limit:
            raise ImageError(f"RVA range {rva:#x}+{size:#x} outside the image", path=self._where(),
                             offset=rva, expected=f"RVA below {self._size_limit:#x}")
        off = rva & (PAGE - 1)
        idx = rva >> 12
        if off + size <= PAGE:
            pg = self._pages.get(idx) or self._page(idx)
            if pg is None:
                raise ImageError(f"page at RVA {idx * PAGE:#x} not present", path=self._where(), offset=rva)
            return pg[off:off + size]
        out = bytearray()
        while size > 0:
            pg = self._page(idx)
            if pg is None:
                raise ImageError(f"page at RVA {idx * PAGE:#x} not present", path=self._where(), offset=rva)
            n = min(size, PAGE - off)
            out += pg[off:off + n]
            size -= n
            off = 0
            idx += 1
        return bytes(out)

    def read_rva_partial(self, rva: int, size: int) -> bytes:
        """Like :meth:`read_rva` but missing pages read as zeros (for tables).

        The work is bounded by what the image holds, not by what a header declares: only the
        parts of the range that hold data are read (the file's headers and sections for an image
        from a file; the mapped size for one in memory) and the result ends with the last byte
        read, so it can be shorter than ``size``: the bytes left off read as zeros.  A 4 GiB
        directory declared in a 6 KiB file costs a few pages, not a 4 GiB buffer.
        """
        if rva < 0 or size <= 0:
            return b""
        end = min(rva + size, self._size_limit)
        parts: List[Tuple[int, bytes]] = []
        for lo, hi in self._backed if self._backed is not None else ((0, self._size_limit),):
            pos, stop = max(lo, rva), min(hi, end)
            while pos < stop:
                idx, off = pos >> 12, pos & (PAGE - 1)
                n = min(stop - pos, PAGE - off)
                pg = self._page(idx)
                if pg is not None:
                    parts.append((pos - rva, pg[off:off + n] if off or n != PAGE else pg))
                pos += n
        if not parts:
            return b""
        if len(parts) == 1 and parts[0][0] == 0:
            return parts[0][1]
        out = bytearray(parts[-1][0] + len(parts[-1][1]))
        for at, chunk in parts:
            out[at:at + len(chunk)] = chunk
        return bytes(out)

    def read_va(self, va: int, size: int) -> bytes:
        """Read at a virtual address (needs :attr:`base`)."""
        if self.base is None:
            raise ImageError("image has no load address", path=self._where())
        return self.read_rva(va - self.base, size)

    def _where(self) -> str:
        return self.path or self.name or (f"image@{self.base:#x}" if self.base is not None else "<image>")

    def _u32(self, rva: int) -> int:
        return _U32.unpack(self.read_rva(rva, 4))[0]

    def _cstring(self, rva: int, limit: int = 512) -> str:
        """A NUL-terminated ASCII string (stops at a page boundary or ``limit``)."""
        out = bytearray()
        while len(out) < limit:
            n = min(limit - len(out), PAGE - (rva & (PAGE - 1)))
            chunk = self.read_rva_partial(rva, n)
            if not chunk:
                break
            z = chunk.find(b"\0")
            if z >= 0:
                out += chunk[:z]
                break
            out += chunk
            rva += n
        return out.decode("latin-1")

    # ------------------------------------------------------------------ headers
    def _parse_headers(self) -> None:
        try:
            first = self.read_rva(0, 0x40)
        except ImageError:
            raise ImageError("PE header page not present", path=self._where(), offset=0) from None
        if first[:2] != b"MZ":
            raise ImageError("no MZ signature", path=self._where(), offset=0, expected="'MZ'")
        e_lfanew = _U32.unpack_from(first, 0x3C)[0]
        if e_lfanew > 0x10000000 or e_lfanew + 24 > self._size_limit:
            raise ImageError(f"e_lfanew {e_lfanew:#x} out of range", path=self._where(), offset=0x3C)
        hdr = self.read_rva(e_lfanew, 24)
        if hdr[:4] != b"PE\0\0":
            raise ImageError("no PE signature", path=self._where(), offset=e_lfanew, expected="'PE\\0\\0'")
        (self.machine, nsec, self.timestamp, _, _, opt_size, self.characteristics) = _FILE_HDR.unpack_from(hdr, 4)
        opt_off = e_lfanew + 24
        if opt_size < 0x60:
            raise ImageError(f"optional header too small ({opt_size:#x})", path=self._where(), offset=opt_off)
        opt = self.read_rva(opt_off, min(opt_size, 0xF0))
        magic = _U16.unpack_from(opt, 0)[0]
        if magic == 0x20B:
            self.is_64 = True
            self.entry_point = _U32.unpack_from(opt, 16)[0]
            self.image_base = struct.unpack_from("<Q", opt, 24)[0]
            dir_off, ndir_off = 112, 108
        elif magic == 0x10B:
            self.is_64 = False
            self.entry_point = _U32.unpack_from(opt, 16)[0]
            self.image_base = _U32.unpack_from(opt, 28)[0]
            dir_off, ndir_off = 96, 92
        else:
            raise ImageError(f"unknown optional header magic {magic:#x}", path=self._where(), offset=opt_off,
                             expected="0x20b (PE32+) or 0x10b (PE32)")
        if len(opt) < ndir_off + 4:
            raise ImageError(f"optional header too small for {'PE32+' if self.is_64 else 'PE32'} "
                             f"({len(opt):#x} bytes)", path=self._where(), offset=opt_off,
                             expected=f"at least {ndir_off + 4:#x} bytes (through NumberOfRvaAndSizes)")
        self.size_of_image = _U32.unpack_from(opt, 56)[0]
        self.size_of_headers = _U32.unpack_from(opt, 60)[0]
        self.checksum = _U32.unpack_from(opt, 64)[0]
        self.subsystem = _U16.unpack_from(opt, 68)[0]
        self.dll_characteristics = _U16.unpack_from(opt, 70)[0]
        if not 0 < self.size_of_image <= MAX_IMAGE_SIZE:
            raise ImageError(f"SizeOfImage {self.size_of_image:#x} implausible", path=self._where(),
                             offset=opt_off + 56)
        if self.origin == "memory" and self._size_limit != MAX_IMAGE_SIZE and self.size_of_image > self._size_limit:
            warnings.warn(f"{self._where()}: SizeOfImage {self.size_of_image:#x} larger than the module "
                          f"({self._size_limit:#x})", DumpWarning, stacklevel=3)
        self._size_limit = max(self.size_of_image, PAGE) if self.origin != "memory" else \
            min(self._size_limit, max(self.size_of_image, PAGE))
        ndir = min(_U32.unpack_from(opt, ndir_off)[0], 16, max(0, (len(opt) - dir_off) // 8))
        self.data_directories: List[Tuple[int, int]] = [
            struct.unpack_from("<II", opt, dir_off + 8 * i) for i in range(ndir)]
        if nsec > MAX_SECTIONS:
            raise ImageError(f"{nsec} sections", path=self._where(), offset=e_lfanew + 6,
                             expected=f"at most {MAX_SECTIONS}")
        sec_off = opt_off + opt_size
        raw = self.read_rva(sec_off, 40 * nsec) if nsec else b""
        secs = []
        for i in range(nsec):
            n, vsize, va, rsize, roff, _, _, _, _, chars = _SECTION.unpack_from(raw, 40 * i)
            secs.append(Section(n.rstrip(b"\0").decode("latin-1"), va, vsize, roff, rsize, chars))
        self.sections: List[Section] = secs

    def directory(self, index: int) -> Tuple[int, int]:
        """(rva, size) of data directory ``index`` ((0, 0) when absent)."""
        if index < len(self.data_directories):
            return self.data_directories[index]
        return (0, 0)

    @property
    def machine_name(self) -> str:
        return MACHINE_NAMES.get(self.machine, f"{self.machine:#x}")

    @property
    def store_key(self) -> str:
        """Symbol-store directory of the image: ``%08X`` TimeDateStamp + ``%x`` SizeOfImage."""
        return f"{self.timestamp:08X}{self.size_of_image:x}"

    def section_for(self, rva: int) -> Optional[Section]:
        for s in self.sections:
            if s.contains(rva):
                return s
        return None

    def is_executable(self, rva: int) -> bool:
        s = self.section_for(rva)
        return s is not None and s.executable

    # ------------------------------------------------------------------ exports
    @property
    def exports(self) -> List[Tuple[int, str]]:
        """Named exports as (rva, name), sorted by RVA (forwarders left out)."""
        if self._exports is None:
            try:
                self._exports = self._parse_exports()
            except ImageError as exc:
                warnings.warn(f"{self._where()}: export table unreadable: {exc.message}", DumpWarning, stacklevel=2)
                self._exports = []
            self._export_rvas = [r for r, _ in self._exports]
        return self._exports

    def _parse_exports(self) -> List[Tuple[int, str]]:
        rva, size = self.directory(DIR_EXPORT)
        if not rva or size < 40:
            return []
        (_, _, _, _, _, _, nfunc, nnames, afunc, anames, aords) = _EXPORT_DIR.unpack(self.read_rva(rva, 40))
        if nfunc > MAX_EXPORTS or nnames > MAX_EXPORTS:
            raise ImageError(f"export table claims {nfunc} functions / {nnames} names", path=self._where(),
                             offset=rva, expected=f"at most {MAX_EXPORTS}")
        funcs = struct.unpack(f"<{nfunc}I", self.read_rva(afunc, 4 * nfunc)) if nfunc else ()
        names = struct.unpack(f"<{nnames}I", self.read_rva(anames, 4 * nnames)) if nnames else ()
        ords = struct.unpack(f"<{nnames}H", self.read_rva(aords, 2 * nnames)) if nnames else ()
        out: Set[Tuple[int, str]] = set()
        for name_rva, o in zip(names, ords):
            if o >= nfunc:
                continue
            frva = funcs[o]
            if not frva or rva <= frva < rva + size:      # empty slot or forwarder string
                continue
            name = self._cstring(name_rva, 512)
            if name:
                out.add((frva, name))
        return sorted(out)

    def export_lookup(self, rva: int, same_function: bool = True) -> Optional[Tuple[str, int]]:
        """(name, displacement) of the export at or before ``rva``.

        With ``same_function`` (the default) the export must begin the function
        that contains ``rva`` according to .pdata (for a leaf, no other function
        may begin between them): a distant export would name the wrong code.
        """
        exps = self.exports
        if not exps:
            return None
        i = bisect.bisect_right(self._export_rvas, rva) - 1
        if i < 0:
            return None
        erva, name = exps[i]
        if same_function and self.runtime_functions:
            f = self.function_for(rva)
            if f is not None:
                prim = self.primary_function(f)
                fe = self.function_for(erva)
                if erva != prim.begin and (fe is None or self.primary_function(fe) != prim):
                    return None
            else:
                j = bisect.bisect_right(self._rf_begin, rva) - 1
                if j >= 0 and self._rf_begin[j] > erva:
                    return None
        return name, rva - erva

    # ------------------------------------------------------------------ debug directory
    @property
    def codeview(self) -> Optional[CodeView]:
        """(pdb_name, guid, age) from the CodeView debug entry (RSDS or NB10), or None."""
        if not self._codeview_done:
            self._codeview_done = True
            try:
                self._codeview = self._parse_codeview()
            except ImageError as exc:
                warnings.warn(f"{self._where()}: debug directory unreadable: {exc.message}", DumpWarning,
                              stacklevel=2)
        return self._codeview

    def _parse_codeview(self) -> Optional[CodeView]:
        rva, size = self.directory(DIR_DEBUG)
        if not rva or size < 28:
            return None
        n = min(size // 28, 64)
        raw = self.read_rva(rva, 28 * n)
        for i in range(n):
            _, _, _, _, typ, dsize, addr, _ = _DEBUG_DIR.unpack_from(raw, 28 * i)
            if typ != 2 or not addr or dsize < 24:
                continue
            rec = self.read_rva(addr, min(dsize, 0x400))
            if rec[:4] == b"RSDS" and len(rec) >= 24:
                guid = uuid.UUID(bytes_le=bytes(rec[4:20])).hex.upper()
                age = _U32.unpack_from(rec, 20)[0]
                name = rec[24:].split(b"\0", 1)[0].decode("utf-8", "replace")
                return CodeView(name, guid, age)
            if rec[:4] == b"NB10" and len(rec) >= 16:
                sig, age = struct.unpack_from("<II", rec, 8)
                name = rec[16:].split(b"\0", 1)[0].decode("utf-8", "replace")
                return CodeView(name, f"{sig:08X}", age)
        return None

    # ------------------------------------------------------------------ version resource
    @property
    def version_info(self) -> Dict[str, str]:
        """String entries of the VS_VERSIONINFO resource (CompanyName, FileVersion, ...).

        Also ``FixedFileVersion``/``FixedProductVersion`` from VS_FIXEDFILEINFO.
        Empty when the image has no version resource (or it is unreadable).
        """
        if self._version is None:
            try:
                self._version = self._parse_version()
            except (ImageError, ValueError) as exc:
                warnings.warn(f"{self._where()}: version resource unreadable: {exc}", DumpWarning, stacklevel=2)
                self._version = {}
        return self._version

    def _res_dir_entries(self, res_rva: int, off: int) -> List[Tuple[int, int]]:
        hdr = self.read_rva(res_rva + off, 16)
        _, _, _, _, nnamed, nid = _RES_DIR.unpack(hdr)
        n = min(nnamed + nid, 4096)
        raw = self.read_rva(res_rva + off + 16, 8 * n)
        return [_RES_ENTRY.unpack_from(raw, 8 * i) for i in range(n)]

    def _parse_version(self) -> Dict[str, str]:
        res_rva, res_size = self.directory(DIR_RESOURCE)
        if not res_rva or res_size < 16:
            return {}
        data_entry = None
        for name_id, off in self._res_dir_entries(res_rva, 0):
            if name_id == 16 and off & 0x80000000:          # RT_VERSION
                lvl = off & 0x7FFFFFFF
                for _ in range(2):                          # name level, then language level
                    ents = self._res_dir_entries(res_rva, lvl)
                    if not ents:
                        return {}
                    sub = ents[0][1]
                    if sub & 0x80000000:
                        lvl = sub & 0x7FFFFFFF
                    else:
                        data_entry = sub
                        break
                if data_entry is None:
                    return {}
                break
        if data_entry is None:
            return {}
        drva, dsize, _, _ = _RES_DATA.unpack(self.read_rva(res_rva + data_entry, 16))
        blob = self.read_rva(drva, min(dsize, 0x10000))
        out: Dict[str, str] = {}
        _parse_version_block(blob, 0, len(blob), out, 0)
        return out

    # ------------------------------------------------------------------ .pdata
    @property
    def runtime_functions(self) -> List[RuntimeFunction]:
        """The exception directory's RUNTIME_FUNCTION entries, sorted by begin."""
        if self._rf is None:
            self._rf = self._parse_pdata()
            self._rf_begin = [f.begin for f in self._rf]
        return self._rf

    def _parse_pdata(self) -> List[RuntimeFunction]:
        if self.machine == 0xAA64:                # ARM64: 8-byte entries (begin, packed word or .xdata RVA)
            from ..arch.arm64.unwind import function_length, read_pdata
            limit = self.size_of_image
            rfs = []
            for b, u in read_pdata(self):
                if not (0 < b < limit and (u & 3 or u < limit)):
                    continue                      # checked before reading any .xdata header
                n = function_length(self, u)
                if n and b + n <= limit:
                    rfs.append(RuntimeFunction(b, b + n, u))
            rfs.sort()
            return rfs
        rva, size = self.directory(DIR_EXCEPTION)
        if not rva or size < 12:
            return []
        n = min(size // 12, MAX_RUNTIME_FUNCTIONS)
        raw = self.read_rva_partial(rva, 12 * n)
        # pages the image lacks read as zeros, and an all-zero entry is never valid: a tiny file that
        # declares a huge exception directory must not cost millions of entries (fuzz/crashers/pe)
        n = min(len(raw) // 12, (len(raw.rstrip(b"\0")) + 11) // 12)
        limit = self.size_of_image
        out = [RuntimeFunction(b, e, u) for b, e, u in _RF.iter_unpack(raw[:12 * n])
               if 0 < b < e <= limit and u < limit]
        if any(out[i].begin > out[i + 1].begin for i in range(len(out) - 1)):
            out.sort()
        return out

    def function_for(self, rva: int) -> Optional[RuntimeFunction]:
        """The RUNTIME_FUNCTION whose [begin, end) holds ``rva`` (bisect), or None."""
        rfs = self._rf if self._rf is not None else self.runtime_functions
        i = bisect.bisect_right(self._rf_begin, rva) - 1
        if i < 0:
            return None
        f = rfs[i]
        if rva < f.end:
            return f
        # a fragment nested inside its parent's range (LLVM chained regions): look back a little
        for j in range(i - 1, max(-1, i - 4), -1):
            g = rfs[j]
            if g.begin <= rva < g.end:
                return g
        return None

    def _resolve_indirect(self, f: RuntimeFunction) -> RuntimeFunction:
        """Follow the historic 'UnwindData & 1' indirection to the entry that owns the unwind info."""
        for _ in range(8):
            if not f.unwind_rva & 1:
                return f
            try:
                f = RuntimeFunction(*_RF.unpack(self.read_rva(f.unwind_rva - 1, 12)))
            except ImageError as exc:
                raise UnwindError(f"indirect RUNTIME_FUNCTION unreadable: {exc.message}", path=self._where(),
                                  offset=f.unwind_rva) from None
        raise UnwindError("indirect RUNTIME_FUNCTION chain too long", path=self._where(), offset=f.unwind_rva)

    def unwind_info(self, rva: int) -> UnwindInfo:
        """The decoded UNWIND_INFO at ``rva`` (cached; UnwindError when malformed)."""
        got = self._unwind_cache.get(rva)
        if got is None:
            try:
                head = self.read_rva(rva, 4)
                need = unwind_info_size(head)
                body = self.read_rva(rva, need)
                flags = head[0] >> 3
                tail = None
                if flags & 4:
                    tail = self.read_rva(rva + need, 12)
                elif flags & 3:
                    try:
                        tail = self.read_rva(rva + need, 4)
                    except ImageError:
                        tail = None
                got = decode_unwind_info(body, rva, tail=tail)
            except ImageError as exc:
                got = UnwindError(f"UNWIND_INFO unreadable: {exc.message}", path=self._where(), offset=rva)
            except UnwindError as exc:
                got = exc
            self._unwind_cache[rva] = got
        if isinstance(got, UnwindError):
            raise got
        return got

    def unwind_info_for(self, f: RuntimeFunction) -> Tuple[RuntimeFunction, UnwindInfo]:
        """(entry, its UNWIND_INFO) with indirection resolved."""
        f = self._resolve_indirect(f) if f.unwind_rva & 1 else f
        return f, self.unwind_info(f.unwind_rva)

    def primary_function(self, f: RuntimeFunction) -> RuntimeFunction:
        """Follow CHAININFO links to the primary (root) entry (at most 32 links)."""
        for _ in range(MAX_CHAIN + 1):
            try:
                f, info = self.unwind_info_for(f)
            except UnwindError:
                return f
            if info.chained is None:
                return f
            f = info.chained
        return f

    # ------------------------------------------------------------------ misc
    def __repr__(self) -> str:
        nm = self.name or self.path or "?"
        at = f" @{self.base:#x}" if self.base is not None else ""
        miss = f" missing={len(self.missing_pages)}p" if self.missing_pages else ""
        return (f"<PEImage {nm}{at} {self.machine_name} ts={self.timestamp:#010x} "
                f"size={self.size_of_image:#x} {self.origin}{miss}>")


# ---------------------------------------------------------------------- file layout
class _FileLayout:
    """Produces mapped pages from the bytes of a PE file."""

    def __init__(self, data: bytes, where: str) -> None:
        self.data = data
        self.where = where
        self.sections: Optional[List[Tuple[int, int, int]]] = None   # (rva, raw_off, raw_len)
        self.headers = min(len(data), PAGE)

    def _load_sections(self) -> None:
        self.sections = []
        d = self.data
        try:
            e = _U32.unpack_from(d, 0x3C)[0]
            nsec, _, _, _, opt_size = struct.unpack_from("<HIIIH", d, e + 6)
            opt = e + 24
            magic = _U16.unpack_from(d, opt)[0]
            soh = _U32.unpack_from(d, opt + 60)[0] if magic in (0x20B, 0x10B) else PAGE
            self.headers = min(len(d), max(soh, 0x200))
            fa = _U32.unpack_from(d, opt + 36)[0]
            for i in range(min(nsec, MAX_SECTIONS)):
                _, vsize, va, rsize, roff, *_ = _SECTION.unpack_from(d, opt + opt_size + 40 * i)
                if fa >= 0x200:
                    roff &= ~0x1FF
                length = min(rsize, ((vsize + PAGE - 1) & ~(PAGE - 1)) if vsize else rsize)
                length = max(0, min(length, len(d) - roff))
                if length:
                    self.sections.append((va, roff, length))
        except struct.error:
            pass                       # header errors are reported by PEImage._parse_headers

    def backed(self) -> List[Tuple[int, int]]:
        """Sorted, disjoint [start, end) RVA ranges mapped from the file (every other page reads as zeros)."""
        if self.sections is None:
            self._load_sections()
        out: List[Tuple[int, int]] = []
        for lo, hi in sorted([(0, self.headers)] + [(va, va + n) for va, _, n in self.sections or ()]):
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        return out

    def page(self, rva: int) -> Optional[bytes]:
        if self.sections is None:
            self._load_sections()
        end = rva + PAGE
        buf = None
        if rva < self.headers:
            buf = bytearray(PAGE)
            n = min(self.headers, end) - rva
            buf[:n] = self.data[rva:rva + n]
        for va, roff, length in self.sections or ():
            lo, hi = max(rva, va), min(end, va + length)
            if lo < hi:
                if buf is None:
                    buf = bytearray(PAGE)
                buf[lo - rva:hi - rva] = self.data[roff + lo - va:roff + hi - va]
        return bytes(buf) if buf is not None else bytes(PAGE)


# ---------------------------------------------------------------------- VS_VERSIONINFO
def _align4(x: int) -> int:
    return (x + 3) & ~3


def _wstr(blob: bytes, off: int, end: int) -> Tuple[str, int]:
    """A NUL-terminated UTF-16LE string at ``off``; returns (text, offset after the NUL)."""
    i = off
    while i + 1 < end and (blob[i] or blob[i + 1]):
        i += 2
    return blob[off:i].decode("utf-16le", "replace"), min(i + 2, end)


def _parse_version_block(blob: bytes, off: int, end: int, out: Dict[str, str], depth: int) -> int:
    """Parse one {wLength, wValueLength, wType, szKey, Value, Children} block; returns its end."""
    if depth > 4 or off + 6 > end:
        return end
    length, vlen, vtype = struct.unpack_from("<HHH", blob, off)
    if length < 6:
        return end
    bend = min(off + length, end)
    key, p = _wstr(blob, off + 6, bend)
    p = _align4(p)
    if depth == 0:                                   # VS_VERSION_INFO: VS_FIXEDFILEINFO value
        if vlen >= 52 and p + 52 <= bend and _U32.unpack_from(blob, p)[0] == 0xFEEF04BD:
            ms, ls, pms, pls = struct.unpack_from("<IIII", blob, p + 8)
            out["FixedFileVersion"] = f"{ms >> 16}.{ms & 0xFFFF}.{ls >> 16}.{ls & 0xFFFF}"
            out["FixedProductVersion"] = f"{pms >> 16}.{pms & 0xFFFF}.{pls >> 16}.{pls & 0xFFFF}"
        p = _align4(p + vlen)
    elif depth == 3:                                 # String: value in WCHARs (text)
        if vtype == 1 or vlen:
            val, _ = _wstr(blob, p, min(bend, p + 2 * vlen) if vlen else bend)
            out.setdefault(key, val)
        return _align4(bend)
    else:
        if depth == 1 and key != "StringFileInfo":   # VarFileInfo: not needed
            return _align4(bend)
        p = _align4(p + (vlen if vtype == 0 else 2 * vlen))
    guard = 0
    while p + 6 <= bend and guard < 1024:
        guard += 1
        nxt = _parse_version_block(blob, p, bend, out, depth + 1)
        if nxt <= p:
            break
        p = _align4(nxt)
    return _align4(bend)
