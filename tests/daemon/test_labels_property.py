"""Property: over a real store and the daemon's label enforcement, no
sequence of receives, sends, forwards, limits and exports leaves a copy in
the store with a lower label than its source, or a TLP:RED message sent to
anyone outside its audience."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from onionpost.daemon import _labels
from onionpost.errors import LabelError
from onionpost.proto.address import OnionAddress
from onionpost.proto.labels import LabelPolicy, Scheme, at_most
from onionpost.store import Direction, Store

POLICY = LabelPolicy.build(
    schemes=[Scheme("ACME", ("INTERNAL", "SENSITIVE"), frozenset({"LES"}))],
    organisation=None,
)
LABELS = [
    "TLP:CLEAR",
    "TLP:GREEN",
    "TLP:AMBER",
    "TLP:AMBER+STRICT",
    "TLP:RED",
    "CUI",
    "CUI//SP-CTI",
    "CUI//SP-CTI//NOFORN",
    "ACME:INTERNAL",
    "ACME:SENSITIVE//LES",
    "NATO:SECRET",  # unknown here: fails closed
]
PEOPLE = ["alice", "carol", "dave"]

labels = st.sampled_from(LABELS)
people = st.sampled_from(PEOPLE)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("receive"), people, labels),
        st.tuples(st.just("send"), people, labels),
        st.tuples(st.just("forward"), st.integers(0, 50), people, st.none() | labels),
        st.tuples(st.just("limit"), people, st.none() | labels),
        st.tuples(st.just("export"), st.integers(0, 50)),
    ),
    min_size=1,
    max_size=30,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(operations)
def test_no_operation_sequence_lowers_a_label_or_lets_red_out(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = Store.open(root / "store.sqlite", root / "files", bytes(range(32)))
        try:
            _run(store, ops)
        finally:
            store.close()


def _run(store: Store, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    ids = {
        name: store.contacts.add_contact(name, OnionAddress(os.urandom(32)), os.urandom(32), 1).id
        for name in PEOPLE
    }
    # Every message bob holds (received or sent): its id, direction and contact.
    held: list[tuple[bytes, Direction, str]] = []
    # What each forward made: (copy id, source id, source direction, source contact).
    copies: list[tuple[bytes, bytes, Direction, str]] = []
    now = 10
    for op in ops:
        now += 1
        kind = op[0]
        if kind == "receive":
            _, sender, label = op
            message_id = os.urandom(16)
            # The wire does not check a label's syntax: an unknown one is kept as it came.
            store.messages.store_text(
                ids[sender], message_id, now, "x", "text/plain", now, label=label
            )
            held.append((message_id, Direction.IN, sender))
        elif kind == "send":
            _, to, text = op
            try:
                label = POLICY.label(text)
                _labels.check_send(store, POLICY, ids[to], to, label)
            except LabelError:
                continue
            message_id = os.urandom(16)
            store.outbox.queue_text(
                ids[to], message_id, now, "y", "text/plain", None, label=label.text
            )
            held.append((message_id, Direction.OUT, to))
        elif kind == "forward":
            _, pick, to, text = op
            if not held:
                continue
            source_id, direction, counterparty = held[pick % len(held)]
            source = store.messages.message(source_id, contact_id=ids[counterparty])
            try:
                new = _labels.forward_label(store, POLICY, source, (ids[to], to), text)
            except LabelError:
                continue
            message_id = os.urandom(16)
            store.outbox.queue_text(
                ids[to], message_id, now, "z", "text/plain", None, label=new.text
            )
            held.append((message_id, Direction.OUT, to))
            copies.append((message_id, source_id, direction, counterparty))
        elif kind == "limit":
            _, name, text = op
            try:
                _labels.set_max_label(store, POLICY, name, [] if text is None else [text])
            except LabelError:
                continue
        else:
            _, pick = op
            if held:
                message_id, _direction, counterparty = held[pick % len(held)]
                stored = store.messages.message(message_id, contact_id=ids[counterparty])
                try:
                    _labels.check_export(POLICY, [stored])
                except LabelError:
                    assert stored.label in ("TLP:RED", "NATO:SECRET")
                else:
                    assert stored.label not in ("TLP:RED", "NATO:SECRET")
    # What the store holds, read back: no copy below its source, no RED outside.
    for copy_id, source_id, _direction, counterparty in copies:
        source = store.messages.message(source_id, contact_id=ids[counterparty])
        (copy,) = store.messages.messages_with_id(copy_id)
        if source.label:
            assert at_most(POLICY.labels.parse(source.label), POLICY.labels.parse(copy.label))
        if source.label == "TLP:RED":
            assert copy.contact == counterparty  # back to its audience only
        # A source below RED raised to RED by the forward is a new RED message
        # of ours to the recipient named (spec.md §5.10, forward_via): any contact.
