"""Gossip between endpoints (trust.md §7.2) and staples by rate (§7.1), in
memory: a revocation of one agency reaches an endpoint of a third agency
through an endpoint of a second, which never met the revoked one; two
holders of different branches of a log meet through a third; hostile gossip
changes nothing and the session goes on; a session that stays up takes
newer lists for as long as it lasts; a list learned by gossip is passed on
after the daemon restarts; a newer checkpoint is passed on however it came:
of one's own agency stapled on, of another as gossip."""

from __future__ import annotations

import re
from pathlib import Path

import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.limits import (
    TRUST_GOSSIP_BURST,
    TRUST_GOSSIP_INTERVAL,
    TRUST_STAPLE_BURST,
    TRUST_STAPLE_INTERVAL,
)
from onionpost.proto import messages as m
from onionpost.proto.trust import AgencyLog, Revoked, stored_revocations
from onionpost.proto.trust_session import RevocationBundle
from onionpost.testing.agency import Agency
from onionpost.testing.memory import Node, befriend, network, until
from onionpost.transport import SecureChannel
from tests.daemon._trustkit import (
    endorsed_by,
    hold_anchor,
    import_bundle,
    now,
    refused,
    verdict,
)


def _revoked(reason: str) -> re.Pattern[str]:
    """A revoked contact's verdict: when (as the list states it), by whom, why."""
    return re.compile(rf"refused: revoked \d{{4}}-\d\d-\d\d \d\d:\d\d UTC by acme: {reason}")


def _serial(node: Node, agency: Agency) -> int:
    data = node.store.trust.held().get(agency.anchor.fingerprint, (None, None))[0]
    return 0 if data is None else stored_revocations(data).value.serial


def _checkpoint(node: Node, agency: Agency) -> bytes | None:
    return node.store.trust.held().get(agency.anchor.fingerprint, (None, None))[1]


async def test_a_revocation_reaches_a_third_agency_without_its_registrar(
    tmp_path: Path, clock: MockClock
) -> None:
    """Alice and Mallory are acme's; Xavier is bravo's, Yvonne charlie's, both
    hold acme's anchor. Alice talks with Xavier, Xavier with Yvonne, Yvonne
    with Mallory. Acme revokes Mallory; Alice imports the list and staples it
    to Xavier, who passes it on (gossip) on his open session with Yvonne:
    Yvonne refuses Mallory, having met neither Alice nor acme's registrar."""
    acme, bravo, charlie = (Agency.make(n, now()) for n in ("acme", "bravo", "charlie"))
    async with network(tmp_path) as (net, nursery):
        names = ("alice", "xavier", "yvonne", "mallory")
        alice, xavier, yvonne, mallory = (net.node(n) for n in names)
        befriend(alice, xavier)
        befriend(xavier, yvonne)
        befriend(yvonne, mallory)
        first = acme.revocations(1, now())
        for node in (alice, mallory):
            endorsed_by(node, acme)
            node.store.trust.hold(acme.anchor.fingerprint, first, None)
        endorsed_by(xavier, bravo)
        endorsed_by(yvonne, charlie)
        hold_anchor(acme, xavier, yvonne)
        for node in (alice, xavier, yvonne, mallory):
            await node.start(nursery)
        await mallory.send(yvonne, "hello")
        await until(lambda: (verdict(yvonne, mallory) or ("",))[0] == "endorsed")
        # Sessions up: alice-xavier, and xavier-yvonne kept up by a conversation.
        await alice.send(xavier, "hi")
        await until(lambda: _serial(xavier, acme) == 1)

        bundle = RevocationBundle(
            acme.delegation,
            acme.revocations(2, now(), Revoked(str(mallory.address), now(), "seized")),
            acme.checkpoint(),
        ).encode()
        await import_bundle(alice, bundle)
        await xavier.send(yvonne, "news")  # a session up between them
        await until(lambda: _serial(yvonne, acme) == 2)
        await until(lambda: bool(_revoked("seized").fullmatch(refused(yvonne, mallory))))
        assert verdict(yvonne, mallory) == ("refused", refused(yvonne, mallory))
        assert yvonne.store.trust.held()[acme.anchor.fingerprint][1] == acme.checkpoint()
        # Yvonne never met alice: the list came through xavier.
        assert yvonne.store.contacts.contact_by_address(alice.address) is None
        # And what she queues for mallory waits; mallory's sessions are refused.
        held = await yvonne.send(mallory, "for mallory")
        await mallory.send(yvonne, "let me in")
        assert mallory.engine is not None
        await until(lambda: mallory.engine.status(mallory.contact(yvonne).id).failures >= 2)  # type: ignore[union-attr]
        assert yvonne.state(held) == "queued"


async def test_a_split_view_is_caught_by_a_third_endpoint(tmp_path: Path, clock: MockClock) -> None:
    """Paul (bravo) and Quinn (charlie) each imported a list of acme with a
    checkpoint of acme's log of one size on another branch (a stolen issuing
    key showing each a private view). Neither meets the other; both talk
    with Rita (delta), who holds acme's anchor: she holds Paul's branch, then
    meets Quinn's, a fork alarm holding both signed checkpoints."""
    acme, bravo, charlie, delta = (
        Agency.make(n, now()) for n in ("acme", "bravo", "charlie", "delta")
    )
    async with network(tmp_path) as (net, nursery):
        paul, quinn, rita = net.node("paul"), net.node("quinn"), net.node("rita")
        befriend(paul, rita)
        befriend(quinn, rita)
        for node, agency in ((paul, bravo), (quinn, charlie), (rita, delta)):
            endorsed_by(node, agency)
            hold_anchor(acme, node)
        listed = acme.revocations(1, now())
        public = acme.checkpoint()
        branch = AgencyLog(acme.anchor.log_origin, [acme.delegation])
        while branch.size < acme.log.size:
            branch.append(b"an endorsement only quinn's side sees")
        forked = branch.checkpoint(acme.issuer)
        for node in (paul, rita):
            await node.start(nursery)
        await import_bundle(paul, RevocationBundle(acme.delegation, listed, public).encode())
        await paul.send(rita, "hello")
        await until(lambda: _checkpoint(rita, acme) == public)
        assert rita.store.trust.alarms() == []
        await quinn.start(nursery)
        await import_bundle(quinn, RevocationBundle(acme.delegation, listed, forked).encode())
        await quinn.send(rita, "hello")
        await until(lambda: bool(rita.store.trust.alarms()))
        (alarm,) = rita.store.trust.alarms()
        assert (alarm.kind, alarm.first, alarm.second) == ("fork", public, forked)
        assert rita.store.trust.held()[acme.anchor.fingerprint][1] == public  # kept
        assert rita.daemon is not None
        assert (await rita.daemon.status(api.GetStatus())).trust_alarms == 1


async def _sync(channel: SecureChannel, nonce: int) -> list[object]:
    """Send a Ping and read up to its Pong: the receiver has handled every
    record sent before it."""
    await channel.send(m.Ping(nonce))
    answers: list[object] = []
    while not any(isinstance(a, m.Pong) and a.nonce == nonce for a in answers):
        answers.append(await channel.receive())
    return answers


async def test_hostile_gossip_changes_nothing_and_the_session_goes_on(
    tmp_path: Path, clock: MockClock
) -> None:
    acme = Agency.make("acme", now())
    impostor = Agency.make("acme", now())  # another root under acme's name
    async with network(tmp_path) as (net, nursery):
        mallory, bob = net.node("mallory"), net.node("bob")
        befriend(mallory, bob)
        good_list = acme.revocations(1, now())
        hold_anchor(acme, bob)
        bob.store.trust.hold(acme.anchor.fingerprint, good_list, acme.checkpoint())
        await bob.start(nursery)
        before = (bob.store.trust.held(), bob.store.trust.alarms(), bob.store.trust.endorsements())
        other = Agency.make("bravo", now())
        bad = [
            m.TrustGossip(b"\x00not a note", good_list, b""),  # malformed
            m.TrustGossip(b"x" * 20_000, good_list, b""),  # larger than a statement
            m.TrustGossip(acme.delegation, b"not a note", b""),
            m.TrustGossip(impostor.delegation, impostor.revocations(9, now()), b""),  # forged
            m.TrustGossip(acme.delegation, other.revocations(9, now()), b""),  # another key's
            m.TrustGossip(acme.delegation, b"", impostor.checkpoint()),  # forged checkpoint
            m.TrustGossip(acme.delegation, acme.revocations(7, now()), impostor.checkpoint()),
            m.TrustGossip(other.delegation, other.revocations(9, now()), b""),  # no anchor
        ]
        channel, _stream = await net.connect_raw(mallory, bob)
        for record in bad:
            await channel.send(record)
        await _sync(channel, 1)
        after = (bob.store.trust.held(), bob.store.trust.alarms(), bob.store.trust.endorsements())
        assert after == before
        # The session goes on: a text is stored and acknowledged...
        await channel.send(m.Text(bytes([9]) * 16, 1, "hello", "text/plain"))
        with trio.fail_after(30):
            while not isinstance(answer := await channel.receive(), m.Ack):
                pass
        assert bytes([9]) * 16 in answer.ids
        # ... and good gossip on it is held (so the bad was refused for being bad).
        newer = acme.revocations(8, now())
        await channel.send(m.TrustGossip(acme.delegation, newer, acme.checkpoint()))
        await _sync(channel, 3)
        assert bob.store.trust.held()[acme.anchor.fingerprint] == (newer, acme.checkpoint())


async def test_gossip_past_the_pace_is_ignored_until_the_budget_grows(
    tmp_path: Path, clock: MockClock
) -> None:
    acme = Agency.make("acme", now())
    async with network(tmp_path) as (net, nursery):
        mallory, bob = net.node("mallory"), net.node("bob")
        befriend(mallory, bob)
        hold_anchor(acme, bob)
        await bob.start(nursery)
        lists = [acme.revocations(serial, now()) for serial in range(1, TRUST_GOSSIP_BURST + 3)]
        channel, _stream = await net.connect_raw(mallory, bob)
        for data in lists:
            await channel.send(m.TrustGossip(acme.delegation, data, b""))
        await _sync(channel, 1)
        assert _serial(bob, acme) == TRUST_GOSSIP_BURST  # the rest ignored
        await trio.sleep(2 * TRUST_GOSSIP_INTERVAL)
        await channel.send(m.TrustGossip(acme.delegation, lists[-1], b""))
        await _sync(channel, 2)
        assert _serial(bob, acme) == len(lists)


async def test_a_session_that_stays_up_takes_newer_lists_past_the_burst(
    tmp_path: Path, clock: MockClock
) -> None:
    """Staples are taken by rate, not a count a session (trust.md §7.1): a
    contact that keeps its session up while it comes to hold more newer lists
    than a burst still hands each one on, on the same session."""
    acme = Agency.make("acme", now())
    async with network(tmp_path) as (net, nursery):
        mallory, bob = net.node("mallory"), net.node("bob")
        befriend(mallory, bob)
        hold_anchor(acme, bob)
        await bob.start(nursery)
        proof = acme.endorse(mallory.secrets.identity, now()).encode()
        rounds = TRUST_STAPLE_BURST + 4
        lists = [acme.revocations(serial, now()) for serial in range(1, rounds + 1)]
        channel, _stream = await net.connect_raw(mallory, bob)
        # A burst at once: the first TRUST_STAPLE_BURST are taken, no more.
        for data in lists[: TRUST_STAPLE_BURST + 1]:
            await channel.send(m.TrustStaple(proof, data, b""))
        await _sync(channel, 1)
        assert _serial(bob, acme) == TRUST_STAPLE_BURST
        # Then, on the same session, one newer list each interval: each taken.
        for n, data in enumerate(lists[TRUST_STAPLE_BURST + 1 :], start=2):
            await trio.sleep(TRUST_STAPLE_INTERVAL)
            await channel.send(m.TrustStaple(proof, data, b""))
            await _sync(channel, n)
            assert _serial(bob, acme) == TRUST_STAPLE_BURST + n
        assert verdict(bob, mallory) is not None
        assert (verdict(bob, mallory) or ("",))[0] == "endorsed"


async def test_an_endpoint_paces_its_own_staples_and_sends_the_latest(
    tmp_path: Path, clock: MockClock
) -> None:
    """Alice imports more newer lists of her agency than a burst while her
    session with Bob is up: what the pace holds back goes later on that
    session, the latest list, without a new dial."""
    acme = Agency.make("acme", now())
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        endorsed_by(alice, acme)
        hold_anchor(acme, bob)
        for node in (alice, bob):
            await node.start(nursery)
        await alice.send(bob, "hello")
        await until(lambda: verdict(bob, alice) is not None)
        dials = (alice.dials, bob.dials)
        count = TRUST_STAPLE_BURST + 3
        for serial in range(1, count + 1):
            await import_bundle(
                alice,
                RevocationBundle(
                    acme.delegation, acme.revocations(serial, now()), acme.checkpoint()
                ).encode(),
            )
        await until(lambda: _serial(bob, acme) >= TRUST_STAPLE_BURST - 1)
        assert _serial(bob, acme) < count  # held back by the pace
        # Bob keeps the conversation going; the held-back staple follows.
        for _ in range(8):
            if _serial(bob, acme) == count:
                break
            await bob.send(alice, "still here")
            await trio.sleep(TRUST_STAPLE_INTERVAL / 3)
        assert _serial(bob, acme) == count
        assert (alice.dials, bob.dials) == dials  # the same session


async def test_a_list_learned_by_gossip_is_passed_on_after_a_restart(
    tmp_path: Path, clock: MockClock
) -> None:
    """Rita (delta) learns acme's list only by gossip, from Paul (bravo), who
    imported it. Her daemon restarts; then Sam (charlie), who holds acme's
    anchor and never had the list, talks with her: she passes it on, with
    the delegation it came with (kept in her store: none of her contacts is
    acme's, so no endorsement of theirs carries one)."""
    acme, bravo, charlie, delta = (
        Agency.make(n, now()) for n in ("acme", "bravo", "charlie", "delta")
    )
    async with network(tmp_path) as (net, nursery):
        paul, rita, sam = net.node("paul"), net.node("rita"), net.node("sam")
        befriend(paul, rita)
        befriend(rita, sam)
        for node, agency in ((paul, bravo), (rita, delta), (sam, charlie)):
            endorsed_by(node, agency)
            hold_anchor(acme, node)
        for node in (paul, rita):
            await node.start(nursery)
        listed = acme.revocations(1, now())
        await import_bundle(
            paul, RevocationBundle(acme.delegation, listed, acme.checkpoint()).encode()
        )
        await paul.send(rita, "hello")
        await until(lambda: _serial(rita, acme) == 1)
        paul.stop()
        rita.stop()
        await until(lambda: not (paul.up or rita.up))
        await rita.start(nursery)
        await sam.start(nursery)
        assert _serial(sam, acme) == 0
        await sam.send(rita, "hello")
        await until(lambda: _serial(sam, acme) == 1)
        assert _checkpoint(sam, acme) == acme.checkpoint()
        assert sam.store.contacts.contact_by_address(paul.address) is None


async def test_a_newer_checkpoint_of_our_own_agency_by_gossip_is_stapled_on(
    tmp_path: Path, clock: MockClock
) -> None:
    """Alice, Bob and Carol are acme's, with sessions up between Alice and Bob
    and between Bob and Carol. A contact of Alice's gossips her a larger
    checkpoint of acme's log (no newer list): she holds it and staples it on
    to Bob, who held a smaller one, and Bob (from her staple) to Carol."""
    acme = Agency.make("acme", now())
    async with network(tmp_path) as (net, nursery):
        names = ("alice", "bob", "carol", "mallory")
        alice, bob, carol, mallory = (net.node(n) for n in names)
        befriend(alice, bob)
        befriend(bob, carol)
        befriend(mallory, alice)
        for node in (alice, bob, carol):
            endorsed_by(node, acme)
            await node.start(nursery)
        await alice.send(bob, "hello")
        await until(lambda: verdict(bob, alice) is not None)  # alice's staple came
        await bob.send(carol, "hello")
        await until(lambda: verdict(carol, bob) is not None)
        dials = (alice.dials, bob.dials, carol.dials)
        before = (_checkpoint(bob, acme), _checkpoint(carol, acme))
        acme.endorse(mallory.secrets.identity, now())  # the log grows
        newest = acme.checkpoint()
        assert newest not in before
        channel, _stream = await net.connect_raw(mallory, alice)
        await channel.send(m.TrustGossip(acme.delegation, b"", newest))
        await _sync(channel, 1)
        assert _checkpoint(alice, acme) == newest
        await until(lambda: _checkpoint(bob, acme) == newest)
        await until(lambda: _checkpoint(carol, acme) == newest)
        assert (alice.dials, bob.dials, carol.dials) == dials  # on the sessions up
        assert _serial(carol, acme) == 0  # no list came with it


async def test_a_newer_checkpoint_from_a_staple_is_passed_on_as_gossip(
    tmp_path: Path, clock: MockClock
) -> None:
    """Alice (acme) talks with Xavier (bravo), Xavier with Yvonne (charlie),
    both holding acme's anchor. Alice comes to hold a larger checkpoint of
    acme's log (by gossip, no newer list) and staples it on to Xavier, who
    passes it on to Yvonne on the session they have up."""
    acme, bravo, charlie = (Agency.make(n, now()) for n in ("acme", "bravo", "charlie"))
    async with network(tmp_path) as (net, nursery):
        names = ("alice", "xavier", "yvonne", "mallory")
        alice, xavier, yvonne, mallory = (net.node(n) for n in names)
        befriend(alice, xavier)
        befriend(xavier, yvonne)
        befriend(mallory, alice)
        endorsed_by(alice, acme)
        alice.store.trust.hold(
            acme.anchor.fingerprint, acme.revocations(1, now()), _checkpoint(alice, acme)
        )
        endorsed_by(xavier, bravo)
        endorsed_by(yvonne, charlie)
        hold_anchor(acme, xavier, yvonne)
        for node in (alice, xavier, yvonne):
            await node.start(nursery)
        await alice.send(xavier, "hi")
        await until(lambda: _serial(xavier, acme) == 1)
        await xavier.send(yvonne, "hi")
        await until(lambda: _serial(yvonne, acme) == 1)
        dials = (alice.dials, xavier.dials, yvonne.dials)
        acme.endorse(mallory.secrets.identity, now())  # the log grows
        newest = acme.checkpoint()
        assert _checkpoint(yvonne, acme) != newest
        channel, _stream = await net.connect_raw(mallory, alice)
        await channel.send(m.TrustGossip(acme.delegation, b"", newest))
        await _sync(channel, 1)
        await until(lambda: _checkpoint(xavier, acme) == newest)  # alice's staple
        await until(lambda: _checkpoint(yvonne, acme) == newest)  # xavier's gossip
        assert (alice.dials, xavier.dials, yvonne.dials) == dials  # on the sessions up
        assert _serial(yvonne, acme) == 1
