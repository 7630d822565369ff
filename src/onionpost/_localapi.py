"""The local API's framing, limits and error codes, shared by both of its ends.

Theory of operation: the daemon listens on a unix stream socket
(``home/run/control.sock``); each side writes one JSON object per line,
UTF-8, terminated by ``\\n`` (JSON escapes newlines inside strings, so a raw
``\\n`` only ever ends a message)::

    {"id":7,"method":"send_text","params":{"contact":"bob","body":"hi"}}
    {"id":7,"result":{"id":"9f0c...","state":"queued"}}
    {"event":"state","data":{"id":"9f0c...","state":"delivered"}}

The server (:mod:`onionpost.host._api`) and the client
(:mod:`onionpost.client`) both frame through here, and both shape what they
send through :mod:`onionpost.api`, so the two cannot drift.
Everything is in ``protocol-spec/local-api.md``.
"""

from __future__ import annotations

import enum
import json
from typing import Any, Final

import trio

from onionpost.errors import FramingError

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_IN_FLIGHT",
    "MAX_REQUEST_LINE",
    "MAX_RESENDS",
    "MAX_RESPONSE_LINE",
    "RESEND_BACKOFF",
    "SUBSCRIBER_STALL_TIMEOUT",
    "ErrorCode",
    "LineReader",
    "encode_line",
]

# -- Limits (protocol-spec/local-api.md §Limits) ------------------------------------

# The longest request line the daemon reads; a text body is at most 60 000
# bytes (limits.MAX_TEXT_BODY), so even an all-escaped body fits.
MAX_REQUEST_LINE: Final = 2**20
# The longest response or event line the client reads: an inbox page of
# onionpost.api.MAX_INBOX_LIMIT escaped text bodies is far below this.
MAX_RESPONSE_LINE: Final = 64 * 2**20
# Requests the daemon runs at once for one connection; it stops reading the
# connection until one finishes.
MAX_IN_FLIGHT: Final = 8
# Connections the daemon serves at once; more are answered "busy" and closed.
MAX_CONNECTIONS: Final = 64
# Seconds the daemon waits for a subscriber to take one event line before it
# drops that connection (daemon policy; the backend's bounded channel drops
# subscribers that fall behind by more than its buffer).
SUBSCRIBER_STALL_TIMEOUT: Final = 30.0
# A send the client made and never heard back about (the connection broke,
# the daemon restarted) is sent again under the same id, at most this many
# times, waiting RESEND_BACKOFF seconds (doubling up to its second value)
# before each: about half a minute in all, unless the caller's deadline is
# sooner.
MAX_RESENDS: Final = 30
RESEND_BACKOFF: Final = (0.05, 1.0)

_RECEIVE_SIZE: Final = 65536


class ErrorCode(enum.StrEnum):
    """The stable ``error.code`` values of a local API response."""

    BAD_REQUEST = "bad-request"  # not JSON, unknown method, wrong or missing params
    UNKNOWN_CONTACT = "unknown-contact"
    BAD_CARD = "bad-card"
    NOT_FOUND = "not-found"  # no message or file with that id
    LABEL = "label"  # a handling label malformed, unknown, or refused by policy
    CONFIG = "config"  # any other invalid argument or configuration
    STORE = "store"
    TOR = "tor"
    PROTOCOL = "protocol"
    TRANSPORT = "transport"
    BUSY = "busy"  # too many connections
    INTERNAL = "internal"  # a daemon bug; the daemon's log has the details


def encode_line(obj: Any) -> bytes:
    """One JSON line; raises ``TypeError``/``ValueError`` for what JSON cannot carry."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


class LineReader:
    """Bounded ``\\n``-terminated lines from a trio receive stream.

    A line longer than ``max_line`` raises :class:`FramingError` as soon as
    that is known; the next call first skips the rest of that line, so the
    reader stays usable and never holds more than ``max_line`` bytes.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, max_line: int) -> None:
        self._stream = stream
        self._max_line = max_line
        self._buffer = bytearray()
        self._scanned = 0  # bytes of _buffer known to hold no newline
        self._discarding = False

    async def next_line(self) -> bytes | None:
        """The next line without its ``\\n``; ``None`` at end of stream.

        Bytes after the last newline at end of stream are dropped: a line
        counts only once it is terminated.
        """
        while True:
            end = self._buffer.find(b"\n", self._scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._scanned = 0
                if self._discarding:
                    self._discarding = False
                    continue
                if len(line) > self._max_line:
                    raise FramingError(f"line longer than {self._max_line} bytes")
                return line
            if self._discarding:
                self._buffer.clear()
                self._scanned = 0
            elif len(self._buffer) > self._max_line:
                self._buffer.clear()
                self._scanned = 0
                self._discarding = True
                raise FramingError(f"line longer than {self._max_line} bytes")
            else:
                self._scanned = len(self._buffer)
            data = await self._stream.receive_some(_RECEIVE_SIZE)
            if not data:
                return None
            self._buffer += data
