"""The evidence log in the store: every change appends its entry in the same
transaction, checkpoints hash only what was appended, proofs verify."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from _storekit import add_contact, new_id, offer_for, offered, open_store

from onionpost.errors import StoreError
from onionpost.proto import merkle, note
from onionpost.proto.evidence import Entry, Event, content_digest, origin
from onionpost.proto.identity import Identity
from onionpost.proto.messages import FileOffer, Text, encode
from onionpost.store import Direction

ME = Identity(bytes(range(32)))
ORIGIN = origin(str(ME.address))


def _sign(text: str) -> note.Note:
    return note.sign(text, str(ME.address), ME)


def _entries(store: object) -> list[Entry]:
    log = store.evidence  # type: ignore[attr-defined]
    return [Entry.decode(data) for _idx, data in log.entries(0, 1000)]


def test_each_change_appends_its_entry_with_digests(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        out_id, in_id = new_id(), new_id()
        store.outbox.queue_text(bob.id, out_id, 10, "the plan", "text/plain", None)
        store.outbox.mark_sent([out_id], 11, contact_id=bob.id)
        store.outbox.mark_delivered([out_id], 12, contact_id=bob.id)
        store.messages.mark_read([out_id], 13, contact_id=bob.id, direction=Direction.OUT)
        assert store.messages.store_text(bob.id, in_id, 20, "agreed", "text/plain", 21)
        assert not store.messages.store_text(bob.id, in_id, 20, "agreed", "text/plain", 22)
        store.messages.mark_read([in_id], 23, direction=Direction.IN)
        entries = _entries(store)
    assert [e.event for e in entries] == [
        Event.CONTACT_ADDED,
        Event.QUEUED,
        Event.SENT,
        Event.DELIVERED,
        Event.READ_BY_THEM,
        Event.RECEIVED,  # once: the resend is not a new event
        Event.READ,
    ]
    assert {e.counterparty for e in entries} == {str(bob.address)}
    queued, received = entries[1], entries[5]
    assert queued.content == content_digest(b"the plan")
    wire = encode(Text(out_id, 10, "the plan", "text/plain"))
    assert queued.record == hashlib.sha256(wire).digest()
    assert received.message_id == in_id
    assert received.time_ms == 21
    assert received.content == content_digest(b"agreed")
    assert [e.time_ms for e in entries[2:5]] == [11, 12, 13]


def test_files_queued_and_received_carry_their_hash(tmp_path: Path) -> None:
    data = b"evidence file" * 100
    source = tmp_path / "report.pdf"
    source.write_bytes(data)
    offer = offer_for(data)
    with open_store(tmp_path / "s") as store:
        bob = add_contact(store)
        queued = store.outbox.queue_file(bob.id, new_id(), 5, "report.pdf", source, 10**6)
        store.transfers.begin_file(bob.id, *offered(offer), 30, 10**6, 10**8)
        store.transfers.write_file_chunk(offer.id, 0, data, contact_id=bob.id)
        assert store.transfers.finish_file(offer.id, 31, contact_id=bob.id)
        entries = _entries(store)
    assert [e.event for e in entries] == [Event.CONTACT_ADDED, Event.QUEUED, Event.RECEIVED]
    assert entries[1].content == queued.blake2b == hashlib.blake2b(data).digest()
    assert entries[2].content == offer.blake2b
    assert entries[2].record == hashlib.sha256(encode(offer)).digest()
    assert entries[2].kind == "file"


def test_a_change_rolled_back_leaves_no_entry(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        before = store.evidence.size()

        def queue_then_fail() -> None:
            with store.transaction():
                store.outbox.queue_text(bob.id, new_id(), 1, "never", "text/plain", None)
                raise RuntimeError

        with pytest.raises(RuntimeError):
            queue_then_fail()
        assert store.evidence.size() == before
        store.contacts.remove_contact(bob.name, 99)
        assert _entries(store)[-1] == Entry(
            Event.CONTACT_REMOVED, 99, str(bob.address), detail=bob.name
        )


def test_checkpoints_are_incremental_and_match_the_whole_tree(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        first = store.evidence.checkpoint(ORIGIN, _sign, 1)
        assert store.evidence.checkpoint(ORIGIN, _sign, 2) == first  # nothing new
        for n in range(37):
            store.outbox.queue_text(bob.id, new_id(), n, f"t{n}", "text/plain", None)
        second = store.evidence.checkpoint(ORIGIN, _sign, 3)
        leaves = [merkle.leaf_hash(d) for _i, d in store.evidence.entries(0, 1000)]
        size = store.evidence.size()
        proof = store.evidence.consistency(1, size)
        inclusion = store.evidence.inclusion(17, size)
        assert [n.text for n in store.evidence.checkpoints()] == [first.text, second.text]
    verifier = note.Verifier(str(ME.address), note.ED25519, ME.public_key)
    note.open_note(second, [verifier])
    cp = note.Checkpoint.from_text(second.text)
    assert cp.origin == ORIGIN
    assert (cp.size, cp.root) == (38, merkle.root_of(leaves))
    old = note.Checkpoint.from_text(first.text)
    merkle.verify_consistency(1, 38, old.root, cp.root, proof)
    merkle.verify_inclusion(leaves[17], 17, 38, inclusion, cp.root)


def test_the_log_survives_a_reopen_and_a_gap_is_reported(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.outbox.queue_text(bob.id, new_id(), 1, "a", "text/plain", None)
        store.evidence.checkpoint(ORIGIN, _sign, 1)
        store.outbox.queue_text(bob.id, new_id(), 2, "b", "text/plain", None)
    with open_store(tmp_path) as store:
        third = store.evidence.checkpoint(ORIGIN, _sign, 3)
        assert note.Checkpoint.from_text(third.text).size == 3
        with store.transaction():
            store.evidence._db.execute("DELETE FROM evidence WHERE idx = 1")
        with pytest.raises(StoreError, match="gap"):
            store.evidence.leaves(3)


def test_file_offer_digest_is_the_wire_records(tmp_path: Path) -> None:
    # The digest is over the bytes encode() makes: an independent reader
    # rebuilds the record from an export and compares.
    offer = FileOffer(new_id(), 7, "a.txt", 3, hashlib.blake2b(b"abc").digest(), "text/plain")
    from onionpost.proto.evidence import file_entry

    entry = file_entry(Event.QUEUED, 7, "x", *offered(offer))
    assert entry.record == hashlib.sha256(encode(offer)).digest()


def test_leaf_hashes_are_kept_packed_and_read_as_hashes(tmp_path: Path) -> None:
    """Every leaf of the log stays in memory for proofs, packed with the roots
    of its perfect subtrees: under 64 bytes a leaf in all."""
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        for n in range(5):
            store.outbox.queue_text(bob.id, new_id(), n, "t", "text/plain", None)
        size = store.evidence.size()
        entries = store.evidence.entries(0, size)
        leaves = store.evidence.leaves(size)
        assert list(leaves) == [merkle.leaf_hash(data) for _, data in entries]
        assert leaves[-1] == merkle.leaf_hash(entries[-1][1])
        assert store.evidence._leaves.stored_bytes < 64 * size
        with pytest.raises(IndexError):
            leaves[size]
        # Proofs from the kept subtree roots are the ones the leaves alone give.
        whole = merkle.list_hasher(leaves)
        for old in range(1, size):
            assert store.evidence.consistency(old, size) == merkle.consistency_proof(
                old, size, whole
            )
            assert store.evidence.inclusion(old, size) == merkle.inclusion_proof(old, size, whole)
