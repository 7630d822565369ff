"""What the engine shows: messages as the local API shows them, and failures
in words for logs and ``status`` (never message contents)."""

from __future__ import annotations

from onionpost.api import FileInfo, Message, MessageState
from onionpost.errors import (
    CloseCode,
    DialError,
    MailboxRefusedError,
    NoSpaceError,
    OnionpostError,
    RemoteProtocolError,
    StoreError,
    TransportError,
)
from onionpost.proto import messages
from onionpost.store import Direction, Kind, Stored

__all__ = ["code_name", "expected", "mb_code_name", "message_record", "reason"]


def message_record(stored: Stored) -> Message:
    """A stored message as the local API shows it."""
    file = stored.file
    return Message(
        id=stored.id.hex(),
        contact=stored.contact,
        direction=str(stored.direction),
        kind=str(stored.kind),
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


def code_name(code: int | None) -> str:
    if code is None:
        return "none"
    try:
        return CloseCode(code).name.lower().replace("_", "-")
    except ValueError:
        return str(code)


def mb_code_name(code: int) -> str:
    try:
        return messages.MbCode(code).name.lower().replace("_", "-")
    except ValueError:
        return str(code)


def reason(exc: BaseException | None) -> str:
    """A failure in words, for logs and ``status``: never message contents."""
    if exc is None:
        return "unknown"
    if isinstance(exc, DialError):
        return exc.reason
    if isinstance(exc, MailboxRefusedError):
        return f"mailbox-{mb_code_name(exc.code)}"
    if isinstance(exc, RemoteProtocolError):
        return f"protocol-{code_name(exc.close_code)}"
    if isinstance(exc, TransportError):
        text = str(exc)
        if text in ("timeout", "refused"):
            return text
        return "stream-ended" if "without a Close" in text else "stream-broken"
    if isinstance(exc, NoSpaceError):
        return "our-disk-full"
    if isinstance(exc, StoreError):
        return "our-store-failed"
    if isinstance(exc, OnionpostError):
        return type(exc).__name__
    return f"internal-{type(exc).__name__}"
