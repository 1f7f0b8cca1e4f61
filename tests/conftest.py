"""Small, generic test helpers shared by every test module."""

from __future__ import annotations

import pytest


class FakeClock:
    """A clock to inject where code asks for ``now``; tests move it by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
