"""An agency's offline keys and log (``protocol-spec/trust.md``): what
``onionpost trust root-init`` creates and ``onionpost trust endorse`` uses, on
a machine kept offline.

Theory of operation
-------------------
An agency directory (0700) holds::

    anchor.txt              the anchor partners install (public)
    root.key                the root key, sealed (0600)
    issuing-<label>.key     an issuing key, sealed (0600)
    delegation-<label>.note the root's delegation of that issuing key
                            (the latest: `trust delegate` signs the next)
    log/<index>.note        the agency log's statements, leaf by leaf
    checkpoint.note         the log's latest checkpoint
    revocations.note        the latest revocation list (``trust revoke``)

A key file is JSON, as the endpoint's secrets file is (storage.md §2)::

    {"version": 1, "name": "<agency>/root",
     "kdf": {"alg": "argon2id", "opslimit": 3, "memlimit": 268435456, "salt": "<hex>"},
     "nonce": "<48 hex>", "ciphertext": "<hex>"}

``ciphertext`` is XChaCha20-Poly1305 of the msgpack array ``[ed25519 seed,
ML-DSA-65 seed or empty]``; the associated data is
``b"onionpost agency key v1\\x00"``, the key's name and a NUL, then the
``kdf`` object as canonical JSON, so neither the name nor the cost can be
changed without opening failing. Opening returns a
:class:`~onionpost.proto.trust.HybridSigner`; everything that signs takes a
:class:`~onionpost.proto.trust.StatementSigner`, so a key held on a PKCS#11
token can replace the sealed file without the rest changing.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from onionpost._files import read_small_file
from onionpost.errors import ConfigError, StoreError, TrustError, UnlockError
from onionpost.home._paths import write_atomic
from onionpost.home._secrets import (
    KDF_MEMLIMIT_FLOOR,
    KDF_OPSLIMIT_FLOOR,
    KdfCost,
    read_key_file,
)
from onionpost.limits import MAX_DELEGATION_LIFETIME, MAX_ENDORSEMENT_LIFETIME, MAX_NOTE_BYTES
from onionpost.proto import NotMsgpack, pack, unpack
from onionpost.proto.address import OnionAddress
from onionpost.proto.trust import (
    AgencyLog,
    Anchor,
    Delegation,
    Endorsement,
    EndorsementProof,
    HybridSigner,
    RevocationList,
    Revoked,
    StatementSigner,
    check_agency_name,
    issue,
    open_delegation,
    stored_revocations,
)
from onionpost.proto.trust_session import RevocationBundle
from onionpost.store import at_rest

__all__ = [
    "HANDED_OVER",
    "AgencyDirectory",
    "KeySource",
    "open_key_file",
    "write_key_file",
]

KEY_FILE_VERSION: Final = 1
_AD_CONTEXT: Final = b"onionpost agency key v1\x00"
_MAX_KEY_FILE: Final = 4096
_MAX_STATEMENT: Final = 4 * MAX_NOTE_BYTES
_LABEL: Final = "a"
# Written in an agency directory whose issuing key and log a registrar holds
# now (`registrar init`): its offline tools then sign nothing, which would
# fork the log (trust.md §3, §8).
HANDED_OVER: Final = "registrar.txt"


@dataclass(frozen=True, slots=True)
class KeySource:
    """Exactly one of a passphrase and a key file, and the Argon2id cost of new files."""

    passphrase: str | None = None
    key_file: Path | None = None
    kdf_cost: KdfCost = KdfCost.MODERATE

    def __post_init__(self) -> None:
        if (self.passphrase is None) == (self.key_file is None):
            raise ConfigError("give exactly one of a passphrase and a key file")
        if self.passphrase is not None and not self.passphrase:
            raise ConfigError("the passphrase is empty")

    def __repr__(self) -> str:
        return "KeySource(passphrase)" if self.passphrase is not None else "KeySource(key file)"


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("ascii")


def _ad(name: str, kdf: dict[str, Any]) -> bytes:
    return _AD_CONTEXT + name.encode() + b"\x00" + _canonical(kdf)


def _key(source: KeySource, kdf: dict[str, Any]) -> bytes:
    if kdf["alg"] == "keyfile":
        assert source.key_file is not None
        return read_key_file(source.key_file)
    assert source.passphrase is not None
    return at_rest.derive_key(
        source.passphrase.encode(),
        bytes.fromhex(kdf["salt"]),
        opslimit=kdf["opslimit"],
        memlimit=kdf["memlimit"],
    )


def write_key_file(path: Path, signer: HybridSigner, source: KeySource) -> None:
    """Seal ``signer``'s seeds into a new file ``path`` (0600); refuse to overwrite."""
    if path.exists():
        raise ConfigError(f"{path} exists already: refusing to overwrite a key")
    kdf: dict[str, Any]
    if source.passphrase is not None:
        opslimit, memlimit = source.kdf_cost.value
        salt = at_rest.random_bytes(at_rest.SALT_LEN)
        kdf = {"alg": "argon2id", "opslimit": opslimit, "memlimit": memlimit, "salt": salt.hex()}
    else:
        kdf = {"alg": "keyfile"}
    ed, mldsa = signer.seeds
    name = signer.public.name
    sealed = at_rest.seal(_key(source, kdf), pack([ed, mldsa or b""]), _ad(name, kdf))
    document = {
        "version": KEY_FILE_VERSION,
        "name": name,
        "kdf": kdf,
        "nonce": sealed[: at_rest.NONCE_LEN].hex(),
        "ciphertext": sealed[at_rest.NONCE_LEN :].hex(),
    }
    try:
        write_atomic(path, json.dumps(document, indent=2).encode() + b"\n", mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc


def open_key_file(path: Path, source: KeySource) -> HybridSigner:
    """Open a sealed agency key; :class:`UnlockError` for a wrong secret or an
    altered file, :class:`ConfigError` for a file others may read."""
    data = read_small_file(path, _MAX_KEY_FILE, what="agency key file", private=True)
    malformed = UnlockError(f"{path} is not an agency key file")
    try:
        document = json.loads(data)
        name, kdf = document["name"], document["kdf"]
        nonce = bytes.fromhex(document["nonce"])
        ciphertext = bytes.fromhex(document["ciphertext"])
        if document["version"] != KEY_FILE_VERSION or not isinstance(name, str):
            raise malformed
        alg = kdf["alg"]
        if alg == "argon2id":
            if set(kdf) != {"alg", "opslimit", "memlimit", "salt"}:
                raise malformed
            if kdf["opslimit"] < KDF_OPSLIMIT_FLOOR or kdf["memlimit"] < KDF_MEMLIMIT_FLOOR:
                raise UnlockError(f"{path}: the Argon2id cost is below the floor: refused")
            if source.passphrase is None:
                raise UnlockError(f"{path} is sealed with a passphrase, not a key file")
        elif alg == "keyfile":
            if set(kdf) != {"alg"}:
                raise malformed
            if source.key_file is None:
                raise UnlockError(f"{path} is sealed with a key file, not a passphrase")
        else:
            raise malformed
        key = _key(source, kdf)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise malformed from exc
    try:
        plaintext = at_rest.open_sealed(key, nonce + ciphertext, _ad(name, kdf), what=str(path))
    except StoreError as exc:
        raise UnlockError(f"cannot open {path}: wrong passphrase or key file (or altered)") from exc
    try:
        ed, mldsa = unpack(plaintext, max_len=64, max_items=2)
        return HybridSigner(name, ed, mldsa or None)
    except (NotMsgpack, ValueError, ConfigError) as exc:
        raise malformed from exc


def _when(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


class AgencyDirectory:
    """An agency's offline directory; see the module docstring."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"AgencyDirectory({self.path})"

    @property
    def _log_dir(self) -> Path:
        return self.path / "log"

    @classmethod
    def create(
        cls,
        path: Path,
        agency: str,
        source: KeySource,
        *,
        now: int,
        lifetime: int = MAX_DELEGATION_LIFETIME,
        mldsa: bool = True,
    ) -> tuple[AgencyDirectory, Anchor]:
        """A new agency: its root, a first issuing key delegated from ``now`` for
        ``lifetime`` seconds, and its log with the delegation as leaf 0."""
        try:
            check_agency_name(agency)
        except TrustError as exc:
            raise ConfigError(str(exc)) from exc
        if path.exists() and any(path.iterdir()):
            raise ConfigError(f"{path} is not empty: an agency directory is created empty")
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(path, 0o700)
            (path / "log").mkdir(mode=0o700)
        except OSError as exc:
            raise ConfigError(f"cannot create {path}: {exc.strerror}") from exc
        directory = cls(path)
        root = HybridSigner.generate(f"{agency}/root", mldsa=mldsa)
        issuer = HybridSigner.generate(f"{agency}/issuing/{_LABEL}", mldsa=mldsa)
        write_key_file(path / "root.key", root, source)
        write_key_file(path / f"issuing-{_LABEL}.key", issuer, source)
        anchor = Anchor(agency, root.public.ed25519, root.public.mldsa65)
        pub = issuer.public
        delegation = issue(
            root, Delegation(agency, _LABEL, pub.ed25519, pub.mldsa65, now, now + lifetime)
        )
        directory._write(f"delegation-{_LABEL}.note", delegation)
        directory._write("anchor.txt", anchor.to_text().encode() + b"\n")
        directory._append(delegation)
        directory._write("checkpoint.note", directory.log().checkpoint(issuer))
        return directory, anchor

    def _write(self, name: str, data: bytes, mode: int = 0o644) -> None:
        try:
            write_atomic(self.path / name, data, mode=mode)
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path / name}: {exc.strerror}") from exc

    def _read(self, path: Path) -> bytes:
        return read_small_file(path, _MAX_STATEMENT, what="agency statement")

    def anchor(self) -> Anchor:
        try:
            return Anchor.from_text(self._read(self.path / "anchor.txt").decode())
        except (TrustError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path / 'anchor.txt'} is not an anchor") from exc

    def delegation(self) -> bytes:
        return self._read(self.path / f"delegation-{_LABEL}.note")

    def statements(self) -> list[bytes]:
        names = sorted(p.name for p in self._log_dir.glob("*.note"))
        if names != [f"{i:08d}.note" for i in range(len(names))]:
            raise ConfigError(f"{self._log_dir} has a gap: the agency log is damaged")
        return [self._read(self._log_dir / name) for name in names]

    def log(self) -> AgencyLog:
        return AgencyLog(self.anchor().log_origin, self.statements())

    def _append(self, statement: bytes, log: AgencyLog | None = None) -> int:
        """Write the next leaf; appended to ``log`` too (the log held in memory,
        whose size is the index) when given."""
        index = len(list(self._log_dir.glob("*.note"))) if log is None else log.size
        target = self._log_dir / f"{index:08d}.note"
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                os.write(fd, statement)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ConfigError(f"cannot append to {self._log_dir}: {exc.strerror}") from exc
        if log is not None:
            log.append(statement)
        return index

    def statement(self, index: int) -> bytes:
        """Leaf ``index`` of the log, as issued."""
        return self._read(self._log_dir / f"{index:08d}.note")

    def issuer(self, source: KeySource) -> StatementSigner:
        return open_key_file(self.path / f"issuing-{_LABEL}.key", source)

    def root(self, source: KeySource) -> StatementSigner:
        return open_key_file(self.path / "root.key", source)

    @property
    def handed_over(self) -> bool:
        """Whether a registrar holds this agency's issuing key and log now."""
        return (self.path / HANDED_OVER).exists()

    def held_delegation(self) -> Delegation:
        """The delegation of the issuing key, checked against the anchor."""
        try:
            return open_delegation(self.anchor(), self.delegation()).value
        except TrustError as exc:
            raise ConfigError(f"{self.path}'s delegation does not verify: {exc}") from exc

    def delegate(
        self,
        root: StatementSigner,
        *,
        now: int,
        lifetime: int = MAX_DELEGATION_LIFETIME,
        issuer: StatementSigner | None = None,
    ) -> bytes:
        """The root's new delegation of the same issuing key, from ``now`` for
        ``lifetime`` seconds (trust.md §8.1): refused unless it ends later than
        the one held. Kept as the directory's delegation; in a directory that
        still keeps its log (no registrar), also logged, with a checkpoint the
        ``issuer`` signs. For a registrar: hand the bytes returned to it
        (``registrar delegation``), which logs it."""
        anchor = self.anchor()
        if root.public != anchor.root:
            raise ConfigError("that is not this agency's root key")
        held = self.held_delegation()
        if not 0 < lifetime <= MAX_DELEGATION_LIFETIME:
            raise ConfigError(f"a delegation lasts 1 to {MAX_DELEGATION_LIFETIME // 86_400} days")
        if now + lifetime <= held.not_after:
            raise ConfigError(
                "a new delegation must end later than the one held "
                f"(which ends in {max(0, held.not_after - now) // 86_400} days): give more --days"
            )
        delegation = Delegation(
            held.agency, held.label, held.ed25519, held.mldsa65, now, now + lifetime
        )
        data = issue(root, delegation)
        if self.handed_over:
            self._write(f"delegation-{_LABEL}.note", data)
        else:
            if issuer is None:
                raise ConfigError("the issuing key signs the log's checkpoint: open it too")
            self.adopt_delegation(issuer, data)
        return data

    def adopt_delegation(
        self, signer: StatementSigner, data: bytes, log: AgencyLog | None = None
    ) -> None:
        """Log a new delegation of ``signer`` (checked by the caller), sign a
        checkpoint, and make it the one this directory's statements carry."""
        if open_delegation(self.anchor(), data).value.key != signer.public:
            raise ConfigError("that delegation is not of this issuing key")
        self._append(data, log)
        self._write("checkpoint.note", (self.log() if log is None else log).checkpoint(signer))
        self._write(f"delegation-{_LABEL}.note", data)

    def _check_writer(self) -> None:
        if (self.path / HANDED_OVER).exists():
            raise ConfigError(
                f"{self.path}'s issuing key and log are held by a registrar now "
                f"({self.path / HANDED_OVER}): sign with 'onionpost registrar ...', "
                "not here (the log would fork); its list, as a file to import: "
                "'registrar export-list'"
            )

    def endorse(
        self,
        signer: StatementSigner,
        address: str,
        *,
        endpoint: str,
        unit: str = "",
        now: int,
        days: int = 7,
        replaces: str = "",
        log: AgencyLog | None = None,
        clamp: bool = False,
    ) -> EndorsementProof:
        """Endorse ``address`` from ``now`` for ``days``, append it to the log,
        sign a checkpoint and return the proof the endpoint presents (``log``:
        the log as held in memory, else read from the directory). An
        endorsement that would outlive the delegation is refused, or with
        ``clamp`` (the registrar's) ends with it."""
        self._check_writer()
        anchor = self.anchor()
        delegation_data = self.delegation()
        delegation = open_delegation(anchor, delegation_data).value
        if delegation.key != signer.public:
            raise ConfigError("that issuing key is not the one the root delegated")
        until = now + days * 86_400
        if not 0 < days * 86_400 <= MAX_ENDORSEMENT_LIFETIME:
            raise ConfigError(
                f"an endorsement lasts 1 to {MAX_ENDORSEMENT_LIFETIME // 86_400} days"
            )
        if clamp:
            until = min(until, delegation.not_after)
        if not delegation.not_before <= now < until <= delegation.not_after:
            ended = now >= delegation.not_after
            raise ConfigError(
                f"the issuing key's delegation {'ended' if ended else 'ends'} "
                f"{_when(delegation.not_after)}"
                + ("" if ended else f", before {_when(until)}: endorse for fewer --days")
                + "; the root signs a new one ('onionpost trust delegate')"
            )
        try:
            parsed = OnionAddress.parse(address)
            statement = Endorsement(
                anchor.agency,
                str(parsed),
                parsed.public_key,
                endpoint,
                unit,
                now,
                until,
                str(OnionAddress.parse(replaces)) if replaces else "",
            )
        except TrustError as exc:
            raise ConfigError(str(exc)) from exc
        data = issue(signer, statement)
        index = self._append(data, log)
        log = self.log() if log is None else log
        checkpoint = log.checkpoint(signer)
        self._write("checkpoint.note", checkpoint)
        return EndorsementProof(delegation_data, data, checkpoint, index, log.inclusion(index))

    def revocations(self) -> RevocationList | None:
        """The latest list the agency signed, or None before the first."""
        path = self.path / "revocations.note"
        if not path.exists():
            return None
        try:
            return stored_revocations(self._read(path)).value
        except TrustError as exc:
            raise ConfigError(f"{path} is not a revocation list") from exc

    def revoke(
        self,
        signer: StatementSigner,
        address: str | None,
        *,
        reason: str = "",
        now: int,
        log: AgencyLog | None = None,
    ) -> RevocationBundle:
        """Sign the next revocation list: the one before (less the entries whose
        endorsements have all expired, trust.md §2) and ``address`` if given
        (None: the same list, fresh, as the registrar signs it every interval);
        append it to the log and return it with its delegation and checkpoint."""
        self._check_writer()
        anchor = self.anchor()
        delegation_data = self.delegation()
        delegation = open_delegation(anchor, delegation_data).value
        if delegation.key != signer.public:
            raise ConfigError("that issuing key is not the one the root delegated")
        if not delegation.not_before <= now <= delegation.not_after:
            raise ConfigError(
                "the issuing key's delegation does not cover that time (it is valid "
                f"{_when(delegation.not_before)} to {_when(delegation.not_after)}); "
                "the root signs a new one ('onionpost trust delegate')"
            )
        held = self.revocations()
        entries = {
            e.address: e
            for e in (() if held is None else held.revoked)
            if e.revoked_at + MAX_ENDORSEMENT_LIFETIME >= now
        }
        if address is not None:
            parsed = str(OnionAddress.parse(address))
            if parsed not in entries:
                entries[parsed] = Revoked(parsed, now, reason)
        try:
            statement = RevocationList(
                anchor.agency,
                1 if held is None else held.serial + 1,
                now,
                tuple(entries[a] for a in sorted(entries)),
            )
        except TrustError as exc:
            raise ConfigError(f"cannot sign that list: {exc}") from exc
        data = issue(signer, statement)
        self._append(data, log)
        checkpoint = (self.log() if log is None else log).checkpoint(signer)
        self._write("revocations.note", data)
        self._write("checkpoint.note", checkpoint)
        return RevocationBundle(delegation_data, data, checkpoint)
