"""An endpoint's home directory: its paths, sealed secrets, contact card and config.

Used by the daemon (unlock, config, card) and by ``onionpost init`` and
``whoami``; an agency's offline keys and log (``onionpost trust root-init``,
``trust endorse``): :mod:`onionpost.home._agency`. Layout:
:mod:`onionpost.home._paths`; the secrets file:
:mod:`onionpost.home._secrets`; cards and safety numbers:
:mod:`onionpost.home._card`; settings: :mod:`onionpost.home._config`. The
formats are in ``protocol-spec/storage.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from onionpost.home._paths import HOME_ENV, Paths, default_home, write_atomic

if TYPE_CHECKING:
    from onionpost.home._agency import (
        HANDED_OVER,
        AgencyDirectory,
        KeySource,
        open_key_file,
        write_key_file,
    )
    from onionpost.home._card import (
        ENDORSEMENT_PREFIX,
        ContactCard,
        check_name,
        endorsement_line,
        parse_endorsement_line,
        read_card_file,
        safety_number,
        split_card_bundle,
        write_card_file,
    )
    from onionpost.home._config import DEFAULT_CONFIG_TEXT, Config, load_config, parse_config
    from onionpost.home._init import init_home
    from onionpost.home._passphrase import passphrase_problem
    from onionpost.home._secrets import (
        KdfCost,
        Secrets,
        create_key_file,
        read_key_file,
        save_secrets,
        unlock,
    )

# The paths are all the client library needs; the rest (the crypto of the
# secrets and cards) loads on first use, so ``import onionpost.client`` pulls
# in neither pynacl nor cryptography.
_LAZY: dict[str, str] = {
    "HANDED_OVER": "_agency",
    "AgencyDirectory": "_agency",
    "KeySource": "_agency",
    "open_key_file": "_agency",
    "write_key_file": "_agency",
    "ContactCard": "_card",
    "ENDORSEMENT_PREFIX": "_card",
    "check_name": "_card",
    "read_card_file": "_card",
    "safety_number": "_card",
    "endorsement_line": "_card",
    "parse_endorsement_line": "_card",
    "split_card_bundle": "_card",
    "write_card_file": "_card",
    "DEFAULT_CONFIG_TEXT": "_config",
    "Config": "_config",
    "load_config": "_config",
    "parse_config": "_config",
    "init_home": "_init",
    "passphrase_problem": "_passphrase",
    "KdfCost": "_secrets",
    "Secrets": "_secrets",
    "create_key_file": "_secrets",
    "read_key_file": "_secrets",
    "save_secrets": "_secrets",
    "unlock": "_secrets",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_CONFIG_TEXT",
    "HANDED_OVER",
    "AgencyDirectory",
    "KeySource",
    "open_key_file",
    "write_key_file",
    "HOME_ENV",
    "Config",
    "ContactCard",
    "ENDORSEMENT_PREFIX",
    "KdfCost",
    "Paths",
    "Secrets",
    "check_name",
    "create_key_file",
    "default_home",
    "init_home",
    "load_config",
    "passphrase_problem",
    "parse_config",
    "read_card_file",
    "endorsement_line",
    "parse_endorsement_line",
    "split_card_bundle",
    "write_card_file",
    "read_key_file",
    "safety_number",
    "save_secrets",
    "unlock",
    "write_atomic",
]
