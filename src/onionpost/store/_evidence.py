"""The evidence log's tables: entries, our checkpoints, what contacts
witnessed, what we witnessed for them, and alarms (``protocol-spec/evidence.md``).

A part of :class:`~onionpost.store.Store` over its
:class:`~onionpost.store._database.Database`. The other parts append an
entry in the same transaction as the change it records (a text queued,
stored, acknowledged, read; a file; a contact added or removed), so the log
holds an event exactly when the store does. Leaf ``idx`` is the entry's
position in the tree, from 0, with no gaps.

Checkpoints are signed outside the store (it holds no identity key): the
caller passes a ``sign`` function. Each stored checkpoint keeps the tree's
frontier (:class:`~onionpost.proto.merkle.Frontier`), so the next one hashes
only the entries appended since. Leaf hashes and the roots of the perfect
subtrees over them (:class:`~onionpost.proto.merkle.TreeHashes`, ~64 bytes a
leaf) are kept in memory once read, for proofs in O(log² n); they are only
ever read back from committed rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from onionpost.errors import ConfigError, StoreError
from onionpost.proto import pack, unpack
from onionpost.proto.address import OnionAddress
from onionpost.proto.evidence import Entry, Event, state_entry
from onionpost.proto.merkle import (
    Frontier,
    RangeHasher,
    TreeHashes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
)
from onionpost.proto.note import Checkpoint, Note
from onionpost.store._database import Database

__all__ = ["Alarm", "EvidenceLog", "Moved"]

#: A message whose state moved: id, contact, kind ("text" or "file").
Moved = tuple[bytes, int, str]

_MAX_FRONTIER: Final = 64
# Entries read per query when hashing the log.
_READ_BATCH: Final = 4096


@dataclass(frozen=True, slots=True)
class Alarm:
    """Two signed checkpoints that cannot both be true of one log."""

    id: int
    made_ms: int
    kind: str  # "rollback" (ours was cut short or put back) or "fork" / "contact-rollback"
    contact_id: int | None
    theirs: bytes  # the checkpoint a contact holds (signed by the log's key)
    ours: bytes  # the checkpoint we hold or present


class EvidenceLog:
    """Appending entries, making checkpoints, keeping witnesses; see the module doc."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._lock = database.lock
        self._guard = database.guard
        self._addresses: dict[int, str] = {}
        self._leaves = TreeHashes()

    def __repr__(self) -> str:
        return "EvidenceLog()"

    @property
    def _db(self) -> sqlite3.Connection:
        return self._database.conn

    # -- appending (inside the caller's transaction) --------------------------

    def counterparty(self, contact_id: int) -> str:
        """The onion address of ``contact_id`` (a removed contact's too)."""
        found = self._addresses.get(contact_id)
        if found is None:
            row = self._db.execute(
                "SELECT address FROM contacts WHERE id = ?", (contact_id,)
            ).fetchone()
            if row is None:
                raise ConfigError(f"no contact {contact_id}")
            found = self._addresses[contact_id] = str(OnionAddress.from_public_key(row[0]))
        return found

    def append(self, entries: Iterable[Entry]) -> None:
        """Append ``entries`` in order; call inside the transaction of the change."""
        self._db.executemany(
            "INSERT INTO evidence (idx, entry) SELECT coalesce(max(idx) + 1, 0), ? FROM evidence",
            [(entry.encode(),) for entry in entries],
        )

    def moved(self, event: Event, moved: Sequence[Moved], now: int) -> None:
        """Append one state entry per message that moved (sent, delivered, read)."""
        if moved:
            self.append(
                state_entry(event, now, self.counterparty(contact), mid, kind)
                for mid, contact, kind in moved
            )

    # -- reading ---------------------------------------------------------------

    def address(self, contact_id: int) -> str:
        """:meth:`counterparty`, for a caller outside a transaction."""
        with self._lock, self._guard("reading a contact"):
            return self.counterparty(contact_id)

    def of_messages(self, ids: set[bytes], size: int) -> list[tuple[int, bytes]]:
        """The entries among the first ``size`` that name one of ``ids``."""
        found: list[tuple[int, bytes]] = []
        start = 0
        while start < size:
            batch = self.entries(start, min(_READ_BATCH, size - start))
            if not batch:
                break
            for idx, data in batch:
                if Entry.decode(data).message_id in ids:
                    found.append((idx, data))
            start = batch[-1][0] + 1
        return found

    def size(self) -> int:
        with self._lock, self._guard("reading the evidence log"):
            (count,) = self._db.execute("SELECT coalesce(max(idx) + 1, 0) FROM evidence").fetchone()
        return int(count)

    def entries(self, start: int = 0, limit: int = 100) -> list[tuple[int, bytes]]:
        """Up to ``limit`` entries from leaf ``start``: (index, encoded entry)."""
        with self._lock, self._guard("reading the evidence log"):
            rows = self._db.execute(
                "SELECT idx, entry FROM evidence WHERE idx >= ? ORDER BY idx LIMIT ?",
                (max(0, start), max(0, limit)),
            ).fetchall()
        return [(int(i), bytes(e)) for i, e in rows]

    def leaves(self, size: int) -> Sequence[bytes]:
        """The first ``size`` leaf hashes (read once, then kept, packed)."""
        with self._lock:
            self._read_leaves(size)
            return [self._leaves[i] for i in range(size)]

    def _read_leaves(self, size: int) -> None:
        while len(self._leaves) < size:
            batch = self.entries(len(self._leaves), _READ_BATCH)
            if not batch:
                raise StoreError(f"the evidence log has {len(self._leaves)} entries, not {size}")
            for idx, data in batch:
                if idx != len(self._leaves):
                    raise StoreError(f"the evidence log has a gap at entry {len(self._leaves)}")
                self._leaves.append(leaf_hash(data))

    def hasher(self, size: int) -> RangeHasher:
        """MTH of any range of the first ``size`` leaves, from the subtree roots
        kept (:class:`~onionpost.proto.merkle.TreeHashes`: O(log n) a range)."""
        with self._lock:
            self._read_leaves(size)
            return self._leaves.hasher(size)

    def inclusion(self, index: int, size: int) -> tuple[bytes, ...]:
        return inclusion_proof(index, size, self.hasher(size))

    def consistency(self, old_size: int, size: int) -> tuple[bytes, ...]:
        return consistency_proof(old_size, size, self.hasher(size))

    # -- checkpoints -----------------------------------------------------------

    def latest_checkpoint(self) -> Note | None:
        with self._lock, self._guard("reading the evidence log"):
            row = self._db.execute(
                "SELECT note FROM evidence_checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
        return None if row is None else Note.parse(bytes(row[0]))

    def checkpoints(self) -> list[Note]:
        """Every checkpoint we signed, smallest first."""
        with self._lock, self._guard("reading the evidence log"):
            rows = self._db.execute(
                "SELECT note FROM evidence_checkpoints ORDER BY size"
            ).fetchall()
        return [Note.parse(bytes(r[0])) for r in rows]

    def checkpoint(self, origin: str, sign: Callable[[str], Note], now: int) -> Note:
        """The checkpoint of the whole log, signed: the latest if the log has not
        grown since, else a new one (hashing only what was appended)."""
        with self._database.transaction(), self._guard("signing an evidence checkpoint"):
            row = self._db.execute(
                "SELECT size, note, frontier FROM evidence_checkpoints ORDER BY size DESC LIMIT 1"
            ).fetchone()
            (size,) = self._db.execute("SELECT coalesce(max(idx) + 1, 0) FROM evidence").fetchone()
            if row is not None and row[0] == size:
                return Note.parse(bytes(row[1]))
            if row is None:
                frontier = Frontier()
            else:
                stack = unpack(bytes(row[2]), max_len=32, max_items=_MAX_FRONTIER)
                frontier = Frontier(int(row[0]), [bytes(h) for h in stack])
            for _idx, data in self._db.execute(
                "SELECT idx, entry FROM evidence WHERE idx >= ? ORDER BY idx", (frontier.size,)
            ):
                frontier.append(leaf_hash(bytes(data)))
            if frontier.size != size:
                raise StoreError("the evidence log has a gap")
            note = sign(Checkpoint(origin, size, frontier.root()).to_text())
            self._db.execute(
                "INSERT INTO evidence_checkpoints (size, note, frontier, made_ms) "
                "VALUES (?, ?, ?, ?)",
                (size, note.to_bytes(), pack(list(frontier.stack)), now),
            )
        return note

    # -- witnesses ---------------------------------------------------------------

    def witness(self, contact_id: int) -> Note | None:
        """Our checkpoint as ``contact_id`` last cosigned it."""
        return self._one("evidence_witnesses", contact_id)

    def set_witness(self, contact_id: int, note: Note, size: int, now: int) -> None:
        self._put("evidence_witnesses", contact_id, note, size, now)

    def witnesses(self) -> list[tuple[int, Note]]:
        """Every contact's latest cosignature of our log: (contact, checkpoint)."""
        with self._lock, self._guard("reading the evidence log"):
            rows = self._db.execute(
                "SELECT contact_id, note FROM evidence_witnesses ORDER BY size DESC"
            ).fetchall()
        return [(int(c), Note.parse(bytes(n))) for c, n in rows]

    def witnessed(self, contact_id: int) -> Note | None:
        """The checkpoint of ``contact_id``'s log that we last cosigned."""
        return self._one("evidence_witnessed", contact_id)

    def set_witnessed(self, contact_id: int, note: Note, size: int, now: int) -> None:
        self._put("evidence_witnessed", contact_id, note, size, now)

    def _one(self, table: str, contact_id: int) -> Note | None:
        with self._lock, self._guard("reading the evidence log"):
            row = self._db.execute(
                f"SELECT note FROM {table} WHERE contact_id = ?",  # noqa: S608 - our names
                (contact_id,),
            ).fetchone()
        return None if row is None else Note.parse(bytes(row[0]))

    def _put(self, table: str, contact_id: int, note: Note, size: int, now: int) -> None:
        with self._database.transaction(), self._guard("storing a witnessed checkpoint"):
            self._db.execute(
                f"INSERT INTO {table} (contact_id, note, size, stored_ms) "  # noqa: S608
                "VALUES (?, ?, ?, ?) ON CONFLICT (contact_id) DO UPDATE SET "
                "note = excluded.note, size = excluded.size, stored_ms = excluded.stored_ms",
                (contact_id, note.to_bytes(), size, now),
            )

    # -- alarms ------------------------------------------------------------------

    def raise_alarm(
        self, kind: str, contact_id: int | None, theirs: Note, ours: Note, now: int
    ) -> bool:
        """Record an alarm once (the same pair of checkpoints again is not new)."""
        with self._database.transaction(), self._guard("recording an evidence alarm"):
            found = self._db.execute(
                "SELECT 1 FROM evidence_alarms WHERE kind = ? AND theirs = ? AND ours = ?",
                (kind, theirs.to_bytes(), ours.to_bytes()),
            ).fetchone()
            if found is not None:
                return False
            self._db.execute(
                "INSERT INTO evidence_alarms (made_ms, kind, contact_id, theirs, ours) "
                "VALUES (?, ?, ?, ?, ?)",
                (now, kind, contact_id, theirs.to_bytes(), ours.to_bytes()),
            )
        return True

    def alarms(self) -> list[Alarm]:
        with self._lock, self._guard("reading the evidence log"):
            rows = self._db.execute(
                "SELECT id, made_ms, kind, contact_id, theirs, ours FROM evidence_alarms "
                "ORDER BY id"
            ).fetchall()
        return [Alarm(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5])) for r in rows]
