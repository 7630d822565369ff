"""The command line loads a command's module only when that command runs."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from onionpost.cli import COMMANDS, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_listed_command_loads_under_its_name(name: str) -> None:
    command = main.get_command(click.Context(main), name)
    assert isinstance(command, click.Command)
    assert command.name == name


def test_help_lists_every_command() -> None:
    assert main.list_commands(click.Context(main)) == sorted(COMMANDS)
    assert main.get_command(click.Context(main), "no-such-command") is None


def test_a_client_command_does_not_load_the_store_tor_or_the_daemon() -> None:
    code = (
        "import sys\n"
        "from onionpost.cli import main\n"
        "try:\n"
        "    main(['send', '--help'], prog_name='onionpost')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('onionpost.store', 'onionpost.tor', 'onionpost.daemon', 'stem',"
        " 'onionpost.proto.bundle', 'onionpost.testing')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "[]"
