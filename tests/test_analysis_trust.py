"""Blame only from evidence: noise yields no culprit, scanned frames never outvote unwound ones,
the faulting instruction is decoded only where the bug check has one, remediation fits the load.

Truth: the real triage dump (../shared, its .expected.md gives the CONTEXT address P4 that
WinDbg's STACK_COMMAND names), the KeBugCheckEx banner line as the debugger printed it in a real
0x124 session, and the seed case's stack (boot-time load of lwfmgr).
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT
from dumpkit.analysis.engine import analyze_parts, analyze_text
from dumpkit.errors import TextParseError
from dumpkit.model import Frame
from dumpkit.text import parse_text


def _f(i, module, symbol=None, trust="cfi", sp=0xffff850429890000):
    return Frame(index=i, instruction=0xfffff80400000000 + i, child_sp=sp + 0x40 * i, module=module, symbol=symbol,
                 offset=0x10, trust=trust)


@pytest.mark.parametrize("text", ["a6!bar+0x10\n", "hello\nfoo!bar+0x10\nbye\n", "01 a6!bar+0x10\n",
                                  "I think it crashed in a6!bar+0x10 when I opened Chrome\n"])
def test_prose_and_lone_frames_are_not_a_stack(text):
    with pytest.raises(TextParseError):
        parse_text(text)


def test_numbered_kc_listing_is_still_a_stack():
    pt = parse_text("00 nt!KeBugCheckEx\n01 a6!bar+0x10\n")
    assert [f.module for f in pt.frames] == ["nt", "a6"]


def test_cli_noise_is_incomplete_not_blame(tmp_path):
    p = tmp_path / "mail.txt"
    p.write_text("the crash is in a6!bar+0x10, please help\nfoo!bar+0x10\n", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "dumpkit", "text", str(p)], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Culprit" not in r.stdout and "CULPRIT" not in r.stdout and "incomplete" in r.stderr


def test_scanned_frames_never_give_the_followup_while_unwound_frames_exist():
    # 0x4A on a triage dump without the nt image: only KeBugCheckEx is unwound, the rest was found by scanning
    frames = [_f(0, "nt", "KeBugCheckEx", "context"), _f(1, "win32k", None, "scan"), _f(2, "nt", None, "scan")]
    a = analyze_parts(0x4A, [0x7ffb12345678, 2, 0, 0xffff850429891b00], frames, process_name="svchost.exe",
                      source="dump")
    assert a.module_name == "nt" and a.image_name == "ntkrnlmp.exe"
    assert a.culprit.module != "win32k.sys"
    assert any("scanning" in w for w in a.warnings)
    text = a.render_text()
    assert "Following frames may be wrong." in text and "[found by stack scan]" in text
    # text input: WinDbg's own listing is taken as printed (trust 'text'), the rule does not apply
    assert analyze_parts(0x4A, [0, 2, 0, 0], [_f(0, "nt", "KeBugCheckEx", "text"), _f(1, "win32k", None, "text")],
                         source="text").module_name == "win32k"


def test_kebugcheckex_prologue_is_not_a_fault():
    # the banner line the debugger prints on opening a dump (real 0x124 session): KeBugCheckEx's own first store
    text = ("nt!KeBugCheckEx:\n"
            "fffff805`055fd5c0 48894c2408      mov     qword ptr [rsp+8],rcx ss:0018:ffffb905`7d8473a0=0000000000000124\n"
            "IRQL_GT_ZERO_AT_SYSTEM_SERVICE (4a)\nArguments:\nArg1: 00007ffb12345678\nArg2: 0000000000000002\n"
            "Arg3: 0000000000000000\nArg4: ffffb9057d847b00\n\n"
            "STACK_TEXT:  \nffffb905`7d847398 fffff805`057bb53f     : nt!KeBugCheckEx\n"
            "ffffb905`7d8473a0 fffff805`057bbfa9     : nt!KiBugCheckDispatch+0x69\n"
            "ffffb905`7d8474e0 00007ffb`12345678     : nt!KiSystemServiceExit+0x1f4\n")
    a = analyze_text(text)
    assert a.fault is None or a.fault.access is None
    assert "write" not in (a.fault.explanation if a.fault else "").lower()


def test_stack_command_names_the_context_address(real_triage):
    import dumpkit
    with dumpkit.open(real_triage) as d:
        a = dumpkit.analyze(d, offline=True)
    assert a.stack_command == ".cxr 0xffff850429891720 ; kb"      # P4, the CONTEXT record
    assert a.module_name == "amdppm" and a.image_name == "amdppm.sys"


def test_start4_only_for_boot_time_loads():
    third = [_f(0, "nt", "KeBugCheckEx"), _f(1, "nt", "KiPageFault"), _f(2, "acmefilt", None),
             _f(3, "nt", "ExpWorkerThread")]
    a = analyze_parts(0xD1, [0, 2, 0, 0xfffff80400000002], third)
    assert a.culprit.module == "acmefilt.sys"
    assert not any("Start=4" in r for r in a.remediation)
    assert any("acmefilt.sys" in r and ("Update" in r or "update" in r) for r in a.remediation)
    boot = third[:3] + [_f(3, "nt", "IopLoadDriver"), _f(4, "nt", "IopInitializeBootDrivers")]
    a = analyze_parts(0xD1, [0, 2, 0, 0xfffff80400000002], boot)
    assert any("Start=4" in r for r in a.remediation)
    assert any(r.startswith("Warning") and "boot-start" in r for r in a.remediation)


def test_user_mode_bucket_keeps_the_image_extension():
    text = ("*******************************************************************************\n"
            "*                                                                             *\n"
            "*                        Exception Analysis                                   *\n"
            "*                                                                             *\n"
            "*******************************************************************************\n\n"
            "PROCESS_NAME:  AccessV.exe\n\nEXCEPTION_CODE_STR:  c0000005\n\n"
            "EXCEPTION_PARAMETER1:  0000000000000001\n\nEXCEPTION_PARAMETER2:  0000000000000000\n\n"
            "STACK_TEXT:  \n00000099`09b0fe70 00007ff6`6d7714ec     : AccessV!main+0x101\n"
            "00000099`09b0fed0 00007ffc`89e4257d     : AccessV!__scrt_common_main_seh+0x10c\n"
            "00000099`09b0ff10 00007ffc`8a9caa58     : kernel32!BaseThreadInitThunk+0x1d\n"
            "00000099`09b0ff40 00000000`00000000     : ntdll!RtlUserThreadStart+0x28\n")
    a = analyze_text(text)
    # a public user-mode report of the same program: NULL_POINTER_WRITE_c0000005_AccessV.exe!main
    assert a.failure_bucket_id == "NULL_POINTER_WRITE_c0000005_AccessV.exe!main"
    assert a.failure_id_hash == "{1c59fc7c-49ca-7215-0582-702a810098c4}"
    assert (a.module_name, a.image_name) == ("AccessV", "AccessV.exe")


def test_no_syscall_trap_frame_on_a_system_thread(real_triage):
    # the real dump's thread is a system thread (its stack ends in nt!KiStartSystemThread, .expected.md):
    # no system-service trap frame with a user-mode CS exists on it
    import dumpkit
    from dumpkit.analysis.dumpsource import syscall_trap_frame
    with dumpkit.open(real_triage) as d:
        assert syscall_trap_frame(d) is None
