"""Log fields that peer- or user-provided text cannot forge (onionpost._logs)."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from onionpost._logs import MAX_LOGGED_TEXT, contact_ref, safe


def test_plain_values_stay_as_they_are() -> None:
    assert safe("bob") == "bob"
    assert safe(3) == "3"
    assert safe("ConnectionResetError") == "ConnectionResetError"
    assert contact_ref(3) == "#3"


def test_anything_else_is_one_quoted_escaped_token() -> None:
    assert safe("a b=c\nevent=forged") == '"a b=c\\nevent=forged"'
    assert safe("\x1b[31mred") == '"\\u001b[31mred"'
    assert safe('say "hi"') == '"say \\"hi\\""'
    assert safe("") == '""'
    long = safe("x y" * 100)
    assert json.loads(long) == ("x y" * 100)[:MAX_LOGGED_TEXT] + "..."


@given(st.text(max_size=200))
def test_no_text_breaks_out_of_its_field(text: str) -> None:
    value = safe(text)
    # One printable ASCII token: no line break, no control character, and
    # either no space or '=' at all or wholly inside one JSON string.
    assert value.isascii()
    assert all(ch.isprintable() for ch in value)
    if " " in value or "=" in value or '"' in value:
        assert json.loads(value).startswith(text[:MAX_LOGGED_TEXT])
