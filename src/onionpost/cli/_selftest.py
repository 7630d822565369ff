"""``onionpost selftest``: known-answer tests, and replay of Noise vector files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from onionpost.proto.selftest import run_self_test
from onionpost.proto.vectors import iter_vectors, replay_vector


@click.command()
@click.option(
    "--vectors",
    "vector_files",
    multiple=True,
    type=click.Path(path_type=Path),
    help="Vector file in the Noise wiki JSON format (repeatable; extra names are taken too).",
)
@click.argument("more_files", nargs=-1, type=click.Path(path_type=Path))
def selftest(vector_files: tuple[Path, ...], more_files: tuple[Path, ...]) -> None:
    """Run the built-in known-answer tests; with --vectors, replay vector files too.

    Ends with the line 'N passed, N failed' (of the vectors when --vectors is
    given, else of the built-in tests) and exits 1 if anything failed.
    """
    files = vector_files + more_files
    failed_builtin = 0
    builtin = run_self_test()
    for name, reason in builtin:
        if reason is not None:
            failed_builtin += 1
            click.echo(f"FAILED built-in: {name}: {reason}")
    ok = len(builtin) - failed_builtin
    click.echo(f"built-in known-answer tests: {ok} of {len(builtin)} passed")
    if not files:
        click.echo(f"{len(builtin) - failed_builtin} passed, {failed_builtin} failed")
        raise SystemExit(1 if failed_builtin else 0)

    passed = failed = 0
    for path in files:
        try:
            vectors = list(iter_vectors(json.loads(path.read_text())))
        except (OSError, ValueError, TypeError) as exc:
            failed += 1
            click.echo(f"FAILED {path}: cannot read vectors: {exc}")
            continue
        for index, vector in enumerate(vectors):
            outcome = replay_vector(vector)
            if outcome.passed:
                passed += 1
            else:
                failed += 1
                click.echo(f"FAILED {path.name}[{index}] {outcome.name}: {outcome.detail}")
    click.echo(f"{passed} passed, {failed} failed")
    raise SystemExit(1 if failed or failed_builtin else 0)
