"""Replay protocol-spec/vectors/mailbox-v1.json, through onionpost and without it.

Each item is checked twice: through onionpost's own API (parse, verify,
open), and recomputed with independent code from the text of mailbox.md:
the Noise message and handshake hash with the ``noiseprotocol`` package,
ML-KEM-768, X25519 and Ed25519 with ``cryptography``, the payload with
``msgpack``, the setup code with ``base64`` and ``hashlib``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import warnings
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from noise.connection import Keypair, NoiseConnection

from onionpost.proto.address import OnionAddress
from onionpost.proto.envelope import (
    EnvelopeHeader,
    PrekeyKind,
    PrekeySecret,
    SignedPrekey,
    generate_prekey,
    open_envelope,
)
from onionpost.proto.identity import Identity
from onionpost.proto.pairing import MailboxAnnouncement, SetupCode, token_digest
from tools import vectorgen

FILE = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors" / vectorgen.MAILBOX_FILE
DOCUMENT = json.loads(FILE.read_text())
VECTOR: dict[str, Any] = DOCUMENT["vectors"][0]
OWNER = Identity(bytes.fromhex(VECTOR["owner_identity_seed"]))
SENDER = Identity(bytes.fromhex(VECTOR["sender_identity_seed"]))
PREKEYS = {p["name"]: p for p in VECTOR["prekeys"]}
ENVELOPES = VECTOR["envelopes"]

PREKEY_CONTEXT = b"onionpost prekey\x00"
CERT_CONTEXT = b"onionpost static-key certificate\x00"
ANNOUNCEMENT_CONTEXT = b"onionpost mailbox announcement\x00"


def _x(value: str) -> bytes:
    return bytes.fromhex(value)


def _ed25519_verify(public_key: bytes, signature: bytes, message: bytes) -> None:
    Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)


def test_the_file_is_what_the_generator_makes() -> None:
    assert vectorgen.build_mailbox(DOCUMENT) == DOCUMENT


def test_the_file_says_how_it_was_made_and_checked() -> None:
    assert "noiseprotocol" in DOCUMENT["provenance"]
    assert VECTOR["protocol"] == "Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b"
    assert VECTOR["owner_address"] == str(OWNER.address)
    assert VECTOR["sender_address"] == str(SENDER.address)
    assert [e["prekey"] for e in ENVELOPES] == ["one-time", "last-resort"]


# -- prekeys --------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTOR["prekeys"], ids=lambda v: v["name"])
def test_prekey_through_onionpost(vector: dict[str, Any]) -> None:
    data = _x(vector["bytes"])
    prekey = SignedPrekey.parse(data)
    assert prekey.kind == PrekeyKind(vector["kind"])
    assert prekey.key_id == _x(vector["key_id"])
    assert prekey.not_after == vector["not_after"] == vector["now"] + vector["lifetime"]
    assert prekey.x25519 == _x(vector["x25519_public"])
    assert prekey.mlkem == _x(vector["mlkem_public"])
    prekey.verify(OWNER.address, now=vector["now"])
    secret = PrekeySecret.from_bytes(_x(vector["secret_bytes"]))
    assert secret.public == prekey
    assert secret.x25519_private == _x(vector["x25519_private"])
    assert secret.mlkem_seed == _x(vector["mlkem_seed"])
    regenerated = generate_prekey(
        OWNER,
        PrekeyKind(vector["kind"]),
        now=vector["now"],
        lifetime=vector["lifetime"],
        x25519_private=secret.x25519_private,
        mlkem_seed=secret.mlkem_seed,
        key_id=prekey.key_id,
    )
    assert regenerated.public.to_bytes() == data


@pytest.mark.parametrize("vector", VECTOR["prekeys"], ids=lambda v: v["name"])
def test_prekey_independently(vector: dict[str, Any]) -> None:
    data = _x(vector["bytes"])
    # mailbox.md §Prekeys: the layout, byte by byte.
    version, kind, key_id, not_after = struct.unpack_from(">BB16sQ", data)
    assert (version, kind, key_id, not_after) == (
        1,
        vector["kind"],
        _x(vector["key_id"]),
        vector["not_after"],
    )
    assert data[26:58] == _x(vector["x25519_public"])
    assert data[58:1242] == _x(vector["mlkem_public"])
    assert len(data) == 1306
    # The keys from their private halves, with `cryptography`.
    x25519 = X25519PrivateKey.from_private_bytes(_x(vector["x25519_private"]))
    assert x25519.public_key().public_bytes_raw() == data[26:58]
    kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(_x(vector["mlkem_seed"]))
    assert kem.public_key().public_bytes_raw() == data[58:1242]
    # The signature: context || owner identity key || body.
    message = PREKEY_CONTEXT + OWNER.public_key + data[:1242]
    assert message == _x(vector["signed_message"])
    _ed25519_verify(OWNER.public_key, data[1242:], message)
    # The stored secret: 01 || prekey || X25519 private || ML-KEM seed.
    secret = _x(vector["secret_bytes"])
    assert secret == b"\x01" + data + _x(vector["x25519_private"]) + _x(vector["mlkem_seed"])


# -- envelopes --------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", ENVELOPES, ids=lambda v: v["prekey"])
def test_envelope_opens_through_onionpost(vector: dict[str, Any]) -> None:
    data = _x(vector["bytes"])
    header = EnvelopeHeader.parse(data)
    assert header == EnvelopeHeader(_x(vector["envelope_id"]), _x(vector["key_id"]))
    secret = PrekeySecret.from_bytes(_x(PREKEYS[vector["prekey"]]["secret_bytes"]))
    opened = open_envelope(
        data, recipient=OWNER.address, secret=secret, now_ms=vector["open_now_ms"]
    )
    assert opened.sender == SENDER.address
    assert opened.envelope_id == header.envelope_id
    assert opened.key_id == header.key_id
    assert opened.sealed_ms == vector["sealed_ms"]
    assert opened.records == tuple(_x(r) for r in vector["records"])


def _noise(vector: dict[str, Any], *, initiator: bool) -> NoiseConnection:
    conn = NoiseConnection.from_name(VECTOR["protocol"].encode("ascii"))
    prekey = PREKEYS[vector["prekey"]]
    conn.set_prologue(_x(vector["prologue"]))
    conn.set_psks(psks=[_x(vector["kem_shared_secret"])])
    if initiator:
        conn.set_as_initiator()
        conn.set_keypair_from_private_bytes(Keypair.STATIC, _x(VECTOR["sender_static"]))
        conn.set_keypair_from_private_bytes(Keypair.EPHEMERAL, _x(vector["ephemeral_private"]))
        conn.set_keypair_from_public_bytes(Keypair.REMOTE_STATIC, _x(prekey["x25519_public"]))
    else:
        conn.set_as_responder()
        conn.set_keypair_from_private_bytes(Keypair.STATIC, _x(prekey["x25519_private"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # injected ephemerals are "for testing only"
        conn.start_handshake()
    return conn


@pytest.mark.parametrize("vector", ENVELOPES, ids=lambda v: v["prekey"])
def test_envelope_independently(vector: dict[str, Any]) -> None:
    data = _x(vector["bytes"])
    prekey = PREKEYS[vector["prekey"]]
    envelope_id, key_id = _x(vector["envelope_id"]), _x(vector["key_id"])
    kem_ct, noise_message = _x(vector["kem_ciphertext"]), _x(vector["noise_message"])
    # mailbox.md §Envelopes: version || envelope_id || key_id || KEM ciphertext || Noise message.
    assert data == b"\x01" + envelope_id + key_id + kem_ct + noise_message
    assert key_id == _x(prekey["key_id"])
    assert len(kem_ct) == 1088
    # The KEM secret is the prekey's decapsulation, with `cryptography`.
    kem = mlkem.MLKEM768PrivateKey.from_seed_bytes(_x(prekey["mlkem_seed"]))
    assert kem.decapsulate(kem_ct) == _x(vector["kem_shared_secret"])
    # The prologue, from the text of the spec.
    service_id = OnionAddress.parse(VECTOR["owner_address"]).service_id.encode("ascii")
    prologue = b"onionpost envelope" + b"\x01\x38" + service_id + envelope_id + key_id + kem_ct
    assert prologue == _x(vector["prologue"])
    # The payload, with `msgpack`.
    payload = _x(vector["payload"])
    records = [_x(r) for r in vector["records"]]
    certificate = _x(VECTOR["sender_certificate"])
    assert msgpack.unpackb(payload)[:5] == [
        1,
        SENDER.public_key,
        certificate,
        vector["sealed_ms"],
        records,
    ]
    # Then the padding: zero bytes, and an integer 0 for a byte a bin cannot
    # make up, so that the whole envelope is a bucket's size.
    padding = msgpack.unpackb(payload)[5:]
    assert all(p == bytes(len(p)) if isinstance(p, bytes) else p == 0 for p in padding)
    assert len(data) in (2048, 8192, 64000)
    assert msgpack.packb(msgpack.unpackb(payload), use_bin_type=True) == payload  # canonical
    _ed25519_verify(SENDER.public_key, certificate[49:], CERT_CONTEXT + certificate[:49])
    static_public = X25519PrivateKey.from_private_bytes(_x(VECTOR["sender_static"])).public_key()
    assert certificate[17:49] == static_public.public_bytes_raw()
    # The Noise message and handshake hash, with `noiseprotocol`.
    sender = _noise(vector, initiator=True)
    assert bytes(sender.write_message(payload)) == noise_message
    assert noise_message[:32] == _x(vector["ephemeral_public"])
    assert len(noise_message) == 32 + 48 + len(payload) + 16
    recipient = _noise(vector, initiator=False)
    assert bytes(recipient.read_message(noise_message)) == payload
    assert sender.handshake_finished
    assert recipient.handshake_finished
    assert bytes(sender.get_handshake_hash()) == _x(vector["handshake_hash"])
    assert bytes(recipient.get_handshake_hash()) == _x(vector["handshake_hash"])


# -- setup code and announcements ---------------------------------------------------------------


def test_setup_code_through_onionpost() -> None:
    vector = VECTOR["setup_code"]
    code = SetupCode.parse(vector["text"])
    assert str(code.mailbox) == vector["mailbox_address"]
    assert code.secret == _x(vector["secret"])
    assert code.to_text() == vector["text"]
    assert code.client_auth_private() == _x(vector["client_auth_private"])
    assert code.client_auth_public() == _x(vector["client_auth_public"])
    assert code.token() == _x(vector["token"])
    assert token_digest(code.token()) == _x(vector["token_digest"])


def test_setup_code_independently() -> None:
    vector = VECTOR["setup_code"]
    mailbox = Identity(_x(vector["mailbox_identity_seed"]))
    secret = _x(vector["secret"])
    text: str = vector["text"]
    assert text.startswith("onionpost-mailbox1:")
    body = text.removeprefix("onionpost-mailbox1:")
    assert len(body) == 111
    raw = base64.b32decode(body.upper() + "=")
    assert raw[:65] == b"\x01" + mailbox.public_key + secret
    assert raw[65:] == hashlib.blake2b(raw[:65]).digest()[:4]

    def keyed(key: bytes, label: bytes) -> bytes:
        return hashlib.blake2b(label, key=key, digest_size=32).digest()

    private = bytearray(keyed(secret, b"onionpost mailbox client-auth"))
    private[0] &= 248
    private[31] = (private[31] & 127) | 64
    assert bytes(private) == _x(vector["client_auth_private"])
    public = X25519PrivateKey.from_private_bytes(bytes(private)).public_key().public_bytes_raw()
    assert public == _x(vector["client_auth_public"])
    token = keyed(secret, b"onionpost mailbox token")
    assert token == _x(vector["token"])
    assert keyed(token, b"onionpost mailbox token digest") == _x(vector["token_digest"])


@pytest.mark.parametrize("vector", VECTOR["announcements"], ids=lambda v: str(v["mailbox"]))
def test_announcement(vector: dict[str, Any]) -> None:
    data = _x(vector["bytes"])
    announcement = MailboxAnnouncement.parse(data, owner=OWNER.address)
    expected = OnionAddress.parse(vector["mailbox"]) if vector["mailbox"] else None
    assert announcement.mailbox == expected
    assert announcement.version == vector["version"]
    # Independently: the layout and the signature.
    assert len(data) == 138
    assert data[0] == 1
    assert data[1:33] == OWNER.public_key
    assert data[33] == (expected is not None)
    assert data[34:66] == (expected.public_key if expected else bytes(32))
    assert int.from_bytes(data[66:74], "big") == vector["version"]
    _ed25519_verify(OWNER.public_key, data[74:], ANNOUNCEMENT_CONTEXT + data[:74])
