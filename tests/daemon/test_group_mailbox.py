"""A team channel's member offline catches up through its mailbox: the copy
of a group text deposited there is opened and decided by the same intake as
a live one (groups.md §6, §8)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.store import Direction
from onionpost.testing.memory import MailboxNode, Network, Node, befriend, network, until

pytestmark = pytest.mark.trio


async def _paired(box: MailboxNode, *nodes: Node) -> None:
    for node in nodes:
        assert node.daemon is not None
        await node.daemon.mailbox_pair(api.MailboxPair(await box.code()))
    for node in nodes:
        for other in nodes:
            if other is not node:
                await until(lambda n=node, o=other: n.contact(o).mailbox == box.address)


async def _start(net: Network, nursery: trio.Nursery) -> tuple[Node, Node, Node, MailboxNode]:
    alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
    box = net.mailbox("box")
    for a, b in ((alice, bob), (alice, carol), (bob, carol)):
        befriend(a, b)
    for node in (box, alice, bob, carol):
        await node.start(nursery)
    await _paired(box, alice, bob)
    return alice, bob, carol, box


async def test_a_group_text_reaches_an_offline_member_through_its_mailbox(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, mailbox_after=5.0) as (net, nursery):
        alice, bob, carol, _box = await _start(net, nursery)
        assert alice.daemon is not None
        made = await alice.daemon.groups.group_create(api.GroupCreate("ops", ("bob", "carol")))
        group_id = bytes.fromhex(made.id)
        await until(lambda: bob.store.groups.known(group_id) and carol.store.groups.known(group_id))
        bob.stop()
        await until(lambda: not bob.up)
        sent = await alice.daemon.groups.group_send_text(api.GroupSendText("ops", "via the box"))
        to_bob = next(bytes.fromhex(c.id) for c in sent.copies if c.contact == "bob")
        await until(lambda: alice.store.messages.message(to_bob).deposited_ms is not None, 600)
        alice.stop()
        await until(lambda: not alice.up)

        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 1, 600)
        (row,) = bob.inbox_from(alice)
        assert row.body == "via the box"
        found = bob.store.groups.of_message(Direction.IN, row.contact_id, row.id)
        assert found is not None
        assert found.group_id == group_id
        await alice.start(nursery)
        await until(lambda: alice.state(to_bob) == "delivered", 600)
        assert len(bob.inbox_from(alice)) == 1


async def test_a_group_file_reaches_an_offline_member_through_its_mailbox(
    tmp_path: Path, clock: MockClock
) -> None:
    async with network(tmp_path, mailbox_after=5.0) as (net, nursery):
        alice, bob, carol, _box = await _start(net, nursery)
        assert alice.daemon is not None
        made = await alice.daemon.groups.group_create(api.GroupCreate("ops", ("bob", "carol")))
        group_id = bytes.fromhex(made.id)
        await until(lambda: bob.store.groups.known(group_id) and carol.store.groups.known(group_id))
        bob.stop()
        await until(lambda: not bob.up)
        data = os.urandom(100_000)
        source = tmp_path / "boxed.bin"
        source.write_bytes(data)
        sent = await alice.daemon.groups.group_send_file(api.GroupSendFile("ops", str(source)))
        to_bob = next(bytes.fromhex(c.id) for c in sent.copies if c.contact == "bob")
        await until(lambda: alice.store.messages.message(to_bob).deposited_ms is not None, 600)
        alice.stop()
        await until(lambda: not alice.up)

        # Opened from the mailbox, decided by the same intake: the group's file.
        await bob.start(nursery)
        await until(lambda: any(r.file and r.file.complete for r in bob.inbox_from(alice)), 600)
        (row,) = bob.inbox_from(alice)
        assert row.file is not None
        assert row.file.blake2b == hashlib.blake2b(data, digest_size=64).digest()
        found = bob.store.groups.of_message(Direction.IN, row.contact_id, row.id)
        assert found is not None
        assert found.group_id == group_id
        await alice.start(nursery)
        await until(lambda: alice.state(to_bob) == "delivered", 600)
        assert len(bob.inbox_from(alice)) == 1
