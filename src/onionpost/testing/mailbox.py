"""A mailbox on the private Tor network, and endpoints that use one, driven as an operator does.

::

    box = Mailbox(root, "mailbox", net)        # `onionpost init`, joined to the network
    box.start()                                # `onionpost mailbox serve`, until it is ready
    pair(alice, box)                           # a fresh code from the mailbox, paired on alice
    wait_for(lambda: owner_status(alice)["reachable"], "alice's mailbox session")
    box.kill()                                 # kill -9 of the mailbox and its tor
    box.start()                                # back, on the same home

Theory of operation
-------------------
A mailbox is an onionpost home like an endpoint's (``onionpost init``), run
by ``onionpost mailbox serve`` instead of ``onionpost daemon``, so
:class:`Mailbox` is an :class:`~onionpost.testing.endpoint.Endpoint` with
another command and ready line (``onionpost mailbox ready: <address>``) and
a ``[mailbox]`` table of limits in its ``config.toml``. Like an endpoint's,
its process leads a process group that holds its tor: ``kill`` takes both.

Endpoints that use mailboxes need short delays in tests: :func:`endpoint_config`
gives the top-level ``config.toml`` keys for that (``mailbox_after``, a short
``connect_timeout``, the harness's fast retries).

What the helpers below ask goes through the CLI (``mailbox code``,
``mailbox pair``, ``mailbox status``, ``status``) or :mod:`onionpost.client`
(message states, the whole inbox, a mailbox's usage) exactly as an
operator's program would. Every wait has
a deadline and a bounded number of polls; a failure raises
:class:`MailboxError` saying what was awaited.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import trio

from onionpost.client import MailboxOwnerUsage, Message, open_client
from onionpost.errors import ApiError, OnionpostError
from onionpost.testing.endpoint import FAST_RETRY, Endpoint, EndpointError
from onionpost.testing.testnet import Testnet

__all__ = [
    "PAIR_SECONDS",
    "READY_LINE",
    "Mailbox",
    "MailboxError",
    "contact_status",
    "endpoint_config",
    "incoming",
    "owner_status",
    "pair",
    "states",
    "wait_for",
]

#: What ``onionpost mailbox serve`` writes once its onion service is published.
READY_LINE: Final = b"mailbox ready"
_POLL: Final = 0.25
#: ``mailbox pair`` is retried this long while the mailbox cannot be reached yet.
PAIR_SECONDS: Final = 120.0
# What ``mailbox pair`` says when it did not reach the mailbox (its tor has not
# published the code's key yet, or ours is still fetching directory
# information): the daemon keeps the pairing and the same code can be given again.
_NOT_YET: Final = "cannot be reached with this setup code"
_TABLE: Final = "[mailbox]"
# The inbox is read in pages of this many messages.
_PAGE: Final = 1000


class MailboxError(EndpointError):
    """A mailbox, or an endpoint using one, did not do what was needed in time."""


def endpoint_config(*, mailbox_after: float = 2.0, connect_timeout: float = 20.0) -> str:
    """config.toml's top-level keys for an endpoint that uses mailboxes in a test:
    fast retries, ``mailbox_after`` seconds before deposits, and a short dial deadline
    (a contact that went away is only noticed when a dial to it fails: TOR-TESTNET.md)."""
    return (
        f"{FAST_RETRY}mailbox_after = {float(mailbox_after)}\n"
        f"connect_timeout = {float(connect_timeout)}\n"
    )


class Mailbox(Endpoint):
    """A home run by ``onionpost mailbox serve``; ``limits`` fill its ``[mailbox]`` table
    (keys as in config.toml: ``max_bytes_per_contact``, ``records_per_second``, ...)."""

    ready_line = READY_LINE

    def __init__(
        self,
        root: Path,
        name: str,
        net: Testnet,
        *,
        limits: Mapping[str, int | float] | None = None,
    ) -> None:
        super().__init__(root, name, net, top_config="")
        self._address: str | None = None
        if limits:
            config = self.home / "config.toml"
            keys = "".join(f"{key} = {value!r}\n" for key, value in limits.items())
            text = config.read_text()
            if _TABLE in text.splitlines():
                # Right under the header init wrote: a table is declared once.
                head, tail = text.split(_TABLE + "\n", 1)
                text = f"{head}{_TABLE}\n{keys}{tail}"
            else:
                text = f"{text}\n{_TABLE}\n{keys}"
            config.write_text(text)

    def __repr__(self) -> str:
        state = "stopped" if self.process is None else f"pid {self.process.pid}"
        return f"<Mailbox {self.name} {state}>"

    def serve_args(self) -> list[str]:
        return ["mailbox", "serve", "--key-file", str(self.key)]

    @property
    def address(self) -> str:
        """The mailbox's onion address (its home's identity; no process needed)."""
        if self._address is None:
            self._address = str(self.json("whoami")["address"])
        return self._address

    def code(self) -> str:
        """A new one-time setup code, from the running mailbox."""
        return str(self.json("mailbox", "code")["code"])

    def usage(self) -> dict[str, MailboxOwnerUsage]:
        """What the running mailbox holds, per owner address (its local API's
        ``mailbox_status``, what ``onionpost mailbox status`` prints)."""

        async def ask() -> dict[str, MailboxOwnerUsage]:
            async with open_client(self.home) as client:
                status = await client.mailbox_status()
            return {owner.owner: owner for owner in status.owners}

        return trio.run(ask)


def pair(endpoint: Endpoint, mailbox: Mailbox, *, seconds: float = PAIR_SECONDS) -> str:
    """Pair ``endpoint`` with ``mailbox`` using a fresh code; returns the code used.

    ``mailbox code`` answers once the code is stored, before the mailbox's tor
    publishes the descriptor that lets the code's key in: a ``mailbox pair``
    right after it can fail with ``client-auth-wrong``, and on a loaded machine a
    first dial can time out. The same code is then given again (repeating a
    pairing with its code is allowed), a second apart, for at most ``seconds``."""
    code = mailbox.code()
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds) + 1):
        result = endpoint.cli("mailbox", "pair", code, "--json", check=False)
        if result.returncode == 0:
            return code
        if _NOT_YET not in result.stderr or time.monotonic() >= deadline:
            raise MailboxError(
                f"{endpoint.name}: onionpost mailbox pair exited with {result.returncode}: "
                f"{result.stderr.strip()}"
            )
        time.sleep(1.0)
    raise MailboxError(f"{endpoint.name}: the pairing did not complete in {seconds:.0f} s")


def owner_status(endpoint: Endpoint) -> dict[str, Any]:
    """``onionpost mailbox status --json`` on an endpoint (role owner)."""
    status: dict[str, Any] = endpoint.json("mailbox", "status")
    return status


def contact_status(endpoint: Endpoint, name: str) -> dict[str, Any]:
    """One contact's entry in ``onionpost status --json`` on ``endpoint``: among
    others ``mailbox`` (its mailbox, once its announcement came), ``deposited``
    and ``mailbox_error`` (why the last deposit failed)."""
    for contact in endpoint.json("status")["contacts"]:
        if contact["name"] == name:
            return dict(contact)
    raise MailboxError(f"{endpoint.name} has no contact {name}")


def wait_for(
    predicate: Callable[[], object], what: str, seconds: float, *, poll: float = _POLL
) -> float:
    """Until ``predicate()`` is true; returns the seconds it took. At most
    ``seconds``, one try per ``poll``; :class:`MailboxError` naming ``what`` after."""
    start = time.monotonic()
    deadline = start + seconds
    for _ in range(int(seconds / poll) + 2):
        if predicate():
            return time.monotonic() - start
        if time.monotonic() >= deadline:
            break
        time.sleep(poll)
    raise MailboxError(f"timed out after {seconds:.0f} s waiting for {what}")


# -- questions to a daemon, through the client library ------------------------------------


def states(home: Path, ids: Iterable[str]) -> dict[str, str]:
    """Each message's state (``missing`` when the daemon does not know it), on one
    connection; ``unreachable`` for every id when the daemon does not answer."""
    wanted = list(ids)

    async def ask() -> dict[str, str]:
        found: dict[str, str] = {}
        async with open_client(home) as client:
            for message_id in wanted:
                try:
                    found[message_id] = str((await client.message(message_id)).state)
                except ApiError:
                    found[message_id] = "missing"
        return found

    try:
        return trio.run(ask)
    except OnionpostError:
        return dict.fromkeys(wanted, "unreachable")


def incoming(home: Path) -> list[Message]:
    """Every incoming message in the daemon's store, oldest first (paged)."""

    async def read() -> list[Message]:
        seen: list[Message] = []
        after = 0
        async with open_client(home) as client:
            for _ in range(1_000_000 // _PAGE):  # bounded: a million messages
                page = await client.inbox(after=after, limit=_PAGE)
                if not page:
                    break
                seen.extend(page)
                last = page[-1].seq
                if last is None:
                    raise MailboxError("an inbox entry without seq")
                after = last
        return seen

    return trio.run(read)
