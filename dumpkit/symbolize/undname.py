"""Name-only undecoration of MSVC C++ symbol names, as debuggers show them in stacks.

WinDbg (dbghelp with SYMOPT_UNDNAME) shows ``?Foo@Bar@@QEAAXXZ`` as ``Bar::Foo``:
the qualified name without return type and parameters.  This covers the forms
that occur in driver PDBs (plain and nested scopes, back-references,
constructors, destructors, the common special members); anything more exotic
(templates, anonymous namespaces with hashes) is returned unchanged rather than
guessed.
"""
from __future__ import annotations

import re
from typing import List, Optional

_SPECIAL = {
    "0": None,              # constructor: Class::Class
    "1": None,              # destructor: Class::~Class
    "2": "operator new",
    "3": "operator delete",
    "4": "operator=",
    "_7": "`vftable'",
    "_8": "`vbtable'",
    "_E": "`vector deleting destructor'",
    "_G": "`scalar deleting destructor'",
    "_U": "operator new[]",
    "_V": "operator delete[]",
}
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_$<>]*")


def _scopes(text: str, pos: int, backrefs: List[str]) -> Optional[tuple]:
    """Parse ``scope@scope@...@@``; returns (scopes innermost-first, end pos) or None."""
    out: List[str] = []
    while pos < len(text):
        if text[pos] == "@":
            return out, pos + 1
        ch = text[pos]
        if ch.isdigit():
            i = int(ch)
            if i >= len(backrefs):
                return None
            out.append(backrefs[i])
            pos += 1
            continue
        m = _IDENT.match(text, pos)
        if not m or m.end() >= len(text) or text[m.end()] != "@":
            return None
        part = m.group(0)
        if len(backrefs) < 10:
            backrefs.append(part)
        out.append(part)
        pos = m.end() + 1
    return None


def undecorate(name: str) -> str:
    """``Scope::Name`` for a decorated MSVC name; other names are returned as they are."""
    if not name.startswith("?") or len(name) < 3:
        return name
    if name.startswith("??_C@"):
        return "`string'"
    backrefs: List[str] = []
    if name.startswith("??"):
        code = name[2]
        pos = 3
        if code == "_" and len(name) > 3:
            code = name[2:4]
            pos = 4
        if code not in _SPECIAL:
            return name
        parsed = _scopes(name, pos, backrefs)
        if not parsed or not parsed[0]:
            return name
        scopes = parsed[0]
        cls = scopes[0]
        if code == "0":
            member = cls
        elif code == "1":
            member = "~" + cls
        else:
            member = _SPECIAL[code] or name
        return "::".join(list(reversed(scopes)) + [member])
    m = _IDENT.match(name, 1)
    if not m or m.end() >= len(name) or name[m.end()] != "@":
        return name
    base = m.group(0)
    backrefs.append(base)
    parsed = _scopes(name, m.end() + 1, backrefs)
    if parsed is None:
        return name
    return "::".join(list(reversed(parsed[0])) + [base])
