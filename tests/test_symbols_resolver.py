"""The resolver: PDB, then exports, then module+offset, matched by identity, with a per-module report.

Truth: triage_x64.expected.md (WinDbg's stack for the real dump) and the lld linker map of the
fixture driver (fixtures/drivers/bin/ndislike.map).
"""
from __future__ import annotations

import json
import re
import shutil

import pytest

from dumpkit.model import Frame, Module
from dumpkit.symbolize import Resolution, Resolver, SymbolPath
from dumpkit.symbolize.names import image_key

from .conftest import shared_path
from .test_symbols_support import driver_identity, fixture

AMDPPM = dict(name="\\SystemRoot\\System32\\drivers\\amdppm.sys", base=0xFFFFF8048B580000, size=0x3B000,
              timestamp=0xC9C03000)
WDF = dict(name="\\SystemRoot\\system32\\drivers\\Wdf01000.sys", base=0xFFFFF80479950000, size=0xD1000,
           timestamp=0xA9A9D36E)


def _expected_frames():
    """Frames 08..0d (amdppm) and 0e..17 (Wdf01000) from triage_x64.expected.md."""
    text = shared_path("dumps", "triage_x64.expected.md").read_text()
    rows = re.findall(r"^([0-9a-f]{2}) ([0-9a-f]{16}) [0-9a-f]{16} ((?:amdppm|Wdf01000)\S+)", text, re.M)
    assert len(rows) == 16
    return [(int(i, 16), int(ip, 16), site) for i, ip, site in rows]


def test_triage_amdppm_and_wdf_frames_like_windbg():
    store = shared_path("symstore")
    r = Resolver(f"srv*{store}")
    amd, wdf = Module(**AMDPPM), Module(**WDF)
    for index, ip, site in _expected_frames():
        mod = amd if site.startswith("amdppm") else wdf
        # frame 08 is the faulting instruction (from the exception CONTEXT), the rest are return addresses
        res = r.resolve(mod, ip, return_address=index != 8)
        assert res.text == site, (index, res)
        assert res.source == ("pdb" if mod is amd else "module")
    rep = {m.module.name: m.to_json() for m in r.report()}
    a, w = rep[AMDPPM["name"]], rep[WDF["name"]]
    assert a["symbols"] == "pdb" and a["pdb"]["identity"] == "1C19FDDB27BB3399D9B45973EFEAFCF31"
    assert a["image"]["found"] and a["image"]["source"] == "symbol path"
    assert w["symbols"] == "module" and w["image"]["found"] and not w["pdb"]["found"]
    assert any("Wdf01000.pdb" in n and "not found" in n for n in w["notes"])
    assert any(att["kind"] == "pdb" and att["result"] == "missing" for att in w["attempts"])
    json.dumps(r.report_json())                                  # the CLI prints this
    assert "amdppm" in r.report_text()


def test_resolution_text_and_frame_annotation():
    store = shared_path("symstore")
    r = Resolver(SymbolPath(f"srv*{store}"))
    amd = Module(**AMDPPM)
    f = Frame(index=9, instruction=0xFFFFF8048B58313F, child_sp=0xFFFF850429892150)
    res = r.annotate(f, amd)
    assert isinstance(res, Resolution)
    assert f.call_site == "amdppm!WriteGenAddrEx+0x6b" and f.symbol_source == "pdb"
    assert f.image_name == "amdppm.sys"
    # the same module object again: cached, no new search
    n = len(r.symbol_path.attempts)
    r.resolve(amd, AMDPPM["base"] + 0x334C)
    assert len(r.symbol_path.attempts) == n
    out = r.resolve(amd, AMDPPM["base"] + 0x3B000 + 5)
    assert out.source == "module" and "outside" in out.detail


@pytest.fixture
def nd_store(tmp_path):
    sysp, pdbp, guid, key, age, ts, size = driver_identity("ndislike")
    img_dir = tmp_path / "store" / "ndislike.sys" / image_key(ts, size)
    img_dir.mkdir(parents=True)
    shutil.copyfile(sysp, img_dir / "ndislike.sys")
    mod = Module("\\SystemRoot\\system32\\drivers\\ndislike.sys", 0xFFFFF80000000000, size, timestamp=ts)
    return tmp_path, mod, pdbp, key


def _map_rva(name: str) -> int:
    text = fixture("ndislike.map").read_text()
    m = re.search(r"^\s*0001:([0-9a-f]{8})\s+" + re.escape(name) + r"\s", text, re.M)
    return 0x1000 + int(m.group(1), 16)


def test_exports_fallback_then_module(nd_store):
    tmp_path, mod, pdbp, key = nd_store
    r = Resolver(f"srv*{tmp_path / 'store'}")
    dereg = _map_rva("NdisFDeregisterFilterDriver")
    res = r.resolve(mod, mod.base + dereg + 0x10)
    assert (res.text, res.source) == ("ndislike!NdisFDeregisterFilterDriver+0x10", "exports")
    internal = _map_rva("ndisDeregisterFilterDriverInternal")           # not exported, before any export
    res = r.resolve(mod, mod.base + internal + 8)
    assert (res.text, res.source) == (f"ndislike+0x{internal + 8:x}", "module")
    ms = r.report()[0]
    assert ms.best_source == "exports"
    assert any("ndislike.pdb" in n for n in ms.notes)


def test_pdb_preferred_when_found_by_identity(nd_store):
    tmp_path, mod, pdbp, key = nd_store
    pdir = tmp_path / "store" / "ndislike.pdb" / key
    pdir.mkdir(parents=True)
    shutil.copyfile(pdbp, pdir / "ndislike.pdb")
    r = Resolver(f"srv*{tmp_path / 'store'}")
    internal = _map_rva("ndisDeregisterFilterDriverInternal")
    res = r.resolve(mod, mod.base + internal + 8)
    assert (res.text, res.source) == ("ndislike!ndisDeregisterFilterDriverInternal+0x8", "pdb")
    assert "function" in res.detail


def test_never_by_name_alone(nd_store):
    """A PDB named like the image's but with another GUID, and an image without a timestamp: not used."""
    tmp_path, mod, pdbp, key = nd_store
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copyfile(driver_identity("ntlike")[1], flat / "ndislike.pdb")
    r = Resolver(f"srv*{tmp_path / 'store'};{flat}")
    res = r.resolve(mod, mod.base + _map_rva("ndisTraceValue"))
    assert res.source != "pdb"
    ms = r.report()[0]
    assert any(a.result == "mismatch" and "GUID" in a.detail for a in ms.attempts)
    anon = Module("ndislike.sys", 0xFFFFF80000100000, 0x6000)          # no TimeDateStamp known
    res = r.resolve(anon, anon.base + 0x1450)
    assert res.source == "module" and "TimeDateStamp" in res.detail


def test_hostile_module_name_is_contained(tmp_path):
    r = Resolver(f"srv*{tmp_path}")
    m = Module("..\\..\\..\\x.sys\\..", 0x1000, 0x1000, timestamp=1)
    res = r.resolve(m, 0x1010)
    assert res.source == "module" and res.offset == 0x10
    m2 = Module("\\??\\C:\\evil\\a b.sys", 0x1000, 0x1000, timestamp=1)
    assert r.resolve(m2, 0x1010).source == "module"
    assert list(tmp_path.iterdir()) == []


def test_image_provider_is_asked_first(nd_store):
    """An image mapped in the dump (here: a provider returning the file) identifies the PDB."""
    from dumpkit.pe.image import PEImage

    tmp_path, mod, pdbp, key = nd_store
    flat = tmp_path / "pdbs"
    flat.mkdir()
    shutil.copyfile(pdbp, flat / "ndislike.pdb")
    img = PEImage.from_file(fixture("ndislike.sys"))

    class Provider:
        def image_for(self, module):
            return img

    r = Resolver(str(flat), images=Provider())
    res = r.resolve(mod, mod.base + _map_rva("ndisTraceValue") + 2)
    assert (res.text, res.source) == ("ndislike!ndisTraceValue+0x2", "pdb")
    assert r.report()[0].image_source == "provider"


