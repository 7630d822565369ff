"""The hazardous layer for storage: the primitives that protect data at rest.

Everything that encrypts, decrypts or derives a key for something written to
disk (the secrets file of :mod:`onionpost.home`, message bodies, file names
and file contents in :mod:`onionpost.store`) calls these few functions and
handles keys as opaque ``bytes``; nothing else in those packages imports
pynacl. pynacl's exceptions are translated here, and only here.

- Sealing: XChaCha20-Poly1305 (IETF construction, libsodium's
  ``crypto_aead_xchacha20poly1305_ietf_*``) with a fresh random 24-byte nonce
  per call. A sealed value is ``nonce || ciphertext || tag``. 192-bit nonces
  make random nonces safe for any number of values under one key.
- Every caller passes associated data naming *what* the value is (a context
  string, the table and row it belongs to); a value copied elsewhere fails
  to open. See ``protocol-spec/storage.md``.
- Passphrases: Argon2id (``crypto_pwhash``, RFC 9106) with parameters
  stored next to the ciphertext.
- Subkeys: keyed BLAKE2b (RFC 7693) of nothing, personalised with the
  purpose, so that one master key (the store key) gives independent keys
  for the database, the blob names and sealing; the master itself keys
  nothing else. :func:`keyed_hash` names a blob without revealing what it
  holds.
- SQLCipher's page authentication, recomputed so that the store can check a
  database file before SQLite reads it (``_database``): PBKDF2-HMAC-SHA512
  and HMAC-SHA256 (RFC 8018, RFC 2104), from the standard library.

Failures to open raise :class:`~onionpost.errors.StoreError` with the
caller's text; the text never says more than "did not authenticate".
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable
from typing import Final

from nacl import bindings as _sodium
from nacl import exceptions as _nacl_exc
from nacl.pwhash import argon2id as _argon2id

from onionpost.errors import ConfigError, StoreError

__all__ = [
    "KDF_MEMLIMIT_MAX",
    "KDF_OPSLIMIT_MAX",
    "KEY_LEN",
    "NONCE_LEN",
    "SALT_LEN",
    "SEAL_OVERHEAD",
    "TAG_LEN",
    "derive_key",
    "hmac_sha256_verify",
    "keyed_hash",
    "keyed_hasher",
    "pbkdf2_sha512",
    "open_sealed",
    "random_bytes",
    "seal",
    "subkey",
]

KEY_LEN: Final = _sodium.crypto_aead_xchacha20poly1305_ietf_KEYBYTES  # 32
NONCE_LEN: Final = _sodium.crypto_aead_xchacha20poly1305_ietf_NPUBBYTES  # 24
TAG_LEN: Final = _sodium.crypto_aead_xchacha20poly1305_ietf_ABYTES  # 16
SEAL_OVERHEAD: Final = NONCE_LEN + TAG_LEN
SALT_LEN: Final = _argon2id.SALTBYTES  # 16

# Bounds on parameters read back from a secrets file, so that an altered file
# cannot make unlocking take hours or all memory: libsodium's SENSITIVE level.
KDF_OPSLIMIT_MAX: Final = _argon2id.OPSLIMIT_SENSITIVE  # 4
KDF_MEMLIMIT_MAX: Final = _argon2id.MEMLIMIT_SENSITIVE  # 1 GiB


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def derive_key(passphrase: bytes, salt: bytes, *, opslimit: int, memlimit: int) -> bytes:
    """Argon2id(passphrase, salt) -> a 32-byte sealing key."""
    if len(salt) != SALT_LEN:
        raise ConfigError(f"an Argon2id salt is {SALT_LEN} bytes")
    if not (
        _argon2id.OPSLIMIT_MIN <= opslimit <= KDF_OPSLIMIT_MAX
        and _argon2id.MEMLIMIT_MIN <= memlimit <= KDF_MEMLIMIT_MAX
    ):
        raise ConfigError("Argon2id parameters out of range")
    try:
        return _argon2id.kdf(KEY_LEN, passphrase, salt, opslimit=opslimit, memlimit=memlimit)
    except (_nacl_exc.RuntimeError, _nacl_exc.ValueError, _nacl_exc.TypeError) as exc:
        raise ConfigError("Argon2id key derivation failed") from exc


def _check_key(key: bytes) -> None:
    if len(key) != KEY_LEN:
        raise ConfigError(f"a storage key is {KEY_LEN} bytes")


def subkey(key: bytes, purpose: bytes, size: int = KEY_LEN) -> bytes:
    """``BLAKE2b(key=key, person=purpose, digest_size=size)`` of the empty string.

    ``purpose`` is at most 16 bytes (BLAKE2b's personalisation); each purpose
    gives an independent key, and none reveals ``key`` or another.
    """
    _check_key(key)
    if not 0 < len(purpose) <= hashlib.blake2b.PERSON_SIZE:
        raise ConfigError("a subkey's purpose is 1 to 16 bytes")
    return hashlib.blake2b(b"", key=key, person=purpose, digest_size=size).digest()


def keyed_hash(key: bytes, data: bytes, size: int = 32) -> bytes:
    """``BLAKE2b(key=key, data)``: a name for ``data`` only the key holder can compute."""
    _check_key(key)
    return hashlib.blake2b(data, key=key, digest_size=size).digest()


def keyed_hasher(key: bytes, size: int = 32) -> Callable[[bytes], bytes]:
    """:func:`keyed_hash` under ``key`` as a function of the data alone; the
    key's block is compressed once, here, not at every call."""
    _check_key(key)
    keyed = hashlib.blake2b(key=key, digest_size=size)

    def hash_(data: bytes) -> bytes:
        h = keyed.copy()
        h.update(data)
        return h.digest()

    return hash_


def pbkdf2_sha512(key: bytes, salt: bytes, iterations: int, size: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", key, salt, iterations, size)


def hmac_sha256_verify(key: bytes, data: bytes, tag: bytes, *, what: str) -> None:
    """:class:`StoreError` unless ``tag`` is HMAC-SHA256(key, data) (constant time)."""
    if not hmac.compare_digest(hmac.digest(key, data, "sha256"), tag):
        raise StoreError(f"{what} did not verify")


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """``nonce || XChaCha20-Poly1305(key, nonce, plaintext, ad)``, nonce random."""
    _check_key(key)
    nonce = os.urandom(NONCE_LEN)
    return nonce + _sodium.crypto_aead_xchacha20poly1305_ietf_encrypt(plaintext, ad, nonce, key)


def open_sealed(key: bytes, sealed: bytes, ad: bytes, *, what: str) -> bytes:
    """The plaintext of :func:`seal`'s output; :class:`StoreError` if it does not
    authenticate (wrong key, altered bytes, or a value moved from elsewhere).

    ``what`` names the value for the error text ("message body", "file record").
    """
    _check_key(key)
    if len(sealed) < SEAL_OVERHEAD:
        raise StoreError(f"{what} is truncated")
    nonce, ciphertext = sealed[:NONCE_LEN], sealed[NONCE_LEN:]
    try:
        return _sodium.crypto_aead_xchacha20poly1305_ietf_decrypt(ciphertext, ad, nonce, key)
    except (_nacl_exc.CryptoError, _nacl_exc.ValueError, _nacl_exc.TypeError) as exc:
        raise StoreError(f"{what} did not authenticate (altered, moved, or another key)") from exc
