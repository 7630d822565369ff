"""Deposits into a contact's mailbox (mailbox.md §Sender), over the one
mailbox client.

Envelope by envelope: take one prekey, seal what fits (acks and receipts
owed first, our announcement, then the outbox in order, files in parts),
deposit it, and only once the mailbox said it holds it mark those
``deposited`` and settle those debts. A refusal (quota, full) ends the
deposit session; what was not deposited stays in the outbox and goes
directly or later.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Final

import trio

from onionpost._logs import contact_ref
from onionpost.api import REASON_MOVED, MessageState, StateChange
from onionpost.daemon.delivery._mbclient import MailboxClient, mailbox_refusal
from onionpost.daemon.delivery._policy import MailboxAccess
from onionpost.daemon.delivery._records import Link, Parts, jitter, now_ms
from onionpost.daemon.delivery._trust import moved_told, rotation_due
from onionpost.daemon.delivery._views import expected, wire_record
from onionpost.errors import (
    AuthenticationError,
    CloseCode,
    RemoteProtocolError,
    StoreError,
    TransportError,
)
from onionpost.host import descriptor_refetched, first_failure, reason
from onionpost.limits import FILE_CHUNK_SIZE, MAX_ACK_IDS
from onionpost.proto import messages
from onionpost.proto.address import OnionAddress
from onionpost.store import Outgoing, Store

__all__ = ["MAILBOX_PART", "deposit", "has_deposit_work"]

log = logging.getLogger("onionpost.daemon")

# A file travels through a mailbox in parts of this many bytes (the last one
# shorter), one per envelope with room to spare for acks: a wire chunk does
# not fit in an envelope. The receiver puts the parts back into chunks
# (store.mailbox.write_file_part; mailbox.md §Files).
MAILBOX_PART: Final = 60_000
CLOSE_GRACE: Final = 2.0

# (message id, offset deposited up to, whole) for each outgoing message an envelope carries.
Progress = list[tuple[bytes, int, bool]]
Settled = list[tuple[str, list[bytes]]]


async def deposit(parts: Parts, link: Link, target: OnionAddress) -> None:
    """One deposit session with the contact's mailbox ``target``: its own failure domain."""
    mailbox = parts.mailbox
    if mailbox is None:
        return
    failure: BaseException | None = None
    before = link.envelopes
    with trio.CancelScope() as scope:
        link.scopes.add(scope)
        try:
            with trio.fail_after(parts.policy.connect_timeout):
                channel = await mailbox.dial(target)
            try:
                client = MailboxClient(
                    channel, answer_timeout=parts.policy.connect_timeout, owner=False
                )
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(client.pump)
                    await _envelopes(parts, link, mailbox, client)
                    nursery.cancel_scope.cancel()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
                    await channel.aclose()
        except* trio.TooSlowError:
            failure = TransportError("timeout", reason="timeout")
        except* Exception as group:
            failure = first_failure(group)
        finally:
            link.scopes.discard(scope)
    deposited = link.envelopes - before
    contact = contact_ref(link.contact.id)
    if failure is None:
        link.state.deposit_done(trio.current_time() + parts.policy.deposit_gather)
        log.info("event=deposited contact=%s envelopes=%d", contact, deposited)
        return
    why = reason(failure)
    if _not_a_mailbox(failure):
        # An endpoint (or anything else) the contact named as its mailbox:
        # never dialed as one again for this contact (mailbox.md §Sender).
        why = "not-a-mailbox"
        link.bad_mailbox = target
        log.warning("event=mailbox_marked_bad contact=%s", contact)
    delay = link.state.deposit_failed(
        trio.current_time(), why, jitter(), refetched=descriptor_refetched(failure)
    )
    log.info(
        "event=deposit_failed contact=%s envelopes=%d reason=%s retry_in=%.1f",
        contact,
        deposited,
        why,
        delay,
    )
    if not expected(failure):
        log.warning("event=deposit_error contact=%s", contact, exc_info=failure)
    parts.publish_peer(link)


def _not_a_mailbox(failure: BaseException) -> bool:
    """The peer answered our mailbox records as no mailbox does: with another
    protocol's records, or by refusing ours."""
    return (
        isinstance(failure, RemoteProtocolError)
        and not isinstance(failure, AuthenticationError)
        and failure.close_code == CloseCode.BAD_MESSAGE
    )


async def _envelopes(
    parts: Parts, link: Link, mailbox: MailboxAccess, client: MailboxClient
) -> None:
    contact = link.contact
    owner = contact.address.public_key
    for _ in range(parts.policy.max_envelopes_per_deposit):
        announce = parts.announcement_due(link)
        rotation = await parts.worker(rotation_due, parts.store, contact)
        batch = await parts.worker(
            _envelope_batch, parts.store, mailbox, contact.id, announce, rotation
        )
        if batch is None:
            return
        records, progress, settled, full = batch
        answer = await client.request(lambda req: messages.MbGetPrekey(req, owner))
        if not isinstance(answer, messages.MbPrekey):
            raise mailbox_refusal(answer, "prekey")
        envelope = await parts.worker(
            mailbox.seal, contact.address, answer.prekey, records, now_ms()
        )
        await client.ok(partial(_deposit_record, owner, envelope), "deposit")
        done = await parts.writer.write(_settle, parts.store, contact.id, progress, settled)
        if announce is not None:
            await parts.writer.write(parts.store.mailbox.mark_mailbox_told, contact.id, announce[0])
            link.contact = replace(link.contact, mailbox_told=announce[0])
        ended: list[bytes] = []
        if rotation is not None:
            # What did not fit in this envelope cannot follow it (trust.md §6).
            ended = await parts.writer.write(moved_told, parts.store, contact.id, now_ms())
        parts.counters.deposits += 1
        link.envelopes += 1
        for message_id in done:
            parts.hub.publish(StateChange(message_id.hex(), MessageState.DEPOSITED))
        for message_id in ended:
            parts.hub.publish(
                StateChange(message_id.hex(), MessageState.REFUSED, reason=REASON_MOVED)
            )
        if not full:
            # All that waited fitted: what is queued from now on is gathered
            # for a while (policy.deposit_gather) rather than sealed as it
            # trickles in, one prekey per text.
            return


def _deposit_record(owner: bytes, envelope: bytes, req: int) -> messages.MbDeposit:
    return messages.MbDeposit(req, owner, envelope)


def _settle(store: Store, contact_id: int, progress: Progress, settled: Settled) -> list[bytes]:
    for kind, ids in settled:
        store.mailbox.settle(contact_id, kind, ids)
    return store.mailbox.mark_deposited(progress, now_ms(), contact_id=contact_id)


def _envelope_batch(
    store: Store,
    mailbox: MailboxAccess,
    contact_id: int,
    announce: tuple[int, bytes] | None,
    rotation: messages.TrustRotation | None = None,
) -> tuple[list[bytes], Progress, Settled, bool] | None:
    """In the worker: the records of the next envelope to deposit, what
    depositing it achieves, the debts it settles, and whether more waits than
    fitted; None if nothing."""
    records: list[bytes] = []
    progress: Progress = []
    settled: Settled = []

    def add(record: messages.Message) -> bool:
        data = messages.encode(record)
        if not mailbox.fits([*records, data]):
            return False
        records.append(data)
        return True

    if announce is not None:
        add(messages.MailboxInfo(announce[1]))
    if rotation is not None:
        add(rotation)  # our move (trust.md §6): a contact away learns it here
    for kind, cls in (("ack", messages.Ack), ("read", messages.Read)):
        ids = store.mailbox.owed(contact_id, kind, MAX_ACK_IDS)
        if ids and add(cls(tuple(ids))):
            settled.append((kind, ids))
    after = 0
    while True:
        page = store.mailbox.undeposited(contact_id, 64, after=after)
        if not page:
            break
        for outgoing in page:
            after = outgoing.seq
            if not _add_outgoing(store, outgoing, add, progress):
                return (records, progress, settled, True) if records else None
    return (records, progress, settled, False) if records else None


def _add_outgoing(
    store: Store,
    outgoing: Outgoing,
    add: Callable[[messages.Message], bool],
    progress: Progress,
) -> bool:
    """Add what of ``outgoing`` fits; False once the envelope is full."""
    group = store.groups.wire_info(outgoing.contact_id, [outgoing.id]).get(outgoing.id)
    if outgoing.file is None:
        if not add(wire_record(outgoing, group)):
            return False
        progress.append((outgoing.id, 0, True))
        return True
    size = outgoing.file.size
    start = offset = outgoing.deposit_offset
    if start == 0 and not add(wire_record(outgoing, group)):
        return False
    while offset < size:
        length = min(MAILBOX_PART, size - offset)
        data = _read_range(store, outgoing, offset, length)
        if not add(messages.FileChunk(outgoing.id, offset, data)):
            break
        offset += length
    whole = offset >= size
    if offset > start or whole:
        progress.append((outgoing.id, offset, whole))
    return whole


def _read_range(store: Store, outgoing: Outgoing, offset: int, length: int) -> bytes:
    """``length`` bytes of an outgoing file from any ``offset``: the wire
    chunks (sealed records) it spans, cut."""
    out = bytearray()
    while len(out) < length:
        at = offset + len(out)
        start = at - at % FILE_CHUNK_SIZE
        data = store.transfers.read_file_chunk(
            outgoing.id, start, FILE_CHUNK_SIZE, contact_id=outgoing.contact_id
        )
        if len(data) <= at - start:
            raise StoreError(f"file {outgoing.id.hex()} is shorter than its size")
        out += data[at - start : at - start + length - len(out)]
    return bytes(out)


def has_deposit_work(store: Store, contact_id: int) -> bool:
    """In the worker: whether anything waits that a deposit would carry."""
    return store.mailbox.has_undeposited(contact_id) or store.mailbox.has_owed(contact_id)
