"""The hardening of the tors we launch and attach to, without tor (spec §1.2, §1.3).

The tor-marked checks, on the private network, are in
``tests/daemon/test_hardening_tor.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onionpost.errors import ConfigError
from onionpost.tor import TorConfig
from onionpost.tor._config import (
    MAX_UNIX_PATH,
    check_unix_path,
    launch_options,
    torrc_unix_path,
    vanguards_lite_on,
)
from onionpost.tor._controller import consensus_param
from onionpost.tor._publish import check_target, tor_has_pow


def test_launched_tor_listens_on_unix_sockets_only() -> None:
    data = Path("/home/u/.local/share/onionpost/tor")
    options = launch_options(TorConfig(data_dir=data), data)
    assert options["SocksPort"] == f'unix:"{data}/socks.sock" ExtendedErrors'
    assert options["ControlPort"] == f'unix:"{data}/control.sock"'
    assert options["CookieAuthentication"] == "1"
    assert "ControlPortWriteToFile" not in options
    assert options["VanguardsLiteEnabled"] == "1"


def test_torrc_quotes_unix_paths_with_c_escapes() -> None:
    assert torrc_unix_path(Path('/a\\b"c')) == 'unix:"/a\\\\b\\"c"'


def test_unix_paths_are_checked() -> None:
    assert check_unix_path(Path("/run/x.sock"), "x") == Path("/run/x.sock")
    too_long = Path("/" + "d" * MAX_UNIX_PATH)
    for bad in (Path("run/x.sock"), too_long, Path("/a b/x.sock"), Path("/a,b"), Path("/a\nb")):
        with pytest.raises(ConfigError):
            check_unix_path(bad, "x")
    with pytest.raises(ConfigError, match="shorter home"):
        launch_options(TorConfig(data_dir=Path("/" + "d" * 100)), Path("/" + "d" * 100))
    assert check_target(Path("/run/onion.sock")) == Path("/run/onion.sock")
    assert check_target(("127.0.0.1", 80)) == ("127.0.0.1", 80)
    with pytest.raises(ConfigError):
        check_target(("10.0.0.1", 80))


def test_allow_unauthenticated_is_for_attach_only() -> None:
    assert TorConfig(control_port=9051, allow_unauthenticated=True).allow_unauthenticated
    with pytest.raises(ConfigError):
        TorConfig(data_dir=Path("/tmp/x"), allow_unauthenticated=True)


@pytest.mark.parametrize(
    ("version", "has"),
    [
        ("0.4.9.11", True),
        ("0.4.8.1-alpha (git-0123)", True),
        ("0.4.8.0", False),
        ("0.4.7.16", False),
        ("0.5.0.1-alpha-dev", True),
        ("garbage", False),
    ],
)
def test_pow_needs_tor_0_4_8(version: str, has: bool) -> None:
    assert tor_has_pow(version) is has


def test_vanguards_lite_resolution() -> None:
    # tor-manual VanguardsLiteEnabled: auto follows the consensus, on when it is silent.
    assert vanguards_lite_on("1", "0")
    assert not vanguards_lite_on("0", "1")
    assert vanguards_lite_on("auto", None)
    assert vanguards_lite_on("auto", "1")
    assert not vanguards_lite_on("auto", "0")
    consensus = "network-status-version 3 microdesc\nparams a=1 vanguards-lite-enabled=0 b=2\n"
    assert consensus_param(consensus, "vanguards-lite-enabled") == "0"
    assert consensus_param(consensus, "c") is None
    assert consensus_param("network-status-version 3\n", "a") is None
