"""Interoperability of ``onionpost.proto.noise`` with ``noiseprotocol`` 0.3.1.

``noiseprotocol`` is an independent implementation of Noise rev 34 (on top of
``cryptography``), so agreeing with it checks our token processing, key
schedule, PSK placement, Split() and transport nonces against code we did not
write.

Every protocol name below is its own test case; each runs a few seeded random
sessions (random static keys, prologue, PSKs and payload sizes):

- ``test_interoperates``: our initiator against their responder, and theirs
  against ours, with fresh random ephemerals; payloads must arrive and the
  handshake hashes must agree.
- ``test_transcripts_are_byte_identical``: the same keys, ephemerals included,
  injected into both implementations; every handshake and transport message
  (across a rekey) must be the same bytes from either one.

The one-way patterns N, K and X (Noise §7.4) are among them, with their psk
variants (``Xpsk1`` is the sealed envelope of ``mailbox.md``): one handshake
message, then transport from the initiator only.
"""

from __future__ import annotations

import random
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from noise.connection import Keypair, NoiseConnection

from onionpost.proto.noise import HandshakeState, KeyPair

# Noise §3: a message is at most 65535 bytes; §5.1: ChaChaPoly adds a 16-byte tag.
MAX_TRANSPORT_PAYLOAD = 65535 - 16

# Noise §7.4/§7.5: how many messages each pattern has, and which side's static
# key is sent in, or known before, the handshake.
MESSAGE_COUNT = {
    "N": 1,
    "K": 1,
    "X": 1,
    "NN": 2,
    "NK": 2,
    "XX": 3,
    "XK": 3,
    "IK": 2,
    "KK": 2,
}
SESSIONS_PER_CASE = 5
TRANSPORT_MESSAGES = 6


def _modifier_sets(pattern: str) -> Iterator[str]:
    yield ""
    # Noise §9.2: pskN is valid for N in 0..number of messages.
    for n in range(MESSAGE_COUNT[pattern] + 1):
        yield f"psk{n}"
    if MESSAGE_COUNT[pattern] >= 2:
        yield "psk0+psk2"
    else:
        yield "psk0+psk1"
    if MESSAGE_COUNT[pattern] == 3:
        yield "psk1+psk3"


NAMES = [
    f"Noise_{pattern}{modifiers}_25519_ChaChaPoly_{hash_name}"
    for pattern in MESSAGE_COUNT
    for hash_name in ("BLAKE2b", "SHA256")
    for modifiers in _modifier_sets(pattern)
]


def _pattern(name: str) -> str:
    return name.split("_")[1].split("psk", maxsplit=1)[0]


def _one_way(pattern: str) -> bool:
    return MESSAGE_COUNT[pattern] == 1


def _psk_count(name: str) -> int:
    return name.split("_")[1].count("psk")


def _initiator_has_static(pattern: str) -> bool:
    return pattern[0] in "XIK"


def _responder_has_static(pattern: str) -> bool:
    # One-way patterns: the recipient's static key is always known in advance.
    return _one_way(pattern) or pattern[1] in "XK"


def _responder_key_known(pattern: str) -> bool:
    return _one_way(pattern) or pattern[1] == "K"


# -- one interface over both implementations ----------------------------------------


class _Ours:
    def __init__(self, hs: HandshakeState) -> None:
        self.hs = hs

    @property
    def complete(self) -> bool:
        return self.hs.complete

    def write(self, payload: bytes) -> bytes:
        return self.hs.write_message(payload)

    def read(self, message: bytes) -> bytes:
        return self.hs.read_message(message)

    def handshake_hash(self) -> bytes:
        return self.hs.result().handshake_hash

    def remote_static(self) -> bytes | None:
        return self.hs.result().remote_static

    def encrypt(self, payload: bytes) -> bytes:
        return self.hs.result().send.encrypt_with_ad(b"", payload)

    def decrypt(self, message: bytes) -> bytes:
        return self.hs.result().receive.decrypt_with_ad(b"", message)

    def rekey_send(self) -> None:
        self.hs.result().send.rekey()

    def rekey_receive(self) -> None:
        self.hs.result().receive.rekey()


class _Theirs:
    def __init__(self, conn: NoiseConnection) -> None:
        self.conn = conn

    @property
    def complete(self) -> bool:
        return bool(self.conn.handshake_finished)

    def write(self, payload: bytes) -> bytes:
        return bytes(self.conn.write_message(payload))

    def read(self, message: bytes) -> bytes:
        return bytes(self.conn.read_message(message))

    def handshake_hash(self) -> bytes:
        return bytes(self.conn.get_handshake_hash())

    def remote_static(self) -> bytes | None:
        return None  # not exposed after the handshake

    def encrypt(self, payload: bytes) -> bytes:
        return bytes(self.conn.encrypt(payload))

    def decrypt(self, message: bytes) -> bytes:
        return bytes(self.conn.decrypt(message))

    def rekey_send(self) -> None:
        self.conn.rekey_outbound_cipher()

    def rekey_receive(self) -> None:
        self.conn.rekey_inbound_cipher()


Party = _Ours | _Theirs


@dataclass(frozen=True)
class _Setup:
    """Everything both sides are configured with, drawn from one seeded RNG."""

    name: str
    prologue: bytes
    psks: tuple[bytes, ...]
    initiator_static: KeyPair
    responder_static: KeyPair
    initiator_ephemeral: KeyPair
    responder_ephemeral: KeyPair

    @classmethod
    def draw(cls, name: str, rng: random.Random) -> _Setup:
        return cls(
            name=name,
            prologue=rng.randbytes(rng.randint(0, 100)),
            psks=tuple(rng.randbytes(32) for _ in range(_psk_count(name))),
            initiator_static=KeyPair.from_private(rng.randbytes(32)),
            responder_static=KeyPair.from_private(rng.randbytes(32)),
            initiator_ephemeral=KeyPair.from_private(rng.randbytes(32)),
            responder_ephemeral=KeyPair.from_private(rng.randbytes(32)),
        )

    def _keys(self, initiator: bool) -> tuple[KeyPair | None, bytes | None, KeyPair]:
        """(our static, the peer's static known in advance, our ephemeral) for a role."""
        pattern = _pattern(self.name)
        if initiator:
            static = self.initiator_static if _initiator_has_static(pattern) else None
            remote = self.responder_static.public if _responder_key_known(pattern) else None
            return static, remote, self.initiator_ephemeral
        static = self.responder_static if _responder_has_static(pattern) else None
        remote = self.initiator_static.public if pattern[0] == "K" else None
        return static, remote, self.responder_ephemeral

    def ours(self, *, initiator: bool, inject_ephemeral: bool) -> _Ours:
        static, remote, ephemeral = self._keys(initiator)
        return _Ours(
            HandshakeState(
                self.name,
                initiator=initiator,
                prologue=self.prologue,
                static=static,
                remote_static=remote,
                psks=self.psks,
                ephemeral=ephemeral if inject_ephemeral else None,
            )
        )

    def theirs(self, *, initiator: bool, inject_ephemeral: bool) -> _Theirs:
        static, remote, ephemeral = self._keys(initiator)
        conn = NoiseConnection.from_name(self.name.encode("ascii"))
        if initiator:
            conn.set_as_initiator()
        else:
            conn.set_as_responder()
        conn.set_prologue(self.prologue)
        if self.psks:
            conn.set_psks(psks=list(self.psks))
        if static is not None:
            conn.set_keypair_from_private_bytes(Keypair.STATIC, static.private)
        if remote is not None:
            conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, remote)
        if inject_ephemeral:
            conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, ephemeral.private)
        with warnings.catch_warnings():
            # noiseprotocol warns that injected ephemerals are for testing only.
            warnings.simplefilter("ignore")
            conn.start_handshake()
        return _Theirs(conn)


def _rng(*parts: str) -> random.Random:
    return random.Random(zlib.crc32("/".join(parts).encode()))


def _handshake_payload(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([0, rng.randint(1, 1000)]))


def _transport_payload(rng: random.Random) -> bytes:
    size = rng.choice([0, rng.randint(1, 2000), rng.randint(1, 2000), MAX_TRANSPORT_PAYLOAD])
    return rng.randbytes(size)


# -- the tests ------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["ours-to-theirs", "theirs-to-ours"])
@pytest.mark.parametrize("name", NAMES)
def test_interoperates(name: str, direction: str) -> None:
    rng = _rng(name, direction)
    pattern = _pattern(name)
    for _ in range(SESSIONS_PER_CASE):
        setup = _Setup.draw(name, rng)
        ours_initiates = direction == "ours-to-theirs"
        initiator: Party
        responder: Party
        if ours_initiates:
            initiator = setup.ours(initiator=True, inject_ephemeral=False)
            responder = setup.theirs(initiator=False, inject_ephemeral=False)
        else:
            initiator = setup.theirs(initiator=True, inject_ephemeral=False)
            responder = setup.ours(initiator=False, inject_ephemeral=False)

        sender, receiver = initiator, responder
        messages = 0
        while not (initiator.complete and responder.complete):
            payload = _handshake_payload(rng)
            assert receiver.read(sender.write(payload)) == payload
            messages += 1
            sender, receiver = receiver, sender
        assert messages == MESSAGE_COUNT[pattern]
        assert initiator.handshake_hash() == responder.handshake_hash()

        # Our side has authenticated exactly the static key the pattern transmits.
        ours = initiator if ours_initiates else responder
        if ours_initiates:
            expected = setup.responder_static.public if _responder_has_static(pattern) else None
        else:
            expected = setup.initiator_static.public if _initiator_has_static(pattern) else None
        assert ours.remote_static() == expected

        for index in range(TRANSPORT_MESSAGES):
            forward = index % 2 == 0 or _one_way(pattern)
            sender, receiver = (initiator, responder) if forward else (responder, initiator)
            payload = _transport_payload(rng)
            assert receiver.decrypt(sender.encrypt(payload)) == payload


@pytest.mark.parametrize("name", NAMES)
def test_transcripts_are_byte_identical(name: str) -> None:
    """With every key injected, both implementations write the very same bytes."""
    rng = _rng(name, "lockstep")
    one_way = _one_way(_pattern(name))
    for _ in range(SESSIONS_PER_CASE):
        setup = _Setup.draw(name, rng)
        # Two sessions in lockstep: ours -> theirs and theirs -> ours.
        a_init = setup.ours(initiator=True, inject_ephemeral=True)
        a_resp = setup.theirs(initiator=False, inject_ephemeral=True)
        b_init = setup.theirs(initiator=True, inject_ephemeral=True)
        b_resp = setup.ours(initiator=False, inject_ephemeral=True)

        turn = 0
        while not (a_init.complete and a_resp.complete):
            a_send, a_recv = (a_init, a_resp) if turn % 2 == 0 else (a_resp, a_init)
            b_send, b_recv = (b_init, b_resp) if turn % 2 == 0 else (b_resp, b_init)
            payload = _handshake_payload(rng)
            message = a_send.write(payload)
            assert b_send.write(payload) == message, f"handshake message {turn} differs"
            assert a_recv.read(message) == payload
            assert b_recv.read(message) == payload
            turn += 1
        assert b_init.complete
        assert b_resp.complete
        handshake_hash = a_init.handshake_hash()
        assert {
            a_resp.handshake_hash(),
            b_init.handshake_hash(),
            b_resp.handshake_hash(),
        } == {handshake_hash}

        # Transport both ways, with a rekey of each direction half way (Noise §11.3).
        for index in range(TRANSPORT_MESSAGES):
            if index == TRANSPORT_MESSAGES // 2:
                for party in (a_init, b_init):
                    party.rekey_send()
                    if not one_way:
                        party.rekey_receive()
                for party in (a_resp, b_resp):
                    party.rekey_receive()
                    if not one_way:
                        party.rekey_send()
            forward = index % 2 == 0 or one_way
            a_send, a_recv = (a_init, a_resp) if forward else (a_resp, a_init)
            b_send, b_recv = (b_init, b_resp) if forward else (b_resp, b_init)
            payload = _transport_payload(rng)
            ciphertext = a_send.encrypt(payload)
            assert b_send.encrypt(payload) == ciphertext, f"transport message {index} differs"
            assert a_recv.decrypt(ciphertext) == payload
            assert b_recv.decrypt(ciphertext) == payload
