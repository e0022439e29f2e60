"""Analyzer plugins on factory dumps: 0x9F's blocked IRP and device stack, 0x116's driver parameter.

The device, driver and IRP objects are written by fixtures/io_objects.py, which lays each structure
out from its wdm.h member list (not from dumpkit's offsets).  The expected conclusions are WinDbg's
from the real case tests/data/agreement/9f_3_rtsper_image_pci_dumpchk.json: MODULE_NAME pci,
IMAGE_NAME pci.sys, FAILURE_BUCKET_ID 0x9F_3_RtsPer_IMAGE_pci.sys (FAILURE_ID_HASH as printed there).
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

import dumpkit
from dumpkit.analysis.analyzers import PLUGIN_KINDS, AnalyzerTable
from dumpkit.analysis.plugins import PLUGINS, run_plugin
from dumpkit.kernel import iostructs as S
from fixtures import io_objects as IO
from fixtures import kernel_structs as K

ROOT = Path(__file__).resolve().parent.parent
CASE = json.loads((ROOT / "tests/data/agreement/9f_3_rtsper_image_pci_dumpchk.json").read_text(encoding="utf-8"))
PCI = ("\\Driver\\pci", 0xFFFFF80479A10000, 0x7D000)
RTSPER = ("\\Driver\\RtsPer", 0xFFFFF8047B200000, 0x95000)
MODULES = tuple(K.DEFAULT_MODULES) + (K.ModSpec("pci.sys", PCI[1], PCI[2], 0x5E0F1A2B, 0x8F0C1),
                                      K.ModSpec("RtsPer.sys", RTSPER[1], RTSPER[2], 0x5A1B2C3D, 0x9A8B7))
TRIAGE_9F_POWER = K.NT_BASE + 0x7000      # P3: an address in nt (the structure itself is not read)
_CACHE: dict = {}


def power_dump(**kw):
    key = tuple(sorted(kw.items()))
    if key not in _CACHE:
        objs = {}

        def scene(aspace, heap):
            o = IO.lay_out_power_irp(aspace, heap, pdo_driver=PCI, fdo_driver=RTSPER, **kw)
            objs["o"] = o
            return 0x9F, (3, o.pdo, TRIAGE_9F_POWER, o.irp)
        sc = K.make_kernel_dump(None, "full", family="E2", modules=MODULES, scene=scene)
        _CACHE[key] = (sc, objs["o"])
    return _CACHE[key]


def analyze(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dumpkit.analyze(dumpkit.open(data))


def test_writer_and_reader_agree_on_every_offset():
    # two derivations: the writer's C layout of the wdm.h member lists, the reader's written-out table
    for ptr, lay in ((8, S.X64), (4, S.X86)):
        o = IO.offsets(ptr)
        assert (o["device"]["DriverObject"], o["device"]["AttachedDevice"], o["device"]["StackSize"]) == \
            (lay.device_object.driver_object, lay.device_object.attached_device, lay.device_object.stack_size)
        assert (o["driver"]["DriverStart"], o["driver"]["DriverSize"], o["driver"]["DriverName"]) == \
            (lay.driver_object.driver_start, lay.driver_object.driver_size, lay.driver_object.driver_name)
        assert (o["irp"]["StackCount"], o["irp"]["CurrentLocation"], o["irp"]["Thread"],
                o["irp"]["CurrentStackLocation"]) == (lay.irp.stack_count, lay.irp.current_location, lay.irp.thread,
                                                      lay.irp.current_stack_location)
        assert (o["stack"]["DeviceObject"], o["stack"]["_size"]) == \
            (lay.io_stack_location.device_object, lay.io_stack_location.size)
        assert IO.SIZES[ptr] == dict(device=lay.device_object.size, driver=lay.driver_object.size, irp=lay.irp.size)
        st = IO.structs(ptr)            # the construct Structs the writer serializes with
        assert (st["device"].sizeof(), st["driver"].sizeof(), st["irp"].sizeof(), st["stack"].sizeof()) == \
            (lay.device_object.size, lay.driver_object.size, lay.irp.size, lay.io_stack_location.size)


def test_9f_3_bucket_matches_windbg_on_a_dump():
    sc, o = power_dump()
    a = analyze(sc.data)
    exp = CASE["expected"]
    assert (a.module_name, a.image_name, a.failure_bucket_id, a.failure_id_hash) == \
        (exp["MODULE_NAME"], exp["IMAGE_NAME"], exp["FAILURE_BUCKET_ID"], exp["FAILURE_ID_HASH"])
    # dumpkit's own verdict says more: the IRP is pending in RtsPer.sys, the card reader's driver
    assert a.culprit.module == "RtsPer.sys" and "pending in RtsPer.sys" in a.culprit.reason
    assert a.confidence == "medium"
    # no instruction faulted: the fault line says what the bug check reports, not "not enough information"
    assert a.fault.explanation.startswith("No instruction faulted: the kernel raised DRIVER_POWER_STATE_FAILURE")
    notes = " ".join(a.notes)
    assert f"{o.irp:#x}" in notes and "\\Driver\\RtsPer" in notes and "device stack" in notes
    assert "pci.sys, from the module list" in notes          # DriverStart found in the module list
    assert not [w for w in a.warnings if "0x9F" in w]


def test_kernel_readers_follow_the_objects():
    sc, o = power_dump()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = dumpkit.open(sc.data).kernel
    irp = S.read_irp(k, o.irp)
    assert (irp.stack_count, irp.current_location, irp.current_stack_location) == (2, 2, o.stack_locations[1])
    loc = S.current_stack_location(k, irp)
    assert (loc.major_function, loc.minor_function, loc.device_object) == (0x16, 2, o.fdo)
    drv = S.read_driver_object(k, S.read_device_object(k, o.fdo).driver_object)
    assert (drv.name, drv.short_name, drv.start, drv.size) == (RTSPER[0], "RtsPer", RTSPER[1], RTSPER[2])
    devs, why = S.device_stack(k, o.pdo)
    assert [d.address for d in devs] == [o.pdo, o.fdo] and why is None


def test_looping_device_stack_degrades_with_a_warning():
    sc, o = power_dump(loop=True)
    a = analyze(sc.data)
    assert a.failure_bucket_id == "0x9F_3_RtsPer_IMAGE_pci.sys"      # the IRP and the PDO are still fine
    assert any("loops back" in w for w in a.warnings)


def test_broken_irp_keeps_the_pdo_image_and_warns():
    sc, o = power_dump(irp_type_broken=True)
    a = analyze(sc.data)
    assert a.failure_bucket_id == "0x9F_3_IMAGE_pci.sys" and a.image_name == "pci.sys"
    assert any("blocked IRP (P4) could not be followed" in w and "Type is 85" in w for w in a.warnings)


@pytest.mark.parametrize("params", [(3, 0, 0, 0), (3, 0xFFFF800000001000, 0, 0xFFFFFFFFFFFFF000),
                                    (3, K.NT_BASE, 0, K.NT_BASE + 8), (4, 0x258, 0xFFFF800000002000, 0)])
def test_unreadable_or_wrong_pointers_never_raise(params):
    sc, _ = power_dump()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = dumpkit.open(sc.data).kernel
    out = run_plugin("power_irp", k, 0x9F, params)
    assert out.device_image is None and out.device_driver is None
    if params[0] == 3:
        assert len(out.warnings) >= 2


def test_irp_current_location_outside_its_stack_is_refused():
    sc, o = power_dump()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = dumpkit.open(sc.data).kernel
    irp = S.read_irp(k, o.irp)
    bad = S.Irp(irp.address, irp.stack_count, 3, irp.thread, irp.current_stack_location)      # completed
    with pytest.raises(S.IoStructureError, match="CurrentLocation 3"):
        S.current_stack_location(k, bad)
    bad = S.Irp(irp.address, irp.stack_count, 2, irp.thread, irp.current_stack_location + 8)  # wild pointer
    with pytest.raises(S.IoStructureError, match="is not stack location 2"):
        S.current_stack_location(k, bad)


def test_plugin_names_are_one_list():
    assert set(PLUGIN_KINDS) == set(PLUGINS)
    assert AnalyzerTable.load().for_code(0x9F).plugin == "power_irp"
    with pytest.raises(ValueError, match="plugin 'nope'"):
        AnalyzerTable.from_dict({"schema": 1, "analyzer": [{"codes": ["0x9F"], "plugin": "nope",
                                                             "case": [{"bucket": "x"}]}]})


def test_116_tdr_culprit_from_p2_on_a_dump():
    # VIDEO_TDR_FAILURE: P2 points into the display driver; WinDbg: 0x116_IMAGE_nvlddmkm.sys (corpus 116_* cases
    # give MODULE_NAME nvlddmkm, IMAGE_NAME nvlddmkm.sys)
    nv = K.ModSpec("nvlddmkm.sys", 0xFFFFF8047C000000, 0x1A00000, 0x5F3C2A10, 0x1A2B3C)
    sc = K.make_kernel_dump(None, "full", family="E2", modules=tuple(K.DEFAULT_MODULES) + (nv,),
                            scene=lambda aspace, heap: (0x116, (heap.alloc(0x200), nv.base + 0x9A1F0,
                                                                0xFFFFFFFFC000009A, 4)))
    a = analyze(sc.data)
    assert (a.module_name, a.image_name, a.failure_bucket_id) == ("nvlddmkm", "nvlddmkm.sys",
                                                                 "0x116_IMAGE_nvlddmkm.sys")
    assert a.culprit.module == "nvlddmkm.sys" and a.symbol_name == "nvlddmkm+9a1f0"      # as FAULTING_IP names it


def test_117_live_dump_tdr_culprit_from_p2():
    # real live kernel dump lkd117_igdkmd64_tdr: P2 = igdkmd64+120f0 -> LKD_0x117_IMAGE_igdkmd64.sys, SYMBOL_NAME
    # igdkmd64+120f0 (WinDbg's FAULTING_IP); the module base here is ours, the offset the case's
    case = json.loads((ROOT / "tests/data/agreement/lkd117_igdkmd64_tdr.json").read_text(encoding="utf-8"))
    igd = K.ModSpec("igdkmd64.sys", 0xFFFFF800A4C50000, 0x8E8000, 0x5678D0A8, 0x8E1234)
    sc = K.make_kernel_dump(None, "full", family="E2", modules=tuple(K.DEFAULT_MODULES) + (igd,),
                            scene=lambda aspace, heap: (0x117, (heap.alloc(0x200), igd.base + 0x120F0, 0, 0)))
    a = analyze(sc.data)
    exp = case["expected"]
    assert (a.module_name, a.image_name, a.failure_bucket_id, a.failure_id_hash, a.symbol_name) == \
        (exp["MODULE_NAME"], exp["IMAGE_NAME"], exp["FAILURE_BUCKET_ID"], exp["FAILURE_ID_HASH"], exp["SYMBOL_NAME"])


class _FlatKernel:
    """A kernel view over one block of bytes (hypothesis fills it): everything else is missing."""

    def __init__(self, base, data):
        from dumpkit.model import ModuleList
        self.base, self.data, self.modules = base, data, ModuleList()
        self.arch = type("A", (), {"name": "x64"})()

    def read_virtual(self, va, size, zero_fill=False):
        from dumpkit.errors import MemoryReadError
        off = va - self.base
        if off < 0 or off + size > len(self.data):
            raise MemoryReadError(f"{va:#x} not in the dump")
        return self.data[off:off + size]


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=0x400, max_size=0x800), p2=st.integers(0, 0x7FF), p4=st.integers(0, 0x7FF),
       seed=st.sampled_from([0, 3, 4, 6]))
def test_power_irp_on_arbitrary_memory_never_raises(data, p2, p4, seed):
    from dumpkit.analysis.plugins.power import power_irp
    base = 0xFFFFC08B10000000
    buf = bytearray(data)
    buf[p2 % len(buf)] = seed             # sometimes a plausible Type word
    out = power_irp(_FlatKernel(base, bytes(buf)), 0x9F, [3, base + p2, 0, base + p4])
    assert out.device_driver is None or isinstance(out.device_driver, str)


def test_9f_3_on_an_x86_dump():
    # the same scene with 4-byte pointers in a 32-bit PAE dump: the x86 offsets of kernel/iostructs
    pci, rts = ("\\Driver\\pci", 0x8A600000, 0x3A000), ("\\Driver\\RtsPer", 0x8A700000, 0x50000)
    data, o = IO.make_power_irp_dump32(pdo_driver=pci, fdo_driver=rts,
                                       modules=[("pci.sys", pci[1], pci[2]), ("RtsPer.sys", rts[1], rts[2])])
    a = analyze(data)
    assert (a.module_name, a.image_name, a.failure_bucket_id) == ("pci", "pci.sys", "0x9F_3_RtsPer_IMAGE_pci.sys")
    assert a.culprit.module == "RtsPer.sys" and f"{o.irp:#x}" in " ".join(a.notes)
    assert "pci.sys, from the module list" in " ".join(a.notes)


def test_pdo_driver_outside_the_module_list_is_named_by_driver_name():
    def scene(aspace, heap):
        o = IO.lay_out_power_irp(aspace, heap, pdo_driver=("\\Driver\\ACPI", 0xFFFFF80400000000, 0x1000),
                                 fdo_driver=RTSPER)
        return 0x9F, (3, o.pdo, TRIAGE_9F_POWER, o.irp)
    a = analyze(K.make_kernel_dump(None, "full", family="E2", modules=MODULES, scene=scene).data)
    assert (a.image_name, a.failure_bucket_id) == ("ACPI.sys", "0x9F_3_RtsPer_IMAGE_ACPI.sys")
    assert "DriverStart is in no loaded module" in " ".join(a.notes)


def _whea_dump(record: bytes, p1: int = 0):
    return K.make_kernel_dump(None, "full", family="E2",
                              scene=lambda aspace, heap: (0x124, (p1, heap.put(record), 0xBE000000, 0x800400)))


def test_124_whea_record_names_the_vendor_and_the_error():
    from fixtures import whea_records as W
    rec = W.cper_record([(W.PROCESSOR_GENERIC, 1, W.processor_generic_section(error_type=1, operation=1, level=2)),
                         (W.XPF_PROCESSOR, 1, bytes(64))])
    a = analyze(_whea_dump(rec).data)
    # the factory's KPRCB holds no vendor string: the record's brand string names it; MODULE_NAME / IMAGE_NAME
    # as WinDbg gives them on the real 0x124 case (124_whea_genuineintel_stornvme: GenuineIntel, GenuineIntel.sys)
    assert (a.module_name, a.image_name) == ("GenuineIntel", "GenuineIntel.sys")
    assert a.failure_bucket_id.startswith("0x124_0_GenuineIntel_")
    notes = " ".join(a.notes)
    assert "2 section(s): processor generic (fatal), x86/x64 processor (fatal)" in notes
    assert "cache error on data read, cache level 2" in notes and "Intel(R) Core(TM) i7-8650U" in notes


@pytest.mark.parametrize("damage", ["signature", "length", "missing"])
def test_124_bad_whea_record_warns(damage):
    from fixtures import whea_records as W
    good = W.cper_record([(W.PROCESSOR_GENERIC, 1, W.processor_generic_section())])
    rec = {"signature": W.cper_record([(W.MEMORY, 1, bytes(80))], signature=b"CPEX"),
           "length": W.cper_record([(W.PROCESSOR_GENERIC, 1, W.processor_generic_section())], length_delta=-100),
           "missing": good}[damage]
    sc = _whea_dump(rec) if damage != "missing" else K.make_kernel_dump(
        None, "full", family="E2", scene=lambda aspace, heap: (0x124, (0, 0xFFFF900000000000, 0, 0)))
    a = analyze(sc.data)
    assert any("WHEA error record (P2) could not be read" in w for w in a.warnings)
    assert a.module_name != "GenuineIntel"          # no vendor from anywhere: the followup rule applies


class _Blocks:
    """Objects collected as triage-dump data blocks (the kernel saves 0x9F's IRP and device objects that way)."""

    def __init__(self, base=0xFFFFAD8F6B100000):
        self.next, self.blocks = base, {}

    def put(self, data):
        va = self.next
        self.blocks[va] = bytearray(data)
        self.next = (va + len(data) + 0x3F) & ~0x3F
        return va

    def write(self, va, data):
        for start, buf in self.blocks.items():
            if start <= va and va + len(data) <= start + len(buf):
                buf[va - start:va - start + len(data)] = data
                return
        raise AssertionError(f"{va:#x} is in no block")


def test_9f_3_on_a_kernel_written_triage_dump():
    # a minidump as the DumpChk case had: the objects only as triage data blocks, the modules in the driver list
    from fixtures import factory as F
    b = _Blocks()
    w = IO.Writer(b.put, b.write, 8)
    pdrv, fdrv = w.driver_object(*PCI), w.driver_object(*RTSPER)
    pdo = w.device_object(pdrv)
    fdo = w.device_object(fdrv, stack_size=2)
    w.device_object(pdrv, attached=fdo, at=pdo)
    irp, _ = w.irp([(0x16, 2, pdo), (0x16, 2, fdo)], current=2)
    ctx = F.X64Context(rip=F.DEFAULT_KERNEL_BASE + 0x3F6DA0, rsp=0xFFFFF8013BB11000, rcx=0x9F)
    header = F.HeaderFields(writer="kernel", bugcheck_code=0x9F, bugcheck_parameters=(3, pdo, 0xFFFFF8013BB11850, irp),
                            context=ctx, number_processors=2, directory_table_base=F.TRIAGE_DEFAULT_DTB,
                            physical_memory_runs=list(F.TRIAGE_DEFAULT_RUNS))
    drivers = [F.TriageDriver("ntoskrnl.exe", F.DEFAULT_KERNEL_BASE, 0x1046000, 0x2BCA0EA3, 0xA8D3BD),
               F.TriageDriver("pci.sys", PCI[1], PCI[2], 0x5E0F1A2B, 0x8F0C1),
               F.TriageDriver("RtsPer.sys", RTSPER[1], RTSPER[2], 0x5A1B2C3D, 0x9A8B7)]
    spec = F.TriageSpec(header=header, prcb=bytes(0x200), process=bytes(0xA40), thread=bytes(0x898),
                        call_stack=bytes(0x200), top_of_stack=0xFFFFF8013BB11000, drivers=drivers,
                        data_blocks=[(va, bytes(buf)) for va, buf in b.blocks.items()])
    a = analyze(F.write_triage_dump(None, spec).data)
    exp = CASE["expected"]
    assert (a.module_name, a.image_name, a.failure_bucket_id, a.failure_id_hash) == \
        (exp["MODULE_NAME"], exp["IMAGE_NAME"], exp["FAILURE_BUCKET_ID"], exp["FAILURE_ID_HASH"])
