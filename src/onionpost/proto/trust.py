"""Agency trust: anchors, delegations, endorsements, revocation lists and the
agency log, and the one check an endpoint runs on an endorsement
(``protocol-spec/trust.md``).

Theory of operation
-------------------
An agency's root key (an :class:`Anchor` to its partners) signs a
:class:`Delegation` to an issuing key, limited to the agency and to
``MAX_DELEGATION_LIFETIME``. The issuing key signs :class:`Endorsement` s
(this onion address is endpoint E of unit U of agency A, from .. until) and
:class:`RevocationList` s, and appends every statement to the agency's log
(:class:`AgencyLog`, :mod:`onionpost.proto.merkle`), whose checkpoints it
signs. Every key is a hybrid (:class:`HybridKey`): an Ed25519 half and an
ML-DSA-65 half, both required where both are known.

A statement is a signed note (:mod:`onionpost.proto.note`) of two lines, a
literal example (the body base64 of a canonical msgpack array)::

    onionpost-trust/v1 endorsement
    lgGnZXhhbXBsZdk+...

    — example/issuing/a BQY0...
    — example/issuing/a r4TE...

:func:`check_endorsement` runs the checks of trust.md §4 in order on an
:class:`EndorsementProof` and returns a :class:`Verdict` (endorsed,
unverified-stale, refused with a :class:`Reason`); a signature that does not
verify raises :class:`~onionpost.errors.ForgedStatementError`, never a
verdict. Everything here is pure: time is passed in as ``now`` (POSIX
seconds); ML-DSA signing draws its own randomness (FIPS 204 hedged
signing), which changes signature bytes and nothing else.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeVar

from onionpost.errors import (
    ConfigError,
    ConflictingStatementsError,
    ForgedStatementError,
    MalformedStatementError,
    RolledBackError,
    StatementRefusedError,
    VerificationError,
)
from onionpost.limits import (
    MAX_DELEGATION_LIFETIME,
    MAX_ENDORSEMENT_LIFETIME,
    MAX_NOTE_BYTES,
    MAX_NOTE_SIGNATURES,
    MAX_PROOF_HASHES,
    MAX_REVOCATIONS,
    MAX_TIME_MS,
    MAX_TRUST_NAME,
    TRUST_CACHE_ENTRIES,
    TRUST_CLOCK_SKEW,
    TRUST_FRESHNESS,
)
from onionpost.proto import _msgpack, merkle, note
from onionpost.proto._crypto import (
    ED25519_PUBLIC_LEN,
    MLDSA65_PUBLIC_LEN,
    MlDsaKey,
    SigningKey,
    constant_time_equal,
)
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity

__all__ = [
    "ANCHOR_PREFIX",
    "HEADER",
    "AgencyLog",
    "Anchor",
    "Delegation",
    "Endorsement",
    "EndorsementProof",
    "HybridKey",
    "HybridSigner",
    "Kind",
    "Reason",
    "RevocationList",
    "Revoked",
    "Rotation",
    "RotationProof",
    "Signed",
    "SignedCheckpoint",
    "StatementSigner",
    "Status",
    "Verdict",
    "VerifiedCache",
    "accept_revocations",
    "check_agency_name",
    "check_endorsement",
    "check_rotation",
    "claimed_agency",
    "claimed_delegation",
    "confirm_anchor",
    "issue",
    "meet_checkpoint",
    "open_checkpoint",
    "open_delegation",
    "open_endorsement",
    "open_revocations",
    "statement_text",
    "stored_checkpoint",
    "stored_endorsement",
    "stored_revocations",
]

VERSION: Final = 1
HEADER: Final = "onionpost-trust/v1"
ANCHOR_PREFIX: Final = "onionpost-anchor1:"
_FINGERPRINT_CONTEXT: Final = b"onionpost anchor fingerprint\x00"
_SAFETY_CONTEXT: Final = b"onionpost anchor safety number\x00"
_AGENCY: Final = re.compile(r"[a-z0-9][a-z0-9.-]{0,62}\Z")
_LABEL: Final = re.compile(r"[a-z0-9-]{1,32}\Z")
_U63: Final = 2**63 - 1
# A statement's times (POSIX seconds) at most: the last second of year 9999,
# the last a date shows (trust.md §2). Past it, a list held would raise out of
# every line that shows when its address was revoked.
_MAX_TIME: Final = MAX_TIME_MS // 1000
_MAX_BODY: Final = MAX_NOTE_BYTES
# An endorsement proof: three notes (each with its signature lines) and a proof.
_MAX_NOTE_DATA: Final = MAX_NOTE_BYTES + MAX_NOTE_SIGNATURES * 256


class Kind(enum.Enum):
    """The kind of a statement: the second word of its first line."""

    DELEGATION = "delegation"
    ENDORSEMENT = "endorsement"
    REVOCATIONS = "revocations"


def check_agency_name(agency: str) -> None:
    """1 to 63 of ``a-z 0-9 . -``, beginning with a letter or digit."""
    if not isinstance(agency, str) or not _AGENCY.match(agency):
        raise MalformedStatementError(
            "an agency name is 1 to 63 of a-z 0-9 . - beginning with a letter or digit",
            what="agency",
        )


def _malformed(what: str, text: str = "") -> MalformedStatementError:
    return MalformedStatementError(text or f"a malformed {what}", what=what)


def _uint(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U63:
        raise _malformed(what, f"a {what}'s number is out of range")
    return value


def _time(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _MAX_TIME:
        raise _malformed(
            what,
            f"a time in a {what} statement is out of range: "
            f"0 to {_MAX_TIME} seconds, the end of year 9999",
        )
    return value


def _text(value: object, what: str, *, low: int = 0, high: int = MAX_TRUST_NAME) -> str:
    if (
        not isinstance(value, str)
        or not low <= len(value.encode()) <= high
        or (value and not value.isprintable())
    ):
        raise _malformed(what, f"a {what}'s name is {low} to {high} bytes of printable text")
    return value


def _bin(value: object, what: str, *lengths: int) -> bytes:
    if not isinstance(value, bytes) or len(value) not in lengths:
        raise _malformed(what, f"a {what}'s key has the wrong length")
    return value


# -- keys ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HybridKey:
    """The public half of an agency key: its note key name, its Ed25519 key and
    its ML-DSA-65 key (empty when the key has none)."""

    name: str
    ed25519: bytes
    mldsa65: bytes = b""

    def verifiers(self) -> tuple[note.Verifier, ...]:
        first = note.Verifier(self.name, note.ED25519, self.ed25519)
        if not self.mldsa65:
            return (first,)
        return first, note.Verifier(self.name, note.MLDSA65, self.mldsa65)


class StatementSigner(Protocol):
    """What signs statements and checkpoints: a key in memory
    (:class:`HybridSigner`, from a sealed file) or one held elsewhere (a
    PKCS#11 token would implement this and keep its private halves)."""

    @property
    def public(self) -> HybridKey: ...

    def sign(self, text: str) -> note.Note:
        """A note of ``text`` with one signature line per half of :attr:`public`."""
        ...


class HybridSigner:
    """An agency key that signs: an Ed25519 seed and, beside it, an ML-DSA-65
    seed. The seeds never show in ``repr``; a key held elsewhere (a PKCS#11
    token) would offer the same ``public`` and ``sign``."""

    __slots__ = ("_ed", "_mldsa", "public")

    def __init__(self, name: str, ed25519_seed: bytes, mldsa65_seed: bytes | None) -> None:
        self._ed = SigningKey(ed25519_seed)
        self._mldsa = MlDsaKey(mldsa65_seed) if mldsa65_seed is not None else None
        mldsa_public = self._mldsa.public if self._mldsa is not None else b""
        self.public = HybridKey(name, self._ed.public, mldsa_public)

    @classmethod
    def generate(cls, name: str, *, mldsa: bool = True) -> HybridSigner:
        return cls(name, SigningKey.generate().seed, MlDsaKey.generate().seed if mldsa else None)

    @property
    def seeds(self) -> tuple[bytes, bytes | None]:
        """The private seeds, for a sealed key file."""
        return self._ed.seed, (self._mldsa.seed if self._mldsa is not None else None)

    def __repr__(self) -> str:
        return f"HybridSigner({self.public.name})"

    def sign(self, text: str) -> note.Note:
        """A note of ``text`` with one line per half (Ed25519 first)."""
        data = text.encode()
        lines = [
            note.signature_line(
                text, self.public.name, note.ED25519, self._ed.public, self._ed.sign(data)
            )
        ]
        if self._mldsa is not None:
            signature = self._mldsa.sign(data, note.MLDSA65_CONTEXT)
            lines.append(
                note.signature_line(
                    text, self.public.name, note.MLDSA65, self._mldsa.public, signature
                )
            )
        return note.Note(text, tuple(lines))


@dataclass(frozen=True, slots=True)
class Anchor:
    """An agency's root key as its partners install it (trust.md §1)."""

    agency: str
    ed25519: bytes
    mldsa65: bytes = b""

    def __post_init__(self) -> None:
        check_agency_name(self.agency)
        _bin(self.ed25519, "anchor", ED25519_PUBLIC_LEN)
        _bin(self.mldsa65, "anchor", 0, MLDSA65_PUBLIC_LEN)

    @property
    def root(self) -> HybridKey:
        return HybridKey(f"{self.agency}/root", self.ed25519, self.mldsa65)

    def encode(self) -> bytes:
        return _msgpack.pack([VERSION, self.agency, self.ed25519, self.mldsa65])

    @property
    def fingerprint(self) -> bytes:
        return hashlib.sha256(_FINGERPRINT_CONTEXT + self.encode()).digest()

    @property
    def safety_number(self) -> str:
        """12 groups of 5 digits, read aloud to compare the anchor out of band."""
        digest = hashlib.blake2b(_SAFETY_CONTEXT + self.encode(), digest_size=64).digest()
        return " ".join(
            f"{int.from_bytes(digest[5 * i : 5 * i + 5], 'big') % 100000:05d}" for i in range(12)
        )

    @property
    def log_origin(self) -> str:
        return f"{self.agency}/log/{self.fingerprint[:8].hex()}"

    def to_text(self) -> str:
        return ANCHOR_PREFIX + base64.urlsafe_b64encode(self.encode()).decode().rstrip("=")

    @classmethod
    def from_text(cls, text: str) -> Anchor:
        """Parse an anchor's text; :class:`MalformedStatementError` for anything else."""
        text = text.strip()
        if not text.startswith(ANCHOR_PREFIX) or len(text) > 4 * MLDSA65_PUBLIC_LEN:
            raise _malformed("anchor", f"an anchor begins with {ANCHOR_PREFIX}")
        encoded = text[len(ANCHOR_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        except (binascii.Error, ValueError) as exc:
            raise _malformed("anchor", "an anchor's key is not base64url") from exc
        try:
            value = _msgpack.unpack(raw, max_len=MLDSA65_PUBLIC_LEN, max_items=4)
        except _msgpack.NotMsgpack as exc:
            raise _malformed("anchor") from exc
        if not isinstance(value, tuple) or len(value) != 4 or value[0] != VERSION:
            raise _malformed("anchor")
        anchor = cls(_text(value[1], "anchor", low=1), value[2], value[3])
        if anchor.encode() != raw or anchor.to_text() != text:
            raise _malformed("anchor", "an anchor is not in canonical form")
        return anchor


def confirm_anchor(text: str, safety_number: str) -> Anchor:
    """The anchor of ``text`` if ``safety_number`` (what the user typed, spaces
    ignored) is its safety number, compared in constant time (trust.md §1);
    else :class:`~onionpost.errors.ConfigError` with what to do."""
    try:
        anchor = Anchor.from_text(text)
    except MalformedStatementError as exc:
        raise ConfigError(f"not a trust anchor: {exc}") from exc
    typed = "".join(safety_number.split()).encode()
    expected = "".join(anchor.safety_number.split()).encode()
    if not constant_time_equal(typed, expected):
        raise ConfigError(
            "that is not the anchor's safety number: nothing installed "
            "(compare it again with the agency, over a channel you trust)"
        )
    return anchor


# -- statements -----------------------------------------------------------------------


def _check_window(start: int, end: int, bound: int, what: str) -> None:
    if not 0 <= end - start <= bound:
        raise _malformed(what, f"a {what}'s validity is longer than allowed")


@dataclass(frozen=True, slots=True)
class Delegation:
    """The root's statement that an issuing key speaks for the agency (trust.md §2)."""

    agency: str
    label: str
    ed25519: bytes
    mldsa65: bytes
    not_before: int
    not_after: int

    KIND = Kind.DELEGATION

    def __post_init__(self) -> None:
        check_agency_name(self.agency)
        if not isinstance(self.label, str) or not _LABEL.match(self.label):
            raise _malformed("delegation", "an issuing key's label is 1 to 32 of a-z 0-9 -")
        _bin(self.ed25519, "delegation", ED25519_PUBLIC_LEN)
        _bin(self.mldsa65, "delegation", 0, MLDSA65_PUBLIC_LEN)
        _time(self.not_before, "delegation")
        _time(self.not_after, "delegation")
        _check_window(self.not_before, self.not_after, MAX_DELEGATION_LIFETIME, "delegation")

    @property
    def key(self) -> HybridKey:
        return HybridKey(f"{self.agency}/issuing/{self.label}", self.ed25519, self.mldsa65)

    def body(self) -> list[Any]:
        return [
            VERSION,
            self.agency,
            self.label,
            self.ed25519,
            self.mldsa65,
            self.not_before,
            self.not_after,
        ]

    @classmethod
    def from_body(cls, value: tuple[Any, ...]) -> Delegation:
        if len(value) != 7:
            raise _malformed("delegation")
        return cls(*value[1:])


@dataclass(frozen=True, slots=True)
class Endorsement:
    """An issuing key's statement about one endpoint (trust.md §2)."""

    agency: str
    address: str
    identity: bytes
    endpoint: str
    unit: str
    valid_from: int
    valid_until: int
    replaces: str = ""

    KIND = Kind.ENDORSEMENT

    def __post_init__(self) -> None:
        check_agency_name(self.agency)
        try:
            parsed = OnionAddress.parse(self.address) if isinstance(self.address, str) else None
            old = OnionAddress.parse(self.replaces) if self.replaces else None
        except ConfigError as exc:
            raise _malformed("endorsement", "an endorsement names a malformed address") from exc
        if parsed is None or str(parsed) != self.address or (old and str(old) != self.replaces):
            raise _malformed("endorsement", "an endorsement names a malformed address")
        if not isinstance(self.replaces, str) or self.replaces == self.address:
            raise _malformed("endorsement", "an endorsement cannot replace its own address")
        _bin(self.identity, "endorsement", ED25519_PUBLIC_LEN)
        _text(self.endpoint, "endorsement", low=1)
        _text(self.unit, "endorsement")
        _time(self.valid_from, "endorsement")
        _time(self.valid_until, "endorsement")
        _check_window(self.valid_from, self.valid_until, MAX_ENDORSEMENT_LIFETIME, "endorsement")

    def body(self) -> list[Any]:
        return [
            VERSION,
            self.agency,
            self.address,
            self.identity,
            self.endpoint,
            self.unit,
            self.valid_from,
            self.valid_until,
            self.replaces,
        ]

    @classmethod
    def from_body(cls, value: tuple[Any, ...]) -> Endorsement:
        if len(value) != 9:
            raise _malformed("endorsement")
        return cls(*value[1:])


@dataclass(frozen=True, slots=True)
class Revoked:
    """One revoked address of a list."""

    address: str
    revoked_at: int
    reason: str


@dataclass(frozen=True, slots=True)
class RevocationList:
    """An issuing key's list of the agency's revoked addresses (trust.md §2)."""

    agency: str
    serial: int
    issued_at: int
    revoked: tuple[Revoked, ...] = ()

    KIND = Kind.REVOCATIONS

    def __post_init__(self) -> None:
        check_agency_name(self.agency)
        _uint(self.serial, "revocations")
        _time(self.issued_at, "revocations")
        if not isinstance(self.revoked, tuple) or len(self.revoked) > MAX_REVOCATIONS:
            raise _malformed("revocations", "a revocation list holds too many entries")
        for entry in self.revoked:
            if not isinstance(entry, Revoked):
                raise _malformed("revocations")
            _text(entry.address, "revocations", low=1, high=80)
            _time(entry.revoked_at, "revocations")
            _text(entry.reason, "revocations")
        addresses = [entry.address for entry in self.revoked]
        if addresses != sorted(set(addresses)):
            raise _malformed("revocations", "a list's addresses are sorted and distinct")

    def find(self, address: str) -> Revoked | None:
        return next((entry for entry in self.revoked if entry.address == address), None)

    def body(self) -> list[Any]:
        entries = [[e.address, e.revoked_at, e.reason] for e in self.revoked]
        return [VERSION, self.agency, self.serial, self.issued_at, entries]

    @classmethod
    def from_body(cls, value: tuple[Any, ...]) -> RevocationList:
        if len(value) != 5 or not isinstance(value[4], tuple):
            raise _malformed("revocations")
        entries = []
        for item in value[4]:
            if not isinstance(item, tuple) or len(item) != 3:
                raise _malformed("revocations")
            entries.append(Revoked(*item))
        return cls(value[1], value[2], value[3], tuple(entries))


Statement = Delegation | Endorsement | RevocationList
S = TypeVar("S", Delegation, Endorsement, RevocationList)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Signed(Generic[S]):
    """A statement and the signed note it came in (``data``: the note's bytes,
    the leaf the agency log holds)."""

    value: S
    data: bytes = field(repr=False)


def statement_text(statement: Statement) -> str:
    """The note text of a statement: its header line and its body's base64."""
    body = _msgpack.pack(statement.body())
    return f"{HEADER} {statement.KIND.value}\n{base64.b64encode(body).decode()}\n"


def issue(signer: StatementSigner, statement: Statement, *, also: Sequence[Identity] = ()) -> bytes:
    """The signed note of ``statement`` by ``signer`` (and by ``also``: the old
    identity key of a rotation, trust.md §6), as bytes."""
    text = statement_text(statement)
    signed = signer.sign(text)
    for identity in also:
        signed = signed.with_signatures(note.sign(text, str(identity.address), identity).signatures)
    return signed.to_bytes()


def _decode_body(text: str, kind: Kind) -> tuple[Any, ...]:
    lines = text.split("\n")
    if len(lines) != 3 or lines[2] or lines[0] != f"{HEADER} {kind.value}":
        raise _malformed(kind.value, f"not a {kind.value} statement")
    try:
        raw = base64.b64decode(lines[1], validate=True)
        value = _msgpack.unpack(raw, max_len=_MAX_BODY, max_items=MAX_REVOCATIONS)
    except (ValueError, _msgpack.NotMsgpack) as exc:
        # ValueError: binascii.Error, and a body line that is not ASCII.
        raise _malformed(kind.value) from exc
    if not isinstance(value, tuple) or not value or value[0] != VERSION:
        raise _malformed(kind.value)
    if base64.b64encode(_msgpack.pack(_lists(value))).decode() != lines[1]:
        raise _malformed(kind.value, f"a {kind.value} is not in canonical form")
    return value


def claimed_agency(delegation_data: bytes) -> str:
    """The agency a delegation names, read *without* checking its signatures:
    only to choose the anchor that will then check it (trust.md §7.1)."""
    return claimed_delegation(delegation_data).agency


def claimed_delegation(delegation_data: bytes) -> Delegation:
    """A delegation read *without* checking its signatures: to choose an anchor,
    or which delegation to send with a list (trust.md §7.2), never to rely on."""
    if not isinstance(delegation_data, bytes) or len(delegation_data) > _MAX_NOTE_DATA:
        raise _malformed("delegation", "a delegation is too long")
    try:
        parsed = note.Note.parse(delegation_data)
    except VerificationError as exc:
        raise _malformed("delegation", "a delegation is not a signed note") from exc
    try:
        return Delegation.from_body(_decode_body(parsed.text, Kind.DELEGATION))
    except TypeError as exc:
        raise _malformed("delegation") from exc


def stored_revocations(data: bytes) -> Signed[RevocationList]:
    """A revocation list this endpoint verified when it received it and then
    stored: parsed, not verified again (its delegation may have ended since)."""
    try:
        parsed = note.Note.parse(data)
        return Signed(RevocationList.from_body(_decode_body(parsed.text, Kind.REVOCATIONS)), data)
    except (VerificationError, TypeError) as exc:
        raise _malformed("revocations", "a stored revocation list is unreadable") from exc


def stored_endorsement(data: bytes) -> Endorsement:
    """An endorsement this endpoint verified when it installed it, parsed again
    (to see when it ends), not verified again."""
    try:
        parsed = note.Note.parse(data)
        return Endorsement.from_body(_decode_body(parsed.text, Kind.ENDORSEMENT))
    except (VerificationError, TypeError) as exc:
        raise _malformed("endorsement", "a stored endorsement is unreadable") from exc


def stored_checkpoint(data: bytes) -> SignedCheckpoint:
    """A checkpoint this endpoint verified and stored, parsed again."""
    try:
        return SignedCheckpoint(note.Checkpoint.from_text(note.Note.parse(data).text), data)
    except VerificationError as exc:
        raise _malformed("checkpoint", "a stored checkpoint is unreadable") from exc


def _lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_lists(v) for v in value]
    return value


def _open_note(data: bytes, key: HybridKey, what: str) -> note.Note:
    """Parse ``data`` and require a verified line from every half of ``key``."""
    if not isinstance(data, bytes) or len(data) > _MAX_NOTE_DATA:
        raise _malformed(what, f"a {what} is too long")
    try:
        parsed = note.Note.parse(data)
    except VerificationError as exc:
        raise _malformed(what, f"a {what} is not a signed note") from exc
    forged = ForgedStatementError(f"the {what} is not signed by the key it must be", what=what)
    try:
        verified = note.open_note(parsed, key.verifiers())
    except VerificationError as exc:
        raise forged from exc
    if {s.key_id for s in verified} != {v.key_id for v in key.verifiers()}:
        raise forged
    return parsed


def _open(data: bytes, key: HybridKey, cls: type[S]) -> Signed[S]:
    parsed = _open_note(data, key, cls.KIND.value)
    value = _decode_body(parsed.text, cls.KIND)
    try:
        return Signed(cls.from_body(value), data)
    except TypeError as exc:
        raise _malformed(cls.KIND.value) from exc


def open_delegation(anchor: Anchor, data: bytes) -> Signed[Delegation]:
    """A delegation signed by ``anchor``'s root (both halves where it has both).

    Raises for forgery and malformed data; validity and agency are checked by
    the caller (:func:`check_endorsement` makes them verdicts)."""
    signed = _open(data, anchor.root, Delegation)
    if bool(signed.value.mldsa65) != bool(anchor.mldsa65):
        raise _malformed(
            "delegation", "an issuing key has an ML-DSA half exactly when its root has"
        )
    return signed


def open_endorsement(delegation: Delegation, data: bytes) -> Signed[Endorsement]:
    return _open(data, delegation.key, Endorsement)


def _usable_delegation(anchor: Anchor, delegation: Delegation, now: int) -> Reason | None:
    if delegation.agency != anchor.agency:
        return Reason.WRONG_AGENCY
    if now < delegation.not_before - TRUST_CLOCK_SKEW:
        return Reason.NOT_YET_VALID
    if now > delegation.not_after + TRUST_CLOCK_SKEW:
        return Reason.DELEGATION_EXPIRED
    return None


def open_revocations(
    anchor: Anchor, delegation_data: bytes, data: bytes, *, now: int
) -> Signed[RevocationList]:
    """A revocation list of ``anchor``'s agency, signed by an issuing key the root
    delegated and valid at ``now``, issued no later than ``now`` (give or take
    ``TRUST_CLOCK_SKEW``); :class:`StatementRefusedError` otherwise."""
    delegation = open_delegation(anchor, delegation_data).value
    reason = _usable_delegation(anchor, delegation, now)
    signed = _open(data, delegation.key, RevocationList)
    if reason is None and signed.value.agency != anchor.agency:
        reason = Reason.WRONG_AGENCY
    if reason is not None:
        raise StatementRefusedError(
            f"a revocation list refused: {reason.value}", what="revocations", reason=reason.value
        )
    if signed.value.issued_at > now + TRUST_CLOCK_SKEW:
        # Held, it would be fresh for ever: now - issued_at never passes the
        # freshness (trust.md §4). Refused until our clock reaches it.
        raise StatementRefusedError(
            f"a revocation list refused: {Reason.NOT_YET_VALID.value}: issued later than now "
            f"by more than the allowed clock skew ({TRUST_CLOCK_SKEW} s)",
            what="revocations",
            reason=Reason.NOT_YET_VALID.value,
        )
    return signed


def accept_revocations(
    held: Signed[RevocationList] | None, new: Signed[RevocationList]
) -> Signed[RevocationList]:
    """The list to hold after meeting ``new`` (trust.md §4): a larger serial
    replaces ``held``; a lower one raises :class:`RolledBackError`; the same
    serial with other contents raises :class:`ConflictingStatementsError`."""
    if held is None:
        return new
    if held.value.agency != new.value.agency:
        raise StatementRefusedError(
            "a revocation list of another agency", what="revocations", reason="wrong-agency"
        )
    if new.value.serial < held.value.serial:
        raise RolledBackError(
            f"a revocation list of serial {new.value.serial} after {held.value.serial}: refused",
            what="revocations",
        )
    if new.value.serial == held.value.serial:
        if new.value != held.value:
            raise ConflictingStatementsError(
                f"two revocation lists of serial {new.value.serial}",
                what="revocations",
                first=held.data,
                second=new.data,
            )
        return held
    return new


# -- the agency log ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    """A verified checkpoint of an agency log and its signed note."""

    checkpoint: note.Checkpoint
    data: bytes = field(repr=False)


def open_checkpoint(anchor: Anchor, key: HybridKey, data: bytes) -> SignedCheckpoint:
    """A checkpoint of ``anchor``'s log signed by ``key`` (an issuing key)."""
    parsed = _open_note(data, key, "checkpoint")
    try:
        checkpoint = note.Checkpoint.from_text(parsed.text)
    except VerificationError as exc:
        raise _malformed("checkpoint") from exc
    if checkpoint.origin != anchor.log_origin:
        raise ForgedStatementError("a checkpoint of another log", what="checkpoint")
    return SignedCheckpoint(checkpoint, data)


class AgencyLog:
    """The writer's side of an agency log: statements in, checkpoints and proofs
    out. Pure and in memory; a registrar or the offline tool keeps the leaves."""

    __slots__ = ("_frontier", "_leaves", "origin")

    def __init__(self, origin: str, leaves: Sequence[bytes] = ()) -> None:
        self.origin = origin
        self._leaves = merkle.TreeHashes()
        self._frontier = merkle.Frontier()
        for leaf in leaves:
            self.append(leaf)

    def __repr__(self) -> str:
        return f"AgencyLog({self.origin}, size={self.size})"

    @property
    def size(self) -> int:
        return self._frontier.size

    def append(self, statement: bytes) -> int:
        """Append a statement's note bytes; its index."""
        leaf = merkle.leaf_hash(statement)
        self._leaves.append(leaf)
        self._frontier.append(leaf)
        return self.size - 1

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        return self._leaves.root(size)

    def checkpoint(self, signer: StatementSigner, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        text = note.Checkpoint(self.origin, size, self.root(size)).to_text()
        return signer.sign(text).to_bytes()

    def inclusion(self, index: int, size: int | None = None) -> tuple[bytes, ...]:
        size = self.size if size is None else size
        return merkle.inclusion_proof(index, size, self._leaves.hasher(size))

    def consistency(self, old_size: int, size: int | None = None) -> tuple[bytes, ...]:
        size = self.size if size is None else size
        return merkle.consistency_proof(old_size, size, self._leaves.hasher(size))


def meet_checkpoint(
    held: SignedCheckpoint | None, other: SignedCheckpoint, proof: Sequence[bytes]
) -> SignedCheckpoint:
    """The checkpoint to hold after meeting ``other`` with the consistency
    ``proof`` between the smaller and the larger of the two (trust.md §3).

    Two checkpoints that are not consistent raise
    :class:`ConflictingStatementsError` (``what="fork"``) holding both notes."""
    if held is None:
        return other
    old, new = held.checkpoint, other.checkpoint
    if old.origin != new.origin:
        raise StatementRefusedError(
            "a checkpoint of another log", what="checkpoint", reason="wrong-agency"
        )
    small, large = (old, new) if old.size <= new.size else (new, old)
    try:
        merkle.verify_consistency(small.size, large.size, small.root, large.root, proof)
    except VerificationError as exc:
        raise ConflictingStatementsError(
            f"the agency log {old.origin} forked: checkpoints of {old.size} and {new.size} "
            "entries that are not consistent",
            what="fork",
            first=held.data,
            second=other.data,
        ) from exc
    return other if new.size > old.size else held


# -- checking an endorsement -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndorsementProof:
    """What an endpoint presents: the delegation of the key that endorsed it,
    the endorsement, a checkpoint and the inclusion proof (trust.md §4)."""

    delegation: bytes
    endorsement: bytes
    checkpoint: bytes
    index: int
    proof: tuple[bytes, ...]

    def encode(self) -> bytes:
        return _msgpack.pack(
            [
                VERSION,
                self.delegation,
                self.endorsement,
                self.checkpoint,
                self.index,
                b"".join(self.proof),
            ]
        )

    @classmethod
    def decode(cls, data: bytes) -> EndorsementProof:
        if not isinstance(data, bytes) or len(data) > 4 * _MAX_NOTE_DATA:
            raise _malformed("proof", "an endorsement proof is too long")
        try:
            value = _msgpack.unpack(data, max_len=_MAX_NOTE_DATA, max_items=6)
        except _msgpack.NotMsgpack as exc:
            raise _malformed("proof") from exc
        types = (int, bytes, bytes, bytes, int, bytes)
        if (
            not isinstance(value, tuple)
            or len(value) != len(types)
            or not all(
                isinstance(v, t) and not isinstance(v, bool)
                for v, t in zip(value, types, strict=True)
            )
            or value[0] != VERSION
        ):
            raise _malformed("proof")
        hashes = value[5]
        if len(hashes) % merkle.HASH_LEN or len(hashes) > MAX_PROOF_HASHES * merkle.HASH_LEN:
            raise _malformed("proof", "an inclusion proof is malformed")
        proof = tuple(hashes[i : i + merkle.HASH_LEN] for i in range(0, len(hashes), 32))
        result = cls(value[1], value[2], value[3], _uint(value[4], "proof"), proof)
        if result.encode() != data:
            raise _malformed("proof", "an endorsement proof is not in canonical form")
        return result


class Status(enum.Enum):
    ENDORSED = "endorsed"
    UNVERIFIED_STALE = "unverified-stale"
    REFUSED = "refused"


class Reason(enum.Enum):
    """Why an endorsement is not (or not verifiably) endorsed."""

    WRONG_AGENCY = "wrong-agency"
    DELEGATION_EXPIRED = "delegation-expired"
    NOT_YET_VALID = "not-yet-valid"
    EXPIRED = "expired"
    WRONG_ADDRESS = "wrong-address"
    NOT_IN_LOG = "not-in-log"
    REVOKED = "revoked"
    NO_LIST = "no-revocation-list"
    STALE_LIST = "stale-revocation-list"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`check_endorsement`; ``endorsement`` is the statement
    as signed (None when refused before it was opened), ``until`` the end of an
    endorsed or stale verdict, ``revoked`` the list's entry when revoked."""

    status: Status
    reason: Reason | None
    endorsement: Endorsement | None = None
    until: int | None = None
    revoked: Revoked | None = None
    checkpoint: SignedCheckpoint | None = None

    def describe(self) -> str:
        if self.status is Status.ENDORSED and self.endorsement is not None:
            e = self.endorsement
            where = f"{e.endpoint}, {e.unit}" if e.unit else e.endpoint
            return f"endorsed by {e.agency} ({where}) until {self.until}"
        assert self.reason is not None
        return f"{self.status.value}: {self.reason.value}"


def _refused(reason: Reason, endorsement: Endorsement | None = None) -> Verdict:
    return Verdict(Status.REFUSED, reason, endorsement)


class VerifiedCache:
    """The statements a holder has verified, so that the same bytes are not
    verified again (trust.md §9): a contact presents the same delegation,
    endorsement and checkpoint in every session, and every endpoint of an
    agency the same delegation. Each entry is keyed by the key that verified
    it and the exact bytes, so only those bytes under that key can hit; what
    depends on time (validity, the list) is checked on every use. At most
    ``size`` entries, the least recently used dropped first. Not shared
    between threads."""

    __slots__ = ("_entries", "_size")

    def __init__(self, size: int = TRUST_CACHE_ENTRIES) -> None:
        self._size = size
        self._entries: OrderedDict[tuple[object, bytes], object] = OrderedDict()

    def __repr__(self) -> str:
        return f"VerifiedCache({len(self._entries)} of {self._size})"

    def __len__(self) -> int:
        return len(self._entries)

    def _get(self, key: tuple[object, bytes], make: Callable[[], T]) -> T:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]  # type: ignore[return-value]
        value = make()  # raises on forgery: nothing is kept
        self._entries[key] = value
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value

    def delegation(self, anchor: Anchor, data: bytes) -> Delegation:
        return self._get(
            (("delegation", anchor.fingerprint), data), lambda: open_delegation(anchor, data).value
        )

    def endorsement(self, delegation: Delegation, data: bytes) -> Endorsement:
        return self._get(
            (("endorsement", delegation.key), data),
            lambda: open_endorsement(delegation, data).value,
        )

    def checkpoint(self, anchor: Anchor, key: HybridKey, data: bytes) -> SignedCheckpoint:
        return self._get(
            (("checkpoint", anchor.fingerprint, key), data),
            lambda: open_checkpoint(anchor, key, data),
        )


def check_endorsement(
    anchor: Anchor,
    presented: EndorsementProof | bytes,
    *,
    address: str,
    revocations: RevocationList | None,
    now: int,
    freshness: int = TRUST_FRESHNESS,
    cache: VerifiedCache | None = None,
) -> Verdict:
    """Check an endorsement proof for the endpoint at ``address`` at ``now``,
    against the revocation list held (trust.md §4, steps in that order);
    with ``cache``, signatures it holds verified are not checked again.

    Forgery and malformed data raise; every other outcome is a :class:`Verdict`."""
    proof = (
        presented if isinstance(presented, EndorsementProof) else EndorsementProof.decode(presented)
    )
    if cache is None:
        cache = VerifiedCache(3)
    delegation = cache.delegation(anchor, proof.delegation)
    reason = _usable_delegation(anchor, delegation, now)
    if reason is not None:
        return _refused(reason)
    endorsement = cache.endorsement(delegation, proof.endorsement)
    if endorsement.agency != delegation.agency:
        return _refused(Reason.WRONG_AGENCY, endorsement)
    key = OnionAddress.parse(endorsement.address).public_key
    if endorsement.address != address or not constant_time_equal(key, endorsement.identity):
        return _refused(Reason.WRONG_ADDRESS, endorsement)
    if now < endorsement.valid_from - TRUST_CLOCK_SKEW:
        return _refused(Reason.NOT_YET_VALID, endorsement)
    if now > endorsement.valid_until + TRUST_CLOCK_SKEW:
        return _refused(Reason.EXPIRED, endorsement)
    checkpoint = cache.checkpoint(anchor, delegation.key, proof.checkpoint)
    cp = checkpoint.checkpoint
    try:
        leaf = merkle.leaf_hash(proof.endorsement)
        merkle.verify_inclusion(leaf, proof.index, cp.size, proof.proof, cp.root)
    except VerificationError:
        return _refused(Reason.NOT_IN_LOG, endorsement)
    until = min(endorsement.valid_until, delegation.not_after)
    if revocations is not None and revocations.agency == anchor.agency:
        revoked = revocations.find(address)
        if revoked is not None:
            return Verdict(Status.REFUSED, Reason.REVOKED, endorsement, None, revoked, checkpoint)
    if revocations is None or revocations.agency != anchor.agency:
        return Verdict(
            Status.UNVERIFIED_STALE, Reason.NO_LIST, endorsement, until, None, checkpoint
        )
    if now - revocations.issued_at > freshness:
        return Verdict(
            Status.UNVERIFIED_STALE, Reason.STALE_LIST, endorsement, until, None, checkpoint
        )
    return Verdict(Status.ENDORSED, None, endorsement, until, None, checkpoint)


# -- rotation --------------------------------------------------------------------------


class RotationProof(enum.Enum):
    """Who vouched for a move to a new address (trust.md §6)."""

    AGENCY = "agency"
    AGENCY_AND_OLD_KEY = "agency-and-old-key"


@dataclass(frozen=True, slots=True)
class Rotation:
    old_address: str
    new_address: str
    agency: str
    proof: RotationProof


def check_rotation(old: Endorsement, new: Verdict, endorsement_data: bytes) -> Rotation:
    """Whether the endorsed endpoint of ``new`` replaces the one ``old`` endorsed:
    same agency, ``replaces`` naming the old address; and whether the old key
    signed it too (a bad old-key line raises :class:`ForgedStatementError`)."""
    endorsement = new.endorsement
    if new.status is Status.REFUSED or endorsement is None:
        raise StatementRefusedError(
            "a rotation needs a valid endorsement", what="endorsement", reason="refused"
        )
    if endorsement.replaces != old.address or endorsement.agency != old.agency:
        raise StatementRefusedError(
            "the endorsement does not replace that address",
            what="endorsement",
            reason=Reason.WRONG_ADDRESS.value,
        )
    parsed = note.Note.parse(endorsement_data)
    if statement_text(endorsement) != parsed.text:
        raise _malformed("endorsement", "the rotation's endorsement is another statement")
    old_key = note.Verifier(old.address, note.ED25519, old.identity)
    lines = [s for s in parsed.signatures if s.name == old.address]
    proof = RotationProof.AGENCY
    if lines:
        try:
            note.open_note(parsed, [old_key])
        except VerificationError as exc:
            raise ForgedStatementError(
                "the old key's signature on the rotation does not verify", what="endorsement"
            ) from exc
        proof = RotationProof.AGENCY_AND_OLD_KEY
    return Rotation(old.address, endorsement.address, endorsement.agency, proof)
