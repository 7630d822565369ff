"""The passphrase strength rule of ``onionpost init`` (storage.md §2)."""

from __future__ import annotations

import pytest

from onionpost.home import passphrase_problem
from onionpost.home._passphrase import MIN_GUESSES_LOG10


@pytest.mark.parametrize(
    "weak", ["", "pw", "password1", "qwertyuiop", "hunter2hunter2", "Alice2024!", "alice alice"]
)
def test_weak_passphrases_are_refused_with_a_reason(weak: str) -> None:
    problem = passphrase_problem(weak, user_inputs=["alice"])
    assert problem is not None
    assert "weak" in problem or "empty" in problem


@pytest.mark.parametrize(
    "strong", ["correct horse battery staple", "quartz lantern mosaic drifts", "k3#9vLq!2mZp&Wx"]
)
def test_strong_passphrases_pass(strong: str) -> None:
    assert passphrase_problem(strong) is None


def test_the_bar_and_a_long_passphrase() -> None:
    assert MIN_GUESSES_LOG10 == 10.0
    assert passphrase_problem("lantern " * 500 + "quartz mosaic drifts") is not None
    assert passphrase_problem("quartz lantern mosaic drifts " * 10) is None
