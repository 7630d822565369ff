"""Test vectors of the evidence log (protocol-spec/evidence.md): entries, the
tree, a signed checkpoint, a cosignature, proofs and the witnessing records."""

from __future__ import annotations

import hashlib
from typing import Any, Final

from onionpost.proto import merkle, messages, note
from onionpost.proto.evidence import Entry, Event, file_entry, origin, state_entry, text_entry
from onionpost.proto.identity import Identity

__all__ = ["EVIDENCE_FILE", "build_evidence"]

EVIDENCE_FILE: Final = "evidence-v1.json"
_PROVENANCE: Final = (
    "Produced by `python -m tools.vectorgen protocol-spec/vectors` (`make vectors`) with "
    "onionpost.proto.evidence, .merkle and .note (protocol-spec/evidence.md). Keys and ids are "
    "BLAKE2b-512 of `onionpost evidence vector <what>` (first 16 or 32 bytes). Checked by "
    "tests/proto/test_evidence_vectors.py, which rebuilds everything through onionpost and "
    "recomputes independently: entries with `msgpack`, leaf and node hashes and the root with "
    "`hashlib`, the Ed25519 signatures with `cryptography`."
)
_TIME_MS: Final = 1_765_000_000_000
_COSIGNED_AT: Final = 1_765_000_100


def _derive(what: str, size: int) -> bytes:
    return hashlib.blake2b(f"onionpost evidence vector {what}".encode()).digest()[:size]


def build_evidence(previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document (``previous`` is unused: nothing here is random)."""
    endpoint = Identity(_derive("endpoint", 32))
    contact = Identity(_derive("contact", 32))
    them = str(contact.address)
    text_id, file_id = _derive("text id", 16), _derive("file id", 16)
    blake = hashlib.blake2b(b"a scanned page").digest()
    entries: list[Entry] = [
        Entry(Event.CONTACT_ADDED, _TIME_MS, them, detail="bob"),
        text_entry(
            Event.QUEUED, _TIME_MS + 1, them, text_id, _TIME_MS + 1, "meet at 9", "text/plain"
        ),
        state_entry(Event.SENT, _TIME_MS + 2, them, text_id, "text"),
        state_entry(Event.DELIVERED, _TIME_MS + 3, them, text_id, "text"),
        file_entry(
            Event.RECEIVED,
            _TIME_MS + 4,
            them,
            file_id,
            _TIME_MS + 4,
            "page.pdf",
            14,
            blake,
            "application/pdf",
        ),
    ]
    data = [e.encode() for e in entries]
    leaves = [merkle.leaf_hash(d) for d in data]
    hasher = merkle.list_hasher(leaves)
    size = len(leaves)
    checkpoint = note.Checkpoint(origin(str(endpoint.address)), size, merkle.root_of(leaves))
    signed = note.sign(checkpoint.to_text(), str(endpoint.address), endpoint)
    cosignature = note.cosign(signed, them, contact, timestamp=_COSIGNED_AT)
    cosigned = signed.with_signatures([cosignature])
    consistency = merkle.consistency_proof(2, size, hasher)
    # A labelled text: its entry's record digest covers the label.
    labelled_id = _derive("labelled text id", 16)
    labelled = messages.Text(
        labelled_id, _TIME_MS + 5, "handle with care", "text/plain", "TLP:AMBER+STRICT"
    )
    labelled_entry = text_entry(
        Event.QUEUED,
        _TIME_MS + 5,
        them,
        labelled_id,
        labelled.created_ms,
        labelled.body,
        labelled.content_type,
        labelled.label,
    )
    request = messages.LogCosign(signed.to_bytes(), 2, b"".join(consistency))
    answer = messages.LogCosigned(messages.LogStatus.COSIGNED, cosigned.to_bytes())
    return {
        "provenance": _PROVENANCE,
        "vectors": [
            {
                "endpoint_seed": _derive("endpoint", 32).hex(),
                "endpoint": str(endpoint.address),
                "contact_seed": _derive("contact", 32).hex(),
                "contact": them,
                "entries": [
                    {"fields": e.to_json(), "encoded": d.hex(), "leaf_hash": leaf.hex()}
                    for e, d, leaf in zip(entries, data, leaves, strict=True)
                ],
                "root": checkpoint.root.hex(),
                "checkpoint_note": signed.to_text(),
                "cosigned_note": cosigned.to_text(),
                "cosigned_at": _COSIGNED_AT,
                "inclusion": {
                    "index": 3,
                    "proof": [h.hex() for h in merkle.inclusion_proof(3, size, hasher)],
                },
                "consistency": {"old_size": 2, "proof": [h.hex() for h in consistency]},
                "log_cosign_record": messages.encode(request).hex(),
                "log_cosigned_record": messages.encode(answer).hex(),
                "labelled_text": {
                    "label": labelled.label,
                    "record": messages.encode(labelled).hex(),
                    "entry": labelled_entry.encode().hex(),
                    "fields": labelled_entry.to_json(),
                },
            }
        ],
    }
