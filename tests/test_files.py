"""Small files read whole (onionpost._files): each kind within its limit, none blocked by a FIFO.

A FIFO test that regressed would hang, so each runs under a short alarm.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from onionpost import limits
from onionpost._files import read_small_file
from onionpost.errors import CardError, ConfigError, OnionpostError, TorError
from onionpost.home import Paths, load_config, read_card_file, read_key_file, unlock


@pytest.fixture
def alarm() -> Iterator[None]:
    # A blocking open would hang the run; SIGALRM turns it into a failure.
    def hung(signum: int, frame: object) -> None:
        raise AssertionError("the read blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(5)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _unlock(path: Path) -> object:
    return unlock(Paths.for_home(path.parent), passphrase="pw", key_file=None)


def _config(path: Path) -> object:
    return load_config(Paths.for_home(path.parent))


def _passphrase(path: Path) -> object:
    from onionpost.cli._init import new_passphrase

    return new_passphrase(path)


# Each kind of file: its reader, its file name, its limit, its error.
KINDS: dict[str, tuple[Callable[[Path], object], str, int, type[OnionpostError]]] = {
    "card": (read_card_file, "alice.card", limits.MAX_CARD_FILE, CardError),
    "key": (read_key_file, "k.key", limits.KEY_FILE_LEN, ConfigError),
    "passphrase": (_passphrase, "pass", limits.MAX_PASSPHRASE_FILE, ConfigError),
    "secrets": (_unlock, "secrets.json", limits.MAX_SECRETS_FILE, ConfigError),
    "config": (_config, "config.toml", limits.MAX_CONFIG_FILE, ConfigError),
}


@pytest.mark.usefixtures("alarm")
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, kind: str) -> None:
    reader, name, _, error = KINDS[kind]
    fifo = tmp_path / name
    os.mkfifo(fifo, 0o600)
    with pytest.raises(error, match="not a regular file"):
        reader(fifo)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_file_over_its_limit_is_refused(tmp_path: Path, kind: str) -> None:
    reader, name, limit, error = KINDS[kind]
    path = tmp_path / name
    path.write_bytes(b"#" * (limit + 1))
    path.chmod(0o600)
    with pytest.raises(error, match=f"too large \\(over {limit} bytes\\)"):
        reader(path)


def test_a_directory_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a regular file"):
        read_small_file(tmp_path, 10, what="test file")


def test_the_limit_itself_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_small_file(path, 100, what="test file") == b"x" * 100
    assert read_small_file(path, 1000, what="test file") == b"x" * 100
    path.write_bytes(b"")
    assert read_small_file(path, 0, what="test file") == b""


def test_missing_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert read_small_file(missing, 10, what="test file", missing_ok=True) is None
    with pytest.raises(TorError, match=r"cannot read test file .*missing: No such file"):
        read_small_file(missing, 10, what="test file", error=TorError)


def test_private_files_refuse_links_other_readers(tmp_path: Path) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"k" * 32)
    path.chmod(0o600)
    assert read_small_file(path, 32, what="key file", private=True) == b"k" * 32
    link = tmp_path / "link"
    link.symlink_to(path)
    with pytest.raises(ConfigError, match="cannot read key file"):
        read_small_file(link, 32, what="key file", private=True)
    assert read_small_file(link, 32, what="card file") == b"k" * 32  # not private: followed
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_small_file(path, 32, what="key file", private=True)
