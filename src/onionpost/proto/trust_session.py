"""What a contact's stapled trust statements do to our view (trust.md §7.1).

Theory of operation
-------------------
Each side of a session sends one ``TrustStaple``: its endorsement proof, the
latest revocation list of its agency it holds and the latest checkpoint of
its agency's log it holds. :func:`meet_staple` is the receiver's whole
decision, a pure function of the anchors installed, what it holds of each
anchor's agency (:class:`Held`), the peer's address, the staple and ``now``:

1. the delegation in the proof names an agency; with no anchor of that
   agency the outcome is "no anchor for agency A" and nothing is held;
2. the stapled list, checked with the proof's delegation, is offered to the
   list held (:func:`~onionpost.proto.trust.accept_revocations`): newer
   replaces it, older is ignored (a rolled-back list is never held), the same
   serial with other contents is an alarm;
3. the stapled checkpoint, checked with the same delegation, is offered to
   the checkpoint held: one of the same size with another root is a fork
   alarm holding both signed notes; a larger one is held (its consistency
   with the held one needs the proof a gossip record carries, §7.2);
4. the endorsement is checked (:func:`~onionpost.proto.trust.check_endorsement`)
   against the list then held.

Forged or malformed statements raise (:class:`~onionpost.errors.TrustError`):
the caller records the contact as refused and keeps the session going.

Gossip (trust.md §7.2) is the same offer without an endorsement: a contact
passes on, in a ``TrustGossip``, the list and checkpoint it holds of another
agency with the delegation that signed them. :func:`to_gossip` is what a
sender passes on, :func:`meet_gossip` what a receiver does with it (steps 2
and 3 above, one :func:`_offer` for both). :class:`Pace` bounds both records
by rate, per session and per direction.

A contact that moves to a new onion address sends a ``TrustRotation``
(trust.md §6); :func:`meet_rotation` is the receiver's decision on it, as
pure: whether the agency that endorsed the contact where it is now endorses
it at the new address as its replacement. Every refusal raises, and nothing
changes.
"""

from __future__ import annotations

import datetime
import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from onionpost.errors import (
    ConflictingStatementsError,
    MalformedStatementError,
    RolledBackError,
    StatementRefusedError,
    TrustError,
    VerificationError,
)
from onionpost.limits import MAX_TRUST_STAPLE_PART, TRUST_CLOCK_SKEW, TRUST_FRESHNESS
from onionpost.proto import _msgpack, note
from onionpost.proto.trust import (
    Anchor,
    Delegation,
    EndorsementProof,
    Reason,
    RevocationList,
    Rotation,
    RotationProof,
    Signed,
    SignedCheckpoint,
    Status,
    Verdict,
    VerifiedCache,
    accept_revocations,
    check_endorsement,
    check_rotation,
    claimed_agency,
    claimed_delegation,
    open_revocations,
    stored_endorsement,
)

__all__ = [
    "REQUIRED_PREFIX",
    "REVOKED",
    "Gossip",
    "GossipOutcome",
    "Held",
    "listed_revoked",
    "Moved",
    "Outcome",
    "Pace",
    "PassOn",
    "RevocationBundle",
    "TrustRecord",
    "describe",
    "meet_checkpoint_unproven",
    "meet_gossip",
    "meet_rotation",
    "meet_staple",
    "pass_on",
    "recheck",
    "session_refusal",
    "to_gossip",
]

#: How a refusal for want of an endorsement begins (a revoked contact's does not).
REQUIRED_PREFIX: Final = "endorsement required: "

#: How a revoked contact's verdict begins: then when, by which agency, and why.
REVOKED: Final = f"refused: {Reason.REVOKED.value}"

#: An imported or gossiped list: three signed notes and the array around them.
MAX_BUNDLE: Final = 3 * MAX_TRUST_STAPLE_PART


@dataclass(frozen=True, slots=True)
class RevocationBundle:
    """A revocation list as an agency hands it out (``trust revoke``) and an
    endpoint imports it (``trust revocations import``): the msgpack array
    ``[1, delegation: bin, revocations: bin, checkpoint: bin]``, the list with
    the delegation of the key that signed it and the log's checkpoint after it
    (trust.md §7.3)."""

    delegation: bytes
    revocations: bytes
    checkpoint: bytes

    def encode(self) -> bytes:
        return _msgpack.pack([1, self.delegation, self.revocations, self.checkpoint])

    @classmethod
    def decode(cls, data: bytes) -> RevocationBundle:
        bad = MalformedStatementError("not a revocation list bundle", what="revocations")
        if not isinstance(data, bytes) or len(data) > MAX_BUNDLE:
            raise bad
        try:
            value = _msgpack.unpack(data, max_len=MAX_BUNDLE, max_items=4)
        except _msgpack.NotMsgpack as exc:
            raise bad from exc
        if (
            not isinstance(value, tuple)
            or len(value) != 4
            or value[0] != 1
            or isinstance(value[0], bool)
            or not all(isinstance(v, bytes) and v for v in value[1:])
        ):
            raise bad
        result = cls(value[1], value[2], value[3])
        if result.encode() != data:
            raise bad
        return result


@dataclass(frozen=True, slots=True)
class Held:
    """What an endpoint holds of one anchor's agency: the latest revocation
    list and log checkpoint it verified."""

    revocations: Signed[RevocationList] | None = None
    checkpoint: SignedCheckpoint | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """The decision on one staple: the anchor it concerns (None: none
    installed), the verdict on the endorsement, what to hold of that anchor
    from now on (None: unchanged) and an alarm to record."""

    agency: str
    anchor: Anchor | None
    verdict: Verdict | None
    held: Held | None = None
    alarm: ConflictingStatementsError | None = None
    rolled_back: bool = False

    @property
    def status(self) -> str:
        return "no-anchor" if self.verdict is None else self.verdict.status.value

    def describe(self) -> str:
        return describe(self.agency, self.verdict)


def describe(agency: str, verdict: Verdict | None) -> str:
    """The line ``contact list`` shows for a contact's endorsement."""
    if verdict is None:
        return f"no anchor for agency {agency}"
    if verdict.status is Status.UNVERIFIED_STALE:
        assert verdict.reason is not None
        return f"unverified: {verdict.reason.value} (agency {agency})"
    e = verdict.endorsement
    if verdict.status is Status.ENDORSED and e is not None and verdict.until is not None:
        where = f"{e.endpoint}, {e.unit}" if e.unit else e.endpoint
        return f"endorsed by {e.agency} ({where}) until {_utc(verdict.until)}"
    if verdict.reason is Reason.REVOKED and verdict.revoked is not None:
        # What a security officer needs at a glance: when, by whom, why (the
        # list's own words, at most MAX_TRUST_NAME bytes of printable text).
        revoked = verdict.revoked
        why = f": {revoked.reason}" if revoked.reason else ""
        return f"{REVOKED} {_utc(revoked.revoked_at)} by {agency}{why}"
    return verdict.describe()


def listed_revoked(address: str, lists: Iterable[RevocationList]) -> str | None:
    """Why ``address`` is refused when a revocation list we hold names it, as
    a revoked verdict reads (trust.md §7.4): whatever it presented, or if it
    presented nothing. None when no list names it."""
    for listed in lists:
        revoked = listed.find(address)
        if revoked is not None:
            why = f": {revoked.reason}" if revoked.reason else ""
            return f"{REVOKED} {_utc(revoked.revoked_at)} by {listed.agency}{why}"
    return None


def _utc(seconds: int) -> str:
    return f"{datetime.datetime.fromtimestamp(seconds, datetime.UTC):%Y-%m-%d %H:%M} UTC"


def meet_checkpoint_unproven(
    held: SignedCheckpoint | None, other: SignedCheckpoint
) -> tuple[SignedCheckpoint, ConflictingStatementsError | None]:
    """The checkpoint to hold after meeting ``other`` without a consistency
    proof: the larger; at one size, another root is a fork (returned, with
    both notes, and the held one kept)."""
    if held is None:
        return other, None
    old, new = held.checkpoint, other.checkpoint
    if old.size == new.size:
        if old.root != new.root:
            return held, ConflictingStatementsError(
                f"the agency log {old.origin} forked: two checkpoints of {old.size} entries",
                what="fork",
                first=held.data,
                second=other.data,
            )
        return held, None
    return (other if new.size > old.size else held), None


def meet_staple(
    anchors: Mapping[str, Anchor],
    held: Mapping[bytes, Held],
    *,
    address: str,
    proof: bytes,
    revocations: bytes,
    checkpoint: bytes,
    now: int,
    freshness: int = TRUST_FRESHNESS,
    cache: VerifiedCache | None = None,
) -> Outcome:
    """Decide on a staple from the endpoint at ``address`` (see the module doc).

    ``anchors`` by agency name, ``held`` by anchor fingerprint; ``now`` in
    POSIX seconds; ``cache``: the statements verified before."""
    cache = VerifiedCache(4) if cache is None else cache
    presented = EndorsementProof.decode(proof)
    agency = claimed_agency(presented.delegation)
    anchor = anchors.get(agency)
    if anchor is None:
        return Outcome(agency, None, None)
    delegation = cache.delegation(anchor, presented.delegation)
    before = held.get(anchor.fingerprint, Held())
    new_list, new_checkpoint, alarm, rolled_back = _offer(
        anchor,
        delegation_data=presented.delegation,
        delegation=delegation,
        before=before,
        revocations=revocations,
        checkpoint=checkpoint,
        now=now,
        cache=cache,
    )
    verdict = check_endorsement(
        anchor,
        presented,
        address=address,
        revocations=None if new_list is None else new_list.value,
        now=now,
        freshness=freshness,
        cache=cache,
    )
    if verdict.checkpoint is not None and alarm is None:
        new_checkpoint, fork = meet_checkpoint_unproven(new_checkpoint, verdict.checkpoint)
        alarm = fork
    changed = new_list is not before.revocations or new_checkpoint is not before.checkpoint
    after = Held(new_list, new_checkpoint) if changed else None
    return Outcome(agency, anchor, verdict, after, alarm, rolled_back)


def _offer(
    anchor: Anchor,
    *,
    delegation_data: bytes,
    delegation: Delegation,
    before: Held,
    revocations: bytes,
    checkpoint: bytes,
    now: int,
    cache: VerifiedCache,
) -> tuple[
    Signed[RevocationList] | None, SignedCheckpoint | None, ConflictingStatementsError | None, bool
]:
    """A list and a checkpoint (either empty: none) signed by ``delegation``'s
    key, offered to what is held of ``anchor``'s agency, whether stapled or
    gossiped (§§7.1-7.2): the list and checkpoint to hold, an alarm, and
    whether the list was older than the one held (ignored). Raises, with
    nothing decided, when either does not verify."""
    alarm: ConflictingStatementsError | None = None
    rolled_back = False
    new_list = before.revocations
    if revocations:
        offered = open_revocations(anchor, delegation_data, revocations, now=now)
        try:
            new_list = accept_revocations(before.revocations, offered)
        except RolledBackError:
            rolled_back = True
        except ConflictingStatementsError as exc:
            alarm = exc
    new_checkpoint = before.checkpoint
    if checkpoint:
        offered_cp = cache.checkpoint(anchor, delegation.key, checkpoint)
        new_checkpoint, fork = meet_checkpoint_unproven(before.checkpoint, offered_cp)
        alarm = alarm or fork
    return new_list, new_checkpoint, alarm, rolled_back


def recheck(
    anchor: Anchor,
    proof: bytes,
    *,
    address: str,
    revocations: RevocationList | None,
    now: int,
    freshness: int = TRUST_FRESHNESS,
    cache: VerifiedCache | None = None,
) -> Outcome | None:
    """A contact's stored endorsement judged again against a new list (or at a
    later ``now``); None if it is not of ``anchor``'s agency or no longer
    verifies (the verdict recorded when it was presented stands)."""
    try:
        presented = EndorsementProof.decode(proof)
        if claimed_agency(presented.delegation) != anchor.agency:
            return None
        verdict = check_endorsement(
            anchor,
            presented,
            address=address,
            revocations=revocations,
            now=now,
            freshness=freshness,
            cache=cache,
        )
    except TrustError:
        return None
    return Outcome(anchor.agency, anchor, verdict)


@dataclass(slots=True)
class Pace:
    """A session's budget of trust records of one kind, by rate rather than
    count (trust.md §§7.1-7.2): ``burst`` at once, then one more every
    ``interval`` seconds, never more than ``burst`` saved. ``now`` is any
    monotonic clock in seconds. A receiver ignores what comes past it; a
    sender keeps what it may not send yet for :meth:`next_at`."""

    burst: int
    interval: float
    _tokens: float = 0.0
    _stamp: float | None = None

    def _fill(self, now: float) -> None:
        if self._stamp is None:
            self._tokens, self._stamp = float(self.burst), now
        elif now > self._stamp:
            saved = self._tokens + (now - self._stamp) / self.interval
            self._tokens = min(float(self.burst), saved)
            self._stamp = now

    def take(self, now: float) -> bool:
        """Spend one record of the budget at ``now``; False: none is left."""
        self._fill(now)
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def next_at(self, now: float) -> float:
        """When the budget next holds a record (``now`` if it holds one)."""
        self._fill(now)
        return now if self._tokens >= 1 else now + (1 - self._tokens) * self.interval


@dataclass(frozen=True, slots=True)
class Gossip:
    """What an endpoint holds of one agency, to pass on (§7.2): the list and
    the checkpoint (either empty: none, not both) with the delegation of the
    key that signed them."""

    fingerprint: bytes
    delegation: bytes
    revocations: bytes
    checkpoint: bytes


@dataclass(frozen=True, slots=True)
class GossipOutcome:
    """The decision on one gossip record: what to hold of ``anchor``'s agency
    from now on (None: unchanged), whether that is a newer list (its
    contacts are then judged again), an alarm to record, and whether the
    list was older than the one held (ignored)."""

    anchor: Anchor
    held: Held | None
    new_list: bool
    alarm: ConflictingStatementsError | None = None
    rolled_back: bool = False
    new_checkpoint: bool = False


def meet_gossip(
    anchors: Mapping[str, Anchor],
    held: Mapping[bytes, Held],
    *,
    delegation: bytes,
    revocations: bytes,
    checkpoint: bytes,
    now: int,
    cache: VerifiedCache | None = None,
) -> GossipOutcome | None:
    """Decide on a contact's ``TrustGossip`` (trust.md §7.2): None when we hold
    no anchor of the agency its delegation names (ignored). Otherwise the
    delegation is checked against that anchor (signed by its root, of its
    agency, valid at ``now``) and the list and checkpoint are offered to what
    is held as a staple's are (:func:`meet_staple` steps 2-3). Forged or
    malformed statements, or a delegation not valid now, raise
    (:class:`~onionpost.errors.TrustError`) and nothing is decided."""
    cache = VerifiedCache(2) if cache is None else cache
    if not (revocations or checkpoint):
        raise MalformedStatementError("gossip with neither a list nor a checkpoint", what="gossip")
    anchor = anchors.get(claimed_agency(delegation))
    if anchor is None:
        return None
    opened = cache.delegation(anchor, delegation)
    if (
        opened.agency != anchor.agency
        or now < opened.not_before - TRUST_CLOCK_SKEW
        or now > opened.not_after + TRUST_CLOCK_SKEW
    ):
        raise StatementRefusedError(
            "gossip under a delegation not valid now", what="delegation", reason="delegation"
        )
    before = held.get(anchor.fingerprint, Held())
    new_list, new_checkpoint, alarm, rolled_back = _offer(
        anchor,
        delegation_data=delegation,
        delegation=opened,
        before=before,
        revocations=revocations,
        checkpoint=checkpoint,
        now=now,
        cache=cache,
    )
    changed = new_list is not before.revocations or new_checkpoint is not before.checkpoint
    return GossipOutcome(
        anchor,
        Held(new_list, new_checkpoint) if changed else None,
        new_list is not before.revocations,
        alarm,
        rolled_back,
        new_checkpoint is not before.checkpoint,
    )


class TrustRecord(enum.Enum):
    """The two records by which a contact tells us what it holds of an agency."""

    STAPLE = "staple"  # TrustStaple, §7.1: its own agency's, with its endorsement
    GOSSIP = "gossip"  # TrustGossip, §7.2: any agency's, with a delegation


class PassOn(enum.Enum):
    """What a session does after a trust record was met and recorded."""

    NOTHING = "nothing"
    #: Every open session passes on what we hold of agencies other than ours
    #: (its ``TrustGossip`` records, §7.2).
    REGOSSIP = "regossip"
    #: Every open session sends our ``TrustStaple`` again (§7.1) and passes on
    #: gossip too: what we hold of our own agency travels in the staple.
    RESTAPLE = "restaple"


def pass_on(
    record: TrustRecord, *, new_list: bool, new_checkpoint: bool, own_agency: bool
) -> PassOn:
    """Whether what a contact's ``record`` made us hold newer goes on to the
    contacts we have sessions with (trust.md §7.2), and how: ``new_list`` and
    ``new_checkpoint``, whether we now hold a newer revocation list or log
    checkpoint of the record's agency; ``own_agency``, whether that agency
    is the one that endorses us.

    ========  ====================  ===========  ==========
    record    newer                 own agency   pass on
    ========  ====================  ===========  ==========
    any       nothing               any          NOTHING
    any       list or checkpoint    yes          RESTAPLE
    staple    list (a checkpoint    no           RESTAPLE
              or not)
    staple    checkpoint only       no           REGOSSIP
    gossip    list or checkpoint    no           REGOSSIP
    ========  ====================  ===========  ==========

    A staple's newer list of another agency restaples: a restaple regossips
    too, so that list reaches our contacts as gossip, and our own staple,
    unchanged, goes again with it."""
    if not (new_list or new_checkpoint):
        return PassOn.NOTHING
    if own_agency or (record is TrustRecord.STAPLE and new_list):
        return PassOn.RESTAPLE
    return PassOn.REGOSSIP


def _signed_by(data: bytes, key_ids: frozenset[tuple[str, bytes]]) -> bool:
    """Whether a stored note carries a signature line of one of ``key_ids``
    (name and key ID): a choice of delegation, not a verification (the
    receiver verifies)."""
    try:
        parsed = note.Note.parse(data)
    except VerificationError:
        return False
    return any((s.name, s.key_id) in key_ids for s in parsed.signatures)


def to_gossip(
    anchors: Sequence[Anchor],
    held: Mapping[bytes, tuple[bytes | None, bytes | None]],
    *,
    own: bytes | None,
    delegations: Iterable[bytes],
) -> list[Gossip]:
    """What to pass on of each anchor other than our own agency's (``own``, a
    fingerprint) of which we hold a list or a checkpoint (trust.md §7.2),
    each with a delegation among ``delegations`` (those we have met: in our
    contacts' endorsements, in gossip, in bundles imported) whose key signed
    it. A list or checkpoint no delegation we know signed is left out (a
    receiver could not check it). Of two delegations that would carry as
    much, the one that ends later goes (a key's delegation renewed: the one
    a list was held with may have ended, and the receiver refuses gossip
    under a delegation not valid now)."""
    by_agency: dict[str, list[tuple[bytes, frozenset[tuple[str, bytes]], int]]] = {}
    for data in delegations:
        try:
            found = claimed_delegation(data)
        except TrustError:
            continue
        ids = frozenset((v.name, v.key_id) for v in found.key.verifiers())
        by_agency.setdefault(found.agency, []).append((data, ids, found.not_after))
    found_gossip: list[Gossip] = []
    for anchor in anchors:
        if anchor.fingerprint == own:
            continue
        revocations, checkpoint = held.get(anchor.fingerprint, (None, None))
        best: tuple[bool, bool, int] | None = None
        chosen: Gossip | None = None
        for data, ids, not_after in by_agency.get(anchor.agency, []):
            r = revocations if revocations and _signed_by(revocations, ids) else b""
            c = checkpoint if checkpoint and _signed_by(checkpoint, ids) else b""
            # The delegation that signed both, else the list, else the
            # checkpoint; of those, the one that ends last.
            rank = (bool(r), bool(c), not_after)
            if (r or c) and (best is None or rank > best):
                best, chosen = rank, Gossip(anchor.fingerprint, data, r, c)
        if chosen is not None:
            found_gossip.append(chosen)
    return found_gossip


def session_refusal(status: str | None, describe: str, *, required: bool) -> str | None:
    """Why sessions with a contact are refused and its outbox held, given the
    last verdict on its endorsement (``status`` None: it presented none), or
    None when they are not: a revoked contact always; with
    ``require_endorsement``, every contact not endorsed now (trust.md §7.4)."""
    if status == Status.REFUSED.value and (
        describe == REVOKED or describe.startswith(f"{REVOKED} ")
    ):
        return describe
    if required and status != Status.ENDORSED.value:
        why = "none presented" if status is None else describe
        return f"{REQUIRED_PREFIX}{why}"
    return None


# -- rotation (trust.md §6) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Moved:
    """A rotation accepted: who vouched for it, the verdict on the contact at
    its new address (endorsed or unverified, never refused), whether the
    address it leaves is revoked in the list held, and the checkpoint to hold
    (None: unchanged) with an alarm to record."""

    rotation: Rotation
    verdict: Verdict
    from_revoked: bool
    checkpoint: SignedCheckpoint | None = None
    alarm: ConflictingStatementsError | None = None

    def describe(self) -> str:
        """What ``contact show`` says of the move."""
        r = self.rotation
        by = (
            f"agency {r.agency} and the old key"
            if r.proof is RotationProof.AGENCY_AND_OLD_KEY
            else f"agency {r.agency}"
        )
        revoked = " (a revoked address)" if self.from_revoked else ""
        return f"moved from {r.old_address}{revoked} by {by}"


def _refuse(message: str, reason: str) -> StatementRefusedError:
    return StatementRefusedError(message, what="rotation", reason=reason)


def meet_rotation(
    anchors: Mapping[str, Anchor],
    held: Mapping[bytes, Held],
    *,
    address: str,
    current: bytes | None,
    proof: bytes,
    taken: frozenset[str] = frozenset(),
    now: int,
    freshness: int = TRUST_FRESHNESS,
    cache: VerifiedCache | None = None,
) -> Moved:
    """Decide on a ``TrustRotation`` from the contact at ``address`` whose
    stored endorsement proof is ``current`` (None: it presented none), carrying
    the endorsement ``proof`` of its new address; ``taken``: the addresses of
    our other peers (a rotation may not move a contact onto another). Checks,
    in order (trust.md §6), the first failure raising
    (:class:`~onionpost.errors.TrustError`; nothing changes):

    1. the contact holds an endorsement (``current``), of an agency whose
       anchor we hold, for ``address``; else refused *no-endorsement*,
       *no-anchor* or *wrong-address*;
    2. the new proof names the same agency (else *wrong-agency*), and checks
       (trust.md §4) for the address it endorses, which is neither
       ``address`` nor one in ``taken`` (else *wrong-address*), against the
       list held; a refused verdict refuses the rotation (*refused*);
    3. :func:`~onionpost.proto.trust.check_rotation`: ``replaces`` is
       ``address`` and the agencies agree (else *wrong-address*); an old-key
       signature line, where present, verifies (else forged, raised).

    The current endorsement may be expired or revoked: leaving a revoked
    address is the compromise case, allowed and shown as such."""
    cache = VerifiedCache(6) if cache is None else cache
    if current is None:
        raise _refuse("the contact presented no endorsement to rotate from", "no-endorsement")
    old_proof = EndorsementProof.decode(current)
    agency = claimed_agency(old_proof.delegation)
    anchor = anchors.get(agency)
    if anchor is None:
        raise _refuse(f"no anchor for agency {agency}", "no-anchor")
    old = cache.endorsement(cache.delegation(anchor, old_proof.delegation), old_proof.endorsement)
    if old.address != address or old.agency != agency:
        raise _refuse("the contact's endorsement is not of its address", "wrong-address")
    presented = EndorsementProof.decode(proof)
    if claimed_agency(presented.delegation) != agency:
        raise _refuse("the rotation is endorsed by another agency", Reason.WRONG_AGENCY.value)
    new_address = stored_endorsement(presented.endorsement).address  # checked just below
    if new_address == address or new_address in taken:
        raise _refuse("the rotation names an address already known", Reason.WRONG_ADDRESS.value)
    before = held.get(anchor.fingerprint, Held())
    revocations = None if before.revocations is None else before.revocations.value
    verdict = check_endorsement(
        anchor,
        presented,
        address=new_address,
        revocations=revocations,
        now=now,
        freshness=freshness,
        cache=cache,
    )
    rotation = check_rotation(old, verdict, presented.endorsement)
    from_revoked = revocations is not None and revocations.find(address) is not None
    checkpoint, alarm = before.checkpoint, None
    if verdict.checkpoint is not None:
        checkpoint, alarm = meet_checkpoint_unproven(before.checkpoint, verdict.checkpoint)
    changed = None if checkpoint is before.checkpoint else checkpoint
    return Moved(rotation, verdict, from_revoked, changed, alarm)
