"""``onionpost group`` and ``send --group`` through click's CliRunner, against a
real daemon on in-memory endpoints (as tests/cli/test_lists_cli.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import trio
from click.testing import CliRunner, Result

from onionpost.cli import main
from onionpost.home import Paths
from onionpost.host import serve_api
from onionpost.testing.doubles import short_tmpdir
from onionpost.testing.memory import befriend, network, until


async def _run(home: Path, *args: str) -> Result:
    def invoke() -> Result:
        return CliRunner().invoke(main, ["--home", str(home), *args])

    return await trio.to_thread.run_sync(invoke)


async def _json(home: Path, *args: str) -> Any:
    result = await _run(home, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


async def test_group_commands_and_send_to_a_group(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol, dave = (net.node(n) for n in ("alice", "bob", "carol", "dave"))
        for other in (bob, carol, dave):
            befriend(alice, other)
        for node in (alice, bob, carol):
            await node.start(nursery)
        assert alice.daemon is not None
        with short_tmpdir() as home:
            await nursery.start(serve_api, alice.daemon, Paths.for_home(home).socket)

            made = await _run(
                home, "group", "create", "ops", "--member", "bob", "--member", "carol"
            )
            assert made.exit_code == 0, made.output
            assert "members: alice (admin), bob, carol" in made.stdout
            added = await _json(home, "group", "add", "ops", "dave")
            assert [m["name"] for m in added["members"]] == ["alice", "bob", "carol", "dave"]
            promoted = await _json(home, "group", "promote", "ops", "bob")
            assert [m["name"] for m in promoted["members"] if m["admin"]] == ["alice", "bob"]
            demoted = await _json(home, "group", "demote", "ops", "bob")
            assert [m["name"] for m in demoted["members"] if m["admin"]] == ["alice"]
            removed = await _json(home, "group", "remove", "ops", "dave")
            assert len(removed["members"]) == 3
            renamed = await _json(home, "group", "rename", "ops", "ops-team")
            assert renamed["name"] == "ops-team"

            sent = await _json(home, "send", "--group", "ops-team", "all hands at 10")
            assert [c["contact"] for c in sent["copies"]] == ["bob", "carol"]
            assert sent["head"] == renamed["head"]
            copy_ids = [bytes.fromhex(c["id"]) for c in sent["copies"]]
            await until(lambda: {alice.state(i) for i in copy_ids} == {"delivered"})
            one = await _run(home, "message", sent["copies"][0]["id"])
            assert one.exit_code == 0, one.output
            assert "group      'ops-team'" in one.stdout
            assert "delivered 2/2" in one.stdout
            shown = await _run(home, "group", "show", "ops-team")
            assert "delivered 2/2" in shown.stdout
            # A contact renamed is shown by its new name (its card's is the old).
            await _run(home, "contact", "rename", "carol", "carla")
            shown = await _run(home, "group", "show", "ops-team")
            assert "members: alice (admin), bob [up], carla [up]" in shown.stdout
            await _run(home, "contact", "rename", "carla", "carol")
            # A file to the group: a copy per member, followed the same way.
            source = tmp_path / "brief.pdf"
            source.write_bytes(b"%PDF-1.7 brief")
            filed = await _run(home, "send", "--group", "ops-team", "--file", str(source))
            assert filed.exit_code == 0, filed.output
            assert filed.stdout.startswith("[TLP:AMBER] file ")  # the default label, shown
            assert "to group 'ops-team'" in filed.stdout
            sent_file = await _json(
                home, "send", "--group", "ops-team", "--file", str(source), "--label", "TLP:GREEN"
            )
            assert sent_file["kind"] == "file"
            file_ids = [bytes.fromhex(c["id"]) for c in sent_file["copies"]]
            await until(lambda: {alice.state(i) for i in file_ids} == {"delivered"})
            one_file = await _run(home, "message", sent_file["copies"][0]["id"])
            assert "file brief.pdf" in one_file.stdout
            assert "delivered 2/2" in one_file.stdout
            waited = await _run(
                home, "send", "--group", "ops-team", "--file", str(source), "--wait"
            )
            assert waited.exit_code == 2
            listed = await _json(home, "group", "list")
            assert [(g["name"], g["member"]) for g in listed] == [("ops-team", True)]

            left = await _run(home, "group", "leave", "ops-team")
            assert "no longer a member" in left.stdout
            # Piped, the table is as wide as it needs (rich would cut it at 80).
            table = await _run(home, "group", "list")
            assert "no (removed or left)" in table.stdout
            refused = await _run(home, "send", "--group", "ops-team", "hello?")
            assert refused.exit_code == 1
            assert "no longer a member" in refused.stderr
            both = await _run(home, "send", "--group", "--list", "ops-team", "x")
            assert both.exit_code == 2
            unknown = await _run(home, "group", "show", "nothing")
            assert unknown.exit_code == 1
            assert unknown.stderr.startswith("onionpost: ")
