"""Members of a group who are not each other's contacts (groups.md §9), in
memory on MockClock: alice is bob's and carol's contact, bob and carol are
not each other's. Once alice's group holds all three, bob and carol are
introduced to each other: each one's group texts reach the other once; what
is not a group record is refused (nothing stored, logged once, the session
and the group go on); the card added as a contact makes a contact of the
same peer; and when carol is removed, bob drops her: her authorization, her
link and what waited for her.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from onionpost import api
from onionpost.errors import ConfigError
from onionpost.proto import messages as m
from onionpost.proto.groups import MemberCard, OpKind, sign_operation
from onionpost.store import Contact, Direction
from onionpost.testing.memory import Network, Node, befriend, network, until


def _peer(node: Node, other: Node) -> Contact | None:
    return node.store.contacts.peer_by_address(other.address)


def _introduced(node: Node, other: Node) -> bool:
    peer = _peer(node, other)
    return peer is not None and peer.introduced


def _from(node: Node, sender: Node) -> list[tuple[str, bool]]:
    """What ``node`` holds from ``sender``: (body, whether as a group's)."""
    peer = _peer(node, sender)
    if peer is None:
        return []
    found = []
    for row in node.store.messages.inbox(limit=1000):
        if row.contact_id == peer.id:
            group = node.store.groups.of_message(Direction.IN, row.contact_id, row.id)
            found.append((row.body or "", group is not None))
    return found


@asynccontextmanager
async def _team(tmp_path: Path) -> AsyncIterator[tuple[Network, trio.Nursery, list[Node]]]:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol")]
        alice, bob, carol = nodes
        befriend(alice, bob)
        befriend(alice, carol)
        for node in nodes:
            await node.start(nursery)
        made = await alice.daemon.groups.group_create(  # type: ignore[union-attr]
            api.GroupCreate("desk", ("bob", "carol"))
        )
        group_id = bytes.fromhex(made.id)

        def level() -> bool:
            heads = {
                n.store.groups.log(group_id).head for n in nodes if n.store.groups.known(group_id)
            }
            return len(heads) == 1 and all(n.store.groups.known(group_id) for n in nodes)

        await until(level)
        await until(lambda: _introduced(bob, carol) and _introduced(carol, bob))
        yield net, nursery, nodes


async def _send(node: Node, body: str) -> api.GroupSent:
    assert node.daemon is not None
    return await node.daemon.groups.group_send_text(api.GroupSendText("desk", body))


async def test_two_members_who_are_not_contacts_reach_each_other_once(tmp_path: Path) -> None:
    async with _team(tmp_path) as (_net, _nursery, (alice, bob, carol)):
        assert bob.daemon is not None
        assert carol.daemon is not None
        # Introduced: authorized at each other's onion service, never contacts.
        assert carol.secrets.client_auth_public in bob.daemon.authorized_clients()
        assert bob.secrets.client_auth_public in carol.daemon.authorized_clients()
        listed = await bob.daemon.contacts.contact_list(api.ContactList())
        assert [c.name for c in listed] == ["alice"]
        peer = _peer(bob, carol)
        assert peer is not None
        assert peer.introduced_by == alice.secrets.identity.public_key

        from_bob = await _send(bob, "from bob")
        from_carol = await _send(carol, "from carol")
        assert (len(from_bob.copies), from_bob.unreachable) == (2, ())
        assert (len(from_carol.copies), from_carol.unreachable) == (2, ())
        await until(lambda: ("from bob", True) in _from(carol, bob))
        await until(lambda: ("from carol", True) in _from(bob, carol))
        await until(lambda: ("from bob", True) in _from(alice, bob))
        await until(lambda: ("from carol", True) in _from(alice, carol))
        for sent in (from_bob, from_carol):
            node = bob if sent is from_bob else carol
            ids = [bytes.fromhex(c.id) for c in sent.copies]
            await until(lambda n=node, i=ids: {n.state(x) for x in i} == {"delivered"})  # type: ignore[misc]
        assert _from(carol, bob) == [("from bob", True)]
        assert _from(bob, carol) == [("from carol", True)]

        # Shown as introduced by alice, not verified; a contact as a contact.
        shown = await bob.daemon.groups.group_show(api.GroupShow("desk"))
        by_name = {g.name: g for g in shown.members}
        assert (by_name["carol"].contact, by_name["carol"].introduced_by) == (None, "alice")
        assert (by_name["carol"].verified, by_name["carol"].reachable) == (False, True)
        assert (by_name["alice"].contact, by_name["alice"].introduced_by) == ("alice", None)
        assert by_name["bob"].reachable is None  # us

        # Not written to directly: the refusal says why.
        with pytest.raises(ConfigError, match="introduced by the group 'desk', not a contact"):
            await bob.daemon.messages.send_text(api.SendText("carol", "direct"))
        # Its safety number is compared as a contact's, by its address.
        number = await bob.daemon.contacts.contact_verify(api.ContactVerify(str(carol.address)))
        confirmed = await bob.daemon.contacts.contact_verify(
            api.ContactVerify(str(carol.address), confirm=number.safety_number)
        )
        assert confirmed.verified_ms is not None
        shown = await bob.daemon.groups.group_show(api.GroupShow("desk"))
        assert {g.name: g.verified for g in shown.members}["carol"] is True


async def test_a_group_file_from_an_introduced_member_reaches_the_other_whole(
    tmp_path: Path,
) -> None:
    async with _team(tmp_path) as (_net, _nursery, (_alice, bob, carol)):
        assert carol.daemon is not None
        data = bytes(range(256)) * 300  # several chunks
        source = tmp_path / "notes.bin"
        source.write_bytes(data)
        sent = await carol.daemon.groups.group_send_file(api.GroupSendFile("desk", str(source)))
        assert (sorted(c.contact for c in sent.copies), sent.unreachable) == (["alice", "bob"], ())
        ids = [bytes.fromhex(c.id) for c in sent.copies]
        await until(lambda: {carol.state(i) for i in ids} == {"delivered"})
        peer = _peer(bob, carol)
        assert peer is not None
        (received,) = [r for r in bob.store.messages.inbox(limit=100) if r.contact_id == peer.id]
        assert received.file is not None
        assert received.file.size == len(data)
        assert received.file.blake2b == hashlib.blake2b(data, digest_size=64).digest()
        assert bob.store.groups.of_message(Direction.IN, peer.id, received.id) is not None


async def test_a_one_to_one_text_from_an_introduced_member_is_refused_until_it_is_a_contact(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onionpost.daemon")
    async with _team(tmp_path) as (_net, _nursery, (_alice, bob, carol)):
        assert bob.daemon is not None
        assert carol.engine is not None
        # carol's daemon would not queue it (bob is no contact of hers either);
        # her engine is made to, as a daemon that holds bob as a contact would.
        to_bob = _peer(carol, bob)
        assert to_bob is not None
        direct = m.Text(bytes([7]) * 16, 1, "one to one", "text/plain")
        await carol.engine.queue_text(to_bob.id, direct)
        await until(lambda: carol.state(direct.id) == "sent")
        # The group goes on in the same session, after the refusal.
        after = await _send(carol, "group after")
        await until(lambda: ("group after", True) in _from(bob, carol))
        assert _from(bob, carol) == [("group after", True)]
        assert carol.state(direct.id) == "sent"  # never acknowledged
        refused = [r for r in caplog.records if "event=record_refused" in r.getMessage()]
        assert len(refused) == 1
        assert "record=Text" in refused[0].getMessage()
        assert after.copies

        # bob adds carol's card: the same peer is a contact now, and the text
        # she kept queued comes through.
        peer_before = _peer(bob, carol)
        await bob.daemon.contacts.contact_add(api.ContactAdd(carol.card(), "carol"))
        peer_after = _peer(bob, carol)
        assert peer_before is not None
        assert peer_after is not None
        assert (peer_after.id, peer_after.introduced) == (peer_before.id, False)
        assert bob.engine is not None
        bob.engine.kick(peer_after.id, retry_now=True)
        carol.engine.kick(to_bob.id, retry_now=True)
        await until(lambda: ("one to one", False) in _from(bob, carol))
        await until(lambda: carol.state(direct.id) == "delivered")


async def test_records_other_than_group_records_are_refused_and_the_session_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="onionpost.daemon")
    async with _team(tmp_path) as (net, _nursery, (alice, bob, carol)):
        carol.stop()
        await until(lambda: not carol.up)
        peer = _peer(bob, carol)
        assert peer is not None
        group_id = bob.store.groups.find("desk").group_id
        heads = bob.store.groups.log(group_id).heads
        before = (
            bob.store.messages.inbox(limit=1000),
            [g.head for g in bob.store.groups.all()],
            [(c.id, c.name, c.introduced) for c in bob.store.contacts.peers()],
        )
        me = carol.secrets.identity
        own = sign_operation(
            me, bytes(16), 1, (), 1, OpKind.CREATE, name="carol's",
            card=MemberCard(me.public_key, bytes(32), "carol"),
        )  # fmt: skip
        bad: list[m.Message] = [
            m.Text(bytes([1]) * 16, 1, "direct", "text/plain"),
            m.FileOffer(bytes([2]) * 16, 1, "a.txt", 3, bytes(64), "text/plain"),
            m.GroupOps(bytes(16), (own.encode(),)),  # a group bob does not share with her
            m.GroupFetch(bytes(16), b""),
        ]
        channel, _stream = await net.connect_raw(carol, bob)
        for record in bad:
            await channel.send(record)
        await channel.send(m.Ping(5))
        answers: list[object] = []
        while not any(isinstance(a, m.Pong) and a.nonce == 5 for a in answers):
            answers.append(await channel.receive())
        assert not any(isinstance(a, m.Ack | m.FileAccept | m.GroupOps) for a in answers)
        after = (
            bob.store.messages.inbox(limit=1000),
            [g.head for g in bob.store.groups.all()],
            [(c.id, c.name, c.introduced) for c in bob.store.contacts.peers()],
        )
        assert [r.id for r in after[0]] == [r.id for r in before[0]]
        assert after[1:] == before[1:]
        refused = [r for r in caplog.records if "event=record_refused" in r.getMessage()]
        assert len(refused) == 1  # once a session
        # The session goes on: her group text at good heads is taken and acked.
        text = m.GroupText(
            bytes([3]) * 16, 1, "still here", "text/plain", group_id, b"".join(heads)
        )
        await channel.send(text)
        while True:
            answer = await channel.receive()
            if isinstance(answer, m.Ack) and text.id in answer.ids:
                break
        assert _from(bob, carol) == [("still here", True)]
        assert alice.up
        assert bob.up


async def test_a_member_removed_is_dropped_with_its_authorization(tmp_path: Path) -> None:
    async with _team(tmp_path) as (_net, nursery, (alice, bob, carol)):
        assert alice.daemon is not None
        assert bob.daemon is not None
        assert bob.engine is not None
        peer = _peer(bob, carol)
        assert peer is not None
        carol.stop()
        await until(lambda: not carol.up)
        waiting = await _send(bob, "before the removal")
        to_carol = next(c for c in waiting.copies if c.contact == "carol")

        await alice.daemon.groups.group_remove(api.GroupRemove("desk", ("carol",)))
        await until(lambda: _peer(bob, carol) is None)
        assert carol.secrets.client_auth_public not in bob.daemon.authorized_clients()
        assert bob.engine.status(peer.id) is None  # no link: nothing dialled, nothing taken
        assert bob.store.messages.message(bytes.fromhex(to_carol.id)).state == "expired"
        # Alice is still bob's contact; carol is shown unreachable.
        shown = await bob.daemon.groups.group_show(api.GroupShow("desk"))
        assert {g.name for g in shown.members} == {"alice", "bob"}

        after = await _send(bob, "after the removal")
        assert [c.contact for c in after.copies] == ["alice"]
        await carol.start(nursery)
        await until(lambda: ("after the removal", True) in _from(alice, bob))
        assert _from(carol, bob) == []


async def test_a_contact_removed_who_shares_a_group_is_introduced(tmp_path: Path) -> None:
    async with _team(tmp_path) as (_net, _nursery, (alice, bob, _carol)):
        assert bob.daemon is not None
        removed = await bob.daemon.contacts.contact_remove(api.ContactRemove("alice"))
        # Said, so that the user knows alice can still reach this endpoint.
        assert removed.groups == ("desk",)
        await until(lambda: _introduced(bob, alice))
        assert alice.secrets.client_auth_public in bob.daemon.authorized_clients()
        assert await bob.daemon.contacts.contact_list(api.ContactList()) == ()
        await _send(alice, "still in the group")
        await until(lambda: ("still in the group", True) in _from(bob, alice))
        shown = await bob.daemon.groups.group_show(api.GroupShow("desk"))
        assert {g.name: g.introduced_by for g in shown.members}["alice"] == "alice"


async def test_introductions_are_kept_across_a_restart(tmp_path: Path) -> None:
    async with _team(tmp_path) as (_net, nursery, (_alice, bob, carol)):
        peer = _peer(bob, carol)
        bob.stop()
        await until(lambda: not bob.up)
        await bob.start(nursery)
        again = _peer(bob, carol)
        assert peer is not None
        assert again is not None
        assert (again.id, again.introduced) == (peer.id, True)
        assert bob.daemon is not None
        assert carol.secrets.client_auth_public in bob.daemon.authorized_clients()
        await _send(carol, "after bob's restart")
        await until(lambda: ("after bob's restart", True) in _from(bob, carol))
