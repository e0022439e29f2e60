"""The committed fixture driver images (fixtures/drivers/bin): what the compiler and linker produced.

Checked with pefile and a small UNWIND_INFO decoder written here from the
published format (independent of dumpkit's), plus llvm-readobj when installed.
"""
from __future__ import annotations

import shutil
import struct
import subprocess

import pefile
import pytest

from fixtures.emulate import DRIVERS_BIN, IMAGES, LEAF_FUNCTIONS, image_paths, read_map

NAMES = [n for n, _, _ in IMAGES]


@pytest.fixture(scope="module", params=NAMES)
def image(request):
    p = image_paths(request.param)
    return request.param, pefile.PE(str(p["sys"])), p


def _unwind_info(pe: pefile.PE, rva: int):
    """(version, flags, prolog, frame_reg, frame_off, [(code_offset, op, info, slots)], chained_parent)."""
    raw = pe.get_data(rva, 4)
    ver_flags, prolog, count, frame = raw
    data = pe.get_data(rva + 4, 2 * count)
    codes, i = [], 0
    while i < count:
        off, opinfo = data[2 * i], data[2 * i + 1]
        op, info = opinfo & 0xF, opinfo >> 4
        n = {0: 1, 1: 2 if info == 0 else 3, 2: 1, 3: 1, 4: 2, 5: 3, 6: 2, 7: 3, 8: 2, 9: 3, 10: 1}[op]
        slots = [struct.unpack_from("<H", data, 2 * (i + k))[0] for k in range(1, n)]
        codes.append((off, op, info, slots))
        i += n
    parent = None
    if (ver_flags >> 3) & 4:
        parent = struct.unpack("<III", pe.get_data(rva + 4 + 2 * ((count + 1) & ~1), 12))
    return ver_flags & 7, ver_flags >> 3, prolog, frame & 0xF, frame >> 4, codes, parent


def _pdata(pe: pefile.PE):
    d = pe.OPTIONAL_HEADER.DATA_DIRECTORY[3]
    raw = pe.get_data(d.VirtualAddress, d.Size)
    return [struct.unpack_from("<III", raw, o) for o in range(0, d.Size - 11, 12)]


def _functions(name: str):
    return {n: rva for rva, n in read_map(image_paths(name)["map"])}


def test_files_are_small_and_present():
    for name in NAMES:
        p = image_paths(name)
        assert p["sys"].stat().st_size <= 8192, name
        assert p["pdb"].stat().st_size <= 128 * 1024, name
        assert p["pdb"].read_bytes()[:32] == b"Microsoft C/C++ MSF 7.00\r\n\x1aDS\0\0\0"
    assert (DRIVERS_BIN.parent / "build.sh").exists()


def test_pe_headers(image):
    name, pe, p = image
    assert pe.FILE_HEADER.Machine == 0x8664
    assert pe.OPTIONAL_HEADER.Subsystem == 1                       # NATIVE
    assert pe.OPTIONAL_HEADER.DllCharacteristics & 0x2000          # WDM_DRIVER
    assert pe.OPTIONAL_HEADER.CheckSum != 0 and pe.verify_checksum()
    sections = [s.Name.rstrip(b"\0").decode() for s in pe.sections]
    assert {".text", ".rdata", ".data", ".pdata", ".reloc"} <= set(sections)
    assert any(e.type == 10 for b in pe.DIRECTORY_ENTRY_BASERELOC for e in b.entries)   # IMAGE_REL_BASED_DIR64
    cv = [d for d in pe.DIRECTORY_ENTRY_DEBUG if d.struct.Type == 2][0]
    raw = pe.get_data(cv.struct.AddressOfRawData, cv.struct.SizeOfData)
    assert raw[:4] == b"RSDS"
    assert raw[24:].rstrip(b"\0").decode() == p["pdb"].name
    assert pe.OPTIONAL_HEADER.SizeOfImage % 0x1000 == 0


def test_exports_and_imports():
    pes = {n: pefile.PE(str(image_paths(n)["sys"])) for n in NAMES}
    exports = {n: {s.name.decode() for s in pe.DIRECTORY_ENTRY_EXPORT.symbols if s.name}
               for n, pe in pes.items() if hasattr(pe, "DIRECTORY_ENTRY_EXPORT")}
    assert {"NdisFDeregisterFilterDriver", "NdisFRegisterFilterDriver"} <= exports["ndislike.sys"]
    assert {"KeBugCheckEx", "__C_specific_handler", "PsLoadedModuleList", "KdDebuggerDataBlock",
            "KiBugCheckData"} <= exports["ntlike.sys"]
    assert "KiPageFault" not in exports["ntlike.sys"]           # like the real kernel: internal
    imports = {(d.dll.decode(), i.name.decode()) for d in pes["lwffilter.sys"].DIRECTORY_ENTRY_IMPORT
               for i in d.imports}
    assert ("ndislike.sys", "NdisFDeregisterFilterDriver") in imports
    assert ("ndislike.sys", "NdisFRegisterFilterDriver") in imports
    assert ("ntlike.sys", "__C_specific_handler") in imports


def test_every_function_has_pdata_except_the_leaves(image):
    name, pe, _ = image
    begins = {b for b, _, _ in _pdata(pe)}
    funcs = _functions(name)
    leaves = set(LEAF_FUNCTIONS[name])
    assert leaves <= set(funcs)
    for fn, rva in funcs.items():
        if fn in leaves:
            assert rva not in begins, f"{name}!{fn} is documented as a leaf but has .pdata"
        else:
            assert rva in begins, f"{name}!{fn} has no RUNTIME_FUNCTION"
    entries = _pdata(pe)
    assert entries == sorted(entries)
    assert all(b < e for b, e, _ in entries)


def _info_of(name: str, fn: str):
    pe = pefile.PE(str(image_paths(name)["sys"]))
    rva = _functions(name)[fn]
    entry = [x for x in _pdata(pe) if x[0] == rva][0]
    return _unwind_info(pe, entry[2])


def test_unwind_features_the_chain_relies_on():
    # KiPageFault: PUSH_MACHFRAME with error code is the first prolog op (last code)
    v, flags, prolog, freg, foff, codes, _ = _info_of("ntlike.sys", "KiPageFault")
    assert codes[-1][1:3] == (10, 1)
    assert (freg, foff) == (5, 0xF)                                # rbp = rsp + 0xF0
    ops = [c[1] for c in codes]
    assert ops.count(8) == 10 and ops.count(4) == 7 and 1 in ops and 3 in ops
    # frame pointer from alloca
    assert _info_of("ndislike.sys", "ndisDeregisterFilterDriverInternal")[3] == 5
    # XMM saves
    assert [c[1] for c in _info_of("lwffilter.sys", "LwfDetach")[5]].count(8) == 8
    assert 8 in [c[1] for c in _info_of("ndislike.sys", "ndisValidateFilterBlock")[5]]
    # > 4 KiB frame
    alloc = [c for c in _info_of("lwffilter.sys", "LwfInitialize")[5] if c[1] == 1][0]
    assert alloc[2] == 0 and alloc[3][0] * 8 > 0x1000
    # SEH
    assert _info_of("lwffilter.sys", "DriverEntry")[1] & 3 == 3
    assert _info_of("ntlike.sys", "PspSystemThreadStartup")[1] & 3 == 3
    # chained cold fragment -> the hot part's RUNTIME_FUNCTION
    funcs = _functions("lwffilter.sys")
    v, flags, prolog, _, _, codes, parent = _info_of("lwffilter.sys", "LwfCleanupOnFailure_cold")
    assert flags == 4 and codes == [] and parent[0] == funcs["LwfCleanupOnFailure"]
    # far forms
    codes = _info_of("lwffilter.sys", "LwfFarFrame")[5]
    by_op = {c[1]: c for c in codes}
    assert by_op[1][2] == 1 and by_op[1][3][0] | by_op[1][3][1] << 16 == 0x100048
    assert 5 in by_op and 9 in by_op
    assert by_op[9][3][0] | by_op[9][3][1] << 16 == 0x100030


@pytest.mark.skipif(not shutil.which("llvm-readobj"), reason="llvm-readobj not installed")
def test_llvm_readobj_agrees_on_machframe():
    out = subprocess.run(["llvm-readobj", "--unwind", str(image_paths("ntlike")["sys"])],
                         capture_output=True, text=True, timeout=60).stdout
    assert "PUSH_MACHFRAME errcode=yes" in out
    out = subprocess.run(["llvm-readobj", "--unwind", str(image_paths("lwffilter")["sys"])],
                         capture_output=True, text=True, timeout=60).stdout
    assert "SAVE_NONVOL_FAR reg=RBX, offset=0x100050" in out
    assert "SAVE_XMM128_FAR reg=XMM6, offset=0x100030" in out
    assert "Chained" in out


def test_binaries_match_their_checksums():
    """bin/ is updated as a whole by build.sh (which writes SHA256SUMS)."""
    import hashlib
    lines = (DRIVERS_BIN / "SHA256SUMS").read_text().split("\n")
    listed = {}
    for line in filter(None, lines):
        digest, name = line.split()
        listed[name] = digest
    assert len(listed) == 15          # case 2: 3 images, case 1: 2 images (.sys, .pdb, .map each)
    for name, digest in listed.items():
        assert hashlib.sha256((DRIVERS_BIN / name).read_bytes()).hexdigest() == digest, name
