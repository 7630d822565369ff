"""The receiver's decision on a contact's TrustStaple (trust.md §7.1), as a
table on explicit times: no anchor, endorsed, stale, revoked, a rolled-back
list ignored, a fork alarm with both checkpoints, forgery raised."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import ForgedStatementError, MalformedStatementError
from onionpost.limits import TRUST_FRESHNESS
from onionpost.proto import trust
from onionpost.proto.identity import Identity
from onionpost.proto.trust import Revoked
from onionpost.proto.trust_session import (
    Held,
    Outcome,
    listed_revoked,
    meet_staple,
    session_refusal,
)
from onionpost.testing.agency import Agency

T0 = 1_800_000_000


def _identity(what: str) -> Identity:
    return Identity(hashlib.blake2b(f"onionpost staple test {what}".encode()).digest()[:32])


ALICE = _identity("alice")
ACME = Agency.make("acme", T0)
OTHER = Agency.make("bravo", T0)
PROOF = ACME.endorse(ALICE, T0).encode()
LIST_1 = ACME.revocations(1, T0)
LIST_2 = ACME.revocations(2, T0 + 100)
REVOKING = ACME.revocations(3, T0 + 200, Revoked(str(ALICE.address), T0 + 200, "seized"))
CHECKPOINT = ACME.checkpoint()
# A second acme for the property test, whose log the table's lists do not touch.
ACME_ED = Agency.make("acme", T0)
PROOF_ED = ACME_ED.endorse(ALICE, T0).encode()


def _held(revocations: bytes | None = None, checkpoint: bytes | None = None) -> Held:
    return Held(
        None if revocations is None else trust.stored_revocations(revocations),
        None if checkpoint is None else trust.stored_checkpoint(checkpoint),
    )


@dataclass(frozen=True)
class Case:
    name: str
    held: Held | None
    revocations: bytes
    now: int
    status: str
    describe: str


CASES = [
    Case("no list anywhere", None, b"", T0, "unverified-stale", "unverified: no-revocation-list"),
    Case("a fresh stapled list", None, LIST_1, T0 + 10, "endorsed", "endorsed by acme (Field"),
    Case("a held list", _held(LIST_2), b"", T0 + 10, "endorsed", "endorsed by acme"),
    Case(
        "a stapled list gone stale",
        None,
        LIST_1,
        T0 + TRUST_FRESHNESS + 1,
        "unverified-stale",
        "unverified: stale-revocation-list",
    ),
    Case("revoked in the staple", None, REVOKING, T0 + 300, "refused", "refused: revoked"),
    Case("revoked in what we hold", _held(REVOKING), LIST_2, T0 + 300, "refused", "refused"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_verdicts(case: Case) -> None:
    held = {} if case.held is None else {ACME.anchor.fingerprint: case.held}
    outcome = meet_staple(
        {"acme": ACME.anchor},
        held,
        address=str(ALICE.address),
        proof=PROOF,
        revocations=case.revocations,
        checkpoint=CHECKPOINT,
        now=case.now,
    )
    assert outcome.status == case.status
    assert outcome.describe().startswith(case.describe)
    assert outcome.alarm is None


def _meet(held: dict[bytes, Held], revocations: bytes, checkpoint: bytes, now: int) -> Outcome:
    return meet_staple(
        {"acme": ACME.anchor},
        held,
        address=str(ALICE.address),
        proof=PROOF,
        revocations=revocations,
        checkpoint=checkpoint,
        now=now,
    )


def test_a_revocation_says_when_by_whom_and_why() -> None:
    """``contact list``'s line and ``status``'s refusal for a revoked contact:
    the time and reason as the agency's list states them (trust.md §7.1)."""
    at = 1_796_616_600  # 2026-12-07 04:10 UTC
    acme = Agency.make("acme", T0)  # its own log: the table's agency is left as it is
    proof = acme.endorse(ALICE, T0).encode()

    def meet(listed: bytes, now: int) -> Outcome:
        return meet_staple(
            {"acme": acme.anchor},
            {},
            address=str(ALICE.address),
            proof=proof,
            revocations=listed,
            checkpoint=b"",
            now=now,
        )

    listed = acme.revocations(4, T0 + 300, Revoked(str(ALICE.address), at, "laptop seized"))
    outcome = meet(listed, T0 + 300)
    line = "refused: revoked 2026-12-07 04:10 UTC by acme: laptop seized"
    assert (outcome.status, outcome.describe()) == ("refused", line)
    # Refused whatever the policy; so was a verdict stored in the older words.
    for describe in (line, "refused: revoked"):
        assert session_refusal("refused", describe, required=False) == describe
    # No reason given: none said.
    bare = acme.revocations(5, T0 + 400, Revoked(str(ALICE.address), at, ""))
    assert meet(bare, T0 + 400).describe() == line.removesuffix(": laptop seized")
    # Another refusal is not a revocation: refused only when one is required.
    assert session_refusal("refused", "refused: revokedX", required=False) is None
    assert session_refusal("refused", "refused: expired", required=False) is None
    assert session_refusal("refused", "refused: expired", required=True) == (
        "endorsement required: refused: expired"
    )


BOB = _identity("bob")
AT = 1_796_616_600  # 2026-12-07 04:10 UTC
REVOKED_AT = "refused: revoked 2026-12-07 04:10 UTC"


def _list(agency: str, *revoked: tuple[Identity, int, str]) -> trust.RevocationList:
    entries = tuple(Revoked(str(who.address), at, why) for who, at, why in revoked)
    return trust.RevocationList(agency, 1, T0, tuple(sorted(entries, key=lambda e: e.address)))


@pytest.mark.parametrize(
    ("address", "lists", "refusal"),
    [
        # No list held, or none naming it: not refused by a list.
        (ALICE, (), None),
        (ALICE, (_list("acme"),), None),
        (ALICE, (_list("acme", (BOB, AT, "lost")),), None),
        # Named: refused as a revoked verdict reads, reason or none.
        (ALICE, (_list("acme", (ALICE, AT, "seized")),), f"{REVOKED_AT} by acme: seized"),
        (ALICE, (_list("acme", (ALICE, AT, "")),), f"{REVOKED_AT} by acme"),
        (ALICE, (_list("acme", (ALICE, AT, "x"), (BOB, AT, "y")),), f"{REVOKED_AT} by acme: x"),
        # Any agency's list that names it, another agency's too (§7.4).
        (
            ALICE,
            (_list("acme", (BOB, AT, "lost")), _list("bravo", (ALICE, AT + 60, "x"))),
            "refused: revoked 2026-12-07 04:11 UTC by bravo: x",
        ),
        # Its own address only: another's entry does not refuse it.
        (BOB, (_list("acme", (ALICE, AT, "seized")),), None),
    ],
)
def test_a_list_held_refuses_every_address_it_names(
    address: Identity, lists: tuple[trust.RevocationList, ...], refusal: str | None
) -> None:
    """trust.md §7.4: whatever the contact presented (or nothing), a list we
    hold that names its address refuses it, in a revoked verdict's words."""
    assert listed_revoked(str(address.address), lists) == refusal
    if refusal is not None:
        # Refused whatever the policy, as a revoked verdict is.
        assert session_refusal("refused", refusal, required=False) == refusal


def test_no_anchor_of_the_agency() -> None:
    outcome = meet_staple(
        {"bravo": OTHER.anchor},
        {},
        address=str(ALICE.address),
        proof=PROOF,
        revocations=LIST_1,
        checkpoint=b"",
        now=T0,
    )
    assert (outcome.status, outcome.describe(), outcome.held) == (
        "no-anchor",
        "no anchor for agency acme",
        None,
    )


def test_a_newer_list_is_held_and_an_older_one_ignored() -> None:
    first = _meet({}, LIST_2, b"", T0 + 150)
    assert first.held is not None
    assert first.held.revocations is not None
    assert first.held.revocations.value.serial == 2
    held = {ACME.anchor.fingerprint: first.held}
    older = _meet(held, LIST_1, b"", T0 + 150)
    assert older.rolled_back
    assert older.status == "endorsed"  # judged on the list held, serial 2
    assert older.held is None or older.held.revocations == first.held.revocations


def test_a_fork_between_checkpoints_is_an_alarm_with_both() -> None:
    # A stolen issuing key shows a branch of the same size with another root.
    branch = trust.AgencyLog(ACME.anchor.log_origin, [ACME.delegation])
    for _ in range(ACME.log.size - 1):
        branch.append(b"another statement")
    forked = branch.checkpoint(ACME.issuer)
    held = {ACME.anchor.fingerprint: _held(None, CHECKPOINT)}
    outcome = _meet(held, b"", forked, T0)
    assert outcome.alarm is not None
    assert (outcome.alarm.what, outcome.alarm.first, outcome.alarm.second) == (
        "fork",
        CHECKPOINT,
        forked,
    )


def test_a_larger_checkpoint_is_held() -> None:
    first = trust.EndorsementProof.decode(PROOF).checkpoint
    small = {ACME.anchor.fingerprint: _held(None, first)}
    outcome = _meet(small, b"", CHECKPOINT, T0)
    assert outcome.held is not None
    assert outcome.held.checkpoint is not None
    assert outcome.held.checkpoint.data == CHECKPOINT


def test_forged_and_malformed_raise() -> None:
    with pytest.raises(MalformedStatementError):
        _meet_proof(b"\x00garbage")
    bravo_list = OTHER.revocations(1, T0)
    with pytest.raises(ForgedStatementError):
        _meet({}, bravo_list, b"", T0)
    with pytest.raises(ForgedStatementError):
        _meet({}, b"", OTHER.checkpoint(), T0)
    # Another agency's proof presented as acme's: its delegation is not acme's root's.
    impostor = Agency.make("acme", T0).endorse(ALICE, T0).encode()
    with pytest.raises(ForgedStatementError):
        _meet_proof(impostor)


def _meet_proof(proof: bytes) -> Outcome:
    return meet_staple(
        {"acme": ACME.anchor},
        {},
        address=str(ALICE.address),
        proof=proof,
        revocations=b"",
        checkpoint=b"",
        now=T0,
    )


def test_an_endorsement_of_another_address_is_refused() -> None:
    outcome = meet_staple(
        {"acme": ACME.anchor},
        {},
        address=str(_identity("mallory").address),
        proof=PROOF,
        revocations=LIST_1,
        checkpoint=b"",
        now=T0,
    )
    assert outcome.describe() == "refused: wrong-address"


def test_the_cache_verifies_each_statement_once_and_only_for_its_key() -> None:
    cache = trust.VerifiedCache(8)
    first = trust.check_endorsement(
        ACME.anchor, PROOF, address=str(ALICE.address), revocations=None, now=T0, cache=cache
    )
    assert len(cache) == 3  # the delegation, the endorsement, the checkpoint
    again = trust.check_endorsement(
        ACME.anchor, PROOF, address=str(ALICE.address), revocations=None, now=T0, cache=cache
    )
    assert again == first
    assert len(cache) == 3
    # The same bytes under another anchor of the same name are not a hit.
    impostor = Agency.make("acme", T0)
    with pytest.raises(ForgedStatementError):
        trust.check_endorsement(
            impostor.anchor,
            PROOF,
            address=str(ALICE.address),
            revocations=None,
            now=T0,
            cache=cache,
        )
    assert len(cache) == 3  # nothing forged is kept
    # Time is judged on every use: the cached delegation expires.
    late = trust.check_endorsement(
        ACME.anchor,
        PROOF,
        address=str(ALICE.address),
        revocations=None,
        now=T0 + 61 * 86_400,
        cache=cache,
    )
    assert late.status is trust.Status.REFUSED


def test_the_cache_is_bounded() -> None:
    cache = trust.VerifiedCache(4)
    for i in range(6):
        proof = ACME.endorse(_identity(f"endpoint {i}"), T0).encode()
        address = str(_identity(f"endpoint {i}").address)
        trust.check_endorsement(
            ACME.anchor, proof, address=address, revocations=None, now=T0, cache=cache
        )
        assert len(cache) <= 4


_LISTS = {serial: ACME_ED.revocations(serial, T0) for serial in range(1, 7)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 6), min_size=1, max_size=12))
def test_the_list_held_only_ever_moves_forward(serials: list[int]) -> None:
    """Lists met in any order: the one held is the highest serial met so far;
    a lower one is flagged rolled back and never held."""
    held: dict[bytes, Held] = {}
    highest = 0
    for serial in serials:
        outcome = meet_staple(
            {"acme": ACME_ED.anchor},
            held,
            address=str(ALICE.address),
            proof=PROOF_ED,
            revocations=_LISTS[serial],
            checkpoint=b"",
            now=T0 + 10,
        )
        assert outcome.rolled_back == (serial < highest)
        highest = max(highest, serial)
        if outcome.held is not None:
            held = {ACME_ED.anchor.fingerprint: outcome.held}
        kept = held[ACME_ED.anchor.fingerprint].revocations
        assert kept is not None
        assert kept.value.serial == highest
        assert outcome.status == "endorsed"
