"""The optional pykd backend, driven by a stand-in for pykd that replays WinDbg output.

pykd itself exists only inside WinDbg on Windows; what the backend relies on is the text
WinDbg prints, and the stack below is the real one from the seed case (cases.md, case 2).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from dumpkit.backends.pykd import COMMANDS, PykdTarget, analyze_target
from dumpkit.errors import MemoryReadError, UnsupportedDumpError

CASE2_K = (Path(__file__).resolve().parent / "data" / "text" / "case2_stack.txt").read_text(encoding="utf-8")

LM = """\
start             end                 module name
fffff804`0c800000 fffff804`0d846000   nt         ntkrnlmp.exe
fffff804`1c000000 fffff804`1c0f0000   ndis       ndis.sys
fffff804`1c7d0000 fffff804`1c7e2000   lwfmgr     lwfmgr.sys
"""


class FakePykd:
    """Answers dbgCommand like WinDbg would for the case-2 dump; memory is not readable."""

    def __init__(self, outputs):
        self.outputs = outputs
        self.calls = []

    def dbgCommand(self, text):
        self.calls.append(text)
        return self.outputs.get(text, "")

    def loadBytes(self, va, count):
        raise RuntimeError("Memory access error at 0x%x" % va)


def _fake():
    return FakePykd({".bugcheck": "Bugcheck code 0000007E\nArguments ffffffff`c0000005 fffff804`1c02a2b7 "
                                  "ffffec01`df207458 ffffec01`df206c90\n",
                     "r": "", "kn 100": CASE2_K, "lmn": LM})


def test_case2_through_pykd_matches_the_engineers_windbg():
    a = analyze_target(pykd_module=_fake())
    assert a.failure_bucket_id == "AV_lwfmgr!unknown_function"
    assert a.failure_id_hash == "{98a1e719-bb08-86f7-3821-f56b482ab48e}"
    assert a.culprit.module.lower() == "lwfmgr.sys"
    assert any(v.module.lower() == "ndis.sys" for v in a.victims)


def test_commands_run_once_and_memory_errors_are_dumpkit_errors():
    fake = _fake()
    t = PykdTarget(fake)
    t.transcript()
    t.transcript()
    assert fake.calls == list(COMMANDS)
    with pytest.raises(MemoryReadError):
        t.read_virtual(0x1000, 8)


def test_without_pykd_the_error_says_what_to_do(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "pykd", None)      # import pykd -> ImportError
    with pytest.raises(UnsupportedDumpError, match="Windows only"):
        PykdTarget()
