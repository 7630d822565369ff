"""The onion host: the tor side that an endpoint daemon and a mailbox both run.

Theory of operation
-------------------
::

    async with host.running(backend) as nursery:
    ├── serve_api            the local control socket, answered by ``backend``
    └── open_tor             our tor (or an attached one)
        ├── hardening        logged once; what is off, warned about (spec §1.3)
        ├── tor events       -> TorStatus into the hub (and ``tor_back`` when tor is back)
        ├── renew            the Noise static key, renewed while running (spec §2.3)
        └── tor.supervise    relaunch / republish on failure
    await host.serve(nursery, handler, decide)   the Unix listener -> responder handshakes
    await host.publish()                         the onion service, client-authorized
    host.ready()

The process's own parts (the delivery engine, the mailbox's server) run in
the nursery :meth:`OnionHost.running` yields, between those steps. The
onion service forwards its streams to a Unix socket in the home's 0700 run
directory: no TCP port another local account could reach to hold our
handshake slots (spec §1.2). Its authorized clients (rend-spec-v3
§2.5.1.2) come from the ``clients`` function the owner gives; when they
change, the owner calls :meth:`OnionHost.authorize`.

:meth:`OnionHost.dial` reaches another onion service (a contact, a mailbox)
through the same tor: one dial per address at a time (the
:class:`~onionpost.tor.DialScheduler`), a fresh descriptor asked for when
the dial failed the way a stale one fails (and our circuits to the service
closed when it hung, the way a stale rendezvous circuit hangs), and our
side of the handshake.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Final

import trio

from onionpost import api
from onionpost._logs import safe
from onionpost.errors import ConfigError, DialError, TorError
from onionpost.home import Config, Paths, Secrets
from onionpost.host._api import serve_api
from onionpost.host._backend import Backend
from onionpost.host._events import EventHub
from onionpost.host._forget import ForgetRule
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import StaticKey
from onionpost.proto.session import PeerDecision
from onionpost.tor import DialScheduler, OnionService, Tor, TorConfig, TorState, open_tor
from onionpost.transport import Handler, SecureChannel, connect, serve

__all__ = ["OnionHost", "descriptor_refetched", "open_unix_listener", "tor_config"]

# How often the host checks whether its static key needs renewal.
RENEW_CHECK_SECONDS: Final = 3600.0
# Dial failures after which our tor may hold a stale descriptor of the
# service (its tor restarted with new introduction points; a mailbox's
# descriptor also changes with its authorized clients): ask for a fresh one.
STALE_DESCRIPTOR_REASONS: Final = frozenset(
    {
        "introduction-failed",
        "introduction-timed-out",
        "rendezvous-failed",
        "descriptor-not-found",
        "client-auth-wrong",
    }
)
REFETCH_SECONDS: Final = 5.0
# The onion service's Unix socket: sun_path's size, and the accept backlog.
MAX_UNIX_PATH: Final = 107
MAX_UNIX_BACKLOG: Final = 128

Decide = Callable[[OnionAddress], PeerDecision]


def descriptor_refetched(exc: BaseException) -> bool:
    """Whether :meth:`OnionHost.dial` asked tor for a fresh descriptor of the
    service as it raised ``exc`` (a dial that failed the way a stale one
    fails, or that tor did not answer): the next dial may well work, so the
    caller can try again soon rather than wait out a backoff."""
    return isinstance(exc, DialError) and (
        exc.reason in STALE_DESCRIPTOR_REASONS or exc.reason == "timeout"
    )


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


class OnionHost:
    """Tor, the onion service and the local API around one process's own parts.

    ``clients`` gives the onion service's authorized clients (x25519 public
    keys) whenever they are needed. ``hub`` receives every
    :class:`~onionpost.api.TorStatus`; ``tor_back`` is called when tor is
    usable again after it was not. ``log`` is the owner's logger, so the
    events keep their process's name; ``role`` (when given) tags the start.
    """

    def __init__(
        self,
        paths: Paths,
        secrets: Secrets,
        config: Config,
        *,
        clients: Callable[[], Sequence[bytes]],
        hub: EventHub,
        log: logging.Logger,
        role: str | None = None,
        tor_back: Callable[[], None] | None = None,
    ) -> None:
        self._paths = paths
        self._secrets = secrets
        self._config = config
        self._clients = clients
        self._hub = hub
        self._log = log
        self._role = "" if role is None else f" role={role}"
        self._tor_back = tor_back
        self._tor: Tor | None = None
        self._service: OnionService | None = None
        self._scheduler = DialScheduler()
        self._client_auth: dict[OnionAddress, bytes] = {}
        self._forget = ForgetRule(ours=config.tor_mode != "attach")
        self._onion_inode: int | None = None  # the socket file serve() made
        self.tor_status = api.TorStatus(
            api.TorState.STARTING,
            "attaching to tor" if config.tor_mode == "attach" else "launching tor",
        )

    def __repr__(self) -> str:
        return f"OnionHost({self._secrets.identity.address})"

    @property
    def published(self) -> bool:
        """Whether the onion service is published (so :meth:`authorize` works)."""
        return self._tor is not None and self._service is not None

    # -- lifecycle -----------------------------------------------------------------------

    @asynccontextmanager
    async def running(self, backend: Backend) -> AsyncIterator[trio.Nursery]:
        """Serve the local API with ``backend``, start and supervise tor; yield the
        nursery the process's own parts run in. Leaving it stops them, then tor."""
        address = self._secrets.identity.address
        try:
            async with trio.open_nursery() as outer:
                await outer.start(serve_api, backend, self._paths.socket)
                self._log.info("event=starting%s", self._role)
                self._log.debug("event=starting address=%s", address)
                async with (
                    open_tor(tor_config(self._config, self._paths)) as tor,
                    trio.open_nursery() as nursery,
                ):
                    self._tor = tor
                    await self._report_hardening(tor)
                    nursery.start_soon(self._forward_tor_events, tor)
                    nursery.start_soon(self._renew_loop)
                    await nursery.start(tor.supervise)
                    yield nursery
                    nursery.cancel_scope.cancel()
                outer.cancel_scope.cancel()
        finally:
            self._tor = None
            self._service = None
            self._remove_onion_socket()

    def _remove_onion_socket(self) -> None:
        """The onion service's socket file goes with us (as the local API's):
        unless another process made its own there since."""
        inode, self._onion_inode = self._onion_inode, None
        if inode is None:
            return
        path = self._paths.onion_socket
        with contextlib.suppress(OSError):
            if os.stat(path).st_ino == inode:
                os.unlink(path)

    async def serve(self, nursery: trio.Nursery, handler: Handler, decide: Decide) -> None:
        """Accept the onion service's streams in ``nursery``: each one's responder
        handshake, then ``handler`` for the peers ``decide`` lets in."""
        listeners = [await trio.to_thread.run_sync(open_unix_listener, self._paths)]
        self._onion_inode = os.stat(self._paths.onion_socket).st_ino
        await nursery.start(
            partial(
                serve,
                handler,
                listeners,
                identity=self._secrets.identity,
                static=self._current_static,
                decide=decide,
            )
        )

    async def publish(self) -> list[bytes]:
        """Publish the onion service with its authorized clients; return them."""
        tor = self._running_tor()
        clients = list(self._clients())
        self._service = await tor.publish(
            self._secrets.identity.seed,
            virtual_port=self._config.onion_port,
            target=self._paths.onion_socket,
            authorized_clients=clients,
        )
        return clients

    def ready(self) -> None:
        """Everything is up: tor's status says so from now on."""
        self.tor_status = api.TorStatus(api.TorState.OK, "published")

    async def authorize(self) -> None:
        """Hand tor the authorized clients as they are now.

        Raises :class:`~onionpost.errors.TorError` before :meth:`publish`
        (publishing reads them itself)."""
        tor, service = self._tor, self._service
        if tor is None or service is None:
            raise TorError("the onion service is not published yet")
        await tor.set_authorized_clients(service, list(self._clients()))

    async def add_client_auth(self, address: OnionAddress, private: bytes) -> None:
        """Let our tor use ``private`` for ``address``'s descriptor (nothing while
        tor is not running: the owner adds its own at start)."""
        if self._tor is None:
            return
        await self._tor.add_client_auth(address, private)
        self._client_auth[address] = private

    async def remove_client_auth(self, address: OnionAddress) -> None:
        self._client_auth.pop(address, None)
        if self._tor is not None:
            await self._tor.remove_client_auth(address)

    async def _report_hardening(self, tor: Tor) -> None:
        """Log the tor's hardening profile (spec §1.3); warn about what is off.

        The tor we launch has it by construction; an attached one is only checked.
        """
        profile = await tor.hardening()
        self._log.info(
            "event=tor_profile version=%s vanguards_lite=%s pow=%s max_streams=%d",
            safe(profile.version),
            "on" if profile.vanguards_lite else "off",
            "on" if profile.pow else "off",
            profile.max_streams,
        )
        if not profile.vanguards_lite:
            self._log.warning("event=tor_profile_weak reason=vanguards_lite_off")
        if not profile.pow:
            self._log.warning("event=tor_profile_weak reason=no_pow_defenses")

    async def _forward_tor_events(self, tor: Tor) -> None:
        async for status in tor.events():
            was_ok = self.tor_status.state is api.TorState.OK
            # Back to OK with our service published again (a restart restores
            # it before it reports OK): said as at start.
            detail = (
                "published" if status.state is TorState.OK and self.published else status.detail
            )
            self.tor_status = api.TorStatus(api.TorState(status.state.value), detail)
            self._hub.publish(self.tor_status)
            self._log.info("event=tor state=%s detail=%s", status.state.value, safe(detail))
            if status.state is TorState.OK and not was_ok and self._tor_back is not None:
                self._tor_back()

    # -- the Noise static key --------------------------------------------------------------

    def _current_static(self) -> StaticKey:
        return self._secrets.static

    def renew_static_key(self, now: int) -> bool:
        """Replace the Noise static key when its certificate is due for renewal
        (spec §2.3). Handshakes from then on, ours and our listener's, use the
        new one. It lives in memory: the secrets file keeps the old one, which
        the next start renews again (no passphrase is kept to re-seal it)."""
        if not self._secrets.static.certificate.needs_renewal(now):
            return False
        self._secrets.static = StaticKey.generate(self._secrets.identity, now=now)
        self._log.info("event=static_key_rotated")
        return True

    async def _renew_loop(self) -> None:
        while True:
            self.renew_static_key(int(time.time()))
            await trio.sleep(RENEW_CHECK_SECONDS)

    # -- dialing ---------------------------------------------------------------------------

    def _running_tor(self) -> Tor:
        if self._tor is None:
            raise TorError("tor is not running")
        return self._tor

    async def dial(
        self,
        address: OnionAddress,
        client_auth: bytes | None = None,
        *,
        handle: str = "peer=onion",
    ) -> SecureChannel:
        """Reach ``address`` through tor, authorized with ``client_auth`` when
        given, and run our side of the handshake. The caller sets the deadline;
        ``handle`` names the peer in logs (never its address at INFO)."""
        tor = self._running_tor()
        if client_auth is not None and self._client_auth.get(address) != client_auth:
            await tor.add_client_auth(address, client_auth)
            self._client_auth[address] = client_auth
        async with self._scheduler.slot(address):
            try:
                # Half the deadline for tor to connect: what is left lets us ask
                # for a fresh descriptor when it did not (a stale one hangs).
                with trio.move_on_after(self._config.connect_timeout / 2) as waited:
                    stream = await self._tor_dial(tor, address, handle)
            except DialError as exc:
                if exc.reason in STALE_DESCRIPTOR_REASONS:
                    await self._refetch(tor, address, handle)
                raise
            if waited.cancelled_caught:
                # Most often a rendezvous circuit whose far side is gone (the
                # service's tor restarted): tor would put the next dial on it
                # too, so it goes, and the descriptor is asked for afresh.
                await self._refetch(tor, address, handle, drop_circuits=True)
                raise DialError("the onion service did not answer", reason="timeout")
        try:
            channel = await connect(
                stream,
                identity=self._secrets.identity,
                static=self._secrets.static,
                peer=address,
            )
        except BaseException:
            await trio.aclose_forcefully(stream)
            raise
        self._scheduler.record_success(address)
        return channel

    async def _tor_dial(self, tor: Tor, address: OnionAddress, handle: str) -> trio.SocketStream:
        """A stream to ``address``; once more after making tor forget its
        record of failed introduction points, when that may be what refuses
        it (``_forget.py``)."""
        try:
            stream = await tor.dial(address, self._config.onion_port)
        except DialError as exc:
            if exc.reason != "introduction-failed":
                self._forget.other(address)
                raise
            if not self._forget.refused(address, trio.current_time()):
                raise
            try:
                await tor.forget_client_state()
            except TorError as problem:
                self._log.info("event=tor_forget_failed error=%s", type(problem).__name__)
                raise exc from None
            self._log.info("event=tor_client_state_forgotten %s", handle)
            stream = await tor.dial(address, self._config.onion_port)
        self._forget.other(address)
        return stream

    async def _refetch(
        self, tor: Tor, address: OnionAddress, handle: str, *, drop_circuits: bool = False
    ) -> None:
        """Best effort: a dial failed the way a stale descriptor fails (or hung,
        the way a stale rendezvous circuit hangs: ``drop_circuits``)."""
        with trio.move_on_after(REFETCH_SECONDS):
            try:
                if drop_circuits:
                    dropped = await tor.drop_circuits(address)
                    self._log.info("event=circuits_dropped count=%d %s", dropped, handle)
                await tor.refetch_descriptor(address)
                self._log.info("event=descriptor_refetch %s", handle)
            except TorError as exc:
                self._log.info("event=descriptor_refetch_failed error=%s", type(exc).__name__)


def open_unix_listener(paths: Paths) -> trio.SocketListener:
    """A listener on ``paths.onion_socket``, 0600 in the 0700 run directory.

    A socket file left by a process that died is removed first (the home's
    lock, held by this process, says no other uses it).
    """
    path = paths.onion_socket
    if len(os.fsencode(path)) > MAX_UNIX_PATH:
        raise ConfigError(f"{path} is too long for a Unix socket: use a shorter home directory")
    paths.run.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(paths.run, 0o700)  # the directory is what keeps others out
    path.unlink(missing_ok=True)
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        raw.bind(str(path))
        os.chmod(path, 0o600)
        raw.listen(MAX_UNIX_BACKLOG)
    except BaseException:
        raw.close()
        raise
    sock = trio.socket.from_stdlib_socket(raw)
    return trio.SocketListener(sock)
