"""The delivery engine: links to contacts, sessions over them, and their failure domains.

Theory of operation
-------------------
::

    DeliveryEngine.run()                     one nursery owns everything below
    ├── committer         queue_text() requests, many to one transaction (group commit)
    ├── housekeeping      expiry of messages and of idle incoming transfers
    └── link(contact)     one task per contact: dial when something waits for it,
        │                 with capped exponential backoff and jitter
        └── session       per live channel, ours or the contact's (run_inbound):
            ├── receiver  records in, rate-limited; texts to the storer
            ├── storer    received texts, a group per commit, then one Ack
            ├── sender    outbox, read receipts, keepalive Pings
            └── file(id)  one sender per (contact, file), restarted by a new FileAccept

*Failure domains* (STYLE 16). A session and a dial are each one domain:
whatever goes wrong inside (the stream breaks or ends without a Close, a
record does not decode, the peer refuses us, the handshake or SOCKS fails,
our store refuses a write because the disk is full, even a bug) ends that
session or that dial, is logged once with a reason, marks the contact
unreachable and backs its link off. It never reaches the engine's nursery: a
nursery raises an ``ExceptionGroup``, so the boundary is ``except*``. Only the
engine's own core (its nursery, the committer) failing ends the engine.

*Backoff* is reset only once the peer has proven it accepts us: its first
record in a session (an initiator sends a Ping first, so the Pong proves
it). A contact that drops every session right after the handshake (one that
removed us) is therefore redialled with backoff, not in a tight loop.

*Bounds* on what a contact can make us hold or do: records per second (every
record the session decrypts counts, Pings and ignored extensions too); unread
texts (``max_unread_per_contact``; beyond it the session is closed with
QUOTA_EXCEEDED and the sender keeps the rest queued); incoming transfers at
once (``max_transfers_per_contact``) and idle ones expire; what the disk
budget counts is what is stored; one file sender per (contact, file) however
many FileAccepts arrive; acks are written before more is read, so a peer that
does not read stops being read.

*Exactly once*: a text is durably queued before :meth:`queue_text` returns;
the receiver stores it (idempotent on its id) and only then acks; the sender
marks it delivered on the ack. Unacked messages are sent again in the next
session, and the receiver's de-duplication makes the repeat harmless.

*Store work* runs in a worker thread (one at a time: the store's connection is
one), so an fsync never stalls the event loop.

Logs name a contact by its handle (``contact=#3``, :mod:`onionpost._logs`), never
by name or address, and carry ids and reasons, never message contents or keys.
"""

from __future__ import annotations

import contextlib
import logging
import random
import secrets as _secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Final, Protocol, TypeVar

import trio

from onionpost import api
from onionpost._logs import contact_ref
from onionpost.api import FileInfo, Message, MessageState, PeerChange, StateChange
from onionpost.daemon._events import EventHub
from onionpost.daemon._supervision import Kick, TokenBucket, first_failure
from onionpost.errors import (
    CloseCode,
    DialError,
    FileTooLargeError,
    HashMismatchError,
    MailboxRefusedError,
    NoSpaceError,
    NotFoundError,
    OnionpostError,
    QuotaError,
    RemoteProtocolError,
    StoreError,
    TransportError,
)
from onionpost.home import Config
from onionpost.limits import FILE_CHUNK_SIZE, MAX_ACK_IDS
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.session import PeerDecision
from onionpost.store import Contact, Direction, Kind, Outgoing, Store, Stored
from onionpost.transport import SecureChannel

__all__ = [
    "DeliveryEngine",
    "DeliveryPolicy",
    "DeliveryStatistics",
    "Dial",
    "LinkStatus",
    "MailboxAccess",
]

log = logging.getLogger("onionpost.daemon")

T = TypeVar("T")

Dial = Callable[[Contact], Awaitable[SecureChannel]]

SEND_BATCH: Final = 256
PROGRESS_EVERY_BYTES: Final = 1 << 20
# Received texts are stored in groups: one commit (one fsync) for what arrives
# within this window, up to this many, then one Ack for the group.
TEXT_GROUP_SECONDS: Final = 0.003
TEXT_GROUP_MAX: Final = MAX_ACK_IDS
# queue_text() requests taken into one transaction at most.
COMMIT_GROUP_MAX: Final = 2048
# Scheduling passes the writer lets go by before it takes a group.
GATHER_PASSES: Final = 2
HOUSEKEEPING_INTERVAL: Final = 30.0
# Replies queued for the sender task before the receiving side waits (and so
# stops reading a peer that does not read ours).
MAX_PENDING_REPLIES: Final = 64
# How long a closing session may take to say goodbye.
CLOSE_GRACE: Final = 2.0
# How long the texts already received may take to be stored at the end of a session.
DRAIN_GRACE: Final = 5.0
# File ids a peer may name in FileReject/FileCancel; more of them is noise.
_FINAL_REJECTIONS: Final = frozenset(
    {
        m.FileRejectReason.DECLINED,
        m.FileRejectReason.TOO_LARGE,
        m.FileRejectReason.HASH_MISMATCH,
        m.FileRejectReason.UNKNOWN_FILE,
    }
)


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """The engine's timers and bounds (from ``config.toml``, see :class:`Config`)."""

    retry_initial: float = 5.0
    retry_max: float = 900.0
    connect_timeout: float = 60.0
    ping_interval: float = 60.0
    # A session whose peer sent nothing (not even a Pong) for this long is
    # dead, whatever the stream says.
    silence_timeout: float = 150.0
    max_file_size: int = 1 << 30
    max_disk_use: int = 10 << 30
    message_expiry: float | None = None
    max_unread_per_contact: int = 10_000
    max_transfers_per_contact: int = 4
    transfer_idle_timeout: float = 7 * 24 * 3600.0
    peer_records_per_second: float = 5000.0
    # A session we opened closes after this many seconds with nothing sent or
    # received but keepalives (the contact dials us when it has something).
    idle_close: float = 30.0
    # Dials at once that only tell a contact we are back (announcements), and
    # how many times each is tried before giving up.
    announce_concurrency: int = 4
    announce_attempts: int = 5
    # A contact unreachable this long (seconds) gets what waits for it in its
    # mailbox, when it has one (mailbox.md §Sender).
    mailbox_after: float = 60.0
    # Envelopes one deposit session takes at most before it ends.
    max_envelopes_per_deposit: int = 256
    # Store calls run in a worker thread, so an fsync never stalls the event
    # loop. False runs them on the loop: only for tests on virtual time
    # (trio's MockClock), where a thread at work looks like idleness.
    store_in_thread: bool = True

    @classmethod
    def from_config(cls, config: Config) -> DeliveryPolicy:
        return cls(
            retry_initial=config.retry_initial,
            retry_max=config.retry_max,
            connect_timeout=config.connect_timeout,
            max_file_size=config.max_file_size,
            max_disk_use=config.max_disk_use,
            message_expiry=config.message_expiry,
            max_unread_per_contact=config.max_unread_per_contact,
            max_transfers_per_contact=config.max_transfers_per_contact,
            transfer_idle_timeout=config.transfer_idle_timeout,
            peer_records_per_second=float(config.peer_records_per_second),
            mailbox_after=config.mailbox_after,
        )


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """One contact's delivery state, for ``status`` and the ``peer`` events."""

    contact_id: int
    name: str
    reachable: bool
    since_ms: int | None  # when it became reachable or unreachable
    failures: int  # failed attempts since the contact last accepted a session
    last_error: str  # why the last dial or session failed, in words; "" if none
    retry_in: float | None  # seconds until the next dial, when one is scheduled
    mailbox_error: str = ""  # why the last deposit failed; "" once one succeeded


@dataclass(frozen=True, slots=True)
class DeliveryStatistics:
    """Counters since the engine started."""

    links: int
    sessions: int  # up now
    dials: int
    dial_failures: int
    sessions_ended_by_failure: int
    texts_received: int  # newly stored (not repeats)
    texts_acked: int  # acknowledged by contacts
    envelopes_deposited: int = 0  # into contacts' mailboxes


class MailboxAccess(Protocol):
    """What the engine needs of the mailbox machinery (``_mailbox.py``)."""

    async def dial(self, mailbox: OnionAddress) -> SecureChannel:
        """An authenticated session with a mailbox (the engine sets the deadline)."""

    def seal(
        self, recipient: OnionAddress, prekey: bytes, records: Sequence[bytes], sealed_ms: int
    ) -> bytes:
        """An envelope of ``records`` to ``recipient``, sealed to ``prekey``
        (its signed bytes, verified first: AuthenticationError)."""

    def fits(self, records: Sequence[bytes]) -> bool:
        """Whether ``records`` fit in one envelope."""

    def announcement(self) -> tuple[int, bytes] | None:
        """Our current signed mailbox announcement: (version, bytes), or None."""

    def read_announcement(
        self, owner: OnionAddress, data: bytes
    ) -> tuple[OnionAddress | None, int]:
        """A contact's announcement, verified: (its mailbox or None, version)."""


class _Shed(OnionpostError):
    """We end a session on purpose, with a close code the peer will see."""

    def __init__(self, message: str, *, code: CloseCode, reason: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass(slots=True)
class _FileJob:
    """The one sender of one file to one contact; a new FileAccept moves it."""

    offset: int
    restart: int | None = None
    stopped: bool = False


@dataclass(eq=False, slots=True)
class _Session:
    channel: SecureChannel
    initiator: bool
    proven: bool = False  # the peer has sent us a record: it accepts us
    last_activity: float = 0.0  # trio time of the last record either way, keepalives aside
    last_ping: float = 0.0
    last_heard: float = 0.0  # trio time of the peer's last record, keepalives included
    # Records answering the peer (Acks, FileAccept, ...), written by the sender
    # task: the receiving side never blocks on a write, so two endpoints that
    # both send at full speed cannot each wait for the other to read.
    replies: deque[m.Message] = field(default_factory=deque)
    room: Kick = field(default_factory=Kick)
    # Set when we end the session on purpose: the sender writes the replies
    # queued so far, then raises it.
    closing: _Shed | None = None


@dataclass(eq=False)
class _Link:
    """Everything the engine keeps per contact while it runs."""

    contact: Contact
    wake: Kick = field(default_factory=Kick)
    sessions: list[_Session] = field(default_factory=list)
    failures: int = 0
    last_error: str = ""
    since_ms: int | None = None
    retry_at: float = 0.0  # trio time before which we do not dial
    # Dials left that only tell the contact we are back (with the usual
    # backoff between them: a contact whose own tor just restarted may not be
    # reachable at the first try).
    announce: int = 0
    # Acks and read receipts owed are in the store (they survive a restart);
    # this says whether to look.
    owes: bool = True
    # trio time since which no session has been up (mailbox_after counts from it).
    down_at: float = 0.0
    deposit_at: float = 0.0  # trio time before which we do not deposit again
    deposit_failures: int = 0
    mailbox_error: str = ""
    envelopes: int = 0  # deposited into its mailbox since the engine started
    files: dict[bytes, _FileJob] = field(default_factory=dict)
    # Every task working for this contact runs in one of these scopes, so that
    # removing the contact stops them all.
    scopes: set[trio.CancelScope] = field(default_factory=set)
    removed: bool = False

    def stop(self) -> None:
        self.removed = True
        for scope in list(self.scopes):
            scope.cancel()


@dataclass(eq=False, slots=True)
class _Write:
    """One store call waiting for the writer's next transaction."""

    call: Callable[[], Any]
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: OnionpostError | None = None
    # For a write nobody waits for: called with the result once committed.
    then: Callable[[Any], None] | None = None


@dataclass(slots=True)
class _Sealed:
    """What storing an opened envelope did."""

    rows: list[Stored] = field(default_factory=list)
    delivered: list[bytes] = field(default_factory=list)
    read: list[bytes] = field(default_factory=list)
    mailbox_changed: bool = False


class DeliveryEngine:
    """Delivery to and from every contact; see the module docstring.

    Built from the store, the event hub, a ``dial(contact)`` that returns an
    authenticated channel (through tor in the daemon, over memory or loopback
    in tests), and the policy. :meth:`run` must be running (``await
    nursery.start(engine.run)``) for the rest to work.
    """

    def __init__(
        self,
        store: Store,
        hub: EventHub,
        dial: Dial,
        policy: DeliveryPolicy,
        *,
        mailbox: MailboxAccess | None = None,
    ) -> None:
        self._store = store
        self._mailbox = mailbox
        self._hub = hub
        self._dial_fn = dial
        self._policy = policy
        self._links: dict[int, _Link] = {}
        self._nursery: trio.Nursery | None = None
        self._db_limiter = trio.CapacityLimiter(1)
        self._announcing = trio.CapacityLimiter(policy.announce_concurrency)
        self._writes: list[_Write] = []
        self._writes_ready = Kick()
        self._dials = 0
        self._dial_failures = 0
        self._session_failures = 0
        self._texts_received = 0
        self._texts_acked = 0
        self._deposits = 0

    def __repr__(self) -> str:
        return f"DeliveryEngine({len(self._links)} links)"

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: a link per current contact, the committer, housekeeping."""
        contacts = await self._db(self._store.contacts)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._committer)
                nursery.start_soon(self._housekeeping)
                for contact in contacts:
                    self.add_contact(contact)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for write in self._writes:
                write.error = StoreError("the daemon is stopping")
                write.done.set()
            self._writes = []

    async def _cpu(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a CPU-bound call (sealing, opening) in a worker thread."""
        if not self._policy.store_in_thread:
            await trio.lowlevel.checkpoint()
            return fn(*args)
        return await trio.to_thread.run_sync(partial(fn, *args))

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run one store call in the worker thread (one at a time)."""
        if not self._policy.store_in_thread:
            await trio.lowlevel.checkpoint()
            return fn(*args, **kwargs)
        return await trio.to_thread.run_sync(partial(fn, *args, **kwargs), limiter=self._db_limiter)

    # -- the interface --------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def add_contact(self, contact: Contact) -> None:
        """Start delivering to ``contact`` (a new one, or every one at start)."""
        if self._nursery is None:
            raise OnionpostError("the delivery engine is not running")
        old = self._links.pop(contact.id, None)
        if old is not None:
            old.stop()
        # A new contact (or every one at start) learns at once that we are up.
        link = _Link(contact, announce=self._policy.announce_attempts)
        link.down_at = trio.current_time()
        self._links[contact.id] = link
        self._nursery.start_soon(self._link_loop, link)

    def remove_contact(self, contact_id: int) -> None:
        """Stop every dial and session of a removed contact."""
        link = self._links.pop(contact_id, None)
        if link is not None:
            link.stop()

    def decide(self, peer: OnionAddress) -> PeerDecision:
        """Accept a verified initiator only if it is a current contact."""
        link = self._link_for(peer)
        return PeerDecision.ACCEPT if link is not None else PeerDecision.REFUSE

    def _link_for(self, peer: OnionAddress) -> _Link | None:
        for link in self._links.values():
            if link.contact.address == peer and not link.removed:
                return link
        return None

    async def run_inbound(self, channel: SecureChannel) -> None:
        """Serve a session a contact opened to us (the listener's handler).

        Never raises: the session is its own failure domain.
        """
        link = self._link_for(channel.peer)
        if link is None:
            # Removed while its handshake was under way.
            with trio.move_on_after(CLOSE_GRACE):
                await channel.aclose()
            return
        # The contact is back: whatever waits for it need not wait out a
        # backoff, and it knows we are up.
        link.retry_at = 0.0
        link.announce = 0
        await self._run_session(link, _Session(channel, initiator=False))

    def kick(self, contact_id: int | None = None, *, retry_now: bool = False) -> int:
        """Wake the link of one contact (or of all); with ``retry_now`` also end
        its backoff. Returns how many links were woken."""
        if contact_id is None:
            links = list(self._links.values())
        else:
            one = self._links.get(contact_id)
            links = [] if one is None else [one]
        for link in links:
            if retry_now:
                link.retry_at = 0.0
                link.failures = 0
            link.wake.fire()
        return len(links)

    def announce(self, contact_id: int | None = None) -> int:
        """Tell a contact (or every one) that we are reachable again: dial it
        once even with nothing to deliver, paced (``announce_concurrency`` at
        once), without waiting out a backoff. The contact, seeing us dial in,
        delivers what it holds for us at once. Returns how many links."""
        if contact_id is None:
            links = list(self._links.values())
        else:
            one = self._links.get(contact_id)
            links = [] if one is None else [one]
        for link in links:
            link.announce = self._policy.announce_attempts
            link.retry_at = 0.0
            link.wake.fire()
        return len(links)

    async def owe_receipts(self, contact_id: int, ids: Sequence[bytes]) -> None:
        """Read receipts to send to a contact: durable until a session carried
        them or the contact's mailbox took them."""
        if not ids:
            return
        if self.running:
            await self._write(self._store.owe, contact_id, "read", list(ids), _now_ms())
        else:
            await self._db(self._store.owe, contact_id, "read", list(ids), _now_ms())
        self.owed(contact_id)

    def owed(self, contact_id: int) -> None:
        """Something is owed to the contact now (acks of what came through
        our mailbox, receipts): its link looks."""
        link = self._links.get(contact_id)
        if link is not None:
            link.owes = True
            link.wake.fire()

    def contact_changed(self, contact: Contact) -> None:
        """The contact's row changed (its mailbox): the link uses the new one."""
        link = self._links.get(contact.id)
        if link is not None:
            link.contact = contact
            link.wake.fire()

    def status(self, contact_id: int) -> LinkStatus | None:
        link = self._links.get(contact_id)
        if link is None:
            return None
        retry_in = None
        if not link.sessions and link.failures:
            retry_in = max(0.0, link.retry_at - trio.current_time())
        return LinkStatus(
            contact_id=contact_id,
            name=link.contact.name,
            reachable=bool(link.sessions),
            since_ms=link.since_ms,
            failures=link.failures,
            last_error=link.last_error,
            retry_in=retry_in,
            mailbox_error=link.mailbox_error,
        )

    def statistics(self) -> DeliveryStatistics:
        return DeliveryStatistics(
            links=len(self._links),
            sessions=sum(len(link.sessions) for link in self._links.values()),
            dials=self._dials,
            dial_failures=self._dial_failures,
            sessions_ended_by_failure=self._session_failures,
            texts_received=self._texts_received,
            texts_acked=self._texts_acked,
            envelopes_deposited=self._deposits,
        )

    async def queue_text(self, contact_id: int, text: m.Text) -> None:
        """Queue ``text`` for the contact; it is durably stored when this returns.

        Concurrent calls share one transaction (group commit). If the caller is
        cancelled while waiting, the text may still have been queued.
        """
        m.encode(text)  # refuse what could never be sent, before queueing it
        expiry = self._policy.message_expiry
        expires_at = None if expiry is None else _now_ms() + int(expiry * 1000)
        await self._write(
            self._store.queue_text,
            contact_id,
            text.id,
            text.created_ms,
            text.body,
            text.content_type,
            expires_at,
        )
        self.kick(contact_id)

    # -- group commit -------------------------------------------------------------------

    async def _write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call that changes something in the writer's next
        transaction, and return its result once that has committed.

        Every change the engine makes (texts queued by the API, texts received,
        acks, sent marks) goes through here, so concurrent ones share one
        commit and one fsync (group commit) and all stay durable. Each call is
        a savepoint of its own inside it: one that fails is undone alone.
        """
        write = _Write(partial(fn, *args, **kwargs))
        self._writes.append(write)
        self._writes_ready.fire()
        await write.done.wait()
        if write.error is not None:
            raise write.error
        return write.result  # type: ignore[no-any-return]

    async def _committer(self) -> None:
        while True:
            if not self._writes:
                await self._writes_ready.wait()
                continue
            # Let the callers the last commit woke queue their next write
            # first: one scheduling pass makes the group larger at no cost.
            for _ in range(GATHER_PASSES):
                await trio.lowlevel.cancel_shielded_checkpoint()
            batch = self._writes[:COMMIT_GROUP_MAX]
            del self._writes[:COMMIT_GROUP_MAX]
            try:
                await self._db(self._commit, batch)
            except OnionpostError as exc:
                for write in batch:
                    write.error = exc
                    write.result = None
            finally:
                for write in batch:
                    write.done.set()
                    if write.then is not None and write.error is None:
                        write.then(write.result)

    def _write_later(
        self, then: Callable[[Any], None], fn: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> None:
        """A change nobody needs to wait for (``sent`` marks): it joins the
        writer's next transaction, and ``then(result)`` runs once committed.
        The caller checks :meth:`_writer_busy` first, so these cannot pile up."""
        self._writes.append(_Write(partial(fn, *args, **kwargs), then=then))
        self._writes_ready.fire()

    def _writer_busy(self) -> bool:
        return len(self._writes) >= COMMIT_GROUP_MAX

    def _commit(self, batch: Sequence[_Write]) -> None:
        """In the worker thread: the batch in one transaction."""
        with self._store.transaction():
            for write in batch:
                try:
                    write.result = write.call()
                except NoSpaceError:
                    raise  # SQLite may have rolled the whole transaction back
                except OnionpostError as exc:
                    write.error = exc

    # -- housekeeping ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self._expire()
            except StoreError as exc:
                # A full disk or a locked page now; the next round tries again.
                log.warning("event=housekeeping_failed error=%s", type(exc).__name__)
            await trio.sleep(HOUSEKEEPING_INTERVAL)

    async def _expire(self) -> None:
        now = _now_ms()
        for message_id in await self._db(self._store.expire, now):
            log.info("event=expired id=%s", message_id.hex())
            self._hub.publish(StateChange(message_id.hex(), MessageState.EXPIRED))
        idle_before = now - int(self._policy.transfer_idle_timeout * 1000)
        for contact_id, file_id in await self._db(self._store.expire_transfers, idle_before):
            log.info(
                "event=transfer_expired contact=%s id=%s", contact_ref(contact_id), file_id.hex()
            )

    # -- links and dials ------------------------------------------------------------------

    def _backoff(self, link: _Link) -> float:
        p = self._policy
        ceiling = min(p.retry_max, p.retry_initial * 2 ** min(link.failures - 1, 30))
        return float(ceiling * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not a secret

    def _announcement_due(self, link: _Link) -> tuple[int, bytes] | None:
        if self._mailbox is None:
            return None
        current = self._mailbox.announcement()
        if current is None or current[0] <= link.contact.mailbox_told:
            return None
        return current

    async def _has_work(self, link: _Link) -> bool:
        if link.owes:
            link.owes = await self._db(self._store.has_owed, link.contact.id)
            if link.owes:
                return True
        if self._announcement_due(link) is not None:
            return True
        return bool(await self._db(self._store.pending, link.contact.id, 1))

    async def _link_loop(self, link: _Link) -> None:
        """Dial the contact whenever something waits for it and no session is up."""
        with trio.CancelScope() as scope:
            link.scopes.add(scope)
            while not link.removed:
                seen = link.wake.generation
                if link.sessions:
                    link.announce = 0  # a session is up: the contact knows
                    await link.wake.wait(since=seen)
                    continue
                work = await self._has_work(link)
                if not work and link.announce <= 0:
                    await link.wake.wait(since=seen)
                    continue
                wait = link.retry_at - trio.current_time()
                if wait > 0 and work:
                    deposit_in = await self._deposit_in(link)
                    if deposit_in is not None and deposit_in <= 0:
                        await self._deposit(link)
                        continue
                    if deposit_in is not None:
                        wait = min(wait, deposit_in)
                if wait > 0:
                    # Backing off: a kick (new work) re-checks; retry_now ends it.
                    with trio.move_on_after(wait):
                        await link.wake.wait()
                    continue
                if work:
                    channel = await self._dial(link)
                else:
                    link.announce -= 1
                    async with self._announcing:
                        channel = await self._dial(link)
                if channel is not None:
                    link.announce = 0  # it knows now
                    await self._run_session(link, _Session(channel, initiator=True))

    async def _dial(self, link: _Link) -> SecureChannel | None:
        """One dial: its own failure domain."""
        self._dials += 1
        failure: BaseException | None = None
        channel: SecureChannel | None = None
        try:
            with trio.fail_after(self._policy.connect_timeout):
                channel = await self._dial_fn(link.contact)
        except* trio.TooSlowError:
            failure = TransportError("timeout")
        except* Exception as group:
            failure = first_failure(group)
        if channel is not None:
            return channel
        self._dial_failures += 1
        self._failed(link, _reason(failure), "dial_failed")
        return None

    def _failed(self, link: _Link, reason: str, event: str) -> None:
        link.failures += 1
        link.last_error = reason
        delay = self._backoff(link)
        link.retry_at = trio.current_time() + delay
        log.info(
            "event=%s contact=%s reason=%s retry_in=%.1f",
            event,
            contact_ref(link.contact.id),
            reason,
            delay,
        )
        if link.since_ms is None:
            link.since_ms = _now_ms()  # unreachable since we first tried
        self._publish_peer(link)

    def _publish_peer(self, link: _Link) -> None:
        self._hub.publish(
            PeerChange(
                link.contact.name,
                str(link.contact.address),
                reachable=bool(link.sessions),
                last_error=link.last_error,
            )
        )

    # -- sessions -------------------------------------------------------------------------

    async def _run_session(self, link: _Link, session: _Session) -> None:
        """One session: its own failure domain. Never raises but Cancelled."""
        channel = session.channel
        session.last_activity = session.last_ping = session.last_heard = trio.current_time()
        link.sessions.append(session)
        if len(link.sessions) == 1:
            link.since_ms = _now_ms()
        self._publish_peer(link)
        log.info(
            "event=session_up contact=%s direction=%s",
            contact_ref(link.contact.id),
            "out" if session.initiator else "in",
        )
        failure: BaseException | None = None
        try:
            with trio.CancelScope() as scope:
                link.scopes.add(scope)
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._sender, link, session, nursery)
                        await self._receiver(link, session, nursery)
                        nursery.cancel_scope.cancel()
                except* Exception as group:
                    failure = first_failure(group)
                finally:
                    link.scopes.discard(scope)
            # The channel knows best why it failed: a task cancelled while the
            # channel was being aborted loses the peer's error on its way out.
            if isinstance(channel.failure, RemoteProtocolError) and not isinstance(failure, _Shed):
                failure = channel.failure
        finally:
            link.sessions.remove(session)
            code = CloseCode.NORMAL
            if isinstance(failure, _Shed):
                code = failure.code
            elif isinstance(failure, RemoteProtocolError):
                # The peer broke a rule we check above the session (a record
                # with no place here): it is told which, as by the session.
                code = CloseCode(failure.close_code)
            elif failure is not None and not isinstance(failure, TransportError):
                code = CloseCode.INTERNAL_ERROR
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                if isinstance(failure, _Shed):
                    # Say what we stored before saying why we close.
                    with contextlib.suppress(OnionpostError, trio.ClosedResourceError):
                        await self._send_replies(session)
                await channel.aclose(code)
            self._session_ended(link, session, failure)

    def _session_ended(self, link: _Link, session: _Session, failure: BaseException | None) -> None:
        if not link.sessions:
            link.down_at = trio.current_time()
        if isinstance(failure, _Shed) and failure.code is CloseCode.NORMAL:
            failure = None  # we closed it on purpose, in order (idle)
        peer_code = session.channel.close_code
        if not link.sessions:
            link.since_ms = _now_ms()  # unreachable from now
        if failure is None and peer_code in (None, CloseCode.NORMAL, CloseCode.GOING_AWAY):
            if session.proven or not session.initiator:
                log.info(
                    "event=session_down contact=%s reason=closed", contact_ref(link.contact.id)
                )
                self._publish_peer(link)
                link.wake.fire()
                return
            failure = TransportError("refused")
        self._session_failures += 1
        if failure is None:
            reason = f"peer-closed-{_code_name(peer_code)}"
        elif isinstance(failure, _Shed):
            reason = failure.reason
        elif session.initiator and not session.proven and isinstance(failure, TransportError):
            # The responder decides after the handshake; one that drops us
            # before saying anything has refused us (or removed us).
            reason = "refused"
        else:
            reason = _reason(failure)
        if failure is not None and not _expected(failure):
            # A bug of ours: worth its traceback, once, and still only this session.
            log.warning(
                "event=session_error contact=%s error=%s",
                contact_ref(link.contact.id),
                type(failure).__name__,
                exc_info=failure,
            )
        self._failed(link, reason, "session_down")
        link.wake.fire()

    def _proven(self, link: _Link, session: _Session) -> None:
        session.proven = True
        link.failures = 0
        link.retry_at = 0.0
        link.last_error = ""

    # -- sending --------------------------------------------------------------------------

    async def _reply(self, link: _Link, session: _Session, record: m.Message) -> None:
        """Queue an answer to the peer for the sender task (see _Session.replies)."""
        while len(session.replies) >= MAX_PENDING_REPLIES:
            await session.room.wait()  # no await between the check and the wait
        session.replies.append(record)
        link.wake.fire()

    @staticmethod
    async def _send_replies(session: _Session) -> None:
        while session.replies:
            await session.channel.send(session.replies.popleft())
            session.room.fire()

    async def _sender(self, link: _Link, session: _Session, nursery: trio.Nursery) -> None:
        """Send what waits in the outbox, read receipts owed, and keepalives."""
        channel = session.channel
        contact_id = link.contact.id
        if session.initiator:
            # The responder decides on us after the handshake; its Pong is the
            # first proof that it accepted us (module docstring: backoff).
            await channel.send(m.Ping(_secrets.randbits(63)))
        # Everything unacked goes out once on a new session; after that only
        # what was queued since, so a wake-up reads no row twice.
        sent_up_to = 0
        while True:
            seen = link.wake.generation
            if session.replies:
                await self._send_replies(session)
                continue
            if session.closing is not None:
                raise session.closing
            if link.owes:
                if await self._send_owed(link, channel):
                    continue
                link.owes = False
            due = self._announcement_due(link)
            if due is not None:
                version, announcement = due
                await channel.send(m.MailboxInfo(announcement))
                await self._write(self._store.mark_mailbox_told, contact_id, version)
                link.contact = replace(link.contact, mailbox_told=version)
                continue
            batch = await self._db(self._store.pending, contact_id, SEND_BATCH, after=sent_up_to)
            if batch:
                session.last_activity = trio.current_time()
                for outgoing in batch:
                    await channel.send(outgoing.to_message())
                    sent_up_to = max(sent_up_to, outgoing.seq)
                ids = [o.id for o in batch]
                if self._writer_busy():
                    # A backlog: wait for this one, so the queue stays bounded.
                    self._published_sent(
                        await self._write(
                            self._store.mark_sent, ids, _now_ms(), contact_id=contact_id
                        )
                    )
                else:
                    # 'sent' only informs: the sender goes on without waiting for it.
                    self._write_later(
                        self._published_sent,
                        self._store.mark_sent,
                        ids,
                        _now_ms(),
                        contact_id=contact_id,
                    )
                continue
            now = trio.current_time()
            idle_until = session.last_activity + self._policy.idle_close
            if session.initiator and now >= idle_until:
                # Nothing either way for a while: we opened it, we close it.
                raise _Shed("idle", code=CloseCode.NORMAL, reason="idle")
            silent_until = session.last_heard + self._policy.silence_timeout
            if now >= silent_until:
                # Our Pings went unanswered: the contact is gone (its tor died
                # with its workstation) though the stream did not say so. What
                # waits for it may go to its mailbox now.
                raise TransportError("timeout")
            if now >= session.last_ping + self._policy.ping_interval:
                session.last_ping = now
                await channel.send(m.Ping(_secrets.randbits(63)))
                continue
            deadline = min(session.last_ping + self._policy.ping_interval, silent_until)
            if session.initiator:
                deadline = min(deadline, idle_until)
            with trio.move_on_at(deadline):
                await link.wake.wait(since=seen)

    # -- receiving ------------------------------------------------------------------------

    async def _receiver(self, link: _Link, session: _Session, nursery: trio.Nursery) -> None:
        channel = session.channel
        bucket = TokenBucket(self._policy.peer_records_per_second)
        send_texts, receive_texts = trio.open_memory_channel[m.Text](TEXT_GROUP_MAX)
        drained = trio.Event()
        nursery.start_soon(self._store_texts, link, session, receive_texts, drained)
        counted = 0
        broken: TransportError | None = None
        async with send_texts:
            while True:
                try:
                    record = await channel.receive()
                except trio.EndOfChannel:
                    break
                except TransportError as exc:
                    # The texts that did arrive whole are authentic: store them.
                    broken = exc
                    break
                # Every record the session decrypted costs a token: Pings and
                # ignored extensions too.
                total = channel.records_received
                await bucket.take(total - counted)
                counted = total
                if not session.proven:
                    self._proven(link, session)
                session.last_heard = trio.current_time()
                if not isinstance(record, m.Pong):
                    session.last_activity = trio.current_time()
                await self._dispatch(link, session, nursery, record, send_texts)
        # The peer closed: let the texts already received be stored and acked.
        with trio.move_on_after(DRAIN_GRACE):
            await drained.wait()
        if broken is not None:
            raise broken

    async def _dispatch(
        self,
        link: _Link,
        session: _Session,
        nursery: trio.Nursery,
        record: m.Message,
        texts: trio.MemorySendChannel[m.Text],
    ) -> None:
        contact_id = link.contact.id
        if isinstance(record, m.Text):
            # The storer stops taking texts once the session is closing.
            with contextlib.suppress(trio.BrokenResourceError):
                await texts.send(record)
        elif isinstance(record, m.Ack):
            await self._delivered(link, record.ids)
        elif isinstance(record, m.Read):
            # A contact can only mark read what we sent to it.
            changed = await self._write(
                self._store.mark_read,
                record.ids,
                _now_ms(),
                contact_id=contact_id,
                direction=Direction.OUT,
            )
            for message_id in changed:
                self._hub.publish(StateChange(message_id.hex(), MessageState.READ))
        elif isinstance(record, m.FileOffer):
            await self._on_offer(link, session, record)
        elif isinstance(record, m.FileAccept):
            await self._on_accept(link, session, nursery, record)
        elif isinstance(record, m.FileChunk):
            await self._on_chunk(link, session, record)
        elif isinstance(record, m.FileComplete):
            await self._delivered(link, (record.id,))
        elif isinstance(record, m.FileReject | m.FileCancel):
            await self._onmailbox_refusal(link, record)
        elif isinstance(record, m.MailboxInfo):
            await self._on_mailbox_info(link, record)
        elif not isinstance(record, m.Ping | m.Pong | m.Close):
            # A mailbox's record (tags 32..45) has no place between endpoints.
            raise RemoteProtocolError(
                f"{type(record).__name__} in a session between endpoints",
                close_code=CloseCode.BAD_MESSAGE,
            )
        # Pong: the proof of acceptance above is all it is for.

    async def _store_texts(
        self,
        link: _Link,
        session: _Session,
        texts: trio.MemoryReceiveChannel[m.Text],
        drained: trio.Event,
    ) -> None:
        """Store received texts a group at a time, then ack the group.

        The Ack goes out only after the group's commit, so exactly-once holds;
        the commit runs in the worker thread and is not abandoned when
        cancelled, so a group is never half stored. Writing the Ack before
        taking the next group means a peer that does not read stops being read.
        """
        async with texts:
            async for first in texts:
                await trio.sleep(TEXT_GROUP_SECONDS)  # let the rest of a burst arrive
                group = [first]
                while len(group) < TEXT_GROUP_MAX:
                    try:
                        group.append(texts.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                stored, new, rows = await self._write(self._store_group, link.contact.id, group)
                self._texts_received += new
                if stored:
                    await self._reply(link, session, m.Ack(tuple(t.id for t in group[:stored])))
                for row in rows:
                    self._hub.publish(message_record(row))
                if stored < len(group):
                    # The sender writes the Ack above, then closes the session;
                    # what arrives meanwhile is dropped, unacked (it comes again).
                    session.closing = _Shed(
                        "too many unread texts from this contact",
                        code=CloseCode.QUOTA_EXCEEDED,
                        reason="unread-quota",
                    )
                    link.wake.fire()
                    break
        drained.set()

    def _store_group(
        self, contact_id: int, group: Sequence[m.Text]
    ) -> tuple[int, int, list[Stored]]:
        """In the worker thread: store what the unread quota allows of ``group``
        in one transaction. Returns how many of it (from the start) are stored,
        new or repeated; how many are new; and, when anyone listens for
        ``message`` events, the new ones as read back."""
        store = self._store
        room = self._policy.max_unread_per_contact - store.unread_count(contact_id, kind=Kind.TEXT)
        now = _now_ms()
        new_ids: list[bytes] = []
        stored = 0
        with store.transaction():
            for text in group:
                if room <= 0:
                    # A repeat would cost nothing, but it cannot be told apart
                    # without storing it: the sender sends it again later.
                    break
                if store.store_text(
                    contact_id, text.id, text.created_ms, text.body, text.content_type, now
                ):
                    new_ids.append(text.id)
                    room -= 1
                stored += 1
        rows = (
            [store.message(i, contact_id=contact_id) for i in new_ids]
            if self._hub.wants("message")
            else []
        )
        return stored, len(new_ids), rows

    def _published_sent(self, changed: list[bytes]) -> None:
        for message_id in changed:
            self._hub.publish(StateChange(message_id.hex(), MessageState.SENT))

    async def _delivered(self, link: _Link, ids: Sequence[bytes]) -> None:
        # Scoped to the contact: a contact can only acknowledge what was sent to it.
        changed = await self._write(
            self._store.mark_delivered, list(ids), _now_ms(), contact_id=link.contact.id
        )
        self._texts_acked += len(changed)
        for message_id in changed:
            job = link.files.get(message_id)
            if job is not None:
                job.stopped = True
            self._hub.publish(StateChange(message_id.hex(), MessageState.DELIVERED))

    # -- files ----------------------------------------------------------------------------

    async def _on_offer(self, link: _Link, session: _Session, offer: m.FileOffer) -> None:
        p = self._policy
        try:
            offset = await self._db(
                self._store.begin_file,
                link.contact.id,
                offer,
                _now_ms(),
                p.max_file_size,
                p.max_disk_use,
                max_transfers=p.max_transfers_per_contact,
            )
            if offset >= offer.size:
                # Already complete (the sender missed our FileComplete): say so again.
                await self._db(
                    self._store.finish_file, offer.id, _now_ms(), contact_id=link.contact.id
                )
        except StoreError as exc:
            reason = _reject_reason(exc)
            log.info(
                "event=file_rejected contact=%s id=%s reason=%s",
                contact_ref(link.contact.id),
                offer.id.hex(),
                type(exc).__name__,
            )
            await self._reply(link, session, m.FileReject(offer.id, reason))
            return
        if offset >= offer.size:
            await self._reply(link, session, m.FileComplete(offer.id))
            return
        await self._reply(link, session, m.FileAccept(offer.id, offset))

    async def _on_accept(
        self, link: _Link, session: _Session, nursery: trio.Nursery, accept: m.FileAccept
    ) -> None:
        file_id = accept.id
        job = link.files.get(file_id)
        if job is not None and not job.stopped:
            # One sender per (contact, file): a repeated FileAccept moves it.
            job.restart = accept.offset
            return
        # Only a file we offered to this very contact may be asked for.
        try:
            stored = await self._db(self._store.message, file_id, contact_id=link.contact.id)
        except NotFoundError:
            stored = None
        if (
            stored is None
            or stored.direction != Direction.OUT
            or stored.file is None
            or stored.state not in ("queued", "sent")
            or not _valid_offset(accept.offset, stored.file.size)
        ):
            await self._reply(link, session, m.FileCancel(file_id, m.FileRejectReason.UNKNOWN_FILE))
            return
        job = _FileJob(accept.offset)
        link.files[file_id] = job
        nursery.start_soon(self._send_file, link, session, file_id, stored.file.size, job)

    async def _send_file(
        self, link: _Link, session: _Session, file_id: bytes, size: int, job: _FileJob
    ) -> None:
        channel = session.channel
        try:
            while not job.stopped:
                if job.restart is not None:
                    if not _valid_offset(job.restart, size):
                        await channel.send(m.FileCancel(file_id, m.FileRejectReason.UNKNOWN_FILE))
                        return
                    job.offset, job.restart = job.restart, None
                offset = job.offset
                if offset >= size:
                    return  # all sent; the FileComplete will say it arrived
                data = await self._db(
                    self._store.read_file_chunk,
                    file_id,
                    offset,
                    min(FILE_CHUNK_SIZE, size - offset),
                    contact_id=link.contact.id,
                )
                await channel.send(m.FileChunk(file_id, offset, data))
                job.offset = offset + len(data)
                if job.offset // PROGRESS_EVERY_BYTES != offset // PROGRESS_EVERY_BYTES or (
                    job.offset >= size
                ):
                    self._hub.publish(
                        StateChange(file_id.hex(), MessageState.SENDING, job.offset, size)
                    )
        finally:
            if link.files.get(file_id) is job:
                del link.files[file_id]

    async def _on_chunk(self, link: _Link, session: _Session, chunk: m.FileChunk) -> None:
        contact_id = link.contact.id
        try:
            await self._db(
                self._store.write_file_chunk,
                chunk.id,
                chunk.offset,
                chunk.data,
                contact_id=contact_id,
                max_disk=self._policy.max_disk_use,
                now=_now_ms(),
            )
        except NotFoundError:
            await self._reply(
                link, session, m.FileCancel(chunk.id, m.FileRejectReason.UNKNOWN_FILE)
            )
            return
        except StoreError as exc:
            # Disk full or out of order: keep nothing of this chunk, ack nothing;
            # the sender keeps the file and offers it again later.
            log.info(
                "event=chunk_not_stored contact=%s id=%s error=%s",
                contact_ref(link.contact.id),
                chunk.id.hex(),
                type(exc).__name__,
            )
            await self._reply(link, session, m.FileCancel(chunk.id, _reject_reason(exc)))
            return
        stored = await self._db(self._store.message, chunk.id, contact_id=contact_id)
        size = stored.file.size if stored.file is not None else 0
        end = chunk.offset + len(chunk.data)
        if end // PROGRESS_EVERY_BYTES != chunk.offset // PROGRESS_EVERY_BYTES or end >= size:
            self._hub.publish(StateChange(chunk.id.hex(), MessageState.RECEIVING, end, size))
        if end < size:
            return
        try:
            await self._db(self._store.finish_file, chunk.id, _now_ms(), contact_id=contact_id)
        except StoreError as exc:
            await self._reply(link, session, m.FileReject(chunk.id, _reject_reason(exc)))
            return
        await self._reply(link, session, m.FileComplete(chunk.id))
        complete = await self._db(self._store.message, chunk.id, contact_id=contact_id)
        self._hub.publish(message_record(complete))

    async def _onmailbox_refusal(self, link: _Link, record: m.FileReject | m.FileCancel) -> None:
        """A FileReject or FileCancel: only ids exchanged with this contact count."""
        contact_id = link.contact.id
        try:
            stored = await self._db(self._store.message, record.id, contact_id=contact_id)
        except NotFoundError:
            return  # nothing of ours or theirs by that id: ignore
        if stored.direction == Direction.IN:
            # The contact, sending us a file, gave up on it: drop what arrived.
            if isinstance(record, m.FileCancel):
                await self._db(self._store.cancel_file, record.id, contact_id=contact_id)
            return
        job = link.files.get(record.id)
        if job is not None:
            job.stopped = True
        if isinstance(record, m.FileReject) and record.reason in _FINAL_REJECTIONS:
            changed = await self._db(
                self._store.mark_refused,
                [record.id],
                _now_ms(),
                record.reason,
                contact_id=contact_id,
            )
            if changed:
                log.info(
                    "event=file_refused contact=%s id=%s reason=%d",
                    contact_ref(link.contact.id),
                    record.id.hex(),
                    record.reason,
                )
                self._hub.publish(
                    StateChange(record.id.hex(), MessageState.REFUSED, reason=record.reason)
                )
            return
        # No room at the contact now, or it dropped the transfer: the file stays
        # queued and is offered again in a later session.
        log.info(
            "event=file_deferred contact=%s id=%s reason=%d",
            contact_ref(link.contact.id),
            record.id.hex(),
            record.reason,
        )

    # -- what we owe, and announcements ---------------------------------------------------

    async def _send_owed(self, link: _Link, channel: SecureChannel) -> bool:
        """Send one record of acks or read receipts owed; False when none is."""
        contact_id = link.contact.id
        for kind, record in (("ack", m.Ack), ("read", m.Read)):
            ids = await self._db(self._store.owed, contact_id, kind, MAX_ACK_IDS)
            if ids:
                await channel.send(record(tuple(ids)))
                # Written: settled. A loss on the way is healed by the sender
                # sending the message again, which the receiver acks again.
                await self._write(self._store.settle, contact_id, kind, ids)
                return True
        return False

    async def _on_mailbox_info(self, link: _Link, record: m.MailboxInfo) -> None:
        if self._mailbox is None:
            return
        try:
            mailbox, version = self._mailbox.read_announcement(
                link.contact.address, record.announcement
            )
        except RemoteProtocolError:
            log.info("event=mailbox_announcement_bad contact=%s", contact_ref(link.contact.id))
            return
        await self._apply_announcement(link.contact.id, mailbox, version)

    async def _apply_announcement(
        self, contact_id: int, mailbox: OnionAddress | None, version: int
    ) -> None:
        if await self._write(self._store.set_contact_mailbox, contact_id, mailbox, version):
            log.info(
                "event=contact_mailbox contact=%s mailbox=%s",
                contact_ref(contact_id),
                "none" if mailbox is None else "set",
            )
            link = self._links.get(contact_id)
            if link is not None:
                link.contact = replace(link.contact, mailbox=mailbox, mailbox_version=version)
                link.wake.fire()

    # -- deposits into a contact's mailbox (mailbox.md §Sender) -------------------------

    async def _deposit_in(self, link: _Link) -> float | None:
        """Seconds until the link should deposit (<= 0: now); None: it should not."""
        if self._mailbox is None or link.contact.mailbox is None:
            return None
        contact_id = link.contact.id
        if not (
            self._announcement_due(link) is not None
            or await self._db(self._store.has_undeposited, contact_id)
            or await self._db(self._store.has_owed, contact_id)
        ):
            return None
        now = trio.current_time()
        return max(link.down_at + self._policy.mailbox_after, link.deposit_at) - now

    async def _deposit(self, link: _Link) -> None:
        """One deposit session with the contact's mailbox: its own failure domain.

        Envelope by envelope: take one prekey, seal what fits (acks and
        receipts owed first, then the outbox in order, files in parts), deposit
        it, and only once the mailbox said it holds it mark those ``deposited``
        and settle those debts. A refusal (quota, full) ends the session; what
        was not deposited stays in the outbox and goes directly or later.
        """
        mailbox = self._mailbox
        target = link.contact.mailbox
        if mailbox is None or target is None:
            return
        failure: BaseException | None = None
        before = link.envelopes
        with trio.CancelScope() as scope:
            link.scopes.add(scope)
            try:
                with trio.fail_after(self._policy.connect_timeout):
                    channel = await mailbox.dial(target)
                try:
                    await self._deposit_envelopes(link, channel)
                finally:
                    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                        await channel.aclose()
            except* trio.TooSlowError:
                failure = TransportError("timeout")
            except* Exception as group:
                failure = first_failure(group)
            finally:
                link.scopes.discard(scope)
        deposited = link.envelopes - before
        contact = contact_ref(link.contact.id)
        if failure is None:
            link.deposit_failures = 0
            link.deposit_at = 0.0
            link.mailbox_error = ""
            log.info("event=deposited contact=%s envelopes=%d", contact, deposited)
            return
        link.deposit_failures += 1
        p = self._policy
        delay = min(p.retry_max, p.retry_initial * 2 ** min(link.deposit_failures - 1, 30))
        link.deposit_at = trio.current_time() + delay * random.uniform(0.5, 1.0)  # noqa: S311
        reason = _reason(failure)
        if isinstance(failure, MailboxRefusedError):
            reason = f"mailbox-{mb_code_name(failure.code)}"
        link.mailbox_error = reason
        log.info(
            "event=deposit_failed contact=%s envelopes=%d reason=%s", contact, deposited, reason
        )
        if failure is not None and not _expected(failure):
            log.warning("event=deposit_error contact=%s", contact, exc_info=failure)
        self._publish_peer(link)

    async def _deposit_envelopes(self, link: _Link, channel: SecureChannel) -> int:
        mailbox = self._mailbox
        assert mailbox is not None
        contact = link.contact
        owner = contact.address.public_key
        deposited = 0
        req = 0
        while deposited < self._policy.max_envelopes_per_deposit:
            announce = self._announcement_due(link)
            batch = await self._db(self._envelope_batch, contact.id, announce)
            if batch is None:
                break
            records, progress, settled = batch
            req += 1
            await channel.send(m.MbGetPrekey(req, owner))
            # A mailbox that does not answer ends the deposit (TooSlowError),
            # never the link: it would hold the direct dials too.
            with trio.fail_after(self._policy.connect_timeout):
                answer = await _answer(channel, req)
            if not isinstance(answer, m.MbPrekey):
                raise mailbox_refusal(answer, "prekey")
            envelope = await self._cpu(
                mailbox.seal, contact.address, answer.prekey, records, _now_ms()
            )
            req += 1
            await channel.send(m.MbDeposit(req, owner, envelope))
            with trio.fail_after(self._policy.connect_timeout):
                result = await _answer(channel, req)
            if not isinstance(result, m.MbResult) or result.code != m.MbCode.OK:
                raise mailbox_refusal(result, "deposit")
            done = await self._write(self._settle_deposit, contact.id, progress, settled)
            if announce is not None:
                await self._write(self._store.mark_mailbox_told, contact.id, announce[0])
                link.contact = replace(link.contact, mailbox_told=announce[0])
            deposited += 1
            self._deposits += 1
            link.envelopes += 1
            for message_id in done:
                self._hub.publish(StateChange(message_id.hex(), MessageState.DEPOSITED))
        return deposited

    def _settle_deposit(
        self,
        contact_id: int,
        progress: Sequence[tuple[bytes, int, bool]],
        settled: Sequence[tuple[str, list[bytes]]],
    ) -> list[bytes]:
        for kind, ids in settled:
            self._store.settle(contact_id, kind, ids)
        return self._store.mark_deposited(progress, _now_ms(), contact_id=contact_id)

    def _envelope_batch(
        self, contact_id: int, announce: tuple[int, bytes] | None
    ) -> tuple[list[bytes], list[tuple[bytes, int, bool]], list[tuple[str, list[bytes]]]] | None:
        """In the worker thread: the records of the next envelope to deposit,
        what depositing it achieves, and the debts it settles; None if nothing."""
        mailbox = self._mailbox
        assert mailbox is not None
        store = self._store
        records: list[bytes] = []
        progress: list[tuple[bytes, int, bool]] = []
        settled: list[tuple[str, list[bytes]]] = []

        def add(record: m.Message) -> bool:
            data = m.encode(record)
            if not mailbox.fits([*records, data]):
                return False
            records.append(data)
            return True

        if announce is not None:
            add(m.MailboxInfo(announce[1]))
        for kind, cls in (("ack", m.Ack), ("read", m.Read)):
            ids = store.owed(contact_id, kind, MAX_ACK_IDS)
            if ids and add(cls(tuple(ids))):
                settled.append((kind, ids))
        after = 0
        while True:
            page = store.undeposited(contact_id, 64, after=after)
            if not page:
                break
            for outgoing in page:
                after = outgoing.seq
                if not self._add_outgoing(outgoing, add, progress):
                    return (records, progress, settled) if records else None
        return (records, progress, settled) if records else None

    def _add_outgoing(
        self,
        outgoing: Outgoing,
        add: Callable[[m.Message], bool],
        progress: list[tuple[bytes, int, bool]],
    ) -> bool:
        """Add what of ``outgoing`` fits; False once the envelope is full."""
        if outgoing.file is None:
            if not add(outgoing.to_message()):
                return False
            progress.append((outgoing.id, 0, True))
            return True
        size = outgoing.file.size
        start = offset = outgoing.deposit_offset
        if start == 0 and not add(outgoing.to_message()):
            return False
        while offset < size:
            length = min(MAILBOX_PART, size - offset)
            data = self._read_range(outgoing, offset, length)
            if not add(m.FileChunk(outgoing.id, offset, data)):
                break
            offset += length
        whole = offset >= size
        if offset > start or whole:
            progress.append((outgoing.id, offset, whole))
        return whole

    def _read_range(self, outgoing: Outgoing, offset: int, length: int) -> bytes:
        """``length`` bytes of an outgoing file from any ``offset``: the wire
        chunks (sealed records) it spans, cut."""
        out = bytearray()
        while len(out) < length:
            at = offset + len(out)
            start = at - at % FILE_CHUNK_SIZE
            data = self._store.read_file_chunk(
                outgoing.id, start, FILE_CHUNK_SIZE, contact_id=outgoing.contact_id
            )
            if len(data) <= at - start:
                raise StoreError(f"file {outgoing.id.hex()} is shorter than its size")
            out += data[at - start : at - start + length - len(out)]
        return bytes(out)

    # -- what came through our mailbox (mailbox.md §Owner) -------------------------------

    async def take_sealed(
        self,
        contact_id: int,
        records: Sequence[m.Message | m.UnknownExtension],
        then: Callable[[], None],
    ) -> list[Stored]:
        """Store what an opened envelope from ``contact_id`` carried, in one
        transaction with ``then()`` (the caller's own bookkeeping: the prekey
        deleted, the envelope noted), and owe the contact the acks. A text over
        the unread quota fails the whole envelope (QuotaError): it stays at the
        mailbox for a later drain. Returns the messages newly complete."""
        outcome: _Sealed = await self._write(self._apply_sealed, contact_id, records, then)
        rows = outcome.rows
        self._texts_received += sum(1 for r in rows if r.kind == Kind.TEXT)
        self._texts_acked += len(outcome.delivered)
        for message_id in outcome.delivered:
            self._hub.publish(StateChange(message_id.hex(), MessageState.DELIVERED))
        for message_id in outcome.read:
            self._hub.publish(StateChange(message_id.hex(), MessageState.READ))
        for row in rows:
            self._hub.publish(message_record(row))
        if outcome.mailbox_changed:
            contact = self._store.contact_by_id(contact_id)
            if contact is not None:
                self.contact_changed(contact)
        self.owed(contact_id)
        return rows

    def _apply_sealed(
        self,
        contact_id: int,
        records: Sequence[m.Message | m.UnknownExtension],
        then: Callable[[], None],
    ) -> _Sealed:
        store = self._store
        p = self._policy
        now = _now_ms()
        acks: list[bytes] = []
        new: list[bytes] = []
        outcome = _Sealed()
        texts = [r for r in records if isinstance(r, m.Text)]
        with store.transaction():
            room = p.max_unread_per_contact - store.unread_count(contact_id, kind=Kind.TEXT)
            if len(texts) > room:
                raise QuotaError(
                    "too many unread texts from this contact",
                    quota="unread",
                    limit=p.max_unread_per_contact,
                )
            for record in records:
                if isinstance(record, m.Text):
                    if store.store_text(
                        contact_id,
                        record.id,
                        record.created_ms,
                        record.body,
                        record.content_type,
                        now,
                    ):
                        new.append(record.id)
                    acks.append(record.id)
                elif isinstance(record, m.Ack | m.FileComplete | m.Read):
                    self._sealed_marks(contact_id, record, now, outcome)
                elif isinstance(record, m.FileOffer):
                    self._sealed_offer(contact_id, record, now, acks, new)
                elif isinstance(record, m.FileChunk):
                    self._sealed_part(contact_id, record, now, acks, new)
                elif isinstance(record, m.MailboxInfo) and self._mailbox is not None:
                    contact = store.contact_by_id(contact_id)
                    if contact is not None:
                        try:
                            mailbox, version = self._mailbox.read_announcement(
                                contact.address, record.announcement
                            )
                        except RemoteProtocolError:
                            continue
                        if store.set_contact_mailbox(contact_id, mailbox, version):
                            outcome.mailbox_changed = True
                # Anything else (Ping, FileAccept, a mailbox's record) has no
                # meaning in an envelope: ignored.
            if acks:
                store.owe(contact_id, "ack", acks, now)
            then()
        outcome.rows = [store.message(i, contact_id=contact_id) for i in new]
        return outcome

    def _sealed_offer(
        self, contact_id: int, offer: m.FileOffer, now: int, acks: list[bytes], new: list[bytes]
    ) -> None:
        p = self._policy
        store = self._store
        try:
            with store.transaction():
                offset = store.begin_file(
                    contact_id,
                    offer,
                    now,
                    p.max_file_size,
                    p.max_disk_use,
                    max_transfers=p.max_transfers_per_contact,
                )
                if offset >= offer.size and store.finish_file(offer.id, now, contact_id=contact_id):
                    new.append(offer.id)
        except NoSpaceError:
            raise  # the whole envelope waits at the mailbox for room
        except OnionpostError as exc:
            log.info(
                "event=file_rejected contact=%s id=%s reason=%s via=mailbox",
                contact_ref(contact_id),
                offer.id.hex(),
                type(exc).__name__,
            )
            return
        if offset >= offer.size:
            acks.append(offer.id)

    def _sealed_marks(
        self, contact_id: int, record: m.Ack | m.FileComplete | m.Read, now: int, outcome: _Sealed
    ) -> None:
        store = self._store
        try:
            with store.transaction():
                if isinstance(record, m.Read):
                    outcome.read += store.mark_read(
                        record.ids, now, contact_id=contact_id, direction=Direction.OUT
                    )
                    return
                ids = record.ids if isinstance(record, m.Ack) else (record.id,)
                outcome.delivered += store.mark_delivered(list(ids), now, contact_id=contact_id)
        except NoSpaceError:
            raise
        except OnionpostError as exc:
            log.info(
                "event=mark_failed contact=%s error=%s via=mailbox",
                contact_ref(contact_id),
                type(exc).__name__,
            )

    def _complete_file(self, contact_id: int, file_id: bytes) -> bool:
        try:
            stored = self._store.message(file_id, contact_id=contact_id)
        except NotFoundError:
            return False
        return (
            stored.direction == Direction.IN
            and stored.file is not None
            and stored.file.complete
            and stored.state != "receiving"
        )

    def _sealed_part(
        self, contact_id: int, chunk: m.FileChunk, now: int, acks: list[bytes], new: list[bytes]
    ) -> None:
        store = self._store
        try:
            with store.transaction():
                held = store.write_file_part(
                    chunk.id,
                    chunk.offset,
                    chunk.data,
                    contact_id=contact_id,
                    max_disk=self._policy.max_disk_use,
                    now=now,
                )
                stored = store.message(chunk.id, contact_id=contact_id)
                size = stored.file.size if stored.file is not None else 0
                if held >= size and store.finish_file(chunk.id, now, contact_id=contact_id):
                    new.append(chunk.id)
                    acks.append(chunk.id)
        except NoSpaceError:
            raise  # the whole envelope waits at the mailbox for room
        except NotFoundError:
            # No such file arriving: complete already (the same file came
            # directly meanwhile, or an earlier envelope finished it): say so
            # again; or never offered: nothing to do.
            if self._complete_file(contact_id, chunk.id):
                acks.append(chunk.id)
        except OnionpostError as exc:
            # A part out of order (one went missing) or refused: nothing of it
            # is kept; the file completes directly when the sender offers it.
            log.info(
                "event=chunk_not_stored contact=%s id=%s error=%s via=mailbox",
                contact_ref(contact_id),
                chunk.id.hex(),
                type(exc).__name__,
            )


# -- helpers ------------------------------------------------------------------------------


def message_record(stored: Stored) -> Message:
    """A stored message as the local API shows it."""
    file = stored.file
    return Message(
        id=stored.id.hex(),
        contact=stored.contact,
        direction=api.Direction(stored.direction.value),
        kind=api.Kind(stored.kind.value),
        state=_shown_state(stored),
        created_ms=stored.created_ms,
        seq=stored.seq if stored.direction == Direction.IN and stored.seq else None,
        received_ms=stored.received_ms,
        body=stored.body if stored.kind == Kind.TEXT else None,
        content_type=stored.content_type,
        file=None if file is None else FileInfo(file.name, file.size, file.complete),
        reason=stored.refused_reason,
        sent_ms=stored.sent_ms,
        delivered_ms=stored.delivered_ms,
        read_ms=stored.read_ms,
    )


def _shown_state(stored: Stored) -> MessageState:
    """The state the local API shows: ``deposited`` is an outgoing message
    the contact's mailbox holds, not yet acknowledged by the contact."""
    if stored.deposited_ms is not None and stored.state in ("queued", "sent"):
        return MessageState.DEPOSITED
    return MessageState(stored.state)


def _valid_offset(offset: int, size: int) -> bool:
    return offset % FILE_CHUNK_SIZE == 0 and 0 <= offset <= size


def _expected(exc: BaseException) -> bool:
    """Failures that are routine on a network or a full disk, not our bugs."""
    return isinstance(exc, OnionpostError)


def _code_name(code: int | None) -> str:
    if code is None:
        return "none"
    try:
        return CloseCode(code).name.lower().replace("_", "-")
    except ValueError:
        return str(code)


def _reason(exc: BaseException | None) -> str:
    """A failure in words, for logs and ``status``: never message contents."""
    if exc is None:
        return "unknown"
    if isinstance(exc, DialError):
        return exc.reason
    if isinstance(exc, RemoteProtocolError):
        return f"protocol-{_code_name(exc.close_code)}"
    if isinstance(exc, TransportError):
        text = str(exc)
        if text in ("timeout", "refused"):
            return text
        return "stream-ended" if "without a Close" in text else "stream-broken"
    if isinstance(exc, NoSpaceError):
        return "our-disk-full"
    if isinstance(exc, StoreError):
        return "our-store-failed"
    if isinstance(exc, OnionpostError):
        return type(exc).__name__
    return f"internal-{type(exc).__name__}"


def _reject_reason(exc: StoreError) -> int:
    if isinstance(exc, NoSpaceError | QuotaError):
        return m.FileRejectReason.NO_SPACE
    if isinstance(exc, HashMismatchError):
        return m.FileRejectReason.HASH_MISMATCH
    if isinstance(exc, FileTooLargeError):
        return m.FileRejectReason.TOO_LARGE
    return m.FileRejectReason.DECLINED


# A file travels through a mailbox in parts of this many bytes (the last one
# shorter), one per envelope with room to spare for acks: a wire chunk does
# not fit in an envelope. The receiver puts the parts back into chunks
# (Store.write_file_part; mailbox.md §Files).
MAILBOX_PART: Final = 60_000


async def _answer(channel: SecureChannel, req: int) -> m.Message:
    """The mailbox's answer to request ``req`` (a deposit session sends one at a time)."""
    while True:
        try:
            record = await channel.receive()
        except trio.EndOfChannel:
            raise TransportError("the mailbox closed the session") from None
        if isinstance(record, m.MbResult | m.MbPrekey | m.MbUsage) and record.req == req:
            return record
        if isinstance(record, m.Ping | m.Pong | m.UnknownExtension):
            continue
        raise RemoteProtocolError(
            f"{type(record).__name__} where a mailbox's answer was due",
            close_code=CloseCode.BAD_MESSAGE,
        )


def mailbox_refusal(answer: m.Message, what: str) -> MailboxRefusedError:
    if isinstance(answer, m.MbResult):
        return MailboxRefusedError(
            f"the mailbox refused the {what}: {answer.detail or mb_code_name(answer.code)}",
            code=answer.code,
            detail=answer.detail,
        )
    return MailboxRefusedError(
        f"the mailbox answered the {what} with {type(answer).__name__}",
        code=m.MbCode.BAD_REQUEST,
    )


def mb_code_name(code: int) -> str:
    try:
        return m.MbCode(code).name.lower().replace("_", "-")
    except ValueError:
        return str(code)
