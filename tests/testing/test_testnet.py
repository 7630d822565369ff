"""The private Tor network (onionpost.testing.testnet) and ``onionpost testnet``, against real tor.

One network serves the whole session (the ``testnet`` fixture in conftest.py);
only the CLI round trip brings up a second, smaller one of its own.
"""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import stem.control
import stem.process
import trio
from click.testing import CliRunner

from onionpost.cli import main
from onionpost.errors import TorError, TorLaunchError
from onionpost.testing.testnet import (
    CLIENT_OPTIONS_FILE,
    STATE_FILE,
    TOR_BINARY,
    load,
    status,
    up,
)
from onionpost.testing.testnet import Testnet as Network  # renamed: pytest would collect "Test*"

pytestmark = pytest.mark.tor

IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
# prop 304 X'F0': descriptor not found. Right after await_publication only the
# first of the uploads is confirmed, so the first HSDir asked may not have it
# yet (TOR-TESTNET.md, "False 0xF0").
SOCKS_DESCRIPTOR_NOT_FOUND = 0xF0


def _processes_mentioning(directory: Path) -> list[int]:
    """Live processes whose command line names something under ``directory``."""
    needle = os.fsencode(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def test_network_is_up_and_ready(
    cli_up_in_background: tuple[subprocess.Popen[str], Path], testnet: Network
) -> None:
    # cli_up_in_background is requested first only to start that bring-up now.
    roles = [node.role for node in testnet.nodes]
    assert roles.count("authority") == 3
    assert roles.count("relay") == 2
    assert len(testnet.clients()) == 2
    report = status(testnet.directory)
    assert report["ready"] is True
    assert report["alive"] == report["total"] == 7
    assert load(testnet.directory) == testnet


def test_every_torrc_names_only_loopback(testnet: Network) -> None:
    torrcs = [node.torrc for node in testnet.nodes] + [testnet.directory / CLIENT_OPTIONS_FILE]
    for torrc in torrcs:
        for line in torrc.read_text().splitlines():
            key, _, value = line.partition(" ")
            assert set(IPV4.findall(value)) <= {"127.0.0.1"}, (torrc, line)
            assert "localhost" not in value
            assert "::" not in value
            if key.endswith("Port") and not key.startswith("__"):
                # A bare port number would make an ORPort listen on every address.
                assert value == "0" or value.startswith("127.0.0.1:"), (torrc, line)
    options = json.dumps(testnet.tor_options())
    assert set(IPV4.findall(options)) == {"127.0.0.1"}


def test_tor_options_let_another_tor_join(testnet: Network, tmp_path: Path) -> None:
    data_dir = tmp_path / "extra"
    data_dir.mkdir(mode=0o700)
    config = testnet.tor_options() | {
        "DataDirectory": str(data_dir),
        "SocksPort": "127.0.0.1:auto",
        "ControlPort": "0",
    }
    # take_ownership: the tor dies with this process, whatever happens below.
    proc = stem.process.launch_tor_with_config(
        config, tor_cmd=str(TOR_BINARY), timeout=60, take_ownership=True
    )
    try:
        assert proc.poll() is None  # launch_tor returned: it reported Bootstrapped 100%
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_a_stem_controller_in_the_owning_process_does_not_take_the_tor_with_it(
    testnet: Network,
) -> None:
    # stem sends TAKEOWNERSHIP when __OwningControllerProcess equals our pid,
    # after which tor exits as soon as that control connection closes.
    node = testnet.clients()[-1]
    assert node.control_port is not None
    controller = stem.control.Controller.from_port("127.0.0.1", node.control_port)
    try:
        controller.authenticate()
        assert controller.get_info("status/bootstrap-phase")
    finally:
        controller.close()
    time.sleep(1.5)  # tor exits at once once it has been told to (measured: well under 1 s)
    assert node.pid is not None
    assert _alive(node.pid)
    assert status(testnet.directory)["ready"] is True


async def _receive_exactly(stream: trio.SocketStream, count: int) -> bytes:
    data = b""
    for _ in range(count):
        chunk = await stream.receive_some(count - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
        if len(data) == count:
            break
    return data


async def _socks5_connect(socks_port: int, host: str, port: int) -> tuple[int, trio.SocketStream]:
    """A minimal SOCKS5 CONNECT by hand (RFC 1928); returns (reply code, stream)."""
    stream = await trio.open_tcp_stream("127.0.0.1", socks_port)
    await stream.send_all(b"\x05\x01\x00")
    assert await _receive_exactly(stream, 2) == b"\x05\x00"
    name = host.encode("ascii")
    await stream.send_all(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + port.to_bytes(2, "big"))
    # tor always answers with an IPv4 BND.ADDR: 05 REP 00 01 a.b.c.d port
    reply = await _receive_exactly(stream, 10)
    assert reply[0] == 5
    assert reply[3] == 1
    return reply[1], stream


async def _echo(stream: trio.SocketStream) -> None:
    async for data in stream:
        await stream.send_all(data)


async def test_onion_service_on_one_client_is_reachable_from_another(testnet: Network) -> None:
    service_client, dialer = testnet.clients()[:2]
    assert service_client.control_port is not None
    assert dialer.socks_port is not None
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, _echo, 0, host="127.0.0.1")
        )
        echo_port = listeners[0].socket.getsockname()[1]
        controller = stem.control.Controller.from_port("127.0.0.1", service_client.control_port)
        try:
            controller.authenticate()
            with trio.fail_after(45):
                service = await trio.to_thread.run_sync(
                    functools.partial(
                        controller.create_ephemeral_hidden_service,
                        {80: echo_port},
                        key_type="NEW",
                        key_content="ED25519-V3",
                        await_publication=True,
                        timeout=30,
                    )
                )
                for _ in range(10):
                    reply, stream = await _socks5_connect(
                        dialer.socks_port, f"{service.service_id}.onion", 80
                    )
                    if reply != SOCKS_DESCRIPTOR_NOT_FOUND:
                        break
                    await stream.aclose()
                    await trio.sleep(1)
                assert reply == 0, f"SOCKS reply {reply:#x}"
                async with stream:
                    payload = b"onionpost over a private tor network\n" * 3
                    await stream.send_all(payload)
                    assert await _receive_exactly(stream, len(payload)) == payload
        finally:
            controller.close()
        nursery.cancel_scope.cancel()


def test_up_with_missing_tor_binary_starts_nothing(tmp_path: Path) -> None:
    with pytest.raises(TorLaunchError, match=r"not found.*apt-get install -y tor"):
        up(tmp_path, tor_binary=tmp_path / "no-such-tor", deadline=10)
    assert not (tmp_path / STATE_FILE).exists()
    assert _processes_mentioning(tmp_path) == []


def test_up_refuses_a_directory_whose_network_is_running(testnet: Network) -> None:
    with pytest.raises(TorLaunchError, match="already running"):
        up(testnet.directory, owner_pid=os.getpid())
    assert status(testnet.directory)["ready"] is True


def test_cli_up_without_tor_exits_3_naming_the_package(tmp_path: Path) -> None:
    args = ["testnet", "up", "--dir", str(tmp_path / "net"), "--tor", str(tmp_path / "no-tor")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 3
    assert result.stderr.startswith("onionpost: tor is not installed")
    assert "apt-get install -y tor" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not (tmp_path / "net").exists()


def test_load_without_state_is_a_tor_error(tmp_path: Path) -> None:
    with pytest.raises(TorError, match="no testnet"):
        load(tmp_path)
    (tmp_path / STATE_FILE).write_text('{"format": "onionpost-testnet", "version": 1}')
    with pytest.raises(TorError, match="corrupt"):
        load(tmp_path)


def test_cli_status_of_an_empty_dir_is_one_clear_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["testnet", "status", "--dir", str(tmp_path)])
    assert result.exit_code == 3
    assert result.stdout == ""
    assert result.stderr.startswith("onionpost: no testnet in ")
    assert result.stderr.count("\n") == 1
    assert "Traceback" not in result.output


_CLI = [sys.executable, "-m", "onionpost", "testnet"]


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_CLI, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="session")
def cli_up_in_background(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """``onionpost testnet up`` for a second network, running in the background.

    Session-scoped and requested before ``testnet`` by the first test here, so
    both bring-ups overlap: each spends most of its time waiting for 10 s
    voting rounds, not on the CPU.
    """
    directory = tmp_path_factory.mktemp("cli") / "net"
    proc = subprocess.Popen(
        [*_CLI, "up", "--dir", str(directory), "--clients", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc, directory
    finally:
        if proc.poll() is None:
            # On SIGTERM `up` stops what it started before exiting.
            proc.terminate()
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=10)
        if (directory / STATE_FILE).exists():
            _cli("down", "--dir", str(directory), timeout=30)


def test_cli_network_outlives_up_and_down_stops_every_pid(
    cli_up_in_background: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, directory = cli_up_in_background
    stdout, stderr = proc.communicate(timeout=150)
    assert proc.returncode == 0, stderr
    assert "socks 127.0.0.1:" in stdout
    assert str(directory / CLIENT_OPTIONS_FILE) in stdout

    # `up` has exited; its network has not.
    shown = _cli("status", "--dir", str(directory), "--json", timeout=30)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    report = json.loads(shown.stdout)
    assert report["ready"] is True
    assert report["alive"] == report["total"] == 6
    pids = {node["pid"] for node in report["nodes"]}
    assert pids <= set(_processes_mentioning(directory))

    stopped = _cli("down", "--dir", str(directory), timeout=30)
    assert stopped.returncode == 0, stopped.stderr
    assert _processes_mentioning(directory) == []
    assert not any(_alive(pid) for pid in pids)
    assert _cli("status", "--dir", str(directory), timeout=30).returncode == 1
