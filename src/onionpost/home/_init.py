"""Creating a new endpoint in an empty home directory.

Order matters for a crash part-way: the directories, the key file, the
public card and the default config come first, and ``secrets.json`` last,
atomically. A home "holds an endpoint" exactly when ``secrets.json`` exists,
so an interrupted ``init`` can simply be run again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from onionpost.errors import ConfigError
from onionpost.home._card import ContactCard
from onionpost.home._config import DEFAULT_CONFIG_TEXT
from onionpost.home._paths import Paths, write_atomic
from onionpost.home._secrets import KdfCost, Secrets, create_key_file, write_secrets_file

__all__ = ["init_home", "make_private_dir"]


def make_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if needed, owned by us and exactly 0700."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{path} is not a directory")
        if info.st_uid != os.getuid():
            raise ConfigError(f"{path} belongs to another user (uid {info.st_uid})")
        if stat.S_IMODE(info.st_mode) != 0o700:
            path.chmod(0o700)
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror}") from exc


def init_home(
    paths: Paths,
    *,
    display_name: str,
    passphrase: str | None,
    key_file: Path | None,
    now: int,
    kdf_cost: KdfCost = KdfCost.MODERATE,
) -> Secrets:
    """Create a new endpoint: keys, sealed secrets, card and default config.

    Exactly one of ``passphrase`` and ``key_file``; a key file that does not
    exist yet is created (32 random bytes, 0600). ``now`` (seconds since the
    epoch) starts the static key's certificate. Refuses with
    :class:`ConfigError` when the home already holds an endpoint. An existing
    ``config.toml`` is kept. ``kdf_cost`` is the passphrase's Argon2id cost:
    the product's unless a test asks for the floor.
    """
    if (passphrase is None) == (key_file is None):
        raise ConfigError("give exactly one of a passphrase and a key file")
    if passphrase is not None and not passphrase:
        raise ConfigError("the passphrase is empty")
    if paths.secrets.exists():
        raise ConfigError(f"{paths.home} already holds an endpoint ({paths.secrets.name} exists)")
    secrets = Secrets.generate(display_name, now=now)
    for directory in paths.private_dirs:
        make_private_dir(directory)
    if key_file is not None and not key_file.exists():
        create_key_file(key_file)
    card = ContactCard.issue(secrets)
    try:
        write_atomic(paths.card, (card.to_line() + "\n").encode("ascii"), mode=0o644)
        if not paths.config.exists():
            write_atomic(paths.config, DEFAULT_CONFIG_TEXT.encode("utf-8"), mode=0o600)
    except OSError as exc:
        raise ConfigError(f"cannot write to {paths.home}: {exc.strerror}") from exc
    write_secrets_file(
        paths.secrets, secrets, passphrase=passphrase, key_file=key_file, kdf_cost=kdf_cost
    )
    return secrets
