"""Distribution lists in the store: bounds, bad input, and sends as per-member copies.

Every refused change leaves the store as it was; a send to a list is one
outgoing message per member in one transaction, or nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from unittest import mock

import pytest

from onionpost import limits
from onionpost.errors import ConfigError, NotFoundError, OnionpostError, UnknownContactError
from onionpost.store import Kind, State, Store
from onionpost.store._lists import copy_id
from tests.store._storekit import add_contact, new_id, open_store


def _snapshot(store: Store) -> tuple[object, ...]:
    db = store._db
    return tuple(
        db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("lists", "list_members", "list_copies", "messages", "evidence")
    )


def _at(store: Store, name: str) -> str:
    """The contact's onion address, as a user may name it."""
    return str(store.contacts.contact(name).address)


def test_a_member_is_named_by_its_address_too(store: Store) -> None:
    made = store.lists.create("team", [_at(store, "bob"), "carol"], 1)
    assert [c.name for c in made.members] == ["bob", "carol"]
    left = store.lists.remove("team", [_at(store, "bob").upper()])
    assert [c.name for c in left.members] == ["carol"]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(tmp_path)
    for name in ("bob", "carol", "dave"):
        add_contact(s, name)
    return s


def test_a_list_is_created_shown_changed_and_deleted(store: Store) -> None:
    made = store.lists.create("Team", ["carol", "BOB"], now=5)
    assert (made.name, made.created_ms) == ("Team", 5)
    assert [c.name for c in made.members] == ["bob", "carol"]
    assert [c.name for c in store.lists.add("team", ["dave"], now=6).members] == [
        "bob",
        "carol",
        "dave",
    ]
    assert [c.name for c in store.lists.remove("TEAM", ["carol"]).members] == ["bob", "dave"]
    assert [x.name for x in store.lists.all()] == ["Team"]
    assert store.lists.delete("team").name == "Team"
    assert store.lists.all() == []
    with pytest.raises(NotFoundError):
        store.lists.show("team")


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (lambda s: s.lists.create("team", ["bob"], 1), ConfigError, "already exists"),
        (lambda s: s.lists.create("TEAM", [], 1), ConfigError, "already exists"),
        (lambda s: s.lists.create("", [], 1), ConfigError, "list name"),
        (lambda s: s.lists.create("a\u202eb", [], 1), ConfigError, "list name"),
        (lambda s: s.lists.create("x" * 65, [], 1), ConfigError, "list name"),
        (lambda s: s.lists.create("other", ["bob", "Bob"], 1), ConfigError, "named twice"),
        (lambda s: s.lists.create("other", ["mallory"], 1), UnknownContactError, "mallory"),
        (lambda s: s.lists.add("nope", ["bob"], 1), NotFoundError, "no list named"),
        (lambda s: s.lists.add("team", ["bob"], 1), ConfigError, "already"),
        (lambda s: s.lists.add("team", ["carol", "mallory"], 1), UnknownContactError, "mallory"),
        (lambda s: s.lists.add("team", [], 1), ConfigError, "at least one"),
        (lambda s: s.lists.remove("team", ["carol"]), ConfigError, "not on the list"),
        (lambda s: s.lists.remove("team", ["bob", "bob"]), ConfigError, "named twice"),
        # By its name and by its address: the same contact (was a store error).
        (lambda s: s.lists.create("other", ["bob", _at(s, "bob")], 1), ConfigError,
         "named twice"),
        (lambda s: s.lists.add("empty", [_at(s, "carol"), "CAROL"], 1), ConfigError,
         "named twice"),
        (lambda s: s.lists.remove("team", ["bob", _at(s, "bob")]), ConfigError, "named twice"),
        (lambda s: s.lists.remove("team", [_at(s, "carol")]), ConfigError, "not on the list"),
        (lambda s: s.lists.remove("nope", ["bob"]), NotFoundError, "no list named"),
        (lambda s: s.lists.delete("nope"), NotFoundError, "no list named"),
        (lambda s: s.lists.queue_text("nope", new_id(), 1, "hi", "text/plain", None),
         NotFoundError, "no list named"),
        (lambda s: s.lists.queue_text("empty", new_id(), 1, "hi", "text/plain", None),
         ConfigError, "no members"),
        (lambda s: s.lists.queue_text("team", b"short", 1, "hi", "text/plain", None),
         ConfigError, "send id"),
    ],
)  # fmt: skip
def test_bad_input_is_refused_and_nothing_changes(
    store: Store, change: object, error: type[OnionpostError], match: str
) -> None:
    store.lists.create("team", ["bob"], 1)
    store.lists.create("empty", [], 1)
    before = _snapshot(store)
    with pytest.raises(error, match=match):
        change(store)  # type: ignore[operator]
    assert _snapshot(store) == before


def test_the_number_of_lists_is_bounded(store: Store) -> None:
    with mock.patch("onionpost.store._lists.MAX_LISTS", 3):
        for n in range(3):
            store.lists.create(f"l{n}", [], 1)
        before = _snapshot(store)
        with pytest.raises(ConfigError, match="3 lists already"):
            store.lists.create("one-more", ["bob"], 1)
        assert _snapshot(store) == before
        store.lists.delete("l0")
        store.lists.create("one-more", [], 1)


def test_the_members_of_a_list_are_bounded(store: Store) -> None:
    with mock.patch("onionpost.store._lists.MAX_LIST_MEMBERS", 2):
        with pytest.raises(ConfigError, match="at most 2 members"):
            store.lists.create("team", ["bob", "carol", "dave"], 1)
        store.lists.create("team", ["bob", "carol"], 1)
        before = _snapshot(store)
        with pytest.raises(ConfigError, match="at most 2 members"):
            store.lists.add("team", ["dave"], 1)
        assert _snapshot(store) == before
    assert limits.MAX_LIST_MEMBERS == 256
    assert limits.MAX_LISTS == 64


def test_a_contact_removed_leaves_every_list_and_its_copies_stay(store: Store) -> None:
    store.lists.create("a", ["bob", "carol"], 1)
    store.lists.create("b", ["carol"], 1)
    send = store.lists.queue_text("a", new_id(), 2, "hi", "text/plain", None).send
    store.contacts.remove_contact("carol", now=3)
    assert [c.name for c in store.lists.show("a").members] == ["bob"]
    assert store.lists.show("b").members == ()
    # The send made to carol before stays recorded, under her name.
    (recorded,) = store.lists.sends("a")
    assert recorded == send
    assert [c.contact for c in recorded.copies] == ["bob", "carol"]
    # A new contact of the same name is not on the list.
    add_contact(store, "carol")
    assert [c.name for c in store.lists.show("a").members] == ["bob"]


def test_a_text_to_a_list_is_one_copy_per_member_each_with_its_own_state(store: Store) -> None:
    store.lists.create("team", ["bob", "carol", "dave"], 1)
    send_id = new_id()
    queued = store.lists.queue_text("team", send_id, 10, "meeting at 3", "text/plain", None)
    send = queued.send
    assert (send.id, send.list, send.kind, send.created_ms) == (send_id, "team", Kind.TEXT, 10)
    members = {c.name: c for c in store.contacts.all()}
    assert [c.contact for c in send.copies] == ["bob", "carol", "dave"]
    for copy in send.copies:
        assert copy.message_id == copy_id(send_id, members[copy.contact].address.public_key)
        assert copy.state == State.QUEUED
        assert copy.contact_id == members[copy.contact].id
    # Each member's outbox holds exactly its copy, an ordinary text.
    for name, contact in members.items():
        (pending,) = store.outbox.pending(contact.id, 10)
        assert pending.body == "meeting at 3"
        assert pending.id == next(c.message_id for c in send.copies if c.contact == name)
    assert sorted(seq for _, _, seq in queued.new) == sorted(s.seq for s in store.outbox.listing())
    # Each copy moves on its own.
    bob, carol = send.copies[0], send.copies[1]
    store.outbox.mark_delivered([bob.message_id], 20, contact_id=bob.contact_id)
    store.messages.mark_read([carol.message_id], 21, contact_id=carol.contact_id)
    states = {c.contact: c.state for c in store.lists.send(send_id).copies}
    assert states == {"bob": State.DELIVERED, "carol": State.READ, "dave": State.QUEUED}


def test_a_send_made_again_queues_nothing_more(store: Store) -> None:
    store.lists.create("team", ["bob", "carol"], 1)
    send_id = new_id()
    first = store.lists.queue_text("team", send_id, 10, "once", "text/plain", None)
    store.lists.add("team", ["dave"], 11)
    again = store.lists.queue_text("team", send_id, 12, "once", "text/plain", None)
    assert again.send == first.send
    assert again.new == ()
    assert len(store.outbox.listing()) == 2
    store.lists.create("other", ["bob"], 13)
    before = _snapshot(store)
    with pytest.raises(ConfigError, match="already another message's"):
        store.lists.queue_text("team", send_id, 12, "changed", "text/plain", None)
    with pytest.raises(ConfigError, match="another list"):
        store.lists.queue_text("other", send_id, 12, "once", "text/plain", None)
    assert _snapshot(store) == before


def test_an_audience_check_sees_the_members_and_may_refuse(store: Store) -> None:
    store.lists.create("team", ["bob", "carol"], 1)
    seen: list[list[str]] = []

    def refuse(members: object) -> None:
        seen.append([c.name for c in members])  # type: ignore[attr-defined]
        raise ConfigError("not for this audience")

    before = _snapshot(store)
    with pytest.raises(ConfigError, match="audience"):
        store.lists.queue_text("team", new_id(), 1, "x", "text/plain", None, audience=refuse)
    assert seen == [["bob", "carol"]]
    assert _snapshot(store) == before


def test_a_failure_midway_queues_no_copy(store: Store) -> None:
    store.lists.create("team", ["bob", "carol", "dave"], 1)
    real = store.outbox.queue_text
    calls = 0

    def fail_third(*args: object, **kwargs: object) -> int | None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ConfigError("the disk filled")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    before = _snapshot(store)
    with (
        mock.patch.object(store.outbox, "queue_text", fail_third),
        pytest.raises(ConfigError, match="disk"),
    ):
        store.lists.queue_text("team", new_id(), 1, "x", "text/plain", None)
    assert _snapshot(store) == before


def test_a_file_to_a_list_is_one_encrypted_copy_per_member(store: Store, tmp_path: Path) -> None:
    store.lists.create("team", ["bob", "carol"], 1)
    source = tmp_path / "plan.pdf"
    source.write_bytes(os.urandom(10_000))
    send_id = new_id()
    send, offers = store.lists.queue_file("team", send_id, 5, "plan.pdf", source, 1 << 20)
    assert send.kind == Kind.FILE
    assert [o.id for o in offers] == [c.message_id for c in send.copies]
    assert {o.size for o in offers} == {10_000}
    for copy in send.copies:
        (pending,) = store.outbox.pending(copy.contact_id, 10)
        assert pending.file is not None
        assert pending.file.name == "plan.pdf"
    assert store.integrity_check() == []
    # Again under the same id: nothing more; with another file: refused.
    assert store.lists.queue_file("team", send_id, 6, "plan.pdf", source, 1 << 20) == (send, [])
    other = tmp_path / "other.pdf"
    other.write_bytes(b"other")
    with pytest.raises(ConfigError, match="already another send"):
        store.lists.queue_file("team", send_id, 6, "plan.pdf", other, 1 << 20)
    with pytest.raises(ConfigError, match="another kind"):
        store.lists.queue_text("team", send_id, 6, "x", "text/plain", None)


def test_a_file_too_large_for_a_list_leaves_no_copy(store: Store, tmp_path: Path) -> None:
    store.lists.create("team", ["bob", "carol"], 1)
    source = tmp_path / "big.bin"
    source.write_bytes(b"x" * 100)
    before = _snapshot(store)
    with pytest.raises(OnionpostError):
        store.lists.queue_file("team", new_id(), 5, "big.bin", source, 50)
    assert _snapshot(store) == before
    assert list((tmp_path / "files").iterdir()) == []
    store.lists.create("empty", [], 1)
    with pytest.raises(ConfigError, match="no members"):
        store.lists.queue_file("empty", new_id(), 5, "big.bin", source, 500)


def test_the_latest_sends_are_shown_newest_first_and_bounded(store: Store) -> None:
    store.lists.create("team", ["bob"], 1)
    ids = [new_id() for _ in range(limits.MAX_LIST_SENDS_SHOWN + 3)]
    for n, send_id in enumerate(ids):
        store.lists.queue_text("team", send_id, 100 + n, f"#{n}", "text/plain", None)
    shown = store.lists.sends("team")
    assert [s.id for s in shown] == ids[::-1][: limits.MAX_LIST_SENDS_SHOWN]
    assert store.lists.sends("team", limit=2) == shown[:2]


def test_lists_survive_a_reopen_and_deleting_one_forgets_its_sends(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        add_contact(store, "bob")
        store.lists.create("team", ["bob"], 1)
        send = store.lists.queue_text("team", new_id(), 2, "x", "text/plain", None).send
    with open_store(tmp_path) as store:
        assert [c.name for c in store.lists.show("team").members] == ["bob"]
        assert store.lists.send(send.id) == send
        store.lists.delete("team")
        with pytest.raises(NotFoundError):
            store.lists.send(send.id)
        # The copy is still a message.
        assert store.messages.message(send.copies[0].message_id).body == "x"
        assert store.integrity_check() == []
