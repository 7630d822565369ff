"""The daemon tests run on virtual time: trio's MockClock, jumping to the next
deadline as soon as every task waits. The engine under test runs its store
calls on the event loop (``InlineWorker``), so store work
is never mistaken for idleness.
"""

from __future__ import annotations

import pytest
from trio.testing import MockClock


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)
