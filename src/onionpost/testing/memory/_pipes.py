"""Bounded in-memory byte streams, and a listener that hands them out.

A Tor stream does not buffer without end: its window fills, and the writer
waits until the other side reads. :func:`pipe_pair` gives two ends of a
stream that behaves the same way (a write waits while the other side has not
read ``capacity`` bytes), so flow control, and a peer that does not read,
behave in memory as on the network. :class:`MemoryListener` is what
:func:`onionpost.transport.serve` accepts from: each :meth:`~MemoryListener.connect`
hands it the far end of a new pair.
"""

from __future__ import annotations

from typing import Final

import trio

__all__ = ["PIPE_CAPACITY", "MemoryListener", "MemoryStream", "pipe_pair"]

#: Bytes one direction holds before a writer waits (a Tor stream's window is
#: of this order).
PIPE_CAPACITY: Final = 256 * 1024
# Streams handed to a listener and not yet accepted.
_BACKLOG: Final = 64


class _Pipe:
    """One direction of a bounded in-memory byte stream."""

    def __init__(self, capacity: int) -> None:
        self.buffer = bytearray()
        self.capacity = capacity
        self.closed = False  # the writer closed
        self.broken = False  # the reader closed
        self.changed = trio.Event()

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()


class MemoryStream(trio.abc.HalfCloseableStream):
    """One end of a :func:`pipe_pair`."""

    def __init__(self, out: _Pipe, into: _Pipe) -> None:
        self._out = out
        self._in = into
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryStream({len(self._in.buffer)} to read, {len(self._out.buffer)} unread)"

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(bytes(data))
        while view:
            if self._closed:
                raise trio.ClosedResourceError
            if self._out.broken or self._out.closed:
                raise trio.BrokenResourceError
            room = self._out.capacity - len(self._out.buffer)
            if room <= 0:
                await self._out.changed.wait()
                continue
            self._out.buffer += view[:room]
            view = view[room:]
            self._out.wake()
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.checkpoint()

    async def send_eof(self) -> None:
        self._out.closed = True
        self._out.wake()
        await trio.lowlevel.checkpoint()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        while True:
            if self._closed:
                raise trio.ClosedResourceError
            if self._in.buffer:
                n = len(self._in.buffer) if max_bytes is None else max_bytes
                data = bytes(self._in.buffer[:n])
                del self._in.buffer[:n]
                self._in.wake()
                await trio.lowlevel.checkpoint()
                return data
            if self._in.closed or self._in.broken:
                await trio.lowlevel.checkpoint()
                return b""
            await self._in.changed.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.closed = True
            self._in.broken = True
            self._out.wake()
            self._in.wake()
        await trio.lowlevel.checkpoint()


def pipe_pair(capacity: int = PIPE_CAPACITY) -> tuple[MemoryStream, MemoryStream]:
    """Two connected ends; each direction holds at most ``capacity`` unread bytes."""
    a, b = _Pipe(capacity), _Pipe(capacity)
    return MemoryStream(a, b), MemoryStream(b, a)


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """What ``serve()`` accepts from: streams handed over by :meth:`connect`."""

    def __init__(self, capacity: int = PIPE_CAPACITY) -> None:
        self._capacity = capacity
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](_BACKLOG)

    def __repr__(self) -> str:
        return f"MemoryListener({self._send.statistics().current_buffer_used} waiting)"

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await self._receive.aclose()

    async def connect(self) -> trio.abc.Stream:
        """A new stream to whoever accepts from this listener; our end of it."""
        ours, theirs = pipe_pair(self._capacity)
        await self._send.send(theirs)
        return ours
