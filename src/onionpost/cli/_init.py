"""``onionpost init`` and ``onionpost whoami``: the home itself, no daemon needed."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Final

import click

from onionpost.api import EndorsementDetail
from onionpost.cli._common import (
    EXIT_ENVIRONMENT,
    emit_json,
    fail,
    format_ms,
    home_option,
    json_option,
    printable,
    read_passphrase_file,
    resolve_home,
    run_client,
    stdin_is_a_terminal,
)
from onionpost.errors import ConfigError, DaemonNotRunningError, TransportError
from onionpost.home import ContactCard, KdfCost, Paths, init_home, read_card_file

__all__ = ["init", "whoami"]

PASSPHRASE_ENV: Final = "ONIONPOST_PASSPHRASE"  # noqa: S105 - a variable's name


def new_passphrase(passphrase_file: Path | None) -> str:
    """From --passphrase-file, else $ONIONPOST_PASSPHRASE, else asked twice on a terminal."""
    if passphrase_file is not None:
        return read_passphrase_file(passphrase_file)
    from_env = os.environ.get(PASSPHRASE_ENV)
    if from_env is not None:
        return from_env
    if not stdin_is_a_terminal():
        raise ConfigError(f"no passphrase: use --key-file, --passphrase-file or ${PASSPHRASE_ENV}")
    passphrase: str = click.prompt(
        "passphrase for the new endpoint", hide_input=True, confirmation_prompt=True
    )
    return passphrase


@click.command()
@home_option
@click.option("--name", required=True, help="Your display name, as contacts will see it.")
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Seal the secrets with this 32-byte key file (created if missing), not a passphrase.",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Read the passphrase from this file's first line (else ${PASSPHRASE_ENV}, else asked).",
)
@click.option(
    "--weak-passphrase-ok",
    is_flag=True,
    help="Accept a passphrase the strength estimate calls weak (it is refused otherwise).",
)
@click.option(
    "--kdf-cost",
    type=click.Choice([cost.name.lower() for cost in KdfCost]),
    default=KdfCost.MODERATE.name.lower(),
    hidden=True,
    help="For tests only: 'floor' seals a passphrase with the least Argon2id cost "
    "unlocking accepts (storage.md §2), to keep test suites fast.",
)
@json_option
def init(
    *,
    home: Path | None,
    name: str,
    key_file: Path | None,
    passphrase_file: Path | None,
    weak_passphrase_ok: bool,
    kdf_cost: str,
    as_json: bool,
) -> None:
    """Create a new endpoint: keys, sealed secrets, and the contact card to share.

    Prints the contact card; give it to your contacts (it is public), and add
    theirs with 'onionpost contact add'.
    """
    if key_file is not None and passphrase_file is not None:
        raise click.UsageError("give --key-file or --passphrase-file, not both")
    paths = Paths.for_home(resolve_home(home))
    # A home the daemon could never run in is refused before anything is made.
    from onionpost.cli._daemon_cmd import check_home_sockets

    check_home_sockets(paths)
    passphrase = None if key_file is not None else new_passphrase(passphrase_file)
    if passphrase is not None and not weak_passphrase_ok:
        # Whoever copies the disk guesses offline (storage.md §2). Imported
        # here: zxcvbn loads its word lists, which no other command needs.
        from onionpost.home import passphrase_problem

        problem = passphrase_problem(passphrase, user_inputs=[name, "onionpost"])
        if problem is not None:
            raise ConfigError(
                f"{problem} (choose a longer one, e.g. several uncommon words, "
                "or pass --weak-passphrase-ok)"
            )
    secrets = init_home(
        paths,
        display_name=name,
        passphrase=passphrase,
        key_file=key_file,
        now=int(time.time()),
        kdf_cost=KdfCost[kdf_cost.upper()],
    )
    card = ContactCard.issue(secrets)
    if as_json:
        emit_json(
            {
                "home": str(paths.home),
                "name": card.name,
                "address": str(card.address),
                "card": card.to_line(),
            }
        )
        return
    click.echo(f"created the endpoint '{printable(card.name)}' in {paths.home}", err=True)
    click.echo(f"address: {card.address}", err=True)
    click.echo("your contact card (public; give it to your contacts):", err=True)
    click.echo(card.to_line())


@click.command()
@click.option(
    "--bundle",
    is_flag=True,
    help="Print the card bundle instead: the card and this endpoint's endorsement "
    "(asks the daemon), for 'contact add FILE'.",
)
@home_option
@json_option
def whoami(bundle: bool, home: Path | None, as_json: bool) -> None:
    """Show this endpoint's name, onion address and contact card (no daemon needed).

    The card names the paired mailbox: the daemon rewrites the card file
    whenever its mailbox changes. With --bundle, the card and, on the next
    line, the endorsement of our agency (trust.md §7.5), to hand over as a
    file."""
    if bundle:
        me = run_client(home, lambda client: client.whoami())
        if as_json:
            emit_json({"card": me.card, "endorsement": me.endorsement})
            return
        click.echo(me.card)
        if me.endorsement:
            click.echo(me.endorsement)
        else:
            click.echo("no endorsement installed: the bundle is the card alone", err=True)
        return
    paths = Paths.for_home(resolve_home(home))
    if not paths.card.exists():
        fail(f"no endpoint in {paths.home}: run 'onionpost init' first", EXIT_ENVIRONMENT)
    card = read_card_file(paths.card)
    if as_json:
        emit_json({"name": card.name, "address": str(card.address), "card": card.to_line()})
        return
    click.echo(f"name:    {printable(card.name)}")
    click.echo(f"address: {card.address}")
    click.echo(f"card:    {card.to_line()}")
    # Our endorsement (trust.md §7.1) is in the store: the daemon says it.
    try:
        endorsed = run_client(home, lambda client: client.whoami()).endorsed
    except DaemonNotRunningError:
        click.echo("endorsement: not shown (the daemon is not running)", err=True)
        return
    except TransportError:
        click.echo("endorsement: not shown (the daemon did not answer)", err=True)
        return
    if endorsed is not None:
        click.echo(f"endorsement: {own_endorsement(endorsed)}")


def own_endorsement(e: EndorsementDetail) -> str:
    """Our endorsement in one line, worded as ``contact list`` words a
    contact's: the agency, the endpoint it names and until when, after its
    status when that is not plainly endorsed (``whoami``)."""
    if e.status not in {"endorsed", "unverified-stale"} or not e.endpoint:
        return printable(e.describe)  # refused (revoked: when, why), or no anchor
    where = f"{e.endpoint}, {e.unit}" if e.unit else e.endpoint
    until = e.until if e.until is not None else e.valid_until
    end = "" if until is None else f" until {format_ms(until * 1000)}"
    # Worded as ``contact list`` words a contact's: "endorsed by acme (...)".
    said = f"endorsed by {e.agency} ({where}){end}"
    if e.status != "endorsed":
        said = e.status + (f" ({e.reason})" if e.reason else "") + ": " + said
    return printable(said)
