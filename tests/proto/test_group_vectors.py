"""Replay protocol-spec/vectors/groups-v1.json through onionpost, and recompute
it without onionpost: msgpack, hashlib, cryptography and groups.md's rules
written again here in a few lines."""

from __future__ import annotations

import hashlib
import heapq
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from onionpost.errors import GroupError
from onionpost.proto.groups import GroupLog, Operation
from onionpost.proto.messages import decode
from tools.group_vectors import GROUPS_FILE, build_groups

FILE = Path(__file__).resolve().parents[2] / "protocol-spec" / "vectors" / GROUPS_FILE
DOCUMENT = json.loads(FILE.read_text())
(VECTOR,) = DOCUMENT["vectors"]
OPS = VECTOR["operations"]

SIGN = b"onionpost group op v1\x00"
HASH = b"onionpost group op hash v1\x00"
HEAD = b"onionpost group head v1\x00"


def test_the_code_generates_the_vectors_byte_for_byte() -> None:
    assert build_groups(DOCUMENT) == DOCUMENT


def test_the_log_replays_through_onionpost() -> None:
    ops = [Operation.decode(bytes.fromhex(o["encoded"])) for o in OPS]
    log = GroupLog(ops[0])
    for op in ops[1:]:
        log.add(op)
    assert [h.hex() for h in log.heads] == VECTOR["heads"]
    assert log.head.hex() == VECTOR["head"]
    assert [op.hash.hex() for op in log.ordered()] == VECTOR["replay_order"]
    assert log.state.name == VECTOR["name"]
    assert [
        {"identity_key": k.hex(), "name": m.card.name, "admin": m.admin}
        for k, m in log.state.members.items()
    ] == VECTOR["members"]
    for refusal in VECTOR["refusals"]:
        with pytest.raises(GroupError) as caught:
            log.add(Operation.decode(bytes.fromhex(refusal["encoded"])))
        assert caught.value.reason.value == refusal["reason"]


@pytest.mark.parametrize("item", OPS, ids=[f"{i}-{o['kind']}" for i, o in enumerate(OPS)])
def test_each_operation_recomputed_independently(item: dict[str, Any]) -> None:
    encoded = bytes.fromhex(item["encoded"])
    fields = msgpack.unpackb(encoded, raw=False)
    assert len(fields) == 9
    assert fields[0] == 1
    assert fields[1].hex() == VECTOR["group_id"]
    assert fields[2] == item["seq"]
    assert [p.hex() for p in fields[3]] == item["parents"] == sorted(item["parents"])
    assert fields[4].hex() == item["author"]
    kinds = ["create", "add", "remove", "leave", "rename", "promote", "demote"]
    assert kinds[fields[6]] == item["kind"]
    unsigned = msgpack.packb(fields[:8], use_bin_type=True)
    assert msgpack.packb(fields, use_bin_type=True) == encoded  # canonical
    assert SIGN + unsigned == bytes.fromhex(item["signed_message"])
    assert hashlib.sha256(HASH + unsigned).hexdigest() == item["hash"]
    key = Ed25519PublicKey.from_public_bytes(fields[4])
    key.verify(fields[8], SIGN + unsigned)  # raises if it does not verify


def test_the_head_hashes_recomputed() -> None:
    heads = sorted(bytes.fromhex(h) for h in VECTOR["heads"])
    assert hashlib.sha256(HEAD + b"".join(heads)).hexdigest() == VECTOR["head"]
    first = bytes.fromhex(OPS[0]["hash"])
    assert hashlib.sha256(HEAD + first).hexdigest() == VECTOR["head_of_first"]


def _order() -> list[str]:
    """groups.md §4.1: Kahn's order, the smallest hash first among the ready."""
    waiting = {o["hash"]: len(o["parents"]) for o in OPS}
    children: dict[str, list[str]] = {}
    for o in OPS:
        for p in o["parents"]:
            children.setdefault(p, []).append(o["hash"])
    ready = [h for h, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        h = heapq.heappop(ready)
        order.append(h)
        for c in children.get(h, []):
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, c)
    return order


def test_the_replay_order_and_membership_recomputed() -> None:
    order = _order()
    assert order == VECTOR["replay_order"]
    by_hash = {o["hash"]: o for o in OPS}

    def ancestors(h: str) -> set[str]:
        seen: set[str] = set()
        todo = list(by_hash[h]["parents"])
        while todo:
            p = todo.pop()
            if p not in seen:
                seen.add(p)
                todo += by_hash[p]["parents"]
        return seen

    # groups.md §4.2, for the kinds the vector uses
    name, members, admins = "", {}, set()
    removed: dict[str, set[str]] = {}
    for h in order:
        o = by_hash[h]
        author, kind = o["author"], o["kind"]
        if kind == "create":
            name, members[author] = o["name"], o["card"]["name"]
            admins.add(author)
            continue
        if author not in admins:
            continue
        if kind == "add":
            new = o["card"]["identity_key"]
            if new not in members and not removed.get(new, set()) - ancestors(h):
                members[new] = o["card"]["name"]
        elif kind == "remove":
            members.pop(o["target"], None)
            admins.discard(o["target"])
            removed.setdefault(o["target"], set()).add(h)
        elif kind == "promote":
            if o["target"] in members and not removed.get(o["target"], set()) - ancestors(h):
                admins.add(o["target"])
        elif kind == "rename":
            name = o["name"]
    assert name == VECTOR["name"]
    assert sorted(members.items()) == [(m["identity_key"], m["name"]) for m in VECTOR["members"]]
    assert sorted(admins) == [m["identity_key"] for m in VECTOR["members"] if m["admin"]]


@pytest.mark.parametrize("item", VECTOR["messages"], ids=lambda m: m["what"])
def test_each_group_message_recomputed_independently(item: dict[str, Any]) -> None:
    encoded = bytes.fromhex(item["encoded"])
    fields = msgpack.unpackb(encoded, raw=False)
    assert msgpack.packb(fields, use_bin_type=True) == encoded  # canonical
    assert fields[0] == item["tag"]
    shown = [f.hex() if isinstance(f, bytes) else f for f in fields[1:]]
    assert shown == item["fields"]
    # The group's id, then the log's heads concatenated, follow the content.
    at = 5 if item["tag"] == 92 else 7
    assert shown[at - 1] == VECTOR["group_id"]
    assert shown[at] == "".join(VECTOR["heads"])
    labelled = len(fields) == at + 3
    assert labelled == (item["what"] == "labelled_file_offer")
    assert decode(encoded) is not None
