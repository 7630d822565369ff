"""A session's sender: replies first, then owed acks and receipts, our
mailbox announcement, trust records passed on, the outbox; keepalives, the
idle close, and giving up on a contact gone silent (``_session.py`` runs it
beside the receiver, in the session's nursery).

What left on a session is marked ``sent`` late (``_sent.py``): most texts are
acknowledged first.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Final

import trio

from onionpost._logs import contact_ref
from onionpost.api import REASON_MOVED, MessageState, StateChange
from onionpost.daemon.delivery import _groups
from onionpost.daemon.delivery._gossip import gossip
from onionpost.daemon.delivery._records import Link, Parts, Session, now_ms
from onionpost.daemon.delivery._trust import (
    own_in_detail,
    own_rotation,
    refuse_moved,
    staple,
)
from onionpost.daemon.delivery._views import wire_record
from onionpost.errors import CloseCode, OnionpostError, TransportError
from onionpost.host import Shed
from onionpost.limits import MAX_ACK_IDS, MAX_TRUST_ANCHORS
from onionpost.proto import messages
from onionpost.transport import SecureChannel

__all__ = [
    "SEND_BATCH",
    "ask_witness",
    "refuse_after_move",
    "run_sender",
    "send_replies",
    "sent_marker",
]

log = logging.getLogger("onionpost.daemon")

SEND_BATCH: Final = 256


async def send_replies(session: Session) -> None:
    while session.replies:
        await session.channel.send(session.replies.popleft())
        session.room.fire()


def _trust_due(session: Session, now: float) -> float | None:
    """When the session's pace next lets our staple or gossip go, if either
    waits (trust.md §§7.1-7.2); None when neither does."""
    due = [
        pace.next_at(now)
        for waiting, pace in (
            (session.restaple, session.staples_out),
            (session.regossip, session.gossip_out),
        )
        if waiting
    ]
    return min(due) if due else None


async def _pass_on_trust(parts: Parts, link: Link, session: Session) -> None:
    """Our staple (at the start, or again: we hold a newer list of our agency)
    and what we hold of other agencies that the contact has not been sent
    (trust.md §§7.1-7.2), as far as the session's pace lets them go now;
    what it does not is left waiting for :func:`_trust_due`."""
    now = trio.current_time()
    if session.restaple and session.staples_out.take(now):
        session.restaple = False
        stapled = await parts.worker(staple, parts.store)
        if stapled is not None:
            await session.channel.send(stapled)
    if not session.regossip or session.gossip_out.next_at(now) > now:
        return
    session.regossip = False
    everything = await parts.worker(gossip, parts.store)
    if len(link.gossiped) > MAX_TRUST_ANCHORS:
        # Anchors removed since: forget them (at most one entry an anchor).
        current = {found.fingerprint for found in everything}
        link.gossiped = {f: d for f, d in link.gossiped.items() if f in current}
    for found in everything:
        digest = hashlib.blake2b(
            b"%d:%b%b" % (len(found.revocations), found.revocations, found.checkpoint),
            digest_size=16,
        ).digest()
        if link.gossiped.get(found.fingerprint) == digest:
            continue
        if not session.gossip_out.take(now):
            session.regossip = True  # the rest when the pace allows
            return
        await session.channel.send(
            messages.TrustGossip(found.delegation, found.revocations, found.checkpoint)
        )
        link.gossiped[found.fingerprint] = digest
        log.info(
            "event=trust_gossip_sent contact=%s revocations=%d checkpoint=%d",
            contact_ref(link.contact.id),
            len(found.revocations),
            len(found.checkpoint),
        )


async def run_sender(parts: Parts, link: Link, session: Session) -> None:
    """Send what waits in the outbox, receipts owed, and keepalives."""
    channel = session.channel
    policy = parts.policy
    contact_id = link.contact.id
    if session.initiator:
        # The responder decides on us after the handshake; its Pong is the
        # first proof that it accepted us (backoff is reset only then).
        await channel.send(messages.Ping(secrets.randbits(63)))
        # The initiator asks first; the responder asks once it has been asked
        # (so that a responder never writes to a contact that has not).
        # Contacts witness; a member a group introduced does not (§9).
        if not link.contact.introduced:
            await ask_witness(parts, link, session)
    # Our endorsement, fresh in every session (trust.md §7.1), and what we
    # hold of other agencies that the contact has not been sent (§7.2).
    session.restaple = True
    await _pass_on_trust(parts, link, session)
    # Our move to a new address, in every session under the address we leave
    # (trust.md §6); a contact that has it dials us there from now on.
    sent_up_to = 0
    rotation = await parts.worker(own_rotation, parts.store, link.contact)
    if rotation is not None:
        # What waits goes first, so that the move strands none of it: the
        # contact takes it, acks it as the move ends the session, and takes
        # nothing after the move from this address. Unless this address is
        # revoked: a contact that holds the list takes the session for the
        # move alone, and a long backlog sent first could outlast it (trust.md
        # §7.4); what waits is then refused as after any move.
        waiting_first = contact_id not in parts.refusals
        if waiting_first and await parts.worker(_revoked_here, parts):
            waiting_first = False
        if waiting_first:
            sent_up_to = await _send_waiting(parts, link, session)
        await _tell_move(parts, session, contact_id, rotation)
    if policy.label_accept:
        # The highest labels we accept (spec.md §5.10): the contact's daemon
        # refuses to queue more for us.
        await channel.send(messages.LabelLimit(policy.label_accept))
    # Everything unacked goes out once on a new session; after that only
    # what was queued since, so a wake-up reads no row twice.
    while True:
        seen = session.wake.generation
        if session.replies:
            await send_replies(session)
            continue
        if session.closing is not None:
            raise session.closing
        if session.reannounce:
            # Our move, announced while this session was up (trust.md §6).
            session.reannounce = False
            rotation = await parts.worker(own_rotation, parts.store, link.contact)
            if rotation is not None:
                if contact_id not in parts.refusals:
                    # What was queued since the last read goes ahead of it.
                    sent_up_to = await _send_waiting(parts, link, session, after=sent_up_to)
                    session.handoff.clear()
                await _tell_move(parts, session, contact_id, rotation)
            continue
        trust_at = _trust_due(session, trio.current_time())
        if trust_at is not None and trust_at <= trio.current_time():
            # We hold a newer list than the one we stapled, or gossip the
            # contact has not had: pass it on, as the pace allows (§7.2).
            await _pass_on_trust(parts, link, session)
            continue
        # A refused contact (revoked, or without the endorsement the policy
        # requires) is sent nothing: its outbox waits (trust.md §7.4).
        # Nor one told of our move: it takes nothing from this address now.
        held = contact_id in parts.refusals or session.moved_told
        if held:
            records: list[messages.Message | messages.Encoded[messages.Message]] = []
        elif link.owes:
            if await _send_owed(parts, link, channel):
                continue
            link.owes = False
        if not held and (not session.groups_offered or link.group_sync):
            await _groups.offer_groups(parts, link, session)
            continue
        due = None if held else parts.announcement_due(link)
        if due is not None:
            version, announcement = due
            await channel.send(messages.MailboxInfo(announcement))
            await parts.writer.write(parts.store.mailbox.mark_mailbox_told, contact_id, version)
            link.contact = replace(link.contact, mailbox_told=version)
            continue
        if held:
            seqs, ids = [], []
        elif session.reread:
            # Whatever was handed over is in the outbox: the read sends it.
            session.reread = False
            session.handoff.clear()
            batch = await parts.worker(
                parts.store.outbox.pending, contact_id, SEND_BATCH, after=sent_up_to
            )
            if len(batch) == SEND_BATCH:
                session.reread = True  # more to read
            groups = await parts.worker(
                parts.store.groups.wire_info, contact_id, [o.id for o in batch]
            )
            records = [wire_record(o, groups.get(o.id)) for o in batch]
            seqs = [o.seq for o in batch]
            ids = [o.id for o in batch]
        else:
            handed = [
                session.handoff.popleft() for _ in range(min(SEND_BATCH, len(session.handoff)))
            ]
            # Those the last read sent already are left out.
            fresh = [(seq, text) for seq, text in handed if seq > sent_up_to]
            records = [text for _, text in fresh]
            seqs = [seq for seq, _ in fresh]
            ids = [
                (text.message if isinstance(text, messages.Encoded) else text).id
                for _, text in fresh
            ]
        if records:
            session.last_activity = trio.current_time()
            if session.unanswered_since is None:
                session.unanswered_since = session.last_activity
            await channel.send_many(records)
            sent_up_to = max(sent_up_to, *seqs)
            parts.sent.left(contact_id, ids)
            continue
        if not held and (session.reread or session.handoff):
            continue
        now = trio.current_time()
        idle_until = session.last_activity + policy.idle_close
        if session.initiator and now >= idle_until:
            # Nothing either way for a while: we opened it, we close it.
            raise Shed("idle", code=CloseCode.NORMAL, reason="idle")
        silent_until = session.last_heard + policy.silence_timeout
        ping_at = session.last_ping + policy.ping_interval
        if session.unanswered_since is not None:
            silent_until = min(silent_until, session.unanswered_since + policy.answer_timeout)
            # Halfway, a Ping: a contact that is there but slow to ack answers it.
            halfway = session.unanswered_since + policy.answer_timeout / 2
            if session.last_ping < halfway:
                ping_at = min(ping_at, halfway)
        if now >= silent_until:
            # Our Pings went unanswered: the contact is gone (its tor died
            # with its workstation) though the stream did not say so. What
            # waits for it may go to its mailbox now.
            raise TransportError("timeout", reason="timeout")
        if now >= ping_at:
            session.last_ping = now
            await channel.send(messages.Ping(secrets.randbits(63)))
            continue
        deadline = min(ping_at, silent_until)
        if session.initiator:
            deadline = min(deadline, idle_until)
        if trust_at is not None:
            deadline = min(deadline, trust_at)
        with trio.move_on_at(deadline):
            await session.wake.wait(since=seen)


async def _send_waiting(parts: Parts, link: Link, session: Session, *, after: int = 0) -> int:
    """Send everything unacked in the outbox queued after ``after`` once
    (before our move); the seq sent up to. Bounded: each read starts after
    the last one."""
    contact_id, sent_up_to = link.contact.id, after
    while batch := await parts.worker(
        parts.store.outbox.pending, contact_id, SEND_BATCH, after=sent_up_to
    ):
        groups = await parts.worker(parts.store.groups.wire_info, contact_id, [o.id for o in batch])
        await session.channel.send_many([wire_record(o, groups.get(o.id)) for o in batch])
        sent_up_to = max(o.seq for o in batch)
        parts.sent.left(contact_id, [o.id for o in batch])
    session.last_activity = trio.current_time()
    return sent_up_to


def _revoked_here(parts: Parts) -> bool:
    """In the worker: whether a list we hold revokes our own address."""
    judged = own_in_detail(parts.store, str(parts.address), now_ms(), parts.trust_cache)
    return judged is not None and judged.verdict is not None and judged.verdict.revoked is not None


async def _tell_move(
    parts: Parts, session: Session, contact_id: int, rotation: messages.TrustRotation
) -> None:
    """Tell the contact of our move (trust.md §6). It ends the session at its
    end and takes nothing more from this address: nothing but replies follows
    on this session, and what still waits when it ends is refused with a
    stated reason (``refuse_moved``) rather than left to wait for ever."""
    await session.channel.send(rotation)
    session.moved_told = True
    await parts.writer.write(parts.store.trust.mark_rotation_told, contact_id, now_ms())


def refuse_after_move(parts: Parts, contact_id: int) -> None:
    """After a session that told the contact of our move: what it did not ack."""

    def published(ended: list[bytes]) -> None:
        for message_id in ended:
            parts.hub.publish(
                StateChange(message_id.hex(), MessageState.REFUSED, reason=REASON_MOVED)
            )

    when = now_ms()
    parts.writer.write_later(published, lambda: refuse_moved(parts.store, contact_id, when))


def sent_marker(parts: Parts) -> Callable[[int, list[bytes]], Awaitable[None]]:
    """What marks a contact's ids ``sent``, then says so (:class:`SentMarks`)."""

    async def mark(contact_id: int, ids: list[bytes]) -> None:
        def published(changed: list[bytes]) -> None:
            for message_id in changed:
                parts.hub.publish(StateChange(message_id.hex(), MessageState.SENT))

        if parts.writer.busy():
            # A backlog: wait for this one, so the writer's queue stays bounded.
            try:
                changed = await parts.writer.write(
                    parts.store.outbox.mark_sent, ids, now_ms(), contact_id=contact_id
                )
            except OnionpostError as exc:
                # It only informs: the texts stay queued, as at a stop. This
                # runs in the engine's own task, which a failed write must
                # never end (a full disk, the writer stopping).
                log.warning(
                    "event=sent_mark_failed contact=%s error=%s",
                    contact_ref(contact_id),
                    type(exc).__name__,
                )
                return
            published(changed)
        else:
            # 'sent' only informs: nobody waits for it.
            parts.writer.write_later(
                published,
                lambda: parts.store.outbox.mark_sent(ids, now_ms(), contact_id=contact_id),
            )

    return mark


async def _send_owed(parts: Parts, link: Link, channel: SecureChannel) -> bool:
    """Send one record of acks or read receipts owed; False when none is."""
    contact_id = link.contact.id
    for kind, record in (("ack", messages.Ack), ("read", messages.Read)):
        ids = await parts.worker(parts.store.mailbox.owed, contact_id, kind, MAX_ACK_IDS)
        if ids:
            await channel.send(record(tuple(ids)))
            # Written: settled. A loss on the way is healed by the sender
            # sending the message again, which the receiver acks again.
            await parts.writer.write(parts.store.mailbox.settle, contact_id, kind, ids)
            return True
    return False


async def ask_witness(parts: Parts, link: Link, session: Session) -> None:
    """Ask the contact to cosign our evidence log's checkpoint (``_witness.py``)."""
    if parts.witness is None or session.cosign_asked:
        return
    session.cosign_asked = True
    request = await parts.worker(parts.witness.request, parts.store, link.contact.id, now_ms())
    if request is not None:
        session.cosign_sent = request
        await session.reply(request)
