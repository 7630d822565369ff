"""Passing on what an endpoint holds of other agencies (``protocol-spec/trust.md`` §7.2).

Each side of a session sends, in ``TrustGossip`` records, the latest list and
checkpoint it holds of every agency but its own whose anchor it holds, with a
delegation that signed them (:func:`gossip`, choosing through
:func:`onionpost.proto.trust_session.to_gossip` among the delegations kept
with what is held: so a daemon passes on after a restart what it held
before); the session's sender sends
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
from onionpost.proto import trust
from onionpost.proto.messages import TrustGossip
from onionpost.proto.trust_session import Gossip, meet_gossip, to_gossip
from onionpost.store import Contact, Store

__all__ = ["Gossiped", "gossip", "receive_gossip"]

log = logging.getLogger("onionpost.daemon")


def gossip(store: Store) -> list[Gossip]:
    """What we hold of each agency but our own, to pass on (trust.md §7.2),
    each with a delegation that signed it: the one it came with, kept with
    it in the store; for what was held before the store kept them (version
    16), one of our contacts' endorsements."""
    delegations = store.trust.held_delegations()
    for stored in store.trust.endorsements().values():
        if stored.proof is None:
            continue
        try:
            delegations.append(trust.EndorsementProof.decode(stored.proof).delegation)
        except TrustError:
            continue
    own = store.trust.own()
    return to_gossip(
        [s.anchor for s in store.trust.all()],
        store.trust.held(),
        own=None if own is None else own[0],
        delegations=dict.fromkeys(delegations),
    )


@dataclass(frozen=True, slots=True)
class Gossiped:
    """What a contact's gossip record did (the same shape as a staple's,
    ``_trust.Stapled``): the refusals now in force, whether we now hold a
    newer list or checkpoint of its agency, and whether that agency is our
    own (what is newer is stapled on) or another (passed on as gossip)."""

    refusals: dict[int, str]
    new_list: bool = False
    new_checkpoint: bool = False
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
        # A list older than ours: a contact that has not refreshed yet, as a
        # rule, not an attack (a list is never rolled back here); ignored.
        log.info(
            "event=revocations_older_ignored agency=%s contact=%s source=gossip",
            anchor.agency,
            contact_ref(contact.id),
        )
    if outcome.held is None:
        return Gossiped(refusals(store, required=required))
    store.trust.hold(
        anchor.fingerprint,
        None if outcome.held.revocations is None else outcome.held.revocations.data,
        None if outcome.held.checkpoint is None else outcome.held.checkpoint.data,
        delegation=record.delegation,
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
        refusals(store, required=required),
        outcome.new_list,
        outcome.new_checkpoint,
        own_agency,
    )
