"""The evidence log's entries: what an endpoint records of what it sent and
received, in one canonical encoding (``protocol-spec/evidence.md``).

Theory of operation
-------------------
Every event that matters for a record (a message queued, sent, received,
delivered or read; a file; a contact added or removed; an export) becomes one
:class:`Entry`, appended as one leaf of the endpoint's append-only Merkle tree
(:mod:`onionpost.proto.merkle`, leaf data = :meth:`Entry.encode`). The log's
checkpoints are signed notes (:mod:`onionpost.proto.note`) with the origin
:func:`origin` of the endpoint's address.

An entry never holds a message's contents, only digests of them:

- ``content``: BLAKE2b-512 of the plaintext (a text's body in UTF-8; a file's
  bytes, the digest its offer carries), so that an export's plaintext can be
  checked against the entry;
- ``record``: SHA-256 of the record as it went on the wire
  (the bytes :func:`onionpost.proto.messages.encode` makes of the ``Text`` or
  ``FileOffer``),
  rebuilt from the stored fields, so that the export shows what was sent.

The encoding is a msgpack array of fixed arity (``FIELDS``), decoded
strictly: a different arity, a field of the wrong type or length, an unknown
event is :class:`~onionpost.errors.VerificationError` (``what="entry"``).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from onionpost.errors import VerificationError
from onionpost.limits import MAX_EVIDENCE_DETAIL, MAX_EVIDENCE_ENTRY
from onionpost.proto import _msgpack
from onionpost.proto.merkle import verify_consistency
from onionpost.proto.messages import FileOffer, Text, wire_values
from onionpost.proto.note import Checkpoint

__all__ = [
    "CONTENT_LEN",
    "RECORD_LEN",
    "VERSION",
    "Entry",
    "Event",
    "Verdict",
    "content_digest",
    "file_entry",
    "judge",
    "judge_own",
    "origin",
    "state_entry",
    "text_entry",
]

VERSION: Final = 1
CONTENT_LEN: Final = 64  # BLAKE2b-512
RECORD_LEN: Final = 32  # SHA-256
ID_LEN: Final = 16
FIELDS: Final = 9
_ORIGIN_SUFFIX: Final = "/evidence"
_U63: Final = 2**63 - 1


class Event(enum.IntEnum):
    """What happened. Message events name the message; contact events the contact."""

    QUEUED = 1  # we queued a message to the counterparty
    SENT = 2  # it left on a session (or in an envelope to its mailbox)
    DELIVERED = 3  # the counterparty acknowledged storing it
    READ_BY_THEM = 4  # the counterparty's user read it
    RECEIVED = 5  # we stored a message from the counterparty
    READ = 6  # our user read it
    CONTACT_ADDED = 16
    CONTACT_REMOVED = 17
    CONTACT_VERIFIED = 18  # the user confirmed the safety number (the detail)
    GROUP_CHANGED = 19  # a team channel's membership operation kept (groups.md)
    CONTACT_RENAMED = 20  # the user renamed the contact (the new name is the detail)
    EXPORTED = 32  # an export was made (detail: what it selected)


MESSAGE_EVENTS: Final = frozenset(
    {
        Event.QUEUED,
        Event.SENT,
        Event.DELIVERED,
        Event.READ_BY_THEM,
        Event.RECEIVED,
        Event.READ,
    }
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One leaf of the evidence log; see the module docstring.

    ``kind`` is ``"text"``, ``"file"`` or ``""`` (not a message event);
    ``content`` and ``record`` are empty unless the event carries them
    (QUEUED and RECEIVED do)."""

    event: Event
    time_ms: int
    counterparty: str
    message_id: bytes = b""
    kind: str = ""
    content: bytes = b""
    record: bytes = b""
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.event, Event):
            raise VerificationError("an unknown evidence event", what="entry")
        if not isinstance(self.time_ms, int) or not 0 <= self.time_ms <= _U63:
            raise VerificationError("an entry's time is out of range", what="entry")
        if not isinstance(self.counterparty, str) or len(self.counterparty) > 128:
            raise VerificationError("an entry's counterparty is malformed", what="entry")
        if self.message_id and len(self.message_id) != ID_LEN:
            raise VerificationError("an entry's message id is 16 bytes", what="entry")
        if self.kind not in ("", "text", "file"):
            raise VerificationError("an entry's kind is text, file or empty", what="entry")
        if self.content and len(self.content) != CONTENT_LEN:
            raise VerificationError("an entry's content digest is 64 bytes", what="entry")
        if self.record and len(self.record) != RECORD_LEN:
            raise VerificationError("an entry's record digest is 32 bytes", what="entry")
        if len(self.detail.encode()) > MAX_EVIDENCE_DETAIL:
            raise VerificationError("an entry's detail is too long", what="entry")
        if (self.event in MESSAGE_EVENTS) != bool(self.message_id):
            raise VerificationError("a message event names a message, no other does", what="entry")

    def encode(self) -> bytes:
        """The canonical bytes: the leaf data of the log."""
        return _msgpack.pack(
            [
                VERSION,
                int(self.event),
                self.time_ms,
                self.counterparty,
                self.message_id,
                self.kind,
                self.content,
                self.record,
                self.detail,
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        """Strictly decode :meth:`encode`'s output; :class:`VerificationError`."""
        if len(data) > MAX_EVIDENCE_ENTRY:
            raise VerificationError("an entry is too long", what="entry")
        try:
            value = _msgpack.unpack(data, max_len=MAX_EVIDENCE_ENTRY, max_items=FIELDS)
        except _msgpack.NotMsgpack as exc:
            raise VerificationError("an entry is not one msgpack value", what="entry") from exc
        types = (int, int, int, str, bytes, str, bytes, bytes, str)
        if (
            not isinstance(value, tuple)
            or len(value) != FIELDS
            or not all(
                isinstance(v, t) and not isinstance(v, bool)
                for v, t in zip(value, types, strict=True)
            )
        ):
            raise VerificationError("an entry is malformed", what="entry")
        version, event, *rest = value
        if version != VERSION:
            raise VerificationError(f"an entry of version {version}", what="entry")
        try:
            kind = Event(event)
        except ValueError as exc:
            raise VerificationError("an unknown evidence event", what="entry") from exc
        entry = cls(kind, *rest)
        if entry.encode() != data:
            raise VerificationError("an entry is not in canonical form", what="entry")
        return entry

    def to_json(self) -> dict[str, object]:
        """A JSON-ready view (hex for bytes), for ``log show`` and exports."""
        return {
            "event": self.event.name.lower(),
            "time_ms": self.time_ms,
            "counterparty": self.counterparty,
            "message_id": self.message_id.hex(),
            "kind": self.kind,
            "content_blake2b": self.content.hex(),
            "record_sha256": self.record.hex(),
            "detail": self.detail,
        }


def origin(address: str) -> str:
    """The origin line of the checkpoints of ``address``'s evidence log."""
    return address + _ORIGIN_SUFFIX


def content_digest(data: bytes) -> bytes:
    """BLAKE2b-512 of a plaintext: a text's UTF-8 body, a file's bytes."""
    return hashlib.blake2b(data, digest_size=CONTENT_LEN).digest()


def _record_digest(record: Text | FileOffer) -> bytes:
    # encode()'s bytes, without its checks: what is stored was checked when it
    # arrived or was queued, and a record of a store's older rules still gets
    # its entry.
    # The label is one of the fields: an entry binds the label the record
    # carried, so a label changed in the store no longer matches its entry.
    return hashlib.sha256(_msgpack.pack(wire_values(record))).digest()


def text_entry(  # noqa: PLR0917 - a text's fields
    event: Event,
    time_ms: int,
    counterparty: str,
    message_id: bytes,
    created_ms: int,
    body: str,
    content_type: str,
    label: str = "",
) -> Entry:
    """The entry of a text queued or received, with its digests (the record's
    covers its label)."""
    record = Text(message_id, created_ms, body, content_type, label)
    return Entry(
        event,
        time_ms,
        counterparty,
        message_id,
        "text",
        content_digest(body.encode()),
        _record_digest(record),
    )


def file_entry(  # noqa: PLR0917 - a file offer's fields
    event: Event,
    time_ms: int,
    counterparty: str,
    file_id: bytes,
    created_ms: int,
    name: str,
    size: int,
    blake2b: bytes,
    content_type: str,
    label: str = "",
) -> Entry:
    """The entry of a file queued or received: its offer's digest (covering its
    label) and the file's."""
    offer = FileOffer(file_id, created_ms, name, size, blake2b, content_type, label)
    return Entry(event, time_ms, counterparty, file_id, "file", blake2b, _record_digest(offer))


def state_entry(
    event: Event, time_ms: int, counterparty: str, message_id: bytes, kind: str
) -> Entry:
    """A message's later event (sent, delivered, read): no digests."""
    return Entry(event, time_ms, counterparty, message_id, kind)


# -- witnessing (evidence.md §5) ----------------------------------------------------


class Verdict(enum.Enum):
    """A witness's judgement of a log's new checkpoint against the one it holds."""

    COSIGN = "cosign"  # the log only grew (or it is the first we see)
    RESYNC = "resync"  # the proof starts elsewhere than what we hold: send ours
    ROLLBACK = "rollback"  # smaller than a checkpoint the log's key signed before
    FORK = "fork"  # not a continuation of what the log's key signed before


def judge(
    held: Checkpoint | None, new: Checkpoint, old_size: int, proof: Sequence[bytes]
) -> Verdict:
    """What a witness holding ``held`` does with ``new`` and its consistency
    proof from ``old_size``. Both are checkpoints signed by the log's key."""
    if held is None:
        return Verdict.COSIGN
    if held.origin != new.origin:
        return Verdict.FORK
    if new.size < held.size:
        return Verdict.ROLLBACK
    if new.size == held.size:
        return Verdict.COSIGN if new.root == held.root else Verdict.FORK
    if old_size != held.size:
        return Verdict.RESYNC
    try:
        verify_consistency(held.size, new.size, held.root, new.root, proof)
    except VerificationError:
        return Verdict.FORK
    return Verdict.COSIGN


def judge_own(held: Checkpoint, size: int, root_at: Callable[[int], bytes]) -> Verdict:
    """What the log's owner makes of ``held``, a checkpoint of its own log that a
    witness returned instead of cosigning, when its log now has ``size``
    entries (``root_at(n)``: the root of its first ``n``): RESYNC when it is
    a prefix of the log, else the log was put back (ROLLBACK) or rewritten
    (FORK)."""
    if held.size > size:
        return Verdict.ROLLBACK
    if root_at(held.size) != held.root:
        return Verdict.FORK
    return Verdict.RESYNC
