"""Pages, WAL frames and whole files of an earlier copy of the store are refused.

SQLCipher authenticates each page on its own, so a page of an earlier copy
of the same store, put back at its place, verifies; the binding file
(storage.md §5.4) ties every page to one version of the database. Each
refusal here leaves every file of the home as it was.
"""

from __future__ import annotations

import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from _storekit import KEY, add_contact, new_id, open_store
from hypothesis import given
from hypothesis import strategies as st

from onionpost.errors import ConfigError, StoreTamperedError
from onionpost.proto.address import OnionAddress
from onionpost.store import (
    MailboxStore,
    Prekey,
    PrekeyKind,
    Store,
    _binding,
    _crypto,
    _database,
    _wal,
)

PAGE = _database.PAGE_SIZE
FRAME = _wal.FRAME_HEADER_LEN + PAGE
ONE_TIME = 1


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _open_and_close(root: Path) -> None:
    open_store(root).close()


def _refused(root: Path, opener: Callable[[Path], None] = _open_and_close) -> None:
    before = _snapshot(root)
    with pytest.raises(StoreTamperedError, match="altered or damaged"):
        opener(root)
    assert _snapshot(root) == before


def _fill(store: Store, removed: str) -> None:
    """Contacts (one to remove later), prekeys, envelopes seen, messages."""
    bob = add_contact(store, "bob")
    add_contact(store, removed)
    with store.transaction():
        for n in range(120):
            store.outbox.queue_text(bob.id, new_id(), n, "padding " * 30, "text/plain", None)
    store.mailbox.add_prekeys(
        [(bytes([n]) * 16, ONE_TIME, 10**10, bytes([n]) * 40) for n in range(30)], 1
    )
    for n in range(30):
        store.mailbox.note_envelope(bytes([n]) * 16, 1)


def _later(store: Store, removed: str) -> None:
    """What the older copy does not have: the contact removed, prekeys used,
    envelopes forgotten, messages delivered and stored."""
    store.contacts.remove_contact(removed)
    with store.transaction():
        for n in range(10):
            store.mailbox.use_prekey(bytes([n]) * 16, ONE_TIME, ONE_TIME, 2)
    store.mailbox.expire_prekeys(10**12, 0)  # forgets the envelopes seen
    bob = store.contacts.contact("bob")
    pending = store.outbox.pending(bob.id, 60)
    store.outbox.mark_delivered([m.id for m in pending], 5, contact_id=bob.id)
    for n in range(40):
        store.messages.store_text(bob.id, new_id(), n, "incoming " * 20, "text/plain", 3)


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same home closed at two moments: ``older`` and ``newer``."""
    root = tmp_path_factory.mktemp("binding")
    live = root / "live"
    live.mkdir()
    with open_store(live) as store:
        _fill(store, "eve")
    shutil.copytree(live, root / "older")
    with open_store(live) as store:
        _later(store, "eve")
    shutil.copytree(live, root / "newer")
    return root / "older", root / "newer"


def _copy(source: Path, tmp_path: Path, name: str = "home") -> Path:
    root = tmp_path / name
    shutil.copytree(source, root)
    return root


def test_the_copies_open_and_differ(two_copies: tuple[Path, Path], tmp_path: Path) -> None:
    older, newer = two_copies
    with open_store(_copy(older, tmp_path, "a")) as store:
        assert store.contacts.contact_by_address(store.contacts.contact("eve").address) is not None
        assert store.mailbox.prekey_secret(bytes([3]) * 16) is not None
        assert store.mailbox.envelope_seen(bytes([3]) * 16)
    with open_store(_copy(newer, tmp_path, "b")) as store:
        assert [c.name for c in store.contacts.all()] == ["bob"]
        assert store.mailbox.prekey_secret(bytes([3]) * 16) is None
        assert not store.mailbox.envelope_seen(bytes([3]) * 16)


def test_any_page_of_an_older_copy_put_back_is_refused(
    two_copies: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every page that changed between the copies (contacts and their indexes,
    prekeys, envelopes seen, messages, the schema page), one at a time."""
    older, newer = two_copies
    root = _copy(newer, tmp_path)
    db = root / "store.sqlite"
    old, new = (older / "store.sqlite").read_bytes(), db.read_bytes()
    changed = [
        n
        for n in range(min(len(old), len(new)) // PAGE)
        if old[n * PAGE : (n + 1) * PAGE] != new[n * PAGE : (n + 1) * PAGE]
    ]
    assert len(changed) > 10
    for n in changed:
        db.write_bytes(new[: n * PAGE] + old[n * PAGE : (n + 1) * PAGE] + new[(n + 1) * PAGE :])
        _refused(root)
    db.write_bytes(new)
    open_store(root).close()


def test_the_whole_file_of_an_older_copy_is_refused(
    two_copies: tuple[Path, Path], tmp_path: Path
) -> None:
    older, newer = two_copies
    root = _copy(newer, tmp_path)
    shutil.copy(older / "store.sqlite", root / "store.sqlite")
    _refused(root)
    # The binding file alone put back, or deleted: refused too.
    root = _copy(newer, tmp_path, "again")
    shutil.copy(older / "store.sqlite-bind", root / "store.sqlite-bind")
    _refused(root)
    (root / "store.sqlite-bind").unlink()
    _refused(root)


def _rebuild(wal: bytes, frames: list[tuple[int, int, bytes]]) -> bytes:
    """A WAL with ``wal``'s header and these (page, commit size, image) frames,
    every salt and checksum as SQLite would write them."""
    header = wal[: _wal.HEADER_LEN]
    big = struct.unpack(">I", header[:4])[0] & 1
    running = struct.unpack(">2I", header[24:32])
    out = [header]
    for page, commit, image in frames:
        head = struct.pack(">II", page, commit) + header[16:24]
        running = _wal.checksum(
            image, *_wal.checksum(head[:8], *running, big=bool(big)), big=bool(big)
        )
        out.append(head + struct.pack(">2I", *running) + image)
    return b"".join(out)


def _frames(wal: bytes) -> list[tuple[int, int, bytes]]:
    frames = []
    for at in range(_wal.HEADER_LEN, len(wal) - FRAME + 1, FRAME):
        if wal[at + 8 : at + 16] != wal[16:24]:
            break
        page, commit = struct.unpack(">II", wal[at : at + 8])
        frames.append((page, commit, wal[at + 24 : at + FRAME]))
    return frames


@pytest.fixture(scope="module")
def open_copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Copies taken while the store was open (WALs of many commits): ``older``
    before the contact eve was removed, ``newer`` after."""
    root = tmp_path_factory.mktemp("wal-binding")
    live = root / "live"
    live.mkdir()
    store = open_store(live)
    try:
        bob = add_contact(store, "bob")
        eve = add_contact(store, "eve")
        for n in range(20):
            store.outbox.queue_text(bob.id, new_id(), n, f"message {n} " * 30, "text/plain", None)
        shutil.copytree(live, root / "older")
        with store.transaction():  # no checkpoint: the removal stays in the WAL
            store.contacts.remove_contact(eve.name)
        for n in range(20):
            store.outbox.queue_text(bob.id, new_id(), n, f"later {n} " * 30, "text/plain", None)
        shutil.copytree(live, root / "newer")
    finally:
        store.close()
    return root / "older", root / "newer"


def test_a_wal_frame_of_an_older_copy_is_refused(
    open_copies: tuple[Path, Path], tmp_path: Path
) -> None:
    """Each page the older copy holds (in its file or WAL), put in place of a
    frame of the same page in the newer WAL, its framing made right."""
    older, newer = open_copies
    root = _copy(newer, tmp_path)
    wal = root / "store.sqlite-wal"
    current = wal.read_bytes()
    frames = _frames(current)
    old_images: dict[int, bytes] = {}
    old_db = (older / "store.sqlite").read_bytes()
    for n in range(len(old_db) // PAGE):
        old_images[n + 1] = old_db[n * PAGE : (n + 1) * PAGE]
    for page, _commit, image in _frames((older / "store.sqlite-wal").read_bytes()):
        old_images[page] = image
    spliced = 0
    last = {page: i for i, (page, _commit, _image) in enumerate(frames)}
    for i, (page, commit, image) in enumerate(frames):
        old = old_images.get(page)
        if old is None or old == image or last[page] != i:
            continue  # a frame a later one replaces is never read
        wal.write_bytes(_rebuild(current, [*frames[:i], (page, commit, old), *frames[i + 1 :]]))
        _refused(root)
        spliced += 1
    assert spliced > 5
    wal.write_bytes(current)
    with open_store(root) as store:
        assert [c.name for c in store.contacts.all()] == ["bob"]


def test_frames_added_after_the_last_bound_commit_are_never_read(
    open_copies: tuple[Path, Path], tmp_path: Path
) -> None:
    """Older pages appended to the WAL as a commit of their own look like a
    commit whose record a crash prevented: they are cut, not read."""
    older, newer = open_copies
    root = _copy(newer, tmp_path)
    wal = root / "store.sqlite-wal"
    current = wal.read_bytes()
    frames = _frames(current)
    old = _frames((older / "store.sqlite-wal").read_bytes())
    size = frames[-1][1]
    tail = [(page, 0, image) for page, _c, image in old[:-1]] + [(old[-1][0], size, old[-1][2])]
    wal.write_bytes(_rebuild(current, [*frames, *tail]))
    with open_store(root) as store:
        assert [c.name for c in store.contacts.all()] == ["bob"]
        assert store.integrity_check() == []


def test_a_damaged_newest_record_falls_back_to_the_one_before(
    open_copies: tuple[Path, Path], tmp_path: Path
) -> None:
    """What a power cut while the record is written leaves: the store opens at
    the commit before (the last one's record never landed)."""
    _older, newer = open_copies
    root = _copy(newer, tmp_path)
    with open_store(_copy(newer, tmp_path, "reference")) as store:
        depth = store.outbox.outbox_depth()
    bind = root / "store.sqlite-bind"
    data = bytearray(bind.read_bytes())
    newest = max((0, 512), key=lambda at: int.from_bytes(data[at : at + 8], "big"))
    data[newest + 20] ^= 1
    bind.write_bytes(bytes(data))
    with open_store(root) as store:
        assert store.outbox.outbox_depth() == depth - 1
        assert store.integrity_check() == []


def test_many_commits_and_reopens_stay_bound(tmp_path: Path) -> None:
    for round_ in range(4):
        with open_store(tmp_path) as store:
            bob = store.contacts.all()[0] if round_ else add_contact(store)
            for n in range(50):
                store.outbox.queue_text(bob.id, new_id(), n, "x" * 200, "text/plain", None)
            store.outbox.mark_sent(
                [m.id for m in store.outbox.pending(bob.id, 30)], 1
            )  # bookkeeping
            store.mailbox.checkpoint()
    with open_store(tmp_path) as store:
        assert store.outbox.outbox_depth() == 200
        assert store.integrity_check() == []


def test_a_log_written_over_the_last_one_stays_bound_at_every_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint restarts the WAL: the next log is written over the old
    one, whose frames (other salts) stay past its end. Copied as a crash
    leaves it after every commit, the store opens with exactly what was
    committed. Some commits write more frames than the binder reads at a
    time, and some checkpoints happen while the file is longer than the log."""
    monkeypatch.setattr(_database, "_WAL_LIMIT", 40 * FRAME)
    live = tmp_path / "live"
    live.mkdir()
    longer = 0  # copies whose WAL file held frames past its log
    with open_store(live) as store:
        bob = add_contact(store)
        for n in range(36):
            body = "x" * (90_000 if n % 7 == 3 else 200)  # ~90 frames, or a few
            store.outbox.queue_text(bob.id, new_id(), n, body, "text/plain", None)
            wal = (live / "store.sqlite-wal").read_bytes()
            log = _wal.parse(wal, PAGE)
            assert log.problem is None
            longer += bool(log.commits) and log.commits[-1][2] < len(wal)
            if n % 3 == 2 or n % 7 == 3:
                root = _copy(live, tmp_path, f"crash-{n}")
                with open_store(root) as copy:
                    assert copy.outbox.outbox_depth() == n + 1
                    assert copy.integrity_check() == []
                shutil.rmtree(root)
        depth = store.outbox.outbox_depth()
    assert longer >= 5
    with open_store(live) as store:
        assert store.outbox.outbox_depth() == depth == 36
        assert store.integrity_check() == []


def test_the_wal_file_is_kept_after_a_checkpoint_and_cut_back_past_its_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint leaves the WAL file's blocks for the next log (an fsync
    over them costs less than one that grows the file); past ``WAL_KEEP``
    the file is cut back to it at the new log's first commit."""
    monkeypatch.setattr(_database, "_WAL_LIMIT", 40 * FRAME)
    with open_store(tmp_path) as store:
        store.defer_checkpoints()  # nobody checkpoints before the hard limit
        bob = add_contact(store)
        wal = tmp_path / "store.sqlite-wal"
        # One transaction far past WAL_KEEP: the WAL grows to hold it.
        with store.transaction():
            for n in range(60):
                store.outbox.queue_text(bob.id, new_id(), n, "y" * 100_000, "text/plain", None)
        assert wal.stat().st_size > _database.WAL_KEEP
        store.checkpoint_if_due()
        store.outbox.queue_text(bob.id, new_id(), 60, "after", "text/plain", None)
        assert wal.stat().st_size == _database.WAL_KEEP  # cut back, not emptied
        for n in range(5):
            store.outbox.queue_text(bob.id, new_id(), 61 + n, "z" * 200, "text/plain", None)
        log = _wal.parse(wal.read_bytes(), PAGE)
        assert log.commits[-1][2] < wal.stat().st_size  # the log is the file's start
        # The binder follows the new log, not the old frames past it.
        assert store.checkpoint_due() == (log.commits[-1][2] > _database._WAL_LIMIT)
    with open_store(tmp_path) as store:
        assert store.outbox.outbox_depth() == 66


# -- the set hash, kept up to date page by page -------------------------------------------


def _digest_from_scratch(key: bytes, tags: list[bytes]) -> bytes:
    """The module doc's formula, term by term."""
    acc = 0
    for number, tag in enumerate(tags, start=1):
        acc ^= int.from_bytes(_crypto.keyed_hash(key, number.to_bytes(4, "big") + tag))
    return acc.to_bytes(32)


def test_keyed_hasher_is_keyed_hash() -> None:
    for size in (16, 32, 64):
        hash_ = _crypto.keyed_hasher(KEY, size)
        for data in (b"", b"x", bytes(36), bytes(range(256)) * 3):
            assert hash_(data) == _crypto.keyed_hash(KEY, data, size)
            assert hash_(data) == hash_(data)  # the key's state is not consumed
    with pytest.raises(ConfigError):
        _crypto.keyed_hasher(b"short")


_TAG = st.binary(min_size=_binding.TAG_LEN, max_size=_binding.TAG_LEN)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("set"), st.integers(1, 12), _TAG),
            st.tuples(st.just("resize"), st.integers(0, 12), st.just(b"")),
            st.tuples(st.just("copy"), st.just(0), st.just(b"")),
        ),
        max_size=40,
    )
)
def test_pages_digest_is_the_set_hash_of_the_pages_as_they_are(
    steps: list[tuple[str, int, bytes]],
) -> None:
    """Whatever sets, resizes and copies came before, the digest is the one
    computed afresh from the pages' current tags (a page never written is
    absent: its tag all zeros)."""
    pages = _binding.Pages(KEY)
    tags: list[bytes] = []
    for op, number, tag in steps:
        if op == "set":
            pages.set(number, tag)
            tags.extend([bytes(_binding.TAG_LEN)] * (number - len(tags)))
            tags[number - 1] = tag
        elif op == "resize":
            pages.resize(number)
            tags = (tags + [bytes(_binding.TAG_LEN)] * number)[:number]
        else:
            copied = pages.copy()
            pages.set(1, b"\xff" * _binding.TAG_LEN)  # the copy does not follow
            pages = copied
        assert pages.count == len(tags)
        assert pages.digest() == _digest_from_scratch(KEY, tags)
    assert _binding.Pages(KEY, tags).digest() == pages.digest()


# -- the mailbox's store -----------------------------------------------------------------


def _mailbox(root: Path) -> MailboxStore:
    return MailboxStore.open(root / "mailbox.db", KEY)


def _owner(n: int) -> OnionAddress:
    return OnionAddress(bytes([n]) * 32)


@pytest.fixture(scope="module")
def mailbox_copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("mailbox-binding")
    live = root / "live"
    live.mkdir()
    with _mailbox(live) as box:
        box.add_setup_code(
            bytes(32), bytes(32), now=1, expires_ms=10**12, max_open=5, max_clients=9
        )
        box.pair(bytes(32), _owner(1), bytes(32), now=2, max_owners=5, max_clients=9)
        box.register(_owner(1), _owner(2), bytes(32), now=2, max_per_owner=5, max_clients=9)
        prekeys = [_prekey(bytes([n]) * 16, PrekeyKind.ONE_TIME) for n in range(20)]
        box.add_prekeys(_owner(1), prekeys, now=2, max_one_time=100)
        for n in range(30):
            box.deposit(
                _owner(1),
                _owner(2),
                bytes([n]) * 16,
                bytes(500),
                now=3,
                max_envelopes=100,
                max_bytes=10**6,
                max_disk=10**7,
            )
    shutil.copytree(live, root / "older")
    with _mailbox(live) as box:
        box.delete_envelopes(_owner(1), [bytes([n]) * 16 for n in range(20)])
        for _ in range(10):
            box.take_prekey(_owner(1), _owner(2), now_s=5)
    shutil.copytree(live, root / "newer")
    return root / "older", root / "newer"


def _prekey(key_id: bytes, kind: PrekeyKind) -> Prekey:
    return Prekey(key_id, kind, 10**10, b"prekey" * 10)


def test_the_mailbox_refuses_pages_and_files_of_an_older_copy(
    mailbox_copies: tuple[Path, Path], tmp_path: Path
) -> None:
    older, newer = mailbox_copies
    root = _copy(newer, tmp_path)
    db = root / "mailbox.db"
    old, new = (older / "mailbox.db").read_bytes(), db.read_bytes()
    changed = [
        n
        for n in range(min(len(old), len(new)) // PAGE)
        if old[n * PAGE : (n + 1) * PAGE] != new[n * PAGE : (n + 1) * PAGE]
    ]
    assert len(changed) > 5
    for n in changed:
        db.write_bytes(new[: n * PAGE] + old[n * PAGE : (n + 1) * PAGE] + new[(n + 1) * PAGE :])
        _refused(root, lambda r: _mailbox(r).close())
    db.write_bytes(old)  # the whole file
    _refused(root, lambda r: _mailbox(r).close())
    db.write_bytes(new)
    with _mailbox(root) as box:
        assert box.usage(_owner(1)).envelopes == 10
        assert box.integrity_check() == []
