"""Team channels over in-memory endpoints (groups.md): the local API's group
handlers, sends at a head as one copy per member, and bad input refused with
nothing stored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from onionpost import api
from onionpost.errors import (
    ConfigError,
    GroupNotAllowedError,
    GroupRule,
    NotFoundError,
    OnionpostError,
    UnknownContactError,
)
from onionpost.testing.memory import Node, befriend, network, until


def _snapshot(node: Node) -> tuple[object, ...]:
    db = node.store._db
    return tuple(
        db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
        for table in ("groups", "group_ops", "group_members", "group_messages", "messages")
    )


async def test_group_changes_are_signed_operations_of_its_log(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        others = [net.node(n) for n in ("bob", "carol", "dave")]
        for other in others:
            befriend(alice, other)
        await alice.start(nursery)
        groups = alice.daemon.groups  # type: ignore[union-attr]
        made = await groups.group_create(api.GroupCreate("ops", ("bob", "carol")))
        assert (made.name, made.member, made.admin, made.operations) == ("ops", True, True, 3)
        assert [(m.name, m.admin, m.contact) for m in made.members] == [
            ("alice", True, None),
            ("bob", False, "bob"),
            ("carol", False, "carol"),
        ]
        added = await groups.group_add(api.GroupAdd("OPS", ("dave",)))
        assert [m.name for m in added.members] == ["alice", "bob", "carol", "dave"]
        promoted = await groups.group_promote(api.GroupPromote(made.id, "bob"))
        assert {m.name for m in promoted.members if m.admin} == {"alice", "bob"}
        demoted = await groups.group_demote(api.GroupDemote("ops", "bob"))
        assert {m.name for m in demoted.members if m.admin} == {"alice"}
        renamed = await groups.group_rename(api.GroupRename("ops", "ops-team"))
        assert renamed.name == "ops-team"
        removed = await groups.group_remove(api.GroupRemove("ops-team", ("dave",)))
        assert [m.name for m in removed.members] == ["alice", "bob", "carol"]
        assert removed.head != made.head
        (listed,) = await groups.group_list(api.GroupList())
        assert (listed.id, listed.operations) == (made.id, 8)
        left = await groups.group_leave(api.GroupLeave("ops-team"))
        assert (left.member, left.admin) == (False, False)
        # Once out of it, we send nothing to it.
        before = _snapshot(alice)
        with pytest.raises(GroupNotAllowedError):
            await groups.group_send_text(api.GroupSendText("ops-team", "still here?"))
        with pytest.raises(GroupNotAllowedError):
            await groups.group_leave(api.GroupLeave("ops-team"))
        assert _snapshot(alice) == before


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (api.GroupAdd("ops", ("bob",)), OnionpostError),  # already a member
        (api.GroupAdd("ops", ("zed",)), UnknownContactError),
        (api.GroupAdd("ops", ("dave", "DAVE")), ConfigError),
        (api.GroupAdd("nothing", ("dave",)), NotFoundError),
        (api.GroupRemove("ops", ("dave",)), ConfigError),  # not a member
        (api.GroupRemove("ops", ("alice",)), ConfigError),  # leave instead
        (api.GroupPromote("ops", "zed"), ConfigError),
        (api.GroupDemote("ops", "bob"), OnionpostError),  # not an admin
        (api.GroupRename("ops", ""), OnionpostError),
        (api.GroupCreate("OPS", ("dave",)), ConfigError),  # a group here has that name
        (api.GroupShow("nothing"), NotFoundError),
        (api.GroupSendText("nothing", "hi"), NotFoundError),
        (api.GroupSendText("ops", "hi", id="00"), ConfigError),
    ],
)
async def test_bad_group_requests_change_nothing(
    tmp_path: Path, request_: api.Request[object], error: type[Exception]
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        for name in ("bob", "carol", "dave"):
            befriend(alice, net.node(name))
        await alice.start(nursery)
        daemon = alice.daemon
        assert daemon is not None
        await daemon.groups.group_create(api.GroupCreate("ops", ("bob", "carol")))
        before = _snapshot(alice)
        with pytest.raises(error):
            await daemon.handlers[type(request_)](request_)
        assert _snapshot(alice) == before
        # The daemon goes on serving.
        assert (await daemon.groups.group_show(api.GroupShow("ops"))).operations == 3


async def test_a_name_another_group_here_has_is_refused_and_an_id_prefix_names_one(
    tmp_path: Path,
) -> None:
    async with network(tmp_path) as (net, nursery):
        alice = net.node("alice")
        for name in ("bob", "carol"):
            befriend(alice, net.node(name))
        await alice.start(nursery)
        groups = alice.daemon.groups  # type: ignore[union-attr]
        ops = await groups.group_create(api.GroupCreate("ops", ("bob",)))
        intel = await groups.group_create(api.GroupCreate("intel", ("carol",)))
        before = _snapshot(alice)
        with pytest.raises(ConfigError) as taken:
            await groups.group_rename(api.GroupRename("intel", "Ops"))
        # Named as it is held, not as typed.
        assert str(taken.value) == (
            f"a group named 'ops' already exists here (id {ops.id}): choose another name"
        )
        with pytest.raises(ConfigError, match="a group named 'ops' already exists"):
            await groups.group_create(api.GroupCreate("OPS", ("carol",)))
        # A name no group can have, in the daemon's words (not a decoder's).
        for bad, says in (("", "a group name is empty"), ("  ", "a group name is empty")):
            for call in (
                groups.group_rename(api.GroupRename("intel", bad)),
                groups.group_create(api.GroupCreate(bad, ("carol",))),
            ):
                with pytest.raises(ConfigError) as refused:
                    await call
                assert str(refused.value) == says
        # Ourselves as a member: we are its first one.
        for me in ("alice", "ALICE", str(alice.address), str(alice.address)[:-6].upper()):
            with pytest.raises(ConfigError, match=f"'{me}' is this endpoint: whoever makes"):
                await groups.group_create(api.GroupCreate("new", ("bob", me)))
        assert _snapshot(alice) == before
        # Its own name in another letter case is a rename like any.
        assert (await groups.group_rename(api.GroupRename("ops", "OPS"))).name == "OPS"
        # The first 8 hex digits of an id name the group.
        shown = await groups.group_show(api.GroupShow(intel.id[:8]))
        assert (shown.id, shown.name) == (intel.id, "intel")


async def test_our_refused_changes_name_the_group_and_the_member(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = (net.node(n) for n in ("alice", "bob", "carol"))
        for one, other in ((alice, bob), (alice, carol), (bob, carol)):
            befriend(one, other)
        await alice.start(nursery)
        await bob.start(nursery)
        groups = alice.daemon.groups  # type: ignore[union-attr]
        made = await groups.group_create(api.GroupCreate("ops", ("bob",)))
        refusals = [
            (api.GroupAdd("ops", ("bob",)), "'bob' is already a member of 'ops'"),
            (api.GroupDemote("ops", "bob"), "'bob' is not an admin of 'ops'"),
            (api.GroupPromote("ops", "alice"), "'alice' is already an admin of 'ops'"),
        ]
        for request, says in refusals:
            with pytest.raises(GroupNotAllowedError) as refused:
                await alice.daemon.handlers[type(request)](request)  # type: ignore[union-attr]
            assert str(refused.value) == says
        # bob holds the group, as a member, not an admin.
        await until(lambda: bob.store.groups.known(bytes.fromhex(made.id)))
        with pytest.raises(GroupNotAllowedError) as not_admin:
            await bob.daemon.groups.group_add(api.GroupAdd("ops", ("carol",)))  # type: ignore[union-attr]
        assert str(not_admin.value) == (
            "only an admin of the group 'ops' may do that, and we are not one"
        )
        # Leaving needs no admin.
        left = await bob.daemon.groups.group_leave(api.GroupLeave("ops"))  # type: ignore[union-attr]
        assert not left.member
        # No longer a member: said so, not that an admin is needed; the log's
        # rule goes with the error.
        with pytest.raises(GroupNotAllowedError) as gone:
            await bob.daemon.groups.group_rename(api.GroupRename("ops", "mine"))  # type: ignore[union-attr]
        assert str(gone.value) == "we are no longer a member of the group 'ops'"
        assert gone.value.rule is GroupRule.AUTHOR_NOT_MEMBER


async def test_a_group_send_queues_a_copy_per_member_at_the_head(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = (net.node(n) for n in ("alice", "bob", "carol"))
        befriend(alice, bob)
        befriend(alice, carol)
        await alice.start(nursery)
        await bob.start(nursery)
        daemon = alice.daemon
        assert daemon is not None
        made = await daemon.groups.group_create(api.GroupCreate("ops", ("bob", "carol")))
        sent = await daemon.groups.group_send_text(api.GroupSendText("ops", "briefing at 9"))
        assert (sent.group, sent.group_id, sent.head) == ("ops", made.id, made.head)
        assert [c.contact for c in sent.copies] == ["bob", "carol"]
        assert len({c.id for c in sent.copies} | {sent.id}) == 3
        await until(lambda: alice.state(bytes.fromhex(sent.copies[0].id)) == "delivered")
        shown = await daemon.messages.message(api.GetMessage(sent.copies[0].id))
        assert (shown.group, shown.group_id) == ("ops", made.id)
        assert shown.group_send is not None
        assert shown.group_send.delivered == 1
        assert {c.contact: c.state for c in shown.group_send.copies} == {
            "bob": api.MessageState.DELIVERED,
            "carol": api.MessageState.QUEUED,
        }
        outbox = await daemon.messages.outbox(api.Outbox())
        assert [(m.contact, m.group) for m in outbox] == [("carol", "ops")]
        shown_group = await daemon.groups.group_show(api.GroupShow("ops"))
        reach = {m.name: m.reachable for m in shown_group.members}
        assert (reach["alice"], reach["carol"]) == (None, False)  # us; never up
        (latest,) = shown_group.sends
        assert latest.id == sent.id
        with pytest.raises(NotFoundError, match="is a send to the group 'ops', not one message"):
            await daemon.messages.message(api.GetMessage(sent.id))
        again = await daemon.groups.group_send_text(
            api.GroupSendText("ops", "briefing at 9", id=sent.id)
        )
        assert [c.id for c in again.copies] == [c.id for c in sent.copies]


async def test_a_group_send_from_a_home_that_has_moved_skips_the_members_told(
    tmp_path: Path,
) -> None:
    """A member told of this home's move (trust.md §6) takes nothing from its
    address: a group send queues it no copy (it could never arrive) and names
    it unreachable; a member not told yet still gets its copy."""
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = (net.node(n) for n in ("alice", "bob", "carol"))
        befriend(alice, bob)
        befriend(alice, carol)
        await alice.start(nursery)
        daemon = alice.daemon
        assert daemon is not None
        await daemon.groups.group_create(api.GroupCreate("ops", ("bob", "carol")))
        alice.store.trust.set_own_rotation(b"proof", b"k" * 32, 1)
        alice.store.trust.mark_rotation_told(alice.contact(bob).id, 2)
        sent = await daemon.groups.group_send_text(api.GroupSendText("ops", "after the move"))
        assert ([c.contact for c in sent.copies], sent.unreachable) == (["carol"], ("bob",))
        outbox = await daemon.messages.outbox(api.Outbox())
        assert [m.contact for m in outbox] == ["carol"]
