"""The PDB reader against llvm-pdbutil (an independent PDB implementation) and the images' CodeView.

Truth comes from outside dumpkit: `llvm-pdbutil dump --publics/--summary/--section-headers/--symbols`
and pefile's view of the matching image.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from .conftest import ROOT, shared_path
from dumpkit.errors import PdbError
from dumpkit.symbolize import Pdb, undecorate

LLVM_PDBUTIL = shutil.which("llvm-pdbutil")
needs_pdbutil = pytest.mark.skipif(LLVM_PDBUTIL is None, reason="llvm-pdbutil not installed (Debian package llvm)")

FIXTURE_BIN = ROOT / "fixtures" / "drivers" / "bin"
AMDPPM_KEY = "1C19FDDB27BB3399D9B45973EFEAFCF31"


def _pdbutil(*args: str) -> str:
    return subprocess.run([LLVM_PDBUTIL, *args], check=True, capture_output=True, text=True,
                          timeout=120).stdout


def pdb_files():
    """(id, path getter) for every PDB the tests know about; each skips when absent."""
    out = [("amdppm", lambda: shared_path("symstore", "amdppm.pdb", AMDPPM_KEY, "amdppm.pdb")),
           ("xcpt4", lambda: shared_path("msvc", "xcpt4.pdb")),
           ("nested_collided", lambda: shared_path("msvc", "nested_collided.pdb"))]
    for n in ("ndislike", "ntlike", "lwffilter"):
        out.append((n, lambda n=n: _fixture(n + ".pdb")))
    return out


def _fixture(name: str) -> Path:
    p = FIXTURE_BIN / name
    if not p.exists():
        pytest.skip(f"{p} not built")
    return p


ALL = pytest.mark.parametrize("getter", [g for _, g in pdb_files()], ids=[i for i, _ in pdb_files()])

_PUB_RE = re.compile(r"S_PUB32 \[size = \d+\] `(.*)`\n\s+flags = ([^,]*), addr = (\d+):(\d+)")
_SEC_RE = re.compile(r"SECTION HEADER #(\d+)\n\s+(\S*) name\n\s+([0-9A-F]+) virtual size\n\s+([0-9A-F]+) virtual address")
_PROC_RE = re.compile(r"S_(?:G|L)PROC32(?:_ID)? \[size = \d+\] `(.*)`\n\s+parent = \d+, end = \d+, "
                      r"addr = (\d+):(\d+), code size = (\d+)")


def _llvm_sections(path: Path):
    text = _pdbutil("dump", "--section-headers", str(path))
    return {int(m.group(1)): int(m.group(4), 16) for m in _SEC_RE.finditer(text)}


@needs_pdbutil
@ALL
def test_publics_match_llvm_pdbutil(getter):
    path = getter()
    text = _pdbutil("dump", "--publics", str(path))
    expected = [(m.group(1), int(m.group(3)), int(m.group(4))) for m in _PUB_RE.finditer(text)]
    assert expected, "llvm-pdbutil listed no publics"
    assert text.count("S_PUB32") == len(expected)            # the regex saw every record
    with Pdb.open(path) as pdb:
        got = [(p.name, p.segment, p.offset) for p in pdb.public_symbols()]
        # llvm-pdbutil lists in publics-hash order, dumpkit in record-stream order: same multiset
        assert sorted(got) == sorted(expected)
        secs = _llvm_sections(path)
        want_rva = sorted((secs[seg] + off, name) for name, seg, off in expected if seg in secs)
        assert pdb.publics() == want_rva                       # RVA = section VA + offset
        # publics llvm cannot place (absolute symbols such as __guard_flags) are the only ones left out
        assert len(pdb.publics()) == sum(1 for _, seg, _ in expected if seg in secs)


@needs_pdbutil
@ALL
def test_identity_matches_llvm_summary(getter):
    path = getter()
    text = _pdbutil("dump", "--summary", str(path))
    guid = uuid.UUID(re.search(r"GUID: \{([0-9A-F-]+)\}", text).group(1))
    info_age = int(re.search(r"Age: (\d+)", text).group(1))
    sig = int(re.search(r"Signature: (\d+)", text).group(1))
    with Pdb.open(path) as pdb:
        assert pdb.guid == guid
        assert pdb.info_age == info_age
        assert pdb.signature == sig
        assert pdb.identity.startswith(guid.hex.upper())
        assert pdb.msf.check() == []


@needs_pdbutil
@ALL
def test_section_headers_match_llvm(getter):
    path = getter()
    secs = _llvm_sections(path)
    with Pdb.open(path) as pdb:
        assert {i + 1: s.virtual_address for i, s in enumerate(pdb.sections)} == secs


@needs_pdbutil
@ALL
def test_procedures_match_llvm_symbols(getter):
    path = getter()
    text = _pdbutil("dump", "--symbols", str(path))
    secs = _llvm_sections(path)
    expected = sorted({(secs[int(s)] + int(o), int(n), name) for name, s, o, n in _PROC_RE.findall(text)
                       if int(s) in secs})
    with Pdb.open(path) as pdb:
        got = sorted({(p.rva, p.size, p.name) for p in pdb.procedures() if p.kind != 0x1102})
        assert got == expected


def test_amdppm_identity_matches_image_codeview():
    """The store key, pefile's CodeView record of amdppm.sys and the PDB agree (DBI age, not info age)."""
    pefile = pytest.importorskip("pefile")
    img = shared_path("symstore", "amdppm.sys", "c9c030003b000", "amdppm.sys")
    pe = pefile.PE(str(img), fast_load=True)
    pe.parse_data_directories(directories=[6])
    cv = [d for d in pe.DIRECTORY_ENTRY_DEBUG if d.struct.Type == 2][0]
    raw = pe.get_data(cv.struct.AddressOfRawData, cv.struct.SizeOfData)
    assert raw[:4] == b"RSDS"
    guid = uuid.UUID(bytes_le=raw[4:20])
    age = int.from_bytes(raw[20:24], "little")
    with Pdb.open(shared_path("symstore", "amdppm.pdb", AMDPPM_KEY, "amdppm.pdb")) as pdb:
        assert pdb.guid == guid
        assert pdb.age == age == 1
        assert pdb.info_age == 3                 # the info stream's age differs: debuggers use the DBI age
        assert pdb.identity == AMDPPM_KEY
        assert pdb.machine == 0x8664


# amdppm frames 08..0d of triage_x64.expected.md, as RVAs from the module base 0xfffff8048b580000
AMDPPM_FRAMES = [
    (0x334C, "WriteIoMemRawEx", 0x70),
    (0x313F, "WriteGenAddrEx", 0x6B),
    (0x3234, "WriteGenAddrMaybeHiddenEx", 0x18),
    (0x20E8F, "InitAcpiCpc", 0x317),
    (0x283F6, "ProcLibDeviceStart", 0x886),
    (0x1F852, "EvtDevicePrepareHardware", 0xD2),
]


@pytest.mark.parametrize("rva,name,off", AMDPPM_FRAMES)
def test_amdppm_lookup(rva, name, off):
    with Pdb.open(shared_path("symstore", "amdppm.pdb", AMDPPM_KEY, "amdppm.pdb")) as pdb:
        assert pdb.lookup(rva) == (name, off)


def test_lookup_edges():
    with Pdb.open(shared_path("symstore", "amdppm.pdb", AMDPPM_KEY, "amdppm.pdb")) as pdb:
        assert pdb.lookup(0) is None                       # headers: no section, no symbol
        assert pdb.lookup(0x10_0000) is None               # beyond the image
        first_text = min(r for r, _ in pdb.publics() if 0x1000 <= r < 0xF000)
        assert pdb.lookup(first_text)[1] == 0


def test_fixture_function_ranges():
    """lld fixture: a procedure's range ends at its code size (truth: the linker map + llvm-pdbutil)."""
    path = _fixture("ndislike.pdb")
    with Pdb.open(path) as pdb:
        funcs = pdb.functions()
        assert funcs
        rva, size, name = funcs[0]
        assert pdb.lookup(rva + size - 1) == (name, size - 1)
        hit = pdb.symbol_at(rva)
        assert hit.kind == "function" and hit.size == size


def test_not_a_pdb(tmp_path):
    p = tmp_path / "x.pdb"
    p.write_bytes(b"<html>404</html>" * 10)
    with pytest.raises(PdbError, match="bad MSF magic"):
        Pdb.open(p)
    p.write_bytes(b"Microsoft C/C++ program database 2.00\r\n\x1aJG\0\0" + b"\0" * 64)
    with pytest.raises(PdbError, match="2.00"):
        Pdb.open(p)
    with pytest.raises(PdbError, match="cannot open"):
        Pdb.open(tmp_path / "missing.pdb")


@pytest.mark.parametrize("decorated,plain", [
    ("?FxStubInitTypes@@YAJXZ", "FxStubInitTypes"),
    ("?Start@Device@@QEAAJXZ", "Device::Start"),
    ("?Run@Inner@Outer@@QEAAXXZ", "Outer::Inner::Run"),
    ("??0Device@@QEAA@XZ", "Device::Device"),
    ("??1Device@@UEAA@XZ", "Device::~Device"),
    ("??_7Device@@6B@", "Device::`vftable'"),
    ("??_C@_07NFANNNEC@UNKNOWN@", "`string'"),
    ("KiPageFault", "KiPageFault"),
    ("?$weird@H@@", "?$weird@H@@"),
])
def test_undecorate(decorated, plain):
    assert undecorate(decorated) == plain


@needs_pdbutil
@ALL
def test_named_streams_and_modules_match_llvm(getter):
    path = getter()
    text = _pdbutil("dump", "--streams", str(path))
    named = {m.group(2): int(m.group(1)) for m in re.finditer(r"Stream\s+(\d+) \(\s*\d+ bytes\): \[Named Stream \"([^\"]+)\"\]", text)}
    mod_streams = {int(m.group(1)) for m in re.finditer(r"Stream\s+(\d+) \(\s*\d+ bytes\): \[Module \"", text)}
    with Pdb.open(path) as pdb:
        for name, idx in named.items():
            assert pdb.named_streams.get(name) == idx
        assert {m.symbol_stream for m in pdb.modules if m.symbol_stream is not None} == mod_streams
