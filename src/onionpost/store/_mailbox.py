"""A mailbox's durable state: owners, setup codes, registrations, prekeys, envelopes.

Theory of operation
-------------------
A home run as a mailbox (``onionpost mailbox serve``) keeps everything in one
SQLCipher file, ``<home>/mailbox.db``, opened as the endpoint's store is
(:mod:`onionpost.store._database`: every page encrypted and authenticated,
WAL, ``synchronous = FULL``, SQLite's exclusive lock held for the
connection's life) and with ``secure_delete`` on, so that a deleted envelope's
bytes are overwritten in the file, not only unlinked from the b-tree. Its
keys are those of a subkey of the home's store key (purpose ``onionpost
mailbox``): the endpoint's store and the mailbox's never share a key, and
one put in the place of the other does not open.

::

    owners          the endpoints that paired with a setup code
    setup_codes     each code's token digest (pairing.token_digest; never the
                    token), its tor client key, its expiry, and who used it
    registrations   (owner, contact): who may deposit for an owner, and the
                    contact's tor client key
    prekeys         signed prekeys an owner left for its contacts
    prekeys_out     one-time prekeys a contact took and has not used yet
                    (:mod:`._prekey_ledger`)
    envelopes       sealed envelopes held for an owner, by its own seq (owner_seq)
    tallies         envelopes and bytes per (owner, depositor), kept by triggers

Every change is one transaction, so a crash (kill -9) leaves each request
done or not done; an envelope is committed before its deposit is
acknowledged. Every call that depends on time takes ``now`` (milliseconds
since the epoch; prekey validity in seconds, as prekeys carry it), so the
caller (and a test) owns the clock. Bounds are the caller's policy and are
passed in; the store enforces them inside the same transaction as the change,
raising :class:`QuotaError` or :class:`NoSpaceError` with nothing changed.
Something that does not exist, or that the asker may not see, is one error,
:class:`NotFoundError`, whatever the reason.

Driver exceptions become ours in :meth:`onionpost.store._database.Database.guard`
only; opening, transactions and the binding are that module's, as for the
endpoint's store.
"""

from __future__ import annotations

import builtins
import enum
import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Final

from onionpost.errors import ConfigError, NoSpaceError, NotFoundError, QuotaError
from onionpost.proto.address import OnionAddress
from onionpost.store import _crypto, _database, _open, _prekey_ledger
from onionpost.store._database import Keys

__all__ = [
    "MAILBOX_SCHEMA_VERSION",
    "Deposited",
    "Directory",
    "Expired",
    "HeldEnvelope",
    "MailboxStore",
    "OpenCode",
    "Owner",
    "OwnerUsage",
    "PairOutcome",
    "Prekey",
    "PrekeyKind",
    "Registration",
]

KEY_LEN: Final = 32
ID_LEN: Final = 16
# The purpose of the mailbox's subkey of the home's store key (BLAKE2b person).
_KEY_PURPOSE: Final = b"onionpost mailbx"

_V1: Final = (
    """
    CREATE TABLE owners (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        identity           BLOB NOT NULL UNIQUE CHECK (length(identity) = 32),
        client_auth_public BLOB NOT NULL CHECK (length(client_auth_public) = 32),
        paired_ms          INTEGER NOT NULL,
        last_drained_ms    INTEGER,
        last_deposit_ms    INTEGER
    ) STRICT
    """,
    """
    CREATE TABLE setup_codes (
        digest             BLOB PRIMARY KEY CHECK (length(digest) = 32),
        client_auth_public BLOB NOT NULL CHECK (length(client_auth_public) = 32),
        created_ms         INTEGER NOT NULL,
        expires_ms         INTEGER NOT NULL,
        used_by            BLOB CHECK (used_by IS NULL OR length(used_by) = 32),
        used_ms            INTEGER,
        CHECK ((used_by IS NULL) = (used_ms IS NULL))
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE TABLE registrations (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id           INTEGER NOT NULL REFERENCES owners (id),
        contact            BLOB NOT NULL CHECK (length(contact) = 32),
        client_auth_public BLOB NOT NULL CHECK (length(client_auth_public) = 32),
        registered_ms      INTEGER NOT NULL,
        UNIQUE (owner_id, contact)
    ) STRICT
    """,
    "CREATE INDEX registrations_contact ON registrations (contact)",
    """
    CREATE TABLE prekeys (
        owner_id  INTEGER NOT NULL REFERENCES owners (id),
        key_id    BLOB NOT NULL CHECK (length(key_id) = 16),
        kind      INTEGER NOT NULL CHECK (kind IN (1, 2)),
        not_after INTEGER NOT NULL,
        stored_ms INTEGER NOT NULL,
        data      BLOB NOT NULL,
        PRIMARY KEY (owner_id, key_id)
    ) STRICT, WITHOUT ROWID
    """,
    "CREATE INDEX prekeys_kind ON prekeys (owner_id, kind, not_after)",
    """
    CREATE TABLE envelopes (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        owner_id     INTEGER NOT NULL REFERENCES owners (id),
        id           BLOB NOT NULL CHECK (length(id) = 16),
        depositor    BLOB NOT NULL CHECK (length(depositor) = 32),
        size         INTEGER NOT NULL CHECK (size >= 0),
        deposited_ms INTEGER NOT NULL,
        data         BLOB NOT NULL,
        UNIQUE (owner_id, id)
    ) STRICT
    """,
    # An owner's envelopes in seq order (the rowid ends every index entry).
    "CREATE INDEX envelopes_owner ON envelopes (owner_id)",
    "CREATE INDEX envelopes_age ON envelopes (deposited_ms)",
    # What quotas and the disk budget read: one row per (owner, depositor)
    # holding envelopes, kept exact by the triggers below in the same
    # transaction as the change, so no check sums the envelopes.
    """
    CREATE TABLE tallies (
        owner_id  INTEGER NOT NULL,
        depositor BLOB NOT NULL,
        envelopes INTEGER NOT NULL CHECK (envelopes >= 0),
        bytes     INTEGER NOT NULL CHECK (bytes >= 0),
        PRIMARY KEY (owner_id, depositor)
    ) STRICT, WITHOUT ROWID
    """,
    """
    CREATE TRIGGER envelopes_added AFTER INSERT ON envelopes BEGIN
        INSERT OR IGNORE INTO tallies (owner_id, depositor, envelopes, bytes)
            VALUES (NEW.owner_id, NEW.depositor, 0, 0);
        UPDATE tallies SET envelopes = envelopes + 1, bytes = bytes + NEW.size
            WHERE owner_id = NEW.owner_id AND depositor = NEW.depositor;
    END
    """,
    """
    CREATE TRIGGER envelopes_removed AFTER DELETE ON envelopes BEGIN
        UPDATE tallies SET envelopes = envelopes - 1, bytes = bytes - OLD.size
            WHERE owner_id = OLD.owner_id AND depositor = OLD.depositor;
        DELETE FROM tallies
            WHERE owner_id = OLD.owner_id AND depositor = OLD.depositor AND envelopes = 0;
    END
    """,
)

# Version 2 changes no table: from it on the database has a binding file
# (storage.md §5.4), and one without it is refused.
_V2: Final[tuple[str, ...]] = ()
# Version 3: one-time prekeys handed out and not yet used, per contact.
_V3: Final[tuple[str, ...]] = _prekey_ledger.LEDGER_SCHEMA

# Version 4: an owner's envelopes numbered per owner (owner_seq, from the
# owner's last_seq), so that no seq tells anyone how many envelopes other
# owners received (mailbox.md §7.1, §8). Envelopes held are numbered in order.
_V4: Final = (
    "ALTER TABLE owners ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE envelopes ADD COLUMN owner_seq INTEGER NOT NULL DEFAULT 0",
    """
    UPDATE envelopes SET owner_seq = (
        SELECT count(*) FROM envelopes e
        WHERE e.owner_id = envelopes.owner_id AND e.seq <= envelopes.seq)
    """,
    """
    UPDATE owners SET last_seq = (
        SELECT coalesce(max(owner_seq), 0) FROM envelopes WHERE owner_id = owners.id)
    """,
    "CREATE UNIQUE INDEX envelopes_owner_seq ON envelopes (owner_id, owner_seq)",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1, _V2, _V3, _V4)
MAILBOX_SCHEMA_VERSION: Final = len(MIGRATIONS)
BOUND_VERSION: Final = 2

_OWNER_COLUMNS: Final = (
    "SELECT id, identity, client_auth_public, paired_ms, last_drained_ms, last_deposit_ms "
    "FROM owners"
)
# Every distinct tor client key the mailbox authorizes (mailbox.md §Authorization):
# owners', registered contacts', and those of setup codes not yet expired.
_AUTHORIZED_KEYS: Final = (
    "SELECT client_auth_public FROM owners "
    "UNION SELECT client_auth_public FROM registrations "
    "UNION SELECT client_auth_public FROM setup_codes WHERE expires_ms > :now"
)


class PrekeyKind(enum.IntEnum):
    """As ``proto.envelope.PrekeyKind``: the store keeps the number."""

    ONE_TIME = 1
    LAST_RESORT = 2


class PairOutcome(enum.Enum):
    PAIRED = "paired"  # a new owner, or an owner that used a fresh code
    REPEATED = "repeated"  # the code was used by this same owner already
    REFUSED = "refused"  # unknown, expired, or used by another


@dataclass(frozen=True, slots=True)
class Owner:
    id: int
    address: OnionAddress
    client_auth_public: bytes
    paired_ms: int
    last_drained_ms: int | None
    last_deposit_ms: int | None


@dataclass(frozen=True, slots=True)
class Registration:
    id: int
    owner_id: int
    contact: OnionAddress
    client_auth_public: bytes
    registered_ms: int


@dataclass(frozen=True, slots=True)
class OpenCode:
    """A setup code not yet expired (used or not)."""

    client_auth_public: bytes
    expires_ms: int
    used: bool


@dataclass(frozen=True, slots=True)
class Directory:
    """Who may reach the mailbox, as of one moment (read in one transaction)."""

    owners: tuple[Owner, ...]
    registrations: tuple[Registration, ...]
    codes: tuple[OpenCode, ...]


@dataclass(frozen=True, slots=True)
class Prekey:
    """A signed prekey as the mailbox keeps it (parsed and verified by the caller)."""

    key_id: bytes
    kind: PrekeyKind
    not_after: int  # seconds since the epoch
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class HeldEnvelope:
    seq: int
    id: bytes
    deposited_ms: int
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Deposited:
    seq: int  # the owner's own numbering (what the owner fetches by), never a depositor's
    new: bool  # False: the envelope id was held already (a replay or a re-deposit)


@dataclass(frozen=True, slots=True)
class OwnerUsage:
    owner: OnionAddress
    owner_id: int
    contacts: int
    envelopes: int
    bytes: int
    one_time_prekeys: int
    last_resort_not_after: int | None  # seconds
    last_drained_ms: int | None
    last_deposit_ms: int | None
    # One-time prekeys each contact (identity key) took and has not used.
    unused_prekeys: dict[builtins.bytes, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Expired:
    envelopes: int
    codes: int
    prekeys: int


def _key(value: object, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != KEY_LEN:
        raise ConfigError(f"{what} is {KEY_LEN} bytes")
    return value


def _address(value: object) -> bytes:
    if not isinstance(value, OnionAddress):
        raise ConfigError("an owner or contact is an OnionAddress")
    return value.public_key


def _id(value: object) -> bytes:
    if not isinstance(value, bytes) or len(value) != ID_LEN:
        raise ConfigError(f"an envelope or key id is {ID_LEN} bytes")
    return value


class MailboxStore:
    """The mailbox's database. Open with :meth:`MailboxStore.open`; see the module doc.

    Synchronous; one lock serialises its calls, so the caller may run them in
    a worker thread.
    """

    def __init__(self, database: _database.Database) -> None:
        self._database = database
        self._path = database.path
        self._lock = database.lock
        self._guard = database.guard

    def __repr__(self) -> str:
        return f"MailboxStore({str(self._path)!r})"

    # -- opening, closing, transactions ---------------------------------------------

    @staticmethod
    def keys(store_key: bytes) -> Keys:
        """The database keys for a home's ``store_key`` (its own subkey, see above)."""
        if not isinstance(store_key, bytes) or len(store_key) != _crypto.KEY_LEN:
            raise ConfigError(f"the store key is {_crypto.KEY_LEN} bytes")
        return Keys.derive(_crypto.subkey(store_key, _KEY_PURPOSE))

    @classmethod
    def open(cls, path: Path, key: bytes) -> MailboxStore:
        """Open (or create) the mailbox database at ``path`` with the home's store key.

        :class:`StoreError` when ``key`` does not open it (or it is not a
        mailbox database), or a newer onionpost wrote it;
        :class:`StoreTamperedError` when it or its WAL was changed without
        the key, cut short or damaged, or is not the state its binding file
        records (storage.md §5.4); :class:`StoreLockedError` when another
        process has it open.
        """
        database = _open.open_database(
            Path(path),
            cls.keys(key),
            what="mailbox store",
            migrations=MIGRATIONS,
            bound_from=BOUND_VERSION,
        )
        return cls(database)

    def close(self) -> None:
        self._database.close()

    def __enter__(self) -> MailboxStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    def transaction(self) -> AbstractContextManager[None]:
        """Group calls into one commit; nested uses are savepoints (as Store's)."""
        return self._database.transaction()

    def _settle(self) -> None:
        """Checkpoint the WAL into the file and empty it (outside a caller's
        transaction): after a wipe or a deletion the old pages are then
        nowhere on the disk, the WAL included."""
        self._database.settle("checkpointing the mailbox store")

    # -- rows -------------------------------------------------------------------------

    @staticmethod
    def _owner(row: Sequence[object]) -> Owner:
        return Owner(
            id=int(row[0]),  # type: ignore[call-overload]
            address=OnionAddress.from_public_key(row[1]),  # type: ignore[arg-type]
            client_auth_public=row[2],  # type: ignore[arg-type]
            paired_ms=row[3],  # type: ignore[arg-type]
            last_drained_ms=row[4],  # type: ignore[arg-type]
            last_deposit_ms=row[5],  # type: ignore[arg-type]
        )

    def _owner_id(self, owner: OnionAddress) -> int:
        """The owner's id; NotFoundError when it is not an owner."""
        row = self._db.execute(
            "SELECT id FROM owners WHERE identity = ?", (_address(owner),)
        ).fetchone()
        if row is None:
            raise NotFoundError("not found")
        return int(row[0])

    def _registered(self, owner: OnionAddress, contact: OnionAddress) -> int:
        """The owner's id when ``contact`` is registered by it; else NotFoundError
        (an unknown owner and an unregistered contact are the same answer)."""
        row = self._db.execute(
            "SELECT o.id FROM owners o JOIN registrations r ON r.owner_id = o.id "
            "WHERE o.identity = ? AND r.contact = ?",
            (_address(owner), _address(contact)),
        ).fetchone()
        if row is None:
            raise NotFoundError("not found")
        return int(row[0])

    def _authorized(self, now: int) -> set[bytes]:
        return {row[0] for row in self._db.execute(_AUTHORIZED_KEYS, {"now": now})}

    def _check_room(self, key: bytes, now: int, max_clients: int) -> None:
        """One more authorized key must stay within ``max_clients``."""
        keys = self._authorized(now)
        if key not in keys and len(keys) >= max_clients:
            raise QuotaError(
                f"the mailbox authorizes at most {max_clients} tor clients",
                quota="clients",
                limit=max_clients,
            )

    # -- who may connect ----------------------------------------------------------------

    def directory(self, now: int) -> Directory:
        """Owners, registrations and the setup codes not expired at ``now``."""
        with self.transaction(), self._guard("reading the directory"):
            owners = self._db.execute(f"{_OWNER_COLUMNS} ORDER BY id").fetchall()
            registrations = self._db.execute(
                "SELECT id, owner_id, contact, client_auth_public, registered_ms "
                "FROM registrations ORDER BY id"
            ).fetchall()
            codes = self._db.execute(
                "SELECT client_auth_public, expires_ms, used_by IS NOT NULL FROM setup_codes "
                "WHERE expires_ms > ? ORDER BY expires_ms",
                (now,),
            ).fetchall()
        return Directory(
            owners=tuple(self._owner(row) for row in owners),
            registrations=tuple(
                Registration(r[0], r[1], OnionAddress.from_public_key(r[2]), r[3], r[4])
                for r in registrations
            ),
            codes=tuple(OpenCode(c[0], c[1], bool(c[2])) for c in codes),
        )

    def owner(self, address: OnionAddress) -> Owner | None:
        with self._lock, self._guard("reading an owner"):
            row = self._db.execute(
                f"{_OWNER_COLUMNS} WHERE identity = ?", (_address(address),)
            ).fetchone()
        return None if row is None else self._owner(row)

    # -- setup codes and pairing --------------------------------------------------------

    def add_setup_code(
        self,
        digest: bytes,
        client_auth_public: bytes,
        *,
        now: int,
        expires_ms: int,
        max_open: int,
        max_clients: int,
    ) -> None:
        """Remember a new setup code by its token's digest (never the token).

        :class:`QuotaError` when ``max_open`` codes are unused and unexpired
        already, or the code's client key would be one too many.
        """
        _key(digest, "a setup code's digest")
        _key(client_auth_public, "a client-authorization public key")
        if expires_ms <= now:
            raise ConfigError("a setup code must expire after it is made")
        with self.transaction(), self._guard("adding a setup code"):
            (open_codes,) = self._db.execute(
                "SELECT count(*) FROM setup_codes WHERE used_by IS NULL AND expires_ms > ?",
                (now,),
            ).fetchone()
            if open_codes >= max_open:
                raise QuotaError(
                    f"{open_codes} setup codes are waiting to be used already; "
                    "wait until one is used or expires",
                    quota="setup-codes",
                    limit=max_open,
                )
            self._check_room(client_auth_public, now, max_clients)
            self._db.execute(
                "INSERT INTO setup_codes (digest, client_auth_public, created_ms, expires_ms) "
                "VALUES (?, ?, ?, ?)",
                (digest, client_auth_public, now, expires_ms),
            )

    def pair(
        self,
        digest: bytes,
        owner: OnionAddress,
        client_auth_public: bytes,
        *,
        now: int,
        max_owners: int,
        max_clients: int,
    ) -> PairOutcome:
        """Use the setup code whose token has ``digest``, in one transaction.

        Unexpired and unused: ``owner`` becomes an owner (or stays one, with
        this client key) and the code is marked used by it. Used by this same
        owner, which is still one: REPEATED (the owner crashed before it
        stored the pairing, and repeats it). Anything else: REFUSED, nothing
        changed. :class:`QuotaError` when a new owner would be one too many.
        """
        _key(digest, "a setup code's digest")
        _key(client_auth_public, "a client-authorization public key")
        identity = _address(owner)
        with self.transaction(), self._guard("pairing"):
            code = self._db.execute(
                "SELECT expires_ms, used_by FROM setup_codes WHERE digest = ?", (digest,)
            ).fetchone()
            if code is None or code[0] <= now:
                return PairOutcome.REFUSED
            existing = self._db.execute(
                "SELECT id FROM owners WHERE identity = ?", (identity,)
            ).fetchone()
            if code[1] is not None:
                if code[1] != identity or existing is None:
                    return PairOutcome.REFUSED
                outcome = PairOutcome.REPEATED
            else:
                outcome = PairOutcome.PAIRED
                if existing is None:
                    (owners,) = self._db.execute("SELECT count(*) FROM owners").fetchone()
                    if owners >= max_owners:
                        raise QuotaError(
                            f"the mailbox serves at most {max_owners} owners",
                            quota="owners",
                            limit=max_owners,
                        )
            self._check_room(client_auth_public, now, max_clients)
            if existing is None:
                self._db.execute(
                    "INSERT INTO owners (identity, client_auth_public, paired_ms) VALUES (?, ?, ?)",
                    (identity, client_auth_public, now),
                )
            else:
                self._db.execute(
                    "UPDATE owners SET client_auth_public = ? WHERE id = ?",
                    (client_auth_public, existing[0]),
                )
            if outcome is PairOutcome.PAIRED:
                self._db.execute(
                    "UPDATE setup_codes SET used_by = ?, used_ms = ? WHERE digest = ?",
                    (identity, now, digest),
                )
        return outcome

    # -- registrations ------------------------------------------------------------------

    def register(
        self,
        owner: OnionAddress,
        contact: OnionAddress,
        client_auth_public: bytes,
        *,
        now: int,
        max_per_owner: int,
        max_clients: int,
    ) -> Registration:
        """``contact`` may deposit for ``owner`` (a repeat updates its client key).

        NotFoundError when ``owner`` is not an owner; QuotaError when the
        owner has ``max_per_owner`` contacts, or the key would be one too many.
        """
        _key(client_auth_public, "a client-authorization public key")
        contact_key = _address(contact)
        with self.transaction(), self._guard("registering a contact"):
            owner_id = self._owner_id(owner)
            row = self._db.execute(
                "SELECT id FROM registrations WHERE owner_id = ? AND contact = ?",
                (owner_id, contact_key),
            ).fetchone()
            if row is None:
                (count,) = self._db.execute(
                    "SELECT count(*) FROM registrations WHERE owner_id = ?", (owner_id,)
                ).fetchone()
                if count >= max_per_owner:
                    raise QuotaError(
                        f"quota exceeded: at most {max_per_owner} contacts per owner",
                        quota="contacts",
                        limit=max_per_owner,
                    )
            self._check_room(client_auth_public, now, max_clients)
            self._db.execute(
                "INSERT INTO registrations (owner_id, contact, client_auth_public, "
                "registered_ms) VALUES (?, ?, ?, ?) ON CONFLICT (owner_id, contact) "
                "DO UPDATE SET client_auth_public = excluded.client_auth_public",
                (owner_id, contact_key, client_auth_public, now),
            )
            r = self._db.execute(
                "SELECT id, owner_id, contact, client_auth_public, registered_ms "
                "FROM registrations WHERE owner_id = ? AND contact = ?",
                (owner_id, contact_key),
            ).fetchone()
        return Registration(r[0], r[1], OnionAddress.from_public_key(r[2]), r[3], r[4])

    def deregister(self, owner: OnionAddress, contact: OnionAddress) -> bool:
        """``contact`` may no longer deposit for ``owner``; its envelopes stay.
        False when it was not registered. NotFoundError when not an owner."""
        with self.transaction(), self._guard("deregistering a contact"):
            owner_id = self._owner_id(owner)
            cursor = self._db.execute(
                "DELETE FROM registrations WHERE owner_id = ? AND contact = ?",
                (owner_id, _address(contact)),
            )
            _prekey_ledger.forget_contact(self._db, owner_id, _address(contact))
        return cursor.rowcount > 0

    # -- prekeys ------------------------------------------------------------------------

    def add_prekeys(
        self, owner: OnionAddress, prekeys: Sequence[Prekey], *, now: int, max_one_time: int
    ) -> int:
        """Keep the owner's new prekeys; returns the one-time prekeys held now.

        A key id held already is kept as it is (an upload repeated after a
        lost answer). Of last-resort prekeys only the newest (latest
        ``not_after``) is kept. :class:`QuotaError`, nothing stored, when more
        than ``max_one_time`` one-time prekeys would be held.
        """
        for prekey in prekeys:
            _id(prekey.key_id)
            if not isinstance(prekey.kind, PrekeyKind) or not isinstance(prekey.data, bytes):
                raise ConfigError("a prekey has a PrekeyKind and bytes")
        with self.transaction(), self._guard("storing prekeys"):
            owner_id = self._owner_id(owner)
            for prekey in prekeys:
                self._db.execute(
                    "INSERT INTO prekeys (owner_id, key_id, kind, not_after, stored_ms, data) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (owner_id, key_id) DO NOTHING",
                    (owner_id, prekey.key_id, int(prekey.kind), prekey.not_after, now, prekey.data),
                )
            self._db.execute(
                "DELETE FROM prekeys WHERE owner_id = :owner AND kind = :kind AND key_id <> ("
                "SELECT key_id FROM prekeys WHERE owner_id = :owner AND kind = :kind "
                "ORDER BY not_after DESC, stored_ms DESC, key_id LIMIT 1)",
                {"owner": owner_id, "kind": int(PrekeyKind.LAST_RESORT)},
            )
            held = self._one_time_count(owner_id)
            if held > max_one_time:
                raise QuotaError(
                    f"quota exceeded: at most {max_one_time} one-time prekeys are held",
                    quota="prekeys",
                    limit=max_one_time,
                )
        return held

    def _one_time_count(self, owner_id: int) -> int:
        (count,) = self._db.execute(
            "SELECT count(*) FROM prekeys WHERE owner_id = ? AND kind = ?",
            (owner_id, int(PrekeyKind.ONE_TIME)),
        ).fetchone()
        return int(count)

    def take_prekey(
        self,
        owner: OnionAddress,
        contact: OnionAddress,
        *,
        now_s: int,
        now: int = 0,
        max_unused: int | None = None,
    ) -> bytes | None:
        """One of ``owner``'s prekeys for ``contact``, a contact it registered.

        A one-time prekey is deleted in the same transaction that hands it
        out, so none is ever given twice, and noted as held by ``contact``
        until a deposit of its names it (:mod:`._prekey_ledger`). A contact
        holding ``max_unused`` unused ones already (None: no bound), or no
        one-time prekey left: the newest last-resort prekey (kept). None when
        neither is there, unexpired at ``now_s`` (seconds). NotFoundError when
        ``contact`` is not a contact of ``owner``, or ``owner`` is not an owner.
        """
        contact_key = _address(contact)
        with self.transaction(), self._guard("handing out a prekey"):
            owner_id = self._registered(owner, contact)
            row = None
            held = _prekey_ledger.unused(self._db, owner_id, contact_key)
            if max_unused is None or held < max_unused:
                row = self._db.execute(
                    "DELETE FROM prekeys WHERE owner_id = :owner AND key_id = ("
                    "SELECT key_id FROM prekeys WHERE owner_id = :owner AND kind = :kind "
                    "AND not_after > :now ORDER BY not_after, key_id LIMIT 1) "
                    "RETURNING data, key_id, not_after",
                    {"owner": owner_id, "kind": int(PrekeyKind.ONE_TIME), "now": now_s},
                ).fetchone()
                if row is not None:
                    _prekey_ledger.note_taken(self._db, owner_id, contact_key, row[1], row[2], now)
            if row is None:
                row = self._db.execute(
                    "SELECT data FROM prekeys WHERE owner_id = ? AND kind = ? AND not_after > ? "
                    "ORDER BY not_after DESC LIMIT 1",
                    (owner_id, int(PrekeyKind.LAST_RESORT), now_s),
                ).fetchone()
        return None if row is None else bytes(row[0])

    # -- envelopes ----------------------------------------------------------------------

    def deposit(
        self,
        owner: OnionAddress,
        depositor: OnionAddress,
        envelope_id: bytes,
        data: bytes,
        *,
        now: int,
        max_envelopes: int,
        max_bytes: int,
        max_disk: int,
        max_owner_envelopes: int | None = None,
        max_owner_bytes: int | None = None,
        key_id: bytes | None = None,
    ) -> Deposited:
        """Hold ``data`` for ``owner``; committed (durably) when this returns.

        An ``envelope_id`` held for the owner already is not stored again:
        its seq is returned with ``new`` False. NotFoundError when
        ``depositor`` is not a contact ``owner`` registered (or no owner);
        QuotaError past the depositor's ``max_envelopes`` or ``max_bytes``
        for this owner, or past the owner's own budget of
        ``max_owner_envelopes`` and ``max_owner_bytes`` from all its contacts
        together (None: no budget); NoSpaceError past ``max_disk`` for the
        whole mailbox. Every bound is read in the transaction that stores.
        ``key_id``, the prekey the envelope names: a one-time prekey the
        depositor took counts as used once the envelope is stored.
        """
        _id(envelope_id)
        if not isinstance(data, bytes):
            raise ConfigError("an envelope is bytes")
        size = len(data)
        depositor_key = _address(depositor)
        with self.transaction(), self._guard("storing an envelope"):
            owner_id = self._registered(owner, depositor)
            held = self._db.execute(
                "SELECT owner_seq FROM envelopes WHERE owner_id = ? AND id = ?",
                (owner_id, envelope_id),
            ).fetchone()
            if held is not None:
                return Deposited(int(held[0]), new=False)
            tally = self._db.execute(
                "SELECT envelopes, bytes FROM tallies WHERE owner_id = ? AND depositor = ?",
                (owner_id, depositor_key),
            ).fetchone()
            count, used = tally if tally is not None else (0, 0)
            if count + 1 > max_envelopes or used + size > max_bytes:
                raise QuotaError(
                    f"quota exceeded: at most {max_envelopes} envelopes / {max_bytes} bytes "
                    "from one contact",
                    quota="envelopes" if count + 1 > max_envelopes else "envelope-bytes",
                    limit=max_envelopes if count + 1 > max_envelopes else max_bytes,
                )
            self._check_owner_budget(owner_id, size, max_owner_envelopes, max_owner_bytes)
            if self._disk_used() + size > max_disk:
                raise NoSpaceError("the mailbox is full")
            (seq,) = self._db.execute(
                "UPDATE owners SET last_seq = last_seq + 1, last_deposit_ms = ? WHERE id = ? "
                "RETURNING last_seq",
                (now, owner_id),
            ).fetchone()
            self._db.execute(
                "INSERT INTO envelopes (owner_id, owner_seq, id, depositor, size, deposited_ms, "
                "data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (owner_id, seq, envelope_id, depositor_key, size, now, data),
            )
            if key_id is not None:
                _prekey_ledger.note_used(self._db, owner_id, depositor_key, _id(key_id))
        return Deposited(int(seq), new=True)

    def _check_owner_budget(
        self, owner_id: int, size: int, max_envelopes: int | None, max_bytes: int | None
    ) -> None:
        """One more envelope of ``size`` bytes must stay within the owner's
        budget (all its contacts together), so that one owner's contacts can
        fill only that owner's share of a shared mailbox."""
        if max_envelopes is None and max_bytes is None:
            return
        count, used = self._db.execute(
            "SELECT coalesce(sum(envelopes), 0), coalesce(sum(bytes), 0) FROM tallies "
            "WHERE owner_id = ?",
            (owner_id,),
        ).fetchone()
        over_count = max_envelopes is not None and count + 1 > max_envelopes
        if over_count or (max_bytes is not None and used + size > max_bytes):
            raise QuotaError(
                f"quota exceeded: at most {max_envelopes} envelopes / {max_bytes} bytes "
                "for one owner",
                quota="owner-envelopes" if over_count else "owner-bytes",
                limit=(max_envelopes if over_count else max_bytes) or 0,
            )

    def _disk_used(self) -> int:
        (used,) = self._db.execute("SELECT coalesce(sum(bytes), 0) FROM tallies").fetchone()
        return int(used)

    def disk_used(self) -> int:
        """Bytes of envelopes held, for every owner (what ``max_disk`` charges)."""
        with self._lock, self._guard("reading the disk budget"):
            return self._disk_used()

    def envelopes(self, owner: OnionAddress, *, after: int, limit: int) -> list[HeldEnvelope]:
        """The owner's envelopes with seq > ``after``, in seq order, at most
        ``limit``; none when ``owner`` is not (or no longer) an owner."""
        with self._lock, self._guard("reading envelopes"):
            rows = self._db.execute(
                "SELECT e.owner_seq, e.id, e.deposited_ms, e.data FROM envelopes e "
                "JOIN owners o ON o.id = e.owner_id "
                "WHERE o.identity = ? AND e.owner_seq > ? ORDER BY e.owner_seq LIMIT ?",
                (_address(owner), after, limit),
            ).fetchall()
        return [HeldEnvelope(r[0], r[1], r[2], r[3]) for r in rows]

    def note_drained(self, owner: OnionAddress, now: int) -> None:
        with self.transaction(), self._guard("updating an owner"):
            self._db.execute(
                "UPDATE owners SET last_drained_ms = ? WHERE identity = ?",
                (now, _address(owner)),
            )

    def delete_envelopes(self, owner: OnionAddress, ids: Sequence[bytes]) -> int:
        """Delete those of the owner's envelopes; returns how many were held.
        NotFoundError when ``owner`` is not an owner."""
        checked = [_id(i) for i in ids]
        with self.transaction(), self._guard("deleting envelopes"):
            owner_id = self._owner_id(owner)
            deleted = sum(
                self._db.execute(
                    "DELETE FROM envelopes WHERE owner_id = ? AND id = ?", (owner_id, i)
                ).rowcount
                for i in checked
            )
        if deleted:
            self._settle()
        return deleted

    # -- usage, wiping, expiry ----------------------------------------------------------

    def _usage(self, row: Sequence[object]) -> OwnerUsage:
        owner = self._owner(row)
        (contacts,) = self._db.execute(
            "SELECT count(*) FROM registrations WHERE owner_id = ?", (owner.id,)
        ).fetchone()
        envelopes, size = self._db.execute(
            "SELECT coalesce(sum(envelopes), 0), coalesce(sum(bytes), 0) FROM tallies "
            "WHERE owner_id = ?",
            (owner.id,),
        ).fetchone()
        (last_resort,) = self._db.execute(
            "SELECT max(not_after) FROM prekeys WHERE owner_id = ? AND kind = ?",
            (owner.id, int(PrekeyKind.LAST_RESORT)),
        ).fetchone()
        return OwnerUsage(
            owner=owner.address,
            owner_id=owner.id,
            contacts=int(contacts),
            envelopes=int(envelopes),
            bytes=int(size),
            one_time_prekeys=self._one_time_count(owner.id),
            last_resort_not_after=last_resort,
            last_drained_ms=owner.last_drained_ms,
            last_deposit_ms=owner.last_deposit_ms,
            unused_prekeys=_prekey_ledger.unused_by_contact(self._db, owner.id),
        )

    def usage(self, owner: OnionAddress) -> OwnerUsage:
        """What is held for ``owner``; NotFoundError when it is not an owner."""
        with self.transaction(), self._guard("reading usage"):
            row = self._db.execute(
                f"{_OWNER_COLUMNS} WHERE identity = ?", (_address(owner),)
            ).fetchone()
            if row is None:
                raise NotFoundError("not found")
            return self._usage(row)

    def usages(self) -> list[OwnerUsage]:
        """Every owner's usage, in pairing order."""
        with self.transaction(), self._guard("reading usage"):
            rows = self._db.execute(f"{_OWNER_COLUMNS} ORDER BY id").fetchall()
            return [self._usage(row) for row in rows]

    def _wipe(self, owner_id: int) -> int:
        deleted = self._db.execute("DELETE FROM envelopes WHERE owner_id = ?", (owner_id,)).rowcount
        self._db.execute("DELETE FROM prekeys WHERE owner_id = ?", (owner_id,))
        _prekey_ledger.forget_owner(self._db, owner_id)
        self._db.execute("DELETE FROM registrations WHERE owner_id = ?", (owner_id,))
        self._db.execute("DELETE FROM owners WHERE id = ?", (owner_id,))
        return deleted

    def wipe(self, owner: OnionAddress) -> int:
        """Forget ``owner``: its envelopes, prekeys, registrations and itself.
        Returns the envelopes deleted; NotFoundError when it is not an owner."""
        with self.transaction(), self._guard("wiping an owner"):
            deleted = self._wipe(self._owner_id(owner))
        self._settle()
        return deleted

    def wipe_all(self) -> tuple[int, int]:
        """Forget every owner; returns (envelopes, owners) deleted."""
        with self.transaction(), self._guard("wiping every owner"):
            ids = [row[0] for row in self._db.execute("SELECT id FROM owners")]
            deleted = sum(self._wipe(owner_id) for owner_id in ids)
        self._settle()
        return deleted, len(ids)

    def expire(self, *, now: int, deposited_before: int, now_s: int) -> Expired:
        """Delete envelopes deposited before ``deposited_before`` (retention),
        setup codes expired at ``now`` (used ones too, once expired), and
        prekeys whose ``not_after`` is past at ``now_s``."""
        with self.transaction(), self._guard("expiring"):
            envelopes = self._db.execute(
                "DELETE FROM envelopes WHERE deposited_ms < ?", (deposited_before,)
            ).rowcount
            codes = self._db.execute(
                "DELETE FROM setup_codes WHERE expires_ms <= ?", (now,)
            ).rowcount
            prekeys = self._db.execute(
                "DELETE FROM prekeys WHERE not_after <= ?", (now_s,)
            ).rowcount
            _prekey_ledger.forget_expired(self._db, now_s)
        expired = Expired(envelopes, codes, prekeys)
        if envelopes or codes or prekeys:
            self._settle()
        return expired

    def integrity_check(self) -> list[str]:
        """Problems found (empty when none): every page's authentication,
        SQLite's own check, foreign keys, and the tallies against the envelopes."""
        with self._lock, self._guard("checking the mailbox store"):
            conn = self._db
            problems = [r[0] for r in conn.execute("PRAGMA cipher_integrity_check")]
            problems += [r[0] for r in conn.execute("PRAGMA integrity_check(20)") if r[0] != "ok"]
            problems += [
                f"foreign key violation in {r[0]} row {r[1]}"
                for r in conn.execute("PRAGMA foreign_key_check")
            ]
            (wrong,) = conn.execute(
                "SELECT count(*) FROM (SELECT owner_id, depositor, count(*) AS n, "
                "sum(size) AS b FROM envelopes GROUP BY owner_id, depositor) e "
                "FULL OUTER JOIN tallies t USING (owner_id, depositor) "
                "WHERE e.n IS NOT t.envelopes OR e.b IS NOT t.bytes"
            ).fetchone()
            if wrong:
                problems.append(f"{wrong} envelope tallies do not match the envelopes")
        return problems
