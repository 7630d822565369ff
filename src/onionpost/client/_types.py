"""What a subscription yields, and the error for a reply that does not fit.

Results of calls and events of subscriptions are the records of
:mod:`onionpost.api` themselves: an event is :data:`Event`, the record its
topic names. A reply or event that does not fit its record is a
:class:`~onionpost.errors.TransportError` ("malformed"): the client cannot
trust that connection. Fields the client does not know are ignored, so a
newer daemon may add them (``protocol-spec/local-api.md`` §Evolution).
"""

from __future__ import annotations

from onionpost.api import Event
from onionpost.errors import TransportError

__all__ = ["Event"]


def _malformed(what: str) -> TransportError:
    return TransportError(f"the daemon sent a malformed reply ({what})")
