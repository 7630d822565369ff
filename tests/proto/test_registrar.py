"""The registrar's enrolment code and its pure decisions (trust.md §8), as tables."""

from __future__ import annotations

import pytest

from onionpost.errors import ConfigError
from onionpost.proto.address import OnionAddress
from onionpost.proto.pairing import SetupCode
from onionpost.proto.registrar import (
    ENROL_PREFIX,
    ENROL_TEXT_LEN,
    EnrolmentCode,
    check_refresh,
    enrol_digest,
    list_due,
    renewal_due,
)

REGISTRAR = OnionAddress(bytes(range(32)))
CODE = EnrolmentCode(REGISTRAR, bytes(range(100, 132)))


def test_a_code_reads_back_whatever_its_case_and_spaces() -> None:
    text = CODE.to_text()
    assert text.startswith(ENROL_PREFIX)
    assert len(text) == len(ENROL_PREFIX) + ENROL_TEXT_LEN
    assert EnrolmentCode.parse(text) == CODE
    assert EnrolmentCode.parse(f"  {text.upper()}\n") == CODE
    assert CODE.secret.hex() not in repr(CODE)


def test_a_code_is_no_mailbox_code_and_its_keys_differ() -> None:
    mailbox = SetupCode(REGISTRAR, CODE.secret)
    assert CODE.token() != mailbox.token()
    assert CODE.client_auth_private() != mailbox.client_auth_private()
    with pytest.raises(ConfigError, match="not a registrar enrolment code"):
        EnrolmentCode.parse(mailbox.to_text())
    assert len(enrol_digest(CODE.token())) == 32
    assert enrol_digest(CODE.token()) != CODE.token()


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda t: t[:-1], "characters after the prefix"),
        (lambda t: t + "a", "characters after the prefix"),
        (lambda t: t[:-3] + ("b" if t[-3] != "b" else "c") + t[-2:], "checksum"),
        (lambda t: t[:-1] + "1", "outside base32"),
        (lambda t: "onionpost-registrar2:" + t[len(ENROL_PREFIX) :], "must start"),
    ],
    ids=["short", "long", "mistyped", "not-base32", "prefix"],
)
def test_mistyped_codes_say_why(mangle, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=match):
        EnrolmentCode.parse(mangle(CODE.to_text()))


def test_a_token_digest_takes_32_bytes() -> None:
    with pytest.raises(ConfigError):
        enrol_digest(b"short")


@pytest.mark.parametrize(
    ("valid_from", "valid_until", "now", "due"),
    [
        (0, 900, 0, False),
        (0, 900, 599, False),  # 301 left of 900: more than a third
        (0, 900, 600, False),  # exactly a third left
        (0, 900, 601, True),
        (0, 900, 900, True),
        (0, 900, 5000, True),  # ended
    ],
)
def test_renewal_is_due_with_less_than_a_third_left(
    valid_from: int, valid_until: int, now: int, due: bool
) -> None:
    assert renewal_due(valid_from, valid_until, now) is due


@pytest.mark.parametrize(
    ("issued_at", "now", "due"),
    [
        (None, 0, True),
        (1000, 1000, False),
        (1000, 1899, False),
        (1000, 1900, True),
        (1000, 999, True),  # issued in the future: a clock set back
    ],
)
def test_a_list_is_due_every_interval(issued_at: int | None, now: int, due: bool) -> None:
    assert list_due(issued_at, now, 900) is due


@pytest.mark.parametrize("seconds", [59, 3601, 0, -1, True, "900", float("nan")])
def test_refresh_intervals_are_bounded(seconds: object) -> None:
    with pytest.raises(ConfigError):
        check_refresh(seconds)  # type: ignore[arg-type]


def test_refresh_intervals_in_bounds() -> None:
    assert (check_refresh(60), check_refresh(900.0), check_refresh(3600)) == (60, 900, 3600)
