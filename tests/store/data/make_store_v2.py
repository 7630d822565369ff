"""Write ``store-v2/``: a plaintext store at schema version 2 holding every kind of row.

Provenance: run with the store code as of commit b6baa3d (schema version 2,
the last plaintext one, before the encrypted database of version 3)::

    git worktree add /tmp/v2 b6baa3d
    PYTHONPATH=/tmp/v2/src python tests/store/data/make_store_v2.py

The key is ``bytes(range(32))`` (``_storekit.KEY``). Ids, times, names,
addresses and contents are fixed here so that ``test_store_encryption.py``
can check each of them after the conversion, and search the converted files
for them; the sealed bytes differ on every run (random nonces). It refuses
to run against any other schema version.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto.address import OnionAddress
from onionpost.proto.messages import FileOffer, FileRejectReason
from onionpost.store import SCHEMA_VERSION, Store

KEY = bytes(range(32))
HERE = Path(__file__).resolve().parent
OUT = HERE / "store-v2"


def ident(n: int) -> bytes:
    return bytes([n]) * 16


def main() -> None:
    if SCHEMA_VERSION != 2:
        sys.exit(f"this writes a version 2 store; this code is at version {SCHEMA_VERSION}")
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    with Store.open(OUT / "store.sqlite", OUT / "files", KEY) as store:
        bob = store.add_contact(
            "bob-canary-v2", OnionAddress(bytes([0xB0]) * 32), bytes([0xB1]) * 32, 1000
        )
        carol = store.add_contact(
            "carol", OnionAddress(bytes([0xC0]) * 32), bytes([0xC1]) * 32, 1001
        )
        dave = store.add_contact("dave", OnionAddress(bytes([0xD0]) * 32), bytes([0xD1]) * 32, 1002)
        store.note_contact_seen(bob.id, 1_700_000_000_123, success=True)
        # Outgoing texts to bob, in each state.
        for n, body in enumerate(["queued", "sent", "delivered", "read"], start=1):
            store.queue_text(bob.id, ident(n), 2000 + n, f"out {body}", "text/plain", None)
        store.queue_text(bob.id, ident(5), 2005, "out expiring", "text/plain", 2500)
        store.mark_sent([ident(2), ident(3), ident(4)], 3000)
        store.mark_delivered([ident(3), ident(4)], 3100)
        store.mark_read([ident(4)], 3200)
        store.expire(2600)  # ident(5)
        # Outgoing files to carol: one sent and waiting, one refused.
        for n, name in ((6, "notes.txt"), (7, "refused.bin")):
            source = OUT / name
            source.write_bytes(f"outgoing file {n}\n".encode() * 10)
            store.queue_file(carol.id, ident(n), 2000 + n, name, source, 2**30)
            source.unlink()
        store.mark_sent([ident(6), ident(7)], 3006)
        store.mark_refused([ident(7)], 3007, FileRejectReason.TOO_LARGE, contact_id=carol.id)
        # Incoming texts: bob's unread, bob's read, dave's (dave removed later).
        store.store_text(bob.id, ident(8), 1500, "in from bob", "text/plain", 4000)
        store.store_text(bob.id, ident(9), 1501, "in from bob, read", "text/markdown", 4001)
        store.mark_read([ident(9)], 4100)
        store.store_text(dave.id, ident(10), 1503, "in from dave", "text/plain", 4003)
        store.remove_contact("dave")
        # A complete incoming file from carol.
        photo = bytes(n % 251 for n in range(1000))
        offer = FileOffer(
            ident(11),
            1600,
            "photo.jpg",
            len(photo),
            hashlib.blake2b(photo, digest_size=64).digest(),
            "image/jpeg",
        )
        store.begin_file(carol.id, offer, 4200, 2**30, 2**40)
        store.write_file_chunk(offer.id, 0, photo, now=4250)
        store.finish_file(offer.id, 4300)
        # A file from bob still arriving: one chunk of two stored, last active at 4450.
        big = bytes(n % 253 for n in range(FILE_CHUNK_SIZE + 50))
        arriving = FileOffer(
            ident(12),
            1700,
            "archive.tar",
            len(big),
            hashlib.blake2b(big, digest_size=64).digest(),
            "application/x-tar",
        )
        store.begin_file(bob.id, arriving, 4400, 2**30, 2**40)
        store.write_file_chunk(arriving.id, 0, big[:FILE_CHUNK_SIZE], now=4450)
        assert store.integrity_check() == []
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
