"""Fixed little-endian record layouts decoded with :mod:`struct` in one ``unpack_from``.

A layout is a list of ``(name, code)`` pairs, in file order: ``code`` is one struct code
(``"I"``, ``"Q"``, ``"B"``), ``"<n>s"`` (raw bytes), ``"<n>x"`` (padding, name ignored),
``"<n>Q"``/``"<n>I"`` (an array, decoded as a tuple) or another :class:`Layout` (a nested
record).  Parsing returns a :class:`Record`: a dict with attribute access.

This replaces construct on the open path (construct costs ~25 ms to import and is
slower to parse); the layouts themselves stay written out field by field, with their
offsets, so they still read like the structure definitions.
"""
from __future__ import annotations

import re
import struct
from typing import Any, List, Sequence, Tuple, Union

_ARRAY = re.compile(r"^(\d+)([BHIQ])$")


class Record(dict):
    """A decoded record: ``r["field"]`` or ``r.field``."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class Layout:
    def __init__(self, fields: Sequence[Tuple[str, Union[str, "Layout"]]]) -> None:
        fmt = ["<"]
        self.format: str = ""
        # (name, kind, count): kind 'v' one value, 'a' a tuple of count values, 'n' a nested layout
        self._plan: List[Tuple[str, str, Any]] = []
        for name, code in fields:
            if isinstance(code, Layout):
                fmt.append(code.format[1:])
                self._plan.append((name, "n", code))
                continue
            if code.endswith("x"):
                fmt.append(code)
                continue
            m = _ARRAY.match(code)
            if m and int(m.group(1)) > 1:
                fmt.append(code)
                self._plan.append((name, "a", int(m.group(1))))
            else:
                fmt.append(code)
                self._plan.append((name, "v", 1))
        self.format = "".join(fmt)
        self._struct = struct.Struct(self.format)
        self.size = self._struct.size

    def sizeof(self) -> int:
        return self.size

    def _build(self, values: Sequence[Any], pos: int) -> Tuple[Record, int]:
        out = Record()
        for name, kind, arg in self._plan:
            if kind == "v":
                out[name] = values[pos]
                pos += 1
            elif kind == "a":
                out[name] = tuple(values[pos:pos + arg])
                pos += arg
            else:
                out[name], pos = arg._build(values, pos)
        return out, pos

    def parse(self, data: Union[bytes, bytearray, memoryview], offset: int = 0) -> Record:
        """Decode the record at ``offset``; struct.error when ``data`` is too short."""
        return self._build(self._struct.unpack_from(data, offset), 0)[0]
