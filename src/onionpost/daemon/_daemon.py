"""The onionpost daemon: wires tor, the listener, the delivery engine and the local API.

Theory of operation
-------------------
::

    run()
    └── host.running         the OnionHost (onionpost.host): the local control
        │                    socket, our tor supervised, the static key renewed
        ├── host.serve       inbound onion streams -> responder handshakes
        │                    -> engine.run_inbound
        ├── host.publish     the onion service; our contacts as its authorized clients
        ├── engine.run       delivery: a link per contact, a session per channel
        │                    (``delivery/``: the failure domains live there)
        └── owner.run        the link to our own mailbox (``_mailbox.py``)

This module is the local API's backend: it turns requests into store reads
and engine calls, and shapes the JSON. Delivery itself (dialing, sessions,
exactly once, quotas) is the engine's.

Logs carry ids, contact handles (``contact=#3``, :mod:`onionpost._logs`)
and states, never message contents or keys; names and onion addresses only
at DEBUG, so the journal does not hold the contact graph.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import trio

from onionpost import api
from onionpost._logs import contact_ref, safe
from onionpost.daemon._mailbox import MailboxDial, Mailboxes, OwnerLink
from onionpost.daemon.delivery import (
    DeliveryEngine,
    DeliveryPolicy,
    Dial,
    StoreWorker,
    ThreadWorker,
    message_record,
)
from onionpost.errors import ConfigError
from onionpost.home import Config, ContactCard, Paths, Secrets, safety_number
from onionpost.host import EventHub, OnionHost
from onionpost.proto import messages as m
from onionpost.proto.address import OnionAddress
from onionpost.store import Contact, Direction, Store, Stored
from onionpost.transport import SecureChannel

__all__ = ["Daemon"]

log = logging.getLogger("onionpost.daemon")


def _now_ms() -> int:
    return int(time.time() * 1000)


class Daemon:
    """Implements the local API's :class:`~onionpost.host.Backend` on an :class:`OnionHost`."""

    def __init__(
        self,
        paths: Paths,
        secrets: Secrets,
        config: Config,
        store: Store,
        *,
        dial: Dial | None = None,
        policy: DeliveryPolicy | None = None,
        mailbox_dial: MailboxDial | None = None,
        worker: StoreWorker | None = None,
    ) -> None:
        """``dial`` reaches a contact; the default goes through our tor. Tests and
        benchmarks without tor give their own and run :attr:`engine` themselves.
        ``policy`` defaults to the one ``config`` gives; ``worker`` runs store
        calls (a worker thread by default)."""
        self._paths = paths
        self._secrets = secrets
        self._config = config
        self._store = store
        self._hub = EventHub()
        self.host = OnionHost(
            paths,
            secrets,
            config,
            clients=self._clients,
            hub=self._hub,
            log=log,
            tor_back=self._tor_back,
        )
        policy = policy or DeliveryPolicy.from_config(config)
        mailbox_dial = mailbox_dial or self._dial_mailbox
        self.mailboxes = Mailboxes(secrets, store, mailbox_dial)
        self._worker = worker or ThreadWorker()
        self.engine = DeliveryEngine(
            store,
            self._hub,
            dial or self._dial,
            policy,
            address=secrets.identity.address,
            mailbox=self.mailboxes,
            worker=self._worker,
        )
        self.owner = OwnerLink(
            secrets, store, self.engine, self.mailboxes, mailbox_dial, policy, self._worker
        )

    # -- lifecycle -----------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[OnionAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        address = self._secrets.identity.address
        async with self.host.running(self) as nursery:
            await self.host.serve(nursery, self.engine.run_inbound, self.engine.decide)
            await self.host.publish()
            contacts = self._store.contacts()
            for contact in contacts:
                await self.host.add_client_auth(contact.address, self._secrets.client_auth_private)
            await nursery.start(self.engine.run)
            nursery.start_soon(self.owner.run)
            self.host.ready()
            log.info("event=ready contacts=%d", len(contacts))
            log.debug("event=ready address=%s", address)
            task_status.started(address)
            await trio.sleep_forever()

    def _clients(self) -> list[bytes]:
        """Our onion service's authorized clients: our contacts."""
        return [c.client_auth_public for c in self._store.contacts()]

    def _tor_back(self) -> None:
        if self.engine.running:
            # Tor is back (relaunched, service republished): our contacts
            # learn it at once, and every link redials now.
            self.engine.kick(retry_now=True)
            self.engine.announce()

    def renew_static_key(self, now: int) -> bool:
        """See :meth:`OnionHost.renew_static_key`."""
        return self.host.renew_static_key(now)

    async def _dial(self, contact: Contact) -> SecureChannel:
        """Reach ``contact`` through tor. The engine sets the deadline."""
        return await self.host.dial(contact.address, handle=f"contact={contact_ref(contact.id)}")

    async def _dial_mailbox(
        self, mailbox: OnionAddress, client_auth_private: bytes
    ) -> SecureChannel:
        """Reach a mailbox (ours, or a contact's) through tor, authorized with
        ``client_auth_private`` (ours; a setup code's while pairing)."""
        return await self.host.dial(mailbox, client_auth_private, handle="peer=mailbox")

    # -- the local API (Backend) -----------------------------------------------------

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self._hub.subscribe(list(topics))

    async def whoami(self) -> api.Identity:
        card = ContactCard.issue(self._secrets, mailbox=self.mailboxes.signed())
        return api.Identity(
            self._secrets.display_name, str(self._secrets.identity.address), card.to_line()
        )

    async def status(self) -> api.Status:
        contacts = []
        for contact in self._store.contacts():
            link = self.engine.status(contact.id)
            contacts.append(
                api.ContactStatus(
                    name=contact.name,
                    address=str(contact.address),
                    reachable=bool(link and link.reachable),
                    queued=self._store.outbox_depth(contact.id),
                    last_error=link.last_error if link else "",
                    since_ms=link.since_ms if link else None,
                    last_seen_ms=contact.last_seen_ms,
                    failures=link.failures if link else 0,
                    retry_in=link.retry_in if link else None,
                    mailbox=None if contact.mailbox is None else str(contact.mailbox),
                    deposited=self._store.deposited_count(contact.id),
                    mailbox_error=link.mailbox_error if link else "",
                )
            )
        return api.Status(
            address=str(self._secrets.identity.address),
            tor=self.host.tor_status,
            outbox_depth=self._store.outbox_depth(),
            last_delivery_ms=self._store.last_delivery(),
            contacts=tuple(contacts),
        )

    async def contact_add(self, card: str, name: str | None = None) -> api.ContactRef:
        parsed = ContactCard.parse(card)
        if parsed.address == self._secrets.identity.address:
            raise ConfigError("that card is this endpoint's own")
        contact = self._store.add_contact(
            name or parsed.name, parsed.address, parsed.client_auth_public, _now_ms()
        )
        if parsed.mailbox is not None:
            self._store.set_contact_mailbox(
                contact.id, parsed.mailbox.mailbox, parsed.mailbox.version
            )
            contact = self._store.contact(contact.name)
        await self._authorize()
        await self.host.add_client_auth(contact.address, self._secrets.client_auth_private)
        if self.engine.running:
            self.engine.add_contact(contact)
        self.owner.changed()
        log.info("event=contact_added contact=%s", contact_ref(contact.id))
        log.debug(
            "event=contact_added contact=%s name=%s address=%s",
            contact_ref(contact.id),
            safe(contact.name),
            contact.address,
        )
        return api.ContactRef(contact.name, str(contact.address))

    async def _authorize(self) -> None:
        if self.host.published:
            await self.host.authorize()

    async def contact_list(self) -> list[api.Contact]:
        return [
            api.Contact(
                name=c.name,
                address=str(c.address),
                added_ms=c.added_ms,
                last_seen_ms=c.last_seen_ms,
                reachable=bool((link := self.engine.status(c.id)) and link.reachable),
            )
            for c in self._store.contacts()
        ]

    async def contact_remove(self, name: str) -> api.ContactRef:
        contact = self._store.remove_contact(name)
        self.engine.remove_contact(contact.id)
        await self._authorize()
        await self.host.remove_client_auth(contact.address)
        self.owner.changed()
        log.info("event=contact_removed contact=%s", contact_ref(contact.id))
        return api.ContactRef(contact.name, str(contact.address))

    async def contact_verify(self, name: str) -> api.SafetyNumber:
        contact = self._store.contact(name)
        number = safety_number(self._secrets.identity.public_key, contact.address.public_key)
        return api.SafetyNumber(contact.name, number)

    async def send_text(
        self, contact: str, body: str, content_type: str = "text/plain"
    ) -> api.Queued:
        target = self._store.contact(contact)
        message_id = os.urandom(16)
        await self.engine.queue_text(target.id, m.Text(message_id, _now_ms(), body, content_type))
        return api.Queued(message_id.hex(), api.MessageState.QUEUED)

    async def send_file(self, contact: str, path: str) -> api.Queued:
        target = self._store.contact(contact)
        source = Path(path)
        if not source.is_absolute():
            raise ConfigError("give the file's absolute path")
        file_id = os.urandom(16)
        queued = await trio.to_thread.run_sync(
            partial(
                self._store.queue_file,
                target.id,
                file_id,
                _now_ms(),
                source.name,
                source,
                self._config.max_file_size,
            )
        )
        self.engine.kick(target.id)
        return api.Queued(file_id.hex(), api.MessageState.QUEUED, queued.name, queued.size)

    async def inbox(
        self, after: int = 0, limit: int = 100, unread: bool = False
    ) -> list[api.Message]:
        if not 0 <= after <= api.MAX_SEQ:
            raise ConfigError(f"'after' is a seq from 0 to {api.MAX_SEQ}")
        page = self._store.inbox(after=after, limit=limit, unread=unread)
        return [message_record(s) for s in page]

    async def outbox(self, contact: str | None = None, limit: int = 100) -> list[api.Message]:
        contact_id = None if contact is None else self._store.contact(contact).id
        return [message_record(s) for s in self._store.outbox(contact_id=contact_id, limit=limit)]

    def _find(self, message_id: bytes, contact: str | None) -> Stored:
        """The one message with this id (of this contact, when named).

        Two contacts may send records with the same id; without a contact such
        an id is refused as ambiguous rather than resolved to either."""
        if contact is not None:
            return self._store.message(message_id, contact_id=self._store.contact(contact).id)
        found = self._store.messages_with_id(message_id)
        if not found:
            # Not stored whole: a file still arriving, or nothing (NotFoundError).
            return self._store.message(message_id)
        if len({s.contact_id for s in found}) > 1:
            raise ConfigError(
                f"messages from several contacts have the id {message_id.hex()}: name the contact"
            )
        return found[0]

    async def message(self, id: str, contact: str | None = None) -> api.Message:
        return message_record(self._find(_parse_id(id), contact))

    async def mark_read(self, ids: Sequence[str], contact: str | None = None) -> api.Marked:
        targets = [self._find(_parse_id(i), contact) for i in ids]
        by_contact: dict[int, list[bytes]] = {}
        for stored in targets:
            if stored.direction == Direction.IN:
                by_contact.setdefault(stored.contact_id, []).append(stored.id)
        marked = 0
        for contact_id, message_ids in by_contact.items():
            changed = self._store.mark_read(
                message_ids, _now_ms(), contact_id=contact_id, direction=Direction.IN
            )
            marked += len(changed)
            # Tell the sender, and only it (best effort: receipts owed to an
            # offline contact are kept in memory until the next session).
            await self.engine.owe_receipts(contact_id, changed)
        return api.Marked(marked)

    async def export_file(self, id: str, dest: str, contact: str | None = None) -> api.Exported:
        target = Path(dest)
        if not target.is_absolute():
            raise ConfigError("give an absolute destination path")
        stored = self._find(_parse_id(id), contact)
        written = await trio.to_thread.run_sync(
            partial(self._store.export_file, stored.id, target, contact_id=stored.contact_id)
        )
        size = await trio.to_thread.run_sync(lambda: written.stat().st_size)
        return api.Exported(str(written), size)

    async def retry(self, contact: str | None = None) -> api.Retried:
        if contact is None:
            return api.Retried(self.engine.kick(retry_now=True))
        target = self._store.contact(contact).id  # UnknownContactError for a bad name
        return api.Retried(self.engine.kick(target, retry_now=True))

    async def mailbox_code(self, expires: int = 86_400) -> api.SetupCode:
        raise ConfigError(
            "this is an endpoint: setup codes come from a mailbox ('onionpost mailbox code' "
            "on the mailbox's host)"
        )

    async def mailbox_pair(self, code: str) -> api.MailboxRef:
        return await self.owner.pair(code)

    async def mailbox_status(self) -> api.MailboxStatus:
        return await self.owner.status()

    async def mailbox_wipe(self, owner: str | None = None) -> api.Wiped:
        if owner is not None:
            raise ConfigError("an endpoint wipes its own space at its mailbox: leave out 'owner'")
        return await self.owner.wipe()

    def close(self) -> None:
        self._hub.close()


def _parse_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 16:
        raise ConfigError("a message id is 32 hex digits")
    return raw
