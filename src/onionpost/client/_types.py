"""Subscription events, decoded through :mod:`onionpost.api`.

Results of calls are the records of :mod:`onionpost.api` themselves. A reply
or event that does not fit its record is a
:class:`~onionpost.errors.TransportError` ("malformed"): the client cannot
trust that connection. Fields the client does not know are ignored, so a
newer daemon may add them (``protocol-spec/local-api.md`` §Evolution).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from onionpost import api
from onionpost.errors import TransportError

__all__ = ["Event"]


def _malformed(what: str) -> TransportError:
    return TransportError(f"the daemon sent a malformed reply ({what})")


@dataclass(frozen=True)
class Event:
    """One event line of a subscription: its topic and its data, as sent."""

    topic: str
    data: Mapping[str, Any]

    def message(self) -> api.Message:
        """The message of a ``message`` event (an incoming message, as in the inbox)."""
        return api.decode(api.Message, dict(self.data), error=_malformed, what="message event")

    def state_change(self) -> api.StateChange:
        """The change of a ``state`` event."""
        return api.decode(api.StateChange, dict(self.data), error=_malformed, what="state event")

    def peer_change(self) -> api.PeerChange:
        """The change of a ``peer`` event."""
        return api.decode(api.PeerChange, dict(self.data), error=_malformed, what="peer event")

    def tor_status(self) -> api.TorStatus:
        """The status of a ``tor`` event."""
        return api.decode(api.TorStatus, dict(self.data), error=_malformed, what="tor event")


def _event(line: Mapping[str, Any]) -> Event:
    topic, data = line.get("event"), line.get("data")
    if not isinstance(topic, str) or not isinstance(data, dict):
        raise _malformed("event")
    return Event(topic, data)
