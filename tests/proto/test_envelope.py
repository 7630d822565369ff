"""Signed prekeys and sealed envelopes (``onionpost.proto.envelope``, mailbox.md).

Every test builds its keys from fixed labels, so failures reproduce. Opening
must fail in one way only: :class:`AuthenticationError` with one text,
whatever was wrong. The attacks are simulated by handing ``open_envelope``
the keys the attacker would hold.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import struct
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from onionpost.errors import (
    AuthenticationError,
    ConfigError,
    LocalProtocolError,
    MessageDecodeError,
    OnionpostError,
)
from onionpost.proto import _msgpack, envelope, identity, pairing
from onionpost.proto._crypto import HASHES, KemKeyPair, KeyPair, mlkem768_encapsulate, x25519
from onionpost.proto.envelope import (
    ENVELOPE_BUCKETS,
    ENVELOPE_VERSION,
    HEADER_LEN,
    ID_LEN,
    MAX_ENVELOPE,
    MAX_ENVELOPE_AGE_MS,
    MAX_ENVELOPE_PAYLOAD,
    MAX_PREKEY_LIFETIME,
    MIN_ENVELOPE,
    PREKEY_CONTEXT,
    PREKEY_LEN,
    PROTOCOL_NAME,
    EnvelopeHeader,
    Opened,
    PrekeyKind,
    PrekeySecret,
    SignedPrekey,
    generate_prekey,
    open_envelope,
    padded_size,
    payload_size,
    prologue,
    seal,
)
from onionpost.proto.identity import (
    CERT_CLOCK_SKEW,
    Identity,
    StaticKey,
    StaticKeyCertificate,
    verify_signature,
)
from onionpost.proto.noise import HandshakeState, SymmetricState

NOW = 1_790_000_000  # seconds
NOW_MS = NOW * 1000
DAY = 24 * 3600
KEM_CT = 1088
FAILED = "envelope did not open"


def _derive(label: str, size: int = 32) -> bytes:
    return hashlib.blake2b(f"onionpost envelope test {label}".encode()).digest()[:size]


def _identity(name: str) -> Identity:
    return Identity(_derive(f"{name} identity"))


def _static(identity: Identity, name: str, now: int = NOW) -> StaticKey:
    keypair = KeyPair.from_private(_derive(f"{name} static"))
    return StaticKey(keypair, StaticKeyCertificate.issue(identity, keypair.public, now=now))


def _prekey(
    owner: Identity,
    label: str,
    kind: PrekeyKind = PrekeyKind.ONE_TIME,
    *,
    now: int = NOW,
    lifetime: int = 30 * DAY,
) -> PrekeySecret:
    return generate_prekey(
        owner,
        kind,
        now=now,
        lifetime=lifetime,
        x25519_private=_derive(f"{label} x25519"),
        mlkem_seed=_derive(f"{label} mlkem", 64),
        key_id=_derive(f"{label} key id", ID_LEN),
    )


ALICE = _identity("alice")
ALICE_STATIC = _static(ALICE, "alice")
BOB = _identity("bob")
BOB_STATIC = _static(BOB, "bob")
CAROL = _identity("carol")
BOB_PREKEY = _prekey(BOB, "bob one-time")
BOB_LAST_RESORT = _prekey(BOB, "bob last resort", PrekeyKind.LAST_RESORT)
ENVELOPE_ID = _derive("envelope id", ID_LEN)
RECORDS = (b"\x95\x01record one", b"record two" * 30)


def _seal(
    records: tuple[bytes, ...] = RECORDS,
    *,
    secret: PrekeySecret = BOB_PREKEY,
    recipient: Identity = BOB,
    sealed_ms: int = NOW_MS,
    envelope_id: bytes = ENVELOPE_ID,
) -> bytes:
    return seal(
        sender=ALICE,
        static=ALICE_STATIC,
        recipient=recipient.address,
        prekey=secret.public,
        envelope_id=envelope_id,
        records=records,
        sealed_ms=sealed_ms,
    )


ENVELOPE = _seal()


def _open(
    data: bytes = ENVELOPE,
    *,
    secret: PrekeySecret = BOB_PREKEY,
    recipient: Identity = BOB,
    now_ms: int = NOW_MS,
) -> Opened:
    return open_envelope(data, recipient=recipient.address, secret=secret, now_ms=now_ms)


def _refused(data: bytes = ENVELOPE, **kwargs: object) -> None:
    with pytest.raises(AuthenticationError) as info:
        _open(data, **kwargs)  # type: ignore[arg-type]
    assert type(info.value) is AuthenticationError
    assert str(info.value) == FAILED


# -- round trip ---------------------------------------------------------------------------


def test_round_trip_tells_the_recipient_who_sealed_it() -> None:
    opened = _open()
    assert opened == Opened(ALICE.address, ENVELOPE_ID, BOB_PREKEY.public.key_id, NOW_MS, RECORDS)


def test_round_trip_to_the_last_resort_prekey() -> None:
    data = _seal(secret=BOB_LAST_RESORT)
    assert _open(data, secret=BOB_LAST_RESORT).records == RECORDS


def test_envelope_layout_and_size() -> None:
    header = EnvelopeHeader.parse(ENVELOPE)
    assert header == EnvelopeHeader(ENVELOPE_ID, BOB_PREKEY.public.key_id)
    assert ENVELOPE[0] == ENVELOPE_VERSION == 1
    assert ENVELOPE[1:17] == ENVELOPE_ID
    assert ENVELOPE[17:33] == BOB_PREKEY.public.key_id
    assert HEADER_LEN + KEM_CT + 32 + 48 + payload_size(RECORDS) + 16 <= len(ENVELOPE)
    assert len(ENVELOPE) == padded_size(RECORDS) == ENVELOPE_BUCKETS[0]
    assert PROTOCOL_NAME == "Noise_Xpsk1_25519_ChaChaPoly_BLAKE2b"


def test_the_envelope_is_the_noise_message_of_xpsk1() -> None:
    """Rebuild the Noise message from the envelope's parts with HandshakeState."""
    kem_ct = ENVELOPE[HEADER_LEN : HEADER_LEN + KEM_CT]
    kem_ss = KemKeyPair(BOB_PREKEY.mlkem_seed).decapsulate(kem_ct)
    responder = HandshakeState(
        PROTOCOL_NAME,
        initiator=False,
        prologue=prologue(BOB.address, ENVELOPE_ID, BOB_PREKEY.public.key_id, kem_ct),
        static=KeyPair.from_private(BOB_PREKEY.x25519_private),
        psks=[kem_ss],
    )
    payload = responder.read_message(ENVELOPE[HEADER_LEN + KEM_CT :])
    assert responder.result().remote_static == ALICE_STATIC.keypair.public
    unpacked = _msgpack.unpack(payload, max_len=MAX_ENVELOPE, max_items=100)
    assert unpacked[:5] == (
        1,
        ALICE.public_key,
        ALICE_STATIC.certificate.to_bytes(),
        NOW_MS,
        RECORDS,
    )
    # Then the padding (mailbox.md §3.4): zeros, and at most one integer 0.
    assert all(p in (0, bytes(len(p))) for p in unpacked[5:])  # type: ignore[arg-type]


def test_prologue_layout() -> None:
    kem_ct = bytes(range(256)) * 4 + bytes(64)
    value = prologue(BOB.address, ENVELOPE_ID, b"k" * 16, kem_ct)
    assert value == (
        b"onionpost envelope\x01\x38"
        + BOB.address.service_id.encode()
        + ENVELOPE_ID
        + b"k" * 16
        + kem_ct
    )
    assert len(value) == 18 + 2 + 56 + 32 + 1088


def test_the_largest_payload_fits_exactly() -> None:
    # One record filling the payload: fixed part (160) + array (1) + bin16 header (3).
    fill = MAX_ENVELOPE_PAYLOAD - 160 - 1 - 3
    data = _seal((b"\x00" * fill,))
    assert len(data) == MAX_ENVELOPE
    assert _open(data).records == (b"\x00" * fill,)
    with pytest.raises(LocalProtocolError):
        _seal((b"\x00" * (fill + 1),))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.sampled_from([0, 1, 15, 255, 256, 1000, 65535 - 1, 65536 - 1]).flatmap(
            lambda n: st.just(b"r" * n)
        )
        | st.binary(max_size=300),
        min_size=1,
        max_size=20,
    )
)
def test_payload_size_is_exact(records: list[bytes]) -> None:
    payload = _msgpack.pack([1, ALICE.public_key, bytes(113), NOW_MS, records])
    assert payload_size(records) == len(payload)
    if payload_size(records) <= MAX_ENVELOPE_PAYLOAD:
        data = _seal(tuple(records))
        assert len(data) == padded_size(records) in ENVELOPE_BUCKETS
        assert padded_size(records) >= HEADER_LEN + KEM_CT + 32 + 48 + payload_size(records) + 16
    else:
        with pytest.raises(LocalProtocolError):
            _seal(tuple(records))


@pytest.mark.parametrize("target", [*ENVELOPE_BUCKETS, *(b - 1 for b in ENVELOPE_BUCKETS)])
def test_every_envelope_is_padded_to_a_bucket_exactly(target: int) -> None:
    """Whatever the records' size, even a gap of 1 or 258 bytes that one
    ``bin`` cannot fill exactly, the envelope is a bucket's size."""
    fixed = MAX_ENVELOPE - MAX_ENVELOPE_PAYLOAD + payload_size([b""]) - 2
    for gap in (0, 1, 2, 3, 257, 258, 259, 260):
        size = target - fixed - gap - 3  # a bin16 record
        if size < 256 or target - gap > MAX_ENVELOPE:
            continue
        records = (bytes(size),)
        data = _seal(records)
        assert len(data) == padded_size(records) in ENVELOPE_BUCKETS
        opened = open_envelope(data, recipient=BOB.address, secret=BOB_PREKEY, now_ms=NOW_MS)
        assert opened.records == records


def test_an_unpadded_envelope_from_an_earlier_sender_still_opens() -> None:
    payload = _msgpack.pack(
        [1, ALICE.public_key, ALICE_STATIC.certificate.to_bytes(), NOW_MS, list(RECORDS)]
    )
    plain = _seal_payload(payload)
    assert len(plain) == HEADER_LEN + KEM_CT + 32 + 48 + payload_size(RECORDS) + 16
    opened = open_envelope(plain, recipient=BOB.address, secret=BOB_PREKEY, now_ms=NOW_MS)
    assert opened.records == RECORDS


def test_payload_size_counts_array_headers() -> None:
    for count in (15, 16, 65535, 65536):
        records = [b""] * count
        assert payload_size(records) == len(
            _msgpack.pack([1, bytes(32), bytes(113), NOW_MS, records])
        )


def test_constants() -> None:
    assert MAX_ENVELOPE_PAYLOAD == 64_000 - 33 - 1088 - 32 - 48 - 16 == 62_783
    assert MIN_ENVELOPE == 33 + 1088 + 96 + 163
    assert MAX_ENVELOPE_AGE_MS == 40 * DAY * 1000
    assert PREKEY_LEN == 1306


MAILBOX_MD = Path(__file__).resolve().parents[2] / "protocol-spec" / "mailbox.md"


def test_the_spec_constants_table_matches_the_code() -> None:
    """mailbox.md §10 lists each constant with the value the code has."""
    text = MAILBOX_MD.read_text(encoding="utf-8")
    section = text[text.index("## 10. Constants") :]
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([0-9,]+)", section, re.M)
    assert len(rows) >= 10
    for name, value in rows:
        module = next(m for m in (envelope, pairing, identity) if hasattr(m, name))
        assert getattr(module, name) == int(value.replace(",", "")), name
    for name in ("MAX_ENVELOPE", "MAX_ENVELOPE_PAYLOAD", "MAX_ENVELOPE_AGE_MS", "ID_LEN"):
        assert name in dict(rows)
    buckets = ", ".join(str(b) for b in envelope.ENVELOPE_BUCKETS)
    assert f"| `ENVELOPE_BUCKETS` | ({buckets}) |" in section


# -- tampering ----------------------------------------------------------------------------


def test_any_bit_flipped_anywhere_fails_the_same_way() -> None:
    for index in range(len(ENVELOPE)):
        altered = bytearray(ENVELOPE)
        altered[index] ^= 1 << (index % 8)
        _refused(bytes(altered))


def test_truncated_or_extended_envelopes_fail_the_same_way() -> None:
    for size in (0, 1, HEADER_LEN, HEADER_LEN + KEM_CT, MIN_ENVELOPE - 1, len(ENVELOPE) - 1):
        _refused(ENVELOPE[:size])
    _refused(ENVELOPE + b"\x00")
    _refused(ENVELOPE + bytes(MAX_ENVELOPE))


def test_another_version_fails() -> None:
    _refused(b"\x02" + ENVELOPE[1:])
    with pytest.raises(MessageDecodeError):
        EnvelopeHeader.parse(b"\x02" + ENVELOPE[1:])


def test_wrong_recipient_address_fails() -> None:
    # Carol holding Bob's prekey secret is not enough: the address is in the prologue.
    _refused(recipient=CAROL)


def test_wrong_prekey_fails() -> None:
    _refused(secret=BOB_LAST_RESORT)
    _refused(secret=_prekey(BOB, "bob other one-time"))


def test_another_prekeys_secret_under_the_right_key_id_fails() -> None:
    other = _prekey(BOB, "bob other")
    impostor = generate_prekey(
        BOB,
        PrekeyKind.ONE_TIME,
        now=NOW,
        lifetime=30 * DAY,
        x25519_private=other.x25519_private,
        mlkem_seed=other.mlkem_seed,
        key_id=BOB_PREKEY.public.key_id,
    )
    _refused(secret=impostor)


def test_an_envelope_for_a_prekey_of_another_owner_fails() -> None:
    carols = _prekey(CAROL, "carol one-time")
    data = _seal(secret=carols, recipient=CAROL)
    assert _open(data, secret=carols, recipient=CAROL).sender == ALICE.address
    _refused(data, secret=carols, recipient=BOB)


# -- prekeys ------------------------------------------------------------------------------


def test_prekey_round_trip_and_layout() -> None:
    public = BOB_PREKEY.public
    data = public.to_bytes()
    assert len(data) == PREKEY_LEN
    assert SignedPrekey.parse(data) == public
    version, kind, key_id, not_after = struct.unpack_from(">BB16sQ", data)
    assert (version, kind, key_id, not_after) == (1, 1, public.key_id, NOW + 30 * DAY)
    assert data[26:58] == public.x25519 == KeyPair.from_private(BOB_PREKEY.x25519_private).public
    assert data[58:1242] == public.mlkem == KemKeyPair(BOB_PREKEY.mlkem_seed).public
    assert data[1242:] == public.signature
    # The signature covers the context, the owner's identity key and the body.
    verify_signature(
        BOB.public_key, public.signature, PREKEY_CONTEXT + BOB.public_key + data[:1242]
    )
    public.verify(BOB.address, now=NOW)


def test_prekey_secret_round_trip() -> None:
    assert PrekeySecret.from_bytes(BOB_PREKEY.to_bytes()) == BOB_PREKEY
    assert len(BOB_PREKEY.to_bytes()) == 1 + PREKEY_LEN + 32 + 64


def test_prekey_secret_must_match_its_public_half() -> None:
    other = _prekey(BOB, "bob other")
    for mixed in (
        replace(BOB_PREKEY, mlkem_seed=other.mlkem_seed),
        replace(BOB_PREKEY, x25519_private=other.x25519_private),
    ):
        with pytest.raises(ConfigError):
            PrekeySecret.from_bytes(mixed.to_bytes())
    for junk in (b"", BOB_PREKEY.to_bytes()[:-1], b"\x02" + BOB_PREKEY.to_bytes()[1:]):
        with pytest.raises(ConfigError):
            PrekeySecret.from_bytes(junk)


def test_secrets_never_show_in_repr() -> None:
    text = repr(BOB_PREKEY) + repr(BOB_PREKEY.public) + repr(_open())
    for secret in (BOB_PREKEY.x25519_private, BOB_PREKEY.mlkem_seed):
        assert secret.hex() not in text
        assert repr(secret) not in text
    assert "record" not in repr(_open())
    assert BOB_PREKEY.public.key_id.hex() in repr(BOB_PREKEY.public)


def test_tampered_prekey_signature_is_refused_before_sealing() -> None:
    signature = bytearray(BOB_PREKEY.public.signature)
    signature[5] ^= 0x20
    tampered = replace(BOB_PREKEY, public=replace(BOB_PREKEY.public, signature=bytes(signature)))
    with pytest.raises(AuthenticationError):
        tampered.public.verify(BOB.address, now=NOW)
    with pytest.raises(AuthenticationError):
        _seal(secret=tampered)


@pytest.mark.parametrize(
    "change",
    [
        {"kind": PrekeyKind.LAST_RESORT},
        {"key_id": b"\x00" * 16},
        {"not_after": NOW + 31 * DAY},
        {"x25519": KeyPair.from_private(_derive("mallory x25519")).public},
        {"mlkem": KemKeyPair(_derive("mallory mlkem", 64)).public},
    ],
    ids=lambda change: next(iter(change)),
)
def test_every_prekey_field_is_signed(change: dict[str, object]) -> None:
    with pytest.raises(AuthenticationError):
        replace(BOB_PREKEY.public, **change).verify(BOB.address, now=NOW)  # type: ignore[arg-type]


def test_a_prekey_of_another_owner_is_refused() -> None:
    with pytest.raises(AuthenticationError):
        BOB_PREKEY.public.verify(CAROL.address, now=NOW)
    with pytest.raises(AuthenticationError):
        _seal(recipient=CAROL)


def test_expired_prekey_is_refused() -> None:
    not_after = BOB_PREKEY.public.not_after
    BOB_PREKEY.public.verify(BOB.address, now=not_after + CERT_CLOCK_SKEW)
    with pytest.raises(AuthenticationError):
        BOB_PREKEY.public.verify(BOB.address, now=not_after + CERT_CLOCK_SKEW + 1)
    with pytest.raises(AuthenticationError):
        _seal(sealed_ms=(not_after + CERT_CLOCK_SKEW + 1) * 1000)


def test_a_prekey_valid_too_far_ahead_is_refused() -> None:
    long_lived = _prekey(BOB, "bob long", now=NOW, lifetime=MAX_PREKEY_LIFETIME)
    long_lived.public.verify(BOB.address, now=NOW)
    # Checked long before it was issued: valid for more than the longest lifetime.
    with pytest.raises(AuthenticationError):
        long_lived.public.verify(BOB.address, now=NOW - CERT_CLOCK_SKEW - 1)
    with pytest.raises(ConfigError):
        _prekey(BOB, "bob too long", lifetime=MAX_PREKEY_LIFETIME + 1)
    with pytest.raises(ConfigError):
        _prekey(BOB, "bob no life", lifetime=0)


def test_prekey_parse_refuses_bad_structure() -> None:
    data = BOB_PREKEY.public.to_bytes()
    for junk in (b"", data[:-1], data + b"\x00", b"\x02" + data[1:], data[:1] + b"\x03" + data[2:]):
        with pytest.raises(MessageDecodeError):
            SignedPrekey.parse(junk)


def test_a_prekey_with_wrong_field_sizes_cannot_be_made() -> None:
    with pytest.raises(ConfigError):
        replace(BOB_PREKEY.public, key_id=b"short")
    with pytest.raises(ConfigError):
        replace(BOB_PREKEY.public, kind=7)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        replace(BOB_PREKEY.public, not_after=-1)


def test_random_prekeys_are_fresh() -> None:
    a = generate_prekey(BOB, PrekeyKind.ONE_TIME, now=NOW, lifetime=DAY)
    b = generate_prekey(BOB, PrekeyKind.ONE_TIME, now=NOW, lifetime=DAY)
    assert len({a.public.key_id, b.public.key_id}) == 2
    assert a.x25519_private != b.x25519_private
    assert a.mlkem_seed != b.mlkem_seed
    a.public.verify(BOB.address, now=NOW)


# -- time -----------------------------------------------------------------------------------


def test_an_envelope_too_old_is_refused() -> None:
    assert _open(now_ms=NOW_MS + MAX_ENVELOPE_AGE_MS).records == RECORDS
    _refused(now_ms=NOW_MS + MAX_ENVELOPE_AGE_MS + 1)


def test_an_envelope_from_the_future_is_refused() -> None:
    assert _open(now_ms=NOW_MS - CERT_CLOCK_SKEW * 1000).records == RECORDS
    _refused(now_ms=NOW_MS - CERT_CLOCK_SKEW * 1000 - 1)


def test_sealed_after_the_senders_certificate_expired_is_refused() -> None:
    # Alice's static key expired long ago: sealing refuses, and so does opening
    # an envelope that claims that time.
    old_static = _static(ALICE, "alice old", now=NOW - 200 * DAY)
    with pytest.raises(LocalProtocolError):
        seal(
            sender=ALICE,
            static=old_static,
            recipient=BOB.address,
            prekey=BOB_PREKEY.public,
            envelope_id=ENVELOPE_ID,
            records=RECORDS,
            sealed_ms=NOW_MS,
        )
    forged = _seal_payload(
        _payload(certificate=old_static.certificate.to_bytes()), static=old_static.keypair
    )
    _refused(forged)


def test_seal_refuses_misuse() -> None:
    with pytest.raises(LocalProtocolError):
        _seal(())
    with pytest.raises(LocalProtocolError):
        _seal(("text",))  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        _seal(envelope_id=b"short")
    with pytest.raises(LocalProtocolError):
        _seal(sealed_ms=2**32 - 1)
    with pytest.raises(LocalProtocolError):
        _seal(sealed_ms=2**64)


# -- the payload, built by hand ---------------------------------------------------------------


def _payload(
    *,
    version: object = 1,
    identity: object = ALICE.public_key,
    certificate: object = None,
    sealed_ms: object = NOW_MS,
    records: object = RECORDS,
    extras: tuple[object, ...] = (),
) -> bytes:
    if certificate is None:
        certificate = ALICE_STATIC.certificate.to_bytes()
    return _msgpack.pack([version, identity, certificate, sealed_ms, records, *extras])


def _seal_payload(
    payload: bytes,
    *,
    static: KeyPair = ALICE_STATIC.keypair,
    secret: PrekeySecret = BOB_PREKEY,
) -> bytes:
    """seal() without its checks: any payload, sealed with Alice's keys."""
    kem_ct, kem_ss = mlkem768_encapsulate(secret.public.mlkem)
    handshake = HandshakeState(
        PROTOCOL_NAME,
        initiator=True,
        prologue=prologue(BOB.address, ENVELOPE_ID, secret.public.key_id, kem_ct),
        static=static,
        remote_static=secret.public.x25519,
        psks=[kem_ss],
    )
    header = bytes([1]) + ENVELOPE_ID + secret.public.key_id
    return header + kem_ct + handshake.write_message(payload)


def test_hand_built_payload_opens() -> None:
    assert _open(_seal_payload(_payload())).records == RECORDS


def test_extra_payload_elements_are_ignored() -> None:
    assert _open(_seal_payload(_payload(extras=(7, b"later")))).records == RECORDS


@pytest.mark.parametrize(
    "payload",
    [
        _payload(version=2),
        _payload(version=True),
        _payload(identity=b"\x00" * 31),
        _payload(identity="not bytes"),
        _payload(identity=CAROL.public_key),  # the certificate is Alice's
        _payload(certificate=b"\x00" * 113),
        _payload(certificate=_static(ALICE, "alice other").certificate.to_bytes()),
        _payload(sealed_ms=2**32 - 1),
        _payload(sealed_ms=-1),
        _payload(sealed_ms="now"),
        _payload(records=()),
        _payload(records=(b"ok", "text")),
        _payload(records=b"not an array"),
        _msgpack.pack([1, ALICE.public_key, ALICE_STATIC.certificate.to_bytes(), NOW_MS]),
        _msgpack.pack({"version": 1}),
        _payload() + b"\x00",
        b"",
        # Not canonical: the version as uint 8 instead of a positive fixint.
        b"\x95\xcc\x01" + _payload()[2:],
    ],
)
def test_malformed_payload_fails_the_same_way(payload: bytes) -> None:
    _refused(_seal_payload(payload))


def test_a_certificate_of_another_identity_is_refused() -> None:
    # Alice's certificate under Carol's name is refused.
    _refused(_seal_payload(_payload(identity=CAROL.public_key)))
    # The certificate names the sender, as in the live handshake: a certificate
    # is no proof of possession, so Carol may certify Alice's static key, and an
    # envelope sealed with that key and Carol's certificate opens as Carol's.
    # Only the holder of Alice's static private key can seal one, and Alice
    # names herself; Carol gains nothing she could not do with her own key.
    certificate = StaticKeyCertificate.issue(CAROL, ALICE_STATIC.keypair.public, now=NOW)
    sealed = _payload(identity=CAROL.public_key, certificate=certificate.to_bytes())
    assert _open(_seal_payload(sealed)).sender == CAROL.address


# -- what each key opens ----------------------------------------------------------------------


def test_hybrid_x25519_keys_without_the_mlkem_key_do_not_open() -> None:
    """An attacker with the prekey's X25519 private key and Alice's static private key,
    but not the ML-KEM decapsulation key, cannot open the envelope."""
    attacker = replace(BOB_PREKEY, mlkem_seed=_derive("attacker mlkem", 64))
    _refused(secret=attacker)
    # By hand, with every X25519 secret of both sides but a wrong KEM secret.
    kem_ct = ENVELOPE[HEADER_LEN : HEADER_LEN + KEM_CT]
    for guess in (bytes(32), KemKeyPair(attacker.mlkem_seed).decapsulate(kem_ct)):
        responder = HandshakeState(
            PROTOCOL_NAME,
            initiator=False,
            prologue=prologue(BOB.address, ENVELOPE_ID, BOB_PREKEY.public.key_id, kem_ct),
            static=KeyPair.from_private(BOB_PREKEY.x25519_private),
            psks=[guess],
        )
        with pytest.raises(AuthenticationError):
            responder.read_message(ENVELOPE[HEADER_LEN + KEM_CT :])


def test_hybrid_the_mlkem_key_without_the_x25519_key_does_not_open() -> None:
    attacker = replace(BOB_PREKEY, x25519_private=_derive("attacker x25519"))
    _refused(secret=attacker)
    # Nor with Alice's static private key in place of the prekey's.
    _refused(secret=replace(BOB_PREKEY, x25519_private=ALICE_STATIC.keypair.private))


def test_forward_secrecy_once_the_prekey_secret_is_gone() -> None:
    """Bob deleted BOB_PREKEY's secret: nothing else Bob holds opens the envelope."""
    key_id = BOB_PREKEY.public.key_id
    remaining = [
        BOB.seed,
        BOB_STATIC.keypair.private,
        BOB_LAST_RESORT.x25519_private,
        _prekey(BOB, "bob next one-time").x25519_private,
    ]
    seeds = [BOB.seed * 2, BOB_LAST_RESORT.mlkem_seed, _prekey(BOB, "bob next").mlkem_seed]
    for x25519_private in remaining:
        for mlkem_seed in seeds:
            candidate = generate_prekey(
                BOB,
                PrekeyKind.ONE_TIME,
                now=NOW,
                lifetime=DAY,
                x25519_private=x25519_private,
                mlkem_seed=mlkem_seed,
                key_id=key_id,
            )
            _refused(secret=candidate)


def test_deniability_the_recipient_alone_can_forge_an_envelope_from_alice() -> None:
    """Bob, with his prekey secret and Alice's *public* static key and certificate,
    makes an envelope that opens as sealed by Alice: it proves nothing to a third
    party about Alice (mailbox.md §Security properties, deniability)."""
    prekey_private = BOB_PREKEY.x25519_private
    alice_static_public = ALICE_STATIC.keypair.public  # public: sent in every handshake
    kem_ct, kem_ss = mlkem768_encapsulate(BOB_PREKEY.public.mlkem)
    forged_id = _derive("forged id", ID_LEN)
    # Noise_Xpsk1 by hand: -> e, es, s, ss, psk, with ss = DH(prekey, Alice's s).
    state = SymmetricState(PROTOCOL_NAME.encode(), HASHES["BLAKE2b"])
    state.mix_hash(prologue(BOB.address, forged_id, BOB_PREKEY.public.key_id, kem_ct))
    state.mix_hash(BOB_PREKEY.public.x25519)  # pre-message <- s
    e = KeyPair.from_private(_derive("forged ephemeral"))
    state.mix_hash(e.public)
    state.mix_key(e.public)  # Noise §9.2
    state.mix_key(x25519(e.private, BOB_PREKEY.public.x25519))  # es
    encrypted_s = state.encrypt_and_hash(alice_static_public)
    state.mix_key(x25519(prekey_private, alice_static_public))  # ss, from Bob's side
    state.mix_key_and_hash(kem_ss)  # psk
    payload = _payload(records=(b"words Alice never wrote",))
    message = e.public + encrypted_s + state.encrypt_and_hash(payload)
    forged = bytes([1]) + forged_id + BOB_PREKEY.public.key_id + kem_ct + message
    opened = _open(forged)
    assert opened.sender == ALICE.address
    assert opened.records == (b"words Alice never wrote",)


def test_replayed_envelope_opens_again_the_id_is_for_deduplication() -> None:
    # Opening is stateless: the same bytes open twice with the same id. The
    # mailbox stores an id once and the owner drops ids it has seen (mailbox.md).
    assert _open().envelope_id == _open().envelope_id == ENVELOPE_ID


def test_two_seals_of_the_same_records_differ() -> None:
    assert _seal() != _seal()  # fresh ephemeral and KEM encapsulation each time


# -- fuzz --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_give_only_our_errors(data: bytes) -> None:
    for parse in (EnvelopeHeader.parse, SignedPrekey.parse):
        with contextlib.suppress(OnionpostError):
            parse(data)
    _refused(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=0, max_size=1500), st.integers(min_value=0, max_value=len(ENVELOPE)))
def test_random_tails_after_a_real_header_give_the_one_error(tail: bytes, cut: int) -> None:
    assume(ENVELOPE[:cut] + tail != ENVELOPE)
    _refused(ENVELOPE[:cut] + tail)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=PREKEY_LEN, max_size=PREKEY_LEN))
def test_random_prekeys_parse_or_fail_and_never_verify(data: bytes) -> None:
    data = b"\x01\x02" + data[2:]
    prekey = SignedPrekey.parse(data)
    with pytest.raises(AuthenticationError):
        prekey.verify(BOB.address, now=NOW)
