"""Kernel state from the real triage dump, checked against triage_x64.expected.md and the
bytes of the file itself (not against dumpkit's own tables)."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import warnings

import pytest

import dumpkit
from dumpkit.kernel.kdbg import KdDebuggerData

from .conftest import shared_path


@pytest.fixture(scope="module")
def dump():
    p = shared_path("dumps", "triage_x64.dmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        d = dumpkit.open(p)
    yield d
    d.close()


def test_modules_match_the_expected_file(dump):
    mods = dump.modules
    assert len(mods) == 151
    nt = mods.by_name("nt")
    assert (nt.name, nt.base, nt.size, nt.timestamp) == ("ntoskrnl.exe", 0xFFFFF8047BA00000, 0x1046000, 0x0D8333E6)
    assert mods.by_name("ntoskrnl") is nt and mods.by_name(r"\SystemRoot\system32\NTOSKRNL.EXE") is nt
    assert mods.by_name("hal").name.lower() == "hal.dll"
    wdf = mods.by_name("wdf01000")
    assert (wdf.base, wdf.size, wdf.timestamp) == (0xFFFFF80479950000, 0xD1000, 0xA9A9D36E)
    amd = mods.by_name("amdppm.sys")
    assert (amd.base, amd.size, amd.timestamp) == (0xFFFFF8048B580000, 0x3B000, 0xC9C03000)


def test_fault_address_resolves_to_amdppm(dump):
    m = dump.find_module(0xFFFFF8048B58334C)
    assert m.name == "amdppm.sys" and not m.unloaded
    assert 0xFFFFF8048B58334C - m.base == 0x334C


def test_unloaded_range_resolves_and_says_so(dump):
    dam = dump.unloaded_modules[0]
    assert (dam.name, dam.base, dam.end) == ("dam.sys", 0xFFFFF80487DE0000, 0xFFFFF80487DFC000)
    hit = dump.find_module(0xFFFFF80487DE0000 + 0x1234)
    assert hit is dam and hit.unloaded
    assert dump.find_module(0x1000) is None


def test_exception_record_and_context_from_p3_p4(dump):
    exr = dump.exception_record
    assert exr.code == 0xC0000005 and exr.address == 0xFFFFF8048B58334C
    # P3 in the file: the record bytes at P3 inside the captured stack
    raw = dump.read_virtual(dump.bugcheck.parameters[2], 0x18)
    assert struct.unpack_from("<I", raw, 0)[0] == exr.code
    exc = dump.contexts["exception"]
    assert exc.rip == 0xFFFFF8048B58334C and exc.rsp == 0xFFFF850429892120
    assert exc.address == dump.bugcheck.parameters[3]


def test_kdbg_plain_copy(dump):
    kd = dump.kdbg
    assert isinstance(kd, KdDebuggerData) and dump.kdbg_result.status == "ok"
    assert kd.KernBase == 0xFFFFF8047BA00000           # == ntoskrnl's base from the driver list
    assert kd.PsLoadedModuleList == dump.header.ps_loaded_module_list == 0xFFFFF8047C62A390
    assert kd.OffsetPrcbContext == 0x85C0 and kd.SizePrcb == 0xAF00


def test_crashing_process_and_thread(dump):
    th = dump.thread
    # the EPROCESS copy in the file, read with offsets independent of the table (raw bytes)
    f = dump.triage.fields
    proc = dump.source.read(f["process_offset"], 0xA40)
    assert proc[0x5A8:0x5A8 + 7] == b"System\0"
    assert dump.process_name == "System" and th.process_name == "System"
    assert dump.process_id == 4
    assert dump.thread_id == 0x108
    assert th.stack_limit <= dump.contexts["exception"].rsp < th.stack_base
    assert th.stack_base == dump.triage.top_of_stack + f["size_of_call_stack"]   # both 0xffff850429893000
    assert dump.layout.exact and dump.layout.layout.build == 19041


def test_processor_contexts_from_data_blocks(dump):
    ctx = dump.contexts
    cpus = sorted(k for k in ctx if k.startswith("cpu"))
    assert len(cpus) == 16
    # the processor that called KeBugCheckEx is one of them, and it is the 'prcb' context
    assert any(ctx[k].regs == ctx["prcb"].regs for k in cpus)


def test_summary(dump):
    s = dump.summary()
    j = s.to_json()
    assert j["os_build"] == 19041 and j["processors"] == 16 and j["product_type"] == 1
    assert j["bugcheck"]["code"] == "0x1000007e"
    assert j["process"] == {"name": "System", "pid": 4, "tid": 0x108}
    assert j["module_count"] == 151 and j["unloaded_count"] == len(dump.unloaded_modules)
    assert j["dump_type"] == "triage" and 3 < j["uptime_seconds"] < 4
    text = repr(s)
    assert "System" in text and "1000007E" in text and "19041" in text
    json.dumps(j)


def test_cli_info_json():
    p = shared_path("dumps", "triage_x64.dmp")
    out = subprocess.run([sys.executable, "-m", "dumpkit", "info", "--json", str(p)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["process_name"] == "System" and info["process_id"] == 4 and info["thread_id"] == 0x108
    assert 3 < info["uptime_seconds"] < 4
