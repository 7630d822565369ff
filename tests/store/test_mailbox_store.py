"""The mailbox's store: a real SQLCipher file in a temporary directory.

Pairing, registrations, prekeys, envelopes with their quotas, usage, wiping
and expiry, each checked through the store's interface; then what survives a
close and reopen, and what a wrong key or a second opener meets.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from onionpost.errors import (
    ConfigError,
    NoSpaceError,
    NotFoundError,
    QuotaError,
    StoreError,
    StoreLockedError,
)
from onionpost.proto.address import OnionAddress
from onionpost.store import MailboxStore, PairOutcome, Prekey, PrekeyKind, Store

KEY = bytes(range(32))
DAY_MS = 86_400_000
NOW = 1_800_000_000_000  # ms
LIMITS = {"max_envelopes": 100, "max_bytes": 1 << 20, "max_disk": 10 << 20}


def open_mailbox(root: Path, key: bytes = KEY) -> MailboxStore:
    return MailboxStore.open(root / "mailbox.db", key)


def address() -> OnionAddress:
    return OnionAddress(os.urandom(32))


def key() -> bytes:
    return os.urandom(32)


def code(store: MailboxStore, *, now: int = NOW, expires_in: int = DAY_MS) -> bytes:
    digest = os.urandom(32)
    store.add_setup_code(
        digest, key(), now=now, expires_ms=now + expires_in, max_open=8, max_clients=256
    )
    return digest


def paired(store: MailboxStore, owner: OnionAddress | None = None) -> OnionAddress:
    owner = owner or address()
    outcome = store.pair(code(store), owner, key(), now=NOW, max_owners=16, max_clients=256)
    assert outcome is PairOutcome.PAIRED
    return owner


def register(store: MailboxStore, owner: OnionAddress, contact: OnionAddress) -> None:
    store.register(owner, contact, key(), now=NOW, max_per_owner=200, max_clients=256)


def deposit(
    store: MailboxStore,
    owner: OnionAddress,
    contact: OnionAddress,
    data: bytes = b"sealed",
    *,
    envelope_id: bytes | None = None,
    now: int = NOW,
    **limits: int,
) -> int:
    done = store.deposit(
        owner, contact, envelope_id or os.urandom(16), data, now=now, **{**LIMITS, **limits}
    )
    return done.seq


def prekey(kind: PrekeyKind, not_after: int, key_id: bytes | None = None) -> Prekey:
    return Prekey(key_id or os.urandom(16), kind, not_after, os.urandom(40))


# -- opening ------------------------------------------------------------------------------


def test_pragmas_and_file_mode(tmp_path: Path) -> None:
    with open_mailbox(tmp_path) as store:
        paired(store)
        conn = store._db
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert stat.S_IMODE((tmp_path / "mailbox.db").stat().st_mode) == 0o600
        assert not (tmp_path / "mailbox.db-shm").exists()  # exclusive locking
        assert store.integrity_check() == []


def test_a_wrong_key_a_second_opener_and_the_endpoint_store_are_refused(tmp_path: Path) -> None:
    with open_mailbox(tmp_path) as store:
        paired(store)
        with pytest.raises(StoreLockedError):
            open_mailbox(tmp_path)
    with pytest.raises(StoreError, match="does not open"):
        open_mailbox(tmp_path, bytes(32))
    # The same home key opens the endpoint's store, never the mailbox's: its own subkey.
    with pytest.raises(StoreError, match="does not open"):
        Store.open(tmp_path / "mailbox.db", tmp_path / "files", KEY)
    with pytest.raises(ConfigError):
        MailboxStore.open(tmp_path / "other.db", b"short")


def test_everything_survives_close_and_reopen(tmp_path: Path) -> None:
    owner, contact = address(), address()
    with open_mailbox(tmp_path) as store:
        paired(store, owner)
        register(store, owner, contact)
        store.add_prekeys(
            owner, [prekey(PrekeyKind.ONE_TIME, 2_000_000_000)], now=NOW, max_one_time=200
        )
        seq = deposit(store, owner, contact, b"kept across a restart")
        pending = code(store)
    with open_mailbox(tmp_path) as store:
        (held,) = store.envelopes(owner, after=0, limit=10)
        assert (held.seq, held.data) == (seq, b"kept across a restart")
        usage = store.usage(owner)
        assert (usage.contacts, usage.envelopes, usage.one_time_prekeys) == (1, 1, 1)
        assert usage.last_deposit_ms == NOW
        assert store.disk_used() == len(b"kept across a restart")
        directory = store.directory(NOW)
        assert [o.address for o in directory.owners] == [owner]
        assert [r.contact for r in directory.registrations] == [contact]
        assert sorted(c.used for c in directory.codes) == [False, True]
        other = address()
        assert (
            store.pair(pending, other, key(), now=NOW + 1, max_owners=16, max_clients=256)
            is PairOutcome.PAIRED
        )
        assert store.integrity_check() == []


# -- pairing ------------------------------------------------------------------------------


def test_a_code_pairs_once_and_again_only_for_the_same_owner(tmp_path: Path) -> None:
    with open_mailbox(tmp_path) as store:
        digest = code(store)
        alice, mallory = address(), address()
        pair = {"max_owners": 16, "max_clients": 256}
        assert store.pair(digest, alice, key(), now=NOW, **pair) is PairOutcome.PAIRED
        # Alice crashed before she stored the pairing: the same code again works for her.
        again = key()
        assert store.pair(digest, alice, again, now=NOW + 5, **pair) is PairOutcome.REPEATED
        owner = store.owner(alice)
        assert owner is not None
        assert owner.client_auth_public == again
        assert store.pair(digest, mallory, key(), now=NOW + 5, **pair) is PairOutcome.REFUSED
        assert store.owner(mallory) is None
        assert store.pair(os.urandom(32), mallory, key(), now=NOW, **pair) is PairOutcome.REFUSED
        expired = code(store, expires_in=1000)
        assert store.pair(expired, mallory, key(), now=NOW + 1000, **pair) is PairOutcome.REFUSED
        # A wiped owner does not come back with its used code.
        store.wipe(alice)
        assert store.pair(digest, alice, key(), now=NOW + 9, **pair) is PairOutcome.REFUSED


def test_codes_owners_and_clients_are_bounded(tmp_path: Path) -> None:
    with open_mailbox(tmp_path) as store:
        for _ in range(3):
            store.add_setup_code(
                os.urandom(32), key(), now=NOW, expires_ms=NOW + 10, max_open=3, max_clients=256
            )
        with pytest.raises(QuotaError) as info:
            store.add_setup_code(
                os.urandom(32), key(), now=NOW, expires_ms=NOW + 10, max_open=3, max_clients=256
            )
        assert info.value.quota == "setup-codes"
        # Expired codes no longer count.
        code(store, now=NOW + 10)
        with pytest.raises(ConfigError):
            store.add_setup_code(
                os.urandom(32), key(), now=NOW, expires_ms=NOW, max_open=3, max_clients=256
            )
        first = address()
        assert (
            store.pair(code(store), first, key(), now=NOW, max_owners=1, max_clients=256)
            is PairOutcome.PAIRED
        )
        with pytest.raises(QuotaError) as info:
            store.pair(code(store), address(), key(), now=NOW, max_owners=1, max_clients=256)
        assert info.value.quota == "owners"
        # 2 open codes and 1 owner hold 3 distinct keys; a 4th is one too many for 3.
        with pytest.raises(QuotaError) as info:
            store.register(first, address(), key(), now=NOW, max_per_owner=9, max_clients=3)
        assert info.value.quota == "clients"
        shared = store.directory(NOW).owners[0].client_auth_public
        # A key that is authorized already costs nothing.
        store.register(first, address(), shared, now=NOW, max_per_owner=9, max_clients=3)


# -- registrations ------------------------------------------------------------------------


def test_registration_is_per_owner_bounded_and_leaves_envelopes(tmp_path: Path) -> None:
    with open_mailbox(tmp_path) as store:
        owner, contact = paired(store), address()
        with pytest.raises(NotFoundError):
            store.register(address(), contact, key(), now=NOW, max_per_owner=2, max_clients=256)
        register(store, owner, contact)
        new_key = key()
        store.register(owner, contact, new_key, now=NOW, max_per_owner=1, max_clients=256)
        assert [r.client_auth_public for r in store.directory(NOW).registrations] == [new_key]
        with pytest.raises(QuotaError):
            store.register(owner, address(), key(), now=NOW, max_per_owner=1, max_clients=256)
        deposit(store, owner, contact)
        assert store.deregister(owner, contact)
        assert not store.deregister(owner, contact)
        with pytest.raises(NotFoundError):
            store.deregister(address(), contact)
        assert store.usage(owner).envelopes == 1
        with pytest.raises(NotFoundError):
            deposit(store, owner, contact)


# -- prekeys ------------------------------------------------------------------------------


def test_one_time_prekeys_go_once_then_the_newest_last_resort(tmp_path: Path) -> None:
    now_s = NOW // 1000
    with open_mailbox(tmp_path) as store:
        owner, contact, stranger = paired(store), address(), address()
        register(store, owner, contact)
        one = prekey(PrekeyKind.ONE_TIME, now_s + 100)
        old = prekey(PrekeyKind.LAST_RESORT, now_s + 50)
        new = prekey(PrekeyKind.LAST_RESORT, now_s + 500)
        stale = prekey(PrekeyKind.ONE_TIME, now_s - 1)
        held = store.add_prekeys(owner, [one, old, stale], now=NOW, max_one_time=200)
        assert held == 2
        assert store.add_prekeys(owner, [new, one], now=NOW, max_one_time=200) == 2
        assert store.usage(owner).last_resort_not_after == now_s + 500
        with pytest.raises(NotFoundError):
            store.take_prekey(owner, stranger, now_s=now_s)
        with pytest.raises(NotFoundError):
            store.take_prekey(address(), contact, now_s=now_s)
        assert store.take_prekey(owner, contact, now_s=now_s) == one.data
        assert store.take_prekey(owner, contact, now_s=now_s) == new.data
        assert store.take_prekey(owner, contact, now_s=now_s) == new.data
        assert store.usage(owner).one_time_prekeys == 1  # the expired one, until housekeeping
        assert store.take_prekey(owner, contact, now_s=now_s + 500) is None
        assert store.expire(now=NOW, deposited_before=0, now_s=now_s + 500).prekeys == 2


def test_one_time_prekeys_are_bounded_all_or_nothing(tmp_path: Path) -> None:
    now_s = NOW // 1000
    with open_mailbox(tmp_path) as store:
        owner = paired(store)
        batch = [prekey(PrekeyKind.ONE_TIME, now_s + 100) for _ in range(3)]
        assert store.add_prekeys(owner, batch[:2], now=NOW, max_one_time=3) == 2
        with pytest.raises(QuotaError):
            store.add_prekeys(
                owner,
                [*batch[2:], batch[0], prekey(PrekeyKind.ONE_TIME, now_s + 100)],
                now=NOW,
                max_one_time=3,
            )
        assert store.usage(owner).one_time_prekeys == 2
        with pytest.raises(NotFoundError):
            store.add_prekeys(address(), batch, now=NOW, max_one_time=3)


# -- envelopes ----------------------------------------------------------------------------


def test_deposits_are_held_once_in_order_and_read_in_pages(tmp_path: Path) -> None:
    with open_mailbox(tmp_path) as store:
        owner, contact = paired(store), address()
        with pytest.raises(NotFoundError):
            deposit(store, owner, contact)  # not registered
        register(store, owner, contact)
        ids = [os.urandom(16) for _ in range(5)]
        seqs = [
            deposit(store, owner, contact, bytes([n]) * 10, envelope_id=i)
            for n, i in enumerate(ids)
        ]
        assert seqs == sorted(seqs)
        again = store.deposit(owner, contact, ids[2], b"other bytes", now=NOW, **LIMITS)
        assert (again.seq, again.new) == (seqs[2], False)
        page = store.envelopes(owner, after=seqs[0], limit=2)
        assert [e.seq for e in page] == seqs[1:3]
        assert page[0].data == bytes([1]) * 10
        assert store.envelopes(address(), after=0, limit=10) == []
        assert store.usage(owner).envelopes == 5
        assert store.delete_envelopes(owner, [ids[0], ids[1], os.urandom(16)]) == 2
        assert [e.id for e in store.envelopes(owner, after=0, limit=10)] == ids[2:]
        with pytest.raises(NotFoundError):
            store.delete_envelopes(address(), ids)
        store.note_drained(owner, NOW + 7)
        assert store.usage(owner).last_drained_ms == NOW + 7
        assert store.integrity_check() == []


def test_quotas_per_contact_and_the_disk_budget(tmp_path: Path) -> None:
    with open_mailbox(tmp_path) as store:
        owner, alice, bob = paired(store), address(), address()
        register(store, owner, alice)
        register(store, owner, bob)
        limits = {"max_envelopes": 2, "max_bytes": 100, "max_disk": 250}
        deposit(store, owner, alice, b"a" * 40, **limits)
        deposit(store, owner, alice, b"a" * 40, **limits)
        with pytest.raises(QuotaError, match="at most 2 envelopes / 100 bytes from one contact"):
            deposit(store, owner, alice, b"a", **limits)
        deposit(store, owner, bob, b"b" * 90, **limits)
        with pytest.raises(QuotaError) as info:
            deposit(store, owner, bob, b"b" * 11, **limits)
        assert (info.value.quota, info.value.limit) == ("envelope-bytes", 100)
        other = paired(store)
        register(store, other, bob)
        deposit(store, other, bob, b"c" * 80, **limits)
        with pytest.raises(NoSpaceError):
            deposit(store, other, bob, b"c" * 1, **limits)  # 250 bytes held in all
        assert store.disk_used() == 250
        assert store.usage(owner).bytes == 170
        assert store.integrity_check() == []


def test_wipe_one_owner_and_every_owner(tmp_path: Path) -> None:
    with open_mailbox(tmp_path) as store:
        alice, bob, contact = paired(store), paired(store), address()
        for owner in (alice, bob):
            register(store, owner, contact)
            deposit(store, owner, contact)
            deposit(store, owner, contact)
        store.add_prekeys(
            alice, [prekey(PrekeyKind.LAST_RESORT, 2_000_000_000)], now=NOW, max_one_time=1
        )
        assert store.wipe(alice) == 2
        assert store.owner(alice) is None
        assert store.envelopes(alice, after=0, limit=10) == []
        with pytest.raises(NotFoundError):
            store.wipe(alice)
        with pytest.raises(NotFoundError):
            store.usage(alice)
        assert [u.owner for u in store.usages()] == [bob]
        assert store.wipe_all() == (2, 1)
        assert store.usages() == []
        assert store.disk_used() == 0
        assert store.integrity_check() == []


def test_expiry_of_envelopes_and_codes(tmp_path: Path) -> None:
    with open_mailbox(tmp_path) as store:
        owner, contact = paired(store), address()
        register(store, owner, contact)
        old = deposit(store, owner, contact, now=NOW)
        young = deposit(store, owner, contact, now=NOW + DAY_MS)
        code(store, now=NOW, expires_in=DAY_MS)  # open, expires with the first day
        expired = store.expire(now=NOW + DAY_MS, deposited_before=NOW + 1, now_s=0)
        # The code that paired the owner and the open one: both expired.
        assert (expired.envelopes, expired.codes) == (1, 2)
        assert [e.seq for e in store.envelopes(owner, after=0, limit=10)] == [young]
        assert old < young
        assert store.directory(NOW + DAY_MS).codes == ()
        assert store.disk_used() == len(b"sealed")
