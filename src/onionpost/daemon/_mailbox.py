"""The endpoint's side of mailboxes: its own (the owner) and its contacts' (the sender).

Theory of operation
-------------------
::

    OwnerLink.run()                one task in the daemon's nursery
    └── session with our mailbox   while paired: dial, then keep it open
        ├── pump                   records in: answers to our requests, envelopes
        ├── drain                  each envelope: open, store (engine.take_sealed), delete
        └── upkeep                 register contacts and introduced members, refill
                                   prekeys, ask for usage; again whenever they
                                   change, and every few minutes

    Mailboxes                      what the delivery engine calls (MailboxAccess):
                                   dial a contact's mailbox, seal an envelope, our
                                   signed announcement, a contact's announcement

*Pairing* (mailbox.md §Pairing) is recorded before it starts: the store keeps
the setup code until the mailbox said yes. A daemon that crashed halfway
finds the code at its next start and pairs again with it; the mailbox takes
the same code again from the same owner, so the repeat completes it.

*Draining* is a subscription: the mailbox sends what it holds, then each new
envelope as it is deposited, for as long as the session lives. An envelope is
deleted at the mailbox only after what it carried was committed here, in
the same transaction as the deletion of its one-time prekey's private half
and the note of its id (a re-delivered one is then recognised and dropped).

*Failure domains*: the session with our mailbox is one; whatever ends it is
logged once and the link redials with backoff, never more. Envelopes are
processed at most DRAIN_PER_SECOND a second, whatever the mailbox sends. An
envelope that does not open (forged, sealed to a prekey already used, from a
stranger) is counted and deleted, and logged at most once a minute (the
next line says how many were not); one whose texts would exceed the unread quota is
left at the mailbox for a later drain.

Logs carry envelope ids and reasons, never contents, codes or keys.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Final, TypeVar

import trio

from onionpost import api
from onionpost._logs import contact_ref
from onionpost.daemon._common import now_ms
from onionpost.daemon.delivery import (
    Backoff,
    DeliveryEngine,
    DeliveryPolicy,
    EnvelopeReceipt,
    MailboxClient,
    mailbox_refusal,
)
from onionpost.errors import (
    AuthenticationError,
    ConfigError,
    DialError,
    MailboxRefusedError,
    MessageDecodeError,
    OnionpostError,
    QuotaError,
    TransportError,
)
from onionpost.home import Secrets
from onionpost.host import StoreWorker, TokenBucket, first_failure, reason
from onionpost.limits import MAX_ACK_IDS, MAX_UNUSED_PREKEYS_PER_CONTACT
from onionpost.proto import envelope as env
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import CERT_CLOCK_SKEW
from onionpost.proto.pairing import MailboxAnnouncement, SetupCode
from onionpost.store import Store
from onionpost.transport import SecureChannel

__all__ = ["LogThrottle", "MailboxDial", "Mailboxes", "OwnerLink"]

log = logging.getLogger("onionpost.daemon")

T = TypeVar("T")

# dial(mailbox address, tor client-auth private key to reach it) -> session.
MailboxDial = Callable[[OnionAddress, bytes], Awaitable[SecureChannel]]

# One-time prekeys the mailbox should hold, and below how many we refill.
PREKEY_TARGET: Final = 100
PREKEY_REFILL_BELOW: Final = 40
ONE_TIME_LIFETIME: Final = 60 * 24 * 3600
# A last-resort prekey lives this long; a new one is made when the newest has
# less than RENEW_BEFORE left.
LAST_RESORT_LIFETIME: Final = 30 * 24 * 3600
LAST_RESORT_RENEW_BEFORE: Final = 10 * 24 * 3600
# A prekey's private half is kept this long past its not_after: an envelope
# sealed to it up to a clock skew after may still wait at the mailbox (its
# retention; mailbox.md §8).
PREKEY_KEEP_AFTER: Final = env.MAX_ENVELOPE_AGE_MS // 1000 + CERT_CLOCK_SKEW
# Prekeys per MbPrekeys record.
PREKEYS_PER_RECORD: Final = m.MAX_BLOBS
# How often the session asks for usage and re-checks registrations and prekeys.
UPKEEP_SECONDS: Final = 300.0
PING_SECONDS: Final = 60.0
# Deletions sent at once.
DELETE_BATCH: Final = 64
# A pairing not finished after this long is given up (a setup code lives a
# week at most).
MAX_PAIRING_MS: Final = 7 * 24 * 3600 * 1000
# A pairing whose dial fails or times out is tried again within this budget (a
# code just made may not be in the mailbox's published descriptor yet, and a
# tor still fetching directory information can hang a first dial), at most this
# many times; the budget stays under the CLI's answer deadline, and the owner
# link keeps trying afterwards while the code may be valid.
PAIR_BUDGET_SECONDS: Final = 50.0
PAIR_ATTEMPTS: Final = 8
# A request unanswered this long ends the session.
ANSWER_TIMEOUT: Final = 120.0
# Envelopes from our mailbox processed per second (with a burst of twice
# that): each may cost a KEM decapsulation, and a hostile mailbox can send
# junk naming our real prekey ids as fast as we read. 1000 envelopes left
# after a week away drain in about 20 s.
DRAIN_PER_SECOND: Final = 50.0
# Envelopes dropped (unopenable, or naming a used prekey) are logged at most
# once per this many seconds each kind; the rest are counted in the next line.
DROPPED_LOG_SECONDS: Final = 60.0


class LogThrottle:
    """Whether to log one more of a kind of line now: at most one per ``every``
    seconds; the lines held back are counted (a pure decision, given ``now``)."""

    def __init__(self, every: float) -> None:
        self._every = every
        self._next = -math.inf
        self._held_back = 0

    def __repr__(self) -> str:
        return f"LogThrottle(every={self._every}, held_back={self._held_back})"

    def allow(self, now: float) -> int | None:
        """None: hold this line back. Else log it, with the lines held back since
        the last one (returned, and reset)."""
        if now < self._next:
            self._held_back += 1
            return None
        self._next = now + self._every
        held_back, self._held_back = self._held_back, 0
        return held_back


class Mailboxes:
    """The engine's :class:`~onionpost.daemon.delivery.MailboxAccess`."""

    def __init__(
        self,
        secrets: Secrets,
        store: Store,
        dial: MailboxDial,
        changed: Callable[[MailboxAnnouncement | None], None] | None = None,
    ) -> None:
        """``changed`` is told our announcement whenever it is read anew (at
        start, after pairing, after a wipe)."""
        self._secrets = secrets
        self._store = store
        self._dial_fn = dial
        self._changed = changed
        self._announcement: tuple[int, bytes] | None = None
        self._signed: MailboxAnnouncement | None = None
        self.refresh()

    def __repr__(self) -> str:
        return "Mailboxes()"

    def refresh(self) -> None:
        """Re-read our mailbox from the store (after pairing or a wipe)."""
        version = self._store.mailbox.announcement_version()
        if version == 0:
            self._announcement = self._signed = None
        else:
            own = self._store.mailbox.own_mailbox()
            mailbox = own.address if own is not None else None
            signed = MailboxAnnouncement.issue(self._secrets.identity, mailbox, version=version)
            self._signed = signed
            self._announcement = (version, signed.to_bytes())
        if self._changed is not None:
            self._changed(self._signed)

    def signed(self) -> MailboxAnnouncement | None:
        """Our current announcement, for our contact card."""
        return self._signed

    async def dial(self, mailbox: OnionAddress) -> SecureChannel:
        return await self._dial_fn(mailbox, self._secrets.client_auth_private)

    def seal(
        self, recipient: OnionAddress, prekey: bytes, records: Sequence[bytes], sealed_ms: int
    ) -> bytes:
        return env.seal(
            sender=self._secrets.identity,
            static=self._secrets.static,
            recipient=recipient,
            prekey=env.SignedPrekey.parse(prekey),
            envelope_id=os.urandom(env.ID_LEN),
            records=records,
            sealed_ms=sealed_ms,
        )

    def fits(self, records: Sequence[bytes]) -> bool:
        return env.payload_size(records) <= env.MAX_ENVELOPE_PAYLOAD

    def announcement(self) -> tuple[int, bytes] | None:
        return self._announcement

    def read_announcement(
        self, owner: OnionAddress, data: bytes
    ) -> tuple[OnionAddress | None, int]:
        announced = MailboxAnnouncement.parse(data, owner=owner)
        return announced.mailbox, announced.version


class OwnerLink:
    """Our own mailbox: pairing, and the session that keeps it useful."""

    def __init__(  # noqa: PLR0917 - the parts it links
        self,
        secrets: Secrets,
        store: Store,
        engine: DeliveryEngine,
        access: Mailboxes,
        dial: MailboxDial,
        policy: DeliveryPolicy,
        worker: StoreWorker,
    ) -> None:
        self._secrets = secrets
        self._store = store
        self._engine = engine
        self._access = access
        self._dial = dial
        self._policy = policy
        self._worker = worker
        self._backoff = Backoff(policy.retry_initial, policy.retry_max)
        self._wake = trio.Event()
        # One pairing at a time: the API's, or the run loop finishing one a
        # crash interrupted.
        self._pairing = trio.Lock()
        self._session: MailboxClient | None = None
        self._usage_due = False  # deletions went out since the last MbStatus
        self._scope: trio.CancelScope | None = None
        self._failures = 0
        self.last_error = ""
        self.reused_prekeys = 0
        # One-time prekeys each contact (identity key) took and has not used,
        # as the mailbox last said (MbUsage.unused_prekeys, mailbox.md §7.9).
        self.unused_prekeys: dict[bytes, int] = {}
        self.unopenable = 0
        self.drained = 0
        self._registrations_full = False  # the mailbox refused one (quota), logged
        self._dropped_log = LogThrottle(DROPPED_LOG_SECONDS)
        self._reused_log = LogThrottle(DROPPED_LOG_SECONDS)

    def __repr__(self) -> str:
        return f"OwnerLink(connected={self._session is not None})"

    async def _cpu(self, fn: Callable[[], T]) -> T:
        """CPU-bound work (opening envelopes, making prekeys) off the event loop."""
        return await self._worker(fn)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._worker(fn, *args)

    def changed(self) -> None:
        """Contacts changed (or anything the mailbox should learn): look again."""
        self._wake.set()

    # -- the local API -------------------------------------------------------------------

    async def pair(self, code_text: str) -> api.MailboxRef:
        code = SetupCode.parse_for(code_text, self._secrets.identity.address)
        async with self._pairing:
            await self._db(
                self._store.mailbox.begin_pairing, code.mailbox, code.to_text(), now_ms()
            )
            failure = await self._pair(code)
        if failure is not None:
            raise failure
        self._drop_session()  # the session to the old mailbox, if any
        self._wake.set()
        return api.MailboxRef(str(code.mailbox))

    async def _pair(self, code: SetupCode) -> OnionpostError | None:
        """Pair with the code's mailbox; the error to report, or None once paired.

        A refusal (the mailbox said no, or dropped us after the handshake,
        which is how it refuses a peer it does not know) forgets the pairing;
        a mailbox we could not reach keeps it, retried while the code may
        still be valid."""
        failure: BaseException | None = None
        deadline = trio.current_time() + PAIR_BUDGET_SECONDS
        for attempt in range(PAIR_ATTEMPTS):
            failure = None
            try:
                with trio.fail_at(
                    min(deadline, trio.current_time() + self._policy.connect_timeout * 2)
                ):
                    channel = await self._dial(code.mailbox, code.client_auth_private())
                    try:
                        await self._pair_over(channel, code)
                    finally:
                        with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                            await channel.aclose()
            except* trio.TooSlowError:
                failure = TransportError("timeout", reason="timeout")
            except* OnionpostError as group:
                failure = first_failure(group)
            if failure is None:
                return None
            # A code just made: the mailbox's tor may not have published the
            # descriptor with its key yet, or our tor may not have what it needs
            # to reach it. More tries, a moment apart, within the budget.
            if not _worth_another_try(failure):
                break
            pause = min(2.0 * (attempt + 1), 8.0)
            if trio.current_time() + pause >= deadline:
                break
            await trio.sleep(pause)
        refused = (
            isinstance(failure, MailboxRefusedError) and failure.code == m.MbCode.CODE_REFUSED
        ) or (isinstance(failure, TransportError) and failure.reason != "timeout")
        log.info("event=mailbox_pairing_failed reason=%s", _reason(failure))
        if refused:
            await self._db(self._store.mailbox.abandon_pairing)
            return ConfigError("the mailbox refused the setup code: it is unknown, used or expired")
        if isinstance(failure, MailboxRefusedError):
            await self._db(self._store.mailbox.abandon_pairing)
            return failure
        return ConfigError(
            "the mailbox cannot be reached with this setup code: it was used or has expired "
            "(ask its operator for a new one), or the mailbox is not running (the daemon "
            f"keeps trying while the code may be valid) [{_reason(failure)}]"
        )

    async def _pair_over(self, channel: SecureChannel, code: SetupCode) -> None:
        session = MailboxClient(channel, answer_timeout=ANSWER_TIMEOUT, owner=True)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.pump)
            await session.ok(
                lambda req: m.MbPair(req, code.token(), self._secrets.client_auth_public),
                "pairing",
            )
            nursery.cancel_scope.cancel()
        await self._db(self._store.mailbox.finish_pairing, now_ms())
        self._access.refresh()
        log.info("event=mailbox_paired")
        # Every contact learns of it (the engine sends our announcement).
        self._engine.kick()

    async def status(self) -> api.MailboxStatus:
        own = await self._db(self._store.mailbox.own_mailbox)
        pending = await self._db(self._store.mailbox.pairing)
        warnings = []
        if pending is not None:
            warnings.append(
                f"pairing with {pending[0]} is not finished: it is retried while the daemon runs"
            )
        if own is None:
            return api.MailboxStatus(
                role=api.Role.OWNER, warning="; ".join(warnings) or "no mailbox: pair one"
            )
        if own.one_time_left is not None and own.one_time_left == 0:
            warnings.append(
                "the mailbox has no one-time prekeys left: senders use the last-resort "
                "prekey (weaker forward secrecy) until it is refilled"
            )
        hoarding = sum(
            1 for n in self.unused_prekeys.values() if n >= MAX_UNUSED_PREKEYS_PER_CONTACT
        )
        if hoarding:
            warnings.append(
                f"{hoarding} contacts hold {MAX_UNUSED_PREKEYS_PER_CONTACT} one-time prekeys "
                "they took from the mailbox and have not used"
            )
        if self.reused_prekeys:
            warnings.append(f"{self.reused_prekeys} envelopes named a one-time prekey already used")
        return api.MailboxStatus(
            role=api.Role.OWNER,
            mailbox=str(own.address),
            paired=True,
            reachable=self._session is not None,
            last_drained_ms=own.last_drained_ms,
            waiting=own.waiting,
            waiting_bytes=own.waiting_bytes,
            one_time_prekeys=own.one_time_left,
            unused_prekeys=tuple(
                api.MailboxContactPrekeys(str(OnionAddress.from_public_key(key)), count)
                for key, count in sorted(self.unused_prekeys.items())
            ),
            warning="; ".join(warnings),
            last_error=self.last_error,
        )

    async def wipe(self) -> api.Wiped:
        own = await self._db(self._store.mailbox.own_mailbox)
        if own is None:
            raise ConfigError("there is no mailbox to wipe")
        deleted = 0
        session = self._session
        if session is not None:
            answer = await session.ok(m.MbWipe, "wipe")
            deleted = answer.value
        else:
            raise TransportError(
                "the mailbox is not reachable now: it keeps what it holds until it is "
                "(retention); try again when `mailbox status` says reachable",
                reason="refused",
            )
        await self._db(self._store.mailbox.forget_mailbox, now_ms())
        self._access.refresh()
        self._drop_session()
        self._engine.kick()
        log.info("event=mailbox_wiped envelopes=%d", deleted)
        return api.Wiped(envelopes=deleted, owners=1)

    def _drop_session(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    # -- the link ------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep a session with our mailbox while we have one. Never raises but Cancelled."""
        while True:
            self._wake = trio.Event()
            await self._finish_pairing()
            own = await self._db(self._store.mailbox.own_mailbox)
            if own is None:
                with trio.move_on_after(self._policy.retry_max):
                    await self._wake.wait()
                continue
            failure: BaseException | None = None
            with trio.CancelScope() as scope:
                self._scope = scope
                try:
                    await self._connected(own.address)
                except* trio.TooSlowError:
                    failure = TransportError("timeout", reason="timeout")
                except* Exception as group:
                    failure = first_failure(group)
                finally:
                    self._scope = None
                    self._session = None
            if scope.cancelled_caught and failure is None:
                continue  # paired anew or wiped: start over at once
            self._failures += 1
            self.last_error = _reason(failure)
            delay = self._backoff.delay(self._failures, random.random())  # noqa: S311 - jitter
            log.info("event=mailbox_session_down reason=%s retry_in=%.1f", self.last_error, delay)
            if failure is not None and not isinstance(failure, OnionpostError):
                log.warning("event=mailbox_session_error", exc_info=failure)
            with trio.move_on_after(delay):
                await self._wake.wait()

    async def _finish_pairing(self) -> None:
        """A pairing a crash (or an unreachable mailbox) interrupted: the
        same code completes it, as long as it may still be valid."""
        async with self._pairing:
            pending = await self._db(self._store.mailbox.pairing)
            if pending is None:
                return
            code = SetupCode.parse(pending[1])
            started = await self._db(self._store.mailbox.pairing_started)
            if now_ms() - started > MAX_PAIRING_MS:
                log.info("event=mailbox_pairing_abandoned reason=code-expired")
                await self._db(self._store.mailbox.abandon_pairing)
                return
            if await self._pair(code) is None:
                self._drop_session()

    async def _connected(self, address: OnionAddress) -> None:
        with trio.fail_after(self._policy.connect_timeout):
            channel = await self._dial(address, self._secrets.client_auth_private)
        try:
            session = MailboxClient(channel, answer_timeout=ANSWER_TIMEOUT, owner=True)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.pump)
                nursery.start_soon(self._drain, session)
                self._session = session
                await self._upkeep(session)
                self._failures = 0
                self.last_error = ""
                fetched = await session.ok(lambda req: m.MbFetch(req, 0), "fetch")
                log.info("event=mailbox_up held_up_to=%d", fetched.value)
                await self._usage(session)
                last_ping = trio.current_time()
                while True:
                    with trio.move_on_after(min(UPKEEP_SECONDS, PING_SECONDS)):
                        await self._wake.wait()
                    if self._wake.is_set():
                        self._wake = trio.Event()
                        await self._upkeep(session)
                    now = trio.current_time()
                    if self._usage_due or now - last_ping >= PING_SECONDS:
                        # After a drain's deletions too: what the status shows
                        # waiting is then what is left, not what was there.
                        self._usage_due = False
                        last_ping = now
                        await self._usage(session)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(2.0):
                await channel.aclose()

    async def _usage(self, session: MailboxClient) -> None:
        usage = await session.request(m.MbStatus)
        if not isinstance(usage, m.MbUsage):
            raise mailbox_refusal(usage, "status")
        await self._db(
            partial(
                self._store.mailbox.note_drained,
                now_ms(),
                waiting=usage.envelopes,
                waiting_bytes=usage.bytes,
                one_time_left=usage.one_time_prekeys,
            )
        )
        self.unused_prekeys = usage.unused_by_contact()
        if usage.one_time_prekeys < PREKEY_REFILL_BELOW:
            await self._refill(session, usage.one_time_prekeys)

    async def _upkeep(self, session: MailboxClient) -> None:
        """Registrations and prekeys as they should be: our contacts and the
        members our groups introduced (groups.md §9) may deposit for us, no
        one removed or dropped may. Deregistrations first: a peer removed and
        back (a contact removed who shares a group is introduced, a new row)
        ends registered."""
        for contact_id, identity in await self._db(self._store.mailbox.removed_registered):
            await session.ok(lambda req, i=identity: m.MbDeregister(req, i), "deregistration")  # type: ignore[misc]
            await self._db(self._store.mailbox.set_mailbox_registered, contact_id, False)
            log.info("event=mailbox_deregistered contact=%s", contact_ref(contact_id))
        # The addresses contacts moved away from (trust.md §6): theirs no more.
        for contact_id, old in await self._db(self._store.trust.moved_registered):
            await session.ok(lambda req, i=old: m.MbDeregister(req, i), "deregistration")  # type: ignore[misc]
            await self._db(self._store.trust.set_moved_deregistered, contact_id)
            log.info(
                "event=mailbox_deregistered contact=%s what=old-address", contact_ref(contact_id)
            )
        # Contacts first, then introduced members: when the mailbox's quota of
        # registrations is reached, those left wait (logged once while they
        # do) and the session goes on to drain what the others deposited.
        for contact in await self._db(self._store.contacts.peers):
            if not contact.mailbox_registered:
                try:
                    await session.ok(
                        lambda req, c=contact: m.MbRegister(  # type: ignore[misc]
                            req, c.address.public_key, c.client_auth_public
                        ),
                        "registration",
                    )
                except MailboxRefusedError as exc:
                    if exc.code != m.MbCode.QUOTA_EXCEEDED:
                        raise
                    if not self._registrations_full:
                        self._registrations_full = True
                        log.warning(
                            "event=mailbox_registration_refused contact=%s reason=quota",
                            contact_ref(contact.id),
                        )
                    break
                await self._db(self._store.mailbox.set_mailbox_registered, contact.id, True)
                log.info("event=mailbox_registered contact=%s", contact_ref(contact.id))
        else:
            self._registrations_full = False
        await self._ensure_last_resort()
        await self._upload(session)

    async def _ensure_last_resort(self) -> None:
        now = int(time.time())
        _, newest = await self._db(
            self._store.mailbox.prekey_stock, int(env.PrekeyKind.LAST_RESORT)
        )
        if newest >= now + LAST_RESORT_RENEW_BEFORE:
            return
        await self._generate(env.PrekeyKind.LAST_RESORT, 1, LAST_RESORT_LIFETIME)

    async def _refill(self, session: MailboxClient, held: int) -> None:
        count = PREKEY_TARGET - held
        if count > 0:
            await self._generate(env.PrekeyKind.ONE_TIME, count, ONE_TIME_LIFETIME)
            await self._upload(session)
        await self._db(self._store.mailbox.expire_prekeys, int(time.time()), PREKEY_KEEP_AFTER)

    async def _generate(self, kind: env.PrekeyKind, count: int, lifetime: int) -> None:
        identity = self._secrets.identity
        now = int(time.time())

        def make() -> list[tuple[bytes, int, int, bytes]]:
            out = []
            for _ in range(count):
                secret = env.generate_prekey(identity, kind, now=now, lifetime=lifetime)
                out.append(
                    (secret.public.key_id, int(kind), secret.public.not_after, secret.to_bytes())
                )
            return out

        made = await self._cpu(make)
        await self._db(self._store.mailbox.add_prekeys, made, now_ms())
        log.info("event=prekeys_made kind=%s count=%d", kind.name.lower(), count)

    async def _upload(self, session: MailboxClient) -> None:
        while True:
            secrets = await self._db(self._store.mailbox.prekeys_to_upload, PREKEYS_PER_RECORD)
            if not secrets:
                return
            parsed = [env.PrekeySecret.from_bytes(s) for s in secrets]
            public = tuple(p.public.to_bytes() for p in parsed)
            await session.ok(partial(_prekeys_record, public), "prekeys")
            await self._db(
                self._store.mailbox.mark_prekeys_uploaded, [p.public.key_id for p in parsed]
            )

    # -- draining ------------------------------------------------------------------------

    async def _drain(self, session: MailboxClient) -> None:
        done: list[bytes] = []
        # Our mailbox is trusted to store, not to be gentle: whatever it sends
        # is processed at a bounded rate (mailbox.md §11.3), as a contact's
        # session is read at a bounded rate.
        bucket = TokenBucket(DRAIN_PER_SECOND)
        async with session.envelopes:
            while True:
                try:
                    envelope = session.envelopes.receive_nowait()
                except trio.WouldBlock:
                    if done:
                        await self._delete(session, done)
                        done = []
                    envelope = await session.envelopes.receive()
                await bucket.take(1)
                if await self._take(envelope):
                    done.append(envelope.id)
                if len(done) >= DELETE_BATCH:
                    await self._delete(session, done)
                    done = []

    async def _delete(self, session: MailboxClient, ids: list[bytes]) -> None:
        for start in range(0, len(ids), MAX_ACK_IDS):
            part = tuple(ids[start : start + MAX_ACK_IDS])
            await session.channel.send(m.MbDelete(session.next_req(), part))
        # The checkpoint empties the WAL: the deleted prekeys survive nowhere.
        await self._db(self._store.mailbox.checkpoint)
        self._usage_due = True
        self._wake.set()

    async def _take(self, held: m.MbEnvelope) -> bool:
        """Open and store one envelope. True: delete it at the mailbox."""
        try:
            header = env.EnvelopeHeader.parse(held.envelope)
        except MessageDecodeError:
            self._unopenable(held, "malformed")
            return True
        if await self._db(self._store.mailbox.envelope_seen, header.envelope_id):
            return True  # stored before; its deletion was lost
        secret_bytes = await self._db(self._store.mailbox.prekey_secret, header.key_id)
        if secret_bytes is None:
            if await self._db(self._store.mailbox.prekey_was_used, header.key_id):
                self.reused_prekeys += 1
                held_back = self._reused_log.allow(trio.current_time())
                if held_back is not None:
                    log.warning(
                        "event=prekey_reused envelope=%s key=%s more=%d",
                        held.id.hex(),
                        header.key_id.hex(),
                        held_back,
                    )
            else:
                self._unopenable(held, "unknown-prekey")
            return True
        secret = env.PrekeySecret.from_bytes(secret_bytes)
        now = now_ms()
        try:
            opened = await self._cpu(
                partial(
                    env.open_envelope,
                    held.envelope,
                    recipient=self._secrets.identity.address,
                    secret=secret,
                    now_ms=now,
                )
            )
        except AuthenticationError:
            self._unopenable(held, "does-not-open")
            return True
        # A contact, or a member a group introduced: the intake decides what
        # of its envelope is taken (groups.md §9).
        contact = await self._db(self._store.contacts.peer_by_address, opened.sender)
        if contact is None:
            self._unopenable(held, "not-a-contact")
            return True
        records: list[m.Message | m.UnknownExtension] = []
        for data in opened.records:
            try:
                records.append(m.decode(data))
            except MessageDecodeError:
                log.info("event=envelope_record_bad envelope=%s", held.id.hex())
        receipt = EnvelopeReceipt(
            envelope_id=header.envelope_id,
            key_id=header.key_id,
            kind=int(secret.public.kind),
            one_time_kind=int(env.PrekeyKind.ONE_TIME),
        )
        try:
            await self._engine.take_envelope(contact.id, records, receipt)
        except QuotaError:
            log.info(
                "event=envelope_deferred contact=%s envelope=%s reason=unread-quota",
                contact_ref(contact.id),
                held.id.hex(),
            )
            return False
        except OnionpostError as exc:
            # Our disk full, or the store failing: the envelope stays at the
            # mailbox for a later drain; this one goes on with the next.
            log.warning(
                "event=envelope_deferred contact=%s envelope=%s reason=%s",
                contact_ref(contact.id),
                held.id.hex(),
                type(exc).__name__,
            )
            return False
        self.drained += 1
        log.info(
            "event=envelope_stored contact=%s envelope=%s records=%d",
            contact_ref(contact.id),
            held.id.hex(),
            len(records),
        )
        return True

    def _unopenable(self, held: m.MbEnvelope, reason: str) -> None:
        self.unopenable += 1
        held_back = self._dropped_log.allow(trio.current_time())
        if held_back is not None:
            log.warning(
                "event=envelope_dropped envelope=%s reason=%s more=%d",
                held.id.hex(),
                reason,
                held_back,
            )


def _prekeys_record(public: tuple[bytes, ...], req: int) -> m.MbPrekeys:
    return m.MbPrekeys(req, public)


def _reason(exc: BaseException | None) -> str:
    return "closed" if exc is None else reason(exc)


def _worth_another_try(failure: BaseException) -> bool:
    """A pairing attempt that failed on the way to the mailbox (a dial that failed
    or hung, a stream that timed out): not an answer from the mailbox."""
    return isinstance(failure, DialError) or (
        isinstance(failure, TransportError) and failure.reason == "timeout"
    )
