"""Setup / upgrade error codes: lookup, explanation and extend-code decoding.

The table lives in ``symbols/setup_errors.toml`` (shipped as ``dumpkit/_kb``).
A Win32 code is found whether it is written plain (``0x3``, ``错误代码 0x3``)
or as its HRESULT (``0x80070003``); setupapi's habit of logging only the low
word of an HRESULT (``FAILURE(0x00000207)`` for ``0x800F0207``) is handled too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Optional, Tuple

from ..errors import TextParseError
from ..kbpath import kb_file

try:  # Python 3.11+
    import tomllib as _toml
except ModuleNotFoundError:  # pragma: no cover - 3.10
    import tomli as _toml  # type: ignore[no-redef]


@dataclass(frozen=True)
class ErrorCodeInfo:
    """What dumpkit knows about one error code."""

    code: int
    name: str
    kind: str
    meaning: str
    advice: str = ""
    matched_as: Optional[int] = None   # the table entry's code when looked up through an alias

    @property
    def hex(self) -> str:
        return format_code(self.code)

    def __str__(self) -> str:
        label = f"{self.hex} {self.name}".rstrip()
        return f"{label}: {self.meaning}"

    def __repr__(self) -> str:
        return f"<ErrorCodeInfo {self.hex} {self.name or '(no name)'} [{self.kind}]>"


@dataclass(frozen=True)
class ExtendCode:
    """A decoded setup extend code (``0x4000D`` -> OOBE_BOOT / MIGRATE_DATA)."""

    value: int
    phase: int
    phase_name: str
    operation: int
    operation_name: str
    phase_note: str = ""

    def __str__(self) -> str:
        return f"{format_code(self.value)} = phase {self.phase_name}, operation {self.operation_name}"

    def __repr__(self) -> str:
        return f"<ExtendCode {format_code(self.value)} {self.phase_name}/{self.operation_name}>"


@dataclass(frozen=True)
class UpgradeResult:
    """A result code with its extend code, e.g. ``0xC1900101 - 0x4000D``."""

    result: int
    extend: Optional[ExtendCode]
    result_info: Optional[ErrorCodeInfo]
    meaning: str = ""
    advice: str = ""

    def __str__(self) -> str:
        text = format_code(self.result)
        if self.extend is not None:
            text += f" - {format_code(self.extend.value)} ({self.extend.phase_name} / {self.extend.operation_name})"
        if self.meaning:
            text += f": {self.meaning}"
        elif self.result_info is not None:
            text += f": {self.result_info.meaning}"
        return text

    __repr__ = lambda self: f"<UpgradeResult {self}>"  # noqa: E731


def format_code(code: int) -> str:
    """``0xC1900101`` for error codes (upper-case hex, at least one digit)."""
    return f"0x{code:X}"


class _Table:
    def __init__(self, codes: Dict[int, ErrorCodeInfo], extended: Dict[Tuple[int, int], Tuple[str, str]],
                 phases: Dict[int, str], notes: Dict[int, str], ops: Dict[int, str]) -> None:
        self.codes = codes
        self.extended = extended
        self.phases = phases
        self.notes = notes
        self.ops = ops


def _hex(value: object, where: str) -> int:
    if not isinstance(value, str) or not re.fullmatch(r"0x[0-9A-Fa-f]{1,8}", value):
        raise TextParseError(f"bad code {value!r} in {where}", path=str(kb_file("setup_errors.toml")),
                             expected="a hex string like 0x8007045B")
    return int(value, 16)


@lru_cache(maxsize=1)
def _table() -> _Table:
    path = kb_file("setup_errors.toml")
    try:
        data = _toml.loads(path.read_text(encoding="utf-8"))
    except (OSError, _toml.TOMLDecodeError, UnicodeDecodeError) as e:
        raise TextParseError(f"cannot load the setup error table: {e}", path=str(path)) from e
    codes: Dict[int, ErrorCodeInfo] = {}
    for i, row in enumerate(data.get("code", [])):
        c = _hex(row.get("code"), f"code[{i}]")
        if c in codes:
            raise TextParseError(f"duplicate code {format_code(c)}", path=str(path))
        codes[c] = ErrorCodeInfo(c, str(row.get("name", "")), str(row.get("kind", "")),
                                 str(row.get("meaning", "")), str(row.get("advice", "")))
    extended: Dict[Tuple[int, int], Tuple[str, str]] = {}
    for i, row in enumerate(data.get("extended", [])):
        key = (_hex(row.get("result"), f"extended[{i}]"), _hex(row.get("extend"), f"extended[{i}]"))
        extended[key] = (str(row.get("meaning", "")), str(row.get("advice", "")))
    phases = {int(k, 16): str(v) for k, v in data.get("phases", {}).items()}
    notes = {int(k, 16): str(v) for k, v in data.get("phase_notes", {}).items()}
    ops = {int(k, 16): str(v) for k, v in data.get("operations", {}).items()}
    return _Table(codes, extended, phases, notes, ops)


def lookup_code(code: int) -> Optional[ErrorCodeInfo]:
    """The table entry for ``code``, trying its Win32/HRESULT aliases; None if unknown.

    ``0x80070003`` finds ``0x3`` (ERROR_PATH_NOT_FOUND) and ``0x3`` would find
    ``0x80070003``; ``0x207`` finds ``0x800F0207`` (setupapi's truncated form).
    """
    if not isinstance(code, int) or code < 0 or code > 0xFFFFFFFF:
        return None
    t = _table()
    hit = t.codes.get(code)
    if hit is not None:
        return hit
    candidates = []
    if code & 0xFFFF0000 == 0x80070000:
        candidates.append(code & 0xFFFF)
    if code <= 0xFFFF:
        candidates += [0x80070000 | code, 0x800F0000 | code]
    for c in candidates:
        hit = t.codes.get(c)
        if hit is not None:
            return ErrorCodeInfo(code, hit.name, hit.kind, hit.meaning, hit.advice, matched_as=c)
    return None


def decode_extend(value: int) -> ExtendCode:
    """Split an extend code into phase (bits 16-19) and operation (low byte)."""
    t = _table()
    phase = (value >> 16) & 0xF
    op = value & 0xFF
    return ExtendCode(value, phase, t.phases.get(phase, f"PHASE_{phase:X}"), op,
                      t.ops.get(op, f"OP_{op:02X}"), t.notes.get(phase, ""))


def explain_result(result: int, extend: Optional[int] = None) -> UpgradeResult:
    """Explain a setup result code, optionally with its extend code."""
    t = _table()
    meaning, advice = t.extended.get((result, extend), ("", "")) if extend is not None else ("", "")
    info = lookup_code(result)
    if not advice and info is not None:
        advice = info.advice
    return UpgradeResult(result, decode_extend(extend) if extend is not None else None, info, meaning, advice)


# "0xC1900101 - 0x4000D", "0xC1900101-0x20017", "Error codes 0x8007001F - 0x200006"
_PAIR_RE = re.compile(r"\b0x([0-9A-Fa-f]{8})\s*-\s*0x([0-9A-Fa-f]{1,6})\b")


def find_result_pairs(text: str) -> list:
    """All ``result - extend`` pairs in a text, explained."""
    out = []
    for m in _PAIR_RE.finditer(text or ""):
        out.append(explain_result(int(m.group(1), 16), int(m.group(2), 16)))
    return out


__all__ = ["ErrorCodeInfo", "ExtendCode", "UpgradeResult", "lookup_code", "decode_extend",
           "explain_result", "find_result_pairs", "format_code"]
