"""A sans-I/O SOCKS5 client for one CONNECT to a domain name through tor.

Theory of operation
-------------------
:class:`Socks5Connect` is a plain object: the caller sends
:meth:`~Socks5Connect.greeting`, then feeds every byte read from the proxy
to :meth:`~Socks5Connect.receive_data`, which returns the bytes to send next,
until :attr:`~Socks5Connect.state` is ``CONNECTED``. Failures raise
:class:`~onionpost.errors.DialError` with a stable ``reason`` token. Input may
arrive in any chunking; :attr:`~Socks5Connect.bytes_needed` says how many more
bytes are certainly needed, so a caller can read exactly that many and leave
application bytes in the socket. Any bytes after the final reply are kept in
:attr:`~Socks5Connect.trailing`.

The exchange (RFC 1928; RFC 1929 for username/password)::

    client                                   tor
    05 01 00                  greeting  -->            (no auth), or 05 01 02
                                        <--  05 00     method chosen
    01 ulen user plen pass    (only if 02)  -->
                                        <--  01 00     auth accepted
    05 01 00 03 len host port   CONNECT -->
                                        <--  05 REP 00 ATYP BND.ADDR BND.PORT

Wire example of a refused connect, tor's reply for a client that lacks the
client-authorization key (prop 304 X'F4')::

    05 f4 00 01 00 00 00 00 00 00

Username/password is offered only for stream isolation: tor accepts any
credentials and, with ``IsolateSOCKSAuth`` (on by default), never shares a
circuit between streams whose credentials differ.

Reply codes
-----------
RFC 1928 §6 defines 0x01-0x08. Tor's ``ExtendedErrors`` SocksPort flag
(proposal 304, "Extending SOCKS5 Onion Service Error Codes") adds
0xF0-0xF7 for onion services. Each maps to one token in :data:`REPLY_REASONS`;
other failures use the ``REASON_*`` tokens below. Without ``ExtendedErrors``
tor reports onion failures as 0x01 or 0x04 instead.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from onionpost.errors import DialError, LocalProtocolError

__all__ = [
    "REASON_PROXY_AUTH_REJECTED",
    "REASON_PROXY_CLOSED",
    "REASON_PROXY_PROTOCOL",
    "REASON_UNKNOWN_REPLY",
    "REPLY_REASONS",
    "Socks5Connect",
    "SocksState",
]

SOCKS_VERSION: Final = 0x05
AUTH_VERSION: Final = 0x01  # RFC 1929 §2: the subnegotiation's own version
METHOD_NO_AUTH: Final = 0x00
METHOD_USERNAME_PASSWORD: Final = 0x02
METHOD_NONE_ACCEPTABLE: Final = 0xFF
CMD_CONNECT: Final = 0x01
ATYP_IPV4: Final = 0x01
ATYP_DOMAIN: Final = 0x03
ATYP_IPV6: Final = 0x04
REPLY_SUCCEEDED: Final = 0x00
MAX_FIELD_LEN: Final = 255  # host, username and password are length-prefixed by one byte

# Failures that are not a reply code.
REASON_PROXY_PROTOCOL: Final = "proxy-protocol-error"  # nonsense from the proxy
REASON_PROXY_CLOSED: Final = "proxy-closed"  # the proxy hung up mid-negotiation
REASON_PROXY_AUTH_REJECTED: Final = "proxy-auth-rejected"  # method or credentials refused
REASON_UNKNOWN_REPLY: Final = "unknown-reply"  # an unassigned reply code

#: Reply code -> (reason token, description). Tokens are stable API.
REPLY_REASONS: Final[Mapping[int, tuple[str, str]]] = MappingProxyType(
    {
        # RFC 1928 §6
        0x01: ("general-failure", "general SOCKS server failure"),
        0x02: ("not-allowed", "connection not allowed by ruleset"),
        0x03: ("network-unreachable", "network unreachable"),
        0x04: ("host-unreachable", "host unreachable"),
        0x05: ("connection-refused", "connection refused"),
        0x06: ("ttl-expired", "TTL expired"),
        0x07: ("command-not-supported", "command not supported"),
        0x08: ("address-type-not-supported", "address type not supported"),
        # proposal 304 §2.2 (tor's ExtendedErrors)
        0xF0: ("descriptor-not-found", "onion service descriptor can not be found"),
        0xF1: ("descriptor-invalid", "onion service descriptor is invalid"),
        0xF2: ("introduction-failed", "onion service introduction failed"),
        0xF3: ("rendezvous-failed", "onion service rendezvous failed"),
        0xF4: ("client-auth-missing", "onion service client authorization missing"),
        0xF5: ("client-auth-wrong", "onion service client authorization wrong"),
        0xF6: ("bad-address", "invalid onion service address"),
        0xF7: ("introduction-timed-out", "onion service introduction timed out"),
    }
)


class SocksState(enum.Enum):
    AWAIT_METHOD = "await-method"
    AWAIT_AUTH = "await-auth"
    AWAIT_REPLY = "await-reply"
    CONNECTED = "connected"
    FAILED = "failed"


# The legal transitions, as data; anything else is a bug (STYLE: state machines are data).
_TRANSITIONS: Final[Mapping[SocksState, frozenset[SocksState]]] = MappingProxyType(
    {
        SocksState.AWAIT_METHOD: frozenset(
            {SocksState.AWAIT_AUTH, SocksState.AWAIT_REPLY, SocksState.FAILED}
        ),
        SocksState.AWAIT_AUTH: frozenset({SocksState.AWAIT_REPLY, SocksState.FAILED}),
        SocksState.AWAIT_REPLY: frozenset({SocksState.CONNECTED, SocksState.FAILED}),
        SocksState.CONNECTED: frozenset(),
        SocksState.FAILED: frozenset(),
    }
)


@dataclass(frozen=True, slots=True)
class BoundAddress:
    """BND.ADDR and BND.PORT of a successful reply (tor sends 0.0.0.0:0)."""

    atyp: int
    address: bytes
    port: int


def _protocol_error(what: str) -> DialError:
    return DialError(f"SOCKS proxy sent an invalid reply: {what}", reason=REASON_PROXY_PROTOCOL)


class Socks5Connect:
    """One SOCKS5 CONNECT to ``host:port``, optionally with RFC 1929 credentials."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: bytes | None = None,
        password: bytes | None = None,
    ) -> None:
        try:
            host_bytes = host.encode("ascii")
        except UnicodeEncodeError:
            raise LocalProtocolError("SOCKS host name must be ASCII") from None
        if not 0 < len(host_bytes) <= MAX_FIELD_LEN:
            raise LocalProtocolError("SOCKS host name must be 1 to 255 bytes")
        if not 0 < port < 65536:
            raise LocalProtocolError("port must be 1 to 65535")
        if (username is None) != (password is None):
            raise LocalProtocolError("give both a SOCKS username and password, or neither")
        if (
            username is not None
            and password is not None
            and not (0 < len(username) <= MAX_FIELD_LEN and 0 < len(password) <= MAX_FIELD_LEN)
        ):
            raise LocalProtocolError("SOCKS username and password must be 1 to 255 bytes")
        self._host = host_bytes
        self._port = port
        self._credentials = None if username is None else (username, password or b"")
        self._buffer = bytearray()
        self._state = SocksState.AWAIT_METHOD
        self._greeted = False
        self.bound: BoundAddress | None = None
        self.trailing = b""

    def __repr__(self) -> str:
        # Credentials are isolation tokens, not secrets, but stay out anyway.
        return f"<Socks5Connect {self._host.decode()}:{self._port} {self._state.value}>"

    @property
    def state(self) -> SocksState:
        return self._state

    def greeting(self) -> bytes:
        """The first bytes to send: version and the one method we offer."""
        if self._greeted:
            raise LocalProtocolError("SOCKS greeting already sent", state=self._state)
        self._greeted = True
        method = METHOD_NO_AUTH if self._credentials is None else METHOD_USERNAME_PASSWORD
        return bytes([SOCKS_VERSION, 1, method])

    @property
    def bytes_needed(self) -> int:
        """How many more bytes are certainly needed before the state can change."""
        have = len(self._buffer)
        if self._state in (SocksState.AWAIT_METHOD, SocksState.AWAIT_AUTH):
            return max(2 - have, 0)
        if self._state is SocksState.AWAIT_REPLY:
            total = self._reply_length()
            if total is None:
                return 5 - have if have >= 4 else 4 - have
            return max(total - have, 0)
        return 0

    def receive_data(self, data: bytes) -> bytes:
        """Feed bytes read from the proxy; returns the bytes to send next (maybe empty).

        Raises :class:`DialError` if the proxy refuses or talks nonsense; the
        object is then ``FAILED`` and takes no more input.
        """
        if not self._greeted or self._state in (SocksState.CONNECTED, SocksState.FAILED):
            raise LocalProtocolError(
                f"SOCKS negotiation cannot take bytes in state {self._state.value}",
                state=self._state,
            )
        self._buffer += data
        out = bytearray()
        try:
            # Bounded: every step consumes input or returns None.
            while self.state is not SocksState.CONNECTED:
                step = self._step()
                if step is None:
                    break
                out += step
        except DialError:
            self._move(SocksState.FAILED)
            self._buffer.clear()
            raise
        return bytes(out)

    def receive_eof(self) -> None:
        """The proxy closed the connection: always an error before ``CONNECTED``."""
        if self._state is SocksState.CONNECTED:
            return
        if self._state is not SocksState.FAILED:
            self._move(SocksState.FAILED)
        raise DialError(
            "SOCKS proxy closed the connection during negotiation", reason=REASON_PROXY_CLOSED
        )

    # -- one state transition per call; None means "need more bytes" ---------

    def _step(self) -> bytes | None:
        if self._state is SocksState.AWAIT_METHOD:
            return self._on_method()
        if self._state is SocksState.AWAIT_AUTH:
            return self._on_auth()
        return self._on_reply()

    def _move(self, new: SocksState) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise LocalProtocolError(
                f"SOCKS state {self._state.value} cannot go to {new.value}", state=self._state
            )
        self._state = new

    def _take(self, n: int) -> bytes:
        chunk = bytes(self._buffer[:n])
        del self._buffer[:n]
        return chunk

    def _connect_request(self) -> bytes:
        # RFC 1928 §4: VER CMD RSV ATYP DST.ADDR DST.PORT, ATYP 3 = length-prefixed name.
        return (
            bytes([SOCKS_VERSION, CMD_CONNECT, 0x00, ATYP_DOMAIN, len(self._host)])
            + self._host
            + self._port.to_bytes(2, "big")
        )

    def _on_method(self) -> bytes | None:
        # RFC 1928 §3: VER METHOD, e.g. 05 00.
        if len(self._buffer) < 2:
            return None
        version, method = self._take(2)
        if version != SOCKS_VERSION:
            raise _protocol_error(f"version {version:#04x} in method selection")
        if method == METHOD_NONE_ACCEPTABLE:
            raise DialError(
                "SOCKS proxy accepts none of our authentication methods",
                reason=REASON_PROXY_AUTH_REJECTED,
            )
        offered = METHOD_NO_AUTH if self._credentials is None else METHOD_USERNAME_PASSWORD
        if method != offered:
            raise _protocol_error(f"method {method:#04x}, which we did not offer")
        if self._credentials is None:
            self._move(SocksState.AWAIT_REPLY)
            return self._connect_request()
        self._move(SocksState.AWAIT_AUTH)
        username, password = self._credentials
        # RFC 1929 §2: VER ULEN UNAME PLEN PASSWD.
        return bytes([AUTH_VERSION, len(username)]) + username + bytes([len(password)]) + password

    def _on_auth(self) -> bytes | None:
        # RFC 1929 §2: VER STATUS, e.g. 01 00; any STATUS but 00 is a refusal.
        if len(self._buffer) < 2:
            return None
        version, status = self._take(2)
        if version != AUTH_VERSION:
            raise _protocol_error(f"version {version:#04x} in username/password reply")
        if status != 0x00:
            raise DialError(
                "SOCKS proxy refused our username/password", reason=REASON_PROXY_AUTH_REJECTED
            )
        self._move(SocksState.AWAIT_REPLY)
        return self._connect_request()

    def _reply_length(self) -> int | None:
        """Total length of the reply in the buffer, once its header says so."""
        buf = self._buffer
        if len(buf) < 4:
            return None
        atyp = buf[3]
        if atyp == ATYP_IPV4:
            return 4 + 4 + 2
        if atyp == ATYP_IPV6:
            return 4 + 16 + 2
        if atyp == ATYP_DOMAIN:
            return None if len(buf) < 5 else 5 + buf[4] + 2
        return 4  # unknown: enough to reject it

    def _on_reply(self) -> bytes | None:
        # RFC 1928 §6: VER REP RSV ATYP BND.ADDR BND.PORT, e.g. 05 00 00 01 00000000 0000.
        buf = self._buffer
        if len(buf) < 4:
            return None
        version, rep, rsv, atyp = buf[0], buf[1], buf[2], buf[3]
        if version != SOCKS_VERSION:
            raise _protocol_error(f"version {version:#04x} in connect reply")
        if rsv != 0x00:
            raise _protocol_error(f"reserved byte {rsv:#04x} in connect reply")
        if atyp not in (ATYP_IPV4, ATYP_IPV6, ATYP_DOMAIN):
            raise _protocol_error(f"address type {atyp:#04x} in connect reply")
        if atyp == ATYP_DOMAIN and len(buf) >= 5 and buf[4] == 0:
            raise _protocol_error("empty bound domain name in connect reply")
        total = self._reply_length()
        if total is None or len(buf) < total:
            return None
        reply = self._take(total)
        if rep != REPLY_SUCCEEDED:
            reason, description = REPLY_REASONS.get(rep, (REASON_UNKNOWN_REPLY, "unassigned code"))
            raise DialError(
                f"tor refused the connection: {description} ({rep:#04x})", reason=reason
            )
        addr_start = 5 if atyp == ATYP_DOMAIN else 4
        self.bound = BoundAddress(atyp, reply[addr_start:-2], int.from_bytes(reply[-2:], "big"))
        self.trailing = bytes(self._buffer)
        self._buffer.clear()
        self._move(SocksState.CONNECTED)
        return b""
