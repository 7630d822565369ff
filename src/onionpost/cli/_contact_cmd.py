"""``onionpost contact``: add, list, show, remove, rename, verify, and what
each contact is sent (its endorsement required, its highest labels)."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import click
from rich.table import Table
from rich.text import Text

from onionpost import api
from onionpost.cli._common import (
    emit_json,
    format_ms,
    home_option,
    json_option,
    printable,
    read_card_argument,
    run_client,
    table_console,
)
from onionpost.client import (
    Client,
)

__all__ = ["contact"]


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
        emit_json(dataclasses.asdict(added))
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
        emit_json([dataclasses.asdict(c) for c in contacts])
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
    table_console().print(table)


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
        emit_json(dataclasses.asdict(shown))
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
    """Remove a contact; it can no longer reach this endpoint's onion service,
    unless it is a member of a group we are in: it then stays reachable as
    that group's member, for the group's messages alone, and the command says
    which groups ('group remove' takes it out of one).

    What still waits for it is not sent (it stays in the history), and it
    leaves every distribution list: the command says how much, and which.
    """

    async def remove(client: Client) -> tuple[api.ContactRemoved, int]:
        waiting = await client.outbox(name, limit=api.MAX_INBOX_LIMIT)
        return await client.contact_remove(name), len(waiting)

    removed, waiting = run_client(home, remove)
    if as_json:
        emit_json(dataclasses.asdict(removed))
        return
    click.echo(f"removed contact '{printable(removed.name)}' ({removed.address})")
    if waiting:
        more = "+" if waiting == api.MAX_INBOX_LIMIT else ""
        click.echo(
            f"warning: {waiting}{more} message{'s' if waiting != 1 else ''} waiting for "
            f"'{printable(removed.name)}' will not be sent (they are marked expired)",
            err=True,
        )
    if removed.lists:
        taken = ", ".join(f"'{printable(n)}'" for n in removed.lists)
        click.echo(f"taken off the list(s) {taken}", err=True)
    if removed.groups:
        shared = ", ".join(f"'{printable(g)}'" for g in removed.groups)
        click.echo(
            f"warning: '{printable(removed.name)}' is still a member of {shared} with you: it "
            "can still reach this endpoint for those groups' messages ('group remove' takes "
            "it out of one); a text it sends you directly is not taken",
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
        emit_json(dataclasses.asdict(renamed))
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
        emit_json(dataclasses.asdict(number))
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
@json_option
def contact_require_endorsement(
    name: str, required: bool | None, default: bool, home: Path | None, as_json: bool
) -> None:
    """Require an agency endorsement of one contact, or not, apart from the
    require_endorsement of config.toml."""
    if (required is None) == (not default):
        raise click.UsageError("give one of --on, --off, --default")
    done = run_client(home, lambda client: client.contact_require_endorsement(name, required))
    if as_json:
        emit_json({**dataclasses.asdict(done), "require_endorsement": required})
        return
    said = {True: "required", False: "not required", None: "as config.toml says"}[required]
    click.echo(f"an endorsement of '{printable(done.name)}': {said}")


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
