"""The store worker's thread: calls in order, one at a time, off the event loop;
a call not yet started can be cancelled, one under way runs to its end."""

from __future__ import annotations

import threading

import pytest
import trio

from onionpost.errors import StoreError
from onionpost.host import ThreadWorker


async def test_calls_run_in_order_one_at_a_time_off_the_loop() -> None:
    worker = ThreadWorker()
    loop_thread = threading.get_ident()
    ran: list[int] = []
    running = 0
    most = 0
    guard = threading.Lock()

    def call(n: int) -> int:
        nonlocal running, most
        with guard:
            running += 1
            most = max(most, running)
        assert threading.get_ident() != loop_thread
        ran.append(n)
        with guard:
            running -= 1
        return n * 2

    results: list[int] = []

    async def caller(n: int) -> None:
        results.append(await worker(call, n))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for n in range(50):
                nursery.start_soon(caller, n)
                await trio.lowlevel.checkpoint()  # each queued before the next
    assert ran == list(range(50))
    assert sorted(results) == [n * 2 for n in range(50)]
    assert most == 1


async def test_an_error_in_a_call_reaches_its_caller_and_the_worker_goes_on() -> None:
    worker = ThreadWorker()

    def fails() -> None:
        raise StoreError("the disk said no")

    with trio.fail_after(10):
        with pytest.raises(StoreError, match="the disk said no"):
            await worker(fails)
        assert await worker(len, "four") == 4


async def test_a_call_waiting_is_cancelled_and_one_under_way_finishes() -> None:
    worker = ThreadWorker()
    started = threading.Event()
    release = threading.Event()
    ran: list[str] = []

    def slow() -> str:
        started.set()
        release.wait(10)
        ran.append("slow")
        return "slow done"

    def waiting() -> None:
        ran.append("waiting")

    answers: list[str] = []

    async def first() -> None:
        answers.append(await worker(slow))

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with trio.CancelScope() as scope:
                nursery.start_soon(first)
                await trio.to_thread.run_sync(started.wait, 10)
                async with trio.open_nursery() as second:
                    second.start_soon(worker, waiting)
                    await trio.lowlevel.checkpoint()
                    second.cancel_scope.cancel()  # still queued: it never runs
            assert not scope.cancelled_caught
            release.set()
        assert answers == ["slow done"]
        assert await worker(len, "ab") == 2
    assert ran == ["slow"]


async def test_a_call_under_way_is_not_abandoned_when_its_caller_is_cancelled() -> None:
    worker = ThreadWorker()
    started = threading.Event()
    release = threading.Event()
    done: list[bool] = []

    def slow() -> None:
        started.set()
        release.wait(10)
        done.append(True)

    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker, slow)
                await trio.to_thread.run_sync(started.wait, 10)
                scope.cancel()
                # The caller is still waiting: its call runs to its end.
                assert not done
                release.set()
        assert done == [True]
