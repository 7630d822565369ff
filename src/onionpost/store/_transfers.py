"""Files in transit: those arriving from contacts, and ours read out to send or export.

A part of :class:`~onionpost.store.Store` over its
:class:`~onionpost.store._database.Database`. A file offered to us gets a
``transfers`` row (name, content type and hash sealed, storage.md §5.2) and
a blob in ``files/`` that grows a sealed record per chunk
(:mod:`onionpost.store._files`); whole, its BLAKE2b-512 checked, it becomes
an incoming ``messages`` row. What one contact can make us hold (storage.md
§5.3): the disk budget charges bytes stored, never sizes announced; the
caller's quotas bound a contact's files arriving at once and their announced
sizes; idle transfers are deleted. A chunk's byte count is committed without
an fsync of its own and re-derived from the blob at open. Names that peers
chose reach the disk only through :func:`onionpost.names.safe_file_name`.
"""

from __future__ import annotations

import hmac
import os
import shutil
import sqlite3
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from onionpost.errors import (
    ConfigError,
    FileTooLargeError,
    HashMismatchError,
    LocalProtocolError,
    NoSpaceError,
    NotFoundError,
    QuotaError,
    StoreError,
)
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.names import safe_file_name
from onionpost.proto.evidence import Event, file_entry
from onionpost.store import _crypto
from onionpost.store._contacts import Contacts
from onionpost.store._database import Database, Keys
from onionpost.store._evidence import EvidenceLog
from onionpost.store._files import Blob, new_hasher, record_count
from onionpost.store._records import Direction, Kind, State
from onionpost.store._rows import HASH_LEN, Rows, check_id, insert_message

__all__ = ["FILES_SIZE", "Arriving", "Transfers"]

FILES_SIZE: Final = (
    "SELECT coalesce(sum(size), 0) FROM messages INDEXED BY messages_files "
    "WHERE kind = 'file' AND copy_dropped_ms IS NULL"
)


@dataclass(slots=True)
class Arriving:
    """An incoming file being written: where it is, and the hash so far."""

    contact_id: int
    id: bytes
    size: int
    blake2b: bytes
    offset: int
    hasher: Any
    blob: Blob


class Transfers:
    """Files arriving, and files read out; see the module docstring."""

    def __init__(  # noqa: PLR0917 - the parts it works with
        self,
        database: Database,
        files_dir: Path,
        keys: Keys,
        rows: Rows,
        contacts: Contacts,
        evidence: EvidenceLog,
    ) -> None:
        self._database = database
        self._lock = database.lock
        self._guard = database.guard
        self._files = files_dir
        self._keys = keys
        self._rows = rows
        self._contacts = contacts
        self._evidence = evidence
        self._cached: dict[tuple[int, bytes], Arriving] = {}

    def __repr__(self) -> str:
        return f"Transfers({len(self._cached)} cached)"

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    def forget_cached(self) -> None:
        """Drop what is held in memory of the files arriving (the store closed)."""
        self._cached.clear()

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

    def transfer_count(self, contact_id: int) -> int:
        """Files from ``contact_id`` still arriving (begun, not finished,
        cancelled or expired)."""
        with self._lock, self._guard("reading file transfers"):
            (count,) = self._db.execute(
                "SELECT count(*) FROM transfers WHERE contact_id = ?", (contact_id,)
            ).fetchone()
        return int(count)

    def arriving(self, file_id: bytes, contact_id: int | None) -> Arriving | None:
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

    def _load_transfer(self, row: Sequence[Any]) -> Arriving:
        contact_id, file_id, size, sealed = row
        cached = self._cached.get((contact_id, file_id))
        if cached is not None:
            return cached
        _, _, digest, _ = self._rows.unseal(
            ("transfers", Direction.IN, contact_id, file_id), Kind.FILE, sealed
        )
        blob = Blob.at(self._files, self._keys, Direction.IN, contact_id, file_id)
        # Recompute the running hash over what is already stored: simple, and
        # correct after any restart or crash.
        offset, hasher = blob.scan(size)
        with self._database.transaction():
            self._db.execute(
                "UPDATE transfers SET received = ? WHERE contact_id = ? AND id = ?",
                (offset, contact_id, file_id),
            )
        transfer = Arriving(contact_id, file_id, size, digest, offset, hasher, blob)
        self._cached[(contact_id, file_id)] = transfer
        return transfer

    def _discard(self, transfer: Arriving) -> None:
        self._cached.pop((transfer.contact_id, transfer.id), None)
        with self._database.transaction():
            self._db.execute(
                "DELETE FROM transfers WHERE contact_id = ? AND id = ?",
                (transfer.contact_id, transfer.id),
            )
        transfer.blob.delete()

    def begin_file(  # noqa: PLR0917 - a file offer's fields, then the bounds
        self,
        contact_id: int,
        file_id: bytes,
        created_ms: int,
        name: str,
        size: int,
        blake2b: bytes,
        content_type: str,
        now: int,
        max_size: int,
        max_disk: int,
        *,
        max_transfers: int | None = None,
        max_transfer_bytes: int | None = None,
        label: str = "",
    ) -> int:
        """Prepare to receive a file a contact offered; the offset to ask the
        sender for. The file is ``file_id``, created at ``created_ms``,
        ``name``d, ``size`` bytes long, its BLAKE2b-512 ``blake2b``, of
        ``content_type``, labelled ``label`` (what the offer says: spec.md §6.2).

        0 for a new file; the bytes already stored when resuming; ``size``
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
        - :class:`NoSpaceError` when ``size`` does not fit in what is
          left of ``max_disk`` now (the budget charges the files stored, sent
          and received, and the bytes arriving files hold so far: see
          :meth:`disk_used`), or does not fit on the disk.

        Offers that each fit may together exceed the budget; pass
        ``max_disk`` to :meth:`write_file_chunk` too, which holds the line.
        """
        check_id(file_id, "a file id")
        if not isinstance(blake2b, bytes) or len(blake2b) != HASH_LEN:
            raise ConfigError(f"a file's BLAKE2b-512 is {HASH_LEN} bytes")
        if not isinstance(size, int) or size < 0 or not isinstance(content_type, str):
            raise ConfigError("a file's size is a count of bytes and its content type text")
        if not isinstance(label, str):
            raise ConfigError("a file's label is text")
        if size > max_size:
            raise FileTooLargeError(f"the offered file is {size} bytes; the maximum is {max_size}")
        with self._lock, self._guard("starting a file transfer"):
            self._contacts.require(contact_id, active=False)
            done = self._db.execute(
                "SELECT 1 FROM messages WHERE direction = 'in' AND contact_id = ? AND id = ?",
                (contact_id, file_id),
            ).fetchone()
            if done is not None:
                return size
            transfer = self.arriving(file_id, contact_id)
            if transfer is not None:
                if transfer.size == size and hmac.compare_digest(transfer.blake2b, blake2b):
                    with self._database.transaction():
                        self._db.execute(
                            "UPDATE transfers SET updated_ms = max(updated_ms, ?) "
                            "WHERE contact_id = ? AND id = ?",
                            (now, contact_id, file_id),
                        )
                    return transfer.offset
                self._discard(transfer)  # another file under the same id: start again
            self._check_quotas(contact_id, size, max_transfers, max_transfer_bytes)
            used = self._disk_used()
            if used + size > max_disk:
                raise NoSpaceError(
                    f"the offered file ({size} bytes) would exceed the disk budget "
                    f"({used} of {max_disk} bytes in use)"
                )
            try:
                free = shutil.disk_usage(self._files).free
            except OSError as exc:
                raise StoreError(f"cannot check free space: {exc.strerror}") from exc
            if size + record_count(size) * _crypto.SEAL_OVERHEAD > free:
                raise NoSpaceError(f"the offered file ({size} bytes) does not fit on the disk")
            content = self._rows.seal(
                ("transfers", Direction.IN, contact_id, file_id),
                [name, content_type, blake2b, label],
            )
            blob = Blob.at(self._files, self._keys, Direction.IN, contact_id, file_id)
            blob.create()
            try:
                with self._database.transaction():
                    self._db.execute(
                        "INSERT INTO transfers (contact_id, id, created_ms, started_ms, size, "
                        "content, received, updated_ms) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
                        (contact_id, file_id, created_ms, now, size, content, now),
                    )
            except BaseException:
                blob.delete()
                raise
            self._cached[(contact_id, file_id)] = Arriving(
                contact_id, file_id, size, blake2b, 0, new_hasher(), blob
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
            transfer = self.arriving(file_id, contact_id)
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
                with self._database.bookkeeping("writing a file chunk"):
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

    def finish_file(self, file_id: bytes, now: int, *, contact_id: int | None = None) -> bool:
        """Check the whole file's BLAKE2b-512 and commit it to the inbox.

        True when the file is now complete; False when it already was.
        :class:`HashMismatchError` (and the data is deleted) on a mismatch.
        """
        with self._lock, self._guard("finishing a file transfer"):
            transfer = self.arriving(file_id, contact_id)
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
            fields = self._rows.unseal(
                ("transfers", Direction.IN, transfer.contact_id, file_id), Kind.FILE, row[1]
            )
            content = self._rows.seal(
                ("messages", Direction.IN, transfer.contact_id, file_id), fields
            )
            with self._database.transaction():
                insert_message(
                    self._db,
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
                    },
                )
                self._db.execute(
                    "DELETE FROM transfers WHERE contact_id = ? AND id = ?",
                    (transfer.contact_id, file_id),
                )
                name, content_type, digest, label = fields
                counterparty = self._evidence.counterparty(transfer.contact_id)
                entry = file_entry(
                    Event.RECEIVED,
                    now,
                    counterparty,
                    file_id,
                    row[0],
                    name,
                    transfer.size,
                    digest,
                    content_type,
                    label,
                )
                self._evidence.append((entry,))
            self._cached.pop((transfer.contact_id, file_id), None)
            return True

    def cancel_file(self, file_id: bytes, *, contact_id: int | None = None) -> bool:
        """Drop an incoming file that is still arriving (the sender cancelled)."""
        with self._lock, self._guard("cancelling a file transfer"):
            transfer = self.arriving(file_id, contact_id)
            if transfer is None:
                return False
            self._discard(transfer)
            return True

    def expire_transfers(self, idle_before_ms: int) -> list[tuple[int, bytes]]:
        """Delete the files still arriving whose last activity (the ``now`` of
        :meth:`begin_file` or :meth:`write_file_chunk`) is before
        ``idle_before_ms``: row, blob and what is cached. Their bytes stop
        counting against the budget and the quotas. Returns the
        ``(contact_id, file_id)`` of each, sorted; a sender that offers one
        again starts from 0, and a chunk of one gets :class:`NotFoundError`."""
        with self._lock, self._guard("expiring file transfers"):
            with self._database.transaction():
                rows = self._db.execute(
                    "DELETE FROM transfers WHERE updated_ms < ? RETURNING contact_id, id",
                    (idle_before_ms,),
                ).fetchall()
            expired = [(int(contact_id), bytes(file_id)) for contact_id, file_id in rows]
            for contact_id, file_id in expired:
                self._cached.pop((contact_id, file_id), None)
                # The rows are gone: a blob that cannot be deleted now is an
                # orphan, swept when the store next opens.
                with suppress(StoreError):
                    Blob.at(self._files, self._keys, Direction.IN, contact_id, file_id).delete()
        return sorted(expired)

    def drop_sent_copies(self, before: int, now: int) -> list[bytes]:
        """Delete the sealed copies of sent files that reached a final state
        (delivered, read, refused, expired) at or before ``before``; their
        rows stay, no longer charged to the disk budget (storage.md §5.3).
        The blobs go before the commit: a crash in between finds them again
        (a missing blob is nothing to delete). Returns the files' ids."""
        with self._database.transaction(), self._guard("dropping sent files' copies"):
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
                if self.arriving(file_id, contact_id) is not None:
                    raise ConfigError(f"file {file_id.hex()} has not arrived completely yet")
                raise NotFoundError(f"no file {file_id.hex()}")
            stored = self._rows.stored(rows[0])
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
