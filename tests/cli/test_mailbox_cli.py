"""``onionpost mailbox ...`` through click's CliRunner, against real API servers.

The mailbox side is the real :class:`MailboxBackend` over a real
:class:`MailboxServer` and store, served by the real API server in its own
thread (``onionpost.testing.doubles.ServerThread``). The endpoint side (``pair``,
``status`` as an owner) is the daemon's double with its mailbox methods.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner, Result

from onionpost import api
from onionpost.cli import main
from onionpost.client import open_client
from onionpost.home import Secrets
from onionpost.host import qr_text
from onionpost.mailbox import MailboxBackend, MailboxPolicy, MailboxServer
from onionpost.proto.address import OnionAddress
from onionpost.proto.pairing import SetupCode, token_digest
from onionpost.store import MailboxStore
from onionpost.testing.doubles import MemoryBackend, ServerThread, short_tmpdir

KEY = bytes(range(32))


def invoke(runner: CliRunner, *args: str | Path) -> Result:
    return runner.invoke(main, [str(a) for a in args])


def one_line_error(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.output)
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("onionpost: ")
    return result.stderr


@dataclass
class RunningMailbox:
    home: Path
    store: MailboxStore
    secrets: Secrets

    def owner_with_envelopes(self, code_text: str, envelopes: int) -> OnionAddress:
        """Pair an owner with ``code_text`` and leave envelopes for it (through the store)."""
        code = SetupCode.parse(code_text)
        owner, contact = OnionAddress(os.urandom(32)), OnionAddress(os.urandom(32))
        now = int(time.time() * 1000)
        self.store.pair(
            token_digest(code.token()), owner, os.urandom(32), now=now, max_owners=4,
            max_clients=16,
        )  # fmt: skip
        self.store.register(
            owner, contact, os.urandom(32), now=now, max_per_owner=4, max_clients=16
        )
        for _ in range(envelopes):
            self.store.deposit(
                owner, contact, os.urandom(16), b"sealed" * 100, now=now,
                max_envelopes=10, max_bytes=10_000, max_disk=100_000,
            )  # fmt: skip
        return owner


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def running() -> Iterator[RunningMailbox]:
    with short_tmpdir() as home:
        secrets = Secrets.generate("box", now=int(time.time()))
        store = MailboxStore.open(home / "mailbox.db", KEY)
        policy = MailboxPolicy(max_disk_use=1000)
        server = MailboxServer(store, policy, address=secrets.identity.address)
        backend = MailboxBackend(
            secrets, server, policy, tor_status=lambda: api.TorStatus(api.TorState.OK, "published")
        )
        try:
            with ServerThread(backend, home / "run" / "control.sock"):  # type: ignore[arg-type]
                yield RunningMailbox(home, store, secrets)
        finally:
            store.close()


def test_code_prints_the_code_and_its_qr(runner: CliRunner, running: RunningMailbox) -> None:
    result = invoke(runner, "mailbox", "code", "--home", running.home, "--expires", "90m")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    code = SetupCode.parse(lines[0])
    assert code.mailbox == running.secrets.identity.address
    assert result.stdout[len(lines[0]) + 1 :] == qr_text(lines[0])
    assert set("".join(lines[1:])) <= set("█▀▄ ")
    assert "onionpost mailbox pair CODE" in result.stderr
    as_json = json.loads(invoke(runner, "mailbox", "code", "--home", running.home, "--json").stdout)
    assert SetupCode.parse(as_json["code"]).mailbox == code.mailbox
    assert as_json["code"] != lines[0]  # a new code each time
    day = as_json["expires_ms"] - time.time() * 1000
    assert 86_000_000 < day <= 86_400_000
    # Both codes are waiting: each lets one owner in (its tor key is authorized).
    assert len(running.store.directory(int(time.time() * 1000)).codes) == 2


def test_code_expiry_is_checked_before_asking(runner: CliRunner, running: RunningMailbox) -> None:
    for bad in ("59", "8d", "soon", "-1h"):
        result = invoke(runner, "mailbox", "code", "--home", running.home, "--expires", bad)
        assert result.exit_code == 2, (bad, result.output)
    assert running.store.directory(0).codes == ()


def test_status_and_wipe_on_a_mailbox(runner: CliRunner, running: RunningMailbox) -> None:
    empty = invoke(runner, "mailbox", "status", "--home", running.home)
    assert empty.exit_code == 0, empty.output
    assert "no owner yet" in empty.stderr
    code = json.loads(invoke(runner, "mailbox", "code", "--home", running.home, "--json").stdout)
    alice = running.owner_with_envelopes(code["code"], 2)
    code = json.loads(invoke(runner, "mailbox", "code", "--home", running.home, "--json").stdout)
    bob = running.owner_with_envelopes(code["code"], 1)

    shown = invoke(runner, "mailbox", "status", "--home", running.home)
    assert shown.exit_code == 0, shown.output
    assert str(alice) in shown.stdout
    assert str(bob) in shown.stdout
    assert "warning: the mailbox holds 1800 of its 1000 bytes" in shown.stderr
    report = json.loads(
        invoke(runner, "mailbox", "status", "--home", running.home, "--json").stdout
    )
    assert report["role"] == "mailbox"
    assert report["reachable"] is True
    assert {o["owner"]: o["envelopes"] for o in report["owners"]} == {str(alice): 2, str(bob): 1}

    refused = invoke(runner, "mailbox", "wipe", "--home", running.home)
    assert refused.exit_code == 2  # no terminal to confirm on, and no --yes
    one = invoke(runner, "mailbox", "wipe", "--home", running.home, "--owner", alice, "--yes")
    assert one.exit_code == 0, one.output
    assert one.stdout == "wiped 2 envelopes of 1 owner\n"
    again = invoke(runner, "mailbox", "wipe", "--home", running.home, "--owner", alice, "--yes")
    assert "not found" in one_line_error(again, 1)
    bad = invoke(runner, "mailbox", "wipe", "--home", running.home, "--owner", "nope", "--yes")
    assert "onion address" in one_line_error(bad, 1)
    rest = invoke(runner, "mailbox", "wipe", "--home", running.home, "--yes", "--json")
    assert json.loads(rest.stdout) == {"envelopes": 1, "owners": 1}
    assert running.store.usages() == []


def test_a_mailbox_refuses_what_only_an_endpoint_does(
    runner: CliRunner, running: RunningMailbox
) -> None:
    code = json.loads(invoke(runner, "mailbox", "code", "--home", running.home, "--json").stdout)
    paired = invoke(runner, "mailbox", "pair", code["code"], "--home", running.home)
    assert "this home runs a mailbox, not an endpoint" in one_line_error(paired, 1)
    for args in (("inbox",), ("send", "bob", "hi"), ("contact", "list")):
        result = invoke(runner, *args, "--home", running.home)
        assert "runs a mailbox" in one_line_error(result, 1), args
    status = json.loads(invoke(runner, "status", "--home", running.home, "--json").stdout)
    assert status["address"] == str(running.secrets.identity.address)
    assert (status["tor"]["state"], status["contacts"]) == ("ok", [])

    async def whoami() -> api.Identity:
        async with open_client(running.home) as client:
            return await client.whoami()

    identity = trio.run(whoami)
    assert identity.address == str(running.secrets.identity.address)
    assert identity.card.startswith("onionpost1:")


# -- the endpoint's side ----------------------------------------------------------------------


class OwnerBackend(MemoryBackend):
    """The daemon's double, with an endpoint's mailbox methods."""

    def __init__(self) -> None:
        super().__init__()
        self.paired: list[str] = []
        self.wiped = 0
        self.handlers = {
            **self.handlers,
            api.MailboxPair: self.mailbox_pair,
            api.GetMailboxStatus: self.mailbox_status,
            api.MailboxWipe: self.mailbox_wipe,
        }

    async def mailbox_pair(self, request: api.MailboxPair) -> api.MailboxRef:
        parsed = SetupCode.parse(request.code)
        self.paired.append(request.code)
        return api.MailboxRef(str(parsed.mailbox))

    async def mailbox_status(self, request: api.GetMailboxStatus) -> api.MailboxStatus:
        if not self.paired:
            return api.MailboxStatus(role=api.Role.OWNER, warning="no mailbox: pair one")
        return api.MailboxStatus(
            role=api.Role.OWNER,
            mailbox=str(SetupCode.parse(self.paired[-1]).mailbox),
            paired=True,
            reachable=True,
            waiting=3,
            waiting_bytes=4500,
            one_time_prekeys=97,
        )

    async def mailbox_wipe(self, request: api.MailboxWipe) -> api.Wiped:
        self.wiped += 1
        return api.Wiped(envelopes=3, owners=1)


def test_pair_status_and_wipe_on_an_endpoint(runner: CliRunner) -> None:
    mailbox = OnionAddress(os.urandom(32))
    code = SetupCode.generate(mailbox).to_text()
    with short_tmpdir() as home:
        backend = OwnerBackend()
        with ServerThread(backend, home / "run" / "control.sock"):
            before = invoke(runner, "mailbox", "status", "--home", home)
            assert before.exit_code == 0, before.output
            assert "none: pair one" in before.stdout
            assert "warning: no mailbox" in before.stderr
            paired = invoke(runner, "mailbox", "pair", code, "--home", home)
            assert paired.exit_code == 0, paired.output
            assert paired.stdout == f"paired with the mailbox {mailbox}\n"
            assert backend.paired == [code]
            as_json = json.loads(
                invoke(runner, "mailbox", "pair", code, "--home", home, "--json").stdout
            )
            assert as_json == {"mailbox": str(mailbox)}
            shown = invoke(runner, "mailbox", "status", "--home", home)
            assert str(mailbox) in shown.stdout
            assert "3 envelopes (4.5 KB)" in shown.stdout
            report = json.loads(
                invoke(runner, "mailbox", "status", "--home", home, "--json").stdout
            )
            assert (report["role"], report["one_time_prekeys"]) == ("owner", 97)
            wiped = invoke(runner, "mailbox", "wipe", "--home", home, "--yes")
            assert wiped.stdout == "wiped 3 envelopes of 1 owner\n"
            assert backend.wiped == 1
            mistyped = invoke(runner, "mailbox", "pair", code[:-3] + "aaa", "--home", home)
            assert "mistyped" in one_line_error(mistyped, 1)


def test_serve_needs_a_home(runner: CliRunner) -> None:
    with short_tmpdir() as tmp:
        result = invoke(runner, "mailbox", "serve", "--home", tmp / "none")
        assert "run 'onionpost init' first" in one_line_error(result, 1)
