"""Malformed input for the symbol code: only dumpkit errors, bounded time and memory.

The PDB mutations aim at the bytes that steer parsing (superblock, directory block map,
directory, info/DBI/symbol/module streams) of a real small PDB, plus truncations.
"""
from __future__ import annotations

import os
import tracemalloc
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dumpkit.errors import DumpError, DumpWarning, PdbError, SymbolError
from dumpkit.symbolize import Pdb, SymbolPath, extract_single
from dumpkit.symbolize.msf import MsfFile
from dumpkit.symbolize.names import UnsafeNameError, check_name

from .test_symbols_support import FIXTURE_BIN, make_cab

FUZZ = settings(max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


def _base_pdb() -> bytes:
    p = FIXTURE_BIN / "ndislike.pdb"
    if not p.exists():
        pytest.skip(f"{p} not built")
    return p.read_bytes()


def _regions(data: bytes):
    """(offset, length) of the bytes that steer the parser."""
    msf = MsfFile.from_bytes(data)
    bs = msf.block_size
    regs = [(0, 56), (msf.block_map_addr * bs, 64)]
    dir_blocks = []
    import struct
    n = -(-msf.directory_size // bs)
    dir_blocks = struct.unpack_from(f"<{n}I", data, msf.block_map_addr * bs)
    regs += [(b * bs, min(bs, 512)) for b in dir_blocks]
    pdb = Pdb(msf)
    streams = [1, 3]
    if pdb.dbi is not None:
        streams.append(pdb.dbi.symbol_record_stream)
        streams += [m.symbol_stream for m in pdb.modules if m.symbol_stream is not None]
        streams += [s for s in pdb.dbi.debug_streams if s != 0xFFFF]
    for s in streams:
        for b in msf.stream_blocks(s)[:2]:
            regs.append((b * bs, min(bs, 1024)))
    return regs


BASE = None
REGIONS = None


def _setup():
    global BASE, REGIONS
    if BASE is None:
        BASE = _base_pdb()
        REGIONS = _regions(BASE)
    return BASE, REGIONS


def _exercise(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DumpWarning)
        try:
            pdb = Pdb.from_bytes(data, "fuzz.pdb")
        except PdbError:
            return
        try:
            _ = pdb.identity, pdb.named_streams, pdb.sections
            pdb.publics()
            pdb.functions()
            for rva in (0, 0x1000, 0x1150, 0x1435, 0x2000, 0xFFFFFFFF):
                pdb.lookup(rva)
            pdb.msf.check()
        except PdbError:
            pass


@FUZZ
@given(st.data())
def test_pdb_mutations_raise_only_pdb_errors(data):
    base, regions = _setup()
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(1, 6))):
        off, length = regions[data.draw(st.integers(0, len(regions) - 1))]
        pos = off + data.draw(st.integers(0, max(0, length - 4)))
        val = data.draw(st.sampled_from([b"\x00\x00\x00\x00", b"\xff\xff\xff\xff", b"\x01\x00\x00\x00",
                                         b"\x00\x10\x00\x00", b"\xff\x7f\x00\x00", b"\x0e\x11"]) |
                        st.binary(min_size=1, max_size=4))
        buf[pos:pos + len(val)] = val
    if data.draw(st.booleans()):
        buf = buf[:data.draw(st.integers(0, len(buf)))]
    _exercise(bytes(buf))


@FUZZ
@given(st.integers(0, 80_000))
def test_pdb_truncations(n):
    base, _ = _setup()
    _exercise(base[:n])


def test_pdb_hostile_directory_is_bounded():
    """A directory claiming huge streams made of one repeated block stays within memory bounds."""
    import struct
    base, _ = _setup()
    msf = MsfFile.from_bytes(base)
    bs = msf.block_size
    dir_block = struct.unpack_from("<I", base, msf.block_map_addr * bs)[0]
    buf = bytearray(base)
    # stream 1 (info) says 0xFFFFFFF0 bytes: more blocks than the directory can list
    struct.pack_into("<I", buf, dir_block * bs + 4 + 4, 0xFFFFFFF0)
    tracemalloc.start()
    try:
        with pytest.raises(PdbError):
            Pdb.from_bytes(bytes(buf))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * len(base)


@settings(max_examples=40, deadline=4000)
@given(st.data())
def test_pdb_mutation_memory_bounded(data):
    base, regions = _setup()
    buf = bytearray(base)
    off, length = regions[data.draw(st.integers(0, len(regions) - 1))]
    pos = off + data.draw(st.integers(0, max(0, length - 4)))
    buf[pos:pos + 4] = data.draw(st.binary(min_size=4, max_size=4))
    tracemalloc.start()
    try:
        _exercise(bytes(buf))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 40 * len(base) + (8 << 20)


@FUZZ
@given(st.data())
def test_cab_mutations_raise_only_symbol_errors(data):
    payload = b"dumpkit symbol test " * 3000
    cab = bytearray(make_cab("x.pdb", payload, reserve=data.draw(st.booleans())))
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, min(len(cab) - 1, 200)) | st.integers(0, len(cab) - 1))
        cab[pos:pos + 2] = data.draw(st.binary(min_size=1, max_size=2))
    if data.draw(st.booleans()):
        cab = cab[:data.draw(st.integers(0, len(cab)))]
    try:
        out = extract_single(bytes(cab), max_size=1 << 20)
        assert len(out) <= 1 << 20
    except SymbolError:
        pass


@settings(max_examples=300, deadline=500)
@given(st.text(max_size=80) | st.sampled_from(["..\\..\\x.pdb", "a/../b", "C:\\x", "\\\\srv\\s\\x.pdb"]))
def test_names_are_safe_or_refused(name):
    try:
        ok = check_name(name)
    except UnsafeNameError:
        return
    root = os.path.abspath("/tmp/store-root")
    joined = os.path.abspath(os.path.join(root, ok, "KEY", ok))
    assert joined.startswith(root + os.sep)
    assert "/" not in ok and "\\" not in ok and ":" not in ok and ".." not in ok and ok.isascii()


@settings(max_examples=200, deadline=500)
@given(st.text(alphabet=st.sampled_from(list("srvcahe*;:/\\.xyz hpt")), max_size=60))
def test_symbol_path_parser_total(text):
    try:
        sp = SymbolPath(text, offline=True)
    except SymbolError:
        return
    assert isinstance(sp.entries, list)
    repr(sp)


@settings(max_examples=60, deadline=1000)
@given(st.binary(max_size=300))
def test_random_bytes_are_not_a_pdb(blob):
    with pytest.raises(DumpError):
        Pdb.from_bytes(blob)
