"""The version is written once, in onionpost/__init__.py; the package metadata and the CLI
take it from there."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

from click.testing import CliRunner

import onionpost
from onionpost.cli import main

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# PEP 440, the public forms we would use: 1.2.3, 1.2.3rc1, 1.2.3.post1, 1.2.3.dev4.
PEP440 = re.compile(r"\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?")


def test_pyproject_takes_the_version_from_the_package() -> None:
    config = tomllib.loads(PYPROJECT.read_text())
    assert "version" not in config["project"]
    assert "version" in config["project"]["dynamic"]
    assert config["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "onionpost.__version__"}


def test_the_version_is_a_pep_440_version() -> None:
    assert PEP440.fullmatch(onionpost.__version__)


def test_the_installed_metadata_agrees() -> None:
    installed = importlib.metadata.version("onionpost")
    assert installed == onionpost.__version__, (
        f"installed as {installed}, the source says {onionpost.__version__}: "
        "reinstall (make install)"
    )


def test_the_cli_reports_it() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"onionpost, version {onionpost.__version__}\n"
