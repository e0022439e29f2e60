"""WinDbg text as input: ``!analyze -v`` reports, ``k``-family stacks, ``lm``/``lmv``, ``r`` and ``u`` output.

>>> from dumpkit.text import parse_text
>>> pt = parse_text(open("analyze.txt").read())       # doctest: +SKIP
>>> pt.bugcheck_code, pt.frames[0].call_site           # doctest: +SKIP
"""
from __future__ import annotations

from .parsed import DisasmLine, ParsedText
from .parser import parse_text
from .registers import parse_disasm_line, register_pairs
from .stack import parse_frame_line, parse_stack

__all__ = ["ParsedText", "DisasmLine", "parse_text", "parse_stack", "parse_frame_line", "parse_disasm_line",
           "register_pairs"]
