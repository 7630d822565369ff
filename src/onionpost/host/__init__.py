"""What an endpoint daemon and a mailbox both stand on: the onion host.

Neither process imports the other; what both need is here, one floor below
them (``README.md``, "The code")::

    daemon ─────┐
    mailbox ────┼──► host ──► tor, transport, home, proto
    registrar ──┘

- :class:`OnionHost`: tor (launched or attached, supervised, its hardening
  reported, its state into an :class:`EventHub`), the Noise static key's
  renewal, the onion service on a Unix socket, its authorized clients, and
  :meth:`OnionHost.dial` to another onion service.
- :func:`serve_api` and :class:`Backend`: the local control socket and what
  it asks of the process behind it; :class:`EventHub`: its events.
- :class:`ServiceHome`: a home run as a client-authorized onion service (a
  mailbox, a registrar) with its :class:`ServiceBackend` (``whoami``,
  ``status``, a new code drawn by :func:`qr_text` once tor has its key);
  for its session server, :class:`ClientsPublisher` (who tor authorizes,
  after each change) and :class:`PeerSessions` (sessions per peer, bounded;
  :func:`refuse_session` past the bound).
- The supervisors' small pieces: :class:`Kick`, :class:`TokenBucket`,
  :func:`first_failure`, :class:`Shed`, and :func:`reason`, the one
  vocabulary in which failures are logged and reported.
- :class:`StoreWorker`: where synchronous store calls run, a worker thread
  (:class:`ThreadWorker`) or, for tests on virtual time, the event loop
  (:class:`InlineWorker`).
- The start of a process: :func:`check_primitives`, :func:`home_lock`,
  :func:`open_home`, :func:`configure_logging`.
"""

from __future__ import annotations

from onionpost.host._api import serve_api
from onionpost.host._backend import JSON, Backend, Handler, Handlers
from onionpost.host._events import EventHub
from onionpost.host._onion import (
    OnionHost,
    descriptor_refetched,
    open_unix_listener,
    tor_config,
)
from onionpost.host._service import (
    CLIENTS_RETRY,
    CLOSE_GRACE,
    ClientsPublisher,
    MeteredReceiver,
    PeerSessions,
    ServiceBackend,
    ServiceHome,
    ServiceServer,
    qr_text,
    refuse_session,
)
from onionpost.host._startup import (
    SecretSource,
    check_primitives,
    configure_logging,
    home_lock,
    open_home,
)
from onionpost.host._supervision import (
    Kick,
    Shed,
    TokenBucket,
    code_name,
    first_failure,
    reason,
)
from onionpost.host._worker import InlineWorker, StoreWorker, ThreadWorker

__all__ = [
    "CLIENTS_RETRY",
    "CLOSE_GRACE",
    "JSON",
    "Backend",
    "EventHub",
    "Handler",
    "Handlers",
    "InlineWorker",
    "Kick",
    "OnionHost",
    "ClientsPublisher",
    "MeteredReceiver",
    "PeerSessions",
    "ServiceBackend",
    "ServiceHome",
    "ServiceServer",
    "qr_text",
    "refuse_session",
    "descriptor_refetched",
    "SecretSource",
    "Shed",
    "StoreWorker",
    "ThreadWorker",
    "TokenBucket",
    "check_primitives",
    "code_name",
    "configure_logging",
    "first_failure",
    "home_lock",
    "open_home",
    "open_unix_listener",
    "reason",
    "serve_api",
    "tor_config",
]
