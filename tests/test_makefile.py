"""README's table of make targets lists exactly the Makefile's targets."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_make_target_is_in_the_readme() -> None:
    phony = re.search(r"^\.PHONY:(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert phony is not None
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Make targets", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `make (\w+)`", section, re.MULTILINE))
    assert documented == set(phony.group(1).split())
