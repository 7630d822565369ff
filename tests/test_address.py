"""OnionAddress and expanded_secret_key (rend-spec-v3 §6).

Known answers come from tor's own unit tests (src/test/test_hs_common.c:
test_build_address and test_validate_address), so a mistake in our derivation
cannot agree with itself. The expanded key is checked against libsodium's
base-point multiplication, an independent implementation.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib

import nacl.bindings
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onionpost.errors import ConfigError
from onionpost.proto.address import OnionAddress, expanded_secret_key

# tor test_build_address: the public key is 32 bytes of 0x42.
TOR_042_ID = "ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbezhid"
# tor test_build_address (newer versions) and RFC 8032 §7.1 test 1.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_ID = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid"
# tor test_validate_address: one valid, two with a bad checksum.
TOR_VALID_ID = "p3xnclpu4mu22dwaurjtsybyqk4xfjmcfz6z62yl24uwmhjatiwnlnad"
TOR_BAD_CHECKSUM = [
    "l5satjgud6gucryazcyvyvhuxhr74u6ygigiuyixe3a6ysis67ororad",
    "btojiu7nu5y5iwut64eufevogqdw4wmqzugnoluw232r4t3ecsfv37ad",
]


def test_tor_known_answers() -> None:
    assert OnionAddress.from_public_key(b"\x42" * 32).service_id == TOR_042_ID
    assert OnionAddress.from_public_key(RFC8032_PUB).service_id == RFC8032_ID
    assert OnionAddress.parse(TOR_VALID_ID).service_id == TOR_VALID_ID


def test_forms() -> None:
    addr = OnionAddress.from_public_key(RFC8032_PUB)
    assert addr.public_key == RFC8032_PUB
    assert len(addr.service_id) == 56
    assert addr.hostname == RFC8032_ID + ".onion"
    assert str(addr) == addr.hostname
    assert RFC8032_ID in repr(addr)


@pytest.mark.parametrize(
    "text",
    [RFC8032_ID, RFC8032_ID + ".onion", RFC8032_ID.upper(), RFC8032_ID.upper() + ".ONION"],
)
def test_parse_accepts_suffix_and_any_case(text: str) -> None:
    assert OnionAddress.parse(text).public_key == RFC8032_PUB


@pytest.mark.parametrize("bad", TOR_BAD_CHECKSUM)
def test_rejects_bad_checksum(bad: str) -> None:
    with pytest.raises(ConfigError, match="checksum"):
        OnionAddress.parse(bad)


def test_rejects_one_character_off() -> None:
    with pytest.raises(ConfigError, match="checksum"):
        OnionAddress.parse("3" + RFC8032_ID[1:])


@pytest.mark.parametrize(
    "bad",
    ["", ".onion", RFC8032_ID[:-1], RFC8032_ID + "a", "www." + RFC8032_ID + ".onion", "x" * 16],
)
def test_rejects_wrong_length(bad: str) -> None:
    with pytest.raises(ConfigError, match="56 base32"):
        OnionAddress.parse(bad)


@pytest.mark.parametrize("bad", ["?" * 56, "1" * 56, RFC8032_ID[:-1] + "=", RFC8032_ID[:-1] + " "])
def test_rejects_bad_base32(bad: str) -> None:
    with pytest.raises(ConfigError, match="base32"):
        OnionAddress.parse(bad)


def test_rejects_wrong_version() -> None:
    # A correct checksum for version 3 but a version byte of 4: the version
    # check must fire, not the checksum one.
    pub = RFC8032_PUB
    checksum = hashlib.sha3_256(b".onion checksum" + pub + b"\x03").digest()[:2]
    text = base64.b32encode(pub + checksum + b"\x04").decode().lower()
    with pytest.raises(ConfigError, match="version byte is 4"):
        OnionAddress.parse(text)


def test_rejects_non_text_and_bad_keys() -> None:
    with pytest.raises(ConfigError):
        OnionAddress.parse(b"abc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        OnionAddress.from_public_key(b"\x00" * 31)
    with pytest.raises(ConfigError):
        OnionAddress(bytearray(32))  # type: ignore[arg-type]


def test_equality_and_hash_follow_the_key() -> None:
    a = OnionAddress.parse(RFC8032_ID)
    b = OnionAddress.parse(RFC8032_ID.upper() + ".onion")
    assert a == b
    assert len({a, b}) == 1


@given(st.binary(min_size=32, max_size=32))
def test_round_trip(pub: bytes) -> None:
    addr = OnionAddress.from_public_key(pub)
    assert OnionAddress.parse(str(addr)) == addr
    assert OnionAddress.parse(addr.service_id.upper()) == addr


@given(st.text(max_size=80))
def test_parse_never_raises_anything_else(text: str) -> None:
    with contextlib.suppress(ConfigError):
        OnionAddress.parse(text)


def test_expanded_secret_key_matches_libsodium() -> None:
    expanded = expanded_secret_key(RFC8032_SEED)
    assert len(expanded) == 64
    # The clamped scalar times the base point is the RFC's public key.
    assert nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(expanded[:32]) == RFC8032_PUB
    assert expanded[32:] == hashlib.sha512(RFC8032_SEED).digest()[32:]
    assert expanded[0] & 7 == 0
    assert expanded[31] & 0xC0 == 0x40


@given(st.binary(min_size=32, max_size=32))
def test_expanded_secret_key_gives_the_seed_public_key(seed: bytes) -> None:
    pub, _ = nacl.bindings.crypto_sign_seed_keypair(seed)
    expanded = expanded_secret_key(seed)
    assert nacl.bindings.crypto_scalarmult_ed25519_base_noclamp(expanded[:32]) == pub


@pytest.mark.parametrize("bad", [b"", b"\x00" * 31, b"\x00" * 64])
def test_expanded_secret_key_rejects_bad_seed(bad: bytes) -> None:
    with pytest.raises(ConfigError):
        expanded_secret_key(bad)
