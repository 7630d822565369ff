"""``onionpost list`` and ``send --list`` through click's CliRunner, against a
real daemon on in-memory endpoints.

The daemon serves its local API on a socket in a short home directory; each
command runs in a thread of its own (CliRunner is synchronous, and starts a
trio run of its own to talk to the daemon).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result

from onionpost import api
from onionpost.cli import _send_cmd as send_module
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


async def test_list_commands_and_send_to_a_list(tmp_path: Path) -> None:
    async with network(tmp_path) as (net, nursery):
        alice, bob, carol = net.node("alice"), net.node("bob"), net.node("carol")
        befriend(alice, bob)
        befriend(alice, carol)
        for node in (alice, bob, carol):
            await node.start(nursery)
        assert alice.daemon is not None
        with short_tmpdir() as home:
            await nursery.start(serve_api, alice.daemon, Paths.for_home(home).socket)

            made = await _run(home, "list", "create", "team", "--member", "bob")
            assert made.exit_code == 0, made.output
            assert made.stdout == "created list 'team': bob\n"
            changed = await _json(home, "list", "add", "team", "carol")
            assert changed["members"] == ["bob", "carol"]

            sent = await _json(home, "send", "--list", "team", "all hands at 10")
            assert [c["contact"] for c in sent["copies"]] == ["bob", "carol"]
            assert {c["state"] for c in sent["copies"]} == {"queued"}
            await until(lambda: all(len(n.inbox_from(alice)) == 1 for n in (bob, carol)))
            copy_ids = [bytes.fromhex(c["id"]) for c in sent["copies"]]
            await until(lambda: {alice.state(i) for i in copy_ids} == {"delivered"})

            shown = await _json(home, "list", "show", "team")
            assert shown["sends"][0]["id"] == sent["id"]
            assert {c["state"] for c in shown["sends"][0]["copies"]} == {"delivered"}
            people = await _run(home, "list", "show", "team")
            assert "bob" in people.stdout
            assert "delivered" in people.stdout
            one = await _json(home, "message", sent["copies"][0]["id"])
            assert (one["contact"], one["body"]) == ("bob", "all hands at 10")

            source = tmp_path / "memo.txt"
            source.write_bytes(b"memo")
            filed = await _json(home, "send", "--list", "team", "--file", str(source))
            assert filed["kind"] == "file"
            assert len(filed["copies"]) == 2
            # Its label leads, as for every message shown: the default, or --label.
            plain = await _run(home, "send", "--list", "team", "briefing")
            assert plain.stdout.startswith("[TLP:AMBER] text "), plain.output
            green = await _run(home, "send", "--list", "team", "b", "--label", "TLP:GREEN")
            assert green.stdout.startswith("[TLP:GREEN] text "), green.output

            listed = await _json(home, "list", "list")
            assert [(x["name"], x["members"]) for x in listed] == [("team", ["bob", "carol"])]
            removed = await _json(home, "list", "remove", "team", "bob")
            assert removed["members"] == ["carol"]
            alone = await _run(home, "send", "--list", "team", "just carol")
            assert "to list 'team' (1 copy, " in alone.stdout, alone.output

            # Bad input: a clear error, nothing changed.
            unknown = await _run(home, "send", "--list", "nope", "hello")
            assert unknown.exit_code != 0
            assert "no list named 'nope'" in unknown.output
            waiting = await _run(home, "send", "--list", "--wait", "team", "hello")
            assert waiting.exit_code == 2
            nobody = await _run(home, "list", "add", "team", "mallory")
            assert "unknown contact 'mallory'" in nobody.output
            twice = await _run(home, "list", "create", "TEAM")
            assert "already exists" in twice.output
            assert (await _json(home, "list", "show", "team"))["members"] == ["carol"]

            deleted = await _run(home, "list", "delete", "team")
            assert deleted.stdout == "deleted list 'team'\n"
            assert await _json(home, "list", "list") == []
            nursery.cancel_scope.cancel()


async def test_a_send_to_a_list_or_group_not_confirmed_in_time_says_where_to_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon does not answer in time: the command cannot say the copies
    went, nor that they did not; it names the command that tells (exit 3)."""
    async with network(tmp_path) as (net, nursery):
        alice, bob = net.node("alice"), net.node("bob")
        befriend(alice, bob)
        await alice.start(nursery)
        daemon = alice.daemon
        assert daemon is not None
        await daemon.lists.list_create(api.ListCreate("team", ("bob",)))
        await daemon.groups.group_create(api.GroupCreate("ops", ("bob",)))

        async def silent(request: object) -> object:
            await trio.sleep_forever()
            raise AssertionError("unreachable")

        for request in (api.ListSendText, api.GroupSendText):
            monkeypatch.setitem(daemon.handlers, request, silent)
        monkeypatch.setattr(send_module, "ANSWER_DEADLINE", 0.3)
        with short_tmpdir() as home:
            await nursery.start(serve_api, daemon, Paths.for_home(home).socket)
            for flag, name, show in (("--list", "team", "list"), ("--group", "ops", "group")):
                slow = await _run(home, "send", flag, name, "anyone there?")
                assert slow.exit_code == 3, slow.output
                assert slow.stderr.startswith(
                    f"onionpost: not confirmed: see 'onionpost {show} show {name}' ("
                ), slow.stderr
                assert "did not answer within 0.3 s" in slow.stderr
            nursery.cancel_scope.cancel()
