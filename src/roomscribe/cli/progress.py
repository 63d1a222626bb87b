"""A terminal progress bar for long files."""

from __future__ import annotations

import sys


class ProgressBar:
    def __init__(self, enabled: bool = True, stream=None, width: int = 30):
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.width = width
        self._shown = False

    def update(self, done: float, total: float) -> None:
        if not self.enabled or total <= 0:
            return
        frac = max(0.0, min(1.0, done / total))
        filled = int(frac * self.width)
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (self.width - filled)}] {frac * 100:5.1f}% {done:7.1f}/{total:.1f} s"
        )
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
