"""The encrypted channel: a :class:`~onionpost.proto.session.Session` driven over a trio stream.

Theory of operation
-------------------
The protocol lives in the sans-I/O :class:`~onionpost.proto.session.Session`;
this module only moves its bytes (trio's ``SSLStream`` over
``ssl.SSLObject`` has the same shape)::

    connect()/accept()             SecureChannel
    ──────────────────             ─────────────────────────────────────────
    loop: write data_to_send()     send(m):    [send lock] session.send(m),
          next_event()                         write every queued byte
          until HandshakeComplete  receive():  next_event() until a Message;
          else read, receive_data              when none, flush queued bytes
                                               (Pongs), then read
                                   aclose():   [send lock] session.close(),
                                               write the Close, close stream

*Who writes.* Queued bytes carry consecutive Noise nonces, so they must
reach the stream in the order the session produced them. Bytes are taken
from the session (``data_to_send()``) only while holding the send lock, and
the holder drains the queue until it is empty before releasing it. So when
the receiving task finds the lock taken, it can leave a freshly queued Pong
to the holder instead of waiting behind it.

*Reads are bounded.* After ``next_event()`` returns None the session holds
less than one whole frame, so one read of at most :data:`READ_SIZE` bytes
(a frame and its header) keeps it under
:data:`~onionpost.limits.MAX_RECEIVE_BUFFER`.

*Errors* (STYLE: one boundary). trio's ``BrokenResourceError`` and
``ClosedResourceError`` from the stream become
:class:`~onionpost.errors.TransportError` here and nowhere else. A peer
breaking the protocol raises the session's
:class:`~onionpost.errors.RemoteProtocolError` after any authenticated Close
the session queued has been written and the stream closed. Using the
channel after *our own* :meth:`SecureChannel.aclose` is a caller bug and
raises :class:`trio.ClosedResourceError`, as every trio resource does; the
peer's authenticated Close ends receiving with :class:`trio.EndOfChannel`.
Once the session has failed, every later call raises ``TransportError``.

A send that is cancelled part-way may leave half a frame on the stream, so
it fails the channel (trio's ``SSLStream`` does the same).

No function here takes a timeout: callers use :func:`trio.fail_after`.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from onionpost.errors import (
    CloseCode,
    LocalProtocolError,
    RemoteProtocolError,
    TransportError,
    TransportReason,
)
from onionpost.limits import FRAME_HEADER_LEN, MAX_RECEIVE_BUFFER, NOISE_MAX_MESSAGE
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity, StaticKey
from onionpost.proto.messages import Close, Encoded, Message, Ping, Pong
from onionpost.proto.session import (
    ConnectionClosed,
    HandshakeComplete,
    MessageReceived,
    PeerDecision,
    Session,
    SessionState,
)

__all__ = ["READ_SIZE", "SecureChannel", "accept", "connect", "handshake"]

# One whole frame: with less than a frame left in the session (see the
# module docstring), a read this large cannot overflow MAX_RECEIVE_BUFFER.
READ_SIZE: Final = FRAME_HEADER_LEN + NOISE_MAX_MESSAGE
assert 2 * READ_SIZE <= MAX_RECEIVE_BUFFER

# Each handshake read returns at least one byte and the session fails once a
# handshake message exceeds its bounds, so a handshake needs far fewer reads
# than this; reaching it means a bug, not a slow peer (that is the caller's
# deadline).
_MAX_HANDSHAKE_READS: Final = MAX_RECEIVE_BUFFER


@dataclass(slots=True)
class _PendingPing:
    nonce: int
    done: trio.Event = field(default_factory=trio.Event)
    answered_at: float | None = None


class SecureChannel(trio.abc.Channel[Message]):
    """An established onionpost session over a trio stream.

    Made by :func:`connect` or :func:`accept`, never directly. One task may
    send while another receives; concurrent sends queue in order, concurrent
    receives raise :class:`trio.BusyResourceError`.
    """

    def __init__(self, stream: trio.abc.Stream, session: Session, done: HandshakeComplete) -> None:
        self._stream = stream
        self._session = session
        self._peer = done.peer
        self._handshake_hash = done.handshake_hash
        self._send_lock = trio.Lock()
        self._receiving = False
        self._closed = False  # our own aclose() ran
        self._failure: BaseException | None = None  # why the session is dead
        self._close_code: int | None = None  # the peer's authenticated Close
        self._close_reason: str | None = None
        self._ping: _PendingPing | None = None

    def __repr__(self) -> str:
        return f"SecureChannel(peer={self._peer}, {self._session.state.value})"

    @property
    def peer(self) -> OnionAddress:
        """The peer's verified onion address."""
        return self._peer

    @property
    def handshake_hash(self) -> bytes:
        """Noise's handshake hash h (Noise §5.3), unique to this session: for channel binding."""
        return self._handshake_hash

    @property
    def failure(self) -> BaseException | None:
        """Why the session failed (the peer's protocol error, a broken stream),
        once it has; None while it has not, or after an orderly close."""
        return self._failure

    @property
    def records_received(self) -> int:
        """Records decrypted from the peer so far, including the Pings and
        extension records the session handles itself (for rate limits)."""
        return self._session.records_received

    def keep_silent(self) -> None:
        """From now on the peer's Pings go unanswered: it hears nothing from
        us but the Close we end with (call before the first :meth:`receive`;
        the handshake reads nothing past itself)."""
        self._session.answer_pings = False

    @property
    def close_code(self) -> int | None:
        """The code of the peer's authenticated Close, once receive() raised EndOfChannel."""
        return self._close_code

    @property
    def close_reason(self) -> str | None:
        return self._close_reason

    # -- sending -------------------------------------------------------------------

    async def send(self, value: Message) -> None:
        """Encrypt and write one message.

        Returns once every byte is handed to the stream. Raises
        :class:`TransportError` if the stream broke, the session failed or
        the peer has closed it; :class:`~onionpost.errors.LocalProtocolError`
        for a message that breaks a limit (the channel stays usable) or a
        Close (use :meth:`aclose`).
        """
        if isinstance(value, Close):
            # A Close sent as a message would leave our own session open.
            raise LocalProtocolError("close the channel with aclose(code, reason)")
        await trio.lowlevel.checkpoint_if_cancelled()
        if self._send_lock.locked():
            await self._send_lock.acquire()
        else:
            # Uncontended, take it without a scheduler round trip (Lock.acquire
            # always yields); the write below is this call's checkpoint. That
            # is one yield per message instead of two.
            self._send_lock.acquire_nowait()
        try:
            self._check_can_send()
            self._session.send(value)
            await self._drain()
        finally:
            self._send_lock.release()

    async def send_many(self, values: Sequence[Message | Encoded[Message]]) -> None:
        """Encrypt and write several messages with one write to the stream (a
        burst of texts costs one system call, not one each); an
        :class:`~onionpost.proto.messages.Encoded` one goes as its bytes. The
        same errors as :meth:`send`; when one breaks a limit, those before it
        are still written."""
        for value in values:
            if isinstance(value.message if isinstance(value, Encoded) else value, Close):
                raise LocalProtocolError("close the channel with aclose(code, reason)")
        await trio.lowlevel.checkpoint_if_cancelled()
        async with self._send_lock:
            self._check_can_send()
            try:
                for value in values:
                    self._session.send(value)
            finally:
                await self._drain()

    async def ping(self) -> float:
        """Send a Ping; return the seconds until its Pong arrived.

        The Pong is seen by :meth:`receive`, so another task must be
        receiving. One ping at a time (:class:`trio.BusyResourceError`).
        """
        if self._ping is not None:
            raise trio.BusyResourceError("another task is already waiting for a ping")
        pending = _PendingPing(secrets.randbits(64))
        self._ping = pending
        try:
            start = trio.current_time()
            await self.send(Ping(pending.nonce))
            await pending.done.wait()
            if pending.answered_at is None:
                self._check_can_send()  # raises why the channel ended
                raise TransportError("the session ended before the Pong", reason="ended")
            return pending.answered_at - start
        finally:
            self._ping = None

    def _check_can_send(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this channel was closed")
        if self._failure is not None:
            raise TransportError(
                "the session has failed", reason=_reason_of(self._failure)
            ) from self._failure
        if self._close_code is not None or self._session.state is not SessionState.ESTABLISHED:
            raise TransportError("the peer closed the session", reason="ended")

    async def _drain(self) -> None:
        """Write every queued byte. The send lock must be held (module docstring)."""
        # Each pass empties the queue; only the receiving task adds to it
        # meanwhile (Pongs), one per record it has read.
        while data := self._session.data_to_send():
            await self._write(data)

    async def _write(self, data: bytes) -> None:
        written = False
        try:
            await self._stream.send_all(data)
            written = True
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise await self._stream_failed(exc) from exc
        finally:
            if not written and self._failure is None and not self._closed:
                # Cancelled part-way: the peer may hold half a frame, and the
                # next frame's nonce would not follow on. Nothing can follow.
                self._failure = TransportError("a send was interrupted", reason="broken")

    async def _flush_queued(self) -> None:
        """Write what the session queued (Pongs), unless a sender will."""
        if self._send_lock.locked():
            return  # the holder drains the queue before it releases the lock
        # Nothing awaits between the check, taking the bytes and taking the
        # lock, so no other writer can come between; and with nothing queued
        # the lock is not touched at all (aclose() would see it held).
        data = self._session.data_to_send()
        if not data or self._failure is not None or self._closed:
            return
        self._send_lock.acquire_nowait()
        try:
            await self._write(data)
            await self._drain()
        finally:
            self._send_lock.release()

    # -- receiving -----------------------------------------------------------------

    async def receive(self) -> Message:
        """The next message from the peer.

        Raises :class:`trio.EndOfChannel` once the peer closed the session
        (see :attr:`close_code`), the peer's
        :class:`~onionpost.errors.RemoteProtocolError` if it broke the
        protocol, and :class:`TransportError` if the stream broke.
        """
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving")
        self._receiving = True
        try:
            return await self._receive()
        finally:
            self._receiving = False

    async def _receive(self) -> Message:
        # A trio checkpoint even when a message is already buffered
        # (trio.MemoryReceiveChannel.receive does the same).
        await trio.lowlevel.checkpoint_if_cancelled()
        blocked = False
        # Each pass either returns, raises, or reads at least one byte; the
        # time it may take is the caller's deadline.
        while True:
            self._check_can_receive()
            try:
                event = self._session.next_event()
            except RemoteProtocolError as exc:
                await self._abort(exc)
                raise
            if event is None:
                await self._flush_queued()
                self._session.receive_data(await self._read())
                blocked = True
                continue
            if isinstance(event, MessageReceived):
                message = event.message
                if isinstance(message, Pong) and self._answers_ping(message):
                    continue
                if not blocked:
                    await trio.lowlevel.cancel_shielded_checkpoint()
                return message
            if isinstance(event, ConnectionClosed):
                self._close_code = event.code
                self._close_reason = event.reason
                self._wake_ping()
                raise trio.EndOfChannel
            raise LocalProtocolError("a second handshake event", state=self._session.state)

    def _check_can_receive(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("this channel was closed")
        if self._close_code is not None:
            raise trio.EndOfChannel
        if self._failure is not None:
            raise TransportError(
                "the session has failed", reason=_reason_of(self._failure)
            ) from self._failure

    async def _read(self) -> bytes:
        try:
            data = await self._stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise await self._stream_failed(exc) from exc
        if not data:
            # Only the authenticated Close ends a session; a bare end of
            # stream may be an attacker truncating it.
            error = TransportError("the stream ended without a Close", reason="ended")
            await self._abort(error)
            raise error
        return _as_bytes(data)

    def _answers_ping(self, pong: Pong) -> bool:
        pending = self._ping
        if pending is None or pending.nonce != pong.nonce or pending.done.is_set():
            return False
        pending.answered_at = trio.current_time()
        pending.done.set()
        return True

    def _wake_ping(self) -> None:
        if self._ping is not None:
            self._ping.done.set()

    # -- failing and closing -------------------------------------------------------

    async def _stream_failed(self, exc: BaseException) -> BaseException:
        """The exception to raise for a stream error, after failing the channel."""
        if self._closed:
            # Our own aclose() closed the stream under this task (trio's rule).
            return trio.ClosedResourceError("this channel was closed")
        if self._failure is not None:
            return TransportError("the session has failed", reason=_reason_of(self._failure))
        error = TransportError(f"the stream failed: {type(exc).__name__}", reason="broken")
        self._failure = error
        self._wake_ping()
        await trio.aclose_forcefully(self._stream)
        return error

    async def _abort(self, exc: BaseException) -> None:
        """Fail the channel: write any Close the session queued, close the stream."""
        if self._failure is None:
            self._failure = exc
        self._wake_ping()
        try:
            # A Close queued by the session is courtesy to the peer. If a
            # sender holds the lock it may be stuck on a peer that stopped
            # reading, so the Close is skipped rather than waited for.
            data = b"" if self._send_lock.locked() else self._session.data_to_send()
            if data:
                self._send_lock.acquire_nowait()
                try:
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self._stream.send_all(data)
                finally:
                    self._send_lock.release()
        finally:
            await trio.aclose_forcefully(self._stream)

    async def aclose(self, code: CloseCode = CloseCode.NORMAL, reason: str = "") -> None:
        """Send an authenticated Close when possible, then close the stream.

        Idempotent. Tasks blocked in :meth:`send` or :meth:`receive` get
        :class:`trio.ClosedResourceError`; a sender mid-write means no Close
        can be framed after it, so the stream is simply closed. If cancelled,
        the stream is still closed.
        """
        if self._closed:
            await trio.lowlevel.checkpoint()
            return
        self._closed = True
        self._wake_ping()
        try:
            if (
                self._failure is None
                and self._session.state is SessionState.ESTABLISHED
                and not self._send_lock.locked()
            ):
                self._session.close(code, reason)
                data = self._session.data_to_send()
                self._send_lock.acquire_nowait()
                try:
                    # The peer may already be gone; we are closing anyway.
                    with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await self._stream.send_all(data)
                finally:
                    self._send_lock.release()
        finally:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._stream.aclose()


# -- the handshake -----------------------------------------------------------------


async def connect(
    stream: trio.abc.Stream,
    *,
    identity: Identity,
    static: StaticKey,
    peer: OnionAddress,
    now: int | None = None,
) -> SecureChannel:
    """Run the initiator's handshake with ``peer`` over ``stream``.

    ``now`` (seconds since the epoch, for certificate validity) defaults to
    the system clock. On failure the stream is closed and the error raised:
    :class:`~onionpost.errors.AuthenticationError` when ``peer`` could not
    prove who it is, another RemoteProtocolError, or TransportError. Set a
    deadline with :func:`trio.fail_after`.

    The initiator is done once it has sent the third message, before the
    responder has checked it: a responder that refuses us, or rejects our
    certificate, is seen only as the stream ending at the first
    :meth:`SecureChannel.receive` (the same for every cause, by design).
    """
    session = Session(
        initiator=True,
        identity=identity,
        static=static,
        now=int(time.time()) if now is None else now,
        peer=peer,
    )
    session.start()
    return await handshake(stream, session)


async def accept(
    stream: trio.abc.Stream,
    *,
    identity: Identity,
    static: StaticKey,
    decide: Callable[[OnionAddress], PeerDecision],
    now: int | None = None,
) -> SecureChannel:
    """Run the responder's handshake over ``stream``.

    ``decide(peer)`` is called with the initiator's verified address once
    its certificate checked out; anything but ACCEPT fails the handshake
    exactly as a bad certificate does. Errors and deadlines as :func:`connect`.
    """
    session = Session(
        initiator=False,
        identity=identity,
        static=static,
        now=int(time.time()) if now is None else now,
        decide=decide,
    )
    return await handshake(stream, session)


async def handshake(stream: trio.abc.Stream, session: Session) -> SecureChannel:
    """Drive a new (started, if it initiates) ``session`` to HandshakeComplete.

    The lower layer under :func:`connect` and :func:`accept`, for callers
    that build their own Session (the benchmarks' classical Noise baseline).
    """
    established = False
    try:
        channel = await _drive_handshake(stream, session)
        established = True
        return channel
    except RemoteProtocolError:
        # A refused version has our preamble queued so the peer can report
        # it; authentication failures queue nothing (one failure, one look).
        data = session.data_to_send()
        if data:
            with contextlib.suppress(TransportError):
                await _send(stream, data)
        raise
    finally:
        if not established:
            await trio.aclose_forcefully(stream)


async def _drive_handshake(stream: trio.abc.Stream, session: Session) -> SecureChannel:
    for _ in range(_MAX_HANDSHAKE_READS):
        # Processing input may queue our next message (and, for the
        # initiator, the third message comes with HandshakeComplete).
        event = session.next_event()
        data = session.data_to_send()
        if data:
            await _send(stream, data)
        if isinstance(event, HandshakeComplete):
            return SecureChannel(stream, session, event)
        if event is not None:
            raise LocalProtocolError("an event before the handshake completed", state=session.state)
        try:
            chunk = await stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise TransportError(
                f"the stream failed: {type(exc).__name__}", reason="broken"
            ) from exc
        if not chunk:
            raise TransportError("the stream ended during the handshake", reason="ended")
        session.receive_data(_as_bytes(chunk))
    raise LocalProtocolError("the handshake did not progress", state=session.state)


async def _send(stream: trio.abc.Stream, data: bytes) -> None:
    try:
        await stream.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise TransportError(f"the stream failed: {type(exc).__name__}", reason="broken") from exc


def _reason_of(failure: BaseException) -> TransportReason:
    """Why a channel that failed with ``failure`` cannot be used any more."""
    return failure.reason if isinstance(failure, TransportError) else "broken"


def _as_bytes(data: bytes | bytearray) -> bytes:
    # trio's SocketStream already returns bytes; only other streams pay a copy.
    return data if isinstance(data, bytes) else bytes(data)
