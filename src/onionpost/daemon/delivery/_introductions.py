"""Members of our groups who are not our contacts (groups.md §9).

::

    a group's log changes here ──► reconcile (in the worker, one transaction)
    (ops received or ours,         ├── plan_introductions: pure, from our contacts,
     a join, a leave, a removal,   │   the members introduced so far and every log
     a contact removed; start)     │   that makes us a member
                                   ├── introduce: a row for each new one
                                   └── drop: a row removed, its unacked copies expired
                               ──► the engine starts / stops their links, the
                                   daemon authorizes / deauthorizes them at our
                                   onion service and at our tor

An introduced member is reached exactly as a contact is (its link, sessions,
outbox, acks), but it is no contact: what it may send us is
:func:`introduced_record`'s table (group records and what a session needs,
nothing one to one), and the local API names it apart. It stays while a
group we are a member of holds it as a member, and goes with the last one.
Everything here but :func:`reconcile` is pure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from onionpost.limits import MAX_CONTACT_NAME
from onionpost.proto import messages
from onionpost.proto.address import OnionAddress
from onionpost.proto.groups import GroupLog, MemberCard
from onionpost.store import Contact, Store

__all__ = [
    "Introduction",
    "IntroductionPlan",
    "Reconciled",
    "RecordVerdict",
    "introduced_record",
    "plan_introductions",
    "reconcile",
    "shown_name",
]

# Characters of an address that tell apart two members of one name.
_ADDRESS_SHOWN: Final = 8


@dataclass(frozen=True, slots=True)
class Introduction:
    """A member we reach though it is no contact: its card, the group that
    holds it and the author of the operation that carried its card (the
    admin who added it; the creator, for a group's creator)."""

    card: MemberCard
    group_id: bytes
    by: bytes


@dataclass(frozen=True, slots=True)
class IntroductionPlan:
    """What to change: members to introduce, introduced ones now held by
    another group only (by id), and introduced ones no group holds (by id)."""

    add: tuple[Introduction, ...] = ()
    move: tuple[tuple[int, Introduction], ...] = ()
    drop: tuple[int, ...] = ()


def _introducers(log: GroupLog) -> dict[bytes, bytes]:
    """By member key, the author of the last operation (in the replay order)
    that carried its card."""
    by: dict[bytes, bytes] = {}
    for op in log.ordered():
        if op.card is not None:
            by[op.card.identity_key] = op.author
    return by


def shown_name(card_name: str, address: OnionAddress, taken: set[str]) -> str:
    """The name an introduced member is stored and shown under: its card's,
    or, when a contact or another introduced member has that name (any
    letter case, ``taken``), its card's followed by the start of its address,
    so that no introduced member passes for a contact in a listing."""
    if card_name.casefold() not in taken:
        return card_name
    suffix = f" ({str(address)[:_ADDRESS_SHOWN]})"
    return card_name[: MAX_CONTACT_NAME - len(suffix)].rstrip() + suffix


def plan_introductions(
    me: bytes,
    contacts: frozenset[bytes],
    introduced: Mapping[bytes, tuple[int, bytes]],
    logs: Sequence[GroupLog],
) -> IntroductionPlan:
    """Who should be introduced, given our identity key, our contacts' keys,
    the members introduced so far (key: (id, the group that introduced it))
    and our groups' logs: every member but us and our contacts of a group
    whose current membership holds us. A member several groups hold is
    introduced by the first of ``logs`` (the store gives them by name), and
    keeps the group that introduced it while that group holds it."""
    wanted: dict[bytes, list[Introduction]] = {}
    for log in logs:
        state = log.state
        if not state.is_member(me):
            continue
        by = _introducers(log)
        for key, member in state.members.items():
            if key == me or key in contacts:
                continue
            wanted.setdefault(key, []).append(
                Introduction(member.card, log.group_id, by.get(key, key))
            )
    add, move = [], []
    for key, held in wanted.items():
        known = introduced.get(key)
        if known is None:
            add.append(held[0])
        elif all(i.group_id != known[1] for i in held):
            move.append((known[0], held[0]))
    drop = tuple(sorted(i for key, (i, _) in introduced.items() if key not in wanted))
    return IntroductionPlan(tuple(add), tuple(move), drop)


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What :func:`reconcile` changed: the members introduced and dropped
    (as their rows were), and the messages to the dropped ones expired."""

    added: tuple[Contact, ...] = ()
    dropped: tuple[Contact, ...] = ()
    expired: tuple[bytes, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.dropped)


def reconcile(store: Store, me: bytes, now: int) -> Reconciled:
    """Bring the introduced members in line with our groups, in one
    transaction (in the store worker)."""
    added, dropped, expired = [], [], []
    with store.transaction():
        peers = store.contacts.peers()
        contacts = frozenset(p.address.public_key for p in peers if not p.introduced)
        introduced = {
            p.address.public_key: (p.id, p.introduced_group or b"") for p in peers if p.introduced
        }
        plan = plan_introductions(me, contacts, introduced, store.groups.all())
        by_id = {p.id: p for p in peers}
        taken = {p.name.casefold() for p in peers}
        for intro in plan.add:
            card = intro.card
            address = OnionAddress.from_public_key(card.identity_key)
            name = shown_name(card.name, address, taken)
            taken.add(name.casefold())
            added.append(
                store.contacts.introduce(
                    name,
                    address,
                    card.client_auth_public,
                    intro.group_id,
                    intro.by,
                    now,
                )
            )
        for peer_id, intro in plan.move:
            store.contacts.reintroduce(peer_id, intro.group_id, intro.by)
        for peer_id in plan.drop:
            if store.contacts.drop_introduced(peer_id):
                dropped.append(by_id[peer_id])
                # As for a contact removed: no acknowledgement can reach us now.
                expired += store.outbox.expire_contact(peer_id)
    return Reconciled(tuple(added), tuple(dropped), tuple(expired))


class RecordVerdict(enum.Enum):
    """What a record from an introduced member does (groups.md §9)."""

    HANDLE = "handle"  # as a contact's
    IGNORE = "ignore"  # a contact's session habit with no meaning here: dropped quietly
    REFUSE = "refuse"  # one to one: refused (nothing stored, no ack), logged


# Group records, and what a session with it needs to carry them: acks and
# read receipts of what we sent it, the answers to a file we offered, its
# mailbox, its endorsement and label limit
# (which our group sends to it are held to), keepalives and close.
_HANDLED: Final = frozenset(
    {
        messages.GroupOps,
        messages.GroupFetch,
        messages.GroupText,
        # A group's file: its offer, then its chunks. A chunk counts only for a
        # transfer we accepted from this peer (the store looks it up by the
        # peer's id), and we accept no one-to-one offer from an introduced member.
        messages.GroupFileOffer,
        messages.FileChunk,
        messages.Ack,
        messages.Read,
        messages.FileAccept,
        messages.FileComplete,
        messages.FileReject,
        messages.FileCancel,
        messages.TrustStaple,
        messages.TrustGossip,
        messages.LabelLimit,
        # Its mailbox: what waits for it while it is away is deposited there,
        # as a contact's (it is registered at ours likewise).
        messages.MailboxInfo,
        messages.Ping,
        messages.Pong,
        messages.Close,
    }
)
# What a daemon that holds us as its contact sends by itself: a request to
# witness its evidence log (contacts witness, trust.md).
# A contact's move to a new address (trust.md §6) is for contacts: an
# introduced member's is ignored (its row is the group's card's).
_IGNORED: Final = frozenset({messages.LogCosign, messages.LogCosigned, messages.TrustRotation})


def introduced_record(record: object) -> RecordVerdict:
    """Whether a record from an introduced member is handled, ignored or
    refused: a one-to-one text or file, and anything else not listed, is
    refused."""
    kind = type(record)
    if kind in _HANDLED:
        return RecordVerdict.HANDLE
    if kind in _IGNORED:
        return RecordVerdict.IGNORE
    return RecordVerdict.REFUSE
