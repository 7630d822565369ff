"""protocol-spec/local-api.md's record tables are generated from onionpost.api."""

from __future__ import annotations

from pathlib import Path

import pytest

from onionpost import api

DOC = Path(__file__).resolve().parents[1] / "protocol-spec" / "local-api.md"


def generated_part(text: str) -> str:
    start = text.index(api.GENERATED_BEGIN) + len(api.GENERATED_BEGIN) + 1
    return text[start : text.index(api.GENERATED_END)]


def test_the_doc_holds_the_tables_the_code_defines() -> None:
    assert generated_part(DOC.read_text(encoding="utf-8")) == api.markdown_tables(), (
        "local-api.md is stale: paste onionpost.api.markdown_tables() between its markers"
    )


def test_the_check_can_fail() -> None:
    text = DOC.read_text(encoding="utf-8").replace("| `contact` | string | yes |", "| `x` |", 1)
    assert generated_part(text) != api.markdown_tables()


@pytest.mark.parametrize("method", sorted(api.REQUESTS))
def test_every_method_is_documented(method: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"#### `{method}` parameters" in text
    assert f"**{method}**" in text
