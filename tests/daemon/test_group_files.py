"""Files to a team channel between in-memory endpoints on MockClock (groups.md §6, §8).

A file sent to a group is one encrypted copy and one GroupFileOffer per other
member at the log's heads; each member checks the offer as a group text
(``may_post``) before it stores anything, then takes the file as any file and
shows it as the group's; the author sees every member's state. A bad offer
(a non-member's, at heads nobody gives, of a group unknown, from a member
after its removal) is refused with nothing stored while the session and the
daemon keep running.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from onionpost import api
from onionpost.daemon.delivery._intake import GroupOfferOutcome, GroupTextOutcome
from onionpost.errors import ConfigError, GroupNotAllowedError, LabelError
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto import bundle
from onionpost.proto import messages as m
from onionpost.store import Direction, Stored
from onionpost.testing.memory import Node, befriend, network, until


def _everyone_friends(nodes: list[Node]) -> None:
    for a, b in itertools.combinations(nodes, 2):
        befriend(a, b)


def _same_log(nodes: list[Node], group_id: str) -> Callable[[], bool]:
    raw = bytes.fromhex(group_id)

    def check() -> bool:
        if not all(n.store.groups.known(raw) for n in nodes):
            return False
        return len({n.store.groups.log(raw).head for n in nodes}) == 1

    return check


def _group_files(node: Node, sender: Node) -> list[Stored]:
    """The complete files ``node`` holds from ``sender`` as a group's."""
    found = []
    for row in node.inbox_from(sender):
        group = node.store.groups.of_message(Direction.IN, row.contact_id, row.id)
        if row.file is not None and row.file.complete and group is not None:
            found.append(row)
    return found


def _states(node: Node, sent: api.GroupSent) -> set[str]:
    return {node.state(bytes.fromhex(c.id)) for c in sent.copies}


async def _group(nodes: list[Node], nursery: object) -> api.Group:
    _everyone_friends(nodes)
    for node in nodes:
        await node.start(nursery)  # type: ignore[arg-type]
    first = nodes[0].daemon
    assert first is not None
    made = await first.groups.group_create(api.GroupCreate("ops", tuple(n.name for n in nodes[1:])))
    await until(_same_log(nodes, made.id))
    return made


async def test_a_file_to_a_group_reaches_every_other_member_once(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol", "dave")]
        alice, bob, carol, dave = nodes
        made = await _group(nodes, nursery)
        data = os.urandom(200_000)  # several chunks
        source = tmp_path / "minutes.bin"
        source.write_bytes(data)
        assert alice.daemon is not None
        sent = await alice.daemon.groups.group_send_file(
            api.GroupSendFile("ops", str(source), label="TLP:AMBER")
        )
        assert sent.kind is api.Kind.FILE
        assert [c.contact for c in sent.copies] == ["bob", "carol", "dave"]
        assert sent.head == made.head
        await until(lambda: _states(alice, sent) == {"delivered"})
        digest = hashlib.blake2b(data, digest_size=64).digest()
        for member in (bob, carol, dave):
            (received,) = _group_files(member, alice)
            assert received.file is not None
            assert (received.file.name, received.file.size) == ("minutes.bin", len(data))
            assert received.file.blake2b == digest
            assert received.label == "TLP:AMBER"
            assert len(member.inbox_from(alice)) == 1  # once, and as the group's only
        # The author sees every member's state, as for a text.
        shown = await alice.daemon.messages.message(api.GetMessage(sent.copies[0].id))
        assert shown.group == "ops"
        assert shown.group_send is not None
        assert (shown.group_send.kind, shown.group_send.delivered) == (api.Kind.FILE, 3)
        assert {c.state for c in shown.group_send.copies} == {api.MessageState.DELIVERED}
        # A member's inbox and message show the group.
        assert bob.daemon is not None
        inbox = await bob.daemon.messages.inbox(api.Inbox())
        assert [(i.contact, i.kind, i.group) for i in inbox] == [("alice", api.Kind.FILE, "ops")]
        one = await bob.daemon.messages.message(api.GetMessage(inbox[0].id))
        assert (one.group, one.group_id) == ("ops", made.id)
        # The same send again (its id) queues nothing more.
        again = await alice.daemon.groups.group_send_file(
            api.GroupSendFile("ops", str(source), id=sent.id, label="TLP:AMBER")
        )
        assert [c.id for c in again.copies] == [c.id for c in sent.copies]
        changed = tmp_path / "other" / "minutes.bin"
        changed.parent.mkdir()
        changed.write_bytes(b"another content")
        with pytest.raises(ConfigError):
            await alice.daemon.groups.group_send_file(
                api.GroupSendFile("ops", str(changed), id=sent.id, label="TLP:AMBER")
            )
        # And a member's file reaches the others, the author too.
        other = tmp_path / "reply.txt"
        other.write_bytes(b"seen")
        reply = await carol.daemon.groups.group_send_file(  # type: ignore[union-attr]
            api.GroupSendFile("ops", str(other))
        )
        await until(lambda: _states(carol, reply) == {"delivered"})
        for member in (alice, bob, dave):
            assert [r.file.name for r in _group_files(member, carol)] == ["reply.txt"]  # type: ignore[union-attr]
        assert alice.store.integrity_check() == []
        # The evidence log holds each copy as a file queued and received.
        export = tmp_path / "case.zip"
        exported = await bob.daemon.evidence.evidence_export(
            api.EvidenceExport(str(export), group="ops")
        )
        assert (exported.messages, exported.files) == (2, 2)
        with zipfile.ZipFile(export) as archive:
            report = bundle.verify(archive)
        assert report.ok, report.problems
        # alice's: both files she sent (a copy to each member) and carol's to her.
        both_ways = tmp_path / "alice.zip"
        mine = await alice.daemon.evidence.evidence_export(
            api.EvidenceExport(str(both_ways), group="ops")
        )
        assert (mine.messages, mine.files) == (4, 4)
        with zipfile.ZipFile(both_ways) as archive:
            assert bundle.verify(archive).ok


async def test_a_member_away_gets_the_file_when_back(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol")]
        alice, bob, carol = nodes
        await _group(nodes, nursery)
        carol.stop()
        await until(lambda: not carol.up)
        source = tmp_path / "late.bin"
        data = os.urandom(70_000)
        source.write_bytes(data)
        sent = await alice.daemon.groups.group_send_file(  # type: ignore[union-attr]
            api.GroupSendFile("ops", str(source))
        )
        await until(lambda: len(_group_files(bob, alice)) == 1)
        assert _group_files(carol, alice) == []
        await carol.start(nursery)
        await until(lambda: _states(alice, sent) == {"delivered"})
        (received,) = _group_files(carol, alice)
        assert received.file is not None
        assert received.file.blake2b == hashlib.blake2b(data, digest_size=64).digest()


async def test_a_group_file_send_is_refused_whole(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol")]
        alice, bob, _carol = nodes
        await _group(nodes, nursery)
        source = tmp_path / "f.bin"
        source.write_bytes(b"x" * 10)
        assert alice.daemon is not None
        groups = alice.daemon.groups
        before = _snapshot(alice)
        with pytest.raises(LabelError):  # no new TLP:RED to a group
            await groups.group_send_file(api.GroupSendFile("ops", str(source), label="TLP:RED"))
        with pytest.raises(ConfigError):
            await groups.group_send_file(api.GroupSendFile("ops", "f.bin"))  # not absolute
        assert _snapshot(alice) == before
        # alice made bob an admin; bob removes alice, who then sends nothing.
        await groups.group_promote(api.GroupPromote("ops", "bob"))
        await until(
            lambda: bob.store.groups.find("ops").state.is_admin(bob.secrets.identity.public_key)
        )
        await bob.daemon.groups.group_remove(api.GroupRemove("ops", ("alice",)))  # type: ignore[union-attr]
        me = alice.secrets.identity.public_key
        await until(lambda: not alice.store.groups.find("ops").state.is_member(me))
        before = _snapshot(alice)
        with pytest.raises(GroupNotAllowedError):
            await groups.group_send_file(api.GroupSendFile("ops", str(source)))
        assert _snapshot(alice) == before


def _snapshot(node: Node) -> tuple[object, ...]:
    db = node.store._db
    return tuple(
        db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in (
            "groups",
            "group_ops",
            "group_members",
            "group_messages",
            "messages",
            "transfers",
        )
    )


def _offer(n: int, group: bytes, heads: bytes, data: bytes = b"bad") -> m.GroupFileOffer:
    digest = hashlib.blake2b(data, digest_size=64).digest()
    return m.GroupFileOffer(
        bytes([n]) * 16, 1, f"f{n}.bin", len(data), digest, "application/octet-stream", group, heads
    )


class _Reader:
    """Everything a raw channel received, read on until what is wanted came
    (replies are written after the automatic Pong, in the order decided)."""

    def __init__(self, channel: object) -> None:
        self.channel = channel
        self.seen: list[object] = []

    async def until(self, wanted: object) -> None:
        while wanted not in self.seen:
            self.seen.append(await self.channel.receive())  # type: ignore[attr-defined]

    def took(self, file_id: bytes) -> bool:
        return any(
            (isinstance(a, m.FileAccept | m.FileComplete) and a.id == file_id)
            or (isinstance(a, m.Ack) and file_id in a.ids)
            for a in self.seen
        )


async def test_bad_group_file_offers_are_refused_and_nothing_is_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onionpost.daemon")
    async with network(tmp_path) as (net, nursery):
        alice, bob, mallory, zed = (net.node(n) for n in ("alice", "bob", "mallory", "zed"))
        befriend(alice, bob)
        befriend(alice, mallory)
        befriend(alice, zed)
        await alice.start(nursery)
        assert alice.daemon is not None
        made = await alice.daemon.groups.group_create(api.GroupCreate("ops", ("bob", "mallory")))
        group_id = bytes.fromhex(made.id)
        heads = b"".join(alice.store.groups.log(group_id).heads)

        # A non-member's offer at good heads: refused for good, nothing stored.
        before = _snapshot(alice)
        channel_z, _ = await net.connect_raw(zed, alice)
        from_zed = _Reader(channel_z)
        await channel_z.send(_offer(1, group_id, heads))
        await channel_z.send(m.FileChunk(bytes([1]) * 16, 0, b"bad"))
        await from_zed.until(m.FileReject(bytes([1]) * 16, m.FileRejectReason.DECLINED))
        await channel_z.send(m.Ping(1))
        await from_zed.until(m.Pong(1))
        assert not from_zed.took(bytes([1]) * 16)
        assert _snapshot(alice) == before

        # A member's offers naming heads nobody gives, and a group unknown:
        # alice asks for what it lacks, takes nothing meanwhile.
        channel, _ = await net.connect_raw(mallory, alice)
        from_mallory = _Reader(channel)
        await channel.send(_offer(2, group_id, bytes(32)))
        await channel.send(_offer(3, bytes(15) + b"\x01", heads))
        await from_mallory.until(m.GroupFetch(group_id, heads))
        assert _snapshot(alice) == before

        # The session goes on: mallory's file at good heads is taken as the group's.
        good = _offer(4, group_id, heads, b"fine")
        await channel.send(good)
        await from_mallory.until(m.FileAccept(good.id, 0))
        await channel.send(m.FileChunk(good.id, 0, b"fine"))
        await from_mallory.until(m.FileComplete(good.id))
        assert [r.file.name for r in _group_files(alice, mallory)] == ["f4.bin"]  # type: ignore[union-attr]

        # Removed, mallory offers at the heads it knew: refused, nothing stored.
        await alice.daemon.groups.group_remove(api.GroupRemove("ops", ("mallory",)))
        before = _snapshot(alice)
        await channel.send(_offer(5, group_id, heads))
        await from_mallory.until(m.FileReject(bytes([5]) * 16, m.FileRejectReason.DECLINED))
        await channel.send(m.Ping(2))
        await from_mallory.until(m.Pong(2))
        assert _snapshot(alice) == before
        for n in (2, 3, 5):
            assert not from_mallory.took(bytes([n]) * 16)
        assert not any(isinstance(a, m.FileReject) and a.id[0] in (2, 3) for a in from_mallory.seen)

        # The waiting ones are dropped when the session ends.
        await channel.aclose()
        await until(lambda: "why=not-fetched" in caplog.text)
        # Each refused once in the log.
        for n in (1, 2, 3, 5):
            lines = [
                r.getMessage()
                for r in caplog.records
                if f"id={(bytes([n]) * 16).hex()}" in r.getMessage()
                and "group_file_refused" in r.getMessage()
            ]
            assert len(lines) == 1, (n, lines)
        assert _snapshot(alice) == before
        # The daemon serves.
        shown = await alice.daemon.groups.group_show(api.GroupShow("ops"))
        assert [g.name for g in shown.members] == ["alice", "bob"]


async def test_a_group_file_resumes_and_a_removal_ends_it(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, mallory = (net.node(n) for n in ("alice", "bob", "mallory"))
        befriend(alice, bob)
        befriend(alice, mallory)
        await alice.start(nursery)
        assert alice.daemon is not None
        made = await alice.daemon.groups.group_create(api.GroupCreate("ops", ("bob", "mallory")))
        group_id = bytes.fromhex(made.id)
        heads = b"".join(alice.store.groups.log(group_id).heads)
        data = os.urandom(FILE_CHUNK_SIZE * 3)
        offer = _offer(7, group_id, heads, data)

        async def first_chunk_then_gone() -> None:
            channel, _ = await net.connect_raw(mallory, alice)
            reader = _Reader(channel)
            await channel.send(offer)
            await reader.until(m.FileAccept(offer.id, 0))
            await channel.send(m.FileChunk(offer.id, 0, data[:FILE_CHUNK_SIZE]))
            await channel.send(m.Ping(1))
            await reader.until(m.Pong(1))
            await channel.aclose()

        # The session ends after one chunk; the offer again resumes where it stopped.
        await first_chunk_then_gone()
        await until(lambda: alice.store.transfers.arriving(offer.id, None) is not None)
        channel, _ = await net.connect_raw(mallory, alice)
        reader = _Reader(channel)
        await channel.send(offer)
        await reader.until(m.FileAccept(offer.id, FILE_CHUNK_SIZE))
        await channel.aclose()

        # Removed meanwhile: its offer is refused and what arrived is dropped.
        await alice.daemon.groups.group_remove(api.GroupRemove("ops", ("mallory",)))
        channel, _ = await net.connect_raw(mallory, alice)
        reader = _Reader(channel)
        await channel.send(offer)
        await reader.until(m.FileReject(offer.id, m.FileRejectReason.DECLINED))
        assert alice.store.transfers.arriving(offer.id, None) is None
        assert _group_files(alice, mallory) == []
        assert alice.store.integrity_check() == []


@pytest.mark.parametrize(
    ("check", "final"),
    [
        (GroupTextOutcome.NOT_A_MEMBER, True),
        (GroupTextOutcome.REMOVED, True),
        (GroupTextOutcome.FETCH, False),
        (GroupTextOutcome.UNKNOWN_GROUP, False),
        (None, False),  # accepted
    ],
)
def test_which_refusals_of_a_group_file_are_final(
    check: GroupTextOutcome | None, final: bool
) -> None:
    # Final: answered FileReject(DECLINED), which ends the copy at its author;
    # the others wait for operations (a later session may decide them).
    assert GroupOfferOutcome(check=check).final is final
