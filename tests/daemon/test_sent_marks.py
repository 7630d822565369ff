"""The ``sent`` marks, written late (``_sent.py``): what is acknowledged
within SENT_MARK_SECONDS is never marked; what is not is marked then, per
contact, in the order it left; past the bound the oldest are dropped
unmarked; a mark that waits for the writer holds back the next. On virtual
time (MockClock)."""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import Any, cast

import pytest
import trio
from trio.testing import MockClock

from onionpost.daemon.delivery import _sent
from onionpost.daemon.delivery._records import Parts
from onionpost.daemon.delivery._sender import sent_marker
from onionpost.daemon.delivery._sent import SENT_MARK_SECONDS, SentMarks
from onionpost.errors import NoSpaceError


def _ids(n: int) -> list[bytes]:
    return [os.urandom(16) for _ in range(n)]


async def test_an_acknowledged_text_is_never_marked_and_the_rest_are_when_due(
    clock: MockClock,
) -> None:
    marks = SentMarks()
    marked: list[tuple[int, list[bytes], float]] = []

    async def mark(contact_id: int, ids: list[bytes]) -> None:
        marked.append((contact_id, ids, trio.current_time()))

    to_bob, to_carol = _ids(3), _ids(2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(marks.run, mark)
        start = trio.current_time()
        marks.left(1, to_bob)
        marks.left(2, to_carol)
        await trio.sleep(SENT_MARK_SECONDS / 2)
        marks.settled(to_bob[:2] + to_carol)  # acked in time
        assert marked == []
        await trio.sleep(SENT_MARK_SECONDS)
        assert [(c, ids) for c, ids, _ in marked] == [(1, to_bob[2:])]
        assert marked[0][2] - start == pytest.approx(SENT_MARK_SECONDS)
        assert len(marks) == 0
        # Nothing held: it waits for the next without spinning.
        later = _ids(1)
        marks.left(1, later)
        await trio.sleep(2 * SENT_MARK_SECONDS)
        assert [ids for _, ids, _ in marked] == [to_bob[2:], later]
        nursery.cancel_scope.cancel()


async def test_an_id_sent_again_is_marked_once(clock: MockClock) -> None:
    marks = SentMarks()
    marked: list[list[bytes]] = []
    again = _ids(2)

    async def mark(_contact_id: int, ids: list[bytes]) -> None:
        marked.append(ids)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(marks.run, mark)
        marks.left(1, again)
        await trio.sleep(SENT_MARK_SECONDS / 4)
        marks.left(1, again)  # a new session's read
        await trio.sleep(3 * SENT_MARK_SECONDS)
        assert marked == [again]
        nursery.cancel_scope.cancel()


async def test_past_the_bound_the_oldest_are_dropped_unmarked(
    clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sent, "SENT_MARKS_MAX", 4)
    marks = SentMarks()
    marked: list[tuple[int, list[bytes]]] = []

    async def mark(contact_id: int, ids: list[bytes]) -> None:
        marked.append((contact_id, ids))

    first, second, third = _ids(3), _ids(1), _ids(2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(marks.run, mark)
        marks.left(1, first)
        marks.left(2, second)
        assert len(marks) == 4
        marks.left(1, third)  # 6 held: the first send's 3 go, unmarked
        assert len(marks) == 3
        await trio.sleep(2 * SENT_MARK_SECONDS)
        # What was dropped was never marked; what stayed and was not acked was.
        assert marked == [(2, second), (1, third)]
        assert len(marks) == 0
        # Sends all acknowledged still count against the bound (each is a list
        # held until due): past it the oldest go, and an unacked one with them.
        unacked = _ids(1)
        marks.left(4, unacked)
        for _ in range(5):
            ids = _ids(1)
            marks.left(3, ids)
            marks.settled(ids)
            assert len(marks) <= 4
        assert len(marks) == 0  # the unacked one was the oldest
        await trio.sleep(2 * SENT_MARK_SECONDS)
        assert marked == [(2, second), (1, third)]
        nursery.cancel_scope.cancel()


async def test_a_mark_that_waits_for_the_writer_holds_back_the_next(clock: MockClock) -> None:
    marks = SentMarks()
    release = trio.Event()
    marked: list[tuple[int, float]] = []

    async def mark(contact_id: int, ids: list[bytes]) -> None:
        if contact_id == 1:
            await release.wait()  # the writer is busy: the mark waits for its write
        marked.append((contact_id, trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(marks.run, mark)
        marks.left(1, _ids(1))
        marks.left(2, _ids(1))
        await trio.sleep(3 * SENT_MARK_SECONDS)
        assert marked == []  # contact 2's mark waits behind contact 1's write
        release.set()
        await trio.sleep(0)
        with trio.fail_after(1):
            while len(marked) < 2:
                await trio.sleep(0.01)
        assert [c for c, _ in marked] == [1, 2]
        nursery.cancel_scope.cancel()


async def test_a_mark_whose_write_fails_is_logged_and_the_marks_go_on(
    clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The writer is busy, so the mark waits for its write, and that write
    fails (a full disk): the texts stay queued, the failure is logged, and
    the engine's task goes on marking what falls due next."""
    published: list[Any] = []
    writes: list[list[bytes]] = []

    class BusyWriter:
        def busy(self) -> bool:
            return True

        async def write(self, fn: Any, ids: list[bytes], *args: Any, **kwargs: Any) -> Any:
            writes.append(ids)
            if len(writes) == 1:
                raise NoSpaceError("the disk is full")
            return ids

    parts = SimpleNamespace(
        writer=BusyWriter(),
        store=SimpleNamespace(outbox=SimpleNamespace(mark_sent=None)),
        hub=SimpleNamespace(publish=published.append),
    )
    marks = SentMarks()
    first, second = _ids(2), _ids(1)
    with caplog.at_level(logging.WARNING, logger="onionpost.daemon"):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(marks.run, sent_marker(cast(Parts, parts)))
            marks.left(7, first)
            await trio.sleep(2 * SENT_MARK_SECONDS)
            assert writes == [first]
            assert published == []
            marks.left(7, second)
            await trio.sleep(2 * SENT_MARK_SECONDS)
            assert writes == [first, second]
            assert [p.id for p in published] == [second[0].hex()]
            nursery.cancel_scope.cancel()
    assert "event=sent_mark_failed contact=#7 error=NoSpaceError" in caplog.text
    assert "the disk is full" not in caplog.text  # the type only
