"""Endorsements between endpoints (trust.md §7.1): an endpoint installs its own
endorsement (checked for its own address and key, through the local API),
presents it in every session, and its contacts record and show the verdict."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

import pytest
from trio.testing import MockClock

from onionpost import api
from onionpost.client import open_client
from onionpost.daemon.delivery import install_own, rejudge
from onionpost.errors import ApiError, ConfigError, UnknownContactError
from onionpost.host import serve_api
from onionpost.limits import TRUST_FRESHNESS
from onionpost.proto.trust import AgencyLog, Revoked, stored_revocations
from onionpost.proto.trust_session import RevocationBundle
from onionpost.testing.agency import Agency
from onionpost.testing.doubles import short_tmpdir
from onionpost.testing.memory import Node, befriend, network, until


def _now() -> int:
    return int(time.time())


def _revoked(reason: str) -> re.Pattern[str]:
    """A revoked contact's verdict: when (as the list states it), by whom, why."""
    return re.compile(rf"refused: revoked \d{{4}}-\d\d-\d\d \d\d:\d\d UTC by acme: {reason}")


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
        listed = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}
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
        status, describe = _verdict(bob, alice) or ("", "")
        assert status == "refused"
        assert _revoked("seized").fullmatch(describe), describe


async def test_an_address_a_held_list_names_is_refused_though_it_presents_nothing(
    tmp_path: Path, clock: MockClock
) -> None:
    """A seized endpoint that stops presenting its endorsement (or never had
    one on file here) is cut off by the list all the same: nothing is sent to
    it, its sessions are refused, what waits for it stays queued. A contact
    the list does not name is served; one added later is judged before any
    dial."""
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, mallory, bob, eve = (net.node(n) for n in ("alice", "mallory", "bob", "eve"))
        befriend(alice, mallory)
        befriend(alice, bob)
        alice.store.trust.add(acme.anchor, _now() * 1000)
        seized = [
            Revoked(str(address), _now(), "seized")
            for address in sorted((str(mallory.address), str(eve.address)))
        ]
        alice.store.trust.hold(acme.anchor.fingerprint, acme.revocations(1, _now(), *seized), None)
        for node in (alice, mallory, bob):
            await node.start(nursery)
        held = await alice.send(mallory, "for a seized laptop")
        served = await alice.send(bob, "for bob")
        await until(lambda: alice.state(served) == "delivered")
        assert _revoked("seized").fullmatch(_refused(alice, mallory)), _refused(alice, mallory)
        assert _verdict(alice, mallory) is None  # it presented nothing
        assert _refused(alice, bob) == ""
        # Mallory's own sessions are refused (taken for a move alone, and she
        # announces none): nothing arrives.
        await mallory.send(alice, "let me in")
        await until(lambda: mallory.dials >= 2, seconds=300)
        assert alice.inbox_from(mallory) == []
        assert alice.state(held) == "queued"
        assert mallory.inbox_from(alice) == []
        # A contact added while running, whose address the list names.
        befriend(alice, eve)
        assert alice.daemon is not None
        await until(lambda: bool(_revoked("seized").fullmatch(_refused(alice, eve))))


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
                    (
                        of_bob,
                        r"refused: wrong-address \(it endorses another endpoint's address, "
                        r"not this one's\)$",
                    ),
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


def _refused(node: Node, other: Node) -> str:
    assert node.engine is not None
    status = node.engine.status(node.contact(other).id)
    return "" if status is None else status.refused


async def test_a_revocation_reaches_another_agency_by_gossip_and_is_enforced(
    tmp_path: Path, clock: MockClock
) -> None:
    """Alice and Mallory are acme's, Bob is bravo's and holds acme's anchor.
    Acme revokes Mallory; Alice imports the list; Bob learns it from Alice's
    next session and refuses Mallory: her sessions, and what he queued for her
    waits (not dropped) with the reason in status."""
    acme, bravo = Agency.make("acme", _now()), Agency.make("bravo", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob, mallory = net.node("alice"), net.node("bob"), net.node("mallory")
        befriend(alice, bob)
        befriend(mallory, bob)
        first_list = acme.revocations(1, _now())
        for node in (alice, mallory):
            _install(node, acme)
            node.store.trust.hold(acme.anchor.fingerprint, first_list, None)
        _install(bob, bravo)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        for node in (alice, bob, mallory):
            await node.start(nursery)
        sent = [await alice.send(bob, "one"), await mallory.send(bob, "two")]
        await until(lambda: all(n.state(m) == "delivered" for n, m in zip((alice, mallory), sent)))
        await until(lambda: (_verdict(bob, mallory) or ("",))[0] == "endorsed")
        assert (_verdict(bob, alice) or ("",))[0] == "endorsed"

        # The agency revokes Mallory, offline; Alice imports the list it wrote.
        bundle = RevocationBundle(
            acme.delegation,
            acme.revocations(2, _now(), Revoked(str(mallory.address), _now(), "seized")),
            acme.checkpoint(),
        ).encode()
        assert alice.daemon is not None
        imported = await alice.daemon.trust.trust_revocations_import(
            api.TrustRevocationsImport(base64.b64encode(bundle).decode())
        )
        assert (imported.agency, imported.serial, imported.revoked) == ("acme", 2, 1)
        # Alice's next session with Bob staples it: Bob refuses Mallory.
        await alice.send(bob, "news")
        await until(lambda: (_verdict(bob, mallory) or ("",))[0] == "refused")
        assert _revoked("seized").fullmatch((_verdict(bob, mallory) or ("", ""))[1])
        await until(lambda: bool(_revoked("seized").fullmatch(_refused(bob, mallory))))
        assert _verdict(bob, alice) is not None
        assert (_verdict(bob, alice) or ("",))[0] == "endorsed"

        # Nothing more reaches Mallory, nor comes from her; her texts wait.
        held = await bob.send(mallory, "for mallory")
        from_her = await mallory.send(bob, "let me in")
        assert mallory.engine is not None
        await until(lambda: mallory.engine.status(mallory.contact(bob).id).failures >= 2)  # type: ignore[union-attr]
        assert bob.state(held) == "queued"
        assert mallory.state(from_her) != "delivered"
        assert not [s for s in bob.inbox_from(mallory) if s.body == "let me in"]
        assert bob.daemon is not None
        report = await bob.daemon.status(api.GetStatus())
        by_name = {c.name: c for c in report.contacts}
        assert _revoked("seized").fullmatch(by_name["mallory"].refused)
        assert by_name["mallory"].queued >= 1
        assert by_name["alice"].refused == ""
        # Each holds acme's list 2 now, and shows it.
        for holder in (alice, bob):
            assert holder.daemon is not None
            listed = {a.agency: a for a in await holder.daemon.trust.trust_list(api.TrustList())}
            anchor = listed["acme"]
            assert anchor.revocations_serial == 2
            assert anchor.revocations_issued_at is not None

        # A list older than the one held is refused; nothing changes.
        with pytest.raises(ConfigError, match="older than the one held"):
            await alice.daemon.trust.trust_revocations_import(
                api.TrustRevocationsImport(
                    base64.b64encode(
                        RevocationBundle(acme.delegation, first_list, acme.checkpoint()).encode()
                    ).decode()
                )
            )
        revocations, _ = alice.store.trust.held()[acme.anchor.fingerprint]
        assert revocations is not None
        assert stored_revocations(revocations).value.serial == 2


async def test_an_imported_list_is_carried_to_contacts_with_no_session_up(
    tmp_path: Path, clock: MockClock
) -> None:
    """Alice's session with Bob closed (idle) before she imports the list that
    revokes Mallory: she dials Bob once to staple it, with nothing to send."""
    acme, bravo = Agency.make("acme", _now()), Agency.make("bravo", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob, mallory = net.node("alice"), net.node("bob"), net.node("mallory")
        befriend(alice, bob)
        befriend(mallory, bob)
        first_list = acme.revocations(1, _now())
        for node in (alice, mallory):
            _install(node, acme)
            node.store.trust.hold(acme.anchor.fingerprint, first_list, None)
        _install(bob, bravo)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        for node in (alice, bob, mallory):
            await node.start(nursery)
        sent = [await alice.send(bob, "one"), await mallory.send(bob, "two")]
        await until(lambda: all(n.state(m) == "delivered" for n, m in zip((alice, mallory), sent)))
        await until(lambda: (_verdict(bob, mallory) or ("",))[0] == "endorsed")
        assert alice.engine is not None
        await until(lambda: alice.engine.status(alice.contact(bob).id).reachable is False)  # type: ignore[union-attr]
        bundle = RevocationBundle(
            acme.delegation,
            acme.revocations(2, _now(), Revoked(str(mallory.address), _now(), "seized")),
            acme.checkpoint(),
        ).encode()
        assert alice.daemon is not None
        await alice.daemon.trust.trust_revocations_import(
            api.TrustRevocationsImport(base64.b64encode(bundle).decode())
        )
        await until(lambda: bool(_revoked("seized").fullmatch(_refused(bob, mallory))), seconds=20)
        assert (_verdict(bob, alice) or ("",))[0] == "endorsed"


async def test_a_split_view_of_an_agency_log_raises_an_alarm(
    tmp_path: Path, clock: MockClock
) -> None:
    """Bob holds a checkpoint of acme's log from Alice; Mallory staples one of
    the same size with another root (a stolen issuing key's private branch):
    a trust alarm with both signed checkpoints, in status."""
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob, mallory = net.node("alice"), net.node("bob"), net.node("mallory")
        befriend(alice, bob)
        befriend(mallory, bob)
        for node in (alice, mallory):
            _install(node, acme)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        public = acme.checkpoint()
        branch = AgencyLog(acme.anchor.log_origin, [acme.delegation])
        while branch.size < acme.log.size:
            branch.append(b"a statement only mallory's holders see")
        forked = branch.checkpoint(acme.issuer)
        alice.store.trust.hold(acme.anchor.fingerprint, None, public)
        mallory.store.trust.hold(acme.anchor.fingerprint, None, forked)
        await alice.start(nursery)
        await bob.start(nursery)
        await alice.send(bob, "hello")
        await until(lambda: _verdict(bob, alice) is not None)
        assert bob.store.trust.held()[acme.anchor.fingerprint][1] == public
        await mallory.start(nursery)
        await mallory.send(bob, "hello")
        await until(lambda: bool(bob.store.trust.alarms()))
        (alarm,) = bob.store.trust.alarms()
        assert (alarm.kind, alarm.first, alarm.second) == ("fork", public, forked)
        assert bob.daemon is not None
        assert (await bob.daemon.status(api.GetStatus())).trust_alarms == 1


async def test_require_endorsement_holds_the_outbox_until_one_is_presented(
    tmp_path: Path, clock: MockClock
) -> None:
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = (
            net.node("alice"),
            net.node("bob", require_endorsement=True),
            net.node("carol"),
        )
        befriend(alice, bob)
        befriend(carol, bob)
        _install(alice, acme)
        alice.store.trust.hold(acme.anchor.fingerprint, acme.revocations(1, _now()), None)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        carol.store.trust.add(acme.anchor, _now() * 1000)
        for node in (alice, bob, carol):
            await node.start(nursery)
        to_alice = await bob.send(alice, "for alice")
        to_carol = await bob.send(carol, "for carol")
        # Alice presents a valid endorsement (announcing herself at start): delivered.
        await until(lambda: bob.state(to_alice) == "delivered")
        assert _refused(bob, alice) == ""
        # Carol presents none: nothing goes to her, her text waits, status says why.
        await until(lambda: _refused(bob, carol) == "endorsement required: none presented")
        assert bob.state(to_carol) == "queued"
        assert bob.daemon is not None
        report = {c.name: c for c in (await bob.daemon.status(api.GetStatus())).contacts}
        assert report["carol"].refused == "endorsement required: none presented"
        assert report["carol"].queued == 1
        # Carol's texts to bob still arrive (she may talk; bob only holds his).
        hello = await carol.send(bob, "hello")
        await until(lambda: carol.state(hello) == "delivered")
        assert bob.state(to_carol) == "queued"
        # Carol is endorsed now: she presents it, and bob's text goes.
        assert carol.daemon is not None
        proof = acme.endorse(carol.secrets.identity, _now()).encode()
        carol.store.trust.hold(acme.anchor.fingerprint, acme.revocations(2, _now()), None)
        await carol.daemon.trust.trust_endorsement_install(
            api.TrustEndorsementInstall(base64.b64encode(proof).decode())
        )
        await carol.send(bob, "endorsed now")
        await until(lambda: bob.state(to_carol) == "delivered")
        assert _refused(bob, carol) == ""


async def test_a_contact_added_while_running_is_judged_before_anything_goes(
    tmp_path: Path, clock: MockClock
) -> None:
    # Found on the private Tor network: a contact added to a running daemon
    # was sent to until the next housekeeping round judged it.
    async with network(tmp_path) as (net, nursery):
        bob, carol = net.node("bob", require_endorsement=True), net.node("carol")
        now = _now() * 1000
        carol.store.contacts.add_contact(bob.name, bob.address, bob.secrets.client_auth_public, now)
        for node in (bob, carol):
            await node.start(nursery)
        assert bob.daemon is not None
        await bob.daemon.contacts.contact_add(api.ContactAdd(carol.card()))
        assert _refused(bob, carol) == "endorsement required: none presented"
        held = await bob.send(carol, "held")
        hello = await carol.send(bob, "hello")
        await until(lambda: carol.state(hello) == "delivered")
        assert bob.state(held) == "queued"


async def test_require_endorsement_per_contact(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        bob, carol = net.node("bob"), net.node("carol")
        befriend(carol, bob)
        for node in (bob, carol):
            await node.start(nursery)
        assert bob.daemon is not None
        first = await bob.send(carol, "before")
        await until(lambda: bob.state(first) == "delivered")
        # Carol presents no endorsement; bob now requires one of her alone.
        await bob.daemon.trust.contact_require_endorsement(
            api.ContactRequireEndorsement("carol", True)
        )
        assert _refused(bob, carol) == "endorsement required: none presented"
        listed = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}
        assert listed["carol"].require_endorsement is True
        held = await bob.send(carol, "held")
        assert bob.engine is not None
        await until(lambda: bob.engine.status(bob.contact(carol).id).reachable is False)  # type: ignore[union-attr]
        assert bob.state(held) == "queued"
        # As config.toml says (not required): released, delivered.
        await bob.daemon.trust.contact_require_endorsement(
            api.ContactRequireEndorsement("carol", None)
        )
        await until(lambda: bob.state(held) == "delivered")
        listed = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}
        assert listed["carol"].require_endorsement is None
        with pytest.raises(UnknownContactError):
            await bob.daemon.trust.contact_require_endorsement(
                api.ContactRequireEndorsement("nobody", True)
            )


async def test_a_forged_endorsement_is_recorded_and_the_session_goes_on(
    tmp_path: Path, clock: MockClock
) -> None:
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        mallory, bob = net.node("mallory"), net.node("bob")
        befriend(mallory, bob)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        # An endorsement by another "acme" whose root bob does not hold,
        # stored without the check `trust endorsement install` makes.
        impostor = Agency.make("acme", _now()).endorse(mallory.secrets.identity, _now())
        mallory.store.trust.install_own(acme.anchor.fingerprint, impostor.encode(), 1)
        for node in (mallory, bob):
            await node.start(nursery)
        sent = await mallory.send(bob, "hello")
        await until(lambda: mallory.state(sent) == "delivered")
        await until(lambda: _verdict(bob, mallory) is not None)
        assert _verdict(bob, mallory) == ("refused-forged", "refused: forged delegation")
        assert _refused(bob, mallory) == ""  # shown, not enforced: not required
        assert bob.store.trust.held() == {}  # nothing of a forged staple is held


async def test_importing_the_same_list_or_a_conflicting_one(tmp_path: Path) -> None:
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        await alice.start(nursery)
        assert alice.daemon is not None
        daemon = alice.daemon

        async def load(data: bytes) -> api.RevocationsImported:
            return await daemon.trust.trust_revocations_import(
                api.TrustRevocationsImport(base64.b64encode(data).decode())
            )

        bundle = RevocationBundle(acme.delegation, acme.revocations(1, _now()), acme.checkpoint())
        with pytest.raises(ConfigError, match="no anchor of agency 'acme'"):
            await load(bundle.encode())
        for bad in (b"", b"\x94\x01\xc4\x00\xc4\x00\xc4\x00", b"junk"):
            # One sentence, naming what to import instead.
            with pytest.raises(ConfigError) as caught:
                await load(bad)
            assert str(caught.value) == (
                "not a revocation list file: import what 'registrar export-list' "
                "or 'trust revoke --out' writes"
            )
        alice.store.trust.add(acme.anchor, _now() * 1000)
        impostor = Agency.make("acme", _now())
        forged = RevocationBundle(
            impostor.delegation, impostor.revocations(5, _now()), impostor.checkpoint()
        )
        with pytest.raises(ConfigError, match="does not verify under the anchor of acme"):
            await load(forged.encode())
        assert alice.store.trust.held() == {}
        assert (await load(bundle.encode())).serial == 1
        with pytest.raises(ConfigError, match="held already"):
            await load(bundle.encode())
        # Two lists the agency signed for one serial: refused, and an alarm.
        other = RevocationBundle(
            acme.delegation,
            acme.revocations(1, _now(), Revoked(str(alice.address), _now(), "x")),
            acme.checkpoint(),
        )
        with pytest.raises(ConfigError, match="two lists of one serial"):
            await load(other.encode())
        (alarm,) = alice.store.trust.alarms()
        assert (alarm.kind, alarm.first, alarm.second) == (
            "revocations",
            bundle.revocations,
            other.revocations,
        )
        assert (await daemon.status(api.GetStatus())).trust_alarms == 1


async def test_verdicts_are_judged_again_as_time_passes(tmp_path: Path, clock: MockClock) -> None:
    """Without any session, a list held past the freshness bound makes an
    endorsed contact unverified, and past its end an endorsement expires; with
    require_endorsement the contact is then held (the engine's housekeeping)."""
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        _install(alice, acme)
        alice.store.trust.hold(acme.anchor.fingerprint, acme.revocations(1, _now()), None)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        for node in (alice, bob):
            await node.start(nursery)
        await alice.send(bob, "hello")
        await until(lambda: (_verdict(bob, alice) or ("",))[0] == "endorsed")
        now_ms = _now() * 1000
        alice_id = bob.contact(alice).id
        assert rejudge(bob.store, now_ms, required=True) == {}
        later = now_ms + (TRUST_FRESHNESS + 60) * 1000
        assert rejudge(bob.store, later, required=True) == {
            alice_id: "endorsement required: unverified: stale-revocation-list (agency acme)"
        }
        assert rejudge(bob.store, later, required=False) == {}
        expired = now_ms + 8 * 86_400 * 1000
        rejudge(bob.store, expired, required=False)
        assert _verdict(bob, alice) == ("refused", "refused: expired")
