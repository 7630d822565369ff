"""Endpoint identities and the certificate that binds a Noise static key to one.

Theory of operation
-------------------
An endpoint *is* its Ed25519 identity key: the v3 onion address is that
public key (rend-spec-v3 §6), so dialing an address already names whom we
want. The Noise handshake, though, authenticates an X25519 *static* key.
A :class:`StaticKeyCertificate`, signed by the identity key, binds the two::

    certificate (113 bytes):
      version      u8      = 1
      not_before   u64 BE  seconds since the Unix epoch
      not_after    u64 BE  seconds since the Unix epoch
      static_key   32      X25519 public key
      signature    64      Ed25519 over CONTEXT || the 49 bytes above
    CONTEXT = b"onionpost static-key certificate\\x00"

The context string separates these signatures from any other use of the
identity key (tor signs descriptors with keys derived from it, never with
this prefix). Validity: a certificate is issued for
:data:`CERT_LIFETIME` (90 days) and the daemon rotates the static key once
less than :data:`CERT_RENEW_BEFORE` (30 days) remains, so a stolen static
key is useful for a bounded time; verification allows
:data:`CERT_CLOCK_SKEW` of clock difference at both ends.

Verification raises :class:`~onionpost.errors.AuthenticationError`, always
with the same text, and never returns a bool. Time is passed in: this
module reads no clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Final

from onionpost.errors import AuthenticationError, ConfigError
from onionpost.proto._crypto import KeyPair, SigningKey, constant_time_equal, ed25519_verify
from onionpost.proto.address import OnionAddress

__all__ = [
    "CERT_CLOCK_SKEW",
    "CERT_LEN",
    "CERT_LIFETIME",
    "CERT_RENEW_BEFORE",
    "Identity",
    "StaticKey",
    "StaticKeyCertificate",
    "verify_signature",
]

CERT_VERSION: Final = 1
CERT_CONTEXT: Final = b"onionpost static-key certificate\x00"
CERT_LIFETIME: Final = 90 * 24 * 3600
CERT_RENEW_BEFORE: Final = 30 * 24 * 3600
CERT_CLOCK_SKEW: Final = 24 * 3600
_CERT_BODY: Final = struct.Struct(">BQQ32s")
CERT_LEN: Final = _CERT_BODY.size + 64
_FAILED: Final = "handshake failed"


def verify_signature(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Ed25519 verification; raises :class:`AuthenticationError` on any failure."""
    ed25519_verify(public_key, signature, message)


class Identity:
    """An endpoint's Ed25519 identity key. Its address is its public face."""

    __slots__ = ("_key", "address", "public_key")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ConfigError("an identity seed is 32 bytes")
        self._key = SigningKey(seed)
        self.public_key = self._key.public
        self.address = OnionAddress.from_public_key(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(SigningKey.generate().seed)

    @property
    def seed(self) -> bytes:
        """The private seed, for storage encrypted at rest and for tor's ADD_ONION."""
        return self._key.seed

    def __repr__(self) -> str:
        return f"Identity({self.address})"

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def certify(self, static_public: bytes, *, now: int) -> StaticKeyCertificate:
        """Issue a certificate for ``static_public``, valid from ``now``."""
        return StaticKeyCertificate.issue(self, static_public, now=now)


@dataclass(frozen=True, slots=True)
class StaticKeyCertificate:
    """An identity's signed statement that ``static_key`` is its Noise static key."""

    not_before: int
    not_after: int
    static_key: bytes
    signature: bytes = field(repr=False)

    @classmethod
    def issue(
        cls, identity: Identity, static_public: bytes, *, now: int, lifetime: int = CERT_LIFETIME
    ) -> StaticKeyCertificate:
        if len(static_public) != 32:
            raise ConfigError("a static key is 32 bytes")
        body = _CERT_BODY.pack(CERT_VERSION, now, now + lifetime, static_public)
        return cls(now, now + lifetime, static_public, identity.sign(CERT_CONTEXT + body))

    def to_bytes(self) -> bytes:
        body = _CERT_BODY.pack(CERT_VERSION, self.not_before, self.not_after, self.static_key)
        return body + self.signature

    @classmethod
    def verify(
        cls, data: bytes, *, identity_key: bytes, static_key: bytes, now: int
    ) -> StaticKeyCertificate:
        """Parse and check a certificate: signed by ``identity_key``, for
        ``static_key`` (the key the handshake authenticated), valid at ``now``.

        Every failure raises the same :class:`AuthenticationError`.
        """
        if len(data) != CERT_LEN:
            raise AuthenticationError(_FAILED)
        version, not_before, not_after, certified = _CERT_BODY.unpack_from(data)
        signature = data[_CERT_BODY.size :]
        # Check the signature first and every field after it, so that the
        # work done does not depend on which field is wrong.
        verify_signature(identity_key, signature, CERT_CONTEXT + data[: _CERT_BODY.size])
        valid = (
            version == CERT_VERSION
            and constant_time_equal(certified, static_key)
            and not_before - CERT_CLOCK_SKEW <= now <= not_after + CERT_CLOCK_SKEW
            # A certificate may not outlive the lifetime the spec gives (§2.3):
            # without this bound a stolen static key certified until 2^64 would
            # be good forever.
            and 0 <= not_after - not_before <= CERT_LIFETIME
        )
        if not valid:
            raise AuthenticationError(_FAILED)
        return cls(not_before, not_after, certified, signature)

    def needs_renewal(self, now: int) -> bool:
        return now >= self.not_after - CERT_RENEW_BEFORE


class StaticKey:
    """The endpoint's current Noise static key pair and its certificate."""

    __slots__ = ("certificate", "keypair")

    def __init__(self, keypair: KeyPair, certificate: StaticKeyCertificate) -> None:
        if keypair.public != certificate.static_key:
            raise ConfigError("the certificate is for another static key")
        self.keypair = keypair
        self.certificate = certificate

    @classmethod
    def generate(cls, identity: Identity, *, now: int) -> StaticKey:
        keypair = KeyPair.generate()
        return cls(keypair, identity.certify(keypair.public, now=now))

    def __repr__(self) -> str:
        return f"StaticKey(valid until {self.certificate.not_after})"
