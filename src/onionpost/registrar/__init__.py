"""A home run as an agency's registrar: it enrols the agency's endpoints, renews
their endorsements and serves a fresh revocation list (``protocol-spec/trust.md`` §8).

The agency's issuing key and log move here from the offline agency directory
(``onionpost registrar init``); the root stays there. An endpoint enrols with
a one-time code (``onionpost registrar code``, then ``onionpost trust enrol``
on the endpoint), and from then on fetches the list every refresh interval and
renews its endorsement when a third of its life is left.

::

    RegistrarService.run()          the process: `onionpost registrar serve`
    ├── serve_api                   the local control socket (RegistrarBackend)
    └── open_tor                    our tor: the onion service, client-authorized
        ├── serve                   inbound streams -> handshakes -> server.run_inbound
        └── RegistrarServer.run     authorized clients, a fresh list every interval

:class:`RegistrarBook` is its state on disk (``_book.py``),
:class:`RegistrarServer` the sessions and timers (``_server.py``),
:class:`RegistrarService` the wiring to tor and the local API (``_service.py``).
"""

from __future__ import annotations

from onionpost.registrar._book import (
    Enrolled,
    IssuedEnrolment,
    RegistrarBook,
    Served,
    init_registrar,
)
from onionpost.registrar._server import RegistrarPolicy, RegistrarServer
from onionpost.registrar._service import RegistrarBackend, RegistrarService, registrar_state

__all__ = [
    "Enrolled",
    "IssuedEnrolment",
    "RegistrarBackend",
    "RegistrarBook",
    "RegistrarPolicy",
    "RegistrarServer",
    "RegistrarService",
    "Served",
    "init_registrar",
    "registrar_state",
]
