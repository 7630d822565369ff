"""The trio-facing tor adapter: launch or attach, publish, authorize, dial, supervise.

Theory of operation
-------------------
:func:`open_tor` yields a :class:`Tor` for the lifetime of an ``async with``.
In *launch mode* (``TorConfig.data_dir``) it starts its own tor with a torrc
of our making (``ControlPort`` and ``SocksPort`` on Unix sockets in the
DataDirectory, no TCP port at all; cookie authentication;
``__OwningControllerProcess``; the hardening profile) plus the caller's
``extra_options``; in *attach mode* (``control_port`` or ``control_socket``)
it authenticates to a running tor, and refuses one whose control port asks
for no authentication unless the configuration allows it. Either way it
waits for bootstrap ``PROGRESS=100`` and learns tor's SOCKS address from
``GETINFO net/listeners/socks`` (a Unix socket if tor has one). On exit it
removes the onion services and client keys it added and, only if it launched
tor, stops that tor.

A task owned by the context manager (the *pump*) receives the control events
that :mod:`onionpost.tor._controller` bridges out of stem's threads and keeps
the adapter's view current: descriptor uploads per service (``HS_DESC``),
network liveness, circuit status, and whether the control connection is
still up. Everything that waits (publish, supervise) waits on that view.

Publishing (control-spec §3.27 ADD_ONION): the service key is the caller's
ed25519 seed, expanded as tor wants it (:func:`expanded_secret_key`); tor's
reported ``ServiceID`` must equal the address we derive from the public key,
else :class:`TorError`. Then we wait until the descriptor uploads have
*settled*: at least one ``HS_DESC UPLOADED``, no upload still pending, and a
short quiet time (TOR-TESTNET.md "false 0xF0": a client that connects after
only the first of ~10 uploads may get 0xF0 although the stream is connected).
A round in which every upload failed is retried with DEL_ONION + ADD_ONION,
a bounded number of times.

:meth:`Tor.supervise` is the daemon's long-running task: it notices the
control connection closing (our launched tor died, or the attached one went
away) and restores everything (relaunch in the same ``DataDirectory`` or
reconnect; re-publish every service; re-add every client key) with capped
exponential backoff and a bounded number of attempts; it republishes a
service whose uploads all failed; it reports :class:`TorStatus` changes on
the channel from :meth:`Tor.events`.

Limits (everything is bounded) are the module constants below.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import logging
import re
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

import trio

from onionpost._logs import safe
from onionpost.errors import ConfigError, DialError, TorControlError, TorError, TorLaunchError
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity
from onionpost.tor._config import (
    CONTROL_SOCKET,
    NOTICE_LOG,
    TorConfig,
    check_binary,
    launch_options,
    prepare_data_dir,
    vanguards_lite_on,
)
from onionpost.tor._controller import (
    ClientStatusEvent,
    ControlClosed,
    ControlConnection,
    ControlEvent,
    HsDescEvent,
    LivenessEvent,
    bootstrap_progress,
    client_circuit_ids,
    launch_tor_process,
    parse_socks_listener,
    service_circuit_ids,
    service_intro_count,
)
from onionpost.tor._dial import SocksAddress, socks_dial
from onionpost.tor._process import STOP_GRACE_SECONDS, stop_processes, tail_lines
from onionpost.tor._publish import (
    MAX_AUTHORIZED_CLIENTS,
    MAX_STREAMS_PER_CIRCUIT,
    UPLOAD_QUIET_SECONDS,
    DescriptorState,
    ServiceRecord,
    Target,
    check_port,
    check_target,
    check_x25519,
    tor_has_pow,
)

__all__ = [
    "DescriptorState",
    "Hardening",
    "OnionService",
    "ServiceHealth",
    "Tor",
    "TorConfig",
    "TorHealth",
    "TorState",
    "TorStatus",
    "open_tor",
]

log = logging.getLogger(__name__)

# -- limits ------------------------------------------------------------------

#: Control events buffered between stem's threads and the pump; more are dropped and counted.
CONTROL_EVENT_BUFFER: Final = 1024
#: Status changes buffered for :meth:`Tor.events`; more are dropped and counted.
STATUS_EVENT_BUFFER: Final = 64
#: Bootstrap to 100 % must happen within this (launch or attach).
BOOTSTRAP_MAX_SECONDS: Final = 120.0
BOOTSTRAP_POLL_SECONDS: Final = 0.1
# While tor bootstraps, how often the log says how far it got.
BOOTSTRAP_LOG_SECONDS: Final = 10.0
# What tor's bootstrap phase says, to log: its summary and, stuck, its warning.
_BOOTSTRAP_SAYS: Final = re.compile(r'\b(SUMMARY|WARNING)="([^"]{0,200})"')
#: One ADD_ONION must see an upload outcome within this, or it is retried.
UPLOAD_ROUND_MAX_SECONDS: Final = 45.0
#: ADD_ONION attempts for one publish (each a full upload round).
PUBLISH_ATTEMPTS: Final = 3
#: Relaunch/reconnect: attempts in a row, and the backoff between them.
RESTART_MAX_ATTEMPTS: Final = 8
RESTART_BACKOFF_INITIAL_SECONDS: Final = 0.5
RESTART_BACKOFF_MAX_SECONDS: Final = 30.0
#: Republishing a service whose uploads all failed, in a row, before giving up on it.
REPUBLISH_MAX_ATTEMPTS: Final = 5
#: supervise() looks at the process even without events this often.
SUPERVISE_POLL_SECONDS: Final = 2.0
#: supervise() counts our services' introduction circuits this often.
INTRO_CHECK_SECONDS: Final = 10.0
#: open_tor's exit cleanup, shielded from cancellation, is bounded by this.
SHUTDOWN_MAX_SECONDS: Final = 10.0

ED25519_SEED_LEN: Final = 32


# -- configuration -----------------------------------------------------------


# -- public records ------------------------------------------------------------


@dataclass(frozen=True)
class OnionService:
    """A service published by :meth:`Tor.publish`. Holds no key material."""

    address: OnionAddress
    virtual_port: int
    target: Target


@dataclass(frozen=True)
class Hardening:
    """The hardening profile (spec §1.3) as the running tor has it."""

    version: str  # GETINFO version
    vanguards_lite: bool  # VanguardsLiteEnabled, "auto" resolved
    vanguards_lite_setting: str  # GETCONF VanguardsLiteEnabled: "1", "0" or "auto"
    pow: bool  # our services are added with PoWDefensesEnabled=1
    max_streams: int  # MaxStreams of our services, MaxStreamsCloseCircuit set


class TorState(enum.Enum):
    OK = "ok"
    DEGRADED = "degraded"  # network down, no circuits, a descriptor failed, control lost
    RESTARTING = "restarting"  # supervise() is relaunching or reconnecting
    FAILED = "failed"  # supervise() gave up


@dataclass(frozen=True)
class TorStatus:
    """One change of :class:`TorState`, with a short human-readable reason."""

    state: TorState
    detail: str


@dataclass(frozen=True)
class ServiceHealth:
    address: OnionAddress
    descriptor: DescriptorState
    uploads_ok: int
    uploads_failed: int
    authorized_clients: int


@dataclass(frozen=True)
class TorHealth:
    state: TorState
    detail: str
    control_connected: bool
    bootstrap_progress: int | None  # 0-100, None when tor cannot be asked
    network_live: bool | None  # GETINFO network-liveness; None when unknown
    services: tuple[ServiceHealth, ...]
    restarts: int
    dropped_events: int


# -- the adapter -------------------------------------------------------------


class Tor:
    """A tor we launched or attached to. Get one from :func:`open_tor`."""

    def __init__(
        self,
        config: TorConfig,
        raw_events: trio.MemorySendChannel[ControlEvent],
        status_send: trio.MemorySendChannel[TorStatus],
        status_receive: trio.MemoryReceiveChannel[TorStatus],
    ) -> None:
        self._config = config
        self._raw_events = raw_events
        self._status_send = status_send
        self._status_receive = status_receive
        self._conn: ControlConnection | None = None
        self._generation = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._socks: SocksAddress | None = None
        self._pow = False  # tor has the pow module: services get PoWDefensesEnabled
        self._services: dict[str, ServiceRecord] = {}
        self._client_auth: dict[str, bytes] = {}
        self._lock = trio.Lock()  # serializes changes to services, client auth, restarts
        self._changed = trio.Event()  # set (and replaced) whenever the view changes
        self._network_live: bool | None = None
        self._circuits_ok: bool | None = None
        self._control_lost = False
        self._restarting = False
        self._failed = False
        self._closed = False
        self._restarts = 0
        self._dropped_status = 0
        self._dropped_before = 0  # dropped control events of earlier connections
        self._last_status: TorStatus | None = None

    def __repr__(self) -> str:
        mode = "launched" if self._config.launches else "attached"
        return f"<Tor {mode} socks={self._socks} services={len(self._services)}>"

    # -- properties ----------------------------------------------------------------

    @property
    def socks_address(self) -> SocksAddress:
        """tor's SOCKS listener; it may change after supervise() relaunches tor."""
        if self._socks is None:
            raise TorError("tor is not running")
        return self._socks

    @property
    def pid(self) -> int | None:
        """The pid of the tor we launched, or None in attach mode."""
        return None if self._process is None else self._process.pid

    def events(self) -> trio.MemoryReceiveChannel[TorStatus]:
        """Status changes (ok / degraded / restarting / failed), for one consumer.

        The channel is bounded; when nobody reads it, changes are dropped and
        counted in :attr:`TorHealth.dropped_events`.
        """
        return self._status_receive

    # -- start and stop ----------------------------------------------------------

    async def _start(self) -> None:
        """Launch or attach, authenticate, wait for bootstrap, find the SOCKS port."""
        self._generation += 1
        if self._config.launches:
            conn = await self._launch()
        else:
            conn = await ControlConnection.open(
                port=self._config.control_port,
                socket_path=self._config.control_socket,
                password=self._config.password,
                take_ownership=False,
                generation=self._generation,
                events=self._raw_events.clone(),
                allow_unauthenticated=self._config.allow_unauthenticated,
            )
        self._conn = conn
        try:
            await self._await_bootstrap(conn)
            self._socks = parse_socks_listener(await conn.get_info("net/listeners/socks"))
            live = await conn.get_info("network-liveness")
            self._pow = tor_has_pow(await conn.get_info("version"))
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._drop_connection()
            raise
        self._network_live = live.strip() == "up"
        self._circuits_ok = None
        self._control_lost = False

    async def _launch(self) -> ControlConnection:
        data_dir = self._config.data_dir
        assert data_dir is not None
        data_dir = data_dir.absolute()
        await trio.to_thread.run_sync(check_binary, self._config.tor_binary)
        try:
            await trio.to_thread.run_sync(prepare_data_dir, data_dir)
        except OSError as exc:
            raise TorLaunchError(f"cannot prepare tor's DataDirectory {data_dir}: {exc}") from exc
        options = launch_options(self._config, data_dir)
        self._process = await launch_tor_process(self._config.tor_binary, options)
        try:
            # stem returns once tor printed "Bootstrapped 0%", after it opened
            # its listeners: the control socket is there.
            return await ControlConnection.open(
                port=None,
                socket_path=data_dir / CONTROL_SOCKET,
                password=None,
                take_ownership=True,
                generation=self._generation,
                events=self._raw_events.clone(),
            )
        except (OSError, TorError) as exc:
            with trio.CancelScope(shield=True):
                await self._stop_process()
            if isinstance(exc, TorLaunchError):
                raise
            raise TorLaunchError(f"our tor started but cannot be controlled: {exc}") from exc
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._stop_process()
            raise

    async def _await_bootstrap(self, conn: ControlConnection) -> None:
        # GETINFO status/bootstrap-phase: "NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY=..."
        rounds = int(BOOTSTRAP_MAX_SECONDS / BOOTSTRAP_POLL_SECONDS)
        every = int(BOOTSTRAP_LOG_SECONDS / BOOTSTRAP_POLL_SECONDS)
        progress = 0
        for n in range(rounds):
            if self._process is not None and self._process.poll() is not None:
                raise TorLaunchError(self._died_message("while bootstrapping"))
            phase = await conn.get_info("status/bootstrap-phase")
            progress = bootstrap_progress(phase) or 0
            if progress >= 100:
                return
            if n and n % every == 0:
                # The log says how far tor got, and why it is stuck when it
                # says (e.g. 'WARNING="Connection refused"'), while it waits.
                found = _BOOTSTRAP_SAYS.findall(phase)
                log.info(
                    "event=tor_bootstrapping progress=%d %s",
                    progress,
                    " ".join(f"{k.lower()}={safe(v)}" for k, v in found) or "summary=-",
                )
            await trio.sleep(BOOTSTRAP_POLL_SECONDS)
        error = TorLaunchError if self._config.launches else TorError
        hint = ""
        if any(name.lower() == "dirauthority" for name in self._config.extra_options):
            # A private network's authorities are new each time it is set up
            # again: the ones this home names may be gone.
            hint = (
                "; this home's [tor.options] name their own DirAuthority lines: if that private "
                "network was set up again since, take its client options again"
            )
        raise error(
            f"tor did not bootstrap within {BOOTSTRAP_MAX_SECONDS:.0f} s ({progress} %){hint}"
        )

    def _died_message(self, when: str) -> str:
        code = None if self._process is None else self._process.returncode
        data_dir = self._config.data_dir
        tail = "" if data_dir is None else "\n".join(tail_lines(data_dir / NOTICE_LOG, 8))
        return f"our tor exited {when} (status {code})" + (
            f"; its log ends:\n{tail}" if tail else ""
        )

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._dropped_before += conn.dropped_events
            await conn.close()
        if self._config.launches:
            await self._stop_process()
        self._socks = None

    async def _stop_process(self) -> None:
        """SIGTERM our tor, SIGKILL it after a grace period; reap it. Never raises."""
        process = self._process
        if process is None:
            return
        # Bounded (STOP_GRACE_SECONDS + KILL_GRACE_SECONDS), so not abandoned
        # on cancellation: tor is gone, and reaped, when this returns.
        survivors = await trio.to_thread.run_sync(
            stop_processes, {process.pid: lambda: process.poll() is None}
        )
        if survivors:
            log.warning("event=tor_survived_sigkill pid=%d", process.pid)
        self._process = None

    async def _shutdown(self) -> None:
        """Remove what we added; stop our tor if we launched it. Never raises."""
        self._closed = True
        self._wake()
        conn = self._conn
        if conn is not None and conn.alive:
            for service_id in list(self._services):
                await self._forget_onion(service_id)
            if not self._config.launches:
                for service_id in list(self._client_auth):
                    with contextlib.suppress(TorError):
                        await conn.command(f"ONION_CLIENT_AUTH_REMOVE {service_id}")
        self._services.clear()
        self._client_auth.clear()
        await self._drop_connection()

    # -- the pump: control events -> our view -----------------------------------

    async def _pump(self, receive: trio.MemoryReceiveChannel[ControlEvent]) -> None:
        async with receive:
            async for event in receive:
                self._apply(event)
                self._wake()
                self._report()

    def _apply(self, event: ControlEvent) -> None:
        if event.generation != self._generation:
            return  # from a connection we have already replaced
        now = trio.current_time()
        if isinstance(event, HsDescEvent):
            service = self._services.get(event.service_id)
            if service is not None:
                service.uploads.update(event, now)
        elif isinstance(event, LivenessEvent):
            self._network_live = event.up
        elif isinstance(event, ClientStatusEvent):
            if event.action == "CIRCUIT_ESTABLISHED":
                self._circuits_ok = True
            elif event.action == "CIRCUIT_NOT_ESTABLISHED":
                self._circuits_ok = False
        elif isinstance(event, ControlClosed):
            conn = self._conn
            if conn is not None and not conn.closing and not self._closed:
                self._control_lost = True

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _wait_for_change(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._changed.wait()

    def _state(self) -> TorStatus:
        if self._failed:
            return TorStatus(TorState.FAILED, "tor could not be restarted")
        if self._restarting:
            what = "relaunching tor" if self._config.launches else "reconnecting to tor"
            return TorStatus(TorState.RESTARTING, what)
        if self._control_lost:
            return TorStatus(TorState.DEGRADED, "lost the control connection to tor")
        if self._network_live is False:
            return TorStatus(TorState.DEGRADED, "tor reports the network down")
        if self._circuits_ok is False:
            return TorStatus(TorState.DEGRADED, "tor cannot build circuits")
        failed = [s for s in self._services.values() if s.uploads.state() is DescriptorState.FAILED]
        if failed:
            return TorStatus(TorState.DEGRADED, f"{len(failed)} descriptor upload(s) failed")
        return TorStatus(TorState.OK, "tor is up")

    def _report(self) -> None:
        status = self._state()
        if status == self._last_status:
            return
        self._last_status = status
        try:
            self._status_send.send_nowait(status)
        except trio.WouldBlock:
            self._dropped_status += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _connection(self) -> ControlConnection:
        conn = self._conn
        if conn is None or self._control_lost or not conn.alive:
            raise TorControlError("no control connection to tor (it may be restarting)")
        return conn

    # -- onion services ------------------------------------------------------------

    async def publish(
        self,
        identity_seed: bytes,
        *,
        virtual_port: int,
        target: Target,
        authorized_clients: Sequence[bytes],
    ) -> OnionService:
        """Publish the onion service whose ed25519 identity seed is ``identity_seed``.

        Connections to ``virtual_port`` reach ``target``: a Unix socket (the
        daemon's, so no TCP port is open) or (IP, port) on loopback. With
        ``authorized_clients`` (x25519 public keys), only clients holding a
        matching private key can even fetch the descriptor (rend-spec-v3
        §2.5.1.2, client authorization). Returns once the descriptor uploads
        have settled; raises :class:`TorError` if they keep failing.
        """
        if not isinstance(identity_seed, bytes) or len(identity_seed) != ED25519_SEED_LEN:
            raise ConfigError(f"identity_seed must be {ED25519_SEED_LEN} bytes")
        check_port(virtual_port, "virtual_port")
        target = check_target(target)
        clients = self._check_clients(authorized_clients)
        address = Identity(identity_seed).address
        async with self._lock:
            if address.service_id in self._services:
                raise ConfigError(f"{address} is already published")
            service = ServiceRecord(
                identity_seed, address, virtual_port, target, clients, pow=self._pow
            )
            self._services[address.service_id] = service
            try:
                await self._add_onion(service)
            except BaseException:
                del self._services[address.service_id]
                self._report()
                # tor may hold the service already (uploads failed, or we were
                # cancelled while waiting for them): take it down again.
                with trio.CancelScope(shield=True), trio.move_on_after(STOP_GRACE_SECONDS):
                    await self._forget_onion(address.service_id)
                raise
        return OnionService(address, virtual_port, target)

    async def _forget_onion(self, service_id: str) -> None:
        conn = self._conn
        if conn is not None and conn.alive:
            with contextlib.suppress(TorError):
                await conn.command(f"DEL_ONION {service_id}")

    def _check_clients(self, keys: Sequence[bytes]) -> tuple[bytes, ...]:
        if isinstance(keys, bytes | str):
            raise ConfigError("authorized_clients is a sequence of keys")
        if len(keys) > MAX_AUTHORIZED_CLIENTS:
            raise ConfigError(f"at most {MAX_AUTHORIZED_CLIENTS} authorized clients")
        checked = tuple(check_x25519(k, "an authorized client key") for k in keys)
        if len(set(checked)) != len(checked):
            raise ConfigError("authorized_clients has duplicates")
        return checked

    async def set_authorized_clients(self, service: OnionService, keys: Sequence[bytes]) -> None:
        """Replace the service's authorized client keys (DEL_ONION + ADD_ONION).

        When a key is removed, every circuit of the service is closed too, so
        a revoked client cannot go on using a rendezvous circuit it already
        has; clients that stay authorized reconnect. A revoked client's next
        dial fails (measured: ``client-auth-wrong`` after ~3 s, once its cached
        descriptor's introduction points have stopped answering).
        """
        clients = self._check_clients(keys)
        async with self._lock:
            record = self._services.get(service.address.service_id)
            if record is None:
                raise ConfigError(f"{service.address} is not published here")
            conn = self._connection()
            revoked = not set(record.clients) <= set(clients)
            record.needs_publish = True  # if anything below fails, supervise() re-adds it
            await conn.command(f"DEL_ONION {record.address.service_id}")
            if revoked:
                # DEL_ONION leaves rendezvous circuits up, and the re-added
                # service (same key) would keep serving them: a revoked client
                # could go on opening streams. Circuits carry no client
                # identity, so all of this service's circuits go.
                await self._close_service_circuits(conn, record.address.service_id)
            record.clients = clients
            await self._add_onion(record)

    async def _close_service_circuits(self, conn: ControlConnection, service_id: str) -> None:
        status = await conn.get_info("circuit-status")
        for circuit_id in service_circuit_ids(status, service_id):
            with contextlib.suppress(TorControlError):  # it may close by itself meanwhile
                await conn.command(f"CLOSECIRCUIT {circuit_id}")

    async def _add_onion(self, service: ServiceRecord) -> None:
        """ADD_ONION and wait for the uploads to settle; retry rounds that all failed."""
        last_problem = "no descriptor upload was confirmed"
        service.needs_publish = True
        for attempt in range(PUBLISH_ATTEMPTS):
            conn = self._connection()
            service.uploads.reset(trio.current_time())
            if attempt:
                with contextlib.suppress(TorControlError):
                    await conn.command(f"DEL_ONION {service.address.service_id}")
            try:
                lines = await conn.command(service.add_onion_command(), verb="ADD_ONION")
            except TorControlError:
                if not service.pow or not conn.alive:
                    raise
                # A tor built without the pow module refuses PoWDefensesEnabled.
                log.warning("event=pow_refused detail=adding_the_service_without_pow")
                service.pow = False
                lines = await conn.command(service.add_onion_command(), verb="ADD_ONION")
            reported = next(
                (line.split("=", 1)[1] for line in lines if line.startswith("ServiceID=")), None
            )
            if reported != service.address.service_id:
                if reported is not None:
                    with contextlib.suppress(TorControlError):
                        await conn.command(f"DEL_ONION {reported}")
                raise TorError(
                    f"tor published {reported}.onion, not {service.address} that the key implies"
                )
            settled = await self._await_uploads(service)
            if service.uploads.rejected:
                # An HSDir holds a descriptor with an equal or higher revision
                # counter: clients it serves see the older one until tor uploads again.
                log.warning(
                    "event=descriptor_upload_rejected count=%d uploaded=%d",
                    service.uploads.rejected,
                    service.uploads.uploaded,
                )
            if settled:
                service.republish_failures = 0
                service.needs_publish = False
                return
            last_problem = f"all {service.uploads.failed} descriptor uploads failed"
            log.info(
                "event=publish_round_failed problem=%s attempt=%d", safe(last_problem), attempt + 1
            )
            log.debug("event=publish_round_failed address=%s", service.address)
        raise TorError(f"could not publish {service.address}: {last_problem}")

    async def _await_uploads(self, service: ServiceRecord) -> bool:
        """True once uploads settled with a success; False if the round failed or stalled."""
        uploads = service.uploads
        deadline = trio.current_time() + UPLOAD_ROUND_MAX_SECONDS
        # Bounded: each pass waits for a change or UPLOAD_QUIET_SECONDS, until the deadline.
        while True:
            self._connection()  # raises if the control connection went away meanwhile
            now = trio.current_time()
            if uploads.settled(now):
                return True
            if uploads.all_failed(now):
                return False
            if now >= deadline:
                return uploads.uploaded > 0
            await self._wait_for_change(min(UPLOAD_QUIET_SECONDS, deadline - now))

    # -- client authorization (our side as a client) -------------------------------

    async def add_client_auth(self, address: OnionAddress, private_key: bytes) -> None:
        """Give tor our x25519 private key for ``address`` (ONION_CLIENT_AUTH_ADD).

        control-spec §3.30: ``ONION_CLIENT_AUTH_ADD <id> x25519:<base64 key>``.
        Kept in memory only (no ``Permanent`` flag); re-added after a restart.
        """
        if not isinstance(address, OnionAddress):
            raise ConfigError("address must be an OnionAddress")
        key = check_x25519(private_key, "a client authorization private key")
        blob = base64.b64encode(key).decode("ascii")
        async with self._lock:
            conn = self._connection()
            await conn.command(
                f"ONION_CLIENT_AUTH_ADD {address.service_id} x25519:{blob}",
                verb="ONION_CLIENT_AUTH_ADD",
            )
            self._client_auth[address.service_id] = key

    async def _add_client_auths(self, conn: ControlConnection) -> None:
        """Every client key we gave tor, given again (after a restart or a purge)."""
        for service_id, key in self._client_auth.items():
            blob = base64.b64encode(key).decode("ascii")
            await conn.command(
                f"ONION_CLIENT_AUTH_ADD {service_id} x25519:{blob}",
                verb="ONION_CLIENT_AUTH_ADD",
            )

    async def forget_client_state(self) -> None:
        """Make tor forget what it holds as an onion service client (``SIGNAL
        NEWNYM``, control-spec §3.7), then give it our client keys again.

        tor keeps, for two minutes from the first failure, the introduction
        points it failed to reach, and a dial to a service whose introduction
        points all failed fails at once (SOCKS 0xF2) without trying them:
        after our tor could not build circuits for a while, every dial fails
        that way until those entries age out, though the service is fine.
        NEWNYM drops them with the cached descriptors (the next dial fetches
        them afresh), pending descriptor fetches and the client keys not
        marked permanent, ours (added back at once). Streams already open
        carry on; new ones get new circuits. tor delays a NEWNYM that comes
        within 10 s of the last one, so callers space them further apart;
        only for a tor we launched (on a tor others share it would also
        change their circuits).
        """
        async with self._lock:
            conn = self._connection()
            await conn.command("SIGNAL NEWNYM")
            await self._add_client_auths(conn)

    async def remove_client_auth(self, address: OnionAddress) -> None:
        """Forget our client key for ``address`` (ONION_CLIENT_AUTH_REMOVE)."""
        async with self._lock:
            self._client_auth.pop(address.service_id, None)
            conn = self._connection()
            await conn.command(f"ONION_CLIENT_AUTH_REMOVE {address.service_id}")

    async def refetch_descriptor(self, address: OnionAddress) -> None:
        """Ask tor to fetch ``address``'s descriptor again, now (HSFETCH,
        control-spec §3.26; v3 addresses since tor 0.4.1).

        After a contact's tor restarts its new descriptor names new
        introduction points, but our tor keeps using the cached one until it
        expires, and dials fail (SOCKS 0xF2, or no answer) for a minute or
        more. The fetch runs in tor; the next dial uses what it brings.
        """
        if not isinstance(address, OnionAddress):
            raise ConfigError("address must be an OnionAddress")
        async with self._lock:
            conn = self._connection()
            await conn.command(f"HSFETCH {address.service_id}")

    async def drop_circuits(self, address: OnionAddress) -> int:
        """Close our circuits to ``address``'s onion service (CLOSECIRCUIT,
        control-spec §3.10); return how many there were.

        tor puts a new stream to an onion service on the rendezvous circuit it
        already has to it. When the service's tor died (or closed its side)
        and the teardown did not come back through the rendezvous point, that
        circuit looks fine to our tor but nothing answers on it: every dial
        waits for a reply until tor gives up on the stream after SocksTimeout
        (2 minutes), and the next dial goes to the same circuit again.
        Measured on the private network, 10 SIGKILLs of a service's tor: the
        client's rendezvous circuit closed within 1.5 s in 7, after 8 and 10 s
        in 2, and was still up 150 s later in 1 (the dead tor's guard closed
        its circuits at once; the teardown stalled between two relays). With
        the circuit closed, the next dial builds a new one and introduces
        itself afresh (1-3 s, fetching the new descriptor when the old
        introduction points refuse). Streams other dials have open on those
        circuits close too; callers drop them when a dial to the service has
        hung, when they are dead anyway.
        """
        if not isinstance(address, OnionAddress):
            raise ConfigError("address must be an OnionAddress")
        async with self._lock:
            conn = self._connection()
            status = await conn.get_info("circuit-status")
            circuits = client_circuit_ids(status, address.service_id)
            for circuit_id in circuits:
                with contextlib.suppress(TorControlError):  # it may close by itself meanwhile
                    await conn.command(f"CLOSECIRCUIT {circuit_id}")
        return len(circuits)

    # -- dialing -------------------------------------------------------------------

    async def dial(
        self, address: OnionAddress, port: int, *, isolation: str | None = None
    ) -> trio.SocketStream:
        """Connect to ``address:port`` through tor (SOCKS5, prop 304 errors).

        Raises :class:`DialError` whose ``reason`` says why (see
        :mod:`onionpost.tor`). No deadline of its own: an offline service can
        keep a connect waiting for a minute or more, so callers use
        ``trio.fail_after``.
        """
        if not isinstance(address, OnionAddress):
            raise ConfigError("address must be an OnionAddress")
        check_port(port, "port")
        socks = self._socks
        if socks is None:
            raise DialError("tor is not running", reason="proxy-unreachable")
        return await socks_dial(socks, address.hostname, port, isolation=isolation)

    # -- health and supervision ------------------------------------------------

    async def hardening(self) -> Hardening:
        """The hardening profile as tor has it now (spec §1.3); asks tor."""
        conn = self._connection()
        version = (await conn.get_info("version")).strip()
        setting = (await conn.get_conf("VanguardsLiteEnabled")).strip() or "auto"
        consensus_param: str | None = None
        if setting == "auto":
            consensus_param = await conn.consensus_param("vanguards-lite-enabled")
        return Hardening(
            version=version,
            vanguards_lite=vanguards_lite_on(setting, consensus_param),
            vanguards_lite_setting=setting,
            pow=self._pow and all(s.pow for s in self._services.values()),
            max_streams=MAX_STREAMS_PER_CIRCUIT,
        )

    async def health(self) -> TorHealth:
        """A snapshot: our view, plus bootstrap and liveness asked of tor now."""
        progress: int | None = None
        live: bool | None = None
        conn = self._conn
        connected = conn is not None and conn.alive and not self._control_lost
        if conn is not None and connected:
            try:
                progress = bootstrap_progress(await conn.get_info("status/bootstrap-phase"))
                live = (await conn.get_info("network-liveness")).strip() == "up"
            except TorControlError:
                connected = False
        status = self._state()
        services = tuple(
            ServiceHealth(
                s.address,
                s.uploads.state(),
                s.uploads.uploaded,
                s.uploads.failed,
                len(s.clients),
            )
            for s in self._services.values()
        )
        dropped = self._dropped_status + self._dropped_before
        if conn is not None:
            dropped += conn.dropped_events
        return TorHealth(
            state=status.state,
            detail=status.detail,
            control_connected=connected,
            bootstrap_progress=progress,
            network_live=live,
            services=services,
            restarts=self._restarts,
            dropped_events=dropped,
        )

    async def supervise(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep tor usable; run it in the daemon's nursery. Returns when the Tor closes.

        Raises :class:`TorLaunchError` (launch mode) or :class:`TorControlError`
        (attach mode) after :data:`RESTART_MAX_ATTEMPTS` failed restarts in a row.
        """
        self._report()
        task_status.started()
        intro_checked = trio.current_time()
        while not self._closed:
            if self._process is not None and self._process.poll() is not None:
                self._control_lost = True
            if self._control_lost:
                await self._restore()
                continue
            if trio.current_time() - intro_checked >= INTRO_CHECK_SECONDS:
                intro_checked = trio.current_time()
                await self._check_intro_circuits()
            for service in list(self._services.values()):
                if self._closed or self._control_lost:
                    break
                if service.wants_republish(trio.current_time()):
                    await self._republish(service)
            await self._wait_for_change(SUPERVISE_POLL_SECONDS)

    async def _check_intro_circuits(self) -> None:
        """Count each published service's established introduction circuits
        (``ServiceRecord.intro_lost``); while tor says its network is down or
        it cannot build circuits, the count says nothing."""
        conn = self._conn
        if conn is None or not conn.alive or not self._services:
            return
        now = trio.current_time()
        if self._network_live is False or self._circuits_ok is False:
            for service in self._services.values():
                service.intro_circuits(now, None)
            return
        try:
            status = await conn.get_info("circuit-status")
        except TorControlError:
            return  # the control connection's own supervision takes it from here
        for service in self._services.values():
            if not service.needs_publish:
                service.intro_circuits(now, service_intro_count(status, service.address.service_id))

    async def _republish(self, service: ServiceRecord) -> None:
        if service.republish_failures >= REPUBLISH_MAX_ATTEMPTS:
            return  # left FAILED; health() and the status say so
        async with self._lock:
            if self._services.get(service.address.service_id) is not service:
                return
            if not service.wants_republish(trio.current_time()):
                return  # someone holding the lock published it meanwhile
            if service.intro_lost(trio.current_time()):
                service.republished_for_lost_intro()
                log.warning(
                    "event=service_republished reason=no-introduction-point attempt=%d",
                    service.intro_republishes,
                )
            try:
                # tor may still hold it (every upload failed, or a half-done
                # set_authorized_clients): DEL_ONION first, which may fail.
                await self._forget_onion(service.address.service_id)
                await self._add_onion(service)
                failed = False
            except TorError as exc:
                service.republish_failures += 1
                failed = True
                log.warning("event=republish_failed error=%s", safe(exc))
                log.debug("event=republish_failed address=%s", service.address)
        self._report()
        if failed:  # back off outside the lock, so publish() and friends go on
            await trio.sleep(min(2.0**service.republish_failures, RESTART_BACKOFF_MAX_SECONDS))

    async def _restore(self) -> None:
        """Relaunch or reconnect, then re-publish and re-authorize everything."""
        self._restarting = True
        self._report()
        delay = RESTART_BACKOFF_INITIAL_SECONDS
        problem: Exception | None = None
        async with self._lock:
            for attempt in range(RESTART_MAX_ATTEMPTS):
                if self._closed:
                    return
                await self._drop_connection()
                try:
                    with trio.fail_after(BOOTSTRAP_MAX_SECONDS + 30):
                        await self._start()
                        for service in self._services.values():
                            await self._add_onion(service)
                        await self._add_client_auths(self._connection())
                except (TorError, trio.TooSlowError) as exc:
                    problem = exc
                    log.warning(
                        "event=tor_restore_failed attempt=%d error=%s", attempt + 1, safe(exc)
                    )
                    await trio.sleep(delay)
                    delay = min(delay * 2, RESTART_BACKOFF_MAX_SECONDS)
                    continue
                self._restarts += 1
                self._restarting = False
                self._report()
                return
            self._restarting = False
            self._failed = True
            self._report()
        error = TorLaunchError if self._config.launches else TorControlError
        raise error(f"gave up restoring tor after {RESTART_MAX_ATTEMPTS} attempts: {problem}")


@asynccontextmanager
async def open_tor(config: TorConfig) -> AsyncIterator[Tor]:
    """Launch or attach to tor; yield a ready :class:`Tor`; clean up on exit.

    Raises :class:`TorLaunchError` if our tor cannot start or bootstrap,
    :class:`TorControlError` if the control port refuses us, :class:`TorError`
    otherwise. Exit removes our services and client keys and stops our tor;
    that cleanup is shielded from cancellation and bounded in time.
    """
    raw_send, raw_receive = trio.open_memory_channel[ControlEvent](CONTROL_EVENT_BUFFER)
    status_send, status_receive = trio.open_memory_channel[TorStatus](STATUS_EVENT_BUFFER)
    tor = Tor(config, raw_send, status_send, status_receive)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(tor._pump, raw_receive)
            try:
                await tor._start()
                tor._report()
                yield tor
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(SHUTDOWN_MAX_SECONDS):
                    await tor._shutdown()
                await status_send.aclose()
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The pump never raises, so a group holds one exception: start-up's or
        # the body's. Callers get it as is, not wrapped in our internal nursery's group.
        if len(group.exceptions) != 1:
            raise
        inner = group.exceptions[0]
        raise inner from inner.__cause__
