"""Register dumps (``r``, ``.trap``, ``.cxr``) and disassembly lines.

::

    rax=0000000001580702 rbx=0000000000000000 rcx=0000000000000000
     r8=0000000000000002  r9=ffff8001acd00000 r10=ffff80019be00300
    iopl=0         nv up ei pl zr na po nc
    cs=0010  ss=0018  ds=002b  es=002b  fs=0053  gs=002b             efl=00050206
    myfault+0x12d0:
    fffff805`736312d0 8b03            mov     eax,dword ptr [rbx] ds:00000000`00000000=????????
"""
from __future__ import annotations

import re
from typing import Dict, Optional

from ._common import parse_hex
from .parsed import DisasmLine

_REG_NAMES = {
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "rip", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "efl", "cs", "ss", "ds", "es", "fs", "gs", "iopl",
    "eax", "ebx", "ecx", "edx", "esi", "edi", "ebp", "esp", "eip",
}
_PAIR_RE = re.compile(r"(?<![\w.])([a-z][a-z0-9]{1,3})=([0-9a-fA-F`]{1,17})(?![\w])")

_DISASM_RE = re.compile(
    r"^\s*(?:[0-9a-fA-F]{4}:)?(?P<addr>[0-9a-fA-F]{8}`[0-9a-fA-F]{8}|[0-9a-fA-F]{8,16})\s+"
    r"(?P<bytes>(?:[0-9a-fA-F]{2}){1,15})\s+(?P<text>[a-z][a-z0-9]{0,15}(?:\s.*)?)$")
_EA_RE = re.compile(
    r"(?<!\s)\s+(?P<seg>[c-gs]s):(?:[0-9a-fA-F]{4}:)?(?P<ea>[0-9a-fA-F]{8}`[0-9a-fA-F]{8}|[0-9a-fA-F]{1,16})"
    r"=(?P<val>\S*)\s*$")
_LABEL_RE = re.compile(r"^\s*(?P<label>[A-Za-z_][\w.\-]*(?:![^\s:]+(?:::[^\s:]+)*)?(?:\+0x[0-9a-fA-F]+)?):\s*$")
_PREFIXES = {"lock", "rep", "repe", "repz", "repne", "repnz", "data16", "addr32"}


def register_pairs(line: str) -> Dict[str, int]:
    """``name=value`` register pairs on one line (only real register names)."""
    out: Dict[str, int] = {}
    for name, val in _PAIR_RE.findall(line):
        if name in _REG_NAMES:
            v = parse_hex(val)
            if v is not None:
                out[name] = v
    return out


def is_register_line(line: str) -> bool:
    """A line of a register dump: two or more register pairs, or the ``iopl=`` flags line."""
    s = line.strip()
    if s.startswith("iopl="):
        return True
    return len(register_pairs(s)) >= 2


def label_line(line: str) -> Optional[str]:
    """``nt!KeAcquireSpinLockRaiseToDpc+0x53:`` -> the label, else None."""
    m = _LABEL_RE.match(line)
    if not m:
        return None
    label = m.group("label")
    # a bare ALL_CAPS word with a colon is a field name, not a code label
    if "!" not in label and "+" not in label and label.upper() == label:
        return None
    return label


def parse_disasm_line(line: str, label: Optional[str] = None, where: str = "", lineno: int = 0
                      ) -> Optional[DisasmLine]:
    """One ``address opcode-bytes instruction [seg:ea=value]`` line, else None."""
    m = _DISASM_RE.match(line)
    if not m:
        return None
    text = m.group("text").strip()
    words = text.split()
    mn = next((w for w in words if w not in _PREFIXES), "")
    if not mn or (len(mn) >= 8 and re.fullmatch(r"[0-9a-f]+", mn)):
        return None
    if re.fullmatch(r"[0-9a-f]{8,16}", words[0]):
        return None
    addr = parse_hex(m.group("addr"))
    if addr is None:
        return None
    try:
        opcode = bytes.fromhex(m.group("bytes"))
    except ValueError:
        return None
    seg = ea = val = None
    em = _EA_RE.search(text)
    if em:
        seg = em.group("seg")
        ea = parse_hex(em.group("ea"))
        val = em.group("val") or None
        text = text[:em.start()].rstrip()
    text = re.sub(r"\s+", " ", text)
    return DisasmLine(address=addr, opcode=opcode, text=text, label=label, segment=seg, effective_address=ea,
                      memory_value=val, where=where, line=lineno)
