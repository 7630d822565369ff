"""A tor that does not bootstrap: the error says how far it got, and, for a
home whose [tor.options] name their own DirAuthority lines (a private
network), that those authorities may be gone."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from onionpost.errors import TorLaunchError
from onionpost.tor import TorConfig, _tor
from onionpost.tor._tor import Tor

pytestmark = pytest.mark.trio


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)  # the two minutes of polls, at once


class _Stuck:
    """A control connection to a tor stuck at 5 %."""

    async def get_info(self, key: str) -> str:
        assert key == "status/bootstrap-phase"
        return 'NOTICE BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay"'


def _tor_with(tmp_path: Path, **options: str) -> Tor:
    config = TorConfig(data_dir=tmp_path / "tor", extra_options=options)
    send, receive = trio.open_memory_channel[object](1)
    raw, _ = trio.open_memory_channel[object](1)
    return Tor(config, raw, send, receive)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "hint"),
    [({}, False), ({"DirAuthority": "auth0 127.0.0.1:7000 abcd"}, True)],
)
async def test_a_tor_that_does_not_bootstrap_says_why_it_may_not(
    tmp_path: Path, clock: MockClock, options: dict[str, str], hint: bool
) -> None:
    tor = _tor_with(tmp_path, **options)
    with pytest.raises(TorLaunchError) as caught:
        await tor._await_bootstrap(_Stuck())  # type: ignore[arg-type]
    said = str(caught.value)
    assert said.startswith(f"tor did not bootstrap within {_tor.BOOTSTRAP_MAX_SECONDS:.0f} s (5 %)")
    assert ("DirAuthority" in said) is hint
    assert ("set up again since" in said) is hint


class _Warned:
    """A control connection to a tor stuck at 5 % that says why."""

    async def get_info(self, key: str) -> str:
        assert key == "status/bootstrap-phase"
        return (
            'WARN BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay" '
            'WARNING="Connection refused" REASON=CONNECTREFUSED COUNT=39'
        )


async def test_the_log_says_how_far_tor_got_while_it_waits(
    tmp_path: Path, clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A sysadmin reading the journal sees why the daemon is not ready yet,
    every BOOTSTRAP_LOG_SECONDS, not one 'starting' line for two minutes."""
    caplog.set_level("INFO", logger="onionpost")
    tor = _tor_with(tmp_path)
    with pytest.raises(TorLaunchError):
        await tor._await_bootstrap(_Warned())  # type: ignore[arg-type]
    said = [r.getMessage() for r in caplog.records if "tor_bootstrapping" in r.getMessage()]
    expected = int(_tor.BOOTSTRAP_MAX_SECONDS / _tor.BOOTSTRAP_LOG_SECONDS) - 1
    assert len(said) in (expected, expected + 1)
    assert said[0] == (
        'event=tor_bootstrapping progress=5 summary="Connecting to a relay" '
        'warning="Connection refused"'
    )
