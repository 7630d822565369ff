"""The mailbox process: its onion service, its session server and its local API.

Theory of operation
-------------------
::

    MailboxService.run()
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
list is handed to tor (:meth:`OnionHost.authorize`). As for the endpoint
daemon, the host has tor forward the service's streams to a Unix socket in
the home's 0700 run directory, so no TCP port is open.

:class:`MailboxBackend` answers the local API (``onionpost mailbox code``,
``status``, ``wipe``, ``whoami``): its handlers serve those requests only,
and the API server refuses everything an endpoint does (contacts, messages)
as a configuration error.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any, Final

import trio

from onionpost import api
from onionpost.home import Config, ContactCard, Paths, Secrets
from onionpost.host import EventHub, Handlers, OnionHost
from onionpost.mailbox._server import MailboxPolicy, MailboxServer
from onionpost.proto.address import OnionAddress
from onionpost.store import MailboxStore

__all__ = ["MailboxBackend", "MailboxService", "qr_text"]

log = logging.getLogger("onionpost.mailbox")

# A mailbox holding this share of its disk budget says so in its status.
FULL_WARNING: Final = 0.9
# How long `mailbox code` waits for tor to be given the new code's key.
PUBLISH_WAIT: Final = 10.0


def qr_text(data: str) -> str:
    """``data`` as a QR code drawn with block characters, for a terminal.

    A setup code is upper-cased first: QR's alphanumeric mode then holds it in
    a smaller symbol, and the code reads back the same (it ignores case).
    segno is imported here only, when a code is made.
    """
    import segno

    symbol = segno.make(data.upper(), error="m", micro=False)
    out = io.StringIO()
    symbol.terminal(out=out, compact=True)
    return out.getvalue()


class MailboxBackend:
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
        self._secrets = secrets
        self._server = server
        self._policy = policy
        self._tor_status = tor_status
        self._hub = hub or EventHub()

        self.handlers: Handlers = {
            api.Whoami: self.whoami,
            api.GetStatus: self.status,
            api.MailboxCode: self.mailbox_code,
            api.GetMailboxStatus: self.mailbox_status,
            api.MailboxWipe: self.mailbox_wipe,
        }

    unserved: Final = "this home runs a mailbox, not an endpoint"

    def __repr__(self) -> str:
        return "MailboxBackend()"

    # -- what a mailbox answers ---------------------------------------------------------

    async def whoami(self, request: api.Whoami) -> api.Identity:
        card = ContactCard.issue(self._secrets)
        return api.Identity(
            self._secrets.display_name, str(self._secrets.identity.address), card.to_line()
        )

    async def status(self, request: api.GetStatus) -> api.Status:
        return api.Status(
            address=str(self._secrets.identity.address),
            tor=self._tor_status(),
            outbox_depth=0,
            last_delivery_ms=None,
            contacts=(),
        )

    async def mailbox_code(self, request: api.MailboxCode) -> api.SetupCode:
        issued = await self._server.new_setup_code(request.expires)
        # The code is no use before tor knows its key: wait (a little) for that.
        with trio.move_on_after(PUBLISH_WAIT):
            await self._server.wait_published()
        text = issued.code.to_text()
        qr = await trio.to_thread.run_sync(qr_text, text)
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

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self._hub.subscribe(list(topics))

    def close(self) -> None:
        self._hub.close()


class MailboxService:
    """A home run as a mailbox: :meth:`run` until cancelled. See the module docstring."""

    def __init__(
        self,
        paths: Paths,
        secrets: Secrets,
        config: Config,
        store: MailboxStore,
        *,
        policy: MailboxPolicy | None = None,
    ) -> None:
        self._secrets = secrets
        self.policy = policy or MailboxPolicy.from_config(config)
        hub = EventHub()
        self.server = MailboxServer(
            store,
            self.policy,
            address=secrets.identity.address,
            clients_changed=self._clients_changed,
        )
        self.host = OnionHost(
            paths,
            secrets,
            config,
            clients=self.server.authorized_clients,
            hub=hub,
            log=log,
            role=api.Role.MAILBOX,
        )
        self.backend = MailboxBackend(
            secrets, self.server, self.policy, tor_status=lambda: self.host.tor_status, hub=hub
        )

    def __repr__(self) -> str:
        return f"MailboxService({self._secrets.identity.address})"

    async def run(
        self, *, task_status: trio.TaskStatus[OnionAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with self.host.running(self.backend) as nursery:
                await nursery.start(self.server.run)
                await self.host.serve(nursery, self.server.run_inbound, self.server.decide)
                clients = await self.host.publish()
                self.host.ready()
                log.info("event=ready role=mailbox clients=%d", len(clients))
                task_status.started(self._secrets.identity.address)
                await trio.sleep_forever()
        finally:
            self.backend.close()

    async def _clients_changed(self) -> None:
        """The server's authorized clients changed: tell tor (the server retries
        later when this raises, and calls one at a time)."""
        await self.host.authorize()
