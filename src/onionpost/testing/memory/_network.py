"""Endpoints and mailboxes without tor: real stores, real sessions, in memory.

Each :class:`Node` is what ``Daemon.run`` wires up besides tor: a real store
in a home under the network's directory, the :class:`~onionpost.daemon.Daemon`
(its delivery engine, its owner's mailbox link, its local API handlers) and
the real :func:`~onionpost.transport.serve` listener (handshake deadline,
pending-handshake cap) on a :class:`MemoryListener`. A :class:`MailboxNode`
is the same for a mailbox's :class:`~onionpost.mailbox.MailboxServer`.
They dial each other through a :class:`Network` of bounded pipes, which also
plays tor's part for a mailbox: without an authorized client key, not even
the descriptor.

Store calls run on the event loop (:class:`~onionpost.host.InlineWorker`),
so the network runs under trio's ``MockClock`` (virtual time: a worker
thread at work would look like idleness to it) as well as on real time.

A caller can also be the hostile end itself: :meth:`Network.connect_raw`
gives an authenticated channel to a node, and the stream under it, through
which it writes what no honest endpoint would (:func:`write_record`).
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import trio

from onionpost.daemon import Daemon, DeliveryEngine, DeliveryPolicy
from onionpost.errors import DialError
from onionpost.home import AgencyDirectory, Config, ContactCard, KdfCost, KeySource, Paths, Secrets
from onionpost.host import InlineWorker
from onionpost.limits import MAX_DELEGATION_LIFETIME, NOISE_TAG_LEN
from onionpost.mailbox import MailboxPolicy, MailboxServer
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.noise import KeyPair
from onionpost.proto.trust import Anchor, HybridSigner
from onionpost.registrar import RegistrarBook, RegistrarPolicy, RegistrarServer, init_registrar
from onionpost.store import Contact, MailboxStore, Store, Stored
from onionpost.testing.memory._pipes import MemoryListener
from onionpost.transport import SecureChannel, connect, serve

__all__ = [
    "AGENCY_SOURCE",
    "MailboxNode",
    "RegistrarNode",
    "Network",
    "Node",
    "befriend",
    "network",
    "until",
    "write_record",
]

# What seals the root and issuing keys of the agency of :meth:`Network.registrar`.
AGENCY_SOURCE = KeySource(passphrase="agency passphrase", kdf_cost=KdfCost.FLOOR)  # noqa: S106 - a test agency


@dataclass(eq=False)
class Node:
    """One endpoint: store, daemon and listener, without tor. Made by
    :meth:`Network.node`; :meth:`start` it in a nursery, :meth:`stop` it and
    start it again (its store stays open meanwhile)."""

    name: str
    paths: Paths
    secrets: Secrets
    store: Store
    config: Config
    network: Network
    daemon: Daemon | None = None  # the local API backend, while running
    engine: DeliveryEngine | None = None
    listener: MemoryListener | None = None
    scope: trio.CancelScope | None = None
    dials: int = 0  # to contacts, so far

    @property
    def address(self) -> OnionAddress:
        return self.secrets.identity.address

    def card(self) -> str:
        return ContactCard.issue(self.secrets).to_line()

    def contact(self, other: Node) -> Contact:
        found = self.store.contacts.contact_by_address(other.address)
        assert found is not None, f"{other.name} is not {self.name}'s contact"
        return found

    @property
    def up(self) -> bool:
        return self.engine is not None

    async def _dial(self, contact: Contact) -> SecureChannel:
        self.dials += 1
        return await self.network.dial(self, contact.address)

    async def _dial_mailbox(self, address: OnionAddress, client_auth: bytes) -> SecureChannel:
        return await self.network.dial(self, address, client_auth=client_auth)

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._run)

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        daemon = Daemon(
            self.paths,
            self.secrets,
            self.config,
            self.store,
            dial=self._dial,
            policy=DeliveryPolicy.from_config(self.config),
            mailbox_dial=self._dial_mailbox,
            worker=InlineWorker(),
        )
        engine = daemon.engine
        listener = MemoryListener()
        with trio.CancelScope() as scope:
            self.scope = scope
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(
                        partial(
                            serve,
                            engine.run_inbound,
                            [listener],
                            identity=self.secrets.identity,
                            static=lambda: self.secrets.static,
                            decide=engine.decide,
                        )
                    )
                    await nursery.start(engine.run)
                    nursery.start_soon(daemon.owner.run)
                    nursery.start_soon(daemon.registrar.run)
                    self.daemon, self.engine, self.listener = daemon, engine, listener
                    task_status.started()
            finally:
                self.daemon = None
                self.engine = self.listener = None
                self.scope = None
                daemon.close()

    def stop(self) -> None:
        """The workstation goes away (its tasks end, its store stays)."""
        if self.scope is not None:
            self.scope.cancel()

    async def send(self, to: Node, body: str) -> bytes:
        """Queue a text to a contact, as the local API does; its message id."""
        message_id = os.urandom(16)
        assert self.engine is not None, f"{self.name} is not running"
        await self.engine.queue_text(
            self.contact(to).id, m.Text(message_id, int(time.time() * 1000), body, "text/plain")
        )
        return message_id

    def state(self, message_id: bytes) -> str:
        return str(self.store.messages.message(message_id).state)

    def inbox_from(self, other: Node) -> list[Stored]:
        contact_id = self.contact(other).id
        return [s for s in self.store.messages.inbox(limit=100_000) if s.contact_id == contact_id]


@dataclass(eq=False)
class MailboxNode:
    """A mailbox: its store, server and listener, without tor. Made by
    :meth:`Network.mailbox`; its store is open while it runs."""

    name: str
    paths: Paths
    secrets: Secrets
    policy: MailboxPolicy
    server: MailboxServer | None = None
    store: MailboxStore | None = None
    listener: MemoryListener | None = None
    scope: trio.CancelScope | None = None

    @property
    def address(self) -> OnionAddress:
        return self.secrets.identity.address

    def authorized(self) -> set[bytes]:
        """The tor client keys the mailbox authorizes now (none while stopped)."""
        return set() if self.server is None else set(self.server.authorized_clients())

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._run)

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        store = MailboxStore.open(self.paths.mailbox_store, self.secrets.store_key)
        server = MailboxServer(store, self.policy, address=self.address, worker=InlineWorker())
        listener = MemoryListener()
        with trio.CancelScope() as scope:
            self.scope = scope
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(server.run)
                    await nursery.start(
                        partial(
                            serve,
                            server.run_inbound,
                            [listener],
                            identity=self.secrets.identity,
                            static=lambda: self.secrets.static,
                            decide=server.decide,
                        )
                    )
                    self.server, self.listener, self.store = server, listener, store
                    task_status.started()
            finally:
                self.server = self.listener = self.store = None
                self.scope = None
                store.close()

    def stop(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    async def code(self) -> str:
        """A new setup code, as ``onionpost mailbox code`` prints it."""
        assert self.server is not None, f"{self.name} is not running"
        issued = await self.server.new_setup_code(3600)
        return issued.code.to_text()


@dataclass(eq=False)
class RegistrarNode:
    """An agency's registrar (trust.md §8): its book, server and listener,
    without tor. Made by :meth:`Network.registrar`, with a new agency whose
    anchor is :attr:`anchor`."""

    name: str
    paths: Paths
    secrets: Secrets
    book: RegistrarBook
    anchor: Anchor
    policy: RegistrarPolicy
    server: RegistrarServer | None = None
    listener: MemoryListener | None = None
    scope: trio.CancelScope | None = None

    @property
    def address(self) -> OnionAddress:
        return self.secrets.identity.address

    def authorized(self) -> set[bytes]:
        return set() if self.server is None else set(self.server.authorized_clients())

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._run)

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        server = RegistrarServer(
            self.book, self.policy, address=self.address, worker=InlineWorker()
        )
        listener = MemoryListener()
        with trio.CancelScope() as scope:
            self.scope = scope
            try:
                async with trio.open_nursery() as nursery:
                    await nursery.start(server.run)
                    await nursery.start(
                        partial(
                            serve,
                            server.run_inbound,
                            [listener],
                            identity=self.secrets.identity,
                            static=lambda: self.secrets.static,
                            decide=server.decide,
                        )
                    )
                    self.server, self.listener = server, listener
                    task_status.started()
            finally:
                self.server = self.listener = None
                self.scope = None

    def stop(self) -> None:
        if self.scope is not None:
            self.scope.cancel()

    async def code(
        self, endpoint: str, unit: str = "", *, replaces: str = "", from_revoked: bool = False
    ) -> str:
        """A new enrolment code, as ``onionpost registrar code`` prints it."""
        assert self.server is not None, f"{self.name} is not running"
        issued = await self.server.new_code(
            endpoint, unit, 3600, replaces=replaces, from_revoked=from_revoked
        )
        return issued.code.to_text()

    async def revoke(self, address: OnionAddress, reason: str = "") -> None:
        assert self.server is not None, f"{self.name} is not running"
        await self.server.revoke(str(address), reason)


class Network:
    """Nodes by address, and dials between them over bounded pipes.

    Homes are made under ``root``; every node's config is ``config`` with the
    changes :meth:`node` is given. ``faults[address]`` is awaited instead of
    reaching that address, to inject a failure (it raises) or a delay."""

    def __init__(self, root: Path, config: Config) -> None:
        self.root = root
        self.config = config
        self.nodes: dict[OnionAddress, Node | MailboxNode | RegistrarNode] = {}
        self.faults: dict[OnionAddress, Callable[[], Awaitable[Any]]] = {}

    def __repr__(self) -> str:
        return f"Network({len(self.nodes)} nodes)"

    def _home(self, name: str) -> tuple[Paths, Secrets]:
        paths = Paths.for_home(self.root / name)
        for directory in paths.private_dirs:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return paths, Secrets.generate(name, now=int(time.time()))

    def node(self, name: str, **config: Any) -> Node:
        """A new endpoint (not started), its store open."""
        paths, secrets = self._home(name)
        store = Store.open(paths.store, paths.files, secrets.store_key)
        node = Node(name, paths, secrets, store, replace(self.config, **config), self)
        self.nodes[node.address] = node
        return node

    def mailbox(self, name: str, **policy: Any) -> MailboxNode:
        """A new mailbox (not started) with a :class:`MailboxPolicy` of ``policy``."""
        paths, secrets = self._home(name)
        box = MailboxNode(name, paths, secrets, replace(MailboxPolicy(), **policy))
        self.nodes[box.address] = box
        return box

    def registrar(
        self,
        name: str,
        agency: str = "acme",
        *,
        lifetime: int = MAX_DELEGATION_LIFETIME,
        **policy: Any,
    ) -> RegistrarNode:
        """A new registrar (not started) of a new agency (Ed25519 keys, made now,
        its issuing key delegated for ``lifetime`` seconds), in
        ``root/NAME-agency`` with :data:`AGENCY_SOURCE`."""
        paths, secrets = self._home(name)
        source = AGENCY_SOURCE
        directory, anchor = AgencyDirectory.create(
            self.root / f"{name}-agency",
            agency,
            source,
            now=int(time.time()),
            lifetime=lifetime,
            mldsa=False,
        )
        signer = directory.issuer(source)
        assert isinstance(signer, HybridSigner)
        book = init_registrar(paths.registrar, directory, signer, secrets.store_key)
        node = RegistrarNode(
            name, paths, secrets, book, anchor, replace(RegistrarPolicy(), **policy)
        )
        self.nodes[node.address] = node
        return node

    async def dial(
        self, caller: Node, address: OnionAddress, *, client_auth: bytes | None = None
    ) -> SecureChannel:
        """What tor and the transport do for ``caller``: reach ``address`` (a
        mailbox only with an authorized client key) and run the handshake."""
        fault = self.faults.get(address)
        if fault is not None:
            await fault()
        target = self.nodes.get(address)
        if target is None or target.listener is None:
            raise DialError("the onion service is not reachable", reason="descriptor-not-found")
        if isinstance(target, MailboxNode | RegistrarNode):
            # As tor does with client authorization: without an authorized
            # key, not even the descriptor.
            public = None if client_auth is None else KeyPair.from_private(client_auth).public
            if public not in target.authorized():
                raise DialError("no client authorization", reason="client-auth-missing")
        stream = await target.listener.connect()
        return await connect(
            stream,
            identity=caller.secrets.identity,
            static=caller.secrets.static,
            peer=address,
        )

    async def connect_raw(
        self, caller: Node, target: Node
    ) -> tuple[SecureChannel, trio.abc.Stream]:
        """An authenticated channel from ``caller`` (not running an engine) to
        ``target``, and the stream under it, for writing what no honest
        endpoint would."""
        assert target.listener is not None, f"{target.name} is not running"
        stream = await target.listener.connect()
        channel = await connect(
            stream,
            identity=caller.secrets.identity,
            static=caller.secrets.static,
            peer=target.address,
        )
        return channel, stream

    def close(self) -> None:
        """Close the endpoints' stores (a mailbox closes its own when it stops)."""
        for node in self.nodes.values():
            if isinstance(node, Node):
                node.store.close()


async def write_record(channel: SecureChannel, stream: trio.abc.Stream, record: bytes) -> None:
    """Encrypt any bytes as one record of ``channel``'s session, padded to the
    smallest frame (spec.md §Records), and write the frame to ``stream``: what
    a hostile peer's session can send, and an honest one never does.

    No public call encrypts bytes that are not a record, by design; this one
    reaches into the channel's session for its sending cipher, so the record
    counter of the channel no longer matches (use the channel only to read
    after it)."""
    session = channel._session
    direction = session._send
    assert direction is not None, "the channel has no transport keys"
    plaintext = struct.pack(">H", len(record)) + record
    plaintext += bytes(512 - NOISE_TAG_LEN - len(plaintext))
    ciphertext = direction.cipher.encrypt_with_ad(b"", plaintext)
    await stream.send_all(struct.pack(">H", len(ciphertext)) + ciphertext)


def befriend(a: Node, b: Node) -> None:
    """Each adds the other as a contact (an engine already running learns it)."""
    now = int(time.time() * 1000)
    a.store.contacts.add_contact(b.name, b.address, b.secrets.client_auth_public, now)
    b.store.contacts.add_contact(a.name, a.address, a.secrets.client_auth_public, now)
    for x, y in ((a, b), (b, a)):
        if x.engine is not None:
            x.engine.add_contact(x.contact(y))


async def until(condition: Callable[[], bool], seconds: float = 120.0) -> None:
    """Wait for ``condition`` under a deadline (no fixed sleeps).

    Under trio's MockClock virtual time moves only when every task has been
    idle a moment, so each look costs no real time while work is under way."""
    with trio.fail_after(seconds):
        # A poll, not an Event: ``condition`` reads any state (a store, a server).
        while not condition():  # noqa: ASYNC110
            await trio.sleep(0.5)


@asynccontextmanager
async def network(root: Path, **config: Any) -> AsyncIterator[tuple[Network, trio.Nursery]]:
    """A :class:`Network` with homes under ``root`` and a nursery to start its
    nodes in; every node stops when the block ends, and its store is closed.

    The config retries quickly (after 1 s, at most every 30 s) and gives a
    dial 10 s; ``config`` changes it."""
    base = Config(retry_initial=1.0, retry_max=30.0, connect_timeout=10.0)
    net = Network(root, replace(base, **config))
    try:
        async with trio.open_nursery() as nursery:
            yield net, nursery
            nursery.cancel_scope.cancel()
    finally:
        net.close()
