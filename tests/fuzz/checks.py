"""What every fuzz test asserts about a loader: it returns, or raises the
documented error carrying usable problems — never anything else, never slowly."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from hypothesis import HealthCheck, settings

from monitor.errors import ConfigError

T = TypeVar("T")
# A loader given a file of a few kilobytes must answer well within this, whatever
# the file holds; generous for a loaded 2-core CI machine, far below a hang.
SLOW = 2.0
# Past this a loader is hanging (an alias bomb expanding): stop it, so the test fails
# instead of holding CI until its job timeout.
HANG = 10.0


class Hang(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise ``Hang`` inside the body after ``seconds`` (SIGALRM: main thread, POSIX)."""
    def interrupt(signum: int, frame: object) -> None:
        raise Hang(f"still running after {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def loads_or_config_error(load: Callable[[], T]) -> T | ConfigError:
    """Run ``load``; a ConfigError is an answer too, if each problem names its file
    and says what is wrong. Any other exception propagates and fails the test."""
    started = time.monotonic()
    try:
        with deadline(HANG):
            result: T | ConfigError = load()
    except ConfigError as error:
        assert error.problems, "a ConfigError without problems tells the operator nothing"
        for problem in error.problems:
            assert isinstance(problem.file, str) and problem.file, problem
            assert isinstance(problem.message, str) and problem.message.strip(), problem
            assert problem.line is None or problem.line >= 1, problem
        str(error)  # the message the operator sees must be printable
        result = error
    elapsed = time.monotonic() - started
    assert elapsed < SLOW, f"took {elapsed:.1f}s"
    return result


def fuzz(max_examples: int) -> settings:
    """Reproducible in CI (same examples every run, no example database), no
    per-example deadline (the loaders' own bound is SLOW), one bug at a time."""
    return settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
                    report_multiple_bugs=False,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])
