"""A home run as a mailbox: it holds sealed envelopes for endpoints that are offline.

An endpoint (the *owner*) pairs with a mailbox using a one-time setup code,
registers its contacts, and leaves signed prekeys there; a contact that
cannot reach the owner deposits envelopes sealed to one of those prekeys;
the owner drains them when it comes back. One mailbox serves several
owners, each in a space of its own (``protocol-spec/mailbox.md``).

::

    MailboxService.run()            the process: `onionpost mailbox serve`
    ├── serve_api                   the local control socket (MailboxBackend)
    └── open_tor                    our tor: the onion service, client-authorized
        ├── serve                   inbound streams -> handshakes -> server.run_inbound
        └── MailboxServer.run       sessions, housekeeping, authorized clients

:class:`MailboxServer` is the part with the behaviour (``_server.py``);
:class:`MailboxService` wires it to tor and the local API (``_service.py``).
"""

from __future__ import annotations

from onionpost.mailbox._server import IssuedCode, MailboxPolicy, MailboxServer
from onionpost.mailbox._service import MailboxBackend, MailboxService

__all__ = ["IssuedCode", "MailboxBackend", "MailboxPolicy", "MailboxServer", "MailboxService"]
