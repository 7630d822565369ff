"""Replay protocol-spec/vectors/evidence-v1.json through onionpost, and
recompute it without onionpost: msgpack, hashlib and cryptography only."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from pathlib import Path

import msgpack
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from onionpost.proto import merkle, messages, note
from onionpost.proto.evidence import Entry
from tools.evidence_vectors import EVIDENCE_FILE, build_evidence

FILE = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors" / EVIDENCE_FILE
DOCUMENT = json.loads(FILE.read_text())
(VECTOR,) = DOCUMENT["vectors"]


def test_the_code_generates_the_vectors_byte_for_byte() -> None:
    assert build_evidence(DOCUMENT) == DOCUMENT


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def test_entries_and_root_recomputed_independently() -> None:
    leaves = []
    for item in VECTOR["entries"]:
        data = bytes.fromhex(item["encoded"])
        fields = msgpack.unpackb(data, raw=False)
        assert len(fields) == 9
        assert fields[0] == 1  # version
        assert fields[2] == item["fields"]["time_ms"]
        assert fields[3] == item["fields"]["counterparty"]
        assert fields[6].hex() == item["fields"]["content_blake2b"]
        assert msgpack.packb(fields, use_bin_type=True) == data  # canonical
        leaf = hashlib.sha256(b"\x00" + data).digest()
        assert leaf.hex() == item["leaf_hash"]
        assert Entry.decode(data).encode() == data
        leaves.append(leaf)
    assert len(leaves) == 5  # RFC 9162: split 4 + 1
    left = _node(_node(leaves[0], leaves[1]), _node(leaves[2], leaves[3]))
    assert _node(left, leaves[4]).hex() == VECTOR["root"]


def _public(seed_hex: str) -> bytes:
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed_hex)).public_key()
    return key.public_bytes_raw()


def test_the_checkpoint_and_cosignature_verify_with_raw_ed25519() -> None:
    text, _, sigs = VECTOR["cosigned_note"].partition("\n\n")
    text += "\n"
    origin, size, root = text.splitlines()
    assert origin == VECTOR["endpoint"] + "/evidence"
    assert int(size) == 5
    assert base64.b64decode(root).hex() == VECTOR["root"]
    lines = sigs.splitlines()
    assert len(lines) == 2
    (endpoint_line, contact_line) = lines
    raw = base64.b64decode(endpoint_line.split(" ")[2])
    key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR["endpoint_seed"]))
    assert raw[4:] == key.sign(text.encode())  # Ed25519 is deterministic
    kid = hashlib.sha256(VECTOR["endpoint"].encode() + b"\n\x01" + _public(VECTOR["endpoint_seed"]))
    assert raw[:4] == kid.digest()[:4]
    raw = base64.b64decode(contact_line.split(" ")[2])
    stamp = struct.unpack(">Q", raw[4:12])[0]
    assert stamp == VECTOR["cosigned_at"]
    message = f"cosignature/v1\ntime {stamp}\n{text}".encode()
    contact = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(VECTOR["contact_seed"]))
    assert raw[12:] == contact.sign(message)


def test_the_proofs_and_records_replay() -> None:
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in VECTOR["entries"]]
    root = bytes.fromhex(VECTOR["root"])
    proof = [bytes.fromhex(h) for h in VECTOR["inclusion"]["proof"]]
    merkle.verify_inclusion(leaves[3], 3, 5, proof, root)
    old = merkle.root_of(leaves[:2])
    consistency = [bytes.fromhex(h) for h in VECTOR["consistency"]["proof"]]
    merkle.verify_consistency(2, 5, old, root, consistency)
    request = messages.decode(bytes.fromhex(VECTOR["log_cosign_record"]))
    assert isinstance(request, messages.LogCosign)
    assert request.old_size == 2
    assert list(request.hashes()) == consistency
    answer = messages.decode(bytes.fromhex(VECTOR["log_cosigned_record"]))
    assert isinstance(answer, messages.LogCosigned)
    assert note.Note.parse(answer.checkpoint).to_text() == VECTOR["cosigned_note"]


def test_a_labelled_records_digest_covers_its_label_recomputed_independently() -> None:
    item = VECTOR["labelled_text"]
    record = bytes.fromhex(item["record"])
    tag, text_id, created_ms, body, content_type, label = msgpack.unpackb(record, raw=False)
    assert (tag, body, content_type, label) == (1, "handle with care", "text/plain", item["label"])
    assert label == "TLP:AMBER+STRICT"
    entry = msgpack.unpackb(bytes.fromhex(item["entry"]), raw=False)
    assert entry[4] == text_id
    assert entry[7] == hashlib.sha256(record).digest()
    assert entry[6] == hashlib.blake2b(body.encode()).digest()
    # The same text with another label is another record, and another digest.
    lowered = msgpack.packb([tag, text_id, created_ms, body, content_type, "TLP:GREEN"])
    assert hashlib.sha256(lowered).digest() != entry[7]
    assert messages.decode(record) == messages.Text(text_id, created_ms, body, content_type, label)
