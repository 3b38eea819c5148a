"""Real processes for the crash tests: the simulators on their own, and a reader that
drains a process's stdout in a thread, so a chatty process never blocks on a full pipe
while the test waits for the line it will kill it at."""

from __future__ import annotations

import fcntl
import json
import os
import queue
import re
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from tests.support.process import read_until, spawn, stop
from tests.support.province import SOURCE_IDS

PIPE_BYTES = 4096  # the smallest pipe Linux allows: one page
READ_BYTES = 256  # read ahead of the line being looked at by at most this


class Lines:
    """Every stdout line of ``process``, in order, as it is printed.

    With ``kill_at``, the reading thread SIGKILLs the process at the first line the predicate
    accepts, and reads no further: with the pipe shrunk to one page and read in small pieces,
    the process can print at most about 4 KiB more before its next write blocks — so a process
    that must print a few more lines before it can commit is held short of the commit even if
    the kill were slow to land."""

    def __init__(self, process: subprocess.Popen[str], kill_at: Callable[[str], bool] | None = None) -> None:
        assert process.stdout is not None
        self.process = process
        self.killed_at: str | None = None
        self._kill_at = kill_at
        self._fd = process.stdout.fileno()
        if kill_at is not None:
            fcntl.fcntl(self._fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        pending = b""
        while True:
            piece = os.read(self._fd, READ_BYTES)
            if not piece:
                break
            pending += piece
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", errors="replace") + "\n"
                self._queue.put(line)
                if self._kill_at is not None and self._kill_at(line):
                    self.process.kill()
                    self.killed_at = line
                    self._queue.put(None)
                    return
        self._queue.put(None)

    def next(self, deadline: float) -> str:
        """The next line; AssertionError at end of output or after ``deadline`` (monotonic)."""
        try:
            line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("no output before the deadline") from None
        if line is None:
            raise AssertionError(f"the process ended (exit {self.process.poll()}) before the expected line")
        return line

    def until(self, pattern: str, deadline: float) -> re.Match[str]:
        while True:
            match = re.search(pattern, self.next(deadline))
            if match:
                return match

    def wait_killed(self, timeout: float) -> str:
        """The line the process was killed at, once it is dead."""
        self._thread.join(timeout)
        assert self.killed_at is not None, "the process was never killed: its line never came"
        self.process.wait(timeout=10)
        return self.killed_at

    def close(self) -> None:
        """After the process ended: stop reading and close the pipe."""
        stop(self.process)
        self._thread.join(10)
        assert self.process.stdout is not None
        self.process.stdout.close()


@contextmanager
def simulators() -> Iterator[dict[str, str]]:
    """``python -m monitor.simulators --seed 2025`` as its own process: its URLs by system kind."""
    process = spawn("monitor.simulators", "--seed", "2025")
    try:
        urls = {}
        for _ in SOURCE_IDS:
            match = read_until(process, r"^(\w+) (http://127\.0\.0\.1:\d+)", time.monotonic() + 60)
            urls[match.group(1)] = match.group(2)
        yield urls
    finally:
        stop(process)
        assert process.stdout is not None
        process.stdout.close()


def set_fault(url: str, body: dict[str, object] | None) -> None:
    """Arm a fault on one simulated system (``None``: clear it) over its HTTP control endpoint."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{url}/_sim/fault", data=data, method="DELETE" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200


def seconds_until_ready(port: str, started: float, deadline: float) -> float:
    """Poll ``/readyz`` until it answers 200; seconds since ``started`` (monotonic)."""
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - started
        except OSError:  # 503 (HTTPError is an OSError) or not listening yet
            pass
        time.sleep(0.1)
    raise AssertionError("/readyz never answered 200")
