"""The seed corpus: small valid inputs for each target, made from real objects.

``python -m fuzz seeds`` writes them under ``fuzz/corpus/<target>/``;
``--check`` fails if any file would change. Every byte is deterministic: the
records are fixed, and the sessions are the endpoints of session-v1.json
(:mod:`fuzz.targets`), whose handshake replays exactly. Each seed reaches a
target's deepest accepting path (a record decoded, a handshake completed, a
frame delivered, an envelope opened), from where the fuzzer mutates. The
mailbox seeds are the objects of mailbox-v1.json themselves, and a few
refusals made with its keys that no mutation can reach; the trust seeds are
an endorsement proof, the anchor, a revocation list and a revocation bundle of
trust-v1.json.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path
from typing import Final

from fuzz.targets import (
    GROUPS_VECTOR,
    INITIATOR,
    INITIATOR_STATIC,
    MAILBOX_VECTOR,
    NOW,
    PREKEY_NOW,
    RESPONDER,
    RESPONDER_STATIC,
    TRUST_CASE,
    TRUST_VECTOR_FILE,
    MailboxMode,
    established,
    mailbox_vector,
    new_initiator,
    new_responder,
    seal_payload,
)
from onionpost.limits import MAX_CLOSE_REASON, MAX_FILE_SIZE, MAX_TIME_MS
from onionpost.proto import _msgpack, envelope, messages, pairing
from onionpost.proto.identity import Identity
from onionpost.proto.trust_session import RevocationBundle

__all__ = ["CORPUS", "check", "seeds", "write"]

CORPUS: Final = Path(__file__).resolve().parent / "corpus"
_U16: Final = struct.Struct(">H")


def _id(label: str) -> bytes:
    return hashlib.blake2b(f"onionpost fuzz {label}".encode(), digest_size=16).digest()


_CONTENT = b"onionpost file contents\n" * 4

RECORDS: Final[dict[str, messages.Message]] = {
    "text": messages.Text(_id("text"), NOW * 1000, "The report is in."),
    "ack": messages.Ack((_id("text"), _id("file"))),
    "read": messages.Read((_id("text"),)),
    "file-offer": messages.FileOffer(
        _id("file"), NOW * 1000 + 1, "report.txt", len(_CONTENT), hashlib.blake2b(_CONTENT).digest()
    ),
    "file-accept": messages.FileAccept(_id("file"), 0),
    "file-chunk": messages.FileChunk(_id("file"), 0, _CONTENT),
    "file-complete": messages.FileComplete(_id("file")),
    "file-reject": messages.FileReject(_id("file"), messages.FileRejectReason.TOO_LARGE),
    "file-cancel": messages.FileCancel(_id("file"), 0),
    "ping": messages.Ping(7),
    "pong": messages.Pong(7),
    "close": messages.Close(0, "bye"),
    # At the bounds, where the fuzzer can cross them with one mutation.
    "file-offer-at-the-bounds": messages.FileOffer(
        _id("large"), MAX_TIME_MS, "é" * 127 + "x", MAX_FILE_SIZE, bytes(64), "t" * 128
    ),
    "close-longest-reason": messages.Close(2**64 - 1, "r" * MAX_CLOSE_REASON),
    # Handling labels (spec.md §5.10).
    "text-labelled": messages.Text(
        _id("labelled"), NOW * 1000 + 2, "Eyes only.", "text/plain", "TLP:RED"
    ),
    "file-offer-labelled": messages.FileOffer(
        _id("labelled file"),
        NOW * 1000 + 3,
        "plan.pdf",
        len(_CONTENT),
        hashlib.blake2b(_CONTENT).digest(),
        "application/pdf",
        "CUI//SP-CTI//NOFORN",
    ),
    "label-limit": messages.LabelLimit(("TLP:AMBER", "CUI//SP-CTI", "ACME:SENSITIVE//LES")),
    # Team channels (groups.md §6.2): a file offered to a group at two heads.
    "group-file-offer": messages.GroupFileOffer(
        _id("group file"),
        NOW * 1000 + 4,
        "minutes.pdf",
        len(_CONTENT),
        hashlib.blake2b(_CONTENT).digest(),
        "application/pdf",
        _id("group"),
        bytes(range(32)) + bytes(range(32, 64)),
        "TLP:AMBER",
    ),
}

# Records only the evolution rules make: an optional extension, and a Text
# from a later version with a trailing field.
EXTRA_RECORDS: Final[dict[str, bytes]] = {
    "extension": _msgpack.pack([64, 1, b"x", [1, "two"]]),
    "text-later-version": _msgpack.pack([1, _id("later"), NOW * 1000, "hi", "text/plain", 5]),
}


def _records() -> dict[str, bytes]:
    out = {name: messages.encode(record) for name, record in RECORDS.items()}
    return out | EXTRA_RECORDS


def _plaintext(record: bytes) -> bytes:
    """A session-target item: ``u16 size || u16 record length || record`` (padding is added)."""
    body = _U16.pack(len(record)) + record
    return _U16.pack(len(body)) + body


def _session() -> dict[str, bytes]:
    records = _records()
    every = [r for name, r in records.items() if name != "close"] + [records["close"]]
    # A frame of a bucket's length that is not authentic: refused by the AEAD.
    forged = _U16.pack(512) + bytes(range(256)) * 2
    return {
        "text": b"\x00" + _plaintext(records["text"]),
        "every-record": b"\x00" + b"".join(_plaintext(r) for r in every),
        "near-rekey": b"\x01" + b"".join(_plaintext(records[n]) for n in ("text", "ping", "ack")),
        # Byte 0 bit 1: the peer pings and never reads the Pongs.
        "unread-pongs": b"\x02" + _plaintext(records["ping"]) * 20,
        "forged-frame": b"\x00"
        + _plaintext(records["ack"])
        + _U16.pack(0x8000 + len(forged))
        + forged,
    }


def _frames() -> dict[str, bytes]:
    peer, _ = established()
    for name in ("text", "file-offer", "file-chunk", "ping"):
        peer.send(RECORDS[name])
    peer.close()
    conversation = peer.data_to_send()
    return {
        "conversation": b"\x00" + conversation,
        "conversation-cut": b"\x2a" + conversation,
    }


def _handshake() -> dict[str, bytes]:
    initiator, responder = new_initiator(), new_responder()
    initiator.start()
    hello = initiator.data_to_send()
    responder.receive_data(hello)
    responder.next_event()
    response = responder.data_to_send()
    initiator.receive_data(response)
    initiator.next_event()
    finish = initiator.data_to_send()
    responder.receive_data(finish)
    responder.next_event()
    initiator.send(RECORDS["text"])
    responder.send(RECORDS["ack"])
    return {
        # Top bit of byte 0 clear: the responder, fed in reads cut at seed 0x11.
        "responder-transcript": b"\x11" + hello + finish + initiator.data_to_send(),
        "initiator-response": b"\x80" + response + responder.data_to_send(),
        "responder-version-2": b"\x00" + hello[:6] + _U16.pack(2) + hello[8:40],
    }


def _payload(identity: Identity, certificate: bytes, *extra: object) -> bytes:
    return _msgpack.pack([1, identity.public_key, certificate, *extra])


def _handshake_payload() -> dict[str, bytes]:
    initiator_cert = INITIATOR_STATIC.certificate.to_bytes()
    # A stranger: its certificate is valid for the initiator's static key,
    # and the responder refuses it.
    stranger = Identity(hashlib.blake2b(b"onionpost fuzz stranger").digest()[:32])
    stranger_cert = stranger.certify(INITIATOR_STATIC.keypair.public, now=NOW).to_bytes()
    responder_stranger_cert = stranger.certify(RESPONDER_STATIC.keypair.public, now=NOW)
    # Signed by the right identity, for another static key than the handshake's.
    other_static = INITIATOR.certify(bytes(range(32)), now=NOW).to_bytes()
    return {
        "to-responder": b"\x00" + _payload(INITIATOR, initiator_cert),
        "to-responder-other-static": b"\x00" + _payload(INITIATOR, other_static),
        "to-responder-later-version": b"\x00" + _payload(INITIATOR, initiator_cert, "x", [1]),
        "to-responder-stranger": b"\x00" + _payload(stranger, stranger_cert),
        "to-initiator": b"\x01" + _payload(RESPONDER, RESPONDER_STATIC.certificate.to_bytes()),
        # A valid certificate, but not from the address the initiator dialed.
        "to-initiator-stranger": b"\x01" + _payload(stranger, responder_stranger_cert.to_bytes()),
    }


def _mailbox() -> dict[str, bytes]:
    """The objects of mailbox-v1.json, each behind the mode byte that reads it."""

    def mode(which: MailboxMode, data: bytes) -> bytes:
        return bytes([which]) + data

    out: dict[str, bytes] = {}
    for i, vector in enumerate(MAILBOX_VECTOR["envelopes"]):
        data = mailbox_vector("envelopes", i, "bytes")
        out[f"envelope-{vector['prekey']}"] = mode(MailboxMode.ENVELOPE, data)
    payload = mailbox_vector("envelopes", 0, "payload")
    # The harness seals as the vector's sender did: the same envelope, byte for byte.
    assert seal_payload(payload) == mailbox_vector("envelopes", 0, "bytes")
    out["payload"] = mode(MailboxMode.PAYLOAD, payload)
    for i, vector in enumerate(MAILBOX_VECTOR["prekeys"]):
        name = vector["name"]
        out[f"prekey-{name}"] = mode(MailboxMode.PREKEY, mailbox_vector("prekeys", i, "bytes"))
        stored = mailbox_vector("prekeys", i, "secret_bytes")
        out[f"prekey-secret-{name}"] = mode(MailboxMode.PREKEY_SECRET, stored)
    for i, vector in enumerate(MAILBOX_VECTOR["announcements"]):
        name = "announcement" if vector["mailbox"] else "announcement-no-mailbox"
        out[name] = mode(MailboxMode.ANNOUNCEMENT, mailbox_vector("announcements", i, "bytes"))
    text = MAILBOX_VECTOR["setup_code"]["text"]
    out["setup-code"] = mode(MailboxMode.SETUP_CODE, text.encode("ascii"))
    # As pasted: upper case, surrounded by white space.
    out["setup-code-pasted"] = mode(MailboxMode.SETUP_CODE, f" {text.upper()}\n".encode("ascii"))
    # A later version of the payload: one more element, which is ignored.
    later = _msgpack.unpack(payload, max_len=len(payload), max_items=len(payload))
    out["payload-later-version"] = mode(MailboxMode.PAYLOAD, _msgpack.pack([*later, "x"]))
    return out | _mailbox_refused()


def _mailbox_refused() -> dict[str, bytes]:
    """Refusals no mutation reaches, since each needs the owner's signature or
    a checksum: made with the vector's keys, to check that they look like
    every other refusal (one AuthenticationError, one text)."""
    owner = Identity(mailbox_vector("owner_identity_seed"))
    keys = {
        "x25519_private": mailbox_vector("prekeys", 0, "x25519_private"),
        "mlkem_seed": mailbox_vector("prekeys", 0, "mlkem_seed"),
    }

    def prekey(name: str, now: int, lifetime: int) -> bytes:
        made = envelope.generate_prekey(
            owner,
            envelope.PrekeyKind.ONE_TIME,
            now=now,
            lifetime=lifetime,
            key_id=_id(name),
            **keys,
        )
        return bytes([MailboxMode.PREKEY]) + made.public.to_bytes()

    day = 24 * 3600
    sender = Identity(mailbox_vector("sender_identity_seed")).public_key
    mailbox = Identity(mailbox_vector("setup_code", "mailbox_identity_seed")).public_key
    # Announced by the owner, naming another owner (the vector's sender).
    version = MAILBOX_VECTOR["announcements"][0]["version"]
    body = struct.pack(">B32sB32sQ", 1, sender, 1, mailbox, version)
    announcement = body + owner.sign(pairing.ANNOUNCEMENT_CONTEXT + body)
    # A setup code of version 2 with a checksum that matches.
    code = bytes([2]) + mailbox + mailbox_vector("setup_code", "secret")
    code += hashlib.blake2b(code).digest()[:4]
    text = pairing.SETUP_PREFIX + base64.b32encode(code).decode("ascii").rstrip("=").lower()
    return {
        # Signed by the owner; at PREKEY_NOW expired (beyond the clock skew) ...
        "prekey-expired": prekey("expired", PREKEY_NOW - 3 * day, day),
        # ... or valid for longer than a prekey may be.
        "prekey-too-long": prekey("too long", PREKEY_NOW + 2 * day, envelope.MAX_PREKEY_LIFETIME),
        "announcement-of-another-owner": bytes([MailboxMode.ANNOUNCEMENT]) + announcement,
        "setup-code-version-2": bytes([MailboxMode.SETUP_CODE]) + text.encode("ascii"),
    }


def _trust() -> dict[str, bytes]:
    """An endorsement proof of trust-v1.json, the anchor, a revocation list and
    the bundle ``trust revoke`` would write of it."""
    vector = json.loads(TRUST_VECTOR_FILE.read_text())["vectors"][0]
    return {
        "endorsement-proof": b"\x00" + bytes.fromhex(TRUST_CASE["proof"]),
        "anchor": b"\x01" + vector["anchor"]["text"].encode(),
        "revocations": b"\x02" + vector["statements"]["revocations_2"].encode(),
        "revocation-bundle": b"\x03"
        + RevocationBundle(
            vector["delegation"].encode(),
            vector["statements"]["revocations_2"].encode(),
            vector["checkpoints"]["6"].encode(),
        ).encode(),
    }


def _group_ops() -> dict[str, bytes]:
    """Each operation of the group vector and each it refuses (groups.md §12)."""
    out = {
        f"op-{n}-{o['kind']}": bytes.fromhex(o["encoded"])
        for n, o in enumerate(GROUPS_VECTOR["operations"])
    }
    for refusal in GROUPS_VECTOR["refusals"]:
        out[f"refused-{refusal['what']}"] = bytes.fromhex(refusal["encoded"])
    return out


def seeds() -> dict[str, dict[str, bytes]]:
    """Every seed: target name -> file name -> bytes."""
    records = _records()
    return {
        "records": records,
        "msgpack": {
            "record": b"\x00" + records["file-offer"],
            "handshake-payload": b"\x01" + _handshake_payload()["to-responder"][1:],
        },
        "frames": _frames(),
        "session": _session(),
        "handshake": _handshake(),
        "handshake_payload": _handshake_payload(),
        "mailbox": _mailbox(),
        "trust": _trust(),
        "group_ops": _group_ops(),
        "labels": {
            name.lower().replace(":", "-").replace("/", "_").replace(" ", "-"): name.encode()
            for name in (
                "TLP:AMBER+STRICT",
                "TLP:WHITE",
                "CUI//SP-EXPT/SP-CTI/PRVCY//DL ONLY/NOFORN",
                "CUI//REL TO USA, GBR",
                "ACME:SENSITIVE//NOPRESS/LES",
                "OTHER:LEVEL",
            )
        },
    }


def write(directory: Path = CORPUS) -> None:
    for target, files in seeds().items():
        folder = directory / target
        folder.mkdir(parents=True, exist_ok=True)
        for stale in set(p.name for p in folder.iterdir()) - files.keys():
            (folder / stale).unlink()
        for name, data in files.items():
            (folder / name).write_bytes(data)


def check(directory: Path = CORPUS) -> list[str]:
    """The seed files that differ from what :func:`seeds` makes (empty: up to date)."""
    wrong = []
    expected = seeds()
    for target, files in expected.items():
        folder = directory / target
        present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
        wrong += [f"{target}/{name}: unexpected" for name in sorted(present - files.keys())]
        for name, data in files.items():
            path = folder / name
            if not path.is_file() or path.read_bytes() != data:
                wrong.append(f"{target}/{name}: differs or is missing")
    return wrong
