"""The fuzz targets (fuzz/): every seed and regression input, and a short pass under atheris.

The long campaigns are ``make fuzz``; here each target runs a bounded number
of executions, enough to show that it starts, loads its seeds, and that the
code still keeps the contract on what the fuzzer tries first. Regression
inputs are the crashes campaigns found: each is replayed in process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the fuzz package sits at the top of the repository
from fuzz import seeds, targets  # noqa: E402
from fuzz.__main__ import parse_log  # noqa: E402

# Regression inputs that still crash, each with its cause. A fix turns its
# test into an unexpected pass, which fails (strict) until the entry goes.
KNOWN: dict[str, str] = {}

RUNS = 2000


def _inputs() -> list[tuple[str, Path]]:
    return [
        (target, path)
        for folder in ("corpus", "regressions")
        for target in targets.TARGETS
        if (ROOT / "fuzz" / folder / target).is_dir()
        for path in sorted((ROOT / "fuzz" / folder / target).iterdir())
    ]


def _case(target: str, path: Path) -> object:
    key = f"{target}/{path.name}"
    marks = [pytest.mark.xfail(strict=True, reason=KNOWN[key])] if key in KNOWN else []
    return pytest.param(target, path, id=f"{path.parent.parent.name}/{key}", marks=marks)


@pytest.mark.parametrize(("target", "path"), [_case(t, p) for t, p in _inputs()])
def test_input_keeps_the_contract(target: str, path: Path) -> None:
    targets.TARGETS[target].check(path.read_bytes())


def test_every_target_has_seeds() -> None:
    assert {t for t, p in _inputs() if p.parent.parent.name == "corpus"} == set(targets.TARGETS)


def test_known_crashes_have_their_input() -> None:
    files = {f"{t}/{p.name}" for t, p in _inputs() if p.parent.parent.name == "regressions"}
    assert set(KNOWN) <= files


def test_the_seed_corpus_is_what_the_generator_makes() -> None:
    # `python -m fuzz seeds` rewrites it.
    assert seeds.check() == []


def _atheris_or_skip() -> None:
    if importlib.util.find_spec("atheris") is not None:
        return
    message = "atheris is not installed (it has wheels for Linux x86_64 only)"
    if os.environ.get("CI", "").strip().lower() in {"true", "1"}:
        pytest.fail(f"{message}; CI=true forbids skipping", pytrace=False)
    pytest.skip(message)


@pytest.mark.parametrize("target", list(targets.TARGETS))
def test_target_runs_under_atheris(target: str, tmp_path: Path) -> None:
    _atheris_or_skip()
    command = [sys.executable, "-m", "fuzz", "all", "--runs", str(RUNS), "--jobs", "1"]
    command += ["--out", str(tmp_path), target]
    done = subprocess.run(
        command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    log = (tmp_path / target / "log").read_text(errors="replace")
    assert done.returncode == 0, done.stdout + done.stderr + log[-4000:]
    outcome = parse_log(target, log, 1.0, 0)
    assert outcome.executions == RUNS
    assert outcome.ok
    # Nothing but the log: no crash file, and the working corpus was elsewhere.
    assert [p.name for p in (tmp_path / target).iterdir()] == ["log"]


_CRASH_LOG = """\
#2\tINITED cov: 2 ft: 2 corp: 1/1b exec/s: 0 rss: 40Mb
#57\tNEW    cov: 5 ft: 6 corp: 2/4b lim: 4 exec/s: 0 rss: 41Mb L: 3/3 MS: 1 CMP-

 === Uncaught Python exception: ===
IndexError: boom

==4940== ERROR: libFuzzer: fuzz target exited
artifact_prefix='/tmp/x/'; Test unit written to /tmp/x/crash-80dc91ab1eecb6a0
stat::number_of_executed_units: 304
stat::average_exec_per_sec:     0
stat::new_units_added:          0
stat::slowest_unit_time_sec:    0
stat::peak_rss_mb:              41
"""


def test_a_crash_in_the_log_is_a_failure() -> None:
    outcome = parse_log("records", _CRASH_LOG, 2.0, 77)
    assert not outcome.ok
    assert outcome.artifact == "/tmp/x/crash-80dc91ab1eecb6a0"
    assert (outcome.executions, outcome.peak_rss_mb, outcome.coverage) == (304, 41, "cov 5 ft 6")
    assert "FAILED" in outcome.line()
