"""``onionpost testnet``: a private Tor network on 127.0.0.1."""

from __future__ import annotations

import click


@click.group()
def testnet() -> None:
    """Run a private Tor network on 127.0.0.1 for demos, tests and benchmarks."""
