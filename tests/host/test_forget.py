"""When our tor is made to forget its onion client state (``host/_forget.py``):
an address refused for its introduction points twice in a row, on a tor we
launched, at most every FORGET_SECONDS. Pure: no tor, no clock."""

from __future__ import annotations

import os

import pytest

from onionpost.host import _forget
from onionpost.host._forget import FORGET_SECONDS, ForgetRule
from onionpost.proto.address import OnionAddress


def _address() -> OnionAddress:
    return OnionAddress.from_public_key(os.urandom(32))


def test_the_second_refusal_in_a_row_forgets_and_the_first_does_not() -> None:
    rule, bob = ForgetRule(ours=True), _address()
    assert not rule.refused(bob, 10.0)  # the first: a fresh descriptor is asked for
    assert rule.refused(bob, 11.0)


def test_any_other_outcome_in_between_starts_the_count_again() -> None:
    rule, bob = ForgetRule(ours=True), _address()
    assert not rule.refused(bob, 10.0)
    rule.other(bob)  # answered, or failed some other way
    assert not rule.refused(bob, 11.0)
    assert rule.refused(bob, 12.0)


def test_at_most_every_forget_seconds_whichever_address() -> None:
    rule, bob, carol = ForgetRule(ours=True), _address(), _address()
    rule.refused(bob, 0.0)
    rule.refused(carol, 0.0)
    assert rule.refused(bob, 1.0)
    assert not rule.refused(carol, 1.0 + FORGET_SECONDS / 2)
    assert not rule.refused(bob, 1.0 + FORGET_SECONDS - 0.001)
    assert rule.refused(carol, 1.0 + FORGET_SECONDS)


def test_never_on_a_tor_we_attached_to() -> None:
    rule, bob = ForgetRule(ours=False), _address()
    assert not any(rule.refused(bob, t * FORGET_SECONDS) for t in range(5))


def test_the_addresses_remembered_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_forget, "INTRO_FAILED_MAX", 3)
    rule = ForgetRule(ours=True)
    first = _address()
    rule.refused(first, 0.0)
    for _ in range(2):
        rule.refused(_address(), 0.0)
    rule.refused(_address(), 0.0)  # a fourth: the set starts again
    assert "1 refused" in repr(rule)
    assert not rule.refused(first, 100.0)  # forgotten with the rest: a first refusal again
