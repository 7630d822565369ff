"""serve() over real loopback TCP: load, deadlines, the pending cap, and hostile peers.

Every socket is on 127.0.0.1; every test runs under a trio deadline. After
each hostile peer a healthy client must still complete a session: the
listener's job is to survive what one stream does.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from onionpost.errors import (
    CloseCode,
    ConfigError,
    StoreError,
    TransportError,
)
from onionpost.limits import HANDSHAKE_TIMEOUT, MAX_PENDING_HANDSHAKES, PADDING_BUCKETS
from onionpost.proto import messages
from onionpost.proto._crypto import KeyPair
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity, StaticKey
from onionpost.proto.session import PeerDecision
from onionpost.transport import Handler, SecureChannel, Server, connect, serve

NOW = int(time.time())
LOGGER = "onionpost.transport"


@dataclass(frozen=True)
class Endpoint:
    identity: Identity
    static: StaticKey


def _endpoint() -> Endpoint:
    identity = Identity.generate()
    return Endpoint(identity, StaticKey.generate(identity, now=NOW))


SERVER, ALICE, MALLORY = _endpoint(), _endpoint(), _endpoint()
SECRET_BODY = "the launch code is 0000"


def _only_alice(peer: OnionAddress) -> PeerDecision:
    return PeerDecision.ACCEPT if peer == ALICE.identity.address else PeerDecision.REFUSE


async def echo(channel: SecureChannel) -> None:
    async for message in channel:
        await channel.send(message)


@asynccontextmanager
async def serving(
    handler: Handler = echo,
    *,
    decide: Callable[[OnionAddress], PeerDecision] = _only_alice,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    max_pending: int = MAX_PENDING_HANDSHAKES,
) -> AsyncIterator[tuple[Server, int]]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        start = functools.partial(
            serve,
            handler,
            listeners,
            identity=SERVER.identity,
            static=SERVER.static,
            decide=decide,
            handshake_timeout=handshake_timeout,
            max_pending=max_pending,
        )
        server: Server = await nursery.start(start)
        yield server, port
        nursery.cancel_scope.cancel()


async def _dial(port: int, client: Endpoint = ALICE) -> SecureChannel:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    return await connect(
        stream, identity=client.identity, static=client.static, peer=SERVER.identity.address
    )


def _text(body: str = "hello") -> messages.Text:
    return messages.Text(os.urandom(16), 1, body)


async def healthy_session(port: int, count: int = 3) -> None:
    """A legitimate client completes a whole session, echoes checked."""
    with trio.fail_after(20):
        channel = await _dial(port)
        async with channel:
            for i in range(count):
                message = _text(f"{SECRET_BODY} {i}")
                await channel.send(message)
                assert await channel.receive() == message


async def _until(predicate: Callable[[], bool]) -> None:
    """Poll a condition the server reaches asynchronously (bounded: 10 s)."""
    for _ in range(1000):
        if predicate():
            return
        await trio.sleep(0.01)
    pytest.fail("condition never reached")


async def _end_seen_by(stream: trio.SocketStream) -> str:
    """How the stream ended for this raw client: 'eof' or 'reset' (no bytes allowed)."""
    try:
        data = await stream.receive_some(65536)
    except trio.BrokenResourceError:
        return "reset"
    assert data == b"", "the server must not answer this peer"
    return "eof"


def _events(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [getattr(r, "event", "") for r in caplog.records if r.name == LOGGER]


def _assert_logs_hold_no_secrets(caplog: pytest.LogCaptureFixture) -> None:
    forbidden = [
        SECRET_BODY,
        "launch code",
        str(ALICE.identity.address),
        ALICE.identity.public_key.hex(),
        ALICE.static.keypair.public.hex(),
    ]
    for record in caplog.records:
        text = record.getMessage() + repr(record.__dict__)
        for secret in forbidden:
            assert secret not in text


# -- load --------------------------------------------------------------------------


@pytest.mark.slow
async def test_200_concurrent_sessions(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    sessions, per_session = 200, 5
    started = time.monotonic()
    # Every handshake starts at once: give them all a slot (the default cap
    # of 64 would shed the rest, which test_max_pending covers).
    async with serving(max_pending=sessions + 10) as (server, port):
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for _ in range(sessions):
                    nursery.start_soon(healthy_session, port, per_session)
        stats = server.statistics()
    elapsed = time.monotonic() - started
    assert stats.accepted == sessions
    assert stats.shed == stats.failed_handshakes == stats.handler_errors == 0
    assert _events(caplog).count("session_started") == sessions
    _assert_logs_hold_no_secrets(caplog)
    print(f"\n{sessions} sessions x {per_session} echoes over TCP: {elapsed:.1f} s")


# -- deadlines and the pending cap -------------------------------------------------


@pytest.mark.parametrize("sends", [b"", b"ONPOST\x00\x01\x04"])
async def test_a_silent_or_slow_peer_is_dropped_at_the_deadline(
    caplog: pytest.LogCaptureFixture, sends: bytes
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    deadline = 0.5
    async with serving(handshake_timeout=deadline) as (server, port):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        if sends:
            await stream.send_all(sends)
        started = trio.current_time()
        with trio.fail_after(10):
            assert await _end_seen_by(stream) == "eof"
        waited = trio.current_time() - started
        assert deadline * 0.8 <= waited < deadline + 5
        await stream.aclose()
        await healthy_session(port)
        assert server.statistics().failed_handshakes == 1
    assert "handshake_timeout" in _events(caplog)


async def test_max_pending_sheds_extras_at_once_and_frees_slots(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    cap = 3
    async with serving(max_pending=cap, handshake_timeout=60) as (server, port):
        with trio.fail_after(30):
            idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(cap)]
            await _until(lambda: server.statistics().pending_handshakes == cap)

            # Over the cap: closed at once, long before the 60 s deadline.
            extras = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            with trio.fail_after(5):
                for stream in extras:
                    assert await _end_seen_by(stream) == "eof"
                    await stream.aclose()
            # A legitimate client is shed too while the slots are full.
            with pytest.raises(TransportError):
                await _dial(port)
            assert server.statistics().shed == 3

            # One idle peer leaves: its slot frees and a real client gets in.
            await idle.pop().aclose()
            await _until(lambda: server.statistics().pending_handshakes == cap - 1)
            await healthy_session(port)
            stats = server.statistics()
            assert stats.shed == 3
            assert stats.pending_handshakes == cap - 1
            for stream in idle:
                await stream.aclose()
            await _until(lambda: server.statistics().pending_handshakes == 0)
    events = _events(caplog)
    assert events.count("shed") == 3
    # One warning for the episode, however many streams were shed.
    assert events.count("slots_full") == 1
    assert events.count("slots_free") == 1


# -- authentication ----------------------------------------------------------------


class _Tap(trio.abc.Stream):
    """A TCP stream that remembers every chunk it read."""

    def __init__(self, inner: trio.SocketStream) -> None:
        self.inner = inner
        self.received: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:  # pragma: no cover - not used
        await self.inner.send_eof()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        self.received.append(bytes(data))
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _what_a_rejected_client_sees(port: int, client: Endpoint) -> tuple[str, bytes, str]:
    """(error after the handshake, bytes read after it, how the stream ended)."""
    tap = _Tap(await trio.open_tcp_stream("127.0.0.1", port))
    with trio.fail_after(20):
        # The initiator's handshake is complete once it sent message 3.
        channel = await connect(
            tap, identity=client.identity, static=client.static, peer=SERVER.identity.address
        )
        after_handshake = len(tap.received)
        with pytest.raises(TransportError) as info:
            await channel.receive()
    late = b"".join(tap.received[after_handshake:])
    ending = "eof" if tap.received and tap.received[-1] == b"" else "reset"
    return str(info.value), late, ending


async def test_a_refused_peer_and_a_bad_certificate_look_the_same(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    keypair = KeyPair.generate()
    # Alice's identity with a static key certified by someone else.
    forged = Endpoint(
        ALICE.identity, StaticKey(keypair, MALLORY.identity.certify(keypair.public, now=NOW))
    )
    # Alice's identity with a certificate long expired.
    expired = Endpoint(
        ALICE.identity,
        StaticKey(keypair, ALICE.identity.certify(keypair.public, now=NOW - 400 * 86400)),
    )
    async with serving() as (server, port):
        refused = await _what_a_rejected_client_sees(port, MALLORY)  # valid, but not wanted
        await healthy_session(port)
        bad_cert = await _what_a_rejected_client_sees(port, forged)
        await healthy_session(port)
        old_cert = await _what_a_rejected_client_sees(port, expired)
        await healthy_session(port)
        assert server.statistics().failed_handshakes == 3
    assert refused == bad_cert == old_cert == ("the stream ended without a Close", b"", "eof")
    failures = [r for r in caplog.records if getattr(r, "event", "") == "handshake_failed"]
    assert [(r.error, r.close_code) for r in failures] == [  # type: ignore[attr-defined]
        ("AuthenticationError", "AUTHENTICATION_FAILED")
    ] * 3


async def test_decide_sees_the_verified_address() -> None:
    seen: list[OnionAddress] = []

    def decide(peer: OnionAddress) -> PeerDecision:
        seen.append(peer)
        return PeerDecision.ACCEPT

    async def who(channel: SecureChannel) -> None:
        assert channel.peer == ALICE.identity.address
        await echo(channel)

    async with serving(who, decide=decide) as (_server, port):
        await healthy_session(port)
    assert seen == [ALICE.identity.address]


# -- hostile and broken peers ------------------------------------------------------


@pytest.mark.parametrize(
    "garbage",
    [
        b"GET / HTTP/1.1\r\nHost: example.onion\r\n\r\n",
        b"ONPOST\x00\x01" + b"\xff\xff" + bytes(70_000),  # a first frame of the wrong length
        b"ONPOST\x00\x09",  # a version we do not speak
        os.urandom(200_000),
    ],
    ids=["http", "bad-frame", "version", "random"],
)
async def test_garbage_before_the_handshake(
    caplog: pytest.LogCaptureFixture, garbage: bytes
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with serving() as (server, port):
        with trio.fail_after(20):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            # The server may close before reading it all (then it is reset).
            try:
                await stream.send_all(garbage)
            except trio.BrokenResourceError:
                pass
            else:
                reply = b""
                try:
                    while chunk := await stream.receive_some(65536):
                        reply += chunk
                except trio.BrokenResourceError:
                    pass
                # Only a version mismatch is answered, with our version.
                assert reply in (b"", b"ONPOST\x00\x01")
            await stream.aclose()
        await healthy_session(port)
        assert server.statistics().failed_handshakes == 1
    assert _events(caplog).count("handshake_failed") == 1


def _forged_frame() -> bytes:
    return struct.pack(">H", PADDING_BUCKETS[0]) + os.urandom(PADDING_BUCKETS[0])


async def test_garbage_after_the_handshake(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with serving() as (server, port):
        with trio.fail_after(20):
            tap = _Tap(await trio.open_tcp_stream("127.0.0.1", port))
            channel = await connect(
                tap, identity=ALICE.identity, static=ALICE.static, peer=SERVER.identity.address
            )
            await channel.send(_text())
            assert isinstance(await channel.receive(), messages.Text)
            await tap.inner.send_all(_forged_frame())
            # A forger gets no authenticated answer: the stream just ends.
            with pytest.raises(TransportError):
                await channel.receive()
        await healthy_session(port)
        await _until(lambda: server.statistics().handler_errors == 1)
    failed = [r for r in caplog.records if getattr(r, "event", "") == "handler_failed"]
    assert [r.error for r in failed] == ["AuthenticationError"]  # type: ignore[attr-defined]
    _assert_logs_hold_no_secrets(caplog)


async def test_an_authentic_junk_record_is_answered_and_survived(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with serving() as (server, port):
        with trio.fail_after(20):
            tap = _Tap(await trio.open_tcp_stream("127.0.0.1", port))
            channel = await connect(
                tap, identity=ALICE.identity, static=ALICE.static, peer=SERVER.identity.address
            )
            # A record that authenticates but is no message (the public API
            # cannot make one, so this borrows the session's cipher).
            junk = b"\xc1"
            plaintext = struct.pack(">H", len(junk)) + junk
            plaintext += bytes(PADDING_BUCKETS[0] - 16 - len(plaintext))
            cipher = channel._session._send.cipher  # type: ignore[union-attr]
            ciphertext = cipher.encrypt_with_ad(b"", plaintext)
            await tap.inner.send_all(struct.pack(">H", len(ciphertext)) + ciphertext)
            with pytest.raises(trio.EndOfChannel):
                await channel.receive()
            assert channel.close_code == CloseCode.BAD_MESSAGE
            await channel.aclose()
        await healthy_session(port)
        await _until(lambda: server.statistics().handler_errors == 1)
    failed = [r for r in caplog.records if getattr(r, "event", "") == "handler_failed"]
    assert [(r.error, r.close_code) for r in failed] == [  # type: ignore[attr-defined]
        ("MessageDecodeError", "BAD_MESSAGE")
    ]


def _reset(stream: trio.SocketStream) -> None:
    # SO_LINGER 0: close() sends a TCP RST, as a killed process's socket may.
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


@pytest.mark.parametrize("when", ["mid-handshake", "mid-message"])
@pytest.mark.parametrize("how", ["fin", "rst"])
async def test_a_client_killed_part_way(
    caplog: pytest.LogCaptureFixture, when: str, how: str
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    async with serving() as (server, port):
        with trio.fail_after(20):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            if when == "mid-handshake":
                await stream.send_all(b"ONPOST\x00\x01\x04\xc0" + bytes(300))
            else:
                channel = await connect(
                    stream,
                    identity=ALICE.identity,
                    static=ALICE.static,
                    peer=SERVER.identity.address,
                )
                await channel.send(_text())
                assert isinstance(await channel.receive(), messages.Text)
                # Half of a frame, then gone.
                await stream.send_all(_forged_frame()[:200])
            await trio.sleep(0.05)
            if how == "rst":
                _reset(stream)
            await stream.aclose()
        await healthy_session(port)
        expected = "failed_handshakes" if when == "mid-handshake" else "handler_errors"
        await _until(lambda: getattr(server.statistics(), expected) == 1)
        assert server.statistics().active_sessions == 0
    assert any(e in ("handshake_failed", "handler_failed") for e in _events(caplog))


async def test_a_handler_error_is_logged_and_closes_with_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def broken_store(channel: SecureChannel) -> None:
        await channel.receive()
        raise StoreError("database is locked")

    async with serving(broken_store) as (server, port):
        with trio.fail_after(20):
            channel = await _dial(port)
            await channel.send(_text(SECRET_BODY))
            with pytest.raises(trio.EndOfChannel):
                await channel.receive()
            assert channel.close_code == CloseCode.INTERNAL_ERROR
            await channel.aclose()
            # The listener is still there for the next one; a peer that
            # leaves is an ordinary end, even if the handler lets the
            # EndOfChannel escape.
            channel = await _dial(port)
            await channel.aclose()
            await healthy_session(port, 0)
        await _until(lambda: server.statistics().active_sessions == 0)
        assert server.statistics().handler_errors == 1
    assert _events(caplog).count("handler_failed") == 1
    _assert_logs_hold_no_secrets(caplog)


async def test_a_handler_bug_is_not_swallowed() -> None:
    async def buggy(channel: SecureChannel) -> None:
        raise ZeroDivisionError

    with pytest.RaisesGroup(pytest.RaisesGroup(ZeroDivisionError)):
        async with serving(buggy) as (_server, port):
            with trio.fail_after(20):
                channel = await _dial(port)
                await trio.sleep_forever()
                await channel.aclose()  # pragma: no cover


async def test_cancelling_serve_closes_everything() -> None:
    handlers_done = trio.Event()

    async def forever(channel: SecureChannel) -> None:
        try:
            await trio.sleep_forever()
        finally:
            handlers_done.set()

    with trio.fail_after(20):
        async with serving(forever) as (server, port):
            channel = await _dial(port)
            idle = await trio.open_tcp_stream("127.0.0.1", port)
            await _until(lambda: server.statistics().active_sessions == 1)
            await _until(lambda: server.statistics().pending_handshakes == 1)
        assert handlers_done.is_set()
        # Both the session and the idle stream were closed by the server.
        with pytest.raises(TransportError):
            await channel.receive()
        assert await _end_seen_by(idle) == "eof"
        await idle.aclose()
        await channel.aclose()


async def test_bad_configuration() -> None:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    options = {"identity": SERVER.identity, "static": SERVER.static, "decide": _only_alice}
    with pytest.raises(ConfigError):
        await serve(echo, [], **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        await serve(echo, listeners, max_pending=0, **options)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        await serve(echo, listeners, handshake_timeout=0, **options)  # type: ignore[arg-type]
    for listener in listeners:
        await listener.aclose()
