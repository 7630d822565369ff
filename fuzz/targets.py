"""The fuzz targets: each takes one input and checks the onion-facing contract.

Theory of operation
-------------------
A peer that reaches our onion service controls every byte a Session reads.
Whatever it sends, the protocol core may answer only with a
:class:`~onionpost.errors.RemoteProtocolError` (and the session is then
FAILED and reads nothing more); the record decoder only with
:class:`~onionpost.errors.MessageDecodeError`; the strict msgpack layer only
with its ``NotMsgpack``, which each caller translates. Everything else that
leaves a target is a crash: an ``IndexError`` or ``struct.error``, a
:class:`~onionpost.errors.LocalProtocolError` (we never misuse the API here:
reads are at most :data:`READ_SIZE` bytes after ``next_event()`` returned
None, as the transport does, so a "receive buffer full" can only be the
peer's doing), or an ``AssertionError`` from the checks below.

The two endpoints are those of ``protocol-spec/vectors/session-v1.json``:
their keys, clock, ephemeral keys and the responder's recorded ML-KEM
encapsulation come from that file, so every handshake byte is the same in
every process and a seed holding a whole transcript replays.

Targets and the layout of their inputs (byte 0 is a selector where one is
named; the rest is the data):

``records``
    One record for :func:`onionpost.proto.messages.decode`. Whatever it
    accepts must encode again and decode to itself.
``msgpack``
    Byte 0, low bit: the bounds of a record (0) or of a handshake payload
    (1); the rest for ``_msgpack.unpack``, which must return no list, no
    non-empty map, no extension value with data (spec.md §3.6) and nothing
    past its bounds.
``frames``
    Byte 0 seeds how the rest is cut into reads (0: whole reads); the rest
    goes to an established responder. Random bytes stop at the frame length
    or the AEAD; seeds of real frames replay up to the record decoder.
``session``
    Byte 0, bit 0: start both ends 2 messages short of a rekey; bit 1: the
    peer never reads, so what the session queues (Pongs) stays. Then items
    ``u16 header || body``: a header below 0x8000 makes the body (that many
    bytes) the plaintext of one authentic frame, zero-filled to its bucket
    and sealed with the peer's real send key; 0x8000 and above sends the
    body (header - 0x8000 bytes) as raw bytes. This is the target that
    reaches the record decoder past the AEAD with anything the peer chooses.
``handshake``
    Byte 0, top bit: a fresh responder (0) or an initiator awaiting message
    2 (1); low 7 bits seed the reads; the rest is what the peer sends.
``handshake_payload``
    Byte 0, low bit: the rest is the payload of an authentic message 3 to a
    responder (0) or of an authentic message 2 to an initiator (1).
"""

from __future__ import annotations

import copy
import json
import random
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from msgpack import ExtType

from onionpost.errors import MessageDecodeError, RemoteProtocolError
from onionpost.limits import (
    FRAME_HEADER_LEN,
    MAX_ACK_IDS,
    MAX_HANDSHAKE_PAYLOAD,
    MAX_RECORD_SIZE,
    NOISE_MAX_MESSAGE,
    NOISE_TAG_LEN,
    PADDING_BUCKETS,
    REKEY_AFTER_MESSAGES,
)
from onionpost.proto import _msgpack, messages
from onionpost.proto._crypto import KemKeyPair, KeyPair, mlkem768_encapsulate
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity, StaticKey, StaticKeyCertificate
from onionpost.proto.noise import HandshakeState
from onionpost.proto.session import (
    MAGIC,
    PREAMBLE_LEN,
    PROTOCOL_NAME,
    PROTOCOL_VERSION,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    HandshakeRandomness,
    MessageReceived,
    PeerDecision,
    Session,
    SessionState,
    prologue,
)

__all__ = [
    "INITIATOR",
    "READ_SIZE",
    "RESPONDER",
    "TARGETS",
    "Target",
    "established",
    "frame",
    "new_initiator",
    "new_responder",
    "seal",
]

ROOT: Final = Path(__file__).resolve().parents[1]
VECTOR_FILE: Final = ROOT / "protocol-spec" / "vectors" / "session-v1.json"
# The most a read hands the session: one whole frame, as the transport reads
# (transport._channel.READ_SIZE). After next_event() returned None the
# session holds less than a frame, so this never overflows its buffer.
READ_SIZE: Final = FRAME_HEADER_LEN + NOISE_MAX_MESSAGE
# The bounds Session._verify_payload gives msgpack for a handshake payload.
HANDSHAKE_PAYLOAD_ITEMS: Final = 16
_U16: Final = struct.Struct(">H")
PREAMBLE: Final = MAGIC + _U16.pack(PROTOCOL_VERSION)

# -- The two endpoints of session-v1.json ---------------------------------------------

_INPUTS: Final = json.loads(VECTOR_FILE.read_text())["vectors"][0]["inputs"]


def _x(key: str) -> bytes:
    return bytes.fromhex(_INPUTS[key])


NOW: Final[int] = _INPUTS["now"]
INITIATOR: Final = Identity(_x("initiator_identity_seed"))
RESPONDER: Final = Identity(_x("responder_identity_seed"))


def _static(role: str, identity: Identity) -> StaticKey:
    keypair = KeyPair.from_private(_x(f"{role}_static"))
    certificate = StaticKeyCertificate.verify(
        _x(f"{role}_certificate"),
        identity_key=identity.public_key,
        static_key=keypair.public,
        now=NOW,
    )
    return StaticKey(keypair, certificate)


INITIATOR_STATIC: Final = _static("initiator", INITIATOR)
RESPONDER_STATIC: Final = _static("responder", RESPONDER)
INITIATOR_EPHEMERAL: Final = KeyPair.from_private(_x("initiator_ephemeral"))
RESPONDER_EPHEMERAL: Final = KeyPair.from_private(_x("responder_ephemeral"))
KEM_SEED: Final = _x("initiator_kem_seed")
_RECORDED: Final = (_x("responder_kem_ciphertext"), _x("responder_kem_shared_secret"))
_KEM_PUBLIC: Final = KemKeyPair(KEM_SEED).public


def _encapsulate(public_key: bytes) -> tuple[bytes, bytes]:
    # The recorded encapsulation to the vector initiator's KEM key; any other
    # key (the fuzzer's) goes through the real one, with its input checks.
    if public_key == _KEM_PUBLIC:
        return _RECORDED
    return mlkem768_encapsulate(public_key)


def _decide(peer: OnionAddress) -> PeerDecision:
    return PeerDecision.ACCEPT if peer == INITIATOR.address else PeerDecision.REFUSE


def new_initiator() -> Session:
    """The vector's initiator, dialing the responder, before start()."""
    return Session(
        initiator=True,
        identity=INITIATOR,
        static=INITIATOR_STATIC,
        now=NOW,
        peer=RESPONDER.address,
        randomness=HandshakeRandomness(ephemeral=INITIATOR_EPHEMERAL, kem_seed=KEM_SEED),
    )


def new_responder() -> Session:
    """The vector's responder; it accepts the vector's initiator and nobody else."""
    return Session(
        initiator=False,
        identity=RESPONDER,
        static=RESPONDER_STATIC,
        now=NOW,
        decide=_decide,
        randomness=HandshakeRandomness(ephemeral=RESPONDER_EPHEMERAL, encapsulate=_encapsulate),
    )


def frame(message: bytes) -> bytes:
    return _U16.pack(len(message)) + message


def _handshake() -> tuple[Session, Session]:
    initiator, responder = new_initiator(), new_responder()
    initiator.start()
    responder.receive_data(initiator.data_to_send())
    assert responder.next_event() is None
    initiator.receive_data(responder.data_to_send())
    assert isinstance(initiator.next_event(), HandshakeComplete)
    responder.receive_data(initiator.data_to_send())
    assert isinstance(responder.next_event(), HandshakeComplete)
    return initiator, responder


# Made once; each input gets a deep copy (tens of microseconds against a
# millisecond for a handshake). Their transport ciphers have not been used, so
# the copies hold keys and nonces only; the long-lived key objects are shared.
_ESTABLISHED: Final = _handshake()
_SHARED: Final = (INITIATOR, RESPONDER, INITIATOR_STATIC, RESPONDER_STATIC, _decide)


def established() -> tuple[Session, Session]:
    """A fresh (initiator, responder) pair, just established, both at nonce 0."""
    memo = {id(obj): obj for obj in _SHARED}
    return copy.deepcopy(_ESTABLISHED, memo)


def seal(peer: Session, plaintext: bytes) -> bytes:
    """One authentic frame of ``plaintext``, zero-filled to its bucket, from ``peer``.

    Uses the peer's send CipherState directly (as tests/proto/_sessions.forge
    does), which only a peer holding the key can do; the peer counts it for
    rekeying like any frame it sends.
    """
    bucket = next(b for b in PADDING_BUCKETS if len(plaintext) + NOISE_TAG_LEN <= b)
    direction = peer._send
    assert direction is not None
    ciphertext = direction.cipher.encrypt_with_ad(
        b"", plaintext.ljust(bucket - NOISE_TAG_LEN, b"\x00")
    )
    direction.count(len(ciphertext))
    return frame(ciphertext)


def _near_rekey(*sessions: Session) -> None:
    # As if both had exchanged REKEY_AFTER_MESSAGES - 2 frames each way: the
    # third frame either way now rekeys (spec.md §Rekey).
    for session in sessions:
        for direction in (session._send, session._recv):
            assert direction is not None
            direction.messages = REKEY_AFTER_MESSAGES - 2


# -- The contract --------------------------------------------------------------------


def _chunks(seed: int, data: bytes) -> Iterator[bytes]:
    """``data`` cut into reads of at most READ_SIZE bytes, at points drawn from ``seed``."""
    rng = random.Random(seed) if seed else None
    pos = 0
    while pos < len(data):
        size = READ_SIZE if rng is None else min(1 + rng.getrandbits(rng.randint(0, 16)), READ_SIZE)
        yield data[pos : pos + size]
        pos += size


def _feed(
    session: Session,
    reads: Iterable[bytes],
    peer: OnionAddress,
    *,
    handshake: bool,
    write: bool = True,
) -> None:
    """Feed ``reads`` as the transport would and check what comes out.

    ``handshake``: the session is still in its handshake, so a completion, if
    any, must come first and name ``peer``; else it is already established.
    ``write``: take what the session queues after each read, as the
    transport writes it; if not, it piles up as against a peer that does not
    read.
    """
    events: list[Event] = []
    try:
        for data in reads:
            session.receive_data(data)
            while (event := session.next_event()) is not None:
                events.append(event)
            if write:
                session.data_to_send()
    except RemoteProtocolError:
        # The documented failure: FAILED, and nothing more is read.
        assert session.state is SessionState.FAILED, session.state
        session.receive_data(PREAMBLE)
        assert session.next_event() is None
    for index, event in enumerate(events):
        if isinstance(event, HandshakeComplete):
            assert handshake, "a second handshake completion"
            assert index == 0, "a handshake completion after other events"
            assert event.peer == peer, "a handshake completed with someone else"
        elif isinstance(event, MessageReceived):
            assert not handshake or index > 0, "a record before the handshake completed"
            assert not isinstance(event.message, messages.Ping), "a Ping was delivered"
        else:
            assert isinstance(event, ConnectionClosed)
            assert index == len(events) - 1, "events after the peer's Close"
            assert session.state is SessionState.CLOSED, session.state


# -- Targets -------------------------------------------------------------------------


def records(data: bytes) -> None:
    try:
        record = messages.decode(data)
    except MessageDecodeError:
        return
    if isinstance(record, messages.UnknownExtension):
        assert record.tag in messages.EXTENSION_TAGS
        return
    # What we accept we can send back: encode refuses nothing that decode let in.
    again = messages.decode(messages.encode(record))
    assert again == record, f"{record!r} re-decoded as {again!r}"


_MSGPACK_BOUNDS: Final = (
    (MAX_RECORD_SIZE, MAX_ACK_IDS),  # messages.decode
    (MAX_HANDSHAKE_PAYLOAD, HANDSHAKE_PAYLOAD_ITEMS),  # Session._verify_payload
)
_SCALARS: Final = (int, float, bool, type(None))


def msgpack(data: bytes) -> None:
    if not data:
        return
    max_len, max_items = _MSGPACK_BOUNDS[data[0] & 1]
    try:
        value = _msgpack.unpack(data[1:], max_len=max_len, max_items=max_items)
    except _msgpack.NotMsgpack:
        return
    stack = [value]  # msgpack nests up to its own stack limit: no recursion here
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is tuple:
            assert len(item) <= max_items, f"an array of {len(item)} items"
            stack.extend(item)
        elif kind is str or kind is bytes:
            assert len(item) <= max_len, f"a {kind.__name__} of {len(item)}"
        elif kind is dict or kind is ExtType:
            # spec.md §3.6: no non-empty map, no extension value with data.
            assert not (item.data if kind is ExtType else item), f"a {kind.__name__} with data"
        else:
            assert kind in _SCALARS, f"unpack returned a {kind.__name__}"


def frames(data: bytes) -> None:
    if not data:
        return
    memo = {id(obj): obj for obj in _SHARED}
    responder = copy.deepcopy(_ESTABLISHED[1], memo)
    _feed(responder, _chunks(data[0], data[1:]), INITIATOR.address, handshake=False)


def session(data: bytes) -> None:
    if not data:
        return
    peer, responder = established()
    if data[0] & 1:
        _near_rekey(peer, responder)
    reads = []
    pos = 1
    while pos < len(data):
        (header,) = _U16.unpack(data[pos : pos + 2].ljust(2, b"\x00"))
        body = data[pos + 2 : pos + 2 + (header & 0x7FFF)]
        pos += 2 + len(body)
        reads.append(body if header & 0x8000 else seal(peer, body))
    _feed(responder, reads, INITIATOR.address, handshake=False, write=not data[0] & 2)


def handshake(data: bytes) -> None:
    if not data:
        return
    if data[0] & 0x80:
        target = new_initiator()
        target.start()
        target.data_to_send()
        peer = RESPONDER.address
    else:
        target, peer = new_responder(), INITIATOR.address
    _feed(target, _chunks(data[0] & 0x7F, data[1:]), peer, handshake=True)


def handshake_payload(data: bytes) -> None:
    if not data:
        return
    if data[0] & 1:
        # An authentic message 2 from the responder's keys, carrying the input.
        target, peer = new_initiator(), RESPONDER.address
        target.start()
        noise = HandshakeState(
            PROTOCOL_NAME,
            initiator=False,
            prologue=prologue(RESPONDER.address),
            static=RESPONDER_STATIC.keypair,
            ephemeral=RESPONDER_EPHEMERAL,
            encapsulate=_encapsulate,
        )
        noise.read_message(target.data_to_send()[PREAMBLE_LEN + FRAME_HEADER_LEN :])
        wire = PREAMBLE + frame(noise.write_message(data[1 : 1 + noise.max_payload()]))
    else:
        # An authentic message 3 from the initiator's keys, carrying the input.
        target, peer = new_responder(), INITIATOR.address
        noise = HandshakeState(
            PROTOCOL_NAME,
            initiator=True,
            prologue=prologue(RESPONDER.address),
            static=INITIATOR_STATIC.keypair,
            ephemeral=INITIATOR_EPHEMERAL,
            kem_seed=KEM_SEED,
        )
        target.receive_data(PREAMBLE + frame(noise.write_message()))
        assert target.next_event() is None
        noise.read_message(target.data_to_send()[PREAMBLE_LEN + FRAME_HEADER_LEN :])
        wire = frame(noise.write_message(data[1 : 1 + noise.max_payload()]))
    _feed(target, [wire], peer, handshake=True)


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    check: Callable[[bytes], None]
    # libFuzzer's -max_len: room for what the target can use, little more.
    max_len: int


TARGETS: Final[dict[str, Target]] = {
    t.name: t
    for t in (
        Target("records", records, MAX_RECORD_SIZE + 64),
        Target("msgpack", msgpack, 1 + MAX_RECORD_SIZE + 64),
        Target("frames", frames, 1 + 2 * READ_SIZE),
        Target("session", session, 1 + 2 * (2 + 0x7FFF)),
        Target("handshake", handshake, 16_384),
        Target("handshake_payload", handshake_payload, 1 + 2 * MAX_HANDSHAKE_PAYLOAD),
    )
}
