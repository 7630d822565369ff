"""Who is introduced, moved or dropped (groups.md §9), and what an introduced
member may send: both pure decisions, as tables."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from onionpost.daemon.delivery import (
    Introduction,
    IntroductionPlan,
    RecordVerdict,
    admit,
    introduced_record,
    plan_introductions,
    refusals,
    shown_name,
)
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.groups import GroupLog, MemberCard, OpKind, sign_operation
from onionpost.proto.identity import Identity
from onionpost.store import Contact
from tests.store._storekit import add_contact, open_store

NAMES = ("alice", "bob", "carol", "dave")
PEOPLE = {n: Identity(hashlib.blake2b(f"introductions {n}".encode()).digest()[:32]) for n in NAMES}
KEY = {n: p.public_key for n, p in PEOPLE.items()}
G1, G2 = bytes([1]) * 16, bytes([2]) * 16
ME = "bob"


def card(name: str) -> MemberCard:
    return MemberCard(KEY[name], hashlib.sha256(name.encode()).digest(), name)


def group(group_id: bytes, steps: Sequence[str]) -> GroupLog:
    """A log from steps such as "alice create", "alice add bob",
    "alice remove carol", "bob leave", "alice promote dave", each on the
    heads before it."""
    log: GroupLog | None = None
    seqs: dict[str, int] = {}
    for step in steps:
        author, verb, *rest = step.split()
        seqs[author] = seqs.get(author, 0) + 1
        heads = () if log is None else log.heads
        kind = OpKind[verb.upper()]
        args: dict[str, object] = {}
        if kind is OpKind.CREATE:
            args = {"name": "desk", "card": card(author)}
        elif kind is OpKind.ADD:
            args = {"card": card(rest[0])}
        elif kind in (OpKind.REMOVE, OpKind.PROMOTE):
            args = {"target": KEY[rest[0]]}
        op = sign_operation(PEOPLE[author], group_id, seqs[author], heads, 1, kind, **args)  # type: ignore[arg-type]
        if log is None:
            log = GroupLog(op)
        else:
            log.add(op)
    assert log is not None
    return log


def intro(name: str, group_id: bytes, by: str) -> Introduction:
    return Introduction(card(name), group_id, KEY[by])


TRIO = ["alice create", "alice add bob", "alice add carol"]

CASES = [
    # (groups, our contacts, introduced so far {name: (id, group)}, the plan)
    pytest.param(
        [(G1, TRIO)], {"alice"}, {}, IntroductionPlan(add=(intro("carol", G1, "alice"),)), id="new"
    ),
    pytest.param([(G1, TRIO)], {"alice", "carol"}, {}, IntroductionPlan(), id="a-contact"),
    pytest.param([(G1, TRIO)], {"alice"}, {"carol": (5, G1)}, IntroductionPlan(), id="known"),
    pytest.param(
        [(G1, [*TRIO, "alice remove carol"])],
        {"alice"},
        {"carol": (5, G1)},
        IntroductionPlan(drop=(5,)),
        id="removed",
    ),
    pytest.param(
        [(G1, [*TRIO, "carol leave"])],
        {"alice"},
        {"carol": (5, G1)},
        IntroductionPlan(drop=(5,)),
        id="left",
    ),
    pytest.param(
        [(G1, [*TRIO, "bob leave"])],
        {"alice"},
        {"carol": (5, G1)},
        IntroductionPlan(drop=(5,)),
        id="we-left",
    ),
    pytest.param(
        [(G1, [*TRIO, "alice remove bob"])],
        set(),
        {"carol": (5, G1), "alice": (4, G1)},
        IntroductionPlan(drop=(4, 5)),
        id="we-were-removed",
    ),
    pytest.param(
        [
            (G1, [*TRIO, "alice remove carol"]),
            (G2, ["dave create", "dave add bob", "dave add carol"]),
        ],
        {"alice", "dave"},
        {"carol": (5, G1)},
        IntroductionPlan(move=((5, intro("carol", G2, "dave")),)),
        id="still-in-another-group",
    ),
    pytest.param(
        [(G1, TRIO), (G2, ["dave create", "dave add bob", "dave add carol"])],
        {"alice", "dave"},
        {"carol": (5, G2)},
        IntroductionPlan(),
        id="kept-by-its-group",
    ),
    pytest.param(
        [(G1, ["alice create", "alice add bob", "alice add dave", "alice promote dave"])],
        {"alice"},
        {},
        IntroductionPlan(add=(intro("dave", G1, "alice"),)),
        id="promoted-still-introduced-by-its-adder",
    ),
    pytest.param(
        [
            (
                G1,
                [
                    "alice create",
                    "alice add dave",
                    "alice promote dave",
                    "dave add bob",
                    "dave add carol",
                ],
            )
        ],
        set(),
        {},
        IntroductionPlan(
            add=(
                intro("alice", G1, "alice"),
                intro("dave", G1, "alice"),
                intro("carol", G1, "dave"),
            )
        ),
        id="creator-and-members-none-a-contact",
    ),
    pytest.param(
        [(G1, ["alice create", "alice add carol"])],
        {"alice"},
        {"carol": (5, G1)},
        IntroductionPlan(drop=(5,)),
        id="a-group-we-are-not-in",
    ),
]


@pytest.mark.parametrize(("groups", "contacts", "known", "plan"), CASES)
def test_who_is_introduced_moved_and_dropped(
    groups: list[tuple[bytes, list[str]]],
    contacts: set[str],
    known: dict[str, tuple[int, bytes]],
    plan: IntroductionPlan,
) -> None:
    logs = [group(g, steps) for g, steps in groups]
    got = plan_introductions(
        KEY[ME],
        frozenset(KEY[c] for c in contacts),
        {KEY[n]: v for n, v in known.items()},
        logs,
    )
    assert set(got.add) == set(plan.add)
    assert len(got.add) == len(plan.add)
    assert (got.move, got.drop) == (plan.move, plan.drop)


def test_a_plan_carried_out_is_stable() -> None:
    """Once its additions are known and its drops gone, the plan is empty."""
    for param in CASES:
        groups, contacts, known, _ = param.values
        logs = [group(g, steps) for g, steps in groups]  # type: ignore[attr-defined]
        keys = frozenset(KEY[c] for c in contacts)  # type: ignore[attr-defined]
        now = {KEY[n]: v for n, v in known.items()}  # type: ignore[attr-defined]
        first = plan_introductions(KEY[ME], keys, now, logs)
        for i, added in enumerate(first.add, start=100):
            now[added.card.identity_key] = (i, added.group_id)
        for peer_id, moved in first.move:
            now[moved.card.identity_key] = (peer_id, moved.group_id)
        now = {k: v for k, v in now.items() if v[0] not in first.drop}
        assert plan_introductions(KEY[ME], keys, now, logs) == IntroductionPlan()


G = bytes(16)
H = bytes(32)


@pytest.mark.parametrize(
    ("record", "verdict"),
    [
        (m.GroupOps(G, (b"x",)), RecordVerdict.HANDLE),
        (m.GroupFetch(G, b""), RecordVerdict.HANDLE),
        (m.GroupText(G, 1, "hi", "text/plain", G, H), RecordVerdict.HANDLE),
        (m.Ack((G,)), RecordVerdict.HANDLE),
        (m.Read((G,)), RecordVerdict.HANDLE),
        (m.Ping(1), RecordVerdict.HANDLE),
        (m.Pong(1), RecordVerdict.HANDLE),
        (m.LabelLimit(("TLP:AMBER",)), RecordVerdict.HANDLE),
        (m.MailboxInfo(b"x"), RecordVerdict.HANDLE),  # its mailbox: we deposit there
        (m.LogCosign(b"x", 0, b""), RecordVerdict.IGNORE),  # contacts witness
        (m.LogCosigned(0, b"x"), RecordVerdict.IGNORE),
        (m.Text(G, 1, "hi", "text/plain"), RecordVerdict.REFUSE),
        (m.FileOffer(G, 1, "a", 1, bytes(64)), RecordVerdict.REFUSE),
        (m.FileChunk(G, 0, b"x"), RecordVerdict.HANDLE),  # only of a transfer we accepted
        (m.GroupFileOffer(G, 1, "a", 1, bytes(64), "", G, bytes(32)), RecordVerdict.HANDLE),
        (object(), RecordVerdict.REFUSE),
    ],
)
def test_what_an_introduced_member_may_send(record: object, verdict: RecordVerdict) -> None:
    assert introduced_record(record) is verdict


@pytest.mark.parametrize(
    "record",
    [
        m.Text(G, 1, "hi", "text/plain"),
        m.FileOffer(G, 1, "a", 1, bytes(64)),
        m.GroupText(G, 1, "hi", "text/plain", G, H),
        m.MailboxInfo(b"x"),
        m.LogCosign(b"x", 0, b""),
    ],
)
def test_the_intake_admits_a_contact_s_records_and_an_introduced_member_s_by_the_table(
    record: m.Message,
) -> None:
    """One decision for a live session's records and an envelope's (``admit``)."""
    contact = Contact(1, "alice", ADDRESS, bytes(32), 0, None, None, 0)
    introduced = replace(contact, introduced_group=G1, introduced_by=KEY["alice"])
    assert admit(contact, record) is RecordVerdict.HANDLE
    assert admit(introduced, record) is introduced_record(record)


ADDRESS = OnionAddress.from_public_key(KEY["carol"])


@pytest.mark.parametrize(
    ("card_name", "taken", "shown"),
    [
        ("carol", set(), "carol"),
        ("carol", {"alice", "bob"}, "carol"),
        ("Alice", {"alice"}, f"Alice ({str(ADDRESS)[:8]})"),
        ("a" * 64, {"a" * 64}, "a" * 53 + f" ({str(ADDRESS)[:8]})"),
    ],
)
def test_an_introduced_member_never_takes_a_known_name(
    card_name: str, taken: set[str], shown: str
) -> None:
    got = shown_name(card_name, ADDRESS, taken)
    assert got == shown
    assert len(got) <= 64


def test_the_trust_policy_judges_an_introduced_member_as_a_contact(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        contact = add_contact(store, "alice")
        peer = store.contacts.introduce(
            "carol", OnionAddress.from_public_key(KEY["carol"]), bytes(32), G1, KEY["alice"], 1
        )
        refused = refusals(store, required=True)
        assert set(refused) == {contact.id, peer.id}  # neither presented an endorsement
        assert refusals(store, required=False) == {}
    finally:
        store.close()
