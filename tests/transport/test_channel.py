"""SecureChannel, connect() and accept() over trio's in-memory streams.

``trio.testing.check_two_way_stream`` only applies to ``trio.abc.Stream``s
(byte streams with ``send_all``/``receive_some``/``send_eof``); our channel
is a ``trio.abc.Channel`` of whole records, so the analogous checks are
written out below (``test_conformance_*``): ordering, aclose semantics,
BusyResourceError on concurrent receives, ClosedResourceError after aclose,
EndOfChannel on the peer's close. Every test runs over both
``memory_stream_pair`` (unbounded buffers) and ``lockstep_stream_pair``
(every send waits for the receiver, which finds ordering deadlocks).
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import trio
import trio.testing

from onionpost.errors import (
    AuthenticationError,
    CloseCode,
    FramingError,
    LocalProtocolError,
    MessageDecodeError,
    RemoteProtocolError,
    TransportError,
    VersionError,
)
from onionpost.limits import FILE_CHUNK_SIZE, MAX_TEXT_BODY, PADDING_BUCKETS
from onionpost.proto import messages
from onionpost.proto._crypto import KeyPair
from onionpost.proto.identity import Identity, StaticKey
from onionpost.proto.messages import Message
from onionpost.proto.session import PeerDecision
from onionpost.transport import SecureChannel, accept, connect
from onionpost.transport._channel import READ_SIZE

NOW = int(time.time())
StreamPair = Callable[[], tuple[trio.abc.Stream, trio.abc.Stream]]
PAIRS: list[StreamPair] = [trio.testing.memory_stream_pair, trio.testing.lockstep_stream_pair]


@dataclass(frozen=True)
class Endpoint:
    identity: Identity
    static: StaticKey


def _endpoint() -> Endpoint:
    identity = Identity.generate()
    return Endpoint(identity, StaticKey.generate(identity, now=NOW))


ALICE, BOB = _endpoint(), _endpoint()


def _accept_all(_peer: object) -> PeerDecision:
    return PeerDecision.ACCEPT


async def _handshake(
    pair: StreamPair,
    *,
    client: Endpoint = ALICE,
    server: Endpoint = BOB,
    decide: Callable[..., PeerDecision] = _accept_all,
) -> tuple[SecureChannel, SecureChannel]:
    a, b = pair()
    return await _handshake_over(a, b, client=client, server=server, decide=decide)


async def _handshake_over(
    a: trio.abc.Stream,
    b: trio.abc.Stream,
    *,
    client: Endpoint = ALICE,
    server: Endpoint = BOB,
    decide: Callable[..., PeerDecision] = _accept_all,
) -> tuple[SecureChannel, SecureChannel]:
    channels: dict[str, SecureChannel] = {}

    async def run_client() -> None:
        channels["client"] = await connect(
            a, identity=client.identity, static=client.static, peer=server.identity.address
        )

    async def run_server() -> None:
        channels["server"] = await accept(
            b, identity=server.identity, static=server.static, decide=decide
        )

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_client)
            nursery.start_soon(run_server)
    return channels["client"], channels["server"]


async def _close_both(client: SecureChannel, server: SecureChannel) -> None:
    """The polite end: one side closes while the other reads its Close.

    (Both sending a Close at once would deadlock on a lockstep stream, where
    every write waits for a reader; TCP's buffers hide that.)
    """
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.aclose)
            with pytest.raises(trio.EndOfChannel):
                await server.receive()
        await server.aclose()


def _id() -> bytes:
    return os.urandom(16)


def every_message() -> list[Message]:
    """One of each record an application sends (Close is aclose's; Ping is below)."""
    return [
        messages.Text(_id(), 1_700_000_000_000, "hello, \u00e9l\u00e8ve \U0001f600"),
        messages.Text(_id(), 2, "x" * MAX_TEXT_BODY, "text/markdown"),
        messages.Ack((_id(), _id())),
        messages.Read((_id(),)),
        messages.FileOffer(_id(), 3, "report.pdf", 10**9, os.urandom(64), "application/pdf"),
        messages.FileAccept(_id(), 4096),
        messages.FileChunk(_id(), 0, os.urandom(FILE_CHUNK_SIZE)),
        messages.FileChunk(_id(), 7, b""),
        messages.FileComplete(_id()),
        messages.FileReject(_id(), 1),
        messages.FileCancel(_id(), 0),
        messages.Pong(2**64 - 1),
    ]


async def _exchange(sender: SecureChannel, receiver: SecureChannel, batch: list[Message]) -> None:
    got: list[Message] = []

    async def receive_all() -> None:
        for _ in batch:
            got.append(await receiver.receive())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_all)
            for message in batch:
                await sender.send(message)
    assert got == batch


# -- the handshake -----------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS)
async def test_handshake_authenticates_both_ends(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    assert client.peer == BOB.identity.address
    assert server.peer == ALICE.identity.address
    assert client.handshake_hash == server.handshake_hash
    assert len(client.handshake_hash) == 64
    assert client.handshake_hash.hex() not in repr(client)
    await _close_both(client, server)


@pytest.mark.parametrize("pair", PAIRS)
async def test_dialing_the_wrong_address_fails_and_closes(pair: StreamPair) -> None:
    a, b = pair()
    mallory = _endpoint()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def impostor() -> None:
                # Mallory answers with a valid certificate, for her own identity.
                with pytest.raises(TransportError):
                    await accept(
                        b, identity=mallory.identity, static=mallory.static, decide=_accept_all
                    )

            nursery.start_soon(impostor)
            with pytest.raises(AuthenticationError):
                await connect(
                    a, identity=ALICE.identity, static=ALICE.static, peer=BOB.identity.address
                )
    with pytest.raises(trio.ClosedResourceError):
        await a.send_all(b"x")


async def _refused_client_view(server: Endpoint, client: Endpoint, decide: object) -> bytes:
    """Every byte the client reads after its handshake, until the stream ends."""
    a, b = trio.testing.memory_stream_pair()
    tap = _RecordingStream(a)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def responder() -> None:
                with pytest.raises(AuthenticationError) as info:
                    await accept(
                        b,
                        identity=server.identity,
                        static=server.static,
                        decide=decide,  # type: ignore[arg-type]
                    )
                assert str(info.value) == "handshake failed"

            nursery.start_soon(responder)
            # From the initiator's side the handshake is done after message 3.
            channel = await connect(
                tap, identity=client.identity, static=client.static, peer=server.identity.address
            )
            seen_in_handshake = len(tap.received)
            with pytest.raises(TransportError, match="without a Close"):
                await channel.receive()
    assert tap.received[-1] == b""  # a clean end of stream, not a reset
    return b"".join(tap.received[seen_in_handshake:])


async def test_refused_peer_and_bad_certificate_look_the_same() -> None:
    refused = await _refused_client_view(BOB, ALICE, lambda _peer: PeerDecision.REFUSE)
    # A certificate signed by someone else than the identity presented.
    keypair = KeyPair.generate()
    forged = StaticKey(keypair, _endpoint().identity.certify(keypair.public, now=NOW))
    bad_cert = await _refused_client_view(BOB, Endpoint(ALICE.identity, forged), _accept_all)
    # An expired certificate.
    expired = StaticKey(keypair, ALICE.identity.certify(keypair.public, now=NOW - 400 * 86400))
    old_cert = await _refused_client_view(BOB, Endpoint(ALICE.identity, expired), _accept_all)
    assert refused == bad_cert == old_cert == b""


async def test_unknown_version_gets_our_preamble_then_the_end() -> None:
    a, b = trio.testing.memory_stream_pair()
    await a.send_all(b"ONPOST" + struct.pack(">H", 9))
    with trio.fail_after(10), pytest.raises(VersionError):
        await accept(b, identity=BOB.identity, static=BOB.static, decide=_accept_all)
    assert await a.receive_some(100) == b"ONPOST\x00\x01"
    assert await a.receive_some(100) == b""


async def test_not_onionpost_fails_the_handshake() -> None:
    a, b = trio.testing.memory_stream_pair()
    await a.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with trio.fail_after(10), pytest.raises(RemoteProtocolError):
        await accept(b, identity=BOB.identity, static=BOB.static, decide=_accept_all)
    assert await a.receive_some(100) == b""


async def test_stream_ending_mid_handshake_is_a_transport_error() -> None:
    a, b = trio.testing.memory_stream_pair()
    await a.send_all(b"ONPOST\x00\x01\x04")
    await a.aclose()
    with trio.fail_after(10), pytest.raises(TransportError) as info:
        await accept(b, identity=BOB.identity, static=BOB.static, decide=_accept_all)
    assert info.value.reason == "ended"


async def test_a_broken_stream_mid_handshake_is_broken() -> None:
    a, b = trio.testing.memory_stream_pair()
    await b.aclose()
    with trio.fail_after(10), pytest.raises(TransportError) as info:
        await connect(a, identity=ALICE.identity, static=ALICE.static, peer=BOB.identity.address)
    assert info.value.reason == "broken"
    assert isinstance(info.value.__cause__, trio.BrokenResourceError | trio.ClosedResourceError)


async def test_a_cancelled_handshake_closes_the_stream() -> None:
    _a, b = trio.testing.memory_stream_pair()
    with trio.move_on_after(0.05):
        await accept(b, identity=BOB.identity, static=BOB.static, decide=_accept_all)
    with pytest.raises(trio.ClosedResourceError):
        await b.send_all(b"x")


# -- messages ----------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS)
async def test_every_message_type_both_directions(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    await _exchange(client, server, every_message())
    await _exchange(server, client, every_message())
    await _close_both(client, server)


@pytest.mark.parametrize("pair", PAIRS)
async def test_concurrent_send_and_receive_tasks(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    count = 300
    outgoing = {
        side: [messages.Text(_id(), i, f"{side} {i}") for i in range(count)]
        for side in ("client", "server")
    }
    received: dict[str, list[Message]] = {"client": [], "server": []}

    async def sender(channel: SecureChannel, side: str) -> None:
        for message in outgoing[side]:
            await channel.send(message)

    async def receiver(channel: SecureChannel, side: str) -> None:
        for _ in range(count):
            received[side].append(await channel.receive())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sender, client, "client")
            nursery.start_soon(sender, server, "server")
            nursery.start_soon(receiver, client, "client")
            nursery.start_soon(receiver, server, "server")
    assert received["server"] == outgoing["client"]
    assert received["client"] == outgoing["server"]


@pytest.mark.parametrize("pair", PAIRS)
async def test_ping_is_answered_by_the_peer(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    text = messages.Text(_id(), 1, "after the ping")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                # The server application never sees the Ping, only the Text.
                assert await server.receive() == text
                with pytest.raises(trio.EndOfChannel):
                    await server.receive()

            nursery.start_soon(serve)
            # The client reads while it writes: the server's receive() writes
            # the Pong, which on a lockstep stream waits for a reader.
            async with trio.open_nursery() as inner:

                async def expect_pong() -> None:
                    assert await client.receive() == messages.Pong(12345)

                inner.start_soon(expect_pong)
                await client.send(messages.Ping(12345))
                await client.send(text)
            await client.aclose()


@pytest.mark.parametrize("pair", PAIRS)
async def test_ping_measures_the_round_trip(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    unrelated = messages.Pong(99)
    seen: list[Message] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def drain(channel: SecureChannel) -> None:
                # Ends at the peer's Close, or at our own aclose() below.
                with contextlib.suppress(trio.ClosedResourceError):
                    async for message in channel:
                        seen.append(message)

            nursery.start_soon(drain, client)
            nursery.start_soon(drain, server)
            await server.send(unrelated)
            rtt = await client.ping()
            assert 0 <= rtt < 10
            await client.aclose(CloseCode.NORMAL)
    # Our own Pong was consumed by ping(); the peer's unrelated one was not.
    assert seen == [unrelated]


async def test_one_ping_at_a_time_and_close_ends_it() -> None:
    client, _server = await _handshake(trio.testing.memory_stream_pair)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def first() -> None:
                # Nobody answers (the server is not receiving); aclose ends it.
                with pytest.raises(trio.ClosedResourceError):
                    await client.ping()

            nursery.start_soon(first)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await client.ping()
            await client.aclose()


@pytest.mark.parametrize("pair", PAIRS)
async def test_a_pong_queued_behind_a_blocked_sender_is_written_by_it(pair: StreamPair) -> None:
    # Bob's sender is stuck (Alice is not reading) when Alice's Ping arrives:
    # Bob's receiver must neither wait for the send lock nor lose the Pong.
    client, server = await _handshake(pair)
    text = messages.Text(_id(), 1, "x" * 50_000)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def bob_sends() -> None:
                for _ in range(8):
                    await server.send(text)

            async def bob_receives() -> None:
                with pytest.raises(trio.EndOfChannel):
                    await server.receive()

            nursery.start_soon(bob_sends)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(bob_receives)
            await client.send(messages.Ping(1))
            got = [await client.receive() for _ in range(9)]
            assert got.count(text) == 8
            assert messages.Pong(1) in got
            await client.aclose()


@pytest.mark.parametrize("pair", PAIRS)
async def test_too_large_or_close_messages_are_refused_locally(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    with pytest.raises(LocalProtocolError):
        await client.send(messages.FileChunk(_id(), 2**63, bytes(FILE_CHUNK_SIZE + 1)))
    with pytest.raises(LocalProtocolError):
        await client.send(messages.Close(0))
    for close in (messages.Close(0), messages.encoded(messages.Close(0))):
        with pytest.raises(LocalProtocolError, match="aclose"):
            await client.send_many([messages.FileComplete(_id()), close])
    # Nothing was consumed: the channel goes on.
    await _exchange(client, server, [messages.FileComplete(_id())])


# -- closing -----------------------------------------------------------------------


@pytest.mark.parametrize("pair", PAIRS)
async def test_close_reaches_the_peer_as_end_of_channel(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    last = messages.Text(_id(), 1, "bye")
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def closer() -> None:
                await client.send(last)
                await client.aclose(CloseCode.GOING_AWAY, "shutting down")

            nursery.start_soon(closer)
            assert await server.receive() == last
            with pytest.raises(trio.EndOfChannel):
                await server.receive()
    assert server.close_code == CloseCode.GOING_AWAY
    assert server.close_reason == "shutting down"
    # EndOfChannel again, as trio's channels do; sending is over too.
    with pytest.raises(trio.EndOfChannel):
        await server.receive()
    with pytest.raises(TransportError) as info:
        await server.send(last)
    assert info.value.reason == "ended"
    await server.aclose()
    await server.aclose()


@pytest.mark.parametrize("pair", PAIRS)
async def test_async_iteration_ends_at_close(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    batch = [messages.FileComplete(_id()) for _ in range(5)]
    got: list[Message] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def produce() -> None:
                async with client:
                    for message in batch:
                        await client.send(message)

            nursery.start_soon(produce)
            async for message in server:
                got.append(message)
    assert got == batch
    assert server.close_code == CloseCode.NORMAL


@pytest.mark.parametrize("pair", PAIRS)
async def test_conformance_aclose_is_idempotent_and_final(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.aclose)
        with pytest.raises(trio.EndOfChannel):
            await server.receive()
    await client.aclose()
    await client.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await client.send(messages.FileComplete(_id()))
    with pytest.raises(trio.ClosedResourceError):
        await client.receive()
    with pytest.raises(trio.ClosedResourceError):
        await client.ping()
    await server.aclose()
    with pytest.raises(trio.ClosedResourceError):
        await server.receive()


@pytest.mark.parametrize("pair", PAIRS)
async def test_conformance_aclose_wakes_a_blocked_receiver(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def blocked() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await client.receive()

            async def peer() -> None:
                with pytest.raises(trio.EndOfChannel):
                    await server.receive()

            nursery.start_soon(blocked)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(peer)
            await client.aclose()


async def test_conformance_aclose_wakes_a_blocked_sender() -> None:
    # Lockstep: the send blocks until the (absent) reader takes the bytes.
    client, server = await _handshake(trio.testing.lockstep_stream_pair)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:

            async def blocked() -> None:
                with pytest.raises(trio.ClosedResourceError):
                    await client.send(messages.FileComplete(_id()))

            nursery.start_soon(blocked)
            await trio.testing.wait_all_tasks_blocked()
            await client.aclose()
    # No Close could be framed behind a write in flight: the peer sees the
    # stream end (after the record, which lockstep had already buffered).
    with trio.fail_after(10):
        assert isinstance(await server.receive(), messages.FileComplete)
        with pytest.raises(TransportError):
            await server.receive()


@pytest.mark.parametrize("pair", PAIRS)
async def test_conformance_concurrent_receive_is_busy(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.receive)
            await trio.testing.wait_all_tasks_blocked()
            with pytest.raises(trio.BusyResourceError):
                await server.receive()
            await client.send(messages.FileComplete(_id()))
    await _close_both(client, server)


@pytest.mark.parametrize("pair", PAIRS)
async def test_conformance_ordering_with_interleaved_sizes(pair: StreamPair) -> None:
    client, server = await _handshake(pair)
    # Records of every padding bucket, mixed, arrive in order and intact.
    batch: list[Message] = []
    for i in range(60):
        size = (10, 3000, FILE_CHUNK_SIZE)[i % 3]
        batch.append(messages.FileChunk(_id(), i, os.urandom(size)))
    await _exchange(client, server, batch)


async def test_conformance_receive_is_a_checkpoint() -> None:
    client, server = await _handshake(trio.testing.memory_stream_pair)
    await _exchange(client, server, [messages.FileComplete(_id())])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(client.send, messages.FileComplete(_id()))
        nursery.start_soon(client.send, messages.FileComplete(_id()))
    # Two records buffered, yet a cancelled receive still raises Cancelled.
    await server.receive()
    with trio.CancelScope() as scope:
        scope.cancel()
        await server.receive()
    assert scope.cancelled_caught
    # The buffered record was not lost.
    assert isinstance(await server.receive(), messages.FileComplete)


# -- failures ----------------------------------------------------------------------


def _raw_record(channel: SecureChannel, plaintext: bytes) -> bytes:
    """A frame authenticated under ``channel``'s sending key, holding anything.

    The public API cannot produce a malformed authentic record (by design),
    so this reaches into the session's cipher state.
    """
    cipher = channel._session._send.cipher  # type: ignore[union-attr]
    ciphertext = cipher.encrypt_with_ad(b"", plaintext)
    return struct.pack(">H", len(ciphertext)) + ciphertext


async def test_an_authentic_junk_record_closes_with_a_reason() -> None:
    a, b = trio.testing.memory_stream_pair()
    client, server = await _handshake_over(a, b)
    junk = b"\xc1"  # never valid msgpack
    plaintext = struct.pack(">H", len(junk)) + junk
    plaintext += bytes(PADDING_BUCKETS[0] - 16 - len(plaintext))
    await a.send_all(_raw_record(client, plaintext))
    with trio.fail_after(10), pytest.raises(MessageDecodeError) as info:
        await server.receive()
    assert info.value.close_code == CloseCode.BAD_MESSAGE
    # The server told us why, authenticated, before closing.
    with trio.fail_after(10), pytest.raises(trio.EndOfChannel):
        await client.receive()
    assert client.close_code == CloseCode.BAD_MESSAGE
    # The failed side says so from now on.
    with pytest.raises(TransportError):
        await server.receive()
    with pytest.raises(TransportError):
        await server.send(messages.FileComplete(_id()))
    await server.aclose()


@pytest.mark.parametrize(
    ("garbage", "error"),
    [
        (struct.pack(">H", 600) + bytes(600), FramingError),  # not a bucket size
        (struct.pack(">H", 512) + os.urandom(512), AuthenticationError),  # forged
    ],
)
async def test_garbage_after_the_handshake_fails_the_session(
    garbage: bytes, error: type[Exception]
) -> None:
    a, b = trio.testing.memory_stream_pair()
    client, server = await _handshake_over(a, b)
    await a.send_all(garbage)
    with trio.fail_after(10), pytest.raises(error):
        await server.receive()
    # Nothing authentic can be said to a forger: the stream just ends.
    with trio.fail_after(10), pytest.raises(TransportError):
        await client.receive()


@pytest.mark.parametrize("pair", PAIRS)
async def test_end_of_stream_without_close_is_a_transport_error(pair: StreamPair) -> None:
    a, b = pair()
    _client, server = await _handshake_over(a, b)
    await a.aclose()  # the raw stream, not the channel: no Close
    with trio.fail_after(10), pytest.raises(TransportError) as info:
        await server.receive()
    assert not isinstance(info.value.__cause__, trio.EndOfChannel)
    assert info.value.reason == "ended"
    # Later calls say the session has failed, and why: it ended.
    with pytest.raises(TransportError) as later:
        await server.receive()
    assert later.value.reason == "ended"
    with pytest.raises(TransportError) as sending:
        await server.send(messages.FileComplete(_id()))
    assert sending.value.reason == "ended"
    await server.aclose()


async def test_a_cancelled_send_fails_the_channel() -> None:
    client, server = await _handshake(trio.testing.lockstep_stream_pair)
    with trio.move_on_after(0.05) as scope:
        await client.send(messages.FileComplete(_id()))
    assert scope.cancelled_caught
    with pytest.raises(TransportError) as info:
        await client.send(messages.FileComplete(_id()))
    assert info.value.reason == "broken"
    await client.aclose()
    await server.aclose()


@pytest.mark.parametrize("pair", PAIRS)
async def test_a_broken_stream_becomes_transport_error(pair: StreamPair) -> None:
    a, b = pair()
    client, _server = await _handshake_over(a, b)
    await b.aclose()  # the raw stream under the server: writing to it breaks
    with trio.fail_after(10), pytest.raises(TransportError) as info:
        await client.send(messages.FileComplete(_id()))
    # Translated at the boundary, with trio's error kept as the cause.
    assert isinstance(info.value.__cause__, trio.BrokenResourceError)
    assert info.value.reason == "broken"
    # The channel has failed for both directions, and closed its stream.
    with pytest.raises(TransportError) as later:
        await client.receive()
    assert later.value.reason == "broken"
    with pytest.raises(trio.ClosedResourceError):
        await a.send_all(b"x")
    await client.aclose()


class _RecordingStream(trio.abc.Stream):
    """Passes everything through, noting the largest read asked for and what came."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.largest_read = 0
        self.received: list[bytes] = []

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:  # pragma: no cover - not used
        raise NotImplementedError

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        assert max_bytes is not None
        self.largest_read = max(self.largest_read, max_bytes)
        data = await self.inner.receive_some(max_bytes)
        self.received.append(bytes(data))
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_reads_are_bounded() -> None:
    a, b = trio.testing.memory_stream_pair()
    recorder = _RecordingStream(b)
    client, server = await _handshake_over(a, recorder)
    await _exchange(client, server, [messages.FileChunk(_id(), 0, bytes(FILE_CHUNK_SIZE))] * 4)
    assert 0 < recorder.largest_read <= READ_SIZE


async def test_send_many_writes_a_burst_at_once_and_each_arrives_in_order() -> None:
    a, b = trio.testing.memory_stream_pair()
    client, server = await _handshake_over(a, b)
    writes = 0
    pump = a.send_stream.send_all_hook
    assert pump is not None

    async def counted() -> None:
        nonlocal writes
        writes += 1
        await pump()

    texts = [messages.Text(_id(), i, f"text {i}") for i in range(50)]
    # Some as the records, some with their encodings: all arrive the same.
    ready = [messages.encoded(t) if t.created_ms % 2 else t for t in texts]
    a.send_stream.send_all_hook = counted
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(client.send_many, ready)
            got = [await server.receive() for _ in texts]
    assert got == texts
    assert writes == 1
