"""Members a group introduced (groups.md §9) in the store: reached as
contacts are (``peers``), never listed or named as contacts, turned into a
contact by adding their card (the same row), dropped as a contact is."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from onionpost.errors import ConfigError, UnknownContactError
from onionpost.proto.address import OnionAddress
from onionpost.store import Store
from tests.store._storekit import add_contact, new_id, open_store

GROUP = bytes([9]) * 16
ADMIN = bytes([8]) * 32


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = open_store(tmp_path)
    try:
        yield opened
    finally:
        opened.close()


def _introduce(store: Store, name: str = "carol") -> tuple[OnionAddress, int]:
    address = OnionAddress(os.urandom(32))
    peer = store.contacts.introduce(name, address, os.urandom(32), GROUP, ADMIN, 5)
    return address, peer.id


def test_an_introduced_member_is_a_peer_and_no_contact(store: Store) -> None:
    bob = add_contact(store, "bob")
    address, peer_id = _introduce(store, "Bob")  # a card's name may be a contact's
    peer = store.contacts.contact_by_id(peer_id)
    assert peer is not None
    assert (peer.introduced, peer.introduced_group, peer.introduced_by) == (True, GROUP, ADMIN)
    assert [c.name for c in store.contacts.all()] == ["bob"]
    assert [p.id for p in store.contacts.peers()] == [bob.id, peer_id]
    assert [p.id for p in store.contacts.introduced()] == [peer_id]
    assert store.contacts.contact_by_address(address) is None
    assert store.contacts.peer_by_address(address) == peer
    assert store.contacts.contact("bob").id == bob.id
    # Delivery works as a contact's: a group copy can be queued to it.
    assert store.outbox.queue_text(peer_id, new_id(), 1, "hi", "text/plain", None) is not None
    with pytest.raises(ConfigError, match="known already"):
        store.contacts.introduce("again", address, os.urandom(32), GROUP, ADMIN, 6)
    with pytest.raises(ConfigError):
        store.contacts.introduce("bob", bob.address, os.urandom(32), GROUP, ADMIN, 6)


def test_its_card_added_makes_a_contact_of_the_same_row(store: Store) -> None:
    address, peer_id = _introduce(store)
    message_id = new_id()
    store.messages.store_text(peer_id, message_id, 1, "group text", "text/plain", 2)
    key = os.urandom(32)
    contact = store.contacts.add_contact("Carol C", address, key, 9)
    assert (contact.id, contact.introduced, contact.client_auth_public) == (peer_id, False, key)
    assert store.contacts.introduced() == []
    assert store.messages.message(message_id, contact_id=peer_id).body == "group text"
    assert store.contacts.drop_introduced(peer_id) is False  # a contact now


def test_dropped_it_is_gone_and_its_messages_stay(store: Store) -> None:
    address, peer_id = _introduce(store)
    message_id = new_id()
    store.messages.store_text(peer_id, message_id, 1, "kept", "text/plain", 2)
    assert store.contacts.drop_introduced(peer_id) is True
    assert store.contacts.drop_introduced(peer_id) is False
    assert store.contacts.peer_by_address(address) is None
    assert store.contacts.contact_by_id(peer_id) is None
    assert store.messages.message(message_id, contact_id=peer_id).body == "kept"
    with pytest.raises(ConfigError):
        store.outbox.queue_text(peer_id, new_id(), 1, "hi", "text/plain", None)
    # Introduced again later: a row of its own.
    again = store.contacts.introduce("carol", address, os.urandom(32), GROUP, ADMIN, 7)
    assert again.id != peer_id


def test_its_safety_number_is_confirmed_by_its_address(store: Store) -> None:
    address, peer_id = _introduce(store)
    with pytest.raises(UnknownContactError):
        store.contacts.mark_verified("carol", "1" * 60, 3)
    store.contacts.mark_verified(str(address), "1" * 60, 3)
    assert store.contacts.verified() == {peer_id: 3}


def test_a_contact_removed_is_not_dropped_as_introduced(store: Store) -> None:
    bob = add_contact(store, "bob")
    assert store.contacts.drop_introduced(bob.id) is False
    store.contacts.reintroduce(bob.id, GROUP, ADMIN)  # a contact: unchanged
    assert store.contacts.contact("bob").introduced is False
