"""On the private Tor network: two agencies made offline, two endpoints of one
and one of the other, endorsed; one revoked, its list imported at the other
endpoint of its agency alone; the endpoint of the other agency learns it in
its session with that one (the staple) and refuses the revoked one, as its
own agency's does; ``require_endorsement`` holds what waits for a contact
that presents no endorsement (trust.md §7)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from onionpost.testing.testnet import Testnet
from onionpost.testing.trustnet import Scene, delivered, endorsement, queued, refusal, wait

pytestmark = pytest.mark.tor

# Each wait is well under the test's budget: sessions on the testnet open in seconds.
SECONDS = 45.0


def _revoked(refused: str) -> bool:
    """A revoked contact's refusal, saying when, by which agency, and why (trust.md §7.1)."""
    said = refused.startswith("refused: revoked 20")
    return said and refused.endswith(" UTC by a.example: seized")


@pytest.fixture
def scene(testnet: Testnet, root: Path) -> Iterator[Scene]:
    made = None
    try:
        made = Scene.make(root, testnet)
        made.start()
        yield made
    finally:
        if made is not None:
            made.stop()


def test_a_revocation_reaches_another_agency_through_a_session(scene: Scene) -> None:
    a1, a2, b1 = scene.a1, scene.a2, scene.b1
    scene.endorse(a1)
    scene.endorse(b1)
    scene.all_contacts()

    # a2 presents no endorsement yet: b1 (require_endorsement) sends it nothing.
    held = b1.json("send", "a2", "held until a2 is endorsed")["id"]
    firsts = [
        a1.json("send", "b1", "a1 to b1")["id"],
        a2.json("send", "b1", "a2 to b1")["id"],
        a1.json("send", "a2", "a1 to a2")["id"],
    ]
    wait(lambda: delivered(a1, firsts[0]) and delivered(a2, firsts[1]), "texts to b1", SECONDS)
    wait(lambda: delivered(a1, firsts[2]), "a1's text to a2", SECONDS)
    wait(lambda: endorsement(b1, "a1")[0] == "endorsed", "b1 judging a1 endorsed", SECONDS)
    wait(lambda: endorsement(a1, "b1")[0] == "endorsed", "a1 judging b1 endorsed", SECONDS)
    assert endorsement(b1, "a2") == (None, None)
    assert refusal(b1, "a2").startswith("endorsement required")
    assert queued(b1, "a2") == 1
    assert not delivered(b1, held)

    # Endorsed, a2 staples its proof on the session up (or the next): the held text goes.
    scene.endorse(a2)
    b1.json("send", "a2", "nudge")
    wait(lambda: endorsement(b1, "a2")[0] == "endorsed", "b1 judging a2 endorsed", SECONDS)
    wait(lambda: delivered(b1, held), "the held text", SECONDS)
    wait(lambda: endorsement(a2, "a1")[0] == "endorsed", "a2 judging a1 endorsed", SECONDS)
    text = endorsement(b1, "a1")[1] or ""
    assert text.startswith("endorsed by a.example (Office a1, Unit U) until ")
    assert endorsement(a1, "a2")[0] == "endorsed"

    # a1 is seized: the list that revokes it is imported at a2 alone.
    revoked = scene.revoke(a1)
    a2.cli("trust", "revocations", "import", str(revoked))
    assert _revoked(refusal(a2, "a1"))
    # b1 never imports it: it learns it from a2's staple.
    wait(lambda: bool(refusal(b1, "a1")), "b1 refusing a1", SECONDS)
    assert _revoked(refusal(b1, "a1"))
    assert endorsement(b1, "a1")[0] == "refused"
    (a_anchor,) = [x for x in b1.json("trust", "list")["anchors"] if x["agency"] == "a.example"]
    assert a_anchor["revocations_serial"] == 2

    # Nothing more goes to a1, from either; what waits for it is held.
    to_a1 = [b1.json("send", "a1", "not for a1")["id"], a2.json("send", "a1", "nor this")["id"]]
    wait(lambda: queued(b1, "a1") == 1 and queued(a2, "a1") == 1, "texts to a1 held", SECONDS)
    # a1's own sessions are refused (taken for a move alone, and it announces
    # none): its text to b1 does not arrive, and a1 counts a failure.
    late = a1.json("send", "b1", "from the seized laptop")["id"]
    wait(
        lambda: any(
            c["name"] == "b1" and c["failures"] >= 1 for c in a1.json("status")["contacts"]
        ),
        "b1 refusing a1's session",
        SECONDS,
    )
    assert not delivered(a1, late)
    assert all(m["body"] != "from the seized laptop" for m in b1.inbox())
    assert not any(delivered(e, i) for e, i in zip([b1, a2], to_a1, strict=True))
    assert _revoked(refusal(b1, "a1"))
