"""Opening a store: pragmas, migrations, newer schemas, wrong keys, locks, damaged files."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _storekit import KEY, add_contact, new_id, open_store

from onionpost.errors import ConfigError, StoreError, StoreLockedError, StoreTamperedError
from onionpost.store import SCHEMA_VERSION, Store, _schema


def _fill(root: Path, messages: int = 300) -> None:
    with open_store(root) as store:
        bob = add_contact(store)
        with store.transaction():
            for n in range(messages):
                store.outbox.queue_text(bob.id, new_id(), n, "padding " * 50, "text/plain", None)


def _raw(root: Path) -> sqlite3.Connection:
    """A plain connection, for tests that write a plaintext database in the store's place."""
    return sqlite3.connect(root / "store.sqlite", isolation_level=None)


def test_pragmas_and_file_modes(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        add_contact(store)
        conn = store._db
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY: no temp files
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        # SQLCipher: every page encrypted and authenticated (storage.md §5).
        assert conn.execute("PRAGMA cipher_version").fetchone()[0].startswith("4.")
        assert conn.execute("PRAGMA cipher_use_hmac").fetchone()[0] == "1"
        assert conn.execute("PRAGMA cipher_hmac_algorithm").fetchone()[0] == "HMAC_SHA256"
        assert int(conn.execute("PRAGMA page_size").fetchone()[0]) == 1024
        for name in ("store.sqlite", "store.sqlite-wal"):
            assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600, name
        assert stat.S_IMODE((tmp_path / "files").stat().st_mode) == 0o700
        # EXCLUSIVE locking: no shared-memory index file.
        assert not (tmp_path / "store.sqlite-shm").exists()


def _compiled_per_round(store: Store, rounds: int) -> list[int]:
    """How many times SQLite compiled a statement other than a PRAGMA (its
    authorizer is asked at compile time only) in each of ``rounds`` rounds of
    the message path: a transaction of texts queued, then their sent and
    delivered marks."""
    conn = store._db
    bob = store.contacts.all()[0]
    compiled = [0]

    def authorize(action: int, *_: object) -> int:
        # A setting's PRAGMA (a bookkeeping write's synchronous) is compiled
        # at each run whatever the cache: SQLite expires it once it ran.
        if action != sqlite3.SQLITE_PRAGMA:
            compiled[0] += 1
        return sqlite3.SQLITE_OK

    counts = []
    conn.set_authorizer(authorize)  # this recompiles every statement once
    try:
        for n in range(rounds):
            compiled[0] = 0
            ids = [new_id() for _ in range(4)]
            with store.transaction():
                for message_id in ids:
                    store.outbox.queue_text(bob.id, message_id, n, "x", "text/plain", None)
            store.outbox.mark_sent(ids, n, contact_id=bob.id)
            store.outbox.mark_delivered(ids, n, contact_id=bob.id)
            counts.append(compiled[0])
    finally:
        conn.set_authorizer(None)
    return counts


@pytest.mark.parametrize("new", [True, False], ids=["new store", "reopened"])
def test_the_message_path_compiles_its_statements_once(tmp_path: Path, new: bool) -> None:
    """The statements of the message path are compiled at their first run
    only, in a store just created (after its migrations ran a hundred
    statements once on the same connection) as in one reopened."""
    if not new:
        with open_store(tmp_path) as store:
            add_contact(store)
    with open_store(tmp_path) as store:
        if new:
            add_contact(store)
        first, *later = _compiled_per_round(store, 4)
        assert first > 0
        assert later == [0, 0, 0]


def test_a_fresh_store_checks_clean(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.outbox.queue_text(bob.id, new_id(), 1, "x", "text/plain", None)
        (tmp_path / "f").write_bytes(b"y" * 100_000)
        store.outbox.queue_file(bob.id, new_id(), 1, "f", tmp_path / "f", 2**30)
        assert store.integrity_check() == []


def test_a_second_opener_is_refused(tmp_path: Path) -> None:
    with open_store(tmp_path):
        script = textwrap.dedent(
            f"""
            from pathlib import Path
            from onionpost.errors import StoreLockedError
            from onionpost.store import Store
            try:
                Store.open(Path({str(tmp_path / "store.sqlite")!r}),
                           Path({str(tmp_path / "files")!r}), bytes(range(32)))
            except StoreLockedError as exc:
                print("locked:", exc)
            """
        )
        result = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        )
        assert result.stdout.startswith("locked:"), result.stdout + result.stderr
        assert "in use by another process" in result.stdout
        # ... and within this process too.
        with pytest.raises(StoreLockedError):
            open_store(tmp_path)
    open_store(tmp_path).close()  # released on close


def test_the_wrong_key_is_refused(tmp_path: Path) -> None:
    _fill(tmp_path, 1)
    with pytest.raises(StoreError, match="store key does not open") as refused:
        open_store(tmp_path, key=bytes(32))
    assert not isinstance(refused.value, StoreTamperedError)
    with pytest.raises(ConfigError, match="32 bytes"):
        open_store(tmp_path, key=b"short")


@pytest.mark.parametrize(
    "content",
    [
        b"this is not a database, just some text " * 100,
        os.urandom(8192),
        b"SQLite format 3\x00" + os.urandom(4080),
    ],
)
def test_a_file_that_is_not_a_database(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "store.sqlite").write_bytes(content)
    with pytest.raises(StoreError, match=r"not a store|not an onionpost store|not a database"):
        open_store(tmp_path)


def test_a_truncated_database(tmp_path: Path) -> None:
    _fill(tmp_path)
    db = tmp_path / "store.sqlite"
    assert not (tmp_path / "store.sqlite-wal").exists()  # checkpointed on close
    size = db.stat().st_size
    assert size > 100_000
    for cut in sorted({size // 2 + 100, size // 2 // 4096 * 4096, size - 4096, 4096, 100}):
        copy = tmp_path / f"cut-{cut}"
        copy.mkdir()
        (copy / "store.sqlite").write_bytes(db.read_bytes()[:cut])
        with pytest.raises(StoreTamperedError, match=r"altered or damaged.*malformed|pages"):
            open_store(copy)


def test_overwritten_pages(tmp_path: Path) -> None:
    _fill(tmp_path)
    db = tmp_path / "store.sqlite"
    with db.open("r+b") as handle:
        handle.seek(4096 * 3)
        handle.write(os.urandom(4096 * 4))
    with pytest.raises(StoreTamperedError, match=r"altered or damaged"):
        open_store(tmp_path)


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    conn = _raw(tmp_path)
    conn.execute("CREATE TABLE accounts (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    with pytest.raises(StoreError, match="not an onionpost store"):
        open_store(tmp_path)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    _fill(tmp_path, 1)
    with open_store(tmp_path) as store:  # what a newer onionpost would leave
        store._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=r"newer than this onionpost knows.*upgrade"):
        open_store(tmp_path)


def test_an_older_store_migrates_and_keeps_its_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    message_id = new_id()
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.outbox.queue_text(bob.id, message_id, 1, "from version 1", "text/plain", None)
    v2 = (
        "ALTER TABLE contacts ADD COLUMN note TEXT",
        "CREATE INDEX messages_state ON messages (state)",
    )
    monkeypatch.setattr(_schema, "MIGRATIONS", (*_schema.MIGRATIONS, v2))
    with open_store(tmp_path) as store:
        conn = store._db
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
        assert "note" in [row[1] for row in conn.execute("PRAGMA table_info(contacts)")]
        assert store.messages.message(message_id).body == "from version 1"
    with open_store(tmp_path) as store:  # applied once only
        assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


def test_a_failing_migration_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fill(tmp_path, 1)
    broken = ("ALTER TABLE contacts ADD COLUMN note TEXT", "THIS IS NOT SQL")
    monkeypatch.setattr(_schema, "MIGRATIONS", (*_schema.MIGRATIONS, broken))
    with pytest.raises(StoreError):
        open_store(tmp_path)
    monkeypatch.undo()
    with open_store(tmp_path) as store:
        conn = store._db
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert "note" not in [row[1] for row in conn.execute("PRAGMA table_info(contacts)")]


def test_an_empty_file_becomes_a_store(tmp_path: Path) -> None:
    (tmp_path / "store.sqlite").write_bytes(b"")
    with open_store(tmp_path) as store:
        assert store.contacts.all() == []


def test_a_store_in_a_missing_directory(tmp_path: Path) -> None:
    from onionpost.store import Store

    with pytest.raises(StoreError, match="cannot open"):
        Store.open(tmp_path / "no" / "such" / "dir" / "store.sqlite", tmp_path / "files", KEY)


def test_an_existing_loose_database_file_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "store.sqlite"
    db.write_bytes(b"")
    db.chmod(0o644)
    open_store(tmp_path).close()
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
