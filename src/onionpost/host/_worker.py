"""Store work off the event loop: the worker that runs it.

:class:`StoreWorker` runs one synchronous call at a time (a store call, or
CPU-bound work), off the event loop (:class:`ThreadWorker`: a worker thread,
so an fsync never stalls the loop) or on it (:class:`InlineWorker`: for tests
on trio's MockClock, where a thread at work looks like idleness). It is
injected, so the delivery engine, the owner's mailbox link, the endpoint's
local API backend and the mailbox's server hold no switch of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, Protocol, TypeVar

import trio

__all__ = ["InlineWorker", "StoreWorker", "ThreadWorker"]

T = TypeVar("T")


class StoreWorker(Protocol):
    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` (a store call, or CPU-bound work) and return its result."""


class ThreadWorker:
    """One call at a time in a worker thread (the store's connection is one)."""

    def __init__(self) -> None:
        self._limiter = trio.CapacityLimiter(1)

    def __repr__(self) -> str:
        return "ThreadWorker()"

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await trio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self._limiter)


class InlineWorker:
    """Calls on the event loop: for tests on virtual time only."""

    def __repr__(self) -> str:
        return "InlineWorker()"

    async def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        await trio.lowlevel.checkpoint()
        return fn(*args, **kwargs)
