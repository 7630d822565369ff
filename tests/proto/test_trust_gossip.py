"""Gossip between endpoints (trust.md §7.2) as pure decisions: what a receiver
does with a contact's ``TrustGossip`` (:func:`meet_gossip`), what a sender
passes on (:func:`to_gossip`), and the pace that bounds both (:class:`Pace`)."""

from __future__ import annotations

import hashlib

import pytest

from onionpost.errors import (
    ForgedStatementError,
    MalformedStatementError,
    StatementRefusedError,
    TrustError,
)
from onionpost.limits import MAX_TRUST_STAPLE_PART
from onionpost.proto import trust
from onionpost.proto.identity import Identity
from onionpost.proto.trust import Revoked
from onionpost.proto.trust_session import Held, Pace, meet_gossip, to_gossip
from onionpost.testing.agency import Agency

T0 = 1_800_000_000
_DAY = 86_400

ACME = Agency.make("acme", T0)
BRAVO = Agency.make("bravo", T0)
MALLORY = Identity(hashlib.blake2b(b"onionpost gossip test mallory").digest()[:32])
LIST_1 = ACME.revocations(1, T0)
LIST_2 = ACME.revocations(2, T0 + 100, Revoked(str(MALLORY.address), T0 + 100, "seized"))
CHECKPOINT = ACME.checkpoint()  # after both lists
ANCHORS = {"acme": ACME.anchor, "bravo": BRAVO.anchor}


def _held(revocations: bytes | None = None, checkpoint: bytes | None = None) -> dict[bytes, Held]:
    return {
        ACME.anchor.fingerprint: Held(
            None if revocations is None else trust.stored_revocations(revocations),
            None if checkpoint is None else trust.stored_checkpoint(checkpoint),
        )
    }


def _branch(size: int, filler: bytes) -> bytes:
    """A checkpoint of acme's log of ``size`` entries on another branch (what
    a stolen issuing key shows some holders)."""
    log = trust.AgencyLog(ACME.anchor.log_origin, [ACME.delegation])
    while log.size < size:
        log.append(filler)
    return log.checkpoint(ACME.issuer)


def test_a_newer_list_and_a_larger_checkpoint_are_held() -> None:
    outcome = meet_gossip(
        ANCHORS,
        _held(LIST_1),
        delegation=ACME.delegation,
        revocations=LIST_2,
        checkpoint=CHECKPOINT,
        now=T0 + 200,
    )
    assert outcome is not None
    assert outcome.anchor == ACME.anchor
    assert outcome.new_list
    assert outcome.held is not None
    assert outcome.held.revocations is not None
    assert outcome.held.revocations.value.find(str(MALLORY.address)) is not None
    assert outcome.held.checkpoint is not None
    assert outcome.held.checkpoint.data == CHECKPOINT
    assert outcome.new_checkpoint
    assert (outcome.alarm, outcome.rolled_back) == (None, False)


def test_a_checkpoint_alone_is_held_and_is_no_new_list() -> None:
    outcome = meet_gossip(
        ANCHORS, {}, delegation=ACME.delegation, revocations=b"", checkpoint=CHECKPOINT, now=T0
    )
    assert outcome is not None
    assert outcome.held is not None
    assert (outcome.held.revocations, outcome.new_list) == (None, False)
    assert outcome.new_checkpoint


def test_an_older_list_is_ignored_and_the_same_one_changes_nothing() -> None:
    older = meet_gossip(
        ANCHORS, _held(LIST_2), delegation=ACME.delegation, revocations=LIST_1, checkpoint=b"",
        now=T0 + 200,
    )  # fmt: skip
    assert older is not None
    assert (older.held, older.new_list, older.rolled_back, older.alarm) == (None, False, True, None)
    assert not older.new_checkpoint
    same = meet_gossip(
        ANCHORS, _held(LIST_2, CHECKPOINT), delegation=ACME.delegation, revocations=LIST_2,
        checkpoint=CHECKPOINT, now=T0 + 200,
    )  # fmt: skip
    assert same is not None
    assert (same.held, same.new_list, same.rolled_back, same.alarm) == (None, False, False, None)
    assert not same.new_checkpoint


def test_two_lists_of_one_serial_are_an_alarm_with_both() -> None:
    other = ACME.revocations(2, T0 + 100)  # serial 2 again, without the entry
    outcome = meet_gossip(
        ANCHORS, _held(LIST_2), delegation=ACME.delegation, revocations=other, checkpoint=b"",
        now=T0 + 200,
    )  # fmt: skip
    assert outcome is not None
    assert outcome.alarm is not None
    assert (outcome.alarm.what, outcome.alarm.first, outcome.alarm.second) == (
        "revocations",
        LIST_2,
        other,
    )
    assert outcome.held is None  # the list held stays


def test_a_branch_at_the_same_size_is_a_fork_alarm_with_both() -> None:
    size = trust.stored_checkpoint(CHECKPOINT).checkpoint.size
    forked = _branch(size, b"a statement only some holders see")
    outcome = meet_gossip(
        ANCHORS, _held(None, CHECKPOINT), delegation=ACME.delegation, revocations=b"",
        checkpoint=forked, now=T0,
    )  # fmt: skip
    assert outcome is not None
    assert outcome.alarm is not None
    assert (outcome.alarm.what, outcome.alarm.first, outcome.alarm.second) == (
        "fork",
        CHECKPOINT,
        forked,
    )
    assert outcome.held is None  # the checkpoint held stays


def test_an_agency_we_hold_no_anchor_of_is_ignored() -> None:
    assert (
        meet_gossip(
            {"bravo": BRAVO.anchor},
            {},
            delegation=ACME.delegation,
            revocations=LIST_2,
            checkpoint=CHECKPOINT,
            now=T0,
        )
        is None
    )


IMPOSTOR = Agency.make("acme", T0)  # another root under the same name
BAD = [
    ("delegation-garbage", b"\x00garbage", LIST_1, b"", MalformedStatementError),
    ("delegation-oversize", b"x" * MAX_TRUST_STAPLE_PART, LIST_1, b"", MalformedStatementError),
    ("nothing", ACME.delegation, b"", b"", MalformedStatementError),
    ("delegation-forged", IMPOSTOR.delegation, IMPOSTOR.revocations(9, T0), b"",
     ForgedStatementError),
    ("list-forged", ACME.delegation, BRAVO.revocations(9, T0), b"", ForgedStatementError),
    ("list-garbage", ACME.delegation, b"not a note", b"", TrustError),
    ("checkpoint-forged", ACME.delegation, b"", BRAVO.checkpoint(), ForgedStatementError),
    # A good list with a checkpoint that is not: nothing of the record is held.
    ("list-good-checkpoint-forged", ACME.delegation, LIST_2, IMPOSTOR.checkpoint(), TrustError),
]  # fmt: skip


@pytest.mark.parametrize(
    ("delegation", "revocations", "checkpoint", "error"),
    [b[1:] for b in BAD],
    ids=[b[0] for b in BAD],
)
def test_bad_gossip_raises_and_decides_nothing(
    delegation: bytes, revocations: bytes, checkpoint: bytes, error: type[Exception]
) -> None:
    with pytest.raises(error):
        meet_gossip(
            ANCHORS,
            _held(LIST_1),
            delegation=delegation,
            revocations=revocations,
            checkpoint=checkpoint,
            now=T0 + 200,
        )


def test_gossip_under_a_delegation_not_valid_now_is_refused() -> None:
    for now in (T0 - 3600, T0 + 61 * _DAY):
        with pytest.raises(StatementRefusedError):
            meet_gossip(
                ANCHORS, {}, delegation=ACME.delegation, revocations=b"", checkpoint=CHECKPOINT,
                now=now,
            )  # fmt: skip


# -- what a sender passes on ----------------------------------------------------------


def test_to_gossip_passes_on_other_agencies_with_a_delegation_that_signed_them() -> None:
    bravo_list = BRAVO.revocations(1, T0)
    held = {
        ACME.anchor.fingerprint: (LIST_2, CHECKPOINT),
        BRAVO.anchor.fingerprint: (bravo_list, None),
    }
    anchors = [ACME.anchor, BRAVO.anchor]
    found = to_gossip(
        anchors,
        held,
        own=BRAVO.anchor.fingerprint,  # our own agency's is stapled, not gossiped
        delegations=[b"garbage", IMPOSTOR.delegation, BRAVO.delegation, ACME.delegation],
    )
    assert [(g.fingerprint, g.delegation, g.revocations, g.checkpoint) for g in found] == [
        (ACME.anchor.fingerprint, ACME.delegation, LIST_2, CHECKPOINT)
    ]
    # Without a delegation of acme that signed them, nothing of acme goes.
    assert to_gossip(anchors, held, own=None, delegations=[IMPOSTOR.delegation]) == []
    # A part signed by another key is left out, the other goes.
    mixed = {ACME.anchor.fingerprint: (LIST_2, IMPOSTOR.checkpoint())}
    (only,) = to_gossip(anchors, mixed, own=None, delegations=[ACME.delegation])
    assert (only.revocations, only.checkpoint) == (LIST_2, b"")
    # Two issuing keys of acme: the list by one, the checkpoint by the other.
    # The delegation that signed the list goes (the list is what revokes).
    issuer_b = trust.HybridSigner.generate("acme/issuing/b", mldsa=False)
    pub = issuer_b.public
    delegation_b = trust.issue(
        ACME.root, trust.Delegation("acme", "b", pub.ed25519, pub.mldsa65, T0, T0 + 9 * _DAY)
    )
    checkpoint_b = ACME.log.checkpoint(issuer_b)
    split = {ACME.anchor.fingerprint: (LIST_2, checkpoint_b)}
    for order in ([delegation_b, ACME.delegation], [ACME.delegation, delegation_b]):
        (chosen,) = to_gossip(anchors, split, own=None, delegations=order)
        assert (chosen.delegation, chosen.revocations, chosen.checkpoint) == (
            ACME.delegation,
            LIST_2,
            b"",
        )
    (by_b,) = to_gossip(
        anchors,
        {ACME.anchor.fingerprint: (None, checkpoint_b)},
        own=None,
        delegations=[ACME.delegation, delegation_b],
    )
    assert (by_b.delegation, by_b.checkpoint) == (delegation_b, checkpoint_b)
    # The same key delegated again, to a later end: the later goes, in any order.
    renewed = trust.issue(
        ACME.root,
        trust.Delegation(
            "acme", "a", ACME.issuer.public.ed25519, ACME.issuer.public.mldsa65, T0, T0 + 89 * _DAY
        ),
    )
    for order in ([renewed, ACME.delegation], [ACME.delegation, renewed]):
        (chosen,) = to_gossip(anchors, held, own=None, delegations=order)
        assert (chosen.delegation, chosen.revocations, chosen.checkpoint) == (
            renewed,
            LIST_2,
            CHECKPOINT,
        )
    # Nothing held of an anchor: nothing to pass on.
    assert to_gossip(anchors, {}, own=None, delegations=[ACME.delegation]) == []


def test_what_to_gossip_is_what_the_receiver_holds_after() -> None:
    (g,) = to_gossip(
        [ACME.anchor],
        {ACME.anchor.fingerprint: (LIST_2, CHECKPOINT)},
        own=None,
        delegations=[ACME.delegation],
    )
    outcome = meet_gossip(
        ANCHORS,
        {},
        delegation=g.delegation,
        revocations=g.revocations,
        checkpoint=g.checkpoint,
        now=T0 + 200,
    )
    assert outcome is not None
    assert outcome.held is not None
    assert outcome.held.revocations is not None
    assert outcome.held.revocations.data == LIST_2


# -- the pace -------------------------------------------------------------------------


def test_a_pace_lets_a_burst_through_then_one_each_interval() -> None:
    pace = Pace(3, 10.0)
    assert [pace.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert pace.next_at(100.0) == pytest.approx(110.0)
    assert not pace.take(109.0)
    assert pace.take(110.0)
    assert not pace.take(110.0)
    # A long quiet saves no more than the burst.
    assert [pace.take(10_000.0) for _ in range(4)] == [True, True, True, False]
    # A clock that goes back gives nothing.
    assert not pace.take(50.0)
    assert pace.next_at(10_000.0) > 10_000.0


def test_a_pace_over_a_long_session_takes_one_per_interval() -> None:
    pace = Pace(8, 30.0)
    taken = sum(pace.take(t * 1.0) for t in range(3600))  # one offered a second, an hour
    assert taken == 8 + (3600 - 1) // 30
