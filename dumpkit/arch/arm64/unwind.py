"""ARM64 unwinding from .pdata/.xdata (filled in by the ARM64 unwinder)."""
from __future__ import annotations


def virtual_unwind(image, image_base, regs, read, *, exact=True):
    return None
