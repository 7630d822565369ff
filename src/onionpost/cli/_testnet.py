"""``onionpost testnet``: a private Tor network on 127.0.0.1.

``up`` leaves the network running after the command exits (each tor is its
own process session); ``down`` stops it. Exit codes follow the CLI's: 0 done,
1 failed (the network did not come up, or is not ready), 2 bad arguments,
3 unusable environment (tor not installed, no network in that directory).
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from types import FrameType
from typing import NoReturn, cast

import click

from onionpost.errors import ConfigError, TorError, TorLaunchError
from onionpost.testing import testnet as tn

_DIR_OPTION = click.option(
    "--dir",
    "directory",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory holding the network's state, keys and logs.",
)


def _fail(message: str, code: int) -> NoReturn:
    # One clear line first, as every command says it; a launch failure adds the
    # failing node's log tail.
    click.echo(f"onionpost: {message}", err=True)
    raise SystemExit(code)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


@click.group()
def testnet() -> None:
    """Run a private Tor network on 127.0.0.1 for demos, tests and benchmarks."""


@testnet.command()
@_DIR_OPTION
@click.option(
    "--clients",
    type=click.IntRange(0, tn.MAX_CLIENTS),
    default=2,
    show_default=True,
    help="Client tors to start, one per endpoint.",
)
@click.option(
    "--deadline",
    type=click.FloatRange(min=1.0),
    default=120.0,
    show_default=True,
    help="Seconds the whole bring-up may take.",
)
@click.option(
    "--tor",
    "tor_binary",
    type=click.Path(path_type=Path, dir_okay=False),
    default=tn.TOR_BINARY,
    show_default=True,
    help="The tor program.",
)
@click.option(
    "--tor-gencert",
    type=click.Path(path_type=Path, dir_okay=False),
    default=tn.TOR_GENCERT,
    show_default=True,
    help="The tor-gencert program (makes the authorities' keys).",
)
def up(directory: Path, clients: int, deadline: float, tor_binary: Path, tor_gencert: Path) -> None:
    """Start 3 authorities, 2 relays and N clients; return once every client is ready."""
    missing = tn.missing_tools(tor_binary, tor_gencert)
    if missing:
        names = ", ".join(str(path) for path in missing)
        _fail(f"tor is not installed ({names} missing): run `apt-get install -y tor`", 3)
    click.echo(f"bringing up a private Tor network in {directory} (usually 15-30 s)...", err=True)
    # SIGTERM, like Ctrl-C, unwinds through tn.up(), which then stops every
    # tor it started; Python's default would leave them running.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.monotonic()
    try:
        net = tn.up(
            directory,
            clients=clients,
            deadline=deadline,
            tor_binary=tor_binary,
            tor_gencert=tor_gencert,
        )
    except ConfigError as exc:
        _fail(str(exc), 2)
    except TorLaunchError as exc:
        _fail(f"the network did not come up: {exc}", 1)
    finally:
        signal.signal(signal.SIGTERM, previous)
    elapsed = time.monotonic() - started
    click.echo(
        f"testnet ready in {elapsed:.1f} s: {tn.AUTHORITIES} authorities, {tn.RELAYS} relays, "
        f"{len(net.clients())} clients in {net.directory}"
    )
    for node in net.clients():
        click.echo(
            f"  {node.nickname}: control {tn.LOOPBACK}:{node.control_port} (cookie auth), "
            f"socks {tn.LOOPBACK}:{node.socks_port}, data {node.data_dir}"
        )
    click.echo(f"torrc options for another tor to join: {net.directory / tn.CLIENT_OPTIONS_FILE}")
    click.echo(f"the same as config.toml's [tor.options]: {net.directory / tn.CLIENT_CONFIG_FILE}")
    click.echo(f"stop it with: onionpost testnet down --dir {net.directory}")


@testnet.command()
@_DIR_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(directory: Path, as_json: bool) -> None:
    """Show which tors are alive and how far the clients bootstrapped.

    Exits 0 when every tor is alive and every client is at 100%, else 1.
    """
    try:
        report = tn.status(directory)
    except TorError as exc:
        _fail(str(exc), 3)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        state = "ready" if report["ready"] else "NOT ready"
        click.echo(
            f"{report['directory']}: {report['alive']} of {report['total']} tors alive, {state}"
        )
        for node in cast(list[dict[str, object]], report["nodes"]):
            ports = ", ".join(
                f"{name} {tn.LOOPBACK}:{node[key]}"
                for name, key in (("control", "control_port"), ("socks", "socks_port"))
                if node[key] is not None
            )
            alive = f"pid {node['pid']}" if node["alive"] else "stopped"
            line = f"  {node['nickname']:<8} {node['role']:<9} {alive:<12} {ports}"
            if node["role"] == "client" and node["alive"]:
                line += (
                    f", bootstrap {node['bootstrap'] if node['bootstrap'] is not None else '?'}%"
                )
            click.echo(line)
    raise SystemExit(0 if report["ready"] else 1)


@testnet.command()
@_DIR_OPTION
def down(directory: Path) -> None:
    """Stop every tor of the network (SIGTERM, then SIGKILL after 5 s)."""
    try:
        tn.load(directory)
    except TorError as exc:
        _fail(str(exc), 3)
    try:
        tn.down(directory)
    except TorError as exc:
        _fail(str(exc), 1)
    click.echo(f"testnet in {directory} stopped")
