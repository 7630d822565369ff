"""The commands that read what the daemon holds: inbox, message, outbox, read,
status, retry; and how messages and labels are shown (``contact`` and
``send`` are in modules of their own).

Each one is a thin layer over :mod:`onionpost.client`: it connects through
:func:`~onionpost.cli._common.run_client`, makes its calls, and prints either
for people (rich tables and progress, text escaped for the terminal) or, with
``--json``, plain JSON (one object, or one per line for streams).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import aclosing
from pathlib import Path
from typing import Any, Final

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from onionpost import api
from onionpost.cli._common import (
    emit_json,
    format_ms,
    home_option,
    json_lines_option,
    json_option,
    printable,
    resolve_message_id,
    run_client,
    table_console,
)
from onionpost.client import (
    Client,
    Message,
    Queued,
)
from onionpost.errors import (
    ConfigError,
)
from onionpost.names import numbered_file_name, safe_file_name

__all__ = [
    "banner",
    "inbox",
    "message",
    "message_json",
    "outbox",
    "queued_banner",
    "read",
    "refusal_reason",
    "retry",
    "status",
]

# Messages asked for per inbox request while paging.
INBOX_PAGE: Final = 100


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


def refusal_reason(code: int | None) -> str:
    """A refused message's reason as shown: the contact's code, or ours."""
    if code is None:
        return ""
    if code == api.REASON_MOVED:
        return f" (reason {code}: this home moved; send it again from the new home)"
    return f" (reason {code})"


def queued_banner(queued: Queued) -> str:
    """The label a send was queued under, as the line's first word (a daemon
    without labels answers none: nothing then)."""
    return f"{banner(queued.label)} " if queued.label else ""


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
@json_lines_option
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
            if c.dialing_for is not None and not c.reachable:
                retry = f"dialing ({c.dialing_for:.0f} s)"
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
        click.echo(
            f"woke the delivery to {count} contact{'s' if count != 1 else ''}: what waits "
            "goes now, without waiting out a backoff"
        )


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
    reason = refusal_reason(shown.reason)
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
@json_lines_option
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
