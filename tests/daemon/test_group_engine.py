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
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from onionpost import api
from onionpost.daemon.delivery._groups import ops_records
from onionpost.errors import GroupNotAllowedError, LabelError
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.groups import GroupLog, MemberCard, OpKind, sign_operation
from onionpost.proto.identity import Identity
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
            shown = await author.daemon.messages.message(api.GetMessage(sent.copies[0].id))  # type: ignore[union-attr]
            assert shown.group_send is not None
            assert shown.group_send.delivered == 3
        for reader, author in itertools.permutations(nodes, 2):
            assert _group_texts(reader, author) == [f"from {author.name}"]
        # The inbox says which group each came from.
        inbox = await bob.daemon.messages.inbox(api.Inbox())  # type: ignore[union-attr]
        assert {(m.contact, m.group) for m in inbox} == {
            ("alice", "ops"),
            ("carol", "ops"),
            ("dave", "ops"),
        }


async def _stopped(node: Node) -> None:
    node.stop()
    await until(lambda: not node.up)


async def test_a_removed_member_gets_nothing_after_and_is_refused(tmp_path: Path) -> None:
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
        # dave goes offline, still a member as far as it knows, and writes.
        await _stopped(dave)
        group_id = bytes.fromhex(made.id)
        late = dave.store.groups.queue_text(
            group_id, bytes(range(16)), 1, "am I still in?", "text/plain", None,
            sender=dave.secrets.identity.public_key,
        )  # fmt: skip
        assert len(late.new) == 3
        removed = await alice.daemon.groups.group_remove(  # type: ignore[union-attr]
            api.GroupRemove("ops", ("dave",))
        )
        head = bytes.fromhex(removed.head)
        await until(lambda: _head(bob, made.id) == _head(carol, made.id) == head)
        # Sent after the removal: nothing goes to dave.
        after = await bob.daemon.groups.group_send_text(api.GroupSendText("ops", "dave is out"))  # type: ignore[union-attr]
        assert [c.contact for c in after.copies] == ["alice", "carol"]
        await dave.start(nursery)
        # dave learns of its removal, stops sending, and says so.
        await until(lambda: _head(dave, made.id) == head)
        shown = await dave.daemon.groups.group_show(api.GroupShow("ops"))  # type: ignore[union-attr]
        assert not shown.member
        with pytest.raises(GroupNotAllowedError):
            await dave.daemon.groups.group_send_text(api.GroupSendText("ops", "hello?"))  # type: ignore[union-attr]
        # What it wrote offline reached the others and was refused: not stored.
        # (A one-to-one text queued after it is decided after it.)
        for node in (alice, bob, carol):
            await dave.send(node, "one to one")
        await until(lambda: all(len(n.inbox_from(dave)) == 1 for n in (alice, bob, carol)))
        for node in (alice, bob, carol):
            assert _group_texts(node, dave) == []
            assert [r.body for r in node.inbox_from(dave)] == ["one to one"]
        assert {dave.state(c.message_id) for c in late.send.copies} <= {"queued", "sent"}


async def test_concurrent_changes_by_two_admins_converge(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol", "dave")]
        alice, bob, carol, _dave = nodes
        _everyone_friends(nodes)
        for node in nodes:
            await node.start(nursery)
        made = await alice.daemon.groups.group_create(  # type: ignore[union-attr]
            api.GroupCreate("ops", ("bob", "carol", "dave"))
        )
        await alice.daemon.groups.group_promote(api.GroupPromote("ops", "bob"))  # type: ignore[union-attr]
        await until(_same_log(nodes, made.id))
        # Partitioned: bob removes carol while alice promotes her.
        await _stopped(alice)
        await bob.daemon.groups.group_remove(api.GroupRemove("ops", ("carol",)))  # type: ignore[union-attr]
        await _stopped(bob)
        await alice.start(nursery)
        await alice.daemon.groups.group_promote(api.GroupPromote("ops", "carol"))  # type: ignore[union-attr]
        await alice.daemon.groups.group_rename(api.GroupRename("ops", "ops-2"))  # type: ignore[union-attr]
        await bob.start(nursery)
        # Any member's change reaches the others; all hold one log.
        await until(_same_log(nodes, made.id))
        for node in nodes:
            state = node.store.groups.log(bytes.fromhex(made.id)).state
            assert state.name == "ops-2"
            assert not state.is_member(carol.secrets.identity.public_key)  # removals win
            assert {m.card.name for m in state.members.values()} == {"alice", "bob", "dave"}


async def test_a_member_offline_catches_up(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol")]
        alice, bob, carol = nodes
        _everyone_friends(nodes)
        await alice.start(nursery)
        await bob.start(nursery)
        made = await alice.daemon.groups.group_create(  # type: ignore[union-attr]
            api.GroupCreate("ops", ("bob", "carol"))
        )
        sent = await alice.daemon.groups.group_send_text(api.GroupSendText("ops", "while away"))  # type: ignore[union-attr]
        await until(lambda: _head(bob, made.id) == _head(alice, made.id))
        assert _log(carol, made.id) is None
        await carol.start(nursery)
        # The log and the text come when carol is back, each once.
        await until(lambda: _group_texts(carol, alice) == ["while away"])
        assert _head(carol, made.id) == _head(alice, made.id)
        await until(
            lambda: {alice.state(bytes.fromhex(c.id)) for c in sent.copies} == {"delivered"}
        )
        assert _group_texts(bob, alice) == ["while away"]


def _snapshot(node: Node) -> tuple[object, ...]:
    db = node.store._db
    return tuple(
        db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("groups", "group_ops", "group_members", "group_messages", "messages")
    )


async def test_bad_group_records_are_refused_and_the_session_goes_on(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, mallory, zed = (net.node(n) for n in ("alice", "bob", "mallory", "zed"))
        befriend(alice, bob)
        befriend(alice, mallory)
        befriend(alice, zed)
        await alice.start(nursery)
        made = await alice.daemon.groups.group_create(  # type: ignore[union-attr]
            api.GroupCreate("ops", ("bob", "mallory"))
        )
        group_id = bytes.fromhex(made.id)
        log = alice.store.groups.log(group_id)
        heads = log.heads
        me = mallory.secrets.identity

        def op(kind: OpKind, seq: int = 1, **args: object) -> bytes:
            return sign_operation(me, group_id, seq, heads, 1, kind, **args).encode()  # type: ignore[arg-type]

        zed_card = MemberCard(zed.secrets.identity.public_key, bytes(32), "zed")
        forged = bytearray(op(OpKind.LEAVE))
        forged[-1] ^= 1
        foreign = sign_operation(
            me, bytes(16), 1, (), 1, OpKind.CREATE, name="mine",
            card=MemberCard(me.public_key, bytes(32), "mallory"),
        )  # fmt: skip

        def text(n: int, group: bytes, at: bytes) -> m.GroupText:
            return m.GroupText(bytes([n]) * 16, 1, f"bad {n}", "text/plain", group, at)

        bad: list[m.Message] = [
            m.GroupOps(group_id, (bytes(forged),)),  # bad signature
            m.GroupOps(group_id, (op(OpKind.ADD, card=zed_card),)),  # not an admin
            m.GroupOps(group_id, (log.ordered()[0].encode(),)),  # replayed
            m.GroupOps(group_id, (op(OpKind.LEAVE, seq=2),)),  # out of order
            m.GroupOps(group_id, (b"\x93\x01\x02\x03",)),  # not an operation
            m.GroupOps(group_id, (foreign.encode(),)),  # another group's
            m.GroupOps(bytes(16), (foreign.encode(),)),  # a group alice is not in
            text(1, bytes(15) + b"\x01", b"".join(heads)),  # unknown group
            text(2, group_id, bytes(32)),  # heads nobody can give
        ]
        before = _snapshot(alice)
        channel, _stream = await net.connect_raw(mallory, alice)
        for record in bad:
            await channel.send(record)
        await channel.send(m.Ping(7))
        answers: list[object] = []
        while not any(isinstance(a, m.Pong) and a.nonce == 7 for a in answers):
            answers.append(await channel.receive())
        # Nothing stored or acknowledged; alice asked for what it lacks.
        assert not any(isinstance(a, m.Ack) for a in answers)
        assert any(isinstance(a, m.GroupFetch) and a.group_id == group_id for a in answers)
        assert _snapshot(alice) == before
        # A non-member's text at good heads: refused too (zed is no member).
        channel_z, _ = await net.connect_raw(zed, alice)
        await channel_z.send(text(3, group_id, b"".join(heads)))
        await channel_z.send(m.GroupFetch(group_id, b""))  # nothing for a non-member
        await channel_z.send(m.Ping(8))
        answers = []
        while not any(isinstance(a, m.Pong) and a.nonce == 8 for a in answers):
            answers.append(await channel_z.receive())
        assert not any(isinstance(a, m.Ack | m.GroupOps) for a in answers)
        assert _snapshot(alice) == before
        # The session goes on: a one-to-one text is stored and acknowledged,
        # and mallory's own text to the group at good heads is taken.
        await channel.send(m.Text(bytes([9]) * 16, 1, "hello", "text/plain"))
        await channel.send(text(4, group_id, b"".join(heads)))
        acked: set[bytes] = set()
        while len(acked) < 2:
            answer = await channel.receive()
            if isinstance(answer, m.Ack):
                acked |= set(answer.ids)
        assert acked == {bytes([9]) * 16, bytes([4]) * 16}
        assert _group_texts(alice, mallory) == ["bad 4"]
        # And the daemon serves.
        shown = await alice.daemon.groups.group_show(api.GroupShow("ops"))  # type: ignore[union-attr]
        assert shown.operations == len(log)


@pytest.mark.parametrize(
    ("sizes", "records"),
    [
        ([100] * 3, 1),
        ([100] * 40, 1),
        ([100] * 41, 2),
        ([2048] * 40, 2),  # 40 of the largest do not fit one record
        ([2048] * 64, 3),
    ],
)
def test_operations_are_sent_in_records_that_fit(sizes: list[int], records: int) -> None:
    ops = [bytes([n % 256]) * size for n, size in enumerate(sizes)]
    made = ops_records(bytes(16), ops)
    assert len(made) == records
    assert [op for record in made for op in record.ops] == ops
    for record in made:
        assert m.decode(m.encode(record)) == record


async def test_a_group_text_carries_its_label_and_tlp_red_never_goes_to_a_group(
    tmp_path: Path,
) -> None:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol")]
        alice, bob, carol = nodes
        _everyone_friends(nodes)
        for node in nodes:
            await node.start(nursery)
        made = await alice.daemon.groups.group_create(  # type: ignore[union-attr]
            api.GroupCreate("ops", ("bob", "carol"))
        )
        await until(_same_log(nodes, made.id))
        before = _snapshot(alice)
        with pytest.raises(LabelError):
            await alice.daemon.groups.group_send_text(  # type: ignore[union-attr]
                api.GroupSendText("ops", "eyes only", label="TLP:RED")
            )
        assert _snapshot(alice) == before
        sent = await alice.daemon.groups.group_send_text(  # type: ignore[union-attr]
            api.GroupSendText("ops", "amber", label="TLP:AMBER")
        )
        await until(lambda: _group_texts(bob, alice) == _group_texts(carol, alice) == ["amber"])
        for node in (bob, carol):
            assert [r.label for r in node.inbox_from(alice)] == ["TLP:AMBER"]
        shown = await alice.daemon.messages.message(api.GetMessage(sent.copies[0].id))  # type: ignore[union-attr]
        assert shown.label == "TLP:AMBER"


async def test_membership_changes_are_group_events(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol")]
        alice, bob, _carol = nodes
        _everyone_friends(nodes)
        for node in nodes:
            await node.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        ours = alice.daemon._hub.subscribe(["group"])
        theirs = bob.daemon._hub.subscribe(["group"])
        made = await alice.daemon.groups.group_create(api.GroupCreate("ops", ("bob", "carol")))
        seen: list[api.GroupChange] = []

        def took(channel: object, count: int) -> Callable[[], bool]:
            def check() -> bool:
                try:
                    while True:
                        line = channel.receive_nowait()  # type: ignore[attr-defined]
                        seen.append(
                            api.decode_event(line["event"], line["data"], error=AssertionError)  # type: ignore[arg-type]
                        )
                except trio.WouldBlock:
                    pass
                return len(seen) >= count

            return check

        await until(took(ours, 1))
        assert (seen[0].id, seen[0].contact, seen[0].member) == (made.id, None, True)
        await until(took(theirs, 2))
        assert (seen[1].contact, seen[1].member, seen[1].name) == ("alice", True, "ops")
        await alice.daemon.groups.group_remove(api.GroupRemove("ops", ("bob",)))
        await until(lambda: took(theirs, 3)() and not seen[-1].member)
        assert seen[-1].contact == "alice"


async def test_a_member_added_after_more_operations_than_one_record_joins(
    tmp_path: Path,
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, zoe = net.node("alice"), net.node("zoe")
        befriend(alice, zoe)
        await alice.start(nursery)
        await zoe.start(nursery)
        # 44 members before zoe (contacts alice made, never online here).
        names = [f"m{n}" for n in range(44)]
        for name in names:
            key = Identity(os.urandom(32)).public_key
            alice.store.contacts.add_contact(
                name, OnionAddress.from_public_key(key), os.urandom(32), 1
            )
        assert alice.daemon is not None
        made = await alice.daemon.groups.group_create(api.GroupCreate("big", (*names, "zoe")))
        assert made.operations == 46  # more than one GroupOps record holds
        await until(_same_log([alice, zoe], made.id))
        state = zoe.store.groups.log(bytes.fromhex(made.id)).state
        assert len(state.members) == 46
