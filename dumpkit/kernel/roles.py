"""Which bug-check parameter is what, from the catalogue: the kernel layer's view of the roles.

``symbols/bugchecks.json`` gives every documented argument a role (``context``, ``trap_frame``,
``exception_record``, ``exception_code``, ``ip``, ``address`` ...; see symbols/README.md).  The
analysis layer reads the whole catalogue; the kernel layer, below it, needs only the roles to
find the register contexts and the exception record a bug check points at, so it reads them
here, once, from the same file: one table says which parameter is a CONTEXT, a KTRAP_FRAME or an
EXCEPTION_RECORD for the x64, ARM64 and x86 readers alike.

>>> r = roles_for(0x1000007E)        # the _M twin uses its base code
>>> r.index("exception_record"), r.index("context"), r.index("trap_frame")
(3, 4, None)
>>> roles_for(0xD1).scans_for_trap_frame, roles_for(0x1E).scans_for_context
(True, True)
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple

__all__ = ["ParamRoles", "roles_for", "load_roles", "POINTER_ROLES"]

#: roles whose parameter is the address of a structure in the dump
POINTER_ROLES = ("context", "trap_frame", "exception_record")


def _base(code: int) -> int:
    if code & 0xF0000000 == 0x10000000 and code & 0x0FFF0000 == 0 and code & 0xFFFF:
        return code & 0xFFFF
    return code


@dataclass(frozen=True)
class ParamRoles:
    """The roles of one bug check's four parameters (``roles[i]`` for Arg i+1, None = undocumented)."""

    code: int
    roles: Tuple[Optional[str], ...] = (None, None, None, None)
    _first: Dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for i, r in enumerate(self.roles):
            if r and r not in self._first:
                self._first[r] = i + 1

    def index(self, role: str) -> Optional[int]:
        """1-based index of the first parameter with ``role``, or None."""
        return self._first.get(role)

    def value(self, role: str, params: Sequence[int]) -> Optional[int]:
        """That parameter's value (None when the role is absent or the parameter is missing)."""
        i = self.index(role)
        return params[i - 1] if i is not None and i <= len(params) else None

    @property
    def scans_for_context(self) -> bool:
        """An exception bug check whose CONTEXT no parameter holds (0x1E): it is searched for on the
        stack, the record whose Rip is the ``ip`` parameter."""
        return bool(self.index("exception_code") and self.index("ip")) and \
            not any(self.index(r) for r in ("context", "trap_frame"))

    @property
    def scans_for_trap_frame(self) -> bool:
        """A page-fault bug check (0xA, 0xD1, 0x50, 0xD5 ...: a referenced ``address`` and the ``ip`` that
        referenced it, no exception): KiPageFault's KTRAP_FRAME is searched for on the stack."""
        return bool(self.index("ip") and self.index("address")) and \
            not any(self.index(r) for r in ("trap_frame", "context", "exception_code"))

    def exception_information(self, params: Sequence[int]) -> Tuple[int, ...]:
        """ExceptionInformation carried by the parameters after ``ip`` (0x1E: P3, P4), when none of them
        points at a structure."""
        i = self.index("ip")
        if i is None:
            return ()
        after = range(i, min(4, len(params)))
        if any(self.roles[j] in POINTER_ROLES for j in after):
            return ()
        return tuple(params[j] for j in after if self.roles[j] != "reserved")


_LOCK = threading.Lock()
_ROLES: Optional[Dict[int, ParamRoles]] = None
_ERROR: Optional[str] = None


def load_roles(path: Optional[str] = None) -> Dict[int, ParamRoles]:
    """code -> :class:`ParamRoles` for every catalogued bug check (read once; {} if the file is unreadable,
    the reason in :func:`load_error`)."""
    global _ROLES, _ERROR
    if path is None and _ROLES is not None:
        return _ROLES
    from ..kbpath import kb_file
    p = path or str(kb_file("bugchecks.json"))
    out: Dict[int, ParamRoles] = {}
    err = None
    try:
        with open(p, "r", encoding="utf-8") as f:
            data = json.load(f)
        for e in data.get("bugchecks", []):
            params = e.get("params") or []
            roles = tuple((params[i].get("role") if i < len(params) and isinstance(params[i], dict) else None)
                          for i in range(4))
            code = int(str(e["code"]), 16)
            out[code] = ParamRoles(code, roles)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        err = f"bug check parameter roles unavailable ({p}): {exc}"
        out = {}
    if path is None:
        with _LOCK:
            _ROLES, _ERROR = out, err
    return out


def load_error() -> Optional[str]:
    load_roles()
    return _ERROR


def roles_for(code: int, table: Optional[Dict[int, ParamRoles]] = None) -> ParamRoles:
    """The roles of bug check ``code`` (its base code for the 0x1000xxxx twins); no roles when uncatalogued."""
    t = load_roles() if table is None else table
    b = _base(code)
    own = t.get(code)
    if own is not None and any(own.roles):
        return own
    return t.get(b) or own or ParamRoles(b)        # 0x1000007E's entry names it; 0x7E's gives the roles
