"""What the local API asks of a process that serves it: handlers by request type.

The API server (``_api.py``) frames requests, checks who is calling and
decodes each request into its :mod:`onionpost.api` record; it knows nothing
of tor, the store or sessions. It then looks the record's type up in the
backend's :attr:`Backend.handlers` and awaits that handler with the record::

    async def send_text(self, request: api.SendText) -> api.Queued: ...

    handlers = {api.SendText: self.send_text, ...}

so a handler's parameters are its request's fields, with the defaults
:mod:`onionpost.api` gives them, and nothing else. A handler returns the
result its request names (``Request[R]``: R, a record or a tuple of them).
A request type missing from the table is one this process does not serve
(a mailbox sends no messages; an endpoint issues no setup codes): the
server answers ``config`` with :attr:`Backend.unserved`. Errors are
:class:`~onionpost.errors.OnionpostError` subclasses, which the server maps
to error codes (``protocol-spec/local-api.md``). ``subscribe`` is the
server's own: it asks the backend for a channel of events.

``tests/daemon/test_handlers.py`` checks that each table's handlers take
their key's record and return its result, and which process serves what.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import trio

from onionpost import api

__all__ = ["JSON", "Backend", "Handler", "Handlers"]

JSON = dict[str, Any]
# A handler takes the record of the request type it is filed under.
Handler = Callable[[Any], Awaitable[Any]]
Handlers = Mapping[type[api.Request[Any]], Handler]


class Backend(Protocol):
    @property
    def handlers(self) -> Handlers:
        """The requests this process serves, each with its handler."""

    @property
    def unserved(self) -> str:
        """Why a request this process does not serve is refused, in words."""

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[JSON]:
        """A bounded channel of ``{"event": topic, "data": {...}}`` for the
        topics of :data:`onionpost.api.EVENTS`; closing it unsubscribes."""
