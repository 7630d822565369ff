"""The records a session carries: frozen, typed, tagged, and strictly decoded.

Theory of operation
-------------------
Every record is a msgpack array whose first element is its type tag and
whose other elements are its fields, in the order of the class's
``SCHEMA``. A 200-byte text, on the wire before padding::

    95                       fixarray of 5
    01                       tag 1 = Text
    c4 10 <16 bytes>         id (bin 8)
    cf 00 00 01 93 ...       created_ms (uint 64)
    d9 c8 <200 bytes>        body (str 8)
    aa "text/plain"          content_type (fixstr)
    ...

Decoding is strict: only arrays, ints, str and bin; lengths and counts are
bounded (limits in :mod:`onionpost.limits`); msgpack maps, floats, nil,
booleans and extension types are refused wherever they appear. Anything
else raises :class:`~onionpost.errors.MessageDecodeError`.

Evolution rules (spec.md §Messages):

- A later version MAY append fields to a record; a receiver ignores extra
  trailing fields (at most :data:`MAX_RECORD_FIELDS` in all), and a record
  that lacks the appended fields it knows (``OPTIONAL``) takes their defaults.
- Tags 1..31 are the records of a session between two endpoints; tags
  32..47 are the records of a session with a mailbox (``mailbox.md`` §Wire
  records), and ``MailboxInfo`` (46), which endpoints send each other;
  48..53 those of a session with an agency's registrar (``trust.md`` §8).
- Tags 1..63 are core. An unknown core tag is a protocol error
  (close code BAD_MESSAGE): the sender relied on something we lack.
- Tags 64..127 are optional extensions. An unknown one decodes to
  :class:`UnknownExtension`, which a receiver MUST ignore (and not ack).
- Every other tag is a protocol error.
"""

from __future__ import annotations

import builtins
import enum
import struct
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Final, Generic, TypeVar

from onionpost.errors import LocalProtocolError, MessageDecodeError
from onionpost.limits import (
    MAX_ACK_IDS,
    MAX_CLOSE_REASON,
    MAX_CONTENT_TYPE,
    MAX_FILE_NAME,
    MAX_FILE_SIZE,
    MAX_GROUP_FETCH_HEADS,
    MAX_GROUP_OP_BYTES,
    MAX_GROUP_PARENTS,
    MAX_LABEL,
    MAX_LABEL_SCHEMES,
    MAX_NOTE_BYTES,
    MAX_NOTE_SIGNATURES,
    MAX_PROOF_HASHES,
    MAX_RECORD_FIELDS,
    MAX_RECORD_SIZE,
    MAX_TEXT_BODY,
    MAX_TIME_MS,
    MAX_TRUST_STAPLE_PART,
)
from onionpost.names import file_name_problem
from onionpost.proto import _msgpack

__all__ = [
    "Ack",
    "Close",
    "Encoded",
    "FileAccept",
    "FileCancel",
    "FileChunk",
    "FileComplete",
    "FileOffer",
    "FileReject",
    "GroupFetch",
    "GroupOps",
    "GroupFileOffer",
    "GroupText",
    "LabelLimit",
    "LogCosign",
    "LogCosigned",
    "LogStatus",
    "MailboxInfo",
    "MbCode",
    "MbDelete",
    "MbDeposit",
    "MbDeregister",
    "MbEnvelope",
    "MbFetch",
    "MbGetPrekey",
    "MbPair",
    "MbPrekey",
    "MbPrekeys",
    "MbRegister",
    "MbResult",
    "MbStatus",
    "MbUsage",
    "MbWipe",
    "Message",
    "MessageType",
    "Ping",
    "Pong",
    "Read",
    "RgCode",
    "RgEndorsement",
    "RgEnrol",
    "RgFetch",
    "RgList",
    "RgRenew",
    "RgResult",
    "Text",
    "TrustGossip",
    "TrustRotation",
    "TrustStaple",
    "UnknownExtension",
    "decode",
    "encode",
    "encoded",
    "wire_values",
]

ID_LEN: Final = 16
KEY_LEN: Final = 32
# Signed prekeys in one MbPrekeys record, and the size of one.
MAX_BLOBS: Final = 40
# One entry of MbUsage.unused_prekeys: a contact's identity key and a count.
UNUSED_PREKEY_ENTRY: Final = struct.Struct(">32sB")
MAX_PREKEY_SIZE: Final = 1536
HASH_LEN: Final = 64  # BLAKE2b-512
EXTENSION_TAGS: Final = range(64, 128)
GROUP_HEAD_LEN: Final = 32
_U64_MAX: Final = 2**64 - 1
# Counts and sequence numbers a store keeps (SQLite: a signed 64-bit integer).
_I63_MAX: Final = 2**63 - 1
# A checkpoint note with its signature lines, as it travels to be witnessed.
MAX_WITNESSED_NOTE: Final = MAX_NOTE_BYTES + MAX_NOTE_SIGNATURES * 400


class MessageType(enum.IntEnum):
    TEXT = 1
    ACK = 2
    READ = 3
    FILE_OFFER = 4
    FILE_ACCEPT = 5
    FILE_CHUNK = 6
    FILE_COMPLETE = 7
    FILE_REJECT = 8
    FILE_CANCEL = 9
    PING = 10
    PONG = 11
    CLOSE = 12
    # A session with a mailbox (mailbox.md §Wire records).
    MB_PAIR = 32
    MB_REGISTER = 33
    MB_DEREGISTER = 34
    MB_PREKEYS = 35
    MB_FETCH = 36
    MB_DELETE = 37
    MB_STATUS = 38
    MB_GET_PREKEY = 39
    MB_DEPOSIT = 40
    MB_WIPE = 41
    MB_RESULT = 42
    MB_PREKEY = 43
    MB_ENVELOPE = 44
    MB_USAGE = 45
    # Between endpoints: the sender's signed mailbox announcement.
    MAILBOX_INFO = 46
    # A session with the agency's registrar (trust.md §8).
    RG_ENROL = 48
    RG_RENEW = 49
    RG_FETCH = 50
    RG_RESULT = 51
    RG_ENDORSEMENT = 52
    RG_LIST = 53
    # Optional extensions between endpoints (a peer without them ignores them):
    # witnessing each other's evidence log (evidence.md §5).
    LOG_COSIGN = 72
    LOG_COSIGNED = 73
    # team channels (groups.md §6): a group's operations, a fetch of them, and
    # a text to the group at its author's log heads.
    GROUP_OPS = 90
    GROUP_FETCH = 91
    GROUP_TEXT = 92
    # a file offered to the group at its author's log heads
    GROUP_FILE_OFFER = 93
    # The highest handling label the sender accepts (spec.md §Handling labels).
    LABEL_LIMIT = 74
    # Agency trust (trust.md §7.1): the sender's endorsement, list and checkpoint.
    TRUST_STAPLE = 80
    # ... and what it holds of other agencies it holds the anchor of (§7.2).
    TRUST_GOSSIP = 81
    # The sender moves to a new onion address: its endorsement there, naming
    # the one it replaces (§6).
    TRUST_ROTATION = 82


class _Kind(enum.Enum):
    ID = "id"  # bin, exactly 16 bytes
    HASH = "hash"  # bin, exactly 64 bytes
    U64 = "u64"
    IDS = "ids"  # array of 1..MAX_ACK_IDS ids
    TEXT = "text"  # str, bounded per field
    DATA = "data"  # bin, bounded by the record size
    KEY = "key"  # bin, exactly 32 bytes (a public key, a token)
    BLOBS = "blobs"  # array of 1..MAX_BLOBS bin, each at most the bound
    LABEL = "label"  # str of printable ASCII, at most the bound (proto/labels.py parses it)
    LABELS = "labels"  # array of 0..MAX_LABEL_SCHEMES non-empty labels


@dataclass(frozen=True, slots=True)
class _Record:
    TAG: ClassVar[MessageType]
    SCHEMA: ClassVar[tuple[tuple[_Kind, int], ...]]
    # Trailing fields a later version appended: a record from an earlier
    # sender may lack them, and they take their defaults.
    OPTIONAL: ClassVar[int] = 0
    # Optional trailing fields at their defaults are left off the wire: a
    # record that does not use them is the bytes an earlier version made.
    TRIM: ClassVar[bool] = False

    def _validate(self) -> None:
        """Rules across fields; raises MessageDecodeError."""


@dataclass(frozen=True, slots=True)
class Text(_Record):
    """A text message: random 16-byte id, creation time (ms since the epoch), body."""

    TAG = MessageType.TEXT
    SCHEMA = (
        (_Kind.ID, 0),
        (_Kind.U64, MAX_TIME_MS),
        (_Kind.TEXT, MAX_TEXT_BODY),
        (_Kind.TEXT, MAX_CONTENT_TYPE),
        (_Kind.LABEL, MAX_LABEL),
    )
    OPTIONAL = 1
    TRIM = True
    id: bytes
    created_ms: int
    body: str
    content_type: str = "text/plain"
    # Appended: the handling label's canonical text (proto/labels.py); "" is
    # a record of an earlier sender, which carries none.
    label: str = ""

    def __repr__(self) -> str:
        # Message contents never reach a repr (and so never a log).
        return (
            f"Text(id={self.id.hex()}, created_ms={self.created_ms}, {len(self.body)} chars, "
            f"label={self.label!r})"
        )


@dataclass(frozen=True, slots=True)
class Ack(_Record):
    """The receiver has durably stored these messages (or files)."""

    TAG = MessageType.ACK
    SCHEMA = ((_Kind.IDS, 0),)
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Read(_Record):
    """The recipient's user has read these messages."""

    TAG = MessageType.READ
    SCHEMA = ((_Kind.IDS, 0),)
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class FileOffer(_Record):
    """An offer of a file; ``blake2b`` is the BLAKE2b-512 of its whole content."""

    TAG = MessageType.FILE_OFFER
    SCHEMA = (
        (_Kind.ID, 0),
        (_Kind.U64, MAX_TIME_MS),
        (_Kind.TEXT, MAX_FILE_NAME),
        (_Kind.U64, 0),
        (_Kind.HASH, 0),
        (_Kind.TEXT, MAX_CONTENT_TYPE),
        (_Kind.LABEL, MAX_LABEL),
    )
    OPTIONAL = 1
    TRIM = True
    id: bytes
    created_ms: int
    name: str
    size: int
    blake2b: bytes
    content_type: str = "application/octet-stream"
    label: str = ""  # appended, as Text's

    def _validate(self) -> None:
        _check_file(self.size, self.name)

    def __repr__(self) -> str:
        return f"FileOffer(id={self.id.hex()}, size={self.size}, label={self.label!r})"


def _check_file(size: int, name: str) -> None:
    if size > MAX_FILE_SIZE:
        raise MessageDecodeError("file too large")
    # A name is a name, never a path (the receiver stores it under its own).
    if file_name_problem(name) is not None:
        raise MessageDecodeError("bad file name")


@dataclass(frozen=True, slots=True)
class FileAccept(_Record):
    """Send the file from ``offset`` (0, or where a broken transfer stopped)."""

    TAG = MessageType.FILE_ACCEPT
    SCHEMA = ((_Kind.ID, 0), (_Kind.U64, 0))
    id: bytes
    offset: int


@dataclass(frozen=True, slots=True)
class FileChunk(_Record):
    TAG = MessageType.FILE_CHUNK
    SCHEMA = ((_Kind.ID, 0), (_Kind.U64, 0), (_Kind.DATA, 0))
    id: bytes
    offset: int
    data: bytes

    def __repr__(self) -> str:
        return f"FileChunk(id={self.id.hex()}, offset={self.offset}, {len(self.data)} bytes)"


@dataclass(frozen=True, slots=True)
class FileComplete(_Record):
    """The receiver stored the whole file and its hash matched."""

    TAG = MessageType.FILE_COMPLETE
    SCHEMA = ((_Kind.ID, 0),)
    id: bytes


class FileRejectReason(enum.IntEnum):
    DECLINED = 0
    TOO_LARGE = 1
    NO_SPACE = 2
    HASH_MISMATCH = 3
    UNKNOWN_FILE = 4


@dataclass(frozen=True, slots=True)
class FileReject(_Record):
    TAG = MessageType.FILE_REJECT
    SCHEMA = ((_Kind.ID, 0), (_Kind.U64, 0))
    id: bytes
    reason: int


@dataclass(frozen=True, slots=True)
class FileCancel(_Record):
    TAG = MessageType.FILE_CANCEL
    SCHEMA = ((_Kind.ID, 0), (_Kind.U64, 0))
    id: bytes
    reason: int


@dataclass(frozen=True, slots=True)
class Ping(_Record):
    TAG = MessageType.PING
    SCHEMA = ((_Kind.U64, 0),)
    nonce: int


@dataclass(frozen=True, slots=True)
class Pong(_Record):
    TAG = MessageType.PONG
    SCHEMA = ((_Kind.U64, 0),)
    nonce: int


@dataclass(frozen=True, slots=True)
class Close(_Record):
    """The authenticated end of a session, with a CloseCode."""

    TAG = MessageType.CLOSE
    SCHEMA = ((_Kind.U64, 0), (_Kind.TEXT, MAX_CLOSE_REASON))
    code: int
    reason: str = ""


# -- a session with a mailbox (mailbox.md §Wire records) --------------------------------
#
# Requests carry a number ``req`` the client picks; the mailbox answers each
# with one MbResult (or MbPrekey / MbUsage) carrying the same number.


class MbCode(enum.IntEnum):
    """What a mailbox answers a request with (MbResult.code)."""

    OK = 0
    # Also the answer to anything the asker may not see: the same as absent.
    NOT_FOUND = 1
    QUOTA_EXCEEDED = 2
    TOO_LARGE = 3
    # A setup code unknown, used by another owner, or expired.
    CODE_REFUSED = 4
    BAD_REQUEST = 5
    NO_PREKEY = 6
    MAILBOX_FULL = 7
    RATE_LIMITED = 8


@dataclass(frozen=True, slots=True)
class MbPair(_Record):
    """Owner -> mailbox: pair with the setup code's token; authorize our tor client key."""

    TAG = MessageType.MB_PAIR
    SCHEMA = ((_Kind.U64, 0), (_Kind.KEY, 0), (_Kind.KEY, 0))
    req: int
    token: bytes = field(repr=False)
    client_auth_public: bytes

    def __repr__(self) -> str:
        return f"MbPair(req={self.req})"


@dataclass(frozen=True, slots=True)
class MbRegister(_Record):
    """Owner -> mailbox: this contact (identity key, tor client key) may deposit for us."""

    TAG = MessageType.MB_REGISTER
    SCHEMA = ((_Kind.U64, 0), (_Kind.KEY, 0), (_Kind.KEY, 0))
    req: int
    contact: bytes
    client_auth_public: bytes


@dataclass(frozen=True, slots=True)
class MbDeregister(_Record):
    """Owner -> mailbox: this contact may no longer deposit for us."""

    TAG = MessageType.MB_DEREGISTER
    SCHEMA = ((_Kind.U64, 0), (_Kind.KEY, 0))
    req: int
    contact: bytes


@dataclass(frozen=True, slots=True)
class MbPrekeys(_Record):
    """Owner -> mailbox: signed prekeys to hand out (envelope.SignedPrekey bytes)."""

    TAG = MessageType.MB_PREKEYS
    SCHEMA = ((_Kind.U64, 0), (_Kind.BLOBS, MAX_PREKEY_SIZE))
    req: int
    prekeys: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"MbPrekeys(req={self.req}, {len(self.prekeys)} prekeys)"


@dataclass(frozen=True, slots=True)
class MbFetch(_Record):
    """Owner -> mailbox: send every envelope held for us with seq > ``after``,
    then MbResult(OK, value=the last seq), then each new one as it arrives."""

    TAG = MessageType.MB_FETCH
    SCHEMA = ((_Kind.U64, 0), (_Kind.U64, _I63_MAX))
    req: int
    after: int


@dataclass(frozen=True, slots=True)
class MbDelete(_Record):
    """Owner -> mailbox: these envelopes are safely ours; forget them."""

    TAG = MessageType.MB_DELETE
    SCHEMA = ((_Kind.U64, 0), (_Kind.IDS, 0))
    req: int
    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class MbStatus(_Record):
    """Owner -> mailbox: how much is held for us (answered with MbUsage)."""

    TAG = MessageType.MB_STATUS
    SCHEMA = ((_Kind.U64, 0),)
    req: int


@dataclass(frozen=True, slots=True)
class MbGetPrekey(_Record):
    """Contact -> mailbox: one signed prekey of ``owner`` (answered with MbPrekey)."""

    TAG = MessageType.MB_GET_PREKEY
    SCHEMA = ((_Kind.U64, 0), (_Kind.KEY, 0))
    req: int
    owner: bytes


@dataclass(frozen=True, slots=True)
class MbDeposit(_Record):
    """Contact -> mailbox: hold this sealed envelope for ``owner``."""

    TAG = MessageType.MB_DEPOSIT
    SCHEMA = ((_Kind.U64, 0), (_Kind.KEY, 0), (_Kind.DATA, 0))
    req: int
    owner: bytes
    envelope: bytes

    def __repr__(self) -> str:
        return f"MbDeposit(req={self.req}, {len(self.envelope)} bytes)"


@dataclass(frozen=True, slots=True)
class MbWipe(_Record):
    """Owner -> mailbox: delete everything held for us and forget us."""

    TAG = MessageType.MB_WIPE
    SCHEMA = ((_Kind.U64, 0),)
    req: int


@dataclass(frozen=True, slots=True)
class MbResult(_Record):
    """Mailbox -> client: the outcome of request ``req`` (an MbCode)."""

    TAG = MessageType.MB_RESULT
    SCHEMA = ((_Kind.U64, 0), (_Kind.U64, 0), (_Kind.TEXT, MAX_CLOSE_REASON), (_Kind.U64, 0))
    req: int
    code: int
    detail: str = ""
    value: int = 0


@dataclass(frozen=True, slots=True)
class MbPrekey(_Record):
    """Mailbox -> contact: one signed prekey (the answer to MbGetPrekey)."""

    TAG = MessageType.MB_PREKEY
    SCHEMA = ((_Kind.U64, 0), (_Kind.DATA, 0))
    req: int
    prekey: bytes


@dataclass(frozen=True, slots=True)
class MbEnvelope(_Record):
    """Mailbox -> owner: one envelope held for it (pushed after MbFetch)."""

    TAG = MessageType.MB_ENVELOPE
    SCHEMA = ((_Kind.U64, 0), (_Kind.ID, 0), (_Kind.U64, 0), (_Kind.DATA, 0))
    seq: int
    id: bytes
    deposited_ms: int
    envelope: bytes

    def __repr__(self) -> str:
        return f"MbEnvelope(seq={self.seq}, id={self.id.hex()}, {len(self.envelope)} bytes)"


@dataclass(frozen=True, slots=True)
class MbUsage(_Record):
    """Mailbox -> owner: what is held for it (the answer to MbStatus)."""

    TAG = MessageType.MB_USAGE
    SCHEMA = (
        (_Kind.U64, 0),
        (_Kind.U64, _I63_MAX),
        (_Kind.U64, _I63_MAX),
        (_Kind.U64, _I63_MAX),
        (_Kind.U64, 0),
        (_Kind.U64, 0),
        (_Kind.DATA, 0),
    )
    OPTIONAL = 1
    req: int
    envelopes: int
    bytes: int
    one_time_prekeys: int
    last_resort_not_after: int  # seconds; 0 when there is none
    contacts: int
    # Appended (optional): for each contact holding one-time prekeys it took
    # and has not used, its identity key (32) || u8 count; see unused_by_contact.
    unused_prekeys: builtins.bytes = b""

    def _validate(self) -> None:
        if len(self.unused_prekeys) % UNUSED_PREKEY_ENTRY.size:
            raise _bad("unused_prekeys is whole 33-byte entries")

    def unused_by_contact(self) -> dict[builtins.bytes, int]:
        """Unused one-time prekeys per contact identity key."""
        return dict(UNUSED_PREKEY_ENTRY.iter_unpack(self.unused_prekeys))

    @staticmethod
    def pack_unused(counts: dict[builtins.bytes, int]) -> builtins.bytes:
        return b"".join(
            UNUSED_PREKEY_ENTRY.pack(key, min(count, 255)) for key, count in sorted(counts.items())
        )


@dataclass(frozen=True, slots=True)
class MailboxInfo(_Record):
    """Endpoint -> contact: a signed pairing.MailboxAnnouncement of the sender's mailbox."""

    TAG = MessageType.MAILBOX_INFO
    SCHEMA = ((_Kind.DATA, 0),)
    announcement: bytes


class LogStatus(enum.IntEnum):
    """What a LogCosigned answers (evidence.md §5)."""

    COSIGNED = 0  # the checkpoint, with the witness's cosignature added
    HELD = 1  # not cosigned: the checkpoint the witness holds, cosigned by it


@dataclass(frozen=True, slots=True)
class LogCosign(_Record):
    """Witness my evidence log: its signed checkpoint, and the consistency proof
    from ``old_size`` (the size of the checkpoint you last cosigned for me)."""

    TAG = MessageType.LOG_COSIGN
    SCHEMA = ((_Kind.DATA, 0), (_Kind.U64, 0), (_Kind.DATA, 0))
    checkpoint: bytes
    old_size: int
    proof: bytes  # the proof's hashes, 32 bytes each, concatenated

    def _validate(self) -> None:
        if len(self.checkpoint) > MAX_WITNESSED_NOTE:
            raise MessageDecodeError("a checkpoint too large to witness")
        if len(self.proof) % 32 or len(self.proof) // 32 > MAX_PROOF_HASHES:
            raise MessageDecodeError("a malformed consistency proof")

    def hashes(self) -> tuple[builtins.bytes, ...]:
        return tuple(self.proof[i : i + 32] for i in range(0, len(self.proof), 32))


@dataclass(frozen=True, slots=True)
class LogCosigned(_Record):
    """The witness's answer to a LogCosign (``status``: a :class:`LogStatus`)."""

    TAG = MessageType.LOG_COSIGNED
    SCHEMA = ((_Kind.U64, 0), (_Kind.DATA, 0))
    status: int
    checkpoint: bytes

    def _validate(self) -> None:
        if self.status not in (LogStatus.COSIGNED, LogStatus.HELD):
            raise MessageDecodeError("an unknown witness status")
        if len(self.checkpoint) > MAX_WITNESSED_NOTE:
            raise MessageDecodeError("a checkpoint too large to witness")


def _check_heads(heads: bytes, most: int, *, least: int = 0) -> None:
    if len(heads) % GROUP_HEAD_LEN or not least <= len(heads) // GROUP_HEAD_LEN <= most:
        raise MessageDecodeError(f"{least} to {most} heads of 32 bytes each")


def _split_heads(heads: bytes) -> tuple[builtins.bytes, ...]:
    return tuple(heads[i : i + GROUP_HEAD_LEN] for i in range(0, len(heads), GROUP_HEAD_LEN))


@dataclass(frozen=True, slots=True)
class GroupOps(_Record):
    """Operations of a group's log (groups.md §3), parents before children:
    pushed, or the answer to a GroupFetch. Each is a signed operation's
    canonical encoding, which the receiver decodes and checks itself."""

    TAG = MessageType.GROUP_OPS
    SCHEMA = ((_Kind.ID, 0), (_Kind.BLOBS, MAX_GROUP_OP_BYTES))
    group_id: bytes
    ops: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"GroupOps({self.group_id.hex()}, {len(self.ops)} ops)"


@dataclass(frozen=True, slots=True)
class GroupFetch(_Record):
    """The sender's heads of a group's log (32-byte hashes, concatenated; none
    for a group it does not hold): send me what I lack (groups.md §6.2)."""

    TAG = MessageType.GROUP_FETCH
    SCHEMA = ((_Kind.ID, 0), (_Kind.DATA, 0))
    group_id: bytes
    heads: bytes

    def _validate(self) -> None:
        _check_heads(self.heads, MAX_GROUP_FETCH_HEADS)

    def head_list(self) -> tuple[builtins.bytes, ...]:
        return _split_heads(self.heads)


@dataclass(frozen=True, slots=True)
class GroupText(_Record):
    """A text to a group: a Text's first four fields, the group's id and the
    heads of its author's log when it sent it (1 to MAX_GROUP_PARENTS 32-byte
    hashes, concatenated; groups.md §6.1), and its handling label."""

    TAG = MessageType.GROUP_TEXT
    SCHEMA = (
        (_Kind.ID, 0),
        (_Kind.U64, MAX_TIME_MS),
        (_Kind.TEXT, MAX_TEXT_BODY),
        (_Kind.TEXT, MAX_CONTENT_TYPE),
        (_Kind.ID, 0),
        (_Kind.DATA, 0),
        (_Kind.LABEL, MAX_LABEL),
    )
    OPTIONAL = 1
    TRIM = True
    id: bytes
    created_ms: int
    body: str
    content_type: str
    group_id: bytes
    heads: bytes
    # Its handling label's canonical text, as a Text's (spec.md §5.10).
    label: str = ""

    def __repr__(self) -> str:
        return f"GroupText(id={self.id.hex()}, group={self.group_id.hex()}, {len(self.body)} chars)"

    def _validate(self) -> None:
        _check_heads(self.heads, MAX_GROUP_PARENTS, least=1)

    def head_list(self) -> tuple[builtins.bytes, ...]:
        return _split_heads(self.heads)


@dataclass(frozen=True, slots=True)
class GroupFileOffer(_Record):
    """A file offered to a group: a FileOffer's first six fields, the group's
    id and the heads of its author's log when it sent it (as a GroupText's),
    and its handling label. The transfer that follows is a FileOffer's
    (FileAccept, FileChunk, FileComplete under the same id)."""

    TAG = MessageType.GROUP_FILE_OFFER
    SCHEMA = (
        (_Kind.ID, 0),
        (_Kind.U64, MAX_TIME_MS),
        (_Kind.TEXT, MAX_FILE_NAME),
        (_Kind.U64, 0),
        (_Kind.HASH, 0),
        (_Kind.TEXT, MAX_CONTENT_TYPE),
        (_Kind.ID, 0),
        (_Kind.DATA, 0),
        (_Kind.LABEL, MAX_LABEL),
    )
    OPTIONAL = 1
    TRIM = True
    id: bytes
    created_ms: int
    name: str
    size: int
    blake2b: bytes
    content_type: str
    group_id: bytes
    heads: bytes
    label: str = ""

    def __repr__(self) -> str:
        return (
            f"GroupFileOffer(id={self.id.hex()}, group={self.group_id.hex()}, size={self.size}, "
            f"label={self.label!r})"
        )

    def _validate(self) -> None:
        _check_file(self.size, self.name)
        _check_heads(self.heads, MAX_GROUP_PARENTS, least=1)

    def head_list(self) -> tuple[builtins.bytes, ...]:
        return _split_heads(self.heads)

    def file_offer(self) -> FileOffer:
        """The one-to-one offer of the same file: what the transfer and the
        evidence log work with."""
        return FileOffer(
            self.id,
            self.created_ms,
            self.name,
            self.size,
            self.blake2b,
            self.content_type,
            self.label,
        )


@dataclass(frozen=True, slots=True)
class LabelLimit(_Record):
    """The highest handling labels the sender accepts, one per scheme it
    accepts (sent at the start of a session; an optional extension, which a
    peer without labels ignores; none: no limit). Its receiver refuses to
    queue above them."""

    TAG = MessageType.LABEL_LIMIT
    SCHEMA = ((_Kind.LABELS, MAX_LABEL),)
    labels: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TrustStaple(_Record):
    """The sender's endorsement proof, the latest revocation list of its agency
    it holds and the latest checkpoint of its agency's log (trust.md §7.1);
    an empty field: none held."""

    TAG = MessageType.TRUST_STAPLE
    SCHEMA = ((_Kind.DATA, 0), (_Kind.DATA, 0), (_Kind.DATA, 0))
    proof: bytes
    revocations: bytes
    checkpoint: bytes

    def _validate(self) -> None:
        if not self.proof:
            raise MessageDecodeError("a trust staple without an endorsement")
        for part in (self.proof, self.revocations, self.checkpoint):
            if len(part) > MAX_TRUST_STAPLE_PART:
                raise MessageDecodeError("a trust staple's statement is too large")


@dataclass(frozen=True, slots=True)
class TrustGossip(_Record):
    """The latest revocation list and log checkpoint the sender holds of an
    agency other than its own, with the delegation of the issuing key that
    signed them (trust.md §7.2); an empty list or checkpoint: none held (not
    both)."""

    TAG = MessageType.TRUST_GOSSIP
    SCHEMA = ((_Kind.DATA, 0), (_Kind.DATA, 0), (_Kind.DATA, 0))
    delegation: bytes
    revocations: bytes
    checkpoint: bytes

    def _validate(self) -> None:
        if not self.delegation or not (self.revocations or self.checkpoint):
            raise MessageDecodeError("trust gossip without a delegation, a list or a checkpoint")
        for part in (self.delegation, self.revocations, self.checkpoint):
            if len(part) > MAX_TRUST_STAPLE_PART:
                raise MessageDecodeError("a trust gossip's statement is too large")


@dataclass(frozen=True, slots=True)
class TrustRotation(_Record):
    """The sender moves to a new onion address (trust.md §6): the endorsement
    proof of the new address, whose ``replaces`` names the sender's current
    one, and the tor client-authorization key the new address dials with (the
    receiver authorizes it at its own onion service)."""

    TAG = MessageType.TRUST_ROTATION
    SCHEMA = ((_Kind.DATA, 0), (_Kind.KEY, 0))
    proof: bytes
    client_auth_public: bytes

    def _validate(self) -> None:
        if not self.proof or len(self.proof) > MAX_TRUST_STAPLE_PART:
            raise MessageDecodeError("a trust rotation's endorsement proof is empty or too large")


# -- a session with an agency's registrar (trust.md §8) --------------------------------
#
# As with a mailbox: requests carry ``req``; the registrar answers each with one
# RgEndorsement, RgList or RgResult of the same number. Every refusal is the
# same RgResult(req, REFUSED, "refused"), whatever the reason.


class RgCode(enum.IntEnum):
    """What a registrar answers a request with (RgResult.code)."""

    OK = 0
    REFUSED = 1


@dataclass(frozen=True, slots=True)
class RgEnrol(_Record):
    """Endpoint -> registrar: enrol the session's peer with the enrolment code's
    token; authorize our tor client key from now on."""

    TAG = MessageType.RG_ENROL
    SCHEMA = ((_Kind.U64, 0), (_Kind.KEY, 0), (_Kind.KEY, 0))
    req: int
    token: bytes = field(repr=False)
    client_auth_public: bytes

    def __repr__(self) -> str:
        return f"RgEnrol(req={self.req})"


@dataclass(frozen=True, slots=True)
class RgRenew(_Record):
    """Endpoint -> registrar: a new endorsement for the session's (enrolled) peer."""

    TAG = MessageType.RG_RENEW
    SCHEMA = ((_Kind.U64, 0),)
    req: int


@dataclass(frozen=True, slots=True)
class RgFetch(_Record):
    """Endpoint -> registrar: the latest revocation list and checkpoint, with a
    consistency proof from the checkpoint of ``size`` entries we hold (0: none)."""

    TAG = MessageType.RG_FETCH
    SCHEMA = ((_Kind.U64, 0), (_Kind.U64, 0))
    req: int
    size: int = 0


@dataclass(frozen=True, slots=True)
class RgResult(_Record):
    """Registrar -> endpoint: request ``req`` refused (or done with nothing to send)."""

    TAG = MessageType.RG_RESULT
    SCHEMA = ((_Kind.U64, 0), (_Kind.U64, 0), (_Kind.TEXT, MAX_CLOSE_REASON))
    req: int
    code: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class RgEndorsement(_Record):
    """Registrar -> endpoint: its endorsement proof (trust.md §4), the answer to
    RgEnrol and RgRenew."""

    TAG = MessageType.RG_ENDORSEMENT
    SCHEMA = ((_Kind.U64, 0), (_Kind.DATA, 0))
    req: int
    proof: bytes

    def _validate(self) -> None:
        if not self.proof or len(self.proof) > MAX_TRUST_STAPLE_PART:
            raise MessageDecodeError("an endorsement proof is 1 to 21000 bytes")


@dataclass(frozen=True, slots=True)
class RgList(_Record):
    """Registrar -> endpoint: the answer to RgFetch, the revocation bundle's three
    notes (trust.md §7.3) and the consistency proof's hashes (empty when the
    endpoint held no checkpoint, or one of the same size)."""

    TAG = MessageType.RG_LIST
    SCHEMA = ((_Kind.U64, 0), (_Kind.DATA, 0), (_Kind.DATA, 0), (_Kind.DATA, 0), (_Kind.DATA, 0))
    req: int
    delegation: bytes
    revocations: bytes
    checkpoint: bytes
    consistency: bytes = b""

    def _validate(self) -> None:
        for part in (self.delegation, self.revocations, self.checkpoint):
            if not part or len(part) > MAX_TRUST_STAPLE_PART:
                raise MessageDecodeError("a registrar's list holds three statements")
        if len(self.consistency) % 32 or len(self.consistency) // 32 > MAX_PROOF_HASHES:
            raise MessageDecodeError("a consistency proof is at most 128 hashes")

    def hashes(self) -> tuple[bytes, ...]:
        c = self.consistency
        return tuple(c[i : i + 32] for i in range(0, len(c), 32))


@dataclass(frozen=True, slots=True)
class UnknownExtension:
    """An optional extension record (tag 64..127) this version does not know."""

    tag: int


Message = (
    Text
    | Ack
    | Read
    | FileOffer
    | FileAccept
    | FileChunk
    | FileComplete
    | FileReject
    | FileCancel
    | Ping
    | Pong
    | Close
    | MbPair
    | MbRegister
    | MbDeregister
    | MbPrekeys
    | MbFetch
    | MbDelete
    | MbStatus
    | MbGetPrekey
    | MbDeposit
    | MbWipe
    | MbResult
    | MbPrekey
    | MbEnvelope
    | MbUsage
    | MailboxInfo
    | RgEnrol
    | RgRenew
    | RgFetch
    | RgResult
    | RgEndorsement
    | RgList
    | LogCosign
    | LogCosigned
    | GroupOps
    | GroupFetch
    | GroupText
    | GroupFileOffer
    | LabelLimit
    | TrustStaple
    | TrustGossip
    | TrustRotation
)

_BY_TAG: Final[dict[int, type[_Record]]] = {
    cls.TAG: cls
    for cls in (
        Text,
        Ack,
        Read,
        FileOffer,
        FileAccept,
        FileChunk,
        FileComplete,
        FileReject,
        FileCancel,
        Ping,
        Pong,
        Close,
        MbPair,
        MbRegister,
        MbDeregister,
        MbPrekeys,
        MbFetch,
        MbDelete,
        MbStatus,
        MbGetPrekey,
        MbDeposit,
        MbWipe,
        MbResult,
        MbPrekey,
        MbEnvelope,
        MbUsage,
        MailboxInfo,
        RgEnrol,
        RgRenew,
        RgFetch,
        RgResult,
        RgEndorsement,
        RgList,
        LogCosign,
        LogCosigned,
        GroupOps,
        GroupFetch,
        GroupText,
        GroupFileOffer,
        LabelLimit,
        TrustStaple,
        TrustGossip,
        TrustRotation,
    )
}


def _bad(what: str) -> MessageDecodeError:
    return MessageDecodeError(f"malformed record: {what}")


def _check_id(value: object) -> bytes:
    if type(value) is not bytes or len(value) != ID_LEN:
        raise _bad("an id is 16 bytes")
    return value


def _check(kind: _Kind, bound: int, value: object) -> object:
    if kind is _Kind.ID:
        return _check_id(value)
    if kind is _Kind.HASH:
        if type(value) is not bytes or len(value) != HASH_LEN:
            raise _bad("a hash is 64 bytes")
        return value
    if kind is _Kind.U64:
        # IntEnum members (CloseCode, FileRejectReason) are ints; bools are not.
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
            raise _bad("expected an unsigned 64-bit integer")
        if bound and value > bound:
            # A time (created_ms): at most MAX_TIME_MS.
            raise _bad(f"expected at most {bound}")
        return value
    if kind is _Kind.IDS:
        if type(value) is not tuple or not 1 <= len(value) <= MAX_ACK_IDS:
            raise _bad(f"expected 1 to {MAX_ACK_IDS} ids")
        return tuple(_check_id(v) for v in value)
    if kind is _Kind.KEY:
        if type(value) is not bytes or len(value) != KEY_LEN:
            raise _bad("a key is 32 bytes")
        return value
    if kind is _Kind.BLOBS:
        if type(value) is not tuple or not 1 <= len(value) <= MAX_BLOBS:
            raise _bad(f"expected 1 to {MAX_BLOBS} byte strings")
        for v in value:
            if type(v) is not bytes or len(v) > bound:
                raise _bad(f"expected byte strings of at most {bound} bytes")
        return value
    if kind is _Kind.TEXT:
        if type(value) is not str:
            raise _bad("expected a string")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:
            raise _bad("a string must be valid UTF-8 (no lone surrogates)") from None
        if size > bound:
            raise _bad(f"expected a string of at most {bound} bytes")
        return value
    if kind is _Kind.LABELS:
        if type(value) is not tuple or len(value) > MAX_LABEL_SCHEMES:
            raise _bad(f"expected at most {MAX_LABEL_SCHEMES} labels")
        for v in value:
            if not v:
                raise _bad("a label limit names labels")
            _check(_Kind.LABEL, bound, v)
        return value
    if kind is _Kind.LABEL:
        if type(value) is not str or len(value) > bound:
            raise _bad(f"a label is a string of at most {bound} characters")
        if value and not (value.isascii() and value.isprintable()):
            raise _bad("a label is printable ASCII")
        return value
    if type(value) is not bytes:
        raise _bad("expected binary data")
    return value


# Per record class: its field names, and the defaults of its optional ones.
_SHAPES: Final[dict[type, tuple[tuple[str, ...], tuple[object, ...]]]] = {}


def _shape(cls: type[_Record]) -> tuple[tuple[str, ...], tuple[object, ...]]:
    found = _SHAPES.get(cls)
    if found is None:
        every = fields(cls)
        optional = every[len(every) - cls.OPTIONAL :] if cls.OPTIONAL else ()
        found = _SHAPES[cls] = (tuple(f.name for f in every), tuple(f.default for f in optional))
    return found


def wire_values(message: Message) -> list[object]:
    """The record's fields as they go on the wire, its tag first: a record
    with ``TRIM`` leaves off optional trailing fields at their defaults."""
    names, defaults = _shape(type(message))
    values = [getattr(message, name) for name in names]
    if message.TRIM:
        keep = len(values)
        first = keep - len(defaults)
        while keep > first and values[keep - 1] == defaults[keep - 1 - first]:
            keep -= 1
        del values[keep:]
    return [int(message.TAG), *values]


def _plain(value: object, depth: int = 0) -> bool:
    """An int, str or bin, or an array of them: the kinds records are made of."""
    if type(value) in (int, str, bytes):
        return True
    return type(value) is tuple and depth == 0 and all(_plain(v, 1) for v in value)


def encode(message: Message) -> bytes:
    """The msgpack form of ``message``; LocalProtocolError if it breaks a limit."""
    values = [getattr(message, name) for name in _shape(type(message))[0]]
    try:
        for (kind, bound), value in zip(message.SCHEMA, values, strict=True):
            _check(kind, bound, value)
        message._validate()
    except MessageDecodeError as exc:
        raise LocalProtocolError(f"cannot send {type(message).__name__}: {exc}") from exc
    data = _msgpack.pack(wire_values(message))
    if len(data) > MAX_RECORD_SIZE:
        raise LocalProtocolError(f"{type(message).__name__} is larger than one frame")
    return data


_M = TypeVar("_M", bound="Message")
_M_co = TypeVar("_M_co", bound="Message", covariant=True)


@dataclass(frozen=True, slots=True, eq=False)
class Encoded(Generic[_M_co]):
    """A record and the bytes :func:`encode` made of it, as :func:`encoded`
    (their one maker) pairs them: a record checked before it is queued goes
    on the wire as these bytes instead of being encoded again (a session's
    ``send`` takes either). Its repr is the record's; the bytes hold its
    contents and stay out of it."""

    message: _M_co
    data: bytes = field(repr=False)


def encoded(message: _M) -> Encoded[_M]:
    """``message`` with its :func:`encode` bytes (the same errors)."""
    return Encoded(message, encode(message))


def decode(data: bytes) -> Message | UnknownExtension:
    """Strictly decode one record; :class:`MessageDecodeError` on anything else."""
    if len(data) > MAX_RECORD_SIZE:
        raise _bad("too large")
    try:
        obj: Any = _msgpack.unpack(data, max_len=MAX_RECORD_SIZE, max_items=MAX_ACK_IDS)
    except _msgpack.NotMsgpack as exc:
        raise _bad("not a single msgpack value within limits") from exc
    if type(obj) is not tuple or not 1 <= len(obj) <= MAX_RECORD_FIELDS + 1:
        raise _bad("a record is an array of a tag and at most 16 fields")
    tag = obj[0]
    if type(tag) is not int:
        raise _bad("the tag is an integer")
    cls = _BY_TAG.get(tag)
    # Fields we do not interpret (an extension's, or trailing ones from a later
    # version) must still be of the kinds we accept at all.
    # Trailing fields are scalars; an extension's fields may also be arrays of them.
    known = len(cls.SCHEMA) if cls is not None else 0
    for extra in obj[1 + known :]:
        if not _plain(extra, 0 if cls is None else 1):
            raise _bad("unexpected value in a field we do not interpret")
    if cls is None:
        if tag in EXTENSION_TAGS:
            return UnknownExtension(tag)
        raise MessageDecodeError(f"unknown record type {tag}")
    schema = cls.SCHEMA
    values = obj[1:]
    if len(values) < len(schema) - cls.OPTIONAL:
        raise _bad(f"{cls.__name__} has {len(schema) - cls.OPTIONAL} fields")
    checked = [_check(kind, bound, v) for (kind, bound), v in zip(schema, values, strict=False)]
    record = cls(*checked)
    record._validate()
    return record  # type: ignore[return-value]
