"""The local API's distribution lists: their handlers, and the one send path.

A list is local (local-api.md §6, distribution lists): a send to it is one
ordinary message per member, each queued, delivered, acknowledged and
answered one to one, so nothing on the wire changes and each copy's state is
its own. Every send to a list, text or file, goes through
:meth:`ListHandlers.send_to_list`; the recipients it goes to are resolved in
the send's own transaction (``store.lists``), where an ``audience`` check
sees them before anything is queued.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import trio

from onionpost import api
from onionpost.daemon import _labels
from onionpost.daemon._common import new_send_id, now_ms
from onionpost.daemon.delivery import DeliveryEngine
from onionpost.errors import ConfigError
from onionpost.host import StoreWorker
from onionpost.proto import messages as m
from onionpost.proto.labels import Label, LabelPolicy
from onionpost.store import Audience, Contact, DistributionList, ListSend, Store

__all__ = ["FileContent", "ListHandlers", "TextContent"]

log = logging.getLogger("onionpost.daemon")


@dataclass(frozen=True)
class TextContent:
    body: str
    content_type: str

    def __repr__(self) -> str:
        return f"TextContent({len(self.body)} characters)"


@dataclass(frozen=True)
class FileContent:
    path: Path

    def __repr__(self) -> str:
        return "FileContent(...)"


def sent_record(send: ListSend) -> api.ListSent:
    """A send as the local API shows it."""
    return api.ListSent(
        id=send.id.hex(),
        list=send.list,
        kind=api.Kind(send.kind.value),
        created_ms=send.created_ms,
        copies=tuple(
            api.ListCopy(
                contact=c.contact,
                id=c.message_id.hex(),
                state=api.MessageState.DEPOSITED
                if c.deposited and c.state in ("queued", "sent")
                else api.MessageState(c.state.value),
            )
            for c in send.copies
        ),
    )


def list_record(found: DistributionList, sends: tuple[ListSend, ...] = ()) -> api.DistributionList:
    return api.DistributionList(
        name=found.name,
        created_ms=found.created_ms,
        members=tuple(c.name for c in found.members),
        sends=tuple(sent_record(s) for s in sends),
    )


class ListHandlers:
    """The handlers of the ``list_*`` requests, over the store and the engine."""

    def __init__(
        self,
        store: Store,
        engine: DeliveryEngine,
        worker: StoreWorker,
        max_file_size: int,
        labels: LabelPolicy | None = None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._worker = worker
        self._max_file_size = max_file_size
        self._labels = labels or LabelPolicy.build()
        # The check of a send's recipients (None: every member may receive).
        self.audience: Audience | None = None

    def __repr__(self) -> str:
        return "ListHandlers()"

    async def list_create(self, request: api.ListCreate) -> api.DistributionList:
        lists = self._store.lists
        made = await self._worker(lists.create, request.name, request.members, now_ms())
        log.info("event=list_created members=%d", len(made.members))
        return list_record(made)

    async def list_add(self, request: api.ListAdd) -> api.DistributionList:
        lists = self._store.lists
        return list_record(await self._worker(lists.add, request.name, request.members, now_ms()))

    async def list_remove(self, request: api.ListRemove) -> api.DistributionList:
        lists = self._store.lists
        return list_record(await self._worker(lists.remove, request.name, request.members))

    async def list_delete(self, request: api.ListDelete) -> api.DistributionList:
        return list_record(await self._worker(self._store.lists.delete, request.name))

    def _show(self, name: str) -> tuple[DistributionList, list[ListSend]]:
        return self._store.lists.show(name), self._store.lists.sends(name)

    async def list_show(self, request: api.ListShow) -> api.DistributionList:
        found, sends = await self._worker(self._show, request.name)
        return list_record(found, tuple(sends))

    async def list_list(self, request: api.ListList) -> tuple[api.DistributionList, ...]:
        return tuple(list_record(found) for found in await self._worker(self._store.lists.all))

    async def list_send_text(self, request: api.ListSendText) -> api.ListSent:
        content = TextContent(request.body, request.content_type)
        label = self._labels.label(request.label)
        return await self.send_to_list(request.list, new_send_id(request.id), content, label)

    async def list_send_file(self, request: api.ListSendFile) -> api.ListSent:
        source = Path(request.path)
        if not source.is_absolute():
            raise ConfigError("give the file's absolute path")
        label = self._labels.label(request.label)
        return await self.send_to_list(
            request.list, new_send_id(request.id), FileContent(source), label
        )

    def _audience(self, label: Label) -> Audience:
        """The members a send is about to go to, checked in its transaction:
        the handling label's rules for a list (spec.md §5.10: a new TLP:RED
        message goes to no list, each member's limits hold), then
        :attr:`audience`. One refusal queues nothing."""

        def check(members: Sequence[Contact]) -> None:
            _labels.check_list_send(
                self._store, self._labels, label, [(c.id, c.name) for c in members]
            )
            if self.audience is not None:
                self.audience(members)

        return check

    async def send_to_list(
        self,
        name: str,
        send_id: bytes,
        content: TextContent | FileContent,
        label: Label | None = None,
    ) -> api.ListSent:
        """Every send to a list: one copy per member, all queued in one
        transaction or none, the members resolved in it and shown to the
        label's rules and :attr:`audience` first. Idempotent on ``send_id``."""
        now = now_ms()
        label = label or self._labels.default
        audience = self._audience(label)
        if isinstance(content, TextContent):
            text = m.Text(send_id, now, content.body, content.content_type, label.text)
            send = await self._engine.queue_list_text(name, send_id, text, audience=audience)
        else:
            # Its own thread, not the store worker: copying a file once per
            # member must not hold up every other store call.
            send, _offers = await trio.to_thread.run_sync(
                partial(
                    self._store.lists.queue_file,
                    name,
                    send_id,
                    now,
                    content.path.name,
                    content.path,
                    self._max_file_size,
                    audience=audience,
                    label=label.text,
                )
            )
            for copy in send.copies:
                self._engine.kick(copy.contact_id)
        log.info("event=list_send kind=%s copies=%d", send.kind.value, len(send.copies))
        return sent_record(send)
