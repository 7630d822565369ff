"""Replay protocol-spec/vectors/trust-v1.json through onionpost, and recompute it
without onionpost: msgpack, hashlib and cryptography only."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import msgpack
from cryptography.hazmat.primitives.asymmetric import mldsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from onionpost.proto import messages, note
from onionpost.proto.trust import (
    Anchor,
    EndorsementProof,
    Reason,
    Status,
    check_endorsement,
    open_revocations,
    stored_revocations,
)
from onionpost.proto.trust_session import Held, RevocationBundle, meet_rotation
from tools.trust_vectors import TRUST_FILE, build_trust

FILE = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors" / TRUST_FILE
DOCUMENT = json.loads(FILE.read_text())
(VECTOR,) = DOCUMENT["vectors"]
# When both lists have been issued (T0 + 2 days): a list issued later than
# now is refused (trust.md §4).
_LISTS_ISSUED = 1_800_000_000 + 2 * 86_400


def test_the_code_generates_the_vectors_byte_for_byte() -> None:
    assert build_trust(DOCUMENT) == DOCUMENT


def test_the_verdicts_replay() -> None:
    anchor = Anchor.from_text(VECTOR["anchor"]["text"])
    delegation = VECTOR["delegation"].encode()
    lists = {
        name: open_revocations(
            anchor, delegation, VECTOR["statements"][name].encode(), now=_LISTS_ISSUED
        ).value
        for name in ("revocations_1", "revocations_2")
    }
    seen = set()
    for case in VECTOR["cases"]:
        verdict = check_endorsement(
            anchor,
            bytes.fromhex(case["proof"]),
            address=case["address"],
            revocations=lists[case["revocations"]],
            now=case["now"],
        )
        assert verdict.status is Status(case["status"])
        assert verdict.reason == (Reason(case["reason"]) if case["reason"] else None)
        seen.add(case["status"])
    assert seen == {"endorsed", "unverified-stale", "refused"}


def _key_id(name: str, kind: bytes, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + kind + public).digest()[:4]


def _check_hybrid(note_text: str, name: str, ed_seed: str, ml_seed: str) -> None:
    """Both lines of a hybrid signature, with cryptography alone."""
    text, _, block = note_text.rpartition("\n\n")
    text += "\n"
    lines = [line for line in block.splitlines() if line.startswith(f"\u2014 {name} ")]
    ed_private = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(ed_seed))
    ed_public = ed_private.public_key().public_bytes_raw()
    ml_public = mldsa.MLDSA65PrivateKey.from_seed_bytes(bytes.fromhex(ml_seed)).public_key()
    ml_raw = ml_public.public_bytes_raw()
    raws = [base64.b64decode(line.split(" ")[2]) for line in lines]
    assert len(raws) == 2
    ed_line = next(r for r in raws if r[:4] == _key_id(name, b"\x01", ed_public))
    ml_line = next(r for r in raws if r[:4] == _key_id(name, b"\xffonionpost/ml-dsa-65", ml_raw))
    # Ed25519 is deterministic: the signature is recomputed, not only checked.
    assert ed_private.sign(text.encode()) == ed_line[4:]
    ml_public.verify(ml_line[4:], text.encode(), b"onionpost signed note")


def test_signatures_recomputed_independently() -> None:
    anchor, issuer = VECTOR["anchor"], VECTOR["issuer"]
    root_args = ("acme/root", anchor["root_ed25519_seed"], anchor["root_mldsa65_seed"])
    _check_hybrid(VECTOR["delegation"], *root_args)
    issuer_args = ("acme/issuing/a", issuer["ed25519_seed"], issuer["mldsa65_seed"])
    for data in [*VECTOR["statements"].values(), *VECTOR["checkpoints"].values()]:
        _check_hybrid(data, *issuer_args)
    # The rotation is also signed by the old address's key, as an evidence checkpoint is.
    rotated = note.Note.parse(VECTOR["statements"]["alice_rotated"])
    assert len(rotated.signatures) == 3


def test_bodies_and_anchor_recomputed_independently() -> None:
    anchor = VECTOR["anchor"]
    encoded = bytes.fromhex(anchor["encoded"])
    version, agency, ed, ml = msgpack.unpackb(encoded, raw=False)
    assert (version, agency, len(ed), len(ml)) == (1, "acme", 32, 1952)
    context = b"onionpost anchor fingerprint\x00"
    assert hashlib.sha256(context + encoded).hexdigest() == anchor["fingerprint"]
    assert anchor["log_origin"] == f"acme/log/{anchor['fingerprint'][:16]}"
    digest = hashlib.blake2b(b"onionpost anchor safety number\x00" + encoded).digest()
    groups = [f"{int.from_bytes(digest[5 * i : 5 * i + 5], 'big') % 100000:05d}" for i in range(12)]
    assert " ".join(groups) == anchor["safety_number"]
    expected_arity = {"alice": 9, "bob": 9, "alice_rotated": 9, "revocations_1": 5}
    for name, arity in expected_arity.items():
        header, body = VECTOR["statements"][name].split("\n")[:2]
        assert header.startswith("onionpost-trust/v1 ")
        raw = base64.b64decode(body)
        fields = msgpack.unpackb(raw, raw=False)
        assert len(fields) == arity
        assert msgpack.packb(fields, use_bin_type=True) == raw  # canonical


def test_leaves_and_root_recomputed_independently() -> None:
    notes = [VECTOR["delegation"], *VECTOR["statements"].values()]
    leaves = [hashlib.sha256(b"\x00" + n.encode()).digest() for n in notes]
    assert [leaf.hex() for leaf in leaves] == VECTOR["leaves"]

    def node(left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + left + right).digest()

    assert len(leaves) == 6  # RFC 9162: split 4 + 2
    root = node(
        node(node(leaves[0], leaves[1]), node(leaves[2], leaves[3])), node(leaves[4], leaves[5])
    )
    checkpoint = note.Checkpoint.from_text(VECTOR["checkpoints"]["6"].rpartition("\n\n")[0] + "\n")
    assert checkpoint.root == root
    assert checkpoint.origin == VECTOR["anchor"]["log_origin"]


def test_proofs_in_the_cases_decode() -> None:
    for case in VECTOR["cases"]:
        proof = EndorsementProof.decode(bytes.fromhex(case["proof"]))
        assert proof.delegation.decode() == VECTOR["delegation"]


def test_the_staple_and_the_bundle_replay_and_recompute() -> None:
    """The TrustStaple record alice sends, the TrustGossip record of acme and
    the bundle of revocations_2, read by onionpost and rebuilt with msgpack
    alone (trust.md §§7.1-7.3)."""
    record = bytes.fromhex(VECTOR["trust_staple_record"])
    staple = messages.decode(record)
    assert isinstance(staple, messages.TrustStaple)
    revocations = VECTOR["statements"]["revocations_2"].encode()
    checkpoint = VECTOR["checkpoints"]["6"].encode()
    assert (staple.revocations, staple.checkpoint) == (revocations, checkpoint)
    assert (
        EndorsementProof.decode(staple.proof).endorsement.decode() == VECTOR["statements"]["alice"]
    )
    assert msgpack.packb([80, staple.proof, revocations, checkpoint], use_bin_type=True) == record
    bundle = bytes.fromhex(VECTOR["revocation_bundle"])
    delegation = VECTOR["delegation"].encode()
    assert msgpack.packb([1, delegation, revocations, checkpoint], use_bin_type=True) == bundle
    gossip = bytes.fromhex(VECTOR["trust_gossip_record"])
    assert msgpack.packb([81, delegation, revocations, checkpoint], use_bin_type=True) == gossip
    assert messages.decode(gossip) == messages.TrustGossip(delegation, revocations, checkpoint)
    opened = RevocationBundle.decode(bundle)
    anchor = Anchor.from_text(VECTOR["anchor"]["text"])
    listed = open_revocations(anchor, opened.delegation, opened.revocations, now=_LISTS_ISSUED)
    assert listed.value.serial == 2


def test_the_rotation_replays_and_recomputes() -> None:
    """The TrustRotation alice sends under her old address (trust.md §6): rebuilt
    with msgpack alone, its old-key line recomputed with ``cryptography`` from
    the old address's key, and bob's decision on it replayed."""
    record = bytes.fromhex(VECTOR["trust_rotation_record"])
    rotation = messages.decode(record)
    assert isinstance(rotation, messages.TrustRotation)
    assert msgpack.packb([82, rotation.proof, rotation.client_auth_public], use_bin_type=True) == (
        record
    )
    case = VECTOR["rotation"]
    presented = EndorsementProof.decode(rotation.proof)
    assert presented.endorsement.decode() == VECTOR["statements"]["alice_rotated"]
    text, _, lines = presented.endorsement.decode().partition("\n\n")
    fields = msgpack.unpackb(base64.b64decode(text.split("\n")[1]), raw=False)
    assert (fields[2], fields[8]) == (case["new_address"], case["address"])
    # The old key's line: "— <old address> base64(key id || Ed25519 signature)"
    # (signed-note), the key the old address encodes (rend-spec-v3 §6).
    old = case["address"]
    old_key = base64.b32decode(old.removesuffix(".onion").upper())[:32]
    key_id = hashlib.sha256(old.encode() + b"\n\x01" + old_key).digest()[:4]
    raw = next(
        base64.b64decode(line.rsplit(" ", 1)[1])
        for line in lines.splitlines()
        if line.startswith(f"\u2014 {old} ")
    )
    assert raw[:4] == key_id
    Ed25519PublicKey.from_public_bytes(old_key).verify(raw[4:], (text + "\n").encode())

    anchor = Anchor.from_text(VECTOR["anchor"]["text"])
    held = {
        anchor.fingerprint: Held(
            stored_revocations(VECTOR["statements"][case["revocations"]].encode()), None
        )
    }
    moved = meet_rotation(
        {"acme": anchor},
        held,
        address=old,
        current=bytes.fromhex(case["current"]),
        proof=rotation.proof,
        now=case["now"],
    )
    assert (moved.rotation.new_address, moved.rotation.proof.value) == (
        case["new_address"],
        case["proof"],
    )
    assert (moved.verdict.status.value, moved.describe()) == (case["status"], case["describe"])
