"""The endpoint's secrets and the sealed file that keeps them at rest.

Theory of operation
-------------------
Everything secret an endpoint has lives in one object, :class:`Secrets`,
and on disk in one file, ``secrets.json`` (0600), sealed with a key that is
either derived from a passphrase (Argon2id) or read from a key file (32
random bytes, 0600, kept e.g. on removable media)::

    {"version": 1,
     "kdf": {"alg": "argon2id", "opslimit": 3, "memlimit": 268435456, "salt": "<32 hex>"},
     "nonce": "<48 hex>",
     "ciphertext": "<hex>"}

    {"version": 1, "kdf": {"alg": "keyfile"}, "nonce": ..., "ciphertext": ...}

``ciphertext`` is XChaCha20-Poly1305 of the msgpack map of the secrets; the
associated data is ``b"onionpost secrets v1\\x00"`` followed by the ``kdf``
object as canonical JSON, so the stored parameters cannot be altered
without unlocking failing. Field by field: ``protocol-spec/storage.md``
§Secrets file. The primitives are in :mod:`onionpost.store._crypto`, the
hazardous layer for everything at rest.

The Argon2id cost is the caller's, explicitly (:class:`KdfCost`): the
product's ``MODERATE`` unless a test asks for the ``FLOOR``; no environment
variable changes it. Unlocking refuses parameters below the floor
(:data:`KDF_OPSLIMIT_FLOOR`, :data:`KDF_MEMLIMIT_FLOOR`; storage.md §2), so
an altered or downgraded file cannot make a passphrase cheaper to guess.

Unlocking with a wrong passphrase or key file raises
:class:`~onionpost.errors.UnlockError`; its text says which of the two was
expected and nothing more. Python cannot reliably wipe memory, so secrets
stay in memory as ``bytes`` for the daemon's lifetime; they never appear in
``repr``, logs or error messages.
"""

from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from onionpost._files import read_small_file
from onionpost.errors import AuthenticationError, ConfigError, StoreError, UnlockError
from onionpost.home._paths import Paths, write_atomic
from onionpost.limits import KEY_FILE_LEN, MAX_SECRETS_FILE
from onionpost.names import contact_name_problem
from onionpost.proto import NotMsgpack, pack, unpack
from onionpost.proto.identity import (
    CERT_LEN,
    Identity,
    StaticKey,
    StaticKeyCertificate,
)
from onionpost.proto.noise import KeyPair
from onionpost.store import at_rest

__all__ = [
    "KDF_MEMLIMIT_FLOOR",
    "KDF_OPSLIMIT_FLOOR",
    "KEY_FILE_LEN",
    "KdfCost",
    "SECRETS_VERSION",
    "Secrets",
    "create_key_file",
    "read_key_file",
    "save_secrets",
    "unlock",
    "write_secrets_file",
]

SECRETS_VERSION: Final = 1

#: The least Argon2id cost a secrets file may name (libsodium's INTERACTIVE
#: level): unlocking refuses less (storage.md §2).
KDF_OPSLIMIT_FLOOR: Final = 2
KDF_MEMLIMIT_FLOOR: Final = 64 * 2**20


class KdfCost(enum.Enum):
    """Argon2id cost of a newly sealed secrets file: (opslimit, memlimit)."""

    #: The product's: libsodium's MODERATE level, 3 passes over 256 MiB (~1 s).
    MODERATE = (3, 256 * 2**20)
    #: The floor, for tests only (``onionpost init --kdf-cost floor``): 2 passes, 64 MiB.
    FLOOR = (KDF_OPSLIMIT_FLOOR, KDF_MEMLIMIT_FLOOR)


_AD_CONTEXT: Final = b"onionpost secrets v1\x00"
_FIELDS: Final = frozenset(
    {
        "identity_seed",
        "client_auth_private",
        "static_private",
        "static_certificate",
        "store_key",
        "display_name",
    }
)


@dataclass(slots=True, eq=False, repr=False)
class Secrets:
    """An endpoint's keys and name. ``repr`` shows the address and nothing secret.

    ``static`` is replaced when the daemon rotates the Noise static key; call
    :func:`save_secrets` afterwards.
    """

    identity: Identity
    client_auth_private: bytes
    client_auth_public: bytes
    static: StaticKey
    store_key: bytes
    display_name: str

    def __post_init__(self) -> None:
        if len(self.client_auth_private) != 32 or len(self.store_key) != at_rest.KEY_LEN:
            raise ConfigError("client-authorization and store keys are 32 bytes")
        if KeyPair.from_private(self.client_auth_private).public != self.client_auth_public:
            raise ConfigError("the client-authorization key pair does not match")
        problem = contact_name_problem(self.display_name)
        if problem is not None:
            raise ConfigError(f"the display name {problem}")

    @classmethod
    def generate(cls, display_name: str, *, now: int) -> Secrets:
        """Fresh keys: Ed25519 identity, x25519 client authorization, Noise static
        key with a certificate valid from ``now`` (seconds), a random store key."""
        identity = Identity.generate()
        client_auth = KeyPair.generate()
        return cls(
            identity=identity,
            client_auth_private=client_auth.private,
            client_auth_public=client_auth.public,
            static=StaticKey.generate(identity, now=now),
            store_key=at_rest.random_bytes(at_rest.KEY_LEN),
            display_name=display_name,
        )

    def __repr__(self) -> str:
        return f"Secrets({self.identity.address}, {self.static!r})"

    def _to_plaintext(self) -> bytes:
        return pack(
            {
                "identity_seed": self.identity.seed,
                "client_auth_private": self.client_auth_private,
                "static_private": self.static.keypair.private,
                "static_certificate": self.static.certificate.to_bytes(),
                "store_key": self.store_key,
                "display_name": self.display_name,
            }
        )

    @classmethod
    def _from_plaintext(cls, plaintext: bytes) -> Secrets:
        try:
            # The one msgpack map of ours (storage.md §Secrets file): flat, small.
            obj: Any = unpack(
                plaintext, max_len=len(plaintext), max_items=0, max_map_items=len(_FIELDS)
            )
        except NotMsgpack as exc:
            raise UnlockError("the secrets file's contents are malformed") from exc
        if type(obj) is not dict or set(obj) != _FIELDS:
            raise UnlockError("the secrets file's contents are malformed")
        for key in _FIELDS - {"display_name"}:
            if type(obj[key]) is not bytes:
                raise UnlockError("the secrets file's contents are malformed")
        certificate = obj["static_certificate"]
        if len(certificate) != CERT_LEN:
            raise UnlockError("the secrets file's contents are malformed")
        try:
            identity = Identity(obj["identity_seed"])
            keypair = KeyPair.from_private(obj["static_private"])
            # Check the signature and the key binding; not the validity
            # period, which the daemon checks (and renews) itself. Bytes 1..9
            # of a certificate are not_before (onionpost.proto.identity).
            not_before = int.from_bytes(certificate[1:9], "big")
            verified = StaticKeyCertificate.verify(
                certificate,
                identity_key=identity.public_key,
                static_key=keypair.public,
                now=not_before,
            )
            return cls(
                identity=identity,
                client_auth_private=obj["client_auth_private"],
                client_auth_public=KeyPair.from_private(obj["client_auth_private"]).public,
                static=StaticKey(keypair, verified),
                store_key=obj["store_key"],
                display_name=obj["display_name"],
            )
        except AuthenticationError as exc:
            raise UnlockError("the secrets file holds an invalid static-key certificate") from exc
        except ConfigError as exc:
            raise UnlockError("the secrets file's contents are malformed") from exc


# -- key files ----------------------------------------------------------------------


def create_key_file(path: Path) -> None:
    """Write 32 random bytes to a new file ``path`` (0600); refuse to overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"key file {path} already exists") from exc
    except OSError as exc:
        raise ConfigError(f"cannot create key file {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, at_rest.random_bytes(KEY_FILE_LEN))
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise ConfigError(f"cannot write key file {path}: {exc.strerror}") from exc
    os.close(fd)


def read_key_file(path: Path) -> bytes:
    """The 32 bytes of a key file that only its owner can read, else ConfigError."""
    data = read_small_file(path, KEY_FILE_LEN, what="key file", private=True)
    if len(data) != KEY_FILE_LEN:
        raise ConfigError(f"key file {path} is not {KEY_FILE_LEN} bytes long")
    return data


# -- the sealed file ----------------------------------------------------------------


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("ascii")


def _one_source(passphrase: str | None, key_file: Path | None) -> None:
    if (passphrase is None) == (key_file is None):
        raise ConfigError("give exactly one of a passphrase and a key file")


def _seal(
    secrets: Secrets,
    *,
    passphrase: str | None,
    key_file: Path | None,
    kdf_cost: KdfCost = KdfCost.MODERATE,
) -> bytes:
    _one_source(passphrase, key_file)
    kdf: dict[str, Any]
    if passphrase is not None:
        if not passphrase:
            raise ConfigError("the passphrase is empty")
        opslimit, memlimit = KdfCost(kdf_cost).value
        salt = at_rest.random_bytes(at_rest.SALT_LEN)
        kdf = {"alg": "argon2id", "opslimit": opslimit, "memlimit": memlimit, "salt": salt.hex()}
        key = at_rest.derive_key(
            passphrase.encode("utf-8"), salt, opslimit=opslimit, memlimit=memlimit
        )
    else:
        assert key_file is not None
        kdf = {"alg": "keyfile"}
        key = read_key_file(key_file)
    sealed = at_rest.seal(key, secrets._to_plaintext(), _AD_CONTEXT + _canonical(kdf))
    document = {
        "version": SECRETS_VERSION,
        "kdf": kdf,
        "nonce": sealed[: at_rest.NONCE_LEN].hex(),
        "ciphertext": sealed[at_rest.NONCE_LEN :].hex(),
    }
    return json.dumps(document, indent=2).encode("ascii") + b"\n"


def _hex_field(obj: dict[str, Any], name: str) -> bytes:
    value = obj.get(name)
    if not isinstance(value, str):
        raise UnlockError(f"the secrets file is malformed: {name!r} is missing")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise UnlockError(f"the secrets file is malformed: {name!r} is not hex") from exc


def _int_field(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if type(value) is not int:
        raise UnlockError(f"the secrets file is malformed: kdf {name!r} is not an integer")
    return value


def _unseal(data: bytes, *, passphrase: str | None, key_file: Path | None, where: Path) -> Secrets:
    _one_source(passphrase, key_file)
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UnlockError(f"{where} is not a secrets file (not JSON)") from exc
    if type(document) is not dict or type(document.get("kdf")) is not dict:
        raise UnlockError(f"{where} is not a secrets file")
    if document.get("version") != SECRETS_VERSION:
        raise UnlockError(
            f"{where} has version {document.get('version')!r}; this onionpost reads version 1"
        )
    kdf: dict[str, Any] = document["kdf"]
    nonce = _hex_field(document, "nonce")
    ciphertext = _hex_field(document, "ciphertext")
    if len(nonce) != at_rest.NONCE_LEN:
        raise UnlockError("the secrets file is malformed: the nonce is not 24 bytes")
    alg = kdf.get("alg")
    if alg == "argon2id":
        if passphrase is None:
            raise UnlockError("these secrets are sealed with a passphrase, not a key file")
        if set(kdf) != {"alg", "opslimit", "memlimit", "salt"}:
            raise UnlockError("the secrets file is malformed: unexpected kdf fields")
        salt = _hex_field(kdf, "salt")
        opslimit = _int_field(kdf, "opslimit")
        memlimit = _int_field(kdf, "memlimit")
        if opslimit < KDF_OPSLIMIT_FLOOR or memlimit < KDF_MEMLIMIT_FLOOR:
            raise UnlockError(
                f"the secrets file's Argon2id cost ({opslimit} passes, {memlimit} bytes) is "
                f"below the floor ({KDF_OPSLIMIT_FLOOR} passes, {KDF_MEMLIMIT_FLOOR} bytes): "
                "refused"
            )
        try:
            key = at_rest.derive_key(
                passphrase.encode("utf-8"), salt, opslimit=opslimit, memlimit=memlimit
            )
        except ConfigError as exc:
            raise UnlockError(f"the secrets file's kdf parameters are unusable: {exc}") from exc
    elif alg == "keyfile":
        if key_file is None:
            raise UnlockError("these secrets are sealed with a key file, not a passphrase")
        if set(kdf) != {"alg"}:
            raise UnlockError("the secrets file is malformed: unexpected kdf fields")
        key = read_key_file(key_file)
    else:
        raise UnlockError(f"the secrets file names an unknown kdf {alg!r}")
    try:
        plaintext = at_rest.open_sealed(
            key, nonce + ciphertext, _AD_CONTEXT + _canonical(kdf), what="the secrets file"
        )
    except StoreError as exc:
        which = "passphrase" if alg == "argon2id" else "key file"
        raise UnlockError(
            f"cannot unlock {where}: wrong {which} (or the file was altered)"
        ) from exc
    return Secrets._from_plaintext(plaintext)


def write_secrets_file(
    path: Path,
    secrets: Secrets,
    *,
    passphrase: str | None,
    key_file: Path | None,
    kdf_cost: KdfCost = KdfCost.MODERATE,
) -> None:
    data = _seal(secrets, passphrase=passphrase, key_file=key_file, kdf_cost=kdf_cost)
    try:
        write_atomic(path, data, mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


def unlock(paths: Paths, *, passphrase: str | None, key_file: Path | None) -> Secrets:
    """Open ``secrets.json`` with exactly one of a passphrase and a key file."""
    _one_source(passphrase, key_file)
    data = read_small_file(paths.secrets, MAX_SECRETS_FILE, what="secrets file", missing_ok=True)
    if data is None:
        raise ConfigError(f"no endpoint in {paths.home}: run 'onionpost init' first")
    return _unseal(data, passphrase=passphrase, key_file=key_file, where=paths.secrets)


def save_secrets(
    paths: Paths,
    secrets: Secrets,
    *,
    passphrase: str | None,
    key_file: Path | None,
    kdf_cost: KdfCost = KdfCost.MODERATE,
) -> None:
    """Seal ``secrets`` again (fresh salt and nonce) and replace ``secrets.json``
    atomically; e.g. after the daemon rotated the static key, or to change the
    passphrase or switch between passphrase and key file."""
    write_secrets_file(
        paths.secrets, secrets, passphrase=passphrase, key_file=key_file, kdf_cost=kdf_cost
    )
