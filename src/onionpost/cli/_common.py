"""What every ``onionpost`` command shares: the home, exit codes, errors, output.

An :class:`~onionpost.errors.OnionpostError` that leaves a command becomes one
line on stderr, ``onionpost: <message>``, and an exit code (never a
traceback): 3 when the environment is unusable (no daemon, the store, tor,
a broken connection to the daemon), else 1. Click's own usage errors exit 2.

Commands that talk to the daemon go through :func:`run_client`: connecting
has a short deadline so that a missing or wedged daemon cannot hang the
command, and a request that is not answered in time fails the same way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeVar

import click
import trio

from onionpost._files import read_small_file
from onionpost.api import MAX_SEQ, MESSAGE_ID_SIZE
from onionpost.client import Client, open_client
from onionpost.errors import (
    ConfigError,
    DaemonNotRunningError,
    NotFoundError,
    OnionpostError,
    SelfTestError,
    StoreError,
    TorError,
    TransportError,
)
from onionpost.home import HOME_ENV, Paths, default_home
from onionpost.limits import (
    MAX_CARD_BUNDLE_FILE,
    MAX_LABEL,
    MAX_PASSPHRASE_FILE,
    PASSPHRASE_PIPE_SECONDS,
)

if TYPE_CHECKING:
    from rich.console import Console

    from onionpost import api
    from onionpost.home import Config, Secrets
    from onionpost.host import SecretSource

__all__ = [
    "ANSWER_DEADLINE",
    "CONNECT_DEADLINE",
    "EXIT_ENVIRONMENT",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "OnionpostGroup",
    "emit_json",
    "enter_with_deadline",
    "exit_code",
    "expires_option",
    "fail",
    "format_ms",
    "home_option",
    "json_lines_option",
    "json_option",
    "print_code",
    "printable",
    "read_card_argument",
    "read_passphrase_file",
    "run_until_signal",
    "serve_options",
    "served_home",
    "table_console",
    "check_label",
    "resolve_home",
    "resolve_message_id",
    "run_client",
    "secret_source",
]

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_ENVIRONMENT: Final = 3

# Seconds to reach the daemon's socket: a live daemon accepts at once.
CONNECT_DEADLINE: Final = 5.0
# Seconds a daemon has to answer one short command (not --follow, not file waits).
ANSWER_DEADLINE: Final = 60.0

_HOME_KEY: Final = "onionpost.home"

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def exit_code(exc: OnionpostError) -> int:
    if isinstance(exc, DaemonNotRunningError | TransportError | StoreError | TorError):
        return EXIT_ENVIRONMENT
    return EXIT_FAILED


def read_passphrase_file(path: Path) -> str:
    """The first line of a passphrase file, held to the key file's rules
    (storage.md §2): a regular file of ours, no group or other permission
    bit, not a symlink, at most MAX_PASSPHRASE_FILE bytes. A pipe or FIFO
    (``<(...)``) is read too, under the same rules, for at most
    PASSPHRASE_PIPE_SECONDS."""
    data = read_small_file(
        path,
        MAX_PASSPHRASE_FILE,
        what="passphrase file",
        private=True,
        pipe_seconds=PASSPHRASE_PIPE_SECONDS,
    )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text") from exc
    # The first line, so that an editor's trailing newline is not part of it.
    return text.split("\n", 1)[0].rstrip("\r")


def secret_source(
    key_file: Path | None,
    passphrase_file: Path | None,
    *,
    whose: str = "this home",
    options: str = "--key-file, --passphrase-file",
) -> SecretSource:
    """What opens the secrets file: --key-file, else --passphrase-file, else
    $ONIONPOST_PASSPHRASE, else a passphrase asked for on a terminal.
    ``whose`` and ``options`` name them when none is given."""
    from onionpost.host import SecretSource

    if key_file is not None:
        return SecretSource(key_file=key_file)
    if passphrase_file is not None:
        return SecretSource(passphrase=read_passphrase_file(passphrase_file))
    env = os.environ.get("ONIONPOST_PASSPHRASE")
    if env is not None:
        return SecretSource(passphrase=env)
    if not sys.stdin.isatty():
        raise ConfigError(f"no passphrase for {whose}: use {options} or $ONIONPOST_PASSPHRASE")
    passphrase: str = click.prompt(f"passphrase for {whose}", hide_input=True)
    return SecretSource(passphrase=passphrase)


def read_card_argument(card_or_file: str) -> tuple[str, str | None]:
    """The card line and the endorsement line of a card bundle (None: none,
    trust.md §7.5): the argument itself (a card), a file's, or stdin's for '-'."""
    if card_or_file == "-":
        text = sys.stdin.read(MAX_CARD_BUNDLE_FILE + 1)
        if len(text.encode("utf-8", errors="replace")) > MAX_CARD_BUNDLE_FILE:
            raise ConfigError("stdin is too large to be a contact card")
    elif os.path.isfile(card_or_file):
        # The one bounded read every small file goes through (a card bundle's bound).
        data = read_small_file(Path(card_or_file), MAX_CARD_BUNDLE_FILE, what="card file")
        text = data.decode("utf-8", errors="replace")
    elif os.sep in card_or_file:
        # A path that is no file (a card, base64url, has no '/'): say so, not
        # "does not start with 'onionpost1:'".
        raise ConfigError(f"{printable(card_or_file)} is neither a contact card nor a card file")
    else:
        return card_or_file.strip(), None
    # The card's module (and its crypto) only when a file is read.
    from onionpost.home import ENDORSEMENT_PREFIX

    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    endorsements = [ln for ln in lines if ln.startswith(ENDORSEMENT_PREFIX)]
    cards = [ln for ln in lines if not ln.startswith(ENDORSEMENT_PREFIX)]
    if len(cards) != 1:
        raise ConfigError(f"{card_or_file} must hold exactly one card line, found {len(cards)}")
    if len(endorsements) > 1:
        raise ConfigError(f"{card_or_file} holds {len(endorsements)} endorsement lines, not one")
    return cards[0], endorsements[0] if endorsements else None


def printable(text: str) -> str:
    """``text`` safe for a terminal: control and formatting characters escaped.

    Message bodies, names and file names come from other endpoints; escape
    sequences in them must not reach the terminal.
    """
    return "".join(ch if ch.isprintable() or ch in "\n\t" else f"\\u{ord(ch):04x}" for ch in text)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    one_line = " ".join(printable(message).split("\n"))
    click.echo(f"onionpost: {one_line}", err=True)
    raise SystemExit(code)


def _single_error(group: BaseExceptionGroup[BaseException]) -> OnionpostError | None:
    """The one OnionpostError a task group failed with, if that is all it holds."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    if len(leaves) == 1 and isinstance(leaves[0], OnionpostError):
        return leaves[0]
    return None


class OnionpostGroup(click.Group):
    """A click group whose commands report OnionpostError as one line and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OnionpostError as exc:
            fail(str(exc), exit_code(exc))
        except BaseExceptionGroup as group:
            error = _single_error(group)
            if error is None:
                raise
            fail(str(error), exit_code(error))


def home_option(function: F, *, whose: str = "endpoint's") -> F:
    """``--home``: on the group and on each command; the command's wins.
    ``whose`` names what the home runs (a registrar's commands say so)."""
    return click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help=f"The {whose} home directory (default: ${HOME_ENV} or the per-user data dir).",
    )(function)


def json_option(function: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print plain JSON.")(function)


def json_lines_option(function: F) -> F:
    """--json of a command that lists: a JSON object a line (JSON Lines)."""
    return click.option(
        "--json",
        "as_json",
        is_flag=True,
        help="Print one plain JSON object a line, a message each.",
    )(function)


def remember_group_home(ctx: click.Context, home: Path | None) -> None:
    ctx.meta[_HOME_KEY] = home


def resolve_home(home: Path | None) -> Path:
    if home is not None:
        return home
    ctx = click.get_current_context(silent=True)
    group_home = ctx.meta.get(_HOME_KEY) if ctx is not None else None
    if isinstance(group_home, Path):
        return group_home
    return default_home()


def emit_json(obj: Any, *, first: str | None = None) -> None:
    """One JSON line, keys sorted; ``first`` (a message's ``label``) leads."""
    if first is not None and isinstance(obj, dict) and first in obj:
        ordered = json.loads(json.dumps(obj, sort_keys=True))
        click.echo(json.dumps({first: ordered.pop(first), **ordered}))
        return
    click.echo(json.dumps(obj, sort_keys=True))


def format_ms(ms: int | None, *, never: str = "never") -> str:
    """A time for people, in UTC and saying so (the reader's zone is not the
    daemon's, nor a contact's; an agency's statements are in UTC)."""
    if ms is None:
        return never
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (ValueError, OverflowError, OSError):
        # Past year 9999 (a record of an earlier version held it): no date.
        return f"{ms} ms since 1970 (no date)"


async def enter_with_deadline(
    stack: AsyncExitStack, manager: AbstractAsyncContextManager[T], what: Path
) -> T:
    """Enter ``manager`` (a connection to the daemon) within CONNECT_DEADLINE."""
    with trio.move_on_after(CONNECT_DEADLINE):
        return await stack.enter_async_context(manager)
    raise DaemonNotRunningError(f"the daemon at {what} does not answer (is it stuck?)")


@asynccontextmanager
async def _connected(socket_path: Path) -> AsyncIterator[Client]:
    async with AsyncExitStack() as stack:
        yield await enter_with_deadline(stack, open_client(socket_path=socket_path), socket_path)


def run_client(
    home: Path | None,
    work: Callable[[Client], Awaitable[T]],
    *,
    bounded: bool = True,
) -> T:
    """Connect to the daemon of ``home`` and run ``work`` with the client.

    ``bounded``: ``work`` must finish within ANSWER_DEADLINE (not for
    commands that follow events or move whole files).
    """
    socket_path = Paths.for_home(resolve_home(home)).socket
    deadline = ANSWER_DEADLINE if bounded else None

    async def main() -> T:
        async with _connected(socket_path) as client:
            if deadline is None:
                return await work(client)
            with trio.fail_after(deadline):
                return await work(client)

    try:
        return trio.run(main)
    except trio.TooSlowError:
        raise TransportError(
            f"the daemon did not answer within {deadline:g} s", reason="timeout"
        ) from None


# A received message's '#' in the inbox: "#7" or "7". A message id is 32 hex
# digits, so a shorter run of decimal digits is never one.
_SEQ_DIGITS: Final = 31
_HEX: Final = frozenset("0123456789abcdef")


async def resolve_message_id(
    client: Client, given: str, contact: str | None
) -> tuple[str, str | None]:
    """The message id and contact that ``given`` names: a message id as it
    is, or a received message's sequence number as the inbox shows it
    (``#7`` or ``7``), looked up in the inbox."""
    digits = given.removeprefix("#")
    if not (digits.isascii() and digits.isdigit() and len(digits) <= _SEQ_DIGITS):
        message_id = given.lower()
        if len(message_id) != 2 * MESSAGE_ID_SIZE or not set(message_id) <= _HEX:
            raise ConfigError(
                f"'{printable(given)}' is neither a message id (32 hex digits) "
                "nor the '#' that 'onionpost inbox' shows"
            )
        return message_id, contact
    seq = int(digits)
    page = await client.inbox(after=seq - 1, limit=1) if 0 < seq <= MAX_SEQ else ()
    if not page or page[0].seq != seq:
        raise NotFoundError(f"no received message #{seq} (the '#' that 'onionpost inbox' shows)")
    message = page[0]
    if contact is not None and contact != message.contact:
        raise NotFoundError(f"received message #{seq} is from '{message.contact}', not '{contact}'")
    return message.id, message.contact


# Columns of a table printed to a pipe or file: wide enough that no id,
# address or time is cut ("b631898642d720…" cannot be copied back).
PIPE_WIDTH: Final = 400


def table_console() -> Console:
    """Where tables and grids print: the terminal's width on a terminal,
    else PIPE_WIDTH (rich would use 80 and cut cells); plain when not a
    terminal, and never markup or highlighting of others' text."""
    from rich.console import Console  # only the commands that print tables load rich

    width = None if sys.stdout.isatty() else PIPE_WIDTH
    return Console(highlight=False, soft_wrap=False, width=width)


def check_label(label: str | None) -> None:
    """An empty --label is a mistake (a variable unset in a script), not the
    default: said here, in the command's words, not the local API's."""
    if label is not None and not label.strip():
        raise ConfigError("--label is empty: give a label (e.g. TLP:AMBER), or leave it out")
    if label is not None and len(label) > MAX_LABEL:
        raise ConfigError(
            f"--label is {len(label)} characters long: a label has at most {MAX_LABEL}"
        )


def stdin_is_a_terminal() -> bool:
    return sys.stdin.isatty()


# -- a home run as a service in the foreground, and its one-time codes ------------------


def serve_options(function: F, *, whose: str = "endpoint's") -> F:
    """``--home``, ``--key-file``, ``--passphrase-file``: what a command that runs
    a home in the foreground takes (``daemon``, ``mailbox serve``, ``registrar serve``);
    ``whose`` as for :func:`home_option`."""
    function = click.option(
        "--passphrase-file",
        type=click.Path(path_type=Path),
        help="The home's passphrase, this file's first line (else $ONIONPOST_PASSPHRASE, "
        "else asked).",
    )(function)
    function = click.option(
        "--key-file",
        type=click.Path(path_type=Path),
        envvar="ONIONPOST_KEY_FILE",
        help="Open the home with this 32-byte key file, not a passphrase "
        "(else $ONIONPOST_KEY_FILE).",
    )(function)
    return home_option(function, whose=whose)


@contextmanager
def served_home(
    home: Path | None,
    key_file: Path | None,
    passphrase_file: Path | None,
    *,
    log: logging.Logger,
) -> Iterator[tuple[Paths, Secrets, Config]]:
    """A home to run as a service (a mailbox, a registrar), its lock held: the
    primitives checked first (exit 3 when they fail), then the secrets opened."""
    from onionpost.host import check_primitives, open_home

    try:
        check_primitives()
    except SelfTestError as exc:
        fail(str(exc), EXIT_ENVIRONMENT)
    paths = Paths.for_home(resolve_home(home))
    source = partial(secret_source, key_file, passphrase_file)
    with open_home(paths, source, what="home", log=log) as (secrets, config):
        yield paths, secrets, config


async def run_until_signal(
    run: Callable[..., Awaitable[Any]], name: str, log: logging.Logger
) -> None:
    """Start ``run`` (it reports its address), say ``onionpost NAME ready`` on
    stderr, and cancel it at the first SIGINT or SIGTERM: while it starts too
    (tor bootstrapping may take minutes; a service manager's stop must not)."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_at_signal() -> None:
                async for signum in signals:
                    log.info("event=stopping signal=%s", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_at_signal)
            address = await nursery.start(run)
            print(f"onionpost {name} ready: {address}", file=sys.stderr, flush=True)


# `--expires` of a one-time code: what the local API accepts (api.MailboxCode,
# api.RegistrarCode).
MIN_EXPIRES: Final = 60
MAX_EXPIRES: Final = 604_800
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
_DURATION: Final = re.compile(r"(\d{1,7})([smhd]?)")


def _expires(ctx: click.Context, param: click.Parameter, value: str) -> int:
    """Seconds, or a number with a unit: ``90s``, ``30m``, ``24h``, ``7d``."""
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a duration like 3600, 90m, 24h or 7d")
    seconds = int(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not MIN_EXPIRES <= seconds <= MAX_EXPIRES:
        raise click.BadParameter(f"a code lasts from 1 minute to 7 days, not {seconds} s")
    return seconds


def expires_option(default: str) -> Callable[[F], F]:
    """``--expires DURATION`` of a one-time code, in seconds."""
    return click.option(
        "--expires",
        metavar="DURATION",
        default=default,
        callback=_expires,
        show_default=True,
        help="How long the code may be used: seconds, or 90m, 24h, 7d (1 minute to 7 days).",
    )


def print_code(
    issued: api.SetupCode | api.EnrolmentCode, *, holder: str, command: str, verb: str
) -> None:
    """A one-time code and its QR on stdout; on stderr, until when, for whom
    (``holder``: "one owner: on its endpoint run"), the ``command`` it is
    used with there, and a warning that whoever sees it can ``verb`` with it."""
    click.echo(issued.code)
    click.echo(issued.qr, nl=False)
    click.echo(
        f"valid until {format_ms(issued.expires_ms)}, for {holder}\n"
        f"    {command}\n"
        f"Anyone who sees the code can {verb} in its place until then: hand it over privately.",
        err=True,
    )
