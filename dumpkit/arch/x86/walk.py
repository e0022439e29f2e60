"""The ``walk`` part of the x86 architecture.

x86 frames need state the generic strategy loop does not carry (the callee's parameter
bytes for the next ``.raSearchStart``, the return-address slot behind ChildEBP), so the
architecture supplies its whole walk: :func:`walk_stack` (:mod:`.walker`), which
:func:`dumpkit.unwind.walker.walk_stack` hands x86 contexts to.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from ...model import Context, ModuleList, Stack, VirtualReader
from ...unwind.walker import DEFAULT_READ_BUDGET
from .walker import DEFAULT_SCAN_BYTES, walk_stack32

STRATEGIES = ()          # the generic loop is not used for x86 (see walk_stack)
RULES = None


def walk_stack(reader: VirtualReader, context: Context, modules: ModuleList, images: Any = None,
               resolver: Any = None, max_frames: int = 256, scan_bytes: Optional[int] = None, *,
               stack_range: Optional[Tuple[int, int]] = None, read_budget: int = DEFAULT_READ_BUDGET,
               **_ignored: Any) -> Stack:
    from .context import X86Context
    if not isinstance(context, X86Context):
        context = X86Context(context.regs, context.source, context.address, context.valid)
    return walk_stack32(reader, context, modules, images=images, resolver=resolver, max_frames=max_frames,
                        scan_bytes=scan_bytes or DEFAULT_SCAN_BYTES, stack_range=stack_range,
                        read_budget=read_budget)
