"""A private Tor network on 127.0.0.1, for tests, demos and benchmarks.

Theory of operation
-------------------
A v3 onion service needs at least four relays in the consensus (the
rendezvous path uses four distinct ones), so a network is three directory
authorities and two relays, plus one *client* tor per endpoint under test. An
endpoint's onion service lives in its own client tor; clients have a SOCKS
port and a control port, and no ORPort.

:func:`up` runs in stages, each bounded by one overall deadline:

1. Choose free ports on 127.0.0.1 below the kernel's ephemeral range, so the
   many loopback connections tor makes cannot take one of them as a source
   port before the tor that owns it has bound it.
2. Make each authority's keys with ``tor-gencert`` and learn every server's
   RSA fingerprint with ``tor --list-fingerprint``; these form the
   ``DirAuthority`` lines that every node shares. The runs go concurrently;
   each ``tor-gencert`` spends ~2.4 s of CPU on a 3072-bit RSA key, so this
   step takes 3-8 s on two cores.
3. Write one torrc per node and start the authorities and relays, each in its
   own process session with its output in a file.
4. Wait until an authority's consensus lists every server with ``HSDir``.
   The first consensus often holds only the authorities; the relays arrive a
   10 s voting round or two later.
5. Start the clients with ``FetchDirInfoEarly``; wait until each one reports
   bootstrap ``PROGRESS=100`` and its ``ns/all`` lists every server with
   ``HSDir``, which is when an onion service can be published and reached.

The state (nodes, ports, pids, the options another tor needs to join) is
written to ``<directory>/testnet.json`` as soon as each process starts, so
:func:`down` can stop a network from another process, even one whose bring-up
was interrupted. :func:`down` only signals a pid whose command line still
names that node's torrc, so a recycled pid is never hit.

With ``owner_pid`` every tor watches that process (``__OwningControllerProcess``)
and exits within ~15 s of its death, so a killed test run leaves no orphans.
The value carries a ``:onionpost-testnet`` suffix: given the bare pid, stem
would send ``TAKEOWNERSHIP`` whenever the owning process opens a Controller,
and tor would exit the moment that one control connection closed.

Every option here follows ``TOR-TESTNET.md`` (facts measured on this kind of
machine) and the Tor Project's chutney; the comments say which ones matter.
This module is synchronous on purpose: it serves a CLI, a session-scoped
pytest fixture, the demo and the benchmarks, not the daemon. It talks to its
tors through :mod:`onionpost.tor` (:class:`~onionpost.tor.ControlProbe`, whose
every query is bounded by the bring-up's deadline; the bootstrap parser; the
stop and log-tail helpers the adapter uses too), never through stem itself.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import functools
import json
import logging
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

from onionpost._files import read_small_file
from onionpost.errors import ConfigError, TorControlError, TorError, TorLaunchError
from onionpost.tor import ControlProbe, bootstrap_progress, stop_processes, tail_lines

__all__ = [
    "AUTHORITIES",
    "CLIENT_CONFIG_FILE",
    "CLIENT_OPTIONS_FILE",
    "LOOPBACK",
    "MAX_CLIENTS",
    "RELAYS",
    "STATE_FILE",
    "TOR_BINARY",
    "TOR_GENCERT",
    "Testnet",
    "TestnetNode",
    "down",
    "load",
    "log_tails",
    "missing_tools",
    "private_network",
    "restart_node",
    "render_config_toml",
    "status",
    "up",
]

TOR_BINARY: Final = Path("/usr/bin/tor")
TOR_GENCERT: Final = Path("/usr/bin/tor-gencert")

#: The only address anything here binds or connects to.
LOOPBACK: Final = "127.0.0.1"
AUTHORITIES: Final = 3
#: Non-authority relays; with the authorities this makes the four-plus relays
#: a rendezvous path needs.
RELAYS: Final = 2
MAX_CLIENTS: Final = 16
STATE_FILE: Final = "testnet.json"
#: A torrc fragment holding :meth:`Testnet.tor_options`, for a tor started by hand.
CLIENT_OPTIONS_FILE: Final = "client-options.torrc"
# The same options as an endpoint's config.toml table ([tor.options]).
CLIENT_CONFIG_FILE: Final = "client-options.toml"

ROLE_AUTHORITY: Final = "authority"
ROLE_RELAY: Final = "relay"
ROLE_CLIENT: Final = "client"

_log = logging.getLogger(__name__)

_STATE_FORMAT: Final = "onionpost-testnet"
_STATE_VERSION: Final = 1
_STATE_MAX_BYTES: Final = 1 << 20
_NODES_DIR: Final = "nodes"

_POLL_INTERVAL: Final = 0.25
# A bound on polls in any one wait, on top of its deadline.
_MAX_POLLS: Final = 4000
# A helper command (tor-gencert, tor --list-fingerprint) killed at the deadline.
_HELPER_KILL_WAIT: Final = 3.0
_PORT_MIN: Final = 10000
_PORT_ATTEMPTS: Final = 2000
_LOG_TAIL_LINES: Final = 20
_STATUS_PROBE_SECONDS: Final = 5.0

_FINGERPRINT_RE: Final = re.compile(r"^[0-9A-F]{40}$")

TorOptions: TypeAlias = dict[str, str | list[str]]


@dataclass(frozen=True)
class TestnetNode:
    """One tor process of the network. Ports are on 127.0.0.1; ``None`` means none."""

    nickname: str
    role: str  # "authority" | "relay" | "client"
    data_dir: Path
    or_port: int | None
    dir_port: int | None
    control_port: int | None
    socks_port: int | None
    pid: int | None

    @property
    def torrc(self) -> Path:
        return self.data_dir / "torrc"

    @property
    def notice_log(self) -> Path:
        return self.data_dir / "notice.log"

    @property
    def output_file(self) -> Path:
        """Where tor's stdout and stderr go (messages from before logging starts)."""
        return self.data_dir / "tor.out"


@dataclass(frozen=True)
class Testnet:
    """A running (or recorded) private network; see :func:`up` and :func:`load`."""

    __test__ = False  # a name pytest would otherwise try to collect where it is imported

    directory: Path
    nodes: tuple[TestnetNode, ...]
    #: The ``DirAuthority`` torrc values, one per authority.
    dir_authorities: tuple[str, ...] = ()

    def clients(self) -> tuple[TestnetNode, ...]:
        return tuple(node for node in self.nodes if node.role == ROLE_CLIENT)

    def servers(self) -> tuple[TestnetNode, ...]:
        """The authorities and relays: every node that is in the consensus."""
        return tuple(node for node in self.nodes if node.role != ROLE_CLIENT)

    def tor_options(self) -> TorOptions:
        """torrc options that an *additional* client tor needs to join this network.

        Everything except per-instance options (ports, ``DataDirectory``,
        logging, control authentication). A list value is an option given once
        per element. The dict fits ``stem.process.launch_tor_with_config``.
        """
        return _client_options(self.dir_authorities)

    def config_toml(self) -> str:
        """The same options as the ``[tor.options]`` table of an endpoint's config.toml.

        Append it after the file's top-level keys (TOML puts every key after a
        table header into that table).
        """
        return render_config_toml(self.tor_options())


def render_config_toml(options: TorOptions) -> str:
    """``[tor.options]`` with ``options``: TOML basic strings, lists for repeated options."""
    lines = ["[tor.options]"]
    for name, value in options.items():
        # json.dumps writes a valid TOML basic string for these ASCII values.
        rendered = (
            "[" + ", ".join(json.dumps(v) for v in value) + "]"
            if isinstance(value, list)
            else json.dumps(value)
        )
        lines.append(f"{name} = {rendered}")
    return "\n".join(lines) + "\n"


# --- torrc ------------------------------------------------------------------


def _network_options(dir_authorities: Sequence[str]) -> TorOptions:
    """Options every node of the network shares (TOR-TESTNET.md "torrc, every node")."""
    return {
        "TestingTorNetwork": "1",
        "DirAuthority": list(dir_authorities),
        "SafeLogging": "0",
        "Sandbox": "0",
        "RunAsDaemon": "0",
        "ShutdownWaitLength": "0",
        # A five-relay network cannot offer tor's default share of paths.
        "PathsNeededToBuildCircuits": "0.67",
        # Give every relay every flag at once, so the consensus is usable
        # without hours of uptime and bandwidth measurements.
        "TestingDirAuthVoteGuard": "*",
        "TestingDirAuthVoteHSDir": "*",
        "TestingDirAuthVoteExit": "*",
        "TestingMinExitFlagThreshold": "0",
        "V3AuthNIntervalsValid": "2",
        # Essential: on loopback tor learns a 15-30 ms build timeout and then
        # abandons circuits at the first scheduling hiccup; a service that
        # loses its rendezvous circuit twice gives up.
        "LearnCircuitBuildTimeout": "0",
        "CircuitBuildTimeout": "30",
        # Onion stream RTT ~0.8 ms instead of ~16 ms.
        "KISTSchedRunInterval": "1 msec",
        # Parsing the GeoIP files costs each tor 1-2 s of CPU at start, and
        # country codes mean nothing on loopback.
        "GeoIPFile": "",
        "GeoIPv6File": "",
    }


def _client_options(dir_authorities: Sequence[str]) -> TorOptions:
    options = _network_options(dir_authorities)
    # Clients are then ready 2-4 s after launch instead of waiting for the
    # relay caches to hold every microdescriptor.
    options["FetchDirInfoEarly"] = "1"
    options["FetchDirInfoExtraEarly"] = "1"
    return options


def _node_options(
    node: TestnetNode, dir_authorities: Sequence[str], owner_pid: int | None
) -> TorOptions:
    """The whole torrc of one node of ours."""
    if node.role == ROLE_CLIENT:
        options = _client_options(dir_authorities)
    else:
        options = _network_options(dir_authorities)
    options |= {
        "DataDirectory": str(node.data_dir),
        "Nickname": node.nickname,
        "PidFile": str(node.data_dir / "tor.pid"),
        "Log": f"notice file {node.notice_log}",
        "ControlPort": f"{LOOPBACK}:{node.control_port}",
        # stem finds the cookie through PROTOCOLINFO.
        "CookieAuthentication": "1",
    }
    if owner_pid is not None:
        # tor exits within ~15 s of that process dying: a killed test run
        # leaves no orphans. The ":onionpost-testnet" suffix (tor reads the
        # pid up to a ':', procmon.c) is load-bearing: when the value equals
        # the pid of a process that opens a stem Controller, stem sends
        # TAKEOWNERSHIP, and tor then exits as soon as that one control
        # connection closes, e.g. after a readiness check or in a test.
        options["__OwningControllerProcess"] = f"{owner_pid}:onionpost-testnet"
    if node.role == ROLE_CLIENT:
        # ExtendedErrors: onion failures get their own SOCKS replies (0xF0-0xF7).
        options["SocksPort"] = f"{LOOPBACK}:{node.socks_port} ExtendedErrors"
        return options
    options |= {
        "ORPort": f"{LOOPBACK}:{node.or_port}",
        "Address": LOOPBACK,
        "SocksPort": "0",
        "ExitRelay": "0",
        # There is no outside vantage point to test reachability from.
        "AssumeReachable": "1",
        # No DNS on these machines: do not let tor probe it.
        "ServerDNSDetectHijacking": "0",
        "ServerDNSTestAddresses": "",
        "ServerDNSResolvConfFile": os.devnull,
    }
    if node.role == ROLE_AUTHORITY:
        options |= {
            "DirPort": f"{LOOPBACK}:{node.dir_port}",
            "AuthoritativeDirectory": "1",
            "V3AuthoritativeDirectory": "1",
            "ContactInfo": f"{node.nickname}@onionpost.invalid",
            # 10 s is the floor: tor refuses delays under 2 s, and vote plus
            # distribution must be under half the interval.
            "V3AuthVotingInterval": "10",
            "V3AuthVoteDelay": "2",
            "V3AuthDistDelay": "2",
            "TestingV3AuthInitialVotingInterval": "10",
            "TestingV3AuthInitialVoteDelay": "2",
            "TestingV3AuthInitialDistDelay": "2",
        }
    return options


def _render_torrc(options: Mapping[str, str | Sequence[str]]) -> str:
    lines: list[str] = []
    for key, value in options.items():
        for item in [value] if isinstance(value, str) else value:
            if "\n" in item or "\r" in item:
                raise ConfigError(f"torrc value for {key} contains a line break")
            # A bare key sets the option to empty (ServerDNSTestAddresses).
            lines.append(f"{key} {item}" if item else key)
    return "\n".join(lines) + "\n"


# --- bring-up -----------------------------------------------------------------


def missing_tools(
    tor_binary: Path = TOR_BINARY, tor_gencert: Path = TOR_GENCERT
) -> tuple[Path, ...]:
    """The programs a network needs that are not executable files here."""
    return tuple(
        path
        for path in (tor_binary, tor_gencert)
        if not (path.is_file() and os.access(path, os.X_OK))
    )


# Tors this process started, by pid: polling them reaps them, so a stopped
# tor never lingers as a zombie that looks alive.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def up(
    directory: Path,
    *,
    clients: int = 2,
    tor_binary: Path = TOR_BINARY,
    tor_gencert: Path = TOR_GENCERT,
    deadline: float = 120.0,
    owner_pid: int | None = None,
) -> Testnet:
    """Bring a private network up in ``directory`` and return once it is usable.

    ``deadline`` bounds the whole bring-up, in seconds. With ``owner_pid``,
    every tor exits soon after that process does. On any failure, or an
    interrupt, every tor started here is stopped and :class:`TorLaunchError`
    says which node failed, with the tail of its log.

    A directory that holds a stopped network is reused (its node directories
    are replaced); one that holds a running network is refused.
    """
    if not 0 <= clients <= MAX_CLIENTS:
        raise ConfigError(f"clients must be between 0 and {MAX_CLIENTS}, not {clients}")
    if deadline <= 0:
        raise ConfigError(f"deadline must be positive, not {deadline}")
    if not str(directory).isprintable() or any(c.isspace() for c in str(directory)):
        # torrc values such as "Log notice file <path>" cannot quote a space.
        raise ConfigError(f"the testnet directory must not contain spaces: {str(directory)!r}")
    start = time.monotonic()
    end = start + deadline
    missing = missing_tools(tor_binary, tor_gencert)
    if missing:
        names = ", ".join(str(path) for path in missing)
        raise TorLaunchError(
            f"{names}: not found or not executable; install tor with `apt-get install -y tor`"
        )
    directory = directory.absolute()
    _prepare_directory(directory)

    launched: list[tuple[TestnetNode, subprocess.Popen[bytes]]] = []
    try:
        nodes = _plan(directory, clients)
        dir_authorities = _dir_authorities(nodes, tor_binary, tor_gencert, end)
        _log.info("keys and fingerprints ready after %.1f s", time.monotonic() - start)
        for node in nodes:
            node.torrc.write_text(_render_torrc(_node_options(node, dir_authorities, owner_pid)))
        (directory / CLIENT_OPTIONS_FILE).write_text(
            _render_torrc(_client_options(dir_authorities))
        )
        (directory / CLIENT_CONFIG_FILE).write_text(
            render_config_toml(_client_options(dir_authorities))
        )

        def record() -> Testnet:
            pids = {node.nickname: proc.pid for node, proc in launched}
            started = tuple(dataclasses.replace(n, pid=pids.get(n.nickname)) for n in nodes)
            net = Testnet(directory, started, dir_authorities)
            _write_state(net)
            return net

        servers = [node for node in nodes if node.role != ROLE_CLIENT]
        for node in servers:
            launched.append((node, _launch(tor_binary, node)))
            # Recorded after each start, so `down` can stop a half-started network.
            record()
        want = {_fingerprint_of(node) for node in servers}
        authority, authority_proc = launched[0]
        _wait_until(
            authority,
            authority_proc,
            end,
            "list every relay with HSDir in its consensus",
            lambda probe: want <= _hsdirs(probe),
        )
        _log.info("consensus lists every relay after %.1f s", time.monotonic() - start)
        for node in nodes:
            if node.role == ROLE_CLIENT:
                launched.append((node, _launch(tor_binary, node)))
                record()
        for node, proc in launched[len(servers) :]:
            _wait_until(
                node,
                proc,
                end,
                "bootstrap to 100% with every relay as HSDir",
                lambda probe: _bootstrap_progress(probe) == 100 and want <= _hsdirs(probe),
            )
        _log.info("every client ready after %.1f s", time.monotonic() - start)
        return record()
    except OSError as exc:
        _stop({proc.pid: node.torrc for node, proc in launched})
        raise TorLaunchError(f"bring-up in {directory} failed: {exc}") from exc
    except BaseException:
        # Including KeyboardInterrupt: never leave a half-started network behind.
        _stop({proc.pid: node.torrc for node, proc in launched})
        raise


def restart_node(
    net: Testnet,
    nickname: str,
    *,
    down_seconds: float = 0.0,
    tor_binary: Path = TOR_BINARY,
    deadline: float = 60.0,
) -> Testnet:
    """Stop one authority or relay (SIGTERM), keep it down ``down_seconds``,
    start it again with the same keys and torrc, and wait until it answers on
    its control port. Returns the network with the node's new pid (also
    recorded, so :func:`down` stops it). For churn tests: circuits through the
    node break while it is away, as they do when a relay restarts.
    """
    (node,) = [n for n in net.nodes if n.nickname == nickname]
    if node.role == ROLE_CLIENT:
        raise ConfigError(f"{nickname} is a client; restart relays and authorities")
    if node.pid is not None:
        _stop({node.pid: node.torrc})
    if down_seconds > 0:
        time.sleep(down_seconds)  # the outage itself is the point
    proc = _launch(tor_binary, node)
    restarted = dataclasses.replace(node, pid=proc.pid)
    new = dataclasses.replace(
        net, nodes=tuple(restarted if n.nickname == nickname else n for n in net.nodes)
    )
    _write_state(new)
    _wait_until(
        restarted,
        proc,
        time.monotonic() + deadline,
        "answer on its control port again",
        lambda probe: _bootstrap_progress(probe) >= 0,
    )
    return new


@contextlib.contextmanager
def private_network(prefix: str, *, clients: int = 0) -> Iterator[tuple[Path, Testnet, float]]:
    """A network in a fresh directory under /tmp, for as long as the ``with`` lasts.

    Yields (the directory, the network in its ``net/``, the bring-up's
    seconds). On exit the network is stopped and the directory removed;
    every tor also exits soon after this process does (``owner_pid``).
    """
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        started = time.monotonic()
        net = up(root / "net", clients=clients, owner_pid=os.getpid())
        bringup_s = time.monotonic() - started
        try:
            yield root, net, bringup_s
        finally:
            down(root / "net")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _prepare_directory(directory: Path) -> None:
    state = directory / STATE_FILE
    if state.exists():
        try:
            old = load(directory)
        except TorError:
            old = None
        if old is not None and any(_is_our_tor(n.pid, n.torrc) for n in old.nodes if n.pid):
            raise TorLaunchError(
                f"a testnet is already running in {directory}; "
                f"stop it first with `onionpost testnet down --dir {directory}`"
            )
        state.unlink()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Only the directory this module creates is ever removed.
        shutil.rmtree(directory / _NODES_DIR, ignore_errors=True)
        (directory / _NODES_DIR).mkdir(mode=0o700)
    except OSError as exc:
        raise TorLaunchError(f"cannot prepare {directory}: {exc}") from exc


def _plan(directory: Path, clients: int) -> list[TestnetNode]:
    """Every node with its ports and data directory; nothing started yet."""
    roles = (
        [(f"auth{i}", ROLE_AUTHORITY) for i in range(AUTHORITIES)]
        + [(f"relay{i}", ROLE_RELAY) for i in range(RELAYS)]
        + [(f"client{i}", ROLE_CLIENT) for i in range(clients)]
    )
    # authority: OR, Dir, control; relay: OR, control; client: control, SOCKS.
    ports_per_role = {ROLE_AUTHORITY: 3, ROLE_RELAY: 2, ROLE_CLIENT: 2}
    ports = iter(_free_ports(sum(ports_per_role[role] for _, role in roles)))
    nodes: list[TestnetNode] = []
    for nickname, role in roles:
        data_dir = directory / _NODES_DIR / nickname
        # tor refuses a DataDirectory that others can read.
        data_dir.mkdir(mode=0o700)
        data_dir.chmod(0o700)
        control = next(ports)
        if role == ROLE_CLIENT:
            node = TestnetNode(nickname, role, data_dir, None, None, control, next(ports), None)
        else:
            or_port = next(ports)
            dir_port = next(ports) if role == ROLE_AUTHORITY else None
            node = TestnetNode(nickname, role, data_dir, or_port, dir_port, control, None, None)
        nodes.append(node)
    return nodes


def _free_ports(count: int) -> list[int]:
    """``count`` distinct ports that are free on 127.0.0.1 right now.

    Taken below the ephemeral range: tor's own outgoing loopback connections
    draw source ports from that range and could take a chosen port in the
    second between choosing it and the owning tor binding it.
    """
    try:
        first_ephemeral = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        first_ephemeral = 32768
    high = first_ephemeral if first_ephemeral > _PORT_MIN + 1000 else 65536
    rng = random.Random()  # noqa: S311 - port choice, not security
    held: list[socket.socket] = []
    try:
        for _ in range(_PORT_ATTEMPTS):
            if len(held) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((LOOPBACK, rng.randrange(_PORT_MIN, high)))
            except OSError:
                sock.close()
                continue
            # Held until all are chosen, so no port is chosen twice.
            held.append(sock)
        if len(held) < count:
            raise TorLaunchError(f"found only {len(held)} of {count} free ports on {LOOPBACK}")
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def _remaining(end: float) -> float:
    return max(0.0, end - time.monotonic())


def _run_all(
    commands: Sequence[tuple[TestnetNode, list[str], bytes | None]], end: float
) -> list[str]:
    """Run short helper commands concurrently; their stdout, or TorLaunchError."""
    procs: list[tuple[TestnetNode, list[str], subprocess.Popen[bytes]]] = []
    try:
        for node, argv, _ in commands:
            procs.append(
                (
                    node,
                    argv,
                    subprocess.Popen(
                        argv,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    ),
                )
            )
        outputs: list[str] = []
        for (node, argv, proc), (_, _, stdin) in zip(procs, commands, strict=True):
            try:
                out, _ = proc.communicate(stdin, timeout=_remaining(end))
            except subprocess.TimeoutExpired as exc:
                raise TorLaunchError(
                    f"{node.nickname}: {Path(argv[0]).name} did not finish before the deadline"
                ) from exc
            text = out.decode("utf-8", "replace")
            if proc.returncode != 0:
                tail = "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])
                raise TorLaunchError(
                    f"{node.nickname}: {Path(argv[0]).name} exited with {proc.returncode}:\n{tail}"
                )
            outputs.append(text)
        return outputs
    except OSError as exc:
        raise TorLaunchError(f"cannot run {exc.filename or 'a tor helper'}: {exc}") from exc
    finally:
        for _, _, proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=_HELPER_KILL_WAIT)


def _dir_authorities(
    nodes: Sequence[TestnetNode], tor_binary: Path, tor_gencert: Path, end: float
) -> tuple[str, ...]:
    """Make authority keys and relay identities; return the DirAuthority lines."""
    authorities = [node for node in nodes if node.role == ROLE_AUTHORITY]
    servers = [node for node in nodes if node.role != ROLE_CLIENT]
    gencert: list[tuple[TestnetNode, list[str], bytes | None]] = []
    for node in authorities:
        keys = node.data_dir / "keys"
        keys.mkdir(mode=0o700)
        # --passphrase-fd 0 and one newline: without it tor-gencert prompts
        # on the terminal and hangs.
        argv = [
            str(tor_gencert),
            "--create-identity-key",
            "--passphrase-fd",
            "0",
            "-m",
            "12",
            "-a",
            f"{LOOPBACK}:{node.dir_port}",
            "-i",
            str(keys / "authority_identity_key"),
            "-s",
            str(keys / "authority_signing_key"),
            "-c",
            str(keys / "authority_certificate"),
        ]
        gencert.append((node, argv, b"\n"))

    fingerprint_runs: list[tuple[TestnetNode, list[str], bytes | None]] = [
        (
            node,
            [
                str(tor_binary),
                "--ignore-missing-torrc",
                "-f",
                os.devnull,
                "--defaults-torrc",
                os.devnull,
                "--orport",
                "1",
                "--datadirectory",
                str(node.data_dir),
                "--nickname",
                node.nickname,
                "--list-fingerprint",
                "--quiet",
            ],
            None,
        )
        for node in servers
    ]
    # All at once: tor-gencert spends ~2.4 s of CPU making a 3072-bit RSA key,
    # and the keys each command makes are separate files.
    outputs = _run_all(fingerprint_runs + gencert, end)[: len(fingerprint_runs)]
    for node, output in zip(servers, outputs, strict=True):
        # The last line is "<nickname> <fingerprint in groups of 4>".
        words = output.strip().splitlines()[-1].split() if output.strip() else []
        fingerprint = "".join(words[1:]).upper()
        if not _FINGERPRINT_RE.match(fingerprint):
            raise TorLaunchError(
                f"{node.nickname}: unexpected --list-fingerprint output {output!r}"
            )
        (node.data_dir / "fingerprint.hex").write_text(fingerprint + "\n")

    lines: list[str] = []
    for node in authorities:
        cert = (node.data_dir / "keys" / "authority_certificate").read_text()
        match = re.search(r"^fingerprint ([0-9A-F]{40})$", cert, re.MULTILINE)
        if match is None:
            raise TorLaunchError(f"{node.nickname}: no fingerprint in its authority certificate")
        lines.append(
            f"{node.nickname} orport={node.or_port} no-v2 v3ident={match.group(1)} "
            f"{LOOPBACK}:{node.dir_port} {_fingerprint_of(node)}"
        )
    return tuple(lines)


def _fingerprint_of(node: TestnetNode) -> str:
    return (node.data_dir / "fingerprint.hex").read_text().strip()


def _launch(tor_binary: Path, node: TestnetNode) -> subprocess.Popen[bytes]:
    # Its own session: a Ctrl-C in our terminal does not reach it, and it
    # outlives the `onionpost testnet up` that started it. An empty defaults
    # torrc keeps a system-wide torrc-defaults out of the network.
    argv = [str(tor_binary), "--defaults-torrc", os.devnull, "-f", str(node.torrc)]
    try:
        with node.output_file.open("wb") as output:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=node.data_dir,
            )
    except OSError as exc:
        raise TorLaunchError(f"{node.nickname}: cannot start {tor_binary}: {exc}") from exc
    _CHILDREN[proc.pid] = proc
    return proc


# --- control port ---------------------------------------------------------------


def _bootstrap_progress(probe: ControlProbe) -> int:
    return bootstrap_progress(probe.get_info("status/bootstrap-phase")) or 0


def _hsdirs(probe: ControlProbe) -> set[str]:
    """Fingerprints (hex) that this tor's consensus flags HSDir.

    ``ns/all`` holds router status entries like::

        r auth0 AXTt3bUUdUlH0pXoVxC3c9O7wgA 2yJ0... 2025-01-01 00:00:00 127.0.0.1 5000 5001
        s Authority Exit Fast Guard HSDir Running Stable V2Dir Valid
    """
    found: set[str] = set()
    identity: str | None = None
    for line in probe.get_info("ns/all").splitlines():
        if line.startswith("r "):
            fields = line.split()
            identity = None
            if len(fields) > 2:
                try:
                    raw = base64.b64decode(fields[2] + "=" * (-len(fields[2]) % 4))
                except binascii.Error:
                    continue
                identity = raw.hex().upper()
        elif line.startswith("s ") and identity is not None:
            if "HSDir" in line.split()[1:]:
                found.add(identity)
            identity = None
    return found


def _wait_until(
    node: TestnetNode,
    proc: subprocess.Popen[bytes],
    end: float,
    what: str,
    ready: Callable[[ControlProbe], bool],
) -> None:
    """Poll ``ready`` on ``node``'s control port until it holds; TorLaunchError otherwise."""
    if node.control_port is None:
        raise TorControlError(f"{node.nickname} has no control port")
    probe: ControlProbe | None = None
    last_error = ""
    try:
        for _ in range(_MAX_POLLS):
            if proc.poll() is not None:
                raise TorLaunchError(
                    f"{node.nickname}: tor exited with {proc.returncode}; {_tail_text(node)}"
                )
            if time.monotonic() >= end:
                break
            try:
                if probe is None:
                    probe = ControlProbe(node.control_port, deadline=end)
                if ready(probe):
                    return
            except TorControlError as exc:
                # Not listening yet, or no consensus yet to answer ns/all; or
                # the connection is gone (tor died, noticed on the next poll).
                last_error = f" (last control error: {exc})"
                if probe is not None and not probe.alive:
                    probe.close()
                    probe = None
            time.sleep(min(_POLL_INTERVAL, _remaining(end)))
        raise TorLaunchError(
            f"{node.nickname} did not {what} in time{last_error}; {_tail_text(node)}"
        )
    finally:
        if probe is not None:
            probe.close()


# --- logs ---------------------------------------------------------------------------


def _tail_text(node: TestnetNode, lines: int = _LOG_TAIL_LINES) -> str:
    # Before tor parses its torrc it logs only to stdout, so fall back to that.
    for path in (node.notice_log, node.output_file):
        tail = tail_lines(path, lines)
        if tail:
            return f"last lines of {path}:\n" + "\n".join(tail)
    return f"{node.notice_log} is empty"


def log_tails(net: Testnet, lines: int = _LOG_TAIL_LINES) -> str:
    """The end of every node's notice.log, for a failure report."""
    return "\n\n".join(
        f"== {node.nickname} ({node.role}): {_tail_text(node, lines)}" for node in net.nodes
    )


# --- state --------------------------------------------------------------------------


def _write_state(net: Testnet) -> None:
    nodes = []
    for node in net.nodes:
        entry = dataclasses.asdict(node)
        entry["data_dir"] = str(node.data_dir)
        nodes.append(entry)
    state = {
        "format": _STATE_FORMAT,
        "version": _STATE_VERSION,
        "directory": str(net.directory),
        "nodes": nodes,
        "dir_authorities": list(net.dir_authorities),
        # For consumers that are not Python; load() recomputes it.
        "tor_options": net.tor_options(),
    }
    path = net.directory / STATE_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    # Atomic: a reader sees the old state or the new one, never half of one.
    temporary.replace(path)


def load(directory: Path) -> Testnet:
    """The network recorded in ``directory``; TorError if there is none or it is corrupt."""
    path = directory.absolute() / STATE_FILE
    raw = read_small_file(
        path, _STATE_MAX_BYTES, what="testnet state file", error=TorError, missing_ok=True
    )
    if raw is None:
        raise TorError(f"no testnet in {directory} ({STATE_FILE} not found)")
    try:
        return _testnet_from_json(json.loads(raw))
    except (ValueError, TypeError, KeyError) as exc:
        raise TorError(f"{path} is corrupt: {exc}") from exc


def _testnet_from_json(state: dict[str, object]) -> Testnet:
    if state["format"] != _STATE_FORMAT or state["version"] != _STATE_VERSION:
        raise ValueError("unknown format or version")
    nodes, dir_authorities, directory = (
        state["nodes"],
        state["dir_authorities"],
        state["directory"],
    )
    if not isinstance(nodes, list) or not isinstance(dir_authorities, list):
        raise TypeError("nodes or dir_authorities is not a list")
    if not isinstance(directory, str) or not all(isinstance(x, str) for x in dir_authorities):
        raise TypeError("directory or a DirAuthority line is not a string")
    return Testnet(
        Path(directory), tuple(_node_from_json(entry) for entry in nodes), tuple(dir_authorities)
    )


def _node_from_json(entry: dict[str, object]) -> TestnetNode:
    def port(key: str) -> int | None:
        value = entry[key]
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise TypeError(f"{key} is not an integer")

    nickname, role, data_dir = entry["nickname"], entry["role"], entry["data_dir"]
    if not isinstance(nickname, str) or not isinstance(data_dir, str):
        raise TypeError("nickname or data_dir is not a string")
    if role not in (ROLE_AUTHORITY, ROLE_RELAY, ROLE_CLIENT):
        raise ValueError(f"unknown role {role!r}")
    return TestnetNode(
        nickname=nickname,
        role=str(role),
        data_dir=Path(data_dir),
        or_port=port("or_port"),
        dir_port=port("dir_port"),
        control_port=port("control_port"),
        socks_port=port("socks_port"),
        pid=port("pid"),
    )


# --- status and stop ------------------------------------------------------------------


def _is_our_tor(pid: int, torrc: Path) -> bool:
    """Whether ``pid`` is alive and still the tor started with ``torrc``."""
    child = _CHILDREN.get(pid)
    if child is not None:
        # Our own child cannot be recycled before we reap it; poll() reaps it.
        if child.poll() is None:
            return True
        del _CHILDREN[pid]
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # A zombie's command line is empty, so it counts as stopped.
    return os.fsencode(torrc) in cmdline.split(b"\0")


def status(directory: Path) -> dict[str, object]:
    """Which tors of the network in ``directory`` are alive, and how far clients bootstrapped."""
    net = load(directory)
    nodes: list[dict[str, object]] = []
    ready = True
    for node in net.nodes:
        alive = node.pid is not None and _is_our_tor(node.pid, node.torrc)
        entry: dict[str, object] = {
            "nickname": node.nickname,
            "role": node.role,
            "pid": node.pid,
            "alive": alive,
            "or_port": node.or_port,
            "dir_port": node.dir_port,
            "control_port": node.control_port,
            "socks_port": node.socks_port,
        }
        if node.role == ROLE_CLIENT:
            entry["bootstrap"] = _probe_bootstrap(node) if alive else None
            ready = ready and entry["bootstrap"] == 100
        ready = ready and alive
        nodes.append(entry)
    return {
        "directory": str(net.directory),
        "alive": sum(1 for entry in nodes if entry["alive"]),
        "total": len(nodes),
        "ready": ready,
        "client_options_file": str(net.directory / CLIENT_OPTIONS_FILE),
        "nodes": nodes,
    }


def _probe_bootstrap(node: TestnetNode) -> int | None:
    if node.control_port is None:
        return None
    try:
        with ControlProbe(
            node.control_port, deadline=time.monotonic() + _STATUS_PROBE_SECONDS
        ) as probe:
            return _bootstrap_progress(probe)
    except TorControlError:
        return None


def down(directory: Path) -> None:
    """Stop every tor of the network in ``directory``. Safe to repeat."""
    net = load(directory)
    _stop({node.pid: node.torrc for node in net.nodes if node.pid is not None})


def _stop(targets: Mapping[int, Path]) -> None:
    """SIGTERM the tors in ``targets`` (pid -> torrc), SIGKILL what is left after a grace."""
    survivors = stop_processes(
        {pid: functools.partial(_is_our_tor, pid, torrc) for pid, torrc in targets.items()}
    )
    if survivors:
        raise TorError(f"tor processes {sorted(survivors)} survived SIGKILL")
