"""Team channels in the store: each group's log, its membership, and its messages.

A part of :class:`~onionpost.store.Store` over its
:class:`~onionpost.store._database.Database` (groups.md). A group kept here
is its signed operations (``group_ops``) in their order of arrival: every
operation's parents arrived before it, so adding them again in that order
to a :class:`~onionpost.proto.groups.GroupLog` rebuilds the log, checking
every signature and rule again. Its name, head and membership
(``groups``, ``group_members``) are what that log gives, rewritten in the
transaction that adds operations, so they are read without a replay.

Operations are added all or nothing (:meth:`Groups.apply`): a batch with one
refused operation stores none of it, and the log kept in memory is dropped
(rebuilt from the rows when next needed) so it never holds what the rows do
not; a log that holds more operations than its rows (an enclosing
transaction rolled back) is rebuilt too.

A send to a group is one ordinary outgoing message per member other than
us, each under an id of its own (:func:`group_copy_id`), queued in one
transaction with the send's record in ``group_messages`` (the group and the
log head it was sent at), as a send to a distribution list is
(:mod:`onionpost.store._lists`). A group message received is stored with
its group and head in one transaction, after :meth:`GroupLog.may_post`
accepted its author at the heads it names.

Bounds (limits.py): MAX_GROUPS groups, and each log's own
(MAX_GROUP_LOG_OPS, MAX_GROUP_LOG_BYTES, MAX_GROUP_MEMBERS) as
:class:`GroupLog` enforces them.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from onionpost.errors import (
    ConfigError,
    GroupBoundError,
    GroupNotAllowedError,
    GroupReplayError,
    GroupUnknownError,
    NotFoundError,
)
from onionpost.limits import (
    MAX_EXPORT_MESSAGES,
    MAX_GROUP_PARENTS,
    MAX_GROUPS,
    MAX_LIST_SENDS_SHOWN,
)
from onionpost.proto.address import OnionAddress
from onionpost.proto.evidence import Entry, Event
from onionpost.proto.groups import GroupLog, Operation, PostCheck, PostDecision, head_hash
from onionpost.store._contacts import Contacts
from onionpost.store._database import Database
from onionpost.store._evidence import EvidenceLog
from onionpost.store._files import digest_of
from onionpost.store._lists import Audience
from onionpost.store._messages import Messages
from onionpost.store._outbox import Outbox
from onionpost.store._records import Contact, Direction, Kind, State
from onionpost.store._rows import check_id

__all__ = [
    "GroupCopy",
    "GroupSend",
    "Groups",
    "QueuedGroupCopies",
    "ReceivedGroupText",
    "group_copy_id",
]

# BLAKE2b personalisation of group copy ids (16 bytes at most).
_COPY_PERSON: Final = b"onionpost-group"
_GROUP_ID_HEX: Final = 32
# A group may be named by this many hex digits of its id, or more.
_GROUP_ID_PREFIX: Final = 8


def sent_heads(log: GroupLog) -> tuple[bytes, ...]:
    """The heads a message sent now names: the log's, at most MAX_GROUP_PARENTS
    of them (groups.md §6.1; a log with more names the first ones)."""
    return log.heads[:MAX_GROUP_PARENTS]


def group_copy_id(send_id: bytes, address_key: bytes) -> bytes:
    """The id of a group send's copy to the member whose onion address has the
    public key ``address_key``: BLAKE2b-128 of both, personalised."""
    return hashlib.blake2b(send_id + address_key, digest_size=16, person=_COPY_PERSON).digest()


@dataclass(frozen=True)
class GroupCopy:
    """One member's copy of a group send: an ordinary outgoing message."""

    contact_id: int
    contact: str
    message_id: bytes
    state: State
    deposited: bool = False


@dataclass(frozen=True)
class GroupSend:
    """A send to a group at log head ``head``, with each member's copy."""

    id: bytes
    group_id: bytes
    group: str
    head: bytes
    created_ms: int
    copies: tuple[GroupCopy, ...]
    kind: Kind = Kind.TEXT


@dataclass(frozen=True)
class QueuedGroupCopies:
    """What a group text send queued: the send, and per copy newly queued its
    (contact id, message id, outbox seq), for the delivery engine; and the
    members no copy went to because we cannot reach them (neither our
    contacts nor introduced to us yet, groups.md §9)."""

    send: GroupSend
    new: tuple[tuple[int, bytes, int], ...]
    unreachable: tuple[str, ...] = ()
    heads: tuple[bytes, ...] = ()  # the heads the new copies name


@dataclass(frozen=True)
class ReceivedGroupText:
    """A group message as received: its group and the head it was sent at."""

    group_id: bytes
    group: str
    head: bytes


def ever_members(log: GroupLog) -> frozenset[bytes]:
    """Every key the log made a member at some point (its create's author, and
    each add's card), removed or not."""
    keys = set()
    for op in log.ordered():
        if op.card is not None:
            keys.add(op.card.identity_key)
    return frozenset(keys)


class Groups:
    """Keeping groups' logs, and sending and receiving their messages."""

    def __init__(
        self,
        database: Database,
        contacts: Contacts,
        outbox: Outbox,
        messages: Messages,
        evidence: EvidenceLog,
    ) -> None:
        self._database = database
        self._evidence = evidence
        self._lock = database.lock
        self._guard = database.guard
        self._contacts = contacts
        self._outbox = outbox
        self._messages = messages
        self._logs: dict[bytes, GroupLog] = {}

    def __repr__(self) -> str:
        return "Groups()"

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    # -- reading (call with the lock held) -------------------------------------------

    def _rowid(self, group_id: bytes) -> int:
        row = self._db.execute("SELECT id FROM groups WHERE group_id = ?", (group_id,)).fetchone()
        if row is None:
            raise GroupUnknownError(f"no group {group_id.hex()}")
        return int(row[0])

    def _log(self, group_id: bytes) -> GroupLog:
        rowid = self._rowid(group_id)
        cached = self._logs.get(group_id)
        if cached is not None:
            # A transaction rolled back after the log took its operations
            # (an outer one, an envelope's or a group commit's) leaves the log
            # longer than its rows: then it is rebuilt.
            (count,) = self._db.execute(
                "SELECT count(*) FROM group_ops WHERE gid = ?", (rowid,)
            ).fetchone()
            if count == len(cached):
                return cached
        rows = self._db.execute(
            "SELECT op FROM group_ops WHERE gid = ? ORDER BY arrival", (rowid,)
        ).fetchall()
        ops = [Operation.decode(bytes(r[0])) for r in rows]
        log = GroupLog(ops[0])
        for op in ops[1:]:
            log.add(op)
        self._logs[group_id] = log
        return log

    def _write_state(self, rowid: int, log: GroupLog) -> None:
        state = log.state
        self._db.execute(
            "UPDATE groups SET name = ?, head = ? WHERE id = ?", (state.name, state.head, rowid)
        )
        self._db.execute("DELETE FROM group_members WHERE gid = ?", (rowid,))
        self._db.executemany(
            "INSERT INTO group_members (gid, identity_key, name, admin) VALUES (?, ?, ?, ?)",
            [(rowid, k, m.card.name, int(m.admin)) for k, m in state.members.items()],
        )

    def _insert_ops(self, rowid: int, ops: Sequence[Operation], now: int) -> None:
        (arrival,) = self._db.execute(
            "SELECT coalesce(max(arrival), -1) + 1 FROM group_ops WHERE gid = ?", (rowid,)
        ).fetchone()
        self._db.executemany(
            "INSERT INTO group_ops (gid, arrival, hash, op, stored_ms) VALUES (?, ?, ?, ?, ?)",
            [(rowid, arrival + i, op.hash, op.encode(), now) for i, op in enumerate(ops)],
        )
        # Each operation kept is an entry of the evidence log (evidence.md §2):
        # its author, the group, its kind and hash.
        self._evidence.append(
            Entry(
                Event.GROUP_CHANGED,
                now,
                str(OnionAddress(op.author)),
                detail=f"group {op.group_id.hex()} {op.kind.name.lower()} {op.hash.hex()}",
            )
            for op in ops
        )

    # -- logs ------------------------------------------------------------------------------

    def start(self, create: Operation, now: int, more: Sequence[Operation] = ()) -> GroupLog:
        """Keep a new group: its ``create`` (one we signed, or the first of a
        log we were added to) and the operations ``more`` after it, all or
        nothing. :class:`GroupReplayError` when the group is kept already,
        :class:`GroupBoundError` past MAX_GROUPS, any :class:`GroupError` of
        the log's checks."""
        log = GroupLog(create)
        for op in more:
            log.add(op)
        with self._database.transaction(), self._guard("keeping a group"):
            known = self._db.execute(
                "SELECT 1 FROM groups WHERE group_id = ?", (create.group_id,)
            ).fetchone()
            if known is not None:
                raise GroupReplayError("that group is kept already", op=create.hash)
            (count,) = self._db.execute("SELECT count(*) FROM groups").fetchone()
            if count >= MAX_GROUPS:
                raise GroupBoundError(f"{MAX_GROUPS} groups are kept already", op=create.hash)
            cursor = self._db.execute(
                "INSERT INTO groups (group_id, name, head, created_ms) VALUES (?, ?, ?, ?)",
                (create.group_id, log.state.name, log.head, now),
            )
            rowid = int(cursor.lastrowid or 0)
            self._insert_ops(rowid, [create, *more], now)
            self._write_state(rowid, log)
            self._logs[create.group_id] = log
        return log

    def apply(self, group_id: bytes, ops: Sequence[Operation], now: int) -> list[Operation]:
        """Add ``ops`` (parents before children) to a group's log, all or
        nothing; the operations newly added (one the log holds already is
        skipped). :class:`GroupUnknownError` for a group not kept here; any
        other :class:`GroupError` of :meth:`GroupLog.add`, and then nothing
        is stored."""
        with self._database.transaction(), self._guard("changing a group"):
            rowid = self._rowid(group_id)
            log = self._log(group_id)
            added = []
            try:
                for op in ops:
                    if op.hash in log:
                        continue
                    log.add(op)
                    added.append(op)
                if added:
                    self._insert_ops(rowid, added, now)
                    self._write_state(rowid, log)
            except BaseException:
                # The log in memory took what the rows will not: rebuild it.
                self._logs.pop(group_id, None)
                raise
            return added

    def log(self, group_id: bytes) -> GroupLog:
        """A group's log; :class:`GroupUnknownError`. Read it, never add to it:
        changes go through :meth:`apply`."""
        with self._lock, self._guard("reading a group"):
            return self._log(group_id)

    def find(self, name: str) -> GroupLog:
        """A group by its id in hex, its name (any letter case), or a prefix of
        its id (at least ``_GROUP_ID_PREFIX`` hex digits) that is no other's.
        :class:`NotFoundError`; :class:`ConfigError` when two groups have
        that name (naming their ids) or share that prefix."""
        with self._lock, self._guard("reading a group"):
            if len(name) == _GROUP_ID_HEX:
                try:
                    raw = bytes.fromhex(name)
                except ValueError:
                    raw = b""
                row = self._db.execute(
                    "SELECT group_id FROM groups WHERE group_id = ?", (raw,)
                ).fetchone()
                if row is not None:
                    return self._log(bytes(row[0]))
            rows = self._db.execute(
                "SELECT group_id FROM groups WHERE name = ? COLLATE NOCASE ORDER BY group_id",
                (name,),
            ).fetchall()
            if len(rows) > 1:
                ids = ", ".join(bytes(r[0]).hex()[:_GROUP_ID_PREFIX] + "…" for r in rows)
                raise ConfigError(
                    f"{len(rows)} groups are named {name!r} (ids {ids}): name one by its id "
                    f"(its first {_GROUP_ID_PREFIX} hex digits will do)"
                )
            if rows:
                return self._log(bytes(rows[0][0]))
            prefix = name.lower()
            if _GROUP_ID_PREFIX <= len(prefix) < _GROUP_ID_HEX and all(
                c in "0123456789abcdef" for c in prefix
            ):
                rows = self._db.execute(
                    "SELECT group_id FROM groups WHERE lower(hex(group_id)) >= ? "
                    "AND lower(hex(group_id)) < ? LIMIT 2",
                    (prefix, prefix + "g"),
                ).fetchall()
                if len(rows) > 1:
                    raise ConfigError(f"more than one group's id begins with {prefix}")
                if rows:
                    return self._log(bytes(rows[0][0]))
            raise NotFoundError(f"no group named {name!r}")

    def named(self, name: str) -> list[bytes]:
        """The ids of the groups kept here named ``name`` (any letter case)."""
        with self._lock, self._guard("reading groups"):
            rows = self._db.execute(
                "SELECT group_id FROM groups WHERE name = ? COLLATE NOCASE", (name,)
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def all(self) -> list[GroupLog]:
        """Every group kept, by name."""
        with self._lock, self._guard("reading groups"):
            rows = self._db.execute(
                "SELECT group_id FROM groups ORDER BY name COLLATE NOCASE, group_id"
            ).fetchall()
            return [self._log(bytes(r[0])) for r in rows]

    def forget(self, group_id: bytes) -> None:
        """Stop keeping a group: its log, membership and record of messages
        (the messages stay). :class:`GroupUnknownError`."""
        with self._database.transaction(), self._guard("forgetting a group"):
            rowid = self._rowid(group_id)
            self._db.execute("DELETE FROM groups WHERE id = ?", (rowid,))
            self._logs.pop(group_id, None)

    def member_contacts(self, group_id: bytes, *, sender: bytes) -> tuple[list[Contact], list[str]]:
        """The current contacts and introduced members a send from ``sender``
        at the group's present head goes to (every member but ``sender``),
        and the names of the members we cannot reach (not introduced yet)."""
        with self._lock, self._guard("reading a group"):
            return self._audience(self._log(group_id), sender)

    def _audience(self, log: GroupLog, sender: bytes) -> tuple[list[Contact], list[str]]:
        contacts, unreachable = [], []
        # Contacts told of this home's move (trust.md §6) take nothing from
        # this address now: no copy is queued for them here.
        told = {row[0] for row in self._db.execute("SELECT contact_id FROM rotation_told")}
        for key, member in log.state.members.items():
            if key == sender:
                continue
            # A member introduced to us (groups.md §9) is reached as a contact is.
            contact = self._contacts.peer_by_address(OnionAddress.from_public_key(key))
            if contact is None or contact.id in told:
                unreachable.append(member.card.name)
            else:
                contacts.append(contact)
        return contacts, unreachable

    # -- sends -------------------------------------------------------------------------------

    def _send(self, send_id: bytes) -> GroupSend | None:
        rows = self._db.execute(
            "SELECT g.group_id, g.name, gm.head, gm.created_ms, gm.contact_id, c.name, "
            "gm.message_id, m.state, m.deposited_ms, m.kind "
            "FROM group_messages gm JOIN groups g ON g.id = gm.gid "
            "JOIN contacts c ON c.id = gm.contact_id "
            "JOIN messages m ON m.direction = 'out' AND m.contact_id = gm.contact_id "
            "AND m.id = gm.message_id "
            "WHERE gm.direction = 'out' AND gm.send_id = ? "
            "ORDER BY c.name COLLATE NOCASE, gm.contact_id",
            (send_id,),
        ).fetchall()
        if not rows:
            return None
        first = rows[0]
        copies = tuple(
            GroupCopy(r[4], r[5], bytes(r[6]), State(r[7]), deposited=r[8] is not None)
            for r in rows
        )
        return GroupSend(
            send_id, bytes(first[0]), first[1], bytes(first[2]), first[3], copies, Kind(first[9])
        )

    def send(self, send_id: bytes) -> GroupSend:
        """A group send by its id; :class:`NotFoundError`."""
        with self._lock, self._guard("reading a group send"):
            found = self._send(send_id)
        if found is None:
            raise NotFoundError(f"no group send {send_id.hex()}")
        return found

    def sends(self, group_id: bytes, limit: int = MAX_LIST_SENDS_SHOWN) -> list[GroupSend]:
        """The latest sends to a group (at most ``limit``, newest first)."""
        limit = max(0, min(limit, MAX_LIST_SENDS_SHOWN))
        with self._lock, self._guard("reading a group"):
            rowid = self._rowid(group_id)
            ids = self._db.execute(
                "SELECT send_id FROM group_messages WHERE gid = ? AND direction = 'out' "
                "GROUP BY send_id ORDER BY max(created_ms) DESC, max(rowid) DESC LIMIT ?",
                (rowid, limit),
            ).fetchall()
            found = [self._send(bytes(r[0])) for r in ids]
        return [s for s in found if s is not None]

    def queue_text(  # noqa: PLR0917 - the contract's signature
        self,
        group_id: bytes,
        send_id: bytes,
        created_ms: int,
        body: str,
        content_type: str,
        expires_at: int | None,
        *,
        sender: bytes,
        label: str = "",
        audience: Audience | None = None,
    ) -> QueuedGroupCopies:
        """Queue a text from ``sender`` (our identity key) to every other
        member of a group at its present head, one copy each, and the send's
        record, in one transaction: all or nothing.

        :class:`GroupNotAllowedError` when ``sender`` is no longer a member
        (removed, or left); :class:`ConfigError` when no member is a
        contact of ours nor introduced. Idempotent on ``send_id``: the same send again
        queues nothing and answers with the copies queued the first time.
        ``audience`` sees the members a new send goes to first, in the send's
        transaction, and may refuse it (a handling label's rules): then
        nothing is queued.
        """
        check_id(send_id, "a send id")
        with self._database.transaction(), self._guard("queueing a group send"):
            rowid = self._rowid(group_id)
            before = self._send(send_id)
            if before is not None:
                if before.group_id != group_id:
                    raise ConfigError(f"send id {send_id.hex()} is already a send to another group")
                return QueuedGroupCopies(before, ())
            log, contacts, unreachable = self._new_send(group_id, sender, audience)
            new = []
            for contact in contacts:
                message_id = group_copy_id(send_id, contact.address.public_key)
                seq = self._outbox.queue_text(
                    contact.id, message_id, created_ms, body, content_type, expires_at, label=label
                )
                if seq is None:  # pragma: no cover - a new send's ids are new
                    raise ConfigError(f"message id {message_id.hex()} is already in use")
                new.append((contact.id, message_id, seq))
            heads = sent_heads(log)
            self._record_send(rowid, send_id, heads, created_ms, [(c, i) for c, i, _ in new])
            send = self._send(send_id)
        assert send is not None
        return QueuedGroupCopies(send, tuple(new), tuple(unreachable), heads)

    def queue_file(
        self,
        group_id: bytes,
        send_id: bytes,
        created_ms: int,
        source: Path,
        max_size: int,
        *,
        sender: bytes,
        content_type: str = "application/octet-stream",
        expires_at: int | None = None,
        label: str = "",
        audience: Audience | None = None,
    ) -> QueuedGroupCopies:
        """Queue a file from ``sender`` to every other member of a group at
        its present heads: one encrypted copy and one offer each, all queued
        in one transaction with the send's record
        (:meth:`Outbox.queue_file_copies`; the copies are made outside the
        lock), as :meth:`queue_text` queues a text, with its errors and its
        ``audience``. Idempotent on ``send_id`` (the same file name, content
        type, label and BLAKE2b, else :class:`ConfigError`): the copies are
        those queued the first time. The daemon kicks each copy's contact."""
        check_id(send_id, "a send id")
        source = Path(source)
        with self._lock, self._guard("queueing a group send"):
            self._rowid(group_id)
            before = self._send(send_id)
            if before is None:
                log, contacts, unreachable = self._new_send(group_id, sender, audience)
                heads = sent_heads(log)
        if before is not None:
            self._check_same_file(before, group_id, source, max_size, content_type, label)
            return QueuedGroupCopies(before, ())
        copies = [(c.id, group_copy_id(send_id, c.address.public_key)) for c in contacts]

        def record() -> None:
            # In the copies' transaction: the group is still kept (else nothing is queued).
            self._record_send(self._rowid(group_id), send_id, heads, created_ms, copies)

        self._outbox.queue_file_copies(
            copies,
            created_ms,
            source.name,
            source,
            max_size,
            content_type=content_type,
            expires_at=expires_at,
            also=record,
            label=label,
        )
        with self._lock, self._guard("reading a group send"):
            send = self._send(send_id)
        assert send is not None
        return QueuedGroupCopies(send, (), tuple(unreachable), heads)

    def _new_send(
        self, group_id: bytes, sender: bytes, audience: Audience | None
    ) -> tuple[GroupLog, list[Contact], list[str]]:
        """The group's log and the members a new send from ``sender`` goes to
        (and those it cannot reach), as :meth:`queue_text` says: a sender no
        longer a member, or no member reachable, is refused, and ``audience``
        may refuse them. In the caller's lock or transaction."""
        log = self._log(group_id)
        if not log.state.is_member(sender):
            raise GroupNotAllowedError("we are no longer a member of this group")
        contacts, unreachable = self._audience(log, sender)
        if not contacts:
            if not unreachable and len(log.state.members) <= 1:
                raise ConfigError(f"the group {log.state.name!r} has no member but us")
            raise ConfigError(f"no member of the group {log.state.name!r} is reachable")
        if audience is not None:
            audience(contacts)
        return log, contacts, unreachable

    def _record_send(
        self,
        rowid: int,
        send_id: bytes,
        heads: Sequence[bytes],
        created_ms: int,
        copies: Sequence[tuple[int, bytes]],
    ) -> None:
        """A send's record: each copy (contact id, message id) at the heads it was sent at."""
        self._db.executemany(
            "INSERT INTO group_messages (direction, contact_id, message_id, gid, send_id, "
            "head, heads, created_ms) VALUES ('out', ?, ?, ?, ?, ?, ?, ?)",
            [
                (c, i, rowid, send_id, head_hash(heads), b"".join(heads), created_ms)
                for c, i in copies
            ],
        )

    def _check_same_file(  # noqa: PLR0917 - a send, and what it is made again with
        self,
        before: GroupSend,
        group_id: bytes,
        source: Path,
        max_size: int,
        content_type: str,
        label: str,
    ) -> None:
        """A group file send made again must be the same send: ConfigError."""
        first = before.copies[0]
        stored = self._messages.message(first.message_id, contact_id=first.contact_id)
        file = stored.file
        same = (
            before.group_id == group_id
            and file is not None
            and (file.name, file.content_type, stored.label) == (source.name, content_type, label)
            and digest_of(source, max_size) == file.blake2b
        )
        if not same:
            raise ConfigError(
                f"send id {before.id.hex()} is already another send "
                "(a send made again must name the same group and content)"
            )

    # -- receiving -----------------------------------------------------------------------------

    def check_post(self, group_id: bytes, author: bytes, heads: Sequence[bytes]) -> PostCheck:
        """:meth:`GroupLog.may_post` of a group kept here; :class:`GroupUnknownError`."""
        with self._lock, self._guard("reading a group"):
            return self._log(group_id).may_post(author, heads)

    def store_text(  # noqa: PLR0917 - the contract's signature
        self,
        contact: Contact,
        group_id: bytes,
        heads: Sequence[bytes],
        message_id: bytes,
        created_ms: int,
        body: str,
        content_type: str,
        now: int,
        *,
        label: str = "",
    ) -> bool:
        """Store a group text ``contact`` sent at ``heads``, with its group and
        head, once :meth:`GroupLog.may_post` accepts it: False when it is
        stored already (a resend). :class:`GroupUnknownError` for a group not
        kept here, :class:`GroupNotAllowedError` when its author was no
        member there, or has been removed since, or the heads are not all in
        our log (fetch them first); nothing is stored then."""
        with self._database.transaction(), self._guard("storing a group message"):
            rowid = self._rowid(group_id)
            check = self._log(group_id).may_post(contact.address.public_key, heads)
            if check.decision is not PostDecision.ACCEPT:
                raise GroupNotAllowedError(f"a group message refused: {check.decision.value}")
            inserted = self._messages.store_text(
                contact.id, message_id, created_ms, body, content_type, now, label=label
            )
            if inserted:
                self._db.execute(
                    "INSERT INTO group_messages (direction, contact_id, message_id, gid, "
                    "send_id, head, heads, created_ms) VALUES ('in', ?, ?, ?, NULL, ?, ?, ?)",
                    (contact.id, message_id, rowid, head_hash(heads), b"".join(heads), created_ms),
                )
            return inserted

    def note_file(
        self,
        contact: Contact,
        group_id: bytes,
        heads: Sequence[bytes],
        message_id: bytes,
        created_ms: int,
    ) -> None:
        """Record that the file ``contact`` offers under ``message_id`` at
        ``heads`` is the group's, once :meth:`GroupLog.may_post` accepts it
        (as :meth:`store_text`, with its errors; nothing is recorded then).
        Called in the transaction that starts (or resumes) its transfer; a
        file recorded already stays as it is."""
        with self._database.transaction(), self._guard("storing a group message"):
            rowid = self._rowid(group_id)
            check = self._log(group_id).may_post(contact.address.public_key, heads)
            if check.decision is not PostDecision.ACCEPT:
                raise GroupNotAllowedError(f"a group message refused: {check.decision.value}")
            self._db.execute(
                "INSERT OR IGNORE INTO group_messages (direction, contact_id, message_id, gid, "
                "send_id, head, heads, created_ms) VALUES ('in', ?, ?, ?, NULL, ?, ?, ?)",
                (contact.id, message_id, rowid, head_hash(heads), b"".join(heads), created_ms),
            )

    def message_ids(self, name: str) -> list[bytes]:
        """Every message of the group called ``name`` (or with that id, in
        hex), both ways, oldest first: at most MAX_EXPORT_MESSAGES + 1, so
        that an export can say the selection is too large."""
        group_id = self.find(name).group_id
        with self._lock, self._guard("reading a group's messages"):
            rows = self._db.execute(
                "SELECT gm.message_id FROM group_messages gm JOIN groups g ON g.id = gm.gid "
                "WHERE g.group_id = ? ORDER BY gm.rowid LIMIT ?",
                (group_id, MAX_EXPORT_MESSAGES + 1),
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def of_message(
        self, direction: Direction, contact_id: int, message_id: bytes
    ) -> ReceivedGroupText | None:
        """The group a message belongs to, and the head it was sent at (None:
        no group's)."""
        with self._lock, self._guard("reading a group message"):
            row = self._db.execute(
                "SELECT g.group_id, g.name, gm.head FROM group_messages gm "
                "JOIN groups g ON g.id = gm.gid "
                "WHERE gm.direction = ? AND gm.contact_id = ? AND gm.message_id = ?",
                (direction.value, contact_id, message_id),
            ).fetchone()
        if row is None:
            return None
        return ReceivedGroupText(bytes(row[0]), row[1], bytes(row[2]))

    def wire_info(
        self, contact_id: int, message_ids: Sequence[bytes]
    ) -> dict[bytes, tuple[bytes, tuple[bytes, ...]]]:
        """Of these outgoing messages to a contact, those that are copies of a
        group send: by message id, the group's id and the heads it names."""
        if not message_ids:
            return {}
        found: dict[bytes, tuple[bytes, tuple[bytes, ...]]] = {}
        with self._lock, self._guard("reading group sends"):
            for message_id in message_ids:
                row = self._db.execute(
                    "SELECT g.group_id, gm.heads FROM group_messages gm "
                    "JOIN groups g ON g.id = gm.gid WHERE gm.direction = 'out' "
                    "AND gm.contact_id = ? AND gm.message_id = ?",
                    (contact_id, message_id),
                ).fetchone()
                if row is not None:
                    raw = bytes(row[1])
                    split = tuple(raw[j : j + 32] for j in range(0, len(raw), 32))
                    found[message_id] = (bytes(row[0]), split)
        return found

    def shared_with(self, identity_key: bytes) -> list[GroupLog]:
        """The groups whose log ever had this key as a member (its create or an
        add): those we keep in step with that contact."""
        with self._lock, self._guard("reading groups"):
            rows = self._db.execute("SELECT group_id FROM groups ORDER BY id").fetchall()
            logs = [self._log(bytes(r[0])) for r in rows]
        return [log for log in logs if identity_key in ever_members(log)]

    def known(self, group_id: bytes) -> bool:
        with self._lock, self._guard("reading a group"):
            row = self._db.execute(
                "SELECT 1 FROM groups WHERE group_id = ?", (group_id,)
            ).fetchone()
        return row is not None

    def send_of_message(self, contact_id: int, message_id: bytes) -> GroupSend | None:
        """The group send an outgoing message is a copy of (None: none)."""
        with self._lock, self._guard("reading a group send"):
            row = self._db.execute(
                "SELECT send_id FROM group_messages WHERE direction = 'out' AND contact_id = ? "
                "AND message_id = ?",
                (contact_id, message_id),
            ).fetchone()
            return None if row is None else self._send(bytes(row[0]))
