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
when no daemon listens. Set deadlines with trio's ``fail_after``. A send
whose answer never comes is sent again under the same message id, so it is
never sent twice; :class:`~onionpost.errors.NotConfirmedError` says when
the client gave up asking.
"""

from __future__ import annotations

from onionpost.api import (
    Contact,
    ContactDetail,
    ContactLabels,
    ContactRef,
    ContactStatus,
    Direction,
    DistributionList,
    EndorsementDetail,
    Exported,
    FileInfo,
    Group,
    GroupCopy,
    GroupMember,
    GroupSent,
    Identity,
    Kind,
    ListCopy,
    ListSent,
    MailboxContactPrekeys,
    MailboxOwnerUsage,
    MailboxRef,
    MailboxStatus,
    Message,
    MessageState,
    PeerChange,
    Queued,
    Role,
    SafetyNumber,
    SetupCode,
    StateChange,
    Status,
    TorState,
    TorStatus,
    Wiped,
    new_message_id,
)
from onionpost.client._client import Client, Subscription, open_client
from onionpost.client._types import Event
from onionpost.errors import ApiError, DaemonNotRunningError, NotConfirmedError

__all__ = [
    "ApiError",
    "Client",
    "Contact",
    "ContactDetail",
    "ContactLabels",
    "ContactRef",
    "ContactStatus",
    "DaemonNotRunningError",
    "Direction",
    "DistributionList",
    "EndorsementDetail",
    "Event",
    "Exported",
    "FileInfo",
    "Group",
    "GroupCopy",
    "GroupMember",
    "GroupSent",
    "Identity",
    "Kind",
    "ListCopy",
    "ListSent",
    "MailboxContactPrekeys",
    "MailboxOwnerUsage",
    "MailboxRef",
    "MailboxStatus",
    "Message",
    "MessageState",
    "NotConfirmedError",
    "PeerChange",
    "Queued",
    "Role",
    "SafetyNumber",
    "SetupCode",
    "StateChange",
    "Status",
    "Subscription",
    "TorState",
    "TorStatus",
    "Wiped",
    "new_message_id",
    "open_client",
]
