"""Passing on what an endpoint holds of other agencies (``protocol-spec/trust.md`` §7.2).

Each side of a session sends, in ``TrustGossip`` records, the latest list and
checkpoint it holds of every agency but its own whose anchor it holds, with a
delegation that signed them (:func:`gossip`, choosing through
:func:`onionpost.proto.trust_session.to_gossip`); the session's sender sends
each contact what it has not been sent, as its pace allows. The receiver's
decision is :func:`onionpost.proto.trust_session.meet_gossip`;
:func:`receive_gossip` reads what it needs from the store and writes what the
decision says: the list and checkpoint to hold, an alarm, and, with a newer
list, every contact of that agency judged again (as a staple's list does,
``_trust.py``).

Everything here is synchronous store work, run in the engine's worker. A
session takes gossip by rate (``TRUST_GOSSIP_BURST``, then one each
``TRUST_GOSSIP_INTERVAL``); a forged, malformed or refused record is logged
and ignored as a whole, and the session goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from onionpost._logs import contact_ref
from onionpost.daemon.delivery._trust import _held, recheck_contacts, refusals
from onionpost.errors import TrustError
from onionpost.limits import MAX_TRUST_ANCHORS
from onionpost.proto import trust
from onionpost.proto.messages import TrustGossip
from onionpost.proto.trust_session import Gossip, meet_gossip, to_gossip
from onionpost.store import Contact, Store

__all__ = ["Gossiped", "gossip", "learn_delegation", "receive_gossip"]

log = logging.getLogger("onionpost.daemon")


def gossip(store: Store, learned: tuple[bytes, ...] = ()) -> list[Gossip]:
    """What we hold of each agency but our own, to pass on (trust.md §7.2),
    each with a delegation that signed it: from our contacts' endorsements,
    or ``learned`` (delegations met in gossip and in bundles imported)."""
    own = store.trust.own()
    delegations: list[bytes] = list(learned)
    proofs = [own[1]] if own is not None else []
    proofs += [e.proof for e in store.trust.endorsements().values() if e.proof is not None]
    for proof in proofs:
        try:
            delegations.append(trust.EndorsementProof.decode(proof).delegation)
        except TrustError:
            continue
    return to_gossip(
        [s.anchor for s in store.trust.all()],
        store.trust.held(),
        own=None if own is None else own[0],
        delegations=dict.fromkeys(delegations),
    )


def learn_delegation(learned: dict[str, bytes], delegation: bytes) -> None:
    """Keep ``delegation`` (verified by whoever passes it here) as the one to
    pass its agency's list on with, at most one an agency and
    ``MAX_TRUST_ANCHORS`` agencies (the oldest forgotten first)."""
    try:
        agency = trust.claimed_agency(delegation)
    except TrustError:
        return
    learned.pop(agency, None)
    learned[agency] = delegation
    while len(learned) > MAX_TRUST_ANCHORS:
        del learned[next(iter(learned))]


@dataclass(frozen=True, slots=True)
class Gossiped:
    """What a contact's gossip record did: the refusals now in force, the
    agency whose view changed (None: nothing), and whether that is a newer
    list of our own agency (to staple on) or of another (to pass on)."""

    refusals: dict[int, str]
    agency: str | None = None
    own_agency: bool = False


def receive_gossip(
    store: Store,
    contact: Contact,
    record: TrustGossip,
    now_ms: int,
    *,
    required: bool,
    cache: trust.VerifiedCache | None = None,
) -> Gossiped:
    """Decide on ``contact``'s gossip record (trust.md §7.2) and hold what it
    says: forged, malformed or refused statements are logged and change
    nothing; an agency we hold no anchor of is ignored."""
    anchors = {s.anchor.agency: s.anchor for s in store.trust.all()}
    try:
        outcome = meet_gossip(
            anchors,
            _held(store),
            delegation=record.delegation,
            revocations=record.revocations,
            checkpoint=record.checkpoint,
            now=now_ms // 1000,
            cache=cache,
        )
    except TrustError as exc:
        log.info(
            "event=trust_gossip_refused contact=%s what=%s error=%s",
            contact_ref(contact.id),
            exc.what,
            type(exc).__name__,
        )
        return Gossiped(refusals(store, required=required))
    if outcome is None:
        return Gossiped(refusals(store, required=required))
    anchor = outcome.anchor
    if outcome.alarm is not None:
        alarm = outcome.alarm
        store.trust.raise_alarm(alarm.what, anchor.fingerprint, alarm.first, alarm.second, now_ms)
        log.warning(
            "event=trust_alarm kind=%s agency=%s contact=%s source=gossip",
            alarm.what,
            anchor.agency,
            contact_ref(contact.id),
        )
    if outcome.rolled_back:
        log.info(
            "event=revocations_rolled_back agency=%s contact=%s source=gossip",
            anchor.agency,
            contact_ref(contact.id),
        )
    if outcome.held is None:
        return Gossiped(refusals(store, required=required))
    store.trust.hold(
        anchor.fingerprint,
        None if outcome.held.revocations is None else outcome.held.revocations.data,
        None if outcome.held.checkpoint is None else outcome.held.checkpoint.data,
    )
    if outcome.new_list:
        assert outcome.held.revocations is not None
        log.info(
            "event=revocations_gossiped agency=%s serial=%d contact=%s",
            anchor.agency,
            outcome.held.revocations.value.serial,
            contact_ref(contact.id),
        )
        # Every contact of that agency is judged again, as for a staple's list.
        recheck_contacts(store, anchor, now_ms, cache)
    own = store.trust.own()
    own_agency = own is not None and own[0] == anchor.fingerprint
    return Gossiped(
        refusals(store, required=required), anchor.agency, own_agency and outcome.new_list
    )
