"""Trust anchors and trust alarms (schema 8), our endorsement, the lists and
checkpoints held, contacts' verdicts and policy (schema 11), the delegation
each list and checkpoint held came with (schema 16) in the store (trust.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _storekit import add_contact, open_store

from onionpost.errors import ConfigError
from onionpost.proto.address import OnionAddress
from onionpost.proto.evidence import Entry
from onionpost.proto.trust import Anchor, HybridSigner


def _anchor(agency: str) -> Anchor:
    key = HybridSigner.generate(f"{agency}/root").public
    return Anchor(agency, key.ed25519, key.mldsa65)


ACME, BRAVO = _anchor("acme"), _anchor("bravo")


def test_anchors_are_added_listed_found_and_removed(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        store.trust.add(BRAVO, 2)
        store.trust.add(ACME, 1)
    with open_store(tmp_path) as store:
        assert [(s.anchor, s.added_ms) for s in store.trust.all()] == [(ACME, 1), (BRAVO, 2)]
        for key in ("acme", ACME.fingerprint.hex(), ACME.to_text()):
            found = store.trust.find(key)
            assert found is not None
            assert found.anchor == ACME
        assert store.trust.find("charlie") is None
        assert store.trust.remove(ACME) is True
        assert store.trust.remove(ACME) is False
        assert [s.anchor for s in store.trust.all()] == [BRAVO]


def test_a_duplicate_anchor_or_agency_is_refused_and_nothing_stored(tmp_path: Path) -> None:
    other_acme = _anchor("acme")
    with open_store(tmp_path) as store:
        store.trust.add(ACME, 1)
        with pytest.raises(ConfigError, match="installed already"):
            store.trust.add(ACME, 2)
        with pytest.raises(ConfigError, match="another anchor of agency 'acme'"):
            store.trust.add(other_acme, 3)
        assert [(s.anchor, s.added_ms) for s in store.trust.all()] == [(ACME, 1)]


def test_alarms_are_kept(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        alarm = store.trust.raise_alarm("fork", ACME.fingerprint, b"first", b"second", 5)
    with open_store(tmp_path) as store:
        assert store.trust.alarms() == [alarm]


def test_the_same_alarm_is_recorded_once(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        first = store.trust.raise_alarm("fork", ACME.fingerprint, b"a", b"b", 5)
        again = store.trust.raise_alarm("fork", ACME.fingerprint, b"a", b"b", 9)
        other = store.trust.raise_alarm("fork", ACME.fingerprint, b"a", b"c", 9)
        assert again == first
        assert store.trust.alarms() == [first, other]


def test_our_endorsement_views_and_verdicts_survive_a_reopen(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        assert store.trust.own() is None
        store.trust.install_own(ACME.fingerprint, b"proof one", 1)
        store.trust.install_own(ACME.fingerprint, b"proof two", 2)  # replaces it
        store.trust.hold(ACME.fingerprint, b"list", None)
        store.trust.hold(BRAVO.fingerprint, None, b"checkpoint")
        store.trust.hold(ACME.fingerprint, b"newer list", b"checkpoint")
        carol, dave = add_contact(store, "carol"), add_contact(store, "dave")
        store.trust.set_endorsement(carol.id, b"p", "endorsed", "endorsed by acme", 3)
        store.trust.set_endorsement(carol.id, b"p", "refused", "refused: revoked", 4)
        store.trust.set_required(carol.id, True)
        store.trust.set_required(dave.id, False)
        store.trust.set_required(dave.id, None)  # back to the config's
    with open_store(tmp_path) as store:
        assert store.trust.own() == (ACME.fingerprint, b"proof two")
        assert store.trust.held() == {
            ACME.fingerprint: (b"newer list", b"checkpoint"),
            BRAVO.fingerprint: (None, b"checkpoint"),
        }
        (verdict,) = store.trust.endorsements().values()
        assert (verdict.contact_id, verdict.status, verdict.describe, verdict.checked_ms) == (
            carol.id,
            "refused",
            "refused: revoked",
            4,
        )
        assert store.trust.required() == {carol.id: True}


def test_each_list_and_checkpoint_held_keeps_the_delegation_it_came_with(
    tmp_path: Path,
) -> None:
    """Schema 16: a statement new in a hold is kept with the delegation given;
    one held already keeps its own, whatever the new one came with."""
    with open_store(tmp_path) as store:
        store.trust.hold(ACME.fingerprint, b"list 1", b"checkpoint 1", delegation=b"d1")
        assert store.trust.held_delegations() == [b"d1"]
        # A newer checkpoint under another key, the list kept: two delegations.
        store.trust.hold(ACME.fingerprint, b"list 1", b"checkpoint 2", delegation=b"d2")
        assert sorted(store.trust.held_delegations()) == [b"d1", b"d2"]
        # A newer list under a third, the checkpoint kept: d1 signed nothing held.
        store.trust.hold(ACME.fingerprint, b"list 2", b"checkpoint 2", delegation=b"d3")
        assert sorted(store.trust.held_delegations()) == [b"d2", b"d3"]
        store.trust.hold(BRAVO.fingerprint, None, b"checkpoint", delegation=b"d4")
        store.trust.hold(BRAVO.fingerprint, b"list", b"checkpoint")  # none came with it
    with open_store(tmp_path) as store:
        assert sorted(store.trust.held_delegations()) == [b"d2", b"d3", b"d4"]
        assert store.trust.held() == {
            ACME.fingerprint: (b"list 2", b"checkpoint 2"),
            BRAVO.fingerprint: (b"list", b"checkpoint"),
        }
        # What is no longer held takes its delegation with it.
        store.trust.hold(ACME.fingerprint, None, b"checkpoint 2", delegation=b"d5")
        assert sorted(store.trust.held_delegations()) == [b"d2", b"d4"]


def test_a_contact_moves_in_place_and_its_rotation_is_kept(tmp_path: Path) -> None:
    """Schema 15: the same row at its new address, its queued text with it, its
    safety number no longer compared, registered at our mailbox again."""
    new = OnionAddress(os.urandom(32))
    with open_store(tmp_path) as store:
        bob, carol = add_contact(store, "bob"), add_contact(store, "carol")
        store.contacts.mark_verified("bob", "12345", 2)
        store.mailbox.set_mailbox_registered(bob.id, True)
        store.mailbox.set_contact_mailbox(bob.id, OnionAddress(os.urandom(32)), 3)
        store.mailbox.mark_mailbox_told(bob.id, 2)
        text_id = os.urandom(16)
        store.outbox.queue_text(bob.id, text_id, 3, "hello", "text/plain", None)
        with pytest.raises(ConfigError, match="already a contact"):
            store.contacts.move(bob.id, carol.address, os.urandom(32), 4)
        with pytest.raises(ConfigError, match="32 bytes"):
            store.contacts.move(bob.id, new, b"short", 4)
        with pytest.raises(ConfigError, match="no contact"):
            store.contacts.move(999, new, os.urandom(32), 4)
        key = os.urandom(32)
        moved = store.contacts.move(bob.id, new, key, 5)
        store.trust.record_rotation(bob.id, bob.address.public_key, "moved", 5)
        assert (moved.id, moved.name, moved.address, moved.client_auth_public) == (
            bob.id,
            "bob",
            new,
            key,
        )
        assert not moved.mailbox_registered
        assert (moved.mailbox, moved.mailbox_version, moved.mailbox_told) == (None, 0, 0)
        assert bob.id not in store.contacts.verified()
    with open_store(tmp_path) as store:
        assert store.contacts.contact_by_address(bob.address) is None
        assert store.contacts.contact("bob").address == new
        assert [o.id for o in store.outbox.pending(bob.id, 10)] == [text_id]
        rotation = store.trust.rotations()[bob.id]
        assert (rotation.old_address, rotation.describe) == (bob.address.public_key, "moved")
        # The evidence log says who stopped and who started being a contact.
        entries = [Entry.decode(data) for _, data in store.evidence.entries(0, 1000)]
        events = [(e.event.name, e.counterparty) for e in entries][-2:]
        assert events == [("CONTACT_REMOVED", str(bob.address)), ("CONTACT_ADDED", str(new))]


def test_our_rotation_and_who_was_told(tmp_path: Path) -> None:
    with open_store(tmp_path) as store:
        bob = add_contact(store, "bob")
        assert store.trust.own_rotation() is None
        store.trust.set_own_rotation(b"proof", bytes(32), 1)
        store.trust.mark_rotation_told(bob.id, 2)
        assert store.trust.rotation_told() == {bob.id}
    with open_store(tmp_path) as store:
        assert store.trust.own_rotation() == (b"proof", bytes(32))
        # The same move announced again (`trust rotate` run twice): bob,
        # told it, has moved and will not be told again; he stays counted.
        store.trust.set_own_rotation(b"proof", bytes(32), 3)
        assert store.trust.rotation_told() == {bob.id}
        store.trust.set_own_rotation(b"another", bytes(32), 3)  # a new move: nobody told
        assert store.trust.rotation_told() == frozenset()
