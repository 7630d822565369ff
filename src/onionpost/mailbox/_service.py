"""The mailbox process: its onion service, its session server and its local API.

Theory of operation
-------------------
::

    MailboxService.run()
    ├── serve_api            local control socket, with a MailboxBackend
    └── open_tor             our tor (or an attached one), supervised
        ├── tor.supervise    relaunch / republish on failure
        ├── server.run       MailboxServer: publisher of authorized clients, housekeeping
        ├── serve            inbound onion streams -> handshakes -> server.run_inbound
        └── renew            the Noise static key, renewed while running

The onion service is published from the home's identity with client
authorization (rend-spec-v3 §2.5.1.2): only clients holding a key the server
lists in :meth:`MailboxServer.authorized_clients` can even fetch its
descriptor. Whenever that list changes the server calls back, and the new
list is handed to tor (:meth:`Tor.set_authorized_clients`). As the endpoint
daemon does, tor forwards the service's streams to a Unix socket in the
home's 0700 run directory, so no TCP port is open.

:class:`MailboxBackend` answers the local API (``onionpost mailbox code``,
``status``, ``wipe``, ``whoami``): its handlers serve those requests only,
and the API server refuses everything an endpoint does (contacts, messages)
as a configuration error.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Final

import trio

from onionpost import api
from onionpost._logs import safe
from onionpost.daemon._api import serve_api
from onionpost.daemon._backend import Handlers
from onionpost.daemon._daemon import open_unix_listener
from onionpost.daemon._events import EventHub
from onionpost.errors import TorError
from onionpost.home import Config, ContactCard, Paths, Secrets
from onionpost.mailbox._server import MailboxPolicy, MailboxServer
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import StaticKey
from onionpost.store import MailboxStore
from onionpost.tor import OnionService, Tor, TorConfig, open_tor
from onionpost.transport import serve

__all__ = ["MailboxBackend", "MailboxService", "qr_text"]

log = logging.getLogger("onionpost.mailbox")

# How often the service checks whether its static key needs renewal.
RENEW_CHECK_SECONDS: Final = 3600.0
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


def tor_config(config: Config, paths: Paths) -> TorConfig:
    """The tor this home runs (or attaches to), from its config."""
    if config.tor_mode == "attach":
        return TorConfig(
            tor_binary=config.tor_binary,
            control_port=config.tor_control_port,
            control_socket=config.tor_control_socket,
            password=config.tor_password,
            allow_unauthenticated=config.tor_allow_unauthenticated_control,
        )
    return TorConfig(
        tor_binary=config.tor_binary, data_dir=paths.tor, extra_options=config.tor_extra_options
    )


class MailboxBackend:
    """The local API of a mailbox (daemon/_backend.py's Backend).

    ``tor_status()`` is tor's state as the service sees it.
    """

    unserved: Final = "this home runs a mailbox, not an endpoint"

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

    def publish_tor(self, status: api.TorStatus) -> None:
        self._hub.publish(status)

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
        self._paths = paths
        self._secrets = secrets
        self._config = config
        self.policy = policy or MailboxPolicy.from_config(config)
        self._tor: Tor | None = None
        self._service: OnionService | None = None
        self._tor_state = api.TorStatus(api.TorState.STARTING, "launching tor")
        self.server = MailboxServer(
            store,
            self.policy,
            address=secrets.identity.address,
            clients_changed=self._clients_changed,
        )
        self.backend = MailboxBackend(
            secrets, self.server, self.policy, tor_status=lambda: self._tor_state
        )

    def __repr__(self) -> str:
        return f"MailboxService({self._secrets.identity.address})"

    async def run(
        self, *, task_status: trio.TaskStatus[OnionAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        address = self._secrets.identity.address
        try:
            async with trio.open_nursery() as outer:
                await outer.start(serve_api, self.backend, self._paths.socket)
                log.info("event=starting role=mailbox")
                log.debug("event=starting address=%s", address)
                async with (
                    open_tor(tor_config(self._config, self._paths)) as tor,
                    trio.open_nursery() as nursery,
                ):
                    self._tor = tor
                    await self._report_hardening(tor)
                    nursery.start_soon(self._forward_tor_events, tor)
                    nursery.start_soon(self._renew_loop)
                    await nursery.start(tor.supervise)
                    await nursery.start(self.server.run)
                    # Streams arrive on a Unix socket in our 0700 run directory
                    # (spec §1.2): no TCP port for another local account.
                    listeners = [await trio.to_thread.run_sync(open_unix_listener, self._paths)]
                    await nursery.start(
                        partial(
                            serve,
                            self.server.run_inbound,
                            listeners,
                            identity=self._secrets.identity,
                            static=self._current_static,
                            decide=self.server.decide,
                        )
                    )
                    clients = self.server.authorized_clients()
                    self._service = await tor.publish(
                        self._secrets.identity.seed,
                        virtual_port=self._config.onion_port,
                        target=self._paths.onion_socket,
                        authorized_clients=clients,
                    )
                    self._tor_state = api.TorStatus(api.TorState.OK, "published")
                    log.info("event=ready role=mailbox clients=%d", len(clients))
                    task_status.started(address)
                    await trio.sleep_forever()
        finally:
            self._tor = None
            self._service = None
            self.backend.close()

    async def _clients_changed(self) -> None:
        """The server's authorized clients changed: tell tor (the server retries
        later when this raises, and calls one at a time)."""
        tor, service = self._tor, self._service
        if tor is None or service is None:
            raise TorError("the onion service is not published yet")
        await tor.set_authorized_clients(service, self.server.authorized_clients())

    async def _report_hardening(self, tor: Tor) -> None:
        """Log tor's hardening profile (spec §1.3); warn about what is off."""
        profile = await tor.hardening()
        log.info(
            "event=tor_profile version=%s vanguards_lite=%s pow=%s max_streams=%d",
            safe(profile.version),
            "on" if profile.vanguards_lite else "off",
            "on" if profile.pow else "off",
            profile.max_streams,
        )
        if not profile.vanguards_lite:
            log.warning("event=tor_profile_weak reason=vanguards_lite_off")
        if not profile.pow:
            log.warning("event=tor_profile_weak reason=no_pow_defenses")

    async def _forward_tor_events(self, tor: Tor) -> None:
        async for status in tor.events():
            self._tor_state = api.TorStatus(api.TorState(status.state.value), status.detail)
            self.backend.publish_tor(self._tor_state)
            log.info("event=tor state=%s detail=%s", status.state.value, safe(status.detail))

    def _current_static(self) -> StaticKey:
        return self._secrets.static

    async def _renew_loop(self) -> None:
        """Renew the Noise static key when its certificate is due (spec §2.3)."""
        while True:
            now = int(time.time())
            if self._secrets.static.certificate.needs_renewal(now):
                self._secrets.static = StaticKey.generate(self._secrets.identity, now=now)
                log.info("event=static_key_rotated")
            await trio.sleep(RENEW_CHECK_SECONDS)
