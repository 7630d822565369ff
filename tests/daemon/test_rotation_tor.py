"""On the private Tor network: a1, endorsed by its agency, moves to a new
address (another home, ``a1-new``): the agency endorses the new address as
replacing the old (``trust endorse --replaces``), a1 announces it (``trust
rotate``), and its contact b1 moves it over by itself, with its history, and
reaches it there through tor (its onion service authorizing the new tor key,
its tor holding its own key for the new address; trust.md §6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onionpost.testing.endpoint import Endpoint, start_all
from onionpost.testing.testnet import Testnet
from onionpost.testing.trustnet import OfflineAgency, delivered, running, wait

pytestmark = pytest.mark.tor

SECONDS = 60.0


def _listed(endpoint: Endpoint, name: str) -> dict[str, object]:
    return next(c for c in endpoint.json("contact", "list") if c["name"] == name)


def test_a_contact_moves_to_the_new_address_over_tor(root: Path, testnet: Testnet) -> None:
    agency = OfflineAgency(root, "a.example")
    a1, a1_new, b1 = (Endpoint(root, name, testnet) for name in ("a1", "a1-new", "b1"))
    with running(a1, a1_new, b1):
        _scenario(agency, a1, a1_new, b1)


def _scenario(agency: OfflineAgency, a1: Endpoint, a1_new: Endpoint, b1: Endpoint) -> None:
    start_all([a1, a1_new, b1])
    for endpoint in (a1, a1_new, b1):
        endpoint.cli("trust", "add", agency.anchor, "--safety-number", agency.safety_number)
    old = a1.json("whoami")["address"]
    a1.cli("trust", "endorsement", "install", str(agency.endorse_file(old, "Office a1")))
    cards = {e.name: e.json("whoami")["card"] for e in (a1, a1_new, b1)}
    a1.cli("contact", "add", cards["b1"], "--name", "b1")
    b1.cli("contact", "add", cards["a1"], "--name", "a1")
    a1_new.cli("contact", "add", cards["b1"], "--name", "b1")  # the new home knows b1
    hello = a1.json("send", "b1", "before the move")["id"]
    wait(lambda: delivered(a1, hello), "a1's text to b1", SECONDS)
    wait(lambda: _listed(b1, "a1").get("endorsement_status") is not None, "a1's staple", SECONDS)

    new = a1_new.json("whoami")["address"]
    proof = agency.endorse_file(new, "Office a1", replaces=old)
    card = a1_new.home / "new.card"
    card.write_text(cards["a1-new"] + "\n")
    announced = a1.json("trust", "rotate", str(card), str(proof))
    assert (announced["address"], announced["replaces"]) == (new, old)

    took = wait(lambda: _listed(b1, "a1")["address"] == new, "b1 moving a1 over", SECONDS)
    print(f"rotation_to_move_s={took:.1f}")
    moved = _listed(b1, "a1")
    assert moved["rotated"] == f"moved from {old} by agency a.example"
    assert [m["body"] for m in b1.inbox() if m["contact"] == "a1"] == ["before the move"]

    # b1 reaches the new address through tor, and the new home b1.
    after = b1.json("send", "a1", "after the move")["id"]
    wait(lambda: delivered(b1, after), "b1's text to the new address", SECONDS)
    assert [m["body"] for m in a1_new.inbox() if m["contact"] == "b1"] == ["after the move"]
    back = a1_new.json("send", "b1", "from the new address")["id"]
    wait(lambda: delivered(a1_new, back), "the new address's text to b1", SECONDS)
