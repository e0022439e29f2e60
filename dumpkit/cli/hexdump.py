"""Hex dumps laid out like WinDbg's ``db``::

    fffff804`1c7d1000  48 89 5c 24 08 57 48 83-ec 20 48 8b d9 e8 00 00  H.\\$.WH.. H.....

Bytes that cannot be read print as ``??`` (WinDbg does the same), so one missing page in
the middle of a range does not hide the rest.
"""
from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Tuple

from ..errors import MemoryReadError
from ..model import windbg_hex

PAGE = 0x1000
_PRINTABLE = bytes(range(0x20, 0x7F))


def read_chunks(read: Callable[[int, int], bytes], address: int, length: int
                ) -> Iterator[Tuple[int, Optional[bytes], Optional[str]]]:
    """(address, bytes or None, why) per page-bounded piece of ``[address, address+length)``."""
    pos, end = address, address + length
    while pos < end:
        n = min(end - pos, PAGE - (pos & (PAGE - 1)))
        try:
            data = read(pos, n)
            yield pos, data, None
        except MemoryReadError as exc:
            yield pos, None, exc.message
        pos += n


def format_line(address: int, cells: List[Optional[int]]) -> str:
    """One ``db`` line: address, up to 16 bytes (``-`` after the eighth), their ASCII."""
    hexes = []
    for i in range(16):
        if i < len(cells):
            b = cells[i]
            h = "??" if b is None else f"{b:02x}"
        else:
            h = "  "
        hexes.append(h)
    left, right = " ".join(hexes[:8]), " ".join(hexes[8:])
    sep = "-" if len(cells) > 8 else " "
    text = "".join("?" if b is None else (chr(b) if b in _PRINTABLE else ".") for b in cells)
    return f"{windbg_hex(address)}  {left}{sep}{right}  {text}".rstrip()


def hexdump(read: Callable[[int, int], bytes], address: int, length: int
            ) -> Iterator[Tuple[Optional[str], Optional[str]]]:
    """Yield (line, None) per output line and (None, reason) for each unreadable piece."""
    cells: List[Optional[int]] = []
    line_addr = address
    for pos, data, why in read_chunks(read, address, length):
        if data is None:
            yield None, why
        n = min(PAGE - (pos & (PAGE - 1)), address + length - pos)
        piece: List[Optional[int]] = list(data) if data is not None else [None] * n
        for b in piece:
            cells.append(b)
            if len(cells) == 16:
                yield format_line(line_addr, cells), None
                line_addr += 16
                cells = []
    if cells:
        yield format_line(line_addr, cells), None
