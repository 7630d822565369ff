"""The delivery engine's façade: links to contacts, and what the daemon asks of it.

Theory of operation
-------------------
::

    DeliveryEngine.run()          one nursery owns everything below
    ├── writer                    group commit (``_writer.py``)
    ├── sent marks                ``sent`` written for what no ack settled within
    │                             SENT_MARK_SECONDS (``_sent.py``)
    ├── housekeeping              expiry of messages and of idle incoming transfers;
    │                             sent files' copies deleted once delivered
    ├── introductions             members of our groups who are no contacts: links
    │                             added and dropped as the logs change (groups.md §9,
    │                             ``_introductions.py``)
    └── per contact (a Link)
        ├── direct loop           dial when something waits and no session is up
        │   └── session           ours or the contact's (``_session.py``; its sender
        │                         ``_sender.py``)
        └── deposit loop          into the contact's mailbox when it is away
                                  (``_deposit.py``)

Both loops only carry out what the link's pure state decides
(:class:`~onionpost.daemon.delivery._link.LinkState`); what a contact's
records do to our store is the one :class:`~onionpost.daemon.delivery._intake.Intake`,
for live sessions and opened envelopes alike.

*Failure domains* (STYLE 16). A session, a dial and a deposit are each one
domain: whatever goes wrong inside (the stream breaks, a record does not
decode, the peer refuses us, the handshake or SOCKS fails, our disk is full,
even a bug) ends it, is logged once with a reason, and backs that activity
off. It never reaches the engine's nursery (``except*``). Only the engine's
own core (its nursery, the writer) failing ends the engine.

*Backoff* is reset only once the peer has proven it accepts us: its first
record in a session. A contact that drops every session right after the
handshake (one that removed us) is redialled with backoff, not in a loop.

*Bounds* on what a contact can make us hold or do: records per second across
its sessions; at most two sessions at once; unread texts; incoming transfers
at once and idle ones expire; the disk budget; one file sender per (contact,
file); acks are written before more is read.

*Store work* runs through the injected :class:`StoreWorker` (a worker thread
in the daemon), so an fsync never stalls the event loop.

Logs name a contact by its handle (``contact=#3``), never by name or address,
and carry ids and reasons, never message contents or keys.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Final

import trio

from onionpost._logs import contact_ref, safe
from onionpost.api import MessageState, StateChange
from onionpost.daemon.delivery._deposit import deposit, has_deposit_work
from onionpost.daemon.delivery._groups import publish_group
from onionpost.daemon.delivery._intake import Bounds, EnvelopeReceipt, Intake, unfit_mailbox
from onionpost.daemon.delivery._introductions import Reconciled, reconcile
from onionpost.daemon.delivery._link import Backoff, LinkState, StepKind, Work
from onionpost.daemon.delivery._policy import (
    DeliveryPolicy,
    DeliveryStatistics,
    Dial,
    LinkStatus,
    MailboxAccess,
)
from onionpost.daemon.delivery._records import (
    Handed,
    Link,
    Parts,
    Session,
    handed,
    jitter,
    now_ms,
)
from onionpost.daemon.delivery._sender import sent_marker
from onionpost.daemon.delivery._session import run_move_only, run_session
from onionpost.daemon.delivery._trust import receive_rotation, refusals, rejudge, rotation_due
from onionpost.daemon.delivery._views import message_record
from onionpost.daemon.delivery._witness import Witness
from onionpost.daemon.delivery._writer import GroupCommit
from onionpost.errors import CloseCode, OnionpostError, StoreError, TransportError
from onionpost.host import (
    EventHub,
    Shed,
    StoreWorker,
    ThreadWorker,
    TokenBucket,
    first_failure,
    reason,
)
from onionpost.proto import messages
from onionpost.proto.address import OnionAddress
from onionpost.proto.identity import Identity
from onionpost.proto.session import PeerDecision
from onionpost.proto.trust_session import REQUIRED_PREFIX
from onionpost.store import (
    Audience,
    Contact,
    Kind,
    ListSend,
    QueuedCopies,
    QueuedGroupCopies,
    Store,
    Stored,
)
from onionpost.transport import SecureChannel

__all__ = ["DeliveryEngine"]

log = logging.getLogger("onionpost.daemon")

HOUSEKEEPING_INTERVAL: Final = 30.0
CLOSE_GRACE: Final = 2.0


class DeliveryEngine:
    """Delivery to and from every contact; see the module docstring.

    Built from the store, the event hub, a ``dial(contact)`` that returns an
    authenticated channel (through tor in the daemon, over memory or loopback
    in tests), the policy, and the worker that runs store calls.
    :meth:`run` must be running (``await nursery.start(engine.run)``) for
    the rest to work.
    """

    def __init__(
        self,
        store: Store,
        hub: EventHub,
        dial: Dial,
        policy: DeliveryPolicy,
        *,
        address: OnionAddress,
        mailbox: MailboxAccess | None = None,
        worker: StoreWorker | None = None,
        identity: Identity | None = None,
        peers_changed: Callable[[Reconciled], Awaitable[None]] | None = None,
    ) -> None:
        """``peers_changed`` is awaited after members were introduced or
        dropped (the daemon authorizes them at our onion service)."""
        worker = worker or ThreadWorker()
        bounds = Bounds(
            max_unread=policy.max_unread_per_contact,
            max_file_size=policy.max_file_size,
            max_disk_use=policy.max_disk_use,
            max_transfers=policy.max_transfers_per_contact,
        )
        self._parts = Parts(
            store=store,
            hub=hub,
            policy=policy,
            worker=worker,
            writer=GroupCommit(store, worker),
            intake=Intake(
                store, bounds, None if mailbox is None else mailbox.read_announcement, address
            ),
            mailbox=mailbox,
            address=address,
            witness=None if identity is None else Witness(identity),
        )
        # Until run(): what the local API queues while tor starts commits alone.
        self._parts.writer.alone = True
        self._parts.group_changed = self.group_changed
        self._parts.apply_refusals = self.apply_refusals
        self._parts.restaple = self.restaple
        self._parts.regossip = self.regossip
        self._parts.moved = self.moved
        self._dial_fn = dial
        self._links: dict[int, Link] = {}
        self._nursery: trio.Nursery | None = None
        self._announcing = trio.CapacityLimiter(policy.announce_concurrency)
        self._peers_changed = peers_changed
        self._introducing = trio.Event()

    def __repr__(self) -> str:
        return f"DeliveryEngine({len(self._links)} links)"

    @property
    def worker(self) -> StoreWorker:
        return self._parts.worker

    @property
    def policy(self) -> DeliveryPolicy:
        return self._parts.policy

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled: a link per current contact and introduced
        member, the writer, housekeeping, introductions."""
        contacts = await self._parts.worker(self._parts.store.contacts.peers)
        self._parts.refusals = await self._parts.worker(
            refusals, self._parts.store, required=self._parts.policy.require_endorsement
        )
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self._parts.writer.alone = False
                nursery.start_soon(self._parts.writer.run)
                nursery.start_soon(self._parts.sent.run, sent_marker(self._parts))
                nursery.start_soon(self._housekeeping)
                nursery.start_soon(self._introductions)
                for contact in contacts:
                    self.add_contact(contact)
                self.reconcile_introductions()
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None

    @property
    def running(self) -> bool:
        return self._nursery is not None

    # -- contacts -------------------------------------------------------------------------

    def add_contact(self, contact: Contact) -> None:
        """Start delivering to ``contact`` (a new one, or every one at start)."""
        if self._nursery is None:
            raise OnionpostError("the delivery engine is not running")
        old = self._links.pop(contact.id, None)
        if old is not None:
            old.stop()
        p = self._parts.policy
        state = LinkState.new(
            Backoff(p.retry_initial, p.retry_max),
            p.mailbox_after,
            p.announce_attempts,
            trio.current_time(),
        )
        link = Link(contact, state, TokenBucket(p.peer_records_per_second))
        self._links[contact.id] = link
        self._nursery.start_soon(self._direct_loop, link)
        self._nursery.start_soon(self._deposit_loop, link)

    def remove_contact(self, contact_id: int) -> None:
        """Stop every dial, deposit and session of a removed contact."""
        link = self._links.pop(contact_id, None)
        if link is not None:
            link.stop()

    def contact_changed(self, contact: Contact) -> None:
        """The contact's row changed (its mailbox): the link uses the new one."""
        link = self._links.get(contact.id)
        if link is not None:
            link.contact = contact
            link.fire()

    def contact_id(self, name: str) -> int | None:
        """A current contact's id by its name, from memory (no store call); an
        introduced member is no contact."""
        for link in self._links.values():
            if link.contact.name == name and not link.removed and not link.contact.introduced:
                return link.contact.id
        return None

    def decide(self, peer: OnionAddress) -> PeerDecision:
        """Accept a verified initiator only if it is a current contact. One
        whose sessions are refused (revoked, trust.md §7.4) is accepted for
        its move alone (:meth:`run_inbound`)."""
        return PeerDecision.REFUSE if self._link_for(peer) is None else PeerDecision.ACCEPT

    def _hard_refusal(self, contact_id: int) -> str | None:
        """Why no session with the contact may even open: revoked. (A contact
        refused for want of an endorsement gets a session, to present one.)"""
        why = self._parts.refusals.get(contact_id)
        return why if why is not None and not why.startswith(REQUIRED_PREFIX) else None

    def restaple(self) -> None:
        """We hold a newer revocation list or checkpoint: every open session
        sends our TrustStaple again, so contacts learn it now (trust.md §7.2)."""
        for link in self._links.values():
            for session in link.sessions:
                session.restaple = True
                session.regossip = True
                session.wake.fire()

    def regossip(self) -> None:
        """We hold a newer list or checkpoint of another agency: every open
        session passes it on (trust.md §7.2), with the delegation it came
        with (kept with it in the store)."""
        for link in self._links.values():
            for session in link.sessions:
                session.regossip = True
                session.wake.fire()

    def rotation_announced(self) -> int:
        """Our move to a new address is to be announced (trust.md §6): every
        open session sends it now, and every contact without one is dialled
        (and, away, deposited for) until told. Returns how many links."""
        for link in self._links.values():
            for session in link.sessions:
                session.reannounce = True
                session.wake.fire()
        return self.announce()

    def apply_refusals(self, refused: dict[int, str]) -> None:
        """Take the refusals now in force: sessions with a newly refused contact
        close, nothing more goes to it (its outbox is held, not dropped); a
        contact no longer refused is delivered to again."""
        before, self._parts.refusals = self._parts.refusals, refused
        for contact_id, link in self._links.items():
            why = refused.get(contact_id)
            if why == before.get(contact_id):
                continue
            if why is None:
                log.info("event=contact_released contact=%s", contact_ref(contact_id))
                link.fire(reread=True)
                continue
            log.warning(
                "event=contact_refused contact=%s reason=%s", contact_ref(contact_id), safe(why)
            )
            if self._hard_refusal(contact_id) is not None:
                for session in list(link.sessions):
                    session.close(Shed("refused", code=CloseCode.NORMAL, reason="trust-refused"))
            self._parts.publish_peer(link)
            link.fire()

    def moved(self, before: Contact, after: Contact) -> None:
        """A contact moved to a new address (trust.md §6; decided and stored,
        ``receive_rotation``): its link reaches the new address from now on
        and its sessions with the old one end (the old address is no peer now,
        so its sessions are refused); the rest (:meth:`_settle_move`) runs in
        the engine's nursery, since the session that carried the move, and a
        handler of it calling this, is ending."""
        link = self._links.get(after.id)
        if link is None or self._nursery is None:
            return
        link.contact = after
        self._nursery.start_soon(self._settle_move, link, before, after)
        for session in list(link.sessions):
            session.close(Shed("rotated", code=CloseCode.NORMAL, reason="rotated"))

    async def _settle_move(self, link: Link, before: Contact, after: Contact) -> None:
        """After a move: the refusals judged again (a contact refused as
        revoked is released when its new address is endorsed), our onion
        service letting in its new tor key and our tor reaching the new
        address with ours (``peers_changed``), and the new address dialled at
        once, what waits for it going there."""
        parts = self._parts
        try:
            self.apply_refusals(
                await parts.worker(refusals, parts.store, required=parts.policy.require_endorsement)
            )
            if self._peers_changed is not None:
                await self._peers_changed(Reconciled(added=(after,), dropped=(before,)))
        except OnionpostError as exc:
            # Tor or the store refused now: a restart authorizes every peer again.
            log.warning(
                "event=rotation_unsettled contact=%s error=%s",
                contact_ref(after.id),
                type(exc).__name__,
            )
        link.state.retry_now()
        link.state.announce_again()
        link.fire(reread=True)
        parts.publish_peer(link)
        log.info("event=contact_move_settled contact=%s", contact_ref(after.id))

    def _link_for(self, peer: OnionAddress) -> Link | None:
        for link in self._links.values():
            if link.contact.address == peer and not link.removed:
                return link
        return None

    def _links_of(self, contact_id: int | None) -> list[Link]:
        if contact_id is None:
            return list(self._links.values())
        one = self._links.get(contact_id)
        return [] if one is None else [one]

    # -- what the daemon asks -------------------------------------------------------------

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
        if self._hard_refusal(link.contact.id) is not None:
            # Revoked: nothing but its move is taken (trust.md §6.3, §7.4).
            await run_move_only(self._parts, link, Session(channel, initiator=False))
            return
        # The contact is back: whatever waits for it need not wait out a
        # backoff, and it knows we are up.
        link.state.contact_back()
        await run_session(self._parts, link, Session(channel, initiator=False))

    def kick(self, contact_id: int | None = None, *, retry_now: bool = False) -> int:
        """Wake the link of one contact (or of all); with ``retry_now`` also end
        its backoff. Returns how many links were woken."""
        links = self._links_of(contact_id)
        for link in links:
            if retry_now:
                link.state.retry_now()
            link.fire(reread=True)
        return len(links)

    def announce(self, contact_id: int | None = None) -> int:
        """Tell a contact (or every one) that we are reachable again: dial it
        once even with nothing to deliver, paced (``announce_concurrency`` at
        once), without waiting out a backoff. Returns how many links."""
        links = self._links_of(contact_id)
        for link in links:
            link.state.announce_again()
            link.fire()
        return len(links)

    async def queue_text(self, contact_id: int, text: messages.Text) -> None:
        """Queue ``text`` for the contact; it is durably stored when this returns.

        Concurrent calls share one transaction (group commit). If the caller is
        cancelled while waiting, the text may still have been queued.
        """
        ready = handed(text)  # refuse what could never be sent, before queueing it
        expiry = self._parts.policy.message_expiry
        expires_at = None if expiry is None else now_ms() + int(expiry * 1000)

        def committed(seq: int | None) -> None:
            self._hand_off(contact_id, [] if seq is None else [(seq, ready)])

        await self._parts.writer.write(
            self._parts.store.outbox.queue_text,
            contact_id,
            text.id,
            text.created_ms,
            text.body,
            text.content_type,
            expires_at,
            label=text.label,
            then=committed,
        )

    async def queue_texts(self, contact_id: int, texts: Sequence[messages.Text]) -> None:
        """Queue ``texts`` for the contact, in order, in one transaction: all are
        durably stored when this returns (or none, on an error). A text whose
        id is already queued with the same content is queued once."""
        ready = [handed(text) for text in texts]
        expiry = self._parts.policy.message_expiry
        expires_at = None if expiry is None else now_ms() + int(expiry * 1000)
        store = self._parts.store

        def queue_all() -> list[tuple[int, Handed]]:
            queued = []
            with store.transaction():
                for text, item in zip(texts, ready, strict=True):
                    seq = store.outbox.queue_text(
                        contact_id,
                        text.id,
                        text.created_ms,
                        text.body,
                        text.content_type,
                        expires_at,
                        label=text.label,
                    )
                    if seq is not None:
                        queued.append((seq, item))
            return queued

        await self._parts.writer.write(queue_all, then=partial(self._hand_off, contact_id))

    async def queue_list_text(
        self, name: str, send_id: bytes, text: messages.Text, *, audience: Audience | None = None
    ) -> ListSend:
        """Queue ``text`` to every member of list ``name``, a copy each under an
        id of its own (``store.lists``), in one transaction; each copy goes
        to its member's link as a text queued alone would."""
        messages.encode(text)  # refuse what could never be sent, before queueing it
        expiry = self._parts.policy.message_expiry
        expires_at = None if expiry is None else now_ms() + int(expiry * 1000)

        def committed(queued: QueuedCopies) -> None:
            for contact_id, message_id, seq in queued.new:
                copy = messages.Text(
                    message_id, text.created_ms, text.body, text.content_type, text.label
                )
                self._hand_off(contact_id, [(seq, copy)])

        queued = await self._parts.writer.write(
            self._parts.store.lists.queue_text,
            name,
            send_id,
            text.created_ms,
            text.body,
            text.content_type,
            expires_at,
            audience=audience,
            label=text.label,
            then=committed,
        )
        return queued.send

    async def queue_group_text(
        self,
        group_id: bytes,
        send_id: bytes,
        text: messages.Text,
        *,
        sender: bytes,
        audience: Audience | None = None,
    ) -> QueuedGroupCopies:
        """Queue ``text`` to every other member of a group at its present head,
        a copy each under an id of its own (``store.groups``), in one
        transaction; each copy goes to its member's link as a text queued
        alone would."""
        messages.encode(text)  # refuse what could never be sent, before queueing it
        expiry = self._parts.policy.message_expiry
        expires_at = None if expiry is None else now_ms() + int(expiry * 1000)

        def committed(queued: QueuedGroupCopies) -> None:
            heads = b"".join(queued.heads)
            for contact_id, message_id, seq in queued.new:
                copy = messages.GroupText(
                    message_id,
                    text.created_ms,
                    text.body,
                    text.content_type,
                    group_id,
                    heads,
                    text.label,
                )
                self._hand_off(contact_id, [(seq, copy)])

        return await self._parts.writer.write(
            self._parts.store.groups.queue_text,
            group_id,
            send_id,
            text.created_ms,
            text.body,
            text.content_type,
            expires_at,
            sender=sender,
            label=text.label,
            audience=audience,
            then=committed,
        )

    async def publish_group(self, group_id: bytes) -> None:
        """Tell the local API's ``group`` subscribers of a change of ours."""
        await publish_group(self._parts, group_id, None)

    def group_changed(self, group_id: bytes, source: int | None = None) -> None:
        """A group's log changed here: every link but ``source``'s offers it to
        its contact if they share the group (each link finds out which), and
        the members introduced to us are brought in line with it."""
        for contact_id, link in self._links.items():
            if contact_id != source:
                link.group_sync.add(group_id)
                link.fire()
        self.reconcile_introductions()

    def reconcile_introductions(self) -> None:
        """Bring the introduced members in line with our groups and contacts
        soon (after a group's change, a contact removed or added)."""
        self._introducing.set()

    async def _introductions(self) -> None:
        """Introduce and drop members as our groups say, once at start and
        after each change: their links here, their authorization by the
        daemon (``peers_changed``). A failure is logged and waits for the
        next change."""
        parts = self._parts
        while True:
            await self._introducing.wait()
            self._introducing = trio.Event()
            try:
                done = await parts.worker(
                    reconcile, parts.store, parts.address.public_key, now_ms()
                )
                # The trust policy holds for them as for contacts, from the start.
                refused = (
                    await parts.worker(
                        refusals, parts.store, required=parts.policy.require_endorsement
                    )
                    if done.added
                    else None
                )
            except StoreError as exc:
                log.warning("event=introductions_failed error=%s", type(exc).__name__)
                continue
            if not done:
                continue
            for peer in done.dropped:
                self.remove_contact(peer.id)
                log.info("event=introduced_dropped contact=%s", contact_ref(peer.id))
            for message_id in done.expired:
                parts.hub.publish(StateChange(message_id.hex(), MessageState.EXPIRED))
            if refused is not None:
                self.apply_refusals(refused)
            for peer in done.added:
                self.add_contact(peer)
                log.info("event=introduced contact=%s", contact_ref(peer.id))
            if self._peers_changed is not None:
                try:
                    await self._peers_changed(done)
                except OnionpostError as exc:
                    # Tor refused now: the next change, or a restart, says it again.
                    log.warning("event=introductions_unauthorized error=%s", type(exc).__name__)

    def _hand_off(self, contact_id: int, queued: Sequence[tuple[int, Handed]]) -> None:
        link = self._links.get(contact_id)
        if link is not None:
            link.hand_off(queued)

    async def owe_receipts(self, contact_id: int, ids: Sequence[bytes]) -> None:
        """Read receipts to send to a contact: durable until a session carried
        them or the contact's mailbox took them."""
        if not ids:
            return
        store = self._parts.store
        if self.running:
            await self._parts.writer.write(
                store.mailbox.owe, contact_id, "read", list(ids), now_ms()
            )
        else:
            await self._parts.worker(store.mailbox.owe, contact_id, "read", list(ids), now_ms())
        self.owed(contact_id)

    def owed(self, contact_id: int) -> None:
        """Something is owed to the contact now: its link looks."""
        link = self._links.get(contact_id)
        if link is not None:
            link.owes = True
            link.fire()

    async def take_envelope(
        self,
        contact_id: int,
        records: Sequence[messages.Message | messages.UnknownExtension],
        receipt: EnvelopeReceipt,
    ) -> list[Stored]:
        """Store what an opened envelope from ``contact_id`` carried, in one
        transaction with its prekey spent and its id noted, and owe the
        contact the acks. Texts over the unread quota fail the whole envelope
        (QuotaError): it stays at the mailbox. Returns the messages newly complete."""
        parts = self._parts
        outcome = await parts.writer.write(
            parts.intake.envelope, contact_id, records, now_ms(), receipt
        )
        parts.counters.texts_received += sum(1 for r in outcome.rows if r.kind == Kind.TEXT)
        parts.counters.texts_acked += len(outcome.delivered)
        for message_id in outcome.delivered:
            parts.hub.publish(StateChange(message_id.hex(), MessageState.DELIVERED))
        for message_id in outcome.read:
            parts.hub.publish(StateChange(message_id.hex(), MessageState.READ))
        for row in outcome.rows:
            parts.hub.publish(message_record(row))
        if outcome.mailbox_changed:
            contact = await parts.worker(parts.store.contacts.contact_by_id, contact_id)
            if contact is not None:
                self.contact_changed(contact)
        if outcome.rotation is not None:
            await self._rotate(contact_id, outcome.rotation)
        for group_id in {op.group_id for op in outcome.group_ops}:
            self.group_changed(group_id, contact_id)
            contact = await parts.worker(parts.store.contacts.contact_by_id, contact_id)
            await publish_group(parts, group_id, None if contact is None else contact.name)
        self.owed(contact_id)
        return outcome.rows

    async def _rotate(self, contact_id: int, record: messages.TrustRotation) -> None:
        """A rotation an envelope carried (trust.md §6): decided as one in a
        session is, after the envelope's own transaction."""
        parts = self._parts
        link = self._links.get(contact_id)
        if link is None or link.contact.introduced:
            return
        before = link.contact
        after = await parts.worker(
            receive_rotation, parts.store, before, record, now_ms(), parts.trust_cache
        )
        if after is not None:
            self.moved(before, after)

    # -- reports --------------------------------------------------------------------------

    def reachable(self, contact_id: int) -> bool:
        """Whether a session with the contact is up now."""
        link = self._links.get(contact_id)
        return link is not None and bool(link.sessions)

    def status(self, contact_id: int) -> LinkStatus | None:
        link = self._links.get(contact_id)
        if link is None:
            return None
        state = link.state
        return LinkStatus(
            contact_id=contact_id,
            name=link.contact.name,
            reachable=bool(link.sessions),
            since_ms=link.since_ms,
            failures=state.failures,
            last_error=state.last_error,
            retry_in=state.retry_in(trio.current_time()),
            dialing_for=state.dialing_for(trio.current_time()),
            mailbox_error=state.mailbox_error,
            refused=self._parts.refusals.get(contact_id, ""),
        )

    def statistics(self) -> DeliveryStatistics:
        c = self._parts.counters
        return DeliveryStatistics(
            links=len(self._links),
            sessions=sum(len(link.sessions) for link in self._links.values()),
            dials=c.dials,
            dial_failures=c.dial_failures,
            sessions_ended_by_failure=c.session_failures,
            texts_received=c.texts_received,
            texts_acked=c.texts_acked,
            envelopes_deposited=c.deposits,
            sessions_superseded=c.superseded,
        )

    # -- the loops ----------------------------------------------------------------------

    async def _work(self, link: Link) -> Work:
        parts = self._parts
        store = parts.store
        contact_id = link.contact.id
        if contact_id in parts.refusals:
            # Nothing goes to a refused contact: its outbox waits. (One not
            # endorsed is still announced to, and may open sessions to us,
            # so that endorsements are exchanged; a revoked one is not.)
            return Work()
        # Our mailbox is news worth a dial (and a deposit) to a contact. To a
        # member a group introduced it goes only with something else: a
        # session up, or what we dial or deposit for anyway; else a member
        # away, without a mailbox we know, would be redialled for it alone
        # for as long as it is away (groups.md §9).
        announcement = parts.announcement_due(link) is not None and not link.contact.introduced
        # So is our move to a new address, until the contact has it (trust.md §6).
        if not announcement and not link.contact.introduced:
            announcement = await parts.worker(rotation_due, store, link.contact) is not None
        direct = announcement
        if not direct and link.owes:
            link.owes = await parts.worker(store.mailbox.has_owed, contact_id)
            direct = link.owes
        if not direct and link.group_sync:
            key = link.contact.address.public_key
            shared = {g.group_id for g in await parts.worker(store.groups.shared_with, key)}
            link.group_sync &= shared
            direct = bool(link.group_sync)
        if not direct:
            direct = bool(await parts.worker(store.outbox.pending, contact_id, 1))
        deposit_work = False
        if direct and self._mailbox_of(link) is not None:
            deposit_work = announcement or await parts.worker(has_deposit_work, store, contact_id)
        return Work(direct=direct, deposit=deposit_work)

    async def _wait(self, link: Link, seen: int, until: float | None) -> None:
        if until is None:
            await link.wake.wait(since=seen)
            return
        with trio.move_on_at(until):
            await link.wake.wait(since=seen)

    async def _direct_loop(self, link: Link) -> None:
        """Dial the contact whenever the link's state says so."""
        with trio.CancelScope() as scope:
            link.scopes.add(scope)
            while not link.removed:
                seen = link.wake.generation
                if link.sessions or self._hard_refusal(link.contact.id) is not None:
                    await link.wake.wait(since=seen)
                    continue
                step = link.state.direct_step(trio.current_time(), await self._work(link))
                if step.kind is StepKind.DIAL:
                    channel = await self._dial(link, announcing=False)
                elif step.kind is StepKind.ANNOUNCE:
                    async with self._announcing:
                        if link.sessions:
                            continue  # came up while this waited its turn: it knows
                        channel = await self._dial(link, announcing=True)
                else:
                    await self._wait(link, seen, step.until)
                    continue
                if channel is not None:
                    await run_session(self._parts, link, Session(channel, initiator=True))

    async def _deposit_loop(self, link: Link) -> None:
        """Deposit into the contact's mailbox whenever the link's state says so."""
        with trio.CancelScope() as scope:
            link.scopes.add(scope)
            while not link.removed:
                seen = link.wake.generation
                target = self._mailbox_of(link)
                if link.sessions or target is None:
                    await link.wake.wait(since=seen)
                    continue
                step = link.state.deposit_step(trio.current_time(), await self._work(link))
                if step.kind is StepKind.DEPOSIT:
                    await deposit(self._parts, link, target)
                else:
                    await self._wait(link, seen, step.until)

    def _mailbox_of(self, link: Link) -> OnionAddress | None:
        """The contact's mailbox, if we may deposit there: not one that answered
        as no mailbox does, nor (whatever the order the contacts were added
        in) our own address or a contact's (mailbox.md §Announcement)."""
        target = link.contact.mailbox
        if self._parts.mailbox is None or target is None or target == link.bad_mailbox:
            return None
        unfit = unfit_mailbox(target, self._parts.address, lambda a: self._link_for(a) is not None)
        if unfit is not None:
            if link.state.mailbox_error != f"mailbox-{unfit}":
                log.warning(
                    "event=mailbox_refused contact=%s reason=%s",
                    contact_ref(link.contact.id),
                    unfit,
                )
                link.state.mailbox_unfit(f"mailbox-{unfit}")
            return None
        return target

    async def _dial(self, link: Link, *, announcing: bool) -> SecureChannel | None:
        """One dial: its own failure domain."""
        parts = self._parts
        parts.counters.dials += 1
        link.state.dial_started(trio.current_time(), announcing=announcing)
        link.wake.fire()  # the deposit loop: a dial that hangs counts from now
        failure: BaseException | None = None
        channel: SecureChannel | None = None
        try:
            with trio.fail_after(parts.policy.connect_timeout):
                channel = await self._dial_fn(link.contact)
        except* trio.TooSlowError:
            failure = TransportError("timeout", reason="timeout")
        except* Exception as group:
            failure = first_failure(group)
        if channel is not None:
            return channel
        parts.counters.dial_failures += 1
        why = "unknown" if failure is None else reason(failure)
        delay = link.state.dial_failed(trio.current_time(), why, jitter())
        log.info(
            "event=dial_failed contact=%s reason=%s retry_in=%.1f",
            contact_ref(link.contact.id),
            why,
            delay,
        )
        if link.since_ms is None:
            link.since_ms = now_ms()  # unreachable since we first tried
        parts.publish_peer(link)
        link.wake.fire()
        return None

    # -- housekeeping ---------------------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            try:
                await self._expire()
                parts = self._parts
                self.apply_refusals(
                    await parts.worker(
                        rejudge,
                        parts.store,
                        now_ms(),
                        required=parts.policy.require_endorsement,
                        cache=parts.trust_cache,
                    )
                )
            except StoreError as exc:
                # A full disk or a locked page now; the next round tries again.
                log.warning("event=housekeeping_failed error=%s", type(exc).__name__)
            await trio.sleep(HOUSEKEEPING_INTERVAL)

    async def _expire(self) -> None:
        parts = self._parts
        now = now_ms()
        for message_id in await parts.worker(parts.store.outbox.expire, now):
            log.info("event=expired id=%s", message_id.hex())
            parts.hub.publish(StateChange(message_id.hex(), MessageState.EXPIRED))
        kept_before = now - int(parts.policy.keep_sent_files * 1000)
        for file_id in await parts.worker(parts.store.transfers.drop_sent_copies, kept_before, now):
            log.info("event=sent_copy_deleted id=%s", file_id.hex())
        idle_before = now - int(parts.policy.transfer_idle_timeout * 1000)
        for contact_id, file_id in await parts.worker(
            parts.store.transfers.expire_transfers, idle_before
        ):
            log.info(
                "event=transfer_expired contact=%s id=%s", contact_ref(contact_id), file_id.hex()
            )
