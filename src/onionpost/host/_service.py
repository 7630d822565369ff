"""A home run as a service: a client-authorized onion service, its session
server and a local API (a mailbox, an agency's registrar).

Theory of operation
-------------------
::

    ServiceHome.run()
    └── host.running         the OnionHost: the local control socket with the
        │                    home's ServiceBackend, our tor supervised
        ├── server.run       the role's server; its ClientsPublisher tells tor
        │                    who is authorized, after each change
        ├── host.serve       inbound onion streams -> handshakes -> server.run_inbound
        └── host.publish     the onion service, client-authorized

The onion service is published from the home's identity with client
authorization (rend-spec-v3 §2.5.1.2): only clients holding a key the server
lists in ``authorized_clients()`` can even fetch its descriptor. Whenever
that list changes the server's :class:`ClientsPublisher` calls back
(:meth:`ServiceHome.authorize`), and the new list is handed to tor.

:class:`ServiceBackend` answers what every such home answers (``whoami``,
``status``: its address and its tor's state, events); a role's backend adds
its own handlers, and the API server refuses everything an endpoint does as
a configuration error. A one-time code a backend makes is no use before tor
knows its key: :meth:`ServiceBackend.published_qr` waits (a little) for
that, and draws the code for a terminal.

A server bounds the sessions each peer holds with :class:`PeerSessions`;
one over the bound is closed at once (:func:`refuse_session`). It reads a
session's records through a :class:`MeteredReceiver`, so many a second at
most.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Awaitable, Callable, ItemsView, Iterable
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

import trio

from onionpost import api
from onionpost.errors import CloseCode, OnionpostError
from onionpost.home import Config, ContactCard, Paths, Secrets
from onionpost.host._backend import Handlers
from onionpost.host._events import EventHub
from onionpost.host._onion import OnionHost
from onionpost.host._supervision import Kick, TokenBucket
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.session import PeerDecision
from onionpost.transport import SecureChannel

__all__ = [
    "CLIENTS_RETRY",
    "CLOSE_GRACE",
    "PUBLISH_WAIT",
    "ClientsPublisher",
    "MeteredReceiver",
    "PeerSessions",
    "ServiceBackend",
    "ServiceHome",
    "ServiceServer",
    "qr_text",
    "refuse_session",
]

S = TypeVar("S")

# How long a backend waits for tor to be given a new code's key.
PUBLISH_WAIT: Final = 10.0
# Seconds before telling tor again about authorized clients after it failed.
CLIENTS_RETRY: Final = 5.0
# How long a closing session may take to say goodbye.
CLOSE_GRACE: Final = 2.0


def qr_text(data: str) -> str:
    """``data`` as a QR code drawn with block characters, for a terminal.

    A one-time code is upper-cased first: QR's alphanumeric mode then holds
    it in a smaller symbol, and the code reads back the same (it ignores
    case). segno is imported here only, when a code is made.
    """
    import segno

    symbol = segno.make(data.upper(), error="m", micro=False)
    out = io.StringIO()
    symbol.terminal(out=out, compact=True)
    return out.getvalue()


class ServiceServer(Protocol):
    """What :class:`ServiceHome` runs: a role's session server."""

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None: ...

    async def run_inbound(self, channel: SecureChannel) -> None: ...

    def decide(self, peer: OnionAddress) -> PeerDecision: ...

    def authorized_clients(self) -> list[bytes]: ...

    async def wait_published(self) -> None: ...


class ClientsPublisher:
    """Tells tor a server's authorized clients whenever they differ from what
    it was told.

    ``clients()`` is the list now; ``tell()`` hands it to tor (None: no tor
    to tell, as in tests), awaited one call at a time and tried again
    :data:`CLIENTS_RETRY` later when it raises. The server calls
    :meth:`changed` after anything that may change the list, and
    :meth:`start` in its own nursery. ``log`` is the server's logger.
    """

    def __init__(
        self,
        clients: Callable[[], list[bytes]],
        tell: Callable[[], Awaitable[None]] | None,
        *,
        log: logging.Logger,
    ) -> None:
        self._clients = clients
        self._tell = tell
        self._log = log
        self._changed = Kick()
        # The keys tor was last given, and a kick each time it is given new ones.
        self._told: list[bytes] = []
        self._published = Kick()

    def __repr__(self) -> str:
        return f"ClientsPublisher(told={len(self._told)})"

    def changed(self) -> None:
        """The authorized clients may have changed: look again."""
        self._changed.fire()

    def start(self, nursery: trio.Nursery) -> None:
        """Take the clients now as told (publishing the service gives tor them)
        and publish every change from then on, in ``nursery``."""
        self._told = self._clients()
        nursery.start_soon(self._run, self._told)

    async def _run(self, told: list[bytes]) -> None:
        while True:
            seen = self._changed.generation
            current = self._clients()
            if current != told and self._tell is not None:
                try:
                    await self._tell()
                except OnionpostError as exc:
                    self._log.warning("event=authorize_failed error=%s", type(exc).__name__)
                    await trio.sleep(CLIENTS_RETRY)
                    continue
                self._log.info("event=clients_authorized count=%d", len(current))
                told = self._told = current
                self._published.fire()
                continue
            await self._changed.wait(since=seen)

    async def wait_published(self) -> None:
        """Until tor has been given the keys authorized now (a new code's key
        among them). The caller bounds the wait."""
        while self._tell is not None and self._clients() != self._told:
            await self._published.wait()


class PeerSessions(Generic[S]):
    """The sessions each peer (by identity key) holds, at most ``most`` at once."""

    def __init__(self, most: int) -> None:
        self._most = most
        self._by_peer: dict[bytes, set[S]] = {}

    def __repr__(self) -> str:
        return f"PeerSessions({len(self._by_peer)} peers)"

    def admit(self, key: bytes, session: S) -> bool:
        """Count ``session`` as ``key``'s; False (and nothing counted) when
        ``key`` holds the most already."""
        held = self._by_peer.setdefault(key, set())
        if len(held) >= self._most:
            return False
        held.add(session)
        return True

    def leave(self, key: bytes, session: S) -> None:
        held = self._by_peer.get(key)
        if held is None:
            return
        held.discard(session)
        if not held:
            del self._by_peer[key]

    def of(self, key: bytes) -> Iterable[S]:
        return self._by_peer.get(key, ())

    def items(self) -> ItemsView[bytes, set[S]]:
        return self._by_peer.items()


class MeteredReceiver:
    """A session's records in, ``rate`` a second (with a burst of twice that):
    every record the session decrypted costs a token, Pings and ignored
    extensions too. While the bucket is in debt nothing is read, and tor's
    flow control slows the sender."""

    def __init__(self, channel: SecureChannel, rate: float) -> None:
        self._channel = channel
        self._bucket = TokenBucket(rate)
        self._counted = 0

    def __repr__(self) -> str:
        return f"MeteredReceiver(counted={self._counted})"

    async def receive(self) -> m.Message:
        """The next record; ``trio.EndOfChannel`` when the session ended."""
        record = await self._channel.receive()
        total = self._channel.records_received
        await self._bucket.take(total - self._counted)
        self._counted = total
        return record


async def refuse_session(channel: SecureChannel, serial: int, log: logging.Logger) -> None:
    """Close a session over :class:`PeerSessions`' bound at once (shielded)."""
    log.info("event=session_refused session=%d reason=too-many-sessions", serial)
    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
        await channel.aclose(CloseCode.RATE_LIMITED, "too many sessions")


class ServiceBackend:
    """What the local API of a home run as a service answers whatever its role
    (:class:`onionpost.host.Backend`, with a role's handlers added by
    :meth:`serving`). ``tor_status()`` is tor's state as the service sees it."""

    unserved: ClassVar[str]
    handlers: Handlers

    def __init__(
        self,
        secrets: Secrets,
        *,
        tor_status: Callable[[], api.TorStatus],
        hub: EventHub | None = None,
    ) -> None:
        self._secrets = secrets
        self._tor_status = tor_status
        self._hub = hub or EventHub()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def serving(self, own: Handlers) -> Handlers:
        """The handlers table: ``whoami`` and ``status``, then the role's ``own``."""
        return {api.Whoami: self.whoami, api.GetStatus: self.status, **own}

    async def whoami(self, request: api.Whoami) -> api.Identity:
        card = ContactCard.issue(self._secrets)
        return api.Identity(
            self._secrets.display_name, str(self._secrets.identity.address), card.to_line()
        )

    async def status(self, request: api.GetStatus) -> api.Status:
        return api.Status(
            address=str(self._secrets.identity.address),
            tor=self._tor_status(),
            outbox_depth=0,
            last_delivery_ms=None,
            contacts=(),
        )

    async def published_qr(self, server: ServiceServer, text: str) -> str:
        """A new code's ``text`` drawn as a QR code, once ``server`` has had tor
        given the code's key (or :data:`PUBLISH_WAIT` has passed)."""
        with trio.move_on_after(PUBLISH_WAIT):
            await server.wait_published()
        return await trio.to_thread.run_sync(qr_text, text)

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self._hub.subscribe(list(topics))

    def close(self) -> None:
        self._hub.close()


class ServiceHome:
    """A home run as a service: :meth:`run` until cancelled (the module docstring).

    A role builds its ``server`` with :meth:`authorize` as the callback for
    changed clients, then sets :attr:`backend` (over :attr:`hub` and
    :meth:`tor_status`) after this constructor. ``role`` tags the logs, in
    the role's ``log``.
    """

    server: ServiceServer
    backend: ServiceBackend

    def __init__(
        self,
        paths: Paths,
        secrets: Secrets,
        config: Config,
        server: ServiceServer,
        *,
        role: str,
        log: logging.Logger,
    ) -> None:
        self._secrets = secrets
        self._role = role
        self._log = log
        self.server = server
        self.hub = EventHub()
        self.host = OnionHost(
            paths,
            secrets,
            config,
            clients=server.authorized_clients,
            hub=self.hub,
            log=log,
            role=role,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._secrets.identity.address})"

    def tor_status(self) -> api.TorStatus:
        return self.host.tor_status

    async def authorize(self) -> None:
        """The server's authorized clients changed: tell tor (the server retries
        later when this raises, and calls one at a time)."""
        await self.host.authorize()

    async def run(
        self, *, task_status: trio.TaskStatus[OnionAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with self.host.running(self.backend) as nursery:
                await nursery.start(self.server.run)
                await self.host.serve(nursery, self.server.run_inbound, self.server.decide)
                clients = await self.host.publish()
                self.host.ready()
                self._log.info("event=ready role=%s clients=%d", self._role, len(clients))
                task_status.started(self._secrets.identity.address)
                await trio.sleep_forever()
        finally:
            self.backend.close()
