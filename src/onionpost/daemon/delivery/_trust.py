"""Agency trust over a session (``protocol-spec/trust.md`` §7.1).

At the start of every session each side sends a ``TrustStaple`` when it holds
an endorsement of its own (``onionpost trust endorsement install``): the
proof, and the latest revocation list and checkpoint of its agency it holds.
The receiver's decision is :func:`onionpost.proto.trust_session.meet_staple`;
this module only reads what it needs from the store, and writes what the
decision says: the list and checkpoint to hold, an alarm, and the verdict on
the contact, which ``contact list`` shows.

Everything here is synchronous store work, run in the engine's worker. A
contact is authenticated, not trusted: a session takes at most
``MAX_TRUST_STAPLES_PER_SESSION`` staples (each costs at most a few hybrid
signature checks and ``MAX_PROOF_HASHES`` hashes); a forged or malformed one
records the contact as refused and the session goes on.
"""

from __future__ import annotations

import logging

from onionpost._logs import contact_ref
from onionpost.errors import ConfigError, ForgedStatementError, TrustError
from onionpost.proto import trust
from onionpost.proto.messages import TrustStaple
from onionpost.proto.trust_session import Held, meet_staple
from onionpost.store import Contact, ContactEndorsement, Store

__all__ = ["install_own", "receive_staple", "staple"]

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


def receive_staple(
    store: Store, contact: Contact, record: TrustStaple, now_ms: int
) -> ContactEndorsement:
    """Decide on ``contact``'s staple and record the outcome (see the module doc)."""
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
        return store.trust.set_endorsement(
            contact.id, None, status, f"refused: {why} {exc.what}", now_ms
        )
    anchor = outcome.anchor
    if anchor is not None and outcome.held is not None:
        store.trust.hold(
            anchor.fingerprint,
            None if outcome.held.revocations is None else outcome.held.revocations.data,
            None if outcome.held.checkpoint is None else outcome.held.checkpoint.data,
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
    return store.trust.set_endorsement(contact.id, record.proof, outcome.status, describe, now_ms)


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
        raise ConfigError(f"that endorsement is refused: {verdict.reason.value}")
    store.trust.install_own(anchor.fingerprint, proof, now_ms)
    if verdict.checkpoint is not None and (held is None or held.checkpoint is None):
        store.trust.hold(
            anchor.fingerprint,
            None if held is None or held.revocations is None else held.revocations.data,
            verdict.checkpoint.data,
        )
    log.info("event=endorsement_installed agency=%s status=%s", agency, verdict.status.value)
    return verdict
