"""The client library for the daemon's local API (``protocol-spec/local-api.md``).

::

    async with open_client() as client:
        queued = await client.send_text("bob", "the report is in")
        async with client.subscribe(["state"]) as events:
            async for event in events:
                ...

Every call may raise :class:`~onionpost.errors.ApiError` (the daemon refused
it; ``.code`` says why, one of :class:`ErrorCode`) or
:class:`~onionpost.errors.TransportError`; a request the client itself
refuses (too large for the local API) raises
:class:`~onionpost.errors.ConfigError`. All are
:class:`~onionpost.errors.OnionpostError`, and all are importable from here;
:func:`open_client` raises :class:`~onionpost.errors.DaemonNotRunningError`
when no daemon listens. Set deadlines with trio's ``fail_after``. A send
whose answer never comes is sent again under the same message id, so it is
never sent twice; :class:`~onionpost.errors.NotConfirmedError` says when
the client gave up asking.
"""

from __future__ import annotations

from onionpost._localapi import ErrorCode
from onionpost.api import (
    Contact,
    ContactDetail,
    ContactLabels,
    ContactRef,
    ContactRemoved,
    ContactStatus,
    Direction,
    DistributionList,
    Endorsement,
    EndorsementDetail,
    EnrolmentCode,
    EvidenceExported,
    Exported,
    FileInfo,
    Group,
    GroupChange,
    GroupCopy,
    GroupMember,
    GroupSent,
    Identity,
    Kind,
    ListCopy,
    ListSent,
    LogEntries,
    LogEntry,
    LogReport,
    MailboxContactPrekeys,
    MailboxOwnerUsage,
    MailboxRef,
    MailboxStatus,
    Message,
    MessageState,
    PeerChange,
    Queued,
    RegistrarState,
    RevocationListExport,
    RevocationsImported,
    Role,
    RotationAnnounced,
    RotationStatus,
    SafetyNumber,
    SetupCode,
    StateChange,
    Status,
    TextItem,
    Topic,
    TorState,
    TorStatus,
    TrustAnchor,
    Wiped,
    new_message_id,
)
from onionpost.client._client import Client, Subscription, open_client
from onionpost.client._types import Event
from onionpost.errors import (
    ApiError,
    ConfigError,
    DaemonNotRunningError,
    NotConfirmedError,
    OnionpostError,
    TransportError,
)

__all__ = [
    "ApiError",
    "Client",
    "ConfigError",
    "Contact",
    "ContactDetail",
    "ContactLabels",
    "ContactRef",
    "ContactRemoved",
    "ContactStatus",
    "DaemonNotRunningError",
    "Direction",
    "DistributionList",
    "Endorsement",
    "EndorsementDetail",
    "EnrolmentCode",
    "ErrorCode",
    "Event",
    "EvidenceExported",
    "Exported",
    "FileInfo",
    "Group",
    "GroupChange",
    "GroupCopy",
    "GroupMember",
    "GroupSent",
    "Identity",
    "Kind",
    "ListCopy",
    "ListSent",
    "LogEntries",
    "LogEntry",
    "LogReport",
    "MailboxContactPrekeys",
    "MailboxOwnerUsage",
    "MailboxRef",
    "MailboxStatus",
    "Message",
    "MessageState",
    "NotConfirmedError",
    "OnionpostError",
    "PeerChange",
    "Queued",
    "RegistrarState",
    "RevocationListExport",
    "RevocationsImported",
    "Role",
    "RotationAnnounced",
    "RotationStatus",
    "SafetyNumber",
    "SetupCode",
    "StateChange",
    "Status",
    "Subscription",
    "TextItem",
    "Topic",
    "TorState",
    "TorStatus",
    "TransportError",
    "TrustAnchor",
    "Wiped",
    "new_message_id",
    "open_client",
]
