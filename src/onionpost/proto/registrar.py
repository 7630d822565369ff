"""The registrar's enrolment code and the pure decisions of enrolment, renewal
and refresh (``protocol-spec/trust.md`` §8).

Theory of operation
-------------------
The agency's registrar (a home run as a service, like a mailbox) hands an
operator an :class:`EnrolmentCode` for one endpoint; the endpoint's operator
types it into ``onionpost trust enrol``. Like a mailbox's setup code it names
the registrar and carries a 32-byte secret from which both sides derive a tor
client-authorization key (so that the endpoint can reach the registrar's
client-authorized onion service before the registrar knows it) and a token
the endpoint presents (the registrar stores only its digest). Text form
(111 base32 characters after the prefix)::

    onionpost-registrar1:<base32 of: version u8 = 1 || registrar identity key (32)
                                     || secret (32) || checksum (4)>
    checksum = BLAKE2b-512(version || identity key || secret)[:4]

Derivations (keyed BLAKE2b-256, the secret as key, one label each, none a
mailbox's label, so no code of one kind works as the other)::

    client-auth private = clamp(BLAKE2b(key=secret, "onionpost registrar client-auth"))
    token               = BLAKE2b(key=secret, "onionpost registrar token")
    token digest        = BLAKE2b(key=token,  "onionpost registrar token digest")

The endpoint enrols over a session whose handshake proved its identity key
(the address it is endorsed at is the session's peer, never a field of the
request), so possession of the key is proven by the handshake itself.

The decisions here are plain functions of state and ``now`` (POSIX seconds):
:func:`renewal_due` (less than a third of an endorsement's lifetime left,
trust.md §5) and :func:`list_due` (a new list when the last was issued a
refresh interval ago).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Final

from onionpost.errors import ConfigError
from onionpost.limits import MAX_REGISTRAR_REFRESH, MIN_REGISTRAR_REFRESH
from onionpost.proto._crypto import KeyPair, constant_time_equal
from onionpost.proto.address import OnionAddress

__all__ = [
    "ENROL_PREFIX",
    "ENROL_TEXT_LEN",
    "EnrolmentCode",
    "check_refresh",
    "enrol_digest",
    "list_due",
    "renewal_due",
]

ENROL_PREFIX: Final = "onionpost-registrar1:"
_VERSION: Final = 1
_SECRET_LEN: Final = 32
_KEY_LEN: Final = 32
_CHECKSUM_LEN: Final = 4
_CODE_BYTES: Final = 1 + _KEY_LEN + _SECRET_LEN + _CHECKSUM_LEN
ENROL_TEXT_LEN: Final = len(base64.b32encode(bytes(_CODE_BYTES)).rstrip(b"="))  # 111
_BASE32: Final = frozenset("abcdefghijklmnopqrstuvwxyz234567")
_CLIENT_AUTH_LABEL: Final = b"onionpost registrar client-auth"
_TOKEN_LABEL: Final = b"onionpost registrar token"
_DIGEST_LABEL: Final = b"onionpost registrar token digest"
_WHAT: Final = "registrar enrolment code"


def _keyed(key: bytes, label: bytes) -> bytes:
    return hashlib.blake2b(label, key=key, digest_size=32).digest()


def _checksum(data: bytes) -> bytes:
    return hashlib.blake2b(data).digest()[:_CHECKSUM_LEN]


@dataclass(frozen=True, slots=True)
class EnrolmentCode:
    """What a registrar's operator hands an endpoint to enrol. The text is a secret."""

    registrar: OnionAddress
    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or len(self.secret) != _SECRET_LEN:
            raise ConfigError(f"an enrolment code's secret is {_SECRET_LEN} bytes")

    @classmethod
    def generate(cls, registrar: OnionAddress) -> EnrolmentCode:
        return cls(registrar, secrets.token_bytes(_SECRET_LEN))

    def to_text(self) -> str:
        data = bytes([_VERSION]) + self.registrar.public_key + self.secret
        encoded = base64.b32encode(data + _checksum(data)).decode("ascii")
        return ENROL_PREFIX + encoded.rstrip("=").lower()

    @classmethod
    def parse(cls, text: str) -> EnrolmentCode:
        """Read a typed or pasted code; :class:`ConfigError` saying what is wrong.
        Surrounding whitespace and letter case do not matter."""
        if not isinstance(text, str):
            raise ConfigError(f"a {_WHAT} is text")
        lowered = text.strip().lower()
        if not lowered.startswith(ENROL_PREFIX):
            raise ConfigError(f"not a {_WHAT}: it must start with {ENROL_PREFIX!r}")
        body = lowered[len(ENROL_PREFIX) :]
        if not _BASE32.issuperset(body):
            raise ConfigError(f"{_WHAT} has characters outside base32 (a-z, 2-7): mistyped?")
        if len(body) != ENROL_TEXT_LEN:
            raise ConfigError(
                f"{_WHAT} has {len(body)} characters after the prefix, not {ENROL_TEXT_LEN}"
            )
        raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        data, checksum = raw[:-_CHECKSUM_LEN], raw[-_CHECKSUM_LEN:]
        canonical = base64.b32encode(raw).decode("ascii").rstrip("=").lower() == body
        if not canonical or not constant_time_equal(checksum, _checksum(data)):
            raise ConfigError(f"{_WHAT} is mistyped: its checksum does not match")
        if data[0] != _VERSION:
            raise ConfigError(f"{_WHAT} of unsupported version {data[0]}")
        return cls(OnionAddress(data[1 : 1 + _KEY_LEN]), data[1 + _KEY_LEN :])

    def client_auth_private(self) -> bytes:
        """The X25519 private key (clamped, RFC 7748) of the endpoint's tor
        client authorization at the registrar while it enrols."""
        key = bytearray(_keyed(self.secret, _CLIENT_AUTH_LABEL))
        key[0] &= 248
        key[31] &= 127
        key[31] |= 64
        return bytes(key)

    def client_auth_public(self) -> bytes:
        return KeyPair.from_private(self.client_auth_private()).public

    def token(self) -> bytes:
        """32 bytes that prove to the registrar that the endpoint holds the code."""
        return _keyed(self.secret, _TOKEN_LABEL)


def enrol_digest(token: bytes) -> bytes:
    """What the registrar keeps in place of a token (32 bytes)."""
    if not isinstance(token, bytes) or len(token) != _KEY_LEN:
        raise ConfigError("an enrolment token is 32 bytes")
    return _keyed(token, _DIGEST_LABEL)


def renewal_due(valid_from: int, valid_until: int, now: int) -> bool:
    """An endorsement is renewed when less than a third of its lifetime is left
    (trust.md §5), or once it has ended."""
    return 3 * (valid_until - now) < valid_until - valid_from


def list_due(issued_at: int | None, now: int, refresh: int) -> bool:
    """The registrar signs a new list when it has none, or when the last was
    issued ``refresh`` seconds ago or more (or in the future: a clock set back)."""
    return issued_at is None or not 0 <= now - issued_at < refresh


def check_refresh(seconds: float) -> int:
    """A refresh interval (``trust_refresh``, ``registrar_refresh``): whole
    seconds, from :data:`MIN_REGISTRAR_REFRESH` to :data:`MAX_REGISTRAR_REFRESH`."""
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not MIN_REGISTRAR_REFRESH <= seconds <= MAX_REGISTRAR_REFRESH
    ):
        raise ConfigError(
            f"a refresh interval is {MIN_REGISTRAR_REFRESH} to {MAX_REGISTRAR_REFRESH} seconds"
        )
    return int(seconds)
