"""``onionpost send``: a text or a file to a contact, a list or a group,
queued at once or followed (``--wait``, a file's progress bar) until delivered."""

from __future__ import annotations

import dataclasses
import shlex
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager, suppress
from functools import partial
from pathlib import Path
from typing import Final, TypeVar

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

from onionpost import api
from onionpost.cli._commands import queued_banner, refusal_reason
from onionpost.cli._common import (
    ANSWER_DEADLINE,
    EXIT_FAILED,
    check_label,
    emit_json,
    enter_with_deadline,
    fail,
    home_option,
    json_option,
    printable,
    run_client,
)
from onionpost.cli._groups_cmd import print_group_sent
from onionpost.cli._lists_cmd import print_sent
from onionpost.client import (
    Client,
    GroupSent,
    ListSent,
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

__all__ = ["send"]

# send --wait: seconds without delivery before it says what it waits for.
WAIT_HINT_SECONDS: Final = 5.0


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

    --wait follows one message: with --list or --group it is refused, and
    'list show' or 'group show' follows the copies.
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
            emit_json(dataclasses.asdict(group_sent))
        else:
            print_group_sent(group_sent, label=group_label)
        return
    if to_list:
        sent, shown = run_client(
            home, partial(_send_to_list, name, body, file_path, label), bounded=False
        )
        if as_json:
            emit_json(dataclasses.asdict(sent))
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
            emit_json(dataclasses.asdict(queued), first="label")
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
        reason = refusal_reason(final.reason)
        what = "file" if file_path is not None else "message"
        fail(f"the {what} was not delivered: {final.state}{reason}", EXIT_FAILED)


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
                emit_json(dataclasses.asdict(queued), first="label")
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
                emit_json(dataclasses.asdict(change))
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
