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
"""

from __future__ import annotations

import os
import stat
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
) -> bytes | None: ...


def read_small_file(
    path: Path,
    limit: int,
    *,
    what: str,
    error: type[OnionpostError] = ConfigError,
    private: bool = False,
    missing_ok: bool = False,
) -> bytes | None:
    """The whole content of the regular file ``path``, at most ``limit`` bytes.

    ``what`` names the kind of file in messages ("card file"); every failure
    raises ``error`` (a subclass of :class:`~onionpost.errors.OnionpostError`)
    with ``raise ... from``. ``private`` (key files): a symbolic link is
    refused, and so is a file that another user owns or that group or others
    may access. ``missing_ok``: a file that does not exist gives ``None``.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_NOFOLLOW if private else 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        if missing_ok:
            return None
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{what} {path} is not a regular file")
        if private:
            _check_private(path, info, what, error)
        chunks: list[bytes] = []
        size = 0
        # Bounded: each read returns at least one byte until the end of the file.
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror}") from exc
    finally:
        os.close(fd)
    if size > limit:
        raise error(f"{what} {path} is too large (over {limit} bytes)")
    return b"".join(chunks)


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
