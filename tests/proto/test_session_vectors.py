"""Replay protocol-spec/vectors/session-v1.json through Session, byte for byte."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgpack
from nacl.signing import VerifyKey

from onionpost.proto import messages
from onionpost.proto._crypto import KeyPair
from onionpost.proto.identity import CERT_CONTEXT, Identity, StaticKey, StaticKeyCertificate
from onionpost.proto.noise import HandshakeState
from onionpost.proto.session import (
    PREAMBLE_LEN,
    HandshakeRandomness,
    PeerDecision,
    Session,
    prologue,
)
from tools import vectorgen
from tools.vectorgen import describe_event

FILE = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors" / "session-v1.json"
DOCUMENT = json.loads(FILE.read_text())
VECTOR: dict[str, Any] = DOCUMENT["vectors"][0]
INPUTS: dict[str, Any] = VECTOR["inputs"]


def _x(key: str) -> bytes:
    return bytes.fromhex(INPUTS[key])


def _sessions() -> dict[str, Session]:
    now = INPUTS["now"]
    ids = {r: Identity(_x(f"{r}_identity_seed")) for r in ("initiator", "responder")}
    statics = {
        r: StaticKey(
            KeyPair.from_private(_x(f"{r}_static")),
            StaticKeyCertificate.verify(
                _x(f"{r}_certificate"),
                identity_key=ids[r].public_key,
                static_key=KeyPair.from_private(_x(f"{r}_static")).public,
                now=now,
            ),
        )
        for r in ids
    }
    fixed = (_x("responder_kem_ciphertext"), _x("responder_kem_shared_secret"))
    return {
        "initiator": Session(
            initiator=True,
            identity=ids["initiator"],
            static=statics["initiator"],
            now=now,
            peer=ids["responder"].address,
            randomness=HandshakeRandomness(
                ephemeral=KeyPair.from_private(_x("initiator_ephemeral")),
                kem_seed=_x("initiator_kem_seed"),
            ),
        ),
        "responder": Session(
            initiator=False,
            identity=ids["responder"],
            static=statics["responder"],
            now=now,
            decide=lambda peer: PeerDecision.ACCEPT,
            randomness=HandshakeRandomness(
                ephemeral=KeyPair.from_private(_x("responder_ephemeral")),
                encapsulate=lambda _pk: fixed,
            ),
        ),
    }


def test_session_vector_replays_byte_for_byte() -> None:
    sides = _sessions()
    assert len(VECTOR["steps"]) >= 10
    for index, step in enumerate(VECTOR["steps"]):
        sender = sides[step["from"]]
        receiver = sides["responder" if step["from"] == "initiator" else "initiator"]
        sends = step.get("sends")
        if sends == "close":
            sender.close()
        elif sends is not None:
            record = messages.decode(bytes.fromhex(sends))
            assert not isinstance(record, messages.UnknownExtension)
            sender.send(record)
        elif index == 0:
            sender.start()
        data = sender.data_to_send()
        assert data.hex() == step["bytes"], f"step {index}"
        receiver.receive_data(data)
        assert [describe_event(e) for e in iter(receiver.next_event, None)] == step["events"]
        if "reply" in step:
            reply = receiver.data_to_send()
            assert reply.hex() == step["reply"]
            sender.receive_data(reply)
            assert [describe_event(e) for e in iter(sender.next_event, None)] == step[
                "reply_events"
            ]


def test_the_vector_is_what_the_generator_makes() -> None:
    assert vectorgen.build_session(DOCUMENT) == DOCUMENT


def test_the_vector_handshake_decodes_without_session_code() -> None:
    # Read the handshake with the bare Noise layer and check the payloads and
    # certificates with pynacl directly, so the framing and payload schema in
    # the vector stand on their own.
    steps = VECTOR["steps"]
    responder_address = INPUTS["responder_address"]
    from onionpost.proto.address import OnionAddress

    dialed = OnionAddress.parse(responder_address)
    init = HandshakeState(
        VECTOR["protocol"],
        initiator=True,
        prologue=prologue(dialed),
        static=KeyPair.from_private(_x("initiator_static")),
        ephemeral=KeyPair.from_private(_x("initiator_ephemeral")),
        kem_seed=_x("initiator_kem_seed"),
    )
    first = bytes.fromhex(steps[0]["bytes"])
    assert first[:PREAMBLE_LEN] == b"ONPOST\x00\x01"
    assert init.write_message(b"") == first[PREAMBLE_LEN + 2 :]
    second = bytes.fromhex(steps[1]["bytes"])
    assert second[:PREAMBLE_LEN] == b"ONPOST\x00\x01"
    length = int.from_bytes(second[PREAMBLE_LEN : PREAMBLE_LEN + 2], "big")
    assert length == len(second) - PREAMBLE_LEN - 2
    payload = init.read_message(second[PREAMBLE_LEN + 2 :])
    version, identity_key, certificate = msgpack.unpackb(payload)
    assert version == 1
    assert str(OnionAddress.from_public_key(identity_key)) == responder_address
    body, signature = certificate[:-64], certificate[-64:]
    VerifyKey(identity_key).verify(CERT_CONTEXT + body, signature)
    assert body[17:49] == init.remote_static
