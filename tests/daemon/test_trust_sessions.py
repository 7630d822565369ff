"""Endorsements between endpoints (trust.md §7.1): an endpoint installs its own
endorsement (checked for its own address and key, through the local API),
presents it in every session, and its contacts record and show the verdict."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from trio.testing import MockClock

from onionpost import api
from onionpost.client import open_client
from onionpost.daemon.delivery import install_own
from onionpost.errors import ApiError
from onionpost.host import serve_api
from onionpost.proto.trust import Revoked
from onionpost.testing.agency import Agency
from onionpost.testing.doubles import short_tmpdir
from onionpost.testing.memory import Node, befriend, network, until


def _now() -> int:
    return int(time.time())


def _verdict(holder: Node, other: Node) -> tuple[str, str] | None:
    found = holder.store.trust.endorsements().get(holder.contact(other).id)
    return None if found is None else (found.status, found.describe)


def _install(node: Node, agency: Agency, *, unit: str = "Unit U") -> None:
    node.store.trust.add(agency.anchor, _now() * 1000)
    proof = agency.endorse(node.secrets.identity, _now(), unit=unit).encode()
    install_own(node.store, str(node.address), proof, _now() * 1000)


async def test_contacts_see_each_others_endorsements(tmp_path: Path, clock: MockClock) -> None:
    acme, bravo = Agency.make("acme", _now()), Agency.make("bravo", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(bob, carol)
        _install(alice, acme)
        # Alice holds a fresh list of her agency and staples it.
        alice.store.trust.hold(acme.anchor.fingerprint, acme.revocations(1, _now()), None)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        _install(carol, bravo)  # bob holds no anchor of bravo
        for node in (alice, bob, carol):
            await node.start(nursery)
        sent = [await alice.send(bob, "hello"), await carol.send(bob, "hi")]
        await until(lambda: all(n.state(m) == "delivered" for n, m in zip((alice, carol), sent)))
        await until(lambda: _verdict(bob, alice) is not None and _verdict(bob, carol) is not None)
        status, describe = _verdict(bob, alice) or ("", "")
        assert status == "endorsed"
        assert describe.startswith("endorsed by acme (Field office 3, Unit U) until ")
        assert _verdict(bob, carol) == ("no-anchor", "no anchor for agency bravo")
        # Bob holds no endorsement of his own: he presented none.
        assert _verdict(alice, bob) is None
        # The list alice stapled is now bob's too.
        revocations, _ = bob.store.trust.held()[acme.anchor.fingerprint]
        assert revocations is not None

        assert bob.daemon is not None
        listed = {c.name: c for c in await bob.daemon.contact_list(api.ContactList())}
        assert listed["alice"].endorsement_status == "endorsed"
        assert (listed["alice"].endorsement or "").startswith("endorsed by acme")
        assert listed["carol"].endorsement == "no anchor for agency bravo"


async def test_a_contact_revoked_in_a_stapled_list_is_refused(
    tmp_path: Path, clock: MockClock
) -> None:
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        _install(alice, acme)
        revoked = Revoked(str(alice.address), _now(), "seized")
        alice.store.trust.hold(acme.anchor.fingerprint, acme.revocations(1, _now(), revoked), None)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        for node in (alice, bob):
            await node.start(nursery)
        await alice.send(bob, "hello")
        await until(lambda: _verdict(bob, alice) is not None)
        assert _verdict(bob, alice) == ("refused", "refused: revoked")


async def test_installing_an_endorsement_and_every_bad_input(tmp_path: Path) -> None:
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        await alice.start(nursery)
        assert alice.daemon is not None
        good = acme.endorse(alice.secrets.identity, _now()).encode()
        of_bob = acme.endorse(bob.secrets.identity, _now()).encode()
        impostor = Agency.make("acme", _now()).endorse(alice.secrets.identity, _now()).encode()
        with short_tmpdir() as run:
            socket_path = run / "api.sock"
            await nursery.start(serve_api, alice.daemon, socket_path)
            async with open_client(socket_path=socket_path) as client:
                bad = [
                    (good, "no anchor of agency 'acme' is installed"),
                    (b"garbage", "not an endorsement proof"),
                    (b"", "not an endorsement proof"),
                ]
                for proof, problem in bad:
                    with pytest.raises(ApiError, match=problem) as caught:
                        await client.trust_endorsement_install(proof)
                    assert caught.value.code == "config"
                alice.store.trust.add(acme.anchor, _now() * 1000)
                for proof, problem in [
                    (of_bob, "refused: wrong-address"),
                    (impostor, "does not verify under the anchor of acme"),
                ]:
                    with pytest.raises(ApiError, match=problem):
                        await client.trust_endorsement_install(proof)
                with pytest.raises(ApiError, match="base64") as caught:
                    await client.request(api.TrustEndorsementInstall("not base64!"))
                assert alice.store.trust.own() is None  # nothing stored

                installed = await client.trust_endorsement_install(good)
                assert (installed.agency, installed.endpoint, installed.unit) == (
                    "acme",
                    "Field office 3",
                    "Unit U",
                )
                assert installed.address == str(alice.address)
                assert installed.status == "unverified-stale"  # no list held yet
                assert alice.store.trust.own() == (acme.anchor.fingerprint, good)
                # The daemon goes on.
                assert (await client.whoami()).address == str(alice.address)
