"""The client library for the daemon's local API (``protocol-spec/local-api.md``).

::

    async with open_client() as client:
        queued = await client.send_text("bob", "the report is in")
        async with client.subscribe(["state"]) as events:
            async for event in events:
                ...

Every call may raise :class:`~onionpost.errors.ApiError` (the daemon refused
it; ``.code`` says why) or :class:`~onionpost.errors.TransportError`;
:func:`open_client` raises :class:`~onionpost.errors.DaemonNotRunningError`
when no daemon listens. Set deadlines with trio's ``fail_after``.
"""

from __future__ import annotations

from onionpost.api import (
    Contact,
    ContactRef,
    ContactStatus,
    Exported,
    FileInfo,
    Identity,
    MailboxOwnerUsage,
    MailboxRef,
    MailboxStatus,
    Message,
    MessageState,
    PeerChange,
    Queued,
    SafetyNumber,
    SetupCode,
    StateChange,
    Status,
    TorStatus,
    Wiped,
)
from onionpost.client._client import Client, Subscription, open_client
from onionpost.client._types import Event
from onionpost.errors import ApiError, DaemonNotRunningError

__all__ = [
    "ApiError",
    "Client",
    "Contact",
    "ContactRef",
    "ContactStatus",
    "DaemonNotRunningError",
    "Event",
    "Exported",
    "FileInfo",
    "Identity",
    "MailboxOwnerUsage",
    "MailboxRef",
    "MailboxStatus",
    "Message",
    "MessageState",
    "PeerChange",
    "Queued",
    "SafetyNumber",
    "SetupCode",
    "StateChange",
    "Status",
    "Subscription",
    "TorStatus",
    "Wiped",
    "open_client",
]
