"""Which one-time prekeys a mailbox handed to which contact, and which were used.

Theory of operation
-------------------
A one-time prekey leaves the mailbox's ``prekeys`` table when a contact takes
it (so it is never handed out twice) and enters ``prekeys_out``, under that
contact, until a deposit of that contact sealed to it arrives (its ``key_id``
is in the envelope's clear header): then it counts as used and its row goes.
A contact holding ``max_unused`` such prekeys gets the owner's last-resort
prekey instead of another one-time prekey (mailbox.md §7.6), so one contact
(a hostile one, or one whose deposits keep failing) cannot take the stock
that gives the owner's other contacts forward secrecy. Rows also go when the
prekey expires (it can no longer be used), when the contact is deregistered
and when the owner is wiped. The owner sees the count per contact (MbUsage's
``unused_prekeys``).

These functions run inside the caller's transaction (the :class:`MailboxStore`
method that takes or deposits), on its connection: the count and the change
are one commit.
"""

from __future__ import annotations

import sqlite3
from typing import Final

__all__ = [
    "LEDGER_SCHEMA",
    "forget_contact",
    "forget_expired",
    "forget_owner",
    "note_taken",
    "note_used",
    "unused",
    "unused_by_contact",
]

LEDGER_SCHEMA: Final = (
    """
    CREATE TABLE prekeys_out (
        owner_id  INTEGER NOT NULL REFERENCES owners (id),
        contact   BLOB NOT NULL CHECK (length(contact) = 32),
        key_id    BLOB NOT NULL CHECK (length(key_id) = 16),
        not_after INTEGER NOT NULL,
        taken_ms  INTEGER NOT NULL,
        PRIMARY KEY (owner_id, contact, key_id)
    ) STRICT, WITHOUT ROWID
    """,
)


def unused(conn: sqlite3.Connection, owner_id: int, contact: bytes) -> int:
    """One-time prekeys ``contact`` took from this owner and has not used."""
    (count,) = conn.execute(
        "SELECT count(*) FROM prekeys_out WHERE owner_id = ? AND contact = ?",
        (owner_id, contact),
    ).fetchone()
    return int(count)


def note_taken(  # noqa: PLR0917 - one row's columns
    conn: sqlite3.Connection,
    owner_id: int,
    contact: bytes,
    key_id: bytes,
    not_after: int,
    now_ms: int,
) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO prekeys_out (owner_id, contact, key_id, not_after, taken_ms) "
        "VALUES (?, ?, ?, ?, ?)",
        (owner_id, contact, key_id, not_after, now_ms),
    )


def note_used(conn: sqlite3.Connection, owner_id: int, contact: bytes, key_id: bytes) -> None:
    """A deposit of ``contact`` names ``key_id``: that prekey counts as used."""
    conn.execute(
        "DELETE FROM prekeys_out WHERE owner_id = ? AND contact = ? AND key_id = ?",
        (owner_id, contact, key_id),
    )


def unused_by_contact(conn: sqlite3.Connection, owner_id: int) -> dict[bytes, int]:
    """The owner's contacts (identity keys) holding unused one-time prekeys."""
    rows = conn.execute(
        "SELECT contact, count(*) FROM prekeys_out WHERE owner_id = ? "
        "GROUP BY contact ORDER BY contact",
        (owner_id,),
    ).fetchall()
    return {bytes(contact): int(count) for contact, count in rows}


def forget_contact(conn: sqlite3.Connection, owner_id: int, contact: bytes) -> None:
    conn.execute("DELETE FROM prekeys_out WHERE owner_id = ? AND contact = ?", (owner_id, contact))


def forget_owner(conn: sqlite3.Connection, owner_id: int) -> None:
    conn.execute("DELETE FROM prekeys_out WHERE owner_id = ?", (owner_id,))


def forget_expired(conn: sqlite3.Connection, now_s: int) -> int:
    return conn.execute("DELETE FROM prekeys_out WHERE not_after <= ?", (now_s,)).rowcount
