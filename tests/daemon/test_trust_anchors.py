"""Trust anchors through the local API (trust.md §1, local-api.md): installed
only with the anchor's safety number; garbled, duplicate or mistyped input is
a clear error with nothing stored, and the daemon goes on."""

from __future__ import annotations

from pathlib import Path

import pytest

from onionpost.client import open_client
from onionpost.errors import ApiError
from onionpost.host import serve_api
from onionpost.proto.trust import Anchor, HybridSigner
from onionpost.testing.doubles import short_tmpdir
from onionpost.testing.memory import network


def _anchor(agency: str, *, mldsa: bool = True) -> Anchor:
    key = HybridSigner.generate(f"{agency}/root", mldsa=mldsa).public
    return Anchor(agency, key.ed25519, key.mldsa65)


ACME = _anchor("acme")
BRAVO = _anchor("bravo", mldsa=False)
WRONG_NUMBER = " ".join(["12345"] * 12)


async def test_add_list_remove_and_every_bad_input(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        await alice.start(nursery)
        assert alice.daemon is not None
        with short_tmpdir() as run:
            socket_path = run / "api.sock"
            await nursery.start(serve_api, alice.daemon, socket_path)
            async with open_client(socket_path=socket_path) as client:
                added = await client.trust_add(ACME.to_text(), ACME.safety_number)
                assert (added.agency, added.fingerprint, added.post_quantum) == (
                    "acme",
                    ACME.fingerprint.hex(),
                    True,
                )
                # Spaces are the reader's: the digits alone do.
                spaced = "".join(BRAVO.safety_number.split())
                await client.trust_add(BRAVO.to_text(), spaced)

                bad = [
                    ("onionpost-anchor1:garbled!", ACME.safety_number, "not a trust anchor"),
                    ("", ACME.safety_number, "not a trust anchor"),
                    (ACME.to_text()[:-4], ACME.safety_number, "not a trust anchor"),
                    (ACME.to_text(), ACME.safety_number, "installed already"),
                    (_anchor("acme").to_text(), None, "another anchor of agency 'acme'"),
                    (_anchor("charlie").to_text(), WRONG_NUMBER, "not the anchor's safety number"),
                    (_anchor("charlie").to_text(), "", "not the anchor's safety number"),
                ]
                for text, number, problem in bad:
                    typed = Anchor.from_text(text).safety_number if number is None else number
                    with pytest.raises(ApiError, match=problem) as caught:
                        await client.trust_add(text, typed)
                    assert caught.value.code == "config"
                listed = await client.trust_list()
                assert [(a.agency, a.post_quantum) for a in listed] == [
                    ("acme", True),
                    ("bravo", False),
                ]
                assert [a.safety_number for a in listed] == [
                    ACME.safety_number,
                    BRAVO.safety_number,
                ]

                removed = await client.trust_remove(BRAVO.fingerprint.hex())
                assert removed.agency == "bravo"
                with pytest.raises(ApiError) as caught:
                    await client.trust_remove("bravo")
                assert caught.value.code == "not-found"
                assert [a.agency for a in await client.trust_list()] == ["acme"]
                await client.trust_remove("acme")
                assert await client.trust_list() == ()
        assert alice.store.trust.all() == []
