"""Issue 11, zip bundles: the salvage path (no central directory) obeys the same limits as the
normal path, and an archive with too many members is refused from its directory record alone.

Before the fix (landed code): a 1 MB zip inflating to 300 MB, with its central directory cut
off, was parsed whole (24-32 s and 436 MiB in the issue's measurement; over 300 s on the loaded
project machine); a 30,000-member zip took 5-8 s to turn away.
"""
from __future__ import annotations

import io
import struct
import time
import zipfile
import zlib

import pytest

from dumpkit.logs import open_bundle
from dumpkit.logs import bundle as bundle_mod

SECTION = b">>>  [Device Install (DiInstallDriver) - C:\\x\\a.inf]\n>>>  Section start 2022/05/05 16:18:30.000\n"
LINE = b"     dvi: " + b"A" * 60 + b"\n"


class _NoSeek(io.RawIOBase):
    """A write-only stream: zipfile then writes data descriptors (sizes after the data)."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        return self.buf.write(b)


def _zip(members, streamed=False) -> bytes:
    out = _NoSeek() if streamed else io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            if streamed:
                with z.open(name, "w") as f:
                    f.write(data)
            else:
                z.writestr(name, data)
    return (out.buf if streamed else out).getvalue()


def _cut_directory(data: bytes) -> bytes:
    return data[:data.find(b"PK\x01\x02")]


def _deflate_repeated(chunk: bytes, times: int) -> bytes:
    """Raw deflate of ``chunk * times`` without compressing it all: after a full flush the
    compressor starts afresh, so every later chunk compresses to the same bytes."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    third = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    assert again == third
    return first + again * (times - 1) + c.flush()


def _local_member(name: bytes, comp: bytes, usize: int, streamed: bool) -> bytes:
    """One local file header + data (+ data descriptor), written from the zip specification."""
    flags = 0x08 if streamed else 0
    csize, size = (0, 0) if streamed else (len(comp), usize)
    head = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, flags, 8, 0, 0x21, 0, csize, size, len(name), 0)
    tail = struct.pack("<IIII", 0x08074B50, 0, len(comp), usize & 0xFFFFFFFF) if streamed else b""
    return head + name + comp + tail


def _bomb(mb: int, streamed: bool) -> bytes:
    """A setupapi.dev.log inflating to ``mb`` MiB, central directory missing (CRC left 0: never reached)."""
    chunk = (SECTION + LINE * ((1 << 20) // len(LINE)))[: 1 << 20]
    return _local_member(b"Windows/INF/setupapi.dev.log", _deflate_repeated(chunk, mb), mb << 20, streamed)


@pytest.fixture(scope="module")
def bombs():
    return {s: _bomb(300, s) for s in (False, True)}         # about 1 MiB each, 300 MiB inflated


@pytest.mark.parametrize("streamed", [False, True], ids=["sizes-in-header", "data-descriptor"])
def test_salvage_refuses_a_zip_bomb(bombs, streamed):
    data = bombs[streamed]
    assert len(data) < 2 << 20
    t = time.process_time()
    b = open_bundle(data)
    took = time.process_time() - t
    assert took < 1.0, took
    assert b.salvaged
    (f,) = b.files
    assert f.parsed is None and f.problem == "compression ratio too high"
    assert any(p.kind == "too-large" and "zip bomb" in p.detail for p in b.problems)


def test_salvage_applies_declared_size_and_total_limits():
    log = SECTION + b"     dvi: hello\n<<<  Section end 2022/05/05 16:18:31.000\n"
    members = {f"Windows/INF/{i}/setupapi.dev.log": log for i in range(4)}
    for streamed in (False, True):
        data = _cut_directory(_zip(members, streamed))
        b = open_bundle(data)                                         # fits: all four parsed
        assert b.salvaged and sum(f.parsed is not None for f in b.files) == 4
        small = open_bundle(data, max_member_bytes=len(log) - 1)       # each declares more than allowed
        assert sum(f.parsed is not None for f in small.files) == 0
        assert sum(p.kind == "too-large" for p in small.problems) == 4
        budget = open_bundle(data, max_total_bytes=len(log) * 2)       # the bundle budget holds 2 of them
        assert sum(f.parsed is not None for f in budget.files) == 2
        assert any("budget" in p.detail for p in budget.problems)


def test_thirty_thousand_members_refused_fast():
    n = 30_000
    local, central = [], []
    off = 0
    for i in range(n):
        name = f"f{i}.txt".encode()
        lh = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name), 0) + name
        central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 0, 0, 0x21, 0, 0, 0, len(name),
                                   0, 0, 0, 0, 0, off) + name)
        local.append(lh)
        off += len(lh)
    cd = b"".join(central)
    data = b"".join(local) + cd + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, n, n, len(cd), off, 0)
    assert len(zipfile.ZipFile(io.BytesIO(data)).infolist()) == n      # a valid archive
    t = time.process_time()
    b = open_bundle(data)
    assert time.process_time() - t < 0.5
    assert [p.kind for p in b.problems] == ["too-many"] and "30,000" in b.problems[0].detail


def test_a_parser_bug_is_not_hidden_as_unreadable(monkeypatch):
    def broken(s, n, ph):
        raise ValueError("a bug in a parser")

    monkeypatch.setitem(bundle_mod._PARSERS, "setupapi", broken)
    data = _zip({"Windows/INF/setupapi.dev.log": SECTION})
    with pytest.raises(ValueError, match="a bug in a parser"):
        open_bundle(data)
    with pytest.raises(ValueError, match="a bug in a parser"):
        open_bundle(_cut_directory(data))                              # the salvage path too
