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
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from onionpost.tor import testnet

DEADLINE = 240.0
FILE_SIZE = 3 * 2**20


def say(text: str) -> None:
    print(text, flush=True)


def cli(home: Path, *args: str, check: bool = True, lines: bool = False) -> Any:
    env = {**os.environ, "ONIONPOST_KDF_FAST": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "onionpost", "--home", str(home), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if check and result.returncode != 0:
        raise SystemExit(f"demo: 'onionpost {' '.join(args)}' failed: {result.stderr.strip()}")
    out = result.stdout.strip()
    if lines:
        return [json.loads(line) for line in out.splitlines() if line.strip()]
    return json.loads(out) if out.startswith(("{", "[")) else out


def make_endpoint(root: Path, name: str, net: testnet.Testnet) -> Path:
    home = root / name
    cli(home, "init", "--name", name, "--key-file", str(root / f"{name}.key"))
    with (home / "config.toml").open("a") as config:
        config.write("\n" + net.config_toml())
    return home


def start_daemon(root: Path, home: Path, name: str) -> subprocess.Popen[bytes]:
    log = (root / f"{name}-daemon.log").open("wb")
    env = {**os.environ, "ONIONPOST_KDF_FAST": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "onionpost",
            "--home",
            str(home),
            "daemon",
            "--key-file",
            str(root / f"{name}.key"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )


def wait_ready(root: Path, name: str, process: subprocess.Popen[bytes], until: float) -> None:
    log = root / f"{name}-daemon.log"
    while time.monotonic() < until:
        if process.poll() is not None:
            raise SystemExit(f"demo: {name}'s daemon exited:\n{log.read_text()[-2000:]}")
        if "daemon ready" in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise SystemExit(f"demo: {name}'s daemon was not ready in time:\n{log.read_text()[-2000:]}")


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


def inbox_has(home: Path, predicate: Any, until: float) -> dict[str, Any]:
    while time.monotonic() < until:
        for item in cli(home, "inbox", "--json", lines=True):
            if predicate(item):
                return dict(item)
        time.sleep(0.5)
    raise SystemExit("demo: the expected message did not arrive in time")


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="onionpost-demo-", dir="/tmp"))
    daemons: list[subprocess.Popen[bytes]] = []
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
        homes = {n: make_endpoint(root, n, net) for n in ("alice", "bob")}
        t0 = time.monotonic()
        for name, home in homes.items():
            daemons.append(start_daemon(root, home, name))
        for name, process in zip(homes, daemons, strict=True):
            wait_ready(root, name, process, until)
        took = time.monotonic() - t0
        say(f"   both daemons up and their onion services published in {took:.1f} s")
        cards = {n: cli(h, "whoami", "--json") for n, h in homes.items()}
        for name, card in cards.items():
            say(f"   {name}: {card['address']}")

        say("3. Exchanging contact cards (each side authorizes the other's tor client key) ...")
        cli(homes["alice"], "contact", "add", cards["bob"]["card"])
        cli(homes["bob"], "contact", "add", cards["alice"]["card"])
        number_a = cli(homes["alice"], "contact", "verify", "bob", "--json")["safety_number"]
        number_b = cli(homes["bob"], "contact", "verify", "alice", "--json")["safety_number"]
        if number_a != number_b:
            raise SystemExit("demo: the safety numbers differ")
        say(f"   safety number (the same on both sides): {number_a}")

        say("4. alice -> bob: a text message")
        t0 = time.monotonic()
        sent = cli(
            homes["alice"], "send", "bob", "Hello Bob, this is Alice over onionpost.", "--json"
        )
        wait_state(homes["alice"], sent["id"], {"delivered", "read"}, until)
        got = inbox_has(homes["bob"], lambda m: m.get("id") == sent["id"], until)
        say(
            f"   delivered in {time.monotonic() - t0:.2f} s "
            f"(handshake: Noise XXhfs, X25519 + ML-KEM-768); bob read: {got['body']!r}"
        )

        say("5. bob -> alice: a reply")
        t0 = time.monotonic()
        reply = cli(homes["bob"], "send", "alice", "Hi Alice, received loud and clear.", "--json")
        wait_state(homes["bob"], reply["id"], {"delivered", "read"}, until)
        got = inbox_has(homes["alice"], lambda m: m.get("id") == reply["id"], until)
        say(f"   delivered in {time.monotonic() - t0:.2f} s; alice read: {got['body']!r}")

        say(f"6. alice -> bob: a file of {FILE_SIZE // 2**20} MiB")
        source = root / "evidence.bin"
        source.write_bytes(os.urandom(FILE_SIZE))
        digest = hashlib.blake2b(source.read_bytes()).hexdigest()
        t0 = time.monotonic()
        queued = cli(homes["alice"], "send", "bob", "--file", str(source), "--no-wait", "--json")
        wait_state(homes["alice"], queued["id"], {"delivered", "read"}, until)
        elapsed = time.monotonic() - t0
        inbox_has(homes["bob"], lambda m: m.get("id") == queued["id"], until)
        export = root / "received.bin"
        from onionpost.client import open_client

        async def fetch() -> None:
            async with open_client(homes["bob"]) as client:
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
        for process in daemons:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in daemons:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        if net_dir.exists():
            testnet.down(net_dir)
        if ok:
            shutil.rmtree(root, ignore_errors=True)
        else:
            say(f"   logs kept in {root}")


if __name__ == "__main__":
    sys.exit(main())
