"""Team channels in the store: logs kept and rebuilt, sends as per-member copies
at a head, and group messages received only from members.

Every refused change or message leaves the store as it was.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from unittest import mock

import pytest

from onionpost.errors import (
    ConfigError,
    GroupBoundError,
    GroupError,
    GroupNotAllowedError,
    GroupReplayError,
    GroupSignatureError,
    GroupUnknownError,
    NotFoundError,
)
from onionpost.proto.address import OnionAddress
from onionpost.proto.evidence import Entry, Event
from onionpost.proto.groups import MemberCard, Operation, OpKind, sign_operation
from onionpost.proto.identity import Identity
from onionpost.store import Contact, Direction, State, Store
from onionpost.store._groups import group_copy_id
from tests.store._storekit import new_id, open_store

GROUP = bytes(range(16))
T0 = 1_765_000_000_000


def _identity(name: str) -> Identity:
    return Identity(hashlib.blake2b(f"store group {name}".encode()).digest()[:32])


PEOPLE = {n: _identity(n) for n in ("alice", "bob", "carol", "dave", "erin")}


def card(name: str) -> MemberCard:
    return MemberCard(PEOPLE[name].public_key, hashlib.sha256(name.encode()).digest(), name)


class Maker:
    """Signs operations at the heads of a store's log of one group."""

    def __init__(self, store: Store, group_id: bytes = GROUP) -> None:
        self.store = store
        self.group_id = group_id
        self.seq: dict[str, int] = {}

    def op(self, who: str, kind: OpKind, **args: object) -> Operation:
        seq = self.seq.get(who, 0) + 1
        self.seq[who] = seq
        parents = () if kind is OpKind.CREATE else self.store.groups.log(self.group_id).heads
        return sign_operation(
            PEOPLE[who],
            self.group_id,
            seq,
            parents,
            T0 + seq,
            kind,
            **args,  # type: ignore[arg-type]
        )

    def apply(self, who: str, kind: OpKind, **args: object) -> Operation:
        op = self.op(who, kind, **args)
        self.store.groups.apply(self.group_id, [op], now=2)
        return op


def _contact(store: Store, name: str) -> Contact:
    address = OnionAddress.from_public_key(PEOPLE[name].public_key)
    return store.contacts.add_contact(name, address, os.urandom(32), 1)


def _snapshot(store: Store) -> tuple[object, ...]:
    db = store._db
    return tuple(
        db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("groups", "group_ops", "group_members", "group_messages", "messages")
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(tmp_path)
    for name in ("bob", "carol", "dave"):
        _contact(s, name)
    return s


def _team(store: Store) -> Maker:
    """alice (us) made "ops" with bob and carol in it."""
    maker = Maker(store)
    store.groups.start(maker.op("alice", OpKind.CREATE, name="ops", card=card("alice")), now=1)
    maker.apply("alice", OpKind.ADD, card=card("bob"))
    maker.apply("alice", OpKind.ADD, card=card("carol"))
    return maker


def test_a_group_is_kept_and_rebuilt_from_its_rows(tmp_path: Path, store: Store) -> None:
    maker = _team(store)
    maker.apply("alice", OpKind.PROMOTE, target=PEOPLE["bob"].public_key)
    maker.apply("bob", OpKind.RENAME, name="ops-team")
    log = store.groups.log(GROUP)
    head, members = log.head, log.state.members
    rows = store._db.execute("SELECT name, admin FROM group_members ORDER BY name").fetchall()
    assert rows == [("alice", 1), ("bob", 1), ("carol", 0)]
    store.close()
    again = open_store(tmp_path)
    rebuilt = again.groups.find("OPS-TEAM")
    assert (rebuilt.head, rebuilt.state.members) == (head, members)
    assert again.groups.find(GROUP.hex()).head == head
    assert [g.state.name for g in again.groups.all()] == ["ops-team"]
    assert len(rebuilt) == 5


def test_operations_are_added_all_or_nothing(store: Store) -> None:
    maker = _team(store)
    good = maker.op("alice", OpKind.ADD, card=card("dave"))
    forged = maker.op("alice", OpKind.RENAME, name="x")
    forged = Operation.decode(forged.encode()[:-64] + bytes(64))
    before = _snapshot(store)
    with pytest.raises(GroupSignatureError):
        store.groups.apply(GROUP, [good, forged], now=3)
    assert _snapshot(store) == before
    assert not store.groups.log(GROUP).state.is_member(PEOPLE["dave"].public_key)
    # A replayed operation is skipped, nothing stored twice.
    assert store.groups.apply(GROUP, [good], now=3) == [good]
    assert store.groups.apply(GROUP, [good], now=4) == []
    assert store.groups.log(GROUP).state.is_member(PEOPLE["dave"].public_key)


@pytest.mark.parametrize(
    ("who", "kind", "args", "error"),
    [
        ("carol", OpKind.ADD, {"card": card("dave")}, GroupNotAllowedError),
        ("erin", OpKind.RENAME, {"name": "mine"}, GroupNotAllowedError),
        ("alice", OpKind.ADD, {"card": card("bob")}, GroupNotAllowedError),
    ],
)
def test_operations_the_log_refuses_store_nothing(
    store: Store, who: str, kind: OpKind, args: dict[str, object], error: type[GroupError]
) -> None:
    maker = _team(store)
    op = maker.op(who, kind, **args)
    before = _snapshot(store)
    with pytest.raises(error):
        store.groups.apply(GROUP, [op], now=3)
    assert _snapshot(store) == before


def test_unknown_groups_and_kept_twice_are_refused(store: Store) -> None:
    maker = _team(store)
    with pytest.raises(GroupUnknownError):
        store.groups.apply(bytes(16), [], now=3)
    with pytest.raises(GroupUnknownError):
        store.groups.log(bytes(16))
    with pytest.raises(NotFoundError):
        store.groups.find("nothing")
    create = store.groups.log(GROUP).ordered()[0]
    with pytest.raises(GroupReplayError):
        store.groups.start(create, now=3)
    assert maker.store is store


def test_at_most_max_groups_are_kept(store: Store) -> None:
    with mock.patch("onionpost.store._groups.MAX_GROUPS", 2):
        for n in range(2):
            Maker(store, bytes([n]) * 16)
            store.groups.start(
                sign_operation(
                    PEOPLE["alice"],
                    bytes([n]) * 16,
                    1,
                    (),
                    T0,
                    OpKind.CREATE,
                    name=f"g{n}",
                    card=card("alice"),
                ),
                now=1,
            )
        third = sign_operation(
            PEOPLE["alice"],
            bytes([9]) * 16,
            1,
            (),
            T0,
            OpKind.CREATE,
            name="g9",
            card=card("alice"),
        )
        before = _snapshot(store)
        with pytest.raises(GroupBoundError):
            store.groups.start(third, now=1)
        assert _snapshot(store) == before


def test_two_groups_of_one_name_are_named_by_id(store: Store) -> None:
    for group_id in (bytes(16), bytes([1]) * 16):
        store.groups.start(
            sign_operation(
                PEOPLE["alice"],
                group_id,
                1,
                (),
                T0,
                OpKind.CREATE,
                name="ops",
                card=card("alice"),
            ),
            now=1,
        )
    with pytest.raises(ConfigError) as two:
        store.groups.find("ops")
    assert str(two.value) == (
        "2 groups are named 'ops' (ids 00000000…, 01010101…): name one by its id "
        "(its first 8 hex digits will do)"
    )
    assert store.groups.find(bytes(16).hex()).group_id == bytes(16)
    assert sorted(store.groups.named("OPS")) == [bytes(16), bytes([1]) * 16]
    # A prefix of 8 hex digits or more that is one group's names it.
    assert store.groups.find("01010101").group_id == bytes([1]) * 16
    assert store.groups.find("0000000000000000").group_id == bytes(16)
    with pytest.raises(NotFoundError):
        store.groups.find("0101010")  # too short to be taken as an id
    with pytest.raises(NotFoundError):
        store.groups.find("02020202")
    store.groups.start(
        sign_operation(
            PEOPLE["alice"],
            bytes(15) + b"\x01",
            1,
            (),
            T0,
            OpKind.CREATE,
            name="x",
            card=card("alice"),
        ),
        now=1,
    )
    with pytest.raises(ConfigError, match="more than one group's id begins with 00000000"):
        store.groups.find("00000000")


def test_a_group_send_is_one_copy_per_member_at_the_head(store: Store) -> None:
    maker = _team(store)
    maker.apply("alice", OpKind.ADD, card=card("erin"))  # no contact of ours
    send_id = new_id()
    alice = PEOPLE["alice"].public_key
    queued = store.groups.queue_text(GROUP, send_id, 10, "hello", "text/plain", None, sender=alice)
    head = store.groups.log(GROUP).head
    assert queued.unreachable == ("erin",)
    assert [c.contact for c in queued.send.copies] == ["bob", "carol"]
    assert queued.send.head == head
    assert {c.state for c in queued.send.copies} == {State.QUEUED}
    bob = store.contacts.contact("bob")
    assert queued.send.copies[0].message_id == group_copy_id(send_id, bob.address.public_key)
    assert len(queued.new) == 2
    # Made again under its id: nothing new.
    again = store.groups.queue_text(GROUP, send_id, 10, "hello", "text/plain", None, sender=alice)
    assert again.new == ()
    assert again.send == queued.send
    assert store.groups.sends(GROUP) == [queued.send]
    found = store.groups.send_of_message(bob.id, queued.send.copies[0].message_id)
    assert found == queued.send
    record = store.groups.of_message(Direction.OUT, bob.id, queued.send.copies[0].message_id)
    assert record is not None
    assert (record.group_id, record.group, record.head) == (GROUP, "ops", head)


def test_a_removed_member_sends_nothing(store: Store) -> None:
    maker = Maker(store)
    store.groups.start(maker.op("bob", OpKind.CREATE, name="ops", card=card("bob")), now=1)
    maker.apply("bob", OpKind.ADD, card=card("alice"))
    maker.apply("bob", OpKind.ADD, card=card("carol"))
    maker.apply("bob", OpKind.REMOVE, target=PEOPLE["alice"].public_key)
    before = _snapshot(store)
    with pytest.raises(GroupNotAllowedError, match="no longer a member"):
        store.groups.queue_text(
            GROUP, new_id(), 10, "hi", "text/plain", None, sender=PEOPLE["alice"].public_key
        )
    assert _snapshot(store) == before


def test_a_group_of_no_contacts_is_refused(store: Store) -> None:
    maker = Maker(store)
    store.groups.start(maker.op("alice", OpKind.CREATE, name="solo", card=card("alice")), now=1)
    with pytest.raises(ConfigError, match=r"^the group 'solo' has no member but us$"):
        store.groups.queue_text(
            GROUP, new_id(), 10, "hi", "text/plain", None, sender=PEOPLE["alice"].public_key
        )
    maker.apply("alice", OpKind.ADD, card=card("erin"))  # a member, no contact of ours
    with pytest.raises(ConfigError, match=r"^no member of the group 'solo' is reachable$"):
        store.groups.queue_text(
            GROUP, new_id(), 11, "hi", "text/plain", None, sender=PEOPLE["alice"].public_key
        )


def test_a_group_message_is_stored_with_its_group_only_from_a_member(store: Store) -> None:
    maker = _team(store)
    heads = store.groups.log(GROUP).heads
    bob, dave = store.contacts.contact("bob"), store.contacts.contact("dave")
    message_id = new_id()
    assert store.groups.store_text(bob, GROUP, heads, message_id, 5, "hi", "text/plain", 6)
    assert not store.groups.store_text(bob, GROUP, heads, message_id, 5, "hi", "text/plain", 6)
    record = store.groups.of_message(Direction.IN, bob.id, message_id)
    assert record is not None
    assert record.group == "ops"
    assert store.messages.message(message_id, contact_id=bob.id).body == "hi"
    before = _snapshot(store)
    refused = [
        (dave, GROUP, heads, GroupNotAllowedError),  # never a member
        (bob, GROUP, (os.urandom(32),), GroupNotAllowedError),  # heads we lack
        (bob, GROUP, (), GroupNotAllowedError),  # no heads
        (bob, bytes(16), heads, GroupUnknownError),  # a group not kept here
    ]
    for contact, group_id, at, error in refused:
        with pytest.raises(error):
            store.groups.store_text(contact, group_id, at, new_id(), 5, "x", "text/plain", 6)
    assert _snapshot(store) == before
    # Removed since: its messages at the old heads are refused too.
    maker.apply("alice", OpKind.REMOVE, target=PEOPLE["bob"].public_key)
    before = _snapshot(store)
    with pytest.raises(GroupNotAllowedError, match="removed"):
        store.groups.store_text(bob, GROUP, heads, new_id(), 5, "late", "text/plain", 6)
    assert _snapshot(store) == before


def test_forgetting_a_group_keeps_its_messages(store: Store) -> None:
    _team(store)
    alice = PEOPLE["alice"].public_key
    queued = store.groups.queue_text(GROUP, new_id(), 10, "hi", "text/plain", None, sender=alice)
    store.groups.forget(GROUP)
    assert store.groups.all() == []
    bob = store.contacts.contact("bob")
    assert store.groups.of_message(Direction.OUT, bob.id, queued.send.copies[0].message_id) is None
    assert len(store.outbox.listing()) == 2


def test_every_operation_kept_is_an_evidence_entry_and_a_refused_one_is_not(
    store: Store,
) -> None:
    def changes() -> list[Entry]:
        log = store.evidence
        entries = [Entry.decode(data) for _, data in log.entries(0, 1000)]
        return [e for e in entries if e.event is Event.GROUP_CHANGED]

    maker = _team(store)
    removal = maker.apply("alice", OpKind.REMOVE, target=PEOPLE["carol"].public_key)
    kept = changes()
    assert [e.detail.split()[2] for e in kept] == ["create", "add", "add", "remove"]
    assert all(e.detail.split()[1] == GROUP.hex() for e in kept)
    assert kept[-1].detail.split()[3] == removal.hash.hex()
    assert {e.counterparty for e in kept} == {
        str(OnionAddress.from_public_key(PEOPLE["alice"].public_key))
    }
    assert all(e.time_ms == 2 for e in kept[1:])
    size = store.evidence.size()
    # carol, removed, may no longer rename it: refused, nothing appended.
    with pytest.raises(GroupError):
        maker.apply("carol", OpKind.RENAME, name="mine")
    assert store.evidence.size() == size
    # A replay of what the log holds appends nothing either.
    store.groups.apply(GROUP, [removal], now=3)
    assert store.evidence.size() == size
