"""Helpers for the setup-log tests (dumpkit.logs)."""
from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data" / "logs"


def strip_annotations(text: str) -> str:
    """Drop the '#' annotation lines the collector added to the ../shared excerpt files.

    Those lines are not log content (sources, notes); a '# ' that quotes a real log line
    (the 2014 UnattendGC block sits inside a shell comment) is unwrapped instead.
    """
    out = []
    for line in text.splitlines():
        if line.startswith("# ") and line[2:6].isdigit() and line[6:7] == "-":
            out.append(line[2:])
        elif not line.startswith("#"):
            out.append(line)
    return "\n".join(out) + "\n"
