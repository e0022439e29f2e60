"""UNWIND_INFO decoding checked against ``llvm-readobj --unwind`` (an independent decoder).

Real MSVC images from ../shared/data/real/msvc, plus a hand-assembled image that
holds every version-1 operation (llvm-readobj 14 cannot read version 2 records:
those are checked by the real-driver parse test and the synthetic unwind tests).
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
from typing import Dict, List, Tuple

import pytest

from dumpkit.model import GPR_NAMES
from dumpkit.pe import PEImage
from dumpkit.pe.unwindinfo import UWOP_NAMES
from tests._pe_synth import (SynthPE, alloc_large, alloc_small, machframe, push, save_nonvol, save_xmm, set_fpreg,
                             unwind_info)
from tests.conftest import shared_path

LLVM = shutil.which("llvm-readobj") or shutil.which("llvm-readobj-14")
needs_llvm = pytest.mark.skipif(LLVM is None, reason="llvm-readobj not installed (Debian package llvm)")


def llvm_unwind(path: str) -> Dict[int, dict]:
    """Parse ``llvm-readobj --unwind`` into {StartAddress VA: record}."""
    out = subprocess.run([LLVM, "--unwind", path], capture_output=True, text=True, timeout=60, check=True).stdout
    recs: Dict[int, dict] = {}
    cur: dict = {}
    in_chained = False
    for line in out.splitlines():
        s = line.strip()
        if s == "RuntimeFunction {":
            cur = {"codes": []}
            in_chained = False
        elif s == "Chained {":
            in_chained = True
            cur["chained"] = {}
        elif m := re.match(r"(StartAddress|EndAddress|UnwindInfoAddress): \((0x[0-9A-Fa-f]+)\)", s):
            target = cur["chained"] if in_chained else cur
            target[m.group(1)] = int(m.group(2), 16)
            if m.group(1) == "StartAddress" and not in_chained:
                recs[int(m.group(2), 16)] = cur
        elif m := re.match(r"(Version|PrologSize|UnwindCodeCount): (\d+)", s):
            cur[m.group(1)] = int(m.group(2))
        elif m := re.match(r"Flags \[ \((0x[0-9a-fA-F]+)\)", s):
            cur["Flags"] = int(m.group(1), 16)
        elif m := re.match(r"FrameRegister: (.*)", s):
            v = m.group(1)
            cur["FrameRegister"] = 0 if v == "-" else int(re.search(r"\((0x[0-9a-fA-F]+)\)", v).group(1), 16)
        elif m := re.match(r"FrameOffset: (.*)", s):
            cur["FrameOffset"] = 0 if m.group(1) == "-" else int(m.group(1), 16)
        elif m := re.match(r"Handler: \((0x[0-9A-Fa-f]+)\)", s):
            cur["Handler"] = int(m.group(1), 16)
        elif m := re.match(r"(0x[0-9A-Fa-f]+): (\w+)\s*(.*)", s):
            fields = dict(kv.split("=", 1) for kv in re.split(r",\s*", m.group(3)) if "=" in kv)
            cur["codes"].append((int(m.group(1), 16), m.group(2), fields))
    return recs


def _mine(img: PEImage, code) -> Tuple[int, str, dict]:
    name = UWOP_NAMES[code.op]
    if code.op == 0:
        f = {"reg": GPR_NAMES[code.info].upper()}
    elif code.op in (1, 2):
        f = {"size": str(code.value)}
    elif code.op in (4, 5):
        f = {"reg": GPR_NAMES[code.info].upper(), "offset": hex(code.value)}
    elif code.op in (8, 9):
        f = {"reg": f"XMM{code.info}", "offset": hex(code.value)}
    elif code.op == 10:
        f = {"errcode": "yes" if code.value else "no"}
    else:
        f = {}
    return code.offset, name, f


def _norm(fields: dict) -> dict:
    out = {}
    for k, v in fields.items():
        out[k] = v.upper() if k == "reg" else (hex(int(v, 16)) if k == "offset" else v)
    return out


def compare_image(path: str, sample: int = 0) -> int:
    img = PEImage.from_file(path)
    ref = llvm_unwind(path)
    rfs = img.runtime_functions
    assert len(rfs) == len(ref)
    checked = 0
    for rf in (rfs if not sample else rfs[::max(1, len(rfs) // sample)]):
        r = ref[img.image_base + rf.begin]
        assert r["EndAddress"] - img.image_base == rf.end
        assert r["UnwindInfoAddress"] - img.image_base == rf.unwind_rva
        _, info = img.unwind_info_for(rf)
        where = f"{path} function {rf.begin:#x}"
        assert (info.version, info.flags, info.prolog_size, info.count) == \
            (r["Version"], r["Flags"], r["PrologSize"], r["UnwindCodeCount"]), where
        assert info.frame_register == r["FrameRegister"] and info.frame_offset == r["FrameOffset"] * 16, where
        fr_name = GPR_NAMES[info.frame_register].upper() if info.frame_register else None
        mine: List[tuple] = []
        for c in info.codes:
            off, name, f = _mine(img, c)
            if c.op == 3:
                f = {"reg": fr_name, "offset": hex(info.frame_offset)}
            mine.append((off, name, f))
        theirs = [(o, n, _norm(f)) for o, n, f in r["codes"]]
        assert mine == theirs, where
        if "Handler" in r:
            assert info.handler_rva == r["Handler"] - img.image_base, where
        if "chained" in r:
            c = r["chained"]
            assert info.chained is not None and (info.chained.begin, info.chained.end, info.chained.unwind_rva) == \
                (c["StartAddress"] - img.image_base, c["EndAddress"] - img.image_base,
                 c["UnwindInfoAddress"] - img.image_base), where
        checked += 1
    return checked


@needs_llvm
@pytest.mark.parametrize("name", ["xcpt4.exe", "nested_collided.exe"])
def test_real_msvc_images_match_llvm(name):
    path = str(shared_path("msvc", name))
    assert compare_image(path) > 30


@needs_llvm
def test_every_v1_op_matches_llvm(tmp_path):
    pe = SynthPE()
    pe.func(0x1000, 0x1100, unwind_info(
        save_xmm(0x20, 6, 0x40) + save_xmm(0x18, 7, 0x12340, far=True) + save_nonvol(0x14, "r12", 0x23450, far=True)
        + save_nonvol(0x10, "rbx", 0x30) + set_fpreg(0xC) + alloc_large(8, 0x158) + alloc_large(6, 0x123458, far=True)
        + push(1, "rbp") + machframe(0, True), 0x20, frame_reg="rbp", frame_off=0x80))
    pe.func(0x1100, 0x1200, unwind_info(alloc_small(4, 0x28) + machframe(0, False), 4, flags=3, handler=0x1500))
    parent_x = struct.unpack_from("<III", pe.build(), 0xC000 + 12)[2]
    pe.func(0x1300, 0x1310, unwind_info(push(1, "rsi"), 1, flags=4, chained=(0x1100, 0x1200, parent_x)))
    pe.func(0x1400, 0x1410, unwind_info(push(1, "r15") + alloc_small(3, 8), 3))
    path = tmp_path / "allops.sys"
    path.write_bytes(pe.build())
    assert compare_image(str(path)) == 4


@pytest.mark.parametrize("store_path", ["amdppm.sys/c9c030003b000/amdppm.sys",
                                        "Wdf01000.sys/a9a9d36ed1000/Wdf01000.sys"])
def test_every_record_of_real_drivers_parses(store_path):
    """Microsoft drivers (v1 and v2 records, chained entries): every UNWIND_INFO decodes."""
    img = PEImage.from_file(shared_path("symstore", *store_path.split("/")))
    versions = set()
    chained = 0
    for rf in img.runtime_functions:
        _, info = img.unwind_info_for(rf)
        versions.add(info.version)
        if info.chained is not None:
            chained += 1
            prim = img.primary_function(rf)
            assert img.unwind_info_for(prim)[1].chained is None
        assert img.function_for(rf.begin) is not None
    assert versions == {1, 2} and chained > 0
    # sorted, non-overlapping at the top level, and found by bisect
    begins = [f.begin for f in img.runtime_functions]
    assert begins == sorted(begins)
