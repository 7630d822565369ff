"""A team channel of 50 in-memory endpoints on MockClock (groups.md §4, §6, §8):
two admins change the membership at random, interleaved with texts, while
members go offline and come back (their copies deposited in their
mailbox, for the 16 members that keep one, else waiting in the authors'
outboxes). Seeded and bounded.

At the end, with everyone back: every member at a text's head holds it
exactly once, nobody outside that membership (a member removed before it,
one added after) holds it at all, and every member holds the same log.

Authors are drawn from members no admin removes: a text whose author a
receiver already knows to be removed is refused (groups.md §6.1, step 4),
whatever head it names, so only those texts have a fixed set of receivers.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio
from trio.testing import MockClock

from onionpost import api
from onionpost.store import Direction
from onionpost.testing.memory import MailboxNode, Node, befriend, network, until

SEED = 19
MEMBERS = 50
OUTSIDERS = 6  # members the admins add during the run, three each
STEADY = 10  # the two admins and eight authors: never removed
STEPS = 40
# m00..m15 keep a mailbox (one serves at most 16 owners); copies to the
# others wait in the authors' outboxes.
BOXED = 16
MAX_OFFLINE = 5
GROUP = "desk"


@dataclass(frozen=True)
class Sent:
    author: str
    body: str
    receivers: frozenset[str]
    copies: tuple[bytes, ...]


def _group_texts(node: Node, sender: Node) -> list[str]:
    found = []
    for row in node.inbox_from(sender):
        if node.store.groups.of_message(Direction.IN, row.contact_id, row.id) is not None:
            assert row.body is not None
            found.append(row.body)
    return found


def _members(node: Node, group_id: bytes) -> frozenset[str]:
    state = node.store.groups.log(group_id).state
    return frozenset(m.card.name for m in state.members.values())


async def _paired(box: MailboxNode, nodes: list[Node], writers: list[Node]) -> None:
    for node in nodes:
        assert node.daemon is not None
        await node.daemon.mailbox_pair(api.MailboxPair(await box.code()))
    for writer in writers:
        for node in nodes:
            if node is not writer:
                await until(partial(_knows_box, writer, node, box))


def _knows_box(writer: Node, node: Node, box: MailboxNode) -> bool:
    return writer.contact(node).mailbox == box.address


async def _stopped(node: Node) -> None:
    node.stop()
    await until(lambda: not node.up)


def _head(node: Node, group_id: bytes) -> bytes | None:
    groups = node.store.groups
    return groups.log(group_id).head if groups.known(group_id) else None


async def test_fifty_members_two_admins_churn_and_texts(tmp_path: Path, clock: MockClock) -> None:
    rng = random.Random(SEED)
    async with network(tmp_path, mailbox_after=5.0) as (net, nursery):
        nodes = {f"m{n:02}": net.node(f"m{n:02}") for n in range(MEMBERS)}
        names = list(nodes)
        admins, authors = names[:2], names[2:STEADY]
        # Those who write (operations, texts) are everyone's contacts; the
        # others need not know each other (introductions are not built, so a
        # member that is no contact of an author would get no copy).
        for a, b in itertools.combinations(names, 2):
            if a in names[:STEADY]:
                befriend(nodes[a], nodes[b])
        box = net.mailbox("box")
        await box.start(nursery)
        for node in nodes.values():
            await node.start(nursery)
        writers = [nodes[n] for n in names[:STEADY]]
        await _paired(box, [nodes[n] for n in names[:BOXED]], writers)
        removable = names[STEADY : MEMBERS - OUTSIDERS]
        to_add = {admins[0]: names[-OUTSIDERS::2], admins[1]: names[-OUTSIDERS + 1 :: 2]}
        first = nodes[admins[0]].daemon
        assert first is not None
        made = await first.groups.group_create(
            api.GroupCreate(GROUP, tuple(names[1 : MEMBERS - OUTSIDERS]))
        )
        await first.groups.group_promote(api.GroupPromote(GROUP, admins[1]))
        group_id = bytes.fromhex(made.id)
        await until(lambda: _head(nodes[admins[1]], group_id) == _head(nodes[admins[0]], group_id))

        sent: list[Sent] = []
        offline: set[str] = set()
        for step in range(STEPS):
            roll = rng.random()
            if roll < 0.5:
                author = rng.choice([a for a in authors if a not in offline])
                node = nodes[author]
                assert node.daemon is not None
                before = node.store.groups.log(group_id)
                members_before, head_before = _members(node, group_id), before.head
                body = f"{author} step {step}"
                out = await node.daemon.groups.group_send_text(api.GroupSendText(GROUP, body))
                receivers = frozenset(c.contact for c in out.copies)
                assert not out.unreachable
                if bytes.fromhex(out.head) == head_before:
                    assert receivers == members_before - {author}
                copies = tuple(bytes.fromhex(c.id) for c in out.copies)
                sent.append(Sent(author, body, receivers, copies))
            elif roll < 0.75:
                admin = rng.choice(admins)
                node = nodes[admin]
                assert node.daemon is not None
                members = _members(node, group_id)
                if to_add[admin] and rng.random() < 0.4:
                    added = to_add[admin].pop(0)
                    await node.daemon.groups.group_add(api.GroupAdd(GROUP, (added,)))
                else:
                    candidates = sorted(members & set(removable))
                    if candidates:
                        gone = rng.choice(candidates)
                        await node.daemon.groups.group_remove(api.GroupRemove(GROUP, (gone,)))
            elif offline and (roll < 0.85 or len(offline) >= MAX_OFFLINE):
                back = rng.choice(sorted(offline))
                offline.discard(back)
                await nodes[back].start(nursery)
            else:
                away = rng.choice([n for n in names[2:] if n not in offline])
                offline.add(away)
                await _stopped(nodes[away])
            await trio.sleep(rng.uniform(0, 3))  # virtual time: interleaves the above

        for name in sorted(offline):
            await nodes[name].start(nursery)
        # Every member ends on one log (the admins' merged view of it).
        final = _members(nodes[admins[0]], group_id)

        def converged() -> bool:
            heads = {_head(nodes[n], group_id) for n in final | set(admins)}
            return len(heads) == 1 and _members(nodes[admins[0]], group_id) == final

        await until(converged, seconds=600)
        final = _members(nodes[admins[0]], group_id)
        for name in final:
            assert _members(nodes[name], group_id) == final

        def delivered() -> bool:
            return all(
                s.body in _group_texts(nodes[r], nodes[s.author]) for s in sent for r in s.receivers
            )

        await until(delivered, seconds=600)
        for s in sent:
            for name in names:
                if name == s.author:
                    continue
                held = _group_texts(nodes[name], nodes[s.author]).count(s.body)
                assert held == (1 if name in s.receivers else 0), (s, name, held)
        assert sent
        assert len(final) > STEADY
        assert not set(removable) <= final  # someone was removed
        deposited = [
            c
            for s in sent
            for c in s.copies
            if nodes[s.author].store.messages.message(c).deposited_ms is not None
        ]
        assert deposited  # some went through the mailbox
