"""One session with a contact: its failure domain, its sender and receiver.

::

    run_session
    ├── sender     replies first, then owed acks and receipts, our mailbox
    │              announcement, the outbox; keepalives, idle close, silence
    │              (``_sender.py``)
    └── receiver   records in, on the contact's one record budget; texts to
        │          the storer, everything else through the HANDLERS table
        ├── storer received texts, a group per commit, then one Ack
        └── file(id)  one sender per (contact, file) (``_files.py``)

*One session per contact.* When a second session with a contact comes up
(both dialed at once, or the contact redialed before we saw its old one
die), :func:`~onionpost.daemon.delivery._link.keep_new_session` decides which
stays, the same way at both ends; the other ends in order. A contact holds
at most ``MAX_SESSIONS_PER_CONTACT`` at once (the one kept and one ending).

*Exactly once*: the receiver stores a group of texts (idempotent on their
ids) and only then acks it; the sender marks a text delivered on the Ack.
Unacked texts go out again in the next session.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

from onionpost._logs import contact_ref
from onionpost.api import MessageState, StateChange
from onionpost.daemon.delivery import _files, _groups
from onionpost.daemon.delivery._gossip import Gossiped, receive_gossip
from onionpost.daemon.delivery._intake import admit
from onionpost.daemon.delivery._introductions import RecordVerdict
from onionpost.daemon.delivery._link import keep_new_session
from onionpost.daemon.delivery._records import Link, Parts, Session, jitter, now_ms
from onionpost.daemon.delivery._sender import (
    ask_witness,
    refuse_after_move,
    run_sender,
    send_replies,
)
from onionpost.daemon.delivery._trust import (
    Stapled,
    receive_rotation,
    receive_staple,
)
from onionpost.daemon.delivery._views import expected, message_record
from onionpost.daemon.delivery._witness import MAX_COSIGN_PER_SESSION
from onionpost.errors import (
    CloseCode,
    OnionpostError,
    RemoteProtocolError,
    TransportError,
    VerificationError,
)
from onionpost.host import Shed, code_name, first_failure, reason
from onionpost.limits import MAX_ACK_IDS
from onionpost.proto import messages
from onionpost.proto.trust_session import Pace, PassOn, TrustRecord, pass_on
from onionpost.store import Stored

__all__ = ["MAX_SESSIONS_PER_CONTACT", "delivered", "run_move_only", "run_session"]

log = logging.getLogger("onionpost.daemon")

MAX_SESSIONS_PER_CONTACT: Final = 2
# Received texts are stored in groups: one commit (one fsync) for what arrives
# within this window, up to this many, then one Ack for the group.
TEXT_GROUP_SECONDS: Final = 0.003
TEXT_GROUP_MAX: Final = MAX_ACK_IDS
# How long a closing session may take to say goodbye.
CLOSE_GRACE: Final = 2.0
# How long the texts already received may take to be stored at the end of a session.
DRAIN_GRACE: Final = 5.0
# How long a session with a revoked contact waits for its move (run_move_only),
# and for each of its records: a move comes at a session's start, with all the
# contact sends first, so a contact quiet that long sends none.
MOVE_ONLY_SECONDS: Final = 60.0
MOVE_ONLY_IDLE: Final = 10.0


def _admit(parts: Parts, link: Link, session: Session) -> bool:
    """Whether ``session`` may run beside the contact's others; the one that
    loses a crossing is told to close."""
    if len(link.sessions) >= MAX_SESSIONS_PER_CONTACT:
        return False
    for old in link.sessions:
        if old.closing is not None:
            continue
        keep = keep_new_session(
            ours=parts.address.public_key,
            theirs=link.contact.address.public_key,
            old_initiated_by_us=old.initiator,
            new_initiated_by_us=session.initiator,
        )
        if not keep:
            return False
        parts.counters.superseded += 1
        old.close(Shed("superseded", code=CloseCode.NORMAL, reason="superseded"))
        for job in link.files.values():
            if job.session is old:
                job.stopped = True
    return True


async def run_session(parts: Parts, link: Link, session: Session) -> None:
    """One session: its own failure domain. Never raises but Cancelled."""
    channel = session.channel
    if not _admit(parts, link, session):
        if session.initiator:
            link.state.dial_ended()
        parts.counters.superseded += 1
        log.info("event=session_superseded contact=%s", contact_ref(link.contact.id))
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
            await channel.aclose(CloseCode.NORMAL)
        return
    session.last_activity = session.last_ping = session.last_heard = trio.current_time()
    link.sessions.append(session)
    link.state.session_up()
    if len(link.sessions) == 1:
        link.since_ms = now_ms()
    _note_seen(parts, link)
    parts.publish_peer(link)
    log.info(
        "event=session_up contact=%s direction=%s",
        contact_ref(link.contact.id),
        "out" if session.initiator else "in",
    )
    failure: BaseException | None = None
    cancelled = False
    try:
        with trio.CancelScope() as scope:
            link.scopes.add(scope)
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(run_sender, parts, link, session)
                    await _receiver(parts, link, session, nursery)
                    nursery.cancel_scope.cancel()
            except* Exception as group:
                failure = first_failure(group)
            finally:
                link.scopes.discard(scope)
        cancelled = scope.cancelled_caught
        # The channel knows best why it failed: a task cancelled while the
        # channel was being aborted loses the peer's error on its way out.
        if isinstance(channel.failure, RemoteProtocolError) and not isinstance(failure, Shed):
            failure = channel.failure
    except BaseException as exc:
        cancelled = _cancellation(exc)
        raise
    finally:
        link.sessions.remove(session)
        code = CloseCode.GOING_AWAY if cancelled and failure is None else CloseCode.NORMAL
        if isinstance(failure, Shed):
            code = failure.code
        elif isinstance(failure, RemoteProtocolError):
            # The peer broke a rule we check above the session (a record
            # with no place here): it is told which, as by the session.
            code = CloseCode(failure.close_code)
        elif failure is not None and not isinstance(failure, TransportError):
            code = CloseCode.INTERNAL_ERROR
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
            if isinstance(failure, Shed):
                # Say what we stored before saying why we close.
                with contextlib.suppress(OnionpostError, trio.ClosedResourceError):
                    await send_replies(session)
            await channel.aclose(code)
        _groups.drop_waiting(link, session)
        if session.moved_told:
            refuse_after_move(parts, link.contact.id)
        _ended(parts, link, session, failure)


async def run_move_only(parts: Parts, link: Link, session: Session) -> None:
    """A session a contact we refuse as revoked opened (trust.md §7.4),
    taken for its move alone (§6.3): a revoked address may move away, its
    agency vouching for the new one, and a contact with no mailbox can only
    be told in a session. Its TrustStaple and TrustRotation are decided as
    in any session; nothing else it sends is taken (stored, acknowledged,
    answered), nothing is sent to it, and it is no session up for the
    contact. It ends once a move was decided (accepted or refused), when
    the contact closes or is quiet for MOVE_ONLY_IDLE, or after
    MOVE_ONLY_SECONDS; every record costs a token of the contact's budget.
    Not moved, it is closed as refused (AUTHENTICATION_FAILED): the contact
    counts a failure and backs off. Nothing else is ever sent to it.
    Never raises but Cancelled."""
    channel = session.channel
    contact = contact_ref(link.contact.id)
    log.info("event=session_move_only contact=%s", contact)
    channel.keep_silent()  # no Pong: to the contact, nothing says it is taken
    counted = 0
    try:
        with trio.move_on_after(MOVE_ONLY_SECONDS):
            async with trio.open_nursery() as nursery:
                while not session.rotation_received:
                    record = None
                    with (
                        trio.move_on_after(MOVE_ONLY_IDLE),
                        contextlib.suppress(trio.EndOfChannel, TransportError),
                    ):
                        record = await channel.receive()
                    if record is None:
                        break
                    total = channel.records_received
                    await link.bucket.take(total - counted)
                    counted = total
                    if isinstance(record, messages.TrustStaple):
                        await _on_trust_staple(parts, link, session, nursery, record)
                    elif isinstance(record, messages.TrustRotation):
                        await _on_trust_rotation(parts, link, session, nursery, record)
                nursery.cancel_scope.cancel()
    except* Exception as group:
        # Its own failure domain: whatever went wrong ends it, logged; a
        # failure we did not expect (a bug) with its traceback, as a session's.
        failure = first_failure(group)
        if expected(failure):
            log.info(
                "event=session_move_only_failed contact=%s reason=%s", contact, reason(failure)
            )
        else:
            log.warning(
                "event=session_error contact=%s error=%s",
                contact,
                type(failure).__name__,
                exc_info=failure,
            )
    finally:
        moved = link.contact.address != channel.peer
        # Not moved: closed as refused (the contact counts a failure and
        # backs off), not as a session ended in order.
        code = CloseCode.NORMAL if moved else CloseCode.AUTHENTICATION_FAILED
        with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_GRACE):
            await channel.aclose(code)
    log.info("event=session_move_only_ended contact=%s moved=%s", contact, "yes" if moved else "no")


def _note_seen(parts: Parts, link: Link) -> None:
    """Record that the contact was there (``contact list``'s "last seen"),
    at a session's start and end; nobody waits for it."""
    if parts.writer.busy():
        return
    contact_id, when = link.contact.id, now_ms()
    parts.writer.write_later(
        _seen_noted,
        lambda: parts.store.contacts.note_contact_seen(contact_id, when, success=True),
    )


def _seen_noted(_: object) -> None:
    return None


def _cancellation(exc: BaseException) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return all(_cancellation(e) for e in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def _ended(parts: Parts, link: Link, session: Session, failure: BaseException | None) -> None:
    now = trio.current_time()
    peer_code = session.channel.close_code
    if isinstance(failure, Shed) and failure.code is CloseCode.NORMAL:
        failure = None  # we closed it on purpose, in order (idle, superseded)
    link.state.session_down(now, going_away=peer_code == CloseCode.GOING_AWAY)
    if session.proven:
        link.state.seen(now)
        _note_seen(parts, link)
    if not link.sessions:
        link.since_ms = now_ms()  # unreachable from now
    contact = contact_ref(link.contact.id)
    orderly = failure is None and peer_code in (None, CloseCode.NORMAL, CloseCode.GOING_AWAY)
    if orderly and (session.proven or not session.initiator or link.sessions):
        # Ended in order; or, while another session with the contact is up,
        # the contact closed this one (it lost a crossing): nothing failed.
        log.info("event=session_down contact=%s reason=closed", contact)
        parts.publish_peer(link)
        link.fire()
        return
    if orderly:
        failure = TransportError("refused", reason="refused")
    parts.counters.session_failures += 1
    if failure is None:
        why = f"peer-closed-{code_name(CloseCode, peer_code)}"
    elif isinstance(failure, Shed):
        why = failure.reason
    elif session.initiator and not session.proven and isinstance(failure, TransportError):
        # The responder decides after the handshake; one that drops us
        # before saying anything has refused us (or removed us).
        why = "refused"
    else:
        why = reason(failure)
    if failure is not None and not expected(failure):
        # A bug of ours: worth its traceback, once, and still only this session.
        log.warning(
            "event=session_error contact=%s error=%s",
            contact,
            type(failure).__name__,
            exc_info=failure,
        )
    delay = link.state.dial_failed(now, why, jitter())
    log.info("event=session_down contact=%s reason=%s retry_in=%.1f", contact, why, delay)
    parts.publish_peer(link)
    link.fire()


# -- receiving ----------------------------------------------------------------------------


async def _receiver(parts: Parts, link: Link, session: Session, nursery: trio.Nursery) -> None:
    channel = session.channel
    send_texts, receive_texts = trio.open_memory_channel[messages.Text](TEXT_GROUP_MAX)
    drained = trio.Event()
    nursery.start_soon(_store_texts, parts, link, session, receive_texts, drained)
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
            # Every record the session decrypted costs a token of the
            # contact's one budget: Pings and ignored extensions too.
            total = channel.records_received
            await link.bucket.take(total - counted)
            counted = total
            if not session.proven:
                session.proven = True
                link.state.proven()
            session.last_heard = trio.current_time()
            session.unanswered_since = None
            if not isinstance(record, messages.Pong):
                session.last_activity = trio.current_time()
            if not _admitted(link, session, record):
                continue
            if isinstance(record, messages.Text):
                # The storer stops taking texts once the session is closing.
                with contextlib.suppress(trio.BrokenResourceError):
                    await send_texts.send(record)
                    session.texts_taken += 1
                continue
            if isinstance(record, messages.TrustRotation):
                # A move ends the session: the texts sent before it are
                # stored and acked first (the old address sends what waits
                # before its move, trust.md §6), within the drain's grace.
                with trio.move_on_after(DRAIN_GRACE):
                    while session.texts_stored < session.texts_taken and not drained.is_set():
                        seen = session.texts_kick.generation
                        if session.texts_stored < session.texts_taken:
                            await session.texts_kick.wait(since=seen)
            handler = HANDLERS.get(type(record))
            if handler is None:
                # A mailbox's record (tags 32..45) has no place between endpoints.
                raise RemoteProtocolError(
                    f"{type(record).__name__} in a session between endpoints",
                    close_code=CloseCode.BAD_MESSAGE,
                )
            await handler(parts, link, session, nursery, record)
    # The peer closed: let the texts already received be stored and acked.
    with trio.move_on_after(DRAIN_GRACE):
        await drained.wait()
    if broken is not None:
        raise broken


def _admitted(link: Link, session: Session, record: object) -> bool:
    """Whether a record is handled, as the intake decides (``admit``, the
    same for an envelope): a contact's are; from a member a group introduced
    (groups.md §9), group records and what the session needs are, a
    one-to-one text or file is refused (nothing stored, not acknowledged:
    its sender keeps it until the user adds it as a contact, or it expires),
    logged once a session; what a contact's daemon sends by itself is
    dropped quietly. The session goes on either way."""
    verdict = admit(link.contact, record)
    if verdict is RecordVerdict.REFUSE:
        if not session.introduced_refused:
            log.info(
                "event=record_refused contact=%s record=%s why=introduced-not-a-contact",
                contact_ref(link.contact.id),
                type(record).__name__,
            )
        session.introduced_refused += 1
    return verdict is RecordVerdict.HANDLE


async def _store_texts(
    parts: Parts,
    link: Link,
    session: Session,
    texts: trio.MemoryReceiveChannel[messages.Text],
    drained: trio.Event,
) -> None:
    """Store received texts a group at a time, then ack the group.

    The Ack goes out only after the group's commit, so exactly-once holds;
    the commit is not abandoned when cancelled, so a group is never half
    stored. Writing the Ack before taking the next group means a peer that
    does not read stops being read.
    """
    contact_id = link.contact.id
    async with texts:
        async for first in texts:
            await trio.sleep(TEXT_GROUP_SECONDS)  # let the rest of a burst arrive
            group = [first]
            while len(group) < TEXT_GROUP_MAX:
                try:
                    group.append(texts.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            stored, new = await parts.writer.write(
                parts.intake.texts, contact_id, group, now_ms(), whole=False
            )
            parts.counters.texts_received += len(new)
            if stored:
                await session.reply(messages.Ack(tuple(t.id for t in group[:stored])))
            if new and parts.hub.wants("message"):
                rows = await parts.worker(_rows, parts, contact_id, new)
                for row in rows:
                    parts.hub.publish(message_record(row))
            session.texts_stored += len(group)
            session.texts_kick.fire()
            if stored < len(group):
                # The sender writes the Ack above, then closes the session;
                # what arrives meanwhile is dropped, unacked (it comes again).
                session.close(
                    Shed(
                        "too many unread texts from this contact",
                        code=CloseCode.QUOTA_EXCEEDED,
                        reason="unread-quota",
                    )
                )
                break
    drained.set()


def _rows(parts: Parts, contact_id: int, ids: Sequence[bytes]) -> list[Stored]:
    return [parts.store.messages.message(i, contact_id=contact_id) for i in ids]


async def delivered(parts: Parts, link: Link, ids: Sequence[bytes]) -> None:
    """Acks and FileCompletes: a contact can only acknowledge what was sent to it."""
    parts.sent.settled(ids)  # no 'sent' mark: delivered says it
    changed = await parts.writer.write(parts.intake.delivered, link.contact.id, ids, now_ms())
    parts.counters.texts_acked += len(changed)
    for message_id in changed:
        job = link.files.get(message_id)
        if job is not None:
            job.stopped = True
        parts.hub.publish(StateChange(message_id.hex(), MessageState.DELIVERED))


# -- the handlers -------------------------------------------------------------------------


async def _on_ack(parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.Ack) -> None:
    await delivered(parts, link, r.ids)


async def _on_complete(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.FileComplete
) -> None:
    await delivered(parts, link, (r.id,))


async def _on_read(parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.Read) -> None:
    changed = await parts.writer.write(parts.intake.read, link.contact.id, r.ids, now_ms())
    for message_id in changed:
        parts.hub.publish(StateChange(message_id.hex(), MessageState.READ))


async def _on_offer(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.FileOffer
) -> None:
    await _files.on_offer(parts, link, s, r)


async def _on_accept(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.FileAccept
) -> None:
    await _files.on_accept(parts, link, s, n, r)


async def _on_chunk(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.FileChunk
) -> None:
    await _files.on_chunk(parts, link, s, r)


async def _on_refusal(
    parts: Parts,
    link: Link,
    s: Session,
    n: trio.Nursery,
    r: messages.FileReject | messages.FileCancel,
) -> None:
    await _files.on_refusal(parts, link, r)


async def _on_mailbox_info(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.MailboxInfo
) -> None:
    if await parts.writer.write(parts.intake.announcement, link.contact.id, r.announcement):
        contact = await parts.worker(parts.store.contacts.contact_by_id, link.contact.id)
        if contact is not None:
            link.contact = contact
            link.fire()


async def _on_log_cosign(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.LogCosign
) -> None:
    """The contact asks us to witness its log: at most a few times a session."""
    if parts.witness is None or s.cosigns_answered >= MAX_COSIGN_PER_SESSION:
        return
    s.cosigns_answered += 1
    try:
        answer = await parts.worker(parts.witness.answer, parts.store, link.contact, r, now_ms())
    except VerificationError as exc:
        log.info("event=witness_refused contact=%s what=%s", contact_ref(link.contact.id), exc.what)
        return
    await s.reply(answer)
    await ask_witness(parts, link, s)


async def _on_log_cosigned(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.LogCosigned
) -> None:
    """The contact's answer to our LogCosign; one answer per request sent."""
    sent, s.cosign_sent = s.cosign_sent, None
    if parts.witness is None or sent is None:
        return
    try:
        again = await parts.worker(
            parts.witness.settle, parts.store, link.contact, r, sent, now_ms()
        )
    except VerificationError as exc:
        log.info(
            "event=witness_answer_refused contact=%s what=%s",
            contact_ref(link.contact.id),
            exc.what,
        )
        return
    if again is not None:
        s.cosign_sent = again
        await s.reply(again)


async def _on_trust_staple(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.TrustStaple
) -> None:
    """The contact's endorsement (trust.md §7.1)."""
    await _on_trust_record(parts, link, s.staples_in, r, TrustRecord.STAPLE, receive=receive_staple)


async def _on_trust_gossip(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.TrustGossip
) -> None:
    """What the contact holds of an agency (trust.md §7.2)."""
    await _on_trust_record(parts, link, s.gossip_in, r, TrustRecord.GOSSIP, receive=receive_gossip)


async def _on_trust_record(
    parts: Parts,
    link: Link,
    pace: Pace,
    r: messages.TrustStaple | messages.TrustGossip,
    kind: TrustRecord,
    *,
    receive: Callable[..., Stapled | Gossiped],
) -> None:
    """A staple or a gossip record: as many as the session's pace lets
    through, the rest ignored; each decided on and recorded in the worker
    (``receive``), the refusals then in force applied, and what we now hold
    newer passed on to the contacts we have sessions with as
    :func:`~onionpost.proto.trust_session.pass_on` says (§7.2)."""
    if not pace.take(trio.current_time()):
        log.info(
            "event=trust_%s_ignored contact=%s why=pace", kind.value, contact_ref(link.contact.id)
        )
        return
    done = await parts.worker(
        receive,
        parts.store,
        link.contact,
        r,
        now_ms(),
        required=parts.policy.require_endorsement,
        cache=parts.trust_cache,
    )
    parts.apply_refusals(done.refusals)
    step = pass_on(
        kind, new_list=done.new_list, new_checkpoint=done.new_checkpoint, own_agency=done.own_agency
    )
    if step is PassOn.RESTAPLE:
        parts.restaple()
    elif step is PassOn.REGOSSIP:
        parts.regossip()


async def _on_trust_rotation(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.TrustRotation
) -> None:
    """The contact moves to a new address (trust.md §6): at most one a
    session. Accepted, this session (with the address it leaves) ends and the
    new address is dialled; refused, nothing changes and the session goes on."""
    if s.rotation_received:
        return
    s.rotation_received = True
    before = link.contact
    moved = await parts.worker(
        receive_rotation, parts.store, before, r, now_ms(), parts.trust_cache
    )
    if moved is not None:
        parts.moved(before, moved)  # ends this session: nothing may follow here


async def _on_label_limit(
    parts: Parts, link: Link, s: Session, n: trio.Nursery, r: messages.LabelLimit
) -> None:
    """The highest labels the contact accepts: what we send it is held to them."""
    await parts.writer.write(
        parts.store.contacts.set_label_limit, link.contact.id, list(r.labels), advertised=True
    )
    log.info("event=label_limit contact=%s labels=%d", contact_ref(link.contact.id), len(r.labels))


async def _ignore(parts: Parts, link: Link, s: Session, n: trio.Nursery, r: object) -> None:
    """Ping (the session answers it), Pong (its proof of acceptance is all it
    is for), Close."""


# Each takes the record of the type it is filed under (hence Any here).
Handler = Callable[[Parts, Link, Session, trio.Nursery, Any], Awaitable[None]]

# What each record a contact may send in a session does; anything else is
# refused with BAD_MESSAGE (spec §5).
HANDLERS: Final[dict[type, Handler]] = {
    messages.Ack: _on_ack,
    messages.Read: _on_read,
    messages.FileOffer: _on_offer,
    messages.FileAccept: _on_accept,
    messages.FileChunk: _on_chunk,
    messages.FileComplete: _on_complete,
    messages.FileReject: _on_refusal,
    messages.FileCancel: _on_refusal,
    messages.MailboxInfo: _on_mailbox_info,
    messages.LogCosign: _on_log_cosign,
    messages.LogCosigned: _on_log_cosigned,
    messages.GroupOps: _groups.on_group_ops,
    messages.GroupFetch: _groups.on_group_fetch,
    messages.GroupText: _groups.on_group_text,
    messages.GroupFileOffer: _groups.on_group_file_offer,
    messages.TrustStaple: _on_trust_staple,
    messages.TrustGossip: _on_trust_gossip,
    messages.TrustRotation: _on_trust_rotation,
    messages.LabelLimit: _on_label_limit,
    messages.Ping: _ignore,
    messages.Pong: _ignore,
    messages.Close: _ignore,
}
