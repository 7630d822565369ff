"""``onionpost daemon`` (foreground) and ``onionpost doctor``."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click
import trio

from onionpost.cli._common import home_option, resolve_home
from onionpost.errors import ConfigError, OnionpostError, StoreError

if TYPE_CHECKING:
    from onionpost.daemon._daemon import Daemon

EXIT_FAILED = 1
EXIT_ENVIRONMENT = 3


def _fail(message: str, code: int) -> None:
    click.echo(f"onionpost: {message}", err=True)
    raise SystemExit(code)


@contextmanager
def home_lock(lock_path: Path) -> Iterator[IO[str]]:
    """Hold the home's daemon lock, or refuse: one daemon per home."""
    lock_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = lock_path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise StoreError("another daemon is already running on this home") from None
    try:
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield handle
    finally:
        handle.close()


def _secret_source(key_file: Path | None, passphrase_file: Path | None) -> dict[str, object]:
    if key_file is not None:
        return {"passphrase": None, "key_file": key_file}
    if passphrase_file is not None:
        return {"passphrase": passphrase_file.read_text().rstrip("\n"), "key_file": None}
    env = os.environ.get("ONIONPOST_PASSPHRASE")
    if env is not None:
        return {"passphrase": env, "key_file": None}
    if not sys.stdin.isatty():
        raise ConfigError(
            "no passphrase: use --key-file, --passphrase-file or ONIONPOST_PASSPHRASE"
        )
    return {"passphrase": click.prompt("passphrase", hide_input=True), "key_file": None}


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # stem is chatty below WARNING, and at its TRACE level it logs the
    # commands it sends, keys included: never let it go below WARNING.
    logging.getLogger("stem").setLevel(logging.WARNING)


@click.command("daemon")
@home_option
@click.option("--key-file", type=click.Path(path_type=Path), envvar="ONIONPOST_KEY_FILE")
@click.option("--passphrase-file", type=click.Path(path_type=Path))
def daemon(home: Path | None, key_file: Path | None, passphrase_file: Path | None) -> None:
    """Run the endpoint in the foreground until SIGINT or SIGTERM."""
    from onionpost.daemon._daemon import Daemon
    from onionpost.home import Paths, load_config, save_secrets, unlock
    from onionpost.proto.identity import StaticKey
    from onionpost.proto.selftest import run_self_test
    from onionpost.store import Store

    failed = [name for name, reason in run_self_test() if reason is not None]
    if failed:
        _fail(f"self-test failed ({', '.join(failed)}); refusing to start", EXIT_ENVIRONMENT)
    paths = Paths.for_home(resolve_home(home))
    # Errors take the path of every other command (OnionpostGroup): one line,
    # and the exit code by kind (tor, the store: 3).
    if not paths.secrets.exists():
        raise ConfigError(f"no endpoint in {paths.home}: run 'onionpost init' first")
    with home_lock(paths.lock):
        source = _secret_source(key_file, passphrase_file)
        secrets = unlock(paths, **source)  # type: ignore[arg-type]
        config = load_config(paths)
        _configure_logging(config.log_level)
        now = int(time.time())
        if secrets.static.certificate.needs_renewal(now):
            secrets.static = StaticKey.generate(secrets.identity, now=now)
            save_secrets(paths, secrets, **source)  # type: ignore[arg-type]
            logging.getLogger("onionpost.daemon").info("event=static_key_rotated")
        store = Store.open(paths.store, paths.files, secrets.store_key)
        try:
            trio.run(_run, Daemon(paths, secrets, config, store))
        finally:
            store.close()


async def _run(daemon: Daemon) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(daemon.run)
            print(f"onionpost daemon ready: {address}", file=sys.stderr, flush=True)
            async for signum in signals:
                logging.getLogger("onionpost.daemon").info(
                    "event=stopping signal=%s", signal.Signals(signum).name
                )
                nursery.cancel_scope.cancel()
                break
    daemon.close()


@click.command("doctor")
@home_option
@click.option("--key-file", type=click.Path(path_type=Path), envvar="ONIONPOST_KEY_FILE")
@click.option("--passphrase-file", type=click.Path(path_type=Path))
def doctor(home: Path | None, key_file: Path | None, passphrase_file: Path | None) -> None:
    """Check tor, permissions and the store's integrity."""
    from onionpost.home import Paths, load_config, unlock
    from onionpost.store import Store

    paths = Paths.for_home(resolve_home(home))
    problems: list[str] = []
    checks: list[str] = []
    try:
        config = load_config(paths)
        tor = config.tor_binary
        if not (tor.is_file() and os.access(tor, os.X_OK)):
            problems.append(f"tor binary {tor} is missing: apt-get install -y tor")
        else:
            checks.append(f"tor binary {tor}")
        for directory in (paths.home, paths.files, paths.tor, paths.run):
            if directory.exists() and directory.stat().st_mode & 0o077:
                problems.append(f"{directory} is accessible to other users (want 0700)")
        if paths.secrets.exists() and paths.secrets.stat().st_mode & 0o077:
            problems.append(f"{paths.secrets} is readable by other users (want 0600)")
        checks.append("permissions")
        secrets = unlock(paths, **_secret_source(key_file, passphrase_file))  # type: ignore[arg-type]
        checks.append("secrets unlock")
        try:
            with home_lock(paths.lock):
                store = Store.open(paths.store, paths.files, secrets.store_key)
                try:
                    problems.extend(store.integrity_check())
                finally:
                    store.close()
                checks.append("store integrity")
        except StoreError as exc:
            if "another daemon" in str(exc):
                checks.append("store in use by the running daemon (integrity not checked)")
            else:
                problems.append(f"store: {exc}")
    except OnionpostError as exc:
        problems.append(str(exc))
    for check in checks:
        click.echo(f"ok       {check}")
    for problem in problems:
        click.echo(f"PROBLEM  {problem}")
    raise SystemExit(EXIT_FAILED if problems else 0)
