"""What a registrar keeps: the agency's issuing key and log, its enrolment codes
and its enrolled endpoints (``protocol-spec/trust.md`` §8).

Theory of operation
-------------------
``onionpost registrar init`` moves the agency's issuing key and log from the
offline agency directory (``trust root-init``) into ``HOME/registrar/``, a
directory of the same layout (:class:`~onionpost.home.AgencyDirectory`)
without the root key::

    anchor.txt, delegation-a.note, log/, checkpoint.note, revocations.note
    issuing.sealed     the issuing key, sealed under the home's store key (0600)
    registrar.json     codes and endpoints (0600)

and marks the agency directory (``registrar.txt``) so that the offline tools
sign nothing more there: two writers of one log would fork it (§3). The root
never leaves the agency directory: when the delegation nears its end the
root signs the next one there (``trust delegate``), and
:meth:`RegistrarBook.install_delegation` checks it, logs it and makes it the
``delegation-a.note`` everything signed afterwards carries (§8.1). No
endorsement is valid past the delegation's end.

``registrar.json``::

    {"version": 1,
     "codes": [{"digest": hex, "client_auth": hex, "endpoint": str, "unit": str,
                "expires": s, "used_by": address or "", "replaces": address or ""}],
     "endpoints": [{"address": str, "client_auth": hex, "endpoint": str, "unit": str,
                    "enrolled_at": s, "index": leaf, "valid_from": s, "valid_until": s,
                    "replaces": address or ""}]}

``replaces`` (absent in a file written before moves, read as ``""``): a
code made with ``registrar code --replaces OLD`` moves the endpoint enrolled
at OLD to the address that enrols with it (trust.md §6, §8.2); the
endpoint's endorsements, renewals too, then say that they replace OLD.

Codes keep only the digest of their token (:func:`~onionpost.proto.registrar.enrol_digest`).
Every method takes ``now`` (POSIX seconds) and is synchronous; the server runs
them in its store worker, one at a time, while the event loop reads the
codes, endpoints and list (who may connect): each is replaced whole, never
changed in place. A refusal of any kind is ``None``:
the server answers every one the same way.
"""

from __future__ import annotations

import hmac
import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Final

from onionpost._files import read_small_file
from onionpost.errors import ConfigError, StoreError, TrustError
from onionpost.home import HANDED_OVER as MARK_FILE
from onionpost.home import AgencyDirectory, write_atomic
from onionpost.limits import (
    MAX_ENDORSEMENT_LIFETIME,
    MAX_ENROLMENT_CODE_LIFETIME,
    MAX_ENROLMENT_CODES,
    MAX_REGISTRAR_ENDPOINTS,
    MAX_TRUST_NAME,
)
from onionpost.proto import NotMsgpack, pack, unpack
from onionpost.proto.address import OnionAddress
from onionpost.proto.registrar import (
    EnrolmentCode,
    check_new_delegation,
    endorsement_until,
    enrol_digest,
    list_due,
    renewal_due,
)
from onionpost.proto.trust import (
    AgencyLog,
    Delegation,
    EndorsementProof,
    HybridSigner,
    RevocationList,
    StatementSigner,
    open_delegation,
    stored_endorsement,
)
from onionpost.proto.trust_session import RevocationBundle
from onionpost.store import at_rest

__all__ = ["Enrolled", "IssuedEnrolment", "RegistrarBook", "Served", "init_registrar"]

STATE_VERSION: Final = 1
_SEALED: Final = "issuing.sealed"
_STATE: Final = "registrar.json"
_AD: Final = b"onionpost registrar issuing key v1\x00"
_MAX_STATE: Final = 1 << 20
_DAY: Final = 86_400


def _name(value: str, what: str, *, low: int) -> str:
    if (
        not isinstance(value, str)
        or not low <= len(value.encode()) <= MAX_TRUST_NAME
        or (value and not value.isprintable())
    ):
        raise ConfigError(f"{what} is {low} to {MAX_TRUST_NAME} bytes of printable text")
    return value


@dataclass(frozen=True, slots=True)
class _Code:
    digest: str
    client_auth: str
    endpoint: str
    unit: str
    expires: int
    used_by: str = ""
    replaces: str = ""


@dataclass(frozen=True, slots=True)
class Enrolled:
    """An enrolled endpoint and its current endorsement."""

    address: str
    client_auth: str
    endpoint: str
    unit: str
    enrolled_at: int
    index: int
    valid_from: int
    valid_until: int
    replaces: str = ""


@dataclass(frozen=True, slots=True)
class IssuedEnrolment:
    code: EnrolmentCode
    expires: int
    endpoint: str
    unit: str
    replaces: str = ""


@dataclass(frozen=True, slots=True)
class Served:
    """What a fetch answers: the bundle's notes and the consistency proof."""

    bundle: RevocationBundle
    consistency: tuple[bytes, ...]


def _lifetime(days: int) -> int:
    """An endorsement's lifetime in seconds: ``days``, 1 to the most allowed."""
    return max(1, min(days, MAX_ENDORSEMENT_LIFETIME // _DAY)) * _DAY


def _seal_key(store_key: bytes, signer: HybridSigner) -> bytes:
    ed, mldsa = signer.seeds
    name = signer.public.name.encode()
    return name + b"\x00" + at_rest.seal(store_key, pack([ed, mldsa or b""]), _AD + name)


def _open_key(store_key: bytes, data: bytes, where: Path) -> HybridSigner:
    name, _, sealed = data.partition(b"\x00")
    try:
        plaintext = at_rest.open_sealed(store_key, sealed, _AD + name, what=str(where))
        ed, mldsa = unpack(plaintext, max_len=64, max_items=2)
        return HybridSigner(name.decode(), ed, mldsa or None)
    except (StoreError, NotMsgpack, ValueError, ConfigError) as exc:
        raise ConfigError(f"{where} does not open with this home's key") from exc


def init_registrar(
    path: Path, agency: AgencyDirectory, signer: HybridSigner, store_key: bytes
) -> RegistrarBook:
    """Move ``agency``'s issuing key (``signer``, opened from it) and log into
    ``path`` (new), the key sealed under ``store_key``; mark ``agency`` so
    that its offline tools sign nothing more."""
    anchor = agency.anchor()
    delegation = open_delegation(anchor, agency.delegation()).value
    if delegation.key != signer.public:
        raise ConfigError("that issuing key is not the one the root delegated")
    if (agency.path / MARK_FILE).exists():
        raise ConfigError(f"{agency.path} has handed its log to a registrar already")
    if path.exists():
        raise ConfigError(f"{path} exists already: a registrar is made once")
    try:
        path.mkdir(mode=0o700, parents=True)
        (path / "log").mkdir(mode=0o700)
        names = ["anchor.txt", "delegation-a.note", "checkpoint.note", "revocations.note"]
        for name in names:
            if (agency.path / name).exists():
                shutil.copyfile(agency.path / name, path / name)
        for leaf in sorted((agency.path / "log").glob("*.note")):
            shutil.copyfile(leaf, path / "log" / leaf.name)
        write_atomic(path / _SEALED, _seal_key(store_key, signer), mode=0o600)
        empty = {"version": STATE_VERSION, "codes": [], "endpoints": []}
        write_atomic(path / _STATE, json.dumps(empty).encode(), mode=0o600)
        note = (
            "This agency's issuing key and log are held by its registrar now.\n"
            f"Sign nothing here ('trust endorse', 'trust revoke'): the log would fork.\n"
            f"registrar: {path}\n"
        )
        write_atomic(agency.path / MARK_FILE, note.encode(), mode=0o644)
    except OSError as exc:
        raise ConfigError(f"cannot create the registrar in {path}: {exc.strerror}") from exc
    book = RegistrarBook.open(path, store_key)
    # The copy must be the same log, leaf for leaf.
    if book.log.root() != agency.log().root():
        raise ConfigError(f"the log copied to {path} differs from {agency.path}'s")
    return book


class RegistrarBook:
    """A registrar's state on disk; see the module docstring. Not thread-safe:
    one call at a time."""

    __slots__ = (
        "_codes",
        "_delegation",
        "_endpoints",
        "_revocations",
        "directory",
        "log",
        "signer",
    )

    def __init__(self, directory: AgencyDirectory, signer: StatementSigner) -> None:
        self.directory = directory
        self.signer = signer
        self._delegation: Delegation = directory.held_delegation()
        if self._delegation.key != signer.public:
            raise ConfigError(f"{directory.path}'s delegation is not of the issuing key it holds")
        self.log: AgencyLog = directory.log()
        self._revocations: RevocationList | None = directory.revocations()
        self._codes: list[_Code] = []
        self._endpoints: dict[str, Enrolled] = {}
        self._load()

    def __repr__(self) -> str:
        return f"RegistrarBook({self.directory.path}, {len(self._endpoints)} endpoints)"

    @classmethod
    def open(cls, path: Path, store_key: bytes) -> RegistrarBook:
        if not (path / _SEALED).exists():
            raise ConfigError(f"{path} is not a registrar: run 'onionpost registrar init'")
        data = read_small_file(path / _SEALED, 4096, what="registrar key", private=True)
        return cls(AgencyDirectory(path), _open_key(store_key, data, path / _SEALED))

    # -- the state file -------------------------------------------------------------

    @property
    def _state(self) -> Path:
        return self.directory.path / _STATE

    def _load(self) -> None:
        data = read_small_file(self._state, _MAX_STATE, what="registrar state", private=True)
        try:
            state = json.loads(data)
            if state["version"] != STATE_VERSION:
                raise ConfigError(f"{self._state} is of an unknown version")
            self._codes = [_Code(**c) for c in state["codes"]]
            endpoints = [Enrolled(**e) for e in state["endpoints"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{self._state} is damaged") from exc
        self._endpoints = {e.address: e for e in endpoints}

    def _save(self) -> None:
        state: dict[str, Any] = {
            "version": STATE_VERSION,
            "codes": [asdict(c) for c in self._codes],
            "endpoints": [asdict(e) for e in self._endpoints.values()],
        }
        try:
            write_atomic(self._state, json.dumps(state, indent=1).encode(), mode=0o600)
        except OSError as exc:
            raise StoreError(f"cannot write {self._state}: {exc.strerror}") from exc

    # -- what the service reads -----------------------------------------------------

    @property
    def agency(self) -> str:
        return self.directory.anchor().agency

    @property
    def revocations(self) -> RevocationList | None:
        return self._revocations

    @property
    def delegation(self) -> Delegation:
        """The delegation the issuing key signs under now."""
        return self._delegation

    def revoked(self, address: str) -> bool:
        return self._revocations is not None and self._revocations.find(address) is not None

    def endpoints(self) -> list[Enrolled]:
        return sorted(self._endpoints.values(), key=lambda e: e.address)

    def open_codes(self, now: int) -> list[tuple[int, bytes]]:
        """(expiry, tor client key) of every code not used and not expired."""
        return [
            (c.expires, bytes.fromhex(c.client_auth))
            for c in self._codes
            if not c.used_by and c.expires > now
        ]

    def member(self, address: str) -> bool:
        """An enrolled endpoint that is not revoked."""
        return address in self._endpoints and not self.revoked(address)

    def authorized_clients(self, now: int) -> list[bytes]:
        """The tor client keys to authorize: enrolled endpoints not revoked, and
        codes not expired, used or not (sorted, each once). A used code's key
        stays until the code expires: taking it away at enrolment would close
        the service's circuits (tor's rule for a removed key) under the
        enrolment's own answer, and the endpoint could not ask again."""
        keys = {
            bytes.fromhex(e.client_auth) for e in self._endpoints.values() if self.member(e.address)
        }
        keys.update(bytes.fromhex(c.client_auth) for c in self._codes if c.expires > now)
        return sorted(keys)

    # -- the operator's side -----------------------------------------------------------

    def new_code(
        self,
        registrar: OnionAddress,
        endpoint: str,
        unit: str,
        *,
        now: int,
        expires: int,
        replaces: str = "",
        from_revoked: bool = False,
    ) -> IssuedEnrolment:
        """A one-time code for one endpoint to be endorsed as ``endpoint`` of
        ``unit``; with ``replaces``, the endpoint enrolled at that address moves
        to the one that enrols (its name and unit when ``endpoint`` is empty).
        An address revoked is moved from only with ``from_revoked``."""
        if replaces:
            replaces, endpoint, unit = self._move(replaces, endpoint, unit, from_revoked)
        _name(endpoint, "an endpoint's name", low=1)
        _name(unit, "a unit's name", low=0)
        if not 0 < expires <= MAX_ENROLMENT_CODE_LIFETIME:
            raise ConfigError(f"an enrolment code lasts 1 to {MAX_ENROLMENT_CODE_LIFETIME} seconds")
        live = [c for c in self._codes if c.expires > now]
        if sum(1 for c in live if not c.used_by) >= MAX_ENROLMENT_CODES:
            raise ConfigError(f"{MAX_ENROLMENT_CODES} enrolment codes wait unused already")
        code = EnrolmentCode.generate(registrar)
        self._codes = [
            *live,
            _Code(
                enrol_digest(code.token()).hex(),
                code.client_auth_public().hex(),
                endpoint,
                unit,
                now + expires,
                replaces=replaces,
            ),
        ]
        self._save()
        return IssuedEnrolment(code, now + expires, endpoint, unit, replaces)

    def _move(
        self, replaces: str, endpoint: str, unit: str, from_revoked: bool
    ) -> tuple[str, str, str]:
        """The checks of a code that moves an endpoint: the old address, the
        name and the unit the new endorsement carries."""
        try:
            old = str(OnionAddress.parse(replaces))
        except ConfigError as exc:
            raise ConfigError(f"--replaces is not an onion address: {replaces!r}") from exc
        found = self._endpoints.get(old)
        if found is None:
            raise ConfigError(f"{old} is no endpoint this registrar enrolled: nothing to move")
        if self.revoked(old) and not from_revoked:
            raise ConfigError(
                f"{old} is revoked: moving away from it is allowed (trust.md §6.3), "
                "say so with --from-revoked"
            )
        return old, endpoint or found.endpoint, unit if endpoint else found.unit

    def install_delegation(self, data: bytes, *, now: int) -> Delegation:
        """Take a new delegation of the issuing key by the root (``trust
        delegate``), checked before anything changes (trust.md §8.1): logged,
        with a checkpoint, and carried from now on by every endorsement, renewal
        and list. What was issued under the one before stays valid."""
        anchor = self.directory.anchor()
        new = check_new_delegation(anchor, self._delegation, data, now=now).value
        self.directory.adopt_delegation(self.signer, data, self.log)
        self._delegation = new
        return new

    def revoke(self, address: str, reason: str, *, now: int, force: bool = False) -> RevocationList:
        """Sign the next list with ``address`` revoked, logged (§7.3). An
        address this registrar never enrolled is refused unless ``force``
        (one the agency endorsed offline, or before its registrar): a
        mistyped address would otherwise be revoked, and the one meant not."""
        try:
            parsed = str(OnionAddress.parse(address))
        except ConfigError as exc:
            raise ConfigError(f"not an onion address: {address!r}") from exc
        _name(reason, "a reason", low=0)
        if self.revoked(parsed):
            raise ConfigError(f"{parsed} is revoked already")
        if parsed not in self._endpoints and not force:
            raise ConfigError(
                f"{parsed} was never enrolled with this registrar: check the address "
                "('registrar list'), or give --force to revoke one endorsed elsewhere"
            )
        self._sign_list(parsed, reason, now)
        assert self._revocations is not None
        return self._revocations

    def refresh(self, now: int, interval: int) -> bool:
        """Sign a fresh list (the next serial, issued now, §5) if the last was
        issued ``interval`` seconds ago or more; whether it did."""
        held = self._revocations
        if not list_due(None if held is None else held.issued_at, now, interval):
            return False
        self._sign_list(None, "", now)
        return True

    def _sign_list(self, address: str | None, reason: str, now: int) -> None:
        try:
            self.directory.revoke(self.signer, address, reason=reason, now=now, log=self.log)
        except TrustError as exc:
            raise ConfigError(f"cannot sign the list: {exc}") from exc
        self._revocations = self.directory.revocations()

    # -- the endpoints' side: None is a refusal, whatever its reason --------------------

    def enrol(
        self, peer: OnionAddress, token: bytes, client_auth: bytes, *, now: int, days: int
    ) -> bytes | None:
        """Enrol ``peer`` (the session's authenticated address) with a code's
        token; its endorsement proof. The same code again from the same peer
        (an answer lost) gives its current proof."""
        address = str(peer)
        digest = enrol_digest(token).hex()
        # Every code compared in constant time, each to the end.
        matches = [c for c in self._codes if hmac.compare_digest(c.digest, digest)]
        code = matches[0] if matches else None
        if code is None or code.expires <= now or self.revoked(address):
            return None
        if code.used_by:
            if code.used_by != address or address not in self._endpoints:
                return None
            return self._proof(self._endpoints[address])
        if address not in self._endpoints and len(self._endpoints) >= MAX_REGISTRAR_ENDPOINTS:
            return None
        if code.replaces and (code.replaces == address or code.replaces not in self._endpoints):
            # A move to the address it leaves, or from one no longer enrolled.
            return None
        before = self._codes
        self._codes = [replace(c, used_by=address) if c is code else c for c in self._codes]
        try:
            return self._endorse(
                address, client_auth.hex(), code.endpoint, code.unit, now, days, code.replaces
            )
        except (ConfigError, StoreError):
            # Nothing endorsed (a delegation ended, a full disk): the code stays unused.
            self._codes = before
            raise

    def renew(self, peer: OnionAddress, *, now: int, days: int) -> bytes | None:
        """A new endorsement for an enrolled, unrevoked ``peer`` whose current
        one has less than a third of its life left; else its current one (also
        when a new one would end no later: the delegation's end bounds both)."""
        address = str(peer)
        found = self._endpoints.get(address)
        if found is None or self.revoked(address):
            return None
        until = endorsement_until(now, _lifetime(days), self._delegation)
        if not renewal_due(found.valid_from, found.valid_until, now) or (
            found.valid_until >= until > now
        ):
            return self._proof(found)
        return self._endorse(
            address, found.client_auth, found.endpoint, found.unit, now, days, found.replaces
        )

    def fetch(self, peer: OnionAddress, size: int) -> Served | None:
        """The latest list, the checkpoint after it and the consistency proof
        from ``size`` (the checkpoint the endpoint holds) to it."""
        if str(peer) not in self._endpoints or self._revocations is None:
            return None
        proof: tuple[bytes, ...] = ()
        if 0 < size < self.log.size:
            proof = self.log.consistency(size)
        return Served(self._bundle(), proof)

    def export_list(self) -> RevocationBundle:
        """The latest list as a file for endpoints this registrar does not
        serve (``registrar export-list``, §7.3): the bundle ``trust revoke``
        writes, which ``trust revocations import`` takes."""
        if self._revocations is None:
            raise ConfigError("this registrar has signed no revocation list yet")
        return self._bundle()

    def _bundle(self) -> RevocationBundle:
        return RevocationBundle(
            self.directory.delegation(),
            read_small_file(self.directory.path / "revocations.note", 1 << 16, what="list"),
            read_small_file(self.directory.path / "checkpoint.note", 1 << 16, what="checkpoint"),
        )

    def _endorse(  # noqa: PLR0917 - the endorsement's fields
        self,
        address: str,
        client_auth: str,
        endpoint: str,
        unit: str,
        now: int,
        days: int,
        replaces: str = "",
    ) -> bytes:
        try:
            proof = self.directory.endorse(
                self.signer,
                address,
                endpoint=endpoint,
                unit=unit,
                now=now,
                days=_lifetime(days) // _DAY,
                replaces=replaces,
                log=self.log,
                clamp=True,  # never past the delegation's end (trust.md §8.4)
            )
        except TrustError as exc:
            raise ConfigError(f"cannot endorse {address}: {exc}") from exc
        endorsed = stored_endorsement(proof.endorsement)
        before = self._endpoints.get(address)
        # A new dict, not a change in place: decide() and authorized_clients()
        # read it on the event loop while this runs in the worker thread.
        self._endpoints = {**self._endpoints}
        self._endpoints[address] = Enrolled(
            address,
            client_auth,
            endpoint,
            unit,
            now if before is None else before.enrolled_at,
            proof.index,
            endorsed.valid_from,
            endorsed.valid_until,
            replaces,
        )
        self._save()
        return proof.encode()

    def _proof(self, enrolled: Enrolled) -> bytes:
        checkpoint = read_small_file(
            self.directory.path / "checkpoint.note", 1 << 16, what="checkpoint"
        )
        return EndorsementProof(
            self.directory.delegation(),
            self.directory.statement(enrolled.index),
            checkpoint,
            enrolled.index,
            self.log.inclusion(enrolled.index),
        ).encode()
