"""``onionpost mailbox``: run a mailbox, make its setup codes, pair with one, see, wipe.

``serve`` runs a home as a mailbox in this process (as ``onionpost daemon``
runs an endpoint); ``code`` asks the running mailbox for a setup code;
``pair`` asks the running endpoint daemon to pair with the mailbox of a code;
``status`` and ``wipe`` ask whichever of the two runs on the home. All but
``serve`` only call the local API (:mod:`onionpost.client`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import trio
from rich.table import Table
from rich.text import Text

from onionpost import api
from onionpost.cli._common import (
    emit_json,
    expires_option,
    format_ms,
    home_option,
    json_option,
    print_code,
    printable,
    resolve_home,
    run_client,
    run_until_signal,
    serve_options,
    served_home,
    table_console,
)
from onionpost.errors import ConfigError
from onionpost.home import Paths

__all__ = ["mailbox"]

log = logging.getLogger("onionpost.mailbox")


@click.group("mailbox")
def mailbox() -> None:
    """Run a mailbox for offline delivery, or pair this endpoint with one."""


# -- serve ----------------------------------------------------------------------------------


@mailbox.command("serve")
@serve_options
def serve(home: Path | None, key_file: Path | None, passphrase_file: Path | None) -> None:
    """Run this home as a mailbox in the foreground until SIGINT or SIGTERM.

    The home is one made by 'onionpost init'. Its owners' envelopes are kept
    in mailbox.db; the home never runs 'onionpost daemon' at the same time.
    """
    from onionpost.mailbox import MailboxService
    from onionpost.store import MailboxStore

    endpoint = Paths.for_home(resolve_home(home))
    if endpoint.store.exists():
        raise ConfigError(
            f"{endpoint.home} is an endpoint's home (it holds {endpoint.store.name}): a "
            "mailbox runs in a home of its own ('onionpost init --home DIR', then "
            "'onionpost mailbox serve --home DIR')"
        )
    with served_home(home, key_file, passphrase_file, log=log) as (paths, secrets, config):
        store = MailboxStore.open(paths.mailbox_store, secrets.store_key)
        try:
            service = MailboxService(paths, secrets, config, store)
            trio.run(run_until_signal, service.run, "mailbox", log)
        finally:
            store.close()


# -- code, pair -----------------------------------------------------------------------------


@mailbox.command("code")
@expires_option("24h")
@home_option
@json_option
def code(expires: int, home: Path | None, as_json: bool) -> None:
    """Make a one-time setup code on the running mailbox, for one owner to pair with."""
    issued = run_client(home, lambda client: client.mailbox_code(expires))
    if as_json:
        emit_json(api.encode(issued))
        return
    print_code(
        issued,
        holder="one owner: on its endpoint run",
        command="onionpost mailbox pair CODE",
        verb="pair",
    )


@mailbox.command("pair")
@click.argument("setup_code", metavar="CODE")
@home_option
@json_option
def pair(setup_code: str, home: Path | None, as_json: bool) -> None:
    """Pair this endpoint with the mailbox whose setup CODE its operator gave you."""
    paired = run_client(home, lambda client: client.mailbox_pair(setup_code))
    if as_json:
        emit_json(api.encode(paired))
        return
    click.echo(f"paired with the mailbox {paired.mailbox}")
    click.echo(
        "contacts learn of it at their next session; 'onionpost mailbox status' shows it",
        err=True,
    )


# -- status, wipe ---------------------------------------------------------------------------


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def _show_owner_role(report: api.MailboxStatus) -> None:
    grid = Table.grid(padding=(0, 2))
    if report.mailbox is None:
        grid.add_row(Text("mailbox"), Text("none: pair one with 'onionpost mailbox pair CODE'"))
    else:
        grid.add_row(Text("mailbox"), Text(report.mailbox))
        grid.add_row(Text("paired"), Text("yes" if report.paired else "not yet"))
        grid.add_row(Text("reachable"), Text("yes" if report.reachable else "no"))
        grid.add_row(Text("last drained"), Text(format_ms(report.last_drained_ms)))
        waiting = "-" if report.waiting is None else str(report.waiting)
        grid.add_row(Text("waiting"), Text(f"{waiting} envelopes ({_size(report.waiting_bytes)})"))
        prekeys = "-" if report.one_time_prekeys is None else str(report.one_time_prekeys)
        grid.add_row(Text("one-time prekeys"), Text(prekeys))
        for held in report.unused_prekeys:
            grid.add_row(Text("taken, unused"), Text(f"{held.unused} by {held.contact}"))
    if report.last_error:
        grid.add_row(Text("last error"), Text(printable(report.last_error)))
    table_console().print(grid)


def _show_mailbox_role(report: api.MailboxStatus) -> None:
    console = table_console()
    grid = Table.grid(padding=(0, 2))
    grid.add_row(Text("mailbox"), Text(report.mailbox or "-"))
    grid.add_row(Text("published"), Text("yes" if report.reachable else "no"))
    if report.last_error:
        grid.add_row(Text("tor"), Text(printable(report.last_error)))
    grid.add_row(Text("owners"), Text(str(len(report.owners))))
    console.print(grid)
    if not report.owners:
        click.echo("no owner yet: make a code with 'onionpost mailbox code'", err=True)
        return
    table = Table("owner", "contacts", "envelopes", "held", "prekeys", "drained", "deposit")
    table.columns[0].overflow = "fold"  # an address is an identity: never cut it short
    table.columns[0].min_width = 62
    for owner in report.owners:
        table.add_row(
            Text(owner.owner),
            Text(str(owner.contacts)),
            Text(str(owner.envelopes)),
            Text(_size(owner.bytes)),
            Text(str(owner.one_time_prekeys)),
            Text(format_ms(owner.last_drained_ms)),
            Text(format_ms(owner.last_deposit_ms)),
        )
    console.print(table)


@mailbox.command("status")
@home_option
@json_option
def status(home: Path | None, as_json: bool) -> None:
    """On an endpoint, its mailbox as last seen; on a mailbox, what it holds per owner."""
    report = run_client(home, lambda client: client.mailbox_status())
    if as_json:
        emit_json(api.encode(report))
        return
    if report.role == "mailbox":
        _show_mailbox_role(report)
    else:
        _show_owner_role(report)
    if report.warning:
        click.echo(f"warning: {printable(report.warning)}", err=True)


@mailbox.command("wipe")
@click.option(
    "--owner",
    metavar="ADDRESS",
    help="On a mailbox: only this owner's space (default: every owner's).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@home_option
@json_option
def wipe(owner: str | None, yes: bool, home: Path | None, as_json: bool) -> None:
    """Delete what a mailbox holds: on an endpoint, its own space there (and unpair);
    on a mailbox, one owner's space or every owner's."""
    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("wiping deletes envelopes for good: confirm with --yes")
        what = f"the space of {owner}" if owner else "everything the mailbox holds for this home"
        click.confirm(f"delete {what}? envelopes not yet drained are lost", abort=True)
    wiped = run_client(home, lambda client: client.mailbox_wipe(owner))
    if as_json:
        emit_json(api.encode(wiped))
        return
    owners = f" of {wiped.owners} owner{'s' if wiped.owners != 1 else ''}"
    click.echo(f"wiped {wiped.envelopes} envelope{'s' if wiped.envelopes != 1 else ''}{owners}")
