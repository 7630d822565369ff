"""The onionpost daemon: wires tor, the listener, the delivery engine and the local API.

Theory of operation
-------------------
::

    run()
    └── host.running         the OnionHost (onionpost.host): the local control
        │                    socket, our tor supervised, the static key renewed
        ├── host.serve       inbound onion streams -> responder handshakes
        │                    -> engine.run_inbound
        ├── host.publish     the onion service; our contacts (and the members our
        │                    groups introduced, groups.md §9) as its authorized clients
        ├── engine.run       delivery: a link per contact, a session per channel
        │                    (``delivery/``: the failure domains live there)
        └── owner.run        the link to our own mailbox (``_mailbox.py``)

The daemon is the local API's backend: :attr:`Daemon.handlers` maps each
request type an endpoint serves to its handler, which turns the request
into store reads and engine calls and shapes the records; their store calls
run in the engine's worker, off the event loop. The handlers are grouped by
what they serve, each group in its module: contacts (``_contacts.py``),
messages (``_messages.py``), agency trust (``_trust.py``), the evidence log
(``_evidence.py``), distribution lists (``_lists.py``) and groups
(``_groups.py``). This module answers ``whoami``, ``status`` and the
``mailbox_*`` requests itself.

Logs carry ids, contact handles (``contact=#3``, :mod:`onionpost._logs`)
and states, never message contents or keys; names and onion addresses only
at DEBUG, so the journal does not hold the contact graph.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import trio

from onionpost import api
from onionpost._logs import contact_ref, safe
from onionpost.daemon._common import now_ms
from onionpost.daemon._contacts import (
    ContactHandlers,
    contact_status,
    endorsement_detail,
)
from onionpost.daemon._evidence import EvidenceHandlers
from onionpost.daemon._groups import GroupHandlers
from onionpost.daemon._lists import ListHandlers
from onionpost.daemon._mailbox import MailboxDial, Mailboxes, OwnerLink
from onionpost.daemon._messages import MessageHandlers
from onionpost.daemon._trust import TrustHandlers
from onionpost.daemon.delivery import (
    DeliveryEngine,
    DeliveryPolicy,
    Dial,
    Reconciled,
    Witness,
    own_in_detail,
    rotation_progress,
)
from onionpost.errors import ConfigError
from onionpost.home import (
    Config,
    ContactCard,
    Paths,
    Secrets,
    endorsement_line,
    write_card_file,
)
from onionpost.host import EventHub, Handlers, OnionHost, StoreWorker, ThreadWorker
from onionpost.proto.address import OnionAddress
from onionpost.proto.groups import MemberCard
from onionpost.proto.pairing import MailboxAnnouncement
from onionpost.store import Contact, Store
from onionpost.transport import SecureChannel

__all__ = ["Daemon"]

log = logging.getLogger("onionpost.daemon")


class Daemon:
    """Implements the local API's :class:`~onionpost.host.Backend` on an :class:`OnionHost`."""

    unserved: Final = (
        "this home runs an endpoint, not a mailbox or a registrar ('mailbox code' "
        "runs on the mailbox's host, 'registrar code', 'revoke' and 'list' with the "
        "registrar's home)"
    )

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
            clients=self.authorized_clients,
            hub=self._hub,
            log=log,
            tor_back=self._tor_back,
        )
        policy = policy or DeliveryPolicy.from_config(config)
        registrar_dial = mailbox_dial or self._dial_registrar
        mailbox_dial = mailbox_dial or self._dial_mailbox
        self.mailboxes = Mailboxes(secrets, store, mailbox_dial, self._write_card)
        self._worker = worker or ThreadWorker()
        self.engine = DeliveryEngine(
            store,
            self._hub,
            dial or self._dial,
            policy,
            address=secrets.identity.address,
            mailbox=self.mailboxes,
            worker=self._worker,
            identity=secrets.identity,
            peers_changed=self._peers_changed,
        )
        self.owner = OwnerLink(
            secrets, store, self.engine, self.mailboxes, mailbox_dial, policy, self._worker
        )
        self.lists = lists = ListHandlers(
            store, self.engine, self._worker, config.max_file_size, config.labels
        )
        self.groups = groups = GroupHandlers(
            store,
            self.engine,
            self._worker,
            secrets.identity,
            MemberCard(
                secrets.identity.public_key, secrets.client_auth_public, secrets.display_name
            ),
            config.labels,
            max_file_size=config.max_file_size,
        )
        self.messages = messages = MessageHandlers(
            store, self.engine, self._worker, config.labels, groups, config.max_file_size
        )
        self.trust = trust = TrustHandlers(
            store,
            self.engine,
            self._worker,
            secrets,
            registrar_dial,
            paths.home / "registrar.txt",
            config.trust_refresh,
            moved=messages.moved,
        )
        self.registrar = trust.registrar
        self.contacts = contacts = ContactHandlers(
            store,
            self.engine,
            self._worker,
            secrets,
            self.host,
            self.owner,
            self._hub,
            config.labels,
            refusals_changed=trust.refusals_changed,
        )
        self.evidence = evidence = EvidenceHandlers(
            store,
            self._worker,
            Witness(secrets.identity),
            config.labels,
            contact_id=messages.contact_id,
        )
        self.handlers: Handlers = {
            api.Whoami: self.whoami,
            api.GetStatus: self.status,
            api.ContactAdd: contacts.contact_add,
            api.ContactList: contacts.contact_list,
            api.ContactShow: contacts.contact_show,
            api.ContactRemove: contacts.contact_remove,
            api.ContactRename: contacts.contact_rename,
            api.TrustAdd: trust.trust_add,
            api.TrustList: trust.trust_list,
            api.TrustRemove: trust.trust_remove,
            api.TrustEndorsementInstall: trust.trust_endorsement_install,
            api.TrustRotate: trust.trust_rotate,
            api.ContactRequireEndorsement: trust.contact_require_endorsement,
            api.TrustRevocationsImport: trust.trust_revocations_import,
            api.TrustEnrol: trust.trust_enrol,
            api.ContactVerify: contacts.contact_verify,
            api.ContactSetMaxLabel: contacts.contact_set_max_label,
            api.SendText: messages.send_text,
            api.SendTexts: messages.send_texts,
            api.SendFile: messages.send_file,
            api.Forward: messages.forward,
            api.Inbox: messages.inbox,
            api.Outbox: messages.outbox,
            api.GetMessage: messages.message,
            api.MarkRead: messages.mark_read,
            api.ExportFile: messages.export_file,
            api.LogShow: evidence.log_show,
            api.LogVerify: evidence.log_verify,
            api.EvidenceExport: evidence.evidence_export,
            api.Retry: messages.retry,
            api.MailboxPair: self.mailbox_pair,
            api.GetMailboxStatus: self.mailbox_status,
            api.MailboxWipe: self.mailbox_wipe,
            api.ListCreate: lists.list_create,
            api.ListAdd: lists.list_add,
            api.ListRemove: lists.list_remove,
            api.ListDelete: lists.list_delete,
            api.ListShow: lists.list_show,
            api.ListList: lists.list_list,
            api.ListSendText: lists.list_send_text,
            api.ListSendFile: lists.list_send_file,
            api.GroupCreate: groups.group_create,
            api.GroupAdd: groups.group_add,
            api.GroupRemove: groups.group_remove,
            api.GroupLeave: groups.group_leave,
            api.GroupRename: groups.group_rename,
            api.GroupPromote: groups.group_promote,
            api.GroupDemote: groups.group_demote,
            api.GroupShow: groups.group_show,
            api.GroupList: groups.group_list,
            api.GroupSendText: groups.group_send_text,
            api.GroupSendFile: groups.group_send_file,
        }

    # -- lifecycle -----------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[OnionAddress] = trio.TASK_STATUS_IGNORED
    ) -> None:
        address = self._secrets.identity.address
        async with self.host.running(self) as nursery:
            await self.host.serve(nursery, self.engine.run_inbound, self.engine.decide)
            await self.host.publish()
            contacts = self._store.contacts.peers()
            for contact in contacts:
                await self.host.add_client_auth(contact.address, self._secrets.client_auth_private)
            await nursery.start(self.engine.run)
            nursery.start_soon(self.owner.run)
            nursery.start_soon(self.registrar.run)
            self.host.ready()
            log.info("event=ready contacts=%d", len(contacts))
            log.debug("event=ready address=%s", address)
            task_status.started(address)
            await trio.sleep_forever()

    def authorized_clients(self) -> list[bytes]:
        """Our onion service's authorized clients: our contacts, and the
        members of our groups introduced to us (groups.md §9)."""
        return [c.client_auth_public for c in self._store.contacts.peers()]

    async def _peers_changed(self, done: Reconciled) -> None:
        """Members were introduced or dropped (the engine's links are): our
        onion service lets in exactly our peers now, our tor reaches the new
        ones' services with our client key, and our mailbox learns who may
        deposit for us."""
        # Registered at our mailbox (or no more), as contacts are; whatever tor says.
        self.owner.changed()
        await self.contacts.authorize()
        for peer in done.dropped:
            await self.host.remove_client_auth(peer.address)
        for peer in done.added:
            await self.host.add_client_auth(peer.address, self._secrets.client_auth_private)

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

    async def _dial_registrar(
        self, registrar: OnionAddress, client_auth_private: bytes
    ) -> SecureChannel:
        """Reach our agency's registrar, as a mailbox is reached (its own
        handle in the log: a registrar is no mailbox)."""
        return await self.host.dial(registrar, client_auth_private, handle="peer=registrar")

    # -- the local API (Backend) -----------------------------------------------------
    #
    # Every store call runs through the engine's worker, off the event loop:
    # an fsync in the store never stalls the loop (nor the sessions on it).

    def subscribe(self, topics: tuple[str, ...]) -> trio.MemoryReceiveChannel[dict[str, Any]]:
        return self._hub.subscribe(list(topics))

    def _write_card(self, announcement: MailboxAnnouncement | None) -> None:
        """Our card file names our current mailbox (or none): ``onionpost
        whoami`` reads it without a daemon (storage.md §Contact card)."""
        card = ContactCard.issue(self._secrets, mailbox=announcement)
        try:
            if write_card_file(self._paths.card, card):
                log.info("event=card_written mailbox=%s", "none" if announcement is None else "set")
        except OSError as exc:
            log.warning("event=card_write_failed error=%s", safe(exc.strerror or ""))

    async def whoami(self, request: api.Whoami) -> api.Identity:
        card = ContactCard.issue(self._secrets, mailbox=self.mailboxes.signed())
        own = await self._worker(self._store.trust.own)
        now = now_ms()
        address = str(self._secrets.identity.address)
        judged = await self._worker(own_in_detail, self._store, address, now)
        return api.Identity(
            self._secrets.display_name,
            address,
            card.to_line(),
            "" if own is None else endorsement_line(own[1]),
            endorsed=None
            if judged is None
            else endorsement_detail(judged.status, judged.describe(), now, judged),
        )

    def _status_rows(self) -> tuple[list[tuple[Contact, int, int]], int, int | None]:
        store = self._store
        rows = [
            (c, store.outbox.outbox_depth(c.id), store.mailbox.deposited_count(c.id))
            for c in store.contacts.all()
        ]
        return rows, store.outbox.outbox_depth(), store.outbox.last_delivery()

    def _alarm_count(self) -> int:
        return len(self._store.evidence.alarms())

    async def status(self, request: api.GetStatus) -> api.Status:
        rows, depth, last_delivery = await self._worker(self._status_rows)
        contacts = []
        for contact, queued, deposited in rows:
            contacts.append(
                contact_status(contact, self.engine.status(contact.id), queued, deposited)
            )
        return api.Status(
            address=str(self._secrets.identity.address),
            tor=self.host.tor_status,
            outbox_depth=depth,
            last_delivery_ms=last_delivery,
            contacts=tuple(contacts),
            evidence_alarms=await self._worker(self._alarm_count),
            trust_alarms=len(await self._worker(self._store.trust.alarms)),
            registrar=await self.registrar.status(),
            delegation_ends=await self.registrar.delegation_ends(),
            rotation=None
            if (moving := await self._worker(rotation_progress, self._store)) is None
            else api.RotationStatus(*moving),
        )

    async def mailbox_pair(self, request: api.MailboxPair) -> api.MailboxRef:
        return await self.owner.pair(request.code)

    async def mailbox_status(self, request: api.GetMailboxStatus) -> api.MailboxStatus:
        return await self.owner.status()

    async def mailbox_wipe(self, request: api.MailboxWipe) -> api.Wiped:
        if request.owner is not None:
            raise ConfigError("an endpoint wipes its own space at its mailbox: leave out 'owner'")
        return await self.owner.wipe()

    def close(self) -> None:
        self._hub.close()
