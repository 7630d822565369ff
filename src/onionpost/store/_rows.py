"""A message's row: its sealed content, the records read from it, the writes all parts share.

Text bodies, content types, file names and file hashes are sealed in each
row's ``content`` (storage.md §5.2), the associated data naming the table,
direction, contact and message id (:func:`onionpost.store._database.row_ad`),
so a row's content copied into another row does not open. :class:`Rows`
seals and opens it, and reads the columns of the view ``message_rows`` into
the records the store hands out. The functions below are the writes that the
outbox, the inbox and the arriving files share: the one ``INSERT`` of a
message, and the moves of its state (only those ``_records``' tables allow).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, Final

from onionpost.errors import ConfigError, LocalProtocolError, StoreError
from onionpost.names import file_name_problem
from onionpost.proto import NotMsgpack, pack, unpack
from onionpost.store import _crypto, _database
from onionpost.store._database import Keys
from onionpost.store._records import (
    INCOMING_TRANSITIONS,
    OUTGOING_TRANSITIONS,
    Direction,
    Kind,
    Outgoing,
    OutgoingFile,
    State,
    Stored,
    StoredFile,
    sources,
)

__all__ = [
    "HASH_LEN",
    "ID_LEN",
    "RowKey",
    "Rows",
    "check_file_name",
    "check_id",
    "id_in_use",
    "insert_message",
    "mark",
    "mark_moved",
]

ID_LEN: Final = 16
HASH_LEN: Final = 64
# The most fields a sealed row holds (a file's: name, content type, hash, label).
_MAX_SEALED_FIELDS: Final = 4

# The unique index messages_id (schema version 17): an incoming id is unique
# per contact, our own whatever the contact. The conflict target of
# _INSERT_MESSAGE, which spells it out (every query is a literal).
_MESSAGE_KEY: Final = "(id, direction, iif(direction = 'out', 0, contact_id))"

# Every query is a literal: an optional contact filter is the parameter
# ``:contact`` being NULL, and a set of states is a JSON array (json_each).
_INSERT_MESSAGE: Final = (
    "INSERT INTO messages (direction, contact_id, id, kind, state, created_ms, stored_ms, "
    "expires_ms, size, content) VALUES (:direction, :contact_id, :id, :kind, :state, "
    ":created_ms, :stored_ms, :expires_ms, :size, :content) "
    "ON CONFLICT (id, direction, iif(direction = 'out', 0, contact_id)) DO NOTHING"
)
_MARK: Final[dict[tuple[Direction, State], str]] = {
    (Direction.OUT, State.SENT): (
        "UPDATE messages SET state = 'sent', sent_ms = :now WHERE direction = 'out' "
        "AND id = :id AND state IN (SELECT value FROM json_each(:allowed)) "
        "AND (:contact IS NULL OR contact_id = :contact) RETURNING id, contact_id, kind"
    ),
    # A delivered message was sent: one acknowledged before its sent mark was
    # written (the mark is not durable on its own) is shown sent at the ack.
    (Direction.OUT, State.DELIVERED): (
        "UPDATE messages SET state = 'delivered', delivered_ms = :now, "
        "sent_ms = coalesce(sent_ms, :now) WHERE direction = 'out' "
        "AND id = :id AND state IN (SELECT value FROM json_each(:allowed)) "
        "AND (:contact IS NULL OR contact_id = :contact) RETURNING id, contact_id, kind"
    ),
    # A read message was delivered, whether or not its ack came first.
    (Direction.OUT, State.READ): (
        "UPDATE messages SET state = 'read', read_ms = :now, "
        "delivered_ms = coalesce(delivered_ms, :now), sent_ms = coalesce(sent_ms, :now) "
        "WHERE direction = 'out' "
        "AND id = :id AND state IN (SELECT value FROM json_each(:allowed)) "
        "AND (:contact IS NULL OR contact_id = :contact) RETURNING id, contact_id, kind"
    ),
    (Direction.IN, State.READ): (
        "UPDATE messages SET state = 'read', read_ms = :now WHERE direction = 'in' "
        "AND id = :id AND state IN (SELECT value FROM json_each(:allowed)) "
        "AND (:contact IS NULL OR contact_id = :contact) RETURNING id, contact_id, kind"
    ),
}

# (table, direction, contact id, message id): what a sealed ``content`` belongs to.
RowKey = tuple[str, str, int, bytes]


def id_in_use(message_id: bytes) -> ConfigError:
    return ConfigError(
        f"message id {message_id.hex()} is already another message's "
        "(a send made again must name the same contact and content)"
    )


def check_id(value: object, what: str = "a message id") -> bytes:
    if not isinstance(value, bytes) or len(value) != ID_LEN:
        raise ConfigError(f"{what} is {ID_LEN} bytes")
    return value


def check_file_name(name: object) -> str:
    """A file's name is a name, never a path (the rule of ``onionpost.names``)."""
    problem = file_name_problem(name)
    if problem is not None:
        raise ConfigError(problem)
    assert isinstance(name, str)
    return name


def insert_message(conn: sqlite3.Connection, values: dict[str, Any]) -> bool:
    """INSERT a messages row; False if (direction, contact, id) exists."""
    return insert_message_seq(conn, values) is not None


def insert_message_seq(conn: sqlite3.Connection, values: dict[str, Any]) -> int | None:
    """INSERT a messages row: its ``seq``, or None if (direction, contact, id) exists."""
    row = {"expires_ms": None, "size": None, **values}
    try:
        cursor = conn.execute(_INSERT_MESSAGE, row)
    except _database.IntegrityError as exc:
        # Another unique key than messages_id: none is left (schema version 17).
        raise LocalProtocolError(f"message id {values['id'].hex()} is already in use") from exc
    if cursor.rowcount == 1:
        return cursor.lastrowid
    if row["direction"] == Direction.OUT.value:
        # Our own ids are unique across contacts: the one there may be another's.
        (owner,) = conn.execute(
            "SELECT contact_id FROM messages WHERE id = ? AND direction = 'out'", (row["id"],)
        ).fetchone()
        if owner != row["contact_id"]:
            raise LocalProtocolError(f"message id {values['id'].hex()} is already in use")
    return None


# Ids moved by one statement at most.
MARK_GROUP: Final = 500
_IDS_IN: Final = "AND id IN (SELECT unhex(value) FROM json_each(:ids))"


def mark_group_sql(direction: Direction, target: State) -> str:
    """The state move of :func:`mark` for a group of ids, through the id
    index: without it SQLite scans every message of the direction for an IN
    over a table-valued function."""
    return (
        _MARK[(direction, target)]
        .replace("AND id = :id", _IDS_IN)
        .replace("UPDATE messages SET", "UPDATE messages INDEXED BY messages_id SET", 1)
    )


def mark(  # noqa: PLR0917 - one state move, all of it
    conn: sqlite3.Connection,
    ids: Sequence[bytes],
    now: int,
    direction: Direction,
    target: State,
    contact_id: int | None,
) -> list[bytes]:
    """Move ``ids`` to ``target`` where the transition table allows; the ids moved."""
    return [moved[0] for moved in mark_moved(conn, ids, now, direction, target, contact_id)]


def mark_moved(  # noqa: PLR0917 - one state move, all of it
    conn: sqlite3.Connection,
    ids: Sequence[bytes],
    now: int,
    direction: Direction,
    target: State,
    contact_id: int | None,
) -> list[tuple[bytes, int, str]]:
    """:func:`mark`, returning each moved message's (id, contact, kind)."""
    table = OUTGOING_TRANSITIONS if direction == Direction.OUT else INCOMING_TRANSITIONS
    allowed = json.dumps(sources(table, target))
    if len(ids) == 1:
        rows = conn.execute(
            _MARK[(direction, target)],
            {"now": now, "id": ids[0], "allowed": allowed, "contact": contact_id},
        ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]
    # A group (an Ack's ids): one statement for each MARK_GROUP of them, the
    # ids as hex in a JSON array (SQLite has no array parameter for blobs).
    sql = mark_group_sql(direction, target)
    changed: list[tuple[bytes, int, str]] = []
    for start in range(0, len(ids), MARK_GROUP):
        group = json.dumps([bytes(i).hex() for i in ids[start : start + MARK_GROUP]])
        rows = conn.execute(
            sql, {"now": now, "ids": group, "allowed": allowed, "contact": contact_id}
        ).fetchall()
        changed.extend((r[0], r[1], r[2]) for r in rows)
    return changed


class Rows:
    """Sealing a row's content, and reading rows into records, under the store's keys."""

    def __init__(self, keys: Keys) -> None:
        self._keys = keys

    def __repr__(self) -> str:
        return "Rows()"

    def seal(self, row: RowKey, fields: list[Any]) -> bytes:
        """Seal a row's fields: a text's [body, content type, label], a file's
        [name, content type, hash, label]. An empty label is left off: the
        row is then the one an earlier version wrote."""
        if fields and fields[-1] == "" and len(fields) in (3, 4) and type(fields[1]) is str:
            fields = fields[:-1]
        plaintext = pack(fields)
        return _crypto.seal(self._keys.seal, plaintext, _database.row_ad(*row))

    def unseal(self, row: RowKey, kind: str, sealed: bytes) -> list[Any]:
        """The fields :meth:`seal` sealed, the label last ("" when none)."""
        message_id = row[3]
        what = f"the content of message {message_id.hex()}"
        plaintext = _crypto.open_sealed(self._keys.seal, sealed, _database.row_ad(*row), what=what)
        try:
            fields: Any = unpack(
                plaintext, max_len=len(plaintext), max_items=_MAX_SEALED_FIELDS, use_list=True
            )
        except NotMsgpack as exc:
            raise StoreError(f"{what} is malformed") from exc
        # The label (a row of this version) is sealed with the rest, so that
        # it opens only in its row; a row without one is an earlier version's.
        if kind == Kind.TEXT:
            shape_ok = (
                type(fields) is list
                and len(fields) in (2, 3)
                and all(type(f) is str for f in fields)
            )
        else:
            shape_ok = (
                type(fields) is list
                and len(fields) in (3, 4)
                and type(fields[0]) is str
                and type(fields[1]) is str
                and type(fields[2]) is bytes
                and len(fields[2]) == HASH_LEN
                and all(type(f) is str for f in fields[3:])
            )
        if not shape_ok:
            raise StoreError(f"{what} is malformed")
        full = 3 if kind == Kind.TEXT else 4
        return [*fields, ""] if len(fields) < full else list(fields)

    def stored(self, row: Sequence[Any]) -> Stored:
        # The columns of the view message_rows, in order.
        (seq, direction, contact_id, contact, message_id, kind, state) = row[:7]
        (created_ms, stored_ms, sent_ms, delivered_ms, read_ms, _expires, size, sealed) = row[7:15]
        refused_ms, refused_reason, deposited_ms = row[15:18]
        fields = self.unseal(("messages", direction, contact_id, message_id), kind, sealed)
        file = None
        body = None
        if kind == Kind.TEXT:
            body, content_type, label = fields
        else:
            name, content_type, digest, label = fields
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
            label=label,
        )

    def outgoing(self, row: Sequence[Any]) -> Outgoing:
        stored = self.stored(row)
        file = None
        if stored.file is not None:
            f = stored.file
            file = OutgoingFile(
                stored.id,
                stored.created_ms,
                f.name,
                f.size,
                f.blake2b,
                f.content_type,
                stored.label,
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
            label=stored.label,
        )
