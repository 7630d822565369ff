"""What one contact's delivery should do next, decided without I/O (STYLE 18).

:class:`LinkState` is a plain object: the engine tells it what happened
(``dial_failed``, ``session_up``, ``deposit_done``, ...) and asks it what to do
(:meth:`LinkState.direct_step`, :meth:`LinkState.deposit_step`), passing
``now`` (trio time) and what waits for the contact. It never reads a clock,
the store or the network, so its rules are tested as tables.

Two activities per contact, each with its own :class:`Backoff`:

- *direct*: dial the contact when something waits for it (or to announce that
  we are back) and no session is up;
- *deposit*: when the contact has a mailbox and has been unreachable for
  ``mailbox_after``, seal what waits into envelopes for that mailbox. It does
  not wait behind a direct dial that hangs: a dial in flight for
  ``mailbox_after`` counts as unreachable too.

:func:`keep_new_session` is the rule both ends apply when two sessions with
one contact are up at once, so that both keep the same one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = ["Backoff", "LinkState", "Step", "StepKind", "Work", "keep_new_session"]


# Seconds before a deposit is tried again when its dial failed the way a
# stale descriptor fails and a fresh one was asked for.
DEPOSIT_RETRY_AFTER_REFETCH: Final = 1.0
# A contact that accepted a session within WARM_SECONDS is redialled at least
# every WARM_RETRY_MAX seconds (or retry_initial, if larger): it was just
# here, so the failure is as likely ours (our tor unable to build circuits
# for a while) as its going away, and a backoff that grew during our own
# outage would keep it waiting for minutes after the outage ended.
WARM_SECONDS: Final = 600.0
WARM_RETRY_MAX: Final = 30.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff with jitter: the one formula for every retry."""

    initial: float
    maximum: float

    def delay(self, failures: int, jitter: float) -> float:
        """Seconds to wait after ``failures`` failures in a row (>= 1);
        ``jitter`` in [0, 1) spreads it over the upper half of the ceiling."""
        ceiling = min(self.maximum, self.initial * 2 ** min(max(failures, 1) - 1, 30))
        return float(ceiling * (0.5 + 0.5 * jitter))


class StepKind(enum.Enum):
    DIAL = "dial"  # something waits for the contact: reach it
    ANNOUNCE = "announce"  # nothing waits, but tell it we are back
    DEPOSIT = "deposit"  # seal what waits into its mailbox
    WAIT = "wait"  # nothing until ``until`` (or a wake-up)
    IDLE = "idle"  # nothing until a wake-up


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    until: float | None = None


IDLE = Step(StepKind.IDLE)


@dataclass(frozen=True, slots=True)
class Work:
    """What waits for the contact, as the store and the mailbox seam say."""

    direct: bool = False  # outbox, owed acks or receipts, an announcement
    deposit: bool = False  # the contact has a mailbox and something for it


@dataclass(slots=True)
class LinkState:
    """One contact's delivery state; see the module docstring."""

    backoff: Backoff
    mailbox_after: float
    announce_attempts: int
    sessions: int = 0
    failures: int = 0  # failed attempts since the contact last accepted a session
    last_error: str = ""
    retry_at: float = 0.0  # no dial before this (trio time)
    announce: int = 0  # dials left that only tell the contact we are back
    # Whether the contact is known to be away: a dial or a session failed, or
    # it said it was going away. A clean idle close says nothing.
    away: bool = False
    down_at: float = 0.0  # since when no session is up (trio time)
    seen_at: float | None = None  # when a session the contact accepted last ended
    dial_since: float | None = None  # when the dial under way began
    deposit_at: float = 0.0  # no deposit before this
    deposit_failures: int = 0
    # The last deposit failure was retried soon after a descriptor refetch.
    deposit_retried_soon: bool = False
    mailbox_error: str = ""

    @classmethod
    def new(cls, backoff: Backoff, mailbox_after: float, announce: int, now: float) -> LinkState:
        """A link for a contact just added, or every one at start: it learns at
        once that we are up."""
        return cls(backoff, mailbox_after, announce, announce=announce, down_at=now)

    # -- decisions ----------------------------------------------------------------------

    def direct_step(self, now: float, work: Work) -> Step:
        if self.sessions:
            return IDLE
        if not work.direct and self.announce <= 0:
            return IDLE
        if self.retry_at > now:
            return Step(StepKind.WAIT, self.retry_at)
        return Step(StepKind.DIAL) if work.direct else Step(StepKind.ANNOUNCE)

    def deposit_step(self, now: float, work: Work) -> Step:
        if not work.deposit or self.sessions:
            return IDLE
        due = max(self.down_at + self.mailbox_after, self.deposit_at)
        if not self.away:
            if self.dial_since is None:
                return IDLE  # not known to be away: the direct path decides
            due = max(due, self.dial_since + self.mailbox_after)
        if due > now:
            return Step(StepKind.WAIT, due)
        return Step(StepKind.DEPOSIT)

    def dialing_for(self, now: float) -> float | None:
        """Seconds the dial under way has taken (a dial to an onion service
        that is away takes tens of seconds to fail); None without one."""
        return None if self.dial_since is None else max(0.0, now - self.dial_since)

    def retry_in(self, now: float) -> float | None:
        """Seconds until the next dial, when one waits out a backoff."""
        if self.sessions or not self.failures:
            return None
        return max(0.0, self.retry_at - now)

    # -- what happened ------------------------------------------------------------------

    def dial_started(self, now: float, *, announcing: bool) -> None:
        self.dial_since = now
        if announcing:
            self.announce -= 1

    def dial_ended(self) -> None:
        """Our dial reached the contact but its session was not kept (it lost a
        crossing to the contact's own): nothing failed, nothing is under way."""
        self.dial_since = None

    def dial_failed(self, now: float, reason: str, jitter: float) -> float:
        """A dial, or a session, failed: back off. Returns the delay."""
        self.dial_since = None
        self.failures += 1
        self.last_error = reason
        self.away = True
        backoff = self.backoff
        if self.seen_at is not None and now - self.seen_at < WARM_SECONDS:
            cap = max(backoff.initial, WARM_RETRY_MAX)
            backoff = Backoff(backoff.initial, min(backoff.maximum, cap))
        delay = backoff.delay(self.failures, jitter)
        self.retry_at = now + delay
        return delay

    def session_up(self) -> None:
        self.dial_since = None
        self.sessions += 1
        self.announce = 0  # the contact knows we are up

    def proven(self) -> None:
        """The contact sent a record in a session: it accepts us."""
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""
        self.away = False

    def session_down(self, now: float, *, going_away: bool) -> None:
        """A session ended in order (``session_failed`` follows one that did not)."""
        self.sessions -= 1
        if not self.sessions:
            self.down_at = now
            if going_away:
                self.away = True

    def seen(self, now: float) -> None:
        """A session the contact accepted (it sent a record) ended now."""
        self.seen_at = now

    def contact_back(self) -> None:
        """The contact dialed us: what waits need not wait out a backoff."""
        self.retry_at = 0.0
        self.announce = 0

    def retry_now(self) -> None:
        self.retry_at = 0.0
        self.failures = 0

    def announce_again(self) -> None:
        self.announce = self.announce_attempts
        self.retry_at = 0.0

    def deposit_done(self, gather_until: float = 0.0) -> None:
        """A deposit session ended in order; the next one not before
        ``gather_until`` (what is queued meanwhile goes in one envelope)."""
        self.deposit_failures = 0
        self.deposit_retried_soon = False
        self.deposit_at = gather_until
        self.mailbox_error = ""

    def mailbox_unfit(self, reason: str) -> None:
        """The contact's mailbox is not one to deposit into (``reason``)."""
        self.mailbox_error = reason

    def deposit_failed(
        self, now: float, reason: str, jitter: float, *, refetched: bool = False
    ) -> float:
        """A deposit failed: back off. ``refetched``: the dial made our tor
        fetch the mailbox's descriptor anew (a restarted mailbox has new
        introduction points), so the next try comes after at most
        DEPOSIT_RETRY_AFTER_REFETCH; once in a row, so a mailbox that stays
        down is not dialed in a loop. Returns the delay."""
        self.deposit_failures += 1
        self.mailbox_error = reason
        delay = self.backoff.delay(self.deposit_failures, jitter)
        soon = refetched and not self.deposit_retried_soon
        self.deposit_retried_soon = soon
        if soon:
            delay = min(delay, DEPOSIT_RETRY_AFTER_REFETCH)
        self.deposit_at = now + delay
        return delay


def keep_new_session(
    *, ours: bytes, theirs: bytes, old_initiated_by_us: bool, new_initiated_by_us: bool
) -> bool:
    """Two sessions with one contact are up: whether the newer one stays.

    Sessions opened by the same side: the newer stays (the older is one the
    other side gave up on). Crossing sessions (both dialed at once): the one
    opened by the endpoint with the lower identity key stays, so both ends,
    applying the same rule, keep the same session.
    """
    if old_initiated_by_us == new_initiated_by_us:
        return True
    lower_is_us = ours < theirs
    return new_initiated_by_us == lower_is_us
