"""The reader against the real triage dump and its ground truth (triage_x64.expected.md)."""
from __future__ import annotations

import datetime as dt
import hashlib

import pytest

import dumpkit
from dumpkit.errors import DumpError, NotADumpError, TranslationError

from .conftest import shared_path


@pytest.fixture(scope="module")
def dump():
    p = shared_path("dumps", "triage_x64.dmp")
    with dumpkit.open(p) as d:
        yield d


def test_file_is_the_documented_one():
    p = shared_path("dumps", "triage_x64.dmp")
    data = p.read_bytes()
    assert len(data) == 1_444_532
    assert hashlib.sha256(data).hexdigest().startswith("6875e8ff013eddb9")


def test_header_fields(dump):
    h = dump.header
    assert dump.dump_type == "triage" and dump.dump_type_code == 4
    assert h.major_version == 0xF and h.minor_version == 0x4A61 == 19041
    assert h.directory_table_base == 0x1AD000
    assert h.pfn_database == 0xFFFFF8047C6FC500
    assert h.ps_loaded_module_list == 0xFFFFF8047C62A390
    assert h.ps_active_process_head == 0xFFFFF8047C61E200
    assert h.machine_image_type == 0x8664 and h.machine == "x64"
    assert h.number_processors == 0x10
    assert h.kd_debugger_data_block == 0xFFFFF8047C600B20
    assert h.secondary_data_state is None          # 'PAGE': never written
    assert h.product_type == 1 and h.suite_mask == 0x110
    assert h.writer == "dbgeng"


def test_bugcheck(dump):
    bc = dump.bugcheck
    assert bc.code == 0x1000007E and bc.base_code == 0x7E
    assert bc.parameters == (0xFFFFFFFFC0000005, 0xFFFFF8048B58334C, 0xFFFF850429891EE8, 0xFFFF850429891720)


def test_times(dump):
    assert dump.crash_time == dt.datetime(2021, 2, 21, 1, 38, 22, 987765, tzinfo=dt.timezone.utc)
    assert dump.uptime is not None and 3 < dump.uptime.total_seconds() < 4


def test_triage_fields(dump):
    f = dump.triage.fields
    expected = dict(size_of_dump=0x13A28C, valid_offset=0x13A288, context_offset=0x348, exception_offset=0xF00,
                    mm_offset=0x2080, unloaded_drivers_offset=0x20D0, prcb_offset=0x21B8, process_offset=0xD0B8,
                    thread_offset=0xDAF8, call_stack_offset=0xE390, size_of_call_stack=0x2118,
                    driver_list_offset=0x10828, driver_count=0x97, string_pool_offset=0x15D18,
                    string_pool_size=0x3720, broken_driver_offset=0, triage_options=0xFFFFFFFF,
                    debugger_data_offset=0x104A8, debugger_data_size=0x380, data_blocks_offset=0x19438,
                    data_blocks_count=0x727)
    for k, v in expected.items():
        assert f[k] == v, k
    assert dump.triage.top_of_stack == 0xFFFF850429890EE8
    assert dump.triage.valid
    assert dump.triage.secondary_blobs > 0         # secondary data after SizeOfDump is normal
    assert len(dump.triage.data_blocks) == 0x727


def test_modules(dump):
    mods = dump.modules
    assert len(mods) == 151
    nt = mods.by_name("nt")
    assert (nt.name, nt.base, nt.size, nt.timestamp) == ("ntoskrnl.exe", 0xFFFFF8047BA00000, 0x1046000, 0x0D8333E6)
    assert nt.path == r"\SystemRoot\system32\ntoskrnl.exe"
    wdf = mods.by_name("Wdf01000.sys")
    assert (wdf.base, wdf.size, wdf.timestamp) == (0xFFFFF80479950000, 0xD1000, 0xA9A9D36E)
    amd = mods.by_name("AMDPPM")
    assert (amd.base, amd.size, amd.timestamp) == (0xFFFFF8048B580000, 0x3B000, 0xC9C03000)
    hit = mods.find(0xFFFFF8048B58334C)
    assert hit is amd and 0xFFFFF8048B58334C - hit.base == 0x334C
    assert mods.find(0x1000) is None
    assert mods[0].name == "ntoskrnl.exe" and mods[1].name.lower() == "hal.dll"


def test_unloaded_modules(dump):
    unl = dump.unloaded_modules
    assert unl[0].name == "dam.sys"
    assert (unl[0].base, unl[0].end) == (0xFFFFF80487DE0000, 0xFFFFF80487DFC000)
    assert all(m.unloaded for m in unl)


def test_contexts(dump):
    ctx = dump.contexts
    exc = ctx["exception"]
    assert exc.rip == 0xFFFFF8048B58334C and exc.rsp == 0xFFFF850429892120
    # this debugger-written dump stores the exception CONTEXT in the header too (byte-identical)
    assert ctx["header"].regs == exc.regs
    # the processor context saved at KeBugCheckEx (KPRCB.Context) carries the values the
    # ground truth lists for the bugcheck call: rip = nt!KeBugCheckEx, rcx = 0x7e, ...
    pr = ctx["prcb"]
    assert pr.rip == 0xFFFFF8047BDF5A80 and pr.rsp == 0xFFFF850429890EE8
    assert pr.rbp == 0xFFFF850429892C10 and pr.rax == 0xFFFF850429891720
    assert pr.rbx == 0xFFFFF8047BA82B68 and pr.rcx == 0x7E and pr.rdx == 0xFFFFFFFFC0000005
    assert pr.r8 == 0xFFFFF8048B58334C and pr.r9 == 0xFFFF850429891EE8 and pr.r15 == 0xFFFFF8047BA00000
    assert pr.eflags == 0x40286 and pr.mxcsr == 0x1F80


def test_virtual_reads_from_captured_ranges(dump):
    # the exception record (P3) lies in the captured stack
    exr = dump.read_virtual(0xFFFF850429891EE8, 0x98)
    assert int.from_bytes(exr[0:4], "little") == 0xC0000005
    assert int.from_bytes(exr[0x10:0x18], "little") == 0xFFFFF8048B58334C
    # the KDBG copy carries its owner tag and KernBase = ntoskrnl's base
    kd = dump.read_virtual(0xFFFFF8047C600B20, 0x20)
    assert kd[0x10:0x14] == b"KDBG" and int.from_bytes(kd[0x18:0x20], "little") == 0xFFFFF8047BA00000
    with pytest.raises(TranslationError):
        dump.read_virtual(0x1000, 8)
    assert dump.read_virtual(0x1000, 8, zero_fill=True) == bytes(8)
    with pytest.raises(DumpError):
        dump.read_physical(0, 8)


def test_info_json_contract(dump):
    info = dump.info()
    for key in ("dump_type", "dump_type_code", "machine", "os_build", "processors", "crash_time", "bugcheck"):
        assert key in info
    assert info["bugcheck"]["code"] == "0x1000007e"
    assert info["crash_time"].startswith("2021-02-21T01:38:22")


def test_user_mode_minidump_is_refused_clearly():
    p = shared_path("dumps", "calc_usermode.dmp")
    with pytest.raises(NotADumpError, match="user-mode minidump"):
        dumpkit.open(p)
