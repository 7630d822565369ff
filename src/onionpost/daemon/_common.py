"""What the local API's handlers share: the clock they record (the engine's),
and ids."""

from __future__ import annotations

import os
from typing import Final

from onionpost.daemon.delivery._records import now_ms
from onionpost.errors import ConfigError

__all__ = ["new_send_id", "now_ms", "parse_id"]

_ID_LEN: Final = 16


def _raw_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except (ValueError, TypeError):
        return b""
    return raw if len(raw) == _ID_LEN else b""


def parse_id(text: str) -> bytes:
    """A stored message's id, given as 32 hex digits."""
    raw = _raw_id(text)
    if not raw:
        raise ConfigError("a message id is 32 hex digits")
    return raw


def new_send_id(text: str | None) -> bytes:
    """A send's id: the client's (32 hex digits), or a new random one."""
    if text is None:
        return os.urandom(_ID_LEN)
    raw = _raw_id(text)
    if not raw:
        raise ConfigError("a send id is 32 hex digits")
    return raw
