"""A team channel of real daemons on the private Tor network (groups.md §11):
texts and a file from each member reach every other exactly once; a member
removed and one added while another is offline, whose copies wait in its
mailbox and reach it when it is back; kill -9 of a member's daemon right
after its send was queued, mid fan-out.

In the first team every endpoint is a contact of every other; in the second
two members are not each other's contacts and the group introduces them
(groups.md §9): tor client authorization of each other's card, their texts
both ways. Every wait is a condition under a deadline.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from onionpost.testing.endpoint import start_all
from onionpost.testing.mailbox import Mailbox, contact_status, endpoint_config, pair, wait_for
from onionpost.testing.team import Team
from onionpost.testing.testnet import Testnet

pytestmark = pytest.mark.tor

GROUP = "desk"
# Each side's onion service publishes a descriptor for the other's key first.
INTRO_SECONDS = 240.0


MAILBOX_SECONDS = 240.0


@pytest.fixture(scope="module")
def box(testnet: Testnet) -> Iterator[Mailbox]:
    root = Path(tempfile.mkdtemp(prefix="op-groups-box-", dir="/tmp"))
    mailbox = Mailbox(root, "box", testnet)
    start_all([mailbox])
    try:
        yield mailbox
    finally:
        mailbox.stop()


@pytest.fixture(scope="module")
def team(testnet: Testnet, box: Mailbox) -> Iterator[Team]:
    """Five endpoints, each the others' contact; dave has a mailbox, and every
    other endpoint knows it before the test starts."""
    root = Path(tempfile.mkdtemp(prefix="op-groups-", dir="/tmp"))
    team = Team.start(
        root, testnet, ["alice", "bob", "carol", "dave", "erin"], top_config=endpoint_config()
    )
    try:
        pair(team["dave"], box)
        # A text from dave to each carries its mailbox announcement.
        others = [name for name in team.names if name != "dave"]
        team.send_one_to_one("dave", others)
        for name in others:
            wait_for(
                lambda n=name: contact_status(team[n], "dave")["mailbox"] == box.address,
                f"{name} learning dave's mailbox",
                MAILBOX_SECONDS,
            )
        yield team
    finally:
        team.stop()


def test_a_team_channel_through_removal_addition_absence_and_a_crash(
    team: Team, box: Mailbox
) -> None:
    four = ["alice", "bob", "carol", "dave"]
    team.create(GROUP, "alice", four)  # erin comes later
    refused = team["alice"].cli("group", "remove", GROUP, "erin", check=False)
    assert refused.returncode != 0  # never a member: nothing to remove
    team.wait_members(GROUP, four)

    # Texts from each member reach every other exactly once.
    sent = {name: team.send(name, GROUP) for name in four}
    for name in four:
        team.wait_texts([body for author, body in sent.items() if author != name], [name])
        assert sent[name] not in team.bodies(name)  # no copy to its author

    # A file from each member reaches every other, whole, once.
    folder = Path(tempfile.mkdtemp(prefix="op-group-files-", dir="/tmp"))
    files = {author: team.send_file(author, GROUP, folder) for author in four}
    for author, (name, data) in files.items():
        team.wait_file(name, data, [n for n in four if n != author])

    # dave away; carol removed and erin added meanwhile; texts go on.
    team["dave"].stop()
    team["alice"].cli("group", "remove", GROUP, "carol")
    team["alice"].cli("group", "add", GROUP, "erin")
    now = ["alice", "bob", "dave", "erin"]
    team.wait_members(GROUP, now, at=["alice", "bob", "erin"])
    after = [team.send("alice", GROUP), team.send("bob", GROUP), team.send("erin", GROUP)]
    team.wait_texts(after[1:], ["alice"])
    team.wait_texts([after[0], after[2]], ["bob"])
    team.wait_texts(after[:2], ["erin"])
    # What waits for dave goes into its mailbox meanwhile.
    dave = team["dave"].json("whoami")["address"]
    wait_for(lambda: box.usage()[dave].envelopes >= 1, "a deposit for dave", MAILBOX_SECONDS)

    # dave back: the new membership and every text sent while it was away.
    team["dave"].start()
    team.wait_members(GROUP, now, at=["dave"])
    team.wait_texts(after, ["dave"])

    # kill -9 of bob's daemon the moment its send is queued; back on the same home.
    crashed = team.send("bob", GROUP)
    team["bob"].kill()
    team["bob"].start()
    team.wait_texts([crashed], ["alice", "dave", "erin"])

    # carol, removed, has nothing sent after her removal; nobody holds a text twice.
    held = team.bodies("carol")
    assert not set(held) & {*after, crashed}
    team.check_once(team.names)


def test_members_who_are_not_contacts_exchange_group_texts(testnet: Testnet) -> None:
    root = Path(tempfile.mkdtemp(prefix="op-intro-", dir="/tmp"))
    team = Team.start(root, testnet, ["ann", "ben", "cat"], strangers=[("ben", "cat")])
    try:
        team.create("intro", "ann")
        team.wait_members("intro", team.names)
        # Neither is the other's contact: each is introduced by ann.
        assert [c["name"] for c in team["ben"].json("contact", "list")] == ["ann"]
        shown = team["ben"].json("group", "show", "intro")
        cat = next(m for m in shown["members"] if m["name"] == "cat")
        assert (cat["contact"], cat["introduced_by"]) == (None, "ann")

        from_ben, from_cat = team.send("ben", "intro"), team.send("cat", "intro")
        team.wait_texts([from_cat], ["ben"], seconds=INTRO_SECONDS)
        team.wait_texts([from_ben], ["cat"], seconds=INTRO_SECONDS)
        team.wait_texts([from_ben, from_cat], ["ann"])
        team.check_once(team.names)
    finally:
        team.stop()
