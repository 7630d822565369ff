"""One session per contact, and deposits that do not wait behind a dial.

On the engine kit (real stores, real sessions, in-memory network) and
virtual time: waits are conditions under deadlines.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.daemon.delivery._records import HANDOFF_ENCODED_MAX
from onionpost.errors import LocalProtocolError, TransportError
from onionpost.proto import messages as m
from onionpost.testing.memory import MailboxNode, Network, Node, befriend, network, until


def _sessions(node: Node) -> int:
    assert node.engine is not None
    return node.engine.statistics().sessions


def _superseded(node: Node) -> int:
    assert node.engine is not None
    return node.engine.statistics().sessions_superseded


async def _hold_dials(net: Network, *nodes: Node) -> trio.Event:
    """Dials to ``nodes`` wait until the returned event is set."""
    release = trio.Event()

    async def held() -> None:
        await release.wait()

    for node in nodes:
        net.faults[node.address] = held
    return release


async def test_crossing_dials_keep_one_session_and_files_are_not_sent_twice(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        # Queued before either starts (the store directly: no worker thread, so
        # virtual time cannot jump past the held dials' deadline meanwhile).
        size = 2 * 1024 * 1024
        ids = {}
        for sender, to in ((alice, bob), (bob, alice)):
            source = tmp_path / f"{sender.name}.bin"
            source.write_bytes(os.urandom(size))
            ids[sender.name] = os.urandom(16)
            sender.store.outbox.queue_file(
                sender.contact(to).id, ids[sender.name], 0, source.name, source, 1 << 30
            )
        to_bob, to_alice = ids["alice"], ids["bob"]
        release = await _hold_dials(net, alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        # Both dial the other at once.
        await until(lambda: alice.dials >= 1 and bob.dials >= 1)
        net.faults.clear()
        release.set()
        start = trio.current_time()
        await until(
            lambda: alice.state(to_bob) == "delivered" and bob.state(to_alice) == "delivered"
        )
        # Two sessions sending one file each way made the receiver refuse
        # out-of-order chunks until the idle close (30 s).
        assert trio.current_time() - start < 15
        assert _superseded(alice) + _superseded(bob) >= 1
        assert _sessions(alice) == 1
        assert _sessions(bob) == 1
        assert [s.id for s in bob.inbox_from(alice)] == [to_bob]
        assert [s.id for s in alice.inbox_from(bob)] == [to_alice]


async def test_a_contact_holds_at_most_two_sessions(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        channels = []
        for _ in range(12):
            channel, _ = await net.connect_raw(carol, alice)
            channels.append(channel)
            assert _sessions(alice) <= 2
        await until(lambda: _sessions(alice) == 1)
        # One stays (the newest, or the one before it when the newest came
        # while two were up: the closing one still counts); alice closed
        # every other.
        ended: list[int] = []

        async def read_until_closed(i: int, channel: Any) -> None:
            try:
                while True:
                    await channel.receive()
            except (trio.EndOfChannel, TransportError):
                ended.append(i)

        with trio.move_on_after(30):
            async with trio.open_nursery() as readers:
                for i, channel in enumerate(channels):
                    readers.start_soon(read_until_closed, i, channel)
                await until(lambda: len(ended) >= len(channels) - 1)
                readers.cancel_scope.cancel()
        (kept,) = set(range(len(channels))) - set(ended)
        assert kept >= len(channels) - 2
        await channels[kept].send(m.Ping(7))
        with trio.fail_after(30):
            while not isinstance(await channels[kept].receive(), m.Pong):
                pass
        assert _sessions(alice) == 1


async def test_a_dial_that_hangs_does_not_hold_the_deposit(
    tmp_path: Path, clock: MockClock
) -> None:
    after = 5.0
    async with network(tmp_path, mailbox_after=after, connect_timeout=600.0) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        box: MailboxNode = net.mailbox("box")
        befriend(alice, bob)
        for node in (box, alice, bob):
            await node.start(nursery)
        for node in (alice, bob):
            assert node.daemon is not None
            await node.daemon.mailbox_pair(api.MailboxPair(await box.code()))
        await until(lambda: alice.contact(bob).mailbox == box.address)
        # Every session idle-closes in order: alice has no reason to think bob away.
        await until(lambda: _sessions(alice) == 0, 300)

        async def hang() -> Any:
            await trio.sleep_forever()

        net.faults[bob.address] = hang
        sent_at = trio.current_time()
        message_id = await alice.send(bob, "while the dial hangs")
        await until(lambda: alice.store.messages.message(message_id).deposited_ms is not None, 120)
        # Deposited once the dial had hung for mailbox_after, not after its 600 s deadline.
        assert trio.current_time() - sent_at < after + 30
        await until(lambda: [s.body for s in bob.inbox_from(alice)] == ["while the dial hangs"])


async def test_texts_queued_during_a_session_are_handed_to_it_not_read_back(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        first = await alice.send(bob, "opens the session")
        await until(lambda: alice.state(first) == "delivered")
        outbox = alice.store.outbox
        reads = 0
        read = outbox.pending

        def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal reads
            reads += 1
            return read(*args, **kwargs)

        outbox.pending = counted  # type: ignore[method-assign]
        (tmp_path / "f.bin").write_bytes(os.urandom(70_000))
        assert alice.daemon is not None
        daemon = alice.daemon
        ids: list[bytes] = []

        async def caller(n: int) -> None:
            for i in range(100):
                ids.append(await alice.send(bob, f"{n}-{i}"))
                if n == 0 and i == 50:
                    # A file in the middle: the outbox is read for its offer.
                    queued = await daemon.messages.send_file(
                        api.SendFile("bob", str(tmp_path / "f.bin"))
                    )
                    ids.append(bytes.fromhex(queued.id))

        async with trio.open_nursery() as callers:
            for n in range(4):
                callers.start_soon(caller, n)
        await until(lambda: all(alice.state(i) == "delivered" for i in ids))
        received = [s.id for s in bob.inbox_from(alice)]
        assert sorted(received) == sorted([first, *ids])  # each exactly once
        # 401 texts and a file went out over the live session; the outbox was
        # read for the file (and a page or two around it), not per text.
        assert reads <= 10, reads


async def test_a_text_handed_to_a_live_session_is_encoded_once(
    tmp_path: Path, clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its check before queueing made the bytes the session sends; a long one
    # (beyond HANDOFF_ENCODED_MAX) is handed over as the text, encoded again
    # when sent, so a hand-off holds its body once. Each arrives whole.
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        first = await alice.send(bob, "opens the session")
        await until(lambda: alice.state(first) == "delivered")
        assert alice.daemon is not None
        daemon = alice.daemon
        encodes: Counter[bytes] = Counter()
        encode = m.encode

        def counted(message: m.Message) -> bytes:
            if isinstance(message, m.Text):
                encodes[message.id] += 1
            return encode(message)

        monkeypatch.setattr(m, "encode", counted)
        bodies = {
            await alice.send(bob, f"short {i} \u00e9"): f"short {i} \u00e9" for i in range(20)
        }
        long_body = "\u00e9" * (HANDOFF_ENCODED_MAX // 2 + 1)
        long_id = await alice.send(bob, long_body)
        bodies[long_id] = long_body
        items = tuple(api.TextItem(f"batch {k}") for k in range(10))
        for q, item in zip(
            await daemon.messages.send_texts(api.SendTexts("bob", items)), items, strict=True
        ):
            bodies[bytes.fromhex(q.id)] = item.body
        await until(lambda: all(alice.state(i) == "delivered" for i in bodies))
        assert {s.id: s.body for s in bob.inbox_from(alice) if s.id != first} == bodies
        assert encodes == {i: 2 if i == long_id else 1 for i in bodies}


async def test_a_text_that_could_never_be_sent_is_refused_before_it_is_queued(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        first = await alice.send(bob, "opens the session")
        await until(lambda: alice.state(first) == "delivered")
        engine, contact_id = alice.engine, alice.contact(bob).id
        assert engine is not None
        good = m.Text(os.urandom(16), 0, "fine")
        for bad in (m.Text(os.urandom(16), 0, "\ud800"), m.Text(os.urandom(16), 0, "x", "c" * 129)):
            with pytest.raises(LocalProtocolError):
                await engine.queue_text(contact_id, bad)
            with pytest.raises(LocalProtocolError):
                await engine.queue_texts(contact_id, [good, bad])
        assert alice.store.outbox.listing(limit=10) == []
        # The engine goes on: the next text is sent.
        last = await alice.send(bob, "still here")
        await until(lambda: alice.state(last) == "delivered")
        assert [s.id for s in bob.inbox_from(alice)] == [first, last]


async def test_texts_trickling_to_an_away_contact_share_envelopes(
    tmp_path: Path, clock: MockClock
) -> None:
    after = 5.0
    async with network(tmp_path, mailbox_after=after) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        box = net.mailbox("box")
        befriend(alice, bob)
        for node in (box, alice, bob):
            await node.start(nursery)
        for node in (alice, bob):
            assert node.daemon is not None
            await node.daemon.mailbox_pair(api.MailboxPair(await box.code()))
        await until(lambda: alice.contact(bob).mailbox == box.address)
        bob.stop()
        await until(lambda: not bob.up)
        assert alice.engine is not None
        before = alice.engine.statistics().envelopes_deposited
        # One text every 50 ms for 10 s: deposits start while they still come.
        ids = []
        for i in range(200):
            ids.append(await alice.send(bob, f"trickle {i}"))
            await trio.sleep(0.05)
        await until(lambda: all(alice.store.messages.message(i).deposited_ms for i in ids), 300)
        envelopes = alice.engine.statistics().envelopes_deposited - before
        # Each deposit gathers what came since the last (deposit_gather, 2 s):
        # about one envelope every 2 s, not one (and one prekey) per text.
        assert envelopes <= 12, envelopes


async def test_texts_committed_together_reach_the_live_session_whatever_order_callers_wake(
    tmp_path: Path, clock: MockClock
) -> None:
    # Callers whose texts share one commit are woken in no set order; each
    # text must still go out in this session, not wait for the next one.
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        first = await alice.send(bob, "opens the session")
        await until(lambda: alice.state(first) == "delivered")
        assert alice.engine is not None
        assert alice.daemon is not None
        daemon = alice.daemon
        dials = alice.engine.statistics().dials
        ids: list[bytes] = []

        async def batches(n: int) -> None:
            for i in range(5):
                texts = tuple(api.TextItem(f"{n}-{i}-{k}") for k in range(20))
                queued = await daemon.messages.send_texts(api.SendTexts("bob", texts))
                ids.extend(bytes.fromhex(q.id) for q in queued)

        async def singles(n: int) -> None:
            for i in range(50):
                ids.append(await alice.send(bob, f"single {n}-{i}"))

        async with trio.open_nursery() as callers:
            for n in range(6):
                callers.start_soon(batches if n % 2 else singles, n)
        # Well within idle_close and answer_timeout (30 s): a text left
        # behind would wait for the next session.
        await until(lambda: all(alice.state(i) == "delivered" for i in ids), seconds=10)
        assert alice.engine.statistics().dials == dials
        assert _sessions(alice) == 1
        received = [s.id for s in bob.inbox_from(alice)]
        assert sorted(received) == sorted([first, *ids])  # each exactly once
