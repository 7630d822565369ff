"""Generate, or check, onionpost's own test vectors under ``protocol-spec/vectors/``.

    python -m tools.vectorgen [--check] protocol-spec/vectors

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

from onionpost.proto import _msgpack, envelope, messages
from onionpost.proto._crypto import KemKeyPair, KeyPair, mlkem768_encapsulate
from onionpost.proto.envelope import PrekeyKind, PrekeySecret
from onionpost.proto.identity import Identity, StaticKey, StaticKeyCertificate
from onionpost.proto.noise import HandshakeResult, HandshakeState, NoiseProtocol
from onionpost.proto.pairing import MailboxAnnouncement, SetupCode, token_digest
from onionpost.proto.session import (
    PROTOCOL_NAME,
    ConnectionClosed,
    Event,
    HandshakeComplete,
    HandshakeRandomness,
    MessageReceived,
    PeerDecision,
    Session,
    SessionState,
)
from onionpost.proto.vectors import replay_vector
from tools.evidence_vectors import EVIDENCE_FILE, build_evidence
from tools.group_vectors import GROUPS_FILE, build_groups
from tools.trust_vectors import TRUST_FILE, build_trust

HFS_FILE = "noise-hfs.json"
SESSION_FILE = "session-v1.json"
MAILBOX_FILE = "mailbox-v1.json"

_PROVENANCE = (
    "Produced by `python -m tools.vectorgen protocol-spec/vectors` "
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


_SESSION_PROVENANCE = (
    "Produced by `python -m tools.vectorgen protocol-spec/vectors` "
    "(`make vectors`): two onionpost Sessions, initiator and responder, with every key derived "
    "as BLAKE2b-512 of `onionpost session vector <role> <what>` and the responder's ML-KEM "
    "encapsulation recorded from the first generation. Each step: `sends` is the msgpack record "
    "the side sends (or `close`), `bytes` what it writes, `events` what the other side reports "
    "after reading them, and `reply` what that side queued by itself (a Pong). Checked by "
    "tests/proto/test_session_vectors.py, which replays the inputs through Session and "
    "compares every byte, and decrypts the stream independently with the raw Noise vectors' "
    "replay code (onionpost.proto.vectors) from the same keys."
)


def _session_vector(recorded: dict[str, Any] | None) -> dict[str, Any]:
    def derive(role: str, what: str, size: int = 32) -> bytes:
        return hashlib.blake2b(f"onionpost session vector {role} {what}".encode()).digest()[:size]

    now = 1_790_000_000
    ids = {role: Identity(derive(role, "identity")) for role in ("initiator", "responder")}
    statics = {}
    for role, identity in ids.items():
        keypair = KeyPair.from_private(derive(role, "static"))
        statics[role] = StaticKey(
            keypair, StaticKeyCertificate.issue(identity, keypair.public, now=now)
        )
    kem_seed = derive("initiator", "kem", 64)
    if recorded is not None:
        ciphertext = bytes.fromhex(recorded["inputs"]["responder_kem_ciphertext"])
        secret = bytes.fromhex(recorded["inputs"]["responder_kem_shared_secret"])
        if KemKeyPair(kem_seed).decapsulate(ciphertext) != secret:
            raise SystemExit("session vector: the recorded encapsulation does not decapsulate")
    else:
        ciphertext, secret = mlkem768_encapsulate(KemKeyPair(kem_seed).public)

    def fixed(_public: bytes) -> tuple[bytes, bytes]:
        return ciphertext, secret

    initiator = Session(
        initiator=True,
        identity=ids["initiator"],
        static=statics["initiator"],
        now=now,
        peer=ids["responder"].address,
        randomness=HandshakeRandomness(
            ephemeral=KeyPair.from_private(derive("initiator", "ephemeral")), kem_seed=kem_seed
        ),
    )
    responder = Session(
        initiator=False,
        identity=ids["responder"],
        static=statics["responder"],
        now=now,
        decide=lambda peer: PeerDecision.ACCEPT,
        randomness=HandshakeRandomness(
            ephemeral=KeyPair.from_private(derive("responder", "ephemeral")), encapsulate=fixed
        ),
    )
    text_id, file_id = derive("initiator", "text id", 16), derive("initiator", "file id", 16)
    file_data = b"onionpost file contents\n" * 40
    script: list[tuple[str, Any]] = [
        ("initiator", None),  # start
        ("responder", None),  # handshake reply
        ("initiator", None),  # handshake finish
        ("initiator", messages.Text(text_id, now * 1000, "Hello from the initiator.")),
        ("responder", messages.Ack((text_id,))),
        (
            "responder",
            messages.Text(derive("responder", "text id", 16), now * 1000 + 5, "x" * 1000),
        ),
        # Handling labels (spec.md §5.10): the highest the responder accepts,
        # then a labelled text within it.
        ("responder", messages.LabelLimit(("TLP:AMBER", "CUI//SP-CTI"))),
        (
            "initiator",
            messages.Text(
                derive("initiator", "labelled text id", 16),
                now * 1000 + 7,
                "For your organisation only.",
                "text/plain",
                "TLP:AMBER",
            ),
        ),
        (
            "initiator",
            messages.FileOffer(
                file_id,
                now * 1000 + 9,
                "report.txt",
                len(file_data),
                hashlib.blake2b(file_data).digest(),
                "application/octet-stream",
                "TLP:GREEN",
            ),
        ),
        ("responder", messages.FileAccept(file_id, 0)),
        ("initiator", messages.FileChunk(file_id, 0, file_data)),
        ("responder", messages.FileComplete(file_id)),
        ("initiator", messages.Ping(7)),
        ("initiator", "close"),
    ]
    sides = {"initiator": initiator, "responder": responder}

    steps = []
    for role, action in script:
        sender = sides[role]
        receiver = sides["responder" if role == "initiator" else "initiator"]
        step: dict[str, Any] = {"from": role}
        if action == "close":
            sender.close()
            step["sends"] = "close"
        elif action is not None:
            sender.send(action)
            step["sends"] = messages.encode(action).hex()
        elif sender.state is SessionState.INITIATOR_IDLE:
            sender.start()
        data = sender.data_to_send()
        receiver.receive_data(data)
        events = [describe_event(e) for e in _drain(receiver)]
        step["bytes"] = data.hex()
        step["events"] = events
        if action is not None:
            # Bytes the receiver queued by itself (a Pong) go straight back.
            replies = receiver.data_to_send()
            if replies:
                step["reply"] = replies.hex()
                sender.receive_data(replies)
                step["reply_events"] = [describe_event(e) for e in _drain(sender)]
        steps.append(step)
    return {
        "protocol": PROTOCOL_NAME,
        "inputs": {
            "now": now,
            "initiator_identity_seed": ids["initiator"].seed.hex(),
            "responder_identity_seed": ids["responder"].seed.hex(),
            "initiator_static": statics["initiator"].keypair.private.hex(),
            "responder_static": statics["responder"].keypair.private.hex(),
            "initiator_certificate": statics["initiator"].certificate.to_bytes().hex(),
            "responder_certificate": statics["responder"].certificate.to_bytes().hex(),
            "initiator_ephemeral": derive("initiator", "ephemeral").hex(),
            "responder_ephemeral": derive("responder", "ephemeral").hex(),
            "initiator_kem_seed": kem_seed.hex(),
            "responder_kem_ciphertext": ciphertext.hex(),
            "responder_kem_shared_secret": secret.hex(),
            "initiator_address": str(ids["initiator"].address),
            "responder_address": str(ids["responder"].address),
        },
        "steps": steps,
    }


def _drain(session: Session) -> list[Event]:
    events = []
    while (event := session.next_event()) is not None:
        events.append(event)
    return events


def describe_event(event: Event) -> dict[str, Any]:
    """A session event as session-v1.json writes it (``events`` of a step)."""
    if isinstance(event, HandshakeComplete):
        return {
            "event": "handshake_complete",
            "peer": str(event.peer),
            "handshake_hash": event.handshake_hash.hex(),
        }
    if isinstance(event, MessageReceived):
        return {"event": "message", "record": messages.encode(event.message).hex()}
    assert isinstance(event, ConnectionClosed)
    return {"event": "closed", "code": event.code, "reason": event.reason}


def build_session(previous: dict[str, Any] | None) -> dict[str, Any]:
    vector = _session_vector(previous["vectors"][0] if previous else None)
    return {"provenance": _SESSION_PROVENANCE, "vectors": [vector]}


_MAILBOX_PROVENANCE = (
    "Produced by `python -m tools.vectorgen protocol-spec/vectors` (`make vectors`) with "
    "onionpost.proto.envelope and onionpost.proto.pairing (protocol-spec/mailbox.md). Every key, "
    "id and secret is BLAKE2b-512 of `onionpost mailbox vector <what>` (first 16, 32 or 64 bytes); "
    "the ML-KEM-768 encapsulation of each envelope is recorded from the first generation and "
    "reused after checking that the prekey's decapsulation key yields its secret. Checked by "
    "tests/proto/test_envelope_vectors.py, which opens and parses everything through onionpost, "
    "and recomputes independently of onionpost's code: each envelope's Noise message and "
    "handshake hash with the `noiseprotocol` package, the ML-KEM-768 keys and decapsulation and "
    "every Ed25519 signature with `cryptography`, the payloads with `msgpack`, and the setup "
    "code and its derivations with `base64` and `hashlib`."
)


def _mailbox_vector(recorded: dict[str, Any] | None) -> dict[str, Any]:
    def derive(what: str, size: int = 32) -> bytes:
        return hashlib.blake2b(f"onionpost mailbox vector {what}".encode()).digest()[:size]

    now = 1_790_000_000
    owner = Identity(derive("owner identity"))
    mailbox = Identity(derive("mailbox identity"))
    sender = Identity(derive("sender identity"))
    sender_keypair = KeyPair.from_private(derive("sender static"))
    sender_static = StaticKey(
        sender_keypair, StaticKeyCertificate.issue(sender, sender_keypair.public, now=now)
    )

    prekeys: dict[str, PrekeySecret] = {}
    prekey_vectors = []
    for name, kind, lifetime in (
        ("one-time", PrekeyKind.ONE_TIME, 30 * 24 * 3600),
        ("last-resort", PrekeyKind.LAST_RESORT, 14 * 24 * 3600),
    ):
        secret = envelope.generate_prekey(
            owner,
            kind,
            now=now,
            lifetime=lifetime,
            x25519_private=derive(f"{name} prekey x25519"),
            mlkem_seed=derive(f"{name} prekey mlkem", 64),
            key_id=derive(f"{name} prekey id", envelope.ID_LEN),
        )
        prekeys[name] = secret
        public = secret.public
        data = public.to_bytes()
        prekey_vectors.append(
            {
                "name": name,
                "kind": int(public.kind),
                "key_id": public.key_id.hex(),
                "now": now,
                "lifetime": lifetime,
                "not_after": public.not_after,
                "x25519_private": secret.x25519_private.hex(),
                "x25519_public": public.x25519.hex(),
                "mlkem_seed": secret.mlkem_seed.hex(),
                "mlkem_public": public.mlkem.hex(),
                "signed_message": (
                    envelope.PREKEY_CONTEXT + owner.public_key + data[: -len(public.signature)]
                ).hex(),
                "signature": public.signature.hex(),
                "bytes": data.hex(),
                "secret_bytes": secret.to_bytes().hex(),
            }
        )

    recorded_envelopes: dict[str, dict[str, Any]] = {}
    if recorded is not None:
        recorded_envelopes = {e["prekey"]: e for e in recorded["envelopes"]}
    envelope_vectors = []
    for index, name in enumerate(("one-time", "last-resort")):
        secret = prekeys[name]
        envelope_id = derive(f"envelope {index} id", envelope.ID_LEN)
        sealed_ms = now * 1000 + 1234 + index
        records = (
            messages.encode(
                messages.Text(derive(f"envelope {index} text id", 16), sealed_ms, "Hello, Bob.")
            ),
            messages.encode(messages.Ack((derive(f"envelope {index} ack id", 16),))),
        )
        ephemeral = KeyPair.from_private(derive(f"envelope {index} ephemeral"))
        previous = recorded_envelopes.get(name)
        if previous is not None:
            kem_ct = bytes.fromhex(previous["kem_ciphertext"])
            kem_ss = bytes.fromhex(previous["kem_shared_secret"])
            if KemKeyPair(secret.mlkem_seed).decapsulate(kem_ct) != kem_ss:
                raise SystemExit(f"mailbox vector {name}: the recorded encapsulation is wrong")
        else:
            kem_ct, kem_ss = mlkem768_encapsulate(secret.public.mlkem)

        def fixed(
            _public: bytes, pair: tuple[bytes, bytes] = (kem_ct, kem_ss)
        ) -> tuple[bytes, bytes]:
            return pair

        sealed = envelope.seal(
            sender=sender,
            static=sender_static,
            recipient=owner.address,
            prekey=secret.public,
            envelope_id=envelope_id,
            records=records,
            sealed_ms=sealed_ms,
            ephemeral=ephemeral,
            encapsulate=fixed,
        )
        # The intermediates, from a HandshakeState given the same inputs.
        prologue = envelope.prologue(owner.address, envelope_id, secret.public.key_id, kem_ct)
        # Padded to the envelope's bucket (mailbox.md §3.4).
        gap = envelope.padded_size(records) - (
            envelope.MAX_ENVELOPE - envelope.MAX_ENVELOPE_PAYLOAD + envelope.payload_size(records)
        )
        payload = _msgpack.pack(
            [
                1,
                sender.public_key,
                sender_static.certificate.to_bytes(),
                sealed_ms,
                list(records),
                *envelope._padding(gap),
            ]
        )
        handshake = HandshakeState(
            envelope.PROTOCOL_NAME,
            initiator=True,
            prologue=prologue,
            static=sender_keypair,
            remote_static=secret.public.x25519,
            psks=[kem_ss],
            ephemeral=ephemeral,
        )
        noise_message = handshake.write_message(payload)
        header = sealed[: envelope.HEADER_LEN]
        if sealed != header + kem_ct + noise_message:
            raise SystemExit(f"mailbox vector {name}: seal() and the Noise handshake disagree")
        now_ms = sealed_ms + 3_600_000
        opened = envelope.open_envelope(
            sealed, recipient=owner.address, secret=secret, now_ms=now_ms
        )
        if opened.records != records or opened.sender != sender.address:
            raise SystemExit(f"mailbox vector {name}: the envelope does not open")
        envelope_vectors.append(
            {
                "prekey": name,
                "envelope_id": envelope_id.hex(),
                "key_id": secret.public.key_id.hex(),
                "sealed_ms": sealed_ms,
                "records": [r.hex() for r in records],
                "ephemeral_private": ephemeral.private.hex(),
                "ephemeral_public": ephemeral.public.hex(),
                "kem_ciphertext": kem_ct.hex(),
                "kem_shared_secret": kem_ss.hex(),
                "prologue": prologue.hex(),
                "payload": payload.hex(),
                "noise_message": noise_message.hex(),
                "handshake_hash": handshake.result().handshake_hash.hex(),
                "bytes": sealed.hex(),
                "open_now_ms": now_ms,
            }
        )

    code = SetupCode(mailbox.address, derive("setup secret"))
    announcements = []
    for target, version in ((mailbox.address, now * 1000), (None, now * 1000 + 1)):
        announcement = MailboxAnnouncement.issue(owner, target, version=version)
        announcements.append(
            {
                "mailbox": str(target) if target is not None else None,
                "version": version,
                "bytes": announcement.to_bytes().hex(),
            }
        )
    return {
        "protocol": envelope.PROTOCOL_NAME,
        "owner_identity_seed": owner.seed.hex(),
        "owner_address": str(owner.address),
        "sender_identity_seed": sender.seed.hex(),
        "sender_address": str(sender.address),
        "sender_static": sender_keypair.private.hex(),
        "sender_certificate": sender_static.certificate.to_bytes().hex(),
        "prekeys": prekey_vectors,
        "envelopes": envelope_vectors,
        "setup_code": {
            "mailbox_identity_seed": mailbox.seed.hex(),
            "mailbox_address": str(mailbox.address),
            "secret": code.secret.hex(),
            "text": code.to_text(),
            "client_auth_private": code.client_auth_private().hex(),
            "client_auth_public": code.client_auth_public().hex(),
            "token": code.token().hex(),
            "token_digest": token_digest(code.token()).hex(),
        },
        "announcements": announcements,
    }


def build_mailbox(previous: dict[str, Any] | None) -> dict[str, Any]:
    vector = _mailbox_vector(previous["vectors"][0] if previous else None)
    return {"provenance": _MAILBOX_PROVENANCE, "vectors": [vector]}


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--check", action="store_true", help="fail if the files would change")
    args = parser.parse_args(argv)
    status = 0
    for name, builder in (
        (HFS_FILE, build),
        (SESSION_FILE, build_session),
        (MAILBOX_FILE, build_mailbox),
        (EVIDENCE_FILE, build_evidence),
        (TRUST_FILE, build_trust),
        (GROUPS_FILE, build_groups),
    ):
        path: Path = args.directory / name
        previous = json.loads(path.read_text()) if path.exists() else None
        text = _dump(builder(previous))
        if args.check:
            if previous is None or path.read_text() != text:
                print(f"{path}: differs from what the code generates", file=sys.stderr)
                status = 1
            else:
                print(f"{path}: up to date")
            continue
        args.directory.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
