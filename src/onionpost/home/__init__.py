"""An endpoint's home directory: its paths, sealed secrets, contact card and config.

Used by the daemon (unlock, config, card) and by ``onionpost init`` and
``whoami``. Layout: :mod:`onionpost.home._paths`; the secrets file:
:mod:`onionpost.home._secrets`; cards and safety numbers:
:mod:`onionpost.home._card`; settings: :mod:`onionpost.home._config`. The
formats are in ``protocol-spec/storage.md``.
"""

from __future__ import annotations

from onionpost.home._card import ContactCard, check_name, read_card_file, safety_number
from onionpost.home._config import DEFAULT_CONFIG_TEXT, Config, load_config, parse_config
from onionpost.home._init import init_home
from onionpost.home._paths import HOME_ENV, Paths, default_home
from onionpost.home._secrets import (
    Secrets,
    create_key_file,
    read_key_file,
    save_secrets,
    unlock,
)

__all__ = [
    "DEFAULT_CONFIG_TEXT",
    "HOME_ENV",
    "Config",
    "ContactCard",
    "Paths",
    "Secrets",
    "check_name",
    "create_key_file",
    "default_home",
    "init_home",
    "load_config",
    "parse_config",
    "read_card_file",
    "read_key_file",
    "safety_number",
    "save_secrets",
    "unlock",
]
