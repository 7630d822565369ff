"""Noise: our core against the noiseprotocol package, and hybrid against classical."""

from __future__ import annotations

import os
from collections.abc import Iterator

from noise.connection import Keypair, NoiseConnection

from bench._common import compare, line, rate
from onionpost.limits import NOISE_MAX_PAYLOAD
from onionpost.proto.noise import HandshakeState, KeyPair, NoiseProtocol

XX = "Noise_XX_25519_ChaChaPoly_BLAKE2b"
XX_HFS = "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b"


def _our_handshake(protocol: NoiseProtocol, a: KeyPair, b: KeyPair) -> HandshakeState:
    i = HandshakeState(protocol, initiator=True, static=a)
    r = HandshakeState(protocol, initiator=False, static=b)
    r.read_message(i.write_message())
    i.read_message(r.write_message())
    r.read_message(i.write_message())
    return i


def _peer_pair(name: str, a: bytes, b: bytes) -> tuple[NoiseConnection, NoiseConnection]:
    i = NoiseConnection.from_name(name.encode())
    r = NoiseConnection.from_name(name.encode())
    i.set_as_initiator()
    r.set_as_responder()
    i.set_keypair_from_private_bytes(Keypair.STATIC, a)
    r.set_keypair_from_private_bytes(Keypair.STATIC, b)
    i.start_handshake()
    r.start_handshake()
    r.read_message(i.write_message())
    i.read_message(r.write_message())
    r.read_message(i.write_message())
    return i, r


def run() -> Iterator[str]:
    a, b = KeyPair.generate(), KeyPair.generate()
    xx, xx_hfs = NoiseProtocol.from_name(XX), NoiseProtocol.from_name(XX_HFS)

    ours, peer = compare(
        lambda: rate(lambda: _our_handshake(xx, a, b), 300),
        lambda: rate(lambda: _peer_pair(XX, a.private, b.private), 300),
    )
    yield line("noise_xx_handshakes_per_s", ours, peer, "/s")

    for size in (1024, NOISE_MAX_PAYLOAD):
        payload = os.urandom(size)
        i = _our_handshake(xx, a, b)
        result = i.result()
        # Both directions of one session: our send is checked by our receive.
        r = HandshakeState(xx, initiator=False, static=b)
        i2 = HandshakeState(xx, initiator=True, static=a)
        r.read_message(i2.write_message())
        i2.read_message(r.write_message())
        r.read_message(i2.write_message())
        send, receive = i2.result().send, r.result().receive
        del result
        pi, pr = _peer_pair(XX, a.private, b.private)
        count = 20000 if size == 1024 else 800

        def ours_mb(send=send, receive=receive, payload=payload, count=count) -> float:
            return (
                rate(
                    lambda: receive.decrypt_with_ad(b"", send.encrypt_with_ad(b"", payload)), count
                )
                * len(payload)
                / 1e6
            )

        def peer_mb(pi=pi, pr=pr, payload=payload, count=count) -> float:
            return rate(lambda: pr.decrypt(pi.encrypt(payload)), count) * len(payload) / 1e6

        o, p = compare(ours_mb, peer_mb)
        yield line(f"noise_transport_{size}B_MB_per_s", o, p, "MB/s")

    ours, peer = compare(
        lambda: rate(lambda: _our_handshake(xx_hfs, a, b), 200),
        lambda: rate(lambda: _our_handshake(xx, a, b), 200),
    )
    yield line("noise_hybrid_vs_classical_xx_handshakes_per_s", ours, peer, "/s")
