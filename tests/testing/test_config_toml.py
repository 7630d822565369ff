"""The testnet's options rendered as config.toml's [tor.options] read back unchanged."""

from __future__ import annotations

from onionpost.home import parse_config
from onionpost.testing.testnet import render_config_toml


def test_rendered_options_parse_back_into_the_config() -> None:
    options: dict[str, str | list[str]] = {
        "TestingTorNetwork": "1",
        "DirAuthority": [
            'auth0 orport=5000 no-v2 v3ident=AB 127.0.0.1:5001 "quoted" 0123',
            "auth1 orport=5002 no-v2 v3ident=CD 127.0.0.1:5003 4567",
        ],
        "KISTSchedRunInterval": "1 msec",
    }
    config = parse_config("retry_initial = 1.0\n" + render_config_toml(options))
    assert config.tor_extra_options == options
    assert config.retry_initial == 1.0
