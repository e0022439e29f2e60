"""Case bundles: folders and zips, damaged archives, traversal names, zip bombs."""
from __future__ import annotations

import io
import shutil
import struct
import zipfile
import zlib

import pytest

from dumpkit.errors import TextParseError
from dumpkit.logs import PantherLog, SetupApiLog, classify_path, open_bundle, summarize_logs

from ._logs_util import DATA

CASE1 = (DATA / "case1_unattendgc_setupact.log").read_bytes()
CASE2 = (DATA / "case2_setupapi.dev.log").read_bytes()
ROLLBACK_SETUPACT = (b"2022-05-05 16:30:00, Info                  SP     Crash 0x0000007E detected\r\n"
                     b"2022-05-05 16:30:00, Info                  SP       Module name           : lwfmgr.sys\r\n"
                     b"2022-05-05 16:30:00, Info                  SP       Bugcheck parameter 1  : 0xFFFFFFFFC0000005\r\n"
                     b"2022-05-05 16:30:00, Info                  SP     Cannot recover the system.\r\n")

MEMBERS = {
    "C/Windows/Panther/UnattendGC/setupact.log": CASE1,
    "C/$WINDOWS.~BT/Sources/Rollback/setupapi/setupapi.dev.log": CASE2,
    "C/$WINDOWS.~BT/Sources/Rollback/setupact.log": ROLLBACK_SETUPACT,
    "C/$WINDOWS.~BT/Sources/Rollback/rollbackinfo.ini": b"CurrentPhase=FirstBoot,Start\r\n",
    "C/$WINDOWS.~BT/Sources/Rollback/setupmem.dmp": b"PAGEDU64" + bytes(56),
    "C/Windows/Minidump/050522-8906-01.dmp": b"PAGEDU64" + bytes(56),
    "C/Windows/MEMORY.DMP": b"PAGEDU64" + bytes(56),
    "C/Windows/Logs/CBS/CBS.log": b"2019-02-11 12:51:51, Error                 CBS    Failed. "
                                  b"[HRESULT = 0x80071a2d - ERROR_TRANSACTION_NOT_ACTIVE]\r\n",
    "notes/readme.txt": b"collected by the branch tool",
}


def _zip(members=MEMBERS, method=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_classify_paths():
    assert classify_path(r"C:\Windows\Panther\UnattendGC\setupact.log") == ("panther", "oobe")
    assert classify_path(r"C:\$Windows.~BT\Sources\Panther\setuperr.log") == ("panther", "downlevel")
    assert classify_path(r"C:\$Windows.~BT\sources\panther\setupapi\setupapi.dev.log") == ("setupapi", "downlevel")
    assert classify_path(r"C:\$Windows.~BT\Sources\Rollback\setupapi\setupapi.dev.log") == ("setupapi", "rollback")
    assert classify_path(r"C:\Windows\Panther\NewOS\Panther\setupact.log")[1] == "newos"
    assert classify_path(r"C:\Windows\INF\setupapi.dev.log") == ("setupapi", "inf")
    assert classify_path(r"C:\Windows\System32\Sysprep\Panther\setupact.log")[1] == "sysprep"
    assert classify_path("Windows/Logs/CBS/CBS.log") == ("cbs", "cbs")
    assert classify_path("Windows/Logs/SetupDiag/SetupDiagResults.xml")[0] == "setupdiag"
    assert classify_path("MEMORY.DMP")[0] == "dump"
    assert classify_path("x/setupact_6.log")[0] == "panther"


def _check_full(b):
    kinds = {f.path.split("/")[-1]: f.kind for f in b.files}
    assert kinds["setupact.log"] == "panther" and kinds["readme.txt"] == "other"
    assert isinstance(b.find("UnattendGC/setupact.log")[0].parsed, PantherLog)
    assert isinstance(b.find("setupapi.dev.log")[0].parsed, SetupApiLog)
    assert sorted(d.kind for d in b.dumps) == ["memory", "minidump", "setupmem"]
    assert all(d.signature == "PAGEDU64" for d in b.dumps)
    assert [d.kind for d in b.dumps if d.in_rollback] == ["setupmem"]
    f = summarize_logs(b)
    assert [x.services for x in f.setupapi_failures] == [["lwfmgr"], ["vwifimf"]]
    assert {x.phase for x in f.setupapi_failures} == {"rollback"}
    assert f.rollback.current_phase == "FirstBoot,Start"
    (fname, crash), = f.rollback.crashes
    assert crash.code == 0x7E and crash.module == "lwfmgr.sys" and "Rollback" in fname
    assert len(f.missing_paths) == 2 and f.rollback.present
    assert any(e.entry.hresult_name == "ERROR_TRANSACTION_NOT_ACTIVE" for e in f.errors)
    return f


def test_folder_bundle(tmp_path):
    for name, data in MEMBERS.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    b = open_bundle(tmp_path)
    assert not b.is_zip and b.problems == []
    _check_full(b)


def test_zip_bundle(tmp_path):
    z = tmp_path / "case.zip"
    z.write_bytes(_zip())
    b = open_bundle(z)
    assert b.is_zip and not b.salvaged and b.problems == []
    f = _check_full(b)
    assert "lwfmgr" in f.render()
    assert open_bundle(_zip()).files  # zip bytes work too


def test_truncated_zip_is_salvaged(tmp_path):
    data = _zip()
    z = tmp_path / "cut.zip"
    z.write_bytes(data[: len(data) - 40])          # central directory cut off: zipfile refuses it
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(z)
    b = open_bundle(z)
    assert b.salvaged
    kinds = [p.kind for p in b.problems]
    assert kinds[0] == "bad-archive" and "salvaged" in kinds
    _check_full(b)                                   # every member came back from the local headers


def test_zip_cut_in_the_middle_of_a_member(tmp_path):
    data = _zip({"Windows/Panther/UnattendGC/setupact.log": CASE1 * 50})
    b = open_bundle(data[: len(data) // 2])
    (pl,) = [f.parsed for f in b.files]
    assert pl.partial and 0 < pl.total < 7 * 50
    assert any(p.kind == "truncated" for p in b.problems)


def test_flipped_bytes(tmp_path):
    data = bytearray(_zip(method=zipfile.ZIP_STORED))
    off = data.index(b"PNPUNATTEND")                 # corrupt stored data: CRC mismatch
    data[off:off + 4] = b"XXXX"
    b = open_bundle(bytes(data))
    assert any(p.kind == "crc" and "UnattendGC" in p.member for p in b.problems)
    assert b.find("UnattendGC")[0].parsed.total == 7     # the text read is still parsed
    data2 = bytearray(_zip())
    for i in range(200, 260):                         # garbage inside the first deflate stream
        data2[i] ^= 0x5A
    b2 = open_bundle(bytes(data2))
    assert b2.problems and any(p.kind in ("corrupt", "crc", "truncated", "unreadable") for p in b2.problems)
    assert len(b2.files) == len(MEMBERS)


@pytest.mark.parametrize("cut", [0, 1, 4, 22, 30, 100, 500])
def test_tiny_and_garbage_archives(tmp_path, cut):
    z = tmp_path / "x.zip"
    z.write_bytes(_zip()[:cut])
    b = open_bundle(z)
    assert isinstance(b.problems, list)


def test_traversal_and_absolute_names_are_ignored():
    data = _zip({"../../etc/setupact.log": CASE1, "/abs/setupact.log": CASE1, "C:/x/setupact.log": CASE1,
                 "ok/setupact.log": CASE1})
    b = open_bundle(data)
    assert [f.path for f in b.files] == ["ok/setupact.log"]
    assert sorted(p.member for p in b.problems if p.kind == "traversal") == sorted(
        ["../../etc/setupact.log", "/abs/setupact.log", "C:/x/setupact.log"])


def _patch_sizes(data: bytes, name: bytes, usize: int) -> bytes:
    """Rewrite the declared uncompressed size of ``name`` (local header and central directory)."""
    ba = bytearray(data)
    lh = ba.index(b"PK\x03\x04" + b"")
    while True:
        nlen = struct.unpack_from("<H", ba, lh + 26)[0]
        if ba[lh + 30: lh + 30 + nlen] == name:
            struct.pack_into("<I", ba, lh + 22, usize)
            break
        lh = ba.index(b"PK\x03\x04", lh + 4)
    cd = ba.index(b"PK\x01\x02")
    while cd >= 0:
        nlen = struct.unpack_from("<H", ba, cd + 28)[0]
        if ba[cd + 46: cd + 46 + nlen] == name:
            struct.pack_into("<I", ba, cd + 24, usize)
        nxt = ba.find(b"PK\x01\x02", cd + 4)
        cd = nxt
    return bytes(ba)


def test_huge_declared_member_is_refused():
    data = _zip({"Windows/Panther/setupact.log": CASE1, "Windows/INF/setupapi.dev.log": CASE2})
    bomb = _patch_sizes(data, b"Windows/Panther/setupact.log", 0xFFFF0000)
    b = open_bundle(bomb, max_member_bytes=64 << 20)
    assert any(p.kind == "too-large" and p.member == "Windows/Panther/setupact.log" for p in b.problems)
    assert b.find("setupact.log")[0].parsed is None
    assert isinstance(b.find("setupapi.dev.log")[0].parsed, SetupApiLog)


def test_real_bomb_stops_at_the_limit():
    # 64 MiB of zeros-ish text compresses to ~64 KiB; a 1 MiB member limit stops reading early
    payload = (b"2023-06-26 08:02:32, Info                         [x.exe] " + b"a" * 64 + b"\r\n") * 600_000
    data = _zip({"Windows/Panther/setupact.log": payload})
    b = open_bundle(data, max_member_bytes=1 << 20)
    assert any(p.kind == "too-large" for p in b.problems)
    assert b.find("setupact.log")[0].parsed is None


def test_member_limit_and_byte_budget():
    members = {f"Windows/Panther/{i}/setupact.log": CASE1 for i in range(30)}
    b = open_bundle(_zip(members), max_members=10)          # refused from the directory's count alone
    assert len(b.files) == 0 and [p.kind for p in b.problems] == ["too-many"]
    b2 = open_bundle(_zip(members), max_total_bytes=len(CASE1) * 3)
    parsed = [f for f in b2.files if f.parsed is not None]
    assert len(parsed) == 3 and any("budget" in p.detail for p in b2.problems)


def test_encrypted_member_reported():
    data = bytearray(_zip({"Windows/Panther/setupact.log": CASE1}))
    struct.pack_into("<H", data, 6, struct.unpack_from("<H", data, 6)[0] | 1)      # local header flag
    cd = data.index(b"PK\x01\x02")
    struct.pack_into("<H", data, cd + 8, struct.unpack_from("<H", data, cd + 8)[0] | 1)
    b = open_bundle(bytes(data))
    assert any(p.kind in ("encrypted", "unreadable") for p in b.problems)


def test_single_log_and_missing_path(tmp_path):
    p = tmp_path / "setupapi.dev.log"
    shutil.copy(DATA / "case2_setupapi.dev.log", p)
    b = open_bundle(p)
    assert not b.is_zip and isinstance(b.files[0].parsed, SetupApiLog)
    with pytest.raises(TextParseError):
        open_bundle(tmp_path / "absent.zip")


def test_salvage_handles_data_descriptor_members():
    # a zip written to a non-seekable stream uses data descriptors (sizes after the data)
    class NoSeek(io.RawIOBase):
        def __init__(self):
            self.buf = bytearray()

        def writable(self):
            return True

        def write(self, b):
            self.buf += b
            return len(b)

    out = NoSeek()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name in ("a/Panther/UnattendGC/setupact.log", "b/setupapi.dev.log"):
            with z.open(name, "w") as f:
                f.write(CASE1 if "setupact" in name else CASE2)
    data = bytes(out.buf)
    cut = data[: data.index(b"PK\x01\x02")]         # drop the central directory
    b = open_bundle(cut)
    assert b.salvaged
    assert b.find("setupact.log")[0].parsed.total == 7
    assert len(b.find("setupapi.dev.log")[0].parsed.failures) == 2
    assert zlib  # imported for clarity of what salvage relies on
