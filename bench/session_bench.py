"""Sessions over loopback TCP with trio: SecureChannel against the same framing without crypto.

Both ends run in one process and one trio run, so every figure is the cost of
sender and receiver together on one core. Each measurement opens a fresh TCP
connection on 127.0.0.1 (and, for ours, completes the handshake) before the
clock starts.

- ``session_64KiB_MB_per_s``: FileChunks of FILE_CHUNK_SIZE, the largest
  record (one 65,535-byte Noise message, a 65,537-byte frame), one way;
  the peer sends 65,537-byte frames (u16 length + 65,535 bytes) and the
  receiver splits them out of its buffer the way the Session does. MB are
  frame bytes on the wire, the same for both.
- ``session_200B_msgs_per_s``: Text records with a 200-byte body, padded
  into the 512-byte bucket (514-byte frames); the peer sends 514-byte raw
  frames, so both put the same bytes on the wire.
- ``session_handshake_latency_ms``: TCP connected to both ends established,
  hybrid (ours) against classical ``Noise_XX_25519_ChaChaPoly_BLAKE2b``
  (peer), each with certificates and the same Session and driver.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Awaitable, Callable, Iterator

import trio

from bench._common import compare, line, scaled
from onionpost.limits import FILE_CHUNK_SIZE, NOISE_MAX_MESSAGE, PADDING_BUCKETS
from onionpost.proto import messages
from onionpost.proto.identity import Identity, StaticKey
from onionpost.proto.session import PROTOCOL_NAME, PeerDecision, Session
from onionpost.transport import SecureChannel, accept, connect
from onionpost.transport._channel import READ_SIZE, handshake

CLASSICAL = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
_U16 = struct.Struct(">H")
NOW = int(time.time())


class _Keys:
    def __init__(self) -> None:
        self.client = Identity.generate()
        self.server = Identity.generate()
        self.client_static = StaticKey.generate(self.client, now=NOW)
        self.server_static = StaticKey.generate(self.server, now=NOW)


def _accept_all(_peer: object) -> PeerDecision:
    return PeerDecision.ACCEPT


async def _tcp_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listeners[0].accept()
    for listener in listeners:
        await listener.aclose()
    return client, server


async def _both(
    first: Callable[[], Awaitable[object]], second: Callable[[], Awaitable[object]]
) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(first)
        nursery.start_soon(second)


async def _secure_pair(keys: _Keys) -> tuple[SecureChannel, SecureChannel]:
    a, b = await _tcp_pair()
    out: dict[str, SecureChannel] = {}

    async def client() -> None:
        out["c"] = await connect(
            a, identity=keys.client, static=keys.client_static, peer=keys.server.address
        )

    async def server() -> None:
        out["s"] = await accept(
            b, identity=keys.server, static=keys.server_static, decide=_accept_all
        )

    await _both(client, server)
    return out["c"], out["s"]


def _ours_rate(keys: _Keys, message: messages.Message, count: int) -> float:
    """Messages per second through a SecureChannel."""

    async def main() -> float:
        client, server = await _secure_pair(keys)

        async def produce() -> None:
            for _ in range(count):
                await client.send(message)

        async def consume() -> None:
            for _ in range(count):
                await server.receive()

        start = time.perf_counter()
        await _both(produce, consume)
        elapsed = time.perf_counter() - start
        await _both(client.aclose, server.aclose)
        return count / elapsed

    return trio.run(main)


def _raw_rate(payload_len: int, count: int) -> float:
    """Frames per second of u16 length + payload over trio TCP, no crypto."""
    frame = _U16.pack(payload_len) + os.urandom(payload_len)

    async def main() -> float:
        a, b = await _tcp_pair()

        async def produce() -> None:
            for _ in range(count):
                await a.send_all(frame)

        async def consume() -> None:
            # The same reassembly as the Session: a bytearray, frames cut
            # from its front.
            buf = bytearray()
            got = 0
            while got < count:
                buf += await b.receive_some(READ_SIZE)
                while len(buf) >= 2:
                    (length,) = _U16.unpack_from(buf)
                    if len(buf) < 2 + length:
                        break
                    bytes(buf[2 : 2 + length])
                    del buf[: 2 + length]
                    got += 1

        start = time.perf_counter()
        await _both(produce, consume)
        elapsed = time.perf_counter() - start
        await a.aclose()
        await b.aclose()
        return count / elapsed

    return trio.run(main)


def _handshake_ms(keys: _Keys, protocol: str, count: int) -> float:
    """Mean milliseconds from TCP connected to both ends established."""

    async def one() -> float:
        a, b = await _tcp_pair()
        initiator = Session(
            initiator=True,
            identity=keys.client,
            static=keys.client_static,
            now=NOW,
            peer=keys.server.address,
            protocol=protocol,
        )
        responder = Session(
            initiator=False,
            identity=keys.server,
            static=keys.server_static,
            now=NOW,
            decide=_accept_all,
            protocol=protocol,
        )
        channels: list[SecureChannel] = []

        async def run(stream: trio.SocketStream, session: Session) -> None:
            channels.append(await handshake(stream, session))

        start = time.perf_counter()
        initiator.start()
        await _both(lambda: run(a, initiator), lambda: run(b, responder))
        elapsed = time.perf_counter() - start
        for channel in channels:
            await trio.aclose_forcefully(channel)
        return elapsed

    async def main() -> float:
        total = 0.0
        for _ in range(count):
            total += await one()
        return total / count * 1000

    return trio.run(main)


def run() -> Iterator[str]:
    keys = _Keys()
    wire = 2 + NOISE_MAX_MESSAGE  # frame bytes per 64 KiB message, both sides

    chunk = messages.FileChunk(os.urandom(16), 2**40, os.urandom(FILE_CHUNK_SIZE))
    count = scaled(600)
    ours, peer = compare(
        lambda: _ours_rate(keys, chunk, count) * wire / 1e6,
        lambda: _raw_rate(NOISE_MAX_MESSAGE, count) * wire / 1e6,
    )
    yield line("session_64KiB_MB_per_s", ours, peer, "MB/s")

    text = messages.Text(os.urandom(16), 1_700_000_000_000, "x" * 200)
    count = scaled(4000)
    ours, peer = compare(
        lambda: _ours_rate(keys, text, count),
        lambda: _raw_rate(PADDING_BUCKETS[0], count),
    )
    yield line("session_200B_msgs_per_s", ours, peer, "/s")

    ours, peer = compare(
        lambda: _handshake_ms(keys, PROTOCOL_NAME, scaled(20)),
        lambda: _handshake_ms(keys, CLASSICAL, scaled(20)),
    )
    yield line("session_handshake_latency_ms", ours, peer, "ms")
