"""The endpoint's durable state: contacts, outbox, inbox and files (SQLite).

Nothing outside this package opens the database. :class:`Store` is the whole
API: opened once, it is composed of parts, one per group of tables
(``store.contacts``, ``store.outbox``, ``store.messages``,
``store.transfers``, ``store.mailbox``, ``store.lists``, ``store.groups``),
that hand out the frozen records below, none of whose ``repr`` shows a message
body or file name. The store
knows rows, not the wire: the daemon makes its records of them. Formats:
``protocol-spec/storage.md`` §Store.
A home run as a mailbox keeps its state in :class:`MailboxStore` instead
(``protocol-spec/mailbox.md``).

:mod:`at_rest <onionpost.store._crypto>` is the hazardous layer for data at
rest (key derivation, sealing); the home's secrets file is sealed with it.
"""

from __future__ import annotations

from onionpost.store import _crypto as at_rest
from onionpost.store._groups import (
    GroupCopy,
    GroupSend,
    QueuedGroupCopies,
    ReceivedGroupText,
    ever_members,
)
from onionpost.store._lists import Audience, DistributionList, ListCopy, ListSend, QueuedCopies
from onionpost.store._mailbox import (
    Deposited,
    Directory,
    Expired,
    HeldEnvelope,
    MailboxStore,
    OpenCode,
    Owner,
    OwnerUsage,
    PairOutcome,
    Prekey,
    PrekeyKind,
    Registration,
)
from onionpost.store._owner import OwnMailbox
from onionpost.store._records import (
    INCOMING_TRANSITIONS,
    OUTGOING_TRANSITIONS,
    Contact,
    Direction,
    Kind,
    Outgoing,
    OutgoingFile,
    State,
    Stored,
    StoredFile,
)
from onionpost.store._schema import SCHEMA_VERSION
from onionpost.store._store import Store
from onionpost.store._trust import ContactEndorsement, ContactRotation

__all__ = [
    "Audience",
    "INCOMING_TRANSITIONS",
    "OUTGOING_TRANSITIONS",
    "SCHEMA_VERSION",
    "Contact",
    "ContactEndorsement",
    "ContactRotation",
    "Deposited",
    "Direction",
    "Directory",
    "DistributionList",
    "Expired",
    "GroupCopy",
    "GroupSend",
    "HeldEnvelope",
    "Kind",
    "ListCopy",
    "ListSend",
    "MailboxStore",
    "OpenCode",
    "Outgoing",
    "OwnMailbox",
    "OutgoingFile",
    "Owner",
    "OwnerUsage",
    "PairOutcome",
    "Prekey",
    "PrekeyKind",
    "QueuedCopies",
    "QueuedGroupCopies",
    "ReceivedGroupText",
    "Registration",
    "State",
    "Store",
    "Stored",
    "StoredFile",
    "at_rest",
    "ever_members",
]
