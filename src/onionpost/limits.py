"""Every bound onionpost enforces, in one place (STYLE: everything is bounded).

The protocol spec lists these same numbers; a test checks that they agree.
"""

from __future__ import annotations

from typing import Final

# Noise (Noise §3): the largest whole handshake or transport message.
NOISE_MAX_MESSAGE: Final = 65535
# ChaChaPoly authentication tag.
NOISE_TAG_LEN: Final = 16
# The largest transport payload that fits in one Noise message.
NOISE_MAX_PAYLOAD: Final = NOISE_MAX_MESSAGE - NOISE_TAG_LEN

# -- The wire protocol (protocol-spec/spec.md §Limits) ---------------------------

# A frame is a 2-byte big-endian length and one Noise message.
FRAME_HEADER_LEN: Final = 2
# Transport plaintext is a 2-byte record length, the record, then zero padding
# up to a bucket, so that the whole Noise message is one of these sizes.
PADDING_BUCKETS: Final = (512, 4096, NOISE_MAX_MESSAGE)
# The largest record (msgpack) that fits the largest bucket.
MAX_RECORD_SIZE: Final = NOISE_MAX_PAYLOAD - 2
MAX_RECORD_FIELDS: Final = 16
MAX_TEXT_BODY: Final = 60_000  # bytes of UTF-8
# A record's created_ms at most: the last ms of year 9999, the last a date
# shows (and less than 2^63, what SQLite and a JSON reader hold).
MAX_TIME_MS: Final = 253_402_300_799_999
MAX_CONTENT_TYPE: Final = 128
MAX_FILE_NAME: Final = 255  # bytes of UTF-8
# A contact card's name, and a contact's name in the store (storage.md §3).
MAX_CONTACT_NAME: Final = 64  # characters
MAX_FILE_SIZE: Final = 2**40  # 1 TiB: the protocol's bound; the daemon sets a lower one
MAX_ACK_IDS: Final = 512
MAX_CLOSE_REASON: Final = 256
# File chunk payload so that a FileChunk record fills the largest bucket
# exactly: record = fixarray(1) + tag(1) + id(18) + u64(9) + bin16 header(3).
FILE_CHUNK_SIZE: Final = MAX_RECORD_SIZE - (1 + 1 + 18 + 9 + 3)
# The handshake payload (identity key, certificate, future extensions).
MAX_HANDSHAKE_PAYLOAD: Final = 2048
# Each direction calls Noise Rekey() after this many transport messages or
# ciphertext bytes, whichever comes first (spec.md §Rekey).
REKEY_AFTER_MESSAGES: Final = 4096
REKEY_AFTER_BYTES: Final = 64 * 2**20
# Bytes a Session buffers from the peer before refusing more (two frames).
MAX_RECEIVE_BUFFER: Final = 2 * (FRAME_HEADER_LEN + NOISE_MAX_MESSAGE)
# Pongs a Session holds unwritten (the peer sends Pings but does not read our
# stream); one more Ping closes the session with RATE_LIMITED.
MAX_QUEUED_PONGS: Final = 16

# -- The trio transport -----------------------------------------------------------

# Seconds a peer has to complete the handshake once its stream is accepted.
HANDSHAKE_TIMEOUT: Final = 60.0
# Streams that may be in the handshake at once; more are closed at accept.
MAX_PENDING_HANDSHAKES: Final = 64

# -- Files read whole (onionpost._files.read_small_file) ----------------------------

# A contact-card file: one card line of at most 1024 characters, blank lines
# and comments (storage.md §3).
MAX_CARD_FILE: Final = 4096
# Bytes of a card bundle (a card line and an endorsement line, trust.md §7.5).
MAX_CARD_BUNDLE_FILE: Final = 65_536
# A passphrase file (`onionpost init --passphrase-file`): its first line.
MAX_PASSPHRASE_FILE: Final = 4096
# A passphrase file that is a pipe or FIFO: seconds its writer has to write
# it and close it.
PASSPHRASE_PIPE_SECONDS: Final = 30.0
# A key file is exactly this many random bytes (storage.md §2).
KEY_FILE_LEN: Final = 32
# The sealed secrets file, secrets.json: about 1 KiB in practice.
MAX_SECRETS_FILE: Final = 64 * 1024
# config.toml: the commented default is under 3 KiB.
MAX_CONFIG_FILE: Final = 64 * 1024

# -- Mailboxes (protocol-spec/mailbox.md §7.6) --------------------------------------

# One-time prekeys a contact may hold at once, taken from a mailbox and not yet
# used by a deposit; past it the contact gets the last-resort prekey, so that
# no one contact can take the stock every other contact's forward secrecy
# rests on. Above 1 so that a deposit lost in flight costs nothing.
MAX_UNUSED_PREKEYS_PER_CONTACT: Final = 4

# -- Signed notes and Merkle logs (proto/note.py, proto/merkle.py) ---------------

# A signed note's text (the checkpoint of a log, a statement), in bytes.
MAX_NOTE_BYTES: Final = 8192
# Signature lines read from one note (the note spec asks for at least 16).
MAX_NOTE_SIGNATURES: Final = 32
# A key name or a checkpoint's origin line, in bytes of UTF-8.
MAX_NOTE_KEY_NAME: Final = 200
# Hashes in one inclusion or consistency proof: enough for a tree of 2^64 leaves.
MAX_PROOF_HASHES: Final = 128

# -- Agency trust (proto/trust.py, trust.md) -------------------------------------

# An issuing key's delegation by its agency's root, and an endorsement, at most.
MAX_DELEGATION_LIFETIME: Final = 90 * 24 * 3600
MAX_ENDORSEMENT_LIFETIME: Final = 30 * 24 * 3600
# Entries of one revocation list: a list is one signed note of at most MAX_NOTE_BYTES.
MAX_REVOCATIONS: Final = 48
# Bytes of an endpoint's or unit's name, or of a revocation's reason.
MAX_TRUST_NAME: Final = 64
# Clock difference allowed at both ends of a statement's validity.
TRUST_CLOCK_SKEW: Final = 300
# The default age past which a revocation list is stale: contacts then show "unverified".
TRUST_FRESHNESS: Final = 3600
# Trust anchors one endpoint holds.
MAX_TRUST_ANCHORS: Final = 256
# Statements a holder keeps verified (a delegation, an endorsement, a checkpoint).
TRUST_CACHE_ENTRIES: Final = 512
# One field of a TrustStaple record (an endorsement proof, a list, a checkpoint), bytes.
MAX_TRUST_STAPLE_PART: Final = 21_000
# TrustStaple records taken from a contact in one session, by rate (trust.md
# §7.1): a burst, then one more each interval (seconds); more are ignored.
TRUST_STAPLE_BURST: Final = 8
TRUST_STAPLE_INTERVAL: Final = 30
# TrustGossip records (trust.md §7.2): taken from a contact in one session, a
# burst then one more each interval (seconds), more ignored; and sent, at most
# the same.
TRUST_GOSSIP_BURST: Final = 16
TRUST_GOSSIP_INTERVAL: Final = 10
# The registrar (trust.md §8): how often a fresh revocation list is signed and
# fetched (default, least, most), in seconds.
REGISTRAR_REFRESH: Final = 900
MIN_REGISTRAR_REFRESH: Final = 60
MAX_REGISTRAR_REFRESH: Final = 3600
# Enrolment codes waiting unused at once, and how long one may live (seconds).
MAX_ENROLMENT_CODES: Final = 16
MAX_ENROLMENT_CODE_LIFETIME: Final = 7 * 24 * 3600
# Endpoints one registrar enrols (each a tor client key it authorizes).
MAX_REGISTRAR_ENDPOINTS: Final = 200
# A registrar warns (in `registrar status`, and in its log once a day) when its
# issuing key's delegation ends within this (seconds).
DELEGATION_WARNING: Final = 14 * 24 * 3600

# -- The evidence log (proto/evidence.py, evidence.md) ---------------------------

# One entry's encoding, in bytes, and the free-text detail it may carry.
MAX_EVIDENCE_ENTRY: Final = 1024
MAX_EVIDENCE_DETAIL: Final = 512
# Messages in one evidence export (`onionpost export`).
MAX_EXPORT_MESSAGES: Final = 100_000

# -- Distribution lists (local-api.md §6, distribution lists) -------------------------

# Lists one endpoint keeps, and contacts on one list. A send to a list queues
# one copy per member in one transaction: the member bound bounds that
# transaction (and, for a file, the copies made of it).
MAX_LISTS: Final = 64
MAX_LIST_MEMBERS: Final = 256
# A list's name, in characters (the rule of a contact's name otherwise).
MAX_LIST_NAME: Final = 64
# The latest sends `list show` reports, each with its copies' states.
MAX_LIST_SENDS_SHOWN: Final = 20

# -- Groups (proto/groups.py, protocol-spec/groups.md §Bounds) -------------------------

# Members of one group, and groups one endpoint keeps a log of.
MAX_GROUP_MEMBERS: Final = 64
MAX_GROUPS: Final = 32
# A group's name and a member card's name, in characters (a contact name's rule).
MAX_GROUP_NAME: Final = 64
# Operations a group's log holds, and their encodings' bytes in all; past
# either, the log takes no more (groups.md §Bounds).
MAX_GROUP_LOG_OPS: Final = 1024
MAX_GROUP_LOG_BYTES: Final = 1024 * 1024
# One operation's encoding, in bytes, and the parents it names.
MAX_GROUP_OP_BYTES: Final = 2048
MAX_GROUP_PARENTS: Final = 8
# Operations sent in answer to one fetch of missing ones.
MAX_GROUP_OPS_PER_FETCH: Final = 64
# Heads one GroupFetch names (a log with more names the first ones).
MAX_GROUP_FETCH_HEADS: Final = 64
# GroupFetch records one session answers or sends, per direction.
MAX_GROUP_FETCHES_PER_SESSION: Final = 64
# Group texts a session holds while it fetches the operations they follow.
MAX_GROUP_TEXTS_WAITING: Final = 64

# -- Handling labels (proto/labels.py, spec.md §Handling labels) ----------------

# A label's canonical text, in bytes of ASCII (wire: Text/FileOffer `label`,
# LabelLimit `label`).
MAX_LABEL: Final = 256
# Agency schemes declared in config.toml, and the levels and caveats of one.
MAX_LABEL_SCHEMES: Final = 16
MAX_LABEL_LEVELS: Final = 32
MAX_LABEL_CAVEATS: Final = 64
