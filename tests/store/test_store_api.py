"""The store's API: contacts, the outbox state table, exactly-once inbox, transactions."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _storekit import add_contact, new_id, open_store

from onionpost.daemon.delivery._views import wire_record
from onionpost.errors import (
    ConfigError,
    NotFoundError,
    StoreError,
    UnknownContactError,
)
from onionpost.names import contact_name_problem
from onionpost.proto.address import OnionAddress
from onionpost.proto.evidence import Entry
from onionpost.proto.messages import Text
from onionpost.store import (
    INCOMING_TRANSITIONS,
    OUTGOING_TRANSITIONS,
    Direction,
    Kind,
    State,
    Store,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path) as opened:
        yield opened


# -- contacts -----------------------------------------------------------------------


def test_contacts_add_list_find_remove(store: Store) -> None:
    bob = add_contact(store, "bob", now=5)
    carol = add_contact(store, "Carol")
    assert bob.name == "bob"
    assert bob.added_ms == 5
    assert (bob.last_seen_ms, bob.last_success_ms, bob.failures) == (None, None, 0)
    assert [c.name for c in store.contacts.all()] == ["bob", "Carol"]
    assert store.contacts.contact("BOB") == bob  # names match in any letter case
    assert store.contacts.contact_by_address(carol.address) == carol
    assert store.contacts.contact_by_address(OnionAddress(bytes(32))) is None
    assert store.contacts.remove_contact("Bob") == bob
    assert [c.name for c in store.contacts.all()] == ["Carol"]
    assert store.contacts.contact_by_address(bob.address) is None
    with pytest.raises(UnknownContactError, match="unknown contact 'bob'"):
        store.contacts.contact("bob")
    with pytest.raises(UnknownContactError):
        store.contacts.remove_contact("bob")


def test_contact_names_and_addresses_are_unique(store: Store) -> None:
    bob = add_contact(store, "bob")
    with pytest.raises(ConfigError, match="a contact named 'bob' already exists"):
        add_contact(store, "BOB")
    with pytest.raises(ConfigError, match="already a contact, named 'bob'"):
        store.contacts.add_contact("robert", bob.address, bytes(32), 1)
    # Once removed, both are free again; the old row keeps its history.
    store.contacts.remove_contact("bob")
    again = store.contacts.add_contact("bob", bob.address, bytes(32), 2)
    assert again.id != bob.id


@pytest.mark.parametrize("name", ["", "  ", "x" * 65, "tab\there", "bidi\u202e"])
def test_bad_contact_names(store: Store, name: str) -> None:
    # The rule of onionpost.names, the same as a card's name.
    with pytest.raises(ConfigError) as caught:
        add_contact(store, name)
    assert str(caught.value) == f"a contact name {contact_name_problem(name)}"


def test_an_onion_address_always_names_the_contact_at_it(store: Store) -> None:
    """A name that is an address (a hostile card's, by ``contact add`` without
    ``--name``) would take the place of the contact at that address in every
    command that names a contact by its address: refused as a name; and an
    address looked up means the contact at it, whatever another is called (a
    store from before the rule)."""
    alice = add_contact(store, "alice")
    carol = add_contact(store, "carol")
    spelled = (
        str(alice.address),
        str(alice.address).upper(),
        str(alice.address).removesuffix(".onion"),
        f" {alice.address} ",
    )
    for name in spelled:
        with pytest.raises(ConfigError, match="a contact name cannot be an onion address"):
            add_contact(store, name)
        with pytest.raises(ConfigError, match="a contact name cannot be an onion address"):
            store.contacts.rename_contact("carol", name, 5)
    assert {c.name for c in store.contacts.all()} == {"alice", "carol"}
    # A name so made before the rule: the address still means alice.
    store._database.conn.execute(
        "UPDATE contacts SET name = ? WHERE id = ?", (str(alice.address), carol.id)
    )
    for name in spelled:
        assert store.contacts.contact(name).id == alice.id
    team = store.lists.create("team", [str(alice.address)], 6)
    assert [m.id for m in team.members] == [alice.id]
    store.contacts.mark_verified(str(alice.address), "12345", 7)
    assert set(store.contacts.verified()) == {alice.id}
    assert store.contacts.rename_contact(str(alice.address), "alicia", 8).id == alice.id
    assert store.contacts.remove_contact(str(alice.address)).id == alice.id
    # Gone, the address names nobody, and never the one so named.
    with pytest.raises(UnknownContactError):
        store.contacts.contact(str(alice.address))
    assert [c.id for c in store.contacts.all()] == [carol.id]


def test_names_that_look_the_same_are_the_same_name(store: Store) -> None:
    """A name is kept in NFC without the spaces around it: a decomposed
    'C' + combining cedilla is the 'Ç' another contact has, and ' bob ' is
    'bob'; either way it names the same contact."""
    import unicodedata

    composed = "\u00c7arol \U0001f54a"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    carol = add_contact(store, decomposed)
    assert carol.name == composed
    assert store.contacts.contact(decomposed).id == carol.id
    with pytest.raises(ConfigError, match="already exists"):
        add_contact(store, composed)
    bob = add_contact(store, "  bob  ")
    assert bob.name == "bob"
    assert store.contacts.contact(" bob ").id == bob.id
    with pytest.raises(ConfigError, match="already exists"):
        store.contacts.rename_contact("bob", f" {decomposed}", 2)
    assert store.contacts.rename_contact(" bob", "robert ", 3).name == "robert"
    team = store.lists.create("team", [decomposed, " robert"], 4)
    assert {c.id for c in team.members} == {carol.id, bob.id}


def test_a_contact_renamed_keeps_its_row_and_is_recorded(store: Store) -> None:
    bob = add_contact(store, "bob")
    carol = add_contact(store, "carol")
    message_id = new_id()
    store.outbox.queue_text(bob.id, message_id, 1, "waiting", "text/plain", None)
    store.messages.store_text(bob.id, new_id(), 2, "from bob", "text/plain", 3)
    store.contacts.mark_verified("bob", "12345", 4)
    size = store.evidence.size()
    renamed = store.contacts.rename_contact("BOB", "robert", 10)
    assert (renamed.id, renamed.name, renamed.address) == (bob.id, "robert", bob.address)
    assert store.contacts.contact("robert").id == bob.id
    with pytest.raises(UnknownContactError):
        store.contacts.contact("bob")
    # Its messages show the new name; what waits for it still does.
    assert {m.contact for m in store.messages.messages_with_id(message_id)} == {"robert"}
    assert [m.contact for m in store.messages.inbox()] == ["robert"]
    assert store.outbox.outbox_depth() == 1
    assert store.contacts.verified() == {bob.id: 4}
    # Recorded: the new name, the contact's address.
    assert store.evidence.size() == size + 1
    ((_, data),) = store.evidence.entries(size, 1)
    entry = Entry.decode(data)
    assert (entry.event.name, entry.time_ms, entry.detail) == ("CONTACT_RENAMED", 10, "robert")
    assert entry.counterparty == str(bob.address)
    # Another letter case of its own name is a rename; the same name is nothing.
    assert store.contacts.rename_contact("robert", "Robert", 11).name == "Robert"
    assert store.contacts.rename_contact("Robert", "Robert", 12).name == "Robert"
    assert store.evidence.size() == size + 2
    # Refused, nothing changed: another contact's name, a bad name, no such contact.
    with pytest.raises(ConfigError, match="a contact named 'carol' already exists"):
        store.contacts.rename_contact("robert", "CAROL", 13)
    with pytest.raises(ConfigError, match="a contact name is empty"):
        store.contacts.rename_contact("robert", "  ", 13)
    with pytest.raises(UnknownContactError):
        store.contacts.rename_contact("bob", "bobby", 13)
    assert {c.name for c in store.contacts.all()} == {"Robert", "carol"}
    assert store.contacts.contact("carol") == carol
    assert store.evidence.size() == size + 2


def test_note_contact_seen(store: Store) -> None:
    bob = add_contact(store)
    store.contacts.note_contact_seen(bob.id, 10, success=False)
    store.contacts.note_contact_seen(bob.id, 20, success=False)
    seen = store.contacts.contact("bob")
    assert (seen.last_seen_ms, seen.last_success_ms, seen.failures) == (20, None, 2)
    store.contacts.note_contact_seen(bob.id, 30, success=True)
    seen = store.contacts.contact("bob")
    assert (seen.last_seen_ms, seen.last_success_ms, seen.failures) == (30, 30, 0)


# -- the outbox ---------------------------------------------------------------------


def test_queue_text_and_pending(store: Store) -> None:
    bob = add_contact(store)
    carol = add_contact(store, "carol")
    ids = [new_id() for _ in range(3)]
    for n, message_id in enumerate(ids):
        store.outbox.queue_text(bob.id, message_id, 100 - n, f"body {n}", "text/plain", None)
    store.outbox.queue_text(carol.id, new_id(), 1, "for carol", "text/plain", None)
    pending = store.outbox.pending(bob.id, 10)
    # Oldest first means queue order, whatever the clocks said.
    assert [o.id for o in pending] == ids
    first = pending[0]
    assert first.kind == Kind.TEXT
    assert first.state == State.QUEUED
    assert (str(first.kind), str(first.state)) == ("text", "queued")  # JSON-ready
    assert (first.body, first.content_type, first.created_ms) == ("body 0", "text/plain", 100)
    assert first.file is None
    assert wire_record(first) == Text(ids[0], 100, "body 0", "text/plain")
    assert [o.id for o in store.outbox.pending(bob.id, 2)] == ids[:2]
    assert store.outbox.outbox_depth() == 4
    assert store.outbox.outbox_depth(bob.id) == 3
    assert store.outbox.outbox_depth(carol.id) == 1
    store.contacts.remove_contact("carol")
    assert store.outbox.outbox_depth() == 3


def test_outgoing_states_move_only_forward(store: Store) -> None:
    bob = add_contact(store)
    a, b, c = new_id(), new_id(), new_id()
    for message_id in (a, b, c):
        store.outbox.queue_text(bob.id, message_id, 1, "x", "text/plain", None)
    assert store.outbox.mark_sent([a, b], 10) == [a, b]
    assert [o.state for o in store.outbox.pending(bob.id, 10)] == [
        State.SENT,
        State.SENT,
        State.QUEUED,
    ]
    # The ack may overtake our own bookkeeping: delivered straight from queued.
    assert store.outbox.mark_delivered([a, c], 20) == [a, c]
    assert [o.id for o in store.outbox.pending(bob.id, 10)] == [b]
    # A resend after a reconnect does not move a delivered message back.
    assert store.outbox.mark_sent([a, b], 30) == []
    assert store.messages.message(a).state == State.DELIVERED
    assert store.messages.message(a).sent_ms == 10
    # Delivered straight from queued: shown sent at the ack, not never.
    assert store.messages.message(c).sent_ms == 20
    assert store.messages.mark_read([a], 40) == [a]
    assert store.outbox.mark_delivered([a], 50) == []
    read = store.messages.message(a)
    assert (read.state, read.delivered_ms, read.read_ms) == (State.READ, 20, 40)
    assert store.messages.mark_read([b], 60) == [b]  # read implies delivered
    assert store.messages.message(b).delivered_ms == 60
    assert store.messages.message(b).sent_ms == 10  # its own sent time kept
    assert store.outbox.last_delivery() == 60
    assert store.outbox.outbox_depth() == 0


def test_last_delivery_is_the_latest_delivered_ms_read_once_then_kept(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        a, b, c = new_id(), new_id(), new_id()
        for message_id in (a, b, c):
            store.outbox.queue_text(bob.id, message_id, 1, "x", "text/plain", None)
        assert store.outbox.last_delivery() is None
        store.outbox.mark_delivered([a], 20, contact_id=bob.id)
        assert store.outbox.last_delivery() == 20
        # A receipt for what was acked already: delivered_ms stays (20).
        store.messages.mark_read([a], 30, contact_id=bob.id)
        assert store.outbox.last_delivery() == 20
        # A receipt before its ack: delivered now.
        store.messages.mark_read([b], 40, contact_id=bob.id)
        assert store.outbox.last_delivery() == 40
        # An ack that moves nothing (already delivered) changes nothing.
        store.outbox.mark_delivered([a, b], 50, contact_id=bob.id)
        assert store.outbox.last_delivery() == 40
        # An earlier clock (it went back) does not lower it: the latest stays.
        store.outbox.mark_delivered([c], 35, contact_id=bob.id)
        assert store.outbox.last_delivery() == 40
        assert store.outbox.last_delivery() == max(
            store.messages.message(i).delivered_ms or 0 for i in (a, b, c)
        )
    with open_store(tmp_path) as store:  # read from the store again: the same
        assert store.outbox.last_delivery() == 40
        d = new_id()
        store.outbox.queue_text(store.contacts.all()[0].id, d, 1, "x", "text/plain", None)
        store.outbox.mark_delivered([d], 90)  # before anyone asked: combined with the read
        assert store.outbox.last_delivery() == 90


def test_the_transition_table_is_what_the_store_enforces(store: Store) -> None:
    bob = add_contact(store)
    marks: dict[State, Callable[[list[bytes], int], list[bytes]]] = {
        State.SENT: store.outbox.mark_sent,
        State.DELIVERED: store.outbox.mark_delivered,
        State.READ: store.messages.mark_read,
        State.REFUSED: lambda ids, now: store.outbox.mark_refused(ids, now, 0, contact_id=bob.id),
    }
    reach = {
        State.QUEUED: [],
        State.SENT: [State.SENT],
        State.DELIVERED: [State.DELIVERED],
        State.READ: [State.READ],
        State.REFUSED: [State.REFUSED],
    }
    # Expiry is by time, not by id: test_expiry and test_store_bounds cover it.
    assert set(reach) | {State.EXPIRED} == set(OUTGOING_TRANSITIONS)
    for start, path in reach.items():
        for target, mark in marks.items():
            message_id = new_id()
            store.outbox.queue_text(bob.id, message_id, 1, "x", "text/plain", None)
            for step in path:
                marks[step]([message_id], 1)
            changed = mark([message_id], 2)
            assert (changed == [message_id]) == (target in OUTGOING_TRANSITIONS[start]), (
                start,
                target,
            )


def test_storage_md_lists_the_transition_tables() -> None:
    """storage.md §5.2 holds these tables as generated here (STYLE: one definition)."""
    rows = ["| direction | from | may move to |", "|---|---|---|"]
    for direction, table in (("out", OUTGOING_TRANSITIONS), ("in", INCOMING_TRANSITIONS)):
        for state, targets in table.items():
            ordered = [f"`{s.value}`" for s in State if s in targets]
            rows.append(f"| {direction} | `{state.value}` | {', '.join(ordered) or '(final)'} |")
    spec = (Path(__file__).resolve().parents[2] / "protocol-spec" / "storage.md").read_text()
    assert "\n".join(rows) + "\n" in spec


def test_expiry(store: Store) -> None:
    bob = add_contact(store)
    soon, later, never, delivered = new_id(), new_id(), new_id(), new_id()
    store.outbox.queue_text(bob.id, soon, 1, "x", "text/plain", 100)
    store.outbox.queue_text(bob.id, later, 1, "x", "text/plain", 200)
    store.outbox.queue_text(bob.id, never, 1, "x", "text/plain", None)
    store.outbox.queue_text(bob.id, delivered, 1, "x", "text/plain", 100)
    store.outbox.mark_sent([soon], 50)
    store.outbox.mark_delivered([delivered], 60)
    assert store.outbox.expire(99) == []
    assert store.outbox.expire(150) == [soon]
    assert store.outbox.expire(150) == []
    assert sorted(store.outbox.expire(10**6)) == sorted([later])
    assert [o.id for o in store.outbox.pending(bob.id, 10)] == [never]
    assert store.messages.message(soon).state == State.EXPIRED
    # An ack that arrives after all is still the truth.
    assert store.outbox.mark_delivered([soon], 300) == [soon]
    assert store.outbox.mark_sent([later], 300) == []


def test_marks_can_be_scoped_to_the_acking_contact(store: Store) -> None:
    bob = add_contact(store)
    carol = add_contact(store, "carol")
    to_bob = new_id()
    store.outbox.queue_text(bob.id, to_bob, 1, "x", "text/plain", None)
    assert store.outbox.mark_delivered([to_bob], 2, contact_id=carol.id) == []
    assert store.outbox.mark_delivered([to_bob], 2, contact_id=bob.id) == [to_bob]


def test_queue_text_refusals(store: Store) -> None:
    bob = add_contact(store)
    carol = add_contact(store, "carol")
    message_id = new_id()
    store.outbox.queue_text(bob.id, message_id, 1, "x", "text/plain", None)
    with pytest.raises(ConfigError, match="already another message's"):
        store.outbox.queue_text(carol.id, message_id, 1, "x", "text/plain", None)
    with pytest.raises(ConfigError, match="already another message's"):
        store.outbox.queue_text(bob.id, message_id, 1, "y", "text/plain", None)
    with pytest.raises(ConfigError, match="already another message's"):
        store.outbox.queue_text(bob.id, message_id, 1, "x", "text/markdown", None)
    with pytest.raises(ConfigError, match="16 bytes"):
        store.outbox.queue_text(bob.id, b"short", 1, "x", "text/plain", None)
    with pytest.raises(ConfigError, match="no contact"):
        store.outbox.queue_text(999, new_id(), 1, "x", "text/plain", None)
    store.contacts.remove_contact("carol")
    with pytest.raises(ConfigError, match="no contact"):
        store.outbox.queue_text(carol.id, new_id(), 1, "x", "text/plain", None)
    assert len(store.outbox.pending(bob.id, 10)) == 1


def test_queue_text_is_idempotent_on_its_id(store: Store) -> None:
    # A send made again (its answer was lost) is the message already queued.
    bob = add_contact(store)
    message_id = new_id()
    seq = store.outbox.queue_text(bob.id, message_id, 1, "once", "text/plain", None)
    assert seq is not None
    assert store.outbox.queue_text(bob.id, message_id, 2, "once", "text/plain", None) is None
    (pending,) = store.outbox.pending(bob.id, 10)
    assert (pending.id, pending.body, pending.created_ms, pending.seq) == (
        message_id,
        "once",
        1,
        seq,
    )
    store.outbox.mark_delivered([message_id], 3, contact_id=bob.id)
    assert store.outbox.queue_text(bob.id, message_id, 4, "once", "text/plain", None) is None
    assert store.outbox.pending(bob.id, 10) == []


def test_queue_file_is_idempotent_on_its_id(store: Store, tmp_path: Path) -> None:
    bob = add_contact(store)
    carol = add_contact(store, "carol")
    source = tmp_path / "report.pdf"
    source.write_bytes(b"%PDF" * 50_000)
    file_id = new_id()
    first = store.outbox.queue_file(bob.id, file_id, 1, "report.pdf", source, 2**30)
    again = store.outbox.queue_file(bob.id, file_id, 2, "report.pdf", source, 2**30)
    assert again == first
    assert [o.id for o in store.outbox.pending(bob.id, 10)] == [file_id]
    with pytest.raises(ConfigError, match="already another message's"):
        store.outbox.queue_file(carol.id, file_id, 2, "report.pdf", source, 2**30)
    with pytest.raises(ConfigError, match="already another message's"):
        store.outbox.queue_file(bob.id, file_id, 2, "other.pdf", source, 2**30)
    source.write_bytes(b"%PDF" * 50_001)
    with pytest.raises(ConfigError, match="already another message's"):
        store.outbox.queue_file(bob.id, file_id, 2, "report.pdf", source, 2**30)
    with pytest.raises(ConfigError, match="already another message's"):
        store.outbox.queue_text(bob.id, file_id, 2, "report.pdf", "text/plain", None)
    assert store.integrity_check() == []


def test_queued_messages_survive_a_restart(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store)
        message_id = new_id()
        store.outbox.queue_text(bob.id, message_id, 1, "durable", "text/plain", None)
    with open_store(tmp_path) as store:
        (pending,) = store.outbox.pending(bob.id, 10)
        assert (pending.id, pending.body) == (message_id, "durable")


# -- the inbox ----------------------------------------------------------------------


def test_store_text_is_exactly_once(store: Store) -> None:
    bob = add_contact(store)
    message_id = new_id()
    assert store.messages.store_text(bob.id, message_id, 5, "hello", "text/plain", 10) is True
    assert store.messages.store_text(bob.id, message_id, 5, "hello", "text/plain", 11) is False
    assert store.messages.store_text(bob.id, message_id, 5, "changed?", "text/plain", 12) is False
    (stored,) = store.messages.inbox()
    assert (stored.body, stored.received_ms, stored.contact, stored.contact_id) == (
        "hello",
        10,
        "bob",
        bob.id,
    )
    assert stored.direction == Direction.IN
    assert stored.state == State.RECEIVED


def test_the_same_id_from_two_contacts_is_two_messages(store: Store) -> None:
    bob = add_contact(store)
    carol = add_contact(store, "carol")
    message_id = new_id()
    assert store.messages.store_text(bob.id, message_id, 1, "from bob", "text/plain", 1)
    assert store.messages.store_text(carol.id, message_id, 1, "from carol", "text/plain", 2)
    assert [m.body for m in store.messages.inbox()] == ["from bob", "from carol"]
    assert store.messages.message(message_id, contact_id=carol.id).body == "from carol"


def test_messages_with_id_lists_every_contact_s(store: Store) -> None:
    bob = add_contact(store)
    carol = add_contact(store, "carol")
    shared, ours = new_id(), new_id()
    store.messages.store_text(bob.id, shared, 1, "from bob", "text/plain", 1)
    store.messages.store_text(carol.id, shared, 1, "from carol", "text/plain", 2)
    store.outbox.queue_text(bob.id, ours, 1, "to bob", "text/plain", None)
    assert [(m.contact, m.body) for m in store.messages.messages_with_id(shared)] == [
        ("bob", "from bob"),
        ("carol", "from carol"),
    ]
    assert [m.direction for m in store.messages.messages_with_id(ours)] == [Direction.OUT]
    assert store.messages.messages_with_id(new_id()) == []


def test_inbox_seq_pages_and_follows(store: Store) -> None:
    bob = add_contact(store)
    ids = [new_id() for _ in range(5)]
    for n, message_id in enumerate(ids[:3]):
        store.messages.store_text(bob.id, message_id, n, f"m{n}", "text/plain", n)
        store.outbox.queue_text(
            bob.id, new_id(), n, "outgoing, not in the inbox", "text/plain", None
        )
    first = store.messages.inbox(limit=2)
    assert [m.id for m in first] == ids[:2]
    rest = store.messages.inbox(after=first[-1].seq)
    assert [m.id for m in rest] == ids[2:3]
    last = rest[-1].seq
    assert store.messages.inbox(after=last) == []
    for n, message_id in enumerate(ids[3:], start=3):
        store.messages.store_text(bob.id, message_id, n, f"m{n}", "text/plain", n)
    followed = store.messages.inbox(after=last)
    assert [m.id for m in followed] == ids[3:]
    seqs = [m.seq for m in store.messages.inbox()]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)


def test_mark_read_incoming_and_directions(store: Store) -> None:
    bob = add_contact(store)
    incoming, outgoing = new_id(), new_id()
    store.messages.store_text(bob.id, incoming, 1, "in", "text/plain", 1)
    store.outbox.queue_text(bob.id, outgoing, 1, "out", "text/plain", None)
    assert store.messages.mark_read([incoming, outgoing], 5, direction=Direction.IN) == [incoming]
    assert store.messages.message(incoming).state == State.READ
    assert store.messages.message(outgoing).state == State.QUEUED
    assert store.messages.mark_read([incoming, outgoing], 6) == [outgoing]
    assert store.messages.message(incoming).read_ms == 5


def test_message_lookup(store: Store) -> None:
    bob = add_contact(store)
    outgoing = new_id()
    store.outbox.queue_text(bob.id, outgoing, 7, "out", "text/markdown", 99)
    stored = store.messages.message(outgoing)
    assert (stored.direction, stored.kind, stored.body, stored.content_type) == (
        Direction.OUT,
        Kind.TEXT,
        "out",
        "text/markdown",
    )
    with pytest.raises(NotFoundError, match="no message"):
        store.messages.message(new_id())


def test_records_never_show_bodies(store: Store) -> None:
    bob = add_contact(store)
    secret = "the launch code is 0000"
    message_id = new_id()
    store.outbox.queue_text(bob.id, message_id, 1, secret, "text/plain", None)
    store.messages.store_text(bob.id, new_id(), 1, secret, "text/plain", 1)
    records = [
        *store.outbox.pending(bob.id, 10),
        *store.messages.inbox(),
        store.messages.message(message_id),
    ]
    for record in records:
        assert secret not in repr(record)
        assert secret not in str(record)
    assert message_id.hex() in repr(store.messages.message(message_id))


def test_records_are_frozen(store: Store) -> None:
    bob = add_contact(store)
    store.outbox.queue_text(bob.id, new_id(), 1, "x", "text/plain", None)
    (outgoing,) = store.outbox.pending(bob.id, 1)
    with pytest.raises(AttributeError):
        outgoing.state = State.SENT  # type: ignore[misc]
    with pytest.raises(AttributeError):
        bob.name = "eve"  # type: ignore[misc]


# -- transactions -------------------------------------------------------------------


def test_a_transaction_groups_calls_and_rolls_back_as_one(store: Store) -> None:
    bob = add_contact(store)
    kept = [new_id() for _ in range(3)]
    with store.transaction():
        for message_id in kept:
            store.outbox.queue_text(bob.id, message_id, 1, "x", "text/plain", None)
        store.outbox.mark_sent(kept, 2)
    assert [o.state for o in store.outbox.pending(bob.id, 10)] == [State.SENT] * 3

    lost = new_id()

    def change_of_mind() -> None:
        with store.transaction():
            store.outbox.queue_text(bob.id, lost, 1, "x", "text/plain", None)
            store.outbox.mark_delivered(kept, 3)
            raise RuntimeError("the daemon changed its mind")

    with pytest.raises(RuntimeError):
        change_of_mind()
    assert [o.id for o in store.outbox.pending(bob.id, 10)] == kept
    with pytest.raises(NotFoundError):
        store.messages.message(lost)


def test_a_failed_call_inside_a_transaction_is_undone_alone(store: Store) -> None:
    bob = add_contact(store)
    first, second = new_id(), new_id()
    with store.transaction():
        store.outbox.queue_text(bob.id, first, 1, "x", "text/plain", None)
        with pytest.raises(ConfigError, match="already another message's"):
            store.outbox.queue_text(bob.id, first, 1, "again", "text/plain", None)
        store.outbox.queue_text(bob.id, second, 1, "y", "text/plain", None)
    assert [o.body for o in store.outbox.pending(bob.id, 10)] == ["x", "y"]


def test_calls_from_several_threads_are_serialised(store: Store) -> None:
    bob = add_contact(store)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(50):
                message_id = new_id()
                store.outbox.queue_text(bob.id, message_id, 1, "x", "text/plain", None)
                store.outbox.mark_delivered([message_id], 2)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.outbox.last_delivery() == 2
    assert store.outbox.outbox_depth() == 0


def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.close()
    store.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        store.contacts.all()


def test_an_ack_of_many_ids_moves_exactly_those_of_its_contact(store: Store) -> None:
    bob, carol = add_contact(store, "bob"), add_contact(store, "carol")
    to_bob = [new_id() for _ in range(1_200)]  # more than one statement's group
    to_carol = new_id()
    for i, message_id in enumerate(to_bob):
        store.outbox.queue_text(bob.id, message_id, i, "t", "text/plain", None)
    store.outbox.queue_text(carol.id, to_carol, 0, "t", "text/plain", None)
    # Bob acks all of his, carol's and one that does not exist; twice.
    acked = [*to_bob, to_carol, new_id()]
    changed = store.outbox.mark_delivered(acked, 5, contact_id=bob.id)
    assert sorted(changed) == sorted(to_bob)
    assert store.outbox.mark_delivered(acked, 6, contact_id=bob.id) == []
    assert store.outbox.pending(bob.id, 10) == []
    assert [p.id for p in store.outbox.pending(carol.id, 10)] == [to_carol]


def test_a_group_of_ids_is_moved_through_the_id_index(store: Store) -> None:
    """An Ack of many ids must not cost a scan of the whole outbox (it did: the
    planner scanned every outgoing message for an IN over json_each)."""
    from onionpost.store import _rows

    for direction, target in _rows._MARK:
        plan = store._db.execute(
            "EXPLAIN QUERY PLAN " + _rows.mark_group_sql(direction, target),
            {"now": 1, "ids": "[]", "allowed": "[]", "contact": 1},
        ).fetchall()
        assert "USING INDEX messages_id (id=? AND direction=?)" in plan[0][3], plan
