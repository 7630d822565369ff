"""The store: contacts, the outbox, the inbox and files, in one SQLite database.

Theory of operation
-------------------
One :class:`Store` per home, opened by the daemon. It opens the
:class:`~onionpost.store._database.Database`, sweeps away the file blobs no
row refers to, sets each arriving file's byte count from its blob, and
composes the parts, each over that one Database (its connection, lock and
transactions), each one group of tables:

==================  ============================================================
``store.contacts``  :class:`~._contacts.Contacts`: who we know
``store.outbox``    :class:`~._outbox.Outbox`: texts and files queued, their states
``store.messages``  :class:`~._messages.Messages`: texts received, the inbox, any
                    message by its id, read marks
``store.transfers`` :class:`~._transfers.Transfers`: files arriving, files read out
``store.mailbox``   :class:`~._owner.OwnerTables`: our mailbox, prekeys, deposits
``store.trust``     :class:`~._trust.TrustAnchors`: trust anchors and trust alarms
``store.evidence``  :class:`~._evidence.EvidenceLog`: the evidence log, appended
                    to by the others in the transaction of each change
``store.groups``    :class:`~._groups.Groups`: team channels' logs, members, messages
``store.lists``     :class:`~._lists.Lists`: distribution lists, and each send
                    to one as its copies (one outgoing message per member)
==================  ============================================================

(Row contents are sealed and read into records by one :class:`~._rows.Rows`
the parts share.) The store is synchronous and its calls are small; the
daemon runs them in one worker thread, and the two slow ones
(:meth:`Outbox.queue_file <._outbox.Outbox.queue_file>` and
:meth:`Transfers.export_file <._transfers.Transfers.export_file>`, which copy
a whole file) copy outside the lock that serialises the database work.

Durability and exactly-once delivery:

- SQLite in WAL mode with ``synchronous=FULL``: a call that changes
  something has committed, durably, when it returns (unless it runs inside
  :meth:`Store.transaction`, which commits at the end of the block). One
  exception: the byte count and activity time a chunk write updates are
  committed without an fsync, and re-derived from the blob at open.
- The connection holds SQLite's exclusive lock for its whole life, so a
  second process opening the same store gets :class:`StoreLockedError`.
- A received text is inserted on the unique key ``(direction, contact, id)``
  in one statement of one transaction: a repeated message is detected, not
  stored twice, and the caller acks it again.
- Outgoing states only move forward (:mod:`onionpost.store._records`);
  ``refused`` is final.

What one contact can make us hold (``protocol-spec/storage.md`` §5.3) is
bounded by the disk budget and the caller's quotas on files arriving
(:mod:`onionpost.store._transfers`) and, through ``messages.unread_count``, on
its unread texts.

At rest (``protocol-spec/storage.md`` §5-7): the database is one SQLCipher
file (:mod:`onionpost.store._database`, opened by :mod:`onionpost.store._open`),
every page encrypted and authenticated, the WAL's framing checked at open
(:mod:`onionpost.store._wal`); without the store key a copy of the home shows
no contact, address, time, state or count, and a change made without it is
refused with :class:`StoreTamperedError` when the store opens or reads it.
Text bodies, content types, file names and file hashes are in addition
sealed in each row's ``content`` (:mod:`onionpost.store._rows`); file
contents are sealed records in ``files/``, under names that are keyed hashes
(:mod:`onionpost.store._files`). A plaintext store of schema 1 or 2 is
converted on its first open (:mod:`onionpost.store._legacy`).

Every driver exception is translated to :class:`StoreError` (or
:class:`NoSpaceError`, :class:`StoreLockedError`, :class:`StoreTamperedError`)
in :meth:`onionpost.store._database.Database.guard`.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Final

from onionpost.errors import ConfigError, StoreError
from onionpost.store import _crypto, _database, _legacy, _open, _schema
from onionpost.store._contacts import Contacts
from onionpost.store._database import Keys
from onionpost.store._evidence import EvidenceLog
from onionpost.store._files import BLOB_NAME, LEGACY_BLOB_NAME, Blob, record_count
from onionpost.store._groups import Groups
from onionpost.store._lists import Lists
from onionpost.store._messages import Messages
from onionpost.store._outbox import Outbox
from onionpost.store._owner import OwnerTables
from onionpost.store._records import Direction, Kind
from onionpost.store._rows import Rows
from onionpost.store._transfers import Transfers
from onionpost.store._trust import TrustAnchors

__all__ = ["Store"]


def _blob_left(files_dir: Path) -> str | None:
    """A blob in ``files/`` beside an empty database: the database was emptied
    (or deleted), and starting afresh would sweep the blobs away as orphans."""
    try:
        names = os.listdir(files_dir)
    except OSError as exc:
        raise StoreError(f"cannot list {files_dir}: {exc.strerror}") from exc
    found = [n for n in names if BLOB_NAME.fullmatch(n) or LEGACY_BLOB_NAME.fullmatch(n)]
    return found[0] if found else None


class Store:
    """The endpoint's database, as its parts. Open with :meth:`Store.open`; see
    the module doc."""

    def __init__(self, database: _database.Database, files_dir: Path, keys: Keys) -> None:
        self._database = database
        self._path = database.path
        self._files = files_dir
        self._keys = keys
        self._lock = database.lock
        self._guard = database.guard
        self._rows = rows = Rows(keys)
        evidence = EvidenceLog(database)
        self.evidence: Final = evidence
        self.contacts: Final = Contacts(database, evidence)
        self.outbox: Final = Outbox(database, files_dir, keys, rows, self.contacts, evidence)
        self.messages: Final = Messages(
            database, rows, self.contacts, evidence, delivered_at=self.outbox.delivered_at
        )
        self.transfers: Final = Transfers(database, files_dir, keys, rows, self.contacts, evidence)
        self.mailbox: Final = OwnerTables(database, rows, self.transfers, evidence)
        self.trust: Final = TrustAnchors(database)
        self.lists: Final = Lists(database, rows, self.contacts, self.outbox)
        self.groups: Final = Groups(database, self.contacts, self.outbox, self.messages, evidence)

    def __repr__(self) -> str:
        return f"Store({str(self._path)!r})"

    @classmethod
    def open(cls, path: Path, files_dir: Path, key: bytes) -> Store:
        """Open (or create) the store at ``path`` with file blobs in ``files_dir``.

        ``key`` is the home's store key (``Secrets.store_key``); the store
        uses only subkeys of it (:class:`onionpost.store._database.Keys`). A
        plaintext store (schema 1 or 2) is converted to an encrypted one first
        (:mod:`onionpost.store._legacy`).

        :class:`StoreError` when ``key`` is not the key the store was created
        with (or the file is not a store), or it was written by a newer
        onionpost; :class:`StoreTamperedError` when the database, its WAL or
        its first bytes were changed without the key, cut short or damaged,
        or are not the state its binding file records (an earlier copy, or
        pages of one, put back: storage.md §5.4); :class:`StoreLockedError`
        when another process has it open.
        """
        if not isinstance(key, bytes) or len(key) != _crypto.KEY_LEN:
            raise ConfigError(f"the store key is {_crypto.KEY_LEN} bytes")
        keys = Keys.derive(key)
        path = Path(path)
        files_dir = Path(files_dir)
        try:
            files_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot open the store {path}: {exc.strerror}") from exc
        database = _open.open_database(
            path,
            keys,
            what="store",
            migrations=_schema.MIGRATIONS,
            bound_from=_schema.BOUND_VERSION,
            convert=partial(_legacy.convert, path, files_dir, key, keys),
            check_new=partial(_blob_left, files_dir),
        )
        store = cls(database, files_dir, keys)
        try:
            store._sweep_orphans()
            store._reconcile_transfers()
        except BaseException:
            database.close()
            raise
        return store

    def _sweep_orphans(self) -> None:
        """Delete blobs no row refers to: a copy or transfer cut short by a
        crash, and those a conversion from a plaintext store left behind."""
        with self._lock, self._guard("checking file blobs"):
            rows = self._db.execute(
                "SELECT direction, contact_id, id FROM messages WHERE kind = 'file' "
                "UNION ALL SELECT 'in', contact_id, id FROM transfers"
            ).fetchall()
        referenced = {Blob.name(self._keys, d, c, i) for d, c, i in rows}
        try:
            names = os.listdir(self._files)
        except OSError as exc:
            raise StoreError(f"cannot list {self._files}: {exc.strerror}") from exc
        for name in names:
            orphan = (
                name.startswith(".tmp-")
                or LEGACY_BLOB_NAME.fullmatch(name) is not None
                or (BLOB_NAME.fullmatch(name) is not None and name not in referenced)
            )
            if orphan:
                try:
                    (self._files / name).unlink()
                except OSError as exc:
                    raise StoreError(f"cannot delete {name}: {exc.strerror}") from exc

    def _reconcile_transfers(self) -> None:
        """Set each arriving file's ``received`` from its blob's length.

        The column is bookkeeping for the disk budget, written without an
        fsync of its own (:meth:`Transfers.write_file_chunk`); after a crash it may be
        behind or ahead of the blob. The blob's length is what the disk
        holds: whole records count their plaintext, a torn tail what it has
        beyond a record's overhead. (Resuming re-opens every record and sets
        it exactly, :meth:`Transfers.arriving`.)
        """
        with self._lock, self._guard("checking file transfers"):
            rows = self._db.execute(
                "SELECT contact_id, id, size, received FROM transfers"
            ).fetchall()
            for contact_id, file_id, size, received in rows:
                blob = Blob.at(self._files, self._keys, Direction.IN, contact_id, file_id)
                held = min(size, blob.held_at_most())
                if held != received:
                    with self._database.transaction():
                        self._db.execute(
                            "UPDATE transfers SET received = ? WHERE contact_id = ? AND id = ?",
                            (held, contact_id, file_id),
                        )

    def close(self) -> None:
        with self._lock:
            self._database.close()
            self.transfers.forget_cached()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    def defer_checkpoints(self) -> None:
        """Commits leave the WAL's checkpoint to :meth:`checkpoint_if_due`
        (:meth:`onionpost.store._database.Database.defer_checkpoints`)."""
        self._database.defer_checkpoints()

    def checkpoint_due(self) -> bool:
        """The WAL is long enough that :meth:`checkpoint_if_due` would checkpoint it."""
        return self._database.checkpoint_due()

    def checkpoint_if_due(self) -> None:
        """Checkpoint the WAL into the database file once it is long enough."""
        self._database.checkpoint_if_due()

    def transaction(self) -> AbstractContextManager[None]:
        """Group several calls into one commit (one fsync).

        Every mutating method runs in its own transaction; inside this block
        they share one, committed when the block ends and rolled back
        entirely if it raises. Nested uses are savepoints: a call that fails
        inside the block is undone on its own. Do not ``await`` inside the
        block: other tasks of the same thread would join the transaction.
        """
        return self._database.transaction()

    def integrity_check(self) -> list[str]:
        """Problems found (empty when none): every page's authentication
        (SQLCipher), SQLite's own check, foreign keys, every row's sealed
        content, every file blob's presence and length."""
        problems: list[str] = []
        with self._lock, self._guard("checking the store"):
            conn = self._db
            problems += [r[0] for r in conn.execute("PRAGMA cipher_integrity_check")]
            problems += [r[0] for r in conn.execute("PRAGMA integrity_check(20)") if r[0] != "ok"]
            problems += [
                f"foreign key violation in {r[0]} row {r[1]}"
                for r in conn.execute("PRAGMA foreign_key_check")
            ]
            messages = conn.execute("SELECT * FROM message_rows ORDER BY seq").fetchall()
            transfers = conn.execute(
                "SELECT contact_id, id, size, content FROM transfers"
            ).fetchall()
        for row in messages:
            try:
                stored = self._rows.stored(row)
            except StoreError as exc:
                problems.append(str(exc))
                continue
            if stored.file is not None:
                blob = Blob.at(
                    self._files, self._keys, stored.direction, stored.contact_id, stored.id
                )
                problems += self._check_blob(blob, stored.file.size, stored.id)
        for contact_id, file_id, _size, sealed in transfers:
            try:
                self._rows.unseal(
                    ("transfers", Direction.IN, contact_id, file_id), Kind.FILE, sealed
                )
            except StoreError as exc:
                problems.append(str(exc))
        return problems

    @staticmethod
    def _check_blob(blob: Blob, size: int, file_id: bytes) -> list[str]:
        expected = size + record_count(size) * _crypto.SEAL_OVERHEAD
        try:
            actual = blob.path.stat().st_size
        except FileNotFoundError:
            return [f"file {file_id.hex()}: its blob is missing"]
        except OSError as exc:
            return [f"file {file_id.hex()}: {exc.strerror}"]
        if actual != expected:
            return [f"file {file_id.hex()}: its blob is {actual} bytes, expected {expected}"]
        return []
