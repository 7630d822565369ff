"""The one exception tree of onionpost.

Every error that leaves an onionpost API is an :class:`OnionpostError`.
Errors raised by dependencies (pynacl, cryptography, msgpack, stem, trio) are
caught where they are touched and re-raised as one of these with
``raise ... from exc``::

    OnionpostError
    ├── ConfigError                  bad configuration or arguments given to us
    │   ├── UnlockError              wrong passphrase or key file for the secrets file
    │   ├── CardError                a contact card that is malformed or wrongly signed
    │   ├── UnknownContactError      no contact has that name; has .name
    │   ├── NotFoundError            no message or file has that id
    │   └── LabelError               a handling label malformed, unknown or refused; has .reason
    ├── LocalProtocolError           we misused a protocol object (a bug or API misuse)
    │   └── NonceExhaustedError      a CipherState ran out of nonces (Noise §5.1)
    ├── RemoteProtocolError          the peer sent something wrong; carries a CloseCode
    │   ├── AuthenticationError      any authentication failure; all look the same
    │   │   └── DecryptError         an AEAD tag did not verify
    │   ├── FramingError             a frame that is too long, truncated or unpadded
    │   ├── MessageDecodeError       msgpack that is not one of our records
    │   └── VersionError             an unknown or unsupported protocol version
    ├── SelfTestError                a known-answer test failed at start-up
    ├── TransportError               a stream broke, ended or timed out; has .reason
    │   └── NotConfirmedError        a send was never answered; has .message_id
    ├── TorError                     tor could not be launched, reached or used
    │   ├── TorControlError          the control connection failed or refused us
    │   ├── TorLaunchError           our own tor did not start
    │   └── DialError                a SOCKS connect to an onion service failed; has .reason
    ├── StoreError                   the local store is unreadable, locked or corrupt
    │   ├── StoreLockedError         another process has the store open
    │   ├── StoreTamperedError       the store was altered (or damaged) without its key
    │   ├── NoSpaceError             the disk, or the configured disk budget, is full
    │   ├── QuotaError               a contact is at one of its quotas; has .quota, .limit
    │   ├── FileTooLargeError        a file is larger than the configured maximum
    │   └── HashMismatchError        a received file does not match its offered BLAKE2b
    ├── MailboxRefusedError          a mailbox refused a request; has .code (MbCode), .detail
    ├── VerificationError            a signed note, proof, log or export failed to verify; .what
    ├── TrustError                   an agency statement or anchor was refused; has .what
    │   ├── MalformedStatementError  not an agency statement or anchor of ours
    │   ├── ForgedStatementError     a statement whose signatures do not verify
    │   ├── StatementRefusedError    a genuine statement that may not be used; has .reason
    │   ├── RolledBackError          a revocation list older than the one held
    │   └── ConflictingStatementsError  two signed statements that cannot both be
    │                                true (a forked log); has .first, .second
    ├── GroupError                   a group operation was refused; has .reason (GroupReason), .op
    │   ├── GroupDecodeError         not a well-formed, canonical operation (MALFORMED)
    │   ├── GroupSignatureError      its signature does not verify (BAD_SIGNATURE)
    │   ├── GroupNotAllowedError     its author may not do that at its parents (NOT_ALLOWED)
    │   ├── GroupReplayError         the log holds it already (REPLAYED)
    │   ├── GroupMissingParentError  a parent is not in the log; has .missing (MISSING_PARENT)
    │   ├── GroupOrderError          its author's earlier operation is not its ancestor
    │   ├── GroupForkError           its author signed another operation of that seq; .other
    │   ├── GroupUnknownError        no log of that group here (UNKNOWN_GROUP)
    │   └── GroupBoundError          a bound of groups.md §Bounds is reached (BOUND)
    ├── DaemonNotRunningError        no daemon answers on the local API socket
    └── ApiError                     the daemon refused a local API request; has .code

Errors carry structured fields (``close_code``, ``state``) rather than only
text, and their text never contains key material or message contents.
"""

from __future__ import annotations

import enum
from typing import Literal, TypeAlias

__all__ = [
    "ApiError",
    "AuthenticationError",
    "CardError",
    "CloseCode",
    "ConfigError",
    "DaemonNotRunningError",
    "DecryptError",
    "DialError",
    "ConflictingStatementsError",
    "FileTooLargeError",
    "ForgedStatementError",
    "FramingError",
    "GroupBoundError",
    "GroupDecodeError",
    "GroupError",
    "GroupForkError",
    "GroupMissingParentError",
    "GroupNotAllowedError",
    "GroupOrderError",
    "GroupReason",
    "GroupRule",
    "GroupReplayError",
    "GroupSignatureError",
    "GroupUnknownError",
    "HashMismatchError",
    "LabelError",
    "LabelReason",
    "LocalProtocolError",
    "MailboxRefusedError",
    "MalformedStatementError",
    "MessageDecodeError",
    "NoSpaceError",
    "NonceExhaustedError",
    "NotConfirmedError",
    "NotFoundError",
    "OnionpostError",
    "QuotaError",
    "RemoteProtocolError",
    "RolledBackError",
    "SelfTestError",
    "StatementRefusedError",
    "StoreError",
    "StoreLockedError",
    "StoreTamperedError",
    "TorControlError",
    "TorError",
    "TorLaunchError",
    "TransportError",
    "TrustError",
    "TransportReason",
    "UnknownContactError",
    "VerificationError",
    "VersionError",
]


class CloseCode(enum.IntEnum):
    """Reasons carried by the wire protocol's authenticated close (spec §Errors)."""

    NORMAL = 0
    GOING_AWAY = 1
    PROTOCOL_ERROR = 2
    AUTHENTICATION_FAILED = 3
    UNSUPPORTED_VERSION = 4
    MESSAGE_TOO_LARGE = 5
    BAD_MESSAGE = 6
    RATE_LIMITED = 7
    TIMEOUT = 8
    INTERNAL_ERROR = 9
    QUOTA_EXCEEDED = 10


class OnionpostError(Exception):
    """Root of every error onionpost raises."""


class ConfigError(OnionpostError):
    """Configuration or arguments given to onionpost are invalid."""


class UnknownContactError(ConfigError):
    """No contact has this name (local API code ``unknown-contact``)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"unknown contact {name!r}")
        self.name = name


class NotFoundError(ConfigError):
    """No message or file has this id (local API code ``not-found``)."""


class LabelReason(enum.StrEnum):
    """Why a handling label was refused (spec.md §Handling labels)."""

    MALFORMED = "malformed"  # not the syntax of its scheme
    UNKNOWN_SCHEME = "unknown-scheme"  # no scheme of that name is known here
    UNKNOWN_LEVEL = "unknown-level"  # a level or caveat its scheme does not have
    ABOVE_LIMIT = "above-limit"  # higher than the recipient accepts
    NOT_ACCEPTED = "not-accepted"  # the recipient accepts no label of that scheme
    LOWERED = "lowered"  # a copy would carry a lower label than its source
    OUTSIDE_AUDIENCE = "outside-audience"  # TLP:RED to someone not in its audience
    OUTSIDE_ORGANISATION = "outside-organisation"  # AMBER+STRICT beyond the organisation
    NOT_EXPORTABLE = "not-exportable"  # policy forbids exporting it


class LabelError(ConfigError):
    """A handling label is malformed, unknown, or its policy refuses the
    operation (local API code ``label``). ``reason`` is a :class:`LabelReason`;
    ``label`` the label's text (never a message's contents)."""

    def __init__(self, message: str, *, reason: LabelReason, label: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.label = label


class UnlockError(ConfigError):
    """The secrets file did not open: wrong passphrase, wrong key file, or altered."""


class CardError(ConfigError):
    """A contact card is malformed, of an unknown version, or not validly signed."""


class LocalProtocolError(OnionpostError):
    """We used a protocol object in a way its state does not allow."""

    def __init__(self, message: str, *, state: object = None) -> None:
        super().__init__(message)
        self.state = state


class NonceExhaustedError(LocalProtocolError):
    """A CipherState reached nonce 2^64-1, which Noise reserves (§5.1)."""


class RemoteProtocolError(OnionpostError):
    """The peer sent bytes that break the protocol.

    ``close_code`` says how the connection is to be closed; ``state`` is the
    protocol state we were in, when known.
    """

    default_close_code = CloseCode.PROTOCOL_ERROR

    def __init__(
        self,
        message: str,
        *,
        close_code: CloseCode | None = None,
        state: object = None,
    ) -> None:
        super().__init__(message)
        self.close_code = self.default_close_code if close_code is None else close_code
        self.state = state


class AuthenticationError(RemoteProtocolError):
    """Authentication failed. The text is deliberately the same for every cause."""

    default_close_code = CloseCode.AUTHENTICATION_FAILED


class DecryptError(AuthenticationError):
    """An AEAD tag did not verify."""


class FramingError(RemoteProtocolError):
    """A frame was too long, truncated, or badly padded."""

    default_close_code = CloseCode.MESSAGE_TOO_LARGE


class MessageDecodeError(RemoteProtocolError):
    """A decrypted record is not one of the messages we know."""

    default_close_code = CloseCode.BAD_MESSAGE


class VersionError(RemoteProtocolError):
    """The peer speaks a protocol version we do not."""

    default_close_code = CloseCode.UNSUPPORTED_VERSION


class SelfTestError(OnionpostError):
    """A known-answer self-test failed; nothing may run on these primitives."""


TransportReason: TypeAlias = Literal["timeout", "refused", "ended", "broken"]
"""Why a stream or session went away (:attr:`TransportError.reason`).

``timeout``: a deadline passed before the other side answered. ``refused``:
the other side dropped us before the session was of any use (a responder
that will not talk to us). ``ended``: the stream ended cleanly but without
the session's Close. ``broken``: the stream failed, or the session had
already failed or closed when it was used."""


class TransportError(OnionpostError):
    """The underlying stream broke, ended early, or timed out.

    ``reason`` says which (:data:`TransportReason`), so that no caller reads
    the message to tell them apart.
    """

    def __init__(self, message: str, *, reason: TransportReason = "broken") -> None:
        super().__init__(message)
        self.reason: TransportReason = reason


class NotConfirmedError(TransportError):
    """A send was made but never answered: the message may be queued or not.

    ``message_id`` is the id it was sent under; asking for that id (the
    ``message`` request) tells, and sending it again under the same id
    cannot send it twice.
    """

    def __init__(self, message: str, *, message_id: str) -> None:
        super().__init__(message, reason="timeout")
        self.message_id = message_id


class TorError(OnionpostError):
    """Tor could not be launched, controlled or used."""


class TorControlError(TorError):
    """The control connection failed or refused our authentication."""


class TorLaunchError(TorError):
    """Our own tor process did not start or did not bootstrap."""


class DialError(TorError):
    """A connection through tor's SOCKS port failed.

    ``reason`` is a short machine-readable token (``"descriptor-not-found"``,
    ``"client-auth-missing"``, ...); see :mod:`onionpost.tor`.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(OnionpostError):
    """The local store cannot be opened, is locked by another daemon, or is corrupt."""


class StoreLockedError(StoreError):
    """Another process (another daemon on the same home) holds the store."""


class StoreTamperedError(StoreError):
    """The store's files were changed without its key (or damaged): refused, never used."""


class NoSpaceError(StoreError):
    """The disk is full, or storing this would exceed the configured disk budget."""


class QuotaError(StoreError):
    """Storing this would take one contact past a quota that leaves room for the others.

    ``quota`` names it (``"transfers"``: files arriving at once;
    ``"transfer-bytes"``: their offered sizes together) and ``limit`` is
    the configured bound. Nothing was stored.
    """

    def __init__(self, message: str, *, quota: str, limit: int) -> None:
        super().__init__(message)
        self.quota = quota
        self.limit = limit


class FileTooLargeError(StoreError):
    """A file is larger than the configured maximum file size."""


class HashMismatchError(StoreError):
    """A received file's BLAKE2b-512 differs from the offer's; the data was deleted."""


class MailboxRefusedError(OnionpostError):
    """A mailbox answered a request with a refusal (``code`` is an MbCode)."""

    def __init__(self, message: str, *, code: int, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.detail = detail


class VerificationError(OnionpostError):
    """A signed statement, Merkle proof, log or export did not verify.

    ``what`` names the part that failed (``"note"``, ``"signature"``,
    ``"checkpoint"``, ``"inclusion"``, ``"consistency"``, ...), so a verifier
    can say exactly what is wrong; the text never holds key material.
    """

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        self.what = what


class TrustError(OnionpostError):
    """An agency statement, anchor or log view was refused (``protocol-spec/trust.md``).

    ``what`` names the part (``"anchor"``, ``"delegation"``, ``"endorsement"``,
    ``"revocations"``, ``"checkpoint"``, ``"proof"``, ``"fork"``)."""

    def __init__(self, message: str, *, what: str) -> None:
        super().__init__(message)
        self.what = what


class MalformedStatementError(TrustError):
    """Not an agency statement or anchor of ours: encoding, arity, names or bounds."""


class ForgedStatementError(TrustError):
    """A statement or checkpoint whose signatures do not verify under the keys
    that must have made it. The text never says which half failed."""


class StatementRefusedError(TrustError):
    """A genuine statement that may not be used (expired, of another agency);
    ``reason`` is a :class:`onionpost.proto.trust.Reason` value's text."""

    def __init__(self, message: str, *, what: str, reason: str) -> None:
        super().__init__(message, what=what)
        self.reason = reason


class RolledBackError(TrustError):
    """A revocation list with a lower serial than the one held (trust.md §4)."""


class ConflictingStatementsError(TrustError):
    """Two statements by an agency's keys that cannot both be true: two
    checkpoints of one log that are not consistent, or two revocation lists
    of one serial. ``first`` and ``second`` are both signed notes, the proof."""

    def __init__(self, message: str, *, what: str, first: bytes, second: bytes) -> None:
        super().__init__(message, what=what)
        self.first = first
        self.second = second


class GroupReason(enum.Enum):
    """Why a group operation was refused (protocol-spec/groups.md §5, in the
    order a receiver checks)."""

    MALFORMED = "malformed"
    UNKNOWN_GROUP = "unknown-group"
    REPLAYED = "replayed"
    BAD_SIGNATURE = "bad-signature"
    BOUND = "bound"
    MISSING_PARENT = "missing-parent"
    FORK = "fork"
    OUT_OF_ORDER = "out-of-order"
    NOT_ALLOWED = "not-allowed"


class GroupRule(enum.Enum):
    """Which rule of the log refused an operation its author may not make
    (:class:`GroupNotAllowedError`, groups.md §5); the value is the log's
    own words."""

    CREATED_ONCE = "a group is created once"
    AUTHOR_NOT_MEMBER = "its author is not a member"
    AUTHOR_NOT_ADMIN = "its author is not an admin"
    ALREADY_MEMBER = "already a member"
    REMOVED_CONCURRENTLY = "removed by an operation it does not follow (removals win)"
    GROUP_FULL = "the group is full"
    LEAVE_TO_LEAVE = "a member leaves with leave"
    NOT_MEMBER = "not a member"
    ALREADY_ADMIN = "already an admin"
    DEMOTED_CONCURRENTLY = "demoted by an operation it does not follow (removals win)"
    NOT_ADMIN = "not an admin"


class GroupError(OnionpostError):
    """A group operation was refused. ``reason`` says why (one value per
    subclass); ``op`` is the refused operation's hash when it is known."""

    reason: GroupReason = GroupReason.MALFORMED

    def __init__(self, message: str, *, op: bytes | None = None) -> None:
        super().__init__(message)
        self.op = op


class GroupDecodeError(GroupError):
    """Not a well-formed operation in its canonical encoding, or beyond a size bound."""

    reason = GroupReason.MALFORMED


class GroupSignatureError(GroupError):
    """The operation's signature does not verify under its author's key."""

    reason = GroupReason.BAD_SIGNATURE


class GroupNotAllowedError(GroupError):
    """Its author may not make that change at its parents (not a member, not an
    admin, a member added twice, ...): ``rule`` says which, when the log's
    rules refused it."""

    reason = GroupReason.NOT_ALLOWED

    def __init__(
        self, message: str, *, op: bytes | None = None, rule: GroupRule | None = None
    ) -> None:
        super().__init__(message, op=op)
        self.rule = rule


class GroupReplayError(GroupError):
    """The log already holds this operation."""

    reason = GroupReason.REPLAYED


class GroupMissingParentError(GroupError):
    """A parent is not in the log: fetch ``missing`` (bounded) and try again."""

    reason = GroupReason.MISSING_PARENT

    def __init__(
        self, message: str, *, op: bytes | None = None, missing: tuple[bytes, ...]
    ) -> None:
        super().__init__(message, op=op)
        self.missing = missing


class GroupOrderError(GroupError):
    """The author's previous operation (its ``seq`` - 1) is not among its ancestors."""

    reason = GroupReason.OUT_OF_ORDER


class GroupForkError(GroupError):
    """The author signed two operations with one ``seq``: ``other`` is the hash
    of the one the log holds. Both signed operations prove it."""

    reason = GroupReason.FORK

    def __init__(self, message: str, *, op: bytes | None = None, other: bytes) -> None:
        super().__init__(message, op=op)
        self.other = other


class GroupUnknownError(GroupError):
    """No log of the operation's group is kept here."""

    reason = GroupReason.UNKNOWN_GROUP


class GroupBoundError(GroupError):
    """A bound is reached: the log's operations or bytes, or the groups kept."""

    reason = GroupReason.BOUND


class DaemonNotRunningError(OnionpostError):
    """No daemon answers on the local API socket of this home."""

    def __init__(
        self, message: str = "the daemon is not running (start it with 'onionpost daemon')"
    ) -> None:
        super().__init__(message)


class ApiError(OnionpostError):
    """The daemon answered a local API request with an error.

    ``code`` is the stable error code (``"unknown-contact"``, ``"bad-request"``,
    ...; ``protocol-spec/local-api.md``); the text is the daemon's message.
    """

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code
