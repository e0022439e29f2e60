"""Register contexts for the walker.

CONTEXT and KTRAP_FRAME decoding lives in :mod:`dumpkit.kernel.context` (the
kernel layer's reader); it is re-exported here so unwinder users find it next
to :func:`dumpkit.unwind.walk_stack`.  Only the walker's own helper (the
volatile registers of a trap frame) is defined here.
"""
from __future__ import annotations

import struct
from typing import Dict

from ..errors import CorruptDumpError
from ..kernel.context import (CONTEXT_SIZE, KTRAP_FRAME_SIZE, context_from_bytes,  # noqa: F401
                              context_from_trap_frame)

_TRAP_VOL = (("rax", 0x30), ("rcx", 0x38), ("rdx", 0x40), ("r8", 0x48), ("r9", 0x50), ("r10", 0x58),
             ("r11", 0x60))


def trap_frame_volatiles(data: bytes) -> Dict[str, int]:
    """The volatile registers (rax, rcx, rdx, r8-r11) saved in a KTRAP_FRAME."""
    if len(data) < 0x68:
        raise CorruptDumpError("KTRAP_FRAME too short for the volatile registers", expected="0x68 bytes")
    return {name: struct.unpack_from("<Q", data, off)[0] for name, off in _TRAP_VOL}


__all__ = ["context_from_bytes", "context_from_trap_frame", "trap_frame_volatiles", "CONTEXT_SIZE",
           "KTRAP_FRAME_SIZE"]
