"""Files in the store: outgoing copies, resumable incoming transfers, caps, full disks."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _storekit import KEY, add_contact, blob_path, new_id, offer_for, offered, open_store

from onionpost.daemon.delivery._views import wire_record
from onionpost.errors import (
    ConfigError,
    FileTooLargeError,
    HashMismatchError,
    LocalProtocolError,
    NoSpaceError,
    NotFoundError,
    StoreError,
)
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto.messages import FileOffer
from onionpost.store import Kind, State, Store, _files
from onionpost.store._files import RECORD_SIZE

C = FILE_CHUNK_SIZE
GiB = 2**30


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path) as opened:
        yield opened


def _chunks(data: bytes) -> Iterator[tuple[int, bytes]]:
    for offset in range(0, len(data), C):
        yield offset, data[offset : offset + C]


def _receive(store: Store, contact_id: int, offer: FileOffer, data: bytes) -> None:
    offset = store.transfers.begin_file(contact_id, *offered(offer), 10, GiB, 10 * GiB)
    for at, chunk in _chunks(data):
        if at >= offset:
            store.transfers.write_file_chunk(offer.id, at, chunk)
    assert store.transfers.finish_file(offer.id, 20) is True


# -- outgoing -----------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 3 * C + 17])
def test_queue_file_and_read_it_back_chunk_by_chunk(
    store: Store, tmp_path: Path, size: int
) -> None:
    bob = add_contact(store)
    data = os.urandom(size)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    file_id = new_id()
    queued = store.outbox.queue_file(bob.id, file_id, 5, "source.bin", source, GiB)
    assert (queued.id, queued.name, queued.size) == (file_id, "source.bin", size)
    assert queued.blake2b == hashlib.blake2b(data, digest_size=64).digest()
    read = b"".join(store.transfers.read_file_chunk(file_id, at, C) for at in range(0, size, C))
    assert read == data
    assert store.transfers.read_file_chunk(file_id, (size // C + 1) * C, C) == b""
    (pending,) = store.outbox.pending(bob.id, 10)
    assert pending.kind == Kind.FILE
    assert pending.file == queued
    # What the engine offers the contact is the file as queued.
    offer = wire_record(pending)
    assert isinstance(offer, FileOffer)
    assert (offer.size, offer.name, offer.content_type) == (size, "source.bin", queued.content_type)
    assert offer == FileOffer(file_id, 5, "source.bin", size, queued.blake2b, queued.content_type)
    assert store.messages.message(file_id).file is not None


def test_read_file_chunk_rules(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    data = os.urandom(2 * C)
    (tmp_path / "f").write_bytes(data)
    file_id = new_id()
    store.outbox.queue_file(bob.id, file_id, 5, "f", tmp_path / "f", GiB)
    assert store.transfers.read_file_chunk(file_id, C, 10) == data[C : C + 10]
    assert store.transfers.read_file_chunk(file_id, 0, 10 * C) == data[:C]  # one record at most
    with pytest.raises(LocalProtocolError, match="multiples"):
        store.transfers.read_file_chunk(file_id, 5, 10)
    with pytest.raises(NotFoundError):
        store.transfers.read_file_chunk(new_id(), 0, 10)


def test_texts_and_files_share_the_outbox_in_order(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    (tmp_path / "f").write_bytes(b"content")
    text_id, file_id, later_id = new_id(), new_id(), new_id()
    store.outbox.queue_text(bob.id, text_id, 1, "first", "text/plain", None)
    store.outbox.queue_file(bob.id, file_id, 2, "f", tmp_path / "f", GiB)
    store.outbox.queue_text(bob.id, later_id, 3, "third", "text/plain", None)
    assert [(o.kind, o.id) for o in store.outbox.pending(bob.id, 10)] == [
        (Kind.TEXT, text_id),
        (Kind.FILE, file_id),
        (Kind.TEXT, later_id),
    ]
    store.outbox.mark_delivered([file_id], 4)
    assert [o.id for o in store.outbox.pending(bob.id, 10)] == [text_id, later_id]


def test_queue_file_refusals(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(FileTooLargeError, match="maximum is 100"):
        store.outbox.queue_file(bob.id, new_id(), 1, "big", big, 100)
    with pytest.raises(ConfigError, match="cannot read"):
        store.outbox.queue_file(bob.id, new_id(), 1, "missing", tmp_path / "missing", GiB)
    with pytest.raises(ConfigError, match="not a regular file"):
        store.outbox.queue_file(bob.id, new_id(), 1, "dir", tmp_path, GiB)
    for name in ("", ".", "..", "a/b", "a\\b", "nul\x00", "x" * 256):
        with pytest.raises(ConfigError):
            store.outbox.queue_file(bob.id, new_id(), 1, name, big, GiB)
    # Nothing half-copied is left in files/.
    assert os.listdir(tmp_path / "files") == []
    assert store.outbox.pending(bob.id, 10) == []


# -- incoming -----------------------------------------------------------------------


def test_receive_a_file_and_export_it(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    data = os.urandom(2 * C + 5)
    offer = offer_for(data)
    assert store.transfers.begin_file(bob.id, *offered(offer), 10, GiB, 10 * GiB) == 0
    arriving = store.messages.message(offer.id)
    assert (arriving.seq, arriving.state, arriving.kind) == (0, State.RECEIVING, Kind.FILE)
    assert arriving.file is not None
    assert (arriving.file.name, arriving.file.size, arriving.file.complete) == (
        "report.pdf",
        len(data),
        False,
    )
    assert store.messages.inbox() == []  # not in the inbox until complete
    for at, chunk in _chunks(data):
        store.transfers.write_file_chunk(offer.id, at, chunk)
    assert store.transfers.finish_file(offer.id, 20) is True
    (stored,) = store.messages.inbox()
    assert stored.seq > 0
    assert stored.file is not None
    assert stored.file.complete
    assert stored.file.blake2b == offer.blake2b
    assert stored.file.content_type == "application/pdf"
    assert "report.pdf" not in repr(stored)

    out = tmp_path / "out"
    out.mkdir()
    written = store.transfers.export_file(offer.id, out)
    assert written == out / "report.pdf"
    assert written.read_bytes() == data
    assert oct(written.stat().st_mode & 0o777) == oct(0o600)
    with pytest.raises(ConfigError, match="already exists"):
        store.transfers.export_file(offer.id, out)
    assert store.transfers.export_file(offer.id, out / "renamed.pdf").read_bytes() == data
    assert sorted(os.listdir(out)) == ["renamed.pdf", "report.pdf"]  # no .part files left


@pytest.mark.parametrize(
    ("offered", "exported"),
    [
        (".bash_profile", "_.bash_profile"),
        ("\u202egnp.exe", "_gnp.exe"),
        ("invoice\n.pdf", "invoice_.pdf"),
        ("../x", "x"),
        ("..\\..\\autorun.inf", "autorun.inf"),
        ("\u00e9" * 140 + ".pdf", "\u00e9" * 125 + ".pdf"),  # 284 bytes -> 254
        ("\u6f22" * 85, "\u6f22" * 85),  # exactly 255 bytes: kept whole
        ("e\u0301.txt", "\u00e9.txt"),  # NFC
    ],
)
def test_export_into_a_directory_uses_a_safe_name(
    store: Store, tmp_path: Path, offered: str, exported: str
) -> None:
    bob = add_contact(store)
    data = os.urandom(100)
    offer = offer_for(data, name=offered)
    _receive(store, bob.id, offer, data)
    file_id = offer.id
    out = tmp_path / "out"
    out.mkdir()
    written = store.transfers.export_file(file_id, out)
    assert written == out / exported
    assert len(written.name.encode()) <= 255
    assert written.read_bytes() == data
    assert os.listdir(out) == [exported]  # nothing else, nothing outside
    assert sorted(os.listdir(tmp_path)) == [
        "files",
        "out",
        "store.sqlite",
        "store.sqlite-bind",
        "store.sqlite-wal",
    ]
    # The name as sent is still what the store hands out.
    assert store.messages.message(file_id).file.name == offered  # type: ignore[union-attr]


def test_a_file_completed_late_still_reaches_a_follower(store: Store) -> None:
    """Inbox seqs are given at completion, so ``--follow`` never skips a file."""
    bob = add_contact(store)
    data = os.urandom(10)
    offer = offer_for(data)
    store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
    store.messages.store_text(bob.id, new_id(), 1, "meanwhile", "text/plain", 2)
    seen = store.messages.inbox()[-1].seq
    store.transfers.write_file_chunk(offer.id, 0, data)
    store.transfers.finish_file(offer.id, 3)
    assert [m.kind for m in store.messages.inbox(after=seen)] == [Kind.FILE]


def test_an_empty_file(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    offer = offer_for(b"")
    assert store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB) == 0
    assert store.transfers.finish_file(offer.id, 2) is True
    assert store.transfers.export_file(offer.id, tmp_path / "empty").read_bytes() == b""


def test_resume_after_a_restart(tmp_path: Path) -> None:
    data = os.urandom(4 * C + 1)
    offer = offer_for(data)
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
        store.transfers.write_file_chunk(offer.id, 0, data[:C])
        store.transfers.write_file_chunk(offer.id, C, data[C : 2 * C])
    with open_store(tmp_path) as store:
        # The running hash is recomputed over the stored records.
        assert store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB) == 2 * C
        assert store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB) == 2 * C
        for at, chunk in _chunks(data):
            if at >= 2 * C:
                store.transfers.write_file_chunk(offer.id, at, chunk)
        assert store.transfers.finish_file(offer.id, 2) is True
        assert store.transfers.export_file(offer.id, tmp_path / "x").read_bytes() == data


def test_chunks_continue_after_a_restart_without_a_new_offer(tmp_path: Path) -> None:
    data = os.urandom(2 * C)
    offer = offer_for(data)
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
        store.transfers.write_file_chunk(offer.id, 0, data[:C])
    with open_store(tmp_path) as store:
        store.transfers.write_file_chunk(offer.id, C, data[C:])
        assert store.transfers.finish_file(offer.id, 2) is True


@pytest.mark.parametrize("damage", ["torn", "garbage", "bitflip"])
def test_a_torn_tail_is_cut_on_resume(tmp_path: Path, damage: str) -> None:
    data = os.urandom(3 * C)
    offer = offer_for(data)
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
        store.transfers.write_file_chunk(offer.id, 0, data[:C])
        store.transfers.write_file_chunk(offer.id, C, data[C : 2 * C])
    (blob,) = (tmp_path / "files").iterdir()
    if damage == "torn":  # a crash in the middle of writing record 1
        os.truncate(blob, RECORD_SIZE + 1000)
    elif damage == "garbage":
        os.truncate(blob, RECORD_SIZE)
        with blob.open("ab") as handle:
            handle.write(os.urandom(RECORD_SIZE))
    else:
        raw = bytearray(blob.read_bytes())
        raw[RECORD_SIZE + 100] ^= 1
        blob.write_bytes(bytes(raw))
    with open_store(tmp_path) as store:
        assert store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB) == C
        assert blob.stat().st_size == RECORD_SIZE
        for at, chunk in _chunks(data):
            if at >= C:
                store.transfers.write_file_chunk(offer.id, at, chunk)
        assert store.transfers.finish_file(offer.id, 2) is True


def test_a_hash_mismatch_deletes_the_data(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    data = os.urandom(C + 10)
    lying = FileOffer(new_id(), 1, "x", len(data), bytes(64))
    store.transfers.begin_file(bob.id, *offered(lying), 1, GiB, 10 * GiB)
    for at, chunk in _chunks(data):
        store.transfers.write_file_chunk(lying.id, at, chunk)
    with pytest.raises(HashMismatchError, match="deleted"):
        store.transfers.finish_file(lying.id, 2)
    assert os.listdir(tmp_path / "files") == []
    with pytest.raises(NotFoundError):
        store.messages.message(lying.id)
    assert store.messages.inbox() == []
    # Offered again, it starts from nothing.
    assert store.transfers.begin_file(bob.id, *offered(lying), 1, GiB, 10 * GiB) == 0


def test_a_repeated_offer_of_a_complete_file(store: Store) -> None:
    bob = add_contact(store)
    data = os.urandom(100)
    offer = offer_for(data)
    _receive(store, bob.id, offer, data)
    assert store.transfers.begin_file(bob.id, *offered(offer), 30, GiB, 10 * GiB) == len(data)
    assert store.transfers.finish_file(offer.id, 31) is False
    assert len(store.messages.inbox()) == 1


def test_another_file_under_the_same_id_starts_again(store: Store) -> None:
    bob = add_contact(store)
    first = os.urandom(2 * C)
    offer = offer_for(first)
    store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
    store.transfers.write_file_chunk(offer.id, 0, first[:C])
    second = os.urandom(C + 3)
    changed = offer_for(second, file_id=offer.id)
    assert store.transfers.begin_file(bob.id, *offered(changed), 2, GiB, 10 * GiB) == 0
    for at, chunk in _chunks(second):
        store.transfers.write_file_chunk(offer.id, at, chunk)
    assert store.transfers.finish_file(offer.id, 3) is True


def test_chunk_order_and_size_are_enforced(store: Store) -> None:
    bob = add_contact(store)
    data = os.urandom(2 * C)
    offer = offer_for(data)
    store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
    with pytest.raises(StoreError, match="0 bytes are stored"):
        store.transfers.write_file_chunk(offer.id, C, data[C:])
    with pytest.raises(StoreError, match="where 65485 were due"):
        store.transfers.write_file_chunk(offer.id, 0, data[:100])
    with pytest.raises(StoreError, match="incomplete"):
        store.transfers.finish_file(offer.id, 2)
    store.transfers.write_file_chunk(offer.id, 0, data[:C])
    with pytest.raises(StoreError, match="65485 bytes are stored"):
        store.transfers.write_file_chunk(offer.id, 0, data[:C])  # a repeat
    with pytest.raises(NotFoundError):
        store.transfers.write_file_chunk(new_id(), 0, b"x")
    with pytest.raises(NotFoundError):
        store.transfers.finish_file(new_id(), 2)


def test_size_and_disk_caps(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    with pytest.raises(FileTooLargeError, match="maximum is 1000"):
        store.transfers.begin_file(bob.id, *offered(offer_for(b"x" * 1001)), 1, 1000, 10 * GiB)
    (tmp_path / "sent").write_bytes(b"s" * 600)
    store.outbox.queue_file(bob.id, new_id(), 1, "sent", tmp_path / "sent", GiB)
    arriving = offer_for(b"a" * 300)
    store.transfers.begin_file(bob.id, *offered(arriving), 1, GiB, 1000)
    store.transfers.write_file_chunk(arriving.id, 0, b"a" * 300)  # 900 of 1000 stored
    assert store.transfers.disk_used() == 900
    with pytest.raises(NoSpaceError, match="disk budget"):
        store.transfers.begin_file(bob.id, *offered(offer_for(b"b" * 101)), 1, GiB, 1000)
    store.transfers.begin_file(
        bob.id, *offered(offer_for(b"c" * 100)), 1, GiB, 1000
    )  # exactly 1000
    with pytest.raises(NoSpaceError, match="does not fit on the disk"):
        store.transfers.begin_file(
            bob.id, *offered(FileOffer(new_id(), 1, "huge", 2**50, bytes(64))), 1, 2**60, 2**62
        )


def test_cancel_file(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    offer = offer_for(os.urandom(10))
    store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
    assert store.transfers.cancel_file(offer.id) is True
    assert store.transfers.cancel_file(offer.id) is False
    assert os.listdir(tmp_path / "files") == []


def test_export_refuses_a_file_still_arriving(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    offer = offer_for(os.urandom(10))
    store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
    with pytest.raises(ConfigError, match="not arrived completely"):
        store.transfers.export_file(offer.id, tmp_path / "x")
    with pytest.raises(NotFoundError):
        store.transfers.export_file(new_id(), tmp_path / "x")


# -- full disks ---------------------------------------------------------------------


def test_enospc_while_writing_a_chunk_keeps_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = add_contact(store)
    data = os.urandom(2 * C)
    offer = offer_for(data)
    store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
    store.transfers.write_file_chunk(offer.id, 0, data[:C])
    real = _files._pwrite_all

    def half_then_full(fd: int, sealed: bytes, offset: int) -> None:
        real(fd, sealed[: len(sealed) // 2], offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_files, "_pwrite_all", half_then_full)
    with pytest.raises(NoSpaceError, match="disk is full"):
        store.transfers.write_file_chunk(offer.id, C, data[C:])
    (blob,) = (tmp_path / "files").iterdir()
    assert blob.stat().st_size == RECORD_SIZE  # the half-written record is gone
    monkeypatch.setattr(_files, "_pwrite_all", real)
    store.transfers.write_file_chunk(offer.id, C, data[C:])
    assert store.transfers.finish_file(offer.id, 2) is True
    assert store.transfers.export_file(offer.id, tmp_path / "x").read_bytes() == data


def test_enospc_while_queueing_a_file_leaves_nothing(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob = add_contact(store)
    (tmp_path / "f").write_bytes(os.urandom(3 * C))

    def full(fd: int, sealed: bytes, offset: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(_files, "_pwrite_all", full)
    with pytest.raises(NoSpaceError):
        store.outbox.queue_file(bob.id, new_id(), 1, "f", tmp_path / "f", GiB)
    assert os.listdir(tmp_path / "files") == []
    assert store.outbox.pending(bob.id, 10) == []


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MiB tmpfs; needs root (mount), skipped otherwise."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mountpoint)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def test_a_really_full_disk(small_disk: Path) -> None:
    with Store.open(small_disk / "store.sqlite", small_disk / "files", KEY) as store:
        bob = add_contact(store)
        data = os.urandom(8 * C)  # 512 KiB
        offer = offer_for(data)
        store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
        store.transfers.write_file_chunk(offer.id, 0, data[:C])
        filler = small_disk / "filler"
        # Unbuffered: a buffered file would try its unwritten rest again on close.
        with filler.open("wb", buffering=0) as handle, pytest.raises(OSError) as full:  # noqa: PT012
            while True:
                handle.write(b"\0" * 65536)
        assert full.value.errno == errno.ENOSPC

        def write_the_rest() -> None:
            for at, chunk in _chunks(data):
                if at >= C:
                    store.transfers.write_file_chunk(offer.id, at, chunk)

        with pytest.raises(NoSpaceError):
            write_the_rest()
        filler.unlink()
        stored = store.transfers.begin_file(bob.id, *offered(offer), 1, GiB, 10 * GiB)
        for at, chunk in _chunks(data):
            if at >= stored:
                store.transfers.write_file_chunk(offer.id, at, chunk)
        assert store.transfers.finish_file(offer.id, 2) is True
        assert store.integrity_check() == []


# -- blobs at rest ------------------------------------------------------------------


def test_swapped_blobs_do_not_decrypt(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        ids = []
        for n in range(2):
            (tmp_path / f"f{n}").write_bytes(os.urandom(C + 1 + n))
            file_id = new_id()
            store.outbox.queue_file(bob.id, file_id, 1, f"f{n}", tmp_path / f"f{n}", GiB)
            ids.append(file_id)
    a, b = (blob_path(tmp_path, "out", bob.id, i) for i in ids)
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes[:RECORD_SIZE] + a_bytes[RECORD_SIZE:])
    with open_store(tmp_path) as store:
        with pytest.raises(StoreError, match="did not authenticate"):
            store.transfers.read_file_chunk(ids[0], 0, C)
        assert store.transfers.read_file_chunk(ids[0], C, C)  # the other record is intact
        problems = store.integrity_check()
        assert problems == []  # lengths still match; reading is what catches it
        a.write_bytes(a_bytes[:RECORD_SIZE])
        assert any("blob is" in p for p in store.integrity_check())
        with pytest.raises(StoreError, match="truncated"):
            store.transfers.export_file(ids[0], tmp_path / "out")
        assert not (tmp_path / "out").exists()


def test_orphans_are_swept_at_open(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        (tmp_path / "f").write_bytes(b"keep me")
        kept = new_id()
        store.outbox.queue_file(bob.id, kept, 1, "f", tmp_path / "f", GiB)
    files = tmp_path / "files"
    (files / ".tmp-0123456789abcdef").write_bytes(b"half a copy")
    blob_path(tmp_path, "out", bob.id, new_id()).write_bytes(b"never committed")
    (files / f"out-{bob.id}-{new_id().hex()}").write_bytes(b"a plaintext store's blob")
    (files / "README").write_bytes(b"not ours: left alone")
    with open_store(tmp_path) as store:
        kept_name = blob_path(tmp_path, "out", bob.id, kept).name
        assert sorted(os.listdir(files)) == sorted(["README", kept_name])
        assert store.transfers.read_file_chunk(kept, 0, C) == b"keep me"


def test_a_fifo_source_is_refused_without_hanging(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        store.outbox.queue_file(bob.id, new_id(), 1, "fifo", fifo, GiB)
