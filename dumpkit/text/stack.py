"""Stack listings: ``k``, ``kn``, ``kv``, ``kb``, ``kP``, ``kc``, ``kf`` and STACK_TEXT.

Recognised line shapes (frame-number column optional everywhere)::

    00 ffffec01`df2062d8 fffff804`0c9d08c2     nt!KeBugCheckEx                          (k / kn)
    ffffa108`8a4aee30 fffff807`662ad6b1     : 00000000`00000000 ... : nt!Rtlp...+0x1b4   (kv / kb / STACK_TEXT)
    03 fffff803`... fffff803`... : ... : nt!KiPageFault+0x474 (TrapFrame @ fffff803`...)    (kv)
    8ba0ede4 82076708 00000050 8ba10000 00000000 nt!KeBugCheckEx [d:\\src\\x.asm @ 114]       (x86 kb)
    00 nt!KeBugCheckEx                                                                    (kc)
    01 (Inline Function) --------`-------- nt!Foo+0x10                                    (inline frames)
    02 fffff804`... fffff804`... nt!KeBugCheckEx(                                          (kP: parameters follow)

Lines wrapped by a mail client (a frame head with its call site on the next line) are
joined back.  Anything else is left to the other extractors.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from dumpkit.model import Frame, Stack

from ._common import is_hex_token, parse_hex, split_call_site, strip_source_suffix

_TRAP_RE = re.compile(r"\(\s*TrapFrame\s*@\s*([0-9a-fA-F`x]+)\s*\)", re.I)
_TRAP_LINE_RE = re.compile(r"^[\s(-]*TrapFrame\s*@\s*([0-9a-fA-F`x]+)[\s)-]*$", re.I)
_ANNOT_RE = re.compile(r"\((?:FPO|CONV|Inline Function @)[^()]{0,200}\)", re.I)
_INDEX_RE = re.compile(r"^[0-9a-fA-F]{2,4}$")
_INLINE_ADDR = "--------`--------"
_SYM_HEAD_RE = re.compile(r"^[A-Za-z_$.][\w.$\-]*!(?:\S| \?\? )")
_MODOFF_RE = re.compile(r"^[A-Za-z_][\w.\-]*\+(?:0x)?[0-9a-fA-F]+$")
_MODULE_ONLY_RE = re.compile(r"^[A-Za-z_][\w.\-]*$")
_HEADER_RE = re.compile(r"^[\s#]*(?:Memory\s+)?(?:Child-SP|ChildEBP|Child-BSP)\b|^\s*#\s+Call Site\s*$", re.I)
_UNWIND_WARN_RE = re.compile(r"WARNING: (?:Stack unwind information not available|Frame IP not in any known module)", re.I)


@dataclass
class FrameLine:
    """One parsed frame line before it is turned into a :class:`Frame`."""

    index: Optional[int]
    child_sp: int
    return_address: int
    call_site: str
    args: List[int] = field(default_factory=list)
    trap_frame: Optional[int] = None
    inline: bool = False
    opens_params: bool = False   # kP: the call site ended with '('


def is_stack_header(line: str) -> bool:
    """True for the column header of a ``k`` listing (``# Child-SP RetAddr Call Site``)."""
    return bool(_HEADER_RE.match(line))


def trap_frame_line(line: str) -> Optional[int]:
    """``TrapFrame @ fffff803`...`` on a line of its own -> the address."""
    m = _TRAP_LINE_RE.match(line)
    return parse_hex(m.group(1)) if m else None


def _plausible_call_site(site: str, have_addrs: bool, have_index: bool) -> bool:
    toks = site.split()
    if not toks:
        return False
    head = toks[0]
    if head.endswith("!") and site[len(head):].startswith(" ?? "):
        return True                      # nt! ?? ::FNODOBFM::`string'+0x10295 (compiler-split code)
    if head.endswith(":") or "=" in head:
        return False
    if _SYM_HEAD_RE.match(head):
        return True
    if _MODOFF_RE.match(head):
        return len(toks) == 1
    if head.lower().startswith("0x") and parse_hex(head) is not None:
        return len(toks) == 1
    if _MODULE_ONLY_RE.match(head) and len(toks) == 1 and (have_addrs or have_index):
        return not head.isdigit()
    return False


def parse_frame_line(line: str) -> Optional[FrameLine]:
    """Parse one stack line; None when the line is not a frame."""
    s = strip_source_suffix(line).strip()
    if not s or len(s) < 4:
        return None
    trap = None
    m = _TRAP_RE.search(s)
    if m:
        trap = parse_hex(m.group(1))
        s = (s[:m.start()] + s[m.end():]).strip()
    s = _ANNOT_RE.sub("", s).strip()
    toks = s.split()
    if not toks:
        return None
    i = 0
    index: Optional[int] = None
    if len(toks) > 1 and _INDEX_RE.match(toks[0]) and not is_hex_token(toks[0]):
        index = int(toks[0], 16)
        i = 1
        # kf: a memory-size column follows the frame number
        if i < len(toks) - 2 and re.match(r"^[0-9a-fA-F]{1,7}$", toks[i]) and is_hex_token(toks[i + 1]):
            i += 1
    inline = False
    addrs: List[int] = []
    args: List[int] = []
    colons = 0
    while i < len(toks):
        t = toks[i]
        if t == "(Inline" and i + 1 < len(toks) and toks[i + 1].startswith("Function)"):
            inline = True
            addrs.append(0)
            i += 2
            continue
        if t == _INLINE_ADDR:
            inline = True
            addrs.append(0)
            i += 1
            continue
        if t == ":":
            colons += 1
            i += 1
            continue
        if is_hex_token(t) and not (t.lower().startswith("0x") and i == len(toks) - 1 and addrs):
            v = parse_hex(t)
            if v is None:
                break
            (args if colons else addrs).append(v)
            i += 1
            continue
        break
    site = " ".join(toks[i:])
    opens = False
    if site.endswith("(") and "!" in site:
        site = site[:-1].rstrip()
        opens = True
    elif "(" in site and "!" in site.split("(", 1)[0] and site.endswith(")") and " " not in site.split("(", 1)[0]:
        # kP on one line: nt!Foo(int a = 0n1)
        site = site.split("(", 1)[0]
    if not _plausible_call_site(site, bool(addrs), index is not None):
        return None
    if not addrs and index is None:
        # a bare call site on its own line (kc without numbers): only the strict forms
        if not (_SYM_HEAD_RE.match(site) or _MODOFF_RE.match(site)) or " " in site:
            return None
    if len(addrs) == 1 and not colons:
        # a single hex value then a symbol is more likely prose or a 'u' listing than a frame
        return None
    child_sp = addrs[0] if addrs else 0
    ret = addrs[1] if len(addrs) > 1 else 0
    if len(addrs) > 2 and not colons:   # x86 kb: ChildEBP RetAddr Args...
        args = addrs[2:] + args
    return FrameLine(index, child_sp, ret, site, args, trap, inline, opens)


_ADDR_RE = re.compile(r"^(?:[0-9a-fA-F]{8}`[0-9a-fA-F]{8}|[0-9a-fA-F]{8,16})$")
_FRAME_NO_RE = re.compile(r"^[0-9a-fA-F]{2,4}$")


def looks_like_partial_frame(line: str) -> bool:
    """A frame head cut by a mail client: addresses but no call site yet.

    ``[NN] addr addr... [: arg arg... [:]]``, checked token by token (a single regex
    with nested repeats over hex digits backtracks exponentially on a long hex run).
    """
    toks = line.replace(":", " : ").split()
    if len(line.split()) < 2:
        return False
    i = 1 if len(toks) > 1 and _FRAME_NO_RE.match(toks[0]) else 0
    n_addr = 0
    while i < len(toks) and _ADDR_RE.match(toks[i]):
        n_addr += 1
        i += 1
    if not n_addr:
        return False
    if i < len(toks) and toks[i] == ":":
        i += 1
        while i < len(toks) and _ADDR_RE.match(toks[i]):
            i += 1
        if i < len(toks) and toks[i] == ":":
            i += 1
    return i == len(toks)


def to_frame(fl: FrameLine, index: int) -> Frame:
    """A :class:`Frame` (trust 'text') from a parsed line."""
    mod, sym, off, absolute = split_call_site(fl.call_site)
    fr = Frame(index=index, instruction=absolute or 0, child_sp=fl.child_sp, return_address=fl.return_address,
               module=mod, symbol=sym, offset=off, trust="text", symbol_source="text", trap_frame=fl.trap_frame)
    return fr


def build_stack(lines: List[FrameLine]) -> Stack:
    """Frames with indices and each frame's IP (the previous frame's return address)."""
    st = Stack()
    for n, fl in enumerate(lines):
        idx = fl.index if fl.index is not None else n
        st.append(to_frame(fl, idx))
    for n in range(1, len(st)):
        if not st[n].instruction and st[n - 1].return_address:
            st[n].instruction = st[n - 1].return_address
    return st


def is_unwind_warning(line: str) -> bool:
    return bool(_UNWIND_WARN_RE.search(line))


def parse_stack(text: str) -> Stack:
    """Parse a stack listing alone (any ``k`` variant); an empty Stack when none is found.

    For a whole paste (``!analyze -v`` with registers, ``lm``...) use
    :func:`dumpkit.text.parse_text`, which also picks the right stack.
    """
    from .parser import parse_text  # local import: parser builds on this module
    from dumpkit.errors import TextParseError
    try:
        return parse_text(text).frames
    except TextParseError:
        return Stack()


def join_wrapped(lines: List[str], i: int, max_join: int = 2) -> Tuple[Optional[FrameLine], int]:
    """Try to rebuild a frame wrapped over several lines starting at ``lines[i]``.

    Returns (frame, number of extra lines consumed) or (None, 0).
    """
    if not looks_like_partial_frame(lines[i]):
        return None, 0
    acc = lines[i].rstrip()
    for k in range(1, max_join + 1):
        if i + k >= len(lines):
            break
        nxt = lines[i + k].strip()
        if not nxt:
            break
        nfl = parse_frame_line(nxt)
        if nfl is not None and (nfl.index is not None or nfl.child_sp):
            break                      # the next line is a frame of its own
        if looks_like_partial_frame(nxt) and re.match(r"^[0-9a-fA-F]{2,4}\s", nxt):
            break
        acc = acc + " " + nxt
        fl = parse_frame_line(acc)
        if fl is not None:
            return fl, k
    return None, 0
