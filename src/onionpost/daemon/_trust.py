"""The local API's agency trust (trust.md): anchors, our own endorsement, a
move to a new address, revocation lists, our registrar, and each contact's
own require_endorsement.

:class:`TrustHandlers` holds the link to our agency's registrar
(:class:`~onionpost.daemon._registrar.RegistrarLink`), whose lists it acts
on as on one imported, and applies to the engine every change that may
refuse contacts (:meth:`TrustHandlers.refusals_changed`).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

from onionpost import api
from onionpost._logs import contact_ref, safe
from onionpost.daemon._common import now_ms
from onionpost.daemon._registrar import RegistrarDial, RegistrarLink
from onionpost.daemon.delivery import (
    DeliveryEngine,
    Imported,
    announce_rotation,
    import_revocations,
    install_own,
    own_in_detail,
    recheck_contacts,
    refusals,
    rotation_progress,
)
from onionpost.errors import ConfigError, NotFoundError
from onionpost.home import ContactCard, Secrets
from onionpost.host import StoreWorker
from onionpost.proto.trust import (
    Anchor,
    Status,
    Verdict,
    confirm_anchor,
    stored_checkpoint,
    stored_revocations,
)
from onionpost.store import Store

__all__ = ["TrustHandlers", "installed"]

log = logging.getLogger("onionpost.daemon")


class TrustHandlers:
    """The ``trust_*`` requests, and ``contact_require_endorsement``."""

    def __init__(  # noqa: PLR0917 - the parts it links
        self,
        store: Store,
        engine: DeliveryEngine,
        worker: StoreWorker,
        secrets: Secrets,
        registrar: RegistrarDial,
        registrar_file: Path,
        refresh: float,
        *,
        moved: Callable[[], None],
    ) -> None:
        """``registrar`` dials our agency's registrar, named in
        ``registrar_file``, asked every ``refresh`` seconds; ``moved`` is told
        when this home announces a move (trust.md §6)."""
        self._store = store
        self._engine = engine
        self._worker = worker
        self._secrets = secrets
        self._moved = moved
        # Our agency's registrar (trust.md §8), reached as a mailbox is.
        self.registrar = RegistrarLink(
            secrets,
            store,
            registrar_file,
            registrar,
            worker,
            refresh,
            held=self.list_held,
            installed=engine.restaple,
        )

    async def contact_require_endorsement(
        self, request: api.ContactRequireEndorsement
    ) -> api.ContactRef:
        """Set one contact's require_endorsement apart from the config's (trust.md §7.4)."""
        if request.required not in (True, False, None):
            raise ConfigError("required is true, false or null")
        contact = await self._worker(self._store.contacts.contact, request.name)
        await self._worker(self._store.trust.set_required, contact.id, request.required)
        log.info(
            "event=contact_trust_policy contact=%s required=%s",
            contact_ref(contact.id),
            request.required,
        )
        await self.refusals_changed()
        return api.ContactRef(contact.name, str(contact.address))

    async def refusals_changed(self) -> None:
        required = self._engine.policy.require_endorsement
        self._engine.apply_refusals(await self._worker(refusals, self._store, required=required))

    async def trust_add(self, request: api.TrustAdd) -> api.TrustAnchor:
        """Install an anchor once the user typed its safety number (trust.md §1)."""
        anchor = confirm_anchor(request.anchor, request.safety_number)
        stored = await self._worker(self._store.trust.add, anchor, now_ms())
        log.info("event=trust_anchor_added agency=%s", safe(anchor.agency))
        # Contacts whose endorsement by this agency waited for its anchor
        # (a card bundle added first, a session before) are judged now, not
        # at the next housekeeping round.
        if await self._worker(recheck_contacts, self._store, stored.anchor, now_ms()):
            await self.refusals_changed()
        return _trust_anchor(stored.anchor, stored.added_ms)

    async def trust_list(self, request: api.TrustList) -> tuple[api.TrustAnchor, ...]:
        stored = await self._worker(self._store.trust.all)
        held = await self._worker(self._store.trust.held)
        return tuple(
            _trust_anchor(s.anchor, s.added_ms, held.get(s.anchor.fingerprint, (None, None)))
            for s in stored
        )

    async def trust_endorsement_install(
        self, request: api.TrustEndorsementInstall
    ) -> api.Endorsement:
        """Keep our own endorsement, presented in every session (trust.md §7.1)."""
        try:
            proof = base64.b64decode(request.proof, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("an endorsement proof is sent as base64") from exc
        address = str(self._secrets.identity.address)
        verdict = await self._worker(install_own, self._store, address, proof, now_ms())
        self._engine.restaple()  # contacts with a session up learn it now
        return installed(verdict)

    async def trust_rotate(self, request: api.TrustRotate) -> api.RotationAnnounced:
        """Announce our move to the new address of ``request.card`` (trust.md
        §6): told to every contact in its next session or through its mailbox."""
        try:
            proof = base64.b64decode(request.proof, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("an endorsement proof is sent as base64") from exc
        card = ContactCard.parse(request.card)
        address = self._secrets.identity.address
        if card.address == address:
            raise ConfigError("that card is this endpoint's own: a move needs a new address")
        rotation, verdict = await self._worker(
            partial(
                announce_rotation,
                self._store,
                str(address),
                new=str(card.address),
                client_auth_public=card.client_auth_public,
                proof=proof,
                now_ms=now_ms(),
            )
        )
        self._moved()
        if self._engine.running:
            self._engine.rotation_announced()
        progress = await self._worker(rotation_progress, self._store)
        contacts = 0 if progress is None else progress[2]
        return api.RotationAnnounced(
            rotation.new_address,
            rotation.old_address,
            rotation.agency,
            rotation.proof.value,
            verdict.status.value,
            contacts,
        )

    async def trust_revocations_import(
        self, request: api.TrustRevocationsImport
    ) -> api.RevocationsImported:
        """Hold an agency's newer revocation list and act on it at once: a
        contact it revokes is refused (trust.md §7.3)."""
        try:
            bundle = base64.b64decode(request.bundle, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("a revocation list is sent as base64") from exc
        done = await self._worker(import_revocations, self._store, bundle, now_ms())
        await self.list_held(done)
        return api.RevocationsImported(
            done.agency, done.serial, done.issued_at, done.revoked, done.changed
        )

    async def list_held(self, done: Imported) -> None:
        """A newer list is held (imported, or from our registrar): act on it at once."""
        await self.refusals_changed()
        self._engine.restaple()
        if not done.stapled:
            self._engine.regossip()  # another agency's: passed on (§7.2)
        if done.stapled:
            # Our own agency's list: contacts with no session up are dialled
            # once (paced, as an announcement) to be handed it, so that a
            # revocation reaches them now, not at their next text (§7.2).
            self._engine.announce()

    async def trust_enrol(self, request: api.TrustEnrol) -> api.Endorsement:
        """Enrol with our agency's registrar (trust.md §8). An endpoint whose
        endorsement is in force is refused unless ``again``: a code is made
        for one endpoint, its name and unit, and used here by mistake it
        would rename this one and leave the other without a code."""
        if not request.again:
            address = str(self._secrets.identity.address)
            judged = await self._worker(own_in_detail, self._store, address, now_ms())
            verdict = None if judged is None else judged.verdict
            if verdict is not None and verdict.status is not Status.REFUSED:
                raise ConfigError(f"this endpoint is enrolled already: {_enrolled_as(verdict)}")
        verdict = await self.registrar.enrol(request.code)
        return installed(verdict)

    async def trust_remove(self, request: api.TrustRemove) -> api.TrustAnchor:
        found = await self._worker(self._store.trust.find, request.anchor)
        if found is None:
            raise NotFoundError(f"no trust anchor is {request.anchor!r}")
        await self._worker(self._store.trust.remove, found.anchor)
        log.info("event=trust_anchor_removed agency=%s", safe(found.anchor.agency))
        return _trust_anchor(found.anchor, found.added_ms)


def _trust_anchor(
    anchor: Anchor, added_ms: int | None, held: tuple[bytes | None, bytes | None] = (None, None)
) -> api.TrustAnchor:
    revocations, checkpoint = held
    listed = None if revocations is None else stored_revocations(revocations).value
    return api.TrustAnchor(
        anchor.agency,
        anchor.fingerprint.hex(),
        anchor.safety_number,
        bool(anchor.mldsa65),
        added_ms,
        revocations_serial=None if listed is None else listed.serial,
        revocations_issued_at=None if listed is None else listed.issued_at,
        checkpoint_size=None
        if checkpoint is None
        else stored_checkpoint(checkpoint).checkpoint.size,
    )


def _enrolled_as(verdict: Verdict) -> str:
    e = verdict.endorsement
    assert e is not None
    assert verdict.until is not None
    where = f"'{e.endpoint}', {e.unit}" if e.unit else f"'{e.endpoint}'"
    until = datetime.fromtimestamp(verdict.until, UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"endorsed by {e.agency} as {where} until {until}, renewed by the daemon. "
        "A code is made for one endpoint: use it on that one, or enrol this one "
        "anew under the code's name and unit with --again"
    )


def installed(verdict: Verdict) -> api.Endorsement:
    """Our own endorsement as installed (``trust_endorsement_install``,
    ``trust_enrol``): the verdict on it is endorsed or unverified, never refused."""
    e = verdict.endorsement
    assert e is not None
    assert verdict.until is not None
    return api.Endorsement(
        e.agency, e.address, e.endpoint, e.unit, verdict.until, verdict.status.value, e.replaces
    )
