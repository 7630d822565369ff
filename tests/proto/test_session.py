"""The sans-I/O Session (onionpost.proto.session) against the wire spec.

Every bad input must end in a RemoteProtocolError subclass with the right
close code, leave the session FAILED, deliver nothing from the bad bytes and
leave what was delivered before untouched. Wire sizes are computed here from
the Noise pattern (``-> e, e1``, ``<- e, ee, ekem1, s, es``, ``-> s, se``),
the FIPS 203 ML-KEM-768 sizes and the msgpack encoding of the handshake
payload, not read from the code under test. Expected rekeyed keys come from
Noise §4.2 over ``cryptography``'s ChaCha20-Poly1305.

Sessions are made from fixed identities at a fixed clock (``_sessions``); a
hybrid handshake costs a few milliseconds, so example counts stay bounded.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable

import msgpack
import pytest
from _sessions import (
    ALICE,
    ALICE_STATIC,
    BOB,
    BOB_STATIC,
    CAROL,
    CAROL_STATIC,
    MAGIC,
    MESSAGE_1_LEN,
    NOW,
    PREAMBLE,
    TAG_LEN,
    U16,
    deliver,
    derive,
    deterministic_pair,
    drain,
    established,
    forge,
    frame,
    handshake,
    initiator,
    make_static,
    padded,
    responder,
    split_frames,
    text,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onionpost.errors import (
    AuthenticationError,
    CloseCode,
    FramingError,
    LocalProtocolError,
    MessageDecodeError,
    NonceExhaustedError,
    RemoteProtocolError,
    VersionError,
)
from onionpost.limits import (
    MAX_HANDSHAKE_PAYLOAD,
    MAX_QUEUED_PONGS,
    MAX_RECEIVE_BUFFER,
    MAX_TIME_MS,
    PADDING_BUCKETS,
    REKEY_AFTER_BYTES,
    REKEY_AFTER_MESSAGES,
)
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import CERT_CLOCK_SKEW, CERT_LIFETIME, Identity, StaticKey
from onionpost.proto.messages import (
    Ack,
    FileAccept,
    FileCancel,
    FileChunk,
    FileComplete,
    FileOffer,
    FileReject,
    Ping,
    Pong,
    Read,
    Text,
    encode,
    encoded,
)
from onionpost.proto.noise import CipherState, HandshakeState
from onionpost.proto.session import (
    TRANSITIONS,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    MessageReceived,
    PeerDecision,
    Session,
    SessionInput,
    SessionState,
    prologue,
)

S = SessionState
I = SessionInput  # noqa: E741
ID = bytes(range(16))
NOISE_NAME = "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b"
# msgpack [1, bin 32, bin 113]: fixarray, fixint, 2 + 32, 2 + 113.
PAYLOAD_LEN = 1 + 1 + 34 + 115
# <- e, ee, ekem1, s, es: e (32), ML-KEM-768 ciphertext (1088) + tag,
# encrypted s (32) + tag, then the payload + tag.
MESSAGE_2_EMPTY = 32 + 1088 + TAG_LEN + 32 + TAG_LEN + TAG_LEN
# -> s, se: encrypted s (32) + tag, then the payload + tag.
MESSAGE_3_EMPTY = 32 + TAG_LEN + TAG_LEN
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SAMPLES = [
    text(1, "hello, world \u2713"),
    Text(ID, MAX_TIME_MS, "x" * 300, "text/markdown"),
    Ack((ID, bytes(16))),
    Read((ID,)),
    FileOffer(ID, 1, "report.pdf", 123_456, bytes(range(64)), "application/pdf"),
    FileAccept(ID, 4096),
    FileChunk(ID, 0, bytes(range(256)) * 20),
    FileComplete(ID),
    FileReject(ID, 1),
    FileCancel(ID, 0),
    Pong(7),
]


# -- helpers ------------------------------------------------------------------------------


def run(session: Session) -> tuple[list[Event], RemoteProtocolError | None]:
    """Events until more bytes are needed or the peer broke the protocol."""
    events: list[Event] = []
    for _ in range(100_000):
        try:
            event = session.next_event()
        except RemoteProtocolError as exc:
            return events, exc
        if event is None:
            return events, None
        events.append(event)
    raise AssertionError("next_event() never stops")


def expect_failure(
    session: Session, error: type[RemoteProtocolError], code: CloseCode
) -> tuple[list[Event], RemoteProtocolError]:
    """The session fails with ``error`` and ``code`` and is then inert."""
    events, exc = run(session)
    assert exc is not None, f"expected {error.__name__}, got events {events}"
    assert isinstance(exc, error), repr(exc)
    assert exc.close_code == code
    assert session.state is S.FAILED
    # Nothing more comes out of a failed session, whatever arrives.
    session.receive_data(PREAMBLE + bytes(600))
    assert drain(session) == []
    return events, exc


def send_all(sender: Session, receiver: Session, records: list, batch: int = 100) -> list[Event]:
    events: list[Event] = []
    for start in range(0, len(records), batch):
        for record in records[start : start + batch]:
            sender.send(record)
        events += deliver(sender, receiver)
    return events


def to_message_2(i: Session, r: Session) -> bytes:
    """Start; the responder's answer (preamble and message 2), not yet delivered."""
    i.start()
    assert deliver(i, r) == []
    return r.data_to_send()


def to_message_3(i: Session, r: Session) -> bytes:
    """Start and answer; the initiator's message 3 frame, not yet delivered."""
    i.receive_data(to_message_2(i, r))
    [done] = drain(i)
    assert isinstance(done, HandshakeComplete)
    return i.data_to_send()


def rekeyed(key: bytes) -> bytes:
    # Noise §4.2: REKEY(k) = ENCRYPT(k, maxnonce, zerolen, zeros)[:32], with the
    # ChaChaPoly nonce of §12.3 (32 zero bits, then the counter little-endian).
    nonce = bytes(4) + (2**64 - 1).to_bytes(8, "little")
    return ChaCha20Poly1305(key).encrypt(nonce, bytes(32), b"")[:32]


def key_of(cipher: CipherState) -> bytes:
    key = cipher._k
    assert key is not None
    return key


def payload(*fields: object) -> bytes:
    data: bytes = msgpack.packb(list(fields), use_bin_type=True)
    return data


def raw_initiator(
    static: StaticKey = ALICE_STATIC, dialed: bytes = BOB.address.service_id.encode()
) -> HandshakeState:
    """A Noise initiator built from the spec alone, bypassing Session."""
    # spec.md §3.4: "onionpost" || u16 version || u8 56 || service_id.
    spec_prologue = b"onionpost" + U16.pack(1) + bytes([len(dialed)]) + dialed
    return HandshakeState(NOISE_NAME, initiator=True, prologue=spec_prologue, static=static.keypair)


def raw_to_message_3(r: Session) -> HandshakeState:
    """Drive ``r`` to AWAIT_FINISH from a raw initiator; the initiator, ready to write."""
    hs = raw_initiator()
    r.receive_data(PREAMBLE + frame(hs.write_message(b"")))
    assert drain(r) == []
    reply = r.data_to_send()
    assert reply[: len(PREAMBLE)] == PREAMBLE
    [message_2] = split_frames(reply[len(PREAMBLE) :])
    hs.read_message(message_2)
    return hs


# -- the handshake ------------------------------------------------------------------------


def test_handshake_names_each_peer_and_both_agree_on_the_hash() -> None:
    i, r = initiator(), responder()
    assert r.peer is None
    done_i, done_r = handshake(i, r)
    assert done_i.peer == BOB.address
    assert done_r.peer == ALICE.address
    assert done_i.handshake_hash == done_r.handshake_hash
    assert len(done_i.handshake_hash) == 64  # BLAKE2b
    assert done_i.handshake_hash.hex() not in repr(done_i)
    assert i.state is r.state is S.ESTABLISHED
    assert (i.peer, r.peer) == (BOB.address, ALICE.address)
    assert i.data_to_send() == r.data_to_send() == b""


def test_handshake_wire_shape() -> None:
    i, r = initiator(), responder()
    i.start()
    hello = i.data_to_send()
    assert hello[: len(PREAMBLE)] == PREAMBLE
    assert [len(m) for m in split_frames(hello[len(PREAMBLE) :])] == [MESSAGE_1_LEN]
    r.receive_data(hello)
    assert drain(r) == []
    reply = r.data_to_send()
    assert reply[: len(PREAMBLE)] == PREAMBLE
    assert [len(m) for m in split_frames(reply[len(PREAMBLE) :])] == [MESSAGE_2_EMPTY + PAYLOAD_LEN]
    i.receive_data(reply)
    drain(i)
    finish = i.data_to_send()
    assert [len(m) for m in split_frames(finish)] == [MESSAGE_3_EMPTY + PAYLOAD_LEN]
    # spec.md §3.10: 1226, 1361 and 217 bytes on the stream; §3.6: 04 c0, 05 47, 00 d7.
    assert (len(hello), len(reply), len(finish)) == (1226, 1361, 217)
    assert (hello[8:10], reply[8:10], finish[:2]) == (b"\x04\xc0", b"\x05\x47", b"\x00\xd7")


def test_prologue_known_answer() -> None:
    # spec.md §3.4, for the address whose key is 32 bytes of 42.
    expected = bytes.fromhex(
        "6f6e696f6e706f7374 0001 38"
        "696a626565717363696a626565717363696a626565717363696a626565717363"
        "696a626565717363696a626565717363696a62657a686964"
    )
    assert len(expected) == 68
    assert prologue(OnionAddress(b"\x42" * 32)) == expected


def test_prologue_and_payload_follow_the_spec() -> None:
    # A plain Noise initiator with the spec's prologue and payload, no Session.
    r = responder()
    hs = raw_to_message_3(r)
    assert hs.remote_static == BOB_STATIC.keypair.public
    r.receive_data(
        frame(
            hs.write_message(
                payload(1, ALICE.public_key, ALICE_STATIC.certificate.to_bytes(), "later", 9)
            )
        )
    )
    [done] = drain(r)
    assert done == HandshakeComplete(ALICE.address, hs.result().handshake_hash)


def test_responder_payload_is_identity_and_certificate() -> None:
    hs = raw_initiator()
    r = responder()
    r.receive_data(PREAMBLE + frame(hs.write_message(b"")))
    drain(r)
    [message_2] = split_frames(r.data_to_send()[len(PREAMBLE) :])
    assert msgpack.unpackb(hs.read_message(message_2)) == [
        1,
        BOB.public_key,
        BOB_STATIC.certificate.to_bytes(),
    ]


def test_records_may_follow_message_3_in_the_same_flight() -> None:
    # spec.md §3.7 note: the initiator may send records right after message 3.
    i, r = initiator(), responder()
    i.receive_data(to_message_2(i, r))
    drain(i)
    i.send(text(1))
    i.send(Ping(3))
    events = deliver(i, r)
    assert [type(e) for e in events] == [HandshakeComplete, MessageReceived]
    assert events[1] == MessageReceived(text(1))
    assert deliver(r, i) == [MessageReceived(Pong(3))]


def test_records_after_message_3_of_a_refused_peer_are_lost() -> None:
    i, r = initiator(), responder(decide=lambda _peer: PeerDecision.REFUSE)
    i.receive_data(to_message_2(i, r))
    drain(i)
    i.send(text(1))
    r.receive_data(i.data_to_send())
    events, _ = expect_failure(r, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == []
    assert r.data_to_send() == b""


# -- records, ping, close -----------------------------------------------------------------


def test_every_record_type_round_trips_in_both_directions() -> None:
    i, r = established()
    expected = [MessageReceived(m) for m in SAMPLES]
    assert send_all(i, r, SAMPLES) == expected
    assert send_all(r, i, SAMPLES) == expected
    assert i.state is r.state is S.ESTABLISHED


def test_an_encoded_record_goes_out_as_the_same_bytes_as_the_record() -> None:
    # Two sessions with the same keys: one sends the records, the other the
    # records with their encodings; every byte on the wire is the same.
    records = [text(1), text(2, "\u00e9" * 300), Ack((text(1).id,))]
    wires = []
    for ready in (False, True):
        i, r = deterministic_pair()
        handshake(i, r)
        for record in records:
            i.send(encoded(record) if ready else record)
        wire = i.data_to_send()
        r.receive_data(wire)
        assert drain(r) == [MessageReceived(record) for record in records]
        wires.append(wire)
    assert wires[0] == wires[1]


def test_ping_is_answered_with_pong_and_not_delivered() -> None:
    i, r = established()
    i.send(Ping(2**64 - 1))
    assert deliver(i, r) == []
    assert deliver(r, i) == [MessageReceived(Pong(2**64 - 1))]
    r.send(Ping(0))
    assert deliver(r, i) == []
    assert deliver(i, r) == [MessageReceived(Pong(0))]


def test_a_session_kept_silent_answers_no_ping_and_counts_it() -> None:
    i, r = established()
    r.answer_pings = False
    i.send(Ping(7))
    assert deliver(i, r) == []
    assert r.records_received == 1  # read (and paid for), not answered
    assert r.data_to_send() == b""
    assert deliver(r, i) == []
    # Its own records still go, as its Close does.
    r.send(text(1))
    r.close(CloseCode.AUTHENTICATION_FAILED, "")
    assert deliver(r, i) == [
        MessageReceived(text(1)),
        ConnectionClosed(CloseCode.AUTHENTICATION_FAILED, ""),
    ]


def test_close_is_authenticated_and_final() -> None:
    i, r = established()
    i.send(text(1))
    i.close(CloseCode.GOING_AWAY, "bye")
    assert i.state is S.CLOSED
    assert deliver(i, r) == [
        MessageReceived(text(1)),
        ConnectionClosed(CloseCode.GOING_AWAY, "bye"),
    ]
    assert r.state is S.CLOSED
    for session in (i, r):
        with pytest.raises(LocalProtocolError):
            session.send(text(2))
        with pytest.raises(LocalProtocolError):
            session.close()
        assert session.data_to_send() == b""
        assert session.state is S.CLOSED


def test_nothing_after_a_close_is_delivered() -> None:
    i, r = established()
    i.close()
    after = forge(i, padded(encode(text(2))))
    r.receive_data(i.data_to_send() + after)
    assert drain(r) == [ConnectionClosed(CloseCode.NORMAL, "")]
    r.receive_data(b"\xff" * 100)
    assert drain(r) == []
    assert r.state is S.CLOSED


# -- padding ------------------------------------------------------------------------------


def _chunk_of_record_size(size: int) -> FileChunk:
    # Data of 256..65535 bytes shares a bin 16 header, so size is linear in the data.
    base = len(encode(FileChunk(ID, 0, bytes(300))))
    message = FileChunk(ID, 0, bytes(300 + size - base))
    assert len(encode(message)) == size
    return message


def test_every_frame_is_one_of_the_buckets() -> None:
    i, _ = established()
    records = [
        *SAMPLES,
        text(1, "x"),
        text(2, "y" * 400),
        text(4, "w" * 3000),
        text(3, "z" * 60_000),
        Ack(tuple(derive(f"ack {n}", 16) for n in range(512))),
        FileChunk(ID, 2**64 - 1, bytes(65_517 - 32)),
        Ping(1),
    ]
    for record in records:
        i.send(record)
    sizes = [len(m) for m in split_frames(i.data_to_send())]
    assert len(sizes) == len(records)
    assert set(sizes) <= set(PADDING_BUCKETS)
    assert set(sizes) == {512, 4096, 65535}


def test_a_one_byte_and_a_400_byte_text_look_the_same() -> None:
    i, _ = established()
    i.send(text(1, "x"))
    short = i.data_to_send()
    i.send(text(2, "y" * 400))
    long = i.data_to_send()
    assert len(short) == len(long) == 2 + 512


@pytest.mark.parametrize(
    ("record_size", "bucket"),
    [(494, 512), (495, 4096), (4078, 4096), (4079, 65535), (65_517, 65535)],
)
def test_bucket_boundaries(record_size: int, bucket: int) -> None:
    # u16 length + record + padding + 16-byte tag fills the bucket exactly.
    i, r = established()
    message = _chunk_of_record_size(record_size)
    i.send(message)
    data = i.data_to_send()
    assert [len(m) for m in split_frames(data)] == [bucket]
    r.receive_data(data)
    assert drain(r) == [MessageReceived(message)]


@pytest.mark.parametrize(
    ("body", "record", "bucket"),
    [
        (1, 42, 512),
        (20, 61, 512),
        (200, 242, 512),
        (451, 494, 512),
        (452, 495, 4096),
        (4035, 4078, 4096),
        (4036, 4079, 65535),
        (60_000, 60_043, 65535),
    ],
)
def test_text_sizes_of_the_spec_table(body: int, record: int, bucket: int) -> None:
    # spec.md §4.3: a Text with content type text/plain and a current timestamp.
    message = text(0, "t" * body)
    assert len(encode(message)) == record
    i, _ = established()
    i.send(message)
    assert [len(m) for m in split_frames(i.data_to_send())] == [bucket]


@pytest.mark.parametrize("bucket", [4096, 65535])
def test_a_small_record_in_a_larger_bucket_is_accepted(bucket: int) -> None:
    # spec.md §4.1: a later version may send small records in larger buckets as cover.
    i, r = established()
    r.receive_data(forge(i, padded(encode(text(1)), bucket)))
    assert drain(r) == [MessageReceived(text(1))]
    r.receive_data(forge(i, padded(encode(Ping(4)), bucket)))
    assert drain(r) == []
    assert deliver(r, i) == [MessageReceived(Pong(4))]


def test_a_record_too_large_for_any_frame_is_refused_locally() -> None:
    i, _ = established()
    with pytest.raises(LocalProtocolError):
        i.send(FileChunk(ID, 2**64 - 1, bytes(65_517 - 32 + 1)))
    assert i.state is S.ESTABLISHED
    assert i.data_to_send() == b""


# -- rekey --------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["initiator-to-responder", "responder-to-initiator"])
def test_rekey_after_messages(direction: str) -> None:
    i, r = established()
    sender, receiver = (i, r) if direction.startswith("initiator") else (r, i)
    assert sender._send is not None
    assert receiver._recv is not None
    key = key_of(sender._send.cipher)
    assert key_of(receiver._recv.cipher) == key
    records = [Pong(n) for n in range(REKEY_AFTER_MESSAGES - 1)]
    assert send_all(sender, receiver, records) == [MessageReceived(m) for m in records]
    assert key_of(sender._send.cipher) == key_of(receiver._recv.cipher) == key
    assert send_all(sender, receiver, [text(1)]) == [MessageReceived(text(1))]
    # Noise §4.2: the key changes, the nonce runs on.
    assert key_of(sender._send.cipher) == key_of(receiver._recv.cipher) == rekeyed(key)
    assert sender._send.cipher.n == receiver._recv.cipher.n == REKEY_AFTER_MESSAGES
    assert send_all(sender, receiver, [text(2)]) == [MessageReceived(text(2))]
    # The other direction keeps its own counter and key.
    assert sender._recv is not None
    assert sender._recv.cipher.n == 0


def test_rekey_counts_ignored_extensions_and_automatic_pongs() -> None:
    # spec.md §9: every transport message counts, whatever it carries.
    i, r = established()
    assert i._send is not None
    assert r._send is not None
    assert r._recv is not None
    assert i._recv is not None
    keys = key_of(i._send.cipher), key_of(r._send.cipher)
    # Pongs are taken from the responder as they are written (it holds at
    # most MAX_QUEUED_PONGS unwritten).
    pongs: list[bytes] = []
    pings = [Ping(n) for n in range(REKEY_AFTER_MESSAGES - 2)]
    for start in range(0, len(pings), MAX_QUEUED_PONGS):
        assert send_all(i, r, pings[start : start + MAX_QUEUED_PONGS]) == []
        pongs += split_frames(r.data_to_send())
    r.receive_data(forge(i, padded(payload(64, "cover"))))
    assert drain(r) == []
    i.send(Ping(10**6))  # the initiator's 4096th message
    assert deliver(i, r) == []
    assert key_of(i._send.cipher) == key_of(r._recv.cipher) == rekeyed(keys[0])
    # 4095 Pings were answered (the extension was not): one more message
    # from the responder reaches the bound in its direction.
    pongs += split_frames(r.data_to_send())
    assert len(pongs) == REKEY_AFTER_MESSAGES - 1
    for start in range(0, len(pongs), 100):
        i.receive_data(b"".join(frame(m) for m in pongs[start : start + 100]))
        assert len(drain(i)) == len(pongs[start : start + 100])
    assert key_of(r._send.cipher) == keys[1]
    r.send(text(1))
    assert deliver(r, i) == [MessageReceived(text(1))]
    assert key_of(r._send.cipher) == key_of(i._recv.cipher) == rekeyed(keys[1])
    i.send(text(2))
    assert deliver(i, r) == [MessageReceived(text(2))]


def test_rekey_after_bytes() -> None:
    i, r = established()
    assert i._send is not None
    assert r._recv is not None
    key = key_of(i._send.cipher)
    chunk = FileChunk(ID, 0, bytes(65_517 - 32))
    full_frames = -(-REKEY_AFTER_BYTES // 65535)  # the frame that reaches the bound
    assert full_frames < REKEY_AFTER_MESSAGES
    for _ in range(full_frames - 1):
        i.send(chunk)
        assert deliver(i, r) == [MessageReceived(chunk)]
    assert key_of(i._send.cipher) == key_of(r._recv.cipher) == key
    i.send(chunk)
    assert deliver(i, r) == [MessageReceived(chunk)]
    assert key_of(i._send.cipher) == key_of(r._recv.cipher) == rekeyed(key)
    i.send(text(1))
    assert deliver(i, r) == [MessageReceived(text(1))]


# -- nonce exhaustion ---------------------------------------------------------------------


def test_receiving_at_the_last_nonce_fails_without_an_answer() -> None:
    # spec.md §7.2: PROTOCOL_ERROR, nothing sent (Noise §5.1 reserves 2^64-1).
    _, r = established()
    assert r._recv is not None
    r._recv.cipher.set_nonce(2**64 - 1)
    r.receive_data(frame(bytes(512)))
    _, exc = expect_failure(r, RemoteProtocolError, CloseCode.PROTOCOL_ERROR)
    assert type(exc) is RemoteProtocolError
    assert r.data_to_send() == b""


def test_sending_at_the_last_nonce_is_a_local_error() -> None:
    i, _ = established()
    assert i._send is not None
    i._send.cipher.set_nonce(2**64 - 1)
    with pytest.raises(NonceExhaustedError):
        i.send(text(1))
    assert i.data_to_send() == b""


# -- buffering and truncation -------------------------------------------------------------


def test_receive_buffer_is_bounded() -> None:
    r = responder()
    r.receive_data(bytes(MAX_RECEIVE_BUFFER - 1))
    r.receive_data(b"\x00")
    with pytest.raises(LocalProtocolError):
        r.receive_data(b"\x00")
    assert r.state is S.RESPONDER_IDLE


def test_two_largest_frames_fit_the_receive_buffer() -> None:
    i, r = established()
    chunks = [FileChunk(ID, n, bytes(65_000)) for n in range(2)]
    for chunk in chunks:
        i.send(chunk)
    data = i.data_to_send()
    assert len(data) <= MAX_RECEIVE_BUFFER
    r.receive_data(data)
    assert drain(r) == [MessageReceived(c) for c in chunks]


def test_a_truncated_frame_waits_for_the_rest() -> None:
    i, r = established()
    i.send(text(1))
    data = i.data_to_send()
    for piece in (data[:1], data[1:2], data[2:-1]):
        r.receive_data(piece)
        assert r.next_event() is None
        assert r.state is S.ESTABLISHED
    r.receive_data(data[-1:])
    assert drain(r) == [MessageReceived(text(1))]


def test_a_truncated_handshake_waits_for_the_rest() -> None:
    i, r = initiator(), responder()
    i.start()
    hello = i.data_to_send()
    for start, end in ((0, 1), (1, len(PREAMBLE) - 1), (len(PREAMBLE) - 1, len(hello) - 1)):
        r.receive_data(hello[start:end])
        assert r.next_event() is None
        assert r.state is S.RESPONDER_IDLE
        assert r.data_to_send() == b""
    r.receive_data(hello[-1:])
    assert r.next_event() is None
    assert r.state is S.AWAIT_FINISH


# -- lengths refused at the header --------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 511, 513, 4095, 4097, 65534])
def test_transport_length_that_is_not_a_bucket_fails_at_the_header(length: int) -> None:
    i, r = established()
    i.send(text(1))
    assert deliver(i, r) == [MessageReceived(text(1))]
    r.receive_data(U16.pack(length))  # the header alone, before any body
    events, _ = expect_failure(r, FramingError, CloseCode.MESSAGE_TOO_LARGE)
    assert events == []
    assert r.data_to_send() == b""


def _await_hello() -> Session:
    r = responder()
    r.receive_data(PREAMBLE)
    return r


def _await_response() -> Session:
    i = initiator()
    i.start()
    i.data_to_send()
    i.receive_data(PREAMBLE)
    return i


def _await_finish() -> Session:
    i, r = initiator(), responder()
    to_message_2(i, r)
    return r


# (stage, smallest and largest allowed length): message 1 has an exact length;
# messages 2 and 3 carry a payload of at most MAX_HANDSHAKE_PAYLOAD bytes.
HANDSHAKE_LENGTHS = {
    "message-1": (_await_hello, MESSAGE_1_LEN, MESSAGE_1_LEN),
    "message-2": (_await_response, MESSAGE_2_EMPTY, MESSAGE_2_EMPTY + MAX_HANDSHAKE_PAYLOAD),
    "message-3": (_await_finish, MESSAGE_3_EMPTY, MESSAGE_3_EMPTY + MAX_HANDSHAKE_PAYLOAD),
}


@pytest.mark.parametrize("stage", HANDSHAKE_LENGTHS)
def test_handshake_lengths_are_checked_at_the_header(stage: str) -> None:
    make, low, high = HANDSHAKE_LENGTHS[stage]
    for length in (low, high):
        session = make()
        before = session.state
        session.receive_data(U16.pack(length))
        assert session.next_event() is None
        assert session.state is before
    for length in (0, low - 1, high + 1, 65535):
        session = make()
        session.receive_data(U16.pack(length))
        expect_failure(session, FramingError, CloseCode.MESSAGE_TOO_LARGE)
        assert session.data_to_send() == b""


# -- garbage ------------------------------------------------------------------------------


@FAST
@given(garbage=st.binary(min_size=len(PREAMBLE), max_size=64).filter(lambda b: b[:6] != MAGIC))
def test_garbage_before_the_handshake_is_not_an_onionpost_stream(garbage: bytes) -> None:
    r = responder()
    r.receive_data(garbage)
    _, exc = expect_failure(r, RemoteProtocolError, CloseCode.PROTOCOL_ERROR)
    assert type(exc) is RemoteProtocolError
    assert r.data_to_send() == b""
    i = initiator()
    i.start()
    i.data_to_send()
    i.receive_data(garbage)
    _, exc = expect_failure(i, RemoteProtocolError, CloseCode.PROTOCOL_ERROR)
    assert type(exc) is RemoteProtocolError
    assert i.data_to_send() == b""


@pytest.mark.parametrize("bucket", PADDING_BUCKETS)
def test_garbage_after_the_handshake_fails_authentication(bucket: int) -> None:
    i, r = established()
    i.send(text(1))
    assert deliver(i, r) == [MessageReceived(text(1))]
    junk = (derive("junk", 64) * (bucket // 64 + 1))[:bucket]
    r.receive_data(frame(junk))
    events, _ = expect_failure(r, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == []
    # The sender is not authenticated: nothing is said to it.
    assert r.data_to_send() == b""


# -- replays ------------------------------------------------------------------------------


def test_a_replayed_message_1_is_a_new_session_and_message_3_does_not_fit_it() -> None:
    i, r = initiator(), responder()
    i.start()
    hello = i.data_to_send()
    r.receive_data(hello)
    drain(r)
    reply = r.data_to_send()
    i.receive_data(reply)
    drain(i)
    finish = i.data_to_send()
    r.receive_data(finish)
    assert [type(e) for e in drain(r)] == [HandshakeComplete]

    # An eavesdropper replays the initiator's bytes to another responder.
    replayed = responder()
    replayed.receive_data(hello)
    assert drain(replayed) == []
    assert replayed.state is S.AWAIT_FINISH
    assert replayed.data_to_send() != reply  # its own fresh ephemeral keys
    replayed.receive_data(finish)
    events, _ = expect_failure(replayed, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == []
    assert replayed.peer is None
    assert replayed.data_to_send() == b""


@pytest.mark.parametrize(
    ("again", "error", "code"),
    [
        ("frame", AuthenticationError, CloseCode.AUTHENTICATION_FAILED),
        # The second preamble's "ON" reads as a 20302-byte length.
        ("preamble-and-frame", FramingError, CloseCode.MESSAGE_TOO_LARGE),
    ],
)
def test_message_1_twice_to_one_responder_fails(
    again: str, error: type[RemoteProtocolError], code: CloseCode
) -> None:
    i, r = initiator(), responder()
    i.start()
    hello = i.data_to_send()
    r.receive_data(hello)
    assert drain(r) == []
    r.data_to_send()
    r.receive_data(hello[len(PREAMBLE) :] if again == "frame" else hello)
    events, _ = expect_failure(r, error, code)
    assert events == []
    assert r.peer is None


def test_message_2_replayed_to_an_established_initiator_fails() -> None:
    i, r = initiator(), responder()
    reply = to_message_2(i, r)
    i.receive_data(reply + reply)
    events, _ = expect_failure(i, FramingError, CloseCode.MESSAGE_TOO_LARGE)
    assert [type(e) for e in events] == [HandshakeComplete]


@pytest.mark.parametrize(
    ("order", "delivered"),
    [((0, 0), 1), ((1, 0), 0), ((0, 2), 1), ((0, 1, 1), 2)],
    ids=["replayed", "reordered", "dropped", "replayed-later"],
)
def test_transport_frames_are_strictly_in_sequence(order: tuple[int, ...], delivered: int) -> None:
    i, r = established()
    for n in range(3):
        i.send(text(n))
    frames = [frame(m) for m in split_frames(i.data_to_send())]
    r.receive_data(b"".join(frames[k] for k in order))
    events, _ = expect_failure(r, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == [MessageReceived(text(k)) for k in order[:delivered]]
    assert r.data_to_send() == b""


# -- authentication -----------------------------------------------------------------------


def test_dialing_one_address_and_reaching_another_fails_at_message_2() -> None:
    i = initiator(peer=BOB.address)
    carol = responder(CAROL, CAROL_STATIC)
    i.receive_data(to_message_2(i, carol))
    events, _ = expect_failure(i, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == []
    assert i.data_to_send() == b""  # no message 3
    assert drain(carol) == []
    assert carol.state is S.AWAIT_FINISH


def _presents_carols_valid_certificate() -> Session:
    # The prologue names bob (so message 2 decrypts), but the payload carries
    # carol's identity key and carol's valid certificate of the static key.
    keypair = BOB_STATIC.keypair
    r = responder(BOB, StaticKey(keypair, CAROL.certify(keypair.public, now=NOW)))
    r._identity = CAROL
    return r


def _certificate_signed_by_carol() -> Session:
    # bob's identity key, but a certificate carol signed.
    return responder(BOB, make_static(BOB, "bob", signer=CAROL))


def _bad_signature(static: StaticKey) -> StaticKey:
    certificate = static.certificate
    signature = bytes([certificate.signature[0] ^ 1]) + certificate.signature[1:]
    return StaticKey(static.keypair, dataclasses.replace(certificate, signature=signature))


def _certificate_for_another_static_key(identity: Identity, name: str) -> StaticKey:
    # A valid certificate, but of another static key than the one the
    # handshake authenticates (StaticKey's own constructor refuses this).
    forged = StaticKey.__new__(StaticKey)
    forged.keypair = make_static(identity, name).keypair
    forged.certificate = make_static(identity, f"{name} other").certificate
    return forged


RESPONDER_FORGERIES: dict[str, Callable[[], Session]] = {
    "valid-certificate-of-another-identity": _presents_carols_valid_certificate,
    "certificate-signed-by-another-identity": _certificate_signed_by_carol,
    "bad-signature": lambda: responder(BOB, _bad_signature(BOB_STATIC)),
    "certificate-for-another-static-key": lambda: responder(
        BOB, _certificate_for_another_static_key(BOB, "bob")
    ),
    "expired": lambda: responder(
        BOB, make_static(BOB, "bob", now=NOW - CERT_LIFETIME - CERT_CLOCK_SKEW - 1)
    ),
    "not-yet-valid": lambda: responder(BOB, make_static(BOB, "bob", now=NOW + CERT_CLOCK_SKEW + 1)),
}


@pytest.mark.parametrize("forgery", RESPONDER_FORGERIES)
def test_initiator_refuses_a_bad_responder_certificate(forgery: str) -> None:
    i, r = initiator(), RESPONDER_FORGERIES[forgery]()
    i.receive_data(to_message_2(i, r))
    events, exc = expect_failure(i, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == []
    assert str(exc) == "handshake failed"
    assert i.data_to_send() == b""
    assert r.state is S.AWAIT_FINISH


@pytest.mark.parametrize(
    ("offset", "valid"),
    [
        (-CERT_CLOCK_SKEW - 1, False),
        (-CERT_CLOCK_SKEW, True),
        (CERT_LIFETIME + CERT_CLOCK_SKEW, True),
        (CERT_LIFETIME + CERT_CLOCK_SKEW + 1, False),
    ],
)
@pytest.mark.parametrize("verifier", ["initiator", "responder"])
def test_certificate_validity_is_checked_at_the_verifiers_clock(
    offset: int, valid: bool, verifier: str
) -> None:
    # Both certificates are issued at NOW; only the verifier's clock moves.
    if verifier == "initiator":
        i, r = initiator(now=NOW + offset), responder()
        failing = i
    else:
        i, r = initiator(), responder(now=NOW + offset)
        failing = r
    i.start()
    deliver(i, r)
    i.receive_data(r.data_to_send())
    if failing is i:
        events, exc = run(i)
    else:
        run(i)
        r.receive_data(i.data_to_send())
        events, exc = run(r)
    if valid:
        assert exc is None
        assert [type(e) for e in events] == [HandshakeComplete]
    else:
        assert isinstance(exc, AuthenticationError)
        assert exc.close_code == CloseCode.AUTHENTICATION_FAILED
        assert failing.state is S.FAILED
        assert events == []


P = 2**255 - 19
_ORDER_8 = int.from_bytes(
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"), "little"
)
# Curve25519 u-coordinates of small order: 0 (order 2), 1 (order 4), the two
# points of order 8 (u and 1/u: adding the 2-torsion point (0, 0) inverts u),
# p - 1, and the non-canonical p and p + 1 that reduce to 0 and 1.
LOW_ORDER_POINTS = {
    "zero": 0,
    "one": 1,
    "order-8": _ORDER_8,
    "order-8-inverse": pow(_ORDER_8, P - 2, P),
    "p-minus-1": P - 1,
    "p": P,
    "p-plus-1": P + 1,
}


@pytest.mark.parametrize("name", LOW_ORDER_POINTS)
def test_low_order_points_are_low_order(name: str) -> None:
    point = X25519PublicKey.from_public_bytes(LOW_ORDER_POINTS[name].to_bytes(32, "little"))
    with pytest.raises(ValueError):  # cryptography refuses an all-zero shared secret
        X25519PrivateKey.generate().exchange(point)


@pytest.mark.parametrize("name", LOW_ORDER_POINTS)
def test_low_order_ephemeral_in_message_1_fails(name: str) -> None:
    i, r = initiator(), responder()
    i.start()
    hello = bytearray(i.data_to_send())
    start = len(PREAMBLE) + 2  # "e" opens message 1
    hello[start : start + 32] = LOW_ORDER_POINTS[name].to_bytes(32, "little")
    r.receive_data(bytes(hello))
    events, exc = expect_failure(r, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == []
    assert str(exc) == "handshake failed"
    # No message 2 goes out (the version preamble may).
    assert r.data_to_send()[len(PREAMBLE) :] == b""


def _message_1_with(offset: int, value: bytes) -> bytes:
    i = initiator()
    i.start()
    hello = bytearray(i.data_to_send())
    start = len(PREAMBLE) + 2 + offset
    hello[start : start + len(value)] = value
    return bytes(hello)


@pytest.mark.parametrize(
    "message_1",
    [
        pytest.param(lambda: _message_1_with(0, bytes(32)), id="all-zero-dh"),
        # Every 12-bit coefficient 4095 >= q = 3329: FIPS 203 §7.2 refuses the key.
        pytest.param(lambda: _message_1_with(32, b"\xff" * 1184), id="malformed-ml-kem-key"),
    ],
)
def test_a_noise_failure_at_message_1_sends_nothing(message_1: Callable[[], bytes]) -> None:
    r = responder()
    r.receive_data(message_1())
    expect_failure(r, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert r.data_to_send() == b""


@pytest.mark.parametrize("name", LOW_ORDER_POINTS)
def test_low_order_ephemeral_in_message_2_fails(name: str) -> None:
    i, r = initiator(), responder()
    reply = bytearray(to_message_2(i, r))
    start = len(PREAMBLE) + 2
    reply[start : start + 32] = LOW_ORDER_POINTS[name].to_bytes(32, "little")
    i.receive_data(bytes(reply))
    events, _ = expect_failure(i, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == []
    assert i.data_to_send() == b""


def test_non_empty_payload_in_message_1_is_refused() -> None:
    # Anything in message 1 would travel in clear, so its length is exact.
    hs = raw_initiator()
    r = responder()
    r.receive_data(PREAMBLE + frame(hs.write_message(b"x")))
    events, _ = expect_failure(r, FramingError, CloseCode.MESSAGE_TOO_LARGE)
    assert events == []
    assert r.data_to_send() == b""


@pytest.mark.parametrize(
    "fields",
    [
        (2, ALICE.public_key, ALICE_STATIC.certificate.to_bytes()),
        (1, ALICE.public_key),
        (1, ALICE.public_key[:31], ALICE_STATIC.certificate.to_bytes()),
        (1, ALICE.public_key, ALICE_STATIC.certificate.to_bytes()[:-1]),
        (1, ALICE.public_key.hex(), ALICE_STATIC.certificate.to_bytes()),
        (1, ALICE_STATIC.certificate.to_bytes(), ALICE.public_key),
        (1, BOB.public_key, ALICE_STATIC.certificate.to_bytes()),
    ],
    ids=[
        "version-2",
        "no-certificate",
        "short-key",
        "short-certificate",
        "key-as-text",
        "swapped",
        "another-identity",
    ],
)
def test_malformed_handshake_payloads_are_authentication_failures(fields: tuple) -> None:
    r = responder(decide=lambda _peer: PeerDecision.ACCEPT)
    hs = raw_to_message_3(r)
    r.receive_data(frame(hs.write_message(payload(*fields))))
    events, exc = expect_failure(r, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == []
    assert str(exc) == "handshake failed"
    assert r.data_to_send() == b""


_GOOD_PAYLOAD = (1, ALICE.public_key, ALICE_STATIC.certificate.to_bytes())


@pytest.mark.parametrize(
    "extras",
    [(), ("later", 9), (1.5, None, True, {}, [1, [2]], -3), tuple(range(13))],
    ids=["none", "int-and-str", "any-kind", "sixteen-elements"],
)
def test_handshake_payload_extras_are_ignored(extras: tuple) -> None:
    # spec.md §3.6: extras are any msgpack value within the bounds.
    r = responder()
    hs = raw_to_message_3(r)
    r.receive_data(frame(hs.write_message(payload(*_GOOD_PAYLOAD, *extras))))
    [done] = drain(r)
    assert done == HandshakeComplete(ALICE.address, hs.result().handshake_hash)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xc1",
        b"\x80",
        msgpack.packb({1: 2}),
        b"\x93\x01",
        payload(*_GOOD_PAYLOAD) + b"\x00",  # a second value
        payload(*_GOOD_PAYLOAD, *range(14)),  # 17 elements
        payload(*_GOOD_PAYLOAD, {"a": 1}),  # a non-empty map
        payload(*_GOOD_PAYLOAD, msgpack.ExtType(1, b"x")),  # an extension with data
        payload(*_GOOD_PAYLOAD, "x")[:-1] + b"\xff",  # a str extra that is not UTF-8
        payload(*_GOOD_PAYLOAD, b"x" * 1600)[:-1],  # truncated
    ],
    ids=[
        "empty",
        "reserved-byte",
        "empty-map",
        "map",
        "truncated-array",
        "trailing-bytes",
        "seventeen-elements",
        "map-extra",
        "ext-extra",
        "bad-utf8",
        "truncated-extra",
    ],
)
def test_handshake_payloads_outside_the_bounds_fail(raw: bytes) -> None:
    r = responder(decide=lambda _peer: PeerDecision.ACCEPT)
    hs = raw_to_message_3(r)
    r.receive_data(frame(hs.write_message(raw)))
    _, exc = expect_failure(r, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert str(exc) == "handshake failed"


@pytest.mark.parametrize("version", [True, 1.0, "1", b"\x01", -1])
def test_handshake_payload_version_must_be_an_integer(version: object) -> None:
    r = responder()
    hs = raw_to_message_3(r)
    r.receive_data(
        frame(
            hs.write_message(
                payload(version, ALICE.public_key, ALICE_STATIC.certificate.to_bytes())
            )
        )
    )
    expect_failure(r, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)


# -- strangers cannot probe the contact list ----------------------------------------------


class _Spy:
    def __init__(self, verdict: PeerDecision) -> None:
        self.verdict = verdict
        self.asked: list[object] = []

    def __call__(self, peer: object) -> PeerDecision:
        self.asked.append(peer)
        return self.verdict


def _observe_refusal(i: Session, r: Session) -> tuple:
    """What either end can see once the responder reads message 3."""
    r.receive_data(to_message_3(i, r))
    with pytest.raises(RemoteProtocolError) as info:
        r.next_event()
    exc = info.value
    return (
        type(exc),
        exc.args,
        str(exc),
        exc.close_code,
        exc.state,
        r.state,
        r.peer,
        r.data_to_send(),
        r.next_event(),
        i.state,
        i.data_to_send(),
    )


INITIATOR_FORGERIES: dict[str, Callable[[], Session]] = {
    "bad-signature": lambda: initiator(ALICE, _bad_signature(ALICE_STATIC)),
    "certificate-for-another-static-key": lambda: initiator(
        ALICE, _certificate_for_another_static_key(ALICE, "alice")
    ),
    "signed-by-another-identity": lambda: initiator(
        ALICE, make_static(ALICE, "alice", signer=CAROL)
    ),
    "expired": lambda: initiator(
        ALICE, make_static(ALICE, "alice", now=NOW - CERT_LIFETIME - CERT_CLOCK_SKEW - 1)
    ),
    "not-yet-valid": lambda: initiator(
        ALICE, make_static(ALICE, "alice", now=NOW + CERT_CLOCK_SKEW + 1)
    ),
}


@pytest.mark.parametrize("forgery", INITIATOR_FORGERIES)
def test_a_refused_peer_looks_exactly_like_a_bad_certificate(forgery: str) -> None:
    refuse = _Spy(PeerDecision.REFUSE)
    refused = _observe_refusal(initiator(), responder(decide=refuse))
    assert refuse.asked == [ALICE.address]

    accept = _Spy(PeerDecision.ACCEPT)
    forged = _observe_refusal(INITIATOR_FORGERIES[forgery](), responder(decide=accept))
    assert accept.asked == []  # a bad certificate never reaches the contact list

    assert forged == refused
    assert refused[0] is AuthenticationError
    assert refused[3] == CloseCode.AUTHENTICATION_FAILED
    assert refused[7] == b""  # nothing is said to either


def test_a_stranger_with_a_valid_certificate_is_refused() -> None:
    decide = _Spy(PeerDecision.REFUSE)
    i = initiator(CAROL, CAROL_STATIC)
    r = responder(decide=decide)
    r.receive_data(to_message_3(i, r))
    events, _ = expect_failure(r, AuthenticationError, CloseCode.AUTHENTICATION_FAILED)
    assert events == []
    assert r.peer is None
    assert decide.asked == [CAROL.address]  # asked about the authenticated address


# -- a valid peer sending bad records -----------------------------------------------------

_DEEP = b"\x91" * 2000 + b"\x01"
BAD_RECORDS = {
    "junk-msgpack": (padded(b"\xc1"), MessageDecodeError, CloseCode.BAD_MESSAGE),
    "empty-record": (padded(b""), MessageDecodeError, CloseCode.BAD_MESSAGE),
    "two-values": (padded(payload(10, 1) * 2), MessageDecodeError, CloseCode.BAD_MESSAGE),
    "too-deep": (padded(_DEEP, 4096), MessageDecodeError, CloseCode.BAD_MESSAGE),
    "unknown-core-type": (padded(payload(13)), MessageDecodeError, CloseCode.BAD_MESSAGE),
    "last-core-type": (padded(payload(63, 1)), MessageDecodeError, CloseCode.BAD_MESSAGE),
    "tag-128": (padded(payload(128)), MessageDecodeError, CloseCode.BAD_MESSAGE),
    "bool-for-int": (padded(payload(10, True)), MessageDecodeError, CloseCode.BAD_MESSAGE),
    "map": (padded(payload(10, {})), MessageDecodeError, CloseCode.BAD_MESSAGE),
    "too-large-field": (
        padded(payload(1, ID, 1, "x" * 60_001, "text/plain"), 65535),
        MessageDecodeError,
        CloseCode.BAD_MESSAGE,
    ),
}
# spec.md §4.1 steps 4 and 5, §7.1 and §7.2: FramingError, MESSAGE_TOO_LARGE, Close(5, "").
BAD_LENGTHS = {
    "record-past-the-frame": padded(b"", length=512 - TAG_LEN - 2 + 1),
    "record-length-65535": padded(b"", length=65535),
    "non-zero-padding": padded(payload(10, 1))[:-1] + b"\x01",
}


@pytest.mark.parametrize("case", BAD_RECORDS)
def test_an_authentic_frame_with_a_bad_record(case: str) -> None:
    _check_bad_record(*BAD_RECORDS[case])


@pytest.mark.parametrize("case", BAD_LENGTHS)
def test_an_authentic_frame_with_a_bad_record_length_or_padding(case: str) -> None:
    _check_bad_record(BAD_LENGTHS[case], FramingError, CloseCode.MESSAGE_TOO_LARGE)


def test_bad_record_length_or_padding_is_a_framing_error_with_a_close() -> None:
    # What holds whichever close code is right: FramingError, and the same code sent.
    for plaintext in BAD_LENGTHS.values():
        i, r = established()
        r.receive_data(forge(i, plaintext))
        events, exc = run(r)
        assert events == []
        assert isinstance(exc, FramingError)
        assert r.state is S.FAILED
        assert deliver(r, i) == [ConnectionClosed(exc.close_code, "")]


def _check_bad_record(plaintext: bytes, error: type[RemoteProtocolError], code: CloseCode) -> None:
    i, r = established()
    i.send(text(1))
    assert deliver(i, r) == [MessageReceived(text(1))]
    r.receive_data(forge(i, plaintext))
    events, exc = expect_failure(r, error, code)
    assert events == []
    assert exc.state is S.ESTABLISHED
    # The channel is still authentic, so the peer is told why, in a Close.
    assert deliver(r, i) == [ConnectionClosed(code, "")]
    assert i.state is S.CLOSED


@pytest.mark.parametrize("record", [[64], [100, 1, "future", b"data"], [127, 2**64 - 1]])
def test_unknown_extension_records_are_ignored(record: list) -> None:
    i, r = established()
    r.receive_data(forge(i, padded(payload(*record))))
    i.send(text(1))
    assert deliver(i, r) == [MessageReceived(text(1))]
    assert r.state is S.ESTABLISHED
    assert r.data_to_send() == b""  # not acked, not answered


@FAST
@given(
    record=st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-(2**63), 2**64 - 1)
        | st.text(max_size=20)
        | st.binary(max_size=20),
        lambda inner: st.lists(inner, max_size=5),
        max_leaves=12,
    ).map(lambda fields: [fields] if not isinstance(fields, list) else fields),
    tag=st.integers(0, 130),
)
def test_any_authentic_record_either_decodes_or_closes_with_a_reason(
    record: list, tag: int
) -> None:
    i, r = established()
    r.receive_data(forge(i, padded(payload(tag, *record), 4096)))
    events, exc = run(r)
    if exc is None:
        assert r.state in (S.ESTABLISHED, S.CLOSED)
        assert all(isinstance(e, (MessageReceived, ConnectionClosed)) for e in events)
        return
    assert isinstance(exc, (MessageDecodeError, FramingError))
    assert events == []
    [close] = deliver(r, i)
    assert close == ConnectionClosed(exc.close_code, "")


# -- versions -----------------------------------------------------------------------------


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
@pytest.mark.parametrize("with_message_1", [False, True])
def test_responder_refuses_an_unknown_version_and_names_its_own(
    version: int, with_message_1: bool
) -> None:
    i, r = initiator(), responder()
    i.start()
    hello = i.data_to_send()
    r.receive_data(MAGIC + U16.pack(version) + (hello[len(PREAMBLE) :] if with_message_1 else b""))
    events, _ = expect_failure(r, VersionError, CloseCode.UNSUPPORTED_VERSION)
    assert events == []
    assert r.data_to_send() == MAGIC + U16.pack(1)


@pytest.mark.parametrize("version", [0, 2, 0xFFFF])
def test_initiator_refuses_another_version(version: int) -> None:
    i, r = initiator(), responder()
    reply = to_message_2(i, r)
    i.receive_data(MAGIC + U16.pack(version) + reply[len(PREAMBLE) :])
    events, _ = expect_failure(i, VersionError, CloseCode.UNSUPPORTED_VERSION)
    assert events == []
    assert i.data_to_send() == b""


# -- the state table ----------------------------------------------------------------------


def _closed_by_us() -> Session:
    i, _ = established()
    i.close()
    i.data_to_send()
    return i


def _closed_by_peer() -> Session:
    i, r = established()
    i.close()
    deliver(i, r)
    return r


def _failed_initiator() -> Session:
    i = initiator()
    i.start()
    i.data_to_send()
    i.receive_data(b"garbage!")
    run(i)
    return i


def _failed_responder() -> Session:
    r = responder()
    r.receive_data(b"garbage!")
    run(r)
    return r


def _started() -> Session:
    i = initiator()
    i.start()
    i.data_to_send()
    return i


BUILDERS: dict[str, Callable[[], Session]] = {
    "initiator-idle": initiator,
    "responder-idle": responder,
    "await-response": _started,
    "await-finish": _await_finish,
    "established-initiator": lambda: established()[0],
    "established-responder": lambda: established()[1],
    "closed-by-us": _closed_by_us,
    "closed-by-peer": _closed_by_peer,
    "failed-initiator": _failed_initiator,
    "failed-responder": _failed_responder,
}
CALLS: dict[SessionInput, Callable[[Session], None]] = {
    I.START: lambda s: s.start(),
    I.SEND: lambda s: s.send(text(1)),
    I.CLOSE_SENT: lambda s: s.close(),
}


def test_table_shape() -> None:
    for state in S:
        if state in (S.CLOSED, S.FAILED):
            assert not [k for k in TRANSITIONS if k[0] is state], state
        else:
            assert TRANSITIONS[(state, I.ERROR)] is S.FAILED
    assert {BUILDERS[name]().state for name in BUILDERS} == set(S)


@pytest.mark.parametrize("call", CALLS, ids=lambda c: c.value)
@pytest.mark.parametrize("build", BUILDERS)
def test_every_api_call_follows_the_transition_table(build: str, call: SessionInput) -> None:
    session = BUILDERS[build]()
    session.data_to_send()
    state = session.state
    after = TRANSITIONS.get((state, call))
    if after is None:
        with pytest.raises(LocalProtocolError) as info:
            CALLS[call](session)
        assert info.value.state is state
        assert session.state is state
        assert session.data_to_send() == b""
    else:
        CALLS[call](session)
        assert session.state is after
        assert session.data_to_send() != b""


@pytest.mark.parametrize("build", ["closed-by-us", "closed-by-peer", "failed-initiator"])
def test_closed_and_failed_sessions_ignore_what_arrives(build: str) -> None:
    session = BUILDERS[build]()
    state = session.state
    session.receive_data(PREAMBLE + frame(bytes(512)) * 3)
    assert drain(session) == []
    assert session.state is state
    assert session.data_to_send() == b""


@pytest.mark.parametrize("data", [b"\x00", PREAMBLE, frame(bytes(512))], ids=len)
def test_bytes_before_start_are_a_protocol_error(data: bytes) -> None:
    # The initiator speaks first; a peer that does not is broken.
    i = initiator()
    assert i.next_event() is None
    i.receive_data(data)
    _, exc = expect_failure(i, RemoteProtocolError, CloseCode.PROTOCOL_ERROR)
    assert exc.state is S.INITIATOR_IDLE
    assert i.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        i.start()


# (session, call or delivery): the property drives random sequences of both.
_RECEIVE_INPUTS = (I.HELLO, I.RESPONSE, I.FINISH, I.RECORD, I.CLOSE_RECEIVED)


def _reachable_by_receiving(state: SessionState) -> set[SessionState]:
    seen = {state}
    frontier = [state]
    while frontier:
        current = frontier.pop()
        for event in _RECEIVE_INPUTS:
            new = TRANSITIONS.get((current, event))
            if new is not None and new not in seen:
                seen.add(new)
                frontier.append(new)
    return seen


@FAST
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["i", "r"]), st.sampled_from([*CALLS, "deliver"])),
        max_size=14,
    )
)
def test_random_api_sequences_follow_the_table(steps: list) -> None:
    sessions = {"i": initiator(), "r": responder()}
    for who, action in steps:
        session = sessions[who]
        other = sessions["r" if who == "i" else "i"]
        before = session.state
        if action == "deliver":
            other.receive_data(session.data_to_send())
            other_before = other.state
            _, exc = run(other)
            assert exc is None, exc  # honest peers never break the protocol
            assert other.state in _reachable_by_receiving(other_before)
            continue
        after = TRANSITIONS.get((before, action))
        if after is None:
            with pytest.raises(LocalProtocolError):
                CALLS[action](session)
            assert session.state is before
        else:
            CALLS[action](session)
            assert session.state is after
    for session in sessions.values():
        assert session.state is not S.FAILED


# -- properties over byte streams ---------------------------------------------------------


@functools.cache
def _transcript() -> tuple[bytes, bytes, int, int, tuple[Event, ...], tuple[Event, ...]]:
    """One deterministic conversation: both byte streams and what each end saw.

    Returns (initiator->responder bytes, responder->initiator bytes, how much
    of each the sessions wrote without an application send, the responder's
    events, the initiator's events).
    """
    i, r = deterministic_pair()
    to_r, to_i = bytearray(), bytearray()
    seen_r: list[Event] = []
    seen_i: list[Event] = []

    def i_to_r() -> None:
        data = i.data_to_send()
        to_r.extend(data)
        r.receive_data(data)
        seen_r.extend(drain(r))

    def r_to_i() -> None:
        data = r.data_to_send()
        to_i.extend(data)
        i.receive_data(data)
        seen_i.extend(drain(i))

    i.start()
    i_to_r()
    r_to_i()
    i_to_r()
    own_r = len(to_i)
    own_i = len(to_r)
    for record in (
        text(1),
        Ping(5),
        FileChunk(ID, 0, bytes(range(256)) * 12),
        text(2, "\u00e9" * 25_000),
        Ack((ID,)),
    ):
        i.send(record)
    i_to_r()
    r_to_i()  # the Pong the responder wrote by itself
    own_r = len(to_i)
    r.send(Read((ID,)))
    r.send(text(3))
    r_to_i()
    i.close(CloseCode.GOING_AWAY, "done")
    i_to_r()
    return bytes(to_r), bytes(to_i), own_i, own_r, tuple(seen_r), tuple(seen_i)


def _feed(session: Session, data: bytes, cuts: list[int]) -> tuple[list[Event], bytes]:
    events: list[Event] = []
    out = bytearray(session.data_to_send())
    bounds = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(bounds):
        session.receive_data(data[start:end])
        events += drain(session)
        out += session.data_to_send()
    return events, bytes(out)


def test_transcript_is_deterministic_and_complete() -> None:
    to_r, to_i, _, own_r, seen_r, seen_i = _transcript()
    assert len(to_r) < MAX_RECEIVE_BUFFER
    assert [type(e) for e in seen_r] == [HandshakeComplete] + [MessageReceived] * 4 + [
        ConnectionClosed
    ]
    assert [type(e) for e in seen_i] == [HandshakeComplete] + [MessageReceived] * 3
    _, r = deterministic_pair()
    assert _feed(r, to_r, [])[1] == to_i[:own_r]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_rechunking_gives_the_same_events(data: st.DataObject) -> None:
    to_r, to_i, own_i, own_r, seen_r, seen_i = _transcript()
    cuts_r = data.draw(st.lists(st.integers(0, len(to_r)), max_size=40), label="cuts_r")
    cuts_i = data.draw(st.lists(st.integers(0, len(to_i)), max_size=40), label="cuts_i")
    i, r = deterministic_pair()
    events, out = _feed(r, to_r, cuts_r)
    assert events == list(seen_r)
    assert out == to_i[:own_r]
    i.start()
    events, out = _feed(i, to_i, cuts_i)
    assert events == list(seen_i)
    assert out == to_r[:own_i]


@pytest.mark.parametrize("side", ["responder", "initiator"])
def test_byte_at_a_time_gives_the_same_events(side: str) -> None:
    to_r, to_i, _, _, seen_r, seen_i = _transcript()
    i, r = deterministic_pair()
    if side == "responder":
        session, data, seen = r, to_r, seen_r
    else:
        i.start()
        session, data, seen = i, to_i, seen_i
    events = _feed(session, data, list(range(len(data))))[0]
    assert events == list(seen)


def _only_remote_errors(session: Session, data: bytes) -> list[Event]:
    session.receive_data(data)
    events, exc = run(session)
    if exc is not None:
        assert session.state is S.FAILED
        assert exc.close_code in set(CloseCode)
    return events


@FAST
@given(
    prefix=st.sampled_from([b"", PREAMBLE, PREAMBLE + U16.pack(MESSAGE_1_LEN)]),
    garbage=st.binary(max_size=2000) | st.binary(min_size=MESSAGE_1_LEN, max_size=MESSAGE_1_LEN),
)
def test_random_bytes_into_a_fresh_responder(prefix: bytes, garbage: bytes) -> None:
    assert _only_remote_errors(responder(), prefix + garbage) == []


@FAST
@given(
    prefix=st.sampled_from([b"", PREAMBLE, PREAMBLE + U16.pack(MESSAGE_2_EMPTY + PAYLOAD_LEN)]),
    garbage=st.binary(max_size=2000),
)
def test_random_bytes_into_an_initiator_awaiting_message_2(prefix: bytes, garbage: bytes) -> None:
    assert _only_remote_errors(_started(), prefix + garbage) == []


@FAST
@given(
    garbage=st.binary(max_size=1200)
    | st.builds(
        lambda bucket, body: frame((body * (bucket // max(len(body), 1) + 1))[:bucket]),
        st.sampled_from(PADDING_BUCKETS),
        st.binary(min_size=1, max_size=64),
    )
)
def test_random_bytes_into_an_established_session(garbage: bytes) -> None:
    _, r = established()
    assert _only_remote_errors(r, garbage) == []


@FAST
@given(garbage=st.binary(min_size=1, max_size=600))
def test_random_bytes_into_a_responder_awaiting_message_3(garbage: bytes) -> None:
    r = _await_finish()
    assert _only_remote_errors(r, garbage) == []


def test_a_ping_flood_against_a_peer_that_does_not_read_is_bounded() -> None:
    # The initiator pings but never reads the responder's Pongs: the
    # responder holds MAX_QUEUED_PONGS of them, then closes with RATE_LIMITED
    # instead of growing its output without end.
    i, r = established()
    for n in range(MAX_QUEUED_PONGS):
        i.send(Ping(n))
        r.receive_data(i.data_to_send())
        assert r.next_event() is None
    i.send(Ping(MAX_QUEUED_PONGS))
    r.receive_data(i.data_to_send())
    with pytest.raises(RemoteProtocolError) as caught:
        r.next_event()
    assert caught.value.close_code is CloseCode.RATE_LIMITED
    assert r.state is S.FAILED
    # What the responder owes is the 16 Pongs and its Close: nothing more.
    events = []
    i.receive_data(r.data_to_send())
    while (event := i.next_event()) is not None:
        events.append(event)
        if isinstance(event, ConnectionClosed):
            break
    assert events[:-1] == [MessageReceived(Pong(n)) for n in range(MAX_QUEUED_PONGS)]
    assert events[-1] == ConnectionClosed(CloseCode.RATE_LIMITED, "")


def test_every_decrypted_record_is_counted_even_those_the_session_handles() -> None:
    i, r = established()
    assert r.records_received == 0
    i.send(Ping(1))
    i.send(text(1))
    r.receive_data(i.data_to_send())
    assert r.next_event() == MessageReceived(text(1))
    r.receive_data(forge(i, padded(payload(64, "cover"))))
    assert r.next_event() is None
    assert r.records_received == 3
