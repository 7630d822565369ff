"""Shared helpers for the store tests: a real SQLite store in a temporary directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from onionpost.proto.address import OnionAddress
from onionpost.proto.messages import FileOffer
from onionpost.store import Contact, Store
from onionpost.store._database import Keys
from onionpost.store._files import Blob

KEY = bytes(range(32))


def open_store(root: Path, key: bytes = KEY) -> Store:
    return Store.open(root / "store.sqlite", root / "files", key)


def new_id() -> bytes:
    return os.urandom(16)


def add_contact(store: Store, name: str = "bob", now: int = 1) -> Contact:
    return store.contacts.add_contact(name, OnionAddress(os.urandom(32)), os.urandom(32), now)


def offer_for(data: bytes, name: str = "report.pdf", file_id: bytes | None = None) -> FileOffer:
    return FileOffer(
        file_id or new_id(),
        1000,
        name,
        len(data),
        hashlib.blake2b(data, digest_size=64).digest(),
        "application/pdf",
    )


def offered(offer: FileOffer) -> tuple[bytes, int, str, int, bytes, str]:
    """An offer's fields, in the order ``Transfers.begin_file`` takes them."""
    return offer.id, offer.created_ms, offer.name, offer.size, offer.blake2b, offer.content_type


def blob_path(
    root: Path, direction: str, contact_id: int, file_id: bytes, key: bytes = KEY
) -> Path:
    """Where a file's blob is: ``files/`` under its keyed-hash name."""
    return root / "files" / Blob.name(Keys.derive(key), direction, contact_id, file_id)
