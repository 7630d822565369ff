"""The offline mailbox end to end on the private Tor network.

A real ``onionpost mailbox serve`` process (with its own tor) serves two
owners, alice and bob: real ``onionpost daemon`` processes, each with its own
tor, that are each other's contacts. Everything is driven as an operator
drives it, through the CLI and the client library (``onionpost.testing``).

The long test: bob goes away; alice queues 1,000 texts and a file for him;
they go to bob's mailbox; the mailbox is killed (kill -9 of it and its tor)
in the middle of those deposits and comes back on the same home; alice
finishes depositing and goes away too; bob comes back and drains: every
text and the file arrive exactly once; alice comes back and sees every one
of them delivered. Shorter ones: a stranger cannot reach the mailbox at
all, a used setup code does not pair a second endpoint, and a deposit over
the mailbox's quota leaves the message with its sender, who delivers it
directly once the contact is back.

Endpoints here deposit after ``mailbox_after`` = 2 s and give up a dial
after 20 s (``testing.mailbox.endpoint_config``): a contact that went away
is noticed when its sessions end and a dial to it fails (TOR-TESTNET.md).
Daemons go away by SIGTERM to the daemon alone (``Endpoint.terminate``),
which closes its sessions first; SIGTERM to the daemon and its tor together
can leave a contact holding a dead session for minutes, which is not what
these tests are about.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trio

from onionpost.client import StateChange, open_client
from onionpost.errors import DialError
from onionpost.proto.address import OnionAddress
from onionpost.testing.endpoint import Endpoint, start_all
from onionpost.testing.mailbox import (
    Mailbox,
    MailboxError,
    contact_status,
    endpoint_config,
    incoming,
    owner_status,
    pair,
    states,
    wait_for,
)
from onionpost.testing.testnet import Testnet
from onionpost.tor import TorConfig, open_tor

pytestmark = [pytest.mark.tor, pytest.mark.timeout(900)]

TEXTS = 1000
FILE_SIZE = 3 * 2**20
ONION_PORT = 7733  # every home here keeps the default onion_port
SETUP_SECONDS = 180.0
# A deposit follows a failed dial to the contact (20 s here).
DEPOSIT_SECONDS = 240.0
# A killed mailbox comes back with new introduction points; a depositor
# holding its old descriptor can wait a while for a dial to fail.
AFTER_RESTART_SECONDS = 300.0
DRAIN_SECONDS = 300.0
DELIVERED_SECONDS = 300.0
QUICK_FAILURE_SECONDS = 30.0  # client-auth refusals (TOR-TESTNET.md: ~0.05 s)
NOT_PAIRED_SECONDS = 15.0
# The mailbox is killed once it holds this many envelopes for bob: the texts
# take one or two, the file one per 60,000 bytes (53 here).
KILL_AT = 12

DONE = {"delivered", "read"}


@dataclass
class Owners:
    """A mailbox and two endpoints paired with it that are each other's contacts."""

    root: Path
    mailbox: Mailbox
    alice: Endpoint
    bob: Endpoint
    codes: dict[str, str] = field(default_factory=dict)

    def stop(self) -> None:
        for process in (self.alice, self.bob, self.mailbox):
            process.stop()


def _reachable_owner(endpoint: Endpoint) -> bool:
    status = owner_status(endpoint)
    return bool(status["paired"] and status["reachable"])


def _set_up(owners: Owners) -> None:
    """Start everything, pair both, and have one text go each way directly: the
    session carries each one's mailbox announcement to the other."""
    mailbox, alice, bob = owners.mailbox, owners.alice, owners.bob
    start_all([mailbox, alice, bob])
    alice.cli("contact", "add", bob.json("whoami")["card"])
    bob.cli("contact", "add", alice.json("whoami")["card"])
    for endpoint in (alice, bob):
        owners.codes[endpoint.name] = pair(endpoint, mailbox)
    for endpoint in (alice, bob):
        wait_for(
            lambda e=endpoint: _reachable_owner(e), f"{endpoint.name}'s mailbox", SETUP_SECONDS
        )
    there = alice.json("send", "bob", "hello bob, directly")["id"]
    back = bob.json("send", "alice", "hello alice, directly")["id"]
    wait_for(lambda: states(alice.home, [there])[there] in DONE, "alice -> bob", SETUP_SECONDS)
    wait_for(lambda: states(bob.home, [back])[back] in DONE, "bob -> alice", SETUP_SECONDS)
    for endpoint, contact in ((alice, "bob"), (bob, "alice")):
        wait_for(
            lambda e=endpoint, c=contact: contact_status(e, c)["mailbox"] == mailbox.address,
            f"{endpoint.name} learning {contact}'s mailbox",
            SETUP_SECONDS,
        )


def _owners(root: Path, testnet: Testnet, **limits: int) -> Iterator[Owners]:
    owners = Owners(
        root,
        Mailbox(root, "mailbox", testnet, limits=limits),
        Endpoint(root, "alice", testnet, top_config=endpoint_config()),
        Endpoint(root, "bob", testnet, top_config=endpoint_config()),
    )
    try:
        _set_up(owners)
        yield owners
    finally:
        owners.stop()


@pytest.fixture(scope="module")
def owners(testnet: Testnet) -> Iterator[Owners]:
    root = Path(tempfile.mkdtemp(prefix="op-mailbox-", dir="/tmp"))
    yield from _owners(root, testnet)


@pytest.fixture(scope="module")
def tight(testnet: Testnet) -> Iterator[Owners]:
    """The same, with a mailbox that holds at most 1,000 bytes per contact and owner."""
    root = Path(tempfile.mkdtemp(prefix="op-mailbox-quota-", dir="/tmp"))
    yield from _owners(root, testnet, max_bytes_per_contact=1000)


# -- who may use the mailbox ----------------------------------------------------------------


async def test_a_stranger_cannot_even_fetch_the_mailbox_descriptor(
    owners: Owners, testnet: Testnet, tmp_path: Path
) -> None:
    """A tor that holds no key the mailbox authorized cannot decrypt its descriptor
    (client authorization): the dial fails in tor, before any handshake."""
    address = OnionAddress.parse(owners.mailbox.address)
    config = TorConfig(data_dir=tmp_path / "tor", extra_options=testnet.tor_options())
    async with open_tor(config) as tor:
        with trio.fail_after(QUICK_FAILURE_SECONDS), pytest.raises(DialError) as missing:
            await tor.dial(address, ONION_PORT)
        assert missing.value.reason == "client-auth-missing"
        await tor.add_client_auth(address, os.urandom(32))  # a key of its own making
        with trio.fail_after(QUICK_FAILURE_SECONDS), pytest.raises(DialError) as wrong:
            await tor.dial(address, ONION_PORT)
        assert wrong.value.reason == "client-auth-wrong"


def test_a_used_setup_code_does_not_pair_another_endpoint(owners: Owners, testnet: Testnet) -> None:
    carol = Endpoint(owners.root, "carol", testnet, top_config=endpoint_config())
    with carol:
        carol.start()
        result = carol.cli("mailbox", "pair", owners.codes["alice"], check=False)
        print(f"\nmailbox pair with alice's used code: exit {result.returncode}: {result.stderr}")
        assert result.returncode == 1
        assert result.stderr.startswith("onionpost: ")
        assert result.stderr.count("\n") == 1  # one line, no traceback
        assert "used" in result.stderr
        # The daemon may go on trying the code in the background: it never pairs.
        with pytest.raises(MailboxError):
            wait_for(lambda: owner_status(carol)["paired"], "carol paired", NOT_PAIRED_SECONDS)
        carol_address = carol.json("whoami")["address"]
        assert carol_address not in owners.mailbox.usage()
    assert _reachable_owner(owners.alice)


# -- a mailbox that restarts --------------------------------------------------------------

# Deposits resume within this long of a restarted mailbox's ready line (its
# onion service published again, new introduction points and all).
RESUME_SECONDS = 15.0
RESTART_FILE_SIZE = 2 * 2**20  # 35 envelopes: a deposit session under way at the kill


def _events_since(log: Path, offset: int) -> list[str]:
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode("utf-8", "replace").splitlines()
    wanted = ("deposit", "descriptor", "mailbox")
    return [line for line in lines if any(w in line for w in wanted)]


def _held_for(mailbox: Mailbox, owner: str) -> int:
    usage = mailbox.usage().get(owner)
    return 0 if usage is None else usage.envelopes


def test_deposits_resume_soon_after_the_mailbox_restarts(owners: Owners, tmp_path: Path) -> None:
    """kill -9 of the mailbox and its tor in the middle of alice's deposits for
    bob (away), then the mailbox back on the same home: alice's next envelope
    lands within RESUME_SECONDS of the mailbox's ready line, though her tor
    held the descriptor naming the old introduction points."""
    alice, bob, mailbox = owners.alice, owners.bob, owners.mailbox
    bob_address = bob.json("whoami")["address"]
    source = tmp_path / "restart.bin"
    source.write_bytes(os.urandom(RESTART_FILE_SIZE))
    bob.terminate()
    file_id: str | None = None
    try:
        before = _held_for(mailbox, bob_address)

        async def send() -> str:
            # The client library: `send --file --json` follows the file to the end.
            async with open_client(alice.home) as client:
                return (await client.send_file("bob", source)).id

        file_id = trio.run(send)
        wait_for(
            lambda: _held_for(mailbox, bob_address) >= before + 3,
            "deposits under way",
            DEPOSIT_SECONDS,
            poll=0.1,
        )
        offset = alice.log.stat().st_size
        mailbox.kill()
        mailbox.start()
        at_ready = _held_for(mailbox, bob_address)
        resumed = wait_for(
            lambda: _held_for(mailbox, bob_address) > at_ready,
            "the next deposit after the restart",
            AFTER_RESTART_SECONDS,
            poll=0.1,
        )
        events = _events_since(alice.log, offset)
        print(f"\nmailbox ready to the next deposit: {resumed:.1f} s")
        print("\n".join(events[-30:]))
        assert resumed < RESUME_SECONDS
    finally:
        bob.start()
        # The tests after this one share the homes: bob drains what this one
        # left at the mailbox, and alice learns the file arrived.
        sent = file_id
        if sent is not None:
            wait_for(
                lambda: _held_for(mailbox, bob_address) == 0 and _state(alice, sent) == "delivered",
                "bob to drain the file",
                DEPOSIT_SECONDS,
                poll=0.2,
            )


def _state(endpoint: Endpoint, message_id: str) -> str:
    async def ask() -> str:
        async with open_client(endpoint.home) as client:
            return str((await client.message(message_id)).state)

    return trio.run(ask)


# -- the long one -------------------------------------------------------------------------


@dataclass
class Queued:
    texts: list[str]
    file: str
    at_kill: dict[str, str]

    @property
    def every(self) -> list[str]:
        return [*self.texts, self.file]


def _queue_and_kill_mailbox_mid_deposit(owners: Owners, source: Path) -> Queued:
    """Queue the texts and the file for bob (away); once the mailbox holds the texts
    and some of the file's parts, kill it and its tor; note every state then."""
    alice, mailbox = owners.alice, owners.mailbox
    bob = owners.bob.json("whoami")["address"]

    async def run() -> Queued:
        async with open_client(mailbox.home) as box:
            status = await box.mailbox_status()
            held_before = sum(o.envelopes for o in status.owners if o.owner == bob)
        async with open_client(alice.home) as client, client.subscribe(["state"]) as events:
            texts = [(await client.send_text("bob", f"offline {i:04d}")).id for i in range(TEXTS)]
            file_id = (await client.send_file("bob", source)).id
            wanted = {*texts, file_id}
            with trio.fail_after(DEPOSIT_SECONDS):
                async for change in events:
                    assert isinstance(change, StateChange)
                    if change.id in wanted and change.state == "deposited":
                        break
            async with open_client(mailbox.home) as box:
                with trio.fail_after(DEPOSIT_SECONDS):
                    while True:
                        status = await box.mailbox_status()
                        held = sum(o.envelopes for o in status.owners if o.owner == bob)
                        if held >= held_before + KILL_AT:
                            break
                        await trio.sleep(0.05)
            mailbox.kill()
            at_kill = {i: str((await client.message(i)).state) for i in [*texts, file_id]}
            return Queued(texts, file_id, at_kill)

    return trio.run(run)


def test_offline_contact_gets_1000_texts_and_a_file_through_a_killed_mailbox(
    owners: Owners, tmp_path: Path
) -> None:
    alice, bob, mailbox = owners.alice, owners.bob, owners.mailbox
    body = os.urandom(FILE_SIZE)
    source = tmp_path / "dossier.bin"
    source.write_bytes(body)
    timings: dict[str, float] = {}

    bob.terminate()
    started = time.monotonic()
    queued = _queue_and_kill_mailbox_mid_deposit(owners, source)
    timings["bob away to the first deposit"] = time.monotonic() - started
    at_kill = Counter(queued.at_kill.values())
    assert at_kill["deposited"] == TEXTS, at_kill  # the texts went first, the file is under way
    assert queued.at_kill[queued.file] in {"queued", "sent"}, at_kill
    assert not set(at_kill) & DONE, at_kill

    restarted = time.monotonic()
    mailbox.start()
    timings["mailbox restart to ready"] = time.monotonic() - restarted
    timings["mailbox ready to every deposit"] = wait_for(
        lambda: set(states(alice.home, queued.every).values()) == {"deposited"},
        "every text and the file deposited after the mailbox came back",
        AFTER_RESTART_SECONDS,
        poll=1.0,
    )
    held = mailbox.usage()[bob.json("whoami")["address"]]
    alice.terminate()

    bob.start()
    ready = time.monotonic()
    wanted = set(queued.texts)
    timings["bob ready to all texts stored"] = wait_for(
        lambda: wanted <= {m.id for m in incoming(bob.home)},
        "every text in bob's store",
        DRAIN_SECONDS,
        poll=0.5,
    )
    wait_for(
        lambda: states(bob.home, [queued.file])[queued.file] == "received",
        "the file in bob's store",
        DRAIN_SECONDS,
        poll=0.5,
    )
    timings["bob ready to the file stored"] = time.monotonic() - ready

    received = incoming(bob.home)
    counts = Counter(m.id for m in received)
    assert [i for i in queued.every if counts[i] != 1] == []
    bodies = {m.id: m.body for m in received if m.id in wanted}
    assert bodies == {i: f"offline {n:04d}" for n, i in enumerate(queued.texts)}
    export = tmp_path / "received.bin"

    async def export_file() -> None:
        async with open_client(bob.home) as client:
            await client.export_file(queued.file, export)

    trio.run(export_file)
    assert hashlib.blake2b(export.read_bytes()).digest() == hashlib.blake2b(body).digest()

    alice.start()
    timings["alice back to all delivered"] = wait_for(
        lambda: set(states(alice.home, queued.every).values()) <= DONE,
        "every message delivered, as alice sees it",
        DELIVERED_SECONDS,
        poll=1.0,
    )
    print(f"\nstates at the mailbox's kill: {dict(at_kill)}")
    print(f"the mailbox held for bob: {held.envelopes} envelopes, {held.bytes} bytes")
    for what, seconds in timings.items():
        print(f"{what}: {seconds:.1f} s")


# -- over quota -------------------------------------------------------------------------------


def test_a_deposit_over_quota_stays_in_the_outbox_and_goes_directly_later(
    tight: Owners,
) -> None:
    alice, bob = tight.alice, tight.bob
    bob.terminate()
    sent = alice.json("send", "bob", "too much for the mailbox " + "x" * 2000)["id"]

    seen: list[dict[str, object]] = []

    def refused() -> bool:
        # mailbox_error is why the last deposit failed (last_error: the last dial).
        seen.append(contact_status(alice, "bob"))
        return seen[-1]["mailbox_error"] == "mailbox-quota-exceeded"

    wait_for(refused, "the quota refusal in alice's status", DEPOSIT_SECONDS)
    print(f"\nalice's status for bob: {seen[-1]}")
    assert seen[-1]["deposited"] == 0
    assert states(alice.home, [sent])[sent] in {"queued", "sent"}
    assert [m["id"] for m in alice.json_lines("outbox")] == [sent]
    bob.start()
    wait_for(lambda: states(alice.home, [sent])[sent] in DONE, "direct delivery", DELIVERED_SECONDS)
    assert [m.id for m in incoming(bob.home)].count(sent) == 1
