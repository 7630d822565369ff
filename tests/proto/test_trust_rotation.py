"""The receiver's decision on a contact's TrustRotation (trust.md §6), as a
table on explicit times: accepted by the agency, and by the agency and the old
key; from a revoked address; every refusal raising, with its reason."""

from __future__ import annotations

import hashlib

import pytest

from onionpost.errors import (
    ForgedStatementError,
    LocalProtocolError,
    MalformedStatementError,
    MessageDecodeError,
    StatementRefusedError,
    TrustError,
)
from onionpost.limits import MAX_TRUST_STAPLE_PART
from onionpost.proto import messages, note, pack, trust
from onionpost.proto.identity import Identity
from onionpost.proto.trust import Revoked, RotationProof, Status
from onionpost.proto.trust_session import Held, Moved, meet_rotation
from onionpost.testing.agency import Agency

T0 = 1_800_000_000


def _identity(what: str) -> Identity:
    return Identity(hashlib.blake2b(f"onionpost rotation test {what}".encode()).digest()[:32])


OLD, NEW, OTHER_ONE = _identity("old"), _identity("new"), _identity("other")
ACME = Agency.make("acme", T0)
BRAVO = Agency.make("bravo", T0)
IMPOSTOR = Agency.make("acme", T0)  # the same name, another root
CURRENT = ACME.endorse(OLD, T0).encode()
LIST = ACME.revocations(1, T0)
REVOKING = ACME.revocations(2, T0 + 10, Revoked(str(OLD.address), T0 + 10, "seized"))
ANCHORS = {"acme": ACME.anchor, "bravo": BRAVO.anchor}


def _held(revocations: bytes = LIST) -> dict[bytes, Held]:
    return {ACME.anchor.fingerprint: Held(trust.stored_revocations(revocations), None)}


def _meet(proof: bytes, **kw: object) -> Moved:
    args: dict[str, object] = {
        "address": str(OLD.address),
        "current": CURRENT,
        "now": T0 + 60,
    }
    args.update(kw)
    held = args.pop("held", _held())
    return meet_rotation(ANCHORS, held, proof=proof, **args)  # type: ignore[arg-type]


def test_a_rotation_by_the_agency_and_the_old_key() -> None:
    proof = ACME.endorse(NEW, T0, replaces=str(OLD.address), also=[OLD]).encode()
    moved = _meet(proof)
    assert moved.rotation.old_address == str(OLD.address)
    assert moved.rotation.new_address == str(NEW.address)
    assert moved.rotation.proof is RotationProof.AGENCY_AND_OLD_KEY
    assert moved.verdict.status is Status.ENDORSED
    assert not moved.from_revoked
    assert moved.checkpoint is not None  # the log's checkpoint, held from now on
    assert moved.describe() == f"moved from {OLD.address} by agency acme and the old key"


def test_a_rotation_by_the_agency_alone_away_from_a_revoked_address() -> None:
    proof = ACME.endorse(NEW, T0, replaces=str(OLD.address)).encode()
    moved = _meet(proof, held=_held(REVOKING))
    assert moved.rotation.proof is RotationProof.AGENCY
    assert moved.from_revoked
    assert "(a revoked address) by agency acme" in moved.describe()


def test_a_rotation_with_no_list_held_is_unverified_but_carried_out() -> None:
    proof = ACME.endorse(NEW, T0, replaces=str(OLD.address)).encode()
    moved = _meet(proof, held={})
    assert moved.verdict.status is Status.UNVERIFIED_STALE


def _forged_old_key_line() -> bytes:
    """The agency's endorsement, with an old-key line made by another key."""
    good = ACME.endorse(NEW, T0, replaces=str(OLD.address)).encode()
    presented = trust.EndorsementProof.decode(good)
    parsed = note.Note.parse(presented.endorsement)
    line = note.sign(parsed.text, str(OLD.address), OTHER_ONE).signatures
    data = parsed.with_signatures(line).to_bytes()
    # Logged as it is (the agency logged those bytes), so only the old-key line is wrong.
    index = ACME.log.append(data)
    return trust.EndorsementProof(
        presented.delegation, data, ACME.checkpoint(), index, ACME.log.inclusion(index)
    ).encode()


REFUSALS: list[tuple[str, bytes, dict[str, object], type[TrustError], str]] = [
    (
        "no endorsement held of the contact",
        ACME.endorse(NEW, T0, replaces=str(OLD.address)).encode(),
        {"current": None},
        StatementRefusedError,
        "no-endorsement",
    ),
    (
        "another agency endorses the new address",
        BRAVO.endorse(NEW, T0, replaces=str(OLD.address)).encode(),
        {},
        StatementRefusedError,
        "wrong-agency",
    ),
    (
        "an agency of the same name under another root",
        IMPOSTOR.endorse(NEW, T0, replaces=str(OLD.address)).encode(),
        {},
        ForgedStatementError,
        "",
    ),
    (
        "replaces names another address",
        ACME.endorse(NEW, T0, replaces=str(OTHER_ONE.address)).encode(),
        {},
        StatementRefusedError,
        "wrong-address",
    ),
    (
        "no replaces at all",
        ACME.endorse(NEW, T0).encode(),
        {},
        StatementRefusedError,
        "wrong-address",
    ),
    (
        "the new address is another peer's",
        ACME.endorse(NEW, T0, replaces=str(OLD.address)).encode(),
        {"taken": frozenset({str(NEW.address)})},
        StatementRefusedError,
        "wrong-address",
    ),
    (
        "the contact's endorsement is of another address",
        ACME.endorse(NEW, T0, replaces=str(OLD.address)).encode(),
        {"address": str(OTHER_ONE.address)},
        StatementRefusedError,
        "wrong-address",
    ),
    (
        "the new endorsement has expired",
        ACME.endorse(NEW, T0, replaces=str(OLD.address), days=1).encode(),
        {"now": T0 + 3 * 86_400},
        StatementRefusedError,
        "refused",
    ),
    (
        "the new address is revoked",
        ACME.endorse(NEW, T0, replaces=str(OLD.address)).encode(),
        {"held": _held(ACME.revocations(3, T0 + 20, Revoked(str(NEW.address), T0 + 20, "seized")))},
        StatementRefusedError,
        "refused",
    ),
    (
        "the old key's line does not verify",
        _forged_old_key_line(),
        {},
        ForgedStatementError,
        "",
    ),
    ("not a proof", b"\x93garbage", {}, MalformedStatementError, ""),
]


@pytest.mark.parametrize(
    ("name", "proof", "kw", "error", "reason"), REFUSALS, ids=[r[0] for r in REFUSALS]
)
def test_refusals(
    name: str, proof: bytes, kw: dict[str, object], error: type[TrustError], reason: str
) -> None:
    with pytest.raises(error) as caught:
        _meet(proof, **kw)
    if reason:
        assert isinstance(caught.value, StatementRefusedError)
        assert caught.value.reason == reason


def test_the_record_round_trips_and_is_bounded() -> None:
    proof = ACME.endorse(NEW, T0, replaces=str(OLD.address)).encode()
    record = messages.TrustRotation(proof, bytes(32))
    assert messages.decode(messages.encode(record)) == record
    assert messages.encode(record)[:2] == b"\x93\x52"  # [82, proof, key]
    for fields in (
        (b"", bytes(32)),
        (bytes(MAX_TRUST_STAPLE_PART + 1), bytes(32)),
        (proof, bytes(31)),
    ):
        with pytest.raises(LocalProtocolError):
            messages.encode(messages.TrustRotation(*fields))
        with pytest.raises(MessageDecodeError):
            messages.decode(pack([82, *fields]))
