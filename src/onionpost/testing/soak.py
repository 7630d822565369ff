"""A soak: two endpoints and a mailbox under steady traffic, sampled for growth.

::

    python -m onionpost.testing.soak --seconds 3600           # `make soak`
    ONIONPOST_SOAK_SECONDS=300 python -m onionpost.testing.soak

Theory of operation
-------------------
Two endpoints (``ep0``, ``ep1``) that are each other's contacts and a
mailbox both are paired with (:class:`onionpost.testing.chaos.Fleet`, the
chaos run's set-up and history) on a private Tor network. For ``seconds``
each endpoint sends the other a text every ``send_gap`` seconds and a file
every ``file_every`` seconds; every ``away_every`` seconds ``ep1`` goes away
(SIGTERM to its daemon) for ``away_seconds`` and comes back, so ``ep0``
deposits in its mailbox and ``ep1`` drains it. Every ``sample_every``
seconds it samples each process's RSS and open fds (the daemons, the
mailbox, their tors) and each home's store and WAL sizes.

At the end, after quiescence, the chaos run's checks (every acknowledged
send exactly once, nothing unsent, every message delivered, files by hash,
no process exited by itself), and the growth checks, on the processes that
live the whole soak (``ep0``'s daemon and the mailbox; ``ep1`` restarts with
each absence, and the tors are reported only): the median of the last
quarter's samples must be within ``growth`` (10%) of the second quarter's,
for RSS and for fds (fds with a slack of ``fd_slack``: a few sessions more
or less is not growth); and no WAL may exceed ``wal_max_bytes``. The first
quarter is the warm-up and is not compared. It exits non-zero on any
violation.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import trio

from onionpost.testing.chaos import (
    MAILBOX_STORE_FILE,
    STORE_FILE,
    Fleet,
    Op,
    check,
    children,
    network,
    proc_status,
    quiesce,
    say,
    seed_from_env,
    tor_of,
)
from onionpost.testing.endpoint import EndpointError
from onionpost.testing.testnet import Testnet

__all__ = ["SECONDS_ENV", "Series", "SoakOptions", "SoakReport", "growth_violations", "main", "run"]

#: Overrides the soak's length (``make soak`` passes SOAK_SECONDS through it).
SECONDS_ENV: Final = "ONIONPOST_SOAK_SECONDS"


@dataclass(frozen=True)
class SoakOptions:
    seconds: float = 3600.0
    seed: int = 0
    sample_every: float = 10.0
    away_every: float = 240.0
    away_seconds: float = 60.0
    send_gap: float = 1.0
    file_every: float = 30.0
    file_bytes: int = 100_000
    growth: float = 0.10
    fd_slack: int = 2
    wal_max_bytes: int = 32 * 2**20
    setup_seconds: float = 240.0
    quiesce_seconds: float = 600.0
    ready_seconds: float = 120.0
    #: Seconds between :mod:`onionpost.testing.memprobe` samples inside ep0's daemon; 0: none.
    probe_every: float = 0.0
    #: Whether that probe runs tracemalloc (slower, and its own memory: for where, not how much).
    probe_trace: bool = False

    @classmethod
    def short(cls, seed: int, **changes: object) -> SoakOptions:
        """A minute: the test suite's form."""
        base = cls(
            seconds=60.0,
            seed=seed,
            sample_every=1.0,
            away_every=25.0,
            away_seconds=8.0,
            send_gap=0.5,
            file_every=8.0,
            file_bytes=20_000,
            setup_seconds=150.0,
            quiesce_seconds=120.0,
            ready_seconds=90.0,
        )
        return replace(base, **changes)  # type: ignore[arg-type]


@dataclass
class Series:
    """One measured quantity over the soak: (seconds into it, value)."""

    name: str
    unit: str
    checked: bool
    samples: list[tuple[float, int]] = field(default_factory=list)

    def quarter(self, which: int, total: float) -> list[int]:
        lo, hi = total * (which - 1) / 4, total * which / 4
        return [v for t, v in self.samples if lo <= t < hi or (which == 4 and t >= hi)]


def growth_violations(
    series: list[Series], total: float, growth: float, fd_slack: int
) -> tuple[list[str], list[str]]:
    """(table lines, violations): last quarter's median against the second's."""
    lines = [f"{'series':<22} {'Q2 median':>12} {'Q4 median':>12} {'max':>12}  verdict"]
    violations = []
    for s in series:
        q2, q4 = s.quarter(2, total), s.quarter(4, total)
        if not q2 or not q4:
            lines.append(f"{s.name:<22} (too few samples)")
            if s.checked:
                violations.append(f"{s.name}: too few samples to compare")
            continue
        m2, m4 = statistics.median(q2), statistics.median(q4)
        top = max(v for _, v in s.samples)
        limit = m2 * (1 + growth) + (fd_slack if s.unit == "fds" else 0)
        grew = m4 > limit
        verdict = ("GREW" if grew else "ok") if s.checked else "(reported)"
        lines.append(
            f"{s.name:<22} {_fmt(m2, s.unit):>12} {_fmt(m4, s.unit):>12} "
            f"{_fmt(top, s.unit):>12}  {verdict}"
        )
        if grew and s.checked:
            violations.append(
                f"{s.name} grew: last quarter's median {_fmt(m4, s.unit)} over "
                f"{_fmt(limit, s.unit)} (the second quarter's {_fmt(m2, s.unit)} + {growth:.0%})"
            )
    return lines, violations


def _fmt(value: float, unit: str) -> str:
    if unit == "KiB":
        return f"{value / 1024:.1f} MiB"
    if unit == "B":
        return f"{value / 2**20:.2f} MiB"
    return f"{value:.0f}"


@dataclass
class SoakReport:
    seed: int
    violations: list[str]
    lines: list[str]

    @property
    def ok(self) -> bool:
        return not self.violations


class _Soak:
    def __init__(self, fleet: Fleet, options: SoakOptions) -> None:
        self.fleet = fleet
        self.options = options
        self.start = 0.0
        self.series: dict[str, Series] = {}
        self.aways = 0
        self.term_codes: list[int | None] = []

    def _series(self, name: str, unit: str, checked: bool) -> Series:
        return self.series.setdefault(name, Series(name, unit, checked))

    async def run(self) -> None:
        self.start = time.monotonic()
        end = self.start + self.options.seconds
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sampler, end)
            for i in range(2):
                nursery.start_soon(self._sender, i, end)
            nursery.start_soon(self._away, end)

    async def _sender(self, i: int, end: float) -> None:
        fleet, options = self.fleet, self.options
        me, to = fleet.endpoints[i].name, fleet.endpoints[1 - i].name
        rng = random.Random(f"{options.seed}:soak:{i}")  # noqa: S311 - seeded, not security
        next_file = time.monotonic() + options.file_every
        for n in range(10_000_000):  # bounded by ``end``
            await trio.sleep(options.send_gap)
            now = time.monotonic()
            if now >= end:
                return
            if i == 1 and fleet.endpoints[1].process is None:
                continue  # away: an operator does not type into a stopped daemon
            op: Op
            if now >= next_file:
                op = fleet.file(rng, me, to, options.file_bytes)
                next_file = now + options.file_every
            else:
                op = fleet.text(rng, me, to, f"{me}->{to} #{n} seed {options.seed}")
            await fleet.send(op)

    async def _away(self, end: float) -> None:
        options, ep1 = self.options, self.fleet.endpoints[1]
        for _ in range(1_000_000):  # bounded by ``end``
            await trio.sleep(options.away_every)
            if time.monotonic() + options.away_seconds >= end:
                return
            running = ep1.process
            say(f"[{time.monotonic() - self.start:7.1f} s] {ep1.name} away")
            await trio.to_thread.run_sync(ep1.terminate)
            self.term_codes.append(None if running is None else running.returncode)
            await trio.sleep(options.away_seconds)
            try:
                await trio.to_thread.run_sync(ep1.start, options.ready_seconds)
            except EndpointError as exc:
                self.fleet.violations.append(f"{ep1.name} did not come back: {exc}")
                return
            self.aways += 1
            say(f"[{time.monotonic() - self.start:7.1f} s] {ep1.name} back")

    async def _sampler(self, end: float) -> None:
        for _ in range(10_000_000):  # bounded by ``end``
            await trio.to_thread.run_sync(self.sample)
            if time.monotonic() >= end:
                return
            await trio.sleep(self.options.sample_every)

    def sample(self) -> None:
        t = time.monotonic() - self.start
        tree = children()
        for i, process in enumerate(self.fleet.processes):
            # ep1 restarts with every absence: reported, not checked.
            checked = i != 1
            running = process.process
            if running is not None:
                pids = {process.name: running.pid, f"{process.name}/tor": tor_of(running.pid, tree)}
                for role, pid in pids.items():
                    found = proc_status(pid) if pid is not None else {}
                    if not found:
                        continue
                    mine = checked and not role.endswith("/tor")
                    self._series(f"{role} RSS", "KiB", mine).samples.append((t, found["VmRSS"]))
                    self._series(f"{role} fds", "fds", mine).samples.append((t, found["fds"]))
            for store in (process.home / STORE_FILE, process.home / MAILBOX_STORE_FILE):
                if store.exists():
                    wal = store.with_name(store.name + "-wal")
                    size = wal.stat().st_size if wal.exists() else 0
                    self._series(f"{process.name} store", "B", False).samples.append(
                        (t, store.stat().st_size)
                    )
                    self._series(f"{process.name} WAL", "B", False).samples.append((t, size))


def run(options: SoakOptions, net: Testnet, root: Path) -> SoakReport:
    """One soak on ``net``, homes under ``root``; every process is stopped at the end."""
    lines: list[str] = []

    def out(text: str) -> None:
        lines.append(text)
        say(text)

    out(f"soak: {options.seconds:.0f} s, seed {options.seed}")
    fleet = Fleet.create(root, net, 2, 1)
    if options.probe_every > 0:
        probe_file = root / "ep0-memprobe.jsonl"
        fleet.endpoints[0].probe = (probe_file, options.probe_every, options.probe_trace)
        out(f"soak: ep0's memory probed every {options.probe_every:.0f} s into {probe_file}")
    soak = _Soak(fleet, options)
    try:
        started = time.monotonic()
        fleet.set_up(options.setup_seconds)
        out(f"soak: set up in {time.monotonic() - started:.0f} s")
        trio.run(soak.run)
        took, waiting = trio.run(quiesce, fleet, options.quiesce_seconds)
        if waiting:
            fleet.violations.append(f"no quiescence after {took:.0f} s: {waiting}")
        else:
            out(f"soak: quiescent {took:.0f} s after the traffic stopped")
        for process in fleet.processes:
            running = process.process
            if running is None or running.poll() is not None:
                code = None if running is None else running.returncode
                fleet.violations.append(f"{process.name} is not running at the end ({code})")
        fleet.violations.extend(trio.run(check, fleet))
    finally:
        fleet.stop_all()
        fleet.history.write(root / "history.jsonl")
    for code in soak.term_codes:
        if code != 0:
            fleet.violations.append(f"ep1 exited with {code} on SIGTERM")
    table, grew = growth_violations(
        list(soak.series.values()), options.seconds, options.growth, options.fd_slack
    )
    fleet.violations.extend(grew)
    for s in soak.series.values():
        if s.name.endswith(" WAL"):
            top = max((v for _, v in s.samples), default=0)
            if top > options.wal_max_bytes:
                fleet.violations.append(
                    f"{s.name} reached {top} bytes, over {options.wal_max_bytes} bytes"
                )
    ops = fleet.history.ops
    ok = sum(op.outcome == "ok" for op in ops)
    files = sum(op.kind == "file" for op in ops)
    out(f"soak: {len(ops)} sends ({files} files), {ok} acknowledged; ep1 away {soak.aways} times")
    for line in table:
        out(f"soak: {line}")
    for violation in fleet.violations:
        out(f"soak: VIOLATION: {violation}")
    verdict = "ok" if not fleet.violations else f"{len(fleet.violations)} violations"
    out(f"soak: {verdict}; seed {options.seed}; logs in {root}")
    return SoakReport(options.seed, list(fleet.violations), lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m onionpost.testing.soak")
    parser.add_argument("--short", action="store_true", help="the test suite's short form")
    parser.add_argument("--seconds", type=float, help=f"default 3600, or ${SECONDS_ENV}")
    parser.add_argument("--keep", action="store_true", help="keep the homes and logs")
    parser.add_argument(
        "--probe",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="sample ep0's memory from inside its daemon this often (onionpost.testing.memprobe)",
    )
    parser.add_argument("--trace", action="store_true", help="with --probe: run tracemalloc too")
    args = parser.parse_args(argv)
    seed = seed_from_env()
    options = SoakOptions.short(seed) if args.short else SoakOptions(seed=seed)
    seconds = args.seconds
    if seconds is None and os.environ.get(SECONDS_ENV, "").strip():
        seconds = float(os.environ[SECONDS_ENV])
    if seconds is not None:
        options = replace(options, seconds=seconds)
    options = replace(options, probe_every=args.probe, probe_trace=args.trace)
    with network("onionpost-soak-") as (root, net):
        report = run(options, net, root)
    if report.ok and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
