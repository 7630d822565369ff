"""Property, end to end over the in-memory network: random sends and
forwards between three running daemons, then every copy each recipient
stored carries a label at least its source's, and no TLP:RED message reached
anyone outside its audience. Few examples: each runs three endpoints."""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock

from onionpost import api
from onionpost.errors import LabelError
from onionpost.proto.labels import LabelPolicy, at_most
from onionpost.testing.memory import Node, befriend, network, until

NAMES = ["alice", "bob", "carol"]
LABELS = ["TLP:GREEN", "TLP:AMBER", "TLP:AMBER+STRICT", "TLP:RED", "CUI", "CUI//SP-CTI"]
PARSE = LabelPolicy.build().labels.parse

names = st.sampled_from(NAMES)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("send"), names, names, st.sampled_from(LABELS)),
        st.tuples(
            st.just("forward"),
            names,
            st.integers(0, 20),
            names,
            st.none() | st.sampled_from(LABELS),
        ),
    ),
    min_size=1,
    max_size=12,
)

# A copy one endpoint holds: (holder, message id hex, label, audience names).
Copy = tuple[str, str, str, frozenset[str]]


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(operations)
def test_no_copy_anywhere_is_lower_than_its_source(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    with tempfile.TemporaryDirectory(prefix="op-", dir="/tmp") as tmp:
        trio.run(_run, Path(tmp), ops, clock=MockClock(autojump_threshold=0))


async def _run(root: Path, ops: list[tuple]) -> None:  # type: ignore[type-arg]
    async with network(root) as (net, nursery):
        nodes = {name: net.node(name) for name in NAMES}
        for i, a in enumerate(NAMES):
            for b in NAMES[i + 1 :]:
                befriend(nodes[a], nodes[b])
        for node in nodes.values():
            await node.start(nursery)
        # What each endpoint holds that it may forward: received copies.
        held: dict[str, list[Copy]] = {name: [] for name in NAMES}
        # Every message made: (sender, recipient, id, label, source label, source audience).
        made: list[tuple[str, str, str, str, str | None, frozenset[str] | None]] = []
        for op in ops:
            if op[0] == "send":
                _, sender, to, label = op
                if sender == to:
                    continue
                queued = await _daemon(nodes[sender]).messages.send_text(
                    api.SendText(to, "x", label=label)
                )
                made.append((sender, to, queued.id, queued.label, None, None))
                held[to].append((to, queued.id, queued.label, frozenset({sender, to})))
                await _delivered(nodes[to], queued.id)
                continue
            _, holder, pick, to, label = op
            if not held[holder] or holder == to:
                continue
            _, source_id, source_label, audience = held[holder][pick % len(held[holder])]
            try:
                queued = await _daemon(nodes[holder]).messages.forward(
                    api.Forward(source_id, to, label=label)
                )
            except LabelError as exc:
                event(f"forward refused: {exc.reason}")
                continue
            event("forwarded")
            made.append((holder, to, queued.id, queued.label, source_label, audience))
            held[to].append((to, queued.id, queued.label, audience | {holder, to}))
            await _delivered(nodes[to], queued.id)
        for sender, to, message_id, label, source_label, audience in made:
            stored = nodes[to].store.messages.message(bytes.fromhex(message_id))
            assert stored.label == label  # as it went, so it arrived
            if source_label is not None:
                assert audience is not None
                assert at_most(PARSE(source_label), PARSE(label))
                if PARSE(source_label).is_red:
                    # A RED source goes back only to its audience; one raised
                    # to RED by the forward is a new RED message to `to`.
                    assert to in audience
            assert sender != to
        nursery.cancel_scope.cancel()


def _daemon(node: Node):  # type: ignore[no-untyped-def]
    assert node.daemon is not None
    return node.daemon


async def _delivered(node: Node, message_id: str) -> None:
    wanted = bytes.fromhex(message_id)
    await until(lambda: any(s.id == wanted for s in _received(node)))


def _received(node: Node) -> list:  # type: ignore[type-arg]
    return node.store.messages.inbox(limit=1000)
