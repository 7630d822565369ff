"""The store's mailbox bookkeeping (store/_owner.py): pairing, debts, deposits,
prekeys, envelopes seen, and files arriving in parts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from onionpost.errors import NotFoundError, StoreError
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto.address import OnionAddress
from tests.store._storekit import add_contact, new_id, offer_for, offered, open_store

NOW = 1_700_000_000_000


def test_pairing_survives_a_restart_halfway_and_completes(tmp_path: Path) -> None:
    first, second = OnionAddress(os.urandom(32)), OnionAddress(os.urandom(32))
    with open_store(tmp_path) as store:
        assert store.mailbox.own_mailbox() is None
        assert store.mailbox.announcement_version() == 0
        store.mailbox.begin_pairing(first, "onionpost-mailbox1:code", NOW)
    with open_store(tmp_path) as store:  # as after a crash
        assert store.mailbox.pairing() == (first, "onionpost-mailbox1:code")
        assert store.mailbox.pairing_started() == NOW
        assert store.mailbox.own_mailbox() is None
        assert store.mailbox.announcement_version() == 0  # nothing to announce yet
        version = store.mailbox.finish_pairing(NOW)
        own = store.mailbox.own_mailbox()
        assert own is not None
        assert own.address == first
        assert store.mailbox.pairing() is None
        assert store.mailbox.announcement_version() == version
        # Pairing with another: the first stays ours until the second said yes.
        store.mailbox.begin_pairing(second, "c2", NOW)
        own = store.mailbox.own_mailbox()
        assert own is not None
        assert own.address == first
        store.mailbox.abandon_pairing()
        assert store.mailbox.pairing() is None
        store.mailbox.begin_pairing(second, "c3", NOW)
        assert store.mailbox.finish_pairing(NOW) > version
        own = store.mailbox.own_mailbox()
        assert own is not None
        assert own.address == second
        with pytest.raises(NotFoundError):
            store.mailbox.finish_pairing(NOW)


def test_forgetting_the_mailbox_is_announced_and_drops_prekeys(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.mailbox.begin_pairing(OnionAddress(os.urandom(32)), "c", NOW)
        paired = store.mailbox.finish_pairing(NOW)
        store.mailbox.set_mailbox_registered(bob.id, True)
        store.mailbox.add_prekeys([(new_id(), 1, 10**10, b"secret")], NOW)
        gone = store.mailbox.forget_mailbox(NOW)
        assert gone > paired
        assert store.mailbox.own_mailbox() is None
        assert store.mailbox.announcement_version() == gone
        assert store.mailbox.prekey_stock(1) == (0, 0)
        assert not store.contacts.contact(bob.name).mailbox_registered


def test_a_contacts_mailbox_only_moves_to_newer_announcements(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        first, second = OnionAddress(os.urandom(32)), OnionAddress(os.urandom(32))
        assert store.mailbox.set_contact_mailbox(bob.id, first, 10)
        assert not store.mailbox.set_contact_mailbox(bob.id, second, 10)  # not newer
        assert not store.mailbox.set_contact_mailbox(bob.id, second, 5)  # older: a replay
        assert store.contacts.contact(bob.name).mailbox == first
        assert store.mailbox.set_contact_mailbox(bob.id, None, 11)  # it has none now
        assert store.contacts.contact(bob.name).mailbox is None


def test_debts_are_durable_until_settled(tmp_path: Path) -> None:
    ids = [new_id() for _ in range(3)]
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.mailbox.owe(bob.id, "ack", ids, NOW)
        store.mailbox.owe(bob.id, "ack", ids[:1], NOW)  # owing twice is owing once
        store.mailbox.owe(bob.id, "read", ids[2:], NOW)
        with pytest.raises(StoreError):
            store.mailbox.owe(bob.id, "gift", ids, NOW)
    with open_store(tmp_path) as store:
        bob = store.contacts.contact("bob")
        assert store.mailbox.has_owed(bob.id)
        assert sorted(store.mailbox.owed(bob.id, "ack", 10)) == sorted(ids)
        assert store.mailbox.owed(bob.id, "read", 10) == ids[2:]
        store.mailbox.settle(bob.id, "ack", ids)
        store.mailbox.settle(bob.id, "read", ids[2:])
        assert not store.mailbox.has_owed(bob.id)


def test_deposits_mark_texts_whole_and_files_by_progress(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        text = new_id()
        store.outbox.queue_text(bob.id, text, NOW, "hello", "text/plain", None)
        source = tmp_path / "f.bin"
        source.write_bytes(os.urandom(150_000))
        file_id = new_id()
        store.outbox.queue_file(bob.id, file_id, NOW, "f.bin", source, 10**9)
        assert [o.id for o in store.mailbox.undeposited(bob.id, 10)] == [text, file_id]
        assert store.mailbox.mark_deposited(
            [(text, 0, True), (file_id, 60_000, False)], NOW, contact_id=bob.id
        ) == [text]
        left = store.mailbox.undeposited(bob.id, 10)
        assert [(o.id, o.deposit_offset) for o in left] == [(file_id, 60_000)]
        assert store.messages.message(text).deposited_ms == NOW
        # Still pending for a direct session: deposited is not delivered.
        assert {o.id for o in store.outbox.pending(bob.id, 10)} == {text, file_id}
        assert store.mailbox.mark_deposited([(file_id, 150_000, True)], NOW, contact_id=bob.id) == [
            file_id
        ]
        assert not store.mailbox.has_undeposited(bob.id)
        # Another contact cannot move them.
        other = add_contact(store, "carol")
        assert store.mailbox.mark_deposited([(text, 0, True)], NOW, contact_id=other.id) == []


def test_a_one_time_prekey_is_deleted_once_used_and_its_reuse_is_noticed(tmp_path: Path) -> None:
    one_time, last_resort = new_id(), new_id()
    with open_store(tmp_path) as store:
        store.mailbox.add_prekeys(
            [(one_time, 1, 2_000_000_000, b"one"), (last_resort, 2, 2_000_000_100, b"last")], NOW
        )
        assert store.mailbox.prekeys_to_upload(10) == [b"one", b"last"]
        store.mailbox.mark_prekeys_uploaded([one_time, last_resort])
        assert store.mailbox.prekeys_to_upload(10) == []
        assert store.mailbox.prekey_stock(1) == (1, 2_000_000_000)
        with store.transaction():
            store.mailbox.use_prekey(one_time, 1, 1, NOW)
            store.mailbox.use_prekey(last_resort, 2, 1, NOW)  # last resort: kept
        store.mailbox.checkpoint()
    with open_store(tmp_path) as store:
        assert store.mailbox.prekey_secret(one_time) is None
        assert store.mailbox.prekey_was_used(one_time)
        assert store.mailbox.prekey_secret(last_resort) == b"last"
        assert not store.mailbox.prekey_was_used(last_resort)


def test_expired_prekeys_and_old_notes_go(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        old, fresh = new_id(), new_id()
        store.mailbox.add_prekeys([(old, 1, 1000, b"o"), (fresh, 1, 10**10, b"f")], NOW)
        store.mailbox.note_envelope(b"e" * 16, 1000)
        assert store.mailbox.envelope_seen(b"e" * 16)
        assert store.mailbox.expire_prekeys(10**6, 100) == 1
        assert store.mailbox.prekey_secret(old) is None
        assert store.mailbox.prekey_secret(fresh) == b"f"
        assert not store.mailbox.envelope_seen(b"e" * 16)


def test_a_file_arrives_in_parts_across_chunks_and_restarts(tmp_path: Path) -> None:
    data = os.urandom(2 * FILE_CHUNK_SIZE + 1234)
    offer = offer_for(data)
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.transfers.begin_file(bob.id, *offered(offer), NOW, 10**9, 10**10)
        assert (
            store.mailbox.write_file_part(offer.id, 0, data[:60_000], contact_id=bob.id) == 60_000
        )
        # A repeat (a re-delivered envelope) changes nothing.
        assert (
            store.mailbox.write_file_part(offer.id, 0, data[:60_000], contact_id=bob.id) == 60_000
        )
        # A gap is refused.
        with pytest.raises(StoreError):
            store.mailbox.write_file_part(offer.id, 70_000, data[70_000:80_000], contact_id=bob.id)
        assert (
            store.mailbox.write_file_part(offer.id, 60_000, data[60_000:120_000], contact_id=bob.id)
            == 120_000
        )
    with open_store(tmp_path) as store:  # what was held survives
        bob = store.contacts.contact("bob")
        # Overlapping what is held: only the rest counts.
        end = store.mailbox.write_file_part(offer.id, 100_000, data[100_000:], contact_id=bob.id)
        assert end == len(data)
        assert store.transfers.finish_file(offer.id, NOW, contact_id=bob.id)
        out = tmp_path / "out.bin"
        store.transfers.export_file(offer.id, out, contact_id=bob.id)
        assert out.read_bytes() == data
        with pytest.raises(NotFoundError):
            store.mailbox.write_file_part(offer.id, 0, b"x", contact_id=bob.id)
