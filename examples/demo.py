"""`make demo`: two onionpost endpoints and a mailbox on a private Tor network, driven by the CLI.

What it does, in order:

1. brings up a private Tor network on 127.0.0.1 (3 authorities, 2 relays);
2. creates two endpoints, "alice" and "bob", and a mailbox (a third home,
   run by `onionpost mailbox serve`, as on an always-on host), and starts
   them; each launches its own tor, joined to that network, and publishes
   its onion service with v3 client authorization;
3. exchanges contact cards, so each endpoint authorizes the other;
4. sends a message each way and a file from alice to bob, waits until each
   is delivered, and checks the file's BLAKE2b-512 on bob's side;
5. pairs both endpoints with the mailbox (a one-time setup code each);
6. the offline path: bob's daemon stops; alice sends; the text goes to
   bob's mailbox (`deposited`); alice's daemon stops; bob's daemon starts,
   drains its mailbox and has the text; alice comes back and sees it
   `delivered` (bob's acknowledgement came back through alice's mailbox, or
   directly);
7. tears everything down.

It exits 0 only if everything was really delivered. Everything binds and
dials 127.0.0.1 only. The endpoints' `config.toml` sets `mailbox_after` to
2 s (the default is 60 s), so the demo does not wait a minute before alice
uses bob's mailbox.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from onionpost.testing import testnet
from onionpost.testing.endpoint import Endpoint, EndpointError, start_all
from onionpost.testing.mailbox import (
    Mailbox,
    contact_status,
    endpoint_config,
    owner_status,
    pair,
    states,
    wait_for,
)

DEADLINE = 300.0
FILE_SIZE = 3 * 2**20
# Seconds a contact is unreachable before alice uses its mailbox (default 60),
# and the deadline of one dial (default 60): an offline contact is noticed
# when a dial to it fails.
MAILBOX_AFTER = 2.0
CONNECT_TIMEOUT = 10.0


def say(text: str) -> None:
    print(text, flush=True)


def wait_state(home: Path, message_id: str, want: set[str], until: float) -> dict[str, Any]:
    while time.monotonic() < until:
        message = _message(home, message_id)
        if message is not None and message.get("state") in want:
            return message
        time.sleep(0.5)
    raise SystemExit(f"demo: message {message_id} did not reach {sorted(want)} in time")


def _message(home: Path, message_id: str) -> dict[str, Any] | None:
    from onionpost.client import open_client

    async def ask() -> dict[str, Any] | None:
        async with open_client(home) as client:
            found = await client.message(message_id)
            return {"state": found.state}

    import trio

    return trio.run(ask)


def inbox_has(endpoint: Endpoint, predicate: Any, until: float) -> dict[str, Any]:
    while time.monotonic() < until:
        for item in endpoint.inbox():
            if predicate(item):
                return dict(item)
        time.sleep(0.5)
    raise SystemExit("demo: the expected message did not arrive in time")


def reachable(endpoint: Endpoint) -> bool:
    """The endpoint is paired and has its session with its mailbox."""
    status = owner_status(endpoint)
    return bool(status["paired"] and status["reachable"])


def offline(alice: Endpoint, bob: Endpoint, mailbox: Mailbox, until: float) -> None:
    """Steps 7-10: the mailbox carries a text while bob, then alice, is away."""
    say("7. Pairing alice and bob with the mailbox (`mailbox code` there, `mailbox pair` here) ...")
    t0 = time.monotonic()
    # Each workstation pairs on its own, at the same time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(pair, endpoint, mailbox) for endpoint in (alice, bob)]:
            done.result()
    for endpoint in (alice, bob):
        wait_for(
            partial(reachable, endpoint),
            f"{endpoint.name}'s session with the mailbox",
            until - time.monotonic(),
        )
    # Bob tells alice where his mailbox is, over their session.
    wait_for(
        lambda: contact_status(alice, "bob")["mailbox"] == mailbox.address,
        "alice to learn bob's mailbox",
        until - time.monotonic(),
    )
    say(f"   both paired, and alice knows bob's mailbox, in {time.monotonic() - t0:.1f} s")

    say("8. bob's daemon stops; alice -> bob: a text, which goes to bob's mailbox")
    bob.terminate()
    t0 = time.monotonic()
    body = "Bob, this waited for you in your mailbox."
    sent = alice.json("send", "bob", body)["id"]
    wait_for(
        lambda: states(alice.home, [sent])[sent] == "deposited",
        "the text to be deposited in bob's mailbox",
        until - time.monotonic(),
        poll=0.5,
    )
    say(
        f"   deposited in {time.monotonic() - t0:.1f} s, sealed to one of bob's prekeys "
        f"(alice first tried bob directly and waited {MAILBOX_AFTER:.0f} s, mailbox_after)"
    )

    say("9. alice's daemon stops; bob's daemon starts and drains his mailbox")
    alice.terminate()
    bob.start(until - time.monotonic())
    t0 = time.monotonic()
    got = inbox_has(bob, lambda m: m.get("id") == sent, until)
    say(f"   bob had it {time.monotonic() - t0:.1f} s after his daemon was up: {got['body']!r}")

    say("10. alice's daemon starts again: the text shows delivered")
    alice.start(until - time.monotonic())
    t0 = time.monotonic()
    wait_state(alice.home, sent, {"delivered", "read"}, until)
    say(f"   delivered (bob's acknowledgement reached alice {time.monotonic() - t0:.1f} s after)")


def record(alice: Endpoint, root: Path) -> None:
    """alice's evidence log: checked whole, the conversation exported and the
    bundle verified offline (protocol-spec/evidence.md)."""
    say("11. alice's evidence log: verified, the conversation with bob exported and checked")
    t0 = time.monotonic()
    log = alice.json("log", "verify")
    witnessed = ", ".join(f"{w['contact']} up to {w['size']}" for w in log["witnesses"])
    say(f"   {log['size']} entries, {log['checkpoints']} checkpoints, cosigned by {witnessed}")
    bundle = root / "case.zip"
    exported = alice.json("export", "--contact", "bob", "--out", str(bundle))
    checked = alice.json("verify-export", str(bundle))
    if not checked["ok"]:
        raise SystemExit(f"demo: the bundle did not verify: {checked['problems']}")
    say(
        f"   {exported['messages']} messages ({exported['files']} file) exported with their "
        f"proofs and a CASE/UCO manifest; verified offline in {time.monotonic() - t0:.1f} s"
    )


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="onionpost-demo-", dir="/tmp"))
    endpoints: dict[str, Endpoint] = {}
    mailbox: Mailbox | None = None
    net_dir = root / "net"
    ok = False
    start = time.monotonic()
    until = start + DEADLINE
    try:
        say("1. Bringing up a private Tor network on 127.0.0.1 ...")
        t0 = time.monotonic()
        net = testnet.up(net_dir, clients=0, owner_pid=os.getpid())
        say(f"   {len(net.nodes)} tor relays ready in {time.monotonic() - t0:.1f} s")

        say("2. Creating the endpoints alice and bob and a mailbox, each with its own tor ...")
        config = endpoint_config(mailbox_after=MAILBOX_AFTER, connect_timeout=CONNECT_TIMEOUT)
        endpoints.update((n, Endpoint(root, n, net, top_config=config)) for n in ("alice", "bob"))
        alice, bob = endpoints["alice"], endpoints["bob"]
        mailbox = Mailbox(root, "mailbox", net)
        t0 = time.monotonic()
        start_all([*endpoints.values(), mailbox], until - time.monotonic())
        took = time.monotonic() - t0
        say(f"   both daemons and the mailbox up, their onion services published in {took:.1f} s")
        cards = {n: e.json("whoami") for n, e in endpoints.items()}
        for name, card in cards.items():
            say(f"   {name}: {card['address']}")
        say(f"   mailbox: {mailbox.address}")

        say("3. Exchanging contact cards (each side authorizes the other's tor client key) ...")
        # Each workstation adds the other's card on its own, at the same time.
        with ThreadPoolExecutor(max_workers=2) as pool:
            added = [
                pool.submit(alice.cli, "contact", "add", cards["bob"]["card"]),
                pool.submit(bob.cli, "contact", "add", cards["alice"]["card"]),
            ]
            for done in added:
                done.result()
            verified = [
                pool.submit(alice.json, "contact", "verify", "bob"),
                pool.submit(bob.json, "contact", "verify", "alice"),
            ]
            number_a, number_b = (done.result()["safety_number"] for done in verified)
        if number_a != number_b:
            raise SystemExit("demo: the safety numbers differ")
        say(f"   safety number (the same on both sides): {number_a}")

        say("4. alice -> bob: a text message")
        t0 = time.monotonic()
        sent = alice.json("send", "bob", "Hello Bob, this is Alice over onionpost.")
        wait_state(alice.home, sent["id"], {"delivered", "read"}, until)
        got = inbox_has(bob, lambda m: m.get("id") == sent["id"], until)
        say(
            f"   delivered in {time.monotonic() - t0:.2f} s "
            f"(handshake: Noise XXhfs, X25519 + ML-KEM-768); bob read: {got['body']!r}"
        )

        say("5. bob -> alice: a reply")
        t0 = time.monotonic()
        reply = bob.json("send", "alice", "Hi Alice, received loud and clear.")
        wait_state(bob.home, reply["id"], {"delivered", "read"}, until)
        got = inbox_has(alice, lambda m: m.get("id") == reply["id"], until)
        say(f"   delivered in {time.monotonic() - t0:.2f} s; alice read: {got['body']!r}")

        say(f"6. alice -> bob: a file of {FILE_SIZE // 2**20} MiB")
        source = root / "evidence.bin"
        source.write_bytes(os.urandom(FILE_SIZE))
        digest = hashlib.blake2b(source.read_bytes()).hexdigest()
        t0 = time.monotonic()
        queued = alice.json("send", "bob", "--file", str(source), "--no-wait")
        wait_state(alice.home, queued["id"], {"delivered", "read"}, until)
        elapsed = time.monotonic() - t0
        inbox_has(bob, lambda m: m.get("id") == queued["id"], until)
        export = root / "received.bin"
        from onionpost.client import open_client

        async def fetch() -> None:
            async with open_client(bob.home) as client:
                await client.export_file(queued["id"], export)

        import trio

        trio.run(fetch)
        received = hashlib.blake2b(export.read_bytes()).hexdigest()
        if received != digest:
            raise SystemExit("demo: the file's hash differs")
        rate = FILE_SIZE / elapsed / 1e6
        say(
            f"   delivered in {elapsed:.1f} s ({rate:.2f} MB/s); "
            f"BLAKE2b-512 checked: {received[:32]}..."
        )
        offline(alice, bob, mailbox, until)
        record(alice, root)
        ok = True
        say(
            "All delivered, end to end encrypted over onion services, "
            f"in {time.monotonic() - start:.0f} s."
        )
        return 0
    finally:
        say("12. Tearing down ...")
        for endpoint in endpoints.values():
            endpoint.stop()
        if mailbox is not None:
            mailbox.stop()
        if net_dir.exists():
            testnet.down(net_dir)
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            say(f"   logs kept in {root}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EndpointError as exc:
        sys.exit(f"demo: {exc}")
