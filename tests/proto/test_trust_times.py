"""The time fields of agency statements are bounded (trust.md §2): at most the
last second of year 9999, so that a date shows them; and a revocation list
dated later than now (beyond the clock skew) is refused, not held as fresh
for ever (trust.md §4). Statements past the bound are crafted here by hand,
since the records themselves refuse to be built with them."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import MalformedStatementError, StatementRefusedError, TrustError
from onionpost.limits import MAX_TIME_MS, TRUST_CLOCK_SKEW
from onionpost.proto import _msgpack, trust
from onionpost.proto.identity import Identity
from onionpost.proto.trust import (
    Anchor,
    Delegation,
    Endorsement,
    EndorsementProof,
    HybridSigner,
    Reason,
    RevocationList,
    Revoked,
    Status,
    check_endorsement,
    issue,
    open_delegation,
    open_revocations,
)
from onionpost.proto.trust_session import (
    REVOKED,
    Held,
    describe,
    listed_revoked,
    meet_gossip,
    meet_staple,
)
from onionpost.testing.agency import Agency

T0 = 1_800_000_000
DAY = 86_400
# The last second of year 9999: 9999-12-31 23:59:59 UTC.
BOUND = MAX_TIME_MS // 1000
U64 = 2**64 - 1


def _identity(what: str) -> Identity:
    return Identity(hashlib.blake2b(f"onionpost trust times {what}".encode()).digest()[:32])


ALICE = _identity("alice")
ACME = Agency.make("acme", T0)
PROOF = ACME.endorse(ALICE, T0)


def _note_text(kind: str, body: list[object]) -> str:
    """A statement's note text from a raw body: no record's checks on the way."""
    return f"{trust.HEADER} {kind}\n{base64.b64encode(_msgpack.pack(body)).decode()}\n"


def _crafted_list(
    agency: Agency, serial: int, issued_at: int, *entries: tuple[str, int, str]
) -> bytes:
    body: list[object] = [1, agency.name, serial, issued_at, [list(e) for e in entries]]
    return agency.issuer.sign(_note_text("revocations", body)).to_bytes()


def _crafted_delegation(root: HybridSigner, agency: str, not_before: int, not_after: int) -> bytes:
    issuer = HybridSigner.generate(f"{agency}/issuing/a", mldsa=False)
    body: list[object] = [1, agency, "a", issuer.public.ed25519, b"", not_before, not_after]
    return root.sign(_note_text("delegation", body)).to_bytes()


# -- past year 9999 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issued_at", "revoked_at"),
    [(T0, BOUND + 1), (T0, 2**63 - 1), (T0, U64), (BOUND + 1, T0), (U64, T0)],
    ids=["revoked a second late", "revoked at 2^63-1", "revoked at 2^64-1", "issued late", "u64"],
)
def test_a_list_with_a_time_past_year_9999_is_malformed(issued_at: int, revoked_at: int) -> None:
    data = _crafted_list(ACME, 1, issued_at, (str(ALICE.address), revoked_at, "seized"))
    with pytest.raises(MalformedStatementError, match="year 9999") as caught:
        open_revocations(ACME.anchor, ACME.delegation, data, now=T0)
    assert caught.value.what == "revocations"
    with pytest.raises(MalformedStatementError, match="year 9999"):
        trust.stored_revocations(data)


def test_a_staple_or_gossip_with_such_a_list_raises_a_trust_error_and_holds_nothing() -> None:
    # Before the bound, the list was held and every later describe() of the
    # contact raised ValueError out of the date formatting.
    data = _crafted_list(ACME, 1, T0, (str(ALICE.address), BOUND + 1, "seized"))
    anchors = {"acme": ACME.anchor}
    with pytest.raises(MalformedStatementError):
        meet_staple(
            anchors,
            {},
            address=str(ALICE.address),
            proof=PROOF.encode(),
            revocations=data,
            checkpoint=b"",
            now=T0 + 10,
        )
    with pytest.raises(MalformedStatementError):
        meet_gossip(
            anchors, {}, delegation=ACME.delegation, revocations=data, checkpoint=b"", now=T0 + 10
        )


def test_the_records_refuse_times_past_year_9999() -> None:
    key = b"\x01" * 32
    address = str(ALICE.address)
    with pytest.raises(MalformedStatementError, match="year 9999"):
        RevocationList("acme", 1, BOUND + 1)
    with pytest.raises(MalformedStatementError, match="year 9999"):
        RevocationList("acme", 1, T0, (Revoked(address, BOUND + 1, ""),))
    with pytest.raises(MalformedStatementError, match="year 9999"):
        Delegation("acme", "a", key, b"", BOUND + 1, BOUND + 1)
    with pytest.raises(MalformedStatementError, match="year 9999"):
        Endorsement("acme", address, ALICE.public_key, "x", "", BOUND + 1, BOUND + 1)
    # A serial is a number, not a time: it keeps its u63 range.
    assert RevocationList("acme", 2**63 - 1, T0).serial == 2**63 - 1


def test_a_delegation_past_year_9999_is_malformed() -> None:
    root = HybridSigner.generate("far/root", mldsa=False)
    anchor = Anchor("far", root.public.ed25519)
    data = _crafted_delegation(root, "far", BOUND + 1, BOUND + 10)
    with pytest.raises(MalformedStatementError, match="year 9999"):
        open_delegation(anchor, data)
    with pytest.raises(MalformedStatementError, match="year 9999"):
        trust.claimed_delegation(data)


def test_times_at_the_bound_are_accepted_and_show_as_dates() -> None:
    # An agency whose key is delegated for the last day before the bound,
    # endorsing Alice until the bound, revoking her at it.
    root = HybridSigner.generate("far/root", mldsa=False)
    issuer = HybridSigner.generate("far/issuing/a", mldsa=False)
    anchor = Anchor("far", root.public.ed25519)
    delegation = issue(root, Delegation("far", "a", issuer.public.ed25519, b"", BOUND - DAY, BOUND))
    far = Agency("far", root, issuer, anchor, delegation, trust.AgencyLog(anchor.log_origin))
    far.log.append(delegation)
    endorsed = issue(
        issuer,
        Endorsement("far", str(ALICE.address), ALICE.public_key, "HQ", "", BOUND - DAY, BOUND),
    )
    index = far.log.append(endorsed)
    proof = EndorsementProof(
        delegation, endorsed, far.checkpoint(), index, far.log.inclusion(index)
    )
    clean = open_revocations(anchor, delegation, far.revocations(1, BOUND), now=BOUND).value
    verdict = check_endorsement(
        anchor, proof, address=str(ALICE.address), revocations=clean, now=BOUND
    )
    assert verdict.status is Status.ENDORSED
    assert describe("far", verdict).endswith("until 9999-12-31 23:59 UTC")

    data = far.revocations(2, BOUND, Revoked(str(ALICE.address), BOUND, "seized"))
    listed = open_revocations(anchor, delegation, data, now=BOUND).value
    assert listed.revoked[0].revoked_at == BOUND
    expected = f"{REVOKED} 9999-12-31 23:59 UTC by far: seized"
    assert listed_revoked(str(ALICE.address), [listed]) == expected
    outcome = meet_staple(
        {"far": anchor},
        {},
        address=str(ALICE.address),
        proof=proof.encode(),
        revocations=data,
        checkpoint=b"",
        now=BOUND,
    )
    assert outcome.describe() == expected


# -- dated in the future --------------------------------------------------------------


def test_a_list_issued_later_than_now_beyond_the_skew_is_refused() -> None:
    data = _crafted_list(ACME, 1, T0 + TRUST_CLOCK_SKEW + 1)
    with pytest.raises(StatementRefusedError, match="issued later than now") as caught:
        open_revocations(ACME.anchor, ACME.delegation, data, now=T0)
    assert caught.value.reason == Reason.NOT_YET_VALID.value
    # The same list, once the clock has caught up, is accepted.
    opened = open_revocations(ACME.anchor, ACME.delegation, data, now=T0 + 1)
    assert opened.value.issued_at == T0 + TRUST_CLOCK_SKEW + 1


def test_a_list_issued_within_the_skew_is_accepted() -> None:
    data = _crafted_list(ACME, 1, T0 + TRUST_CLOCK_SKEW)
    assert open_revocations(ACME.anchor, ACME.delegation, data, now=T0).value.serial == 1


def test_a_staple_with_a_list_from_the_future_holds_nothing() -> None:
    # Before: the list was held and, issued in the future, was fresh for ever.
    data = _crafted_list(ACME, 1, T0 + 10 * 365 * DAY)
    with pytest.raises(StatementRefusedError):
        meet_staple(
            {"acme": ACME.anchor},
            {},
            address=str(ALICE.address),
            proof=PROOF.encode(),
            revocations=data,
            checkpoint=b"",
            now=T0 + 10,
        )
    with pytest.raises(StatementRefusedError):
        meet_gossip(
            {"acme": ACME.anchor},
            {ACME.anchor.fingerprint: Held()},
            delegation=ACME.delegation,
            revocations=data,
            checkpoint=b"",
            now=T0 + 10,
        )


# -- any integer ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    issued_at=st.integers(0, U64),
    revoked_at=st.integers(0, U64) | st.sampled_from([BOUND, BOUND + 1, 2**63, 2**63 - 1]),
    now=st.sampled_from([T0, T0 + DAY]),
)
def test_any_time_in_a_list_gives_a_trust_error_or_a_list_that_shows(
    issued_at: int, revoked_at: int, now: int
) -> None:
    data = _crafted_list(ACME, 1, issued_at, (str(ALICE.address), revoked_at, "seized"))
    try:
        listed = open_revocations(ACME.anchor, ACME.delegation, data, now=now).value
    except TrustError:
        return
    assert issued_at <= now + TRUST_CLOCK_SKEW
    shown = listed_revoked(str(ALICE.address), [listed])
    assert shown is not None
    assert shown.startswith(REVOKED)
    verdict = check_endorsement(
        ACME.anchor, PROOF, address=str(ALICE.address), revocations=listed, now=now
    )
    assert describe("acme", verdict).startswith(REVOKED)
