"""The ``frames`` part of the x86 architecture: the hooks :class:`dumpkit.arch.Architecture` calls,
over the layouts in :mod:`.context`."""
from __future__ import annotations

from typing import Optional

from .context import (CONTEXT_X86_SIZE, KTRAP_FRAME_X86_SIZE, X86Context, context_from_bytes32,
                      context_from_trap_frame32, looks_like_context32, looks_like_trap_frame32)

CONTEXT_SIZE = CONTEXT_X86_SIZE
KTRAP_FRAME_SIZE = KTRAP_FRAME_X86_SIZE


def context_from_bytes(data: bytes, source: str = "context", address: Optional[int] = None,
                       path: Optional[str] = None) -> X86Context:
    return context_from_bytes32(data, source, address, path)


def context_from_trap_frame(data: bytes, address: Optional[int] = None, path: Optional[str] = None) -> X86Context:
    return context_from_trap_frame32(data, address, path)


def looks_like_context(data: bytes) -> bool:
    return looks_like_context32(data)


def plausible_trap_frame(data: bytes, off: int = 0) -> bool:
    return looks_like_trap_frame32(bytes(data[off:off + KTRAP_FRAME_X86_SIZE]))


def context_sp(raw: bytes) -> int:
    return int.from_bytes(raw[0xC4:0xC8], "little") if len(raw) >= 0xC8 else 0
