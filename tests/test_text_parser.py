"""WinDbg text parser: stacks in every k-variant, !analyze fields, lm/lmv, registers, disassembly.

Inputs are real WinDbg output: the seed cases (tests/data/text, from shared/seeds/cases.md),
the four real !analyze -v reports (../shared/data/real/analyze) and lines quoted from public
reports; expected values are read off that text by hand.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import shared_path
from dumpkit.errors import TextParseError
from dumpkit.text import parse_frame_line, parse_stack, parse_text

DATA = Path(__file__).parent / "data" / "text"


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_case2_k_stack():
    st = parse_stack(read("case2_stack.txt"))
    assert len(st) == 17
    assert [f.index for f in st] == list(range(17))
    f8, f9 = st[8], st[9]
    assert (f8.module, f8.symbol, f8.offset) == ("ndis", "NdisFDeregisterFilterDriver", 0x47)
    assert (f9.module, f9.symbol, f9.offset) == ("lwfmgr", None, 0x5167)
    assert f9.child_sp == 0xffffec01df207570 and f9.return_address == 0xfffff8041c7db49a
    assert f9.instruction == 0xfffff8041c7d5167          # the previous frame's RetAddr
    assert st[1].symbol == "PspSystemThreadStartup$filt$0"
    assert all(f.trust == "text" and f.symbol_source == "text" for f in st)
    assert st[16].return_address == 0


def test_stack_without_frame_numbers_and_noise():
    text = """*** WARNING: Unable to verify timestamp for lwfmgr.sys
Child-SP          RetAddr               Call Site
ffffec01`df207530 fffff804`1c7d5167     ndis!NdisFDeregisterFilterDriver+0x47
WARNING: Stack unwind information not available. Following frames may be wrong.
ffffec01`df207570 fffff804`1c7db49a     lwfmgr+0x5167
"""
    pt = parse_text(text)
    assert [f.call_site for f in pt.frames] == ["ndis!NdisFDeregisterFilterDriver+0x47", "lwfmgr+0x5167"]
    assert any("Unable to verify timestamp" in w for w in pt.warnings)
    assert any("Stack unwind information" in w for w in pt.warnings)


def test_mail_quoted_markdown_escaped_and_wrapped():
    # quoted by a mail client, backticks escaped by markdown, one frame wrapped after RetAddr
    text = """> 07 ffffec01\\`df2073a0 fffff804\\`1c02a2b7     nt!KiPageFault+0x42e
> 08 ffffec01\\`df207530 fffff804\\`1c7d5167
>     ndis!NdisFDeregisterFilterDriver+0x47
> 09 ffffec01\\`df207570 fffff804\\`1c7db49a     lwfmgr+0x5167
"""
    st = parse_text(text).frames
    assert [f.index for f in st] == [7, 8, 9]
    assert st[1].call_site == "ndis!NdisFDeregisterFilterDriver+0x47"
    assert st[1].child_sp == 0xffffec01df207530


def test_kv_with_args_and_trapframe():
    line = ("02 ffffc60b`87e8ed40 fffff805`736312d0     : ffffc983`656e6f4e ffff8001`acdbc010 ffffc983`00000003 "
            "00000000`00000880 : nt!KiPageFault+0x474 (TrapFrame @ ffffc60b`87e8ed40)")
    fl = parse_frame_line(line)
    assert fl is not None
    assert fl.index == 2 and fl.trap_frame == 0xffffc60b87e8ed40
    assert fl.args == [0xffffc983656e6f4e, 0xffff8001acdbc010, 0xffffc98300000003, 0x880]
    assert fl.call_site == "nt!KiPageFault+0x474"
    st = parse_text(line).frames
    assert st[0].trap_frame == 0xffffc60b87e8ed40


def test_x86_kb_with_source_lines():
    # from a public x86 !analyze (STACK_TEXT with [file @ line] suffixes)
    text = """STACK_TEXT:  
8ba0ede4 82076708 00000050 8ba10000 00000000 nt!KeBugCheckEx [minkernel\\ntos\\ke\\i386\\procstat.asm @ 114] 
8ba0f024 86692866 a2bfd314 8ba0f094 0000850a nt!memcpy+0x33 [minkernel\\crts\\crtw32\\string\\i386\\memcpy.asm @ 213] 
WARNING: Stack unwind information not available. Following frames may be wrong.
8ba0f270 ac526f96 adfb9000 a2bfd0e8 8269b9b0 WwanUsbMp+0x1c15f
"""
    st = parse_text(text).frames
    assert [f.call_site for f in st] == ["nt!KeBugCheckEx", "nt!memcpy+0x33", "WwanUsbMp+0x1c15f"]
    assert st[2].child_sp == 0x8ba0f270 and st[2].return_address == 0xac526f96


def test_kP_parameters_and_inline_and_kc():
    text = """ # Child-SP          RetAddr           Call Site
00 fffff804`1a2b3c40 fffff804`1a2b3d50 nt!KeBugCheckEx(
			unsigned long BugCheckCode = 0x50,
			unsigned int64 BugCheckParameter1 = 0)
01 (Inline Function) --------`-------- nt!MiSystemFault+0x10
02 fffff804`1a2b3c60 fffff804`1a2b3d70 nt!MmAccessFault+0x29c
"""
    st = parse_text(text).frames
    assert [f.call_site for f in st] == ["nt!KeBugCheckEx", "nt!MiSystemFault+0x10", "nt!MmAccessFault+0x29c"]
    kc = parse_text(read("case1_mail.txt")).frames
    assert [f.call_site for f in kc] == ["nt!KeAcquireSpinLockRaiseToDpc+0x53", "ks!KsUpdateCameraStreamingConsent"]


def test_case1_faulting_instruction_and_times():
    pt = parse_text(read("case1_mail.txt"))
    fi = pt.faulting_instruction
    assert fi is not None
    assert fi.label == "nt!KeAcquireSpinLockRaiseToDpc+0x53"
    assert fi.address == 0xfffff8071e81e643
    assert fi.opcode == bytes.fromhex("f0480fba2b00")
    assert fi.text == "lock bts qword ptr [rbx],0"
    assert fi.effective_address == 0 and fi.segment == "ds" and fi.unreadable
    assert pt.debug_session_time == "Mon Jun 26 08:07:55.743 2023 (UTC + 8:00)"
    assert pt.system_uptime == "0 days 0:00:40.641"


def test_case2_setupapi_failures_are_collected():
    pt = parse_text(read("case2_stack.txt") + "\n" + read("case2_setupapi.txt"))
    assert pt.setup_failures == ["lwfmgr", "vwifimf"]
    assert len(pt.frames) == 17


def test_registers_and_lm():
    text = """0: kd> r
rax=4141414141414139 rbx=0000000000006000 rcx=0000000002530001
rdx=4141414141414141 rsi=ffffe009a68dc000 rdi=ffffe009a68dffe0
rip=fffff8076624f3d4 rsp=ffffa1088a4aee30 rbp=0000000000000000
 r8=3be6192c0436d050  r9=0000000000000000 r10=ffffe0099a6002d0
r11=ffffe009a68dc000 r12=ffffe009a68dfb00 r13=ffffe0099a6002c0
r14=0000000000000001 r15=ffffe0099a6002c0
iopl=0         nv up ei pl nz na po nc
cs=0010  ss=0018  ds=002b  es=002b  fs=0053  gs=002b             efl=00050206
nt!RtlpHpVsFreeChunkInsert+0x1b4:
fffff807`6624f3d4 3300            xor     eax,dword ptr [rax] ds:002b:41414141`41414139=????????
0: kd> lmv m lwfmgr
start             end                 module name
fffff804`1c7d0000 fffff804`1c7e2000   lwfmgr     (deferred)
    Image path: \\SystemRoot\\system32\\DRIVERS\\lwfmgr.sys
    Image name: lwfmgr.sys
    Timestamp:        Tue Mar  1 10:20:30 2016 (56D4FB2E)
    CheckSum:         0001A2B3
    ImageSize:        00012000
    CompanyName:      Example Corp
fffff804`0c800000 fffff804`0d846000   nt         (pdb symbols)          c:\\sym\\ntkrnlmp.pdb\\0123\\ntkrnlmp.pdb
"""
    pt = parse_text(text)
    r = pt.registers
    assert r is not None and r.source == "text:r"
    assert r["rax"] == 0x4141414141414139 and r["r8"] == 0x3be6192c0436d050 and r["rip"] == 0xfffff8076624f3d4
    assert r["efl"] == 0x50206 and r["cs"] == 0x10
    assert pt.faulting_instruction.effective_address == 0x4141414141414139
    assert pt.faulting_instruction.where == "r"
    mods = pt.modules
    assert len(mods) == 2
    lw = mods.by_name("lwfmgr")
    assert lw.name == "lwfmgr.sys" and lw.base == 0xfffff8041c7d0000 and lw.size == 0x12000
    assert lw.timestamp == 0x56D4FB2E and lw.checksum == 0x1A2B3
    assert lw.path == "\\SystemRoot\\system32\\DRIVERS\\lwfmgr.sys"
    assert mods.by_name("nt").name == "ntkrnlmp.exe"
    assert mods.find(0xfffff8041c7d5167) is lw
    assert pt.module_versions["lwfmgr"]["CompanyName"] == "Example Corp"
    assert not pt.frames          # lm rows and register lines are not frames


ANALYZE = [
    ("01_0x7E_AV_EvilDriver_unknown_function.txt", 0x7E, "SYSTEM_THREAD_EXCEPTION_NOT_HANDLED",
     [0xffffffffc0000005, 0xfffff8076624f3d4, 0xffffa1088a4aebf8, 0xffffa1088a4ae410], 13, "System", "CONTEXT"),
    ("02_0xD1_AV_myfault_notmyfault.txt", 0xD1, "DRIVER_IRQL_NOT_LESS_OR_EQUAL",
     [0xffff8001acdc6010, 2, 0, 0xfffff805736312d0], 12, "notmyfault64.exe", "TRAP_FRAME"),
    ("03_0x50_AV_W_null_Driver.txt", 0x50, "PAGE_FAULT_IN_NONPAGED_AREA",
     [0xffffe5068d8a4000, 2, 0xfffff801197f1d1e, 0], 15, "System", "TRAP_FRAME"),
    ("04_0x139_INVALID_BALANCED_TREE.txt", 0x139, "KERNEL_SECURITY_CHECK_FAILURE",
     [0x1d, 0xffffb88f1487ec30, 0xffffb88f1487eb88, 0], 18, "System", "TRAP_FRAME"),
]


@pytest.mark.parametrize("name,code,bcname,params,nframes,process,ctx", ANALYZE)
def test_real_analyze_reports(name, code, bcname, params, nframes, process, ctx):
    pt = parse_text(shared_path("analyze", name).read_text(encoding="utf-8"))
    assert pt.bugcheck_code == code and pt.bugcheck_name == bcname
    assert pt.parameters == params
    assert len(pt.frames) == nframes
    assert pt.process_name == process
    assert pt.registers is not None and pt.registers.source == f"text:{ctx}"
    assert pt.faulting_instruction is not None and pt.faulting_instruction.address == pt.registers["rip"]
    assert pt.fields["BUGCHECK_CODE"] == f"{code:x}"
    assert pt.followup_owner == "MachineOwner"
    assert pt.key_values["Failure.Bucket"] == pt.fields["FAILURE_BUCKET_ID"]
    assert "analyze" in pt.kinds and "stack" in pt.kinds


def test_real_exception_record_and_addresses():
    pt = parse_text(shared_path("analyze", "01_0x7E_AV_EvilDriver_unknown_function.txt").read_text())
    assert pt.exception["code"] == 0xC0000005
    assert pt.exception["parameters"] == [0, 0xffffffffffffffff]
    assert pt.exception["attempt"] == "read from"
    assert pt.frames[3].call_site == "EvilDriver+0x115b"
    pt2 = parse_text(shared_path("analyze", "02_0xD1_AV_myfault_notmyfault.txt").read_text())
    assert pt2.exception["memory_address"] == 0xffff8001acdc6010
    assert pt2.exception["memory_region"] == "Paged pool"
    # the trap frame's non-volatile registers are flagged as unreliable
    assert "rbx" not in pt2.registers.valid and "rax" in pt2.registers.valid
    assert pt2.registers.address == 0xffffc60b87e8ed40
    assert pt2.frames[-1].module is None and pt2.frames[-1].instruction == 0x7ffcaa52f454


def test_short_bugcheck_forms():
    pt = parse_text("BugCheck 3B, {c0000005, fffff88001e2536a, fffff88009b25190, 0}\n"
                    "Probably caused by : NETIO.SYS ( NETIO!StreamDataPermitEndOfStream+a )")
    assert pt.bugcheck_code == 0x3B
    assert pt.parameters == [0xc0000005, 0xfffff88001e2536a, 0xfffff88009b25190, 0]
    pt = parse_text("*** Fatal System Error: 0x00000050\n"
                    "                       (0xFFFFF78000001000,0x0000000000000000,0xFFFFF80528F293CB,0x0000000000000002)\n")
    assert pt.bugcheck_code == 0x50 and pt.parameters[2] == 0xFFFFF80528F293CB


@pytest.mark.parametrize("text", ["", "   \n\n", "hello world\nthis is not windbg", "\x00\x01\x02", "你好，请看附件。"])
def test_nothing_usable_raises_text_parse_error(text):
    with pytest.raises(TextParseError) as ei:
        parse_text(text, source="mail.txt")
    assert "mail.txt" in str(ei.value)


def test_partial_input_parses_what_it_can():
    # a report cut in the middle of STACK_TEXT, with Chinese mail text around it
    text = ("您好，蓝屏信息如下：\nBUGCHECK_CODE:  d1\nBUGCHECK_P1: 0\nSTACK_TEXT:  \n"
            "ffffc60b`87e8ebf8 fffff805`4d62bfa9     : 00000000`0000000a ffff8001`acdc6010 00000000`00000002 0000")
    pt = parse_text(text)
    assert pt.bugcheck_code == 0xD1
    assert pt.parameters == []          # P2..P4 missing: not guessed
    assert pt.fields["BUGCHECK_P1"] == "0"


def test_bytes_input_utf16():
    raw = read("case2_stack.txt").encode("utf-16")
    assert len(parse_text(raw).frames) == 17


def test_compiler_split_symbol_frame():
    # from a public dokany 0x50 report (quoted, markdown-escaped)
    line = ("> ffffd000\\`23d2bfd0 fffff800\\`bf8c8e91 : 00000000\\`00000000 ffffe000\\`4a8459f0 ffffd000\\`23d2c220 "
            "fffff800\\`bf90a0af : nt! ?? ::FNODOBFM::\\`string'+0x10295")
    (f,) = parse_text(line).frames
    assert f.module == "nt" and f.symbol == "?? ::FNODOBFM::`string'" and f.offset == 0x10295
