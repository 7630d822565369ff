"""The endpoint harness (onionpost.testing.endpoint) without a Tor network: its home,
its config, the CLI helpers, and a daemon that cannot start. The end-to-end tests
(tests/daemon/test_endpoints_tor.py) use it on the real network."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from onionpost.home import Paths, load_config
from onionpost.testing.endpoint import Endpoint, EndpointError
from onionpost.testing.testnet import Testnet as Network  # not collected as a test

AUTHORITY = "auth0 orport=5000 no-v2 v3ident=AB 127.0.0.1:5001 0123"


@pytest.fixture
def net(tmp_path: Path) -> Network:
    return Network(tmp_path / "net", nodes=(), dir_authorities=(AUTHORITY,))


def test_a_new_endpoint_joins_the_network_and_retries_fast(tmp_path: Path, net: Network) -> None:
    alice = Endpoint(tmp_path, "alice", net)
    assert alice.home == tmp_path / "alice"
    assert alice.key.stat().st_mode & 0o777 == 0o600
    config = load_config(Paths.for_home(alice.home))
    assert config.retry_initial == 1.0
    assert config.retry_max == 5.0
    assert config.tor_extra_options == net.tor_options()
    identity = alice.json("whoami")
    assert identity["name"] == "alice"
    assert identity["card"].startswith("onionpost1:")


def test_a_failed_command_says_which_and_why(tmp_path: Path, net: Network) -> None:
    alice = Endpoint(tmp_path, "alice", net)
    with pytest.raises(EndpointError, match=r"alice: onionpost contact remove nobody exited with"):
        alice.cli("contact", "remove", "nobody")
    assert alice.cli("contact", "remove", "nobody", check=False).returncode != 0


def test_a_daemon_that_exits_is_reported_with_its_log(tmp_path: Path, net: Network) -> None:
    alice = Endpoint(tmp_path, "alice", net)
    config = alice.home / "config.toml"
    # A tor that does not exist: the daemon starts and exits with an error.
    config.write_text(config.read_text().replace("[tor]\n", '[tor]\nbinary = "/nonexistent/tor"\n'))
    with pytest.raises(EndpointError, match="alice's daemon exited") as caught:
        alice.start(seconds=60)
    assert "/nonexistent/tor" in str(caught.value)
    assert alice.process is None
    alice.stop()  # nothing to stop: safe


def test_wait_ready_needs_a_launched_daemon(tmp_path: Path, net: Network) -> None:
    alice = Endpoint(tmp_path, "alice", net)
    with pytest.raises(EndpointError, match="no daemon was launched"):
        alice.wait_ready(time.monotonic() + 1)
