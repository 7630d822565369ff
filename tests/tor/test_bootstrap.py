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
