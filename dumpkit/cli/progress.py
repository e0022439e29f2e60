"""A dependency-free progress bar for long scans: drawn on a terminal only, never in a pipe."""
from __future__ import annotations

import time
from typing import IO, Callable, Optional

from ..statusline import StatusLine, terminal_width


class Progress(StatusLine):
    """``[#######.......]  42%  3.1 GiB/7.4 GiB  1.8 GB/s  eta 2s`` on ``stream`` (stderr).

    Disabled (every call a no-op) unless ``stream`` is a terminal and ``enabled`` is true;
    redraws at most ``rate`` times a second, so it costs nothing measurable.
    """

    def __init__(self, total: int, *, stream: Optional[IO[str]] = None, enabled: Optional[bool] = None,
                 label: str = "scan", rate: float = 10.0, clock: Callable[[], float] = time.perf_counter) -> None:
        super().__init__(stream, enabled)
        self.enabled = self.enabled and total > 0
        self.total = total
        self.done = 0
        self.label = label
        self._clock = clock
        self.start = clock()
        self._interval = 1.0 / rate
        self._last = 0.0
        # the speed is measured from the first update on (opening and indexing are not part of
        # it), and over the last few seconds once there are some, so the ETA is sane from the
        # first frame and follows a scan that speeds up (cached part) or slows down (cold part)
        self._t_first: Optional[float] = None
        self._d_first = 0
        self._window: list = []

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = self._clock()
        if self._t_first is None:
            # the first batch's time is unknown (it includes opening): measure from here on
            self._t_first, self._d_first = now, done
            self._window = [(now, done)]
            self._last = now
            self._draw(now)                  # 'eta --' until a speed has been measured
            return
        self._window.append((now, done))
        while len(self._window) > 2 and now - self._window[1][0] >= 3.0:
            self._window.pop(0)
        if now - self._last < self._interval and done < self.total:
            return
        self._last = now
        self._draw(now)

    def speed(self, now: float) -> Optional[float]:
        """Bytes per second over the last few seconds (None before two updates)."""
        if not self._window or len(self._window) < 2:
            return None
        t0, d0 = self._window[0]
        if now <= t0 or self.done <= d0:
            return None
        return (self.done - d0) / (now - t0)

    def _draw(self, now: float) -> None:
        width = terminal_width()
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        speed = self.speed(now)
        if speed:
            eta = (self.total - self.done) / speed
            rate = f"{speed / 1e9:.2f} GB/s  eta {_duration(eta)}"
        else:
            rate = "-.-- GB/s  eta --"
        tail = f" {frac * 100:3.0f}%  {_gib(self.done)}/{_gib(self.total)}  {rate}"
        bar_w = max(10, min(40, width - len(self.label) - len(tail) - 5))
        fill = int(bar_w * frac)
        self.show(f"{self.label} [{'#' * fill}{'.' * (bar_w - fill)}]{tail}")


def _duration(s: float) -> str:
    if s < 100:
        return f"{s:.0f}s"
    if s < 6000:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


def _gib(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f} GiB"
    return f"{n / (1 << 20):.0f} MiB"


class DownloadProgress(StatusLine):
    """``symbols: downloading ntkrnlmp.pdb from msdl.microsoft.com (12 done, 3 unreachable, 14 s)`` on
    stderr while symbol-server requests run, on a terminal only; erased when done.

    A context manager: it listens to :data:`dumpkit.symbolize.store.FETCH_LISTENERS`."""

    def __init__(self, stream: Optional[IO[str]] = None, enabled: Optional[bool] = None) -> None:
        super().__init__(stream, enabled)
        self.done = 0
        self.failed = 0
        self.start = time.perf_counter()

    def __call__(self, event: str, url: str, name: str, status: str) -> None:
        if event == "end":
            self.done += 1
            if status == "error":
                self.failed += 1
            return
        if not self.enabled:
            return
        host = url.split("//", 1)[-1].split("/", 1)[0]
        secs = time.perf_counter() - self.start
        done = f"{self.done} done" + (f", {self.failed} unreachable" if self.failed else "")
        self.show(f"symbols: {done}; downloading {name} from {host} ({secs:.0f} s; --offline skips servers)",
                  pad=1 << 16)

    def __enter__(self) -> "DownloadProgress":
        from ..symbolize.store import FETCH_LISTENERS
        FETCH_LISTENERS.append(self)
        return self

    def __exit__(self, *exc) -> None:
        from ..symbolize.store import FETCH_LISTENERS
        try:
            FETCH_LISTENERS.remove(self)
        except ValueError:
            pass
        self.close()
