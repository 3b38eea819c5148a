"""Progress on the terminal for long work (backfills, big reports)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressPrinter:
    """Per-task progress: redrawn in place on a terminal, one line per step of 25 % otherwise."""

    def __init__(self, stream: TextIO | None = None, unit: str = "periods") -> None:
        self.stream = stream or sys.stderr
        self.unit = unit
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._state: dict[str, tuple[int, int]] = {}
        self._reported: dict[str, int] = {}

    def __call__(self, task: str, done: int, total: int) -> None:
        self._state[task] = (done, total)
        if self.tty:
            self._redraw()
            return
        quarter = 4 * done // max(total, 1)
        if quarter > self._reported.get(task, -1):
            self._reported[task] = quarter
            self.stream.write(f"  {task}: {done}/{total} {self.unit}\n")
            self.stream.flush()

    def _redraw(self) -> None:
        parts = []
        for task, (done, total) in self._state.items():
            width = 16
            filled = width * done // max(total, 1)
            parts.append(f"{task} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        elapsed = time.monotonic() - self.started
        self.stream.write("\r  " + "  ".join(parts) + f"  {elapsed:4.0f}s")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self._state:
            self.stream.write("\n")
            self.stream.flush()
