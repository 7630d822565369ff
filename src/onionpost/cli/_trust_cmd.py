"""``onionpost trust ...``: the agencies this endpoint believes (``add``,
``list``, ``remove``, through the daemon), and an agency's own offline tools
(``root-init``, ``endorse``, ``revoke``, ``delegate``, on the agency's
directory, no daemon)
(``protocol-spec/trust.md``)."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from onionpost._files import read_small_file
from onionpost.cli._common import (
    emit_json,
    fail,
    format_ms,
    home_option,
    json_option,
    printable,
    read_card_argument,
    read_passphrase_file,
    run_client,
    stdin_is_a_terminal,
)
from onionpost.errors import ConfigError, MalformedStatementError
from onionpost.limits import (
    MAX_DELEGATION_LIFETIME,
    MAX_ENDORSEMENT_LIFETIME,
    MAX_TRUST_STAPLE_PART,
)
from onionpost.proto.trust import Anchor, stored_endorsement

if TYPE_CHECKING:
    from onionpost import api
    from onionpost.home import KeySource

__all__ = ["trust"]

_MAX_ANCHOR_FILE = 8192
# An endorsement proof: three signed notes and an inclusion proof.
_MAX_PROOF_FILE = 3 * MAX_TRUST_STAPLE_PART
PASSPHRASE_ENV = "ONIONPOST_PASSPHRASE"  # noqa: S105 - a variable's name, as cli._init's
# The agency's keys' own passphrase, where it is not the home's (registrar init
# opens both); unset, $ONIONPOST_PASSPHRASE stands for it as it always did.
AGENCY_PASSPHRASE_ENV = "ONIONPOST_AGENCY_PASSPHRASE"  # noqa: S105 - a variable's name
_DAY = 86_400


@click.group()
def trust() -> None:
    """Agencies whose endorsements this endpoint believes, and an agency's offline tools."""


def _anchor_text(anchor_or_file: str) -> str:
    if anchor_or_file == "-":
        return sys.stdin.read(_MAX_ANCHOR_FILE)
    if anchor_or_file.startswith("onionpost-anchor"):
        return anchor_or_file
    path = Path(anchor_or_file)
    if not path.is_file():
        raise ConfigError(f"{anchor_or_file!r} is neither an anchor nor a file holding one")

    try:
        return read_small_file(path, _MAX_ANCHOR_FILE, what="anchor file").decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not an anchor file") from exc


def _groups(number: str) -> list[str]:
    groups = number.split()
    return ["    " + " ".join(groups[row : row + 4]) for row in range(0, len(groups), 4)]


@trust.command("add")
@click.argument("anchor_or_file")
@click.option(
    "--safety-number",
    help="The anchor's safety number as the agency read it to you (else asked for).",
)
@home_option
@json_option
def trust_add(
    anchor_or_file: str, safety_number: str | None, home: Path | None, as_json: bool
) -> None:
    """Install an agency's anchor, once its safety number matches what the agency
    read to you over a channel you trust (ANCHOR_OR_FILE: the text, a file, or -)."""
    text = _anchor_text(anchor_or_file)
    try:
        anchor = Anchor.from_text(text)
    except MalformedStatementError as exc:
        fail(f"not a trust anchor: {exc}")
    if safety_number is None:
        if not stdin_is_a_terminal():
            fail("give --safety-number: the digits the agency read to you")
        click.echo(f"anchor of agency {anchor.agency}, safety number:", err=True)
        for line in _groups(anchor.safety_number):
            click.echo(line, err=True)
        safety_number = click.prompt(
            "type the safety number the agency read to you (nothing is installed otherwise)",
            err=True,
        )
    added = run_client(home, lambda client: client.trust_add(text.strip(), safety_number))
    if as_json:
        emit_json(dataclasses.asdict(added))
        return
    click.echo(f"installed the anchor of {printable(added.agency)}")


@trust.command("list")
@home_option
@json_option
def trust_list(home: Path | None, as_json: bool) -> None:
    """The agencies' anchors installed."""
    anchors = run_client(home, lambda client: client.trust_list())
    if as_json:
        emit_json({"anchors": [dataclasses.asdict(a) for a in anchors]})
        return
    if not anchors:
        click.echo("no trust anchors")
    for a in anchors:
        kind = "Ed25519 + ML-DSA-65" if a.post_quantum else "Ed25519"
        click.echo(
            f"{printable(a.agency)}  {a.fingerprint[:16]}  {kind}  "
            f"added {format_ms(a.added_ms)}\n    {a.safety_number}"
        )
        if a.revocations_serial is not None and a.revocations_issued_at is not None:
            issued = format_ms(a.revocations_issued_at * 1000)
            click.echo(f"    revocation list {a.revocations_serial}, issued {issued}")
        if a.checkpoint_size is not None:
            click.echo(f"    log checkpoint of {a.checkpoint_size} entries")


@trust.command("remove")
@click.argument("agency_or_fingerprint")
@home_option
@json_option
def trust_remove(agency_or_fingerprint: str, home: Path | None, as_json: bool) -> None:
    """Remove an agency's anchor (by its name or fingerprint)."""
    removed = run_client(home, lambda client: client.trust_remove(agency_or_fingerprint))
    if as_json:
        emit_json(dataclasses.asdict(removed))
        return
    click.echo(f"removed the anchor of {printable(removed.agency)}")


@trust.group("endorsement")
def endorsement() -> None:
    """This endpoint's own endorsement by its agency."""


@endorsement.command("install")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@home_option
@json_option
def endorsement_install(file: Path, home: Path | None, as_json: bool) -> None:
    """Install the endorsement proof FILE (written by 'trust endorse'): it is
    checked against the installed anchor of its agency, for this endpoint's
    address and key, and then presented to contacts in every session."""
    proof = read_small_file(file, _MAX_PROOF_FILE, what="endorsement proof")
    installed = run_client(home, lambda client: client.trust_endorsement_install(proof))
    if as_json:
        emit_json(dataclasses.asdict(installed))
        return
    where = f"{installed.endpoint}, {installed.unit}" if installed.unit else installed.endpoint
    click.echo(
        f"installed: endorsed by {printable(installed.agency)} ({printable(where)}) "
        f"until {format_ms(installed.valid_until * 1000)}"
        + ("" if installed.status == "endorsed" else f" [{installed.status}]")
    )
    _say_replaces(installed)
    if installed.status == "unverified-stale":
        click.echo(
            f"no fresh revocation list of {printable(installed.agency)} is held, so contacts "
            "cannot count it as endorsed yet: import the agency's newest list "
            "('trust revocations import FILE')"
        )


def _say_replaces(installed: api.Endorsement) -> None:
    """A move's endorsement (trust.md §6) says which address it replaces, and
    the step left: 'trust rotate' on the old home, with this one's bundle."""
    if installed.replaces:
        click.echo(
            f"replacing {installed.replaces}: there run 'onionpost trust rotate BUNDLE', "
            "BUNDLE this home's 'onionpost whoami --bundle'"
        )


@trust.command("rotate")
@click.argument("card")
@click.argument("file", required=False, type=click.Path(path_type=Path, dir_okay=False))
@home_option
@json_option
def trust_rotate(card: str, file: Path | None, home: Path | None, as_json: bool) -> None:
    """Move this endpoint's contacts to the new address of CARD (a contact card,
    a file holding one, or - for stdin), endorsed by this endpoint's agency in the proof
    FILE as replacing this address ('trust endorse --replaces', trust.md §6).
    Without FILE, CARD is the new home's card bundle ('onionpost whoami --bundle'
    there, after 'trust enrol' with a code of 'registrar code --replaces'): its
    endorsement line is the proof.
    Every contact is told in its next session, or through its mailbox, and
    moves over by itself, keeping its history."""
    text, line = read_card_argument(card)
    if file is not None:
        proof = read_small_file(file, _MAX_PROOF_FILE, what="endorsement proof")
    elif line is not None:
        from onionpost.home import parse_endorsement_line

        proof = parse_endorsement_line(line)
    else:
        raise ConfigError(
            "no proof: give the proof FILE, or as CARD the new home's card bundle "
            "('onionpost whoami --bundle' there), which holds its endorsement"
        )
    done = run_client(home, lambda client: client.trust_rotate(text, proof))
    if as_json:
        emit_json(dataclasses.asdict(done))
        return
    by = "the agency and the old key" if done.proof == "agency-and-old-key" else "the agency"
    click.echo(
        f"announced: {done.replaces} moves to {done.address}, vouched for by {by} "
        f"({printable(done.agency)}); {done.contacts} contact(s) to tell"
        + ("" if done.status == "endorsed" else f" [{done.status}]")
    )


@trust.command("enrol")
@click.argument("code")
@click.option(
    "--again",
    is_flag=True,
    help="Enrol although this endpoint is enrolled already: the code's name and unit "
    "replace its own.",
)
@home_option
@json_option
def enrol(code: str, again: bool, home: Path | None, as_json: bool) -> None:
    """Enrol this endpoint with its agency's registrar, with the one-time CODE
    its operator gave you ('registrar code'): the endorsement it signs is
    installed (install the agency's anchor first, 'trust add'), and the daemon
    then fetches the agency's list from it every trust_refresh and renews the
    endorsement in time. An endpoint enrolled already (its endorsement in
    force) is refused, with nothing sent, unless --again."""
    installed = run_client(home, lambda client: client.trust_enrol(code, again=again))
    if as_json:
        emit_json(dataclasses.asdict(installed))
        return
    where = f"{installed.endpoint}, {installed.unit}" if installed.unit else installed.endpoint
    click.echo(
        f"enrolled: endorsed by {printable(installed.agency)} ({printable(where)}) "
        f"until {format_ms(installed.valid_until * 1000)}"
        + ("" if installed.status == "endorsed" else f" [{installed.status}]")
    )
    _say_replaces(installed)
    if installed.status == "unverified-stale":
        # The endorsement comes first; the list comes in the daemon's first
        # round with the registrar, which enrolling starts (trust.md §8).
        click.echo(
            "the daemon now fetches the agency's revocation list from the registrar "
            "(seconds): 'trust list' shows it held, 'status' the registrar's last round"
        )


@trust.group("revocations")
def revocations() -> None:
    """The agencies' revocation lists this endpoint holds."""


@revocations.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@home_option
@json_option
def revocations_import(file: Path, home: Path | None, as_json: bool) -> None:
    """Hold the revocation list FILE (written by 'trust revoke' or 'registrar
    export-list'): checked against
    the installed anchor of its agency, refused if not newer than the list
    held. A contact it revokes is refused at once, its outbox held; the list
    is passed on to contacts in sessions."""
    bundle = read_small_file(file, _MAX_PROOF_FILE, what="revocation list")
    done = run_client(home, lambda client: client.trust_revocations_import(bundle))
    if as_json:
        emit_json(dataclasses.asdict(done))
        return
    click.echo(
        f"holding list {done.serial} of {printable(done.agency)} "
        f"(issued {format_ms(done.issued_at * 1000)}, {done.revoked} revoked); "
        f"{done.changed} contact(s) judged anew"
    )


# -- the agency's offline tools ------------------------------------------------------------


def _secret_options(function: click.decorators.FC) -> click.decorators.FC:
    function = click.option(
        "--kdf-cost",
        type=click.Choice(["moderate", "floor"]),  # home.KdfCost's names
        default="moderate",
        hidden=True,
        help="For tests only: 'floor' seals with the least Argon2id cost accepted.",
    )(function)
    function = click.option(
        "--passphrase-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="The agency keys' passphrase, this file's first line (else "
        f"${AGENCY_PASSPHRASE_ENV}, else ${PASSPHRASE_ENV}, else asked).",
    )(function)
    return click.option(
        "--key-file",
        type=click.Path(path_type=Path, dir_okay=False),
        help="Seal (or open) the keys with this 32-byte key file, not a passphrase.",
    )(function)


def _key_source(
    key_file: Path | None,
    passphrase_file: Path | None,
    kdf_cost: str,
    *,
    new: bool,
    whose: str = "the agency's keys",
) -> KeySource:
    # The agency's tools load the sealing code only when they run: `trust add`,
    # `list` and `remove` are client commands.
    from onionpost.cli._init import new_passphrase
    from onionpost.home import KdfCost, KeySource, create_key_file

    cost = KdfCost[kdf_cost.upper()]
    if key_file is not None and passphrase_file is not None:
        raise click.UsageError("give --key-file or --passphrase-file, not both")
    if key_file is not None:
        if new and not key_file.exists():
            from onionpost.home import create_key_file

            create_key_file(key_file)
        return KeySource(key_file=key_file, kdf_cost=cost)
    agency_env = os.environ.get(AGENCY_PASSPHRASE_ENV)
    if new:
        if passphrase_file is None and agency_env is not None:
            return KeySource(passphrase=agency_env, kdf_cost=cost)
        return KeySource(passphrase=new_passphrase(passphrase_file), kdf_cost=cost)
    if passphrase_file is not None:
        return KeySource(passphrase=read_passphrase_file(passphrase_file), kdf_cost=cost)
    from_env = os.environ.get(PASSPHRASE_ENV) if agency_env is None else agency_env
    if from_env is not None:
        return KeySource(passphrase=from_env, kdf_cost=cost)
    if not stdin_is_a_terminal():
        raise ConfigError(
            f"no passphrase for {whose}: use --key-file, --passphrase-file, "
            f"${AGENCY_PASSPHRASE_ENV} or ${PASSPHRASE_ENV}"
        )
    prompt = f"passphrase for {whose}"
    return KeySource(passphrase=click.prompt(prompt, hide_input=True), kdf_cost=cost)


def home_passphrase_for_agency(key_file: Path | None, passphrase_file: Path | None) -> bool:
    """Whether :func:`_key_source` opens the agency's keys with the home's
    passphrase ($ONIONPOST_PASSPHRASE, the agency's own unset): worth a word
    when they do not open."""
    return (
        key_file is None
        and passphrase_file is None
        and AGENCY_PASSPHRASE_ENV not in os.environ
        and PASSPHRASE_ENV in os.environ
    )


@trust.command("root-init")
@click.option(
    "--dir",
    "where",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The agency's directory to create (keep it offline).",
)
@click.option("--agency", required=True, help="The agency's name: a-z 0-9 . - (e.g. acme.gov).")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_DELEGATION_LIFETIME // _DAY),
    default=MAX_DELEGATION_LIFETIME // _DAY,
    help="How long the first issuing key may speak for the agency.",
)
@click.option("--no-ml-dsa", is_flag=True, help="Ed25519 keys only (no ML-DSA-65 half).")
@_secret_options
@json_option
def root_init(
    *,
    where: Path,
    agency: str,
    days: int,
    no_ml_dsa: bool,
    key_file: Path | None,
    passphrase_file: Path | None,
    kdf_cost: str,
    as_json: bool,
) -> None:
    """Create an agency: its root key and a first issuing key, sealed in DIR
    (keep DIR offline), and print the anchor its partners install."""

    from onionpost.home import AgencyDirectory

    source = _key_source(key_file, passphrase_file, kdf_cost, new=True)
    _, anchor = AgencyDirectory.create(
        where, agency, source, now=int(time.time()), lifetime=days * _DAY, mldsa=not no_ml_dsa
    )
    if as_json:
        emit_json(
            {
                "agency": anchor.agency,
                "anchor": anchor.to_text(),
                "fingerprint": anchor.fingerprint.hex(),
                "safety_number": anchor.safety_number,
            }
        )
        return
    click.echo(anchor.to_text())
    click.echo(f"agency {anchor.agency}: the anchor is in {where / 'anchor.txt'}", err=True)
    click.echo("read this safety number to each partner that installs it:", err=True)
    for line in _groups(anchor.safety_number):
        click.echo(line, err=True)


@trust.command("delegate")
@click.option(
    "--dir",
    "where",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The agency's directory (trust root-init), holding its root key.",
)
@click.option(
    "--days",
    type=click.IntRange(1, MAX_DELEGATION_LIFETIME // _DAY),
    default=MAX_DELEGATION_LIFETIME // _DAY,
    show_default=True,
    help="How long the issuing key may speak for the agency, from now.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The file to write the delegation to (it must not exist).",
)
@_secret_options
@json_option
def delegate(
    *,
    where: Path,
    days: int,
    out: Path,
    key_file: Path | None,
    passphrase_file: Path | None,
    kdf_cost: str,
    as_json: bool,
) -> None:
    """The root delegates the agency's issuing key anew, from now for DAYS
    (trust.md §8.1): the same key, for the same agency, refused unless it
    ends later than the delegation held. With a registrar ('registrar init'),
    hand OUT to it: 'onionpost registrar delegation OUT'; without one, it is
    logged in DIR at once and 'trust endorse' and 'trust revoke' sign under it."""
    if out.exists():
        fail(f"{out} exists already")
    from onionpost.home import AgencyDirectory

    directory = AgencyDirectory(where)
    source = _key_source(key_file, passphrase_file, kdf_cost, new=False)
    root = directory.root(source)
    issuer = None if directory.handed_over else directory.issuer(source)
    data = directory.delegate(root, now=int(time.time()), lifetime=days * _DAY, issuer=issuer)
    try:
        with out.open("xb") as handle:
            handle.write(data)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {out}: {exc.strerror} (the delegation is in {where} too)"
        ) from exc
    delegated = directory.held_delegation()
    if as_json:
        emit_json(
            {
                "agency": delegated.agency,
                "issuing_key": delegated.key.name,
                "not_before": delegated.not_before,
                "not_after": delegated.not_after,
                "registrar": directory.handed_over,
                "out": str(out),
            }
        )
        return
    click.echo(
        f"delegated {printable(delegated.key.name)} until "
        f"{format_ms(delegated.not_after * 1000)}; {out}"
    )
    if directory.handed_over:
        click.echo(
            f"hand it to the registrar: 'onionpost registrar delegation {out}' "
            "(it takes it running, and logs it)",
            err=True,
        )
    else:
        click.echo(f"logged in {where}: 'trust endorse' and 'trust revoke' sign under it", err=True)


@trust.command("endorse")
@click.argument("address")
@click.option(
    "--dir",
    "where",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The agency's directory (trust root-init), holding its issuing key and log.",
)
@click.option("--endpoint", required=True, help="The endpoint's name, e.g. 'Field office 3'.")
@click.option("--unit", default="", help="Its unit.")
@click.option(
    "--days",
    type=click.IntRange(1, MAX_ENDORSEMENT_LIFETIME // _DAY),
    default=7,
    show_default=True,
    help="How long the endorsement is valid (renewed by a new 'trust endorse').",
)
@click.option("--replaces", default="", help="The onion address this endpoint moves from.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The file to write the endorsement proof to (it must not exist).",
)
@_secret_options
@json_option
def endorse(
    *,
    address: str,
    where: Path,
    endpoint: str,
    unit: str,
    days: int,
    replaces: str,
    out: Path,
    key_file: Path | None,
    passphrase_file: Path | None,
    kdf_cost: str,
    as_json: bool,
) -> None:
    """Endorse ADDRESS as an endpoint of the agency in DIR: append it to the
    agency's log and write the endorsement proof the endpoint presents to OUT."""

    if out.exists():
        fail(f"{out} exists already")
    from onionpost.home import AgencyDirectory

    directory = AgencyDirectory(where)
    source = _key_source(key_file, passphrase_file, kdf_cost, new=False)
    proof = directory.endorse(
        directory.issuer(source),
        address,
        endpoint=endpoint,
        unit=unit,
        now=int(time.time()),
        days=days,
        replaces=replaces,
    )
    try:
        with out.open("xb") as handle:
            handle.write(proof.encode())
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from exc
    # What was signed, as it was signed: the addresses in their full form, and
    # the move (trust.md §6), so that a mistyped --replaces shows before the
    # proof is handed over.
    endorsed = stored_endorsement(proof.endorsement)
    moved_from = endorsed.replaces
    if as_json:
        emit_json(
            {
                "address": endorsed.address,
                "replaces": moved_from,
                "index": proof.index,
                "out": str(out),
            }
        )
        return
    move = f", replacing {moved_from}" if moved_from else ""
    click.echo(
        f"endorsed {endorsed.address} as {printable(endpoint)}{move}; "
        f"log entry {proof.index}; {out}"
    )


@trust.command("revoke")
@click.argument("address", required=False)
@click.option(
    "--dir",
    "where",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="The agency's directory (trust root-init), holding its issuing key and log.",
)
@click.option("--reason", default="", help="Why, in at most 64 bytes (it is in the list).")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The file to write the list to, for 'trust revocations import' (it must not exist).",
)
@_secret_options
@json_option
def revoke(
    *,
    address: str | None,
    where: Path,
    reason: str,
    out: Path,
    key_file: Path | None,
    passphrase_file: Path | None,
    kdf_cost: str,
    as_json: bool,
) -> None:
    """Sign the agency's next revocation list, with ADDRESS revoked (without it:
    the same list, fresh), append it to the log and write it to OUT for
    endpoints to import ('trust revocations import')."""
    if out.exists():
        fail(f"{out} exists already")
    from onionpost.home import AgencyDirectory

    directory = AgencyDirectory(where)
    source = _key_source(key_file, passphrase_file, kdf_cost, new=False)
    bundle = directory.revoke(
        directory.issuer(source), address, reason=reason, now=int(time.time())
    )
    listed = directory.revocations()
    assert listed is not None
    try:
        with out.open("xb") as handle:
            handle.write(bundle.encode())
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}") from exc
    if as_json:
        emit_json({"serial": listed.serial, "revoked": len(listed.revoked), "out": str(out)})
        return
    click.echo(f"list {listed.serial}: {len(listed.revoked)} revoked; {out}")
