"""The byte mutations the fuzz tests apply to a fixture dump (hypothesis draws offsets and bytes)."""
from __future__ import annotations

from typing import Iterable, Tuple


def overwrite(base: bytes, edits: Iterable[Tuple[int, bytes]]) -> bytes:
    """``base`` with each ``(offset, blob)`` written over it (offset taken modulo the size, blob cut at the end)."""
    data = bytearray(base)
    for off, blob in edits:
        off %= len(data)
        data[off:off + len(blob)] = blob[: len(data) - off]
    return bytes(data)


def poke_u32(base: bytes, offsets: Iterable[int], value: int) -> bytes:
    """``base`` with the little-endian u32 ``value`` written at each offset (modulo the size less 4)."""
    data = bytearray(base)
    for off in offsets:
        off %= max(1, len(data) - 4)
        data[off:off + 4] = value.to_bytes(4, "little")
    return bytes(data)
