"""``onionpost group``: team channels (groups.md).

A group is shared by its members: each change here (create, add, remove,
leave, rename, promote, demote) is an operation this endpoint signs and
adds to the group's log. ``send --group NAME`` sends each other member a
copy at the log's head, and ``group show NAME`` follows each copy's state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path

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
    run_client,
    table_console,
)
from onionpost.client import Client, Group, GroupSent

__all__ = ["group", "print_group_sent"]


def _members(found: Group) -> str:
    names = []
    for m in found.members:
        # Our contact by the name we gave it (renamed or not); else its card's.
        name = printable(m.contact or m.name) + (" (admin)" if m.admin else "")
        if m.introduced_by is not None:
            # Not a contact: reached as a member only (groups.md §9).
            trust = "verified" if m.verified else "not verified"
            name += f" (introduced by {printable(m.introduced_by)}, {trust})"
        elif m.contact is None and m.reachable is not None:
            name += " (no contact, not introduced)"
        if m.reachable is not None:
            name += " [up]" if m.reachable else " [away]"
        names.append(name)
    return ", ".join(names) or "(no members)"


def _print_group(found: Group) -> None:
    standing = "" if found.member else "  [we are no longer a member: nothing is sent to it]"
    click.echo(f"group '{printable(found.name)}' {found.id}{standing}")
    click.echo(f"  members: {_members(found)}")
    many = "" if found.operations == 1 else "s"
    click.echo(f"  head {found.head} ({found.operations} operation{many})")


def print_group_sent(sent: GroupSent, *, label: str | None = None) -> None:
    """A send to a group, a line per copy: member, copy id, state; led by
    its handling label when known (as a list's send)."""
    lead = "" if label is None else f"[{printable(label or api.UNLABELLED)}] "
    click.echo(
        f"{lead}{sent.kind} {sent.id} to group '{printable(sent.group)}' "
        f"(delivered {sent.delivered}/{len(sent.copies)}, read {sent.read}/{len(sent.copies)}, "
        f"{format_ms(sent.created_ms)})"
    )
    for copy in sent.copies:
        click.echo(f"    {printable(copy.contact)}  {copy.id}  {copy.state}")
    for name in sent.unreachable:
        click.echo(f"    {printable(name)}  (not reachable yet: nothing sent)")


def _change(home: Path | None, as_json: bool, call: Callable[[Client], Awaitable[Group]]) -> None:
    changed = run_client(home, call)
    if as_json:
        emit_json(dataclasses.asdict(changed))
    else:
        _print_group(changed)


@click.group("group")
def group() -> None:
    """Team channels: groups whose members all hold and check one signed log."""


@group.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, help="A contact to add (repeatable).")
@home_option
@json_option
def group_create(name: str, members: tuple[str, ...], home: Path | None, as_json: bool) -> None:
    """Create the group NAME with us as its admin and each --member in it."""
    _change(home, as_json, lambda client: client.group_create(name, members))


@group.command("add")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@home_option
@json_option
def group_add(name: str, members: tuple[str, ...], home: Path | None, as_json: bool) -> None:
    """Add contacts MEMBERS to the group NAME (admins)."""
    _change(home, as_json, lambda client: client.group_add(name, members))


@group.command("remove")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@home_option
@json_option
def group_remove(name: str, members: tuple[str, ...], home: Path | None, as_json: bool) -> None:
    """Remove MEMBERS from the group NAME (admins)."""
    _change(home, as_json, lambda client: client.group_remove(name, members))


@group.command("leave")
@click.argument("name")
@home_option
@json_option
def group_leave(name: str, home: Path | None, as_json: bool) -> None:
    """Leave the group NAME."""
    _change(home, as_json, lambda client: client.group_leave(name))


@group.command("rename")
@click.argument("name")
@click.argument("new_name")
@home_option
@json_option
def group_rename(name: str, new_name: str, home: Path | None, as_json: bool) -> None:
    """Rename the group NAME to NEW_NAME (admins)."""
    _change(home, as_json, lambda client: client.group_rename(name, new_name))


@group.command("promote")
@click.argument("name")
@click.argument("member")
@home_option
@json_option
def group_promote(name: str, member: str, home: Path | None, as_json: bool) -> None:
    """Make MEMBER an admin of the group NAME (admins)."""
    _change(home, as_json, lambda client: client.group_promote(name, member))


@group.command("demote")
@click.argument("name")
@click.argument("member")
@home_option
@json_option
def group_demote(name: str, member: str, home: Path | None, as_json: bool) -> None:
    """Make MEMBER a plain member of the group NAME (admins)."""
    _change(home, as_json, lambda client: client.group_demote(name, member))


@group.command("show")
@click.argument("name")
@home_option
@json_option
def group_show(name: str, home: Path | None, as_json: bool) -> None:
    """Show the group NAME, its members and its latest sends, each copy's state."""
    found = run_client(home, lambda client: client.group_show(name))
    if as_json:
        emit_json(dataclasses.asdict(found))
        return
    _print_group(found)
    for sent in found.sends:
        print_group_sent(sent)


@group.command("list")
@home_option
@json_option
def group_list(home: Path | None, as_json: bool) -> None:
    """List the groups kept here and their members."""
    found = run_client(home, lambda client: client.group_list())
    if as_json:
        emit_json([dataclasses.asdict(f) for f in found])
        return
    if not found:
        click.echo(
            "no groups yet: create one with 'onionpost group create NAME --member ...'", err=True
        )
        return
    table = Table("name", "id", "members", "member")
    table.columns[1].overflow = "fold"  # a group is named by its id: never cut it short
    table.columns[1].min_width = 32
    for f in found:
        table.add_row(
            Text(printable(f.name)),
            Text(f.id),
            Text(_members(f)),
            Text("yes" if f.member else "no (removed or left)"),
        )
    table_console().print(table)
