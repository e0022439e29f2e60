"""PEImage and the image providers, checked against pefile, llvm-readobj and the symbol store's own keys."""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
import uuid
import warnings

import pefile
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dumpkit.errors import DumpError, DumpWarning, ImageError
from dumpkit.model import Module
from dumpkit.pe import ChainImages, DumpMemoryImages, PEImage, StoreImages
from tests._pe_synth import FakeMemory, SynthPE, alloc_small, push, unwind_info
from tests.conftest import shared_path

STORE_FILES = ["amdppm.sys/c9c030003b000/amdppm.sys", "Wdf01000.sys/a9a9d36ed1000/Wdf01000.sys"]
LLVM = shutil.which("llvm-readobj")


def real(rel: str):
    return shared_path("symstore", *rel.split("/"))


@pytest.mark.parametrize("rel", STORE_FILES + ["msvc:xcpt4.exe", "msvc:nested_collided.exe"])
def test_headers_sections_mapping_match_pefile(rel):
    path = shared_path("msvc", rel[5:]) if rel.startswith("msvc:") else real(rel)
    img = PEImage.from_file(path)
    pe = pefile.PE(str(path))
    assert img.timestamp == pe.FILE_HEADER.TimeDateStamp
    assert img.size_of_image == pe.OPTIONAL_HEADER.SizeOfImage
    assert img.machine == 0x8664 and img.machine_name == "AMD64"
    assert img.image_base == pe.OPTIONAL_HEADER.ImageBase
    assert img.checksum == pe.OPTIONAL_HEADER.CheckSum
    assert [(s.name, s.rva, s.virtual_size, s.characteristics) for s in img.sections] == \
        [(s.Name.rstrip(b"\0").decode(), s.VirtualAddress, s.Misc_VirtualSize, s.Characteristics) for s in pe.sections]
    mapped = pe.get_memory_mapped_image()
    for s in pe.sections:                          # every section's bytes in RVA space
        n = min(s.Misc_VirtualSize, s.SizeOfRawData)
        assert img.read_rva(s.VirtualAddress, n) == mapped[s.VirtualAddress:s.VirtualAddress + n]
    pe.parse_data_directories(directories=[3])
    assert len(img.runtime_functions) == len(getattr(pe, "DIRECTORY_ENTRY_EXCEPTION", []))


@pytest.mark.parametrize("rel", STORE_FILES)
def test_version_info_matches_pefile(rel):
    img = PEImage.from_file(real(rel))
    pe = pefile.PE(str(real(rel)))
    strings = {}
    for fi in pe.FileInfo:
        for entry in fi:
            if entry.Key == b"StringFileInfo":
                for table in entry.StringTable:
                    for k, v in table.entries.items():
                        strings.setdefault(k.decode(), v.decode())
    assert strings and all(img.version_info[k] == v for k, v in strings.items())
    assert img.version_info["CompanyName"] == "Microsoft Corporation"
    ffi = pe.VS_FIXEDFILEINFO[0]
    ms, ls = ffi.FileVersionMS, ffi.FileVersionLS
    assert img.version_info["FixedFileVersion"] == f"{ms >> 16}.{ms & 0xFFFF}.{ls >> 16}.{ls & 0xFFFF}"


@pytest.mark.skipif(LLVM is None, reason="llvm-readobj not installed")
@pytest.mark.parametrize("rel", STORE_FILES + ["msvc:xcpt4.exe"])
def test_codeview_matches_llvm_readobj(rel):
    path = shared_path("msvc", rel[5:]) if rel.startswith("msvc:") else real(rel)
    out = subprocess.run([LLVM, "--coff-debug-directory", str(path)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    raw = bytes(int(b, 16) for b in re.search(r"PDBGUID: \(([0-9A-F ]+)\)", out).group(1).split())
    age = int(re.search(r"PDBAge: (\d+)", out).group(1))
    name = re.search(r"PDBFileName: (.*)", out).group(1).strip()
    cv = PEImage.from_file(path).codeview
    assert cv is not None
    assert (cv.pdb_name, cv.guid, cv.age) == (name, uuid.UUID(bytes_le=raw).hex.upper(), age)


def test_codeview_key_is_the_symbol_store_directory():
    cv = PEImage.from_file(real(STORE_FILES[0])).codeview
    store_pdb = shared_path("symstore", "amdppm.pdb")
    assert [p.name for p in store_pdb.iterdir()] == [cv.key]
    assert cv.pdb_basename == "amdppm.pdb"


def test_store_key_is_the_image_directory():
    for rel in STORE_FILES:
        img = PEImage.from_file(real(rel))
        assert img.store_key.lower() == rel.split("/")[1].lower()


# ---------------------------------------------------------------- exports (synthetic, checked with pefile)
def _exporting_image() -> bytes:
    pe = SynthPE()
    pe.func(0x1000, 0x1100, unwind_info(alloc_small(4, 0x28), 4))
    pe.func(0x1100, 0x1180, unwind_info(push(1, "rbx"), 1))
    pe.func(0x1200, 0x1300, unwind_info(alloc_small(4, 0x28), 4))
    pe.exports = [(0x1000, "FirstFunction"), (0x1100, "SecondFunction"), (0x1400, "LeafThing")]
    pe.rsds = (bytes(range(16)), 3, "synth.pdb")
    return pe.build()


def test_exports_and_lookup():
    data = _exporting_image()
    img = PEImage.from_bytes(data, name="synth.sys")
    ref = pefile.PE(data=data)
    assert img.exports == sorted((e.address, e.name.decode()) for e in ref.DIRECTORY_ENTRY_EXPORT.symbols)
    assert img.export_lookup(0x1010) == ("FirstFunction", 0x10)
    assert img.export_lookup(0x1150) == ("SecondFunction", 0x50)
    # 0x1250 is in a function no export begins: a distant export would name the wrong code
    assert img.export_lookup(0x1250) is None
    assert img.export_lookup(0x1250, same_function=False) == ("SecondFunction", 0x150)
    assert img.export_lookup(0x1404) == ("LeafThing", 4)          # leaf, nothing in between
    assert img.export_lookup(0x0FFF) is None
    cv = img.codeview
    assert cv.guid == uuid.UUID(bytes_le=bytes(range(16))).hex.upper() and cv.age == 3 and cv.key.endswith("3")


# ---------------------------------------------------------------- images from dump memory
BASE = 0xFFFFF80500000000


def test_from_memory_with_missing_pages():
    data = _exporting_image()
    mem = FakeMemory()
    for rva in range(0, len(data), 0x1000):
        if rva != 0x3000:                          # one .text page is not in the dump
            mem.add(BASE + rva, data[rva:rva + 0x1000])
    img = PEImage.from_memory(mem.read_virtual, BASE, len(data), name="synth.sys")
    assert img.base == BASE and img.exports[0] == (0x1000, "FirstFunction")
    assert len(img.runtime_functions) == 3
    assert img.read_va(BASE + 0x1000, 4) == data[0x1000:0x1004]
    with pytest.raises(ImageError, match="not present"):
        img.read_rva(0x3010, 4)
    assert img.missing_pages == {0x3000}
    assert "missing=1p" in repr(img)


def test_from_pages_and_header_missing():
    data = _exporting_image()
    img = PEImage.from_pages(lambda va: data[va - BASE:va - BASE + 0x1000], BASE)
    assert img.size_of_image == len(data)
    with pytest.raises(ImageError, match="header"):
        PEImage.from_memory(FakeMemory().read_virtual, BASE, 0x10000)


def test_dump_memory_provider_checks_identity():
    data = _exporting_image()
    mem = FakeMemory([(BASE, data)])
    prov = DumpMemoryImages(mem)
    good = Module("synth.sys", BASE, len(data), timestamp=0x5F000000)
    assert prov.image_for(good) is not None and prov.image_for(good) is prov.image_for(good)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DumpWarning)
        assert prov.image_for(Module("other.sys", BASE, len(data), timestamp=0x12345678)) is None
    assert prov.image_for(Module("gone.sys", BASE + 0x100000, 0x10000)) is None


# ---------------------------------------------------------------- image folders
def test_store_images_symbol_store_layout():
    prov = StoreImages([shared_path("symstore")])
    m = Module("amdppm.sys", 0xFFFFF8048B580000, 0x3B000, timestamp=0xC9C03000)
    img = prov.image_for(m)
    assert img is not None and img.timestamp == 0xC9C03000 and img.base == m.base
    assert prov.image_for(m) is img                                      # cached
    assert prov.image_for(Module("AMDPPM.SYS", m.base, 0x3B000, timestamp=0xC9C03000)) is not None
    assert prov.image_for(Module("amdppm.sys", m.base, 0x3B000, timestamp=0x1)) is None
    assert prov.image_for(Module("nothere.sys", m.base, 0x3B000, timestamp=0x1)) is None


def test_store_images_flat_folder_verifies_identity(tmp_path):
    shutil.copy(real(STORE_FILES[0]), tmp_path / "AmdPpm.sys")
    prov = StoreImages(tmp_path)
    assert prov.image_for(Module("amdppm.sys", 0, 0x3B000, timestamp=0xC9C03000)) is not None
    assert prov.image_for(Module("amdppm.sys", 0, 0x3C000, timestamp=0xC9C03000)) is None   # wrong size
    (tmp_path / "bad.sys").write_bytes(b"MZ garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DumpWarning)
        assert prov.image_for(Module("bad.sys", 0, 0x1000, timestamp=1)) is None
    chain = ChainImages([StoreImages(tmp_path / "nothing"), prov])
    assert chain.image_for(Module("amdppm.sys", 0, 0x3B000, timestamp=0xC9C03000)) is not None


# ---------------------------------------------------------------- bad input
def test_not_a_pe():
    for data in (b"", b"MZ", b"XX" + bytes(0x200), b"MZ" + bytes(0x3A) + b"\xff\xff\xff\x7f"):
        with pytest.raises(ImageError):
            PEImage.from_bytes(data)


_BASE_IMAGE = _exporting_image()


@settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 0x1FF), st.integers(0, 255)), min_size=1, max_size=24),
       st.sampled_from([0, 0x8000, 0xC000]))
def test_mutated_headers_only_raise_dumpkit_errors(edits, region):
    data = bytearray(_BASE_IMAGE)
    for off, val in edits:
        data[region + off if region else off] = val
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DumpWarning)
        try:
            img = PEImage.from_bytes(bytes(data))
        except ImageError:
            return
        try:
            img.exports, img.codeview, img.version_info, img.export_lookup(0x1010)
            for f in img.runtime_functions[:8]:
                try:
                    img.unwind_info_for(f)
                except DumpError:
                    pass
            img.function_for(0x1050)
        except DumpError:
            pass


def test_optional_header_too_small_for_pe32_plus_is_an_image_error():
    """Regression (hypothesis): SizeOfOptionalHeader 0x61 with the PE32+ magic left too few bytes
    for NumberOfRvaAndSizes (at 0x6c): a raw struct.error before."""
    data = bytearray(_BASE_IMAGE)
    data[148] = 97
    with pytest.raises(ImageError, match="optional header too small"):
        PEImage.from_bytes(bytes(data))


@settings(max_examples=100, deadline=2000)
@given(st.binary(min_size=0, max_size=0x600))
def test_random_bytes_are_image_errors(blob):
    try:
        PEImage.from_bytes(b"MZ" + blob)
    except ImageError:
        pass


@pytest.mark.parametrize("machine", [0x8664, 0xAA64])
def test_huge_declared_exception_directory_costs_what_the_file_holds(machine):
    """A header declaring a 4 GiB exception directory in a 1 GiB image (a 64 KiB file, one section
    moved to near the end of it) is read only where the file holds bytes: before, read_rva_partial
    allocated the whole declared table (48 MiB) and mapped every page of it (~145 MiB, 0.6 s)."""
    import time
    import tracemalloc

    data = bytearray(_BASE_IMAGE)
    opt = 0x98
    struct.pack_into("<H", data, 0x84, machine)
    struct.pack_into("<I", data, opt + 56, 0x3FFFF000)                       # SizeOfImage ~1 GiB
    struct.pack_into("<II", data, opt + 112 + 3 * 8, 0xC000, 0xFFFFFFFF)     # 4 GiB .pdata directory
    struct.pack_into("<I", data, opt + 0xF0 + 40 + 12, 0x3FF00000)           # .rdata mapped far away
    ref = PEImage.from_bytes(_BASE_IMAGE)
    tracemalloc.start()
    t = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DumpWarning)
        img = PEImage.from_bytes(bytes(data))
        rfs = img.runtime_functions
        touched = (img.exports, img.codeview)        # the tables a user would touch next
    cpu = time.process_time() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert cpu < 0.5 and peak < 8 << 20, (cpu, peak)
    assert len(img._pages) < 40 and touched[0] == []   # .rdata (the export table) moved away
    if machine == 0x8664:
        assert [f.begin for f in rfs] == [f.begin for f in ref.runtime_functions]
    # the bytes it does return are the file's; the far section is read where it was moved to
    assert img.read_rva_partial(0xC000, 0x1000) == _BASE_IMAGE[0xC000:0xD000]
    assert img.read_rva_partial(0x3FF00000, 16) == _BASE_IMAGE[0x8000:0x8010]
    assert img.read_rva_partial(0x20000000, 0x1000) == b""                  # no section there


def test_read_rva_partial_of_a_memory_image_stops_at_the_last_present_page():
    data = _exporting_image()
    mem = FakeMemory()
    for rva in (0, 0x1000, 0x3000):
        mem.add(BASE + rva, data[rva:rva + 0x1000])
    img = PEImage.from_memory(mem.read_virtual, BASE, len(data), name="synth.sys")
    got = img.read_rva_partial(0x1800, 0xFFFFFFFF)                           # bounded by the mapped size
    assert got == data[0x1800:0x2000] + bytes(0x1000) + data[0x3000:0x4000]
