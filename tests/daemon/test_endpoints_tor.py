"""Two real daemons on the private Tor network, driven through the CLI and the client.

Each endpoint is a real ``onionpost daemon`` process with its own tor joined
to the session's test network, so SIGKILL is a real crash.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from onionpost.client import StateChange, open_client
from onionpost.testing.endpoint import Endpoint
from onionpost.testing.testnet import Testnet

pytestmark = pytest.mark.tor

DELIVERY_SECONDS = 300  # a restarted peer can be unreachable for ~95 s on a stale descriptor


def _state(home: Path, message_id: str) -> str:
    async def ask() -> str:
        async with open_client(home) as client:
            return (await client.message(message_id)).state

    return trio.run(ask)


def _wait(predicate: Any, what: str, seconds: float = DELIVERY_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def pair(testnet: Testnet) -> Iterator[tuple[Endpoint, Endpoint]]:
    root = Path(tempfile.mkdtemp(prefix="op-e2e-", dir="/tmp"))
    alice = Endpoint(root, "alice", testnet)
    bob = Endpoint(root, "bob", testnet)
    try:
        alice.start()
        bob.start()
        alice.cli("contact", "add", bob.json("whoami")["card"])
        bob.cli("contact", "add", alice.json("whoami")["card"])
        yield alice, bob
    finally:
        alice.stop()
        bob.stop()


def test_cli_exchange_both_ways_and_a_file_leaves_no_plaintext(
    pair: tuple[Endpoint, Endpoint], tmp_path: Path
) -> None:
    alice, bob = pair
    secret_text = "CANARY-7f3a91 the informant meets at dawn"
    sent = alice.json("send", "bob", secret_text)
    _wait(lambda: _state(alice.home, sent["id"]) in {"delivered", "read"}, "alice -> bob")
    assert [m["body"] for m in bob.inbox() if m["id"] == sent["id"]] == [secret_text]

    async def read_it() -> None:
        async with open_client(bob.home) as client:
            await client.mark_read([sent["id"]])

    trio.run(read_it)
    _wait(lambda: _state(alice.home, sent["id"]) == "read", "the read receipt")

    reply = bob.json("send", "alice", "ack from bob")
    _wait(lambda: _state(bob.home, reply["id"]) in {"delivered", "read"}, "bob -> alice")
    assert any(m["id"] == reply["id"] for m in alice.inbox())

    canary = b"FILE-CANARY-19d2 " * 20000
    source = tmp_path / "report.bin"
    source.write_bytes(canary)
    queued = alice.json("send", "bob", "--file", str(source), "--no-wait")
    _wait(lambda: _state(alice.home, queued["id"]) == "delivered", "the file")
    out = tmp_path / "out"
    out.mkdir()
    bob.cli("inbox", "--export-dir", str(out))
    exported = [p for p in out.iterdir() if p.read_bytes() == canary]
    assert len(exported) == 1

    for endpoint in (alice, bob):
        # Structured logs carry ids and names, never contents.
        log = endpoint.log.read_bytes()
        assert secret_text.encode() not in log
        assert b"FILE-CANARY-19d2" not in log
        for path in endpoint.home.rglob("*"):
            if path.is_file() and not path.is_socket():
                data = path.read_bytes()
                assert secret_text.encode() not in data, path
                assert b"FILE-CANARY-19d2" not in data, path


def test_second_daemon_on_the_same_home_is_refused(pair: tuple[Endpoint, Endpoint]) -> None:
    alice, _ = pair
    result = alice.cli("daemon", "--key-file", str(alice.key), check=False)
    assert result.returncode == 3
    assert "another daemon" in result.stderr
    assert result.stderr.count("\n") == 1  # one line, no traceback
    assert alice.process is not None
    assert alice.process.poll() is None


def test_sigkill_mid_transfer_delivers_everything_exactly_once(
    pair: tuple[Endpoint, Endpoint], tmp_path: Path
) -> None:
    alice, bob = pair
    count = 150
    body = os.urandom(2 * 2**20)
    source = tmp_path / "big.bin"
    source.write_bytes(body)

    async def queue() -> tuple[list[str], str]:
        async with open_client(alice.home) as client:
            ids = [(await client.send_text("bob", f"message {i}")).id for i in range(count)]
            queued = await client.send_file("bob", source)
            return ids, queued.id

    ids, file_id = trio.run(queue)
    # Kill the receiver while deliveries are under way, then the sender too.
    _wait(lambda: any(m["id"] in ids for m in bob.inbox()), "the first deliveries", 120)
    bob.kill()
    alice.kill()
    alice.start()
    bob.start()
    alice.cli("retry")
    _wait(
        lambda: all(_state(alice.home, i) in {"delivered", "read"} for i in [*ids, file_id]),
        "every message and the file after the crash",
    )
    received = [m["id"] for m in bob.inbox()]
    for message_id in ids:
        assert received.count(message_id) == 1
    assert received.count(file_id) == 1
    out = tmp_path / "out"
    out.mkdir()
    bob.cli("inbox", "--export-dir", str(out))
    digests = {hashlib.blake2b(p.read_bytes()).digest() for p in out.iterdir()}
    assert hashlib.blake2b(body).digest() in digests


def test_a_peer_killed_mid_transfer_never_stops_the_other_daemon(
    pair: tuple[Endpoint, Endpoint], tmp_path: Path, testnet: Testnet
) -> None:
    """kill -9 of one daemon and its tor in the middle of a file: the other
    daemon's process keeps running and keeps serving its other contacts."""
    alice, bob = pair
    carol = Endpoint(tmp_path, "carol", testnet)
    try:
        carol.start()
        carol.cli("contact", "add", bob.json("whoami")["card"])
        bob.cli("contact", "add", carol.json("whoami")["card"])
        body = os.urandom(8 * 2**20)
        source = tmp_path / "mid.bin"
        source.write_bytes(body)

        async def send_until_under_way() -> str:
            # The first progress event (every MiB) says the file is on its way.
            async with open_client(alice.home) as client, client.subscribe(["state"]) as events:
                queued = await client.send_file("bob", source)
                with trio.fail_after(120):
                    async for change in events:
                        assert isinstance(change, StateChange)
                        if change.id == queued.id and change.state == "sending":
                            return queued.id
            raise AssertionError("the subscription ended")

        file_id = trio.run(send_until_under_way)
        alice.kill()  # the daemon and its tor, mid-transfer
        # Bob's daemon is still there, and serves carol both ways.
        assert bob.process is not None
        sent = carol.json("send", "bob", "are you still up?")
        _wait(lambda: _state(carol.home, sent["id"]) in {"delivered", "read"}, "carol -> bob")
        back = bob.json("send", "carol", "still up")
        _wait(lambda: _state(bob.home, back["id"]) in {"delivered", "read"}, "bob -> carol")
        assert bob.process.poll() is None
        status = bob.json("status")
        assert status["tor"]["state"] == "ok"
        # Alice comes back and the file completes, once.
        alice.start()
        alice.cli("retry")
        _wait(lambda: _state(alice.home, file_id) == "delivered", "the file after the crash")
        assert [m["id"] for m in bob.inbox()].count(file_id) == 1
        assert bob.process.poll() is None
    finally:
        carol.stop()
