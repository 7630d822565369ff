"""The mailbox's tests without tor run on virtual time: trio's MockClock, jumping to
the next deadline as soon as every task waits (the server's store calls run on
the event loop: its worker is an ``InlineWorker``)."""

from __future__ import annotations

import pytest
from trio.testing import MockClock


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)
