"""Small files read whole (onionpost._files): each kind within its limit, none blocked by a FIFO.

A FIFO test that regressed would hang, so each runs under a short alarm.
"""

from __future__ import annotations

import os
import signal
import threading
import time
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
@pytest.mark.parametrize("kind", sorted(set(KINDS) - {"passphrase"}))
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


# -- a passphrase from a pipe: `--passphrase-file <(pass show onionpost)` -----------------


def _write_later(path: Path, data: bytes, delay: float = 0.2) -> threading.Thread:
    def write() -> None:
        time.sleep(delay)
        try:
            with open(path, "wb") as f:
                f.write(data)
        except BrokenPipeError:
            pass  # the reader stopped at its limit

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.usefixtures("alarm")
def test_a_passphrase_fifo_is_read_until_its_writer_closes(tmp_path: Path) -> None:
    fifo = tmp_path / "pass"
    os.mkfifo(fifo, 0o600)
    writer = _write_later(fifo, b"correct horse battery staple\nignored\n")
    assert _passphrase(fifo) == "correct horse battery staple"
    writer.join()


@pytest.mark.usefixtures("alarm")
def test_a_passphrase_pipe_by_its_dev_fd_path_is_read(tmp_path: Path) -> None:
    """What a shell's process substitution hands over: /dev/fd/N, a pipe."""
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"from a pipe\n")
        os.close(write_end)
        assert _passphrase(Path(f"/dev/fd/{read_end}")) == "from a pipe"
    finally:
        os.close(read_end)


@pytest.mark.usefixtures("alarm")
def test_a_passphrase_fifo_without_a_writer_gives_up_at_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from onionpost.cli import _common

    monkeypatch.setattr(_common, "PASSPHRASE_PIPE_SECONDS", 0.5)
    fifo = tmp_path / "pass"
    os.mkfifo(fifo, 0o600)
    started = time.monotonic()
    with pytest.raises(ConfigError, match="did not write it"):
        _passphrase(fifo)
    assert time.monotonic() - started < 3


@pytest.mark.usefixtures("alarm")
def test_a_passphrase_fifo_is_bounded_and_private(tmp_path: Path) -> None:
    fifo = tmp_path / "pass"
    os.mkfifo(fifo, 0o600)
    writer = _write_later(fifo, b"x" * (limits.MAX_PASSPHRASE_FILE * 4))
    with pytest.raises(ConfigError, match="too large"):
        _passphrase(fifo)
    writer.join()
    open_fifo = tmp_path / "open"
    os.mkfifo(open_fifo, 0o600)
    open_fifo.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        _passphrase(open_fifo)
