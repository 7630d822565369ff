"""`contact verify NAME --confirm NUMBER`: a matching number marks the contact
verified and the evidence log records it; a wrong one changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from trio.testing import MockClock

from onionpost import api
from onionpost.errors import ConfigError, UnknownContactError
from onionpost.proto.evidence import Entry, Event
from onionpost.testing.memory import Node, befriend, network


def _last(node: Node) -> Entry:
    log = node.store.evidence
    return Entry.decode(log.entries(log.size() - 1, 1)[0][1])


async def test_a_matching_number_marks_the_contact_verified(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        shown = await alice.daemon.contacts.contact_verify(api.ContactVerify("bob"))
        assert shown.verified_ms is None
        listed = await alice.daemon.contacts.contact_list(api.ContactList())
        assert [c.verified_ms for c in listed] == [None]

        # Read aloud in groups, with other spacing: the digits are what count.
        heard = "  ".join(shown.groups)
        confirmed = await alice.daemon.contacts.contact_verify(api.ContactVerify("bob", heard))
        assert confirmed.safety_number == shown.safety_number
        assert confirmed.verified_ms is not None
        entry = _last(alice)
        assert entry.event is Event.CONTACT_VERIFIED
        assert entry.counterparty == str(bob.address)
        assert entry.detail == shown.safety_number
        listed = await alice.daemon.contacts.contact_list(api.ContactList())
        assert [c.verified_ms for c in listed] == [confirmed.verified_ms]
        again = await alice.daemon.contacts.contact_verify(api.ContactVerify("bob"))
        assert again.verified_ms == confirmed.verified_ms
        # The log still verifies whole with the new kind of entry in it.
        report = await alice.daemon.evidence.log_verify(api.LogVerify())
        assert report.ok, report.problems


async def test_a_wrong_number_is_refused_and_nothing_is_recorded(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        shown = await alice.daemon.contacts.contact_verify(api.ContactVerify("bob"))
        size = alice.store.evidence.size()
        digits = "".join(shown.groups)
        # Another number: someone may be between the two.
        other = digits[:-1] + str((int(digits[-1]) + 1) % 10)  # one digit off
        with pytest.raises(ConfigError, match="not the safety number"):
            await alice.daemon.contacts.contact_verify(api.ContactVerify("bob", other))
        # What cannot be a safety number is a slip, and said to be one.
        slips = {
            digits[:-5]: "that was 55 characters, spaces aside",  # cut short
            digits + "0": "that was 61 characters, spaces aside",  # one too many
            "": "that was 0 characters, spaces aside",
            "not a number": "that was 10 characters, spaces aside, not all digits",
            digits[:-1] + "x": "that was 60 characters, spaces aside, not all digits",
        }
        for attempt, says in slips.items():
            with pytest.raises(ConfigError) as refused:
                await alice.daemon.contacts.contact_verify(api.ContactVerify("bob", attempt))
            assert str(refused.value) == f"a safety number is 60 digits, spaces aside; {says}"
        with pytest.raises(UnknownContactError):
            await alice.daemon.contacts.contact_verify(api.ContactVerify("mallory", digits))
        assert alice.store.evidence.size() == size
        assert alice.store.contacts.verified() == {}
        # The daemon goes on answering.
        assert (
            await alice.daemon.contacts.contact_verify(api.ContactVerify("bob"))
        ).verified_ms is None


def test_a_contact_removed_and_added_again_starts_unverified(tmp_path: Path) -> None:
    from onionpost.proto.address import OnionAddress
    from onionpost.store import Store

    with Store.open(tmp_path / "s.sqlite", tmp_path / "files", bytes(32)) as store:
        address = OnionAddress(bytes(range(32)))
        bob = store.contacts.add_contact("bob", address, bytes(32), 1)
        store.contacts.mark_verified("bob", "12345 67890", 2)
        assert store.contacts.verified() == {bob.id: 2}
        store.contacts.remove_contact("bob", 3)
        assert store.contacts.verified() == {}
        again = store.contacts.add_contact("bob", address, bytes(32), 4)
        assert store.contacts.verified() == {}
        with pytest.raises(ConfigError):
            store.contacts.mark_verified("bob", "", 5)
        with pytest.raises(UnknownContactError):
            store.contacts.mark_verified("carol", "1", 5)
        assert store.contacts.verified() == {}
        store.contacts.mark_verified("bob", "1", 6)
        assert store.contacts.verified() == {again.id: 6}
