"""`make demo`: two onionpost endpoints on a private Tor network, driven by the CLI.

What it does, in order:

1. brings up a private Tor network on 127.0.0.1 (3 authorities, 2 relays);
2. creates two endpoints, "alice" and "bob", and starts a daemon for each;
   each daemon launches its own tor, joined to that network, and publishes
   its onion service with v3 client authorization;
3. exchanges contact cards, so each authorizes the other;
4. sends a message each way and a file from alice to bob, waits until each
   is delivered, and checks the file's BLAKE2b-512 on bob's side;
5. tears everything down.

It exits 0 only if everything was really delivered. Everything binds and
dials 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from onionpost.testing import testnet
from onionpost.testing.endpoint import Endpoint, EndpointError, start_all

DEADLINE = 240.0
FILE_SIZE = 3 * 2**20


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


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="onionpost-demo-", dir="/tmp"))
    endpoints: dict[str, Endpoint] = {}
    net_dir = root / "net"
    ok = False
    start = time.monotonic()
    until = start + DEADLINE
    try:
        say("1. Bringing up a private Tor network on 127.0.0.1 ...")
        t0 = time.monotonic()
        net = testnet.up(net_dir, clients=0, owner_pid=os.getpid())
        say(f"   {len(net.nodes)} tor relays ready in {time.monotonic() - t0:.1f} s")

        say("2. Creating the endpoints alice and bob, each with its own tor ...")
        endpoints.update((n, Endpoint(root, n, net)) for n in ("alice", "bob"))
        alice, bob = endpoints["alice"], endpoints["bob"]
        t0 = time.monotonic()
        start_all(endpoints.values(), until - time.monotonic())
        took = time.monotonic() - t0
        say(f"   both daemons up and their onion services published in {took:.1f} s")
        cards = {n: e.json("whoami") for n, e in endpoints.items()}
        for name, card in cards.items():
            say(f"   {name}: {card['address']}")

        say("3. Exchanging contact cards (each side authorizes the other's tor client key) ...")
        alice.cli("contact", "add", cards["bob"]["card"])
        bob.cli("contact", "add", cards["alice"]["card"])
        number_a = alice.json("contact", "verify", "bob")["safety_number"]
        number_b = bob.json("contact", "verify", "alice")["safety_number"]
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
        ok = True
        say(
            "All delivered, end to end encrypted over onion services, "
            f"in {time.monotonic() - start:.0f} s."
        )
        return 0
    finally:
        say("7. Tearing down ...")
        for endpoint in endpoints.values():
            endpoint.stop()
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
