"""Serving: accept streams, authenticate them under a deadline, hand channels to a handler.

Theory of operation
-------------------
:func:`serve` runs one accept loop per trio :class:`~trio.abc.Listener`
(for an onion service: the loopback socket tor forwards to) in its own
nursery, and reports readiness with ``task_status.started(server)``::

    accept loop ──► slot free? ──no──► close the stream at once (shed)
                        │yes
                        ▼
                  session task:  accept() under the handshake deadline
                        │            (the slot is held only until here)
                        ▼
                  handler(channel), then channel.aclose()

*Unauthenticated work is bounded.* Every stream that has not finished the
handshake holds one of ``max_pending`` slots and has ``handshake_timeout``
seconds to finish it (daemon policy: the one deadline the transport owns).
When every slot is taken a new stream is closed before any byte is read or
any key computed, so a flood of idle or slow connections costs a file
descriptor for an instant, not a hybrid handshake each. Authenticated
sessions hold no slot: their number is the application's business.

*Failures stay local.* A failed handshake (a RemoteProtocolError, a
TransportError, the deadline) and a handler that raises an
:class:`~onionpost.errors.OnionpostError` are logged and end that session
only. Any other exception is a bug and propagates, taking the listener down
loudly, as an exception in a nursery does.

*Logs* are structured: the message is ``"<event> key=value ..."`` and the
same fields are attached to the record (``extra``) as ``event``, ``conn``,
``error``, ``close_code``. One line per failed handshake or handler; shed
streams are only counted (DEBUG), with one warning when the slots fill up
and a note when they free, so a flood of connections is not a flood of logs.
Lines never hold key material, message contents, or the peer's address (the
handler knows whom it talks to and may log it by its own policy); ``conn``
is a per-listener serial to correlate lines.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, NoReturn

import trio

from onionpost._logs import safe
from onionpost.errors import (
    CloseCode,
    ConfigError,
    OnionpostError,
    RemoteProtocolError,
    TransportError,
)
from onionpost.limits import HANDSHAKE_TIMEOUT, MAX_PENDING_HANDSHAKES
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity, StaticKey
from onionpost.proto.session import PeerDecision
from onionpost.transport._channel import SecureChannel, accept

__all__ = ["Handler", "ServeStatistics", "Server", "serve"]

log = logging.getLogger("onionpost.transport")

Handler = Callable[[SecureChannel], Awaitable[object]]

# accept() errors that mean "out of descriptors or memory for now" (the same
# set as trio.serve_listeners): wait and retry rather than crash.
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_ACCEPT_CAPACITY_SLEEP: Final = 0.1


@dataclass(frozen=True, slots=True)
class ServeStatistics:
    """A snapshot of a :class:`Server`'s counters."""

    pending_handshakes: int  # streams holding a handshake slot now
    active_sessions: int  # handlers running now
    accepted: int  # streams accepted in all, shed ones included
    shed: int  # streams closed at once because every slot was taken
    failed_handshakes: int  # handshakes that failed or ran out of time
    handler_errors: int  # handlers that raised an OnionpostError


class Server:
    """What :func:`serve` reports when it is ready: its listeners and counters."""

    def __init__(
        self,
        listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
        *,
        handler: Handler,
        identity: Identity,
        static: StaticKey | Callable[[], StaticKey],
        decide: Callable[[OnionAddress], PeerDecision],
        handshake_timeout: float,
        max_pending: int,
    ) -> None:
        self.listeners = tuple(listeners)
        self._handler = handler
        self._identity = identity
        self._static = static
        self._decide = decide
        self._handshake_timeout = handshake_timeout
        self._max_pending = max_pending
        self._pending = 0
        self._active = 0
        self._accepted = 0
        self._shed = 0
        self._shedding = False
        self._failed = 0
        self._handler_errors = 0

    def __repr__(self) -> str:
        return f"Server({len(self.listeners)} listeners, {self._pending} pending)"

    def statistics(self) -> ServeStatistics:
        return ServeStatistics(
            pending_handshakes=self._pending,
            active_sessions=self._active,
            accepted=self._accepted,
            shed=self._shed,
            failed_handshakes=self._failed,
            handler_errors=self._handler_errors,
        )

    async def _accept_loop(
        self, listener: trio.abc.Listener[trio.abc.Stream], nursery: trio.Nursery
    ) -> NoReturn:
        # Runs for the listener's lifetime: the caller's cancel scope ends it.
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:
                if exc.errno not in _ACCEPT_CAPACITY_ERRNOS:
                    raise
                _log(logging.WARNING, "accept_failed", error=errno.errorcode.get(exc.errno or 0))
                await trio.sleep(_ACCEPT_CAPACITY_SLEEP)
                continue
            self._accepted += 1
            conn = self._accepted
            if self._pending >= self._max_pending:
                # No handshake work for a stream we have no slot for.
                self._shed += 1
                # One warning per episode of full slots, not one per stream:
                # a flood of connections must not become a flood of logs.
                if not self._shedding:
                    self._shedding = True
                    _log(logging.WARNING, "slots_full", conn=conn, max_pending=self._max_pending)
                _log(logging.DEBUG, "shed", conn=conn)
                await trio.aclose_forcefully(stream)
                continue
            self._pending += 1
            nursery.start_soon(self._run_session, stream, conn)

    async def _run_session(self, stream: trio.abc.Stream, conn: int) -> None:
        try:
            with trio.fail_after(self._handshake_timeout):
                static = self._static if isinstance(self._static, StaticKey) else self._static()
                channel = await accept(
                    stream, identity=self._identity, static=static, decide=self._decide
                )
        except trio.TooSlowError:
            # accept() closed the stream when the deadline cancelled it.
            self._failed += 1
            _log(logging.INFO, "handshake_timeout", conn=conn)
            return
        except OnionpostError as exc:
            self._failed += 1
            _log(logging.INFO, "handshake_failed", conn=conn, **_describe(exc))
            return
        finally:
            self._pending -= 1
            if self._shedding and self._pending < self._max_pending:
                self._shedding = False
                _log(logging.INFO, "slots_free", shed=self._shed)
        _log(logging.DEBUG, "session_started", conn=conn)
        self._active += 1
        code = CloseCode.NORMAL
        try:
            await self._handler(channel)
        except trio.EndOfChannel:
            # The handler let the peer's Close escape: an ordinary end.
            pass
        except OnionpostError as exc:
            self._handler_errors += 1
            # A peer that vanishes or misbehaves is routine on the network;
            # an error of our own (the store, ...) is worth a warning.
            from_peer = isinstance(exc, RemoteProtocolError | TransportError)
            level = logging.INFO if from_peer else logging.WARNING
            _log(level, "handler_failed", conn=conn, **_describe(exc))
            if not from_peer:
                code = CloseCode.INTERNAL_ERROR
        finally:
            self._active -= 1
            await channel.aclose(code)
        _log(logging.DEBUG, "session_ended", conn=conn, close_code=channel.close_code)


async def serve(
    handler: Handler,
    listeners: Sequence[trio.abc.Listener[trio.abc.Stream]],
    *,
    identity: Identity,
    static: StaticKey | Callable[[], StaticKey],
    decide: Callable[[OnionAddress], PeerDecision],
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    max_pending: int = MAX_PENDING_HANDSHAKES,
    task_status: trio.TaskStatus[Server] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve onionpost sessions on ``listeners`` until cancelled.

    For each authenticated stream, ``await handler(channel)`` runs in this
    function's nursery; the channel is closed when it returns (with
    INTERNAL_ERROR if it raised an OnionpostError of our own, not one the
    peer caused). Letting ``trio.EndOfChannel`` escape is an ordinary end.
    ``static`` is the Noise static key, or a function returning the current
    one (taken at each handshake, so a key renewed while serving is used at
    once). ``decide(peer)`` accepts or refuses each verified initiator; it
    runs synchronously inside the handshake, so it must be quick (a lookup, no
    I/O). Start it with
    ``server = await nursery.start(serve, handler, listeners, ...)``.
    """
    if not listeners:
        raise ConfigError("serve() needs at least one listener")
    if max_pending < 1:
        raise ConfigError("max_pending must be at least 1")
    if not handshake_timeout > 0:
        raise ConfigError("handshake_timeout must be positive")
    server = Server(
        listeners,
        handler=handler,
        identity=identity,
        static=static,
        decide=decide,
        handshake_timeout=handshake_timeout,
        max_pending=max_pending,
    )
    async with trio.open_nursery() as nursery:
        for listener in server.listeners:
            nursery.start_soon(server._accept_loop, listener, nursery)
        task_status.started(server)
    # The accept loops only ever raise, so the nursery never exits normally.
    raise AssertionError("unreachable")  # pragma: no cover


def _describe(exc: OnionpostError) -> dict[str, object]:
    # The class and close code say what happened; the text of our errors
    # carries no secrets or contents (errors.py), but stays out of the
    # structured fields so a log pipeline can index on them safely.
    fields: dict[str, object] = {"error": type(exc).__name__}
    if isinstance(exc, RemoteProtocolError):
        fields["close_code"] = exc.close_code.name
    return fields


def _log(level: int, event: str, **fields: object) -> None:
    # safe(): no value, whatever its origin, can forge a field or a line.
    text = " ".join(f"{key}={safe(value)}" for key, value in fields.items())
    log.log(level, "%s %s", event, text, extra={"event": event, **fields})
