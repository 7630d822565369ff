"""Contacts witness each other's evidence logs over their sessions, and a store
put back to an earlier copy is caught at the next session (evidence.md §5)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost.daemon.delivery import Witness
from onionpost.daemon.delivery._witness import MAX_COSIGN_PER_SESSION
from onionpost.errors import VerificationError
from onionpost.proto import note
from onionpost.proto.messages import LogCosign, LogCosigned
from onionpost.store import Store
from onionpost.testing.memory import Node, befriend, network, until


def _held_by(witness: Node, owner: Node) -> int:
    """The size of ``owner``'s log that ``witness`` last cosigned (0: none)."""
    held = witness.store.evidence.witnessed(witness.contact(owner).id)
    return 0 if held is None else note.Checkpoint.from_text(held.text).size


def _cosigned_for(owner: Node, witness: Node) -> int:
    """The size of ``owner``'s own checkpoint that ``witness`` cosigned, as the owner keeps it."""
    held = owner.store.evidence.witness(owner.contact(witness).id)
    if held is None:
        return 0
    verifier = note.Verifier(str(witness.address), note.COSIGNATURE, witness.address.public_key)
    note.verified_cosignature(held, verifier)  # it is the witness's cosignature
    return note.Checkpoint.from_text(held.text).size


def _store_files(node: Node) -> list[Path]:
    base = node.paths.store
    return [p for p in base.parent.iterdir() if p.name.startswith(base.name)]


async def _restart_with(node: Node, nursery: trio.Nursery, backup: Path) -> None:
    """Stop ``node``, close its store, copy it to ``backup`` (or put ``backup``
    back over it), reopen and start it."""
    node.stop()
    await until(lambda: not node.up)
    node.store.close()
    if not backup.exists():
        backup.mkdir()
        for f in _store_files(node):
            shutil.copy2(f, backup / f.name)
    else:
        for f in _store_files(node):
            f.unlink()
        for f in backup.iterdir():
            shutil.copy2(f, node.paths.store.parent / f.name)
    node.store = Store.open(node.paths.store, node.paths.files, node.secrets.store_key)
    await node.start(nursery)


async def test_contacts_cosign_each_others_logs(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        for node in (alice, bob):
            await node.start(nursery)
        first = await alice.send(bob, "hello")
        await until(lambda: alice.state(first) == "delivered")
        # Each side asked the other at the session's start; both logs are witnessed.
        await until(lambda: _cosigned_for(alice, bob) > 0 and _cosigned_for(bob, alice) > 0)
        assert _held_by(bob, alice) == _cosigned_for(alice, bob)
        assert _held_by(alice, bob) == _cosigned_for(bob, alice)
        assert not alice.store.evidence.alarms()
        assert not bob.store.evidence.alarms()


async def test_a_store_put_back_is_caught_at_the_next_session(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        for node in (alice, bob):
            await node.start(nursery)
        first = await alice.send(bob, "before the copy")
        await until(lambda: alice.state(first) == "delivered")
        backup = tmp_path / "alice-backup"
        await _restart_with(alice, nursery, backup)  # takes the copy
        later = [await alice.send(bob, f"after the copy {i}") for i in range(3)]
        await until(lambda: all(alice.state(i) == "delivered" for i in later))
        size = alice.store.evidence.size()
        # The witness holds a checkpoint of everything that happened since.
        alice.stop()
        await until(lambda: not alice.up)
        await alice.start(nursery)
        await alice.send(bob, "nudge")
        await until(lambda: _held_by(bob, alice) >= size)

        await _restart_with(alice, nursery, backup)  # the copy put back
        assert alice.store.evidence.size() < size
        await alice.send(bob, "from the restored store")
        await until(lambda: bool(alice.store.evidence.alarms() and bob.store.evidence.alarms()))
        (own,) = alice.store.evidence.alarms()
        assert own.kind == "rollback"
        assert own.contact_id == alice.contact(bob).id
        # The proof: a checkpoint alice's own key signed, larger than her log,
        # cosigned by bob.
        theirs = note.Note.parse(own.theirs)
        mine = note.Verifier(str(alice.address), note.ED25519, alice.address.public_key)
        note.open_note(theirs, [mine])
        assert note.Checkpoint.from_text(theirs.text).size > alice.store.evidence.size()
        bob_key = note.Verifier(str(bob.address), note.COSIGNATURE, bob.address.public_key)
        note.verified_cosignature(theirs, bob_key)
        (seen,) = bob.store.evidence.alarms()
        assert seen.kind == "contact-rollback"
        # The sessions go on: messages still flow both ways.
        back = await bob.send(alice, "still here")
        await until(lambda: bob.state(back) == "delivered")


async def test_a_bad_request_is_refused_and_the_session_goes_on(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, eve = net.node("alice"), net.node("bob"), net.node("eve")
        befriend(alice, bob)
        befriend(alice, eve)
        for node in (alice, bob, eve):
            await node.start(nursery)
        first = await alice.send(bob, "hello")
        await until(lambda: alice.state(first) == "delivered")
        assert bob.engine is not None
        assert eve.engine is not None
        witness = bob.engine._parts.witness
        assert witness is not None
        contact = bob.contact(alice)
        # Eve's checkpoint presented as alice's, a changed one, junk: each refused,
        # nothing kept.
        eve_witness = eve.engine._parts.witness
        assert eve_witness is not None
        forged = eve_witness.request(eve.store, eve.contact(alice).id, 1)
        assert forged is not None
        good = alice.engine._parts.witness.request(  # type: ignore[union-attr]
            alice.store, alice.contact(bob).id, 2
        )
        assert good is not None
        tampered = LogCosign(good.checkpoint.replace(b"\n", b"\n\n", 1), 0, b"")
        held_before = _held_by(bob, alice)
        for bad in (forged, tampered, LogCosign(b"junk", 0, b"")):
            with pytest.raises(VerificationError):
                witness.answer(bob.store, contact, bad, 3)
        assert _held_by(bob, alice) == held_before
        again = await alice.send(bob, "still fine")
        await until(lambda: alice.state(again) == "delivered")


async def test_a_contact_asking_again_and_again_is_answered_a_bounded_number_of_times(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, carol = net.node("alice"), net.node("carol")
        befriend(alice, carol)
        await alice.start(nursery)
        request = Witness(carol.secrets.identity).request(carol.store, carol.contact(alice).id, 1)
        assert request is not None
        channel, _stream = await net.connect_raw(carol, alice)
        for _ in range(3 * MAX_COSIGN_PER_SESSION):
            await channel.send(request)
        answers: list[object] = []
        with trio.move_on_after(30):
            while True:
                answers.append(await channel.receive())
        cosigned = [a for a in answers if isinstance(a, LogCosigned)]
        assert len(cosigned) == MAX_COSIGN_PER_SESSION
        # Alice asked once in return, and the session is still up.
        assert sum(isinstance(a, LogCosign) for a in answers) == 1
        assert alice.engine is not None
        assert alice.engine.status(alice.contact(carol).id).reachable  # type: ignore[union-attr]
