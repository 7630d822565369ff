"""Team channels in a session: offering logs, answering fetches, and group texts.

::

    session start ──► GroupFetch [g, our heads]   for each group shared with the peer
    GroupFetch in ──► GroupOps [g, what it lacks] (and GroupFetch back when it
                      named heads we lack, or a group we do not hold)
    GroupOps in   ──► the intake adds them (all or nothing); the waiting texts
                      of that group are decided again; other members are offered
                      the change (gossip: nobody relays messages, only operations)
    GroupText in  ──► the intake's may_post decision: stored and acked, or held
                      while the missing operations are fetched, or refused
    GroupFileOffer ─► the same decision; accepted, it is answered as a
                      FileOffer (FileAccept, ...) and the transfer is a file's;
                      refused for good (not-a-member, removed): FileReject

A GroupFetch is both the offer and the question ("my heads are these: what do
I lack?"), so one exchange brings both sides level. Everything is bounded per
session (MAX_GROUP_FETCHES_PER_SESSION each way, MAX_GROUP_TEXTS_WAITING held
texts); what is left waits for the next session, and a text not acknowledged
comes again then (its sender keeps it queued). The decisions are the intake's
(``_intake.py``), the same for a live session and an opened envelope.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from onionpost._logs import contact_ref
from onionpost.api import GroupChange
from onionpost.daemon.delivery._files import answer_offer
from onionpost.daemon.delivery._intake import GroupTextOutcome
from onionpost.daemon.delivery._records import Link, Parts, Session, now_ms
from onionpost.daemon.delivery._views import message_record
from onionpost.limits import (
    MAX_GROUP_FETCH_HEADS,
    MAX_GROUP_FETCHES_PER_SESSION,
    MAX_GROUP_TEXTS_WAITING,
    MAX_GROUPS,
    MAX_RECORD_SIZE,
)
from onionpost.proto import messages
from onionpost.proto.messages import MAX_BLOBS

__all__ = [
    "offer_groups",
    "drop_waiting",
    "on_group_fetch",
    "on_group_file_offer",
    "on_group_ops",
    "on_group_text",
    "ops_records",
    "publish_group",
]

log = logging.getLogger("onionpost.daemon")

# What a GroupOps record spends beside its operations (tag, id, array headers).
_OPS_OVERHEAD: Final = 64


def _change(parts: Parts, group_id: bytes, contact: str | None) -> GroupChange:
    log = parts.store.groups.log(group_id)
    state = log.state
    return GroupChange(
        id=group_id.hex(),
        name=state.name,
        head=log.head.hex(),
        member=state.is_member(parts.address.public_key),
        operations=len(log),
        contact=contact,
    )


async def publish_group(parts: Parts, group_id: bytes, contact: str | None) -> None:
    """Tell the local API's ``group`` subscribers that a group's log changed."""
    if parts.hub.wants("group"):
        parts.hub.publish(await parts.worker(_change, parts, group_id, contact))


def ops_records(group_id: bytes, ops: list[bytes]) -> list[messages.GroupOps]:
    """``ops`` in as few GroupOps records as fit, in their order."""
    records: list[messages.GroupOps] = []
    batch: list[bytes] = []
    size = _OPS_OVERHEAD
    for op in ops:
        if batch and (len(batch) >= MAX_BLOBS or size + len(op) + 3 > MAX_RECORD_SIZE):
            records.append(messages.GroupOps(group_id, tuple(batch)))
            batch, size = [], _OPS_OVERHEAD
        batch.append(op)
        size += len(op) + 3
    if batch:
        records.append(messages.GroupOps(group_id, tuple(batch)))
    return records


async def _fetch(
    parts: Parts, session: Session, group_id: bytes, heads: tuple[bytes, ...] | None = None
) -> None:
    """Send our heads of a group (none if we hold no log of it; ``heads`` of
    one we are joining), within the budget."""
    if session.group_fetches_sent >= MAX_GROUP_FETCHES_PER_SESSION:
        return
    session.group_fetches_sent += 1
    if heads is None:
        heads = await parts.worker(_heads, parts, group_id)
    await session.reply(messages.GroupFetch(group_id, b"".join(heads[:MAX_GROUP_FETCH_HEADS])))


def _heads(parts: Parts, group_id: bytes) -> tuple[bytes, ...]:
    groups = parts.store.groups
    return groups.log(group_id).heads if groups.known(group_id) else ()


async def offer_groups(parts: Parts, link: Link, session: Session) -> None:
    """Offer the contact our heads of every group it shares with us, once a
    session and again for each group changed here since."""
    if session.groups_offered:
        changed, link.group_sync = link.group_sync, set()
        ids = [g for g in changed if await parts.worker(_shares, parts, link, g)]
    else:
        session.groups_offered = True
        link.group_sync = set()
        key = link.contact.address.public_key
        ids = [g.group_id for g in await parts.worker(parts.store.groups.shared_with, key)]
    for group_id in ids:
        await _fetch(parts, session, group_id)


def _shares(parts: Parts, link: Link, group_id: bytes) -> bool:
    key = link.contact.address.public_key
    return any(g.group_id == group_id for g in parts.store.groups.shared_with(key))


async def on_group_fetch(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.GroupFetch
) -> None:
    if s.group_fetches_answered >= MAX_GROUP_FETCHES_PER_SESSION:
        return
    s.group_fetches_answered += 1
    answer = await parts.worker(parts.intake.group_fetch, link.contact.id, r)
    for record in ops_records(r.group_id, list(answer.ops)):
        await s.reply(record)
    if answer.ask:
        await _fetch(parts, s, r.group_id)


async def on_group_ops(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.GroupOps
) -> None:
    before = s.group_joining.pop(r.group_id, ())
    if not before and len(s.group_joining) >= MAX_GROUPS:
        return  # joining as many groups as one keeps, in one session
    done = await parts.writer.write(
        parts.intake.group_ops, link.contact.id, r, now_ms(), before=before
    )
    if done.joining:
        s.group_joining[r.group_id] = done.joining
        await _fetch(parts, s, r.group_id, done.heads)
        return
    if done.refused is not None:
        log.info(
            "event=group_ops_refused contact=%s why=%s", contact_ref(link.contact.id), done.refused
        )
        return
    if done.fetch:
        await _fetch(parts, s, r.group_id)
        return
    if done.added:
        log.info(
            "event=group_ops_added contact=%s operations=%d",
            contact_ref(link.contact.id),
            len(done.added),
        )
        parts.group_changed(r.group_id, link.contact.id)
        await publish_group(parts, r.group_id, link.contact.name)
        if len(r.ops) >= MAX_BLOBS:
            await _fetch(parts, s, r.group_id)  # a full answer: there may be more
    waiting = [t for t in s.group_waiting if t.group_id == r.group_id]
    s.group_waiting = [t for t in s.group_waiting if t.group_id != r.group_id]
    for held in waiting:
        if isinstance(held, messages.GroupFileOffer):
            await _decide_offer(parts, link, s, held, fetch=False)
        else:
            await _decide(parts, link, s, held, fetch=False)


async def on_group_text(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.GroupText
) -> None:
    await _decide(parts, link, s, r, fetch=True)


async def _decide(
    parts: Parts, link: Link, s: Session, text: messages.GroupText, *, fetch: bool
) -> None:
    """Store, hold or refuse one group text (the intake decides)."""
    contact_id = link.contact.id
    done = await parts.writer.write(parts.intake.group_text, contact_id, text, now_ms())
    if done.acked:
        await s.reply(messages.Ack((text.id,)))
        if done is GroupTextOutcome.STORED:
            parts.counters.texts_received += 1
            if parts.hub.wants("message"):
                row = await parts.worker(
                    parts.store.messages.message, text.id, contact_id=contact_id
                )
                parts.hub.publish(message_record(row))
        return
    if done.waits and fetch and len(s.group_waiting) < MAX_GROUP_TEXTS_WAITING:
        s.group_waiting.append(text)
        await _fetch(parts, s, text.group_id)
        return
    # Refused, or it cannot be decided this session: nothing stored, no Ack
    # (its sender keeps it queued; a member removed has it expire there).
    log.info("event=group_text_refused contact=%s why=%s", contact_ref(contact_id), done.value)


async def on_group_file_offer(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.GroupFileOffer
) -> None:
    await _decide_offer(parts, link, s, r, fetch=True)


async def _decide_offer(
    parts: Parts, link: Link, s: Session, offer: messages.GroupFileOffer, *, fetch: bool
) -> None:
    """Take, hold or refuse one file offered to a group (the intake decides)."""
    contact_id = link.contact.id
    done = await parts.writer.write(parts.intake.group_offer, contact_id, offer, now_ms())
    if done.offer is not None:
        await answer_offer(s, offer.id, done.offer)
        return
    assert done.check is not None
    if done.check.waits and fetch and len(s.group_waiting) < MAX_GROUP_TEXTS_WAITING:
        s.group_waiting.append(offer)
        await _fetch(parts, s, offer.group_id)
        return
    if done.final:
        # Its author may not post there: the copy ends at its author for good.
        await s.reply(messages.FileReject(offer.id, messages.FileRejectReason.DECLINED))
    log.info(
        "event=group_file_refused contact=%s id=%s why=%s",
        contact_ref(contact_id),
        offer.id.hex(),
        done.check.value,
    )


def drop_waiting(link: Link, session: Session) -> None:
    """At a session's end: the group records still waiting for operations
    that never came are dropped, nothing stored, each logged once (their
    authors keep them queued and send them again in a later session)."""
    for held in session.group_waiting:
        what = "file" if isinstance(held, messages.GroupFileOffer) else "text"
        log.info(
            "event=group_%s_refused contact=%s id=%s why=not-fetched",
            what,
            contact_ref(link.contact.id),
            held.id.hex(),
        )
    session.group_waiting = []
