"""``onionpost forward``: a stored message sent on under the rules of its
handling label (spec.md §5.10). Sending with a label is ``send --label``;
a contact's limit is ``contact set-max-label``."""

from __future__ import annotations

from pathlib import Path

import click

from onionpost import api
from onionpost.cli._commands import banner
from onionpost.cli._common import (
    check_label,
    emit_json,
    home_option,
    json_option,
    printable,
    resolve_message_id,
    run_client,
)
from onionpost.client import Client

__all__ = ["forward"]


@click.command()
@click.argument("message_id", metavar="ID")
@click.option("--to", "to", required=True, metavar="NAME", help="The contact to send it to.")
@click.option(
    "--label",
    metavar="LABEL",
    help="A label at least the message's own (default: its own; never lower).",
)
@click.option("--contact", "contact_name", help="Whose message, when two contacts used the id.")
@home_option
@json_option
def forward(
    *,
    message_id: str,
    to: str,
    label: str | None,
    contact_name: str | None,
    home: Path | None,
    as_json: bool,
) -> None:
    """Send message or file ID on to contact NAME, as a new message (ID: a
    message id, or a received message's '#' as the inbox shows it).

    Its handling label is kept, or raised with --label, never lowered. A
    TLP:RED message goes only back to the contact it came from or went to;
    a contact that does not accept the label is refused, with the reason.
    """

    check_label(label)

    async def send_on(client: Client) -> api.Queued:
        found, contact = await resolve_message_id(client, message_id, contact_name)
        return await client.forward(found, to, contact=contact, label=label)

    queued = run_client(home, send_on)
    if as_json:
        record = {"label": queued.label, "id": queued.id, "state": str(queued.state), "to": to}
        emit_json(record, first="label")
        return
    what = f" ({printable(queued.name)})" if queued.name is not None else ""
    click.echo(f"{banner(queued.label)} forwarded as {queued.id}{what} to '{printable(to)}'")
