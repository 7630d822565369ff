"""Removing a contact: what waited for it is marked expired (no acknowledgement
can reach us from it any more), in the removal's own transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.errors import UnknownContactError
from onionpost.testing.memory import befriend, network


async def test_what_waits_for_a_removed_contact_is_expired(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        await alice.start(nursery)  # bob and carol stay offline
        assert alice.daemon is not None
        to_bob = [await alice.daemon.send_text(api.SendText("bob", f"t{i}")) for i in range(3)]
        to_carol = await alice.daemon.send_text(api.SendText("carol", "stays"))
        events = alice.daemon.subscribe(("state",))
        async with events:
            await alice.daemon.contact_remove(api.ContactRemove("bob"))
            seen = set()
            with trio.fail_after(5):
                while len(seen) < 3:
                    data = (await events.receive())["data"]
                    if data["state"] == "expired":
                        seen.add(data["id"])
        assert seen == {q.id for q in to_bob}
        for queued in to_bob:
            assert alice.state(bytes.fromhex(queued.id)) == "expired"
        assert alice.state(bytes.fromhex(to_carol.id)) == "queued"
        assert alice.store.outbox.outbox_depth() == 1
        # Nothing else changes on a second removal of the same name.
        with pytest.raises(UnknownContactError):
            await alice.daemon.contact_remove(api.ContactRemove("bob"))
        assert alice.state(bytes.fromhex(to_carol.id)) == "queued"
