"""The SOCKS5 client codec against literal bytes (RFC 1928, RFC 1929, prop 304). No sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from onionpost.errors import DialError, LocalProtocolError
from onionpost.tor._socks import (
    REASON_PROXY_AUTH_REJECTED,
    REASON_PROXY_CLOSED,
    REASON_PROXY_PROTOCOL,
    REASON_UNKNOWN_REPLY,
    REPLY_REASONS,
    Socks5Connect,
    SocksState,
)

HOST = "ijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbeeqscijbezhid.onion"
CONNECT_REQUEST = b"\x05\x01\x00\x03\x3e" + HOST.encode() + b"\x01\xbb"  # port 443
METHOD_OK = b"\x05\x00"
REPLY_OK_V4 = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"

# Each reply code tor may send, with the token we promise for it.
EXPECTED_TOKENS = {
    0x01: "general-failure",
    0x02: "not-allowed",
    0x03: "network-unreachable",
    0x04: "host-unreachable",
    0x05: "connection-refused",
    0x06: "ttl-expired",
    0x07: "command-not-supported",
    0x08: "address-type-not-supported",
    0xF0: "descriptor-not-found",
    0xF1: "descriptor-invalid",
    0xF2: "introduction-failed",
    0xF3: "rendezvous-failed",
    0xF4: "client-auth-missing",
    0xF5: "client-auth-wrong",
    0xF6: "bad-address",
    0xF7: "introduction-timed-out",
}


def drive(
    codec: Socks5Connect, server: bytes, cuts: list[int] | None = None
) -> tuple[bytes, bytes]:
    """Feed ``server`` in pieces split at ``cuts``.

    Returns everything the client sent, and the application bytes after the
    reply (what the codec kept plus what was never fed to it).
    """
    sent = bytearray(codec.greeting())
    points = sorted({c for c in (cuts or []) if 0 < c < len(server)})
    start = 0
    for end in [*points, len(server)]:
        sent += codec.receive_data(server[start:end])
        start = end
        if codec.state is SocksState.CONNECTED:
            break
    return bytes(sent), codec.trailing + server[start:]


def outcome(codec: Socks5Connect, server: bytes, cuts: list[int] | None = None) -> object:
    try:
        sent, app = drive(codec, server, cuts)
    except DialError as exc:
        return ("error", exc.reason, str(exc))
    return ("state", codec.state, sent, codec.bound, app)


def test_greeting_and_connect_literal_bytes() -> None:
    codec = Socks5Connect(HOST, 443)
    assert codec.greeting() == b"\x05\x01\x00"
    assert codec.bytes_needed == 2
    assert codec.receive_data(METHOD_OK) == CONNECT_REQUEST
    assert codec.state is SocksState.AWAIT_REPLY
    assert codec.bytes_needed == 4
    assert codec.receive_data(REPLY_OK_V4) == b""
    assert codec.state is SocksState.CONNECTED
    assert codec.bound is not None
    assert (codec.bound.atyp, codec.bound.address, codec.bound.port) == (1, b"\0" * 4, 0)
    assert codec.trailing == b""
    assert codec.bytes_needed == 0


def test_username_password_literal_bytes() -> None:
    codec = Socks5Connect(HOST, 443, username=b"iso", password=b"x")
    assert codec.greeting() == b"\x05\x01\x02"
    assert codec.receive_data(b"\x05\x02") == b"\x01\x03iso\x01x"
    assert codec.state is SocksState.AWAIT_AUTH
    assert codec.receive_data(b"\x01\x00") == CONNECT_REQUEST
    codec.receive_data(REPLY_OK_V4)
    assert codec.state is SocksState.CONNECTED


@pytest.mark.parametrize(
    "reply",
    [
        b"\x05\x00\x00\x04" + b"\x00" * 16 + b"\x00\x50",
        b"\x05\x00\x00\x03\x09localhost\x00\x50",
    ],
)
def test_success_with_other_address_types(reply: bytes) -> None:
    codec = Socks5Connect(HOST, 443)
    drive(codec, METHOD_OK + reply)
    assert codec.state is SocksState.CONNECTED
    assert codec.bound is not None
    assert codec.bound.port == 80


def test_every_code_has_its_token() -> None:
    assert {code: token for code, (token, _) in REPLY_REASONS.items()} == EXPECTED_TOKENS


@pytest.mark.parametrize(("code", "token"), sorted(EXPECTED_TOKENS.items()))
def test_refusals_map_to_reasons(code: int, token: str) -> None:
    codec = Socks5Connect(HOST, 443)
    reply = bytes([5, code, 0, 1, 0, 0, 0, 0, 0, 0])
    with pytest.raises(DialError) as info:
        drive(codec, METHOD_OK + reply)
    assert info.value.reason == token
    assert f"{code:#04x}" in str(info.value)
    assert codec.state is SocksState.FAILED


def test_tor_client_auth_missing_wire_example() -> None:
    codec = Socks5Connect(HOST, 443)
    codec.greeting()
    codec.receive_data(METHOD_OK)
    with pytest.raises(DialError) as info:
        codec.receive_data(bytes.fromhex("05f4000100000000 0000"))
    assert info.value.reason == "client-auth-missing"


def test_unassigned_code() -> None:
    with pytest.raises(DialError) as info:
        drive(Socks5Connect(HOST, 443), METHOD_OK + b"\x05\x09\x00\x01" + b"\0" * 6)
    assert info.value.reason == REASON_UNKNOWN_REPLY


def test_no_acceptable_method() -> None:
    with pytest.raises(DialError) as info:
        drive(Socks5Connect(HOST, 443), b"\x05\xff")
    assert info.value.reason == REASON_PROXY_AUTH_REJECTED


def test_credentials_refused() -> None:
    codec = Socks5Connect(HOST, 443, username=b"u", password=b"p")
    with pytest.raises(DialError) as info:
        drive(codec, b"\x05\x02\x01\x01")
    assert info.value.reason == REASON_PROXY_AUTH_REJECTED


@pytest.mark.parametrize(
    ("server", "fragment"),
    [
        (b"\x04\x00", "version 0x04 in method"),
        (b"\x05\x02", "method 0x02, which we did not offer"),
        (b"\x05\x01", "method 0x01"),
        (METHOD_OK + b"\x04\x00\x00\x01" + b"\0" * 6, "version 0x04 in connect reply"),
        (METHOD_OK + b"\x05\x00\x01\x01" + b"\0" * 6, "reserved byte 0x01"),
        (METHOD_OK + b"\x05\x00\x00\x02" + b"\0" * 6, "address type 0x02"),
        (METHOD_OK + b"\x05\x00\x00\x03\x00\x00\x00", "empty bound domain"),
        # HTTP from something that is not a SOCKS proxy at all.
        (b"HTTP/1.0 501 Tor is not an HTTP Proxy\r\n", "version 0x48"),
    ],
)
def test_nonsense_is_rejected(server: bytes, fragment: str) -> None:
    with pytest.raises(DialError, match=fragment) as info:
        drive(Socks5Connect(HOST, 443), server)
    assert info.value.reason == REASON_PROXY_PROTOCOL


def test_nonsense_in_auth_reply() -> None:
    codec = Socks5Connect(HOST, 443, username=b"u", password=b"p")
    with pytest.raises(DialError, match="username/password reply") as info:
        drive(codec, b"\x05\x02\x05\x00")
    assert info.value.reason == REASON_PROXY_PROTOCOL


@pytest.mark.parametrize("cut", range(len(METHOD_OK + REPLY_OK_V4)))
def test_truncated_then_closed(cut: int) -> None:
    codec = Socks5Connect(HOST, 443)
    codec.greeting()
    data = (METHOD_OK + REPLY_OK_V4)[:cut]
    if data:
        codec.receive_data(data)
    with pytest.raises(DialError) as info:
        codec.receive_eof()
    assert info.value.reason == REASON_PROXY_CLOSED
    assert codec.state is SocksState.FAILED


def test_eof_after_connect_is_fine() -> None:
    # Once connected, the end of the stream is the application's business:
    # the codec neither raises nor leaves CONNECTED.
    codec = Socks5Connect(HOST, 443)
    drive(codec, METHOD_OK + REPLY_OK_V4)
    assert codec.state is SocksState.CONNECTED
    codec.receive_eof()
    assert codec.state is SocksState.CONNECTED
    # Before CONNECTED the same end is an error (the check can fail).
    early = Socks5Connect(HOST, 443)
    early.greeting()
    with pytest.raises(DialError) as caught:
        early.receive_eof()
    assert caught.value.reason == REASON_PROXY_CLOSED
    assert early.state is SocksState.FAILED


def test_trailing_application_bytes_are_kept() -> None:
    codec = Socks5Connect(HOST, 443)
    drive(codec, METHOD_OK + REPLY_OK_V4 + b"hello")
    assert codec.state is SocksState.CONNECTED
    assert codec.trailing == b"hello"


def test_reading_exactly_bytes_needed_never_over_reads() -> None:
    for reply in (REPLY_OK_V4, b"\x05\x00\x00\x03\x09localhost\x00\x50"):
        codec = Socks5Connect(HOST, 443, username=b"u", password=b"p")
        server = b"\x05\x02" + b"\x01\x00" + reply + b"app"
        codec.greeting()
        pos = 0
        for _ in range(100):
            if codec.state is SocksState.CONNECTED:
                break
            n = codec.bytes_needed
            assert n > 0
            codec.receive_data(server[pos : pos + n])
            pos += n
        assert codec.state is SocksState.CONNECTED
        assert server[pos:] == b"app"
        assert codec.trailing == b""


TRANSCRIPTS = [
    METHOD_OK + REPLY_OK_V4,
    METHOD_OK + b"\x05\x00\x00\x03\x09localhost\x00\x50tail",
    METHOD_OK + b"\x05\xf5\x00\x01" + b"\0" * 6,
    METHOD_OK + b"\x05\x00\x00\x07" + b"\0" * 6,
    b"\x05\xff",
]


@pytest.mark.parametrize("server", TRANSCRIPTS)
def test_byte_by_byte_equals_all_at_once(server: bytes) -> None:
    whole = outcome(Socks5Connect(HOST, 443), server)
    single = outcome(Socks5Connect(HOST, 443), server, list(range(len(server))))
    assert single == whole


@given(st.sampled_from(TRANSCRIPTS), st.lists(st.integers(0, 40), max_size=20))
def test_any_rechunking_gives_the_same_result(server: bytes, cuts: list[int]) -> None:
    assert outcome(Socks5Connect(HOST, 443), server, cuts) == outcome(
        Socks5Connect(HOST, 443), server
    )


@given(st.binary(max_size=64), st.booleans())
def test_random_bytes_give_only_dial_error(server: bytes, auth: bool) -> None:
    creds = {"username": b"u", "password": b"p"} if auth else {}
    codec = Socks5Connect(HOST, 443, **creds)
    try:
        drive(codec, server)
        codec.receive_eof()
    except DialError:
        assert codec.state is SocksState.FAILED


def test_misuse_is_a_local_error() -> None:
    codec = Socks5Connect(HOST, 443)
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"\x05\x00")
    codec.greeting()
    with pytest.raises(LocalProtocolError):
        codec.greeting()
    codec.receive_data(METHOD_OK + REPLY_OK_V4)
    with pytest.raises(LocalProtocolError):
        codec.receive_data(b"x")
    failed = Socks5Connect(HOST, 443)
    with pytest.raises(DialError):
        drive(failed, b"\x05\xff")
    with pytest.raises(LocalProtocolError):
        failed.receive_data(b"\x05\x00")


@pytest.mark.parametrize(
    ("host", "port", "creds"),
    [
        ("", 443, {}),
        ("x" * 256, 443, {}),
        ("é.onion", 443, {}),
        (HOST, 0, {}),
        (HOST, 65536, {}),
        (HOST, 443, {"username": b"u"}),
        (HOST, 443, {"username": b"", "password": b"p"}),
    ],
)
def test_bad_arguments(host: str, port: int, creds: dict[str, bytes]) -> None:
    with pytest.raises(LocalProtocolError):
        Socks5Connect(host, port, **creds)


def test_repr_has_no_credentials() -> None:
    codec = Socks5Connect(HOST, 443, username=b"secret-user", password=b"secret-pass")
    assert "secret" not in repr(codec)
