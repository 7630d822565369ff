"""Handling labels on the command line: send --label, the label first in
inbox, message, outbox and --json, contact set-max-label, forward; a label
refused is one line saying why, and nothing is queued."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from onionpost.cli import main
from onionpost.testing.doubles import MemoryBackend, ServerThread, short_tmpdir

Daemon = tuple[ServerThread, Path]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with short_tmpdir() as home:
        backend = MemoryBackend()
        backend.add("bob")
        backend.add("carol")
        with ServerThread(backend, home / "run" / "control.sock") as server:
            yield server, home


def invoke(runner: CliRunner, *args: str | Path) -> Result:
    return runner.invoke(main, [str(a) for a in args])


def refused(result: Result) -> str:
    assert result.exit_code == 1, (result.output, result.exception)
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("onionpost: ")
    return result.stderr


def test_send_with_a_label_shows_it_first(runner: CliRunner, daemon: Daemon) -> None:
    _server, home = daemon
    sent = invoke(runner, "--home", home, "send", "bob", "hi", "--label", "TLP:RED")
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.startswith("[TLP:RED] queued ")
    default = invoke(runner, "--home", home, "send", "bob", "hi")
    assert default.stdout.startswith("[TLP:AMBER] queued ")
    as_json = json.loads(invoke(runner, "--home", home, "send", "bob", "x", "--json").stdout)
    assert as_json["label"] == "TLP:AMBER"


@pytest.mark.parametrize("label", ["TLP:WHITE", "tlp:red", "CUI//SP-CTI/NOFORN", "X:Y", "", " "])
def test_a_bad_label_is_one_line_and_queues_nothing(
    runner: CliRunner, daemon: Daemon, label: str
) -> None:
    server, home = daemon
    error = refused(invoke(runner, "--home", home, "send", "bob", "hi", "--label", label))
    assert "label" in error
    assert server.call(lambda: len(server.backend.messages)) == 0


def test_a_limit_refuses_with_its_reason(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    set_to = invoke(runner, "--home", home, "contact", "set-max-label", "bob", "TLP:AMBER")
    assert set_to.exit_code == 0, set_to.output
    assert "'bob': up to TLP:AMBER" in set_to.stdout
    error = refused(invoke(runner, "--home", home, "send", "bob", "hi", "--label", "TLP:RED"))
    assert "bob is sent nothing above TLP:AMBER from here" in error
    assert server.call(lambda: len(server.backend.messages)) == 0
    lifted = invoke(runner, "--home", home, "contact", "set-max-label", "bob", "--json")
    assert json.loads(lifted.stdout) == {"name": "bob", "max_labels": [], "accepts": []}
    empty = refused(invoke(runner, "--home", home, "forward", "1", "--to", "bob", "--label", ""))
    assert empty == (
        "onionpost: --label is empty: give a label (e.g. TLP:AMBER), or leave it out\n"
    )
    long = refused(invoke(runner, "--home", home, "send", "bob", "hi", "--label", "X" * 5000))
    assert long == "onionpost: --label is 5000 characters long: a label has at most 256\n"
    plain = invoke(runner, "--home", home, "contact", "set-max-label", "bob")
    assert plain.stdout == "'bob': no limit of ours\n"  # not "up to no limit"
    assert invoke(runner, "--home", home, "send", "bob", "hi", "--label", "TLP:RED").exit_code == 0


def test_inbox_message_and_json_show_the_label_first(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    got = server.call(server.backend.receive_text, "bob", "secret", "TLP:RED")
    listed = invoke(runner, "--home", home, "inbox")
    assert listed.stdout.startswith("[TLP:RED] #1 ")
    shown = invoke(runner, "--home", home, "message", got["id"])
    assert shown.stdout.splitlines()[0] == "[TLP:RED]"
    record = json.loads(invoke(runner, "--home", home, "message", got["id"], "--json").stdout)
    assert next(iter(record)) == "label"
    assert record["label"] == "TLP:RED"
    (line,) = invoke(runner, "--home", home, "inbox", "--json").stdout.splitlines()
    assert next(iter(json.loads(line))) == "label"
    invoke(runner, "--home", home, "send", "carol", "x", "--label", "TLP:GREEN")
    waiting = invoke(runner, "--home", home, "outbox")
    assert "[TLP:GREEN]" in waiting.stdout


def test_forward_keeps_raises_and_refuses(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    amber = server.call(server.backend.receive_text, "bob", "for you", "TLP:AMBER")
    red = server.call(server.backend.receive_text, "bob", "eyes only", "TLP:RED")
    kept = invoke(runner, "--home", home, "forward", amber["id"], "--to", "carol")
    assert kept.exit_code == 0, kept.output
    assert kept.stdout.startswith("[TLP:AMBER] forwarded as ")
    raised = invoke(
        runner, "--home", home, "forward", amber["id"], "--to", "carol", "--label", "TLP:RED"
    )
    # Raised to RED by the forward: a new RED message, carol its named recipient.
    assert raised.exit_code == 0, raised.output
    assert raised.stdout.startswith("[TLP:RED] forwarded as ")
    lowered = refused(
        invoke(
            runner, "--home", home, "forward", amber["id"], "--to", "carol", "--label", "TLP:GREEN"
        )
    )
    assert "never lowered" in lowered
    outside = refused(invoke(runner, "--home", home, "forward", red["id"], "--to", "carol"))
    assert "TLP:RED goes only to its named recipients" in outside
    back = invoke(runner, "--home", home, "forward", red["id"], "--to", "bob", "--json")
    assert json.loads(back.stdout)["label"] == "TLP:RED"
