"""Agency trust: checking an endorsement against the Noise handshake it rides on.

- ``endorsement_check_ms``: :func:`onionpost.proto.trust.check_endorsement` on a
  presented proof (decode, the delegation's, the endorsement's and the
  checkpoint's hybrid Ed25519 + ML-DSA-65 signatures, the inclusion proof in a
  log of 1,000 statements, the revocation list), per check; the peer is one
  whole hybrid handshake (``Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b``,
  both sides in this process), measured interleaved in the same run. The
  goal (trust.md §9: under 1 ms) is that a session's trust check costs
  no more than its handshake.
- ``endorsement_check_ed25519_only_ms``: the same for an agency without ML-DSA keys.
- ``endorsement_check_cached_ms``: the same check with the holder's
  :class:`~onionpost.proto.trust.VerifiedCache` holding the statements from
  an earlier session with the contact (what every session after the first
  costs: decode, the validity times, the inclusion proof, the list), hybrid keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from bench._common import compare, line, rate, scaled
from onionpost.proto.identity import Identity
from onionpost.proto.noise import HandshakeState, KeyPair, NoiseProtocol
from onionpost.proto.trust import (
    AgencyLog,
    Anchor,
    Delegation,
    Endorsement,
    EndorsementProof,
    HybridSigner,
    RevocationList,
    Status,
    VerifiedCache,
    check_endorsement,
    issue,
)

XX_HFS = "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b"
_T0 = 1_800_000_000
_LOG_SIZE = scaled(1000)


def _seed(what: str) -> bytes:
    return hashlib.blake2b(f"onionpost trust bench {what}".encode()).digest()[:32]


def _world(*, mldsa: bool) -> tuple[Anchor, EndorsementProof, str, RevocationList]:
    root = HybridSigner("acme/root", _seed("root"), _seed("root ml") if mldsa else None)
    issuer = HybridSigner("acme/issuing/a", _seed("iss"), _seed("iss ml") if mldsa else None)
    anchor = Anchor("acme", root.public.ed25519, root.public.mldsa65)
    pub = issuer.public
    delegation = issue(root, Delegation("acme", "a", pub.ed25519, pub.mldsa65, _T0, _T0 + 86400))
    endpoint = Identity(_seed("endpoint"))
    statement = Endorsement(
        "acme", str(endpoint.address), endpoint.public_key, "Field office 3", "U", _T0, _T0 + 86400
    )
    data = issue(issuer, statement)
    log = AgencyLog(anchor.log_origin, [delegation])
    for i in range(_LOG_SIZE // 2):
        log.append(f"statement {i}".encode())
    index = log.append(data)
    while log.size < _LOG_SIZE:
        log.append(f"statement {log.size}".encode())
    proof = EndorsementProof(delegation, data, log.checkpoint(issuer), index, log.inclusion(index))
    return anchor, proof, str(endpoint.address), RevocationList("acme", 1, _T0)


def _handshake(protocol: NoiseProtocol, a: KeyPair, b: KeyPair) -> None:
    i = HandshakeState(protocol, initiator=True, static=a)
    r = HandshakeState(protocol, initiator=False, static=b)
    r.read_message(i.write_message())
    i.read_message(r.write_message())
    r.read_message(i.write_message())


def run() -> Iterator[str]:
    hfs = NoiseProtocol.from_name(XX_HFS)
    a, b = KeyPair.generate(), KeyPair.generate()
    for name, mldsa, cached in (
        ("endorsement_check_ms", True, False),
        ("endorsement_check_ed25519_only_ms", False, False),
        ("endorsement_check_cached_ms", True, True),
    ):
        anchor, proof, address, revocations = _world(mldsa=mldsa)
        data = proof.encode()
        cache = VerifiedCache() if cached else None

        def check(
            anchor: Anchor = anchor,
            data: bytes = data,
            address: str = address,
            revocations: RevocationList = revocations,
            cache: VerifiedCache | None = cache,
        ) -> None:
            verdict = check_endorsement(
                anchor, data, address=address, revocations=revocations, now=_T0 + 60, cache=cache
            )
            assert verdict.status is Status.ENDORSED

        ours, peer = compare(
            lambda check=check: 1000 / rate(check, 100),
            lambda: 1000 / rate(lambda: _handshake(hfs, a, b), 100),
        )
        yield line(name, ours, peer, "ms", digits=3)
