"""A plaintext store (schema 2) becomes an encrypted one (schema 3): intact, and crash-safe.

``data/store-v2`` was written by the version 2 code (``data/make_store_v2.py``
says how); each test works on a copy, since opening converts in place.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _storekit import KEY, blob_path, new_id, offered

from onionpost.errors import StoreError, StoreTamperedError
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto.address import OnionAddress
from onionpost.proto.messages import FileOffer, FileRejectReason
from onionpost.store import SCHEMA_VERSION, Direction, State, Store, _legacy
from onionpost.store._database import Keys

C = FILE_CHUNK_SIZE
V2 = Path(__file__).resolve().parent / "data" / "store-v2"
CANARIES = [
    b"bob-canary-v2",
    bytes([0xB0]) * 32,  # bob's address (its public key)
    bytes([0xB1]) * 32,  # bob's client-auth key
    (1_700_000_000_123).to_bytes(6, "big"),  # when bob was last seen
    b"\x0c" * 16,  # a file id
    b"0c0c0c0c0c0c0c0c",  # ... in a blob's name
]


def ident(n: int) -> bytes:
    return bytes([n]) * 16


def _copy_v2(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    shutil.copytree(V2, root)
    (root / "files").chmod(0o700)
    return root


def _open(root: Path, key: bytes = KEY) -> Store:
    return Store.open(root / "store.sqlite", root / "files", key)


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _is_plaintext(root: Path) -> bool:
    return (root / "store.sqlite").read_bytes()[:16] == b"SQLite format 3\x00"


def _check_everything(store: Store, tmp_path: Path) -> None:
    """Every row of the fixture, as make_store_v2.py wrote it."""
    bob, carol = store.contacts.contact("bob-canary-v2"), store.contacts.contact("carol")
    assert [c.name for c in store.contacts.all()] == ["bob-canary-v2", "carol"]  # dave removed
    assert (bob.address, bob.client_auth_public) == (
        OnionAddress(bytes([0xB0]) * 32),
        bytes([0xB1]) * 32,
    )
    assert (bob.added_ms, bob.last_seen_ms, bob.last_success_ms) == (
        1000,
        1_700_000_000_123,
        1_700_000_000_123,
    )
    states = {n: store.messages.message(ident(n)) for n in range(1, 8)}
    assert {n: m.state for n, m in states.items()} == {
        1: State.QUEUED,
        2: State.SENT,
        3: State.DELIVERED,
        4: State.READ,
        5: State.EXPIRED,
        6: State.SENT,
        7: State.REFUSED,
    }
    assert (states[7].refused_ms, states[7].refused_reason) == (3007, FileRejectReason.TOO_LARGE)
    assert states[1].body == "out queued"
    assert [o.id for o in store.outbox.pending(bob.id, 10)] == [ident(1), ident(2)]
    assert [o.id for o in store.outbox.pending(carol.id, 10)] == [ident(6)]
    assert store.transfers.read_file_chunk(ident(6), 0, C) == b"outgoing file 6\n" * 10
    assert [(m.id, m.contact, m.state) for m in store.messages.inbox()] == [
        (ident(8), "bob-canary-v2", State.RECEIVED),
        (ident(9), "bob-canary-v2", State.READ),
        (ident(10), "dave", State.RECEIVED),
        (ident(11), "carol", State.RECEIVED),
    ]
    photo = bytes(n % 251 for n in range(1000))
    assert store.transfers.export_file(ident(11), tmp_path / "photo").read_bytes() == photo
    # The file still arriving: what it holds, its last activity, and it resumes.
    assert store.transfers.transfer_count(bob.id) == 1
    assert store.transfers.disk_used() == 160 + 160 + 1000 + C
    assert store.transfers.expire_transfers(4450) == []
    big = bytes(n % 253 for n in range(C + 50))
    arriving = FileOffer(
        ident(12),
        1700,
        "archive.tar",
        len(big),
        hashlib.blake2b(big, digest_size=64).digest(),
        "application/x-tar",
    )
    assert store.transfers.begin_file(bob.id, *offered(arriving), 5000, 2**30, 2**40) == C
    store.transfers.write_file_chunk(arriving.id, C, big[C:], now=5001)
    assert store.transfers.finish_file(arriving.id, 5002) is True
    assert store.messages.message(ident(12)).direction == Direction.IN
    store.messages.store_text(bob.id, new_id(), 1, "after the conversion", "text/plain", 6000)
    assert store.integrity_check() == []


def test_the_fixture_is_a_plaintext_version_2_store(tmp_path: Path) -> None:
    root = _copy_v2(tmp_path)
    conn = sqlite3.connect(root / "store.sqlite")
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
        names = [row[0] for row in conn.execute("SELECT name FROM contacts")]
    finally:
        conn.close()
    assert names == ["bob-canary-v2", "carol", "dave"]
    everything = b"".join(_snapshot(root).values()) + "".join(os.listdir(root / "files")).encode()
    assert [canary for canary in CANARIES if canary not in everything] == []


def test_a_version_2_store_is_converted_with_everything_in_it(tmp_path: Path) -> None:
    root = _copy_v2(tmp_path)
    with _open(root) as store:
        assert store._db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        _check_everything(store, tmp_path)
    # Encrypted: nothing of the fixture's canaries in any byte or any name.
    assert not _is_plaintext(root)
    assert (root / "store.sqlite").read_bytes()[:16] == Keys.derive(KEY).salt
    for name, data in _snapshot(root).items():
        for canary in CANARIES:
            assert canary not in data, (name, canary)
            assert canary not in name.encode(), (name, canary)
    # Only the new blobs are left: the old ones were swept.
    names = sorted(os.listdir(root / "files"))
    assert len(names) == 4
    assert all(len(name) == 64 for name in names)
    assert blob_path(root, "out", 2, ident(6)).name in names
    assert sorted(p.name for p in root.iterdir()) == ["files", "store.sqlite", "store.sqlite-bind"]
    with _open(root) as store:  # converted once only
        assert store.messages.inbox()[-1].body == "after the conversion"


def test_the_wrong_key_changes_nothing(tmp_path: Path) -> None:
    root = _copy_v2(tmp_path)
    before = _snapshot(root)
    with pytest.raises(StoreError, match="store key does not open") as refused:
        _open(root, key=bytes(32))
    assert not isinstance(refused.value, StoreTamperedError)
    assert _snapshot(root) == before


def test_a_failure_midway_leaves_the_plaintext_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy_v2(tmp_path)
    before = _snapshot(root)
    calls = []

    def recrypt_then_fail(self: object, old: object, size: int) -> None:
        calls.append(size)
        if len(calls) == 3:
            raise StoreError("the disk went away")
        real(self, old, size)

    real = _legacy.Blob.recrypt_from
    monkeypatch.setattr(_legacy.Blob, "recrypt_from", recrypt_then_fail)
    with pytest.raises(StoreError, match="went away"):
        _open(root)
    monkeypatch.undo()
    # The plaintext store is untouched; two blobs were written under new names.
    after = _snapshot(root)
    assert {k: v for k, v in after.items() if k in before} == before
    assert len(after) == len(before) + 2
    assert not (root / "store.sqlite.new").exists()
    with _open(root) as store:
        _check_everything(store, tmp_path)


def _run_until(root: Path, hook: str) -> subprocess.CompletedProcess[str]:
    """Open the store in a child process that dies (os._exit, no clean-up) at ``hook``."""
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from onionpost.store import Store, _legacy
        real_replace = os.replace
        def replace(src, dst):
            if not str(dst).endswith("store.sqlite"):  # a blob's
                return real_replace(src, dst)
            if "{hook}" == "after":
                real_replace(src, dst)
            os._exit(9)
        _legacy.os.replace = replace
        Store.open(Path({str(root / "store.sqlite")!r}), Path({str(root / "files")!r}),
                   bytes(range(32)))
        """
    )
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )


def test_killed_before_the_switch_the_plaintext_store_stays(tmp_path: Path) -> None:
    root = _copy_v2(tmp_path)
    before = _snapshot(root)
    assert _run_until(root, "before").returncode == 9
    assert _is_plaintext(root)
    assert (root / "store.sqlite.new").exists()  # what the next open replaces
    assert (root / "store.sqlite").read_bytes() == before["store.sqlite"]
    with _open(root) as store:
        _check_everything(store, tmp_path)
    assert not (root / "store.sqlite.new").exists()


def test_killed_after_the_switch_the_encrypted_store_is_complete(tmp_path: Path) -> None:
    root = _copy_v2(tmp_path)
    assert _run_until(root, "after").returncode == 9
    assert not _is_plaintext(root)
    assert len(os.listdir(root / "files")) == 8  # the old blobs, not yet swept
    with _open(root) as store:
        _check_everything(store, tmp_path)
    assert len(os.listdir(root / "files")) == 4


def test_a_row_altered_in_the_plaintext_store_still_fails_after(tmp_path: Path) -> None:
    """Contents were sealed to their rows before: moved ones stay unreadable."""
    root = _copy_v2(tmp_path)
    conn = sqlite3.connect(root / "store.sqlite", isolation_level=None)
    (a,) = conn.execute("SELECT content FROM messages WHERE id = ?", (ident(8),)).fetchone()
    conn.execute("UPDATE messages SET content = ? WHERE id = ?", (a, ident(9)))
    conn.close()
    with _open(root) as store:
        assert store.messages.message(ident(8)).body == "in from bob"
        with pytest.raises(StoreError, match="did not authenticate"):
            store.messages.message(ident(9))
        assert len(store.integrity_check()) == 1


def test_leftovers_of_an_earlier_attempt_are_replaced(tmp_path: Path) -> None:
    root = _copy_v2(tmp_path)
    (root / "store.sqlite.new").write_bytes(os.urandom(8192))
    (root / "store.sqlite.new-journal").write_bytes(b"junk")
    (root / "files" / ".tmp-0123456789abcdef").write_bytes(b"half a blob")
    with _open(root) as store:
        _check_everything(store, tmp_path)
    assert sorted(p.name for p in root.iterdir()) == ["files", "store.sqlite", "store.sqlite-bind"]
    assert len(os.listdir(root / "files")) == 4
