"""``onionpost registrar init`` (offline) and the registrar's client commands
against a double of its local API."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from onionpost.cli import main
from onionpost.proto.trust_session import RevocationBundle
from onionpost.registrar import RegistrarBook
from onionpost.testing.doubles import short_tmpdir


def invoke(runner: CliRunner, *args: str | Path) -> Result:
    return runner.invoke(main, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert result.stderr.count("\n") == 1, result.stderr
    return result.stderr


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_init_moves_the_issuing_key_and_log(runner: CliRunner, tmp_path: Path) -> None:
    with short_tmpdir() as tmp:
        home, where = tmp / "reg", tmp_path / "acme"
        agency_secret = ["--key-file", tmp_path / "acme.key"]
        made = invoke(
            runner, "init", "--home", home, "--name", "registrar", "--key-file", tmp / "k"
        )
        assert made.exit_code == 0, made.output
        root = invoke(
            runner, "trust", "root-init", "--dir", where, "--agency", "acme", *agency_secret
        )
        assert root.exit_code == 0, root.output
        args = ["registrar", "init", "--dir", where, "--home", home, "--home-key-file", tmp / "k"]
        done = invoke(runner, *args, *agency_secret, "--json")
        assert done.exit_code == 0, done.output
        document = json.loads(done.stdout)
        assert (document["agency"], document["log_size"]) == ("acme", 1)
        sealed = home / "registrar" / "issuing.sealed"
        assert stat.S_IMODE(sealed.stat().st_mode) == 0o600
        assert not (home / "registrar" / "root.key").exists()
        assert (where / "registrar.txt").exists()
        # The agency directory signs nothing more; a second init is refused.
        out = tmp_path / "e"
        endorse = ["trust", "endorse", "x" * 56 + ".onion", "--dir", where, *agency_secret]
        refused = invoke(runner, *endorse, "--endpoint", "x", "--out", out)
        assert refused.exit_code != 0
        again = invoke(runner, *args, *agency_secret)
        assert again.exit_code != 0
        assert "exists already" in again.output or "registrar already" in again.output
        # The home's key opens the registrar; the agency's does not.
        from onionpost.home import Paths, unlock

        secrets = unlock(Paths.for_home(home), passphrase=None, key_file=tmp / "k")
        book = RegistrarBook.open(home / "registrar", secrets.store_key)
        assert book.log.size == 1
        assert book.agency == "acme"


def test_init_needs_an_initialised_home(runner: CliRunner, tmp_path: Path) -> None:
    with short_tmpdir() as tmp:
        where = tmp_path / "acme"
        agency_secret = ["--key-file", tmp_path / "acme.key"]
        invoke(runner, "trust", "root-init", "--dir", where, "--agency", "acme", *agency_secret)
        args = ["registrar", "init", "--dir", where, "--home", tmp / "none"]
        result = invoke(runner, *args, "--home-key-file", tmp / "k", *agency_secret)
        assert result.exit_code != 0
        assert "onionpost init" in result.output
        assert not (where / "registrar.txt").exists()


def test_trust_enrol_prints_the_endorsement_and_refuses_a_mistyped_code(
    runner: CliRunner,
) -> None:
    from onionpost.proto.address import OnionAddress
    from onionpost.proto.registrar import EnrolmentCode
    from onionpost.testing.doubles import MemoryBackend, ServerThread

    code = EnrolmentCode.generate(OnionAddress(bytes(range(32)))).to_text()
    backend = MemoryBackend()
    with short_tmpdir() as home, ServerThread(backend, home / "run" / "control.sock"):
        done = invoke(runner, "--home", home, "trust", "enrol", code)
        assert done.exit_code == 0, done.output
        assert done.stdout.startswith("enrolled: endorsed by acme (Desk) until ")
        # Unverified-stale until the daemon's first round brings the list: said why.
        first, then = done.stdout.splitlines()
        assert first.endswith(" [unverified-stale]")
        assert then.startswith("the daemon now fetches the agency's revocation list")
        assert backend.enrolled_with == str(OnionAddress(bytes(range(32))))
        assert backend.enrol_again is False
        again = invoke(runner, "--home", home, "trust", "enrol", code, "--again")
        assert again.exit_code == 0, again.output
        assert backend.enrol_again is True
        as_json = json.loads(
            invoke(runner, "--home", home, "trust", "enrol", code, "--json").stdout
        )
        assert as_json["endpoint"] == "Desk"
        assert "replacing" not in done.stdout
        bad = invoke(runner, "--home", home, "trust", "enrol", code[:-2])
        assert bad.exit_code != 0
        assert "enrolment code" in bad.output
        assert len(bad.output.strip().splitlines()) == 1
        # A move's code (registrar code --replaces): the address it leaves is
        # said, with the step left on the old home.
        old = "b" * 56 + ".onion"
        backend.enrol_replaces = old
        moved = invoke(runner, "--home", home, "trust", "enrol", code)
        assert moved.exit_code == 0, moved.output
        assert f"replacing {old}: there run 'onionpost trust rotate BUNDLE'" in moved.stdout
        as_json = json.loads(
            invoke(runner, "--home", home, "trust", "enrol", code, "--json").stdout
        )
        assert as_json["replaces"] == old


def test_code_revoke_and_list_against_a_registrar(runner: CliRunner, tmp_path: Path) -> None:
    import time

    from onionpost import api
    from onionpost.home import AgencyDirectory, KdfCost, KeySource, Secrets
    from onionpost.proto.identity import Identity
    from onionpost.proto.registrar import EnrolmentCode
    from onionpost.registrar import (
        RegistrarBackend,
        RegistrarPolicy,
        RegistrarServer,
        init_registrar,
    )
    from onionpost.testing.doubles import ServerThread

    now = int(time.time())
    source = KeySource(passphrase="agency passphrase", kdf_cost=KdfCost.FLOOR)
    agency, _ = AgencyDirectory.create(tmp_path / "acme", "acme", source, now=now, mldsa=False)
    secrets = Secrets.generate("registrar", now=now)
    signer = agency.issuer(source)
    book = init_registrar(tmp_path / "registrar", agency, signer, secrets.store_key)  # type: ignore[arg-type]
    book.refresh(now, 900)
    server = RegistrarServer(book, RegistrarPolicy(), address=secrets.identity.address)
    backend = RegistrarBackend(
        secrets, server, tor_status=lambda: api.TorStatus(api.TorState.OK, "")
    )
    seized = str(Identity.generate().address)
    desk = Identity.generate()
    first = book.new_code(secrets.identity.address, "Desk 1", "Ops", now=now, expires=600)
    assert book.enrol(desk.address, first.code.token(), bytes(32), now=now, days=7) is not None
    enrolled = str(desk.address)
    with short_tmpdir() as home, ServerThread(backend, home / "run" / "control.sock"):  # type: ignore[arg-type]
        made = invoke(
            runner, "--home", home, "registrar", "code", "--name", "Desk 4", "--unit", "Ops"
        )
        assert made.exit_code == 0, made.output
        code = EnrolmentCode.parse(made.stdout.splitlines()[0])
        assert code.registrar == secrets.identity.address
        assert "onionpost trust enrol CODE" in made.stderr
        as_json = json.loads(
            invoke(runner, "--home", home, "registrar", "code", "--name", "D", "--json").stdout
        )
        assert (as_json["endpoint"], as_json["unit"]) == ("D", "")
        listed = invoke(runner, "--home", home, "registrar", "list")
        assert listed.exit_code == 0, listed.output
        assert listed.stdout.startswith(f"registrar of acme at {secrets.identity.address}")
        assert "list 1 issued" in listed.stdout
        revoke = ["--home", home, "registrar", "revoke", seized, "--reason", "seized"]
        # Never enrolled with this registrar: refused (exit 1), nothing signed.
        stranger = invoke(runner, *revoke)
        assert stranger.exit_code == 1
        assert stranger.output.strip() == (
            f"onionpost: {seized} was never enrolled with this registrar: check the address "
            "('registrar list'), or give --force to revoke one endorsed elsewhere"
        )
        assert book.revocations is not None
        assert book.revocations.serial == 1
        done = invoke(runner, *revoke, "--force")
        assert done.exit_code == 0, done.output
        # It names what it revoked and why, and when the others learn it.
        assert done.stdout.strip() == (
            f"revoked {seized} (seized): list 2 signed and logged, 1 address(es) in it"
        )
        assert "next fetch (their trust_refresh)" in done.stderr
        state = json.loads(invoke(runner, "--home", home, "registrar", "list", "--json").stdout)
        assert state["serial"] == 2
        assert state["revoked"] == [
            {"address": seized, "reason": "seized", "revoked_at": state["revoked"][0]["revoked_at"]}
        ]
        bad = invoke(runner, "--home", home, "registrar", "revoke", "nope")
        assert bad.exit_code != 0
        assert len(bad.output.strip().splitlines()) == 1
        too_long = invoke(runner, "--home", home, "registrar", "code", "--name", "x" * 65)
        assert too_long.exit_code != 0
        assert "64" in too_long.output
        # A move: from an endpoint this registrar enrolled, its name by default.
        moving = invoke(runner, "--home", home, "registrar", "code", "--replaces", enrolled)
        assert moving.exit_code == 0, moving.output
        EnrolmentCode.parse(moving.stdout.splitlines()[0])
        assert f"moves Desk 1, Ops from {enrolled}" in moving.stderr
        assert "onionpost trust rotate BUNDLE" in moving.stderr
        code_json = ["registrar", "code", "--replaces", enrolled, "--name", "Desk 2", "--json"]
        shown = json.loads(invoke(runner, "--home", home, *code_json).stdout)
        assert (shown["endpoint"], shown["unit"], shown["replaces"]) == ("Desk 2", "", enrolled)
        code = ["--home", home, "registrar", "code"]
        assert "no endpoint this registrar enrolled" in one_line_error(
            invoke(runner, *code, "--replaces", seized)
        )
        assert "not an onion address" in one_line_error(invoke(runner, *code, "--replaces", "x"))
        assert "--name" in invoke(runner, *code).output
        assert invoke(runner, *code).exit_code != 0
        alone = invoke(runner, *code, "--name", "D", "--from-revoked")
        assert alone.exit_code != 0
        assert "--from-revoked goes with --replaces" in alone.output
        # The list as the file 'trust revocations import' takes.
        out = tmp_path / "acme.revocations"
        exported = invoke(runner, "--home", home, "registrar", "export-list", "--out", out)
        assert exported.exit_code == 0, exported.output
        assert exported.stdout.startswith("list 2 of acme (issued ")
        assert exported.stdout.strip().endswith(f"1 revoked); {out}")
        bundle = RevocationBundle.decode(out.read_bytes())
        assert bundle.revocations == (tmp_path / "registrar" / "revocations.note").read_bytes()
        again = invoke(runner, "--home", home, "registrar", "export-list", "--out", out)
        assert again.exit_code == 1
        assert "exists already" in again.output
        out.unlink()
        as_json = invoke(runner, "--home", home, "registrar", "export-list", "--out", out, "--json")
        assert json.loads(as_json.stdout) == {
            "agency": "acme",
            "serial": 2,
            "issued_at": state["issued_at"],
            "revoked": 1,
            "out": str(out),
        }


def test_registrar_init_without_secrets_says_whose_are_missing(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ONIONPOST_PASSPHRASE", raising=False)
    monkeypatch.delenv("ONIONPOST_AGENCY_PASSPHRASE", raising=False)
    with short_tmpdir() as tmp:
        home, where = tmp / "reg", tmp_path / "acme"
        agency_secret = ["--key-file", tmp_path / "acme.key"]
        made = invoke(
            runner, "init", "--home", home, "--name", "registrar", "--key-file", tmp / "k"
        )
        assert made.exit_code == 0, made.output
        invoke(runner, "trust", "root-init", "--dir", where, "--agency", "acme", *agency_secret)
        args = ["registrar", "init", "--dir", where, "--home", home]
        no_agency_key = invoke(runner, *args, "--home-key-file", tmp / "k")
        assert no_agency_key.exit_code == 1
        assert no_agency_key.output.strip() == (
            f"onionpost: no passphrase for the agency in {where}: use --key-file, "
            "--passphrase-file, $ONIONPOST_AGENCY_PASSPHRASE or $ONIONPOST_PASSPHRASE"
        )
        no_home_key = invoke(runner, *args, *agency_secret)
        assert no_home_key.exit_code == 1
        assert no_home_key.output.strip() == (
            "onionpost: no passphrase for this home: use --home-key-file, "
            "--home-passphrase-file or $ONIONPOST_PASSPHRASE"
        )
        assert not (where / "registrar.txt").exists()


HOME_PASSPHRASE = "lantern orchard quietly seventeen"
AGENCY_PASSPHRASE = "basalt meridian copper umbrella"


def _home_and_agency(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp: Path, *, agency_passphrase: str
) -> tuple[Path, Path]:
    """A home sealed with HOME_PASSPHRASE and an agency whose keys are sealed
    with ``agency_passphrase`` (both at the least Argon2id cost)."""
    home, where = tmp / "reg", tmp / "acme"
    monkeypatch.setenv("ONIONPOST_PASSPHRASE", HOME_PASSPHRASE)
    made = invoke(runner, "init", "--home", home, "--name", "registrar", "--kdf-cost", "floor")
    assert made.exit_code == 0, made.output
    monkeypatch.setenv("ONIONPOST_AGENCY_PASSPHRASE", agency_passphrase)
    root = invoke(
        runner, "trust", "root-init", "--dir", where, "--agency", "acme", "--kdf-cost", "floor"
    )
    assert root.exit_code == 0, root.output
    monkeypatch.delenv("ONIONPOST_AGENCY_PASSPHRASE")
    return home, where


def _registrar_opens(home: Path) -> None:
    from onionpost.home import Paths, unlock

    secrets = unlock(Paths.for_home(home), passphrase=HOME_PASSPHRASE, key_file=None)
    assert RegistrarBook.open(home / "registrar", secrets.store_key).agency == "acme"


def test_init_with_the_agency_keys_own_passphrase(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with short_tmpdir() as tmp:
        home, where = _home_and_agency(
            runner, monkeypatch, tmp, agency_passphrase=AGENCY_PASSPHRASE
        )
        args = ["registrar", "init", "--dir", where, "--home", home, "--kdf-cost", "floor"]
        # $ONIONPOST_PASSPHRASE alone (the home's) does not open the agency's
        # keys: said so, and what to give instead; nothing moved.
        wrong = invoke(runner, *args)
        assert wrong.exit_code == 1
        error = one_line_error(wrong)
        assert "wrong passphrase" in error
        assert "tried with $ONIONPOST_PASSPHRASE" in error
        assert "$ONIONPOST_AGENCY_PASSPHRASE or --passphrase-file" in error
        assert not (where / "registrar.txt").exists()
        assert not (home / "registrar").exists()
        # A wrong agency passphrase is not blamed on $ONIONPOST_PASSPHRASE.
        monkeypatch.setenv("ONIONPOST_AGENCY_PASSPHRASE", "not the agency's")
        mistyped = one_line_error(invoke(runner, *args))
        assert "wrong passphrase" in mistyped
        assert "ONIONPOST_PASSPHRASE" not in mistyped
        assert not (where / "registrar.txt").exists()
        # Each its own: both open.
        monkeypatch.setenv("ONIONPOST_AGENCY_PASSPHRASE", AGENCY_PASSPHRASE)
        done = invoke(runner, *args, "--json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["agency"] == "acme"
        assert (where / "registrar.txt").exists()
        _registrar_opens(home)


def test_init_with_one_passphrase_for_both_as_before(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with short_tmpdir() as tmp:
        home, where = _home_and_agency(runner, monkeypatch, tmp, agency_passphrase=HOME_PASSPHRASE)
        # Only $ONIONPOST_PASSPHRASE, as scripts written before the agency's own.
        done = invoke(runner, "registrar", "init", "--dir", where, "--home", home)
        assert done.exit_code == 0, done.output
        _registrar_opens(home)


def test_init_asks_for_the_agency_keys_passphrase_by_name(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onionpost.cli._trust_cmd as trust_cmd

    with short_tmpdir() as tmp:
        home, where = _home_and_agency(
            runner, monkeypatch, tmp, agency_passphrase=AGENCY_PASSPHRASE
        )
        monkeypatch.delenv("ONIONPOST_PASSPHRASE")
        home_file = tmp / "home.pass"
        home_file.write_text(HOME_PASSPHRASE + "\n")
        home_file.chmod(0o600)
        monkeypatch.setattr(trust_cmd, "stdin_is_a_terminal", lambda: True)
        args = ["registrar", "init", "--dir", where, "--home", home]
        done = runner.invoke(
            main,
            [str(a) for a in (*args, "--home-passphrase-file", home_file)],
            input=AGENCY_PASSPHRASE + "\n",
        )
        assert done.exit_code == 0, done.output
        assert f"passphrase for the agency in {where}: " in done.output
        _registrar_opens(home)


def test_status_is_a_few_lines_however_many_endpoints(runner: CliRunner, tmp_path: Path) -> None:
    import time

    from onionpost import api
    from onionpost.cli._common import format_ms
    from onionpost.home import AgencyDirectory, KdfCost, KeySource, Secrets
    from onionpost.limits import MAX_REGISTRAR_ENDPOINTS
    from onionpost.proto.identity import Identity
    from onionpost.registrar import (
        RegistrarBackend,
        RegistrarPolicy,
        RegistrarServer,
        init_registrar,
    )
    from onionpost.testing.doubles import ServerThread

    now = int(time.time())
    source = KeySource(passphrase="agency passphrase", kdf_cost=KdfCost.FLOOR)
    agency, _ = AgencyDirectory.create(tmp_path / "acme", "acme", source, now=now, mldsa=False)
    secrets = Secrets.generate("registrar", now=now)
    book = init_registrar(tmp_path / "registrar", agency, agency.issuer(source), secrets.store_key)  # type: ignore[arg-type]
    addresses = []
    for n in range(MAX_REGISTRAR_ENDPOINTS):
        # Desk 2 moved in from Desk 0's address (a code made with --replaces).
        moves = addresses[0] if n == 2 else ""
        issued = book.new_code(
            secrets.identity.address, f"Desk {n}", "Ops", now=now, expires=600, replaces=moves
        )
        desk = Identity.generate().address
        assert book.enrol(desk, issued.code.token(), bytes(32), now=now, days=7) is not None
        addresses.append(str(desk))
    book.revoke(addresses[0], "seized", now=now)
    book.revoke(addresses[1], "lost", now=now)
    book.revoke(str(Identity.generate().address), "offline", now=now, force=True)
    assert book.revocations is not None
    issued_at = book.revocations.issued_at
    policy = RegistrarPolicy(refresh=600)
    server = RegistrarServer(book, policy, address=secrets.identity.address)
    backend = RegistrarBackend(
        secrets, server, tor_status=lambda: api.TorStatus(api.TorState.OK, "")
    )
    with short_tmpdir() as home, ServerThread(backend, home / "run" / "control.sock"):  # type: ignore[arg-type]
        shown = invoke(runner, "--home", home, "registrar", "status")
        assert shown.exit_code == 0, shown.output
        assert shown.stdout.splitlines() == [
            f"registrar of acme at {secrets.identity.address}",
            f"{MAX_REGISTRAR_ENDPOINTS} endpoints enrolled (2 revoked); 3 addresses in the list",
            f"list 3 issued {format_ms(issued_at * 1000)}, "
            f"next due {format_ms((issued_at + 600) * 1000)}",
            f"log of {book.log.size} statements",
        ]
        as_json = json.loads(invoke(runner, "--home", home, "registrar", "status", "--json").stdout)
        assert as_json == {
            "agency": "acme",
            "registrar": str(secrets.identity.address),
            "endpoints": MAX_REGISTRAR_ENDPOINTS,
            "endpoints_revoked": 2,
            "serial": 3,
            "issued_at": issued_at,
            "revoked": 3,
            "next_list_at": issued_at + 600,
            "log_size": book.log.size,
            "delegation_until": book.delegation.not_after,
        }
        # Each endpoint and each revoked address: 'registrar list', below the same lines.
        listed = invoke(runner, "--home", home, "registrar", "list").stdout.splitlines()
        assert listed[:4] == shown.stdout.splitlines()
        assert len(listed) == 4 + MAX_REGISTRAR_ENDPOINTS + 3
        assert f"  {addresses[0]}  Desk 0, Ops  revoked" in listed
        # A move shows the address it replaces.
        (desk2,) = [ln for ln in listed if ln.startswith(f"  {addresses[2]}  Desk 2, Ops  until ")]
        assert desk2.endswith(f" UTC  replacing {addresses[0]}")
        assert sum("replacing" in ln for ln in listed) == 1
        state = json.loads(invoke(runner, "--home", home, "registrar", "list", "--json").stdout)
        assert state["next_list_at"] == issued_at + 600
        (moved,) = [e for e in state["endpoints"] if e["replaces"]]
        assert (moved["address"], moved["replaces"]) == (addresses[2], addresses[0])


def test_status_says_when_no_list_is_signed_and_when_one_is_overdue() -> None:
    from onionpost import api
    from onionpost.cli._common import format_ms
    from onionpost.cli._registrar_cmd import _summary

    empty = api.RegistrarState("acme", "x.onion", None, None, 1)
    assert _summary(empty, now_ms=0) == [
        "registrar of acme at x.onion",
        "0 endpoints enrolled",
        "no list signed yet",
        "log of 1 statement",
    ]
    one = api.RegistrarEndpoint("y.onion", "Desk", "", 10, 20)
    late = api.RegistrarState(
        "acme", "x.onion", 1, 100, 2, (one,), (api.RegistrarRevocation("z.onion", 90, ""),), 700
    )
    assert _summary(late, now_ms=700_000) == [
        "registrar of acme at x.onion",
        "1 endpoint enrolled; 1 address in the list",
        f"list 1 issued {format_ms(100_000)}, next due {format_ms(700_000)}",
        "log of 2 statements",
    ]
    assert _summary(late, now_ms=700_001)[2] == (
        f"list 1 issued {format_ms(100_000)}, next due {format_ms(700_000)}: "
        "overdue (see the registrar's log)"
    )


def test_the_root_delegates_anew_and_a_stopped_registrar_stores_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    from onionpost.home import Paths, unlock

    with short_tmpdir() as tmp:
        home, where = tmp / "reg", tmp_path / "acme"
        agency_secret = ["--key-file", tmp_path / "acme.key"]
        made = invoke(
            runner, "init", "--home", home, "--name", "registrar", "--key-file", tmp / "k"
        )
        assert made.exit_code == 0, made.output
        root = invoke(
            runner, "trust", "root-init", "--dir", where, "--agency", "acme", "--days", "30",
            *agency_secret,
        )  # fmt: skip
        assert root.exit_code == 0, root.output
        args = ["registrar", "init", "--dir", where, "--home", home, "--home-key-file", tmp / "k"]
        assert invoke(runner, *args, *agency_secret).exit_code == 0
        delegate = ["trust", "delegate", "--dir", where, *agency_secret]
        # Not longer-lived than the delegation held: refused, nothing written.
        short = invoke(runner, *delegate, "--days", "20", "--out", tmp_path / "short")
        assert "must end later than the one held" in one_line_error(short)
        assert not (tmp_path / "short").exists()
        too_long = invoke(runner, *delegate, "--days", "91", "--out", tmp_path / "long")
        assert too_long.exit_code == 2
        out = tmp_path / "delegation.note"
        done = invoke(runner, *delegate, "--out", out)
        assert done.exit_code == 0, done.output
        assert done.stdout.startswith("delegated acme/issuing/a until ")
        assert f"onionpost registrar delegation {out}" in done.stderr
        again = invoke(runner, *delegate, "--out", out)
        assert "exists already" in one_line_error(again)
        # The registrar is not running: its home is opened and the delegation stored.
        take = ["registrar", "delegation", "--home", home, "--key-file", tmp / "k"]
        bad = tmp_path / "bad.note"
        bad.write_bytes(b"not a delegation at all\n")
        assert "not a delegation" in one_line_error(invoke(runner, *take, bad))
        stored = invoke(runner, *take, out, "--json")
        assert stored.exit_code == 0, stored.output
        document = json.loads(stored.stdout)
        assert (document["agency"], document["log_size"], document["running"]) == (
            "acme",
            2,
            False,
        )
        secrets = unlock(Paths.for_home(home), passphrase=None, key_file=tmp / "k")
        book = RegistrarBook.open(home / "registrar", secrets.store_key)
        assert book.delegation.not_after == document["delegation_until"]
        assert book.directory.delegation() == out.read_bytes()
        # The same one again: nothing newer, said so, nothing changed.
        same = one_line_error(invoke(runner, *take, out))
        assert "not after the one held" in same
        assert RegistrarBook.open(home / "registrar", secrets.store_key).log.size == 2


def test_status_warns_of_the_delegations_end_and_a_running_registrar_takes_a_new_one(
    runner: CliRunner, tmp_path: Path
) -> None:
    import re
    import time

    from onionpost import api
    from onionpost.home import AgencyDirectory, KdfCost, KeySource, Secrets
    from onionpost.registrar import (
        RegistrarBackend,
        RegistrarPolicy,
        RegistrarServer,
        init_registrar,
    )
    from onionpost.testing.doubles import ServerThread

    now = int(time.time())
    source = KeySource(passphrase="agency passphrase", kdf_cost=KdfCost.FLOOR)
    agency, _ = AgencyDirectory.create(
        tmp_path / "acme", "acme", source, now=now, lifetime=5 * 86_400, mldsa=False
    )
    secrets = Secrets.generate("registrar", now=now)
    book = init_registrar(tmp_path / "registrar", agency, agency.issuer(source), secrets.store_key)  # type: ignore[arg-type]
    book.refresh(now, 900)
    server = RegistrarServer(book, RegistrarPolicy(), address=secrets.identity.address)
    backend = RegistrarBackend(
        secrets, server, tor_status=lambda: api.TorStatus(api.TorState.OK, "")
    )
    out = tmp_path / "delegation.note"
    out.write_bytes(agency.delegate(agency.root(source), now=now + 1))
    with short_tmpdir() as home, ServerThread(backend, home / "run" / "control.sock"):  # type: ignore[arg-type]
        shown = invoke(runner, "--home", home, "registrar", "status")
        assert shown.exit_code == 0, shown.output
        *_, warning = shown.stdout.splitlines()
        assert re.fullmatch(
            r"delegation ends \S+ \S+ UTC \(in [45] days\): have the agency's root sign a new "
            r"one \('onionpost trust delegate'\) and hand it over \('onionpost registrar "
            r"delegation FILE'\)",
            warning,
        ), warning
        status = json.loads(invoke(runner, "--home", home, "registrar", "status", "--json").stdout)
        assert status["delegation_until"] == now + 5 * 86_400
        taken = invoke(runner, "--home", home, "registrar", "delegation", out)
        assert taken.exit_code == 0, taken.output
        assert taken.stdout.startswith("delegation of acme until ")
        assert " taken; log of 3 statements" in taken.stdout
        assert len(invoke(runner, "--home", home, "registrar", "status").stdout.splitlines()) == 4
        # Again: refused by the running registrar, one line, which serves on.
        again = invoke(runner, "--home", home, "registrar", "delegation", out)
        assert "not after the one held" in one_line_error(again)
        assert invoke(runner, "--home", home, "registrar", "list").exit_code == 0
    backend.close()


def test_an_agency_without_a_registrar_delegates_anew_and_endorses_under_it(
    runner: CliRunner, tmp_path: Path
) -> None:
    from onionpost.proto.identity import Identity

    where = tmp_path / "acme"
    secret = ["--key-file", tmp_path / "acme.key"]
    made = invoke(
        runner, "trust", "root-init", "--dir", where, "--agency", "acme", "--days", "10", *secret
    )
    assert made.exit_code == 0, made.output
    address = str(Identity.generate().address)
    endorse = ["trust", "endorse", address, "--dir", where, "--endpoint", "Desk", *secret]
    # Twenty days would outlive the delegation: refused, saying what to do.
    early = one_line_error(invoke(runner, *endorse, "--days", "20", "--out", tmp_path / "e0"))
    assert "fewer --days" in early
    assert "onionpost trust delegate" in early
    done = invoke(runner, "trust", "delegate", "--dir", where, *secret, "--out", tmp_path / "d")
    assert done.exit_code == 0, done.output
    assert f"logged in {where}" in done.stderr
    signed = invoke(runner, *endorse, "--days", "20", "--out", tmp_path / "e1", "--json")
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.stdout)["index"] == 2  # after the first delegation and the new one


def test_every_registrar_command_says_its_home_is_the_registrars(runner: CliRunner) -> None:
    from onionpost.cli._registrar_cmd import registrar

    assert isinstance(registrar, click.Group)
    assert len(registrar.commands) >= 8
    for name in registrar.commands:
        shown = invoke(runner, "registrar", name, "--help")
        assert shown.exit_code == 0, (name, shown.output)
        said = " ".join(shown.output.split())
        assert "The registrar's home directory" in said, name
        assert "endpoint's home" not in said, name
    # The endpoint's own commands still say theirs.
    assert "The endpoint's home directory" in " ".join(
        invoke(runner, "status", "--help").output.split()
    )


def test_init_refuses_an_ended_delegation_and_warns_of_an_ending_one(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re
    import time

    from onionpost.home import AgencyDirectory, KdfCost, KeySource

    day = 86_400
    with short_tmpdir() as tmp:
        home, where = tmp / "reg", tmp / "acme"
        monkeypatch.setenv("ONIONPOST_PASSPHRASE", HOME_PASSPHRASE)
        made = invoke(runner, "init", "--home", home, "--name", "registrar", "--kdf-cost", "floor")
        assert made.exit_code == 0, made.output
        source = KeySource(passphrase=AGENCY_PASSPHRASE, kdf_cost=KdfCost.FLOOR)
        # A delegation of one day, signed three days ago: ended.
        AgencyDirectory.create(where, "acme", source, now=int(time.time()) - 3 * day, lifetime=day)
        monkeypatch.setenv("ONIONPOST_AGENCY_PASSPHRASE", AGENCY_PASSPHRASE)
        args = ["registrar", "init", "--dir", where, "--home", home, "--kdf-cost", "floor"]
        refused = one_line_error(invoke(runner, *args))
        assert "the agency's delegation in" in refused
        assert " ended " in refused
        assert f"run 'onionpost trust delegate --dir {where} --out FILE' first" in refused
        assert not (where / "registrar.txt").exists()
        assert not (home / "registrar").exists()
        # A new one of ten days (logged in DIR at once): made, with a warning.
        renewed = invoke(
            runner, "trust", "delegate", "--dir", where, "--days", "10", "--out", tmp / "d"
        )
        assert renewed.exit_code == 0, renewed.output
        done = invoke(runner, *args, "--json")
        assert done.exit_code == 0, done.output
        assert json.loads(done.stdout)["agency"] == "acme"  # the warning is not in the JSON
        warning = done.stderr.splitlines()[-1]
        assert re.fullmatch(
            r"warning: the agency's delegation ends \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC "
            r"\(in (9|10) days\): renew it soon with 'onionpost trust delegate' on the agency "
            r"directory, then 'onionpost registrar delegation FILE'",
            warning,
        ), warning
        _registrar_opens(home)


def test_init_says_nothing_of_a_far_delegation(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    with short_tmpdir() as tmp:
        home, where = _home_and_agency(
            runner, monkeypatch, tmp, agency_passphrase=AGENCY_PASSPHRASE
        )
        monkeypatch.setenv("ONIONPOST_AGENCY_PASSPHRASE", AGENCY_PASSPHRASE)
        args = ["registrar", "init", "--dir", where, "--home", home, "--kdf-cost", "floor"]
        elsewhere = ["registrar", "init", "--dir", tmp / "none", "--home", home]
        assert one_line_error(invoke(runner, *elsewhere)) == (
            f"onionpost: {tmp / 'none'} is not an agency directory ('onionpost trust root-init')\n"
        )
        done = invoke(runner, *args)
        assert done.exit_code == 0, done.output
        assert "warning" not in done.stderr
        assert "delegation" not in done.stderr
