"""``onionpost registrar``: an agency's registrar (``protocol-spec/trust.md`` §8).

``init`` moves the agency's issuing key and log from its offline directory
(``trust root-init``) into a home made by ``onionpost init``; ``serve`` runs
that home as the registrar in this process (its own tor and onion service,
as ``mailbox serve``); ``code``, ``revoke``, ``list`` and ``export-list`` ask the
running registrar through its local API; ``delegation`` hands it the root's
new delegation (``trust delegate``), or stores it in the home when the
registrar is not running.
"""

from __future__ import annotations

import base64
import logging
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click
import trio

from onionpost import api
from onionpost._files import read_small_file
from onionpost.cli._common import (
    emit_json,
    expires_option,
    fail,
    format_ms,
    home_option,
    json_option,
    print_code,
    printable,
    resolve_home,
    run_client,
    run_until_signal,
    secret_source,
    serve_options,
    served_home,
)
from onionpost.cli._trust_cmd import (
    AGENCY_PASSPHRASE_ENV,
    PASSPHRASE_ENV,
    _key_source,
    _secret_options,
    home_passphrase_for_agency,
)
from onionpost.errors import ConfigError, DaemonNotRunningError, UnlockError

if TYPE_CHECKING:
    from onionpost.home import AgencyDirectory

__all__ = ["registrar"]

log = logging.getLogger("onionpost.registrar")


@click.group("registrar")
def registrar() -> None:
    """Run an agency's registrar: enrol its endpoints, renew, revoke, publish the list."""


# ``--home`` here is the registrar's home, not an endpoint's.
_home_option = partial(home_option, whose="registrar's")
_serve_options = partial(serve_options, whose="registrar's")


@registrar.command("init")
@click.option(
    "--dir",
    "where",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The agency's directory (trust root-init): its issuing key and log move here.",
)
@_home_option
@click.option(
    "--home-key-file",
    type=click.Path(path_type=Path),
    help="This home's key file (not the agency's).",
)
@click.option(
    "--home-passphrase-file",
    type=click.Path(path_type=Path),
    help=f"This home's passphrase, this file's first line (else ${PASSPHRASE_ENV}, else asked).",
)
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
    which then signs nothing more; the root key stays in DIR.

    Two secrets are opened. The home's: --home-key-file, else
    --home-passphrase-file, else $ONIONPOST_PASSPHRASE, else asked. The
    agency's keys' in DIR: --key-file, else --passphrase-file, else
    $ONIONPOST_AGENCY_PASSPHRASE, else $ONIONPOST_PASSPHRASE (the same
    passphrase for both), else asked."""
    from onionpost.home import AgencyDirectory, Paths
    from onionpost.host import open_home
    from onionpost.proto.trust import HybridSigner
    from onionpost.registrar import init_registrar

    paths = Paths.for_home(resolve_home(home))
    agency = AgencyDirectory(where)
    ending = _check_copied_delegation(agency, where, now=int(time.time()))
    try:
        signer = agency.issuer(
            _key_source(
                key_file, passphrase_file, kdf_cost, new=False, whose=f"the agency in {where}"
            )
        )
    except UnlockError as exc:
        if home_passphrase_for_agency(key_file, passphrase_file):
            raise UnlockError(
                f"{exc}; tried with ${PASSPHRASE_ENV}: give the agency keys' own passphrase "
                f"in ${AGENCY_PASSPHRASE_ENV} or --passphrase-file"
            ) from exc
        raise
    if not isinstance(signer, HybridSigner):
        raise ConfigError("the registrar holds a sealed issuing key file")
    source = partial(
        secret_source,
        home_key_file,
        home_passphrase_file,
        whose="this home",
        options="--home-key-file, --home-passphrase-file",
    )
    with open_home(paths, source, what="home", log=log) as (secrets, _):
        book = init_registrar(paths.registrar, agency, signer, secrets.store_key)
        address = str(secrets.identity.address)
    if ending is not None:
        click.echo(ending, err=True)
    if as_json:
        emit_json({"agency": book.agency, "registrar": address, "log_size": book.log.size})
        return
    click.echo(f"registrar of {printable(book.agency)} at {address}")
    click.echo(
        f"{where} now keeps the root key only: sign with 'onionpost registrar', not there",
        err=True,
    )


def _check_copied_delegation(agency: AgencyDirectory, where: Path, *, now: int) -> str | None:
    """The delegation ``registrar init`` would copy from ``where``: an ended one
    is refused before anything is opened or written (the registrar could sign
    nothing an endpoint takes); one ending within DELEGATION_WARNING is the
    warning returned, to say once the registrar is made."""
    from onionpost.proto.registrar import DelegationNotice, delegation_notice

    if not (where / "anchor.txt").is_file():
        raise ConfigError(f"{where} is not an agency directory ('onionpost trust root-init')")
    held = agency.held_delegation()
    notice = delegation_notice(held.not_after, now)
    when = format_ms(held.not_after * 1000)
    if notice is DelegationNotice.ENDED:
        raise ConfigError(
            f"the agency's delegation in {where} ended {when}: a registrar made from it could "
            f"sign nothing; run 'onionpost trust delegate --dir {where} --out FILE' first "
            "(logged there at once), then 'registrar init' again"
        )
    if notice is DelegationNotice.ENDING:
        days = (held.not_after - now) // 86_400
        return (
            f"warning: the agency's delegation ends {when} (in {_count(days, 'day', 'days')}): "
            "renew it soon with 'onionpost trust delegate' on the agency directory, then "
            "'onionpost registrar delegation FILE'"
        )
    return None


@registrar.command("serve")
@_serve_options
def serve(home: Path | None, key_file: Path | None, passphrase_file: Path | None) -> None:
    """Run this home as the agency's registrar in the foreground until SIGINT or SIGTERM."""
    from onionpost.registrar import RegistrarBook, RegistrarService

    with served_home(home, key_file, passphrase_file, log=log) as (paths, secrets, config):
        book = RegistrarBook.open(paths.registrar, secrets.store_key)
        service = RegistrarService(paths, secrets, config, book)
        trio.run(run_until_signal, service.run, "registrar", log)


@registrar.command("code")
@click.option(
    "--name",
    "endpoint",
    default="",
    help="The endpoint's name, e.g. 'Field office 3' (with --replaces: the old one's by default).",
)
@click.option("--unit", default="", help="Its unit.")
@click.option(
    "--replaces",
    "replaces",
    default="",
    metavar="OLD_ADDRESS",
    help="Move the endpoint enrolled at OLD_ADDRESS: the home that enrols with this code "
    "is endorsed as replacing it (trust.md §6), for 'trust rotate' on the old home.",
)
@click.option(
    "--from-revoked",
    is_flag=True,
    help="With --replaces: OLD_ADDRESS is revoked, move away from it all the same.",
)
@expires_option("1h")
@_home_option
@json_option
def code(  # noqa: PLR0917 - click's options
    endpoint: str,
    unit: str,
    replaces: str,
    from_revoked: bool,
    expires: int,
    home: Path | None,
    as_json: bool,
) -> None:
    """A one-time enrolment code for one endpoint, endorsed as NAME of UNIT.

    With --replaces OLD_ADDRESS the code moves an endpoint to a new home: run
    'onionpost trust enrol CODE' on the new home, then on the old one
    'onionpost trust rotate BUNDLE', BUNDLE the new home's 'whoami --bundle'."""
    if not endpoint and not replaces:
        raise click.UsageError("give the endpoint's --name (or --replaces OLD_ADDRESS)")
    if from_revoked and not replaces:
        raise click.UsageError("--from-revoked goes with --replaces")
    issued = run_client(
        home,
        lambda client: client.registrar_code(
            endpoint, unit, expires, replaces=replaces, from_revoked=from_revoked
        ),
    )
    if as_json:
        emit_json(api.encode(issued))
        return
    if issued.replaces:
        where = f"{issued.endpoint}, {issued.unit}" if issued.unit else issued.endpoint
        click.echo(
            f"moves {printable(where)} from {issued.replaces}: after the enrolment, on the "
            "old home run 'onionpost trust rotate BUNDLE' with the new home's "
            "'onionpost whoami --bundle'",
            err=True,
        )
    print_code(
        issued,
        holder="one endpoint: on it run",
        command="onionpost trust enrol CODE",
        verb="enrol",
    )


@registrar.command("revoke")
@click.argument("address")
@click.option("--reason", default="", help="Why, in at most 64 bytes (it is in the list).")
@click.option(
    "--force",
    is_flag=True,
    help="Revoke ADDRESS though this registrar never enrolled it: one the agency "
    "endorsed offline ('trust endorse') or before its registrar.",
)
@_home_option
@json_option
def revoke(address: str, reason: str, force: bool, home: Path | None, as_json: bool) -> None:
    """Revoke ADDRESS: the next list, signed and logged now, fetched by every
    endpoint within one refresh interval. An address this registrar never
    enrolled is refused (a mistyped one would be revoked, and the one meant
    not) unless --force."""
    state = run_client(home, lambda client: client.registrar_revoke(address, reason, force=force))
    if as_json:
        emit_json(api.encode(state))
        return
    click.echo(
        f"revoked {address} ({printable(reason)}): list {state.serial} signed and logged, "
        f"{len(state.revoked)} address(es) in it"
    )
    click.echo(
        "its contacts refuse it once they hold this list: the agency's endpoints at their "
        "next fetch (their trust_refresh), a partner's through its contacts' sessions or "
        "'registrar export-list'",
        err=True,
    )


@registrar.command("export-list")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The file to write (it must not exist).",
)
@_home_option
@json_option
def export_list(out: Path, home: Path | None, as_json: bool) -> None:
    """Write the agency's latest revocation list to OUT, for endpoints this
    registrar does not serve (a partner agency's, holding the anchor): they
    run 'trust revocations import OUT'. A list is fresh for a limited time
    (trust.md §5): export and hand it over again as often as they need it."""
    if out.exists():
        fail(f"{out} exists already")
    done = run_client(home, lambda client: client.registrar_export_list())
    bundle = base64.b64decode(done.bundle, validate=True)
    try:
        with out.open("xb") as handle:
            handle.write(bundle)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from exc
    if as_json:
        emit_json(
            {
                "agency": done.agency,
                "serial": done.serial,
                "issued_at": done.issued_at,
                "revoked": done.revoked,
                "out": str(out),
            }
        )
        return
    click.echo(
        f"list {done.serial} of {printable(done.agency)} "
        f"(issued {format_ms(done.issued_at * 1000)}, {done.revoked} revoked); {out}"
    )


# A delegation is one signed note (trust.md §2).
_MAX_DELEGATION_FILE = 1 << 16


@registrar.command("delegation")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@_serve_options
@json_option
def delegation(
    file: Path,
    home: Path | None,
    key_file: Path | None,
    passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Take FILE, the root's new delegation of this registrar's issuing key
    ('onionpost trust delegate' on the agency directory, offline).

    It is checked first (signed by the root of the anchor held, for this
    issuing key and agency, valid now, ending after the one held); then
    logged, and every endorsement, renewal and list carries it from then on.
    A running registrar takes it at once, keeping its endpoints, codes and
    log; a stopped one is opened (--key-file, --passphrase-file: the home's,
    used only then) and it is stored for the next 'registrar serve'."""
    data = read_small_file(file, _MAX_DELEGATION_FILE, what="delegation")
    running = True
    try:
        state = run_client(home, lambda client: client.registrar_delegation(data))
    except DaemonNotRunningError:
        running = False
        state = _store_delegation(home, key_file, passphrase_file, data)
    assert state.delegation_until is not None
    if as_json:
        emit_json(
            {
                "agency": state.agency,
                "delegation_until": state.delegation_until,
                "log_size": state.log_size,
                "running": running,
            }
        )
        return
    how = "taken" if running else "stored (the registrar was not running)"
    click.echo(
        f"delegation of {printable(state.agency)} until "
        f"{format_ms(state.delegation_until * 1000)} {how}; log of "
        f"{_count(state.log_size, 'statement', 'statements')}"
    )


def _store_delegation(
    home: Path | None, key_file: Path | None, passphrase_file: Path | None, data: bytes
) -> api.RegistrarState:
    """A stopped registrar takes a delegation: its home opened, its lock held
    (so that no 'registrar serve' starts meanwhile)."""
    from onionpost.registrar import RegistrarBook, RegistrarPolicy, registrar_state

    with served_home(home, key_file, passphrase_file, log=log) as (paths, secrets, config):
        book = RegistrarBook.open(paths.registrar, secrets.store_key)
        book.install_delegation(data, now=int(time.time()))
        refresh = RegistrarPolicy.from_config(config).refresh
        return registrar_state(book, secrets.identity.address, refresh=refresh)


@registrar.command("status")
@_home_option
@json_option
def status(home: Path | None, as_json: bool) -> None:
    """The registrar in four lines, however many endpoints it enrolled (five
    when its delegation ends within two weeks, or has ended).

    How many endpoints are enrolled and revoked, how many addresses the list
    names, its serial, when it was signed and when the next is due, the
    log's size; then when the delegation ends, if soon. Each endpoint and
    each revoked address: 'registrar list'."""
    state = run_client(home, lambda client: client.registrar_list())
    if as_json:
        emit_json(
            {
                "agency": state.agency,
                "registrar": state.registrar,
                "endpoints": len(state.endpoints),
                "endpoints_revoked": sum(e.revoked for e in state.endpoints),
                "serial": state.serial,
                "issued_at": state.issued_at,
                "revoked": len(state.revoked),
                "next_list_at": state.next_list_at,
                "log_size": state.log_size,
                "delegation_until": state.delegation_until,
            }
        )
        return
    for line in _summary(state, now_ms=int(time.time() * 1000)):
        click.echo(line)


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _summary(state: api.RegistrarState, *, now_ms: int) -> list[str]:
    """What 'registrar status' prints, and 'registrar list' above its lines:
    as many lines however many endpoints."""
    revoked = sum(e.revoked for e in state.endpoints)
    counts = f"{_count(len(state.endpoints), 'endpoint', 'endpoints')} enrolled"
    if revoked:
        counts += f" ({revoked} revoked)"
    if state.serial is None or state.issued_at is None:
        listed = "no list signed yet"
    else:
        counts += f"; {_count(len(state.revoked), 'address', 'addresses')} in the list"
        listed = f"list {state.serial} issued {format_ms(state.issued_at * 1000)}"
        if state.next_list_at is not None:
            due = state.next_list_at * 1000
            late = ": overdue (see the registrar's log)" if due < now_ms else ""
            listed += f", next due {format_ms(due)}{late}"
    lines = [
        f"registrar of {printable(state.agency)} at {state.registrar}",
        counts,
        listed,
        f"log of {_count(state.log_size, 'statement', 'statements')}",
    ]
    warning = _delegation_warning(state.delegation_until, now_ms=now_ms)
    return lines if warning is None else [*lines, warning]


def _delegation_warning(until: int | None, *, now_ms: int) -> str | None:
    """A fifth line when the issuing key's delegation ends soon or has ended
    (trust.md §8.1); none while it is far."""
    from onionpost.proto.registrar import DelegationNotice, delegation_notice

    if until is None:
        return None
    notice = delegation_notice(until, now_ms // 1000)
    when = format_ms(until * 1000)
    what = (
        "have the agency's root sign a new one ('onionpost trust delegate') "
        "and hand it over ('onionpost registrar delegation FILE')"
    )
    if notice is DelegationNotice.ENDED:
        return f"delegation ENDED {when}: endpoints refuse what this registrar signs; {what}"
    if notice is DelegationNotice.ENDING:
        days = (until - now_ms // 1000) // 86_400
        return f"delegation ends {when} (in {_count(days, 'day', 'days')}): {what}"
    return None


@registrar.command("list")
@_home_option
@json_option
def list_(home: Path | None, as_json: bool) -> None:
    """Each enrolled endpoint and each revoked address, below the status.

    What 'registrar status' says, then a line for each enrolled endpoint
    (its endorsement's end, or revoked) and for each address in the list."""
    state = run_client(home, lambda client: client.registrar_list())
    if as_json:
        emit_json(api.encode(state))
        return
    for line in _summary(state, now_ms=int(time.time() * 1000)):
        click.echo(line)
    for e in state.endpoints:
        where = f"{e.endpoint}, {e.unit}" if e.unit else e.endpoint
        mark = "revoked" if e.revoked else f"until {format_ms(e.valid_until * 1000)}"
        moved = f"  replacing {e.replaces}" if e.replaces else ""
        click.echo(f"  {e.address}  {printable(where)}  {mark}{moved}")
    for r in state.revoked:
        click.echo(
            f"  revoked {r.address} at {format_ms(r.revoked_at * 1000)}: {printable(r.reason)}"
        )
    if not state.endpoints:
        click.echo(
            "no endpoint enrolled yet: make a code with 'onionpost registrar code'", err=True
        )
