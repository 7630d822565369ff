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
``group_ops``
    One group operation (groups.md §3) for ``Operation.decode``, then, if it
    decodes, for the log of ``protocol-spec/vectors/groups-v1.json``: only
    :class:`~onionpost.errors.GroupError` may come out; what decodes encodes
    back to the same bytes, and what the log takes is in it, its head and
    membership those of a replay of the whole log.
``mailbox``
    The offline mailbox's decoders (mailbox.md), with the owner, sender and
    prekeys of ``protocol-spec/vectors/mailbox-v1.json``, at a time when both
    vector prekeys verify and both vector envelopes open. Byte 0, modulo
    the number of modes (:class:`MailboxMode`), sends the rest to:
    0 ``EnvelopeHeader.parse``, then ``open_envelope`` with the owner's
    private half the header's key id names (the one-time one if none);
    1 ``SignedPrekey.parse``, then ``verify``; 2 ``PrekeySecret.from_bytes``;
    3 ``MailboxAnnouncement.parse`` from the owner; 4 ``SetupCode.parse`` of
    the bytes as UTF-8 (undecodable bytes as surrogates); 5 the plaintext
    of an envelope sealed authentically by the vector's sender
    (:func:`seal_payload`), which is opened: the one mode that reaches the
    payload decoder and the certificate check past the AEAD. Besides
    RemoteProtocolError, the two readers of local text and state
    (``from_bytes``, ``SetupCode.parse``) may raise the ConfigError they
    document. Opening, verifying a prekey and verifying an announcement fail
    each with one AuthenticationError, one text and no cause, whatever went
    wrong; whatever is accepted encodes back to the same bytes (an opened
    envelope: its payload, from what ``Opened`` reports); whatever verifies
    is byte for byte something the owner signed; an opened envelope names
    the vector's sender.
``labels``
    A handling label as a peer's record carries it (spec.md §5.10), the
    bytes as UTF-8 (undecodable bytes as surrogates), parsed with TLP, CUI
    and one agency scheme: only :class:`~onionpost.errors.LabelError`; what
    parses is printable ASCII within MAX_LABEL, and its canonical form parses
    to the same label.
"""

from __future__ import annotations

import copy
import enum
import json
import random
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from msgpack import ExtType

from onionpost.errors import (
    AuthenticationError,
    ConfigError,
    GroupError,
    LabelError,
    MessageDecodeError,
    RemoteProtocolError,
    TrustError,
)
from onionpost.limits import (
    FRAME_HEADER_LEN,
    MAX_ACK_IDS,
    MAX_GROUP_OP_BYTES,
    MAX_HANDSHAKE_PAYLOAD,
    MAX_LABEL,
    MAX_RECORD_SIZE,
    NOISE_MAX_MESSAGE,
    NOISE_TAG_LEN,
    PADDING_BUCKETS,
    REKEY_AFTER_MESSAGES,
)
from onionpost.proto import _msgpack, envelope, groups, messages, trust
from onionpost.proto import labels as label_rules
from onionpost.proto._crypto import KemKeyPair, KeyPair, mlkem768_encapsulate
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import (
    CERT_CLOCK_SKEW,
    Identity,
    StaticKey,
    StaticKeyCertificate,
)
from onionpost.proto.noise import HandshakeState, NoiseProtocol
from onionpost.proto.pairing import MailboxAnnouncement, SetupCode
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
from onionpost.proto.trust_session import RevocationBundle, meet_gossip

__all__ = [
    "GROUPS_VECTOR",
    "INITIATOR",
    "MAILBOX_NOW_MS",
    "MAILBOX_OWNER",
    "MAILBOX_VECTOR",
    "PREKEY_NOW",
    "READ_SIZE",
    "RESPONDER",
    "TARGETS",
    "TRUST_CASE",
    "TRUST_VECTOR_FILE",
    "MailboxMode",
    "Target",
    "established",
    "frame",
    "mailbox_vector",
    "new_initiator",
    "new_responder",
    "seal",
    "seal_payload",
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


# -- The mailbox objects of mailbox-v1.json ---------------------------------------------

MAILBOX_VECTOR_FILE: Final = ROOT / "protocol-spec" / "vectors" / "mailbox-v1.json"
#: The vector file's one entry, for the seeds (fuzz.seeds) as for the checks here.
MAILBOX_VECTOR: Final[dict[str, Any]] = json.loads(MAILBOX_VECTOR_FILE.read_text())["vectors"][0]


def mailbox_vector(*path: str | int) -> bytes:
    """A hex value of :data:`MAILBOX_VECTOR` by its path, as bytes."""
    value: Any = MAILBOX_VECTOR
    for key in path:
        value = value[key]
    return bytes.fromhex(value)


MAILBOX_OWNER: Final = Identity(mailbox_vector("owner_identity_seed")).address
_SENDER: Final = Identity(mailbox_vector("sender_identity_seed"))
_SENDER_STATIC: Final = KeyPair.from_private(mailbox_vector("sender_static"))
_SENDER_CERT: Final = mailbox_vector("sender_certificate")
# The owner's two prekeys (one-time, last resort), their private halves by key id.
_PREKEYS: Final = tuple(
    envelope.PrekeySecret.from_bytes(mailbox_vector("prekeys", i, "secret_bytes")) for i in (0, 1)
)
_ONE_TIME: Final = _PREKEYS[0]
_PREKEY_SECRETS: Final = {secret.public.key_id: secret for secret in _PREKEYS}
#: When both vector prekeys verify (seconds) and both vector envelopes open (ms).
PREKEY_NOW: Final[int] = MAILBOX_VECTOR["prekeys"][0]["now"]
MAILBOX_NOW_MS: Final[int] = MAILBOX_VECTOR["envelopes"][0]["open_now_ms"]
# What the owner signed, byte for byte: nothing else may verify.
_SIGNED: Final = frozenset(
    [mailbox_vector("prekeys", i, "bytes") for i in (0, 1)]
    + [mailbox_vector("announcements", i, "bytes") for i in (0, 1)]
)
# The first vector envelope's clear part and randomness: seal_payload() seals
# any payload as its sender would have, to the one-time prekey.
_SEALED_IDS: Final = (
    mailbox_vector("envelopes", 0, "envelope_id"),
    mailbox_vector("envelopes", 0, "key_id"),
)
_SEALED_HEADER: Final = bytes([envelope.ENVELOPE_VERSION]) + b"".join(_SEALED_IDS)
_SEALED_KEM: Final = mailbox_vector("envelopes", 0, "kem_ciphertext")
_SEALED_PROLOGUE: Final = envelope.prologue(MAILBOX_OWNER, *_SEALED_IDS, _SEALED_KEM)
_SEALED_PSK: Final = mailbox_vector("envelopes", 0, "kem_shared_secret")
_SEALED_EPHEMERAL: Final = KeyPair.from_private(mailbox_vector("envelopes", 0, "ephemeral_private"))
_ENVELOPE_PROTOCOL: Final = NoiseProtocol.from_name(envelope.PROTOCOL_NAME)
# What an envelope adds to its payload (mailbox.md §3.1: 1217 bytes).
_ENVELOPE_OVERHEAD: Final = len(mailbox_vector("envelopes", 0, "bytes")) - len(
    mailbox_vector("envelopes", 0, "payload")
)


def seal_payload(payload: bytes) -> bytes:
    """An envelope carrying ``payload`` as its plaintext, whatever it holds.

    Sealed as the first vector envelope was (its ids, ephemeral key, recorded
    ML-KEM encapsulation, sender's static key, to the one-time prekey), so
    its AEAD holds: with the vector's payload it is the vector's envelope.
    ``payload`` is cut to what one Noise message carries.
    """
    noise = HandshakeState(
        _ENVELOPE_PROTOCOL,
        initiator=True,
        prologue=_SEALED_PROLOGUE,
        static=_SENDER_STATIC,
        remote_static=_ONE_TIME.public.x25519,
        psks=[_SEALED_PSK],
        ephemeral=_SEALED_EPHEMERAL,
    )
    return _SEALED_HEADER + _SEALED_KEM + noise.write_message(payload[: noise.max_payload()])


def _refusal(attempt: Callable[[], object]) -> AuthenticationError:
    try:
        attempt()
    except AuthenticationError as exc:
        return exc
    raise AssertionError("the reference refusal was accepted")


# The one refusal of each check (mailbox.md §2.2, §3.6, §5), as a known-bad input gets it.
_OPEN_REFUSED: Final = _refusal(
    lambda: envelope.open_envelope(
        b"", recipient=MAILBOX_OWNER, secret=_ONE_TIME, now_ms=MAILBOX_NOW_MS
    )
)
_PREKEY_REFUSED: Final = _refusal(lambda: _ONE_TIME.public.verify(_SENDER.address, now=PREKEY_NOW))
_ANNOUNCEMENT_REFUSED: Final = _refusal(
    lambda: MailboxAnnouncement.parse(
        mailbox_vector("announcements", 0, "bytes"), owner=_SENDER.address
    )
)


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


class MailboxMode(enum.IntEnum):
    """What byte 0 of a ``mailbox`` input, modulo their number, sends the rest to."""

    ENVELOPE = 0
    PREKEY = 1
    PREKEY_SECRET = 2
    ANNOUNCEMENT = 3
    SETUP_CODE = 4
    PAYLOAD = 5


def _same_refusal(exc: AuthenticationError, reference: AuthenticationError) -> None:
    # Every failure looks the same: one type, one text, no cause attached.
    assert type(exc) is AuthenticationError, f"refused with a {type(exc).__name__}"
    assert exc.args == reference.args, f"refused as {exc.args!r}"
    assert exc.__cause__ is None, "a refusal that names its cause"


def _open(data: bytes, header: envelope.EnvelopeHeader | None) -> envelope.Opened | None:
    # The private half the owner would look up by the header's key id.
    secret = _PREKEY_SECRETS.get(data[1 + envelope.ID_LEN : envelope.HEADER_LEN], _ONE_TIME)
    try:
        opened = envelope.open_envelope(
            data, recipient=MAILBOX_OWNER, secret=secret, now_ms=MAILBOX_NOW_MS
        )
    except AuthenticationError as exc:
        _same_refusal(exc, _OPEN_REFUSED)
        return None
    assert header is not None, "an envelope opened whose header does not parse"
    assert (opened.envelope_id, opened.key_id) == (header.envelope_id, header.key_id)
    assert opened.key_id == secret.public.key_id
    assert opened.sender == _SENDER.address, "opened as from someone who did not seal it"
    age = MAILBOX_NOW_MS - opened.sealed_ms
    assert -CERT_CLOCK_SKEW * 1000 <= age <= envelope.MAX_ENVELOPE_AGE_MS
    assert opened.records
    assert all(type(r) is bytes for r in opened.records)
    assert len(data) - _ENVELOPE_OVERHEAD >= envelope.payload_size(opened.records)
    return opened


def _header(data: bytes) -> envelope.EnvelopeHeader | None:
    try:
        header = envelope.EnvelopeHeader.parse(data)
    except RemoteProtocolError:
        return None
    # No encoder: the fields are the bytes they were read from.
    clear = bytes([envelope.ENVELOPE_VERSION]) + header.envelope_id + header.key_id
    assert data[: envelope.HEADER_LEN] == clear
    return header


def _envelope(data: bytes) -> None:
    _open(data, _header(data))


def _payload(data: bytes) -> None:
    sealed = seal_payload(data)
    payload = data[: len(sealed) - _ENVELOPE_OVERHEAD]
    opened = _open(sealed, _header(sealed))
    if opened is None:
        return
    # What opened re-encodes, from what Opened reports, to the payload it came from.
    value = _msgpack.unpack(
        payload, max_len=envelope.MAX_ENVELOPE_PAYLOAD, max_items=envelope.MAX_ENVELOPE_PAYLOAD
    )
    fields = [1, opened.sender.public_key, _SENDER_CERT, opened.sealed_ms, list(opened.records)]
    assert _msgpack.pack([*fields, *value[5:]]) == payload, "opened is not what was sealed"


def _prekey(data: bytes) -> None:
    try:
        prekey = envelope.SignedPrekey.parse(data)
    except RemoteProtocolError:
        return
    assert prekey.to_bytes() == data, "a prekey that encodes to other bytes"
    try:
        prekey.verify(MAILBOX_OWNER, now=PREKEY_NOW)
    except AuthenticationError as exc:
        _same_refusal(exc, _PREKEY_REFUSED)
        return
    assert data in _SIGNED, "a prekey the owner did not sign verified"


def _prekey_secret(data: bytes) -> None:
    try:
        secret = envelope.PrekeySecret.from_bytes(data)
    except (ConfigError, RemoteProtocolError):
        return
    assert secret.to_bytes() == data, "a stored prekey secret that encodes to other bytes"


def _announcement(data: bytes) -> None:
    try:
        announcement = MailboxAnnouncement.parse(data, owner=MAILBOX_OWNER)
    except AuthenticationError as exc:
        _same_refusal(exc, _ANNOUNCEMENT_REFUSED)
        return
    except RemoteProtocolError:
        return
    assert announcement.to_bytes() == data, "an announcement that encodes to other bytes"
    assert data in _SIGNED, "an announcement the owner did not sign verified"


def _setup_code(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        code = SetupCode.parse(text)
    except (ConfigError, RemoteProtocolError):
        return
    # Case and surrounding white space aside, a code is its one text.
    assert code.to_text() == text.strip().lower(), "a setup code that encodes to other text"
    assert SetupCode.parse(code.to_text()) == code
    code.client_auth_public()
    code.token()


_MAILBOX_CHECKS: Final[dict[MailboxMode, Callable[[bytes], None]]] = {
    MailboxMode.ENVELOPE: _envelope,
    MailboxMode.PREKEY: _prekey,
    MailboxMode.PREKEY_SECRET: _prekey_secret,
    MailboxMode.ANNOUNCEMENT: _announcement,
    MailboxMode.SETUP_CODE: _setup_code,
    MailboxMode.PAYLOAD: _payload,
}


def mailbox(data: bytes) -> None:
    if not data:
        return
    _MAILBOX_CHECKS[MailboxMode(data[0] % len(MailboxMode))](data[1:])


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    check: Callable[[bytes], None]
    # libFuzzer's -max_len: room for what the target can use, little more.
    max_len: int


# -- agency trust (trust.md): what an endpoint presents, and anchors ---------------------

TRUST_VECTOR_FILE: Final = ROOT / "protocol-spec" / "vectors" / "trust-v1.json"
_TRUST: Final = json.loads(TRUST_VECTOR_FILE.read_text())["vectors"][0]
TRUST_ANCHOR: Final = trust.Anchor.from_text(_TRUST["anchor"]["text"])
TRUST_CASE: Final = _TRUST["cases"][0]


def _gossip(bundle: RevocationBundle) -> None:
    """A bundle's fields met as a TrustGossip record's: a decision or a TrustError."""
    try:
        outcome = meet_gossip(
            {TRUST_ANCHOR.agency: TRUST_ANCHOR},
            {},
            delegation=bundle.delegation,
            revocations=bundle.revocations,
            checkpoint=bundle.checkpoint,
            now=TRUST_CASE["now"],
        )
    except TrustError:
        return
    assert outcome is None or outcome.anchor == TRUST_ANCHOR


def trust_statements(data: bytes) -> None:
    """The first byte picks the decoder: an endorsement proof checked end to end
    (0), an anchor's text (1), a revocation list under the vector's delegation
    (2), a revocation bundle opened as ``trust revocations import`` opens it
    and its three fields met as a ``TrustGossip`` record's are (3, trust.md
    §7.2). Anything but a verdict or a TrustError is a bug."""
    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    try:
        if mode == 0:
            verdict = trust.check_endorsement(
                TRUST_ANCHOR,
                rest,
                address=TRUST_CASE["address"],
                revocations=None,
                now=TRUST_CASE["now"],
            )
            assert isinstance(verdict.status, trust.Status)
        elif mode == 1:
            anchor = trust.Anchor.from_text(rest.decode("utf-8", "replace"))
            assert trust.Anchor.from_text(anchor.to_text()) == anchor
        elif mode == 2:
            trust.open_revocations(
                TRUST_ANCHOR, _TRUST["delegation"].encode(), rest, now=TRUST_CASE["now"]
            )
        else:
            bundle = RevocationBundle.decode(rest)
            assert RevocationBundle.decode(bundle.encode()) == bundle
            _gossip(bundle)
            trust.claimed_agency(bundle.delegation)
            trust.open_revocations(
                TRUST_ANCHOR, bundle.delegation, bundle.revocations, now=TRUST_CASE["now"]
            )
    except TrustError:
        return


GROUPS_VECTOR: Final = json.loads(
    (
        Path(__file__).resolve().parents[1] / "protocol-spec" / "vectors" / "groups-v1.json"
    ).read_text()
)["vectors"][0]


def group_operations() -> list[groups.Operation]:
    """The operations of the group vector's log, in the order they were made."""
    return [
        groups.Operation.decode(bytes.fromhex(o["encoded"])) for o in GROUPS_VECTOR["operations"]
    ]


def group_ops(data: bytes) -> None:
    try:
        op = groups.Operation.decode(data)
    except GroupError:
        return
    assert op.encode() == data, "a decoded operation encodes to other bytes"
    ops = group_operations()
    log = groups.GroupLog(ops[0])
    for known in ops[1:]:
        log.add(known)
    try:
        log.add(op)
    except GroupError:
        assert len(log) == len(ops), "a refused operation changed the log"
        return
    assert op.hash in log
    assert log.state == log.state_at(log.heads)


_LABELS: Final = label_rules.Labels(
    [label_rules.Scheme("ACME", ("INTERNAL", "SENSITIVE"), frozenset({"LES", "NOPRESS"}))]
)


def labels(data: bytes) -> None:
    text = data.decode("utf-8", "surrogateescape")
    try:
        label = _LABELS.parse(text)
    except LabelError:
        return
    assert label.text.isascii(), label.text
    assert label.text.isprintable(), label.text
    assert len(label.text) <= MAX_LABEL
    assert _LABELS.parse(label.text) == label, f"{text!r} is not canonical as {label.text!r}"


TARGETS: Final[dict[str, Target]] = {
    t.name: t
    for t in (
        Target("records", records, MAX_RECORD_SIZE + 64),
        Target("msgpack", msgpack, 1 + MAX_RECORD_SIZE + 64),
        Target("frames", frames, 1 + 2 * READ_SIZE),
        Target("session", session, 1 + 2 * (2 + 0x7FFF)),
        Target("handshake", handshake, 16_384),
        Target("handshake_payload", handshake_payload, 1 + 2 * MAX_HANDSHAKE_PAYLOAD),
        Target("mailbox", mailbox, 1 + envelope.MAX_ENVELOPE + 64),
        Target("trust", trust_statements, 40_000),
        Target("group_ops", group_ops, MAX_GROUP_OP_BYTES + 64),
        Target("labels", labels, MAX_LABEL + 64),
    )
}
