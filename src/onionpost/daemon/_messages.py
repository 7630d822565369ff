"""The local API's messages: sends to one contact, what is stored, and reads.

Sends are idempotent on their id: the client chooses a message's id, and
the same ``send_text``/``send_file`` again (its answer was lost: the daemon
was slow, the connection cut) finds the message queued under that id and
answers as the first did; the store refuses the id for another contact or
another content. Two sends of one id run one after the other. Delivery
itself (dialing, sessions, exactly once, quotas) is the engine's.

Every send asks first for the label it carries (:meth:`MessageHandlers.label_for`):
the contact's limits, and whether this home moved away and told it
(trust.md §6.5).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import trio

from onionpost import api
from onionpost.daemon import _labels
from onionpost.daemon._common import now_ms, parse_id
from onionpost.daemon._contacts import contact_named, introduced
from onionpost.daemon._groups import GroupHandlers
from onionpost.daemon.delivery import DeliveryEngine, message_record, moved_refusal
from onionpost.errors import ConfigError, NotFoundError, UnknownContactError
from onionpost.host import StoreWorker
from onionpost.proto import messages as m
from onionpost.proto.labels import LabelPolicy
from onionpost.store import Contact, Direction, Store, Stored

__all__ = ["MessageHandlers"]


class MessageHandlers:
    """``send_text``, ``send_texts``, ``send_file``, ``forward``, ``inbox``,
    ``outbox``, ``message``, ``mark_read``, ``export_file`` and ``retry``."""

    def __init__(  # noqa: PLR0917 - the parts it links
        self,
        store: Store,
        engine: DeliveryEngine,
        worker: StoreWorker,
        labels: LabelPolicy,
        groups: GroupHandlers,
        max_file_size: int,
    ) -> None:
        self._store = store
        self._engine = engine
        self._worker = worker
        self._labels = labels
        self._groups = groups
        self._max_file_size = max_file_size
        self._sending: dict[bytes, trio.Event] = {}  # id -> set when its send ends
        # Whether this home announces a move (trust.md §6): read once, set by
        # moved(), so that a send asks the store about it only then.
        self._moving: bool | None = None

    def moved(self) -> None:
        """This home announced a move: sends ask whether their contact was told."""
        self._moving = True

    async def contact_id(self, name: str) -> int:
        """A contact's id by name (or onion address, :func:`contact_named`):
        from the engine's memory when it runs (the send path asks for it on
        every text), else the store (which raises UnknownContactError)."""
        known = self._engine.contact_id(name)
        if known is not None:
            return known
        try:
            contact: Contact = await self._worker(contact_named, self._store, name)
        except UnknownContactError:
            refusal = await self._worker(self._not_a_contact, name)
            if refusal is not None:
                raise ConfigError(refusal) from None
            raise
        return contact.id

    def _not_a_contact(self, name: str) -> str | None:
        """Why ``name``, a member a group introduced, cannot be written to
        directly (groups.md §9); None if it is none."""
        peer = introduced(self._store, name)
        if peer is None or peer.introduced_group is None:
            return None
        groups = self._store.groups
        group = (
            groups.log(peer.introduced_group).state.name
            if groups.known(peer.introduced_group)
            else peer.introduced_group.hex()
        )
        return (
            f"{peer.name!r} was introduced by the group {group!r}, not a contact: "
            "add its card to write to it directly"
        )

    @asynccontextmanager
    async def _one_send(self, message_id: bytes) -> AsyncIterator[None]:
        """Sends of one id, one at a time: a resent request that arrives while
        the first still runs waits for it, then finds its message."""
        # No lock: the usual send, of an id nobody else sends, takes no
        # scheduling pass here.
        while (running := self._sending.get(message_id)) is not None:
            await running.wait()
        done = self._sending[message_id] = trio.Event()
        try:
            yield
        finally:
            del self._sending[message_id]
            done.set()

    async def _check_not_moved(self, contact_id: int, name: str) -> None:
        """ConfigError if this home has moved and ``contact_id`` was told of it:
        the contact takes nothing from this address now (trust.md §6.5)."""
        if self._moving is None:
            self._moving = await self._worker(lambda: self._store.trust.own_rotation() is not None)
        if not self._moving:
            return
        refusal = await self._worker(moved_refusal, self._store, contact_id, name)
        if refusal is not None:
            raise ConfigError(refusal)

    async def _label_for(self, contact_id: int, name: str, text: str | None) -> str:
        """The label a send to ``contact_id`` carries (``text`` or the default),
        checked against what the contact accepts: LabelError (spec.md §5.10).
        Every send asks it first, so a send to a contact told of our move
        (trust.md §6) is refused here: it could never reach it from this home."""
        await self._check_not_moved(contact_id, name)
        label = self._labels.label(text)
        # Every send asks: the limits are read from memory when they can be.
        limits = self._store.contacts.cached_label_limits(contact_id)
        if limits is None:
            limits = await self._worker(self._store.contacts.label_limits, contact_id)
        _labels.check_limits(self._labels, limits, name, label)
        return label.text

    async def send_text(self, request: api.SendText) -> api.Queued:
        contact_id = await self.contact_id(request.contact)
        label = await self._label_for(contact_id, request.contact, request.label)
        message_id = os.urandom(16) if request.id is None else parse_id(request.id)
        text = m.Text(message_id, now_ms(), request.body, request.content_type, label)
        async with self._one_send(message_id):
            await self._engine.queue_text(contact_id, text)
        return api.Queued(message_id.hex(), api.MessageState.QUEUED, label=label)

    async def send_texts(self, request: api.SendTexts) -> tuple[api.Queued, ...]:
        contact_id = await self.contact_id(request.contact)
        label = await self._label_for(contact_id, request.contact, request.label)
        now = now_ms()
        texts = [
            m.Text(
                os.urandom(16) if item.id is None else parse_id(item.id),
                now,
                item.body,
                item.content_type,
                label,
            )
            for item in request.texts
        ]
        await self._engine.queue_texts(contact_id, texts)
        return tuple(api.Queued(t.id.hex(), api.MessageState.QUEUED, label=label) for t in texts)

    async def forward(self, request: api.Forward) -> api.Queued:
        """A stored message sent on to ``to`` under a new id; see _labels.forward_label."""
        source = await self._worker(self._find, parse_id(request.id), request.contact)
        contact_id = await self.contact_id(request.to)
        await self._check_not_moved(contact_id, request.to)
        label = await self._worker(
            _labels.forward_label,
            self._store,
            self._labels,
            source,
            (contact_id, request.to),
            request.label,
        )
        message_id = os.urandom(16)
        if source.file is None:
            assert source.body is not None
            text = m.Text(message_id, now_ms(), source.body, source.content_type, label.text)
            await self._engine.queue_text(contact_id, text)
            return api.Queued(message_id.hex(), api.MessageState.QUEUED, label=label.text)
        queued = await trio.to_thread.run_sync(
            partial(
                self._store.outbox.forward_file,
                source,
                contact_id,
                message_id,
                now_ms(),
                label.text,
            )
        )
        self._engine.kick(contact_id)
        return api.Queued(
            message_id.hex(), api.MessageState.QUEUED, queued.name, queued.size, label.text
        )

    async def send_file(self, request: api.SendFile) -> api.Queued:
        contact_id = await self.contact_id(request.contact)
        label = await self._label_for(contact_id, request.contact, request.label)
        source = Path(request.path)
        if not source.is_absolute():
            raise ConfigError("give the file's absolute path")
        file_id = os.urandom(16) if request.id is None else parse_id(request.id)
        async with self._one_send(file_id):
            # Its own thread, not the store worker: copying a large file
            # in must not hold up every other store call.
            queued = await trio.to_thread.run_sync(
                partial(
                    self._store.outbox.queue_file,
                    contact_id,
                    file_id,
                    now_ms(),
                    source.name,
                    source,
                    self._max_file_size,
                    label=label,
                )
            )
        self._engine.kick(contact_id)
        return api.Queued(file_id.hex(), api.MessageState.QUEUED, queued.name, queued.size, label)

    async def inbox(self, request: api.Inbox) -> tuple[api.Message, ...]:
        page = await self._worker(
            partial(
                self._store.messages.inbox,
                after=request.after,
                limit=request.limit,
                unread=request.unread,
            )
        )
        return await self._worker(self._records, page, sends=False)

    def _records(self, page: Sequence[Stored], *, sends: bool) -> tuple[api.Message, ...]:
        """In the worker: messages as the local API shows them, each with its
        group (and, with ``sends``, every copy of our group sends)."""
        return tuple(self._groups.annotate(message_record(s), s, sends=sends) for s in page)

    def _outbox(self, contact: str | None, limit: int) -> list[Stored]:
        contact_id = None if contact is None else contact_named(self._store, contact).id
        return self._store.outbox.listing(contact_id=contact_id, limit=limit)

    async def outbox(self, request: api.Outbox) -> tuple[api.Message, ...]:
        page = await self._worker(self._outbox, request.contact, request.limit)
        return await self._worker(self._records, page, sends=False)

    def _find(self, message_id: bytes, contact: str | None) -> Stored:
        """In the worker: the one message with this id (of this contact, when named).

        Two contacts may send records with the same id; without a contact such
        an id is refused as ambiguous rather than resolved to either. A name
        is first a current contact's; failing that (the contact was removed,
        its messages kept, perhaps its name given to another since) the name
        the messages with this id show, when that is one contact's."""
        found = self._store.messages.messages_with_id(message_id)
        if contact is not None:
            try:
                current: int | None = self._store.contacts.contact(contact).id
            except UnknownContactError:
                current = None
            mine = [s for s in found if s.contact_id == current]
            if not mine:
                mine = [s for s in found if s.contact.casefold() == contact.casefold()]
            if len({s.contact_id for s in mine}) > 1:
                raise ConfigError(
                    f"messages from several contacts named {contact!r} have the id "
                    f"{message_id.hex()}"
                )
            if mine:
                return mine[0]
            if current is None:
                raise UnknownContactError(contact)
            # Not stored whole: a file still arriving, or nothing (NotFoundError).
            return self._store.messages.message(message_id, contact_id=current)
        if not found:
            # Not stored whole: a file still arriving, or nothing (NotFoundError).
            return self._store.messages.message(message_id)
        if len({s.contact_id for s in found}) > 1:
            raise ConfigError(
                f"messages from several contacts have the id {message_id.hex()}: name the contact"
            )
        return found[0]

    def _find_or_say(self, message_id: bytes, contact: str | None) -> Stored:
        """:meth:`_find`; an id no message has but a send to a list or a group
        has is said to be one, with the command that follows its copies."""
        try:
            return self._find(message_id, contact)
        except NotFoundError as missing:
            kind, name = "", ""
            try:
                kind, name = "list", self._store.lists.send(message_id).list
            except NotFoundError:
                with contextlib.suppress(NotFoundError):
                    kind, name = "group", self._store.groups.send(message_id).group
            if not kind:
                raise
            raise NotFoundError(
                f"{message_id.hex()} is a send to the {kind} {name!r}, not one message: "
                f"'{kind} show {name}' follows its copies"
            ) from missing

    async def message(self, request: api.GetMessage) -> api.Message:
        found = await self._worker(self._find_or_say, parse_id(request.id), request.contact)
        (record,) = await self._worker(self._records, [found], sends=True)
        return record

    def _mark_read(self, ids: Sequence[bytes], contact: str | None) -> dict[int, list[bytes]]:
        """In the worker: mark what was received read; what changed, by contact."""
        by_contact: dict[int, list[bytes]] = {}
        for stored in [self._find(i, contact) for i in ids]:
            if stored.direction == Direction.IN:
                by_contact.setdefault(stored.contact_id, []).append(stored.id)
        now = now_ms()
        return {
            contact_id: self._store.messages.mark_read(
                message_ids, now, contact_id=contact_id, direction=Direction.IN
            )
            for contact_id, message_ids in by_contact.items()
        }

    async def mark_read(self, request: api.MarkRead) -> api.Marked:
        ids = [parse_id(i) for i in request.ids]
        changed = await self._worker(self._mark_read, ids, request.contact)
        for contact_id, message_ids in changed.items():
            # Tell the sender, and only it: the receipts are owed durably until
            # a session or the contact's mailbox carried them. A contact removed
            # since is told nothing.
            if await self._worker(self._store.contacts.contact_by_id, contact_id) is not None:
                await self._engine.owe_receipts(contact_id, message_ids)
        return api.Marked(sum(len(v) for v in changed.values()))

    async def export_file(self, request: api.ExportFile) -> api.Exported:
        target = Path(request.dest)
        if not target.is_absolute():
            raise ConfigError("give an absolute destination path")
        stored = await self._worker(self._find, parse_id(request.id), request.contact)
        written = await trio.to_thread.run_sync(
            partial(
                self._store.transfers.export_file, stored.id, target, contact_id=stored.contact_id
            )
        )
        size = await trio.to_thread.run_sync(lambda: written.stat().st_size)
        return api.Exported(str(written), size)

    async def retry(self, request: api.Retry) -> api.Retried:
        if request.contact is None:
            return api.Retried(self._engine.kick(retry_now=True))
        # UnknownContactError for a bad name
        return api.Retried(
            self._engine.kick(await self.contact_id(request.contact), retry_now=True)
        )
