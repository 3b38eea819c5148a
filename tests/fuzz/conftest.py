"""Fixtures of the fuzz tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fuzz.rig import Rig


@pytest.fixture(scope="module")
def rig() -> Iterator[Rig]:
    """One loopback source for a module's examples (a server per example would cost seconds)."""
    made = Rig()
    yield made
    made.close()
