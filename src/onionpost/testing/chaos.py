"""A week of bad luck in an hour: endpoints and mailboxes under a seeded schedule of faults.

::

    python -m onionpost.testing.chaos --seconds 3600          # `make chaos`
    ONIONPOST_CHAOS_SEED=1234 python -m onionpost.testing.chaos --short

Theory of operation
-------------------
On a private Tor network (:mod:`~onionpost.testing.testnet`), ``endpoints``
real ``onionpost daemon`` processes and ``mailboxes`` real ``onionpost
mailbox serve`` processes, each with its own tor, are set up as an operator
would: every endpoint is a contact of every other and is paired with one
mailbox (endpoint *i* with mailbox *i mod M*); one text goes each way
between every two endpoints so that each learns the others' mailboxes.

Then, for ``seconds``, every endpoint sends texts and small files to the
others (away or not) through :mod:`onionpost.client`, under ids it chose,
and records each send in a *history* (Jepsen style): ``ok`` when the daemon
acknowledged it (durably queued), ``fail`` when nothing was sent (no daemon
listened), ``info`` when it is unknown (the call timed out or broke: the
daemon may have queued it). Meanwhile a schedule, drawn in full from the
seed before the run, injects faults (:data:`KINDS`): kill -9 of a daemon
alone (its tor is left to notice), of its tor alone (the daemon must restore
it), of both; SIGTERM; SIGSTOP of a daemon and its tor for a while, then
SIGCONT; kill -9 of a mailbox and its tor, then a restart; a relay of the
network restarted; a "full disk" for a while. One endpoint (drawn from the
seed) runs with its wall clock offset for the whole run. A watcher notices
any daemon or mailbox that exits without the schedule having stopped it
(a violation), and starts it again so the run goes on.

At the end every fault is healed (every process running, every stopped one
continued) and the run waits, bounded, for quiescence: every outbox empty,
every acknowledged send in its recipient's store, and every sender seeing
it delivered. Then it checks, from every endpoint's own records (its inbox,
its messages' states, the files it exports) against the history:

- every acknowledged send arrived exactly once at its recipient, with its
  body (texts) or its BLAKE2b (files, exported and hashed);
- nothing arrived that was not sent (by that sender, with that body); an
  ``info`` send may have arrived, once; a ``fail`` send did not;
- every message its sender knows ends ``delivered``/``read``, or ``expired``
  / ``refused`` (a stated reason);
- no daemon or mailbox exited by itself, and SIGTERM ended each with 0;

and prints per process its peak RSS and its open fds at the start and the
end, the schedule as run, and the seed (``ONIONPOST_CHAOS_SEED=<seed>``
replays the same schedule, traffic, ids and bodies; what tor does with them
still varies). It exits non-zero on any violation.

Two faults are approximations, and say so:

- *Full disk*: without root there is no small filesystem to fill, so the
  daemon's ``RLIMIT_FSIZE`` (``prlimit``, on the daemon alone, not its tor)
  is lowered to the size of its database file for a while: no write may
  reach past that offset in any file, so the database cannot grow, nor the
  WAL past it, nor a received file; such a write fails with ``EFBIG``
  (Python ignores ``SIGXFSZ``) instead of ``ENOSPC``. A real full disk would
  still let the WAL reuse its own length; this one is a little harsher.
- *Clock offset*: the machine's clock is not touched. The daemon of one
  endpoint runs under a shim that adds an offset to ``time.time`` and
  ``time.time_ns`` (its wall clock: timestamps, certificate and prekey
  validity) before the CLI starts; its monotonic clock and its tor's clock
  are the real ones (tor with a skewed clock would reject the consensus,
  which is tor's behaviour, not ours).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Final, Literal

import trio

from onionpost.client import Message, open_client
from onionpost.errors import ApiError, DaemonNotRunningError, OnionpostError
from onionpost.testing.endpoint import Endpoint, EndpointError
from onionpost.testing.mailbox import PAIR_SECONDS, Mailbox, endpoint_config, pair
from onionpost.testing.testnet import ROLE_RELAY, Testnet, down, restart_node, up

__all__ = [
    "KINDS",
    "MAILBOX_STORE_FILE",
    "SEED_ENV",
    "STORE_FILE",
    "ChaosEndpoint",
    "ChaosOptions",
    "Fault",
    "Fleet",
    "History",
    "Op",
    "ProcessStats",
    "check",
    "children",
    "network",
    "proc_status",
    "quiesce",
    "say",
    "seed_from_env",
    "tor_of",
    "main",
    "plan_faults",
    "run",
]

#: A home's database and a mailbox's (``onionpost.home.Paths``, which the
#: harness may not import: it sees a home as an operator does; a test keeps them equal).
STORE_FILE: Final = "store.sqlite"
MAILBOX_STORE_FILE: Final = "mailbox.db"

#: Replays a run: the same schedule, traffic, ids and bodies.
SEED_ENV: Final = "ONIONPOST_CHAOS_SEED"

KILL_DAEMON: Final = "kill -9 daemon"
KILL_TOR: Final = "kill -9 tor"
KILL_BOTH: Final = "kill -9 daemon+tor"
SIGTERM: Final = "SIGTERM"
SIGSTOP: Final = "SIGSTOP/SIGCONT"
DISK_FULL: Final = "disk full"
MAILBOX_KILL: Final = "kill -9 mailbox+tor"
RELAY_RESTART: Final = "relay restart"
#: Every kind of fault; the schedule plays each once (in an order drawn from
#: the seed) before it draws them at random.
KINDS: Final = (
    KILL_DAEMON,
    KILL_TOR,
    KILL_BOTH,
    SIGTERM,
    SIGSTOP,
    DISK_FULL,
    MAILBOX_KILL,
    RELAY_RESTART,
)
_ENDPOINT_KINDS: Final = frozenset({KILL_DAEMON, KILL_TOR, KILL_BOTH, SIGTERM, SIGSTOP, DISK_FULL})

DONE: Final = frozenset({"delivered", "read"})
FAILED: Final = frozenset({"expired", "refused"})

#: One client call (a send, a question) must answer within this.
CALL_SECONDS: Final = 20.0
_POLL: Final = 1.0
_PAGE: Final = 1000  # the inbox is read in pages of this many
_MAX_PAGES: Final = 10_000
_WATCH_SECONDS: Final = 1.0
_LOG_LINES: Final = 15

# The daemon under a shifted wall clock: see the module docstring.
_SKEWED_CLOCK: Final = (
    "import runpy, sys, time\n"
    "offset = float(sys.argv.pop(1))\n"
    "real, real_ns = time.time, time.time_ns\n"
    "time.time = lambda: real() + offset\n"
    "time.time_ns = lambda: real_ns() + int(offset * 1e9)\n"
    "sys.argv[0] = 'onionpost'\n"
    "runpy.run_module('onionpost', run_name='__main__', alter_sys=True)\n"
)


def say(text: str) -> None:
    print(text, flush=True)


# -- options and the schedule -------------------------------------------------------------------


Span = tuple[float, float]


@dataclass(frozen=True)
class ChaosOptions:
    """What a run does; :meth:`short` is the form the test suite plays."""

    endpoints: int = 6
    mailboxes: int = 2
    #: Traffic and faults last this long; setup and quiescence come on top.
    seconds: float = 3600.0
    seed: int = 0
    #: Seconds between two faults' starts: a mean of 12 s gives the full form's
    #: hour ~260 faults (some overlapping, on different targets).
    fault_gap: Span = (6.0, 18.0)
    #: How long a SIGSTOP lasts before SIGCONT.
    stop_seconds: Span = (30.0, 120.0)
    #: How long a killed or terminated process stays down.
    down_seconds: Span = (5.0, 60.0)
    #: How long a relay stays down.
    relay_down_seconds: Span = (2.0, 10.0)
    #: How long the disk stays full.
    disk_full_seconds: Span = (10.0, 60.0)
    disk_full: bool = True
    #: A planned fault keeps its target busy this long after its own duration (a restart).
    restart_allowance: float = 40.0
    relay_restarts: bool = True
    #: The largest wall-clock offset (either way) of the one skewed endpoint; 0: none.
    clock_offset: float = 6 * 3600.0
    #: Seconds an endpoint waits between two sends.
    send_gap: Span = (1.0, 5.0)
    #: The share of sends that are files, and their sizes.
    file_share: float = 0.15
    file_bytes: tuple[int, int] = (1_000, 150_000)
    #: Endpoints' config: mailbox_after and connect_timeout (mailbox.endpoint_config).
    mailbox_after: float = 2.0
    connect_timeout: float = 15.0
    setup_seconds: float = 240.0
    quiesce_seconds: float = 900.0
    ready_seconds: float = 180.0
    #: Seconds between two samples of every process's RSS and fds.
    sample_every: float = 5.0

    @classmethod
    def short(cls, seed: int, **changes: object) -> ChaosOptions:
        """3 endpoints, 1 mailbox, a minute of faults: the test suite's form."""
        base = cls(
            endpoints=3,
            mailboxes=1,
            seconds=60.0,
            seed=seed,
            fault_gap=(5.0, 9.0),
            stop_seconds=(5.0, 15.0),
            down_seconds=(3.0, 10.0),
            relay_down_seconds=(1.0, 3.0),
            disk_full_seconds=(5.0, 10.0),
            restart_allowance=8.0,
            send_gap=(0.5, 2.0),
            file_share=0.15,
            file_bytes=(1_000, 40_000),
            setup_seconds=240.0,
            quiesce_seconds=150.0,
            ready_seconds=90.0,
            sample_every=2.0,
        )
        return replace(base, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Fault:
    """One planned fault: at ``at`` seconds into the run, ``kind`` on ``target``
    (an endpoint's or a mailbox's name, or a relay's nickname) for ``seconds``."""

    at: float
    kind: str
    target: str
    seconds: float


def plan_faults(
    options: ChaosOptions, endpoints: Sequence[str], mailboxes: Sequence[str], relays: Sequence[str]
) -> list[Fault]:
    """The whole schedule, from the seed alone. A target has one fault at a time
    (planned with room for a restart); a kind with no free target is skipped."""
    rng = random.Random(f"{options.seed}:faults")  # noqa: S311 - seeded, not security
    kinds = [
        k
        for k in KINDS
        if (k != DISK_FULL or options.disk_full)
        and (k != RELAY_RESTART or (options.relay_restarts and relays))
        and (k != MAILBOX_KILL or mailboxes)
    ]
    first = list(kinds)
    rng.shuffle(first)
    busy: dict[str, float] = {}
    faults: list[Fault] = []
    at = rng.uniform(*options.fault_gap) / 2
    for _ in range(100_000):  # bounded: one fault per gap
        if at >= options.seconds:
            break
        from_first = bool(first)
        kind = first.pop(0) if first else rng.choice(kinds)
        if kind == MAILBOX_KILL:
            pool, span = list(mailboxes), options.down_seconds
        elif kind == RELAY_RESTART:
            pool, span = list(relays), options.relay_down_seconds
        elif kind == SIGSTOP:
            pool, span = list(endpoints), options.stop_seconds
        elif kind == DISK_FULL:
            pool, span = list(endpoints), options.disk_full_seconds
        elif kind == KILL_TOR:
            pool, span = list(endpoints), (0.0, 0.0)
        else:
            pool, span = list(endpoints), options.down_seconds
        if kind == RELAY_RESTART:
            # One relay down at a time: the network has two.
            free = [t for t in pool if all(busy.get(r, 0.0) <= at for r in relays)]
        else:
            free = [t for t in pool if busy.get(t, 0.0) <= at]
        seconds = round(rng.uniform(*span), 1)
        if free:
            target = rng.choice(free)
            faults.append(Fault(round(at, 1), kind, target, seconds))
            busy[target] = at + seconds + options.restart_allowance
        elif from_first:
            first.append(kind)  # its turn comes again
        at += rng.uniform(*options.fault_gap)
    return faults


# -- processes ------------------------------------------------------------------------------------


class ChaosEndpoint(Endpoint):
    """An endpoint whose daemon may run with its wall clock offset (module docstring)."""

    clock_offset: float = 0.0
    #: Where and how often :mod:`onionpost.testing.memprobe` samples its daemon, if at all.
    probe: tuple[Path, float, bool] | None = None

    def argv(self, *args: str) -> list[str]:
        if self.probe is not None and args[:1] == ("daemon",):
            out, every, trace = self.probe
            flags = ["--trace"] if trace else []
            return [
                sys.executable,
                "-m",
                "onionpost.testing.memprobe",
                str(out),
                repr(every),
                *flags,
                "--",
                "--home",
                str(self.home),
                *args,
            ]
        if self.clock_offset and args[:1] == ("daemon",):
            return [
                sys.executable,
                "-c",
                _SKEWED_CLOCK,
                repr(self.clock_offset),
                "--home",
                str(self.home),
                *args,
            ]
        return super().argv(*args)


@dataclass
class ProcessStats:
    """RSS and fds of one role (a daemon, a mailbox, or its tor), across restarts."""

    peak_rss_kib: int = 0
    fds_start: int | None = None
    fds_end: int | None = None
    rss_start_kib: int | None = None
    rss_end_kib: int | None = None


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (KiB) and the open fds of a process; {} when it is gone."""
    found: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                found[key] = int(value.split()[0])
        found["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError, IndexError):
        return {}
    # A process that has exited and is not yet reaped (a zombie) has no memory
    # lines: it is gone too.
    return found if "VmRSS" in found else {}


def children() -> dict[int, list[tuple[int, str]]]:
    """Every process's children, with their command names, from /proc."""
    tree: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append((int(entry.name), comm))
    return tree


def tor_of(pid: int, tree: dict[int, list[tuple[int, str]]] | None = None) -> int | None:
    """The tor a daemon or mailbox process launched, if it runs."""
    for child, comm in (tree if tree is not None else children()).get(pid, []):
        if comm == "tor":
            return child
    return None


def group_members(pgid: int, marker: str) -> list[int]:
    """Processes of process group ``pgid`` whose command line names ``marker``
    (a run's directory): a recycled pid is never taken for ours."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getpgid(int(entry.name)) != pgid:
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ProcessLookupError):
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


# -- the history ---------------------------------------------------------------------------------


Outcome = Literal["ok", "fail", "info"]


@dataclass
class Op:
    """One send in the history: who to whom, what, and what the daemon said."""

    id: str
    sender: str
    to: str
    kind: Literal["text", "file"]
    body: str = ""
    digest: str = ""
    size: int = 0
    invoked: float = 0.0
    completed: float = 0.0
    outcome: Outcome = "info"
    error: str = ""


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def by_id(self) -> dict[str, Op]:
        return {op.id: op for op in self.ops}

    def write(self, path: Path) -> None:
        with path.open("w") as out:
            for op in self.ops:
                out.write(json.dumps(asdict(op)) + "\n")


def _digest(data: bytes) -> str:
    return hashlib.blake2b(data).hexdigest()


# -- the fleet: the processes of one run and what is asked of them ---------------------------------


@dataclass
class Fleet:
    """Endpoints and mailboxes on one network, the history of their sends, and
    what the run saw (violations, notes, process statistics)."""

    root: Path
    net: Testnet
    endpoints: list[ChaosEndpoint]
    mailboxes: list[Mailbox]
    history: History = field(default_factory=History)
    violations: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, ProcessStats] = field(default_factory=dict)
    #: Names of processes the schedule is acting on (the watcher leaves them alone).
    faulted: set[str] = field(default_factory=set)
    #: Process groups a kill -9 of a daemon alone left behind (its tor): reaped at the end.
    orphans: list[int] = field(default_factory=list)
    #: Process groups stopped (SIGSTOP) right now.
    stopped: set[int] = field(default_factory=set)
    files: Path = field(init=False)

    def __post_init__(self) -> None:
        self.files = self.root / "sent-files"
        self.files.mkdir(exist_ok=True)

    @classmethod
    def create(
        cls,
        root: Path,
        net: Testnet,
        endpoints: int,
        mailboxes: int,
        *,
        mailbox_after: float = 2.0,
        connect_timeout: float = 15.0,
        clock_offsets: dict[int, float] | None = None,
    ) -> Fleet:
        """``onionpost init`` of every home, a few at a time."""
        config = endpoint_config(mailbox_after=mailbox_after, connect_timeout=connect_timeout)
        offsets = clock_offsets or {}

        def endpoint(i: int) -> ChaosEndpoint:
            made = ChaosEndpoint(root, f"ep{i}", net, top_config=config)
            made.clock_offset = offsets.get(i, 0.0)
            return made

        with ThreadPoolExecutor(max_workers=4) as pool:
            made = list(pool.map(endpoint, range(endpoints)))
            boxes = list(pool.map(lambda i: Mailbox(root, f"box{i}", net), range(mailboxes)))
        return cls(root, net, made, boxes)

    @property
    def processes(self) -> list[Endpoint]:
        return [*self.endpoints, *self.mailboxes]

    def get(self, name: str) -> Endpoint:
        (found,) = [p for p in self.processes if p.name == name]
        return found

    def mailbox_of(self, i: int) -> Mailbox:
        return self.mailboxes[i % len(self.mailboxes)]

    # -- bring-up --------------------------------------------------------------------------------

    def set_up(self, seconds: float) -> None:
        """Start everything; make every endpoint a contact of every other; pair each
        with its mailbox; one text each way between every two (history) until every
        endpoint knows every other's mailbox."""
        until = time.monotonic() + seconds
        for process in self.processes:
            process.launch()
        for process in self.processes:
            process.wait_ready(until)
        trio.run(self._introduce)
        if self.mailboxes:
            with ThreadPoolExecutor(max_workers=4) as pool:
                list(
                    pool.map(
                        lambda i: pair(
                            self.endpoints[i],
                            self.mailbox_of(i),
                            seconds=max(until - time.monotonic(), PAIR_SECONDS),
                        ),
                        range(len(self.endpoints)),
                    )
                )
        trio.run(self._greet, until)

    async def _introduce(self) -> None:
        cards = {}
        for endpoint in self.endpoints:
            async with open_client(endpoint.home) as client:
                cards[endpoint.name] = (await client.whoami()).card

        async def add_all(endpoint: Endpoint) -> None:
            async with open_client(endpoint.home) as client:
                for other in self.endpoints:
                    if other is not endpoint:
                        await client.contact_add(cards[other.name], other.name)

        # Each endpoint's operator adds the others' cards, all at once.
        async with trio.open_nursery() as nursery:
            for endpoint in self.endpoints:
                nursery.start_soon(add_all, endpoint)

    async def _greet(self, until: float) -> None:
        rng = random.Random("greetings")  # noqa: S311 - seeded, not security
        ops = []
        for endpoint in self.endpoints:
            if self.mailboxes:
                await self._wait(
                    functools.partial(self._owner_reachable, endpoint),
                    f"{endpoint.name}'s session with its mailbox",
                    until,
                )
            for other in self.endpoints:
                if other is not endpoint:
                    op = self.text(rng, endpoint.name, other.name, f"hello {other.name}")
                    await self.send(op)
                    ops.append(op)
        failed = [op.id for op in ops if op.outcome != "ok"]
        if failed:
            raise EndpointError(f"greetings not queued: {failed}")
        await self._wait(
            functools.partial(self._all_delivered, ops), "the greetings delivered, every way", until
        )
        if self.mailboxes:
            await self._wait(self._mailboxes_known, "every endpoint to know every mailbox", until)

    async def _owner_reachable(self, endpoint: Endpoint) -> bool:
        async with open_client(endpoint.home) as client:
            status = await client.mailbox_status()
        return status.paired and status.reachable

    async def _all_delivered(self, ops: Sequence[Op]) -> bool:
        for op in ops:
            if await self.state(self.get(op.sender), op.id) not in DONE:
                return False
        return True

    async def _mailboxes_known(self) -> bool:
        for endpoint in self.endpoints:
            async with open_client(endpoint.home) as client:
                status = await client.status()
            known = {c.name: c.mailbox for c in status.contacts}
            for j, other in enumerate(self.endpoints):
                if other is not endpoint and known.get(other.name) != self.mailbox_of(j).address:
                    return False
        return True

    @staticmethod
    async def _wait(predicate: Callable[[], Awaitable[bool]], what: str, until: float) -> None:
        """Until the awaitable ``predicate()`` is true (a failed question is a no)."""
        for _ in range(100_000):  # bounded by ``until``
            try:
                with trio.fail_after(CALL_SECONDS):
                    if await predicate():
                        return
            except (OnionpostError, trio.TooSlowError):
                pass
            if time.monotonic() >= until:
                break
            await trio.sleep(_POLL)
        raise EndpointError(f"timed out waiting for {what}")

    # -- sends -----------------------------------------------------------------------------------

    def text(self, rng: random.Random, sender: str, to: str, body: str) -> Op:
        return Op(id=f"{rng.getrandbits(128):032x}", sender=sender, to=to, kind="text", body=body)

    def file(self, rng: random.Random, sender: str, to: str, size: int) -> Op:
        op = Op(id=f"{rng.getrandbits(128):032x}", sender=sender, to=to, kind="file", size=size)
        data = rng.randbytes(size)
        (self.files / f"{op.id}.bin").write_bytes(data)
        op.digest = _digest(data)
        return op

    async def send(self, op: Op) -> None:
        """One send through the client library, recorded in the history."""
        self.history.ops.append(op)
        endpoint = self.get(op.sender)
        op.invoked = time.monotonic()
        try:
            with trio.fail_after(CALL_SECONDS):
                async with open_client(endpoint.home) as client:
                    if op.kind == "text":
                        await client.send_text(op.to, op.body, id=op.id)
                    else:
                        await client.send_file(op.to, self.files / f"{op.id}.bin", id=op.id)
            op.outcome = "ok"
        except DaemonNotRunningError as exc:
            # Raised by the connect alone (the client's resends turn it into
            # NotConfirmedError): nothing reached a daemon.
            op.outcome, op.error = "fail", str(exc)
        except (OnionpostError, trio.TooSlowError) as exc:
            op.outcome, op.error = "info", f"{type(exc).__name__}: {exc}"
        op.completed = time.monotonic()

    async def state(self, endpoint: Endpoint, message_id: str) -> str:
        """A message's state on ``endpoint``: ``missing`` if unknown there."""
        async with open_client(endpoint.home) as client:
            try:
                with trio.fail_after(CALL_SECONDS):
                    return str((await client.message(message_id)).state)
            except ApiError as exc:
                if exc.code == "not-found":
                    return "missing"
                raise

    async def reason(self, endpoint: Endpoint, message_id: str) -> int | None:
        """Why a message failed (the contact's refusal code), as its sender says."""
        async with open_client(endpoint.home) as client:
            with trio.fail_after(CALL_SECONDS):
                return (await client.message(message_id)).reason

    async def export_digest(self, endpoint: Endpoint, message_id: str) -> str:
        """The BLAKE2b of a received file, exported by its recipient's daemon."""
        dest = self.root / f"exported-{endpoint.name}-{message_id}.bin"
        async with open_client(endpoint.home) as client:
            with trio.fail_after(CALL_SECONDS):
                await client.export_file(message_id, dest)
        try:
            return _digest(dest.read_bytes())
        finally:
            dest.unlink()

    async def inbox(self, endpoint: Endpoint) -> list[Message]:
        """Every incoming message in the endpoint's store, oldest first."""
        seen: list[Message] = []
        after = 0
        async with open_client(endpoint.home) as client:
            for _ in range(_MAX_PAGES):
                with trio.fail_after(CALL_SECONDS):
                    page = await client.inbox(after=after, limit=_PAGE)
                if not page:
                    break
                seen.extend(page)
                after = page[-1].seq or after
                if len(page) < _PAGE:
                    break
        return seen

    # -- process statistics ------------------------------------------------------------------------

    def sample(self, *, at: Literal["start", "end"] | None = None) -> None:
        """RSS and fds of every daemon, mailbox and their tors, now."""
        tree = children()
        for process in self.processes:
            running = process.process
            if running is None:
                continue
            pids = {process.name: running.pid}
            tor = tor_of(running.pid, tree)
            if tor is not None:
                pids[f"{process.name}/tor"] = tor
            for role, pid in pids.items():
                found = proc_status(pid)
                if not found:
                    continue
                stats = self.stats.setdefault(role, ProcessStats())
                stats.peak_rss_kib = max(stats.peak_rss_kib, found.get("VmHWM", 0))
                if at == "start":
                    stats.fds_start, stats.rss_start_kib = found["fds"], found.get("VmRSS")
                elif at == "end":
                    stats.fds_end, stats.rss_end_kib = found["fds"], found.get("VmRSS")

    def stats_table(self) -> list[str]:
        lines = [
            f"{'process':<12} {'peak RSS':>10} {'RSS start':>10} {'RSS end':>10} fds start/end"
        ]
        for role in sorted(self.stats):
            s = self.stats[role]
            lines.append(
                f"{role:<12} {_mib(s.peak_rss_kib):>10} {_mib(s.rss_start_kib):>10} "
                f"{_mib(s.rss_end_kib):>10} {s.fds_start}/{s.fds_end}"
            )
        return lines

    # -- the end ----------------------------------------------------------------------------------

    def stop_all(self) -> None:
        """Continue what is stopped, stop every process, reap what a kill left. Never raises."""
        for pgid in list(self.stopped):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGCONT)
        self.stopped.clear()
        for process in self.processes:
            try:
                process.stop()
            except EndpointError as exc:
                self.notes.append(f"stopping {process.name}: {exc}")
        for pgid in self.orphans:
            for pid in group_members(pgid, str(self.root)):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


# -- the chaos run ---------------------------------------------------------------------------------


@dataclass
class Report:
    seed: int
    options: ChaosOptions
    faults: list[str]
    violations: list[str]
    lines: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations


class _Run:
    """The traffic, the schedule and the watcher of one chaos run (see :func:`run`)."""

    def __init__(self, fleet: Fleet, options: ChaosOptions) -> None:
        self.fleet = fleet
        self.options = options
        self.start = 0.0
        self.played: list[str] = []
        self.term_codes: list[tuple[str, int | None]] = []
        self.locks = {p.name: trio.Lock() for p in fleet.processes}
        self.relay_lock = trio.Lock()
        self.restarting: set[str] = set()
        self.kinds: Counter[str] = Counter()
        self.finished = False

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def log(self, text: str) -> None:
        line = f"[{self.elapsed():7.1f} s] {text}"
        self.played.append(line)
        say(line)

    async def traffic_and_faults(self, faults: Sequence[Fault]) -> None:
        self.start = time.monotonic()
        end = self.start + self.options.seconds
        async with trio.open_nursery() as nursery:
            # The watcher and the sampler go on until the last fault is healed.
            nursery.start_soon(self._watch)
            nursery.start_soon(self._sampler)
            try:
                async with trio.open_nursery() as work:
                    for i in range(len(self.fleet.endpoints)):
                        work.start_soon(self._sender, i, end)
                    async with trio.open_nursery() as faulting:
                        for fault in faults:
                            await trio.sleep_until(
                                trio.current_time() + max(0.0, fault.at - self.elapsed())
                            )
                            faulting.start_soon(self._fault, fault)
                    self.log("every fault healed")
            finally:
                self.finished = True
        await self._heal()

    # -- traffic --------------------------------------------------------------------------------

    async def _sender(self, i: int, end: float) -> None:
        fleet, options = self.fleet, self.options
        me = fleet.endpoints[i].name
        others = [e.name for e in fleet.endpoints if e.name != me]
        rng = random.Random(f"{options.seed}:sender:{i}")  # noqa: S311 - seeded, not security
        for n in range(1_000_000):  # bounded by ``end``
            await trio.sleep(rng.uniform(*options.send_gap))
            if time.monotonic() >= end:
                return
            to = rng.choice(others)
            if rng.random() < options.file_share:
                op = fleet.file(rng, me, to, rng.randint(*options.file_bytes))
            else:
                filler = "".join(rng.choices("abcdefghij klmnop", k=rng.randint(0, 400)))
                op = fleet.text(rng, me, to, f"{me}->{to} #{n} seed {options.seed}: {filler}")
            await fleet.send(op)

    async def _sampler(self) -> None:
        for _ in range(10_000_000):  # bounded: the run ends (``finished``)
            await trio.to_thread.run_sync(self.fleet.sample)
            if self.finished:
                return
            await trio.sleep(self.options.sample_every)

    # -- the watcher: nobody exits by itself ----------------------------------------------------

    async def _watch(self) -> None:
        for _ in range(100_000_000):  # bounded: the run ends (``finished``)
            if self.finished:
                return
            await self.check_exits()
            await trio.sleep(_WATCH_SECONDS)

    async def check_exits(self) -> None:
        for process in self.fleet.processes:
            running = process.process
            if (
                process.name in self.fleet.faulted
                or running is None
                or running.poll() is None
                or process.name in self.restarting
            ):
                continue
            self.fleet.violations.append(
                f"{process.name} (pid {running.pid}) exited by itself with {running.returncode} "
                f"at {self.elapsed():.0f} s; its log ends:\n{_indent(process.log_tail())}"
            )
            self.log(f"{process.name} exited by itself ({running.returncode}); starting it again")
            process.process = None
            self.fleet.orphans.append(running.pid)
            await self._restart(process)

    async def _restart(self, process: Endpoint) -> None:
        self.restarting.add(process.name)
        try:
            for attempt in range(3):
                try:
                    await trio.to_thread.run_sync(process.start, self.options.ready_seconds)
                    return
                except EndpointError as exc:
                    running = process.process
                    if running is not None and running.poll() is None:
                        self.fleet.orphans.append(running.pid)
                        await trio.to_thread.run_sync(process.kill)
                    process.process = None
                    self.fleet.violations.append(
                        f"{process.name} did not come back (attempt {attempt + 1}): {exc}"
                    )
                    await trio.sleep(5.0)
        finally:
            self.restarting.discard(process.name)

    # -- faults -----------------------------------------------------------------------------------

    async def _fault(self, fault: Fault) -> None:
        try:
            await self._fault_unguarded(fault)
        except (EndpointError, OSError) as exc:
            self.fleet.violations.append(f"{fault.kind} on {fault.target}: {exc}")
            self.log(f"{fault.kind} on {fault.target} went wrong: {exc}")

    async def _fault_unguarded(self, fault: Fault) -> None:
        if fault.kind == RELAY_RESTART:
            self.kinds[fault.kind] += 1
            async with self.relay_lock:
                await self._relay(fault)
            return
        process = self.fleet.get(fault.target)
        async with self.locks[process.name]:
            running = process.process
            if running is None or running.poll() is not None:
                self.log(f"skipped {fault.kind} on {process.name}: it is not running")
                return
            self.fleet.faulted.add(process.name)
            self.kinds[fault.kind] += 1
            try:
                await self._apply(fault, process, running)
            finally:
                self.fleet.faulted.discard(process.name)

    async def _apply(
        self, fault: Fault, process: Endpoint, running: subprocess.Popen[bytes]
    ) -> None:
        kind, pid = fault.kind, running.pid
        if kind == KILL_TOR:
            tor = tor_of(pid)
            if tor is None:
                self.log(f"skipped {kind} on {process.name}: no tor under it")
                return
            self.log(f"{kind} of {process.name} (tor pid {tor}); its daemon restores it")
            os.kill(tor, signal.SIGKILL)
            return
        if kind == SIGSTOP:
            self.log(f"{kind} of {process.name} and its tor for {fault.seconds:.0f} s")
            os.killpg(pid, signal.SIGSTOP)
            self.fleet.stopped.add(pid)
            try:
                await trio.sleep(fault.seconds)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGCONT)
                self.fleet.stopped.discard(pid)
            return
        if kind == DISK_FULL:
            # The database's size: it cannot grow, nor the WAL past it (module docstring).
            limit = (process.home / STORE_FILE).stat().st_size
            self.log(
                f"{kind} for {process.name} for {fault.seconds:.0f} s (no file over {limit} B)"
            )
            _, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))
            try:
                await trio.sleep(fault.seconds)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    resource.prlimit(pid, resource.RLIMIT_FSIZE, (hard, hard))
            if running.poll() is not None:
                self.fleet.violations.append(
                    f"{process.name} exited with {running.returncode} under a full disk; "
                    f"its log ends:\n{_indent(process.log_tail())}"
                )
                self.log(f"{process.name} exited under the full disk; starting it again")
                process.process = None
                await self._restart(process)
            return
        # The rest stop the process and start it again after a while.
        if kind == KILL_DAEMON:
            self.log(f"{kind} {process.name} (its tor left running), down {fault.seconds:.0f} s")
            os.kill(pid, signal.SIGKILL)
            await trio.to_thread.run_sync(running.wait)
            self.fleet.orphans.append(pid)
            process.process = None
        elif kind in {KILL_BOTH, MAILBOX_KILL}:
            self.log(f"{kind} {process.name}, down {fault.seconds:.0f} s")
            await trio.to_thread.run_sync(process.kill)
        elif kind == SIGTERM:
            self.log(f"{kind} to {process.name}, down {fault.seconds:.0f} s")
            await trio.to_thread.run_sync(process.terminate)
            self.term_codes.append((process.name, running.returncode))
        await trio.sleep(fault.seconds)
        self.log(f"{process.name} starting again")
        await self._restart(process)

    async def _relay(self, fault: Fault) -> None:
        self.log(f"{fault.kind} {fault.target}, down {fault.seconds:.0f} s")

        def restart() -> None:
            self.fleet.net = restart_node(self.fleet.net, fault.target, down_seconds=fault.seconds)

        try:
            await trio.to_thread.run_sync(restart)
        except OnionpostError as exc:
            self.fleet.violations.append(f"relay {fault.target} did not come back: {exc}")

    async def _heal(self) -> None:
        """Everything running again; nothing stopped."""
        for pgid in list(self.fleet.stopped):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGCONT)
        await self.check_exits()
        for process in self.fleet.processes:
            if process.process is None:
                self.log(f"{process.name} was down at the end; starting it")
                await self._restart(process)


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()[-_LOG_LINES:])


# -- quiescence and the checks ------------------------------------------------------------------


async def quiesce(fleet: Fleet, seconds: float) -> tuple[float, str]:
    """Until every outbox is empty, every acknowledged send is in its recipient's
    store and every sender sees it delivered (or failed). Returns the seconds it
    took and, on a timeout, what was still missing."""
    start = time.monotonic()
    pending = [op for op in fleet.history.ops if op.outcome != "fail"]
    received: dict[str, set[str]] = {e.name: set() for e in fleet.endpoints}
    failed: set[str] = set()
    waiting = ""
    for _ in range(100_000):  # bounded by ``seconds``
        try:
            with trio.fail_after(CALL_SECONDS * 3):
                waiting = await _still_waiting(fleet, pending, received, failed)
        except (OnionpostError, trio.TooSlowError) as exc:
            waiting = f"a daemon did not answer: {exc}"
        if not waiting:
            return time.monotonic() - start, ""
        if time.monotonic() - start >= seconds:
            break
        await trio.sleep(2 * _POLL)
    return time.monotonic() - start, waiting


async def _still_waiting(
    fleet: Fleet, pending: list[Op], received: dict[str, set[str]], failed: set[str]
) -> str:
    depth = {}
    for endpoint in fleet.endpoints:
        async with open_client(endpoint.home) as client:
            depth[endpoint.name] = (await client.status()).outbox_depth
    for endpoint in fleet.endpoints:
        received[endpoint.name] = {m.id for m in await fleet.inbox(endpoint)}
    not_done = []
    for op in list(pending):
        state = await fleet.state(fleet.get(op.sender), op.id)
        if state in FAILED:
            failed.add(op.id)
        if state in DONE | FAILED or (state == "missing" and op.outcome == "info"):
            pending.remove(op)
        else:
            not_done.append((op, state))
    lost = [
        op
        for op in fleet.history.ops
        if op.outcome == "ok" and op.id not in received[op.to] and op.id not in failed
    ]
    busy = {name: d for name, d in depth.items() if d}
    if not busy and not not_done and not lost:
        return ""
    states = Counter(state for _, state in not_done)
    return (
        f"outboxes {busy or 'empty'}; not delivered at the sender: {dict(states)}; "
        f"acknowledged but not received: {len(lost)}"
    )


async def check(fleet: Fleet) -> list[str]:
    """Every check of the module docstring, from every endpoint's own records."""
    violations: list[str] = []
    ops = fleet.history.by_id()
    seen: Counter[str] = Counter()
    for endpoint in fleet.endpoints:
        inbox = await fleet.inbox(endpoint)
        counts = Counter(m.id for m in inbox)
        for message_id, count in counts.items():
            if count != 1:
                violations.append(f"{message_id} is {count} times in {endpoint.name}'s inbox")
        for message in inbox:
            seen[message.id] += 1
            op = ops.get(message.id)
            where = f"{message.id} in {endpoint.name}'s inbox from {message.contact}"
            if op is None:
                violations.append(f"{where} was never sent")
                continue
            if op.outcome == "fail":
                violations.append(f"{where} arrived, though its send failed: {op.error}")
            if (op.to, op.sender) != (endpoint.name, message.contact):
                violations.append(f"{where} was sent by {op.sender} to {op.to}")
            if op.kind == "text" and message.body != op.body:
                violations.append(f"{where}: body {message.body!r} differs from {op.body!r}")
            if op.kind == "file":
                violations.extend(await _check_file(fleet, endpoint, message, op, where))
    for op in fleet.history.ops:
        if op.outcome == "fail":
            continue
        state = await fleet.state(fleet.get(op.sender), op.id)
        if op.outcome == "ok" and seen[op.id] == 0 and state not in FAILED:
            violations.append(
                f"{op.kind} {op.id} {op.sender}->{op.to}, acknowledged, never arrived"
                f" (its sender says {state})"
            )
        if op.outcome == "ok" and state == "missing":
            violations.append(f"{op.id} {op.sender}->{op.to}: acknowledged, unknown to its sender")
        elif state == "missing" and seen[op.id]:
            violations.append(f"{op.id} {op.sender}->{op.to}: arrived, unknown to its sender")
        elif state in FAILED:
            reason = await fleet.reason(fleet.get(op.sender), op.id)
            fleet.notes.append(f"{op.id} {op.sender}->{op.to} ended {state} (reason {reason})")
        elif state not in DONE and state != "missing":
            violations.append(f"{op.id} {op.sender}->{op.to} ended {state}, with no reason")
    return violations


async def _check_file(
    fleet: Fleet, endpoint: Endpoint, message: Message, op: Op, where: str
) -> list[str]:
    if message.state not in {"received", "read"} or message.file is None:
        return [f"{where}: a file in state {message.state}"]
    if not message.file.complete or message.file.size != op.size:
        return [f"{where}: incomplete ({message.file.size} of {op.size} bytes)"]
    got = await fleet.export_digest(endpoint, op.id)
    return (
        [] if got == op.digest else [f"{where}: BLAKE2b {got[:16]}... is not {op.digest[:16]}..."]
    )


# -- a whole run -----------------------------------------------------------------------------------


def run(options: ChaosOptions, net: Testnet, root: Path) -> Report:
    """One chaos run on ``net``, its homes under ``root``; see the module docstring.
    Every process it started is stopped when it returns or raises."""
    rng = random.Random(f"{options.seed}:clock")  # noqa: S311 - seeded, not security
    offsets: dict[int, float] = {}
    if options.clock_offset:
        skewed = rng.randrange(options.endpoints)
        offsets[skewed] = round(rng.uniform(-1, 1) * options.clock_offset, 1)
    lines: list[str] = []

    def out(text: str) -> None:
        lines.append(text)
        say(text)

    out(f"chaos: seed {options.seed} (replay: {SEED_ENV}={options.seed})")
    relays = [n.nickname for n in net.servers() if n.role == ROLE_RELAY]
    fleet = Fleet.create(
        root,
        net,
        options.endpoints,
        options.mailboxes,
        mailbox_after=options.mailbox_after,
        connect_timeout=options.connect_timeout,
        clock_offsets=offsets,
    )
    names = [e.name for e in fleet.endpoints]
    faults = plan_faults(options, names, [m.name for m in fleet.mailboxes], relays)
    for i, offset in offsets.items():
        out(f"chaos: {names[i]}'s daemon runs with its wall clock {offset:+.0f} s off")
    chaos = _Run(fleet, options)
    try:
        started = time.monotonic()
        fleet.set_up(options.setup_seconds)
        out(
            f"chaos: {len(fleet.endpoints)} endpoints, {len(fleet.mailboxes)} mailboxes, "
            f"set up in {time.monotonic() - started:.0f} s; {len(faults)} faults "
            f"over {options.seconds:.0f} s"
        )
        fleet.sample(at="start")
        trio.run(chaos.traffic_and_faults, faults)
        took, waiting = trio.run(quiesce, fleet, options.quiesce_seconds)
        if waiting:
            fleet.violations.append(f"no quiescence after {took:.0f} s: {waiting}")
        else:
            out(f"chaos: quiescent {took:.0f} s after the last fault was healed")
        trio.run(chaos.check_exits)
        fleet.sample(at="end")
        fleet.violations.extend(trio.run(check, fleet))
    finally:
        fleet.stop_all()
        fleet.history.write(root / "history.jsonl")
    for name, code in chaos.term_codes:
        if code != 0:
            fleet.violations.append(f"{name} exited with {code} on SIGTERM")
    ops = fleet.history.ops
    outcomes = Counter(op.outcome for op in ops)
    kinds = Counter(op.kind for op in ops)
    out(
        f"chaos: history: {len(ops)} sends ({kinds['text']} texts, {kinds['file']} files): "
        f"{outcomes['ok']} acknowledged, {outcomes['info']} unknown, {outcomes['fail']} failed"
    )
    out(f"chaos: faults played: {dict(chaos.kinds)}")
    for line in fleet.stats_table():
        out(f"chaos: {line}")
    for note in fleet.notes:
        out(f"chaos: note: {note}")
    for violation in fleet.violations:
        out(f"chaos: VIOLATION: {violation}")
    verdict = "ok" if not fleet.violations else f"{len(fleet.violations)} violations"
    out(
        f"chaos: {verdict}; seed {options.seed} (replay: {SEED_ENV}={options.seed}); logs in {root}"
    )
    return Report(options.seed, options, chaos.played, list(fleet.violations), lines)


def seed_from_env() -> int:
    """``ONIONPOST_CHAOS_SEED`` if set, else a fresh one."""
    value = os.environ.get(SEED_ENV, "").strip()
    return int(value) if value else random.SystemRandom().randrange(1, 2**31)


@contextlib.contextmanager
def network(prefix: str) -> Iterator[tuple[Path, Testnet]]:
    """A private network in a new directory under /tmp; stopped on the way out.
    The directory is kept (logs, the history) when the body raised."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        net = up(root / "net", owner_pid=os.getpid())
    except BaseException:
        down(root / "net")
        raise
    try:
        yield root, net
    finally:
        down(root / "net")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onionpost.testing.chaos")
    parser.add_argument("--short", action="store_true", help="the test suite's short form")
    parser.add_argument("--seconds", type=float, help="traffic and faults (default 3600)")
    parser.add_argument("--endpoints", type=int)
    parser.add_argument("--mailboxes", type=int)
    parser.add_argument("--no-disk-full", action="store_true")
    parser.add_argument("--no-relay-restarts", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the homes and logs")
    args = parser.parse_args(argv)
    seed = seed_from_env()
    options = ChaosOptions.short(seed) if args.short else ChaosOptions(seed=seed)
    changes: dict[str, object] = {}
    if args.seconds is not None:
        changes["seconds"] = args.seconds
    if args.endpoints is not None:
        changes["endpoints"] = args.endpoints
    if args.mailboxes is not None:
        changes["mailboxes"] = args.mailboxes
    if args.no_disk_full:
        changes["disk_full"] = False
    if args.no_relay_restarts:
        changes["relay_restarts"] = False
    options = replace(options, **changes)  # type: ignore[arg-type]
    with network("onionpost-chaos-") as (root, net):
        report = run(options, net, root)
    if report.ok and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
