"""The per-contact delivery decisions (onionpost.daemon.delivery._link), as tables.

``LinkState`` is pure (STYLE 18): these tests build states by hand, pass
``now`` and a ``Work``, and read the ``Step`` back. No trio, no store, no
sockets. Expected delays are written out from the rule in the docstring of
``Backoff`` (a ceiling doubling from ``initial``, capped at ``maximum``, the
delay spread by jitter over its upper half), not computed by the code under
test.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from onionpost.daemon.delivery._link import (
    DEPOSIT_RETRY_AFTER_REFETCH,
    WARM_RETRY_MAX,
    WARM_SECONDS,
    Backoff,
    LinkState,
    Step,
    StepKind,
    Work,
    keep_new_session,
)

INITIAL = 5.0
MAXIMUM = 300.0
BACKOFF = Backoff(initial=INITIAL, maximum=MAXIMUM)
MAILBOX_AFTER = 60.0
ANNOUNCE_ATTEMPTS = 3
# The largest jitter a caller passes: ``random.random()`` is in [0, 1).
ALMOST_ONE = 1.0 - 2.0**-53

NOTHING = Work()
DIRECT = Work(direct=True)
BOTH = Work(direct=True, deposit=True)
IDLE = Step(StepKind.IDLE)
DIAL = Step(StepKind.DIAL)
ANNOUNCE = Step(StepKind.ANNOUNCE)
DEPOSIT = Step(StepKind.DEPOSIT)


def wait(until: float) -> Step:
    return Step(StepKind.WAIT, until)


def link(**fields: Any) -> LinkState:
    """A link in the state ``fields`` describe; the rest as for a quiet contact."""
    return LinkState(BACKOFF, MAILBOX_AFTER, ANNOUNCE_ATTEMPTS, **fields)


# -- direct_step ----------------------------------------------------------------------------

DIRECT_TABLE = [
    pytest.param({"sessions": 1}, 100.0, DIRECT, IDLE, id="session-up"),
    pytest.param(
        {"sessions": 1, "announce": 2, "failures": 3, "retry_at": 50.0},
        100.0,
        DIRECT,
        IDLE,
        id="session-up-despite-announce-and-due-retry",
    ),
    pytest.param({"sessions": 2}, 100.0, DIRECT, IDLE, id="two-sessions-up"),
    pytest.param({}, 100.0, NOTHING, IDLE, id="nothing-to-do"),
    pytest.param(
        {"failures": 2, "retry_at": 200.0},
        100.0,
        NOTHING,
        IDLE,
        id="nothing-to-do-no-wait-for-backoff",
    ),
    pytest.param({"announce": -1}, 100.0, NOTHING, IDLE, id="announce-overdrawn"),
    pytest.param({"announce": 0}, 100.0, Work(deposit=True), IDLE, id="deposit-work-alone-no-dial"),
    pytest.param({"announce": 2}, 100.0, NOTHING, ANNOUNCE, id="announce-only"),
    pytest.param(
        {"announce": 2, "failures": 1, "retry_at": 105.0},
        100.0,
        NOTHING,
        wait(105.0),
        id="announce-backoff-pending",
    ),
    pytest.param(
        {"failures": 1, "retry_at": 105.0}, 100.0, DIRECT, wait(105.0), id="backoff-pending"
    ),
    pytest.param(
        {"failures": 1, "retry_at": 100.5}, 100.0, BOTH, wait(100.5), id="backoff-pending-both"
    ),
    pytest.param({"failures": 1, "retry_at": 100.0}, 100.0, DIRECT, DIAL, id="backoff-ends-now"),
    pytest.param({"failures": 4, "retry_at": 90.0}, 100.0, DIRECT, DIAL, id="backoff-over"),
    pytest.param({}, 100.0, DIRECT, DIAL, id="dial-due"),
    pytest.param({"announce": 2}, 100.0, DIRECT, DIAL, id="work-dials-not-announces"),
    pytest.param({"away": True, "dial_since": 99.0}, 100.0, DIRECT, DIAL, id="away-dials"),
]


@pytest.mark.parametrize(("fields", "now", "work", "expected"), DIRECT_TABLE)
def test_direct_step(fields: dict[str, Any], now: float, work: Work, expected: Step) -> None:
    state = link(**fields)
    before = dataclasses.replace(state)
    assert state.direct_step(now, work) == expected
    assert state == before  # a decision changes nothing


# -- deposit_step ---------------------------------------------------------------------------

DEPOSIT_TABLE = [
    pytest.param({"away": True}, 1000.0, DIRECT, IDLE, id="no-mailbox-work"),
    pytest.param({"away": True}, 1000.0, NOTHING, IDLE, id="no-work"),
    pytest.param({"away": True, "sessions": 1}, 1000.0, BOTH, IDLE, id="session-up"),
    pytest.param(
        {"dial_since": 0.0, "sessions": 1}, 1000.0, BOTH, IDLE, id="session-up-dial-hanging"
    ),
    pytest.param({}, 1000.0, BOTH, IDLE, id="not-away-no-dial"),
    pytest.param(
        {"down_at": 0.0, "deposit_at": 0.0},
        1000.0,
        BOTH,
        IDLE,
        id="not-away-no-dial-long-down",
    ),
    pytest.param(
        {"down_at": 50.0, "dial_since": 100.0},
        130.0,
        BOTH,
        wait(160.0),
        id="dial-hanging-less-than-mailbox-after",
    ),
    pytest.param(
        {"down_at": 50.0, "dial_since": 100.0},
        160.0,
        BOTH,
        DEPOSIT,
        id="dial-hanging-exactly-mailbox-after",
    ),
    pytest.param(
        {"down_at": 50.0, "dial_since": 100.0},
        170.0,
        BOTH,
        DEPOSIT,
        id="dial-hanging-more-than-mailbox-after",
    ),
    pytest.param(
        {"down_at": 120.0, "dial_since": 100.0},
        170.0,
        BOTH,
        wait(180.0),
        id="dial-hanging-but-down-later",
    ),
    pytest.param(
        {"down_at": 0.0, "dial_since": 100.0, "deposit_at": 200.0},
        170.0,
        BOTH,
        wait(200.0),
        id="dial-hanging-deposit-backoff",
    ),
    pytest.param(
        {"away": True, "down_at": 100.0},
        130.0,
        BOTH,
        wait(160.0),
        id="away-down-recently",
    ),
    pytest.param(
        {"away": True, "down_at": 100.0}, 160.0, BOTH, DEPOSIT, id="away-down-mailbox-after"
    ),
    pytest.param({"away": True, "down_at": 100.0}, 500.0, BOTH, DEPOSIT, id="away-down-long"),
    pytest.param(
        {"away": True, "down_at": 100.0, "dial_since": 499.0},
        500.0,
        BOTH,
        DEPOSIT,
        id="away-a-new-dial-does-not-hold-deposits",
    ),
    pytest.param(
        {"away": True, "down_at": 100.0, "deposit_at": 600.0},
        500.0,
        BOTH,
        wait(600.0),
        id="away-deposit-backoff-pending",
    ),
    pytest.param(
        {"away": True, "down_at": 100.0, "deposit_at": 450.0},
        500.0,
        BOTH,
        DEPOSIT,
        id="away-deposit-backoff-over",
    ),
    pytest.param(
        {"away": True, "down_at": 100.0, "deposit_at": 120.0},
        130.0,
        BOTH,
        wait(160.0),
        id="away-deposit-backoff-over-but-down-recently",
    ),
]


@pytest.mark.parametrize(("fields", "now", "work", "expected"), DEPOSIT_TABLE)
def test_deposit_step(fields: dict[str, Any], now: float, work: Work, expected: Step) -> None:
    state = link(**fields)
    before = dataclasses.replace(state)
    assert state.deposit_step(now, work) == expected
    assert state == before


# -- Backoff --------------------------------------------------------------------------------

# failures -> ceiling: 5 s doubling, capped at 300 s.
CEILINGS = [
    (0, 5.0),  # counted as the first failure
    (1, 5.0),
    (2, 10.0),
    (3, 20.0),
    (4, 40.0),
    (5, 80.0),
    (6, 160.0),
    (7, 300.0),
    (8, 300.0),
    (31, 300.0),
    (10_000, 300.0),  # no overflow however long the contact stays away
]


@pytest.mark.parametrize(("failures", "ceiling"), CEILINGS)
def test_backoff_bounds(failures: int, ceiling: float) -> None:
    assert BACKOFF.delay(failures, 0.0) == ceiling / 2
    high = BACKOFF.delay(failures, ALMOST_ONE)
    assert ceiling / 2 < high <= ceiling
    assert high == pytest.approx(ceiling)


@given(failures=st.integers(1, 100), jitter=st.floats(0.0, 1.0, exclude_max=True))
def test_backoff_delay_is_in_the_upper_half_of_the_ceiling(failures: int, jitter: float) -> None:
    ceiling = min(MAXIMUM, INITIAL * 2 ** (failures - 1))
    assert ceiling / 2 <= BACKOFF.delay(failures, jitter) <= ceiling


# -- transitions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jitter", "delays"),
    [
        (0.0, [2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 150.0, 150.0, 150.0]),
        (ALMOST_ONE, [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0, 300.0]),
    ],
    ids=["jitter-0", "jitter-almost-1"],
)
def test_dial_failed_backs_off(jitter: float, delays: list[float]) -> None:
    state = LinkState.new(BACKOFF, MAILBOX_AFTER, ANNOUNCE_ATTEMPTS, 0.0)
    now = 10.0
    for n, expected in enumerate(delays, start=1):
        state.dial_started(now, announcing=False)
        delay = state.dial_failed(now, f"timeout-{n}", jitter)
        assert delay == pytest.approx(expected)
        assert state.failures == n
        assert state.away
        assert state.last_error == f"timeout-{n}"
        assert state.retry_at == now + delay
        assert state.dial_since is None
        assert state.direct_step(now, DIRECT) == wait(now + delay)
        assert state.retry_in(now) == pytest.approx(delay)
        now += delay
        assert state.direct_step(now, DIRECT) == DIAL


@pytest.mark.parametrize(
    ("jitter", "delays"),
    [
        (0.0, [2.5, 5.0, 10.0, 15.0, 15.0, 15.0]),
        (ALMOST_ONE, [5.0, 10.0, 20.0, 30.0, 30.0, 30.0]),
    ],
    ids=["jitter-0", "jitter-almost-1"],
)
def test_a_contact_seen_lately_is_redialled_at_least_every_warm_retry_max(
    jitter: float, delays: list[float]
) -> None:
    assert WARM_RETRY_MAX == 30.0  # the delays above are written out for it
    state = LinkState.new(BACKOFF, MAILBOX_AFTER, ANNOUNCE_ATTEMPTS, 0.0)
    state.session_up()
    state.session_down(100.0, going_away=False)
    state.seen(100.0)
    now = 100.0
    for expected in delays:
        assert state.dial_failed(now, "introduction-failed", jitter) == pytest.approx(expected)
        now += expected
    # Past WARM_SECONDS since it was seen, the backoff grows as for any contact.
    late = 100.0 + WARM_SECONDS
    assert state.dial_failed(late, "introduction-failed", jitter) == pytest.approx(
        BACKOFF.delay(len(delays) + 1, jitter)
    )
    assert state.dial_failed(late, "introduction-failed", jitter) > WARM_RETRY_MAX


def test_the_warm_cap_never_shortens_retry_initial_nor_lengthens_retry_max() -> None:
    slow = LinkState.new(Backoff(60.0, 900.0), MAILBOX_AFTER, ANNOUNCE_ATTEMPTS, 0.0)
    slow.seen(0.0)
    assert [slow.dial_failed(1.0, "x", ALMOST_ONE) for _ in range(3)] == pytest.approx(
        [60.0, 60.0, 60.0]
    )
    fast = LinkState.new(Backoff(1.0, 8.0), MAILBOX_AFTER, ANNOUNCE_ATTEMPTS, 0.0)
    fast.seen(0.0)
    assert [fast.dial_failed(1.0, "x", ALMOST_ONE) for _ in range(5)] == pytest.approx(
        [1.0, 2.0, 4.0, 8.0, 8.0]
    )


def test_a_contact_never_seen_is_not_warm() -> None:
    state = LinkState.new(BACKOFF, MAILBOX_AFTER, ANNOUNCE_ATTEMPTS, 0.0)
    delays = [state.dial_failed(1.0, "x", ALMOST_ONE) for _ in range(7)]
    assert delays == pytest.approx([5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0])


def test_dial_failed_leaves_the_deposit_backoff_alone() -> None:
    state = link(deposit_failures=2, deposit_at=50.0, mailbox_error="full")
    state.dial_failed(10.0, "timeout", 0.0)
    assert (state.deposit_failures, state.deposit_at, state.mailbox_error) == (2, 50.0, "full")


def test_proven_resets_the_backoff() -> None:
    state = link(
        sessions=1, failures=5, retry_at=400.0, last_error="refused", away=True, announce=2
    )
    state.proven()
    assert state.failures == 0
    assert state.retry_at == 0.0
    assert state.last_error == ""
    assert not state.away
    assert state.sessions == 1
    assert state.retry_in(500.0) is None


def test_dial_started_marks_the_dial_and_only_announcing_spends_an_announcement() -> None:
    state = link(announce=2)
    state.dial_started(7.0, announcing=False)
    assert (state.dial_since, state.announce) == (7.0, 2)
    state.dial_started(8.0, announcing=True)
    assert (state.dial_since, state.announce) == (8.0, 1)


def test_session_up_ends_the_dial_and_the_announcements() -> None:
    state = link(dial_since=5.0, announce=2)
    state.session_up()
    assert (state.sessions, state.dial_since, state.announce) == (1, None, 0)
    state.session_up()
    assert state.sessions == 2


SESSION_DOWN_TABLE = [
    # (sessions, away before, going_away) -> (sessions, down_at, away)
    pytest.param(1, False, False, (0, 100.0, False), id="last-clean"),
    pytest.param(1, True, False, (0, 100.0, True), id="last-clean-was-away"),
    pytest.param(1, False, True, (0, 100.0, True), id="last-going-away"),
    pytest.param(2, False, False, (1, 7.0, False), id="another-up-clean"),
    pytest.param(2, False, True, (1, 7.0, False), id="another-up-going-away"),
]


@pytest.mark.parametrize(("sessions", "away", "going_away", "expected"), SESSION_DOWN_TABLE)
def test_session_down(
    sessions: int, away: bool, going_away: bool, expected: tuple[int, float, bool]
) -> None:
    state = link(sessions=sessions, away=away, down_at=7.0)
    state.session_down(100.0, going_away=going_away)
    assert (state.sessions, state.down_at, state.away) == expected


def test_a_contact_going_away_gets_deposits_after_mailbox_after() -> None:
    state = link(sessions=1, down_at=0.0)
    state.proven()
    state.session_down(100.0, going_away=True)
    assert state.deposit_step(100.0, BOTH) == wait(160.0)
    assert state.deposit_step(160.0, BOTH) == DEPOSIT


def test_a_clean_close_leaves_deposits_to_the_direct_path() -> None:
    state = link(sessions=1, down_at=0.0)
    state.proven()
    state.session_down(100.0, going_away=False)
    assert state.deposit_step(1000.0, BOTH) == IDLE
    state.dial_started(1000.0, announcing=False)
    assert state.deposit_step(1000.0, BOTH) == wait(1060.0)
    state.dial_failed(1010.0, "timeout", 0.0)
    assert state.deposit_step(1010.0, BOTH) == DEPOSIT  # down since 100


def test_contact_back_skips_the_backoff() -> None:
    state = link(failures=3, retry_at=500.0, announce=2, away=True, last_error="timeout")
    state.contact_back()
    assert state.retry_at == 0.0
    assert state.announce == 0
    assert state.failures == 3  # reset only once the contact proves it accepts us
    assert state.away
    assert state.direct_step(100.0, DIRECT) == DIAL
    assert state.direct_step(100.0, NOTHING) == IDLE
    assert state.retry_in(100.0) == 0.0


def test_retry_now() -> None:
    state = link(failures=3, retry_at=500.0, away=True, last_error="timeout")
    state.retry_now()
    assert (state.failures, state.retry_at) == (0, 0.0)
    assert state.direct_step(100.0, DIRECT) == DIAL
    assert state.retry_in(100.0) is None
    state.dial_failed(100.0, "timeout", 0.0)
    assert state.retry_at == 100.0 + INITIAL / 2  # the backoff starts over


def test_announce_again_announces_announce_attempts_times() -> None:
    state = link(failures=2, retry_at=500.0)
    assert state.direct_step(100.0, NOTHING) == IDLE
    state.announce_again()
    assert state.announce == ANNOUNCE_ATTEMPTS
    assert state.retry_at == 0.0
    now = 100.0
    for left in range(ANNOUNCE_ATTEMPTS, 0, -1):
        assert state.direct_step(now, NOTHING) == ANNOUNCE
        state.dial_started(now, announcing=True)
        assert state.announce == left - 1
        delay = state.dial_failed(now, "timeout", 0.0)
        if left > 1:
            assert state.direct_step(now, NOTHING) == wait(now + delay)
        now += delay
    assert state.announce == 0
    assert state.direct_step(now, NOTHING) == IDLE
    assert state.direct_step(now + 10_000, NOTHING) == IDLE
    assert state.direct_step(now, DIRECT) == DIAL  # real work still dials


def test_a_new_link_announces_at_once() -> None:
    state = LinkState.new(BACKOFF, MAILBOX_AFTER, ANNOUNCE_ATTEMPTS, 42.0)
    assert state.announce == ANNOUNCE_ATTEMPTS
    assert state.down_at == 42.0
    assert not state.away
    assert state.direct_step(42.0, NOTHING) == ANNOUNCE
    assert state.deposit_step(42.0, BOTH) == IDLE


@pytest.mark.parametrize(
    ("jitter", "delays"),
    [
        (0.0, [2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 150.0, 150.0]),
        (ALMOST_ONE, [5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]),
    ],
    ids=["jitter-0", "jitter-almost-1"],
)
def test_deposit_failed_backs_off(jitter: float, delays: list[float]) -> None:
    state = link(away=True, down_at=0.0, failures=1, retry_at=70.0)
    now = 100.0
    for n, expected in enumerate(delays, start=1):
        assert state.deposit_step(now, BOTH) == DEPOSIT
        delay = state.deposit_failed(now, f"refused-{n}", jitter)
        assert delay == pytest.approx(expected)
        assert state.deposit_failures == n
        assert state.mailbox_error == f"refused-{n}"
        assert state.deposit_at == now + delay
        assert state.deposit_step(now, BOTH) == wait(now + delay)
        now += delay
    # The direct backoff is another one.
    assert (state.failures, state.retry_at) == (1, 70.0)


def test_a_deposit_failed_after_a_descriptor_refetch_is_retried_soon_once_in_a_row() -> None:
    """A restarted mailbox: its old descriptor failed, a fresh one was asked
    for, the next try should not wait out the backoff; a second such failure
    in a row backs off in full (a mailbox that stays down is no loop)."""
    state = link(away=True, down_at=0.0, failures=1, retry_at=70.0)
    for n in range(1, 5):
        state.deposit_failed(100.0, "unreachable", 0.0)
    full = state.backoff.delay(5, 0.0)
    assert state.deposit_failed(200.0, "introduction-failed", 0.0, refetched=True) == (
        DEPOSIT_RETRY_AFTER_REFETCH
    )
    assert state.deposit_step(200.0, BOTH) == wait(200.0 + DEPOSIT_RETRY_AFTER_REFETCH)
    assert state.deposit_failed(201.0, "introduction-failed", 0.0, refetched=True) == (
        state.backoff.delay(6, 0.0)
    )
    assert state.deposit_failed(400.0, "timeout", 0.0, refetched=True) == (
        DEPOSIT_RETRY_AFTER_REFETCH
    )
    assert full > DEPOSIT_RETRY_AFTER_REFETCH
    state.deposit_done()
    assert not state.deposit_retried_soon


def test_deposit_done_resets_the_deposit_backoff() -> None:
    state = link(away=True, down_at=0.0, failures=2, retry_at=900.0)
    state.deposit_failed(100.0, "unreachable", 0.0)
    state.deposit_failed(102.5, "unreachable", 0.0)
    assert state.deposit_step(103.0, BOTH) == wait(107.5)
    state.deposit_done()
    assert (state.deposit_failures, state.deposit_at, state.mailbox_error) == (0, 0.0, "")
    assert state.deposit_step(103.0, BOTH) == DEPOSIT
    assert (state.failures, state.retry_at, state.away) == (2, 900.0, True)


RETRY_IN_TABLE = [
    pytest.param({}, 100.0, None, id="never-failed"),
    pytest.param({"retry_at": 200.0}, 100.0, None, id="no-failures"),
    pytest.param({"failures": 2, "retry_at": 130.0}, 100.0, 30.0, id="backing-off"),
    pytest.param({"failures": 2, "retry_at": 100.0}, 100.0, 0.0, id="due-now"),
    pytest.param({"failures": 2, "retry_at": 40.0}, 100.0, 0.0, id="overdue"),
    pytest.param({"failures": 2, "retry_at": 0.0}, 100.0, 0.0, id="contact-came-back"),
    pytest.param({"failures": 2, "retry_at": 130.0, "sessions": 1}, 100.0, None, id="session-up"),
]


@pytest.mark.parametrize(("fields", "now", "expected"), RETRY_IN_TABLE)
def test_retry_in(fields: dict[str, Any], now: float, expected: float | None) -> None:
    assert link(**fields).retry_in(now) == expected


# -- keep_new_session -----------------------------------------------------------------------

LOW = bytes(31) + b"\x01"
HIGH = b"\x01" + bytes(31)

KEEP_TABLE = [
    # (ours, theirs, old by us, new by us) -> the new one stays
    pytest.param(LOW, HIGH, True, True, True, id="same-initiator-us-lower"),
    pytest.param(HIGH, LOW, True, True, True, id="same-initiator-us-higher"),
    pytest.param(LOW, HIGH, False, False, True, id="same-initiator-them-lower"),
    pytest.param(HIGH, LOW, False, False, True, id="same-initiator-them-higher"),
    pytest.param(LOW, HIGH, True, False, False, id="crossing-we-are-lower-ours-is-old"),
    pytest.param(LOW, HIGH, False, True, True, id="crossing-we-are-lower-ours-is-new"),
    pytest.param(HIGH, LOW, True, False, True, id="crossing-they-are-lower-theirs-is-new"),
    pytest.param(HIGH, LOW, False, True, False, id="crossing-they-are-lower-theirs-is-old"),
]


@pytest.mark.parametrize(("ours", "theirs", "old_by_us", "new_by_us", "keep"), KEEP_TABLE)
def test_keep_new_session(
    ours: bytes, theirs: bytes, old_by_us: bool, new_by_us: bool, keep: bool
) -> None:
    assert (
        keep_new_session(
            ours=ours, theirs=theirs, old_initiated_by_us=old_by_us, new_initiated_by_us=new_by_us
        )
        is keep
    )


def _kept(me: bytes, peer: bytes, order: tuple[bytes, bytes]) -> bytes:
    """Which session ``me`` keeps when the sessions came up in ``order``; a
    session is named by the key of the endpoint that opened it."""
    old, new = order
    keep = keep_new_session(
        ours=me, theirs=peer, old_initiated_by_us=old == me, new_initiated_by_us=new == me
    )
    return new if keep else old


@given(
    a=st.binary(min_size=32, max_size=32),
    b=st.binary(min_size=32, max_size=32),
    a_saw_its_own_first=st.booleans(),
    b_saw_its_own_first=st.booleans(),
)
def test_crossing_sessions_both_ends_keep_the_same_one(
    a: bytes, b: bytes, a_saw_its_own_first: bool, b_saw_its_own_first: bool
) -> None:
    assume(a != b)
    # Each end may see the two sessions come up in either order.
    at_a = _kept(a, b, (a, b) if a_saw_its_own_first else (b, a))
    at_b = _kept(b, a, (b, a) if b_saw_its_own_first else (a, b))
    assert at_a == at_b == min(a, b)


@given(a=st.binary(min_size=32, max_size=32), b=st.binary(min_size=32, max_size=32))
def test_same_initiator_both_ends_keep_the_newer(a: bytes, b: bytes) -> None:
    assume(a != b)
    for opener in (a, b):
        for me, peer in ((a, b), (b, a)):
            by_us = opener == me
            assert keep_new_session(
                ours=me, theirs=peer, old_initiated_by_us=by_us, new_initiated_by_us=by_us
            )


# -- random event sequences -----------------------------------------------------------------

WORKS = [NOTHING, DIRECT, Work(deposit=True), BOTH]
jitters = st.floats(0.0, 1.0, exclude_max=True)


class LinkEvents(RuleBasedStateMachine):
    """Whatever the engine tells a link, in any order it could: the decisions
    stay within their rules. Sessions go down only once up, as the engine's
    own list of sessions ensures; time never runs back."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.state = LinkState.new(BACKOFF, MAILBOX_AFTER, ANNOUNCE_ATTEMPTS, self.now)

    @rule(seconds=st.floats(0.0, 2 * MAXIMUM))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(work=st.sampled_from(WORKS))
    def direct_loop_dials(self, work: Work) -> None:
        step = self.state.direct_step(self.now, work)
        if step.kind in (StepKind.DIAL, StepKind.ANNOUNCE):
            self.state.dial_started(self.now, announcing=step.kind is StepKind.ANNOUNCE)

    @rule(announcing=st.booleans())
    def dial_started(self, announcing: bool) -> None:
        # Also out of turn: an announcing dial waits for its turn while a
        # session comes up, then starts all the same.
        self.state.dial_started(self.now, announcing=announcing)

    @rule(reason=st.sampled_from(["timeout", "refused", "unreachable"]), jitter=jitters)
    def dial_failed(self, reason: str, jitter: float) -> None:
        self.state.dial_failed(self.now, reason, jitter)

    @rule()
    def session_up(self) -> None:
        self.state.session_up()

    @precondition(lambda self: self.state.sessions > 0)
    @rule()
    def proven(self) -> None:
        self.state.proven()

    @precondition(lambda self: self.state.sessions > 0)
    @rule(going_away=st.booleans())
    def session_down(self, going_away: bool) -> None:
        self.state.session_down(self.now, going_away=going_away)

    @precondition(lambda self: self.state.sessions > 0)
    @rule(going_away=st.booleans(), jitter=jitters)
    def session_failed(self, going_away: bool, jitter: float) -> None:
        self.state.session_down(self.now, going_away=going_away)
        self.state.dial_failed(self.now, "peer-closed", jitter)

    @rule()
    def contact_back(self) -> None:
        self.state.contact_back()

    @rule()
    def retry_now(self) -> None:
        self.state.retry_now()

    @rule()
    def announce_again(self) -> None:
        self.state.announce_again()

    @rule()
    def deposit_done(self) -> None:
        self.state.deposit_done()

    @rule(jitter=jitters)
    def deposit_failed(self, jitter: float) -> None:
        self.state.deposit_failed(self.now, "unreachable", jitter)

    @invariant()
    def counts_stay_in_range(self) -> None:
        state = self.state
        assert state.failures >= 0
        assert state.deposit_failures >= 0
        assert state.sessions >= 0

    @invariant()
    def retry_in_is_none_or_not_negative(self) -> None:
        retry_in = self.state.retry_in(self.now)
        assert retry_in is None or retry_in >= 0

    @invariant()
    def steps_follow_the_rules(self) -> None:
        state, now = self.state, self.now
        for work in WORKS:
            direct = state.direct_step(now, work)
            deposit = state.deposit_step(now, work)
            if state.sessions > 0:
                assert direct.kind not in (StepKind.DIAL, StepKind.ANNOUNCE)
                assert deposit.kind is not StepKind.DEPOSIT
            for step in (direct, deposit):
                # A wait is for a moment to come (the loop would spin otherwise).
                assert (step.kind is StepKind.WAIT) == (step.until is not None)
                if step.until is not None:
                    assert step.until > now
            if direct.kind is StepKind.DIAL:
                assert work.direct
                assert now >= state.retry_at
            if direct.kind is StepKind.ANNOUNCE:
                assert not work.direct
                assert state.announce > 0
            if deposit.kind is StepKind.DEPOSIT:
                assert work.deposit
                assert now >= state.down_at + MAILBOX_AFTER
                assert now >= state.deposit_at


LinkEvents.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestLinkEvents = LinkEvents.TestCase


def test_a_dial_whose_session_was_not_kept_is_no_longer_under_way() -> None:
    state = LinkState.new(Backoff(5.0, 900.0), 60.0, 0, 0.0)
    state.dial_started(10.0, announcing=False)
    state.dial_ended()
    assert state.dial_since is None
    # Not away and nothing under way: the direct path decides, no deposit.
    assert state.deposit_step(1_000.0, Work(direct=True, deposit=True)).kind is StepKind.IDLE


def test_a_dial_under_way_is_shown_for_as_long_as_it_takes() -> None:
    """status says a dial is under way, and for how long (a dial to a
    contact that is away takes tens of seconds to fail), until it ends."""
    state = link()
    assert state.dialing_for(100.0) is None
    state.dial_started(100.0, announcing=False)
    assert state.dialing_for(100.0) == 0.0
    assert state.dialing_for(130.5) == 30.5
    assert state.retry_in(130.5) is None  # no backoff yet: the dial is what goes on
    state.dial_failed(131.0, "timeout", 0.5)
    assert state.dialing_for(131.0) is None
    assert state.retry_in(131.0) is not None
    for ended in (LinkState.dial_ended, LinkState.session_up):
        state.dial_started(200.0, announcing=True)
        ended(state)
        assert state.dialing_for(210.0) is None
