"""x64 CONTEXT and KTRAP_FRAME decoding: kept as an import path; the layouts live in
:mod:`dumpkit.arch.x64.frames` (defined once there)."""
from __future__ import annotations

from ..arch.x64.frames import (CONTEXT_AMD64, CONTEXT_SIZE, KEXCEPTION_FRAME_SIZE,  # noqa: F401
                               KTRAP_FRAME_SIZE, X64Context, context_from_bytes, context_from_trap_frame,
                               looks_like_context, nonvolatiles_from_exception_frame)

__all__ = ["CONTEXT_SIZE", "KTRAP_FRAME_SIZE", "KEXCEPTION_FRAME_SIZE", "CONTEXT_AMD64", "X64Context",
           "context_from_bytes", "context_from_trap_frame", "looks_like_context",
           "nonvolatiles_from_exception_frame"]
