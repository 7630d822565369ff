"""``onionpost log show|verify``, ``onionpost export`` and ``onionpost
verify-export``: the evidence log and its bundles (evidence.md)."""

from __future__ import annotations

import dataclasses
import datetime
import zipfile
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from onionpost.cli._common import (
    emit_json,
    fail,
    format_ms,
    home_option,
    json_option,
    printable,
    run_client,
    table_console,
)
from onionpost.errors import VerificationError
from onionpost.proto import bundle

__all__ = ["export", "log", "verify_export"]

WHAT_IT_PROVES = (
    "A verified bundle proves: these entries are in the evidence log of {endpoint} as its "
    "key signed it at {size} entries; bundle.json is the whole export as that key signed it "
    "(nothing left out or changed since); each message and file is the one its entry "
    "recorded (nothing changed since), and manifest.jsonld says the same of them as "
    "bundle.json; "
    "and where a contact cosigned the log, that the entries it "
    "covered existed, unchanged, when it cosigned. It does not prove that a contact wrote "
    "a message, nor that the endpoint's clock was right."
)


def _console() -> Console:
    return table_console()


@click.group()
def log() -> None:
    """The evidence log: every message queued, sent, received, delivered and read."""


@log.command("show")
@click.option("--start", type=click.IntRange(0), default=0, help="The first entry's index.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, help="Entries to show.")
@home_option
@json_option
def log_show(start: int, limit: int, home: Path | None, as_json: bool) -> None:
    """Show entries of the evidence log."""
    result = run_client(home, lambda client: client.log_show(start, limit))
    if as_json:
        emit_json(dataclasses.asdict(result))
        return
    table = Table("#", "time", "event", "counterparty", "message", "content (BLAKE2b)")
    for e in result.entries:
        table.add_row(
            str(e.index),
            format_ms(e.time_ms),
            e.event,
            Text(printable(e.counterparty[:16])),
            e.message_id[:16],
            e.content_blake2b[:16],
        )
    console = _console()
    console.print(table)
    console.print(f"{result.size} entries in the log")


@log.command("verify")
@home_option
@json_option
def log_verify(home: Path | None, as_json: bool) -> None:
    """Re-read the whole log and check it against every checkpoint signed of it
    and every contact's cosignature; exit 1 on any problem or alarm."""
    report = run_client(home, lambda client: client.log_verify())
    if as_json:
        emit_json(dataclasses.asdict(report))
    else:
        click.echo(f"entries: {report.size}")
        click.echo(f"root: {report.root}")
        click.echo(f"checkpoints checked: {report.checkpoints}")
        for w in report.witnesses:
            stamp = format_ms(w.time_s * 1000)
            click.echo(f"witnessed by {printable(w.contact)}: {w.size} entries, at {stamp}")
        for a in report.alarms:
            click.echo(f"ALARM {a.kind} ({printable(a.contact)}, {format_ms(a.made_ms)})")
            click.echo(f"  the contact holds:\n{_indent(a.theirs)}")
            click.echo(f"  against:\n{_indent(a.ours)}")
        for problem in report.problems:
            click.echo(f"PROBLEM {printable(problem)}")
        click.echo("ok" if report.ok else "NOT OK")
    if not report.ok:
        raise SystemExit(1)


def _indent(text: str) -> str:
    return "\n".join(f"    {printable(line)}" for line in text.splitlines())


def _when(value: str | None, what: str) -> int | None:
    """ms since the epoch from an ISO 8601 date or time (UTC unless it says)."""
    if value is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        fail(f"{what}: give a date or time as 2026-12-01 or 2026-12-01T09:30", 2)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


@click.command()
@click.option("--contact", help="One contact's messages.")
@click.option("--since", help="Messages created at or after (ISO 8601; UTC unless it says).")
@click.option("--until", help="Messages created before (ISO 8601; UTC unless it says).")
@click.option("--id", "ids", multiple=True, help="This message (repeat for more).")
@click.option("--group", help="One team channel's messages, both ways (not with --id).")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The bundle to write (a new .zip file).",
)
@home_option
@json_option
def export(  # noqa: PLR0917 - the options
    contact: str | None,
    since: str | None,
    until: str | None,
    ids: tuple[str, ...],
    group: str | None,
    out: Path,
    home: Path | None,
    as_json: bool,
) -> None:
    """Write an evidence bundle: the selected messages and files, each with its
    proof in the evidence log, the signed checkpoint and contacts' cosignatures,
    and a CASE/UCO manifest. Check it anywhere with 'onionpost verify-export'."""
    since_ms, until_ms = _when(since, "--since"), _when(until, "--until")
    result = run_client(
        home,
        lambda client: client.evidence_export(
            out, contact=contact, since_ms=since_ms, until_ms=until_ms, ids=ids, group=group
        ),
    )
    if as_json:
        emit_json(dataclasses.asdict(result))
        return
    click.echo(
        f"wrote {result.path}: {result.messages} messages ({result.files} files), "
        f"{result.entries} log entries, proofs to the log at {result.log_size} entries"
    )


@click.command("verify-export")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@json_option
def verify_export(path: Path, as_json: bool) -> None:
    """Check an evidence bundle offline (no daemon, no home needed); exit 1
    when anything in it fails."""
    try:
        with zipfile.ZipFile(path) as archive:
            report = bundle.verify(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        fail(f"{path} is not a bundle: {exc}")
    except VerificationError as exc:
        fail(f"{path}: {exc}")
    if as_json:
        emit_json(
            {
                "ok": report.ok,
                "endpoint": report.endpoint,
                "log_size": report.size,
                "bundle_sha256": report.bundle_sha256,
                "entries": report.entries,
                "messages": report.messages,
                "files_checked": report.files_checked,
                "files_absent": report.files_absent,
                "witnesses": [dataclasses.asdict(w) for w in report.witnesses],
                "problems": report.problems,
            }
        )
    else:
        click.echo(f"endpoint: {report.endpoint}")
        click.echo(f"log: {report.size} entries, signed by the endpoint's key")
        if report.bundle_sha256:
            click.echo(
                f"bundle.json: SHA-256 {report.bundle_sha256}, "
                "signed as a whole by the endpoint's key"
            )
        click.echo(f"entries with a valid inclusion proof: {report.entries}")
        click.echo(
            f"messages matching their entries: {report.messages} "
            f"({report.files_checked} files checked byte for byte, "
            f"{report.files_absent} whose copy was not kept)"
        )
        for w in report.witnesses:
            stamp = format_ms(w.time_s * 1000)
            click.echo(f"cosigned by {w.address}: the first {w.size} entries, at {stamp}")
        for problem in report.problems:
            click.echo(f"PROBLEM {printable(problem)}")
        if report.ok:
            click.echo(WHAT_IT_PROVES.format(endpoint=report.endpoint, size=report.size))
        click.echo("ok" if report.ok else "NOT OK")
    if not report.ok:
        raise SystemExit(1)
