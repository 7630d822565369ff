"""What the binding (storage.md §5.4) costs: opening the store, and a commit.

Side by side, each in its own process on the same disk: ``ours``, the store
of this tree, against ``peer``, the same store without the binding (the
tree at ``ONIONPOST_BENCH_STORE_BASE``, default the last commit before it,
taken with ``git archive``). Both run the same workload through the public
``Store`` API only:

``store_open_ms``
    Opening (and closing) a closed store of ``MESSAGES`` texts of 300
    characters, median of the rounds.
``store_commit_us``
    One queued text, its own durable commit (``synchronous=FULL``: the fsync
    of the WAL, and with the binding the ``fdatasync`` of its record), mean
    over ``COMMITS``.
``store_batch_us``
    The same texts queued 100 to a transaction, per text: the binding's
    share without its fsync.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from bench._common import line

MESSAGES = 4000
COMMITS = 200
ROUNDS = 5
_BASE = os.environ.get("ONIONPOST_BENCH_STORE_BASE", "8e38a12")
_ROOT = Path(__file__).resolve().parents[1]

_WORKLOAD = """
import json, os, sys, time, tempfile
from pathlib import Path
from onionpost.proto.address import OnionAddress
from onionpost.store import Store
messages, commits = int(sys.argv[1]), int(sys.argv[2])
key = bytes(range(32))
with tempfile.TemporaryDirectory(dir=sys.argv[3]) as scratch:
    root = Path(scratch)
    def open_store():
        return Store.open(root / "store.sqlite", root / "files", key)
    def part(store, name):
        # This tree's store is composed of parts (store.outbox); an older one
        # is one object whose outbox() and contacts() are methods.
        found = getattr(store, name)
        return store if callable(found) else found
    with open_store() as store:
        queue = part(store, "outbox").queue_text
        bob = part(store, "contacts").add_contact(
            "bob", OnionAddress(os.urandom(32)), os.urandom(32), 1)
        for start in range(0, messages, 100):
            with store.transaction():
                for n in range(100):
                    queue(bob.id, os.urandom(16), n, "m" * 300, "text/plain", None)
    opens = []
    for _ in range(5):
        t = time.perf_counter()
        open_store().close()
        opens.append(time.perf_counter() - t)
    with open_store() as store:
        queue = part(store, "outbox").queue_text
        t = time.perf_counter()
        for n in range(commits):
            queue(bob.id, os.urandom(16), n, "m" * 300, "text/plain", None)
        single = (time.perf_counter() - t) / commits
        t = time.perf_counter()
        for _ in range(commits // 100 or 1):
            with store.transaction():
                for n in range(100):
                    queue(bob.id, os.urandom(16), n, "m" * 300, "text/plain", None)
        batch = (time.perf_counter() - t) / (100 * (commits // 100 or 1))
    print(json.dumps({"open": sorted(opens)[2], "commit": single, "batch": batch}))
"""


def _baseline(into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(_ROOT), "archive", _BASE, "src/onionpost"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def _measure(src: Path, scratch: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _WORKLOAD, str(MESSAGES), str(COMMITS), str(scratch)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    ).stdout
    result: dict[str, float] = json.loads(out)
    return result


def run() -> list[str]:
    with tempfile.TemporaryDirectory(dir=_ROOT) as scratch:
        base = _baseline(Path(scratch) / "base")
        ours: list[dict[str, float]] = []
        peer: list[dict[str, float]] = []
        for i in range(ROUNDS):  # interleaved, alternating which goes first
            pair = [(ours, _ROOT / "src"), (peer, base)]
            for results, src in pair if i % 2 == 0 else reversed(pair):
                results.append(_measure(src, Path(scratch)))

    def med(results: list[dict[str, float]], what: str, scale: float) -> float:
        return statistics.median(r[what] for r in results) * scale

    return [
        line("store_open_ms", med(ours, "open", 1e3), med(peer, "open", 1e3)),
        line("store_commit_us", med(ours, "commit", 1e6), med(peer, "commit", 1e6)),
        line("store_batch_us", med(ours, "batch", 1e6), med(peer, "batch", 1e6)),
    ]


if __name__ == "__main__":
    for result in run():
        print(result)
