"""Small helpers shared by the WinDbg-text parsers: hex numbers, call sites, clean-up.

WinDbg prints 64-bit values as ``fffff804`0c9d08c2`` (a backtick between the
halves), sometimes as ``fffff8040c9d08c2`` or ``0xfffff804`0c9d08c2``; mail
clients and markdown add ``\\``` escapes, quote markers and wrap long lines.
Everything here is total: bad input gives ``None``, never an exception.
"""
from __future__ import annotations

import re
from typing import List, Optional, Tuple

#: one address/value token as WinDbg prints it (with or without the backtick)
HEX_TOKEN = r"(?:0x)?[0-9a-fA-F]{1,8}`[0-9a-fA-F]{8}|(?:0x)?[0-9a-fA-F]{8,16}"
_HEX_TOKEN_RE = re.compile(rf"^(?:{HEX_TOKEN})$")
_PLAIN_HEX_RE = re.compile(r"^(?:0x)?[0-9a-fA-F]{1,16}$")

MAX_LINE = 4096          # longer lines are cut (nothing WinDbg prints is that long)
MAX_CHARS = 16 << 20     # 16 MiB of text at most

# zero-width and odd spaces that pasting from chat/mail/web brings in
_ODD_SPACES = {
    "\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u3000": " ", "\u200b": "", "\u200c": "", "\u200d": "",
    "\ufeff": "", "\u2060": "", "\uff1a": ":",  # full-width colon
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
}
_ODD_RE = re.compile("|".join(re.escape(k) for k in _ODD_SPACES))
_QUOTE_RE = re.compile(r"^(?:[ \t]{0,3}>(?![>=])[ \t]?)+")
_SOURCE_BODY_RE = re.compile(r"^[^\[\]]{0,400}@\s*\d+$")   # what is inside [...] (no brackets)


def parse_hex(token: str) -> Optional[int]:
    """``fffff804`0c9d08c2`` / ``0xfffff8040c9d08c2`` / ``7e`` -> int; None if not hex."""
    if not token:
        return None
    t = token.strip().rstrip(",;")
    if t.lower().startswith("0x"):
        t = t[2:]
    t = t.replace("`", "")
    if not t or len(t) > 16:
        return None
    try:
        return int(t, 16)
    except ValueError:
        return None


def is_hex_token(token: str) -> bool:
    """True for an address-like token (8+ digits, or the backtick form)."""
    return bool(_HEX_TOKEN_RE.match(token))


def is_plain_hex(token: str) -> bool:
    return bool(_PLAIN_HEX_RE.match(token))


def clean_text(text: str) -> Tuple[List[str], List[str]]:
    """Normalise pasted text into lines; returns (lines, warnings).

    Removes mail quote markers (``> ``), markdown backtick escapes (``\\```),
    odd Unicode spaces, carriage returns; cuts absurdly long lines.
    """
    warnings: List[str] = []
    if len(text) > MAX_CHARS:
        warnings.append(f"input is {len(text)} characters; only the first {MAX_CHARS} were read")
        text = text[:MAX_CHARS]
    text = _ODD_RE.sub(lambda m: _ODD_SPACES[m.group(0)], text)
    text = text.replace("\\`", "`").replace("\r\n", "\n").replace("\r", "\n")
    lines: List[str] = []
    cut = 0
    for raw in text.split("\n"):
        line = _QUOTE_RE.sub("", raw) if raw[:1] in (">", " ", "\t") else raw
        if len(line) > MAX_LINE:
            line = line[:MAX_LINE]
            cut += 1
        lines.append(line.rstrip())
    if cut:
        warnings.append(f"{cut} line(s) longer than {MAX_LINE} characters were cut")
    return lines, warnings


def strip_source_suffix(text: str) -> str:
    """Drop a trailing ``[d:\\src\\file.c @ 123]`` source annotation (string code: linear time)."""
    body = text.rstrip()
    if not body.endswith("]"):
        return text
    open_at = body.rfind("[")
    if open_at <= 0 or not body[open_at - 1].isspace() or not _SOURCE_BODY_RE.match(body[open_at + 1:-1]):
        return text
    return body[:open_at].rstrip()


_OFF_RE = re.compile(r"^(?:0x)?[0-9a-fA-F]{1,16}$")


def split_call_site(site: str) -> Tuple[Optional[str], Optional[str], Optional[int], Optional[int]]:
    """Split a WinDbg call site into (module, symbol, offset, absolute address).

    ``nt!KiPageFault+0x42e`` -> ('nt', 'KiPageFault', 0x42e, None);
    ``lwfmgr+0x5167`` -> ('lwfmgr', None, 0x5167, None);
    ``EvilDriver+115b`` (SYMBOL_NAME style) -> ('EvilDriver', None, 0x115b, None);
    ``0x00007ffc`aa52f454`` -> (None, None, None, 0x7ffcaa52f454);
    ``nt!KeBugCheckEx`` -> ('nt', 'KeBugCheckEx', 0, None).
    """
    s = site.strip()
    if not s:
        return None, None, None, None
    if "!" not in s:
        tok = s.split()[0]
        if is_hex_token(tok) or (tok.lower().startswith("0x") and parse_hex(tok) is not None):
            return None, None, None, parse_hex(tok)
        if "+" in tok:
            mod, _, off_text = tok.rpartition("+")
            if mod and _OFF_RE.match(off_text):
                return mod, None, parse_hex(off_text), None
        return tok, None, None, None
    mod, _, rest = s.partition("!")
    mod = mod.strip()
    rest = rest.strip()
    if not mod:
        return None, None, None, None
    sym, off = rest, 0
    if "+" in rest:
        head, _, tail = rest.rpartition("+")
        if head and _OFF_RE.match(tail.strip()):
            sym, off = head, parse_hex(tail.strip()) or 0
    return mod, (sym or None), off, None
