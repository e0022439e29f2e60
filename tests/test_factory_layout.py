"""Byte-level checks of the fixture factory's output against literal offsets from
shared/reference/dumpformat.md (sections 1, 2, 3.6) and against the real triage dump.

These tests decode with bare struct.unpack_from at hard-coded offsets on purpose:
the expectations are the document's numbers, not the factory's own constants.
"""
from __future__ import annotations

import datetime as dt
import struct

import pytest

from fixtures.factory import (
    AUTO, AddressSpace, ExceptionRecord64, HeaderFields, PhysicalMemory, TriageDriver, TriageSpec,
    UnloadedDriver, X64Context, dump_blob, make_basic_dump, make_kdbg, software_pte, transition_pte,
    write_bitmap_dump, write_full_dump, write_summary_dump, write_triage_dump,
)
from tests.conftest import shared_path


def u32(b, o):
    return struct.unpack_from("<I", b, o)[0]


def u64(b, o):
    return struct.unpack_from("<Q", b, o)[0]


PAGE32 = 0x45474150
PAGE64 = 0x4547415045474150


def _small_memory():
    mem = PhysicalMemory()
    aspace = AddressSpace(mem)
    aspace.map_new(0xFFFFF80000000000, b"kernel page")
    return mem, aspace


def test_full_dump_header_literals():
    mem, aspace = _small_memory()
    ctx = X64Context(rip=0xFFFFF8047BDF5A80, rsp=0xFFFF850429890EE8, rax=0xAAAA, r15=0xF15, mxcsr=0x1F80)
    h = HeaderFields(bugcheck_code=0x1000007E, bugcheck_parameters=(1, 2, 3, 4), context=ctx,
                     kd_debugger_data_block=0xFFFFF8047C600B20, number_processors=16,
                     system_time=dt.datetime(2025, 8, 31, 21, 33, tzinfo=dt.timezone.utc),
                     comment="made by dumpkit fixtures", boot_id=0xD)
    b = write_full_dump(None, mem, h)
    assert b[0:8] == b"PAGEDU64"
    assert u32(b, 0x8) == 0xF and u32(b, 0xC) == 19041
    assert u64(b, 0x10) == aspace.dtb
    assert u32(b, 0x30) == 0x8664 and u32(b, 0x34) == 16
    assert u32(b, 0x38) == 0x1000007E
    assert [u64(b, 0x40 + 8 * i) for i in range(4)] == [1, 2, 3, 4]
    assert u64(b, 0x80) == 0xFFFFF8047C600B20
    # PHYSICAL_MEMORY_DESCRIPTOR64: NumberOfRuns u32 @0x88, NumberOfPages u64 @0x90, runs @0x98
    runs = mem.runs()
    assert u32(b, 0x88) == len(runs)
    assert u64(b, 0x90) == sum(c for _, c in runs)
    assert (u64(b, 0x98), u64(b, 0xA0)) == runs[0]
    # CONTEXT at 0x348: ContextFlags +0x30, MxCsr +0x34 and FltSave.MxCsr +0x118, Rax +0x78, Rsp +0x98, Rip +0xF8
    assert u32(b, 0x348 + 0x30) == 0x10001F
    assert u32(b, 0x348 + 0x34) == 0x1F80 and u32(b, 0x348 + 0x118) == 0x1F80
    assert u64(b, 0x348 + 0x78) == 0xAAAA and u64(b, 0x348 + 0x98) == 0xFFFF850429890EE8
    assert u64(b, 0x348 + 0xF0) == 0xF15 and u64(b, 0x348 + 0xF8) == 0xFFFFF8047BDF5A80
    assert struct.unpack_from("<H", b, 0x348 + 0x38)[0] == 0x10      # SegCs
    # EXCEPTION_RECORD64 at 0xF00 (kernel style: breakpoint at KeBugCheckEx)
    assert u32(b, 0xF00) == 0x80000003 and u32(b, 0xF04) == 1 and u64(b, 0xF10) == 0xFFFFF8047BDF5A80
    assert u32(b, 0xF98) == 1
    assert u64(b, 0xFA0) == len(b)
    # 2025-08-31 21:33 UTC as FILETIME (independent arithmetic: seconds 1601..1970 = 11644473600)
    assert u64(b, 0xFA8) == (1756675980 + 11644473600) * 10_000_000
    assert b[0xFB0:0xFB0 + 24] == b"made by dumpkit fixtures" and b[0xFB0 + 24] == 0
    assert u32(b, 0x1040) == 1 and u32(b, 0x1044) == 0x110
    assert u32(b, 0x1048) == PAGE32                # kernel writer leaves WriterStatus as 'PAGE'
    assert b[0x104D] == 0x41
    assert u32(b, 0x1054) == 0xD
    # pages packed from 0x2000, in run order
    first = runs[0][0]
    assert b[0x2000:0x3000] == mem.page_bytes(first)
    assert len(b) == 0x2000 + 0x1000 * sum(c for _, c in runs)


def test_page_fill_for_unset_fields():
    mem, _ = _small_memory()
    h = HeaderFields(directory_table_base=None, bugcheck_code=None, bugcheck_parameters=None,
                     kd_debugger_data_block=None, context=None, exception=None, system_time=None,
                     attributes=None, boot_id=None, version_user=None, writer="dbgeng",
                     physical_memory_runs=None)
    b = write_bitmap_dump(None, mem, h)
    assert b[0:8] == b"PAGEDU64"
    for off in (0x10, 0x40, 0x58, 0x60, 0x78, 0x80, 0x88, 0x90, 0xFA8, 0xFB0):
        assert u64(b, off) == PAGE64, hex(off)
    for off in (0x38, 0x3C, 0x348 + 0x30, 0x348 + 0xF8, 0xF00, 0x103C, 0x1050, 0x1054, 0x1058, 0x1FFC):
        assert u32(b, off) == PAGE32, hex(off)
    assert u32(b, 0x1048) == 0                     # dbgeng writer: WriterStatus 0
    assert u32(b, 0xF98) == 5                      # still written


def test_header_patches_and_explicit_values():
    mem, _ = _small_memory()
    h = HeaderFields(dump_type=7, required_dump_space=0x1234, patches={0x4: b"DUMP"})
    b = write_full_dump(None, mem, h)
    assert b[0:8] == b"PAGEDUMP" and u32(b, 0xF98) == 7 and u64(b, 0xFA0) == 0x1234


@pytest.mark.parametrize("sig,dtype", [("SDMP", 5), ("FDMP", 5), ("SDMP", 6)])
def test_bitmap_layout(sig, dtype):
    mem = PhysicalMemory(alloc_base_pfn=0x10)
    aspace = AddressSpace(mem)
    aspace.map_new(0xFFFFF80000000000, bytes(range(256)) * 16)
    mem.write(0x123456, b"far page")            # PFN 0x123
    pfns = mem.present_pfns()
    b = write_bitmap_dump(None, mem, signature=sig, dump_type=dtype)
    assert u32(b, 0xF98) == dtype
    assert b[0x2000:0x2008] == sig.encode() + b"DUMP"
    first, total, bits = u64(b, 0x2020), u64(b, 0x2028), u64(b, 0x2030)
    assert first % 0x1000 == 0 and first >= 0x2038
    assert total == len(pfns)
    assert bits >= 0x124
    bitmap = b[0x2038:0x2038 + (bits + 7) // 8]
    set_bits = [i for i in range(bits) if bitmap[i >> 3] >> (i & 7) & 1]   # LSB first
    assert set_bits == pfns
    for k, pfn in enumerate(pfns):
        assert b[first + k * 0x1000:first + (k + 1) * 0x1000] == mem.page_bytes(pfn)
    assert len(b) == first + total * 0x1000
    assert u32(b, 0x88) == len(mem.runs())     # kernel-written bitmap dumps keep the runs


def test_summary_dump_type2_layout():
    mem = PhysicalMemory(alloc_base_pfn=0x10)
    aspace = AddressSpace(mem)
    aspace.map_new(0xFFFFF80000000000, b"summary")
    pfns = mem.present_pfns()
    b = write_summary_dump(None, mem)
    assert u32(b, 0xF98) == 2
    assert b[0x2000:0x2008] == b"SDMPDUMP"
    header_size, bitmap_size, pages, size_of_bitmap = struct.unpack_from("<IIII", b, 0x200C)
    assert pages == len(pfns) and bitmap_size == size_of_bitmap >= pfns[-1] + 1
    assert u64(b, 0x2020) == 0                    # Bitmap._reserved0
    bitmap = b[0x2028:0x2028 + (bitmap_size + 7) // 8]
    assert [i for i in range(bitmap_size) if bitmap[i >> 3] >> (i & 7) & 1] == pfns
    assert header_size % 0x1000 == 0
    for k, pfn in enumerate(pfns):
        assert b[header_size + k * 0x1000:header_size + (k + 1) * 0x1000] == mem.page_bytes(pfn)


def test_pte_encodings():
    t = transition_pte(0x1BC000)
    assert t & 1 == 0 and t >> 11 & 1 == 1 and t >> 10 & 1 == 0 and t & 0x000FFFFFFFFFF000 == 0x1BC000
    s = software_pte(0x55)
    assert s & 1 == 0 and s >> 11 & 1 == 0 and s >> 10 & 1 == 0 and s >> 32 == 0x55
    mem = PhysicalMemory()
    aspace = AddressSpace(mem)
    aspace.map(0xFFFFF80000000000, 0x40000000, 0x40000000, page_size=0x40000000)
    aspace.map(0xFFFFF80040000000, 0x200000, 0x200000, page_size=0x200000)
    # PML4 index of 0xfffff80000000000 = 0x1F0; PDPT index 0; the PDPTE has PS (bit 7)
    pml4e = mem.read_u64(aspace.dtb + 8 * 0x1F0)
    pdpte = mem.read_u64((pml4e & 0x000FFFFFFFFFF000) + 0)
    assert pdpte & 0x81 == 0x81 and pdpte & 0x000FFFFFC0000000 == 0x40000000
    pdpte1 = mem.read_u64((pml4e & 0x000FFFFFFFFFF000) + 8)
    pde = mem.read_u64((pdpte1 & 0x000FFFFFFFFFF000) + 0)
    assert pde & 0x81 == 0x81 and pde & 0x000FFFFFFFE00000 == 0x200000
    assert aspace.translate(0xFFFFF80012345678) == 0x52345678
    assert aspace.translate(0xFFFFF80040012345) == 0x212345


def _triage_spec(writer):
    kdbg = make_kdbg(KernBase=0xFFFFF8047BA00000, PsLoadedModuleList=0xFFFFF8047C62A390,
                     PteBase=0xFFFF840000000000, OffsetPrcbContext=0x85C0)
    return TriageSpec(
        header=HeaderFields(writer=writer, kd_debugger_data_block=0xFFFFF8047C600B20),
        prcb=b"\x11" * 0x100, process=b"\x22" * 0xA40, thread=b"\x33" * 0x898,
        call_stack=b"\x44" * 0x118, top_of_stack=0xFFFF850429892EE8, debugger_data=kdbg,
        drivers=[TriageDriver("ntoskrnl.exe", 0xFFFFF8047BA00000, 0x1046000, 0x0D8333E6, 0xA1B2C3),
                 TriageDriver("hal.dll", 0xFFFFF8047B9A0000, 0xA9000, 0x1A7BE8E9),
                 TriageDriver("amdppm.sys", 0xFFFFF8048B580000, 0x3B000, 0xC9C03000)],
        unloaded_drivers=[UnloadedDriver("dam.sys", 0xFFFFF80487DE0000, 0xFFFFF80487DFC000)],
        data_blocks=[(0xFFFFF8048B583000, b"\x90" * 0x1000), (0xFFFF847C02445B80, b"\x63" * 8)],
        secondary_data=dump_blob([(b"\x01" * 16, b"abc")]),
    )


@pytest.mark.parametrize("writer", ["kernel", "dbgeng"])
def test_triage_layout(writer):
    spec = _triage_spec(writer)
    lay = write_triage_dump(None, spec)
    b = lay.data
    assert b[0:8] == b"PAGEDU64" and u32(b, 0xF98) == 4
    t = 0x2000
    size_of_dump, valid = u32(b, t + 4), u32(b, t + 8)
    assert valid == size_of_dump - 4 and b[valid:valid + 4] == b"TRGD"
    assert u32(b, t + 0xC) == 0x348 and u32(b, t + 0x10) == 0xF00
    assert u32(b, t + 0x14) == 0x2080                      # Mm right after TRIAGE_DUMP64
    assert struct.unpack_from("<II", b, 0x2080) == (1, 0x50)
    assert u32(b, t + 0x18) == 0x20D0                      # unloaded drivers after the 0x50-byte Mm block
    un = 0x20D0
    assert u64(b, un) == 1
    assert struct.unpack_from("<HH", b, un + 8) == (14, 14)
    assert b[un + 8 + 0x10:un + 8 + 0x10 + 14] == "dam.sys".encode("utf-16-le")
    assert (u64(b, un + 8 + 0x28), u64(b, un + 8 + 0x30)) == (0xFFFFF80487DE0000, 0xFFFFF80487DFC000)
    assert b[u32(b, t + 0x1C):u32(b, t + 0x1C) + 0x100] == b"\x11" * 0x100
    assert b[u32(b, t + 0x20):u32(b, t + 0x20) + 0xA40] == b"\x22" * 0xA40
    assert b[u32(b, t + 0x24):u32(b, t + 0x24) + 0x898] == b"\x33" * 0x898
    assert u32(b, t + 0x2C) == 0x118 and b[u32(b, t + 0x28):u32(b, t + 0x28) + 0x118] == b"\x44" * 0x118
    assert u64(b, t + 0x48) == 0xFFFF850429892EE8
    assert u64(b, t + 0x48) + u32(b, t + 0x2C) == 0xFFFF850429893000     # page-aligned stack base
    kd = u32(b, t + 0x70)
    assert u32(b, t + 0x74) == 0x380 and b[kd + 0x10:kd + 0x14] == b"KDBG" and u32(b, kd + 0x14) == 0x380
    assert u64(b, kd + 0x18) == 0xFFFFF8047BA00000 and u64(b, kd + 0x48) == 0xFFFFF8047C62A390
    assert u64(b, kd + 0x360) == 0xFFFF840000000000 and struct.unpack_from("<H", b, kd + 0x338)[0] == 0x85C0
    dl, dc, sp, ss = u32(b, t + 0x30), u32(b, t + 0x34), u32(b, t + 0x38), u32(b, t + 0x3C)
    assert dc == 3 and (sp - dl) == 0x90 * 3
    names = []
    for i in range(dc):
        e = dl + 0x90 * i
        no = u32(b, e)
        n = u32(b, no)                                     # UTF-16 code units, not bytes
        names.append(b[no + 4:no + 4 + 2 * n].decode("utf-16-le"))
        assert b[no + 4 + 2 * n:no + 6 + 2 * n] == b"\0\0"
    assert (u64(b, dl + 0x38), u32(b, dl + 0x48), u32(b, dl + 0x80), u32(b, dl + 0x88)) == \
        (0xFFFFF8047BA00000, 0x1046000, 0xA1B2C3, 0x0D8333E6)
    assert u32(b, dl + 2 * 0x90 + 0x88) == 0xC9C03000
    if writer == "kernel":
        assert names == ["ntoskrnl.exe", "hal.dll", "amdppm.sys"]
        assert u32(b, 0x1048) == PAGE32 and u32(b, 0x1050) == 0x8 and u32(b, t + 0x44) == 0x41
        assert u64(b, 0x10) == PAGE64 and u32(b, 0x88) == PAGE32  # AUTO: nothing to take them from
    else:
        assert names == ["\\SystemRoot\\system32\\ntoskrnl.exe", "\\SystemRoot\\system32\\hal.dll",
                         "\\SystemRoot\\system32\\drivers\\amdppm.sys"]
        assert u32(b, 0x1048) == 0 and u32(b, 0x1050) == PAGE32 and u32(b, t + 0x44) == 0xFFFFFFFF
        assert u32(b, 0x88) == PAGE32
    # pool records: next = align8(off + 4 + 2*len + 2); the pool ends exactly at sp + ss
    off = sp
    for _ in range(dc):
        off = (off + 4 + 2 * u32(b, off) + 2 + 7) & ~7
    assert off == sp + ss
    db, dcount = u32(b, t + 0x78), u32(b, t + 0x7C)
    assert dcount == 2
    va, foff, size = struct.unpack_from("<QII", b, db)
    assert (va, size) == (0xFFFFF8048B583000, 0x1000) and b[foff:foff + size] == b"\x90" * 0x1000
    va, foff, size = struct.unpack_from("<QII", b, db + 0x10)
    assert (va, size) == (0xFFFF847C02445B80, 8) and b[foff:foff + 8] == b"\x63" * 8
    # MiniDumpFields: CONTEXT|EXCEPTION|PRCB|PROCESS|THREAD|STACK|DRIVER_LIST|MMINFO|DEBUGGER_DATA|DATA_BLOCKS
    assert u32(b, 0x1038) == 0xD7F
    # secondary data after SizeOfDump
    assert b[size_of_dump:size_of_dump + 8] == b"DumpBlob"
    assert struct.unpack_from("<II", b, size_of_dump + 8) == (0x10, 0xF0000000 | 19041)
    assert u32(b, size_of_dump + 0x10) == 0x20 and u32(b, size_of_dump + 0x24) == 3


def test_triage_section_order_and_omission():
    spec = _triage_spec("kernel")
    spec.order = ("prcb", "process", "thread", "stack", "unloaded", "kdbg", "mm", "drivers", "strings",
                  "data_blocks", "data_page")
    spec.process = None
    lay = write_triage_dump(None, spec)
    b = lay.data
    assert u32(b, 0x2000 + 0x20) == 0                     # ProcessOffset 0: section omitted
    assert u32(b, 0x2000 + 0x1C) == 0x2080                # PRCB first
    assert u32(b, 0x2000 + 0x18) > u32(b, 0x2000 + 0x28)  # unloaded after the call stack
    assert u32(b, 0x1038) & 0x8 == 0


def test_basic_dumps_build(tmp_path):
    for kind in ("full", "summary", "bitmap", "bitmap_kernel", "triage"):
        d = make_basic_dump(tmp_path / f"{kind}.dmp", kind)
        raw = (tmp_path / f"{kind}.dmp").read_bytes()
        assert raw == d.data and raw[:8] == b"PAGEDU64"
        assert u32(raw, 0x38) == 0xD1 and u64(raw, 0x58) == 0xFFFFF8048B571234
    d = make_basic_dump(None, "triage", writer="dbgeng")
    assert u32(d.data, 0x1048) == 0 and u64(d.data, 0x10) == 0x1AA000 and u32(d.data, 0x88) == PAGE32
    d = make_basic_dump(None, "triage")
    assert u64(d.data, 0x10) == 0x1AA000 and u32(d.data, 0x88) == 3    # kernel triage keeps DTB and RAM runs


def test_triage_conventions_match_real_dump():
    """The real dbgeng-written triage dump and a dbgeng-style factory dump obey the same
    conventions (decoded here with the same literal offsets)."""
    real = shared_path("dumps", "triage_x64.dmp").read_bytes()
    fake = write_triage_dump(None, _triage_spec("dbgeng")).data
    for b in (real, fake):
        t = 0x2000
        size_of_dump, valid = u32(b, t + 4), u32(b, t + 8)
        assert valid == size_of_dump - 4 and b[valid:valid + 4] == b"TRGD"
        assert len(b) > size_of_dump and b[size_of_dump:size_of_dump + 8] == b"DumpBlob"
        assert u32(b, t + 0xC) == 0x348 and u32(b, t + 0x10) == 0xF00 and u32(b, t + 0x14) == 0x2080
        assert u32(b, t + 0x18) == 0x20D0
        dl, dc, sp = u32(b, t + 0x30), u32(b, t + 0x34), u32(b, t + 0x38)
        assert (sp - dl) // dc == 0x90
        first = u32(b, dl)
        assert first == sp
        n = u32(b, first)
        assert b[first + 4:first + 4 + 2 * n].decode("utf-16-le").endswith("ntoskrnl.exe")
        assert b[first + 4:first + 6] == b"\\\0"          # dbgeng: full path
        nxt = (first + 4 + 2 * n + 2 + 7) & ~7
        assert u32(b, dl + 0x90) == nxt                   # second driver's string right after
        kd = u32(b, t + 0x70)
        assert b[kd + 0x10:kd + 0x14] == b"KDBG" and u32(b, t + 0x74) == 0x380
        assert u32(b, 0x1048) == 0 and u32(b, 0x103C) == PAGE32
        assert u32(b, 0x348 + 0x30) & 0x100000 and u32(b, 0x348 + 0x34) == u32(b, 0x348 + 0x118)
    # the real ntoskrnl entry: DllBase 0x38, SizeOfImage 0x48, TimeDateStamp 0x88 (expected.md)
    dl = u32(real, 0x2030)
    assert (u64(real, dl + 0x38), u32(real, dl + 0x48), u32(real, dl + 0x88)) == \
        (0xFFFFF8047BA00000, 0x1046000, 0x0D8333E6)


def test_exception_record_and_auto_sentinel():
    rec = ExceptionRecord64(code=0xC0000005, flags=0, address=0xFFFFF8048B58334C, information=(1, 0x10))
    b = rec.pack()
    assert len(b) == 0x98 and u32(b, 0) == 0xC0000005 and u64(b, 0x10) == 0xFFFFF8048B58334C
    assert u32(b, 0x18) == 2 and u64(b, 0x20) == 1 and u64(b, 0x28) == 0x10
    assert repr(AUTO) == "AUTO"
