"""Forward secrecy at rest: once an envelope is drained, the private half of its
one-time prekey is nowhere on the owner's disk (mailbox.md §8, §11.3 step 6).

The store deletes the prekey's row in the transaction that stores the
envelope's records, with ``secure_delete`` on, and the owner checkpoints the
WAL with TRUNCATE after each drain. Whether that leaves nothing behind is a
property of the bytes on the disk, so this test reads them as a thief of the
home directory (and of its key file) would: it decrypts every page of the
SQLCipher database and every frame of its WAL itself, with ``cryptography``
(the page format is described in ``onionpost.store._database``), unseals the
secrets file, and searches all of it, and every other file in the home, for
the prekey's X25519 private key and ML-KEM seed.

The search is for every 16-byte window of each key, so that a key cut in two
by a page boundary (a record's local part and its overflow page) is still
found; it is shown to work on a prekey not used yet, whose private half must
be there. The decryption is checked first on page 1, whose SQLite header
bytes are fixed, and by every page's HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from trio.testing import MockClock

from onionpost import api
from onionpost.errors import AuthenticationError
from onionpost.home import create_key_file, save_secrets, unlock
from onionpost.proto import envelope as env
from onionpost.proto._crypto import KemKeyPair, KeyPair
from onionpost.store._database import PAGE_SIZE, SALT_LEN, SQLITE_MAGIC, Keys
from onionpost.testing.memory import MailboxNode, Node, befriend, network, until

pytestmark = pytest.mark.trio

MAILBOX_AFTER = 5.0
# Each page ends with its IV (16) and HMAC-SHA256 (32); the HMAC key is
# PBKDF2-HMAC-SHA512(key, salt XOR 0x3a, 2 iterations) (SQLCipher 4).
_IV_LEN = 16
_MAC_LEN = 32
_RESERVED = _IV_LEN + _MAC_LEN
# Page 1's SQLite header from offset 16 (the salt takes the first 16 bytes on
# the disk): page size 1024 and read and write versions 2 (WAL), then at
# offset 20 the bytes SQLite leaves free at each page's end (at least what
# SQLCipher uses), then the payload fractions 64, 32, 32 of every SQLite file.
_PAGE_1_SIZE_VERSIONS = bytes([0x04, 0x00, 2, 2])
_PAGE_1_FRACTIONS = bytes([64, 32, 32])
_WAL_HEADER_LEN = 32
_WAL_FRAME_HEADER_LEN = 24
_WAL_MAGIC = (0x377F0682, 0x377F0683)
_WINDOW = 16
_BTREE_KINDS = {2: "index interior", 5: "table interior", 10: "index leaf", 13: "table leaf"}


@dataclass(frozen=True, slots=True)
class Page:
    """One decrypted page image: where it lies on the disk and its plaintext."""

    where: str  # the file, and the WAL frame
    number: int  # the page number
    # As SQLite sees it: decrypted, the SQLite magic in place of page 1's
    # salt, the reserved bytes (IV, HMAC) as they were.
    plain: bytes


def _hmac_key(keys: Keys) -> bytes:
    salt = bytes(b ^ 0x3A for b in keys.salt)
    return hashlib.pbkdf2_hmac("sha512", keys.database, salt, 2, 32)


def _decrypt(keys: Keys, mac_key: bytes, where: str, number: int, image: bytes) -> Page:
    assert len(image) == PAGE_SIZE, where
    start = SALT_LEN if number == 1 else 0
    ciphertext = image[start : PAGE_SIZE - _RESERVED]
    iv = image[PAGE_SIZE - _RESERVED : PAGE_SIZE - _MAC_LEN]
    expected = hmac.new(
        mac_key, image[start : PAGE_SIZE - _MAC_LEN] + number.to_bytes(4, "little"), "sha256"
    ).digest()
    assert hmac.compare_digest(image[PAGE_SIZE - _MAC_LEN :], expected), (
        f"{where}: page {number} does not verify (wrong keys or page number)"
    )
    decryptor = Cipher(algorithms.AES(keys.database), modes.CBC(iv)).decryptor()
    plain = decryptor.update(ciphertext) + decryptor.finalize()
    return Page(where, number, (SQLITE_MAGIC if number == 1 else b"") + plain + image[-_RESERVED:])


def _database_pages(path: Path, keys: Keys, mac_key: bytes) -> list[Page]:
    data = path.read_bytes()
    assert len(data) % PAGE_SIZE == 0, f"{path.name} is not whole pages"
    assert data[:SALT_LEN] == keys.salt, "the file does not start with the store's salt"
    pages = [
        _decrypt(keys, mac_key, path.name, i // PAGE_SIZE + 1, data[i : i + PAGE_SIZE])
        for i in range(0, len(data), PAGE_SIZE)
    ]
    # The known plaintext: decrypting with these keys gives SQLite's header.
    header = pages[0].plain
    assert header[16:20] == _PAGE_1_SIZE_VERSIONS, "page 1 did not decrypt to SQLite's header"
    assert header[20] >= _RESERVED
    assert header[21:24] == _PAGE_1_FRACTIONS, "page 1 did not decrypt to SQLite's header"
    return pages


def _wal_pages(path: Path, keys: Keys, mac_key: bytes) -> list[Page]:
    """Every frame in the file, those of the current log and any left from an
    earlier one alike: all are page images on the disk."""
    data = path.read_bytes()
    if not data:
        return []
    magic, _version, page_size = (int.from_bytes(data[i : i + 4], "big") for i in (0, 4, 8))
    assert magic in _WAL_MAGIC
    assert page_size == PAGE_SIZE
    frame_len = _WAL_FRAME_HEADER_LEN + PAGE_SIZE
    assert (len(data) - _WAL_HEADER_LEN) % frame_len == 0, f"{path.name} ends inside a frame"
    pages = []
    for index, at in enumerate(range(_WAL_HEADER_LEN, len(data), frame_len)):
        number = int.from_bytes(data[at : at + 4], "big")
        image = data[at + _WAL_FRAME_HEADER_LEN : at + frame_len]
        pages.append(_decrypt(keys, mac_key, f"{path.name} frame {index}", number, image))
    return pages


def _freelist(pages: list[Page]) -> dict[int, str]:
    """The free pages of the database file, by its page 1: trunks and leaves."""
    by_number = {p.number: p.plain for p in pages}
    free: dict[int, str] = {}
    trunk = int.from_bytes(by_number[1][32:36], "big")
    while trunk and trunk in by_number and trunk not in free:
        free[trunk] = "freelist trunk"
        plain = by_number[trunk]
        count = int.from_bytes(plain[4:8], "big")
        for i in range(min(count, (PAGE_SIZE - 8) // 4)):
            free[int.from_bytes(plain[8 + 4 * i : 12 + 4 * i], "big")] = "freelist leaf"
        trunk = int.from_bytes(plain[:4], "big")
    return free


def _kind(page: Page, free: dict[int, str]) -> str:
    in_wal = "-wal" in page.where
    if not in_wal and page.number in free:
        return free[page.number]
    kind = _BTREE_KINDS.get(page.plain[100 if page.number == 1 else 0])
    if kind is not None:
        return kind
    # Neither free nor a b-tree page: what holds the tail of a long row.
    return "overflow or free page" if in_wal else "overflow page"


def _windows(secret: bytes) -> list[bytes]:
    return [secret[i : i + _WINDOW] for i in range(len(secret) - _WINDOW + 1)]


def _found(
    secret: bytes, pages: list[Page], free: dict[int, str], blobs: dict[str, bytes]
) -> list[str]:
    """Where any 16 consecutive bytes of ``secret`` are, page by page and file by file."""
    windows = _windows(secret)
    hits = []
    for page in pages:
        offsets = sorted(at for w in windows if (at := page.plain.find(w)) >= 0)
        if offsets:
            hits.append(
                f"{page.where}, page {page.number} ({_kind(page, free)}), offset {offsets[0]}"
            )
    # The other files raw, and as hex where they are text.
    for name, data in blobs.items():
        if any(w in data or w.hex().encode() in data for w in windows):
            hits.append(name)
    return hits


def _held(box: MailboxNode, owner: Node) -> list[bytes]:
    assert box.store is not None
    return [h.data for h in box.store.envelopes(owner.address, after=0, limit=10_000)]


def _remaining_prekeys(node: Node) -> list[env.PrekeySecret]:
    with node.store.transaction():
        rows = node.store._db.execute("SELECT secret FROM prekeys").fetchall()
    return [env.PrekeySecret.from_bytes(bytes(row[0])) for row in rows]


def _opens(data: bytes, owner: Node, secret: env.PrekeySecret) -> bool:
    try:
        env.open_envelope(
            data, recipient=owner.address, secret=secret, now_ms=int(time.time() * 1000)
        )
    except AuthenticationError:
        return False
    return True


async def test_a_drained_prekey_is_nowhere_on_the_disk(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path, mailbox_after=MAILBOX_AFTER) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        box = net.mailbox("box")
        befriend(alice, bob)
        # Bob's home is whole: its secrets file too, sealed with a key file
        # kept elsewhere (which the thief is assumed to have as well).
        key_file = tmp_path / "bob.key"
        create_key_file(key_file)
        save_secrets(bob.paths, bob.secrets, passphrase=None, key_file=key_file)
        for node in (box, alice, bob):
            await node.start(nursery)
        for node in (alice, bob):
            assert node.daemon is not None
            await node.daemon.mailbox_pair(api.MailboxPair(await box.code()))
        # Each learns the other's mailbox in a session (the announcement).
        await until(lambda: alice.contact(bob).mailbox == box.address, 600)
        await until(lambda: bob.contact(alice).mailbox == box.address, 600)
        one_time = int(env.PrekeyKind.ONE_TIME)
        # The mailbox has bob's one-time prekeys to hand out.
        await until(
            lambda: (
                bob.store.mailbox.prekey_stock(one_time)[0] > 0
                and not bob.store.mailbox.prekeys_to_upload(1)
            ),
            600,
        )
        bob.stop()
        await until(lambda: not bob.up)
        message_id = await alice.send(bob, "for your eyes only")
        await until(lambda: alice.store.messages.message(message_id).deposited_ms is not None, 600)

        # The adversary records the envelopes; bob's private halves for them,
        # taken before the drain, are what must vanish.
        recorded = _held(box, bob)
        assert recorded
        used: dict[bytes, env.PrekeySecret] = {}
        for data in recorded:
            key_id = env.EnvelopeHeader.parse(data).key_id
            stored = bob.store.mailbox.prekey_secret(key_id)
            assert stored is not None
            secret = env.PrekeySecret.from_bytes(stored)
            assert secret.public.kind is env.PrekeyKind.ONE_TIME
            assert _opens(data, bob, secret)  # what is searched for opens it
            used[key_id] = secret

        await bob.start(nursery)
        await until(lambda: len(bob.inbox_from(alice)) == 1, 600)
        # Deleted at the mailbox, so bob's drain went through its checkpoint.
        await until(lambda: not _held(box, bob), 600)
        assert all(bob.store.mailbox.prekey_secret(k) is None for k in used)
        remaining = _remaining_prekeys(bob)
        control = next(p for p in remaining if p.public.kind is env.PrekeyKind.ONE_TIME)

        # Everything in bob's home, as it is on the disk now.
        home = bob.paths.home
        secrets = unlock(bob.paths, passphrase=None, key_file=key_file)
        keys = Keys.derive(secrets.store_key)
        mac_key = _hmac_key(keys)
        store, wal = bob.paths.store, bob.paths.store.with_name(bob.paths.store.name + "-wal")
        pages = _database_pages(store, keys, mac_key)
        if wal.exists():
            pages += _wal_pages(wal, keys, mac_key)
        free = _freelist([p for p in pages if "-wal" not in p.where])
        files = sorted(p for p in home.rglob("*") if p.is_file())
        bind = store.name + "-bind"  # the binding (storage.md §5.4): no secret, searched raw
        assert {p.name for p in files if p.name.startswith(store.name)} <= {
            store.name,
            wal.name,
            bind,
        }
        # The files other than the store as they are, and what the secrets file seals.
        blobs = {str(p.relative_to(home)): p.read_bytes() for p in files if p not in (store, wal)}
        sealed = (
            secrets.identity.seed,
            secrets.client_auth_private,
            secrets.static.keypair.private,
            secrets.static.certificate.to_bytes(),
            secrets.store_key,
        )
        blobs["secrets.json, unsealed"] = b"".join(sealed)

        # The positive control: the search finds a one-time prekey not used yet.
        assert _found(control.x25519_private, pages, free, blobs)
        assert _found(control.mlkem_seed, pages, free, blobs)

        for key_id, secret in used.items():
            where = {
                "X25519 private key": _found(secret.x25519_private, pages, free, blobs),
                "ML-KEM seed": _found(secret.mlkem_seed, pages, free, blobs),
            }
            assert where == {"X25519 private key": [], "ML-KEM seed": []}, (
                f"the used prekey {key_id.hex()} survives the drain: {where}"
            )

        # Nor does anything left open the recorded envelopes: no key left is
        # the used prekey's, X25519 or ML-KEM, and no remaining prekey's
        # private half opens them even under the used prekey's id.
        x25519_left = [p.x25519_private for p in remaining] + [
            secrets.identity.seed,
            secrets.client_auth_private,
            secrets.static.keypair.private,
            secrets.store_key,
        ]
        for data in recorded:
            public = used[env.EnvelopeHeader.parse(data).key_id].public
            assert all(KeyPair.from_private(x).public != public.x25519 for x in x25519_left)
            assert all(KemKeyPair(p.mlkem_seed).public != public.mlkem for p in remaining)
            for secret in remaining:
                assert not _opens(data, bob, secret)
                relabelled = env.PrekeySecret(public, secret.x25519_private, secret.mlkem_seed)
                assert not _opens(data, bob, relabelled)
