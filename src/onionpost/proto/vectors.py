"""Replay Noise test vectors in the Noise wiki's JSON format.

A vector names a protocol, the keys of both sides and a list of messages
``{payload, ciphertext}``. Message ``i`` is sent by the initiator when ``i``
is even, through the handshake and on into transport, where each message is
``EncryptWithAd(b"", payload)`` on the CipherStates from ``Split()``; after
a one-way handshake (Noise §7.4) every transport message is the initiator's,
as in cacophony's vectors. A
vector passes when every ciphertext matches byte for byte, every payload
decrypts back, and the handshake hash (where given) matches::

    {"protocol_name": "Noise_XX_25519_ChaChaPoly_BLAKE2b",
     "init_prologue": "4a6f686e2047616c74", "init_ephemeral": "893e...",
     "resp_static": "4a3a...", ..., "handshake_hash": "...",
     "messages": [{"payload": "4c75...", "ciphertext": "ca35..."}, ...]}

onionpost's hybrid vectors add three fields, so that the randomness of the
KEM can be replayed: ``init_kem_seed`` (64 bytes, FIPS 203 ``d || z``) and
the responder's encapsulation ``resp_kem_ciphertext`` with
``resp_kem_shared_secret``.

This module does no I/O: callers load the JSON.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from onionpost.errors import OnionpostError
from onionpost.proto._crypto import KeyPair, constant_time_equal
from onionpost.proto.noise import HandshakeResult, HandshakeState

__all__ = ["VectorOutcome", "iter_vectors", "replay_vector"]


@dataclass(frozen=True, slots=True)
class VectorOutcome:
    name: str
    passed: bool
    detail: str = ""


def iter_vectors(document: Any) -> Iterator[Mapping[str, Any]]:
    """The vectors of a parsed JSON document: ``{"vectors": [...]}`` or a bare list."""
    vectors = document.get("vectors") if isinstance(document, dict) else document
    if not isinstance(vectors, list):
        raise TypeError("a vector file holds {'vectors': [...]}")
    for vector in vectors:
        if not isinstance(vector, dict):
            raise TypeError("each vector is a JSON object")
        yield vector


def _hex(vector: Mapping[str, Any], key: str) -> bytes | None:
    value = vector.get(key)
    if value is None or value == "":
        return None
    return bytes.fromhex(value)


def _keypair(vector: Mapping[str, Any], key: str) -> KeyPair | None:
    private = _hex(vector, key)
    return None if private is None else KeyPair.from_private(private)


def _side(vector: Mapping[str, Any], prefix: str, initiator: bool) -> HandshakeState:
    encapsulate = None
    ciphertext = _hex(vector, "resp_kem_ciphertext")
    secret = _hex(vector, "resp_kem_shared_secret")
    if not initiator and ciphertext is not None and secret is not None:
        fixed = (ciphertext, secret)

        def encapsulate(_public_key: bytes) -> tuple[bytes, bytes]:
            return fixed

    return HandshakeState(
        vector["protocol_name"],
        initiator=initiator,
        prologue=_hex(vector, f"{prefix}_prologue") or b"",
        static=_keypair(vector, f"{prefix}_static"),
        remote_static=_hex(vector, f"{prefix}_remote_static"),
        psks=[bytes.fromhex(p) for p in vector.get(f"{prefix}_psks", [])],
        ephemeral=_keypair(vector, f"{prefix}_ephemeral"),
        kem_seed=_hex(vector, "init_kem_seed") if initiator else None,
        encapsulate=encapsulate,
    )


def replay_vector(vector: Mapping[str, Any]) -> VectorOutcome:
    """Replay one vector through our Noise implementation, both sides."""
    name = str(vector.get("protocol_name", "<unnamed>"))
    try:
        return _replay(name, vector)
    except (OnionpostError, KeyError, ValueError, TypeError) as exc:
        return VectorOutcome(name, False, f"{type(exc).__name__}: {exc}")


def _replay(name: str, vector: Mapping[str, Any]) -> VectorOutcome:
    initiator = _side(vector, "init", True)
    responder = _side(vector, "resp", False)
    results: tuple[HandshakeResult, HandshakeResult] | None = None
    for index, message in enumerate(vector["messages"]):
        payload = bytes.fromhex(message["payload"])
        expected = bytes.fromhex(message["ciphertext"])
        # One-way patterns: every message is the initiator's (Noise §7.4).
        from_initiator = index % 2 == 0 or initiator.protocol.one_way
        if results is None:
            writer, reader = (initiator, responder) if from_initiator else (responder, initiator)
            sent = writer.write_message(payload)
            received = reader.read_message(sent)
            if initiator.complete and responder.complete:
                results = (initiator.result(), responder.result())
        else:
            send, receive = (
                (results[0].send, results[1].receive)
                if from_initiator
                else (results[1].send, results[0].receive)
            )
            sent = send.encrypt_with_ad(b"", payload)
            received = receive.decrypt_with_ad(b"", sent)
        if not constant_time_equal(sent, expected):
            return VectorOutcome(name, False, f"message {index}: ciphertext differs")
        if received != payload:
            return VectorOutcome(name, False, f"message {index}: payload differs")
    if results is None:
        return VectorOutcome(name, False, "the handshake did not finish")
    expected_hash = _hex(vector, "handshake_hash")
    if results[0].handshake_hash != results[1].handshake_hash:
        return VectorOutcome(name, False, "the two sides' handshake hashes differ")
    if expected_hash is not None and results[0].handshake_hash != expected_hash:
        return VectorOutcome(name, False, "handshake hash differs")
    return VectorOutcome(name, True)
