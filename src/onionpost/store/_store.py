"""The store: contacts, the outbox, the inbox and files, in one SQLite database.

Theory of operation
-------------------
One :class:`Store` per home, opened by the daemon. It is synchronous and its
calls are small; the daemon calls it from its event loop, and may run the two
slow ones (:meth:`Store.queue_file`, :meth:`Store.export_file`, which copy a
whole file) in a worker thread: a lock serialises the database work, and
their file copying runs outside it.

Durability and exactly-once delivery:

- SQLite in WAL mode with ``synchronous=FULL``: a call that changes
  something has committed, durably, when it returns (unless it runs inside
  :meth:`Store.transaction`, which commits at the end of the block). One
  exception: the byte count and activity time a chunk write updates are
  committed without an fsync, and re-derived from the blob at open.
- The connection holds SQLite's exclusive lock for its whole life, so a
  second process opening the same store gets :class:`StoreLockedError`.
- :meth:`Store.store_text` inserts on the unique key
  ``(direction, contact, id)`` in one statement of one transaction: a repeated
  message is detected, not stored twice, and the caller acks it again.
- Outgoing states only move forward (:mod:`onionpost.store._records`);
  ``refused`` is final.

What one contact can make us hold (``protocol-spec/storage.md`` §5.3): the
disk budget charges bytes stored (complete files, and what arriving files
hold so far), never sizes announced; the caller's quotas bound a contact's
files arriving at once and their announced sizes (:class:`QuotaError`) and,
through :meth:`Store.unread_count`, its unread texts; transfers idle too
long are deleted (:meth:`Store.expire_transfers`).

At rest (``protocol-spec/storage.md`` §5-7): the database is one SQLCipher
file (:mod:`onionpost.store._database`), every page encrypted and authenticated,
the WAL's framing checked at open (:mod:`onionpost.store._wal`); without the
store key a copy of the home shows no contact, address, time, state or
count, and a change made without it is refused with
:class:`StoreTamperedError` when the store opens or reads it. Text bodies,
content types, file names and file hashes are in addition sealed in each
row's ``content``, the associated data naming the table, direction, contact
and message id; file contents are sealed records in ``files/``, under names
that are keyed hashes (:mod:`onionpost.store._files`). A plaintext store of
schema 1 or 2 is converted on its first open (:mod:`onionpost.store._legacy`).

Every driver exception is translated to :class:`StoreError` (or
:class:`NoSpaceError`, :class:`StoreLockedError`, :class:`StoreTamperedError`)
in :meth:`onionpost.store._database.Database.guard`.
Names that peers chose reach the disk only through
:func:`onionpost.names.safe_file_name`.
"""

from __future__ import annotations

import hmac
import json
import os
import shutil
import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

from onionpost.errors import (
    ConfigError,
    FileTooLargeError,
    HashMismatchError,
    LocalProtocolError,
    NoSpaceError,
    NotFoundError,
    QuotaError,
    StoreError,
    UnknownContactError,
)
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.names import contact_name_problem, file_name_problem, safe_file_name
from onionpost.proto import NotMsgpack, pack, unpack
from onionpost.proto.address import OnionAddress
from onionpost.proto.messages import FileOffer
from onionpost.store import _crypto, _database, _legacy, _schema
from onionpost.store._database import Keys
from onionpost.store._files import (
    BLOB_NAME,
    LEGACY_BLOB_NAME,
    Blob,
    digest_of,
    new_hasher,
    record_count,
)
from onionpost.store._owner import OwnerTables
from onionpost.store._records import (
    INCOMING_TRANSITIONS,
    OUTGOING_TRANSITIONS,
    Contact,
    Direction,
    Kind,
    Outgoing,
    OutgoingFile,
    State,
    Stored,
    StoredFile,
    sources,
)

__all__ = ["Store"]

ID_LEN: Final = 16
HASH_LEN: Final = 64
# The most fields a sealed row holds (a file's: name, content type, hash).
_MAX_SEALED_FIELDS: Final = 3
_PENDING: Final = (State.QUEUED.value, State.SENT.value)
# A reason code is a u64 on the wire (spec.md §5.3); SQLite's integers are
# signed. Larger codes are all unknown ones (read as DECLINED) and are stored
# as this.
_MAX_REASON: Final = 2**63 - 1

# Every query is a literal: an optional contact filter is the parameter
# ``:contact`` being NULL, and a set of states is a JSON array (json_each).
_INSERT_MESSAGE: Final = (
    "INSERT INTO messages (direction, contact_id, id, kind, state, created_ms, stored_ms, "
    "expires_ms, size, content) VALUES (:direction, :contact_id, :id, :kind, :state, "
    ":created_ms, :stored_ms, :expires_ms, :size, :content) "
    "ON CONFLICT (direction, contact_id, id) DO NOTHING"
)
# Run for every Text and every chunk: each reads one partial index (INDEXED BY:
# without statistics the planner would pick the wider unique index).
UNREAD_COUNT: Final = (
    "SELECT count(*) FROM messages INDEXED BY messages_unread WHERE direction = 'in' "
    "AND state = 'received' AND contact_id = :contact AND (:kind IS NULL OR kind = :kind)"
)
FILES_SIZE: Final = (
    "SELECT coalesce(sum(size), 0) FROM messages INDEXED BY messages_files "
    "WHERE kind = 'file' AND copy_dropped_ms IS NULL"
)
_MARK: Final[dict[tuple[Direction, State], str]] = {
    (Direction.OUT, State.SENT): (
        "UPDATE messages SET state = 'sent', sent_ms = :now WHERE direction = 'out' "
        "AND id = :id AND state IN (SELECT value FROM json_each(:allowed)) "
        "AND (:contact IS NULL OR contact_id = :contact) RETURNING id"
    ),
    (Direction.OUT, State.DELIVERED): (
        "UPDATE messages SET state = 'delivered', delivered_ms = :now WHERE direction = 'out' "
        "AND id = :id AND state IN (SELECT value FROM json_each(:allowed)) "
        "AND (:contact IS NULL OR contact_id = :contact) RETURNING id"
    ),
    # A read message was delivered, whether or not its ack came first.
    (Direction.OUT, State.READ): (
        "UPDATE messages SET state = 'read', read_ms = :now, "
        "delivered_ms = coalesce(delivered_ms, :now) WHERE direction = 'out' "
        "AND id = :id AND state IN (SELECT value FROM json_each(:allowed)) "
        "AND (:contact IS NULL OR contact_id = :contact) RETURNING id"
    ),
    (Direction.IN, State.READ): (
        "UPDATE messages SET state = 'read', read_ms = :now WHERE direction = 'in' "
        "AND id = :id AND state IN (SELECT value FROM json_each(:allowed)) "
        "AND (:contact IS NULL OR contact_id = :contact) RETURNING id"
    ),
}


def _id_in_use(message_id: bytes) -> ConfigError:
    return ConfigError(
        f"message id {message_id.hex()} is already another message's "
        "(a send made again must name the same contact and content)"
    )


def _check_id(value: object, what: str = "a message id") -> bytes:
    if not isinstance(value, bytes) or len(value) != ID_LEN:
        raise ConfigError(f"{what} is {ID_LEN} bytes")
    return value


def _check_contact_name(name: object) -> str:
    # A card's name is a contact's name: one rule (onionpost.names).
    problem = contact_name_problem(name)
    if problem is not None:
        raise ConfigError(f"a contact name {problem}")
    assert isinstance(name, str)
    return name


def _check_file_name(name: object) -> str:
    # FileOffer's rule (onionpost.names): a name, never a path.
    problem = file_name_problem(name)
    if problem is not None:
        raise ConfigError(problem)
    assert isinstance(name, str)
    return name


# (table, direction, contact id, message id): what a sealed ``content`` belongs to.
_RowKey = tuple[str, str, int, bytes]


def _blob_left(files_dir: Path) -> str | None:
    """A blob in ``files/`` beside an empty database: the database was emptied
    (or deleted), and starting afresh would sweep the blobs away as orphans."""
    try:
        names = os.listdir(files_dir)
    except OSError as exc:
        raise StoreError(f"cannot list {files_dir}: {exc.strerror}") from exc
    found = [n for n in names if BLOB_NAME.fullmatch(n) or LEGACY_BLOB_NAME.fullmatch(n)]
    return found[0] if found else None


_P = ParamSpec("_P")
_R = TypeVar("_R")


def _owner_side(
    method: Callable[Concatenate[OwnerTables, _P], _R],
) -> Callable[Concatenate[Store, _P], _R]:
    """A method of Store that is its owner part's (:class:`OwnerTables`), same signature."""

    def forward(self: Store, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        return method(self._owner, *args, **kwargs)

    forward.__name__ = forward.__qualname__ = method.__name__
    forward.__doc__ = method.__doc__
    return forward


@dataclass(slots=True)
class _Transfer:
    """An incoming file being written: where it is, and the hash so far."""

    contact_id: int
    id: bytes
    size: int
    blake2b: bytes
    offset: int
    hasher: Any
    blob: Blob


class Store:
    """The endpoint's database. Open with :meth:`Store.open`; see the module doc."""

    def __init__(self, database: _database.Database, files_dir: Path, keys: Keys) -> None:
        self._database = database
        self._path = database.path
        self._files = files_dir
        self._keys = keys
        self._lock = database.lock
        self._guard = database.guard
        self._transfers: dict[tuple[int, bytes], _Transfer] = {}
        self._owner = OwnerTables(
            database,
            outgoing=self._outgoing,
            find_transfer=self._find_transfer,
            write_chunk=self.write_file_chunk,
        )

    def __repr__(self) -> str:
        return f"Store({str(self._path)!r})"

    # -- opening, closing, transactions ---------------------------------------------

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
        database = _database.open_database(
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
        fsync of its own (:meth:`write_file_chunk`); after a crash it may be
        behind or ahead of the blob. The blob's length is what the disk
        holds: whole records count their plaintext, a torn tail what it has
        beyond a record's overhead. (Resuming re-opens every record and sets
        it exactly, :meth:`_load_transfer`.)
        """
        with self._lock, self._guard("checking file transfers"):
            rows = self._db.execute(
                "SELECT contact_id, id, size, received FROM transfers"
            ).fetchall()
            for contact_id, file_id, size, received in rows:
                blob = Blob.at(self._files, self._keys, Direction.IN, contact_id, file_id)
                held = min(size, blob.held_at_most())
                if held != received:
                    with self.transaction():
                        self._db.execute(
                            "UPDATE transfers SET received = ? WHERE contact_id = ? AND id = ?",
                            (held, contact_id, file_id),
                        )

    def close(self) -> None:
        with self._lock:
            self._database.close()
            self._transfers.clear()

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

    def transaction(self) -> AbstractContextManager[None]:
        """Group several calls into one commit (one fsync).

        Every mutating method runs in its own transaction; inside this block
        they share one, committed when the block ends and rolled back
        entirely if it raises. Nested uses are savepoints: a call that fails
        inside the block is undone on its own. Do not ``await`` inside the
        block: other tasks of the same thread would join the transaction.
        """
        return self._database.transaction()

    # -- sealed content ---------------------------------------------------------------

    def _seal(self, row: _RowKey, fields: list[Any]) -> bytes:
        plaintext = pack(fields)
        return _crypto.seal(self._keys.seal, plaintext, _database.row_ad(*row))

    def _unseal(self, row: _RowKey, kind: str, sealed: bytes) -> list[Any]:
        message_id = row[3]
        what = f"the content of message {message_id.hex()}"
        plaintext = _crypto.open_sealed(self._keys.seal, sealed, _database.row_ad(*row), what=what)
        try:
            fields: Any = unpack(
                plaintext, max_len=len(plaintext), max_items=_MAX_SEALED_FIELDS, use_list=True
            )
        except NotMsgpack as exc:
            raise StoreError(f"{what} is malformed") from exc
        if kind == Kind.TEXT:
            shape_ok = (
                type(fields) is list and len(fields) == 2 and all(type(f) is str for f in fields)
            )
        else:
            shape_ok = (
                type(fields) is list
                and len(fields) == 3
                and type(fields[0]) is str
                and type(fields[1]) is str
                and type(fields[2]) is bytes
                and len(fields[2]) == HASH_LEN
            )
        if not shape_ok:
            raise StoreError(f"{what} is malformed")
        return list(fields)

    # -- rows to records ----------------------------------------------------------------

    @staticmethod
    def _contact(row: Sequence[Any]) -> Contact:
        return Contact(
            id=row[0],
            name=row[1],
            address=OnionAddress.from_public_key(row[2]),
            client_auth_public=row[3],
            added_ms=row[4],
            last_seen_ms=row[5],
            last_success_ms=row[6],
            failures=row[7],
            mailbox=None if row[8] is None else OnionAddress.from_public_key(row[8]),
            mailbox_version=row[9],
            mailbox_registered=bool(row[10]),
            mailbox_told=row[11],
        )

    def _stored(self, row: Sequence[Any]) -> Stored:
        # The columns of the view message_rows, in order.
        (seq, direction, contact_id, contact, message_id, kind, state) = row[:7]
        (created_ms, stored_ms, sent_ms, delivered_ms, read_ms, _expires, size, sealed) = row[7:15]
        refused_ms, refused_reason, deposited_ms = row[15:18]
        fields = self._unseal(("messages", direction, contact_id, message_id), kind, sealed)
        file = None
        body = None
        if kind == Kind.TEXT:
            body, content_type = fields
        else:
            name, content_type, digest = fields
            file = StoredFile(name, size, digest, content_type, complete=True)
        return Stored(
            seq=seq,
            id=message_id,
            contact_id=contact_id,
            contact=contact,
            direction=Direction(direction),
            kind=Kind(kind),
            state=State(state),
            created_ms=created_ms,
            received_ms=stored_ms,
            sent_ms=sent_ms,
            delivered_ms=delivered_ms,
            read_ms=read_ms,
            body=body,
            content_type=content_type,
            file=file,
            refused_ms=refused_ms,
            refused_reason=refused_reason,
            deposited_ms=deposited_ms,
        )

    def _outgoing(self, row: Sequence[Any]) -> Outgoing:
        stored = self._stored(row)
        file = None
        if stored.file is not None:
            f = stored.file
            file = OutgoingFile(
                stored.id, stored.created_ms, f.name, f.size, f.blake2b, f.content_type
            )
        return Outgoing(
            kind=stored.kind,
            id=stored.id,
            contact_id=stored.contact_id,
            created_ms=stored.created_ms,
            state=stored.state,
            expires_ms=row[12],
            body=stored.body,
            content_type=stored.content_type,
            file=file,
            seq=stored.seq,
            deposited_ms=row[17],
            deposit_offset=row[18],
        )

    # -- contacts ---------------------------------------------------------------------

    def _active_by_name(self, name: str) -> Contact | None:
        row = self._db.execute(
            "SELECT * FROM current_contacts WHERE name = ? COLLATE NOCASE", (name,)
        ).fetchone()
        return None if row is None else self._contact(row)

    def _active_by_address(self, address: OnionAddress) -> Contact | None:
        row = self._db.execute(
            "SELECT * FROM current_contacts WHERE address = ?",
            (address.public_key,),
        ).fetchone()
        return None if row is None else self._contact(row)

    def _require_contact(self, contact_id: int, *, active: bool) -> None:
        row = self._db.execute(
            "SELECT removed FROM contacts WHERE id = ?", (contact_id,)
        ).fetchone()
        if row is None or (active and row[0]):
            raise ConfigError(f"no contact with id {contact_id}")

    def add_contact(
        self, name: str, address: OnionAddress, client_auth_public: bytes, now: int
    ) -> Contact:
        """A new contact; :class:`ConfigError` if the name (any letter case) or the
        address is already a contact's."""
        name = _check_contact_name(name)
        if not isinstance(address, OnionAddress):
            raise ConfigError("a contact's address is an OnionAddress")
        if not isinstance(client_auth_public, bytes) or len(client_auth_public) != 32:
            raise ConfigError("a client-authorization public key is 32 bytes")
        with self.transaction(), self._guard("adding a contact"):
            same_name = self._active_by_name(name)
            if same_name is not None:
                raise ConfigError(f"a contact named {same_name.name!r} already exists")
            same_address = self._active_by_address(address)
            if same_address is not None:
                raise ConfigError(f"{address} is already a contact, named {same_address.name!r}")
            cursor = self._db.execute(
                "INSERT INTO contacts (name, address, client_auth_public, added_ms) "
                "VALUES (?, ?, ?, ?)",
                (name, address.public_key, client_auth_public, now),
            )
            row = self._db.execute(
                "SELECT * FROM current_contacts WHERE id = ?", (cursor.lastrowid,)
            ).fetchone()
            contact = self._contact(row)
        self._settle()
        return contact

    def remove_contact(self, name: str) -> Contact:
        """Remove a contact; its messages stay, under its name, in the history."""
        with self.transaction(), self._guard("removing a contact"):
            found = self._active_by_name(name)
            if found is None:
                raise UnknownContactError(name)
            self._db.execute("UPDATE contacts SET removed = 1 WHERE id = ?", (found.id,))
        self._settle()
        return found

    def _settle(self) -> None:
        """Checkpoint the WAL into the database file and empty it, unless inside
        a caller's transaction. After a change of contacts (who may fetch our
        descriptor, where texts go) the earlier state is then nowhere on the
        disk: cutting or deleting the WAL cannot bring it back (storage.md §7)."""
        self._database.settle("checkpointing the store")

    def contacts(self) -> list[Contact]:
        with self._lock, self._guard("listing contacts"):
            rows = self._db.execute(
                "SELECT * FROM current_contacts ORDER BY name COLLATE NOCASE"
            ).fetchall()
        return [self._contact(row) for row in rows]

    def contact(self, name: str) -> Contact:
        """The contact called ``name`` (any letter case); :class:`UnknownContactError`."""
        with self._lock, self._guard("reading a contact"):
            contact = self._active_by_name(name)
        if contact is None:
            raise UnknownContactError(name)
        return contact

    def contact_by_id(self, contact_id: int) -> Contact | None:
        """A current contact by its id (None if removed or unknown)."""
        with self._lock, self._guard("reading contacts"):
            row = self._db.execute(
                "SELECT * FROM current_contacts WHERE id = ?", (contact_id,)
            ).fetchone()
        return None if row is None else self._contact(row)

    def contact_by_address(self, address: OnionAddress) -> Contact | None:
        with self._lock, self._guard("reading a contact"):
            return self._active_by_address(address)

    def note_contact_seen(self, contact_id: int, now: int, *, success: bool) -> None:
        """Record an attempt to reach (or a session with) a contact."""
        with self.transaction(), self._guard("updating a contact"):
            self._db.execute(
                "UPDATE contacts SET last_seen_ms = ?, "
                "last_success_ms = CASE WHEN ? THEN ? ELSE last_success_ms END, "
                "failures = CASE WHEN ? THEN 0 ELSE failures + 1 END WHERE id = ?",
                (now, success, now, success, contact_id),
            )

    # -- outgoing ---------------------------------------------------------------------

    def _insert_message(self, values: dict[str, Any]) -> bool:
        """INSERT a messages row; False if (direction, contact, id) exists."""
        row = {"expires_ms": None, "size": None, **values}
        try:
            cursor = self._db.execute(_INSERT_MESSAGE, row)
        except _database.IntegrityError as exc:
            # The only other unique key: our own ids, across contacts.
            raise LocalProtocolError(f"message id {values['id'].hex()} is already in use") from exc
        return cursor.rowcount == 1

    def _queued_before(self, message_id: bytes, contact_id: int, kind: Kind) -> Stored | None:
        """The outgoing message already queued under ``message_id`` (a send made
        again, its answer lost), or None; :class:`ConfigError` when the id is
        another contact's or another kind's. Call with the lock held."""
        row = self._db.execute(
            "SELECT * FROM message_rows WHERE direction = 'out' AND id = ?", (message_id,)
        ).fetchone()
        if row is None:
            return None
        stored = self._stored(row)
        if stored.contact_id != contact_id or stored.kind != kind:
            raise _id_in_use(message_id)
        return stored

    def queue_text(  # noqa: PLR0917 - the contract's signature
        self,
        contact_id: int,
        message_id: bytes,
        created_ms: int,
        body: str,
        content_type: str,
        expires_at: int | None,
    ) -> bool:
        """Queue a text; it is durably stored when this returns.

        Idempotent on ``message_id``: the same text to the same contact again
        is the one already queued (False; True when queued now). The id with
        another contact or content is :class:`ConfigError`.
        """
        _check_id(message_id)
        if not isinstance(body, str) or not isinstance(content_type, str):
            raise ConfigError("a text body and its content type are text")
        content = self._seal(
            ("messages", Direction.OUT, contact_id, message_id), [body, content_type]
        )
        with self.transaction(), self._guard("queueing a message"):
            self._require_contact(contact_id, active=True)
            before = self._queued_before(message_id, contact_id, Kind.TEXT)
            if before is not None:
                if (before.body, before.content_type) != (body, content_type):
                    raise _id_in_use(message_id)
                return False
            inserted = self._insert_message(
                {
                    "direction": Direction.OUT.value,
                    "contact_id": contact_id,
                    "id": message_id,
                    "kind": Kind.TEXT.value,
                    "state": State.QUEUED.value,
                    "created_ms": created_ms,
                    "stored_ms": created_ms,
                    "expires_ms": expires_at,
                    "content": content,
                }
            )
            if not inserted:
                raise LocalProtocolError(f"message id {message_id.hex()} is already in use")
        return True

    def queue_file(  # noqa: PLR0917 - the contract's signature
        self,
        contact_id: int,
        file_id: bytes,
        created_ms: int,
        name: str,
        source: Path,
        max_size: int,
        *,
        content_type: str = "application/octet-stream",
        expires_at: int | None = None,
    ) -> OutgoingFile:
        """Copy ``source`` into the store, encrypted, and queue its offer.

        :class:`FileTooLargeError` beyond ``max_size``; :class:`ConfigError`
        if ``source`` cannot be read; :class:`NoSpaceError` if the disk fills.
        The copy runs outside the store's lock (worker threads welcome), so
        the caller runs one call per ``file_id`` at a time.

        Idempotent on ``file_id``: the same file (name, content type and
        BLAKE2b of ``source``) to the same contact again is the offer already
        queued; the id with another contact or file is :class:`ConfigError`.
        """
        _check_id(file_id, "a file id")
        _check_file_name(name)
        with self._lock, self._guard("queueing a file"):
            self._require_contact(contact_id, active=True)
            before = self._queued_before(file_id, contact_id, Kind.FILE)
        if before is not None:
            assert before.file is not None
            same = (before.file.name, before.file.content_type) == (name, content_type)
            if not same or digest_of(Path(source), max_size) != before.file.blake2b:
                raise _id_in_use(file_id)
            f = before.file
            return OutgoingFile(
                file_id, before.created_ms, f.name, f.size, f.blake2b, f.content_type
            )
        blob = Blob.at(self._files, self._keys, Direction.OUT, contact_id, file_id)
        if blob.path.exists():
            raise LocalProtocolError(f"file id {file_id.hex()} is already in use")
        size, digest = blob.copy_from(Path(source), max_size)
        content = self._seal(
            ("messages", Direction.OUT, contact_id, file_id), [name, content_type, digest]
        )
        try:
            with self.transaction(), self._guard("queueing a file"):
                self._require_contact(contact_id, active=True)
                inserted = self._insert_message(
                    {
                        "direction": Direction.OUT.value,
                        "contact_id": contact_id,
                        "id": file_id,
                        "kind": Kind.FILE.value,
                        "state": State.QUEUED.value,
                        "created_ms": created_ms,
                        "stored_ms": created_ms,
                        "expires_ms": expires_at,
                        "size": size,
                        "content": content,
                    }
                )
        except BaseException:
            blob.delete()
            raise
        if not inserted:  # the blob is the existing row's: keep it
            raise LocalProtocolError(f"file id {file_id.hex()} is already in use")
        return OutgoingFile(file_id, created_ms, name, size, digest, content_type)

    def pending(self, contact_id: int, limit: int, *, after: int = 0) -> list[Outgoing]:
        """Queued, and sent but not yet acknowledged, texts and file offers to
        ``contact_id``, oldest first; with ``after``, only those queued after
        the one whose ``seq`` it is (a sender continuing where it left off)."""
        with self._lock, self._guard("reading the outbox"):
            rows = self._db.execute(
                "SELECT * FROM message_rows WHERE direction = 'out' AND contact_id = ? "
                "AND state IN ('queued', 'sent') AND seq > ? ORDER BY seq LIMIT ?",
                (contact_id, max(0, after), max(0, limit)),
            ).fetchall()
        return [self._outgoing(row) for row in rows]

    def _mark(
        self,
        ids: Sequence[bytes],
        now: int,
        direction: Direction,
        target: State,
        contact_id: int | None,
    ) -> list[bytes]:
        table = OUTGOING_TRANSITIONS if direction == Direction.OUT else INCOMING_TRANSITIONS
        sql = _MARK[(direction, target)]
        allowed = json.dumps(sources(table, target))
        changed: list[bytes] = []
        for message_id in ids:
            rows = self._db.execute(
                sql, {"now": now, "id": message_id, "allowed": allowed, "contact": contact_id}
            ).fetchall()
            changed.extend(row[0] for row in rows)
        return changed

    def mark_sent(
        self, ids: Sequence[bytes], now: int, *, contact_id: int | None = None
    ) -> list[bytes]:
        """Outgoing ``ids`` were sent. Returns the ids whose state changed.

        Committed without an fsync of its own (see :meth:`_bookkeeping`):
        ``sent`` only informs, and a message that shows ``queued`` again
        after a power loss is sent again, which the receiver's
        de-duplication makes harmless. Queueing and delivery stay durable."""
        with self._lock, self._bookkeeping(), self._guard("updating message states"):
            return self._mark(ids, now, Direction.OUT, State.SENT, contact_id)

    def mark_delivered(
        self, ids: Sequence[bytes], now: int, *, contact_id: int | None = None
    ) -> list[bytes]:
        """The receiver acknowledged ``ids``. Pass the acking ``contact_id`` so that
        a contact can only ever acknowledge what was sent to it."""
        with self.transaction(), self._guard("updating message states"):
            return self._mark(ids, now, Direction.OUT, State.DELIVERED, contact_id)

    def mark_read(
        self,
        ids: Sequence[bytes],
        now: int,
        *,
        contact_id: int | None = None,
        direction: Direction | None = None,
    ) -> list[bytes]:
        """Mark ``ids`` read: our outgoing messages (a receipt from the contact),
        incoming ones (our user read them), or, with ``direction=None``, both.
        Returns the ids whose state changed."""
        changed: list[bytes] = []
        with self.transaction(), self._guard("updating message states"):
            for side in (Direction.OUT, Direction.IN):
                if direction is None or direction == side:
                    changed.extend(self._mark(ids, now, side, State.READ, contact_id))
        return changed

    def mark_refused(
        self, ids: Sequence[bytes], now: int, reason: int, *, contact_id: int
    ) -> list[bytes]:
        """The contact refused ``ids`` (a FileReject, spec.md §6.2): final.

        Only what is ``queued`` or ``sent`` to ``contact_id`` moves, so a
        contact can only ever refuse what was sent to it; a refused message
        leaves :meth:`pending` and :meth:`outbox_depth` for good and keeps
        ``reason`` (a FileRejectReason code; any value above 2^63-1 is kept
        as 2^63-1) and ``now`` as ``refused_reason`` and ``refused_ms``.
        Returns the ids whose state changed.
        """
        if not isinstance(reason, int) or reason < 0:
            raise ConfigError("a refusal reason is an unsigned integer")
        allowed = json.dumps(sources(OUTGOING_TRANSITIONS, State.REFUSED))
        changed: list[bytes] = []
        with self.transaction(), self._guard("updating message states"):
            for message_id in ids:
                rows = self._db.execute(
                    "UPDATE messages SET state = 'refused', refused_ms = :now, "
                    "refused_reason = :reason WHERE direction = 'out' AND id = :id "
                    "AND contact_id = :contact "
                    "AND state IN (SELECT value FROM json_each(:allowed)) RETURNING id",
                    {
                        "now": now,
                        "reason": min(reason, _MAX_REASON),
                        "id": message_id,
                        "contact": contact_id,
                        "allowed": allowed,
                    },
                ).fetchall()
                changed.extend(row[0] for row in rows)
        return changed

    def expire(self, now: int) -> list[bytes]:
        """Expire undelivered outgoing messages whose ``expires_at <= now``."""
        with self.transaction(), self._guard("expiring messages"):
            rows = self._db.execute(
                "UPDATE messages SET state = 'expired' WHERE direction = 'out' "
                "AND state IN ('queued', 'sent') AND expires_ms IS NOT NULL "
                "AND expires_ms <= ? RETURNING id",
                (now,),
            ).fetchall()
        return [row[0] for row in rows]

    def drop_sent_copies(self, before: int, now: int) -> list[bytes]:
        """Delete the sealed copies of sent files that reached a final state
        (delivered, read, refused, expired) at or before ``before``; their
        rows stay, no longer charged to the disk budget (storage.md §5.3).
        The blobs go before the commit: a crash in between finds them again
        (a missing blob is nothing to delete). Returns the files' ids."""
        with self.transaction(), self._guard("dropping sent files' copies"):
            rows = self._db.execute(
                "UPDATE messages SET copy_dropped_ms = :now WHERE direction = 'out' "
                "AND kind = 'file' AND copy_dropped_ms IS NULL "
                "AND state IN ('delivered', 'read', 'refused', 'expired') "
                "AND coalesce(delivered_ms, read_ms, refused_ms, expires_ms, stored_ms) "
                "<= :before RETURNING contact_id, id",
                {"now": now, "before": before},
            ).fetchall()
            for contact_id, file_id in rows:
                Blob.at(self._files, self._keys, Direction.OUT, contact_id, file_id).delete()
        return [file_id for _, file_id in rows]

    def read_file_chunk(
        self, file_id: bytes, offset: int, size: int, *, contact_id: int | None = None
    ) -> bytes:
        """At most ``size`` bytes of an outgoing file from ``offset`` (a multiple
        of FILE_CHUNK_SIZE), decrypted: one record. ``b""`` at or past the end."""
        if offset < 0 or offset % FILE_CHUNK_SIZE:
            raise LocalProtocolError(f"file offsets are multiples of {FILE_CHUNK_SIZE}")
        with self._lock, self._guard("reading a file"):
            row = self._db.execute(
                "SELECT contact_id, size FROM messages WHERE direction = 'out' AND kind = 'file' "
                "AND id = :id AND (:contact IS NULL OR contact_id = :contact)",
                {"id": file_id, "contact": contact_id},
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no outgoing file {file_id.hex()}")
        owner, total = row
        if offset >= total or size <= 0:
            return b""
        blob = Blob.at(self._files, self._keys, Direction.OUT, owner, file_id)
        return blob.read_record(offset // FILE_CHUNK_SIZE, total)[:size]

    # -- incoming ---------------------------------------------------------------------

    def store_text(  # noqa: PLR0917 - the contract's signature
        self,
        contact_id: int,
        message_id: bytes,
        created_ms: int,
        body: str,
        content_type: str,
        now: int,
    ) -> bool:
        """Store a received text durably. False when it is already stored (a
        resend): ack it again, do not notify."""
        _check_id(message_id)
        if not isinstance(body, str) or not isinstance(content_type, str):
            raise ConfigError("a text body and its content type are text")
        content = self._seal(
            ("messages", Direction.IN, contact_id, message_id), [body, content_type]
        )
        with self.transaction(), self._guard("storing a message"):
            self._require_contact(contact_id, active=False)
            return self._insert_message(
                {
                    "direction": Direction.IN.value,
                    "contact_id": contact_id,
                    "id": message_id,
                    "kind": Kind.TEXT.value,
                    "state": State.RECEIVED.value,
                    "created_ms": created_ms,
                    "stored_ms": now,
                    "content": content,
                }
            )

    def _disk_used(self) -> int:
        """Bytes the budget charges: every stored file's size (sent and
        received) and what arriving files hold so far, never what they
        announce. Texts are not counted (storage.md §5.3)."""
        (stored,) = self._db.execute(FILES_SIZE).fetchone()
        (arriving,) = self._db.execute(
            "SELECT coalesce(sum(received), 0) FROM transfers"
        ).fetchone()
        return int(stored) + int(arriving)

    def disk_used(self) -> int:
        """What the disk budget charges now (see :meth:`begin_file`)."""
        with self._lock, self._guard("reading the disk budget"):
            return self._disk_used()

    def _load_transfer(self, row: Sequence[Any]) -> _Transfer:
        contact_id, file_id, size, sealed = row
        cached = self._transfers.get((contact_id, file_id))
        if cached is not None:
            return cached
        _, _, digest = self._unseal(
            ("transfers", Direction.IN, contact_id, file_id), Kind.FILE, sealed
        )
        blob = Blob.at(self._files, self._keys, Direction.IN, contact_id, file_id)
        # Recompute the running hash over what is already stored: simple, and
        # correct after any restart or crash.
        offset, hasher = blob.scan(size)
        with self.transaction():
            self._db.execute(
                "UPDATE transfers SET received = ? WHERE contact_id = ? AND id = ?",
                (offset, contact_id, file_id),
            )
        transfer = _Transfer(contact_id, file_id, size, digest, offset, hasher, blob)
        self._transfers[(contact_id, file_id)] = transfer
        return transfer

    def _find_transfer(self, file_id: bytes, contact_id: int | None) -> _Transfer | None:
        rows = self._db.execute(
            "SELECT contact_id, id, size, content FROM transfers "
            "WHERE id = :id AND (:contact IS NULL OR contact_id = :contact)",
            {"id": file_id, "contact": contact_id},
        ).fetchall()
        if not rows:
            return None
        if len(rows) > 1:
            raise LocalProtocolError(
                f"file id {file_id.hex()} is arriving from several contacts; give contact_id"
            )
        return self._load_transfer(rows[0])

    def _discard(self, transfer: _Transfer) -> None:
        self._transfers.pop((transfer.contact_id, transfer.id), None)
        with self.transaction():
            self._db.execute(
                "DELETE FROM transfers WHERE contact_id = ? AND id = ?",
                (transfer.contact_id, transfer.id),
            )
        transfer.blob.delete()

    def begin_file(
        self,
        contact_id: int,
        offer: FileOffer,
        now: int,
        max_size: int,
        max_disk: int,
        *,
        max_transfers: int | None = None,
        max_transfer_bytes: int | None = None,
    ) -> int:
        """Prepare to receive ``offer``; the offset to ask the sender for.

        0 for a new file; the bytes already stored when resuming; ``offer.size``
        when the file is already complete (a repeated offer: acknowledge it
        again). Resuming counts as activity (``now``, see
        :meth:`expire_transfers`) and is checked against nothing below: its
        bytes are already charged.

        A new file is refused, and nothing is stored, with

        - :class:`FileTooLargeError` beyond ``max_size``;
        - :class:`QuotaError` (``quota="transfers"``) when ``contact_id``
          already has ``max_transfers`` files arriving, or
          (``quota="transfer-bytes"``) when the offered sizes of its files
          arriving, this one included, would pass ``max_transfer_bytes``;
        - :class:`NoSpaceError` when ``offer.size`` does not fit in what is
          left of ``max_disk`` now (the budget charges the files stored, sent
          and received, and the bytes arriving files hold so far: see
          :meth:`disk_used`), or does not fit on the disk.

        Offers that each fit may together exceed the budget; pass
        ``max_disk`` to :meth:`write_file_chunk` too, which holds the line.
        """
        file_id = _check_id(offer.id, "a file id")
        if offer.size > max_size:
            raise FileTooLargeError(
                f"the offered file is {offer.size} bytes; the maximum is {max_size}"
            )
        with self._lock, self._guard("starting a file transfer"):
            self._require_contact(contact_id, active=False)
            done = self._db.execute(
                "SELECT 1 FROM messages WHERE direction = 'in' AND contact_id = ? AND id = ?",
                (contact_id, file_id),
            ).fetchone()
            if done is not None:
                return offer.size
            transfer = self._find_transfer(file_id, contact_id)
            if transfer is not None:
                if transfer.size == offer.size and hmac.compare_digest(
                    transfer.blake2b, offer.blake2b
                ):
                    with self.transaction():
                        self._db.execute(
                            "UPDATE transfers SET updated_ms = max(updated_ms, ?) "
                            "WHERE contact_id = ? AND id = ?",
                            (now, contact_id, file_id),
                        )
                    return transfer.offset
                self._discard(transfer)  # another file under the same id: start again
            self._check_quotas(contact_id, offer.size, max_transfers, max_transfer_bytes)
            used = self._disk_used()
            if used + offer.size > max_disk:
                raise NoSpaceError(
                    f"the offered file ({offer.size} bytes) would exceed the disk budget "
                    f"({used} of {max_disk} bytes in use)"
                )
            try:
                free = shutil.disk_usage(self._files).free
            except OSError as exc:
                raise StoreError(f"cannot check free space: {exc.strerror}") from exc
            if offer.size + record_count(offer.size) * _crypto.SEAL_OVERHEAD > free:
                raise NoSpaceError(
                    f"the offered file ({offer.size} bytes) does not fit on the disk"
                )
            content = self._seal(
                ("transfers", Direction.IN, contact_id, file_id),
                [offer.name, offer.content_type, offer.blake2b],
            )
            blob = Blob.at(self._files, self._keys, Direction.IN, contact_id, file_id)
            blob.create()
            try:
                with self.transaction():
                    self._db.execute(
                        "INSERT INTO transfers (contact_id, id, created_ms, started_ms, size, "
                        "content, received, updated_ms) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                        (contact_id, file_id, offer.created_ms, now, offer.size, content, now),
                    )
            except BaseException:
                blob.delete()
                raise
            self._transfers[(contact_id, file_id)] = _Transfer(
                contact_id, file_id, offer.size, offer.blake2b, 0, new_hasher(), blob
            )
            return 0

    def _check_quotas(
        self,
        contact_id: int,
        size: int,
        max_transfers: int | None,
        max_transfer_bytes: int | None,
    ) -> None:
        count, offered = self._db.execute(
            "SELECT count(*), coalesce(sum(size), 0) FROM transfers WHERE contact_id = ?",
            (contact_id,),
        ).fetchone()
        if max_transfers is not None and count >= max_transfers:
            raise QuotaError(
                f"{count} files from this contact are arriving already; at most "
                f"{max_transfers} may arrive at once",
                quota="transfers",
                limit=max_transfers,
            )
        if max_transfer_bytes is not None and offered + size > max_transfer_bytes:
            raise QuotaError(
                f"files offered by this contact and still arriving would total "
                f"{offered + size} bytes; at most {max_transfer_bytes} may be in flight",
                quota="transfer-bytes",
                limit=max_transfer_bytes,
            )

    def write_file_chunk(
        self,
        file_id: bytes,
        offset: int,
        data: bytes,
        *,
        contact_id: int | None = None,
        max_disk: int | None = None,
        now: int | None = None,
    ) -> None:
        """Append a chunk of an incoming file.

        ``offset`` must be the bytes stored so far and ``data`` exactly
        FILE_CHUNK_SIZE bytes (fewer only for the last chunk), else
        :class:`StoreError`. :class:`NoSpaceError`, and nothing of the chunk
        is kept, when the disk is full or when ``max_disk`` is given and the
        chunk would take what the budget charges (:meth:`disk_used`) past
        it. ``now`` is the transfer's new last activity
        (:meth:`expire_transfers`); without it the last activity stays what
        it was (the last ``now`` given here or to :meth:`begin_file`).
        """
        with self._lock, self._guard("writing a file chunk"):
            transfer = self._find_transfer(file_id, contact_id)
            if transfer is None:
                raise NotFoundError(f"no file {file_id.hex()} is arriving")
            if offset != transfer.offset:
                raise StoreError(
                    f"a chunk at offset {offset}, but {transfer.offset} bytes are stored"
                )
            expected = min(FILE_CHUNK_SIZE, transfer.size - offset)
            if len(data) != expected or expected == 0:
                raise StoreError(f"a chunk of {len(data)} bytes where {expected} were due")
            if max_disk is not None:
                used = self._disk_used()
                if used + len(data) > max_disk:
                    raise NoSpaceError(
                        f"a chunk of {len(data)} bytes would exceed the disk budget "
                        f"({used} of {max_disk} bytes in use)"
                    )
            index = offset // FILE_CHUNK_SIZE
            try:
                with self._bookkeeping():
                    self._db.execute(
                        "UPDATE transfers SET received = :received, "
                        "updated_ms = max(updated_ms, coalesce(:now, updated_ms)) "
                        "WHERE contact_id = :contact AND id = :id",
                        {
                            "received": offset + len(data),
                            "now": now,
                            "contact": transfer.contact_id,
                            "id": file_id,
                        },
                    )
                    # Inside the transaction: if the write fails, so does the count.
                    transfer.blob.write_record(index, bytes(data))
            except BaseException:
                # The record may be on disk with its count rolled back: cut it.
                with suppress(StoreError):
                    transfer.blob.truncate(index)
                raise
            transfer.hasher.update(data)
            transfer.offset += len(data)

    def _bookkeeping(self) -> AbstractContextManager[None]:
        """A transaction whose commit need not survive a crash
        (:meth:`_database.Database.bookkeeping`): for a transfer's byte count
        and activity time, which the next open re-derives from the blob anyway
        (:meth:`_reconcile_transfers`); spares an fsync per 64 KiB chunk."""
        return self._database.bookkeeping("writing a file chunk")

    def expire_transfers(self, idle_before_ms: int) -> list[tuple[int, bytes]]:
        """Delete the files still arriving whose last activity (the ``now`` of
        :meth:`begin_file` or :meth:`write_file_chunk`) is before
        ``idle_before_ms``: row, blob and what is cached. Their bytes stop
        counting against the budget and the quotas. Returns the
        ``(contact_id, file_id)`` of each, sorted; a sender that offers one
        again starts from 0, and a chunk of one gets :class:`NotFoundError`."""
        with self._lock, self._guard("expiring file transfers"):
            with self.transaction():
                rows = self._db.execute(
                    "DELETE FROM transfers WHERE updated_ms < ? RETURNING contact_id, id",
                    (idle_before_ms,),
                ).fetchall()
            expired = [(int(contact_id), bytes(file_id)) for contact_id, file_id in rows]
            for contact_id, file_id in expired:
                self._transfers.pop((contact_id, file_id), None)
                # The rows are gone: a blob that cannot be deleted now is an
                # orphan, swept when the store next opens.
                with suppress(StoreError):
                    Blob.at(self._files, self._keys, Direction.IN, contact_id, file_id).delete()
        return sorted(expired)

    def finish_file(self, file_id: bytes, now: int, *, contact_id: int | None = None) -> bool:
        """Check the whole file's BLAKE2b-512 and commit it to the inbox.

        True when the file is now complete; False when it already was.
        :class:`HashMismatchError` (and the data is deleted) on a mismatch.
        """
        with self._lock, self._guard("finishing a file transfer"):
            transfer = self._find_transfer(file_id, contact_id)
            if transfer is None:
                done = self._db.execute(
                    "SELECT 1 FROM messages WHERE direction = 'in' AND id = :id "
                    "AND (:contact IS NULL OR contact_id = :contact)",
                    {"id": file_id, "contact": contact_id},
                ).fetchone()
                if done is not None:
                    return False
                raise NotFoundError(f"no file {file_id.hex()} is arriving")
            if transfer.offset != transfer.size:
                raise StoreError(
                    f"the file is incomplete: {transfer.offset} of {transfer.size} bytes"
                )
            if not hmac.compare_digest(transfer.hasher.digest(), transfer.blake2b):
                self._discard(transfer)
                raise HashMismatchError(
                    "the received file does not match the offer's BLAKE2b-512; its data was deleted"
                )
            transfer.blob.sync()
            row = self._db.execute(
                "SELECT created_ms, content FROM transfers WHERE contact_id = ? AND id = ?",
                (transfer.contact_id, file_id),
            ).fetchone()
            fields = self._unseal(
                ("transfers", Direction.IN, transfer.contact_id, file_id), Kind.FILE, row[1]
            )
            content = self._seal(("messages", Direction.IN, transfer.contact_id, file_id), fields)
            with self.transaction():
                self._insert_message(
                    {
                        "direction": Direction.IN.value,
                        "contact_id": transfer.contact_id,
                        "id": file_id,
                        "kind": Kind.FILE.value,
                        "state": State.RECEIVED.value,
                        "created_ms": row[0],
                        "stored_ms": now,
                        "size": transfer.size,
                        "content": content,
                    }
                )
                self._db.execute(
                    "DELETE FROM transfers WHERE contact_id = ? AND id = ?",
                    (transfer.contact_id, file_id),
                )
            self._transfers.pop((transfer.contact_id, file_id), None)
            return True

    def cancel_file(self, file_id: bytes, *, contact_id: int | None = None) -> bool:
        """Drop an incoming file that is still arriving (the sender cancelled)."""
        with self._lock, self._guard("cancelling a file transfer"):
            transfer = self._find_transfer(file_id, contact_id)
            if transfer is None:
                return False
            self._discard(transfer)
            return True

    def export_file(self, file_id: bytes, dest: Path, *, contact_id: int | None = None) -> Path:
        """Decrypt a complete file to ``dest`` (0600), or into ``dest/<name>`` when
        ``dest`` is a directory, ``<name>`` being the file's name made safe
        (:func:`onionpost.names.safe_file_name`: no path, no hidden file, no
        control or bidi characters, at most 255 bytes). Never overwrites.
        Returns the path written."""
        with self._lock, self._guard("exporting a file"):
            rows = self._db.execute(
                "SELECT * FROM message_rows WHERE kind = 'file' AND id = :id "
                "AND (:contact IS NULL OR contact_id = :contact) "
                "ORDER BY direction = 'in' DESC, seq",
                {"id": file_id, "contact": contact_id},
            ).fetchall()
            if not rows:
                if self._find_transfer(file_id, contact_id) is not None:
                    raise ConfigError(f"file {file_id.hex()} has not arrived completely yet")
                raise NotFoundError(f"no file {file_id.hex()}")
            stored = self._stored(rows[0])
        assert stored.file is not None
        blob = Blob.at(self._files, self._keys, stored.direction, stored.contact_id, file_id)
        if stored.direction == Direction.OUT and not blob.path.exists():
            raise NotFoundError(
                f"the copy of sent file {file_id.hex()} was deleted after it was delivered"
            )
        dest = Path(dest)
        target = dest / safe_file_name(stored.file.name) if dest.is_dir() else dest
        if os.path.lexists(target):
            raise ConfigError(f"{target} already exists")
        # Not derived from the name: a name of 255 bytes leaves no room.
        tmp = target.with_name(f".onionpost-{_crypto.random_bytes(8).hex()}.part")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise ConfigError(f"cannot write to {target.parent}: {exc.strerror}") from exc
        try:
            try:
                digest = blob.export(stored.file.size, fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            if not hmac.compare_digest(digest, stored.file.blake2b):
                raise StoreError(f"file {file_id.hex()} is damaged in the store")
            try:
                os.link(tmp, target)  # fails rather than overwrite
            except FileExistsError as exc:
                raise ConfigError(f"{target} already exists") from exc
            except OSError as exc:
                raise ConfigError(f"cannot write {target}: {exc.strerror}") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return target

    # -- the mailbox, owner and sender side (OwnerTables) -------------------------------

    own_mailbox = _owner_side(OwnerTables.own_mailbox)
    pairing = _owner_side(OwnerTables.pairing)
    begin_pairing = _owner_side(OwnerTables.begin_pairing)
    pairing_started = _owner_side(OwnerTables.pairing_started)
    abandon_pairing = _owner_side(OwnerTables.abandon_pairing)
    finish_pairing = _owner_side(OwnerTables.finish_pairing)
    forget_mailbox = _owner_side(OwnerTables.forget_mailbox)
    announcement_version = _owner_side(OwnerTables.announcement_version)
    note_drained = _owner_side(OwnerTables.note_drained)
    set_contact_mailbox = _owner_side(OwnerTables.set_contact_mailbox)
    set_mailbox_registered = _owner_side(OwnerTables.set_mailbox_registered)
    mark_mailbox_told = _owner_side(OwnerTables.mark_mailbox_told)
    removed_registered = _owner_side(OwnerTables.removed_registered)
    add_prekeys = _owner_side(OwnerTables.add_prekeys)
    prekeys_to_upload = _owner_side(OwnerTables.prekeys_to_upload)
    mark_prekeys_uploaded = _owner_side(OwnerTables.mark_prekeys_uploaded)
    prekey_stock = _owner_side(OwnerTables.prekey_stock)
    prekey_secret = _owner_side(OwnerTables.prekey_secret)
    prekey_was_used = _owner_side(OwnerTables.prekey_was_used)
    use_prekey = _owner_side(OwnerTables.use_prekey)
    expire_prekeys = _owner_side(OwnerTables.expire_prekeys)
    checkpoint = _owner_side(OwnerTables.checkpoint)
    envelope_seen = _owner_side(OwnerTables.envelope_seen)
    note_envelope = _owner_side(OwnerTables.note_envelope)
    owe = _owner_side(OwnerTables.owe)
    owed = _owner_side(OwnerTables.owed)
    has_owed = _owner_side(OwnerTables.has_owed)
    settle = _owner_side(OwnerTables.settle)
    undeposited = _owner_side(OwnerTables.undeposited)
    deposited_count = _owner_side(OwnerTables.deposited_count)
    has_undeposited = _owner_side(OwnerTables.has_undeposited)
    mark_deposited = _owner_side(OwnerTables.mark_deposited)
    write_file_part = _owner_side(OwnerTables.write_file_part)

    # -- queries ----------------------------------------------------------------------

    def inbox(self, *, after: int = 0, limit: int = 100, unread: bool = False) -> list[Stored]:
        """Incoming messages and complete files with ``seq > after``, in order;
        with ``unread``, only those not yet read."""
        with self._lock, self._guard("reading the inbox"):
            rows = self._db.execute(
                "SELECT * FROM message_rows WHERE direction = 'in' AND seq > :after "
                "AND (NOT :unread OR state = 'received') ORDER BY seq LIMIT :limit",
                {"after": after, "unread": unread, "limit": max(0, limit)},
            ).fetchall()
        return [self._stored(row) for row in rows]

    def outbox(self, *, contact_id: int | None = None, limit: int = 100) -> list[Stored]:
        """Outgoing messages and files not yet acknowledged (queued or sent), to
        current contacts or to ``contact_id`` only, oldest first."""
        with self._lock, self._guard("reading the outbox"):
            rows = self._db.execute(
                "SELECT r.* FROM message_rows r JOIN contacts c ON c.id = r.contact_id "
                "WHERE r.direction = 'out' AND r.state IN ('queued', 'sent') AND c.removed = 0 "
                "AND (:contact IS NULL OR r.contact_id = :contact) ORDER BY r.seq LIMIT :limit",
                {"contact": contact_id, "limit": max(0, limit)},
            ).fetchall()
        return [self._stored(row) for row in rows]

    def message(self, message_id: bytes, *, contact_id: int | None = None) -> Stored:
        """The message or file ``message_id`` (either direction; a file still
        arriving has ``seq`` 0, state ``receiving``). :class:`NotFoundError`."""
        args = {"id": message_id, "contact": contact_id}
        with self._lock, self._guard("reading a message"):
            row = self._db.execute(
                "SELECT * FROM message_rows WHERE id = :id "
                "AND (:contact IS NULL OR contact_id = :contact) ORDER BY seq LIMIT 1",
                args,
            ).fetchone()
            if row is not None:
                return self._stored(row)
            row = self._db.execute(
                "SELECT t.contact_id, c.name, t.created_ms, t.started_ms, t.size, t.content "
                "FROM transfers t JOIN contacts c ON c.id = t.contact_id "
                "WHERE t.id = :id AND (:contact IS NULL OR t.contact_id = :contact) LIMIT 1",
                args,
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no message {message_id.hex()}")
        owner, contact, created_ms, started_ms, size, sealed = row
        name, content_type, digest = self._unseal(
            ("transfers", Direction.IN, owner, message_id), Kind.FILE, sealed
        )
        return Stored(
            seq=0,
            id=message_id,
            contact_id=owner,
            contact=contact,
            direction=Direction.IN,
            kind=Kind.FILE,
            state=State.RECEIVING,
            created_ms=created_ms,
            received_ms=started_ms,
            sent_ms=None,
            delivered_ms=None,
            read_ms=None,
            body=None,
            content_type=content_type,
            file=StoredFile(name, size, digest, content_type, complete=False),
        )

    def messages_with_id(self, message_id: bytes) -> list[Stored]:
        """Every stored message (either direction, any contact) with this id, in
        ``seq`` order. Our own ids are unique, but two contacts may send records
        with the same id: a caller acting for the user must tell them apart."""
        with self._lock, self._guard("reading a message"):
            rows = self._db.execute(
                "SELECT * FROM message_rows WHERE id = ? ORDER BY seq", (message_id,)
            ).fetchall()
        return [self._stored(row) for row in rows]

    def outbox_depth(self, contact_id: int | None = None) -> int:
        """Outgoing messages and files not yet acknowledged, to current contacts
        (or to ``contact_id`` only): a count, without decrypting anything."""
        with self._lock, self._guard("reading the outbox"):
            (count,) = self._db.execute(
                "SELECT count(*) FROM messages m JOIN contacts c ON c.id = m.contact_id "
                "WHERE m.direction = 'out' AND m.state IN ('queued', 'sent') AND c.removed = 0 "
                "AND (:contact IS NULL OR m.contact_id = :contact)",
                {"contact": contact_id},
            ).fetchone()
        return int(count)

    def unread_count(self, contact_id: int, *, kind: Kind | None = None) -> int:
        """Messages and complete files received from ``contact_id`` and not yet
        read (state ``received``); with ``kind``, texts or files only. One
        index range, nothing decrypted: cheap enough for every Text."""
        with self._lock, self._guard("reading the inbox"):
            (count,) = self._db.execute(
                UNREAD_COUNT, {"contact": contact_id, "kind": None if kind is None else kind.value}
            ).fetchone()
        return int(count)

    def transfer_count(self, contact_id: int) -> int:
        """Files from ``contact_id`` still arriving (begun, not finished,
        cancelled or expired)."""
        with self._lock, self._guard("reading file transfers"):
            (count,) = self._db.execute(
                "SELECT count(*) FROM transfers WHERE contact_id = ?", (contact_id,)
            ).fetchone()
        return int(count)

    def last_delivery(self) -> int | None:
        """When the last acknowledgement arrived (the ``now`` given to mark_delivered)."""
        with self._lock, self._guard("reading the outbox"):
            (last,) = self._db.execute(
                "SELECT max(delivered_ms) FROM messages WHERE direction = 'out'"
            ).fetchone()
        return None if last is None else int(last)

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
                stored = self._stored(row)
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
                self._unseal(("transfers", Direction.IN, contact_id, file_id), Kind.FILE, sealed)
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
