"""The ``fault`` part of the x86 architecture: the faulting instruction decoded in 32-bit mode
(the operand and address rules of :mod:`dumpkit.analysis.fault`, with ``bits=32``)."""
from __future__ import annotations

from typing import Any, Optional

from ...analysis.fault import DecodedInstruction, FaultInfo
from ...analysis.fault import decode_instruction as _decode
from ...analysis.fault import explain_fault


def decode_instruction(code: bytes, address: int = 0) -> Optional[DecodedInstruction]:
    return _decode(code, address, "x86", 32)


def decode(code: bytes, ip: int, context: Any = None) -> FaultInfo:
    return explain_fault(instruction_bytes=code, ip=ip, context=context, bits=32)
