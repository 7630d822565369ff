"""A plaintext store (schema 1 or 2) becomes an encrypted one (schema 3), safely.

Before version 3, ``store.sqlite`` was a plaintext SQLite file: contact
names, addresses, client-authorization keys, times and states in clear, row
contents sealed with the store key itself, blobs named
``<direction>-<contact id>-<file id hex>``. :func:`convert` writes the same
store as version 3 (storage.md §5-6), in this order:

1. Open the plaintext file (exclusive lock, WAL) and check it (``quick_check``);
   bring it to version 2 (``_schema.apply``); check the store key against its
   key check (a wrong key is refused here, before anything is written).
2. Build ``store.sqlite.new``: SQLCipher's ``sqlcipher_export`` copies every
   table, index, view and AUTOINCREMENT counter into the encrypted file,
   attached to the same connection. A second connection to the new file then
   opens each row's ``content`` with the store key and seals it again with
   the seal subkey (same associated data), and applies version 3.
3. Re-encrypt every blob a row refers to under its new name and key
   (temporary file, synced, renamed); the old blobs stay where they are.
4. Close the plaintext store (SQLite checkpoints its WAL into it and deletes
   the WAL), sync the new file, rename it over ``store.sqlite``, sync the
   directory.

Nothing of the plaintext store changes before the rename (other than its own
upgrade to version 2, itself one transaction): a crash before it leaves the
plaintext store, and the next open starts again from step 1, replacing what
a previous attempt left; after it, the store is encrypted and the old blobs
are orphans, which the store deletes when it opens (``Store._sweep_orphans``, in ``_store.py``).
Whatever the plaintext file held stays in the file system's free blocks
until they are reused (storage.md §7).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from onionpost.errors import StoreError
from onionpost.store import _crypto, _database, _schema
from onionpost.store._database import Keys
from onionpost.store._files import Blob

__all__ = ["convert"]

# (table, its rows' key and content, how to store a content again)
_RESEAL = (
    (
        "messages",
        "SELECT seq, direction, contact_id, id, content FROM messages",
        "UPDATE messages SET content = ? WHERE seq = ?",
    ),
    (
        "transfers",
        "SELECT rowid, 'in', contact_id, id, content FROM transfers",
        "UPDATE transfers SET content = ? WHERE rowid = ?",
    ),
)


def _sync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _leftovers(new: Path) -> list[Path]:
    return [new, new.with_name(new.name + "-journal"), new.with_name(new.name + "-wal")]


def convert(path: Path, files_dir: Path, store_key: bytes, keys: Keys) -> None:
    """Turn the plaintext store at ``path`` into an encrypted one (see the module doc)."""
    new = path.with_name(path.name + ".new")
    try:
        for leftover in _leftovers(new):
            leftover.unlink(missing_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot remove {new}: {exc.strerror}") from exc
    doing = "upgrading the store to an encrypted one"
    try:
        plain = _database.connect(path, None)
    except _database.Error as exc:
        raise _database.translate(exc, doing, path, encrypted=False) from exc
    try:
        try:
            _prepare(plain, path, store_key)
            plain.execute(
                "ATTACH DATABASE ? AS enc KEY ?", (str(new), _database.encrypted_key(keys))
            )
            _database.configure(plain, "enc")
            plain.execute("SELECT sqlcipher_export('enc')")
            plain.execute("DETACH DATABASE enc")
            _finish(new, path, store_key, keys)
        except _database.Error as exc:
            raise _database.translate(exc, doing, path, encrypted=False) from exc
        blobs = _blobs(new, keys, path)
        for direction, contact_id, file_id, size in blobs:
            Blob.at(files_dir, keys, direction, contact_id, file_id).recrypt_from(
                Blob.legacy(files_dir, store_key, direction, contact_id, file_id), size
            )
    except BaseException:
        plain.close()
        for leftover in _leftovers(new):
            leftover.unlink(missing_ok=True)
        raise
    try:
        plain.close()  # checkpoints the plaintext WAL into the file, deletes it
        _sync_path(new)
        if files_dir.exists():
            _sync_path(files_dir, os.O_RDONLY | os.O_DIRECTORY)
        os.replace(new, path)
        _sync_path(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    except _database.Error as exc:
        raise _database.translate(exc, doing, path, encrypted=False) from exc
    except OSError as exc:
        raise StoreError(f"cannot replace {path} by its encrypted copy: {exc.strerror}") from exc


def _prepare(conn: sqlite3.Connection, path: Path, store_key: bytes) -> None:
    """Lock, check and upgrade the plaintext store to version 2; check the key."""
    conn.execute("PRAGMA locking_mode = EXCLUSIVE")
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.execute("PRAGMA temp_store = MEMORY")
    # Read only, until the file is known to be a store of ours.
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    (tables,) = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    if version > _schema.PLAINTEXT_VERSION:
        # Never written by onionpost: a store of version 3 is encrypted. A
        # plaintext one in its place was put there to be trusted.
        raise _database.tampered(path, f"a plaintext store of schema version {version}")
    if version == 0 and tables:
        raise StoreError(f"{path} is an SQLite database but not an onionpost store")
    (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal":
        raise StoreError(f"cannot put the store {path} in WAL mode")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("BEGIN IMMEDIATE")  # take the exclusive lock now
    conn.execute("COMMIT")
    problems = [row[0] for row in conn.execute("PRAGMA quick_check(5)")]
    if problems != ["ok"]:
        raise StoreError(f"the store {path} is corrupt: {problems[0]}")
    _schema.apply(conn, path, version, _schema.PLAINTEXT_VERSION)
    if version == 0:
        return  # an empty database: nothing sealed yet, nothing to check
    row = conn.execute("SELECT value FROM meta WHERE key = 'key_check'").fetchone()
    wrong_key = StoreError(f"the store key does not open {path} (secrets of another home?)")
    if row is None:
        raise wrong_key
    try:
        check = _crypto.open_sealed(
            store_key, row[0], _database.LEGACY_KEY_CHECK_AD, what="the store's key check"
        )
    except StoreError as exc:
        raise wrong_key from exc
    if check != _database.LEGACY_KEY_CHECK:
        raise wrong_key


def _finish(new: Path, path: Path, store_key: bytes, keys: Keys) -> None:
    """In the exported copy: every row's content sealed with the seal subkey, version 3."""
    conn = _database.connect(new, keys)
    try:
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(f"PRAGMA user_version = {_schema.PLAINTEXT_VERSION}")
        for table, select, update in _RESEAL:
            for rowid, direction, contact_id, message_id, content in conn.execute(select):
                ad = _database.row_ad(table, direction, contact_id, message_id)
                try:
                    plaintext = _crypto.open_sealed(store_key, content, ad, what="a row")
                except StoreError:
                    continue  # damaged already: it stays so, and integrity_check says so
                conn.execute(update, (_crypto.seal(keys.seal, plaintext, ad), rowid))
        conn.execute("COMMIT")
        # Version 3 only: the store's own opening applies the later ones, and
        # creates the binding file with the version that needs it.
        _schema.apply(conn, path, _schema.PLAINTEXT_VERSION, _schema.PLAINTEXT_VERSION + 1)
    finally:
        conn.close()


def _blobs(new: Path, keys: Keys, path: Path) -> list[tuple[str, int, bytes, int]]:
    """(direction, contact id, file id, size) of every blob a row refers to."""
    try:
        conn = _database.connect(new, keys)
        try:
            rows = conn.execute(
                "SELECT direction, contact_id, id, size FROM messages WHERE kind = 'file' "
                "UNION ALL SELECT 'in', contact_id, id, size FROM transfers"
            ).fetchall()
        finally:
            conn.close()
    except _database.Error as exc:
        raise _database.translate(exc, "listing file blobs", path, encrypted=True) from exc
    return [(str(d), int(c), bytes(i), int(s)) for d, c, i, s in rows]
