"""The registrar process: its onion service, its session server and its local API.

Theory of operation
-------------------
::

    RegistrarService.run()   (a ServiceHome, onionpost.host)
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
``registrar revoke``, ``registrar list``, ``registrar export-list``, ``registrar
delegation``, ``whoami`` and ``status``; the
local API refuses everything an endpoint does.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable

from onionpost import api
from onionpost.errors import ConfigError
from onionpost.home import Config, Paths, Secrets
from onionpost.host import EventHub, ServiceBackend, ServiceHome
from onionpost.proto.address import OnionAddress
from onionpost.proto.trust import stored_revocations
from onionpost.registrar._book import RegistrarBook
from onionpost.registrar._server import RegistrarPolicy, RegistrarServer

__all__ = ["RegistrarBackend", "RegistrarService", "registrar_state"]

log = logging.getLogger("onionpost.registrar")


def registrar_state(
    book: RegistrarBook, address: OnionAddress, *, refresh: int
) -> api.RegistrarState:
    """What ``registrar status`` and ``registrar list`` show; ``refresh``: the
    seconds between two lists (the policy's)."""
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
                e.replaces,
            )
            for e in book.endpoints()
        ),
        revoked=()
        if held is None
        else tuple(
            api.RegistrarRevocation(r.address, r.revoked_at, r.reason) for r in held.revoked
        ),
        next_list_at=None if held is None else held.issued_at + refresh,
        delegation_until=book.delegation.not_after,
    )


class RegistrarBackend(ServiceBackend):
    """The local API of a registrar (:class:`onionpost.host.Backend`)."""

    def __init__(
        self,
        secrets: Secrets,
        server: RegistrarServer,
        *,
        tor_status: Callable[[], api.TorStatus],
        hub: EventHub | None = None,
    ) -> None:
        super().__init__(secrets, tor_status=tor_status, hub=hub)
        self._server = server
        self.handlers = self.serving(
            {
                api.RegistrarCode: self.code,
                api.RegistrarRevoke: self.revoke,
                api.RegistrarList: self.list,
                api.RegistrarExportList: self.export_list,
                api.RegistrarDelegation: self.delegation,
            }
        )

    unserved = "this home runs an agency's registrar, not an endpoint"

    async def code(self, request: api.RegistrarCode) -> api.EnrolmentCode:
        issued = await self._server.new_code(
            request.endpoint,
            request.unit,
            request.expires,
            replaces=request.replaces,
            from_revoked=request.from_revoked,
        )
        text = issued.code.to_text()
        qr = await self.published_qr(self._server, text)
        return api.EnrolmentCode(
            code=text,
            expires_ms=issued.expires * 1000,
            endpoint=issued.endpoint,
            unit=issued.unit,
            qr=qr,
            replaces=issued.replaces,
        )

    async def revoke(self, request: api.RegistrarRevoke) -> api.RegistrarState:
        await self._server.revoke(request.address, request.reason, force=request.force)
        return self._state()

    async def delegation(self, request: api.RegistrarDelegation) -> api.RegistrarState:
        try:
            data = base64.b64decode(request.delegation, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ConfigError("a delegation is sent as base64") from exc
        await self._server.install_delegation(data)
        return self._state()

    async def list(self, request: api.RegistrarList) -> api.RegistrarState:
        return self._state()

    def _state(self) -> api.RegistrarState:
        server = self._server
        return registrar_state(
            server.book, self._secrets.identity.address, refresh=server.policy.refresh
        )

    async def export_list(self, request: api.RegistrarExportList) -> api.RevocationListExport:
        bundle = await self._server.export_list()
        listed = stored_revocations(bundle.revocations).value
        return api.RevocationListExport(
            agency=listed.agency,
            serial=listed.serial,
            issued_at=listed.issued_at,
            revoked=len(listed.revoked),
            bundle=base64.b64encode(bundle.encode()).decode("ascii"),
        )


class RegistrarService(ServiceHome):
    """A home run as an agency's registrar: :meth:`run` until cancelled."""

    server: RegistrarServer
    backend: RegistrarBackend

    def __init__(
        self,
        paths: Paths,
        secrets: Secrets,
        config: Config,
        book: RegistrarBook,
        *,
        policy: RegistrarPolicy | None = None,
    ) -> None:
        server = RegistrarServer(
            book,
            policy or RegistrarPolicy.from_config(config),
            address=secrets.identity.address,
            clients_changed=self.authorize,
        )
        super().__init__(paths, secrets, config, server, role="registrar", log=log)
        self.backend = RegistrarBackend(secrets, server, tor_status=self.tor_status, hub=self.hub)
