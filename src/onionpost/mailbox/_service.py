"""The mailbox process: its onion service, its session server and its local API.

Theory of operation
-------------------
::

    MailboxService.run()     (a ServiceHome, onionpost.host)
    └── host.running         the OnionHost (onionpost.host): the local control
        │                    socket with a MailboxBackend, our tor supervised,
        │                    the static key renewed
        ├── server.run       MailboxServer: publisher of authorized clients, housekeeping
        ├── host.serve       inbound onion streams -> handshakes -> server.run_inbound
        └── host.publish     the onion service, client-authorized

The onion service is published from the home's identity with client
authorization (rend-spec-v3 §2.5.1.2): only clients holding a key the server
lists in :meth:`MailboxServer.authorized_clients` can even fetch its
descriptor. Whenever that list changes the server calls back, and the new
list is handed to tor (:meth:`ServiceHome.authorize`). As for the endpoint
daemon, the host has tor forward the service's streams to a Unix socket in
the home's 0700 run directory, so no TCP port is open.

:class:`MailboxBackend` answers the local API (``onionpost mailbox code``,
``status``, ``wipe``, ``whoami``): its handlers serve those requests only,
and the API server refuses everything an endpoint does (contacts, messages)
as a configuration error.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Final

from onionpost import api
from onionpost.home import Config, Paths, Secrets
from onionpost.host import EventHub, ServiceBackend, ServiceHome
from onionpost.mailbox._server import MailboxPolicy, MailboxServer
from onionpost.proto.address import OnionAddress
from onionpost.store import MailboxStore

__all__ = ["MailboxBackend", "MailboxService"]

log = logging.getLogger("onionpost.mailbox")

# A mailbox holding this share of its disk budget says so in its status.
FULL_WARNING: Final = 0.9


class MailboxBackend(ServiceBackend):
    """The local API of a mailbox (:class:`onionpost.host.Backend`).

    ``tor_status()`` is tor's state as the service sees it.
    """

    def __init__(
        self,
        secrets: Secrets,
        server: MailboxServer,
        policy: MailboxPolicy,
        *,
        tor_status: Callable[[], api.TorStatus],
        hub: EventHub | None = None,
    ) -> None:
        super().__init__(secrets, tor_status=tor_status, hub=hub)
        self._server = server
        self._policy = policy
        self.handlers = self.serving(
            {
                api.MailboxCode: self.mailbox_code,
                api.GetMailboxStatus: self.mailbox_status,
                api.MailboxWipe: self.mailbox_wipe,
            }
        )

    unserved = "this home runs a mailbox, not an endpoint"

    # -- what a mailbox answers ---------------------------------------------------------

    async def mailbox_code(self, request: api.MailboxCode) -> api.SetupCode:
        issued = await self._server.new_setup_code(request.expires)
        text = issued.code.to_text()
        qr = await self.published_qr(self._server, text)
        return api.SetupCode(code=text, expires_ms=issued.expires_ms, qr=qr)

    async def mailbox_status(self, request: api.GetMailboxStatus) -> api.MailboxStatus:
        owners = tuple(await self._server.usage())
        held = sum(o.bytes for o in owners)
        budget = self._policy.max_disk_use
        warning = ""
        if budget and held >= FULL_WARNING * budget:
            warning = f"the mailbox holds {held} of its {budget} bytes (max_disk_use)"
        tor = self._tor_status()
        return api.MailboxStatus(
            role=api.Role.MAILBOX,
            mailbox=str(self._secrets.identity.address),
            paired=bool(owners),
            reachable=tor.state is api.TorState.OK,
            warning=warning,
            last_error="" if tor.state is api.TorState.OK else tor.detail,
            owners=owners,
        )

    async def mailbox_wipe(self, request: api.MailboxWipe) -> api.Wiped:
        address = None if request.owner is None else OnionAddress.parse(request.owner)
        return await self._server.wipe(address)


class MailboxService(ServiceHome):
    """A home run as a mailbox: :meth:`run` until cancelled. See the module docstring."""

    server: MailboxServer
    backend: MailboxBackend

    def __init__(
        self,
        paths: Paths,
        secrets: Secrets,
        config: Config,
        store: MailboxStore,
        *,
        policy: MailboxPolicy | None = None,
    ) -> None:
        self.policy = policy or MailboxPolicy.from_config(config)
        server = MailboxServer(
            store,
            self.policy,
            address=secrets.identity.address,
            clients_changed=self.authorize,
        )
        super().__init__(paths, secrets, config, server, role=api.Role.MAILBOX, log=log)
        self.backend = MailboxBackend(
            secrets, server, self.policy, tor_status=self.tor_status, hub=self.hub
        )
