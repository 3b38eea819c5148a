"""The collector thresholds ``egovmon`` and the benchmarks start with (monitor/gctuning.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Iterator

import pytest

from monitor.gctuning import FIRST_GENERATION_THRESHOLD, tune_gc


@pytest.fixture(autouse=True)
def _restore_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_the_first_generation_threshold_is_raised_and_the_others_kept() -> None:
    gc.set_threshold(700, 11, 12)
    tune_gc()
    assert gc.get_threshold() == (FIRST_GENERATION_THRESHOLD, 11, 12)


def test_a_higher_threshold_set_by_the_operator_is_never_lowered() -> None:
    gc.set_threshold(FIRST_GENERATION_THRESHOLD * 5, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (FIRST_GENERATION_THRESHOLD * 5, 10, 10)


def test_egovmon_starts_with_the_tuned_thresholds() -> None:
    """The console entry point, not only the function: what the daemon really runs with."""
    probe = ("import gc, sys, monitor.cli as cli; cli.app = lambda: print(gc.get_threshold()[0]); cli.main()")
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert int(shown.stdout) == FIRST_GENERATION_THRESHOLD
