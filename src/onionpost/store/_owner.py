"""The endpoint's side of the mailbox, in the store (``mailbox.md`` §Owner, §Sender).

A part of :class:`~onionpost.store.Store` (its ``mailbox``) over the same
:class:`~onionpost.store._database.Database` (connection, lock,
transactions), reading outgoing rows through :class:`~onionpost.store._rows.Rows`
and writing the files that arrive in parts through
:class:`~onionpost.store._transfers.Transfers`. What it keeps:

- our own mailbox (one row): its address, the version of our signed
  announcement, what the mailbox last reported (envelopes waiting, one-time
  prekeys left); and apart from it a pairing under way (the mailbox's address
  and the setup code, kept until the mailbox said yes or no, so that a crash
  halfway is finished by trying again with the same code);
- our prekeys' private halves (:class:`~onionpost.proto.envelope.PrekeySecret`
  bytes). A one-time prekey is deleted in the transaction that stores what
  its envelope carried, and only its id is kept (``used_prekeys``), so that
  an envelope sealed to it again is noticed and cannot be opened: with
  ``secure_delete`` the deleted row's bytes are overwritten on disk;
- the ids of envelopes already opened (a re-delivered one is recognised);
- the acks and read receipts we owe each contact, until a session carried
  them or the contact's mailbox took them;
- per contact: its mailbox (from its newest signed announcement), whether it
  is registered at ours, which of our announcements it was sent;
- per outgoing message: when it was deposited (``deposited_ms``), and for a
  file how many bytes have been (``deposit_offset``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final

from onionpost.errors import NotFoundError, StoreError
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto.address import OnionAddress
from onionpost.proto.evidence import Event
from onionpost.store._database import Database
from onionpost.store._evidence import EvidenceLog, Moved
from onionpost.store._records import Outgoing
from onionpost.store._rows import Rows
from onionpost.store._transfers import Transfers

__all__ = ["OwedKind", "OwnMailbox", "OwnerTables"]

OwedKind = str  # "ack" or "read"
OWED_KINDS: Final = frozenset({"ack", "read"})


@dataclass(frozen=True, slots=True)
class OwnMailbox:
    """Our mailbox, as the store holds it."""

    address: OnionAddress
    version: int  # of our announcement
    paired_ms: int | None
    last_drained_ms: int | None
    waiting: int | None
    waiting_bytes: int | None
    one_time_left: int | None

    def __repr__(self) -> str:
        return f"OwnMailbox(version={self.version})"


class OwnerTables:
    """Mailbox bookkeeping; see the module docstring. A part of Store."""

    def __init__(
        self, database: Database, rows: Rows, transfers: Transfers, evidence: EvidenceLog
    ) -> None:
        self._database = database
        self._lock = database.lock
        self._guard = database.guard
        self._rows = rows
        self._transfers = transfers
        self._evidence = evidence

    def __repr__(self) -> str:
        return "OwnerTables()"

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    def transaction(self) -> AbstractContextManager[None]:
        return self._database.transaction()

    def _settle(self) -> None:
        self._database.settle("checkpointing the store")

    # -- our mailbox ------------------------------------------------------------------

    def own_mailbox(self) -> OwnMailbox | None:
        with self._lock, self._guard("reading the mailbox"):
            row = self._db.execute(
                "SELECT address, version, paired_ms, last_drained_ms, waiting, "
                "waiting_bytes, one_time_left FROM own_mailbox"
            ).fetchone()
        if row is None:
            return None
        return OwnMailbox(OnionAddress.from_public_key(row[0]), *row[1:])

    def pairing(self) -> tuple[OnionAddress, str] | None:
        """A pairing under way: the mailbox's address and the setup code."""
        with self._lock, self._guard("reading the mailbox"):
            row = self._db.execute("SELECT address, code FROM mailbox_pairing").fetchone()
        return None if row is None else (OnionAddress.from_public_key(row[0]), row[1])

    def begin_pairing(self, address: OnionAddress, code: str, now: int = 0) -> None:
        """Remember that we are pairing with ``address`` (the mailbox we have,
        if any, stays ours until the new one said yes)."""
        with self._lock, self.transaction(), self._guard("pairing"):
            self._db.execute(
                "INSERT OR REPLACE INTO mailbox_pairing (one, address, code, started_ms) "
                "VALUES (1, ?, ?, ?)",
                (address.public_key, code, now),
            )

    def pairing_started(self) -> int:
        with self._lock, self._guard("reading the mailbox"):
            row = self._db.execute("SELECT started_ms FROM mailbox_pairing").fetchone()
        return 0 if row is None else int(row[0])

    def abandon_pairing(self) -> None:
        """The mailbox said no to the code: forget the pairing."""
        with self._lock, self.transaction(), self._guard("pairing"):
            self._db.execute("DELETE FROM mailbox_pairing")

    def finish_pairing(self, now: int) -> int:
        """The mailbox accepted us: it is our mailbox now, with a new
        announcement version (every contact is to be told), and our contacts
        are to be registered with it. Returns that version."""
        with self._lock, self.transaction(), self._guard("pairing"):
            pending = self._db.execute("SELECT address FROM mailbox_pairing").fetchone()
            if pending is None:
                raise NotFoundError("no mailbox is being paired")
            version = max(now, self._version() + 1)
            self._db.execute("DELETE FROM own_mailbox")
            self._db.execute(
                "INSERT INTO own_mailbox (one, address, version, paired_ms) VALUES (1, ?, ?, ?)",
                (pending[0], version, now),
            )
            self._db.execute("DELETE FROM mailbox_pairing")
            self._db.execute("UPDATE contacts SET mailbox_registered = 0")
            return version

    def _version(self) -> int:
        row = self._db.execute("SELECT version FROM own_mailbox").fetchone()
        if row is not None:
            return int(row[0])
        gone = self._db.execute("SELECT value FROM meta WHERE key = 'mailbox_gone'").fetchone()
        return int.from_bytes(gone[0], "big") if gone else 0

    def forget_mailbox(self, now: int) -> int:
        """No mailbox any more (wiped): contacts are to be told; our prekeys
        go. Returns the new announcement version."""
        with self._lock, self.transaction(), self._guard("forgetting the mailbox"):
            version = max(now, self._version() + 1)
            self._db.execute("DELETE FROM own_mailbox")
            self._db.execute("DELETE FROM prekeys")
            self._db.execute("UPDATE contacts SET mailbox_registered = 0")
            self._db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('mailbox_gone', ?)",
                (version.to_bytes(8, "big"),),
            )
        # The deleted private halves survive nowhere: not in the WAL, and
        # secure_delete zeroed them in the file.
        self._settle()
        return version

    def announcement_version(self) -> int:
        """The version of our current announcement (with or without a mailbox)."""
        with self._lock, self._guard("reading the mailbox"):
            return self._version()

    def note_drained(
        self, now: int, *, waiting: int, waiting_bytes: int, one_time_left: int
    ) -> None:
        with self._lock, self.transaction(), self._guard("updating the mailbox"):
            self._db.execute(
                "UPDATE own_mailbox SET last_drained_ms = ?, waiting = ?, waiting_bytes = ?, "
                "one_time_left = ?",
                (now, waiting, waiting_bytes, one_time_left),
            )

    # -- contacts' mailboxes -----------------------------------------------------------

    def set_contact_mailbox(
        self, contact_id: int, mailbox: OnionAddress | None, version: int
    ) -> bool:
        """A contact's signed announcement: kept if newer than the one we hold."""
        with self._lock, self.transaction(), self._guard("updating a contact"):
            cursor = self._db.execute(
                "UPDATE contacts SET mailbox = ?, mailbox_version = ? "
                "WHERE id = ? AND removed = 0 AND mailbox_version < ?",
                (None if mailbox is None else mailbox.public_key, version, contact_id, version),
            )
            return cursor.rowcount > 0

    def set_mailbox_registered(self, contact_id: int, registered: bool) -> None:
        with self._lock, self.transaction(), self._guard("updating a contact"):
            self._db.execute(
                "UPDATE contacts SET mailbox_registered = ? WHERE id = ?",
                (int(registered), contact_id),
            )

    def mark_mailbox_told(self, contact_id: int, version: int) -> None:
        with self._lock, self.transaction(), self._guard("updating a contact"):
            self._db.execute(
                "UPDATE contacts SET mailbox_told = max(mailbox_told, ?) WHERE id = ?",
                (version, contact_id),
            )

    def removed_registered(self) -> list[tuple[int, bytes]]:
        """Removed contacts still registered at our mailbox: (id, identity key)."""
        with self._lock, self._guard("reading contacts"):
            rows = self._db.execute(
                "SELECT id, address FROM contacts WHERE removed = 1 AND mailbox_registered = 1"
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    # -- prekeys ------------------------------------------------------------------------

    def add_prekeys(self, prekeys: Sequence[tuple[bytes, int, int, bytes]], now: int) -> None:
        """``(key_id, kind, not_after, secret bytes)`` each."""
        with self._lock, self.transaction(), self._guard("storing prekeys"):
            self._db.executemany(
                "INSERT INTO prekeys (key_id, kind, not_after, secret, created_ms) "
                "VALUES (?, ?, ?, ?, ?)",
                [(k, kind, na, secret, now) for k, kind, na, secret in prekeys],
            )

    def prekeys_to_upload(self, limit: int) -> list[bytes]:
        """Secrets (bytes) of prekeys the mailbox does not have yet."""
        with self._lock, self._guard("reading prekeys"):
            rows = self._db.execute(
                "SELECT secret FROM prekeys WHERE uploaded = 0 ORDER BY created_ms LIMIT ?",
                (limit,),
            ).fetchall()
        return [r[0] for r in rows]

    def mark_prekeys_uploaded(self, key_ids: Sequence[bytes]) -> None:
        with self._lock, self.transaction(), self._guard("updating prekeys"):
            self._db.executemany(
                "UPDATE prekeys SET uploaded = 1 WHERE key_id = ?", [(k,) for k in key_ids]
            )

    def prekey_stock(self, kind: int) -> tuple[int, int]:
        """How many prekeys of ``kind`` we hold, and the newest ``not_after`` (0: none)."""
        with self._lock, self._guard("reading prekeys"):
            row = self._db.execute(
                "SELECT count(*), coalesce(max(not_after), 0) FROM prekeys WHERE kind = ?",
                (kind,),
            ).fetchone()
        return int(row[0]), int(row[1])

    def prekey_secret(self, key_id: bytes) -> bytes | None:
        with self._lock, self._guard("reading prekeys"):
            row = self._db.execute(
                "SELECT secret FROM prekeys WHERE key_id = ?", (key_id,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def prekey_was_used(self, key_id: bytes) -> bool:
        with self._lock, self._guard("reading prekeys"):
            row = self._db.execute(
                "SELECT 1 FROM used_prekeys WHERE key_id = ?", (key_id,)
            ).fetchone()
        return row is not None

    def use_prekey(self, key_id: bytes, kind: int, one_time: int, now: int) -> None:
        """An envelope sealed to this prekey was opened: a one-time one is
        deleted (its id is kept). Call inside the envelope's transaction."""
        if kind != one_time:
            return
        with self._lock, self._guard("deleting a prekey"):
            self._db.execute("DELETE FROM prekeys WHERE key_id = ?", (key_id,))
            self._db.execute(
                "INSERT OR IGNORE INTO used_prekeys (key_id, used_ms) VALUES (?, ?)",
                (key_id, now),
            )

    def expire_prekeys(self, now_s: int, keep_after_s: int) -> int:
        """Delete prekeys past ``not_after + keep_after_s`` (no envelope sealed to
        one can still be opened), and forget old used ids. Returns how many."""
        with self._lock, self.transaction(), self._guard("expiring prekeys"):
            cursor = self._db.execute(
                "DELETE FROM prekeys WHERE not_after + ? < ?", (keep_after_s, now_s)
            )
            self._db.execute(
                "DELETE FROM used_prekeys WHERE used_ms < ?", ((now_s - keep_after_s) * 1000,)
            )
            self._db.execute(
                "DELETE FROM envelopes_seen WHERE seen_ms < ?", ((now_s - keep_after_s) * 1000,)
            )
            deleted = cursor.rowcount
        if deleted:
            self._settle()  # as in forget_mailbox
        return deleted

    def checkpoint(self) -> None:
        """Move the WAL into the database and empty it: deleted rows (a used
        prekey) then survive nowhere (secure_delete zeroes them in the file)."""
        self._database.settle("checkpointing")

    # -- envelopes opened ---------------------------------------------------------------

    def envelope_seen(self, envelope_id: bytes) -> bool:
        with self._lock, self._guard("reading envelopes"):
            row = self._db.execute(
                "SELECT 1 FROM envelopes_seen WHERE id = ?", (envelope_id,)
            ).fetchone()
        return row is not None

    def note_envelope(self, envelope_id: bytes, now: int) -> None:
        with self._lock, self._guard("recording an envelope"):
            self._db.execute(
                "INSERT OR IGNORE INTO envelopes_seen (id, seen_ms) VALUES (?, ?)",
                (envelope_id, now),
            )

    # -- what we owe --------------------------------------------------------------------

    def owe(self, contact_id: int, kind: OwedKind, ids: Sequence[bytes], now: int) -> None:
        if kind not in OWED_KINDS:
            raise StoreError(f"unknown kind of debt {kind!r}")
        with self._lock, self.transaction(), self._guard("recording what we owe"):
            self._db.executemany(
                "INSERT OR IGNORE INTO owed (contact_id, kind, id, created_ms) VALUES (?, ?, ?, ?)",
                [(contact_id, kind, i, now) for i in ids],
            )

    def owed(self, contact_id: int, kind: OwedKind, limit: int) -> list[bytes]:
        with self._lock, self._guard("reading what we owe"):
            rows = self._db.execute(
                "SELECT id FROM owed WHERE contact_id = ? AND kind = ? ORDER BY created_ms LIMIT ?",
                (contact_id, kind, limit),
            ).fetchall()
        return [bytes(r[0]) for r in rows]

    def has_owed(self, contact_id: int) -> bool:
        with self._lock, self._guard("reading what we owe"):
            row = self._db.execute(
                "SELECT 1 FROM owed WHERE contact_id = ? LIMIT 1", (contact_id,)
            ).fetchone()
        return row is not None

    def settle(self, contact_id: int, kind: OwedKind, ids: Sequence[bytes]) -> None:
        with self._lock, self.transaction(), self._guard("settling what we owe"):
            self._db.executemany(
                "DELETE FROM owed WHERE contact_id = ? AND kind = ? AND id = ?",
                [(contact_id, kind, i) for i in ids],
            )

    # -- deposits (sender side) ---------------------------------------------------------

    def undeposited(self, contact_id: int, limit: int, *, after: int = 0) -> list[Outgoing]:
        """Queued or sent, not yet acked and not wholly deposited, oldest first."""
        with self._lock, self._guard("reading the outbox"):
            rows = self._db.execute(
                "SELECT * FROM message_rows WHERE direction = 'out' AND contact_id = ? "
                "AND state IN ('queued', 'sent') AND deposited_ms IS NULL AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (contact_id, after, limit),
            ).fetchall()
        return [self._rows.outgoing(row) for row in rows]

    def deposited_count(self, contact_id: int) -> int:
        """Outgoing messages to the contact its mailbox holds, not yet acked."""
        with self._lock, self._guard("reading the outbox"):
            row = self._db.execute(
                "SELECT count(*) FROM messages WHERE direction = 'out' AND contact_id = ? "
                "AND state IN ('queued', 'sent') AND deposited_ms IS NOT NULL",
                (contact_id,),
            ).fetchone()
        return int(row[0])

    def has_undeposited(self, contact_id: int) -> bool:
        with self._lock, self._guard("reading the outbox"):
            row = self._db.execute(
                "SELECT 1 FROM messages WHERE direction = 'out' AND contact_id = ? "
                "AND state IN ('queued', 'sent') AND deposited_ms IS NULL LIMIT 1",
                (contact_id,),
            ).fetchone()
        return row is not None

    def mark_deposited(
        self, progress: Sequence[tuple[bytes, int, bool]], now: int, *, contact_id: int
    ) -> list[bytes]:
        """``(id, bytes deposited so far, whole)`` per message: a text is whole
        at once, a file once its last part went. Returns the ids now wholly
        deposited (their state shows ``deposited`` until acked)."""
        done: list[bytes] = []
        moved: list[Moved] = []
        with self._lock, self.transaction(), self._guard("updating the outbox"):
            for message_id, offset, whole in progress:
                cursor = self._db.execute(
                    "UPDATE messages SET deposit_offset = max(deposit_offset, ?), "
                    "deposited_ms = CASE WHEN ? THEN ? ELSE deposited_ms END "
                    "WHERE direction = 'out' AND contact_id = ? AND id = ? "
                    "AND state IN ('queued', 'sent') RETURNING kind",
                    (offset, int(whole), now, contact_id, message_id),
                ).fetchall()
                if whole and cursor:
                    done.append(message_id)
                    moved.append((message_id, contact_id, cursor[0][0]))
            self._evidence.moved(Event.SENT, moved, now)
        return done

    # -- arriving files through a mailbox ------------------------------------------------

    def write_file_part(
        self,
        file_id: bytes,
        offset: int,
        data: bytes,
        *,
        contact_id: int,
        max_disk: int | None = None,
        now: int | None = None,
    ) -> int:
        """Add a part of an incoming file that came through a mailbox, where a
        chunk travels in parts: whole chunks are written as they complete,
        the rest is held (durably, in this transaction) until its next part.
        A part already held or stored is ignored (a re-delivered envelope);
        one past what is held is a :class:`StoreError` (a part is missing).
        Returns the bytes stored and held."""
        with self._lock, self._guard("writing a file part"):
            transfer = self._transfers.arriving(file_id, contact_id)
            if transfer is None:
                raise NotFoundError(f"no file {file_id.hex()} is arriving")
            stored = int(transfer.offset)
            row = self._db.execute(
                "SELECT part_offset, part FROM transfers WHERE contact_id = ? AND id = ?",
                (transfer.contact_id, file_id),
            ).fetchone()
            held = bytes(row[1]) if row and row[1] is not None and row[0] == stored else b""
            end = stored + len(held)
            if offset + len(data) <= end:
                return end
            if offset > end:
                raise StoreError(f"a file part at {offset}, but {end} bytes have arrived")
            held += data[end - offset :]
            size = int(transfer.size)
            while held:
                due = min(FILE_CHUNK_SIZE, size - stored)
                if due <= 0:
                    raise StoreError("a file part past the file's end")
                if len(held) < due:
                    break
                self._transfers.write_file_chunk(
                    file_id, stored, held[:due], contact_id=contact_id, max_disk=max_disk, now=now
                )
                stored += due
                held = held[due:]
            self._db.execute(
                "UPDATE transfers SET part_offset = ?, part = ? WHERE contact_id = ? AND id = ?",
                (stored, held or None, transfer.contact_id, file_id),
            )
            return stored + len(held)
