"""A team channel's text reaching every member, on the private Tor network.

``group_delivery_s p50= p95=``
    One text sent to a group of ``ONIONPOST_BENCH_GROUP_SIZE`` real
    endpoints (default 5: the author and 4 others, each a daemon with its
    own tor, all each other's contacts): the seconds from the send's call to
    the last member's store holding it (that store's receipt time, so
    polling adds nothing). Goal: p95 <= 5 s.
``one_to_one_delivery_s p50= p95=``
    Its peer, interleaved in the same run: the same text sent by the same
    author to each of the same members as a contact, one send each.

Sessions are up before the first round (a warm-up send of each kind), so
this measures the fan-out, not circuit building. Every text is checked to
arrive exactly once at each member. Everything runs on 127.0.0.1.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

from onionpost.testing import churn
from onionpost.testing.team import Team
from onionpost.testing.testnet import private_network

ROUNDS = 10
GROUP = "bench"


def _group_round(team: Team, author: str, others: list[str]) -> float:
    start_ms = time.time() * 1000
    body = team.send(author, GROUP)
    return (team.wait_received(body, others) - start_ms) / 1000


def _one_to_one_round(team: Team, author: str, others: list[str]) -> float:
    start_ms = time.time() * 1000
    body = team.send_one_to_one(author, others)
    return (team.wait_received(body, others) - start_ms) / 1000


def _line(name: str, samples: list[float]) -> str:
    p50 = churn.percentile(samples, 0.5)
    p95 = churn.percentile(samples, 0.95)
    return f"{name} p50={p50:.2f}s p95={p95:.2f}s (n={len(samples)}, max={max(samples):.2f}s)"


def run() -> Iterator[str]:
    size = max(5, int(os.environ.get("ONIONPOST_BENCH_GROUP_SIZE", "5")))
    names = [f"m{n}" for n in range(size)]
    with private_network("onionpost-bench-team-") as (root, net, _):
        team = Team.start(root, net, names)
        try:
            author, others = names[0], names[1:]
            team.create(GROUP, author)
            team.wait_members(GROUP, names)
            _group_round(team, author, others)  # warm-up: every session up
            _one_to_one_round(team, author, others)
            group: list[float] = []
            one_to_one: list[float] = []
            for n in range(ROUNDS):
                # Alternate which goes first: the machine is shared and noisy.
                if n % 2 == 0:
                    group.append(_group_round(team, author, others))
                    one_to_one.append(_one_to_one_round(team, author, others))
                else:
                    one_to_one.append(_one_to_one_round(team, author, others))
                    group.append(_group_round(team, author, others))
            yield _line(f"group_delivery_s ({size} endpoints)", group)
            yield _line(f"one_to_one_delivery_s ({size - 1} sends)", one_to_one)
        finally:
            team.stop()


if __name__ == "__main__":
    for result in run():
        print(result, flush=True)
