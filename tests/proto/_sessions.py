"""Sessions for the proto tests: fixed identities, handshakes, frames, forged records.

Keys derive from fixed labels with BLAKE2b and the clock is the constant
:data:`NOW`, so every run sees the same identities (the protocol core reads
no clock). Wire constants are written out from the spec text in
``session.py``'s docstring, not imported from the code under test.

Everything drives the public :class:`Session` API except :func:`forge`, which
encrypts a hand-made plaintext with a session's own send CipherState: the
frame then authenticates while its record is wrong, which no honest session
can be made to send.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric import mlkem

from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity, StaticKey
from onionpost.proto.messages import Text
from onionpost.proto.noise import KeyPair
from onionpost.proto.session import (
    Event,
    HandshakeComplete,
    HandshakeRandomness,
    PeerDecision,
    Session,
)

NOW = 1_700_000_000
# spec: the stream opens with "ONPOST" and a u16 big-endian version; a frame
# is a u16 big-endian length and one Noise message.
MAGIC = b"ONPOST"
PREAMBLE = MAGIC + struct.pack(">H", 1)
U16 = struct.Struct(">H")
# Noise_XXhfs_25519+MLKEM768 message 1 is "e" (32) and "e1" (1184, in clear),
# with an empty payload and no key yet, so no tag.
MESSAGE_1_LEN = 32 + 1184
TAG_LEN = 16


def derive(label: str, size: int = 32) -> bytes:
    return hashlib.blake2b(f"onionpost test {label}".encode()).digest()[:size]


def make_identity(name: str) -> Identity:
    return Identity(derive(f"{name} identity"))


def make_static(
    identity: Identity, name: str, *, now: int = NOW, signer: Identity | None = None
) -> StaticKey:
    """A static key for ``identity``, certified by ``signer`` (default: itself)."""
    keypair = KeyPair.from_private(derive(f"{name} static"))
    return StaticKey(keypair, (signer or identity).certify(keypair.public, now=now))


ALICE = make_identity("alice")
BOB = make_identity("bob")
CAROL = make_identity("carol")
ALICE_STATIC = make_static(ALICE, "alice")
BOB_STATIC = make_static(BOB, "bob")
CAROL_STATIC = make_static(CAROL, "carol")


def text(n: int, body: str = "hello") -> Text:
    """The ``n``-th test Text: a fixed id and time per ``n``."""
    return Text(derive(f"message {n}", 16), NOW * 1000 + n, body)


def accept(*addresses: OnionAddress) -> Callable[[OnionAddress], PeerDecision]:
    allowed = set(addresses)

    def decide(peer: OnionAddress) -> PeerDecision:
        return PeerDecision.ACCEPT if peer in allowed else PeerDecision.REFUSE

    return decide


def initiator(
    identity: Identity = ALICE,
    static: StaticKey = ALICE_STATIC,
    *,
    peer: OnionAddress = BOB.address,
    now: int = NOW,
    randomness: HandshakeRandomness | None = None,
) -> Session:
    return Session(
        initiator=True,
        identity=identity,
        static=static,
        now=now,
        peer=peer,
        randomness=randomness,
    )


def responder(
    identity: Identity = BOB,
    static: StaticKey = BOB_STATIC,
    *,
    now: int = NOW,
    decide: Callable[[OnionAddress], PeerDecision] | None = None,
    randomness: HandshakeRandomness | None = None,
) -> Session:
    return Session(
        initiator=False,
        identity=identity,
        static=static,
        now=now,
        decide=decide or accept(ALICE.address),
        randomness=randomness,
    )


def drain(session: Session, limit: int = 100_000) -> list[Event]:
    """Every event the buffered bytes make; fails rather than loop forever."""
    events: list[Event] = []
    for _ in range(limit):
        event = session.next_event()
        if event is None:
            return events
        events.append(event)
    raise AssertionError(f"next_event() still producing events after {limit} calls")


def deliver(source: Session, target: Session) -> list[Event]:
    """Move everything ``source`` queued into ``target``; the events it makes."""
    target.receive_data(source.data_to_send())
    return drain(target)


def handshake(i: Session, r: Session) -> tuple[HandshakeComplete, HandshakeComplete]:
    """Run the three handshake messages; the initiator's and responder's events."""
    i.start()
    assert deliver(i, r) == []
    [done_i] = deliver(r, i)
    [done_r] = deliver(i, r)
    assert isinstance(done_i, HandshakeComplete)
    assert isinstance(done_r, HandshakeComplete)
    return done_i, done_r


def established() -> tuple[Session, Session]:
    i, r = initiator(), responder()
    handshake(i, r)
    return i, r


def frame(message: bytes) -> bytes:
    return U16.pack(len(message)) + message


def split_frames(data: bytes) -> list[bytes]:
    """The Noise messages in a run of whole frames."""
    out = []
    while data:
        (length,) = U16.unpack_from(data)
        assert len(data) >= 2 + length, "a frame is cut short"
        out.append(data[2 : 2 + length])
        data = data[2 + length :]
    return out


def padded(record: bytes, bucket: int = 512, *, length: int | None = None) -> bytes:
    """``u16 length || record || zeros`` filling a ``bucket``-byte Noise message."""
    body = U16.pack(len(record) if length is None else length) + record
    assert len(body) + TAG_LEN <= bucket
    return body + bytes(bucket - TAG_LEN - len(body))


def forge(sender: Session, plaintext: bytes) -> bytes:
    """A frame of ``plaintext`` under ``sender``'s transport key (tests only).

    The sender counts it for rekeying as for any message it sends (spec.md §9).
    """
    direction = sender._send
    assert direction is not None, "the sender is not established"
    ciphertext = direction.cipher.encrypt_with_ad(b"", plaintext)
    direction.count(len(ciphertext))
    return frame(ciphertext)


# -- Deterministic handshakes ---------------------------------------------------------
#
# ML-KEM encapsulation takes randomness no provider lets us inject; one
# encapsulation to the initiator's fixed KEM key is made per run and replayed.

KEM_SEED = derive("alice kem", 64)
_KEM_PUBLIC = mlkem.MLKEM768PrivateKey.from_seed_bytes(KEM_SEED).public_key()
_KEM_SECRET, _KEM_CIPHERTEXT = _KEM_PUBLIC.encapsulate()


def _recorded_encapsulation(public_key: bytes) -> tuple[bytes, bytes]:
    assert public_key == _KEM_PUBLIC.public_bytes_raw()
    return _KEM_CIPHERTEXT, _KEM_SECRET


def deterministic_pair() -> tuple[Session, Session]:
    """An initiator and responder whose every handshake byte is the same each call."""
    i = initiator(
        randomness=HandshakeRandomness(
            ephemeral=KeyPair.from_private(derive("alice ephemeral")), kem_seed=KEM_SEED
        )
    )
    r = responder(
        randomness=HandshakeRandomness(
            ephemeral=KeyPair.from_private(derive("bob ephemeral")),
            encapsulate=_recorded_encapsulation,
        )
    )
    return i, r
