"""The ``onionpost`` commands through click's CliRunner.

Commands that need a daemon run against the real API server over an
in-memory backend, served from its own thread and trio run on a socket in a
short temporary directory (CliRunner is synchronous).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from onionpost import api
from onionpost.cli import _common, main
from onionpost.cli import _send_cmd as send_module
from onionpost.testing.doubles import (
    MemoryBackend,
    ServerThread,
    address_for,
    card_for,
    short_tmpdir,
)


def no_daemon(home: object) -> str:
    return (
        f"onionpost: the daemon is not running for {home} "
        f"(start it with 'onionpost daemon --home {home}')\n"
    )


try:
    import onionpost.home  # noqa: F401 - is the home package there yet?

    HOME_MISSING = ""
except ImportError as exc:  # pragma: no cover - while the home package is being written
    HOME_MISSING = f"onionpost.home is not importable yet ({exc})"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def daemon() -> Iterator[tuple[ServerThread, Path]]:
    """A home whose run/control.sock is served; the backend knows contact 'bob'."""
    with short_tmpdir() as home:
        backend = MemoryBackend()
        backend.add("bob")
        with ServerThread(backend, home / "run" / "control.sock") as server:
            yield server, home


def invoke(runner: CliRunner, *args: str | Path, **kwargs: object) -> Result:
    return runner.invoke(main, [str(a) for a in args], **kwargs)  # type: ignore[arg-type]


def one_line_error(result: Result, code: int) -> str:
    """The result failed with ``code`` and exactly one 'onionpost: ...' line on stderr."""
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("onionpost: ")
    assert "Traceback" not in result.output
    return result.stderr


def json_lines(result: Result) -> list[object]:
    assert result.exit_code == 0, (result.output, result.exception)
    return [json.loads(line) for line in result.stdout.splitlines()]


# -- init and whoami ----------------------------------------------------------------------

needs_home = pytest.mark.skipif(bool(HOME_MISSING), reason=HOME_MISSING)


@needs_home
def test_init_creates_a_home_and_prints_its_card(runner: CliRunner) -> None:
    with short_tmpdir() as tmp:
        home = tmp / "home"
        result = invoke(runner, "init", "--home", home, "--name", "alice", "--key-file", tmp / "k")
        assert result.exit_code == 0, result.output
        card = result.stdout.strip()
        assert card.startswith("onionpost1:")
        assert "\n" not in card
        assert (home / "secrets.json").exists()
        assert (tmp / "k").stat().st_size == 32
        assert (home / "card.txt").read_text().strip() == card

        whoami = invoke(runner, "--home", home, "whoami")
        assert whoami.exit_code == 0
        assert card in whoami.stdout
        assert "alice" in whoami.stdout
        (identity,) = json_lines(invoke(runner, "whoami", "--home", home, "--json"))
        assert identity["card"] == card  # type: ignore[index]
        assert identity["name"] == "alice"  # type: ignore[index]
        assert identity["address"].endswith(".onion")  # type: ignore[index]

        again = invoke(runner, "init", "--home", home, "--name", "alice", "--key-file", tmp / "k")
        assert "already holds an endpoint" in one_line_error(again, 1)


@needs_home
def test_init_takes_a_passphrase_from_a_file_or_the_environment(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with short_tmpdir() as tmp:
        (tmp / "pass").write_text("correct horse battery staple\n")
        (tmp / "pass").chmod(0o600)
        by_file = invoke(
            runner,
            *("init", "--home", tmp / "a", "--name", "a", "--passphrase-file", tmp / "pass"),
            *("--kdf-cost", "floor"),
        )
        assert by_file.exit_code == 0, by_file.output
        monkeypatch.setenv("ONIONPOST_PASSPHRASE", "another passphrase")
        (created,) = json_lines(
            invoke(
                runner, "init", "--home", tmp / "b", "--name", "b", "--json", "--kdf-cost", "floor"
            )
        )
        assert created["home"] == str(tmp / "b")  # type: ignore[index]
        assert created["card"].startswith("onionpost1:")  # type: ignore[index]


@needs_home
def test_init_refuses_a_weak_passphrase_unless_told(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with short_tmpdir() as tmp:
        monkeypatch.setenv("ONIONPOST_PASSPHRASE", "alice2024")
        weak = invoke(runner, "init", "--home", tmp / "a", "--name", "alice")
        error = one_line_error(weak, 1)
        assert "too weak" in error
        assert "--weak-passphrase-ok" in error
        assert not (tmp / "a" / "secrets.json").exists()
        ok = invoke(
            runner,
            *("init", "--home", tmp / "a", "--name", "alice", "--weak-passphrase-ok"),
            *("--kdf-cost", "floor"),
        )
        assert ok.exit_code == 0, ok.output


@needs_home
def test_a_passphrase_file_is_held_to_the_key_file_rules(runner: CliRunner) -> None:
    with short_tmpdir() as tmp:
        secret = tmp / "pass"
        secret.write_text("correct horse battery staple\n")
        secret.chmod(0o644)
        args = ("init", "--home", tmp / "a", "--name", "a", "--passphrase-file", secret)
        assert "chmod 600" in one_line_error(invoke(runner, *args), 1)
        secret.chmod(0o600)
        secret.write_bytes(b"x" * 5000)
        assert "passphrase file" in one_line_error(invoke(runner, *args), 1)


@needs_home
def test_init_without_any_passphrase_source_fails_in_one_line(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ONIONPOST_PASSPHRASE", raising=False)
    with short_tmpdir() as tmp:
        result = invoke(runner, "init", "--home", tmp / "h", "--name", "x")
        assert "no passphrase" in one_line_error(result, 1)
        assert not (tmp / "h" / "secrets.json").exists()


def test_init_refuses_two_secret_sources(runner: CliRunner) -> None:
    with short_tmpdir() as tmp:
        (tmp / "p").write_text("x")
        result = invoke(
            runner,
            *("init", "--home", tmp / "h", "--name", "x"),
            *("--key-file", tmp / "k", "--passphrase-file", tmp / "p"),
        )
        assert result.exit_code == 2
        assert "not both" in result.output


@needs_home
def test_whoami_without_an_endpoint_is_an_environment_error(runner: CliRunner) -> None:
    with short_tmpdir() as tmp:
        result = invoke(runner, "whoami", "--home", tmp)
        assert "run 'onionpost init'" in one_line_error(result, 3)


# -- No daemon ---------------------------------------------------------------------------

DAEMON_COMMANDS = [
    ["status"],
    ["contact", "list"],
    ["contact", "add", card_for("carol")],
    ["contact", "remove", "bob"],
    ["contact", "verify", "bob"],
    ["send", "bob", "hi"],
    ["send", "bob", "--file", __file__],
    ["inbox"],
    ["inbox", "--follow"],
    ["retry"],
]


@pytest.mark.parametrize("args", DAEMON_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_no_daemon_is_exit_3_with_one_line(runner: CliRunner, args: list[str]) -> None:
    with short_tmpdir() as home:
        (home / "secrets.json").write_text("{}")  # an endpoint, its daemon not started
        result = invoke(runner, "--home", home, *args)
        assert one_line_error(result, 3) == no_daemon(home)


@pytest.mark.parametrize(
    ("made", "command", "args"),
    [
        ("registrar/registrar.json", "registrar serve", ["registrar", "status"]),
        ("mailbox.db", "mailbox serve", ["mailbox", "status"]),
    ],
)
def test_a_home_served_by_its_own_command_says_that_command(
    runner: CliRunner, made: str, command: str, args: list[str]
) -> None:
    """A registrar's or a mailbox's home is run by its own command, not by
    'onionpost daemon' (which would start an endpoint on it)."""
    with short_tmpdir() as home:
        (home / "secrets.json").write_text("{}")
        (home / made).parent.mkdir(parents=True, exist_ok=True)
        (home / made).write_text("{}")
        result = invoke(runner, "--home", home, *args)
        assert one_line_error(result, 3) == (
            f"onionpost: the daemon is not running for {home} "
            f"(start it with 'onionpost {command} --home {home}')\n"
        )


def test_a_home_with_no_endpoint_says_to_init_it(runner: CliRunner) -> None:
    # A --home forgotten or mistyped: "start the daemon" would only lead to
    # the daemon's own "no endpoint".
    with short_tmpdir() as home:
        result = invoke(runner, "--home", home / "typo", "status")
        assert one_line_error(result, 3) == (
            f"onionpost: no endpoint in {home / 'typo'}: run 'onionpost init' first "
            "(or give its --home)\n"
        )


def test_a_daemon_that_does_not_accept_cannot_hang_the_command(runner: CliRunner) -> None:
    with short_tmpdir() as home:
        (home / "run").mkdir()
        path = os.fspath(home / "run" / "control.sock")
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(path)
        listener.listen(0)
        queued = socket.socket(socket.AF_UNIX)
        queued.connect(path)  # fills the backlog: the next connect blocks
        started = time.monotonic()
        result = invoke(runner, "status", "--home", home)
        assert time.monotonic() - started < 5
        assert "is not accepting connections" in one_line_error(result, 3)
        queued.close()
        listener.close()


def test_a_daemon_that_does_not_answer_cannot_hang_the_command(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_common, "ANSWER_DEADLINE", 0.3)
    with short_tmpdir() as home:
        (home / "run").mkdir()
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(os.fspath(home / "run" / "control.sock"))
        listener.listen(4)
        result = invoke(runner, "status", "--home", home)
        assert "did not answer within 0.3 s" in one_line_error(result, 3)
        listener.close()


# -- Against the in-memory backend ---------------------------------------------------------


Daemon = tuple[ServerThread, Path]


def test_home_from_the_group_the_command_or_the_environment(
    runner: CliRunner, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, home = daemon
    assert invoke(runner, "--home", home, "retry").exit_code == 0
    assert invoke(runner, "retry", "--home", home).exit_code == 0
    # The command's --home wins over the group's.
    assert invoke(runner, "--home", "/nonexistent", "retry", "--home", home).exit_code == 0
    monkeypatch.setenv("ONIONPOST_HOME", str(home))
    assert invoke(runner, "retry").exit_code == 0


def test_contact_rename(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    address = server.backend.contacts["bob"]["address"]
    renamed = invoke(runner, "--home", home, "contact", "rename", "bob", "robert")
    assert renamed.exit_code == 0, renamed.output
    assert renamed.stdout == f"'bob' is now 'robert' ({address})\n"
    assert set(server.backend.contacts) == {"robert"}
    again = invoke(runner, "--home", home, "contact", "rename", "robert", "bob", "--json")
    assert json_lines(again) == [{"name": "bob", "address": address}]
    unknown = invoke(runner, "--home", home, "contact", "rename", "nobody", "x")
    assert unknown.exit_code != 0
    assert unknown.stderr == "onionpost: unknown contact 'nobody'\n"


def test_contact_commands(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    added = invoke(runner, "--home", home, "contact", "add", card_for("carol"))
    assert added.exit_code == 0, added.output
    assert "added contact 'carol'" in added.stdout
    with short_tmpdir() as tmp:
        (tmp / "dave.txt").write_text("# dave's card\n\n" + card_for("dave") + "\n")
        from_file = invoke(runner, "--home", home, "contact", "add", tmp / "dave.txt", "--json")
        assert json_lines(from_file) == [
            {"name": "dave", "address": server.backend.contacts["dave"]["address"]}
        ]
    from_stdin = invoke(
        runner, "--home", home, "contact", "add", "-", "--name", "erin", input=card_for("e")
    )
    assert from_stdin.exit_code == 0
    assert "erin" in server.backend.contacts

    listed = invoke(runner, "--home", home, "contact", "list")
    for name in ("bob", "carol", "dave", "erin"):
        assert name in listed.stdout
    (contacts,) = json_lines(invoke(runner, "--home", home, "contact", "list", "--json"))
    assert [c["name"] for c in contacts] == ["bob", "carol", "dave", "erin"]  # type: ignore[union-attr,index]

    verified = invoke(runner, "--home", home, "contact", "verify", "bob")
    assert "00000 00001 00002 00003\n" in verified.stdout
    assert "00008 00009 00010 00011\n" in verified.stdout
    (number,) = json_lines(invoke(runner, "--home", home, "contact", "verify", "bob", "--json"))
    assert number["safety_number"].split() == [f"{i:05d}" for i in range(12)]  # type: ignore[index]
    assert number["verified_ms"] is None  # type: ignore[index]
    assert "--confirm" in verified.stderr
    wrong = invoke(runner, "--home", home, "contact", "verify", "bob", "--confirm", "1 2 3")
    assert wrong.exit_code == 1
    assert "not the safety number" in wrong.stderr
    assert "bob" not in server.backend.verified
    heard = " ".join(f"{i:05d}" for i in range(12))
    confirmed = invoke(runner, "--home", home, "contact", "verify", "bob", "--confirm", heard)
    assert confirmed.exit_code == 0
    assert "verified: it matched on" in confirmed.stderr
    (number,) = json_lines(invoke(runner, "--home", home, "contact", "verify", "bob", "--json"))
    assert number["verified_ms"] == 1_700_000_000_000  # type: ignore[index]

    removed = invoke(runner, "--home", home, "contact", "remove", "carol", "--json")
    assert json_lines(removed)[0]["name"] == "carol"  # type: ignore[index]
    assert "carol" not in server.backend.contacts


def test_whoami_bundle_prints_the_card_and_our_endorsement(
    runner: CliRunner, daemon: Daemon
) -> None:
    server, home = daemon
    alone = invoke(runner, "--home", home, "whoami", "--bundle")
    assert alone.exit_code == 0
    assert alone.stdout == card_for("alice") + "\n"
    assert "no endorsement installed" in alone.stderr
    line = "onionpost-endorsement1:AAAA"
    server.backend.whoami_result = {
        "name": "alice",
        "address": address_for("alice"),
        "card": card_for("alice"),
        "endorsement": line,
    }
    bundle = invoke(runner, "--home", home, "whoami", "--bundle")
    assert bundle.stdout == f"{card_for('alice')}\n{line}\n"


def test_contact_errors_are_one_line(runner: CliRunner, daemon: Daemon) -> None:
    _, home = daemon
    bad = invoke(runner, "--home", home, "contact", "add", "onionpost1:")
    assert one_line_error(bad, 1) == (
        "onionpost: not a contact card: it does not start with 'onionpost1:'\n"
    )
    unknown = invoke(runner, "--home", home, "contact", "remove", "zed")
    assert one_line_error(unknown, 1) == "onionpost: unknown contact 'zed'\n"
    duplicate = invoke(runner, "--home", home, "contact", "add", card_for("bob"))
    assert "exists already" in one_line_error(duplicate, 1)
    with short_tmpdir() as tmp:
        (tmp / "two").write_text(card_for("x") + "\n" + card_for("y") + "\n")
        two = invoke(runner, "--home", home, "contact", "add", tmp / "two")
        assert "exactly one card line, found 2" in one_line_error(two, 1)
        # A card bundle (trust.md §7.5): the endorsement line goes with the card.
        line = "onionpost-endorsement1:AAAA"
        (tmp / "bundle").write_text(f"# carol\n{card_for('carol')}\n{line}\n")
        added = invoke(runner, "--home", home, "contact", "add", tmp / "bundle")
        assert added.exit_code == 0, added.output
        assert f"endorsement: judged: {line[:30]}" in added.stdout
        (tmp / "twice").write_text(f"{card_for('dave')}\n{line}\n{line}\n")
        twice = invoke(runner, "--home", home, "contact", "add", tmp / "twice")
        assert "holds 2 endorsement lines" in one_line_error(twice, 1)


def test_contact_add_of_a_bundle_without_a_fresh_list_says_one_comes(
    runner: CliRunner, daemon: Daemon
) -> None:
    # A bundle carries the endorsement, not the agency's list: until a session
    # brings one, the contact is "unverified: no-revocation-list", which alone
    # does not say what to do.
    server, home = daemon
    server.backend.endorsement_verdict = "unverified: no-revocation-list (agency acme)"
    with short_tmpdir() as tmp:
        (tmp / "bundle").write_text(f"{card_for('carol')}\nonionpost-endorsement1:AAAA\n")
        added = invoke(runner, "--home", home, "contact", "add", tmp / "bundle")
    assert added.exit_code == 0, added.output
    assert "endorsement: unverified: no-revocation-list (agency acme)" in added.stdout
    assert "one comes with the contact's first session" in added.stderr
    assert "trust revocations import FILE" in added.stderr


def test_send_text_from_the_argument_or_stdin(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    sent = invoke(runner, "--home", home, "send", "bob", "hello bob")
    assert sent.exit_code == 0
    assert sent.stdout.startswith("[TLP:AMBER] queued ")
    piped = invoke(runner, "--home", home, "send", "bob", input="from stdin\n")
    dashed = invoke(runner, "--home", home, "send", "bob", "-", "--json", input="line 1\nline 2\n")
    (queued,) = json_lines(dashed)
    assert queued["state"] == "queued"  # type: ignore[index]
    assert piped.exit_code == 0
    bodies = [m["body"] for m in server.backend.messages.values()]
    assert bodies == ["hello bob", "from stdin", "line 1\nline 2"]


def test_send_not_confirmed_in_time_says_the_id(
    runner: CliRunner, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daemon queues the text but does not answer in time: the command
    # cannot say it was sent, nor that it was not; it says how to find out.
    server, home = daemon
    monkeypatch.setattr(send_module, "ANSWER_DEADLINE", 0.3)
    hold = server.backend.hold = trio.Event()
    try:
        slow = invoke(runner, "--home", home, "send", "bob", "are you there?")
    finally:
        server.call(hold.set)
    error = one_line_error(slow, 3)
    (message_id,) = server.backend.messages
    assert error.startswith(f"onionpost: not confirmed: see 'onionpost message {message_id}' (")
    assert "did not answer within 0.3 s" in error
    assert server.backend.messages[message_id]["body"] == "are you there?"
    server.backend.hold = None
    shown = invoke(runner, "--home", home, "message", message_id)
    assert shown.exit_code == 0, shown.output
    assert "are you there?" in shown.stdout


def test_send_to_a_refused_contact_says_it_waits(runner: CliRunner, daemon: Daemon) -> None:
    """A contact refused for its endorsement (revoked) gets nothing: a send
    queues, and says so, with or without --wait (which otherwise waits
    without a word)."""
    server, home = daemon
    quiet = invoke(runner, "--home", home, "send", "bob", "before")
    assert quiet.exit_code == 0, quiet.output
    assert "refused" not in quiet.stderr
    server.backend.contacts["bob"]["refused"] = "refused: revoked"
    sent = invoke(runner, "--home", home, "send", "bob", "to a revoked contact")
    assert sent.exit_code == 0, sent.output
    assert sent.stdout.startswith("[TLP:AMBER] queued ")
    # The reason says its own verb: not "is refused (refused: ...)".
    assert sent.stderr.startswith(
        "nothing is sent to 'bob' (refused: revoked): this waits in the outbox"
    )
    waited = invoke(runner, "--home", home, "send", "bob", "and waited for", "--wait")
    assert "nothing is sent to 'bob' (refused: revoked)" in waited.stderr
    assert "Ctrl-C stops waiting" in waited.stderr


def test_send_refusals(runner: CliRunner, daemon: Daemon) -> None:
    _, home = daemon
    empty = invoke(runner, "--home", home, "send", "bob", input="")
    assert empty.exit_code == 2
    assert "empty" in empty.output
    too_long = invoke(runner, "--home", home, "send", "bob", "x" * 60_001)
    assert "--file" in one_line_error(too_long, 1)
    unknown = invoke(runner, "--home", home, "send", "zed", "hi")
    assert one_line_error(unknown, 1) == "onionpost: unknown contact 'zed'\n"
    both = invoke(runner, "--home", home, "send", "bob", "hi", "--file", __file__)
    assert both.exit_code == 2


def test_send_file_follows_it_until_delivered(runner: CliRunner, daemon: Daemon) -> None:
    _, home = daemon
    with short_tmpdir() as tmp:
        (tmp / "report.pdf").write_bytes(b"%PDF" * 5000)
        result = invoke(runner, "--home", home, "send", "bob", "--file", tmp / "report.pdf")
        assert result.exit_code == 0, result.output
        assert "queued" in result.stderr
        assert "delivered" in result.stderr
        assert "20.0 kB" in result.stderr  # rich's progress bar, finished

        states = json_lines(
            invoke(runner, "--home", home, "send", "bob", "--file", tmp / "report.pdf", "--json")
        )
        assert states[0]["name"] == "report.pdf"  # type: ignore[index]
        assert states[0]["size"] == 20_000  # type: ignore[index]
        assert [s["state"] for s in states[1:]] == ["sent"] + ["sending"] * 4 + ["delivered"]  # type: ignore[index]
        assert states[-2]["bytes"] == 20_000  # type: ignore[index]

        no_wait = invoke(
            runner, "--home", home, "send", "bob", "--file", tmp / "report.pdf", "--no-wait"
        )
        assert no_wait.exit_code == 0
        assert "delivered" not in no_wait.output


def test_send_file_that_is_refused_fails(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    server.backend.deliver_files = False
    with short_tmpdir() as tmp:
        (tmp / "big.bin").write_bytes(b"0" * 100)
        result = invoke(runner, "--home", home, "send", "bob", "--file", tmp / "big.bin")
        assert result.exit_code == 1
        assert result.stderr.endswith("onionpost: the file was not delivered: refused (reason 3)\n")


def test_send_from_a_home_that_has_moved(runner: CliRunner, daemon: Daemon) -> None:
    """A contact told of this home's move is refused a send (exit 1, what to
    do); what ends refused for the move says so, not a bare code."""
    server, home = daemon
    server.backend.contacts["bob"]["moved"] = "new.onion"
    refused = invoke(runner, "--home", home, "send", "bob", "hi")
    assert one_line_error(refused, 1) == (
        "onionpost: this home has moved to new.onion: 'bob' now accepts only the new "
        "address; send from the new home\n"
    )
    del server.backend.contacts["bob"]["moved"]
    server.backend.deliver_files = False
    server.backend.file_refusal = api.REASON_MOVED
    with short_tmpdir() as tmp:
        (tmp / "left.bin").write_bytes(b"0" * 100)
        result = invoke(runner, "--home", home, "send", "bob", "--file", tmp / "left.bin")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "onionpost: the file was not delivered: refused "
        "(reason 256: this home moved; send it again from the new home)\n"
    )


def test_inbox_lists_escapes_and_pages(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    server.call(server.backend.receive_text, "bob", "hello\nsecond line")
    server.call(server.backend.receive_text, "bob", "\x1b[31mred\x1b[0m \u202egnp.exe")
    listed = invoke(runner, "--home", home, "inbox")
    assert listed.exit_code == 0
    assert "#1 " in listed.stdout
    assert "bob: hello\n    second line\n" in listed.stdout
    assert "\x1b" not in listed.stdout
    assert "\u202e" not in listed.stdout
    assert "\\u001b[31mred" in listed.stdout
    messages = json_lines(invoke(runner, "--home", home, "inbox", "--json"))
    assert [m["seq"] for m in messages] == [1, 2]  # type: ignore[index]
    assert messages[1]["body"].startswith("\x1b[31m")  # type: ignore[index]  # JSON keeps it exact
    after = json_lines(invoke(runner, "--home", home, "inbox", "--json", "--after", "1"))
    assert [m["seq"] for m in after] == [2]  # type: ignore[index]
    for _ in range(150):
        server.call(server.backend.receive_text, "bob", "more")
    everything = json_lines(invoke(runner, "--home", home, "inbox", "--json"))
    assert [m["seq"] for m in everything] == list(range(1, 153))  # type: ignore[index]
    empty = invoke(runner, "--home", home, "inbox", "--after", "152")
    assert empty.stdout == ""
    assert "no messages after #152" in empty.stderr


def test_inbox_exports_files_inside_the_directory_only(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    server.call(server.backend.receive_file, "bob", "../../evil.sh", b"#!/bin/sh\n")
    server.call(server.backend.receive_file, "bob", "photo.jpg", b"jpeg 1")
    server.call(server.backend.receive_file, "bob", "photo.jpg", b"jpeg 2")
    with short_tmpdir() as tmp:
        out = tmp / "received"
        result = invoke(runner, "--home", home, "inbox", "--export-dir", out, "--json")
        records = json_lines(result)
        assert [Path(r["exported_to"]).name for r in records] == [  # type: ignore[index]
            "evil.sh",
            "photo.jpg",
            "photo (1).jpg",
        ]
        assert sorted(p.name for p in tmp.rglob("*") if p.is_file()) == [
            "evil.sh",
            "photo (1).jpg",
            "photo.jpg",
        ]
        assert (out / "photo (1).jpg").read_bytes() == b"jpeg 2"
        assert out.stat().st_mode & 0o777 == 0o700


def test_inbox_follow_streams_new_messages(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    server.call(server.backend.receive_text, "bob", "old")
    outcome: list[Result] = []
    follower = threading.Thread(
        target=lambda: outcome.append(invoke(runner, "--home", home, "inbox", "-f", "--json"))
    )
    follower.start()
    deadline = time.monotonic() + 10
    while server.call(server.backend.live_subscribers) == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    server.call(server.backend.receive_text, "bob", "new 1")
    outgoing = {
        "id": "ab" * 16,
        "contact": "bob",
        "kind": "text",
        "created_ms": 1,
        "state": "queued",
    }
    server.call(server.backend.publish, "message", outgoing | {"direction": "out", "body": "mine"})
    server.call(server.backend.receive_text, "bob", "new 2")
    time.sleep(0.2)
    # The daemon goes away: the follower ends with one line, exit 3.
    for _, channel in server.call(lambda: list(server.backend.subscribers)):
        server.call(channel.close)
    follower.join(10)
    (result,) = outcome
    assert result.exit_code == 3
    assert [json.loads(line)["body"] for line in result.stdout.splitlines()] == [
        "old",
        "new 1",
        "new 2",
    ]
    assert result.stderr.startswith("onionpost: the daemon ended the subscription")


def test_status_shows_a_table_and_json(runner: CliRunner, daemon: Daemon) -> None:
    _, home = daemon
    result = invoke(runner, "--home", home, "status")
    assert result.exit_code == 0
    assert "ok (published)" in result.stdout
    assert "1, a session up with 0" in result.stdout
    assert "bob" in result.stdout
    assert "timeout" in result.stdout  # the last error, in words
    assert "in 12 s" in result.stdout  # when the next dial is due
    (report,) = json_lines(invoke(runner, "--home", home, "status", "--json"))
    assert report["tor"]["state"] == "ok"  # type: ignore[index]
    assert report["contacts"][0]["name"] == "bob"  # type: ignore[index]
    assert report["contacts"][0]["retry_in"] == 12.0  # type: ignore[index]
    assert report["registrar"] is None  # type: ignore[index]
    assert "registrar" not in result.stdout
    # A dial under way (tens of seconds to a contact away): said, with how long.
    server, _ = daemon
    server.backend.contacts["bob"].update(retry_in=None, dialing_for=21.4)
    dialing = invoke(runner, "--home", home, "status")
    assert "dialing (21 s)" in dialing.stdout


def test_status_shows_the_registrar_and_why_its_last_round_failed(
    runner: CliRunner, daemon: Daemon
) -> None:
    server, home = daemon
    server.backend.registrar_status = {
        "address": "r" * 56 + ".onion",
        "refresh_s": 60.0,
        "rounds": 3,
        "last_round_ms": None,
        "last_error": "descriptor-not-found",
    }
    result = invoke(runner, "--home", home, "status")
    assert result.exit_code == 0
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("registrar"))
    assert "r" * 56 + ".onion" in line
    assert "last failed: descriptor-not-found" in line
    # Its interval and the rounds done, as trust.md §8.6 says status shows them.
    assert "every 60 s" in line
    assert "last good round never (3 since start)" in line
    (report,) = json_lines(invoke(runner, "--home", home, "status", "--json"))
    assert report["registrar"]["rounds"] == 3  # type: ignore[index]


def test_status_says_what_a_registrar_refusing_our_tor_key_means(
    runner: CliRunner, daemon: Daemon
) -> None:
    # A revoked endpoint's key leaves the registrar's authorized set (trust.md
    # §8.3): its rounds fail with client-auth-wrong, which alone says nothing
    # to its user.
    server, home = daemon
    server.backend.registrar_status = {
        "address": "r" * 56 + ".onion",
        "refresh_s": 900.0,
        "rounds": 1,
        "last_round_ms": 1_796_621_975_670,
        "last_error": "client-auth-wrong",
    }
    result = invoke(runner, "--home", home, "status")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "every 900 s, last good round 2026-12-07 05:39:35 UTC (1 since start)" in text
    assert "last failed: client-auth-wrong (the registrar no longer lets this endpoint in" in text
    assert "ask the agency" in text


def test_status_warns_that_the_agencys_delegation_is_ending(
    runner: CliRunner, daemon: Daemon
) -> None:
    # Our endorsement ends with the delegation it was signed under; the daemon
    # reports its end within two weeks of it (trust.md §8.1).
    server, home = daemon
    quiet = invoke(runner, "--home", home, "status")
    assert quiet.exit_code == 0, quiet.output
    assert "delegation" not in quiet.stdout
    soon = int(time.time()) + 3 * 86_400
    server.backend.delegation_ends = soon
    result = invoke(runner, "--home", home, "status")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert (
        f"DELEGATION the agency's delegation ends {_common.format_ms(soon * 1000)}: "
        "ask the agency to renew it (this endpoint's endorsement ends with it)"
    ) in text
    (report,) = json_lines(invoke(runner, "--home", home, "status", "--json"))
    assert report["delegation_ends"] == soon
    server.backend.delegation_ends = soon - 4 * 86_400
    ended = " ".join(invoke(runner, "--home", home, "status").stdout.split())
    assert "the agency's delegation ended " in ended
    assert "this endpoint's endorsement ended with it" in ended


def test_status_says_what_a_contacts_refusal_codes_mean(runner: CliRunner, daemon: Daemon) -> None:
    # At a revoked endpoint its contacts refuse it at the handshake; at a home
    # that moved, its contacts' onion services no longer let the old key in.
    # The bare codes are explained once, under the table.
    server, home = daemon
    server.backend.contacts["bob"]["reachable"] = False
    server.backend.contacts["bob"]["last_error"] = "refused"
    shown = invoke(runner, "--home", home, "status")
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.stdout.split())
    assert "refused: the contact turns our sessions away at the handshake" in text
    assert "holds a revocation of this endpoint" in text
    assert "client-auth-wrong:" not in text
    server.backend.contacts["bob"]["last_error"] = "client-auth-wrong"
    text = " ".join(invoke(runner, "--home", home, "status").stdout.split())
    assert "client-auth-wrong: the contact's onion service does not let us in" in text
    server.backend.contacts["bob"]["last_error"] = "timeout"
    text = " ".join(invoke(runner, "--home", home, "status").stdout.split())
    assert "timeout:" not in text


def test_retry(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    assert invoke(runner, "--home", home, "retry").stdout == (
        "woke the delivery to 1 contact: what waits goes now, without waiting out a backoff\n"
    )
    assert json_lines(invoke(runner, "--home", home, "retry", "bob", "--json")) == [{"contacts": 1}]
    assert server.backend.retried == [None, "bob"]
    assert one_line_error(invoke(runner, "--home", home, "retry", "zed"), 1) == (
        "onionpost: unknown contact 'zed'\n"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["contact", "list"],
        ["contact", "verify", "bob"],
        ["send", "bob", "hi"],
        ["inbox"],
        ["retry"],
    ],
    ids=lambda a: " ".join(a[:2]),
)
def test_json_output_is_plain_json(runner: CliRunner, daemon: Daemon, args: list[str]) -> None:
    server, home = daemon
    server.call(server.backend.receive_text, "bob", "[bold]not markup[/bold]")
    lines = json_lines(invoke(runner, "--home", home, *args, "--json"))
    assert lines


# -- a working day: waiting for delivery, one message, the outbox, marking read ------------


def test_send_wait_follows_a_text_until_delivered(runner: CliRunner, daemon: Daemon) -> None:
    _, home = daemon
    result = invoke(runner, "--home", home, "send", "bob", "see you at 9", "--wait")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-2:] == ["sent", "delivered"]
    states = json_lines(invoke(runner, "--home", home, "send", "bob", "again", "--wait", "--json"))
    assert [s["state"] for s in states] == ["queued", "sent", "delivered"]  # type: ignore[index]


def test_send_wait_says_what_it_waits_for_when_nothing_happens(
    runner: CliRunner, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text that does not move for a while: --wait says once that no
    session is up with the contact, and the daemon's last error."""
    server, home = daemon
    monkeypatch.setattr(send_module, "WAIT_HINT_SECONDS", 0.01)
    server.backend.deliver_after_statuses = 2  # the refusal check, then the hint's
    result = invoke(runner, "--home", home, "send", "bob", "are you there", "--wait")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[1:] == [
        "waiting: no session with 'bob' now (last error: timeout); it is delivered when "
        "the contact is back. Ctrl-C stops waiting (the message stays queued)",
        "sent",
        "delivered",
    ]


def test_send_wait_fails_when_the_text_expires(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    server.backend.deliver_texts = False
    result = invoke(runner, "--home", home, "send", "bob", "too late", "--wait")
    assert result.exit_code == 1
    assert result.stderr.endswith("onionpost: the message was not delivered: expired\n")


def test_send_file_no_wait_returns_once_queued(runner: CliRunner, daemon: Daemon) -> None:
    _, home = daemon
    with short_tmpdir() as tmp:
        (tmp / "a.bin").write_bytes(b"x" * 10)
        result = invoke(runner, "--home", home, "send", "bob", "--file", tmp / "a.bin", "--no-wait")
        assert result.exit_code == 0
        assert result.stdout.startswith("[TLP:AMBER] queued ")
        assert "(a.bin)" in result.stdout


def test_message_shows_state_and_history(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    received = server.call(server.backend.receive_text, "bob", "the report")
    shown = invoke(runner, "--home", home, "message", received["id"])
    assert shown.exit_code == 0, shown.output
    assert f"{received['id']}  text from 'bob'" in shown.stdout
    assert "state      received" in shown.stdout
    assert "the report" in shown.stdout
    (record,) = json_lines(invoke(runner, "--home", home, "message", received["id"], "--json"))
    assert record["state"] == "received"  # type: ignore[index]
    missing = invoke(runner, "--home", home, "message", "ab" * 16)
    assert one_line_error(missing, 1).startswith("onionpost: no message")


def test_outbox_lists_what_waits(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    server.backend.nursery = None  # nothing gets delivered
    assert invoke(runner, "--home", home, "outbox").stderr == "nothing waits\n"
    invoke(runner, "--home", home, "send", "bob", "first")
    invoke(runner, "--home", home, "send", "bob", "second")
    listed = invoke(runner, "--home", home, "outbox")
    assert listed.exit_code == 0
    assert listed.stdout.count("│ queued │") == 2
    records = json_lines(invoke(runner, "--home", home, "outbox", "--contact", "bob", "--json"))
    assert [r["body"] for r in records] == ["first", "second"]  # type: ignore[index]
    unknown = invoke(runner, "--home", home, "outbox", "--contact", "zed")
    assert one_line_error(unknown, 1) == "onionpost: unknown contact 'zed'\n"


def test_tables_to_a_pipe_cut_no_cell(runner: CliRunner, daemon: Daemon) -> None:
    # Piped (not a terminal), rich would lay tables out in 80 columns and cut
    # the ids, addresses and times a reader copies from them.
    server, home = daemon
    server.backend.nursery = None  # nothing gets delivered
    sent = json_lines(invoke(runner, "--home", home, "send", "bob", "first", "--json"))
    message_id = sent[0]["id"]  # type: ignore[index]
    listed = invoke(runner, "--home", home, "outbox")
    assert listed.exit_code == 0
    assert message_id in listed.stdout
    assert "…" not in listed.stdout
    contacts = invoke(runner, "--home", home, "contact", "list")
    assert "…" not in contacts.stdout
    assert all(len(line) <= _common.PIPE_WIDTH for line in contacts.stdout.splitlines())


def test_read_marks_and_inbox_unread_hides_them(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    first = server.call(server.backend.receive_text, "bob", "one")
    server.call(server.backend.receive_text, "bob", "two")
    marked = invoke(runner, "--home", home, "read", first["id"])
    assert marked.stdout == "marked 1 read\n"
    assert server.backend.marked == [first["id"]]
    unread = json_lines(invoke(runner, "--home", home, "inbox", "--unread", "--json"))
    assert [m["body"] for m in unread] == ["two"]  # type: ignore[index]
    everything = json_lines(invoke(runner, "--home", home, "inbox", "--json"))
    assert [m["body"] for m in everything] == ["one", "two"]  # type: ignore[index]
    assert invoke(runner, "--home", home, "read").exit_code == 2  # an id is required


def test_the_inbox_number_names_a_message_for_read_message_and_forward(
    runner: CliRunner,
) -> None:
    # The inbox shows '#N', never the id: what it shows is what the commands take.
    with short_tmpdir() as home:
        backend = MemoryBackend()
        backend.add("bob")
        backend.add("carol")
        with ServerThread(backend, home / "run" / "control.sock") as server:
            first = server.call(backend.receive_text, "bob", "one")
            second = server.call(backend.receive_text, "carol", "two")
            listed = invoke(runner, "--home", home, "inbox")
            assert "#1 " in listed.stdout
            assert "#2 " in listed.stdout

            shown = invoke(runner, "--home", home, "message", "#2")
            assert shown.exit_code == 0, shown.output
            assert f"{second['id']}  text from 'carol'" in shown.stdout
            (record,) = json_lines(invoke(runner, "--home", home, "message", "1", "--json"))
            assert record["id"] == first["id"]  # type: ignore[index]

            marked = invoke(runner, "--home", home, "read", "1", "#2")
            assert marked.stdout == "marked 2 read\n"
            assert sorted(backend.marked) == sorted([first["id"], second["id"]])

            forwarded = invoke(runner, "--home", home, "forward", "#1", "--to", "carol")
            assert forwarded.exit_code == 0, forwarded.output
            assert forwarded.stdout.startswith("[TLP:AMBER] forwarded as ")

            # A number no message has, or one from another contact than --contact.
            for args in (
                ("message", "#3"),
                ("message", "0"),
                ("read", "1", "9"),
                ("message", "9" * 31),
            ):
                missing = invoke(runner, "--home", home, *args)
                assert "no received message #" in one_line_error(missing, 1)
            other = invoke(runner, "--home", home, "message", "2", "--contact", "bob")
            assert one_line_error(other, 1) == (
                "onionpost: received message #2 is from 'carol', not 'bob'\n"
            )
            assert len(backend.marked) == 2  # nothing more marked by the refused read
            # Neither a number nor an id: one line, before the daemon is asked.
            for command in (("message",), ("read",), ("forward", "--to", "carol")):
                garbage = invoke(runner, "--home", home, *command, "zzz")
                assert one_line_error(garbage, 1) == (
                    "onionpost: 'zzz' is neither a message id (32 hex digits) "
                    "nor the '#' that 'onionpost inbox' shows\n"
                )
            # An id is still an id, in either case.
            upper = invoke(runner, "--home", home, "message", first["id"].upper())
            assert upper.exit_code == 0, upper.output
            by_id = invoke(runner, "--home", home, "message", first["id"])
            assert by_id.exit_code == 0
            assert first["id"] in by_id.stdout


def test_contact_remove_says_what_will_not_be_sent(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    server.backend.nursery = None  # nothing gets delivered
    invoke(runner, "--home", home, "send", "bob", "first")
    invoke(runner, "--home", home, "send", "bob", "second")
    removed = invoke(runner, "--home", home, "contact", "remove", "bob")
    assert removed.exit_code == 0, removed.output
    assert removed.stdout.startswith("removed contact 'bob' (")
    assert removed.stderr == (
        "warning: 2 messages waiting for 'bob' will not be sent (they are marked expired)\n"
    )


def test_contact_add_of_a_missing_file_says_so(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    for path in (home / "no-such-card.txt", home):  # missing, and a directory
        result = invoke(runner, "--home", home, "contact", "add", path, "--name", "dave")
        assert one_line_error(result, 1) == (
            f"onionpost: {path} is neither a contact card nor a card file\n"
        )
    assert "dave" not in server.backend.contacts


def test_a_daemon_of_another_user_is_named_as_such(runner: CliRunner) -> None:
    with short_tmpdir() as home:
        run = home / "run"
        run.mkdir()
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(run / "control.sock"))
        try:
            os.chown(run / "control.sock", 65534, 65534)
            result = invoke(runner, "--home", home, "status")
        finally:
            listener.close()
        assert one_line_error(result, 3) == (
            f"onionpost: the daemon of {home} belongs to another user\n"
        )


def _commands(group: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    import click

    assert isinstance(group, click.Command)
    yield prefix
    if isinstance(group, click.Group):
        for name, command in group.commands.items():
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(_commands(main)), ids=lambda p: " ".join(p) or "main")
def test_every_command_has_help(runner: CliRunner, path: tuple[str, ...]) -> None:
    result = invoke(runner, *path, "--help")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Usage: ")
    # A summary of what it does, not just the usage line.
    summary = result.stdout.split("\n\n")[1].strip()
    assert len(summary) > 15, result.stdout


@needs_home
def test_daemon_errors_take_the_common_path(runner: CliRunner) -> None:
    with short_tmpdir() as tmp:
        home = tmp / "home"
        assert (
            invoke(runner, "init", "--home", home, "--name", "a", "--key-file", tmp / "k").exit_code
            == 0
        )
        # tor cannot be launched: the environment is not usable, exit 3, one line.
        config = home / "config.toml"
        config.write_text('[tor]\nbinary = "/nonexistent/tor"\n')
        no_tor = invoke(runner, "daemon", "--home", home, "--key-file", tmp / "k")
        assert "tor" in one_line_error(no_tor, 3)
        # No endpoint in the home: a usage of the wrong home, exit 1, one line.
        missing = invoke(runner, "daemon", "--home", tmp / "elsewhere", "--key-file", tmp / "k")
        assert "run 'onionpost init' first" in one_line_error(missing, 1)


def test_shell_completion_as_the_readme_says() -> None:
    import subprocess
    import sys

    script = subprocess.run(
        [sys.executable, "-c", "from onionpost.cli import main; main(prog_name='onionpost')"],
        env={**os.environ, "_ONIONPOST_COMPLETE": "bash_source"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "_onionpost_completion" in script
    words = subprocess.run(
        [sys.executable, "-c", "from onionpost.cli import main; main(prog_name='onionpost')"],
        env={
            **os.environ,
            "_ONIONPOST_COMPLETE": "bash_complete",
            "COMP_WORDS": "onionpost ou",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "outbox" in words


def test_a_time_no_date_can_show_is_shown_as_its_number() -> None:
    """What an earlier version stored, past year 9999: shown, never a traceback."""
    assert _common.format_ms(0) == "1970-01-01 00:00:00 UTC"
    assert _common.format_ms(253_402_300_799_999) == "9999-12-31 23:59:59 UTC"
    for ms in (253_402_300_800_000, 2**63 - 1):
        assert _common.format_ms(ms) == f"{ms} ms since 1970 (no date)"
    assert _common.format_ms(None) == "never"
