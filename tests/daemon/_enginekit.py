"""Endpoints for the delivery engine's tests: real stores, real sessions, no tor.

Each :class:`Node` is what ``Daemon.run`` wires up besides tor: a real SQLite
store in a temporary home, the :class:`DeliveryEngine`, and the real
``serve()`` listener (handshake deadline, pending-handshake cap) on an
in-process listener. Nodes dial each other through a :class:`Network` of
bounded in-memory pipes (a write waits while the other side has not read
``PIPE_CAPACITY`` bytes, as a Tor stream's window does), so flow control and
a peer that does not read behave as on the network.

A test can also be the hostile end itself: :meth:`Network.connect_raw` gives
a raw authenticated :class:`SecureChannel` to a node, through which it sends
whatever it likes.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import trio

from onionpost.daemon import Daemon, DeliveryEngine, DeliveryPolicy, InlineWorker
from onionpost.errors import DialError
from onionpost.home import Config, ContactCard, Paths, Secrets
from onionpost.mailbox import MailboxPolicy, MailboxServer
from onionpost.proto import messages as m
from onionpost.proto._crypto import KeyPair
from onionpost.proto.address import OnionAddress
from onionpost.store import Contact, MailboxStore, Store
from onionpost.transport import SecureChannel, connect, serve

PIPE_CAPACITY = 256 * 1024


class _Pipe:
    """One direction of a bounded in-memory byte stream."""

    def __init__(self, capacity: int) -> None:
        self.buffer = bytearray()
        self.capacity = capacity
        self.closed = False  # the writer closed
        self.broken = False  # the reader closed
        self.changed = trio.Event()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class _End(trio.abc.HalfCloseableStream):
    def __init__(self, out: _Pipe, into: _Pipe) -> None:
        self._out = out
        self._in = into
        self._closed = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(bytes(data))
        while view:
            if self._closed:
                raise trio.ClosedResourceError
            if self._out.broken or self._out.closed:
                raise trio.BrokenResourceError
            room = self._out.capacity - len(self._out.buffer)
            if room <= 0:
                await self._out.changed.wait()
                continue
            self._out.buffer += view[:room]
            view = view[room:]
            self._out._wake()
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        self._out.closed = True
        self._out._wake()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            if self._closed:
                raise trio.ClosedResourceError
            if self._in.buffer:
                n = len(self._in.buffer) if max_bytes is None else max_bytes
                data = bytes(self._in.buffer[:n])
                del self._in.buffer[:n]
                self._in._wake()
                await trio.lowlevel.checkpoint()
                return data
            if self._in.closed or self._in.broken:
                await trio.lowlevel.checkpoint()
                return b""
            await self._in.changed.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.closed = True
            self._in.broken = True
            self._out._wake()
            self._in._wake()
        await trio.lowlevel.checkpoint()


def pipe_pair(capacity: int = PIPE_CAPACITY) -> tuple[_End, _End]:
    a, b = _Pipe(capacity), _Pipe(capacity)
    return _End(a, b), _End(b, a)


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """What ``serve()`` accepts from: streams handed over by :meth:`connect`."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](64)

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await self._receive.aclose()

    async def connect(self) -> trio.abc.Stream:
        ours, theirs = pipe_pair()
        await self._send.send(theirs)
        return ours


@dataclass(eq=False)
class Node:
    """One endpoint: store, engine and listener, without tor."""

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
    dials: int = 0

    @property
    def address(self) -> OnionAddress:
        return self.secrets.identity.address

    def card(self) -> str:
        return ContactCard.issue(self.secrets).to_line()

    def contact(self, other: Node) -> Contact:
        found = self.store.contacts.contact_by_address(other.address)
        assert found is not None
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
        # Store calls on the event loop: a worker thread would look like
        # idleness to the MockClock (conftest.clock).
        policy = DeliveryPolicy.from_config(self.config)
        daemon = Daemon(
            self.paths,
            self.secrets,
            self.config,
            self.store,
            dial=self._dial,
            policy=policy,
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
        message_id = _new_id()
        assert self.engine is not None
        await self.engine.queue_text(
            self.contact(to).id, m.Text(message_id, int(time.time() * 1000), body, "text/plain")
        )
        return message_id

    def state(self, message_id: bytes) -> str:
        return str(self.store.messages.message(message_id).state)

    def inbox_from(self, other: Node) -> list[Any]:
        contact_id = self.contact(other).id
        return [s for s in self.store.messages.inbox(limit=100_000) if s.contact_id == contact_id]


@dataclass
class MailboxNode:
    """A mailbox: its store, server and listener, without tor."""

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
        return set() if self.server is None else set(self.server.authorized_clients())

    async def start(self, nursery: trio.Nursery) -> None:
        await nursery.start(self._run)

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        store = MailboxStore.open(self.paths.mailbox_store, self.secrets.store_key)
        server = MailboxServer(
            store, replace(self.policy, store_in_thread=False), address=self.address
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
        assert self.server is not None
        issued = await self.server.new_setup_code(3600)
        return issued.code.to_text()


def _new_id() -> bytes:
    return os.urandom(16)


class Network:
    """Nodes by address, and dials between them over bounded pipes."""

    def __init__(self, root: Path, config: Config) -> None:
        self.root = root
        self.config = config
        self.nodes: dict[OnionAddress, Node | MailboxNode] = {}
        # address -> what a dial to it does instead of connecting (a failure to inject)
        self.faults: dict[OnionAddress, Callable[[], Any]] = {}

    def node(self, name: str, **config: Any) -> Node:
        paths = Paths.for_home(self.root / name)
        for directory in paths.private_dirs:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        secrets = Secrets.generate(name, now=int(time.time()))
        store = Store.open(paths.store, paths.files, secrets.store_key)
        node = Node(name, paths, secrets, store, replace(self.config, **config), self)
        self.nodes[node.address] = node
        return node

    def mailbox(self, name: str, **policy: Any) -> MailboxNode:
        paths = Paths.for_home(self.root / name)
        for directory in paths.private_dirs:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        secrets = Secrets.generate(name, now=int(time.time()))
        box = MailboxNode(name, paths, secrets, replace(MailboxPolicy(), **policy))
        self.nodes[box.address] = box
        return box

    async def dial(
        self, caller: Node, address: OnionAddress, *, client_auth: bytes | None = None
    ) -> SecureChannel:
        fault = self.faults.get(address)
        if fault is not None:
            await fault()
        target = self.nodes.get(address)
        if target is None or target.listener is None:
            raise DialError("the onion service is not reachable", reason="descriptor-not-found")
        if isinstance(target, MailboxNode):
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
        assert target.listener is not None
        stream = await target.listener.connect()
        channel = await connect(
            stream,
            identity=caller.secrets.identity,
            static=caller.secrets.static,
            peer=target.address,
        )
        return channel, stream

    def close(self) -> None:
        for node in self.nodes.values():
            if isinstance(node, Node):
                node.store.close()


def befriend(a: Node, b: Node) -> None:
    """Each adds the other as a contact (before their engines start)."""
    now = int(time.time() * 1000)
    a.store.contacts.add_contact(b.name, b.address, b.secrets.client_auth_public, now)
    b.store.contacts.add_contact(a.name, a.address, a.secrets.client_auth_public, now)
    for x, y in ((a, b), (b, a)):
        if x.engine is not None:
            x.engine.add_contact(x.contact(y))


async def until(condition: Callable[[], bool], seconds: float = 120.0) -> None:
    """Wait for ``condition`` under a deadline (no fixed sleeps).

    Under the MockClock of these tests virtual time moves only when every
    task has been idle a moment, so each look costs no real time while work
    is under way."""
    with trio.fail_after(seconds):
        while not condition():
            await trio.sleep(0.5)


@asynccontextmanager
async def network(root: Path, **config: Any) -> AsyncIterator[tuple[Network, trio.Nursery]]:
    base = Config(retry_initial=1.0, retry_max=30.0, connect_timeout=10.0)
    net = Network(root, replace(base, **config))
    try:
        async with trio.open_nursery() as nursery:
            yield net, nursery
            nursery.cancel_scope.cancel()
    finally:
        net.close()
