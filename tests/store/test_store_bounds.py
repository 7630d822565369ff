"""What one contact can make the store hold: the disk budget, quotas, idle expiry, refusals.

A contact is authenticated, not trusted. Each test shows a bound holding and
that nothing stored before (another contact's files, finished files) is lost.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from _storekit import add_contact, blob_path, new_id, offer_for, offered, open_store

from onionpost.errors import ConfigError, NoSpaceError, QuotaError, StoreError
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto.messages import FileRejectReason
from onionpost.store import OUTGOING_TRANSITIONS, Kind, State, Store, _database
from onionpost.store._files import RECORD_SIZE
from onionpost.store._messages import UNREAD_COUNT
from onionpost.store._transfers import FILES_SIZE

C = FILE_CHUNK_SIZE
GiB = 2**30


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path) as opened:
        yield opened


def _chunks(data: bytes, start: int = 0) -> Iterator[tuple[int, bytes]]:
    for offset in range(start, len(data), C):
        yield offset, data[offset : offset + C]


def _blobs(root: Path) -> list[str]:
    return sorted(os.listdir(root / "files"))


# -- the disk budget charges what is stored ------------------------------------------


def test_declared_sizes_do_not_fill_the_budget(store: Store) -> None:
    """Offers alone (announced, nothing sent) no longer lock the others out."""
    mallory = add_contact(store, "mallory")
    bob = add_contact(store, "bob")
    budget = 10 * C
    for _ in range(5):  # each announces 9 C and sends nothing
        store.transfers.begin_file(
            mallory.id, *offered(offer_for(os.urandom(9 * C))), 1, GiB, budget
        )
    assert store.transfers.disk_used() == 0
    data = os.urandom(3 * C)
    offer = offer_for(data)
    assert store.transfers.begin_file(bob.id, *offered(offer), 2, GiB, budget) == 0
    for at, chunk in _chunks(data):
        store.transfers.write_file_chunk(offer.id, at, chunk, max_disk=budget)
    assert store.transfers.finish_file(offer.id, 3) is True
    assert store.transfers.disk_used() == 3 * C


def test_an_offer_must_fit_what_is_left_now(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    data = os.urandom(2 * C)
    held = offer_for(data)
    store.transfers.begin_file(bob.id, *offered(held), 1, GiB, 4 * C)
    store.transfers.write_file_chunk(held.id, 0, data[:C])
    assert store.transfers.disk_used() == C  # bytes held, not the 2 C announced
    with pytest.raises(NoSpaceError, match=r"disk budget \(65485 of 261940"):
        store.transfers.begin_file(
            bob.id, *offered(offer_for(os.urandom(3 * C + 1))), 1, GiB, 4 * C
        )
    store.transfers.begin_file(
        bob.id, *offered(offer_for(os.urandom(3 * C))), 1, GiB, 4 * C
    )  # exactly fits
    # A resumed offer is already charged: it is never refused for space.
    assert store.transfers.begin_file(bob.id, *offered(held), 2, GiB, C) == C


def test_chunks_stop_at_the_budget_and_keep_nothing_beyond(store: Store, tmp_path: Path) -> None:
    """Two offers that each fit cannot together pass the budget."""
    mallory = add_contact(store, "mallory")
    bob = add_contact(store, "bob")
    budget = 5 * C
    finished = os.urandom(C)
    kept = offer_for(finished)
    store.transfers.begin_file(bob.id, *offered(kept), 1, GiB, budget)
    store.transfers.write_file_chunk(kept.id, 0, finished, max_disk=budget)
    store.transfers.finish_file(kept.id, 2)
    first, second = os.urandom(3 * C), os.urandom(3 * C)
    a, b = offer_for(first), offer_for(second)
    store.transfers.begin_file(mallory.id, *offered(a), 3, GiB, budget)
    store.transfers.begin_file(mallory.id, *offered(b), 3, GiB, budget)  # both fit, one at a time
    for at, chunk in _chunks(first):
        store.transfers.write_file_chunk(a.id, at, chunk, max_disk=budget)
    assert store.transfers.disk_used() == 4 * C
    store.transfers.write_file_chunk(b.id, 0, second[:C], max_disk=budget)
    assert store.transfers.disk_used() == budget
    with pytest.raises(NoSpaceError, match="disk budget"):
        store.transfers.write_file_chunk(b.id, C, second[C : 2 * C], max_disk=budget)
    assert store.transfers.disk_used() == budget
    blob = blob_path(tmp_path, "in", mallory.id, b.id)
    assert blob.stat().st_size == RECORD_SIZE  # nothing of the refused chunk
    # Without max_disk (the old callers) the chunk is not checked.
    store.transfers.write_file_chunk(b.id, C, second[C : 2 * C])
    # What was stored before is intact.
    assert store.transfers.export_file(kept.id, tmp_path / "kept").read_bytes() == finished
    assert store.integrity_check() == []


def test_the_count_of_bytes_held_survives_restarts_and_torn_writes(tmp_path: Path) -> None:
    data = os.urandom(3 * C)
    offer = offer_for(data)
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, GiB)
        store.transfers.write_file_chunk(offer.id, 0, data[:C])
        store.transfers.write_file_chunk(offer.id, C, data[C : 2 * C])
        assert store.transfers.disk_used() == 2 * C
    blob = blob_path(tmp_path, "in", bob.id, offer.id)
    os.truncate(blob, RECORD_SIZE + 1000)  # a crash while writing record 1
    with open_store(tmp_path) as store:
        # At open, from the blob's length: record 0 and what is left of record 1.
        assert store.transfers.disk_used() == C + 1000 - 40
        # On resume, exactly what authenticates.
        assert store.transfers.begin_file(bob.id, *offered(offer), 2, GiB, GiB) == C
        assert store.transfers.disk_used() == C
        for at, chunk in _chunks(data, C):
            store.transfers.write_file_chunk(offer.id, at, chunk)
        assert store.transfers.finish_file(offer.id, 3) is True
        assert store.transfers.disk_used() == 3 * C


def test_a_failed_chunk_write_leaves_the_count_alone(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = add_contact(store)
    data = os.urandom(2 * C)
    offer = offer_for(data)
    store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, GiB)
    store.transfers.write_file_chunk(offer.id, 0, data[:C])

    def broken(self: object, index: int, data: bytes) -> None:
        raise NoSpaceError("the disk is full (write a file chunk)")

    monkeypatch.setattr("onionpost.store._files.Blob.write_record", broken)
    with pytest.raises(NoSpaceError):
        store.transfers.write_file_chunk(offer.id, C, data[C:])
    assert store.transfers.disk_used() == C
    monkeypatch.undo()
    store.transfers.write_file_chunk(offer.id, C, data[C:])
    assert store.transfers.finish_file(offer.id, 2) is True


def test_chunk_bookkeeping_commits_without_a_sync_but_stays_durable_in_full(
    store: Store,
) -> None:
    bob = add_contact(store)
    data = os.urandom(C + 1)
    offer = offer_for(data)
    store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, GiB)
    store.transfers.write_file_chunk(offer.id, 0, data[:C], now=5)
    # synchronous is FULL again for every other commit.
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    with store.transaction():  # inside a caller's transaction it simply joins it
        store.transfers.write_file_chunk(offer.id, C, data[C:], now=6)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store.transfers.finish_file(offer.id, 7) is True


# -- quotas per contact ------------------------------------------------------------------


def test_concurrent_transfers_per_contact(store: Store) -> None:
    mallory = add_contact(store, "mallory")
    bob = add_contact(store, "bob")
    offers = [offer_for(os.urandom(10)) for _ in range(3)]
    for offer in offers:
        store.transfers.begin_file(mallory.id, *offered(offer), 1, GiB, GiB, max_transfers=3)
    assert store.transfers.transfer_count(mallory.id) == 3
    with pytest.raises(QuotaError, match="at most 3 may arrive at once") as refused:
        store.transfers.begin_file(
            mallory.id, *offered(offer_for(b"more")), 1, GiB, GiB, max_transfers=3
        )
    assert (refused.value.quota, refused.value.limit) == ("transfers", 3)
    assert isinstance(refused.value, StoreError)
    assert store.transfers.transfer_count(mallory.id) == 3
    # One of the three offered again (a resume) is not a fourth.
    assert (
        store.transfers.begin_file(mallory.id, *offered(offers[0]), 2, GiB, GiB, max_transfers=3)
        == 0
    )
    # Another contact has its own quota.
    store.transfers.begin_file(bob.id, *offered(offer_for(b"bob's")), 1, GiB, GiB, max_transfers=3)
    assert store.transfers.transfer_count(bob.id) == 1
    assert store.transfers.transfer_count(mallory.id) == 3


def test_a_finished_or_cancelled_transfer_frees_its_place(store: Store) -> None:
    mallory = add_contact(store, "mallory")
    data = [os.urandom(10 + n) for n in range(2)]
    offers = [offer_for(d) for d in data]
    for offer in offers:
        store.transfers.begin_file(mallory.id, *offered(offer), 1, GiB, GiB, max_transfers=2)
    with pytest.raises(QuotaError):
        store.transfers.begin_file(
            mallory.id, *offered(offer_for(b"x")), 1, GiB, GiB, max_transfers=2
        )
    store.transfers.write_file_chunk(offers[0].id, 0, data[0])
    store.transfers.finish_file(offers[0].id, 2)
    store.transfers.begin_file(mallory.id, *offered(offer_for(b"x")), 3, GiB, GiB, max_transfers=2)
    with pytest.raises(QuotaError):
        store.transfers.begin_file(
            mallory.id, *offered(offer_for(b"y")), 3, GiB, GiB, max_transfers=2
        )
    store.transfers.cancel_file(offers[1].id)
    store.transfers.begin_file(mallory.id, *offered(offer_for(b"y")), 4, GiB, GiB, max_transfers=2)
    assert store.transfers.transfer_count(mallory.id) == 2


def test_bytes_in_flight_per_contact(store: Store) -> None:
    mallory = add_contact(store, "mallory")
    bob = add_contact(store, "bob")
    store.transfers.begin_file(
        mallory.id, *offered(offer_for(os.urandom(600))), 1, GiB, GiB, max_transfer_bytes=1000
    )
    with pytest.raises(QuotaError, match="would total 1001 bytes") as refused:
        store.transfers.begin_file(
            mallory.id, *offered(offer_for(os.urandom(401))), 1, GiB, GiB, max_transfer_bytes=1000
        )
    assert (refused.value.quota, refused.value.limit) == ("transfer-bytes", 1000)
    store.transfers.begin_file(
        mallory.id, *offered(offer_for(os.urandom(400))), 1, GiB, GiB, max_transfer_bytes=1000
    )
    store.transfers.begin_file(
        bob.id, *offered(offer_for(os.urandom(1000))), 1, GiB, GiB, max_transfer_bytes=1000
    )


# -- idle transfers expire -------------------------------------------------------------


def test_idle_transfers_expire_with_their_blobs(store: Store, tmp_path: Path) -> None:
    mallory = add_contact(store, "mallory")
    bob = add_contact(store, "bob")
    idle_data, active_data = os.urandom(3 * C), os.urandom(3 * C)
    idle, active = offer_for(idle_data), offer_for(active_data)
    done = offer_for(b"finished")
    store.transfers.begin_file(mallory.id, *offered(idle), 1_000, GiB, GiB)
    store.transfers.write_file_chunk(idle.id, 0, idle_data[:C], now=2_000)
    store.transfers.begin_file(bob.id, *offered(active), 1_000, GiB, GiB)
    store.transfers.write_file_chunk(active.id, 0, active_data[:C], now=2_000)
    store.transfers.write_file_chunk(active.id, C, active_data[C : 2 * C], now=9_000)
    store.transfers.begin_file(mallory.id, *offered(done), 1_000, GiB, GiB)
    store.transfers.write_file_chunk(done.id, 0, b"finished", now=1_500)
    store.transfers.finish_file(done.id, 1_600)
    assert len(_blobs(tmp_path)) == 3
    assert store.transfers.disk_used() == 3 * C + len(b"finished")

    assert store.transfers.expire_transfers(2_000) == []  # strictly older only
    assert store.transfers.expire_transfers(5_000) == [(mallory.id, idle.id)]
    assert _blobs(tmp_path) == sorted(
        [
            blob_path(tmp_path, "in", bob.id, active.id).name,
            blob_path(tmp_path, "in", mallory.id, done.id).name,
        ]
    )
    assert store.transfers.transfer_count(mallory.id) == 0
    assert store.transfers.disk_used() == 2 * C + len(b"finished")
    # The other contact's transfer carries on where it was.
    for at, chunk in _chunks(active_data, 2 * C):
        store.transfers.write_file_chunk(active.id, at, chunk, now=9_500)
    assert store.transfers.finish_file(active.id, 9_600) is True
    # The finished file is untouched; the expired one starts again from 0.
    assert store.transfers.export_file(done.id, tmp_path / "done").read_bytes() == b"finished"
    assert store.transfers.begin_file(mallory.id, *offered(idle), 10_000, GiB, GiB) == 0
    assert store.integrity_check() == []


def test_activity_without_a_time_keeps_the_last_one(store: Store) -> None:
    bob = add_contact(store)
    data = os.urandom(3 * C)
    offer = offer_for(data)
    store.transfers.begin_file(bob.id, *offered(offer), 1_000, GiB, GiB)
    store.transfers.write_file_chunk(offer.id, 0, data[:C])  # no now: still 1_000
    assert store.transfers.expire_transfers(1_000) == []
    store.transfers.begin_file(
        bob.id, *offered(offer), 3_000, GiB, GiB
    )  # an offer again is activity
    assert store.transfers.expire_transfers(2_000) == []
    store.transfers.write_file_chunk(offer.id, C, data[C : 2 * C], now=2_500)  # never moves back
    assert store.transfers.expire_transfers(2_999) == []
    assert store.transfers.expire_transfers(3_001) == [(bob.id, offer.id)]


def test_expiry_after_a_restart_deletes_what_the_cache_never_saw(tmp_path: Path) -> None:
    offer = offer_for(os.urandom(2 * C))
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, GiB)
    with open_store(tmp_path) as store:
        assert store.transfers.expire_transfers(2) == [(bob.id, offer.id)]
        assert _blobs(tmp_path) == []
        assert store.integrity_check() == []


# -- unread texts per contact ----------------------------------------------------------


def test_unread_count_per_contact(store: Store) -> None:
    bob = add_contact(store, "bob")
    carol = add_contact(store, "carol")
    ids = [new_id() for _ in range(3)]
    for message_id in ids:
        store.messages.store_text(bob.id, message_id, 1, "x", "text/plain", 2)
    store.messages.store_text(bob.id, ids[0], 1, "x", "text/plain", 3)  # a repeat is not another
    store.messages.store_text(carol.id, new_id(), 1, "x", "text/plain", 2)
    store.outbox.queue_text(bob.id, new_id(), 1, "ours, not theirs", "text/plain", None)
    file = offer_for(b"a file")
    store.transfers.begin_file(bob.id, *offered(file), 1, GiB, GiB)
    assert store.messages.unread_count(bob.id) == 3  # a file still arriving is not unread yet
    store.transfers.write_file_chunk(file.id, 0, b"a file")
    store.transfers.finish_file(file.id, 4)
    assert store.messages.unread_count(bob.id) == 4
    assert store.messages.unread_count(bob.id, kind=Kind.TEXT) == 3
    assert store.messages.unread_count(bob.id, kind=Kind.FILE) == 1
    assert store.messages.unread_count(carol.id) == 1
    store.messages.mark_read(ids[:2], 5)
    assert store.messages.unread_count(bob.id, kind=Kind.TEXT) == 1
    assert store.messages.unread_count(999) == 0


def test_unread_count_and_budget_read_indexes(store: Store) -> None:
    """Both run on every Text or chunk: neither may scan the messages table."""
    unread = store._db.execute(
        f"EXPLAIN QUERY PLAN {UNREAD_COUNT}", {"contact": 1, "kind": None}
    ).fetchall()
    budget = store._db.execute(f"EXPLAIN QUERY PLAN {FILES_SIZE}").fetchall()
    assert "COVERING INDEX messages_unread (contact_id=?)" in str(unread), unread
    assert "COVERING INDEX messages_files (kind=?)" in str(budget), budget


# -- refused -----------------------------------------------------------------------------


def test_a_refused_file_is_final_and_keeps_its_reason(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    (tmp_path / "f").write_bytes(b"content")
    refused, other = new_id(), new_id()
    store.outbox.queue_file(bob.id, refused, 1, "secret-plans.pdf", tmp_path / "f", GiB)
    store.outbox.queue_file(bob.id, other, 2, "f", tmp_path / "f", GiB)
    store.outbox.mark_sent([refused, other], 3)
    assert store.outbox.outbox_depth(bob.id) == 2
    assert store.outbox.mark_refused(
        [refused], 4, FileRejectReason.TOO_LARGE, contact_id=bob.id
    ) == [refused]
    assert [o.id for o in store.outbox.pending(bob.id, 10)] == [other]  # never offered again
    assert store.outbox.outbox_depth(bob.id) == 1
    assert store.outbox.outbox_depth() == 1
    stored = store.messages.message(refused)
    assert (stored.state, stored.refused_ms, stored.refused_reason) == (State.REFUSED, 4, 1)
    assert "secret-plans" not in repr(stored)
    # Final: no ack, receipt, resend, expiry or second refusal moves it.
    assert store.outbox.mark_delivered([refused], 5) == []
    assert store.messages.mark_read([refused], 5) == []
    assert store.outbox.mark_sent([refused], 5) == []
    assert store.outbox.mark_refused([refused], 5, 0, contact_id=bob.id) == []
    assert store.messages.message(refused).refused_reason == 1
    # Our own copy stays, readable, and the other file is untouched.
    assert store.transfers.read_file_chunk(refused, 0, C) == b"content"
    assert store.messages.message(other).state == State.SENT


def test_only_the_contact_it_was_sent_to_can_refuse(store: Store) -> None:
    bob = add_contact(store, "bob")
    carol = add_contact(store, "carol")
    to_bob, from_bob = new_id(), new_id()
    store.outbox.queue_text(bob.id, to_bob, 1, "x", "text/plain", None)
    store.messages.store_text(bob.id, from_bob, 1, "y", "text/plain", 2)
    assert store.outbox.mark_refused([to_bob], 3, 0, contact_id=carol.id) == []
    assert store.outbox.mark_refused([from_bob], 3, 0, contact_id=bob.id) == []  # incoming
    assert store.messages.message(from_bob).state == State.RECEIVED
    assert store.outbox.mark_refused([to_bob, to_bob], 3, 0, contact_id=bob.id) == [to_bob]


def test_refusal_reasons_beyond_sqlite_integers(store: Store) -> None:
    bob = add_contact(store)
    ids = [new_id() for _ in range(2)]
    for message_id in ids:
        store.outbox.queue_text(bob.id, message_id, 1, "x", "text/plain", None)
    store.outbox.mark_refused([ids[0]], 2, 2**64 - 1, contact_id=bob.id)
    assert store.messages.message(ids[0]).refused_reason == 2**63 - 1
    with pytest.raises(ConfigError, match="unsigned"):
        store.outbox.mark_refused([ids[1]], 2, -1, contact_id=bob.id)
    assert store.messages.message(ids[1]).state == State.QUEUED


def test_late_acks_after_expiry_still_count_but_not_refusals(store: Store) -> None:
    assert State.REFUSED not in OUTGOING_TRANSITIONS[State.EXPIRED]
    assert OUTGOING_TRANSITIONS[State.REFUSED] == frozenset()
    bob = add_contact(store)
    message_id = new_id()
    store.outbox.queue_text(bob.id, message_id, 1, "x", "text/plain", 10)
    store.outbox.expire(20)
    assert store.outbox.mark_refused([message_id], 30, 0, contact_id=bob.id) == []
    assert store.messages.message(message_id).state == State.EXPIRED


def test_the_schema_refuses_a_refused_row_without_its_reason(store: Store) -> None:
    bob = add_contact(store)
    message_id = new_id()
    store.outbox.queue_text(bob.id, message_id, 1, "x", "text/plain", None)
    with pytest.raises(_database.IntegrityError):
        store._db.execute("UPDATE messages SET state = 'refused' WHERE id = ?", (message_id,))
