"""32-bit x86 (i386, MachineImageType 0x14C).

* ``frames``: CONTEXT_i386 and the x86 KTRAP_FRAME (:mod:`.context`, layouts defined once);
* ``paging``: 2-level (4 MiB pages) and PAE 3-level (2 MiB pages) translation (:mod:`.paging`);
  the dump header's ``PaeEnabled`` picks the mode (``translator(..., pae=)``);
* ``walk``: frame data (FPO/FRAMEDATA from PDBs), trap frames, the EBP chain, a validated
  scan (:mod:`.walker`), trust per frame;
* ``kernel``: modules and contexts from the 32-bit structures (:mod:`.kstate`);
* ``fault``: the faulting instruction decoded in 32-bit mode (:mod:`dumpkit.analysis.fault`).
"""
from __future__ import annotations

from .. import Architecture, register
from .context import CONTEXT_X86_SIZE, KTRAP_FRAME_X86_SIZE, X86Context


class X86(Architecture):
    name = "x86"
    machine = 0x14C
    pointer_size = 4
    kernel_min = 0x80000000
    context_class = X86Context
    context_size = CONTEXT_X86_SIZE
    trap_frame_size = KTRAP_FRAME_X86_SIZE
    parts = {"frames": ".arch.x86.frames", "paging": ".arch.x86.paging", "walk": ".arch.x86.walk",
             "kernel": ".arch.x86.kstate", "fault": ".arch.x86.fault"}

    def canonical(self, va: int) -> bool:
        return 0 <= va <= 0xFFFFFFFF


X86_ARCH = register(X86())

__all__ = ["X86", "X86_ARCH", "X86Context"]
