"""One contact as the local API shows it: ``contact_list``'s row, ``status``'s
delivery state, and ``contact_show``'s whole picture (trust.md §7).

The records are shaped here once, so that ``contact show`` says of a contact
exactly what ``contact list`` and ``status`` say, with the detail behind it:
the verdict on its endorsement is the one stored (the one in force: its
refusal follows from it), and what that verdict rests on is read again from
the proof it was reached on, the anchor and the list held
(:func:`~onionpost.daemon.delivery.judge_in_detail`, the housekeeping's own
check). :func:`gather` is synchronous store work, run in the worker.

:class:`ContactHandlers` serves the local API's ``contact_*`` requests on
those records. A member a group introduced (groups.md §9) is found by its
address or card name where a contact's name is looked for
(:func:`contact_or_introduced`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from onionpost import api
from onionpost._logs import contact_ref, safe
from onionpost.daemon import _labels
from onionpost.daemon._common import now_ms
from onionpost.daemon._mailbox import OwnerLink
from onionpost.daemon.delivery import (
    DeliveryEngine,
    Judged,
    LinkStatus,
    judge_in_detail,
    receive_staple,
    unfit_mailbox,
)
from onionpost.errors import ConfigError, UnknownContactError
from onionpost.home import ContactCard, Secrets, parse_endorsement_line, safety_number
from onionpost.host import EventHub, OnionHost, StoreWorker
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.labels import LabelPolicy
from onionpost.store import Contact, ContactEndorsement, ContactRotation, Store

__all__ = [
    "ContactHandlers",
    "Gathered",
    "contact_named",
    "contact_or_introduced",
    "contact_record",
    "contact_status",
    "endorsement_detail",
    "gather",
    "introduced",
]

log = logging.getLogger("onionpost.daemon")


@dataclass(frozen=True, slots=True)
class Gathered:
    """What the store holds of one contact, for ``contact_show``."""

    contact: Contact
    verified_ms: int | None
    endorsement: ContactEndorsement | None
    judged: Judged | None
    required: bool | None  # its own setting; None: as config.toml says
    rotation: ContactRotation | None
    max_labels: tuple[str, ...]
    accepts: tuple[str, ...]
    queued: int
    deposited: int
    groups: tuple[str, ...]


def gather(store: Store, contact: Contact, now_ms: int) -> Gathered:
    """Everything the store holds of ``contact`` (a contact, or a member a
    group introduced), its endorsement judged in detail at ``now_ms``."""
    stored = store.trust.endorsements().get(contact.id)
    judged = (
        None
        if stored is None or stored.proof is None
        else judge_in_detail(store, str(contact.address), stored.proof, now_ms)
    )
    key = contact.address.public_key
    groups = tuple(
        log.state.name for log in store.groups.shared_with(key) if log.state.is_member(key)
    )
    return Gathered(
        contact,
        store.contacts.verified().get(contact.id),
        stored,
        judged,
        store.trust.required().get(contact.id),
        store.trust.rotations().get(contact.id),
        *store.contacts.label_limits(contact.id),
        store.outbox.outbox_depth(contact.id),
        store.mailbox.deposited_count(contact.id),
        groups,
    )


def contact_record(
    contact: Contact,
    link: LinkStatus | None,
    *,
    verified_ms: int | None,
    endorsement: ContactEndorsement | None,
    required: bool | None,
    rotation: ContactRotation | None,
    max_labels: tuple[str, ...],
    accepts: tuple[str, ...],
) -> api.Contact:
    """A contact as ``contact_list`` shows it."""
    return api.Contact(
        name=contact.name,
        address=str(contact.address),
        added_ms=contact.added_ms,
        last_seen_ms=contact.last_seen_ms,
        reachable=bool(link and link.reachable),
        verified_ms=verified_ms,
        endorsement=None if endorsement is None else endorsement.describe,
        endorsement_status=None if endorsement is None else endorsement.status,
        require_endorsement=required,
        rotated=None if rotation is None else rotation.describe,
        rotated_ms=None if rotation is None else rotation.rotated_ms,
        max_labels=max_labels,
        accepts=accepts,
    )


def contact_status(
    contact: Contact, link: LinkStatus | None, queued: int, deposited: int
) -> api.ContactStatus:
    """A contact's delivery state as ``status`` shows it."""
    return api.ContactStatus(
        name=contact.name,
        address=str(contact.address),
        reachable=bool(link and link.reachable),
        queued=queued,
        last_error=link.last_error if link else "",
        since_ms=link.since_ms if link else None,
        last_seen_ms=contact.last_seen_ms,
        failures=link.failures if link else 0,
        retry_in=link.retry_in if link else None,
        dialing_for=link.dialing_for if link else None,
        mailbox=None if contact.mailbox is None else str(contact.mailbox),
        deposited=deposited,
        mailbox_error=link.mailbox_error if link else "",
        refused=link.refused if link else "",
    )


def endorsement_detail(
    status: str, describe: str, checked_ms: int | None, judged: Judged | None
) -> api.EndorsementDetail:
    """The verdict ``status``/``describe`` (a contact's as stored, or our own
    judged now) with what ``judged`` says it rests on. The statement's fields
    are filled only from a verdict whose signatures verified under the anchor."""
    if judged is None:
        return api.EndorsementDetail(status, describe, checked_ms)
    verdict, listed = judged.verdict, judged.revocations
    e = None if verdict is None else verdict.endorsement
    revoked = None if verdict is None else verdict.revoked
    return api.EndorsementDetail(
        status,
        describe,
        checked_ms,
        reason="" if verdict is None or verdict.reason is None else verdict.reason.value,
        agency=judged.agency,
        endpoint="" if e is None else e.endpoint,
        unit="" if e is None else e.unit,
        valid_from=None if e is None else e.valid_from,
        valid_until=None if e is None else e.valid_until,
        until=None if verdict is None else verdict.until,
        replaces="" if e is None else e.replaces,
        anchor="" if judged.anchor is None else judged.anchor.fingerprint.hex(),
        revocations_serial=None if listed is None else listed.serial,
        revocations_issued_at=None if listed is None else listed.issued_at,
        revoked_at=None if revoked is None else revoked.revoked_at,
        revoked_reason="" if revoked is None else revoked.reason,
    )


def contact_named(store: Store, name: str) -> Contact:
    """A contact by its name, or by its onion address (any letter case, with
    or without ``.onion``; an address always means the contact at it): a tool
    keyed on the stable address need not map it to a name that may be
    renamed. UnknownContactError for neither."""
    return store.contacts.contact(name)


def contact_or_introduced(store: Store, name: str) -> Contact:
    """A contact by name, else a member a group introduced, by its
    address or its (unique) card name: whose safety number we compare."""
    try:
        return store.contacts.contact(name)
    except UnknownContactError:
        found = introduced(store, name)
        if found is None:
            raise
        return found


def introduced(store: Store, name: str) -> Contact | None:
    """A member a group introduced, by its address or its card's name;
    ConfigError when several have that name."""
    introduced = store.contacts.introduced()
    address = OnionAddress.in_text(name)
    if address is not None:
        # An address means the member at it, never one whose card is so named.
        return next((p for p in introduced if p.address == address), None)
    by_name = [p for p in introduced if p.name.casefold() == name.casefold()]
    if len(by_name) > 1:
        raise ConfigError(f"several members introduced to us are named {name!r}: give its address")
    return by_name[0] if by_name else None


class ContactHandlers:
    """The ``contact_*`` requests but ``contact_require_endorsement`` (agency
    trust's): a contact added, shown, verified, renamed, removed; what our
    onion service lets in follows (``authorize``), as does our mailbox."""

    def __init__(  # noqa: PLR0917 - the parts it links
        self,
        store: Store,
        engine: DeliveryEngine,
        worker: StoreWorker,
        secrets: Secrets,
        host: OnionHost,
        owner: OwnerLink,
        hub: EventHub,
        labels: LabelPolicy,
        *,
        refusals_changed: Callable[[], Awaitable[None]],
    ) -> None:
        self._store = store
        self._engine = engine
        self._worker = worker
        self._secrets = secrets
        self._host = host
        self._owner = owner
        self._hub = hub
        self._labels = labels
        self._refusals_changed = refusals_changed

    async def authorize(self) -> None:
        """Our onion service lets in exactly our peers (once it is published)."""
        if self._host.published:
            await self._host.authorize()

    def _add_contact(self, name: str, card: ContactCard) -> Contact:
        store = self._store
        if card.mailbox is not None:
            unfit = unfit_mailbox(
                card.mailbox.mailbox,
                self._secrets.identity.address,
                lambda a: a == card.address or store.contacts.contact_by_address(a) is not None,
            )
            if unfit is not None:
                # Dialing it as a mailbox would tell that endpoint whose
                # contact we are (mailbox.md §Announcement).
                raise ConfigError(
                    "that card names as its mailbox this endpoint, the card's own "
                    "address or one of our contacts: refused"
                )
        with store.transaction():
            contact = store.contacts.add_contact(
                name, card.address, card.client_auth_public, now_ms()
            )
            if card.mailbox is not None:
                store.mailbox.set_contact_mailbox(
                    contact.id, card.mailbox.mailbox, card.mailbox.version
                )
        return store.contacts.contact(contact.name)

    async def contact_add(self, request: api.ContactAdd) -> api.ContactRef:
        parsed = ContactCard.parse(request.card)
        if parsed.address == self._secrets.identity.address:
            raise ConfigError("that card is this endpoint's own")
        # A card bundle's endorsement (trust.md §7.5): read before anything is
        # added, judged as a staple once the contact exists.
        proof = None if not request.endorsement else parse_endorsement_line(request.endorsement)
        name = parsed.name if request.name is None else request.name  # "" is refused
        if request.name is None and OnionAddress.in_text(name) is not None:
            # A hostile card's name may be another contact's address.
            raise ConfigError(
                f"the card's name is an onion address ({name!r}), which always names "
                "the contact at it: add this contact under a name of your own (--name)"
            )
        contact = await self._worker(self._add_contact, name, parsed)
        if proof is not None:
            await self._worker(
                receive_staple,
                self._store,
                contact,
                m.TrustStaple(proof, b"", b""),
                now_ms(),
                required=self._engine.policy.require_endorsement,
            )
        await self.authorize()
        await self._host.add_client_auth(contact.address, self._secrets.client_auth_private)
        if self._engine.running:
            # Judged before its link starts: with require_endorsement, a new
            # contact has presented nothing, and nothing may go to it yet.
            await self._refusals_changed()
            self._engine.add_contact(contact)
        self._owner.changed()
        log.info("event=contact_added contact=%s", contact_ref(contact.id))
        log.debug(
            "event=contact_added contact=%s name=%s address=%s",
            contact_ref(contact.id),
            safe(contact.name),
            contact.address,
        )
        return api.ContactRef(contact.name, str(contact.address))

    def _contacts_with_limits(self) -> list[tuple[Contact, tuple[str, ...], tuple[str, ...]]]:
        store = self._store
        return [(c, *store.contacts.label_limits(c.id)) for c in store.contacts.all()]

    async def contact_list(self, request: api.ContactList) -> tuple[api.Contact, ...]:
        verified = await self._worker(self._store.contacts.verified)
        endorsed = await self._worker(self._store.trust.endorsements)
        required = await self._worker(self._store.trust.required)
        rotated = await self._worker(self._store.trust.rotations)
        return tuple(
            contact_record(
                c,
                self._engine.status(c.id),
                verified_ms=verified.get(c.id),
                endorsement=endorsed.get(c.id),
                required=required.get(c.id),
                rotation=rotated.get(c.id),
                max_labels=local,
                accepts=advertised,
            )
            for c, local, advertised in await self._worker(self._contacts_with_limits)
        )

    def _contact_shown(self, name: str) -> Contact:
        """A contact by name, else by its address (:func:`contact_named`); else
        a member a group introduced, by its address or card name (as
        contact_verify finds it)."""
        try:
            return contact_named(self._store, name)
        except UnknownContactError:
            found = introduced(self._store, name)
            if found is None:
                raise
            return found

    async def contact_show(self, request: api.ContactShow) -> api.ContactDetail:
        """Everything about one contact (trust.md §7: its endorsement in
        detail, and why it is refused)."""
        contact = await self._worker(self._contact_shown, request.name)
        got = await self._worker(gather, self._store, contact, now_ms())
        link = self._engine.status(contact.id)
        stored, rotation = got.endorsement, got.rotation
        configured = self._engine.policy.require_endorsement
        return api.ContactDetail(
            contact=contact_record(
                contact,
                link,
                verified_ms=got.verified_ms,
                endorsement=stored,
                required=got.required,
                rotation=rotation,
                max_labels=got.max_labels,
                accepts=got.accepts,
            ),
            delivery=contact_status(contact, link, got.queued, got.deposited),
            endorsement=None
            if stored is None
            else endorsement_detail(stored.status, stored.describe, stored.checked_ms, got.judged),
            require_endorsement=configured if got.required is None else got.required,
            require_endorsement_from="config.toml" if got.required is None else "contact",
            rotated_from=None
            if rotation is None
            else str(OnionAddress.from_public_key(rotation.old_address)),
            introduced=contact.introduced,
            groups=got.groups,
        )

    async def contact_set_max_label(self, request: api.ContactSetMaxLabel) -> api.ContactLabels:
        name, local, advertised = await self._worker(
            _labels.set_max_label, self._store, self._labels, request.name, request.labels
        )
        return api.ContactLabels(name, local, advertised)

    def _remove_contact(self, name: str) -> tuple[Contact, list[bytes], tuple[str, ...]]:
        """The contact removed, what waited for it expired, and the lists it
        was taken off, in one transaction."""
        with self._store.transaction():
            found = self._store.contacts.contact(name)
            lists = tuple(
                held.name
                for held in self._store.lists.all()
                if any(m.id == found.id for m in held.members)
            )
            contact = self._store.contacts.remove_contact(name)
            return contact, self._store.outbox.expire_contact(contact.id), lists

    def _still_shared(self, contact: Contact) -> tuple[str, ...]:
        """The groups ``contact`` is a member of with us now."""
        key, me = contact.address.public_key, self._secrets.identity.public_key
        return tuple(
            found.state.name
            for found in self._store.groups.shared_with(key)
            if found.state.is_member(key) and found.state.is_member(me)
        )

    async def contact_remove(self, request: api.ContactRemove) -> api.ContactRemoved:
        contact, expired, lists = await self._worker(self._remove_contact, request.name)
        for message_id in expired:
            self._hub.publish(api.StateChange(message_id.hex(), api.MessageState.EXPIRED))
        self._engine.remove_contact(contact.id)
        await self.authorize()
        await self._host.remove_client_auth(contact.address)
        self._owner.changed()
        # Still a member of a group we share: introduced now (groups.md §9).
        self._engine.reconcile_introductions()
        log.info("event=contact_removed contact=%s", contact_ref(contact.id))
        groups = await self._worker(self._still_shared, contact)
        return api.ContactRemoved(contact.name, str(contact.address), groups, lists)

    async def contact_rename(self, request: api.ContactRename) -> api.ContactRef:
        contact = await self._worker(
            self._store.contacts.rename_contact, request.name, request.new_name, now_ms()
        )
        self._engine.contact_changed(contact)
        log.info("event=contact_renamed contact=%s", contact_ref(contact.id))
        return api.ContactRef(contact.name, str(contact.address))

    async def contact_verify(self, request: api.ContactVerify) -> api.SafetyNumber:
        contact = await self._worker(contact_or_introduced, self._store, request.name)
        number = safety_number(self._secrets.identity.public_key, contact.address.public_key)
        if request.confirm is not None:
            heard = "".join(str(request.confirm).split()).encode()
            digits = "".join(number.split()).encode()
            if len(heard) != len(digits) or not heard.isdigit():
                # A slip of the keyboard, not a different number: the length
                # and the alphabet are the same for every safety number.
                raise ConfigError(
                    f"a safety number is {len(digits)} digits, spaces aside; "
                    f"that was {len(heard)} characters, spaces aside"
                    + ("" if not heard or heard.isdigit() else ", not all digits")
                )
            if not hmac.compare_digest(heard, digits):
                raise ConfigError(
                    f"that is not the safety number with {contact.name!r}: someone may be "
                    "between you; do not trust this contact until the numbers match"
                )
            now = now_ms()
            await self._worker(
                self._store.contacts.mark_verified,
                str(contact.address) if contact.introduced else contact.name,
                number,
                now,
            )
            log.info("event=contact_verified contact=%s", contact_ref(contact.id))
            return api.SafetyNumber(contact.name, number, now)
        verified = await self._worker(self._store.contacts.verified)
        return api.SafetyNumber(contact.name, number, verified.get(contact.id))
