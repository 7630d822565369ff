"""The commands that talk to the running daemon: contact, send, inbox, status, retry.

Each one is a thin layer over :mod:`onionpost.client`: it connects through
:func:`~onionpost.cli._common.run_client`, makes its calls, and prints either
for people (rich tables and progress, text escaped for the terminal) or, with
``--json``, plain JSON (one object, or one per line for streams).
"""

from __future__ import annotations

import dataclasses
import shlex
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, aclosing, contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Any, Final, TypeVar

import click
import trio
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from onionpost import api
from onionpost.cli._common import (
    ANSWER_DEADLINE,
    EXIT_FAILED,
    check_label,
    emit_json,
    enter_with_deadline,
    fail,
    format_ms,
    home_option,
    json_option,
    printable,
    read_card_argument,
    resolve_message_id,
    run_client,
    table_console,
)
from onionpost.cli._groups_cmd import print_group_sent
from onionpost.cli._lists_cmd import print_sent
from onionpost.client import (
    Client,
    GroupSent,
    ListSent,
    Message,
    MessageState,
    Queued,
    StateChange,
)
from onionpost.errors import (
    ConfigError,
    DaemonNotRunningError,
    NotConfirmedError,
    OnionpostError,
    TransportError,
)
from onionpost.limits import MAX_TEXT_BODY
from onionpost.names import numbered_file_name, safe_file_name

__all__ = ["contact", "inbox", "message", "outbox", "read", "retry", "send", "status"]

# Messages asked for per inbox request while paging.
INBOX_PAGE: Final = 100
# send --wait: seconds without delivery before it says what it waits for.
WAIT_HINT_SECONDS: Final = 5.0


def _console() -> Console:
    # Plain when not a terminal; never markup or highlighting of others' text.
    return table_console()


def _as_json(obj: Any) -> Any:
    return dataclasses.asdict(obj)


def message_json(message: Message) -> dict[str, Any]:
    """A message as --json prints it: its handling label first."""
    record = _as_json(message)
    return {"label": record.pop("label"), **record}


def banner(label: str) -> str:
    """A handling label as a banner, shown before anything else of a message."""
    return f"[{printable(label or api.UNLABELLED)}]"


def queued_banner(queued: Queued) -> str:
    """The label a send was queued under, as the line's first word (a daemon
    without labels answers none: nothing then)."""
    return f"{banner(queued.label)} " if queued.label else ""


# -- contact ------------------------------------------------------------------------


@click.group()
def contact() -> None:
    """Add, list, remove and verify contacts."""


# How ``contact list`` words an endorsement judged without a fresh list.
_NO_FRESH_LIST: Final = ("unverified: no-revocation-list", "unverified: stale-revocation-list")


@contact.command("add")
@click.argument("card_or_file")
@click.option("--name", help="Call the contact this instead of the name on its card.")
@home_option
@json_option
def contact_add(card_or_file: str, name: str | None, home: Path | None, as_json: bool) -> None:
    """Add a contact from its card: the card text, a file holding it, or '-' for stdin.

    A file (or stdin) may be a card bundle (``onionpost whoami --bundle``):
    the card and the endorsement of its agency, judged at once."""
    card, endorsement = read_card_argument(card_or_file)
    added = run_client(home, lambda client: client.contact_add(card, name, endorsement))
    if as_json:
        emit_json(_as_json(added))
    else:
        click.echo(f"added contact '{printable(added.name)}' ({added.address})")
        if endorsement is not None:
            listed = run_client(home, lambda client: client.contact_list())
            shown = next((c.endorsement for c in listed if c.name == added.name), None)
            click.echo(f"endorsement: {printable(shown or 'none')}")
            if shown is not None and shown.startswith(_NO_FRESH_LIST):
                # A card bundle carries no list (trust.md §7.5): one comes
                # with the contact's sessions (§7.2), or as a file (§7.3).
                click.echo(
                    "no fresh revocation list of its agency is held here yet: one comes with "
                    "the contact's first session (or 'onionpost trust revocations import "
                    "FILE'); until then it does not count as endorsed",
                    err=True,
                )
        name = shlex.quote(printable(added.name))
        click.echo(f"verify it with: onionpost contact verify {name}", err=True)


@contact.command("list")
@home_option
@json_option
def contact_list(home: Path | None, as_json: bool) -> None:
    """List contacts, whether a session with each is up now, and when it was last seen.

    Sessions close after a while with nothing to send ('session -' then says
    nothing of the contact: the next send opens one); 'onionpost status'
    shows the last error and the next try of a contact that cannot be reached.
    """
    contacts = run_client(home, lambda client: client.contact_list())
    if as_json:
        emit_json([_as_json(c) for c in contacts])
        return
    if not contacts:
        click.echo("no contacts yet: add one with 'onionpost contact add CARD'", err=True)
        return
    table = Table(
        "name",
        "address",
        "session",
        "verified",
        "endorsement",
        "last seen",
        "added",
        "accepts up to",
    )
    table.columns[1].overflow = "fold"  # an address is an identity: never cut it short
    table.columns[1].min_width = 62
    for c in contacts:
        limits = ", ".join((*c.max_labels, *(f"{x} (its own)" for x in c.accepts))) or "-"
        trust = c.endorsement or "-"
        if c.rotated is not None:
            # Its move to this address (trust.md §6), under what vouches for it now.
            trust += f"\n{c.rotated}, {format_ms(c.rotated_ms)}"
        table.add_row(
            Text(printable(c.name)),
            Text(c.address),
            Text("up" if c.reachable else "-"),
            Text(format_ms(c.verified_ms, never="no")),
            Text(printable(trust)),
            Text(format_ms(c.last_seen_ms)),
            Text(format_ms(c.added_ms, never="-")),
            Text(printable(limits)),
        )
    _console().print(table)


@contact.command("show")
@click.argument("name")
@home_option
@json_option
def contact_show(name: str, home: Path | None, as_json: bool) -> None:
    """Show everything about one contact: its endorsement in detail (or why
    not), whether one is required of it and why its outbox is held, its move,
    its labels, what waits for it, and its groups. NAME is its name or its
    address (a member a group introduced: its card's name or address)."""
    shown = run_client(home, lambda client: client.contact_show(name))
    if as_json:
        emit_json(_as_json(shown))
        return
    for key, value in _contact_lines(shown):
        click.echo(f"{key + ':':<22}{value}" if value else f"{key}:")


def _one_line(text: str) -> str:
    return printable(text).replace("\n", "\\n").replace("\t", " ")


def _contact_lines(shown: api.ContactDetail) -> Iterator[tuple[str, str]]:
    """``contact show``'s lines: (key, value); a value from the contact or
    its agency is escaped for the terminal."""
    c, d = shown.contact, shown.delivery
    yield "name", _one_line(c.name)
    yield "address", c.address
    if shown.introduced:
        yield "introduced", "a member a group introduced to us, not a contact"
    yield "added", format_ms(c.added_ms, never="-")
    yield "last seen", format_ms(c.last_seen_ms)
    yield "session", "up" if c.reachable else "none now (one opens when there is something to send)"
    yield "verified", format_ms(c.verified_ms, never="no (compare the safety number)")
    yield "endorsement", _one_line(c.endorsement or "none presented")
    if shown.endorsement is not None:
        yield from (("  " + k, v) for k, v in _endorsement_lines(shown.endorsement))
    where = "its own setting" if shown.require_endorsement_from == "contact" else "config.toml"
    yield "require endorsement", f"{'yes' if shown.require_endorsement else 'no'} ({where})"
    # Why nothing is sent to it (trust.md §7.4), in status's words.
    yield "outbox held", _one_line(d.refused) or "no"
    if c.rotated is not None:
        yield "moved", f"{_one_line(c.rotated)}, {format_ms(c.rotated_ms)}"
    yield "max labels", _one_line(", ".join(c.max_labels)) or "- (no limit of ours)"
    yield "accepts", _one_line(", ".join(c.accepts)) or "- (it said nothing)"
    deposited = f" ({d.deposited} in its mailbox)" if d.deposited else ""
    yield "queued", f"{d.queued}{deposited}"
    yield "mailbox", d.mailbox or "none"
    if d.mailbox_error:
        yield "mailbox error", _one_line(d.mailbox_error)
    if d.last_error:
        yield "last error", _one_line(d.last_error)
    if d.retry_in is not None:
        yield "retry in", f"{d.retry_in:.0f} s"
    yield "groups", _one_line(", ".join(shown.groups)) or "none"


def _endorsement_lines(e: api.EndorsementDetail) -> Iterator[tuple[str, str]]:
    yield "status", e.status + (f" ({e.reason})" if e.reason else "")
    if e.agency:
        yield "agency", _one_line(e.agency)
    if e.endpoint:
        yield "endpoint", _one_line(e.endpoint)
        yield "unit", _one_line(e.unit) or "-"
    if e.valid_from is not None and e.valid_until is not None:
        valid = f"{format_ms(e.valid_from * 1000)} to {format_ms(e.valid_until * 1000)}"
        yield "valid", valid
    if e.until is not None and e.until != e.valid_until:
        yield "until", f"{format_ms(e.until * 1000)} (its issuing key's delegation ends)"
    if e.replaces:
        yield "replaces", e.replaces
    if e.anchor:
        yield "anchor", e.anchor
    if e.revocations_serial is not None:
        issued = format_ms(
            None if e.revocations_issued_at is None else e.revocations_issued_at * 1000
        )
        yield "revocation list", f"serial {e.revocations_serial}, issued {issued}"
    elif e.anchor:
        yield "revocation list", "none held of the agency"
    if e.revoked_at is not None:
        why = f": {_one_line(e.revoked_reason)}" if e.revoked_reason else " (no reason given)"
        yield "revoked", f"{format_ms(e.revoked_at * 1000)}{why}"
    yield "checked", format_ms(e.checked_ms)


@contact.command("remove")
@click.argument("name")
@home_option
@json_option
def contact_remove(name: str, home: Path | None, as_json: bool) -> None:
    """Remove a contact; it can no longer reach this endpoint's onion service.

    What still waits for it is not sent (it stays in the history): the
    command says how much.
    """

    async def remove(client: Client) -> tuple[api.ContactRef, int]:
        waiting = await client.outbox(name, limit=api.MAX_INBOX_LIMIT)
        return await client.contact_remove(name), len(waiting)

    removed, waiting = run_client(home, remove)
    if as_json:
        emit_json(_as_json(removed))
        return
    click.echo(f"removed contact '{printable(removed.name)}' ({removed.address})")
    if waiting:
        more = "+" if waiting == api.MAX_INBOX_LIMIT else ""
        click.echo(
            f"warning: {waiting}{more} message{'s' if waiting != 1 else ''} waiting for "
            f"'{printable(removed.name)}' will not be sent (they are marked expired)",
            err=True,
        )


@contact.command("rename")
@click.argument("name")
@click.argument("new_name", metavar="NEW_NAME")
@home_option
@json_option
def contact_rename(name: str, new_name: str, home: Path | None, as_json: bool) -> None:
    """Call contact NAME NEW_NAME from now on.

    Nothing else changes: its messages (shown under the new name), what waits
    for it, its verification and its lists stay. The evidence log records it.
    """
    renamed = run_client(home, lambda client: client.contact_rename(name, new_name))
    if as_json:
        emit_json(_as_json(renamed))
        return
    click.echo(f"'{printable(name)}' is now '{printable(renamed.name)}' ({renamed.address})")


@contact.command("verify")
@click.argument("name")
@click.option(
    "--confirm",
    "heard",
    metavar="NUMBER",
    default=None,
    help="The number the contact read out to you: if it matches, mark the contact verified "
    "(recorded in the evidence log); if not, exit 1 and change nothing.",
)
@home_option
@json_option
def contact_verify(name: str, heard: str | None, home: Path | None, as_json: bool) -> None:
    """Show the safety number to compare with the contact over a channel you trust;
    with --confirm, record that it matched. A group member introduced to us (not a
    contact) is named by its card's name, or by its address when names clash."""
    number = run_client(home, lambda client: client.contact_verify(name, confirm=heard))
    if as_json:
        emit_json(_as_json(number))
        return
    groups = number.groups
    click.echo(f"safety number with '{printable(number.name)}':")
    for row in range(0, len(groups), 4):
        click.echo("    " + " ".join(groups[row : row + 4]))
    if number.verified_ms is not None:
        click.echo(f"verified: it matched on {format_ms(number.verified_ms)}", err=True)
        return
    click.echo(
        "Compare it with what they see, in person or by phone. If it matches, "
        "nobody is between you: then record it with "
        f"'onionpost contact verify {shlex.quote(number.name)} --confirm \"NUMBER\"'.",
        err=True,
    )


@contact.command("require-endorsement")
@click.argument("name")
@click.option(
    "--on/--off",
    "required",
    default=None,
    help="Send nothing to the contact until it presents a valid agency endorsement (--on), "
    "or not even if config.toml requires it (--off).",
)
@click.option("--default", "default", is_flag=True, help="As config.toml says.")
@home_option
def contact_require_endorsement(
    name: str, required: bool | None, default: bool, home: Path | None
) -> None:
    """Require an agency endorsement of one contact, or not, apart from the
    require_endorsement of config.toml."""
    if (required is None) == (not default):
        raise click.UsageError("give one of --on, --off, --default")
    run_client(home, lambda client: client.contact_require_endorsement(name, required))
    said = {True: "required", False: "not required", None: "as config.toml says"}[required]
    click.echo(f"an endorsement of '{printable(name)}': {said}")


@contact.command("set-max-label")
@click.argument("name")
@click.argument("labels", metavar="[LABEL]...", nargs=-1)
@home_option
@json_option
def contact_set_max_label(
    name: str, labels: tuple[str, ...], home: Path | None, as_json: bool
) -> None:
    """Send contact NAME nothing above LABEL (one per scheme); no LABEL: no limit of ours.

    The contact's own advertised limit holds as well: 'contact list' shows both.
    """
    result = run_client(home, lambda client: client.contact_set_max_label(name, labels))
    if as_json:
        emit_json(
            {
                "name": result.name,
                "max_labels": list(result.max_labels),
                "accepts": list(result.accepts),
            }
        )
        return
    ours = "up to " + ", ".join(result.max_labels) if result.max_labels else "no limit of ours"
    click.echo(f"'{printable(result.name)}': {printable(ours)}")
    if result.accepts:
        click.echo(f"  it accepts up to {printable(', '.join(result.accepts))}", err=True)


# -- send -----------------------------------------------------------------------------


def _read_text(text: str | None) -> str:
    if text is None or text == "-":
        if sys.stdin.isatty():
            click.echo("type the message, then Ctrl-D on a line of its own:", err=True)
        # Read at most one character more per byte than a body may hold.
        text = sys.stdin.read(MAX_TEXT_BODY + 1)
        if text.endswith("\n"):
            text = text[:-1]
    if not text:
        raise click.UsageError("the message is empty")
    if len(text.encode("utf-8")) > MAX_TEXT_BODY:
        raise ConfigError(f"the message is longer than {MAX_TEXT_BODY} bytes: send it with --file")
    return text


@click.command()
@click.argument("name")
@click.argument("text", required=False)
@click.option(
    "--file",
    "file_path",
    type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path),
    help="Send this file instead of a text.",
)
@click.option(
    "--wait/--no-wait",
    default=None,
    help="Wait until delivered, showing progress (the default for a file, not for a text).",
)
@click.option(
    "--list",
    "to_list",
    is_flag=True,
    help="NAME is a distribution list: each member gets a copy of its own.",
)
@click.option(
    "--group",
    "to_group",
    is_flag=True,
    help="NAME is a team channel: each other member gets a copy (a text or a --file) "
    "at its log's head.",
)
@click.option(
    "--label",
    metavar="LABEL",
    help="Its handling label: TLP:AMBER, CUI//SP-CTI//NOFORN, ... (default: labels.default).",
)
@home_option
@json_option
def send(
    *,
    name: str,
    text: str | None,
    file_path: Path | None,
    wait: bool | None,
    to_list: bool,
    to_group: bool,
    label: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Send TEXT (or stdin, when TEXT is omitted or '-') or a --file to contact NAME.

    A text returns once it is durably queued (delivery continues in the
    daemon), unless --wait: then it waits until the contact has it. A file is
    followed with a progress bar until it is delivered, unless --no-wait.
    With --wait the exit status says whether it was delivered (0) or will
    never be (1: refused or expired). When the daemon does not confirm the
    send in time, it says so with the message's id (exit 3): the message may
    be queued, and 'onionpost message ID' tells. A label the contact does not
    accept is refused with the reason ('bob accepts up to TLP:AMBER').

    With --list, NAME is a distribution list ('onionpost list'): each member
    gets a copy of its own, all queued at once; it returns then, showing
    each copy's id ('onionpost list show NAME' follows their states). The
    label is checked for every member first: one refusal queues nothing.

    With --group, NAME is a team channel ('onionpost group'): a text or a
    --file goes to each other member, a copy each at the group's present
    head ('onionpost group show NAME' follows their states).
    """
    if file_path is not None and text is not None:
        raise click.UsageError("give TEXT or --file, not both")
    check_label(label)
    if to_list and wait:
        raise click.UsageError(
            "--wait follows one message: follow a list's copies with 'list show'"
        )
    if to_list and to_group:
        raise click.UsageError("give --list or --group, not both")
    if to_group and wait:
        raise click.UsageError(
            "--wait follows one message: follow a group's copies with 'group show'"
        )
    body = _read_text(text) if file_path is None else None
    if to_group:
        group_sent, group_label = run_client(
            home, partial(_send_to_group, name, body, file_path, label), bounded=False
        )
        if as_json:
            emit_json(_as_json(group_sent))
        else:
            print_group_sent(group_sent, label=group_label)
        return
    if to_list:
        sent, shown = run_client(
            home, partial(_send_to_list, name, body, file_path, label), bounded=False
        )
        if as_json:
            emit_json(_as_json(sent))
        else:
            print_sent(sent, label=shown)
        return
    if not (wait if wait is not None else file_path is not None):

        async def queue(client: Client) -> Queued:
            return await _queue(client, name, body, file_path, label)

        async def queue_and_check(client: Client) -> tuple[Queued, str]:
            queued = await _queue(client, name, body, file_path, label)
            return queued, await _refusal(client, name)

        queued, refused = run_client(home, queue_and_check, bounded=False)
        if as_json:
            emit_json(_as_json(queued), first="label")
        elif queued.name is not None:
            click.echo(
                f"{queued_banner(queued)}queued {queued.id} ({printable(queued.name)}) "
                f"for '{printable(name)}'"
            )
        else:
            click.echo(f"{queued_banner(queued)}queued {queued.id} for '{printable(name)}'")
        if refused:
            click.echo(_held_for(name, refused), err=True)
        return
    follower = _Follower(name, body, file_path, as_json, label)
    try:
        final = run_client(home, follower.run, bounded=False)
    except KeyboardInterrupt:
        queued_id = follower.queued.id if follower.queued else "?"
        fail(f"stopped waiting; it stays queued for delivery (id {queued_id})")
    if final.state.failed:
        reason = _reason(final.reason)
        what = "file" if file_path is not None else "message"
        fail(f"the {what} was not delivered: {final.state}{reason}", EXIT_FAILED)


def _reason(code: int | None) -> str:
    """A refused message's reason as shown: the contact's code, or ours."""
    if code is None:
        return ""
    if code == api.REASON_MOVED:
        return f" (reason {code}: this home moved; send it again from the new home)"
    return f" (reason {code})"


async def _refusal(client: Client, contact: str) -> str:
    """Why sessions with ``contact`` are refused and nothing is sent to it
    (trust.md §7.4, as ``status`` shows it); empty if they are not."""
    with trio.move_on_after(ANSWER_DEADLINE):
        for c in (await client.status()).contacts:
            if c.name == contact:
                return c.refused
    return ""


def _held_for(contact: str, refused: str) -> str:
    return (
        # ``refused`` says its own verb ("refused: revoked ...", "endorsement required: ...").
        f"nothing is sent to '{printable(contact)}' ({printable(refused)}): "
        "this waits in the outbox until that changes (a move to an endorsed address, "
        "an endorsement presented); 'onionpost status' shows it"
    )


async def _queue(
    client: Client, contact: str, body: str | None, path: Path | None, label: str | None
) -> Queued:
    """Send under an id chosen here, within ANSWER_DEADLINE. The client sends
    again under it while the connection breaks, so one message is sent at
    most; with no answer at all, what we know is the id."""
    message_id = api.new_message_id()
    try:
        with trio.fail_after(ANSWER_DEADLINE):
            if path is not None:
                return await client.send_file(contact, path, id=message_id, label=label)
            assert body is not None
            return await client.send_text(contact, body, id=message_id, label=label)
    except trio.TooSlowError:
        why = f"the daemon did not answer within {ANSWER_DEADLINE:g} s"
    except NotConfirmedError as exc:
        why = str(exc.__cause__ or exc)  # the client's last try: why it failed
    except (TransportError, DaemonNotRunningError) as exc:
        why = str(exc)
    raise NotConfirmedError(
        f"not confirmed: see 'onionpost message {message_id}' ({why})", message_id=message_id
    )


async def _send_to_list(
    name: str, body: str | None, path: Path | None, label: str | None, client: Client
) -> tuple[ListSent, str | None]:
    """As :func:`_queue`, for a send to a list (see :func:`_send_copies`)."""

    async def send(send_id: str) -> ListSent:
        if path is not None:
            return await client.list_send_file(name, path, id=send_id, label=label)
        assert body is not None
        return await client.list_send_text(name, body, id=send_id, label=label)

    return await _send_copies(client, send, label, f"list show {shlex.quote(name)}")


async def _send_to_group(
    name: str, body: str | None, path: Path | None, label: str | None, client: Client
) -> tuple[GroupSent, str | None]:
    """As :func:`_queue`, for a send to a group (see :func:`_send_copies`)."""

    async def send(send_id: str) -> GroupSent:
        if path is not None:
            return await client.group_send_file(name, path, id=send_id, label=label)
        assert body is not None
        return await client.group_send_text(name, body, id=send_id, label=label)

    return await _send_copies(client, send, label, f"group show {shlex.quote(name)}")


_Sent = TypeVar("_Sent", ListSent, GroupSent)


async def _send_copies(
    client: Client, send: Callable[[str], Awaitable[_Sent]], label: str | None, show: str
) -> tuple[_Sent, str | None]:
    """A send of a copy to each of several contacts, under a send id chosen
    here; with the label its copies carry (the home's default when none was
    given), which every message shown leads with. Unconfirmed: the error
    names the command (``show``) that tells what became of it."""
    send_id = api.new_message_id()
    try:
        with trio.fail_after(ANSWER_DEADLINE):
            sent = await send(send_id)
            if not sent.copies:
                return sent, label
            return sent, (await client.message(sent.copies[0].id)).label
    except trio.TooSlowError:
        why = f"the daemon did not answer within {ANSWER_DEADLINE:g} s"
    except NotConfirmedError as exc:
        why = str(exc.__cause__ or exc)
    except (TransportError, DaemonNotRunningError) as exc:
        why = str(exc)
    raise NotConfirmedError(f"not confirmed: see 'onionpost {show}' ({why})", message_id=send_id)


class _Follower:
    """Queue a text or a file, then follow its ``state`` events until it is
    delivered or will never be."""

    def __init__(
        self, contact: str, body: str | None, path: Path | None, as_json: bool, label: str | None
    ) -> None:
        self.contact = contact
        self.label = label
        self.body = body
        self.path = path
        self.as_json = as_json
        self.queued: Queued | None = None
        self.moved = False  # a state change of the text was seen

    async def run(self, client: Client) -> StateChange:
        async with AsyncExitStack() as stack:
            # Subscribe first, so that no event about the message can be missed.
            events = await enter_with_deadline(
                stack, client.subscribe(["state"]), client.socket_path
            )
            self.queued = queued = await _queue(
                client, self.contact, self.body, self.path, self.label
            )
            if self.as_json:
                emit_json(_as_json(queued), first="label")
            else:
                what = f" ({printable(queued.name)})" if queued.name is not None else ""
                click.echo(f"{queued_banner(queued)}queued {queued.id}{what}", err=True)
            refused = await _refusal(client, self.contact)
            if refused:
                # Waiting goes on (the contact may move to an endorsed
                # address); what it waits for is said once.
                click.echo(_held_for(self.contact, refused) + "; Ctrl-C stops waiting", err=True)
            bar = self.path is not None and not self.as_json
            with _progress_bar(queued, enabled=bar) as (progress, task):
                async with trio.open_nursery() as nursery:
                    if not self.as_json and not refused and progress is None:
                        nursery.start_soon(self._hint, client, queued.id)
                    change = await self._follow(events, queued.id, progress, task)
                    nursery.cancel_scope.cancel()
                return change
        raise AssertionError("unreachable")  # pragma: no cover

    async def _follow(
        self,
        events: AsyncIterator[object],
        message_id: str,
        progress: Progress | None,
        task: TaskID,
    ) -> StateChange:
        async for change in events:
            if not isinstance(change, StateChange) or change.id != message_id:
                continue
            self.moved = True
            if self.as_json:
                emit_json(_as_json(change))
            elif progress is not None:
                self._advance(progress, task, change)
            elif change.state is not MessageState.SENDING:
                click.echo(f"{change.state}", err=True)
            if change.state.delivered or change.state.failed:
                return change
        raise AssertionError("unreachable: a subscription ends by raising")  # pragma: no cover

    async def _hint(self, client: Client, message_id: str) -> None:
        """Once, if nothing happened to the text for WAIT_HINT_SECONDS: that it
        waits for the contact, and why as far as the daemon knows."""
        await trio.sleep(WAIT_HINT_SECONDS)
        if self.moved:
            return
        with suppress(OnionpostError), trio.move_on_after(ANSWER_DEADLINE):
            for c in (await client.status()).contacts:
                if c.name != self.contact or c.reachable or self.moved:
                    continue
                why = f" (last error: {c.last_error})" if c.last_error else ""
                click.echo(
                    f"waiting: no session with '{printable(self.contact)}' now{printable(why)}; "
                    "it is delivered when the contact is back. Ctrl-C stops waiting "
                    "(the message stays queued)",
                    err=True,
                )

    def _advance(self, progress: Progress, task: TaskID, change: StateChange) -> None:
        if change.size is not None:
            progress.update(task, total=change.size)
        if change.bytes is not None:
            progress.update(task, completed=change.bytes)
        if change.state.delivered:
            total = progress.tasks[0].total
            progress.update(task, completed=total, description="delivered")
        else:
            progress.update(task, description=printable(change.state))


@contextmanager
def _progress_bar(queued: Queued, *, enabled: bool) -> Iterator[tuple[Progress | None, TaskID]]:
    """A rich progress bar on stderr showing speed and ETA (nothing for --json)."""
    if not enabled:
        yield None, TaskID(0)
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True, highlight=False),
    )
    with progress:
        yield progress, progress.add_task("waiting for the contact", total=queued.size)


# -- inbox ----------------------------------------------------------------------------


def _export_target(directory: Path, name: str) -> Path:
    """A new file in ``directory`` for a received file's name, never outside it."""
    candidate = directory / safe_file_name(name)
    counter = 1
    while candidate.exists():
        candidate = directory / numbered_file_name(name, counter)
        counter += 1
    return candidate


def _format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class _InboxPrinter:
    def __init__(self, as_json: bool, export_dir: Path | None) -> None:
        self.as_json = as_json
        self.export_dir = export_dir
        self.last_seq = 0
        self.shown = 0

    async def show(self, client: Client, message: Message) -> None:
        saved: str | None = None
        if (
            self.export_dir is not None
            and message.file is not None
            and message.file.complete
            and message.direction == "in"
        ):
            target = _export_target(self.export_dir, message.file.name)
            saved = (await client.export_file(message.id, target)).path
        self.shown += 1
        if message.seq is not None:
            self.last_seq = max(self.last_seq, message.seq)
        if self.as_json:
            record = message_json(message)
            if saved is not None:
                record["exported_to"] = saved
            emit_json(record, first="label")
            return
        when = format_ms(message.received_ms or message.created_ms)
        sender = printable(message.contact)
        if message.group is not None:
            sender += f" in '{printable(message.group)}'"
        head = f"{banner(message.label)} #{message.seq}  {when}  {sender}:"
        if message.file is not None:
            state = "" if message.file.complete else ", incomplete"
            size = _format_size(message.file.size)
            body = f"[file] {printable(message.file.name)} ({size}{state})"
            if saved is not None:
                body += f" saved to {printable(saved)}"
        else:
            body = printable(message.body or "").replace("\n", "\n    ")
        click.echo(f"{head} {body}")


@click.command()
@click.option(
    "--after",
    type=click.IntRange(min=0),
    default=0,
    metavar="SEQ",
    help="Only messages after this sequence number (the '#' shown).",
)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new messages as they arrive.")
@click.option("--unread", is_flag=True, help="Only messages not yet marked read.")
@click.option(
    "--export-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save each completed received file here (created 0700 if missing).",
)
@home_option
@json_option
def inbox(
    *,
    after: int,
    follow: bool,
    unread: bool,
    export_dir: Path | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Show received messages, oldest first; --follow waits for more."""
    if export_dir is not None:
        try:
            export_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {export_dir}: {exc.strerror}") from exc
        export_dir = export_dir.absolute()
    printer = _InboxPrinter(as_json, export_dir)
    printer.last_seq = after

    async def show_inbox(client: Client) -> None:
        if follow:
            # The inbox after --after, then what arrives, each once, no gap.
            async with aclosing(client.messages(after=printer.last_seq)) as messages:
                async for message in messages:
                    if message.direction == "in":
                        await printer.show(client, message)
            return
        while True:
            page = await client.inbox(after=printer.last_seq, limit=INBOX_PAGE, unread=unread)
            for message in page:
                await printer.show(client, message)
            if len(page) < INBOX_PAGE:
                break

    try:
        # Following, or saving files (which may be large), has no deadline.
        run_client(home, show_inbox, bounded=not follow and export_dir is None)
    except KeyboardInterrupt:
        if not follow:
            raise
        return
    if printer.shown == 0 and not as_json:
        click.echo("no messages" + (f" after #{after}" if after else ""), err=True)


# -- status, retry ---------------------------------------------------------------------


@click.command()
@home_option
@json_option
def status(home: Path | None, as_json: bool) -> None:
    """Show tor's health, the contacts, the outbox and the last delivery."""
    report = run_client(home, lambda client: client.status())
    if as_json:
        emit_json(_as_json(report))
        return
    tor = report.tor.state + (f" ({report.tor.detail})" if report.tor.detail else "")
    summary = Table.grid(padding=(0, 2))
    summary.add_row(Text("address"), Text(report.address))
    summary.add_row(Text("tor"), Text(printable(tor)))
    up = sum(1 for c in report.contacts if c.reachable)
    summary.add_row(Text("contacts"), Text(f"{len(report.contacts)}, a session up with {up}"))
    summary.add_row(Text("outbox"), Text(f"{report.outbox_depth} waiting"))
    summary.add_row(Text("last delivery"), Text(format_ms(report.last_delivery_ms)))
    if report.evidence_alarms:
        summary.add_row(
            Text("EVIDENCE LOG"),
            Text(f"{report.evidence_alarms} alarm(s): see 'onionpost log verify'"),
        )
    if report.trust_alarms:
        summary.add_row(
            Text("AGENCY TRUST"),
            Text(f"{report.trust_alarms} alarm(s): an agency's log forked or two lists clash"),
        )
    if report.registrar is not None:
        r = report.registrar
        line = (
            f"{r.address}: every {r.refresh_s:.0f} s, last good round "
            f"{format_ms(r.last_round_ms)} ({r.rounds} since start)"
        )
        if r.last_error:
            line += f", last failed: {r.last_error}"
            if r.last_error == "client-auth-wrong":
                # The registrar's tor no longer lets our key in (trust.md §8.3).
                line += (
                    " (the registrar no longer lets this endpoint in: revoked, "
                    "or its enrolment ended; ask the agency)"
                )
        summary.add_row(Text("registrar"), Text(printable(line)))
    if report.delegation_ends is not None:
        # Our endorsement ends with it, and our contacts then refuse us (trust.md §8.1).
        ended = report.delegation_ends <= time.time()
        summary.add_row(
            Text("DELEGATION"),
            Text(
                f"the agency's delegation {'ended' if ended else 'ends'} "
                f"{format_ms(report.delegation_ends * 1000)}: ask the agency to renew it "
                f"(this endpoint's endorsement {'ended' if ended else 'ends'} with it)"
            ),
        )
    if report.rotation is not None:
        m = report.rotation
        line = f"to {m.address}: {m.told} of {m.contacts} contact(s) told"
        if m.revoked:
            line += f" ({m.revoked} revoked contact(s) not told: nothing is sent to them)"
        summary.add_row(Text("moving"), Text(line))
    console = _console()
    console.print(summary)
    if report.contacts:
        table = Table(
            "contact", "session", "since", "queued", "in its mailbox", "last error", "next try"
        )
        for c in report.contacts:
            retry = "" if c.retry_in is None else f"in {c.retry_in:.0f} s"
            mailbox = "no mailbox" if c.mailbox is None else str(c.deposited)
            error = "; ".join(e for e in (c.refused, c.last_error, c.mailbox_error) if e)
            table.add_row(
                Text(printable(c.name)),
                Text("up" if c.reachable else "-"),
                Text(format_ms(c.since_ms if c.since_ms is not None else c.last_seen_ms)),
                Text(str(c.queued)),
                Text(mailbox),
                Text(printable(error)),
                Text(retry),
            )
        console.print(table)
        for code in sorted({c.last_error for c in report.contacts} & _LAST_ERROR_HINTS.keys()):
            console.print(Text(f"{code}: {_LAST_ERROR_HINTS[code]}"))


# What the bare codes in status's "last error" mean to its user, when the
# cause is on the contact's side (each printed once, under the table).
_LAST_ERROR_HINTS: Final = {
    "refused": "the contact turns our sessions away at the handshake (it removed us, "
    "or holds a revocation of this endpoint)",
    "client-auth-wrong": "the contact's onion service does not let us in (it removed us, "
    "or took this home's move to a new address: send from the new home)",
}


@click.command()
@click.argument("name", required=False)
@home_option
@json_option
def retry(name: str | None, home: Path | None, as_json: bool) -> None:
    """Try delivering to NAME (or every contact) now, without waiting for the backoff."""
    count = run_client(home, lambda client: client.retry(name))
    if as_json:
        emit_json({"contacts": count})
    else:
        click.echo(f"retrying delivery to {count} contact{'s' if count != 1 else ''}")


# -- one message, the outbox, marking read ------------------------------------------------


def _show_time(label: str, ms: int | None) -> None:
    if ms is not None:
        click.echo(f"  {label:<10} {format_ms(ms)}")


@click.command()
@click.argument("message_id", metavar="ID")
@click.option("--contact", "contact_name", help="Whose message, when two contacts used the id.")
@home_option
@json_option
def message(message_id: str, contact_name: str | None, home: Path | None, as_json: bool) -> None:
    """Show one message or file, either direction: its state and history.

    ID is a message id, or a received message's '#' as the inbox shows it
    (#7 or 7).
    """

    async def show(client: Client) -> api.Message:
        found, contact = await resolve_message_id(client, message_id, contact_name)
        return await client.message(found, contact)

    shown = run_client(home, show)
    if as_json:
        emit_json(message_json(shown), first="label")
        return
    click.echo(banner(shown.label))
    arrow = "from" if shown.direction == "in" else "to"
    what = (
        f"file {printable(shown.file.name)} ({_format_size(shown.file.size)})"
        if shown.file is not None
        else "text"
    )
    click.echo(f"{shown.id}  {what} {arrow} '{printable(shown.contact)}'")
    if shown.group is not None:
        click.echo(f"  {'group':<10} '{printable(shown.group)}' ({shown.group_id})")
    if shown.group_send is not None:
        sent = shown.group_send
        total = len(sent.copies)
        click.echo(
            f"  {'members':<10} delivered {sent.delivered}/{total}, read {sent.read}/{total}"
        )
        for copy in sent.copies:
            click.echo(f"    {printable(copy.contact)}  {copy.id}  {copy.state}")
        for name in sent.unreachable:
            click.echo(f"    {printable(name)}  (no contact: nothing sent)")
    reason = _reason(shown.reason)
    click.echo(f"  {'state':<10} {shown.state}{reason}")
    _show_time("created", shown.created_ms)
    _show_time("received" if shown.direction == "in" else "queued", shown.received_ms)
    _show_time("sent", shown.sent_ms)
    _show_time("delivered", shown.delivered_ms)
    _show_time("read", shown.read_ms)
    if shown.body is not None:
        click.echo("  " + printable(shown.body).replace("\n", "\n  "))


@click.command()
@click.option("--contact", "contact_name", help="Only what waits for this contact.")
@home_option
@json_option
def outbox(contact_name: str | None, home: Path | None, as_json: bool) -> None:
    """List what waits to be delivered, per contact, oldest first."""
    waiting = run_client(
        home, lambda client: client.outbox(contact_name, limit=api.MAX_INBOX_LIMIT)
    )
    if as_json:
        for item in waiting:
            emit_json(message_json(item), first="label")
        return
    if not waiting:
        click.echo("nothing waits", err=True)
        return
    table = Table("label", "contact", "id", "what", "state", "since")
    for item in sorted(waiting, key=lambda m: (m.contact, m.received_ms or 0)):
        what = f"file {printable(item.file.name)}" if item.file is not None else "text"
        table.add_row(
            Text(banner(item.label)),
            Text(printable(item.contact)),
            Text(item.id),
            Text(what),
            Text(str(item.state)),
            Text(format_ms(item.received_ms)),
        )
    _console().print(table)
    if len(waiting) == api.MAX_INBOX_LIMIT:
        click.echo(f"(the oldest {api.MAX_INBOX_LIMIT} shown)", err=True)


@click.command()
@click.argument("message_ids", metavar="ID...", nargs=-1, required=True)
@click.option("--contact", "contact_name", help="Whose messages, when two contacts used an id.")
@home_option
@json_option
def read(
    message_ids: tuple[str, ...], contact_name: str | None, home: Path | None, as_json: bool
) -> None:
    """Mark received messages read (their senders get a read receipt).

    Each ID is a message id, or the '#' the inbox shows (#7 or 7).
    """

    async def mark(client: Client) -> int:
        # Ids as given, or the inbox's '#' numbers, each of which names one
        # contact's message: marked per contact.
        by_contact: dict[str | None, list[str]] = {}
        for given in message_ids:
            found, contact = await resolve_message_id(client, given, contact_name)
            by_contact.setdefault(contact, []).append(found)
        marked = 0
        for contact, ids in by_contact.items():
            marked += await client.mark_read(ids, contact)
        return marked

    marked = run_client(home, mark)
    if as_json:
        emit_json({"marked": marked})
    else:
        click.echo(f"marked {marked} read")
