"""An agency in memory for tests and benchmarks: a root, one issuing key, its
log and its anchor (``protocol-spec/trust.md``), issuing endorsement proofs
and revocation lists at the times it is given."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from onionpost.proto.identity import Identity
from onionpost.proto.trust import (
    AgencyLog,
    Anchor,
    Delegation,
    Endorsement,
    EndorsementProof,
    HybridSigner,
    RevocationList,
    Revoked,
    issue,
)

__all__ = ["Agency"]

_DAY = 86_400


@dataclass
class Agency:
    """An agency whose issuing key is delegated from ``now`` for 60 days."""

    name: str
    root: HybridSigner
    issuer: HybridSigner
    anchor: Anchor
    delegation: bytes
    log: AgencyLog

    @classmethod
    def make(cls, name: str, now: int, *, mldsa: bool = False) -> Agency:
        root = HybridSigner.generate(f"{name}/root", mldsa=mldsa)
        issuer = HybridSigner.generate(f"{name}/issuing/a", mldsa=mldsa)
        anchor = Anchor(name, root.public.ed25519, root.public.mldsa65)
        pub = issuer.public
        delegation = issue(
            root, Delegation(name, "a", pub.ed25519, pub.mldsa65, now - 60, now + 60 * _DAY)
        )
        return cls(
            name, root, issuer, anchor, delegation, AgencyLog(anchor.log_origin, [delegation])
        )

    def endorse(
        self,
        who: Identity,
        now: int,
        *,
        endpoint: str = "Field office 3",
        unit: str = "Unit U",
        days: int = 7,
        replaces: str = "",
        also: Sequence[Identity] = (),
    ) -> EndorsementProof:
        """Endorse ``who`` from ``now``, log it and prove its inclusion;
        ``replaces``: the address it rotates away from, whose key may sign
        too (``also``, trust.md §6)."""
        statement = Endorsement(
            self.name,
            str(who.address),
            who.public_key,
            endpoint,
            unit,
            now - 60,
            now + days * _DAY,
            replaces,
        )
        data = issue(self.issuer, statement, also=also)
        index = self.log.append(data)
        return EndorsementProof(
            self.delegation,
            data,
            self.checkpoint(),
            index,
            self.log.inclusion(index),
        )

    def checkpoint(self) -> bytes:
        return self.log.checkpoint(self.issuer)

    def revocations(self, serial: int, issued_at: int, *revoked: Revoked) -> bytes:
        """A signed list (logged), as the registrar or ``trust revoke`` issues it."""
        data = issue(self.issuer, RevocationList(self.name, serial, issued_at, tuple(revoked)))
        self.log.append(data)
        return data
