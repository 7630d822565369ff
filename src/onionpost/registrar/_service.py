"""The registrar process: its onion service, its session server and its local API.

Theory of operation
-------------------
::

    RegistrarService.run()
    └── host.running         the OnionHost: the local control socket with a
        │                    RegistrarBackend, our tor supervised
        ├── server.run       RegistrarServer: authorized clients, a fresh list
        │                    every refresh interval
        ├── host.serve       inbound onion streams -> handshakes -> server.run_inbound
        └── host.publish     the onion service, client-authorized

As a mailbox's, the onion service is published with client authorization
(rend-spec-v3 §2.5.1.2): only enrolled endpoints not revoked, and holders of
a code waiting, can fetch its descriptor; the list is handed to tor whenever
it changes. :class:`RegistrarBackend` answers ``registrar code``,
``registrar revoke``, ``registrar list``, ``whoami`` and ``status``; the
local API refuses everything an endpoint does.
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
from onionpost.proto.address import OnionAddress
from onionpost.registrar._book import RegistrarBook
from onionpost.registrar._server import RegistrarPolicy, RegistrarServer

__all__ = ["RegistrarBackend", "RegistrarService", "registrar_state"]

log = logging.getLogger("onionpost.registrar")

# How long `registrar code` waits for tor to be given the new code's key.
PUBLISH_WAIT: Final = 10.0


def _qr(data: str) -> str:
    import segno

    symbol = segno.make(data.upper(), error="m", micro=False)
    out = io.StringIO()
    symbol.terminal(out=out, compact=True)
    return out.getvalue()


def registrar_state(book: RegistrarBook, address: OnionAddress) -> api.RegistrarState:
    """What ``registrar list`` shows."""
    held = book.revocations
    return api.RegistrarState(
        agency=book.agency,
        registrar=str(address),
        serial=None if held is None else held.serial,
        issued_at=None if held is None else held.issued_at,
        log_size=book.log.size,
        endpoints=tuple(
            api.RegistrarEndpoint(
                e.address,
                e.endpoint,
                e.unit,
                e.enrolled_at,
                e.valid_until,
                book.revoked(e.address),
            )
            for e in book.endpoints()
        ),
        revoked=()
        if held is None
        else tuple(
            api.RegistrarRevocation(r.address, r.revoked_at, r.reason) for r in held.revoked
        ),
    )


class RegistrarBackend:
    """The local API of a registrar (:class:`onionpost.host.Backend`)."""

    def __init__(
        self,
        secrets: Secrets,
        server: RegistrarServer,
        *,
        tor_status: Callable[[], api.TorStatus],
        hub: EventHub | None = None,
    ) -> None:
        self._secrets = secrets
        self._server = server
        self._tor_status = tor_status
        self._hub = hub or EventHub()
        self.handlers: Handlers = {
            api.Whoami: self.whoami,
            api.GetStatus: self.status,
            api.RegistrarCode: self.code,
            api.RegistrarRevoke: self.revoke,
            api.RegistrarList: self.list,
        }

    unserved: Final = "this home runs an agency's registrar, not an endpoint"

    def __repr__(self) -> str:
        return "RegistrarBackend()"

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

    async def code(self, request: api.RegistrarCode) -> api.EnrolmentCode:
        issued = await self._server.new_code(request.endpoint, request.unit, request.expires)
        with trio.move_on_after(PUBLISH_WAIT):
            await self._server.wait_published()
        text = issued.code.to_text()
        qr = await trio.to_thread.run_sync(_qr, text)
        return api.EnrolmentCode(
            code=text,
            expires_ms=issued.expires * 1000,
            endpoint=request.endpoint,
            unit=request.unit,
            qr=qr,
        )

    async def revoke(self, request: api.RegistrarRevoke) -> api.RegistrarState:
        await self._server.revoke(request.address, request.reason)
        return registrar_state(self._server.book, self._secrets.identity.address)

    async def list(self, request: api.RegistrarList) -> api.RegistrarState:
        return registrar_state(self._server.book, self._secrets.identity.address)

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self._hub.subscribe(list(topics))

    def close(self) -> None:
        self._hub.close()


class RegistrarService:
    """A home run as an agency's registrar: :meth:`run` until cancelled."""

    def __init__(
        self,
        paths: Paths,
        secrets: Secrets,
        config: Config,
        book: RegistrarBook,
        *,
        policy: RegistrarPolicy | None = None,
    ) -> None:
        self._secrets = secrets
        hub = EventHub()
        self.server = RegistrarServer(
            book,
            policy or RegistrarPolicy.from_config(config),
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
            role="registrar",
        )
        self.backend = RegistrarBackend(
            secrets, self.server, tor_status=lambda: self.host.tor_status, hub=hub
        )

    def __repr__(self) -> str:
        return f"RegistrarService({self._secrets.identity.address})"

    async def run(
        self, *, task_status: trio.TaskStatus[OnionAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            async with self.host.running(self.backend) as nursery:
                await nursery.start(self.server.run)
                await self.host.serve(nursery, self.server.run_inbound, self.server.decide)
                clients = await self.host.publish()
                self.host.ready()
                log.info("event=ready role=registrar clients=%d", len(clients))
                task_status.started(self._secrets.identity.address)
                await trio.sleep_forever()
        finally:
            self.backend.close()

    async def _clients_changed(self) -> None:
        await self.host.authorize()
