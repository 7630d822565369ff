"""What the store hands out: frozen records, and the message states as a table.

Outgoing messages and files move through::

    queued ──► sent ──► delivered ──► read
    queued | sent ──► expired ──► delivered | read   (a late ack is still the truth)
    queued | sent ──► refused                        (final; the contact said why)

Never backwards: marking a delivered message ``sent`` again (a resend after
a reconnect) changes nothing. ``delivered`` may come before ``sent`` was
recorded (the ack can overtake our bookkeeping). ``refused`` (a FileReject,
spec.md §6.2) is final: nothing moves out of it, so a refused file is never
offered again. Incoming messages are ``received`` and then ``read``; a file
still arriving is ``receiving``.

No record's ``repr`` shows a body or a file name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from onionpost.proto.address import OnionAddress

__all__ = [
    "INCOMING_TRANSITIONS",
    "OUTGOING_TRANSITIONS",
    "Contact",
    "Direction",
    "Kind",
    "Outgoing",
    "OutgoingFile",
    "State",
    "Stored",
    "StoredFile",
]


class Direction(enum.StrEnum):
    IN = "in"
    OUT = "out"


class Kind(enum.StrEnum):
    TEXT = "text"
    FILE = "file"


class State(enum.StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    EXPIRED = "expired"
    RECEIVED = "received"
    REFUSED = "refused"
    RECEIVING = "receiving"


# state -> the states it may move to. Anything else is ignored (never backwards).
OUTGOING_TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.QUEUED: frozenset(
        {State.SENT, State.DELIVERED, State.READ, State.EXPIRED, State.REFUSED}
    ),
    State.SENT: frozenset({State.DELIVERED, State.READ, State.EXPIRED, State.REFUSED}),
    State.DELIVERED: frozenset({State.READ}),
    State.READ: frozenset(),
    State.EXPIRED: frozenset({State.DELIVERED, State.READ}),
    State.REFUSED: frozenset(),
}
INCOMING_TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.RECEIVED: frozenset({State.READ}),
    State.READ: frozenset(),
}


def sources(table: dict[State, frozenset[State]], target: State) -> tuple[str, ...]:
    """The states from which ``target`` may be reached, for a SQL ``IN (...)``."""
    return tuple(sorted(s.value for s, targets in table.items() if target in targets))


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    name: str
    address: OnionAddress
    client_auth_public: bytes
    added_ms: int
    last_seen_ms: int | None
    last_success_ms: int | None
    failures: int
    # Its mailbox, as its newest signed announcement says (mailbox.md).
    mailbox: OnionAddress | None = None
    mailbox_version: int = 0
    # Registered at our mailbox; the version of our announcement it was sent.
    mailbox_registered: bool = False
    mailbox_told: int = 0
    # A member of a group we share who is not our contact (groups.md §9): the
    # group that introduced it and the admin whose operation carried its
    # card. None for a contact.
    introduced_group: bytes | None = None
    introduced_by: bytes | None = None

    @property
    def introduced(self) -> bool:
        """Whether this peer is only a group member introduced to us, no contact."""
        return self.introduced_group is not None


@dataclass(frozen=True, slots=True)
class OutgoingFile:
    """A file queued to a contact; its encrypted copy is in ``files/``."""

    id: bytes
    created_ms: int
    name: str
    size: int
    blake2b: bytes
    content_type: str
    label: str = ""  # its handling label's canonical text ("" none)

    def __repr__(self) -> str:
        return f"OutgoingFile(id={self.id.hex()}, size={self.size})"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A text or file offer waiting to be sent, or sent and waiting for its ack."""

    kind: Kind
    id: bytes
    contact_id: int
    created_ms: int
    state: State
    expires_ms: int | None
    body: str | None  # texts only
    content_type: str
    file: OutgoingFile | None  # files only
    seq: int = 0  # the outbox's order; pending(after=seq) continues from here
    deposited_ms: int | None = None  # wholly deposited in the contact's mailbox
    deposit_offset: int = 0  # a file: bytes deposited so far
    label: str = ""  # its handling label's canonical text ("" none)

    def __repr__(self) -> str:
        return f"Outgoing({self.kind.value}, id={self.id.hex()}, state={self.state.value})"


@dataclass(frozen=True, slots=True)
class StoredFile:
    name: str
    size: int
    blake2b: bytes
    content_type: str
    complete: bool

    def __repr__(self) -> str:
        return f"StoredFile(size={self.size}, complete={self.complete})"


@dataclass(frozen=True, slots=True)
class Stored:
    """A message in the store, either direction.

    ``seq`` orders the inbox (0 for a file still arriving, which has none
    yet). ``received_ms`` is when it was stored here: received, or queued.
    ``refused_ms`` and ``refused_reason`` (the peer's FileRejectReason
    code, spec.md §5.3) are set in state ``refused`` only.
    """

    seq: int
    id: bytes
    contact_id: int
    contact: str
    direction: Direction
    kind: Kind
    state: State
    created_ms: int
    received_ms: int
    sent_ms: int | None
    delivered_ms: int | None
    read_ms: int | None
    body: str | None
    content_type: str
    file: StoredFile | None
    refused_ms: int | None = None
    refused_reason: int | None = None
    deposited_ms: int | None = None
    # The handling label it carries (spec.md §5.10): canonical text, "" when
    # it came from an earlier sender without one.
    label: str = ""

    def __repr__(self) -> str:
        return (
            f"Stored(seq={self.seq}, {self.direction.value} {self.kind.value}, "
            f"id={self.id.hex()}, state={self.state.value})"
        )
