"""Handling labels in the store: sealed with each message's row (a row of an
earlier version reads as unlabelled), bound into its evidence entry, part of
what makes a resend the same message, and the contacts' label limits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from _storekit import add_contact, new_id, offer_for, offered, open_store

from onionpost.errors import ConfigError, LocalProtocolError, StoreError
from onionpost.proto import messages
from onionpost.proto.evidence import Entry, Event
from onionpost.store import Direction


def _entry(store, message_id: bytes) -> Entry:  # type: ignore[no-untyped-def]
    for _idx, data in store.evidence.entries(0, 100):
        entry = Entry.decode(data)
        if entry.message_id == message_id and entry.event in (Event.QUEUED, Event.RECEIVED):
            return entry
    raise AssertionError("no entry")


def test_a_queued_text_keeps_its_label_and_its_entry_binds_it(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    bob = add_contact(store)
    tid = new_id()
    store.outbox.queue_text(bob.id, tid, 5, "hi", "text/plain", None, label="TLP:RED")
    (pending,) = store.outbox.pending(bob.id, 10)
    assert pending.label == "TLP:RED"
    assert store.messages.message(tid).label == "TLP:RED"
    record = messages.encode(messages.Text(tid, 5, "hi", "text/plain", "TLP:RED"))
    assert _entry(store, tid).record == hashlib.sha256(record).digest()
    # The same id with another label is another message: refused.
    with pytest.raises(ConfigError, match="already another message's"):
        store.outbox.queue_text(bob.id, tid, 5, "hi", "text/plain", None, label="TLP:GREEN")
    assert (
        store.outbox.queue_text(bob.id, tid, 5, "hi", "text/plain", None, label="TLP:RED") is None
    )
    store.close()
    reopened = open_store(tmp_path)
    assert reopened.messages.message(tid).label == "TLP:RED"


def test_an_unlabelled_row_is_the_row_an_earlier_version_wrote(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    bob = add_contact(store)
    tid = new_id()
    store.messages.store_text(bob.id, tid, 5, "old", "text/plain", 6)
    assert store.messages.message(tid).label == ""
    # Its sealed content holds two fields, as before labels.
    (sealed,) = store._db.execute("SELECT content FROM messages WHERE id = ?", (tid,)).fetchone()
    fields = store._rows.unseal(("messages", Direction.IN, bob.id, tid), "text", sealed)
    assert fields == ["old", "text/plain", ""]
    unlabelled = messages.encode(messages.Text(tid, 5, "old"))
    assert _entry(store, tid).record == hashlib.sha256(unlabelled).digest()


def test_a_received_file_keeps_its_label_from_offer_to_inbox(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    bob = add_contact(store)
    data = b"page" * 100
    offer = offer_for(data)
    store.transfers.begin_file(bob.id, *offered(offer), 7, 1 << 20, 1 << 30, label="CUI//SP-CTI")
    assert store.messages.message(offer.id).label == "CUI//SP-CTI"  # still arriving
    store.transfers.write_file_chunk(offer.id, 0, data, contact_id=bob.id)
    assert store.transfers.finish_file(offer.id, 9, contact_id=bob.id)
    done = store.messages.message(offer.id)
    assert done.label == "CUI//SP-CTI"
    assert done.file is not None
    labelled = messages.FileOffer(*offered(offer), "CUI//SP-CTI")
    assert _entry(store, offer.id).record == hashlib.sha256(messages.encode(labelled)).digest()


def test_a_forwarded_file_is_recrypted_with_its_new_label(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    bob = add_contact(store)
    carol = add_contact(store, "carol")
    source = tmp_path / "a.bin"
    source.write_bytes(b"abc" * 30_000)
    fid = new_id()
    store.outbox.queue_file(bob.id, fid, 3, "a.bin", source, 1 << 20, label="TLP:GREEN")
    original = store.messages.message(fid)
    copy_id = new_id()
    copy = store.outbox.forward_file(original, carol.id, copy_id, 4, "TLP:AMBER")
    assert (copy.name, copy.size, copy.blake2b, copy.label) == (
        "a.bin",
        90_000,
        original.file.blake2b if original.file else b"",
        "TLP:AMBER",
    )
    out = store.transfers.export_file(copy_id, tmp_path / "out.bin", contact_id=carol.id)
    assert out.read_bytes() == source.read_bytes()
    # A text is no file to forward as one; an id in use is refused.
    tid = new_id()
    store.outbox.queue_text(bob.id, tid, 5, "t", "text/plain", None)
    with pytest.raises(ConfigError, match="not a complete file"):
        store.outbox.forward_file(store.messages.message(tid), carol.id, new_id(), 5, "TLP:RED")
    with pytest.raises(LocalProtocolError):
        store.outbox.forward_file(original, carol.id, copy_id, 5, "TLP:RED")


def test_label_limits_of_a_contact(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    bob = add_contact(store)
    assert store.contacts.label_limits(bob.id) == ((), ())
    store.contacts.set_label_limit(bob.id, ["TLP:AMBER", "CUI"])
    store.contacts.set_label_limit(bob.id, ["TLP:GREEN"], advertised=True)
    assert store.contacts.label_limits(bob.id) == (("TLP:AMBER", "CUI"), ("TLP:GREEN",))
    store.contacts.set_label_limit(bob.id, [])
    assert store.contacts.label_limits(bob.id) == ((), ("TLP:GREEN",))
    with pytest.raises(ConfigError):
        store.contacts.set_label_limit(bob.id, ["a\nb"])
    with pytest.raises(ConfigError):
        store.contacts.label_limits(999)


def test_a_sealed_label_altered_without_the_key_does_not_open(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    bob = add_contact(store)
    tid = new_id()
    store.outbox.queue_text(bob.id, tid, 5, "hi", "text/plain", None, label="TLP:RED")
    (sealed,) = store._db.execute("SELECT content FROM messages WHERE id = ?", (tid,)).fetchone()
    altered = bytearray(sealed)
    altered[-17] ^= 0x04
    with store.transaction():
        store._db.execute("UPDATE messages SET content = ? WHERE id = ?", (bytes(altered), tid))
    with pytest.raises(StoreError):
        store.messages.message(tid)
