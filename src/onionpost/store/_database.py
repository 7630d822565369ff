"""The database file: SQLCipher 4 (through ``sqlcipher3``), and the keys it is opened with.

This is the only module that imports the driver. ``sqlcipher3`` is the
standard library's ``sqlite3`` module built against SQLCipher (SQLite with
every page encrypted and authenticated); its connections and exceptions have
the standard module's interface, and are typed here as that.

What SQLCipher writes (https://www.zetetic.net/sqlcipher/design/), with a raw
key (no passphrase KDF) and our own salt: pages of 1024 bytes; the first 16
bytes of the file are the salt, in clear; every page is
``AES-256-CBC(key, iv, content) || iv (16) || HMAC-SHA256(hmac_key, ciphertext
|| iv || page number) (32)``, the IV random on every write, ``hmac_key =
PBKDF2-HMAC-SHA512(key, salt XOR 0x3a, 2 iterations)``. The same page images
are what the WAL's frames carry. A page changed without the key, moved to
another position or taken from another home does not verify.

The page size and the HMAC are not SQLCipher 4's defaults (4096, SHA-512):
every commit encrypts and authenticates each page it changes, and a message
changes several (the table and its indexes), so smaller pages and SHA-256
(in hardware on current x86 and ARM CPUs) halve what encryption adds to a
commit (measured: +40 us of CPU per queued text instead of +130 us; storage.md §5).

Keys: the home's store key (``Secrets.store_key``) is a master key only;
:class:`Keys` derives from it, by keyed BLAKE2b with a distinct purpose each
(:func:`onionpost.store._crypto.subkey`), the database key, the salt, the key
that names blobs and the key that seals row contents and file records. The
salt being derived from the key is what lets
:func:`~onionpost.store._open.check_head` tell "another key" from "altered"
before SQLite reads anything. Opening a database (what is checked, in what
order) is :mod:`onionpost.store._open`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, cast

import sqlcipher3.dbapi2 as _dbapi  # type: ignore[import-untyped]

from onionpost.errors import NoSpaceError, StoreError, StoreLockedError, StoreTamperedError
from onionpost.store import _crypto
from onionpost.store._binding import Binder

log = logging.getLogger("onionpost.store")

__all__ = [
    "HMAC_LEN",
    "PAGE_SIZE",
    "Database",
    "SALT_LEN",
    "SETTINGS",
    "SQLITE_MAGIC",
    "WAL_KEEP",
    "STATEMENT_CACHE",
    "Error",
    "IntegrityError",
    "Keys",
    "configure",
    "connect",
    "encrypted_key",
    "row_ad",
    "tampered",
    "translate",
    "unverified_page",
]

# sqlcipher3's exceptions and connections, as the standard module's types.
Error: Final[type[sqlite3.Error]] = _dbapi.Error
IntegrityError: Final[type[sqlite3.IntegrityError]] = _dbapi.IntegrityError
SQLITE_FULL: Final[int] = _dbapi.SQLITE_FULL
SQLITE_BUSY: Final[int] = _dbapi.SQLITE_BUSY
SQLITE_LOCKED: Final[int] = _dbapi.SQLITE_LOCKED
SQLITE_NOTADB: Final[int] = _dbapi.SQLITE_NOTADB
SQLITE_CORRUPT: Final[int] = _dbapi.SQLITE_CORRUPT
SQLITE_IOERR: Final[int] = _dbapi.SQLITE_IOERR

PAGE_SIZE: Final = 1024
#: Prepared statements a connection keeps (the driver's default is 100). The
#: driver's cache never takes a statement in once it is full: each new one
#: pushes out the one before it, so a statement first run after that is
#: compiled again at every run. A new store's migrations alone run about a
#: hundred statements once, so with the default every statement of the
#: message path was recompiled at each call. This holds the migrations and
#: every statement the stores run (some 300 in the code), with room to spare.
STATEMENT_CACHE: Final = 1024
SALT_LEN: Final = 16
#: The cipher settings every connection applies after its key (and the
#: conversion to the database it attaches): SQLCipher 4's, except the page
#: size and the HMAC (see above). unverified_page() recomputes this format.
SETTINGS: Final = (
    "cipher_compatibility = 4",
    f"cipher_page_size = {PAGE_SIZE}",
    "cipher_hmac_algorithm = HMAC_SHA256",
)
# Each page ends with the IV (16) and the HMAC-SHA256 (32); the HMAC key is
# derived with cipher_kdf_algorithm (PBKDF2-HMAC-SHA512, compatibility 4)
# and SQLCipher's fast_kdf_iter.
HMAC_LEN: Final = 32
_HMAC_SALT_MASK: Final = 0x3A
_FAST_KDF_ITER: Final = 2
#: The first 16 bytes of a plaintext SQLite database (a store before version 3).
SQLITE_MAGIC: Final = b"SQLite format 3\x00"

# What sealed row contents are bound to (storage.md §5.2).
_AD_CONTEXT: Final = b"onionpost store v1\x00"


@dataclass(frozen=True, slots=True)
class Keys:
    """The subkeys of one store key; none appears in a ``repr``."""

    database: bytes = field(repr=False)  # SQLCipher's raw key
    salt: bytes = field(repr=False)  # SQLCipher's salt, the file's first 16 bytes
    names: bytes = field(repr=False)  # blob file names (keyed BLAKE2b)
    seal: bytes = field(repr=False)  # row contents and file records (XChaCha20-Poly1305)
    binding: bytes = field(repr=False)  # the binding file (_binding)

    @classmethod
    def derive(cls, store_key: bytes) -> Keys:
        return cls(
            database=_crypto.subkey(store_key, b"onionpost db"),
            salt=_crypto.subkey(store_key, b"onionpost dbsalt", SALT_LEN),
            names=_crypto.subkey(store_key, b"onionpost names"),
            seal=_crypto.subkey(store_key, b"onionpost seal"),
            binding=_crypto.subkey(store_key, b"onionpost bind"),
        )


def encrypted_key(keys: Keys) -> str:
    """SQLCipher's raw key syntax with an explicit salt: ``x'<key hex><salt hex>'``."""
    return f"x'{keys.database.hex()}{keys.salt.hex()}'"


def configure(conn: sqlite3.Connection, schema: str) -> None:
    """Apply :data:`SETTINGS` to the keyed database ``schema`` (before it is read)."""
    for setting in SETTINGS:
        conn.execute(f"PRAGMA {schema}.{setting}")


def connect(path: Path, keys: Keys | None) -> sqlite3.Connection:
    """A connection in autocommit mode; encrypted with ``keys``, plaintext with None.

    SQLCipher's own log (which would write to stderr) is off: its failures
    reach us as exceptions.
    """
    conn: Any = _dbapi.connect(
        str(path),
        isolation_level=None,
        timeout=0,
        check_same_thread=False,
        cached_statements=STATEMENT_CACHE,
    )
    try:
        conn.execute("PRAGMA cipher_log_level = NONE")
        if keys is not None:
            conn.execute(f'PRAGMA key = "{encrypted_key(keys)}"')
            configure(conn, "main")
    except BaseException:
        conn.close()
        raise
    return cast(sqlite3.Connection, conn)


def translate(exc: sqlite3.Error, doing: str, path: Path, *, encrypted: bool) -> StoreError:
    """The one place a driver exception becomes ours.

    In an encrypted store a page that does not verify is reported by SQLCipher
    as SQLITE_NOTADB (page 1) or SQLITE_CORRUPT (any other), as is a file cut
    short or pages of different times mixed: all of it is a file changed
    without the key, or damaged, and the store is refused.
    """
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
    if code == SQLITE_FULL:
        return NoSpaceError(f"the disk is full ({doing})")
    if code in (SQLITE_BUSY, SQLITE_LOCKED):
        return StoreLockedError(f"the store {path} is in use by another process")
    if encrypted and code in (SQLITE_NOTADB, SQLITE_CORRUPT):
        return tampered(path, f"{doing}: {exc}")
    if code == SQLITE_NOTADB:
        return StoreError(f"{path} is not an onionpost store (not an SQLite database)")
    if code == SQLITE_CORRUPT:
        return StoreError(f"the store {path} is corrupt ({doing}): {exc}")
    if code == SQLITE_IOERR:
        return StoreError(f"I/O error on the store {path} ({doing}): {exc}")
    return StoreError(f"store error ({doing}): {exc}")


def tampered(path: Path, what: str) -> StoreTamperedError:
    return StoreTamperedError(
        f"the store {path} was altered or damaged, and is refused ({what}); restore it "
        "from a copy you trust"
    )


def unverified_page(keys: Keys, pages: Iterable[tuple[int, bytes]]) -> int | None:
    """The number of the first of ``pages`` ((page number, image) pairs, from
    the database file or the WAL) whose HMAC does not verify; None when all do.

    SQLCipher checks the same when it reads a page; checking first means that
    SQLite never reads, recovers or checkpoints a file that was changed.
    ``HMAC-SHA256(hmac_key, page[start : PAGE_SIZE - 32] || page number (u32 LE))``,
    start being 16 on page 1 (after the salt) and 0 on the others.
    """
    hmac_key = _crypto.pbkdf2_sha512(
        keys.database, bytes(b ^ _HMAC_SALT_MASK for b in keys.salt), _FAST_KDF_ITER, 32
    )
    for number, image in pages:
        if len(image) != PAGE_SIZE or number < 1:
            return number
        start = SALT_LEN if number == 1 else 0
        try:
            _crypto.hmac_sha256_verify(
                hmac_key,
                image[start : PAGE_SIZE - HMAC_LEN] + number.to_bytes(4, "little"),
                image[PAGE_SIZE - HMAC_LEN :],
                what=f"page {number}",
            )
        except StoreError:
            return number
    return None


def row_ad(table: str, direction: str, contact_id: int, message_id: bytes) -> bytes:
    """The associated data of a row's sealed ``content`` (storage.md §5.2)."""
    return (
        _AD_CONTEXT
        + table.encode("ascii")
        + b"\x00"
        + direction.encode("ascii")
        + contact_id.to_bytes(8, "big")
        + message_id
    )


#: A plaintext store's key check (versions 1 and 2): this value sealed with the
#: store key itself under :data:`LEGACY_KEY_CHECK_AD`.
LEGACY_KEY_CHECK: Final = b"onionpost store key check"
LEGACY_KEY_CHECK_AD: Final = _AD_CONTEXT + b"meta\x00key_check"


# -- one open database -----------------------------------------------------------------

#: The WAL is checkpointed (after a durable commit) once it is this long; SQLite's
#: own automatic checkpoint is off. 4000 pages: a page written again and again
#: (an index's last leaf, the evidence log's) is copied into the file once per
#: checkpoint, so fewer checkpoints cost less each per commit (1000 pages, as
#: SQLite's own, made the checkpoint about 8% of a small commit's time; 4000
#: about 4%).
_WAL_LIMIT: Final = 4000 * (PAGE_SIZE + 24)
#: With checkpoints deferred (:meth:`Database.defer_checkpoints`) a commit
#: still checkpoints itself past this, so the WAL stays bounded whoever writes.
_WAL_HARD_LIMIT: Final = 4 * _WAL_LIMIT
#: The WAL file's length kept after a checkpoint (``journal_size_limit``). A
#: checkpoint restarts the log rather than emptying the file: the next log is
#: written over the old one's frames, so a commit's fsync finds its blocks
#: allocated and the file's length unchanged, and syncs no file-system
#: metadata (on ext4 an append's fsync cost twice an overwrite's, measured).
#: Past this length the file is cut back at the new log's first commit.
WAL_KEEP: Final = _WAL_LIMIT + _WAL_LIMIT // 4


class Guard:
    """:meth:`Database.guard`'s block (a class: it runs for every store call,
    and a generator-based context manager costs microseconds more)."""

    __slots__ = ("_database", "_doing")

    def __init__(self, database: Database, doing: str) -> None:
        self._database = database
        self._doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: object
    ) -> None:
        database = self._database
        if exc is None:
            with database.lock:
                database._committed()
        elif isinstance(exc, Error):
            raise translate(exc, self._doing, database.path, encrypted=True) from exc


class Database:
    """One open SQLCipher database: its connection, the lock that serialises
    calls, transactions (nested ones are savepoints), the one place driver
    exceptions become ours (:meth:`guard`), and the binding kept up to date
    after every durable commit (:mod:`onionpost.store._binding`).

    Made by :func:`onionpost.store._open.open_database`; both stores stand on it.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, what: str, binder: Binder) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self.what = what
        self.lock = threading.RLock()
        self.depth = 0
        self._binder = binder
        self._relaxed = False
        self._changes = conn.total_changes
        self._deferred = False  # checkpoints left to checkpoint_if_due

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the {self.what} is closed")
        return self._conn

    def _bind(self, *, final: bool = False) -> None:
        """Record the state after a durable commit (its WAL synced)."""
        self._changes = self.conn.total_changes
        self._binder.bind(final=final)

    def _committed(self) -> None:
        conn = self.conn
        if self.depth or self._relaxed or conn.in_transaction:
            return
        if conn.total_changes != self._changes:
            self._bind()
            limit = _WAL_HARD_LIMIT if self._deferred else _WAL_LIMIT
            if self._binder.log_bytes > limit:
                self._checkpoint(conn)

    def defer_checkpoints(self) -> None:
        """From now on a commit does not checkpoint the WAL when it passes
        ``_WAL_LIMIT`` (only past ``_WAL_HARD_LIMIT``): whoever commits for
        callers that wait calls :meth:`checkpoint_if_due` once they have
        their answer, so no caller waits for a checkpoint."""
        self._deferred = True

    def checkpoint_due(self) -> bool:
        return self._binder.log_bytes > _WAL_LIMIT

    def checkpoint_if_due(self) -> None:
        """Checkpoint the WAL if it passed ``_WAL_LIMIT``, unless inside a
        transaction. Every commit in it is bound first (a bookkeeping one's
        frames synced), as :meth:`settle` does; a checkpoint that fails fails
        nothing (:meth:`_checkpoint`)."""
        with self.lock:
            conn = self.conn
            if self.depth or self._relaxed or conn.in_transaction or not self.checkpoint_due():
                return
            with self.guard("binding the store before a checkpoint"):
                _sync(self._binder.wal)
                self._bind()
            self._checkpoint(conn)

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        """Move the WAL into the database file; the next commit then writes a
        new log from the file's start, over the old one (see ``WAL_KEEP``).
        The commits it holds are durable already: a checkpoint that fails (the
        disk full, an I/O error writing the database file) fails no write; the
        WAL stays as it was and the next commit tries again."""
        try:
            ((busy, _, _),) = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            if not busy:
                self._binder.follow(None, 0)  # what the WAL holds is in the file
        except Error as exc:
            error = translate(exc, "checkpointing the WAL", self.path, encrypted=True)
            log.warning(
                "event=wal_checkpoint_failed store=%s error=%s wal_bytes=%d",
                self.what,
                type(error).__name__,
                self._binder.log_bytes,
            )

    def guard(self, doing: str) -> Guard:
        """The one boundary where the driver's exceptions become ours; a write
        made outside :meth:`transaction` is bound when the block ends."""
        return Guard(self, doing)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several calls into one commit (one fsync).

        Every mutating method runs in its own transaction; inside this block
        they share one, committed when the block ends and rolled back
        entirely if it raises. Nested uses are savepoints: a call that fails
        inside the block is undone on its own. Do not ``await`` inside the
        block: other tasks of the same thread would join the transaction.
        """
        # guard()'s translation, written out: this runs for every store call.
        with self.lock:
            conn = self.conn
            depth = self.depth
            try:
                conn.execute("BEGIN IMMEDIATE" if depth == 0 else f"SAVEPOINT s{depth}")
            except Error as exc:
                raise translate(exc, "starting a transaction", self.path, encrypted=True) from exc
            self.depth = depth + 1
            try:
                yield
            except BaseException:
                self.depth = depth
                self._undo(depth)
                raise
            self.depth = depth
            try:
                conn.execute("COMMIT" if depth == 0 else f"RELEASE s{depth}")
            except Error as exc:
                self._undo(depth)
                raise translate(exc, "committing", self.path, encrypted=True) from exc
            if depth == 0:
                self._committed()

    def _undo(self, depth: int) -> None:
        conn = self.conn
        if not conn.in_transaction:
            return  # SQLite already rolled back (e.g. after SQLITE_FULL)
        try:
            if depth == 0:
                conn.execute("ROLLBACK")
            else:
                conn.execute(f"ROLLBACK TO s{depth}")
                conn.execute(f"RELEASE s{depth}")
        except Error:
            pass  # the original error is the one worth reporting

    @contextmanager
    def bookkeeping(self, doing: str) -> Iterator[None]:
        """A transaction whose commit need not survive a crash: WAL with
        ``synchronous=NORMAL`` commits without an fsync, and it is bound with
        the next durable commit (or at close). A crash before then drops it
        (storage.md §5.3, §5.4). Inside a caller's transaction it is simply
        part of that."""
        with self.lock:
            relax = self.depth == 0
            if relax:
                with self.guard(doing):
                    self.conn.execute("PRAGMA synchronous = NORMAL")
                self._relaxed = True
            try:
                with self.transaction():
                    yield
            finally:
                if relax:
                    self._relaxed = False
                    self._changes = self.conn.total_changes
                    with self.guard(doing):
                        self.conn.execute("PRAGMA synchronous = FULL")

    def settle(self, doing: str) -> None:
        """Checkpoint the WAL into the database file and empty it, unless inside
        a caller's transaction: what was deleted or replaced is then nowhere
        on the disk (storage.md §7). Every commit in the WAL is bound first
        (the bookkeeping ones synced): a checkpoint puts them in the file,
        where no crash can take them out again."""
        with self.lock:
            if self.depth or self.conn.in_transaction:
                return
            with self.guard(doing):
                _sync(self._binder.wal)
                self._bind()
                self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def close(self) -> None:
        """Bind what is committed (both records), then close; SQLite checkpoints
        the WAL into the file and deletes it, which changes no bound page."""
        with self.lock:
            if self._conn is None:
                return
            try:
                if not self._conn.in_transaction:
                    _sync(self._binder.wal)  # the bookkeeping commits' frames
                    self._bind(final=True)
            finally:
                self._conn.close()
                self._conn = None
                self._binder.close()


def _sync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StoreError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        os.fsync(fd)
    except OSError as exc:
        raise StoreError(f"cannot sync {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
