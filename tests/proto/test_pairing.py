"""Mailbox setup codes and signed mailbox announcements (``onionpost.proto.pairing``)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import (
    AuthenticationError,
    ConfigError,
    MessageDecodeError,
    OnionpostError,
)
from onionpost.limits import MAX_TIME_MS
from onionpost.proto._crypto import KeyPair
from onionpost.proto.identity import Identity, verify_signature
from onionpost.proto.pairing import (
    ANNOUNCEMENT_CONTEXT,
    ANNOUNCEMENT_LEN,
    SETUP_PREFIX,
    SETUP_TEXT_LEN,
    MailboxAnnouncement,
    SetupCode,
    token_digest,
)


def _derive(label: str, size: int = 32) -> bytes:
    return hashlib.blake2b(f"onionpost pairing test {label}".encode()).digest()[:size]


OWNER = Identity(_derive("owner identity"))
MAILBOX = Identity(_derive("mailbox identity"))
OTHER = Identity(_derive("other identity"))
CODE = SetupCode(MAILBOX.address, _derive("secret"))
TEXT = CODE.to_text()
VERSION = 1_790_000_000_123


# -- setup codes ---------------------------------------------------------------------------


def test_setup_code_round_trip() -> None:
    assert SetupCode.parse(TEXT) == CODE
    assert TEXT.startswith(SETUP_PREFIX)
    assert len(TEXT) == len(SETUP_PREFIX) + SETUP_TEXT_LEN == 19 + 111
    assert TEXT.lower() == TEXT
    assert "=" not in TEXT


def test_setup_code_layout() -> None:
    body = TEXT[len(SETUP_PREFIX) :].upper()
    raw = base64.b32decode(body + "=")
    assert raw[0] == 1
    assert raw[1:33] == MAILBOX.public_key
    assert raw[33:65] == CODE.secret
    assert raw[65:] == hashlib.blake2b(raw[:65]).digest()[:4]


def test_generated_codes_are_random_and_parse() -> None:
    a, b = SetupCode.generate(MAILBOX.address), SetupCode.generate(MAILBOX.address)
    assert a.secret != b.secret
    assert SetupCode.parse(a.to_text()) == a


def test_setup_code_tolerates_whitespace_and_upper_case() -> None:
    assert SetupCode.parse(f"  {TEXT.upper()}\n") == CODE
    assert SetupCode.parse(f"\t{TEXT}  ") == CODE


def _reason(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        SetupCode.parse(text)
    return str(info.value)


def test_a_mistyped_code_is_refused_as_mistyped() -> None:
    body = TEXT[len(SETUP_PREFIX) :]
    for position in (0, 5, 40, 100, len(body) - 2):
        wrong = "b" if body[position] != "b" else "c"
        typo = SETUP_PREFIX + body[:position] + wrong + body[position + 1 :]
        assert "mistyped" in _reason(typo)
    swapped = SETUP_PREFIX + body[:10] + body[11] + body[10] + body[12:]
    if swapped != TEXT:
        assert "mistyped" in _reason(swapped)


def test_unused_bits_of_the_last_character_count_as_a_typo() -> None:
    # The last of 111 characters holds 2 bits of data and 3 unused bits.
    last = TEXT[-1]
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    value = alphabet.index(last)
    for unused in (1, 2, 4):
        variant = TEXT[:-1] + alphabet[value ^ unused]
        assert "mistyped" in _reason(variant)


def test_wrong_prefix_bad_characters_and_length_say_so() -> None:
    body = TEXT[len(SETUP_PREFIX) :]
    assert "must start with" in _reason("onionpost-mailbox2:" + body)
    assert "must start with" in _reason(body)
    assert "must start with" in _reason(MAILBOX.address.hostname)
    assert "base32" in _reason(SETUP_PREFIX + body[:50] + "1" + body[51:])
    assert "base32" in _reason(SETUP_PREFIX + body[:50] + " " + body[50:])
    assert "characters" in _reason(SETUP_PREFIX + body[:-1])
    assert "characters" in _reason(SETUP_PREFIX + body + "a")
    assert "characters" in _reason(SETUP_PREFIX)


def test_another_version_is_refused() -> None:
    data = bytes([2]) + MAILBOX.public_key + CODE.secret
    raw = data + hashlib.blake2b(data).digest()[:4]
    text = SETUP_PREFIX + base64.b32encode(raw).decode().rstrip("=").lower()
    assert "version 2" in _reason(text)


def test_the_secret_never_shows_in_repr() -> None:
    assert CODE.secret.hex() not in repr(CODE)
    assert repr(CODE.secret) not in repr(CODE)
    assert TEXT[len(SETUP_PREFIX) :] not in repr(CODE)


def test_derived_keys_are_distinct_and_stable() -> None:
    private = CODE.client_auth_private()
    assert len(private) == 32
    assert private[0] & 7 == 0
    assert private[31] & 0x80 == 0
    assert private[31] & 0x40
    assert CODE.client_auth_public() == KeyPair.from_private(private).public
    token = CODE.token()
    assert len(token) == 32
    digest = token_digest(token)
    assert len(digest) == 32
    assert len({private, token, digest, CODE.secret}) == 4
    # Keyed BLAKE2b-256 with one label each.
    expected = hashlib.blake2b(b"onionpost mailbox token", key=CODE.secret, digest_size=32)
    assert token == expected.digest()
    expected = hashlib.blake2b(b"onionpost mailbox token digest", key=token, digest_size=32)
    assert digest == expected.digest()
    other = SetupCode(MAILBOX.address, _derive("other secret"))
    assert other.token() != token
    assert other.client_auth_private() != private


def test_token_digest_needs_32_bytes() -> None:
    with pytest.raises(ConfigError):
        token_digest(b"short")


def test_a_secret_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(ConfigError):
        SetupCode(MAILBOX.address, b"short")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_gives_only_config_errors(text: str) -> None:
    with contextlib.suppress(ConfigError):
        SetupCode.parse(text)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", min_size=111, max_size=111))
def test_random_base32_bodies_are_refused(body: str) -> None:
    with pytest.raises(ConfigError):
        SetupCode.parse(SETUP_PREFIX + body)


# -- announcements ------------------------------------------------------------------------------


ANNOUNCEMENT = MailboxAnnouncement.issue(OWNER, MAILBOX.address, version=VERSION)
NONE = MailboxAnnouncement.issue(OWNER, None, version=VERSION + 1)


def test_announcement_round_trip() -> None:
    data = ANNOUNCEMENT.to_bytes()
    assert len(data) == ANNOUNCEMENT_LEN == 138
    parsed = MailboxAnnouncement.parse(data, owner=OWNER.address)
    assert parsed == ANNOUNCEMENT
    assert parsed.owner == OWNER.address
    assert parsed.mailbox == MAILBOX.address
    assert parsed.version == VERSION


def test_no_mailbox_round_trip() -> None:
    data = NONE.to_bytes()
    assert data[33] == 0
    assert data[34:66] == bytes(32)
    assert MailboxAnnouncement.parse(data, owner=OWNER.address).mailbox is None


def test_announcement_layout() -> None:
    data = ANNOUNCEMENT.to_bytes()
    assert data[0] == 1
    assert data[1:33] == OWNER.public_key
    assert data[33] == 1
    assert data[34:66] == MAILBOX.public_key
    assert int.from_bytes(data[66:74], "big") == VERSION
    verify_signature(OWNER.public_key, data[74:], ANNOUNCEMENT_CONTEXT + data[:74])


def test_any_bit_flipped_is_refused() -> None:
    data = ANNOUNCEMENT.to_bytes()
    for index in range(len(data)):
        altered = bytearray(data)
        altered[index] ^= 1 << (index % 8)
        with pytest.raises((AuthenticationError, MessageDecodeError)):
            MailboxAnnouncement.parse(bytes(altered), owner=OWNER.address)


def test_tampered_signature_is_refused() -> None:
    data = bytearray(ANNOUNCEMENT.to_bytes())
    data[-1] ^= 0x01
    with pytest.raises(AuthenticationError):
        MailboxAnnouncement.parse(bytes(data), owner=OWNER.address)


def test_mailbox_swapped_is_refused() -> None:
    forged = replace(ANNOUNCEMENT, mailbox=OTHER.address)
    with pytest.raises(AuthenticationError):
        MailboxAnnouncement.parse(forged.to_bytes(), owner=OWNER.address)


def test_an_announcement_of_another_owner_is_refused() -> None:
    others = MailboxAnnouncement.issue(OTHER, MAILBOX.address, version=VERSION)
    with pytest.raises(AuthenticationError):
        MailboxAnnouncement.parse(others.to_bytes(), owner=OWNER.address)
    # The other owner's announcement relabelled with our owner's key: the signature fails.
    relabelled = replace(others, owner=OWNER.address)
    with pytest.raises(AuthenticationError):
        MailboxAnnouncement.parse(relabelled.to_bytes(), owner=OWNER.address)


def test_the_same_error_text_for_every_refusal() -> None:
    texts = set()
    others = MailboxAnnouncement.issue(OTHER, MAILBOX.address, version=VERSION)
    for data in (others.to_bytes(), ANNOUNCEMENT.to_bytes()[:-1] + b"\x00"):
        with pytest.raises(AuthenticationError) as info:
            MailboxAnnouncement.parse(data, owner=OWNER.address)
        texts.add(str(info.value))
    assert len(texts) == 1


def test_malformed_announcements_are_decode_errors() -> None:
    data = ANNOUNCEMENT.to_bytes()
    none = NONE.to_bytes()
    for junk in (
        b"",
        data[:-1],
        data + b"\x00",
        b"\x02" + data[1:],
        data[:33] + b"\x02" + data[34:],
        none[:34] + b"\x01" + none[35:],  # "none" with a mailbox key
    ):
        with pytest.raises(MessageDecodeError):
            MailboxAnnouncement.parse(junk, owner=OWNER.address)


def test_issue_refuses_nonsense() -> None:
    with pytest.raises(ConfigError):
        MailboxAnnouncement.issue(OWNER, OWNER.address, version=VERSION)
    with pytest.raises(ConfigError):
        MailboxAnnouncement.issue(OWNER, MAILBOX.address, version=-1)
    with pytest.raises(ConfigError):
        MailboxAnnouncement.issue(OWNER, MAILBOX.address, version=2**64)


@pytest.mark.parametrize("version", [MAX_TIME_MS + 1, 2**63, 2**64 - 1])
def test_a_version_past_year_9999_is_refused_even_signed(version: int) -> None:
    """The version is a time in ms, kept per contact; a contact's own signed
    announcement with 2^63 or more could not be stored (SQLite), and ended
    the session as a bug: refused as malformed, as at issue."""
    from onionpost.proto import pairing

    body = pairing._ANNOUNCEMENT_BODY.pack(
        pairing.ANNOUNCEMENT_FORMAT,
        OWNER.address.public_key,
        1,
        MAILBOX.address.public_key,
        version,
    )
    data = body + OWNER.sign(pairing.ANNOUNCEMENT_CONTEXT + body)
    with pytest.raises(MessageDecodeError, match=f"version is at most {MAX_TIME_MS}"):
        MailboxAnnouncement.parse(data, owner=OWNER.address)
    with pytest.raises(ConfigError):
        MailboxAnnouncement.issue(OWNER, MAILBOX.address, version=version)
    at_bound = MailboxAnnouncement.issue(OWNER, MAILBOX.address, version=MAX_TIME_MS)
    assert MailboxAnnouncement.parse(at_bound.to_bytes(), owner=OWNER.address) == at_bound


def test_the_signature_does_not_show_in_repr() -> None:
    assert ANNOUNCEMENT.signature.hex() not in repr(ANNOUNCEMENT)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_give_only_our_errors(data: bytes) -> None:
    with contextlib.suppress(OnionpostError):
        MailboxAnnouncement.parse(data, owner=OWNER.address)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=ANNOUNCEMENT_LEN, max_size=ANNOUNCEMENT_LEN))
def test_random_announcements_never_verify(data: bytes) -> None:
    with pytest.raises((AuthenticationError, MessageDecodeError)):
        MailboxAnnouncement.parse(data, owner=OWNER.address)
