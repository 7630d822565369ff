"""The messages table read as a whole: texts received, the inbox, any message
by its id, and read marks.

A part of :class:`~onionpost.store.Store` over its
:class:`~onionpost.store._database.Database`. A received text is inserted on
the unique key ``(direction, contact, id)`` in one statement of one
transaction: a repeated message is detected, not stored twice, and the
caller acks it again. Files arrive through
:class:`~onionpost.store._transfers.Transfers` and join the inbox when whole.
A message is found by its id in either direction (a file still arriving
too), and marked read in either: ours (the contact's receipt) or theirs (our
user read it).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Final

from onionpost.errors import ConfigError, NotFoundError
from onionpost.proto.evidence import Event, text_entry
from onionpost.store._contacts import Contacts
from onionpost.store._database import Database
from onionpost.store._evidence import EvidenceLog
from onionpost.store._records import Direction, Kind, State, Stored, StoredFile
from onionpost.store._rows import Rows, check_id, insert_message, mark_moved

__all__ = ["UNREAD_COUNT", "Messages"]

# Run for every Text and every chunk: each reads one partial index (INDEXED BY:
# without statistics the planner would pick the wider unique index).
UNREAD_COUNT: Final = (
    "SELECT count(*) FROM messages INDEXED BY messages_unread WHERE direction = 'in' "
    "AND state = 'received' AND contact_id = :contact AND (:kind IS NULL OR kind = :kind)"
)


class Messages:
    """Storing received texts, finding and reading messages; see the module docstring."""

    def __init__(
        self,
        database: Database,
        rows: Rows,
        contacts: Contacts,
        evidence: EvidenceLog,
        *,
        delivered_at: Callable[[int | None], None],
    ) -> None:
        self._database = database
        self._delivered_at = delivered_at
        self._lock = database.lock
        self._guard = database.guard
        self._rows = rows
        self._contacts = contacts
        self._evidence = evidence

    def __repr__(self) -> str:
        return "Messages()"

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    def store_text(  # noqa: PLR0917 - the contract's signature
        self,
        contact_id: int,
        message_id: bytes,
        created_ms: int,
        body: str,
        content_type: str,
        now: int,
        *,
        label: str = "",
    ) -> bool:
        """Store a received text durably, with its handling label as it came.
        False when it is already stored (a resend): ack it again, do not notify."""
        check_id(message_id)
        if not all(isinstance(v, str) for v in (body, content_type, label)):
            raise ConfigError("a text body, its content type and its label are text")
        content = self._rows.seal(
            ("messages", Direction.IN, contact_id, message_id), [body, content_type, label]
        )
        with self._database.transaction(), self._guard("storing a message"):
            self._contacts.require(contact_id, active=False)
            inserted = insert_message(
                self._db,
                {
                    "direction": Direction.IN.value,
                    "contact_id": contact_id,
                    "id": message_id,
                    "kind": Kind.TEXT.value,
                    "state": State.RECEIVED.value,
                    "created_ms": created_ms,
                    "stored_ms": now,
                    "content": content,
                },
            )
            if inserted:
                entry = text_entry(
                    Event.RECEIVED,
                    now,
                    self._evidence.counterparty(contact_id),
                    message_id,
                    created_ms,
                    body,
                    content_type,
                    label,
                )
                self._evidence.append((entry,))
            return inserted

    def inbox(self, *, after: int = 0, limit: int = 100, unread: bool = False) -> list[Stored]:
        """Incoming messages and complete files with ``seq > after``, in order;
        with ``unread``, only those not yet read."""
        with self._lock, self._guard("reading the inbox"):
            rows = self._db.execute(
                "SELECT * FROM message_rows WHERE direction = 'in' AND seq > :after "
                "AND (NOT :unread OR state = 'received') ORDER BY seq LIMIT :limit",
                {"after": after, "unread": unread, "limit": max(0, limit)},
            ).fetchall()
        return [self._rows.stored(row) for row in rows]

    def unread_count(self, contact_id: int, *, kind: Kind | None = None) -> int:
        """Messages and complete files received from ``contact_id`` and not yet
        read (state ``received``); with ``kind``, texts or files only. One
        index range, nothing decrypted: cheap enough for every Text."""
        with self._lock, self._guard("reading the inbox"):
            (count,) = self._db.execute(
                UNREAD_COUNT, {"contact": contact_id, "kind": None if kind is None else kind.value}
            ).fetchone()
        return int(count)

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
        delivered: int | None = None
        with self._database.transaction(), self._guard("updating message states"):
            for side in (Direction.OUT, Direction.IN):
                if direction is None or direction == side:
                    moved = mark_moved(self._db, ids, now, side, State.READ, contact_id)
                    event = Event.READ_BY_THEM if side == Direction.OUT else Event.READ
                    self._evidence.moved(event, moved, now)
                    changed.extend(m[0] for m in moved)
                    if side == Direction.OUT and moved:
                        # Read implies delivered: those not acked yet are delivered now.
                        (delivered,) = self._db.execute(
                            "SELECT max(delivered_ms) FROM messages INDEXED BY messages_id "
                            "WHERE direction = 'out' "
                            "AND id IN (SELECT unhex(value) FROM json_each(?))",
                            (json.dumps([m[0].hex() for m in moved]),),
                        ).fetchone()
        self._delivered_at(delivered)
        return changed

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
                return self._rows.stored(row)
            row = self._db.execute(
                "SELECT t.contact_id, c.name, t.created_ms, t.started_ms, t.size, t.content "
                "FROM transfers t JOIN contacts c ON c.id = t.contact_id "
                "WHERE t.id = :id AND (:contact IS NULL OR t.contact_id = :contact) LIMIT 1",
                args,
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no message {message_id.hex()}")
        owner, contact, created_ms, started_ms, size, sealed = row
        name, content_type, digest, label = self._rows.unseal(
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
            label=label,
        )

    def selected(
        self,
        *,
        contact_id: int | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
        ids: Sequence[bytes] = (),
        limit: int,
        after: int = 0,
    ) -> list[Stored]:
        """Messages and complete files of either direction, in the order they
        were stored, with a contact, created in ``[since_ms, until_ms)``, among
        ``ids`` (each filter when given); at most ``limit``, from ``seq > after``."""
        wanted = json.dumps([bytes(i).hex() for i in ids]) if ids else None
        with self._lock, self._guard("selecting messages"):
            rows = self._db.execute(
                "SELECT * FROM message_rows WHERE (:contact IS NULL OR contact_id = :contact) "
                "AND (:since IS NULL OR created_ms >= :since) "
                "AND (:until IS NULL OR created_ms < :until) "
                "AND (:ids IS NULL OR id IN (SELECT unhex(value) FROM json_each(:ids))) "
                "AND seq > max(0, :after) ORDER BY seq LIMIT :limit",
                {
                    "contact": contact_id,
                    "since": since_ms,
                    "until": until_ms,
                    "ids": wanted,
                    "after": after,
                    "limit": max(0, limit),
                },
            ).fetchall()
        return [self._rows.stored(row) for row in rows]

    def messages_with_id(self, message_id: bytes) -> list[Stored]:
        """Every stored message (either direction, any contact) with this id, in
        ``seq`` order. Our own ids are unique, but two contacts may send records
        with the same id: a caller acting for the user must tell them apart."""
        with self._lock, self._guard("reading a message"):
            rows = self._db.execute(
                "SELECT * FROM message_rows WHERE id = ? ORDER BY seq", (message_id,)
            ).fetchall()
        return [self._rows.stored(row) for row in rows]
