"""The README's sample dump: the emulated case-2 crash with the seed case's module names."""
from __future__ import annotations

from pathlib import Path

import dumpkit
from fixtures import emulate

SAMPLE = Path(__file__).resolve().parent.parent / "fixtures" / "samples" / "case2_lwfmgr.dmp"


def test_sample_is_current(tmp_path):
    fresh = emulate.write_case2_sample(tmp_path)
    assert SAMPLE.read_bytes() == fresh.read_bytes(), \
        "fixtures/samples/case2_lwfmgr.dmp is stale: python -c 'from fixtures.emulate import " \
        "write_case2_sample; write_case2_sample(\"fixtures/samples\")'"


def test_sample_stack_is_the_source_chain():
    em = emulate.run_case2(0, loaded_as=emulate.CASE2_NAMES)
    with dumpkit.open(SAMPLE) as d:
        assert [m.name for m in d.modules] == ["ntoskrnl.exe", "ndis.sys", "lwfmgr.sys"]
        st = d.stack()
        got = [(f.instruction, f.child_sp) for f in st]
        want = [(f.instruction, f.child_sp) for f in em.frames]
        assert got == want
        # the fault sits in "ndis", called by the filter's load path, as in the seed case
        assert st[5].call_site.startswith("ndis!NdisFDeregisterFilterDriver+0x")
        assert st[6].module == "lwfmgr" and st[6].symbol is None
