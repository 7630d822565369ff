"""The local API's shapes, defined once: every request, result and event.

Theory of operation
-------------------
Each request is a frozen record whose fields are its parameters; its class
names the method (``METHOD``) and, as its type parameter, the shape of the
result: ``class SendText(Request[Queued])``, so a call's result type follows
from its request (``Client.request(r: Request[R]) -> R``), and ``RESULT``
holds the same type for decoding (one record, or a ``tuple`` of them).
Results and events are frozen records too. Both ends of the local API go
through here:

- the daemon's API server decodes a request's ``params`` with
  :func:`decode_request` (a bad parameter is ``bad-request``), hands the
  request record to the backend's handler for its type, and encodes the
  record it returns with :func:`encode`;
- the client encodes requests with :func:`encode` and decodes replies with
  :func:`decode_result` and events with :func:`decode_event` (a reply that
  does not fit its record is a malformed reply);
- ``protocol-spec/local-api.md``'s tables are generated from these records
  (:func:`markdown_tables`, which walks :data:`REQUESTS` and :data:`EVENTS`),
  and a test keeps the two equal.

The JSON of a record is an object with one key per field. Decoding is
strict about the fields it knows (types, required ones present) and ignores
fields it does not know, so a newer daemon may add fields (local-api.md
§Evolution). Field types are ``str``, ``int`` (never a JSON boolean),
``float``, ``bool``, another record, a string enum (:class:`MessageState`,
:class:`Direction`, ...: its value on the wire), a ``tuple`` of one of those,
or ``X | None``. A field with a default may be absent.

This module imports nothing heavier than the standard library and
:mod:`onionpost.errors`: the client library depends on it.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import string
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import (
    Any,
    ClassVar,
    Final,
    Generic,
    Literal,
    TypeAlias,
    TypeVar,
    cast,
    get_args,
    get_origin,
)

from onionpost.errors import OnionpostError

__all__ = [
    "EVENTS",
    "MAX_IDS",
    "MAX_TEXTS",
    "MAX_INBOX_LIMIT",
    "MAX_SEQ",
    "MESSAGE_ID_SIZE",
    "REQUESTS",
    "Contact",
    "ContactAdd",
    "ContactDetail",
    "ContactList",
    "ContactRef",
    "ContactRemoved",
    "ContactRequireEndorsement",
    "ContactRemove",
    "ContactRename",
    "ContactShow",
    "ContactStatus",
    "ContactVerify",
    "Direction",
    "DistributionList",
    "Event",
    "EvidenceExport",
    "EvidenceExported",
    "Exported",
    "LogAlarm",
    "LogEntries",
    "LogEntry",
    "LogReport",
    "LogShow",
    "LogVerify",
    "LogWitness",
    "ExportFile",
    "FileInfo",
    "GetMailboxStatus",
    "Group",
    "GroupAdd",
    "GroupChange",
    "GroupCopy",
    "GroupCreate",
    "GroupDemote",
    "GroupLeave",
    "GroupList",
    "GroupMember",
    "GroupPromote",
    "GroupRemove",
    "GroupRename",
    "GroupSendFile",
    "GroupSendText",
    "GroupSent",
    "GroupShow",
    "GetMessage",
    "GetStatus",
    "Identity",
    "Inbox",
    "Kind",
    "ListAdd",
    "ListCopy",
    "ListCreate",
    "ListDelete",
    "ListList",
    "ListRemove",
    "ListSendFile",
    "ListSendText",
    "ListSent",
    "ListShow",
    "MailboxCode",
    "MailboxContactPrekeys",
    "MailboxOwnerUsage",
    "MailboxPair",
    "MailboxRef",
    "MailboxStatus",
    "MailboxWipe",
    "RegistrarCode",
    "RegistrarRevoke",
    "RegistrarList",
    "RegistrarExportList",
    "RegistrarDelegation",
    "RevocationListExport",
    "RegistrarState",
    "RegistrarEndpoint",
    "RegistrarRevocation",
    "EnrolmentCode",
    "TrustEnrol",
    "MarkRead",
    "Marked",
    "Message",
    "MessageState",
    "Outbox",
    "PeerChange",
    "Queued",
    "RevocationsImported",
    "Request",
    "Retried",
    "Retry",
    "Role",
    "SafetyNumber",
    "SendFile",
    "SendText",
    "Endorsement",
    "EndorsementDetail",
    "TrustAdd",
    "TrustAnchor",
    "TrustEndorsementInstall",
    "TrustRotate",
    "RotationAnnounced",
    "TrustRevocationsImport",
    "TrustList",
    "TrustRemove",
    "SendTexts",
    "SetupCode",
    "StateChange",
    "RegistrarStatus",
    "RotationStatus",
    "Status",
    "Subscribe",
    "Subscribed",
    "Topic",
    "TorState",
    "TorStatus",
    "Whoami",
    "Wiped",
    "decode",
    "decode_event",
    "decode_request",
    "decode_result",
    "encode",
    "markdown_tables",
    "new_message_id",
    "topic_of",
    "TextItem",
]

# The largest ``limit`` of a listing and the most ids in ``mark_read``.
MAX_INBOX_LIMIT: Final = 1000
MAX_IDS: Final = 1000
MAX_TEXTS: Final = 1000  # texts in one send_texts call
# The largest seq the store holds (SQLite's INTEGER).
MAX_SEQ: Final = 2**63 - 1
# The bytes of a message or file id we choose (32 hex digits in JSON).
MESSAGE_ID_SIZE: Final = 16
#: The banner of a message without a label (an earlier sender's).
UNLABELLED: Final = "UNLABELLED"
_MAX_ID_LEN: Final = 64
# limits.MAX_LABEL and MAX_LABEL_SCHEMES (this module imports no limits; a test keeps them equal).
_MAX_LABEL_TEXT: Final = 256
_MAX_LABEL_LIST: Final = 16
_HEX: Final = frozenset(string.hexdigits)
_SAFETY_GROUP: Final = 5
# limits.MAX_LIST_MEMBERS and MAX_LIST_SENDS_SHOWN (this module imports no
# limits; a test keeps them equal).
_MAX_LIST_MEMBERS: Final = 256
_MAX_LIST_SENDS_SHOWN: Final = 20
_MAX_GROUP_MEMBERS: Final = 64
_MAX_TEXT_BODY: Final = 60_000  # limits.MAX_TEXT_BODY
# limits.MAX_TIME_MS: the last ms of year 9999, the last a date shows (and
# less than 2^63, what SQLite holds).
_MAX_TIME_MS: Final = 253_402_300_799_999
_MAX_GROUP_NAME: Final = 64

T = TypeVar("T")  # a record
R = TypeVar("R")  # a request's result


def new_message_id() -> str:
    """A fresh id for a message or file we send: 16 random bytes, in hex.

    The client chooses it and sends it with ``send_text``/``send_file``, so a
    request whose answer was lost can be sent again without sending twice.
    """
    return os.urandom(MESSAGE_ID_SIZE).hex()


class MessageState(enum.StrEnum):
    """Every state a message or file is shown in, outgoing and incoming.

    Outgoing: queued → sent → delivered → read, with ``deposited`` before
    delivered when it went to the contact's mailbox; or expired (it was not
    delivered in time) or refused (the contact refused the file for good).
    ``sending`` is progress while a file's chunks go out. Incoming: a file
    is ``receiving`` until complete, then received → read.
    """

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEPOSITED = "deposited"
    DELIVERED = "delivered"
    READ = "read"
    EXPIRED = "expired"
    REFUSED = "refused"
    RECEIVING = "receiving"
    RECEIVED = "received"

    @property
    def failed(self) -> bool:
        """The message will never be delivered."""
        return self in (MessageState.EXPIRED, MessageState.REFUSED)

    @property
    def delivered(self) -> bool:
        return self in (MessageState.DELIVERED, MessageState.READ)


# A message's ``reason`` when refused by this endpoint rather than by the
# contact (a contact's codes are FileReject's, below 256): this home moved to
# a new address (trust.md §6) and the contact, told of it, takes nothing from
# the old one, so what still waited for it here can never arrive.
REASON_MOVED: Final = 256


class Direction(enum.StrEnum):
    """Whether a message came to us or goes from us."""

    IN = "in"
    OUT = "out"


class Kind(enum.StrEnum):
    TEXT = "text"
    FILE = "file"


class TorState(enum.StrEnum):
    """Tor's state as a daemon shows it: ``onionpost.tor``'s states, and
    ``starting`` until the daemon's tor first comes up."""

    STARTING = "starting"
    OK = "ok"
    DEGRADED = "degraded"
    RESTARTING = "restarting"
    FAILED = "failed"


class Role(enum.StrEnum):
    """What answers ``mailbox_status``: an endpoint (the mailbox's owner) or a mailbox."""

    OWNER = "owner"
    MAILBOX = "mailbox"


# -- parameter checks (beyond the field's type) -------------------------------------------

Check = Callable[[object], str | None]  # the problem with a value, or None


def _hex_id(value: object) -> str | None:
    if isinstance(value, str) and 0 < len(value) <= _MAX_ID_LEN and not set(value) - _HEX:
        return None
    return "must be a hex id"


def _message_id(value: object) -> str | None:
    if isinstance(value, str) and len(value) == 2 * MESSAGE_ID_SIZE and not set(value) - _HEX:
        return None
    return f"must be {2 * MESSAGE_ID_SIZE} hex digits"


def _hex_ids(value: object) -> str | None:
    if (
        isinstance(value, tuple)
        and len(value) <= MAX_IDS
        and all(_hex_id(v) is None for v in value)
    ):
        return None
    return f"must be a list of at most {MAX_IDS} hex ids"


def _absolute_path(value: object) -> str | None:
    # The daemon's working directory is not the caller's: only absolute paths.
    if isinstance(value, str) and "\0" not in value and os.path.isabs(value):
        return None
    return "must be an absolute path"


def _seq(value: object) -> str | None:
    if isinstance(value, int) and 0 <= value <= MAX_SEQ:
        return None
    return f"must be an integer from 0 to {MAX_SEQ}"


def _time_ms(value: object) -> str | None:
    # Compared in SQLite: past 2^63 it raised OverflowError, an internal error.
    if isinstance(value, int) and 0 <= value <= _MAX_TIME_MS:
        return None
    return f"must be a time in ms from 0 to {_MAX_TIME_MS} (the end of year 9999)"


def _limit(value: object) -> str | None:
    if isinstance(value, int) and 1 <= value <= MAX_INBOX_LIMIT:
        return None
    return f"must be an integer from 1 to {MAX_INBOX_LIMIT}"


def _topics(value: object) -> str | None:
    if isinstance(value, tuple) and value and all(t in EVENTS for t in value):
        return None
    return f"must be a non-empty list of {sorted(EVENTS)}"


def _meta(doc: str, check: Check | None = None) -> dict[str, Any]:
    """A field's documentation (for local-api.md) and its check, if any."""
    return {"doc": doc} if check is None else {"doc": doc, "check": check}


_LABEL_DOC: Final = (
    "its handling label (spec.md §5.10): `TLP:AMBER`, `CUI//SP-CTI//NOFORN`, a configured "
    "agency scheme's; absent: the endpoint's default (config `labels.default`)"
)


def _text_body(value: object) -> str | None:
    # Four bytes a character at most: the usual text is not encoded to check.
    # An empty text is most often an empty variable or file: refused.
    if (
        isinstance(value, str)
        and value
        and (
            len(value) * 4 <= _MAX_TEXT_BODY
            or len(value.encode("utf-8", "replace")) <= _MAX_TEXT_BODY
        )
    ):
        return None
    return f"must be non-empty text of at most {_MAX_TEXT_BODY} bytes of UTF-8"


def _label_text(value: object) -> str | None:
    if value is None or (isinstance(value, str) and 0 < len(value) <= _MAX_LABEL_TEXT):
        return None
    return f"must be a label of 1 to {_MAX_LABEL_TEXT} characters"


def _label_list(value: object) -> str | None:
    if isinstance(value, tuple) and len(value) <= _MAX_LABEL_LIST:
        return None
    return f"must be a list of at most {_MAX_LABEL_LIST} labels"


# -- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndorsementDetail:
    """An agency endorsement in detail (trust.md §§4, 7): a contact's as last
    judged (`contact_show`), or our own judged now (`whoami`)."""

    status: str = field(
        metadata=_meta(
            "`endorsed`, `unverified-stale`, `refused`, `refused-forged`, "
            "`refused-malformed` or `no-anchor` (a contact's: as `endorsement_status`)"
        )
    )
    describe: str = field(
        metadata=_meta("the line `contact list` shows: `endorsed by A (Field office 3) until T`")
    )
    checked_ms: int | None = field(
        default=None, metadata=_meta("when the verdict was reached (it is judged every 30 s)")
    )
    reason: str = field(
        default="",
        metadata=_meta(
            "why not endorsed: `revoked`, `expired`, `stale-revocation-list`, ...; empty if it is"
        ),
    )
    agency: str = field(default="", metadata=_meta("the agency the proof names"))
    endpoint: str = field(
        default="",
        metadata=_meta("its name in the endorsement; empty unless the signature verified"),
    )
    unit: str = field(default="", metadata=_meta("its unit (may be empty)"))
    valid_from: int | None = field(
        default=None, metadata=_meta("the endorsement's start, POSIX seconds")
    )
    valid_until: int | None = field(
        default=None, metadata=_meta("the endorsement's end, POSIX seconds")
    )
    until: int | None = field(
        default=None,
        metadata=_meta(
            "the end of the verdict: that end or its issuing key's delegation's if sooner; "
            "null when refused"
        ),
    )
    replaces: str = field(
        default="", metadata=_meta("the address it moves the endpoint from (trust.md §6), or empty")
    )
    anchor: str = field(
        default="",
        metadata=_meta("the fingerprint of the agency's anchor it was checked under; empty: none"),
    )
    revocations_serial: int | None = field(
        default=None,
        metadata=_meta("the serial of the agency's revocation list it was checked against"),
    )
    revocations_issued_at: int | None = field(
        default=None, metadata=_meta("when that list was issued, POSIX seconds")
    )
    revoked_at: int | None = field(
        default=None, metadata=_meta("revoked: when, as that list states it (POSIX seconds)")
    )
    revoked_reason: str = field(
        default="", metadata=_meta("revoked: the reason that list gives (may be empty)")
    )


@dataclass(frozen=True)
class Identity:
    """This endpoint: its display name, onion address and contact card line."""

    name: str
    address: str
    card: str = field(metadata=_meta("the contact card, one line starting with `onionpost1:`"))
    endorsement: str = field(
        default="",
        metadata=_meta(
            "our endorsement as the second line of a card bundle, starting with "
            "`onionpost-endorsement1:` (trust.md §7.5); empty without one"
        ),
    )
    endorsed: EndorsementDetail | None = field(
        default=None,
        metadata=_meta("our own endorsement as judged now; null without one installed"),
    )


@dataclass(frozen=True)
class TorStatus:
    """Tor's state as the daemon sees it."""

    state: TorState
    detail: str = ""


@dataclass(frozen=True)
class ContactStatus:
    """One contact's delivery state."""

    name: str
    address: str
    reachable: bool = field(metadata=_meta("a session with the contact is up"))
    queued: int = field(metadata=_meta("messages and files waiting for it"))
    last_error: str = field(
        default="",
        metadata=_meta(
            "why the last dial or session failed, in words; empty once it accepted a session"
        ),
    )
    since_ms: int | None = field(
        default=None, metadata=_meta("when it last became reachable or unreachable")
    )
    last_seen_ms: int | None = None
    failures: int = field(
        default=0, metadata=_meta("failed attempts since it last accepted a session")
    )
    retry_in: float | None = field(
        default=None, metadata=_meta("seconds until the next dial, when one is due")
    )
    dialing_for: float | None = field(
        default=None,
        metadata=_meta("seconds the dial to it under way has taken; null when none is"),
    )
    mailbox: str | None = field(
        default=None, metadata=_meta("the contact's mailbox, as its announcement says")
    )
    deposited: int = field(default=0, metadata=_meta("of `queued`, how many its mailbox holds"))
    mailbox_error: str = field(
        default="",
        metadata=_meta(
            "why the last deposit in its mailbox failed (`mailbox-quota-exceeded`, ...); "
            "empty once one succeeded"
        ),
    )
    refused: str = field(
        default="",
        metadata=_meta(
            "why its sessions are refused and nothing is sent to it (its outbox held): "
            "`refused: revoked T by A: reason`, or `endorsement required: ...` (trust.md §7.4); "
            "empty if not"
        ),
    )


@dataclass(frozen=True)
class RotationStatus:
    """This endpoint's move to a new address, as announced (trust.md §6)."""

    address: str = field(metadata=_meta("the new address"))
    told: int = field(metadata=_meta("contacts told (in a session, or through their mailbox)"))
    contacts: int = field(metadata=_meta("contacts to tell"))
    revoked: int = field(
        default=0,
        metadata=_meta(
            "revoked contacts, not counted in `contacts`: never told, since nothing is sent to them"
        ),
    )


@dataclass(frozen=True)
class RegistrarStatus:
    """Our agency's registrar, once this endpoint enrolled (trust.md §8)."""

    address: str = field(metadata=_meta("the registrar's onion address"))
    refresh_s: float = field(metadata=_meta("seconds between two rounds (`trust_refresh`)"))
    rounds: int = field(metadata=_meta("rounds done since the daemon started"))
    last_round_ms: int | None = field(
        default=None, metadata=_meta("when the last round succeeded; null: none yet")
    )
    last_error: str = field(
        default="", metadata=_meta("why the last round failed; empty when it did not")
    )


@dataclass(frozen=True)
class Status:
    address: str
    tor: TorStatus
    outbox_depth: int = field(metadata=_meta("messages and files waiting, to every contact"))
    last_delivery_ms: int | None = field(
        metadata=_meta(
            "when the last acknowledgement arrived (or a read receipt that came before "
            "its ack), POSIX milliseconds; null if none ever did"
        )
    )
    contacts: tuple[ContactStatus, ...]
    evidence_alarms: int = field(
        default=0,
        metadata=_meta(
            "alarms of the evidence log: a contact holds a checkpoint our log does not "
            "continue, or presented one its own earlier one contradicts (`log verify`)"
        ),
    )
    trust_alarms: int = field(
        default=0,
        metadata=_meta(
            "alarms of agency trust: two signed checkpoints of an agency's log that fork, "
            "or two lists of one serial (trust.md §3)"
        ),
    )
    registrar: RegistrarStatus | None = field(
        default=None, metadata=_meta("null until this endpoint enrolled with a registrar")
    )
    rotation: RotationStatus | None = field(
        default=None,
        metadata=_meta(
            "this endpoint's move announced with trust_rotate, and how many contacts have "
            "it; null if none"
        ),
    )
    delegation_ends: int | None = field(
        default=None,
        metadata=_meta(
            "when the agency's delegation under which our own endorsement was signed ends, "
            "POSIX seconds, once that is within 14 days or past (our endorsement ends with "
            "it: ask the agency to renew it); null otherwise"
        ),
    )


@dataclass(frozen=True)
class LogEntry:
    """One entry of the evidence log (evidence.md §2)."""

    index: int
    event: str = field(metadata=_meta("`queued`, `sent`, `delivered`, `read_by_them`, ..."))
    time_ms: int
    counterparty: str = field(metadata=_meta("the contact's address; empty for `exported`"))
    message_id: str = field(metadata=_meta("hex; empty for a contact's or an export's entry"))
    kind: str = field(metadata=_meta("`text`, `file`, or empty"))
    content_blake2b: str = field(metadata=_meta("hex BLAKE2b-512 of the plaintext, or empty"))
    record_sha256: str = field(metadata=_meta("hex SHA-256 of the wire record, or empty"))
    detail: str = ""


@dataclass(frozen=True)
class LogEntries:
    size: int = field(metadata=_meta("entries in the log"))
    entries: tuple[LogEntry, ...]


@dataclass(frozen=True)
class LogWitness:
    """A contact's latest cosignature of our log."""

    contact: str
    address: str
    size: int = field(metadata=_meta("the log's size it cosigned"))
    time_s: int = field(metadata=_meta("when it cosigned (POSIX seconds, its clock)"))


@dataclass(frozen=True)
class LogAlarm:
    kind: str = field(
        metadata=_meta(
            "`rollback`, `fork` (our log), `contact-rollback`, `contact-fork` (a contact's)"
        )
    )
    contact: str
    made_ms: int
    theirs: str = field(metadata=_meta("the signed checkpoint the contact holds (note text)"))
    ours: str = field(metadata=_meta("the signed checkpoint it contradicts (note text)"))


@dataclass(frozen=True)
class LogReport:
    """``log verify``: the whole log checked against every checkpoint signed of it."""

    ok: bool
    size: int
    root: str = field(metadata=_meta("hex SHA-256 Merkle root of the whole log"))
    checkpoints: int = field(metadata=_meta("our signed checkpoints, each checked"))
    witnesses: tuple[LogWitness, ...]
    alarms: tuple[LogAlarm, ...]
    problems: tuple[str, ...] = field(metadata=_meta("what failed, one line each; empty if ok"))


@dataclass(frozen=True)
class EvidenceExported:
    path: str
    messages: int
    files: int
    entries: int = field(metadata=_meta("log entries in the bundle, each with its proof"))
    log_size: int = field(metadata=_meta("the size of the checkpoint the proofs lead to"))


@dataclass(frozen=True)
class Contact:
    name: str
    address: str
    added_ms: int | None = None
    last_seen_ms: int | None = None
    reachable: bool = False
    verified_ms: int | None = field(
        default=None,
        metadata=_meta("when the user confirmed the safety number (contact_verify), or null"),
    )
    endorsement: str | None = field(
        default=None,
        metadata=_meta(
            "the contact's agency endorsement as last checked (trust.md §7.1): "
            "`endorsed by A (Field office 3) until T`, or why not; null if it presented none"
        ),
    )
    endorsement_status: str | None = field(
        default=None,
        metadata=_meta(
            "`endorsed`, `unverified-stale`, `refused`, `refused-forged`, "
            "`refused-malformed` or `no-anchor`; null if it presented none"
        ),
    )
    require_endorsement: bool | None = field(
        default=None,
        metadata=_meta(
            "this contact's own require_endorsement (contact_require_endorsement), "
            "or null: as config.toml says"
        ),
    )
    rotated: str | None = field(
        default=None,
        metadata=_meta(
            "its last move to a new address (trust.md §6): `moved from OLD by agency A "
            "[and the old key]`, with `(a revoked address)` after OLD when it was; null if none"
        ),
    )
    rotated_ms: int | None = field(
        default=None, metadata=_meta("when we moved it to its new address, or null")
    )
    max_labels: tuple[str, ...] = field(
        default=(), metadata=_meta("the highest labels we send it, as set here (one per scheme)")
    )
    accepts: tuple[str, ...] = field(
        default=(), metadata=_meta("the highest labels it said it accepts (one per scheme)")
    )


@dataclass(frozen=True)
class ContactDetail:
    """Everything about one contact (`contact_show`)."""

    contact: Contact = field(metadata=_meta("as `contact_list` shows it"))
    delivery: ContactStatus = field(
        metadata=_meta("as `status` shows it: what waits, its mailbox, why it is refused")
    )
    endorsement: EndorsementDetail | None = field(
        default=None, metadata=_meta("its endorsement in detail; null if it presented none")
    )
    require_endorsement: bool = field(
        default=False,
        metadata=_meta("whether nothing goes to it without a valid endorsement, in effect"),
    )
    require_endorsement_from: str = field(
        default="config.toml",
        metadata=_meta("where that comes from: `contact` (its own setting) or `config.toml`"),
    )
    rotated_from: str | None = field(
        default=None, metadata=_meta("the address it moved away from (trust.md §6), or null")
    )
    introduced: bool = field(
        default=False,
        metadata=_meta("a member a group introduced to us (groups.md §9), not a contact"),
    )
    groups: tuple[str, ...] = field(
        default=(), metadata=_meta("the team channels it is a member of, by name")
    )


@dataclass(frozen=True)
class ContactLabels:
    """The highest handling labels we send a contact."""

    name: str
    max_labels: tuple[str, ...] = field(metadata=_meta("as set here; empty: no limit of ours"))
    accepts: tuple[str, ...] = field(
        metadata=_meta("as the contact advertised; empty: it said nothing")
    )


@dataclass(frozen=True)
class ContactRef:
    """The contact a ``contact_add`` or ``contact_rename`` acted on."""

    name: str
    address: str


@dataclass(frozen=True)
class ContactRemoved:
    """The contact a ``contact_remove`` removed."""

    name: str
    address: str
    groups: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "the groups it is still a member of with us, by name: it stays reachable "
            "as their member, for the groups' messages alone (groups.md §9)"
        ),
    )
    lists: tuple[str, ...] = field(
        default=(),
        metadata=_meta("the distribution lists it was taken off, by name"),
    )


@dataclass(frozen=True)
class SafetyNumber:
    """What both sides compare out of band before trusting a contact."""

    name: str
    safety_number: str = field(
        metadata=_meta("60 digits in 12 groups of 5, the same on both endpoints")
    )
    verified_ms: int | None = field(
        default=None, metadata=_meta("when the user confirmed it matched, or null")
    )

    @property
    def groups(self) -> tuple[str, ...]:
        """The number in groups of five digits, as people read it aloud."""
        digits = "".join(self.safety_number.split())
        return tuple(digits[i : i + _SAFETY_GROUP] for i in range(0, len(digits), _SAFETY_GROUP))


@dataclass(frozen=True)
class TrustAnchor:
    """An agency's root key this endpoint believes (trust.md §1)."""

    agency: str
    fingerprint: str = field(metadata=_meta("SHA-256 fingerprint of the anchor, 64 hex digits"))
    safety_number: str = field(
        metadata=_meta("60 digits in 12 groups of 5, read to you by the agency out of band")
    )
    post_quantum: bool = field(metadata=_meta("whether the anchor has an ML-DSA-65 half"))
    added_ms: int | None = None
    revocations_serial: int | None = field(
        default=None, metadata=_meta("the serial of the agency's revocation list held, or null")
    )
    revocations_issued_at: int | None = field(
        default=None,
        metadata=_meta("when that list was issued (POSIX seconds): its freshness (trust.md §5)"),
    )
    checkpoint_size: int | None = field(
        default=None, metadata=_meta("entries of the agency's log at the checkpoint held, or null")
    )


@dataclass(frozen=True)
class Endorsement:
    """This endpoint's own endorsement, as installed (trust.md §4)."""

    agency: str
    address: str
    endpoint: str
    unit: str
    valid_until: int = field(metadata=_meta("POSIX seconds"))
    status: str = field(
        metadata=_meta("`endorsed` or `unverified-stale` (no fresh revocation list held yet)")
    )
    replaces: str = field(
        default="",
        metadata=_meta(
            "the address it moves this endpoint from, for `trust rotate` there (trust.md §6), "
            "or empty"
        ),
    )


@dataclass(frozen=True)
class RotationAnnounced:
    """This endpoint's move to a new address, announced to its contacts (trust.md §6)."""

    address: str = field(metadata=_meta("the new address"))
    replaces: str = field(metadata=_meta("this endpoint's address, which it leaves"))
    agency: str
    proof: str = field(
        metadata=_meta("`agency`, or `agency-and-old-key` when the old key signed it too")
    )
    status: str = field(metadata=_meta("`endorsed` or `unverified-stale`"))
    contacts: int = field(metadata=_meta("contacts it is announced to"))


@dataclass(frozen=True)
class RevocationsImported:
    """A revocation list now held (trust.md §7.3)."""

    agency: str
    serial: int
    issued_at: int = field(metadata=_meta("POSIX seconds"))
    revoked: int = field(metadata=_meta("addresses the list names"))
    changed: int = field(metadata=_meta("contacts whose endorsement verdict changed with it"))


@dataclass(frozen=True)
class EnrolmentCode:
    """A registrar's one-time enrolment code (trust.md §8)."""

    code: str = field(metadata=_meta("give it to `onionpost trust enrol` on the endpoint"))
    expires_ms: int
    endpoint: str = field(metadata=_meta("the name the endorsement will give the endpoint"))
    unit: str
    qr: str = field(metadata=_meta("the code as a QR code, in text for a terminal"))
    replaces: str = field(
        default="", metadata=_meta("the address the enrolment moves the endpoint from, or empty")
    )


@dataclass(frozen=True)
class RegistrarEndpoint:
    """An endpoint a registrar enrolled, and its current endorsement."""

    address: str
    endpoint: str
    unit: str
    enrolled_at: int = field(metadata=_meta("POSIX seconds"))
    valid_until: int = field(metadata=_meta("its endorsement's end, POSIX seconds"))
    revoked: bool = False
    replaces: str = field(
        default="",
        metadata=_meta("the address it was enrolled to replace (a move, trust.md §8.2), or empty"),
    )


@dataclass(frozen=True)
class RegistrarRevocation:
    """One entry of the agency's revocation list."""

    address: str
    revoked_at: int = field(metadata=_meta("POSIX seconds"))
    reason: str


@dataclass(frozen=True)
class RegistrarState:
    """What a registrar holds: its list, its log and its endpoints (trust.md §8)."""

    agency: str
    registrar: str = field(metadata=_meta("the registrar's onion address"))
    serial: int | None = field(metadata=_meta("the latest revocation list's serial"))
    issued_at: int | None = field(metadata=_meta("when it was signed, POSIX seconds"))
    log_size: int = field(metadata=_meta("statements in the agency log"))
    endpoints: tuple[RegistrarEndpoint, ...] = ()
    revoked: tuple[RegistrarRevocation, ...] = ()
    next_list_at: int | None = field(
        default=None,
        metadata=_meta(
            "when the next list is due, POSIX seconds: the latest one's `issued_at` plus the "
            "refresh interval (`registrar_refresh`); null: none signed yet"
        ),
    )
    delegation_until: int | None = field(
        default=None,
        metadata=_meta(
            "when the issuing key's delegation ends, POSIX seconds: nothing the registrar "
            "signs is valid after it (`registrar delegation` takes the root's next one)"
        ),
    )


@dataclass(frozen=True)
class RevocationListExport:
    """A registrar's latest revocation list as a file for endpoints it does not
    serve (trust.md §7.3): what `trust revocations import` takes."""

    agency: str
    serial: int = field(metadata=_meta("the list's serial"))
    issued_at: int = field(metadata=_meta("when it was signed, POSIX seconds"))
    revoked: int = field(metadata=_meta("addresses the list names"))
    bundle: str = field(
        metadata=_meta("base64 of the bundle: the list, its delegation and the log's checkpoint")
    )


@dataclass(frozen=True)
class Queued:
    """A message or file durably queued for delivery (``name``/``size`` for files)."""

    id: str
    state: MessageState
    name: str | None = None
    size: int | None = None
    label: str = field(default="", metadata=_meta("the label it carries"))


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    complete: bool


@dataclass(frozen=True)
class Message:
    """One message or file, either direction (``body`` or ``file`` by ``kind``)."""

    id: str
    contact: str
    direction: Direction
    kind: Kind
    state: MessageState
    created_ms: int
    seq: int | None = field(
        default=None, metadata=_meta("orders incoming messages (null for outgoing ones)")
    )
    received_ms: int | None = field(
        default=None,
        metadata=_meta("incoming: when it was stored here; outgoing: when it was queued here"),
    )
    body: str | None = None
    content_type: str | None = None
    file: FileInfo | None = None
    reason: int | None = field(
        default=None,
        metadata=_meta(
            "when refused: the contact's refusal code, or 256 (this home moved and the "
            "contact, told of it, takes nothing from the old address)"
        ),
    )
    sent_ms: int | None = field(
        default=None,
        metadata=_meta(
            "outgoing: when it was last sent; one acknowledged before that was "
            "recorded shows the acknowledgement's time"
        ),
    )
    delivered_ms: int | None = field(
        default=None, metadata=_meta("outgoing: when the contact acknowledged it")
    )
    read_ms: int | None = field(default=None, metadata=_meta("when it was read"))
    group: str | None = field(
        default=None, metadata=_meta("the team channel it was sent to, by name, or null")
    )
    group_id: str | None = field(default=None, metadata=_meta("that group's id, hex, or null"))
    group_send: GroupSent | None = field(
        default=None,
        metadata=_meta(
            "`message` only, our group sends: the send's copies to every member with their states"
        ),
    )
    label: str = field(
        default="",
        metadata=_meta(
            "its handling label's canonical text (spec.md §5.10), shown first; empty: "
            "an earlier sender's message without one"
        ),
    )

    @property
    def read(self) -> bool:
        return self.state is MessageState.READ

    @property
    def banner(self) -> str:
        """What a client shows first: the handling label, or ``UNLABELLED``."""
        return self.label or UNLABELLED


@dataclass(frozen=True)
class Exported:
    path: str
    size: int


@dataclass(frozen=True)
class Marked:
    marked: int = field(metadata=_meta("messages newly marked read"))


@dataclass(frozen=True)
class Retried:
    contacts: int = field(metadata=_meta("links woken"))


@dataclass(frozen=True)
class Subscribed:
    topics: tuple[str, ...]


# -- distribution lists -------------------------------------------------------------------


@dataclass(frozen=True)
class ListCopy:
    """One member's copy of a send to a list: an ordinary outgoing message of
    its own (`message` shows it by `id`)."""

    contact: str
    id: str = field(metadata=_meta("the copy's message id, hex"))
    state: MessageState


@dataclass(frozen=True)
class ListSent:
    """A send to a distribution list: one copy per member, each queued,
    delivered and answered one to one."""

    id: str = field(metadata=_meta("the send's id, hex (each copy has an id of its own)"))
    list: str
    kind: Kind
    created_ms: int
    copies: tuple[ListCopy, ...] = field(metadata=_meta("by member name"))


@dataclass(frozen=True)
class DistributionList:
    """A local list of contacts; its members never learn of it."""

    name: str
    created_ms: int
    members: tuple[str, ...] = field(metadata=_meta("current contacts, by name"))
    sends: tuple[ListSent, ...] = field(
        default=(),
        metadata=_meta(
            f"`list_show` only: the latest {_MAX_LIST_SENDS_SHOWN} sends, newest first, "
            "each copy with its state"
        ),
    )


# -- team channels ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupMember:
    name: str = field(metadata=_meta("the name on the member's card"))
    address: str
    admin: bool
    contact: str | None = field(
        default=None, metadata=_meta("our contact with that address, by name, or null")
    )
    reachable: bool | None = field(
        default=None,
        metadata=_meta("`group_show`: whether a session with it is up now; null for us"),
    )
    introduced_by: str | None = field(
        default=None,
        metadata=_meta(
            "a member that is no contact of ours but that the group introduced to us "
            "(groups.md §9): the name of the member whose operation carried its card; "
            "null for a contact, for us, and for a member not introduced (unreachable)"
        ),
    )
    verified: bool | None = field(
        default=None,
        metadata=_meta(
            "a contact or introduced member: whether its safety number was confirmed "
            "(`contact verify ADDRESS` for an introduced one); null otherwise"
        ),
    )


@dataclass(frozen=True)
class GroupCopy:
    """One member's copy of a group send: an ordinary outgoing message of its own."""

    contact: str
    id: str = field(metadata=_meta("the copy's message id, hex"))
    state: MessageState


@dataclass(frozen=True)
class GroupSent:
    """A send to a team channel: one copy per other member at one log head,
    each delivered pairwise."""

    id: str = field(metadata=_meta("the send's id, hex (each copy has an id of its own)"))
    group: str
    group_id: str = field(metadata=_meta("hex"))
    head: str = field(metadata=_meta("the log head it was sent at, hex"))
    created_ms: int
    copies: tuple[GroupCopy, ...] = field(metadata=_meta("by member name"))
    delivered: int = field(
        default=0, metadata=_meta("copies the members acknowledged (delivered or read)")
    )
    read: int = field(default=0, metadata=_meta("copies the members read (read receipts)"))
    unreachable: tuple[str, ...] = field(
        default=(),
        metadata=_meta("members no copy went to: neither a contact nor introduced yet"),
    )
    kind: Kind = field(default=Kind.TEXT, metadata=_meta("a text or a file"))


@dataclass(frozen=True)
class Group:
    """A team channel: its membership as its signed log gives it (groups.md)."""

    id: str = field(metadata=_meta("the group's id, 32 hex digits"))
    name: str
    head: str = field(metadata=_meta("the log head, hex"))
    member: bool = field(metadata=_meta("whether we are a member (false: removed, or we left)"))
    admin: bool = field(metadata=_meta("whether we are an admin"))
    members: tuple[GroupMember, ...] = field(metadata=_meta("by name"))
    operations: int = field(metadata=_meta("operations in its log"))
    sends: tuple[GroupSent, ...] = field(
        default=(),
        metadata=_meta(
            f"`group_show` only: the latest {_MAX_LIST_SENDS_SHOWN} sends, newest first"
        ),
    )


# -- the mailbox ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SetupCode:
    """A mailbox's one-time setup code (``mailbox.md`` §Setup code)."""

    code: str = field(metadata=_meta("give it to `onionpost mailbox pair` on the owner's endpoint"))
    expires_ms: int
    qr: str = field(metadata=_meta("the code as a QR code, in text for a terminal"))


@dataclass(frozen=True)
class MailboxOwnerUsage:
    """What a mailbox holds for one owner."""

    owner: str = field(metadata=_meta("the owner's onion address"))
    contacts: int = field(metadata=_meta("contacts it registered"))
    envelopes: int
    bytes: int
    one_time_prekeys: int
    last_resort_not_after_ms: int | None
    last_drained_ms: int | None = None
    last_deposit_ms: int | None = None


@dataclass(frozen=True)
class MailboxContactPrekeys:
    """A contact holding one-time prekeys it took from our mailbox and has not used."""

    contact: str = field(metadata=_meta("the contact's onion address"))
    unused: int = field(metadata=_meta("one-time prekeys it took and has not used yet"))


@dataclass(frozen=True)
class MailboxStatus:
    """``role`` is `owner` (an endpoint: its own mailbox, as last seen) or
    `mailbox` (a mailbox: every owner's usage)."""

    role: Role
    mailbox: str | None = field(default=None, metadata=_meta("owner: the mailbox's address"))
    paired: bool = False
    reachable: bool = False
    last_drained_ms: int | None = None
    waiting: int | None = field(
        default=None, metadata=_meta("owner: envelopes the mailbox holds for us, when last asked")
    )
    waiting_bytes: int | None = None
    one_time_prekeys: int | None = field(
        default=None, metadata=_meta("owner: one-time prekeys left at the mailbox")
    )
    unused_prekeys: tuple[MailboxContactPrekeys, ...] = field(
        default=(),
        metadata=_meta("owner: contacts holding one-time prekeys they took and did not use"),
    )
    warning: str = field(default="", metadata=_meta("what needs attention, in words"))
    last_error: str = ""
    owners: tuple[MailboxOwnerUsage, ...] = field(
        default=(), metadata=_meta("mailbox: usage per owner")
    )


@dataclass(frozen=True)
class MailboxRef:
    mailbox: str = field(metadata=_meta("the mailbox's onion address"))


@dataclass(frozen=True)
class Wiped:
    envelopes: int = field(metadata=_meta("envelopes deleted"))
    owners: int = field(default=0, metadata=_meta("owner spaces deleted"))


# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateChange:
    """A message or file moved on (``bytes``/``size`` while it moves)."""

    id: str
    state: MessageState
    bytes: int | None = None
    size: int | None = None
    reason: int | None = field(
        default=None,
        metadata=_meta(
            "when refused: the contact's refusal code, or 256 (this home moved and the "
            "contact, told of it, takes nothing from the old address)"
        ),
    )


@dataclass(frozen=True)
class PeerChange:
    """A contact became reachable or unreachable."""

    contact: str
    address: str
    reachable: bool
    last_error: str = ""


@dataclass(frozen=True)
class GroupChange:
    """A team channel's log took operations: ours, or a member's."""

    id: str = field(metadata=_meta("the group's id, hex"))
    name: str
    head: str = field(metadata=_meta("the log head now, hex"))
    member: bool = field(metadata=_meta("whether we are still a member"))
    operations: int = field(metadata=_meta("operations in its log now"))
    contact: str | None = field(
        default=None, metadata=_meta("the contact the operations came from; null: ours")
    )


# What a subscription yields: the data of one event line, by its topic.
Event: TypeAlias = Message | StateChange | PeerChange | TorStatus | GroupChange

# topic -> the record its data is
# The topics a subscription may name, for type checkers (EVENTS is the table).
Topic: TypeAlias = Literal["message", "state", "peer", "tor", "group"]

EVENTS: Final[Mapping[str, type[Event]]] = {
    "message": Message,
    "state": StateChange,
    "peer": PeerChange,
    "tor": TorStatus,
    "group": GroupChange,
}
_TOPICS: Final[Mapping[type, str]] = {cls: topic for topic, cls in EVENTS.items()}


def topic_of(record: object) -> str:
    topic = _TOPICS.get(type(record))
    if topic is None:
        raise OnionpostError(f"{type(record).__name__} is not an event")
    return topic


# -- requests -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request(Generic[R]):
    """A request's parameters; a subclass names the method, and its type
    parameter the result (``RESULT``, set from it)."""

    METHOD: ClassVar[str]
    RESULT: ClassVar[Any]  # a record type, or tuple[record, ...]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            if get_origin(base) is Request:
                (cls.RESULT,) = get_args(base)


@dataclass(frozen=True)
class Whoami(Request[Identity]):
    METHOD = "whoami"


@dataclass(frozen=True)
class GetStatus(Request[Status]):
    METHOD = "status"


@dataclass(frozen=True)
class ContactAdd(Request[ContactRef]):
    METHOD = "contact_add"
    card: str = field(metadata=_meta("the card, one line"))
    name: str | None = field(
        default=None, metadata=_meta("what to call the contact; default the name on the card")
    )
    endorsement: str | None = field(
        default=None,
        metadata=_meta(
            "the endorsement line of a card bundle (trust.md §7.5): checked for the card's "
            "address and recorded as the contact's endorsement before any session"
        ),
    )


@dataclass(frozen=True)
class ContactList(Request[tuple[Contact, ...]]):
    METHOD = "contact_list"


@dataclass(frozen=True)
class ContactShow(Request[ContactDetail]):
    METHOD = "contact_show"
    name: str = field(
        metadata=_meta(
            "the contact's name, or its address; a member a group introduced: its card's "
            "name or address"
        )
    )


@dataclass(frozen=True)
class ContactRemove(Request[ContactRemoved]):
    METHOD = "contact_remove"
    name: str


@dataclass(frozen=True)
class ContactRename(Request[ContactRef]):
    METHOD = "contact_rename"
    name: str
    new_name: str = field(
        metadata=_meta("what to call the contact from now on; its history and outbox stay")
    )


@dataclass(frozen=True)
class ContactRequireEndorsement(Request[ContactRef]):
    METHOD = "contact_require_endorsement"
    name: str
    required: bool | None = field(
        default=None,
        metadata=_meta(
            "true: send nothing to the contact until it presents a valid agency "
            "endorsement; false: not (even if config.toml requires it); null: as config.toml says"
        ),
    )


@dataclass(frozen=True)
class ContactVerify(Request[SafetyNumber]):
    METHOD = "contact_verify"
    name: str
    confirm: str | None = field(
        default=None,
        metadata=_meta(
            "the number the contact read out (spaces ignored): if it matches, the contact is "
            "marked verified and the evidence log records it; if not, error code config"
        ),
    )


@dataclass(frozen=True)
class TrustAdd(Request[TrustAnchor]):
    METHOD = "trust_add"
    anchor: str = field(metadata=_meta("the anchor's text, `onionpost-anchor1:...`"))
    safety_number: str = field(
        metadata=_meta(
            "the anchor's safety number as the agency read it to you (spaces ignored); "
            "installed only if it is the anchor's"
        )
    )


@dataclass(frozen=True)
class TrustList(Request[tuple[TrustAnchor, ...]]):
    METHOD = "trust_list"


@dataclass(frozen=True)
class TrustRemove(Request[TrustAnchor]):
    METHOD = "trust_remove"
    anchor: str = field(metadata=_meta("the agency's name or the anchor's fingerprint"))


@dataclass(frozen=True)
class TrustEndorsementInstall(Request[Endorsement]):
    METHOD = "trust_endorsement_install"
    proof: str = field(
        metadata=_meta(
            "base64 of the endorsement proof `trust endorse` wrote; installed only if the "
            "anchor of its agency is installed and it endorses this endpoint's address and key"
        )
    )


@dataclass(frozen=True)
class TrustRotate(Request[RotationAnnounced]):
    """Announce this endpoint's move to a new address (trust.md §6): every
    contact is told in its next session, or through its mailbox, and moves
    over by itself."""

    METHOD = "trust_rotate"
    card: str = field(metadata=_meta("the contact card of the new address"))
    proof: str = field(
        metadata=_meta(
            "base64 of the new address's endorsement proof, by this endpoint's agency, "
            "whose `replaces` is this endpoint's address"
        )
    )


@dataclass(frozen=True)
class TrustRevocationsImport(Request[RevocationsImported]):
    METHOD = "trust_revocations_import"
    bundle: str = field(
        metadata=_meta(
            "base64 of the revocation list file `trust revoke` or `registrar export-list` "
            "wrote; held only if it "
            "verifies under the installed anchor of its agency and is newer than the list held"
        )
    )


@dataclass(frozen=True)
class TrustEnrol(Request[Endorsement]):
    """Enrol with the agency's registrar of an enrolment code: install the
    endorsement it signs, then fetch the agency's list from it every
    `trust_refresh` and renew the endorsement in time (trust.md §8)."""

    METHOD = "trust_enrol"
    code: str = field(metadata=_meta("the registrar's enrolment code"))
    again: bool = field(
        default=False,
        metadata=_meta(
            "enrol although this endpoint holds an endorsement in force: the "
            "code's name and unit replace its own (else refused, nothing sent)"
        ),
    )


@dataclass(frozen=True)
class ContactSetMaxLabel(Request[ContactLabels]):
    """Set the highest handling labels we send a contact (one per scheme; an
    empty list removes our limit). The contact's own advertised limit holds
    as well."""

    METHOD = "contact_set_max_label"
    name: str
    labels: tuple[str, ...] = field(metadata=_meta("canonical or published syntax", _label_list))


_CONTACT_DOC: Final = "the contact's name, or its onion address"


@dataclass(frozen=True)
class SendText(Request[Queued]):
    METHOD = "send_text"
    contact: str = field(metadata=_meta(_CONTACT_DOC))
    body: str = field(metadata=_meta("1 to 60 000 bytes of UTF-8", _text_body))
    content_type: str = field(default="text/plain", metadata=_meta("at most 128 bytes"))
    id: str | None = field(
        default=None,
        metadata=_meta(
            "32 hex digits the client chose (16 random bytes); the same id again is the same "
            "message, answered with the same result (a different contact or body under it is "
            "`config`); absent: the daemon chooses",
            _message_id,
        ),
    )
    label: str | None = field(default=None, metadata=_meta(_LABEL_DOC, _label_text))


@dataclass(frozen=True)
class TextItem:
    """One text of a ``send_texts`` call."""

    body: str = field(metadata=_meta("1 to 60 000 bytes of UTF-8", _text_body))
    content_type: str = field(default="text/plain", metadata=_meta("at most 128 bytes"))
    id: str | None = field(default=None, metadata=_meta("as for `send_text`", _message_id))


def _text_items(value: object) -> str | None:
    if isinstance(value, tuple) and 0 < len(value) <= MAX_TEXTS:
        return None
    return f"must be a list of 1 to {MAX_TEXTS} texts"


@dataclass(frozen=True)
class SendTexts(Request[tuple[Queued, ...]]):
    """Many texts to one contact in one call: each is durably queued when the
    answer comes (one commit for all), in order, each idempotent on its id as
    with `send_text`."""

    METHOD = "send_texts"
    contact: str = field(metadata=_meta(_CONTACT_DOC))
    texts: tuple[TextItem, ...] = field(
        metadata=_meta(f"1 to {MAX_TEXTS}; the request line at most 1 MiB", _text_items)
    )
    label: str | None = field(
        default=None,
        metadata=_meta("the label of every text in the call; " + _LABEL_DOC, _label_text),
    )


@dataclass(frozen=True)
class SendFile(Request[Queued]):
    METHOD = "send_file"
    contact: str = field(metadata=_meta(_CONTACT_DOC))
    path: str = field(metadata=_meta("absolute", _absolute_path))
    id: str | None = field(
        default=None,
        metadata=_meta(
            "as for `send_text`: the same id again with the same contact and file is the same file",
            _message_id,
        ),
    )
    label: str | None = field(default=None, metadata=_meta(_LABEL_DOC, _label_text))


@dataclass(frozen=True)
class Forward(Request[Queued]):
    """Send a stored message or file (either direction) on to another
    contact, as a new message under a new id. Its label is kept, or raised
    by `label`, never lowered; TLP:RED goes only back within its audience;
    the recipient's limits hold as for a send (error `label`)."""

    METHOD = "forward"
    id: str = field(metadata=_meta("the message's 32 hex digits", _message_id))
    to: str = field(metadata=_meta("the contact to send it to"))
    contact: str | None = field(
        default=None, metadata=_meta("the contact it came from or went to, when ids clash")
    )
    label: str | None = field(
        default=None,
        metadata=_meta("a label at least the source's; absent: the source's", _label_text),
    )


@dataclass(frozen=True)
class Inbox(Request[tuple[Message, ...]]):
    METHOD = "inbox"
    after: int = field(default=0, metadata=_meta("only messages with a greater `seq`", _seq))
    limit: int = field(default=100, metadata=_meta(f"1 to {MAX_INBOX_LIMIT}", _limit))
    unread: bool = field(default=False, metadata=_meta("only messages not yet read"))


@dataclass(frozen=True)
class Outbox(Request[tuple[Message, ...]]):
    METHOD = "outbox"
    contact: str | None = field(default=None, metadata=_meta("only what waits for this contact"))
    limit: int = field(default=100, metadata=_meta(f"1 to {MAX_INBOX_LIMIT}", _limit))


@dataclass(frozen=True)
class GetMessage(Request[Message]):
    METHOD = "message"
    id: str = field(metadata=_meta("hex", _hex_id))
    contact: str | None = field(
        default=None, metadata=_meta("whose, when two contacts sent the same id")
    )


@dataclass(frozen=True)
class MarkRead(Request[Marked]):
    METHOD = "mark_read"
    ids: tuple[str, ...] = field(metadata=_meta(f"hex, at most {MAX_IDS}", _hex_ids))
    contact: str | None = field(
        default=None, metadata=_meta("whose, when two contacts sent the same id")
    )


@dataclass(frozen=True)
class ExportFile(Request[Exported]):
    METHOD = "export_file"
    id: str = field(metadata=_meta("hex", _hex_id))
    dest: str = field(
        metadata=_meta("absolute; a directory gets the file's name made safe", _absolute_path)
    )
    contact: str | None = field(
        default=None, metadata=_meta("whose, when two contacts sent the same id")
    )


@dataclass(frozen=True)
class LogShow(Request[LogEntries]):
    METHOD = "log_show"
    start: int = field(default=0, metadata=_meta("the first entry's index", _seq))
    limit: int = field(default=100, metadata=_meta(f"1 to {MAX_INBOX_LIMIT}", _limit))


@dataclass(frozen=True)
class LogVerify(Request[LogReport]):
    METHOD = "log_verify"


@dataclass(frozen=True)
class EvidenceExport(Request[EvidenceExported]):
    METHOD = "evidence_export"
    dest: str = field(
        metadata=_meta("absolute path of the bundle (a .zip) to write", _absolute_path)
    )
    contact: str | None = field(default=None, metadata=_meta("one contact's messages"))
    since_ms: int | None = field(
        default=None,
        metadata=_meta(f"messages created at or after (ms, 0 to {_MAX_TIME_MS})", _time_ms),
    )
    until_ms: int | None = field(
        default=None, metadata=_meta(f"messages created before (ms, 0 to {_MAX_TIME_MS})", _time_ms)
    )
    ids: tuple[str, ...] = field(
        default=(), metadata=_meta(f"these messages only (hex, at most {MAX_IDS})", _hex_ids)
    )
    group: str | None = field(
        default=None,
        metadata=_meta("one team channel's messages, both ways (its name or id); not with ids"),
    )


@dataclass(frozen=True)
class Retry(Request[Retried]):
    METHOD = "retry"
    contact: str | None = field(default=None, metadata=_meta("one contact, or every one"))


@dataclass(frozen=True)
class Subscribe(Request[Subscribed]):
    METHOD = "subscribe"
    topics: tuple[str, ...] = field(
        metadata=_meta("`message`, `state`, `peer`, `tor`, `group`", _topics)
    )


def _members(value: object) -> str | None:
    if isinstance(value, tuple) and len(value) <= _MAX_LIST_MEMBERS:
        return None
    return f"must be a list of at most {_MAX_LIST_MEMBERS} contact names"


def _some_members(value: object) -> str | None:
    if isinstance(value, tuple) and 0 < len(value) <= _MAX_LIST_MEMBERS:
        return None
    return f"must be a list of 1 to {_MAX_LIST_MEMBERS} contact names"


@dataclass(frozen=True)
class ListCreate(Request[DistributionList]):
    METHOD = "list_create"
    name: str = field(metadata=_meta("the list's name, unique in any letter case"))
    members: tuple[str, ...] = field(
        default=(), metadata=_meta(f"contact names, at most {_MAX_LIST_MEMBERS}", _members)
    )


@dataclass(frozen=True)
class ListAdd(Request[DistributionList]):
    METHOD = "list_add"
    name: str
    members: tuple[str, ...] = field(
        metadata=_meta("contact names not yet on the list", _some_members)
    )


@dataclass(frozen=True)
class ListRemove(Request[DistributionList]):
    METHOD = "list_remove"
    name: str
    members: tuple[str, ...] = field(metadata=_meta("contact names on the list", _some_members))


@dataclass(frozen=True)
class ListDelete(Request[DistributionList]):
    METHOD = "list_delete"
    name: str


@dataclass(frozen=True)
class ListShow(Request[DistributionList]):
    METHOD = "list_show"
    name: str


@dataclass(frozen=True)
class ListList(Request[tuple[DistributionList, ...]]):
    METHOD = "list_list"


@dataclass(frozen=True)
class ListSendText(Request[ListSent]):
    """One text to every member of a list, a copy each, all queued in one commit."""

    METHOD = "list_send_text"
    list: str
    body: str = field(metadata=_meta("1 to 60 000 bytes of UTF-8", _text_body))
    content_type: str = field(default="text/plain", metadata=_meta("at most 128 bytes"))
    id: str | None = field(
        default=None,
        metadata=_meta(
            "the send's id, as for `send_text`: the same id again is the same send "
            "(nothing more is queued)",
            _message_id,
        ),
    )
    label: str | None = field(
        default=None,
        metadata=_meta(
            _LABEL_DOC + "; every copy carries it, checked for every member", _label_text
        ),
    )


@dataclass(frozen=True)
class ListSendFile(Request[ListSent]):
    """One file to every member of a list: an encrypted copy and an offer
    each, all queued in one commit."""

    METHOD = "list_send_file"
    list: str
    path: str = field(metadata=_meta("absolute", _absolute_path))
    id: str | None = field(
        default=None, metadata=_meta("the send's id, as for `list_send_text`", _message_id)
    )
    label: str | None = field(
        default=None,
        metadata=_meta(
            _LABEL_DOC + "; every copy carries it, checked for every member", _label_text
        ),
    )


def _group_members(value: object) -> str | None:
    if isinstance(value, tuple) and len(value) < _MAX_GROUP_MEMBERS:
        return None
    return f"must be a list of at most {_MAX_GROUP_MEMBERS - 1} contact names"


def _some_group_members(value: object) -> str | None:
    if isinstance(value, tuple) and 0 < len(value) < _MAX_GROUP_MEMBERS:
        return None
    return f"must be a list of 1 to {_MAX_GROUP_MEMBERS - 1} names"


@dataclass(frozen=True)
class GroupCreate(Request[Group]):
    """A new team channel, with us as its first admin and these contacts in it."""

    METHOD = "group_create"
    name: str = field(metadata=_meta(f"at most {_MAX_GROUP_NAME} characters"))
    members: tuple[str, ...] = field(default=(), metadata=_meta("contact names", _group_members))


@dataclass(frozen=True)
class GroupAdd(Request[Group]):
    """Admins: add contacts to a group."""

    METHOD = "group_add"
    group: str = field(metadata=_meta("the group's name, or its id in hex"))
    members: tuple[str, ...] = field(metadata=_meta("contact names", _some_group_members))


@dataclass(frozen=True)
class GroupRemove(Request[Group]):
    """Admins: remove members (removals win over concurrent adds)."""

    METHOD = "group_remove"
    group: str
    members: tuple[str, ...] = field(
        metadata=_meta("contact names, or members' card names", _some_group_members)
    )


@dataclass(frozen=True)
class GroupLeave(Request[Group]):
    METHOD = "group_leave"
    group: str


@dataclass(frozen=True)
class GroupRename(Request[Group]):
    """Admins: rename a group."""

    METHOD = "group_rename"
    group: str
    name: str


@dataclass(frozen=True)
class GroupPromote(Request[Group]):
    """Admins: make a member an admin."""

    METHOD = "group_promote"
    group: str
    member: str = field(metadata=_meta("a contact name, or a member's card name"))


@dataclass(frozen=True)
class GroupDemote(Request[Group]):
    """Admins: make an admin a plain member."""

    METHOD = "group_demote"
    group: str
    member: str


@dataclass(frozen=True)
class GroupShow(Request[Group]):
    METHOD = "group_show"
    group: str


@dataclass(frozen=True)
class GroupList(Request[tuple[Group, ...]]):
    METHOD = "group_list"


@dataclass(frozen=True)
class GroupSendText(Request[GroupSent]):
    """One text to every other member of a group at its present head, a copy
    each, all queued in one commit."""

    METHOD = "group_send_text"
    group: str
    body: str = field(metadata=_meta("1 to 60 000 bytes of UTF-8", _text_body))
    content_type: str = field(default="text/plain", metadata=_meta("at most 128 bytes"))
    id: str | None = field(
        default=None,
        metadata=_meta("the send's id, as for `list_send_text`", _message_id),
    )
    label: str | None = field(
        default=None,
        metadata=_meta(
            _LABEL_DOC + "; every copy carries it, checked for every member", _label_text
        ),
    )


@dataclass(frozen=True)
class GroupSendFile(Request[GroupSent]):
    """One file to every other member of a group at its present head: an
    encrypted copy and an offer each, all queued in one commit."""

    METHOD = "group_send_file"
    group: str
    path: str = field(metadata=_meta("absolute", _absolute_path))
    id: str | None = field(
        default=None,
        metadata=_meta("the send's id, as for `list_send_text`", _message_id),
    )
    label: str | None = field(
        default=None,
        metadata=_meta(
            _LABEL_DOC + "; every copy carries it, checked for every member", _label_text
        ),
    )


def _expires(value: object) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 60 <= value <= 604_800:
        return "seconds from 60 to 604800"
    return None


@dataclass(frozen=True)
class MailboxCode(Request[SetupCode]):
    METHOD = "mailbox_code"
    expires: int = field(
        default=86_400,
        metadata=_meta("seconds the code stays valid (60 to 604800)", _expires),
    )


@dataclass(frozen=True)
class MailboxPair(Request[MailboxRef]):
    METHOD = "mailbox_pair"
    code: str = field(metadata=_meta("the mailbox's setup code"))


@dataclass(frozen=True)
class GetMailboxStatus(Request[MailboxStatus]):
    METHOD = "mailbox_status"


@dataclass(frozen=True)
class MailboxWipe(Request[Wiped]):
    METHOD = "mailbox_wipe"
    owner: str | None = field(
        default=None,
        metadata=_meta("mailbox: one owner's address (default every owner); owner: must be null"),
    )


def _code_expires(value: object) -> str | None:
    if not isinstance(value, int) or isinstance(value, bool) or not 60 <= value <= 604_800:
        return "seconds from 60 to 604800"
    return None


@dataclass(frozen=True)
class RegistrarCode(Request[EnrolmentCode]):
    """A registrar only: a one-time code for one endpoint to enrol with."""

    METHOD = "registrar_code"
    endpoint: str = field(
        metadata=_meta(
            "its name in the endorsement, e.g. `Field office 3`; empty with `replaces`: "
            "the old address's name and unit"
        )
    )
    unit: str = field(default="", metadata=_meta("its unit (may be empty)"))
    expires: int = field(
        default=3600, metadata=_meta("seconds the code stays valid (60 to 604800)", _code_expires)
    )
    replaces: str = field(
        default="",
        metadata=_meta(
            "an address this registrar enrolled: the enrolment moves it (trust.md §6, §8.2)"
        ),
    )
    from_revoked: bool = field(
        default=False, metadata=_meta("with `replaces`: move away from a revoked address too")
    )


@dataclass(frozen=True)
class RegistrarRevoke(Request[RegistrarState]):
    """A registrar only: revoke an address in the next list, logged."""

    METHOD = "registrar_revoke"
    address: str
    reason: str = field(default="", metadata=_meta("at most 64 bytes, in the list"))
    force: bool = field(
        default=False,
        metadata=_meta("revoke an address this registrar never enrolled (else refused)"),
    )


@dataclass(frozen=True)
class RegistrarList(Request[RegistrarState]):
    """A registrar only: its endpoints, its list and its log."""

    METHOD = "registrar_list"


@dataclass(frozen=True)
class RegistrarExportList(Request[RevocationListExport]):
    """A registrar only: its latest revocation list as a file, for endpoints
    of other agencies that hold its anchor (`trust revocations import`)."""

    METHOD = "registrar_export_list"


@dataclass(frozen=True)
class RegistrarDelegation(Request[RegistrarState]):
    """A registrar only: take the agency root's new delegation of its issuing
    key (`trust delegate`, trust.md §8.1), at once and keeping its state."""

    METHOD = "registrar_delegation"
    delegation: str = field(
        metadata=_meta(
            "base64 of the delegation `trust delegate` wrote; taken only if the root of the "
            "anchor held signed it, for this issuing key and agency, valid now and ending "
            "after the one held"
        )
    )


REQUESTS: Final[Mapping[str, type[Request[Any]]]] = {
    cls.METHOD: cls
    for cls in (
        Whoami,
        GetStatus,
        ContactAdd,
        ContactList,
        ContactShow,
        ContactRemove,
        ContactRename,
        ContactVerify,
        ContactRequireEndorsement,
        ContactSetMaxLabel,
        TrustAdd,
        TrustList,
        TrustRemove,
        TrustEndorsementInstall,
        TrustRotate,
        TrustRevocationsImport,
        TrustEnrol,
        SendText,
        SendTexts,
        SendFile,
        Forward,
        Inbox,
        Outbox,
        GetMessage,
        MarkRead,
        ExportFile,
        LogShow,
        LogVerify,
        EvidenceExport,
        Retry,
        Subscribe,
        MailboxCode,
        MailboxPair,
        GetMailboxStatus,
        MailboxWipe,
        RegistrarCode,
        RegistrarRevoke,
        RegistrarList,
        RegistrarExportList,
        RegistrarDelegation,
        ListCreate,
        ListAdd,
        ListRemove,
        ListDelete,
        ListShow,
        ListList,
        ListSendText,
        ListSendFile,
        GroupCreate,
        GroupAdd,
        GroupRemove,
        GroupLeave,
        GroupRename,
        GroupPromote,
        GroupDemote,
        GroupShow,
        GroupList,
        GroupSendText,
        GroupSendFile,
    )
}


# -- the codec ----------------------------------------------------------------------------


class _Shape(Exception):
    """Internal: a value does not fit; ``where`` names the field."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"'{where}' {problem}")


@dataclass(frozen=True)
class _Field:
    """What the codec needs of one field, worked out once per record type."""

    name: str
    hint: Any
    required: bool
    check: Check | None
    field: dataclasses.Field[Any]


def _fields(cls: type) -> tuple[_Field, ...]:
    """A record type's fields (``dataclasses.fields`` and type hints, cached:
    the codec runs on every request, reply and event)."""
    cached = _FIELDS.get(cls)
    if cached is None:
        hints = typing.get_type_hints(cls)
        cached = tuple(
            _Field(
                name=f.name,
                hint=hints[f.name],
                required=f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING,
                check=f.metadata.get("check"),
                field=f,
            )
            for f in dataclasses.fields(cls)
        )
        _FIELDS[cls] = cached
    return cached


_FIELDS: dict[type, tuple[_Field, ...]] = {}


def encode(record: Any) -> Any:
    """The JSON value of a record (or a list or tuple of them)."""
    encoder = _ENCODERS.get(type(record))
    if encoder is None:
        encoder = _ENCODERS[type(record)] = _encoder(type(record))
    return encoder(record)


def _same(value: Any) -> Any:
    return value


def _encoder(cls: type) -> Callable[[Any], Any]:
    """How a value of type ``cls`` is encoded, worked out once per type (the
    codec runs on every request, reply and event)."""
    if issubclass(cls, list | tuple):
        return lambda items: [encode(item) for item in items]
    if issubclass(cls, enum.Enum):
        return lambda member: member.value
    if dataclasses.is_dataclass(cls):
        fields = _fields(cls)
        # A field of a scalar type is its own JSON value (a StrEnum member in
        # a str field too: JSON writes it as its string).
        scalars = tuple(f.name for f in fields if f.hint in _SCALAR_HINTS)
        others = tuple(f.name for f in fields if f.hint not in _SCALAR_HINTS)
        if not others:
            return lambda record: {name: getattr(record, name) for name in scalars}

        def fields_of(record: Any) -> Any:
            value = {name: getattr(record, name) for name in scalars}
            for name in others:
                value[name] = encode(getattr(record, name))
            return {f.name: value[f.name] for f in fields}  # in declaration order

        return fields_of
    return _same


_SCALAR_HINTS: Final = frozenset(
    {str, int, bool, float, str | None, int | None, bool | None, float | None}
)


_ENCODERS: dict[type, Callable[[Any], Any]] = {}

# A value's decoder: (JSON value, where it is) -> the value, or _Shape.
_Decoder = Callable[[object, str], Any]


def _from_json(hint: Any, value: object, where: str) -> Any:
    return _decoder(hint)(value, where)


def _decoder(hint: Any) -> _Decoder:
    found = _DECODERS.get(hint)
    if found is None:
        found = _DECODERS[hint] = _make_decoder(hint)
    return found


_DECODERS: dict[Any, _Decoder] = {}


def _make_decoder(hint: Any) -> _Decoder:
    """The decoder of ``hint``, worked out once per hint (no reflection per value)."""
    origin = get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        options = [a for a in get_args(hint) if a is not type(None)]
        nullable = type(None) in get_args(hint)
        inner = _decoder(options[0])

        def union(value: object, where: str) -> Any:
            if value is None:
                if nullable:
                    return None
                raise _Shape(where, "is missing")
            return inner(value, where)

        return union
    if origin is tuple:
        (item_hint, _) = get_args(hint)
        item = _decoder(item_hint)

        def items(value: object, where: str) -> Any:
            if not isinstance(value, list):
                raise _Shape(where, "must be a list")
            return tuple(item(v, f"{where}[{i}]") for i, v in enumerate(value))

        return items
    if hint is bool:

        def boolean(value: object, where: str) -> Any:
            if type(value) is not bool:
                raise _Shape(where, "must be true or false")
            return value

        return boolean
    if hint is int:

        def integer(value: object, where: str) -> Any:
            if type(value) is not int:
                raise _Shape(where, "must be an integer")
            return value

        return integer
    if hint is float:

        def number(value: object, where: str) -> Any:
            if type(value) not in (int, float):
                raise _Shape(where, "must be a number")
            return float(value)  # type: ignore[arg-type]

        return number
    if hint is str:

        def text(value: object, where: str) -> Any:
            if not isinstance(value, str):
                raise _Shape(where, "must be a string")
            return value

        return text
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = hint

        def member(value: object, where: str) -> Any:
            try:
                return members(value)
            except ValueError:
                raise _Shape(where, f"must be one of {[e.value for e in members]}") from None

        return member
    if dataclasses.is_dataclass(hint):
        cls = hint
        return lambda value, where: _record(cls, value, where)  # type: ignore[arg-type]

    def unknown(value: object, where: str) -> Any:
        raise TypeError(f"no JSON form for {hint!r}")  # a bug in the records above

    return unknown


# Per record type: each field's name, whether it is required, its decoder and check.
_Plan = tuple[tuple[str, bool, _Decoder, Check | None], ...]
_PLANS: dict[type, _Plan] = {}
_ABSENT: Final = object()


def _plan(cls: type) -> _Plan:
    found = _PLANS.get(cls)
    if found is None:
        found = _PLANS[cls] = tuple(
            (f.name, f.required, _decoder(f.hint), f.check) for f in _fields(cls)
        )
    return found


def _record(cls: type[T], data: object, where: str) -> T:
    if not isinstance(data, dict):
        raise _Shape(where, "must be an object")
    values: dict[str, Any] = {}
    for name, required, decoder, check in _plan(cls):
        raw = data.get(name, _ABSENT)
        if raw is _ABSENT or (raw is None and not required):
            if required:
                raise _Shape(f"{where}.{name}" if where else name, "is missing")
            continue
        here = f"{where}.{name}" if where else name
        value = decoder(raw, here)
        if check is not None:
            problem = check(value)
            if problem is not None:
                raise _Shape(here, problem)
        values[name] = value
    return cls(**values)


def decode(cls: type[T], data: object, *, error: Callable[[str], Exception], what: str = "") -> T:
    """The record ``cls`` from JSON ``data``; ``error(message)`` is raised when
    it does not fit (the client passes a malformed-reply error)."""
    try:
        return _record(cls, data, what)
    except _Shape as exc:
        raise error(str(exc)) from None


def decode_result(request: Request[R], data: object, *, error: Callable[[str], Exception]) -> R:
    """The result of ``request`` from the JSON of its reply's ``result``."""
    try:
        return cast(R, _from_json(type(request).RESULT, data, "result"))
    except _Shape as exc:
        raise error(str(exc)) from None


def decode_event(topic: object, data: object, *, error: Callable[[str], Exception]) -> Event:
    """The record of an event line (``{"event": topic, "data": {...}}``)."""
    cls = EVENTS.get(topic) if isinstance(topic, str) else None
    if cls is None:
        raise error(f"unknown event {str(topic)[:64]!r}")
    return decode(cls, data, error=error, what=f"{topic} event")


def decode_request(
    method: object, params: object, *, error: Callable[[str], Exception]
) -> Request[Any]:
    """The request for ``method`` with ``params`` checked; ``error`` when it is
    unknown, a parameter is unknown, missing, of the wrong type or out of range."""
    cls = REQUESTS.get(method) if isinstance(method, str) else None
    if cls is None:
        raise error(f"unknown method {str(method)[:64]!r}")
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise error("'params' must be an object")
    fields = _fields(cls)
    unknown = sorted(set(params) - {f.name for f in fields})
    if unknown:
        raise error(f"{cls.METHOD} takes no parameter {str(unknown[0])[:64]!r}")
    try:
        return _record(cls, params, "")
    except _Shape as exc:
        raise error(f"{cls.METHOD}: {exc}") from None


# -- documentation ------------------------------------------------------------------------


def _type_name(hint: Any) -> str:
    origin = get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        inner = [a for a in get_args(hint) if a is not type(None)]
        return f"{_type_name(inner[0])} or null"
    if origin is tuple:
        return f"list of {_type_name(get_args(hint)[0])}"
    if hint is MessageState:
        return "state"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "string: " + " or ".join(f"`{e.value}`" for e in hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return f"`{hint.__name__}`"
    return {str: "string", int: "integer", float: "number", bool: "boolean"}[hint]


def _fields_table(cls: type) -> list[str]:
    rows = ["| field | type | required | meaning |", "|---|---|---|---|"]
    for f in _fields(cls):
        default = "" if f.required else f" (default `{encode(f.field.default)!r}`)"
        meaning = f.field.metadata.get("doc", "") + default.replace("'", '"')
        rows.append(
            f"| `{f.name}` | {_type_name(f.hint)} | {'yes' if f.required else 'no'} "
            f"| {meaning.strip()} |"
        )
    return rows


def _records_in(hint: Any, found: dict[type, None]) -> None:
    """Every record type ``hint`` names, itself first, then its fields' (in order)."""
    for arg in get_args(hint):
        _records_in(arg, found)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and hint not in found:
        found[hint] = None
        for f in _fields(hint):
            _records_in(f.hint, found)


def documented_records() -> tuple[type, ...]:
    """The records a result or an event is made of, in the order of
    :data:`REQUESTS` then :data:`EVENTS` (local-api.md describes each)."""
    found: dict[type, None] = {}
    for request in REQUESTS.values():
        _records_in(request.RESULT, found)
    for event in EVENTS.values():
        _records_in(event, found)
    return tuple(found)


# The markers around the generated part of protocol-spec/local-api.md.
GENERATED_BEGIN: Final = (
    "<!-- generated from src/onionpost/api.py by onionpost.api.markdown_tables(); do not edit -->"
)
GENERATED_END: Final = "<!-- end of the generated tables -->"


def markdown_tables() -> str:
    """The tables of ``protocol-spec/local-api.md`` (methods, records, events, states)."""
    out = ["### Methods", "", "| method | result |", "|---|---|"]
    for method, cls in REQUESTS.items():
        out.append(f"| `{method}` | {_type_name(cls.RESULT)} |")
    for method, cls in REQUESTS.items():
        out += ["", f"#### `{method}` parameters", ""]
        out += _fields_table(cls) if _fields(cls) else ["none"]
    out += ["", "### Results and event data", ""]
    for record in documented_records():
        out += [f"#### `{record.__name__}`", ""]
        if record.__doc__ and not record.__doc__.startswith(record.__name__ + "("):
            out += [" ".join(record.__doc__.split()), ""]
        out += [*_fields_table(record), ""]
    out += ["### Events", "", "| topic | data |", "|---|---|"]
    out += [f"| `{topic}` | `{cls.__name__}` |" for topic, cls in EVENTS.items()]
    out += ["", "### Message states", "", "| state | meaning |", "|---|---|"]
    meanings = {
        MessageState.QUEUED: "outgoing, durably queued, not yet sent in a session",
        MessageState.SENDING: "outgoing file, chunks going out (an event with `bytes`/`size`)",
        MessageState.SENT: "outgoing, sent, not yet acknowledged",
        MessageState.DEPOSITED: "outgoing, in the contact's mailbox, not yet acknowledged",
        MessageState.DELIVERED: "outgoing, the contact has it stored",
        MessageState.READ: "read: by the contact (outgoing) or by us (incoming)",
        MessageState.EXPIRED: (
            "outgoing, not delivered before `message_expiry`, or its contact removed first; final"
        ),
        MessageState.REFUSED: "outgoing file, refused by the contact for good (`reason`); final",
        MessageState.RECEIVING: "incoming file, arriving",
        MessageState.RECEIVED: "incoming, stored, not yet read",
    }
    out += [f"| `{state.value}` | {meanings[state]} |" for state in MessageState]
    return "\n".join(out) + "\n"
