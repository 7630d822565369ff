"""Rotation without a reset (trust.md §6), in memory on MockClock: alice, an
endpoint of agency acme, moves to a new onion address; her contact bob moves
her over by himself, with her history, whether he is there when she announces
it or away (he finds it in his mailbox), and what waited for her goes to the
new address once. A rotation that does not hold (forged, another agency,
``replaces`` naming another address, no endorsement to move from) changes
nothing, is logged, and the session goes on.

The new address is a node of its own here (``alice-new``) holding bob as a
contact: what the same home holds once it has moved (the command that makes
the new identity in the home is not built yet, trust.md §0).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.daemon.delivery import _session
from onionpost.errors import ConfigError, UnknownContactError
from onionpost.proto import evidence, note
from onionpost.proto.session import PeerDecision
from onionpost.proto.trust import Revoked
from onionpost.proto.trust_session import RevocationBundle
from onionpost.testing.agency import Agency
from onionpost.testing.memory import MailboxNode, Network, Node, befriend, network, until
from tests.daemon._trustkit import endorse, hold_anchor, hold_list, import_bundle, now

pytestmark = pytest.mark.trio

LONG = 600.0  # virtual seconds


async def _stop(node: Node | MailboxNode) -> None:
    node.stop()
    await until(lambda: node.scope is None)


def _bodies(node: Node, contact_id: int) -> list[str]:
    return [
        s.body or ""
        for s in node.store.messages.inbox(limit=1000)
        if s.contact_id == contact_id and s.body is not None
    ]


def _endorsement_held(bob: Node, alice: Node) -> bool:
    return bob.store.trust.endorsements().get(bob.contact(alice).id) is not None


def _moved(bob: Node, new: Node) -> bool:
    return bob.store.contacts.contact_by_address(new.address) is not None


@asynccontextmanager
async def _pair(
    tmp_path: Path, *, endorsed: bool = True, **config: object
) -> AsyncIterator[tuple[Network, trio.Nursery, Agency, Node, Node, Node]]:
    """alice and bob, contacts, both holding acme's anchor; alice endorsed by
    acme with a fresh list, so bob holds her endorsement after a session; and
    alice's new address, which has bob as its contact (not started)."""
    acme = Agency.make("acme", now())
    async with network(tmp_path, **config) as (net, nursery):
        alice, bob, new = net.node("alice"), net.node("bob"), net.node("alice-new")
        befriend(alice, bob)
        now_ms = now() * 1000
        new.store.contacts.add_contact("bob", bob.address, bob.secrets.client_auth_public, now_ms)
        hold_anchor(acme, alice, bob, new)
        if endorsed:
            endorse(alice, acme)
        hold_list(alice, acme)
        yield net, nursery, acme, alice, bob, new


def _rotate(alice: Node, new: Node, proof: bytes) -> None:
    """What the rotation command leaves in alice's home: the move to announce."""
    alice.store.trust.set_own_rotation(proof, new.secrets.client_auth_public, now() * 1000)


async def test_a_contact_there_moves_over_with_its_history(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onionpost")
    async with _pair(tmp_path) as (_net, nursery, acme, alice, bob, new):
        for node in (alice, bob, new):
            await node.start(nursery)
        before = await alice.send(bob, "before the move")
        await until(lambda: alice.state(before) == "delivered", LONG)
        await until(lambda: _endorsement_held(bob, alice))
        contact_id = bob.contact(alice).id
        old_address = alice.address

        # alice moves: endorsed at the new address, replacing the old, signed
        # by acme and by her old key; her daemon starts again with it.
        proof = acme.endorse(
            new.secrets.identity, now(), replaces=str(old_address), also=[alice.secrets.identity]
        ).encode()
        await _stop(alice)
        _rotate(alice, new, proof)
        await alice.start(nursery)
        await until(lambda: _moved(bob, new), LONG)

        moved = bob.contact(new)
        assert (moved.id, moved.name) == (contact_id, "alice")
        assert moved.client_auth_public == new.secrets.client_auth_public
        assert bob.store.contacts.contact_by_address(old_address) is None
        assert _bodies(bob, contact_id) == ["before the move"]  # her history stays hers
        assert bob.store.trust.rotation_told() == frozenset()  # bob announces nothing
        assert bob.contact(new).id in alice.store.trust.rotation_told()
        assert alice.daemon is not None
        moving = (await alice.daemon.status(api.GetStatus())).rotation
        assert moving == api.RotationStatus(str(new.address), told=1, contacts=1)
        assert bob.daemon is not None
        listed = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}
        shown = listed["alice"]
        assert shown.address == str(new.address)
        assert shown.rotated == f"moved from {old_address} by agency acme and the old key"
        assert shown.rotated_ms is not None
        assert shown.endorsement_status == "endorsed"
        # contact show: the move and the endorsement it moved under, in detail.
        detail = await bob.daemon.contacts.contact_show(api.ContactShow("alice"))
        assert detail.contact == shown
        assert detail.rotated_from == str(old_address)
        assert detail.endorsement is not None
        assert detail.endorsement.replaces == str(old_address)
        assert (
            await bob.daemon.contacts.contact_show(api.ContactShow(str(new.address)))
        ).contact == shown
        with pytest.raises(UnknownContactError):
            await bob.daemon.contacts.contact_show(api.ContactShow(str(old_address)))
        assert "event=contact_rotated" in caplog.text
        # Settled outside the session that carried it, which the move ended.
        await until(lambda: "event=contact_move_settled" in caplog.text)
        # bob's onion service lets in the new tor key, not the old one.
        authorized = bob.daemon.authorized_clients()
        assert new.secrets.client_auth_public in authorized
        assert alice.secrets.client_auth_public not in authorized
        # The old address is no peer of bob's now: its sessions are refused.
        assert bob.engine is not None
        assert bob.engine.decide(old_address) is PeerDecision.REFUSE
        assert bob.engine.decide(new.address) is PeerDecision.ACCEPT

        # What bob sends now goes to the new address, once.
        after = await bob.send(new, "after the move")
        await until(lambda: bob.state(after) == "delivered", LONG)
        assert _bodies(new, new.contact(bob).id) == ["after the move"]
        assert _bodies(alice, alice.contact(bob).id) == []
        # The new address keeps a log of its own: bob witnesses it from its
        # first checkpoint, and what he held of the old address's log is no
        # fork of it (no alarm for a move).
        await until(lambda: bob.store.evidence.witnessed(contact_id) is not None, LONG)
        await until(
            lambda: _witnessed_origin(bob, contact_id) == evidence.origin(str(new.address)), LONG
        )
        assert bob.store.evidence.alarms() == []
        assert "evidence_alarm" not in caplog.text


def _witnessed_origin(node: Node, contact_id: int) -> str | None:
    held = node.store.evidence.witnessed(contact_id)
    return None if held is None else note.Checkpoint.from_text(held.text).origin


async def test_a_contact_away_moves_over_through_its_mailbox(
    tmp_path: Path, clock: MockClock
) -> None:
    """bob is away when alice moves: her announcement waits in his mailbox;
    back, he moves her over from it (her old address gone by then) and what he
    had queued for her reaches the new address exactly once."""
    async with _pair(tmp_path, mailbox_after=5.0) as (net, nursery, acme, alice, bob, new):
        box = net.mailbox("box-b")
        for node in (box, alice, bob, new):
            await node.start(nursery)
        assert bob.daemon is not None
        await bob.daemon.mailbox_pair(api.MailboxPair(await box.code()))
        first = await bob.send(alice, "hello")
        await until(lambda: bob.state(first) == "delivered", LONG)
        await until(lambda: alice.contact(bob).mailbox == box.address, LONG)
        await until(lambda: _endorsement_held(bob, alice))
        contact_id = bob.contact(alice).id
        await until(lambda: alice.secrets.client_auth_public in box.authorized(), LONG)

        # alice goes; bob queues a text for her, then goes away too.
        await _stop(alice)
        queued = await bob.send(alice, "queued while she moves")
        await _stop(bob)

        old_address = alice.address
        proof = acme.endorse(new.secrets.identity, now(), replaces=str(old_address)).encode()
        _rotate(alice, new, proof)
        await alice.start(nursery)  # under her old address, with the move to announce
        at_alice = alice.contact(bob).id
        await until(lambda: at_alice in alice.store.trust.rotation_told(), LONG)  # deposited
        await _stop(alice)  # and her old address is gone

        await bob.start(nursery)
        await until(lambda: _moved(bob, new), LONG)
        await until(lambda: bob.state(queued) == "delivered", LONG)
        assert bob.contact(new).id == contact_id
        assert _bodies(new, new.contact(bob).id) == ["queued while she moves"]
        assert _bodies(alice, alice.contact(bob).id) == ["hello"]
        shown = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}[
            "alice"
        ]
        assert shown.rotated == f"moved from {old_address} by agency acme"
        # Registered at bob's mailbox under the new address: it may deposit there.
        await until(lambda: bob.contact(new).mailbox_registered, LONG)
        assert new.secrets.client_auth_public in box.authorized()
        # The new address is told bob's mailbox (the old one was).
        await until(lambda: new.contact(bob).mailbox == box.address, LONG)
        # and deregistered under the old one: its tor key is let in no more.
        await until(lambda: alice.secrets.client_auth_public not in box.authorized(), LONG)
        assert bob.store.trust.moved_registered() == []


REFUSED = ["another agency", "a forged endorsement", "replaces another address", "no endorsement"]


@pytest.mark.parametrize("case", REFUSED)
async def test_a_rotation_that_does_not_hold_changes_nothing(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture, case: str
) -> None:
    caplog.set_level(logging.INFO, logger="onionpost")
    async with _pair(tmp_path, endorsed=case != "no endorsement") as (
        net,
        nursery,
        acme,
        alice,
        bob,
        new,
    ):
        other = Agency.make("bravo" if case == "another agency" else "acme", now())
        if case == "another agency":
            hold_anchor(other, bob)
        signer = other if case in {"another agency", "a forged endorsement"} else acme
        someone = net.node("someone").address
        replaces = str(someone if case == "replaces another address" else alice.address)
        proof = signer.endorse(new.secrets.identity, now(), replaces=replaces).encode()
        for node in (alice, bob, new):
            await node.start(nursery)
        _rotate(alice, new, proof)
        first = await alice.send(bob, "one")
        await until(lambda: alice.state(first) == "delivered", LONG)
        if case != "no endorsement":
            await until(
                lambda: bob.store.trust.endorsements().get(bob.contact(alice).id) is not None
            )
        # A new session carries the rotation (sent at every session's start).
        await _stop(alice)
        await alice.start(nursery)
        await until(lambda: "event=rotation_refused" in caplog.text, LONG)
        # Nothing changed, and the session goes on.
        assert not _moved(bob, new)
        assert bob.contact(alice).address == alice.address
        assert bob.store.trust.rotations() == {}
        second = await alice.send(bob, "two")
        await until(lambda: alice.state(second) == "delivered", LONG)
        assert _bodies(bob, bob.contact(alice).id) == ["one", "two"]


async def test_announcing_a_move_while_sessions_are_up_and_every_bad_input(
    tmp_path: Path, clock: MockClock
) -> None:
    """``trust_rotate`` (the local API of ``onionpost trust rotate``) checks the
    move before it keeps it: our agency, our address replaced, the card's
    address endorsed; a good one goes at once on the session that is up."""
    async with _pair(tmp_path) as (net, nursery, acme, alice, bob, new):
        for node in (alice, bob, new):
            await node.start(nursery)
        first = await alice.send(bob, "hello")
        await until(lambda: alice.state(first) == "delivered", LONG)
        await until(lambda: _endorsement_held(bob, alice))
        assert alice.daemon is not None
        assert alice.engine is not None
        assert alice.engine.reachable(alice.contact(bob).id)
        card = new.card()
        someone = net.node("someone")
        bravo = Agency.make("bravo", now())

        def proof(signer: Agency, who: Node, replaces: str) -> str:
            data = signer.endorse(who.secrets.identity, now(), replaces=replaces).encode()
            return base64.b64encode(data).decode()

        old = str(alice.address)
        bad = [
            (card, proof(bravo, new, old), "not by acme"),
            (card, proof(acme, new, str(someone.address)), "cannot move this endpoint"),
            (card, proof(acme, new, ""), "cannot move this endpoint"),
            (card, proof(acme, someone, old), "wrong-address"),
            (alice.card(), proof(acme, new, old), "this endpoint's own"),
            (card, "not base64!", "base64"),
            (card, base64.b64encode(b"garbage").decode(), "does not verify"),
        ]
        for card_text, data, problem in bad:
            with pytest.raises(ConfigError, match=problem):
                await alice.daemon.trust.trust_rotate(api.TrustRotate(card_text, data))
            assert alice.store.trust.own_rotation() is None  # nothing kept
        assert not _moved(bob, new)

        done = await alice.daemon.trust.trust_rotate(api.TrustRotate(card, proof(acme, new, old)))
        assert (done.address, done.replaces, done.agency, done.proof) == (
            str(new.address),
            old,
            "acme",
            "agency",
        )
        assert done.contacts == 1
        # Told on the session that was up, without a new one.
        await until(lambda: _moved(bob, new), LONG)
        after = await bob.send(new, "at the new address")
        await until(lambda: bob.state(after) == "delivered", LONG)
        assert _bodies(new, new.contact(bob).id) == ["at the new address"]


async def test_a_daemon_with_no_endorsement_of_its_own_cannot_announce(
    tmp_path: Path, clock: MockClock
) -> None:
    async with _pair(tmp_path, endorsed=False) as (_net, nursery, acme, alice, _bob, new):
        await alice.start(nursery)
        assert alice.daemon is not None
        data = acme.endorse(new.secrets.identity, now(), replaces=str(alice.address)).encode()
        with pytest.raises(ConfigError, match="own endorsement first"):
            await alice.daemon.trust.trust_rotate(
                api.TrustRotate(new.card(), base64.b64encode(data).decode())
            )
        assert alice.store.trust.own_rotation() is None


async def test_a_contact_moves_away_from_its_revoked_address_through_the_mailbox(
    tmp_path: Path, clock: MockClock
) -> None:
    """The compromise case, bob away while alice announces: her old address
    is revoked; her move, deposited in his mailbox, is allowed and shown as
    a move away from a revoked address, and the refusal ends with it (the
    new address is endorsed): what bob held for her goes there."""
    async with _pair(tmp_path, mailbox_after=5.0) as (net, nursery, acme, alice, bob, new):
        box = net.mailbox("box-b")
        for node in (box, alice, bob, new):
            await node.start(nursery)
        assert bob.daemon is not None
        await bob.daemon.mailbox_pair(api.MailboxPair(await box.code()))
        first = await bob.send(alice, "hello")
        await until(lambda: bob.state(first) == "delivered", LONG)
        await until(lambda: alice.contact(bob).mailbox == box.address, LONG)
        await until(lambda: _endorsement_held(bob, alice))
        await _stop(alice)

        revoking = acme.revocations(2, now(), Revoked(str(alice.address), now(), "seized"))
        bundle = RevocationBundle(acme.delegation, revoking, acme.checkpoint()).encode()
        await import_bundle(bob, bundle)
        held = await bob.send(alice, "held while she is revoked")
        await _stop(bob)

        old_address = alice.address
        proof = acme.endorse(new.secrets.identity, now(), replaces=str(old_address)).encode()
        _rotate(alice, new, proof)
        await alice.start(nursery)  # bob is away: her move goes to his mailbox
        await until(lambda: alice.contact(bob).id in alice.store.trust.rotation_told(), LONG)
        await _stop(alice)
        await bob.start(nursery)
        await until(lambda: _moved(bob, new), LONG)
        assert bob.daemon is not None
        shown = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}[
            "alice"
        ]
        assert shown.rotated == f"moved from {old_address} (a revoked address) by agency acme"
        assert shown.endorsement_status == "endorsed"
        await until(lambda: bob.state(held) == "delivered", LONG)
        assert _bodies(new, new.contact(bob).id) == ["held while she is revoked"]


async def test_a_revoked_address_is_taken_for_its_move_alone_in_a_session(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """No mailbox: bob refuses alice's revoked address, yet a session from it
    is taken for her move alone (trust.md §6.3, §7.4). Without a move nothing
    she sends is taken and nothing goes to her; with one, she moves, and
    what bob held for her goes to the new address. What the seized address
    sent is never stored at bob: the old home refuses it after the move."""
    caplog.set_level(logging.INFO, logger="onionpost")
    async with _pair(tmp_path) as (_net, nursery, acme, alice, bob, new):
        for node in (alice, bob, new):
            await node.start(nursery)
        first = await alice.send(bob, "hello")
        await until(lambda: alice.state(first) == "delivered", LONG)
        await until(lambda: _endorsement_held(bob, alice))
        contact_id = bob.contact(alice).id
        await _stop(bob)
        seized = await alice.send(bob, "from the seized address")
        await _stop(alice)

        await bob.start(nursery)
        revoking = acme.revocations(2, now(), Revoked(str(alice.address), now(), "seized"))
        await import_bundle(
            bob, RevocationBundle(acme.delegation, revoking, acme.checkpoint()).encode()
        )
        held = await bob.send(alice, "held while she is revoked")

        # No move: her session is taken for one alone; nothing else is.
        await alice.start(nursery)
        await until(lambda: "event=session_move_only_ended" in caplog.text, LONG)
        assert "moved=no" in caplog.text
        assert _bodies(bob, contact_id) == ["hello"]
        assert alice.state(seized) in {"queued", "sent"}  # not acknowledged
        assert bob.state(held) == "queued"
        assert bob.engine is not None
        assert bob.engine.status(contact_id).refused.startswith("refused: revoked")
        await _stop(alice)

        old_address = alice.address
        proof = acme.endorse(new.secrets.identity, now(), replaces=str(old_address)).encode()
        _rotate(alice, new, proof)
        await alice.start(nursery)
        await until(lambda: _moved(bob, new), LONG)
        assert bob.daemon is not None
        shown = {c.name: c for c in await bob.daemon.contacts.contact_list(api.ContactList())}[
            "alice"
        ]
        assert shown.rotated == f"moved from {old_address} (a revoked address) by agency acme"
        assert shown.endorsement_status == "endorsed"
        await until(lambda: bob.state(held) == "delivered", LONG)
        assert _bodies(new, new.contact(bob).id) == ["held while she is revoked"]
        # Told, and what the seized address sent refused at its home.
        assert alice.daemon is not None
        moving = (await alice.daemon.status(api.GetStatus())).rotation
        assert moving == api.RotationStatus(str(new.address), told=1, contacts=1)
        await until(lambda: alice.state(seized) == "refused", LONG)
        assert _bodies(bob, contact_id) == ["hello"]


def _proof(acme: Agency, new: Node, old: Node) -> str:
    data = acme.endorse(new.secrets.identity, now(), replaces=str(old.address)).encode()
    return base64.b64encode(data).decode()


async def test_the_old_home_refuses_a_send_to_a_contact_told_of_the_move(
    tmp_path: Path, clock: MockClock
) -> None:
    """Once bob is told of alice's move he takes nothing from her old address:
    a send to him from the old home is refused at once (it could never
    arrive), naming the new address; forward too. Before he is told, a send
    is taken (the move may still reach him with it)."""
    async with _pair(tmp_path) as (net, nursery, acme, alice, bob, new):
        carol = net.node("carol")
        befriend(alice, carol)
        for node in (alice, bob, new):
            await node.start(nursery)
        first = await alice.send(bob, "hello")
        await until(lambda: alice.state(first) == "delivered", LONG)
        await until(lambda: _endorsement_held(bob, alice))
        assert alice.daemon is not None
        last = await alice.send(bob, "last before the move")
        await alice.daemon.trust.trust_rotate(api.TrustRotate(new.card(), _proof(acme, new, alice)))
        await until(lambda: alice.contact(bob).id in alice.store.trust.rotation_told(), LONG)
        await until(lambda: _moved(bob, new), LONG)
        # Queued before the move, on the session up: it went ahead of the move.
        await until(lambda: alice.state(last) == "delivered", LONG)
        assert _bodies(bob, bob.contact(new).id) == ["hello", "last before the move"]

        refused = f"moved to {new.address}: 'bob' now accepts only the new address"
        depth = alice.store.outbox.outbox_depth()
        with pytest.raises(ConfigError, match=refused):
            await alice.daemon.messages.send_text(api.SendText("bob", "lost"))
        with pytest.raises(ConfigError, match=refused):
            await alice.daemon.messages.send_texts(api.SendTexts("bob", (api.TextItem("lost"),)))
        source = tmp_path / "file.txt"
        source.write_text("lost")
        with pytest.raises(ConfigError, match=refused):
            await alice.daemon.messages.send_file(api.SendFile("bob", str(source)))
        with pytest.raises(ConfigError, match=refused):
            await alice.daemon.messages.forward(api.Forward(first.hex(), "bob", contact="bob"))
        assert alice.store.outbox.outbox_depth() == depth  # nothing queued
        # carol, not told yet (not there), still takes a send from here.
        queued = await alice.daemon.messages.send_text(api.SendText("carol", "still here"))
        assert queued.state == api.MessageState.QUEUED


async def test_what_waited_at_the_old_home_is_not_left_waiting_silently(
    tmp_path: Path, clock: MockClock
) -> None:
    """Texts queued at alice's old home while bob was away, then her move
    announced: when bob comes back, the session that tells him of the move
    carries them first, so each is delivered once (none stranded), and
    nothing follows the move on it."""
    async with _pair(tmp_path) as (_net, nursery, acme, alice, bob, new):
        for node in (alice, bob, new):
            await node.start(nursery)
        first = await alice.send(bob, "hello")
        await until(lambda: alice.state(first) == "delivered", LONG)
        await until(lambda: _endorsement_held(bob, alice))
        await _stop(bob)
        waiting = [await alice.send(bob, f"waiting {i}") for i in range(3)]
        assert alice.daemon is not None
        await alice.daemon.trust.trust_rotate(api.TrustRotate(new.card(), _proof(acme, new, alice)))
        await bob.start(nursery)
        await until(lambda: _moved(bob, new), LONG)
        await until(lambda: all(alice.state(w) == "delivered" for w in waiting), LONG)
        expected = ["hello", "waiting 0", "waiting 1", "waiting 2"]
        assert _bodies(bob, bob.contact(new).id) == expected  # each once
        assert alice.store.outbox.outbox_depth() == 0
        moving = (await alice.daemon.status(api.GetStatus())).rotation
        assert moving == api.RotationStatus(str(new.address), told=1, contacts=1)


async def test_what_cannot_follow_the_move_ends_refused_with_the_reason(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """After the move, nothing more goes to a contact told of it on that
    session (here bob refuses the move, a forged one, so the session goes
    on): a text queued past the daemon's refusal (as the engine takes it)
    waits no longer than the session; it ends refused with REASON_MOVED,
    shown by ``message`` (it leaves ``outbox``), never delivered from the old home."""
    caplog.set_level(logging.INFO, logger="onionpost")
    async with _pair(tmp_path) as (_net, nursery, _acme, alice, bob, new):
        for node in (alice, bob, new):
            await node.start(nursery)
        first = await alice.send(bob, "hello")
        await until(lambda: alice.state(first) == "delivered", LONG)
        forged = Agency.make("acme", now())
        _rotate(
            alice,
            new,
            forged.endorse(new.secrets.identity, now(), replaces=str(alice.address)).encode(),
        )
        assert alice.engine is not None
        alice.engine.rotation_announced()
        await until(lambda: "event=rotation_refused" in caplog.text, LONG)
        assert alice.contact(bob).id in alice.store.trust.rotation_told()
        late = await alice.send(bob, "after the move")
        await _stop(bob)
        await until(lambda: alice.state(late) == "refused", LONG)
        assert _bodies(bob, bob.contact(alice).id) == ["hello"]
        assert alice.daemon is not None
        record = await alice.daemon.messages.message(api.GetMessage(late.hex()))
        assert (record.state, record.reason) == (api.MessageState.REFUSED, api.REASON_MOVED)
        # It left the outbox (nothing waits), and what arrived stays delivered.
        assert await alice.daemon.messages.outbox(api.Outbox()) == ()
        assert alice.state(first) == "delivered"
        assert "event=moved_outbox_refused" in caplog.text


async def test_a_revoked_contact_is_not_counted_among_those_to_tell(
    tmp_path: Path, clock: MockClock
) -> None:
    """Nothing is sent to a revoked contact, so it is never told of the move:
    ``status`` counts it apart (``revoked``), not as a contact still to tell,
    so that every contact that can be told shows as told."""
    async with _pair(tmp_path) as (_net, nursery, acme, alice, bob, new):
        endorse(bob, acme)
        for node in (alice, bob):
            await node.start(nursery)
        first = await bob.send(alice, "hello")
        await until(lambda: bob.state(first) == "delivered", LONG)
        await until(lambda: _endorsement_held(alice, bob))
        revoking = acme.revocations(2, now(), Revoked(str(bob.address), now(), "seized"))
        bundle = RevocationBundle(acme.delegation, revoking, acme.checkpoint()).encode()
        await import_bundle(alice, bundle)
        assert alice.daemon is not None
        await alice.daemon.trust.trust_rotate(api.TrustRotate(new.card(), _proof(acme, new, alice)))
        moving = (await alice.daemon.status(api.GetStatus())).rotation
        assert moving == api.RotationStatus(str(new.address), told=0, contacts=0, revoked=1)


async def test_a_bug_in_a_move_only_session_ends_it_alone_and_is_logged(
    tmp_path: Path,
    clock: MockClock,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session taken for a move alone is its own failure domain: an
    exception that is no OnionpostError (a bug) ends it, with its traceback
    in the log; bob goes on serving, and refusing alice."""
    caplog.set_level(logging.INFO, logger="onionpost")
    async with _pair(tmp_path) as (_net, nursery, acme, alice, bob, _new):
        for node in (alice, bob):
            await node.start(nursery)
        first = await alice.send(bob, "hello")
        await until(lambda: alice.state(first) == "delivered", LONG)
        await until(lambda: _endorsement_held(bob, alice))
        await _stop(alice)
        revoking = acme.revocations(2, now(), Revoked(str(alice.address), now(), "seized"))
        await import_bundle(
            bob, RevocationBundle(acme.delegation, revoking, acme.checkpoint()).encode()
        )

        async def broken(*args: object) -> None:
            raise ValueError("a bug in a staple's handler")

        monkeypatch.setattr(_session, "_on_trust_staple", broken)
        await alice.start(nursery)
        await until(lambda: "event=session_move_only_ended" in caplog.text, LONG)
        bugs = [r for r in caplog.records if "event=session_error" in r.getMessage()]
        assert bugs
        assert bugs[0].exc_info is not None
        assert bugs[0].exc_info[0] is ValueError
        assert bob.engine is not None
        assert bob.engine.running
        assert bob.engine.status(bob.contact(alice).id).refused.startswith("refused: revoked")


async def test_a_revoked_address_with_a_backlog_tells_its_move_first(
    tmp_path: Path, clock: MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revoked address's session is taken for its move alone, for a bounded
    time (trust.md §7.4). Alice, who holds the list revoking her, tells her
    move before what waits (no contact holding that list takes it): a long
    backlog sent first could outlast the session, and the move never come."""
    # How many records bob's session had taken when the move came.
    before_move: list[int] = []
    decide = _session._on_trust_rotation

    async def counting(parts: object, link: object, s: _session.Session, *rest: object) -> None:
        before_move.append(s.channel.records_received)
        await decide(parts, link, s, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(_session, "_on_trust_rotation", counting)
    async with _pair(tmp_path) as (_net, nursery, acme, alice, bob, new):
        for node in (alice, bob, new):
            await node.start(nursery)
        first = await alice.send(bob, "hello")
        await until(lambda: alice.state(first) == "delivered", LONG)
        await until(lambda: _endorsement_held(bob, alice))
        await _stop(bob)
        backlog = [await alice.send(bob, f"queued {i}") for i in range(400)]
        revoking = RevocationBundle(
            acme.delegation,
            acme.revocations(2, now(), Revoked(str(alice.address), now(), "seized")),
            acme.checkpoint(),
        ).encode()
        await import_bundle(alice, revoking)
        await _stop(alice)
        await bob.start(nursery)
        await import_bundle(bob, revoking)
        proof = acme.endorse(new.secrets.identity, now(), replaces=str(alice.address)).encode()
        _rotate(alice, new, proof)
        await alice.start(nursery)
        await until(lambda: _moved(bob, new), LONG)
        # The move came before the backlog (a Ping, a staple, gossip at most).
        assert before_move
        assert before_move[0] < 10, before_move
        # Nothing of the backlog was taken at bob; it ends refused at home.
        assert _bodies(bob, bob.contact(new).id) == ["hello"]
        await until(lambda: {alice.state(i) for i in backlog} == {"refused"}, LONG)
