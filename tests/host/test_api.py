"""The local API server over real unix sockets, against an in-memory backend."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from onionpost._localapi import MAX_IN_FLIGHT, MAX_REQUEST_LINE, LineReader
from onionpost.errors import ConfigError, SelfTestError
from onionpost.host import _api, serve_api
from onionpost.testing.doubles import ERRORS_BY_CODE, SAFETY, MemoryBackend, card_for, short_tmpdir


class Raw:
    """A bare JSON-lines connection, to send the server anything at all."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = LineReader(stream, 64 * 2**20)

    @classmethod
    async def connect(cls, path: Path) -> Raw:
        return cls(await trio.open_unix_socket(os.fspath(path)))

    async def send(self, line: bytes | dict[str, Any]) -> None:
        if isinstance(line, dict):
            line = json.dumps(line).encode() + b"\n"
        await self.stream.send_all(line)

    async def receive(self) -> dict[str, Any] | None:
        line = await self.reader.next_line()
        return None if line is None else json.loads(line)

    async def call(self, method: str, params: dict[str, Any] | None = None, id: Any = 1) -> Any:
        request: dict[str, Any] = {"id": id, "method": method}
        if params is not None:
            request["params"] = params
        await self.send(request)
        return await self.receive()

    async def aclose(self) -> None:
        await self.stream.aclose()


Served = tuple[MemoryBackend, Path]


@pytest.fixture
async def served(nursery: trio.Nursery) -> AsyncIterator[Served]:
    with short_tmpdir() as directory:
        backend = MemoryBackend()
        backend.nursery = nursery
        path = directory / "run" / "control.sock"
        await nursery.start(serve_api, backend, path)
        yield backend, path


@pytest.fixture
async def raw(served: Served) -> AsyncIterator[Raw]:
    connection = await Raw.connect(served[1])
    yield connection
    await connection.aclose()


# -- The socket ---------------------------------------------------------------------


async def test_socket_is_0600_in_a_0700_directory(served: Served) -> None:
    _, path = served
    assert stat.S_ISSOCK(os.lstat(path).st_mode)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700


async def test_refuses_a_directory_open_to_others() -> None:
    with short_tmpdir() as directory:
        run = directory / "run"
        run.mkdir(mode=0o755)
        run.chmod(0o755)
        with pytest.raises(ConfigError, match="chmod 700"):
            await serve_api(MemoryBackend(), run / "control.sock")
        assert not (run / "control.sock").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
async def test_refuses_a_directory_owned_by_another_user() -> None:
    with short_tmpdir() as directory:
        run = directory / "run"
        run.mkdir(mode=0o700)
        os.chown(run, 65534, 65534)
        with pytest.raises(ConfigError, match="belongs to uid 65534"):
            await serve_api(MemoryBackend(), run / "control.sock")


async def test_refuses_a_symlinked_directory() -> None:
    with short_tmpdir() as directory:
        (directory / "real").mkdir(mode=0o700)
        (directory / "run").symlink_to(directory / "real")
        with pytest.raises(ConfigError, match="not a directory"):
            await serve_api(MemoryBackend(), directory / "run" / "control.sock")


async def test_refuses_a_path_too_long_for_a_unix_socket() -> None:
    with short_tmpdir() as directory, pytest.raises(ConfigError, match="too long"):
        await serve_api(MemoryBackend(), directory / ("x" * 120) / "control.sock")


async def test_replaces_a_stale_socket_and_removes_its_own() -> None:
    with short_tmpdir() as directory:
        run = directory / "run"
        run.mkdir(mode=0o700)
        path = run / "control.sock"
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(os.fspath(path))
        stale.close()  # a socket file nobody listens on, as a killed daemon leaves
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_api, MemoryBackend(), path)
            raw = await Raw.connect(path)
            assert (await raw.call("whoami"))["result"]["name"] == "alice"
            await raw.aclose()
            nursery.cancel_scope.cancel()
        assert not path.exists()


async def test_refuses_when_another_server_is_listening(served: Served) -> None:
    with pytest.raises(ConfigError, match="already serving"):
        await serve_api(MemoryBackend(), served[1])
    # ... and the first one still serves.
    raw = await Raw.connect(served[1])
    assert "result" in await raw.call("status")
    await raw.aclose()


async def test_refuses_a_path_that_is_not_a_socket() -> None:
    with short_tmpdir() as directory:
        run = directory / "run"
        run.mkdir(mode=0o700)
        (run / "control.sock").write_text("not a socket")
        with pytest.raises(ConfigError, match="not a socket"):
            await serve_api(MemoryBackend(), run / "control.sock")


# A child that connects as another user, sends a request and reports what came back.
_PEER_SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
data = b""
try:
    s.sendall(b'{"id": 1, "method": "whoami"}\\n')
    while not data.endswith(b"\\n"):
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except (BrokenPipeError, ConnectionResetError):
    pass
print(repr(data))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="connecting as another uid needs root")
async def test_refuses_a_peer_with_another_uid(served: Served) -> None:
    backend, path = served
    # For this test only, open the directories and the socket to everybody, so
    # that the only thing left to refuse "nobody" is the SO_PEERCRED check.
    for directory in (path.parent.parent, path.parent):
        directory.chmod(0o755)
    path.chmod(0o666)
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    command = [python, "-I", "-c", _PEER_SCRIPT, os.fspath(path)]

    ours = await trio.run_process(command, capture_stdout=True)
    assert b'"name":"alice"' in ours.stdout  # the setup itself lets a peer through

    calls = len(backend.calls)
    theirs = await trio.run_process(command, capture_stdout=True, user=65534, group=65534)
    assert theirs.stdout.strip() == b"b''"  # closed without a word
    assert len(backend.calls) == calls
    # The server carries on.
    raw = await Raw.connect(path)
    assert "result" in await raw.call("whoami")
    await raw.aclose()


async def test_too_many_connections_are_answered_busy(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_api, "MAX_CONNECTIONS", 3)
    _, path = served
    held = [await Raw.connect(path) for _ in range(3)]
    for connection in held:
        assert "result" in await connection.call("whoami")
    extra = await Raw.connect(path)
    reply = await extra.receive()
    assert reply == {"id": None, "error": {"code": "busy", "message": reply["error"]["message"]}}
    assert await extra.receive() is None
    await extra.aclose()
    await held.pop().aclose()
    await trio.testing.wait_all_tasks_blocked()
    again = await Raw.connect(path)
    assert "result" in await again.call("whoami")
    for connection in [*held, again]:
        await connection.aclose()


# -- Every method -----------------------------------------------------------------------


async def test_every_method_round_trips(served: Served, raw: Raw) -> None:
    backend, _ = served
    assert (await raw.call("whoami"))["result"]["card"] == card_for("alice")

    added = await raw.call("contact_add", {"card": card_for("bob")})
    assert added == {
        "id": 1,
        "result": {"name": "bob", "address": backend.contacts["bob"]["address"]},
    }
    named = await raw.call("contact_add", {"card": card_for("carol"), "name": "c"}, id="two")
    assert named["id"] == "two"
    assert named["result"]["name"] == "c"
    assert [c["name"] for c in (await raw.call("contact_list"))["result"]] == ["bob", "c"]
    assert (await raw.call("contact_verify", {"name": "bob"}))["result"] == {
        "name": "bob",
        "safety_number": SAFETY,
        "verified_ms": None,
    }
    assert (await raw.call("contact_remove", {"name": "c"}))["result"]["name"] == "c"

    status = (await raw.call("status"))["result"]
    assert status["tor"]["state"] == "ok"
    assert [c["name"] for c in status["contacts"]] == ["bob"]

    sent = await raw.call("send_text", {"contact": "bob", "body": "hi", "content_type": "text/x"})
    assert sent["result"]["state"] == "queued"
    assert backend.messages[sent["result"]["id"]]["content_type"] == "text/x"
    with short_tmpdir() as directory:
        source = directory / "report.pdf"
        source.write_bytes(b"%PDF" * 10)
        queued = (await raw.call("send_file", {"contact": "bob", "path": str(source)}))["result"]
        assert queued["name"] == "report.pdf"
        assert queued["size"] == 40

        incoming = backend.receive_file("bob", "photo.jpg", b"\xff\xd8 jpeg")
        dest = directory / "out.jpg"
        exported = await raw.call("export_file", {"id": incoming["id"], "dest": str(dest)})
        assert exported["result"] == {"path": str(dest), "size": 7}
        assert dest.read_bytes() == b"\xff\xd8 jpeg"

    text = backend.receive_text("bob", "hello")
    inbox = (await raw.call("inbox", {"after": 0, "limit": 10}))["result"]
    assert [m["seq"] for m in inbox] == [1, 2]
    assert (await raw.call("inbox", {"after": 1}))["result"][0]["body"] == "hello"
    assert (await raw.call("message", {"id": text["id"]}))["result"]["body"] == "hello"
    assert (await raw.call("mark_read", {"ids": [text["id"]]}))["result"] == {"marked": 1}
    assert backend.marked == [text["id"]]
    assert (await raw.call("retry"))["result"] == {"contacts": 1}
    assert (await raw.call("retry", {"contact": "bob"}))["result"] == {"contacts": 1}
    assert (await raw.call("retry", {"contact": None}))["result"] == {"contacts": 1}
    assert backend.retried == [None, "bob", None]
    assert (await raw.call("subscribe", {"topics": ["tor", "message"]}))["result"] == {
        "topics": ["message", "tor"]
    }


# -- Errors -----------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(ERRORS_BY_CODE))
async def test_onionpost_errors_map_to_stable_codes(served: Served, raw: Raw, code: str) -> None:
    served[0].fail = ERRORS_BY_CODE[code]
    reply = await raw.call("status", id=9)
    assert reply == {"id": 9, "error": {"code": code, "message": str(ERRORS_BY_CODE[code])}}


async def test_backend_errors_from_real_calls(raw: Raw) -> None:
    reply = await raw.call("contact_remove", {"name": "zed"})
    assert reply["error"] == {"code": "unknown-contact", "message": "unknown contact 'zed'"}
    reply = await raw.call("contact_add", {"card": "hello"})
    assert reply["error"]["code"] == "bad-card"
    reply = await raw.call("message", {"id": "ab" * 16})
    assert reply["error"]["code"] == "not-found"


async def test_a_backend_bug_is_internal_without_details(
    served: Served, raw: Raw, caplog: pytest.LogCaptureFixture
) -> None:
    served[0].fail = RuntimeError("secret detail")
    reply = await raw.call("status")
    assert reply["error"]["code"] == "internal"
    assert "secret" not in json.dumps(reply)
    assert "Traceback" not in json.dumps(reply)
    assert "secret detail" in caplog.text  # the daemon's log has it
    served[0].fail = SelfTestError("an onionpost error with no code of its own")
    assert (await raw.call("status"))["error"]["code"] == "internal"
    served[0].fail = None
    assert "result" in await raw.call("status")


async def test_a_result_json_cannot_carry_is_internal(served: Served, raw: Raw) -> None:
    served[0].whoami_result = {"name": object()}
    assert (await raw.call("whoami"))["error"]["code"] == "internal"
    served[0].whoami_result = {"nan": float("nan")}
    assert (await raw.call("whoami"))["error"]["code"] == "internal"
    served[0].whoami_result = None
    assert "result" in await raw.call("whoami")


_HEX_ID = "ab" * 16

BAD_REQUESTS = [
    pytest.param(b"not json", None, id="not-json"),
    pytest.param(b"\xff\xfe{}", None, id="not-utf8"),
    pytest.param(b"[1, 2]", None, id="array"),
    pytest.param(b'"whoami"', None, id="string"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, None, id="deep-nesting"),
    pytest.param(
        b'{"id": 1, "method": "whoami", "params": {"x": ' + b"9" * 5000 + b"}}", None, id="huge-int"
    ),
    pytest.param(b'{"method": "whoami"}', None, id="no-id"),
    pytest.param(b'{"id": true, "method": "whoami"}', None, id="bool-id"),
    pytest.param(b'{"id": [1], "method": "whoami"}', None, id="list-id"),
    pytest.param(b'{"id": 3}', 3, id="no-method"),
    pytest.param(b'{"id": 3, "method": "nope"}', 3, id="unknown-method"),
    pytest.param(b'{"id": 3, "method": "__init__"}', 3, id="dunder"),
    pytest.param(b'{"id": 3, "method": "_enter"}', 3, id="private"),
    pytest.param(b'{"id": 3, "method": "publish"}', 3, id="not-whitelisted"),
    pytest.param(b'{"id": 3, "method": 7}', 3, id="method-not-string"),
    pytest.param(b'{"id": 3, "method": "whoami", "params": [1]}', 3, id="params-list"),
    pytest.param(b'{"id": 3, "method": "whoami", "params": {"x": 1}}', 3, id="unknown-param"),
    pytest.param(b'{"id": 3, "method": "contact_remove"}', 3, id="missing-param"),
    pytest.param(b'{"id": 3, "method": "contact_remove", "params": {"name": 5}}', 3, id="int-name"),
    pytest.param(
        b'{"id": 3, "method": "contact_add", "params": {"card": null}}', 3, id="null-card"
    ),
    pytest.param(b'{"id": 3, "method": "inbox", "params": {"after": -1}}', 3, id="negative"),
    pytest.param(b'{"id": 3, "method": "inbox", "params": {"after": true}}', 3, id="bool-int"),
    pytest.param(b'{"id": 3, "method": "inbox", "params": {"after": 1.5}}', 3, id="float"),
    pytest.param(
        b'{"id": 3, "method": "inbox", "params": {"after": 18446744073709551616}}',
        3,
        id="after-2**64",
    ),
    pytest.param(
        b'{"id": 3, "method": "inbox", "params": {"after": 9223372036854775808}}',
        3,
        id="after-past-a-seq",
    ),
    pytest.param(b'{"id": 3, "method": "inbox", "params": {"limit": 0}}', 3, id="limit-0"),
    pytest.param(b'{"id": 3, "method": "inbox", "params": {"limit": 100000}}', 3, id="limit-big"),
    pytest.param(b'{"id": 3, "method": "message", "params": {"id": "xyz"}}', 3, id="not-hex"),
    pytest.param(b'{"id": 3, "method": "message", "params": {"id": ""}}', 3, id="empty-id"),
    pytest.param(b'{"id": 3, "method": "mark_read", "params": {"ids": "ab"}}', 3, id="ids-str"),
    pytest.param(b'{"id": 3, "method": "mark_read", "params": {"ids": [1]}}', 3, id="ids-int"),
    pytest.param(
        b'{"id": 3, "method": "send_file", "params": {"contact": "bob", "path": "rel/x"}}',
        3,
        id="relative-path",
    ),
    pytest.param(
        b'{"id": 3, "method": "export_file", "params": {"id": "ab", "dest": "/tmp/\\u0000x"}}',
        3,
        id="nul-path",
    ),
    pytest.param(b'{"id": 3, "method": "subscribe", "params": {"topics": []}}', 3, id="no-topics"),
    pytest.param(
        b'{"id": 3, "method": "subscribe", "params": {"topics": ["gossip"]}}', 3, id="bad-topic"
    ),
]


@pytest.mark.parametrize(("line", "request_id"), BAD_REQUESTS)
async def test_bad_requests_get_bad_request_and_the_connection_lives_on(
    served: Served, raw: Raw, line: bytes, request_id: int | None
) -> None:
    await raw.send(line + b"\n")
    reply = await raw.receive()
    assert reply is not None
    assert reply["id"] == request_id
    assert reply["error"]["code"] == "bad-request"
    assert "Traceback" not in reply["error"]["message"]
    assert served[0].calls == []  # nothing reached the backend
    assert (await raw.call("whoami", id=4))["id"] == 4


async def test_a_huge_line_is_refused_and_skipped(raw: Raw) -> None:
    huge = b'{"id": 1, "method": "send_text", "params": {"body": "' + b"x" * (2 * MAX_REQUEST_LINE)
    await raw.send(huge)  # no newline yet: refused as soon as it is too long
    reply = await raw.receive()
    assert reply is not None
    assert reply["id"] is None
    assert reply["error"]["code"] == "bad-request"
    await raw.send(b'x"}}\n')  # the rest of that line is skipped
    assert (await raw.call("whoami", id=2))["id"] == 2


async def test_blank_lines_are_ignored(raw: Raw) -> None:
    await raw.send(b"\n  \n\r\n")
    assert (await raw.call("whoami", id=5))["id"] == 5


async def test_pipelined_requests_are_bounded_per_connection(served: Served, raw: Raw) -> None:
    backend, _ = served
    backend.add("bob")
    backend.hold = trio.Event()
    count = MAX_IN_FLIGHT * 2 + 3
    await raw.send(
        b"".join(
            json.dumps(
                {"id": i, "method": "send_text", "params": {"contact": "bob", "body": str(i)}}
            ).encode()
            + b"\n"
            for i in range(count)
        )
    )
    await trio.testing.wait_all_tasks_blocked()
    assert backend.active == MAX_IN_FLIGHT
    # Other connections are not held up by this one.
    other = await Raw.connect(served[1])
    assert "result" in await other.call("whoami")
    await other.aclose()
    backend.hold.set()
    replies = [await raw.receive() for _ in range(count)]
    assert sorted(r["id"] for r in replies if r) == list(range(count))
    assert backend.max_active <= MAX_IN_FLIGHT + 1  # + the whoami above


async def test_a_client_leaving_mid_request_harms_nothing(served: Served) -> None:
    backend, path = served
    backend.add("bob")
    backend.hold = trio.Event()
    leaving = await Raw.connect(path)
    await leaving.send({"id": 1, "method": "send_text", "params": {"contact": "bob", "body": "x"}})
    await trio.testing.wait_all_tasks_blocked()
    assert backend.active == 1
    await leaving.aclose()
    await trio.testing.wait_all_tasks_blocked()
    backend.hold.set()
    await trio.testing.wait_all_tasks_blocked()
    # The request finished (its reply went nowhere) and the server serves on.
    assert [m["body"] for m in backend.messages.values()] == ["x"]
    backend.hold = None
    raw = await Raw.connect(path)
    assert "result" in await raw.call("whoami")
    await raw.aclose()


async def test_a_client_leaving_mid_line_harms_nothing(served: Served) -> None:
    leaving = await Raw.connect(served[1])
    await leaving.send(b'{"id": 1, "method": "who')
    await leaving.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert served[0].calls == []
    raw = await Raw.connect(served[1])
    assert "result" in await raw.call("whoami")
    await raw.aclose()


async def test_a_half_closed_client_still_gets_its_replies(served: Served) -> None:
    raw = await Raw.connect(served[1])
    await raw.send({"id": 1, "method": "whoami"})
    await raw.stream.send_eof()
    assert (await raw.receive() or {})["id"] == 1
    assert await raw.receive() is None
    await raw.aclose()


# -- Subscriptions -----------------------------------------------------------------------


async def test_a_subscription_streams_its_topics(served: Served, raw: Raw) -> None:
    backend, _ = served
    assert (await raw.call("subscribe", {"topics": ["message"]}))["result"] == {
        "topics": ["message"]
    }
    backend.publish("tor", {"state": "ok"})  # not subscribed
    text = backend.receive_text("bob", "hello")
    assert await raw.receive() == {"event": "message", "data": text}
    # Other requests still work on a subscribed connection; a second subscribe does not.
    assert (await raw.call("whoami", id=2))["id"] == 2
    again = await raw.call("subscribe", {"topics": ["tor"]}, id=3)
    assert again["id"] == 3
    assert again["error"]["code"] == "bad-request"


async def test_closing_the_connection_ends_the_subscription(served: Served) -> None:
    backend, path = served
    raw = await Raw.connect(path)
    await raw.call("subscribe", {"topics": ["state"]})
    assert backend.live_subscribers() == 1
    await raw.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert backend.live_subscribers() == 0


async def test_a_slow_subscriber_is_dropped_and_blocks_nobody(served: Served) -> None:
    backend, path = served
    slow = await Raw.connect(path)
    fast = await Raw.connect(path)
    await slow.call("subscribe", {"topics": ["state"]})
    await fast.call("subscribe", {"topics": ["state"]})
    received: list[int] = []

    async def read_fast() -> None:
        while (event := await fast.receive()) is not None:
            received.append(event["data"]["n"])
            if event["data"]["n"] == count - 1:
                return

    # 1 KiB events, more than the socket buffers and the channel hold together.
    count = 3000
    padding = "p" * 1024
    async with trio.open_nursery() as nursery:
        nursery.start_soon(read_fast)
        for n in range(count):
            backend.publish("state", {"id": "ab", "state": "sending", "n": n, "pad": padding})
            await trio.testing.wait_all_tasks_blocked()
    assert received == list(range(count))
    assert backend.dropped == 1
    # The slow one gets what was already on its way, then the server closes it.
    late = 0
    with trio.fail_after(10):
        while await slow.receive() is not None:
            late += 1
    assert 0 < late < count
    await slow.aclose()
    await fast.aclose()


async def test_a_stalled_subscriber_is_dropped_by_the_server(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_api, "SUBSCRIBER_STALL_TIMEOUT", 0.2)
    backend, path = served
    backend.subscriber_buffer = 100_000  # the backend would not drop it
    stalled = await Raw.connect(path)
    await stalled.call("subscribe", {"topics": ["tor"]})
    for n in range(2000):
        backend.publish("tor", {"state": "ok", "n": n, "pad": "p" * 1024})
        await trio.sleep(0)
    with trio.fail_after(5):
        while backend.live_subscribers():
            await trio.sleep(0.05)
    assert backend.dropped == 0
    with trio.fail_after(5):
        while await stalled.receive() is not None:
            pass
    await stalled.aclose()


async def test_a_subscription_the_backend_refuses_is_an_error(served: Served, raw: Raw) -> None:
    backend, _ = served

    def refuse(topics: list[str]) -> Any:
        raise ConfigError("too many subscribers")

    backend.subscribe = refuse  # type: ignore[method-assign]
    reply = await raw.call("subscribe", {"topics": ["tor"]})
    assert reply["error"] == {"code": "config", "message": "too many subscribers"}
    assert "result" in await raw.call("whoami")
