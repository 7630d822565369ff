"""``contact_show`` (trust.md §7): one contact in full, its endorsement in
detail as last judged, why it is refused; and ``whoami``'s own endorsement.

Endpoints run in memory (``onionpost.testing.memory``); their endorsements
come by sessions, as in ``test_trust_sessions.py``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from trio.testing import MockClock

from onionpost import api
from onionpost.client import open_client
from onionpost.daemon.delivery import install_own
from onionpost.errors import ApiError, UnknownContactError
from onionpost.host import serve_api
from onionpost.proto.trust import Revoked
from onionpost.testing.agency import Agency
from onionpost.testing.doubles import short_tmpdir
from onionpost.testing.memory import Node, befriend, network, until


def _now() -> int:
    return int(time.time())


def _install(node: Node, agency: Agency, *, unit: str = "Unit U") -> None:
    node.store.trust.add(agency.anchor, _now() * 1000)
    proof = agency.endorse(node.secrets.identity, _now(), unit=unit).encode()
    install_own(node.store, str(node.address), proof, _now() * 1000)


def _status(holder: Node, other: Node) -> str | None:
    found = holder.store.trust.endorsements().get(holder.contact(other).id)
    return None if found is None else found.status


async def _show(node: Node, name: str) -> api.ContactDetail:
    assert node.daemon is not None
    return await node.daemon.contacts.contact_show(api.ContactShow(name))


async def test_an_endorsed_contact_in_detail(tmp_path: Path, clock: MockClock) -> None:
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        _install(alice, acme)
        issued = _now()
        alice.store.trust.hold(acme.anchor.fingerprint, acme.revocations(1, issued), None)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        for node in (alice, bob):
            await node.start(nursery)
        sent = await alice.send(bob, "hello")
        await until(lambda: alice.state(sent) == "delivered")
        await until(lambda: _status(bob, alice) == "endorsed")

        shown = await _show(bob, "alice")
        c, e = shown.contact, shown.endorsement
        assert (c.name, c.address) == ("alice", str(alice.address))
        assert c.added_ms is not None
        assert c.last_seen_ms is not None
        assert c.verified_ms is None
        assert c.endorsement_status == "endorsed"
        assert e is not None
        assert (e.status, e.reason, e.describe) == ("endorsed", "", c.endorsement)
        assert e.describe.startswith("endorsed by acme (Field office 3, Unit U) until ")
        assert e.describe.endswith(" UTC")
        assert (e.agency, e.endpoint, e.unit) == ("acme", "Field office 3", "Unit U")
        assert e.replaces == ""
        assert e.valid_from is not None
        assert e.valid_until is not None
        assert e.valid_from < _now() < e.valid_until
        assert e.until == e.valid_until  # the delegation ends later
        assert e.anchor == acme.anchor.fingerprint.hex()
        assert (e.revocations_serial, e.revocations_issued_at) == (1, issued)
        assert (e.revoked_at, e.revoked_reason) == (None, "")
        assert e.checked_ms is not None
        # Nothing required of it: not refused, as config.toml says.
        assert (shown.require_endorsement, shown.require_endorsement_from) == (
            False,
            "config.toml",
        )
        assert shown.delivery.refused == ""
        assert shown.delivery.queued == 0
        assert (shown.rotated_from, shown.introduced, shown.groups) == (None, False, ())
        # By its address too (with or without .onion), and what contact_list says.
        for name in (str(alice.address), str(alice.address).removesuffix(".onion").upper()):
            assert (await _show(bob, name)).contact == c
        assert bob.daemon is not None
        listed = {x.name: x for x in await bob.daemon.contacts.contact_list(api.ContactList())}
        assert listed["alice"] == c
        # The team channels it is a member of, by name.
        await bob.daemon.groups.group_create(api.GroupCreate("ops", ("alice",)))
        assert (await _show(bob, "alice")).groups == ("ops",)

        # Alice's own, in whoami: judged now at her end.
        assert alice.daemon is not None
        me = await alice.daemon.whoami(api.Whoami())
        assert me.endorsed is not None
        assert (me.endorsed.status, me.endorsed.agency, me.endorsed.endpoint) == (
            "endorsed",
            "acme",
            "Field office 3",
        )
        assert me.endorsed.until is not None
        assert (await bob.daemon.whoami(api.Whoami())).endorsed is None  # none installed


async def test_a_revoked_contact_says_when_by_whom_and_why(
    tmp_path: Path, clock: MockClock
) -> None:
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        _install(alice, acme)
        at = 1_796_616_600  # 2026-12-07 04:10 UTC
        revoked = Revoked(str(alice.address), at, "laptop seized")
        alice.store.trust.hold(acme.anchor.fingerprint, acme.revocations(3, _now(), revoked), None)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        for node in (alice, bob):
            await node.start(nursery)
        await alice.send(bob, "hello")
        await until(lambda: _status(bob, alice) == "refused")
        line = "refused: revoked 2026-12-07 04:10 UTC by acme: laptop seized"
        held = await bob.send(alice, "for alice")

        shown = await _show(bob, "alice")
        e = shown.endorsement
        assert e is not None
        assert (e.status, e.reason, e.describe) == ("refused", "revoked", line)
        assert (e.revoked_at, e.revoked_reason, e.revocations_serial) == (at, "laptop seized", 3)
        assert (e.agency, e.endpoint, e.anchor) == (
            "acme",
            "Field office 3",
            acme.anchor.fingerprint.hex(),
        )
        assert e.until is None
        # The machine field is as it was; the words say the rest.
        assert shown.contact.endorsement_status == "refused"
        assert shown.contact.endorsement == line
        await until(lambda: bob.engine is not None and _refused(bob, alice) == line)
        shown = await _show(bob, "alice")
        assert shown.delivery.refused == line
        assert shown.delivery.queued == 1
        assert bob.state(held) == "queued"
        assert bob.daemon is not None
        report = await bob.daemon.status(api.GetStatus())
        assert [c.refused for c in report.contacts] == [line]
        # Alice holds that list too: her own endorsement, judged now, is revoked.
        assert alice.daemon is not None
        me = (await alice.daemon.whoami(api.Whoami())).endorsed
        assert me is not None
        assert (me.status, me.reason, me.describe) == ("refused", "revoked", line)
        assert (me.revoked_at, me.revoked_reason, me.revocations_serial) == (
            at,
            "laptop seized",
            3,
        )


def _refused(node: Node, other: Node) -> str:
    assert node.engine is not None
    status = node.engine.status(node.contact(other).id)
    return "" if status is None else status.refused


async def test_an_unverified_stale_contact(tmp_path: Path, clock: MockClock) -> None:
    """No list of its agency held anywhere: the endorsement checks, but
    whether it is revoked cannot be known."""
    acme = Agency.make("acme", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        _install(alice, acme)
        bob.store.trust.add(acme.anchor, _now() * 1000)
        for node in (alice, bob):
            await node.start(nursery)
        await alice.send(bob, "hello")
        await until(lambda: _status(bob, alice) is not None)
        e = (await _show(bob, "alice")).endorsement
        assert e is not None
        assert (e.status, e.reason) == ("unverified-stale", "no-revocation-list")
        assert e.describe == "unverified: no-revocation-list (agency acme)"
        assert (e.agency, e.endpoint, e.unit) == ("acme", "Field office 3", "Unit U")
        assert e.until is not None
        assert (e.revocations_serial, e.revoked_at) == (None, None)
        # Alice's own is stale the same way, at her end.
        assert alice.daemon is not None
        me = (await alice.daemon.whoami(api.Whoami())).endorsed
        assert me is not None
        assert (me.status, me.reason) == ("unverified-stale", "no-revocation-list")


async def test_an_endorsement_of_an_agency_without_an_anchor(
    tmp_path: Path, clock: MockClock
) -> None:
    """Bob holds no anchor of bravo: the agency is named, nothing it claims
    is shown as checked."""
    bravo = Agency.make("bravo", _now())
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        _install(alice, bravo)
        for node in (alice, bob):
            await node.start(nursery)
        await alice.send(bob, "hello")
        await until(lambda: _status(bob, alice) is not None)
        e = (await _show(bob, "alice")).endorsement
        assert e is not None
        assert (e.status, e.describe, e.agency) == (
            "no-anchor",
            "no anchor for agency bravo",
            "bravo",
        )
        assert (e.endpoint, e.anchor, e.valid_until) == ("", "", None)


async def test_required_endorsement_in_effect_and_where_it_comes_from(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice", require_endorsement=True), net.node("bob")
        carol = net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        for node in (alice, bob, carol):
            await node.start(nursery)
        assert alice.daemon is not None
        await alice.daemon.trust.contact_require_endorsement(
            api.ContactRequireEndorsement("carol", False)
        )
        held = await alice.send(bob, "for bob")
        await until(lambda: _refused(alice, bob) != "")

        shown = await _show(alice, "bob")
        assert shown.endorsement is None  # it presented none
        assert shown.contact.require_endorsement is None  # no setting of its own
        assert (shown.require_endorsement, shown.require_endorsement_from) == (
            True,
            "config.toml",
        )
        assert shown.delivery.refused == "endorsement required: none presented"
        assert shown.delivery.queued == 1
        assert alice.state(held) == "queued"

        exempt = await _show(alice, "carol")
        assert exempt.contact.require_endorsement is False
        assert (exempt.require_endorsement, exempt.require_endorsement_from) == (
            False,
            "contact",
        )
        assert exempt.delivery.refused == ""

        # Its own setting, on a node whose config requires nothing.
        assert bob.daemon is not None
        await bob.daemon.trust.contact_require_endorsement(
            api.ContactRequireEndorsement("alice", True)
        )
        await until(lambda: _refused(bob, alice) != "")
        own = await _show(bob, "alice")
        assert (own.require_endorsement, own.require_endorsement_from) == (True, "contact")
        assert own.delivery.refused == "endorsement required: none presented"


async def test_an_unknown_name_is_a_clear_error_and_the_daemon_goes_on(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        for name in ("zed", "", "x" * 300, "a" * 56 + ".onion", str(net.node("carol").address)):
            with pytest.raises(UnknownContactError):
                await _show(alice, name)
        assert alice.daemon is not None
        with short_tmpdir() as run:
            socket_path = run / "api.sock"
            await nursery.start(serve_api, alice.daemon, socket_path)
            async with open_client(socket_path=socket_path) as client:
                with pytest.raises(ApiError, match="unknown contact 'zed'") as caught:
                    await client.contact_show("zed")
                assert caught.value.code == "unknown-contact"
                with pytest.raises(ApiError, match="contact_show"):
                    await client.request(api.ContactShow(7))  # type: ignore[arg-type]
                # The daemon goes on, and the same call by name answers.
                shown = await client.contact_show("bob")
                assert shown.contact.address == str(bob.address)
                assert shown.delivery.name == "bob"
