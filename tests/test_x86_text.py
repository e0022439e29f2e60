"""Pasted x86 WinDbg text (8-digit addresses, ``ChildEBP RetAddr`` stacks, x86 ``r`` registers)
goes through the same analysis as a dump.

Truth from outside: ``tests/data/x86/myfault_8e_x86.txt`` is real WinDbg output (sources in
``tests/data/x86/README.md``): its frames are asserted as WinDbg printed them.  The
emulated paste carries the emulator's register values; the fault decode must find the
register and address the emulator faulted on (``fixtures.emulate32``: [ecx+8], ecx =
0xC0DE0000).
"""
from __future__ import annotations

from pathlib import Path

import dumpkit
from dumpkit.arch.x86.context import X86Context
from dumpkit.text import parse_text

DATA = Path(__file__).parent / "data" / "x86"


def test_real_x86_stack_text_frames_as_windbg_printed_them():
    pt = parse_text((DATA / "myfault_8e_x86.txt").read_text())
    assert pt.bugcheck_code == 0x8E
    fr = pt.frames
    assert len(fr) == 12
    assert (fr[0].child_sp, fr[0].return_address, fr[0].call_site) == (0x9444F6B4, 0x828BA08C, "nt!KeBugCheckEx+0x1e")
    assert (fr[3].child_sp, fr[3].return_address, fr[3].call_site) == (0x9444FB44, 0x92C70A79, "nt!KiTrap03+0xb8")
    assert fr[4].call_site == "myfault+0xa79" and fr[4].instruction == 0x92C70A79
    assert fr[11].return_address == 0 and fr[11].instruction == 0x772C70B4


def test_real_x86_text_blames_the_driver_below_the_trap_handler():
    a = dumpkit.analyze((DATA / "myfault_8e_x86.txt").read_text())
    assert a.culprit.module == "myfault.sys"
    assert a.module_name == "myfault"
    assert a.fault.symbol == "myfault+0xa79"       # the frame below nt!KiTrap03, not the dispatcher
    assert not any("ntkrnl" in v.module for v in a.victims)


def test_x86_register_dump_is_an_x86_context():
    pt = parse_text((DATA / "emulated_8e_paste.txt").read_text())
    ctx = pt.contexts["TRAP_FRAME"]
    assert isinstance(ctx, X86Context)
    assert (ctx.eip, ctx.esp, ctx.ecx, ctx.eflags, ctx.cs) == (0x8F801002, 0x8B7FFE1C, 0xC0DE0000, 0x10202, 8)
    assert {"eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip"} <= ctx.valid
    assert pt.registers is ctx
    assert pt.frames[0].child_sp == 0x8B7FFD78 and pt.frames[2].call_site == "nt!KiTrap0E+0x37"


def test_x86_fault_is_decoded_in_32_bit_mode_with_the_x86_address_split():
    a = dumpkit.analyze((DATA / "emulated_8e_paste.txt").read_text())
    f = a.fault
    assert f.instruction == "add eax, dword ptr [ecx + 8]"
    assert (f.register, f.address, f.access) == ("ecx", 0xC0DE0008, "read")
    assert f.kind == "invalid_kernel_address"          # 0xc0de0008 is kernel space on x86 (>= 0x80000000)
    assert a.culprit.module == "drv32.sys" and a.fault.symbol == "drv32!DrvTouch+0x2"


def test_32bit_decode_differs_from_64bit_where_it_must():
    from dumpkit.analysis.fault import classify_address, decode_instruction
    # 0x40 is 'inc eax' on x86 but a REX prefix on x64
    assert decode_instruction(b"\x40\x8b\x01", 0x8F801000, bits=32).text == "inc eax"
    assert decode_instruction(b"\x40\x8b\x01", 0x8F801000).mnemonic == "mov"
    assert classify_address(0xC0DE0008, 32) == "kernel" and classify_address(0x7FFE0000, 32) == "user"
