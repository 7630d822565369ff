"""The ``onionpost`` command line.

Exit codes (stable, documented in the README):

- 0: success
- 1: the operation failed (a test failed, a message was not delivered, ...)
- 2: usage error (bad arguments)
- 3: the environment is not usable (tor missing, no daemon running, store locked)

An onionpost error is one line on stderr, ``onionpost: <message>``, never a
traceback (:class:`~onionpost.cli._common.OnionpostGroup`). Every command that
prints data takes ``--json``; every command that uses a home takes ``--home``,
as does the group (``onionpost --home DIR COMMAND``; ``$ONIONPOST_HOME``).
"""

from __future__ import annotations

from pathlib import Path

import click

from onionpost import __version__
from onionpost.cli._commands import contact, inbox, message, outbox, read, retry, send, status
from onionpost.cli._common import OnionpostGroup, remember_group_home
from onionpost.cli._daemon_cmd import daemon, doctor
from onionpost.cli._evidence_cmd import export, log, verify_export
from onionpost.cli._init import init, whoami
from onionpost.cli._labels_cmd import forward
from onionpost.cli._mailbox_cmd import mailbox
from onionpost.cli._selftest import selftest
from onionpost.cli._testnet import testnet
from onionpost.home import HOME_ENV

__all__ = ["main"]


@click.group(cls=OnionpostGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onionpost")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=HOME_ENV,
    default=None,
    help="The endpoint's home directory (default: the per-user data dir).",
)
@click.pass_context
def main(ctx: click.Context, home: Path | None) -> None:
    """onionpost: secure messaging between agency endpoints over Tor onion services."""
    remember_group_home(ctx, home)


main.add_command(init)
main.add_command(whoami)
main.add_command(contact)
main.add_command(send)
main.add_command(forward)
main.add_command(inbox)
main.add_command(message)
main.add_command(outbox)
main.add_command(read)
main.add_command(status)
main.add_command(retry)
main.add_command(daemon)
main.add_command(doctor)
main.add_command(mailbox)
main.add_command(selftest)
main.add_command(testnet)
main.add_command(log)
main.add_command(export)
main.add_command(verify_export)
