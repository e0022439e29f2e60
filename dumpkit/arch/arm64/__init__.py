"""ARM64 (AArch64, MachineImageType 0xAA64).

* ``frames``: ARM64_NT_CONTEXT and KARM64_ARCH_STATE;
* ``paging``: 4 KB granule, 4-level tables (DirectoryTableBase serves both halves);
* ``unwind``: .pdata/.xdata (packed and full unwind records);
* ``walk``: unwind data, the x29/x30 frame-record chain, the link register of a leaf, a scan;
* ``fault``: the faulting instruction decoded with capstone, in plain words.
"""
from __future__ import annotations

from .. import Architecture, register
from .frames import CONTEXT_SIZE, Arm64Context


class Arm64(Architecture):
    name = "arm64"
    machine = 0xAA64
    pointer_size = 8
    kernel_min = 0xFFFF800000000000
    context_class = Arm64Context
    context_size = CONTEXT_SIZE
    trap_frame_size = 0
    parts = {"frames": ".arch.arm64.frames", "paging": ".arch.arm64.paging", "unwind": ".arch.arm64.unwind",
             "walk": ".arch.arm64.walk", "fault": ".arch.arm64.fault"}

    def canonical(self, va: int) -> bool:
        top = (va & 0xFFFFFFFFFFFFFFFF) >> 47
        return top == 0 or top == 0x1FFFF


ARM64_ARCH = register(Arm64())

__all__ = ["Arm64", "ARM64_ARCH", "Arm64Context"]
