"""``onionpost doctor``: its verdicts on tor's hardening and the listening sockets.

The verdict logic is pure and tested here; one tor-marked check of the whole
command on a running daemon is in ``tests/daemon/test_hardening_tor.py``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner

from onionpost import api
from onionpost.cli import main
from onionpost.cli._daemon_cmd import hardening_verdicts, listener_verdicts, mailbox_verdicts
from onionpost.home import Paths, unlock
from onionpost.host import home_lock
from onionpost.store import MailboxStore
from onionpost.testing.doubles import MemoryBackend, ServerThread, short_tmpdir
from onionpost.tor import TcpListener


def _by_check(verdicts: list[object]) -> dict[str, str]:
    return {v.check: v.verdict for v in verdicts}  # type: ignore[attr-defined]


def test_a_current_tor_with_the_profile_passes() -> None:
    verdicts = _by_check(hardening_verdicts("0.4.9.11", "1", None, launched=True))
    assert verdicts == {
        "tor version": "info",
        "vanguards-lite": "ok",
        "proof-of-work defenses": "ok",
        "streams per circuit": "ok",
        "intro-point DoS defense": "info",
    }


def test_vanguards_lite_off_or_an_old_tor_is_a_problem() -> None:
    verdicts = _by_check(hardening_verdicts("0.4.7.16", "0", None, launched=False))
    assert verdicts["vanguards-lite"] == "problem"
    assert verdicts["proof-of-work defenses"] == "problem"
    assert verdicts["tor's own listeners"] == "info"
    # "auto" follows the consensus parameter (on when absent).
    assert _by_check(hardening_verdicts("0.4.9.11", "auto", "0", True))["vanguards-lite"] == (
        "problem"
    )
    assert _by_check(hardening_verdicts("0.4.9.11", "auto", None, True))["vanguards-lite"] == "ok"


def test_every_tcp_listener_is_a_problem() -> None:
    pids: dict[str, int | None] = {"daemon": 10, "tor": 11}
    assert [v.verdict for v in listener_verdicts([], pids)] == ["ok"]
    found = [TcpListener(11, "127.0.0.1", 9050), TcpListener(10, "::1", 7733)]
    verdicts = listener_verdicts(found, pids)
    assert [v.verdict for v in verdicts] == ["problem", "problem"]
    assert "127.0.0.1:9050 (pid 11)" in verdicts[0].detail
    assert "[::1]:7733 (pid 10)" in verdicts[1].detail
    assert [v.verdict for v in listener_verdicts([], {"daemon": None, "tor": None})] == ["info"]


def test_doctor_json_on_a_home_without_a_daemon() -> None:
    runner = CliRunner()
    with short_tmpdir() as tmp:
        home = tmp / "h"
        init = runner.invoke(
            main,
            ["init", "--home", str(home), "--name", "a", "--key-file", str(tmp / "k")],
        )
        assert init.exit_code == 0, init.output
        result = runner.invoke(
            main, ["doctor", "--home", str(home), "--key-file", str(tmp / "k"), "--json"]
        )
        report = json.loads(result.stdout)
        checks = {c["check"]: c for c in report["checks"]}
        assert checks["listening sockets"]["verdict"] == "info"
        assert checks["tor"]["verdict"] == "info"
        if Path("/usr/bin/tor").exists():  # the version from 'tor --version'
            assert checks["tor version"]["detail"].startswith("0.")
        assert checks["secrets unlock"]["verdict"] == "ok"
        assert report["ok"] is (result.exit_code == 0)


def test_doctor_without_a_passphrase_checks_the_rest_and_says_what_it_did_not() -> None:
    runner = CliRunner()
    with short_tmpdir() as tmp:
        home = _init(runner, tmp)
        env = {"ONIONPOST_PASSPHRASE": None, "ONIONPOST_KEY_FILE": None}
        result = runner.invoke(main, ["doctor", "--home", str(home), "--json"], env=env)
        report = json.loads(result.stdout)
        checks = {c["check"]: c for c in report["checks"]}
        assert checks["secrets unlock"]["verdict"] == "info"
        assert checks["secrets unlock"]["detail"].startswith("not checked: no passphrase")
        assert checks["store integrity"] == {
            "check": "store integrity",
            "verdict": "info",
            "detail": "not checked without the passphrase",
        }
        # The rest ran as with one.
        assert {"permissions", "tor", "listening sockets"} <= set(checks)
        assert report["ok"] is (result.exit_code == 0)


# -- mailboxes ------------------------------------------------------------------------


def _init(runner: CliRunner, tmp: Path) -> Path:
    home = tmp / "h"
    init = runner.invoke(
        main, ["init", "--home", str(home), "--name", "a", "--key-file", str(tmp / "k")]
    )
    assert init.exit_code == 0, init.output
    return home


def _doctor(runner: CliRunner, home: Path, key: Path) -> dict[str, dict[str, str]]:
    result = runner.invoke(main, ["doctor", "--home", str(home), "--key-file", str(key), "--json"])
    report = json.loads(result.stdout)
    return {c["check"]: c for c in report["checks"]}


def test_doctor_on_a_mailbox_home_checks_the_mailbox_database() -> None:
    runner = CliRunner()
    with short_tmpdir() as tmp:
        home = _init(runner, tmp)
        paths = Paths.for_home(home)
        secrets = unlock(paths, passphrase=None, key_file=tmp / "k")
        MailboxStore.open(paths.mailbox_store, secrets.store_key).close()
        checks = _doctor(runner, home, tmp / "k")
        assert checks["mailbox database"]["verdict"] == "ok"
        assert "store integrity" not in checks
        assert not paths.store.exists()  # no endpoint store made beside it


def test_mailbox_verdicts_of_an_endpoint() -> None:
    assert _by_check(mailbox_verdicts(api.MailboxStatus(role=api.Role.OWNER))) == {
        "mailbox": "info"
    }
    paired = api.MailboxStatus(
        role=api.Role.OWNER,
        mailbox="m" * 56 + ".onion",
        paired=True,
        reachable=True,
        last_drained_ms=1_700_000_000_000,
        one_time_prekeys=93,
    )
    (verdict,) = mailbox_verdicts(paired)
    assert verdict.verdict == "ok"
    assert "reachable" in verdict.detail
    assert "93 one-time prekeys" in verdict.detail
    assert "last drained 2023-" in verdict.detail
    down = mailbox_verdicts(
        replace(paired, reachable=False, last_error="timeout", one_time_prekeys=0)
    )
    assert {v.verdict for v in down} == {"problem"}
    assert "timeout" in down[0].detail


def test_doctor_on_an_endpoint_reports_its_mailbox_when_the_daemon_runs() -> None:
    runner = CliRunner()
    with short_tmpdir() as tmp:
        home = _init(runner, tmp)
        paths = Paths.for_home(home)
        backend = MemoryBackend()

        async def mailbox_status(request: api.GetMailboxStatus) -> api.MailboxStatus:
            return api.MailboxStatus(
                role=api.Role.OWNER,
                mailbox="m" * 56 + ".onion",
                paired=True,
                reachable=True,
                last_drained_ms=1_700_000_000_000,
                one_time_prekeys=77,
            )

        backend.handlers[api.GetMailboxStatus] = mailbox_status
        paths.run.mkdir(mode=0o700, exist_ok=True)
        with home_lock(paths.lock), ServerThread(backend, paths.socket):
            checks = _doctor(runner, home, tmp / "k")
        assert checks["mailbox"]["verdict"] == "ok"
        assert "77 one-time prekeys" in checks["mailbox"]["detail"]


def test_a_home_runs_in_its_own_role_only() -> None:
    """A mailbox's home run as an endpoint would publish the mailbox's address
    with no owner let in (the owners' mailbox silently gone), and an
    endpoint's home run as a mailbox mixes the two: both refused before the
    home is opened, in one line that says what to run."""
    runner = CliRunner()
    with short_tmpdir() as tmp:
        home = _init(runner, tmp)
        key = ["--home", str(home), "--key-file", str(tmp / "k")]
        (home / "mailbox.db").write_bytes(b"")
        as_endpoint = runner.invoke(main, ["daemon", *key])
        assert as_endpoint.exit_code == 1, as_endpoint.output
        assert as_endpoint.stderr.strip() == (
            f"onionpost: {home} is a mailbox's home (it holds mailbox.db): run it with "
            "'onionpost mailbox serve', or give an endpoint's home"
        )
        (home / "mailbox.db").unlink()
        (home / "store.sqlite").write_bytes(b"")
        as_mailbox = runner.invoke(main, ["mailbox", "serve", *key])
        assert as_mailbox.exit_code == 1, as_mailbox.output
        assert as_mailbox.stderr.strip().startswith(
            f"onionpost: {home} is an endpoint's home (it holds store.sqlite): a mailbox "
            "runs in a home of its own"
        )
        assert not (home / "mailbox.db").exists()


def test_doctor_says_loose_permissions_and_no_ok_beside_them() -> None:
    runner = CliRunner()
    with short_tmpdir() as tmp:
        home = _init(runner, tmp)
        home.chmod(0o755)
        (home / "secrets.json").chmod(0o644)
        result = runner.invoke(
            main, ["doctor", "--home", str(home), "--key-file", str(tmp / "k"), "--json"]
        )
        report = json.loads(result.stdout)
        said = [
            (c["verdict"], c["detail"]) for c in report["checks"] if c["check"] == "permissions"
        ]
        assert said == [
            ("problem", f"{home} is accessible to other users (want 0700)"),
            ("problem", f"{home}/secrets.json is readable by other users (want 0600)"),
        ]
        assert result.exit_code == 1


def test_init_refuses_a_home_the_daemon_could_never_run_in() -> None:
    runner = CliRunner()
    with short_tmpdir() as tmp:
        home = tmp / "with space" / "ep"
        made = runner.invoke(
            main, ["init", "--home", str(home), "--name", "a", "--key-file", str(tmp / "k")]
        )
        assert made.exit_code == 1, made.output
        assert "has a space, a comma, a quote or a control character" in made.stderr
        assert "PosixPath" not in made.stderr
        assert not home.exists()
