"""The foreground services (daemon, mailbox serve, registrar serve) stop at
SIGTERM or SIGINT at any time: also while they start, which for an endpoint
means while its tor bootstraps (minutes, at worst)."""

from __future__ import annotations

import logging
import os
import signal

import pytest
import trio

from onionpost.cli._common import run_until_signal

pytestmark = pytest.mark.trio

log = logging.getLogger("test")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_while_starting_stops_it(
    signum: signal.Signals, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="test")
    began = trio.Event()
    ended: list[str] = []

    async def never_ready(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        began.set()
        try:
            await trio.sleep_forever()  # as a tor that does not bootstrap
        finally:
            ended.append("cleaned up")

    async def send_signal() -> None:
        await began.wait()
        os.kill(os.getpid(), signum)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_signal)
            await run_until_signal(never_ready, "test", log)
    assert ended == ["cleaned up"]
    assert f"event=stopping signal={signum.name}" in caplog.text
    assert "ready" not in capsys.readouterr().err


async def test_a_signal_once_ready_stops_it(capsys: pytest.CaptureFixture[str]) -> None:
    ended: list[str] = []

    async def ready(task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started("abc.onion")
        try:
            await trio.sleep_forever()
        finally:
            ended.append("cleaned up")

    async def send_signal() -> None:
        with trio.fail_after(10):
            while "ready" not in capsys.readouterr().err:
                await trio.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send_signal)
            await run_until_signal(ready, "test", log)
    assert ended == ["cleaned up"]
