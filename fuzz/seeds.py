"""The seed corpus: small valid inputs for each target, made from real objects.

``python -m fuzz seeds`` writes them under ``fuzz/corpus/<target>/``;
``--check`` fails if any file would change. Every byte is deterministic: the
records are fixed, and the sessions are the endpoints of session-v1.json
(:mod:`fuzz.targets`), whose handshake replays exactly. Each seed reaches a
target's deepest accepting path (a record decoded, a handshake completed, a
frame delivered), from where the fuzzer mutates.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Final

from fuzz.targets import (
    INITIATOR,
    INITIATOR_STATIC,
    NOW,
    RESPONDER,
    RESPONDER_STATIC,
    established,
    new_initiator,
    new_responder,
)
from onionpost.limits import MAX_CLOSE_REASON, MAX_FILE_SIZE
from onionpost.proto import _msgpack, messages
from onionpost.proto.identity import Identity

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
        _id("large"), 2**64 - 1, "é" * 127 + "x", MAX_FILE_SIZE, bytes(64), "t" * 128
    ),
    "close-longest-reason": messages.Close(2**64 - 1, "r" * MAX_CLOSE_REASON),
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
