"""Names: file names from other endpoints (the wire rule, and the one name we write to
disk), and the one rule for contact names that cards, secrets and the store share."""

from __future__ import annotations

import unicodedata

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from onionpost.errors import ConfigError, LocalProtocolError, MessageDecodeError
from onionpost.home import check_name
from onionpost.limits import MAX_CONTACT_NAME, MAX_FILE_NAME
from onionpost.names import (
    contact_name_problem,
    file_name_problem,
    numbered_file_name,
    safe_file_name,
)
from onionpost.proto import messages as m

FORBIDDEN = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}

# Any code point, surrogates included: a name can hold anything a str can.
any_text = st.text(st.characters(codec=None, categories=None), max_size=400)


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        (".bash_profile", "_.bash_profile"),
        ("...", "_..."),
        ("\u202egnp.exe", "_gnp.exe"),  # RIGHT-TO-LEFT OVERRIDE: shows as "exe.png"
        ("a\u200bb\u2066c", "a_b_c"),  # zero-width space, bidi isolate
        ("line\nbreak\r.txt", "line_break_.txt"),
        ("tab\there\x00\x7f", "tab_here__"),
        ("para\u2029graph\u2028", "para_graph_"),
        ("private\ue000use", "private_use"),
        ("../x", "x"),
        ("/etc/passwd", "passwd"),
        ("C:\\Windows\\evil.dll", "evil.dll"),
        ("dir/", "dir"),
        ("/", "file"),
        ("", "file"),
        (".", "_."),
        ("..", "_.."),
        ("x/..", "_.."),
        ("e\u0301", "\u00e9"),  # NFC
        ("\uff21.txt", "\uff21.txt"),  # NFC, not NFKC: a fullwidth A stays
    ],
)
def test_safe_file_name_examples(name: str, safe: str) -> None:
    assert safe_file_name(name) == safe


def test_long_names_are_cut_on_characters_keeping_the_extension() -> None:
    name = "\u00e9" * 200 + ".pdf"  # 404 bytes
    safe = safe_file_name(name)
    assert safe == "\u00e9" * 125 + ".pdf"  # 254 bytes: half an é would make 255
    assert len(safe.encode()) == 254
    emoji = "\U0001f600" * 70 + ".jpeg"  # 4-byte characters
    assert safe_file_name(emoji) == "\U0001f600" * 62 + ".jpeg"
    exact = "\u6f22" * 85  # 255 bytes exactly
    assert safe_file_name(exact) == exact
    assert safe_file_name(exact + "x") == exact  # one byte over: the x goes
    assert safe_file_name("\u6f22" + exact) == exact  # three over: one character


def test_a_cut_never_strips_marks_from_their_base() -> None:
    name = "a" * 253 + "e\u0301\u0323" + ".not-an-extension-because-it-is-far-too-long"
    safe = safe_file_name(name)
    assert safe == "a" * 253  # "e" and its marks go together
    combined = "x" * 252 + "\u1100\u1161\u11a8"  # Hangul jamo, composed by NFC
    assert safe_file_name(combined) == "x" * 252 + "\uac01"


def test_a_long_extension_is_not_kept_whole() -> None:
    name = "a" * 300 + "." + "b" * 40
    safe = safe_file_name(name)
    assert safe == "a" * 255


@given(any_text)
def test_safe_file_name_properties(name: str) -> None:
    safe = safe_file_name(name)
    assert safe not in {"", ".", ".."}
    assert not safe.startswith(".")
    assert "/" not in safe
    assert "\\" not in safe
    assert 0 < len(safe.encode("utf-8")) <= MAX_FILE_NAME  # encodes: no surrogates left
    assert not any(unicodedata.category(c) in FORBIDDEN for c in safe)
    assert unicodedata.is_normalized("NFC", safe)
    assert file_name_problem(safe) is None  # also a name the wire admits
    assert safe_file_name(safe) == safe  # idempotent


@given(any_text, st.integers(1, 10**6))
def test_numbered_names_stay_safe_and_distinct(name: str, number: int) -> None:
    numbered = numbered_file_name(name, number)
    assert safe_file_name(numbered) == numbered
    assert f" ({number})" in numbered
    assert numbered != safe_file_name(name)


def test_numbered_names_keep_the_extension() -> None:
    assert numbered_file_name("photo.jpg", 1) == "photo (1).jpg"
    assert numbered_file_name("../README", 2) == "README (2)"
    long = numbered_file_name("\u00e9" * 200 + ".pdf", 12)
    assert long.endswith("\u00e9 (12).pdf")
    assert len(long.encode()) <= MAX_FILE_NAME


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "empty"),
        (".", "empty"),
        ("..", "empty"),
        ("a/b", "must not contain"),
        ("a\\b", "must not contain"),
        ("nul\x00", "must not contain"),
        ("x" * 256, "at most 255 bytes"),
        ("\u00e9" * 128, "at most 255 bytes"),
        (None, "empty"),
    ],
)
def test_the_wire_rule(name: object, problem: str) -> None:
    found = file_name_problem(name)
    assert found is not None
    assert problem in found


def test_the_wire_rule_admits_what_is_merely_unsafe() -> None:
    # The wire carries names as sent; they are made safe when written.
    for name in (".bash_profile", "\u202egnp.exe", "a\nb", "x" * 255):
        assert file_name_problem(name) is None


@pytest.mark.parametrize("name", ["a/b", "..", "\\x", "nul\x00"])
def test_the_decoder_uses_the_wire_rule(name: str) -> None:
    fields = [int(m.MessageType.FILE_OFFER), bytes(16), 1, name, 1, bytes(64), "a/b"]
    with pytest.raises(MessageDecodeError, match="bad file name"):
        m.decode(msgpack.packb(fields, use_bin_type=True))
    fields[3] = ".bash_profile"  # unsafe to write as is, but a name
    assert isinstance(m.decode(msgpack.packb(fields, use_bin_type=True)), m.FileOffer)
    with pytest.raises(LocalProtocolError):
        m.encode(m.FileOffer(bytes(16), 1, name, 1, bytes(64)))


# -- contact names ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("x" * (MAX_CONTACT_NAME + 1), f"longer than {MAX_CONTACT_NAME}"),
        ("tab\there", "control or formatting"),
        ("bidi\u202e", "control or formatting"),
        ("line\u2028sep", "control or formatting"),
        (None, "must be text"),
        (b"bytes", "must be text"),
    ],
)
def test_the_contact_name_rule(name: object, problem: str) -> None:
    found = contact_name_problem(name)
    assert found is not None
    assert problem in found
    with pytest.raises(ConfigError, match=f"^the card's name {found}$"):
        check_name(name, what="the card's name")


@pytest.mark.parametrize("name", ["Alice", "x" * MAX_CONTACT_NAME, "Zoë", "李", "a b"])
def test_the_contact_name_rule_admits(name: str) -> None:
    assert contact_name_problem(name) is None
    assert check_name(name) == name


@given(any_text)
def test_the_home_applies_the_one_rule(name: str) -> None:
    problem = contact_name_problem(name)
    if problem is None:
        assert check_name(name) == name
    else:
        with pytest.raises(ConfigError):
            check_name(name)
