"""The kernel layer finds a bug check's contexts where the catalogue's parameter roles say
(symbols/bugchecks.json, read by dumpkit.kernel.roles): one table for x64 and x86, no per-code
list in the readers.  Dumps are factory-built (fixtures/kernel_structs.py writes the CONTEXT,
KTRAP_FRAME and EXCEPTION_RECORD with its own offsets)."""
from __future__ import annotations

import warnings

import pytest

import dumpkit
from dumpkit.analysis.kb import KnowledgeBase
from dumpkit.kernel import roles as R
from fixtures import factory as F
from fixtures import kernel_structs as K


def open_quiet(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dumpkit.open(data)


def test_roles_are_the_catalogue_roles():
    kb = KnowledgeBase.load()
    for code in (0x7E, 0x1000007E, 0x3B, 0x8E, 0x139, 0x24, 0xD1, 0x1E):
        info = kb.bugcheck(code)
        r = R.roles_for(code)
        for role in ("context", "trap_frame", "exception_record", "exception_code", "ip", "address"):
            assert r.index(role) == info.param(role), (hex(code), role)
    assert R.roles_for(0xD5).scans_for_trap_frame and not R.roles_for(0x1E).scans_for_trap_frame
    assert not R.roles_for(0x8E).scans_for_context and not R.roles_for(0x7E).scans_for_context
    assert R.roles_for(0x1E).exception_information([0xC0000005, 1, 0, 0x28]) == (0, 0x28)
    assert R.roles_for(0x7E).exception_information([0xC0000005, 1, 2, 3]) == ()
    assert R.roles_for(0x12345678).index("context") is None            # uncatalogued: no roles


def test_unreadable_catalogue_gives_no_roles(tmp_path):
    bad = tmp_path / "bugchecks.json"
    bad.write_text("{ not json", encoding="utf-8")
    assert R.load_roles(str(bad)) == {}


def _fs_scene(code):
    want = {}

    def scene(aspace, heap):
        ctx = F.X64Context(rip=K.FAULT_IP, rsp=K.STACK_BASE - 0x1EE0, rbx=0xB0B0, rsi=0x5151)
        cva = heap.put(ctx.pack(), align=16)
        exr = heap.put(F.ExceptionRecord64(code=0xC0000005, flags=0, address=K.FAULT_IP, information=(0, 8)).pack())
        want.update(ctx=ctx.regs(), cva=cva)
        return code, (0x1F0A5B, exr, cva, 0)
    return K.make_kernel_dump(None, "full", family="E2", scene=scene), want


def test_file_system_bugcheck_context_comes_from_its_roles():
    # NTFS_FILE_SYSTEM: P2 EXCEPTION_RECORD, P3 CONTEXT (WinDbg: .cxr P3): no code for 0x24 in the reader
    sc, want = _fs_scene(0x24)
    d = open_quiet(sc.data)
    exc = d.contexts["exception"]
    assert exc.address == want["cva"] and exc.ip == K.FAULT_IP and exc["rbx"] == 0xB0B0
    rec = d.exception_record
    assert (rec.code, rec.address, rec.parameters) == (0xC0000005, K.FAULT_IP, (0, 8))


def test_page_fault_family_beyond_the_old_list_finds_its_trap_frame():
    # DRIVER_PAGE_FAULT_IN_FREED_SPECIAL_POOL (0xD5): P1 address, P3 ip, like 0x50: KiPageFault's trap frame
    base = K.make_kernel_dump(None, "full", family="0x50")
    fault_va = base.bugcheck[1][0]
    sc = K.make_kernel_dump(None, "full", family="0x50", scene=lambda a, h: (0xD5, (fault_va, 0, K.FAULT_IP, 0)))
    d = open_quiet(sc.data)
    tf = d.contexts["trap_frame"]
    assert tf.ip == K.FAULT_IP and tf.address == base.expected["trap_frame"]["address"]


def test_the_table_decides(monkeypatch):
    # give the manual-crash code a CONTEXT role in the loaded table: the reader follows it
    sc, want = _fs_scene(0xE2)
    table = dict(R.load_roles())
    table[0xE2] = R.ParamRoles(0xE2, (None, None, "context", None))
    monkeypatch.setattr(R, "_ROLES", table)
    d = open_quiet(sc.data)
    assert d.contexts["exception"].address == want["cva"]
    monkeypatch.setattr(R, "_ROLES", {})
    assert "exception" not in open_quiet(sc.data).contexts


@pytest.mark.parametrize("code,params", [(0x24, (0x1F0A5B, 0, 0xFFFF900000000000, 0)),
                                         (0x7E, (0xC0000005, 0, 0, 0xFFFF900000000000))])
def test_missing_context_warns(code, params):
    sc = K.make_kernel_dump(None, "full", family="E2", scene=lambda a, h: (code, params))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        d = dumpkit.open(sc.data)
        assert "exception" not in d.contexts
    assert any("CONTEXT its parameters point at is not in the dump" in w for w in map(str, d.warnings))
