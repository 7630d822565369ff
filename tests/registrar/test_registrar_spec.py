"""trust.md §8.4 agrees with the code: the registrar's records, their tags and
fields in order, the one refusal, and the intervals."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from onionpost.limits import MAX_REGISTRAR_REFRESH, MIN_REGISTRAR_REFRESH, REGISTRAR_REFRESH
from onionpost.proto import messages as m
from onionpost.registrar import _server as server

SPEC = Path(__file__).resolve().parents[2] / "protocol-spec" / "trust.md"
RECORDS = [cls for tag, cls in sorted(m._BY_TAG.items()) if 48 <= tag <= 53]


def _section(title: str) -> str:
    text = SPEC.read_text(encoding="utf-8")
    match = re.search(rf"^### {re.escape(title)}\n(.*?)(?=^##|\Z)", text, re.M | re.S)
    assert match is not None, f"trust.md has no '### {title}'"
    return match.group(1)


@pytest.mark.parametrize("record", RECORDS, ids=lambda c: c.__name__)
def test_every_registrar_record_is_in_the_table_with_its_fields_in_order(record: type) -> None:
    rows = {}
    for line in _section("8.4 Records").splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[1].strip("`")] = cells
    assert record.__name__ in rows, f"trust.md §8.4 has no row for {record.__name__}"
    tag, _, fields, _ = rows[record.__name__]
    assert int(tag) == record.TAG  # type: ignore[attr-defined]
    assert re.findall(r"`(\w+)`:", fields) == [f.name for f in dataclasses.fields(record)]


def test_the_one_refusal_and_the_intervals_are_the_specs() -> None:
    records = " ".join(_section("8.4 Records").split())
    assert f'RgResult(req, 1, "{server.REFUSED_DETAIL}")' in records
    assert m.RgCode.REFUSED == 1
    assert f"at most {server.MAX_SESSIONS_PER_PEER} sessions per peer" in records
    fresh = " ".join(_section("8.1 The registrar's home").split())
    assert f"`REGISTRAR_REFRESH` {REGISTRAR_REFRESH}" in fresh
    assert f"`MIN_REGISTRAR_REFRESH` {MIN_REGISTRAR_REFRESH}" in fresh
    assert f"`MAX_REGISTRAR_REFRESH` {MAX_REGISTRAR_REFRESH}" in fresh
