"""An independent check of the hybrid vectors, written from protocol-spec/noise.md §3.4.

It uses hashlib, hmac, pynacl and cryptography directly and none of
onionpost's Noise code, so a bug in noise.py cannot hide in both places.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

VECTORS = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors" / "noise-hfs.json"
XXHFS = [
    v
    for v in json.loads(VECTORS.read_text())["vectors"]
    if v["protocol_name"].startswith("Noise_XXhfs_")
]
HASHES = {"BLAKE2b": (hashlib.blake2b, 64), "SHA256": (hashlib.sha256, 32)}


def _enc(k: bytes, n: int, ad: bytes, plaintext: bytes) -> bytes:
    return ChaCha20Poly1305(k).encrypt(bytes(4) + n.to_bytes(8, "little"), plaintext, ad)


@pytest.mark.parametrize("vector", XXHFS, ids=lambda v: v["protocol_name"])
def test_xxhfs_transcript_from_the_spec(vector: dict[str, object]) -> None:
    def x(key: str) -> bytes:
        return bytes.fromhex(str(vector[key]))

    name = str(vector["protocol_name"])
    hash_new, hashlen = HASHES[name.rsplit("_", 1)[1]]

    def H(data: bytes) -> bytes:
        return hash_new(data).digest()

    def hkdf(ck: bytes, ikm: bytes) -> tuple[bytes, bytes]:
        temp = hmac.new(ck, ikm, hash_new).digest()
        out1 = hmac.new(temp, b"\x01", hash_new).digest()
        return out1, hmac.new(temp, out1 + b"\x02", hash_new).digest()

    messages = vector["messages"]
    assert isinstance(messages, list)
    payloads = [bytes.fromhex(m["payload"]) for m in messages]
    wire = [bytes.fromhex(m["ciphertext"]) for m in messages]

    e_i, e_r, s_i, s_r = (
        x("init_ephemeral"),
        x("resp_ephemeral"),
        x("init_static"),
        x("resp_static"),
    )
    e_i_pub, e_r_pub = crypto_scalarmult_base(e_i), crypto_scalarmult_base(e_r)
    s_i_pub, s_r_pub = crypto_scalarmult_base(s_i), crypto_scalarmult_base(s_r)
    kem = MLKEM768PrivateKey.from_seed_bytes(x("init_kem_seed"))
    ek = kem.public_key().public_bytes_raw()
    ct, ss = x("resp_kem_ciphertext"), x("resp_kem_shared_secret")
    assert kem.decapsulate(ct) == ss

    h = name.encode().ljust(hashlen, b"\x00") if len(name) <= hashlen else H(name.encode())
    ck = h
    h = H(h + x("init_prologue"))

    # 1. -> e, e1 (no key: the payload is in the clear)
    h = H(h + e_i_pub)
    h = H(h + ek)
    h = H(h + payloads[0])
    assert wire[0] == e_i_pub + ek + payloads[0]

    # 2. <- e, ee, ekem1, s, es
    h = H(h + e_r_pub)
    ck, k = hkdf(ck, crypto_scalarmult(e_r, e_i_pub))
    c1 = _enc(k[:32], 0, h, ct)
    h = H(h + c1)
    ck, k = hkdf(ck, ss)
    c2 = _enc(k[:32], 0, h, s_r_pub)
    h = H(h + c2)
    ck, k = hkdf(ck, crypto_scalarmult(s_r, e_i_pub))
    c3 = _enc(k[:32], 0, h, payloads[1])
    h = H(h + c3)
    assert wire[1] == e_r_pub + c1 + c2 + c3

    # 3. -> s, se
    c4 = _enc(k[:32], 1, h, s_i_pub)
    h = H(h + c4)
    ck, k = hkdf(ck, crypto_scalarmult(s_i, e_r_pub))
    c5 = _enc(k[:32], 0, h, payloads[2])
    h = H(h + c5)
    assert wire[2] == c4 + c5
    assert h == x("handshake_hash")

    # 4. Split, then transport with nonces counting from zero per direction.
    k1, k2 = hkdf(ck, b"")
    nonces = {0: 0, 1: 0}
    for index in range(3, len(payloads)):
        direction = index % 2
        key = (k1 if direction == 0 else k2)[:32]
        assert wire[index] == _enc(key, nonces[direction], b"", payloads[index])
        nonces[direction] += 1


def test_every_xxhfs_hash_is_covered() -> None:
    assert sorted(v["protocol_name"] for v in XXHFS) == [
        "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b",
        "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_SHA256",
    ]
