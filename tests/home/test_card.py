"""Contact cards (strict parsing, signatures) and safety numbers."""

from __future__ import annotations

import base64
import contextlib
import hashlib
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onionpost.errors import CardError, ConfigError
from onionpost.home import ContactCard, Secrets, read_card_file, safety_number
from onionpost.home._card import CARD_CONTEXT
from onionpost.proto.identity import Identity

NOW = 1_700_000_000
SECRETS = Secrets.generate("Alice", now=NOW)


def _encode(fields: list[object]) -> str:
    raw = msgpack.packb(fields, use_bin_type=True)
    return "onionpost1:" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(
    name: object = "Alice",
    *,
    version: object = 1,
    identity: Identity = SECRETS.identity,
    client_auth: object = SECRETS.client_auth_public,
) -> str:
    """A card line signed properly over whatever fields it is given."""
    body = [version, identity.public_key, client_auth, name]
    signature = identity.sign(CARD_CONTEXT + msgpack.packb(body, use_bin_type=True))
    return _encode([*body, signature])


def test_round_trip() -> None:
    card = ContactCard.issue(SECRETS)
    line = card.to_line()
    assert line.startswith("onionpost1:")
    assert "=" not in line
    parsed = ContactCard.parse(line)
    assert parsed == card
    assert parsed.address == SECRETS.identity.address
    assert parsed.client_auth_public == SECRETS.client_auth_public
    assert parsed.name == "Alice"
    assert parsed.to_line() == line
    assert line == _signed()


def test_parse_ignores_surrounding_whitespace() -> None:
    line = ContactCard.issue(SECRETS).to_line()
    assert ContactCard.parse(f"  \t{line}\r\n\n") == ContactCard.parse(line)


def test_repr_has_no_signature_noise() -> None:
    card = ContactCard.issue(SECRETS)
    assert card.signature.hex() not in repr(card)
    assert "Alice" in repr(card)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "does not start with"),
        ("onionpost2:AAAA", "does not start with"),
        ("ONIONPOST1:AAAA", "does not start with"),
        ("onionpost1:", "base64url"),
        ("onionpost1:abc=", "base64url"),  # padding
        ("onionpost1:ab+/", "base64url"),  # the standard, not the URL-safe, alphabet
        ("onionpost1:abcde", "base64url"),  # 5 characters cannot be base64
        ("onionpost1:" + "A" * 2000, "too long"),
        ("onionpost1:wQ", "msgpack"),  # 0xc1 is never valid msgpack
        (_encode([1, 2, 3]) + "AA", "msgpack"),  # trailing bytes
        (_encode({"v": 1}), "msgpack"),  # type: ignore[arg-type]
        (_encode([]), "not a msgpack array"),
        (_encode(["1"]), "version is not an integer"),
        (_encode([True]), "version is not an integer"),
        (_encode([2, b"x"]), "unsupported card version 2"),
        (_encode([1, b"x" * 32, b"y" * 32, "n"]), "5 fields"),
        (_encode([1, b"x" * 31, b"y" * 32, "n", b"s" * 64]), "identity key"),
        (_encode([1, "x" * 32, b"y" * 32, "n", b"s" * 64]), "identity key"),
        (_encode([1, b"x" * 32, b"y" * 33, "n", b"s" * 64]), "client-authorization"),
        (_encode([1, b"x" * 32, b"y" * 32, b"n", b"s" * 64]), "name is not text"),
        (_encode([1, b"x" * 32, b"y" * 32, "n", b"s" * 63]), "signature is not 64"),
    ],
)
def test_malformed_cards_are_refused_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(CardError, match=reason):
        ContactCard.parse(text)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("x" * 65, "longer than 64"),
        ("line\nbreak", "control"),
        ("esc\x1b[31m", "control"),
        ("bidi\u202eevil", "control or formatting"),
        ("zero\u200bwidth", "control or formatting"),
    ],
)
def test_signed_cards_with_bad_names_are_refused(name: str, reason: str) -> None:
    with pytest.raises(CardError, match=reason):
        ContactCard.parse(_signed(name))


def test_names_may_be_any_printable_unicode() -> None:
    card = ContactCard.parse(_signed("Zoë 日本 — desk 7"))
    assert card.name == "Zoë 日本 — desk 7"
    assert ContactCard.parse(_signed("x" * 64)).name == "x" * 64


def test_a_tampered_card_fails_its_signature() -> None:
    good = ContactCard.issue(SECRETS)
    raw = msgpack.unpackb(base64.urlsafe_b64decode(good.to_line()[11:] + "=="))
    for index, replacement in (
        (3, "Mallory"),  # the name
        (2, bytes(32)),  # the client-authorization key
        (1, Identity.generate().public_key),  # another address, same signature
    ):
        fields = list(raw)
        fields[index] = replacement
        with pytest.raises(CardError, match="bad signature"):
            ContactCard.parse(_encode(fields))


def test_a_card_signed_by_another_key_is_refused() -> None:
    mallory = Identity.generate()
    body = [1, SECRETS.identity.public_key, SECRETS.client_auth_public, "Alice"]
    signature = mallory.sign(CARD_CONTEXT + msgpack.packb(body, use_bin_type=True))
    with pytest.raises(CardError, match="bad signature"):
        ContactCard.parse(_encode([*body, signature]))


def test_a_signature_without_the_context_is_refused() -> None:
    body = [1, SECRETS.identity.public_key, SECRETS.client_auth_public, "Alice"]
    signature = SECRETS.identity.sign(msgpack.packb(body, use_bin_type=True))
    with pytest.raises(CardError, match="bad signature"):
        ContactCard.parse(_encode([*body, signature]))


def test_non_canonical_encodings_are_refused() -> None:
    line = ContactCard.issue(SECRETS).to_line()
    raw = base64.urlsafe_b64decode(line[11:] + "==")
    # The version as a uint8 (0xcc 0x01) instead of a positive fixint.
    longer = raw[:1] + b"\xcc\x01" + raw[2:]
    text = "onionpost1:" + base64.urlsafe_b64encode(longer).rstrip(b"=").decode()
    with pytest.raises(CardError, match="canonical"):
        ContactCard.parse(text)


def test_constructing_an_unsigned_card_is_impossible() -> None:
    card = ContactCard.issue(SECRETS)
    with pytest.raises(CardError, match="bad signature"):
        ContactCard(card.address, card.client_auth_public, "Someone else", card.signature)


def test_card_errors_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        ContactCard.parse("nope")


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_card_error(text: str) -> None:
    with contextlib.suppress(CardError):
        ContactCard.parse(text)


@given(st.binary(max_size=300))
def test_any_payload_parses_or_raises_card_error(payload: bytes) -> None:
    with contextlib.suppress(CardError):
        ContactCard.parse("onionpost1:" + base64.urlsafe_b64encode(payload).rstrip(b"=").decode())


def test_read_card_file(tmp_path: Path) -> None:
    line = ContactCard.issue(SECRETS).to_line()
    path = tmp_path / "alice.card"
    path.write_text(f"# Alice's card, given in person\n\n   {line}  \n\n")
    assert read_card_file(path).name == "Alice"
    path.write_text(f"{line}\n{line}\n")
    with pytest.raises(CardError, match="exactly one"):
        read_card_file(path)
    path.write_bytes(b"\xff" + line.encode())
    with pytest.raises(CardError, match="UTF-8"):
        read_card_file(path)
    path.write_text("x" * 5000)
    with pytest.raises(CardError, match="too large"):
        read_card_file(path)
    with pytest.raises(CardError, match="cannot read"):
        read_card_file(tmp_path / "missing")


# -- safety numbers -----------------------------------------------------------------


def test_safety_number_is_symmetric_and_well_formed() -> None:
    a = Identity.generate().public_key
    b = Identity.generate().public_key
    number = safety_number(a, b)
    assert number == safety_number(b, a)
    groups = number.split(" ")
    assert len(groups) == 12
    assert all(len(g) == 5 and g.isdigit() for g in groups)
    assert safety_number(a, Identity.generate().public_key) != number


def test_safety_number_vector() -> None:
    """The derivation as written in protocol-spec/storage.md, recomputed here."""
    a, b = bytes([2]) * 32, bytes([1]) * 32
    digest = hashlib.blake2b(b"onionpost safety number v1\x00" + b + a, digest_size=64).digest()
    expected = " ".join(
        f"{int.from_bytes(digest[5 * i : 5 * i + 5], 'big') % 100000:05d}" for i in range(12)
    )
    assert safety_number(a, b) == expected
    assert safety_number(a, b) == (
        "67572 74322 98918 96828 11137 27267 30954 88362 91605 26844 16680 28915"
    )


def test_safety_number_needs_two_keys() -> None:
    with pytest.raises(ConfigError):
        safety_number(b"short", bytes(32))


def test_the_example_card_in_storage_md() -> None:
    """protocol-spec/storage.md §3 shows this card byte by byte; Ed25519 is deterministic."""
    from onionpost.proto._crypto import KeyPair

    identity = Identity(bytes([1]) * 32)
    client_auth = KeyPair.from_private(bytes([2]) * 32).public
    line = _signed("Alice", identity=identity, client_auth=client_auth)
    spec = (Path(__file__).parents[2] / "protocol-spec" / "storage.md").read_text()
    assert f"\n{line}\n" in spec
    card = ContactCard.parse(line)
    assert str(card.address) in spec
    raw = base64.urlsafe_b64decode(line[len("onionpost1:") :] + "==")
    assert len(raw) == 142
    assert raw[:4].hex() == "9501c420"


# -- the mailbox announcement a card may carry (mailbox.md §Announcement) ---------------


def test_a_card_carries_its_mailbox_announcement() -> None:
    from onionpost.proto.address import OnionAddress
    from onionpost.proto.pairing import MailboxAnnouncement

    mailbox = OnionAddress(bytes(range(32)))
    signed = MailboxAnnouncement.issue(SECRETS.identity, mailbox, version=7)
    card = ContactCard.issue(SECRETS, mailbox=signed)
    back = ContactCard.parse(card.to_line())
    assert back.mailbox is not None
    assert back.mailbox.mailbox == mailbox
    assert back.mailbox.version == 7
    assert ContactCard.parse(ContactCard.issue(SECRETS).to_line()).mailbox is None


def test_a_card_with_another_endpoints_announcement_is_refused() -> None:
    from onionpost.proto.address import OnionAddress
    from onionpost.proto.pairing import MailboxAnnouncement

    other = Secrets.generate("Mallory", now=NOW)
    theirs = MailboxAnnouncement.issue(other.identity, OnionAddress(bytes(32)), version=1)
    fields = msgpack.unpackb(
        base64.urlsafe_b64decode(ContactCard.issue(SECRETS).to_line()[11:] + "=="),
        use_list=True,
    )
    with pytest.raises(CardError, match="does not verify"):
        ContactCard.parse(_encode([*fields, theirs.to_bytes()]))
    ours = MailboxAnnouncement.issue(SECRETS.identity, OnionAddress(bytes(32)), version=1)
    forged = bytearray(ours.to_bytes())
    forged[5] ^= 1
    with pytest.raises(CardError, match="does not verify"):
        ContactCard.parse(_encode([*fields, bytes(forged)]))
