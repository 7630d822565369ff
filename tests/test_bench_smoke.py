"""Each benchmark that needs no tor still runs: its smoke form (a hundredth of
the counts, one round) in a child process, every line in the bench format.
``make bench`` itself runs in no CI job, so a bench that a change broke (a
signature it calls, a record it builds) would otherwise go unseen."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: ``name: ours=<v><unit> peer=<v><unit> ratio=<r>`` or ``name: <v><unit>``.
LINE = re.compile(r"^[A-Za-z0-9_]+: (ours=\S+ peer=\S+ ratio=[0-9.]+(inf)?|[0-9.]+ ?\S*)$")


@pytest.mark.parametrize("bench", ["noise", "session", "trust", "evidence", "group"])
def test_the_bench_runs_and_prints_its_lines(bench: str) -> None:
    program = f"from bench import {bench}_bench as b\nfor row in b.run():\n    print(row)\n"
    env = {**os.environ, "ONIONPOST_BENCH_SMOKE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", program],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    rows = done.stdout.splitlines()
    assert len(rows) >= 3
    for row in rows:
        assert LINE.match(row), row
