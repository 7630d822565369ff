"""Signed prekeys and sealed envelopes: the cryptography of the offline mailbox.

Theory of operation
-------------------
An owner B keeps a *mailbox*, another always-on endpoint, that holds sealed
envelopes for B while B is offline. B uploads :class:`SignedPrekey` s to it:
an X25519 key and an ML-KEM-768 encapsulation key, signed together by B's
identity key. A sender A, who cannot reach B, fetches one of them from the
mailbox, checks the signature against B's address, and seals an envelope to
it; B later drains the mailbox and opens the envelopes with the matching
:class:`PrekeySecret`. The design follows Signal's PQXDH (one-time prekeys
and a signed last-resort prekey, each an X25519 key and an ML-KEM key), built
on the one-way Noise pattern X with a PSK (``protocol-spec/mailbox.md``)::

    Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b
    <- s                                   (the prekey's X25519 key)
    ...
    -> e, es, s, ss, psk                   (psk = ML-KEM-768 shared secret)

A signed prekey (1306 bytes, big-endian integers)::

    version    u8      = 1
    kind       u8      1 = one-time, 2 = last resort
    key_id     16      random
    not_after  u64     seconds since the Unix epoch
    x25519     32      X25519 public key
    mlkem      1184    ML-KEM-768 encapsulation key
    signature  64      Ed25519 by the owner's identity key over
                       PREKEY_CONTEXT || owner identity key (32) || the 1242 bytes above
    PREKEY_CONTEXT = b"onionpost prekey\\x00"

An envelope::

    01                          version
    <16>                        envelope_id
    <16>                        key_id of the prekey it is sealed to
    <1088>                      ML-KEM-768 ciphertext
    <32> <48> <payload + 16>    the Noise message: e, encrypted s, encrypted payload

with the prologue ``"onionpost envelope" || u8 version || u8 56 || the
recipient's service id || envelope_id || key_id || kem_ciphertext``. The
payload is the canonical msgpack array ``[1, sender identity key (bin 32),
static-key certificate (bin 113), sealed_ms (uint 64), [record (bin), ...],
padding...]``, the padding (a bin of zeros, then possibly the integer 0)
making the whole envelope one of :data:`ENVELOPE_BUCKETS` (mailbox.md §3.4).

Opening fails in exactly one way, :class:`~onionpost.errors.AuthenticationError`
with one text, whatever went wrong. Time is passed in and randomness (the
ephemeral key, the KEM encapsulation) is injectable: this module reads no
clock and does no I/O.
"""

from __future__ import annotations

import enum
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from onionpost.errors import (
    AuthenticationError,
    ConfigError,
    LocalProtocolError,
    MessageDecodeError,
    OnionpostError,
    RemoteProtocolError,
)
from onionpost.proto import _msgpack
from onionpost.proto._crypto import (
    DHLEN,
    MLKEM768_CIPHERTEXT_LEN,
    MLKEM768_PUBLIC_LEN,
    MLKEM768_SEED_LEN,
    MLKEM_SHARED_LEN,
    TAG_LEN,
    Encapsulator,
    KemKeyPair,
    KeyPair,
    constant_time_equal,
    ed25519_verify,
    mlkem768_encapsulate,
)
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import (
    CERT_CLOCK_SKEW,
    CERT_LEN,
    Identity,
    StaticKey,
    StaticKeyCertificate,
)
from onionpost.proto.noise import HandshakeState, NoiseProtocol

__all__ = [
    "ENVELOPE_BUCKETS",
    "ENVELOPE_VERSION",
    "HEADER_LEN",
    "ID_LEN",
    "MAX_ENVELOPE",
    "MAX_ENVELOPE_AGE_MS",
    "MAX_ENVELOPE_PAYLOAD",
    "MAX_PREKEY_LIFETIME",
    "MIN_ENVELOPE",
    "PREKEY_CONTEXT",
    "PREKEY_LEN",
    "PROTOCOL_NAME",
    "EnvelopeHeader",
    "Opened",
    "PrekeyKind",
    "PrekeySecret",
    "SignedPrekey",
    "generate_prekey",
    "open_envelope",
    "padded_size",
    "payload_size",
    "prologue",
    "seal",
]

ENVELOPE_VERSION: Final = 1
PROTOCOL_NAME: Final = "Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b"
ID_LEN: Final = 16
# A whole sealed envelope; it travels in one session record (MbDeposit, MbEnvelope).
MAX_ENVELOPE: Final = 64_000
# An envelope sealed longer ago than this is refused when opened.
MAX_ENVELOPE_AGE_MS: Final = 40 * 24 * 3600 * 1000
# The longest a prekey may be valid for, from the time it is checked.
MAX_PREKEY_LIFETIME: Final = 90 * 24 * 3600

PREKEY_VERSION: Final = 1
PREKEY_CONTEXT: Final = b"onionpost prekey\x00"
_PREKEY_BODY: Final = struct.Struct(f">BB{ID_LEN}sQ{DHLEN}s{MLKEM768_PUBLIC_LEN}s")
_SIGNATURE_LEN: Final = 64
PREKEY_LEN: Final = _PREKEY_BODY.size + _SIGNATURE_LEN  # 1306
_SECRET_VERSION: Final = 1
_SECRET_LEN: Final = 1 + PREKEY_LEN + DHLEN + MLKEM768_SEED_LEN

_PROLOGUE_LABEL: Final = b"onionpost envelope"
_HEADER: Final = struct.Struct(f">B{ID_LEN}s{ID_LEN}s")
HEADER_LEN: Final = _HEADER.size  # 33
_PAYLOAD_VERSION: Final = 1
_U64_MAX: Final = 2**64 - 1
# sealed_ms is at least 2^32 so that msgpack always writes it in 9 bytes
# (uint 64) and payload_size() is exact: any time after 1970-02-19.
_MIN_SEALED_MS: Final = 2**32
# Bytes the Noise message adds to the payload: e, s with its tag, the payload's tag.
_NOISE_OVERHEAD: Final = DHLEN + (DHLEN + TAG_LEN) + TAG_LEN
# The payload array without its records: fixarray(5), 1, bin8 32, bin8 113, uint64.
_PAYLOAD_FIXED: Final = 1 + 1 + (2 + 32) + (2 + CERT_LEN) + 9
_MIN_PAYLOAD: Final = _PAYLOAD_FIXED + 1 + 2  # one empty record
MAX_ENVELOPE_PAYLOAD: Final = MAX_ENVELOPE - HEADER_LEN - MLKEM768_CIPHERTEXT_LEN - _NOISE_OVERHEAD
MIN_ENVELOPE: Final = HEADER_LEN + MLKEM768_CIPHERTEXT_LEN + _NOISE_OVERHEAD + _MIN_PAYLOAD
# A sealed envelope is padded to the smallest of these sizes that holds it,
# as the live protocol pads transport messages (spec.md §Padding), so that a
# mailbox sees one of three sizes, not the length of what was said: a short
# text or a few acks, a long text or a batch, and a file part.
ENVELOPE_BUCKETS: Final = (2048, 8192, MAX_ENVELOPE)
_FAILED: Final = "envelope did not open"
_PREKEY_REFUSED: Final = "prekey refused"

_PROTOCOL: Final = NoiseProtocol.from_name(PROTOCOL_NAME)


class PrekeyKind(enum.IntEnum):
    """A one-time prekey is handed out once; the last-resort prekey when none is left."""

    ONE_TIME = 1
    LAST_RESORT = 2


_KINDS: Final = frozenset(int(kind) for kind in PrekeyKind)


def _check_u64(value: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= _U64_MAX:
        raise ConfigError(f"{what} is an unsigned 64-bit integer")


def _prekey_body(kind: int, key_id: bytes, not_after: int, x25519: bytes, mlkem: bytes) -> bytes:
    return _PREKEY_BODY.pack(PREKEY_VERSION, kind, key_id, not_after, x25519, mlkem)


# -- signed prekeys -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignedPrekey:
    """One of the owner's prekeys, signed by its identity: what a mailbox hands out.

    Wire example (1306 bytes)::

        01                   version
        01                   kind: one-time
        <16>                 key_id
        00 00 00 00 6a d8 c8 80   not_after = 1792592000
        <32>                 X25519 public key
        <1184>               ML-KEM-768 encapsulation key
        <64>                 signature
    """

    kind: PrekeyKind
    key_id: bytes
    not_after: int
    x25519: bytes
    mlkem: bytes
    signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        # struct would silently pad a short field: every length is checked here.
        sizes = (
            (self.key_id, ID_LEN),
            (self.x25519, DHLEN),
            (self.mlkem, MLKEM768_PUBLIC_LEN),
            (self.signature, _SIGNATURE_LEN),
        )
        if not all(isinstance(value, bytes) and len(value) == size for value, size in sizes):
            raise ConfigError("a signed prekey's fields have the wrong sizes")
        if self.kind not in _KINDS:
            raise ConfigError(f"unknown prekey kind {self.kind!r}")
        object.__setattr__(self, "kind", PrekeyKind(self.kind))  # an int 1 becomes ONE_TIME
        _check_u64(self.not_after, "not_after")

    def __repr__(self) -> str:
        return (
            f"SignedPrekey({self.kind.name}, key_id={self.key_id.hex()}, "
            f"not_after={self.not_after})"
        )

    def _body(self) -> bytes:
        return _prekey_body(self.kind, self.key_id, self.not_after, self.x25519, self.mlkem)

    def to_bytes(self) -> bytes:
        return self._body() + self.signature

    @classmethod
    def parse(cls, data: bytes) -> SignedPrekey:
        """The structure only (see :meth:`verify`); MessageDecodeError if malformed."""
        if not isinstance(data, bytes) or len(data) != PREKEY_LEN:
            raise MessageDecodeError(f"a signed prekey is {PREKEY_LEN} bytes")
        version, kind, key_id, not_after, x25519, mlkem = _PREKEY_BODY.unpack_from(data)
        if version != PREKEY_VERSION:
            raise MessageDecodeError(f"unknown prekey version {version}")
        if kind not in _KINDS:
            raise MessageDecodeError(f"unknown prekey kind {kind}")
        signature = data[_PREKEY_BODY.size :]
        return cls(PrekeyKind(kind), key_id, not_after, x25519, mlkem, signature)

    def verify(self, owner: OnionAddress, *, now: int) -> None:
        """Check that ``owner`` signed this prekey and that it is valid at ``now`` (seconds).

        Valid: ``now <= not_after + CERT_CLOCK_SKEW``, and ``not_after`` at
        most :data:`MAX_PREKEY_LIFETIME` (plus the skew) after ``now``. Every
        failure raises the same :class:`AuthenticationError`.
        """
        message = PREKEY_CONTEXT + owner.public_key + self._body()
        try:
            ed25519_verify(owner.public_key, self.signature, message)
        except AuthenticationError:
            raise AuthenticationError(_PREKEY_REFUSED) from None
        valid = (
            now <= self.not_after + CERT_CLOCK_SKEW
            and self.not_after <= now + MAX_PREKEY_LIFETIME + CERT_CLOCK_SKEW
        )
        if not valid:
            raise AuthenticationError(_PREKEY_REFUSED)


@dataclass(frozen=True, slots=True)
class PrekeySecret:
    """The owner's private half of a prekey, for its encrypted store only.

    ``to_bytes``: ``u8 1 || signed prekey (1306) || X25519 private (32) ||
    ML-KEM-768 seed d || z (64)``, 1403 bytes.
    """

    public: SignedPrekey
    x25519_private: bytes = field(repr=False)
    mlkem_seed: bytes = field(repr=False)

    def to_bytes(self) -> bytes:
        return (
            bytes([_SECRET_VERSION])
            + self.public.to_bytes()
            + self.x25519_private
            + (self.mlkem_seed)
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PrekeySecret:
        """Read what :meth:`to_bytes` wrote; ConfigError if malformed or inconsistent."""
        if not isinstance(data, bytes) or len(data) != _SECRET_LEN or data[0] != _SECRET_VERSION:
            raise ConfigError("not a stored prekey secret")
        try:
            public = SignedPrekey.parse(data[1 : 1 + PREKEY_LEN])
        except MessageDecodeError as exc:
            raise ConfigError("not a stored prekey secret") from exc
        x25519_private = data[1 + PREKEY_LEN : 1 + PREKEY_LEN + DHLEN]
        mlkem_seed = data[1 + PREKEY_LEN + DHLEN :]
        # Both private keys must be those of the public prekey.
        consistent = constant_time_equal(
            KeyPair.from_private(x25519_private).public, public.x25519
        ) and constant_time_equal(KemKeyPair(mlkem_seed).public, public.mlkem)
        if not consistent:
            raise ConfigError("the stored prekey secret does not match its public prekey")
        return cls(public, x25519_private, mlkem_seed)


def generate_prekey(
    identity: Identity,
    kind: PrekeyKind,
    *,
    now: int,
    lifetime: int,
    x25519_private: bytes | None = None,
    mlkem_seed: bytes | None = None,
    key_id: bytes | None = None,
) -> PrekeySecret:
    """A new prekey valid until ``now + lifetime`` (seconds), signed by ``identity``.

    The keys and the key id are random unless given (for test vectors).
    """
    if not 0 < lifetime <= MAX_PREKEY_LIFETIME:
        raise ConfigError(f"a prekey lifetime is 1 to {MAX_PREKEY_LIFETIME} seconds")
    _check_u64(now, "now")
    _check_u64(now + lifetime, "not_after")
    if kind not in _KINDS:
        raise ConfigError(f"unknown prekey kind {kind!r}")
    kind = PrekeyKind(kind)
    if key_id is None:
        key_id = secrets.token_bytes(ID_LEN)
    if x25519_private is None:
        x25519_private = secrets.token_bytes(DHLEN)
    if mlkem_seed is None:
        mlkem_seed = secrets.token_bytes(MLKEM768_SEED_LEN)
    if not isinstance(key_id, bytes) or len(key_id) != ID_LEN:
        raise ConfigError(f"a prekey id is {ID_LEN} bytes")
    x25519 = KeyPair.from_private(x25519_private)
    mlkem = KemKeyPair(mlkem_seed)
    not_after = now + lifetime
    body = _prekey_body(kind, key_id, not_after, x25519.public, mlkem.public)
    signature = identity.sign(PREKEY_CONTEXT + identity.public_key + body)
    public = SignedPrekey(kind, key_id, not_after, x25519.public, mlkem.public, signature)
    return PrekeySecret(public, x25519_private, mlkem_seed)


# -- envelopes ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EnvelopeHeader:
    """The clear part of an envelope: enough for a mailbox to store it and for the
    owner to find the prekey it was sealed to."""

    envelope_id: bytes
    key_id: bytes

    @classmethod
    def parse(cls, data: bytes) -> EnvelopeHeader:
        """The header of a whole envelope; MessageDecodeError if malformed or too large."""
        if not isinstance(data, bytes):
            raise MessageDecodeError("an envelope is bytes")
        if not MIN_ENVELOPE <= len(data) <= MAX_ENVELOPE:
            raise MessageDecodeError(
                f"an envelope is {MIN_ENVELOPE} to {MAX_ENVELOPE} bytes, not {len(data)}"
            )
        version, envelope_id, key_id = _HEADER.unpack_from(data)
        if version != ENVELOPE_VERSION:
            raise MessageDecodeError(f"unknown envelope version {version}")
        return cls(envelope_id, key_id)


@dataclass(frozen=True, slots=True)
class Opened:
    """An opened envelope: who sealed it, when, and its records (opaque bytes)."""

    sender: OnionAddress
    envelope_id: bytes
    key_id: bytes
    sealed_ms: int
    records: tuple[bytes, ...] = field(repr=False)


def prologue(recipient: OnionAddress, envelope_id: bytes, key_id: bytes, kem_ct: bytes) -> bytes:
    """``"onionpost envelope" || u8 version || u8 56 || service id || ids || KEM ciphertext``."""
    service_id = recipient.service_id.encode("ascii")
    return b"".join(
        (
            _PROLOGUE_LABEL,
            bytes([ENVELOPE_VERSION, len(service_id)]),
            service_id,
            envelope_id,
            key_id,
            kem_ct,
        )
    )


def _bin_header_len(n: int) -> int:
    return 2 if n <= 0xFF else 3 if n <= 0xFFFF else 5


def _array_header_len(n: int) -> int:
    return 1 if n <= 15 else 3 if n <= 0xFFFF else 5


def payload_size(records: Sequence[bytes]) -> int:
    """The exact size of the payload (before encryption) that ``records`` make."""
    return (
        _PAYLOAD_FIXED
        + _array_header_len(len(records))
        + sum(_bin_header_len(len(r)) + len(r) for r in records)
    )


def padded_size(records: Sequence[bytes]) -> int:
    """The size of the envelope that ``records`` make once padded (a bucket)."""
    unpadded = MAX_ENVELOPE - MAX_ENVELOPE_PAYLOAD + payload_size(records)
    return next((b for b in ENVELOPE_BUCKETS if b >= unpadded), unpadded)


def _padding(gap: int) -> list[bytes | int]:
    """Payload elements of exactly ``gap`` bytes once packed: a ``bin`` of zeros
    as long as fits, then the integer 0 (one byte) for the byte a ``bin``
    header cannot make up (mailbox.md §3.4)."""
    elements: list[bytes | int] = []
    if gap >= 2:
        n = min(gap - _bin_header_len(gap - 2), gap - 2)
        if _bin_header_len(n) + n > gap:
            n -= 1
        elements.append(bytes(n))
        gap -= _bin_header_len(n) + n
    if gap == 1:
        elements.append(0)
    return elements


def seal(
    *,
    sender: Identity,
    static: StaticKey,
    recipient: OnionAddress,
    prekey: SignedPrekey,
    envelope_id: bytes,
    records: Sequence[bytes],
    sealed_ms: int,
    ephemeral: KeyPair | None = None,
    encapsulate: Encapsulator | None = None,
) -> bytes:
    """Seal ``records`` to ``recipient``'s ``prekey``: the envelope's bytes.

    The prekey is verified first (AuthenticationError if ``recipient`` did
    not sign it or it is not valid at ``sealed_ms``). LocalProtocolError if
    the records are none, are not bytes, or do not fit
    (:func:`payload_size` above :data:`MAX_ENVELOPE_PAYLOAD`), or if our
    static key's certificate is not valid then. ``ephemeral`` and
    ``encapsulate`` inject randomness, for test vectors only.
    """
    if not isinstance(envelope_id, bytes) or len(envelope_id) != ID_LEN:
        raise LocalProtocolError(f"an envelope id is {ID_LEN} bytes")
    if type(sealed_ms) is not int or not _MIN_SEALED_MS <= sealed_ms <= _U64_MAX:
        raise LocalProtocolError("sealed_ms is a time in milliseconds since the epoch")
    records = tuple(records)
    if not records or not all(isinstance(r, bytes) for r in records):
        raise LocalProtocolError("an envelope holds one or more records, as bytes")
    if payload_size(records) > MAX_ENVELOPE_PAYLOAD:
        raise LocalProtocolError(f"records larger than an envelope ({MAX_ENVELOPE_PAYLOAD} bytes)")
    now = sealed_ms // 1000
    prekey.verify(recipient, now=now)
    certificate = static.certificate.to_bytes()
    try:
        StaticKeyCertificate.verify(
            certificate, identity_key=sender.public_key, static_key=static.keypair.public, now=now
        )
    except AuthenticationError:
        raise LocalProtocolError("our static key's certificate is not valid now") from None

    kem_ct, kem_ss = (encapsulate or mlkem768_encapsulate)(prekey.mlkem)
    if len(kem_ct) != MLKEM768_CIPHERTEXT_LEN or len(kem_ss) != MLKEM_SHARED_LEN:
        raise LocalProtocolError("the encapsulation is not ML-KEM-768's")
    handshake = HandshakeState(
        _PROTOCOL,
        initiator=True,
        prologue=prologue(recipient, envelope_id, prekey.key_id, kem_ct),
        static=static.keypair,
        remote_static=prekey.x25519,
        psks=[kem_ss],
        ephemeral=ephemeral,
    )
    unpadded = [_PAYLOAD_VERSION, sender.public_key, certificate, sealed_ms, list(records)]
    gap = padded_size(records) - (MAX_ENVELOPE - MAX_ENVELOPE_PAYLOAD) - payload_size(records)
    payload = _msgpack.pack([*unpadded, *_padding(gap)])
    message = handshake.write_message(payload)
    header = _HEADER.pack(ENVELOPE_VERSION, envelope_id, prekey.key_id)
    return header + kem_ct + message


def open_envelope(
    data: bytes, *, recipient: OnionAddress, secret: PrekeySecret, now_ms: int
) -> Opened:
    """Open an envelope sealed to ``secret``'s prekey of ``recipient``.

    Every failure (malformed, sealed to another prekey or address, altered,
    a bad certificate, sealed more than :data:`MAX_ENVELOPE_AGE_MS` ago or
    in the future beyond the clock skew) raises the same
    :class:`AuthenticationError` with the same text.
    """
    try:
        return _open(data, recipient=recipient, secret=secret, now_ms=now_ms)
    except RemoteProtocolError:
        raise AuthenticationError(_FAILED) from None


def _open(data: bytes, *, recipient: OnionAddress, secret: PrekeySecret, now_ms: int) -> Opened:
    header = EnvelopeHeader.parse(data)
    if not constant_time_equal(header.key_id, secret.public.key_id):
        raise AuthenticationError(_FAILED)
    kem_ct = data[HEADER_LEN : HEADER_LEN + MLKEM768_CIPHERTEXT_LEN]
    kem_ss = KemKeyPair(secret.mlkem_seed).decapsulate(kem_ct)
    handshake = HandshakeState(
        _PROTOCOL,
        initiator=False,
        prologue=prologue(recipient, header.envelope_id, header.key_id, kem_ct),
        static=KeyPair.from_private(secret.x25519_private),
        psks=[kem_ss],
    )
    plaintext = handshake.read_message(data[HEADER_LEN + MLKEM768_CIPHERTEXT_LEN :])
    sender_static = handshake.result().remote_static
    identity_key, certificate, sealed_ms, records = _decode_payload(plaintext)
    if sender_static is None:
        raise AuthenticationError(_FAILED)
    now = sealed_ms // 1000
    StaticKeyCertificate.verify(
        certificate, identity_key=identity_key, static_key=sender_static, now=now
    )
    fresh = (
        sealed_ms <= now_ms + CERT_CLOCK_SKEW * 1000
        and now_ms - sealed_ms <= MAX_ENVELOPE_AGE_MS
        # The prekey was valid when the envelope says it was sealed (seal() checked it).
        and now <= secret.public.not_after + CERT_CLOCK_SKEW
    )
    if not fresh:
        raise AuthenticationError(_FAILED)
    try:
        sender = OnionAddress(identity_key)
    except OnionpostError:
        raise AuthenticationError(_FAILED) from None
    return Opened(sender, header.envelope_id, header.key_id, sealed_ms, records)


def _decode_payload(plaintext: bytes) -> tuple[bytes, bytes, int, tuple[bytes, ...]]:
    """``[1, identity key, certificate, sealed_ms, [record, ...], ...extras]``, canonical."""
    if len(plaintext) > MAX_ENVELOPE_PAYLOAD:
        raise AuthenticationError(_FAILED)
    try:
        obj: Any = _msgpack.unpack(
            plaintext, max_len=MAX_ENVELOPE_PAYLOAD, max_items=MAX_ENVELOPE_PAYLOAD
        )
    except _msgpack.NotMsgpack:
        raise AuthenticationError(_FAILED) from None
    # One encoding only: what we would write ourselves (no long forms of short values).
    canonical = _msgpack.pack(obj) == plaintext
    well_formed = (
        canonical
        and type(obj) is tuple
        and len(obj) >= 5
        and type(obj[0]) is int
        and obj[0] == _PAYLOAD_VERSION
        and type(obj[1]) is bytes
        and len(obj[1]) == 32
        and type(obj[2]) is bytes
        and len(obj[2]) == CERT_LEN
        and type(obj[3]) is int
        and _MIN_SEALED_MS <= obj[3] <= _U64_MAX
        and type(obj[4]) is tuple
        and len(obj[4]) >= 1
        and all(type(r) is bytes for r in obj[4])
    )
    if not well_formed:
        raise AuthenticationError(_FAILED)
    return obj[1], obj[2], obj[3], obj[4]
