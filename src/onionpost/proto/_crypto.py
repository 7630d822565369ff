"""The hazardous layer: thin wrappers over the cryptographic primitives.

Everything above this module handles keys as opaque ``bytes`` and calls these
functions; nothing above it imports pynacl or cryptography. Errors of those
libraries are translated here, and only here, into ours.

Providers were chosen on measurements made on the project's machines (see
``protocol-spec/noise.md`` §Providers):

- X25519 and Ed25519: pynacl (libsodium), ~47 us a shared secret against ~89 us for
  ``cryptography``'s object API, whose per-call key objects cost more than the
  curve arithmetic. libsodium also refuses an all-zero result, which Noise asks
  us to reject.
- ChaCha20-Poly1305: ``cryptography`` with one cached AEAD object per key,
  ~1.7 us per 1 KiB message against ~7.4 us for pynacl's binding, and
  ~2.3x pynacl's throughput at 64 KiB.
- BLAKE2b, SHA-256 and HMAC: the standard library (``hashlib``, ``hmac``).
- ML-KEM-768 (FIPS 203) and ML-DSA-65 (FIPS 204): ``cryptography``, the only
  well-kept provider (agency statements, ``protocol-spec/trust.md`` §1).

Secrets never appear in ``repr``: key holders define their own.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Protocol

from cryptography.exceptions import InvalidSignature, InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import mldsa, mlkem
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl import bindings as _sodium
from nacl import exceptions as _nacl_exc

from onionpost.errors import AuthenticationError, ConfigError, DecryptError

DHLEN: Final = 32
KEY_LEN: Final = 32
ED25519_SEED_LEN: Final = 32
ED25519_PUBLIC_LEN: Final = 32
ED25519_SIGNATURE_LEN: Final = 64
TAG_LEN: Final = 16
MLKEM768_PUBLIC_LEN: Final = 1184
MLKEM768_CIPHERTEXT_LEN: Final = 1088
MLKEM768_SEED_LEN: Final = 64
MLKEM_SHARED_LEN: Final = 32
MLDSA65_SEED_LEN: Final = 32
MLDSA65_PUBLIC_LEN: Final = 1952
MLDSA65_SIGNATURE_LEN: Final = 3309

constant_time_equal = hmac.compare_digest


# -- X25519 -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyPair:
    """An X25519 key pair. The private half never shows in ``repr``."""

    private: bytes = field(repr=False)
    public: bytes

    @classmethod
    def from_private(cls, private: bytes) -> KeyPair:
        if len(private) != DHLEN:
            raise ConfigError("an X25519 private key is 32 bytes")
        return cls(private, _sodium.crypto_scalarmult_base(private))

    @classmethod
    def generate(cls) -> KeyPair:
        return cls.from_private(os.urandom(DHLEN))


def x25519(private: bytes, public: bytes) -> bytes:
    """X25519(private, public) (RFC 7748).

    An all-zero result, which a low-order or zero public key produces, is
    refused (Noise §12.1 allows it; we take the stricter option).
    """
    try:
        return _sodium.crypto_scalarmult(private, public)
    except (_nacl_exc.RuntimeError, _nacl_exc.TypeError, _nacl_exc.ValueError) as exc:
        raise AuthenticationError("handshake failed") from exc


# -- Ed25519 (RFC 8032) --------------------------------------------------------------


class SigningKey:
    """An Ed25519 signing key made from its 32-byte seed. The seed never shows in ``repr``."""

    __slots__ = ("_secret", "public", "seed")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != ED25519_SEED_LEN:
            raise ConfigError("an Ed25519 seed is 32 bytes")
        # libsodium's secret key is seed || public key (64 bytes).
        self.public, self._secret = _sodium.crypto_sign_seed_keypair(seed)
        self.seed = seed

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(ED25519_SEED_LEN))

    def __repr__(self) -> str:
        return "SigningKey(<seed>)"

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        signed: bytes = _sodium.crypto_sign(message, self._secret)
        return signed[:ED25519_SIGNATURE_LEN]


def ed25519_public_key(seed: bytes) -> bytes:
    """The public key of an Ed25519 seed (an onion address is made of it)."""
    return SigningKey(seed).public


def ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> None:
    """Ed25519 verification; raises :class:`AuthenticationError` on any failure.

    Never returns a bool; the error text is the same for every cause.
    """
    if (
        not isinstance(public_key, bytes)
        or not isinstance(signature, bytes)
        or not isinstance(message, bytes)
        or len(public_key) != ED25519_PUBLIC_LEN
        or len(signature) != ED25519_SIGNATURE_LEN
    ):
        raise AuthenticationError("handshake failed")
    try:
        _sodium.crypto_sign_open(signature + message, public_key)
    except (_nacl_exc.BadSignatureError, _nacl_exc.ValueError, _nacl_exc.TypeError) as exc:
        raise AuthenticationError("handshake failed") from exc


# -- ChaCha20-Poly1305 ------------------------------------------------------------


class ChaChaPoly:
    """ChaCha20-Poly1305 (RFC 8439) under one key, with Noise's nonce encoding.

    Noise §12.3: the 96-bit nonce is 32 bits of zeros followed by the
    little-endian 64-bit counter.
    """

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        self._aead = ChaCha20Poly1305(key)

    def __repr__(self) -> str:
        return "ChaChaPoly(<key>)"

    def encrypt(self, n: int, ad: bytes, plaintext: bytes) -> bytes:
        return self._aead.encrypt(b"\x00\x00\x00\x00" + n.to_bytes(8, "little"), plaintext, ad)

    def decrypt(self, n: int, ad: bytes, ciphertext: bytes) -> bytes:
        try:
            return self._aead.decrypt(b"\x00\x00\x00\x00" + n.to_bytes(8, "little"), ciphertext, ad)
        except InvalidTag as exc:
            raise DecryptError("authentication failed") from exc


# -- Hashes -------------------------------------------------------------------------


class _Digest(Protocol):
    def digest(self) -> bytes: ...


@dataclass(frozen=True, slots=True)
class HashFunction:
    """A Noise hash function (Noise §4.3) with its HMAC and HKDF.

    HMAC goes through ``hmac.digest`` with OpenSSL's digest name, its C fast
    path (``hmac.new`` with a constructor takes a pure-Python path, about
    twice as slow per HKDF).
    """

    name: str
    openssl_name: str
    hashlen: int
    blocklen: int
    new: Callable[[bytes], _Digest]

    def hash(self, data: bytes) -> bytes:
        return self.new(data).digest()

    def hmac(self, key: bytes, data: bytes) -> bytes:
        return hmac.digest(key, data, self.openssl_name)

    def hkdf2(self, chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        """Noise §4.3 HKDF with two outputs."""
        name = self.openssl_name
        temp = hmac.digest(chaining_key, ikm, name)
        out1 = hmac.digest(temp, b"\x01", name)
        return out1, hmac.digest(temp, out1 + b"\x02", name)

    def hkdf3(self, chaining_key: bytes, ikm: bytes) -> tuple[bytes, bytes, bytes]:
        """Noise §4.3 HKDF with three outputs."""
        name = self.openssl_name
        temp = hmac.digest(chaining_key, ikm, name)
        out1 = hmac.digest(temp, b"\x01", name)
        out2 = hmac.digest(temp, out1 + b"\x02", name)
        return out1, out2, hmac.digest(temp, out2 + b"\x03", name)


HASHES: Final[dict[str, HashFunction]] = {
    "BLAKE2b": HashFunction("BLAKE2b", "blake2b512", 64, 128, hashlib.blake2b),
    "SHA256": HashFunction("SHA256", "sha256", 32, 64, hashlib.sha256),
}


# -- ML-KEM-768 (FIPS 203) -------------------------------------------------------------


class KemKeyPair:
    """An ML-KEM-768 decapsulation key and its encapsulation (public) key."""

    __slots__ = ("_private", "public")

    def __init__(self, seed: bytes | None = None) -> None:
        if seed is None:
            self._private = mlkem.MLKEM768PrivateKey.generate()
        else:
            if len(seed) != MLKEM768_SEED_LEN:
                raise ConfigError("an ML-KEM-768 seed is 64 bytes (d || z)")
            self._private = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed)
        self.public = self._private.public_key().public_bytes_raw()

    def __repr__(self) -> str:
        return "KemKeyPair(<private>)"

    def decapsulate(self, ciphertext: bytes) -> bytes:
        # ML-KEM decapsulation never fails on a well-sized ciphertext
        # (implicit rejection, FIPS 203 §6.3): a forged one yields a
        # pseudorandom secret that makes the next AEAD tag fail.
        try:
            return self._private.decapsulate(ciphertext)
        except ValueError as exc:
            raise AuthenticationError("handshake failed") from exc


Encapsulator = Callable[[bytes], tuple[bytes, bytes]]
"""``encapsulate(public_key) -> (ciphertext, shared_secret)``; injectable for vectors."""


def mlkem768_encapsulate(public_key: bytes) -> tuple[bytes, bytes]:
    """Encapsulate to an ML-KEM-768 public key: ``(ciphertext, shared_secret)``."""
    try:
        key = mlkem.MLKEM768PublicKey.from_public_bytes(public_key)
    except ValueError as exc:
        # FIPS 203 §7.2 input check: a malformed encapsulation key.
        raise AuthenticationError("handshake failed") from exc
    secret, ciphertext = key.encapsulate()
    return ciphertext, secret


# -- ML-DSA-65 (FIPS 204) -------------------------------------------------------------


_NO_MLDSA: Final = (
    "this build of the cryptography package has no ML-DSA: use Ed25519-only agency keys"
)


class MlDsaKey:
    """An ML-DSA-65 signing key made from its 32-byte seed (FIPS 204 §6.1 ``xi``).

    Signing is hedged (randomised, FIPS 204 §3.4): two signatures of one
    message differ, and both verify. The seed never shows in ``repr``."""

    __slots__ = ("_private", "public", "seed")

    def __init__(self, seed: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) != MLDSA65_SEED_LEN:
            raise ConfigError("an ML-DSA-65 seed is 32 bytes")
        self.seed = seed
        try:
            self._private = mldsa.MLDSA65PrivateKey.from_seed_bytes(seed)
        except UnsupportedAlgorithm as exc:
            raise ConfigError(_NO_MLDSA) from exc
        self.public = self._private.public_key().public_bytes_raw()

    @classmethod
    def generate(cls) -> MlDsaKey:
        return cls(os.urandom(MLDSA65_SEED_LEN))

    def __repr__(self) -> str:
        return "MlDsaKey(<seed>)"

    def sign(self, message: bytes, context: bytes) -> bytes:
        """The 3309-byte signature of ``message`` under the context string ``context``."""
        return self._private.sign(message, context)


def mldsa65_verify(public_key: bytes, signature: bytes, message: bytes, context: bytes) -> None:
    """ML-DSA-65 verification; raises :class:`AuthenticationError` on any failure."""
    if (
        not isinstance(public_key, bytes)
        or not isinstance(signature, bytes)
        or len(public_key) != MLDSA65_PUBLIC_LEN
        or len(signature) != MLDSA65_SIGNATURE_LEN
    ):
        raise AuthenticationError("handshake failed")
    try:
        key = mldsa.MLDSA65PublicKey.from_public_bytes(public_key)
        key.verify(signature, message, context)
    except UnsupportedAlgorithm as exc:
        raise ConfigError(_NO_MLDSA) from exc
    except (InvalidSignature, ValueError) as exc:
        raise AuthenticationError("handshake failed") from exc
