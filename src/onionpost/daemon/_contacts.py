"""One contact as the local API shows it: ``contact_list``'s row, ``status``'s
delivery state, and ``contact_show``'s whole picture (trust.md §7).

The records are shaped here once, so that ``contact show`` says of a contact
exactly what ``contact list`` and ``status`` say, with the detail behind it:
the verdict on its endorsement is the one stored (the one in force: its
refusal follows from it), and what that verdict rests on is read again from
the proof it was reached on, the anchor and the list held
(:func:`~onionpost.daemon.delivery.judge_in_detail`, the housekeeping's own
check). :func:`gather` is synchronous store work, run in the worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from onionpost import api
from onionpost.daemon.delivery import Judged, LinkStatus, judge_in_detail
from onionpost.store import Contact, ContactEndorsement, ContactRotation, Store

__all__ = [
    "Gathered",
    "contact_record",
    "contact_status",
    "endorsement_detail",
    "gather",
]


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
