"""The ``onionpost`` command line.

Exit codes (stable, documented in the README):

- 0: success
- 1: the operation failed (a test failed, a message was not delivered, ...)
- 2: usage error (bad arguments)
- 3: the environment is not usable (tor missing, no daemon running, store locked)
"""

from __future__ import annotations

import click

from onionpost import __version__
from onionpost.cli._selftest import selftest
from onionpost.cli._testnet import testnet

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="onionpost")
def main() -> None:
    """onionpost: secure messaging between agency endpoints over Tor onion services."""


main.add_command(selftest)
main.add_command(testnet)
