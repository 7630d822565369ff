"""Delivery through a mailbox, end to end without tor: the real engines, owner
links, mailbox server and stores, over in-memory sessions on virtual time.

The mailbox refuses a dial without an authorized client key, as tor does with
client authorization (``onionpost.testing.memory``), so who may reach it is
checked too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner
from trio.testing import MockClock

from onionpost import api
from onionpost.cli import main
from onionpost.cli._common import ANSWER_DEADLINE
from onionpost.daemon._mailbox import (
    DRAIN_PER_SECOND,
    DROPPED_LOG_SECONDS,
    PING_SECONDS,
    LogThrottle,
)
from onionpost.errors import AuthenticationError, ConfigError, DialError
from onionpost.home import ContactCard
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto import envelope as env
from onionpost.proto import messages as m
from onionpost.proto.pairing import MailboxAnnouncement
from onionpost.proto.session import PeerDecision
from onionpost.store._mailbox import HeldEnvelope
from onionpost.testing.memory import (
    MailboxNode,
    MemoryListener,
    Network,
    Node,
    befriend,
    network,
    until,
)
from onionpost.transport import SecureChannel, accept

pytestmark = pytest.mark.trio

MAILBOX_AFTER = 5.0


async def _paired(net: Network, nursery: trio.Nursery, box: MailboxNode, *nodes: Node) -> None:
    for node in nodes:
        assert node.daemon is not None
        await node.daemon.mailbox_pair(api.MailboxPair(await box.code()))
    # Each learns the other's mailbox in a session (the announcement).
    for node in nodes:
        for other in nodes:
            if other is not node:
                await until(lambda n=node, o=other: n.contact(o).mailbox == box.address)


async def _setup(
    tmp_path: Path, nursery: trio.Nursery, net: Network, **box_policy: object
) -> tuple[Node, Node, MailboxNode]:
    alice, bob = net.node("alice"), net.node("bob")
    box = net.mailbox("box", **box_policy)
    befriend(alice, bob)
    for node in (box, alice, bob):
        await node.start(nursery)
    await _paired(net, nursery, box, alice, bob)
    return alice, bob, box


def _file(tmp_path: Path, size: int) -> tuple[Path, bytes]:
    data = os.urandom(size)
    path = tmp_path / "report.bin"
    path.write_bytes(data)
    return path, data


async def test_offline_to_offline_delivery_exactly_once(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, box = await _setup(tmp_path, nursery, net)
        bob.stop()
        await until(lambda: not bob.up)
        ids = [await alice.send(bob, f"report {i}") for i in range(120)]
        source, data = _file(tmp_path, 2 * FILE_CHUNK_SIZE + 777)
        assert alice.daemon is not None
        queued = await alice.daemon.messages.send_file(api.SendFile("bob", str(source)))
        file_id = bytes.fromhex(queued.id)
        every = [*ids, file_id]
        await until(lambda: all(alice.store.messages.message(i).deposited_ms for i in every), 600)
        shown = await alice.daemon.messages.message(api.GetMessage(ids[0].hex()))
        assert shown.state.value == "deposited"
        alice.stop()
        await until(lambda: not alice.up)

        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == len(every), 600)
        inbox = bob.inbox_from(alice)
        assert sorted(s.id for s in inbox) == sorted(every)  # each once
        bodies = {s.id: s.body for s in inbox}
        assert [bodies[i] for i in ids] == [f"report {i}" for i in range(120)]
        out = tmp_path / "got.bin"
        bob.store.transfers.export_file(file_id, out)
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(data).digest()
        # The mailbox keeps nothing once bob drained.
        assert bob.daemon is not None
        await until(lambda: _held(box) == 0, 120)

        # Alice, back, learns of the delivery (bob's acks: through alice's
        # mailbox while she was away, or directly).
        await alice.start(nursery)
        await until(lambda: all(alice.state(i) == "delivered" for i in every), 600)
        assert len(bob.inbox_from(alice)) == len(every)


async def test_after_a_drain_the_status_shows_what_is_left_not_what_was(
    tmp_path: Path, clock: MockClock
) -> None:
    """The owner's mailbox status is asked again once a drain's deletions went
    out, not only every PING_SECONDS: it showed the envelopes of before the
    drain for up to a minute."""
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, box = await _setup(tmp_path, nursery, net)
        bob.stop()
        await until(lambda: not bob.up)
        ids = [await alice.send(bob, f"while away {i}") for i in range(5)]
        await until(lambda: all(alice.store.messages.message(i).deposited_ms for i in ids), 600)
        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 5, 600)
        assert bob.daemon is not None
        daemon = bob.daemon

        async def waiting() -> int | None:
            return (await daemon.mailbox_status(api.GetMailboxStatus())).waiting

        with trio.fail_after(PING_SECONDS / 2):
            while await waiting() != 0 or _held(box):
                await trio.sleep(0.5)


def _held(box: MailboxNode) -> int:
    assert box.store is not None
    return sum(u.envelopes for u in box.store.usages())


async def test_forward_secrecy_after_the_drain(tmp_path: Path, clock: MockClock) -> None:
    """A recorded envelope does not open with anything left in the recipient's
    home once it was drained: its one-time prekey's private half is gone."""
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, box = await _setup(tmp_path, nursery, net)
        bob.stop()
        await until(lambda: not bob.up)
        message_id = await alice.send(bob, "for your eyes only")
        await until(lambda: alice.store.messages.message(message_id).deposited_ms is not None, 600)
        # The adversary records what the mailbox holds.
        recorded = [h.data for h in _envelopes(box, bob)]
        assert recorded
        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 1, 600)
        await until(lambda: not _envelopes(box, bob), 120)
        # Everything left in bob's home: every prekey secret still held.
        with bob.store.transaction():
            secrets = [
                env.PrekeySecret.from_bytes(bytes(row[0]))
                for row in bob.store._db.execute("SELECT secret FROM prekeys")
            ]
        assert secrets
        for envelope in recorded:
            header = env.EnvelopeHeader.parse(envelope)
            assert bob.store.mailbox.prekey_secret(header.key_id) is None
            assert bob.store.mailbox.prekey_was_used(header.key_id)
            for secret in secrets:
                with pytest.raises(AuthenticationError):
                    env.open_envelope(
                        envelope,
                        recipient=bob.address,
                        secret=secret,
                        now_ms=int(time.time() * 1000),
                    )


def _envelopes(box: MailboxNode, owner: Node) -> list[HeldEnvelope]:
    assert box.store is not None
    return box.store.envelopes(owner.address, after=0, limit=10_000)


async def test_a_deposit_over_quota_stays_in_the_outbox(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, _box = await _setup(tmp_path, nursery, net, max_envelopes_per_contact=1)
        bob.stop()
        await until(lambda: not bob.up)
        first = await alice.send(bob, "fits")
        await until(lambda: alice.store.messages.message(first).deposited_ms is not None, 600)
        second = await alice.send(bob, "over quota")
        assert alice.engine is not None
        await until(
            lambda: (
                (s := alice.engine.status(alice.contact(bob).id)) is not None  # type: ignore[union-attr]
                and s.mailbox_error == "mailbox-quota-exceeded"
            ),
            600,
        )
        assert alice.daemon is not None
        shown = next(
            c for c in (await alice.daemon.status(api.GetStatus())).contacts if c.name == "bob"
        )
        assert shown.mailbox_error == "mailbox-quota-exceeded"
        assert shown.deposited == 1
        assert shown.queued == 2
        assert shown.mailbox == str(_box.address)
        stored = alice.store.messages.message(second)
        assert stored.deposited_ms is None
        assert str(stored.state) in ("queued", "sent")
        # Bob back: the direct path delivers it (and the mailbox one, once).
        await bob.start(nursery)
        await until(lambda: alice.state(second) == "delivered", 600)
        await until(lambda: len(bob.inbox_from(alice)) == 2, 600)


async def test_a_pairing_cut_short_completes_at_the_next_start(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice = net.node("alice")
        box = net.mailbox("box")
        await box.start(nursery)
        code = await box.code()
        from onionpost.proto.pairing import SetupCode

        # The daemon recorded the pairing, then died before it was done.
        alice.store.mailbox.begin_pairing(
            SetupCode.parse(code).mailbox, code, int(time.time() * 1000)
        )
        await alice.start(nursery)
        await until(lambda: alice.store.mailbox.own_mailbox() is not None, 600)
        assert alice.store.mailbox.pairing() is None
        assert alice.daemon is not None
        status = await alice.daemon.mailbox_status(api.GetMailboxStatus())
        assert status.paired
        with trio.fail_after(600):
            while not (await alice.daemon.mailbox_status(api.GetMailboxStatus())).reachable:
                await trio.sleep(0.5)
        # Another endpoint cannot use the same code.
        carol = net.node("carol")
        await carol.start(nursery)
        assert carol.daemon is not None
        with pytest.raises(ConfigError, match="unknown, used or expired"):
            await carol.daemon.mailbox_pair(api.MailboxPair(code))


async def test_a_first_pairing_dial_that_hangs_is_tried_again(
    tmp_path: Path, clock: MockClock
) -> None:
    """A tor still fetching directory information can hang the first dial to a
    mailbox until the dial's deadline: the pairing tries again and completes,
    within the CLI's answer deadline."""
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice = net.node("alice")
        box = net.mailbox("box")
        await box.start(nursery)
        await alice.start(nursery)
        assert alice.daemon is not None
        dials = 0

        async def hang_once() -> None:
            nonlocal dials
            dials += 1
            if dials == 1:
                await trio.sleep(3600)

        net.faults[box.address] = hang_once
        started = trio.current_time()
        with trio.fail_after(ANSWER_DEADLINE):
            await alice.daemon.mailbox_pair(api.MailboxPair(await box.code()))
        assert dials == 2
        assert trio.current_time() - started < ANSWER_DEADLINE
        own = alice.store.mailbox.own_mailbox()
        assert own is not None
        assert own.address == box.address
        assert own.paired_ms is not None


async def test_a_mailbox_never_reached_is_reported_in_time_and_the_pairing_kept(
    tmp_path: Path, clock: MockClock
) -> None:
    """Every dial times out: ``mailbox pair`` answers before the CLI gives up,
    saying the mailbox cannot be reached, and keeps the pairing so the owner
    link completes it once the mailbox can be reached."""
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice = net.node("alice")
        box = net.mailbox("box")
        await box.start(nursery)
        await alice.start(nursery)
        assert alice.daemon is not None

        async def timed_out() -> None:
            await trio.sleep(20)
            raise DialError("the onion service did not answer", reason="timeout")

        net.faults[box.address] = timed_out
        code = await box.code()
        started = trio.current_time()
        with pytest.raises(ConfigError, match=r"cannot be reached.*\[timeout\]"):
            await alice.daemon.mailbox_pair(api.MailboxPair(code))
        assert trio.current_time() - started < ANSWER_DEADLINE
        assert alice.store.mailbox.pairing() is not None
        # The mailbox becomes reachable: the kept pairing completes by itself.
        del net.faults[box.address]
        await until(lambda: alice.store.mailbox.pairing() is None, 900)
        own = alice.store.mailbox.own_mailbox()
        assert own is not None
        assert own.address == box.address
        assert own.paired_ms is not None


async def test_a_contact_cannot_read_the_owners_space(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, box = await _setup(tmp_path, nursery, net)
        # Carol is bob's contact (bob registers her), not an owner: she may
        # deposit for bob, but fetching, deleting, asking for usage or wiping
        # is answered as if there were nothing to see; so is a prekey of an
        # owner who did not register her.
        carol = net.node("carol")
        befriend(carol, bob)
        assert bob.daemon is not None
        bob.daemon.owner.changed()
        await until(lambda: bob.contact(carol).mailbox_registered, 600)
        channel = await net.dial(carol, box.address, client_auth=carol.secrets.client_auth_private)
        try:
            answers = []
            for record in (
                m.MbFetch(1, 0),
                m.MbDelete(2, (bytes(16),)),
                m.MbStatus(3),
                m.MbWipe(4),
                m.MbGetPrekey(5, alice.address.public_key),
                m.MbGetPrekey(6, bytes(32)),
            ):
                await channel.send(record)
                answers.append(await channel.receive())
            assert [a.req for a in answers] == [1, 2, 3, 4, 5, 6]  # type: ignore[union-attr]
            assert {(type(a), a.code, a.detail) for a in answers} == {  # type: ignore[union-attr]
                (m.MbResult, m.MbCode.NOT_FOUND, "not found")
            }
            await channel.send(m.MbGetPrekey(7, bob.address.public_key))
            assert isinstance(await channel.receive(), m.MbPrekey)
        finally:
            await channel.aclose()
        # A stranger cannot even reach it.
        dave = net.node("dave")
        with pytest.raises(DialError):
            await net.dial(dave, box.address, client_auth=dave.secrets.client_auth_private)


async def test_a_replayed_envelope_is_stored_once_and_a_reused_prekey_is_noticed(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, box = await _setup(tmp_path, nursery, net)
        bob.stop()
        await until(lambda: not bob.up)
        message_id = await alice.send(bob, "once")
        await until(lambda: alice.store.messages.message(message_id).deposited_ms is not None, 600)
        (held,) = _envelopes(box, bob)
        header = env.EnvelopeHeader.parse(held.data)
        secret = bob.store.mailbox.prekey_secret(header.key_id)
        assert secret is not None
        prekey = env.PrekeySecret.from_bytes(secret).public
        assert prekey.kind is env.PrekeyKind.ONE_TIME
        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 1, 600)
        await until(lambda: not _envelopes(box, bob), 120)

        # Someone deposits the very same envelope again, and a new one sealed
        # to the one-time prekey already used (as a mailbox that handed it
        # out twice would let happen).
        again = env.seal(
            sender=alice.secrets.identity,
            static=alice.secrets.static,
            recipient=bob.address,
            prekey=prekey,
            envelope_id=os.urandom(16),
            records=[
                m.encode(m.Text(os.urandom(16), int(time.time() * 1000), "second", "text/plain"))
            ],
            sealed_ms=int(time.time() * 1000),
        )
        channel = await net.dial(alice, box.address, client_auth=alice.secrets.client_auth_private)
        try:
            for req, envelope in ((1, held.data), (2, again)):
                await channel.send(m.MbDeposit(req, bob.address.public_key, envelope))
                answer = await channel.receive()
                assert isinstance(answer, m.MbResult)
                assert answer.code == m.MbCode.OK
        finally:
            await channel.aclose()
        assert bob.daemon is not None
        await until(lambda: not _envelopes(box, bob), 120)
        status = await bob.daemon.mailbox_status(api.GetMailboxStatus())
        assert "one-time prekey already used" in status.warning
        # The replay was recognised; the second envelope could not be opened.
        assert [s.body for s in bob.inbox_from(alice)] == ["once"]


async def test_a_file_both_deposited_and_sent_directly_arrives_once_and_the_drain_ends(
    tmp_path: Path, clock: MockClock
) -> None:
    """Bob comes back while alice is up: the file he drains from his mailbox
    is the one alice offers him directly at the same time. Both paths write
    the same transfer; the file is stored once, whole, and the drain does not
    stall on the parts that arrive after it completed."""
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, box = await _setup(tmp_path, nursery, net)
        bob.stop()
        await until(lambda: not bob.up)
        source, data = _file(tmp_path, 5 * FILE_CHUNK_SIZE + 99)
        assert alice.daemon is not None
        file_id = bytes.fromhex(
            (await alice.daemon.messages.send_file(api.SendFile("bob", str(source)))).id
        )
        texts = [await alice.send(bob, f"with the file {i}") for i in range(5)]
        await until(lambda: alice.store.messages.message(file_id).deposited_ms is not None, 600)
        await bob.start(nursery)
        await until(lambda: all(alice.state(i) == "delivered" for i in [file_id, *texts]), 600)
        await until(lambda: not _envelopes(box, bob), 600)
        inbox = bob.inbox_from(alice)
        assert sorted(s.id for s in inbox) == sorted([file_id, *texts])
        out = tmp_path / "both.bin"
        bob.store.transfers.export_file(file_id, out)
        assert out.read_bytes() == data
        assert bob.daemon is not None
        status = await bob.daemon.mailbox_status(api.GetMailboxStatus())
        assert status.reachable
        assert status.last_error == ""


async def test_a_mailbox_that_never_answers_does_not_hold_the_link(
    tmp_path: Path, clock: MockClock
) -> None:
    """Bob's mailbox takes alice's requests and answers none: the deposit ends
    on its deadline, and alice still delivers directly once bob is back."""
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, box = await _setup(tmp_path, nursery, net)
        bob.stop()
        await until(lambda: not bob.up)
        box.stop()
        await until(lambda: box.listener is None)
        mute = MemoryListener()
        box.listener = mute  # a mailbox that completes handshakes, then is silent
        box.authorized = lambda: {alice.secrets.client_auth_public}  # type: ignore[method-assign]

        async def silent(stream: trio.abc.Stream) -> None:
            channel = await accept(
                stream,
                identity=box.secrets.identity,
                static=box.secrets.static,
                decide=lambda peer: PeerDecision.ACCEPT,
            )
            await trio.sleep_forever()
            await channel.aclose()

        async def serve_mute() -> None:
            async with trio.open_nursery() as inner:
                while True:
                    inner.start_soon(silent, await mute.accept())

        nursery.start_soon(serve_mute)
        message_id = await alice.send(bob, "waits")
        assert alice.engine is not None
        link = alice.contact(bob).id
        await until(lambda: alice.engine.status(link).mailbox_error == "timeout", 900)  # type: ignore[union-attr]
        assert alice.store.messages.message(message_id).deposited_ms is None
        await bob.start(nursery)
        await until(lambda: alice.state(message_id) == "delivered", 900)


# -- a contact's mailbox may not be us, another contact, or no mailbox at all --------


async def _ping(channel: SecureChannel) -> None:
    """Everything sent before has been handled: the Pong comes after it."""
    async with trio.open_nursery() as inner:

        async def receive() -> None:
            with contextlib.suppress(trio.EndOfChannel):
                while True:
                    await channel.receive()

        inner.start_soon(receive)
        await channel.ping()
        inner.cancel_scope.cancel()


async def test_an_announcement_naming_us_or_a_contact_is_refused(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        box = net.mailbox("box")
        befriend(alice, bob)
        befriend(bob, carol)
        await bob.start(nursery)
        channel, _ = await net.connect_raw(alice, bob)
        try:
            # (Naming herself is refused when the announcement is parsed.)
            for version, named in enumerate((bob.address, carol.address), 1):
                signed = MailboxAnnouncement.issue(alice.secrets.identity, named, version=version)
                await channel.send(m.MailboxInfo(signed.to_bytes()))
                await _ping(channel)
                assert bob.contact(alice).mailbox is None
            signed = MailboxAnnouncement.issue(alice.secrets.identity, box.address, version=9)
            await channel.send(m.MailboxInfo(signed.to_bytes()))
            await _ping(channel)
            assert bob.contact(alice).mailbox == box.address
        finally:
            await channel.aclose()


async def test_a_card_naming_us_or_a_contact_as_its_mailbox_is_refused(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        bob, carol, dave = net.node("bob"), net.node("carol"), net.node("dave")
        befriend(bob, carol)
        await bob.start(nursery)
        assert bob.daemon is not None
        for named in (bob.address, carol.address):
            signed = MailboxAnnouncement.issue(dave.secrets.identity, named, version=1)
            card = ContactCard.issue(dave.secrets, mailbox=signed).to_line()
            with pytest.raises(ConfigError, match="mailbox"):
                await bob.daemon.contacts.contact_add(api.ContactAdd(card))
        assert bob.store.contacts.contact_by_address(dave.address) is None


async def test_a_mailbox_that_answers_as_an_endpoint_is_marked_bad(
    tmp_path: Path, clock: MockClock
) -> None:
    """Alice names dave (an endpoint that knows bob; bob does not know him) as
    her mailbox. Bob's deposit there gets an endpoint's answers: that mailbox
    is marked bad for alice, shown in status, and never dialed again."""
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, dave = net.node("alice"), net.node("bob"), net.node("dave")
        befriend(alice, bob)
        now = int(time.time() * 1000)
        dave.store.contacts.add_contact("bob", bob.address, bob.secrets.client_auth_public, now)
        signed = MailboxAnnouncement.issue(alice.secrets.identity, dave.address, version=1)
        bob.store.mailbox.set_contact_mailbox(bob.contact(alice).id, dave.address, signed.version)
        dials = 0

        async def counted() -> None:
            nonlocal dials
            dials += 1

        net.faults[dave.address] = counted
        await dave.start(nursery)
        await bob.start(nursery)
        message_id = await bob.send(alice, "for alice")
        assert bob.engine is not None
        link = bob.contact(alice).id
        await until(
            lambda: bob.engine.status(link).mailbox_error == "not-a-mailbox",  # type: ignore[union-attr]
            900,
        )
        assert dials == 1
        await trio.sleep(3600)
        assert dials == 1
        assert bob.daemon is not None
        shown = next(c for c in (await bob.daemon.status(api.GetStatus())).contacts)
        assert shown.mailbox_error == "not-a-mailbox"
        assert bob.store.messages.message(message_id).deposited_ms is None
        assert not dave.store.messages.inbox(limit=10)


# -- the card the product shows names the current mailbox ------------------------------


def _printed_card(node: Node) -> str:
    """The card ``onionpost whoami --json`` prints for the node's home (no daemon asked)."""
    result = CliRunner().invoke(main, ["whoami", "--home", str(node.paths.home), "--json"])
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["card"])


async def test_a_contact_added_from_the_printed_card_deposits_before_any_session(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        box = net.mailbox("box")
        await box.start(nursery)
        await alice.start(nursery)
        assert alice.daemon is not None
        await alice.daemon.mailbox_pair(api.MailboxPair(await box.code()))
        # Bob is not running: the two never hold a live session.
        await alice.daemon.contacts.contact_add(api.ContactAdd(bob.card()))
        await until(lambda: alice.contact(bob).mailbox_registered, 600)
        alice.stop()
        await until(lambda: not alice.up)

        card = ContactCard.parse(_printed_card(alice))
        assert card.mailbox is not None
        assert card.mailbox.mailbox == box.address
        await bob.start(nursery)
        assert bob.daemon is not None
        await bob.daemon.contacts.contact_add(api.ContactAdd(card.to_line()))
        assert bob.contact(alice).mailbox == box.address
        message_id = await bob.send(alice, "before we ever met")
        await until(lambda: bob.store.messages.message(message_id).deposited_ms is not None, 600)

        # Wiped: the card no longer names it.
        await alice.start(nursery)
        assert alice.daemon is not None
        with trio.fail_after(600):
            while not (await alice.daemon.mailbox_status(api.GetMailboxStatus())).reachable:
                await trio.sleep(0.5)
        await until(lambda: len(alice.inbox_from(bob)) == 1, 600)
        await alice.daemon.mailbox_wipe(api.MailboxWipe())
        # (It carries the newer announcement of no mailbox.)
        wiped = ContactCard.parse(_printed_card(alice)).mailbox
        assert wiped is not None
        assert wiped.mailbox is None
        assert (await alice.daemon.whoami(api.Whoami())).card == _printed_card(alice)


async def test_a_log_throttle_lets_one_line_a_period_and_counts_the_rest() -> None:
    throttle = LogThrottle(60.0)
    seen = [throttle.allow(t) for t in (0.0, 1.0, 2.0, 59.9, 60.0, 61.0, 200.0)]
    assert seen == [0, None, None, None, 3, None, 1]


async def test_a_hostile_mailboxs_junk_is_drained_at_a_bounded_rate_and_logged_rarely(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, box = await _setup(tmp_path, nursery, net)
        bob.stop()
        await until(lambda: not bob.up)
        # The mailbox (or anyone with its store) fills bob's space with junk,
        # half of it naming bob's real prekeys: each costs him a decapsulation.
        with bob.store.transaction():
            real = [bytes(r[0]) for r in bob.store._db.execute("SELECT key_id FROM prekeys")]
        assert box.store is not None
        count = 400
        for i in range(count):
            junk = bytearray(os.urandom(env.MIN_ENVELOPE + 200))
            junk[0] = env.ENVELOPE_VERSION
            if i % 2:
                junk[17:33] = real[i % len(real)]
            box.store.deposit(
                bob.address,
                alice.address,
                bytes(junk[1:17]),
                bytes(junk),
                now=int(time.time() * 1000),
                max_envelopes=10**6,
                max_bytes=10**12,
                max_disk=10**12,
            )
        caplog.set_level(logging.WARNING, logger="onionpost.daemon")
        await bob.start(nursery)
        started = trio.current_time()
        await until(lambda: _held(box) == 0, 600)
        taken = trio.current_time() - started
        assert bob.daemon is not None
        assert bob.daemon.owner.unopenable == count
        # No faster than the bucket allows (a burst of twice the rate, then the rate).
        assert taken >= (count - 2 * DRAIN_PER_SECOND) / DRAIN_PER_SECOND
        # One line a minute at most, the rest counted in it.
        dropped = [r for r in caplog.records if "event=envelope_dropped" in r.getMessage()]
        assert 1 <= len(dropped) <= 1 + taken // DROPPED_LOG_SECONDS


async def test_labels_arrive_through_the_mailbox(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob, _box = await _setup(tmp_path, nursery, net)
        bob.stop()
        await until(lambda: not bob.up)
        assert alice.daemon is not None
        text = await alice.daemon.messages.send_text(api.SendText("bob", "sealed", label="TLP:RED"))
        source, _data = _file(tmp_path, 3000)
        file = await alice.daemon.messages.send_file(
            api.SendFile("bob", str(source), label="CUI//SP-CTI")
        )
        sent = [bytes.fromhex(text.id), bytes.fromhex(file.id)]
        await until(lambda: all(alice.store.messages.message(i).deposited_ms for i in sent), 600)
        alice.stop()
        await until(lambda: not alice.up)
        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 2, 600)
        labels = {s.id: s.label for s in bob.inbox_from(alice)}
        assert labels == {sent[0]: "TLP:RED", sent[1]: "CUI//SP-CTI"}
