"""``python -m fuzz``: run the fuzz targets of :mod:`fuzz.targets` with atheris.

    python -m fuzz all [--seconds N | --runs N] [--jobs J] [--out DIR] [--corpus DIR] [TARGET ...]
    python -m fuzz run TARGET [libFuzzer flags] [CORPUS_DIR ...]
    python -m fuzz replay TARGET [FILE ...]
    python -m fuzz seeds [--check]

``all`` runs each target in a process of its own (``run``), at most ``--jobs``
at a time, for ``--seconds`` or ``--runs`` each, and prints one line per
target: executions, executions per second, coverage (libFuzzer's ``cov`` and
``ft``), peak RSS and the result. It exits 1 if any target found a crash, a
timeout or ran out of memory. The working corpus starts as a copy of the
committed seeds (``fuzz/corpus/<target>/``) in a temporary directory, or in
``--corpus DIR/<target>/`` to keep it between campaigns; nothing is written
into the repository. Logs and crash files go to ``--out`` (default
``.fuzz/``, ignored by git): ``<out>/<target>/log`` and
``<out>/<target>/crash-<sha1>``.

``run`` is one target under libFuzzer in this process, with onionpost's
modules instrumented for coverage; any libFuzzer flag may be given (defaults:
``-max_len`` per target, ``-rss_limit_mb=2048``, ``-timeout=10``).
``replay`` runs files through a target without atheris, and shows the
traceback of a crash file. ``seeds`` rewrites the seed corpus.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[1]
HERE: Final = ROOT / "fuzz"
RSS_LIMIT_MB: Final = 2048
TIMEOUT_SECONDS: Final = 10
# A target process still running this long after its budget is killed.
_GRACE_SECONDS: Final = 120


# -- run: one target under atheris ----------------------------------------------------


def run(name: str, flags: list[str]) -> None:
    import atheris

    # Instrument onionpost (and the checks of the harness) for coverage; the
    # C parts (msgpack, libsodium, OpenSSL) give feedback only through the
    # Python that inspects their results.
    with atheris.instrument_imports(include=["onionpost", "fuzz.targets"]):
        from fuzz.targets import TARGETS

    target = TARGETS.get(name)
    if target is None:
        sys.exit(f"usage: python -m fuzz run {{{','.join(TARGETS)}}} [libFuzzer flags]")
    defaults = {
        "-max_len": str(target.max_len),
        "-rss_limit_mb": str(RSS_LIMIT_MB),
        "-timeout": str(TIMEOUT_SECONDS),
    }
    given = {flag.split("=", 1)[0] for flag in flags}
    extra = [f"{key}={value}" for key, value in defaults.items() if key not in given]
    atheris.Setup([sys.argv[0], *extra, *flags], target.check)
    atheris.Fuzz()


# -- all: every target, one process each -------------------------------------------------


@dataclass
class Outcome:
    name: str
    seconds: float
    returncode: int
    executions: int | None = None
    exec_per_second: int | None = None
    coverage: str = "?"
    peak_rss_mb: int | None = None
    artifact: str | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.artifact is None

    def line(self) -> str:
        result = "ok" if self.ok else f"FAILED (exit {self.returncode})"
        if self.artifact:
            result += f": {self.artifact}"
        rate = self.executions / self.seconds if self.executions and self.seconds else 0
        return (
            f"{self.name:<18} {self.executions or 0:>10} execs in {self.seconds:7.1f} s"
            f" ({rate:7.0f}/s)  {self.coverage:<16} peak RSS {self.peak_rss_mb or 0:>4} MB"
            f"  {result}"
        )


def _stat(log: str, key: str) -> int | None:
    match = re.search(rf"^stat::{key}:\s+(\d+)", log, re.MULTILINE)
    return int(match[1]) if match else None


def parse_log(name: str, log: str, seconds: float, returncode: int) -> Outcome:
    """An outcome from a libFuzzer log (``-print_final_stats=1``)."""
    coverage = re.findall(r"^#\d+\s+\w+\s+cov: (\d+) ft: (\d+)", log, re.MULTILINE)
    artifact = re.search(r"Test unit written to (\S+)", log)
    return Outcome(
        name,
        seconds,
        returncode,
        executions=_stat(log, "number_of_executed_units"),
        exec_per_second=_stat(log, "average_exec_per_sec"),
        coverage=f"cov {coverage[-1][0]} ft {coverage[-1][1]}" if coverage else "?",
        peak_rss_mb=_stat(log, "peak_rss_mb"),
        artifact=artifact[1] if artifact else None,
    )


def _seed(corpus: Path, name: str) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in sorted((HERE / "corpus" / name).iterdir()):
        shutil.copyfile(seed, corpus / seed.name)


def _start(name: str, budget: list[str], corpus: Path, out: Path) -> subprocess.Popen[bytes]:
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "fuzz",
        "run",
        name,
        *budget,
        "-print_final_stats=1",
        f"-artifact_prefix={folder}/",
        str(corpus),
    ]
    with (folder / "log").open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


def campaign(
    names: list[str],
    *,
    seconds: int | None,
    runs: int | None,
    jobs: int,
    out: Path,
    corpus: Path | None,
) -> list[Outcome]:
    budget = [f"-max_total_time={seconds}"] if seconds is not None else [f"-runs={runs}"]
    limit = (seconds or 0) + _GRACE_SECONDS if seconds is not None else None
    scratch = Path(tempfile.mkdtemp(prefix="onionpost-fuzz-"))
    base = corpus or scratch
    outcomes: list[Outcome] = []
    pending = list(names)
    running: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                name = pending.pop(0)
                if not (base / name).is_dir() or not any((base / name).iterdir()):
                    _seed(base / name, name)
                running[name] = (_start(name, budget, base / name, out), time.monotonic())
            time.sleep(0.2)
            for name, (process, started) in list(running.items()):
                elapsed = time.monotonic() - started
                if process.poll() is None:
                    if limit is not None and elapsed > limit:
                        process.kill()
                    continue
                del running[name]
                log = (out / name / "log").read_text(errors="replace")
                outcome = parse_log(name, log, elapsed, process.returncode)
                outcomes.append(outcome)
                print(outcome.line(), flush=True)
    finally:
        for process, _ in running.values():
            process.kill()
            process.wait()
        shutil.rmtree(scratch, ignore_errors=True)
    return outcomes


# -- replay and seeds ------------------------------------------------------------------------


def replay(name: str, files: list[Path]) -> int:
    from fuzz.targets import TARGETS

    target = TARGETS[name]
    if not files:
        files = [
            path
            for folder in ("corpus", "regressions")
            if (HERE / folder / name).is_dir()
            for path in sorted((HERE / folder / name).iterdir())
        ]
    failed = 0
    for path in files:
        try:
            target.check(path.read_bytes())
        except Exception:  # what a crash is: anything the target lets out
            failed += 1
            print(f"{path}: CRASH", file=sys.stderr)
            traceback.print_exc()
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"]:
        # libFuzzer's flags (-runs=10) are not argparse's: pass them through.
        run(argv[1] if len(argv) > 1 else "", argv[2:])
        return 0  # atheris.Fuzz() exits the process itself
    # Here onionpost is not instrumented: this process only starts and reads others.
    from fuzz.targets import TARGETS

    parser = argparse.ArgumentParser(prog="python -m fuzz", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    every = commands.add_parser("all", help="run targets, one process each, and summarize")
    budget = every.add_mutually_exclusive_group()
    budget.add_argument("--seconds", type=int, help="time per target (default 60)")
    budget.add_argument("--runs", type=int, help="executions per target instead of a time")
    every.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    every.add_argument("--out", type=Path, default=ROOT / ".fuzz", help="logs and crash files")
    every.add_argument("--corpus", type=Path, help="keep working corpora here (default: temp)")
    every.add_argument("targets", nargs="*", metavar="TARGET", help=", ".join(TARGETS))
    again = commands.add_parser("replay", help="run files through a target, without atheris")
    again.add_argument("target", choices=TARGETS)
    again.add_argument("files", nargs="*", type=Path)
    seeds = commands.add_parser("seeds", help="write the seed corpus from real objects")
    seeds.add_argument("--check", action="store_true", help="fail if any seed would change")
    args = parser.parse_args(argv)

    if args.command == "all":
        unknown = set(args.targets) - TARGETS.keys()
        if unknown:
            parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
        seconds = args.seconds if args.seconds is not None or args.runs is not None else 60
        outcomes = campaign(
            list(args.targets or TARGETS),
            seconds=seconds,
            runs=args.runs,
            jobs=max(1, args.jobs),
            out=args.out.resolve(),
            corpus=args.corpus.resolve() if args.corpus else None,
        )
        failed = [o for o in outcomes if not o.ok]
        for outcome in failed:
            print(f"{outcome.name}: see {args.out / outcome.name / 'log'}", file=sys.stderr)
        return 1 if failed else 0
    if args.command == "replay":
        return replay(args.target, args.files)
    from fuzz import seeds as seed_corpus

    if args.check:
        wrong = seed_corpus.check()
        for line in wrong:
            print(f"fuzz/corpus/{line}", file=sys.stderr)
        return 1 if wrong else 0
    seed_corpus.write()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
