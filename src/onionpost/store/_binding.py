"""The binding: every page of the database tied to one version of it (storage.md §5.4).

SQLCipher authenticates each page on its own: the HMAC covers the page's
content, its IV and its number, nothing that says *when* it was written. A
page of an earlier copy of the same store, put back at its own place in the
file or in the WAL, verifies, and ``quick_check`` often passes: an index
page from before a contact was removed finds the contact again. So the
store also keeps, in a small file of its own next to the database
(``store.sqlite-bind``, ``mailbox.db-bind``), a keyed hash of the whole
database as SQLite sees it, and refuses to open anything else.

What is bound
-------------
The *logical* database: for each page ``1..n`` (``n`` the size in pages
after the last commit SQLite reads), the image SQLite will read for it, the
newest frame of that page in the WAL if there is one, else the page of the
file. A page is represented by its SQLCipher HMAC (the image's last 32
bytes, verified before this module sees it: a different image at the same
place has a different tag). The hash is the set hash MSet-XOR-Hash (Clarke,
Devadas, van Dijk, Gassend, Suh, ASIACRYPT 2003) under the binding key::

    digest = XOR over p in 1..n of BLAKE2b-256(key=binding key, p (u32 BE) || tag_p)

which a commit updates for the pages it writes only. A checkpoint moves
frames from the WAL into the file and changes nothing of this: the digest is
the same before, during and after one, so SQLite may checkpoint whenever it
likes.

The file: two records of 512 bytes (each alone in a disk sector), each::

    counter (u64 BE) || n (u32 BE) || digest (32) || MAC (32), zero-padded
    MAC = BLAKE2b-256(key=binding key, b"onionpost bind v1\\x00" || counter || n || digest)

A record is written after every durable commit (the WAL already synced; the
record at ``counter % 2``, then ``fdatasync``), at the end of each opening,
and twice at close (both records then hold the final state).

At open
-------
The newest record whose MAC verifies is the binding (the other is only a
fallback for a record a power cut damaged while it was written). The logical
database is computed after each commit the WAL holds, starting from the file
alone; the store opens at the last commit whose digest and size are the
binding's, and the commits after it are cut from the WAL before SQLite reads
it: they were written by a commit whose record never followed (a crash
between the two; the call had not returned), or by someone else. When no
commit matches, the store is refused.

Crash safety: a record is written only after the commit it covers is in
the synced WAL, so whatever a crash leaves, the WAL holds the bound commit
(possibly followed by commits without a record), or a checkpoint has put it
in the file (which binds the same digest). The bookkeeping commits that skip
the fsync (storage.md §5.3) are bound by the next durable commit, or at
close; a crash before that drops them with the rest of the unbound tail.
"""

from __future__ import annotations

import hmac
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from onionpost.errors import NoSpaceError, StoreError
from onionpost.store import _crypto, _wal

__all__ = ["SUFFIX", "Binder", "Pages", "Record", "match", "read_records", "write_new"]

#: The binding file is the database's path with this appended.
SUFFIX: Final = "-bind"
TAG_LEN: Final = 32
_RECORD_AT: Final = 512  # record i at offset i * 512
_RECORDS: Final = 2
_BODY: Final = struct.Struct(">QI32s")
_CONTEXT: Final = b"onionpost bind v1\x00"
_ABSENT: Final = bytes(TAG_LEN)  # a page the database should have and has no image of
_FRAME: Final = _wal.FRAME_HEADER_LEN
_FRAME_HEAD: Final = struct.Struct(">II")  # a frame's page number, size after a commit
# Frames read at a time while following the WAL (a commit of a few texts
# writes about 20).
_READ_FRAMES: Final = 64


class Pages:
    """The logical database as page terms, and their set hash (see the module doc).

    Each page's term is kept (not its tag): a page written again costs one
    keyed hash, its new term, the old one being XORed out as it was kept.
    """

    def __init__(self, key: bytes, tags: Iterable[bytes] = ()) -> None:
        self._key = key
        self._hash = _crypto.keyed_hasher(key)
        self._terms: list[int] = []
        self._acc = 0
        for number, tag in enumerate(tags, start=1):
            term = self._term(number, tag)
            self._terms.append(term)
            self._acc ^= term

    def _term(self, number: int, tag: bytes) -> int:
        return int.from_bytes(self._hash(number.to_bytes(4, "big") + tag))

    def set(self, number: int, tag: bytes) -> None:
        terms = self._terms
        if number > len(terms):
            self.resize(number)
        term = self._term(number, tag)
        self._acc ^= terms[number - 1] ^ term
        terms[number - 1] = term

    def resize(self, count: int) -> None:
        terms = self._terms
        while len(terms) > count:
            self._acc ^= terms.pop()
        while len(terms) < count:
            term = self._term(len(terms) + 1, _ABSENT)
            terms.append(term)
            self._acc ^= term

    def apply(self, frames: Iterable[tuple[int, bytes]], size: int) -> None:
        """A commit: its frames' (page number, image or tag), then the database's size."""
        for number, image in frames:
            self.set(number, image[-TAG_LEN:])
        self.resize(size)

    @property
    def count(self) -> int:
        return len(self._terms)

    def digest(self) -> bytes:
        return self._acc.to_bytes(32)

    def copy(self) -> Pages:
        other = Pages(self._key)
        other._terms = list(self._terms)
        other._acc = self._acc
        return other


@dataclass(frozen=True, slots=True)
class Record:
    counter: int
    pages: int
    digest: bytes = field(repr=False)

    def matches(self, pages: Pages) -> bool:
        return self.pages == pages.count and hmac.compare_digest(self.digest, pages.digest())


def _encode(key: bytes, record: Record) -> bytes:
    body = _BODY.pack(record.counter, record.pages, record.digest)
    return (body + _crypto.keyed_hash(key, _CONTEXT + body)).ljust(_RECORD_AT, b"\x00")


def read_records(path: Path, key: bytes) -> list[Record] | None:
    """The records whose MAC verifies, newest first; None when there is no file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"cannot read {path}: {exc.strerror}") from exc
    records = []
    for i in range(_RECORDS):
        chunk = data[i * _RECORD_AT : i * _RECORD_AT + _BODY.size + 32]
        if len(chunk) < _BODY.size + 32:
            continue
        body, mac = chunk[: _BODY.size], chunk[_BODY.size :]
        if hmac.compare_digest(_crypto.keyed_hash(key, _CONTEXT + body), mac):
            records.append(Record(*_BODY.unpack(body)))
    return sorted(records, key=lambda r: r.counter, reverse=True)


def match(
    key: bytes, tags: list[bytes], log: _wal.Log, records: list[Record] | None
) -> tuple[Pages, int | None] | None:
    """Where the database and its WAL are the bound state: the pages there,
    and the WAL's length to cut it to (None: as it is). With ``records``
    None (a store not bound yet) the state after every commit. None when no
    commit is the newest verifying record's."""
    pages = Pages(key, tags)
    states = [(pages.copy(), 0)]
    read = 0
    for frames, size, end in log.commits:
        pages.apply(log.pages[read:frames], size)
        read = frames
        states.append((pages.copy(), end))
    if records is None:
        return pages, None
    full = states[-1][1]
    # The newest record that verifies: the other one is its predecessor, and
    # counts only when the newest was damaged (while being written).
    for state, end in reversed(states):
        if records and records[0].matches(state):
            return state, (None if end == full else end)
    return None


def write_new(path: Path, key: bytes, record: Record) -> None:
    """Create the binding file with ``record`` (temporary file, synced, renamed)."""
    tmp = path.with_name(path.name + ".tmp")
    data = bytearray(_RECORDS * _RECORD_AT)
    at = (record.counter % _RECORDS) * _RECORD_AT
    data[at : at + _RECORD_AT] = _encode(key, record)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except OSError as exc:
        raise _io_error(exc, f"write {path}") from exc


def _io_error(exc: OSError, doing: str) -> StoreError:
    if exc.errno is not None and exc.errno in (28, 122):  # ENOSPC, EDQUOT
        return NoSpaceError(f"the disk is full ({doing})")
    return StoreError(f"cannot {doing}: {exc.strerror}")


class Binder:
    """Keeps the binding file up to date while the database is open.

    It follows the WAL as SQLite appends to it (frames of the current log
    after the last commit it read, to the last commit frame), so each
    durable commit costs the BLAKE2b of the pages it wrote and one record.
    """

    def __init__(
        self,
        path: Path,
        wal: Path,
        key: bytes,
        *,
        page_size: int,
        pages: Pages,
        records: list[Record] | None,
    ) -> None:
        self.path = path
        self._page_size = page_size
        self.wal = wal
        self._key = key
        self._pages = pages
        self._counter = records[0].counter if records else 0
        # The digest last written; None while there is no file.
        self._bound = None if records is None else b""
        self._salts: bytes | None = None
        self._offset = 0
        self._fd: int | None = None

    @property
    def log_bytes(self) -> int:
        """How far into the WAL the bound commits reach."""
        return self._offset

    def follow(self, salts: bytes | None, offset: int) -> None:
        """The WAL SQLite opened: its salts, and where its last commit ends."""
        self._salts, self._offset = salts, offset

    def _advance(self) -> None:
        """Take in the commits SQLite appended since the last one taken in.

        The WAL file may be longer than its log: after a checkpoint SQLite
        writes the next log over the old one (:mod:`onionpost.store._database`),
        so the frames past the new log's end are the old log's, with other
        salts. They are read a few at a time until one is not of this log, so
        a commit costs the reading of its own frames, not of the whole file.
        """
        try:
            fd = os.open(self.wal, os.O_RDONLY)
        except FileNotFoundError:
            return
        try:
            header = os.pread(fd, _wal.HEADER_LEN, 0)
            if len(header) < _wal.HEADER_LEN:
                self._salts, self._offset = None, 0
                return
            if header[16:24] != self._salts:  # a new log (after a checkpoint)
                self._salts, self._offset = header[16:24], _wal.HEADER_LEN
            frame_len = _FRAME + self._page_size
            salts = self._salts
            pending: list[tuple[int, bytes]] = []
            done = 0  # where the last commit taken in ends, from self._offset
            read = 0  # bytes read from self._offset
            while True:
                data = os.pread(fd, _READ_FRAMES * frame_len, self._offset + read)
                at = 0
                while at + frame_len <= len(data):
                    if data[at + 8 : at + 16] != salts:
                        break
                    number, size_after = _FRAME_HEAD.unpack_from(data, at)
                    at += frame_len
                    pending.append((number, data[at - TAG_LEN : at]))
                    if size_after:
                        self._pages.apply(pending, size_after)
                        pending = []
                        done = read + at
                read += at
                if at < _READ_FRAMES * frame_len:
                    break  # the log's end: a frame of another log, or the file's
        finally:
            os.close(fd)
        self._offset += done

    def bind(self, *, final: bool = False) -> None:
        """Take in the commits SQLite wrote since, and record the state when it
        changed (``final``: in both records). The commits must be durable."""
        self._advance()
        digest = self._pages.digest()
        if self._bound is not None and hmac.compare_digest(digest, self._bound) and not final:
            return
        for _ in range(2 if final else 1):
            self._counter += 1
            record = Record(self._counter, self._pages.count, digest)
            if self._bound is None:
                write_new(self.path, self._key, record)
            else:
                self._write(record)
            self._bound = digest

    def _write(self, record: Record) -> None:
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
            os.pwrite(
                self._fd, _encode(self._key, record), (record.counter % _RECORDS) * _RECORD_AT
            )
            os.fdatasync(self._fd)
        except OSError as exc:
            raise _io_error(exc, f"write {self.path}") from exc

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
