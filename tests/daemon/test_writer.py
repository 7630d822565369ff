"""Group commit: a write cut off by the daemon stopping is an error, never a result."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import trio

from onionpost.daemon.delivery._writer import GroupCommit
from onionpost.errors import StoreError
from onionpost.store import Store


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
    store = Store.open(tmp_path / "store.sqlite", tmp_path / "files", os.urandom(32))
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
    assert all("stopped before" in str(exc) for exc in outcome)


async def test_a_waiter_outside_the_writer_is_told_the_write_did_not_commit(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "store.sqlite", tmp_path / "files", os.urandom(32))
    worker = _StuckWorker()
    writer = GroupCommit(store, worker)
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as outer:
                writer_scope = trio.CancelScope()
                outer.start_soon(_run_in, writer_scope, writer)
                outer.start_soon(_cancel_when, worker.entered, writer_scope)
                # Only the writer is cancelled: this caller must hear of it.
                with pytest.raises(StoreError, match="stopped before this write committed"):
                    await writer.write(store.evidence.size)
    finally:
        store.close()


async def _run_in(scope: trio.CancelScope, writer: GroupCommit) -> None:
    with scope:
        await writer.run()


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
