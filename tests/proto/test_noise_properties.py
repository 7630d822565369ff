"""Properties of ``onionpost.proto.noise`` that must hold for every input.

Tampering, garbage, exhausted nonces, oversized messages and low-order keys
must each end in one of our exceptions, of the right side of the tree
(``RemoteProtocolError`` for what the peer sent, ``LocalProtocolError`` for
misuse), and never in a half-agreed session. Expected values (rekeyed keys,
message sizes, invalid points) are derived here from the Noise spec, FIPS 203
sizes as ``cryptography`` reports them, and ``cryptography``'s own primitives,
not copied from the code under test.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onionpost.errors import (
    AuthenticationError,
    ConfigError,
    DecryptError,
    LocalProtocolError,
    NonceExhaustedError,
    RemoteProtocolError,
)
from onionpost.proto._crypto import ChaChaPoly, KemKeyPair
from onionpost.proto.noise import CipherState, HandshakeState, KeyPair, NoiseProtocol

# Noise §3 and §5.1.
MAX_MESSAGE = 65535
TAG = 16
DHLEN = 32
MAX_NONCE = 2**64 - 1

CLASSICAL = [f"Noise_{p}_25519_ChaChaPoly_BLAKE2b" for p in ("NN", "NK", "XX", "XK", "IK", "KK")]
XX = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
IK = "Noise_IK_25519_ChaChaPoly_SHA256"
XX_PSK = "Noise_XXpsk0+psk2_25519_ChaChaPoly_BLAKE2b"
XX_HFS = "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b"
XX_HFS_SHA256 = "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256"
ALL_NAMES = [*CLASSICAL, IK, XX_PSK, "Noise_NNpsk2_25519_ChaChaPoly_SHA256", XX_HFS]

# Whether each handshake message's payload is encrypted, so that its tag
# authenticates h, the whole transcript so far. It is, once any DH or PSK has
# keyed the CipherState before the payload (Noise §5.3, §9.2: with a PSK even
# "e" calls MixKey). Without a key the payload travels in clear and a change to
# it, or to "e" / "e1", is only caught by the next tag.
PAYLOAD_TAGGED = {
    "Noise_NN_25519_ChaChaPoly_BLAKE2b": (False, True),
    "Noise_NK_25519_ChaChaPoly_BLAKE2b": (True, True),
    "Noise_XX_25519_ChaChaPoly_BLAKE2b": (False, True, True),
    "Noise_XK_25519_ChaChaPoly_BLAKE2b": (True, True, True),
    "Noise_IK_25519_ChaChaPoly_BLAKE2b": (True, True),
    "Noise_KK_25519_ChaChaPoly_BLAKE2b": (True, True),
    IK: (True, True),
    XX_PSK: (True, True, True),
    "Noise_NNpsk2_25519_ChaChaPoly_SHA256": (False, True),
    XX_HFS: (False, True, True),
}

# FIPS 203 sizes for ML-KEM-768, as an independent library reports them.
_KEM_PRIVATE = mlkem.MLKEM768PrivateKey.generate()
KEM_PUBLIC_LEN = len(_KEM_PRIVATE.public_key().public_bytes_raw())
KEM_CIPHERTEXT_LEN = len(_KEM_PRIVATE.public_key().encapsulate()[1])

# X25519 inputs of small order (RFC 7748 §6.1, Noise §12.1): zero, one, a point
# of order 8, and p - 1. test_low_order_points_are_low_order checks each with
# ``cryptography``.
LOW_ORDER_POINTS = {
    "zero": bytes(32),
    "one": (1).to_bytes(32, "little"),
    "order-8": bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    "p-minus-1": (2**255 - 19 - 1).to_bytes(32, "little"),
}


def _secret(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _keypair(label: str) -> KeyPair:
    return KeyPair.from_private(_secret(label))


def _nonce(n: int) -> bytes:
    # Noise §12.3: 32 bits of zeros, then the little-endian 64-bit counter.
    return bytes(4) + n.to_bytes(8, "little")


def _flip(message: bytes, bit: int) -> bytes:
    out = bytearray(message)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@dataclass
class _Pair:
    initiator: HandshakeState
    responder: HandshakeState

    def sides(self, index: int) -> tuple[HandshakeState, HandshakeState]:
        """(writer, reader) of handshake message ``index``."""
        if index % 2 == 0:
            return self.initiator, self.responder
        return self.responder, self.initiator


def _pair(name: str, *, initiator_static: KeyPair | None = None) -> _Pair:
    """Both roles of ``name`` with fixed, reproducible keys, ephemerals included."""
    protocol = NoiseProtocol.from_name(name)
    pattern = name.split("_")[1][:2]
    i_static = initiator_static or _keypair("initiator static")
    r_static = _keypair("responder static")
    psks = [_secret(f"psk {n}") for n in range(protocol.psk_count)]
    initiator = HandshakeState(
        protocol,
        initiator=True,
        prologue=b"onionpost test",
        static=i_static if pattern[0] in "XIK" else None,
        remote_static=r_static.public if pattern[1] == "K" else None,
        psks=psks,
        ephemeral=_keypair("initiator ephemeral"),
        kem_seed=_secret("kem d") + _secret("kem z") if protocol.hybrid else None,
    )
    responder = HandshakeState(
        protocol,
        initiator=False,
        prologue=b"onionpost test",
        static=r_static if pattern[1] in "XK" else None,
        remote_static=i_static.public if pattern[0] == "K" else None,
        psks=psks,
        ephemeral=_keypair("responder ephemeral"),
    )
    return _Pair(initiator, responder)


def _run(pair: _Pair, payloads: list[bytes]) -> list[bytes]:
    transcript = []
    for index, payload in enumerate(payloads):
        writer, reader = pair.sides(index)
        message = writer.write_message(payload)
        assert reader.read_message(message) == payload
        transcript.append(message)
    assert pair.initiator.complete
    assert pair.responder.complete
    return transcript


def _message_count(name: str) -> int:
    return len(PAYLOAD_TAGGED[name])


# -- tampering with handshake messages ------------------------------------------------


@pytest.mark.parametrize("name", [XX, IK, XX_PSK, XX_HFS])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_flipped_bit_in_a_handshake_message_never_yields_agreement(
    name: str, data: st.DataObject
) -> None:
    tagged = PAYLOAD_TAGGED[name]
    target = data.draw(st.integers(0, len(tagged) - 1), label="message")
    payloads = data.draw(
        st.lists(st.binary(max_size=40), min_size=len(tagged), max_size=len(tagged)),
        label="payloads",
    )
    pair = _pair(name)
    for index in range(target):
        writer, reader = pair.sides(index)
        assert reader.read_message(writer.write_message(payloads[index])) == payloads[index]

    writer, reader = pair.sides(target)
    honest = writer.write_message(payloads[target])
    bit = data.draw(st.integers(0, len(honest) * 8 - 1), label="bit")
    forged = _flip(honest, bit)

    if tagged[target]:
        # The payload's tag covers h, hence every byte of this message.
        with pytest.raises(RemoteProtocolError):
            reader.read_message(forged)
        assert not reader.complete
        return

    # Only the first message of XX / XXhfs is untagged: "e" (and "e1"), then
    # the payload, in clear. The reader cannot tell yet ...
    got = reader.read_message(forged)
    header = len(honest) - len(payloads[target])
    if bit >= header * 8:
        assert got != payloads[target]
    # ... but its view of h (and, for a changed key, of the DH/KEM secrets) now
    # differs, so the reply cannot be read. The reply's writer may fail first:
    # a changed "e" may be a low-order point, a changed "e1" an invalid ML-KEM key.
    next_writer, next_reader = pair.sides(target + 1)
    try:
        reply = next_writer.write_message(payloads[target + 1])
    except AuthenticationError:
        assert bit < header * 8, "only a changed public key may fail the reply's writer"
    else:
        with pytest.raises(RemoteProtocolError):
            next_reader.read_message(reply)
    assert not (pair.initiator.complete and pair.responder.complete)


@pytest.mark.parametrize("name", ALL_NAMES)
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_bytes_to_read_message_raise_only_remote_protocol_errors(
    name: str, data: st.DataObject
) -> None:
    """Garbage of any length is answered with a RemoteProtocolError or accepted, nothing else."""
    size = data.draw(
        st.one_of(
            st.integers(0, 70000),
            st.integers(0, 1300),
            st.sampled_from([0, 15, 16, 31, 32, 47, 48, 80, 1216, 1232, 65535, 65536]),
        ),
        label="size",
    )
    seed = data.draw(st.binary(min_size=16, max_size=16), label="seed")
    # Expand the seed: hypothesis draws 70000 raw bytes too slowly.
    garbage = bytes(
        b for i in range(0, size, 64) for b in hashlib.blake2b(seed + i.to_bytes(4)).digest()
    )[:size]
    reader_is_responder = data.draw(st.booleans(), label="responder")

    pair = _pair(name)
    if reader_is_responder:
        reader = pair.responder
    else:
        pair.responder.read_message(pair.initiator.write_message(b""))
        pair.responder.write_message(b"")  # the honest reply is discarded
        reader = pair.initiator
    try:
        reader.read_message(garbage)
    except RemoteProtocolError:
        return
    # Accepted: only possible for an unauthenticated first message that has
    # room for its cleartext keys.
    assert reader_is_responder
    assert not PAYLOAD_TAGGED[name][0]
    assert len(_pair(name).initiator.write_message(b"")) <= size <= MAX_MESSAGE


@pytest.mark.parametrize("name", ALL_NAMES)
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_handshake_is_spent_after_a_failed_read(name: str, data: st.DataObject) -> None:
    tagged = PAYLOAD_TAGGED[name]
    target = data.draw(st.sampled_from([i for i, t in enumerate(tagged) if t]), label="message")
    pair = _pair(name)
    for index in range(target):
        writer, reader = pair.sides(index)
        reader.read_message(writer.write_message(b"x"))
    writer, reader = pair.sides(target)
    honest = writer.write_message(b"payload")
    corruption = data.draw(st.sampled_from(["flip", "truncate", "extend", "too-long"]))
    if corruption == "flip":
        forged = _flip(honest, data.draw(st.integers(0, len(honest) * 8 - 1), label="bit"))
    elif corruption == "truncate":
        forged = honest[: data.draw(st.integers(0, len(honest) - 1), label="length")]
    elif corruption == "extend":
        forged = honest + data.draw(st.binary(min_size=1, max_size=20), label="tail")
    else:
        forged = honest + bytes(MAX_MESSAGE + 1 - len(honest))
    with pytest.raises(RemoteProtocolError):
        reader.read_message(forged)

    # Nothing more can be done with it, not even reading the honest message.
    with pytest.raises(LocalProtocolError):
        reader.read_message(honest)
    with pytest.raises(LocalProtocolError):
        reader.write_message(b"")
    with pytest.raises(LocalProtocolError):
        reader.max_payload()
    with pytest.raises(LocalProtocolError):
        reader.result()
    assert not reader.complete


def _invalid_kem_public_key() -> bytes:
    """An ML-KEM-768 encapsulation key whose first coefficient is 4095 >= q = 3329."""
    key = bytearray(_KEM_PRIVATE.public_key().public_bytes_raw())
    key[0] = 0xFF
    key[1] |= 0x0F
    return bytes(key)


def test_invalid_kem_public_key_is_invalid() -> None:
    """Independent check of the input below: FIPS 203 §7.2's modulus check refuses it."""
    with pytest.raises(ValueError):
        mlkem.MLKEM768PublicKey.from_public_bytes(_invalid_kem_public_key())


@pytest.mark.parametrize(
    ("name", "forge"),
    [
        # The peer's low-order "e" is only used, and refused, at our "ee".
        ("Noise_NN_25519_ChaChaPoly_SHA256", lambda m: LOW_ORDER_POINTS["zero"] + m[DHLEN:]),
        (XX, lambda m: LOW_ORDER_POINTS["order-8"] + m[DHLEN:]),
        # The peer's invalid "e1" is only used, and refused, at our "ekem1".
        (XX_HFS, lambda m: m[:DHLEN] + _invalid_kem_public_key() + m[DHLEN + KEM_PUBLIC_LEN :]),
    ],
    ids=["NN-low-order-e", "XX-low-order-e", "XXhfs-invalid-e1"],
)
def test_handshake_is_spent_after_a_write_fails_on_what_the_peer_sent(
    name: str, forge: Callable[[bytes], bytes]
) -> None:
    pair = _pair(name)
    pair.responder.read_message(forge(pair.initiator.write_message(b"")))
    with pytest.raises(AuthenticationError):
        pair.responder.write_message(b"")
    # A retry must not run the half-absorbed message again.
    with pytest.raises(LocalProtocolError):
        pair.responder.write_message(b"")
    with pytest.raises(LocalProtocolError):
        pair.responder.result()
    assert not pair.responder.complete


def test_failed_read_does_not_reveal_an_unproven_remote_static() -> None:
    # An impostor announces the victim's public key without its private key:
    # "s" decrypts, but the responder's "se" differs from the impostor's.
    victim = _keypair("victim")
    impostor = KeyPair(_secret("impostor"), victim.public)
    pair = _pair(XX, initiator_static=impostor)
    pair.responder.read_message(pair.initiator.write_message(b""))
    pair.initiator.read_message(pair.responder.write_message(b""))
    with pytest.raises(DecryptError):
        pair.responder.read_message(pair.initiator.write_message(b""))
    with pytest.raises(LocalProtocolError):
        _ = pair.responder.remote_static


# -- tampering with transport messages ------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    ad=st.binary(max_size=20),
    earlier=st.integers(0, 4),
    payload=st.binary(max_size=300),
    data=st.data(),
)
def test_flipped_bit_in_a_transport_message_fails_and_keeps_the_nonce(
    key: bytes, ad: bytes, earlier: int, payload: bytes, data: st.DataObject
) -> None:
    send, receive = CipherState(key), CipherState(key)
    for _ in range(earlier):
        receive.decrypt_with_ad(ad, send.encrypt_with_ad(ad, b"earlier"))
    ciphertext = send.encrypt_with_ad(ad, payload)
    bit = data.draw(st.integers(0, len(ciphertext) * 8 - 1), label="bit")
    with pytest.raises(DecryptError):
        receive.decrypt_with_ad(ad, _flip(ciphertext, bit))
    assert receive.n == earlier
    assert receive.decrypt_with_ad(ad, ciphertext) == payload
    assert receive.n == earlier + 1


@pytest.mark.parametrize("length", [0, 1, TAG - 1])
def test_transport_message_shorter_than_a_tag_is_a_decrypt_error(length: int) -> None:
    receive = CipherState(_secret("key"))
    with pytest.raises(DecryptError):
        receive.decrypt_with_ad(b"", bytes(length))
    assert receive.n == 0


# -- nonces and rekey -----------------------------------------------------------------


def test_encrypt_stops_at_the_reserved_nonce() -> None:
    key = _secret("key")
    cs = CipherState(key)
    cs.set_nonce(MAX_NONCE - 1)
    ciphertext = cs.encrypt_with_ad(b"ad", b"last")
    assert ciphertext == ChaCha20Poly1305(key).encrypt(_nonce(MAX_NONCE - 1), b"last", b"ad")
    assert cs.n == MAX_NONCE
    with pytest.raises(NonceExhaustedError):
        cs.encrypt_with_ad(b"ad", b"one too many")
    assert cs.n == MAX_NONCE


def test_decrypt_stops_at_the_reserved_nonce() -> None:
    key = _secret("key")
    cs = CipherState(key)
    cs.set_nonce(MAX_NONCE - 1)
    ciphertext = ChaCha20Poly1305(key).encrypt(_nonce(MAX_NONCE - 1), b"last", b"ad")
    assert cs.decrypt_with_ad(b"ad", ciphertext) == b"last"
    # Even a message that would authenticate under nonce 2^64-1 is refused.
    reserved = ChaCha20Poly1305(key).encrypt(_nonce(MAX_NONCE), b"reserved", b"ad")
    with pytest.raises(NonceExhaustedError):
        cs.decrypt_with_ad(b"ad", reserved)
    assert cs.n == MAX_NONCE


def test_nonce_exhaustion_is_a_local_protocol_error() -> None:
    assert issubclass(NonceExhaustedError, LocalProtocolError)


@pytest.mark.parametrize("nonce", [-1, MAX_NONCE + 1, 2**128])
def test_set_nonce_refuses_values_outside_64_bits(nonce: int) -> None:
    cs = CipherState(_secret("key"))
    cs.set_nonce(3)
    with pytest.raises(LocalProtocolError):
        cs.set_nonce(nonce)
    assert cs.n == 3


@settings(max_examples=50, deadline=None)
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.one_of(st.integers(0, 1000), st.integers(0, MAX_NONCE - 1)),
    rekeys=st.integers(1, 3),
    plaintext=st.binary(max_size=100),
)
def test_rekey_follows_noise_4_2(key: bytes, nonce: int, rekeys: int, plaintext: bytes) -> None:
    cs = CipherState(key)
    cs.set_nonce(nonce)
    expected_key = key
    for _ in range(rekeys):
        cs.rekey()
        # REKEY(k) = ENCRYPT(k, 2^64-1, zerolen, zeros)[:32]
        expected_key = ChaCha20Poly1305(expected_key).encrypt(_nonce(MAX_NONCE), bytes(32), b"")[
            :32
        ]
        assert cs.n == nonce
    expected = ChaCha20Poly1305(expected_key).encrypt(_nonce(nonce), plaintext, b"ad")
    assert cs.encrypt_with_ad(b"ad", plaintext) == expected


@pytest.mark.parametrize("name", [XX, XX_PSK, XX_HFS])
def test_messages_round_trip_after_both_sides_rekey(name: str) -> None:
    pair = _pair(name)
    _run(pair, [b""] * _message_count(name))
    i, r = pair.initiator.result(), pair.responder.result()
    assert r.receive.decrypt_with_ad(b"", i.send.encrypt_with_ad(b"", b"before")) == b"before"

    i.send.rekey()
    assert i.send.n == 1
    after = i.send.encrypt_with_ad(b"", b"after")
    # The receiver still holds the old key: the message fails, the nonce stays.
    with pytest.raises(DecryptError):
        r.receive.decrypt_with_ad(b"", after)
    r.receive.rekey()
    assert r.receive.n == 1
    assert r.receive.decrypt_with_ad(b"", after) == b"after"
    assert (i.send.n, r.receive.n) == (2, 2)
    # The other direction is untouched by the rekey of this one.
    assert i.receive.decrypt_with_ad(b"", r.send.encrypt_with_ad(b"", b"reply")) == b"reply"


def test_rekey_without_a_key_is_refused() -> None:
    with pytest.raises(LocalProtocolError):
        CipherState().rekey()


# -- sizes ---------------------------------------------------------------------------


@pytest.mark.parametrize("then", ["max", "small"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_oversized_handshake_payload_is_refused_before_any_change(name: str, then: str) -> None:
    pair = _pair(name)
    for index in range(_message_count(name)):
        writer, reader = pair.sides(index)
        largest = writer.max_payload()
        h_before = writer.handshake_hash
        with pytest.raises(LocalProtocolError):
            writer.write_message(bytes(largest + 1))
        assert writer.handshake_hash == h_before
        assert writer.is_my_turn
        assert writer.max_payload() == largest

        payload = _secret(f"payload {index}") * (largest // 32 + 1)
        payload = payload[:largest] if then == "max" else payload[:100]
        message = writer.write_message(payload)
        if then == "max":
            assert len(message) == MAX_MESSAGE
        assert reader.read_message(message) == payload
    assert pair.initiator.result().handshake_hash == pair.responder.result().handshake_hash


def test_largest_transport_payload_fills_one_noise_message() -> None:
    """CipherState encrypts a 65519-byte payload into exactly 65535 bytes."""
    key = _secret("key")
    payload = _secret("payload") * (65519 // 32) + bytes(65519 % 32)
    send, receive = CipherState(key), CipherState(key)
    ciphertext = send.encrypt_with_ad(b"", payload)
    assert len(ciphertext) == MAX_MESSAGE
    assert receive.decrypt_with_ad(b"", ciphertext) == payload


@pytest.mark.parametrize("name", ALL_NAMES)
def test_handshake_message_over_65535_bytes_is_refused(name: str) -> None:
    pair = _pair(name)
    pair.initiator.write_message(b"")
    with pytest.raises(RemoteProtocolError):
        pair.responder.read_message(bytes(MAX_MESSAGE + 1))
    with pytest.raises(LocalProtocolError):
        pair.responder.read_message(bytes(MAX_MESSAGE))


def test_handshake_message_of_exactly_65535_bytes_is_read() -> None:
    # NN's first message is "e" and a cleartext payload: any 65535 bytes parse.
    pair = _pair("Noise_NN_25519_ChaChaPoly_SHA256")
    pair.initiator.write_message(b"")
    message = _keypair("e").public + bytes(MAX_MESSAGE - DHLEN)
    assert pair.responder.read_message(message) == bytes(MAX_MESSAGE - DHLEN)


# -- low-order keys -------------------------------------------------------------------


@pytest.mark.parametrize("point", LOW_ORDER_POINTS.values(), ids=LOW_ORDER_POINTS.keys())
def test_low_order_points_are_low_order(point: bytes) -> None:
    """Independent check of the inputs below: X25519 with them yields all zeros."""
    with pytest.raises(ValueError):
        x25519.X25519PrivateKey.generate().exchange(x25519.X25519PublicKey.from_public_bytes(point))


# Patterns whose responder does a DH with "re" while reading the first message.
DH_ON_FIRST_READ = {"NN": False, "NK": True, "XX": False, "XK": True, "IK": True, "KK": True}


@pytest.mark.parametrize("point", LOW_ORDER_POINTS.values(), ids=LOW_ORDER_POINTS.keys())
@pytest.mark.parametrize("name", CLASSICAL)
def test_low_order_ephemeral_from_initiator_fails_at_the_dh(name: str, point: bytes) -> None:
    pair = _pair(name)
    message = pair.initiator.write_message(b"")
    forged = point + message[DHLEN:]
    if DH_ON_FIRST_READ[name.split("_")[1]]:
        # AuthenticationError itself, not DecryptError: the DH refused it, not a tag.
        with pytest.raises(AuthenticationError) as info:
            pair.responder.read_message(forged)
    else:
        pair.responder.read_message(forged)
        with pytest.raises(AuthenticationError) as info:
            pair.responder.write_message(b"")  # "ee" is the first DH with re
    assert type(info.value) is AuthenticationError


@pytest.mark.parametrize("point", LOW_ORDER_POINTS.values(), ids=LOW_ORDER_POINTS.keys())
@pytest.mark.parametrize("name", [*CLASSICAL, XX_HFS])
def test_low_order_ephemeral_from_responder_fails_at_the_dh(name: str, point: bytes) -> None:
    pair = _pair(name)
    pair.responder.read_message(pair.initiator.write_message(b""))
    message = pair.responder.write_message(b"")
    with pytest.raises(AuthenticationError) as info:
        pair.initiator.read_message(point + message[DHLEN:])
    assert type(info.value) is AuthenticationError


@pytest.mark.parametrize("point", LOW_ORDER_POINTS.values(), ids=LOW_ORDER_POINTS.keys())
def test_low_order_static_key_fails_at_the_dh(point: bytes) -> None:
    # A (malicious) initiator announces a low-order "s": it encrypts fine, but
    # the responder's "se" DH with it must be refused.
    liar = KeyPair(_secret("liar"), point)
    pair = _pair(XX, initiator_static=liar)
    pair.responder.read_message(pair.initiator.write_message(b""))
    pair.initiator.read_message(pair.responder.write_message(b""))
    message = pair.initiator.write_message(b"")
    with pytest.raises(AuthenticationError) as info:
        pair.responder.read_message(message)
    assert type(info.value) is AuthenticationError


# -- hybrid forward secrecy (hfs, ML-KEM-768) ----------------------------------------------


@pytest.mark.parametrize("name", [XX_HFS, XX_HFS_SHA256])
@settings(max_examples=15, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), min_size=3, max_size=3))
def test_hybrid_round_trip_and_message_sizes(name: str, payloads: list[bytes]) -> None:
    pair = _pair(name)
    m1, m2, m3 = _run(pair, payloads)
    # -> e, e1                      e and e1 in clear: no key yet
    assert len(m1) == DHLEN + KEM_PUBLIC_LEN + len(payloads[0])
    # <- e, ee, ekem1, s, es        everything after ee is encrypted
    assert len(m2) == DHLEN + (KEM_CIPHERTEXT_LEN + TAG) + (DHLEN + TAG) + len(payloads[1]) + TAG
    # -> s, se
    assert len(m3) == (DHLEN + TAG) + len(payloads[2]) + TAG
    i, r = pair.initiator.result(), pair.responder.result()
    assert i.handshake_hash == r.handshake_hash
    assert i.remote_static == _keypair("responder static").public
    assert r.remote_static == _keypair("initiator static").public
    assert r.receive.decrypt_with_ad(b"", i.send.encrypt_with_ad(b"", b"ping")) == b"ping"
    assert i.receive.decrypt_with_ad(b"", r.send.encrypt_with_ad(b"", b"pong")) == b"pong"


@settings(max_examples=60, deadline=None)
@given(bit=st.integers(0, (KEM_CIPHERTEXT_LEN + TAG) * 8 - 1))
def test_flipped_bit_in_the_kem_ciphertext_fails_the_initiator(bit: int) -> None:
    pair = _pair(XX_HFS)
    pair.responder.read_message(pair.initiator.write_message(b""))
    message = pair.responder.write_message(b"")
    with pytest.raises(AuthenticationError):
        pair.initiator.read_message(_flip(message, DHLEN * 8 + bit))


def test_kem_shared_secret_is_mixed_into_the_keys() -> None:
    """A responder that sends the right ciphertext but keys on another secret is not understood."""
    pair = _pair(XX_HFS)

    def wrong_secret(public_key: bytes) -> tuple[bytes, bytes]:
        _, ciphertext = mlkem.MLKEM768PublicKey.from_public_bytes(public_key).encapsulate()
        return ciphertext, bytes(32)

    responder = HandshakeState(
        XX_HFS,
        initiator=False,
        prologue=b"onionpost test",
        static=_keypair("responder static"),
        ephemeral=_keypair("responder ephemeral"),
        encapsulate=wrong_secret,
    )
    responder.read_message(pair.initiator.write_message(b""))
    with pytest.raises(DecryptError):
        pair.initiator.read_message(responder.write_message(b""))


def test_hybrid_and_classical_handshakes_with_the_same_keys_differ() -> None:
    classical, hybrid = _pair(XX), _pair(XX_HFS)
    _run(classical, [b"a", b"b", b"c"])
    _run(hybrid, [b"a", b"b", b"c"])
    c, h = classical.initiator.result(), hybrid.initiator.result()
    assert c.remote_static == h.remote_static
    assert c.handshake_hash != h.handshake_hash
    assert c.send.encrypt_with_ad(b"", b"same") != h.send.encrypt_with_ad(b"", b"same")


@pytest.mark.parametrize(
    "name",
    [
        "Noise_XXhfs_25519_ChaChaPoly_BLAKE2b",  # hfs without its KEM
        "Noise_XX_25519+MLKEM768_ChaChaPoly_BLAKE2b",  # a KEM without hfs
        "Noise_XXhfs_25519+Kyber768_ChaChaPoly_BLAKE2b",
        "Noise_XXhfs_448+MLKEM768_ChaChaPoly_BLAKE2b",
        "Noise_XX_448_ChaChaPoly_BLAKE2b",
        "Noise_XX_25519_AESGCM_SHA256",
        "Noise_XX_25519_ChaChaPoly_SHA512",
        "Noise_XX_25519_ChaChaPoly_BLAKE2s",
        "Noise_NX_25519_ChaChaPoly_SHA256",
        "Noise_Nhfs_25519+MLKEM768_ChaChaPoly_SHA256",  # hfs needs a reply
        "Noise_Xhfs+psk1_25519+MLKEM768_ChaChaPoly_BLAKE2b",
        "Noise_Xpsk2_25519_ChaChaPoly_BLAKE2b",  # past the only message
        "Noise_I_25519_ChaChaPoly_SHA256",
        "Noise_IXfallback_25519_ChaChaPoly_SHA256",
        "Noise_XXfallback_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk4_25519_ChaChaPoly_SHA256",  # past the last of 3 messages
        "Noise_NNpsk3_25519_ChaChaPoly_SHA256",  # past the last of 2 messages
        "Noise_XXpsk0+psk0_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk0psk2_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk0+_25519_ChaChaPoly_SHA256",
        "Noise_XXpsk10_25519_ChaChaPoly_SHA256",
        "Noise_XXhfs+hfs_25519+MLKEM768_ChaChaPoly_SHA256",
        "Noise_XXpsk0+hfs_25519+MLKEM768_ChaChaPoly_SHA256",
        "Noise_xx_25519_ChaChaPoly_SHA256",
        "Noise_XX_25519_ChaChaPoly",
        "Noise_XX_25519_ChaChaPoly_SHA256_extra",
        "NoiseXX_25519_ChaChaPoly_SHA256",
        " Noise_XX_25519_ChaChaPoly_SHA256",
        "",
    ],
)
def test_protocol_name_is_refused(name: str) -> None:
    with pytest.raises(ConfigError):
        NoiseProtocol.from_name(name)


@pytest.mark.parametrize("junk", ["\n", "\r\n", " ", "\x00"])
def test_protocol_name_with_trailing_junk_is_refused(junk: str) -> None:
    # A "$"-anchored pattern would let "\n" through, and into h.
    with pytest.raises(ConfigError):
        NoiseProtocol.from_name("Noise_XX_25519_ChaChaPoly_SHA256" + junk)


@pytest.mark.parametrize(
    "name",
    [
        "Noise_NNhfs_25519+MLKEM768_ChaChaPoly_SHA256",
        "Noise_XXhfs+psk0_25519+MLKEM768_ChaChaPoly_SHA256",
        "Noise_XXpsk2+psk0_25519_ChaChaPoly_SHA256",
        "Noise_KKpsk0+psk1+psk2_25519_ChaChaPoly_BLAKE2b",
        "Noise_N_25519_ChaChaPoly_SHA256",
        "Noise_Kpsk0_25519_ChaChaPoly_SHA256",
        "Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b",
        "Noise_Xpsk0+psk1_25519_ChaChaPoly_BLAKE2b",
    ],
)
def test_protocol_name_is_accepted(name: str) -> None:
    assert NoiseProtocol.from_name(name).name == name


# -- secrets never show in repr ----------------------------------------------------------


def _forms(secret: bytes) -> list[str]:
    return [secret.hex(), secret.hex().upper(), repr(secret), repr(secret)[2:-1][:24]]


def _assert_hidden(text: str, *secrets: bytes) -> None:
    for secret in secrets:
        for form in _forms(secret):
            assert form not in text


def test_repr_hides_private_keys() -> None:
    static, ephemeral = _keypair("static"), _keypair("ephemeral")
    cipher_key, psk = _secret("cipher key"), _secret("psk")
    kem_seed = _secret("kem d") + _secret("kem z")

    assert static.public.hex() in repr(static) or repr(static.public) in repr(static)
    _assert_hidden(repr(static), static.private)
    _assert_hidden(str(static), static.private)
    _assert_hidden(repr(ChaChaPoly(cipher_key)), cipher_key)
    _assert_hidden(repr(CipherState(cipher_key)), cipher_key)
    _assert_hidden(repr(KemKeyPair(kem_seed)), kem_seed, kem_seed[:32], kem_seed[32:])

    hs = HandshakeState(
        "Noise_XXpsk3_25519_ChaChaPoly_SHA256",
        initiator=True,
        static=static,
        psks=[psk],
        ephemeral=ephemeral,
    )
    secrets = (static.private, ephemeral.private, psk)
    _assert_hidden(repr(hs), *secrets)
    _assert_hidden(repr(hs.protocol), *secrets)
    hs.write_message(b"")
    _assert_hidden(repr(hs), *secrets)


# -- one-way patterns (Noise §7.4) --------------------------------------------------------

ONE_WAY = [
    "Noise_N_25519_ChaChaPoly_BLAKE2b",
    "Noise_K_25519_ChaChaPoly_SHA256",
    "Noise_X_25519_ChaChaPoly_BLAKE2b",
    "Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b",
]


def _one_way_pair(name: str) -> _Pair:
    protocol = NoiseProtocol.from_name(name)
    pattern = name.split("_")[1].split("psk", maxsplit=1)[0]
    i_static, r_static = _keypair("initiator static"), _keypair("responder static")
    psks = [_secret(f"psk {n}") for n in range(protocol.psk_count)]
    initiator = HandshakeState(
        protocol,
        initiator=True,
        static=i_static if pattern in "KX" else None,
        remote_static=r_static.public,
        psks=psks,
    )
    responder = HandshakeState(
        protocol,
        initiator=False,
        static=r_static,
        remote_static=i_static.public if pattern == "K" else None,
        psks=psks,
    )
    return _Pair(initiator, responder)


@pytest.mark.parametrize("name", ONE_WAY)
def test_one_way_handshake_is_one_message_then_one_direction(name: str) -> None:
    pair = _one_way_pair(name)
    assert NoiseProtocol.from_name(name).one_way
    assert not pair.responder.is_my_turn
    with pytest.raises(LocalProtocolError):
        pair.responder.write_message(b"")
    _run(pair, [b"sealed"])
    sender, recipient = pair.initiator.result(), pair.responder.result()
    assert sender.handshake_hash == recipient.handshake_hash
    expected_static = _keypair("initiator static").public if name[6] in "KX" else None
    assert recipient.remote_static == expected_static
    for n in range(3):
        message = sender.send.encrypt_with_ad(b"", b"%d" % n)
        assert recipient.receive.decrypt_with_ad(b"", message) == b"%d" % n
    # The other direction does not exist: never a pass-through in the clear.
    for absent in (sender.receive, recipient.send):
        assert not absent.has_key()
        with pytest.raises(LocalProtocolError):
            absent.encrypt_with_ad(b"", b"in the clear?")
        with pytest.raises(LocalProtocolError):
            absent.decrypt_with_ad(b"", b"x" * TAG)
        with pytest.raises(LocalProtocolError):
            absent.rekey()
        with pytest.raises(LocalProtocolError):
            absent.initialize_key(bytes(32))


def test_one_way_x_payload_size_is_the_envelope_overhead() -> None:
    # Xpsk1: e (32), s encrypted (32 + 16), payload + 16.
    pair = _one_way_pair("Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b")
    assert pair.initiator.max_payload() == MAX_MESSAGE - 32 - 48 - TAG
    assert len(pair.initiator.write_message(b"p" * 100)) == 32 + 48 + 100 + TAG


def test_one_way_tampered_message_is_refused() -> None:
    pair = _one_way_pair("Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b")
    message = bytearray(pair.initiator.write_message(b"payload"))
    message[40] ^= 1
    with pytest.raises(AuthenticationError):
        pair.responder.read_message(bytes(message))
    with pytest.raises(LocalProtocolError):
        pair.responder.result()
