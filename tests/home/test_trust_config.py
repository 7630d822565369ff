"""config.toml's require_endorsement (trust.md §7.4): off by default, documented
in the default file at its default, a boolean and nothing else."""

from __future__ import annotations

import re

import pytest

from onionpost.daemon.delivery import DeliveryPolicy
from onionpost.errors import ConfigError
from onionpost.home import DEFAULT_CONFIG_TEXT, Config, parse_config


def test_off_by_default_and_documented() -> None:
    assert Config().require_endorsement is False
    text = re.sub(r"(?m)^# ((?:\[|[a-zA-Z_]+ = ).*)$", r"\1", DEFAULT_CONFIG_TEXT)
    assert re.search(r"(?m)^require_endorsement = false$", text[: text.index("\n[tor]\n")])
    assert parse_config(text).require_endorsement is False


def test_read_and_carried_to_the_engine() -> None:
    config = parse_config("require_endorsement = true")
    assert config.require_endorsement is True
    assert DeliveryPolicy.from_config(config).require_endorsement is True


@pytest.mark.parametrize("value", ["1", "'yes'", "0"])
def test_anything_but_a_boolean_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="require_endorsement"):
        parse_config(f"require_endorsement = {value}")
