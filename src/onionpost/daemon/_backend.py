"""What the local API asks of the daemon: one async method per API method.

The API server (``_api.py``) frames requests, checks who is calling, and
dispatches here; it knows nothing of tor, the store or sessions. Every method
takes JSON-able keyword arguments and returns a JSON-able value; ids are hex
strings and times are milliseconds since the epoch. Errors are
:class:`~onionpost.errors.OnionpostError` subclasses, which the server maps to
error codes (``protocol-spec/local-api.md``).
"""

from __future__ import annotations

from typing import Any, Protocol

import trio

JSON = dict[str, Any]


class Backend(Protocol):
    async def whoami(self) -> JSON:
        """``{"name", "address", "card", "fingerprint"}``"""

    async def status(self) -> JSON:
        """``{"tor": {"state", "bootstrap", "detail"}, "address", "outbox_depth",
        "last_delivery_ms", "contacts": [{"name", "address", "reachable",
        "last_seen_ms", "queued"}]}``"""

    async def contact_add(self, card: str, name: str | None = None) -> JSON:
        """``{"name", "address"}``; CardError for a bad card, ConfigError for a duplicate."""

    async def contact_list(self) -> list[JSON]:
        """``[{"name", "address", "added_ms", "last_seen_ms", "reachable"}]``"""

    async def contact_remove(self, name: str) -> JSON:
        """``{"name", "address"}``; ConfigError for an unknown name."""

    async def contact_verify(self, name: str) -> JSON:
        """``{"name", "safety_number"}``"""

    async def send_text(self, contact: str, body: str, content_type: str = "text/plain") -> JSON:
        """Returns once the message is durably queued: ``{"id", "state": "queued"}``."""

    async def send_file(self, contact: str, path: str) -> JSON:
        """Returns once the file is durably queued: ``{"id", "name", "size", "state"}``."""

    async def inbox(self, after: int = 0, limit: int = 100) -> list[JSON]:
        """Incoming messages with ``seq`` > after: ``[{"seq", "id", "contact", "kind",
        "body" | "file": {"name", "size", "complete"}, "created_ms", "received_ms", "read"}]``"""

    async def message(self, id: str, contact: str | None = None) -> JSON:
        """One message, either direction, with its ``state``. An id that
        messages of several contacts carry needs ``contact``."""

    async def mark_read(self, ids: list[str], contact: str | None = None) -> JSON:
        """``{"marked": n}``; sends read receipts to the senders (each its own)."""

    async def export_file(self, id: str, dest: str, contact: str | None = None) -> JSON:
        """Decrypt a received file to ``dest`` (absolute path): ``{"path", "size"}``."""

    async def retry(self, contact: str | None = None) -> JSON:
        """Retry delivery now: ``{"contacts": n}``."""

    def subscribe(self, topics: list[str]) -> trio.MemoryReceiveChannel[JSON]:
        """A bounded channel of ``{"event": topic, "data": {...}}`` for the topics
        ``message``, ``state``, ``peer``, ``tor``; closing it unsubscribes."""
