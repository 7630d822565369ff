"""The start of a process on a home: what `onionpost daemon` and `onionpost
mailbox serve` both do before their own part runs.

::

    check_primitives()           the known-answer self-test; nothing runs on failing crypto
    with open_home(paths, source, what=..., log=log) as (secrets, config):
        home_lock                one process per home (fcntl lock, our pid in it)
        source()                 the passphrase or key file (asked for inside the lock)
        unlock, load_config
        configure_logging        the config's level; stem never below WARNING
        renew                    a static key due for renewal, sealed again and saved

How a secret is asked for (a terminal prompt, a file, the environment) is
the command line's business: it hands :func:`open_home` a function giving a
:class:`SecretSource`.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from onionpost.errors import ConfigError, SelfTestError, StoreLockedError
from onionpost.home import Config, Paths, Secrets, load_config, save_secrets, unlock
from onionpost.proto.identity import StaticKey
from onionpost.proto.selftest import run_self_test

__all__ = ["SecretSource", "check_primitives", "configure_logging", "home_lock", "open_home"]


@dataclass(frozen=True)
class SecretSource:
    """Exactly one of a passphrase and a key file: what opens the secrets file."""

    passphrase: str | None = field(default=None, repr=False)
    key_file: Path | None = None


def check_primitives() -> None:
    """Run the known-answer self-test; :class:`SelfTestError` names what failed."""
    failed = [name for name, reason in run_self_test() if reason is not None]
    if failed:
        raise SelfTestError(f"self-test failed ({', '.join(failed)}); refusing to start")


@contextmanager
def home_lock(lock_path: Path) -> Iterator[IO[str]]:
    """Hold the home's lock, or refuse (:class:`StoreLockedError`): one process per home."""
    lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = lock_path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreLockedError("another daemon is already running on this home") from None
    try:
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield handle
    finally:
        handle.close()


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # stem is chatty below WARNING, and at its TRACE level it logs the
    # commands it sends, keys included: never let it go below WARNING.
    logging.getLogger("stem").setLevel(logging.WARNING)


@contextmanager
def open_home(
    paths: Paths, source: Callable[[], SecretSource], *, what: str, log: logging.Logger
) -> Iterator[tuple[Secrets, Config]]:
    """The home's secrets and config, with its lock held (see the module docstring).

    ``what`` names the home in the error when it has no secrets file
    (``endpoint``, ``home``); ``log`` is the process's logger.
    """
    if not paths.secrets.exists():
        raise ConfigError(f"no {what} in {paths.home}: run 'onionpost init' first")
    with home_lock(paths.lock):
        secret = source()
        secrets = unlock(paths, passphrase=secret.passphrase, key_file=secret.key_file)
        config = load_config(paths)
        configure_logging(config.log_level)
        now = int(time.time())
        if secrets.static.certificate.needs_renewal(now):
            secrets.static = StaticKey.generate(secrets.identity, now=now)
            save_secrets(paths, secrets, passphrase=secret.passphrase, key_file=secret.key_file)
            log.info("event=static_key_rotated")
        yield secrets, config
