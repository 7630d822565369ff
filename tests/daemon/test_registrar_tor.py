"""On the private Tor network: an agency's registrar serving (`registrar serve`),
two endpoints of the agency enrolled with codes through the CLI, one revoked
with `registrar revoke`, and the other refusing it within one refresh
interval of one minute, without any import by hand (trust.md §8)."""

from __future__ import annotations

from pathlib import Path

import pytest

from onionpost.testing.endpoint import FAST_RETRY, Endpoint, start_all
from onionpost.testing.testnet import Testnet
from onionpost.testing.trustnet import (
    OfflineAgency,
    Registrar,
    endorsement,
    refusal,
    running,
    wait,
)

pytestmark = pytest.mark.tor

SECONDS = 60.0
ENDPOINT_CONFIG = FAST_RETRY + "trust_refresh = 60.0\n"


def test_a_registrar_enrols_and_a_revocation_is_refused_within_a_minute(
    root: Path, testnet: Testnet
) -> None:
    agency = OfflineAgency(root, "a.example")
    registrar = Registrar(root, "registrar", testnet, agency, refresh=60)
    a1 = Endpoint(root, "a1", testnet, top_config=ENDPOINT_CONFIG)
    a2 = Endpoint(root, "a2", testnet, top_config=ENDPOINT_CONFIG)
    with running(registrar, a1, a2):
        _scenario(agency, registrar, a1, a2)


def _scenario(agency: OfflineAgency, registrar: Registrar, a1: Endpoint, a2: Endpoint) -> None:
    start_all([registrar, a1, a2])
    for endpoint in (a1, a2):
        endpoint.cli("trust", "add", agency.anchor, "--safety-number", agency.safety_number)
    first = registrar.enrol(a1, "Office a1")
    registrar.enrol(a2, "Office a2")
    assert (first["agency"], first["endpoint"]) == ("a.example", "Office a1")
    listed = registrar.json("registrar", "list")
    assert len(listed["endpoints"]) == 2
    cards = {e.name: e.json("whoami")["card"] for e in (a1, a2)}
    a1.cli("contact", "add", cards["a2"])
    a2.cli("contact", "add", cards["a1"])
    a1.json("send", "a2", "hello")
    wait(lambda: endorsement(a2, "a1")[0] == "endorsed", "a2 judging a1 endorsed", SECONDS)

    a1_address = a1.json("whoami")["address"]
    revoked = registrar.json("registrar", "revoke", a1_address, "--reason", "seized")
    assert [r["address"] for r in revoked["revoked"]] == [a1_address]
    # Within one refresh interval (60 s) and a round's margin, a2 refuses a1.
    took = wait(lambda: refusal(a2, "a1").startswith("refused: revoked "), "a2 refusing a1", 90.0)
    # When, by whom and why, as the registrar's list states it (trust.md §7.1).
    assert refusal(a2, "a1").endswith(" UTC by a.example: seized")
    print(f"registrar revocation_to_refusal_s={took:.1f} (trust_refresh 60 s)")
    assert took <= 90.0
    assert endorsement(a2, "a1")[0] == "refused"
