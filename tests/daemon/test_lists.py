"""Sends to a distribution list over in-memory endpoints: a copy per member.

Each member receives exactly one copy, as an ordinary message from the
sender; each copy's state is its own (a member offline keeps its copy
queued while the others are delivered); replies come back one to one; and
the local API answers bad input with a clear error, storing nothing.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from onionpost import api
from onionpost.client import open_client
from onionpost.errors import ApiError, ConfigError, NotFoundError, UnknownContactError
from onionpost.host import serve_api
from onionpost.testing.doubles import short_tmpdir
from onionpost.testing.memory import Node, befriend, network, until


def _states(sent: api.ListSent | api.DistributionList, node: Node) -> dict[str, str]:
    """Each copy's state as the sender's store has it now."""
    copies = sent.copies if isinstance(sent, api.ListSent) else sent.sends[0].copies
    return {c.contact: node.state(bytes.fromhex(c.id)) for c in copies}


async def test_each_member_gets_exactly_one_copy_and_each_copy_has_its_state(
    tmp_path: Path,
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        members = [net.node(n) for n in ("bob", "carol", "dave")]
        bob, carol, dave = members
        for member in members:
            befriend(alice, member)
        await alice.start(nursery)
        await bob.start(nursery)
        await carol.start(nursery)
        daemon = alice.daemon
        assert daemon is not None
        made = await daemon.lists.list_create(api.ListCreate("team", ("bob", "carol", "dave")))
        assert made.members == ("bob", "carol", "dave")

        sent = await daemon.lists.list_send_text(api.ListSendText("team", "briefing at 9"))
        assert sent.kind is api.Kind.TEXT
        assert [c.contact for c in sent.copies] == ["bob", "carol", "dave"]
        assert len({c.id for c in sent.copies} | {sent.id}) == 4  # every id its own
        assert {c.state for c in sent.copies} == {api.MessageState.QUEUED}

        # bob and carol get theirs; dave is offline, his copy waits.
        await until(lambda: _states(sent, alice) == {
            "bob": "delivered", "carol": "delivered", "dave": "queued"
        })  # fmt: skip
        shown = await daemon.lists.list_show(api.ListShow("team"))
        (latest,) = shown.sends
        assert {c.contact: c.state for c in latest.copies} == {
            "bob": api.MessageState.DELIVERED,
            "carol": api.MessageState.DELIVERED,
            "dave": api.MessageState.QUEUED,
        }
        # Each copy is an ordinary message of its own, `message ID` shows it.
        bob_copy = await daemon.messages.message(api.GetMessage(sent.copies[0].id))
        assert (bob_copy.contact, bob_copy.body) == ("bob", "briefing at 9")
        # The send's own id is no message: said so, with what follows it.
        with pytest.raises(NotFoundError) as whole:
            await daemon.messages.message(api.GetMessage(sent.id))
        assert str(whole.value) == (
            f"{sent.id} is a send to the list 'team', not one message: "
            "'list show team' follows its copies"
        )
        with pytest.raises(NotFoundError, match=r"^no message"):
            await daemon.messages.message(api.GetMessage("ab" * 16))

        await dave.start(nursery)
        await until(lambda: set(_states(sent, alice).values()) == {"delivered"})
        for member, copy in zip(members, sent.copies, strict=True):
            (received,) = member.inbox_from(alice)  # exactly one copy each
            assert received.body == "briefing at 9"
            assert received.id.hex() == copy.id
            assert [c.name for c in member.store.contacts.all()] == ["alice"]

        # A reply comes back one to one, from the member who wrote it.
        assert bob.daemon is not None
        reply = await bob.daemon.messages.send_text(api.SendText("alice", "ack"))
        await until(lambda: len(alice.inbox_from(bob)) == 1)
        assert alice.inbox_from(bob)[0].id.hex() == reply.id
        assert alice.inbox_from(carol) == alice.inbox_from(dave) == []

        # The same send again (its answer lost) is the same send: nothing more.
        again = await daemon.lists.list_send_text(
            api.ListSendText("team", "briefing at 9", id=sent.id)
        )
        assert again.id == sent.id
        assert [c.id for c in again.copies] == [c.id for c in sent.copies]
        assert alice.store.outbox.listing() == []
        for member in members:
            assert len(member.inbox_from(alice)) == 1


async def test_a_file_to_a_list_reaches_each_member_once(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        for node in (alice, bob, carol):
            await node.start(nursery)
        daemon = alice.daemon
        assert daemon is not None
        await daemon.lists.list_create(api.ListCreate("pair", ("bob", "carol")))
        data = os.urandom(200_000)
        source = tmp_path / "plan.bin"
        source.write_bytes(data)
        sent = await daemon.lists.list_send_file(api.ListSendFile("pair", str(source)))
        assert sent.kind is api.Kind.FILE
        await until(lambda: set(_states(sent, alice).values()) == {"delivered"})
        digest = hashlib.blake2b(data, digest_size=64).digest()
        for member in (bob, carol):
            (received,) = member.inbox_from(alice)
            assert received.file is not None
            assert (received.file.name, received.file.size) == ("plan.bin", len(data))
            assert received.file.blake2b == digest
        assert alice.store.integrity_check() == []


async def test_bad_list_requests_are_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        lists = alice.daemon.lists if alice.daemon else None
        assert lists is not None
        await lists.list_create(api.ListCreate("team", ("bob",)))
        await lists.list_create(api.ListCreate("empty"))
        bad = [
            (lists.list_create(api.ListCreate("TEAM")), ConfigError),
            (lists.list_create(api.ListCreate("x", ("mallory",))), UnknownContactError),
            (lists.list_add(api.ListAdd("nope", ("bob",))), NotFoundError),
            (lists.list_add(api.ListAdd("team", ("bob",))), ConfigError),
            (lists.list_remove(api.ListRemove("empty", ("bob",))), ConfigError),
            (lists.list_delete(api.ListDelete("nope")), NotFoundError),
            (lists.list_show(api.ListShow("nope")), NotFoundError),
            (lists.list_send_text(api.ListSendText("nope", "x")), NotFoundError),
            (lists.list_send_text(api.ListSendText("empty", "x")), ConfigError),
        ]
        for call, error in bad:
            with pytest.raises(error):
                await call
        assert [(x.name, x.members) for x in await lists.list_list(api.ListList())] == [
            ("empty", ()),
            ("team", ("bob",)),
        ]
        assert alice.store.outbox.listing() == []
        # A contact removed leaves the list.
        assert alice.daemon is not None
        await alice.daemon.contacts.contact_remove(api.ContactRemove("bob"))
        assert (await lists.list_show(api.ListShow("team"))).members == ()


async def test_lists_over_the_local_api(tmp_path: Path) -> None:
    """The client's calls, and the error codes a program sees."""
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        with short_tmpdir() as run:
            path = run / "control.sock"
            await nursery.start(serve_api, alice.daemon, path)
            with trio.fail_after(30):
                async with open_client(socket_path=path) as client:
                    made = await client.list_create("team", ["bob"])
                    assert made == api.DistributionList("team", made.created_ms, ("bob",))
                    sent = await client.list_send_text("team", "hello")
                    (copy,) = sent.copies
                    assert (await client.message(copy.id)).body == "hello"
                    assert (await client.list_show("team")).sends == (sent,)
                    assert [x.name for x in await client.list_list()] == ["team"]
                    codes = {}
                    for name, call in {
                        "unknown list": client.list_show("nope"),
                        "unknown member": client.list_add("team", ["mallory"]),
                        "duplicate": client.list_create("Team"),
                    }.items():
                        with pytest.raises(ApiError) as caught:
                            await call
                        codes[name] = caught.value.code
                    assert codes == {
                        "unknown list": "not-found",
                        "unknown member": "unknown-contact",
                        "duplicate": "config",
                    }
                    # A send id not as the daemon names ids: refused by the client.
                    with pytest.raises(ConfigError, match="32 lowercase hex digits"):
                        await client.list_send_text("team", "x", id="00")
                    deleted = await client.list_delete("team")
                    assert deleted.name == "team"
                    assert await client.list_list() == ()
            nursery.cancel_scope.cancel()
