"""Signed notes (c2sp.org/signed-note) and cosignatures (c2sp.org/tlog-cosignature)."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onionpost.errors import ConfigError, VerificationError
from onionpost.proto import merkle as mk
from onionpost.proto import note as nt
from onionpost.proto.identity import Identity

# The example key and note of golang.org/x/mod/sumdb/note, the format's origin.
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_NOTE = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
    "\n"
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUg"
    "YN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ALICE = Identity(bytes(range(32)))
BOB = Identity(bytes(range(1, 33)))


def _checkpoint(size: int = 3) -> nt.Checkpoint:
    hashes = [mk.leaf_hash(bytes([i])) for i in range(size)]
    return nt.Checkpoint("alice.example/evidence", size, mk.root_of(hashes))


def test_the_reference_note_verifies_and_its_key_round_trips() -> None:
    verifier = nt.Verifier.from_text(GO_VKEY)
    assert verifier.to_text() == GO_VKEY
    (signature,) = nt.open_note(GO_NOTE, [verifier])
    assert signature.name == "PeterNeumann"
    assert nt.Note.parse(GO_NOTE).to_text() == GO_NOTE


def test_a_changed_text_or_signature_is_refused() -> None:
    verifier = nt.Verifier.from_text(GO_VKEY)
    with pytest.raises(VerificationError) as changed:
        nt.open_note(GO_NOTE.replace("problem,", "problem;"), [verifier])
    assert changed.value.what == "signature"
    raw = bytearray(GO_NOTE.encode())
    raw[-10] ^= 1
    with pytest.raises(VerificationError):
        nt.open_note(bytes(raw), [verifier])


def test_signatures_from_unknown_keys_are_ignored_but_one_known_is_needed() -> None:
    text = _checkpoint().to_text()
    signed = nt.sign(text, "alice.example", ALICE)
    by_bob = nt.sign(text, "bob.example", BOB)
    both = signed.with_signatures(by_bob.signatures)
    alice = nt.Verifier("alice.example", nt.ED25519, ALICE.public_key)
    assert nt.open_note(both.to_bytes(), [alice]) == signed.signatures
    with pytest.raises(VerificationError):
        nt.open_note(by_bob, [alice])
    # Same name, another key (so another key ID): ignored, then nothing known.
    impostor = nt.Verifier("alice.example", nt.ED25519, BOB.public_key)
    with pytest.raises(VerificationError):
        nt.open_note(signed, [impostor])


def test_a_known_key_whose_signature_fails_rejects_the_whole_note() -> None:
    text = _checkpoint().to_text()
    good = nt.sign(text, "alice.example", ALICE)
    bad_sig = nt.NoteSignature("bob.example", nt.key_id("bob.example", nt.ED25519, BOB.public_key),
                               bytes(64))  # fmt: skip
    note = good.with_signatures([bad_sig])
    verifiers = [
        nt.Verifier("alice.example", nt.ED25519, ALICE.public_key),
        nt.Verifier("bob.example", nt.ED25519, BOB.public_key),
    ]
    with pytest.raises(VerificationError):
        nt.open_note(note, verifiers)


def test_cosignatures_bind_the_time_and_the_checkpoint() -> None:
    checkpoint = nt.sign(_checkpoint().to_text(), "alice.example", ALICE)
    cosig = nt.cosign(checkpoint, "bob.example/witness", BOB, timestamp=1_800_000_000)
    assert cosig.timestamp() == 1_800_000_000
    witness = nt.Verifier("bob.example/witness", nt.COSIGNATURE, BOB.public_key)
    cosigned = checkpoint.with_signatures([cosig])
    assert nt.verified_cosignature(nt.Note.parse(cosigned.to_bytes()), witness) == cosig
    # Another time in the signature, or another checkpoint: refused.
    moved = nt.NoteSignature(cosig.name, cosig.key_id,
                             (1_800_000_001).to_bytes(8, "big") + cosig.signature[8:])  # fmt: skip
    with pytest.raises(VerificationError):
        nt.verified_cosignature(checkpoint.with_signatures([moved]), witness)
    other = nt.sign(_checkpoint(4).to_text(), "alice.example", ALICE)
    with pytest.raises(VerificationError):
        nt.verified_cosignature(other.with_signatures([cosig]), witness)
    # A plain signature by the same key is not a cosignature (another key ID).
    plain = nt.Verifier("bob.example/witness", nt.ED25519, BOB.public_key)
    assert plain.key_id != witness.key_id


def test_a_note_may_not_be_signed_as_a_cosigned_message() -> None:
    with pytest.raises(ConfigError):
        nt.sign("cosignature/v1\ntime 1\nx\n", "alice.example", ALICE)


@pytest.mark.parametrize(
    "text",
    [
        "no final newline",
        "a NUL \x00 inside\n",
        "a tab\tinside\n",
        "x" * 9000 + "\n",
    ],
)
def test_malformed_texts_are_refused(text: str) -> None:
    with pytest.raises(VerificationError):
        nt.sign(text, "alice.example", ALICE)


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe not utf-8\n\n\xe2\x80\x94 a AAAAAAA=\n",
        b"text only\n",
        b"text\n\n- a AAAAAAAA\n",
        "text\n\n\u2014 a !!notbase64\n".encode(),
        "text\n\n\u2014 a AAAA\u00e9AAA\n".encode(),  # not ASCII: base64 raises ValueError
        "text\n\n\u2014 a AAAA\n".encode(),
        "text\n\n\u2014 with+plus AAAAAAAA\n".encode(),
        b"text\n\n" + "\u2014 a AAAAAAAA\n".encode() * 40,
    ],
)
def test_malformed_notes_are_refused(data: bytes) -> None:
    with pytest.raises(VerificationError):
        nt.Note.parse(data)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "name+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+AhpZ2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcU",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ],
)
def test_malformed_verifier_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigError):
        nt.Verifier.from_text(key)


def test_checkpoints_round_trip_and_malformed_ones_are_refused() -> None:
    checkpoint = nt.Checkpoint("o.example/log", 7, bytes(32), ("ext one",))
    assert nt.Checkpoint.from_text(checkpoint.to_text()) == checkpoint
    root = base64.b64encode(bytes(32)).decode()
    for text in (
        f"o\n07\n{root}\n",
        f"o\n-1\n{root}\n",
        f"o\n7\n{root[:-2]}\n",
        "o\n7\n\n",
        f"\n7\n{root}\n",
        f"o\n7\n{root}",
        f"o\n7\n{root}\n\n",
        # Digits to isdigit, not to a checkpoint; past what a store keeps.
        f"o\n\u00b2\n{root}\n",
        f"o\n\u0661\n{root}\n",
        f"o\n{'9' * 5000}\n{root}\n",
        f"o\n{2**63}\n{root}\n",
    ):
        with pytest.raises(VerificationError):
            nt.Checkpoint.from_text(text)
    largest = nt.Checkpoint("o.example/log", 2**63 - 1, bytes(32))
    assert nt.Checkpoint.from_text(largest.to_text()) == largest


def test_a_cosignature_past_year_9999_is_refused_both_ways() -> None:
    """Its time is shown as a date (log verify, verify-export): the last
    second of year 9999 at most."""
    checkpoint = nt.sign(_checkpoint().to_text(), "alice.example", ALICE)
    last = 253_402_300_799
    witness = nt.Verifier("bob.example/witness", nt.COSIGNATURE, BOB.public_key)
    at = nt.cosign(checkpoint, "bob.example/witness", BOB, timestamp=last)
    assert nt.verified_cosignature(checkpoint.with_signatures([at]), witness) == at
    with pytest.raises(ConfigError):
        nt.cosign(checkpoint, "bob.example/witness", BOB, timestamp=last + 1)
    # Signed by the key, as a contact could: refused when verified.
    stamp = (last + 1).to_bytes(8, "big")
    body = BOB.sign(nt._cosigned_message(checkpoint.text, last + 1))
    past = nt.NoteSignature(at.name, at.key_id, stamp + body)
    with pytest.raises(VerificationError, match="time is out of range"):
        nt.verified_cosignature(checkpoint.with_signatures([past]), witness)


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FFF), max_size=200))
def test_any_valid_text_signs_and_verifies(body: str) -> None:
    text = body + "\n"
    signed = nt.sign(text, "alice.example", ALICE)
    parsed = nt.Note.parse(signed.to_bytes())
    assert parsed == signed
    nt.open_note(parsed, [nt.Verifier("alice.example", nt.ED25519, ALICE.public_key)])


@pytest.mark.parametrize("bad", ["\x00", "\t", "\r", "\x1b", "\x1f", "\x0b"])
def test_a_note_with_a_control_character_is_refused(bad: str) -> None:
    with pytest.raises(VerificationError, match="control character"):
        nt.Note.parse(f"origin{bad}\n1\n\n\u2014 k AAAAAAAA\n")
