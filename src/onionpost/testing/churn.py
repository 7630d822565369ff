"""Workstations that come and go, on the private Tor network: played and measured.

Each scenario runs real ``onionpost daemon`` processes, each with its own
tor (:class:`~onionpost.testing.endpoint.Endpoint`, with the product's retry
defaults, not the harness's short ones), queues texts while a contact is
away, brings it back and measures how long the texts then take to be in the
contact's store. Every scenario checks that each text arrived exactly once.
The end-to-end test (``tests/daemon/test_churn_tor.py``) plays a short form,
``make bench`` the full one (``bench/churn_bench.py``).

What "back" means: the later of the two daemons has said ``daemon ready``
(its tor bootstrapped, its onion service published); the clock stops when
the receiver's store holds the text (``onionpost.client``'s ``message``).

Absences are real time: what tor does with a descriptor or a circuit
depends on it, so they are waits of the given length, not conditions.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from onionpost.client import open_client
from onionpost.errors import ApiError, OnionpostError
from onionpost.testing.endpoint import Endpoint, start_all
from onionpost.testing.testnet import Testnet, restart_node

__all__ = [
    "DELIVERY_SECONDS",
    "ChurnError",
    "Pair",
    "both_away",
    "contact_away",
    "percentile",
    "relays_restart",
    "tor_dies",
]

#: A text must be in the receiver's store within this, or the scenario fails.
DELIVERY_SECONDS: Final = 300.0
_POLL: Final = 0.1
TEXTS_PER_ROUND: Final = 3


class ChurnError(AssertionError):
    """A scenario's text did not arrive, or arrived more than once."""


@dataclass
class Pair:
    """Two endpoints that are each other's contact, both running."""

    sender: Endpoint
    receiver: Endpoint

    @classmethod
    def start(cls, root: Path, net: Testnet, names: tuple[str, str] = ("alice", "bob")) -> Pair:
        sender = Endpoint(root, names[0], net, top_config="")
        receiver = Endpoint(root, names[1], net, top_config="")
        start_all([sender, receiver])
        sender.cli("contact", "add", receiver.json("whoami")["card"])
        receiver.cli("contact", "add", sender.json("whoami")["card"])
        pair = cls(sender, receiver)
        pair.wait_received(pair.queue(1))  # both ways work before any churn
        return pair

    def stop(self) -> None:
        self.sender.stop()
        self.receiver.stop()

    def queue(self, count: int = TEXTS_PER_ROUND) -> list[str]:
        """Queue texts at the sender (running or not: it is a store write)."""
        if self.sender.process is None:
            raise ChurnError("the sender must be running to queue")
        return [
            self.sender.json("send", self.receiver.name, f"churn {time.time_ns()} {i}")["id"]
            for i in range(count)
        ]

    def wait_received(self, ids: Sequence[str], seconds: float = DELIVERY_SECONDS) -> float:
        """Seconds until every text is in the receiver's store, each exactly once."""
        start = time.monotonic()
        deadline = start + seconds
        while not all(_stored(self.receiver.home, i) for i in ids):
            if time.monotonic() > deadline:
                raise ChurnError(f"texts not delivered within {seconds:.0f} s: {ids}")
            time.sleep(_POLL)
        took = time.monotonic() - start
        counts = Counter(m["id"] for m in self.receiver.inbox())
        doubled = [i for i in ids if counts[i] != 1]
        if doubled:
            raise ChurnError(f"texts stored more than once: {doubled}")
        return took


def _stored(home: Path, message_id: str) -> bool:
    async def ask() -> bool:
        try:
            async with open_client(home) as client:
                return (await client.message(message_id)).direction == "in"
        except ApiError:
            return False  # not-found: not yet
        except OnionpostError:
            return False  # the daemon is not (yet) answering

    return trio.run(ask)


def _away(seconds: float) -> None:
    time.sleep(seconds)  # the absence itself (module docstring)


def contact_away(pair: Pair, seconds: float, *, crash: bool = False) -> float:
    """The receiver's daemon stops (SIGTERM, or kill -9 of it and its tor with
    ``crash``) for ``seconds`` while texts are queued for it, then comes back.
    Returns the seconds from its being ready to the texts in its store."""
    if crash:
        pair.receiver.kill()
    else:
        pair.receiver.stop()
    ids = pair.queue()
    _away(seconds)
    pair.receiver.start()
    return pair.wait_received(ids)


def both_away(pair: Pair, seconds: float) -> float:
    """The receiver goes; the sender queues and goes; the receiver comes back,
    then the sender, ``seconds`` apart. Measured from the sender's return."""
    pair.receiver.stop()
    ids = pair.queue()
    pair.sender.stop()
    _away(seconds)
    pair.receiver.start()
    _away(seconds)
    pair.sender.start()
    return pair.wait_received(ids)


def _tor_of(daemon_pid: int) -> int:
    """The pid of the tor a daemon launched (its child)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == daemon_pid and comm == "tor":
            return int(entry.name)
    raise ChurnError(f"no tor under the daemon {daemon_pid}")


def tor_dies(pair: Pair) -> float:
    """kill -9 of the receiver's tor alone, under its running daemon; a text
    is sent right then. Returns the seconds from the kill to the text in the
    receiver's store (the daemon restores its tor by itself)."""
    process = pair.receiver.process
    if process is None:
        raise ChurnError("the receiver must be running")
    os.kill(_tor_of(process.pid), signal.SIGKILL)
    start = time.monotonic()
    ids = pair.queue(1)
    pair.wait_received(ids)
    return time.monotonic() - start


def relays_restart(
    pair: Pair, net: Testnet, *, down_seconds: float = 2.0, on_restart: Callable[[Testnet], None]
) -> list[float]:
    """Each relay of the network restarted in turn while texts flow; returns
    how long each round's texts took. ``on_restart`` gets the network with the
    relay's new pid (the caller's record of it must follow)."""
    took = []
    relays = [node.nickname for node in net.servers() if node.role == "relay"]
    for nickname in relays:
        ids = pair.queue()
        net = restart_node(net, nickname, down_seconds=down_seconds)
        on_restart(net)
        took.append(pair.wait_received(ids))
    return took


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[rank]
