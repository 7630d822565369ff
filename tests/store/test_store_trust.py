"""Trust anchors and trust alarms in the store (schema 8, trust.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _storekit import open_store

from onionpost.errors import ConfigError
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
