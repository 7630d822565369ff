"""The contacts table: who we know, and how reaching each went.

A part of :class:`~onionpost.store.Store` over its
:class:`~onionpost.store._database.Database`. A removed contact's row stays
(``removed = 1``), so its messages keep their name in the history; names are
unique among current contacts in any letter case, and so are addresses
(the view ``current_contacts``). A change of contacts is checkpointed out of
the WAL at once (storage.md §7).

A member of a group we share who is not our contact is *introduced*
(groups.md §9): a row of its own, with the group that introduced it and the
admin whose operation carried its card, reached as a contact is
(``current_peers``) but never listed, named or written to as one. Adding its
card as a contact turns that row into a contact's, so its messages stay
with it; when no group we share holds it any more, the row is removed as a
contact's is.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

from onionpost.errors import ConfigError, UnknownContactError
from onionpost.names import contact_name_problem, stored_name
from onionpost.proto.address import OnionAddress
from onionpost.proto.evidence import Entry, Event
from onionpost.store._database import Database
from onionpost.store._evidence import EvidenceLog
from onionpost.store._records import Contact

__all__ = ["Contacts", "contact_of"]

# A safety number as the daemon formats it: 60 digits in groups (evidence detail).
_MAX_NUMBER = 128


def _check_contact_name(name: object) -> str:
    # A card's name is a contact's name: one rule (onionpost.names).
    problem = contact_name_problem(name)
    if problem is not None:
        raise ConfigError(f"a contact name {problem}")
    assert isinstance(name, str)
    return name


def _check_own_name(name: object) -> str:
    """A name we give a contact (added, renamed): the rule of every name, and
    not an onion address. A command that names a contact by its address
    means the contact at that address; a name that is an address (another
    contact's, on a hostile card) would take its place."""
    checked = stored_name(_check_contact_name(name))
    if OnionAddress.in_text(checked) is not None:
        raise ConfigError(
            f"a contact name cannot be an onion address ({checked!r}): an address "
            "always names the contact at it; choose another name"
        )
    return checked


def contact_of(row: Sequence[Any]) -> Contact:
    """A row of ``current_contacts`` or ``current_peers``."""
    return Contact(
        id=row[0],
        name=row[1],
        address=OnionAddress.from_public_key(row[2]),
        client_auth_public=row[3],
        added_ms=row[4],
        last_seen_ms=row[5],
        last_success_ms=row[6],
        failures=row[7],
        mailbox=None if row[8] is None else OnionAddress.from_public_key(row[8]),
        mailbox_version=row[9],
        mailbox_registered=bool(row[10]),
        mailbox_told=row[11],
        introduced_group=None if len(row) < 14 or row[12] is None else bytes(row[12]),
        introduced_by=None if len(row) < 14 or row[13] is None else bytes(row[13]),
    )


def _split(value: str | None) -> tuple[str, ...]:
    return () if not value else tuple(value.split("\n"))


class Contacts:
    """Adding, removing and finding contacts; see the module docstring."""

    def __init__(self, database: Database, evidence: EvidenceLog) -> None:
        self._database = database
        self._lock = database.lock
        self._guard = database.guard
        self._evidence = evidence
        # Label limits read, by contact: every send asks, and they rarely
        # change. An entry is dropped when its limits are written (and so
        # read again after that transaction, whether it committed or not).
        self._limits: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {}

    def __repr__(self) -> str:
        return "Contacts()"

    def _active_named(self, text: str) -> Contact | None:
        """The contact ``text`` names: the one at that address when it is an
        onion address, else the one of that name (any letter case)."""
        address = OnionAddress.in_text(text)
        if address is not None:
            return self._active_by_address(address)
        found = self._active_by_name(text)
        if found is None and stored_name(text) != text:
            found = self._active_by_name(stored_name(text))
        return found

    def _active_by_name(self, name: str) -> Contact | None:
        row = self._database.conn.execute(
            "SELECT * FROM current_contacts WHERE name = ? COLLATE NOCASE", (name,)
        ).fetchone()
        return None if row is None else contact_of(row)

    def _active_by_address(self, address: OnionAddress) -> Contact | None:
        row = self._database.conn.execute(
            "SELECT * FROM current_contacts WHERE address = ?",
            (address.public_key,),
        ).fetchone()
        return None if row is None else contact_of(row)

    def require(self, contact_id: int, *, active: bool) -> None:
        """:class:`ConfigError` unless ``contact_id`` is a contact (a current one,
        with ``active``). For the other parts, with the lock held."""
        row = self._database.conn.execute(
            "SELECT removed FROM contacts WHERE id = ?", (contact_id,)
        ).fetchone()
        if row is None or (active and row[0]):
            raise ConfigError(f"no contact with id {contact_id}")

    def add_contact(
        self, name: str, address: OnionAddress, client_auth_public: bytes, now: int
    ) -> Contact:
        """A new contact; :class:`ConfigError` if the name (any letter case) or the
        address is already a contact's, or the name is an onion address."""
        name = _check_own_name(name)
        if not isinstance(address, OnionAddress):
            raise ConfigError("a contact's address is an OnionAddress")
        if not isinstance(client_auth_public, bytes) or len(client_auth_public) != 32:
            raise ConfigError("a client-authorization public key is 32 bytes")
        with self._database.transaction(), self._guard("adding a contact"):
            same_name = self._active_by_name(name)
            if same_name is not None:
                raise ConfigError(f"a contact named {same_name.name!r} already exists")
            same_address = self._active_by_address(address)
            if same_address is not None:
                raise ConfigError(f"{address} is already a contact, named {same_address.name!r}")
            db = self._database.conn
            introduced = self._peer_by_address(address)
            if introduced is not None:
                # A member a group introduced becomes a contact: the same row,
                # so its messages and its link stay (groups.md §9).
                db.execute(
                    "UPDATE contacts SET name = ?, client_auth_public = ?, "
                    "introduced_group = NULL, introduced_by = NULL WHERE id = ?",
                    (name, client_auth_public, introduced.id),
                )
                contact_id: int | None = introduced.id
            else:
                cursor = db.execute(
                    "INSERT INTO contacts (name, address, client_auth_public, added_ms) "
                    "VALUES (?, ?, ?, ?)",
                    (name, address.public_key, client_auth_public, now),
                )
                contact_id = cursor.lastrowid
            row = db.execute(
                "SELECT * FROM current_contacts WHERE id = ?", (contact_id,)
            ).fetchone()
            contact = contact_of(row)
            self._evidence.append((Entry(Event.CONTACT_ADDED, now, str(address), detail=name),))
        self._settle()
        return contact

    def move(
        self, contact_id: int, address: OnionAddress, client_auth_public: bytes, now: int
    ) -> Contact:
        """A contact's rotation to a new onion address (trust.md §6), decided
        by the caller: the same row (its messages, its outbox, its name) at
        ``address`` with its new tor client key, to be registered at our
        mailbox again and told our mailbox again, the mailbox it announced
        forgotten (its new address announces its own); its safety number,
        which was the old key's, no longer counts as compared. The evidence
        log records the old address removed and the new one added, under its
        name. :class:`ConfigError` if it is no current peer or ``address`` is
        another's."""
        if not isinstance(client_auth_public, bytes) or len(client_auth_public) != 32:
            raise ConfigError("a client-authorization public key is 32 bytes")
        with self._database.transaction(), self._guard("moving a contact"):
            db = self._database.conn
            row = db.execute("SELECT * FROM current_peers WHERE id = ?", (contact_id,)).fetchone()
            if row is None:
                raise ConfigError(f"no contact with id {contact_id}")
            old = contact_of(row)
            if self._peer_by_address(address) is not None:
                raise ConfigError(f"{address} is already a contact")
            # The mailbox it announced was its old address's (the new one
            # announces its own), and the new address has not been told ours.
            db.execute(
                "UPDATE contacts SET address = ?, client_auth_public = ?, mailbox_registered = 0, "
                "mailbox = NULL, mailbox_version = 0, mailbox_told = 0 WHERE id = ?",
                (address.public_key, client_auth_public, contact_id),
            )
            db.execute("DELETE FROM contact_verified WHERE contact_id = ?", (contact_id,))
            moved = contact_of(
                db.execute("SELECT * FROM current_peers WHERE id = ?", (contact_id,)).fetchone()
            )
            self._evidence.append(
                (
                    Entry(Event.CONTACT_REMOVED, now, str(old.address), detail=old.name),
                    Entry(Event.CONTACT_ADDED, now, str(address), detail=old.name),
                )
            )
        self._settle()
        return moved

    def remove_contact(self, name: str, now: int | None = None) -> Contact:
        """Remove a contact; its messages stay, under its name, in the history,
        and it leaves every distribution list.
        ``now`` (ms) is the time the evidence log records (the clock's by default)."""
        now = int(time.time() * 1000) if now is None else now
        with self._database.transaction(), self._guard("removing a contact"):
            found = self._active_named(name)
            if found is None:
                raise UnknownContactError(name)
            self._database.conn.execute("UPDATE contacts SET removed = 1 WHERE id = ?", (found.id,))
            # A removed contact leaves every distribution list (its sends so
            # far stay recorded).
            self._database.conn.execute(
                "DELETE FROM list_members WHERE contact_id = ?", (found.id,)
            )
            self._evidence.append(
                (Entry(Event.CONTACT_REMOVED, now, str(found.address), detail=found.name),)
            )
        self._settle()
        return found

    def rename_contact(self, name: str, new_name: str, now: int) -> Contact:
        """Call contact ``name`` ``new_name`` from now on: the same row, so its
        messages (shown under the new name), its outbox, its verification and
        its lists stay. The evidence log records it (CONTACT_RENAMED, the new
        name as detail). :class:`ConfigError` if ``new_name`` is another
        contact's (any letter case) or an onion address; renaming to the same
        name records nothing."""
        new_name = _check_own_name(new_name)
        with self._database.transaction(), self._guard("renaming a contact"):
            found = self._active_named(name)
            if found is None:
                raise UnknownContactError(name)
            if found.name == new_name:
                return found
            other = self._active_by_name(new_name)
            if other is not None and other.id != found.id:
                raise ConfigError(f"a contact named {other.name!r} already exists")
            db = self._database.conn
            db.execute("UPDATE contacts SET name = ? WHERE id = ?", (new_name, found.id))
            row = db.execute("SELECT * FROM current_contacts WHERE id = ?", (found.id,)).fetchone()
            self._evidence.append(
                (Entry(Event.CONTACT_RENAMED, now, str(found.address), detail=new_name),)
            )
        return contact_of(row)

    def mark_verified(self, name: str, safety_number: str, now: int) -> Contact:
        """Record that the user compared ``safety_number`` with the contact and
        it matched (evidence.md: a CONTACT_VERIFIED entry, in the same
        transaction). Confirming again records it again, with the new time."""
        if not isinstance(safety_number, str) or not 0 < len(safety_number) <= _MAX_NUMBER:
            raise ConfigError("a safety number is a short string of digits")
        with self._database.transaction(), self._guard("verifying a contact"):
            found = self._active_named(name)
            if found is None:
                # A member a group introduced is named by its address (§9).
                with contextlib.suppress(ConfigError):
                    found = self._peer_by_address(OnionAddress.parse(name))
            if found is None:
                raise UnknownContactError(name)
            self._database.conn.execute(
                "INSERT OR REPLACE INTO contact_verified (contact_id, verified_ms, safety_number) "
                "VALUES (?, ?, ?)",
                (found.id, now, safety_number),
            )
            self._evidence.append(
                (Entry(Event.CONTACT_VERIFIED, now, str(found.address), detail=safety_number),)
            )
        return found

    def verified(self) -> dict[int, int]:
        """When each current contact's (or introduced member's) safety number
        was confirmed (ms), by id."""
        with self._lock, self._guard("reading contacts"):
            rows = self._database.conn.execute(
                "SELECT v.contact_id, v.verified_ms FROM contact_verified v "
                "JOIN current_peers c ON c.id = v.contact_id"
            ).fetchall()
        return {int(contact_id): int(when) for contact_id, when in rows}

    def _settle(self) -> None:
        """Checkpoint the WAL into the database file and empty it, unless inside
        a caller's transaction. After a change of contacts (who may fetch our
        descriptor, where texts go) the earlier state is then nowhere on the
        disk: cutting or deleting the WAL cannot bring it back (storage.md §7)."""
        self._database.settle("checkpointing the store")

    def all(self) -> list[Contact]:
        """The current contacts, by name."""
        with self._lock, self._guard("listing contacts"):
            rows = self._database.conn.execute(
                "SELECT * FROM current_contacts ORDER BY name COLLATE NOCASE"
            ).fetchall()
        return [contact_of(row) for row in rows]

    def named(self, text: str) -> Contact | None:
        """The current contact ``text`` names (as :meth:`contact`), or None;
        for the other parts of the store, inside their transaction."""
        return self._active_named(text)

    def contact(self, name: str) -> Contact:
        """The contact called ``name`` (any letter case), or at that onion
        address when ``name`` is one; :class:`UnknownContactError`."""
        with self._lock, self._guard("reading a contact"):
            contact = self._active_named(name)
        if contact is None:
            raise UnknownContactError(name)
        return contact

    def contact_by_id(self, contact_id: int) -> Contact | None:
        """A current contact, or a member introduced to us, by its id (None if
        removed or unknown): whom a session or an envelope is with."""
        with self._lock, self._guard("reading contacts"):
            row = self._database.conn.execute(
                "SELECT * FROM current_peers WHERE id = ?", (contact_id,)
            ).fetchone()
        return None if row is None else contact_of(row)

    def contact_by_address(self, address: OnionAddress) -> Contact | None:
        """A current contact by its address (an introduced member is none)."""
        with self._lock, self._guard("reading a contact"):
            return self._active_by_address(address)

    # -- members introduced by a group (groups.md §9) ----------------------------------

    def _peer_by_address(self, address: OnionAddress) -> Contact | None:
        row = self._database.conn.execute(
            "SELECT * FROM current_peers WHERE address = ?", (address.public_key,)
        ).fetchone()
        return None if row is None else contact_of(row)

    def peer_by_address(self, address: OnionAddress) -> Contact | None:
        """A current contact or introduced member by its address."""
        with self._lock, self._guard("reading a contact"):
            return self._peer_by_address(address)

    def peers(self) -> list[Contact]:
        """Everyone delivery reaches: the current contacts and the members
        introduced to us, contacts first, each by name."""
        with self._lock, self._guard("listing contacts"):
            rows = self._database.conn.execute(
                "SELECT * FROM current_peers "
                "ORDER BY introduced_group IS NOT NULL, name COLLATE NOCASE, id"
            ).fetchall()
        return [contact_of(row) for row in rows]

    def introduced(self) -> list[Contact]:
        """The members introduced to us by a group, not our contacts."""
        return [p for p in self.peers() if p.introduced]

    def introduce(  # noqa: PLR0917 - a card and where it came from
        self,
        name: str,
        address: OnionAddress,
        client_auth_public: bytes,
        group_id: bytes,
        by: bytes,
        now: int,
    ) -> Contact:
        """Record a member of ``group_id`` who is not our contact, its card
        carried by the operation ``by`` signed; :class:`ConfigError` if it is
        a contact or introduced already."""
        name = _check_contact_name(name)
        if len(client_auth_public) != 32 or len(group_id) != 16 or len(by) != 32:
            raise ConfigError("an introduction is a 32-byte key, a group id and an admin's key")
        with self._database.transaction(), self._guard("introducing a member"):
            if self._peer_by_address(address) is not None:
                raise ConfigError(f"{address} is known already")
            cursor = self._database.conn.execute(
                "INSERT INTO contacts (name, address, client_auth_public, added_ms, "
                "introduced_group, introduced_by) VALUES (?, ?, ?, ?, ?, ?)",
                (name, address.public_key, client_auth_public, now, group_id, by),
            )
            row = self._database.conn.execute(
                "SELECT * FROM current_peers WHERE id = ?", (cursor.lastrowid,)
            ).fetchone()
        self._settle()
        return contact_of(row)

    def reintroduce(self, contact_id: int, group_id: bytes, by: bytes) -> None:
        """An introduced member is now held by another group we share."""
        with self._database.transaction(), self._guard("introducing a member"):
            self._database.conn.execute(
                "UPDATE contacts SET introduced_group = ?, introduced_by = ? "
                "WHERE id = ? AND introduced_group IS NOT NULL AND removed = 0",
                (group_id, by, contact_id),
            )

    def drop_introduced(self, contact_id: int) -> bool:
        """No group we share holds this introduced member any more: its row
        is removed as a contact's is (its messages stay). False if it is no
        introduced member (a contact, or gone)."""
        with self._database.transaction(), self._guard("dropping an introduced member"):
            cursor = self._database.conn.execute(
                "UPDATE contacts SET removed = 1 "
                "WHERE id = ? AND introduced_group IS NOT NULL AND removed = 0",
                (contact_id,),
            )
            dropped = cursor.rowcount > 0
        self._settle()
        return dropped

    def label_limits(self, contact_id: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The highest labels we send ``contact_id``: (set here, advertised by
        it), each a tuple of canonical labels, one per scheme (empty: none)."""
        cached = self._limits.get(contact_id)
        if cached is not None:
            return cached
        with self._lock, self._guard("reading a contact"):
            row = self._database.conn.execute(
                "SELECT max_label, advertised_label FROM contacts WHERE id = ?", (contact_id,)
            ).fetchone()
            if row is None:
                raise ConfigError(f"no contact with id {contact_id}")
            found = self._limits[contact_id] = (_split(row[0]), _split(row[1]))
        return found

    def cached_label_limits(
        self, contact_id: int
    ) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """:meth:`label_limits` when they are in memory (no database access:
        safe on an event loop), else None."""
        return self._limits.get(contact_id)

    def set_label_limit(
        self, contact_id: int, labels: Sequence[str], *, advertised: bool = False
    ) -> None:
        """Set the highest labels (canonical, checked by the caller) we send
        ``contact_id``: ours, or with ``advertised`` the contact's own."""
        if not all(isinstance(x, str) and x and "\n" not in x for x in labels):
            raise ConfigError("a label limit is a list of labels")
        value = "\n".join(labels) or None
        column = "advertised_label" if advertised else "max_label"
        with self._database.transaction(), self._guard("updating a contact"):
            self._limits.pop(contact_id, None)
            self.require(contact_id, active=True)
            self._database.conn.execute(
                f"UPDATE contacts SET {column} = ? WHERE id = ?",  # noqa: S608 - our names
                (value, contact_id),
            )
            self._limits.pop(contact_id, None)

    def note_contact_seen(self, contact_id: int, now: int, *, success: bool) -> None:
        """Record an attempt to reach (or a session with) a contact."""
        with self._database.transaction(), self._guard("updating a contact"):
            self._database.conn.execute(
                "UPDATE contacts SET last_seen_ms = ?, "
                "last_success_ms = CASE WHEN ? THEN ? ELSE last_success_ms END, "
                "failures = CASE WHEN ? THEN 0 ELSE failures + 1 END WHERE id = ?",
                (now, success, now, success, contact_id),
            )
