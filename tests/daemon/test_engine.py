"""The delivery engine between real stores over real sessions, without tor.

Every endpoint is what ``Daemon.run`` wires up besides tor (``onionpost.testing.memory``):
a real store, the real listener, the engine and the local API backend. Time
is virtual (``conftest.clock``): waits are conditions under a deadline.

Each failure-domain test ends with another contact delivering a text through
the same endpoint: whatever the first contact did, the endpoint carries on.
"""

from __future__ import annotations

import contextlib
import os
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.api import Marked, Message
from onionpost.daemon.delivery import DeliveryPolicy
from onionpost.daemon.delivery._sent import SENT_MARK_SECONDS
from onionpost.errors import CloseCode, ConfigError, DialError, NotFoundError, TransportError
from onionpost.proto import messages as m
from onionpost.proto.evidence import Entry, Event
from onionpost.proto.identity import CERT_LIFETIME, StaticKey
from onionpost.testing.memory import Network, Node, befriend, network, until, write_record
from onionpost.transport import SecureChannel


def states(node: Node, ids: list[bytes]) -> set[str]:
    return {node.state(i) for i in ids}


async def delivered(sender: Node, ids: list[bytes]) -> None:
    await until(lambda: states(sender, ids) <= {"delivered", "read"})


async def still_delivers(net: Network, nursery: trio.Nursery, target: Node) -> None:
    """A contact that did nothing wrong reaches ``target`` and is answered."""
    bystander = net.node(f"bystander-{len(net.nodes)}")
    befriend(bystander, target)
    await bystander.start(nursery)
    sent = await bystander.send(target, "still there?")
    await delivered(bystander, [sent])
    assert [s.body for s in target.inbox_from(bystander)] == ["still there?"]
    assert target.engine is not None
    assert target.engine.running


async def drain(channel: SecureChannel, into: list[Any], seconds: float = 30.0) -> None:
    with trio.move_on_after(seconds):
        try:
            while True:
                into.append(await channel.receive())
        except (trio.EndOfChannel, TransportError):
            pass


# -- delivery ------------------------------------------------------------------------------


async def test_texts_are_delivered_once_and_acked(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        ids = [await alice.send(bob, f"hello {i}") for i in range(20)]
        await delivered(alice, ids)
        assert sorted(s.id for s in bob.inbox_from(alice)) == sorted(ids)
        assert alice.engine is not None
        assert bob.engine is not None
        assert alice.engine.statistics().texts_acked == 20
        assert bob.engine.statistics().texts_received == 20
        assert bob.engine.statistics().sessions_ended_by_failure == 0
        assert {s.body for s in bob.inbox_from(alice)} == {f"hello {i}" for i in range(20)}
        # Both ways, and nothing is sent twice into the inbox on a new session.
        back = await bob.send(alice, "and back")
        await delivered(bob, [back])
        bob.stop()
        await until(lambda: not bob.up)
        await bob.start(nursery)
        again = await alice.send(bob, "after a restart")
        await delivered(alice, [again])
        assert len(bob.inbox_from(alice)) == 21


async def test_a_text_acknowledged_at_once_is_never_marked_sent(
    tmp_path: Path, clock: MockClock
) -> None:
    """The ack came before SENT_MARK_SECONDS: queued, then delivered, and the
    evidence log says exactly that (no ``sent`` entry, evidence.md §2)."""
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        quick = await alice.send(bob, "quick")
        await delivered(alice, [quick])
        await trio.sleep(2 * SENT_MARK_SECONDS)  # the mark would have been written by now
        assert alice.state(quick) == "delivered"
        events = [
            Entry.decode(data).event
            for _, data in alice.store.evidence.entries(0, 1000)
            if Entry.decode(data).message_id == quick
        ]
        assert events == [Event.QUEUED, Event.DELIVERED]


async def test_a_session_records_when_the_contact_was_last_seen(
    tmp_path: Path, clock: MockClock
) -> None:
    # 'contact list' showed "last seen: never" for a contact met every minute.
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        assert alice.store.contacts.contact_by_id(alice.contact(bob).id).last_seen_ms is None
        await alice.start(nursery)
        await bob.start(nursery)
        sent = await alice.send(bob, "hello")
        await delivered(alice, [sent])

        def seen(node: Node, other: Node) -> int | None:
            return node.store.contacts.contact_by_id(node.contact(other).id).last_seen_ms

        await until(lambda: seen(alice, bob) is not None and seen(bob, alice) is not None)
        first = seen(alice, bob)
        bob.stop()
        await until(lambda: not bob.up)
        # The session's end is seen too (wall-clock ms: not before its start).
        await until(lambda: (seen(alice, bob) or 0) >= (first or 0))


async def test_concurrent_sends_share_commits_and_all_arrive(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        ids: list[bytes] = []

        async def sender(k: int) -> None:
            for i in range(25):
                ids.append(await alice.send(bob, f"{k}/{i}"))

        async with trio.open_nursery() as senders:
            for k in range(40):
                senders.start_soon(sender, k)
        assert len(ids) == 1000
        await delivered(alice, ids)
        assert sorted(s.id for s in bob.inbox_from(alice)) == sorted(ids)


async def test_an_unacked_message_is_sent_again_and_stored_once(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        sent = await alice.send(bob, "only once")
        # Bob stored it but the ack was lost (a crash between commit and ack).
        bob.store.messages.store_text(bob.contact(alice).id, sent, 1, "only once", "text/plain", 2)
        await bob.start(nursery)
        await delivered(alice, [sent])
        assert [s.id for s in bob.inbox_from(alice)] == [sent]


async def test_a_file_over_the_budget_waits_at_the_sender_until_there_is_room(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob", max_disk_use=100_000)
        befriend(alice, bob)
        data = os.urandom(300_000)
        (tmp_path / "big.bin").write_bytes(data)
        await alice.start(nursery)
        await bob.start(nursery)
        assert alice.daemon is not None
        queued = await alice.daemon.messages.send_file(
            api.SendFile("bob", str(tmp_path / "big.bin"))
        )
        file_id = bytes.fromhex(queued.id)
        # Refused for lack of room: not refused for good, still waiting at alice.
        await until(lambda: bob.store.transfers.transfer_count(bob.contact(alice).id) == 0)
        assert alice.state(file_id) in ("queued", "sent")
        assert [o.id for o in alice.store.outbox.pending(alice.contact(bob).id, 10)] == [file_id]
        bob.stop()
        await until(lambda: not bob.up)
        bob.config = net.config.__class__(**{**_fields(net.config), "max_disk_use": 10**7})
        await bob.start(nursery)
        assert alice.daemon is not None
        await alice.daemon.messages.retry(api.Retry("bob"))
        await delivered(alice, [file_id])
        assert bob.daemon is not None
        out = tmp_path / "out.bin"
        await bob.daemon.messages.export_file(api.ExportFile(queued.id, str(out)))
        assert out.read_bytes() == data


def _fields(config: Any) -> dict[str, Any]:
    return {name: getattr(config, name) for name in config.__dataclass_fields__}


def _sessions(node: Node, other: Node) -> int:
    assert node.engine is not None
    status = node.engine.status(node.contact(other).id)
    return int(bool(status and status.reachable))


# -- who may do what -------------------------------------------------------------------------


async def test_a_contact_cannot_fetch_ack_or_refuse_what_was_sent_to_another(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        (tmp_path / "for-bob.bin").write_bytes(b"for bob's eyes only" * 1000)
        await alice.start(nursery)
        assert alice.daemon is not None
        for_bob = bytes.fromhex(
            (
                await alice.daemon.messages.send_file(
                    api.SendFile("bob", str(tmp_path / "for-bob.bin"))
                )
            ).id
        )
        text_for_bob = await alice.send(bob, "also for bob")
        channel, _ = await net.connect_raw(carol, alice)
        await channel.send(m.FileAccept(for_bob, 0))
        await channel.send(m.Ack((text_for_bob,)))
        await channel.send(m.FileComplete(for_bob))
        await channel.send(m.Read((text_for_bob,)))
        await channel.send(m.FileReject(for_bob, m.FileRejectReason.DECLINED))
        received: list[Any] = []
        await drain(channel, received, seconds=5)
        assert not any(isinstance(r, m.FileChunk) for r in received)
        assert m.FileCancel(for_bob, m.FileRejectReason.UNKNOWN_FILE) in received
        assert alice.state(text_for_bob) == "queued"
        assert alice.state(for_bob) == "queued"
        # Bob, the recipient, gets both.
        await bob.start(nursery)
        await delivered(alice, [text_for_bob, for_bob])


async def test_a_stranger_is_refused_at_the_handshake(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, mallory = net.node("alice"), net.node("mallory")
        now = 0
        mallory.store.contacts.add_contact(
            "alice", alice.address, alice.secrets.client_auth_public, now
        )
        await alice.start(nursery)
        channel, _ = await net.connect_raw(mallory, alice)
        with contextlib.suppress(TransportError):  # refused: it may already be gone
            await channel.send(m.Text(os.urandom(16), 1, "let me in", "text/plain"))
        with trio.fail_after(10), pytest.raises(TransportError):
            await channel.receive()
        assert alice.store.messages.inbox() == []
        await still_delivers(net, nursery, alice)


# -- failure domains ---------------------------------------------------------------------------


async def test_a_contact_dropping_its_stream_mid_frame(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        channel, stream = await net.connect_raw(carol, alice)
        await channel.send(m.Text(os.urandom(16), 1, "a whole one", "text/plain"))
        await stream.send_all(struct.pack(">H", 512) + os.urandom(100))  # and half of one
        await stream.aclose()
        await until(lambda: _sessions(alice, carol) == 0)
        await still_delivers(net, nursery, alice)
        assert [s.body for s in alice.inbox_from(carol)] == ["a whole one"]


@pytest.mark.parametrize(
    "record",
    [
        msgpack.packb([50, b"x"]),  # an unknown core tag
        msgpack.packb([1, b"short id", 1, "x", "text/plain"]),  # a Text that breaks the rules
        b"\xc1",  # not msgpack at all
    ],
)
async def test_a_contact_sending_a_bad_record(
    tmp_path: Path, clock: MockClock, record: bytes
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        channel, stream = await net.connect_raw(carol, alice)
        await write_record(channel, stream, record)
        received: list[Any] = []
        await drain(channel, received, seconds=10)
        # Alice told carol why (the channel is authentic), and ended only that session.
        assert channel.close_code == CloseCode.BAD_MESSAGE
        await until(lambda: _sessions(alice, carol) == 0)
        await still_delivers(net, nursery, alice)


async def test_garbage_after_a_good_handshake(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        _, stream = await net.connect_raw(carol, alice)
        await stream.send_all(os.urandom(4096))
        await until(lambda: _sessions(alice, carol) == 0)
        await still_delivers(net, nursery, alice)


async def test_a_contact_that_removed_us_is_redialled_with_backoff(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        bob.store.contacts.remove_contact("alice")  # bob no longer knows alice
        await bob.start(nursery)
        await alice.start(nursery)
        queued = [await alice.send(bob, f"pending {i}") for i in range(3)]
        start = trio.current_time()
        await until(lambda: alice.dials >= 4)
        assert alice.engine is not None
        status = alice.engine.status(alice.contact(bob).id)
        assert status is not None
        assert not status.reachable
        assert status.last_error == "refused"
        stats = alice.engine.statistics()
        assert stats.dials >= 4
        assert stats.sessions_ended_by_failure >= 3  # refused after the handshake
        assert status.failures >= 3
        # 1 s doubling (with jitter): four dials take seconds, not microseconds.
        assert trio.current_time() - start >= 1.5
        # Nothing was lost while bob refused.
        assert states(alice, queued) <= {"queued", "sent"}
        await still_delivers(net, nursery, alice)


async def test_a_dial_that_fails_at_socks_or_never_finishes(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, connect_timeout=10.0) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)

        async def socks_refuses() -> None:
            raise DialError("SOCKS reply 0xF4", reason="client-auth-missing")

        async def hangs() -> None:
            await trio.sleep_forever()

        net.faults[bob.address] = socks_refuses
        net.faults[carol.address] = hangs
        await alice.start(nursery)
        await alice.send(bob, "for bob")
        await alice.send(carol, "for carol")
        assert alice.engine is not None
        engine = alice.engine

        def error(node: Node) -> str:
            status = engine.status(alice.contact(node).id)
            return status.last_error if status else ""

        await until(lambda: error(bob) == "client-auth-missing" and error(carol) == "timeout")
        await still_delivers(net, nursery, alice)


async def test_a_handshake_that_never_finishes_holds_nothing(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        await alice.start(nursery)
        assert alice.listener is not None
        silent = [await alice.listener.connect() for _ in range(10)]  # and never speak
        await still_delivers(net, nursery, alice)
        # The handshake deadline closes them: each reads the end of its stream.
        for stream in silent:
            with trio.fail_after(120):
                assert await stream.receive_some(10) == b""


async def test_the_disk_full_while_storing_a_received_text(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        db = alice.store._db  # the disk fills: SQLite can grow no more
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        db.execute(f"PRAGMA max_page_count = {pages}")
        texts = [await bob.send(alice, "x" * 20_000 + str(i)) for i in range(5)]
        await until(
            lambda: (
                bob.engine is not None and _last_error(bob, alice) == "peer-closed-internal-error"
            )
        )
        assert states(bob, texts) <= {"queued", "sent"}  # nothing acked, nothing lost
        db.execute("PRAGMA max_page_count = 1073741823")  # room again
        await still_delivers(net, nursery, alice)
        assert bob.daemon is not None
        await bob.daemon.messages.retry(api.Retry("alice"))
        await delivered(bob, texts)
        assert len(alice.inbox_from(bob)) == 5


def _last_error(node: Node, other: Node) -> str:
    assert node.engine is not None
    status = node.engine.status(node.contact(other).id)
    return status.last_error if status else ""


# -- a contact that turns hostile -----------------------------------------------------------------


async def test_a_ping_flood_from_a_contact_that_does_not_read(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        # Alice has plenty for carol, so her sender is busy writing to a
        # contact that never reads; carol pings and pings.
        for i in range(40):
            await alice.send(carol, "y" * 50_000 + str(i))
        channel, _ = await net.connect_raw(carol, alice)
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while sent < 20_000:
                await channel.send(m.Ping(sent))
                sent += 1

        with trio.fail_after(120), pytest.raises(TransportError):
            await flood()
        # The session ended long before 20,000 Pings, with RATE_LIMITED: the
        # Pongs alice could hold, and the pipe, are all it cost her.
        assert sent < 2_000
        await until(lambda: _last_error(alice, carol) == "protocol-rate-limited")
        await still_delivers(net, nursery, alice)


async def test_repeated_file_accepts_drive_one_sender(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        size = 2 * 1024 * 1024
        (tmp_path / "f.bin").write_bytes(os.urandom(size))
        await alice.start(nursery)
        assert alice.daemon is not None
        file_id = bytes.fromhex(
            (
                await alice.daemon.messages.send_file(
                    api.SendFile("carol", str(tmp_path / "f.bin"))
                )
            ).id
        )
        channel, _ = await net.connect_raw(carol, alice)
        received: list[Any] = []
        with trio.fail_after(60):
            while not any(isinstance(r, m.FileOffer) for r in received):
                received.append(await channel.receive())
        for _ in range(300):
            await channel.send(m.FileAccept(file_id, 0))
        await drain(channel, received, seconds=20)
        chunk_bytes = sum(len(r.data) for r in received if isinstance(r, m.FileChunk))
        # 300 accepts used to start 300 senders (~600 MB for this file).
        assert size <= chunk_bytes <= 3 * size
        await still_delivers(net, nursery, alice)


async def test_offers_cannot_reserve_the_disk_or_the_inodes(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, max_transfers_per_contact=3) as (net, nursery):
        alice, carol, bob = net.node("alice"), net.node("carol"), net.node("bob")
        befriend(alice, carol)
        befriend(alice, bob)
        await alice.start(nursery)
        channel, _ = await net.connect_raw(carol, alice)
        offers = [
            m.FileOffer(os.urandom(16), 1, f"f{i}", 5 * 10**8, os.urandom(64), "x/y")
            for i in range(40)
        ]
        for offer in offers:
            await channel.send(offer)
        received: list[Any] = []
        await drain(channel, received, seconds=10)
        accepted = [r for r in received if isinstance(r, m.FileAccept)]
        deferred = [r for r in received if isinstance(r, m.FileReject)]
        assert len(accepted) == 3
        assert len(deferred) == 37
        assert {r.reason for r in deferred} == {m.FileRejectReason.NO_SPACE}
        assert alice.store.transfers.transfer_count(alice.contact(carol).id) == 3
        assert len(list(alice.paths.files.iterdir())) == 3
        # Another contact's file still arrives whole.
        data = os.urandom(200_000)
        (tmp_path / "b.bin").write_bytes(data)
        await bob.start(nursery)
        assert bob.daemon is not None
        sent = await bob.daemon.messages.send_file(api.SendFile("alice", str(tmp_path / "b.bin")))
        await delivered(bob, [bytes.fromhex(sent.id)])


async def test_a_refused_file_is_refused_for_good(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob", max_file_size=1000)
        befriend(alice, bob)
        (tmp_path / "big.bin").write_bytes(os.urandom(5000))
        await alice.start(nursery)
        await bob.start(nursery)
        assert alice.daemon is not None
        queued = await alice.daemon.messages.send_file(
            api.SendFile("bob", str(tmp_path / "big.bin"))
        )
        file_id = bytes.fromhex(queued.id)
        await until(lambda: alice.state(file_id) == "refused")
        shown = await alice.daemon.messages.message(api.GetMessage(queued.id))
        assert shown.state == "refused"
        assert shown.reason == m.FileRejectReason.TOO_LARGE
        assert alice.store.outbox.outbox_depth() == 0
        # Not offered again, whatever sessions come.
        bob.stop()
        await until(lambda: not bob.up)
        await bob.start(nursery)
        later = await alice.send(bob, "a text after it")
        await delivered(alice, [later])
        assert alice.state(file_id) == "refused"


async def test_unread_texts_beyond_the_quota_wait_at_the_sender(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice", max_unread_per_contact=10)
        carol = net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        await carol.start(nursery)
        texts = [await carol.send(alice, f"spam {i}") for i in range(25)]
        await until(lambda: _last_error(carol, alice) == "peer-closed-quota-exceeded")
        assert len(alice.inbox_from(carol)) == 10
        assert sum(carol.state(t) == "delivered" for t in texts) == 10
        await still_delivers(net, nursery, alice)
        # Reading frees room; the rest arrives, each once.
        assert alice.daemon is not None
        await alice.daemon.messages.mark_read(
            api.MarkRead(tuple(s.id.hex() for s in alice.inbox_from(carol)))
        )
        assert carol.daemon is not None
        await carol.daemon.messages.retry(api.Retry("alice"))
        await until(lambda: len(alice.inbox_from(carol)) == 20)
        await alice.daemon.messages.mark_read(
            api.MarkRead(tuple(s.id.hex() for s in alice.inbox_from(carol)))
        )
        await carol.daemon.messages.retry(api.Retry("alice"))
        await delivered(carol, texts)
        assert sorted(s.id for s in alice.inbox_from(carol)) == sorted(texts)


async def test_ids_in_the_local_api_are_scoped_to_their_contact(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        await alice.start(nursery)
        await bob.start(nursery)
        same = await bob.send(alice, "from bob")
        await delivered(bob, [same])
        # Carol sends a text under the very same id.
        channel, _ = await net.connect_raw(carol, alice)
        await channel.send(m.Text(same, 1, "from carol", "text/plain"))
        with trio.fail_after(30):
            assert await channel.receive() == m.Ack((same,))
        daemon = alice.daemon
        assert daemon is not None
        with pytest.raises(ConfigError, match="name the contact"):
            await daemon.messages.message(api.GetMessage(same.hex()))
        shown = await daemon.messages.message(api.GetMessage(same.hex(), contact="carol"))
        assert shown.body == "from carol"
        shown = await daemon.messages.message(api.GetMessage(same.hex(), contact="bob"))
        assert shown.body == "from bob"
        # Marking bob's read sends the receipt to bob only.
        assert await daemon.messages.mark_read(
            api.MarkRead((same.hex(),), contact="bob")
        ) == Marked(1)
        await until(lambda: bob.state(same) == "read")
        received: list[Any] = []
        await drain(channel, received, seconds=5)
        assert not any(isinstance(r, m.Read) for r in received)


async def test_the_static_key_is_renewed_while_running(tmp_path: Path, clock: MockClock) -> None:
    import time

    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        # Alice's certificate ran out a while ago: nobody accepts her handshake.
        long_ago = int(time.time()) - CERT_LIFETIME - 3 * 86_400
        alice.secrets.static = StaticKey.generate(alice.secrets.identity, now=long_ago)
        await alice.start(nursery)
        await bob.start(nursery)
        assert alice.daemon is not None
        sent = await bob.send(alice, "hello?")
        await until(lambda: _last_error(bob, alice) != "")
        assert bob.state(sent) in ("queued", "sent")
        assert alice.daemon.renew_static_key(int(time.time()))
        assert not alice.daemon.renew_static_key(int(time.time()))  # once is enough
        assert bob.daemon is not None
        await bob.daemon.messages.retry(api.Retry("alice"))
        await delivered(bob, [sent])


async def test_status_shows_each_contact_s_delivery_state(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        await alice.start(nursery)
        await bob.start(nursery)
        await alice.send(carol, "carol is away")  # carol never starts
        sent = await alice.send(bob, "bob is here")
        await delivered(alice, [sent])
        assert alice.daemon is not None
        await until(lambda: _last_error(alice, carol) == "descriptor-not-found")
        status = await alice.daemon.status(api.GetStatus())
        contacts = {c.name: c for c in status.contacts}
        assert contacts["bob"].reachable is True
        assert contacts["bob"].last_error == ""
        assert contacts["bob"].queued == 0
        assert contacts["carol"].reachable is False
        assert contacts["carol"].last_error == "descriptor-not-found"
        assert contacts["carol"].queued == 1
        assert contacts["carol"].failures >= 1
        assert contacts["carol"].retry_in is not None
        assert contacts["carol"].retry_in >= 0
        assert contacts["carol"].since_ms is not None
        assert status.outbox_depth == 1


async def test_a_file_still_arriving_is_shown_as_receiving(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        channel, _ = await net.connect_raw(carol, alice)
        offer = m.FileOffer(os.urandom(16), 1, "half.bin", 3 * 65_485, os.urandom(64), "x/y")
        await channel.send(offer)
        with trio.fail_after(30):
            assert await channel.receive() == m.FileAccept(offer.id, 0)
        await channel.send(m.FileChunk(offer.id, 0, os.urandom(65_485)))
        assert alice.daemon is not None
        daemon = alice.daemon

        async def shown() -> Message:
            return await daemon.messages.message(api.GetMessage(offer.id.hex()))

        await until(lambda: alice.store.transfers.transfer_count(alice.contact(carol).id) == 1)
        arriving = await shown()
        assert arriving.state == "receiving"
        assert arriving.file is not None
        assert arriving.file.complete is False


# -- coming back ---------------------------------------------------------------------------


async def test_a_returning_contact_gets_its_messages_without_waiting_out_a_backoff(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, retry_initial=5.0, retry_max=900.0) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        queued = [await alice.send(bob, f"while you were away {i}") for i in range(3)]
        # Bob stays away long enough for alice's backoff to grow to minutes.
        assert alice.engine is not None
        engine = alice.engine

        def backoff() -> float:
            status = engine.status(alice.contact(bob).id)
            return status.retry_in or 0.0 if status else 0.0

        await until(lambda: backoff() > 120, seconds=3600)
        # Bob comes back: he announces himself, and alice delivers at once.
        back_at = trio.current_time()
        await bob.start(nursery)
        await delivered(alice, queued)
        assert trio.current_time() - back_at < 10
        assert sorted(s.id for s in bob.inbox_from(alice)) == sorted(queued)


async def test_announcements_are_paced(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path, connect_timeout=10.0) as (net, nursery):
        hub = net.node("hub")
        others = [net.node(f"c{i}") for i in range(12)]
        busy = 0
        most = 0

        async def slow() -> None:
            nonlocal busy, most
            busy += 1
            most = max(most, busy)
            try:
                await trio.sleep(2)
            finally:
                busy -= 1

        for other in others:
            befriend(hub, other)
            net.faults[other.address] = slow
        await hub.start(nursery)  # announces itself to all twelve, who are away
        await until(lambda: hub.dials >= 12)
        assert most == 4  # DeliveryPolicy.announce_concurrency
        # A few attempts each (announce_attempts), with backoff, then quiet:
        # nothing waits for them.
        await trio.sleep(3600)
        dials = hub.dials
        assert dials == 12 * 5
        await trio.sleep(3600)
        assert hub.dials == dials


async def test_a_session_we_opened_closes_when_idle(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await bob.start(nursery)
        await alice.start(nursery)
        sent = await alice.send(bob, "one")
        await delivered(alice, [sent])
        await until(lambda: _sessions(alice, bob) == 0 and _sessions(bob, alice) == 0)
        assert _last_error(alice, bob) == ""  # an orderly close, not a failure
        assert _last_error(bob, alice) == ""
        # The next message dials again.
        again = await alice.send(bob, "two")
        await delivered(alice, [again])


async def test_a_contact_gone_silent_is_unreachable_after_the_silence_timeout(
    tmp_path: Path, clock: MockClock
) -> None:
    """A workstation switched off: its stream stays open (nothing closed it) but
    nothing answers our Pings. The session ends, so what waits may take
    another way (its mailbox)."""
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        assert alice.engine is not None
        channel, _ = await net.connect_raw(carol, alice)
        await channel.send(m.Ping(1))  # carol proves herself, then says nothing more
        link = alice.contact(carol).id
        await until(lambda: (s := alice.engine.status(link)) is not None and s.reachable)  # type: ignore[union-attr]
        start = trio.current_time()
        await until(
            lambda: not alice.engine.status(link).reachable,  # type: ignore[union-attr]
            seconds=DeliveryPolicy().silence_timeout + 30,
        )
        silent = trio.current_time() - start
        assert (
            DeliveryPolicy().silence_timeout - 5 <= silent <= DeliveryPolicy().silence_timeout + 30
        )
        status = alice.engine.status(link)
        assert status is not None
        assert status.last_error == "timeout"
        await channel.aclose()


async def test_texts_to_a_contact_gone_silent_end_the_session_after_the_answer_timeout(
    tmp_path: Path, clock: MockClock
) -> None:
    """A contact whose daemon stopped but whose close never reached us: once we
    have sent it texts and heard nothing for answer_timeout (a Ping halfway
    unanswered), the session ends, not silence_timeout later."""
    policy = DeliveryPolicy()
    assert policy.answer_timeout < policy.silence_timeout / 2
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        assert alice.engine is not None
        channel, _ = await net.connect_raw(carol, alice)
        await channel.send(m.Ping(1))  # carol proves herself
        link = alice.contact(carol).id
        await until(lambda: (s := alice.engine.status(link)) is not None and s.reachable)  # type: ignore[union-attr]
        await alice.send(carol, "are you there?")
        arrived = await channel.receive()
        while not isinstance(arrived, m.Text):  # the witnessing request, a Pong
            arrived = await channel.receive()
        # carol reads nothing more and answers nothing (not even Pings).
        start = trio.current_time()
        await until(
            lambda: not alice.engine.status(link).reachable,  # type: ignore[union-attr]
            seconds=policy.answer_timeout + 15,
        )
        assert trio.current_time() - start >= policy.answer_timeout - 1
        assert alice.engine.status(link).last_error == "timeout"  # type: ignore[union-attr]
        await channel.aclose()


async def test_a_contact_slow_to_ack_but_answering_pings_keeps_its_session(
    tmp_path: Path, clock: MockClock
) -> None:
    policy = DeliveryPolicy()
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        assert alice.engine is not None
        channel, _ = await net.connect_raw(carol, alice)
        await channel.send(m.Ping(1))
        link = alice.contact(carol).id
        await until(lambda: (s := alice.engine.status(link)) is not None and s.reachable)  # type: ignore[union-attr]
        await alice.send(carol, "are you there?")
        with trio.move_on_after(policy.answer_timeout * 3):
            while True:  # carol never acks; her channel answers each Ping itself
                await channel.receive()
        assert alice.engine.status(link).reachable  # type: ignore[union-attr]
        await channel.aclose()


async def test_a_contact_sending_mailbox_records(tmp_path: Path, clock: MockClock) -> None:
    """A forged or foreign announcement is ignored (the contact's mailbox
    stays unset); a mailbox's own record has no place between endpoints and
    ends only that session."""
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        channel, _ = await net.connect_raw(carol, alice)
        await channel.send(m.MailboxInfo(b"not an announcement"))
        from onionpost.proto.pairing import MailboxAnnouncement

        mallory = net.node("mallory")
        theirs = MailboxAnnouncement.issue(mallory.secrets.identity, alice.address, version=9)
        await channel.send(m.MailboxInfo(theirs.to_bytes()))  # signed, but not by carol
        await channel.send(m.Ping(7))
        assert isinstance(await channel.receive(), m.Pong)
        assert alice.contact(carol).mailbox is None
        await channel.send(m.MbFetch(1, 0))
        received: list[Any] = []
        await drain(channel, received, seconds=10)
        assert channel.close_code == CloseCode.BAD_MESSAGE
        await until(lambda: _sessions(alice, carol) == 0)
        assert alice.contact(carol).mailbox is None
        await still_delivers(net, nursery, alice)


async def test_a_sent_file_s_copy_is_deleted_once_delivered(
    tmp_path: Path, clock: MockClock
) -> None:
    """Alice sends bob files one after another, together past her disk
    budget: each sealed copy goes once delivered, so what her home holds
    stays bounded and a file from bob still fits."""
    size = 300_000
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice", max_disk_use=2 * size)
        bob = net.node("bob")
        befriend(alice, bob)
        for node in (alice, bob):
            await node.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        for i in range(5):
            source = tmp_path / f"to-bob-{i}.bin"
            source.write_bytes(os.urandom(size))
            file_id = bytes.fromhex(
                (await alice.daemon.messages.send_file(api.SendFile("bob", str(source)))).id
            )
            await delivered(alice, [file_id])
            await until(lambda: alice.store.transfers.disk_used() == 0)
            assert not any(alice.paths.files.iterdir())
        assert alice.state(file_id) == "delivered"  # the row stays
        with pytest.raises(NotFoundError):
            alice.store.transfers.export_file(
                file_id, tmp_path / "gone.bin", contact_id=alice.contact(bob).id
            )
        (tmp_path / "to-alice.bin").write_bytes(os.urandom(size))
        back = bytes.fromhex(
            (
                await bob.daemon.messages.send_file(
                    api.SendFile("alice", str(tmp_path / "to-alice.bin"))
                )
            ).id
        )
        await delivered(bob, [back])
        assert alice.store.transfers.disk_used() == size


async def test_a_sent_file_s_copy_is_kept_for_the_configured_retention(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        # The store's clock is the wall clock (virtual time does not move it).
        alice = net.node("alice", keep_sent_files=3.0)
        bob = net.node("bob")
        befriend(alice, bob)
        for node in (alice, bob):
            await node.start(nursery)
        assert alice.daemon is not None
        (tmp_path / "f.bin").write_bytes(os.urandom(1000))
        file_id = bytes.fromhex(
            (await alice.daemon.messages.send_file(api.SendFile("bob", str(tmp_path / "f.bin")))).id
        )
        await delivered(alice, [file_id])
        await trio.sleep(60)  # housekeeping ran: the copy is kept
        assert alice.store.transfers.disk_used() == 1000
        await until(lambda: alice.store.transfers.disk_used() == 0, 10**6)
