"""Pieces shared by the architecture packages' unwinders (no architecture of its own)."""
from __future__ import annotations

import struct
from typing import Callable

from ..errors import DumpError, UnwindError

MASK64 = 0xFFFFFFFFFFFFFFFF
_Q = struct.Struct("<Q")

ReadFn = Callable[[int, int], bytes]


class UnwindMemory:
    """Reads through the caller's function, turning every failure into UnwindError."""

    __slots__ = ("read",)

    def __init__(self, read: ReadFn) -> None:
        self.read = read

    def _bytes(self, va: int, size: int) -> bytes:
        try:
            data = self.read(va, size)
        except DumpError as exc:
            raise UnwindError(f"cannot read stack at {va:#x}: {exc.message}", offset=va) from None
        if data is None or len(data) != size:
            raise UnwindError(f"short read at {va:#x}", offset=va, expected=f"{size} bytes")
        return data

    def u64(self, va: int) -> int:
        va &= MASK64
        return _Q.unpack(self._bytes(va, 8))[0]

    def u128(self, va: int) -> int:
        va &= MASK64
        return int.from_bytes(self._bytes(va, 16), "little")
