"""Strict msgpack: the one place msgpack is called and its errors are caught.

onionpost's encodings (records, handshake payloads, contact cards, the
store's sealed rows) are msgpack arrays of integers, strings and binary.
:func:`unpack` decodes exactly one value within the caller's bounds and
refuses every non-empty map and every extension value with data. An empty map
``{}`` and a zero-length extension (``c7 00 <type>``) do come through, as
spec.md §3.6 allows in handshake extras; each caller's type checks refuse them
where they do not belong (a record's fields and trailing fields, a card's).
The one map onionpost writes, the sealed secrets file's plaintext
(storage.md §Secrets file), is admitted only where that caller asks for it
(``max_map_items``); nothing a peer sends is a map. Every failure of the
decoder, whatever msgpack calls it, is one :class:`NotMsgpack`, which each
caller turns into its own error (MessageDecodeError, AuthenticationError,
CardError, StoreError, UnlockError).
"""

from __future__ import annotations

from typing import Any

import msgpack

__all__ = ["NotMsgpack", "pack", "unpack"]


class NotMsgpack(ValueError):
    """Not exactly one msgpack value within the bounds."""


def pack(obj: Any) -> bytes:
    data: bytes = msgpack.packb(obj, use_bin_type=True)
    return data


def unpack(
    data: bytes, *, max_len: int, max_items: int, use_list: bool = False, max_map_items: int = 0
) -> Any:
    """One value; str/bin at most ``max_len`` bytes, arrays at most ``max_items``.

    Maps of at most ``max_map_items`` entries with text keys (none by
    default); extension values only when empty (see the module docstring).
    """
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=use_list,
            strict_map_key=True,
            max_str_len=max_len,
            max_bin_len=max_len,
            max_array_len=max_items,
            max_map_len=max_map_items,
            max_ext_len=0,
        )
    except (ValueError, TypeError, msgpack.FormatError, msgpack.StackError) as exc:
        # ValueError covers msgpack's ExtraData and OutOfData, its limits, and bad UTF-8.
        raise NotMsgpack(str(exc)) from exc
