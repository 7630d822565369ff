"""The group membership log (onionpost.proto.groups, protocol-spec/groups.md).

Every check a receiver makes is tested as a table (each refusal leaves the
log as it was); the merge rule with hand-made concurrent branches; and
convergence as a property: whatever operations two or three admins make on
their own replicas, exchanging some of them as they go, every replica and
every fresh log fed the same operations in any order ends with the same
membership and the same head.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from unittest import mock

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from onionpost.errors import (
    GroupBoundError,
    GroupDecodeError,
    GroupError,
    GroupForkError,
    GroupMissingParentError,
    GroupNotAllowedError,
    GroupOrderError,
    GroupReason,
    GroupReplayError,
    GroupRule,
    GroupSignatureError,
    GroupUnknownError,
)
from onionpost.proto import groups
from onionpost.proto.groups import (
    GroupBook,
    GroupLog,
    MemberCard,
    Operation,
    OpKind,
    PostDecision,
    head_hash,
    sign_operation,
)
from onionpost.proto.identity import Identity

GROUP = bytes(range(16))
T0 = 1_765_000_000_000


def _identity(name: str) -> Identity:
    return Identity(hashlib.blake2b(f"group test {name}".encode()).digest()[:32])


PEOPLE = {name: _identity(name) for name in ("alice", "bob", "carol", "dave", "erin", "frank")}


def card(name: str) -> MemberCard:
    return MemberCard(PEOPLE[name].public_key, hashlib.sha256(name.encode()).digest(), name)


def key(name: str) -> bytes:
    return PEOPLE[name].public_key


@dataclass
class Author:
    """One member making operations on its own replica."""

    name: str
    log: GroupLog | None = None
    seq: int = 0
    made: list[Operation] = field(default_factory=list)

    def make(self, kind: OpKind, **args: object) -> Operation:
        """Sign the change at this replica's heads and add it here; on a
        refusal nothing changes (the error goes up)."""
        parents = () if self.log is None else self.log.heads
        op = sign_operation(
            PEOPLE[self.name],
            GROUP,
            self.seq + 1,
            parents,
            T0 + self.seq,
            kind,
            **args,  # type: ignore[arg-type]
        )
        if self.log is None:
            self.log = GroupLog(op)
        else:
            self.log.add(op)
        self.seq += 1
        self.made.append(op)
        return op

    def learn(self, ops: list[Operation]) -> None:
        assert self.log is not None
        deliver(self.log, ops)


def deliver(log: GroupLog, ops: list[Operation]) -> None:
    """Add ``ops`` in the order given, holding back those whose parents have
    not arrived yet (what a receiver does before fetching them)."""
    pending = [op for op in ops if op.hash not in log]
    while pending:
        held = []
        for op in pending:
            if op.hash in log:
                continue
            try:
                log.add(op)
            except GroupMissingParentError:
                held.append(op)
        assert len(held) < len(pending), "a parent never arrives"
        pending = held


def founded() -> tuple[Author, Author, Author]:
    """alice creates 'ops' and adds bob and carol, bob as an admin; both learn it."""
    alice, bob, carol = Author("alice"), Author("bob"), Author("carol")
    alice.make(OpKind.CREATE, name="ops", card=card("alice"))
    alice.make(OpKind.ADD, card=card("bob"))
    alice.make(OpKind.ADD, card=card("carol"))
    alice.make(OpKind.PROMOTE, target=key("bob"))
    assert alice.log is not None
    for other in (bob, carol):
        other.log = GroupLog(alice.made[0])
        other.learn(alice.made)
    return alice, bob, carol


def members(log: GroupLog) -> dict[str, bool]:
    return {m.card.name: m.admin for m in log.state.members.values()}


# -- records ---------------------------------------------------------------------------


def test_an_operation_round_trips_and_is_canonical() -> None:
    alice, _bob, _carol = founded()
    for op in alice.made:
        data = op.encode()
        assert Operation.decode(data) == op
        assert Operation.decode(data).hash == op.hash
        assert op.hash == hashlib.sha256(groups.HASH_CONTEXT + op.signed_message()[22:]).digest()
    assert alice.made[1].parents == (alice.made[0].hash,)
    assert repr(alice.made[0]).startswith("Operation(CREATE seq=1")


def test_the_head_hash_names_the_set_of_heads() -> None:
    a, b = os.urandom(32), os.urandom(32)
    assert (
        head_hash([a, b])
        == head_hash([b, a])
        == hashlib.sha256(groups.HEAD_CONTEXT + min(a, b) + max(a, b)).digest()
    )
    assert head_hash([a]) != head_hash([b])


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda f: f.__setitem__(0, 2), "version"),
        (lambda f: f.__setitem__(0, True), "version"),
        (lambda f: f.__setitem__(1, b"short"), "group id"),
        (lambda f: f.__setitem__(2, 0), "seq starts"),
        (lambda f: f.__setitem__(2, -1), "unsigned"),
        (lambda f: f.__setitem__(3, []), "parents"),
        (lambda f: f.__setitem__(3, [b"\x01" * 32, b"\x00" * 32]), "sorted"),
        (lambda f: f.__setitem__(3, [b"\x00" * 32] * 2), "sorted"),
        (lambda f: f.__setitem__(3, [b"\x00" * 31]), "parents"),
        (lambda f: f.__setitem__(6, 7), "unknown kind"),
        (lambda f: f.__setitem__(6, 1.0), "unknown kind"),
        (lambda f: f.__setitem__(7, []), "takes 1 args"),
        (lambda f: f.__setitem__(7, [[b"k" * 32, b"a" * 32, ""]]), "name"),
        (lambda f: f.__setitem__(7, [[b"k" * 32, b"a" * 32, "x\u202e"]]), "name"),
        (lambda f: f.__setitem__(7, [[b"k" * 32, b"a" * 32, "x" * 65]]), "name"),
        (lambda f: f.__setitem__(7, [[b"k" * 31, b"a" * 32, "x"]]), "32 bytes"),
        (lambda f: f.__setitem__(8, b"s" * 63), "signature"),
        (lambda f: f.pop(), "array of 9"),
        (lambda f: f.append(0), "not msgpack"),
    ],
)
def test_a_malformed_operation_is_refused(
    change: Callable[[list[object]], None], problem: str
) -> None:
    import msgpack

    alice, _bob, _carol = founded()
    fields = list(msgpack.unpackb(alice.made[1].encode(), raw=False))
    change(fields)
    with pytest.raises(GroupDecodeError, match=problem) as caught:
        Operation.decode(msgpack.packb(fields, use_bin_type=True))
    assert caught.value.reason is GroupReason.MALFORMED


def test_a_non_canonical_or_oversized_encoding_is_refused() -> None:
    alice, _bob, _carol = founded()
    data = alice.made[1].encode()
    # seq 2 as a uint16 instead of a positive fixint
    fixint = bytes([0x02])
    assert fixint in data
    longer = data.replace(b"\xc4\x10" + GROUP + fixint, b"\xc4\x10" + GROUP + b"\xcd\x00\x02", 1)
    assert longer != data
    with pytest.raises(GroupDecodeError, match="canonical"):
        Operation.decode(longer)
    with pytest.raises(GroupDecodeError, match="at most"):
        Operation.decode(b"\x00" * 2049)
    with pytest.raises(GroupDecodeError, match="not msgpack"):
        Operation.decode(data + b"\x00")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bytes_decode_only_to_a_group_decode_error(data: bytes) -> None:
    with contextlib.suppress(GroupDecodeError):
        Operation.decode(data)


@given(st.data())
def test_every_changed_byte_of_an_operation_is_caught(data: st.DataObject) -> None:
    alice, _bob, _carol = founded()
    op = alice.made[2]
    encoded = bytearray(op.encode())
    at = data.draw(st.integers(0, len(encoded) - 1))
    encoded[at] ^= data.draw(st.integers(1, 255))
    log = GroupLog(alice.made[0])
    deliver(log, alice.made[:2])
    try:
        changed = Operation.decode(bytes(encoded))
        log.add(changed)
    except GroupError:
        assert len(log) == 2
    else:  # pragma: no cover - a signature forgery
        raise AssertionError(f"a changed operation was accepted: {changed!r}")


# -- the checks, in order -------------------------------------------------------------------


def _resigned(op: Operation, signer: str, **changes: object) -> Operation:
    changed = replace(op, **changes)  # type: ignore[arg-type]
    return sign_operation(
        PEOPLE[signer],
        changed.group_id,
        changed.seq,
        changed.parents,
        changed.time_ms,
        changed.kind,
        name=changed.name,
        card=changed.card,
        target=changed.target,
    )


def _refusals() -> list[
    tuple[str, Callable[[Author, Author, Author], Operation], type[GroupError]]
]:
    def bad_signature(a: Author, b: Author, c: Author) -> Operation:
        op = sign_operation(PEOPLE["bob"], GROUP, 1, a.log.heads, T0, OpKind.RENAME, name="x")  # type: ignore[union-attr]
        return replace(op, signature=bytes(64))

    def by(who: str, kind: OpKind, seq: int = 1, **args: object) -> Callable[..., Operation]:
        def make(a: Author, b: Author, c: Author) -> Operation:
            assert a.log is not None
            return sign_operation(PEOPLE[who], GROUP, seq, a.log.heads, T0, kind, **args)  # type: ignore[arg-type]

        return make

    def other_group(a: Author, b: Author, c: Author) -> Operation:
        return _resigned(b.make(OpKind.RENAME, name="y"), "bob", group_id=bytes(16))

    def replayed(a: Author, b: Author, c: Author) -> Operation:
        return a.made[-1]

    def missing(a: Author, b: Author, c: Author) -> Operation:
        return _resigned(b.make(OpKind.RENAME, name="y"), "bob", parents=(os.urandom(32),))

    def fork(a: Author, b: Author, c: Author) -> Operation:
        first = b.make(OpKind.RENAME, name="first")
        a.learn([first])
        return _resigned(first, "bob", name="second")

    def gap(a: Author, b: Author, c: Author) -> Operation:
        return by("bob", OpKind.RENAME, seq=3, name="y")(a, b, c)

    def second_create(a: Author, b: Author, c: Author) -> Operation:
        return _resigned(a.made[0], "alice", time_ms=T0 + 99)

    return [
        ("another group", other_group, GroupUnknownError),
        ("replayed", replayed, GroupReplayError),
        ("bad signature", bad_signature, GroupSignatureError),
        ("second create", second_create, GroupNotAllowedError),
        ("missing parent", missing, GroupMissingParentError),
        ("fork", fork, GroupForkError),
        ("out of order", gap, GroupOrderError),
        ("not a member", by("dave", OpKind.LEAVE), GroupNotAllowedError),
        ("not an admin adds", by("carol", OpKind.ADD, card=card("dave")), GroupNotAllowedError),
        ("not an admin renames", by("carol", OpKind.RENAME, name="z"), GroupNotAllowedError),
        ("add a member", by("bob", OpKind.ADD, card=card("carol")), GroupNotAllowedError),
        ("remove a non-member", by("bob", OpKind.REMOVE, target=key("dave")), GroupNotAllowedError),
        ("remove oneself", by("bob", OpKind.REMOVE, target=key("bob")), GroupNotAllowedError),
        ("promote an admin", by("bob", OpKind.PROMOTE, target=key("alice")), GroupNotAllowedError),
        ("demote a non-admin", by("bob", OpKind.DEMOTE, target=key("carol")), GroupNotAllowedError),
    ]


# Which of the log's rules refuses each operation its author may not make.
RULES = {
    "second create": GroupRule.CREATED_ONCE,
    "not a member": GroupRule.AUTHOR_NOT_MEMBER,
    "not an admin adds": GroupRule.AUTHOR_NOT_ADMIN,
    "not an admin renames": GroupRule.AUTHOR_NOT_ADMIN,
    "add a member": GroupRule.ALREADY_MEMBER,
    "remove a non-member": GroupRule.NOT_MEMBER,
    "remove oneself": GroupRule.LEAVE_TO_LEAVE,
    "promote an admin": GroupRule.ALREADY_ADMIN,
    "demote a non-admin": GroupRule.NOT_ADMIN,
}


@pytest.mark.parametrize(("case", "make", "error"), _refusals(), ids=[r[0] for r in _refusals()])
def test_each_refusal_has_its_reason_and_leaves_the_log_as_it_was(
    case: str, make: Callable[[Author, Author, Author], Operation], error: type[GroupError]
) -> None:
    alice, bob, carol = founded()
    op = make(alice, bob, carol)
    assert alice.log is not None
    before = (len(alice.log), alice.log.head, alice.log.state)
    with pytest.raises(error) as caught:
        alice.log.add(Operation.decode(op.encode()))
    assert caught.value.reason is error.reason
    assert (len(alice.log), alice.log.head, alice.log.state) == before
    if isinstance(caught.value, GroupMissingParentError):
        assert caught.value.missing == op.parents
    if isinstance(caught.value, GroupForkError):
        assert caught.value.other in alice.log
    if isinstance(caught.value, GroupNotAllowedError):
        assert caught.value.rule is RULES[case]
        assert str(caught.value).endswith(RULES[case].value)


def test_the_log_is_bounded() -> None:
    alice, _bob, _carol = founded()
    assert alice.log is not None
    with (
        mock.patch.object(groups, "MAX_GROUP_LOG_OPS", len(alice.log)),
        pytest.raises(GroupBoundError, match="full"),
    ):
        alice.make(OpKind.RENAME, name="one more")
    with (
        mock.patch.object(groups, "MAX_GROUP_LOG_BYTES", alice.log.byte_size + 10),
        pytest.raises(GroupBoundError, match="full"),
    ):
        alice.make(OpKind.RENAME, name="one more")
    assert len(alice.log) == 4
    alice.make(OpKind.RENAME, name="one more")


def test_members_are_bounded() -> None:
    alice, _bob, _carol = founded()
    with (
        mock.patch.object(groups, "MAX_GROUP_MEMBERS", 3),
        pytest.raises(GroupNotAllowedError, match=r"group is full \(a group has at most 3"),
    ):
        alice.make(OpKind.ADD, card=card("dave"))


def test_the_book_routes_by_group_and_is_bounded() -> None:
    alice, _bob, _carol = founded()
    book = GroupBook()
    log = book.start(alice.made[0])
    assert book.log(GROUP) is log
    with pytest.raises(GroupReplayError):
        book.start(alice.made[0])
    for op in alice.made[1:]:
        book.receive(op)
    assert members(log) == {"alice": True, "bob": True, "carol": False}
    stranger = sign_operation(
        PEOPLE["dave"], bytes(16), 1, (), T0, OpKind.CREATE, name="other", card=card("dave")
    )
    with pytest.raises(GroupUnknownError):
        book.receive(_resigned(alice.made[1], "alice", group_id=bytes(16)))
    with mock.patch.object(groups, "MAX_GROUPS", 1), pytest.raises(GroupBoundError):
        book.start(stranger)
    assert book.start(stranger).group_id == bytes(16)
    book.forget(GROUP)
    with pytest.raises(GroupUnknownError):
        book.log(GROUP)


# -- membership and the merge rule ---------------------------------------------------------


def test_a_group_is_created_grown_renamed_and_left() -> None:
    alice, bob, carol = founded()
    assert alice.log is not None
    assert members(alice.log) == {"alice": True, "bob": True, "carol": False}
    assert alice.log.state.name == "ops"
    bob.make(OpKind.RENAME, name="night shift")
    carol.make(OpKind.LEAVE)
    for author in (alice, bob, carol):
        author.learn(bob.made + carol.made)
    for author in (alice, bob, carol):
        assert author.log is not None
        assert members(author.log) == {"alice": True, "bob": True}
        assert author.log.state.name == "night shift"
        assert author.log.head == alice.log.head
    assert len(alice.log.heads) == 2  # bob's rename and carol's leave, concurrent


def test_concurrent_removal_beats_a_promotion() -> None:
    alice, bob, _carol = founded()
    alice.make(OpKind.REMOVE, target=key("carol"))
    bob.make(OpKind.PROMOTE, target=key("carol"))
    alice.learn(bob.made)
    bob.learn(alice.made)
    for log in (alice.log, bob.log):
        assert log is not None
        assert members(log) == {"alice": True, "bob": True}


def test_a_readd_after_two_concurrent_removals_loses_to_the_one_it_did_not_see() -> None:
    alice, bob, _carol = founded()
    alice.make(OpKind.REMOVE, target=key("carol"))
    bob.make(OpKind.REMOVE, target=key("carol"))
    alice.make(OpKind.ADD, card=card("carol"))  # follows alice's removal only
    alice.learn(bob.made)
    bob.learn(alice.made)
    for log in (alice.log, bob.log):
        assert log is not None
        assert "carol" not in members(log)
    # Once an add follows both removals, carol is back.
    alice.make(OpKind.ADD, card=card("carol"))
    bob.learn(alice.made)
    assert bob.log is not None
    assert members(bob.log)["carol"] is False


def test_a_concurrent_demotion_beats_a_promotion() -> None:
    alice, bob, _carol = founded()
    alice.make(OpKind.PROMOTE, target=key("carol"))
    carol_admin_seen = list(alice.made)
    bob.learn(carol_admin_seen)
    alice.make(OpKind.DEMOTE, target=key("carol"))
    bob.make(OpKind.DEMOTE, target=key("carol"))
    alice.make(OpKind.PROMOTE, target=key("carol"))  # follows alice's demotion only
    alice.learn(bob.made)
    assert alice.log is not None
    assert members(alice.log)["carol"] is False


def test_a_message_is_accepted_from_a_member_at_its_heads_still_a_member() -> None:
    alice, _bob, _carol = founded()
    assert alice.log is not None
    at = alice.log.heads
    assert alice.log.may_post(key("carol"), at).decision is PostDecision.ACCEPT
    assert alice.log.may_post(key("dave"), at).decision is PostDecision.NOT_A_MEMBER
    assert alice.log.may_post(key("carol"), ()).decision is PostDecision.NOT_A_MEMBER
    unknown = os.urandom(32)
    check = alice.log.may_post(key("carol"), (unknown,))
    assert (check.decision, check.missing) == (PostDecision.FETCH, (unknown,))
    alice.make(OpKind.REMOVE, target=key("carol"))
    # Sent at the old heads, concurrently with the removal: refused.
    assert alice.log.may_post(key("carol"), at).decision is PostDecision.REMOVED
    # Before carol was added: not a member there.
    early = (alice.made[1].hash,)
    assert alice.log.may_post(key("carol"), early).decision is PostDecision.NOT_A_MEMBER
    assert alice.log.state_at(early).name == "ops"


def test_a_fetch_answers_what_is_missing_in_order_and_bounded() -> None:
    alice, bob, _carol = founded()
    for n in range(5):
        alice.make(OpKind.RENAME, name=f"name {n}")
    assert alice.log is not None
    assert bob.log is not None
    lacking = alice.log.since(bob.log.heads)
    assert [op.name for op in lacking] == [f"name {n}" for n in range(5)]
    assert alice.log.since(bob.log.heads, limit=2) == lacking[:2]
    assert alice.log.since([os.urandom(32)], limit=1000) == alice.log.ordered()[:64]
    for op in lacking:  # in that order, each applies
        bob.log.add(op)
    assert bob.log.head == alice.log.head
    assert alice.log.since(alice.log.heads) == []


# -- convergence ---------------------------------------------------------------------------

EVERYONE = ("alice", "bob", "carol", "dave", "erin", "frank")
_MAKE = st.tuples(
    st.sampled_from(["alice", "bob", "alice", "bob", "carol"]),
    st.sampled_from(
        ["add"] * 4 + ["rename"] * 2 + ["remove"] * 2 + ["promote", "demote"] * 2 + ["leave"]
    ),
    st.integers(0, 5),
)
_SYNC = st.tuples(
    st.sampled_from(["alice", "bob", "carol"]),
    st.just("sync"),
    st.sampled_from(["alice", "bob", "carol"]),
)
# Rounds: some authors change the group, each on its own replica (concurrent
# changes), then some learn what others hold (the next changes merge them).
ACTIONS = st.lists(
    st.tuples(st.lists(_MAKE, min_size=1, max_size=4), st.lists(_SYNC, max_size=4)),
    min_size=2,
    max_size=10,
).map(lambda rounds: [action for makes, syncs in rounds for action in makes + syncs])


def _try(author: Author, action: str, pick: int) -> None:
    """Make the action if it is allowed in the author's view (else nothing);
    ``pick`` chooses the target among those it could apply to there."""
    assert author.log is not None
    names = {m.card.name for m in author.log.state.members.values()}
    others = [n for n in EVERYONE if (n in names) != (action == "add") and n != author.name]
    target = others[pick % len(others)] if others else author.name
    kinds = {
        "add": (OpKind.ADD, lambda: {"card": card(target)}),
        "remove": (OpKind.REMOVE, lambda: {"target": key(target)}),
        "leave": (OpKind.LEAVE, dict),
        "rename": (OpKind.RENAME, lambda: {"name": f"by {author.name} {author.seq}"}),
        "promote": (OpKind.PROMOTE, lambda: {"target": key(target)}),
        "demote": (OpKind.DEMOTE, lambda: {"target": key(target)}),
    }
    kind, args = kinds[action]
    with contextlib.suppress(GroupNotAllowedError):
        author.make(kind, **args())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ACTIONS, st.randoms(use_true_random=False))
def test_every_replica_converges_whatever_the_delivery_order(
    actions: list[tuple[str, str, str | int]], rng: object
) -> None:
    alice, bob, carol = founded()
    authors = {"alice": alice, "bob": bob, "carol": carol}
    for who, action, target in actions:
        author = authors[who]
        if action == "sync":  # the author learns what the target holds
            source = authors[str(target)]
            if source is not author:
                assert source.log is not None
                author.learn(source.log.ordered())
        else:
            _try(author, action, int(target))
    everything = list(itertools.chain.from_iterable(a.made for a in authors.values()))
    merges = sum(len(op.parents) > 1 for op in everything)
    event(f"merges: {min(merges, 3)}{'+' if merges > 3 else ''}")
    unique = list({op.hash: op for op in everything}.values())
    finals = []
    for author in authors.values():
        author.learn(unique)
        assert author.log is not None
        finals.append((author.log.head, author.log.state))
    for _ in range(3):  # fresh receivers, each in its own random order
        shuffled = list(unique)
        rng.shuffle(shuffled)  # type: ignore[attr-defined]
        log = GroupLog(alice.made[0])
        deliver(log, shuffled)
        finals.append((log.head, log.state))
    assert all(f == finals[0] for f in finals)
    # Whoever holds everything serves the rest to a newcomer, in bounded answers.
    newcomer = GroupLog(alice.made[0])
    assert alice.log is not None
    while batch := alice.log.since(newcomer.heads):
        for op in batch:
            newcomer.add(op)
    assert newcomer.head == alice.log.head
    assert newcomer.state == alice.log.state
