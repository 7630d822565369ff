"""What the engine makes of the store's rows: messages as the local API shows
them, and the wire records that carry outgoing ones to their contact.

The store hands out rows (:class:`~onionpost.store.Stored`,
:class:`~onionpost.store.Outgoing`) and knows no wire format; a session
(``_session``) and an envelope for the contact's mailbox (``_deposit``) make
their records here alike.
"""

from __future__ import annotations

from onionpost import api
from onionpost.api import FileInfo, Message, MessageState
from onionpost.errors import OnionpostError
from onionpost.proto import messages
from onionpost.store import Direction, Kind, Outgoing, Stored

__all__ = ["expected", "message_record", "wire_record"]


def message_record(stored: Stored) -> Message:
    """A stored message as the local API shows it."""
    file = stored.file
    return Message(
        id=stored.id.hex(),
        contact=stored.contact,
        direction=api.Direction(stored.direction.value),
        kind=api.Kind(stored.kind.value),
        state=shown_state(stored),
        created_ms=stored.created_ms,
        seq=stored.seq if stored.direction == Direction.IN and stored.seq else None,
        received_ms=stored.received_ms,
        body=stored.body if stored.kind == Kind.TEXT else None,
        content_type=stored.content_type,
        file=None if file is None else FileInfo(file.name, file.size, file.complete),
        reason=stored.refused_reason,
        sent_ms=stored.sent_ms,
        delivered_ms=stored.delivered_ms,
        read_ms=stored.read_ms,
        label=stored.label,
    )


def wire_record(
    outgoing: Outgoing, group: tuple[bytes, tuple[bytes, ...]] | None = None
) -> messages.Text | messages.GroupText | messages.FileOffer | messages.GroupFileOffer:
    """What carries ``outgoing`` to its contact: a queued text's Text, a
    queued file's FileOffer (spec.md §5.2, §6.2); a GroupText or a
    GroupFileOffer for a copy of a group send, with its ``group``'s id and
    heads (groups.md §6)."""
    file = outgoing.file
    if file is not None and group is not None:
        group_id, heads = group
        return messages.GroupFileOffer(
            file.id,
            file.created_ms,
            file.name,
            file.size,
            file.blake2b,
            file.content_type,
            group_id,
            b"".join(heads),
            outgoing.label,
        )
    if file is not None:
        return messages.FileOffer(
            file.id,
            file.created_ms,
            file.name,
            file.size,
            file.blake2b,
            file.content_type,
            outgoing.label,
        )
    assert outgoing.body is not None
    if group is not None:
        group_id, heads = group
        return messages.GroupText(
            outgoing.id,
            outgoing.created_ms,
            outgoing.body,
            outgoing.content_type,
            group_id,
            b"".join(heads),
            outgoing.label,
        )
    return messages.Text(
        outgoing.id, outgoing.created_ms, outgoing.body, outgoing.content_type, outgoing.label
    )


def shown_state(stored: Stored) -> MessageState:
    """The state the local API shows: ``deposited`` is an outgoing message
    the contact's mailbox holds, not yet acknowledged by the contact."""
    if stored.deposited_ms is not None and stored.state in ("queued", "sent"):
        return MessageState.DEPOSITED
    return MessageState(stored.state)


def expected(exc: BaseException) -> bool:
    """Failures that are routine on a network or a full disk, not our bugs."""
    return isinstance(exc, OnionpostError)
