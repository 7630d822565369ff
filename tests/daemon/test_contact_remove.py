"""Removing a contact: what waited for it is marked expired (no acknowledgement
can reach us from it any more), in the removal's own transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.errors import ConfigError, NotFoundError, UnknownContactError
from onionpost.testing.memory import befriend, network, until


async def test_what_waits_for_a_removed_contact_is_expired(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        await alice.start(nursery)  # bob and carol stay offline
        assert alice.daemon is not None
        to_bob = [
            await alice.daemon.messages.send_text(api.SendText("bob", f"t{i}")) for i in range(3)
        ]
        to_carol = await alice.daemon.messages.send_text(api.SendText("carol", "stays"))
        for name, members in (("pair", ("bob", "carol")), ("solo", ("carol",))):
            await alice.daemon.lists.list_create(api.ListCreate(name, members))
        events = alice.daemon.subscribe(("state",))
        async with events:
            removed = await alice.daemon.contacts.contact_remove(api.ContactRemove("bob"))
            # Said: the lists it was taken off (and no group: none shared).
            assert (removed.lists, removed.groups) == (("pair",), ())
            seen = set()
            with trio.fail_after(5):
                while len(seen) < 3:
                    data = (await events.receive())["data"]
                    if data["state"] == "expired":
                        seen.add(data["id"])
        assert seen == {q.id for q in to_bob}
        for queued in to_bob:
            assert alice.state(bytes.fromhex(queued.id)) == "expired"
        assert alice.state(bytes.fromhex(to_carol.id)) == "queued"
        assert alice.store.outbox.outbox_depth() == 1
        # Nothing else changes on a second removal of the same name.
        with pytest.raises(UnknownContactError):
            await alice.daemon.contacts.contact_remove(api.ContactRemove("bob"))
        assert alice.state(bytes.fromhex(to_carol.id)) == "queued"


async def test_a_removed_contacts_messages_are_found_by_its_name_and_marked_read(
    tmp_path: Path, clock: MockClock
) -> None:
    """Its history stays: what it sent is shown, exported and marked read by
    the name the inbox shows, also once that name is given to a new contact
    (the inbox's '#' resolves to the message's id and that name). A removed
    contact is sent no read receipt."""
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        sent = [await bob.send(alice, f"t{i}") for i in range(3)]
        await until(lambda: len(alice.inbox_from(bob)) == 3)
        old = alice.contact(bob).id
        assert alice.daemon is not None
        daemon = alice.daemon
        await daemon.contacts.contact_remove(api.ContactRemove("bob"))
        shown = await daemon.messages.message(api.GetMessage(sent[0].hex(), "bob"))
        assert (shown.body, shown.contact, shown.direction) == ("t0", "bob", "in")
        marked = await daemon.messages.mark_read(api.MarkRead((sent[0].hex(),), "BOB"))
        assert marked.marked == 1
        assert alice.store.messages.message(sent[0]).state == "read"
        assert alice.store.mailbox.owed(old, "read", 10) == []  # nothing for it
        # The name given to a new contact: the old messages are still found by it.
        await daemon.contacts.contact_add(api.ContactAdd(bob.card(), "bob"))
        assert alice.contact(bob).id != old
        shown = await daemon.messages.message(api.GetMessage(sent[1].hex(), "bob"))
        assert shown.body == "t1"
        assert (await daemon.messages.mark_read(api.MarkRead((sent[1].hex(),), "bob"))).marked == 1
        # Nor is a name that names nothing any less refused.
        with pytest.raises(UnknownContactError):
            await daemon.messages.message(api.GetMessage(sent[2].hex(), "carol"))
        # What the current contact has: an id it never sent is not found.
        with pytest.raises(NotFoundError):
            await daemon.messages.message(api.GetMessage("ab" * 16, "bob"))


async def test_an_empty_name_given_is_refused_not_replaced_by_the_cards(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        await alice.start(nursery)
        assert alice.daemon is not None
        for empty in ("", "   "):
            with pytest.raises(ConfigError, match="empty"):
                await alice.daemon.contacts.contact_add(api.ContactAdd(bob.card(), empty))
        assert alice.store.contacts.all() == []
        # No name given: the card's.
        added = await alice.daemon.contacts.contact_add(api.ContactAdd(bob.card()))
        assert added.name == "bob"


async def test_a_contact_renamed_keeps_its_outbox_and_history_and_gets_what_waited(
    tmp_path: Path, clock: MockClock
) -> None:
    """Renamed while offline: what waits for it is delivered under its new
    name when it is back, once; its received messages show the new name; the
    old name names nothing."""
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        said = await bob.send(alice, "before")
        await until(lambda: len(alice.inbox_from(bob)) == 1)
        bob.stop()
        await until(lambda: not bob.up)
        assert alice.daemon is not None
        daemon = alice.daemon
        waiting = await daemon.messages.send_text(api.SendText("bob", "while you were away"))
        renamed = await daemon.contacts.contact_rename(api.ContactRename("bob", "robert"))
        assert renamed == api.ContactRef("robert", str(bob.address))
        assert [c.name for c in await daemon.contacts.contact_list(api.ContactList())] == ["robert"]
        assert (await daemon.messages.message(api.GetMessage(said.hex()))).contact == "robert"
        with pytest.raises(UnknownContactError):
            await daemon.messages.send_text(api.SendText("bob", "old name"))
        also = await daemon.messages.send_text(api.SendText("robert", "new name"))
        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 2)
        assert sorted(m.body for m in bob.inbox_from(alice)) == ["new name", "while you were away"]
        for queued in (waiting, also):
            await until(lambda q=queued: alice.state(bytes.fromhex(q.id)) == "delivered")
        # Refused, the daemon going on: another contact's name, a bad one, an unknown one.
        carol = net.node("carol")
        befriend(alice, carol)
        with pytest.raises(ConfigError, match="already exists"):
            await daemon.contacts.contact_rename(api.ContactRename("robert", "Carol"))
        with pytest.raises(ConfigError, match="empty"):
            await daemon.contacts.contact_rename(api.ContactRename("robert", ""))
        with pytest.raises(UnknownContactError):
            await daemon.contacts.contact_rename(api.ContactRename("bob", "bobby"))
        names = sorted(c.name for c in await daemon.contacts.contact_list(api.ContactList()))
        assert names == ["carol", "robert"]


async def test_a_card_named_after_another_contacts_address_is_refused_its_name(
    tmp_path: Path, clock: MockClock
) -> None:
    """A hostile card whose name is alice's address, added without a name of
    our own, would take alice's place wherever a command names her by her
    address: refused, saying to give it a name; with one it is added, and
    alice's address still means alice."""
    async with network(tmp_path) as (net, nursery):
        bob, alice = net.node("bob"), net.node("alice")
        mallory = net.node(str(alice.address).upper())
        befriend(bob, alice)
        await bob.start(nursery)
        assert bob.daemon is not None
        contacts = bob.daemon.contacts
        with pytest.raises(ConfigError, match=r"the card's name is an onion address .*--name"):
            await contacts.contact_add(api.ContactAdd(mallory.card()))
        with pytest.raises(ConfigError, match="a contact name cannot be an onion address"):
            await contacts.contact_add(api.ContactAdd(mallory.card(), str(alice.address)))
        added = await contacts.contact_add(api.ContactAdd(mallory.card(), "mallory"))
        assert added.address == str(mallory.address)
        with pytest.raises(ConfigError, match="a contact name cannot be an onion address"):
            await contacts.contact_rename(api.ContactRename("mallory", str(alice.address)))
        await bob.daemon.messages.send_text(api.SendText(str(alice.address), "to alice"))
        assert bob.store.outbox.outbox_depth(bob.contact(alice).id) == 1
        assert bob.store.outbox.outbox_depth(bob.contact(mallory).id) == 0
        shown = await contacts.contact_show(api.ContactShow(str(alice.address)))
        assert (shown.contact.name, shown.contact.address) == ("alice", str(alice.address))
