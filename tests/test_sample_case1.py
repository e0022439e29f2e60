"""The second shipped sample: case 1 of shared/seeds/cases.md, end to end.

Truth from outside dumpkit: the chain is written down from the fixture sources
(fixtures.emulate_case1.EXPECTED_CHAIN), the registers and frames come from the unicorn run,
the instruction bytes, the bugcheck's meaning, the crash time and the uptime come from the case
(cases.md) and bugcodes.tsv; the header fields are read back with struct at the offsets of
shared/reference/dumpformat.md, not with dumpkit's reader.
"""
from __future__ import annotations

import datetime as dt
import struct
import subprocess
import sys
from pathlib import Path

import pytest

import dumpkit
from dumpkit.kernel.shareddata import local_crash_time, time_zone_offset
from fixtures import emulate_case1 as C

from .conftest import shared_path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "fixtures" / "samples" / "case1_ks.dmp"
LOGS = ROOT / "fixtures" / "samples" / "case1_logs"


@pytest.fixture(scope="module")
def em():
    return C.run_case1(loaded_as=C.CASE1_NAMES)


@pytest.fixture(scope="module")
def analysis():
    return dumpkit.analyze(str(SAMPLE), logs=str(LOGS), offline=True)


def test_sample_is_current(tmp_path):
    fresh = C.write_case1_sample(tmp_path)
    assert SAMPLE.read_bytes() == fresh.read_bytes(), \
        "fixtures/samples/case1_ks.dmp is stale: python -m fixtures.emulate_case1 fixtures/samples"


def test_the_run_follows_the_sources(em):
    assert em.chain == C.EXPECTED_CHAIN
    assert em.frames[C.TRAP_FRAME_INDEX].kind == "trap"
    nt = em.image("ntcase1.sys")
    fault_ip = em.fault["rip"]
    assert fault_ip == nt.exports["KeAcquireSpinLockRaiseToDpc"] + C.FAULT_OFFSET
    assert em.read(fault_ip, 6) == C.FAULT_BYTES            # lock bts qword ptr [rbx], 0
    assert em.fault["rbx"] == 0 and em.fault["address"] == 0
    # IRQL_NOT_LESS_OR_EQUAL: address 0, IRQL 2 (DISPATCH_LEVEL), bit 0 set = write, the faulting IP
    assert em.bugcheck == (0xA, 0, 2, 1, fault_ip)


def test_header_times_are_the_cases():
    raw = SAMPLE.read_bytes()
    assert raw[:8] == b"PAGEDU64" and struct.unpack_from("<I", raw, 0xF98)[0] == 4     # DumpType: triage
    system_time, = struct.unpack_from("<Q", raw, 0xFA8)        # FILETIME, UTC
    up, = struct.unpack_from("<Q", raw, 0x1030)                # 100 ns units
    epoch = dt.datetime(1601, 1, 1, tzinfo=dt.timezone.utc)
    when = epoch + dt.timedelta(microseconds=system_time // 10)
    assert when == dt.datetime(2023, 6, 26, 0, 7, 55, 743000, tzinfo=dt.timezone.utc)   # 08:07:55.743 at UTC+8
    assert up == 406_410_000                                   # 0 days 0:00:40.641
    with dumpkit.open(SAMPLE) as d:
        assert d.crash_time == when and d.uptime == dt.timedelta(seconds=40.641)
        assert time_zone_offset(d.try_read_virtual) == dt.timedelta(hours=8)
        assert [m.name for m in d.modules] == ["ntoskrnl.exe", "ks.sys"]


def test_dumpkit_walk_is_the_source_chain(em):
    with dumpkit.open(SAMPLE) as d:
        st = d.stack()
        assert [(f.instruction, f.child_sp) for f in st] == [(f.instruction, f.child_sp) for f in em.frames]
        assert st[3].call_site == "nt!KeAcquireSpinLockRaiseToDpc+0x53"
        assert st[4].call_site.startswith("ks!KsUpdateCameraStreamingConsent+0x")
        assert st[7].call_site.startswith("nt!IofCallDriver+0x")


def test_analyze_tells_the_whole_story(analysis):
    a = analysis
    assert a.bugcheck_code == 0xA
    # the NULL lock, decoded
    assert a.fault.kind == "null_lock" and a.fault.register == "rbx" and a.fault.address == 0
    assert "lock bts qword ptr [rbx], 0" in a.fault.explanation and "NULL" in a.fault.explanation
    # ks is the module on the stack, a victim; the advice is about the camera drivers
    assert a.failure_bucket_id == "AV_ks!KsUpdateCameraStreamingConsent"
    assert any(v.module == "ks.sys" for v in a.victims)
    assert any("update or uninstall camera-class drivers" in r for r in a.remediation)
    # the logs: the missing driver-store paths, and the dump between the two failures
    kinds = {c.kind: c for c in a.correlations}
    assert "C:\\DRIVERS\\STORE1" in kinds["missing-driver-path"].summary
    assert "C:\\DRIVERS\\STORE;" in kinds["missing-driver-path"].summary
    window = kinds["time-window"]
    assert window.confidence == "high"
    assert "08:07:55" in window.summary and "08:07:23" in window.summary and "08:08:34" in window.summary
    assert a.crash_time.isoformat() == "2023-06-26T08:07:55.743000+08:00"


def test_the_command_prints_it(analysis):
    p = subprocess.run([sys.executable, "-m", "dumpkit", "analyze", "fixtures/samples/case1_ks.dmp",
                        "--logs", "fixtures/samples/case1_logs", "--offline"],
                       cwd=ROOT, capture_output=True, timeout=120)
    out = p.stdout.decode("utf-8")
    assert p.returncode == 1          # analysis incomplete: ks is a victim and the camera driver is not on the stack
    for text in ("IRQL_NOT_LESS_OR_EQUAL (a)", "nt!KeAcquireSpinLockRaiseToDpc+0x53",
                 "`lock bts qword ptr [rbx], 0`", "the lock pointer in rbx is NULL",
                 "ks!KsUpdateCameraStreamingConsent+0x", "FAILURE_BUCKET_ID:  AV_ks!KsUpdateCameraStreamingConsent",
                 "update or uninstall camera-class drivers", "C:\\DRIVERS\\STORE1", "C:\\DRIVERS\\STORE",
                 "The dump (2023-06-26 08:07:55) falls between", "at 08:07:23", "at 08:08:34",
                 "Windows_Panther_UnattendGC_setupact.log"):
        assert text in " ".join(out.split()) or text in out, text


def test_the_log_folder_is_the_cases_lines():
    files = sorted(p.name for p in LOGS.iterdir())
    assert files == ["Windows_Panther_UnattendGC_setupact.log"]            # a collection tool's flattened name
    text = (LOGS / files[0]).read_bytes()
    assert text == (ROOT / "tests" / "data" / "logs" / "case1_unattendgc_setupact.log").read_bytes()
    s = text.decode("utf-8-sig")
    assert "在“C:\\DRIVERS\\STORE1”上没有找到驱动程序包" in s and "\r\n)\r\n" in s   # Chinese, wrapped


def test_time_zone_bias_is_validated():
    def reader(bias, high2=None):
        hi = bias >> 32
        data = struct.pack("<Iii", bias & 0xFFFFFFFF, hi, hi if high2 is None else high2)
        return lambda va, size: data if va == 0xFFFFF78000000020 else None
    assert time_zone_offset(reader(-288_000_000_000)) == dt.timedelta(hours=8)
    assert time_zone_offset(reader(18_000_000_000)) == dt.timedelta(minutes=-30)
    assert time_zone_offset(reader(-288_000_000_000, high2=5)) is None          # torn KSYSTEM_TIME
    assert time_zone_offset(reader(-288_000_000_001)) is None                  # not whole minutes
    assert time_zone_offset(reader(-600_000_000_000)) is None                  # beyond UTC+14
    assert time_zone_offset(lambda va, size: None) is None
    utc = dt.datetime(2023, 6, 26, 0, 7, 55, tzinfo=dt.timezone.utc)
    assert local_crash_time(utc, dt.timedelta(hours=8)).strftime("%H:%M %z") == "08:07 +0800"
    assert local_crash_time(utc, None) is utc


@pytest.mark.filterwarnings("ignore::dumpkit.errors.DumpWarning")   # arm64 build 22000: no thread layout
def test_a_real_triage_dump_carries_the_time_zone():
    """The real Windows 11 ARM64 triage dump has a 256-byte data block at KUSER_SHARED_DATA+0x14: its
    SystemTime (+0x14) is the header's crash time, and its TimeZoneBias (+0x20) is consistent (UTC-3)."""
    path = shared_path("dumps", "triage_arm64.dmp")
    with dumpkit.open(path) as d:
        raw = d.try_read_virtual(0xFFFFF78000000014, 0x18)
        low, high1, high2 = struct.unpack_from("<Iii", raw, 0)
        assert high1 == high2
        kuser_time = dt.datetime(1601, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(microseconds=((high1 << 32) | low) // 10)
        assert abs(kuser_time - d.crash_time) < dt.timedelta(seconds=2)
        assert time_zone_offset(d.try_read_virtual) == dt.timedelta(hours=-3)
    a = dumpkit.analyze(str(path), offline=True)
    assert a.crash_time.utcoffset() == dt.timedelta(hours=-3) and a.crash_time == d.crash_time
