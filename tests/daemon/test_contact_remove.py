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
        to_bob = [await alice.daemon.send_text(api.SendText("bob", f"t{i}")) for i in range(3)]
        to_carol = await alice.daemon.send_text(api.SendText("carol", "stays"))
        events = alice.daemon.subscribe(("state",))
        async with events:
            await alice.daemon.contact_remove(api.ContactRemove("bob"))
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
            await alice.daemon.contact_remove(api.ContactRemove("bob"))
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
        await daemon.contact_remove(api.ContactRemove("bob"))
        shown = await daemon.message(api.GetMessage(sent[0].hex(), "bob"))
        assert (shown.body, shown.contact, shown.direction) == ("t0", "bob", "in")
        marked = await daemon.mark_read(api.MarkRead((sent[0].hex(),), "BOB"))
        assert marked.marked == 1
        assert alice.store.messages.message(sent[0]).state == "read"
        assert alice.store.mailbox.owed(old, "read", 10) == []  # nothing for it
        # The name given to a new contact: the old messages are still found by it.
        await daemon.contact_add(api.ContactAdd(bob.card(), "bob"))
        assert alice.contact(bob).id != old
        shown = await daemon.message(api.GetMessage(sent[1].hex(), "bob"))
        assert shown.body == "t1"
        assert (await daemon.mark_read(api.MarkRead((sent[1].hex(),), "bob"))).marked == 1
        # Nor is a name that names nothing any less refused.
        with pytest.raises(UnknownContactError):
            await daemon.message(api.GetMessage(sent[2].hex(), "carol"))
        # What the current contact has: an id it never sent is not found.
        with pytest.raises(NotFoundError):
            await daemon.message(api.GetMessage("ab" * 16, "bob"))


async def test_an_empty_name_given_is_refused_not_replaced_by_the_cards(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        await alice.start(nursery)
        assert alice.daemon is not None
        for empty in ("", "   "):
            with pytest.raises(ConfigError, match="empty"):
                await alice.daemon.contact_add(api.ContactAdd(bob.card(), empty))
        assert alice.store.contacts.all() == []
        # No name given: the card's.
        added = await alice.daemon.contact_add(api.ContactAdd(bob.card()))
        assert added.name == "bob"
