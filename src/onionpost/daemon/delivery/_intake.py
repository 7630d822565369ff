"""What a contact's records do to our store: one set of rules for a live
session and for an opened envelope alike (STYLE 18).

Every method is synchronous and runs in the store worker, inside the
transaction the caller opens (the group commit's, or the envelope's own).
Outcomes are plain records; the async side turns them into replies to the
peer and events for the local API.

The bounds a contact cannot pass are applied here: unread texts
(``max_unread``), file size, transfers at once and the disk budget.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from onionpost._logs import contact_ref
from onionpost.daemon.delivery._introductions import RecordVerdict, introduced_record
from onionpost.errors import (
    FileTooLargeError,
    GroupError,
    GroupMissingParentError,
    HashMismatchError,
    NoSpaceError,
    NotFoundError,
    OnionpostError,
    QuotaError,
    RemoteProtocolError,
    StoreError,
)
from onionpost.limits import MAX_GROUP_LOG_OPS
from onionpost.proto import messages
from onionpost.proto.address import OnionAddress
from onionpost.proto.groups import GroupLog, Operation, OpKind, PostDecision
from onionpost.store import Contact, Direction, Kind, Store, Stored, ever_members

__all__ = [
    "Applied",
    "Bounds",
    "ChunkOutcome",
    "EnvelopeReceipt",
    "GroupFetchOutcome",
    "GroupOfferOutcome",
    "GroupOpsOutcome",
    "GroupTextOutcome",
    "Intake",
    "OfferOutcome",
    "admit",
    "unfit_mailbox",
]

log = logging.getLogger("onionpost.daemon")

ReadAnnouncement = Callable[[OnionAddress, bytes], tuple[OnionAddress | None, int]]


@dataclass(frozen=True, slots=True)
class Bounds:
    max_unread: int
    max_file_size: int
    max_disk_use: int
    max_transfers: int


@dataclass(frozen=True, slots=True)
class OfferOutcome:
    """FileAccept(offset), FileComplete (complete), or FileReject(reject)."""

    offset: int = 0
    complete: bool = False
    reject: int | None = None
    completed_now: bool = False  # this offer finished it (a new message)


@dataclass(frozen=True, slots=True)
class ChunkOutcome:
    """What a live chunk did: a FileCancel(cancel) or FileReject(reject) to
    send, or progress (``end`` of ``size``) and, when the file is complete, its row."""

    end: int = 0
    size: int = 0
    cancel: int | None = None
    reject: int | None = None
    complete: Stored | None = None


@dataclass(frozen=True, slots=True)
class EnvelopeReceipt:
    """The envelope being applied: its prekey is spent and its id noted in the
    same transaction as what it carried (mailbox.md §Owner)."""

    envelope_id: bytes
    key_id: bytes
    kind: int
    one_time_kind: int


class GroupTextOutcome(enum.Enum):
    """What a group text did (groups.md §6.1): stored (ack it), or held while
    its operations are fetched, or refused (nothing stored, not acked)."""

    STORED = "stored"  # new: ack it
    REPEATED = "repeated"  # stored before: ack it again
    FETCH = "fetch"  # heads we lack: fetch from its author, then decide again
    UNKNOWN_GROUP = "unknown-group"  # no log of that group here: fetch it whole
    NOT_A_MEMBER = "not-a-member"
    REMOVED = "removed"
    FULL = "full"  # the unread quota: it comes again

    @property
    def acked(self) -> bool:
        return self in (GroupTextOutcome.STORED, GroupTextOutcome.REPEATED)

    @property
    def waits(self) -> bool:
        return self in (GroupTextOutcome.FETCH, GroupTextOutcome.UNKNOWN_GROUP)


@dataclass(frozen=True, slots=True)
class GroupOfferOutcome:
    """What a group's file offer did (groups.md §6.1): accepted as the group's
    and answered as a FileOffer is (``offer``), or, ``check`` saying why,
    held while its operations are fetched or refused (nothing stored)."""

    check: GroupTextOutcome | None = None
    offer: OfferOutcome | None = None

    @property
    def final(self) -> bool:
        """Refused for good: its author is no member at those heads, or removed."""
        return self.check in (GroupTextOutcome.NOT_A_MEMBER, GroupTextOutcome.REMOVED)


@dataclass(frozen=True, slots=True)
class GroupOpsOutcome:
    """What a GroupOps did: the operations added, whether to fetch (parents
    we lack, or a group we do not hold yet), or why it was refused."""

    added: tuple[Operation, ...] = ()
    fetch: bool = False
    refused: str | None = None
    # A group we do not hold, whose operations so far make the sender or us
    # no member yet: keep them and ask for more at these heads.
    joining: tuple[bytes, ...] = ()
    heads: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True)
class GroupFetchOutcome:
    """The answer to a GroupFetch: the operations the asker lacks, and whether
    to ask it back (it named heads we lack)."""

    ops: tuple[bytes, ...] = ()
    ask: bool = False


@dataclass(slots=True)
class Applied:
    """What applying an opened envelope did."""

    rows: list[Stored] = field(default_factory=list)
    delivered: list[bytes] = field(default_factory=list)
    read: list[bytes] = field(default_factory=list)
    mailbox_changed: bool = False
    group_ops: list[Operation] = field(default_factory=list)
    # A move to a new address the envelope carried (the first; trust.md §6),
    # decided after the envelope's transaction.
    rotation: messages.TrustRotation | None = None


def admit(peer: Contact, record: object) -> RecordVerdict:
    """What a record from ``peer`` does, the one decision for a live session's
    records and for those of an envelope opened from our mailbox: a
    contact's are handled (each by its rules); a member a group introduced
    (groups.md §9) has only those of :func:`introduced_record`'s table
    handled, the others refused (nothing stored, not acknowledged) or, what
    a contact's daemon sends by itself, ignored."""
    if not peer.introduced:
        return RecordVerdict.HANDLE
    return introduced_record(record)


def unfit_mailbox(
    mailbox: OnionAddress | None, own: OnionAddress, is_contact: Callable[[OnionAddress], bool]
) -> str | None:
    """Why a contact may not name ``mailbox`` as its mailbox, or None if it may
    (mailbox.md §Announcement). Dialing it as a mailbox would tell that
    endpoint that we are the announcing contact's contact: never our own
    address, nor one of our contacts (the announcing one included)."""
    if mailbox is None:
        return None
    if mailbox == own:
        return "names-us"
    if is_contact(mailbox):
        return "names-a-contact"
    return None


def reject_reason(exc: StoreError) -> int:
    if isinstance(exc, NoSpaceError | QuotaError):
        return messages.FileRejectReason.NO_SPACE
    if isinstance(exc, HashMismatchError):
        return messages.FileRejectReason.HASH_MISMATCH
    if isinstance(exc, FileTooLargeError):
        return messages.FileRejectReason.TOO_LARGE
    return messages.FileRejectReason.DECLINED


class Intake:
    """The rules; see the module docstring."""

    def __init__(
        self,
        store: Store,
        bounds: Bounds,
        read_announcement: ReadAnnouncement | None,
        address: OnionAddress,
    ) -> None:
        self._store = store
        self._address = address
        self._bounds = bounds
        self._read_announcement = read_announcement

    def __repr__(self) -> str:
        return "Intake()"

    # -- texts and marks -----------------------------------------------------------------

    def texts(
        self, contact_id: int, texts: Sequence[messages.Text], now: int, *, whole: bool
    ) -> tuple[int, list[bytes]]:
        """Store what the unread quota allows of ``texts``: how many of them
        (from the start) are stored, new or repeated, and the new ones' ids.
        ``whole``: all of them or QuotaError (an envelope waits at the mailbox)."""
        store = self._store
        room = self._bounds.max_unread - store.messages.unread_count(contact_id, kind=Kind.TEXT)
        if whole and len(texts) > room:
            raise QuotaError(
                "too many unread texts from this contact",
                quota="unread",
                limit=self._bounds.max_unread,
            )
        new: list[bytes] = []
        stored = 0
        for text in texts:
            if room <= 0:
                # A repeat would cost nothing, but it cannot be told apart
                # without storing it: the sender sends it again later.
                break
            if store.messages.store_text(
                contact_id,
                text.id,
                text.created_ms,
                text.body,
                text.content_type,
                now,
                label=text.label,
            ):
                new.append(text.id)
                room -= 1
            stored += 1
        return stored, new

    # -- team channels (groups.md §6) ----------------------------------------------------

    @property
    def _me(self) -> bytes:
        return self._address.public_key

    def _peer_key(self, contact_id: int) -> bytes | None:
        contact = self._store.contacts.contact_by_id(contact_id)
        return None if contact is None else contact.address.public_key

    def _may_post(
        self, contact: Contact | None, record: messages.GroupText | messages.GroupFileOffer
    ) -> GroupTextOutcome | None:
        """None when ``may_post`` accepts the record's author at the heads it
        names; else what to do (fetch, or refuse)."""
        groups = self._store.groups
        if contact is None or not groups.known(record.group_id):
            return GroupTextOutcome.UNKNOWN_GROUP
        check = groups.check_post(record.group_id, contact.address.public_key, record.head_list())
        if check.decision is PostDecision.FETCH:
            return GroupTextOutcome.FETCH
        if check.decision is not PostDecision.ACCEPT:
            return GroupTextOutcome(check.decision.value)
        return None

    def group_text(self, contact_id: int, text: messages.GroupText, now: int) -> GroupTextOutcome:
        """Store a group text as its group's once ``may_post`` accepts its
        author at the heads it names; else say what to do (fetch, or refuse:
        nothing stored)."""
        groups = self._store.groups
        contact = self._store.contacts.contact_by_id(contact_id)
        refused = self._may_post(contact, text)
        if refused is not None:
            return refused
        assert contact is not None
        heads = text.head_list()
        unread = self._store.messages.unread_count(contact_id, kind=Kind.TEXT)
        if unread >= self._bounds.max_unread:
            return GroupTextOutcome.FULL
        new = groups.store_text(
            contact, text.group_id, heads, text.id, text.created_ms, text.body,
            text.content_type, now, label=text.label,
        )  # fmt: skip
        return GroupTextOutcome.STORED if new else GroupTextOutcome.REPEATED

    def group_offer(
        self,
        contact_id: int,
        offer: messages.GroupFileOffer,
        now: int,
        *,
        wait_for_room: bool = False,
    ) -> GroupOfferOutcome:
        """A file offered to a group: once ``may_post`` accepts its author at
        the heads it names, taken as :meth:`offer` takes a FileOffer and
        recorded as the group's (every offer of it, a resumption's too, is
        checked again); else what to do (fetch, or refuse: nothing stored,
        and what arrived of it before is dropped when refused for good)."""
        contact = self._store.contacts.contact_by_id(contact_id)
        refused = self._may_post(contact, offer)
        if refused is not None:
            done = GroupOfferOutcome(check=refused)
            if done.final:
                # Its author was removed while the file arrived: what arrived goes.
                self._store.transfers.cancel_file(offer.id, contact_id=contact_id)
            return done
        assert contact is not None
        outcome = self.offer(contact_id, offer.file_offer(), now, wait_for_room=wait_for_room)
        if outcome.reject is None:
            self._store.groups.note_file(
                contact, offer.group_id, offer.head_list(), offer.id, offer.created_ms
            )
        return GroupOfferOutcome(offer=outcome)

    def group_ops(
        self,
        contact_id: int,
        record: messages.GroupOps,
        now: int,
        *,
        before: Sequence[bytes] = (),
    ) -> GroupOpsOutcome:
        """Add a contact's operations of a group to its log, all or nothing
        (each checked as groups.md §5 says). A group we do not hold is kept
        only from its create, when the contact and we are both members of
        what the operations make; ``before`` are the operations of such a
        group this session took already (``joining``: not yet a log that
        makes both members, ask for more at ``heads``). A member a group
        introduced (groups.md §9) is heard only on a group it shares with us."""
        if not self._shares(contact_id, record.group_id):
            return GroupOpsOutcome(refused="not-shared")
        try:
            ops = [Operation.decode(data) for data in [*before, *record.ops]]
            if any(op.group_id != record.group_id for op in ops):
                return GroupOpsOutcome(refused="an operation of another group")
            groups = self._store.groups
            if groups.known(record.group_id):
                return GroupOpsOutcome(tuple(groups.apply(record.group_id, ops, now)))
            if ops[0].kind is not OpKind.CREATE:
                return GroupOpsOutcome(fetch=True)
            trial = GroupLog(ops[0])
            for op in ops[1:]:
                if op.hash not in trial:
                    trial.add(op)
            peer = self._peer_key(contact_id)
            state = trial.state
            if peer is None or not state.is_member(peer) or not state.is_member(self._me):
                if len(ops) >= MAX_GROUP_LOG_OPS:
                    return GroupOpsOutcome(refused="a group we are not in")
                # Perhaps an answer cut short before the add of either: ask on.
                return GroupOpsOutcome(joining=tuple(o.encode() for o in ops), heads=trial.heads)
            groups.start(ops[0], now, trial.ordered()[1:])
            return GroupOpsOutcome(tuple(trial.ordered()))
        except GroupMissingParentError:
            return GroupOpsOutcome(fetch=True)
        except GroupError as exc:
            return GroupOpsOutcome(refused=exc.reason.value)

    def _shares(self, contact_id: int, group_id: bytes) -> bool:
        """False only for a member introduced to us (no contact) whose key the
        log of ``group_id`` never made a member, or a group we do not hold."""
        peer = self._store.contacts.contact_by_id(contact_id)
        if peer is None or not peer.introduced:
            return True
        groups = self._store.groups
        return groups.known(group_id) and peer.address.public_key in ever_members(
            groups.log(group_id)
        )

    def group_fetch(self, contact_id: int, record: messages.GroupFetch) -> GroupFetchOutcome:
        """Answer a GroupFetch: what the asker lacks, if it ever was a member
        (a member removed learns of its removal); ask it back when it named
        heads we lack, or a group we do not hold."""
        groups = self._store.groups
        if not self._shares(contact_id, record.group_id):
            return GroupFetchOutcome()
        if not groups.known(record.group_id):
            return GroupFetchOutcome(ask=True)
        log = groups.log(record.group_id)
        peer = self._peer_key(contact_id)
        if peer is None or peer not in ever_members(log):
            return GroupFetchOutcome()
        heads = record.head_list()
        missing = any(h not in log for h in heads)
        return GroupFetchOutcome(tuple(op.encode() for op in log.since(heads)), ask=missing)

    def delivered(self, contact_id: int, ids: Sequence[bytes], now: int) -> list[bytes]:
        """Acks and FileCompletes: a contact can only acknowledge what was sent to it."""
        return self._store.outbox.mark_delivered(list(ids), now, contact_id=contact_id)

    def read(self, contact_id: int, ids: Sequence[bytes], now: int) -> list[bytes]:
        """Read receipts: a contact can only mark read what we sent to it."""
        return self._store.messages.mark_read(
            ids, now, contact_id=contact_id, direction=Direction.OUT
        )

    def announcement(self, contact_id: int, data: bytes) -> bool:
        """A contact's mailbox announcement; whether it changed what we know."""
        if self._read_announcement is None:
            return False
        contact = self._store.contacts.contact_by_id(contact_id)
        if contact is None:
            return False
        try:
            mailbox, version = self._read_announcement(contact.address, data)
        except RemoteProtocolError:
            log.info("event=mailbox_announcement_bad contact=%s", contact_ref(contact_id))
            return False
        unfit = unfit_mailbox(mailbox, self._address, self._is_contact)
        if unfit is not None:
            log.warning(
                "event=mailbox_announcement_refused contact=%s reason=%s",
                contact_ref(contact_id),
                unfit,
            )
            return False
        changed = self._store.mailbox.set_contact_mailbox(contact_id, mailbox, version)
        if changed:
            log.info(
                "event=contact_mailbox contact=%s mailbox=%s",
                contact_ref(contact_id),
                "none" if mailbox is None else "set",
            )
        return changed

    def _is_contact(self, address: OnionAddress) -> bool:
        # A member a group introduced counts: the engine dials none as a mailbox.
        return self._store.contacts.peer_by_address(address) is not None

    # -- files ---------------------------------------------------------------------------

    def offer(
        self, contact_id: int, offer: messages.FileOffer, now: int, *, wait_for_room: bool = False
    ) -> OfferOutcome:
        """A FileOffer: where to resume, complete already, or refused (logged).
        ``wait_for_room``: no room on our disk raises NoSpaceError instead (an
        envelope then waits at the mailbox)."""
        b = self._bounds
        store = self._store
        try:
            with store.transaction():
                offset = store.transfers.begin_file(
                    contact_id,
                    offer.id,
                    offer.created_ms,
                    offer.name,
                    offer.size,
                    offer.blake2b,
                    offer.content_type,
                    now,
                    b.max_file_size,
                    b.max_disk_use,
                    max_transfers=b.max_transfers,
                    label=offer.label,
                )
                done = offset >= offer.size and store.transfers.finish_file(
                    offer.id, now, contact_id=contact_id
                )
        except NoSpaceError as exc:
            if wait_for_room:
                raise
            return self._rejected(contact_id, offer, exc)
        except StoreError as exc:
            return self._rejected(contact_id, offer, exc)
        if offset >= offer.size:
            return OfferOutcome(offset=offset, complete=True, completed_now=done)
        return OfferOutcome(offset=offset)

    @staticmethod
    def _rejected(contact_id: int, offer: messages.FileOffer, exc: StoreError) -> OfferOutcome:
        log.info(
            "event=file_rejected contact=%s id=%s reason=%s",
            contact_ref(contact_id),
            offer.id.hex(),
            type(exc).__name__,
        )
        return OfferOutcome(reject=reject_reason(exc))

    def chunk(self, contact_id: int, chunk: messages.FileChunk, now: int) -> ChunkOutcome:
        """A chunk in a live session, in order (the transfer checks it)."""
        store = self._store
        try:
            store.transfers.write_file_chunk(
                chunk.id,
                chunk.offset,
                chunk.data,
                contact_id=contact_id,
                max_disk=self._bounds.max_disk_use,
                now=now,
            )
        except NotFoundError:
            return ChunkOutcome(cancel=messages.FileRejectReason.UNKNOWN_FILE)
        except StoreError as exc:
            # Disk full or out of order: keep nothing of this chunk, ack nothing;
            # the sender keeps the file and offers it again later.
            log.info(
                "event=chunk_not_stored contact=%s id=%s error=%s",
                contact_ref(contact_id),
                chunk.id.hex(),
                type(exc).__name__,
            )
            return ChunkOutcome(cancel=reject_reason(exc))
        stored = store.messages.message(chunk.id, contact_id=contact_id)
        size = stored.file.size if stored.file is not None else 0
        end = chunk.offset + len(chunk.data)
        if end < size:
            return ChunkOutcome(end=end, size=size)
        try:
            with store.transaction():
                store.transfers.finish_file(chunk.id, now, contact_id=contact_id)
        except StoreError as exc:
            return ChunkOutcome(end=end, size=size, reject=reject_reason(exc))
        return ChunkOutcome(
            end=end, size=size, complete=store.messages.message(chunk.id, contact_id=contact_id)
        )

    def refusal(
        self, contact_id: int, record: messages.FileReject | messages.FileCancel, now: int
    ) -> tuple[Direction | None, list[bytes]]:
        """A FileReject or FileCancel: the direction of the file it names (None:
        nothing exchanged with this contact by that id) and the ids it made
        ``refused`` (a final rejection of a file we sent)."""
        store = self._store
        try:
            stored = store.messages.message(record.id, contact_id=contact_id)
        except NotFoundError:
            return None, []
        if stored.direction == Direction.IN:
            # The contact, sending us a file, gave up on it: drop what arrived.
            if isinstance(record, messages.FileCancel):
                store.transfers.cancel_file(record.id, contact_id=contact_id)
            return Direction.IN, []
        if isinstance(record, messages.FileReject) and record.reason in FINAL_REJECTIONS:
            return Direction.OUT, store.outbox.mark_refused(
                [record.id], now, record.reason, contact_id=contact_id
            )
        return Direction.OUT, []

    # -- an opened envelope --------------------------------------------------------------

    def envelope(
        self,
        contact_id: int,
        records: Sequence[messages.Message | messages.UnknownExtension],
        now: int,
        receipt: EnvelopeReceipt,
    ) -> Applied:
        """Store what an envelope from ``contact_id`` carried, spend its prekey
        and note its id, all in one transaction, and owe the contact the acks.
        Texts over the unread quota fail the whole envelope (QuotaError), and
        so does our disk being full (NoSpaceError): it waits at the mailbox.
        What a member a group introduced may not send is refused as in a live
        session (:func:`admit`): nothing of it stored, not acknowledged."""
        store = self._store
        acks: list[bytes] = []
        new: list[bytes] = []
        outcome = Applied()
        with store.transaction():
            peer = store.contacts.contact_by_id(contact_id)
            # Removed (or dropped) since the envelope was opened: nothing of it
            # is taken; the envelope is spent all the same.
            records = [] if peer is None else self._admitted(peer, records)
            texts = [r for r in records if isinstance(r, messages.Text)]
            stored, new_texts = self.texts(contact_id, texts, now, whole=True)
            new += new_texts
            acks += [t.id for t in texts[:stored]]
            for record in records:
                if isinstance(record, messages.Ack | messages.FileComplete | messages.Read):
                    self._envelope_marks(contact_id, record, now, outcome)
                elif isinstance(record, messages.FileOffer):
                    self._envelope_offer(contact_id, record, now, acks, new)
                elif isinstance(record, messages.FileChunk):
                    self._envelope_part(contact_id, record, now, acks, new)
                elif isinstance(record, messages.MailboxInfo) and self.announcement(
                    contact_id, record.announcement
                ):
                    outcome.mailbox_changed = True
                elif isinstance(record, messages.GroupOps):
                    self._envelope_group_ops(contact_id, record, now, outcome)
                elif isinstance(record, messages.TrustRotation) and outcome.rotation is None:
                    outcome.rotation = record
                elif isinstance(record, messages.GroupFileOffer):
                    self._envelope_group_offer(contact_id, record, now, acks, new)
                elif isinstance(record, messages.GroupText):
                    # After the envelope's operations (a text follows what its
                    # author made before it): unacked unless stored, so it
                    # comes again directly when it cannot be decided here.
                    done = self.group_text(contact_id, record, now)
                    if done.acked:
                        acks.append(record.id)
                    if done is GroupTextOutcome.STORED:
                        new.append(record.id)
                # Anything else (Ping, FileAccept, a mailbox's record) has no
                # meaning in an envelope: ignored.
            if acks:
                store.mailbox.owe(contact_id, "ack", acks, now)
            store.mailbox.use_prekey(receipt.key_id, receipt.kind, receipt.one_time_kind, now)
            store.mailbox.note_envelope(receipt.envelope_id, now)
        outcome.rows = [store.messages.message(i, contact_id=contact_id) for i in new]
        return outcome

    @staticmethod
    def _admitted(
        peer: Contact, records: Sequence[messages.Message | messages.UnknownExtension]
    ) -> list[messages.Message | messages.UnknownExtension]:
        """The records of an envelope from ``peer`` that are handled
        (:func:`admit`, as in a live session); those refused are logged, once
        an envelope."""
        kept, refused = [], []
        for record in records:
            verdict = admit(peer, record)
            if verdict is RecordVerdict.HANDLE:
                kept.append(record)
            elif verdict is RecordVerdict.REFUSE:
                refused.append(type(record).__name__)
        if refused:
            log.info(
                "event=record_refused contact=%s record=%s count=%d "
                "why=introduced-not-a-contact via=mailbox",
                contact_ref(peer.id),
                refused[0],
                len(refused),
            )
        return kept

    def _envelope_group_ops(
        self, contact_id: int, record: messages.GroupOps, now: int, outcome: Applied
    ) -> None:
        done = self.group_ops(contact_id, record, now)
        outcome.group_ops += done.added
        if done.refused is not None:
            log.info(
                "event=group_ops_refused contact=%s why=%s via=mailbox",
                contact_ref(contact_id),
                done.refused,
            )

    def _envelope_marks(
        self,
        contact_id: int,
        record: messages.Ack | messages.FileComplete | messages.Read,
        now: int,
        outcome: Applied,
    ) -> None:
        try:
            with self._store.transaction():
                if isinstance(record, messages.Read):
                    outcome.read += self.read(contact_id, record.ids, now)
                    return
                ids = record.ids if isinstance(record, messages.Ack) else (record.id,)
                outcome.delivered += self.delivered(contact_id, ids, now)
        except NoSpaceError:
            raise
        except OnionpostError as exc:
            log.info(
                "event=mark_failed contact=%s error=%s via=mailbox",
                contact_ref(contact_id),
                type(exc).__name__,
            )

    def _envelope_offer(
        self,
        contact_id: int,
        offer: messages.FileOffer,
        now: int,
        acks: list[bytes],
        new: list[bytes],
    ) -> None:
        result = self.offer(contact_id, offer, now, wait_for_room=True)
        if result.completed_now:
            new.append(offer.id)
        if result.complete:
            acks.append(offer.id)

    def _envelope_group_offer(
        self,
        contact_id: int,
        offer: messages.GroupFileOffer,
        now: int,
        acks: list[bytes],
        new: list[bytes],
    ) -> None:
        done = self.group_offer(contact_id, offer, now, wait_for_room=True)
        if done.offer is None:
            # Its parts that follow find no transfer: it comes again directly.
            log.info(
                "event=group_file_refused contact=%s why=%s via=mailbox",
                contact_ref(contact_id),
                None if done.check is None else done.check.value,
            )
            return
        if done.offer.completed_now:
            new.append(offer.id)
        if done.offer.complete:
            acks.append(offer.id)

    def _complete_file(self, contact_id: int, file_id: bytes) -> bool:
        try:
            stored = self._store.messages.message(file_id, contact_id=contact_id)
        except NotFoundError:
            return False
        return (
            stored.direction == Direction.IN
            and stored.file is not None
            and stored.file.complete
            and stored.state != "receiving"
        )

    def _envelope_part(
        self,
        contact_id: int,
        chunk: messages.FileChunk,
        now: int,
        acks: list[bytes],
        new: list[bytes],
    ) -> None:
        store = self._store
        try:
            with store.transaction():
                held = store.mailbox.write_file_part(
                    chunk.id,
                    chunk.offset,
                    chunk.data,
                    contact_id=contact_id,
                    max_disk=self._bounds.max_disk_use,
                    now=now,
                )
                stored = store.messages.message(chunk.id, contact_id=contact_id)
                size = stored.file.size if stored.file is not None else 0
                if held >= size and store.transfers.finish_file(
                    chunk.id, now, contact_id=contact_id
                ):
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


# Rejections after which a file we sent is ``refused`` for good; the others
# (no room now, transfer dropped) leave it queued for a later offer.
FINAL_REJECTIONS = frozenset(
    {
        messages.FileRejectReason.DECLINED,
        messages.FileRejectReason.TOO_LARGE,
        messages.FileRejectReason.HASH_MISMATCH,
        messages.FileRejectReason.UNKNOWN_FILE,
    }
)
