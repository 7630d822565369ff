"""stem, bridged into trio: the one module of onionpost that imports stem.

Theory of operation
-------------------
stem is synchronous and runs threads of its own (a socket reader, an event
dispatcher, status-listener threads). Everything it does crosses into trio
here, at exactly one boundary, in two directions:

- **Calls** (``controller.msg``, ``get_info``, ``close``, launching tor) run in
  worker threads through :func:`trio.to_thread.run_sync`, inside
  :func:`_translated`, which turns stem's exceptions into ours with
  ``raise ... from exc``. Calls that wait on tor are abandoned on cancellation,
  so a caller's ``trio.fail_after`` always works; stem finishes or fails them
  in the background.
- **Events** (``HS_DESC``, ``NETWORK_LIVENESS``, ``STATUS_CLIENT`` and the
  control connection closing) are converted, still in stem's thread, into the
  small frozen records below, then handed to the trio thread with
  :func:`trio.from_thread.run_sync` and put on a bounded memory channel with
  ``send_nowait``. When the channel is full the event is dropped and counted
  (:attr:`ControlConnection.dropped_events`): stem's thread never blocks on a
  slow consumer, and no stem object leaves this module.

Control-port replies are parsed here too. Wire example of ``ADD_ONION``
(control-spec §3.27)::

    C: ADD_ONION ED25519-V3:<base64 of 64 bytes> Flags=V3Auth Port=80,127.0.0.1:8080
       ClientAuthV3=<base32 x25519 public key>
    S: 250-ServiceID=25njqamcweflpvkl73j4szahhihoc4xt3ktcgjnpaingr5yhkenl5sid
    S: 250 OK

A third way in, :class:`ControlProbe`, is synchronous and outside trio: a
short-lived connection for a few GETINFO queries, which the private test
network (:mod:`onionpost.testing.testnet`) uses to see its tors come up. A
watchdog closes it at its deadline, since stem's calls have none of their own.

Key material is only ever part of a command we send; error messages name the
command's verb, never its arguments. stem itself logs every command at its
TRACE level (below DEBUG): an application must not enable that level.
"""

from __future__ import annotations

import contextlib
import functools
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeAlias, TypeVar

import stem
import stem.connection
import stem.control
import stem.process
import stem.response
import stem.response.events
import trio

from onionpost.errors import TorControlError, TorError, TorLaunchError

__all__ = [
    "ClientStatusEvent",
    "ControlClosed",
    "ControlConnection",
    "ControlEvent",
    "ControlProbe",
    "HsDescEvent",
    "LivenessEvent",
    "bootstrap_progress",
    "client_circuit_ids",
    "launch_tor_process",
    "parse_socks_listener",
    "service_circuit_ids",
]

_T = TypeVar("_T")

LOOPBACK: Final = "127.0.0.1"
_PROGRESS_RE: Final = re.compile(r"\bPROGRESS=(\d{1,3})\b")
# The events we subscribe to (control-spec §4.1).
_EVENT_TYPES: Final = (
    stem.control.EventType.HS_DESC,
    stem.control.EventType.NETWORK_LIVENESS,
    stem.control.EventType.STATUS_CLIENT,
)


# -- events, as our own records ------------------------------------------------


@dataclass(frozen=True, slots=True)
class HsDescEvent:
    """``650 HS_DESC <Action> <HSAddress> <AuthType> <HsDir> ...`` (control-spec §4.1.25).

    Wire example: ``650 HS_DESC UPLOADED 25njq...l5sid UNKNOWN $A1B2...~relay1``
    """

    generation: int
    action: str  # UPLOAD, UPLOADED, FAILED, REQUESTED, RECEIVED, ...
    service_id: str
    directory: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class LivenessEvent:
    """``650 NETWORK_LIVENESS UP`` or ``DOWN`` (control-spec §4.1.27)."""

    generation: int
    up: bool


@dataclass(frozen=True, slots=True)
class ClientStatusEvent:
    """``650 STATUS_CLIENT NOTICE CIRCUIT_ESTABLISHED`` (control-spec §4.1.10)."""

    generation: int
    action: str
    arguments: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ControlClosed:
    """The control connection of this generation closed (tor died, or we closed it)."""

    generation: int


ControlEvent: TypeAlias = HsDescEvent | LivenessEvent | ClientStatusEvent | ControlClosed


def _convert(generation: int, event: stem.response.events.Event) -> ControlEvent | None:
    """A stem event -> our record (runs in stem's event thread)."""
    if isinstance(event, stem.response.events.HSDescEvent):
        return HsDescEvent(
            generation,
            str(event.action),
            str(event.address),
            str(event.directory),
            None if event.reason is None else str(event.reason),
        )
    if isinstance(event, stem.response.events.NetworkLivenessEvent):
        return LivenessEvent(generation, str(event.status) == "UP")
    if isinstance(event, stem.response.events.StatusEvent):
        arguments = {str(k): str(v) for k, v in dict(event.arguments).items()}
        return ClientStatusEvent(generation, str(event.action), arguments)
    return None


# -- the exception boundary ----------------------------------------------------


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    """stem's and the socket layer's exceptions -> ours, naming only ``what``."""
    try:
        yield
    except stem.connection.AuthenticationFailure as exc:
        raise TorControlError(f"{what}: tor refused our authentication ({exc})") from exc
    except stem.SocketClosed as exc:
        raise TorControlError(f"{what}: the control connection is closed") from exc
    except stem.SocketError as exc:
        raise TorControlError(f"{what}: cannot reach tor's control port ({exc})") from exc
    except stem.ControllerError as exc:
        raise TorControlError(f"{what}: {exc}") from exc


async def _in_thread(what: str, fn: Callable[[], _T]) -> _T:
    with _translated(what):
        return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


# -- launching ---------------------------------------------------------------


async def launch_tor_process(
    tor_binary: Path, options: Mapping[str, str | Sequence[str]]
) -> subprocess.Popen[bytes]:
    """Start tor with ``options`` as its whole torrc; return once it is running.

    stem's launcher reads tor's stdout in this worker thread until it prints
    "Bootstrapped 0%", which tor does after it has opened its listeners, so a
    port already in use or a bad option fails here, with tor's own complaint.
    Bootstrapping further is awaited over the control port, where a deadline
    can cancel it (stem's own timeout works only in the main thread).
    ``take_ownership`` sets ``__OwningControllerProcess``: tor exits if we do,
    and after our controller sends TAKEOWNERSHIP, when it disconnects.
    """
    config: dict[str, str | list[str]] = {
        k: v if isinstance(v, str) else list(v) for k, v in options.items()
    }

    def launch() -> subprocess.Popen[bytes]:
        process: subprocess.Popen[bytes] = stem.process.launch_tor_with_config(
            config,
            tor_cmd=str(tor_binary),
            completion_percent=0,
            timeout=None,
            take_ownership=True,
        )
        return process

    try:
        return await trio.to_thread.run_sync(launch)
    except OSError as exc:
        raise TorLaunchError(f"tor did not start: {exc}") from exc


# -- authentication -------------------------------------------------------------


def _authenticate(
    controller: stem.control.Controller,
    password: str | None,
    *,
    take_ownership: bool,
    allow_unauthenticated: bool = False,
) -> None:
    if take_ownership:
        # A tor we launched: stem's authenticate() finds the cookie through
        # PROTOCOLINFO and, since __OwningControllerProcess is our pid,
        # sends TAKEOWNERSHIP: tor exits when this connection closes.
        controller.authenticate()
        return
    if password is not None:
        # Password only: authenticate() would fall back to the cookie when
        # tor offers both, and a wrong password must fail.
        stem.connection.authenticate_password(controller, password, suppress_ctl_errors=False)
    else:
        info = stem.connection.get_protocolinfo(controller)
        methods = set(info.auth_methods)
        method = stem.connection.AuthMethod
        if method.NONE in methods:
            # Any local account can then control that tor: read our client
            # keys, add its own onion services, redirect ours (spec §1.2).
            if not allow_unauthenticated:
                raise TorControlError(
                    "tor's control port asks for no authentication, so any local "
                    "account can control it: refused (give tor a cookie or a password, "
                    "or set tor.allow_unauthenticated_control = true)"
                )
            stem.connection.authenticate_none(controller, suppress_ctl_errors=False)
        elif info.cookie_path and method.SAFECOOKIE in methods:
            stem.connection.authenticate_safecookie(
                controller, info.cookie_path, suppress_ctl_errors=False
            )
        elif info.cookie_path and method.COOKIE in methods:
            stem.connection.authenticate_cookie(
                controller, info.cookie_path, suppress_ctl_errors=False
            )
        else:
            raise TorControlError(
                "tor asks for a password: set password in the [tor] table of config.toml"
            )
    # Only mark the connection authenticated. Controller._post_authentication
    # would also TAKEOWNERSHIP of any tor whose __OwningControllerProcess is
    # our pid (a test network started by this process, say), and a tor we
    # merely attach to must never exit because we disconnect.
    stem.control.BaseController._post_authentication(controller)


# -- the control connection --------------------------------------------------


class ControlConnection:
    """One authenticated control connection and its event subscription."""

    def __init__(
        self,
        controller: stem.control.Controller,
        generation: int,
        events: trio.MemorySendChannel[ControlEvent],
    ) -> None:
        self._controller = controller
        self.generation = generation
        self._events = events
        self._token = trio.lowlevel.current_trio_token()
        self.dropped_events = 0
        self._closing = False

    def __repr__(self) -> str:
        return f"<ControlConnection generation={self.generation} alive={self.alive}>"

    @classmethod
    async def open(
        cls,
        *,
        port: int | None,
        socket_path: Path | None,
        password: str | None,
        take_ownership: bool,
        generation: int,
        events: trio.MemorySendChannel[ControlEvent],
        allow_unauthenticated: bool = False,
    ) -> ControlConnection:
        """Connect to 127.0.0.1:``port`` or the Unix socket, authenticate, subscribe.

        ``take_ownership`` only for a tor we launched: it exits when we disconnect.
        """

        def connect() -> stem.control.Controller:
            if socket_path is not None:
                return stem.control.Controller.from_socket_file(str(socket_path))
            return stem.control.Controller.from_port(address=LOOPBACK, port=port)

        controller = await _in_thread("connecting to tor", connect)
        conn = cls(controller, generation, events)
        try:
            await _in_thread(
                "authenticating to tor",
                functools.partial(conn._auth, password, take_ownership, allow_unauthenticated),
            )
            await _in_thread("subscribing to events", conn._subscribe)
        except BaseException:
            with trio.CancelScope(shield=True):
                await conn.close()
            raise
        return conn

    def _auth(self, password: str | None, take_ownership: bool, allow_none: bool) -> None:
        _authenticate(
            self._controller,
            password,
            take_ownership=take_ownership,
            allow_unauthenticated=allow_none,
        )

    def _subscribe(self) -> None:
        self._controller.add_status_listener(self._on_status, spawn=True)
        self._controller.add_event_listener(self._on_event, *_EVENT_TYPES)

    # stem's threads ----------------------------------------------------------

    def _on_event(self, event: stem.response.events.Event) -> None:
        record = _convert(self.generation, event)
        if record is not None:
            self._hand_over(record)

    def _on_status(self, _controller: object, state: stem.control.State, _when: float) -> None:
        if state == stem.control.State.CLOSED:
            self._hand_over(ControlClosed(self.generation))

    def _hand_over(self, record: ControlEvent) -> None:
        # RunFinishedError: trio has stopped, so nobody is listening any more.
        with contextlib.suppress(trio.RunFinishedError):
            trio.from_thread.run_sync(self._deliver, record, trio_token=self._token)

    def _deliver(self, record: ControlEvent) -> None:  # runs in the trio thread
        try:
            self._events.send_nowait(record)
        except trio.WouldBlock:
            self.dropped_events += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    # calls ---------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """We closed (or are closing) this connection on purpose."""
        return self._closing

    @property
    def alive(self) -> bool:
        return bool(self._controller.is_alive()) and not self._closing

    async def command(self, command: str, *, verb: str | None = None) -> list[str]:
        """Send one command; return the reply lines' text, or raise :class:`TorControlError`.

        ``verb`` names the command in errors instead of the command itself, for
        commands that carry key material.
        """
        name = verb or command.split(" ", 1)[0]
        reply = await _in_thread(name, functools.partial(self._controller.msg, command))
        content = [(str(code), str(text)) for code, _divider, text in reply.content()]
        # 2xx is success (ONION_CLIENT_AUTH_ADD answers 251 when it replaced a key).
        if not content or not all(code.startswith("2") for code, _ in content):
            code, detail = content[-1] if content else ("?", "")
            raise TorControlError(f"{name} refused by tor: {code} {detail}".rstrip())
        return [text for _, text in content]

    async def get_info(self, key: str) -> str:
        # GETINFO replies "250-key=value" (or a multi-line "250+key=" block).
        value: Any = await _in_thread(
            f"GETINFO {key}", functools.partial(self._controller.get_info, key)
        )
        return str(value)

    async def get_conf(self, key: str) -> str:
        """GETCONF ``key``: its value, ``""`` when unset."""
        value: Any = await _in_thread(
            f"GETCONF {key}", functools.partial(self._controller.get_conf, key, "")
        )
        return str(value or "")

    async def consensus_param(self, name: str) -> str | None:
        """The value of ``name`` on the ``params`` line of tor's consensus, if any."""
        for key in (
            "dir/status-vote/current/consensus-microdesc",
            "dir/status-vote/current/consensus",
        ):
            with contextlib.suppress(TorControlError):
                return consensus_param(await self.get_info(key), name)
        return None

    async def process_id(self) -> int | None:
        with contextlib.suppress(TorControlError):
            return int(await self.get_info("process/pid"))
        return None

    async def close(self) -> None:
        """Close the connection; never raises (tor may be gone already)."""
        self._closing = True
        with contextlib.suppress(TorControlError, TorError, OSError):
            await _in_thread("closing the control connection", self._controller.close)
        # stem's threads have been joined (or abandoned): later hand-overs find
        # the channel closed and are dropped.
        self._events.close()


# -- parsing control-port replies --------------------------------------------


def parse_socks_listener(value: str) -> tuple[str, int] | Path:
    """tor's SOCKS listener from GETINFO net/listeners/socks: a Unix socket
    if it has one, else one on 127.0.0.1.

    Space-separated quoted entries, e.g. ``"unix:/var/run/tor/socks" "127.0.0.1:9050"``.
    """
    entries = [entry.strip('"') for entry in value.split()]
    for entry in entries:
        if entry.startswith("unix:") and entry[5:].startswith("/"):
            return Path(entry[5:])
    for entry in entries:
        host, _, port = entry.rpartition(":")
        if host == LOOPBACK and port.isdigit():
            return (LOOPBACK, int(port))
    raise TorError("tor has no SOCKS listener on a Unix socket or on 127.0.0.1")


def service_circuit_ids(circuit_status: str, service_id: str) -> list[str]:
    """The circuits that serve onion service ``service_id``, from GETINFO circuit-status.

    One circuit a line (control-spec §4.1.1, CIRC event syntax), e.g.::

        12 BUILT $A~a,$B~b,$C~c PURPOSE=HS_SERVICE_REND HS_STATE=HSSR_JOINED REND_QUERY=<id>
    """
    return _hs_circuit_ids(circuit_status, service_id, "PURPOSE=HS_SERVICE")


def service_intro_count(circuit_status: str, service_id: str) -> int:
    """How many introduction circuits of our onion service ``service_id`` are
    established (its introduction points), from GETINFO circuit-status::

        9 BUILT $A~a,$B~b,$C~c PURPOSE=HS_SERVICE_INTRO HS_STATE=HSSI_ESTABLISHED REND_QUERY=<id>
    """
    count = 0
    for line in circuit_status.splitlines():
        fields = line.split()
        if (
            len(fields) > 1
            and fields[0].isdigit()
            and fields[1] == "BUILT"
            and "PURPOSE=HS_SERVICE_INTRO" in fields
            and "HS_STATE=HSSI_ESTABLISHED" in fields
            and f"REND_QUERY={service_id}" in fields
        ):
            count += 1
    return count


def client_circuit_ids(circuit_status: str, service_id: str) -> list[str]:
    """Our circuits *to* onion service ``service_id`` (we are its client), from
    GETINFO circuit-status: introduction and rendezvous circuits, e.g.::

        14 BUILT $A~a,$B~b,$C~c PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY=<id>
    """
    return _hs_circuit_ids(circuit_status, service_id, "PURPOSE=HS_CLIENT")


def _hs_circuit_ids(circuit_status: str, service_id: str, purpose_prefix: str) -> list[str]:
    ids = []
    for line in circuit_status.splitlines():
        fields = line.split()
        if not fields or not fields[0].isdigit():
            continue
        if f"REND_QUERY={service_id}" in fields and any(
            f.startswith(purpose_prefix) for f in fields
        ):
            ids.append(fields[0])
    return ids


def consensus_param(consensus: str, name: str) -> str | None:
    """``name``'s value on a consensus document's ``params`` line, or None.

    Wire example (dir-spec §3.4.1)::

        params CircuitPriorityHalflifeMsec=30000 vanguards-lite-enabled=1
    """
    for line in consensus.splitlines():
        if line.startswith("params "):
            for pair in line.split()[1:]:
                key, _, value = pair.partition("=")
                if key == name:
                    return value
            return None
    return None


def bootstrap_progress(phase: str) -> int | None:
    """The percentage in GETINFO status/bootstrap-phase, or None if it has none.

    Wire example: ``NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"``
    """
    match = _PROGRESS_RE.search(phase)
    return int(match.group(1)) if match else None


# -- a synchronous probe, outside trio ----------------------------------------------


class ControlProbe:
    """A control connection for a few synchronous queries, closed at a deadline.

    ::

        with ControlProbe(port, deadline=time.monotonic() + 5) as probe:
            progress = bootstrap_progress(probe.get_info("status/bootstrap-phase"))

    Authenticates like an attaching :class:`ControlConnection` (its cookie,
    or ``password`` when tor asks for one) and never takes ownership of the tor. A watchdog thread
    closes the connection at ``deadline`` (a :func:`time.monotonic` value),
    which makes a blocked call raise. Every failure is
    :class:`TorControlError`; after one, :attr:`alive` says whether the
    connection is still usable (a refused query) or gone (tor went away, or
    the deadline passed).
    """

    def __init__(self, port: int | Path, *, deadline: float, password: str | None = None) -> None:
        """``port``: a control port on 127.0.0.1, or the path of a control socket."""
        if isinstance(port, Path):
            with _translated(f"connecting to tor's control socket {port}"):
                self._controller = stem.control.Controller.from_socket_file(str(port))
        else:
            with _translated(f"connecting to tor's control port {LOOPBACK}:{port}"):
                self._controller = stem.control.Controller.from_port(address=LOOPBACK, port=port)
        remaining = max(0.0, deadline - time.monotonic())
        self._watchdog = threading.Timer(remaining, self._controller.close)
        self._watchdog.daemon = True
        self._watchdog.start()
        try:
            with _translated("authenticating to tor"):
                _authenticate(self._controller, password, take_ownership=False)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> ControlProbe:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return bool(self._controller.is_alive())

    def get_info(self, key: str) -> str:
        with _translated(f"GETINFO {key}"):
            return str(self._controller.get_info(key))

    def get_conf(self, key: str) -> str:
        """GETCONF ``key``: its value, ``""`` when unset."""
        with _translated(f"GETCONF {key}"):
            return str(self._controller.get_conf(key, "") or "")

    def close(self) -> None:
        """Close the connection; never raises."""
        self._watchdog.cancel()
        with contextlib.suppress(stem.ControllerError, OSError):
            self._controller.close()
