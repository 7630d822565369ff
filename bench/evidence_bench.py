"""What the evidence log (protocol-spec/evidence.md) costs, and how fast a
bundle verifies.

``evidence_log_overhead``
    Durable texts per second through the store's public API, each text's
    whole life at the sender: queued 20 to a durable commit (as the engine's
    group commit and ``send_texts`` queue them), then marked sent and
    delivered as an Ack moves them. ``ours`` with the log, ``peer`` the same
    store with the log's appends switched off in this process, interleaved
    rounds. Goal: ratio >= 0.95.
``evidence_log_overhead_daemons``
    The same question through the whole pipeline: two daemons of
    ``onionpost.testing.memory`` (in-memory pipes, real stores, real Noise
    sessions), 4 callers queue 2,000 texts at alice, timed until alice holds
    every one delivered (bob stored each and its acknowledgement came back).
    Both ends keep their logs, or neither does.
``evidence_log_overhead_single``
    The same, each text queued in a durable commit of its own (the worst
    case: the log's page is one more page written and bound per commit).
``evidence_log_bytes_per_message``
    The log's size (entries' bytes) over the texts it recorded. Goal: < 1 KB.
``verify_export_10k_s``
    ``verify-export`` of a bundle of 10,000 texts, each with its entries and
    inclusion proofs: ``ours`` the whole check, ``peer`` reading and parsing
    the same bundle.json alone (what any reader of it pays). Goal: < 10 s.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import trio

from bench._common import SMOKE, compare, fact, line, scaled
from onionpost import api
from onionpost.daemon import _evidence
from onionpost.daemon.delivery import Witness
from onionpost.proto import bundle
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity
from onionpost.proto.labels import LabelPolicy
from onionpost.store import Store
from onionpost.store._evidence import EvidenceLog
from onionpost.testing.memory import Node, befriend, network

TEXTS = 40 if SMOKE else 600  # a multiple of the 20 texts a commit
GROUP = scaled(100)
EXPORT_TEXTS = scaled(10_000)
PAIR_TEXTS = scaled(2_000)
CALLERS = 4
KEY = bytes(range(32))


@contextmanager
def _store(root: Path) -> Iterator[tuple[Store, int]]:
    with Store.open(root / "store.sqlite", root / "files", KEY) as store:
        bob = store.contacts.add_contact("bob", OnionAddress(os.urandom(32)), os.urandom(32), 1)
        yield store, bob.id


def _lifecycle(root: Path, *, log: bool, per_commit: int = 20) -> float:
    original = EvidenceLog.append
    if not log:
        EvidenceLog.append = lambda self, entries: None  # type: ignore[method-assign,assignment]
    try:
        with tempfile.TemporaryDirectory(dir=root) as scratch, _store(Path(scratch)) as (s, bob):
            start = time.perf_counter()
            for first in range(0, TEXTS, per_commit):
                ids = [os.urandom(16) for _ in range(per_commit)]
                with s.transaction():
                    for n, message_id in enumerate(ids, first):
                        s.outbox.queue_text(bob, message_id, n, "x" * 200, "text/plain", None)
                s.outbox.mark_sent(ids, first, contact_id=bob)
                s.outbox.mark_delivered(ids, first, contact_id=bob)
            return TEXTS / (time.perf_counter() - start)
    finally:
        EvidenceLog.append = original  # type: ignore[method-assign]


@contextmanager
def _log_switched(on: bool) -> Iterator[None]:
    original = EvidenceLog.append
    if not on:
        EvidenceLog.append = lambda self, entries: None  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        EvidenceLog.append = original  # type: ignore[method-assign]


async def _deliver(alice: Node, bob: Node, count: int) -> None:
    last: list[bytes] = []

    async def caller(share: int) -> None:
        message_id = b""
        for _ in range(share):
            message_id = await alice.send(bob, "x" * 200)
        last.append(message_id)

    async with trio.open_nursery() as nursery:
        for share in (count // CALLERS + (i < count % CALLERS) for i in range(CALLERS)):
            nursery.start_soon(caller, share)
    with trio.fail_after(300):
        while not all(alice.state(i) == "delivered" for i in last):  # noqa: ASYNC110
            await trio.sleep(0.01)


def _daemons(root: Path, *, log: bool) -> float:
    async def pair() -> float:
        with tempfile.TemporaryDirectory(dir=root) as scratch:
            async with network(Path(scratch)) as (net, nursery):
                alice, bob = net.node("alice"), net.node("bob")
                befriend(alice, bob)
                for node in (alice, bob):
                    await node.start(nursery)
                await _deliver(alice, bob, CALLERS)  # the session is up
                start = time.perf_counter()
                await _deliver(alice, bob, PAIR_TEXTS)
                took = time.perf_counter() - start
                assert len(bob.inbox_from(alice)) == PAIR_TEXTS + CALLERS
                return PAIR_TEXTS / took

    with _log_switched(log):
        return trio.run(pair)


def _log_bytes(root: Path) -> float:
    with tempfile.TemporaryDirectory(dir=root) as scratch, _store(Path(scratch)) as (s, bob):
        ids = [os.urandom(16) for _ in range(GROUP)]
        with s.transaction():
            for n, message_id in enumerate(ids):
                s.outbox.queue_text(bob, message_id, n, "x" * 200, "text/plain", None)
        s.outbox.mark_sent(ids, 1, contact_id=bob)
        s.outbox.mark_delivered(ids, 2, contact_id=bob)
        s.messages.mark_read(ids, 3, contact_id=bob)
        total = sum(len(data) for _i, data in s.evidence.entries(0, 10 * GROUP))
        return total / GROUP


def _verify_export(root: Path) -> tuple[float, float]:
    witness = Witness(Identity(bytes(range(1, 33))))
    with tempfile.TemporaryDirectory(dir=root) as scratch, _store(Path(scratch)) as (s, bob):
        with s.transaction():
            for n in range(EXPORT_TEXTS):
                s.outbox.queue_text(bob, os.urandom(16), n, f"text {n}", "text/plain", None)
        out = Path(scratch) / "case.zip"
        request = api.EvidenceExport(str(out))
        _evidence.export(s, witness, LabelPolicy.build(), request, None, [], 10**12)

        def ours() -> float:
            start = time.perf_counter()
            with zipfile.ZipFile(out) as archive:
                report = bundle.verify(archive)
            assert report.ok, report.problems[:3]
            assert report.messages == EXPORT_TEXTS
            return time.perf_counter() - start

        def peer() -> float:
            start = time.perf_counter()
            with zipfile.ZipFile(out) as archive:
                document: Any = json.loads(archive.read(bundle.BUNDLE_NAME))
            assert len(document["messages"]) == EXPORT_TEXTS
            return time.perf_counter() - start

        return compare(ours, peer, rounds=3)


def run() -> list[str]:
    with tempfile.TemporaryDirectory(prefix="op-evidence-bench-") as scratch:
        root = Path(scratch)
        ours, peer = compare(
            lambda: _lifecycle(root, log=True), lambda: _lifecycle(root, log=False), rounds=5
        )
        daemons, daemons_peer = compare(
            lambda: _daemons(root, log=True), lambda: _daemons(root, log=False), rounds=5
        )
        single, single_peer = compare(
            lambda: _lifecycle(root, log=True, per_commit=1),
            lambda: _lifecycle(root, log=False, per_commit=1),
            rounds=5,
        )
        size = _log_bytes(root)
        verify, parse = _verify_export(root)
    return [
        line("evidence_log_overhead", ours, peer, "/s"),
        line("evidence_log_overhead_daemons", daemons, daemons_peer, "/s"),
        line("evidence_log_overhead_single", single, single_peer, "/s"),
        fact("evidence_log_bytes_per_message", size, " B"),
        f"verify_export_10k_s: ours={verify:.2f}s peer={parse:.2f}s ratio={verify / parse:.1f}",
    ]


if __name__ == "__main__":
    for result in run():
        print(result)
