"""Agency trust (protocol-spec/trust.md): the checks of §4 as a table on explicit
times, forgery, rolled-back lists, a split view among three holders, rotation."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import (
    ConfigError,
    ConflictingStatementsError,
    ForgedStatementError,
    MalformedStatementError,
    RolledBackError,
    StatementRefusedError,
    TrustError,
)
from onionpost.limits import MAX_ENDORSEMENT_LIFETIME, TRUST_CLOCK_SKEW, TRUST_FRESHNESS
from onionpost.proto import note
from onionpost.proto.identity import Identity
from onionpost.proto.trust import (
    AgencyLog,
    Anchor,
    Delegation,
    Endorsement,
    EndorsementProof,
    HybridSigner,
    Reason,
    RevocationList,
    Revoked,
    RotationProof,
    Signed,
    Status,
    accept_revocations,
    check_endorsement,
    check_rotation,
    issue,
    meet_checkpoint,
    open_checkpoint,
    open_revocations,
    statement_text,
)

T0 = 1_800_000_000
DAY = 86_400


def _seed(what: str, size: int = 32) -> bytes:
    return hashlib.blake2b(f"onionpost trust test {what}".encode()).digest()[:size]


@dataclass
class Agency:
    """An agency with a root, one issuing key, its log and its anchor."""

    name: str
    root: HybridSigner
    issuer: HybridSigner
    anchor: Anchor
    delegation: bytes
    log: AgencyLog

    @classmethod
    def make(cls, name: str, *, mldsa: bool = True, not_after: int = T0 + 60 * DAY) -> Agency:
        root = HybridSigner(
            f"{name}/root", _seed(f"{name} root"), _seed(f"{name} root ml") if mldsa else None
        )
        issuer = HybridSigner(
            f"{name}/issuing/a", _seed(f"{name} iss"), _seed(f"{name} iss ml") if mldsa else None
        )
        anchor = Anchor(name, root.public.ed25519, root.public.mldsa65)
        pub = issuer.public
        delegation = issue(root, Delegation(name, "a", pub.ed25519, pub.mldsa65, T0, not_after))
        log = AgencyLog(anchor.log_origin, [delegation])
        return cls(name, root, issuer, anchor, delegation, log)

    def endorse(
        self,
        who: Identity,
        *,
        log: bool = True,
        also: tuple[Identity, ...] = (),
        **changes: object,
    ) -> EndorsementProof:
        fields: dict[str, object] = {
            "agency": self.name,
            "address": str(who.address),
            "identity": who.public_key,
            "endpoint": "Field office 3",
            "unit": "Unit U",
            "valid_from": T0,
            "valid_until": T0 + 7 * DAY,
        }
        fields.update(changes)
        data = issue(self.issuer, Endorsement(**fields), also=also)  # type: ignore[arg-type]
        index = self.log.append(data) if log else 0
        return EndorsementProof(
            self.delegation,
            data,
            self.log.checkpoint(self.issuer),
            index,
            self.log.inclusion(index),
        )

    def revocations(self, serial: int, issued_at: int, *revoked: Revoked) -> Signed[RevocationList]:
        data = issue(self.issuer, RevocationList(self.name, serial, issued_at, tuple(revoked)))
        self.log.append(data)
        return open_revocations(self.anchor, self.delegation, data, now=issued_at)


ACME = Agency.make("acme")
ALICE = Identity(_seed("alice"))
BOB = Identity(_seed("bob"))
GOOD = ACME.endorse(ALICE)
FRESH = ACME.revocations(1, T0 + DAY).value


# -- the checks of §4, in a table ------------------------------------------------------

CASES = [
    # (name, proof, now, list, expected status, reason)
    ("endorsed", GOOD, T0 + DAY, FRESH, Status.ENDORSED, None),
    (
        "endorsed within the skew before",
        GOOD,
        T0 - TRUST_CLOCK_SKEW,
        replace(FRESH, issued_at=T0),
        Status.ENDORSED,
        None,
    ),
    ("not yet valid", GOOD, T0 - TRUST_CLOCK_SKEW - 1, FRESH, Status.REFUSED, Reason.NOT_YET_VALID),
    ("expired", GOOD, T0 + 7 * DAY + TRUST_CLOCK_SKEW + 1, FRESH, Status.REFUSED, Reason.EXPIRED),
    (
        "expired delegation",
        GOOD,
        T0 + 60 * DAY + TRUST_CLOCK_SKEW + 1,
        FRESH,
        Status.REFUSED,
        Reason.DELEGATION_EXPIRED,
    ),
    ("no list", GOOD, T0 + DAY, None, Status.UNVERIFIED_STALE, Reason.NO_LIST),
    (
        "stale list",
        GOOD,
        T0 + DAY + TRUST_FRESHNESS + 1,
        FRESH,
        Status.UNVERIFIED_STALE,
        Reason.STALE_LIST,
    ),
    (
        "a list of another agency",
        GOOD,
        T0 + DAY,
        replace(FRESH, agency="bravo"),
        Status.UNVERIFIED_STALE,
        Reason.NO_LIST,
    ),
    (
        "revoked",
        GOOD,
        T0 + DAY,
        replace(FRESH, revoked=(Revoked(str(ALICE.address), T0, "laptop seized"),)),
        Status.REFUSED,
        Reason.REVOKED,
    ),
    (
        "revoked, even on a stale list",
        GOOD,
        T0 + 5 * DAY,
        replace(FRESH, revoked=(Revoked(str(ALICE.address), T0, "laptop seized"),)),
        Status.REFUSED,
        Reason.REVOKED,
    ),
    (
        "missing from the log",
        ACME.endorse(BOB, log=False),
        T0 + DAY,
        FRESH,
        Status.REFUSED,
        Reason.NOT_IN_LOG,
    ),
    (
        "wrong agency for the issuing key",
        ACME.endorse(ALICE, agency="bravo"),
        T0 + DAY,
        FRESH,
        Status.REFUSED,
        Reason.WRONG_AGENCY,
    ),
]


@pytest.mark.parametrize(
    ("proof", "now", "revocations", "status", "reason"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_check_endorsement_table(
    proof: EndorsementProof,
    now: int,
    revocations: RevocationList | None,
    status: Status,
    reason: Reason | None,
) -> None:
    verdict = check_endorsement(
        ACME.anchor, proof.encode(), address=str(ALICE.address), revocations=revocations, now=now
    )
    if reason is Reason.NOT_IN_LOG:  # that proof endorses bob
        verdict = check_endorsement(
            ACME.anchor, proof, address=str(BOB.address), revocations=revocations, now=now
        )
    assert (verdict.status, verdict.reason) == (status, reason)
    if status is Status.ENDORSED:
        assert verdict.until == T0 + 7 * DAY
        assert (
            verdict.describe() == f"endorsed by acme (Field office 3, Unit U) until {T0 + 7 * DAY}"
        )


def test_an_endorsement_for_another_address_is_refused() -> None:
    verdict = check_endorsement(
        ACME.anchor, GOOD, address=str(BOB.address), revocations=FRESH, now=T0 + DAY
    )
    assert verdict.reason is Reason.WRONG_ADDRESS
    lying = ACME.endorse(ALICE, identity=BOB.public_key)  # the address's key is another
    verdict = check_endorsement(
        ACME.anchor, lying, address=str(ALICE.address), revocations=FRESH, now=T0 + DAY
    )
    assert verdict.reason is Reason.WRONG_ADDRESS


def test_a_delegation_for_another_agency_is_refused() -> None:
    # acme's root delegating a key to speak for bravo: the anchor speaks for acme only.
    pub = ACME.issuer.public
    delegation = issue(ACME.root, Delegation("bravo", "a", pub.ed25519, pub.mldsa65, T0, T0 + DAY))
    proof = replace(GOOD, delegation=delegation)
    verdict = check_endorsement(
        ACME.anchor, proof, address=str(ALICE.address), revocations=FRESH, now=T0
    )
    assert verdict.reason is Reason.WRONG_AGENCY


# -- forgery raises ---------------------------------------------------------------------

BRAVO = Agency.make("bravo")


def _strip_mldsa(data: bytes) -> bytes:
    parsed = note.Note.parse(data)
    return note.Note(parsed.text, parsed.signatures[:1]).to_bytes()


def _flip_text(data: bytes) -> bytes:
    """GOOD's signature lines on the text of another endpoint name."""
    parsed = note.Note.parse(data)
    endorsement = Endorsement(
        "acme", str(ALICE.address), ALICE.public_key, "Head office", "Unit U", T0, T0 + 7 * DAY
    )
    return note.Note(statement_text(endorsement), parsed.signatures).to_bytes()


FORGERIES = [
    ("the anchor of another agency", BRAVO.anchor, GOOD),
    ("a delegation by another root", ACME.anchor, replace(GOOD, delegation=BRAVO.delegation)),
    (
        "an endorsement by a key not delegated",
        ACME.anchor,
        replace(GOOD, endorsement=BRAVO.endorse(ALICE, agency="acme").endorsement),
    ),
    (
        "an endorsement without its ML-DSA half",
        ACME.anchor,
        replace(GOOD, endorsement=_strip_mldsa(GOOD.endorsement)),
    ),
    (
        "a delegation without its ML-DSA half",
        ACME.anchor,
        replace(GOOD, delegation=_strip_mldsa(GOOD.delegation)),
    ),
    (
        "a checkpoint by another key",
        ACME.anchor,
        replace(GOOD, checkpoint=BRAVO.log.checkpoint(BRAVO.issuer)),
    ),
    (
        "an endorsement's text changed",
        ACME.anchor,
        replace(GOOD, endorsement=_flip_text(GOOD.endorsement)),
    ),
]


@pytest.mark.parametrize(
    ("anchor", "proof"), [f[1:] for f in FORGERIES], ids=[f[0] for f in FORGERIES]
)
def test_forgery_raises(anchor: Anchor, proof: EndorsementProof) -> None:
    with pytest.raises(ForgedStatementError):
        check_endorsement(
            anchor, proof, address=str(ALICE.address), revocations=FRESH, now=T0 + DAY
        )


def test_a_checkpoint_of_another_log_signed_by_the_right_key_is_refused() -> None:
    other = AgencyLog("acme/log/0000000000000000", [GOOD.endorsement])
    with pytest.raises(ForgedStatementError):
        open_checkpoint(ACME.anchor, ACME.issuer.public, other.checkpoint(ACME.issuer))


def test_ed25519_only_agency() -> None:
    plain = Agency.make("plain", mldsa=False)
    proof = plain.endorse(ALICE)
    verdict = check_endorsement(
        plain.anchor, proof, address=str(ALICE.address), revocations=None, now=T0
    )
    assert verdict.status is Status.UNVERIFIED_STALE
    assert Anchor.from_text(plain.anchor.to_text()) == plain.anchor


# -- revocation lists ----------------------------------------------------------------------

L5 = ACME.revocations(5, T0 + 100)
L5_OTHER = ACME.revocations(5, T0 + 101)
L6 = ACME.revocations(6, T0 + 200)
L4 = ACME.revocations(4, T0 + 50)


@pytest.mark.parametrize(
    ("held", "new", "outcome"),
    [
        (None, L4, L4),
        (L4, L5, L5),
        (L5, L5, L5),
        (L5, L6, L6),
        (L6, L4, RolledBackError),
        (L5, L5_OTHER, ConflictingStatementsError),
    ],
    ids=["first", "newer", "same", "newer again", "rolled back", "two lists of one serial"],
)
def test_accept_revocations(
    held: Signed[RevocationList] | None,
    new: Signed[RevocationList],
    outcome: Signed[RevocationList] | type[TrustError],
) -> None:
    if isinstance(outcome, type):
        with pytest.raises(outcome):
            accept_revocations(held, new)
    else:
        assert accept_revocations(held, new) is outcome


def test_a_list_of_another_agency_or_by_an_expired_key_is_refused() -> None:
    data = issue(BRAVO.issuer, RevocationList("bravo", 1, T0))
    with pytest.raises(ForgedStatementError):
        open_revocations(ACME.anchor, ACME.delegation, data, now=T0)
    with pytest.raises(StatementRefusedError) as caught:
        open_revocations(ACME.anchor, ACME.delegation, L5.data, now=T0 + 90 * DAY)
    assert caught.value.reason == "delegation-expired"


# -- the log: a split view among three holders ---------------------------------------------


def _verified(agency: Agency, log: AgencyLog) -> object:
    return open_checkpoint(agency.anchor, agency.issuer.public, log.checkpoint(agency.issuer))


def test_split_view_among_three_holders_is_caught_with_both_checkpoints() -> None:
    agency = Agency.make("split")
    prefix = [agency.endorse(Identity(_seed(f"split {i}"))).endorsement for i in range(3)]
    # A stolen issuing key shows branch A to two holders and branch B to the third.
    branch_a = AgencyLog(agency.anchor.log_origin, [agency.delegation, *prefix])
    branch_b = AgencyLog(agency.anchor.log_origin, [agency.delegation, *prefix])
    branch_a.append(b"an honest statement")
    branch_b.append(b"a rogue endpoint's endorsement")
    base = AgencyLog(agency.anchor.log_origin, [agency.delegation, *prefix])
    start = open_checkpoint(agency.anchor, agency.issuer.public, base.checkpoint(agency.issuer))
    cp_a = open_checkpoint(agency.anchor, agency.issuer.public, branch_a.checkpoint(agency.issuer))
    cp_b = open_checkpoint(agency.anchor, agency.issuer.public, branch_b.checkpoint(agency.issuer))

    holders = {}
    for name, checkpoint, log in (
        ("h1", cp_a, branch_a),
        ("h2", cp_a, branch_a),
        ("h3", cp_b, branch_b),
    ):
        held = meet_checkpoint(None, start, ())
        holders[name] = meet_checkpoint(held, checkpoint, log.consistency(start.checkpoint.size))
    assert holders["h1"] == holders["h2"] == cp_a
    assert holders["h3"] == cp_b
    # h1 and h2 agree; h3 meets h1 (gossip): same size, other root.
    assert meet_checkpoint(holders["h1"], holders["h2"], ()) == cp_a
    with pytest.raises(ConflictingStatementsError) as caught:
        meet_checkpoint(holders["h3"], holders["h1"], ())
    assert caught.value.what == "fork"
    # The alarm is proof: both are checkpoints the agency's key signed.
    for signed in (caught.value.first, caught.value.second):
        open_checkpoint(agency.anchor, agency.issuer.public, signed)
    assert {caught.value.first, caught.value.second} == {cp_a.data, cp_b.data}
    # And after branch A grows, its consistency proof cannot reach B's checkpoint.
    branch_a.append(b"more")
    grown = open_checkpoint(agency.anchor, agency.issuer.public, branch_a.checkpoint(agency.issuer))
    with pytest.raises(ConflictingStatementsError):
        meet_checkpoint(holders["h3"], grown, branch_a.consistency(cp_b.checkpoint.size))


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=2, max_size=6),
    tamper=st.integers(min_value=0, max_value=10_000),
)
def test_consistency_across_checkpoints(sizes: list[int], tamper: int) -> None:
    """Random appends: every checkpoint met in any order keeps the largest, and a
    log with one leaf changed is a fork at the first checkpoint that covers it."""
    signer = ACME.issuer
    total = sum(sizes)
    leaves = [f"statement {i}".encode() for i in range(total)]
    log = AgencyLog(ACME.anchor.log_origin, leaves)
    ends = [sum(sizes[: i + 1]) for i in range(len(sizes))]
    held = None
    for end in ends:
        signed = open_checkpoint(ACME.anchor, signer.public, log.checkpoint(signer, end))
        proof = log.consistency(held.checkpoint.size, end) if held else ()
        held = meet_checkpoint(held, signed, proof)
        # Meeting an older one again keeps the newer.
        first = open_checkpoint(ACME.anchor, signer.public, log.checkpoint(signer, ends[0]))
        assert meet_checkpoint(held, first, log.consistency(ends[0], end)) == held
    assert held is not None
    assert held.checkpoint.size == total
    changed = list(leaves)
    index = tamper % total
    changed[index] = b"rewritten"
    forked = AgencyLog(ACME.anchor.log_origin, changed)
    for end in ends:
        other = open_checkpoint(ACME.anchor, signer.public, forked.checkpoint(signer, end))
        proof = forked.consistency(end, total) if end < total else ()
        if end > index:
            with pytest.raises(ConflictingStatementsError):
                meet_checkpoint(held, other, proof)


# -- rotation ---------------------------------------------------------------------------------

NEW_ALICE = Identity(_seed("alice after the reinstall"))


def test_rotation_by_the_agency_and_the_old_key() -> None:
    old = check_endorsement(
        ACME.anchor, GOOD, address=str(ALICE.address), revocations=FRESH, now=T0 + DAY
    )
    assert old.endorsement is not None
    for also, expected in (
        ((), RotationProof.AGENCY),
        ((ALICE,), RotationProof.AGENCY_AND_OLD_KEY),
    ):
        proof = ACME.endorse(NEW_ALICE, replaces=str(ALICE.address), also=also)
        new = check_endorsement(
            ACME.anchor, proof, address=str(NEW_ALICE.address), revocations=FRESH, now=T0 + DAY
        )
        assert new.status is Status.ENDORSED
        rotation = check_rotation(old.endorsement, new, proof.endorsement)
        assert (rotation.old_address, rotation.new_address, rotation.proof) == (
            str(ALICE.address),
            str(NEW_ALICE.address),
            expected,
        )


def test_rotation_refusals() -> None:
    old = check_endorsement(
        ACME.anchor, GOOD, address=str(ALICE.address), revocations=FRESH, now=T0 + DAY
    )
    assert old.endorsement is not None
    elsewhere = ACME.endorse(NEW_ALICE, replaces=str(BOB.address))
    new = check_endorsement(
        ACME.anchor, elsewhere, address=str(NEW_ALICE.address), revocations=FRESH, now=T0
    )
    with pytest.raises(StatementRefusedError):
        check_rotation(old.endorsement, new, elsewhere.endorsement)
    # A line under the old address's name by another key: forged.
    forged = ACME.endorse(NEW_ALICE, replaces=str(ALICE.address))
    parsed = note.Note.parse(forged.endorsement)
    bad_line = note.NoteSignature(
        str(ALICE.address),
        note.key_id(str(ALICE.address), note.ED25519, ALICE.public_key),
        b"\x00" * 64,
    )
    data = parsed.with_signatures([bad_line]).to_bytes()
    new = check_endorsement(
        ACME.anchor, forged, address=str(NEW_ALICE.address), revocations=FRESH, now=T0
    )
    with pytest.raises(ForgedStatementError):
        check_rotation(old.endorsement, new, data)
    expired = check_endorsement(
        ACME.anchor, forged, address=str(NEW_ALICE.address), revocations=FRESH, now=T0 + 30 * DAY
    )
    with pytest.raises(StatementRefusedError):
        check_rotation(old.endorsement, expired, forged.endorsement)


# -- malformed input ----------------------------------------------------------------------------

GARBLED_ANCHORS = [
    "",
    "onionpost-anchor1:",
    "onionpost-anchor1:!!!!",
    ACME.anchor.to_text()[:-3],
    ACME.anchor.to_text() + "AA",
    ACME.anchor.to_text().replace("onionpost-anchor1:", "onionpost-anchor2:"),
    "onionpost-anchor1:" + "A" * 5000,
]


@pytest.mark.parametrize("text", GARBLED_ANCHORS)
def test_garbled_anchors(text: str) -> None:
    with pytest.raises(MalformedStatementError):
        Anchor.from_text(text)


def test_statement_bounds() -> None:
    with pytest.raises(MalformedStatementError):
        Endorsement(
            "acme",
            str(ALICE.address),
            ALICE.public_key,
            "x",
            "",
            T0,
            T0 + MAX_ENDORSEMENT_LIFETIME + 1,
        )
    with pytest.raises(MalformedStatementError):
        Endorsement("ACME", str(ALICE.address), ALICE.public_key, "x", "", T0, T0)
    with pytest.raises(MalformedStatementError):
        Endorsement("acme", "not an address", ALICE.public_key, "x", "", T0, T0)
    with pytest.raises(MalformedStatementError):
        Endorsement("acme", str(ALICE.address), ALICE.public_key, "", "", T0, T0)
    with pytest.raises(MalformedStatementError):
        RevocationList("acme", 1, T0, (Revoked("b", T0, ""), Revoked("a", T0, "")))
    with pytest.raises(MalformedStatementError):
        Delegation("acme", "A B", b"\x00" * 32, b"", T0, T0)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_into_the_decoders_give_only_malformed(data: bytes) -> None:
    with pytest.raises(TrustError):
        check_endorsement(ACME.anchor, data, address=str(ALICE.address), revocations=None, now=T0)
    with pytest.raises(TrustError):
        open_revocations(ACME.anchor, ACME.delegation, data, now=T0)


def test_a_statement_of_another_kind_is_malformed() -> None:
    # A revocation list where an endorsement is expected: signed by the right key, wrong kind.
    proof = replace(GOOD, endorsement=L5.data)
    with pytest.raises(MalformedStatementError):
        check_endorsement(ACME.anchor, proof, address=str(ALICE.address), revocations=None, now=T0)


def test_mldsa_verifier_keys_round_trip_and_differ_from_ed25519() -> None:
    ed, ml = ACME.anchor.root.verifiers()
    assert note.Verifier.from_text(ml.to_text()) == ml
    assert note.Verifier.from_text(ed.to_text()) == ed
    assert ml.key_id != ed.key_id
    with pytest.raises(ConfigError):
        note.Verifier("acme/root", note.MLDSA65, ACME.anchor.ed25519)


def test_a_statement_whose_body_line_is_not_ascii_is_malformed_not_a_crash() -> None:
    # Found by the trust fuzz target: base64 of a non-ASCII str raised a bare
    # ValueError out of the decoder.
    from onionpost.proto.trust import claimed_agency

    signed = note.sign("onionpost-trust/v1 delegation\nÿé€\n", "acme", Identity.generate())
    with pytest.raises(MalformedStatementError):
        claimed_agency(signed.to_bytes())
