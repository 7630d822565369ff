"""A service home's pieces for its session server, without tor: who tor is
told to authorize (and its retries), and sessions per peer."""

from __future__ import annotations

import logging

import pytest
import trio
from trio.testing import MockClock

from onionpost.errors import TorError
from onionpost.host import CLIENTS_RETRY, ClientsPublisher, PeerSessions

log = logging.getLogger("onionpost.test-service")


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)


def test_sessions_per_peer_are_bounded_and_counted_back() -> None:
    sessions: PeerSessions[int] = PeerSessions(2)
    assert sessions.admit(b"a", 1)
    assert sessions.admit(b"a", 2)
    assert not sessions.admit(b"a", 3)  # over the bound: not counted
    assert sessions.admit(b"b", 4)  # another peer's are its own
    assert sorted(sessions.of(b"a")) == [1, 2]
    sessions.leave(b"a", 1)
    assert sessions.admit(b"a", 3)
    sessions.leave(b"a", 2)
    sessions.leave(b"a", 3)
    sessions.leave(b"a", 3)  # twice: nothing more happens
    assert list(sessions.of(b"a")) == []
    assert [key for key, _ in sessions.items()] == [b"b"]


async def test_changed_clients_are_told_and_a_failure_is_retried(
    clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    clients = [b"k1"]
    told: list[list[bytes]] = []
    failures = [TorError("tor is away")]

    async def tell() -> None:
        if failures:
            raise failures.pop()
        told.append(list(clients))

    publisher = ClientsPublisher(lambda: list(clients), tell, log=log)
    async with trio.open_nursery() as nursery:
        publisher.start(nursery)
        await publisher.wait_published()  # nothing changed since the start
        assert told == []
        clients.append(b"k2")
        publisher.changed()
        before = trio.current_time()
        with trio.fail_after(CLIENTS_RETRY + 1):
            await publisher.wait_published()
        assert trio.current_time() - before >= CLIENTS_RETRY  # told again after the retry
        assert told == [[b"k1", b"k2"]]
        assert "event=authorize_failed error=TorError" in caplog.text
        assert "event=clients_authorized count=2" in caplog.text
        nursery.cancel_scope.cancel()


async def test_without_tor_to_tell_nothing_waits(clock: MockClock) -> None:
    clients = [b"k1"]
    publisher = ClientsPublisher(lambda: list(clients), None, log=log)
    async with trio.open_nursery() as nursery:
        publisher.start(nursery)
        clients.append(b"k2")
        publisher.changed()
        with trio.fail_after(1):
            await publisher.wait_published()
        nursery.cancel_scope.cancel()
