"""What a group's membership log (protocol-spec/groups.md) and a send to a
distribution list (local-api.md §6) cost.

``group_add_on_top_ms``
    Checking and adding one operation made on all the log's heads (the
    common case: its author had everything), at about 1000 operations, signing
    excluded. Goal: < 5 ms.
``group_add_merge_ms``
    The same for an operation made on older heads (a concurrent branch):
    the state at its parents and the whole log are replayed. Goal: < 50 ms.
``group_fetch_64_ms``
    Answering a fetch from the log's first operation: the 64 operations
    next in the replay order, at about 1000 operations.
``list_send_256_ms``
    Queueing one text to a list of 256 contacts (a copy each and the send's
    record, one durable commit) in a store in a temporary directory.
``group_fanout_enqueue_50_s``
    An author queueing one text to a team channel of 50 other members (a
    copy each at the log's head and the send's record, one durable commit).
    Goal: <= 0.1 s.
``one_to_one_enqueue_50_s``
    The same text queued to the same 50 contacts one by one (50 durable
    commits), in the same run, for comparison.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench._common import fact, scaled
from onionpost.limits import MAX_LIST_MEMBERS
from onionpost.proto.address import OnionAddress
from onionpost.proto.groups import GroupLog, MemberCard, Operation, OpKind, sign_operation
from onionpost.proto.identity import Identity
from onionpost.store import Store

OPS = scaled(960)  # with the samples, just under MAX_GROUP_LOG_OPS
SAMPLES = scaled(30)
KEY = bytes(range(32))
GROUP_ID = bytes(16)
BOB = Identity(bytes([1]) * 32)


def _log() -> tuple[GroupLog, list[Operation]]:
    """alice creates a group, adds bob as an admin, and renames it OPS times."""
    alice = Identity(bytes(32))
    card = MemberCard(alice.public_key, bytes(32), "alice")
    create = sign_operation(alice, GROUP_ID, 1, (), 0, OpKind.CREATE, name="bench", card=card)
    log = GroupLog(create)
    ops = [create]
    bob_card = MemberCard(BOB.public_key, bytes(32), "bob")
    for seq in range(2, OPS + 1):
        if seq == 2:
            args: dict[str, object] = {"kind": OpKind.ADD, "card": bob_card}
        elif seq == 3:
            args = {"kind": OpKind.PROMOTE, "target": BOB.public_key}
        else:
            args = {"kind": OpKind.RENAME, "name": f"n{seq}"}
        op = sign_operation(alice, GROUP_ID, seq, log.heads, seq, **args)  # type: ignore[arg-type]
        log.add(op)
        ops.append(op)
    return log, ops


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def _group() -> Iterator[str]:
    log, ops = _log()
    alice = Identity(bytes(32))
    on_top = []
    seq = OPS
    for n in range(SAMPLES):
        seq += 1
        op = sign_operation(alice, GROUP_ID, seq, log.heads, seq, OpKind.RENAME, name=f"t{n}")
        start = time.perf_counter()
        log.add(op)
        on_top.append(time.perf_counter() - start)
    # bob renames on his own branch, started from alice's promotion of him:
    # each of his operations is concurrent with alice's thousand.
    merge = []
    parent = ops[2].hash
    for n in range(1, SAMPLES + 1):
        op = sign_operation(BOB, GROUP_ID, n, (parent,), n, OpKind.RENAME, name=f"b{n}")
        start = time.perf_counter()
        log.add(op)
        merge.append(time.perf_counter() - start)
        parent = op.hash
    yield fact("group_add_on_top_ms", _median_ms(on_top), " ms")
    yield fact("group_add_merge_ms", _median_ms(merge), " ms")
    fetch = []
    for _ in range(SAMPLES):
        start = time.perf_counter()
        log.since([ops[0].hash])
        fetch.append(time.perf_counter() - start)
    yield fact("group_fetch_64_ms", _median_ms(fetch), " ms")


def _list_send() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Store.open(root / "store.sqlite", root / "files", KEY) as store:
            names = [f"c{n}" for n in range(MAX_LIST_MEMBERS)]
            for name in names:
                store.contacts.add_contact(name, OnionAddress(os.urandom(32)), os.urandom(32), 1)
            store.lists.create("all", names, 1)
            samples = []
            for n in range(5):
                start = time.perf_counter()
                store.lists.queue_text("all", os.urandom(16), n, "briefing", "text/plain", None)
                samples.append(time.perf_counter() - start)
    yield fact("list_send_256_ms", _median_ms(samples), " ms")


FANOUT = 50


def _group_fanout() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with Store.open(root / "store.sqlite", root / "files", KEY) as store:
            alice = Identity(bytes(32))
            members = [Identity(os.urandom(32)) for _ in range(FANOUT)]
            contacts = [
                store.contacts.add_contact(f"m{n}", member.address, os.urandom(32), 1)
                for n, member in enumerate(members)
            ]
            card = MemberCard(alice.public_key, bytes(32), "alice")
            create = sign_operation(alice, GROUP_ID, 1, (), 0, OpKind.CREATE, name="t", card=card)
            adds, heads = [], [create.hash]
            for seq, member in enumerate(members, start=2):
                member_card = MemberCard(member.public_key, bytes(32), f"m{seq}")
                op = sign_operation(alice, GROUP_ID, seq, heads, seq, OpKind.ADD, card=member_card)
                adds.append(op)
                heads = [op.hash]
            store.groups.start(create, 1, adds)
            fanout, one_to_one = [], []
            for n in range(5):
                start = time.perf_counter()
                queued = store.groups.queue_text(
                    GROUP_ID, os.urandom(16), n, "briefing", "text/plain", None,
                    sender=alice.public_key,
                )  # fmt: skip
                fanout.append(time.perf_counter() - start)
                assert len(queued.new) == FANOUT
                start = time.perf_counter()
                for contact in contacts:
                    store.outbox.queue_text(
                        contact.id, os.urandom(16), n, "briefing", "text/plain", None
                    )
                one_to_one.append(time.perf_counter() - start)
    yield fact("group_fanout_enqueue_50_s", statistics.median(fanout), " s")
    yield fact("one_to_one_enqueue_50_s", statistics.median(one_to_one), " s")


def run() -> Iterator[str]:
    yield from _group()
    yield from _list_send()
    yield from _group_fanout()


if __name__ == "__main__":
    for result in run():
        print(result, flush=True)
