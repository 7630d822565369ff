"""onionpost.testing.memory on its own: two endpoints deliver a text in memory.

Once under trio's MockClock, as the engine's tests run it, and once in a
fresh interpreter on real time with only ``src`` on the path, as a
benchmark or a fuzzer would use it: nothing of ``tests/`` is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from trio.testing import MockClock

import onionpost
from onionpost.testing import memory
from onionpost.testing.memory import befriend, network, until

SRC = Path(onionpost.__file__).resolve().parents[1]


@pytest.fixture
def clock() -> MockClock:
    return MockClock(autojump_threshold=0)


async def test_two_nodes_deliver_a_text_on_virtual_time(tmp_path: Path, clock: MockClock) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        await bob.start(nursery)
        sent = await alice.send(bob, "hello, bob")
        await until(lambda: alice.state(sent) == "delivered")
        assert [s.body for s in bob.inbox_from(alice)] == ["hello, bob"]
        assert alice.dials >= 1


def test_the_network_runs_without_the_tests_directory(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        import trio

        from onionpost.testing.memory import befriend, network, until

        async def main(root: Path) -> None:
            async with network(root) as (net, nursery):
                alice, bob = net.node("alice"), net.node("bob")
                befriend(alice, bob)
                await alice.start(nursery)
                await bob.start(nursery)
                sent = await alice.send(bob, "hello from a script")
                with trio.fail_after(60):
                    await until(lambda: alice.state(sent) == "delivered")
                print([s.body for s in bob.inbox_from(alice)][0])

        trio.run(main, Path(sys.argv[1]))
        assert not any("tests" in Path(p).parts for p in sys.path if p), sys.path
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(SRC)
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello from a script\n"


def test_the_curated_surface_is_what_it_says() -> None:
    assert sorted(memory.__all__) == sorted(
        name for name in dir(memory) if not name.startswith("_") and name != "annotations"
    )
