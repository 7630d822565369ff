"""A team channel of real endpoints on the private Tor network.

::

    team = Team.start(root, net, ["alice", "bob", "carol", "dave"])
    team.create("desk", "alice")        # alice's group, every other endpoint in it
    team.wait_members("desk", team.names)
    body = team.send("bob", "desk")     # a unique text, through the local API
    team.wait_texts([body], ["alice", "carol", "dave"])

Every endpoint is a contact of every other but the pairs named
``strangers``, whom a group they share introduces to each other (groups.md
§9). Texts are told apart by their body, each
unique: a member's copies carry ids of their own. What a member holds is
read through :mod:`onionpost.client` (a subprocess per poll would be slower
than the delivery it waits for). Every wait is a condition under a deadline;
a failure raises :class:`TeamError`.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import trio

from onionpost.client import open_client
from onionpost.errors import OnionpostError
from onionpost.testing.endpoint import Endpoint, start_all
from onionpost.testing.testnet import Testnet

__all__ = ["TEAM_SECONDS", "Held", "Team", "TeamError"]

#: A wait for a text or a membership fails after this.
TEAM_SECONDS: Final = 90.0
_POLL: Final = 0.1
_PAGE: Final = 100


class TeamError(AssertionError):
    """A member did not reach the state waited for in time, or holds a text twice."""


@dataclass(frozen=True)
class Held:
    """An incoming text as a member's store holds it."""

    body: str
    group: bool
    received_ms: int


async def _inbox(home: Path) -> list[Held]:
    held: list[Held] = []
    after = 0
    async with open_client(home) as client:
        while True:
            page = await client.inbox(after=after, limit=_PAGE)
            held.extend(
                Held(m.body, m.group_id is not None, m.received_ms or 0)
                for m in page
                if m.body is not None
            )
            if len(page) < _PAGE:
                return held
            after = max(m.seq or 0 for m in page)


async def _group_files(home: Path, name: str) -> list[bytes | None]:
    """The group's files named ``name`` in ``home``'s inbox: each one's
    content once complete (exported beside the home), else None."""
    found: list[bytes | None] = []
    after = 0
    async with open_client(home) as client:
        while True:
            page = await client.inbox(after=after, limit=_PAGE)
            for m in page:
                if m.file is None or m.file.name != name or m.group_id is None:
                    continue
                if not m.file.complete:
                    found.append(None)
                    continue
                dest = home.parent / f"{home.name}-{m.id}.out"
                if not dest.exists():
                    await client.export_file(m.id, dest)
                found.append(dest.read_bytes())
            if len(page) < _PAGE:
                return found
            after = max(m.seq or 0 for m in page)


async def _members(home: Path, group: str) -> frozenset[str] | None:
    async with open_client(home) as client:
        try:
            found = await client.group_show(group)
        except OnionpostError:
            return None  # not (yet) known here
        return frozenset(m.name for m in found.members)


@dataclass
class Team:
    """Endpoints that are each other's contacts (but ``strangers``); see the
    module docstring."""

    endpoints: dict[str, Endpoint]

    @classmethod
    def start(
        cls,
        root: Path,
        net: Testnet,
        names: Sequence[str],
        strangers: Iterable[tuple[str, str]] = (),
        *,
        top_config: str | None = None,
    ) -> Team:
        """``top_config``: each endpoint's config.toml top-level keys (default:
        :class:`Endpoint`'s short retry delays)."""
        endpoints = {
            name: Endpoint(root, name, net)
            if top_config is None
            else Endpoint(root, name, net, top_config=top_config)
            for name in names
        }
        start_all(endpoints.values())
        cards = {name: e.json("whoami")["card"] for name, e in endpoints.items()}
        apart = {frozenset(pair) for pair in strangers}
        for name, endpoint in endpoints.items():
            for other, card in cards.items():
                if other != name and frozenset((name, other)) not in apart:
                    endpoint.cli("contact", "add", card)
        return cls(endpoints)

    @property
    def names(self) -> list[str]:
        return list(self.endpoints)

    def __getitem__(self, name: str) -> Endpoint:
        return self.endpoints[name]

    def stop(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.stop()

    def create(self, group: str, admin: str, members: Iterable[str] | None = None) -> None:
        """``admin``'s group holding ``members`` (default: every other endpoint)."""
        others = [n for n in (self.names if members is None else members) if n != admin]
        self[admin].cli("group", "create", group, *(f"--member={name}" for name in others))

    def send(self, author: str, group: str) -> str:
        """A unique text from ``author`` to ``group``; returns its body once queued."""
        body = f"{author} {time.time_ns()}"

        async def send() -> None:
            async with open_client(self[author].home) as client:
                await client.group_send_text(group, body)

        trio.run(send)
        return body

    def send_file(self, author: str, group: str, folder: Path) -> tuple[str, bytes]:
        """A unique file (several chunks) from ``author`` to ``group``, written
        in ``folder``; returns its name and content once queued."""
        name = f"{author}-{time.time_ns()}.bin"
        data = os.urandom(150_000)
        path = (folder / name).absolute()
        path.write_bytes(data)

        async def send() -> None:
            async with open_client(self[author].home) as client:
                await client.group_send_file(group, path)

        trio.run(send)
        return name, data

    def wait_file(
        self, name: str, data: bytes, at: Iterable[str], seconds: float = TEAM_SECONDS
    ) -> None:
        """Until each of ``at`` holds the group's file ``name`` complete, exactly
        once, with the content ``data`` (exported and compared)."""
        pending = set(at)
        deadline = time.monotonic() + seconds
        while pending:
            for holder in sorted(pending):
                try:
                    found = trio.run(_group_files, self[holder].home, name)
                except OnionpostError:
                    found = []  # the daemon is not (yet) answering
                if len(found) > 1:
                    raise TeamError(f"{name} stored more than once at {holder}")
                if found and found[0] is not None:
                    if hashlib.blake2b(found[0]).digest() != hashlib.blake2b(data).digest():
                        raise TeamError(f"{name} at {holder} is not the file sent")
                    pending.discard(holder)
            if pending and time.monotonic() > deadline:
                raise TeamError(f"{name} not at {sorted(pending)} within {seconds} s")
            if pending:
                time.sleep(_POLL)

    def held(self, name: str) -> list[Held]:
        """The incoming texts in ``name``'s store, oldest first."""
        try:
            return trio.run(_inbox, self[name].home)
        except OnionpostError:
            return []  # the daemon is not (yet) answering

    def bodies(self, name: str) -> Counter[str]:
        """The bodies of the group texts in ``name``'s store, each with its count."""
        return Counter(h.body for h in self.held(name) if h.group)

    def send_one_to_one(self, author: str, to: Iterable[str]) -> str:
        """The same unique text from ``author`` to each of ``to`` as a contact,
        one send each (a group send's peer); returns its body once all are queued."""
        body = f"{author} {time.time_ns()}"

        async def send() -> None:
            async with open_client(self[author].home) as client:
                for name in to:
                    await client.send_text(name, body)

        trio.run(send)
        return body

    def wait_received(self, body: str, at: Iterable[str], seconds: float = TEAM_SECONDS) -> int:
        """Until each of ``at`` holds a text ``body`` (group or not), exactly once;
        returns the latest of their stores' receipt times (ms since the epoch)."""
        holders = list(at)
        deadline = time.monotonic() + seconds
        while True:
            found = {name: [h for h in self.held(name) if h.body == body] for name in holders}
            if all(found.values()):
                doubled = [name for name, held in found.items() if len(held) != 1]
                if doubled:
                    raise TeamError(f"{body!r} stored more than once at {doubled}")
                return max(held[0].received_ms for held in found.values())
            if time.monotonic() > deadline:
                missing = sorted(name for name, held in found.items() if not held)
                raise TeamError(f"{body!r} not at {missing} within {seconds} s")
            time.sleep(_POLL)

    def members(self, name: str, group: str) -> frozenset[str] | None:
        try:
            return trio.run(_members, self[name].home, group)
        except OnionpostError:
            return None

    def wait_members(
        self,
        group: str,
        members: Iterable[str],
        at: Iterable[str] | None = None,
        seconds: float = TEAM_SECONDS,
    ) -> None:
        """Until each of ``at`` (default: ``members``) sees exactly ``members`` in ``group``."""
        want = frozenset(members)
        holders = list(want if at is None else at)
        deadline = time.monotonic() + seconds
        while True:
            seen = {name: self.members(name, group) for name in holders}
            if all(got == want for got in seen.values()):
                return
            if time.monotonic() > deadline:
                raise TeamError(f"{group}: not {sorted(want)} within {seconds} s: {seen}")
            time.sleep(_POLL)

    def wait_texts(
        self, bodies: Iterable[str], at: Iterable[str], seconds: float = TEAM_SECONDS
    ) -> float:
        """Seconds until each of ``at`` holds every text of ``bodies``; each once."""
        want = list(bodies)
        holders = list(at)
        start = time.monotonic()
        deadline = start + seconds
        pending = set(holders)
        while pending:
            for name in sorted(pending):
                held = self.bodies(name)
                if all(held[body] for body in want):
                    pending.discard(name)
            if not pending:
                break
            if time.monotonic() > deadline:
                raise TeamError(f"texts not at {sorted(pending)} within {seconds} s: {want}")
            time.sleep(_POLL)
        took = time.monotonic() - start
        self.check_once(holders)
        return took

    def check_once(self, at: Iterable[str]) -> None:
        """No member of ``at`` holds any group text more than once."""
        doubled = {name: [b for b, n in self.bodies(name).items() if n != 1] for name in at}
        doubled = {name: bodies for name, bodies in doubled.items() if bodies}
        if doubled:
            raise TeamError(f"group texts stored more than once: {doubled}")
