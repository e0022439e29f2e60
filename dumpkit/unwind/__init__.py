"""x64 stack unwinding: UNWIND_INFO execution, trap frames, validated scanning, WinDbg-style stacks."""
from __future__ import annotations

from .contexts import context_from_bytes, context_from_trap_frame
from .walker import StackMemory, StackWalker, ends_with_call, walk_stack
from .x64 import UnwindStep, unwind_leaf, virtual_unwind

__all__ = ["walk_stack", "StackWalker", "StackMemory", "ends_with_call", "virtual_unwind", "unwind_leaf",
           "UnwindStep", "context_from_bytes", "context_from_trap_frame"]
