"""Team channels between in-memory endpoints on MockClock (groups.md §6, §8).

Operations reach every member over the pairwise sessions; group texts fan
out one copy per member and are stored as the group's only when their
author may post at the heads they name; a member removed stops sending and
is refused; concurrent changes by two admins converge; a member that was
offline catches up; every bad input is refused with nothing stored while
the session and the daemon keep running.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

from onionpost import api
from onionpost.proto.groups import GroupLog
from onionpost.store import Direction
from onionpost.testing.memory import Node, befriend, network, until


def _everyone_friends(nodes: list[Node]) -> None:
    for a, b in itertools.combinations(nodes, 2):
        befriend(a, b)


def _log(node: Node, group_id: str) -> GroupLog | None:
    groups = node.store.groups
    raw = bytes.fromhex(group_id)
    return groups.log(raw) if groups.known(raw) else None


def _head(node: Node, group_id: str) -> bytes | None:
    found = _log(node, group_id)
    return None if found is None else found.head


def _same_log(nodes: list[Node], group_id: str) -> Callable[[], bool]:
    def check() -> bool:
        heads = {_head(n, group_id) for n in nodes}
        return len(heads) == 1 and None not in heads

    return check


def _group_texts(node: Node, sender: Node) -> list[str]:
    """The texts ``node`` holds from ``sender`` as a group's, in order."""
    found = []
    for row in node.inbox_from(sender):
        if node.store.groups.of_message(Direction.IN, row.contact_id, row.id) is not None:
            assert row.body is not None
            found.append(row.body)
    return found


async def test_each_members_text_reaches_every_member_once(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol", "dave")]
        alice, bob, carol, dave = nodes
        _everyone_friends(nodes)
        for node in nodes:
            await node.start(nursery)
        made = await alice.daemon.groups.group_create(  # type: ignore[union-attr]
            api.GroupCreate("ops", ("bob", "carol", "dave"))
        )
        await until(_same_log(nodes, made.id))
        for node in (bob, carol, dave):
            shown = await node.daemon.groups.group_show(api.GroupShow("ops"))  # type: ignore[union-attr]
            assert (shown.member, shown.admin, len(shown.members)) == (True, False, 4)

        sends = {}
        for node in nodes:
            sends[node.name] = await node.daemon.groups.group_send_text(  # type: ignore[union-attr]
                api.GroupSendText("ops", f"from {node.name}")
            )
        for author in nodes:
            sent = sends[author.name]
            assert len(sent.copies) == 3
            ids = [bytes.fromhex(c.id) for c in sent.copies]
            await until(lambda a=author, i=ids: {a.state(x) for x in i} == {"delivered"})  # type: ignore[misc]
            shown = await author.daemon.message(api.GetMessage(sent.copies[0].id))  # type: ignore[union-attr]
            assert shown.group_send is not None
            assert shown.group_send.delivered == 3
        for reader, author in itertools.permutations(nodes, 2):
            assert _group_texts(reader, author) == [f"from {author.name}"]
        # The inbox says which group each came from.
        inbox = await bob.daemon.inbox(api.Inbox())  # type: ignore[union-attr]
        assert {(m.contact, m.group) for m in inbox} == {
            ("alice", "ops"),
            ("carol", "ops"),
            ("dave", "ops"),
        }
