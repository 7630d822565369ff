"""The card bundle (trust.md §7.5): a card line and, on its own line, an
endorsement proof in base64url; read strictly, every bad input refused with
a CardError that names it."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onionpost.errors import CardError
from onionpost.home import (
    ENDORSEMENT_PREFIX,
    endorsement_line,
    parse_endorsement_line,
    split_card_bundle,
)
from onionpost.limits import MAX_TRUST_STAPLE_PART

CARD = "onionpost1:lQHEIA"  # the shape; the card itself is parsed elsewhere


def test_an_endorsement_line_round_trips() -> None:
    proof = bytes(range(256)) * 40
    line = endorsement_line(proof)
    assert line.startswith(ENDORSEMENT_PREFIX)
    assert "=" not in line
    assert parse_endorsement_line(f"  {line}\n") == proof
    largest = endorsement_line(bytes(MAX_TRUST_STAPLE_PART))
    assert parse_endorsement_line(largest) == bytes(MAX_TRUST_STAPLE_PART)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("onionpost1:AAAA", "not an endorsement line"),
        (ENDORSEMENT_PREFIX, "not base64url"),
        (ENDORSEMENT_PREFIX + "AA=A", "not base64url"),
        (ENDORSEMENT_PREFIX + "A", "not base64url"),
        (ENDORSEMENT_PREFIX + "AB", "not in canonical form"),  # stray bits
        (endorsement_line(bytes(MAX_TRUST_STAPLE_PART + 3)), "too long"),
    ],
)
def test_bad_endorsement_lines_are_refused(text: str, reason: str) -> None:
    with pytest.raises(CardError, match=reason):
        parse_endorsement_line(text)


@given(st.text(max_size=200))
def test_any_text_is_an_endorsement_line_or_a_card_error(text: str) -> None:
    with contextlib.suppress(CardError):
        assert parse_endorsement_line(ENDORSEMENT_PREFIX + text)


def test_a_bundle_splits_into_its_card_and_its_endorsement() -> None:
    line = endorsement_line(b"proof")
    assert split_card_bundle(f"# alice\n{CARD}\n\n{line}\n") == (CARD, line)
    assert split_card_bundle(f"{line}\n{CARD}\n") == (CARD, line)  # in any order
    assert split_card_bundle(f"{CARD}\n") == (CARD, None)  # a card file is a bundle


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "exactly one card line, found 0"),
        (f"{CARD}\n{CARD}\n", "exactly one card line, found 2"),
        (f"{CARD}\n{endorsement_line(b'a')}\n{endorsement_line(b'b')}\n", "at most one"),
        (f"{CARD}\nsomething else\n", "nothing else"),
    ],
)
def test_bad_bundles_are_refused(text: str, reason: str) -> None:
    with pytest.raises(CardError, match=reason):
        split_card_bundle(text)
