"""Agency trust on the private Tor network: how fast a revocation cuts an
endpoint off in another agency (``protocol-spec/trust.md`` §7.2).

``revocation_to_refusal_s``
    Agencies A (endpoints a1, a2) and B (b1), made offline, every endpoint
    endorsed and everyone the others' contact (:mod:`onionpost.testing.trustnet`).
    A revokes a1; the list is imported at a2 alone; ours is the seconds from
    that ``trust revocations import`` command to b1's ``status`` showing a1
    refused (b1 learns the list only from a2's staple). The peer is the
    seconds from a2's ``send`` of a plain text to b1 to that text delivered
    (acknowledged by b1): the same path, measured in the same run. Both start
    with no session up between a2 and b1 (each waits until the last one closed
    idle), so both pay for a dial over Tor. Goal: <= 60 s (with a 1-minute
    refresh interval). One revocation per run (a revoked address stays
    revoked); the peer is the median of ``PEER_ROUNDS`` texts.

Everything runs on 127.0.0.1; every wait has a deadline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Final

from onionpost.testing.endpoint import Endpoint
from onionpost.testing.testnet import private_network
from onionpost.testing.trustnet import Scene, delivered, endorsement, refusal, wait

PEER_ROUNDS: Final = 3
# A session closes after 30 s idle (DeliveryPolicy.idle_close); a margin for tor.
IDLE_SECONDS: Final = 120.0
STEP_SECONDS: Final = 120.0


def _session_up(endpoint: Endpoint, name: str) -> bool:
    contacts = endpoint.json("status")["contacts"]
    return any(c["name"] == name and c["reachable"] for c in contacts)


def _quiet(scene: Scene) -> None:
    """Until neither a2 nor b1 has a session with the other."""
    wait(
        lambda: not _session_up(scene.a2, "b1") and not _session_up(scene.b1, "a2"),
        "the a2-b1 session to close idle",
        IDLE_SECONDS,
    )


def _text_a2_to_b1(scene: Scene, n: int) -> float:
    _quiet(scene)
    started = time.monotonic()
    sent = scene.a2.json("send", "b1", f"peer {n}")["id"]
    wait(lambda: delivered(scene.a2, sent), "a text from a2 to b1", STEP_SECONDS)
    return time.monotonic() - started


def _revocation(scene: Scene) -> float:
    revoked = scene.revoke(scene.a1)
    _quiet(scene)
    started = time.monotonic()
    scene.a2.cli("trust", "revocations", "import", str(revoked))
    wait(lambda: bool(refusal(scene.b1, "a1")), "b1 refusing a1", STEP_SECONDS)
    return time.monotonic() - started


def _introduce(scene: Scene) -> None:
    """Everyone endorsed, a contact of the others, and judged endorsed by b1."""
    for endpoint in scene.endpoints:
        scene.endorse(endpoint)
    scene.all_contacts()
    sent = [
        (scene.a1, scene.a1.json("send", "b1", "hello")["id"]),
        (scene.a2, scene.a2.json("send", "b1", "hello")["id"]),
    ]
    wait(lambda: all(delivered(e, i) for e, i in sent), "the first texts", STEP_SECONDS)
    wait(
        lambda: all(endorsement(scene.b1, n)[0] == "endorsed" for n in ("a1", "a2")),
        "b1 judging a1 and a2 endorsed",
        STEP_SECONDS,
    )


def run() -> Iterator[str]:
    with private_network("onionpost-bench-revocation-") as (root, net, _):
        scene = Scene.make(root, net)
        try:
            scene.start()
            _introduce(scene)
            peers = [_text_a2_to_b1(scene, n) for n in range(PEER_ROUNDS)]
            ours = _revocation(scene)
        finally:
            scene.stop()
    peer = statistics.median(peers)
    yield (
        f"revocation_to_refusal_s: ours={ours:.1f}s peer={peer:.1f}s ratio={ours / peer:.2f} "
        f"(n=1, peer: median text a2->b1 of {PEER_ROUNDS}, max {max(peers):.1f}s; "
        "no session up at the start of either)"
    )
