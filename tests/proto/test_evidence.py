"""Evidence entries' canonical encoding, and the witness's judgement (evidence.md)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onionpost.errors import MessageDecodeError, VerificationError
from onionpost.proto import merkle
from onionpost.proto._msgpack import pack
from onionpost.proto.evidence import Entry, Event, Verdict, judge, judge_own, text_entry
from onionpost.proto.messages import decode
from onionpost.proto.note import Checkpoint

ID = bytes(range(16))
ORIGIN = "x.onion/evidence"


def test_an_entry_round_trips_and_holds_only_digests() -> None:
    entry = text_entry(Event.QUEUED, 5, "bob.onion", ID, 4, "secret plan", "text/plain")
    data = entry.encode()
    assert Entry.decode(data) == entry
    assert b"secret plan" not in data
    assert entry.content == hashlib.blake2b(b"secret plan").digest()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        pack([1, 1, 5, "b", ID, "text", b"", b""]),  # a field short
        pack([2, 1, 5, "b", ID, "text", b"", b"", ""]),  # another version
        pack([1, 99, 5, "b", ID, "text", b"", b"", ""]),  # unknown event
        pack([1, 1, -5, "b", ID, "text", b"", b"", ""]),  # negative time
        pack([1, 1, 5, "b", ID[:8], "text", b"", b"", ""]),  # short id
        pack([1, 1, 5, "b", b"", "text", b"", b"", ""]),  # a message event without its id
        pack([1, 16, 5, "b", ID, "", b"", b"", ""]),  # a contact event with one
        pack([1, 1, 5, "b", ID, "mail", b"", b"", ""]),  # unknown kind
        pack([1, 1, 5, "b", ID, "text", b"x" * 10, b"", ""]),  # bad digest
        pack([1, True, 5, "b", ID, "text", b"", b"", ""]),  # a bool is not an int
        pack([1, 1, 5, "b", ID, "text", b"", b"", "d" * 600]),  # long detail
        b"\xd0\x01" + pack([1, 1])[1:],  # not canonical
    ],
)
def test_malformed_entries_are_refused(data: bytes) -> None:
    with pytest.raises(VerificationError) as caught:
        Entry.decode(data)
    assert caught.value.what == "entry"


def _tree(n: int) -> list[bytes]:
    return [merkle.leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def _cp(leaves: list[bytes], origin: str = ORIGIN) -> Checkpoint:
    return Checkpoint(origin, len(leaves), merkle.root_of(leaves))


@given(st.integers(1, 40), st.integers(0, 40))
def test_a_grown_log_is_cosigned_and_a_smaller_one_is_rollback(old: int, extra: int) -> None:
    leaves = _tree(old + extra)
    held, new = _cp(leaves[:old]), _cp(leaves)
    proof = merkle.consistency_proof(old, old + extra, merkle.list_hasher(leaves))
    assert judge(held, new, old, proof) is Verdict.COSIGN
    if extra:
        assert judge(new, held, old + extra, ()) is Verdict.ROLLBACK
        assert judge(held, new, old - 1, proof) is Verdict.RESYNC
        other = _tree(old + extra + 1)[1:]
        assert judge(held, _cp(other), old, proof) is Verdict.FORK


def test_same_size_other_root_or_other_origin_is_a_fork() -> None:
    leaves = _tree(4)
    assert judge(None, _cp(leaves), 0, ()) is Verdict.COSIGN
    assert judge(_cp(leaves), _cp(_tree(5)[1:]), 4, ()) is Verdict.FORK
    assert judge(_cp(leaves), _cp(leaves, "y.onion/evidence"), 4, ()) is Verdict.FORK


def test_the_owner_tells_a_resync_from_a_rollback_or_a_rewrite() -> None:
    leaves = _tree(10)
    hasher = merkle.list_hasher(leaves)

    def root_at(n: int) -> bytes:
        return hasher(0, n) if n else merkle.EMPTY_ROOT

    assert judge_own(_cp(leaves[:6]), 10, root_at) is Verdict.RESYNC
    assert judge_own(_cp(_tree(12)), 10, root_at) is Verdict.ROLLBACK
    assert judge_own(_cp(_tree(7)[1:] + _tree(1)), 10, root_at) is Verdict.FORK


@pytest.mark.parametrize(
    "record",
    [
        pack([72, b"x", 0, b"\x00" * 31]),  # a proof that is not whole hashes
        pack([72, b"x", 0, b"\x00" * 32 * 129]),  # too many hashes
        pack([72, b"x" * 40_000, 0, b""]),  # a checkpoint too large to witness
        pack([72, b"x", -1, b""]),  # a negative size
        pack([73, 2, b"x"]),  # an unknown status
        pack([73, 0]),  # a field short
    ],
)
def test_malformed_witnessing_records_are_refused(record: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        decode(record)
