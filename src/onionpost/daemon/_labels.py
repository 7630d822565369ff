"""Handling labels as the daemon enforces them (spec.md §5.10): the label a
send or a forward carries, checked against the contact's limits, a
forward's source and audience, and what an export may carry.

The rules are :mod:`onionpost.proto.labels`' pure functions; this module
reads what they need from the store (the contact's limits, the source
message) and is run in the daemon's worker. Each refusal is a
:class:`~onionpost.errors.LabelError` (local API code ``label``), raised
before anything is queued or written.
"""

from __future__ import annotations

from collections.abc import Sequence

from onionpost.errors import LabelError, LabelReason, TrustError
from onionpost.proto.labels import (
    Label,
    LabelPolicy,
    Via,
    check_audience,
    forward_via,
    may_export,
    may_forward,
    may_send,
)
from onionpost.proto.trust import EndorsementProof, Status, claimed_agency
from onionpost.store import Store, Stored

__all__ = [
    "check_export",
    "check_limits",
    "check_list_send",
    "check_send",
    "forward_label",
    "organisations",
    "set_max_label",
]


def _agency(proof: bytes) -> str | None:
    try:
        return claimed_agency(EndorsementProof.decode(proof).delegation)
    except TrustError:
        return None


def organisations(store: Store, policy: LabelPolicy) -> tuple[str | None, dict[str, str | None]]:
    """Our organisation and each contact's, by name, as endorsements say
    (trust.md): a contact's is the agency of an endorsement we found valid,
    ours ``labels.organisation`` in config.toml or else the agency of the
    endorsement we hold. A contact not endorsed now has none (outside)."""
    home = policy.organisation
    own = store.trust.own()
    if home is None and own is not None:
        home = _agency(own[1])
    endorsed = store.trust.endorsements()
    orgs: dict[str, str | None] = {}
    for contact in store.contacts.all():
        verdict = endorsed.get(contact.id)
        if verdict is not None and verdict.status == Status.ENDORSED.value and verdict.proof:
            orgs[contact.name] = _agency(verdict.proof)
    return home, orgs


def check_send(store: Store, policy: LabelPolicy, contact_id: int, name: str, label: Label) -> None:
    """Refuse ``label`` above what the contact accepts (set here, or advertised)."""
    check_limits(policy, store.contacts.label_limits(contact_id), name, label)


def check_limits(
    policy: LabelPolicy,
    limits: tuple[Sequence[str], Sequence[str]],
    name: str,
    label: Label,
) -> None:
    """:func:`check_send` with the contact's limits (set here, advertised) in hand."""
    local, advertised = limits
    may_send(label, policy.limits(advertised), ours=policy.limits(local), recipient=name)


def check_list_send(
    store: Store,
    policy: LabelPolicy,
    label: Label,
    members: Sequence[tuple[int, str]],
    *,
    via: Via = Via.LIST,
    audience: Sequence[str] | None = None,
) -> None:
    """What a distribution list or group send must pass before it queues a
    copy for any member (``members``: contact id and name): a new TLP:RED
    message never goes to a list or group (``audience`` None), one sent on
    within the list or group that was its audience (``audience``: its
    members' names then) only to them; AMBER+STRICT stays in the
    organisation; each member's limits hold. Refuses the whole send, naming
    the member."""
    home, orgs = organisations(store, policy)
    check_audience(
        label,
        [name for _, name in members],
        via=via,
        audience=audience,
        home_org=home,
        orgs=orgs,
    )
    for contact_id, name in members:
        check_send(store, policy, contact_id, name, label)


def forward_label(
    store: Store,
    policy: LabelPolicy,
    source: Stored,
    to: tuple[int, str],
    label: str | None,
) -> Label:
    """The label a forward of ``source`` to ``to`` (contact id, name) carries:
    the source's, or ``label`` when it is at least the source's; then the
    audience rules (TLP:RED goes back only to the contact it came from or
    went to; AMBER+STRICT within our organisation) and the recipient's limits."""
    if not source.label:
        if label is None:
            raise LabelError(
                "the message carries no label (an earlier sender's): give the label to forward "
                "it under",
                reason=LabelReason.UNKNOWN_SCHEME,
            )
        new = policy.labels.parse(label)
    else:
        original = policy.known(source.label)
        new = original if label is None else policy.labels.parse(label)
        may_forward(original, new)
    contact_id, name = to
    before = policy.known(source.label) if source.label else None
    # Endorsements name organisations: until a contact is endorsed as in
    # ours, AMBER+STRICT does not go to it once our organisation is known.
    home, orgs = organisations(store, policy)
    check_audience(
        new,
        [name],
        via=forward_via(before),
        audience=[source.contact],
        home_org=home,
        orgs=orgs,
    )
    check_send(store, policy, contact_id, name, new)
    return new


def check_export(policy: LabelPolicy, selected: Sequence[Stored]) -> None:
    """Refuse the export when policy forbids one of its messages: an unknown
    label, TLP:RED, or above ``labels.export_max``. Unlabelled messages (an
    earlier sender's) are exported as such."""
    refused: list[tuple[Stored, LabelError]] = []
    for stored in selected:
        if not stored.label:
            continue
        try:
            may_export(policy.labels.parse(stored.label), policy.export_max)
        except LabelError as exc:
            refused.append((stored, exc))
    if refused:
        # The first one named, and how many there are: the reader narrows the
        # selection once, not once per refused message.
        first, why = refused[0]
        others = f" (and {len(refused) - 1} more)" if len(refused) > 1 else ""
        raise LabelError(
            f"message {first.id.hex()}{others} cannot be exported: {why}; "
            "leave it out with --id, --since or --until",
            reason=why.reason,
            label=why.label,
        ) from why


def set_max_label(
    store: Store, policy: LabelPolicy, name: str, labels: Sequence[str]
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """Set the highest labels we send ``name`` (canonical, one per scheme)."""
    contact = store.contacts.contact(name)
    parsed = [policy.labels.parse(text) for text in labels]
    schemes = [label.scheme for label in parsed]
    if len(set(schemes)) != len(schemes):
        raise LabelError("one label per scheme", reason=LabelReason.MALFORMED)
    store.contacts.set_label_limit(contact.id, [label.text for label in parsed])
    local, advertised = store.contacts.label_limits(contact.id)
    return contact.name, local, advertised
