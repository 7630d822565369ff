"""Upgrading a store written by an earlier onionpost: every row survives, every new rule holds.

``data/store-v1`` was written by the version 1 code (``data/make_store_v1.py``
says how); each test works on a copy, since opening migrates in place. A
version 1 store goes to version 2 as a plaintext file, then is converted to
the encrypted version 3 (``test_store_conversion.py`` tests that step on a
version 2 store).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path

import pytest
from _storekit import KEY, new_id, offered

from onionpost.errors import ConfigError, LocalProtocolError, StoreError
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto.address import OnionAddress
from onionpost.proto.messages import FileOffer, FileRejectReason
from onionpost.store import SCHEMA_VERSION, Direction, Kind, State, Store, _rows, _schema
from onionpost.store._rows import insert_message

C = FILE_CHUNK_SIZE
V1 = Path(__file__).resolve().parent / "data" / "store-v1"


def ident(n: int) -> bytes:
    return bytes([n]) * 16


def _copy_v1(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    shutil.copytree(V1, root)
    (root / "files").chmod(0o700)
    return root


def _open(root: Path) -> Store:
    return Store.open(root / "store.sqlite", root / "files", KEY)


def _version(root: Path) -> int:
    conn = sqlite3.connect(root / "store.sqlite")
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


def test_the_fixture_is_a_version_1_store(tmp_path: Path) -> None:
    assert SCHEMA_VERSION == 17
    assert _version(_copy_v1(tmp_path)) == 1


def test_a_version_1_store_upgrades_with_everything_in_it(tmp_path: Path) -> None:
    root = _copy_v1(tmp_path)
    with _open(root) as store:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert store.integrity_check() == []
        bob, carol = store.contacts.contact("bob"), store.contacts.contact("carol")
        assert [c.name for c in store.contacts.all()] == ["bob", "carol"]  # dave stays removed
        assert (bob.id, bob.added_ms, carol.id) == (1, 1000, 2)

        # The outbox: every state, every time.
        states = {n: store.messages.message(ident(n)) for n in range(1, 8)}
        assert {n: m.state for n, m in states.items()} == {
            1: State.QUEUED,
            2: State.SENT,
            3: State.DELIVERED,
            4: State.READ,
            5: State.QUEUED,
            6: State.EXPIRED,
            7: State.SENT,
        }
        assert (states[2].sent_ms, states[3].delivered_ms, states[4].read_ms) == (3000, 3100, 3200)
        assert states[1].body == "out queued"
        assert all(m.refused_ms is None and m.refused_reason is None for m in states.values())
        assert [o.id for o in store.outbox.pending(bob.id, 10)] == [ident(1), ident(2), ident(5)]
        assert store.outbox.outbox_depth() == 4
        (offer,) = store.outbox.pending(carol.id, 10)
        assert offer.file is not None
        assert (offer.file.name, offer.file.size) == ("notes.txt", 220)
        assert store.transfers.read_file_chunk(ident(7), 0, C) == b"outgoing file content\n" * 10

        # The inbox, in its order, with dave's message under his name.
        inbox = store.messages.inbox()
        assert [(m.id, m.contact, m.state) for m in inbox] == [
            (ident(8), "bob", State.RECEIVED),
            (ident(9), "bob", State.READ),
            (ident(10), "carol", State.RECEIVED),
            (ident(11), "dave", State.RECEIVED),
            (ident(12), "carol", State.RECEIVED),
        ]
        seqs = [m.seq for m in inbox]
        assert seqs == sorted(seqs)
        assert inbox[1].content_type == "text/markdown"
        assert store.messages.unread_count(bob.id) == 1
        assert store.messages.unread_count(carol.id) == 2
        assert store.messages.unread_count(carol.id, kind=Kind.TEXT) == 1
        photo = bytes(n % 251 for n in range(1000))
        assert store.transfers.export_file(ident(12), tmp_path / "photo").read_bytes() == photo

        # The file still arriving: counted by what it holds, and it resumes.
        assert store.transfers.transfer_count(bob.id) == 1
        assert store.transfers.disk_used() == 220 + 1000 + C
        big = bytes(n % 253 for n in range(C + 50))
        arriving = FileOffer(
            ident(13),
            1700,
            "archive.tar",
            len(big),
            hashlib.blake2b(big, digest_size=64).digest(),
            "application/x-tar",
        )
        assert store.transfers.expire_transfers(4400) == []  # its last activity: when it began
        assert store.transfers.begin_file(bob.id, *offered(arriving), 5000, 2**30, 2**40) == C
        store.transfers.write_file_chunk(arriving.id, C, big[C:], now=5001)
        assert store.transfers.finish_file(arriving.id, 5002) is True
        assert store.messages.message(ident(13)).direction == Direction.IN

        # New ids continue after the old ones; the new states work on old rows.
        store.messages.store_text(bob.id, new_id(), 1, "after the upgrade", "text/plain", 6000)
        assert store.messages.inbox()[-1].seq > max(seqs)
        assert store.outbox.mark_refused(
            [ident(7)], 6001, FileRejectReason.DECLINED, contact_id=carol.id
        )
        assert store.outbox.pending(carol.id, 10) == []
        assert store.integrity_check() == []


def test_the_seq_counter_is_carried_over(tmp_path: Path) -> None:
    """An inbox seq is never given twice, even one whose row is gone."""
    root = _copy_v1(tmp_path)
    conn = sqlite3.connect(root / "store.sqlite", isolation_level=None)
    (highest,) = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    conn.execute("DELETE FROM messages WHERE seq = ?", (highest,))
    conn.close()
    with _open(root) as store:
        bob = store.contacts.contact("bob")
        store.messages.store_text(bob.id, new_id(), 1, "x", "text/plain", 1)
        assert store.messages.inbox()[-1].seq == highest + 1


def test_the_upgrade_is_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _copy_v1(tmp_path)
    broken = (*_schema.MIGRATIONS[1][:-1], "THIS IS NOT SQL")
    v1, _, *later = _schema.MIGRATIONS
    monkeypatch.setattr(_schema, "MIGRATIONS", (v1, broken, *later))
    with pytest.raises(StoreError):
        _open(root)
    assert _version(root) == 1
    assert sorted(p.name for p in root.iterdir()) == ["files", "store.sqlite"]
    conn = sqlite3.connect(root / "store.sqlite")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(messages)")]
    views = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")]
    conn.close()
    assert "refused_reason" not in columns
    assert sorted(views) == ["current_contacts", "message_rows"]
    monkeypatch.undo()
    with _open(root) as store:
        assert len(store.messages.inbox()) == 5


@pytest.mark.parametrize(
    ("table", "match"),
    [
        ("messages", "FOREIGN KEY constraint failed"),  # the copy refuses the row
        ("transfers", "broke a reference from table transfers"),  # the check after
    ],
)
def test_a_broken_reference_stops_the_upgrade(tmp_path: Path, table: str, match: str) -> None:
    """Foreign keys hold through the rebuild and are checked after it (SQLite's step 10)."""
    root = _copy_v1(tmp_path)
    conn = sqlite3.connect(root / "store.sqlite", isolation_level=None)
    conn.execute("PRAGMA foreign_keys = OFF")
    conn.execute(
        f"UPDATE {table} SET contact_id = 99 WHERE rowid = (SELECT min(rowid) FROM {table})"
    )
    conn.close()
    with pytest.raises(StoreError, match=match):
        _open(root)
    assert _version(root) == 1


def test_the_new_schema_is_what_a_new_store_gets(tmp_path: Path) -> None:
    """Upgraded and created stores have the same tables, indexes and views."""

    def schema(root: Path) -> list[tuple[str, str, str, str]]:
        with _open(root) as store:
            rows = store._db.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"
            ).fetchall()
            return [tuple(row) for row in rows]

    upgraded = _copy_v1(tmp_path)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert schema(upgraded) == schema(fresh)


def test_version_14_keeps_one_index_on_a_message_id_and_every_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table's UNIQUE (direction, contact_id, id) and the index on id
    become one unique index, which version 17 makes the only one on a
    message's id (our own ids' index folded into it); rows, seq counter and
    uniqueness rules stay."""
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:13])
    # Rows stored as version 13's code did (its conflict target: the table's key).
    assert _rows._MESSAGE_KEY in _rows._INSERT_MESSAGE
    monkeypatch.setattr(
        _rows,
        "_INSERT_MESSAGE",
        _rows._INSERT_MESSAGE.replace(_rows._MESSAGE_KEY, "(direction, contact_id, id)"),
    )
    with _open(root) as store:
        bob = store.contacts.add_contact("bob", OnionAddress(bytes(32)), bytes(32), 1)
        carol = store.contacts.add_contact("carol", OnionAddress(bytes([1]) * 32), bytes(32), 1)
        shared = new_id()
        # One id from two contacts is two incoming messages; ours are ours alone.
        assert store.messages.store_text(bob.id, shared, 1, "from bob", "text/plain", 1)
        assert store.messages.store_text(carol.id, shared, 1, "from carol", "text/plain", 1)
        mine = new_id()
        assert store.outbox.queue_text(bob.id, mine, 2, "to bob", "text/plain", None)
        assert store.messages.store_text(bob.id, new_id(), 1, "gone", "text/plain", 1)
        last = store._db.execute("SELECT max(seq) FROM messages").fetchone()[0]
        store._db.execute("DELETE FROM messages WHERE seq = ?", (last,))  # a gap at the end
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == 13
    monkeypatch.undo()
    with _open(root) as store:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == _schema.SCHEMA_VERSION
        # No seq is given twice, not even the deleted one's.
        store.messages.store_text(bob.id, new_id(), 1, "later", "text/plain", 1)
        assert store.messages.inbox()[-1].seq == last + 1
        indexes = sorted(
            row[0]
            for row in store._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"
            )
        )
        assert indexes == [
            "messages_files",
            "messages_id",
            "messages_pending",
            "messages_undeposited",
            "messages_unread",
        ]
        bodies = sorted(s.body for s in store.messages.inbox())
        assert bodies == ["from bob", "from carol", "later"]
        # The same incoming message again is stored once.
        assert not store.messages.store_text(bob.id, shared, 1, "from bob", "text/plain", 1)
        # Our id is ours alone, whatever the contact.
        with pytest.raises(ConfigError, match="already another message's"):
            store.outbox.queue_text(carol.id, mine, 3, "to carol", "text/plain", None)
        with pytest.raises(LocalProtocolError, match="already in use"):
            insert_message(
                store._db,
                {
                    "direction": "out",
                    "contact_id": carol.id,
                    "id": mine,
                    "kind": "text",
                    "state": "queued",
                    "created_ms": 3,
                    "stored_ms": 3,
                    "content": b"x",
                },
            )
        assert [s.body for s in store.outbox.listing()] == ["to bob"]
        assert store.integrity_check() == []


def test_version_16_keeps_what_is_held_and_then_its_delegations(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lists and checkpoints held before stay, with no delegation (none
    was kept); what is held from then on keeps the one it came with."""
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:15])
    acme, bravo = bytes([1]) * 32, bytes([2]) * 32
    with _open(root) as store:
        store._db.execute(
            "INSERT INTO trust_held (fingerprint, revocations, checkpoint) VALUES (?, ?, ?)",
            (acme, b"list", b"checkpoint"),
        )
        store._db.execute(
            "INSERT INTO trust_held (fingerprint, revocations, checkpoint) VALUES (?, ?, ?)",
            (bravo, None, b"checkpoint"),
        )
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == 15
    monkeypatch.undo()
    with _open(root) as store:
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == _schema.SCHEMA_VERSION
        assert store.trust.held() == {acme: (b"list", b"checkpoint"), bravo: (None, b"checkpoint")}
        assert store.trust.held_delegations() == []
        # The same list again keeps none; a newer checkpoint keeps its own.
        store.trust.hold(acme, b"list", b"newer checkpoint", delegation=b"delegation")
        assert store.trust.held_delegations() == [b"delegation"]
        assert store.trust.held()[acme] == (b"list", b"newer checkpoint")
        assert store.integrity_check() == []
