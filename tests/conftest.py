"""Shared pytest setup: the private Tor network and the ``tor`` marker.

Tests marked ``tor`` run against real tor processes on 127.0.0.1. Without
tor installed they are skipped, except under ``CI=true``, where they fail:
CI must never pass by quietly skipping them.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Iterator

import pytest

from onionpost.errors import TorError, TorLaunchError
from onionpost.testing.endpoint import Endpoint
from onionpost.testing.testnet import Testnet, down, load, log_tails, missing_tools, up

TOR_MISSING = "tor is not installed: run `apt-get install -y tor`"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not missing_tools() or _in_ci():
        return
    skip = pytest.mark.skip(reason=TOR_MISSING)
    for item in items:
        if item.get_closest_marker("tor") is not None:
            item.add_marker(skip)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("tor") is None or not _in_ci():
        return
    missing = missing_tools()
    if missing:
        names = ", ".join(str(path) for path in missing)
        pytest.fail(f"{TOR_MISSING} (missing {names}; CI=true forbids skipping)", pytrace=False)


@pytest.fixture(scope="session")
def testnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testnet]:
    """One private Tor network for the whole run: 3 authorities, 2 relays, 2 clients."""
    directory = tmp_path_factory.mktemp("testnet")
    try:
        # owner_pid: if this run is killed, every tor exits within ~15 s.
        net = up(directory, owner_pid=os.getpid())
    except TorLaunchError as exc:
        try:
            tails = log_tails(load(directory))
        except TorError:
            tails = "(no node was started)"
        pytest.fail(f"the private Tor network did not come up: {exc}\n\n{tails}", pytrace=False)
    try:
        yield net
    finally:
        down(directory)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    # Every node's notice.log explains nearly every failure on the network.
    report = yield
    args = getattr(item, "funcargs", {})
    net = args.get("testnet")
    if report.failed and isinstance(net, Testnet):
        report.sections.append(("tor notice.log tails", log_tails(net)))
    if report.failed:
        # And the daemons' own logs (ids, handles and states; never contents
        # or keys): what each endpoint did while the test waited.
        tails = [_daemon_tail(e) for e in _endpoints(args.values())]
        if tails:
            report.sections.append(("daemon log tails", "\n".join(tails)))
    return report


def _endpoints(values: Iterable[object]) -> list[Endpoint]:
    """The Endpoints among a test's fixtures, and one level inside them (a pair)."""
    found: list[Endpoint] = []
    for value in values:
        inner = [value, *vars(value).values()] if hasattr(value, "__dict__") else [value]
        found.extend(v for v in inner if isinstance(v, Endpoint) and v not in found)
    return found


def _daemon_tail(endpoint: Endpoint, lines: int = 60) -> str:
    try:
        text = endpoint.log.read_text(errors="replace").splitlines()[-lines:]
    except OSError as exc:
        return f"== {endpoint.name}: no daemon log ({exc.strerror})"
    return f"== {endpoint.name}: last lines of {endpoint.log}:\n" + "\n".join(text) + "\n"
