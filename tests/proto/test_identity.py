"""Identities and static-key certificates (onionpost.proto.identity).

The certificate layout and its signature are checked with ``struct`` and
``cryptography``'s Ed25519, independently of pynacl, which the module uses.
The identity known answer is RFC 8032 §7.1 test 1, whose address tor's own
unit tests give (tests/test_address.py uses the same vector).
"""

from __future__ import annotations

import base64
import dataclasses
import struct

import pytest
from _sessions import ALICE, ALICE_STATIC, BOB, NOW, derive, make_static
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import AuthenticationError, CloseCode, ConfigError
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import (
    CERT_CLOCK_SKEW,
    CERT_LEN,
    CERT_LIFETIME,
    CERT_RENEW_BEFORE,
    Identity,
    StaticKey,
    StaticKeyCertificate,
    verify_signature,
)
from onionpost.proto.noise import KeyPair

# RFC 8032 §7.1 TEST 1, and its v3 address (tor test_build_address).
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUB = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_ID = "25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid"

# The certificate, from the module's docstring: u8 version, u64 BE not_before,
# u64 BE not_after, 32-byte X25519 key, then Ed25519 over CONTEXT || those 49 bytes.
CONTEXT = b"onionpost static-key certificate\x00"
BODY = struct.Struct(">BQQ32s")
DAY = 24 * 3600
FAILED = "handshake failed"

STATIC_PUB = ALICE_STATIC.keypair.public
CERT = ALICE_STATIC.certificate
CERT_BYTES = CERT.to_bytes()


def verify(data: bytes, **overrides: object) -> StaticKeyCertificate:
    args: dict = {"identity_key": ALICE.public_key, "static_key": STATIC_PUB, "now": NOW}
    args.update(overrides)
    return StaticKeyCertificate.verify(data, **args)


def refused(data: bytes, **overrides: object) -> tuple[type, tuple, CloseCode]:
    """What a failed verification shows: its type, text and close code."""
    with pytest.raises(AuthenticationError) as info:
        verify(data, **overrides)
    return type(info.value), info.value.args, info.value.close_code


SAME_FAILURE = (AuthenticationError, (FAILED,), CloseCode.AUTHENTICATION_FAILED)


# -- identities ---------------------------------------------------------------------------


def test_rfc8032_identity_and_its_address() -> None:
    identity = Identity(RFC8032_SEED)
    assert identity.public_key == RFC8032_PUB
    assert identity.address.service_id == RFC8032_ID
    assert identity.seed == RFC8032_SEED


def test_address_is_the_public_key() -> None:
    for identity in (ALICE, BOB, Identity.generate()):
        assert identity.address == OnionAddress.from_public_key(identity.public_key)
        assert OnionAddress.parse(identity.address.hostname) == identity.address
    assert ALICE.address != BOB.address


def test_generated_identities_differ_and_reload_from_their_seed() -> None:
    a, b = Identity.generate(), Identity.generate()
    assert a.public_key != b.public_key
    assert Identity(a.seed).address == a.address


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_a_seed_is_32_bytes(size: int) -> None:
    with pytest.raises(ConfigError):
        Identity(bytes(size))


def test_sign_is_ed25519_over_the_message() -> None:
    message = b"onionpost"
    signature = ALICE.sign(message)
    key = Ed25519PublicKey.from_public_bytes(ALICE.public_key)
    key.verify(signature, message)
    with pytest.raises(InvalidSignature):
        key.verify(signature, message + b"!")


def test_secrets_never_reach_a_repr() -> None:
    identity = Identity(RFC8032_SEED)
    text = repr(identity)
    assert RFC8032_ID in text
    for form in (
        RFC8032_SEED.hex(),
        RFC8032_SEED.hex().upper(),
        repr(RFC8032_SEED),
        base64.b64encode(RFC8032_SEED).decode(),
    ):
        assert form not in text
    private = ALICE_STATIC.keypair.private
    for obj in (ALICE_STATIC, ALICE_STATIC.keypair, CERT):
        assert private.hex() not in repr(obj)
        assert repr(private) not in repr(obj)
    assert CERT.signature.hex() not in repr(CERT)


# -- certificates -------------------------------------------------------------------------


def test_certificate_layout_and_signature() -> None:
    assert len(CERT_BYTES) == CERT_LEN == BODY.size + 64 == 113
    version, not_before, not_after, static = BODY.unpack_from(CERT_BYTES)
    assert (version, not_before, not_after, static) == (1, NOW, NOW + CERT_LIFETIME, STATIC_PUB)
    assert CERT_LIFETIME == 90 * DAY
    signature = CERT_BYTES[BODY.size :]
    Ed25519PublicKey.from_public_bytes(ALICE.public_key).verify(
        signature, CONTEXT + CERT_BYTES[: BODY.size]
    )


def test_certificate_round_trip() -> None:
    assert verify(CERT_BYTES) == CERT
    issued = ALICE.certify(STATIC_PUB, now=NOW + 5)
    assert verify(issued.to_bytes(), now=NOW + 5) == issued
    assert issued.not_after - issued.not_before == CERT_LIFETIME


def test_every_single_byte_change_fails_the_same_way() -> None:
    failures = set()
    for index in range(CERT_LEN):
        for mask in (0x01, 0x80, 0xFF):
            tampered = bytearray(CERT_BYTES)
            tampered[index] ^= mask
            failures.add(refused(bytes(tampered)))
    assert failures == {SAME_FAILURE}


@settings(max_examples=100, deadline=None)
@given(index=st.integers(0, CERT_LEN - 1), mask=st.integers(1, 255))
def test_any_tampered_byte_is_refused(index: int, mask: int) -> None:
    tampered = bytearray(CERT_BYTES)
    tampered[index] ^= mask
    assert refused(bytes(tampered)) == SAME_FAILURE


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=200))
def test_random_bytes_are_refused(data: bytes) -> None:
    assert refused(data) == SAME_FAILURE


@pytest.mark.parametrize("size", [0, 1, CERT_LEN - 1, CERT_LEN + 1, 2 * CERT_LEN])
def test_wrong_length_is_refused(size: int) -> None:
    data = (CERT_BYTES * 2)[:size]
    assert refused(data) == SAME_FAILURE


def test_a_certificate_for_another_static_key_is_refused() -> None:
    other = make_static(ALICE, "alice other").keypair.public
    assert refused(CERT_BYTES, static_key=other) == SAME_FAILURE


def test_a_certificate_checked_against_another_identity_is_refused() -> None:
    assert refused(CERT_BYTES, identity_key=BOB.public_key) == SAME_FAILURE
    bobs = make_static(BOB, "alice", signer=BOB).certificate.to_bytes()  # same static key
    assert refused(bobs) == SAME_FAILURE


@pytest.mark.parametrize("version", [0, 2, 255])
def test_another_certificate_version_is_refused_even_when_signed(version: int) -> None:
    body = BODY.pack(version, NOW, NOW + CERT_LIFETIME, STATIC_PUB)
    data = body + ALICE.sign(CONTEXT + body)
    assert refused(data) == SAME_FAILURE


def test_the_signature_is_domain_separated() -> None:
    body = CERT_BYTES[: BODY.size]
    assert refused(body + ALICE.sign(body)) == SAME_FAILURE
    assert refused(body + ALICE.sign(b"onionpost static-key certificate" + body)) == SAME_FAILURE


@pytest.mark.parametrize(
    "identity_key",
    [bytes(31), bytes(33), bytes(32), (1).to_bytes(32, "little")],
    ids=["short", "long", "zero", "small-order"],
)
def test_malformed_identity_keys_are_authentication_failures(identity_key: bytes) -> None:
    assert refused(CERT_BYTES, identity_key=identity_key) == SAME_FAILURE


@pytest.mark.parametrize("signature", [b"", bytes(63), bytes(64), bytes(65)])
def test_verify_signature_raises_only_authentication_error(signature: bytes) -> None:
    with pytest.raises(AuthenticationError) as info:
        verify_signature(ALICE.public_key, signature, b"message")
    assert info.value.args == (FAILED,)


@pytest.mark.parametrize(
    ("offset", "valid"),
    [
        (-CERT_CLOCK_SKEW - 1, False),
        (-CERT_CLOCK_SKEW, True),
        (0, True),
        (CERT_LIFETIME, True),
        (CERT_LIFETIME + CERT_CLOCK_SKEW, True),
        (CERT_LIFETIME + CERT_CLOCK_SKEW + 1, False),
    ],
)
def test_validity_window_allows_the_clock_skew_at_both_ends(offset: int, valid: bool) -> None:
    assert CERT_CLOCK_SKEW == DAY
    if valid:
        assert verify(CERT_BYTES, now=NOW + offset) == CERT
    else:
        assert refused(CERT_BYTES, now=NOW + offset) == SAME_FAILURE


@settings(max_examples=100, deadline=None)
@given(offset=st.integers(-3 * CERT_CLOCK_SKEW, CERT_LIFETIME + 3 * CERT_CLOCK_SKEW))
def test_validity_is_exactly_the_window(offset: int) -> None:
    inside = -CERT_CLOCK_SKEW <= offset <= CERT_LIFETIME + CERT_CLOCK_SKEW
    if inside:
        assert verify(CERT_BYTES, now=NOW + offset) == CERT
    else:
        assert refused(CERT_BYTES, now=NOW + offset) == SAME_FAILURE


def test_needs_renewal_once_less_than_30_days_remain() -> None:
    assert CERT_RENEW_BEFORE == 30 * DAY
    renew_at = NOW + CERT_LIFETIME - CERT_RENEW_BEFORE
    assert not CERT.needs_renewal(NOW)
    assert not CERT.needs_renewal(renew_at - 1)
    assert CERT.needs_renewal(renew_at)
    assert CERT.needs_renewal(NOW + CERT_LIFETIME + 10 * DAY)


def test_issue_refuses_a_key_that_is_not_32_bytes() -> None:
    for size in (0, 31, 33):
        with pytest.raises(ConfigError):
            ALICE.certify(bytes(size), now=NOW)


def test_certificates_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CERT.not_after = 2**63  # type: ignore[misc]


# -- static keys --------------------------------------------------------------------------


def test_static_key_generate_is_x25519_and_certified() -> None:
    static = StaticKey.generate(BOB, now=NOW)
    derived = X25519PrivateKey.from_private_bytes(static.keypair.private).public_key()
    assert derived.public_bytes_raw() == static.keypair.public
    assert static.certificate.static_key == static.keypair.public
    verify(
        static.certificate.to_bytes(),
        identity_key=BOB.public_key,
        static_key=static.keypair.public,
    )
    assert StaticKey.generate(BOB, now=NOW).keypair.public != static.keypair.public


def test_static_key_refuses_a_certificate_of_another_key() -> None:
    keypair = KeyPair.from_private(derive("stray static"))
    with pytest.raises(ConfigError):
        StaticKey(keypair, CERT)


@pytest.mark.parametrize(
    ("lifetime", "valid"),
    [
        (0, True),
        (CERT_LIFETIME, True),
        (CERT_LIFETIME + 1, False),
        (2**40, False),
    ],
)
def test_a_certificate_may_not_outlive_the_lifetime(lifetime: int, valid: bool) -> None:
    # Correctly signed by the identity, for the right key, valid now: only the
    # span differs. A certificate good until 2**64 must not be accepted.
    cert = StaticKeyCertificate.issue(ALICE, STATIC_PUB, now=NOW, lifetime=lifetime)
    if valid:
        assert verify(cert.to_bytes()) == cert
    else:
        assert refused(cert.to_bytes()) == SAME_FAILURE


def test_a_certificate_ending_before_it_starts_is_refused() -> None:
    # not_after < not_before, both within the clock skew of now.
    cert = StaticKeyCertificate.issue(ALICE, STATIC_PUB, now=NOW, lifetime=-60)
    assert refused(cert.to_bytes()) == SAME_FAILURE
