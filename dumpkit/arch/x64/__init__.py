"""x64 (AMD64, MachineImageType 0x8664).

* ``frames``: CONTEXT, KTRAP_FRAME, KEXCEPTION_FRAME layouts and decoders;
* ``paging``: 4/5-level page tables;
* ``unwind``: UNWIND_INFO execution (RtlVirtualUnwind);
* ``walk``: the walk strategies (unwind data incl. machine frames, then a validated scan that
  labels RBP-chain frames ``frame_pointer``).
"""
from __future__ import annotations

from .. import Architecture, register
from .frames import CONTEXT_SIZE, KTRAP_FRAME_SIZE, X64Context


class X64(Architecture):
    name = "x64"
    machine = 0x8664
    pointer_size = 8
    kernel_min = 0xFFFF800000000000
    context_class = X64Context
    context_size = CONTEXT_SIZE
    trap_frame_size = KTRAP_FRAME_SIZE
    parts = {"frames": ".arch.x64.frames", "paging": ".arch.x64.paging", "unwind": ".arch.x64.unwind",
             "walk": ".arch.x64.walk", "fault": ".analysis.fault"}

    def canonical(self, va: int) -> bool:
        top = va >> 47
        return top == 0 or top == 0x1FFFF


X64_ARCH = register(X64())

__all__ = ["X64", "X64_ARCH", "X64Context"]
