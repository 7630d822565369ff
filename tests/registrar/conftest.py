"""The registrar's tests without tor run on virtual time: trio's MockClock,
jumping to the next deadline as soon as every task waits."""

from __future__ import annotations

import pytest
from trio.testing import MockClock


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)
