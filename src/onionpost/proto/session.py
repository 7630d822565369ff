"""The onionpost session: a sans-I/O state machine from bytes to records.

Theory of operation
-------------------
A :class:`Session` is fed the bytes that arrive (:meth:`receive_data`),
hands out what happened (:meth:`next_event`), and queues bytes to send
(:meth:`send`, :meth:`close`, and the handshake's own replies), which the
caller drains with :meth:`data_to_send`. It never touches a socket, a clock
or a random source of its own: time is given at construction, randomness is
injectable.

The stream (spec.md §Handshake)::

    initiator                                      responder
    "ONPOST" u16 version, frame(e, e1)       -->
                                             <--   "ONPOST" u16 version,
                                                   frame(e, ee, ekem1, s, es, payload)
    frame(s, se, payload)                    -->
    frame(transport) ...                     <->   frame(transport) ...

with ``Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b`` and the prologue
``"onionpost" || u16 version || u8 56 || the 56-character service id`` of
the address dialed (initiator) or owned (responder). A frame is a u16
big-endian length and one Noise message. Each handshake payload is the
msgpack array ``[1, identity public key, static-key certificate]``.

Transport plaintext is ``u16 record length || record || zero padding`` so
that every Noise message is one of :data:`~onionpost.limits.PADDING_BUCKETS`.

Legal transitions are the table :data:`TRANSITIONS`; anything else is an
error. ``protocol-spec/state-machine.md`` is generated from that table.
"""

from __future__ import annotations

import contextlib
import enum
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from onionpost.errors import (
    AuthenticationError,
    CloseCode,
    DecryptError,
    FramingError,
    LocalProtocolError,
    MessageDecodeError,
    NonceExhaustedError,
    OnionpostError,
    RemoteProtocolError,
    VersionError,
)
from onionpost.limits import (
    FRAME_HEADER_LEN,
    MAX_HANDSHAKE_PAYLOAD,
    MAX_QUEUED_PONGS,
    MAX_RECEIVE_BUFFER,
    MAX_RECORD_SIZE,
    NOISE_TAG_LEN,
    PADDING_BUCKETS,
    REKEY_AFTER_BYTES,
    REKEY_AFTER_MESSAGES,
)
from onionpost.proto import _msgpack, messages
from onionpost.proto._crypto import Encapsulator, KeyPair, constant_time_equal
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import CERT_LEN, Identity, StaticKey, StaticKeyCertificate
from onionpost.proto.messages import Encoded, Message
from onionpost.proto.noise import CipherState, HandshakeState, NoiseProtocol

__all__ = [
    "PROTOCOL_NAME",
    "PROTOCOL_VERSION",
    "ConnectionClosed",
    "Event",
    "HandshakeComplete",
    "HandshakeRandomness",
    "MessageReceived",
    "PeerDecision",
    "Session",
    "SessionInput",
    "SessionState",
    "TRANSITIONS",
]

PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = frozenset({1})
PROTOCOL_NAME: Final = "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b"
MAGIC: Final = b"ONPOST"
_PREAMBLE: Final = struct.Struct(">6sH")
PREAMBLE_LEN: Final = _PREAMBLE.size
_U16: Final = struct.Struct(">H")
_HANDSHAKE_PAYLOAD_VERSION: Final = 1
_FAILED: Final = "handshake failed"
# A Pong is one frame of the smallest bucket.
_MAX_QUEUED_PONG_BYTES: Final = MAX_QUEUED_PONGS * (FRAME_HEADER_LEN + PADDING_BUCKETS[0])


class SessionState(enum.Enum):
    INITIATOR_IDLE = "initiator idle"
    RESPONDER_IDLE = "responder idle"
    AWAIT_RESPONSE = "awaiting response"
    AWAIT_FINISH = "awaiting finish"
    ESTABLISHED = "established"
    CLOSED = "closed"
    FAILED = "failed"


class SessionInput(enum.Enum):
    START = "start"  # initiator: send preamble and handshake message 1
    HELLO = "hello"  # responder: received preamble and message 1, sent message 2
    RESPONSE = "response"  # initiator: received message 2, sent message 3
    FINISH = "finish"  # responder: received message 3
    SEND = "send"  # the application sends a record
    RECORD = "record"  # a record arrived
    CLOSE_SENT = "close sent"
    CLOSE_RECEIVED = "close received"
    ERROR = "error"


_S, _I = SessionState, SessionInput

TRANSITIONS: Final[dict[tuple[SessionState, SessionInput], SessionState]] = {
    (_S.INITIATOR_IDLE, _I.START): _S.AWAIT_RESPONSE,
    (_S.RESPONDER_IDLE, _I.HELLO): _S.AWAIT_FINISH,
    (_S.AWAIT_RESPONSE, _I.RESPONSE): _S.ESTABLISHED,
    (_S.AWAIT_FINISH, _I.FINISH): _S.ESTABLISHED,
    (_S.ESTABLISHED, _I.SEND): _S.ESTABLISHED,
    (_S.ESTABLISHED, _I.RECORD): _S.ESTABLISHED,
    (_S.ESTABLISHED, _I.CLOSE_SENT): _S.CLOSED,
    (_S.ESTABLISHED, _I.CLOSE_RECEIVED): _S.CLOSED,
    **{
        (state, _I.ERROR): _S.FAILED
        for state in SessionState
        if state not in (_S.CLOSED, _S.FAILED)
    },
}


class PeerDecision(enum.Enum):
    """The application's verdict on an authenticated peer."""

    ACCEPT = "accept"
    REFUSE = "refuse"


@dataclass(frozen=True, slots=True)
class HandshakeComplete:
    peer: OnionAddress
    handshake_hash: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class MessageReceived:
    message: Message


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed the session with an authenticated Close."""

    code: int
    reason: str


Event = HandshakeComplete | MessageReceived | ConnectionClosed


@dataclass(frozen=True, slots=True)
class HandshakeRandomness:
    """Injected randomness, for test vectors only."""

    ephemeral: KeyPair | None = None
    kem_seed: bytes | None = None
    encapsulate: Encapsulator | None = None


def prologue(address: OnionAddress, version: int = PROTOCOL_VERSION) -> bytes:
    service_id = address.service_id.encode("ascii")
    return b"onionpost" + _U16.pack(version) + bytes([len(service_id)]) + service_id


def _pad_bucket(record_len: int) -> int:
    need = 2 + record_len + NOISE_TAG_LEN
    for bucket in PADDING_BUCKETS:
        if need <= bucket:
            return bucket
    raise LocalProtocolError("record larger than the largest frame")


class _Direction:
    """One direction's CipherState with its rekey counters (spec.md §Rekey)."""

    __slots__ = ("bytes", "cipher", "messages")

    def __init__(self, cipher: CipherState) -> None:
        self.cipher = cipher
        self.messages = 0
        self.bytes = 0

    def count(self, size: int) -> None:
        self.messages += 1
        self.bytes += size
        if self.messages >= REKEY_AFTER_MESSAGES or self.bytes >= REKEY_AFTER_BYTES:
            self.cipher.rekey()
            self.messages = 0
            self.bytes = 0


class Session:
    """One end of an onionpost session. See the module docstring."""

    def __init__(
        self,
        *,
        initiator: bool,
        identity: Identity,
        static: StaticKey,
        now: int,
        peer: OnionAddress | None = None,
        decide: Callable[[OnionAddress], PeerDecision] | None = None,
        protocol: str = PROTOCOL_NAME,
        randomness: HandshakeRandomness | None = None,
    ) -> None:
        if initiator and peer is None:
            raise LocalProtocolError("an initiator needs the address it dials")
        if not initiator and decide is None:
            raise LocalProtocolError("a responder needs a decide(peer) callback")
        self._initiator = initiator
        self._identity = identity
        self._static = static
        self._now = now
        self._peer = peer if initiator else None
        self._decide = decide
        self._state = _S.INITIATOR_IDLE if initiator else _S.RESPONDER_IDLE
        rnd = randomness or HandshakeRandomness()
        address = peer if initiator and peer is not None else identity.address
        self._handshake: HandshakeState | None = HandshakeState(
            NoiseProtocol.from_name(protocol),
            initiator=initiator,
            prologue=prologue(address),
            static=static.keypair,
            ephemeral=rnd.ephemeral,
            kem_seed=rnd.kem_seed,
            encapsulate=rnd.encapsulate,
        )
        self._send: _Direction | None = None
        self._recv: _Direction | None = None
        self._in = bytearray()
        self._out = bytearray()
        self._events: deque[Event] = deque()
        self._records_received = 0
        # False: the peer's Pings go unanswered (dropped, as our own records
        # never go): a session the application keeps silent (taken for one
        # record alone) tells the peer nothing, not even that it is read.
        self.answer_pings = True

    def __repr__(self) -> str:
        role = "initiator" if self._initiator else "responder"
        return f"Session({role}, {self._state.value}, peer={self._peer})"

    # -- state ---------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def records_received(self) -> int:
        """Transport records decrypted so far, of every type: those the session
        answers or ignores itself (Ping, unknown extensions) count too, so the
        application can rate-limit the peer on all of its work."""
        return self._records_received

    @property
    def peer(self) -> OnionAddress | None:
        """The peer's verified address: for a responder, known once established."""
        return self._peer if self._state is not _S.RESPONDER_IDLE else None

    def _transition(self, event: SessionInput) -> None:
        new = TRANSITIONS.get((self._state, event))
        if new is None:
            raise LocalProtocolError(
                f"{event.value} is not allowed in state {self._state.value}", state=self._state
            )
        self._state = new

    def _fail(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        exc.state = self._state
        if self._state not in (_S.CLOSED, _S.FAILED):
            self._state = _S.FAILED
        self._handshake = None
        self._in.clear()
        return exc

    # -- output --------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Bytes queued for the peer; the caller writes all of them, in order."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def _frame(self, message: bytes) -> None:
        self._out += _U16.pack(len(message))
        self._out += message

    def start(self) -> None:
        """Initiator: queue the preamble and the first handshake message."""
        if not self._initiator or self._handshake is None:
            raise LocalProtocolError("only a new initiator starts", state=self._state)
        self._transition(_I.START)
        self._out += _PREAMBLE.pack(MAGIC, PROTOCOL_VERSION)
        self._frame(self._handshake.write_message(b""))

    def send(self, message: Message | Encoded[Message]) -> None:
        """Queue one record, padded and encrypted (an :class:`Encoded` one as
        its bytes, not encoded again)."""
        self._transition(_I.SEND)
        self._send_record(message)

    def close(self, code: CloseCode = CloseCode.NORMAL, reason: str = "") -> None:
        """Queue an authenticated Close; nothing may be sent after it."""
        if self._state is not _S.ESTABLISHED:
            raise LocalProtocolError("close needs an established session", state=self._state)
        self._send_record(messages.Close(int(code), reason))
        self._transition(_I.CLOSE_SENT)

    def _send_record(self, message: Message | Encoded[Message]) -> None:
        direction = self._send
        if direction is None:
            raise LocalProtocolError("no transport keys", state=self._state)
        record = message.data if isinstance(message, Encoded) else messages.encode(message)
        bucket = _pad_bucket(len(record))
        plaintext = _U16.pack(len(record)) + record
        plaintext += bytes(bucket - NOISE_TAG_LEN - len(plaintext))
        ciphertext = direction.cipher.encrypt_with_ad(b"", plaintext)
        self._frame(ciphertext)
        direction.count(len(ciphertext))

    # -- input ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; process them with :meth:`next_event`."""
        if self._state in (_S.CLOSED, _S.FAILED):
            return
        if len(self._in) + len(data) > MAX_RECEIVE_BUFFER:
            raise LocalProtocolError("receive buffer full: call next_event() first")
        self._in += data

    def next_event(self) -> Event | None:
        """The next event, or None when more bytes are needed.

        Raises :class:`RemoteProtocolError` (with ``close_code``) when the peer
        broke the protocol; the session is then FAILED, and any Close record
        worth sending is already queued in :meth:`data_to_send`.
        """
        while not self._events:
            if self._state in (_S.CLOSED, _S.FAILED):
                return None
            try:
                progressed = self._step()
            except RemoteProtocolError as exc:
                raise self._fail(exc) from None
            except NonceExhaustedError as exc:
                raise self._fail(RemoteProtocolError("nonce exhausted")) from exc
            if not progressed:
                return None
        return self._events.popleft()

    def _step(self) -> bool:
        state = self._state
        if state is _S.INITIATOR_IDLE:
            if self._in:
                raise RemoteProtocolError("the peer spoke before the handshake started")
            return False
        if state is _S.RESPONDER_IDLE:
            return self._read_hello()
        if state is _S.AWAIT_RESPONSE:
            return self._read_response()
        if state is _S.AWAIT_FINISH:
            low, high = self._handshake_bounds()
            frame = self._take_frame(lambda n: low <= n <= high)
            if frame is not None:
                self._read_finish(frame)
        else:
            frame = self._take_frame(PADDING_BUCKETS.__contains__)
            if frame is not None:
                self._read_record(frame)
        return frame is not None

    def _take_frame(self, allowed: Callable[[int], bool], *, offset: int = 0) -> bytes | None:
        """The next whole frame after ``offset`` bytes, or None if incomplete.

        A length that ``allowed`` refuses is an error at once, before the
        frame's bytes arrive.
        """
        buf = self._in
        if len(buf) < offset + FRAME_HEADER_LEN:
            return None
        (length,) = _U16.unpack_from(buf, offset)
        if not allowed(length):
            raise FramingError(f"frame of {length} bytes not allowed here")
        end = offset + FRAME_HEADER_LEN + length
        if len(buf) < end:
            return None
        frame = bytes(buf[offset + FRAME_HEADER_LEN : end])
        del buf[:end]
        return frame

    def _check_preamble(self) -> int | None:
        """The peer's version, once the preamble has arrived (it stays buffered)."""
        if len(self._in) < PREAMBLE_LEN:
            return None
        magic, version = _PREAMBLE.unpack_from(self._in)
        if magic != MAGIC:
            raise RemoteProtocolError("not an onionpost stream")
        return int(version)

    def _handshake_bounds(self) -> tuple[int, int]:
        hs = self._handshake
        assert hs is not None
        empty = 65535 - hs.max_payload()  # the message with an empty payload
        return empty, empty + MAX_HANDSHAKE_PAYLOAD

    def _read_hello(self) -> bool:
        version = self._check_preamble()
        if version is None:
            return False
        if version not in SUPPORTED_VERSIONS:
            # Answer with the version we speak, so the peer can report it, then fail.
            self._out += _PREAMBLE.pack(MAGIC, max(SUPPORTED_VERSIONS))
            raise VersionError(f"peer offered version {version}")
        hs = self._handshake
        assert hs is not None
        # The first message has an empty payload (anything there would be in
        # the clear), so its length is exact.
        empty = 65535 - hs.max_payload()
        frame = self._take_frame(empty.__eq__, offset=PREAMBLE_LEN)
        if frame is None:
            return False
        if hs.read_message(frame):
            raise RemoteProtocolError("the first handshake message must have no payload")
        # Write message 2 before queueing anything: if it fails (a bad key in
        # message 1), nothing at all goes back to the peer.
        reply = hs.write_message(self._handshake_payload())
        self._out += _PREAMBLE.pack(MAGIC, PROTOCOL_VERSION)
        self._frame(reply)
        self._transition(_I.HELLO)
        return True

    def _read_response(self) -> bool:
        version = self._check_preamble()
        if version is None:
            return False
        if version != PROTOCOL_VERSION:
            raise VersionError(f"peer speaks version {version}, we speak {PROTOCOL_VERSION}")
        low, high = self._handshake_bounds()
        frame = self._take_frame(lambda n: low <= n <= high, offset=PREAMBLE_LEN)
        if frame is None:
            return False
        hs = self._handshake
        assert hs is not None
        assert self._peer is not None
        identity_key = self._verify_payload(hs.read_message(frame), hs.remote_static)
        # The responder must own the very address we dialed.
        if not constant_time_equal(identity_key, self._peer.public_key):
            raise AuthenticationError(_FAILED)
        self._frame(hs.write_message(self._handshake_payload()))
        self._establish(hs)
        self._transition(_I.RESPONSE)
        return True

    def _read_finish(self, frame: bytes) -> None:
        hs = self._handshake
        assert hs is not None
        assert self._decide is not None
        identity_key = self._verify_payload(hs.read_message(frame), hs.remote_static)
        # A stranger with a valid certificate is refused exactly like a bad
        # certificate: the same error, nothing sent, the stream dropped.
        candidate = OnionAddress(identity_key)
        if self._decide(candidate) is not PeerDecision.ACCEPT:
            raise AuthenticationError(_FAILED)
        self._peer = candidate
        self._establish(hs)
        self._transition(_I.FINISH)

    def _handshake_payload(self) -> bytes:
        return _msgpack.pack(
            [
                _HANDSHAKE_PAYLOAD_VERSION,
                self._identity.public_key,
                self._static.certificate.to_bytes(),
            ],
        )

    def _verify_payload(self, payload: bytes, remote_static: bytes | None) -> bytes:
        """Check ``[1, identity, certificate]``; return the identity key."""
        try:
            obj: Any = _msgpack.unpack(payload, max_len=MAX_HANDSHAKE_PAYLOAD, max_items=16)
        except _msgpack.NotMsgpack:
            raise AuthenticationError(_FAILED) from None
        well_formed = (
            type(obj) is tuple
            and len(obj) >= 3
            and type(obj[0]) is int
            and obj[0] == _HANDSHAKE_PAYLOAD_VERSION
            and type(obj[1]) is bytes
            and len(obj[1]) == 32
            and type(obj[2]) is bytes
            and len(obj[2]) == CERT_LEN
            and remote_static is not None
        )
        if not well_formed:
            raise AuthenticationError(_FAILED)
        assert remote_static is not None
        StaticKeyCertificate.verify(
            obj[2], identity_key=obj[1], static_key=remote_static, now=self._now
        )
        try:
            OnionAddress(obj[1])
        except OnionpostError:
            raise AuthenticationError(_FAILED) from None
        identity: bytes = obj[1]
        return identity

    def _establish(self, hs: HandshakeState) -> None:
        result = hs.result()
        self._send = _Direction(result.send)
        self._recv = _Direction(result.receive)
        self._handshake = None
        assert self._peer is not None
        self._events.append(HandshakeComplete(self._peer, result.handshake_hash))

    def _read_record(self, frame: bytes) -> None:
        direction = self._recv
        assert direction is not None
        try:
            plaintext = direction.cipher.decrypt_with_ad(b"", frame)
        except DecryptError:
            raise AuthenticationError("authentication failed") from None
        direction.count(len(frame))
        self._records_received += 1
        (length,) = _U16.unpack_from(plaintext)
        if length > len(plaintext) - 2 or length > MAX_RECORD_SIZE:
            raise self._bad_record(FramingError("record length past the end of the frame"))
        if any(plaintext[2 + length :]):
            raise self._bad_record(FramingError("non-zero padding"))
        try:
            record = messages.decode(plaintext[2 : 2 + length])
        except MessageDecodeError as exc:
            raise self._bad_record(exc) from None
        if isinstance(record, messages.UnknownExtension):
            return
        if isinstance(record, messages.Close):
            self._transition(_I.CLOSE_RECEIVED)
            self._events.append(ConnectionClosed(record.code, record.reason))
            return
        self._transition(_I.RECORD)
        if isinstance(record, messages.Ping):
            if not self.answer_pings:
                return
            # Our Pongs wait in _out only while the peer is not reading our
            # stream; a peer that keeps pinging then would grow it without end.
            if len(self._out) >= _MAX_QUEUED_PONG_BYTES:
                raise self._bad_record(
                    RemoteProtocolError(
                        "too many Pings left unanswered", close_code=CloseCode.RATE_LIMITED
                    )
                )
            self._send_record(messages.Pong(record.nonce))
            return
        self._events.append(MessageReceived(record))

    def _bad_record(self, exc: RemoteProtocolError) -> RemoteProtocolError:
        # The channel is still authentic: tell the peer why we close.
        if self._state is _S.ESTABLISHED and self._send is not None:
            with contextlib.suppress(OnionpostError):
                self._send_record(messages.Close(int(exc.close_code), ""))
        return exc
