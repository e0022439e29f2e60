"""pykd backend: run dumpkit's analysis inside WinDbg on Windows.

pykd (WinDbg's Python bridge) exists only on Windows, inside a debugger session, so it is
an optional backend.  It uses the smallest, most stable part of pykd's API:

* ``pykd.dbgCommand(text) -> str`` to run ``.bugcheck``, ``r``, ``kn`` and ``lmn`` and read
  their output, which dumpkit's own WinDbg-text parser understands;
* ``pykd.loadBytes(address, count)`` for the bytes at the faulting instruction.

Inside WinDbg::

    .load pykd
    !py -g -c "import dumpkit.backends.pykd as b; print(b.analyze_target().render_text())"
"""
from __future__ import annotations

import importlib
from typing import Any, Optional

from ..errors import DumpError, MemoryReadError, UnsupportedDumpError

#: the commands whose output the analysis needs, in order
COMMANDS = (".bugcheck", "r", "kn 100", "lmn")


def _load_pykd(module: Any = None) -> Any:
    if module is not None:
        return module
    try:
        return importlib.import_module("pykd")
    except ImportError:
        raise UnsupportedDumpError(
            "the pykd backend needs pykd, WinDbg's Python extension (Windows only)",
            hint="run dumpkit inside WinDbg with pykd loaded, or open the .dmp file with dumpkit.open()") from None


class PykdTarget:
    """The debugger's current target, seen through pykd."""

    def __init__(self, pykd_module: Any = None) -> None:
        self._pykd = _load_pykd(pykd_module)
        self._outputs: Optional[dict] = None

    def command(self, text: str) -> str:
        """Run a debugger command and return what it printed."""
        try:
            return str(self._pykd.dbgCommand(text) or "")
        except Exception as exc:  # pykd raises its own DbgException types
            raise DumpError(f"debugger command {text!r} failed: {exc}") from None

    def read_virtual(self, va: int, size: int) -> bytes:
        try:
            data = self._pykd.loadBytes(va, size)
        except Exception as exc:
            raise MemoryReadError(f"the debugger cannot read {size:#x} bytes at {va:#x}: {exc}", address=va) from None
        return bytes(bytearray(int(b) & 0xFF for b in data))

    def outputs(self) -> dict:
        """The text of each command in :data:`COMMANDS` (run once)."""
        if self._outputs is None:
            self._outputs = {c: self.command(c) for c in COMMANDS}
        return self._outputs

    def transcript(self) -> str:
        return "\n".join(self.outputs().values())

    def __repr__(self) -> str:
        return "<PykdTarget (the current WinDbg target)>"


def analyze_target(target: Optional[PykdTarget] = None, *, pykd_module: Any = None):
    """Analyse the debugger's current target with dumpkit's engine."""
    from ..analysis.engine import analyze_parts
    from ..text import parse_text

    t = target or PykdTarget(pykd_module)
    parsed = parse_text(t.transcript(), source="pykd")
    ctx = parsed.registers or next(iter((parsed.contexts or {}).values()), None)
    rip = ctx.regs.get("rip") if ctx is not None else None
    fault_bytes = None
    if rip:
        try:
            fault_bytes = t.read_virtual(rip, 16)
        except MemoryReadError:
            fault_bytes = None
    return analyze_parts(parsed.bugcheck_code, parsed.parameters or (), list(parsed.frames),
                         modules=parsed.modules, context=ctx, fault_bytes=fault_bytes,
                         process_name=parsed.process_name, fault_ip=rip, source="pykd",
                         warnings=list(parsed.warnings))
