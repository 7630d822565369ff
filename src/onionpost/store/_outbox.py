"""The outbox: texts and files queued to contacts, and how far each has gone.

A part of :class:`~onionpost.store.Store` over its
:class:`~onionpost.store._database.Database`. Queueing is durable when it
returns, and idempotent on the message id: a send made again (its answer
lost) finds the message already queued. An outgoing message's state only
moves forward (:mod:`onionpost.store._records`); ``refused`` is final. A
queued file is copied into ``files/``, encrypted (:mod:`onionpost.store._files`),
before its row is written; what is read back out of it to send is
:meth:`onionpost.store._transfers.Transfers.read_file_chunk`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from onionpost.errors import ConfigError, LocalProtocolError, NotFoundError
from onionpost.proto.evidence import Event, file_entry, text_entry
from onionpost.store._contacts import Contacts
from onionpost.store._database import Database, Keys
from onionpost.store._evidence import EvidenceLog
from onionpost.store._files import Blob, digest_of
from onionpost.store._records import (
    OUTGOING_TRANSITIONS,
    Direction,
    Kind,
    Outgoing,
    OutgoingFile,
    State,
    Stored,
    sources,
)
from onionpost.store._rows import (
    Rows,
    check_file_name,
    check_id,
    id_in_use,
    insert_message,
    insert_message_seq,
    mark_moved,
)

__all__ = ["Outbox"]


def _check_new(inserted: bool, file_id: bytes) -> None:
    if not inserted:
        raise LocalProtocolError(f"file id {file_id.hex()} is already in use")


# A reason code is a u64 on the wire (spec.md §5.3); SQLite's integers are
# signed. Larger codes are all unknown ones (read as DECLINED) and are stored
# as this.
_MAX_REASON: Final = 2**63 - 1


class Outbox:
    """Queueing texts and files, and their states; see the module docstring."""

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
        # The latest delivered_ms, once read (last_delivery).
        self._last_delivery: int | None = None
        self._last_delivery_read = False
        self._contacts = contacts
        self._evidence = evidence

    def __repr__(self) -> str:
        return "Outbox()"

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    def _queued_before(self, message_id: bytes, contact_id: int, kind: Kind) -> Stored | None:
        """The outgoing message already queued under ``message_id`` (a send made
        again, its answer lost), or None; :class:`ConfigError` when the id is
        another contact's or another kind's. Call with the lock held."""
        row = self._db.execute(
            "SELECT * FROM message_rows WHERE direction = 'out' AND id = ?", (message_id,)
        ).fetchone()
        if row is None:
            return None
        stored = self._rows.stored(row)
        if stored.contact_id != contact_id or stored.kind != kind:
            raise id_in_use(message_id)
        return stored

    def queue_text(  # noqa: PLR0917 - the contract's signature
        self,
        contact_id: int,
        message_id: bytes,
        created_ms: int,
        body: str,
        content_type: str,
        expires_at: int | None,
        *,
        label: str = "",
    ) -> int | None:
        """Queue a text; it is durably stored when this returns. Returns its
        ``seq`` (the order in which the outbox sends), or None when it was
        queued already: idempotent on ``message_id``, the same text to the
        same contact again is the one already queued. The id with another
        contact or content (or label) is :class:`ConfigError`. ``label`` is
        the canonical text of its handling label, checked by the caller.
        """
        check_id(message_id)
        if not all(isinstance(v, str) for v in (body, content_type, label)):
            raise ConfigError("a text body, its content type and its label are text")
        content = self._rows.seal(
            ("messages", Direction.OUT, contact_id, message_id), [body, content_type, label]
        )
        with self._database.transaction(), self._guard("queueing a message"):
            self._contacts.require(contact_id, active=True)
            # Inserted first: an id already there (a send made again) is the
            # rare case, looked at only when the insert finds it.
            try:
                seq = insert_message_seq(
                    self._db,
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
                    },
                )
            except LocalProtocolError:
                seq = None  # another contact's: _queued_before says so, as ConfigError
            if seq is None:
                before = self._queued_before(message_id, contact_id, Kind.TEXT)
                if before is None:
                    raise LocalProtocolError(f"message id {message_id.hex()} is already in use")
                if (before.body, before.content_type, before.label) != (
                    body,
                    content_type,
                    label,
                ):
                    raise id_in_use(message_id)
                return None
            self._evidence.append(
                (
                    text_entry(
                        Event.QUEUED,
                        created_ms,
                        self._evidence.counterparty(contact_id),
                        message_id,
                        created_ms,
                        body,
                        content_type,
                        label,
                    ),
                )
            )
        return seq

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
        label: str = "",
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
        check_id(file_id, "a file id")
        check_file_name(name)
        with self._lock, self._guard("queueing a file"):
            self._contacts.require(contact_id, active=True)
            before = self._queued_before(file_id, contact_id, Kind.FILE)
        if before is not None:
            assert before.file is not None
            same = (before.file.name, before.file.content_type, before.label) == (
                name,
                content_type,
                label,
            )
            if not same or digest_of(Path(source), max_size) != before.file.blake2b:
                raise id_in_use(file_id)
            f = before.file
            return OutgoingFile(
                file_id, before.created_ms, f.name, f.size, f.blake2b, f.content_type, label
            )
        blob, size, digest = self._copy_in(contact_id, file_id, Path(source), max_size)
        try:
            with self._database.transaction(), self._guard("queueing a file"):
                self._contacts.require(contact_id, active=True)
                inserted = self._insert_file(
                    contact_id,
                    file_id,
                    created_ms,
                    name,
                    size,
                    digest,
                    content_type,
                    expires_at,
                    label,
                )
        except BaseException:
            blob.delete()
            raise
        if not inserted:  # the blob is the existing row's: keep it
            raise LocalProtocolError(f"file id {file_id.hex()} is already in use")
        return OutgoingFile(file_id, created_ms, name, size, digest, content_type, label)

    def forward_file(  # noqa: PLR0917 - the source, then the copy
        self,
        source: Stored,
        contact_id: int,
        file_id: bytes,
        created_ms: int,
        label: str,
        expires_at: int | None = None,
    ) -> OutgoingFile:
        """Queue a copy of the stored file ``source`` (either direction) to
        ``contact_id`` under the new id ``file_id``, labelled ``label`` (the
        caller checked it). The bytes are re-encrypted blob to blob, never
        written out in the clear. :class:`NotFoundError` when the source's
        bytes are no longer held."""
        check_id(file_id, "a file id")
        if source.file is None or not source.file.complete:
            raise ConfigError(f"message {source.id.hex()} is not a complete file")
        old = Blob.at(self._files, self._keys, source.direction, source.contact_id, source.id)
        if not old.path.exists():
            raise NotFoundError(f"the bytes of file {source.id.hex()} are no longer held")
        with self._lock, self._guard("queueing a file"):
            self._contacts.require(contact_id, active=True)
        blob = Blob.at(self._files, self._keys, Direction.OUT, contact_id, file_id)
        if blob.path.exists():
            raise LocalProtocolError(f"file id {file_id.hex()} is already in use")
        f = source.file
        blob.recrypt_from(old, f.size)
        try:
            with self._database.transaction(), self._guard("queueing a file"):
                self._contacts.require(contact_id, active=True)
                inserted = self._insert_file(
                    contact_id,
                    file_id,
                    created_ms,
                    f.name,
                    f.size,
                    f.blake2b,
                    f.content_type,
                    expires_at,
                    label,
                )
        except BaseException:
            blob.delete()
            raise
        if not inserted:
            raise LocalProtocolError(f"file id {file_id.hex()} is already in use")
        return OutgoingFile(file_id, created_ms, f.name, f.size, f.blake2b, f.content_type, label)

    def queue_file_copies(
        self,
        copies: Sequence[tuple[int, bytes]],
        created_ms: int,
        name: str,
        source: Path,
        max_size: int,
        *,
        content_type: str = "application/octet-stream",
        expires_at: int | None = None,
        also: Callable[[], None] | None = None,
        label: str = "",
    ) -> list[OutgoingFile]:
        """One file to several contacts: a copy per ``(contact_id, file_id)``,
        each its own encrypted blob and its own offer, all queued in one
        transaction (with ``also``, run inside it: the caller's rows of the
        same change). All or none: on any error every blob made is deleted.

        The ids must be new (a send made again is the caller's to detect);
        the copies are made outside the lock, and a source that changes
        between two copies is :class:`ConfigError`.
        """
        check_file_name(name)
        if not copies:
            raise ConfigError("a file to no one")
        for _contact_id, file_id in copies:
            check_id(file_id, "a file id")
        made: list[Blob] = []
        try:
            size, digest = self._copy_all(copies, name, Path(source), max_size, made)
            with self._database.transaction(), self._guard("queueing a file"):
                for contact_id, file_id in copies:
                    self._contacts.require(contact_id, active=True)
                    inserted = self._insert_file(
                        contact_id,
                        file_id,
                        created_ms,
                        name,
                        size,
                        digest,
                        content_type,
                        expires_at,
                        label,
                    )
                    _check_new(inserted, file_id)
                if also is not None:
                    also()
        except BaseException:
            for blob in made:
                blob.delete()
            raise
        return [
            OutgoingFile(file_id, created_ms, name, size, digest, content_type, label)
            for _contact_id, file_id in copies
        ]

    def _copy_all(
        self,
        copies: Sequence[tuple[int, bytes]],
        name: str,
        source: Path,
        max_size: int,
        made: list[Blob],
    ) -> tuple[int, bytes]:
        """A blob per copy (appended to ``made`` as each is made); the file's
        size and BLAKE2b-512, the same for every copy."""
        seen: set[tuple[int, bytes]] = set()
        for contact_id, file_id in copies:
            blob, size, digest = self._copy_in(contact_id, file_id, source, max_size)
            made.append(blob)
            seen.add((size, digest))
        if len(seen) != 1:
            raise ConfigError(f"{name!r} changed while it was being copied: send it again")
        return next(iter(seen))

    def _copy_in(
        self, contact_id: int, file_id: bytes, source: Path, max_size: int
    ) -> tuple[Blob, int, bytes]:
        """Encrypt ``source`` into the new blob of an outgoing file: (blob, size,
        BLAKE2b-512). Outside the lock; the caller deletes the blob on failure."""
        blob = Blob.at(self._files, self._keys, Direction.OUT, contact_id, file_id)
        if blob.path.exists():
            raise LocalProtocolError(f"file id {file_id.hex()} is already in use")
        size, digest = blob.copy_from(source, max_size)
        return blob, size, digest

    def _insert_file(  # noqa: PLR0917 - one row's columns
        self,
        contact_id: int,
        file_id: bytes,
        created_ms: int,
        name: str,
        size: int,
        digest: bytes,
        content_type: str,
        expires_at: int | None,
        label: str = "",
    ) -> bool:
        """The row of a queued file and its evidence entry (both with its
        label); False when the id is already this contact's. Inside a
        transaction."""
        content = self._rows.seal(
            ("messages", Direction.OUT, contact_id, file_id), [name, content_type, digest, label]
        )
        inserted = insert_message(
            self._db,
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
            },
        )
        if inserted:
            entry = file_entry(
                Event.QUEUED,
                created_ms,
                self._evidence.counterparty(contact_id),
                file_id,
                created_ms,
                name,
                size,
                digest,
                content_type,
                label,
            )
            self._evidence.append((entry,))
        return inserted

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
        return [self._rows.outgoing(row) for row in rows]

    def mark_sent(
        self, ids: Sequence[bytes], now: int, *, contact_id: int | None = None
    ) -> list[bytes]:
        """Outgoing ``ids`` were sent. Returns the ids whose state changed.

        Committed without an fsync of its own
        (:meth:`onionpost.store._database.Database.bookkeeping`):
        ``sent`` only informs, and a message that shows ``queued`` again
        after a power loss is sent again, which the receiver's
        de-duplication makes harmless. Queueing and delivery stay durable."""
        with (
            self._lock,
            self._database.bookkeeping("updating message states"),
            self._guard("updating message states"),
        ):
            moved = mark_moved(self._db, ids, now, Direction.OUT, State.SENT, contact_id)
            self._evidence.moved(Event.SENT, moved, now)
        return [m[0] for m in moved]

    def mark_delivered(
        self, ids: Sequence[bytes], now: int, *, contact_id: int | None = None
    ) -> list[bytes]:
        """The receiver acknowledged ``ids``. Pass the acking ``contact_id`` so that
        a contact can only ever acknowledge what was sent to it."""
        with self._database.transaction(), self._guard("updating message states"):
            moved = mark_moved(self._db, ids, now, Direction.OUT, State.DELIVERED, contact_id)
            self._evidence.moved(Event.DELIVERED, moved, now)
        if moved:
            self.delivered_at(now)
        return [m[0] for m in moved]

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
        with self._database.transaction(), self._guard("updating message states"):
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
        with self._database.transaction(), self._guard("expiring messages"):
            rows = self._db.execute(
                "UPDATE messages SET state = 'expired' WHERE direction = 'out' "
                "AND state IN ('queued', 'sent') AND expires_ms IS NOT NULL "
                "AND expires_ms <= ? RETURNING id",
                (now,),
            ).fetchall()
        return [row[0] for row in rows]

    def expire_contact(self, contact_id: int) -> list[bytes]:
        """Expire what was never acknowledged by ``contact_id`` (queued or sent):
        called when the contact is removed, which no acknowledgement can then
        reach. Their sealed copies go with the next sweep of sent files."""
        with self._database.transaction(), self._guard("expiring a contact's messages"):
            rows = self._db.execute(
                "UPDATE messages SET state = 'expired' WHERE direction = 'out' "
                "AND state IN ('queued', 'sent') AND contact_id = ? RETURNING id",
                (contact_id,),
            ).fetchall()
        return [row[0] for row in rows]

    def listing(self, *, contact_id: int | None = None, limit: int = 100) -> list[Stored]:
        """Outgoing messages and files not yet acknowledged (queued or sent), to
        current contacts or to ``contact_id`` only, oldest first."""
        with self._lock, self._guard("reading the outbox"):
            rows = self._db.execute(
                "SELECT r.* FROM message_rows r JOIN contacts c ON c.id = r.contact_id "
                "WHERE r.direction = 'out' AND r.state IN ('queued', 'sent') AND c.removed = 0 "
                "AND (:contact IS NULL OR r.contact_id = :contact) ORDER BY r.seq LIMIT :limit",
                {"contact": contact_id, "limit": max(0, limit)},
            ).fetchall()
        return [self._rows.stored(row) for row in rows]

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

    def last_delivery(self) -> int | None:
        """When the last acknowledgement arrived: the latest ``delivered_ms``
        (the ``now`` given to mark_delivered, or to a read receipt that came
        before its ack).

        The store is read for it once (a scan of every message: 160 ms at
        100,000, on the thread that commits); the deliveries marked since
        are kept in memory as they are marked (:meth:`delivered_at`). A
        delivery whose enclosing transaction then failed still counts until
        the store is opened again.
        """
        with self._lock:
            if not self._last_delivery_read:
                with self._guard("reading the outbox"):
                    (last,) = self._db.execute(
                        "SELECT max(delivered_ms) FROM messages WHERE direction = 'out'"
                    ).fetchone()
                self._last_delivery_read = True
                self.delivered_at(last)
            return self._last_delivery

    def delivered_at(self, when: int | None) -> None:
        """Messages were marked delivered at ``when`` (their ``delivered_ms``)."""
        if when is None:
            return
        with self._lock:
            if self._last_delivery is None or when > self._last_delivery:
                self._last_delivery = int(when)
