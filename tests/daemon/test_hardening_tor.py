"""Endpoint hardening on the private Tor network (spec §1.2, §1.3).

Two endpoints (their daemons and the tors those launch) on the session's
private network: neither daemon nor its tor listens on any TCP port (read
from /proc, against the sockets each process holds), texts still flow over
the Unix sockets, the launched tor runs the hardening profile, and
``onionpost doctor`` says so. An attached tor whose control port asks for no
authentication is refused unless the configuration allows it. The
network's own relays and authorities keep their TCP ports: they are the
network, not the endpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from nacl.bindings import crypto_scalarmult_base

from onionpost.errors import DialError, TorControlError
from onionpost.testing.endpoint import Endpoint
from onionpost.testing.testnet import Testnet
from onionpost.tor import (
    MAX_STREAMS_PER_CIRCUIT,
    ControlProbe,
    TorConfig,
    open_tor,
    tcp_listeners,
)

pytestmark = pytest.mark.tor

DELIVERY_SECONDS = 90.0
START_SECONDS = 60.0


def _tor_pid(endpoint: Endpoint) -> int:
    return int((endpoint.home / "tor" / "tor.pid").read_text().strip())


@pytest.fixture(scope="module")
def pair(testnet: Testnet) -> Iterator[tuple[Endpoint, Endpoint]]:
    root = Path(tempfile.mkdtemp(prefix="op-hard-", dir="/tmp"))
    alice = Endpoint(root, "alice", testnet)
    bob = Endpoint(root, "bob", testnet)
    try:
        alice.start()
        bob.start()
        alice.cli("contact", "add", bob.json("whoami")["card"])
        bob.cli("contact", "add", alice.json("whoami")["card"])
        yield alice, bob
    finally:
        alice.stop()
        bob.stop()


def test_no_tcp_listener_in_daemon_or_tor_and_texts_flow(
    pair: tuple[Endpoint, Endpoint],
) -> None:
    alice, bob = pair
    # The probe works: a TCP listener of this process is seen.
    with socket.create_server(("127.0.0.1", 0)) as control:
        port = control.getsockname()[1]
        assert [(x.address, x.port) for x in tcp_listeners([os.getpid()])] == [("127.0.0.1", port)]
    for endpoint in (alice, bob):
        assert endpoint.process is not None
        pids = [endpoint.process.pid, _tor_pid(endpoint)]
        assert all(Path(f"/proc/{pid}").exists() for pid in pids)
        assert tcp_listeners(pids) == [], endpoint.name
        onion = endpoint.home / "run" / "onion.sock"
        assert stat.S_ISSOCK(onion.stat().st_mode)
        assert stat.S_IMODE(onion.stat().st_mode) == 0o600
        assert stat.S_IMODE((endpoint.home / "run").stat().st_mode) == 0o700
        for name in ("socks.sock", "control.sock"):
            assert stat.S_ISSOCK((endpoint.home / "tor" / name).stat().st_mode)
    sent = alice.json("send", "bob", "over unix sockets only")
    deadline = time.monotonic() + DELIVERY_SECONDS
    while not any(m["id"] == sent["id"] for m in bob.inbox()):
        assert time.monotonic() < deadline, "the text did not arrive"
        time.sleep(0.5)
    # The journal does not hold the contact graph (spec §1.2): contacts are
    # handles at INFO, names and addresses only at DEBUG.
    log = alice.log.read_text()
    assert "event=contact_added contact=#" in log
    assert "event=tor_profile version=0.4." in log
    assert "vanguards_lite=on pow=on max_streams=8" in log
    assert "event=tor_profile_weak" not in log
    assert "event=contact_added contact=bob" not in log
    addresses = [bob.json("whoami")["address"], alice.json("whoami")["address"]]
    for line in log.splitlines():
        if "event=starting" in line or "event=ready" in line or "event=contact_" in line:
            assert not any(address in line for address in addresses), line
    # Nothing opened a TCP listener meanwhile either.
    for endpoint in (alice, bob):
        assert endpoint.process is not None
        assert tcp_listeners([endpoint.process.pid, _tor_pid(endpoint)]) == []


def test_launched_tor_runs_the_hardening_profile(pair: tuple[Endpoint, Endpoint]) -> None:
    alice, _ = pair
    control = alice.home / "tor" / "control.sock"
    with ControlProbe(control, deadline=time.monotonic() + 10) as probe:
        assert probe.get_conf("VanguardsLiteEnabled") == "1"
        assert probe.get_info("net/listeners/socks").strip('"').startswith("unix:")
        assert probe.get_info("net/listeners/control").strip('"').startswith("unix:")
        version = probe.get_info("version")
    assert version.startswith("0.4.")


def test_doctor_reports_the_profile_and_the_sockets(pair: tuple[Endpoint, Endpoint]) -> None:
    alice, _ = pair
    result = alice.cli("doctor", "--key-file", str(alice.key), "--json", check=False)
    report = json.loads(result.stdout)
    checks = {c["check"]: c for c in report["checks"]}
    assert report["ok"], report
    assert result.returncode == 0
    assert checks["tor version"]["detail"].startswith("0.4.")
    for name in ("vanguards-lite", "proof-of-work defenses", "streams per circuit"):
        assert checks[name]["verdict"] == "ok", checks[name]
    assert checks["listening sockets"]["verdict"] == "ok"
    assert "no TCP listener" in checks["listening sockets"]["detail"]
    text = alice.cli("doctor", "--key-file", str(alice.key)).stdout
    assert "ok       vanguards-lite: VanguardsLiteEnabled 1" in text


async def test_attach_refuses_a_control_port_without_authentication(testnet: Testnet) -> None:
    root = Path(tempfile.mkdtemp(prefix="op-noauth-", dir="/tmp"))
    data = root / "tor"
    data.mkdir(mode=0o700)
    control = data / "control.sock"
    options = dict(testnet.tor_options()) | {
        "DataDirectory": str(data),
        "ControlPort": f"unix:{control}",
        "SocksPort": f"unix:{data / 'socks.sock'}",
        "Log": f"notice file {data / 'notice.log'}",
    }
    torrc = data / "torrc"
    torrc.write_text(
        "".join(
            f"{key} {value}\n"
            for key, values in options.items()
            for value in ([values] if isinstance(values, str) else values)
        )
    )
    process = subprocess.Popen(
        ["/usr/bin/tor", "--defaults-torrc", os.devnull, "-f", str(torrc)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        with trio.fail_after(START_SECONDS):
            while not control.exists():
                await trio.sleep(0.1)
            with pytest.raises(TorControlError, match="no authentication"):
                async with open_tor(TorConfig(control_socket=control)):
                    pass
            async with open_tor(
                TorConfig(control_socket=control, allow_unauthenticated=True)
            ) as tor:
                assert (await tor.health()).control_connected
                assert tor.socks_address == data / "socks.sock"
    finally:
        process.terminate()
        process.wait(10)


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def test_the_adapter_profile_and_max_streams_close_the_circuit(
    testnet: Testnet, tmp_path: Path
) -> None:
    """A service published by the adapter, to a Unix socket target: its
    profile as Tor.hardening() reports it, and MaxStreamsCloseCircuit at
    work: the stream after MAX_STREAMS_PER_CIRCUIT tears the circuit down."""
    seed = os.urandom(32)
    b_private = os.urandom(32)
    b_public = crypto_scalarmult_base(b_private)
    target = tmp_path / "echo.sock"
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.bind(str(target))
    raw.listen(64)
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(raw))
    options = testnet.tor_options()
    with trio.fail_after(4 * START_SECONDS):
        async with (
            trio.open_nursery() as nursery,
            open_tor(TorConfig(data_dir=tmp_path / "a", extra_options=options)) as a,
            open_tor(TorConfig(data_dir=tmp_path / "b", extra_options=options)) as b,
        ):
            nursery.start_soon(trio.serve_listeners, _echo, [listener])
            profile = await a.hardening()
            assert profile.vanguards_lite
            assert profile.vanguards_lite_setting == "1"
            assert profile.pow
            assert profile.max_streams == MAX_STREAMS_PER_CIRCUIT
            service = await a.publish(
                seed, virtual_port=443, target=target, authorized_clients=[b_public]
            )
            assert service.target == target
            await b.add_client_auth(service.address, b_private)
            streams = []
            for i in range(MAX_STREAMS_PER_CIRCUIT):
                for attempt in range(20):  # the false 0xF0 right after publishing
                    try:
                        stream = await b.dial(service.address, 443, isolation="one")
                        break
                    except DialError:
                        if attempt == 19:
                            raise
                        await trio.sleep(0.5)
                await stream.send_all(b"ping %d" % i)
                assert await stream.receive_some(100) == b"ping %d" % i
                streams.append(stream)
            # One stream too many on the same circuit (same isolation): tor
            # closes the rendezvous circuit, and with it every stream on it.
            with contextlib.suppress(DialError):
                extra = await b.dial(service.address, 443, isolation="one")
                streams.append(extra)
            with trio.fail_after(30):
                for stream in streams[:MAX_STREAMS_PER_CIRCUIT]:
                    with contextlib.suppress(trio.BrokenResourceError):
                        await stream.send_all(b"x")
                        assert await stream.receive_some(100) == b""
            for stream in streams:
                await stream.aclose()
            nursery.cancel_scope.cancel()


def test_a_daemon_stopped_leaves_none_of_its_sockets(pair: tuple[Endpoint, Endpoint]) -> None:
    """SIGTERM: the daemon removes its onion service's socket file and its
    local API's (a start removes stale ones anyway; none is left behind)."""
    _, bob = pair
    run = bob.home / "run"
    assert (run / "onion.sock").exists()
    assert (run / "control.sock").exists()
    bob.terminate()
    assert not (run / "onion.sock").exists()
    assert not (run / "control.sock").exists()
