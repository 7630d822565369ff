"""The store's schema, as the list of migrations that builds it.

``PRAGMA user_version`` is the number of migrations applied. Opening a store
applies the missing ones in order, each in its own transaction together with
its ``user_version`` bump, so a crash leaves the store at one version or the
next, never between. A store whose version is higher than
``len(MIGRATIONS)`` was written by a newer onionpost and is refused.

Rules for a new migration: append, never edit a released one; only
additive or data-preserving steps; no ``executescript`` (it commits). A
change SQLite's ``ALTER TABLE`` cannot make (a new CHECK) rebuilds the table
as https://sqlite.org/lang_altertable.html#otheralter says: create the new
table, copy, drop the old one, rename, recreate its indexes and views; the
runner then checks the foreign keys before it commits.

Since version 3 the whole database is encrypted and authenticated
(SQLCipher, :mod:`onionpost.store._database`): the columns below are what the
daemon queries on, and only someone with the store key can read them. Text
bodies, content types, file names and file hashes are in addition sealed in
``content``, each bound to its row (``protocol-spec/storage.md`` §5).
Versions 1 and 2 were plaintext files; :mod:`onionpost.store._legacy`
brings such a store to version 3, into a new encrypted file.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from onionpost.store import _open

__all__ = ["BOUND_VERSION", "MIGRATIONS", "PLAINTEXT_VERSION", "SCHEMA_VERSION", "apply"]

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

# Version 2: outgoing messages may be ``refused`` (final, with the peer's
# reason code); transfers count the bytes they hold (``received``, what the
# disk budget charges) and their last activity (``updated_ms``, for idle
# expiry); indexes for the per-contact unread count and the budget's sum.
# ``messages`` is rebuilt because its state CHECK changes; its seq counter
# (sqlite_sequence) is carried over so that no inbox seq is ever reused.
_V2: Final = (
    "DROP VIEW message_rows",
    """
    CREATE TABLE messages_v2 (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        direction      TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        contact_id     INTEGER NOT NULL REFERENCES contacts (id),
        id             BLOB NOT NULL CHECK (length(id) = 16),
        kind           TEXT NOT NULL CHECK (kind IN ('text', 'file')),
        state          TEXT NOT NULL CHECK (
                           state IN ('queued', 'sent', 'delivered', 'read', 'expired',
                                     'received', 'refused')
                       ),
        created_ms     INTEGER NOT NULL,
        stored_ms      INTEGER NOT NULL,
        sent_ms        INTEGER,
        delivered_ms   INTEGER,
        read_ms        INTEGER,
        expires_ms     INTEGER,
        size           INTEGER CHECK (size IS NULL OR size >= 0),
        content        BLOB NOT NULL,
        refused_ms     INTEGER,
        refused_reason INTEGER CHECK (refused_reason IS NULL OR refused_reason >= 0),
        UNIQUE (direction, contact_id, id),
        CHECK ((state = 'refused') = (refused_reason IS NOT NULL)),
        CHECK (state <> 'refused' OR direction = 'out')
    ) STRICT
    """,
    """
    INSERT INTO messages_v2 (seq, direction, contact_id, id, kind, state, created_ms,
                             stored_ms, sent_ms, delivered_ms, read_ms, expires_ms, size,
                             content)
        SELECT seq, direction, contact_id, id, kind, state, created_ms, stored_ms, sent_ms,
               delivered_ms, read_ms, expires_ms, size, content
        FROM messages ORDER BY seq
    """,
    # The copy set messages_v2's counter to the highest seq present; the old
    # one may be higher (a deleted row's). Keep the higher of the two.
    """
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'messages_v2', 0
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'messages_v2')
    """,
    """
    UPDATE sqlite_sequence
        SET seq = max(seq, coalesce(
            (SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0))
        WHERE name = 'messages_v2'
    """,
    "DROP TABLE messages",
    "ALTER TABLE messages_v2 RENAME TO messages",
    "CREATE UNIQUE INDEX messages_out_id ON messages (id) WHERE direction = 'out'",
    "CREATE INDEX messages_id ON messages (id)",
    """
    CREATE INDEX messages_pending ON messages (contact_id, seq)
        WHERE direction = 'out' AND state IN ('queued', 'sent')
    """,
    # store.messages.unread_count: a contact's received, unread messages (kind second,
    # for the texts-only count).
    """
    CREATE INDEX messages_unread ON messages (contact_id, kind, direction, state)
        WHERE direction = 'in' AND state = 'received'
    """,
    # The disk budget's sum over stored files. Both indexes also hold the
    # columns of their WHERE, so that the queries read the index alone.
    "CREATE INDEX messages_files ON messages (kind, size) WHERE kind = 'file'",
    """
    CREATE VIEW message_rows AS
        SELECT m.seq, m.direction, m.contact_id, c.name AS contact, m.id, m.kind, m.state,
               m.created_ms, m.stored_ms, m.sent_ms, m.delivered_ms, m.read_ms, m.expires_ms,
               m.size, m.content, m.refused_ms, m.refused_reason
        FROM messages m JOIN contacts c ON c.id = m.contact_id
    """,
    # Bytes held so far: 0 here, set from each blob when the store opens.
    "ALTER TABLE transfers ADD COLUMN received INTEGER NOT NULL DEFAULT 0 CHECK (received >= 0)",
    "ALTER TABLE transfers ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0",
    "UPDATE transfers SET updated_ms = started_ms",
)

# Version 3: the store is one SQLCipher file (storage.md §5). The tables are
# those of version 2; the key check sealed in meta is gone, since the file
# itself does not open without the key (its salt is derived from the key, and
# every page carries an HMAC). Row contents and file blobs are sealed with a
# subkey of the store key rather than the key itself, and blobs are named by
# a keyed hash: both are done by the conversion in _legacy, not by SQL.
_V3: Final = ("DELETE FROM meta WHERE key = 'key_check'",)

# Version 4: the mailbox (mailbox.md). Per contact: its mailbox as its last
# signed announcement says, whether it is registered at ours, and which of our
# announcements it has been sent. Per outgoing message: when it was deposited
# in the contact's mailbox, and for a file how many bytes so far. Per arriving
# file: the part of a chunk that arrived through a mailbox (envelopes carry
# half chunks), durable with the envelope that brought it. Our own mailbox,
# our prekeys' private halves (a one-time one is deleted once used; its id is
# kept to notice a second use), the envelopes already opened, and the acks
# and read receipts we owe, durable until sent or deposited.
_V4: Final = (
    "ALTER TABLE contacts ADD COLUMN mailbox BLOB CHECK (mailbox IS NULL OR length(mailbox) = 32)",
    "ALTER TABLE contacts ADD COLUMN mailbox_version INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE contacts ADD COLUMN mailbox_registered INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE contacts ADD COLUMN mailbox_told INTEGER NOT NULL DEFAULT 0",
    "DROP VIEW current_contacts",
    """
    CREATE VIEW current_contacts AS
        SELECT id, name, address, client_auth_public, added_ms, last_seen_ms,
               last_success_ms, failures, mailbox, mailbox_version, mailbox_registered,
               mailbox_told
        FROM contacts WHERE removed = 0
    """,
    "ALTER TABLE messages ADD COLUMN deposited_ms INTEGER",
    "ALTER TABLE messages ADD COLUMN deposit_offset INTEGER NOT NULL DEFAULT 0",
    "DROP VIEW message_rows",
    """
    CREATE VIEW message_rows AS
        SELECT m.seq, m.direction, m.contact_id, c.name AS contact, m.id, m.kind, m.state,
               m.created_ms, m.stored_ms, m.sent_ms, m.delivered_ms, m.read_ms, m.expires_ms,
               m.size, m.content, m.refused_ms, m.refused_reason, m.deposited_ms,
               m.deposit_offset
        FROM messages m JOIN contacts c ON c.id = m.contact_id
    """,
    "ALTER TABLE transfers ADD COLUMN part_offset INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE transfers ADD COLUMN part BLOB",
    """
    CREATE TABLE own_mailbox (
        one             INTEGER PRIMARY KEY CHECK (one = 1),
        address         BLOB NOT NULL CHECK (length(address) = 32),
        version         INTEGER NOT NULL,
        paired_ms       INTEGER,
        last_drained_ms INTEGER,
        waiting         INTEGER,
        waiting_bytes   INTEGER,
        one_time_left   INTEGER
    ) STRICT
    """,
    """
    CREATE TABLE mailbox_pairing (
        one        INTEGER PRIMARY KEY CHECK (one = 1),
        address    BLOB NOT NULL CHECK (length(address) = 32),
        code       TEXT NOT NULL,
        started_ms INTEGER NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE prekeys (
        key_id     BLOB PRIMARY KEY CHECK (length(key_id) = 16),
        kind       INTEGER NOT NULL,
        not_after  INTEGER NOT NULL,
        secret     BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        uploaded   INTEGER NOT NULL DEFAULT 0
    ) STRICT
    """,
    """
    CREATE TABLE used_prekeys (
        key_id  BLOB PRIMARY KEY CHECK (length(key_id) = 16),
        used_ms INTEGER NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE envelopes_seen (
        id      BLOB PRIMARY KEY CHECK (length(id) = 16),
        seen_ms INTEGER NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE owed (
        contact_id INTEGER NOT NULL REFERENCES contacts (id),
        kind       TEXT NOT NULL CHECK (kind IN ('ack', 'read')),
        id         BLOB NOT NULL CHECK (length(id) = 16),
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (contact_id, kind, id)
    ) STRICT
    """,
    """
    CREATE INDEX messages_undeposited ON messages (contact_id, seq)
        WHERE direction = 'out' AND state IN ('queued', 'sent') AND deposited_ms IS NULL
    """,
)

# Version 5 changes no table: from it on the store has a binding file
# (storage.md §5.4, :mod:`onionpost.store._binding`), and one without it is
# refused. It is written, with the file, when a store of version 4 or less
# first opens.
_V5: Final[tuple[str, ...]] = ()

# Version 6: a sent file's sealed copy is deleted once the file reached a
# final state (plus the configured retention); the row stays, and the
# budget no longer charges it (storage.md §5.3).
_V6: Final[tuple[str, ...]] = (
    "ALTER TABLE messages ADD COLUMN copy_dropped_ms INTEGER",
    "DROP INDEX messages_files",
    "CREATE INDEX messages_files ON messages (kind, size, copy_dropped_ms) "
    "WHERE kind = 'file' AND copy_dropped_ms IS NULL",
)

# The evidence log (evidence.md): its entries (leaf idx from 0, no gaps), the
# checkpoints we signed (with the tree's frontier at each), the latest
# checkpoint of ours each contact cosigned, the latest of each contact's we
# cosigned, alarms (two signed checkpoints that contradict each other), and the
# contacts whose safety number the user confirmed.
# A store upgraded to it starts its log empty.
_V7: Final[tuple[str, ...]] = (
    "CREATE TABLE evidence (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL)",
    "CREATE TABLE evidence_checkpoints (size INTEGER PRIMARY KEY, note BLOB NOT NULL, "
    "frontier BLOB NOT NULL, made_ms INTEGER NOT NULL)",
    "CREATE TABLE evidence_witnesses (contact_id INTEGER PRIMARY KEY REFERENCES contacts (id), "
    "note BLOB NOT NULL, size INTEGER NOT NULL, stored_ms INTEGER NOT NULL)",
    "CREATE TABLE evidence_witnessed (contact_id INTEGER PRIMARY KEY REFERENCES contacts (id), "
    "note BLOB NOT NULL, size INTEGER NOT NULL, stored_ms INTEGER NOT NULL)",
    "CREATE TABLE evidence_alarms (id INTEGER PRIMARY KEY, made_ms INTEGER NOT NULL, "
    "kind TEXT NOT NULL, contact_id INTEGER, theirs BLOB NOT NULL, ours BLOB NOT NULL)",
    # The user compared the safety number with this contact and said it matched.
    "CREATE TABLE contact_verified (contact_id INTEGER PRIMARY KEY REFERENCES contacts (id), "
    "verified_ms INTEGER NOT NULL, safety_number TEXT NOT NULL)",
)

# Agency trust (trust.md): the anchors installed (one per agency) and alarms
# (two signed statements of one agency that contradict each other).
_V8: Final[tuple[str, ...]] = (
    "CREATE TABLE trust_anchors (fingerprint BLOB PRIMARY KEY CHECK (length(fingerprint) = 32), "
    "agency TEXT NOT NULL UNIQUE, anchor BLOB NOT NULL, added_ms INTEGER NOT NULL) STRICT",
    "CREATE TABLE trust_alarms (id INTEGER PRIMARY KEY, made_ms INTEGER NOT NULL, "
    "kind TEXT NOT NULL, fingerprint BLOB NOT NULL, first BLOB NOT NULL, "
    "second BLOB NOT NULL) STRICT",
)

# Distribution lists (local-api.md §6, distribution lists): a list's name
# (unique in any letter case), its members (current contacts; removing a
# contact takes it off every list), and each send to a list as its copies,
# one ordinary outgoing message per member, so that each copy's state is that
# message's. Deleting a list forgets its sends; the copies stay messages.
_V9: Final[tuple[str, ...]] = (
    """
    CREATE TABLE lists (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        name       TEXT NOT NULL,
        created_ms INTEGER NOT NULL
    ) STRICT
    """,
    "CREATE UNIQUE INDEX lists_name ON lists (name COLLATE NOCASE)",
    """
    CREATE TABLE list_members (
        list_id    INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
        contact_id INTEGER NOT NULL REFERENCES contacts (id),
        added_ms   INTEGER NOT NULL,
        PRIMARY KEY (list_id, contact_id)
    ) STRICT
    """,
    "CREATE INDEX list_members_contact ON list_members (contact_id)",
    """
    CREATE TABLE list_copies (
        send_id    BLOB NOT NULL CHECK (length(send_id) = 16),
        list_id    INTEGER NOT NULL REFERENCES lists (id) ON DELETE CASCADE,
        contact_id INTEGER NOT NULL REFERENCES contacts (id),
        message_id BLOB NOT NULL UNIQUE CHECK (length(message_id) = 16),
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (send_id, contact_id)
    ) STRICT
    """,
    "CREATE INDEX list_copies_list ON list_copies (list_id, created_ms)",
)

# Handling labels (spec.md §5.10): the highest label we send a contact, as
# set here (``contact set-max-label``) and as the contact advertised in a
# LabelLimit, each a newline-separated list of canonical labels (one per
# scheme; NULL: none). A message's own label is sealed in its row's content.
_V10: Final[tuple[str, ...]] = (
    "ALTER TABLE contacts ADD COLUMN max_label TEXT",
    "ALTER TABLE contacts ADD COLUMN advertised_label TEXT",
)

# Agency trust between endpoints (trust.md §7): our own endorsement proof, the
# latest revocation list and checkpoint held per anchor (verified when
# received), and each contact's endorsement with its last verdict.
_V11: Final[tuple[str, ...]] = (
    "CREATE TABLE trust_own (id INTEGER PRIMARY KEY CHECK (id = 1), "
    "fingerprint BLOB NOT NULL, proof BLOB NOT NULL, installed_ms INTEGER NOT NULL) STRICT",
    "CREATE TABLE trust_held (fingerprint BLOB PRIMARY KEY, revocations BLOB, "
    "checkpoint BLOB) STRICT",
    "CREATE TABLE contact_endorsements (contact_id INTEGER PRIMARY KEY REFERENCES contacts (id), "
    "proof BLOB, status TEXT NOT NULL, describe TEXT NOT NULL, checked_ms INTEGER NOT NULL) STRICT",
    # Per contact, require_endorsement set apart from config.toml's (absent: as configured).
    "CREATE TABLE contact_require_endorsement (contact_id INTEGER PRIMARY KEY "
    "REFERENCES contacts (id), required INTEGER NOT NULL CHECK (required IN (0, 1))) STRICT",
)

# Team channels (groups.md): a group kept here (its id, its name and log head
# as its log gives them), its operations in their order of arrival (each one's
# parents arrived before it, so a replay in that order rebuilds the log), the
# membership the log gives (a cache rewritten with each change), and the
# group messages sent and received, each at the log heads it was sent at (a
# send's copies share a ``send_id``; each copy is an ordinary ``messages`` row).
_V12: Final[tuple[str, ...]] = (
    """
    CREATE TABLE groups (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id   BLOB NOT NULL UNIQUE CHECK (length(group_id) = 16),
        name       TEXT NOT NULL,
        head       BLOB NOT NULL CHECK (length(head) = 32),
        created_ms INTEGER NOT NULL
    ) STRICT
    """,
    """
    CREATE TABLE group_ops (
        gid        INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        arrival    INTEGER NOT NULL,
        hash       BLOB NOT NULL CHECK (length(hash) = 32),
        op         BLOB NOT NULL,
        stored_ms  INTEGER NOT NULL,
        PRIMARY KEY (gid, hash),
        UNIQUE (gid, arrival)
    ) STRICT
    """,
    """
    CREATE TABLE group_members (
        gid          INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        identity_key BLOB NOT NULL CHECK (length(identity_key) = 32),
        name         TEXT NOT NULL,
        admin        INTEGER NOT NULL CHECK (admin IN (0, 1)),
        PRIMARY KEY (gid, identity_key)
    ) STRICT
    """,
    """
    CREATE TABLE group_messages (
        direction  TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        contact_id INTEGER NOT NULL REFERENCES contacts (id),
        message_id BLOB NOT NULL CHECK (length(message_id) = 16),
        gid        INTEGER NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
        send_id    BLOB CHECK (send_id IS NULL OR length(send_id) = 16),
        head       BLOB NOT NULL CHECK (length(head) = 32),
        heads      BLOB NOT NULL CHECK (length(heads) BETWEEN 32 AND 256
                                        AND length(heads) % 32 = 0),
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (direction, contact_id, message_id)
    ) STRICT
    """,
    "CREATE INDEX group_messages_send ON group_messages (gid, send_id)",
)

# Version 13: members of a team channel that are not our contacts, introduced
# by a group we share (groups.md §9). Such a peer is a row of ``contacts``
# with the group that introduced it and the admin whose operation carried its
# card (both NULL for a contact): delivery, sessions and messages work as a
# contact's, but it is no contact (``current_contacts`` leaves it out; its
# name, its card's, need not be unique) until the user adds its card.
# ``current_peers`` is everyone the engine reaches: contacts and introduced.
_V13: Final[tuple[str, ...]] = (
    "ALTER TABLE contacts ADD COLUMN introduced_group BLOB "
    "CHECK (introduced_group IS NULL OR length(introduced_group) = 16)",
    "ALTER TABLE contacts ADD COLUMN introduced_by BLOB "
    "CHECK (introduced_by IS NULL OR length(introduced_by) = 32)",
    "DROP INDEX contacts_name",
    "CREATE UNIQUE INDEX contacts_name ON contacts (name COLLATE NOCASE) "
    "WHERE removed = 0 AND introduced_group IS NULL",
    "DROP VIEW current_contacts",
    """
    CREATE VIEW current_contacts AS
        SELECT id, name, address, client_auth_public, added_ms, last_seen_ms,
               last_success_ms, failures, mailbox, mailbox_version, mailbox_registered,
               mailbox_told, introduced_group, introduced_by
        FROM contacts WHERE removed = 0 AND introduced_group IS NULL
    """,
    """
    CREATE VIEW current_peers AS
        SELECT id, name, address, client_auth_public, added_ms, last_seen_ms,
               last_success_ms, failures, mailbox, mailbox_version, mailbox_registered,
               mailbox_told, introduced_group, introduced_by
        FROM contacts WHERE removed = 0
    """,
)

# Version 14: one index on a message's random id where there were two (an
# incoming row) or three (an outgoing one). A row inserted dirties one leaf
# page per index on a random key, and SQLCipher encrypts and MACs every page
# a commit writes (about 45 µs a page here): the table's UNIQUE (direction,
# contact_id, id) and the index on id alone become one unique index on
# (id, direction, contact_id), which serves both (an id alone, or with its
# direction and contact, and ``ON CONFLICT (direction, contact_id, id)``).
# Our own ids keep their own unique index (messages_out_id): unique whatever
# the contact. ``messages`` is rebuilt (a table constraint cannot be
# dropped), its columns, checks, other indexes, view and seq counter as
# they were.
_V14: Final[tuple[str, ...]] = (
    "DROP VIEW message_rows",
    """
    CREATE TABLE messages_v14 (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        direction       TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        contact_id      INTEGER NOT NULL REFERENCES contacts (id),
        id              BLOB NOT NULL CHECK (length(id) = 16),
        kind            TEXT NOT NULL CHECK (kind IN ('text', 'file')),
        state           TEXT NOT NULL CHECK (
                            state IN ('queued', 'sent', 'delivered', 'read', 'expired',
                                      'received', 'refused')
                        ),
        created_ms      INTEGER NOT NULL,
        stored_ms       INTEGER NOT NULL,
        sent_ms         INTEGER,
        delivered_ms    INTEGER,
        read_ms         INTEGER,
        expires_ms      INTEGER,
        size            INTEGER CHECK (size IS NULL OR size >= 0),
        content         BLOB NOT NULL,
        refused_ms      INTEGER,
        refused_reason  INTEGER CHECK (refused_reason IS NULL OR refused_reason >= 0),
        deposited_ms    INTEGER,
        deposit_offset  INTEGER NOT NULL DEFAULT 0,
        copy_dropped_ms INTEGER,
        CHECK ((state = 'refused') = (refused_reason IS NOT NULL)),
        CHECK (state <> 'refused' OR direction = 'out')
    ) STRICT
    """,
    """
    INSERT INTO messages_v14 (seq, direction, contact_id, id, kind, state, created_ms,
                              stored_ms, sent_ms, delivered_ms, read_ms, expires_ms, size,
                              content, refused_ms, refused_reason, deposited_ms,
                              deposit_offset, copy_dropped_ms)
        SELECT seq, direction, contact_id, id, kind, state, created_ms, stored_ms, sent_ms,
               delivered_ms, read_ms, expires_ms, size, content, refused_ms, refused_reason,
               deposited_ms, deposit_offset, copy_dropped_ms
        FROM messages ORDER BY seq
    """,
    # As in version 2: the copy's counter, or the old one when it is higher.
    """
    UPDATE sqlite_sequence
        SET seq = max(seq, coalesce(
            (SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0))
        WHERE name = 'messages_v14'
    """,
    """
    INSERT INTO sqlite_sequence (name, seq)
        SELECT 'messages_v14', coalesce(
            (SELECT seq FROM sqlite_sequence WHERE name = 'messages'), 0)
        WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'messages_v14')
    """,
    "DROP TABLE messages",
    "ALTER TABLE messages_v14 RENAME TO messages",
    "CREATE UNIQUE INDEX messages_id ON messages (id, direction, contact_id)",
    "CREATE UNIQUE INDEX messages_out_id ON messages (id) WHERE direction = 'out'",
    """
    CREATE INDEX messages_pending ON messages (contact_id, seq)
        WHERE direction = 'out' AND state IN ('queued', 'sent')
    """,
    """
    CREATE INDEX messages_unread ON messages (contact_id, kind, direction, state)
        WHERE direction = 'in' AND state = 'received'
    """,
    """
    CREATE INDEX messages_undeposited ON messages (contact_id, seq)
        WHERE direction = 'out' AND state IN ('queued', 'sent') AND deposited_ms IS NULL
    """,
    "CREATE INDEX messages_files ON messages (kind, size, copy_dropped_ms) "
    "WHERE kind = 'file' AND copy_dropped_ms IS NULL",
    """
    CREATE VIEW message_rows AS
        SELECT m.seq, m.direction, m.contact_id, c.name AS contact, m.id, m.kind, m.state,
               m.created_ms, m.stored_ms, m.sent_ms, m.delivered_ms, m.read_ms, m.expires_ms,
               m.size, m.content, m.refused_ms, m.refused_reason, m.deposited_ms,
               m.deposit_offset
        FROM messages m JOIN contacts c ON c.id = m.contact_id
    """,
)

# Version 15: rotation (trust.md §6). A contact that moved to a new onion
# address keeps its row (its messages, its outbox): the row's address and tor
# client key change in place, and this table says where it came from and who
# vouched for the move (the last move of each contact), and whether the old
# address is still registered at our mailbox (until the upkeep deregisters it). ``rotation_own`` is
# the move we announce ourselves (at most one pending), ``rotation_told`` the
# contacts that have it (a session, or an envelope deposited for them).
_V15: Final[tuple[str, ...]] = (
    "CREATE TABLE contact_rotations (contact_id INTEGER PRIMARY KEY REFERENCES contacts (id), "
    "old_address BLOB NOT NULL CHECK (length(old_address) = 32), describe TEXT NOT NULL, "
    "rotated_ms INTEGER NOT NULL, "
    "old_registered INTEGER NOT NULL DEFAULT 0 CHECK (old_registered IN (0, 1))) STRICT",
    "CREATE TABLE rotation_own (id INTEGER PRIMARY KEY CHECK (id = 1), proof BLOB NOT NULL, "
    "client_auth_public BLOB NOT NULL CHECK (length(client_auth_public) = 32), "
    "made_ms INTEGER NOT NULL) STRICT",
    "CREATE TABLE rotation_told (contact_id INTEGER PRIMARY KEY REFERENCES contacts (id), "
    "told_ms INTEGER NOT NULL) STRICT",
)

# Version 16: each revocation list and checkpoint held keeps the delegation
# of the issuing key that signed it, as it came with it (a staple's proof, a
# gossip record, an imported bundle), so that what is held is passed on
# (trust.md §7.2) after a restart as before it. NULL: none came with it (held
# before this version).
_V16: Final[tuple[str, ...]] = (
    "ALTER TABLE trust_held ADD COLUMN revocations_delegation BLOB",
    "ALTER TABLE trust_held ADD COLUMN checkpoint_delegation BLOB",
)

# Version 17: one index on a message's random id. ``messages_id`` is unique on
# ``(id, direction, iif(direction = 'out', 0, contact_id))``: an incoming id is
# unique per contact (as in version 14), our own ids are unique whatever the
# contact (which ``messages_out_id`` said, and is dropped). An outgoing row so
# has one index leaf on a random id to dirty instead of two: each is a page a
# commit encrypts, MACs and binds.
_V17: Final[tuple[str, ...]] = (
    "DROP INDEX messages_out_id",
    "DROP INDEX messages_id",
    "CREATE UNIQUE INDEX messages_id ON messages "
    "(id, direction, iif(direction = 'out', 0, contact_id))",
)

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    _V1,
    _V2,
    _V3,
    _V4,
    _V5,
    _V6,
    _V7,
    _V8,
    _V9,
    _V10,
    _V11,
    _V12,
    _V13,
    _V14,
    _V15,
    _V16,
    _V17,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)
#: The first version that has a binding file.
BOUND_VERSION: Final = 5
#: The last version stored as a plaintext SQLite file.
PLAINTEXT_VERSION: Final = 2


def apply(conn: sqlite3.Connection, path: Path, version: int, target: int) -> None:
    """Apply ``MIGRATIONS[version:target]`` (:func:`_open.apply_migrations`)."""
    _open.apply_migrations(conn, path, MIGRATIONS, version, target)
