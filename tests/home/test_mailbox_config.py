"""config.toml's mailbox keys: the [mailbox] table of a mailbox home, and mailbox_after."""

from __future__ import annotations

import re

import pytest

from onionpost.errors import ConfigError
from onionpost.home import DEFAULT_CONFIG_TEXT, Config, Paths, parse_config
from onionpost.home._config import _MAILBOX, MAX_MAILBOX_ENVELOPE


def test_defaults() -> None:
    config = Config()
    assert config.mailbox_after == 60.0
    assert config.mailbox_retention == 30 * 24 * 3600
    assert config.mailbox_max_envelope == 64_000
    assert config.mailbox_max_envelopes_per_contact == 5000
    assert config.mailbox_max_bytes_per_contact == 256 * 2**20
    assert config.mailbox_max_disk_use == 10 * 2**30
    assert config.mailbox_records_per_second == 200
    assert MAX_MAILBOX_ENVELOPE == 64_000  # proto.envelope.MAX_ENVELOPE (test_server)


def test_the_default_file_documents_the_mailbox_table_at_its_defaults() -> None:
    text = re.sub(r"(?m)^# ((?:\[|[a-zA-Z_]+ = ).*)$", r"\1", DEFAULT_CONFIG_TEXT)
    mailbox = text[text.index("\n[mailbox]\n") :]
    for key in _MAILBOX:
        assert re.search(rf"(?m)^{key} = ", mailbox), key
    assert re.search(r"(?m)^mailbox_after = ", text[: text.index("\n[tor]\n")])
    assert parse_config(text).mailbox_retention == Config().mailbox_retention
    config = parse_config(text)
    for name in (f for f in Config.__dataclass_fields__ if f.startswith("mailbox_")):
        assert getattr(config, name) == getattr(Config(), name), name


def test_every_mailbox_key_is_read(tmp_path: object) -> None:
    config = parse_config(
        """
mailbox_after = 5

[mailbox]
retention = 3600
max_envelope = 2000
max_envelopes_per_contact = 10
max_bytes_per_contact = 20000
max_disk_use = 100000
records_per_second = 7
"""
    )
    assert (config.mailbox_after, config.mailbox_retention) == (5.0, 3600.0)
    assert isinstance(config.mailbox_retention, float)
    assert (config.mailbox_max_envelope, config.mailbox_max_envelopes_per_contact) == (2000, 10)
    assert (config.mailbox_max_bytes_per_contact, config.mailbox_max_disk_use) == (20000, 100000)
    assert config.mailbox_records_per_second == 7
    assert Paths.for_home(tmp_path).mailbox_store.name == "mailbox.db"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("mailbox_after = 0", "mailbox_after"),
        ("mailbox_after = 'soon'", "mailbox_after"),
        ("mailbox = 3", "mailbox"),
        ("[mailbox]\nretentoin = 5", "mailbox.retentoin"),
        ("[mailbox]\nretention = -1", "mailbox.retention"),
        ("[mailbox]\nmax_envelope = 64001", "mailbox.max_envelope"),
        ("[mailbox]\nmax_envelope = 0", "mailbox.max_envelope"),
        ("[mailbox]\nmax_envelopes_per_contact = 1.5", "mailbox.max_envelopes_per_contact"),
        ("[mailbox]\nmax_bytes_per_contact = 0", "mailbox.max_bytes_per_contact"),
        ("[mailbox]\nmax_disk_use = true", "mailbox.max_disk_use"),
        ("[mailbox]\nrecords_per_second = 0", "mailbox.records_per_second"),
    ],
)
def test_bad_mailbox_settings_name_their_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        parse_config(text)
