"""Symbol paths and local stores: layouts, redirects, cabinets, identity checks, hostile names."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from dumpkit.errors import SymbolError
from dumpkit.symbolize import Cabinet, LocalStore, SymbolPath, SymbolServer, extract_single
from dumpkit.symbolize.names import check_name, image_key, pdb_key, UnsafeNameError
from dumpkit.symbolize.store import ChainEntry, FolderEntry

from .conftest import shared_path
from .test_symbols_support import driver_identity, make_cab


@pytest.fixture
def nd():
    return driver_identity("ndislike")


def _put(root, *parts, src=None, data=None):
    p = root.joinpath(*parts)
    p.parent.mkdir(parents=True, exist_ok=True)
    if src is not None:
        shutil.copyfile(src, p)
    else:
        p.write_bytes(data)
    return p


# --------------------------------------------------------------------------- keys and names
def test_keys_follow_symstore_conventions():
    # examples from the symbol-store key conventions (SSQP) and the real store in ../shared
    assert pdb_key("0C2E19EA-1901-E9B8-2E45-67D2D21E56D2", 1) == "0C2E19EA1901E9B82E4567D2D21E56D21"
    assert pdb_key("{1C19FDDB-27BB-3399-D9B4-5973EFEAFCF3}", 0x1F) == "1C19FDDB27BB3399D9B45973EFEAFCF31F"
    assert image_key(0x542D5742, 0x32000) == "542D574232000"
    assert image_key(0xC9C03000, 0x3B000).lower() == "c9c030003b000"     # the directory in ../shared/symstore
    assert image_key(0x66784EAB, 0x2A000).upper() == "66784EAB2A000"          # SymSrv log; matched case-blind


@pytest.mark.parametrize("bad", ["..\\..\\x.pdb", "../x.pdb", "/etc/passwd", "C:x.pdb", "c:\\w\\x.pdb",
                                 "..", ".", "", "x.pdb\0", "a b.pdb", "x\n.pdb", "file.ptr", "CON", "nul.pdb",
                                 "x" * 200, "ü.pdb", "x.pdb.", "x..pdb"])
def test_hostile_names_refused(bad):
    with pytest.raises(UnsafeNameError):
        check_name(bad)


def test_hostile_names_never_touch_disk(tmp_path, nd):
    sysp, pdbp, guid, key, age, ts, size = nd
    sp = SymbolPath(f"srv*{tmp_path / 'cache'}*{tmp_path / 'store'}", offline=True)
    assert sp.find_pdb("..\\..\\x.pdb", guid, age) is None
    assert sp.last_attempts[-1].result == "refused"
    assert sp.find_image("/etc/passwd", ts, size) is None
    assert sp.last_attempts[-1].result == "refused"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "store").exists()


@pytest.mark.parametrize("name", ["amdppm.pdb", "ntkrnlmp.pdb", "Wdf01000.sys", "tcpip.sys", "msvcp140_1.dll",
                                  "api-ms-win-core-file-l1-1-0.dll", "vcruntime140.amd64.pdb", "a~b$c@d+e.pdb"])
def test_real_names_accepted(name):
    assert check_name(name) == name


# --------------------------------------------------------------------------- parsing
def test_parse_forms(tmp_path, monkeypatch):
    monkeypatch.setenv("DUMPKIT_SYMBOL_CACHE", str(tmp_path / "default"))
    sp = SymbolPath(f"srv*{tmp_path}/c*https://msdl.example/download/symbols;"
                    f"symsrv*symsrv.dll*{tmp_path}/c2*https://b.example;"
                    f"srv**https://c.example;  ;{tmp_path}/flat;"
                    f"cache*{tmp_path}/cc;srv*https://d.example;{tmp_path}/flat2", offline=True)
    kinds = [type(e).__name__ for e in sp.entries]
    assert kinds == ["ChainEntry", "ChainEntry", "ChainEntry", "FolderEntry", "ChainEntry", "FolderEntry"]
    e0, e1, e2, _, e4, e5 = sp.entries
    assert isinstance(e0.stores[0], LocalStore) and e0.stores[0].root == str(tmp_path / "c")
    assert isinstance(e0.stores[1], SymbolServer) and e0.stores[1].url == "https://msdl.example/download/symbols"
    assert e1.stores[0].root == str(tmp_path / "c2") and e1.stores[1].url == "https://b.example"
    assert e2.stores[0].root == str(tmp_path / "default")              # srv** = default downstream store
    assert e4.stores[0].root == str(tmp_path / "cc")                    # cache* applies to entries on its right
    assert e5.cache.root == str(tmp_path / "cc")
    assert [s.url for s in sp.servers] == ["https://msdl.example/download/symbols", "https://b.example",
                                           "https://c.example", "https://d.example"]


@pytest.mark.parametrize("bad", ["foo*bar", "srv*", "symsrv*symsrv.dll"])
def test_parse_errors(bad):
    with pytest.raises(SymbolError):
        SymbolPath(bad)


def test_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("_NT_ALT_SYMBOL_PATH", str(tmp_path / "alt"))
    monkeypatch.setenv("_NT_SYMBOL_PATH", f"srv*{tmp_path}/c*https://x.example")
    sp = SymbolPath.from_environment(offline=True)
    assert isinstance(sp.entries[0], FolderEntry) and isinstance(sp.entries[1], ChainEntry)


# --------------------------------------------------------------------------- local stores
def test_one_tier_store_case_insensitive(tmp_path, nd):
    sysp, pdbp, guid, key, age, ts, size = nd
    _put(tmp_path, "ndislike.pdb", key.lower(), "ndislike.pdb", src=pdbp)     # Windows-made, lower case
    _put(tmp_path, "NDISLIKE.SYS", image_key(ts, size).lower(), "ndislike.sys", src=sysp)
    sp = SymbolPath(f"srv*{tmp_path}", offline=True)
    got = sp.find_pdb("ndislike.pdb", guid, age)
    assert got and os.path.samefile(got, tmp_path / "ndislike.pdb" / key.lower() / "ndislike.pdb")
    assert sp.find_image("ndislike.sys", ts, size)
    # a different age or timestamp is a different key: not found, never "close enough"
    assert sp.find_pdb("ndislike.pdb", guid, age + 1) is None
    assert sp.find_image("ndislike.sys", ts + 1, size) is None


def test_two_tier_store(tmp_path, nd):
    sysp, pdbp, guid, key, age, ts, size = nd
    (tmp_path / "index2.txt").write_text("")
    _put(tmp_path, "nd", "ndislike.pdb", key, "ndislike.pdb", src=pdbp)
    assert LocalStore(str(tmp_path)).two_tier
    sp = SymbolPath(f"srv*{tmp_path}", offline=True)
    assert sp.find_pdb("ndislike.pdb", guid, age) == str(tmp_path / "nd" / "ndislike.pdb" / key / "ndislike.pdb")


def test_identity_mismatch_is_refused(tmp_path, nd):
    """A file under the right key but with another GUID is reported, not used."""
    sysp, pdbp, guid, key, age, ts, size = nd
    other = driver_identity("ntlike")
    _put(tmp_path, "store", "ndislike.pdb", key, "ndislike.pdb", src=other[1])
    _put(tmp_path, "flat", "ndislike.pdb", src=other[1])
    _put(tmp_path, "flat", "ndislike.sys", src=other[0])
    sp = SymbolPath(f"srv*{tmp_path / 'store'};{tmp_path / 'flat'}", offline=True)
    assert sp.find_pdb("ndislike.pdb", guid, age) is None
    results = [(a.result, a.detail) for a in sp.last_attempts]
    assert [r for r, _ in results].count("mismatch") == 2
    assert any("GUID" in d for _, d in results)
    assert sp.find_image("ndislike.sys", ts, size) is None
    assert [a.result for a in sp.last_attempts] == ["missing", "mismatch"]


def test_flat_folder_and_cache(tmp_path, nd):
    sysp, pdbp, guid, key, age, ts, size = nd
    _put(tmp_path, "build", "pdb", "ndislike.pdb", src=pdbp)       # <dir>/<ext>/<name>
    _put(tmp_path, "build", "ndislike.sys", src=sysp)
    sp = SymbolPath(f"cache*{tmp_path / 'cache'};{tmp_path / 'build'}", offline=True)
    got = sp.find_pdb("ndislike.pdb", guid, age)
    assert got == str(tmp_path / "cache" / "ndislike.pdb" / key / "ndislike.pdb")
    assert sp.find_image("ndislike.sys", ts, size)


def test_file_ptr_redirects(tmp_path, nd):
    sysp, pdbp, guid, key, age, ts, size = nd
    real = _put(tmp_path, "elsewhere", "ndislike.pdb", src=pdbp)
    _put(tmp_path, "store", "ndislike.pdb", key, "file.ptr", data=f"PATH:{real}\r\n".encode())
    sp = SymbolPath(f"srv*{tmp_path / 'store'}", offline=True)
    assert sp.find_pdb("ndislike.pdb", guid, age) == str(real)
    assert sp.last_attempts[-1].detail == "via file.ptr"
    # MSG: is a message from the store keeper: reported, treated as a miss
    _put(tmp_path, "store2", "ndislike.pdb", key, "file.ptr", data=b"MSG: withdrawn by the vendor")
    sp2 = SymbolPath(f"srv*{tmp_path / 'store2'}", offline=True)
    assert sp2.find_pdb("ndislike.pdb", guid, age) is None
    assert ("message", "withdrawn by the vendor") in [(a.result, a.detail) for a in sp2.last_attempts]


@pytest.mark.parametrize("reserve", [False, True])
def test_compressed_store_extracts_into_cache(tmp_path, nd, reserve):
    sysp, pdbp, guid, key, age, ts, size = nd
    _put(tmp_path, "up", "ndislike.pdb", key, "ndislike.pd_", data=make_cab("ndislike.pdb", pdbp.read_bytes(),
                                                                              reserve=reserve))
    _put(tmp_path, "up", "ndislike.sys", image_key(ts, size), "ndislike.sy_", data=make_cab("ndislike.sys",
                                                                                           sysp.read_bytes()))
    sp = SymbolPath(f"srv*{tmp_path / 'down'}*{tmp_path / 'up'}", offline=True)
    got = sp.find_pdb("ndislike.pdb", guid, age)
    assert got == str(tmp_path / "down" / "ndislike.pdb" / key / "ndislike.pdb")
    assert open(got, "rb").read() == pdbp.read_bytes()
    assert sp.find_image("ndislike.sys", ts, size)
    shutil.rmtree(tmp_path / "up")                                   # the cache alone answers now
    sp2 = SymbolPath(f"srv*{tmp_path / 'down'}*{tmp_path / 'up'}", offline=True)
    assert sp2.find_pdb("ndislike.pdb", guid, age) == got


def test_real_symstore_lookup():
    store = shared_path("symstore")
    sp = SymbolPath(f"srv*{store}", offline=True)
    pdb = sp.find_pdb("amdppm.pdb", "1C19FDDB-27BB-3399-D9B4-5973EFEAFCF3", 1)
    assert pdb and pdb.endswith("amdppm.pdb")
    assert sp.find_image("amdppm.sys", 0xC9C03000, 0x3B000)          # lower-case key directory in the store
    assert sp.find_image("Wdf01000.sys", 0xA9A9D36E, 0xD1000)
    assert SymbolPath(str(store), offline=True).find_pdb("amdppm.pdb", "1C19FDDB27BB3399D9B45973EFEAFCF3", 1)


# --------------------------------------------------------------------------- cabinets
def test_cab_multiblock_dictionary_carry_over():
    """Blocks whose deflate data refers back into the previous block (needs the 32 KB window)."""
    unit = bytes(range(256)) * 128                       # 32 KB, repeated: block 2+ are back-references
    data = unit * 3 + b"tail"
    cab = make_cab("x.pdb", data, carry=True)
    parsed = Cabinet(cab)
    assert parsed.entries[0].name == "x.pdb" and parsed.compression(0) == "MSZIP"
    assert extract_single(cab) == data
    # prove the carry-over was needed: block 2 alone does not inflate
    assert len(cab) < 2000
    assert extract_single(make_cab("x.pdb", data, carry=False)) == data
    assert extract_single(make_cab("x.pdb", data, stored=True)) == data


def test_cab_errors():
    good = make_cab("x.pdb", b"hello world" * 5000)
    with pytest.raises(SymbolError, match="not a cabinet"):
        extract_single(b"PK\3\4" + good[4:])
    with pytest.raises(SymbolError):
        extract_single(good[:-50])
    with pytest.raises(SymbolError, match="limit"):
        extract_single(good, max_size=1000)
    bad = bytearray(good)
    bad[-20:] = b"\xff" * 20
    with pytest.raises(SymbolError):
        extract_single(bytes(bad))


@pytest.mark.skipif(shutil.which("gcab") is None, reason="gcab not installed (apt-get install gcab)")
def test_cab_made_by_gcab(tmp_path):
    src = shared_path("msvc", "xcpt4.pdb")                # 836 KB: 27 MSZIP blocks
    shutil.copyfile(src, tmp_path / "xcpt4.pdb")
    subprocess.run(["gcab", "-c", "-z", str(tmp_path / "x.cab"), "xcpt4.pdb"], cwd=tmp_path, check=True,
                   timeout=60)
    assert extract_single(tmp_path / "x.cab") == src.read_bytes()
