"""Opening a database: what is checked before SQLite reads it, and in what order.

storage.md §5 "Opening": the file is created owner-only if need be; a
plaintext store is converted first; its salt says whether the key is this
store's; every page of the file and every frame of its WAL is authenticated
(:mod:`._wal`, :func:`._database.unverified_page`) and matched against the
binding file (:mod:`._binding`), and a WAL's commits past the last bound one
are cut; only then does SQLite open it, with :data:`PRAGMAS`, check it
(``quick_check``) and migrate it. What comes out is the one open
:class:`~._database.Database` both stores stand on.
"""

from __future__ import annotations

import hmac
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import BinaryIO, Final

from onionpost.errors import StoreError
from onionpost.store import _binding, _wal
from onionpost.store._binding import Binder
from onionpost.store._database import (
    HMAC_LEN,
    PAGE_SIZE,
    SALT_LEN,
    SQLITE_MAGIC,
    WAL_KEEP,
    Database,
    Error,
    Keys,
    connect,
    tampered,
    translate,
    unverified_page,
)

__all__ = [
    "PRAGMAS",
    "apply_migrations",
    "binding_path",
    "check_head",
    "open_database",
    "suppress_driver",
    "verify_files",
    "wal_path",
]

#: What a store runs with (storage.md §5, step 5), after its key and SETTINGS.
PRAGMAS: Final = (
    # EXCLUSIVE before the first WAL access: no shared-memory index (-shm),
    # and the lock is never released while we are open.
    "locking_mode = EXCLUSIVE",
    "synchronous = FULL",
    # No checkpoint SQLite decides on its own: each one follows a binding of
    # every commit it moves into the file (Database.settle, Database._committed).
    "wal_autocheckpoint = 0",
    "foreign_keys = ON",
    "trusted_schema = OFF",
    # Sorts and temporary tables stay in memory, never in a temp file.
    "temp_store = MEMORY",
    # The page cache: at most 2 MiB of pages (SQLCipher's default is 8 MB),
    # so a daemon's memory stops growing with its store early (make soak).
    "cache_size = -2048",
    # Deleted rows are overwritten in the file, not only unlinked: a used
    # one-time prekey's private half, a deposited envelope (mailbox.md).
    "secure_delete = ON",
    # A checkpoint restarts the log over the old one's frames (see WAL_KEEP).
    f"journal_size_limit = {WAL_KEEP}",
)


def wal_path(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def binding_path(path: Path) -> Path:
    return path.with_name(path.name + _binding.SUFFIX)


def check_head(path: Path, head: bytes, size: int, keys: Keys) -> None:
    """An encrypted store starts with its salt, derived from the key: another
    key (or a file that is not a store) shows here, before SQLite reads it."""
    if not hmac.compare_digest(head, keys.salt):
        raise StoreError(
            f"the store key does not open {path}: it is another home's store (these "
            "secrets are not its own), not a store, or its first bytes were altered"
        )
    if size % PAGE_SIZE:
        raise tampered(path, f"it is {size} bytes, not a whole number of pages")


def verify_files(path: Path, keys: Keys) -> tuple[_wal.Log, list[bytes]]:
    """Before SQLite reads anything: the WAL's framing (:mod:`._wal`), then the
    authentication of every page of the database file and of every frame
    SQLite would read from the WAL. SQLite is never given a changed file to
    recover or checkpoint; a refused store is left as it was found. Returns
    the log and the tags of the file's pages (for the binding)."""
    wal = wal_path(path)
    tags: list[bytes] = []

    def pages(handle: BinaryIO) -> Iterator[tuple[int, bytes]]:
        for number, image in enumerate(iter(partial(handle.read, PAGE_SIZE), b""), start=1):
            tags.append(image[-HMAC_LEN:])
            yield number, image

    try:
        log = _wal.parse(wal.read_bytes() if wal.exists() else b"", PAGE_SIZE)
        if log.problem is not None:
            raise tampered(path, f"its write-ahead log {wal.name}: {log.problem}")
        with path.open("rb") as handle:
            bad = unverified_page(keys, pages(handle))
    except OSError as exc:
        raise StoreError(f"cannot read the store {path}: {exc.strerror}") from exc
    if bad is not None:
        raise tampered(path, f"page {bad} of {path.name} does not verify")
    bad = unverified_page(keys, log.pages)
    if bad is not None:
        raise tampered(path, f"a frame of {wal.name} for page {bad} does not verify")
    return log, tags


def _file_version(path: Path, keys: Keys) -> int:
    """``user_version`` of the database file alone (not its WAL), read from a
    copy (0600, in a private temporary directory): nothing of the store is
    touched. Only a store without a binding file pays for the copy."""
    try:
        with tempfile.TemporaryDirectory(prefix="onionpost-") as scratch:
            copy = Path(scratch) / "store"
            shutil.copyfile(path, copy)
            conn = connect(copy, keys)
            try:
                (version,) = conn.execute("PRAGMA user_version").fetchone()
            finally:
                conn.close()
    except OSError as exc:
        raise StoreError(f"cannot read the store {path}: {exc.strerror}") from exc
    except Error as exc:
        raise translate(exc, "reading its version", path, encrypted=True) from exc
    return int(version)


def apply_migrations(
    conn: sqlite3.Connection,
    path: Path,
    migrations: Sequence[Sequence[str]],
    version: int,
    target: int,
) -> None:
    """Apply ``migrations[version:target]``, each in its own transaction with
    its ``user_version`` bump and a foreign key check (a rebuilt table must
    still refer to what exists; SQLite's table rebuild, step 10). sqlite3
    errors are the caller's to translate."""
    for number in range(version, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[number]:
                conn.execute(statement)
            _check_references(conn, path, number + 1)
            conn.execute(f"PRAGMA user_version = {number + 1}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with suppress(Error):  # the first error is the one to report
                    conn.execute("ROLLBACK")
            raise


def _check_references(conn: sqlite3.Connection, path: Path, version: int) -> None:
    broken = conn.execute("PRAGMA foreign_key_check").fetchone()
    if broken is not None:
        raise StoreError(
            f"migrating the store {path} to version {version} broke a "
            f"reference from table {broken[0]}"
        )


def open_database(
    path: Path,
    keys: Keys,
    *,
    what: str,
    migrations: Sequence[Sequence[str]],
    bound_from: int,
    convert: Callable[[], None] | None = None,
    check_new: Callable[[], str | None] | None = None,
) -> Database:
    """Open (or create) the database at ``path``; storage.md §5 "Opening".

    ``what`` names it in messages ("store", "mailbox store"); ``migrations``
    are its schema's steps; a file of version ``bound_from`` or later has a
    binding file, and one without it is refused. ``convert`` turns a
    plaintext file (schema before encryption) into an encrypted one first;
    ``check_new`` names what an empty database file should not find beside
    it (or None).
    """
    size, head = _create(path, what)
    if head == SQLITE_MAGIC and convert is not None:
        convert()
        size, head = _create(path, what)
    wal, bind = wal_path(path), binding_path(path)
    records = _binding.read_records(bind, keys.binding)
    if size:
        check_head(path, head, size, keys)
        log, tags = verify_files(path, keys)
        if records is None and _file_version(path, keys) >= bound_from:
            raise tampered(path, f"its binding file {bind.name} is missing")
        found = _binding.match(keys.binding, tags, log, records)
        if found is None:
            raise tampered(
                path,
                f"its pages are not the state {bind.name} records: an earlier copy of "
                "it, or pages of one, were put back",
            )
        pages, cut = found
        kept = [c for c in log.commits if cut is None or c[2] <= cut]
    else:
        leftover = _leftover(wal, bind, check_new)
        if leftover is not None:
            raise tampered(path, f"it is empty, but {leftover} is a store's")
        pages, cut, kept = _binding.Pages(keys.binding), None, []
    if cut is not None:
        _cut(wal, cut)
    binder = _binding.Binder(
        bind, wal, keys.binding, page_size=PAGE_SIZE, pages=pages, records=records
    )
    binder.follow(_salts(wal) if kept else None, kept[-1][2] if kept else 0)
    try:
        conn = connect(path, keys)
    except Error as exc:
        raise StoreError(f"cannot open the {what} {path}: {exc}") from exc
    try:
        with suppress_driver(path, f"opening the {what}"):
            _start(conn, path, what, migrations, binder)
    except BaseException:
        conn.close()
        binder.close()
        raise
    return Database(conn, path, what, binder)


@contextmanager
def suppress_driver(path: Path, doing: str) -> Iterator[None]:
    try:
        yield
    except Error as exc:
        raise translate(exc, doing, path, encrypted=True) from exc


def _start(
    conn: sqlite3.Connection,
    path: Path,
    what: str,
    migrations: Sequence[Sequence[str]],
    binder: Binder,
) -> None:
    conn.execute(f"PRAGMA {PRAGMAS[0]}")
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal":
        raise StoreError(f"cannot put the {what} {path} in WAL mode")
    for pragma in PRAGMAS[1:]:
        conn.execute(f"PRAGMA {pragma}")
    conn.execute("BEGIN IMMEDIATE")  # take the exclusive lock now
    conn.execute("COMMIT")
    # Every page authenticated and bound; this is how they fit together.
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise tampered(path, problems[0])
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    target = len(migrations)
    if version > target:
        raise StoreError(
            f"the {what} {path} has schema version {version}, newer than this "
            f"onionpost knows ({target}); upgrade onionpost"
        )
    if version == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        raise StoreError(f"{path} is an SQLite database but not an onionpost {what}")
    try:
        apply_migrations(conn, path, migrations, version, target)
    finally:
        binder.bind()  # what committed (each migration is durable)
    # What the last run deleted but did not checkpoint (it died first: a
    # used prekey's private half) leaves the WAL now.
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()


def _create(path: Path, what: str) -> tuple[int, bytes]:
    """Create the file if need be, owner only (the WAL inherits its mode); its
    size and first bytes."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            return os.fstat(fd).st_size, os.pread(fd, SALT_LEN, 0)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot open the {what} {path}: {exc.strerror}") from exc


def _leftover(wal: Path, bind: Path, check_new: Callable[[], str | None] | None) -> str | None:
    """An empty database file is a new store, unless what a store leaves is
    beside it: its WAL, its binding file, or (``check_new``) its blobs."""
    try:
        if wal.exists() and wal.stat().st_size:
            return wal.name
        if bind.exists():
            return bind.name
    except OSError as exc:
        raise StoreError(f"cannot open the store {wal}: {exc.strerror}") from exc
    return None if check_new is None else check_new()


def _salts(wal: Path) -> bytes:
    with wal.open("rb") as handle:
        return handle.read(_wal.HEADER_LEN)[16:24]


def _cut(wal: Path, length: int) -> None:
    """Drop the WAL's commits after ``length`` (a commit without its record)."""
    try:
        fd = os.open(wal, os.O_WRONLY)
        try:
            os.ftruncate(fd, length)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot cut {wal}: {exc.strerror}") from exc
