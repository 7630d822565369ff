"""A handling label on the wire is authenticated with its record: flipping
it in transit (even into another valid label of the same length, as a
stream cipher would let an attacker without the keys try) fails the
session's authentication, and nothing is delivered."""

from __future__ import annotations

import msgpack
import pytest
from _sessions import NOW, deliver, derive, established
from hypothesis import given, settings
from hypothesis import strategies as st

from onionpost.errors import (
    AuthenticationError,
    CloseCode,
    MessageDecodeError,
    RemoteProtocolError,
)
from onionpost.proto.messages import FileOffer, LabelLimit, Text, decode, encode
from onionpost.proto.session import Event, MessageReceived, Session, SessionState

FRAME_HEADER = 2  # the u16 length before each Noise message
RECORD_HEADER = 2  # the u16 record length inside the plaintext

LABELLED = Text(derive("labelled", 16), NOW * 1000, "hi", "text/plain", "TLP:AMBER")


def _label_offset(record: Text | FileOffer) -> int:
    """Where the label's bytes sit in the frame that carries ``record`` alone."""
    data = encode(record)
    return FRAME_HEADER + RECORD_HEADER + data.rindex(record.label.encode())


def _events(session: Session) -> tuple[list[Event], RemoteProtocolError | None]:
    """Events until more bytes are needed, or the failure that ended them."""
    events: list[Event] = []
    while True:
        try:
            event = session.next_event()
        except RemoteProtocolError as exc:
            return events, exc
        if event is None:
            return events, None
        events.append(event)


def test_a_labelled_text_arrives_with_its_label() -> None:
    i, r = established()
    i.send(LABELLED)
    assert deliver(i, r) == [MessageReceived(LABELLED)]


@pytest.mark.parametrize(
    "record",
    [
        LABELLED,
        FileOffer(derive("file", 16), NOW * 1000, "a.pdf", 9, bytes(64), "x/y", "TLP:AMBER"),
    ],
    ids=["text", "file-offer"],
)
def test_a_label_rewritten_in_transit_fails_authentication(record: Text | FileOffer) -> None:
    i, r = established()
    i.send(record)
    wire = bytearray(i.data_to_send())
    start = _label_offset(record)
    # ChaChaPoly is a stream cipher: XOR "AMBER" into "CLEAR" where it sits.
    for n, (was, want) in enumerate(zip(b"AMBER", b"CLEAR", strict=True)):
        wire[start + 4 + n] ^= was ^ want
    r.receive_data(bytes(wire))
    events, failure = _events(r)
    assert events == []
    assert isinstance(failure, AuthenticationError)
    assert failure.close_code == CloseCode.AUTHENTICATION_FAILED
    assert r.state is SessionState.FAILED


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 8), st.integers(1, 255))
def test_any_bit_of_a_label_flipped_in_transit_is_refused(index: int, mask: int) -> None:
    i, r = established()
    i.send(LABELLED)
    wire = bytearray(i.data_to_send())
    wire[_label_offset(LABELLED) + index] ^= mask
    r.receive_data(bytes(wire))
    events, failure = _events(r)
    assert events == []
    assert isinstance(failure, AuthenticationError)


def test_a_label_limit_round_trips_and_bounds_hold() -> None:
    limit = LabelLimit(("TLP:AMBER", "CUI//SP-CTI"))
    assert decode(encode(limit)) == limit
    assert decode(encode(LabelLimit(()))) == LabelLimit(())


@pytest.mark.parametrize(
    "labels",
    [("",), ("TLP:AMBER",) * 17, ("TLP:AMB\u00c9R",), (b"TLP:RED",), "TLP:RED", (1,)],
    ids=["empty", "too-many", "not-ascii", "bytes", "not-an-array", "int"],
)
def test_a_malformed_label_limit_is_refused(labels: object) -> None:
    data = msgpack.packb([74, labels], use_bin_type=True)
    with pytest.raises(MessageDecodeError):
        decode(data)
