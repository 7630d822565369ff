"""Write ``store-v1/``: a store at schema version 1 holding every kind of row.

Provenance: run with the store code as of commit cd708e1 (schema version 1,
the last before ``refused`` and the transfer bookkeeping of version 2)::

    git worktree add /tmp/v1 cd708e1
    PYTHONPATH=/tmp/v1/src python tests/store/data/make_store_v1.py

The key is ``bytes(range(32))`` (``_storekit.KEY``). Ids, times, names and
contents are fixed here so that ``test_store_migrations.py`` can check each
of them after the upgrade; the sealed bytes differ on every run (random
nonces). It refuses to run against any other schema version.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto.address import OnionAddress
from onionpost.proto.messages import FileOffer
from onionpost.store import SCHEMA_VERSION, Store

KEY = bytes(range(32))
HERE = Path(__file__).resolve().parent
OUT = HERE / "store-v1"


def ident(n: int) -> bytes:
    return bytes([n]) * 16


def main() -> None:
    if SCHEMA_VERSION != 1:
        sys.exit(f"this writes a version 1 store; this code is at version {SCHEMA_VERSION}")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    with Store.open(OUT / "store.sqlite", OUT / "files", KEY) as store:
        bob = store.add_contact("bob", OnionAddress(bytes([0xB0]) * 32), bytes([0xB1]) * 32, 1000)
        carol = store.add_contact(
            "carol", OnionAddress(bytes([0xC0]) * 32), bytes([0xC1]) * 32, 1001
        )
        dave = store.add_contact("dave", OnionAddress(bytes([0xD0]) * 32), bytes([0xD1]) * 32, 1002)
        # Outgoing texts to bob, one in each state.
        for n, body in enumerate(["queued", "sent", "delivered", "read", "expired"], start=1):
            store.queue_text(bob.id, ident(n), 2000 + n, f"out {body}", "text/plain", None)
        store.queue_text(bob.id, ident(6), 2006, "out expiring", "text/plain", 2500)
        store.mark_sent([ident(2), ident(3), ident(4)], 3000)
        store.mark_delivered([ident(3), ident(4)], 3100)
        store.mark_read([ident(4)], 3200)
        store.expire(2600)  # ident(6)
        # An outgoing file to carol, sent and not yet acknowledged.
        source = OUT / "notes.txt"
        source.write_bytes(b"outgoing file content\n" * 10)
        store.queue_file(carol.id, ident(7), 2007, "notes.txt", source, 2**30)
        source.unlink()
        store.mark_sent([ident(7)], 3007)
        # Incoming texts: bob's unread, bob's read, carol's unread, dave's (removed later).
        store.store_text(bob.id, ident(8), 1500, "in from bob", "text/plain", 4000)
        store.store_text(bob.id, ident(9), 1501, "in from bob, read", "text/markdown", 4001)
        store.mark_read([ident(9)], 4100)
        store.store_text(carol.id, ident(10), 1502, "in from carol", "text/plain", 4002)
        store.store_text(dave.id, ident(11), 1503, "in from dave", "text/plain", 4003)
        store.remove_contact("dave")
        # A complete incoming file from carol.
        photo = bytes(n % 251 for n in range(1000))
        offer = FileOffer(
            ident(12),
            1600,
            "photo.jpg",
            len(photo),
            hashlib.blake2b(photo, digest_size=64).digest(),
            "image/jpeg",
        )
        store.begin_file(carol.id, offer, 4200, 2**30, 2**40)
        store.write_file_chunk(offer.id, 0, photo)
        store.finish_file(offer.id, 4300)
        # A file from bob still arriving: one chunk of two stored.
        big = bytes(n % 253 for n in range(FILE_CHUNK_SIZE + 50))
        arriving = FileOffer(
            ident(13),
            1700,
            "archive.tar",
            len(big),
            hashlib.blake2b(big, digest_size=64).digest(),
            "application/x-tar",
        )
        store.begin_file(bob.id, arriving, 4400, 2**30, 2**40)
        store.write_file_chunk(arriving.id, 0, big[:FILE_CHUNK_SIZE])
        assert store.integrity_check() == []
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
