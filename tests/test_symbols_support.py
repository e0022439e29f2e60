"""Helpers for the symbol tests: a minimal CAB writer (published CAB format) and fixture lookup.

The writer exists so the CAB reader is checked against bytes built independently of it,
including MSZIP blocks whose back-references reach into the previous block (the
dictionary carry-over that the format allows).
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Tuple

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE_BIN = ROOT / "fixtures" / "drivers" / "bin"


def make_cab(name: str, data: bytes, *, carry: bool = True, reserve: bool = False, stored: bool = False) -> bytes:
    """A one-file, one-folder cabinet holding ``data`` (MSZIP unless ``stored``)."""
    blocks = []
    for i in range(0, max(len(data), 1), 32768):
        chunk = data[i:i + 32768]
        if stored:
            blocks.append((chunk, len(chunk)))
            continue
        window = data[max(0, i - 32768):i]
        c = (zlib.compressobj(9, zlib.DEFLATED, -15, zdict=window) if carry and window
             else zlib.compressobj(9, zlib.DEFLATED, -15))
        blocks.append((b"CK" + c.compress(chunk) + c.flush(), len(chunk)))
    hdr_extra = struct.pack("<HBB", 8, 0, 4) + b"\xAA" * 8 if reserve else b""
    data_reserve = b"\xBB" * 4 if reserve else b""
    folder_off = 36 + len(hdr_extra)
    file_off = folder_off + 8
    fname = name.encode() + b"\0"
    data_off = file_off + 16 + len(fname)
    cfdata = b"".join(struct.pack("<IHH", 0, len(comp), n) + data_reserve + comp for comp, n in blocks)
    total = data_off + len(cfdata)
    hdr = struct.pack("<4sIIIIIBBHHHHH", b"MSCF", 0, total, 0, file_off, 0, 3, 1, 1, 1,
                      4 if reserve else 0, 0x1234, 0) + hdr_extra
    folder = struct.pack("<IHH", data_off, len(blocks), 0 if stored else 1)
    cffile = struct.pack("<IIHHHH", len(data), 0, 0, 0x5A21, 0x6000, 0x20) + fname
    return hdr + folder + cffile + cfdata


def fixture(name: str) -> Path:
    p = FIXTURE_BIN / name
    if not p.exists():
        pytest.skip(f"{p} not built")
    return p


def driver_identity(stem: str) -> Tuple[Path, Path, str, str, int, int, int]:
    """(sys, pdb, pdb GUID hex, pdb key, age, timestamp, size_of_image) of a fixture driver."""
    from dumpkit.symbolize import Pdb
    from dumpkit.symbolize.store import image_identity

    sys_p, pdb_p = fixture(stem + ".sys"), fixture(stem + ".pdb")
    with Pdb.open(pdb_p) as pdb:
        guid, age, key = pdb.guid.hex.upper(), pdb.age, pdb.identity
    ts, size = image_identity(str(sys_p))
    return sys_p, pdb_p, guid, key, age, ts, size
