"""Test vectors of agency trust (protocol-spec/trust.md): an anchor, a
delegation, endorsements (one a rotation), revocation lists, the agency log's
checkpoints and proofs, and the verdicts expected at chosen times."""

from __future__ import annotations

import hashlib
from typing import Any, Final

from onionpost.proto import merkle, messages, note
from onionpost.proto.identity import Identity
from onionpost.proto.noise import KeyPair
from onionpost.proto.trust import (
    AgencyLog,
    Anchor,
    Delegation,
    Endorsement,
    EndorsementProof,
    HybridSigner,
    RevocationList,
    Revoked,
    check_endorsement,
    issue,
    open_revocations,
    stored_revocations,
)
from onionpost.proto.trust_session import Held, RevocationBundle, meet_rotation

__all__ = ["TRUST_FILE", "build_trust"]

TRUST_FILE: Final = "trust-v1.json"
_PROVENANCE: Final = (
    "Produced by `python -m tools.vectorgen protocol-spec/vectors` (`make vectors`) with "
    "onionpost.proto.trust, .note and .merkle (protocol-spec/trust.md). Seeds are BLAKE2b-512 of "
    "`onionpost trust vector <what>` (first 32 bytes). ML-DSA-65 signing is randomised (FIPS 204 "
    "hedged), so each note's ML-DSA line is recorded from the first generation and reused after "
    "checking that it verifies. Checked by tests/proto/test_trust_vectors.py, which replays the "
    "verdicts through onionpost and recomputes independently: the bodies with `msgpack`, the "
    "Ed25519 and ML-DSA-65 signatures with `cryptography`, leaf hashes and roots with `hashlib`."
)
_T0: Final = 1_800_000_000
_DAY: Final = 86_400


def _derive(what: str) -> bytes:
    return hashlib.blake2b(f"onionpost trust vector {what}".encode()).digest()[:32]


class _RecordedSigner(HybridSigner):
    """A hybrid signer that reuses the ML-DSA line recorded for the same text."""

    __slots__ = ("_recorded",)

    def __init__(self, name: str, recorded: dict[str, note.Note]) -> None:
        super().__init__(name, _derive(f"{name} ed25519"), _derive(f"{name} ml-dsa-65"))
        self._recorded = recorded

    def sign(self, text: str) -> note.Note:
        fresh = super().sign(text)
        previous = self._recorded.get(text)
        if previous is None:
            return fresh
        mldsa = self.public.verifiers()[1]
        line = next((s for s in previous.signatures if s.key_id == mldsa.key_id), None)
        if line is None:
            return fresh
        note.open_note(note.Note(text, (line,)), [mldsa])  # raises if it does not verify
        return note.Note(text, (fresh.signatures[0], line))


def _recorded_notes(previous: dict[str, Any] | None) -> dict[str, note.Note]:
    found: dict[str, note.Note] = {}
    if previous is None:
        return found

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)
        elif isinstance(value, str) and "\n\n" in value:
            parsed = note.Note.parse(value)
            found[parsed.text] = parsed

    walk(previous)
    return found


def build_trust(previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document; ``previous`` supplies the recorded ML-DSA lines."""
    recorded = _recorded_notes(previous)
    root = _RecordedSigner("acme/root", recorded)
    issuer = _RecordedSigner("acme/issuing/a", recorded)
    anchor = Anchor("acme", root.public.ed25519, root.public.mldsa65)
    pub = issuer.public
    delegation = issue(
        root, Delegation("acme", "a", pub.ed25519, pub.mldsa65, _T0, _T0 + 60 * _DAY)
    )
    alice = Identity(_derive("alice"))
    bob = Identity(_derive("bob"))
    alice_new = Identity(_derive("alice after the reinstall"))

    def endorsement(who: Identity, replaces: str = "", also: tuple[Identity, ...] = ()) -> bytes:
        statement = Endorsement(
            "acme",
            str(who.address),
            who.public_key,
            "Field office 3",
            "Unit U",
            _T0,
            _T0 + 7 * _DAY,
            replaces,
        )
        return issue(issuer, statement, also=also)

    log = AgencyLog(anchor.log_origin, [delegation])
    statements = {
        "alice": endorsement(alice),
        "bob": endorsement(bob),
        "revocations_1": issue(issuer, RevocationList("acme", 1, _T0 + _DAY)),
        "revocations_2": issue(
            issuer,
            RevocationList(
                "acme", 2, _T0 + 2 * _DAY, (Revoked(str(bob.address), _T0 + 2 * _DAY, "seized"),)
            ),
        ),
        "alice_rotated": endorsement(alice_new, str(alice.address), (alice,)),
    }
    indices = {name: log.append(data) for name, data in statements.items()}
    checkpoints = {size: log.checkpoint(issuer, size) for size in (3, log.size)}
    lists = {
        name: open_revocations(anchor, delegation, statements[name], now=_T0 + 2 * _DAY).value
        for name in ("revocations_1", "revocations_2")
    }

    def proof(name: str) -> EndorsementProof:
        index = indices[name]
        return EndorsementProof(
            delegation, statements[name], checkpoints[log.size], index, log.inclusion(index)
        )

    cases = []
    for name, who, now, held in (
        ("alice", alice, _T0 + _DAY + 60, "revocations_1"),
        ("alice", alice, _T0 + 3 * _DAY, "revocations_1"),
        ("alice", alice, _T0 + 8 * _DAY, "revocations_2"),
        ("bob", bob, _T0 + 2 * _DAY + 60, "revocations_2"),
        ("bob", bob, _T0 + _DAY + 60, "revocations_1"),
        ("alice_rotated", alice_new, _T0 + 2 * _DAY + 60, "revocations_2"),
        ("alice", bob, _T0 + _DAY, "revocations_1"),
    ):
        presented = proof(name)
        verdict = check_endorsement(
            anchor, presented, address=str(who.address), revocations=lists[held], now=now
        )
        cases.append(
            {
                "endorsement": name,
                "address": str(who.address),
                "now": now,
                "revocations": held,
                "proof": presented.encode().hex(),
                "status": verdict.status.value,
                "reason": verdict.reason.value if verdict.reason else None,
            }
        )
    # trust.md §6: alice announces her move; bob, who holds her endorsement,
    # decides on it (meet_rotation) with revocations_1 held.
    alice_new_client_auth = KeyPair.from_private(_derive("alice after the reinstall client-auth"))
    rotation_now = _T0 + _DAY + 60
    moved = meet_rotation(
        {"acme": anchor},
        {anchor.fingerprint: Held(stored_revocations(statements["revocations_1"]), None)},
        address=str(alice.address),
        current=proof("alice").encode(),
        proof=proof("alice_rotated").encode(),
        now=rotation_now,
    )
    return {
        "provenance": _PROVENANCE,
        "vectors": [
            {
                "anchor": {
                    "agency": "acme",
                    "root_ed25519_seed": root.seeds[0].hex(),
                    "root_mldsa65_seed": (root.seeds[1] or b"").hex(),
                    "text": anchor.to_text(),
                    "encoded": anchor.encode().hex(),
                    "fingerprint": anchor.fingerprint.hex(),
                    "safety_number": anchor.safety_number,
                    "log_origin": anchor.log_origin,
                    "root_verifiers": [v.to_text() for v in anchor.root.verifiers()],
                },
                "issuer": {
                    "ed25519_seed": issuer.seeds[0].hex(),
                    "mldsa65_seed": (issuer.seeds[1] or b"").hex(),
                    "verifiers": [v.to_text() for v in pub.verifiers()],
                },
                "delegation": delegation.decode(),
                "statements": {name: data.decode() for name, data in statements.items()},
                "leaves": [
                    merkle.leaf_hash(data).hex() for data in (delegation, *statements.values())
                ],
                "checkpoints": {str(size): data.decode() for size, data in checkpoints.items()},
                "consistency_3": [h.hex() for h in log.consistency(3)],
                "cases": cases,
                # trust.md §7.1 and §7.3: what alice staples to a session, and
                # the bundle `trust revoke` writes of revocations_2.
                "trust_staple_record": messages.encode(
                    messages.TrustStaple(
                        proof("alice").encode(),
                        statements["revocations_2"],
                        checkpoints[log.size],
                    )
                ).hex(),
                # trust.md §7.2: what an endpoint of another agency passes
                # on of acme once it holds revocations_2.
                "trust_gossip_record": messages.encode(
                    messages.TrustGossip(
                        delegation, statements["revocations_2"], checkpoints[log.size]
                    )
                ).hex(),
                # trust.md §6: the TrustRotation alice sends under her old
                # address, and bob's decision on it.
                "trust_rotation_record": messages.encode(
                    messages.TrustRotation(
                        proof("alice_rotated").encode(), alice_new_client_auth.public
                    )
                ).hex(),
                "rotation": {
                    "address": str(alice.address),
                    "current": proof("alice").encode().hex(),
                    "now": rotation_now,
                    "revocations": "revocations_1",
                    "new_address": moved.rotation.new_address,
                    "proof": moved.rotation.proof.value,
                    "status": moved.verdict.status.value,
                    "describe": moved.describe(),
                },
                "revocation_bundle": RevocationBundle(
                    delegation, statements["revocations_2"], checkpoints[log.size]
                )
                .encode()
                .hex(),
            }
        ],
    }
