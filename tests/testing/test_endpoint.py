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


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("endpoints")


@pytest.fixture(scope="module")
def net(root: Path) -> Network:
    return Network(root / "net", nodes=(), dir_authorities=(AUTHORITY,))


@pytest.fixture(scope="module")
def alice(root: Path, net: Network) -> Endpoint:
    # Each `onionpost` run costs a Python start-up: one endpoint serves every test here.
    return Endpoint(root, "alice", net)


def test_a_new_endpoint_joins_the_network_and_retries_fast(
    root: Path, net: Network, alice: Endpoint
) -> None:
    assert alice.home == root / "alice"
    assert alice.key.stat().st_mode & 0o777 == 0o600
    config = load_config(Paths.for_home(alice.home))
    assert config.retry_initial == 1.0
    assert config.retry_max == 5.0
    assert config.tor_extra_options == net.tor_options()
    identity = alice.json("whoami")
    assert identity["name"] == "alice"
    assert identity["card"].startswith("onionpost1:")


def test_a_failed_command_says_which_and_why(alice: Endpoint) -> None:
    with pytest.raises(EndpointError, match=r"alice: onionpost contact remove nobody exited with"):
        alice.cli("contact", "remove", "nobody")
    assert alice.cli("contact", "remove", "nobody", check=False).returncode != 0


def test_a_daemon_that_exits_is_reported_with_its_log(root: Path, net: Network) -> None:
    bob = Endpoint(root, "bob", net)
    config = bob.home / "config.toml"
    # A tor that does not exist: the daemon starts and exits with an error.
    config.write_text(config.read_text().replace("[tor]\n", '[tor]\nbinary = "/nonexistent/tor"\n'))
    with pytest.raises(EndpointError, match="bob's daemon exited") as caught:
        bob.start(seconds=60)
    assert "/nonexistent/tor" in str(caught.value)
    assert bob.process is None
    bob.stop()  # nothing to stop: safe


def test_wait_ready_needs_a_launched_daemon(alice: Endpoint) -> None:
    with pytest.raises(EndpointError, match="no daemon was launched"):
        alice.wait_ready(time.monotonic() + 1)
