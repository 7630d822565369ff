"""When our tor is made to forget its onion client state, decided without I/O.

tor keeps, for two minutes from the first failure, the introduction points
it failed to reach, and refuses at once (SOCKS 0xF2) a dial to a service
whose introduction points all failed. After our tor could not build
circuits for a while (a relay it relied on restarted, the network
flapped), every dial to a service it tried meanwhile fails that way, though
the service is fine; a fresh descriptor does not help, as the service kept
its introduction points. :meth:`~onionpost.tor.Tor.forget_client_state`
drops that record, so the dial that follows is a real attempt.

:class:`ForgetRule` says when: an address refused so twice in a row (the
first refusal asked for a fresh descriptor), on a tor we launched (on a
shared one it would change others' circuits), at most every
``FORGET_SECONDS``.
"""

from __future__ import annotations

from typing import Final

from onionpost.proto.address import OnionAddress

__all__ = ["FORGET_SECONDS", "INTRO_FAILED_MAX", "ForgetRule"]

# tor's record of failed introduction points lasts 120 s; it is dropped at
# most this often (tor itself takes NEWNYM at most every 10 s). Not a minute:
# a second incident soon after the first (a contact's tor killed just after
# a relay restart) would wait the rest of that minute for its dial.
FORGET_SECONDS: Final = 15.0
# Addresses remembered as refused (contacts and mailboxes dialed); past it
# the set starts again.
INTRO_FAILED_MAX: Final = 4096


class ForgetRule:
    """Which addresses were last refused for their introduction points, and
    when tor last forgot; see the module docstring."""

    def __init__(self, *, ours: bool) -> None:
        self._ours = ours
        self._refused: set[OnionAddress] = set()
        self._forgot_at: float | None = None

    def __repr__(self) -> str:
        return f"ForgetRule({len(self._refused)} refused, ours={self._ours})"

    def refused(self, address: OnionAddress, now: float) -> bool:
        """A dial to ``address`` was refused for its introduction points (SOCKS
        0xF2). True: make tor forget now (then dial once more)."""
        again = address in self._refused
        if not again and len(self._refused) >= INTRO_FAILED_MAX:
            self._refused.clear()
        self._refused.add(address)
        if not again or not self._ours:
            return False
        if self._forgot_at is not None and now - self._forgot_at < FORGET_SECONDS:
            return False
        self._forgot_at = now
        return True

    def other(self, address: OnionAddress) -> None:
        """A dial to ``address`` was answered, or failed some other way."""
        self._refused.discard(address)
