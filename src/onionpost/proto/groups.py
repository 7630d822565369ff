"""Group membership as a signed, hash-chained log of operations (groups.md).

Theory of operation
-------------------
A group is the set of operations its members signed: ``create``, ``add``
(with the new member's card), ``remove``, ``leave``, ``rename``,
``promote`` and ``demote``. Each names as its *parents* the heads of its
author's log when it was made, so the operations form a DAG rooted at the
``create``; concurrent changes by two admins are two branches, and the next
operation made by anyone who has both merges them. The log's *head hash*
names the set of heads (groups.md §3.3)::

    create(g, "ops", alice) ─► add(bob) ─┬─► add(carol)  by alice ─┬─► rename by bob
                                         └─► remove(dave) by bob ──┘   (parents: both)

Receiving an operation (:meth:`GroupLog.add`) checks, in this order
(groups.md §5): its group, that it is new, its Ed25519 signature, the log's
bounds, that its parents are known (else the caller fetches them, bounded),
its author's sequence (a second operation with one ``seq`` is a fork), and
that its author may make it *at its parents*: in the membership the
operation's causal past gives, which every receiver computes alike. An
accepted operation is never removed.

The membership is a pure function of the set of operations: replay them in
one total order (Kahn's topological order, ties broken by the smaller
operation hash) and apply each only if its author may make it at that
point of the replay (:func:`_problem`, the same rule as on receipt).
Removals win: an ``add`` or ``promote`` of a member is skipped when a
``remove``, ``leave`` or ``demote`` of that member already applied is not
among its ancestors. So every member that holds the same operations holds
the same membership, whatever order they arrived in
(tests/proto/test_groups.py proves it over random deliveries).

The records and their canonical signed encoding are
:mod:`onionpost.proto.group_ops` (groups.md §3), re-exported here.

Nothing here does I/O or reads a clock: time and the group id are given.
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from onionpost.errors import (
    GroupBoundError,
    GroupForkError,
    GroupMissingParentError,
    GroupNotAllowedError,
    GroupOrderError,
    GroupReplayError,
    GroupRule,
    GroupUnknownError,
)
from onionpost.limits import (
    MAX_GROUP_LOG_BYTES,
    MAX_GROUP_LOG_OPS,
    MAX_GROUP_MEMBERS,
    MAX_GROUP_OPS_PER_FETCH,
    MAX_GROUPS,
)
from onionpost.proto.group_ops import (
    ADMIN_KINDS,
    GROUP_ID_LEN,
    HASH_CONTEXT,
    HASH_LEN,
    HEAD_CONTEXT,
    SIGN_CONTEXT,
    MemberCard,
    Operation,
    OpKind,
    head_hash,
    sign_operation,
)

__all__ = [
    "ADMIN_KINDS",
    "GROUP_ID_LEN",
    "HASH_CONTEXT",
    "HASH_LEN",
    "HEAD_CONTEXT",
    "SIGN_CONTEXT",
    "GroupBook",
    "GroupLog",
    "GroupMember",
    "GroupState",
    "MemberCard",
    "OpKind",
    "Operation",
    "PostCheck",
    "PostDecision",
    "head_hash",
    "sign_operation",
]

# -- membership -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupMember:
    card: MemberCard
    admin: bool


@dataclass(frozen=True)
class GroupState:
    """The membership at a set of heads: the group's name, and its members by
    identity key."""

    group_id: bytes
    name: str
    members: Mapping[bytes, GroupMember]
    heads: tuple[bytes, ...]

    @property
    def head(self) -> bytes:
        return head_hash(self.heads)

    def is_member(self, key: bytes) -> bool:
        return key in self.members

    def is_admin(self, key: bytes) -> bool:
        member = self.members.get(key)
        return member is not None and member.admin

    @property
    def admins(self) -> frozenset[bytes]:
        return frozenset(k for k, m in self.members.items() if m.admin)


@dataclass
class _Replay:
    """The membership while replaying, with the removals and demotions applied
    so far (as bit masks of operation indexes) for "removals win"."""

    name: str = ""
    members: dict[bytes, MemberCard] = field(default_factory=dict)
    admins: set[bytes] = field(default_factory=set)
    removed: dict[bytes, int] = field(default_factory=dict)
    demoted: dict[bytes, int] = field(default_factory=dict)

    def copy(self) -> _Replay:
        return _Replay(
            self.name, dict(self.members), set(self.admins), dict(self.removed), dict(self.demoted)
        )


def _problem(state: _Replay, op: Operation, past: int) -> GroupRule | None:
    """Which rule forbids ``op``'s author to make it in ``state`` (None: it may).

    The one rule, used on receipt (``state`` the membership at the
    operation's parents, ``past`` its ancestors) and in the replay
    (``state`` the membership at that point of the total order).
    """
    author, kind = op.author, op.kind
    if kind is OpKind.CREATE:
        return None if not state.members else GroupRule.CREATED_ONCE
    if author not in state.members:
        return GroupRule.AUTHOR_NOT_MEMBER
    if kind is OpKind.LEAVE:
        return None
    if author not in state.admins:
        return GroupRule.AUTHOR_NOT_ADMIN
    if kind is OpKind.ADD:
        assert op.card is not None
        key = op.card.identity_key
        if key in state.members:
            return GroupRule.ALREADY_MEMBER
        if state.removed.get(key, 0) & ~past:
            return GroupRule.REMOVED_CONCURRENTLY
        if len(state.members) >= MAX_GROUP_MEMBERS:
            return GroupRule.GROUP_FULL
        return None
    if kind is OpKind.RENAME:
        return None
    target = op.target
    assert target is not None
    if target == author and kind is OpKind.REMOVE:
        return GroupRule.LEAVE_TO_LEAVE
    if kind is OpKind.REMOVE:
        # A removal of someone a concurrent one removed already is recorded
        # again, so that an add that follows one of them only loses.
        return None if target in state.members or target in state.removed else GroupRule.NOT_MEMBER
    if target not in state.members:
        return GroupRule.NOT_MEMBER
    if kind is OpKind.PROMOTE:
        if target in state.admins:
            return GroupRule.ALREADY_ADMIN
        if state.demoted.get(target, 0) & ~past:
            return GroupRule.DEMOTED_CONCURRENTLY
        return None
    # DEMOTE, recorded again like a removal
    return None if target in state.admins or target in state.demoted else GroupRule.NOT_ADMIN


def _apply(state: _Replay, op: Operation, bit: int) -> None:
    """Make the change of an allowed operation."""
    kind, author = op.kind, op.author
    if kind is OpKind.CREATE:
        assert op.card is not None
        assert op.name is not None
        state.name = op.name
        state.members[author] = op.card
        state.admins.add(author)
    elif kind is OpKind.ADD:
        assert op.card is not None
        state.members[op.card.identity_key] = op.card
    elif kind is OpKind.RENAME:
        assert op.name is not None
        state.name = op.name
    elif kind is OpKind.PROMOTE:
        assert op.target is not None
        state.admins.add(op.target)
    else:  # REMOVE, LEAVE, DEMOTE: recorded for "removals win"
        gone = author if kind is OpKind.LEAVE else op.target
        assert gone is not None
        state.admins.discard(gone)
        state.demoted[gone] = state.demoted.get(gone, 0) | bit
        if kind is not OpKind.DEMOTE:
            state.members.pop(gone, None)
            state.removed[gone] = state.removed.get(gone, 0) | bit


# -- the log ------------------------------------------------------------------------


class PostDecision(enum.Enum):
    """What a receiver does with a group message its author sent at some heads."""

    ACCEPT = "accept"
    FETCH = "fetch"  # heads unknown here: fetch the missing operations first
    NOT_A_MEMBER = "not-a-member"  # the author was no member at the heads it names
    REMOVED = "removed"  # a member there, but removed (or left) in our log since


@dataclass(frozen=True)
class PostCheck:
    decision: PostDecision
    missing: tuple[bytes, ...] = ()


class GroupLog:
    """One group's operations, checked on receipt, and its membership.

    Operations are kept by hash, each with an index (its order of arrival
    here) and its ancestors as a bit mask of indexes, so "is X an ancestor
    of Y" and "the causal past of these heads" are integer operations.
    """

    def __init__(self, create: Operation) -> None:
        if create.kind is not OpKind.CREATE:
            raise GroupNotAllowedError("a group's log starts with its create", op=create.hash)
        create.verify()
        self.group_id: Final = create.group_id
        self._ops: list[Operation] = []
        self._index: dict[bytes, int] = {}
        self._past: list[int] = []  # strict ancestors of each op, a bit mask
        self._children: list[list[int]] = []
        self._by_seq: dict[tuple[bytes, int], bytes] = {}
        self._bytes = 0
        self._heads: set[bytes] = set()
        self._insert(create)
        self._full = self._replay_state(self._all())  # the replay of the whole log
        self._state = self._public(self._full, self.heads)

    def __repr__(self) -> str:
        return f"GroupLog({self.group_id.hex()}, {len(self._ops)} ops)"

    def __len__(self) -> int:
        return len(self._ops)

    def __contains__(self, op_hash: object) -> bool:
        return op_hash in self._index

    @property
    def heads(self) -> tuple[bytes, ...]:
        return tuple(sorted(self._heads))

    @property
    def head(self) -> bytes:
        return head_hash(self._heads)

    @property
    def state(self) -> GroupState:
        return self._state

    @property
    def byte_size(self) -> int:
        return self._bytes

    def operation(self, op_hash: bytes) -> Operation:
        return self._ops[self._index[op_hash]]

    def _all(self) -> int:
        return (1 << len(self._ops)) - 1

    def _insert(self, op: Operation) -> None:
        index = len(self._ops)
        past = 0
        for parent in op.parents:
            p = self._index[parent]
            past |= self._past[p] | (1 << p)
            self._children[p].append(index)
            self._heads.discard(parent)
        self._ops.append(op)
        self._index[op.hash] = index
        self._past.append(past)
        self._children.append([])
        self._by_seq[op.author, op.seq] = op.hash
        self._bytes += len(op.encode())
        self._heads.add(op.hash)

    # -- receiving ---------------------------------------------------------------

    def add(self, op: Operation) -> GroupState:
        """Check ``op`` (groups.md §5, in that order) and, if it passes, add it
        to the log; the membership after it. A :class:`GroupError` otherwise,
        and the log is as it was."""
        if op.group_id != self.group_id:
            raise GroupUnknownError("the operation is of another group", op=op.hash)
        if op.hash in self._index:
            raise GroupReplayError("the log holds this operation already", op=op.hash)
        op.verify()
        if len(self._ops) >= MAX_GROUP_LOG_OPS or (
            self._bytes + len(op.encode()) > MAX_GROUP_LOG_BYTES
        ):
            raise GroupBoundError(
                f"the log is full ({MAX_GROUP_LOG_OPS} operations or {MAX_GROUP_LOG_BYTES} bytes)",
                op=op.hash,
            )
        if op.kind is OpKind.CREATE:
            created = GroupRule.CREATED_ONCE
            raise GroupNotAllowedError(created.value, op=op.hash, rule=created)
        missing = tuple(p for p in op.parents if p not in self._index)
        if missing:
            raise GroupMissingParentError(
                f"{len(missing)} parents are not in the log", op=op.hash, missing=missing
            )
        other = self._by_seq.get((op.author, op.seq))
        if other is not None:
            raise GroupForkError(
                f"its author signed another operation with seq {op.seq}", op=op.hash, other=other
            )
        past = self._past_of(op.parents)
        earlier = sum(1 for i in _bits(past) if self._ops[i].author == op.author)
        if earlier != op.seq - 1:
            raise GroupOrderError(
                f"seq {op.seq} does not follow its author's {earlier} operations before it",
                op=op.hash,
            )
        # An operation made on all our heads follows every operation we hold:
        # it comes last in the replay order, and the state at its parents is
        # the whole log's. Else both are replayed.
        on_top = set(op.parents) == self._heads
        at_parents = self._full if on_top else self._replay_state(past)
        rule = _problem(at_parents, op, past)
        if rule is not None:
            words = rule.value
            if rule is GroupRule.GROUP_FULL:
                words += f" (a group has at most {MAX_GROUP_MEMBERS} members)"
            raise GroupNotAllowedError(f"{op.kind.name.lower()}: {words}", op=op.hash, rule=rule)
        self._insert(op)
        if on_top:
            self._full = at_parents.copy()
            _apply(self._full, op, 1 << (len(self._ops) - 1))
        else:
            self._full = self._replay_state(self._all())
        self._state = self._public(self._full, self.heads)
        return self._state

    def _past_of(self, heads: Iterable[bytes]) -> int:
        """The operations at or before ``heads`` (all known), as a bit mask."""
        mask = 0
        for head in heads:
            i = self._index[head]
            mask |= self._past[i] | (1 << i)
        return mask

    # -- replay --------------------------------------------------------------------

    def _order(self, within: int) -> list[int]:
        """The total order of the operations in ``within`` (closed under
        ancestors): Kahn's topological order, the smallest hash first among
        those whose parents are all placed (groups.md §4.1)."""
        waiting: dict[int, int] = {}
        ready: list[tuple[bytes, int]] = []
        for i in _bits(within):
            waiting[i] = len(self._ops[i].parents)
            if not waiting[i]:
                heapq.heappush(ready, (self._ops[i].hash, i))
        order = []
        while ready:
            _, i = heapq.heappop(ready)
            order.append(i)
            for child in self._children[i]:
                if child in waiting:
                    waiting[child] -= 1
                    if not waiting[child]:
                        heapq.heappush(ready, (self._ops[child].hash, child))
        return order

    def _replay_state(self, within: int) -> _Replay:
        state = _Replay()
        for i in self._order(within):
            op = self._ops[i]
            if _problem(state, op, self._past[i]) is None:
                _apply(state, op, 1 << i)
        return state

    def _replay(self, within: int) -> GroupState:
        state = self._replay_state(within)
        heads = tuple(
            sorted(
                self._ops[i].hash
                for i in _bits(within)
                if not any((within >> c) & 1 for c in self._children[i])
            )
        )
        return self._public(state, heads)

    def _public(self, state: _Replay, heads: tuple[bytes, ...]) -> GroupState:
        return GroupState(
            self.group_id,
            state.name,
            {k: GroupMember(c, k in state.admins) for k, c in sorted(state.members.items())},
            heads,
        )

    def ordered(self) -> list[Operation]:
        """Every operation, in the total order of the replay."""
        return [self._ops[i] for i in self._order(self._all())]

    def state_at(self, heads: Sequence[bytes]) -> GroupState:
        """The membership at ``heads``; :class:`GroupMissingParentError` for a
        head not in the log."""
        missing = tuple(h for h in heads if h not in self._index)
        if missing:
            raise GroupMissingParentError("heads not in the log", missing=missing)
        return self._replay(self._past_of(heads))

    # -- serving and checking others -----------------------------------------------------

    def since(
        self, known: Sequence[bytes], limit: int = MAX_GROUP_OPS_PER_FETCH
    ) -> list[Operation]:
        """What a member whose heads are ``known`` lacks, in replay order (each
        operation's parents come before it), at most ``limit`` (bounded by
        MAX_GROUP_OPS_PER_FETCH): the answer to a fetch. Heads unknown here
        are ignored."""
        limit = max(0, min(limit, MAX_GROUP_OPS_PER_FETCH))
        have = self._past_of(h for h in known if h in self._index)
        return [self._ops[i] for i in self._order(self._all()) if not (have >> i) & 1][:limit]

    def may_post(self, author: bytes, heads: Sequence[bytes]) -> PostCheck:
        """Whether a group message ``author`` sent at ``heads`` is accepted
        (groups.md §6): the author is a member at those heads and still one
        in this log (a removal or leave wins over messages sent concurrently
        with it)."""
        if not heads:
            return PostCheck(PostDecision.NOT_A_MEMBER)
        missing = tuple(sorted({h for h in heads if h not in self._index}))
        if missing:
            return PostCheck(PostDecision.FETCH, missing)
        if not self.state_at(heads).is_member(author):
            return PostCheck(PostDecision.NOT_A_MEMBER)
        if not self._state.is_member(author):
            return PostCheck(PostDecision.REMOVED)
        return PostCheck(PostDecision.ACCEPT)


def _bits(mask: int) -> Iterable[int]:
    i = 0
    while mask:
        if mask & 1:
            yield i
        mask >>= 1
        i += 1


class GroupBook:
    """The groups one endpoint keeps, at most MAX_GROUPS: an operation is routed
    to its group's log (:class:`GroupUnknownError` when there is none)."""

    def __init__(self) -> None:
        self._logs: dict[bytes, GroupLog] = {}

    def __repr__(self) -> str:
        return f"GroupBook({len(self._logs)} groups)"

    def __len__(self) -> int:
        return len(self._logs)

    def log(self, group_id: bytes) -> GroupLog:
        found = self._logs.get(group_id)
        if found is None:
            raise GroupUnknownError(f"no group {group_id.hex()}")
        return found

    def start(self, create: Operation) -> GroupLog:
        """Keep the log of a new group (one we created, or were added to)."""
        if create.group_id in self._logs:
            raise GroupReplayError("that group is kept already", op=create.hash)
        if len(self._logs) >= MAX_GROUPS:
            raise GroupBoundError(f"{MAX_GROUPS} groups are kept already", op=create.hash)
        log = GroupLog(create)
        self._logs[create.group_id] = log
        return log

    def receive(self, op: Operation) -> GroupState:
        """Add ``op`` to its group's log (:meth:`GroupLog.add`)."""
        found = self._logs.get(op.group_id)
        if found is None:
            raise GroupUnknownError("no log of that group here", op=op.hash)
        return found.add(op)

    def forget(self, group_id: bytes) -> None:
        self._logs.pop(group_id, None)
