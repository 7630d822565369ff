"""Distribution lists: named sets of contacts, and what was sent to each list.

A part of :class:`~onionpost.store.Store` over its
:class:`~onionpost.store._database.Database` (local-api.md §6,
distribution lists). A list is local: its members never learn of it. A send to a list is
one ordinary outgoing message per member, each with its own id, queued in
one transaction with the list's record of the send (``list_copies``), so
each member gets exactly one copy over the usual one-to-one path, replies
come back one to one, and each copy's state is its own message's. Nothing
on the wire changes.

A copy's id is derived from the send's id and the member's address
(:func:`copy_id`): a send made again under the same id (its answer lost)
finds the copies already queued and queues nothing new; two members cannot
tell from their ids that their copies are one send.

Bounds (limits.py): MAX_LISTS lists, MAX_LIST_MEMBERS members each. A
member is a current contact; removing the contact takes it off every list
(:meth:`~onionpost.store._contacts.Contacts.remove_contact`).
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from onionpost.errors import ConfigError, NotFoundError, UnknownContactError
from onionpost.limits import MAX_LIST_MEMBERS, MAX_LIST_NAME, MAX_LIST_SENDS_SHOWN, MAX_LISTS
from onionpost.names import contact_name_problem
from onionpost.proto.address import OnionAddress
from onionpost.store._contacts import Contacts, contact_of
from onionpost.store._database import Database
from onionpost.store._files import digest_of
from onionpost.store._outbox import Outbox
from onionpost.store._records import Contact, Kind, OutgoingFile, State
from onionpost.store._rows import Rows, check_id

__all__ = [
    "Audience",
    "DistributionList",
    "ListCopy",
    "ListSend",
    "Lists",
    "QueuedCopies",
    "copy_id",
]

#: A check of a send's recipients, run with the members it is about to go to
#: inside the send's transaction (so the members it saw are the members sent
#: to); it raises to refuse the send, and then nothing is queued.
Audience = Callable[[Sequence[Contact]], None]

# BLAKE2b personalisation of copy ids (16 bytes at most).
_COPY_PERSON: Final = b"onionpost-list"


def copy_id(send_id: bytes, address_key: bytes) -> bytes:
    """The id of a send's copy to the member whose onion address has the
    public key ``address_key``: BLAKE2b-128 of both, personalised."""
    digest = hashlib.blake2b(send_id + address_key, digest_size=16, person=_COPY_PERSON)
    return digest.digest()


@dataclass(frozen=True)
class DistributionList:
    """A list and its members (current contacts, by name)."""

    id: int
    name: str
    created_ms: int
    members: tuple[Contact, ...]


@dataclass(frozen=True)
class ListCopy:
    """One member's copy of a send: an ordinary outgoing message."""

    contact_id: int
    contact: str
    message_id: bytes
    state: State
    deposited: bool = False  # the member's mailbox holds it, not yet acknowledged


@dataclass(frozen=True)
class ListSend:
    """A send to a list, with each member's copy (ordered by contact name)."""

    id: bytes
    list: str
    kind: Kind
    created_ms: int
    copies: tuple[ListCopy, ...]


@dataclass(frozen=True)
class QueuedCopies:
    """What a text send queued: the send, and for each copy newly queued its
    (contact id, message id, outbox seq), for the delivery engine."""

    send: ListSend
    new: tuple[tuple[int, bytes, int], ...]


def _check_list_name(name: object) -> str:
    # A list's name follows a contact name's rule (onionpost.names); the
    # two bounds are one number today, and each is named.
    problem = contact_name_problem(name)
    if problem is not None:
        raise ConfigError(f"a list name {problem}")
    assert isinstance(name, str)
    if len(name) > MAX_LIST_NAME:
        raise ConfigError(f"a list name is at most {MAX_LIST_NAME} characters")
    return name


def _distinct(names: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    for name in names:
        folded = name.casefold()
        if folded in seen:
            raise ConfigError(f"{name!r} is named twice")
        seen.add(folded)
    return list(names)


class Lists:
    """Creating, changing and reading lists, and queueing sends to them."""

    def __init__(self, database: Database, rows: Rows, contacts: Contacts, outbox: Outbox) -> None:
        self._database = database
        self._lock = database.lock
        self._guard = database.guard
        self._rows = rows
        self._contacts = contacts
        self._outbox = outbox

    def __repr__(self) -> str:
        return "Lists()"

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    # -- reading (call with the lock held) -------------------------------------------

    def _row(self, name: str) -> tuple[int, str, int]:
        row = self._db.execute(
            "SELECT id, name, created_ms FROM lists WHERE name = ? COLLATE NOCASE", (name,)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"no list named {name!r}")
        return int(row[0]), str(row[1]), int(row[2])

    def _members(self, list_id: int) -> tuple[Contact, ...]:
        rows = self._db.execute(
            "SELECT c.* FROM list_members m JOIN current_contacts c ON c.id = m.contact_id "
            "WHERE m.list_id = ? ORDER BY c.name COLLATE NOCASE",
            (list_id,),
        ).fetchall()
        return tuple(contact_of(row) for row in rows)

    def _list(self, name: str) -> DistributionList:
        list_id, stored_name, created_ms = self._row(name)
        return DistributionList(list_id, stored_name, created_ms, self._members(list_id))

    def _contact_ids(self, names: Sequence[str]) -> list[int]:
        ids = []
        for name in _distinct(names):
            # As every command names a contact: an address means the one at it.
            found = self._contacts.named(name)
            if found is None:
                raise UnknownContactError(name)
            if found.id in ids:
                # By its name and by its address.
                raise ConfigError(f"{name!r} is named twice")
            ids.append(found.id)
        return ids

    def _send(self, send_id: bytes) -> ListSend | None:
        rows = self._db.execute(
            "SELECT l.name, lc.created_ms, lc.contact_id, c.name, lc.message_id, m.kind, m.state, "
            "m.deposited_ms "
            "FROM list_copies lc JOIN lists l ON l.id = lc.list_id "
            "JOIN contacts c ON c.id = lc.contact_id "
            "JOIN messages m ON m.direction = 'out' AND m.id = lc.message_id "
            "WHERE lc.send_id = ? ORDER BY c.name COLLATE NOCASE, lc.contact_id",
            (send_id,),
        ).fetchall()
        if not rows:
            return None
        copies = tuple(
            ListCopy(r[2], r[3], r[4], State(r[6]), deposited=r[7] is not None) for r in rows
        )
        return ListSend(send_id, rows[0][0], Kind(rows[0][5]), rows[0][1], copies)

    # -- lists -------------------------------------------------------------------------

    def create(self, name: str, members: Sequence[str], now: int) -> DistributionList:
        """A new list of current contacts (it may start empty).

        :class:`ConfigError` for a bad or taken name (any letter case), a
        member named twice, MAX_LISTS lists already or more than
        MAX_LIST_MEMBERS members; :class:`UnknownContactError` for a name no
        current contact has. Nothing is stored on any error.
        """
        name = _check_list_name(name)
        if len(members) > MAX_LIST_MEMBERS:
            raise ConfigError(f"a list has at most {MAX_LIST_MEMBERS} members")
        with self._database.transaction(), self._guard("creating a list"):
            taken = self._db.execute(
                "SELECT name FROM lists WHERE name = ? COLLATE NOCASE", (name,)
            ).fetchone()
            if taken is not None:
                raise ConfigError(f"a list named {taken[0]!r} already exists")
            (count,) = self._db.execute("SELECT count(*) FROM lists").fetchone()
            if count >= MAX_LISTS:
                raise ConfigError(f"there are {MAX_LISTS} lists already: delete one first")
            contact_ids = self._contact_ids(members)
            cursor = self._db.execute(
                "INSERT INTO lists (name, created_ms) VALUES (?, ?)", (name, now)
            )
            list_id = cursor.lastrowid
            self._db.executemany(
                "INSERT INTO list_members (list_id, contact_id, added_ms) VALUES (?, ?, ?)",
                [(list_id, c, now) for c in contact_ids],
            )
            return self._list(name)

    def add(self, name: str, members: Sequence[str], now: int) -> DistributionList:
        """Add current contacts to a list. :class:`NotFoundError` for an unknown
        list; :class:`ConfigError` for a member already on it, named twice,
        or past MAX_LIST_MEMBERS; :class:`UnknownContactError`."""
        if not members:
            raise ConfigError("name at least one contact to add")
        with self._database.transaction(), self._guard("changing a list"):
            found = self._list(name)
            contact_ids = self._contact_ids(members)
            on = {c.id: c.name for c in found.members}
            already = [on[c] for c in contact_ids if c in on]
            if already:
                raise ConfigError(f"{already[0]!r} is on the list {found.name!r} already")
            if len(on) + len(contact_ids) > MAX_LIST_MEMBERS:
                raise ConfigError(f"a list has at most {MAX_LIST_MEMBERS} members")
            self._db.executemany(
                "INSERT INTO list_members (list_id, contact_id, added_ms) VALUES (?, ?, ?)",
                [(found.id, c, now) for c in contact_ids],
            )
            return self._list(name)

    def remove(self, name: str, members: Sequence[str]) -> DistributionList:
        """Take contacts off a list (their sends so far stay). :class:`ConfigError`
        for a contact not on it; :class:`NotFoundError` for an unknown list."""
        if not members:
            raise ConfigError("name at least one contact to remove")
        with self._database.transaction(), self._guard("changing a list"):
            found = self._list(name)
            on = {c.name.casefold(): c.id for c in found.members}
            at = {c.address: c.id for c in found.members}
            ids: list[int] = []
            for member in _distinct(members):
                address = OnionAddress.in_text(member)
                contact_id = on.get(member.casefold()) if address is None else at.get(address)
                if contact_id is None:
                    raise ConfigError(f"{member!r} is not on the list {found.name!r}")
                if contact_id in ids:
                    raise ConfigError(f"{member!r} is named twice")
                ids.append(contact_id)
            self._db.executemany(
                "DELETE FROM list_members WHERE list_id = ? AND contact_id = ?",
                [(found.id, c) for c in ids],
            )
            return self._list(name)

    def delete(self, name: str) -> DistributionList:
        """Delete a list and its record of sends; the copies sent stay messages."""
        with self._database.transaction(), self._guard("deleting a list"):
            found = self._list(name)
            self._db.execute("DELETE FROM lists WHERE id = ?", (found.id,))
            return found

    def show(self, name: str) -> DistributionList:
        """A list and its members; :class:`NotFoundError`."""
        with self._lock, self._guard("reading a list"):
            return self._list(name)

    def all(self) -> list[DistributionList]:
        """Every list, by name."""
        with self._lock, self._guard("reading lists"):
            names = [
                r[0]
                for r in self._db.execute(
                    "SELECT name FROM lists ORDER BY name COLLATE NOCASE"
                ).fetchall()
            ]
            return [self._list(n) for n in names]

    def sends(self, name: str, limit: int = MAX_LIST_SENDS_SHOWN) -> list[ListSend]:
        """The latest sends to a list (at most ``limit``, newest first), each
        with its copies' states."""
        limit = max(0, min(limit, MAX_LIST_SENDS_SHOWN))
        with self._lock, self._guard("reading a list"):
            list_id = self._row(name)[0]
            ids = self._db.execute(
                "SELECT send_id FROM list_copies WHERE list_id = ? GROUP BY send_id "
                "ORDER BY max(created_ms) DESC, max(rowid) DESC LIMIT ?",
                (list_id, limit),
            ).fetchall()
            found = [self._send(r[0]) for r in ids]
        return [s for s in found if s is not None]

    def send(self, send_id: bytes) -> ListSend:
        """A send by its id; :class:`NotFoundError`."""
        with self._lock, self._guard("reading a list send"):
            found = self._send(send_id)
        if found is None:
            raise NotFoundError(f"no list send {send_id.hex()}")
        return found

    # -- sends ---------------------------------------------------------------------------

    def _targets(
        self, name: str, send_id: bytes, kind: Kind, audience: Audience | None
    ) -> tuple[int, list[Contact], ListSend | None]:
        """The list's id, the members to send to and the send already made
        under ``send_id`` (or None); :class:`ConfigError` when the list has
        no members, or ``send_id`` is another list's or another kind's send."""
        list_id, stored_name, _created = self._row(name)
        before = self._send(send_id)
        if before is not None and (before.list.casefold() != stored_name.casefold()):
            raise ConfigError(f"send id {send_id.hex()} is already a send to another list")
        if before is not None and before.kind is not kind:
            raise ConfigError(f"send id {send_id.hex()} is already another kind of send")
        members = list(self._members(list_id))
        if before is None and not members:
            raise ConfigError(f"the list {stored_name!r} has no members")
        if before is None and audience is not None:
            audience(members)
        return list_id, members, before

    def _record(
        self, list_id: int, send_id: bytes, copies: Sequence[tuple[int, bytes]], now: int
    ) -> None:
        self._db.executemany(
            "INSERT INTO list_copies (send_id, list_id, contact_id, message_id, created_ms) "
            "VALUES (?, ?, ?, ?, ?)",
            [(send_id, list_id, contact_id, message_id, now) for contact_id, message_id in copies],
        )

    def queue_text(  # noqa: PLR0917 - the contract's signature
        self,
        name: str,
        send_id: bytes,
        created_ms: int,
        body: str,
        content_type: str,
        expires_at: int | None,
        *,
        audience: Audience | None = None,
        label: str = "",
    ) -> QueuedCopies:
        """Queue a text to every member of list ``name``, one copy each, and
        the send's record, in one transaction: all or nothing.

        Idempotent on ``send_id``: the same send again queues nothing and
        answers with the copies queued the first time (a different text
        under it is :class:`ConfigError`). :class:`NotFoundError` for an
        unknown list, :class:`ConfigError` for an empty one. ``audience``
        sees the members first and may refuse the send (a new one only).
        """
        check_id(send_id, "a send id")
        with self._database.transaction(), self._guard("queueing a list send"):
            list_id, members, before = self._targets(name, send_id, Kind.TEXT, audience)
            if before is not None:
                current = {c.id for c in self._contacts_current()}
                for copy in before.copies:
                    if copy.contact_id in current:
                        # Raises when the text differs from the one queued.
                        self._outbox.queue_text(
                            copy.contact_id,
                            copy.message_id,
                            created_ms,
                            body,
                            content_type,
                            expires_at,
                            label=label,
                        )
                return QueuedCopies(before, ())
            new = []
            for member in members:
                message_id = copy_id(send_id, member.address.public_key)
                seq = self._outbox.queue_text(
                    member.id, message_id, created_ms, body, content_type, expires_at, label=label
                )
                if seq is None:  # pragma: no cover - a new send's ids are new
                    raise ConfigError(f"message id {message_id.hex()} is already in use")
                new.append((member.id, message_id, seq))
            self._record(list_id, send_id, [(c, i) for c, i, _ in new], created_ms)
            send = self._send(send_id)
        assert send is not None
        return QueuedCopies(send, tuple(new))

    def _contacts_current(self) -> list[Contact]:
        rows = self._db.execute("SELECT * FROM current_contacts").fetchall()
        return [contact_of(r) for r in rows]

    def queue_file(  # noqa: PLR0917 - the contract's signature
        self,
        name: str,
        send_id: bytes,
        created_ms: int,
        file_name: str,
        source: Path,
        max_size: int,
        *,
        content_type: str = "application/octet-stream",
        expires_at: int | None = None,
        audience: Audience | None = None,
        label: str = "",
    ) -> tuple[ListSend, list[OutgoingFile]]:
        """Queue a file to every member of list ``name``: one encrypted copy and
        one offer each, all queued in one transaction with the send's record
        (:meth:`Outbox.queue_file_copies`). The copies are made outside the
        lock. Idempotent on ``send_id`` as :meth:`queue_text` (the same file
        name and BLAKE2b, else :class:`ConfigError`); returns the send and the
        offers newly queued."""
        check_id(send_id, "a send id")
        with self._lock, self._guard("queueing a list send"):
            list_id, members, before = self._targets(name, send_id, Kind.FILE, audience)
            first = None
            if before is not None:
                first = self._db.execute(
                    "SELECT * FROM message_rows WHERE direction = 'out' AND id = ?",
                    (before.copies[0].message_id,),
                ).fetchone()
        if before is not None:
            assert first is not None  # the copy's row: list_copies joins messages
            stored = self._rows.stored(first)
            assert stored.file is not None
            same = (stored.file.name, stored.file.content_type, stored.label) == (
                file_name,
                content_type,
                label,
            )
            if not same or digest_of(Path(source), max_size) != stored.file.blake2b:
                raise ConfigError(
                    f"send id {send_id.hex()} is already another send "
                    "(a send made again must name the same list and content)"
                )
            return before, []
        copies = [(m.id, copy_id(send_id, m.address.public_key)) for m in members]
        offers = self._outbox.queue_file_copies(
            copies,
            created_ms,
            file_name,
            source,
            max_size,
            content_type=content_type,
            expires_at=expires_at,
            also=lambda: self._record(list_id, send_id, copies, created_ms),
            label=label,
        )
        with self._lock, self._guard("reading a list send"):
            send = self._send(send_id)
        assert send is not None
        return send, offers
