"""Register contexts for the walker (re-exported from the architecture packages, where the
CONTEXT and KTRAP_FRAME layouts are defined once)."""
from __future__ import annotations

from ..arch.x64.frames import (CONTEXT_SIZE, KTRAP_FRAME_SIZE, context_from_bytes,  # noqa: F401
                               context_from_trap_frame, trap_frame_volatiles)

__all__ = ["context_from_bytes", "context_from_trap_frame", "trap_frame_volatiles", "CONTEXT_SIZE",
           "KTRAP_FRAME_SIZE"]
