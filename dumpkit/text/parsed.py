"""What the WinDbg-text parser produces: :class:`ParsedText` and :class:`DisasmLine`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from dumpkit.model import Context, ModuleList, Stack


@dataclass
class DisasmLine:
    """One disassembly line as WinDbg prints it (``u``, ``r``, ``.trap``, FAULTING_IP).

    ``nt!KeAcquireSpinLockRaiseToDpc+0x53:`` /
    ``fffff807`1e81e643 f0480fba2b00    lock bts qword ptr [rbx],0 ds:00000000`00000000=????????????????``
    """

    address: int
    opcode: bytes                           # the instruction bytes WinDbg showed
    text: str                               # 'lock bts qword ptr [rbx],0'
    label: Optional[str] = None             # 'nt!KeAcquireSpinLockRaiseToDpc+0x53'
    segment: Optional[str] = None           # 'ds' / 'ss' / ... of the effective-address annotation
    effective_address: Optional[int] = None  # from 'ds:00000000`00000000=...'
    memory_value: Optional[str] = None      # what followed '=': '????????' (unreadable) or a value
    where: str = ""                         # field/block it came from: 'TRAP_FRAME', 'CONTEXT', 'FAULTING_IP', ...
    line: int = 0                           # 1-based line number in the input

    @property
    def mnemonic(self) -> str:
        parts = self.text.split()
        while parts and parts[0] in ("lock", "rep", "repe", "repz", "repne", "repnz"):
            parts = parts[1:]
        return parts[0] if parts else ""

    @property
    def unreadable(self) -> bool:
        """WinDbg printed ``=????`` : the memory at the effective address could not be read."""
        return bool(self.memory_value) and set(self.memory_value or "") <= {"?"}

    def to_json(self) -> dict:
        return {
            "address": hex(self.address),
            "opcode": self.opcode.hex(),
            "text": self.text,
            "label": self.label,
            "effective_address": None if self.effective_address is None else hex(self.effective_address),
            "memory_value": self.memory_value,
            "where": self.where,
        }

    def __repr__(self) -> str:
        ea = f" ea={self.effective_address:#x}" if self.effective_address is not None else ""
        return f"<DisasmLine {self.address:#x} {self.opcode.hex()} {self.text!r}{ea}>"


@dataclass
class ParsedText:
    """Everything usable found in pasted WinDbg text.

    ``kinds`` says what was recognised: 'analyze' (an ``!analyze`` report), 'stack'
    (``k``-family listing or STACK_TEXT), 'modules' (``lm``), 'registers' (``r``,
    ``.trap``, ``.cxr``), 'disasm', 'bugcheck'.
    """

    kinds: List[str] = field(default_factory=list)
    bugcheck_code: Optional[int] = None          # as printed (0x1000007e stays 0x1000007e)
    bugcheck_name: Optional[str] = None          # 'SYSTEM_THREAD_EXCEPTION_NOT_HANDLED'
    parameters: List[int] = field(default_factory=list)
    parameter_text: List[str] = field(default_factory=list)   # text after 'ArgN: value,'
    frames: Stack = field(default_factory=Stack)
    stacks: List[Stack] = field(default_factory=list)          # every stack listing found
    modules: ModuleList = field(default_factory=ModuleList)
    module_versions: Dict[str, Dict[str, str]] = field(default_factory=dict)  # lmv fields by module name
    registers: Optional[Context] = None          # the context of the faulting instruction, when shown
    contexts: Dict[str, Context] = field(default_factory=dict)  # 'TRAP_FRAME', 'CONTEXT', 'r', ...
    faulting_instruction: Optional[DisasmLine] = None
    disassembly: List[DisasmLine] = field(default_factory=list)
    fields: Dict[str, str] = field(default_factory=dict)       # 'PROCESS_NAME' -> 'System'
    blocks: Dict[str, List[str]] = field(default_factory=dict)  # multi-line field bodies
    key_values: Dict[str, str] = field(default_factory=dict)   # KEY_VALUES_STRING Key/Value pairs
    exception: Dict[str, object] = field(default_factory=dict)  # code, address, parameters, access text
    debug_session_time: Optional[str] = None
    system_uptime: Optional[str] = None
    process_name: Optional[str] = None
    followup_owner: Optional[str] = None         # 'Followup: MachineOwner'
    setup_failures: List[str] = field(default_factory=list)    # services whose setupapi section failed
    warnings: List[str] = field(default_factory=list)
    user_mode: bool = False                      # the report is a user-mode 'Exception Analysis'
    image_files: Dict[str, str] = field(default_factory=dict)   # module name (lower) -> image file named in the input
    chkimg_errors: Dict[str, int] = field(default_factory=dict)  # '!chkimg' summary: image -> bytes that differ

    # convenience --------------------------------------------------------
    def field(self, name: str, default: Optional[str] = None) -> Optional[str]:
        """A ``KEY: value`` field (first line of its value), case-insensitive key."""
        return self.fields.get(name.upper(), default)

    @property
    def symbol_name(self) -> Optional[str]:
        return self.fields.get("SYMBOL_NAME")

    @property
    def failure_bucket_id(self) -> Optional[str]:
        return self.fields.get("FAILURE_BUCKET_ID") or self.key_values.get("Failure.Bucket")

    @property
    def failure_id_hash(self) -> Optional[str]:
        return self.fields.get("FAILURE_ID_HASH") or self.key_values.get("Failure.Hash")

    def to_json(self) -> dict:
        return {
            "kinds": list(self.kinds),
            "bugcheck_code": None if self.bugcheck_code is None else hex(self.bugcheck_code),
            "bugcheck_name": self.bugcheck_name,
            "parameters": [hex(p) for p in self.parameters],
            "frames": [f.to_json() for f in self.frames],
            "modules": [m.to_json() for m in self.modules],
            "registers": None if self.registers is None else self.registers.to_json(),
            "faulting_instruction": None if self.faulting_instruction is None else self.faulting_instruction.to_json(),
            "fields": dict(self.fields),
            "key_values": dict(self.key_values),
            "debug_session_time": self.debug_session_time,
            "system_uptime": self.system_uptime,
            "process_name": self.process_name,
            "warnings": list(self.warnings),
        }

    def __repr__(self) -> str:
        bc = f" bugcheck={self.bugcheck_code:#x}" if self.bugcheck_code is not None else ""
        return (f"<ParsedText {'+'.join(self.kinds) or 'empty'}{bc} {len(self.frames)} frames "
                f"{len(self.modules)} modules {len(self.fields)} fields>")
