"""A copy of the home without the key shows nothing; a change made without it is refused.

What storage.md §5-7 promises, checked on real files: no contact name,
address, key, time, id or content anywhere in a home's bytes (the database,
its WAL, the blobs and their names); any byte of the database or of its WAL
changed, a page or a blob taken from another home or swapped, a file cut
short: refused with StoreTamperedError when the store opens (or, for a blob,
when it is read), and nothing on disk changed by the refused open.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import sqlite3
import stat
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from _storekit import KEY, add_contact, blob_path, new_id, offer_for, offered, open_store

from onionpost.errors import StoreError, StoreTamperedError
from onionpost.home import Paths, init_home
from onionpost.home._secrets import KdfCost
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto.address import OnionAddress
from onionpost.store import State, Store, _database
from onionpost.store._files import RECORD_SIZE

PAGE = _database.PAGE_SIZE
FRAME = 24 + PAGE
IV_AT, HMAC_AT = PAGE - 48, PAGE - 32  # where a page's IV and HMAC-SHA256 start
TEXT_OUT = "Rendezvous at the old mill, quarter past nine, bring the ledger"
TEXT_IN = "Acknowledged: the ledger stays with Marguerite until Thursday"
FILE_NAME = "operation-bluebird-roster.xlsx"
MARKER = b"BLUEBIRD-CONTENT-MARKER-7f3a "
CONTACT = "Zephyrine-Canary"
ADDRESS = OnionAddress(hashlib.sha256(b"canary address").digest())
CLIENT_AUTH = hashlib.sha256(b"canary client auth").digest()
WHEN = 1_712_345_678_901  # a canary time in ms: 6 bytes as an SQLite integer
OTHER_KEY = bytes(range(100, 132))


def _ints(value: int) -> list[bytes]:
    """How a program might have written ``value``: big- and little-endian, as
    SQLite stores it (6 bytes here), and as decimal text."""
    return [
        value.to_bytes(8, "big"),
        value.to_bytes(8, "little"),
        value.to_bytes(6, "big"),
        str(value).encode(),
    ]


def _needles(ids: list[bytes]) -> list[bytes]:
    needles = []
    for text in (TEXT_OUT, TEXT_IN, FILE_NAME, CONTACT):
        needles += [text.encode("utf-8"), text.encode("utf-16-le")]
        needles.append(text[3:15].encode("utf-8"))  # any long fragment
    needles += [MARKER, MARKER.strip().lower()]
    onion = str(ADDRESS).removesuffix(".onion")
    needles += [onion.encode(), onion[:20].encode(), ADDRESS.public_key, CLIENT_AUTH]
    needles += [base64.b64encode(CLIENT_AUTH)[:20], CLIENT_AUTH.hex().encode()]
    needles += _ints(WHEN)
    for message_id in ids:
        needles += [message_id, message_id.hex().encode()]
    return needles


def _all_bytes(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _leaks(root: Path, ids: list[bytes], skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path, data in _all_bytes(root).items():
        if path.name in skip:
            continue
        lowered = data.lower()
        for needle in _needles(ids):
            if needle in data or needle.lower() in lowered:
                found.append(f"{path.relative_to(root)} contains {needle[:20]!r}")
            if needle in path.name.encode() or needle.hex().encode() in path.name.encode():
                found.append(f"{path.relative_to(root)}'s name contains {needle[:20]!r}")
    return found


def _fill_canaries(store: Store, source: Path) -> tuple[list[bytes], bytes]:
    """Every kind of row, the canaries in them; (the ids used, an arriving file's id)."""
    content = MARKER * (3 * FILE_CHUNK_SIZE // len(MARKER))
    source.write_bytes(content)
    zephyrine = store.contacts.add_contact(CONTACT, ADDRESS, CLIENT_AUTH, WHEN)
    store.contacts.note_contact_seen(zephyrine.id, WHEN, success=True)
    ids = [new_id() for _ in range(4)]
    store.outbox.queue_text(zephyrine.id, ids[0], WHEN, TEXT_OUT, "text/plain", WHEN + 1)
    store.messages.store_text(zephyrine.id, ids[1], WHEN, TEXT_IN, "text/plain", WHEN)
    store.messages.mark_read([ids[1]], WHEN)
    store.outbox.queue_file(zephyrine.id, ids[2], WHEN, FILE_NAME, source, 2**30)
    offer = offer_for(content, name=FILE_NAME, file_id=ids[3])
    store.transfers.begin_file(zephyrine.id, *offered(offer), WHEN, 2**30, 2**34)
    for offset in range(0, len(content), FILE_CHUNK_SIZE):
        store.transfers.write_file_chunk(
            offer.id, offset, content[offset : offset + FILE_CHUNK_SIZE]
        )
    store.transfers.finish_file(offer.id, WHEN)
    partial = offer_for(content, name=FILE_NAME)  # still arriving
    store.transfers.begin_file(zephyrine.id, *offered(partial), WHEN, 2**30, 2**34)
    store.transfers.write_file_chunk(partial.id, 0, content[:FILE_CHUNK_SIZE], now=WHEN)
    return [*ids, partial.id], offer.id


def test_nothing_in_a_home_says_who_when_or_what(tmp_path: Path) -> None:
    paths = Paths.for_home(tmp_path / "home")
    secrets = init_home(
        paths,
        display_name="Alice",
        passphrase="pw",
        key_file=None,
        now=1,
        kdf_cost=KdfCost.FLOOR,
    )
    (tmp_path / "outside").mkdir()
    source = tmp_path / "outside" / FILE_NAME

    store = Store.open(paths.store, paths.files, secrets.store_key)
    ids, complete = _fill_canaries(store, source)
    # While the store is open, the recent writes are in the WAL: a copy taken now.
    files = _all_bytes(paths.home)
    assert paths.store.with_name("store.sqlite-wal") in files
    assert not paths.store.with_name("store.sqlite-shm").exists()
    assert len([p for p in files if p.parent == paths.files]) == 3
    # card.txt is public by design and holds our own name and address only.
    assert _leaks(paths.home, ids, skip=("card.txt",)) == []
    copy = tmp_path / "copy"
    shutil.copytree(paths.home, copy)
    store.close()
    assert _leaks(paths.home, ids, skip=("card.txt",)) == []
    # The test finds what it looks for: the source file and a plaintext store do hold it.
    assert _leaks(source.parent, ids) != []
    # No SQLite reads either file, so no count of anything either.
    for name in ("store.sqlite", "store.sqlite-wal"):
        with pytest.raises(sqlite3.DatabaseError, match="not a database"):
            sqlite3.connect(copy / name).execute("SELECT count(*) FROM sqlite_master").fetchone()
    # And the store, copy and original, reads it all back.
    for home in (paths.home, copy):
        with Store.open(home / "store.sqlite", home / "files", secrets.store_key) as opened:
            (zephyrine,) = opened.contacts.all()
            assert (zephyrine.name, zephyrine.address) == (CONTACT, ADDRESS)
            assert (zephyrine.client_auth_public, zephyrine.added_ms) == (CLIENT_AUTH, WHEN)
            assert zephyrine.last_success_ms == WHEN
            assert {m.body for m in opened.messages.inbox() if m.body} == {TEXT_IN}
            exported = opened.transfers.export_file(complete, home / "exported")
            assert exported.read_bytes() == source.read_bytes()


def test_no_plain_sqlite_can_edit_the_store(tmp_path: Path) -> None:
    """The edits a plaintext store allowed (re-point a contact, add a client-auth
    key, mark a message delivered, delete a row) need to read the file first."""
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.outbox.queue_text(bob.id, new_id(), 1, "x", "text/plain", None)
    conn = sqlite3.connect(tmp_path / "store.sqlite", isolation_level=None)
    for edit in (
        "UPDATE contacts SET address = zeroblob(32)",
        "UPDATE contacts SET client_auth_public = zeroblob(32)",
        "UPDATE messages SET state = 'delivered'",
        "DELETE FROM messages",
        "INSERT INTO contacts (name, address, client_auth_public, added_ms) VALUES "
        "('eve', zeroblob(32), zeroblob(32), 1)",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="not a database"):
            conn.execute(edit)
    conn.close()
    with open_store(tmp_path) as store:
        assert store.integrity_check() == []
        assert store.outbox.outbox_depth() == 1


# -- changes to the database file ----------------------------------------------------


def _home(root: Path, key: bytes = KEY, messages: int = 200) -> Path:
    """A closed store with every kind of row and some bulk (pages of each table)."""
    root.mkdir()
    with open_store(root, key) as store:
        _fill_canaries(store, root / "source")
        bob = add_contact(store)
        with store.transaction():
            for n in range(messages):
                store.outbox.queue_text(bob.id, new_id(), n, "padding " * 40, "text/plain", None)
        removed = add_contact(store, "removed")
        store.contacts.remove_contact(removed.name)
    (root / "source").unlink()
    return root


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _refused(root: Path, match: str = "altered or damaged") -> StoreTamperedError:
    """Opening is refused, and the refused open changed no file of the home."""
    before = _snapshot(root)
    with pytest.raises(StoreTamperedError, match=match) as refused:
        open_store(root).close()
    assert _snapshot(root) == before
    return refused.value


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _home(tmp_path_factory.mktemp("pristine") / "home")


def _copy(pristine: Path, tmp_path: Path) -> Path:
    root = tmp_path / "home"
    shutil.copytree(pristine, root)
    return root


def _flip(path: Path, offset: int) -> None:
    with path.open("r+b") as handle:
        handle.seek(offset)
        (byte,) = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte ^ 0x01]))


def _db_offsets(pristine: Path) -> Iterator[int]:
    pages = (pristine / "store.sqlite").stat().st_size // PAGE
    yield from (16, 17, 100, 900, IV_AT - 1, IV_AT, HMAC_AT, PAGE - 1)  # page 1, after the salt
    for page in sorted({1, 2, pages // 3, pages // 2, pages - 2, pages - 1}):
        for within in (0, 7, 500, IV_AT - 1, IV_AT, IV_AT + 5, HMAC_AT, PAGE - 1):
            yield page * PAGE + within  # content, the IV, the HMAC


def test_any_byte_of_the_database_changed_is_refused(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    db = root / "store.sqlite"
    original = db.read_bytes()
    offsets = list(_db_offsets(pristine))
    assert len(offsets) > 40
    for offset in offsets:
        _flip(db, offset)
        _refused(root)
        db.write_bytes(original)
    open_store(root).close()  # the original opens


def test_the_salt_changed_reads_as_another_key(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    _flip(root / "store.sqlite", 3)
    with pytest.raises(StoreError, match=r"store key does not open.*altered"):
        open_store(root)


def test_a_page_from_another_home_is_refused(pristine: Path, tmp_path: Path) -> None:
    """Two homes, two keys, the same rows: a page of one in the other is refused
    (a contact's row, a message's, whichever the page holds)."""
    root = _copy(pristine, tmp_path)
    other = _home(tmp_path / "other", OTHER_KEY)
    db, foreign = root / "store.sqlite", (other / "store.sqlite").read_bytes()
    original = db.read_bytes()
    for page in (1, 2, 3, len(original) // PAGE - 1):
        db.write_bytes(
            original[: page * PAGE]
            + foreign[page * PAGE : (page + 1) * PAGE]
            + original[(page + 1) * PAGE :]
        )
        _refused(root)
    # The other home's whole file: another key.
    db.write_bytes(foreign)
    with pytest.raises(StoreError, match="store key does not open"):
        open_store(root)


def test_pages_moved_within_the_file_are_refused(pristine: Path, tmp_path: Path) -> None:
    root = _copy(pristine, tmp_path)
    db = root / "store.sqlite"
    original = db.read_bytes()
    a, b = 2 * PAGE, 5 * PAGE
    db.write_bytes(
        original[:a]
        + original[b : b + PAGE]
        + original[a + PAGE : b]
        + original[a : a + PAGE]
        + original[b + PAGE :]
    )
    _refused(root)
    db.write_bytes(original[: 3 * PAGE] + original[4 * PAGE :])  # a page taken out
    _refused(root)


def test_a_plaintext_store_put_in_its_place_is_refused(pristine: Path, tmp_path: Path) -> None:
    """A plaintext SQLite file claiming version 3 was never written by onionpost."""
    root = _copy(pristine, tmp_path)
    (root / "store.sqlite").unlink()
    conn = sqlite3.connect(root / "store.sqlite", isolation_level=None)
    conn.execute("CREATE TABLE contacts (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("PRAGMA user_version = 3")
    conn.close()
    _refused(root, match="plaintext store of schema version 3")


# -- changes to the WAL ----------------------------------------------------------------


def _frames(wal: bytes) -> list[tuple[int, int]]:
    """(offset, commit size) of each frame of the WAL's current log."""
    salts = wal[16:24]
    frames = []
    for offset in range(32, len(wal) - FRAME + 1, FRAME):
        if wal[offset + 8 : offset + 16] != salts:
            break
        frames.append((offset, struct.unpack(">I", wal[offset + 4 : offset + 8])[0]))
    return frames


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[bytes], bytes]:
    """A copy of a home taken while its store was open: a WAL of many commits;
    and its binding file as it was before the last commit."""
    root = tmp_path_factory.mktemp("crashed")
    live = root / "live"
    live.mkdir()
    store = open_store(live)
    bob = add_contact(store)
    ids = [new_id() for _ in range(30)]
    for n, message_id in enumerate(ids):
        store.outbox.queue_text(bob.id, message_id, n, f"message {n} " * 30, "text/plain", None)
    before_last = (live / "store.sqlite-bind").read_bytes()
    store.outbox.mark_delivered(ids[:5], 100, contact_id=bob.id)
    copy = root / "copy"
    shutil.copytree(live, copy)
    store.close()
    return copy, ids, before_last


def test_the_copy_taken_while_open_reads_back(
    crashed: tuple[Path, list[bytes], bytes], tmp_path: Path
) -> None:
    copy, ids, _ = crashed
    root = _copy(copy, tmp_path)
    assert (root / "store.sqlite-wal").stat().st_size > 20 * FRAME
    with open_store(root) as store:
        assert store.integrity_check() == []
        assert [m.id for m in store.outbox.listing()] == ids[5:]


def test_any_byte_of_the_wal_changed_is_refused(
    crashed: tuple[Path, list[bytes], bytes], tmp_path: Path
) -> None:
    copy, _, _ = crashed
    root = _copy(copy, tmp_path)
    wal = root / "store.sqlite-wal"
    original = wal.read_bytes()
    frames = _frames(original)
    commits = [offset for offset, commit in frames if commit]
    assert len(commits) > 20
    # Every frame but the last commit's: SQLite would stop at it and drop what follows.
    last = commits[-1]
    offsets = [0, 3, 8, 12, 16, 20, 24, 28, 31]  # the header: magic, page size, salts, checksum
    for offset, _commit in frames[:: max(1, len(frames) // 12)]:
        if offset != last:
            offsets += [
                offset + 0,
                offset + 4,
                offset + 8,
                offset + 16,
                offset + 20,
                offset + 24,
                offset + 24 + 500,
                offset + FRAME - 1,
            ]
    for offset in offsets:
        _flip(wal, offset)
        _refused(root, match="write-ahead log")
        wal.write_bytes(original)
    open_store(root).close()


def test_what_a_crash_can_leave_in_the_wal_is_not_refused(
    crashed: tuple[Path, list[bytes], bytes], tmp_path: Path
) -> None:
    """A log cut short, or its last commit torn, with the binding file of the
    commit before (the record of a commit is written after it): what a power
    cut or kill -9 during the last commit leaves. The store opens at the
    commit before; the same log with the binding of its last commit (a
    commit that had returned) is refused (storage.md §5.4)."""
    copy, ids, before_last = crashed
    root = _copy(copy, tmp_path)
    wal, bind = root / "store.sqlite-wal", root / "store.sqlite-bind"
    original, bound = wal.read_bytes(), bind.read_bytes()
    last = [offset for offset, commit in _frames(original) if commit][-1]
    damages = (
        original[: last + 100],  # torn while writing the last commit
        original[:last] + original[last : last + 200] + bytes(FRAME - 200),
        original[: last + FRAME - 1],
    )
    for damaged in damages:
        wal.write_bytes(damaged)
        bind.write_bytes(bound)
        _refused(root, match="not the state")
    for damaged in (*damages, original):  # the last commit's record not written yet
        wal.write_bytes(damaged)
        bind.write_bytes(before_last)
        with open_store(root) as store:
            assert store.integrity_check() == []
            assert store.messages.message(ids[0]).state == State.QUEUED  # before the last commit
    root = _copy(copy, tmp_path / "again")
    with open_store(root) as store:
        assert store.messages.message(ids[0]).state == State.DELIVERED


# -- blobs -----------------------------------------------------------------------------


def test_blob_names_are_keyed_hashes(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        (tmp_path / "f").write_bytes(b"x")
        file_id = new_id()
        store.outbox.queue_file(bob.id, file_id, 1, "f", tmp_path / "f", 2**30)
        offer = offer_for(b"y")
        store.transfers.begin_file(bob.id, *offered(offer), 1, 2**30, 2**34)
    names = sorted(os.listdir(tmp_path / "files"))
    assert names == sorted(
        [
            blob_path(tmp_path, "out", bob.id, file_id).name,
            blob_path(tmp_path, "in", bob.id, offer.id).name,
        ]
    )
    for name in names:
        assert len(name) == 64
        assert file_id.hex() not in name
        assert offer.id.hex() not in name
    # Another key names the same blob differently.
    assert blob_path(tmp_path, "out", bob.id, file_id, OTHER_KEY).name not in names


def test_a_blob_swapped_for_another_is_refused_when_read(tmp_path: Path) -> None:
    """Swapped between contacts, between directions, or taken from another home."""
    data = os.urandom(FILE_CHUNK_SIZE + 10)
    source = tmp_path / "f"
    source.write_bytes(data)
    out_id, bob_in, carol_in = new_id(), offer_for(data), offer_for(data)
    homes = {}
    for name, key in (("home", KEY), ("other", OTHER_KEY)):
        root = tmp_path / name
        root.mkdir()
        with open_store(root, key) as store:
            bob, carol = add_contact(store), add_contact(store, "carol")
            store.outbox.queue_file(bob.id, out_id, 1, "f", source, 2**30)
            for contact, offer in ((bob, bob_in), (carol, carol_in)):
                store.transfers.begin_file(contact.id, *offered(offer), 1, 2**30, 2**34)
                for at in range(0, len(data), FILE_CHUNK_SIZE):
                    store.transfers.write_file_chunk(offer.id, at, data[at : at + FILE_CHUNK_SIZE])
                store.transfers.finish_file(offer.id, 2)
        homes[name] = (root, key, bob.id, carol.id)
    root, _, bob_id, carol_id = homes["home"]
    other, other_key, *_ = homes["other"]
    target = blob_path(root, "in", bob_id, bob_in.id)
    original = target.read_bytes()
    for replacement in (
        blob_path(root, "in", carol_id, carol_in.id).read_bytes(),  # another contact's
        blob_path(root, "out", bob_id, out_id).read_bytes(),  # the same bytes, sent
        blob_path(other, "in", bob_id, bob_in.id, other_key).read_bytes(),  # another home's
    ):
        assert len(replacement) == len(original)
        target.write_bytes(replacement)
        with open_store(root) as store:
            with pytest.raises(StoreError, match="did not authenticate"):
                store.transfers.export_file(bob_in.id, tmp_path / "out", contact_id=bob_id)
            assert not (tmp_path / "out").exists()
    target.write_bytes(original[:RECORD_SIZE])  # cut short
    with open_store(root) as store:
        assert any("blob is" in problem for problem in store.integrity_check())


def test_blob_and_temporary_files_are_private(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        (tmp_path / "f").write_bytes(b"x")
        (tmp_path / "f").chmod(0o644)
        store.outbox.queue_file(bob.id, new_id(), 1, "f", tmp_path / "f", 2**30)
        offer = offer_for(b"y")
        store.transfers.begin_file(bob.id, *offered(offer), 1, 2**30, 2**34)
        for blob in (tmp_path / "files").iterdir():
            assert stat.S_IMODE(blob.stat().st_mode) == 0o600, blob
    assert os.listdir(tmp_path / "files")


def test_a_contact_change_leaves_no_earlier_state_in_the_wal(tmp_path: Path) -> None:
    """Deleting the WAL puts back the state of the last checkpoint; after a
    contact is added or removed that state already has the change."""
    store = open_store(tmp_path)
    try:
        add_contact(store, "eve")
        store.contacts.remove_contact("eve")
        assert (tmp_path / "store.sqlite-wal").stat().st_size == 0
        copy = tmp_path / "copy"
        copy.mkdir()
        for name in ("store.sqlite", "store.sqlite-bind"):  # the WAL lost
            shutil.copy(tmp_path / name, copy / name)
    finally:
        store.close()
    with open_store(copy) as opened:
        assert opened.contacts.all() == []


_WRITER = """
import hashlib, os, sys
from pathlib import Path
from onionpost.proto.address import OnionAddress
from onionpost.proto.messages import FileOffer
from onionpost.store import Store
root = Path(sys.argv[1])
store = Store.open(root / "store.sqlite", root / "files", bytes(range(32)))
bob = (store.contacts.all() or [None])[0] or store.contacts.add_contact(
    "bob", OnionAddress(os.urandom(32)), os.urandom(32), 1)
print("ready", flush=True)
for n in range(10**9):
    store.outbox.queue_text(bob.id, os.urandom(16), n, "m" * 300, "text/plain", None)
    data = os.urandom(3 * 65485)
    offer = FileOffer(os.urandom(16), 1, "f", len(data),
                      hashlib.blake2b(data, digest_size=64).digest(), "x")
    store.transfers.begin_file(bob.id, offer.id, offer.created_ms, offer.name, offer.size,
                               offer.blake2b, offer.content_type, n, 2**30, 2**40)
    for at in range(0, len(data), 65485):
        store.transfers.write_file_chunk(offer.id, at, data[at : at + 65485], now=n)
    store.transfers.finish_file(offer.id, n)
    with store.transaction():
        pending = store.outbox.pending(bob.id, 20)
        store.outbox.mark_delivered([m.id for m in pending], n, contact_id=bob.id)
"""


def test_a_writer_killed_at_any_moment_is_not_taken_for_tampering(tmp_path: Path) -> None:
    """kill -9 leaves a WAL cut anywhere (a frame half written, the last
    transaction short): the store opens, checks clean and has what was committed."""
    import random
    import signal
    import subprocess
    import sys
    import time

    held = 0
    for delay in (0.05, 0.2, 0.35, 0.5, 0.8, random.uniform(0.05, 0.8)):
        writer = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        assert writer.stdout is not None
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        with open_store(tmp_path) as store:
            assert store.integrity_check() == []
            inbox = len(store.messages.inbox(limit=10**6))
            assert inbox >= held
            held = inbox
    assert held > 0


def test_the_subkeys_are_those_storage_md_lists() -> None:
    import re

    from onionpost.store._database import Keys

    spec = (Path(__file__).resolve().parents[2] / "protocol-spec" / "storage.md").read_text()
    rows = re.findall(r"^\| (\w[\w ]+) \| `([^`]+)` \| (\d+) \| ", spec, flags=re.MULTILINE)
    table = {name: (purpose.encode(), int(size)) for name, purpose, size in rows}
    keys = Keys.derive(KEY)
    fields = {
        "database key": keys.database,
        "salt": keys.salt,
        "names key": keys.names,
        "seal key": keys.seal,
        "binding key": keys.binding,
    }
    assert set(table) == set(fields)
    for name, (purpose, size) in table.items():
        expected = hashlib.blake2b(b"", key=KEY, person=purpose, digest_size=size).digest()
        assert fields[name] == expected, name
    assert len(set(fields.values())) == 5
    assert KEY not in fields.values()
