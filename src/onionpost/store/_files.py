"""Encrypted file blobs in ``files/``: fixed-size sealed records, random access.

A blob holds a file's content as consecutive records of
:data:`~onionpost.limits.FILE_CHUNK_SIZE` plaintext bytes (the last one
shorter), each sealed on its own::

    record i at byte offset i * RECORD_SIZE:
        nonce (24) || XChaCha20-Poly1305(seal_key, nonce, plaintext_i, AD_i) (len + 16)
    AD_i = b"onionpost file v1\\x00" || direction ("in"/"out") || contact_id (u64 BE)
           || file id (16) || i (u64 BE)
    RECORD_SIZE = FILE_CHUNK_SIZE + 40

so reading the chunk at a wire offset (a multiple of FILE_CHUNK_SIZE) reads
and opens exactly one record, and a record moved to another position or
another file does not open: a blob put in the place of another (renamed,
or copied from another home) fails on its first record. A blob does not
know its own length: the store's row does, and every reader checks the
record count against it, so a blob cut short at a record boundary is caught
too.

A blob's file name is ``hex(BLAKE2b(key=names_key, direction || contact_id
(u64 BE) || file id, 32 bytes))``: 64 hex digits that say nothing of the
contact, the direction or the id to whoever lacks the key (storage.md §6).

Incoming blobs grow a record per chunk. Their records are not fsynced one by
one: :meth:`Blob.scan` re-opens every record on resume (after a restart) and
cuts the blob after the last one that authenticates, which is the whole of
the crash recovery; the blob is fsynced once, before the file is committed.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from onionpost.errors import ConfigError, FileTooLargeError, NoSpaceError, StoreError
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.store import _crypto
from onionpost.store._database import Keys

__all__ = [
    "BLOB_NAME",
    "LEGACY_BLOB_NAME",
    "RECORD_SIZE",
    "Blob",
    "digest_of",
    "new_hasher",
    "no_space",
]

RECORD_SIZE: Final = FILE_CHUNK_SIZE + _crypto.SEAL_OVERHEAD
_AD_CONTEXT: Final = b"onionpost file v1\x00"
_NO_SPACE: Final = frozenset({errno.ENOSPC, errno.EDQUOT})
#: A blob's name (the keyed hash), and one of a store before version 3.
BLOB_NAME: Final = re.compile(r"[0-9a-f]{64}")
LEGACY_BLOB_NAME: Final = re.compile(r"(in|out)-[0-9]+-[0-9a-f]{32}")


def new_hasher() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=64)


def digest_of(source: Path, max_size: int) -> bytes:
    """The BLAKE2b-512 of the file ``source``, as :meth:`Blob.copy_from` reports
    it (to tell a file queued again from another); errors as there."""
    try:
        src = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
    try:
        _check_source(source, os.fstat(src), max_size)
        hasher = new_hasher()
        while True:
            try:
                data = _read_full(src, FILE_CHUNK_SIZE)
            except OSError as exc:
                raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
            hasher.update(data)
            if len(data) < FILE_CHUNK_SIZE:
                return hasher.digest()
    finally:
        os.close(src)


def no_space(exc: OSError) -> bool:
    return exc.errno in _NO_SPACE


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _io_error(exc: OSError, doing: str) -> StoreError:
    if no_space(exc):
        return NoSpaceError(f"the disk is full ({doing})")
    return StoreError(f"cannot {doing}: {exc.strerror}")


def record_count(size: int) -> int:
    return -(-size // FILE_CHUNK_SIZE)


@dataclass(frozen=True, slots=True)
class Blob:
    """One file's encrypted blob, bound to its direction, contact and id."""

    path: Path
    key: bytes = field(repr=False)
    label: bytes  # direction || contact_id || file id, part of every record's AD

    @staticmethod
    def _label(direction: str, contact_id: int, file_id: bytes) -> bytes:
        return direction.encode("ascii") + contact_id.to_bytes(8, "big") + file_id

    @classmethod
    def name(cls, keys: Keys, direction: str, contact_id: int, file_id: bytes) -> str:
        """The file name of this blob: its label's keyed hash, in hex."""
        return _crypto.keyed_hash(keys.names, cls._label(direction, contact_id, file_id)).hex()

    @classmethod
    def at(
        cls, files_dir: Path, keys: Keys, direction: str, contact_id: int, file_id: bytes
    ) -> Blob:
        label = cls._label(direction, contact_id, file_id)
        return cls(files_dir / cls.name(keys, direction, contact_id, file_id), keys.seal, label)

    @classmethod
    def legacy(
        cls, files_dir: Path, store_key: bytes, direction: str, contact_id: int, file_id: bytes
    ) -> Blob:
        """A blob as a store before version 3 wrote it: named in clear, sealed
        with the store key itself."""
        label = cls._label(direction, contact_id, file_id)
        return cls(files_dir / f"{direction}-{contact_id}-{file_id.hex()}", store_key, label)

    def _ad(self, index: int) -> bytes:
        return _AD_CONTEXT + self.label + index.to_bytes(8, "big")

    def _open(self, index: int, sealed: bytes) -> bytes:
        return _crypto.open_sealed(self.key, sealed, self._ad(index), what="a file record")

    # -- writing ------------------------------------------------------------------

    def create(self) -> None:
        """An empty blob (0600); an existing one is emptied."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
            os.close(fd)
        except OSError as exc:
            raise _io_error(exc, "create a file blob") from exc

    def write_record(self, index: int, data: bytes) -> None:
        """Seal ``data`` as record ``index`` and write it in place.

        On any failure the blob is cut back to ``index`` records, so nothing
        of this record remains; :class:`NoSpaceError` when the disk is full.
        """
        sealed = _crypto.seal(self.key, data, self._ad(index))
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
        except OSError as exc:
            raise _io_error(exc, "open a file blob") from exc
        try:
            _pwrite_all(fd, sealed, index * RECORD_SIZE)
        except OSError as exc:
            # If even this fails, the scan on resume cuts the unreadable tail.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, index * RECORD_SIZE)
            raise _io_error(exc, "write a file chunk") from exc
        finally:
            os.close(fd)

    def truncate(self, records: int) -> None:
        """Cut the blob after its first ``records`` records."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
            try:
                os.ftruncate(fd, records * RECORD_SIZE)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _io_error(exc, "cut a file blob") from exc

    def sync(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise _io_error(exc, "sync a file blob") from exc

    def delete(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise _io_error(exc, "delete a file blob") from exc

    def copy_from(self, source: Path, max_size: int) -> tuple[int, bytes]:
        """Encrypt the file ``source`` into this (new) blob; (size, BLAKE2b-512).

        Written to a temporary name and renamed when complete and synced.
        :class:`ConfigError` when the source cannot be read,
        :class:`FileTooLargeError` when it holds more than ``max_size`` bytes.
        """
        try:
            # O_NONBLOCK: a FIFO given as the source must not hang the open.
            src = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
        tmp = self.path.with_name(f".tmp-{_crypto.random_bytes(8).hex()}")
        try:
            _check_source(source, os.fstat(src), max_size)
            hasher = new_hasher()
            size = 0
            try:
                out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                raise _io_error(exc, "create a file blob") from exc
            try:
                index = 0
                while True:
                    try:
                        data = _read_full(src, FILE_CHUNK_SIZE)
                    except OSError as exc:
                        raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc
                    if not data:
                        break
                    size += len(data)
                    if size > max_size:
                        raise FileTooLargeError(f"the file grew past the maximum of {max_size}")
                    hasher.update(data)
                    sealed = _crypto.seal(self.key, data, self._ad(index))
                    try:
                        _pwrite_all(out, sealed, index * RECORD_SIZE)
                    except OSError as exc:
                        raise _io_error(exc, "copy a file into the store") from exc
                    index += 1
                    if len(data) < FILE_CHUNK_SIZE:
                        break
                try:
                    os.fsync(out)
                except OSError as exc:
                    raise _io_error(exc, "sync a file blob") from exc
            finally:
                os.close(out)
            try:
                os.replace(tmp, self.path)
            except OSError as exc:
                raise _io_error(exc, "store a file blob") from exc
            return size, hasher.digest()
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(src)

    def recrypt_from(self, old: Blob, size: int) -> None:
        """Write ``old``'s records, opened and sealed again for this blob, to
        this blob's path (a temporary file, synced, renamed). Records are
        copied while they authenticate, at most ``size`` bytes' worth: a blob
        damaged or cut short stays so, and the store's checks report it."""
        tmp = self.path.with_name(f".tmp-{_crypto.random_bytes(8).hex()}")
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise _io_error(exc, "create a file blob") from exc
        try:
            try:
                src = os.open(old.path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                src = None
            except OSError as exc:
                raise _io_error(exc, "read a file blob") from exc
            try:
                for index in range(record_count(size) if src is not None else 0):
                    assert src is not None
                    plain_len = min(FILE_CHUNK_SIZE, size - index * FILE_CHUNK_SIZE)
                    sealed = os.pread(src, plain_len + _crypto.SEAL_OVERHEAD, index * RECORD_SIZE)
                    try:
                        data = old._open(index, sealed)
                    except StoreError:
                        break
                    _pwrite_all(
                        out, _crypto.seal(self.key, data, self._ad(index)), index * RECORD_SIZE
                    )
                os.fsync(out)
            finally:
                if src is not None:
                    os.close(src)
            os.replace(tmp, self.path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise _io_error(exc, "re-encrypt a file blob") from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            os.close(out)

    # -- reading ------------------------------------------------------------------

    def read_record(self, index: int, size: int) -> bytes:
        """The plaintext of record ``index`` of a blob holding ``size`` bytes."""
        plain_len = min(FILE_CHUNK_SIZE, size - index * FILE_CHUNK_SIZE)
        if index < 0 or plain_len < 0:
            raise StoreError("a file record outside the file")
        if plain_len == 0:
            return b""
        want = plain_len + _crypto.SEAL_OVERHEAD
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
            try:
                sealed = os.pread(fd, want, index * RECORD_SIZE)
            finally:
                os.close(fd)
        except FileNotFoundError as exc:
            raise StoreError(f"a file blob is missing from the store ({self.path.name})") from exc
        except OSError as exc:
            raise _io_error(exc, "read a file blob") from exc
        if len(sealed) != want:
            raise StoreError(f"a file blob is truncated ({self.path.name})")
        return self._open(index, sealed)

    def held_at_most(self) -> int:
        """The plaintext bytes this blob's length allows (0 when it is missing):
        whole records count FILE_CHUNK_SIZE, a last partial one what it has
        beyond a record's overhead. Nothing is opened; :meth:`scan` is exact."""
        try:
            length = os.lstat(self.path).st_size
        except FileNotFoundError:
            return 0
        except OSError as exc:
            raise _io_error(exc, "read a file blob") from exc
        records, tail = divmod(length, RECORD_SIZE)
        return records * FILE_CHUNK_SIZE + max(0, tail - _crypto.SEAL_OVERHEAD)

    def scan(self, size: int) -> tuple[int, hashlib.blake2b]:
        """Resume an incoming blob: (bytes held, BLAKE2b state over them).

        Opens record after record; the first that is missing, short or does
        not authenticate ends the scan, and the blob is cut there (a torn
        write from before a crash). A missing blob is created empty.
        """
        hasher = new_hasher()
        if not self.path.exists():
            self.create()
            return 0, hasher
        held = 0
        index = 0
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            raise _io_error(exc, "open a file blob") from exc
        try:
            while held < size:
                plain_len = min(FILE_CHUNK_SIZE, size - held)
                sealed = os.pread(fd, plain_len + _crypto.SEAL_OVERHEAD, index * RECORD_SIZE)
                if len(sealed) != plain_len + _crypto.SEAL_OVERHEAD:
                    break
                try:
                    data = self._open(index, sealed)
                except StoreError:
                    break
                hasher.update(data)
                held += len(data)
                index += 1
            os.ftruncate(fd, index * RECORD_SIZE)
        except OSError as exc:
            raise _io_error(exc, "read a file blob") from exc
        finally:
            os.close(fd)
        return held, hasher

    def export(self, size: int, dest_fd: int) -> bytes:
        """Decrypt all ``size`` bytes to ``dest_fd``; the BLAKE2b-512 of what was written."""
        hasher = new_hasher()
        for index in range(record_count(size)):
            data = self.read_record(index, size)
            hasher.update(data)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(dest_fd, view) :]
            except OSError as exc:
                raise _io_error(exc, "write the exported file") from exc
        return hasher.digest()


def _check_source(source: Path, info: os.stat_result, max_size: int) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{source} is not a regular file")
    if info.st_size > max_size:
        raise FileTooLargeError(f"the file is {info.st_size} bytes; the maximum is {max_size}")


def _read_full(fd: int, n: int) -> bytes:
    """Up to ``n`` bytes, fewer only at the end of the file."""
    parts: list[bytes] = []
    want = n
    while want:
        data = os.read(fd, want)
        if not data:
            break
        parts.append(data)
        want -= len(data)
    return b"".join(parts)
