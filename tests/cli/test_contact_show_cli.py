"""``onionpost contact show`` and ``whoami``'s endorsement line, through
click's CliRunner against the double of the daemon (its answers are the
local API's records, so the CLI reads them as it reads the daemon's)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from onionpost.cli import main
from onionpost.home import ContactCard, Paths, Secrets, write_card_file
from onionpost.testing.doubles import MemoryBackend, ServerThread, address_for, short_tmpdir

Daemon = tuple[ServerThread, Path]
AT = 1_796_616_600  # 2026-12-07 04:10:00 UTC
FINGERPRINT = "ab" * 32
REVOKED = "refused: revoked 2026-12-07 04:10 UTC by acme: laptop seized"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with short_tmpdir() as home:
        backend = MemoryBackend()
        backend.add("bob")
        with ServerThread(backend, home / "run" / "control.sock") as server:
            yield server, home


def invoke(runner: CliRunner, *args: str | Path, **kwargs: object) -> Result:
    return runner.invoke(main, [str(a) for a in args], **kwargs)  # type: ignore[arg-type]


def one_line_error(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("onionpost: ")
    return result.stderr


def _revoked_bob(backend: MemoryBackend) -> None:
    bob = backend.contacts["bob"]
    bob.update(
        endorsement=REVOKED,
        endorsement_status="refused",
        refused=REVOKED,
        verified_ms=AT * 1000,
        max_labels=["TLP:AMBER"],
    )
    bob["show"] = {
        "endorsement": {
            "status": "refused",
            "describe": REVOKED,
            "checked_ms": AT * 1000 + 5000,
            "reason": "revoked",
            "agency": "acme",
            "endpoint": "Field office 3",
            "unit": "Unit \x1b[2J",
            "valid_from": AT - 86_400,
            "valid_until": AT + 6 * 86_400,
            "anchor": FINGERPRINT,
            "revocations_serial": 3,
            "revocations_issued_at": AT + 60,
            "revoked_at": AT,
            "revoked_reason": "laptop seized",
        },
        "require_endorsement": True,
        "require_endorsement_from": "config.toml",
        "groups": ["ops", "night shift"],
    }


def _lines(result: Result) -> dict[str, str]:
    assert result.exit_code == 0, (result.output, result.exception)
    found = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(":")
        found[key] = value.strip()
    return found


def test_contact_show_says_everything_of_a_revoked_contact(
    runner: CliRunner, daemon: Daemon
) -> None:
    server, home = daemon
    _revoked_bob(server.backend)
    shown = invoke(runner, "--home", home, "contact", "show", "bob")
    lines = _lines(shown)
    assert lines["name"] == "bob"
    assert lines["address"] == address_for("bob")
    assert lines["added"] == "2023-11-14 22:13:20 UTC"
    assert lines["last seen"] == "never"
    assert lines["session"] == "none now (one opens when there is something to send)"
    assert lines["verified"] == "2026-12-07 04:10:00 UTC"
    assert lines["endorsement"] == REVOKED
    assert lines["  status"] == "refused (revoked)"
    assert lines["  agency"] == "acme"
    assert lines["  endpoint"] == "Field office 3"
    assert lines["  unit"] == "Unit \\u001b[2J"  # the agency's text, escaped
    assert lines["  valid"] == "2026-12-06 04:10:00 UTC to 2026-12-13 04:10:00 UTC"
    assert lines["  anchor"] == FINGERPRINT
    assert lines["  revocation list"] == "serial 3, issued 2026-12-07 04:11:00 UTC"
    assert lines["  revoked"] == "2026-12-07 04:10:00 UTC: laptop seized"
    assert lines["  checked"] == "2026-12-07 04:10:05 UTC"
    assert lines["require endorsement"] == "yes (config.toml)"
    assert lines["outbox held"] == REVOKED
    assert lines["max labels"] == "TLP:AMBER"
    assert lines["accepts"] == "- (it said nothing)"
    assert lines["queued"] == "0"
    assert lines["mailbox"] == "none"
    assert lines["groups"] == "ops, night shift"
    assert "\x1b" not in shown.stdout
    # Every line is 'key: value', the values in one column.
    assert all(line.index(":") < 22 for line in shown.stdout.splitlines())

    # By its address too.
    again = invoke(runner, "--home", home, "contact", "show", address_for("bob"))
    assert again.stdout == shown.stdout


def test_contact_show_json_is_the_record(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    _revoked_bob(server.backend)
    result = invoke(runner, "--home", home, "contact", "show", "bob", "--json")
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    record = json.loads(line)
    assert set(record) == {
        "contact",
        "delivery",
        "endorsement",
        "groups",
        "introduced",
        "require_endorsement",
        "require_endorsement_from",
        "rotated_from",
    }
    assert record["contact"]["endorsement"] == REVOKED
    assert record["contact"]["endorsement_status"] == "refused"
    assert record["delivery"]["refused"] == REVOKED
    assert record["endorsement"]["revoked_at"] == AT
    assert record["endorsement"]["revoked_reason"] == "laptop seized"
    assert record["endorsement"]["revocations_serial"] == 3
    assert record["endorsement"]["unit"] == "Unit \x1b[2J"  # JSON escapes it itself
    assert (record["require_endorsement"], record["require_endorsement_from"]) == (
        True,
        "config.toml",
    )
    assert record["groups"] == ["ops", "night shift"]


def test_contact_show_of_a_contact_with_nothing_to_say(runner: CliRunner, daemon: Daemon) -> None:
    _, home = daemon
    lines = _lines(invoke(runner, "--home", home, "contact", "show", "bob"))
    assert lines["endorsement"] == "none presented"
    assert "  status" not in lines
    assert lines["verified"] == "no (compare the safety number)"
    assert lines["require endorsement"] == "no (config.toml)"
    assert lines["outbox held"] == "no"
    assert lines["groups"] == "none"
    assert "moved" not in lines


def test_contact_show_of_an_unknown_contact_is_one_line(runner: CliRunner, daemon: Daemon) -> None:
    _, home = daemon
    unknown = invoke(runner, "--home", home, "contact", "show", "zed")
    assert one_line_error(unknown, 1) == "onionpost: unknown contact 'zed'\n"
    as_json = invoke(runner, "--home", home, "contact", "show", "zed", "--json")
    assert one_line_error(as_json, 1) == "onionpost: unknown contact 'zed'\n"
    assert as_json.stdout == ""
    missing = invoke(runner, "--home", home, "contact", "show")
    assert missing.exit_code == 2


def test_contact_show_without_a_daemon_is_exit_3(runner: CliRunner) -> None:
    with short_tmpdir() as home:
        (home / "secrets.json").write_text("{}")
        result = invoke(runner, "--home", home, "contact", "show", "bob")
        assert one_line_error(result, 3).startswith("onionpost: the daemon is not running")


def _with_card(home: Path) -> ContactCard:
    card = ContactCard.issue(Secrets.generate("alice", now=int(time.time())))
    paths = Paths.for_home(home)
    write_card_file(paths.card, card)
    return card


def test_whoami_shows_our_endorsement(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    card = _with_card(home)
    none = invoke(runner, "--home", home, "whoami")
    assert none.exit_code == 0, none.output
    assert "endorsement" not in none.output  # none installed: nothing said
    assert card.to_line() in none.stdout

    server.backend.whoami_result = {
        "name": "alice",
        "address": str(card.address),
        "card": card.to_line(),
        "endorsement": "onionpost-endorsement1:AAAA",
        "endorsed": {
            "status": "endorsed",
            "describe": "endorsed by acme (Field office 3, Unit U) until 2026-12-13 04:10 UTC",
            "agency": "acme",
            "endpoint": "Field office 3",
            "unit": "Unit U",
            "valid_until": AT + 6 * 86_400,
            "until": AT + 6 * 86_400,
        },
    }
    shown = invoke(runner, "--home", home, "whoami")
    assert shown.stdout.splitlines()[-1] == (
        "endorsement: endorsed by acme (Field office 3, Unit U) until 2026-12-13 04:10:00 UTC"
    )
    server.backend.whoami_result["endorsed"].update(
        status="unverified-stale", reason="stale-revocation-list"
    )
    stale = invoke(runner, "--home", home, "whoami")
    assert stale.stdout.splitlines()[-1] == (
        "endorsement: unverified-stale (stale-revocation-list): endorsed by acme "
        "(Field office 3, Unit U) "
        "until 2026-12-13 04:10:00 UTC"
    )
    server.backend.whoami_result["endorsed"].update(
        status="refused", reason="revoked", until=None, describe=REVOKED
    )
    revoked = invoke(runner, "--home", home, "whoami")
    assert revoked.stdout.splitlines()[-1] == f"endorsement: {REVOKED}"
    # --json is the card file's, as before (no daemon needed).
    (record,) = [
        json.loads(line)
        for line in invoke(runner, "--home", home, "whoami", "--json").stdout.splitlines()
    ]
    assert set(record) == {"name", "address", "card"}


def test_whoami_without_a_daemon_says_the_endorsement_is_not_shown(runner: CliRunner) -> None:
    with short_tmpdir() as home:
        card = _with_card(home)
        result = invoke(runner, "--home", home, "whoami")
        assert result.exit_code == 0, result.output
        assert card.to_line() in result.stdout
        assert "endorsement" not in result.stdout
        assert result.stderr == "endorsement: not shown (the daemon is not running)\n"
