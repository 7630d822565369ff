"""config.toml: defaults, the documented default file, strictness about keys and types."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from onionpost.errors import ConfigError
from onionpost.home import DEFAULT_CONFIG_TEXT, Config, Paths, load_config, parse_config
from onionpost.home._config import _TOP, _TOR


def test_a_missing_file_means_every_default(tmp_path: Path) -> None:
    config = load_config(Paths.for_home(tmp_path))
    assert config == Config()
    assert config.tor_mode == "launch"
    assert config.tor_binary == Path("/usr/bin/tor")
    assert config.onion_port == 7733
    assert config.max_file_size == 2**30
    assert config.max_disk_use == 10 * 2**30
    assert config.message_expiry is None
    assert config.tor_extra_options == {}


def test_the_default_file_is_all_comments_and_parses_to_the_defaults() -> None:
    assert parse_config(DEFAULT_CONFIG_TEXT) == Config()


def _uncommented(text: str) -> str:
    return re.sub(r"(?m)^# ((?:\[|[a-zA-Z_]+ = ).*)$", r"\1", text)


def test_the_default_file_documents_every_key() -> None:
    text = _uncommented(DEFAULT_CONFIG_TEXT)
    for key in _TOP:
        assert re.search(rf"(?m)^{key} = ", text), key
    for key in set(_TOR) - {"options"}:
        assert re.search(rf"(?m)^{key} = ", text), key
    assert "[tor.options]" in text
    # Uncommented, every example is a valid setting, and the documented
    # defaults are the real ones.
    config = parse_config(text)
    defaults = Config()
    for name in (
        "tor_mode",
        "tor_binary",
        "tor_allow_unauthenticated_control",
        "onion_port",
        "max_file_size",
        "max_disk_use",
        "retry_initial",
        "retry_max",
        "connect_timeout",
        "log_level",
    ):
        assert getattr(config, name) == getattr(defaults, name), name
    assert config.tor_extra_options == {"TestingTorNetwork": "1"}


def test_every_key_is_read(tmp_path: Path) -> None:
    paths = Paths.for_home(tmp_path)
    paths.config.write_text(
        """
onion_port = 8000
max_file_size = 1000
max_disk_use = 5000
retry_initial = 1
retry_max = 2.5
connect_timeout = 30
message_expiry = 3600
log_level = "debug"

[tor]
mode = "attach"
binary = "~/bin/tor"
control_socket = "/run/tor/control"
password = "hunter2"
allow_unauthenticated_control = true

[tor.options]
TestingTorNetwork = "1"
DirAuthority = ["a 127.0.0.1:1", "b 127.0.0.1:2"]
SocksPort = 0
"""
    )
    config = load_config(paths)
    assert config == Config(
        tor_mode="attach",
        tor_binary=Path("~/bin/tor").expanduser(),
        tor_control_port=None,
        tor_control_socket=Path("/run/tor/control"),
        tor_password="hunter2",
        tor_allow_unauthenticated_control=True,
        tor_extra_options={
            "TestingTorNetwork": "1",
            "DirAuthority": ["a 127.0.0.1:1", "b 127.0.0.1:2"],
            "SocksPort": "0",
        },
        onion_port=8000,
        max_file_size=1000,
        max_disk_use=5000,
        retry_initial=1.0,
        retry_max=2.5,
        connect_timeout=30.0,
        message_expiry=3600.0,
        log_level="debug",
    )
    assert isinstance(config.retry_initial, float)
    assert "hunter2" not in repr(config)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("onion_prot = 1", "onion_prot"),
        ("[tor]\nmod = 'launch'", "tor.mod"),
        ("[network]\nport = 1", "network"),
        ("onion_port = '7733'", "onion_port"),
        ("onion_port = true", "onion_port"),
        ("onion_port = 70000", "onion_port"),
        ("onion_port = 1.5", "onion_port"),
        ("max_file_size = -1", "max_file_size"),
        ("retry_initial = '5'", "retry_initial"),
        ("retry_initial = 0", "retry_initial"),
        ("retry_initial = nan", "retry_initial"),
        ("retry_initial = inf", "retry_initial"),
        ("connect_timeout = false", "connect_timeout"),
        ("log_level = 'loud'", "log_level"),
        ("tor = 1", "tor"),
        ("[tor]\nmode = 'spawn'", "tor.mode"),
        ("[tor]\nbinary = 5", "tor.binary"),
        ("[tor]\ncontrol_port = '9051'", "tor.control_port"),
        ("[tor]\npassword = 1", "tor.password"),
        ("[tor]\noptions = 'x'", "tor.options"),
        ("[tor.options]\nSocksPort = true", "tor.options.SocksPort"),
        ("[tor.options]\nDirAuthority = [1, 2]", "tor.options.DirAuthority"),
        ("[tor.options]\nDirAuthority = []", "tor.options.DirAuthority"),
        ("[tor.options.nested]\nx = '1'", "tor.options.nested"),
        ("retry_initial = 10\nretry_max = 5", "retry_max"),
        ("[tor]\nmode = 'attach'", "tor.mode"),
        ("[tor]\nmode = 'attach'\ncontrol_port = 1\ncontrol_socket = '/s'", "tor.mode"),
    ],
)
def test_bad_settings_name_their_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        parse_config(text)


@pytest.mark.parametrize(
    "line", ["retry_initial = 5", "log_level = 'debug'", "connect_timeout = 30"]
)
def test_our_setting_appended_under_tor_options_is_named_as_ours(line: str) -> None:
    """A line appended to a file that ends with [tor.options] lands in that
    table: said so, rather than handed to tor (which would refuse to start)."""
    text = f"[tor.options]\nTestingTorNetwork = '1'\n{line}\n"
    name = line.split(" ", 1)[0]
    with pytest.raises(ConfigError) as refused:
        parse_config(text)
    assert str(refused.value) == (
        f"config key tor.options.{name}: {name} is onionpost's own setting, not a tor "
        "option; put it above the first [table] of the file"
    )
    assert parse_config(f"{line}\n[tor.options]\nTestingTorNetwork = '1'\n")  # above: fine


def test_invalid_toml(tmp_path: Path) -> None:
    paths = Paths.for_home(tmp_path)
    paths.config.write_text("onion_port = = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(paths)
    paths.config.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(paths)


# -- handling labels -------------------------------------------------------------------


def test_the_labels_table() -> None:
    config = parse_config(
        """
[labels]
default = "TLP:GREEN"
accept = ["TLP:AMBER", "CUI//SP-CTI"]
export_max = ["TLP:AMBER", "ACME:INTERNAL"]
organisation = "acme"

[[labels.schemes]]
name = "ACME"
levels = ["INTERNAL", "SENSITIVE"]
caveats = ["LES"]
"""
    )
    policy = config.labels
    assert policy.default.text == "TLP:GREEN"
    assert [label.text for label in policy.accept] == ["TLP:AMBER", "CUI//SP-CTI"]
    assert [label.text for label in policy.export_max] == ["TLP:AMBER", "ACME:INTERNAL"]
    assert policy.organisation == "acme"
    assert policy.labels.parse("ACME:SENSITIVE//LES").level == 1


def test_the_default_labels() -> None:
    policy = Config().labels
    assert policy.default.text == "TLP:AMBER"
    assert policy.accept == ()
    assert [label.text for label in policy.export_max] == ["TLP:AMBER+STRICT"]
    assert policy.organisation is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[labels]\ndefault = "TLP:WHITE"', "labels"),
        ('[labels]\ndefault = "ACME:INTERNAL"', "unknown scheme"),
        ('[labels]\naccept = ["TLP:AMBER", "TLP:RED"]', "one label per scheme"),
        ('[labels]\naccept = "TLP:AMBER"', "labels.accept"),
        ('[labels]\ncolour = "red"', "labels.colour"),
        ("labels = 3", "labels"),
        ('[[labels.schemes]]\nname = "TLP"\nlevels = ["A"]', "TLP or CUI"),
        ('[[labels.schemes]]\nname = "ACME"\nlevels = []', "distinct levels"),
        ('[[labels.schemes]]\nname = "ACME"\nlevels = ["A"]\ncolour = 1', "labels.schemes[0]"),
        ('[[labels.schemes]]\nlevels = ["A"]', "labels.schemes[0]"),
    ],
)
def test_bad_labels_are_refused_naming_the_key(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        parse_config(text)
