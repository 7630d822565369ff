"""``onionpost trust ...`` through click's CliRunner: add/list/remove against a
double of the daemon (with the daemon's own confirmation rule), root-init and
endorse on an agency directory, and every bad input as one line, nothing stored."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from onionpost.cli import _trust_cmd as trust_cmd
from onionpost.cli import main
from onionpost.home import ContactCard, Secrets, endorsement_line
from onionpost.proto.identity import Identity
from onionpost.proto.trust import (
    Anchor,
    EndorsementProof,
    HybridSigner,
    Reason,
    Status,
    check_endorsement,
)
from onionpost.testing.doubles import MemoryBackend, ServerThread, short_tmpdir

Daemon = tuple[ServerThread, Path]
ACME_KEY = HybridSigner.generate("acme/root").public
ACME = Anchor("acme", ACME_KEY.ed25519, ACME_KEY.mldsa65)
ALICE = Identity(bytes(range(32)))
BOB = Identity(bytes(range(1, 33))).address


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def daemon() -> Iterator[Daemon]:
    with (
        short_tmpdir() as home,
        ServerThread(MemoryBackend(), home / "run" / "control.sock") as server,
    ):
        yield server, home


def invoke(runner: CliRunner, *args: str | Path, **kwargs: object) -> Result:
    return runner.invoke(main, [str(a) for a in args], **kwargs)  # type: ignore[arg-type]


def one_line_error(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (result.exit_code, result.output, result.exception)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("onionpost: ")
    return result.stderr


def test_add_list_remove(runner: CliRunner, daemon: Daemon, tmp_path: Path) -> None:
    server, home = daemon
    added = invoke(
        runner,
        "--home",
        home,
        "trust",
        "add",
        ACME.to_text(),
        "--safety-number",
        ACME.safety_number,
    )
    assert added.exit_code == 0, added.output
    assert "installed the anchor of acme" in added.stdout
    listed = invoke(runner, "--home", home, "trust", "list", "--json")
    (anchor,) = json.loads(listed.stdout)["anchors"]
    assert anchor["fingerprint"] == ACME.fingerprint.hex()
    assert anchor["post_quantum"] is True
    text = invoke(runner, "--home", home, "trust", "list")
    assert ACME.safety_number in text.stdout
    removed = invoke(runner, "--home", home, "trust", "remove", "acme", "--json")
    assert json.loads(removed.stdout)["agency"] == "acme"
    assert server.backend.anchors == {}  # type: ignore[attr-defined]
    # From a file, the safety number typed at the prompt on a terminal.
    path = tmp_path / "acme.anchor"
    path.write_text(ACME.to_text() + "\n")

    trust_cmd.stdin_is_a_terminal = lambda: True  # type: ignore[assignment]
    try:
        typed = invoke(
            runner, "--home", home, "trust", "add", path, input=ACME.safety_number + "\n"
        )
    finally:
        del trust_cmd.stdin_is_a_terminal
        from onionpost.cli._common import stdin_is_a_terminal

        trust_cmd.stdin_is_a_terminal = stdin_is_a_terminal
    assert typed.exit_code == 0, typed.output
    assert "acme" in server.backend.anchors  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (["onionpost-anchor1:AAAA", "--safety-number", "1"], "not a trust anchor"),
        (["garbage", "--safety-number", "1"], "neither an anchor nor a file"),
        ([ACME.to_text(), "--safety-number", "12345 " * 12], "not the anchor's safety number"),
        ([ACME.to_text()], "give --safety-number"),
    ],
    ids=["garbled", "not an anchor", "wrong safety number", "no terminal to ask"],
)
def test_bad_anchors_are_one_line_and_nothing_stored(
    runner: CliRunner, daemon: Daemon, args: list[str], problem: str
) -> None:
    server, home = daemon
    result = invoke(runner, "--home", home, "trust", "add", *args)
    assert problem in one_line_error(result)
    assert server.backend.anchors == {}  # type: ignore[attr-defined]


def test_a_duplicate_anchor_and_an_unknown_removal(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    args = ["--home", home, "trust", "add", ACME.to_text(), "--safety-number", ACME.safety_number]
    assert invoke(runner, *args).exit_code == 0
    assert "installed already" in one_line_error(invoke(runner, *args))
    assert "no trust anchor" in one_line_error(
        invoke(runner, "--home", home, "trust", "remove", "x")
    )
    assert list(server.backend.anchors) == ["acme"]  # type: ignore[attr-defined]


def test_root_init_and_endorse(runner: CliRunner, tmp_path: Path) -> None:
    where, key = tmp_path / "acme", tmp_path / "acme.key"
    secret = ["--key-file", key]
    init = ["trust", "root-init", "--dir", where, "--agency", "acme", *secret]
    created = invoke(runner, *init, "--json")
    assert created.exit_code == 0, created.output
    document = json.loads(created.stdout)
    anchor = Anchor.from_text(document["anchor"])
    assert document["safety_number"] == anchor.safety_number
    assert stat.S_IMODE((where / "root.key").stat().st_mode) == 0o600
    out = tmp_path / "alice.endorsement"
    endorse = ["trust", "endorse", str(ALICE.address), "--dir", where, *secret]
    done = invoke(runner, *endorse, "--endpoint", "Field office 3", "--out", out)
    assert done.exit_code == 0, done.output
    proof = EndorsementProof.decode(out.read_bytes())
    assert proof.index == 1
    # Signed, delegated and logged; with no revocation list held, unverified.
    verdict = check_endorsement(
        anchor, proof, address=str(ALICE.address), revocations=None, now=int(time.time())
    )
    assert (verdict.status, verdict.reason) == (Status.UNVERIFIED_STALE, Reason.NO_LIST)
    again = invoke(runner, *endorse, "--endpoint", "x", "--out", out)
    assert "exists already" in one_line_error(again)
    bad_args = ["nope", "--dir", where, *secret, "--endpoint", "x", "--out", tmp_path / "o"]
    assert "onion address" in one_line_error(invoke(runner, "trust", "endorse", *bad_args))
    assert "not empty" in one_line_error(invoke(runner, *init))
    other_key = tmp_path / "other.key"
    other_key.write_bytes(bytes(32))
    other_key.chmod(0o600)
    wrong = ["trust", "endorse", str(ALICE.address), "--dir", where, "--key-file", other_key]
    failed = invoke(runner, *wrong, "--endpoint", "x", "--out", tmp_path / "w")
    assert "wrong passphrase or key file" in one_line_error(failed)
    assert not (tmp_path / "w").exists()


def test_endorsement_install(runner: CliRunner, daemon: Daemon, tmp_path: Path) -> None:
    server, home = daemon
    where, key = tmp_path / "acme", tmp_path / "acme.key"
    secret = ["--key-file", key]
    init = ["trust", "root-init", "--dir", where, "--agency", "acme", *secret, "--no-ml-dsa"]
    created = invoke(runner, *init, "--json")
    assert created.exit_code == 0, created.output
    anchor = Anchor.from_text(json.loads(created.stdout)["anchor"])
    out = tmp_path / "alice.endorsement"
    endorse = ["trust", "endorse", str(ALICE.address), "--dir", where, *secret]
    assert invoke(runner, *endorse, "--endpoint", "Field office 3", "--out", out).exit_code == 0
    install = ["trust", "endorsement", "install", "--home", home]
    # No anchor of its agency yet: one line, nothing installed.
    assert "no anchor of agency 'acme'" in one_line_error(invoke(runner, *install, out))
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a proof")
    assert "not an endorsement proof" in one_line_error(invoke(runner, *install, garbage))
    missing = one_line_error(invoke(runner, *install, tmp_path / "none"))
    assert "cannot read endorsement proof" in missing
    assert server.backend.endorsement is None
    added = invoke(
        runner,
        "trust",
        "add",
        "--home",
        home,
        anchor.to_text(),
        "--safety-number",
        anchor.safety_number,
    )
    assert added.exit_code == 0, added.output
    done = invoke(runner, *install, out)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("installed: endorsed by acme (Field office 3) until ")
    # No list of acme held: unverified-stale, and the next step said.
    first, then = done.stdout.splitlines()
    assert first.endswith(" [unverified-stale]")
    assert then.startswith("no fresh revocation list of acme is held")
    assert "trust revocations import FILE" in then
    as_json = json.loads(invoke(runner, *install, out, "--json").stdout)
    assert (as_json["agency"], as_json["address"]) == ("acme", str(ALICE.address))
    assert "replacing" not in done.stdout
    assert as_json["replaces"] == ""
    # A move's endorsement says the address it replaces, and the step left there.
    moved = tmp_path / "moved.endorsement"
    made = invoke(runner, *endorse, "--endpoint", "Desk", "--replaces", str(BOB), "--out", moved)
    assert made.exit_code == 0, made.output
    shown = invoke(runner, *install, moved)
    assert shown.exit_code == 0, shown.output
    assert f"replacing {BOB}: there run 'onionpost trust rotate BUNDLE'" in shown.stdout


def test_rotate(runner: CliRunner, daemon: Daemon, tmp_path: Path) -> None:
    """The agency endorses the new address as replacing the old ('trust endorse
    --replaces'); 'trust rotate CARD FILE' announces it; bad input is one line."""
    server, home = daemon
    where, key = tmp_path / "acme", tmp_path / "acme.key"
    secret = ["--key-file", key]
    init = ["trust", "root-init", "--dir", where, "--agency", "acme", *secret, "--no-ml-dsa"]
    assert invoke(runner, *init).exit_code == 0
    new = Secrets.generate("alice", now=int(time.time()))
    card = tmp_path / "new.card"
    card.write_text(ContactCard.issue(new).to_line() + "\n")
    out = tmp_path / "moved.endorsement"
    endorse = ["trust", "endorse", str(new.identity.address), "--dir", where, *secret]
    # --replaces is given without '.onion': what was signed is shown in full,
    # the move with it, so a mistyped address shows before the proof goes out.
    bare = str(ALICE.address).removesuffix(".onion")
    made = invoke(runner, *endorse, "--endpoint", "Desk", "--replaces", bare, "--out", out)
    assert made.exit_code == 0, made.output
    assert made.stdout == (
        f"endorsed {new.identity.address} as Desk, replacing {ALICE.address}; log entry 1; {out}\n"
    )
    again = tmp_path / "again.endorsement"
    as_json = json.loads(
        invoke(
            runner, *endorse, "--endpoint", "Desk", "--replaces", bare, "--out", again, "--json"
        ).stdout
    )
    assert (as_json["address"], as_json["replaces"]) == (
        str(new.identity.address),
        str(ALICE.address),
    )
    rotate = ["trust", "rotate", "--home", home]
    done = invoke(runner, *rotate, card, out)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(
        f"announced: {ALICE.address} moves to {new.identity.address}, vouched for by the agency"
    )
    assert server.backend.rotation is not None
    as_json = json.loads(invoke(runner, *rotate, card, out, "--json").stdout)
    assert (as_json["address"], as_json["replaces"]) == (
        str(new.identity.address),
        str(ALICE.address),
    )
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"not a proof")
    assert "not an endorsement proof" in one_line_error(invoke(runner, *rotate, card, garbage))
    assert "card" in one_line_error(invoke(runner, *rotate, "onionpost1:nonsense", out))
    assert "cannot read endorsement proof" in one_line_error(
        invoke(runner, *rotate, card, tmp_path / "none")
    )
    # The new home's card bundle ('whoami --bundle' there, as after 'trust
    # enrol' with a code of 'registrar code --replaces') is card and proof at once.
    bundle = tmp_path / "new.bundle"
    bundle.write_text(card.read_text() + endorsement_line(out.read_bytes()) + "\n")
    from_bundle = invoke(runner, *rotate, bundle)
    assert from_bundle.exit_code == 0, from_bundle.output
    assert from_bundle.stdout == done.stdout
    assert "no proof" in one_line_error(invoke(runner, *rotate, card))
    broken = tmp_path / "broken.bundle"
    broken.write_text(card.read_text() + "onionpost-endorsement1:!!\n")
    assert "malformed endorsement line" in one_line_error(invoke(runner, *rotate, broken))


def test_revoke_and_import(runner: CliRunner, daemon: Daemon, tmp_path: Path) -> None:
    server, home = daemon
    where, key = tmp_path / "acme", tmp_path / "acme.key"
    secret = ["--key-file", key]
    init = ["trust", "root-init", "--dir", where, "--agency", "acme", *secret, "--no-ml-dsa"]
    created = invoke(runner, *init, "--json")
    assert created.exit_code == 0, created.output
    anchor = Anchor.from_text(json.loads(created.stdout)["anchor"])
    revoke = ["trust", "revoke", "--dir", where, *secret]
    first, second = tmp_path / "list-1", tmp_path / "list-2"
    done = invoke(runner, *revoke, str(ALICE.address), "--reason", "seized", "--out", first)
    assert done.exit_code == 0, done.output
    assert done.stdout == f"list 1: 1 revoked; {first}\n"
    # Without an address: the same list, fresh, under the next serial.
    again = invoke(runner, *revoke, "--out", second, "--json")
    assert json.loads(again.stdout) == {"serial": 2, "revoked": 1, "out": str(second)}
    bad = [
        ([*revoke, "nope", "--out", tmp_path / "x"], "onion address"),
        ([*revoke, "--reason", "r" * 65, str(BOB), "--out", tmp_path / "y"], "cannot sign"),
        ([*revoke, "--out", first], "exists already"),
    ]
    for args, problem in bad:
        assert problem in one_line_error(invoke(runner, *args))
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "y").exists()

    imports = ["trust", "revocations", "import", "--home", home]
    assert "no anchor of agency 'acme'" in one_line_error(invoke(runner, *imports, second))
    added = invoke(
        runner,
        *["trust", "add", "--home", home, anchor.to_text()],
        *["--safety-number", anchor.safety_number],
    )
    assert added.exit_code == 0, added.output
    held = invoke(runner, *imports, second)
    assert held.exit_code == 0, held.output
    assert held.stdout.startswith("holding list 2 of acme (issued ")
    # The older list is refused: a rolled-back list would un-revoke.
    assert "older than the one held" in one_line_error(invoke(runner, *imports, first))
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x94\x01")
    assert "not a revocation list" in one_line_error(invoke(runner, *imports, garbage))
    assert server.backend.revocations["acme"].serial == 2


def test_contact_require_endorsement(runner: CliRunner, daemon: Daemon) -> None:
    server, home = daemon
    server.backend.add("carol")
    command = ["contact", "require-endorsement", "--home", home]
    for flag, said, stored in [
        ("--on", "required", True),
        ("--off", "not required", False),
        ("--default", "as config.toml says", None),
    ]:
        done = invoke(runner, *command, "carol", flag)
        assert done.exit_code == 0, done.output
        assert done.stdout == f"an endorsement of 'carol': {said}\n"
        assert server.backend.contacts["carol"]["require_endorsement"] is stored
        as_json = json.loads(invoke(runner, *command, "carol", flag, "--json").stdout)
        assert (as_json["name"], as_json["require_endorsement"]) == ("carol", stored)
    assert "unknown contact" in one_line_error(invoke(runner, *command, "nobody", "--on"))
    for args in (["carol"], ["carol", "--on", "--default"]):
        assert "one of --on, --off, --default" in invoke(runner, *command, *args).output


def test_the_client_commands_do_not_load_the_store() -> None:
    code = (
        "import sys\n"
        "from onionpost.cli import main\n"
        "for args in (['trust', 'add', '--help'], ['trust', 'list', '--help']):\n"
        "    try:\n"
        "        main(args, prog_name='onionpost')\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('onionpost.store', 'onionpost.tor',"
        " 'onionpost.daemon', 'stem'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
