"""The short forms of ``make chaos`` and ``make soak``, on their own private Tor network.

``onionpost.testing.chaos``: three endpoints and a mailbox, every one a
contact of every other, under a minute of traffic and a seeded schedule of
faults (kill -9 of a daemon, of its tor, of both; SIGTERM; SIGSTOP then
SIGCONT; kill -9 of the mailbox; a relay restarted; a full disk; one
endpoint's wall clock hours off), then quiescence and the checks of the
history. ``onionpost.testing.soak``: two endpoints and a mailbox under a
minute of steady traffic, one of them away and back, sampled for growth.

Both run on a network of their own (the chaos run restarts a relay, which
must not disturb the other tests' network). The seed is printed; a failure
is replayed with ``ONIONPOST_CHAOS_SEED=<seed> python -m onionpost.testing.chaos
--short``. Every violation found is in the assertion's message.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from onionpost.testing import chaos, soak
from onionpost.testing.testnet import Testnet

pytestmark = [pytest.mark.tor, pytest.mark.chaos, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def network() -> Iterator[tuple[Path, Testnet]]:
    """The network; its directory is removed if every run here passed (each removes
    its homes then), and kept with the logs otherwise."""
    with chaos.network("op-chaos-test-") as (root, net):
        yield root, net
    if not [p for p in root.iterdir() if p.name != "net"]:
        shutil.rmtree(root, ignore_errors=True)


def _seed() -> int:
    return chaos.seed_from_env()


def test_a_minute_of_bad_luck_loses_and_doubles_nothing(network: tuple[Path, Testnet]) -> None:
    root, net = network
    home = root / "chaos"
    home.mkdir()
    report = chaos.run(chaos.ChaosOptions.short(_seed()), net, home)
    assert report.ok, "\n".join(
        [f"seed {report.seed} ({chaos.SEED_ENV}={report.seed} replays it)", *report.violations]
    )
    shutil.rmtree(home)


def test_a_minute_of_steady_traffic_does_not_grow(network: tuple[Path, Testnet]) -> None:
    root, net = network
    home = root / "soak"
    home.mkdir()
    seconds = os.environ.get(soak.SECONDS_ENV, "").strip()
    options = soak.SoakOptions.short(_seed())
    if seconds:
        options = soak.SoakOptions.short(_seed(), seconds=float(seconds))
    report = soak.run(options, net, home)
    assert report.ok, "\n".join([f"seed {report.seed}", *report.violations])
    shutil.rmtree(home)
