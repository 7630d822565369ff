"""Nothing leaks to disk: no plaintext contents anywhere in a home, rows bound to their place."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from _storekit import add_contact, new_id, offer_for, open_store

from onionpost.errors import StoreError
from onionpost.home import Paths, init_home
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.store import Store

TEXT_OUT = "Rendezvous at the old mill, quarter past nine, bring the ledger"
TEXT_IN = "Acknowledged: the ledger stays with Marguerite until Thursday"
FILE_NAME = "operation-bluebird-roster.xlsx"
MARKER = b"BLUEBIRD-CONTENT-MARKER-7f3a "


def _needles() -> list[bytes]:
    needles = []
    for text in (TEXT_OUT, TEXT_IN, FILE_NAME):
        needles += [text.encode("utf-8"), text.encode("utf-16-le")]
        needles.append(text[10:30].encode("utf-8"))  # any long fragment
    needles.append(MARKER)
    needles.append(MARKER.strip().lower())
    return needles


def _all_bytes(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _leaks(root: Path) -> list[str]:
    found = []
    for path, data in _all_bytes(root).items():
        lowered = data.lower()
        for needle in _needles():
            if needle in data or needle.lower() in lowered:
                found.append(f"{path.relative_to(root)} contains {needle[:20]!r}")
    return found


def test_no_plaintext_contents_anywhere_in_the_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ONIONPOST_KDF_FAST", "1")
    paths = Paths.for_home(tmp_path / "home")
    secrets = init_home(paths, display_name="Alice", passphrase="pw", key_file=None, now=1)
    content = MARKER * (3 * FILE_CHUNK_SIZE // len(MARKER))
    source = tmp_path / "outside" / FILE_NAME
    source.parent.mkdir()
    source.write_bytes(content)

    store = Store.open(paths.store, paths.files, secrets.store_key)
    bob = add_contact(store)
    store.queue_text(bob.id, new_id(), 1, TEXT_OUT, "text/plain", None)
    store.store_text(bob.id, new_id(), 1, TEXT_IN, "text/plain", 2)
    store.queue_file(bob.id, new_id(), 1, FILE_NAME, source, 2**30)
    offer = offer_for(content, name=FILE_NAME)
    store.begin_file(bob.id, offer, 1, 2**30, 2**34)
    for offset in range(0, len(content), FILE_CHUNK_SIZE):
        store.write_file_chunk(offer.id, offset, content[offset : offset + FILE_CHUNK_SIZE])
    partial = offer_for(content, name=FILE_NAME)  # still arriving
    store.begin_file(bob.id, partial, 1, 2**30, 2**34)
    store.write_file_chunk(partial.id, 0, content[:FILE_CHUNK_SIZE])
    store.finish_file(offer.id, 3)

    # While the store is open, most recent writes are in the WAL.
    files = _all_bytes(paths.home)
    assert paths.store.with_name("store.sqlite-wal") in files
    assert len([p for p in files if p.parent == paths.files]) == 3
    assert _leaks(paths.home) == []
    store.close()
    assert _leaks(paths.home) == []
    # The test can find what it looks for: the source file does contain it.
    assert _leaks(source.parent) != []
    # And the store still reads it all back.
    with Store.open(paths.store, paths.files, secrets.store_key) as store:
        assert {m.body for m in store.inbox() if m.body} == {TEXT_IN}
        exported = store.export_file(offer.id, tmp_path / "exported")
        assert hashlib.blake2b(exported.read_bytes()).digest() == offer.blake2b


def test_swapping_two_rows_contents_makes_reading_fail(tmp_path: Path) -> None:
    first, second = new_id(), new_id()
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.store_text(bob.id, first, 1, "pay 10", "text/plain", 1)
        store.store_text(bob.id, second, 1, "pay 10000", "text/plain", 2)
    conn = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    (a,) = conn.execute("SELECT content FROM messages WHERE id = ?", (first,)).fetchone()
    (b,) = conn.execute("SELECT content FROM messages WHERE id = ?", (second,)).fetchone()
    conn.execute("UPDATE messages SET content = ? WHERE id = ?", (b, first))
    conn.execute("UPDATE messages SET content = ? WHERE id = ?", (a, second))
    conn.close()
    with open_store(tmp_path) as store:
        for message_id in (first, second):
            with pytest.raises(StoreError, match="did not authenticate"):
                store.message(message_id)
        with pytest.raises(StoreError):
            store.inbox()
        assert len(store.integrity_check()) == 2


def test_moving_a_message_to_another_contact_or_direction_fails(tmp_path: Path) -> None:
    message_id = new_id()
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        carol = add_contact(store, "carol")
        store.store_text(bob.id, message_id, 1, "from bob", "text/plain", 1)
    for edit in (
        ("UPDATE messages SET contact_id = ? WHERE id = ?", (carol.id, message_id)),
        (
            "UPDATE messages SET direction = 'out', contact_id = ? WHERE id = ?",
            (bob.id, message_id),
        ),
    ):
        conn = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
        conn.execute(*edit)
        conn.close()
        with open_store(tmp_path) as store, pytest.raises(StoreError):
            store.message(message_id)


def test_blob_and_temporary_files_are_private(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        (tmp_path / "f").write_bytes(b"x")
        (tmp_path / "f").chmod(0o644)
        store.queue_file(bob.id, new_id(), 1, "f", tmp_path / "f", 2**30)
        offer = offer_for(b"y")
        store.begin_file(bob.id, offer, 1, 2**30, 2**34)
        for blob in (tmp_path / "files").iterdir():
            assert stat.S_IMODE(blob.stat().st_mode) == 0o600, blob
    assert os.listdir(tmp_path / "files")
