"""``onionpost list``: local distribution lists of contacts.

A list is this endpoint's own (local-api.md §6, distribution lists): ``send
--list NAME`` sends each member a copy of its own, one to one, and each
copy's state is shown by ``list show NAME`` (or ``message ID``).
"""

from __future__ import annotations

import dataclasses
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
from onionpost.client import DistributionList, ListSent

__all__ = ["distribution_list", "print_sent"]


def _members(members: tuple[str, ...]) -> str:
    return ", ".join(printable(m) for m in members) or "(no members)"


def _print_list(found: DistributionList, verb: str) -> None:
    click.echo(f"{verb} '{printable(found.name)}': {_members(found.members)}")


def print_sent(sent: ListSent, *, label: str | None = None) -> None:
    """A send to a list, a line per copy: member, copy id, state; led by
    its handling label when known."""
    # As _commands.banner (which imports this module).
    lead = "" if label is None else f"[{printable(label or api.UNLABELLED)}] "
    click.echo(
        f"{lead}{sent.kind} {sent.id} to list '{printable(sent.list)}' "
        f"({len(sent.copies)} {'copy' if len(sent.copies) == 1 else 'copies'}, "
        f"{format_ms(sent.created_ms)})"
    )
    for copy in sent.copies:
        click.echo(f"    {printable(copy.contact)}  {copy.id}  {copy.state}")


@click.group("list")
def distribution_list() -> None:
    """Distribution lists: send one text or file to several contacts, a copy each."""


@distribution_list.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, help="A contact on the list (repeatable).")
@home_option
@json_option
def list_create(name: str, members: tuple[str, ...], home: Path | None, as_json: bool) -> None:
    """Create the list NAME, with each --member on it."""
    made = run_client(home, lambda client: client.list_create(name, members))
    if as_json:
        emit_json(dataclasses.asdict(made))
    else:
        _print_list(made, "created list")


@distribution_list.command("add")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@home_option
@json_option
def list_add(name: str, members: tuple[str, ...], home: Path | None, as_json: bool) -> None:
    """Add contacts MEMBERS to the list NAME."""
    changed = run_client(home, lambda client: client.list_add(name, members))
    if as_json:
        emit_json(dataclasses.asdict(changed))
    else:
        _print_list(changed, "list")


@distribution_list.command("remove")
@click.argument("name")
@click.argument("members", nargs=-1, required=True)
@home_option
@json_option
def list_remove(name: str, members: tuple[str, ...], home: Path | None, as_json: bool) -> None:
    """Take contacts MEMBERS off the list NAME."""
    changed = run_client(home, lambda client: client.list_remove(name, members))
    if as_json:
        emit_json(dataclasses.asdict(changed))
    else:
        _print_list(changed, "list")


@distribution_list.command("delete")
@click.argument("name")
@home_option
@json_option
def list_delete(name: str, home: Path | None, as_json: bool) -> None:
    """Delete the list NAME (the messages sent to it stay)."""
    deleted = run_client(home, lambda client: client.list_delete(name))
    if as_json:
        emit_json(dataclasses.asdict(deleted))
    else:
        click.echo(f"deleted list '{printable(deleted.name)}'")


@distribution_list.command("show")
@click.argument("name")
@home_option
@json_option
def list_show(name: str, home: Path | None, as_json: bool) -> None:
    """Show the list NAME, its members and its latest sends, each copy's state."""
    found = run_client(home, lambda client: client.list_show(name))
    if as_json:
        emit_json(dataclasses.asdict(found))
        return
    _print_list(found, "list")
    for sent in found.sends:
        print_sent(sent)


@distribution_list.command("list")
@home_option
@json_option
def list_list(home: Path | None, as_json: bool) -> None:
    """List the distribution lists and their members."""
    found = run_client(home, lambda client: client.list_list())
    if as_json:
        emit_json([dataclasses.asdict(f) for f in found])
        return
    if not found:
        click.echo(
            "no lists yet: create one with 'onionpost list create NAME --member ...'", err=True
        )
        return
    table = Table("name", "members", "created")
    for f in found:
        table.add_row(
            Text(printable(f.name)), Text(_members(f.members)), Text(format_ms(f.created_ms))
        )
    table_console().print(table)
