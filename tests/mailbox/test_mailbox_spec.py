"""mailbox.md §6 and §7 agree with the code: records, result codes, answers and bounds."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from onionpost.mailbox import MailboxPolicy
from onionpost.mailbox import _server as server
from onionpost.proto import messages as m

SPEC = Path(__file__).resolve().parents[2] / "protocol-spec" / "mailbox.md"
# 32..46: a mailbox session and MailboxInfo; 48..53 are the registrar's (trust.md §8.4).
RECORDS = [cls for tag, cls in sorted(m._BY_TAG.items()) if 32 <= tag <= 46]


def _section(title: str) -> str:
    text = SPEC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match is not None, f"mailbox.md has no '## {title}'"
    return match.group(1)


def _rows(text: str) -> list[list[str]]:
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


def _number(cell: str) -> int:
    return int(re.sub(r"[,_\s]", "", re.match(r"[\d,_]+", cell).group(0)))  # type: ignore[union-attr]


@pytest.mark.parametrize("record", RECORDS, ids=lambda c: c.__name__)
def test_every_mailbox_record_is_in_the_table_with_its_fields_in_order(record: type) -> None:
    rows = {row[1].strip("*"): row for row in _rows(_section("6. Wire records")) if len(row) == 5}
    assert record.__name__ in rows, f"mailbox.md §6 has no row for {record.__name__}"
    tag, _, fields, _, _ = rows[record.__name__]
    assert int(tag) == record.TAG  # type: ignore[attr-defined]
    assert re.findall(r"`(\w+)`:", fields) == [f.name for f in dataclasses.fields(record)]


def test_every_result_code_is_in_the_table() -> None:
    rows = {row[1]: row[0] for row in _rows(_section("6. Wire records")) if len(row) == 3}
    for code in m.MbCode:
        assert rows.get(code.name) == str(int(code)), code.name


def test_the_answers_named_are_the_servers() -> None:
    behaviour = " ".join(_section("7. Mailbox behaviour").split())
    assert f'"{server.CODE_REFUSED_DETAIL}"' in behaviour
    assert f'NOT_FOUND, "{server.NOT_FOUND_DETAIL}", 0)' in behaviour
    assert "quota exceeded: at most N envelopes / B bytes from one contact" in behaviour
    assert "quota exceeded: at most N envelopes / B bytes for one owner" in behaviour


def test_every_bound_is_in_the_bounds_table() -> None:
    rows = {
        row[0].replace("`", "").split(" ")[0]: row[1]
        for row in _rows(_section("7. Mailbox behaviour"))
    }
    constants = [
        "MAX_PENDING_REPLIES",
        "MAX_SESSIONS_PER_PEER",
        "FETCH_PAGE",
        "MAX_OWNERS",
        "MAX_ONE_TIME_PREKEYS",
        "MAX_OPEN_CODES",
        "MAX_CLIENTS",
    ]
    for name in constants:
        assert _number(rows[name]) == getattr(server, name), name
    policy = MailboxPolicy()
    for field in (
        "records_per_second",
        "max_envelope",
        "max_envelopes_per_contact",
        "max_bytes_per_contact",
        "max_envelopes_per_owner",
        "max_bytes_per_owner",
        "max_contacts_per_owner",
        "max_disk_use",
        "retention",
    ):
        assert _number(rows[field]) == getattr(policy, field), field
    assert f"HOUSEKEEPING_INTERVAL ({server.HOUSEKEEPING_INTERVAL:g} s)" in _section(
        "7. Mailbox behaviour"
    )
