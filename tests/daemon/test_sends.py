"""Sends are idempotent on their id: a send made again is the same message.

The client chooses each message's id; when a send's answer is lost (the
daemon slow, the connection cut), the same request again must not queue a
second message, and must be answered as the first was.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio
import trio.testing

from onionpost import api
from onionpost.client import open_client
from onionpost.errors import ApiError, ConfigError, UnknownContactError
from onionpost.host import serve_api
from onionpost.testing.doubles import short_tmpdir
from onionpost.testing.memory import befriend, network, until


async def test_a_text_sent_twice_under_one_id_is_one_message(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        await alice.start(nursery)
        assert alice.daemon is not None
        message_id = api.new_message_id()
        send = api.SendText("bob", "only once", id=message_id)
        first = await alice.daemon.messages.send_text(send)
        again = await alice.daemon.messages.send_text(send)
        assert first == again == api.Queued(message_id, api.MessageState.QUEUED, label="TLP:AMBER")
        assert [s.id.hex() for s in alice.store.outbox.listing()] == [message_id]
        # The same id for another contact or another text is refused.
        with pytest.raises(ConfigError, match="already another message's"):
            await alice.daemon.messages.send_text(api.SendText("carol", "only once", id=message_id))
        with pytest.raises(ConfigError, match="already another message's"):
            await alice.daemon.messages.send_text(api.SendText("bob", "changed", id=message_id))
        # Once delivered, the same send again is still answered, and not sent again.
        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 1)
        await until(lambda: alice.state(bytes.fromhex(message_id)) == "delivered")
        assert await alice.daemon.messages.send_text(send) == first
        assert alice.store.outbox.listing() == []
        await trio.sleep(0.2)
        assert [s.body for s in bob.inbox_from(alice)] == ["only once"]


async def test_a_file_sent_twice_at_once_under_one_id_is_one_file(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        source = tmp_path / "report.bin"
        source.write_bytes(os.urandom(500_000))
        await alice.start(nursery)
        daemon = alice.daemon
        assert daemon is not None
        send = api.SendFile("bob", str(source), id=api.new_message_id())
        answers: list[api.Queued] = []

        async def one() -> None:
            answers.append(await daemon.messages.send_file(send))

        async with trio.open_nursery() as both:
            both.start_soon(one)
            both.start_soon(one)
        assert answers[0] == answers[1]
        assert answers[0].id == send.id
        assert answers[0].size == 500_000
        assert [s.id.hex() for s in alice.store.outbox.listing()] == [send.id]
        assert alice.store.integrity_check() == []
        other = tmp_path / "other.bin"
        other.write_bytes(os.urandom(10))
        with pytest.raises(ConfigError, match="already another message's"):
            await daemon.messages.send_file(api.SendFile("bob", str(other), id=send.id))


async def _forward(source: trio.SocketStream, sink: trio.SocketStream) -> None:
    try:
        async for data in source:
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(sink)


async def test_a_send_whose_answer_was_cut_off_is_sent_again_once(tmp_path: Path) -> None:
    """The connection breaks after the request was written and before the
    answer: the client connects again and sends the same request, and the
    daemon answers it without queueing a second message."""
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        with short_tmpdir() as run:
            daemon_socket = run / "run" / "control.sock"
            await nursery.start(serve_api, alice.daemon, daemon_socket)
            # Between client and daemon: the first connection never carries an
            # answer back, and is cut once the daemon has queued the text.
            listener = trio.socket.socket(trio.socket.AF_UNIX)
            await listener.bind(os.fspath(run / "proxy.sock"))
            listener.listen()
            connections = 0

            async def proxy(proxying: trio.Nursery) -> None:
                nonlocal connections
                while True:
                    sock, _ = await listener.accept()
                    connections += 1
                    client_side = trio.SocketStream(sock)
                    daemon_side = await trio.open_unix_socket(os.fspath(daemon_socket))
                    proxying.start_soon(_forward, client_side, daemon_side)
                    if connections == 1:
                        proxying.start_soon(cut_when_queued, client_side, daemon_side)
                    else:
                        proxying.start_soon(_forward, daemon_side, client_side)

            async def cut_when_queued(*sides: trio.SocketStream) -> None:
                await until(lambda: len(alice.store.outbox.listing()) == 1)
                for side in sides:
                    await trio.aclose_forcefully(side)

            with listener:
                async with trio.open_nursery() as proxying:
                    proxying.start_soon(proxy, proxying)
                    with trio.fail_after(30):
                        async with open_client(socket_path=run / "proxy.sock") as client:
                            queued = await client.send_text("bob", "cut off")
                    proxying.cancel_scope.cancel()
        assert connections == 2
        (stored,) = alice.store.outbox.listing()
        assert stored.id.hex() == queued.id
        assert stored.body == "cut off"


async def test_many_texts_in_one_call_are_queued_in_order_once_each(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        with short_tmpdir() as run:
            socket_path = run / "run" / "control.sock"
            await nursery.start(serve_api, alice.daemon, socket_path)
            async with open_client(socket_path=socket_path) as client:
                given = api.TextItem("chosen id", id=api.new_message_id())
                queued = await client.send_texts("bob", [f"text {i}" for i in range(300)] + [given])
                assert len(queued) == 301
                assert queued[-1].id == given.id
                assert len({q.id for q in queued}) == 301
                # Made again (its answer lost): the same messages, none twice.
                items = [api.TextItem(f"text {i}", id=q.id) for i, q in enumerate(queued[:300])]
                again = await client.send_texts("bob", [*items, given])
                assert again == queued
                # A list that is too long, or empty, is refused whole.
                with pytest.raises(ApiError, match="1 to 1000 texts"):
                    await client.send_texts("bob", [])
                with pytest.raises(ApiError, match="1 to 1000 texts"):
                    await client.send_texts("bob", ["x"] * (api.MAX_TEXTS + 1))
                with pytest.raises(ApiError) as refused:
                    await client.send_texts("nobody", ["x"])
                assert refused.value.code == "unknown-contact"
        assert [s.id.hex() for s in alice.store.outbox.listing(limit=1000)] == [
            q.id for q in queued
        ]
        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 301)
        bodies = [s.body for s in bob.inbox_from(alice)]
        assert sorted(bodies) == sorted([f"text {i}" for i in range(300)] + ["chosen id"])


async def test_a_contact_is_named_by_its_address_too(tmp_path: Path) -> None:
    """A tool keyed on the stable onion address sends, lists the outbox and
    retries by it, in any letter case, with or without '.onion'; an address
    that is no contact's is an unknown contact."""
    async with network(tmp_path) as (net, nursery):
        alice, bob, stranger = net.node("alice"), net.node("bob"), net.node("stranger")
        befriend(alice, bob)
        await alice.start(nursery)
        assert alice.daemon is not None
        messages = alice.daemon.messages
        address = str(bob.address)
        for name in (address, address.upper(), address.removesuffix(".onion")):
            await messages.send_text(api.SendText(name, f"to {name[:6]}"))
        await messages.send_texts(api.SendTexts(address, (api.TextItem("batch"),)))
        assert len(await messages.outbox(api.Outbox(contact=address))) == 4
        assert (await messages.retry(api.Retry(address))).contacts == 1
        with pytest.raises(UnknownContactError):
            await messages.send_text(api.SendText(str(stranger.address), "no"))
        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 4)
