"""Is a new passphrase strong enough to seal an endpoint's secrets?

Theory of operation
-------------------
A passphrase guards ``secrets.json`` against whoever copies the disk
(storage.md §2): they can guess offline, as fast as their hardware runs
Argon2id. So ``onionpost init`` refuses a passphrase whose estimated
guess count is below :data:`MIN_GUESSES_LOG10`, with the estimator's reason,
unless the operator says ``--weak-passphrase-ok``.

The estimate is zxcvbn's (Dropbox's estimator, its Python port): it finds
dictionary words, names, keyboard patterns, repeats, sequences and dates,
and counts the guesses an attacker who knows those patterns needs. A
passphrase of several uncommon words passes; ``password1``, ``hunter2hunter2``
or a keyboard walk do not. Nothing else imports zxcvbn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from zxcvbn import zxcvbn

__all__ = ["MAX_ESTIMATED_LENGTH", "MIN_GUESSES_LOG10", "passphrase_problem"]

#: zxcvbn's score 4, "very unguessable": at least 10^10 guesses. At the
#: MODERATE Argon2id cost (~0.7 s a guess on one core) that is centuries of
#: one core's time, years of a large cluster's.
MIN_GUESSES_LOG10: Final = 10.0
#: zxcvbn judges at most this many characters (it refuses more: its matching
#: is superlinear in the length); a longer passphrase is judged by its start.
MAX_ESTIMATED_LENGTH: Final = 72


def passphrase_problem(passphrase: str, user_inputs: Sequence[str] = ()) -> str | None:
    """Why ``passphrase`` is too weak to seal secrets, or None if it is strong enough.

    ``user_inputs`` are words an attacker would try first (the display name,
    say): a passphrase made of them counts as guessed.
    """
    if not passphrase:
        return "the passphrase is empty"
    result = zxcvbn(passphrase[:MAX_ESTIMATED_LENGTH], user_inputs=list(user_inputs))
    guesses = float(result["guesses_log10"])
    if guesses >= MIN_GUESSES_LOG10:
        return None
    feedback = result["feedback"]
    hints = [str(feedback.get("warning") or "")] + [str(s) for s in feedback.get("suggestions", [])]
    reason = " ".join(h.rstrip(".") + "." for h in hints if h)
    return (
        f"the passphrase is too weak (about 10^{guesses:.0f} guesses, want 10^"
        f"{MIN_GUESSES_LOG10:.0f})" + (f": {reason}" if reason else "")
    )
