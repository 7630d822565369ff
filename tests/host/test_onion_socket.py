"""The onion service's target: a Unix socket in the 0700 run directory (spec §1.2)."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import trio

from onionpost.errors import ConfigError
from onionpost.home import Paths
from onionpost.host import open_unix_listener
from onionpost.testing.doubles import short_tmpdir


async def _echo(stream: trio.SocketStream) -> None:
    async with stream:
        async for data in stream:
            await stream.send_all(data)


async def test_a_stale_socket_is_replaced_and_the_new_one_is_private() -> None:
    with short_tmpdir() as home:
        paths = Paths.for_home(home)
        paths.run.mkdir(mode=0o755)
        stale = socket.socket(socket.AF_UNIX)
        stale.bind(str(paths.onion_socket))  # left by a daemon that died
        stale.close()
        listener = open_unix_listener(paths)
        try:
            assert stat.S_IMODE(paths.run.stat().st_mode) == 0o700
            assert stat.S_ISSOCK(paths.onion_socket.stat().st_mode)
            assert stat.S_IMODE(paths.onion_socket.stat().st_mode) == 0o600
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, _echo, [listener])
                stream = await trio.open_unix_socket(str(paths.onion_socket))
                async with stream:
                    await stream.send_all(b"hello")
                    assert await stream.receive_some(10) == b"hello"
                nursery.cancel_scope.cancel()
        finally:
            await listener.aclose()


def test_a_home_too_long_for_a_unix_socket_is_refused(tmp_path: Path) -> None:
    home = tmp_path / ("h" * (110 - len(os.fsencode(tmp_path))))
    with pytest.raises(ConfigError, match="too long for a Unix socket"):
        open_unix_listener(Paths.for_home(home))
