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


def _commands(command: click.Command, path: str) -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{path} {name}"
            found.extend(_commands(sub, f"{path} {name}"))
    return found


def test_every_command_and_option_has_a_help_text() -> None:
    commands = _commands(main, "onionpost")
    assert len(commands) > len(COMMANDS)  # the groups' commands are walked too
    missing = [
        f"{path} {'/'.join(param.opts)}"
        for path, command in commands
        for param in command.params
        if isinstance(param, click.Option) and not (param.help or "").strip()
    ]
    missing += [path for path, command in commands if not (command.help or "").strip()]
    assert missing == []


def test_the_help_walk_finds_an_option_without_help() -> None:
    @click.group()
    def group() -> None:
        """A group."""

    @group.command()
    @click.option("--bare")
    def leaf(bare: str) -> None:
        """A command."""

    (_, _), (_, found) = _commands(group, "g")
    assert [p.opts for p in found.params if isinstance(p, click.Option) and not p.help] == [
        ["--bare"]
    ]
