"""The ``sent`` marks, written late (``_sent.py``): what is acknowledged
within SENT_MARK_SECONDS is never marked; what is not is marked then, per
contact, in the order it left; past the bound the oldest are marked at once.
On virtual time (MockClock)."""

from __future__ import annotations

import os

import pytest
import trio
from trio.testing import MockClock

from onionpost.daemon.delivery import _sent
from onionpost.daemon.delivery._sent import SENT_MARK_SECONDS, SentMarks


def _ids(n: int) -> list[bytes]:
    return [os.urandom(16) for _ in range(n)]


async def test_an_acknowledged_text_is_never_marked_and_the_rest_are_when_due(
    clock: MockClock,
) -> None:
    marks = SentMarks()
    marked: list[tuple[int, list[bytes], float]] = []

    def mark(contact_id: int, ids: list[bytes]) -> None:
        marked.append((contact_id, ids, trio.current_time()))

    to_bob, to_carol = _ids(3), _ids(2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(marks.run, mark)
        start = trio.current_time()
        marks.left(1, to_bob, mark)
        marks.left(2, to_carol, mark)
        await trio.sleep(SENT_MARK_SECONDS / 2)
        marks.settled(to_bob[:2] + to_carol)  # acked in time
        assert marked == []
        await trio.sleep(SENT_MARK_SECONDS)
        assert [(c, ids) for c, ids, _ in marked] == [(1, to_bob[2:])]
        assert marked[0][2] - start == pytest.approx(SENT_MARK_SECONDS)
        assert len(marks) == 0
        # Nothing held: it waits for the next without spinning.
        later = _ids(1)
        marks.left(1, later, mark)
        await trio.sleep(2 * SENT_MARK_SECONDS)
        assert [ids for _, ids, _ in marked] == [to_bob[2:], later]
        nursery.cancel_scope.cancel()


async def test_an_id_sent_again_is_marked_once(clock: MockClock) -> None:
    marks = SentMarks()
    marked: list[list[bytes]] = []
    again = _ids(2)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(marks.run, lambda _c, ids: marked.append(ids))
        marks.left(1, again, lambda _c, ids: marked.append(ids))
        await trio.sleep(SENT_MARK_SECONDS / 4)
        marks.left(1, again, lambda _c, ids: marked.append(ids))  # a new session's read
        await trio.sleep(3 * SENT_MARK_SECONDS)
        assert marked == [again]
        nursery.cancel_scope.cancel()


def test_past_the_bound_the_oldest_are_marked_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sent, "SENT_MARKS_MAX", 4)
    marked: list[tuple[int, list[bytes]]] = []

    async def main() -> None:
        marks = SentMarks()
        first, second, third = _ids(3), _ids(1), _ids(2)
        marks.left(1, first, lambda c, ids: marked.append((c, ids)))
        marks.left(2, second, lambda c, ids: marked.append((c, ids)))
        assert marked == []
        marks.left(1, third, lambda c, ids: marked.append((c, ids)))  # 6 held: the first 3 go
        assert marked == [(1, first)]
        assert len(marks) == 3
        # Sends all acknowledged still count against the bound (each is a list held).
        for _ in range(5):
            ids = _ids(1)
            marks.left(3, ids, lambda c, ids: marked.append((c, ids)))
            marks.settled(ids)
        assert len(marks) <= 4

    trio.run(main, clock=MockClock(autojump_threshold=0))
