"""Names chosen by people: file names from other endpoints, and contact names.

A FileOffer's ``name`` is the sender's choice. Two rules, kept together here
so that the protocol core, the store and the CLI agree:

- :func:`file_name_problem` is the wire rule (spec.md §5.3): a name, never
  a path. It says what is wrong, or ``None``; each caller raises its own
  error (``MessageDecodeError`` for a peer's record, ``ConfigError`` for a
  local call).
- :func:`safe_file_name` turns any admitted name into one that is safe to
  create in a directory of ours and to show in a terminal or file manager
  (``protocol-spec/storage.md`` §6.1)::

      ".bash_profile"           -> "_.bash_profile"    (no hidden files)
      "\\u202egnp.exe"           -> "_gnp.exe"          (no bidi overrides)
      "../x"                    -> "x"                 (the last component only)
      "a\\nb.txt"                -> "a_b.txt"           (no control characters)
      200 * "é" + ".pdf"        -> 125 * "é" + ".pdf"  (255 bytes of UTF-8 at most)

  It is idempotent, and its result is never empty, ``.`` or ``..``.

A contact's name (the name in a contact card, our own display name, the name
a contact is stored under) follows one rule, :func:`contact_name_problem`
(``protocol-spec/storage.md`` §3): 1 to MAX_CONTACT_NAME characters, not only
spaces, and none of the characters that could hide or reorder text on a
terminal. The home's cards and secrets and the store all check it here.

Pure functions on ``str``: no I/O, usable from :mod:`onionpost.proto`.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Final

from onionpost.limits import MAX_CONTACT_NAME, MAX_FILE_NAME

__all__ = [
    "contact_name_problem",
    "file_name_problem",
    "numbered_file_name",
    "safe_file_name",
    "stored_name",
]

# Controls, format characters (bidi overrides, zero-width joiners), surrogates,
# private use, line and paragraph separators: what a contact name may not
# contain, and what safe_file_name replaces (storage.md §3).
_FORBIDDEN_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_SEPARATORS: Final = re.compile(r"[/\\]")
_REPLACEMENT: Final = "_"
_FALLBACK: Final = "file"
# A suffix longer than this is not an extension worth keeping whole.
_MAX_EXTENSION: Final = 32


def file_name_problem(name: object) -> str | None:
    """What makes ``name`` unacceptable as a FileOffer's name, or ``None``.

    Non-empty, neither ``.`` nor ``..``, none of ``/``, ``\\``, NUL, and at
    most MAX_FILE_NAME bytes of UTF-8.
    """
    if not isinstance(name, str) or not name or name in {".", ".."}:
        return "a file name must not be empty, '.' or '..'"
    if any(c in name for c in "/\\\x00"):
        return "a file name must not contain '/', '\\' or NUL"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILE_NAME:
        return f"a file name is at most {MAX_FILE_NAME} bytes of UTF-8"
    return None


def stored_name(name: str) -> str:
    """The form a contact's name is stored and looked up in: Unicode NFC (a
    name typed in decomposed form, ``C`` + a combining cedilla, is the same
    name as ``Ç``, and two contacts cannot look the same that way), without
    the spaces around it (``' bob '`` is ``bob``)."""
    return unicodedata.normalize("NFC", name).strip()


def contact_name_problem(name: object) -> str | None:
    """What makes ``name`` unusable as a contact's name, or ``None``.

    The answer completes a sentence about the name ("the display name" +
    " is empty"); each caller raises its own error with it.
    """
    if not isinstance(name, str):
        return "must be text"
    if not name.strip():
        return "is empty"
    if len(name) > MAX_CONTACT_NAME:
        return f"is longer than {MAX_CONTACT_NAME} characters"
    if any(unicodedata.category(c) in _FORBIDDEN_CATEGORIES for c in name):
        return "contains control or formatting characters"
    return None


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _cut(text: str, limit: int) -> str:
    """The longest prefix of ``text`` within ``limit`` bytes of UTF-8 that
    splits neither a character nor a base character from its combining marks."""
    if _utf8_len(text) <= limit:
        return text
    kept = 0
    used = 0
    for ch in text:
        size = _utf8_len(ch)
        if used + size > limit:
            break
        used += size
        kept += 1
    # The first character left out is a mark: its base goes too.
    while kept and unicodedata.category(text[kept])[0] == "M":
        kept -= 1
    return text[:kept]


def _split_extension(name: str) -> tuple[str, str]:
    dot = name.rfind(".")
    if dot <= 0 or _utf8_len(name) - _utf8_len(name[:dot]) > _MAX_EXTENSION:
        return name, ""
    return name[:dot], name[dot:]


def _fit(stem: str, extension: str, limit: int) -> str:
    """``stem + extension`` within ``limit`` bytes, the stem shortened first."""
    return (_cut(stem, limit - _utf8_len(extension)) or _FALLBACK) + extension


def safe_file_name(name: str) -> str:
    """A name for a file a contact sent, safe to create here (see the module doc).

    NFC-normalised; only the last component of anything that looks like a
    path; each forbidden character replaced by ``_``; a leading dot
    prefixed with ``_``; ``file`` for what is left empty; at most
    MAX_FILE_NAME bytes of UTF-8, cut on a character boundary and keeping
    the extension where it can.
    """
    text = unicodedata.normalize("NFC", name)
    text = "".join(
        _REPLACEMENT if unicodedata.category(c) in _FORBIDDEN_CATEGORIES else c for c in text
    )
    parts = [part for part in _SEPARATORS.split(text) if part]
    text = parts[-1] if parts else ""
    if text.startswith("."):
        text = _REPLACEMENT + text
    if not text:
        return _FALLBACK
    return _fit(*_split_extension(text), MAX_FILE_NAME)


def numbered_file_name(name: str, number: int) -> str:
    """``stem (number).ext`` for when ``safe_file_name(name)`` is taken already,
    the stem shortened so that the whole stays within MAX_FILE_NAME bytes."""
    stem, extension = _split_extension(safe_file_name(name))
    return _fit(stem, f" ({number}){extension}", MAX_FILE_NAME)
