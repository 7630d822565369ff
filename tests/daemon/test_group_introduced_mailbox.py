"""An introduced member's mailbox (groups.md §9), in memory on MockClock:
alice is bob's and carol's contact, bob and carol are not each other's, and
each of bob and carol has a mailbox. Once introduced, each tells the other
its mailbox and registers the other at its own: a group text or file to a
member who is away is deposited in its mailbox and reaches it when it is
back, once, through a restart of the mailbox; a one-to-one text an
introduced member deposits is refused (nothing stored, logged, the drain
goes on); and a member dropped is deregistered at the mailbox.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.errors import DialError, NotFoundError
from onionpost.proto import messages as m
from onionpost.store import Contact, Direction, Stored
from onionpost.testing.memory import MailboxNode, Node, befriend, network, until

pytestmark = pytest.mark.trio

LONG = 600.0  # virtual seconds


def _peer(node: Node, other: Node) -> Contact | None:
    return node.store.contacts.peer_by_address(other.address)


def _introduced(node: Node, other: Node) -> bool:
    peer = _peer(node, other)
    return peer is not None and peer.introduced


def _knows_mailbox(node: Node, other: Node, box: MailboxNode) -> bool:
    peer = _peer(node, other)
    return peer is not None and peer.mailbox == box.address


def _registered(node: Node, other: Node) -> bool:
    peer = _peer(node, other)
    return peer is not None and peer.mailbox_registered


def _held(node: Node, sender: Node) -> list[Stored]:
    """What ``node`` holds from ``sender``, each checked to be the group's."""
    peer = _peer(node, sender)
    if peer is None:
        return []
    rows = [r for r in node.store.messages.inbox(limit=1000) if r.contact_id == peer.id]
    for row in rows:
        assert node.store.groups.of_message(Direction.IN, row.contact_id, row.id) is not None
    return rows


def _deposited(node: Node, message_id: bytes) -> bool:
    return node.store.messages.message(message_id).deposited_ms is not None


async def _stop(node: Node | MailboxNode) -> None:
    node.stop()
    await until(lambda: node.scope is None)


@asynccontextmanager
async def _team(
    tmp_path: Path,
) -> AsyncIterator[tuple[trio.Nursery, Node, Node, Node, MailboxNode, MailboxNode]]:
    async with network(tmp_path, mailbox_after=5.0) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        box_b, box_c = net.mailbox("box-b"), net.mailbox("box-c")
        befriend(alice, bob)
        befriend(alice, carol)
        for node in (box_b, box_c, alice, bob, carol):
            await node.start(nursery)
        for node, box in ((bob, box_b), (carol, box_c)):
            assert node.daemon is not None
            await node.daemon.mailbox_pair(api.MailboxPair(await box.code()))
        assert alice.daemon is not None
        made = await alice.daemon.groups.group_create(api.GroupCreate("desk", ("bob", "carol")))
        group_id = bytes.fromhex(made.id)
        await until(lambda: all(n.store.groups.known(group_id) for n in (bob, carol)), LONG)
        await until(lambda: _introduced(bob, carol) and _introduced(carol, bob), LONG)
        # Registered at each other's mailbox: its tor key is let in there.
        await until(lambda: _registered(bob, carol) and _registered(carol, bob), LONG)
        assert carol.secrets.client_auth_public in box_b.authorized()
        assert bob.secrets.client_auth_public in box_c.authorized()
        # Each learns the other's mailbox in their first session.
        await _send(bob, "hello")
        await until(
            lambda: _knows_mailbox(bob, carol, box_c) and _knows_mailbox(carol, bob, box_b), LONG
        )
        await until(lambda: len(_held(carol, bob)) == 1, LONG)
        yield nursery, alice, bob, carol, box_b, box_c


async def _send(node: Node, body: str) -> api.GroupSent:
    assert node.daemon is not None
    return await node.daemon.groups.group_send_text(api.GroupSendText("desk", body))


def _copy_to(sent: api.GroupSent, name: str) -> bytes:
    return next(bytes.fromhex(c.id) for c in sent.copies if c.contact == name)


async def test_a_group_text_and_file_reach_an_introduced_member_through_its_mailbox(
    tmp_path: Path, clock: MockClock
) -> None:
    async with _team(tmp_path) as (nursery, _alice, bob, carol, _box_b, box_c):
        assert bob.daemon is not None
        await _stop(carol)
        text = await _send(bob, "while carol is away")
        data = os.urandom(100_000)
        source = tmp_path / "boxed.bin"
        source.write_bytes(data)
        file = await bob.daemon.groups.group_send_file(api.GroupSendFile("desk", str(source)))
        to_carol = [_copy_to(text, "carol"), _copy_to(file, "carol")]
        await until(lambda: all(_deposited(bob, i) for i in to_carol), LONG)
        # Neither the sender nor the mailbox is there all the while: bob goes
        # away, and carol's mailbox restarts with the envelopes it holds.
        await _stop(bob)
        await _stop(box_c)
        await box_c.start(nursery)

        await carol.start(nursery)
        await until(lambda: any(r.file and r.file.complete for r in _held(carol, bob)), LONG)
        await until(lambda: len(_held(carol, bob)) == 3, LONG)
        rows = _held(carol, bob)
        assert sorted(r.body or "" for r in rows if r.file is None) == [
            "hello",
            "while carol is away",
        ]
        (got,) = [r for r in rows if r.file is not None]
        assert got.file is not None
        assert got.file.blake2b == hashlib.blake2b(data, digest_size=64).digest()

        await bob.start(nursery)
        await until(lambda: {bob.state(i) for i in to_carol} == {"delivered"}, LONG)
        assert len(_held(carol, bob)) == 3  # once each


async def test_an_introduced_member_s_deposit_reaches_a_member_who_is_away(
    tmp_path: Path, clock: MockClock
) -> None:
    async with _team(tmp_path) as (nursery, alice, bob, carol, _box_b, _box_c):
        await _stop(bob)
        sent = await _send(carol, "for bob's mailbox")
        to_bob = _copy_to(sent, "bob")
        await until(lambda: _deposited(carol, to_bob), LONG)
        await _stop(carol)

        await bob.start(nursery)
        await until(lambda: len(_held(bob, carol)) == 1, LONG)
        assert _held(bob, carol)[0].body == "for bob's mailbox"
        await carol.start(nursery)
        await until(lambda: carol.state(to_bob) == "delivered", LONG)
        assert len(_held(bob, carol)) == 1
        assert alice.up


async def test_a_one_to_one_text_an_introduced_member_deposits_is_refused(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onionpost.daemon")
    async with _team(tmp_path) as (nursery, _alice, bob, carol, _box_b, _box_c):
        assert carol.engine is not None
        await _stop(bob)
        # carol's daemon would not queue it (bob is no contact of hers); her
        # engine is made to, as a daemon holding bob as a contact would.
        to_bob = _peer(carol, bob)
        assert to_bob is not None
        direct = m.Text(bytes([7]) * 16, 1, "one to one", "text/plain")
        await carol.engine.queue_text(to_bob.id, direct)
        await until(lambda: _deposited(carol, direct.id), LONG)
        sent = await _send(carol, "group after")
        await until(lambda: _deposited(carol, _copy_to(sent, "bob")), LONG)
        await _stop(carol)
        inbox_before = len(bob.store.messages.inbox(limit=1000))

        await bob.start(nursery)
        assert bob.daemon is not None
        # The drain goes on past the refusal: the group text is taken.
        await until(lambda: [r.body for r in _held(bob, carol)] == ["group after"], LONG)
        assert len(bob.store.messages.inbox(limit=1000)) == inbox_before + 1
        with pytest.raises(NotFoundError):
            bob.store.messages.message(direct.id)
        refused = [
            r.getMessage()
            for r in caplog.records
            if "event=record_refused" in r.getMessage() and "via=mailbox" in r.getMessage()
        ]
        assert len(refused) == 1
        assert "record=Text" in refused[0]
        assert bob.daemon.owner.drained >= 2
        # Not acknowledged: carol keeps it queued.
        await carol.start(nursery)
        await until(lambda: carol.state(_copy_to(sent, "bob")) == "delivered", LONG)
        assert carol.state(direct.id) != "delivered"
        assert bob.up


async def test_a_member_removed_is_deregistered_at_the_mailbox(
    tmp_path: Path, clock: MockClock
) -> None:
    async with _team(tmp_path) as (nursery, alice, bob, carol, box_b, _box_c):
        assert alice.daemon is not None
        await alice.daemon.groups.group_remove(api.GroupRemove("desk", ("carol",)))
        await until(lambda: _peer(bob, carol) is None, LONG)
        # She may deposit for bob no more: her tor key is not let in there.
        await until(lambda: carol.secrets.client_auth_public not in box_b.authorized(), LONG)
        assert bob.store.mailbox.removed_registered() == []
        assert alice.secrets.client_auth_public in box_b.authorized()

        # A contact removed who shares the group is introduced (a new row):
        # the old row's deregistration does not undo the new one's
        # registration, when the mailbox learns both at once.
        assert bob.daemon is not None
        await _stop(box_b)
        await bob.daemon.contacts.contact_remove(api.ContactRemove("alice"))
        await until(lambda: _introduced(bob, alice), LONG)
        await box_b.start(nursery)
        await until(lambda: _registered(bob, alice), LONG)
        await until(lambda: bob.store.mailbox.removed_registered() == [], LONG)
        assert alice.secrets.client_auth_public in box_b.authorized()


async def test_an_introduced_member_away_is_not_redialled_to_learn_our_mailbox(
    tmp_path: Path, clock: MockClock
) -> None:
    """Our announcement alone is no work worth a dial to an introduced
    member (a contact it is): it goes with the next session."""
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        box_b = net.mailbox("box-b")
        befriend(alice, bob)
        befriend(alice, carol)
        for node in (box_b, alice, bob, carol):
            await node.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        await alice.daemon.groups.group_create(api.GroupCreate("desk", ("bob", "carol")))
        await until(lambda: _introduced(bob, carol) and _introduced(carol, bob), LONG)
        await _stop(carol)
        dials = 0

        async def away() -> None:
            nonlocal dials
            dials += 1
            raise DialError("the onion service is not reachable", reason="descriptor-not-found")

        net.faults[carol.address] = away
        await bob.daemon.mailbox_pair(api.MailboxPair(await box_b.code()))
        await until(lambda: _knows_mailbox(alice, bob, box_b), LONG)  # a contact is told
        await trio.sleep(LONG)
        settled = dials
        await trio.sleep(3 * LONG)
        assert dials == settled  # not one dial more for it
        del net.faults[carol.address]
        await carol.start(nursery)
        await until(lambda: _knows_mailbox(carol, bob, box_b), LONG)


async def test_a_mailbox_full_of_registrations_still_drains(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Contacts are registered first; an introduced member the mailbox's quota
    leaves out waits (logged), and the owner's session goes on."""
    caplog.set_level(logging.INFO, logger="onionpost.daemon")
    async with network(tmp_path, mailbox_after=5.0) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        box_b = net.mailbox("box-b", max_contacts_per_owner=1)
        befriend(alice, bob)
        befriend(alice, carol)
        for node in (box_b, alice, bob, carol):
            await node.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        await bob.daemon.mailbox_pair(api.MailboxPair(await box_b.code()))
        await until(lambda: _registered(bob, alice) and _knows_mailbox(alice, bob, box_b), LONG)
        await alice.daemon.groups.group_create(api.GroupCreate("desk", ("bob", "carol")))
        await until(lambda: _introduced(bob, carol), LONG)
        await until(
            lambda: any(
                "event=mailbox_registration_refused" in r.getMessage() for r in caplog.records
            ),
            LONG,
        )
        assert not _registered(bob, carol)
        assert carol.secrets.client_auth_public not in box_b.authorized()

        await _stop(bob)
        direct = await alice.send(bob, "through the full mailbox")
        await until(lambda: _deposited(alice, direct), LONG)
        await _stop(alice)
        await bob.start(nursery)
        await until(
            lambda: [r.body for r in bob.inbox_from(alice)] == ["through the full mailbox"], LONG
        )
        assert not _registered(bob, carol)
