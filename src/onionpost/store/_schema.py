"""The store's schema, as the list of migrations that builds it.

``PRAGMA user_version`` is the number of migrations applied. Opening a store
applies the missing ones in order, each in its own transaction together with
its ``user_version`` bump, so a crash leaves the store at one version or the
next, never between. A store whose version is higher than
``len(MIGRATIONS)`` was written by a newer onionpost and is refused.

Rules for a new migration: append, never edit a released one; only
additive or data-preserving steps; no ``executescript`` (it commits).

What is plaintext here is metadata the daemon must query on: ids, contact,
direction, kind, state, times and file sizes. Text bodies, content types,
file names and file hashes are in ``content``, sealed (see ``_crypto`` and
``protocol-spec/storage.md`` §Store).
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS", "SCHEMA_VERSION"]

_V1: Final = (
    """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE contacts (
        id                 INTEGER PRIMARY KEY AUTOINCREMENT,
        name               TEXT NOT NULL,
        address            BLOB NOT NULL CHECK (length(address) = 32),
        client_auth_public BLOB NOT NULL CHECK (length(client_auth_public) = 32),
        added_ms           INTEGER NOT NULL,
        last_seen_ms       INTEGER,
        last_success_ms    INTEGER,
        failures           INTEGER NOT NULL DEFAULT 0,
        removed            INTEGER NOT NULL DEFAULT 0 CHECK (removed IN (0, 1))
    ) STRICT
    """,
    # Names and addresses are unique among current contacts; a removed
    # contact keeps its row (and its messages keep their sender).
    "CREATE UNIQUE INDEX contacts_name ON contacts (name COLLATE NOCASE) WHERE removed = 0",
    "CREATE UNIQUE INDEX contacts_address ON contacts (address) WHERE removed = 0",
    """
    CREATE TABLE messages (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        direction    TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        contact_id   INTEGER NOT NULL REFERENCES contacts (id),
        id           BLOB NOT NULL CHECK (length(id) = 16),
        kind         TEXT NOT NULL CHECK (kind IN ('text', 'file')),
        state        TEXT NOT NULL CHECK (
                         state IN ('queued', 'sent', 'delivered', 'read', 'expired', 'received')
                     ),
        created_ms   INTEGER NOT NULL,
        stored_ms    INTEGER NOT NULL,
        sent_ms      INTEGER,
        delivered_ms INTEGER,
        read_ms      INTEGER,
        expires_ms   INTEGER,
        size         INTEGER CHECK (size IS NULL OR size >= 0),
        content      BLOB NOT NULL,
        UNIQUE (direction, contact_id, id)
    ) STRICT
    """,
    # Our own ids are random 16 bytes: unique whatever the contact.
    "CREATE UNIQUE INDEX messages_out_id ON messages (id) WHERE direction = 'out'",
    "CREATE INDEX messages_id ON messages (id)",
    """
    CREATE INDEX messages_pending ON messages (contact_id, seq)
        WHERE direction = 'out' AND state IN ('queued', 'sent')
    """,
    # Incoming files still arriving. A finished one moves to messages (and so
    # gets its inbox seq when it is complete, not when it was offered).
    # What the store's queries read: the current contacts, and messages with
    # their contact's name.
    """
    CREATE VIEW current_contacts AS
        SELECT id, name, address, client_auth_public, added_ms, last_seen_ms,
               last_success_ms, failures
        FROM contacts WHERE removed = 0
    """,
    """
    CREATE VIEW message_rows AS
        SELECT m.seq, m.direction, m.contact_id, c.name AS contact, m.id, m.kind, m.state,
               m.created_ms, m.stored_ms, m.sent_ms, m.delivered_ms, m.read_ms, m.expires_ms,
               m.size, m.content
        FROM messages m JOIN contacts c ON c.id = m.contact_id
    """,
    """
    CREATE TABLE transfers (
        contact_id INTEGER NOT NULL REFERENCES contacts (id),
        id         BLOB NOT NULL CHECK (length(id) = 16),
        created_ms INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        size       INTEGER NOT NULL CHECK (size >= 0),
        content    BLOB NOT NULL,
        PRIMARY KEY (contact_id, id)
    ) STRICT
    """,
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (_V1,)
SCHEMA_VERSION: Final = len(MIGRATIONS)
