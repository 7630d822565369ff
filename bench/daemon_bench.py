"""The daemon: durable messages per second, and resident memory.

Goals:

- durable texts per second daemon to daemon, exactly once: >= 3,000/s
  through the engine's interface (``daemon_loopback``), >= 2,000/s through
  the local API with 4 concurrent callers (``daemon_api``), >= 1,500/s over
  the private Tor network (``daemon_tor``);
- CPU per message, the daemon process alone: <= 0.3 ms at the sender and
  <= 0.25 ms at the receiver, over loopback and over Tor;
- resident memory of one daemon holding 1,000 concurrent sessions: <= 300 MB;
- resident memory while sending a 1 GB file: flat, and <= 100 MB.

What is measured, exactly
-------------------------
``Daemon.run()`` always opens tor, so two daemons cannot run "over loopback"
without it. Instead:

Two processes, each running one :class:`Daemon` (each its own core, as two
endpoints would have): a sender ("alice") and a receiver ("bob"), each with a
real Store in a temporary directory, running its listener on loopback and its
engine, whose dial is a loopback TCP connection (``Daemon(dial=...)``). The
receiver keeps the default Config, unread quota (``max_unread_per_contact``,
10,000) included: after each round it checks what came in and marks it read
in its store (no read receipts go back, so nothing crosses between rounds),
so the 18,000 texts of the three lines below never meet the quota. Each line
is the median of ``DAEMON_ROUNDS`` rounds of ``MESSAGES`` texts, interleaved
with the peer's, and each round ends with the exactly-once check: the texts
new in the receiver's inbox are exactly the round's ids, each once. A
round's texts are spread over ``API_CLIENTS`` callers, the remainder too
(none is dropped). A round is timed until every text is delivered: the
sender's engine counts the round's texts acknowledged (``texts_acked`` in its
statistics, read from memory every ``POLL_SECONDS``), then its outbox is
empty (asked of its handlers).

peer (every line of this pair) = SQLite alone committing the same rows: one
200-byte row per message at the sender and one at the receiver, each its own
fsync'd transaction (WAL, synchronous=FULL), on the same disk, in this
process; no encryption, no network, no sessions. It is measured again beside
each line.

``daemon_loopback_msgs_per_s``
    The engine's interface, no local API: texts enter the sender through
    ``Daemon.messages.send_text`` (what the local API calls) from ``API_CLIENTS``
    concurrent callers inside the sender process; timed there from the first
    call until every text is delivered.
``daemon_api_msgs_per_s``
    The local API, as a user's program would use it: the sender process also
    serves it (``serve_api``) on a Unix socket in the run's temporary
    directory, and this process sends the texts through the client library,
    ``send_text`` (durable when answered) over ``API_CLIENTS`` concurrent
    connections opened beforehand; timed here from the first call until
    every text is delivered (the sender is told how many and answers once
    they are acknowledged and the outbox is empty).
``daemon_api_shared_msgs_per_s``
    The same, the ``API_CLIENTS`` callers (tasks) sharing one client, as a
    program that opens one client and calls it from several tasks would: their
    calls are pipelined on its one connection.
``daemon_api_batch_msgs_per_s``
    The same with ``send_texts``: ``API_BATCH`` texts a call (one call, durable
    together when answered) from the same ``API_CLIENTS`` connections.
``daemon_<loopback|api|api_shared|api_batch>_<sender|receiver>_cpu_ms_per_msg``
    The CPU time (user plus system, ``/proc/<pid>/stat``) each daemon process
    spent over its line's round, divided by ``MESSAGES``; median of the
    rounds. For the loopback line the window is this process's reading
    before it tells the sender to start and after it says all were
    delivered; for the API lines, from before the first call to after the
    last delivery. The client library's own CPU (this process) is not in it.
    The clock ticks are 10 ms: with the short switch below these are coarse.
``daemon_tor_msgs_per_s``
    Two real ``onionpost daemon`` processes on the private Tor network, each
    with its own tor. After one warm-up message (the session is up), each
    round queues ``MESSAGES`` texts through the client library over
    ``API_CLIENTS`` concurrent local API connections (one connection alone
    measures its request latency, ~3 ms a call, not the daemon; the
    remainder of ``MESSAGES`` is spread over them too) and is timed
    until the outbox is empty; the median of ``TOR_ROUNDS`` rounds. Then
    every id is checked ``delivered`` and present exactly once in the
    receiver's inbox. Also the CPU time each daemon process (not its tor)
    spent per message, which bounds the rate on one core. The peer, after
    each round: SQLite alone committing the same rows (as for the loopback
    line).
``daemon_rss_1000_sessions_MB``
    VmRSS of a responder process that runs a :class:`Daemon` (1,000 contacts
    in its store, no tor) serving ``serve`` on loopback, once another process
    holds 1,000 authenticated sessions to it and the daemon runs its
    per-session tasks (receiver and sender) for each. Also its VmRSS before
    the first session.
``daemon_rss_sending_1GB_file_MB``
    A sender process running a :class:`Daemon` (no tor) sends a 1 GiB file,
    exactly the daemon's way (``send_file`` copies it into the store, then
    offer, accept, ``read_file_chunk`` and FileChunks, until the receiver's
    FileComplete), over loopback TCP to a receiver process running another
    Daemon (``begin_file``, ``write_file_chunk``, ``finish_file``). Its
    VmRSS is sampled every 0.5 s: the value at the start (connected, before
    the file is queued), the largest sample, and VmHWM (the kernel's peak).

``ONIONPOST_BENCH_DAEMON=short`` runs 300 messages a round and one round (a
quick check of the code, its numbers not meant to be compared).

MB is 10^6 bytes. Everything binds and dials 127.0.0.1 only; every wait has a
deadline; every process started here is stopped here.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import trio

from bench._common import compare, fact, line
from onionpost.api import GetStatus, SendFile, SendText
from onionpost.client import Client, open_client
from onionpost.daemon import Daemon, Dial
from onionpost.home import Config, Paths, Secrets
from onionpost.host import serve_api
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity, StaticKey
from onionpost.proto.noise import KeyPair
from onionpost.store import Contact, Direction, Store
from onionpost.testing.endpoint import Endpoint, start_all
from onionpost.testing.testnet import private_network
from onionpost.transport import SecureChannel, Server, connect, serve

LOOPBACK = "127.0.0.1"
REPO = Path(__file__).resolve().parents[1]
# ONIONPOST_BENCH_DAEMON=short: fewer messages and rounds (a quick check of the code).
SHORT = os.environ.get("ONIONPOST_BENCH_DAEMON") == "short"
MESSAGES = 300 if SHORT else 2000
BODY = "m" * 200
DAEMON_ROUNDS = 1 if SHORT else 3
SESSIONS = 1000
CONNECT_CONCURRENCY = 32  # below the listener's 64 handshake slots: nothing is shed
FILE_SIZE = 2**30
SAMPLE_SECONDS = 0.5
TOR_ROUNDS = 3
API_CLIENTS = 4  # concurrent local API connections (or callers) queueing messages
API_BATCH = 100  # texts in one send_texts call
POLL_SECONDS = 0.005

ROUND_SECONDS = 120.0
CHILD_READY_SECONDS = 120.0
FILE_SECONDS = 600.0
DAEMON_READY_SECONDS = 120.0
TOR_DELIVERY_SECONDS = 300.0
STOP_SECONDS = 30.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _rss_mb(pid: int | str, field: str = "VmRSS") -> float:
    """A /proc/<pid>/status memory field (kB, i.e. KiB) in MB (10^6 bytes)."""
    for entry in Path(f"/proc/{pid}/status").read_text().splitlines():
        if entry.startswith(field + ":"):
            return int(entry.split()[1]) * 1024 / 1e6
    raise LookupError(field)


async def _ready(value: bool) -> bool:
    await trio.lowlevel.checkpoint()
    return value


async def _until(check: Callable[[], Awaitable[bool]], interval: float, seconds: float) -> None:
    """Poll ``check`` every ``interval`` seconds until it is true; at most ``seconds``."""
    for _ in range(int(seconds / interval) + 1):
        if await check():
            return
        await trio.sleep(interval)
    raise TimeoutError(f"not done within {seconds} s")


# -- a Daemon without tor ---------------------------------------------------------


def _secrets(name: str, seed: bytes) -> Secrets:
    now = int(time.time())
    secrets = Secrets.generate(name, now=now)
    secrets.identity = Identity(seed)
    secrets.static = StaticKey.generate(secrets.identity, now=now)
    return secrets


@dataclass
class _Node:
    """A Daemon without tor: its store and keys kept at hand for checks."""

    daemon: Daemon
    store: Store
    secrets: Secrets

    def close(self) -> None:
        self.daemon.close()
        self.store.close()


def _tcp_dial(secrets: Secrets, port: Callable[[], int]) -> Dial:
    """Reach a contact at a loopback port instead of through tor."""

    async def dial(contact: Contact) -> SecureChannel:
        stream = await trio.open_tcp_stream(LOOPBACK, port())
        return await connect(
            stream, identity=secrets.identity, static=secrets.static, peer=contact.address
        )

    return dial


def _daemon(
    home: Path,
    secrets: Secrets,
    contacts: Sequence[tuple[str, OnionAddress]],
    port: Callable[[], int] = lambda: 0,
) -> _Node:
    """A Daemon with a fresh store in ``home`` holding ``contacts``, dialling ``port()``."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    paths = Paths.for_home(home)
    store = Store.open(paths.store, paths.files, secrets.store_key)
    now = _now_ms()
    with store.transaction():
        for name, address in contacts:
            # Client authorization only matters to tor; any key will do.
            store.contacts.add_contact(name, address, KeyPair.generate().public, now)
    daemon = Daemon(paths, secrets, Config(), store, dial=_tcp_dial(secrets, port))
    return _Node(daemon, store, secrets)


async def _start(node: _Node, nursery: trio.Nursery) -> tuple[Server, int]:
    """What Daemon.run starts besides tor: the listener (on loopback) and the engine."""
    listeners = await trio.open_tcp_listeners(0, host=LOOPBACK)
    engine = node.daemon.engine
    server = await nursery.start(
        partial(
            serve,
            engine.run_inbound,
            listeners,
            identity=node.secrets.identity,
            static=node.secrets.static,
            decide=engine.decide,
        )
    )
    await nursery.start(engine.run)
    return server, listeners[0].socket.getsockname()[1]


# -- the peer: SQLite alone, committing the same rows ---------------------------------


def _sqlite_alone_msgs_per_s(root: Path) -> float:
    """Each message's rows committed on their own, as a store without group
    commit would: its 200-byte row inserted at the sender (one transaction,
    fsync'd) and at the receiver (another), in WAL with synchronous=FULL, on
    the same disk. No encryption, no network, no sessions."""
    dbs = []
    for name in ("a", "b"):
        path = root / f"sqlite-alone-{name}.db"
        path.unlink(missing_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = FULL")
        db.execute("CREATE TABLE m (id BLOB PRIMARY KEY, body BLOB NOT NULL, state TEXT)")
        dbs.append(db)
    sender, receiver = dbs
    body = BODY.encode()
    start = time.perf_counter()
    for _ in range(MESSAGES):
        message_id = os.urandom(16)
        for db in (sender, receiver):
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO m VALUES (?, ?, 'queued')", (message_id, body))
            db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    for db in dbs:
        db.close()
    return MESSAGES / elapsed


# -- a sending and a receiving daemon, each in its own process ---------------------------


def _shares(total: int, parts: int) -> list[int]:
    """``total`` split over ``parts`` callers, the remainder spread (nothing dropped)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _chunks(total: int, size: int) -> list[int]:
    """``total`` in calls of ``size`` each, the last one smaller when it must be."""
    return [min(size, total - done) for done in range(0, total, size)]


async def _command() -> list[str]:
    """The words of the next line on stdin; none once stdin is closed."""
    text: str = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
    return text.split()


class _Acks:
    """The sender's count of texts its contact acknowledged (the engine's
    ``texts_acked``: each text once, when it moves to ``delivered``), and the
    count a round waits for."""

    def __init__(self) -> None:
        self.target = 0

    async def all_delivered(self, daemon: Daemon, count: int) -> None:
        """Until ``count`` more texts are acknowledged, then until the outbox
        is empty (asked once, as a rule: it scans the messages table). The
        count is read from the engine's memory, so waiting costs the daemon
        next to nothing (polling the store for a message's state, or the
        outbox, every POLL_SECONDS cost the sender CPU that was counted as
        its own)."""
        self.target += count
        engine = daemon.engine

        async def acked() -> bool:
            return await _ready(engine.statistics().texts_acked >= self.target)

        async def empty() -> bool:
            return not (await daemon.status(GetStatus())).outbox_depth

        await _until(acked, POLL_SECONDS, ROUND_SECONDS)
        await _until(empty, POLL_SECONDS, ROUND_SECONDS)


async def _send_round(daemon: Daemon, acks: _Acks, count: int) -> tuple[list[str], float]:
    """``count`` texts through Daemon.messages.send_text by API_CLIENTS concurrent callers
    (as the local API serves its connections); seconds until all are delivered."""
    ids: list[str] = []

    async def caller(n: int) -> None:
        for _ in range(n):
            ids.append((await daemon.messages.send_text(SendText("bob", BODY))).id)

    with trio.fail_after(ROUND_SECONDS):
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for n in _shares(count, API_CLIENTS):
                nursery.start_soon(caller, n)
        await acks.all_delivered(daemon, count)
        elapsed = time.perf_counter() - start
    return ids, elapsed


async def _pair_sender(spec: dict[str, Any]) -> None:
    """A Daemon (no tor) whose contact "bob" is at a loopback port; it serves its
    local API on ``spec["socket"]`` too. On stdin: ``send <count> <ids-file>``
    (a round through Daemon.messages.send_text: answers ``sent <seconds>`` once all are
    delivered, their ids written to the file), ``wait <count>`` (answers
    ``delivered`` once ``count`` more texts are and the outbox is empty).
    Stops when stdin closes."""
    secrets = _secrets("alice", bytes.fromhex(spec["seed"]))
    peer = OnionAddress.parse(spec["peer"])
    node = _daemon(Path(spec["home"]), secrets, [("bob", peer)], lambda: int(spec["port"]))
    try:
        async with trio.open_nursery() as nursery:
            await _start(node, nursery)
            await nursery.start(serve_api, node.daemon, Path(spec["socket"]))
            _say("ready")
            acks = _Acks()
            while words := await _command():
                if words[0] == "send":
                    ids, elapsed = await _send_round(node.daemon, acks, int(words[1]))
                    await trio.Path(words[2]).write_text("\n".join(ids))
                    _say("sent", f"{elapsed:.6f}")
                elif words[0] == "wait":
                    with trio.fail_after(ROUND_SECONDS):
                        await acks.all_delivered(node.daemon, int(words[1]))
                    _say("delivered")
                else:
                    _say("unknown", *words)
            nursery.cancel_scope.cancel()
    finally:
        node.close()


async def _pair_receiver(spec: dict[str, Any]) -> None:
    """A Daemon (no tor) receiving from its contact "alice". On stdin:
    ``check <ids-file>``: the texts that came in since the last check must be
    exactly those ids, each once; then they are marked read in the store (no
    read receipts go back), so the unread quota never refuses the next round.
    Answers ``checked <count>`` (or ``wrong ...``). Stops when stdin closes."""
    secrets = _secrets("bob", bytes.fromhex(spec["seed"]))
    node = _daemon(Path(spec["home"]), secrets, [("alice", OnionAddress.parse(spec["peer"]))])
    store = node.store
    after = 0
    try:
        async with trio.open_nursery() as nursery:
            _, port = await _start(node, nursery)
            _say("port", port)
            while words := await _command():
                if words[0] != "check":
                    _say("unknown", *words)
                    continue
                expected = (await trio.Path(words[1]).read_text()).split()
                got = await trio.to_thread.run_sync(
                    partial(store.messages.inbox, after=after, limit=len(expected) + 1)
                )
                counts = Counter(stored.id.hex() for stored in got)
                if len(got) != len(expected) or any(counts[i] != 1 for i in expected):
                    _say("wrong", f"got={len(got)}", f"expected={len(expected)}")
                    continue
                await trio.to_thread.run_sync(
                    partial(
                        store.messages.mark_read,
                        [stored.id for stored in got],
                        _now_ms(),
                        direction=Direction.IN,
                    )
                )
                after = max(stored.seq for stored in got)
                _say("checked", len(got))
            nursery.cancel_scope.cancel()
    finally:
        node.close()


@dataclass
class _Round:
    msgs_per_s: float
    sender_cpu_ms: float  # the sending daemon's CPU per message
    receiver_cpu_ms: float


class _Pair:
    """A sender and a receiver process, each running a Daemon without tor."""

    def __init__(self, root: Path, children: list[_Process]) -> None:
        self._root = root
        self._socket = root / "api" / "control.sock"
        if len(os.fsencode(self._socket)) > 100:
            raise RuntimeError(f"{self._socket} is too long for a unix socket")
        self._rounds = 0
        sender_seed, receiver_seed = os.urandom(32), os.urandom(32)
        self.receiver = _Process(
            "pair-receiver",
            {
                "home": str(root / "pair-receiver"),
                "seed": receiver_seed.hex(),
                "peer": str(Identity(sender_seed).address),
            },
            root,
        )
        children.append(self.receiver)
        (port,) = self.receiver.expect("port", CHILD_READY_SECONDS)
        self.sender = _Process(
            "pair-sender",
            {
                "home": str(root / "pair-sender"),
                "seed": sender_seed.hex(),
                "peer": str(Identity(receiver_seed).address),
                "port": int(port),
                "socket": str(self._socket),
            },
            root,
        )
        children.append(self.sender)
        self.sender.expect("ready", CHILD_READY_SECONDS)

    def _cpu(self) -> tuple[float, float]:
        return _cpu_s(self.sender.pid), _cpu_s(self.receiver.pid)

    def _ids_file(self) -> Path:
        self._rounds += 1
        return self._root / f"pair-ids-{self._rounds}.txt"

    def _checked(self, ids_file: Path) -> None:
        """Exactly once: the receiver's new texts are exactly these ids."""
        self.receiver.tell(f"check {ids_file}\n")
        (count,) = self.receiver.expect("checked", ROUND_SECONDS)
        assert int(count) == MESSAGES

    @staticmethod
    def _round(seconds: float, before: tuple[float, float], after: tuple[float, float]) -> _Round:
        sender, receiver = ((b - a) * 1000 / MESSAGES for a, b in zip(before, after, strict=True))
        return _Round(MESSAGES / seconds, sender, receiver)

    def loopback(self) -> _Round:
        """MESSAGES texts through Daemon.messages.send_text inside the sender process."""
        ids_file = self._ids_file()
        before = self._cpu()
        self.sender.tell(f"send {MESSAGES} {ids_file}\n")
        (seconds,) = self.sender.expect("sent", ROUND_SECONDS)
        after = self._cpu()
        self._checked(ids_file)
        return self._round(float(seconds), before, after)

    def api(self, batch: int, *, shared: bool = False) -> _Round:
        """MESSAGES texts through the local API from this process: send_text
        (``batch`` 1) or send_texts with ``batch`` texts a call; by API_CLIENTS
        callers, each with its own client or (``shared``) all sharing one."""
        return trio.run(partial(self._api, batch, shared=shared))

    async def _api(self, batch: int, *, shared: bool) -> _Round:
        ids: list[str] = []

        async def user(client: Client, count: int) -> None:
            if batch == 1:
                for _ in range(count):
                    ids.append((await client.send_text("bob", BODY)).id)
            else:
                for n in _chunks(count, batch):
                    ids.extend(queued.id for queued in await client.send_texts("bob", [BODY] * n))

        async with contextlib.AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(open_client(socket_path=self._socket))
                for _ in range(1 if shared else API_CLIENTS)
            ] * (API_CLIENTS if shared else 1)
            before = self._cpu()
            with trio.fail_after(ROUND_SECONDS):
                start = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for client, count in zip(clients, _shares(MESSAGES, API_CLIENTS), strict=True):
                        nursery.start_soon(user, client, count)
                self.sender.tell(f"wait {len(ids)}\n")
                await trio.to_thread.run_sync(self.sender.expect, "delivered", ROUND_SECONDS)
                elapsed = time.perf_counter() - start
            after = self._cpu()
        ids_file = self._ids_file()
        ids_file.write_text("\n".join(ids))
        self._checked(ids_file)
        return self._round(elapsed, before, after)


def _measured(
    ours: Callable[[], _Round], peer: Callable[[], float]
) -> tuple[float, float, list[_Round]]:
    """compare() of ours' rate with the peer's, and ours' rounds."""
    rounds: list[_Round] = []

    def one() -> float:
        rounds.append(ours())
        return rounds[-1].msgs_per_s

    rate, peer_rate = compare(one, peer, rounds=DAEMON_ROUNDS)
    return rate, peer_rate, rounds


def pair_lines(root: Path) -> Iterator[str]:
    """The loopback and local API lines, with their CPU per message."""
    with _processes() as children:
        pair = _Pair(root, children)
        ways: list[tuple[str, Callable[[], _Round]]] = [
            ("loopback", pair.loopback),
            ("api", partial(pair.api, 1)),
            ("api_shared", partial(pair.api, 1, shared=True)),
            ("api_batch", partial(pair.api, API_BATCH)),
        ]
        for name, ours in ways:
            rate, peer, rounds = _measured(ours, partial(_sqlite_alone_msgs_per_s, root))
            yield line(f"daemon_{name}_msgs_per_s", rate, peer, "/s")
            sender = statistics.median(r.sender_cpu_ms for r in rounds)
            yield fact(f"daemon_{name}_sender_cpu_ms_per_msg", sender, "ms")
            receiver = statistics.median(r.receiver_cpu_ms for r in rounds)
            yield fact(f"daemon_{name}_receiver_cpu_ms_per_msg", receiver, "ms")


# -- child processes (memory) -----------------------------------------------------------


def _child(role: str, spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    trio.run(
        {
            "responder": _responder,
            "initiators": _initiators,
            "file-sender": _file_sender,
            "pair-sender": _pair_sender,
            "pair-receiver": _pair_receiver,
        }[role],
        spec,
    )
    return 0


def _say(*words: object) -> None:
    print(*words, flush=True)


async def _wait_stdin_closed() -> None:
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        while await stdin.receive_some():
            pass


async def _responder(spec: dict[str, Any]) -> None:
    """A Daemon (no tor) serving its contacts; says when ``expect`` sessions are up."""
    secrets = _secrets("responder", bytes.fromhex(spec["seed"]))
    contacts = [(f"c{i}", OnionAddress.parse(a)) for i, a in enumerate(spec["contacts"])]
    node = _daemon(Path(spec["home"]), secrets, contacts)
    try:
        async with trio.open_nursery() as nursery:
            server, port = await _start(node, nursery)
            _say("port", port)

            async def report() -> None:
                for _ in range(int(CHILD_READY_SECONDS / 0.05)):
                    if server.statistics().active_sessions >= spec["expect"]:
                        _say("sessions", server.statistics().active_sessions)
                        return
                    await trio.sleep(0.05)

            if spec["expect"]:
                nursery.start_soon(report)
            await _wait_stdin_closed()
            nursery.cancel_scope.cancel()
    finally:
        node.close()


async def _initiators(spec: dict[str, Any]) -> None:
    """Hold one authenticated session per seed to the responder until stdin closes."""
    peer = OnionAddress.parse(spec["peer"])
    now = int(time.time())
    keys = []
    for seed in spec["seeds"]:
        identity = Identity(bytes.fromhex(seed))
        keys.append((identity, StaticKey.generate(identity, now=now)))
    channels: list[SecureChannel] = []
    limit = trio.Semaphore(CONNECT_CONCURRENCY)

    async def one(identity: Identity, static: StaticKey) -> None:
        async with limit:
            stream = await trio.open_tcp_stream(LOOPBACK, spec["port"])
            channels.append(await connect(stream, identity=identity, static=static, peer=peer))

    start = time.perf_counter()
    with trio.fail_after(CHILD_READY_SECONDS):
        async with trio.open_nursery() as nursery:
            for identity, static in keys:
                nursery.start_soon(one, identity, static)
    _say("ready", len(channels), f"{time.perf_counter() - start:.2f}")
    await _wait_stdin_closed()
    with trio.move_on_after(STOP_SECONDS):
        for channel in channels:
            await channel.aclose()


async def _file_sender(spec: dict[str, Any]) -> None:
    """A Daemon (no tor) that sends one file to its contact when told "go" on stdin."""
    secrets = _secrets("sender", bytes.fromhex(spec["seed"]))
    node = _daemon(
        Path(spec["home"]),
        secrets,
        [("peer", OnionAddress.parse(spec["peer"]))],
        lambda: int(spec["port"]),
    )
    daemon = node.daemon
    try:
        async with trio.open_nursery() as nursery:
            await _start(node, nursery)
            _say("ready")
            stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
            async with stdin:
                assert await stdin.receive_some() == b"go\n"
            start = time.perf_counter()
            queued = await daemon.messages.send_file(SendFile("peer", spec["file"]))
            _say("queued", f"{time.perf_counter() - start:.2f}")
            file_id = bytes.fromhex(queued.id)
            await _until(
                lambda: _ready(node.store.messages.message(file_id).state == "delivered"),
                0.05,
                FILE_SECONDS,
            )
            _say("delivered", f"{time.perf_counter() - start:.2f}")
            _say("hwm", f"{_rss_mb('self', 'VmHWM'):.1f}")
            nursery.cancel_scope.cancel()
    finally:
        node.close()


class _Process:
    """A child ``python -m bench.daemon_bench <role> <spec>``, its output lines in a queue."""

    def __init__(self, role: str, spec: dict[str, Any], root: Path) -> None:
        path = root / f"{role}.json"
        path.write_text(json.dumps(spec))
        path.chmod(0o600)
        self.log = root / f"{role}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.daemon_bench", role, str(path)],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log.open("wb"),
            text=True,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            self._lines.put(text.strip())
        self._lines.put(None)

    def expect(self, word: str, seconds: float) -> list[str]:
        """The words of the next output line, which must start with ``word``."""
        try:
            got = self._lines.get(timeout=seconds)
        except queue.Empty:
            got = "(nothing in time)"
        if got is None or got.split()[0] != word:
            raise RuntimeError(f"{word!r} expected, got {got!r}: {self.log.read_text()[-3000:]}")
        return got.split()[1:]

    def tell(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        try:
            self.proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(STOP_SECONDS)


@contextlib.contextmanager
def _processes() -> Iterator[list[_Process]]:
    started: list[_Process] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            process.stop()


def _rss_sessions(root: Path) -> tuple[float, float, float]:
    """(responder VmRSS before, with SESSIONS sessions; seconds to open them)."""
    responder_seed = os.urandom(32)
    seeds = [os.urandom(32) for _ in range(SESSIONS)]
    with _processes() as children:
        responder = _Process(
            "responder",
            {
                "home": str(root / "responder"),
                "seed": responder_seed.hex(),
                "contacts": [str(Identity(s).address) for s in seeds],
                "expect": SESSIONS,
            },
            root,
        )
        children.append(responder)
        (port,) = responder.expect("port", CHILD_READY_SECONDS)
        time.sleep(1)
        before = _rss_mb(responder.pid)
        initiators = _Process(
            "initiators",
            {
                "seeds": [s.hex() for s in seeds],
                "peer": str(Identity(responder_seed).address),
                "port": int(port),
            },
            root,
        )
        children.append(initiators)
        count, seconds = initiators.expect("ready", CHILD_READY_SECONDS)
        assert int(count) == SESSIONS
        responder.expect("sessions", CHILD_READY_SECONDS)
        time.sleep(1)
        return before, _rss_mb(responder.pid), float(seconds)


def _write_file(path: Path, size: int) -> None:
    block = os.urandom(1 << 22)
    with path.open("wb") as out:
        for offset in range(0, size, len(block)):
            out.write(block[: min(len(block), size - offset)])


def _rss_file(root: Path) -> tuple[float, float, float, float]:
    """(sender VmRSS at start, largest sample, VmHWM; seconds from queueing to delivered)."""
    source = root / "one-gib.bin"
    _write_file(source, FILE_SIZE)
    sender_seed, receiver_seed = os.urandom(32), os.urandom(32)
    with _processes() as children:
        receiver = _Process(
            "responder",
            {
                "home": str(root / "file-receiver"),
                "seed": receiver_seed.hex(),
                "contacts": [str(Identity(sender_seed).address)],
                "expect": 0,
            },
            root,
        )
        children.append(receiver)
        (port,) = receiver.expect("port", CHILD_READY_SECONDS)
        sender = _Process(
            "file-sender",
            {
                "home": str(root / "file-sender"),
                "seed": sender_seed.hex(),
                "peer": str(Identity(receiver_seed).address),
                "port": int(port),
                "file": str(source),
            },
            root,
        )
        children.append(sender)
        sender.expect("ready", CHILD_READY_SECONDS)
        time.sleep(1)
        start = _rss_mb(sender.pid)
        samples = [start]
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(SAMPLE_SECONDS):
                with contextlib.suppress(OSError, LookupError):
                    samples.append(_rss_mb(sender.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            sender.tell("go\n")
            sender.expect("queued", FILE_SECONDS)
            (seconds,) = sender.expect("delivered", FILE_SECONDS)
            (hwm,) = sender.expect("hwm", STOP_SECONDS)
        finally:
            stop.set()
            sampler.join(STOP_SECONDS)
        return start, max(samples), float(hwm), float(seconds)


# -- two real daemons on the private Tor network ----------------------------------------


async def _wait_delivered(client: Any, message_id: str, seconds: float) -> None:
    async def delivered() -> bool:
        return (await client.message(message_id)).state in {"delivered", "read"}

    await _until(delivered, 0.1, seconds)


def _cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _tor_rounds(alice: Endpoint, bob: Endpoint, peers: list[float]) -> list[_Round]:
    """The rounds over tor, each followed by the peer's (SQLite alone, its
    rates appended to ``peers``), so that both see the same machine."""
    assert alice.process is not None
    assert bob.process is not None
    pids = (alice.process.pid, bob.process.pid)
    rounds: list[_Round] = []
    ids: list[str] = []
    async with open_client(alice.home) as client:
        warm = await client.send_text("bob", "warm-up")
        await _wait_delivered(client, warm.id, TOR_DELIVERY_SECONDS)
        ids.append(warm.id)

        async def empty() -> bool:
            return not (await client.status()).outbox_depth

        async def queue_texts(count: int) -> None:
            async with open_client(alice.home) as api:
                for _ in range(count):
                    ids.append((await api.send_text("bob", BODY)).id)

        for _ in range(TOR_ROUNDS):
            cpu = [_cpu_s(pid) for pid in pids]
            with trio.fail_after(TOR_DELIVERY_SECONDS):
                start = time.perf_counter()
                async with trio.open_nursery() as nursery:
                    for count in _shares(MESSAGES, API_CLIENTS):
                        nursery.start_soon(queue_texts, count)
                await _until(empty, 0.02, TOR_DELIVERY_SECONDS)
                elapsed = time.perf_counter() - start
            sender, receiver = (
                (_cpu_s(pid) - before) * 1000 / MESSAGES
                for pid, before in zip(pids, cpu, strict=True)
            )
            rounds.append(_Round(MESSAGES / elapsed, sender, receiver))
            peers.append(_sqlite_alone_msgs_per_s(alice.home))
        for message_id in ids:
            assert (await client.message(message_id)).state in {"delivered", "read"}
    async with open_client(bob.home) as client:
        seen: list[str] = []
        after = 0
        for _ in range(len(ids)):  # pages; bounded
            page = await client.inbox(after=after, limit=1000)
            if not page:
                break
            seen.extend(message.id for message in page)
            last = page[-1].seq
            assert last is not None  # inbox entries are stored messages
            after = last
    counts = Counter(seen)
    assert all(counts[message_id] == 1 for message_id in ids)  # exactly once
    return rounds


def _tor_rate(peers: list[float]) -> list[_Round]:
    with private_network("onionpost-bench-daemon-") as (root, net, _):
        alice = Endpoint(root, "alice", net)
        bob = Endpoint(root, "bob", net)
        try:
            start_all([alice, bob], DAEMON_READY_SECONDS)
            alice_card = alice.json("whoami")["card"]
            bob_card = bob.json("whoami")["card"]
            alice.cli("contact", "add", bob_card)
            bob.cli("contact", "add", alice_card)
            return trio.run(_tor_rounds, alice, bob, peers)
        finally:
            alice.stop()
            bob.stop()


# -- the section -------------------------------------------------------------------------


def run() -> Iterator[str]:
    root = Path(tempfile.mkdtemp(prefix="onionpost-bench-daemon-", dir="/tmp"))
    try:
        yield from pair_lines(root)

        before, during, seconds = _rss_sessions(root)
        yield fact("daemon_rss_before_sessions_MB", before, "MB")
        yield fact("daemon_rss_1000_sessions_MB", during, "MB")
        yield fact("daemon_1000_sessions_open_s", seconds, "s")

        start, largest, hwm, seconds = _rss_file(root)
        yield fact("daemon_rss_sending_1GB_file_start_MB", start, "MB")
        yield fact("daemon_rss_sending_1GB_file_MB", largest, "MB")
        yield fact("daemon_rss_sending_1GB_file_peak_MB", hwm, "MB")
        yield fact("daemon_loopback_1GB_file_s", seconds, "s")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    peers: list[float] = []
    rounds = _tor_rate(peers)
    rate = statistics.median(r.msgs_per_s for r in rounds)
    yield line("daemon_tor_msgs_per_s", rate, statistics.median(peers), "/s")
    sender = statistics.median(r.sender_cpu_ms for r in rounds)
    yield fact("daemon_tor_sender_cpu_ms_per_msg", sender, "ms")
    receiver = statistics.median(r.receiver_cpu_ms for r in rounds)
    yield fact("daemon_tor_receiver_cpu_ms_per_msg", receiver, "ms")


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1], sys.argv[2]))
