"""Small files read whole: bounded, and never blocked by a FIFO.

Card files, key files, passphrase files, ``config.toml`` and the sealed
secrets file are all read by :func:`read_small_file`, each kind with its
bound from :mod:`onionpost.limits`.

Theory of operation
-------------------
Opening a FIFO for reading blocks until some process opens it for writing,
so a path that names one (given by mistake, or planted where a file was
expected) would hang the command for good. The file is therefore opened with
``O_NONBLOCK``, which returns at once whatever the file is; ``fstat`` on the
open descriptor (not on the path, which could be swapped meanwhile) then
refuses anything that is not a regular file: a FIFO, a socket, a device, a
directory. At most ``limit + 1`` bytes are read, so a file over its limit is
refused without being read whole. ``O_NONBLOCK`` changes nothing for a
regular file's reads.

A passphrase may come from a pipe (``--passphrase-file <(pass show x)``,
whose path is ``/dev/fd/N``) or a FIFO: a caller that gives ``pipe_seconds``
accepts those too, under the same bound and the same private rules (a FIFO
readable by others is refused), read until the writer closes it. The
descriptor stays non-blocking and every wait is a ``poll`` against that
deadline, so a FIFO nobody writes to fails after ``pipe_seconds`` instead of
hanging. (Linux reports no hang-up on a FIFO that never had a writer, so the
poll waits for the first one.) The ``/dev/fd/N`` link itself is followed
only for the process's own descriptors; any other symlink stays refused.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import time
from pathlib import Path
from typing import Literal, overload

from onionpost.errors import ConfigError, OnionpostError

__all__ = ["read_small_file"]


@overload
def read_small_file(
    path: Path,
    limit: int,
    *,
    what: str,
    error: type[OnionpostError] = ...,
    private: bool = ...,
    missing_ok: Literal[False] = ...,
    pipe_seconds: float | None = ...,
) -> bytes: ...


@overload
def read_small_file(
    path: Path,
    limit: int,
    *,
    what: str,
    error: type[OnionpostError] = ...,
    private: bool = ...,
    missing_ok: Literal[True],
    pipe_seconds: float | None = ...,
) -> bytes | None: ...


def read_small_file(
    path: Path,
    limit: int,
    *,
    what: str,
    error: type[OnionpostError] = ConfigError,
    private: bool = False,
    missing_ok: bool = False,
    pipe_seconds: float | None = None,
) -> bytes | None:
    """The whole content of the regular file ``path``, at most ``limit`` bytes.

    ``what`` names the kind of file in messages ("card file"); every failure
    raises ``error`` (a subclass of :class:`~onionpost.errors.OnionpostError`)
    with ``raise ... from``. ``private`` (key files): a symbolic link is
    refused, and so is a file that another user owns or that group or others
    may access. ``missing_ok``: a file that does not exist gives ``None``.
    ``pipe_seconds``: a pipe or FIFO is read too, for at most that long (see
    the module docstring).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if private else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        if missing_ok:
            return None
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    except OSError as exc:
        if not (exc.errno == errno.ELOOP and pipe_seconds is not None and _own_fd_link(path)):
            raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
        fd = _open_fd_link(path, flags & ~os.O_NOFOLLOW, what, error)
    try:
        info = os.fstat(fd)
        piped = pipe_seconds is not None and stat.S_ISFIFO(info.st_mode)
        if not stat.S_ISREG(info.st_mode) and not piped:
            raise error(f"{what} {path} is not a regular file")
        if private:
            _check_private(path, info, what, error)
        if piped:
            assert pipe_seconds is not None
            chunks, size = _read_pipe(fd, limit, pipe_seconds, f"{what} {path}", error)
        else:
            chunks, size = _read_regular(fd, limit)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if size > limit:
        raise error(f"{what} {path} is too large (over {limit} bytes)")
    return b"".join(chunks)


def _read_regular(fd: int, limit: int) -> tuple[list[bytes], int]:
    chunks: list[bytes] = []
    size = 0
    # Bounded: each read returns at least one byte until the end of the file.
    while size <= limit:
        chunk = os.read(fd, limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return chunks, size


def _read_pipe(
    fd: int, limit: int, seconds: float, name: str, error: type[OnionpostError]
) -> tuple[list[bytes], int]:
    """At most ``limit + 1`` bytes from a non-blocking pipe, until its writer
    closes it, within ``seconds``."""
    deadline = time.monotonic() + seconds
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(max(1, int(left * 1000))):
            raise error(f"{name}: its writer did not write it and close it within {seconds:g} s")
        try:
            chunk = os.read(fd, limit + 1 - size)
        except BlockingIOError:
            continue
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return chunks, size


def _own_fd_link(path: Path) -> bool:
    """Whether ``path`` names one of this process's descriptors (/dev/fd/N)."""
    parent = os.path.realpath(path.parent)
    return parent in ("/proc/self/fd", f"/proc/{os.getpid()}/fd") and path.name.isdigit()


def _open_fd_link(path: Path, flags: int, what: str, error: type[OnionpostError]) -> int:
    try:
        return os.open(path, flags)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc


def _check_private(
    path: Path, info: os.stat_result, what: str, error: type[OnionpostError]
) -> None:
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise error(
            f"{what} {path} is accessible to group or others (mode {mode:04o}); "
            f"restrict it with: chmod 600 {path}"
        )
    if info.st_uid != os.getuid():
        raise error(f"{what} {path} belongs to another user (uid {info.st_uid})")
