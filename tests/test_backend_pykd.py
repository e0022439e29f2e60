"""The optional pykd backend, driven by a stand-in for pykd that replays WinDbg output.

pykd itself exists only inside WinDbg on Windows; what the backend relies on is the text
WinDbg prints, and the stack below is the real one from the seed case (cases.md, case 2).
"""
from __future__ import annotations

import pytest

from dumpkit.backends.pykd import COMMANDS, PykdTarget, analyze_target
from dumpkit.errors import MemoryReadError, UnsupportedDumpError

CASE2_K = """\
 # Child-SP          RetAddr               Call Site
00 ffffec01`df2062d8 fffff804`0c9d08c2     nt!KeBugCheckEx
01 ffffec01`df2062e0 fffff804`0c991bcf     nt!PspSystemThreadStartup$filt$0+0x44
02 ffffec01`df206320 fffff804`0c9c0baf     nt!_C_specific_handler+0x9f
03 ffffec01`df206390 fffff804`0c83df60     nt!RtlpExecuteHandlerForException+0xf
04 ffffec01`df2063c0 fffff804`0c914154     nt!RtlDispatchException+0x430
05 ffffec01`df206b10 fffff804`0c9c99c2     nt!KiDispatchException+0x144
06 ffffec01`df2071c0 fffff804`0c9c5cae     nt!KiExceptionDispatch+0xc2
07 ffffec01`df2073a0 fffff804`1c02a2b7     nt!KiPageFault+0x42e
08 ffffec01`df207530 fffff804`1c7d5167     ndis!NdisFDeregisterFilterDriver+0x47
09 ffffec01`df207570 fffff804`1c7db49a     lwfmgr+0x5167
0a ffffec01`df2075a0 fffff804`0cebb709     lwfmgr+0xb49a
0b ffffec01`df207830 fffff804`0d1ca7c8     nt!IopLoadDriver+0x4bd
0c ffffec01`df207a10 fffff804`0d1a9132     nt!IopInitializeSystemDrivers+0x134
0d ffffec01`df207ab0 fffff804`0cf19742     nt!IoInitSystem+0x12
0e ffffec01`df207ae0 fffff804`0c92d195     nt!Phase1Initialization+0x42
0f ffffec01`df207b10 fffff804`0c9bf51c     nt!PspSystemThreadStartup+0x55
10 ffffec01`df207b60 00000000`00000000     nt!KiStartSystemThread+0x1c
"""

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
