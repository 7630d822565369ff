"""Where an endpoint keeps its files: every path derives from one home directory.

::

    <home>/                 0700
      config.toml           settings (commented defaults), 0600
      secrets.json          identity, keys and store key, sealed (0600)
      card.txt              our public contact card, 0644
      store.sqlite          contacts and messages: SQLCipher, every page encrypted, WAL
      mailbox.db            a mailbox's owners, codes, prekeys and envelopes (SQLCipher;
                            only in a home run with `onionpost mailbox serve`)
      registrar/            an agency registrar's key, log and book (only in a home
                            made one with `onionpost registrar init`)
      files/                0700, encrypted file blobs
      tor/                  0700, our tor's DataDirectory
      run/                  0700
        control.sock        the local API socket, 0600
        onion.sock          where our tor forwards the onion service's streams, 0600
        daemon.lock         held by the running daemon

The home is ``$ONIONPOST_HOME`` when set, else the platform's per-user data
directory (``platformdirs.user_data_path("onionpost")``, on Linux
``~/.local/share/onionpost``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import platformdirs

__all__ = ["HOME_ENV", "Paths", "default_home", "fsync_dir", "write_atomic"]

HOME_ENV: Final = "ONIONPOST_HOME"


def default_home() -> Path:
    """``$ONIONPOST_HOME`` if set and not empty, else the per-user data directory."""
    override = os.environ.get(HOME_ENV, "")
    if override:
        return Path(override).expanduser()
    return platformdirs.user_data_path("onionpost")


@dataclass(frozen=True, slots=True)
class Paths:
    """The files of one endpoint, all under ``home``."""

    home: Path
    config: Path
    secrets: Path
    card: Path
    store: Path
    files: Path
    tor: Path
    run: Path
    socket: Path
    onion_socket: Path
    lock: Path

    @classmethod
    def for_home(cls, home: Path) -> Paths:
        home = Path(home).expanduser().absolute()
        run = home / "run"
        return cls(
            home=home,
            config=home / "config.toml",
            secrets=home / "secrets.json",
            card=home / "card.txt",
            store=home / "store.sqlite",
            files=home / "files",
            tor=home / "tor",
            run=run,
            socket=run / "control.sock",
            onion_socket=run / "onion.sock",
            lock=run / "daemon.lock",
        )

    @property
    def mailbox_store(self) -> Path:
        """The mailbox's database (``mailbox.md``), in a home run as a mailbox."""
        return self.home / "mailbox.db"

    @property
    def registrar(self) -> Path:
        """The registrar's directory (trust.md §8), in a home run as a registrar."""
        return self.home / "registrar"

    @property
    def private_dirs(self) -> tuple[Path, ...]:
        """The directories that must be 0700, home first."""
        return (self.home, self.files, self.tor, self.run)

    def permission_problems(self) -> list[str]:
        """What other users can reach here that they should not: a private
        directory not 0700, or the secrets file readable (doctor; the daemon
        warns at start)."""
        found = []
        for directory in self.private_dirs:
            if directory.exists() and directory.stat().st_mode & 0o077:
                found.append(f"{directory} is accessible to other users (want 0700)")
        if self.secrets.exists() and self.secrets.stat().st_mode & 0o077:
            found.append(f"{self.secrets} is readable by other users (want 0600)")
        return found


def write_atomic(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves the old or the new file.

    A temporary file in the same directory, created with ``mode`` (never
    wider, whatever the umask), is written, fsynced and renamed over
    ``path``; then the directory is fsynced so the rename itself is durable.
    """
    directory = path.parent
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """Make a rename or creation inside ``directory`` durable (POSIX)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
