"""Typed, frozen results of the local API, decoded strictly from its JSON.

A field the daemon must send and did not, or sent with the wrong type, is a
:class:`~onionpost.errors.TransportError` ("malformed reply"): the client
cannot trust that connection. Fields the client does not know are ignored,
so a newer daemon may add them (``protocol-spec/local-api.md`` §Evolution).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from onionpost.errors import TransportError

__all__ = [
    "Contact",
    "ContactRef",
    "ContactStatus",
    "Event",
    "Exported",
    "FileInfo",
    "Identity",
    "Message",
    "Queued",
    "SafetyNumber",
    "StateChange",
    "Status",
    "TorStatus",
]

_SAFETY_GROUP: Final = 5


@dataclass(frozen=True)
class Identity:
    """This endpoint: its display name, onion address and contact card line."""

    name: str
    address: str
    card: str
    fingerprint: str | None = None


@dataclass(frozen=True)
class TorStatus:
    state: str
    detail: str
    bootstrap: int | None = None


@dataclass(frozen=True)
class ContactStatus:
    name: str
    address: str
    reachable: bool
    last_seen_ms: int | None
    queued: int
    last_error: str = ""
    since_ms: int | None = None  # when it became reachable or unreachable
    failures: int = 0  # failed attempts since it last accepted a session
    retry_in: float | None = None  # seconds until the next dial, if one is due


@dataclass(frozen=True)
class Status:
    address: str
    tor: TorStatus
    outbox_depth: int
    last_delivery_ms: int | None
    contacts: tuple[ContactStatus, ...]


@dataclass(frozen=True)
class Contact:
    name: str
    address: str
    added_ms: int | None
    last_seen_ms: int | None
    reachable: bool


@dataclass(frozen=True)
class ContactRef:
    """The contact a ``contact_add`` or ``contact_remove`` acted on."""

    name: str
    address: str


@dataclass(frozen=True)
class SafetyNumber:
    """What both sides compare out of band before trusting a contact."""

    name: str
    safety_number: str

    @property
    def groups(self) -> tuple[str, ...]:
        """The number in groups of five digits, as people read it aloud."""
        digits = "".join(self.safety_number.split())
        return tuple(digits[i : i + _SAFETY_GROUP] for i in range(0, len(digits), _SAFETY_GROUP))


@dataclass(frozen=True)
class Queued:
    """A message or file durably queued for delivery (``name``/``size`` for files)."""

    id: str
    state: str
    name: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    complete: bool


@dataclass(frozen=True)
class Message:
    """One message; ``seq`` orders incoming ones, ``body`` or ``file`` by ``kind``."""

    id: str
    contact: str
    kind: str  # "text" | "file"
    created_ms: int
    seq: int | None = None
    direction: str = "in"  # "in" | "out"
    body: str | None = None
    content_type: str | None = None
    file: FileInfo | None = None
    received_ms: int | None = None
    state: str | None = None
    read: bool = False


@dataclass(frozen=True)
class Exported:
    path: str
    size: int


@dataclass(frozen=True)
class Event:
    """One event line of a subscription: its topic and its data, as sent."""

    topic: str
    data: Mapping[str, Any]

    def message(self) -> Message:
        """The message of a ``message`` event (an incoming message, as in the inbox)."""
        return parse_message(dict(self.data))

    def state_change(self) -> StateChange:
        """The change of a ``state`` event."""
        return parse_state_change(self.data)


@dataclass(frozen=True)
class StateChange:
    """A ``state`` event: a message or file moved on (``bytes``/``size`` while moving)."""

    id: str
    state: str
    bytes: int | None = None
    size: int | None = None
    reason: int | None = None


# -- Decoding --------------------------------------------------------------------------


def _malformed(what: str) -> TransportError:
    return TransportError(f"the daemon sent a malformed {what}")


class _Fields:
    """Typed access to one JSON object; anything missing or mistyped is malformed."""

    def __init__(self, data: object, what: str) -> None:
        if not isinstance(data, dict):
            raise _malformed(what)
        self.data: dict[str, Any] = data
        self.what = what

    def _get(self, key: str, kinds: type | tuple[type, ...], *, optional: bool) -> Any:
        value = self.data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in _tuple(kinds)):
            raise _malformed(f"{self.what} ('{key}')")
        return value

    def text(self, key: str) -> str:
        value: str = self._get(key, str, optional=False)
        return value

    def opt_text(self, key: str) -> str | None:
        value: str | None = self._get(key, str, optional=True)
        return value

    def integer(self, key: str) -> int:
        value: int = self._get(key, int, optional=False)
        return value

    def opt_integer(self, key: str) -> int | None:
        value: int | None = self._get(key, int, optional=True)
        return value

    def opt_number(self, key: str) -> float | None:
        value: float | int | None = self._get(key, (int, float), optional=True)
        return None if value is None else float(value)

    def flag(self, key: str, default: bool) -> bool:
        value: bool | None = self._get(key, bool, optional=True)
        return default if value is None else value


def _tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def parse_identity(data: object) -> Identity:
    f = _Fields(data, "identity")
    return Identity(f.text("name"), f.text("address"), f.text("card"), f.opt_text("fingerprint"))


def parse_status(data: object) -> Status:
    f = _Fields(data, "status")
    tor = _Fields(f.data.get("tor"), "status")
    contacts = f.data.get("contacts")
    if not isinstance(contacts, list):
        raise _malformed("status ('contacts')")
    return Status(
        address=f.text("address"),
        tor=TorStatus(
            tor.text("state"), tor.opt_text("detail") or "", tor.opt_integer("bootstrap")
        ),
        outbox_depth=f.integer("outbox_depth"),
        last_delivery_ms=f.opt_integer("last_delivery_ms"),
        contacts=tuple(_parse_contact_status(c) for c in contacts),
    )


def _parse_contact_status(data: object) -> ContactStatus:
    f = _Fields(data, "status contact")
    return ContactStatus(
        name=f.text("name"),
        address=f.text("address"),
        reachable=f.flag("reachable", False),
        last_seen_ms=f.opt_integer("last_seen_ms"),
        queued=f.opt_integer("queued") or 0,
        last_error=f.opt_text("last_error") or "",
        since_ms=f.opt_integer("since_ms"),
        failures=f.opt_integer("failures") or 0,
        retry_in=f.opt_number("retry_in"),
    )


def parse_contact(data: object) -> Contact:
    f = _Fields(data, "contact")
    return Contact(
        name=f.text("name"),
        address=f.text("address"),
        added_ms=f.opt_integer("added_ms"),
        last_seen_ms=f.opt_integer("last_seen_ms"),
        reachable=f.flag("reachable", False),
    )


def parse_contact_ref(data: object) -> ContactRef:
    f = _Fields(data, "contact")
    return ContactRef(f.text("name"), f.text("address"))


def parse_safety_number(data: object) -> SafetyNumber:
    f = _Fields(data, "safety number")
    return SafetyNumber(f.text("name"), f.text("safety_number"))


def parse_queued(data: object) -> Queued:
    f = _Fields(data, "queued message")
    return Queued(f.text("id"), f.text("state"), f.opt_text("name"), f.opt_integer("size"))


def parse_message(data: object) -> Message:
    f = _Fields(data, "message")
    file_info = None
    if f.data.get("file") is not None:
        g = _Fields(f.data["file"], "message file")
        file_info = FileInfo(g.text("name"), g.integer("size"), g.flag("complete", False))
    state = f.opt_text("state")
    return Message(
        id=f.text("id"),
        contact=f.text("contact"),
        kind=f.text("kind"),
        created_ms=f.integer("created_ms"),
        seq=f.opt_integer("seq"),
        direction=f.opt_text("direction") or "in",
        body=f.opt_text("body"),
        content_type=f.opt_text("content_type"),
        file=file_info,
        received_ms=f.opt_integer("received_ms"),
        state=state,
        read=f.flag("read", state == "read"),
    )


def parse_exported(data: object) -> Exported:
    f = _Fields(data, "export")
    return Exported(f.text("path"), f.integer("size"))


def parse_count(data: object, key: str) -> int:
    return _Fields(data, "reply").integer(key)


def parse_event(data: object) -> Event:
    f = _Fields(data, "event")
    payload = f.data.get("data")
    if not isinstance(payload, dict):
        raise _malformed("event ('data')")
    return Event(f.text("event"), payload)


def parse_state_change(data: Mapping[str, Any]) -> StateChange:
    f = _Fields(dict(data), "state event")
    return StateChange(
        f.text("id"),
        f.text("state"),
        f.opt_integer("bytes"),
        f.opt_integer("size"),
        f.opt_integer("reason"),
    )
