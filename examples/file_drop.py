"""file_drop: copy every incoming message into a drop directory, exactly once.

A small program on the client library (``onionpost.client``) for handing
messages to another system that watches a directory:

- each incoming text becomes ``<seq>-<id>.json`` (the message as JSON);
- each incoming file is exported (``Client.export_file``) as
  ``<seq>-<id>-<name>``, then described by its own ``<seq>-<id>.json``
  (written last, so a watcher that takes ``*.json`` finds the file there).

Every file is created 0600 and appears by an atomic rename: a watcher never
sees a partial file. Names starting with "." are this program's own (work in
progress, its state and lock): watchers must leave them alone.

Exactly once, across crashes and restarts: the state file remembers the
``seq`` of the last message taken and the names it was publishing. A message
is first written under temporary names, then the state is saved, then the
names are renamed into place. On start, anything saved but not yet renamed
is renamed, and the inbox is read from the remembered ``seq`` on (after
subscribing, so that nothing arriving meanwhile is missed). A crash before
the state is saved redoes that message; a crash after it finishes the
renames; nothing is dropped twice and nothing is skipped. A lock file keeps
a second copy of this program off the same drop directory.

    .venv/bin/python examples/file_drop.py --home /path/to/home --drop /srv/drop

``--once`` takes what is in the inbox and exits (for a timer instead of a
service). The first run takes the whole inbox. Exit status as the
``onionpost`` command's: 0 done or stopped (Ctrl-C, SIGTERM), 1 the drop directory is unusable,
3 the daemon is not running or went away.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import outcome
import trio
from outcome import Outcome

from onionpost.client import Client, Message, open_client
from onionpost.errors import ApiError, DaemonNotRunningError, TransportError
from onionpost.home import Paths, default_home

STATE_NAME: Final = ".file_drop-state.json"
LOCK_NAME: Final = ".file_drop.lock"
# Messages asked for per inbox request.
PAGE: Final = 100
# Seconds the daemon has to answer a short request (exports have no deadline).
CALL_DEADLINE: Final = 30.0
# Subscriptions in a row the daemon may end before we give up on it.
MAX_RESUBSCRIBE: Final = 3
# Characters kept from a sender's file name; the rest become "_".
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_MAX_NAME: Final = 100
EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_ENVIRONMENT: Final = 3


def say(text: str) -> None:
    print(f"file_drop: {text}", file=sys.stderr, flush=True)


# -- The drop directory: synchronous file work, run in a worker thread ---------------


@dataclass
class State:
    """What survives a restart: the last ``seq`` taken, and what it was publishing."""

    last_seq: int = 0
    publishing: list[str] = field(default_factory=list)


def load_state(path: Path) -> State:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return State()
    except (OSError, ValueError) as exc:
        raise DropError(f"cannot read the state file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise DropError(f"the state file {path} is damaged")
    last_seq, publishing = data.get("last_seq"), data.get("publishing", [])
    if not isinstance(last_seq, int) or not isinstance(publishing, list):
        raise DropError(f"the state file {path} is damaged")
    if not all(isinstance(name, str) and "/" not in name for name in publishing):
        raise DropError(f"the state file {path} is damaged")
    return State(last_seq, publishing)


def write_private(path: Path, data: bytes) -> None:
    """Write a new file, 0600 whatever the umask, and flush it to disk."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_state(path: Path, state: State) -> None:
    tmp = path.with_name(path.name + ".part")
    data = {"last_seq": state.last_seq, "publishing": state.publishing}
    write_private(tmp, json.dumps(data).encode())
    os.replace(tmp, path)
    sync_dir(path.parent)


def pending(drop: Path, name: str) -> Path:
    """Where ``name`` is written before it is published."""
    return drop / f".{name}.part"


def publish(drop: Path, names: list[str]) -> None:
    """Rename each pending name into place; those already renamed are skipped."""
    for name in names:
        with suppress(FileNotFoundError):
            os.replace(pending(drop, name), drop / name)
    sync_dir(drop)


def safe_name(name: str) -> str:
    """A sender's file name reduced to a harmless last component."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).lstrip(".")[-_MAX_NAME:]
    return base or "file"


def record_of(message: Message, saved_as: str | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "seq": message.seq,
        "id": message.id,
        "contact": message.contact,
        "kind": message.kind,
        "label": message.label,
        "created_ms": message.created_ms,
        "received_ms": message.received_ms,
    }
    if message.file is not None:
        record["file"] = {
            "name": message.file.name,
            "size": message.file.size,
            "saved_as": saved_as,
        }
    else:
        record["content_type"] = message.content_type
        record["body"] = message.body
    return record


class DropError(Exception):
    """The drop directory or its state cannot be used."""


# -- Taking messages from the daemon --------------------------------------------------


class Drop:
    """The drop directory of one endpoint, and where it is in the inbox."""

    def __init__(self, directory: Path, state_path: Path) -> None:
        self.directory = directory
        self.state_path = state_path
        self.state = load_state(state_path)
        self.taken = 0

    async def recover(self) -> None:
        """Finish publishing what a previous run saved but did not rename."""
        if self.state.publishing:
            await trio.to_thread.run_sync(publish, self.directory, self.state.publishing)

    async def catch_up(self, client: Client) -> None:
        """Take every incoming message after the last one taken, oldest first."""
        while True:
            with trio.fail_after(CALL_DEADLINE):
                page = await client.inbox(after=self.state.last_seq, limit=PAGE)
            for message in page:
                if message.file is not None and not message.file.complete:
                    # Not exportable yet; its "message" event comes when it is.
                    say(f"waiting for file {message.id} to arrive completely")
                    return
                await self.take(client, message)
            if len(page) < PAGE:
                return

    async def take(self, client: Client, message: Message) -> None:
        assert message.seq is not None
        stem = f"{message.seq:012d}-{message.id}"
        names: list[str] = []
        saved_as = None
        if message.file is not None:
            saved_as = f"{stem}-{safe_name(message.file.name)}"
            target = pending(self.directory, saved_as)
            target.unlink(missing_ok=True)  # left by a run that crashed here
            await client.export_file(message.id, target)
            await trio.to_thread.run_sync(os.chmod, target, 0o600)
            names.append(saved_as)
        record = json.dumps(record_of(message, saved_as), indent=1)
        names.append(f"{stem}.json")
        await trio.to_thread.run_sync(
            write_private, pending(self.directory, names[-1]), record.encode()
        )
        self.state = State(message.seq, names)
        await trio.to_thread.run_sync(save_state, self.state_path, self.state)
        await trio.to_thread.run_sync(publish, self.directory, names)
        self.taken += 1


async def run(drop: Drop, home: Path | None, follow: bool = True) -> int:
    """Take the inbox, then (``follow``) each new message until cancelled."""
    await drop.recover()
    async with open_client(home) as client:
        if not follow:
            await drop.catch_up(client)
            return drop.taken
        ended = 0
        while True:
            # Subscribe before reading the inbox, so nothing falls between the two.
            async with client.subscribe(["message"]) as events:
                await drop.catch_up(client)
                try:
                    async for event in events:
                        if isinstance(event, Message):
                            # Events only wake us: the inbox, read from the last
                            # seq taken, is what says what is new.
                            await drop.catch_up(client)
                            ended = 0
                except TransportError as exc:
                    # The daemon stopped, or dropped us for falling behind:
                    # subscribing again tells which, and catching up loses nothing.
                    ended += 1
                    if ended > MAX_RESUBSCRIBE:
                        raise
                    say(f"{exc}; subscribing again")


async def until_stopped(fn: Callable[[], Awaitable[object]]) -> bool:
    """Run ``fn()`` until it returns (True) or Ctrl-C or a SIGTERM (systemd's
    stop, ``kill``) cancels it (False); what it raises goes up as it is."""
    ended: list[Outcome[object]] = []

    async def body() -> None:
        ended.append(await outcome.acapture(fn))
        nursery.cancel_scope.cancel()

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(body)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                return False
    ended[0].unwrap()
    return True


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold ``path``'s lock, or refuse: one file_drop per drop directory."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DropError(f"another file_drop is using {path.parent}") from None
        yield
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Copy incoming messages into a directory.")
    parser.add_argument(
        "--home",
        type=Path,
        help="the endpoint's home (default: $ONIONPOST_HOME, else the per-user data dir)",
    )
    parser.add_argument("--drop", type=Path, required=True, metavar="DIR", help="drop directory")
    parser.add_argument("--state", type=Path, help=f"state file (default: DIR/{STATE_NAME})")
    parser.add_argument("--once", action="store_true", help="take the inbox, then exit")
    args = parser.parse_args(argv)
    socket = Paths.for_home(args.home or default_home()).socket
    directory: Path = args.drop.absolute()
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with locked(directory / LOCK_NAME):
            drop = Drop(directory, (args.state or directory / STATE_NAME).absolute())
            try:
                trio.run(until_stopped, partial(run, drop, args.home, not args.once))
            finally:
                say(f"took {drop.taken} messages; the last is #{drop.state.last_seq}")
    except KeyboardInterrupt:
        return EXIT_OK
    except (DropError, OSError) as exc:
        say(str(exc))
        return EXIT_FAILED
    except ApiError as exc:
        say(f"the daemon refused: {exc} ({exc.code})")
        return EXIT_FAILED
    except DaemonNotRunningError:
        say(f"no daemon is listening on {socket}: start 'onionpost daemon' for this home")
        return EXIT_ENVIRONMENT
    except TransportError as exc:
        say(f"lost the daemon: {exc}. Run again once it is back; nothing will be lost.")
        return EXIT_ENVIRONMENT
    except trio.TooSlowError:
        say(f"the daemon did not answer within {CALL_DEADLINE:g} s")
        return EXIT_ENVIRONMENT
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
