"""What the in-memory trust tests (``test_trust_sessions``,
``test_trust_gossip_sessions``, ``test_rotation``) set up and read back
alike: an agency's anchor held, an endpoint endorsed by it, a list held or
imported, and the verdict or refusal a node holds of a contact
(``protocol-spec/trust.md`` §7).

Times are the wall clock's (what the agencies of ``onionpost.testing.agency``
sign with); the sessions themselves run on trio's MockClock."""

from __future__ import annotations

import base64
import time

from onionpost import api
from onionpost.daemon.delivery import install_own
from onionpost.proto.trust import Revoked
from onionpost.testing.agency import Agency
from onionpost.testing.memory import Node


def now() -> int:
    """POSIX seconds, as the agencies sign them."""
    return int(time.time())


def hold_anchor(agency: Agency, *nodes: Node) -> None:
    """Each node holds ``agency``'s anchor (what ``trust add`` leaves)."""
    for node in nodes:
        node.store.trust.add(agency.anchor, now() * 1000)


def endorse(node: Node, agency: Agency, *, unit: str = "Unit U") -> None:
    """``node`` installs its own endorsement by ``agency`` (``trust
    endorsement install``); it holds the anchor already."""
    proof = agency.endorse(node.secrets.identity, now(), unit=unit).encode()
    install_own(node.store, str(node.address), proof, now() * 1000)


def endorsed_by(node: Node, agency: Agency, *, unit: str = "Unit U") -> None:
    """``node`` is an endpoint of ``agency``: it holds the anchor and its own
    endorsement."""
    hold_anchor(agency, node)
    endorse(node, agency, unit=unit)


def hold_list(node: Node, agency: Agency, serial: int = 1, *revoked: Revoked) -> None:
    """``node`` holds ``agency``'s list ``serial``, issued now (no checkpoint)."""
    node.store.trust.hold(
        agency.anchor.fingerprint, agency.revocations(serial, now(), *revoked), None
    )


async def import_bundle(node: Node, bundle: bytes) -> api.RevocationsImported:
    """``trust revocations import`` of a revocation bundle, through the daemon."""
    assert node.daemon is not None
    return await node.daemon.trust.trust_revocations_import(
        api.TrustRevocationsImport(base64.b64encode(bundle).decode())
    )


def verdict(holder: Node, other: Node) -> tuple[str, str] | None:
    """``holder``'s verdict on contact ``other``'s endorsement: (status, describe)."""
    found = holder.store.trust.endorsements().get(holder.contact(other).id)
    return None if found is None else (found.status, found.describe)


def refused(node: Node, other: Node) -> str:
    """Why ``node`` refuses contact ``other`` (its engine's status); "" if not."""
    assert node.engine is not None
    status = node.engine.status(node.contact(other).id)
    return "" if status is None else status.refused
