"""`export --group NAME`: a team channel's messages, both ways, in a bundle
that verifies offline; its membership operations are in the evidence log."""

from __future__ import annotations

import itertools
import zipfile
from pathlib import Path

import pytest

from onionpost import api
from onionpost.errors import ConfigError, NotFoundError
from onionpost.proto import bundle
from onionpost.proto.evidence import Entry, Event
from onionpost.testing.memory import befriend, network, until


async def test_a_group_exports_both_ways_and_verifies(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        nodes = [net.node(n) for n in ("alice", "bob", "carol")]
        alice, bob, _carol = nodes
        for a, b in itertools.combinations(nodes, 2):
            befriend(a, b)
        for node in nodes:
            await node.start(nursery)
        assert alice.daemon is not None
        assert bob.daemon is not None
        await alice.daemon.groups.group_create(api.GroupCreate("ops", ("bob", "carol")))
        await until(lambda: all(len(n.store.groups.all()) == 1 for n in nodes))
        mine = await alice.daemon.groups.group_send_text(api.GroupSendText("ops", "briefing"))
        theirs = await bob.daemon.groups.group_send_text(api.GroupSendText("ops", "noted"))
        aside = await alice.daemon.messages.send_text(api.SendText("bob", "not for the group"))
        await until(lambda: len(alice.inbox_from(bob)) == 1 and len(bob.inbox_from(alice)) == 2)
        assert {c.id for c in theirs.copies}  # bob's copies went out

        out = tmp_path / "ops.zip"
        result = await alice.daemon.evidence.evidence_export(
            api.EvidenceExport(str(out), group="ops")
        )
        # alice's two copies of "briefing" and bob's "noted"; not the text aside.
        assert result.messages == 3
        with zipfile.ZipFile(out) as archive:
            report = bundle.verify(archive)
        assert report.ok, report.problems
        ids = {c.id for c in mine.copies}
        with zipfile.ZipFile(out) as archive:
            exported = archive.read(bundle.BUNDLE_NAME).decode()
        assert all(i in exported for i in ids)
        assert aside.id not in exported

        # The membership operations are entries of alice's log.
        log = alice.store.evidence
        events = [Entry.decode(d).event for _, d in log.entries(0, 1000)]
        assert events.count(Event.GROUP_CHANGED) == 3  # create, add bob, add carol

        with pytest.raises(ConfigError, match="not both"):
            await alice.daemon.evidence.evidence_export(
                api.EvidenceExport(str(tmp_path / "x.zip"), ids=(aside.id,), group="ops")
            )
        with pytest.raises(NotFoundError, match="no group named 'nope'"):
            await alice.daemon.evidence.evidence_export(
                api.EvidenceExport(str(tmp_path / "y.zip"), group="nope")
            )
        assert not (tmp_path / "x.zip").exists()
        assert not (tmp_path / "y.zip").exists()
