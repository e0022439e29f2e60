"""One status line redrawn in place on a terminal, nothing in a pipe (stdlib only).

The base of every progress display (``dumpkit scan``'s bar and the symbol-download line in
:mod:`dumpkit.cli.progress`, the batch line in :mod:`dumpkit.batch.engine`): it decides
whether to draw (the stream is a terminal, or ``enabled`` says so), redraws with ``\\r``,
cut to the terminal's width, stops drawing when the stream fails, and erases itself.
"""
from __future__ import annotations

import shutil
import sys
from typing import IO, Optional


def is_terminal(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def terminal_width() -> int:
    return shutil.get_terminal_size((80, 20)).columns


class StatusLine:
    """A line on ``stream`` (stderr), drawn only when it is a terminal or ``enabled`` is true."""

    def __init__(self, stream: Optional[IO[str]] = None, enabled: Optional[bool] = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = is_terminal(self.stream) if enabled is None else bool(enabled)
        self._drawn = False

    def show(self, line: str, pad: int = 0) -> None:
        """Draw ``line`` over the previous one (padded with blanks to ``pad`` columns at most)."""
        width = terminal_width()
        text = line[: width - 1]
        if pad:
            text = text.ljust(min(width - 1, pad))
        try:
            self.stream.write("\r" + text)
            self.stream.flush()
            self._drawn = True
        except (OSError, ValueError):
            self.enabled = False

    def close(self) -> None:
        """Erase the line so what follows starts on a clean one."""
        if self.enabled and self._drawn:
            try:
                self.stream.write("\r" + " " * (terminal_width() - 1) + "\r")
                self.stream.flush()
            except (OSError, ValueError):
                pass
        self._drawn = False

    def __enter__(self) -> "StatusLine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
