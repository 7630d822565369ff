"""A mailbox's server alone, and peers speaking its records: no tor, no endpoint.

:func:`running_mailbox` starts a :class:`~onionpost.mailbox.MailboxServer`
over a real store with :func:`~onionpost.transport.serve` (the real
listener: handshake deadline, pending-handshake cap) on a
:class:`MemoryListener`; a :class:`Peer` is an endpoint's identity (owner,
contact or stranger), which opens sessions to it and speaks the mailbox
records as a :class:`Client`. The server's clock is trio's clock (virtual
under ``MockClock``) counted from the real time at the start, so a signed
prekey made now verifies, and a caller moves time on with ``trio.sleep``.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Final

import trio

from onionpost.errors import TransportError
from onionpost.host import InlineWorker
from onionpost.mailbox import MailboxPolicy, MailboxServer
from onionpost.proto import envelope as env
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity, StaticKey
from onionpost.proto.pairing import SetupCode
from onionpost.store import MailboxStore
from onionpost.testing.memory._network import write_record
from onionpost.testing.memory._pipes import MemoryListener
from onionpost.transport import SecureChannel, connect, serve

__all__ = [
    "KEY",
    "Client",
    "Mailbox",
    "Peer",
    "envelope_bytes",
    "running_mailbox",
    "virtual_clock",
]

#: The store key of every :func:`running_mailbox` (to open its store again).
KEY: Final = bytes(range(32))


@dataclass(eq=False)
class Peer:
    """An endpoint's identity (owner, contact or stranger) and its Noise static key."""

    identity: Identity = field(default_factory=Identity.generate)
    client_auth_public: bytes = field(default_factory=lambda: os.urandom(32))

    def __post_init__(self) -> None:
        self.static = StaticKey.generate(self.identity, now=int(time.time()))

    @property
    def address(self) -> OnionAddress:
        return self.identity.address

    @property
    def key(self) -> bytes:
        return self.identity.address.public_key


class Client:
    """One session with the mailbox: requests in order, answers matched by req."""

    def __init__(self, peer: Peer, channel: SecureChannel, stream: trio.abc.Stream) -> None:
        self.peer = peer
        self.channel = channel
        self.stream = stream
        self.req = 0
        self.envelopes: list[m.MbEnvelope] = []

    def __repr__(self) -> str:
        return f"Client({self.peer.address}, req={self.req})"

    async def ask(self, make: Callable[[int], Any], *, req: int | None = None) -> Any:
        """Send ``make(req)``; the answer with that req (envelopes meanwhile are kept)."""
        self.req += 1
        number = self.req if req is None else req
        await self.channel.send(make(number))
        while True:
            record = await self.channel.receive()
            if isinstance(record, m.MbEnvelope):
                self.envelopes.append(record)
                continue
            assert getattr(record, "req", None) == number, record
            return record

    async def envelope(self) -> m.MbEnvelope:
        """The next pushed envelope."""
        if self.envelopes:
            return self.envelopes.pop(0)
        record = await self.channel.receive()
        assert isinstance(record, m.MbEnvelope), record
        return record

    async def ended(self) -> int | None:
        """Read until the mailbox ends the session; its close code (None: no Close)."""
        try:
            while True:
                await self.channel.receive()
        except trio.EndOfChannel:
            return self.channel.close_code
        except TransportError:
            return None

    async def write_record(self, record: bytes) -> None:
        """Encrypt any bytes as one record, as a hostile client's session would."""
        await write_record(self.channel, self.stream, record)

    # The requests, spelled out.

    async def pair(self, code: SetupCode, peer: Peer) -> m.MbResult:
        answer: m.MbResult = await self.ask(
            lambda r: m.MbPair(r, code.token(), peer.client_auth_public)
        )
        return answer

    async def register(self, contact: Peer) -> m.MbResult:
        answer: m.MbResult = await self.ask(
            lambda r: m.MbRegister(r, contact.key, contact.client_auth_public)
        )
        return answer

    async def deposit(self, owner: Peer, data: bytes) -> m.MbResult:
        answer: m.MbResult = await self.ask(lambda r: m.MbDeposit(r, owner.key, data))
        return answer

    async def status(self) -> Any:
        return await self.ask(m.MbStatus)


@dataclass(eq=False)
class Mailbox:
    """A running mailbox: its server, store, identity and listener."""

    root: Path
    peer: Peer
    store: MailboxStore
    server: MailboxServer
    listener: MemoryListener
    clock: Callable[[], int]
    # The authorized tor client keys, each time the server said they changed.
    changes: list[list[bytes]] = field(default_factory=list)

    @property
    def address(self) -> OnionAddress:
        return self.peer.address

    async def code(self, expires_s: int = 3600) -> SetupCode:
        return (await self.server.new_setup_code(expires_s)).code

    async def connect(self, peer: Peer) -> Client:
        stream = await self.listener.connect()
        channel = await connect(
            stream, identity=peer.identity, static=peer.static, peer=self.address
        )
        return Client(peer, channel, stream)

    async def connect_as(self, client: Client) -> Client:
        """A new session of the same peer."""
        return await self.connect(client.peer)

    def now_s(self) -> int:
        """The mailbox's time, in seconds (what prekeys are valid against)."""
        return self.clock() // 1000

    async def owner(self, peer: Peer | None = None) -> tuple[Peer, Client]:
        """A new peer paired as an owner, and its session."""
        peer = peer or Peer()
        code = await self.code()
        client = await self.connect(peer)
        result = await client.pair(code, peer)
        assert result.code == m.MbCode.OK, result
        return peer, client


def virtual_clock(start_ms: int) -> Callable[[], int]:
    """Milliseconds since the epoch: ``start_ms`` plus trio's clock."""
    return lambda: start_ms + int(trio.current_time() * 1000)


@asynccontextmanager
async def running_mailbox(root: Path, **policy: Any) -> AsyncIterator[Mailbox]:
    """A mailbox serving on memory streams until the block ends (store closed
    after), its store ``root / "mailbox.db"`` under :data:`KEY`, with a
    :class:`~onionpost.mailbox.MailboxPolicy` of ``policy``."""
    peer = Peer()
    store = MailboxStore.open(root / "mailbox.db", KEY)
    mailbox: Mailbox | None = None

    async def changed() -> None:
        assert mailbox is not None
        mailbox.changes.append(mailbox.server.authorized_clients())

    clock = virtual_clock(int(time.time() * 1000))
    server = MailboxServer(
        store,
        replace(MailboxPolicy(), **policy),
        address=peer.address,
        clients_changed=changed,
        clock=clock,
        worker=InlineWorker(),
    )
    listener = MemoryListener()
    mailbox = Mailbox(root, peer, store, server, listener, clock)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(server.run)
            await nursery.start(
                partial(
                    serve,
                    server.run_inbound,
                    [listener],
                    identity=peer.identity,
                    static=peer.static,
                    decide=server.decide,
                )
            )
            yield mailbox
            nursery.cancel_scope.cancel()
    finally:
        store.close()


def envelope_bytes(size: int = env.MIN_ENVELOPE, envelope_id: bytes | None = None) -> bytes:
    """Bytes with a valid envelope header: all a mailbox reads of an envelope."""
    header = bytes([env.ENVELOPE_VERSION]) + (envelope_id or os.urandom(16)) + os.urandom(16)
    return header + os.urandom(size - len(header))
