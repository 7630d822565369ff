"""The daemon tests run on virtual time: trio's MockClock, jumping to the next
deadline as soon as every task waits. The engine under test runs its store
calls on the event loop (``InlineWorker``), so store work
is never mistaken for idleness. Those on the private Tor network (marked
``tor``) keep their endpoints' homes under ``root``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from trio.testing import MockClock

from onionpost.testing.doubles import short_tmpdir


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory under /tmp for homes run as processes (their sockets' paths
    must fit AF_UNIX's 107 bytes; pytest's tmp_path may not), removed after."""
    with short_tmpdir() as made:
        yield made
