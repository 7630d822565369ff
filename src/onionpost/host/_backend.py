"""What the local API asks of the daemon: one async method per API method.

The API server (``_api.py``) frames requests, checks who is calling, decodes
each request's parameters against :mod:`onionpost.api` and calls the method of
the same name here with them as keyword arguments; it knows nothing of tor,
the store or sessions. Every method returns the :mod:`onionpost.api` record
(or list of records) its request names as ``RESULT``. Errors are
:class:`~onionpost.errors.OnionpostError` subclasses, which the server maps to
error codes (``protocol-spec/local-api.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import trio

from onionpost import api

JSON = dict[str, Any]


class Backend(Protocol):
    async def whoami(self) -> api.Identity: ...

    async def status(self) -> api.Status: ...

    async def contact_add(self, card: str, name: str | None = None) -> api.ContactRef: ...

    async def contact_list(self) -> Sequence[api.Contact]: ...

    async def contact_remove(self, name: str) -> api.ContactRef: ...

    async def contact_verify(self, name: str) -> api.SafetyNumber: ...

    async def send_text(
        self, contact: str, body: str, content_type: str = "text/plain"
    ) -> api.Queued: ...

    async def send_file(self, contact: str, path: str) -> api.Queued: ...

    async def inbox(
        self, after: int = 0, limit: int = 100, unread: bool = False
    ) -> Sequence[api.Message]: ...

    async def outbox(
        self, contact: str | None = None, limit: int = 100
    ) -> Sequence[api.Message]: ...

    async def message(self, id: str, contact: str | None = None) -> api.Message: ...

    async def mark_read(self, ids: Sequence[str], contact: str | None = None) -> api.Marked: ...

    async def export_file(self, id: str, dest: str, contact: str | None = None) -> api.Exported: ...

    async def retry(self, contact: str | None = None) -> api.Retried: ...

    async def mailbox_code(self, expires: int = 86_400) -> api.SetupCode: ...

    async def mailbox_pair(self, code: str) -> api.MailboxRef: ...

    async def mailbox_status(self) -> api.MailboxStatus: ...

    async def mailbox_wipe(self, owner: str | None = None) -> api.Wiped: ...

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[JSON]:
        """A bounded channel of ``{"event": topic, "data": {...}}`` for the
        topics of :data:`onionpost.api.EVENTS`; closing it unsubscribes."""
