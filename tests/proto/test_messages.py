"""The record codec (onionpost.proto.messages): strict decoding, limits, evolution.

Wire examples are written out byte by byte from the msgpack spec, not from
``encode``. Every limit is tried on both sides of its bound, and every bad
value both ways: ``decode`` must raise MessageDecodeError (the peer sent it)
and ``encode`` LocalProtocolError (we tried to send it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import CloseCode, LocalProtocolError, MessageDecodeError
from onionpost.limits import (
    FILE_CHUNK_SIZE,
    MAX_ACK_IDS,
    MAX_CLOSE_REASON,
    MAX_CONTENT_TYPE,
    MAX_FILE_NAME,
    MAX_FILE_SIZE,
    MAX_RECORD_FIELDS,
    MAX_RECORD_SIZE,
    MAX_TEXT_BODY,
    MAX_TIME_MS,
    MAX_TRUST_STAPLE_PART,
)
from onionpost.proto import messages as m
from onionpost.proto.messages import (
    Ack,
    Close,
    FileAccept,
    FileCancel,
    FileChunk,
    FileComplete,
    FileOffer,
    FileReject,
    FileRejectReason,
    MessageType,
    Ping,
    Pong,
    Read,
    Text,
    UnknownExtension,
    decode,
    encode,
)

ID = bytes(range(16))
ID2 = bytes(range(16, 32))
HASH = bytes(range(64))
U64_MAX = 2**64 - 1


def pack(*values: object) -> bytes:
    data: bytes = msgpack.packb(list(values), use_bin_type=True)
    return data


# -- strategies ---------------------------------------------------------------------------

ids = st.binary(min_size=16, max_size=16)
u64 = st.integers(0, U64_MAX)
times = st.integers(0, MAX_TIME_MS)  # a record's created_ms
i63 = st.integers(0, 2**63 - 1)  # what a store keeps


def bounded_text(max_bytes: int, *, min_size: int = 0) -> st.SearchStrategy[str]:
    # Long enough to cross the fixstr / str 8 boundaries, short enough to be quick.
    return st.text(min_size=min_size, max_size=min(max_bytes, 300)).filter(
        lambda s: len(s.encode()) <= max_bytes
    )


names = bounded_text(MAX_FILE_NAME, min_size=1).filter(
    lambda n: not set(n) & set("/\\\x00") and n not in {".", ".."}
)
id_lists = st.lists(ids, min_size=1, max_size=40).map(tuple)
keys = st.binary(min_size=32, max_size=32)

# What a label field may carry on the wire: printable ASCII (the receiver
# parses it with its own schemes), or nothing (an earlier sender's record).
wire_labels = (
    st.just("")
    | st.sampled_from(["TLP:RED", "CUI//SP-CTI//NOFORN"])
    | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
)

STRATEGIES: dict[type, st.SearchStrategy[object]] = {
    Text: st.builds(
        Text, ids, times, bounded_text(MAX_TEXT_BODY), bounded_text(MAX_CONTENT_TYPE), wire_labels
    ),
    Ack: st.builds(Ack, id_lists),
    Read: st.builds(Read, id_lists),
    FileOffer: st.builds(
        FileOffer,
        ids,
        times,
        names,
        st.integers(0, MAX_FILE_SIZE),
        st.binary(min_size=64, max_size=64),
        bounded_text(MAX_CONTENT_TYPE),
        wire_labels,
    ),
    FileAccept: st.builds(FileAccept, ids, u64),
    FileChunk: st.builds(FileChunk, ids, u64, st.binary(max_size=2000)),
    FileComplete: st.builds(FileComplete, ids),
    FileReject: st.builds(FileReject, ids, u64),
    FileCancel: st.builds(FileCancel, ids, u64),
    Ping: st.builds(Ping, u64),
    Pong: st.builds(Pong, u64),
    Close: st.builds(Close, u64, bounded_text(MAX_CLOSE_REASON)),
    m.MbPair: st.builds(m.MbPair, u64, keys, keys),
    m.MbRegister: st.builds(m.MbRegister, u64, keys, keys),
    m.MbDeregister: st.builds(m.MbDeregister, u64, keys),
    m.MbPrekeys: st.builds(
        m.MbPrekeys,
        u64,
        st.lists(st.binary(max_size=m.MAX_PREKEY_SIZE), min_size=1, max_size=3).map(tuple),
    ),
    m.MbFetch: st.builds(m.MbFetch, u64, i63),
    m.MbDelete: st.builds(m.MbDelete, u64, id_lists),
    m.MbStatus: st.builds(m.MbStatus, u64),
    m.MbGetPrekey: st.builds(m.MbGetPrekey, u64, keys),
    m.MbDeposit: st.builds(m.MbDeposit, u64, keys, st.binary(max_size=2000)),
    m.MbWipe: st.builds(m.MbWipe, u64),
    m.MbResult: st.builds(m.MbResult, u64, u64, bounded_text(MAX_CLOSE_REASON), u64),
    m.MbPrekey: st.builds(m.MbPrekey, u64, st.binary(max_size=2000)),
    m.MbEnvelope: st.builds(m.MbEnvelope, u64, ids, u64, st.binary(max_size=2000)),
    m.MbUsage: st.builds(m.MbUsage, u64, i63, i63, i63, u64, u64),
    m.MailboxInfo: st.builds(m.MailboxInfo, st.binary(max_size=500)),
    m.RgEnrol: st.builds(m.RgEnrol, u64, keys, keys),
    m.RgRenew: st.builds(m.RgRenew, u64),
    m.RgFetch: st.builds(m.RgFetch, u64, u64),
    m.RgResult: st.builds(m.RgResult, u64, u64, bounded_text(MAX_CLOSE_REASON)),
    m.RgEndorsement: st.builds(m.RgEndorsement, u64, st.binary(min_size=1, max_size=500)),
    m.RgList: st.builds(
        m.RgList,
        u64,
        st.binary(min_size=1, max_size=500),
        st.binary(min_size=1, max_size=500),
        st.binary(min_size=1, max_size=500),
        st.integers(0, 128).map(lambda n: bytes(32 * n)),
    ),
    m.LogCosign: st.builds(
        m.LogCosign,
        st.binary(max_size=500),
        u64,
        st.integers(0, 128).map(lambda n: bytes(32 * n)),
    ),
    m.LogCosigned: st.builds(m.LogCosigned, st.sampled_from([0, 1]), st.binary(max_size=500)),
    m.GroupOps: st.builds(
        m.GroupOps, ids, st.lists(st.binary(max_size=300), min_size=1, max_size=40).map(tuple)
    ),
    m.GroupFetch: st.builds(m.GroupFetch, ids, st.integers(0, 64).map(lambda n: bytes(32 * n))),
    m.GroupText: st.builds(
        m.GroupText,
        ids,
        times,
        bounded_text(2000),
        bounded_text(MAX_CONTENT_TYPE),
        ids,
        st.integers(1, 8).map(lambda n: bytes(32 * n)),
    ),
    m.GroupFileOffer: st.builds(
        m.GroupFileOffer,
        ids,
        times,
        names,
        st.integers(0, MAX_FILE_SIZE),
        st.binary(min_size=64, max_size=64),
        bounded_text(MAX_CONTENT_TYPE),
        ids,
        st.integers(1, 8).map(lambda n: bytes(32 * n)),
        wire_labels,
    ),
    m.LabelLimit: st.builds(
        m.LabelLimit, st.lists(wire_labels.filter(bool), max_size=4).map(tuple)
    ),
    m.TrustStaple: st.builds(
        m.TrustStaple,
        st.binary(min_size=1, max_size=500),
        st.binary(max_size=500),
        st.binary(max_size=500),
    ),
    m.TrustGossip: st.one_of(
        st.builds(
            m.TrustGossip,
            st.binary(min_size=1, max_size=500),
            st.binary(min_size=1, max_size=500),
            st.binary(max_size=500),
        ),
        st.builds(
            m.TrustGossip,
            st.binary(min_size=1, max_size=500),
            st.binary(max_size=500),
            st.binary(min_size=1, max_size=500),
        ),
    ),
    m.TrustRotation: st.builds(
        m.TrustRotation,
        st.binary(min_size=1, max_size=500),
        st.binary(min_size=32, max_size=32),
    ),
}

# Any msgpack value, including the kinds records never hold.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), U64_MAX)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


# -- round trips --------------------------------------------------------------------------


def test_every_message_type_has_a_strategy() -> None:
    assert {cls.TAG for cls in STRATEGIES} == set(MessageType)


@pytest.mark.parametrize("cls", STRATEGIES, ids=lambda c: c.__name__)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_round_trip(cls: type, data: st.DataObject) -> None:
    message = data.draw(STRATEGIES[cls])
    wire = encode(message)  # type: ignore[arg-type]
    assert len(wire) <= MAX_RECORD_SIZE
    back = decode(wire)
    assert type(back) is cls
    assert back == message
    assert encode(back) == wire  # type: ignore[arg-type]


def test_wire_tags() -> None:
    assert {t.name: t.value for t in MessageType} == {
        "TEXT": 1,
        "ACK": 2,
        "READ": 3,
        "FILE_OFFER": 4,
        "FILE_ACCEPT": 5,
        "FILE_CHUNK": 6,
        "FILE_COMPLETE": 7,
        "FILE_REJECT": 8,
        "FILE_CANCEL": 9,
        "PING": 10,
        "PONG": 11,
        "CLOSE": 12,
        "MB_PAIR": 32,
        "MB_REGISTER": 33,
        "MB_DEREGISTER": 34,
        "MB_PREKEYS": 35,
        "MB_FETCH": 36,
        "MB_DELETE": 37,
        "MB_STATUS": 38,
        "MB_GET_PREKEY": 39,
        "MB_DEPOSIT": 40,
        "MB_WIPE": 41,
        "MB_RESULT": 42,
        "MB_PREKEY": 43,
        "MB_ENVELOPE": 44,
        "MB_USAGE": 45,
        "MAILBOX_INFO": 46,
        "RG_ENROL": 48,
        "RG_RENEW": 49,
        "RG_FETCH": 50,
        "RG_RESULT": 51,
        "RG_ENDORSEMENT": 52,
        "RG_LIST": 53,
        "LOG_COSIGN": 72,
        "LOG_COSIGNED": 73,
        "GROUP_OPS": 90,
        "GROUP_FETCH": 91,
        "GROUP_TEXT": 92,
        "GROUP_FILE_OFFER": 93,
        "LABEL_LIMIT": 74,
        "TRUST_STAPLE": 80,
        "TRUST_GOSSIP": 81,
        "TRUST_ROTATION": 82,
    }


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (Ping(5), b"\x92\x0a\x05"),
        (Pong(U64_MAX), b"\x92\x0b\xcf" + b"\xff" * 8),
        (Close(0), b"\x93\x0c\x00\xa0"),
        (Close(3, "bye"), b"\x93\x0c\x03\xa3bye"),
        (Ack((ID,)), b"\x92\x02\x91\xc4\x10" + ID),
        (FileComplete(ID), b"\x92\x07\xc4\x10" + ID),
        (FileAccept(ID, 4096), b"\x93\x05\xc4\x10" + ID + b"\xcd\x10\x00"),
        (
            FileChunk(ID, U64_MAX, bytes(300)),
            b"\x94\x06\xc4\x10" + ID + b"\xcf" + b"\xff" * 8 + b"\xc5\x01\x2c" + bytes(300),
        ),
        # spec.md §5.2: fixarray of 5 (tag and 4 fields), tag 1, bin 8 id,
        # uint 64 time, str 8 body of 200 bytes, fixstr content type; 242 bytes.
        (
            Text(ID, 1_800_000_000_000, "b" * 200),
            bytes.fromhex("95 01 c4 10")
            + ID
            + bytes.fromhex("cf 00 00 01 a3 18 5c 50 00")
            + bytes.fromhex("d9 c8")
            + b"b" * 200
            + bytes.fromhex("aa 74 65 78 74 2f 70 6c 61 69 6e"),
        ),
        (Ping(7), bytes.fromhex("92 0a 07")),
        (Pong(7), bytes.fromhex("92 0b 07")),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, bytes) else "",
)
def test_wire_examples(message: object, wire: bytes) -> None:
    assert encode(message) == wire  # type: ignore[arg-type]
    assert decode(wire) == message


def test_the_spec_text_example_is_242_bytes() -> None:
    assert len(encode(Text(ID, 1_800_000_000_000, "b" * 200))) == 242


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (bytes.fromhex("92 0a cc 05"), Ping(5)),
        (bytes.fromhex("92 0a cf 00 00 00 00 00 00 00 05"), Ping(5)),
        (bytes.fromhex("92 0a d0 05"), Ping(5)),  # signed formats, in range
        (bytes.fromhex("92 0a d3 00 00 00 00 00 00 00 05"), Ping(5)),
        (bytes.fromhex("dc 00 02 0a 05"), Ping(5)),  # array 16 header
        (bytes.fromhex("dd 00 00 00 02 0a 05"), Ping(5)),  # array 32 header
        (bytes.fromhex("93 0c 00 d9 00"), Close(0)),  # str 8 of length 0
        (bytes.fromhex("93 0c 00 da 00 02") + b"ok", Close(0, "ok")),
        (bytes.fromhex("92 07 c5 00 10") + ID, FileComplete(ID)),  # bin 16
        (bytes.fromhex("92 07 c6 00 00 00 10") + ID, FileComplete(ID)),  # bin 32
    ],
    ids=lambda v: v.hex() if isinstance(v, bytes) else "",
)
def test_non_shortest_encodings_are_accepted(wire: bytes, message: object) -> None:
    # spec.md §5.1: receivers SHOULD accept them; senders never produce them.
    assert decode(wire) == message
    assert encode(message) != wire  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "wire",
    [bytes.fromhex("92 0a d0 fb"), bytes.fromhex("92 0a d3 ff ff ff ff ff ff ff ff")],
    ids=["int8", "int64"],
)
def test_negative_integers_in_signed_formats_are_refused(wire: bytes) -> None:
    with pytest.raises(MessageDecodeError):
        decode(wire)


def test_defaults() -> None:
    assert Text(ID, 0, "x").content_type == "text/plain"
    assert FileOffer(ID, 0, "f", 0, HASH).content_type == "application/octet-stream"
    assert Close(0).reason == ""


# -- decoding arbitrary input -------------------------------------------------------------


def _decodes_or_refuses(data: bytes) -> None:
    try:
        record = decode(data)
    except MessageDecodeError:
        return
    assert isinstance(record, (UnknownExtension, *STRATEGIES))


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300))
def test_random_bytes_decode_or_raise_message_decode_error(data: bytes) -> None:
    _decodes_or_refuses(data)


@settings(max_examples=150, deadline=None)
@given(value=msgpack_values)
def test_random_msgpack_values_decode_or_raise_message_decode_error(value: object) -> None:
    _decodes_or_refuses(msgpack.packb(value, use_bin_type=True))


@settings(max_examples=150, deadline=None)
@given(tag=st.sampled_from(list(MessageType)), fields=st.lists(msgpack_values, max_size=6))
def test_random_fields_under_a_known_tag(tag: MessageType, fields: list) -> None:
    _decodes_or_refuses(pack(int(tag), *fields))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # never used in msgpack
        pack(10, 1)[:-1],  # truncated
        pack(10, 1) + b"\x00",  # a second value after the record
        msgpack.packb(10),
        msgpack.packb("record"),
        msgpack.packb({10: 1}),
        msgpack.packb([]),
        msgpack.packb(msgpack.ExtType(1, b"x")),
        pack(10, msgpack.ExtType(1, b"x")),
        b"\x93\x0c\x00\xa1\xff",  # invalid UTF-8 in a str
        b"\x91" * 2000 + b"\x01",  # nested beyond msgpack's stack
        pack(6, ID, 0, bytes(MAX_RECORD_SIZE)),  # larger than any frame holds
    ],
    ids=[
        "empty",
        "reserved-byte",
        "truncated",
        "trailing-bytes",
        "int",
        "str",
        "map",
        "empty-array",
        "ext",
        "ext-field",
        "bad-utf8",
        "too-deep",
        "too-large",
    ],
)
def test_not_a_record(data: bytes) -> None:
    with pytest.raises(MessageDecodeError) as info:
        decode(data)
    assert info.value.close_code == CloseCode.BAD_MESSAGE


# -- tags and evolution -------------------------------------------------------------------


@pytest.mark.parametrize("tag", [0, -1, 13, 40, 63, 128, 255, 2**32, U64_MAX, -(2**63)])
def test_unknown_core_and_out_of_range_tags_are_refused(tag: int) -> None:
    with pytest.raises(MessageDecodeError) as info:
        decode(pack(tag, 1))
    assert info.value.close_code == CloseCode.BAD_MESSAGE


@pytest.mark.parametrize("tag", ["1", True, False, b"\x01", 1.0, None, [1]])
def test_a_tag_is_an_integer(tag: object) -> None:
    with pytest.raises(MessageDecodeError):
        decode(pack(tag, 5))


@pytest.mark.parametrize("tag", [64, 65, 100, 127])
@pytest.mark.parametrize(
    "fields", [(), (1,), ("text", b"bin", U64_MAX, -5), ((1, 2), ("x",))], ids=str
)
def test_extension_tags_decode_to_unknown_extension(tag: int, fields: tuple) -> None:
    assert decode(pack(tag, *fields)) == UnknownExtension(tag)


@pytest.mark.parametrize("value", [1.5, None, True], ids=["float", "nil", "bool"])
def test_extension_records_hold_only_the_kinds_records_may(value: object) -> None:
    with pytest.raises(MessageDecodeError):
        decode(pack(64, value))


@pytest.mark.parametrize(
    "extra", [(1,), ("later",), (b"x", 2, "y"), tuple(range(MAX_RECORD_FIELDS - 1))], ids=str
)
def test_trailing_fields_from_a_later_version_are_ignored(extra: tuple) -> None:
    assert decode(pack(10, 5, *extra)) == Ping(5)
    room = MAX_RECORD_FIELDS - 5  # Text has five fields of its own
    assert decode(pack(1, ID, 7, "hi", "text/plain", "", *extra[:room])) == Text(ID, 7, "hi")


def test_at_most_sixteen_fields() -> None:
    assert decode(pack(10, 5, *range(MAX_RECORD_FIELDS - 1))) == Ping(5)
    with pytest.raises(MessageDecodeError):
        decode(pack(10, 5, *range(MAX_RECORD_FIELDS)))


@pytest.mark.parametrize(
    "extra", [1.5, None, True, [1], {"a": 1}], ids=["float", "nil", "bool", "array", "map"]
)
def test_trailing_fields_are_still_strict(extra: object) -> None:
    with pytest.raises(MessageDecodeError):
        decode(pack(10, 5, extra))


@pytest.mark.parametrize(
    "fields",
    [(10,), (1, ID, 7, "hi"), (4, ID, 1, "f", 1), (6, ID, 0), (12,)],
    ids=["ping", "text", "file-offer", "file-chunk", "close"],
)
def test_missing_fields_are_refused(fields: tuple) -> None:
    with pytest.raises(MessageDecodeError):
        decode(pack(*fields))


# -- limits, both ways --------------------------------------------------------------------

TOO_MANY_IDS = tuple(i.to_bytes(16, "big") for i in range(MAX_ACK_IDS + 1))

# (record class, field values) that break a rule.
BAD = {
    "text-body-too-long": (Text, (ID, 0, "x" * (MAX_TEXT_BODY + 1), "text/plain")),
    "text-body-too-many-bytes": (Text, (ID, 0, "\u00e9" * (MAX_TEXT_BODY // 2 + 1), "t")),
    "content-type-too-long": (Text, (ID, 0, "x", "c" * (MAX_CONTENT_TYPE + 1))),
    "text-body-bytes": (Text, (ID, 0, b"x", "text/plain")),
    "id-15-bytes": (Text, (ID[:15], 0, "x", "text/plain")),
    "id-17-bytes": (FileComplete, (ID + b"\x00",)),
    "id-as-text": (FileComplete, ("0" * 16,)),
    "too-many-ids": (Ack, (TOO_MANY_IDS,)),
    "no-ids": (Read, ((),)),
    "short-id-in-list": (Ack, ((ID, ID[:15]),)),
    "nested-id-list": (Ack, (((ID,),),)),
    "ids-not-a-list": (Ack, (ID,)),
    "bool-for-int": (Ping, (True,)),
    "negative-int": (Ping, (-1,)),
    "float": (Ping, (1.0,)),
    "nil": (Pong, (None,)),
    "map": (Ping, ({},)),
    "nested-array": (FileAccept, (ID, (0,))),
    "int-as-text": (FileCancel, (ID, "1")),
    "hash-63-bytes": (FileOffer, (ID, 0, "f", 1, HASH[:63], "t")),
    "file-too-large": (FileOffer, (ID, 0, "f", MAX_FILE_SIZE + 1, HASH, "t")),
    "name-too-long": (FileOffer, (ID, 0, "n" * (MAX_FILE_NAME + 1), 1, HASH, "t")),
    "chunk-data-as-text": (FileChunk, (ID, 0, "data")),
    "chunk-offset-negative": (FileChunk, (ID, -1, b"")),
    "close-reason-too-long": (Close, (0, "r" * (MAX_CLOSE_REASON + 1))),
    "close-code-bool": (Close, (False, "")),
    "reject-reason-negative": (FileReject, (ID, -1)),
}

BAD_NAMES = ["", ".", "..", "/", "a/b", "../etc", "\\", "a\\b", "..\\x", "\x00", "a\x00b"]
GOOD_NAMES = ["...", "a..b", "..a", ".hidden", "na\u00efve.txt", "n" * MAX_FILE_NAME]
for _name in BAD_NAMES:
    BAD[f"file-name-{_name!r}"] = (FileOffer, (ID, 0, _name, 1, HASH, "t"))


@pytest.mark.parametrize("case", BAD)
def test_a_bad_field_is_refused_both_ways(case: str) -> None:
    cls, values = BAD[case]
    with pytest.raises(MessageDecodeError) as info:
        decode(pack(int(cls.TAG), *values))
    assert info.value.close_code == CloseCode.BAD_MESSAGE
    with pytest.raises(LocalProtocolError):
        encode(cls(*values))


def test_integers_beyond_64_bits_cannot_be_sent() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Ping(2**64))


@pytest.mark.parametrize(
    "message",
    [
        Text(ID, MAX_TIME_MS, "x" * MAX_TEXT_BODY, "c" * MAX_CONTENT_TYPE),
        Text(ID, 0, "\u00e9" * (MAX_TEXT_BODY // 2)),
        Text(ID, 0, "\U0001f600" * (MAX_TEXT_BODY // 4)),
        Text(ID, 0, ""),
        Ack(tuple(i.to_bytes(16, "big") for i in range(MAX_ACK_IDS))),
        FileOffer(
            ID, MAX_TIME_MS, "n" * MAX_FILE_NAME, MAX_FILE_SIZE, HASH, "c" * MAX_CONTENT_TYPE
        ),
        Close(U64_MAX, "r" * MAX_CLOSE_REASON),
        Ping(0),
        FileChunk(ID, 0, b""),
    ],
    ids=lambda m: type(m).__name__,
)
def test_values_at_their_limits_are_accepted(message: object) -> None:
    assert decode(encode(message)) == message  # type: ignore[arg-type]


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_file_names_that_are_only_names(name: str) -> None:
    offer = FileOffer(ID, 0, name, 1, HASH)
    assert decode(encode(offer)) == offer


def test_a_full_file_chunk_fills_the_largest_record_exactly() -> None:
    chunk = FileChunk(ID, U64_MAX, bytes(FILE_CHUNK_SIZE))
    assert len(encode(chunk)) == MAX_RECORD_SIZE
    assert decode(encode(chunk)) == chunk
    with pytest.raises(LocalProtocolError):
        encode(FileChunk(ID, U64_MAX, bytes(FILE_CHUNK_SIZE + 1)))


# -- the shape of records -----------------------------------------------------------------


def test_records_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Ping(1).nonce = 2  # type: ignore[misc]


def test_contents_never_reach_a_repr() -> None:
    secret = "attack at dawn"
    for record in (
        Text(ID, 0, secret),
        FileOffer(ID, 0, secret, 1, HASH),
        FileChunk(ID, 0, secret.encode()),
    ):
        assert secret not in repr(record)
        assert secret.encode().hex() not in repr(record)


# -- bugs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        Text(ID, 0, "\ud800"),
        Text(ID, 0, "x", "\udfff"),
        FileOffer(ID, 0, "a\ud83d", 1, HASH),
        Close(0, "\udc80"),
    ],
    ids=["body", "content-type", "file-name", "close-reason"],
)
def test_lone_surrogates_are_refused_as_local_errors(message: object) -> None:
    with pytest.raises(LocalProtocolError):
        encode(message)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [FileReject(ID, FileRejectReason.TOO_LARGE), Close(CloseCode.GOING_AWAY, "bye")],
    ids=["file-reject-reason", "close-code"],
)
def test_int_enum_fields_can_be_sent(message: object) -> None:
    assert decode(encode(message)) == message  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "message",
    [
        m.GroupFetch(ID, bytes(31)),
        m.GroupFetch(ID, bytes(32 * 65)),
        m.GroupText(ID, 0, "x", "text/plain", ID, b""),
        m.GroupText(ID, 0, "x", "text/plain", ID, bytes(33)),
        m.GroupText(ID, 0, "x", "text/plain", ID, bytes(32 * 9)),
        m.GroupOps(ID, ()),
        m.GroupOps(ID, (bytes(2049),)),
        m.GroupFileOffer(ID, 0, "a.txt", 1, bytes(64), "text/plain", ID, b""),
        m.GroupFileOffer(ID, 0, "a.txt", 1, bytes(64), "text/plain", ID, bytes(32 * 9)),
        m.GroupFileOffer(ID, 0, "../a", 1, bytes(64), "text/plain", ID, bytes(32)),
        m.GroupFileOffer(ID, 0, "a.txt", MAX_FILE_SIZE + 1, bytes(64), "text/plain", ID, bytes(32)),
    ],
    ids=[
        "fetch-ragged",
        "fetch-too-many",
        "text-no-heads",
        "text-ragged",
        "text-too-many",
        "ops-none",
        "ops-too-large",
        "file-no-heads",
        "file-too-many-heads",
        "file-a-path",
        "file-too-large",
    ],
)
def test_group_records_out_of_bounds_are_refused_both_ways(message: object) -> None:
    with pytest.raises(LocalProtocolError):
        encode(message)  # type: ignore[arg-type]
    fields = [getattr(message, f.name) for f in dataclasses.fields(message)]  # type: ignore[arg-type]
    with pytest.raises(MessageDecodeError):
        decode(pack(message.TAG, *fields))  # type: ignore[attr-defined]


@pytest.mark.parametrize("created_ms", [MAX_TIME_MS + 1, 2**63, U64_MAX])
@pytest.mark.parametrize(
    "make",
    [
        lambda t: Text(ID, t, "x"),
        lambda t: FileOffer(ID, t, "a.txt", 1, bytes(64)),
        lambda t: m.GroupText(ID, t, "x", "text/plain", ID, bytes(32)),
        lambda t: m.GroupFileOffer(ID, t, "a.txt", 1, bytes(64), "text/plain", ID, bytes(32)),
    ],
    ids=["text", "file-offer", "group-text", "group-file-offer"],
)
def test_a_created_ms_past_year_9999_is_refused_both_ways(
    make: Callable[[int], object], created_ms: int
) -> None:
    """A u64 on the wire, but no date shows it, SQLite holds at most 2^63 - 1,
    and a contact's record must not break what shows or exports it: a broken
    record rule (BAD_MESSAGE). The last ms of year 9999 is taken."""
    assert decode(encode(make(MAX_TIME_MS))) == make(MAX_TIME_MS)  # type: ignore[arg-type]
    message = make(created_ms)
    with pytest.raises(LocalProtocolError):
        encode(message)  # type: ignore[arg-type]
    fields = [getattr(message, f.name) for f in dataclasses.fields(message)]  # type: ignore[arg-type]
    with pytest.raises(MessageDecodeError, match=f"expected at most {MAX_TIME_MS}"):
        decode(pack(message.TAG, *fields))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "message",
    [
        m.MbFetch(1, 2**63),
        m.MbUsage(1, 2**63, 0, 0, 0, 0),
        m.MbUsage(1, 0, 2**64 - 1, 0, 0, 0),
        m.MbUsage(1, 0, 0, 2**63, 0, 0),
    ],
    ids=["fetch-after", "usage-envelopes", "usage-bytes", "usage-prekeys"],
)
def test_mailbox_counts_a_store_cannot_keep_are_refused_both_ways(message: object) -> None:
    """A sequence number or count the other side stores (SQLite: at most
    2^63 - 1): beyond it, malformed, not an OverflowError in the store."""
    with pytest.raises(LocalProtocolError):
        encode(message)  # type: ignore[arg-type]
    fields = [getattr(message, f.name) for f in dataclasses.fields(message)]  # type: ignore[arg-type]
    with pytest.raises(MessageDecodeError, match="expected at most"):
        decode(pack(message.TAG, *fields))  # type: ignore[attr-defined]


def test_group_records_name_their_heads_and_hide_their_body() -> None:
    heads = bytes(range(32)) + bytes(32)
    text = m.GroupText(ID, 0, "attack at dawn", "text/plain", ID, heads)
    assert text.head_list() == (bytes(range(32)), bytes(32))
    assert "attack" not in repr(text)
    assert m.GroupFetch(ID, b"").head_list() == ()


def test_a_group_file_offer_is_a_file_offer_with_its_group_and_heads() -> None:
    heads = bytes(range(32))
    offer = m.GroupFileOffer(ID, 5, "secret plan.pdf", 9, bytes(64), "application/pdf", ID, heads)
    assert offer.head_list() == (heads,)
    assert "secret" not in repr(offer)
    assert offer.file_offer() == FileOffer(
        ID, 5, "secret plan.pdf", 9, bytes(64), "application/pdf"
    )
    # Unlabelled: the label is left off, as a FileOffer's is.
    assert encode(offer) == pack(
        93, ID, 5, "secret plan.pdf", 9, bytes(64), "application/pdf", ID, heads
    )
    labelled = dataclasses.replace(offer, label="TLP:AMBER")
    assert decode(encode(labelled)) == labelled
    assert labelled.file_offer().label == "TLP:AMBER"


def test_an_mb_usage_without_the_appended_field_decodes_with_none() -> None:
    # A mailbox of an earlier version sends six fields; mailbox.md §7.9.
    old = decode(pack(45, 1, 2, 3, 4, 5, 6))
    assert old == m.MbUsage(1, 2, 3, 4, 5, 6)
    assert old.unused_by_contact() == {}  # type: ignore[union-attr]
    counts = {bytes([7]) * 32: 4, bytes([1]) * 32: 1}
    new = m.MbUsage(1, 2, 3, 4, 5, 6, m.MbUsage.pack_unused(counts))
    assert decode(encode(new)) == new
    assert new.unused_by_contact() == counts
    with pytest.raises(MessageDecodeError):
        decode(pack(45, 1, 2, 3, 4, 5, 6, b"x"))
    with pytest.raises(MessageDecodeError):
        decode(pack(45, 1, 2, 3, 4, 5))


# -- handling labels on the wire -------------------------------------------------------


def test_an_unlabelled_record_is_the_bytes_an_earlier_version_made() -> None:
    text = Text(b"\x01" * 16, 5, "hi")
    assert encode(text) == pack(1, b"\x01" * 16, 5, "hi", "text/plain")
    assert decode(encode(text)) == text


def test_a_label_is_appended_and_round_trips() -> None:
    text = Text(b"\x01" * 16, 5, "hi", "text/plain", "TLP:AMBER+STRICT")
    data = encode(text)
    assert data == pack(1, b"\x01" * 16, 5, "hi", "text/plain", "TLP:AMBER+STRICT")
    assert decode(data) == text


@pytest.mark.parametrize("label", ["TLP:R\u00c9D", "TLP:RED\n", "x" * 257, "\x00"])
def test_a_label_that_is_not_printable_ascii_is_refused(label: str) -> None:
    with pytest.raises(MessageDecodeError):
        decode(pack(1, b"\x01" * 16, 5, "hi", "text/plain", label))
    with pytest.raises(LocalProtocolError):
        encode(Text(b"\x01" * 16, 5, "hi", "text/plain", label))


def test_a_label_of_the_wrong_type_is_refused() -> None:
    with pytest.raises(MessageDecodeError):
        decode(pack(1, b"\x01" * 16, 5, "hi", "text/plain", b"TLP:RED"))


# -- a session with a registrar (trust.md §8) ----------------------------------------------


@pytest.mark.parametrize(
    "record",
    [
        m.RgEndorsement(1, b""),
        m.RgEndorsement(1, bytes(21_001)),
        m.RgList(1, b"", b"r", b"c"),
        m.RgList(1, b"d", bytes(21_001), b"c"),
        m.RgList(1, b"d", b"r", b"c", bytes(31)),
        m.RgList(1, b"d", b"r", b"c", bytes(32 * 129)),
    ],
    ids=["empty-proof", "oversize-proof", "no-delegation", "oversize-list", "ragged", "long"],
)
def test_registrar_records_out_of_bounds_are_refused(record: m.Message) -> None:
    with pytest.raises(LocalProtocolError):
        encode(record)
    wire = msgpack.packb(m.wire_values(record), use_bin_type=True)
    with pytest.raises(MessageDecodeError):
        decode(wire)


def test_a_registrar_list_splits_its_hashes() -> None:
    record = m.RgList(1, b"d", b"r", b"c", bytes(32) + b"\x01" * 32)
    assert record.hashes() == (bytes(32), b"\x01" * 32)
    assert m.RgList(1, b"d", b"r", b"c").hashes() == ()
    assert "token" not in repr(m.RgEnrol(1, b"\x07" * 32, bytes(32)))


@pytest.mark.parametrize(
    "message",
    [
        m.TrustGossip(b"", b"list", b"checkpoint"),
        m.TrustGossip(b"delegation", b"", b""),
        m.TrustGossip(bytes(MAX_TRUST_STAPLE_PART + 1), b"list", b""),
        m.TrustGossip(b"delegation", bytes(MAX_TRUST_STAPLE_PART + 1), b""),
        m.TrustGossip(b"delegation", b"list", bytes(MAX_TRUST_STAPLE_PART + 1)),
    ],
    ids=["no-delegation", "nothing-held", "delegation-oversize", "list-oversize", "cp-oversize"],
)
def test_trust_gossip_out_of_bounds_is_refused_both_ways(message: m.TrustGossip) -> None:
    # trust.md §7.2: [81, delegation: bin, revocations: bin, checkpoint: bin].
    with pytest.raises(LocalProtocolError):
        encode(message)
    with pytest.raises(MessageDecodeError):
        decode(pack(81, message.delegation, message.revocations, message.checkpoint))
    full = m.TrustGossip(bytes(MAX_TRUST_STAPLE_PART), b"", bytes(MAX_TRUST_STAPLE_PART))
    assert decode(encode(full)) == full
    assert encode(m.TrustGossip(b"d", b"r", b"")) == pack(81, b"d", b"r", b"")


# -- encoded: a record with its bytes, encoded once ------------------------------------


@settings(max_examples=200)
@given(st.one_of(*STRATEGIES.values()))
def test_encoded_holds_exactly_the_bytes_encode_makes(message: m.Message) -> None:
    ready = m.encoded(message)
    assert ready.message is message
    assert ready.data == encode(message)


@pytest.mark.parametrize("case", BAD)
def test_encoded_refuses_what_encode_refuses_with_the_same_error(case: str) -> None:
    cls, values = BAD[case]
    message = cls(*values)
    with pytest.raises(LocalProtocolError) as plain:
        encode(message)
    with pytest.raises(LocalProtocolError) as ready:
        m.encoded(message)
    assert str(ready.value) == str(plain.value)


def test_an_encoded_text_keeps_its_body_out_of_its_repr() -> None:
    secret = "the launch code is 0000"
    ready = m.encoded(Text(ID, 0, secret))
    assert secret not in repr(ready)
    assert secret.encode().hex() not in repr(ready)
    assert repr(ready.message) in repr(ready)
