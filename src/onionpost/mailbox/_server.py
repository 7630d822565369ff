"""The mailbox's session server: pairing, registrations, prekeys, deposits and drains.

Theory of operation
-------------------
::

    MailboxServer.run()             one nursery: the part's own core
    ├── publisher                   tells tor who is authorized, after each change
    └── housekeeping                retention, expired codes and prekeys
    run_inbound(channel)            one per session (the listener's handler)
    ├── receiver                    records in, rate-limited; one answer per request
    └── sender                      answers, then the fetched envelopes, then pushes

*Who may connect* (mailbox.md §Authorization). Tor lets in only clients
holding an authorized key: the owners', their registered contacts', and
the keys of setup codes not yet expired. After the handshake,
:meth:`MailboxServer.decide` accepts an owner, a contact some owner
registered, or, while a setup code waits unused, anyone (it pairs or
nothing). Both come from an in-memory snapshot of the store's directory,
re-read after every change, so ``decide`` is a set lookup, no I/O.

*One answer per request.* Every request carries ``req``; the mailbox answers
each with exactly one MbResult, MbPrekey or MbUsage of the same ``req``.
Anything an owner-only request asks of a peer that is not an owner, and
anything about an owner a contact was not registered by, is answered
``MbResult(req, NOT_FOUND, "not found")``: byte for byte what an owner that
does not exist gets. Records a mailbox never takes end the session with
Close(BAD_MESSAGE).

*Failure domains* (STYLE 16). A session is one: whatever goes wrong in it (a
record that does not decode, a peer that vanishes, a store error, a bug)
ends that session, is logged once with a reason, and never reaches the
server's nursery, which only its own core (the publisher, housekeeping)
can end.

*Bounds.* Records per session per second (a token bucket: the mailbox stops
reading, and tor's flow control slows the sender); answers queued per
session (:data:`MAX_PENDING_REPLIES`: the receiver waits for the sender, so
a peer that does not read stops being read); sessions per peer; envelopes
read from the store per page while pushing (:data:`FETCH_PAGE`, each sent
before the next page is read); the envelope size, per-contact quotas, the
disk budget, each owner's budget, contacts per owner and retention
(:class:`MailboxPolicy`); owners, one-time prekeys, setup codes waiting and
tor client keys (constants below).

*Store work* runs in the injected :class:`~onionpost.host.StoreWorker`, one
call at a time: a worker thread, or the event loop for tests on virtual time.

Logs name owners and contacts by handle (``owner=#2``, ``contact=#7``, the
store's ids) and carry envelope ids and reasons; never envelope contents,
tokens or keys. Addresses appear only at DEBUG.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import trio

from onionpost import api
from onionpost.errors import (
    AuthenticationError,
    CloseCode,
    ConfigError,
    MessageDecodeError,
    NoSpaceError,
    NotFoundError,
    OnionpostError,
    QuotaError,
    RemoteProtocolError,
    StoreError,
    TransportError,
)
from onionpost.home import Config
from onionpost.host import (
    CLOSE_GRACE,
    ClientsPublisher,
    Kick,
    MeteredReceiver,
    PeerSessions,
    Shed,
    StoreWorker,
    ThreadWorker,
    first_failure,
    refuse_session,
)
from onionpost.host import reason as failure_reason
from onionpost.limits import MAX_UNUSED_PREKEYS_PER_CONTACT
from onionpost.proto import envelope as env
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.pairing import SetupCode, token_digest
from onionpost.proto.session import PeerDecision
from onionpost.store import Directory, MailboxStore, OwnerUsage, PairOutcome, Prekey, PrekeyKind
from onionpost.tor import MAX_AUTHORIZED_CLIENTS
from onionpost.transport import SecureChannel

__all__ = [
    "CODE_REFUSED_DETAIL",
    "FETCH_PAGE",
    "HOUSEKEEPING_INTERVAL",
    "MAX_CLIENTS",
    "MAX_ONE_TIME_PREKEYS",
    "MAX_OPEN_CODES",
    "MAX_OWNERS",
    "MAX_PENDING_REPLIES",
    "MAX_SESSIONS_PER_PEER",
    "MAX_UNUSED_PREKEYS_PER_CONTACT",
    "NOT_FOUND_DETAIL",
    "IssuedCode",
    "MailboxPolicy",
    "MailboxServer",
]

log = logging.getLogger("onionpost.mailbox")

T = TypeVar("T")

# Seconds between rounds of retention and expiry.
HOUSEKEEPING_INTERVAL: Final = 60.0
# Answers queued for a session's sender before its receiver waits.
MAX_PENDING_REPLIES: Final = 64
# Envelopes read from the store at once while pushing (at most ~1 MiB).
FETCH_PAGE: Final = 16
# Sessions one peer may hold at once; another is closed at once.
MAX_SESSIONS_PER_PEER: Final = 4
# Owners one mailbox serves, one-time prekeys it holds for each, setup codes
# waiting to be used at once (contacts per owner: the policy's).
MAX_OWNERS: Final = 16
MAX_ONE_TIME_PREKEYS: Final = 200
MAX_OPEN_CODES: Final = 8
# Distinct tor client keys the onion service authorizes (tor's bound for us).
MAX_CLIENTS: Final = MAX_AUTHORIZED_CLIENTS

NOT_FOUND_DETAIL: Final = "not found"
CODE_REFUSED_DETAIL: Final = "the setup code is unknown, used or expired"

# Requests only an owner makes (mailbox.md §Wire records).
_OWNER_ONLY: Final = (
    m.MbRegister,
    m.MbDeregister,
    m.MbPrekeys,
    m.MbFetch,
    m.MbDelete,
    m.MbStatus,
    m.MbWipe,
)


def _wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class MailboxPolicy:
    """A mailbox's bounds and timers (``config.toml``'s ``[mailbox]`` table)."""

    retention: float = 30 * 24 * 3600.0  # seconds an envelope is held at most
    max_envelope: int = env.MAX_ENVELOPE
    max_envelopes_per_contact: int = 5000  # per (owner, contact)
    max_bytes_per_contact: int = 256 << 20
    # What all the contacts of one owner may leave for it together: by default
    # an even share of the disk among the MAX_OWNERS owners, so that one
    # owner's contacts fill that owner's share, never the others'.
    max_envelopes_per_owner: int = 20000
    max_bytes_per_owner: int = 640 << 20
    max_contacts_per_owner: int = 200  # registrations (each a tor client key)
    max_disk_use: int = 10 << 30  # envelopes of every owner together
    records_per_second: float = 200.0  # per session, with a burst of twice that

    def __post_init__(self) -> None:
        if not 0 < self.max_envelope <= env.MAX_ENVELOPE:
            raise ConfigError(f"max_envelope must be 1 to {env.MAX_ENVELOPE} bytes")
        if not self.retention > 0 or not self.records_per_second > 0:
            raise ConfigError("retention and records_per_second must be positive")
        if min(self.max_envelopes_per_owner, self.max_bytes_per_owner) < 1:
            raise ConfigError("an owner's budget must be positive")
        if not 0 < self.max_contacts_per_owner <= MAX_CLIENTS:
            raise ConfigError(f"max_contacts_per_owner must be 1 to {MAX_CLIENTS}")

    @classmethod
    def from_config(cls, config: Config) -> MailboxPolicy:
        return cls(
            retention=config.mailbox_retention,
            max_envelope=config.mailbox_max_envelope,
            max_envelopes_per_contact=config.mailbox_max_envelopes_per_contact,
            max_bytes_per_contact=config.mailbox_max_bytes_per_contact,
            max_envelopes_per_owner=config.mailbox_max_envelopes_per_owner,
            max_bytes_per_owner=config.mailbox_max_bytes_per_owner,
            max_contacts_per_owner=config.mailbox_max_contacts_per_owner,
            max_disk_use=config.mailbox_max_disk_use,
            records_per_second=float(config.mailbox_records_per_second),
        )


@dataclass(frozen=True, slots=True)
class IssuedCode:
    """A new setup code and when it stops working (ms since the epoch)."""

    code: SetupCode
    expires_ms: int


@dataclass(slots=True)
class _Fetch:
    """A session's subscription: envelopes after ``cursor`` are still to send."""

    req: int
    cursor: int
    answered: bool = False  # the MbResult after the envelopes held at first went out


@dataclass(eq=False, slots=True)
class _Session:
    channel: SecureChannel
    serial: int
    replies: deque[m.Message] = field(default_factory=deque)
    wake: Kick = field(default_factory=Kick)  # for the sender
    room: Kick = field(default_factory=Kick)  # for the receiver
    fetch: _Fetch | None = None
    closing: Shed | None = None

    @property
    def peer(self) -> OnionAddress:
        return self.channel.peer


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """The directory as ``decide`` and ``authorized_clients`` read it."""

    owners: dict[bytes, int]  # identity -> owner id
    contacts: dict[bytes, int]  # identity -> its first registration's id
    keys: frozenset[bytes]  # owners' and contacts' tor client keys
    codes: tuple[tuple[int, bytes, bool], ...]  # (expires_ms, client key, used)

    @classmethod
    def of(cls, directory: Directory) -> _Snapshot:
        contacts: dict[bytes, int] = {}
        for r in directory.registrations:
            contacts.setdefault(r.contact.public_key, r.id)
        return cls(
            owners={o.address.public_key: o.id for o in directory.owners},
            contacts=contacts,
            keys=frozenset(
                [o.client_auth_public for o in directory.owners]
                + [r.client_auth_public for r in directory.registrations]
            ),
            codes=tuple((c.expires_ms, c.client_auth_public, c.used) for c in directory.codes),
        )


class MailboxServer:
    """A mailbox's sessions and state; see the module docstring.

    Built from its store, its policy and its own onion address (which setup
    codes name). ``clients_changed()`` is awaited, one call at a time, after
    the set of authorized tor client keys changed (the service then gives
    tor :meth:`authorized_clients`). ``clock()`` is the time in milliseconds
    since the epoch (default: the system clock). ``worker`` runs the store
    calls (default: a worker thread, so an fsync never stalls the event loop;
    tests on virtual time give an :class:`~onionpost.host.InlineWorker`).
    :meth:`run` must be running.
    """

    def __init__(
        self,
        store: MailboxStore,
        policy: MailboxPolicy,
        *,
        address: OnionAddress,
        clients_changed: Callable[[], Awaitable[None]] | None = None,
        clock: Callable[[], int] = _wall_ms,
        worker: StoreWorker | None = None,
    ) -> None:
        self._store = store
        self._policy = policy
        self._address = address
        self._clock = clock
        self._worker = worker or ThreadWorker()
        self._snapshot = _Snapshot.of(store.directory(clock()))
        self._refreshes = 0
        self._applied = 0
        self._clients = ClientsPublisher(self.authorized_clients, clients_changed, log=log)
        self._sessions: PeerSessions[_Session] = PeerSessions(MAX_SESSIONS_PER_PEER)
        self._serials = itertools.count(1)

    def __repr__(self) -> str:
        return f"MailboxServer({len(self._snapshot.owners)} owners)"

    # -- the core -------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: the publisher of authorized clients, housekeeping."""
        await self._refresh()
        async with trio.open_nursery() as nursery:
            self._clients.start(nursery)
            nursery.start_soon(self._housekeeping)
            task_status.started()

    async def _db(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One store call, in the worker (one at a time)."""
        return await self._worker(fn, *args, **kwargs)

    async def _refresh(self) -> None:
        """Re-read the directory after a change (a later read never loses to an earlier)."""
        self._refreshes += 1
        ticket = self._refreshes
        directory = await self._db(self._store.directory, self._clock())
        if ticket > self._applied:
            self._applied = ticket
            self._snapshot = _Snapshot.of(directory)
            self._clients.changed()

    async def wait_published(self) -> None:
        """Until tor has been given the keys authorized now (a new setup code's
        key among them). The caller bounds the wait."""
        await self._clients.wait_published()

    async def _housekeeping(self) -> None:
        while True:
            await trio.sleep(HOUSEKEEPING_INTERVAL)
            try:
                await self._expire()
            except StoreError as exc:
                # A full disk or a locked page now; the next round tries again.
                log.warning("event=housekeeping_failed error=%s", type(exc).__name__)

    async def _expire(self) -> None:
        """One round of housekeeping: retention, expired codes and prekeys."""
        now = self._clock()
        expired = await self._db(
            self._store.expire,
            now=now,
            deposited_before=now - int(self._policy.retention * 1000),
            now_s=now // 1000,
        )
        if expired.envelopes or expired.codes or expired.prekeys:
            log.info(
                "event=expired envelopes=%d codes=%d prekeys=%d",
                expired.envelopes,
                expired.codes,
                expired.prekeys,
            )
        # Codes that expired take their keys out of what tor authorizes.
        await self._refresh()

    # -- who may connect ------------------------------------------------------------------

    def _open_code(self, now: int) -> bool:
        return any(expires > now and not used for expires, _, used in self._snapshot.codes)

    def decide(self, peer: OnionAddress) -> PeerDecision:
        """ACCEPT an owner, a contact an owner registered, or anyone while a setup
        code waits unused and unexpired (to pair); REFUSE anyone else."""
        snapshot = self._snapshot
        key = peer.public_key
        if key in snapshot.owners or key in snapshot.contacts or self._open_code(self._clock()):
            return PeerDecision.ACCEPT
        return PeerDecision.REFUSE

    def authorized_clients(self) -> list[bytes]:
        """Every tor client key to authorize now, sorted, each once."""
        now = self._clock()
        keys = set(self._snapshot.keys)
        keys.update(key for expires, key, _ in self._snapshot.codes if expires > now)
        return sorted(keys)

    # -- the local API's side -------------------------------------------------------------

    async def new_setup_code(self, expires_s: int) -> IssuedCode:
        """A new one-time setup code, valid ``expires_s`` seconds; ConfigError when
        too many wait unused already."""
        if not isinstance(expires_s, int) or expires_s <= 0:
            raise ConfigError("a setup code's lifetime is a positive number of seconds")
        code = SetupCode.generate(self._address)
        now = self._clock()
        expires_ms = now + expires_s * 1000
        try:
            await self._db(
                self._store.add_setup_code,
                token_digest(code.token()),
                code.client_auth_public(),
                now=now,
                expires_ms=expires_ms,
                max_open=MAX_OPEN_CODES,
                max_clients=MAX_CLIENTS,
            )
        except QuotaError as exc:
            raise ConfigError(str(exc)) from exc
        await self._refresh()
        log.info("event=setup_code_made expires_in=%d", expires_s)
        return IssuedCode(code, expires_ms)

    async def usage(self) -> list[api.MailboxOwnerUsage]:
        """What is held for each owner."""
        return [_usage_record(u) for u in await self._db(self._store.usages)]

    async def wipe(self, owner: OnionAddress | None) -> api.Wiped:
        """Delete one owner's space (NotFoundError when it is none) or every owner's."""
        if owner is None:
            envelopes, owners = await self._db(self._store.wipe_all)
        else:
            envelopes, owners = await self._db(self._store.wipe, owner), 1
        self._end_fetches(owner)
        await self._refresh()
        log.info("event=wiped owners=%d envelopes=%d by=operator", owners, envelopes)
        return api.Wiped(envelopes=envelopes, owners=owners)

    def _end_fetches(self, owner: OnionAddress | None) -> None:
        for key, sessions in self._sessions.items():
            if owner is None or key == owner.public_key:
                for session in sessions:
                    session.fetch = None

    # -- sessions -------------------------------------------------------------------------

    def _handle(self, key: bytes) -> str:
        """How logs name a peer at INFO: its role and the store's id."""
        snapshot = self._snapshot
        if key in snapshot.owners:
            return f"owner=#{snapshot.owners[key]}"
        if key in snapshot.contacts:
            return f"contact=#{snapshot.contacts[key]}"
        return "peer=pairing"

    async def run_inbound(self, channel: SecureChannel) -> None:
        """Serve one session (the listener's handler). Never raises but Cancelled:
        the session is its own failure domain."""
        key = channel.peer.public_key
        session = _Session(channel, next(self._serials))
        if not self._sessions.admit(key, session):
            await refuse_session(channel, session.serial, log)
            return
        log.info("event=session_up session=%d %s", session.serial, self._handle(key))
        log.debug("event=session_up session=%d peer=%s", session.serial, channel.peer)
        failure: BaseException | None = None
        try:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._sender, session)
                    await self._receiver(session)
                    nursery.cancel_scope.cancel()
            except* Exception as group:
                failure = first_failure(group)
            # The channel knows best why it failed (a task cancelled while the
            # channel was being aborted loses the peer's error on its way out).
            if isinstance(channel.failure, RemoteProtocolError) and not isinstance(failure, Shed):
                failure = channel.failure
        finally:
            self._sessions.leave(key, session)
            code, reason = CloseCode.NORMAL, ""
            if isinstance(failure, Shed):
                code, reason = failure.code, str(failure)
            elif failure is not None and not isinstance(
                failure, RemoteProtocolError | TransportError
            ):
                code = CloseCode.INTERNAL_ERROR
            with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                if isinstance(failure, Shed):
                    # The answers already due go out before the Close.
                    with contextlib.suppress(OnionpostError, trio.ClosedResourceError):
                        await _send_replies(session)
                await channel.aclose(code, reason)
            self._ended(session, failure)

    def _ended(self, session: _Session, failure: BaseException | None) -> None:
        handle = self._handle(session.peer.public_key)
        if failure is None:
            log.info("event=session_down session=%d %s reason=closed", session.serial, handle)
            return
        reason = failure_reason(failure)
        if isinstance(failure, OnionpostError) and not isinstance(failure, StoreError):
            log.info("event=session_down session=%d %s reason=%s", session.serial, handle, reason)
            return
        # Our own store failing, or a bug: worth a warning (and a traceback), once.
        log.warning(
            "event=session_error session=%d %s reason=%s",
            session.serial,
            handle,
            reason,
            exc_info=None if isinstance(failure, OnionpostError) else failure,
        )

    async def _reply(self, session: _Session, record: m.Message) -> None:
        """Queue an answer for the sender (the receiver never blocks on a write)."""
        while len(session.replies) >= MAX_PENDING_REPLIES:
            await session.room.wait()  # no await between the check and the wait
        session.replies.append(record)
        session.wake.fire()

    async def _receiver(self, session: _Session) -> None:
        records = MeteredReceiver(session.channel, self._policy.records_per_second)
        while True:
            try:
                record = await records.receive()
            except trio.EndOfChannel:
                return
            if isinstance(record, m.UnknownExtension):
                continue  # spec.md §5.1: an unknown extension is ignored
            handler = self._HANDLERS.get(type(record))
            if handler is None:
                raise Shed(
                    f"a mailbox does not take {type(record).__name__}",
                    code=CloseCode.BAD_MESSAGE,
                    reason=f"unexpected-{type(record).__name__}",
                )
            req: int = record.req  # type: ignore[union-attr]
            if isinstance(record, _OWNER_ONLY) and session.peer.public_key not in (
                self._snapshot.owners
            ):
                answer: m.Message | None = _not_found(req)
            else:
                answer = await handler(self, session, record)
            if answer is not None:
                await self._reply(session, answer)

    async def _sender(self, session: _Session) -> None:
        """Answers first; then what the session's fetch has still to send."""
        while True:
            seen = session.wake.generation
            if session.replies:
                await _send_replies(session)
                continue
            if session.closing is not None:
                raise session.closing
            fetch = session.fetch
            if fetch is not None and await self._push(session, fetch):
                continue
            await session.wake.wait(since=seen)

    async def _push(self, session: _Session, fetch: _Fetch) -> bool:
        """Send one page of envelopes after the cursor, or the fetch's answer once
        there are none. False when there is nothing to do until a deposit."""
        page = await self._db(
            self._store.envelopes, session.peer, after=fetch.cursor, limit=FETCH_PAGE
        )
        for held in page:
            if session.fetch is not fetch:
                return True  # a new MbFetch replaced this one: start over from it
            await session.channel.send(
                m.MbEnvelope(held.seq, held.id, held.deposited_ms, held.data)
            )
            fetch.cursor = held.seq
        if page:
            return True
        if fetch.answered or session.fetch is not fetch:
            return False
        fetch.answered = True
        await self._db(self._store.note_drained, session.peer, self._clock())
        await session.channel.send(m.MbResult(fetch.req, m.MbCode.OK, value=fetch.cursor))
        return True

    def _wake_owner(self, owner: bytes) -> None:
        for session in self._sessions.of(owner):
            if session.fetch is not None:
                session.wake.fire()

    # -- requests -------------------------------------------------------------------------

    async def _pair(self, session: _Session, record: m.MbPair) -> m.Message:
        try:
            outcome = await self._db(
                self._store.pair,
                token_digest(record.token),
                session.peer,
                record.client_auth_public,
                now=self._clock(),
                max_owners=MAX_OWNERS,
                max_clients=MAX_CLIENTS,
            )
        except QuotaError as exc:
            return m.MbResult(record.req, m.MbCode.QUOTA_EXCEEDED, str(exc))
        if outcome is PairOutcome.REFUSED:
            log.info("event=pairing_refused session=%d", session.serial)
            return m.MbResult(record.req, m.MbCode.CODE_REFUSED, CODE_REFUSED_DETAIL)
        await self._refresh()
        log.info(
            "event=paired session=%d %s repeated=%s",
            session.serial,
            self._handle(session.peer.public_key),
            "yes" if outcome is PairOutcome.REPEATED else "no",
        )
        log.debug("event=paired owner=%s", session.peer)
        return _ok(record.req)

    async def _register(self, session: _Session, record: m.MbRegister) -> m.Message:
        contact = OnionAddress.from_public_key(record.contact)
        try:
            registration = await self._db(
                self._store.register,
                session.peer,
                contact,
                record.client_auth_public,
                now=self._clock(),
                max_per_owner=self._policy.max_contacts_per_owner,
                max_clients=MAX_CLIENTS,
            )
        except NotFoundError:
            return _not_found(record.req)
        except QuotaError as exc:
            return m.MbResult(record.req, m.MbCode.QUOTA_EXCEEDED, str(exc))
        await self._refresh()
        log.info(
            "event=registered %s contact=#%d",
            self._handle(session.peer.public_key),
            registration.id,
        )
        log.debug("event=registered contact=#%d address=%s", registration.id, contact)
        return _ok(record.req)

    async def _deregister(self, session: _Session, record: m.MbDeregister) -> m.Message:
        contact = OnionAddress.from_public_key(record.contact)
        try:
            removed = await self._db(self._store.deregister, session.peer, contact)
        except NotFoundError:
            return _not_found(record.req)
        if removed:
            await self._refresh()
            log.info("event=deregistered %s", self._handle(session.peer.public_key))
        return _ok(record.req, int(removed))

    async def _prekeys(self, session: _Session, record: m.MbPrekeys) -> m.Message:
        now_s = self._clock() // 1000
        prekeys = []
        for data in record.prekeys:
            try:
                signed = env.SignedPrekey.parse(data)
                signed.verify(session.peer, now=now_s)
            except (MessageDecodeError, AuthenticationError):
                return m.MbResult(
                    record.req,
                    m.MbCode.BAD_REQUEST,
                    "a prekey is malformed, expired or not signed by this owner",
                )
            prekeys.append(
                Prekey(signed.key_id, PrekeyKind(int(signed.kind)), signed.not_after, data)
            )
        try:
            held = await self._db(
                self._store.add_prekeys,
                session.peer,
                prekeys,
                now=self._clock(),
                max_one_time=MAX_ONE_TIME_PREKEYS,
            )
        except NotFoundError:
            return _not_found(record.req)
        except QuotaError as exc:
            return m.MbResult(record.req, m.MbCode.QUOTA_EXCEEDED, str(exc))
        return _ok(record.req, held)

    async def _get_prekey(self, session: _Session, record: m.MbGetPrekey) -> m.Message:
        owner = OnionAddress.from_public_key(record.owner)
        try:
            prekey = await self._db(
                self._store.take_prekey,
                owner,
                session.peer,
                now_s=self._clock() // 1000,
                now=self._clock(),
                max_unused=MAX_UNUSED_PREKEYS_PER_CONTACT,
            )
        except NotFoundError:
            return _not_found(record.req)
        if prekey is None:
            return m.MbResult(record.req, m.MbCode.NO_PREKEY, "no prekey left")
        return m.MbPrekey(record.req, prekey)

    async def _deposit(self, session: _Session, record: m.MbDeposit) -> m.Message:
        limit = self._policy.max_envelope
        if len(record.envelope) > limit:
            return m.MbResult(
                record.req, m.MbCode.TOO_LARGE, f"an envelope is at most {limit} bytes"
            )
        try:
            header = env.EnvelopeHeader.parse(record.envelope)
        except MessageDecodeError:
            return m.MbResult(record.req, m.MbCode.BAD_REQUEST, "a malformed envelope")
        owner = OnionAddress.from_public_key(record.owner)
        p = self._policy
        try:
            done = await self._db(
                self._store.deposit,
                owner,
                session.peer,
                header.envelope_id,
                record.envelope,
                now=self._clock(),
                max_envelopes=p.max_envelopes_per_contact,
                max_bytes=p.max_bytes_per_contact,
                max_disk=p.max_disk_use,
                max_owner_envelopes=p.max_envelopes_per_owner,
                max_owner_bytes=p.max_bytes_per_owner,
                key_id=header.key_id,
            )
        except NotFoundError:
            return _not_found(record.req)
        except QuotaError as exc:
            return m.MbResult(record.req, m.MbCode.QUOTA_EXCEEDED, str(exc))
        except NoSpaceError:
            log.warning("event=mailbox_full %s", self._handle(record.owner))
            return m.MbResult(record.req, m.MbCode.MAILBOX_FULL, "the mailbox is full")
        if done.new:
            self._wake_owner(record.owner)
            log.info(
                "event=deposited %s seq=%d id=%s size=%d",
                self._handle(record.owner),
                done.seq,
                header.envelope_id.hex(),
                len(record.envelope),
            )
        # The seq is the owner's: a depositor learns nothing from it of how
        # many envelopes the owner received (mailbox.md §7.7, §8), so none.
        return _ok(record.req)

    async def _fetch(self, session: _Session, record: m.MbFetch) -> m.Message | None:
        # Answered by the sender, after the envelopes held now (see _push).
        session.fetch = _Fetch(record.req, record.after)
        session.wake.fire()
        return None

    async def _delete(self, session: _Session, record: m.MbDelete) -> m.Message:
        try:
            deleted = await self._db(self._store.delete_envelopes, session.peer, record.ids)
        except NotFoundError:
            return _not_found(record.req)
        return _ok(record.req, deleted)

    async def _status(self, session: _Session, record: m.MbStatus) -> m.Message:
        try:
            usage = await self._db(self._store.usage, session.peer)
        except NotFoundError:
            return _not_found(record.req)
        return m.MbUsage(
            record.req,
            usage.envelopes,
            usage.bytes,
            usage.one_time_prekeys,
            usage.last_resort_not_after or 0,
            usage.contacts,
            m.MbUsage.pack_unused(usage.unused_prekeys),
        )

    async def _wipe(self, session: _Session, record: m.MbWipe) -> m.Message:
        handle = self._handle(session.peer.public_key)
        try:
            deleted = await self._db(self._store.wipe, session.peer)
        except NotFoundError:
            return _not_found(record.req)
        self._end_fetches(session.peer)
        await self._refresh()
        log.info("event=wiped %s envelopes=%d by=owner", handle, deleted)
        return _ok(record.req, deleted)

    _HANDLERS: Final[dict[type, Callable[..., Awaitable[m.Message | None]]]] = {
        m.MbPair: _pair,
        m.MbRegister: _register,
        m.MbDeregister: _deregister,
        m.MbPrekeys: _prekeys,
        m.MbGetPrekey: _get_prekey,
        m.MbDeposit: _deposit,
        m.MbFetch: _fetch,
        m.MbDelete: _delete,
        m.MbStatus: _status,
        m.MbWipe: _wipe,
    }


# -- helpers ------------------------------------------------------------------------------


def _ok(req: int, value: int = 0) -> m.MbResult:
    return m.MbResult(req, m.MbCode.OK, "", value)


def _not_found(req: int) -> m.MbResult:
    """The one answer for what does not exist and what the asker may not see."""
    return m.MbResult(req, m.MbCode.NOT_FOUND, NOT_FOUND_DETAIL)


async def _send_replies(session: _Session) -> None:
    while session.replies:
        await session.channel.send(session.replies.popleft())
        session.room.fire()


def _usage_record(usage: OwnerUsage) -> api.MailboxOwnerUsage:
    last_resort = usage.last_resort_not_after
    return api.MailboxOwnerUsage(
        owner=str(usage.owner),
        contacts=usage.contacts,
        envelopes=usage.envelopes,
        bytes=usage.bytes,
        one_time_prekeys=usage.one_time_prekeys,
        last_resort_not_after_ms=None if last_resort is None else last_resort * 1000,
        last_drained_ms=usage.last_drained_ms,
        last_deposit_ms=usage.last_deposit_ms,
    )
