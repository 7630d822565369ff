"""Agency trust over a session (``protocol-spec/trust.md`` §7.1).

At the start of every session each side sends a ``TrustStaple`` when it holds
an endorsement of its own (``onionpost trust endorsement install``): the
proof, and the latest revocation list and checkpoint of its agency it holds.
The receiver's decision is :func:`onionpost.proto.trust_session.meet_staple`;
this module only reads what it needs from the store, and writes what the
decision says: the list and checkpoint to hold, an alarm, and the verdict on
the contact, which ``contact list`` shows.

Everything here is synchronous store work, run in the engine's worker. A
contact is authenticated, not trusted: a session takes staples by rate
(``TRUST_STAPLE_BURST``, then one each ``TRUST_STAPLE_INTERVAL``; each costs
at most a few hybrid signature checks and ``MAX_PROOF_HASHES`` hashes); a
forged or malformed one records the contact as refused and the session goes
on. Gossip of other agencies (§7.2) is ``_gossip.py``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Final

from onionpost._logs import contact_ref
from onionpost.api import REASON_MOVED
from onionpost.errors import (
    ConfigError,
    ConflictingStatementsError,
    ForgedStatementError,
    RolledBackError,
    StatementRefusedError,
    TrustError,
)
from onionpost.proto import trust
from onionpost.proto.address import OnionAddress
from onionpost.proto.messages import TrustRotation, TrustStaple
from onionpost.proto.trust_session import (
    REVOKED,
    Held,
    RevocationBundle,
    describe,
    listed_revoked,
    meet_checkpoint_unproven,
    meet_rotation,
    meet_staple,
    recheck,
    session_refusal,
)
from onionpost.store import Contact, Store

__all__ = [
    "Imported",
    "Judged",
    "announce_rotation",
    "import_revocations",
    "install_own",
    "judge_in_detail",
    "moved_refusal",
    "moved_told",
    "own_in_detail",
    "own_rotation",
    "receive_rotation",
    "receive_staple",
    "refuse_moved",
    "recheck_contacts",
    "refusals",
    "rejudge",
    "rotation_due",
    "rotation_progress",
    "staple",
]

log = logging.getLogger("onionpost.daemon")


def _held(store: Store) -> dict[bytes, Held]:
    held: dict[bytes, Held] = {}
    for fingerprint, (revocations, checkpoint) in store.trust.held().items():
        held[fingerprint] = Held(
            None if revocations is None else trust.stored_revocations(revocations),
            None if checkpoint is None else trust.stored_checkpoint(checkpoint),
        )
    return held


def staple(store: Store) -> TrustStaple | None:
    """Our endorsement with what we hold of our agency; None without one."""
    own = store.trust.own()
    if own is None:
        return None
    fingerprint, proof = own
    revocations, checkpoint = store.trust.held().get(fingerprint, (None, None))
    return TrustStaple(proof, revocations or b"", checkpoint or b"")


def rotation_due(store: Store, contact: Contact) -> TrustRotation | None:
    """Our move to a new address (trust.md §6), when a contact (never a member
    a group introduced) has not been told it yet; None otherwise."""
    own = store.trust.own_rotation()
    if own is None or contact.introduced or contact.id in store.trust.rotation_told():
        return None
    return TrustRotation(*own)


def rotation_progress(store: Store) -> tuple[str, int, int, int] | None:
    """Our move announced: the new address, the contacts told, the contacts
    to tell (members a group introduced are not) and, apart from those, the
    revoked contacts, never told since nothing is sent to them; None if none."""
    own = store.trust.own_rotation()
    if own is None:
        return None
    verdicts = store.trust.endorsements()
    revoked = {
        contact_id
        for contact_id, stored in verdicts.items()
        if session_refusal(stored.status, stored.describe, required=False) is not None
    }
    contacts = {c.id for c in store.contacts.all()}
    told = store.trust.rotation_told()
    to_tell = {c for c in contacts if c not in revoked or c in told}
    address = trust.stored_endorsement(trust.EndorsementProof.decode(own[0]).endorsement).address
    return address, len(to_tell & told), len(to_tell), len(contacts - to_tell)


def moved_refusal(store: Store, contact_id: int, name: str) -> str | None:
    """Why a send to ``contact_id`` is refused on a home that has moved
    (trust.md §6): the contact was told of the move, so it accepts only the
    new address and nothing sent from here can reach it. None otherwise (no
    move, or the contact not told yet: it still takes the old address)."""
    own = store.trust.own_rotation()
    if own is None or contact_id not in store.trust.rotation_told():
        return None
    address = trust.stored_endorsement(trust.EndorsementProof.decode(own[0]).endorsement).address
    return (
        f"this home has moved to {address}: {name!r} now accepts only the new address; "
        "send from the new home"
    )


def moved_told(store: Store, contact_id: int, now_ms: int) -> list[bytes]:
    """The contact was told of our move in an envelope (trust.md §6):
    recorded, and what did not fit in it refused (:func:`refuse_moved`)."""
    store.trust.mark_rotation_told(contact_id, now_ms)
    return refuse_moved(store, contact_id, now_ms)


def refuse_moved(store: Store, contact_id: int, now_ms: int) -> list[bytes]:
    """What still waits here for a contact told of our move (queued, or sent
    and never acknowledged) refused with :data:`~onionpost.api.REASON_MOVED`:
    it takes nothing from this address now, so none of it could arrive (send
    it again from the new home). Nothing follows the move on the session or
    in the envelope that carried it. The ids refused."""
    ended: list[bytes] = []
    while waiting := store.outbox.pending(contact_id, _MOVED_BATCH):
        done = store.outbox.mark_refused(
            [o.id for o in waiting], now_ms, REASON_MOVED, contact_id=contact_id
        )
        ended.extend(done)
        if not done:
            break  # nothing moved: bounded either way
    if ended:
        log.warning(
            "event=moved_outbox_refused contact=%s messages=%d", contact_ref(contact_id), len(ended)
        )
    return ended


_MOVED_BATCH: Final = 500


def own_rotation(store: Store, contact: Contact) -> TrustRotation | None:
    """Our move to a new address, for every session with a contact."""
    own = store.trust.own_rotation()
    return None if own is None or contact.introduced else TrustRotation(*own)


def receive_staple(
    store: Store,
    contact: Contact,
    record: TrustStaple,
    now_ms: int,
    *,
    required: bool,
    cache: trust.VerifiedCache | None = None,
) -> Stapled:
    """Decide on ``contact``'s staple, record the outcome (see the module doc):
    the refusals now in force (:func:`refusals`) and what we now hold newer
    (to pass on to the contacts we have sessions with, §7.2)."""
    fingerprint, new_list, new_checkpoint = _receive(store, contact, record, now_ms, cache)
    own = store.trust.own()
    own_agency = own is not None and own[0] == fingerprint
    return Stapled(refusals(store, required=required), new_list, new_checkpoint, own_agency)


@dataclass(frozen=True, slots=True)
class Stapled:
    """What a contact's staple did: the refusals now in force, whether we now
    hold a newer list or checkpoint of its agency, and whether that agency
    is our own (what is newer is stapled on) or another (passed on as
    gossip, trust.md §7.2)."""

    refusals: dict[int, str]
    new_list: bool = False
    new_checkpoint: bool = False
    own_agency: bool = False


def _receive(
    store: Store,
    contact: Contact,
    record: TrustStaple,
    now_ms: int,
    cache: trust.VerifiedCache | None,
) -> tuple[bytes | None, bool, bool]:
    """The staple's outcome recorded: the fingerprint of its agency's anchor
    (None: none installed, or refused), and whether a newer list and a newer
    checkpoint are held."""
    anchors = {s.anchor.agency: s.anchor for s in store.trust.all()}
    try:
        outcome = meet_staple(
            anchors,
            _held(store),
            address=str(contact.address),
            proof=record.proof,
            revocations=record.revocations,
            checkpoint=record.checkpoint,
            now=now_ms // 1000,
            cache=cache,
        )
    except TrustError as exc:
        status = "refused-forged" if isinstance(exc, ForgedStatementError) else "refused-malformed"
        log.info(
            "event=endorsement_refused contact=%s what=%s status=%s",
            contact_ref(contact.id),
            exc.what,
            status,
        )
        why = "forged" if status == "refused-forged" else "malformed"
        store.trust.set_endorsement(contact.id, None, status, f"refused: {why} {exc.what}", now_ms)
        return None, False, False
    anchor = outcome.anchor
    new_list = new_checkpoint = False
    if anchor is not None and outcome.held is not None:
        revocations, checkpoint = outcome.held.revocations, outcome.held.checkpoint
        before = store.trust.held().get(anchor.fingerprint, (None, None))
        new_list = revocations is not None and revocations.data != before[0]
        new_checkpoint = checkpoint is not None and checkpoint.data != before[1]
        store.trust.hold(
            anchor.fingerprint,
            None if revocations is None else revocations.data,
            None if checkpoint is None else checkpoint.data,
            delegation=trust.EndorsementProof.decode(record.proof).delegation,
        )
    if anchor is not None and outcome.alarm is not None:
        alarm = outcome.alarm
        store.trust.raise_alarm(alarm.what, anchor.fingerprint, alarm.first, alarm.second, now_ms)
        log.warning(
            "event=trust_alarm kind=%s agency=%s contact=%s",
            alarm.what,
            outcome.agency,
            contact_ref(contact.id),
        )
    if outcome.rolled_back:
        log.info(
            "event=revocations_rolled_back agency=%s contact=%s",
            outcome.agency,
            contact_ref(contact.id),
        )
    describe = outcome.describe()
    log.info(
        "event=endorsement_checked contact=%s status=%s", contact_ref(contact.id), outcome.status
    )
    store.trust.set_endorsement(contact.id, record.proof, outcome.status, describe, now_ms)
    if anchor is not None and new_list:
        # A newer list from this contact: every contact of that agency is
        # judged again (one of them may be revoked in it, trust.md §7.2).
        recheck_contacts(store, anchor, now_ms, cache)
    return None if anchor is None else anchor.fingerprint, new_list, new_checkpoint


def receive_rotation(
    store: Store,
    contact: Contact,
    record: TrustRotation,
    now_ms: int,
    cache: trust.VerifiedCache | None = None,
) -> Contact | None:
    """Decide on ``contact``'s move to a new address (trust.md §6,
    :func:`~onionpost.proto.trust_session.meet_rotation`) and, accepted, carry
    it out in one transaction: the contact's row at the new address with its
    new tor key (its history and outbox with it), its endorsement there, the
    move recorded; the contact as moved. Refused (forged, another agency,
    ``replaces`` not its address, no endorsement), nothing changes, the
    refusal is logged and None returned."""
    address = str(contact.address)
    anchors = {s.anchor.agency: s.anchor for s in store.trust.all()}
    stored = store.trust.endorsements().get(contact.id)
    taken = frozenset(str(p.address) for p in store.contacts.peers() if p.id != contact.id)
    try:
        moved = meet_rotation(
            anchors,
            _held(store),
            address=address,
            current=None if stored is None else stored.proof,
            proof=record.proof,
            taken=taken,
            now=now_ms // 1000,
            cache=cache,
        )
    except TrustError as exc:
        why = getattr(exc, "reason", None) or (
            "forged" if isinstance(exc, ForgedStatementError) else "malformed"
        )
        log.warning(
            "event=rotation_refused contact=%s what=%s why=%s",
            contact_ref(contact.id),
            exc.what,
            why,
        )
        return None
    rotation, verdict = moved.rotation, moved.verdict
    anchor = anchors[rotation.agency]
    new = OnionAddress.parse(rotation.new_address)
    with store.transaction():
        after = store.contacts.move(contact.id, new, record.client_auth_public, now_ms)
        store.trust.set_endorsement(
            contact.id,
            record.proof,
            verdict.status.value,
            describe(rotation.agency, verdict),
            now_ms,
        )
        store.trust.record_rotation(
            contact.id,
            contact.address.public_key,
            moved.describe(),
            now_ms,
            old_registered=contact.mailbox_registered,
        )
        if moved.checkpoint is not None:
            revocations = store.trust.held().get(anchor.fingerprint, (None, None))[0]
            store.trust.hold(
                anchor.fingerprint,
                revocations,
                moved.checkpoint.data,
                delegation=trust.EndorsementProof.decode(record.proof).delegation,
            )
        if moved.alarm is not None:
            alarm = moved.alarm
            store.trust.raise_alarm(
                alarm.what, anchor.fingerprint, alarm.first, alarm.second, now_ms
            )
    if moved.alarm is not None:
        log.warning("event=trust_alarm kind=%s agency=%s", moved.alarm.what, rotation.agency)
    log.warning(
        "event=contact_rotated contact=%s proof=%s from_revoked=%s status=%s",
        contact_ref(contact.id),
        rotation.proof.value,
        str(moved.from_revoked).lower(),
        verdict.status.value,
    )
    return after


def announce_rotation(
    store: Store, address: str, *, new: str, client_auth_public: bytes, proof: bytes, now_ms: int
) -> tuple[trust.Rotation, trust.Verdict]:
    """Keep our move from ``address`` to ``new`` (trust.md §6) to announce to
    every contact, once it is one they will accept: the proof endorses
    ``new`` under the anchor of our own agency (not refused), it replaces
    ``address``, and an old-key line on it, where present, is our key's.
    :class:`ConfigError` (nothing stored) otherwise. Nobody has been told it
    when this returns."""
    own = store.trust.own()
    if own is None:
        raise ConfigError("install this endpoint's own endorsement first: contacts move from it")
    fingerprint, current = own
    anchor = next(
        (s.anchor for s in store.trust.all() if s.anchor.fingerprint == fingerprint), None
    )
    if anchor is None:
        raise ConfigError("the anchor of this endpoint's agency is no longer installed")
    held = _held(store).get(anchor.fingerprint)
    revocations = None if held is None or held.revocations is None else held.revocations.value
    try:
        presented = trust.EndorsementProof.decode(proof)
        if trust.claimed_agency(presented.delegation) != anchor.agency:
            raise ConfigError(f"that endorsement is not by {anchor.agency}, this endpoint's agency")
        verdict = trust.check_endorsement(
            anchor, presented, address=new, revocations=revocations, now=now_ms // 1000
        )
        if verdict.status is trust.Status.REFUSED:
            assert verdict.reason is not None
            raise ConfigError(
                f"that endorsement is refused for the new address: {verdict.reason.value}"
            )
        old = trust.stored_endorsement(trust.EndorsementProof.decode(current).endorsement)
        rotation = trust.check_rotation(old, verdict, presented.endorsement)
    except StatementRefusedError as exc:
        raise ConfigError(f"that endorsement cannot move this endpoint: {exc.reason}") from exc
    except TrustError as exc:
        raise ConfigError(f"that endorsement does not verify under the anchor: {exc}") from exc
    if rotation.old_address != address:
        raise ConfigError("that endorsement replaces another address")
    store.trust.set_own_rotation(proof, client_auth_public, now_ms)
    log.warning("event=rotation_announced proof=%s", rotation.proof.value)
    return rotation, verdict


def install_own(store: Store, address: str, proof: bytes, now_ms: int) -> trust.Verdict:
    """Check our own endorsement proof against the anchor of its agency, for
    our own address and key, and keep it; :class:`ConfigError` (nothing
    stored) when it is not one we may present."""
    try:
        agency = trust.claimed_agency(trust.EndorsementProof.decode(proof).delegation)
    except TrustError as exc:
        raise ConfigError(f"not an endorsement proof: {exc}") from exc
    stored = store.trust.find(agency)
    if stored is None or stored.anchor.agency != agency:
        raise ConfigError(
            f"no anchor of agency {agency!r} is installed: install it first (trust add)"
        )
    anchor = stored.anchor
    held = _held(store).get(anchor.fingerprint)
    revocations = None if held is None or held.revocations is None else held.revocations.value
    try:
        verdict = trust.check_endorsement(
            anchor, proof, address=address, revocations=revocations, now=now_ms // 1000
        )
    except TrustError as exc:
        raise ConfigError(f"that endorsement does not verify under the anchor of {agency}") from exc
    if verdict.status is trust.Status.REFUSED:
        assert verdict.reason is not None
        said = _INSTALL_REFUSALS.get(verdict.reason)
        raise ConfigError(
            f"that endorsement is refused: {verdict.reason.value}"
            + ("" if said is None else f" ({said})")
        )
    store.trust.install_own(anchor.fingerprint, proof, now_ms)
    if verdict.checkpoint is not None and (held is None or held.checkpoint is None):
        store.trust.hold(
            anchor.fingerprint,
            None if held is None or held.revocations is None else held.revocations.data,
            verdict.checkpoint.data,
            delegation=trust.EndorsementProof.decode(proof).delegation,
        )
    log.info("event=endorsement_installed agency=%s status=%s", agency, verdict.status.value)
    return verdict


def recheck_contacts(
    store: Store, anchor: trust.Anchor, now_ms: int, cache: trust.VerifiedCache | None = None
) -> int:
    """Judge again every stored endorsement of ``anchor``'s agency against the
    list now held (a newer one came); the number of verdicts that changed."""
    held = _held(store).get(anchor.fingerprint)
    revocations = None if held is None or held.revocations is None else held.revocations.value
    contacts = {c.id: c for c in store.contacts.peers()}
    changed = 0
    for contact_id, stored in store.trust.endorsements().items():
        contact = contacts.get(contact_id)
        if contact is None or stored.proof is None:
            continue
        outcome = recheck(
            anchor,
            stored.proof,
            address=str(contact.address),
            revocations=revocations,
            now=now_ms // 1000,
            cache=cache,
        )
        if outcome is None or (outcome.status, outcome.describe()) == (
            stored.status,
            stored.describe,
        ):
            continue
        changed += 1
        store.trust.set_endorsement(
            contact_id, stored.proof, outcome.status, outcome.describe(), now_ms
        )
        log.warning(
            "event=endorsement_changed contact=%s status=%s",
            contact_ref(contact_id),
            outcome.status,
        )
    return changed


@dataclass(frozen=True, slots=True)
class Judged:
    """An endorsement proof judged again in detail (``contact show``,
    ``whoami``): the agency it names, that agency's anchor installed (None:
    none), the verdict at ``now`` (None: no anchor, or the proof no longer
    verifies under it) and the agency's list held (None: none)."""

    agency: str
    anchor: trust.Anchor | None = None
    verdict: trust.Verdict | None = None
    revocations: trust.RevocationList | None = None

    @property
    def status(self) -> str:
        """As a verdict is stored (:func:`receive_staple`)."""
        if self.anchor is None:
            return "no-anchor"
        return "refused-forged" if self.verdict is None else self.verdict.status.value

    def describe(self) -> str:
        if self.anchor is not None and self.verdict is None:
            return f"refused: it no longer verifies under the anchor of {self.agency}"
        return describe(self.agency, self.verdict)


def judge_in_detail(
    store: Store,
    address: str,
    proof: bytes,
    now_ms: int,
    cache: trust.VerifiedCache | None = None,
) -> Judged | None:
    """``proof`` judged for ``address`` as the engine judges a stored one at
    each housekeeping round (:func:`recheck_contacts`: the anchor of the
    agency it names, the list held of it, ``now_ms``), with what that
    verdict rests on; None when the proof does not even name an agency."""
    try:
        agency = trust.claimed_agency(trust.EndorsementProof.decode(proof).delegation)
    except TrustError:
        return None
    stored = store.trust.find(agency)
    if stored is None or stored.anchor.agency != agency:
        return Judged(agency)
    anchor = stored.anchor
    held = _held(store).get(anchor.fingerprint)
    listed = None if held is None or held.revocations is None else held.revocations.value
    outcome = recheck(
        anchor, proof, address=address, revocations=listed, now=now_ms // 1000, cache=cache
    )
    return Judged(agency, anchor, None if outcome is None else outcome.verdict, listed)


def own_in_detail(
    store: Store, address: str, now_ms: int, cache: trust.VerifiedCache | None = None
) -> Judged | None:
    """Our own endorsement judged now (trust.md §7.1: the one we staple);
    None without one installed."""
    own = store.trust.own()
    return None if own is None else judge_in_detail(store, address, own[1], now_ms, cache)


def rejudge(
    store: Store, now_ms: int, *, required: bool, cache: trust.VerifiedCache | None = None
) -> dict[int, str]:
    """Judge every contact's stored endorsement again at ``now_ms`` (the engine's
    housekeeping): an endorsement past its end, or a list held past the
    freshness bound (trust.md §5), changes the verdict without any session.
    The refusals then in force."""
    for stored in store.trust.all():
        recheck_contacts(store, stored.anchor, now_ms, cache)
    return refusals(store, required=required)


def refusals(store: Store, *, required: bool) -> dict[int, str]:
    """Why sessions with each refused contact (or member a group introduced:
    the same policy, groups.md §9) are refused, by contact id;
    ``required``: the configured require_endorsement, which a contact's own
    setting overrides."""
    verdicts = store.trust.endorsements()
    overrides = store.trust.required()
    lists = [h.revocations.value for h in _held(store).values() if h.revocations is not None]
    found: dict[int, str] = {}
    for contact in store.contacts.peers():
        stored = verdicts.get(contact.id)
        why = session_refusal(
            None if stored is None else stored.status,
            "" if stored is None else stored.describe,
            required=overrides.get(contact.id, required),
        )
        if why is None or not why.startswith(REVOKED):
            # A list we hold that names its address refuses it whatever it
            # presented: a seized endpoint that stops presenting its
            # endorsement is cut off all the same.
            why = listed_revoked(str(contact.address), lists) or why
        if why is not None:
            found[contact.id] = why
    return found


@dataclass(frozen=True, slots=True)
class Imported:
    agency: str
    serial: int
    issued_at: int
    revoked: int
    changed: int  # contacts whose verdict changed
    stapled: bool = False  # the list of our own agency: we staple it to every contact


_WRITERS: Final = "'registrar export-list' or 'trust revoke --out'"


def decode_bundle(data: bytes) -> RevocationBundle:
    """The bundle of a list file, or one :class:`ConfigError` sentence saying
    what the file is instead (trust.md §7.3): a bare signed list, the
    registrar's ``revocations.note``, lacks the delegation and checkpoint."""
    try:
        bundle = RevocationBundle.decode(data)
        trust.claimed_agency(bundle.delegation)
    except TrustError as exc:
        try:
            trust.stored_revocations(data)
        except TrustError:
            raise ConfigError(f"not a revocation list file: import what {_WRITERS} writes") from exc
        raise ConfigError(
            "a bare signed list (a revocations.note), not a revocation list file: "
            f"import what {_WRITERS} writes, with its delegation and checkpoint"
        ) from exc
    return bundle


def import_revocations(
    store: Store, data: bytes, now_ms: int, consistency: tuple[bytes, ...] | None = None
) -> Imported:
    """Hold a revocation list the agency handed out (``trust revoke``, or its
    registrar, trust.md §8), checked against its anchor; judge that agency's
    contacts again. :class:`ConfigError` (nothing held) for a list that is not
    newer than the one held. ``consistency``: the registrar's proof from the
    checkpoint held to the bundle's (trust.md §3); one that does not verify is
    a fork alarm, and the checkpoint held is kept."""
    bundle = decode_bundle(data)
    agency = trust.claimed_agency(bundle.delegation)
    stored = store.trust.find(agency)
    if stored is None or stored.anchor.agency != agency:
        raise ConfigError(f"no anchor of agency {agency!r} is installed")
    anchor = stored.anchor
    now = now_ms // 1000
    before = _held(store).get(anchor.fingerprint, Held())
    try:
        delegation = trust.open_delegation(anchor, bundle.delegation).value
        offered = trust.open_revocations(anchor, bundle.delegation, bundle.revocations, now=now)
        checkpoint = trust.open_checkpoint(anchor, delegation.key, bundle.checkpoint)
        accepted = trust.accept_revocations(before.revocations, offered)
    except ConflictingStatementsError as exc:
        store.trust.raise_alarm(exc.what, anchor.fingerprint, exc.first, exc.second, now_ms)
        log.warning("event=trust_alarm kind=%s agency=%s", exc.what, agency)
        raise ConfigError(f"the agency signed two lists of one serial: {exc}") from exc
    except RolledBackError as exc:
        raise ConfigError(f"{exc}: a list older than the one held") from exc
    except TrustError as exc:
        raise ConfigError(f"that list does not verify under the anchor of {agency}: {exc}") from exc
    if accepted is before.revocations:
        raise ConfigError(f"that list (serial {offered.value.serial}) is held already")
    kept, fork = meet_checkpoint_unproven(before.checkpoint, checkpoint)
    held_cp = before.checkpoint
    if (
        consistency is not None
        and held_cp is not None
        and held_cp.checkpoint.size != checkpoint.checkpoint.size
    ):
        try:
            kept, fork = trust.meet_checkpoint(held_cp, checkpoint, consistency), None
        except ConflictingStatementsError as exc:
            kept, fork = held_cp, exc
        except StatementRefusedError:
            kept, fork = held_cp, None
    if fork is not None:
        store.trust.raise_alarm(fork.what, anchor.fingerprint, fork.first, fork.second, now_ms)
        log.warning("event=trust_alarm kind=fork agency=%s", agency)
    store.trust.hold(anchor.fingerprint, accepted.data, kept.data, delegation=bundle.delegation)
    log.info(
        "event=revocations_imported agency=%s serial=%d revoked=%d",
        agency,
        accepted.value.serial,
        len(accepted.value.revoked),
    )
    changed = recheck_contacts(store, anchor, now_ms)
    value = accepted.value
    own = store.trust.own()
    stapled = own is not None and own[0] == anchor.fingerprint
    return Imported(
        agency,
        value.serial,
        value.issued_at,
        len(value.revoked),
        changed,
        stapled,
    )


# What a refusal of our own endorsement means, where its code alone does not
# say it (trust endorsement install).
_INSTALL_REFUSALS: Final = {
    trust.Reason.WRONG_ADDRESS: "it endorses another endpoint's address, not this one's",
    trust.Reason.WRONG_AGENCY: "it was issued under another agency's key",
    trust.Reason.EXPIRED: "it has expired: ask the agency for a new one",
    trust.Reason.NOT_YET_VALID: "it is not valid yet: check this machine's clock",
    trust.Reason.DELEGATION_EXPIRED: "the agency's delegation that signed it has ended",
    trust.Reason.REVOKED: "the agency revoked it",
}
