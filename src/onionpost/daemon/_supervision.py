"""Small trio pieces the supervisors share (the delivery engine, the owner's
mailbox link, a mailbox's session server): a kick that is never lost, a token
bucket, and the telling failure out of a nursery's ExceptionGroup."""

from __future__ import annotations

import trio

from onionpost.errors import TransportError

__all__ = ["Kick", "TokenBucket", "first_failure"]


class Kick:
    """Wake every waiter once; later waiters wait for the next kick.

    A waiter that looked for work (awaiting meanwhile) passes the
    :attr:`generation` it saw before looking, so a kick in between is not
    lost: it returns at once.
    """

    def __init__(self) -> None:
        self._event = trio.Event()
        self.generation = 0

    def fire(self) -> None:
        self.generation += 1
        self._event.set()
        self._event = trio.Event()

    async def wait(self, since: int | None = None) -> None:
        if since is not None and since != self.generation:
            await trio.lowlevel.checkpoint()
            return
        await self._event.wait()


class TokenBucket:
    """``rate`` tokens a second, with a burst of twice that; :meth:`take` waits
    while the bucket is in debt."""

    def __init__(self, rate: float) -> None:
        self._rate = rate
        self._tokens = 2 * rate
        self._stamp = trio.current_time()

    async def take(self, n: int) -> None:
        now = trio.current_time()
        self._tokens = min(2 * self._rate, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= n
        if self._tokens < 0:
            await trio.sleep(-self._tokens / self._rate)


def first_failure(group: BaseException) -> BaseException:
    """What ended a failure domain, from the group its nursery raised.

    When one task fails, the others often fail with it because the stream
    was closed under them; the telling error is the first that is not a
    broken stream."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for leaf in leaves:
        if not isinstance(leaf, TransportError | trio.ClosedResourceError):
            return leaf
    return leaves[0] if leaves else group
