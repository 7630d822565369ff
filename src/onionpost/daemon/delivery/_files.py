"""Files in a live session: offers, accepts, chunks both ways, refusals.

One sender per (contact, file), bound to the session it runs in: a repeated
FileAccept in that session moves it; a FileAccept in another session (the
first one ended, or lost a crossing) starts a new one and stops the old.
"""

from __future__ import annotations

import logging
from typing import Final

import trio

from onionpost._logs import contact_ref
from onionpost.api import MessageState, StateChange
from onionpost.daemon.delivery._intake import FINAL_REJECTIONS, OfferOutcome
from onionpost.daemon.delivery._records import FileJob, Link, Parts, Session, now_ms
from onionpost.daemon.delivery._views import message_record
from onionpost.errors import NotFoundError
from onionpost.limits import FILE_CHUNK_SIZE
from onionpost.proto import messages
from onionpost.store import Direction

__all__ = ["answer_offer", "on_accept", "on_chunk", "on_offer", "on_refusal"]

log = logging.getLogger("onionpost.daemon")

PROGRESS_EVERY_BYTES: Final = 1 << 20


def _valid_offset(offset: int, size: int) -> bool:
    return offset % FILE_CHUNK_SIZE == 0 and 0 <= offset <= size


def _crossed_mark(offset: int, end: int, size: int) -> bool:
    return end // PROGRESS_EVERY_BYTES != offset // PROGRESS_EVERY_BYTES or end >= size


async def on_offer(parts: Parts, link: Link, session: Session, offer: messages.FileOffer) -> None:
    outcome = await parts.writer.write(parts.intake.offer, link.contact.id, offer, now_ms())
    await answer_offer(session, offer.id, outcome)


async def answer_offer(session: Session, file_id: bytes, outcome: OfferOutcome) -> None:
    """The answer to a file offer (a FileOffer's, or a group's once accepted)."""
    if outcome.reject is not None:
        await session.reply(messages.FileReject(file_id, outcome.reject))
    elif outcome.complete:
        # Already complete (the sender missed our FileComplete): say so again.
        await session.reply(messages.FileComplete(file_id))
    else:
        await session.reply(messages.FileAccept(file_id, outcome.offset))


async def on_accept(
    parts: Parts,
    link: Link,
    session: Session,
    nursery: trio.Nursery,
    accept: messages.FileAccept,
) -> None:
    file_id = accept.id
    job = link.files.get(file_id)
    if job is not None and not job.stopped:
        if job.session is session:
            # One sender per (contact, file): a repeated FileAccept moves it.
            job.restart = accept.offset
            return
        job.stopped = True  # its session is ending; this one takes over
    # Only a file we offered to this very contact may be asked for.
    try:
        stored = await parts.worker(
            parts.store.messages.message, file_id, contact_id=link.contact.id
        )
    except NotFoundError:
        stored = None
    if (
        stored is None
        or stored.direction != Direction.OUT
        or stored.file is None
        or stored.state not in ("queued", "sent")
        or not _valid_offset(accept.offset, stored.file.size)
    ):
        await session.reply(messages.FileCancel(file_id, messages.FileRejectReason.UNKNOWN_FILE))
        return
    job = FileJob(session, accept.offset)
    link.files[file_id] = job
    nursery.start_soon(_send_file, parts, link, file_id, stored.file.size, job)


async def _send_file(parts: Parts, link: Link, file_id: bytes, size: int, job: FileJob) -> None:
    channel = job.session.channel
    try:
        while not job.stopped:
            if job.restart is not None:
                if not _valid_offset(job.restart, size):
                    await channel.send(
                        messages.FileCancel(file_id, messages.FileRejectReason.UNKNOWN_FILE)
                    )
                    return
                job.offset, job.restart = job.restart, None
            offset = job.offset
            if offset >= size:
                return  # all sent; the FileComplete will say it arrived
            data = await parts.worker(
                parts.store.transfers.read_file_chunk,
                file_id,
                offset,
                min(FILE_CHUNK_SIZE, size - offset),
                contact_id=link.contact.id,
            )
            if job.stopped:
                return
            await channel.send(messages.FileChunk(file_id, offset, data))
            job.offset = offset + len(data)
            if _crossed_mark(offset, job.offset, size):
                parts.hub.publish(
                    StateChange(file_id.hex(), MessageState.SENDING, job.offset, size)
                )
    finally:
        if link.files.get(file_id) is job:
            del link.files[file_id]


async def on_chunk(parts: Parts, link: Link, session: Session, chunk: messages.FileChunk) -> None:
    outcome = await parts.writer.write(parts.intake.chunk, link.contact.id, chunk, now_ms())
    if outcome.cancel is not None:
        await session.reply(messages.FileCancel(chunk.id, outcome.cancel))
        return
    if _crossed_mark(chunk.offset, outcome.end, outcome.size):
        parts.hub.publish(
            StateChange(chunk.id.hex(), MessageState.RECEIVING, outcome.end, outcome.size)
        )
    if outcome.reject is not None:
        await session.reply(messages.FileReject(chunk.id, outcome.reject))
    elif outcome.complete is not None:
        await session.reply(messages.FileComplete(chunk.id))
        parts.hub.publish(message_record(outcome.complete))


async def on_refusal(
    parts: Parts, link: Link, record: messages.FileReject | messages.FileCancel
) -> None:
    """A FileReject or FileCancel: only ids exchanged with this contact count."""
    direction, refused = await parts.writer.write(
        parts.intake.refusal, link.contact.id, record, now_ms()
    )
    if direction is not Direction.OUT:
        return
    job = link.files.get(record.id)
    if job is not None:
        job.stopped = True
    contact = contact_ref(link.contact.id)
    if refused:
        log.info(
            "event=file_refused contact=%s id=%s reason=%d", contact, record.id.hex(), record.reason
        )
        parts.hub.publish(StateChange(record.id.hex(), MessageState.REFUSED, reason=record.reason))
    elif not (isinstance(record, messages.FileReject) and record.reason in FINAL_REJECTIONS):
        # No room at the contact now, or it dropped the transfer: the file stays
        # queued and is offered again in a later session.
        log.info(
            "event=file_deferred contact=%s id=%s reason=%d",
            contact,
            record.id.hex(),
            record.reason,
        )
