"""What the engine keeps per contact and per session, and what its parts share.

These records sit at the bottom of the package: the session, file, deposit
and link code all work on them, and none of them imports another.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import trio

from onionpost.api import PeerChange
from onionpost.daemon.delivery._intake import Intake
from onionpost.daemon.delivery._link import LinkState
from onionpost.daemon.delivery._policy import DeliveryPolicy, MailboxAccess
from onionpost.daemon.delivery._sent import SentMarks
from onionpost.daemon.delivery._witness import Witness
from onionpost.daemon.delivery._writer import GroupCommit
from onionpost.host import EventHub, Kick, Shed, StoreWorker, TokenBucket
from onionpost.limits import (
    TRUST_GOSSIP_BURST,
    TRUST_GOSSIP_INTERVAL,
    TRUST_STAPLE_BURST,
    TRUST_STAPLE_INTERVAL,
)
from onionpost.proto import messages
from onionpost.proto.address import OnionAddress
from onionpost.proto.trust import VerifiedCache
from onionpost.proto.trust_session import Pace
from onionpost.store import Contact, Store
from onionpost.transport import SecureChannel

__all__ = ["Counters", "FileJob", "Link", "Parts", "Session", "Shed", "now_ms"]

log = logging.getLogger("onionpost.daemon")

# Replies queued for the sender task before the receiving side waits (and so
# stops reading a peer that does not read ours).
MAX_PENDING_REPLIES: Final = 64
# Texts handed to a session's sender before it reads the outbox instead.
MAX_HANDOFF: Final = 4096
# A text handed over goes with the bytes its check before queueing made (the
# sender writes them as they are) when they are at most this many: a hand-off
# of long texts holds each once, not twice.
HANDOFF_ENCODED_MAX: Final = 4096
# A text handed to a session's sender: as queued, or with its encoding.
Handed = messages.Text | messages.GroupText | messages.Encoded[messages.Text]


def handed(text: messages.Text) -> Handed:
    """``text`` checked as :func:`~onionpost.proto.messages.encode` checks it
    (LocalProtocolError if it could never be sent), as it is handed over: with
    those bytes when they are few (``HANDOFF_ENCODED_MAX``)."""
    ready = messages.encoded(text)
    return ready if len(ready.data) <= HANDOFF_ENCODED_MAX else text


def now_ms() -> int:
    """The wall clock in ms (what sends, acks and changes record)."""
    return int(time.time() * 1000)


def jitter() -> float:
    return random.random()  # noqa: S311 - backoff jitter, not a secret


def _pace(*, staples: bool) -> Pace:
    """A session's budget of TrustStaple (or TrustGossip) records, one way."""
    if staples:
        return Pace(TRUST_STAPLE_BURST, TRUST_STAPLE_INTERVAL)
    return Pace(TRUST_GOSSIP_BURST, TRUST_GOSSIP_INTERVAL)


@dataclass(eq=False, slots=True)
class Session:
    channel: SecureChannel
    initiator: bool
    proven: bool = False  # the peer has sent us a record: it accepts us
    last_activity: float = 0.0  # trio time of the last record either way, keepalives aside
    last_ping: float = 0.0
    last_heard: float = 0.0  # trio time of the peer's last record, keepalives included
    # trio time we first sent records the peer must answer (texts) while it
    # had been silent since; None once it is heard again.
    unanswered_since: float | None = None
    # Records answering the peer (Acks, FileAccept, ...), written by the sender
    # task: the receiving side never blocks on a write, so two endpoints that
    # both send at full speed cannot each wait for the other to read.
    replies: deque[messages.Message] = field(default_factory=deque)
    room: Kick = field(default_factory=Kick)
    wake: Kick = field(default_factory=Kick)
    # Set when we end the session on purpose: the sender writes the replies
    # queued so far, then raises it.
    closing: Shed | None = None
    # Texts committed to the outbox since the sender last read it, handed
    # over as they are (with their seq, and a short one's encoding: ``handed``)
    # so that the sender need not read them back nor encode them again;
    # ``reread`` when the outbox must be read instead (a new session, a file
    # queued, the hand-off full).
    handoff: deque[tuple[int, Handed]] = field(default_factory=deque)
    reread: bool = True
    # Witnessing (``_witness.py``): the request we sent and await an answer
    # to, and how many of the contact's requests this session answered.
    cosign_sent: messages.LogCosign | None = None
    cosign_asked: bool = False
    cosigns_answered: int = 0
    # Team channels (``_groups.py``): GroupFetch records sent and answered,
    # the groups whose logs were offered at the start, and group texts held
    # while the operations they follow are fetched.
    group_fetches_sent: int = 0
    group_fetches_answered: int = 0
    groups_offered: bool = False
    group_waiting: list[messages.GroupText | messages.GroupFileOffer] = field(default_factory=list)
    # Operations of a group we do not hold yet, taken while its log does not
    # yet make both ends members (bounded by MAX_GROUP_LOG_OPS a group).
    group_joining: dict[bytes, tuple[bytes, ...]] = field(default_factory=dict)
    # Records refused from a member a group introduced (groups.md §9).
    introduced_refused: int = 0
    # Agency trust (``_trust.py``, trust.md §§7.1-7.2): the session's budgets
    # of TrustStaple and TrustGossip records taken from the contact and sent
    # to it (by rate), whether to send our staple again (we hold a newer list
    # of our agency since) and whether to look for gossip it has not been sent.
    staples_in: Pace = field(default_factory=lambda: _pace(staples=True))
    gossip_in: Pace = field(default_factory=lambda: _pace(staples=False))
    staples_out: Pace = field(default_factory=lambda: _pace(staples=True))
    gossip_out: Pace = field(default_factory=lambda: _pace(staples=False))
    restaple: bool = False
    regossip: bool = True
    # A TrustRotation taken this session (one a session, trust.md §6), and
    # whether to send ours (announced while the session was up).
    rotation_received: bool = False
    reannounce: bool = False
    # Ours sent this session: the contact takes nothing more from us on it.
    moved_told: bool = False
    # Texts handed to the storer and those it has stored (or refused): a
    # TrustRotation taken waits for the texts before it (trust.md §6).
    texts_taken: int = 0
    texts_stored: int = 0
    texts_kick: Kick = field(default_factory=Kick)

    async def reply(self, record: messages.Message) -> None:
        """Queue an answer to the peer for the sender task."""
        while len(self.replies) >= MAX_PENDING_REPLIES:
            await self.room.wait()  # no await between the check and the wait
        self.replies.append(record)
        self.wake.fire()

    def close(self, shed: Shed) -> None:
        """End the session in order: the sender writes what it owes, then closes."""
        if self.closing is None:
            self.closing = shed
        self.wake.fire()


@dataclass(eq=False, slots=True)
class FileJob:
    """The one sender of one file to one contact; a new FileAccept moves it."""

    session: Session
    offset: int
    restart: int | None = None
    stopped: bool = False


@dataclass(eq=False)
class Link:
    """Everything the engine keeps per contact while it runs."""

    contact: Contact
    state: LinkState
    bucket: TokenBucket  # one record budget for all its sessions
    wake: Kick = field(default_factory=Kick)
    sessions: list[Session] = field(default_factory=list)
    # Acks and read receipts owed are in the store (they survive a restart);
    # this says whether to look.
    owes: bool = True
    envelopes: int = 0  # deposited into its mailbox since the engine started
    since_ms: int | None = None  # when it became reachable or unreachable
    files: dict[bytes, FileJob] = field(default_factory=dict)
    # Every task working for this contact runs in one of these scopes, so that
    # removing the contact stops them all.
    scopes: set[trio.CancelScope] = field(default_factory=set)
    removed: bool = False
    # A mailbox the contact named that answered as no mailbox does: no more
    # deposits there (until the contact names another).
    bad_mailbox: OnionAddress | None = None
    # Groups whose log changed here since the contact was last offered it.
    group_sync: set[bytes] = field(default_factory=set)
    # What we passed on to it of other agencies (trust.md §7.2), by anchor
    # fingerprint: a digest of the list and checkpoint (at most one an anchor).
    gossiped: dict[bytes, bytes] = field(default_factory=dict)

    def stop(self) -> None:
        self.removed = True
        for scope in list(self.scopes):
            scope.cancel()

    def fire(self, *, reread: bool = False) -> None:
        """Something changed for this contact: its loops and senders look
        again; ``reread``: its outbox changed in the store."""
        self.wake.fire()
        for session in self.sessions:
            if reread:
                session.reread = True
            session.wake.fire()

    def hand_off(self, queued: Sequence[tuple[int, Handed]]) -> None:
        """Texts just committed to the outbox: to each session's sender as
        they are (the outbox read when a hand-off would pass its bound)."""
        for session in self.sessions:
            if session.reread or session.closing is not None:
                continue
            if len(session.handoff) + len(queued) > MAX_HANDOFF:
                session.reread = True
            else:
                session.handoff.extend(queued)
        self.fire()


@dataclass(slots=True)
class Counters:
    dials: int = 0
    dial_failures: int = 0
    session_failures: int = 0
    texts_received: int = 0
    texts_acked: int = 0
    deposits: int = 0
    superseded: int = 0


@dataclass(eq=False)
class Parts:
    """What the engine's parts share: one of each, made by the engine."""

    store: Store
    hub: EventHub
    policy: DeliveryPolicy
    worker: StoreWorker
    writer: GroupCommit
    intake: Intake
    mailbox: MailboxAccess | None
    address: OnionAddress  # ours
    witness: Witness | None = None  # None: this engine keeps no evidence log's witnesses
    # A group's log changed here: offer it to every contact that shares it
    # (but the one given, which sent the change).
    group_changed: Callable[[bytes, int | None], None] = lambda group_id, source: None
    counters: Counters = field(default_factory=Counters)
    # Texts that left, their 'sent' mark written late (``_sent.py``).
    sent: SentMarks = field(default_factory=SentMarks)
    # Agency statements verified before (used in the store worker, one call at a time).
    trust_cache: VerifiedCache = field(default_factory=VerifiedCache)
    # Contacts whose sessions are refused and outbox held, with why (``_trust.py``).
    refusals: dict[int, str] = field(default_factory=dict)
    # The engine's: take a new map of refusals (close, hold, release).
    apply_refusals: Callable[[dict[int, str]], None] = field(default=lambda _: None)
    # The engine's: every open session staples ours again (a newer list held).
    restaple: Callable[[], None] = field(default=lambda: None)
    # The engine's: every open session looks for gossip to pass on (§7.2).
    regossip: Callable[[], None] = field(default=lambda: None)
    # The engine's: a contact moved to a new address (before, after; trust.md §6).
    moved: Callable[[Contact, Contact], None] = field(default=lambda before, after: None)

    def announcement_due(self, link: Link) -> tuple[int, bytes] | None:
        """Our mailbox announcement, when the contact (or a member a group
        introduced) has not been told it yet."""
        if self.mailbox is None:
            return None
        current = self.mailbox.announcement()
        if current is None or current[0] <= link.contact.mailbox_told:
            return None
        return current

    def publish_peer(self, link: Link) -> None:
        self.hub.publish(
            PeerChange(
                link.contact.name,
                str(link.contact.address),
                reachable=bool(link.sessions),
                last_error=link.state.last_error,
            )
        )
