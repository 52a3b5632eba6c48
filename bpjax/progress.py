"""A dependency-free progress bar: steps done, rate and ETA, on stderr.

Shown by default where someone watches: a terminal, or a Jupyter notebook (whose
output redraws a line on ``\r``); ``sweep(..., progress=True/False)`` decides.
"""

import sys
import time


class Progress:
    def __init__(self, total: int, label: str = "", enabled: bool | None = None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = _interactive(self.stream) if enabled is None else enabled
        self.total, self.label, self.done = max(int(total), 1), label, 0
        self.start = time.perf_counter()
        self._last = 0.0

    def update(self, n: int, note: str = "") -> None:
        self.done += int(n)
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            self._draw(now, note)

    def _draw(self, now: float, note: str) -> None:
        frac = min(self.done / self.total, 1.0)
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else float("nan")
        bar = "#" * int(30 * frac) + "-" * (30 - int(30 * frac))
        self.stream.write(
            f"\r{self.label} [{bar}] {100 * frac:5.1f}% {_si(self.done)}/{_si(self.total)} "
            f"config-steps, {elapsed:5.1f}s elapsed, ETA {eta:5.1f}s {note}"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.perf_counter(), "")
            self.stream.write("\n")
            self.stream.flush()


def _si(n: float) -> str:
    for unit in ("", "k", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


def _interactive(stream) -> bool:
    """A terminal, or a Jupyter kernel's output stream (ipykernel's OutStream)."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed or not a file
        return False
