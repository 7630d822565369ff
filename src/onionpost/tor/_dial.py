"""Dialing onion services through tor's SOCKS port, and a scheduler for dials.

Theory of operation
-------------------
:func:`socks_dial` connects to tor's SOCKS port (a Unix socket in the
DataDirectory of a tor we launch, spec §1.2; 127.0.0.1 for an attached tor
that has no Unix one) and runs the sans-I/O :class:`~onionpost.tor._socks.Socks5Connect` over it.
It reads exactly :attr:`~onionpost.tor._socks.Socks5Connect.bytes_needed`
bytes at a time, so no application byte is ever consumed by the negotiation
and the plain :class:`trio.SocketStream` can be handed to the caller as is.
trio's and the OS's errors become :class:`~onionpost.errors.DialError` here.

:class:`DialScheduler` bounds how many dials run at once (tor builds a limited
number of circuits in parallel, and an onion connect needs up to three of
them) and, when dials wait, lets the peer that most recently answered go
first: a contact that is online now is worth more than a backlog of offline
ones that will each take the full connect deadline to fail.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio

from onionpost.errors import ConfigError, DialError, LocalProtocolError
from onionpost.tor._socks import REASON_PROXY_CLOSED, Socks5Connect, SocksState

__all__ = ["REASON_PROXY_UNREACHABLE", "DialScheduler", "SocksAddress", "socks_dial"]

#: tor's SOCKS listener: a Unix socket, or (host, port) on loopback.
SocksAddress = tuple[str, int] | Path

REASON_PROXY_UNREACHABLE: Final = "proxy-unreachable"
# The longest negotiation is 2 + 2 + 262 bytes of replies; reading at least
# one byte per round, this many rounds can only mean a bug.
_MAX_NEGOTIATION_ROUNDS: Final = 600
# Peers whose last success we remember, oldest forgotten first.
MAX_REMEMBERED_PEERS: Final = 4096
DEFAULT_MAX_CONCURRENT_DIALS: Final = 8
# tor's own Isolate* logic needs a non-empty password with the username.
_ISOLATION_PASSWORD: Final = b"onionpost"


async def socks_dial(
    socks_address: SocksAddress,
    hostname: str,
    port: int,
    *,
    isolation: str | None = None,
) -> trio.SocketStream:
    """Connect to ``hostname:port`` through the SOCKS5 proxy at ``socks_address``.

    ``isolation``, when given, is sent as the SOCKS username: tor puts streams
    with different usernames on different circuits (``IsolateSOCKSAuth``).
    Raises :class:`DialError`; cancellation leaves nothing open.
    """
    credentials: dict[str, bytes] = {}
    if isolation is not None:
        credentials = {"username": isolation.encode("utf-8"), "password": _ISOLATION_PASSWORD}
    try:
        codec = Socks5Connect(hostname, port, **credentials)
    except LocalProtocolError as exc:
        raise ConfigError(str(exc)) from exc
    if isinstance(socks_address, Path):
        where = str(socks_address)
    else:
        where = "{}:{}".format(*socks_address)
    try:
        if isinstance(socks_address, Path):
            stream = await trio.open_unix_socket(str(socks_address))
        else:
            stream = await trio.open_tcp_stream(*socks_address)
    except OSError as exc:
        raise DialError(
            f"cannot reach tor's SOCKS port {where}: {exc.strerror or exc}",
            reason=REASON_PROXY_UNREACHABLE,
        ) from exc
    try:
        await _negotiate(stream, codec)
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream


async def _negotiate(stream: trio.SocketStream, codec: Socks5Connect) -> None:
    try:
        await stream.send_all(codec.greeting())
        for _ in range(_MAX_NEGOTIATION_ROUNDS):
            if codec.state is SocksState.CONNECTED:
                break
            data = await stream.receive_some(codec.bytes_needed)
            if not data:
                codec.receive_eof()
            reply = codec.receive_data(data)
            if reply:
                await stream.send_all(reply)
        else:
            raise LocalProtocolError("SOCKS negotiation did not finish", state=codec.state)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise DialError(
            "tor's SOCKS port closed the connection during negotiation",
            reason=REASON_PROXY_CLOSED,
        ) from exc
    # bytes_needed never asks for more than the reply, so nothing is left over.
    if codec.trailing:
        raise LocalProtocolError("SOCKS negotiation consumed application bytes")


@dataclass(order=True)
class _Waiter:
    rank: tuple[float, int]
    event: trio.Event = field(compare=False, default_factory=trio.Event)
    granted: bool = field(compare=False, default=False)
    abandoned: bool = field(compare=False, default=False)


class DialScheduler:
    """At most ``max_concurrent`` dials at once; recently successful peers first.

    Usage::

        async with scheduler.slot(address):
            stream = await tor.dial(address, port)
        scheduler.record_success(address)

    Waiters are served by the time of their key's last recorded success, most
    recent first; keys never seen succeed go last; ties in arrival order.
    """

    def __init__(self, max_concurrent: int = DEFAULT_MAX_CONCURRENT_DIALS) -> None:
        if max_concurrent < 1:
            raise ConfigError("max_concurrent must be at least 1")
        self._limit = max_concurrent
        self._active = 0
        self._waiters: list[_Waiter] = []
        self._sequence = 0
        self._last_success: OrderedDict[Hashable, float] = OrderedDict()

    def __repr__(self) -> str:
        return f"<DialScheduler active={self._active}/{self._limit} waiting={self.waiting}>"

    @property
    def active(self) -> int:
        return self._active

    @property
    def waiting(self) -> int:
        return sum(1 for w in self._waiters if not w.abandoned)

    def record_success(self, key: Hashable) -> None:
        """Note that a dial to ``key`` just worked: it goes first from now on."""
        self._last_success[key] = trio.current_time()
        self._last_success.move_to_end(key)
        while len(self._last_success) > MAX_REMEMBERED_PEERS:
            self._last_success.popitem(last=False)

    def forget(self, key: Hashable) -> None:
        self._last_success.pop(key, None)

    @asynccontextmanager
    async def slot(self, key: Hashable) -> AsyncIterator[None]:
        """Hold one of the dial slots for the body."""
        await self._acquire(key)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, key: Hashable) -> None:
        if self._active < self._limit and not self.waiting:
            self._active += 1
            await trio.lowlevel.checkpoint()
            return
        last = self._last_success.get(key)
        self._sequence += 1
        waiter = _Waiter(rank=(math.inf if last is None else -last, self._sequence))
        heapq.heappush(self._waiters, waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:
                self._release()  # it was handed to us as we were cancelled: pass it on
            else:
                waiter.abandoned = True
            raise

    def _release(self) -> None:
        # Bounded by the number of waiters: each iteration pops one.
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if waiter.abandoned:
                continue
            waiter.granted = True  # the slot passes over; _active is unchanged
            waiter.event.set()
            return
        self._active -= 1
