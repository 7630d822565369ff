"""An endpoint and its agency's registrar in memory (trust.md §8): enrolment with
a code through the local API, the list fetched every trust_refresh, a revoked
contact refused within one interval, renewal, and every failure to reach the
registrar logged and retried, never fatal."""

from __future__ import annotations

import base64
import logging
import re
import time
from functools import partial
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.errors import ConfigError, DialError, RemoteProtocolError, TransportError
from onionpost.proto import messages as m
from onionpost.proto.session import PeerDecision
from onionpost.proto.trust import EndorsementProof
from onionpost.testing.memory import MemoryListener, Node, RegistrarNode, befriend, network, until
from onionpost.transport import SecureChannel, serve


def _revoked(reason: str) -> re.Pattern[str]:
    """A revoked contact's verdict: when (as the list states it), by whom, why."""
    return re.compile(rf"refused: revoked \d{{4}}-\d\d-\d\d \d\d:\d\d UTC by acme: {reason}")


def _verdict(holder: Node, other: Node) -> tuple[str, str] | None:
    found = holder.store.trust.endorsements().get(holder.contact(other).id)
    return None if found is None else (found.status, found.describe)


def _held_serial(node: Node, registrar: RegistrarNode) -> int:
    from onionpost.proto.trust import stored_revocations

    revocations, _ = node.store.trust.held().get(registrar.anchor.fingerprint, (None, None))
    return 0 if revocations is None else stored_revocations(revocations).value.serial


async def _enrol(node: Node, registrar: RegistrarNode, name: str) -> api.Endorsement:
    node.store.trust.add(registrar.anchor, int(time.time() * 1000))
    assert node.daemon is not None
    return await node.daemon.trust.trust_enrol(api.TrustEnrol(await registrar.code(name, "Unit U")))


async def test_enrol_fetch_and_a_revocation_within_one_interval(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, trust_refresh=60.0) as (net, nursery):
        registrar = net.registrar("registrar", refresh=60)
        a1, a2 = net.node("a1"), net.node("a2")
        befriend(a1, a2)
        await registrar.start(nursery)
        for node in (a1, a2):
            await node.start(nursery)
        first = await _enrol(a1, registrar, "Field office 1")
        second = await _enrol(a2, registrar, "Field office 2")
        assert (first.agency, first.endpoint, first.unit) == ("acme", "Field office 1", "Unit U")
        assert first.replaces == ""  # not a move
        assert second.address == str(a2.address)
        assert (a2.paths.home / "registrar.txt").read_text().strip() == str(registrar.address)
        # Each fetches the list at once after enrolling, and shows the other endorsed.
        await until(lambda: _held_serial(a1, registrar) > 0 and _held_serial(a2, registrar) > 0)
        await a1.send(a2, "hello")
        await until(lambda: (_verdict(a2, a1) or ("",))[0] == "endorsed")
        # Revoked at the registrar: a2 refuses a1 within one refresh interval.
        revoked_at = trio.current_time()
        await registrar.revoke(a1.address, "laptop stolen")
        await until(lambda: (_verdict(a2, a1) or ("",))[0] == "refused", seconds=61)
        assert trio.current_time() - revoked_at <= 61
        status_, describe = _verdict(a2, a1) or ("", "")
        assert status_ == "refused"
        assert _revoked("laptop stolen").fullmatch(describe), describe
        assert a2.daemon is not None
        status = await a2.daemon.status(api.GetStatus())
        (shown,) = [c for c in status.contacts if c.name == "a1"]
        assert shown.refused == describe
        # contact show: the revocation as the registrar's list states it.
        detail = (await a2.daemon.contacts.contact_show(api.ContactShow("a1"))).endorsement
        assert detail is not None
        assert (detail.reason, detail.revoked_reason) == ("revoked", "laptop stolen")
        assert detail.revoked_at is not None
        assert (detail.revocations_serial or 0) >= 1


async def test_a_list_exported_from_the_registrar_is_imported_by_another_agencys_endpoint(
    tmp_path: Path, clock: MockClock
) -> None:
    """a1 is enrolled with acme's registrar; b1, of another agency, holds acme's
    anchor and no way to fetch from acme's registrar. The registrar revokes a1
    and exports its list (``registrar export-list``); imported on b1 (``trust
    revocations import``), it makes b1 refuse a1 at once (trust.md §7.3)."""
    from onionpost.registrar import RegistrarBackend

    async with network(tmp_path, trust_refresh=60.0) as (net, nursery):
        registrar = net.registrar("registrar", refresh=60)
        a1, b1 = net.node("a1"), net.node("b1")
        befriend(a1, b1)
        await registrar.start(nursery)
        for node in (a1, b1):
            await node.start(nursery)
        await _enrol(a1, registrar, "Field office 1")
        b1.store.trust.add(registrar.anchor, int(time.time() * 1000))
        await until(lambda: _held_serial(a1, registrar) > 0)
        await a1.send(b1, "hello")
        await until(lambda: (_verdict(b1, a1) or ("",))[0] == "endorsed")
        # The registrar stops serving: a1 fetches nothing more, so the new
        # list can reach b1 only as the exported file.
        server = registrar.server
        assert server is not None
        registrar.stop()
        backend = RegistrarBackend(
            registrar.secrets, server, tor_status=lambda: api.TorStatus(api.TorState.OK, "")
        )
        await backend.revoke(api.RegistrarRevoke(str(a1.address), "laptop stolen"))
        exported = await backend.export_list(api.RegistrarExportList())
        assert (exported.agency, exported.revoked) == ("acme", 1)
        assert _held_serial(a1, registrar) < exported.serial
        assert b1.daemon is not None
        # The registrar's bare list file is not what an endpoint imports: said so.
        bare = (registrar.book.directory.path / "revocations.note").read_bytes()
        with pytest.raises(ConfigError, match=r"^a bare signed list .* 'registrar export-list'"):
            await b1.daemon.trust.trust_revocations_import(
                api.TrustRevocationsImport(base64.b64encode(bare).decode())
            )
        imported = await b1.daemon.trust.trust_revocations_import(
            api.TrustRevocationsImport(exported.bundle)
        )
        assert (imported.agency, imported.serial, imported.revoked) == (
            "acme",
            exported.serial,
            1,
        )
        assert imported.changed == 1
        status_, describe = _verdict(b1, a1) or ("", "")
        assert status_ == "refused"
        assert _revoked("laptop stolen").fullmatch(describe), describe
        status = await b1.daemon.status(api.GetStatus())
        (shown,) = [c for c in status.contacts if c.name == "a1"]
        assert shown.refused == describe
        backend.close()


async def test_a_bad_code_is_refused_and_nothing_kept(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        registrar = net.registrar("registrar")
        a1 = net.node("a1")
        await registrar.start(nursery)
        await a1.start(nursery)
        a1.store.trust.add(registrar.anchor, int(time.time() * 1000))
        assert a1.daemon is not None
        code = await registrar.code("Desk")
        await a1.daemon.trust.trust_enrol(api.TrustEnrol(code))
        # The same code from another endpoint: refused at the handshake (no code waits).
        other = net.node("other")
        await other.start(nursery)
        other.store.trust.add(registrar.anchor, int(time.time() * 1000))
        assert other.daemon is not None
        with pytest.raises(ConfigError, match="used or has expired"):
            await other.daemon.trust.trust_enrol(api.TrustEnrol(code))
        # Revoked, a1 is refused a new code (the one answer to every refusal).
        await registrar.revoke(a1.address, "lost")
        with pytest.raises(ConfigError, match="the registrar refused"):
            await a1.daemon.trust.trust_enrol(
                api.TrustEnrol(await registrar.code("Again"), again=True)
            )
        assert other.store.trust.own() is None
        assert not (other.paths.home / "registrar.txt").exists()
        with pytest.raises(ConfigError, match="not a registrar enrolment code"):
            await other.daemon.trust.trust_enrol(api.TrustEnrol("onionpost-mailbox1:abc"))
        # No anchor of the agency: the endorsement is not installed.
        stranger = net.node("stranger")
        await stranger.start(nursery)
        assert stranger.daemon is not None
        with pytest.raises(ConfigError, match="no anchor"):
            await stranger.daemon.trust.trust_enrol(api.TrustEnrol(await registrar.code("S")))
        assert stranger.store.trust.own() is None


async def test_a_code_used_by_an_endpoint_enrolled_already_is_refused_unless_again(
    tmp_path: Path, clock: MockClock
) -> None:
    """A code is made for one endpoint (its name, its unit). Used by mistake
    on another that is enrolled, it would rename that one and leave its own
    endpoint without a code: refused before anything is sent, so the code
    still works where it belongs; ``again`` enrols anew on purpose."""
    async with network(tmp_path) as (net, nursery):
        registrar = net.registrar("registrar")
        a1, a2 = net.node("a1"), net.node("a2")
        await registrar.start(nursery)
        for node in (a1, a2):
            await node.start(nursery)
        first = await _enrol(a1, registrar, "Desk 1")
        assert a1.daemon is not None
        for_desk_2 = await registrar.code("Desk 2", "Unit V")
        before = await a1.daemon.whoami(api.Whoami())
        with pytest.raises(
            ConfigError,
            match=r"this endpoint is enrolled already: endorsed by acme as 'Desk 1', Unit U "
            r"until \d{4}-\d\d-\d\d \d\d:\d\d UTC, renewed by the daemon\. A code is made "
            r"for one endpoint: use it on that one, or enrol this one anew .* with --again",
        ):
            await a1.daemon.trust.trust_enrol(api.TrustEnrol(for_desk_2))
        assert (await a1.daemon.whoami(api.Whoami())).endorsement == before.endorsement
        # The code was not used: Desk 2 enrols with it.
        a2.store.trust.add(registrar.anchor, int(time.time() * 1000))
        assert a2.daemon is not None
        second = await a2.daemon.trust.trust_enrol(api.TrustEnrol(for_desk_2))
        assert (second.endpoint, second.unit, second.address) == (
            "Desk 2",
            "Unit V",
            str(a2.address),
        )
        # On purpose: a1 renamed by a code made for it.
        renamed = await a1.daemon.trust.trust_enrol(
            api.TrustEnrol(await registrar.code("Desk 1b", "Unit W"), again=True)
        )
        assert (renamed.endpoint, renamed.unit) == ("Desk 1b", "Unit W")
        assert (first.endpoint, first.unit) == ("Desk 1", "Unit U")


async def test_an_unreachable_registrar_is_retried_never_fatal(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, trust_refresh=60.0) as (net, nursery):
        registrar = net.registrar("registrar", refresh=60)
        a1 = net.node("a1")
        await registrar.start(nursery)
        await a1.start(nursery)
        assert a1.daemon is not None
        before = await a1.daemon.status(api.GetStatus())
        assert before.registrar is None  # not enrolled
        await _enrol(a1, registrar, "Desk")
        await until(lambda: _held_serial(a1, registrar) > 0)
        link = a1.daemon.registrar
        rounds = link.rounds
        shown = (await a1.daemon.status(api.GetStatus())).registrar
        assert shown is not None
        assert (shown.address, shown.refresh_s, shown.last_error) == (
            str(registrar.address),
            60.0,
            "",
        )
        assert shown.rounds >= 1
        assert shown.last_round_ms is not None

        async def down() -> None:
            raise DialError("the onion service is not reachable", reason="descriptor-not-found")

        net.faults[registrar.address] = down
        await until(lambda: link.last_error != "", seconds=61)
        assert link.rounds == rounds
        failing = (await a1.daemon.status(api.GetStatus())).registrar
        assert failing is not None
        assert failing.last_error == "descriptor-not-found"
        assert failing.last_round_ms == shown.last_round_ms  # the last that succeeded
        assert a1.engine is not None
        assert a1.engine.running
        del net.faults[registrar.address]
        await until(lambda: link.rounds > rounds and link.last_error == "", seconds=61)


async def test_the_endorsement_is_renewed_with_a_third_left(
    tmp_path: Path, clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with network(tmp_path, trust_refresh=60.0) as (net, nursery):
        registrar = net.registrar("registrar", refresh=60, endorsement_days=3)
        a1 = net.node("a1")
        await registrar.start(nursery)
        await a1.start(nursery)
        await _enrol(a1, registrar, "Desk")
        own = a1.store.trust.own()
        assert own is not None
        index = EndorsementProof.decode(own[1]).index
        assert a1.daemon is not None
        # Two days and a bit later (wall clock, as the endorsement is judged),
        # the next round renews it.
        later = time.time() + 2 * 86_400 + 60
        monkeypatch.setattr(time, "time", lambda: later)
        a1.daemon.registrar.kick()  # the next round now
        await until(
            lambda: EndorsementProof.decode((a1.store.trust.own() or own)[1]).index > index,
            seconds=61,
        )


async def test_an_enrolment_cut_on_the_way_is_asked_again(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        registrar = net.registrar("registrar")
        a1 = net.node("a1")
        await registrar.start(nursery)
        await a1.start(nursery)
        cuts = []

        async def cut_once() -> None:
            cuts.append(trio.current_time())
            if len(cuts) == 1:
                raise TransportError("the stream ended without a Close", reason="ended")

        net.faults[registrar.address] = cut_once
        done = await _enrol(a1, registrar, "Desk")
        assert done.endpoint == "Desk"
        assert len(cuts) == 2
        assert a1.store.trust.own() is not None


async def _answer_with_the_other_record(channel: SecureChannel) -> None:
    """A registrar gone wrong: an RgFetch answered with an RgEndorsement, an
    RgEnrol or RgRenew with an RgList (of the request's ``req``)."""
    async for record in channel:
        if isinstance(record, m.RgFetch):
            await channel.send(m.RgEndorsement(record.req, b"not a proof"))
        elif isinstance(record, m.RgEnrol | m.RgRenew):
            await channel.send(m.RgList(record.req, b"d", b"r", b"c"))


async def _gone_wrong(registrar: RegistrarNode, nursery: trio.Nursery) -> MemoryListener:
    """A listener at ``registrar``'s keys that serves it gone wrong."""
    wrong = MemoryListener()
    await nursery.start(
        partial(
            serve,
            _answer_with_the_other_record,
            [wrong],
            identity=registrar.secrets.identity,
            static=registrar.secrets.static,
            decide=lambda peer: PeerDecision.ACCEPT,
        )
    )
    return wrong


async def test_a_registrar_answering_with_the_wrong_record_fails_the_round_only(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onionpost.daemon")
    async with network(tmp_path, trust_refresh=60.0) as (net, nursery):
        registrar = net.registrar("registrar", refresh=60)
        a1 = net.node("a1")
        await registrar.start(nursery)
        await a1.start(nursery)
        await _enrol(a1, registrar, "Desk")
        await until(lambda: _held_serial(a1, registrar) > 0)
        assert a1.daemon is not None
        link = a1.daemon.registrar
        rounds, own = link.rounds, a1.store.trust.own()
        # The registrar's address now answers an RgFetch with an RgEndorsement.
        real, registrar.listener = registrar.listener, await _gone_wrong(registrar, nursery)
        link.kick()
        await until(lambda: link.last_error != "", seconds=61)
        assert link.last_error == "protocol-bad-message"
        assert link.rounds == rounds
        assert "event=registrar_round_failed reason=protocol-bad-message" in caplog.text
        assert "AssertionError" not in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert a1.store.trust.own() == own  # nothing installed from it
        assert a1.engine is not None
        assert a1.engine.running
        # The next round, with the registrar itself again, succeeds.
        registrar.listener = real
        link.kick()
        await until(lambda: link.rounds > rounds and link.last_error == "", seconds=61)


async def test_an_enrolment_answered_with_the_wrong_record_is_refused_and_nothing_kept(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        registrar = net.registrar("registrar")
        a1 = net.node("a1")
        await registrar.start(nursery)
        await a1.start(nursery)
        code = await registrar.code("Desk")
        registrar.listener = await _gone_wrong(registrar, nursery)
        a1.store.trust.add(registrar.anchor, int(time.time() * 1000))
        assert a1.daemon is not None
        with pytest.raises(RemoteProtocolError, match="with RgList, not RgEndorsement"):
            await a1.daemon.trust.trust_enrol(api.TrustEnrol(code))
        assert a1.store.trust.own() is None
        assert not (a1.paths.home / "registrar.txt").exists()
        assert a1.engine is not None
        assert a1.engine.running


async def test_a_registrar_moves_an_endpoint_and_its_contact_follows(
    tmp_path: Path, clock: MockClock
) -> None:
    """trust.md §6, §8: alice is enrolled at acme's registrar; a code made with
    ``replaces`` = her address enrols her new home, endorsed (in the log) as
    replacing her; her old home announces the move with the new home's card
    bundle (``whoami --bundle``), and bob, her contact holding acme's anchor
    but not enrolled, moves her over by himself."""
    from onionpost.home import parse_endorsement_line
    from onionpost.proto.trust import stored_endorsement

    async with network(tmp_path, trust_refresh=60.0) as (net, nursery):
        registrar = net.registrar("registrar", refresh=60)
        alice, bob, new = net.node("alice"), net.node("bob"), net.node("alice-new")
        befriend(alice, bob)
        now_ms = int(time.time() * 1000)
        new.store.contacts.add_contact("bob", bob.address, bob.secrets.client_auth_public, now_ms)
        bob.store.trust.add(registrar.anchor, now_ms)
        await registrar.start(nursery)
        for node in (alice, bob, new):
            await node.start(nursery)
        await _enrol(alice, registrar, "Field office 1")
        await until(lambda: _held_serial(alice, registrar) > 0)
        first = await alice.send(bob, "before the move")
        await until(lambda: alice.state(first) == "delivered")
        await until(lambda: (_verdict(bob, alice) or ("",))[0] == "endorsed")
        old = str(alice.address)
        contact_id = bob.contact(alice).id

        # Not enrolled here, or not an address: refused with a clear error, no code.
        for bad, problem in [
            (str(bob.address), "no endpoint this registrar enrolled"),
            ("alice.onion", "not an onion address"),
        ]:
            with pytest.raises(ConfigError, match=problem):
                await registrar.code("", replaces=bad)
        assert registrar.book.open_codes(int(time.time())) == []

        new.store.trust.add(registrar.anchor, now_ms)
        assert new.daemon is not None
        code = await registrar.code("", replaces=old)
        enrolled = await new.daemon.trust.trust_enrol(api.TrustEnrol(code))
        assert (enrolled.address, enrolled.endpoint, enrolled.unit, enrolled.replaces) == (
            str(new.address),
            "Field office 1",
            "Unit U",
            old,
        )
        me = await new.daemon.whoami(api.Whoami())
        proof = parse_endorsement_line(me.endorsement)
        endorsement = stored_endorsement(EndorsementProof.decode(proof).endorsement)
        assert (endorsement.address, endorsement.replaces) == (str(new.address), old)
        index = EndorsementProof.decode(proof).index
        assert (
            registrar.book.directory.statement(index) == EndorsementProof.decode(proof).endorsement
        )

        # The old home announces the move with the new home's bundle.
        assert alice.daemon is not None
        done = await alice.daemon.trust.trust_rotate(
            api.TrustRotate(me.card, base64.b64encode(proof).decode())
        )
        assert (done.address, done.replaces, done.agency) == (str(new.address), old, "acme")
        await until(lambda: bob.store.contacts.contact_by_address(new.address) is not None)
        moved = bob.contact(new)
        assert (moved.id, moved.name) == (contact_id, "alice")
        assert bob.store.contacts.contact_by_address(alice.address) is None
        assert (_verdict(bob, new) or ("",))[0] == "endorsed"
        after = await bob.send(new, "at the new address")
        await until(lambda: bob.state(after) == "delivered")


async def test_a_new_delegation_reaches_the_endpoints_through_renewal(
    tmp_path: Path, clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """trust.md §8.1: acme's registrar runs on a delegation of 10 days. Near
    its end a renewal ends with it; the root's new delegation is handed to
    the running registrar; a1's next renewal carries it, and a2 holds a1
    endorsed after the first delegation has ended."""
    from onionpost.home import AgencyDirectory
    from onionpost.proto.trust import stored_endorsement
    from onionpost.testing.memory import AGENCY_SOURCE

    day = 86_400
    base = time.time()

    def at(days: float) -> None:
        monkeypatch.setattr(time, "time", lambda: base + days * day)

    def own(node: Node) -> tuple[EndorsementProof, int]:
        found = node.store.trust.own()
        assert found is not None
        proof = EndorsementProof.decode(found[1])
        return proof, stored_endorsement(proof.endorsement).valid_until

    async with network(tmp_path, trust_refresh=60.0) as (net, nursery):
        registrar = net.registrar("registrar", refresh=60, lifetime=10 * day)
        first_end = registrar.book.delegation.not_after
        a1, a2 = net.node("a1"), net.node("a2")
        befriend(a1, a2)
        await registrar.start(nursery)
        for node in (a1, a2):
            await node.start(nursery)
        await _enrol(a1, registrar, "Field office 1")
        await _enrol(a2, registrar, "Field office 2")
        assert a1.daemon is not None
        assert a2.daemon is not None
        # Eight days on, the endorsements (7 days) have ended: renewed, until
        # the delegation's end and not a day more.
        at(8)
        a1.daemon.registrar.kick()
        await until(lambda: own(a1)[1] == first_end, seconds=61)
        # The root signs anew, offline; the running registrar takes it.
        agency = AgencyDirectory(net.root / "registrar-agency")
        data = agency.delegate(agency.root(AGENCY_SOURCE), now=int(time.time()))
        assert registrar.server is not None
        await registrar.server.install_delegation(data)
        # A third of a1's endorsement is left: renewed under the new delegation.
        at(9.5)
        a1.daemon.registrar.kick()
        await until(lambda: own(a1)[0].delegation == data, seconds=61)
        assert own(a1)[1] == int(time.time()) + 7 * day
        # The first delegation has ended: a2, holding the list under the new
        # one, holds a1 endorsed from its staple.
        at(11)
        a2.daemon.registrar.kick()
        await until(lambda: own(a2)[0].delegation == data, seconds=61)
        sent = await a1.send(a2, "after the first delegation")
        await until(lambda: a1.state(sent) == "delivered")
        await until(lambda: (_verdict(a2, a1) or ("",))[0] == "endorsed", seconds=61)
        detail = (await a2.daemon.contacts.contact_show(api.ContactShow("a1"))).endorsement
        assert detail is not None
        assert detail.status == "endorsed"
        # Judged on the renewed endorsement, at day 11: valid past the first end.
        assert detail.checked_ms is not None
        assert detail.checked_ms >= (base + 11 * day) * 1000 - 1000
        assert detail.until is not None
        assert detail.until > first_end


async def test_status_and_the_log_say_the_delegation_is_ending(
    tmp_path: Path,
    clock: MockClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Our endorsement ends with the delegation it was signed under (trust.md
    §8.1): within two weeks of that end, status says when, and the daemon logs
    it once a day, until a renewal under a new delegation."""
    from onionpost.home import AgencyDirectory
    from onionpost.testing.memory import AGENCY_SOURCE

    day = 86_400
    base = time.time()
    caplog.set_level(logging.WARNING, logger="onionpost.daemon")

    def own_delegation() -> bytes:
        found = a1.store.trust.own()
        assert found is not None
        return EndorsementProof.decode(found[1]).delegation

    def logged() -> list[str]:
        return [
            r.getMessage() for r in caplog.records if "event=agency_delegation" in r.getMessage()
        ]

    async with network(tmp_path, trust_refresh=3600.0) as (net, nursery):
        registrar = net.registrar("registrar", refresh=3600, lifetime=10 * day)
        end = registrar.book.delegation.not_after
        a1 = net.node("a1")
        await registrar.start(nursery)
        await a1.start(nursery)
        assert a1.daemon is not None
        assert (await a1.daemon.status(api.GetStatus())).delegation_ends is None  # none yet
        await _enrol(a1, registrar, "Field office 1")
        assert (await a1.daemon.status(api.GetStatus())).delegation_ends == end
        await until(lambda: len(logged()) == 1, seconds=61)
        (line,) = logged()
        # When, and nothing else: no address, no key.
        assert re.fullmatch(
            r"event=agency_delegation_ending at=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line
        )
        # Rounds every hour: logged again only a day later.
        first = trio.current_time()
        await until(lambda: len(logged()) == 2, seconds=day + 3700)
        assert trio.current_time() - first >= day
        # The root delegates anew; a renewal (a third of the endorsement
        # left) carries the new delegation: nothing more to say.
        agency = AgencyDirectory(net.root / "registrar-agency")
        data = agency.delegate(agency.root(AGENCY_SOURCE), now=int(time.time()))
        assert registrar.server is not None
        await registrar.server.install_delegation(data)
        monkeypatch.setattr(time, "time", lambda: base + 5 * day)
        a1.daemon.registrar.kick()
        await until(lambda: own_delegation() == data, seconds=61)
        assert (await a1.daemon.status(api.GetStatus())).delegation_ends is None
        # Past the first delegation's end, nothing is said: the new one is far off.
        monkeypatch.setattr(time, "time", lambda: base + 11 * day)
        assert (await a1.daemon.status(api.GetStatus())).delegation_ends is None
        await trio.sleep(day + 3600)
        assert len(logged()) == 2


async def test_the_registrar_is_dialled_under_its_own_handle(
    tmp_path: Path, clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the log names the peer of a dial (its handle): a registrar is no
    mailbox (a trial read 'descriptor_refetch peer=mailbox' for the registrar)."""
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        await alice.start(nursery)
        assert alice.daemon is not None
        handles: list[str] = []

        async def dial(address: object, client_auth: object = None, *, handle: str) -> None:
            handles.append(handle)

        monkeypatch.setattr(alice.daemon.host, "dial", dial)
        await alice.daemon._dial_registrar(bob.address, bytes(32))
        await alice.daemon._dial_mailbox(bob.address, bytes(32))
        assert handles == ["peer=registrar", "peer=mailbox"]
