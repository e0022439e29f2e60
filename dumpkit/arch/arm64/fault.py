"""ARM64 fault decoding: the instruction at the faulting PC, with its memory operand, for the
analysis's plain-words explanation ("a load through x19, which is NULL").

Register names are normalised to the context's: ``w8`` -> ``x8``, ``x29`` -> ``fp``,
``x30`` -> ``lr``, ``wsp`` -> ``sp``.  The access comes from the mnemonic (loads read,
stores write, atomics and exclusive pairs do both).
"""
from __future__ import annotations

from typing import Any, List, Optional

_CS: Any = None
_ALIASES = {"x29": "fp", "w29": "fp", "x30": "lr", "w30": "lr", "wsp": "sp"}
_RMW = ("ldadd", "ldclr", "ldeor", "ldset", "ldsmax", "ldsmin", "ldumax", "ldumin", "swp", "cas")


def reg_name(name: Optional[str]) -> Optional[str]:
    """The context's name for an A64 register operand."""
    if not name:
        return None
    n = name.lower()
    if n in _ALIASES:
        return _ALIASES[n]
    if n[0] == "w" and n[1:].isdigit():
        return "x" + n[1:]
    return n


def _access(mnemonic: str) -> str:
    m = mnemonic.lower()
    if m.startswith(_RMW):
        return "read-write"
    if m.startswith(("ld", "prfm")):
        return "read"
    if m.startswith("st"):
        return "write"
    return ""


def _capstone() -> Any:
    global _CS
    if _CS is None:
        import capstone
        cs = capstone.Cs(capstone.CS_ARCH_ARM64, capstone.CS_MODE_ARM)
        cs.detail = True
        _CS = cs
    return _CS


def decode_instruction(code: bytes, address: int = 0) -> Any:
    """Decode the A64 instruction at the start of ``code``: an
    :class:`dumpkit.analysis.fault.DecodedInstruction`, or None when undecodable."""
    from ...analysis.fault import DecodedInstruction, MemoryOperand
    if not code or len(code) < 4:
        return None
    try:
        import capstone
        from capstone import arm64_const as A
        insn = next(_capstone().disasm(bytes(code[:4]), address & 0xFFFFFFFFFFFFFFFF, 1), None)
    except (ImportError, StopIteration):
        return None
    except Exception:  # noqa: BLE001 - capstone raises CsError on odd input
        return None
    if insn is None:
        return None
    mems: List[Any] = []
    access = _access(insn.mnemonic)
    try:
        for op in insn.operands:
            if op.type != A.ARM64_OP_MEM:
                continue
            m = op.mem
            base = reg_name(insn.reg_name(m.base)) if m.base else None
            index = reg_name(insn.reg_name(m.index)) if m.index else None
            scale = 1
            sh = getattr(op, "shift", None)
            if index and sh is not None and sh.type == A.ARM64_SFT_LSL and sh.value:
                scale = 1 << sh.value
            size = 0
            mems.append(MemoryOperand(base, index, scale, m.disp, None, size, access))
    except Exception:  # noqa: BLE001 - an operand capstone cannot describe: no memory operand
        mems = []
    part = insn.op_str[insn.op_str.find("["):] if "[" in insn.op_str else ""
    for mo in mems:
        mo.text = part
    groups = set()
    try:
        groups = set(insn.groups)
    except Exception:  # noqa: BLE001
        pass
    is_branch = bool(groups & {capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET}) or \
        insn.mnemonic.lower() in ("b", "bl", "br", "blr", "ret", "cbz", "cbnz", "tbz", "tbnz") or \
        insn.mnemonic.lower().startswith("b.")
    return DecodedInstruction(insn.address, insn.size, insn.mnemonic, insn.op_str, [], mems, is_branch)


