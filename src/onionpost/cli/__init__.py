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

import importlib
from pathlib import Path
from typing import Final

import click

from onionpost import __version__
from onionpost.cli._common import OnionpostGroup, remember_group_home
from onionpost.home import HOME_ENV

__all__ = ["main"]

# Each command's module is imported when that command runs (or help lists
# it): a client command then pays for the client alone, not for the store,
# tor and the evidence verifier it never touches. Every CLI call of a
# script (the demo makes about thirty) starts that much sooner.
COMMANDS: Final[dict[str, str]] = {
    "init": "_init:init",
    "whoami": "_init:whoami",
    "contact": "_contact_cmd:contact",
    "trust": "_trust_cmd:trust",
    "list": "_lists_cmd:distribution_list",
    "group": "_groups_cmd:group",
    "send": "_send_cmd:send",
    "forward": "_labels_cmd:forward",
    "inbox": "_commands:inbox",
    "message": "_commands:message",
    "outbox": "_commands:outbox",
    "read": "_commands:read",
    "status": "_commands:status",
    "retry": "_commands:retry",
    "daemon": "_daemon_cmd:daemon",
    "doctor": "_daemon_cmd:doctor",
    "mailbox": "_mailbox_cmd:mailbox",
    "registrar": "_registrar_cmd:registrar",
    "selftest": "_selftest:selftest",
    "testnet": "_testnet:testnet",
    "log": "_evidence_cmd:log",
    "export": "_evidence_cmd:export",
    "verify-export": "_evidence_cmd:verify_export",
}


class _Commands(OnionpostGroup):
    """:class:`OnionpostGroup` whose commands are loaded from :data:`COMMANDS` on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = self.commands.get(cmd_name)
        if found is None and cmd_name in COMMANDS:
            module, attribute = COMMANDS[cmd_name].split(":")
            loaded = getattr(importlib.import_module(f"onionpost.cli.{module}"), attribute)
            if not isinstance(loaded, click.Command):
                raise TypeError(f"onionpost.cli.{module}.{attribute} is not a command")
            self.add_command(loaded, cmd_name)
            found = loaded
        return found


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
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
