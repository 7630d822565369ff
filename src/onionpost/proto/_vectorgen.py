"""Generate, or check, onionpost's own test vectors under ``protocol-spec/vectors/``.

    python -m onionpost.proto._vectorgen [--check] protocol-spec/vectors

Every key is derived from a fixed label with BLAKE2b, so regeneration is
deterministic, with one exception: ML-KEM encapsulation takes randomness
that no provider lets us inject. The first generation records the
responder's encapsulation (ciphertext and shared secret) in the file; later
runs reuse the recorded one, after checking that the initiator's
decapsulation key really yields that secret. ``--check`` regenerates in
memory and fails if any byte differs from the files on disk.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from onionpost.proto._crypto import KemKeyPair, KeyPair, mlkem768_encapsulate
from onionpost.proto.noise import HandshakeResult, HandshakeState, NoiseProtocol
from onionpost.proto.vectors import replay_vector

HFS_FILE = "noise-hfs.json"

_PROVENANCE = (
    "Produced by `python -m onionpost.proto._vectorgen protocol-spec/vectors` "
    "(`make vectors`). Keys are BLAKE2b-512 of the label `onionpost vector <protocol> <role>` "
    "(first 32 or 64 bytes). The responder's ML-KEM-768 encapsulation is recorded from the first "
    "generation and reused. Checked independently by tests/proto/test_hfs_transcript.py, which "
    "recomputes every handshake hash and chaining key from the text of protocol-spec/noise.md with "
    "hashlib, hmac and the raw primitives, without onionpost's Noise code."
)

_PAYLOADS = [
    b"",
    b"onionpost hybrid handshake, message 2",
    b"third handshake message",
    b"first transport message from the initiator",
    b"reply from the responder",
    b"\x00" * 100,
    bytes(range(256)),
]

_HFS_PROTOCOLS = [
    f"Noise_{pattern}hfs{psk}_25519+MLKEM768_ChaChaPoly_{hash_name}"
    for hash_name in ("BLAKE2b", "SHA256")
    for pattern, psk in (
        ("NN", ""),
        ("NK", ""),
        ("XX", ""),
        ("XK", ""),
        ("IK", ""),
        ("KK", ""),
        ("XX", "+psk0"),
        ("XX", "+psk3"),
    )
]


def _derive(label: str, size: int = 32) -> bytes:
    return hashlib.blake2b(f"onionpost vector {label}".encode()).digest()[:size]


def _hfs_vector(name: str, recorded: dict[str, Any] | None) -> dict[str, Any]:
    protocol = NoiseProtocol.from_name(name)
    pattern = protocol.pattern
    init_s = KeyPair.from_private(_derive(f"{name} init static"))
    resp_s = KeyPair.from_private(_derive(f"{name} resp static"))
    init_e = KeyPair.from_private(_derive(f"{name} init ephemeral"))
    resp_e = KeyPair.from_private(_derive(f"{name} resp ephemeral"))
    kem_seed = _derive(f"{name} init kem", 64)
    psks = [_derive(f"{name} psk {i}") for i in range(protocol.psk_count)]
    prologue = f"onionpost prologue {name}".encode()

    # Which static keys each side uses and knows in advance.
    init_sends_s = any(t.value == "s" for m in pattern.messages[0::2] for t in m) or bool(
        pattern.initiator_pre
    )
    resp_sends_s = any(t.value == "s" for m in pattern.messages[1::2] for t in m) or bool(
        pattern.responder_pre
    )

    if recorded is not None:
        ciphertext = bytes.fromhex(recorded["resp_kem_ciphertext"])
        secret = bytes.fromhex(recorded["resp_kem_shared_secret"])
        if KemKeyPair(kem_seed).decapsulate(ciphertext) != secret:
            raise SystemExit(f"{name}: the recorded encapsulation does not decapsulate")
    else:
        ciphertext, secret = mlkem768_encapsulate(KemKeyPair(kem_seed).public)

    vector: dict[str, Any] = {
        "protocol_name": name,
        "init_prologue": prologue.hex(),
        "init_psks": [p.hex() for p in psks],
        "init_static": init_s.private.hex() if init_sends_s else "",
        "init_ephemeral": init_e.private.hex(),
        "init_remote_static": resp_s.public.hex() if pattern.responder_pre else "",
        "init_kem_seed": kem_seed.hex(),
        "resp_prologue": prologue.hex(),
        "resp_psks": [p.hex() for p in psks],
        "resp_static": resp_s.private.hex() if resp_sends_s else "",
        "resp_ephemeral": resp_e.private.hex(),
        "resp_remote_static": init_s.public.hex() if pattern.initiator_pre else "",
        "resp_kem_ciphertext": ciphertext.hex(),
        "resp_kem_shared_secret": secret.hex(),
    }

    def fixed(_public: bytes) -> tuple[bytes, bytes]:
        return ciphertext, secret

    initiator = HandshakeState(
        name,
        initiator=True,
        prologue=prologue,
        static=init_s if init_sends_s else None,
        remote_static=resp_s.public if pattern.responder_pre else None,
        psks=psks,
        ephemeral=init_e,
        kem_seed=kem_seed,
    )
    responder = HandshakeState(
        name,
        initiator=False,
        prologue=prologue,
        static=resp_s if resp_sends_s else None,
        remote_static=init_s.public if pattern.initiator_pre else None,
        psks=psks,
        ephemeral=resp_e,
        encapsulate=fixed,
    )
    messages = []
    results: tuple[HandshakeResult, HandshakeResult] | None = None
    for index, payload in enumerate(_PAYLOADS):
        from_initiator = index % 2 == 0
        if results is None:
            writer, reader = (initiator, responder) if from_initiator else (responder, initiator)
            if not writer.is_my_turn:
                raise SystemExit(f"{name}: payload list out of step with the pattern")
            sent = writer.write_message(payload)
            reader.read_message(sent)
            if initiator.complete:
                results = (initiator.result(), responder.result())
        else:
            sender = results[0] if from_initiator else results[1]
            receiver = results[1] if from_initiator else results[0]
            sent = sender.send.encrypt_with_ad(b"", payload)
            receiver.receive.decrypt_with_ad(b"", sent)
        messages.append({"payload": payload.hex(), "ciphertext": sent.hex()})
    if results is None:
        raise SystemExit(f"{name}: the handshake did not finish")
    vector["handshake_hash"] = results[0].handshake_hash.hex()
    vector["messages"] = messages
    return vector


def build(previous: dict[str, Any] | None) -> dict[str, Any]:
    recorded: dict[str, dict[str, Any]] = {}
    if previous is not None:
        recorded = {v["protocol_name"]: v for v in previous.get("vectors", [])}
    vectors = [_hfs_vector(name, recorded.get(name)) for name in _HFS_PROTOCOLS]
    for vector in vectors:
        outcome = replay_vector(vector)
        if not outcome.passed:
            raise SystemExit(f"{outcome.name}: generated vector does not replay: {outcome.detail}")
    return {"provenance": _PROVENANCE, "vectors": vectors}


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--check", action="store_true", help="fail if the files would change")
    args = parser.parse_args(argv)
    path: Path = args.directory / HFS_FILE
    previous = json.loads(path.read_text()) if path.exists() else None
    text = _dump(build(previous))
    if args.check:
        if previous is None or path.read_text() != text:
            print(f"{path}: differs from what the code generates", file=sys.stderr)
            return 1
        print(f"{path}: up to date")
        return 0
    args.directory.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
