"""Tor v3 onion addresses, and the one key transformation tor needs from us.

Theory of operation
-------------------
A v3 onion address is the service's ed25519 identity public key, written in
lower-case base32 with a checksum and a version byte (rend-spec-v3 §6,
"Encoding onion addresses")::

    onion_address = base32(PUBKEY | CHECKSUM | VERSION) + ".onion"
    CHECKSUM      = SHA3-256(".onion checksum" | PUBKEY | VERSION)[:2]
    VERSION       = 0x03

32 + 2 + 1 = 35 bytes, which base32 writes in exactly 56 characters with no
padding. Wire example (tor's ``src/test/test_hs_common.c``, test_build_address,
public key = 32 bytes of 0x42)::

    ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbezhid.onion

:class:`OnionAddress` holds only the public key; every textual form is derived
from it, so two addresses are equal exactly when their keys are.

Errors
------
:meth:`OnionAddress.parse` raises :class:`~onionpost.errors.ConfigError`: the
text it is given is configuration (a contact entered by an operator, a command
line argument). A caller that parses text received from a peer owns that
boundary and re-raises as a :class:`~onionpost.errors.RemoteProtocolError`
subclass there; the address module cannot know which protocol state it is in.
Messages name what is wrong, never echo more than the offending length.

:func:`expanded_secret_key` is the only key handling here: it turns a 32-byte
ed25519 seed into the 64-byte "expanded" secret key that tor's control port
expects in ``ADD_ONION ED25519-V3:<base64>`` (control-spec §3.27). It is pure
hashing, without I/O.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Final

from onionpost.errors import ConfigError

__all__ = ["ONION_SUFFIX", "OnionAddress", "expanded_secret_key"]

ONION_SUFFIX: Final = ".onion"
ED25519_PUBLIC_LEN: Final = 32
ED25519_SEED_LEN: Final = 32
ED25519_EXPANDED_LEN: Final = 64
SERVICE_ID_LEN: Final = 56  # base32 of 35 bytes (rend-spec-v3 §6)

_VERSION: Final = 3
_CHECKSUM_PREFIX: Final = b".onion checksum"
_CHECKSUM_LEN: Final = 2
_DECODED_LEN: Final = ED25519_PUBLIC_LEN + _CHECKSUM_LEN + 1
_BASE32_ALPHABET: Final = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def _checksum(public_key: bytes) -> bytes:
    # rend-spec-v3 §6: CHECKSUM = H(".onion checksum" | PUBKEY | VERSION)[:2], H = SHA3-256.
    digest = hashlib.sha3_256(_CHECKSUM_PREFIX + public_key + bytes([_VERSION])).digest()
    return digest[:_CHECKSUM_LEN]


@dataclass(frozen=True, slots=True)
class OnionAddress:
    """A v3 onion address: the ed25519 identity public key of an onion service."""

    public_key: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.public_key, bytes) or len(self.public_key) != ED25519_PUBLIC_LEN:
            raise ConfigError(
                f"an onion service public key is {ED25519_PUBLIC_LEN} bytes of ed25519 key"
            )

    @classmethod
    def from_public_key(cls, ed25519_pub: bytes) -> OnionAddress:
        """The address of the service whose identity public key is ``ed25519_pub``."""
        return cls(bytes(ed25519_pub))

    @classmethod
    def parse(cls, text: str) -> OnionAddress:
        """Parse ``<56 base32 chars>[.onion]``, in any letter case.

        Checks, in order: length, alphabet, version byte, checksum
        (rend-spec-v3 §6). Raises :class:`ConfigError` naming the first that
        fails.
        """
        if not isinstance(text, str):
            raise ConfigError("an onion address must be text")
        lowered = text.lower()
        if lowered.endswith(ONION_SUFFIX):
            lowered = lowered[: -len(ONION_SUFFIX)]
        if len(lowered) != SERVICE_ID_LEN:
            raise ConfigError(
                f"not a v3 onion address: expected {SERVICE_ID_LEN} base32 characters "
                f"before '.onion', got {len(lowered)}"
            )
        if not _BASE32_ALPHABET.issuperset(lowered):
            raise ConfigError("not a v3 onion address: characters outside base32 (a-z, 2-7)")
        # 56 characters are exactly 35 bytes: no padding, nothing left over.
        decoded = base64.b32decode(lowered.upper())
        assert len(decoded) == _DECODED_LEN
        public_key = decoded[:ED25519_PUBLIC_LEN]
        checksum = decoded[ED25519_PUBLIC_LEN : ED25519_PUBLIC_LEN + _CHECKSUM_LEN]
        version = decoded[-1]
        if version != _VERSION:
            raise ConfigError(f"not a v3 onion address: version byte is {version}, expected 3")
        if checksum != _checksum(public_key):
            raise ConfigError("not a v3 onion address: checksum does not match (a typo?)")
        return cls(public_key)

    @classmethod
    def in_text(cls, text: str) -> OnionAddress | None:
        """``text`` (spaces around it ignored) as an onion address, as
        :meth:`parse` reads one; None when it is not one."""
        try:
            return cls.parse(text.strip())
        except ConfigError:
            return None

    @property
    def service_id(self) -> str:
        """The 56 lower-case base32 characters, as tor's control port writes them."""
        raw = self.public_key + _checksum(self.public_key) + bytes([_VERSION])
        return base64.b32encode(raw).decode("ascii").lower()

    @property
    def hostname(self) -> str:
        """``<service_id>.onion``, what a SOCKS client asks tor to connect to."""
        return self.service_id + ONION_SUFFIX

    def __str__(self) -> str:
        return self.hostname

    def __repr__(self) -> str:
        return f"OnionAddress({self.hostname!r})"


def expanded_secret_key(seed: bytes) -> bytes:
    """The 64-byte expanded ed25519 secret key tor takes for ``ED25519-V3:``.

    RFC 8032 §5.1.5: ``h = SHA-512(seed)``; the first half, clamped, is the
    secret scalar ``a``; the second half is the nonce prefix. Tor stores and
    accepts this expanded form (control-spec ADD_ONION, "ED25519-V3" key blob),
    so the seed itself never reaches tor. Clamping::

        a[0] &= 248; a[31] &= 127; a[31] |= 64

    The result is secret: never log it or put it in a message.
    """
    if not isinstance(seed, bytes) or len(seed) != ED25519_SEED_LEN:
        raise ConfigError(f"an ed25519 seed is {ED25519_SEED_LEN} bytes")
    h = bytearray(hashlib.sha512(seed).digest())
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    assert len(h) == ED25519_EXPANDED_LEN
    return bytes(h)
