"""The daemon's delivery logic between real stores over real sessions, without tor.

Two :class:`Daemon` objects with their own SQLite stores talk over trio
memory streams through the real handshake; only the dialing through tor is
left out (the tor-marked tests cover it).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
import trio.testing

from onionpost.daemon._daemon import Daemon, _Link
from onionpost.home import Config, ContactCard, Paths, Secrets
from onionpost.proto import messages as m
from onionpost.store import Store
from onionpost.transport import SecureChannel, accept, connect


class Node:
    def __init__(self, root: Path, name: str, config: Config | None = None) -> None:
        self.paths = Paths.for_home(root / name)
        for directory in self.paths.private_dirs:
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.secrets = Secrets.generate(name, now=int(time.time()))
        self.store = Store.open(self.paths.store, self.paths.files, self.secrets.store_key)
        self.config = config or Config()
        self.daemon = Daemon(self.paths, self.secrets, self.config, self.store)

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.daemon = Daemon(self.paths, self.secrets, config, self.store)

    def card(self) -> str:
        return ContactCard.issue(self.secrets).to_line()


async def befriend(a: Node, b: Node) -> None:
    await a.daemon.contact_add(b.card())
    await b.daemon.contact_add(a.card())


@asynccontextmanager
async def session(a: Node, b: Node) -> AsyncIterator[tuple[SecureChannel, SecureChannel]]:
    """A real handshake from a to b over memory streams."""
    left, right = trio.testing.memory_stream_pair()
    channels: dict[str, SecureChannel] = {}
    async with trio.open_nursery() as nursery:

        async def respond() -> None:
            channels["b"] = await accept(
                right,
                identity=b.secrets.identity,
                static=b.secrets.static,
                decide=b.daemon._decide,
            )

        nursery.start_soon(respond)
        channels["a"] = await connect(
            left,
            identity=a.secrets.identity,
            static=a.secrets.static,
            peer=b.secrets.identity.address,
        )
    yield channels["a"], channels["b"]


def link(node: Node, other: Node) -> _Link:
    contact = node.store.contact_by_address(other.secrets.identity.address)
    assert contact is not None
    return node.daemon._links.setdefault(contact.id, _Link(contact))


async def run_pair(a: Node, b: Node, seconds: float) -> None:
    """Run one session between a and b, both sides as the daemon runs them, for a while."""
    async with session(a, b) as (ca, cb), trio.open_nursery() as nursery:
        nursery.start_soon(a.daemon._run_channel, link(a, b), ca)
        nursery.start_soon(b.daemon._run_channel, link(b, a), cb)
        await trio.sleep(seconds)
        nursery.cancel_scope.cancel()


async def state(node: Node, message_id: str) -> str:
    return str((await node.daemon.message(message_id))["state"])


async def test_texts_are_delivered_once_and_acked(tmp_path: Path) -> None:
    alice, bob = Node(tmp_path, "alice"), Node(tmp_path, "bob")
    await befriend(alice, bob)
    ids = [(await alice.daemon.send_text("bob", f"hello {i}"))["id"] for i in range(20)]
    await run_pair(alice, bob, 1.0)
    assert {await state(alice, i) for i in ids} == {"delivered"}
    # A second session re-sends nothing that was acked, and bob still holds one copy each.
    await run_pair(alice, bob, 0.5)
    inbox = await bob.daemon.inbox()
    assert sorted(x["id"] for x in inbox) == sorted(ids)


async def test_an_unacked_message_is_sent_again_and_stored_once(tmp_path: Path) -> None:
    alice, bob = Node(tmp_path, "alice"), Node(tmp_path, "bob")
    await befriend(alice, bob)
    sent = await alice.daemon.send_text("bob", "only once")
    message_id = bytes.fromhex(sent["id"])
    contact = bob.store.contact("alice")
    # Bob stored it but the ack was lost (e.g. a crash between commit and ack).
    bob.store.store_text(contact.id, message_id, 1, "only once", "text/plain", 2)
    await run_pair(alice, bob, 1.0)
    assert await state(alice, sent["id"]) == "delivered"
    assert [x["id"] for x in await bob.daemon.inbox()] == [sent["id"]]


async def test_a_full_disk_keeps_the_file_at_the_sender_until_there_is_room(
    tmp_path: Path,
) -> None:
    alice = Node(tmp_path, "alice")
    bob = Node(tmp_path, "bob", dataclasses.replace(Config(), max_disk_use=100_000))
    await befriend(alice, bob)
    source = tmp_path / "big.bin"
    data = os.urandom(300_000)
    source.write_bytes(data)
    queued = await alice.daemon.send_file("bob", str(source))
    await run_pair(alice, bob, 1.0)
    # Refused for lack of space: not delivered, still waiting at the sender.
    assert await state(alice, queued["id"]) != "delivered"
    assert [o.id.hex() for o in alice.store.pending(alice.store.contact("bob").id, 10)] == [
        queued["id"]
    ]
    bob.reconfigure(dataclasses.replace(Config(), max_disk_use=10_000_000))
    await run_pair(alice, bob, 2.0)
    assert await state(alice, queued["id"]) == "delivered"
    out = tmp_path / "out.bin"
    await bob.daemon.export_file(queued["id"], str(out))
    assert out.read_bytes() == data


async def test_a_contact_cannot_fetch_or_ack_what_was_sent_to_another(tmp_path: Path) -> None:
    alice, bob, carol = Node(tmp_path, "alice"), Node(tmp_path, "bob"), Node(tmp_path, "carol")
    await befriend(alice, bob)
    await befriend(alice, carol)
    source = tmp_path / "for-bob.bin"
    source.write_bytes(b"for bob's eyes only" * 1000)
    for_bob = await alice.daemon.send_file("bob", str(source))
    text_for_bob = await alice.daemon.send_text("bob", "also for bob")
    received: list[Any] = []
    async with session(carol, alice) as (c_carol, c_alice), trio.open_nursery() as nursery:
        nursery.start_soon(alice.daemon._run_channel, link(alice, carol), c_alice)
        # Carol, a contact but not the recipient, asks for bob's file and acks bob's text.
        await c_carol.send(m.FileAccept(bytes.fromhex(for_bob["id"]), 0))
        await c_carol.send(m.Ack((bytes.fromhex(text_for_bob["id"]),)))
        await c_carol.send(m.FileComplete(bytes.fromhex(for_bob["id"])))
        with trio.move_on_after(1.0):
            while True:
                received.append(await c_carol.receive())
        nursery.cancel_scope.cancel()
    assert not any(isinstance(r, m.FileChunk) for r in received)
    assert m.FileCancel(bytes.fromhex(for_bob["id"]), m.FileRejectReason.UNKNOWN_FILE) in received
    assert await state(alice, text_for_bob["id"]) == "queued"
    assert await state(alice, for_bob["id"]) == "queued"


async def test_a_stranger_is_refused_at_the_handshake(tmp_path: Path) -> None:
    alice, mallory = Node(tmp_path, "alice"), Node(tmp_path, "mallory")
    await mallory.daemon.contact_add(alice.card())  # mallory knows alice; not the reverse
    left, right = trio.testing.memory_stream_pair()
    outcome: list[BaseException] = []
    async with trio.open_nursery() as nursery:

        async def respond() -> None:
            try:
                await accept(
                    right,
                    identity=alice.secrets.identity,
                    static=alice.secrets.static,
                    decide=alice.daemon._decide,
                )
            except Exception as exc:
                outcome.append(exc)

        nursery.start_soon(respond)
        channel = await connect(
            left,
            identity=mallory.secrets.identity,
            static=mallory.secrets.static,
            peer=alice.secrets.identity.address,
        )
        with trio.fail_after(5):
            try:
                await channel.receive()
            except Exception as exc:
                outcome.append(exc)
    from onionpost.errors import AuthenticationError

    assert any(isinstance(e, AuthenticationError) for e in outcome)
    assert await alice.daemon.inbox() == []


async def test_a_flooding_contact_does_not_starve_another(tmp_path: Path) -> None:
    alice, bob, carol = Node(tmp_path, "alice"), Node(tmp_path, "bob"), Node(tmp_path, "carol")
    await befriend(alice, bob)
    await befriend(alice, carol)
    flood = 1500
    for i in range(flood):
        await carol.daemon.send_text("alice", f"flood {i}")
    bob_ids = [(await bob.daemon.send_text("alice", f"urgent {i}"))["id"] for i in range(5)]
    done_at: dict[str, float] = {}
    async with (
        session(carol, alice) as (c_carol, c_alice_carol),
        session(bob, alice) as (c_bob, c_alice_bob),
        trio.open_nursery() as nursery,
    ):
        start = trio.current_time()
        nursery.start_soon(carol.daemon._run_channel, link(carol, alice), c_carol)
        nursery.start_soon(alice.daemon._run_channel, link(alice, carol), c_alice_carol)
        await trio.sleep(0.2)  # the flood is under way
        nursery.start_soon(bob.daemon._run_channel, link(bob, alice), c_bob)
        nursery.start_soon(alice.daemon._run_channel, link(alice, bob), c_alice_bob)
        with trio.fail_after(60):
            while len(done_at) < len(bob_ids):
                for message_id in bob_ids:
                    if message_id not in done_at and await state(bob, message_id) == "delivered":
                        done_at[message_id] = trio.current_time() - start
                await trio.sleep(0.05)
        flood_stored = sum(
            1 for x in await alice.daemon.inbox(limit=10_000) if x["contact"] == "carol"
        )
        nursery.cancel_scope.cancel()
    # Bob's few messages got through while carol's flood was still being taken in.
    assert flood_stored < flood
    assert max(done_at.values()) < 10
