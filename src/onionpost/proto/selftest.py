"""Known-answer self-tests of the primitives and the Noise core.

Like a certified crypto module at power-up, the daemon runs these before it
touches a key and refuses to start if any fails. Each test checks a
provider against a published answer (RFC 7748, RFC 8439, RFC 4231, RFC 8032,
FIPS 180-4, RFC 7693, and one Noise handshake from cacophony); ML-KEM-768,
for which no published answer ships with us, gets the pairwise consistency
test of FIPS 140-3 plus its implicit-rejection property. The hybrid Noise
handshake is checked end to end for agreement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from onionpost.errors import OnionpostError, SelfTestError
from onionpost.proto import _crypto
from onionpost.proto.noise import HandshakeState
from onionpost.proto.vectors import replay_vector

__all__ = ["KnownAnswerTest", "known_answer_tests", "run_self_test"]

_h = bytes.fromhex


def _x25519() -> None:
    # RFC 7748 §6.1.
    alice = _crypto.KeyPair.from_private(
        _h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    )
    bob_public = _h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    _expect(alice.public, "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    _expect(
        _crypto.x25519(alice.private, bob_public),
        "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
    )


def _chachapoly() -> None:
    # RFC 8439 §2.8.2. Our nonce layout is 4 zero bytes || LE64(n); the RFC's
    # nonce 07000000 4041424344454647 is not of that form, so the test goes
    # through the provider directly, then checks our layout on a round trip.
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    key = bytes(range(0x80, 0xA0))
    plaintext = (
        b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip "
        b"for the future, sunscreen would be it."
    )
    out = ChaCha20Poly1305(key).encrypt(
        _h("070000004041424344454647"), plaintext, _h("50515253c0c1c2c3c4c5c6c7")
    )
    _expect(
        out,
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca967"
        "1282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee3280"
        "91b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
        "1ae10b594f09e26a7e902ecbd0600691",
    )
    ours = _crypto.ChaChaPoly(key)
    n = 0x4746454443424140  # LE64 of 40..47
    if ours.encrypt(n, b"ad", plaintext) != ChaCha20Poly1305(key).encrypt(
        bytes(4) + n.to_bytes(8, "little"), plaintext, b"ad"
    ):
        raise SelfTestError("ChaChaPoly nonce layout")
    if ours.decrypt(n, b"ad", ours.encrypt(n, b"ad", plaintext)) != plaintext:
        raise SelfTestError("ChaChaPoly round trip")


def _hashes() -> None:
    # FIPS 180-4 and RFC 7693 Appendix A: "abc".
    _expect(
        hashlib.sha256(b"abc").digest(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    )
    _expect(
        hashlib.blake2b(b"abc").digest(),
        "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1"
        "7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923",
    )
    # RFC 4231 test case 2.
    _expect(
        _crypto.HASHES["SHA256"].hmac(b"Jefe", b"what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    )


def _ed25519() -> None:
    # RFC 8032 §7.1 test 1 (empty message).
    key = _crypto.SigningKey(_h("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
    _expect(
        key.public,
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
    )
    _expect(
        key.sign(b""),
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
        "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    )


def _mlkem768() -> None:
    # FIPS 140-3 pairwise consistency, and implicit rejection (FIPS 203 §6.3):
    # a modified ciphertext decapsulates to a different secret, never an error.
    keys = _crypto.KemKeyPair(bytes(range(64)))
    again = _crypto.KemKeyPair(bytes(range(64)))
    if keys.public != again.public or len(keys.public) != _crypto.MLKEM768_PUBLIC_LEN:
        raise SelfTestError("ML-KEM-768 key generation is not deterministic from its seed")
    ciphertext, secret = _crypto.mlkem768_encapsulate(keys.public)
    if keys.decapsulate(ciphertext) != secret:
        raise SelfTestError("ML-KEM-768 pairwise consistency")
    forged = bytes([ciphertext[0] ^ 1]) + ciphertext[1:]
    if keys.decapsulate(forged) == secret:
        raise SelfTestError("ML-KEM-768 implicit rejection")


_CACOPHONY_XX = {
    # haskell-cryptography/cacophony vectors/cacophony.txt (Unlicense).
    "protocol_name": "Noise_XX_25519_ChaChaPoly_BLAKE2b",
    "init_prologue": "4a6f686e2047616c74",
    "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
    "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
    "resp_prologue": "4a6f686e2047616c74",
    "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
    "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
    "handshake_hash": "8cf47d7b3cb5804c0109d48e8bcdbee2cbb65687d8ea2c92994ca361fb86151a"
    "d93627b98936cbb32de56e8abb21def3925011ac3e35db9cbeea73ab9a4392c2",
    "messages": [
        {
            "payload": "4c756477696720766f6e204d69736573",
            "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944"
            "4c756477696720766f6e204d69736573",
        },
        {
            "payload": "4d757272617920526f746862617264",
            "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843"
            "0505b6745ce64a5f33f0e8e3b83f11ce8802bca507f4f2d8b564dbe277e19661"
            "16e132faa2dfd70b8b077b9f94b913df5056ae1319469b824a98d54bbaa82c32"
            "5595587064f978c4b6d104f7596e6f",
        },
        {
            "payload": "462e20412e20486179656b",
            "ciphertext": "99579e1c1ee15e422a57ddd6b16d37087b17558e8369c18991b4b2ca3a824abf"
            "904cdcf5458b5431a75af034ca9e9b982de039eaaf156775e2d580cd4e5ebae8"
            "9c3f8cb2594b556d8a8169",
        },
        {
            "payload": "4361726c204d656e676572",
            "ciphertext": "fc56eea290b3f3a21aac0c70cd5787b5ee99be37d2f4d751329b55",
        },
    ],
}


def _noise_classical() -> None:
    outcome = replay_vector(_CACOPHONY_XX)
    if not outcome.passed:
        raise SelfTestError(f"Noise XX known answer: {outcome.detail}")


def _noise_hybrid() -> None:
    name = "Noise_XXhfs_25519+MLKEM768_ChaChaPoly_BLAKE2b"
    initiator = HandshakeState(
        name, initiator=True, prologue=b"selftest", static=_crypto.KeyPair.generate()
    )
    responder = HandshakeState(
        name, initiator=False, prologue=b"selftest", static=_crypto.KeyPair.generate()
    )
    responder.read_message(initiator.write_message(b""))
    initiator.read_message(responder.write_message(b""))
    responder.read_message(initiator.write_message(b""))
    a, b = initiator.result(), responder.result()
    if a.handshake_hash != b.handshake_hash:
        raise SelfTestError("hybrid handshake: the two sides disagree")
    if b.receive.decrypt_with_ad(b"", a.send.encrypt_with_ad(b"", b"ping")) != b"ping":
        raise SelfTestError("hybrid handshake: transport keys disagree")


def _expect(actual: bytes, expected_hex: str) -> None:
    if not _crypto.constant_time_equal(actual, _h(expected_hex)):
        raise SelfTestError("known answer differs")


@dataclass(frozen=True, slots=True)
class KnownAnswerTest:
    name: str
    run: Callable[[], None]


def known_answer_tests() -> tuple[KnownAnswerTest, ...]:
    return (
        KnownAnswerTest("X25519 (RFC 7748 §6.1)", _x25519),
        KnownAnswerTest("ChaCha20-Poly1305 (RFC 8439 §2.8.2)", _chachapoly),
        KnownAnswerTest("SHA-256, BLAKE2b, HMAC (FIPS 180-4, RFC 7693, RFC 4231)", _hashes),
        KnownAnswerTest("Ed25519 (RFC 8032 §7.1)", _ed25519),
        KnownAnswerTest("ML-KEM-768 pairwise consistency (FIPS 203)", _mlkem768),
        KnownAnswerTest("Noise_XX_25519_ChaChaPoly_BLAKE2b (cacophony)", _noise_classical),
        KnownAnswerTest("Noise_XXhfs_25519+MLKEM768 agreement", _noise_hybrid),
    )


def run_self_test() -> list[tuple[str, str | None]]:
    """Run every known-answer test: ``[(name, None if passed else reason)]``."""
    results: list[tuple[str, str | None]] = []
    for test in known_answer_tests():
        try:
            test.run()
        except (OnionpostError, ValueError) as exc:
            results.append((test.name, str(exc) or type(exc).__name__))
        else:
            results.append((test.name, None))
    return results
