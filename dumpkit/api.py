"""Top-level conveniences: ``dumpkit.analyze`` for a dump, a path or pasted WinDbg text."""
from __future__ import annotations

import os
from typing import Any, Optional, Union

from .dump import Dump, open as open_dump
from .errors import DumpError


def _looks_like_dump(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) in (b"PAGE", b"MDMP", b"MSCF")
    except OSError:
        return False


def analyze(target: Union[Dump, str, bytes, "os.PathLike[str]"], symbol_path: Any = None, *,
            offline: Optional[bool] = None):
    """Analyse a crash: an open :class:`Dump`, the path of a dump or of a text file with pasted
    WinDbg output, or the pasted text itself.  Returns an :class:`~dumpkit.analysis.engine.Analysis`.
    """
    from .analysis.dumpsource import analyze_dump
    from .analysis.engine import analyze_text

    if isinstance(target, Dump):
        return analyze_dump(target, symbol_path, offline=offline)
    if isinstance(target, bytes):
        return analyze_text(target)
    text_or_path = os.fspath(target)
    is_path = "\n" not in text_or_path and len(text_or_path) < 4096 and os.path.exists(text_or_path)
    if is_path and os.path.isdir(text_or_path):
        raise DumpError("is a directory, not a dump or text file", path=text_or_path)
    if is_path and _looks_like_dump(text_or_path):
        with open_dump(text_or_path) as d:
            return analyze_dump(d, symbol_path, offline=offline)
    if is_path:
        with open(text_or_path, "rb") as f:
            return analyze_text(f.read(), source=text_or_path)
    return analyze_text(text_or_path)
