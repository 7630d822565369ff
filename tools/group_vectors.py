"""Test vectors of group membership (protocol-spec/groups.md): signed
operations, a log with two concurrent branches and their merge, its head
hash, replay order and membership, and operations a receiver refuses."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any, Final

from onionpost.errors import GroupError
from onionpost.proto import messages
from onionpost.proto.groups import (
    GroupLog,
    MemberCard,
    Operation,
    OpKind,
    head_hash,
    sign_operation,
)
from onionpost.proto.identity import Identity

__all__ = ["GROUPS_FILE", "build_groups"]

GROUPS_FILE: Final = "groups-v1.json"
_PROVENANCE: Final = (
    "Produced by `python -m tools.vectorgen protocol-spec/vectors` (`make vectors`) with "
    "onionpost.proto.groups (protocol-spec/groups.md). Keys, client-authorization keys and the "
    "group id are BLAKE2b-512 of `onionpost groups vector <what>` (first 16 or 32 bytes). "
    "Checked by tests/proto/test_group_vectors.py, which replays every operation through "
    "onionpost (the log's heads, head hash, replay order, membership, each refusal's reason) "
    "and recomputes independently: the encodings with `msgpack`, the hashes with `hashlib`, "
    "the Ed25519 signatures with `cryptography`, and the replay order and membership with a "
    "few lines of its own. `messages` are group messages at the log's heads as they go on the "
    "wire (spec.md §5.3: GroupText 92, GroupFileOffer 93), each with its fields and its "
    "canonical encoding, recomputed there with `msgpack`."
)
_T0: Final = 1_765_000_000_000


def _derive(what: str, size: int) -> bytes:
    return hashlib.blake2b(f"onionpost groups vector {what}".encode()).digest()[:size]


def _card(name: str) -> MemberCard:
    identity = Identity(_derive(f"{name} identity", 32))
    return MemberCard(identity.public_key, _derive(f"{name} client auth", 32), name)


def _op_json(op: Operation) -> dict[str, Any]:
    return {
        "kind": op.kind.name.lower(),
        "author": op.author.hex(),
        "seq": op.seq,
        "parents": [p.hex() for p in op.parents],
        "time_ms": op.time_ms,
        "name": op.name,
        "card": None
        if op.card is None
        else {
            "identity_key": op.card.identity_key.hex(),
            "client_auth_public": op.card.client_auth_public.hex(),
            "name": op.card.name,
        },
        "target": None if op.target is None else op.target.hex(),
        "signed_message": op.signed_message().hex(),
        "signature": op.signature.hex(),
        "encoded": op.encode().hex(),
        "hash": op.hash.hex(),
    }


def _message_json(what: str, record: messages.GroupText | messages.GroupFileOffer) -> Any:
    fields = messages.wire_values(record)
    return {
        "what": what,
        "tag": fields[0],
        "fields": [v.hex() if isinstance(v, bytes) else v for v in fields[1:]],
        "encoded": messages.encode(record).hex(),
    }


def _group_messages(group_id: bytes, heads: tuple[bytes, ...]) -> list[Any]:
    """A text and a file offer (unlabelled, and labelled) to the group at ``heads``."""
    joined = b"".join(heads)
    offer = messages.GroupFileOffer(
        _derive("file id", 16),
        _T0 + 60_000,
        "minutes.pdf",
        12_345,
        hashlib.blake2b(b"onionpost groups vector file content").digest(),
        "application/pdf",
        group_id,
        joined,
    )
    text = messages.GroupText(
        _derive("text id", 16),
        _T0 + 50_000,
        "the desk opens at six",
        "text/plain",
        group_id,
        joined,
    )
    return [
        _message_json("text", text),
        _message_json("file_offer", offer),
        _message_json("labelled_file_offer", replace(offer, label="TLP:AMBER")),
    ]


def build_groups(previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The document (``previous`` is unused: Ed25519 signatures are deterministic)."""
    people = {n: Identity(_derive(f"{n} identity", 32)) for n in ("alice", "bob", "carol", "dave")}
    group_id = _derive("group id", 16)
    seqs = dict.fromkeys(people, 0)

    def make(who: str, parents: tuple[bytes, ...], kind: OpKind, **args: Any) -> Operation:
        seqs[who] += 1
        return sign_operation(
            people[who], group_id, seqs[who], parents, _T0 + 1000 * sum(seqs.values()), kind, **args
        )

    create = make("alice", (), OpKind.CREATE, name="night desk", card=_card("alice"))
    log = GroupLog(create)
    ops = [create]

    def step(
        who: str, kind: OpKind, *, parents: tuple[bytes, ...] | None = None, **args: Any
    ) -> Operation:
        op = make(who, log.heads if parents is None else parents, kind, **args)
        log.add(op)
        ops.append(op)
        return op

    step("alice", OpKind.ADD, card=_card("bob"))
    step("alice", OpKind.ADD, card=_card("carol"))
    base = step("alice", OpKind.PROMOTE, target=people["bob"].public_key)
    # Two admins at once, on the same heads: two branches.
    step("alice", OpKind.REMOVE, parents=(base.hash,), target=people["carol"].public_key)
    promoted = step("bob", OpKind.PROMOTE, parents=(base.hash,), target=people["carol"].public_key)
    step("bob", OpKind.RENAME, parents=(promoted.hash,), name="night shift")
    # The merge: its parents are both branches' heads.
    merge = step("alice", OpKind.ADD, card=_card("dave"))
    assert len(merge.parents) == 2
    order = [op.hash.hex() for op in log.ordered()]
    state = log.state

    refusals = []
    carol_add = sign_operation(
        people["carol"], group_id, 1, (base.hash,), _T0, OpKind.ADD, card=_card("dave")
    )
    fork = sign_operation(
        people["bob"], group_id, 2, log.heads, _T0, OpKind.RENAME, name="another name"
    )
    # alice's operation with bob's signature over it
    claimed = sign_operation(
        people["alice"], group_id, seqs["alice"] + 1, log.heads, _T0, OpKind.RENAME, name="forged"
    )
    forged = replace(claimed, signature=people["bob"].sign(claimed.signed_message()))
    for what, op in (
        ("not-allowed", carol_add),
        ("fork", fork),
        ("bad-signature", forged),
        ("replayed", merge),
    ):
        try:
            log.add(op)
        except GroupError as exc:
            refusals.append(
                {"what": what, "reason": exc.reason.value, "encoded": op.encode().hex()}
            )
        else:  # pragma: no cover - the generator's own check
            raise SystemExit(f"group vector: {what} was accepted")
    return {
        "provenance": _PROVENANCE,
        "vectors": [
            {
                "group_id": group_id.hex(),
                "identity_seeds": {n: i.seed.hex() for n, i in people.items()},
                "operations": [_op_json(op) for op in ops],
                "heads": [h.hex() for h in log.heads],
                "head": log.head.hex(),
                "head_of_first": head_hash([create.hash]).hex(),
                "replay_order": order,
                "name": state.name,
                "members": [
                    {"identity_key": k.hex(), "name": m.card.name, "admin": m.admin}
                    for k, m in state.members.items()
                ],
                "refusals": refusals,
                "messages": _group_messages(group_id, log.heads),
            }
        ],
    }
