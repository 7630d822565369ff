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
``status``, ``wipe``, ``whoami``); everything an endpoint does (contacts,
messages) is refused as a configuration error.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

import trio

from onionpost import api
from onionpost.errors import ConfigError
from onionpost.home import Config, ContactCard, Paths, Secrets
from onionpost.host import EventHub, OnionHost
from onionpost.mailbox._server import MailboxPolicy, MailboxServer
from onionpost.proto.address import OnionAddress
from onionpost.store import MailboxStore
from onionpost.tor import TorState

__all__ = ["MailboxBackend", "MailboxService", "qr_text"]

log = logging.getLogger("onionpost.mailbox")

# A mailbox holding this share of its disk budget says so in its status.
FULL_WARNING: Final = 0.9
# How long `mailbox code` waits for tor to be given the new code's key.
PUBLISH_WAIT: Final = 10.0
NOT_AN_ENDPOINT: Final = "this home runs a mailbox, not an endpoint"


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

    def __repr__(self) -> str:
        return "MailboxBackend()"

    # -- what a mailbox answers ---------------------------------------------------------

    async def whoami(self) -> api.Identity:
        card = ContactCard.issue(self._secrets)
        return api.Identity(
            self._secrets.display_name, str(self._secrets.identity.address), card.to_line()
        )

    async def status(self) -> api.Status:
        return api.Status(
            address=str(self._secrets.identity.address),
            tor=self._tor_status(),
            outbox_depth=0,
            last_delivery_ms=None,
            contacts=(),
        )

    async def mailbox_code(self, expires: int = 86_400) -> api.SetupCode:
        issued = await self._server.new_setup_code(expires)
        # The code is no use before tor knows its key: wait (a little) for that.
        with trio.move_on_after(PUBLISH_WAIT):
            await self._server.wait_published()
        text = issued.code.to_text()
        qr = await trio.to_thread.run_sync(qr_text, text)
        return api.SetupCode(code=text, expires_ms=issued.expires_ms, qr=qr)

    async def mailbox_status(self) -> api.MailboxStatus:
        owners = tuple(await self._server.usage())
        held = sum(o.bytes for o in owners)
        budget = self._policy.max_disk_use
        warning = ""
        if budget and held >= FULL_WARNING * budget:
            warning = f"the mailbox holds {held} of its {budget} bytes (max_disk_use)"
        tor = self._tor_status()
        return api.MailboxStatus(
            role="mailbox",
            mailbox=str(self._secrets.identity.address),
            paired=bool(owners),
            reachable=tor.state == TorState.OK.value,
            warning=warning,
            last_error="" if tor.state == TorState.OK.value else tor.detail,
            owners=owners,
        )

    async def mailbox_wipe(self, owner: str | None = None) -> api.Wiped:
        address = None if owner is None else OnionAddress.parse(owner)
        return await self._server.wipe(address)

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self._hub.subscribe(list(topics))

    def close(self) -> None:
        self._hub.close()

    # -- what only an endpoint does -----------------------------------------------------

    async def mailbox_pair(self, code: str) -> api.MailboxRef:
        _refuse()

    async def contact_add(self, card: str, name: str | None = None) -> api.ContactRef:
        _refuse()

    async def contact_list(self) -> list[api.Contact]:
        _refuse()

    async def contact_remove(self, name: str) -> api.ContactRef:
        _refuse()

    async def contact_verify(self, name: str) -> api.SafetyNumber:
        _refuse()

    async def send_text(
        self, contact: str, body: str, content_type: str = "text/plain"
    ) -> api.Queued:
        _refuse()

    async def send_file(self, contact: str, path: str) -> api.Queued:
        _refuse()

    async def inbox(
        self, after: int = 0, limit: int = 100, unread: bool = False
    ) -> list[api.Message]:
        _refuse()

    async def outbox(self, contact: str | None = None, limit: int = 100) -> list[api.Message]:
        _refuse()

    async def message(self, id: str, contact: str | None = None) -> api.Message:
        _refuse()

    async def mark_read(self, ids: Sequence[str], contact: str | None = None) -> api.Marked:
        _refuse()

    async def export_file(self, id: str, dest: str, contact: str | None = None) -> api.Exported:
        _refuse()

    async def retry(self, contact: str | None = None) -> api.Retried:
        _refuse()


def _refuse() -> NoReturn:
    raise ConfigError(NOT_AN_ENDPOINT)


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
            role="mailbox",
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
