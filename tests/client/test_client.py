"""The client library against the real API server and an in-memory backend."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest
import trio
import trio.testing

from onionpost.client import (
    ApiError,
    Client,
    Contact,
    ContactLabels,
    ContactRef,
    DaemonNotRunningError,
    Direction,
    Event,
    FileInfo,
    Identity,
    Kind,
    Message,
    MessageState,
    Queued,
    SafetyNumber,
    StateChange,
    TextItem,
    TorState,
    TorStatus,
    _client,
    new_message_id,
    open_client,
)
from onionpost.errors import (
    ConfigError,
    NotConfirmedError,
    OnionpostError,
    TransportError,
)
from onionpost.host import _api, serve_api
from onionpost.testing.doubles import SAFETY, MemoryBackend, card_for, short_tmpdir

Served = tuple[MemoryBackend, Path]


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[Served]:
    with short_tmpdir() as home:
        backend = MemoryBackend()
        backend.nursery = nursery
        path = home / "run" / "control.sock"
        await nursery.start(serve_api, backend, path)
        yield backend, path


@pytest.fixture
async def client(served: Served) -> AsyncIterator[Client]:
    async with open_client(socket_path=served[1]) as connected:
        yield connected


async def test_every_call_returns_typed_results(served: Served, client: Client) -> None:
    backend, _ = served
    assert await client.whoami() == Identity(
        "alice", backend.contacts.get("x", {}).get("address", _alice()), card_for("alice")
    )
    bob = await client.contact_add(card_for("bob"))
    assert bob == ContactRef("bob", backend.contacts["bob"]["address"])
    assert (await client.contact_add(card_for("carol"), name="c")).name == "c"
    contacts = await client.contact_list()
    assert [type(c) for c in contacts] == [Contact, Contact]
    assert contacts[0].name == "bob"
    assert contacts[0].reachable is False
    assert contacts[0].added_ms == 1_700_000_000_000
    assert (await client.contact_remove("c")).name == "c"

    verified = await client.contact_verify("bob")
    assert verified == SafetyNumber("bob", SAFETY)
    assert verified.groups == tuple(f"{i:05d}" for i in range(12))

    status = await client.status()
    assert status.tor.state == "ok"
    assert status.tor.detail == "published"
    assert [c.name for c in status.contacts] == ["bob"]
    assert status.outbox_depth == 0

    queued = await client.send_text("bob", "hello", content_type="text/markdown")
    assert queued == Queued(queued.id, "queued", label="TLP:AMBER")
    assert backend.messages[queued.id]["content_type"] == "text/markdown"
    assert (await client.status()).outbox_depth == 1
    sent = await client.message(queued.id)
    assert sent.direction == "out"
    assert sent.body == "hello"
    assert sent.seq is None

    incoming = backend.receive_text("bob", "hi alice")
    got = backend.receive_file("bob", "scan.png", b"\x89PNG")
    inbox = await client.inbox()
    assert [m.seq for m in inbox] == [1, 2]
    assert inbox[0] == Message(
        id=incoming["id"],
        contact="bob",
        kind=Kind.TEXT,
        created_ms=incoming["created_ms"],
        seq=1,
        direction=Direction.IN,
        body="hi alice",
        content_type="text/plain",
        received_ms=incoming["received_ms"],
        state="received",
        label="TLP:AMBER",
    )
    assert inbox[0].banner == "TLP:AMBER"
    assert inbox[1].banner == "UNLABELLED"  # the double's file carries none
    assert inbox[1].file == FileInfo("scan.png", 4, complete=True)
    assert [m.seq for m in await client.inbox(after=1, limit=5)] == [2]
    assert await client.mark_read([incoming["id"]]) == 1
    assert await client.retry() == 1
    assert await client.retry("bob") == 1
    assert backend.retried == [None, "bob"]
    with short_tmpdir() as directory:
        exported = await client.export_file(got["id"], directory / "scan.png")
        assert exported.size == 4
        assert Path(exported.path).read_bytes() == b"\x89PNG"


def _alice() -> str:
    from onionpost.testing.doubles import ALICE

    return ALICE


async def test_refusals_are_api_errors_with_codes(client: Client) -> None:
    with pytest.raises(ApiError) as caught:
        await client.contact_remove("zed")
    assert caught.value.code == "unknown-contact"
    assert str(caught.value) == "unknown contact 'zed'"
    assert isinstance(caught.value, OnionpostError)
    with pytest.raises(ApiError, match="not a contact card") as bad:
        await client.contact_add("hello")
    assert bad.value.code == "bad-card"
    with pytest.raises(ApiError) as missing:
        await client.message("00" * 16)
    assert missing.value.code == "not-found"
    with pytest.raises(ApiError) as bad_request:
        await client.message("not hex")
    assert bad_request.value.code == "bad-request"
    # The connection is fine after refusals.
    assert (await client.whoami()).name == "alice"


async def test_relative_paths_are_sent_absolute(
    served: Served, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend, _ = served
    backend.add("bob")
    with short_tmpdir() as directory:
        (directory / "notes.txt").write_text("notes")
        monkeypatch.chdir(directory)
        queued = await client.send_file("bob", "notes.txt")
        assert queued.name == "notes.txt"
        assert queued.size == 5
        got = backend.receive_file("bob", "x.bin", b"xyz")
        exported = await client.export_file(got["id"], "out.bin")
        assert exported.path == str(directory / "out.bin")
        assert (directory / "out.bin").read_bytes() == b"xyz"


async def test_no_daemon_is_daemon_not_running() -> None:
    with short_tmpdir() as home:
        # A home with no endpoint says so: a daemon could not start there.
        with pytest.raises(DaemonNotRunningError, match=r"no endpoint in .*'onionpost init'"):
            async with open_client(home):
                pass  # pragma: no cover
        (home / "secrets.json").write_text("{}")
        with pytest.raises(DaemonNotRunningError, match="onionpost daemon"):
            async with open_client(home):
                pass  # pragma: no cover
        (home / "run").mkdir()
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(os.fspath(home / "run" / "control.sock"))
        stale.close()
        with pytest.raises(DaemonNotRunningError):
            async with open_client(home):
                pass  # pragma: no cover


async def test_the_default_socket_is_the_homes(
    nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    with short_tmpdir() as home:
        await nursery.start(serve_api, MemoryBackend(), home / "run" / "control.sock")
        async with open_client(home) as connected:
            assert connected.socket_path == home / "run" / "control.sock"
            assert (await connected.whoami()).name == "alice"
        monkeypatch.setenv("ONIONPOST_HOME", str(home))
        async with open_client() as connected:
            assert (await connected.whoami()).name == "alice"
        # A home or a socket given as text, as a tool reads it from its config.
        socket = home / "run" / "control.sock"
        for given in ({"home": str(home)}, {"socket_path": str(socket)}):
            async with open_client(**given) as connected:
                assert connected.socket_path == socket
                assert (await connected.whoami()).name == "alice"


async def test_exceptions_from_the_body_pass_through(served: Served) -> None:
    async def body() -> None:
        async with open_client(socket_path=served[1]) as connected:
            await connected.whoami()
            raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await body()


async def test_tasks_can_share_one_client(served: Served, client: Client) -> None:
    served[0].add("bob")
    results: list[str] = []

    async def work(n: int) -> None:
        if n % 2:
            results.append((await client.whoami()).name)
        else:
            results.append((await client.send_text("bob", str(n))).state)

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(work, n)
    assert sorted(results) == ["alice"] * 10 + ["queued"] * 10


async def test_concurrent_calls_on_one_client_are_in_flight_together(
    served: Served, client: Client
) -> None:
    # Pipelined, not one at a time: the daemon holds all four sends at once
    # (so they can share one commit), and each caller gets its own answer.
    backend, _ = served
    backend.add("bob")
    backend.hold = trio.Event()
    ids = [new_message_id() for _ in range(4)]
    got: dict[str, str] = {}

    async def send(message_id: str) -> None:
        got[message_id] = (await client.send_text("bob", message_id, id=message_id)).id

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for message_id in ids:
                nursery.start_soon(send, message_id)
            while backend.active < len(ids):
                await trio.sleep(0.001)
            backend.hold.set()
    assert got == {message_id: message_id for message_id in ids}
    assert sorted(m["body"] for m in backend.messages.values()) == sorted(ids)


async def test_a_refusal_among_concurrent_calls_disturbs_no_other(
    served: Served, client: Client
) -> None:
    backend, _ = served
    backend.add("bob")
    backend.hold = trio.Event()
    queued: list[str] = []
    refused: list[str] = []

    async def send(contact: str, body: str) -> None:
        try:
            queued.append((await client.send_text(contact, body)).state)
        except ApiError as exc:
            refused.append(exc.code)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            for n in range(3):
                nursery.start_soon(send, "bob", str(n))
            nursery.start_soon(send, "nobody", "x")
            while backend.active < 3 or not refused:
                await trio.sleep(0.001)
            backend.hold.set()
    assert queued == ["queued"] * 3
    assert refused == ["unknown-contact"]
    assert (await client.whoami()).name == "alice"


async def test_a_waiting_call_cancelled_leaves_the_others_their_replies(
    served: Served, client: Client
) -> None:
    # Whichever of the two was reading the replies, the other still gets its own.
    backend, _ = served
    backend.add("bob")
    backend.hold = trio.Event()
    got: list[str] = []

    async def send(body: str, scope: trio.CancelScope) -> None:
        with scope:
            got.append((await client.send_text("bob", body)).state)

    first, second = trio.CancelScope(), trio.CancelScope()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send, "one", first)
            nursery.start_soon(send, "two", second)
            while backend.active < 2:
                await trio.sleep(0.001)
            first.cancel()
            await trio.testing.wait_all_tasks_blocked()
            backend.hold.set()
    assert got == ["queued"]
    assert (await client.whoami()).name == "alice"


async def test_a_connection_lost_fails_every_waiting_call(nursery: trio.Nursery) -> None:
    with short_tmpdir() as directory:
        path = directory / "fake.sock"
        await nursery.start(_closing_daemon, path, 2)
        async with open_client(socket_path=path) as connected:
            failures: list[str] = []

            async def call() -> None:
                with pytest.raises(TransportError) as caught:
                    await connected.whoami()
                failures.append(caught.value.reason)

            with trio.fail_after(5):
                async with trio.open_nursery() as inner:
                    inner.start_soon(call)
                    inner.start_soon(call)
            assert failures == ["ended", "ended"]
            # The next call connects again: no daemon is there any more.
            with pytest.raises(DaemonNotRunningError):
                await connected.whoami()


async def _closing_daemon(
    path: Path, lines: int, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """A fake daemon that reads ``lines`` request lines, answers none, and closes."""
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with listener:
        await listener.bind(os.fspath(path))
        listener.listen(1)
        task_status.started()
        sock, _ = await listener.accept()
        async with trio.SocketStream(sock) as stream:
            received = b""
            while received.count(b"\n") < lines:
                data = await stream.receive_some(65536)
                if not data:
                    break
                received += data


async def test_a_call_cancelled_while_waiting_leaves_the_client_usable(
    served: Served, client: Client
) -> None:
    backend, _ = served
    backend.add("bob")
    backend.hold = trio.Event()
    with trio.move_on_after(0.1) as scope:
        await client.send_text("bob", "slow")
    assert scope.cancelled_caught
    backend.hold.set()
    # The late reply to send_text arrives first and is skipped by its id.
    assert (await client.whoami()).name == "alice"
    assert [m["body"] for m in backend.messages.values()] == ["slow"]


async def test_a_call_cancelled_while_writing_breaks_the_client(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server that takes one request line and then reads no more, so that a
    # large request fills the socket buffers and its write blocks.
    monkeypatch.setattr(_api, "MAX_IN_FLIGHT", 0)
    async with open_client(socket_path=served[1]) as stuck:
        with trio.move_on_after(0.2):
            await stuck.whoami()  # written, read, never answered
        with trio.move_on_after(0.5) as scope:
            await stuck.send_text("bob", "x" * 900_000)
        assert scope.cancelled_caught
        # The next call does not write after the partial line: it connects
        # again (to a daemon that reads again) and is answered.
        monkeypatch.undo()
        with trio.fail_after(5):
            assert (await stuck.whoami()).name == "alice"


async def test_a_chosen_id_not_as_events_name_it_is_refused_before_sending(
    served: Served, client: Client
) -> None:
    """An id in capitals would be answered (and named in every event) in
    lowercase, so a tool matching on its own would never match: refused."""
    backend, _ = served
    backend.add("bob")
    good = new_message_id()
    for bad in (good.upper(), good[:-1], good + "0", "z" * 32):
        with pytest.raises(ConfigError, match="32 lowercase hex digits"):
            await client.send_text("bob", "x", id=bad)
        with pytest.raises(ConfigError, match="32 lowercase hex digits"):
            await client.send_texts("bob", [TextItem("x", id=bad)])
    assert backend.messages == {}
    assert (await client.send_text("bob", "x", id=good)).id == good


async def test_a_text_too_long_is_a_bad_request_naming_the_bound(
    served: Served, client: Client
) -> None:
    """Bytes of UTF-8 count, not characters: 20,000 euro signs are 60,000."""
    backend, _ = served
    backend.add("bob")
    for body in ("x" * 60_001, "\u20ac" * 20_001):
        with pytest.raises(ApiError, match="at most 60000 bytes of UTF-8") as caught:
            await client.send_text("bob", body)
        assert caught.value.code == "bad-request"
        with pytest.raises(ApiError, match="at most 60000 bytes of UTF-8"):
            await client.send_texts("bob", [body])
    assert backend.messages == {}
    await client.send_text("bob", "\u20ac" * 20_000)
    await client.send_text("bob", "x" * 60_000)
    assert len(backend.messages) == 2


async def test_an_empty_text_is_a_bad_request(served: Served, client: Client) -> None:
    """Most often an empty variable or file: nothing is queued."""
    backend, _ = served
    backend.add("bob")
    with pytest.raises(ApiError, match="must be non-empty text") as caught:
        await client.send_text("bob", "")
    assert caught.value.code == "bad-request"
    with pytest.raises(ApiError, match="must be non-empty text"):
        await client.send_texts("bob", ["x", ""])
    assert backend.messages == {}
    await client.send_text("bob", " ")
    assert len(backend.messages) == 1


async def test_mark_read_of_one_string_is_refused(client: Client) -> None:
    with pytest.raises(ConfigError, match="a list of message ids"):
        await client.mark_read(new_message_id())


async def test_a_request_too_large_is_refused_before_sending(client: Client) -> None:
    with pytest.raises(ConfigError, match="too large"):
        await client.send_text("bob", "x" * (2 * 2**20))
    assert (await client.whoami()).name == "alice"


async def test_the_daemon_going_away_mid_call_is_a_transport_error() -> None:
    with short_tmpdir() as home:
        backend = MemoryBackend()
        backend.add("bob")
        backend.hold = trio.Event()
        path = home / "run" / "control.sock"
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_api, backend, path)
            async with open_client(socket_path=path) as connected:

                async def stop_soon() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    nursery.cancel_scope.cancel()

                async with trio.open_nursery() as inner:
                    inner.start_soon(stop_soon)
                    with pytest.raises(TransportError, match="closed the connection"):
                        await connected.send_text("bob", "x")
                with pytest.raises(DaemonNotRunningError):
                    await connected.whoami()


async def test_busy_is_an_api_error(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_api, "MAX_CONNECTIONS", 1)
    async with open_client(socket_path=served[1]) as first:
        assert (await first.whoami()).name == "alice"
        async with open_client(socket_path=served[1]) as second:
            with pytest.raises(ApiError) as caught:
                await second.whoami()
            assert caught.value.code == "busy"


# -- Subscriptions ----------------------------------------------------------------------


async def test_subscribe_yields_events(served: Served, client: Client) -> None:
    backend, _ = served
    async with client.subscribe(["state", "tor"]) as events:
        backend.publish("message", {"ignored": True})
        backend.publish("tor", {"state": "ok", "detail": "published"})
        backend.publish("state", {"id": "ab" * 16, "state": "sending", "bytes": 5, "size": 10})
        first: Event = await events.__anext__()
        assert first == TorStatus(TorState.OK, "published")
        second = await events.__anext__()
        assert second == StateChange("ab" * 16, MessageState.SENDING, 5, 10)
        # The subscription has its own connection: calls go on meanwhile.
        assert (await client.whoami()).name == "alice"
    await trio.testing.wait_all_tasks_blocked()
    assert backend.live_subscribers() == 0


async def test_settled_waits_for_delivery_or_failure(served: Served, client: Client) -> None:
    backend, _ = served
    backend.add("bob")
    queued = await client.send_text("bob", "are you there?")
    with trio.fail_after(10):
        done = await client.settled(queued.id)
    assert (done.id, done.state) == (queued.id, MessageState.DELIVERED)
    # Settled already: answered at once, from its record.
    with trio.fail_after(1):
        assert (await client.settled(queued.id)).state is MessageState.DELIVERED
    backend.deliver_texts = False  # the next one expires
    lost = await client.send_text("bob", "too late")
    with trio.fail_after(10):
        assert (await client.settled(lost.id)).state is MessageState.EXPIRED
    with pytest.raises(ApiError) as unknown:
        await client.settled(new_message_id())
    assert unknown.value.code == "not-found"
    await trio.testing.wait_all_tasks_blocked()
    assert backend.live_subscribers() == 0


async def test_subscribe_to_an_unknown_topic_is_refused(client: Client) -> None:
    with pytest.raises(ApiError) as caught:
        async with client.subscribe(["gossip"]):
            pass  # pragma: no cover
    assert caught.value.code == "bad-request"


async def test_messages_yields_typed_incoming_messages(served: Served, client: Client) -> None:
    backend, _ = served
    received: list[Message] = []

    async def listen(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with aclosing(client.messages()) as messages:
            task_status.started()
            async for message in messages:
                received.append(message)
                if len(received) == 2:
                    return

    async with trio.open_nursery() as nursery:
        await nursery.start(listen)
        await trio.testing.wait_all_tasks_blocked()
        backend.receive_text("bob", "one")
        backend.publish("state", {"id": "00", "state": "sent"})
        backend.receive_file("bob", "two.txt", b"2")
    assert [m.body for m in received] == ["one", None]
    assert received[1].file == FileInfo("two.txt", 1, complete=True)


async def test_a_subscription_the_daemon_ends_raises(served: Served, client: Client) -> None:
    backend, _ = served
    async with client.subscribe(["tor"]) as events:
        await trio.testing.wait_all_tasks_blocked()
        for _, channel in backend.subscribers:
            channel.close()  # as the daemon does to a subscriber that fell behind
        with pytest.raises(TransportError, match="ended the subscription"):
            await events.__anext__()


# -- A daemon that misbehaves -----------------------------------------------------------


async def _fake_daemon(
    path: Path, reply: bytes, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    listener = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with listener:
        await listener.bind(os.fspath(path))
        listener.listen(1)
        task_status.started()
        sock, _ = await listener.accept()
        async with trio.SocketStream(sock) as stream:
            await stream.receive_some(65536)
            await stream.send_all(reply)
            await trio.sleep_forever()


@pytest.mark.parametrize(
    "reply",
    [
        b"not json\n",
        b"[1]\n",
        b'{"id": 1}\n',
        b'{"id": 1, "result": {"name": 5, "address": "a", "card": "c"}}\n',
        b'{"id": 1, "result": ["no"]}\n',
        b'{"id": 1, "error": "no"}\n',
        b'{"id": 1, "error": {"code": 5, "message": "x"}}\n',
    ],
)
async def test_a_malformed_reply_is_a_transport_error(nursery: trio.Nursery, reply: bytes) -> None:
    with short_tmpdir() as directory:
        path = directory / "fake.sock"
        await nursery.start(_fake_daemon, path, reply)
        async with open_client(socket_path=path) as connected:
            with pytest.raises(TransportError, match="malformed"):
                await connected.whoami()


def test_importing_the_client_loads_no_crypto_no_database() -> None:
    # A program that only talks to the daemon needs neither the store nor
    # the endpoint's crypto: the client library stays light.
    import subprocess
    import sys

    code = (
        "import sys, onionpost.client\n"
        "heavy = ('sqlite3', 'sqlcipher3', 'nacl', 'cryptography', 'msgpack', 'stem')\n"
        "ours = ('onionpost.store', 'onionpost.proto', 'onionpost.daemon', 'onionpost.host',\n"
        "        'onionpost.tor')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(ours)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


async def test_messages_after_catches_up_then_follows_without_gap_or_duplicate(
    served: Served,
) -> None:
    backend, path = served
    for i in range(3):
        backend.receive_text("bob", f"old {i}")
    seen: list[str] = []
    async with open_client(socket_path=path) as client:
        stream = client.messages(after=1)
        with trio.fail_after(10):
            async for message in stream:
                seen.append(message.body or "")
                if len(seen) == 2:
                    # Arrives while we are being given the inbox: once, in order.
                    backend.receive_text("bob", "new")
                if len(seen) == 3:
                    break
        await stream.aclose()
    assert seen == ["old 1", "old 2", "new"]


# -- Sends made again --------------------------------------------------------------------


async def test_a_send_is_made_again_under_its_id_after_the_daemon_restarts() -> None:
    """The daemon queued the text, then stalled and went away before it
    answered: the client connects to the daemon that comes back and sends
    the same request, which is answered without a second message."""
    with short_tmpdir() as home:
        path = home / "run" / "control.sock"
        backend = MemoryBackend()
        backend.add("bob")
        backend.hold = trio.Event()  # queued, but the answer does not come
        async with trio.open_nursery() as nursery:
            first = trio.CancelScope()

            async def serve_until_cancelled(
                scope: trio.CancelScope, *, task_status: trio.TaskStatus[None]
            ) -> None:
                with scope:
                    await serve_api(backend, path, task_status=task_status)

            await nursery.start(serve_until_cancelled, first)
            results: list[Queued] = []

            async def send() -> None:
                async with open_client(socket_path=path) as client:
                    with trio.fail_after(10):
                        results.append(await client.send_text("bob", "exactly once"))

            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()
            (queued_id,) = backend.messages
            assert backend.active == 1  # held before its answer
            first.cancel()  # the daemon goes away; the client sees its connection end
            await trio.sleep(0.3)  # and finds no daemon for a while
            backend.hold = None
            await nursery.start(serve_api, backend, path)
            with trio.fail_after(10):
                while not results:
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    assert results == [Queued(queued_id, MessageState.QUEUED, label="TLP:AMBER")]
    assert [m["body"] for m in backend.messages.values()] == ["exactly once"]
    assert backend.calls.count("send_text") >= 2  # it was asked again, and answered


async def test_one_client_outlives_a_daemon_restart() -> None:
    """A long-lived client: after the daemon restarted, every call (not only
    a send) connects again and is answered."""
    with short_tmpdir() as home:
        path = home / "run" / "control.sock"
        backend = MemoryBackend()
        backend.add("bob")
        async with trio.open_nursery() as nursery:
            first = trio.CancelScope()

            async def serve(scope: trio.CancelScope, *, task_status: trio.TaskStatus[None]) -> None:
                with scope:
                    await serve_api(backend, path, task_status=task_status)

            await nursery.start(serve, first)
            async with open_client(socket_path=path) as client:
                assert (await client.whoami()).name == "alice"
                first.cancel()  # the daemon stops
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises((TransportError, DaemonNotRunningError)):
                    await client.whoami()
                await nursery.start(serve, trio.CancelScope())  # and comes back
                with trio.fail_after(5):
                    assert (await client.whoami()).name == "alice"
                    assert await client.inbox() == ()
                    assert [c.name for c in await client.contact_list()] == ["bob"]
            nursery.cancel_scope.cancel()


async def test_a_send_with_no_daemon_is_refused_at_once_not_retried() -> None:
    """A send that finds no daemon at its first try was never queued: it
    says so at once (DaemonNotRunningError), it is not retried for half a
    minute and then 'not confirmed'."""
    with short_tmpdir() as home:
        path = home / "run" / "control.sock"
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def serve(*, task_status: trio.TaskStatus[None]) -> None:
                with scope:
                    await serve_api(MemoryBackend(), path, task_status=task_status)

            await nursery.start(serve)
            async with open_client(socket_path=path) as client:
                scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises((TransportError, DaemonNotRunningError)):
                    await client.whoami()  # the loss noticed
                with trio.fail_after(2), pytest.raises(DaemonNotRunningError):
                    await client.send_text("bob", "never queued")


async def test_a_send_not_answered_in_time_is_not_confirmed(served: Served) -> None:
    backend, path = served
    backend.add("bob")
    message_id = new_message_id()
    backend.hold = trio.Event()
    async with open_client(socket_path=path) as client:
        with trio.move_on_after(0.2) as waited:
            await client.send_text("bob", "slow", id=message_id)
        assert waited.cancelled_caught
        assert backend.messages[message_id]["body"] == "slow"  # it was queued meanwhile
        backend.hold.set()
        backend.hold = None
        # The caller asks again under the same id: the one message, confirmed.
        again = await client.send_text("bob", "slow", id=message_id)
        assert again.id == message_id
    assert len(backend.messages) == 1


async def test_resends_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_client, "MAX_RESENDS", 2)
    monkeypatch.setattr(_client, "RESEND_BACKOFF", (0.01, 0.01))
    with short_tmpdir() as home:
        path = home / "run" / "control.sock"
        backend = MemoryBackend()
        backend.add("bob")
        backend.hold = trio.Event()
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def serve(*, task_status: trio.TaskStatus[None]) -> None:
                with scope:
                    await serve_api(backend, path, task_status=task_status)

            await nursery.start(serve)
            async with open_client(socket_path=path) as client:

                async def stop_the_daemon() -> None:
                    await trio.testing.wait_all_tasks_blocked()
                    scope.cancel()

                nursery.start_soon(stop_the_daemon)
                with pytest.raises(NotConfirmedError) as caught:
                    await client.send_text("bob", "never confirmed")
            (queued_id,) = backend.messages
            assert caught.value.message_id == queued_id
            assert queued_id in str(caught.value)
            assert isinstance(caught.value.__cause__, DaemonNotRunningError)


async def test_labels_through_the_client(served: Served, client: Client) -> None:
    backend, _ = served
    await client.contact_add(card_for("bob"))
    await client.contact_add(card_for("carol"))
    queued = await client.send_text("bob", "eyes only", label="TLP:RED")
    assert queued.label == "TLP:RED"
    assert (await client.message(queued.id)).banner == "TLP:RED"
    limits = await client.contact_set_max_label("carol", ["TLP:GREEN"])
    assert limits == ContactLabels("carol", ("TLP:GREEN",), ())
    incoming = backend.receive_text("bob", "for carol?", "TLP:AMBER")
    with pytest.raises(ApiError) as info:
        await client.forward(incoming["id"], "carol")
    assert info.value.code == "label"
    assert "carol is sent nothing above TLP:GREEN from here" in str(info.value)
    forwarded = await client.forward(incoming["id"], "bob", label="TLP:AMBER+STRICT")
    assert forwarded.label == "TLP:AMBER+STRICT"
