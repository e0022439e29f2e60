"""32-bit (PAGEDUMP) reader: header, physical layers, PAE and non-PAE translation.

Truth from outside: the dumps come from ``fixtures/factory32.py`` (its own layouts,
never the reader's), and volatility3 (an independent reader of 32-bit crash dumps:
``WindowsCrashDump32Layer`` for DumpTypes 1 and 5, its ``Intel``/``IntelPAE``
translation layers) reads the same files in the same test: header fields, physical
pages and virtual translations must agree three ways (factory, volatility3, dumpkit).
Volatility3 has no reader for DumpType 2, 4 or 6; for those the factory's own walk is
the second opinion and its header fields are read through volatility3's DUMP_HEADER32
type (``crash.json``), which does not depend on the DumpType.
"""
from __future__ import annotations

import pytest

from dumpkit.arch.x86.opener import open_pagedump
from dumpkit.errors import (CorruptDumpError, MissingPageError, NotADumpError, PagedOutError,
                            PageNotPresentError, TruncatedDumpError, UnsupportedDumpError)
from dumpkit.formats.header32 import FIELD_OFFSETS32, parse_header32
from dumpkit.io import Source
from fixtures.factory32 import make_basic_dump32

vol = pytest.importorskip("volatility3.framework")
from volatility3.framework import constants, contexts  # noqa: E402
from volatility3.framework.layers import crash, intel, physical  # noqa: E402
from volatility3.framework.symbols import intermed  # noqa: E402

KINDS = ["full", "bitmap", "kernel_bitmap", "summary"]


def _vol_header(path):
    ctx = contexts.Context()
    ctx.config["file.location"] = "file://" + str(path)
    ctx.add_layer(physical.FileLayer(ctx, "file", "file"))
    table = intermed.IntermediateSymbolTable.create(ctx, "crashsym", "windows", "crash")
    return ctx, ctx.object(table + constants.BANG + "_DUMP_HEADER", offset=0, layer_name="file")


def _vol_virtual(ctx, pae: bool):
    ctx.config["crash.base_layer"] = "file"
    cl = crash.WindowsCrashDump32Layer(ctx, "crash", "crash")
    ctx.add_layer(cl)
    ctx.config["virt.memory_layer"] = "crash"
    ctx.config["virt.page_map_offset"] = cl.dtb
    v = (intel.IntelPAE if pae else intel.Intel)(ctx, "virt", "virt")
    ctx.add_layer(v)
    return cl, v


@pytest.fixture(scope="module", params=[(k, pae) for k in KINDS for pae in (False, True)],
                ids=[f"{k}-{'pae' if pae else 'nopae'}" for k in KINDS for pae in (False, True)])
def made(request, tmp_path_factory):
    kind, pae = request.param
    path = tmp_path_factory.mktemp("x86") / f"{kind}_{pae}.dmp"
    d = make_basic_dump32(kind, pae=pae, path=path)
    return kind, pae, path, d, open_pagedump(Source.open(path))


def test_header_fields_agree_with_volatility3(made):
    kind, pae, path, d, parts = made
    _ctx, vh = _vol_header(path)
    h = parts.header
    assert h.directory_table_base == int(vh.DirectoryTableBase) == d.aspace.dtb
    assert h.ps_loaded_module_list == int(vh.PsLoadedModuleList) == d.header.ps_loaded_module_list
    assert h.kd_debugger_data_block == int(vh.KdDebuggerDataBlock)
    assert h.machine_image_type == int(vh.MachineImageType) == 0x14C
    assert h.number_processors == int(vh.NumberProcessors) == 2
    assert h.bugcheck_code == int(vh.BugCheckCode) == 0x8E
    assert list(h.bugcheck_parameters) == [int(p) for p in vh.BugCheckCodeParameter] == \
        list(d.header.bugcheck_parameters)
    assert h.pae_enabled == bool(int(vh.PaeEnabled)) == pae
    assert h.dump_type == int(vh.DumpType)
    assert h.required_dump_space == int(vh.RequiredDumpSpace) == len(d.data)
    assert h.system_time_raw == int(vh.SystemTime)
    assert h.system_uptime == int(vh.SystemUpTime)
    assert h.product_type == int(vh.ProductType) and h.suite_mask == int(vh.SuiteMask)
    assert h.minor_version == int(vh.MinorVersion) == 7601
    if kind == "full":
        vruns = vh.PhysicalMemoryBlockBuffer
        assert h.number_of_runs == int(vruns.NumberOfRuns)
        assert h.number_of_pages == int(vruns.NumberOfPages) == len(d.memory.present_pfns())


def test_volatility3_layout_offsets_match_ours():
    """The offsets in the reader's single layout table equal volatility3's crash.json."""
    ctx = contexts.Context()
    table = intermed.IntermediateSymbolTable.create(ctx, "crashsym", "windows", "crash")
    t = ctx.symbol_space.get_type(table + constants.BANG + "_DUMP_HEADER")
    theirs = {name: off for name, (off, _t) in t.vol.members.items()}
    pairs = {"directory_table_base": "DirectoryTableBase", "ps_loaded_module_list": "PsLoadedModuleList",
             "machine_image_type": "MachineImageType", "bugcheck_code": "BugCheckCode",
             "bugcheck_parameters": "BugCheckCodeParameter", "pae_enabled": "PaeEnabled",
             "kd_debugger_data_block": "KdDebuggerDataBlock", "number_of_runs": "PhysicalMemoryBlockBuffer",
             "context_record": "ContextRecord", "exception": "Exception", "comment": "Comment",
             "dump_type": "DumpType", "minidump_fields": "MiniDumpFields", "writer_status": "WriterStatus",
             "required_dump_space": "RequiredDumpSpace", "system_uptime": "SystemUpTime",
             "system_time": "SystemTime", "suite_mask": "SuiteMask", "product_type": "ProductType"}
    for ours, vname in pairs.items():
        assert FIELD_OFFSETS32[ours] == theirs[vname], ours


def test_physical_pages_and_translations(made):
    kind, pae, path, d, parts = made
    assert parts.physical is not None and parts.physical.page_count == len(d.memory.present_pfns())
    for pfn in d.memory.present_pfns():
        assert parts.physical.read(pfn << 12, 0x1000) == d.memory.page_bytes(pfn)
    sp = parts.address_space()
    assert sp.pae == pae
    for va, pa in d.expected_translations.items():
        assert sp.translate(va) == pa == d.aspace.translate(va), hex(va)
    for va, data in d.expected_bytes.items():
        assert parts.read_virtual(va, len(data)) == data
    if kind in ("full", "bitmap"):           # the two types volatility3 reads
        ctx, _vh = _vol_header(path)
        cl, v = _vol_virtual(ctx, pae)
        for pfn in d.memory.present_pfns():
            assert cl.read(pfn << 12, 0x1000) == d.memory.page_bytes(pfn)
        for va, pa in d.expected_translations.items():
            if va in d.transition_vas:
                continue                     # volatility3's Intel layers treat transition PTEs as invalid
            assert v.translate(va)[0] == pa, hex(va)
            assert v.read(va, 16) == parts.read_virtual(va, 16)


def test_not_resident_pages_say_why(made):
    _kind, _pae, _path, d, parts = made
    sp = parts.address_space()
    assert sp.walk(d.transition_vas[0])[2] == "transition"
    with pytest.raises(PagedOutError, match="paged out"):
        sp.translate(d.paged_out_vas[0])
    with pytest.raises(PagedOutError, match="prototype"):
        sp.translate(d.prototype_vas[0])
    for va in d.unmapped_vas:
        with pytest.raises(PageNotPresentError):
            sp.translate(va)
    with pytest.raises(MissingPageError):
        parts.read_virtual(d.missing_vas[0], 4)
    assert parts.read_virtual(d.missing_vas[0], 4, zero_fill=True) == bytes(4)


def test_large_pages_follow_the_mode():
    for pae, size in ((False, 0x400000), (True, 0x200000)):
        d = make_basic_dump32("full", pae=pae)
        parts = open_pagedump(Source.from_bytes(d.data))
        pa, page, how = parts.address_space().walk(0x82000000 + size - 0x10)
        assert (page, how) == (size, "large") and pa == 0x1000000 + size - 0x10


def test_context_record_in_the_header():
    from dumpkit.arch.x86.context import context_from_bytes32, looks_like_context32
    d = make_basic_dump32("full")
    h = parse_header32(Source.from_bytes(d.data))
    assert looks_like_context32(h.context_record)
    ctx = context_from_bytes32(h.context_record, "header")
    assert (ctx.eip, ctx.esp, ctx.ebp) == (d.header.context.eip, d.header.context.esp, d.header.context.ebp)
    assert ctx.ip == ctx.eip and ctx.sp == ctx.esp and ctx.cs == 8


def test_bad_headers_are_clear_errors():
    d = make_basic_dump32("full").data
    with pytest.raises(TruncatedDumpError):
        open_pagedump(Source.from_bytes(d[:0x800]))
    with pytest.raises(NotADumpError):
        open_pagedump(Source.from_bytes(b"PAGEDU64" + d[8:]))
    bad = bytearray(d)
    bad[0x20:0x24] = (0x8664).to_bytes(4, "little")
    with pytest.raises(UnsupportedDumpError, match="MachineImageType"):
        open_pagedump(Source.from_bytes(bytes(bad)))
    bad = bytearray(d)
    bad[0xF88:0xF8C] = (9).to_bytes(4, "little")
    with pytest.raises(CorruptDumpError, match="DumpType"):
        open_pagedump(Source.from_bytes(bytes(bad)))
    bad = bytearray(d)
    bad[0x64:0x68] = (500).to_bytes(4, "little")          # NumberOfRuns beyond the buffer
    with pytest.warns(Warning, match="does not fit"):
        with pytest.raises(CorruptDumpError):
            open_pagedump(Source.from_bytes(bytes(bad)))


def test_truncated_full_dump_warns_and_reads_what_is_there():
    d = make_basic_dump32("full")
    cut = d.data[:len(d.data) - 0x1000]
    with pytest.warns(Warning, match="truncated"):
        parts = open_pagedump(Source.from_bytes(cut))
    assert parts.read_virtual(0x82001234, 8) == d.expected_bytes[0x82001234]
