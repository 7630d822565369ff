"""Trust anchors and trust alarms (``protocol-spec/trust.md``): the agencies
this endpoint believes, and the proofs of an agency that contradicted itself.

A part of :class:`~onionpost.store.Store` over its
:class:`~onionpost.store._database.Database`. An anchor is stored as its
canonical encoding (:meth:`onionpost.proto.trust.Anchor.encode`) under its
fingerprint; one anchor per agency name. An alarm holds two signed statements
(checkpoints of a forked log, two lists of one serial) exactly as received,
kept until the store is deleted.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from onionpost.errors import ConfigError, StoreError, TrustError
from onionpost.limits import MAX_TRUST_ANCHORS
from onionpost.proto import NotMsgpack, unpack
from onionpost.proto.trust import ANCHOR_PREFIX, Anchor
from onionpost.store._database import Database

__all__ = ["ContactEndorsement", "ContactRotation", "StoredAnchor", "TrustAlarm", "TrustAnchors"]


@dataclass(frozen=True, slots=True)
class StoredAnchor:
    anchor: Anchor
    added_ms: int


@dataclass(frozen=True, slots=True)
class TrustAlarm:
    """Two signed statements of one agency that cannot both be true."""

    id: int
    made_ms: int
    kind: str  # "fork" (its log) or "revocations" (two lists of one serial)
    fingerprint: bytes
    first: bytes
    second: bytes


@dataclass(frozen=True, slots=True)
class ContactEndorsement:
    """A contact's endorsement proof as last presented, and our verdict on it
    (``status``: a :class:`onionpost.proto.trust.Status` value, "no-anchor" or
    "refused-forged"; ``describe``: the line ``contact list`` shows)."""

    contact_id: int
    proof: bytes | None
    status: str
    describe: str
    checked_ms: int


@dataclass(frozen=True, slots=True)
class ContactRotation:
    """A contact's last move to a new address (trust.md §6): the address it
    left and what ``contact show`` says of the move."""

    contact_id: int
    old_address: bytes
    describe: str
    rotated_ms: int


def _anchor(data: bytes) -> Anchor:
    try:
        value = unpack(data, max_len=4096, max_items=4)
        return Anchor(value[1], value[2], value[3])
    except (NotMsgpack, TrustError, IndexError, TypeError) as exc:
        raise StoreError("a stored trust anchor is unreadable") from exc


class TrustAnchors:
    """The anchors installed and the alarms raised; see the module doc."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lock = database.lock
        self._guard = database.guard

    def __repr__(self) -> str:
        return "TrustAnchors()"

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    def add(self, anchor: Anchor, now_ms: int) -> StoredAnchor:
        """Install ``anchor``; :class:`ConfigError` if it or its agency is there,
        or the store holds ``MAX_TRUST_ANCHORS`` already (nothing stored)."""
        with self._database.transaction(), self._guard("adding a trust anchor"):
            (count,) = self._db.execute("SELECT count(*) FROM trust_anchors").fetchone()
            if count >= MAX_TRUST_ANCHORS:
                raise ConfigError(f"at most {MAX_TRUST_ANCHORS} trust anchors")
            row = self._db.execute(
                "SELECT fingerprint FROM trust_anchors WHERE fingerprint = ? OR agency = ?",
                (anchor.fingerprint, anchor.agency),
            ).fetchone()
            if row is not None:
                same = bytes(row[0]) == anchor.fingerprint
                raise ConfigError(
                    f"that anchor is installed already ({anchor.agency})"
                    if same
                    else f"another anchor of agency {anchor.agency!r} is installed: remove it first"
                )
            self._db.execute(
                "INSERT INTO trust_anchors (fingerprint, agency, anchor, added_ms) "
                "VALUES (?, ?, ?, ?)",
                (anchor.fingerprint, anchor.agency, anchor.encode(), now_ms),
            )
        return StoredAnchor(anchor, now_ms)

    def all(self) -> list[StoredAnchor]:
        with self._lock, self._guard("reading trust anchors"):
            rows = self._db.execute(
                "SELECT anchor, added_ms FROM trust_anchors ORDER BY agency"
            ).fetchall()
        return [StoredAnchor(_anchor(bytes(data)), int(added)) for data, added in rows]

    def find(self, which: str) -> StoredAnchor | None:
        """The anchor of agency ``which``, or whose fingerprint (hex) or text it is."""
        which = which.strip()
        for stored in self.all():
            anchor = stored.anchor
            if which in {anchor.agency, anchor.fingerprint.hex()}:
                return stored
            if which.startswith(ANCHOR_PREFIX) and which == anchor.to_text():
                return stored
        return None

    def remove(self, anchor: Anchor) -> bool:
        with self._database.transaction(), self._guard("removing a trust anchor"):
            cursor = self._db.execute(
                "DELETE FROM trust_anchors WHERE fingerprint = ?", (anchor.fingerprint,)
            )
        return cursor.rowcount > 0

    def raise_alarm(
        self, kind: str, fingerprint: bytes, first: bytes, second: bytes, now_ms: int
    ) -> TrustAlarm:
        """Record an alarm; the same two statements met again are one alarm."""
        with self._database.transaction(), self._guard("recording a trust alarm"):
            row = self._db.execute(
                "SELECT id, made_ms FROM trust_alarms WHERE kind = ? AND fingerprint = ? "
                "AND first = ? AND second = ?",
                (kind, fingerprint, first, second),
            ).fetchone()
            if row is not None:
                return TrustAlarm(int(row[0]), int(row[1]), kind, fingerprint, first, second)
            cursor = self._db.execute(
                "INSERT INTO trust_alarms (made_ms, kind, fingerprint, first, second) "
                "VALUES (?, ?, ?, ?, ?)",
                (now_ms, kind, fingerprint, first, second),
            )
        assert cursor.lastrowid is not None
        return TrustAlarm(cursor.lastrowid, now_ms, kind, fingerprint, first, second)

    def alarms(self) -> list[TrustAlarm]:
        with self._lock, self._guard("reading trust alarms"):
            rows = self._db.execute(
                "SELECT id, made_ms, kind, fingerprint, first, second FROM trust_alarms ORDER BY id"
            ).fetchall()
        return [
            TrustAlarm(int(i), int(m), str(k), bytes(f), bytes(a), bytes(b))
            for i, m, k, f, a, b in rows
        ]

    # -- our own endorsement, what we hold of each agency, contacts' verdicts ------

    def install_own(self, fingerprint: bytes, proof: bytes, now_ms: int) -> None:
        """Keep our own endorsement proof (checked by the caller), replacing any."""
        with self._database.transaction(), self._guard("installing our endorsement"):
            self._db.execute(
                "INSERT OR REPLACE INTO trust_own (id, fingerprint, proof, installed_ms) "
                "VALUES (1, ?, ?, ?)",
                (fingerprint, proof, now_ms),
            )

    def own(self) -> tuple[bytes, bytes] | None:
        """The fingerprint of our agency's anchor and our endorsement proof."""
        with self._lock, self._guard("reading our endorsement"):
            row = self._db.execute("SELECT fingerprint, proof FROM trust_own").fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def held(self) -> dict[bytes, tuple[bytes | None, bytes | None]]:
        """The revocation list and checkpoint held, as received, by anchor fingerprint."""
        with self._lock, self._guard("reading trust views"):
            rows = self._db.execute(
                "SELECT fingerprint, revocations, checkpoint FROM trust_held"
            ).fetchall()
        return {
            bytes(f): (None if r is None else bytes(r), None if c is None else bytes(c))
            for f, r, c in rows
        }

    def hold(
        self,
        fingerprint: bytes,
        revocations: bytes | None,
        checkpoint: bytes | None,
        *,
        delegation: bytes | None = None,
    ) -> None:
        """Hold ``revocations`` and ``checkpoint`` of the anchor's agency (as
        received, each checked by the caller), in place of what was held.
        ``delegation``: the one whose key signed whichever of the two is new
        here, kept with it to pass it on with (trust.md §7.2); one held
        already keeps the delegation it came with."""
        with self._database.transaction(), self._guard("keeping a trust view"):
            self._db.execute(
                "INSERT INTO trust_held (fingerprint, revocations, checkpoint, "
                "revocations_delegation, checkpoint_delegation) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (fingerprint) DO UPDATE SET "
                "revocations_delegation = CASE WHEN excluded.revocations IS revocations "
                "THEN revocations_delegation ELSE excluded.revocations_delegation END, "
                "checkpoint_delegation = CASE WHEN excluded.checkpoint IS checkpoint "
                "THEN checkpoint_delegation ELSE excluded.checkpoint_delegation END, "
                "revocations = excluded.revocations, checkpoint = excluded.checkpoint",
                (
                    fingerprint,
                    revocations,
                    checkpoint,
                    None if revocations is None else delegation,
                    None if checkpoint is None else delegation,
                ),
            )

    def held_delegations(self) -> list[bytes]:
        """The delegations the lists and checkpoints held came with, each once."""
        with self._lock, self._guard("reading trust views"):
            rows = self._db.execute(
                "SELECT revocations_delegation FROM trust_held "
                "WHERE revocations_delegation IS NOT NULL UNION "
                "SELECT checkpoint_delegation FROM trust_held "
                "WHERE checkpoint_delegation IS NOT NULL"
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def set_endorsement(
        self, contact_id: int, proof: bytes | None, status: str, describe: str, now_ms: int
    ) -> ContactEndorsement:
        with self._database.transaction(), self._guard("recording an endorsement"):
            self._db.execute(
                "INSERT OR REPLACE INTO contact_endorsements "
                "(contact_id, proof, status, describe, checked_ms) VALUES (?, ?, ?, ?, ?)",
                (contact_id, proof, status, describe, now_ms),
            )
        return ContactEndorsement(contact_id, proof, status, describe, now_ms)

    def endorsements(self) -> dict[int, ContactEndorsement]:
        """The last verdict on each contact's endorsement, by contact id."""
        with self._lock, self._guard("reading endorsements"):
            rows = self._db.execute(
                "SELECT contact_id, proof, status, describe, checked_ms FROM contact_endorsements"
            ).fetchall()
        return {
            int(i): ContactEndorsement(
                int(i), None if p is None else bytes(p), str(s), str(d), int(m)
            )
            for i, p, s, d, m in rows
        }

    def set_required(self, contact_id: int, required: bool | None) -> None:
        """Require an endorsement of this contact (True), not (False), or as
        ``config.toml`` says (None)."""
        with self._database.transaction(), self._guard("setting a contact's trust policy"):
            if required is None:
                self._db.execute(
                    "DELETE FROM contact_require_endorsement WHERE contact_id = ?", (contact_id,)
                )
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO contact_require_endorsement (contact_id, required) "
                    "VALUES (?, ?)",
                    (contact_id, int(required)),
                )

    def required(self) -> dict[int, bool]:
        """The contacts whose require_endorsement is set apart from the config's."""
        with self._lock, self._guard("reading contacts' trust policy"):
            rows = self._db.execute(
                "SELECT contact_id, required FROM contact_require_endorsement"
            ).fetchall()
        return {int(i): bool(r) for i, r in rows}

    # -- rotation (trust.md §6) -----------------------------------------------------

    def record_rotation(
        self,
        contact_id: int,
        old_address: bytes,
        describe: str,
        now_ms: int,
        *,
        old_registered: bool = False,
    ) -> None:
        """Keep that the contact moved away from ``old_address`` (the last move);
        ``old_registered``: that address is registered at our mailbox, to be
        deregistered (:meth:`moved_registered`)."""
        with self._database.transaction(), self._guard("recording a rotation"):
            self._db.execute(
                "INSERT OR REPLACE INTO contact_rotations "
                "(contact_id, old_address, describe, rotated_ms, old_registered) "
                "VALUES (?, ?, ?, ?, ?)",
                (contact_id, old_address, describe, now_ms, int(old_registered)),
            )

    def moved_registered(self) -> list[tuple[int, bytes]]:
        """The addresses contacts moved away from that are still registered at
        our mailbox: (contact id, the old address's key)."""
        with self._lock, self._guard("reading rotations"):
            rows = self._db.execute(
                "SELECT contact_id, old_address FROM contact_rotations WHERE old_registered = 1"
            ).fetchall()
        return [(int(i), bytes(a)) for i, a in rows]

    def set_moved_deregistered(self, contact_id: int) -> None:
        with self._database.transaction(), self._guard("recording a deregistration"):
            self._db.execute(
                "UPDATE contact_rotations SET old_registered = 0 WHERE contact_id = ?",
                (contact_id,),
            )

    def rotations(self) -> dict[int, ContactRotation]:
        """Each contact's last move, by contact id."""
        with self._lock, self._guard("reading rotations"):
            rows = self._db.execute(
                "SELECT contact_id, old_address, describe, rotated_ms FROM contact_rotations"
            ).fetchall()
        return {int(i): ContactRotation(int(i), bytes(a), str(d), int(m)) for i, a, d, m in rows}

    def set_own_rotation(self, proof: bytes, client_auth_public: bytes, now_ms: int) -> None:
        """The move we announce to every contact (one at a time: a new one
        replaces it, and no contact has been told it yet). The same move
        announced again keeps who was told: a contact told it has moved
        already and opens no session under this address to be told again."""
        with self._database.transaction(), self._guard("keeping our rotation"):
            row = self._db.execute("SELECT proof, client_auth_public FROM rotation_own").fetchone()
            if row is not None and (bytes(row[0]), bytes(row[1])) == (proof, client_auth_public):
                return
            self._db.execute(
                "INSERT OR REPLACE INTO rotation_own (id, proof, client_auth_public, made_ms) "
                "VALUES (1, ?, ?, ?)",
                (proof, client_auth_public, now_ms),
            )
            self._db.execute("DELETE FROM rotation_told")

    def own_rotation(self) -> tuple[bytes, bytes] | None:
        """The endorsement proof and tor client key of the move we announce."""
        with self._lock, self._guard("reading our rotation"):
            row = self._db.execute("SELECT proof, client_auth_public FROM rotation_own").fetchone()
        return None if row is None else (bytes(row[0]), bytes(row[1]))

    def mark_rotation_told(self, contact_id: int, now_ms: int) -> None:
        with self._database.transaction(), self._guard("noting a rotation told"):
            self._db.execute(
                "INSERT OR REPLACE INTO rotation_told (contact_id, told_ms) VALUES (?, ?)",
                (contact_id, now_ms),
            )

    def rotation_told(self) -> frozenset[int]:
        """The contacts our rotation has reached (a session, or a deposit)."""
        with self._lock, self._guard("reading rotations told"):
            rows = self._db.execute("SELECT contact_id FROM rotation_told").fetchall()
        return frozenset(int(r[0]) for r in rows)
