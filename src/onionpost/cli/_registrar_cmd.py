"""``onionpost registrar``: an agency's registrar (``protocol-spec/trust.md`` §8).

``init`` moves the agency's issuing key and log from its offline directory
(``trust root-init``) into a home made by ``onionpost init``; ``serve`` runs
that home as the registrar in this process (its own tor and onion service,
as ``mailbox serve``); ``code``, ``revoke`` and ``list`` ask the running
registrar through its local API.
"""

from __future__ import annotations

import logging
import signal
import sys
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click
import trio

from onionpost import api
from onionpost.cli._common import (
    EXIT_ENVIRONMENT,
    emit_json,
    fail,
    format_ms,
    home_option,
    json_option,
    printable,
    resolve_home,
    run_client,
    secret_source,
)
from onionpost.cli._mailbox_cmd import _expires
from onionpost.cli._trust_cmd import _key_source, _secret_options
from onionpost.errors import ConfigError, SelfTestError

if TYPE_CHECKING:
    from onionpost.registrar import RegistrarService

__all__ = ["registrar"]

log = logging.getLogger("onionpost.registrar")


@click.group("registrar")
def registrar() -> None:
    """Run an agency's registrar: enrol its endpoints, renew, revoke, publish the list."""


def _registrar_dir(home: Path) -> Path:
    return home / "registrar"


@registrar.command("init")
@click.option(
    "--dir",
    "where",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The agency's directory (trust root-init): its issuing key and log move here.",
)
@home_option
@click.option(
    "--home-key-file",
    type=click.Path(path_type=Path),
    help="This home's key file (not the agency's).",
)
@click.option("--home-passphrase-file", type=click.Path(path_type=Path))
@_secret_options
@json_option
def init(
    *,
    where: Path,
    home: Path | None,
    home_key_file: Path | None,
    home_passphrase_file: Path | None,
    key_file: Path | None,
    passphrase_file: Path | None,
    kdf_cost: str,
    as_json: bool,
) -> None:
    """Make this home (made by 'onionpost init') the agency's registrar: its
    issuing key (sealed under the home's key) and log are copied from DIR,
    which then signs nothing more; the root key stays in DIR."""
    from onionpost.home import AgencyDirectory, Paths
    from onionpost.host import open_home
    from onionpost.proto.trust import HybridSigner
    from onionpost.registrar import init_registrar

    paths = Paths.for_home(resolve_home(home))
    agency = AgencyDirectory(where)
    signer = agency.issuer(_key_source(key_file, passphrase_file, kdf_cost, new=False))
    if not isinstance(signer, HybridSigner):
        raise ConfigError("the registrar holds a sealed issuing key file")
    source = partial(secret_source, home_key_file, home_passphrase_file)
    with open_home(paths, source, what="home", log=log) as (secrets, _):
        book = init_registrar(_registrar_dir(paths.home), agency, signer, secrets.store_key)
        address = str(secrets.identity.address)
    if as_json:
        emit_json({"agency": book.agency, "registrar": address, "log_size": book.log.size})
        return
    click.echo(f"registrar of {printable(book.agency)} at {address}")
    click.echo(
        f"{where} now keeps the root key only: sign with 'onionpost registrar', not there",
        err=True,
    )


@registrar.command("serve")
@home_option
@click.option("--key-file", type=click.Path(path_type=Path), envvar="ONIONPOST_KEY_FILE")
@click.option("--passphrase-file", type=click.Path(path_type=Path))
def serve(home: Path | None, key_file: Path | None, passphrase_file: Path | None) -> None:
    """Run this home as the agency's registrar in the foreground until SIGINT or SIGTERM."""
    from onionpost.home import Paths
    from onionpost.host import check_primitives, open_home
    from onionpost.registrar import RegistrarBook, RegistrarService

    try:
        check_primitives()
    except SelfTestError as exc:
        fail(str(exc), EXIT_ENVIRONMENT)
    paths = Paths.for_home(resolve_home(home))
    source = partial(secret_source, key_file, passphrase_file)
    with open_home(paths, source, what="home", log=log) as (secrets, config):
        book = RegistrarBook.open(_registrar_dir(paths.home), secrets.store_key)
        trio.run(_run, RegistrarService(paths, secrets, config, book))


async def _run(service: RegistrarService) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            address = await nursery.start(service.run)
            print(f"onionpost registrar ready: {address}", file=sys.stderr, flush=True)
            async for signum in signals:
                log.info("event=stopping signal=%s", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


@registrar.command("code")
@click.option(
    "--name", "endpoint", required=True, help="The endpoint's name, e.g. 'Field office 3'."
)
@click.option("--unit", default="", help="Its unit.")
@click.option(
    "--expires",
    metavar="DURATION",
    default="1h",
    callback=_expires,
    show_default=True,
    help="How long the code may be used: seconds, or 90m, 24h, 7d (1 minute to 7 days).",
)
@home_option
@json_option
def code(endpoint: str, unit: str, expires: int, home: Path | None, as_json: bool) -> None:
    """A one-time enrolment code for one endpoint, endorsed as NAME of UNIT."""
    issued = run_client(home, lambda client: client.registrar_code(endpoint, unit, expires))
    if as_json:
        emit_json(api.encode(issued))
        return
    click.echo(issued.code)
    click.echo(issued.qr, nl=False)
    click.echo(
        f"valid until {format_ms(issued.expires_ms)}, for one endpoint: on it run\n"
        "    onionpost trust enrol CODE\n"
        "Anyone who sees the code can enrol in its place until then: hand it over privately.",
        err=True,
    )


@registrar.command("revoke")
@click.argument("address")
@click.option("--reason", default="", help="Why, in at most 64 bytes (it is in the list).")
@home_option
@json_option
def revoke(address: str, reason: str, home: Path | None, as_json: bool) -> None:
    """Revoke ADDRESS: the next list, signed and logged now, fetched by every
    endpoint within one refresh interval."""
    state = run_client(home, lambda client: client.registrar_revoke(address, reason))
    if as_json:
        emit_json(api.encode(state))
        return
    click.echo(f"list {state.serial}: {len(state.revoked)} revoked")


@registrar.command("list")
@home_option
@json_option
def list_(home: Path | None, as_json: bool) -> None:
    """The enrolled endpoints, their endorsements' ends, and the revoked addresses."""
    state = run_client(home, lambda client: client.registrar_list())
    if as_json:
        emit_json(api.encode(state))
        return
    issued = "-" if state.issued_at is None else format_ms(state.issued_at * 1000)
    click.echo(
        f"registrar of {printable(state.agency)} at {state.registrar}\n"
        f"list {state.serial if state.serial is not None else '-'} issued {issued}; "
        f"log of {state.log_size} statements"
    )
    for e in state.endpoints:
        where = f"{e.endpoint}, {e.unit}" if e.unit else e.endpoint
        mark = "revoked" if e.revoked else f"until {format_ms(e.valid_until * 1000)}"
        click.echo(f"  {e.address}  {printable(where)}  {mark}")
    for r in state.revoked:
        click.echo(
            f"  revoked {r.address} at {format_ms(r.revoked_at * 1000)}: {printable(r.reason)}"
        )
    if not state.endpoints:
        click.echo(
            "no endpoint enrolled yet: make a code with 'onionpost registrar code'", err=True
        )
