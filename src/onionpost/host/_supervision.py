"""Small pieces the supervisors share (the delivery engine, the owner's
mailbox link, a mailbox's session server): a kick that is never lost, a token
bucket, the telling failure out of a nursery's ExceptionGroup, the error a
supervisor raises to end a session on purpose, and the one vocabulary in
which every failure is logged and reported (:func:`reason`).

The vocabulary, by exception (the first row that matches):

===========================  ============================================
:class:`Shed`                its ``reason`` (``idle``, ``too-many-...``)
:class:`DialError`           its ``reason`` (``descriptor-not-found``, ...)
:class:`MailboxRefusedError` ``mailbox-<MbCode>`` (``mailbox-quota-exceeded``)
:class:`RemoteProtocolError` ``protocol-<CloseCode>`` (``protocol-bad-message``)
:class:`TransportError`      ``timeout``, ``refused``, ``stream-ended``, ``stream-broken``
:class:`NoSpaceError`        ``our-disk-full``
:class:`StoreError`          ``our-store-failed``
any other onionpost error    its class name
anything else (a bug)        ``internal-<class name>``
===========================  ============================================

Every field read is structured (a reason, a code); no message text is parsed.
"""

from __future__ import annotations

import enum
from typing import Final

import trio

from onionpost.errors import (
    CloseCode,
    DialError,
    MailboxRefusedError,
    NoSpaceError,
    OnionpostError,
    RemoteProtocolError,
    StoreError,
    TransportError,
    TransportReason,
)
from onionpost.proto.messages import MbCode

__all__ = ["Kick", "Shed", "TokenBucket", "code_name", "first_failure", "reason"]

#: How :func:`reason` says each :data:`~onionpost.errors.TransportReason`.
TRANSPORT_WORDS: Final[dict[TransportReason, str]] = {
    "timeout": "timeout",
    "refused": "refused",
    "ended": "stream-ended",
    "broken": "stream-broken",
}


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


class Shed(OnionpostError):
    """We end a session on purpose, with a close code the peer sees.

    ``reason`` is the word for logs and ``status`` (:func:`reason`).
    """

    def __init__(self, message: str, *, code: CloseCode, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


def code_name(kind: type[enum.IntEnum], code: int | None) -> str:
    """``CloseCode.BAD_MESSAGE`` as ``bad-message``; an unknown code as its number."""
    if code is None:
        return "none"
    try:
        return kind(code).name.lower().replace("_", "-")
    except ValueError:
        return str(code)


def reason(exc: BaseException) -> str:
    """A failure in words, for logs and ``status``: never contents, never keys.

    The table is in the module docstring.
    """
    if isinstance(exc, Shed | DialError):
        return exc.reason
    if isinstance(exc, MailboxRefusedError):
        return f"mailbox-{code_name(MbCode, exc.code)}"
    if isinstance(exc, RemoteProtocolError):
        return f"protocol-{code_name(CloseCode, exc.close_code)}"
    if isinstance(exc, TransportError):
        return TRANSPORT_WORDS[exc.reason]
    if isinstance(exc, NoSpaceError):
        return "our-disk-full"
    if isinstance(exc, StoreError):
        return "our-store-failed"
    if isinstance(exc, OnionpostError):
        return type(exc).__name__
    return f"internal-{type(exc).__name__}"
