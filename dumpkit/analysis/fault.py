"""The faulting instruction: what did the CPU try to do, and why did it fail?

:func:`explain_fault` combines what is known about a fault:

* the bug check and its parameters (the referenced address, read/write/execute flags,
  the IRQL, the exception code and its parameters);
* the instruction at the faulting IP: raw bytes from a dump (disassembled with capstone,
  x64), or WinDbg's disassembly line (its opcode bytes are re-decoded the same way and its
  ``ds:<address>=????`` annotation gives the effective address);
* the register context (``.trap``/``.cxr``/``r``) to evaluate ``base + index*scale + disp``;

and says in plain words what happened: a NULL or near-NULL dereference through which
register, a non-canonical or invalid address, a user address touched from kernel mode,
a ``lock`` instruction on a NULL lock pointer, pageable memory or code at raised IRQL...

Trap frames only save the volatile registers: when the pointer register is a
non-volatile one (rbx, rsi, rdi, r12-r15) its trap-frame value is not trusted and the
address reported by the bug check wins.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence

from dumpkit.analysis.bucket import (FAST_FAIL_NAMES, PAGE_FAULT_CODES, STATUS_ACCESS_VIOLATION, base_code,
                                    is_exception_bugcheck)
from dumpkit.kernel.roles import roles_for
from dumpkit.errors import DumpError

__all__ = ["FaultInfo", "MemoryOperand", "DecodedInstruction", "decode_instruction", "explain_fault",
           "classify_address", "is_canonical"]

_GP_SENTINEL = 0xFFFFFFFFFFFFFFFF   # exception parameter 2 for a #GP (non-canonical) access violation
USER_LIMIT = 0x0000_8000_0000_0000
NULL_PAGE_LIMIT = 0x10000           # Windows never maps the first 64 KiB
_IRQL_NAMES = {0: "PASSIVE_LEVEL", 1: "APC_LEVEL", 2: "DISPATCH_LEVEL"}
_LOCK_FUNCS = ("SpinLock", "PushLock", "QueuedSpinLock", "InStackQueued", "ExAcquireRundown", "KeAcquireGuardedMutex",
               "ExAcquireFastMutex", "ExAcquireResource", "KeWaitForSingleObject", "KeSetEvent")
_VOLATILE = {"rax", "rcx", "rdx", "r8", "r9", "r10", "r11", "rsp", "rbp", "rip"}

# 8/16/32-bit register names -> the 64-bit register that holds them
_FULL_REG: Dict[str, str] = {}
for _r in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp"):
    _FULL_REG["r" + _r] = "r" + _r
    _FULL_REG["e" + _r] = "r" + _r
    _FULL_REG[_r] = "r" + _r
for _r in ("a", "b", "c", "d"):
    _FULL_REG[_r + "l"] = "r" + _r + "x"
for _n in range(8, 16):
    for _suf in ("", "d", "w", "b"):
        _FULL_REG[f"r{_n}{_suf}"] = f"r{_n}"
_FULL_REG.update({"rip": "rip", "eip": "rip", "sil": "rsi", "dil": "rdi", "bpl": "rbp", "spl": "rsp"})
# and back to the x86 names, for messages about a 32-bit crash
_X86_NAME = {"r" + _r: "e" + _r for _r in ("ax", "bx", "cx", "dx", "si", "di", "bp", "sp", "ip")}


@dataclass
class MemoryOperand:
    """A decoded memory operand ``seg:[base + index*scale + disp]``."""

    base: Optional[str]
    index: Optional[str]
    scale: int
    disp: int
    segment: Optional[str] = None
    size: int = 0
    access: str = ""           # 'read', 'write', 'read-write' from the instruction's semantics
    text: str = ""

    def evaluate(self, regs: Mapping[str, int], ip_next: Optional[int] = None) -> Optional[int]:
        """base + index*scale + disp with ``regs``; None when a register is unknown."""
        total = self.disp
        if self.base:
            if self.base in ("rip", "eip"):
                if ip_next is None:
                    return None
                total += ip_next
            else:
                full = _FULL_REG.get(self.base, self.base)
                if full not in regs:
                    return None
                total += regs[full]
        if self.index:
            full = _FULL_REG.get(self.index, self.index)
            if full not in regs:
                return None
            total += regs[full] * self.scale
        return total & 0xFFFFFFFFFFFFFFFF


@dataclass
class DecodedInstruction:
    address: int
    size: int
    mnemonic: str
    op_str: str
    prefixes: List[str] = field(default_factory=list)
    memory: List[MemoryOperand] = field(default_factory=list)
    is_branch: bool = False

    @property
    def text(self) -> str:
        return f"{self.mnemonic} {self.op_str}".strip()

    @property
    def locked(self) -> bool:
        return "lock" in self.prefixes or self.mnemonic.startswith("lock ")


_CS: Dict[int, Any] = {}
USER_LIMIT32 = 0x8000_0000          # x86: MmSystemRangeStart without /3GB


def _capstone(bits: int = 64) -> Any:
    cs = _CS.get(bits)
    if cs is None:
        import capstone
        cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32 if bits == 32 else capstone.CS_MODE_64)
        cs.detail = True
        _CS[bits] = cs
    return cs


def decode_instruction(code: bytes, address: int = 0, arch: str = "x64",
                       bits: Optional[int] = None) -> Optional[DecodedInstruction]:
    """Decode the first instruction of ``code`` with capstone: x64 by default, x86 (32-bit mode)
    for ``arch='x86'`` or ``bits=32``; another ``arch`` is decoded by its
    ``dumpkit.arch.<arch>.fault`` module.  None if undecodable."""
    if not code:
        return None
    if bits is None:
        bits = 32 if arch == "x86" else 64
    if arch not in ("x64", "x86"):
        try:
            from ..arch import by_name
            return by_name(arch).part("fault").decode_instruction(code, address)
        except DumpError:
            return None
    try:
        import capstone
        from capstone import x86_const as X
        cs = _capstone(bits)
        insn = next(cs.disasm(bytes(code[:16]), address & (0xFFFFFFFF if bits == 32 else 0xFFFFFFFFFFFFFFFF), 1),
                    None)
    except (ImportError, StopIteration):
        return None
    except Exception:  # capstone raises CsError on odd input
        return None
    if insn is None:
        return None
    mnemonic = insn.mnemonic
    prefixes = []
    if mnemonic.startswith("lock "):
        prefixes.append("lock")
        mnemonic = mnemonic[5:]
    try:
        pfx = list(insn.prefix)
    except Exception:
        pfx = []
    if 0xF0 in pfx and "lock" not in prefixes:
        prefixes.append("lock")
    mems: List[MemoryOperand] = []
    try:
        for op in insn.operands:
            if op.type != X.X86_OP_MEM:
                continue
            m = op.mem
            base = insn.reg_name(m.base) if m.base else None
            index = insn.reg_name(m.index) if m.index else None
            seg = insn.reg_name(m.segment) if m.segment else None
            acc = getattr(op, "access", 0)
            access = {1: "read", 2: "write", 3: "read-write"}.get(acc & 3, "")
            mems.append(MemoryOperand(base, index, m.scale or 1, m.disp, seg, op.size, access))
    except Exception:
        mems = []
    groups = set()
    try:
        groups = set(insn.groups)
    except Exception:
        pass
    is_branch = bool(groups & {capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET})
    # the text of a memory operand, for messages
    op_parts = [p.strip() for p in insn.op_str.split(",")]
    mem_texts = [p for p in op_parts if "[" in p]
    for mo, t in zip(mems, mem_texts):
        mo.text = t
    return DecodedInstruction(insn.address, insn.size, mnemonic, insn.op_str, prefixes, mems, is_branch)


def is_canonical(addr: int) -> bool:
    """x64 canonical form: bits 63..47 all equal."""
    top = (addr & 0xFFFFFFFFFFFFFFFF) >> 47
    return top == 0 or top == 0x1FFFF


def classify_address(addr: int, bits: int = 64) -> str:
    """'null', 'near_null', 'non_canonical', 'user', 'kernel' (``bits=32``: the x86 split at 0x80000000)."""
    a = addr & 0xFFFFFFFFFFFFFFFF
    if a == 0:
        return "null"
    if a < NULL_PAGE_LIMIT:
        return "near_null"
    if bits == 32:
        return "user" if a < USER_LIMIT32 else "kernel"
    if not is_canonical(a):
        return "non_canonical"
    if a < USER_LIMIT:
        return "user"
    return "kernel"


def _pattern_note(addr: int) -> str:
    b = (addr & 0xFFFFFFFFFFFFFFFF).to_bytes(8, "little")
    high = b[2:]
    if len(set(high)) == 1 and high[0] not in (0x00, 0xFF):
        ch = chr(high[0]) if 0x20 < high[0] < 0x7F else None
        show = f" ('{ch}')" if ch else ""
        return (f" The value is made of repeated 0x{high[0]:02x}{show} bytes: a fill pattern or data overwrote the "
                f"pointer (memory corruption, e.g. a buffer overrun into the structure holding it).")
    return ""


@dataclass
class FaultInfo:
    """What the faulting instruction did.  ``to_json()`` gives the contract's ``fault`` object."""

    kind: str                             # see explain_fault()
    access: Optional[str] = None          # 'read' | 'write' | 'execute'
    address: Optional[int] = None         # the referenced address
    register: Optional[str] = None        # register that held the bad pointer
    register_value: Optional[int] = None
    instruction: Optional[str] = None     # 'lock bts qword ptr [rbx], 0'
    ip: Optional[int] = None
    symbol: Optional[str] = None          # 'nt!KeAcquireSpinLockRaiseToDpc+0x53'
    irql: Optional[int] = None
    region: Optional[str] = None          # 'Paged pool' when WinDbg said so
    explanation: str = ""
    details: List[str] = field(default_factory=list)
    sources: List[str] = field(default_factory=list)   # where the facts came from

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "access": self.access,
            "address": None if self.address is None else hex(self.address),
            "register": self.register,
            "instruction": self.instruction,
            "explanation": self.explanation,
            "ip": None if self.ip is None else hex(self.ip),
            "symbol": self.symbol,
            "irql": self.irql,
            "details": list(self.details),
        }

    def __repr__(self) -> str:
        a = f" {self.access}" if self.access else ""
        ad = f" @ {self.address:#x}" if self.address is not None else ""
        return f"<FaultInfo {self.kind}{a}{ad} reg={self.register} {self.instruction!r}>"


def _irql_text(irql: int) -> str:
    return f"IRQL {irql} ({_IRQL_NAMES[irql]})" if irql in _IRQL_NAMES else f"IRQL {irql}"


def _access_from_bugcheck(b: int, p: Sequence[int], param_text: Sequence[str]) -> Optional[str]:
    if b in (0xA, 0xD1):
        if p[2] & 8:
            return "execute"
        return "write" if p[2] & 1 else "read"
    if b == 0x50:
        txt = param_text[1] if len(param_text) > 1 else ""
        if "value 0 = read operation" in txt:      # pre-Windows 10 meaning of P2
            return "write" if p[1] & 1 else "read"
        if p[1] & 0x10:
            return "execute"
        return "write" if p[1] & 2 else "read"
    return None


def explain_fault(*, bugcheck_code: Optional[int] = None, parameters: Sequence[int] = (),
                  parameter_text: Sequence[str] = (), context: Any = None,
                  instruction_bytes: Optional[bytes] = None, ip: Optional[int] = None,
                  disasm: Any = None, symbol: Optional[str] = None, irql: Optional[int] = None,
                  exception: Optional[Mapping[str, Any]] = None, ip_in_paged_code: Optional[bool] = None,
                  region: Optional[str] = None, bits: Optional[int] = None) -> FaultInfo:
    """Explain the fault from whatever is known (every argument is optional).

    ``context``: a :class:`dumpkit.model.Context` (its ``valid`` set tells which registers
    can be trusted); ``instruction_bytes`` + ``ip``: bytes at the faulting IP (from a dump);
    ``disasm``: a :class:`dumpkit.text.DisasmLine` (WinDbg's line); ``exception``: dict
    with 'code', 'parameter1' (0 read, 1 write, 8 execute), 'parameter2' (address).

    ``kind`` is one of: ``null_lock`` (lock operation on a NULL/near-NULL lock pointer),
    ``null_deref``, ``near_null_deref``, ``non_canonical``, ``user_address``,
    ``paged_at_raised_irql``, ``invalid_kernel_address``, ``null_ip``, ``paged_ip``,
    ``bad_ip``, ``security_check``, ``access_violation`` (address unknown), ``unknown``.

    ``bits``: 32 for an x86 crash (decoded in 32-bit mode, user space below 0x80000000);
    by default taken from the context (an x86 context, or ``eip`` without ``rip``).
    """
    p = list(parameters)[:4]
    p += [0] * (4 - len(p))
    b = base_code(bugcheck_code) if bugcheck_code is not None else None
    # the parameters' roles (symbols/bugchecks.json), used for the page-fault and exception bug checks
    roles = roles_for(b) if b is not None and (b in PAGE_FAULT_CODES or is_exception_bugcheck(b)) else None
    exc = dict(exception or {})
    fi = FaultInfo(kind="unknown")
    regs: Dict[str, int] = {}
    valid: set = set()
    if context is not None:
        regs = dict(getattr(context, "regs", {}) or {})
        valid = set(getattr(context, "valid", set(regs)) or set())
    if bits is None:
        bits = 32 if getattr(context, "arch", None) == "x86" or ("eip" in regs and "rip" not in regs) else 64
    if bits == 32:
        # the operand logic below works on 64-bit register names: view eax.. as rax..
        regs = {_FULL_REG.get(k, k): v for k, v in regs.items()}
        valid = {_FULL_REG.get(k, k) for k in valid}

    # --- the IP ------------------------------------------------------------------------------
    if ip is None and disasm is not None:
        ip = disasm.address
    if ip is None and regs.get("rip"):
        ip = regs["rip"]
    if ip is None and roles is not None:
        ip = roles.value("ip", p) or None
    fi.ip = ip
    fi.symbol = symbol or (disasm.label if disasm is not None and getattr(disasm, "label", None) else None)
    if fi.symbol is None and exc.get("symbol"):
        fi.symbol = str(exc["symbol"])
    if irql is None and roles is not None and roles.index("irql"):
        irql = (roles.value("irql", p) or 0) & 0xFF           # 0xA/0xD1: P2
    fi.irql = irql

    # --- the instruction ------------------------------------------------------------------------
    code = instruction_bytes
    if code is None and disasm is not None and getattr(disasm, "opcode", None):
        code = disasm.opcode
        fi.sources.append("opcode bytes from the WinDbg disassembly line")
    elif code is not None:
        fi.sources.append("instruction bytes at the faulting IP")
    arch_name = "x86" if bits == 32 else (getattr(context, "arch", "x64") or "x64")
    dec = decode_instruction(code, ip or 0, arch_name, bits) if code else None
    if dec is not None:
        fi.instruction = dec.text if not dec.locked else f"lock {dec.text}"
    elif disasm is not None:
        fi.instruction = disasm.text

    # --- access -----------------------------------------------------------------------------------
    access = _access_from_bugcheck(b, p, parameter_text) if b is not None else None
    if access:
        fi.sources.append(f"access type from bug check 0x{b:X} parameters")
    if access is None and exc.get("parameter1") is not None and (exc.get("code") in (None, STATUS_ACCESS_VIOLATION)):
        access = {0: "read", 1: "write", 8: "execute"}.get(int(exc["parameter1"]))  # type: ignore[arg-type]
    if access is None and exc.get("attempt"):
        a = str(exc["attempt"])
        access = "read" if a.startswith("read") else "write" if a.startswith("write") else "execute"
    mem: Optional[MemoryOperand] = None
    if dec is not None and dec.memory:
        mem = dec.memory[0]
        if len(dec.memory) > 1 and disasm is not None and disasm.effective_address is not None:
            for mo in dec.memory:
                if mo.evaluate(regs, (ip or 0) + dec.size) == disasm.effective_address:
                    mem = mo
        if access is None and mem.access:
            access = "write" if "write" in mem.access else "read"
    fi.access = access

    # --- the address ------------------------------------------------------------------------------
    reported: Optional[int] = None
    if roles is not None and b in PAGE_FAULT_CODES and roles.index("address"):
        reported = roles.value("address", p)
        fi.sources.append(f"referenced address from bug check parameter {roles.index('address')}")
    elif exc.get("parameter2") is not None and exc.get("parameter2") != _GP_SENTINEL:
        reported = int(exc["parameter2"])  # type: ignore[arg-type]
    elif exc.get("memory_address") is not None and exc.get("memory_address") != _GP_SENTINEL:
        reported = int(exc["memory_address"])  # type: ignore[arg-type]
    gp = exc.get("parameter2") == _GP_SENTINEL or exc.get("memory_address") == _GP_SENTINEL
    computed: Optional[int] = None
    reg_trusted = True
    if mem is not None:
        computed = mem.evaluate(regs, (ip or 0) + (dec.size if dec else 0)) if regs else None
        base_full = _FULL_REG.get(mem.base or "", mem.base)
        if base_full and valid and base_full not in valid:
            reg_trusted = False
    shown = disasm.effective_address if disasm is not None else None
    address = reported
    if address is None:
        address = computed if (computed is not None and reg_trusted) else shown if shown is not None else computed
    fi.address = address
    fi.region = region or (str(exc["memory_region"]) if exc.get("memory_region") else None)

    # --- the register that held the pointer ---------------------------------------------------------
    if mem is not None and mem.base and mem.base not in ("rip", "eip"):
        full = _FULL_REG.get(mem.base, mem.base)
        fi.register = _X86_NAME.get(full, full) if bits == 32 else full
        if full in regs:
            fi.register_value = regs[full]
        elif address is not None and mem.index is None:
            fi.register_value = (address - mem.disp) & 0xFFFFFFFFFFFFFFFF
            fi.details.append(f"{fi.register} = {fi.register_value:#x}, worked back from the effective address "
                              f"{address:#x} WinDbg printed (minus displacement {mem.disp:#x})")
        if fi.register_value is not None and not reg_trusted:
            fi.details.append(f"{fi.register} is not saved in a trap frame: its value there may be stale; "
                              f"the address reported by the bug check is used")
    elif mem is not None and mem.index:
        full = _FULL_REG.get(mem.index, mem.index)
        fi.register = _X86_NAME.get(full, full) if bits == 32 else full

    _classify(fi, b, p, dec, mem, gp, ip_in_paged_code, computed, bits)
    fi.explanation = _explain(fi, b, p, dec, mem, gp)
    return fi


def _classify(fi: FaultInfo, b: Optional[int], p: Sequence[int], dec: Optional[DecodedInstruction],
              mem: Optional[MemoryOperand], gp: bool, paged_ip: Optional[bool], computed: Optional[int],
              bits: int = 64) -> None:
    if b == 0x139 or (dec is not None and dec.mnemonic == "int" and dec.op_str.strip().lower() in ("0x29", "29h")):
        fi.kind = "security_check"
        return
    addr = fi.address
    if fi.access == "execute" or (b in (0xA, 0xD1) and addr is not None and fi.ip is not None and addr == fi.ip):
        fi.access = "execute"
        if addr is None:
            addr = fi.ip
            fi.address = addr
        if addr is not None and addr < NULL_PAGE_LIMIT:
            fi.kind = "null_ip"
        elif paged_ip or (b in (0xA, 0xD1) and addr is not None and addr == fi.ip):
            fi.kind = "paged_ip"
        else:
            fi.kind = "bad_ip"
        return
    if gp and addr is None and computed is not None:
        fi.address = addr = computed
    if addr is None:
        fi.kind = "access_violation" if (b in PAGE_FAULT_CODES or is_exception_bugcheck(b) or fi.instruction
                                         ) else "unknown"
        return
    cls = classify_address(addr, bits)
    lockish = (dec is not None and dec.locked) or any(k in (fi.symbol or "") for k in _LOCK_FUNCS)
    if cls in ("null", "near_null") and lockish:
        fi.kind = "null_lock"
    elif cls == "null":
        fi.kind = "null_deref"
    elif cls == "near_null":
        fi.kind = "near_null_deref"
    elif cls == "non_canonical":
        fi.kind = "non_canonical"
    elif gp:
        # a #GP whose computed address is canonical: not a bad pointer shape
        fi.kind = "general_protection"
    elif cls == "user":
        fi.kind = "user_address"
    elif fi.irql is not None and fi.irql >= 2 and (fi.region or "").lower().startswith("paged"):
        fi.kind = "paged_at_raised_irql"
    else:
        fi.kind = "invalid_kernel_address"


def _explain(fi: FaultInfo, b: Optional[int], p: Sequence[int], dec: Optional[DecodedInstruction],
             mem: Optional[MemoryOperand], gp: bool) -> str:
    where = f" at {fi.symbol}" if fi.symbol else (f" at {fi.ip:#x}" if fi.ip is not None else "")
    instr = f"`{fi.instruction}`" if fi.instruction else "the faulting instruction"
    verb = {"read": "read from", "write": "write to", "execute": "execute at"}.get(fi.access or "", "access")
    reg = fi.register
    irql = f" at {_irql_text(fi.irql)}" if fi.irql is not None else ""
    a = fi.address
    k = fi.kind
    if k == "security_check":
        code = p[0] if b == 0x139 else None
        name = FAST_FAIL_NAMES.get(code) if code is not None else None
        what = f" (fast-fail code {code:#x}{', ' + name if name else ''})" if code is not None else ""
        return (f"A run-time integrity check failed{where}{what}: the kernel found a corrupted structure and stopped "
                f"on purpose (int 29h). The code that damaged the structure ran earlier; look at the first non-OS "
                f"frame below the check (usually the driver that owned or freed the memory).")
    if k == "null_lock":
        fn = (fi.symbol or "").split("+")[0]
        regtxt = f"the lock pointer in {reg} is NULL" if reg and a == 0 else \
            (f"the lock pointer in {reg} is {fi.register_value:#x}, inside the never-mapped first 64 KiB"
             if reg and fi.register_value is not None else "the lock pointer is NULL or near NULL")
        raise_txt = ""
        if "RaiseToDpc" in fn or "SpinLock" in fn:
            raise_txt = (" Acquiring a spin lock raises the IRQL to DISPATCH_LEVEL, where a page fault cannot be "
                         "resolved, so this is fatal.")
        return (f"{instr}{where} tried to take a lock (a locked read-modify-write) at address {a:#x}: {regtxt}. "
                f"{fn or 'The lock routine'} was handed a NULL lock by its caller.{raise_txt} "
                f"The fault is the caller's: find who passed the lock (the first non-OS frame below).")
    if k in ("null_deref", "near_null_deref"):
        through = f" through {reg}" if reg else ""
        if k == "null_deref":
            head = f"NULL pointer dereference{through}: {instr}{where} tried to {verb} address 0"
        else:
            off = f" (offset {mem.disp:#x} from a NULL base)" if mem is not None and mem.disp and \
                fi.register_value in (0, None) else ""
            head = (f"Near-NULL pointer dereference{through}: {instr}{where} tried to {verb} {a:#x}{off}, "
                    f"a field of a structure whose pointer is NULL")
        return head + f"{irql}. The code that loaded {reg or 'the pointer'} used it without checking it."
    if k == "non_canonical":
        shown = f" {a:#x}" if a is not None else ""
        how = " (a general-protection fault: the CPU does not report the address, it was computed from the registers)" \
            if gp else ""
        return (f"Invalid (non-canonical) address{shown}: {instr}{where} tried to {verb} an address that cannot exist "
                f"on x64{how}. The pointer{(' in ' + reg) if reg else ''} is garbage." + _pattern_note(a or 0))
    if k == "general_protection":
        shown = f" {a:#x}" if a is not None else ""
        return (f"General-protection fault: {instr}{where} tried to {verb} address{shown}{irql}. The CPU does not "
                f"report the address of a #GP; the one shown is computed from the registers and is a canonical "
                f"kernel address, so the pointer's shape is not the cause: look at what the address maps "
                f"(device or I/O memory, a protected or unmapped region) and at the values the caller passed"
                f"{(' in ' + reg) if reg else ''}.")
    if k == "user_address":
        return (f"{instr}{where} tried to {verb} user-mode address {a:#x} from kernel mode{irql}: the driver used a "
                f"user pointer without probing/locking it, or one that is not valid in the current process.")
    if k == "paged_at_raised_irql":
        return (f"{instr}{where} tried to {verb} {a:#x} ({fi.region}){irql}: pageable memory touched at DISPATCH_LEVEL "
                f"or above, where it cannot be paged in. The driver must use non-paged memory or lower the IRQL.")
    if k == "invalid_kernel_address":
        page = " It is the first byte of a page: probably a buffer overrun into the next, unmapped page." \
            if a is not None and a & 0xFFF == 0 else ""
        reg_txt = f" through {reg}" if reg else ""
        region = f" ({fi.region})" if fi.region else ""
        return (f"{instr}{where} tried to {verb} kernel address {a:#x}{region}{reg_txt}{irql}, which is not valid: "
                f"freed or unmapped memory, or a stale/corrupt pointer.{page}")
    if k == "null_ip":
        return (f"The CPU tried to execute at {fi.address:#x}{irql}: a call through a NULL (or near-NULL) function "
                f"pointer; the caller is the frame below.")
    if k == "paged_ip":
        return (f"The faulting address is the instruction itself{where}{irql}: code in a pageable section ran at "
                f"raised IRQL and was not resident. The driver must not mark this code pageable.")
    if k == "bad_ip":
        return (f"The CPU tried to execute at {fi.address:#x}{irql}, which is not valid code: a corrupt function pointer "
                f"or return address, or a call into an unloaded driver.")
    if k == "access_violation":
        return (f"An access violation{where}{irql}; the faulting address is not known from this input "
                f"(paste the .trap/.cxr register dump or `r` with the faulting instruction to decode it).")
    return f"Fault{where}: not enough information to decode it."
