"""Epilog unwinding on real Microsoft/MSVC code, checked against a capstone-decoded reference.

At every instruction boundary of every epilog, the unwinder's answer must equal
what executing the remaining instructions (decoded by capstone from the image's
bytes: add/lea rsp, pops, ret/jmp) would do.  For version-2 records the
unwinder never looks at the bytes (it uses UWOP_EPILOG descriptors), so this is
an independent check of the descriptor decoding too.
"""
from __future__ import annotations

import struct

import pytest
from capstone import CS_ARCH_X86, CS_MODE_64, Cs

from dumpkit.model import GPR_NAMES
from dumpkit.pe import PEImage
from dumpkit.pe.unwindinfo import epilogs_v2
from dumpkit.unwind import virtual_unwind
from tests.conftest import shared_path

BASE = 0xFFFFF80700000000
S = 0xFFFFC00000010000
CS = Cs(CS_ARCH_X86, CS_MODE_64)


def stack_read(va: int, size: int) -> bytes:
    """Every qword of the fake stack holds a value derived from its address."""
    out = b""
    for a in range(va, va + size, 8):
        out += struct.pack("<Q", 0x5A5A000000000000 | (a & 0xFFFFFFFF))
    return out[:size]


def reference(img: PEImage, rva: int, regs: dict):
    """Execute add/lea rsp, pop, ret/jmp from ``rva`` by capstone decoding; None if something else comes."""
    r = dict(regs)
    code = img.read_rva(rva, min(64, img.size_of_image - rva))
    for insn in CS.disasm(code, rva):
        m, ops = insn.mnemonic, insn.op_str
        if m == "pop" and ops in GPR_NAMES:
            r[ops] = struct.unpack("<Q", stack_read(r["rsp"], 8))[0]
            r["rsp"] += 8
        elif m == "add" and ops.startswith("rsp, "):
            r["rsp"] += int(ops[5:], 0)
        elif m == "lea" and ops.startswith("rsp, qword ptr ["):
            inner = ops[len("rsp, qword ptr ["):-1].replace(" ", "")
            reg, _, disp = inner.partition("+")
            r["rsp"] = r[reg] + (int(disp, 0) if disp else 0)
        elif m in ("ret", "jmp"):
            r["rip"] = struct.unpack("<Q", stack_read(r["rsp"], 8))[0]
            r["rsp"] += 8
            return r
        else:
            return None
    return None


def start_regs(pc_rva: int) -> dict:
    regs = {n: 0x1000 + i for i, n in enumerate(GPR_NAMES)}
    regs.update(rip=BASE + pc_rva, rsp=S, rbp=S + 0x200)
    return regs


def check(img: PEImage, pc: int) -> bool:
    regs = start_regs(pc)
    want = reference(img, pc, regs)
    if want is None:
        return False
    got = virtual_unwind(img, BASE, regs, stack_read).regs
    assert {k: got[k] for k in want} == want, f"epilog at {pc:#x}"
    return True


@pytest.mark.parametrize("rel", ["amdppm.sys/c9c030003b000/amdppm.sys", "Wdf01000.sys/a9a9d36ed1000/Wdf01000.sys"])
def test_v2_epilog_descriptors_against_code(rel):
    img = PEImage.from_file(shared_path("symstore", *rel.split("/")))
    checked = 0
    for rf in img.runtime_functions:
        _, info = img.unwind_info_for(rf)
        for start, size in epilogs_v2(info, rf.end):
            pos = start
            for insn in CS.disasm(img.read_rva(start, size), start):
                checked += check(img, pos)
                pos += insn.size
            assert pos == start + size, f"epilog {start:#x}+{size} does not end on an instruction boundary"
    assert checked > (1000 if "Wdf" in rel else 300)


def v1_epilog_positions(img: PEImage, rf):
    """Instruction addresses of each 'add/lea rsp; pop...; ret' tail found by linear disassembly."""
    code = img.read_rva(rf.begin, rf.end - rf.begin)
    insns = list(CS.disasm(code, rf.begin))
    for k, insn in enumerate(insns):
        if insn.mnemonic != "ret":
            continue
        j = k
        while j > 0 and insns[j - 1].mnemonic == "pop":
            j -= 1
        if j > 0 and (insns[j - 1].op_str.startswith("rsp, ") and insns[j - 1].mnemonic in ("add", "lea")):
            j -= 1
        yield [i.address for i in insns[j:k + 1]]


@pytest.mark.parametrize("where", ["msvc/xcpt4.exe", "msvc/nested_collided.exe",
                                   "symstore/amdppm.sys/c9c030003b000/amdppm.sys"])
def test_v1_epilog_detection_against_code(where):
    img = PEImage.from_file(shared_path(*where.split("/")))
    checked = 0
    for rf in img.runtime_functions:
        _, info = img.unwind_info_for(rf)
        if info.version != 1 or info.chained is not None:
            continue
        for positions in v1_epilog_positions(img, rf):
            for pc in positions:
                if (pc - rf.begin) >= info.prolog_size:
                    checked += check(img, pc)
    assert checked > 50
