"""Running the project's commands as real processes, the way a user does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def spawn(*args: str) -> subprocess.Popen[str]:
    """``python -m <args>`` from the repository, stdout piped line by line."""
    return subprocess.Popen([sys.executable, "-m", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, cwd=REPO,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def read_until(process: subprocess.Popen[str], pattern: str, deadline: float) -> re.Match[str]:
    """The first stdout line matching ``pattern`` before ``deadline`` (monotonic seconds)."""
    assert process.stdout is not None
    seen = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"never printed {pattern!r}; output:\n{''.join(seen)}")


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)
