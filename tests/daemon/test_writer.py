"""Group commit: writes nobody waits for ride on the next one somebody waits
for; alone, they commit after LATER_SECONDS; at a stop, they are committed.
A write cut off by the daemon stopping is an error, never a result.

On virtual time (MockClock), the store calls on the event loop; a worker
that counts its calls tells how many transactions there were.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from trio.testing import MockClock

from onionpost.daemon.delivery._writer import LATER_SECONDS, GroupCommit
from onionpost.errors import StoreError
from onionpost.host import InlineWorker
from onionpost.proto.address import OnionAddress
from onionpost.store import Store, _wal
from onionpost.store import _database as database

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


async def test_a_write_while_alone_commits_at_once(tmp_path: Path, clock: MockClock) -> None:
    """The daemon starting (tor not up yet, the local API already answering):
    a send is queued, durably, not left waiting for the writer."""
    store, bob = _store(tmp_path)
    worker = _Counting()
    writer = GroupCommit(store, worker)
    writer.alone = True  # as the engine sets it until it runs
    followed: list[object] = []
    try:
        with trio.fail_after(1):
            seq = await writer.write(
                store.outbox.queue_text,
                bob,
                os.urandom(16),
                1,
                "early",
                "text/plain",
                None,
                then=followed.append,
            )
        assert worker.calls == 1
        assert followed == [seq]
        assert [o.body for o in store.outbox.pending(bob, 10)] == ["early"]
        # Its errors are the caller's, as in a group.
        with pytest.raises(StoreError):
            await writer.write(_fails)
        # Once the writer runs, writes go through it as ever.
        writer.alone = False
        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer.run)
            await writer.write(store.contacts.note_contact_seen, bob, 7, success=False)
            assert _seen(store, bob) == 7
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def _fails() -> None:
    raise StoreError("refused")


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


class _StuckWorker:
    """A store worker whose commit never finishes (a disk that hangs)."""

    def __init__(self) -> None:
        self.entered = trio.Event()

    async def __call__(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        await trio.sleep_forever()


async def test_a_write_whose_commit_is_cancelled_raises_and_its_follow_up_never_runs(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "store.sqlite", tmp_path / "files", KEY)
    worker = _StuckWorker()
    writer = GroupCommit(store, worker)
    followed: list[Any] = []
    outcome: list[BaseException] = []

    async def waiter() -> None:
        try:
            await writer.write(store.evidence.size)
        except StoreError as exc:
            outcome.append(exc)

    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.run)
                nursery.start_soon(waiter)
                writer.write_later(followed.append, store.evidence.size)
                await worker.entered.wait()
                # The daemon stops while the commit is in the worker.
                nursery.cancel_scope.cancel()
    finally:
        store.close()
    # The waiter was cancelled with the rest, or was told the write did not
    # commit; never handed a result that is not one, and ``then`` never ran.
    assert followed == []
    assert all("the daemon is stopping" in str(exc) for exc in outcome)


async def test_a_waiter_outside_the_writer_is_told_the_write_did_not_commit(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "store.sqlite", tmp_path / "files", KEY)
    worker = _StuckWorker()
    writer = GroupCommit(store, worker)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as outer:
                writer_scope = trio.CancelScope()
                outer.start_soon(_run_in, writer_scope, writer)
                outer.start_soon(_cancel_when, worker.entered, writer_scope)
                # Only the writer is cancelled: this caller must hear of it.
                with pytest.raises(StoreError, match="the daemon is stopping"):
                    await writer.write(store.evidence.size)
    finally:
        store.close()


async def _run_in(scope: trio.CancelScope, writer: GroupCommit) -> None:
    with scope:
        await writer.run()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()


class _BrokenWorker:
    """A store worker whose first call, once let go, fails with an exception
    that is no OnionpostError (a bug in a store call)."""

    def __init__(self) -> None:
        self.entered = trio.Event()
        self.go = trio.Event()

    async def __call__(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.entered.set()
        await self.go.wait()
        raise ValueError("row 7 of the outbox: not a text")


async def test_a_bug_in_a_commit_is_an_internal_error_to_every_waiter_and_goes_on_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store.open(tmp_path / "store.sqlite", tmp_path / "files", KEY)
    worker = _BrokenWorker()
    writer = GroupCommit(store, worker)
    told: list[StoreError] = []

    async def waiter() -> None:
        try:
            await writer.write(store.evidence.size)
        except StoreError as exc:
            told.append(exc)

    try:
        with trio.fail_after(10), pytest.RaisesGroup(ValueError, flatten_subgroups=True):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.run)
                nursery.start_soon(waiter)  # in the batch that fails
                await worker.entered.wait()
                nursery.start_soon(waiter)  # still waiting when the writer ends
                await trio.testing.wait_all_tasks_blocked()
                worker.go.set()
    finally:
        store.close()
    # Both callers hear the writes did not commit, and why: not a stop.
    assert len(told) == 2
    for exc in told:
        assert "internal error" in str(exc)
        assert "the daemon is stopping" not in str(exc)
    lines = [r.getMessage() for r in caplog.records if "store_writer_failed" in r.getMessage()]
    assert lines == ["event=store_writer_failed error=ValueError"]
    assert "row 7" not in caplog.text  # the type only, never the text


def _log_bytes(tmp_path: Path) -> int:
    """Where the WAL's log ends, as SQLite reads it (the file may be longer:
    a new log is written over the old one after a checkpoint)."""
    wal = tmp_path / "store.sqlite-wal"
    log = _wal.parse(wal.read_bytes() if wal.exists() else b"", database.PAGE_SIZE)
    return log.commits[-1][2] if log.commits else 0


class _HeldCheckpoints:
    """InlineWorker, holding a checkpoint call until ``go`` is set."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._inline = InlineWorker()
        self.checkpoint_waiting = trio.Event()
        self.go = trio.Event()

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        if fn == self._store.checkpoint_if_due:
            self.checkpoint_waiting.set()
            await self.go.wait()
        return await self._inline(fn, *args, **kwargs)


async def test_the_wal_checkpoint_runs_after_the_callers_have_their_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "_WAL_LIMIT", 0)  # every commit makes one due
    store, bob = _store(tmp_path)
    worker = _HeldCheckpoints(store)
    writer = GroupCommit(store, worker)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer.run)
                message_id = os.urandom(16)
                # Answered while the checkpoint is held: the caller never waits for one.
                await writer.write(
                    store.outbox.queue_text, bob, message_id, 1, "hello", "text/plain", None
                )
                await worker.checkpoint_waiting.wait()
                assert _log_bytes(tmp_path) > 0
                assert store.checkpoint_due()
                # Let go, the checkpoint moves the WAL into the file.
                worker.go.set()
                while store.checkpoint_due():
                    await trio.sleep(0.01)
                nursery.cancel_scope.cancel()
    finally:
        store.close()
    # Bound and checkpointed in order: the store opens with the text in it.
    with Store.open(tmp_path / "store.sqlite", tmp_path / "files", KEY) as again:
        assert again.messages.message(message_id, contact_id=bob) is not None


def test_deferred_checkpoints_still_bound_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store whose checkpoints are deferred, written by others than the
    writer (no checkpoint_if_due), still checkpoints past the hard limit."""
    monkeypatch.setattr(database, "_WAL_LIMIT", 8 * (1024 + 24))
    monkeypatch.setattr(database, "_WAL_HARD_LIMIT", 64 * (1024 + 24))
    store, bob = _store(tmp_path)
    try:
        store.defer_checkpoints()
        sizes = []
        for n in range(60):
            store.outbox.queue_text(bob, os.urandom(16), n, "x" * 900, "text/plain", None)
            sizes.append(_log_bytes(tmp_path))
        peak = sizes.index(max(sizes))
        assert max(sizes) > database._WAL_LIMIT  # not checkpointed at the soft limit
        assert max(sizes) <= database._WAL_HARD_LIMIT + 16 * (1024 + 24)  # one commit past it
        # Checkpointed at the hard limit: the next commit began a new log.
        assert sizes[peak + 1] <= 32 + 16 * (1024 + 24)
        if store.checkpoint_due():
            store.checkpoint_if_due()
        assert not store.checkpoint_due()
    finally:
        store.close()
