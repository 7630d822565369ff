"""Store work off the event loop: the worker that runs it.

:class:`StoreWorker` runs one synchronous call at a time (a store call, or
CPU-bound work), off the event loop (:class:`ThreadWorker`: a worker thread,
so an fsync never stalls the loop) or on it (:class:`InlineWorker`: for tests
on trio's MockClock, where a thread at work looks like idleness). It is
injected, so the delivery engine, the owner's mailbox link, the endpoint's
local API backend and the mailbox's server hold no switch of their own.

:class:`ThreadWorker` keeps one thread of its own (started on the first call,
gone after ``IDLE_SECONDS`` without work) and a queue of calls: a call costs
a lock, a wake-up of that thread and one ``run_sync_soon`` back, about half
of what ``trio.to_thread.run_sync`` with a limiter costs (which also names
the thread twice a call and takes the limiter on the loop). Calls run in the
order they were made, one at a time, as the limiter of one did. A call not
yet started can be cancelled; one under way cannot (the store call runs to
its end, as with ``to_thread.run_sync``).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, Final, Protocol, TypeVar

import outcome
import trio

__all__ = ["InlineWorker", "StoreWorker", "ThreadWorker"]

T = TypeVar("T")

# Seconds a ThreadWorker's thread waits for work before it ends.
IDLE_SECONDS: Final = 10.0


class StoreWorker(Protocol):
    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` (a store call, or CPU-bound work) and return its result."""


class _Job:
    """One call waiting for (or in) the worker's thread."""

    __slots__ = ("call", "deliver")

    def __init__(
        self, call: Callable[[], Any], deliver: Callable[[outcome.Outcome[Any]], None]
    ) -> None:
        self.call = call
        self.deliver = deliver


class ThreadWorker:
    """One call at a time in a thread of its own (the store's connection is one);
    see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._jobs: deque[_Job] = deque()
        self._running = False  # a thread is there to take the jobs

    def __repr__(self) -> str:
        return f"ThreadWorker({len(self._jobs)} waiting)"

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        await trio.lowlevel.checkpoint_if_cancelled()
        task = trio.lowlevel.current_task()
        token = trio.lowlevel.current_trio_token()

        def deliver(result: outcome.Outcome[Any]) -> None:
            token.run_sync_soon(trio.lowlevel.reschedule, task, result)

        job = _Job(partial(fn, *args, **kwargs), deliver)
        with self._lock:
            self._jobs.append(job)
            if self._running:
                self._work.notify()
            else:
                self._running = True
                threading.Thread(target=self._serve, name="onionpost-store", daemon=True).start()

        def abort(_: Any) -> trio.lowlevel.Abort:
            with self._lock:
                try:
                    self._jobs.remove(job)  # not started: it never runs
                except ValueError:
                    return trio.lowlevel.Abort.FAILED  # under way: it finishes
            return trio.lowlevel.Abort.SUCCEEDED

        result: T = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def _serve(self) -> None:
        """The thread: the jobs in order, until none came for IDLE_SECONDS."""
        try:
            while True:
                with self._lock:
                    while not self._jobs:
                        if not self._work.wait(IDLE_SECONDS) and not self._jobs:
                            self._running = False
                            return
                    job = self._jobs.popleft()
                job.deliver(outcome.capture(job.call))
                del job
        except BaseException:
            # Only delivering can fail (the run is gone): the next call starts a thread.
            with self._lock:
                self._running = False
            raise


class InlineWorker:
    """Calls on the event loop: for tests on virtual time only."""

    def __repr__(self) -> str:
        return "InlineWorker()"

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args, **kwargs)
