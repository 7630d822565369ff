"""Group commit: writes nobody waits for ride on the next one somebody waits
for; alone, they commit after LATER_SECONDS; at a stop, they are committed.

On virtual time (MockClock), the store calls on the event loop; a worker
that counts its calls tells how many transactions there were.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import trio
from trio.testing import MockClock

from onionpost.daemon.delivery._writer import LATER_SECONDS, GroupCommit
from onionpost.host import InlineWorker
from onionpost.proto.address import OnionAddress
from onionpost.store import Store

T = TypeVar("T")
KEY = bytes(range(32))


class _Counting:
    """InlineWorker, counting the calls (each a transaction of the writer)."""

    def __init__(self) -> None:
        self.calls = 0
        self._inline = InlineWorker()

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        self.calls += 1
        return await self._inline(fn, *args, **kwargs)


def _store(tmp_path: Path) -> tuple[Store, int]:
    store = Store.open(tmp_path / "store.sqlite", tmp_path / "files", KEY)
    contact = store.contacts.add_contact("bob", OnionAddress(os.urandom(32)), os.urandom(32), 1)
    return store, contact.id


def _seen(store: Store, contact_id: int) -> int | None:
    return next(c for c in store.contacts.all() if c.id == contact_id).last_seen_ms


async def test_a_later_write_rides_on_the_next_awaited_one(
    tmp_path: Path, clock: MockClock
) -> None:
    store, bob = _store(tmp_path)
    worker = _Counting()
    writer = GroupCommit(store, worker)
    done: list[object] = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            writer.write_later(
                done.append, partial(store.contacts.note_contact_seen, bob, 5, success=True)
            )
            await trio.sleep(LATER_SECONDS / 2)
            assert worker.calls == 0  # no transaction for it alone, yet
            assert _seen(store, bob) is None
            await writer.write(store.contacts.note_contact_seen, bob, 7, success=False)
            assert worker.calls == 1  # one transaction for both, in order
            assert done == [None]
            assert _seen(store, bob) == 7
            nursery.cancel_scope.cancel()
    finally:
        store.close()


async def test_a_later_write_alone_commits_after_later_seconds(
    tmp_path: Path, clock: MockClock
) -> None:
    store, bob = _store(tmp_path)
    worker = _Counting()
    writer = GroupCommit(store, worker)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            start = trio.current_time()
            writer.write_later(
                lambda _: None, partial(store.contacts.note_contact_seen, bob, 5, success=True)
            )
            with trio.fail_after(10 * LATER_SECONDS):
                while _seen(store, bob) is None:
                    await trio.sleep(LATER_SECONDS / 10)
            assert trio.current_time() - start >= LATER_SECONDS
            assert worker.calls == 1
            nursery.cancel_scope.cancel()
    finally:
        store.close()


async def test_later_writes_are_committed_when_the_writer_stops(
    tmp_path: Path, clock: MockClock
) -> None:
    store, bob = _store(tmp_path)
    writer = GroupCommit(store, InlineWorker())
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            await trio.lowlevel.checkpoint()
            writer.write_later(
                lambda _: None, partial(store.contacts.note_contact_seen, bob, 5, success=True)
            )
            await trio.lowlevel.checkpoint()
            nursery.cancel_scope.cancel()
        assert _seen(store, bob) == 5
    finally:
        store.close()
