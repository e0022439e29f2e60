"""Faulting-instruction decoding: capstone operand decode + register evaluation + plain words.

Instruction bytes, registers and effective addresses are WinDbg's own lines (the seed case 1,
the real reports in ../shared, public reports quoted inline); the expected effective address is
the one WinDbg printed after ``ds:``.
"""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .conftest import shared_path
from dumpkit.analysis.fault import classify_address, decode_instruction, explain_fault, is_canonical
from dumpkit.model import Context
from dumpkit.text import parse_disasm_line, parse_text


def test_decode_lock_bts():
    d = decode_instruction(bytes.fromhex("f0480fba2b00"), 0xfffff8071e81e643)
    assert d is not None and d.locked and d.mnemonic == "bts" and d.size == 6
    (m,) = d.memory
    assert (m.base, m.index, m.disp, m.size) == ("rbx", None, 0, 8)
    assert "write" in m.access
    assert m.evaluate({"rbx": 0}) == 0


@pytest.mark.parametrize("line,regs,ea", [
    # w7forums 0xA report: mov qword ptr [rax+8],rcx with rax=fffff880209b5d48 -> ds:fffff880`209b5d50
    ("fffff800`02ed7402 48894808 mov qword ptr [rax+8],rcx ds:fffff880`209b5d50=????????????????",
     {"rax": 0xfffff880209b5d48}, 0xfffff880209b5d50),
    # sevenforums 0xA report: cmp byte ptr [rax],18h with rax=1100 -> ds:00000000`00001100
    ("fffff800`02ca4442 803818 cmp byte ptr [rax],18h ds:00000000`00001100=??", {"rax": 0x1100}, 0x1100),
    # real report 03: movaps xmmword ptr [rcx-40h],xmm1 with rcx=ffffe5068d8a4040
    ("fffff801`197f1d1e 0f2949c0        movaps  xmmword ptr [rcx-40h],xmm1 ds:ffffe506`8d8a4000=????????????????????????????????",
     {"rcx": 0xffffe5068d8a4040}, 0xffffe5068d8a4000),
    # dokany 0x50 report: movzx ecx,word ptr [r8+rsi*2]
    ("fffff801`972295fe 410fb70c70      movzx   ecx,word ptr [r8+rsi*2] ds:ffffd000`23d2c500=005c",
     {"r8": 0xffffd00023d2c500, "rsi": 0}, 0xffffd00023d2c500),
])
def test_operand_evaluation_matches_windbg(line, regs, ea):
    dl = parse_disasm_line(line)
    assert dl is not None and dl.effective_address == ea
    d = decode_instruction(dl.opcode, dl.address)
    assert d.memory[0].evaluate(regs, dl.address + d.size) == ea


def test_rip_relative():
    # lea r8,[rip+0xfff9f014] at fffff805`28f293d5 (4c8d0514f0f9ff) -> fffff805`28ec83f0 (win32kbase `u` output)
    d = decode_instruction(bytes.fromhex("4c8d0514f0f9ff"), 0xfffff80528f293d5)
    assert d.memory[0].evaluate({}, 0xfffff80528f293d5 + d.size) == 0xfffff80528ec83f0


def test_case1_null_spin_lock():
    pt = parse_text("nt!KeAcquireSpinLockRaiseToDpc+0x53:\n"
                    "fffff807`1e81e643 f0480fba2b00    lock bts qword ptr [rbx],0 ds:00000000`00000000=????????????????")
    f = explain_fault(disasm=pt.faulting_instruction)
    assert f.kind == "null_lock"
    assert f.register == "rbx" and f.register_value == 0 and f.address == 0
    assert f.instruction == "lock bts qword ptr [rbx], 0"
    assert f.symbol == "nt!KeAcquireSpinLockRaiseToDpc+0x53"
    text = f.explanation
    assert "NULL" in text and "rbx" in text and "lock" in text and "DISPATCH_LEVEL" in text
    assert "KeAcquireSpinLockRaiseToDpc" in text


def test_raw_bytes_with_context_null_and_near_null():
    ctx = Context({"rax": 0, "rip": 0xfffff80000001000}, source="cxr")
    f = explain_fault(bugcheck_code=0x7E, parameters=[0xc0000005, 0xfffff80000001000, 0, 0], context=ctx,
                      instruction_bytes=bytes.fromhex("488b4018"), exception={"parameter1": 0, "parameter2": 0x18})
    assert f.kind == "near_null_deref" and f.address == 0x18 and f.register == "rax" and f.access == "read"
    assert "0x18" in f.explanation
    f = explain_fault(context=Context({"rcx": 0, "rip": 0x1000}), instruction_bytes=bytes.fromhex("8b01"), ip=0x1000)
    assert f.kind == "null_deref" and f.register == "rcx"


def test_null_ip_and_paged_ip():
    f = explain_fault(bugcheck_code=0xD1, parameters=[0, 2, 8, 0])
    assert f.kind == "null_ip" and f.access == "execute"
    f = explain_fault(bugcheck_code=0xD1, parameters=[0xfffff80112345000, 2, 8, 0xfffff80112345000])
    assert f.kind == "paged_ip"


def test_real_reports():
    pt = parse_text(shared_path("analyze", "01_0x7E_AV_EvilDriver_unknown_function.txt").read_text())
    f = explain_fault(bugcheck_code=pt.bugcheck_code, parameters=pt.parameters, context=pt.registers,
                      disasm=pt.faulting_instruction, exception=pt.exception)
    # exception parameter 2 = ffffffffffffffff: a #GP, the address comes from rax
    assert f.kind == "non_canonical" and f.address == 0x4141414141414139 and f.register == "rax"
    assert f.access == "read" and "0x41" in f.explanation
    pt = parse_text(shared_path("analyze", "02_0xD1_AV_myfault_notmyfault.txt").read_text())
    f = explain_fault(bugcheck_code=pt.bugcheck_code, parameters=pt.parameters, context=pt.registers,
                      disasm=pt.faulting_instruction, exception=pt.exception)
    # rbx is not saved in a trap frame: P1 (the referenced address) is the truth
    assert f.address == 0xffff8001acdc6010 and f.kind == "paged_at_raised_irql" and f.irql == 2
    pt = parse_text(shared_path("analyze", "03_0x50_AV_W_null_Driver.txt").read_text())
    f = explain_fault(bugcheck_code=pt.bugcheck_code, parameters=pt.parameters, parameter_text=pt.parameter_text,
                      context=pt.registers, disasm=pt.faulting_instruction, exception=pt.exception)
    assert f.access == "write" and f.address == 0xffffe5068d8a4000 and f.register == "rcx"
    assert f.kind == "invalid_kernel_address" and "first byte of a page" in f.explanation
    pt = parse_text(shared_path("analyze", "04_0x139_INVALID_BALANCED_TREE.txt").read_text())
    f = explain_fault(bugcheck_code=pt.bugcheck_code, parameters=pt.parameters, disasm=pt.faulting_instruction)
    assert f.kind == "security_check" and "INVALID_BALANCED_TREE" in f.explanation


def test_address_classes():
    assert classify_address(0) == "null" and classify_address(0xfff0) == "near_null"
    assert classify_address(0x4141414141414139) == "non_canonical" and not is_canonical(0x4141414141414139)
    assert classify_address(0x7ffcaa52f454) == "user" and classify_address(0xfffff80000000000) == "kernel"


def test_undecodable_bytes_do_not_raise():
    assert decode_instruction(b"") is None
    assert decode_instruction(b"\x0f") is None
    f = explain_fault(instruction_bytes=b"\xff\xff\xff", ip=0x1000)
    assert f.kind in ("unknown", "access_violation")


_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15")


@settings(max_examples=200, deadline=1000)
@given(code=st.binary(min_size=0, max_size=16), ip=st.integers(0, 2**64 - 1),
       regs=st.dictionaries(st.sampled_from(_REGS), st.integers(0, 2**64 - 1)),
       bc=st.sampled_from([None, 0xA, 0xD1, 0x50, 0x7E, 0x1000007E, 0x3B, 0x139, 0x133, 0x9F, 0x1A]),
       params=st.lists(st.integers(0, 2**64 - 1), max_size=4))
def test_explain_fault_never_raises(code, ip, regs, bc, params):
    f = explain_fault(bugcheck_code=bc, parameters=params, context=Context(regs), instruction_bytes=code, ip=ip)
    assert isinstance(f.explanation, str) and f.kind
    f.to_json()
