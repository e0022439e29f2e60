"""Kernel state on factory dumps (fixtures/kernel_structs.py writes every structure with its
own literal offsets): modules, unloaded drivers, KDBG, process/thread per build, processor
contexts and the context each bug check family points at."""
from __future__ import annotations

import struct
import warnings
from pathlib import Path

import pytest

import dumpkit
from dumpkit.errors import DumpError, DumpWarning, MemoryReadError
from dumpkit.kernel.layouts import LayoutTable, layout_for_build
from fixtures import factory as F
from fixtures import kernel_structs as K

ROOT = Path(__file__).resolve().parent.parent
_CACHE: dict = {}


def scene(kind="full", **kw):
    key = (kind, tuple(sorted(kw.items())))
    if key not in _CACHE:
        _CACHE[key] = K.make_kernel_dump(None, kind, **kw)
    return _CACHE[key]


def open_quiet(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dumpkit.open(data)


# -- modules ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_module_list_reads_back(kind):
    sc = scene(kind)
    d = open_quiet(sc.data)
    got = [(m.name, m.base, m.size, m.timestamp, m.checksum, m.path) for m in d.modules]
    assert got == [(m.name, m.base, m.size, m.timestamp, m.checksum, m.full_path) for m in sc.modules]
    assert d.modules.by_name("nt").name == "ntoskrnl.exe" and d.modules.by_name("HAL").name == "hal.dll"
    assert d.find_module(K.FAULT_IP).name == "amdppm.sys"
    assert not d.warnings


@pytest.mark.parametrize("build", [7601, 19041])
def test_timestamp_offset_follows_the_build(build):
    # modules without a PE header in memory: the entry's TimeDateStamp (0x80 on Win7, 0x9C on Win10+)
    mods = [K.ModSpec(m.name, m.base, m.size, m.timestamp, m.checksum, pe_header=False) for m in K.DEFAULT_MODULES]
    d = open_quiet(K.make_kernel_dump(None, "full", build=build, modules=mods).data)
    assert [m.timestamp for m in d.modules] == [m.timestamp for m in mods]


def test_pe_header_wins_over_a_wrong_entry_timestamp():
    # the entry says one thing, the image header in memory another: the image is the authority
    mods = list(K.DEFAULT_MODULES)
    sc = K.make_kernel_dump(None, "full", modules=mods)
    d0 = open_quiet(sc.data)
    pa = d0.translate(sc.module_entries[3] + 0x9C)
    d0.close()
    data = bytearray(sc.data)
    # locate the file offset of the entry's TimeDateStamp: full dumps store runs in PA order
    runs = dumpkit.open(sc.data).header.runs
    off, base = 0x2000, None
    for r in runs:
        if r.base_page * 0x1000 <= pa < (r.base_page + r.page_count) * 0x1000:
            base = off + pa - r.base_page * 0x1000
            break
        off += r.page_count * 0x1000
    assert base is not None and data[base:base + 4] == struct.pack("<I", 0xC9C03000)
    data[base:base + 4] = struct.pack("<I", 0x12345678)
    with pytest.warns(DumpWarning, match="disagree with the PE headers"):
        d = dumpkit.open(bytes(data))
        assert d.modules[3].timestamp == 0xC9C03000


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_looping_list_gives_partial_result_and_warning(kind):
    sc = scene(kind, loop_to=1)
    with pytest.warns(DumpWarning, match="loops"):
        d = dumpkit.open(sc.data)
        mods = d.modules
    assert [m.name for m in mods] == [m.name for m in sc.modules]


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_cut_short_list_gives_partial_result_and_warning(kind):
    sc = scene(kind, cut_at=1)
    with pytest.warns(DumpWarning, match="broken"):
        d = dumpkit.open(sc.data)
        mods = d.modules
    assert [m.name for m in mods] == [m.name for m in sc.modules[:2]]


def test_corrupt_dllbase_stops_the_walk():
    mods = list(K.DEFAULT_MODULES)
    mods[2] = K.ModSpec("evil.sys", 0x7FF612340000, 0x1000, 1, pe_header=False)   # a user-mode "base"
    with pytest.warns(DumpWarning, match="not a page-aligned kernel address"):
        d = dumpkit.open(K.make_kernel_dump(None, "full", modules=mods).data)
        names = [m.name for m in d.modules]
    assert names == ["ntoskrnl.exe", "hal.dll"]


# -- unloaded drivers ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_unloaded_drivers_most_recent_first(kind):
    sc = scene(kind)
    d = open_quiet(sc.data)
    unl = d.unloaded_modules
    want = list(reversed(sc.unloaded))
    assert [(m.name, m.base, m.end, m.unload_time) for m in unl] == [(u.name, u.start, u.end, u.time) for u in want]
    assert all(m.unloaded for m in unl)
    hit = d.find_module(K.DEFAULT_UNLOADED[0].start + 0x10)
    assert hit.name == "dam.sys" and hit.unloaded


def test_unloaded_ring_wraps():
    items = [K.UnloadedSpec(f"drv{i}.sys", 0xFFFFF80490000000 + i * 0x10000, 0xFFFFF80490008000 + i * 0x10000)
             for i in range(5)]
    d = open_quiet(K.make_kernel_dump(None, "full", unloaded=items, unloaded_first_slot=48).data)
    assert [m.name for m in d.unloaded_modules] == [f"drv{i}.sys" for i in reversed(range(5))]


# -- KDBG -----------------------------------------------------------------------------------
def test_kdbg_plain_in_memory():
    d = open_quiet(scene("full").data)
    assert d.kdbg_result.status == "ok" and d.kdbg.KernBase == K.NT_BASE
    assert d.kdbg.KiProcessorBlock == K.PROCESSOR_BLOCK


def test_encoded_kdbg_is_reported_and_header_fields_still_work():
    sc = K.make_kernel_dump(None, "full", kdbg_owner_tag=b"\x8f\x13\xa2\x07")
    with pytest.warns(DumpWarning, match="encoded"):
        d = dumpkit.open(sc.data)
        assert d.kdbg is None
    assert d.kdbg_result.status == "encoded" and "KiWaitNever" in d.kdbg_result.reason
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert [m.name for m in d.modules] == [m.name for m in sc.modules]     # header PsLoadedModuleList
        assert len(d.unloaded_modules) == 0
        assert "cpu0" not in d.contexts and "header" in d.contexts
    assert any("unloaded drivers not available" in w for w in d.warnings)


# -- process and thread ----------------------------------------------------------------------
@pytest.mark.parametrize("build,kdbg_offsets", [(7601, False), (9600, True), (17763, False), (19041, False),
                                                (19041, True), (26100, True)])
@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_process_and_thread_per_build(build, kdbg_offsets, kind):
    sc = K.make_kernel_dump(None, kind, build=build, kdbg_thread_offsets=kdbg_offsets)
    d = open_quiet(sc.data)
    th = d.thread
    assert d.process_name == "notmyfault64.e"
    assert (d.process_id, d.thread_id) == (sc.pid, sc.tid)
    assert (th.eprocess, th.ethread, th.processor) == (sc.eprocess, sc.ethread, 0)
    assert (th.stack_base, th.stack_limit) == (sc.stack_base, sc.stack_limit)
    assert th.kernel_stack == sc.kernel_stack


def test_missing_offsets_are_reported_not_guessed():
    # Windows 8.1 without the KDBG's thread offsets: the table has no ApcState.Process for it
    d = open_quiet(K.make_kernel_dump(None, "full", build=9600, kdbg_thread_offsets=False).data)
    th = d.thread
    assert th.process_name is None and th.ethread is not None and th.thread_id == 0x2F0C
    assert any("not known for this build" in n for n in th.notes)


def test_build_between_entries_uses_the_covering_layout():
    ch = layout_for_build(19045)
    assert ch.layout.build == 19041 and not ch.exact and "19041" in ch.reason
    assert layout_for_build(18363).layout.build == 18362


@pytest.mark.parametrize("build", [9200, 30000])
def test_unknown_build_is_honest(build):
    assert layout_for_build(build).layout is None
    sc = K.make_kernel_dump(None, "full")
    data = bytearray(sc.data)
    data[0xC:0x10] = struct.pack("<I", build)
    with pytest.warns(DumpWarning, match=f"unknown build {build}"):
        d = dumpkit.open(bytes(data))
        assert d.thread is None and d.process_name is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert d.summary().process_name is None


def test_layout_table_rejects_malformed_entries():
    with pytest.raises(DumpError, match="malformed"):
        LayoutTable.from_json({"builds": [{"build": "x"}]})


def test_triage_copies_give_process_and_thread():
    o = K.STRUCT_OFFSETS[19041]
    eproc_va, ethread_va = 0xFFFFC08BDCE94180, 0xFFFFC08BDE9E1640
    proc = K.eprocess_bytes(19041, name="svchost.exe", pid=0x3E8, links=(1, 2))
    thread = K.ethread_bytes(19041, process_va=eproc_va, pid=0x3E8, tid=0x1F4, stack_base=0xFFFF850429893000,
                             stack_limit=0xFFFF85042988D000)
    prcb = K.kprcb_bytes(number=3, current_thread=ethread_va)
    kdbg = F.make_kdbg(SizeEProcess=o["eprocess_size"], SizeEThread=o["ethread_size"], SizePrcb=K.KPRCB_SIZE_19041)
    spec = F.TriageSpec(process=proc, thread=thread, prcb=prcb, debugger_data=kdbg)
    d = open_quiet(F.write_triage_dump(None, spec).data)
    th = d.thread
    assert (d.process_name, d.process_id, d.thread_id) == ("svchost.exe", 0x3E8, 0x1F4)
    assert (th.eprocess, th.ethread, th.source) == (eproc_va, ethread_va, "triage copy")


def test_triage_garbage_name_is_not_reported():
    proc = bytearray(K.eprocess_bytes(19041, name="x", pid=8))
    proc[0x5A8:0x5B7] = bytes(range(0x80, 0x8F))
    spec = F.TriageSpec(process=bytes(proc), thread=bytes(0x898))
    with pytest.warns(DumpWarning, match="not text"):
        d = dumpkit.open(F.write_triage_dump(None, spec).data)
        assert d.process_name is None and d.process_id == 8


def test_committed_case2_dump_is_the_system_process():
    p = ROOT / "fixtures" / "dumps" / "case2_mode0_full.dmp"
    if not p.exists():
        pytest.skip("fixtures/dumps/case2_mode0_full.dmp not present")
    d = open_quiet(p)
    assert d.process_name == "System" and d.process_id == 4


# -- contexts per bug check family -------------------------------------------------------------
def _check_regs(ctx, want: dict):
    for k, v in want.items():
        if k == "address":
            assert ctx.address == v
        elif k in ctx.regs:
            assert ctx[k] == v, k


@pytest.mark.parametrize("kind", ["full", "bitmap"])
@pytest.mark.parametrize("family", ["0x7E", "0x3B", "0x1E"])
def test_exception_context_families(kind, family):
    sc = scene(kind, family=family)
    d = open_quiet(sc.data)
    ctx = d.contexts
    assert "exception" in ctx and "trap_frame" not in ctx
    _check_regs(ctx["exception"], sc.expected["exception"])
    exr = d.exception_record
    want = sc.expected["exception_record"]
    assert (exr.code, exr.address, exr.parameters) == (want["code"], want["address"], want["parameters"])
    assert not d.warnings


@pytest.mark.parametrize("kind", ["full", "bitmap"])
@pytest.mark.parametrize("family", ["0x8E", "0x139", "0xD1", "0xA", "0x50"])
def test_trap_frame_families(kind, family):
    sc = scene(kind, family=family)
    d = open_quiet(sc.data)
    tf = d.contexts["trap_frame"]
    _check_regs(tf, sc.expected["trap_frame"])
    assert tf.source == "trap_frame" and "r12" not in tf.valid
    assert d.trap_frame(tf.address).regs == tf.regs
    if family == "0x139":
        exr = d.exception_record
        assert (exr.code, exr.parameters) == (0xC0000409, (3,))
    assert not d.warnings


def test_missing_trap_frame_is_a_warning_not_an_error():
    sc = scene("full", family="0xD1")
    data = bytearray(sc.data)
    params = list(sc.bugcheck[1])
    params[3] = K.FAULT_IP + 1                         # an IP that no trap frame holds
    data[0x40:0x60] = struct.pack("<4Q", *params)
    with pytest.warns(DumpWarning, match="no trap frame"):
        d = dumpkit.open(bytes(data))
        assert "trap_frame" not in d.contexts


def test_trap_frame_at_unmapped_address_raises():
    d = open_quiet(scene("full").data)
    with pytest.raises(MemoryReadError):
        d.trap_frame(0xFFFFC08BDEAD0000)


@pytest.mark.parametrize("kind", ["full", "bitmap"])
def test_processor_contexts(kind):
    sc = scene(kind)
    d = open_quiet(sc.data)
    ctx = d.contexts
    for name, want in sc.cpu_contexts.items():
        assert ctx[name].rip == want.rip and ctx[name].rsp == want.rsp and ctx[name].rbx == want.rbx
    assert ctx["prcb"].rip == ctx["header"].rip       # the crashing CPU


def test_summary_on_a_full_dump():
    sc = scene("full")
    d = open_quiet(sc.data)
    j = d.summary().to_json()
    assert j["process"] == {"name": "notmyfault64.e", "pid": sc.pid, "tid": sc.tid}
    assert j["module_count"] == 4 and j["unloaded_count"] == 2 and j["processors"] == 2
    assert j["bugcheck"]["code"] == "0x1000007e" and j["uptime_seconds"] == 600.0
    assert "notmyfault64.e" in repr(d.summary())
